-- Token refresh with rotation: each refresh token is single-use, so every request spends one
-- and its answer brings the next. BENCH_TOKENS_FILE holds one fresh refresh token per chain
-- (more chains than connections); a queue hands each answer's token to the next request, so
-- no token is ever sent twice. A failed refresh ends its chain; if every chain has ended, a
-- spent placeholder is sent and counted by wrk as a non-2xx answer (never as throughput).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

-- One queue per wrk thread: the harness runs one thread (-t1), so every chain is in it.
local queue = common.lines(os.getenv("BENCH_TOKENS_FILE"))
local head, tail = 1, #queue
local headers = common.headers()
headers["Content-Type"] = "application/json"

function request()
  local token = "spent"
  if head <= tail then
    token = queue[head]
    queue[head] = nil
    head = head + 1
  end
  return wrk.format("POST", "/api/v1/auth/refresh", headers, '{"refreshToken":"' .. token .. '"}')
end

function response(status, headers, body)
  if status == 200 then
    local token = body:match('"refreshToken"%s*:%s*"([^"]+)"')
    if token then
      tail = tail + 1
      queue[tail] = token
    end
  end
end
