#!/usr/bin/env bash
# ingest.sh: ingest throughput of hookline against a bare libmicrohttpd baseline.
#
# Runs wrk (same script, connections, threads and duration) first against
# scripts/bench/baseline.c (answers 202, does no work) and then against
# hookline's POST /hooks/bench (token auth, fsync'd SQLite group commit), prints
# both rates, p50/p99 latencies and the ratio hookline/baseline (target >= 0.5),
# and checks that every 202 hookline counted is a row in the events table.
#
# Environment: DURATION [10s], CONNECTIONS [50], THREADS [2] (wrk threads),
#   HOOKLINE_BENCH_EXTRA_CONFIG (JSON object deep-merged into the top level of
#   the generated config, e.g. '{"audit": {"jsonl_path": "audit.jsonl"}}';
#   relative paths land in the run's temp dir); AUDIT_RUN [1]: after the plain run,
#   run everything again with the audit JSONL mirror on (0 skips it).
# Exit: 0 ok (even below the ratio target: the figures are printed), 1 a failed
#   check or a setup error. Checks: every 202 counted by hookline is a row in the
#   events table; rows exceed the 202s by at most CONNECTIONS (events in flight
#   when wrk stops are stored but never answered); no non-2xx answers or socket
#   errors against hookline.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
HOOKLINE="$REPO/build/hookline"
LUA="$SCRIPT_DIR/ingest.lua"

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
TARGET_RATIO=0.5
PORT_WAIT_S=15     # bounded wait for a server to listen
SETTLE_WAIT_S=15   # bounded wait for hookline's counters to settle after wrk
STOP_WAIT_S=10     # bounded wait for a server to exit after SIGTERM

die() {
    echo "ingest.sh: $*" >&2
    exit 1
}

[[ $DURATION =~ ^[1-9][0-9]*[smh]?$ ]] || die "DURATION must look like 10 or 10s (got '$DURATION')"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer"
((THREADS <= CONNECTIONS)) || die "THREADS ($THREADS) must not exceed CONNECTIONS ($CONNECTIONS)"
for tool in wrk cc pkg-config curl python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required (wrk: apt-get install -y wrk)"
done
[[ -f $LUA ]] || die "missing $LUA"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hookline-bench.XXXXXX")
PIDS=()

# Sends SIGTERM to one process we started, waits a bounded time, then SIGKILL.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < STOP_WAIT_S * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "ingest.sh: pid $pid ignored SIGTERM for ${STOP_WAIT_S}s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for_line PID FILE REGEX: waits until FILE has a line matching REGEX
# while PID is alive; prints the line.
wait_for_line() {
    local pid=$1 file=$2 re=$3 i line
    for ((i = 0; i < PORT_WAIT_S * 10; i++)); do
        if line=$(grep -E -m1 "$re" "$file" 2>/dev/null); then
            printf '%s\n' "$line"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# CPU seconds (user+system) a live process has used so far.
proc_cpu_s() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    stat=${stat##*) }   # drop "pid (comm) ", comm may contain spaces
    # After the strip, utime and stime are fields 12 and 13.
    awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($12 + $13) / t }' <<<"$stat"
}

# result_field FILE KEY: a value from wrk's BENCH_RESULT line (see ingest.lua).
result_field() {
    sed -n "s/^BENCH_RESULT .*\\b$2=\\([0-9]*\\).*/\\1/p" "$1" | head -n1
}

# run_wrk NAME URL SERVER_PID: runs wrk, shows its report, leaves
# $TMP/NAME.wrk (wrk output) and $TMP/NAME.cpu ("wrk_s server_s").
run_wrk() {
    local name=$1 url=$2 spid=$3 cpu0 cpu1
    cpu0=$(proc_cpu_s "$spid")
    # `times` in the subshell reports exactly wrk's CPU (its only child).
    (
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$LUA" "$url" \
            >"$TMP/$name.wrk" 2>&1 || exit 1
        times >"$TMP/$name.times" # no pipe: a forked `times` would see no children
    ) || {
        cat "$TMP/$name.wrk" >&2
        die "wrk failed against $name"
    }
    cpu1=$(proc_cpu_s "$spid")
    awk -v a="$cpu0" -v b="$cpu1" '
        function secs(s,   m) { m = s; sub(/m.*/, "", m); sub(/^[0-9]+m/, "", s); sub(/s$/, "", s); return m * 60 + s }
        NR == 2 { printf "%.3f %.3f\n", secs($1) + secs($2), b - a }' "$TMP/$name.times" >"$TMP/$name.cpu"
    grep -q '^BENCH_RESULT ' "$TMP/$name.wrk" || {
        cat "$TMP/$name.wrk" >&2
        die "wrk printed no BENCH_RESULT line for $name"
    }
    echo "---- wrk against $name ($url) ----"
    grep -v '^BENCH_RESULT ' "$TMP/$name.wrk"
}

