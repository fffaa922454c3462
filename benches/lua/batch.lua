-- 100 seed-003 events per request (/v1/track/batch), for random customers among 100,000.
-- Bodies are built once and cycled, so the load generator spends its CPU on sending.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("CAIRN_KEY")
local bodies = {}
init = function(args)
  for b = 1, 64 do
    local items = {}
    for i = 1, 100 do
      items[i] = string.format(
        '{"type":"event","user_id":"u%d","event":"purchase","properties":{"amount":%d.5,"currency":"EUR"}}',
        math.random(1, 100000), math.random(1, 500))
    end
    bodies[b] = "[" .. table.concat(items, ",") .. "]"
  end
end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n % 64) + 1])
end
