-- Shared by the bench scripts: settings come from the environment (BENCH_*), so no token
-- appears on a command line.
local common = {}

function common.headers()
  local h = { ["Host"] = "127.0.0.1" } -- h11 refuses requests without one
  local auth = os.getenv("BENCH_AUTH")
  if auth and auth ~= "" then
    h["Authorization"] = auth
  end
  return h
end

function common.lines(path)
  local out = {}
  local file = assert(io.open(path, "r"), "cannot open " .. path)
  for line in file:lines() do
    if line ~= "" then
      out[#out + 1] = line
    end
  end
  file:close()
  assert(#out > 0, path .. " is empty")
  return out
end

return common