# summary_fields NAME: "rps p50_ms p99_ms" from the wrk result.
summary_fields() {
    local f="$TMP/$1.wrk"
    awk -v n="$(result_field "$f" requests)" -v d="$(result_field "$f" duration_us)" \
        -v p50="$(result_field "$f" p50_us)" -v p99="$(result_field "$f" p99_us)" \
        'BEGIN { printf "%.0f %.2f %.2f\n", (d > 0 ? n * 1e6 / d : 0), p50 / 1000, p99 / 1000 }'
}

metrics_value() { # metrics_value TEXT SERIES -> value (0 when the series is absent)
    awk -v s="$2" '$1 == s { v = $2 } END { print (v == "" ? 0 : v) }' <<<"$1"
}

fetch_metrics() {
    curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics"
}

# ---------------------------------------------------------------- build
if [[ ! -x $HOOKLINE ]]; then
    echo "building hookline in $REPO/build ..."
    mkdir -p "$REPO/build"
    if ! (cd "$REPO/build" && cmake .. && make -j2) >"$TMP/build.log" 2>&1; then
        tail -n 40 "$TMP/build.log" >&2
        die "building hookline failed"
    fi
fi
mhd_flags=$(pkg-config --cflags --libs libmicrohttpd) || die "pkg-config cannot find libmicrohttpd"
# shellcheck disable=SC2086 # the flags are a word list
cc -std=c11 -O2 -Wall -o "$TMP/baseline" "$SCRIPT_DIR/baseline.c" $mhd_flags ||
    die "compiling baseline.c failed"

BENCH_TOKEN=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
BENCH_RUN_ID=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
export BENCH_TOKEN BENCH_RUN_ID

echo "ingest benchmark: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $(nproc) CPUs, 127.0.0.1 only"

