-- wrk script of the benchmark: POST the request bodies named in BENCH_BODIES (files, ";"-separated,
-- sent in turn) with the headers in BENCH_HEADERS ("Name: value" lines), and print the summary
-- as one JSON line, in microseconds, for tools/bench/wrk.py.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.-)%s*$")
  if name then wrk.headers[name] = value end
end

local bodies = {}
for path in string.gmatch(os.getenv("BENCH_BODIES") or "", "[^;]+") do
  local file = assert(io.open(path, "rb"))
  bodies[#bodies + 1] = file:read("*a")
  file:close()
end

local requests = {}
local sent = 0

function init(args)
  for i, body in ipairs(bodies) do requests[i] = wrk.format(nil, nil, nil, body) end
end

function request()
  sent = sent + 1
  return requests[(sent % #requests) + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
