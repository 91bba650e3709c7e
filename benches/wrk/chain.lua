-- wrk script: a café chain's real orders (crema with examples/chain.toml, and
-- the ceiling): three stores in turn, drinks with options, notes, and every
-- fourth order a croissant too (two station kinds, two tickets).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local bodies = {
  '{"store":"gangnam","customer":"kim","items":[{"menu_id":"latte","qty":1,"options":{"size":"grande","milk":"oat","extras":["extra_shot"]},"note":"extra hot"}]}',
  '{"store":"hongdae","customer":"lee","items":[{"menu_id":"americano","qty":2,"options":{"temperature":"iced"}}]}',
  '{"store":"seongsu","customer":"park","items":[{"menu_id":"cappuccino","qty":1,"options":{"size":"venti","extras":["vanilla","decaf"]}}]}',
  '{"store":"gangnam","customer":"choi","items":[{"menu_id":"flat_white","qty":1},{"menu_id":"croissant","qty":1,"options":{"warming":"warmed"}}]}',
}
local n = 0
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])
end

local counts = {}
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  io.write(string.format("p50_ms %.3f p99_ms %.3f errors %d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
