-- wrk script: POST one americano per request (crema and the ceiling server).
-- Counts answers by status; prints them at the end so a run with errors is visible.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"customer":"wrk","items":[{"menu_id":"americano","qty":1}]}'

local counts = {}
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  io.write(string.format("p50_ms %.3f p99_ms %.3f errors %d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