# ---------------------------------------------------------------- baseline
"$TMP/baseline" 0 >"$TMP/baseline.out" 2>"$TMP/baseline.err" &
BASE_PID=$!
PIDS+=("$BASE_PID")
line=$(wait_for_line "$BASE_PID" "$TMP/baseline.out" '^listening 127\.0\.0\.1:[0-9]+$') || {
    cat "$TMP/baseline.err" >&2
    die "baseline did not listen within ${PORT_WAIT_S}s"
}
BASE_PORT=${line##*:}
curl -fsS --max-time 5 -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data '{}' "http://127.0.0.1:$BASE_PORT/hooks/bench" || die "baseline does not answer"
run_wrk baseline "http://127.0.0.1:$BASE_PORT/hooks/bench" "$BASE_PID"
stop_pid "$BASE_PID"   # alone on the CPUs for the hookline run
PIDS=()

# ---------------------------------------------------------------- hookline
DB="$TMP/bench.db"
CONFIG="$TMP/hookline.json"
# The "listening" line (with the port chosen for "port": 0) is logged at info;
# hookline logs nothing per request at info, so this costs nothing in the run.
python3 - "$CONFIG" "$DB" <<'EOF' || die "cannot write the config (bad HOOKLINE_BENCH_EXTRA_CONFIG?)"
import json, os, sys

path, db = sys.argv[1], sys.argv[2]
cfg = {
    "listen": {"host": "127.0.0.1", "port": 0},
    "sources": {"bench": {"verify": {"scheme": "token", "header": "Authorization",
                                     "prefix": "Bearer ", "secret": "env:BENCH_TOKEN"}}},
    "store": {"url": "sqlite:" + db},
    "log": {"level": "info"},
}

def merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v

extra = os.environ.get("HOOKLINE_BENCH_EXTRA_CONFIG", "").strip()
if extra:
    try:
        e = json.loads(extra)
    except ValueError as exc:
        sys.exit("HOOKLINE_BENCH_EXTRA_CONFIG is not JSON: %s" % exc)
    if not isinstance(e, dict):
        sys.exit("HOOKLINE_BENCH_EXTRA_CONFIG must be a JSON object")
    merge(cfg, e)
    # The benchmark relies on these; an override would make it measure nothing.
    cfg["listen"]["host"] = "127.0.0.1"
with open(path, "w") as f:
    json.dump(cfg, f, indent=2)
EOF
if [[ -n ${HOOKLINE_BENCH_EXTRA_CONFIG:-} ]]; then
    echo "extra config: $HOOKLINE_BENCH_EXTRA_CONFIG"
fi
"$HOOKLINE" check -c "$CONFIG" >"$TMP/check.log" 2>&1 || {
    cat "$TMP/check.log" >&2
    die "hookline check rejected the generated config"
}

(cd "$TMP" && exec "$HOOKLINE" serve -c "$CONFIG") >"$TMP/hookline.out" 2>"$TMP/hookline.err" &
HL_PID=$!
PIDS+=("$HL_PID")
line=$(wait_for_line "$HL_PID" "$TMP/hookline.err" '"msg":"listening"') || {
    cat "$TMP/hookline.err" >&2
    die "hookline did not listen within ${PORT_WAIT_S}s"
}
HL_PORT=$(sed -n 's/.*"port":"\([0-9]*\)".*/\1/p' <<<"$line")
[[ -n $HL_PORT ]] || die "no port in hookline's listening line: $line"
curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$HL_PORT/healthz" || die "hookline /healthz fails"
run_wrk hookline "http://127.0.0.1:$HL_PORT/hooks/bench" "$HL_PID"

# Wait until the counters stop moving (in-flight group commits finish).
S_ACC='hookline_events_received_total{source="bench",status="accepted"}'
prev=-1
accepted=0
for ((i = 0; i < SETTLE_WAIT_S * 4; i++)); do
    m=$(fetch_metrics "$HL_PORT") || die "GET /metrics failed"
    accepted=$(metrics_value "$m" "$S_ACC")
    queued=$(metrics_value "$m" hookline_store_write_queue)
    if [[ $accepted == "$prev" && $queued == 0 ]]; then
        break
    fi
    prev=$accepted
    sleep 0.25
done
if command -v sqlite3 >/dev/null 2>&1; then
    rows=$(sqlite3 -readonly "$DB" 'SELECT count(*) FROM events;')
else
    rows=$(python3 -c 'import sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(c.execute("SELECT count(*) FROM events").fetchone()[0])' "$DB")
fi
other=$(awk '/^hookline_events_received_total\{/ && $1 !~ /status="accepted"/ && $2 != 0' <<<"$m")
commits=$(metrics_value "$m" 'hookline_store_commits_total{result="ok"}')
ops=$(metrics_value "$m" hookline_store_committed_operations_total)
stop_pid "$HL_PID"
PIDS=()
if grep -q '"level":"\(warn\|error\)"' "$TMP/hookline.err"; then
    echo "---- hookline warnings/errors (first 10) ----"
    grep '"level":"\(warn\|error\)"' "$TMP/hookline.err" | head -n 10
fi

# ---------------------------------------------------------------- summary
read -r b_rps b_p50 b_p99 < <(summary_fields baseline)
read -r h_rps h_p50 h_p99 < <(summary_fields hookline)
read -r b_wrk_cpu b_srv_cpu <"$TMP/baseline.cpu"
read -r h_wrk_cpu h_srv_cpu <"$TMP/hookline.cpu"
ratio=$(awk -v h="$h_rps" -v b="$b_rps" 'BEGIN { printf "%.2f", (b > 0 ? h / b : 0) }')
met=$(awk -v r="$ratio" -v t="$TARGET_RATIO" 'BEGIN { print (r >= t ? "" : ": BELOW TARGET") }')
wall_s=$(awk -v d="$(result_field "$TMP/hookline.wrk" duration_us)" 'BEGIN { print d / 1e6 }')
wall_b=$(awk -v d="$(result_field "$TMP/baseline.wrk" duration_us)" 'BEGIN { print d / 1e6 }')

echo
echo "==== ingest benchmark summary ===="
printf 'baseline: %s req/s  p50 %s ms  p99 %s ms\n' "$b_rps" "$b_p50" "$b_p99"
# Rows may exceed the 202s counted by at most the connections in flight when wrk
# stopped: wrk closes them, hookline still stores (and does not count) those
# events because no answer was sent. A 202 without a row is never acceptable.
unanswered=$((rows - accepted))
if ((unanswered == 0)); then
    stored="202s stored: $accepted = rows $rows"
else
    stored="202s stored: $accepted, rows $rows: $(printf '%+d' "$unanswered") unanswered"
fi
printf 'hookline: %s req/s  p50 %s ms  p99 %s ms  (%s)\n' "$h_rps" "$h_p50" "$h_p99" "$stored"
printf 'ratio:    %s (target >= %s%s)\n' "$ratio" "$TARGET_RATIO" "$met"
awk -v bw="$b_wrk_cpu" -v bs="$b_srv_cpu" -v hw="$h_wrk_cpu" -v hs="$h_srv_cpu" \
    -v tb="$wall_b" -v th="$wall_s" -v n="$(nproc)" 'BEGIN {
    printf "cpu:      baseline run: wrk %.2f + server %.2f cores; hookline run: wrk %.2f + server %.2f cores (of %d)\n",
        (tb > 0 ? bw / tb : 0), (tb > 0 ? bs / tb : 0), (th > 0 ? hw / th : 0), (th > 0 ? hs / th : 0), n }'
