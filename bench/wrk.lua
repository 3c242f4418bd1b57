-- wrk script for bench/run. Environment:
--   BENCH_METHOD  POST (default) or GET
--   BENCH_TOKEN   the caller's bearer token (sent to every target alike, so each request
--                 has the same size whether the target reads the header or not)
-- done() prints one machine-readable line, "BENCH_JSON {...}", that bench/run collects;
-- latencies are in microseconds.
local method = os.getenv("BENCH_METHOD") or "POST"
local token = os.getenv("BENCH_TOKEN") or error("BENCH_TOKEN is not set")

wrk.method = method
wrk.headers["Authorization"] = "Bearer " .. token
if method == "POST" then
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"qualification":"StateOwnedEntity"}'
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d,"non2xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
