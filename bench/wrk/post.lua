-- bench/wrk/post.lua: POST one signed webhook body per request, each a new event.
--
-- Shopify signs only the body, and the gateway deduplicates such deliveries by their body
-- (with the topic), whatever X-Shopify-Event-Id says: a new event needs a new body and a new
-- signature. So every request appends `"bench_event":"<prefix>-<thread>-<n>"` to the order and
-- signs the result here, with HMAC-SHA256. To keep that cheap (wrk shares the machine with the
-- gateway), the fixed part of the body is padded with JSON whitespace to whole 64-byte blocks:
-- the hash state after the key and that part is computed once per thread, and a request costs
-- two SHA-256 blocks (its own tail, then the outer hash).
--
-- Arguments (after `--`): BODY_FILE SECRET ID_PREFIX
-- At the end, prints one line `BENCH_JSON {...}` with counts and latency percentiles (µs).

local bit = require("bit")
local band, bxor, bnot, rshift, lshift, ror, tobit =
  bit.band, bit.bxor, bit.bnot, bit.rshift, bit.lshift, bit.ror, bit.tobit

local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
local INITIAL = {
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}
local w = {}

-- SHA-256 of the 64-byte blocks of `data` (a multiple of 64 bytes), continuing from `state`.
local function compress(state, data)
  local h1, h2, h3, h4, h5, h6, h7, h8 = unpack(state)
  for offset = 1, #data, 64 do
    for i = 0, 15 do
      local b1, b2, b3, b4 = data:byte(offset + i * 4, offset + i * 4 + 3)
      w[i] = tobit(lshift(b1, 24) + lshift(b2, 16) + lshift(b3, 8) + b4)
    end
    for i = 16, 63 do
      local x, y = w[i - 15], w[i - 2]
      local s0 = bxor(ror(x, 7), ror(x, 18), rshift(x, 3))
      local s1 = bxor(ror(y, 17), ror(y, 19), rshift(y, 10))
      w[i] = tobit(w[i - 16] + s0 + w[i - 7] + s1)
    end
    local a, b, c, d, e, f, g, h = h1, h2, h3, h4, h5, h6, h7, h8
    for i = 0, 63 do
      local t1 = tobit(h + bxor(ror(e, 6), ror(e, 11), ror(e, 25))
        + bxor(band(e, f), band(bnot(e), g)) + K[i + 1] + w[i])
      local t2 = tobit(bxor(ror(a, 2), ror(a, 13), ror(a, 22))
        + bxor(band(a, b), band(a, c), band(b, c)))
      h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + t2)
    end
    h1, h2, h3, h4 = tobit(h1 + a), tobit(h2 + b), tobit(h3 + c), tobit(h4 + d)
    h5, h6, h7, h8 = tobit(h5 + e), tobit(h6 + f), tobit(h7 + g), tobit(h8 + h)
  end
  return { h1, h2, h3, h4, h5, h6, h7, h8 }
end

local function word_bytes(x)
  return string.char(band(rshift(x, 24), 255), band(rshift(x, 16), 255),
                     band(rshift(x, 8), 255), band(x, 255))
end

-- The last blocks of a message of `total` bytes whose unhashed rest is `tail`.
local function padded(tail, total)
  local zeros = (55 - #tail) % 64
  return tail .. "\128" .. string.rep("\0", zeros) .. word_bytes(0) .. word_bytes(total * 8)
end

local function digest_bytes(state)
  local parts = {}
  for i = 1, 8 do parts[i] = word_bytes(state[i]) end
  return table.concat(parts)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(data)
  local out = {}
  for i = 1, #data, 3 do
    local a, b, c = data:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for j = 3, 0, -1 do
      local index = band(rshift(n, j * 6), 63) + 1
      chars[#chars + 1] = B64:sub(index, index)
    end
    if not b then chars[3], chars[4] = "=", "="
    elseif not c then chars[4] = "=" end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

-- HMAC-SHA256 midstates for `secret` and the fixed part `prefix` (whole 64-byte blocks).
local function hmac_signer(secret, prefix)
  assert(#secret <= 64 and #prefix % 64 == 0)
  local key = secret .. string.rep("\0", 64 - #secret)
  local inner_pad, outer_pad = {}, {}
  for i = 1, 64 do
    inner_pad[i] = string.char(bxor(key:byte(i), 0x36))
    outer_pad[i] = string.char(bxor(key:byte(i), 0x5c))
  end
  local inner = compress(compress(INITIAL, table.concat(inner_pad)), prefix)
  local outer = compress(INITIAL, table.concat(outer_pad))
  return function(tail)
    local inner_digest = digest_bytes(compress(inner, padded(tail, 64 + #prefix + #tail)))
    return base64(digest_bytes(compress(outer, padded(inner_digest, 96))))
  end
end

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"), "cannot open body file " .. tostring(args[1]))
  local body = file:read("*a"):gsub("%s+$", "")
  file:close()
  assert(body:sub(-1) == "}" and not body:match("{%s*}$"), "the body must be a non-empty object")
  -- The object without its closing brace, then spaces up to a whole number of blocks.
  local open = body:sub(1, -2)
  prefix = open .. string.rep(" ", (64 - #open % 64) % 64)
  sign = hmac_signer(args[2], prefix)
  id_prefix = (args[3] or "bench") .. "-" .. tostring(tid) .. "-"
  headers = {
    ["Content-Type"] = "application/json",
    ["X-Shopify-Topic"] = "orders/create",
  }
  sent, ok, duplicates, non_2xx = 0, 0, 0, 0
end

function request()
  sent = sent + 1
  local event = id_prefix .. sent
  local tail = ',"bench_event":"' .. event .. '"}'
  headers["X-Shopify-Event-Id"] = event
  headers["X-Shopify-Hmac-Sha256"] = sign(tail)
  return wrk.format("POST", nil, headers, prefix .. tail)
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
