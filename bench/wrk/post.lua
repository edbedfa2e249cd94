-- bench/wrk/post.lua: POST one signed webhook body, a new X-Shopify-Event-Id per request.
--
-- Shopify signs only the body, so the same body and HMAC stay valid whatever the event id:
-- every request is a new event for the gateway, never a duplicate.
--
-- Arguments (after `--`): BODY_FILE HMAC_B64 ID_PREFIX
-- At the end, prints one line `BENCH_JSON {...}` with counts and latency percentiles (µs).

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"), "cannot open body file " .. tostring(args[1]))
  body = file:read("*a")
  file:close()
  prefix = args[3] or "bench"
  headers = {
    ["Content-Type"] = "application/json",
    ["X-Shopify-Topic"] = "orders/create",
    ["X-Shopify-Hmac-Sha256"] = args[2],
  }
  sent, ok, duplicates, non_2xx = 0, 0, 0, 0
end

function request()
  sent = sent + 1
  headers["X-Shopify-Event-Id"] = prefix .. "-" .. tid .. "-" .. sent
  return wrk.format("POST", nil, headers, body)
end

function response(status, _headers, _body)
  if status >= 200 and status < 300 then
    ok = ok + 1
    if status == 200 then duplicates = duplicates + 1 end
  else
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, _requests)
  local total = { sent = 0, ok = 0, duplicates = 0, non_2xx = 0 }
  for _, thread in ipairs(threads) do
    for key, _ in pairs(total) do total[key] = total[key] + thread:get(key) end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"sent":%d,"ok_2xx":%d,' ..
    '"duplicates":%d,"non_2xx":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,' ..
    '"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes, total.sent, total.ok,
    total.duplicates, total.non_2xx, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
