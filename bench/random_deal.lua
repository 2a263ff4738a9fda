-- wrk script: GET /deals/{id} with an id drawn uniformly from 1 to N, as
-- pgbench's `\set id random(1, N)`. N comes after wrk's `--`: wrk ... -- 50000,
-- and optionally a bearer token after it: wrk ... -- 50000 eyJ...
local max_id = 50000
local counter = 0

setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

init = function(args)
  if args[1] then
    max_id = tonumber(args[1])
  end
  if args[2] then
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
  math.randomseed(os.time() * 1000 + (seed or 0))
end

request = function()
  return wrk.format("GET", "/deals/" .. math.random(1, max_id))
end
