-- POST the JSON body BENCH_BODY to BENCH_PATH, the same request every time.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.body = os.getenv("BENCH_BODY")
wrk.headers = common.headers()
wrk.headers["Content-Type"] = "application/json"
