-- GET BENCH_PATH with "{id}" replaced by an id picked at random from BENCH_IDS_FILE.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

local template = os.getenv("BENCH_PATH")
local ids = common.lines(os.getenv("BENCH_IDS_FILE"))
local headers = common.headers()

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  local path = template:gsub("{id}", ids[math.random(#ids)])
  return wrk.format("GET", path, headers)
end