# CPU per answered request: what a ratio target has to fit into on these cores.
awk -v bs="$b_srv_cpu" -v hs="$h_srv_cpu" -v bw="$b_wrk_cpu" -v hw="$h_wrk_cpu" \
    -v br="$b_rps" -v hr="$h_rps" -v tb="$wall_b" -v th="$wall_s" 'BEGIN {
    bn = br * tb; hn = hr * th
    printf "cpu/req:  baseline server %.1f us, hookline %.1f us; wrk %.1f / %.1f us\n",
        (bn > 0 ? bs * 1e6 / bn : 0), (hn > 0 ? hs * 1e6 / hn : 0),
        (bn > 0 ? bw * 1e6 / bn : 0), (hn > 0 ? hw * 1e6 / hn : 0) }'
awk -v c="$commits" -v o="$ops" 'BEGIN {
    printf "store:    %d group commits, %.1f events per commit on average\n", c, (c > 0 ? o / c : 0) }'

fail=0
if ((unanswered < 0)); then
    echo "FAIL: hookline counted $accepted x 202 but the events table has only $rows rows:" \
        "$((-unanswered)) answered events are not stored" >&2
    fail=1
elif ((unanswered > CONNECTIONS)); then
    echo "FAIL: the events table has $rows rows, $unanswered more than the $accepted 202s" \
        "counted; at most $CONNECTIONS (one per connection) can be in flight when wrk stops" >&2
    fail=1
elif ((unanswered > 0)); then
    echo "note: $unanswered events were stored but never answered: wrk closed their" \
        "connections when it stopped (at most one per connection, $CONNECTIONS); hookline" \
        "counts a 202 only once it is sent"
fi
if [[ -n $other ]]; then
    echo "FAIL: hookline answered other than 202 accepted:" >&2
    printf '  %s\n' "$other" >&2
    fail=1
fi
errs=""
for k in status connect read write timeout; do
    v=$(result_field "$TMP/hookline.wrk" "$k")
    if [[ ${v:-0} != 0 ]]; then
        errs+=" $k=$v"
    fi
done
if [[ -n $errs ]]; then
    echo "FAIL: wrk against hookline reported errors (status = non-2xx/3xx):$errs" >&2
    grep -E 'Non-2xx|Socket errors' "$TMP/hookline.wrk" >&2 || true
    fail=1
fi
# Issue "Audit trail and operations": the same measurement with the audit chain and the
# JSON Lines mirror on must keep the ratio. Run once more (with its own baseline, so the
# ratio is again from one invocation) unless this already is that run or AUDIT_RUN=0.
if [[ $fail == 0 && -z ${HOOKLINE_BENCH_EXTRA_CONFIG:-} && ${AUDIT_RUN:-1} == 1 ]]; then
    echo
    echo "==== again with the audit JSONL mirror on (AUDIT_RUN=0 skips this) ===="
    HOOKLINE_BENCH_EXTRA_CONFIG='{"audit": {"jsonl_path": "audit.jsonl"}}' "$0" || fail=1
fi
exit "$fail"
