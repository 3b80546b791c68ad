-- wrk script for scripts/bench/ingest.sh: POSTs a small JSON webhook with a
-- distinct body on every request (run id + wrk thread + per-thread counter), so
-- hookline never answers "duplicate" (its event id defaults to the body's SHA-256).
-- Environment: BENCH_TOKEN (sent as "Authorization: Bearer ..."), BENCH_RUN_ID.
-- done() prints one machine-readable "BENCH_RESULT ..." line for ingest.sh.

local run_id = os.getenv("BENCH_RUN_ID") or tostring(os.time())
local token = os.getenv("BENCH_TOKEN") or ""
local counter = 0
local next_thread = 0

-- Runs in the main Lua state, once per wrk thread: give each thread an id.
function setup(thread)
    next_thread = next_thread + 1
    thread:set("thread_id", next_thread)
end

function init(args)
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Authorization"] = "Bearer " .. token
end

function request()
    counter = counter + 1
    local body = string.format(
        '{"type":"bench.event","run":"%s","thread":%d,"seq":%d,' ..
        '"data":{"number":"4371234567","trunk":"bench-trunk"}}',
        run_id, thread_id or 0, counter)
    return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCH_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d " ..
        "connect=%d read=%d write=%d status=%d timeout=%d\n",
        summary.requests, summary.duration,
        math.floor(latency:percentile(50)), math.floor(latency:percentile(99)),
        e.connect, e.read, e.write, e.status, e.timeout))
end
