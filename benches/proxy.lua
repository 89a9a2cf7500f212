-- wrk script used by benches/run.
--
-- WRK_TARGET_URL  (optional) absolute-form URL of the origin; when set, wrk is
--                 pointed at a forward proxy and sends `GET http://... HTTP/1.1`
--                 with a matching Host header.
-- WRK_PROXY_AUTH  (optional) value for a Proxy-Authorization header.
--
-- done() prints one machine-readable RESULT line that run parses.

local target = os.getenv("WRK_TARGET_URL")
local auth = os.getenv("WRK_PROXY_AUTH")

if target and target ~= "" then
  wrk.path = target
  wrk.headers["Host"] = target:match("^%a+://([^/]+)")
end
if auth and auth ~= "" then
  wrk.headers["Proxy-Authorization"] = auth
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%.0f p99_us=%.0f p999_us=%.0f connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect, e.read, e.write, e.status, e.timeout))
end
