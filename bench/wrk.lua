-- wrk script for bench/run. Environment:
--   BENCH_METHOD  POST (default) or GET
--   BENCH_TOKEN   the caller's bearer token (sent to every target alike, so each request
--                 has the same size whether the target reads the header or not)
--   BENCH_CUSTOMERS  POST: how many customers the requests cycle through (default 4096 per
--                 wrk thread, each thread its own): a gateway records every POST and watches
--                 its customer, and in production POSTs for one customer are rare, so one
--                 customer for all (1) would measure waits on that one row
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

local customers = tonumber(os.getenv("BENCH_CUSTOMERS") or "4096")

if method == "POST" and customers > 1 then
  local formatted = {}
  local next_request = 1

  -- Each thread gets its own number, so the threads' customers differ.
  local thread_count = 0
  function setup(thread)
    thread_count = thread_count + 1
    thread:set("thread_number", thread_count)
  end

  -- The requests are formatted once, here; request() only hands them out in turn.
  function init(args)
    math.randomseed(1000003 * (thread_number or 1))
    for i = 1, customers do
      local guid = string.format("%08x-%04x-4%03x-8%03x-%06x%06x",
        math.random(0, 0xffffff) * 256 + math.random(0, 255), math.random(0, 0xffff),
        math.random(0, 0xfff), math.random(0, 0xfff), math.random(0, 0xffffff),
        math.random(0, 0xffffff))
      local path = wrk.path:gsub("/customers/[^/]+/", "/customers/" .. guid .. "/")
      formatted[i] = wrk.format(nil, path)
    end
  end

  function request()
    local r = formatted[next_request]
    next_request = next_request % customers + 1
    return r
  end
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
