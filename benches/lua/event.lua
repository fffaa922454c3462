-- One seed-003 purchase per request, for a random customer among 100,000.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("CAIRN_KEY")
request = function()
  local body = string.format(
    '{"user_id":"u%d","event":"purchase","properties":{"amount":%d.5,"currency":"EUR","sku":"p-%d"}}',
    math.random(1, 100000), math.random(1, 500), math.random(1, 1000))
  return wrk.format(nil, nil, nil, body)
end
