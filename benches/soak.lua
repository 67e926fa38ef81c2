-- wrk script for benches/soak.sh: mixed traffic. Every request is one of a
-- token request (client_secret_basic), a whoami and a pull with the access
-- token, a push (one record) and a health check, picked at random. Any
-- status outside 2xx counts as a failure.
--
--   KP_BASIC   the Authorization value for the token request ("Basic ...")
--   KP_TOKEN   an access token

local basic = os.getenv("KP_BASIC")
local token = os.getenv("KP_TOKEN")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

local shapes = nil

function init(args)
  failures = 0
  statuses = {}
  local bearer = { ["Authorization"] = "Bearer " .. token }
  local json = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
  shapes = {
    wrk.format("POST", "/oauth/token",
      { ["Authorization"] = basic, ["Content-Type"] = "application/x-www-form-urlencoded" },
      "grant_type=client_credentials"),
    wrk.format("GET", "/api/v1/whoami", bearer, nil),
    wrk.format("GET", "/api/v1/reports/soak?limit=20", bearer, nil),
    wrk.format("POST", "/api/v1/webhooks/soak", json, '{"soak":true}'),
    wrk.format("GET", "/healthz", {}, nil),
  }
  math.randomseed(os.time() * 1009 + (id or 0) * 7919)
end

function request()
  return shapes[math.random(#shapes)]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status < 200 or status >= 300 then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local failed = 0
  local merged = {}
  for _, thread in ipairs(threads) do
    failed = failed + (thread:get("failures") or 0)
    for status, count in pairs(thread:get("statuses") or {}) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(merged) do
    table.insert(parts, status .. ":" .. count)
  end
  table.sort(parts)
  local e = summary.errors
  io.write(string.format(
    "SOAK requests=%d rps=%.0f p50_ms=%.1f p99_ms=%.1f failed=%d socket_errors=%d statuses=%s\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, failed,
    e.connect + e.read + e.write + e.timeout, table.concat(parts, ",")))
end
