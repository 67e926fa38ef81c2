-- wrk script for benches/load.sh: one request shape per run, configured by
-- environment variables (wrk runs this file once per thread, and once more for
-- setup/done, so every copy reads the same settings):
--
--   KP_METHOD        GET (default) or POST
--   KP_BODY          request body, sent as is
--   KP_CONTENT_TYPE  Content-Type of the body
--   KP_BEARER        an access token, sent as `Authorization: Bearer ...`
--   KP_AUTH_FILE     a file of `Authorization` header values, one per line;
--                    each request picks one at random (client_secret_basic
--                    spread over many keys)
--   KP_AUTHORIZATION an `Authorization` header value sent as is (a SigV4
--                    signature), with KP_AMZ_DATE as `X-Amz-Date`
--   KP_EXPECT        the status every response should have; unset: any 2xx
--   KP_DPOP_FILE     DPoP proofs (RFC 9449), one per line, each sent once as
--                    the `DPoP` header: thread N of KP_THREADS takes every
--                    KP_THREADS-th line from line N, in order (a proof is
--                    single-use; when a thread runs out it starts over, and
--                    the replays are refused and counted as failed)
--
-- `done` prints one `KP_RESULT key=value ...` line that load.sh parses:
-- requests, req/s, latency percentiles (microseconds), responses whose status
-- was not the expected one (`bad`), socket errors, and a count per status.

local method = os.getenv("KP_METHOD") or "GET"
local body = os.getenv("KP_BODY")
local content_type = os.getenv("KP_CONTENT_TYPE")
local bearer = os.getenv("KP_BEARER")
local auth_file = os.getenv("KP_AUTH_FILE")
local authorization = os.getenv("KP_AUTHORIZATION")
local amz_date = os.getenv("KP_AMZ_DATE")
local expect = tonumber(os.getenv("KP_EXPECT") or "")
local dpop_file = os.getenv("KP_DPOP_FILE")
local dpop_threads = tonumber(os.getenv("KP_THREADS") or "1")

wrk.method = method
if body and body ~= "" then
  wrk.body = body
end
if content_type and content_type ~= "" then
  wrk.headers["Content-Type"] = content_type
end
if bearer and bearer ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. bearer
end
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
  wrk.headers["X-Amz-Date"] = amz_date
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

local prepared = nil
local proofs = nil
local next_proof = 0

function init(args)
  statuses = {}
  if dpop_file and dpop_file ~= "" then
    proofs = {}
    local n = 0
    local mine = (thread_number or 1) - 1
    for line in io.lines(dpop_file) do
      if #line > 0 then
        if n % dpop_threads == mine then
          table.insert(proofs, line)
        end
        n = n + 1
      end
    end
    if #proofs == 0 then
      error("no DPoP proofs in " .. dpop_file)
    end
  end
  if auth_file and auth_file ~= "" then
    prepared = {}
    for line in io.lines(auth_file) do
      if #line > 0 then
        local headers = {}
        for name, value in pairs(wrk.headers) do
          headers[name] = value
        end
        headers["Authorization"] = line
        table.insert(prepared, wrk.format(nil, nil, headers, nil))
      end
    end
    if #prepared == 0 then
      error("no Authorization values in " .. auth_file)
    end
    math.randomseed(os.time() * 1009 + (thread_number or 0) * 7919)
  end
end

function request()
  if proofs then
    next_proof = next_proof % #proofs + 1
    wrk.headers["DPoP"] = proofs[next_proof]
    return wrk.format()
  end
  if prepared then
    return prepared[math.random(#prepared)]
  end
  return wrk.format()
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses") or {}
    for status, count in pairs(counts) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local bad = 0
  local parts = {}
  for status, count in pairs(merged) do
    local ok
    if expect then
      ok = status == expect
    else
      ok = status >= 200 and status < 300
    end
    if not ok then
      bad = bad + count
    end
    table.insert(parts, status .. ":" .. count)
  end
  table.sort(parts)
  local e = summary.errors
  local socket = e.connect + e.read + e.write + e.timeout
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "KP_RESULT requests=%d seconds=%.3f rps=%.1f p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f "
      .. "bad=%d socket=%d connect=%d read=%d write=%d timeout=%d statuses=%s\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    bad, socket, e.connect, e.read, e.write, e.timeout,
    (#parts > 0) and table.concat(parts, ",") or "none"))
end
