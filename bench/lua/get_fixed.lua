-- GET BENCH_PATH (a list with its filters), the same request every time.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

wrk.method = "GET"
wrk.path = os.getenv("BENCH_PATH")
wrk.headers = common.headers()
