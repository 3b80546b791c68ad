#!/usr/bin/env bash
# ingest.sh: ingest throughput of hookline against two libmicrohttpd baselines.
#
# Runs wrk (same script, connections, threads and duration, a distinct body per
# request) first against scripts/bench/baseline.c (answers 202, does no work),
# then against the durable floor, scripts/bench/durable_floor.c (appends each
# body to a file, one fdatasync per group commit, then answers 202: the least
# work that can honestly say "stored"), then against hookline's POST
# /hooks/bench (token auth, fsync'd SQLite group commit). Prints the rates,
# p50/p99 latencies and the ratios hookline/bare and hookline/floor (targets
# >= 0.5; the floor's is issue 12's), and checks that every 202 hookline counted
# is a row in the events table and every 202 the floor sent is a record in its file.
#
# Environment: DURATION [10s], CONNECTIONS [50], THREADS [2] (wrk threads),
#   HOOKLINE_BENCH_EXTRA_CONFIG (JSON object deep-merged into the top level of
#   the generated config, e.g. '{"audit": {"jsonl_path": "audit.jsonl"}}';
#   relative paths land in the run's temp dir); AUDIT_RUN [1]: after the plain run,
#   run everything again with the audit JSONL mirror on (0 skips it);
#   FLOOR_RUN [1]: 0 skips the durable floor (and its ratio);
#   STORE [sqlite]: `pg` also runs hookline on a PostgreSQL store in the same invocation
#   (a server of its own, `scripts/pg.sh start` in the temp dir, stopped on exit; a
#   fresh database; the same wrk load right after the SQLite run) and prints
#   `ratio pg/sqlite` (issue 12's target >= 0.35) with the same checks, the rows
#   counted through psql.
#   INSTANCES [1]: with STORE=pg, N > 1 also spreads the same wrk load over N hookline
#   instances on one fresh database (instance.id bench-0..N-1; N wrk processes at
#   once, -t1 and CONNECTIONS/N connections each, same duration) and prints their
#   aggregate rate against the one-instance pg run of the same invocation (`ratio
#   N-instances/1-instance`, a figure without a target), with the same checks.
# Exit: 0 ok (even below the ratio targets: the figures are printed), 1 a failed
#   check or a setup error. Checks: every 202 counted by hookline is a row in the
#   events table; rows exceed the 202s by at most CONNECTIONS (events in flight
#   when wrk stops are stored but never answered); no non-2xx answers or socket
#   errors against hookline; the same three for the floor (its 202s sent in full
#   against the records in its file, which must parse whole; no failed write or
#   fdatasync).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
HOOKLINE="$REPO/build/hookline"
LUA="$SCRIPT_DIR/ingest.lua"

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
FLOOR_RUN=${FLOOR_RUN:-1}
STORE=${STORE:-sqlite}
INSTANCES=${INSTANCES:-1}
TARGET_RATIO=0.5
TARGET_PG_RATIO=0.35 # issue 12: PostgreSQL ingest against SQLite ingest, same run
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
[[ $FLOOR_RUN == 0 || $FLOOR_RUN == 1 ]] || die "FLOOR_RUN must be 0 or 1"
[[ $STORE == sqlite || $STORE == pg ]] || die "STORE must be sqlite or pg (got '$STORE')"
[[ $INSTANCES =~ ^[1-9]$ ]] || die "INSTANCES must be 1..9 (got '$INSTANCES')"
if ((INSTANCES > 1)) && [[ $STORE != pg ]]; then
    die "INSTANCES > 1 needs STORE=pg (several instances share one PostgreSQL database)"
fi
((INSTANCES <= CONNECTIONS)) || die "INSTANCES ($INSTANCES) must not exceed CONNECTIONS"
for tool in wrk cc pkg-config curl python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required (wrk: apt-get install -y wrk)"
done
[[ -f $LUA ]] || die "missing $LUA"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hookline-bench.XXXXXX")
PIDS=()
PG_DIR=""  # set while our PostgreSQL (scripts/pg.sh) may run

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
    if [[ -n $PG_DIR ]]; then
        "$REPO/scripts/pg.sh" stop "$PG_DIR" >&2 || echo "ingest.sh: stopping PostgreSQL failed" >&2
    fi
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

# count_records FILE: the number of "LEN SP BODY LF" records in the durable
# floor's file; fails on a record that does not parse whole.
count_records() {
    python3 - "$1" <<'EOF'
import mmap, os, sys

path = sys.argv[1]
n = i = 0
if os.path.getsize(path) > 0:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        size = len(m)
        while i < size:
            sp = m.find(b" ", i, i + 24)
            head = m[i:sp] if sp > i else b""
            if not head.isdigit():
                sys.exit("%s: no record length at byte %d" % (path, i))
            end = sp + 1 + int(head)
            if end >= size or m[end] != 0x0A:
                sys.exit("%s: torn record at byte %d" % (path, i))
            i = end + 1
            n += 1
print(n)
EOF
}

# wrk_errors NAME: " key=value" for each non-zero error count of wrk's run, or "".
wrk_errors() {
    local k v errs=""
    for k in status connect read write timeout; do
        v=$(result_field "$TMP/$1.wrk" "$k")
        if [[ ${v:-0} != 0 ]]; then
            errs+=" $k=$v"
        fi
    done
    printf '%s' "$errs"
}

# pg_psql DB SQL: runs SQL on our PostgreSQL as its superuser (the password from the
# file pg.sh wrote, through the environment: never on a command line or printed); bounded.
pg_psql() {
    PGPASSWORD=$(cat "$PG_PASSFILE") PGCONNECT_TIMEOUT=5 PGOPTIONS='-c statement_timeout=60000' \
        timeout 90 psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U hookline \
        -d "$1" -c "$2"
}

# CPU seconds (user+system) our PostgreSQL has used so far: the postmaster, its
# children that exited (cutime/cstime) and the live ones (backends, WAL writer, ...).
pg_cpu_s() {
    local pm
    pm=$(head -n 1 "$PG_DIR/data/postmaster.pid" 2>/dev/null) || { echo 0; return; }
    [[ $pm =~ ^[0-9]+$ ]] || { echo 0; return; }
    python3 - "$pm" <<'EOF'
import os, sys

pm = sys.argv[1]
tck = os.sysconf("SC_CLK_TCK")
total = 0
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        with open("/proc/%s/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        continue
    if pid == pm:  # fields after "(comm)": state ppid ... utime(12) stime(13) cutime cstime
        total += sum(int(x) for x in fields[11:15])
    elif fields[1] == pm:
        total += int(fields[11]) + int(fields[12])
print("%.3f" % (total / tck))
EOF
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
if [[ $FLOOR_RUN == 1 ]]; then
    # shellcheck disable=SC2086 # the flags are a word list
    cc -std=c11 -O2 -Wall -pthread -o "$TMP/durable_floor" "$SCRIPT_DIR/durable_floor.c" \
        $mhd_flags || die "compiling durable_floor.c failed"
fi

# ---------------------------------------------------------------- PostgreSQL
# Started before any measurement (initdb's writes are done by then), idle until
# hookline's PostgreSQL run; stopped by the EXIT trap.
if [[ $STORE == pg ]]; then
    # As root, pg.sh runs the server as `postgres`, which must traverse $TMP.
    if [[ $(id -u) == 0 ]]; then chmod 711 "$TMP"; fi
    PG_DIR="$TMP/pg"
    pg_env=$("$REPO/scripts/pg.sh" start "$PG_DIR") || die "scripts/pg.sh start failed"
    PG_URL=$(sed -n 's/^HOOKLINE_TEST_PG_URL=//p' <<<"$pg_env")
    PG_PASSFILE=$(sed -n 's/^HOOKLINE_TEST_PG_PASSFILE=//p' <<<"$pg_env")
    PG_PORT=$(sed -n 's|^postgresql://[^@]*@127\.0\.0\.1:\([0-9]*\)/.*|\1|p' <<<"$PG_URL")
    [[ -n $PG_PORT && -f $PG_PASSFILE ]] || die "unexpected output from scripts/pg.sh start"
    command -v psql >/dev/null 2>&1 || die "psql is required for STORE=pg"
    PG_DB=hookline_bench
    pg_psql postgres "CREATE DATABASE $PG_DB;" || die "cannot create database $PG_DB"
    PG_URL="postgresql://hookline@127.0.0.1:$PG_PORT/$PG_DB"
fi

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
stop_pid "$BASE_PID"   # alone on the CPUs for the next run
PIDS=()

# ---------------------------------------------------------------- durable floor
# Same requests; each body appended to $TMP/floor.log and fdatasync'd (group
# commit) before its 202. On SIGTERM it prints "stats answered=N records=R
# syncs=S errors=E" (N: 202s sent in full).
if [[ $FLOOR_RUN == 1 ]]; then
    FLOOR_FILE="$TMP/floor.log"
    "$TMP/durable_floor" 0 "$FLOOR_FILE" >"$TMP/floor.out" 2>"$TMP/floor.err" &
    FLOOR_PID=$!
    PIDS+=("$FLOOR_PID")
    line=$(wait_for_line "$FLOOR_PID" "$TMP/floor.out" '^listening 127\.0\.0\.1:[0-9]+$') || {
        cat "$TMP/floor.err" >&2
        die "durable floor did not listen within ${PORT_WAIT_S}s"
    }
    FLOOR_PORT=${line##*:}
    curl -fsS --max-time 5 -o /dev/null -X POST -H 'Content-Type: application/json' \
        --data '{}' "http://127.0.0.1:$FLOOR_PORT/hooks/bench" || die "durable floor does not answer"
    run_wrk floor "http://127.0.0.1:$FLOOR_PORT/hooks/bench" "$FLOOR_PID"
    stop_pid "$FLOOR_PID" # it stores what is queued, then prints its stats
    PIDS=()
    line=$(grep -m1 '^stats ' "$TMP/floor.out") || {
        cat "$TMP/floor.err" >&2
        die "the durable floor printed no stats line when stopped"
    }
    f_field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$line"; }
    f_answered=$(f_field answered)
    f_syncs=$(f_field syncs)
    f_errors=$(f_field errors)
    f_records=$(count_records "$FLOOR_FILE") || die "the durable floor's file does not parse"
    rm -f "$FLOOR_FILE" # not needed any more; keep the disk as it was for hookline
fi

# ---------------------------------------------------------------- hookline
# run_hookline NAME STORE_URL [PASSWORD_REF]: writes $TMP/NAME.json (store.url STORE_URL,
# store.password PASSWORD_REF when given), checks it, serves it, runs wrk against it
# ($TMP/NAME.wrk, .cpu, .err), waits for the counters to settle and counts the events
# (SQLite: the file; PostgreSQL: through psql). Sets R_ACCEPTED, R_ROWS, R_OTHER,
# R_COMMITS, R_OPS and R_DBCPU (CPU seconds PostgreSQL used during the wrk run; 0 on SQLite).
run_hookline() {
    local name=$1 url=$2 pwref=${3:-} config="$TMP/$1.json" line port hl_pid prev i m queued
    local db_cpu0=0 db_cpu1=0
    # The "listening" line (with the port chosen for "port": 0) is logged at info;
    # hookline logs nothing per request at info, so this costs nothing in the run.
    python3 - "$config" "$url" "$pwref" <<'EOF' || die "cannot write the config (bad HOOKLINE_BENCH_EXTRA_CONFIG?)"
import json, os, sys

path, url, pwref = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = {
    "listen": {"host": "127.0.0.1", "port": 0},
    "sources": {"bench": {"verify": {"scheme": "token", "header": "Authorization",
                                     "prefix": "Bearer ", "secret": "env:BENCH_TOKEN"}}},
    "store": {"url": url},
    "log": {"level": "info"},
}
if pwref:
    cfg["store"]["password"] = pwref

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
    cfg["store"]["url"] = url
with open(path, "w") as f:
    json.dump(cfg, f, indent=2)
EOF
    "$HOOKLINE" check -c "$config" >"$TMP/$name.check.log" 2>&1 || {
        cat "$TMP/$name.check.log" >&2
        die "hookline check rejected the generated config ($name)"
    }

    (cd "$TMP" && exec "$HOOKLINE" serve -c "$config") >"$TMP/$name.out" 2>"$TMP/$name.err" &
    hl_pid=$!
    PIDS+=("$hl_pid")
    line=$(wait_for_line "$hl_pid" "$TMP/$name.err" '"msg":"listening"') || {
        cat "$TMP/$name.err" >&2
        die "hookline ($name) did not listen within ${PORT_WAIT_S}s"
    }
    port=$(sed -n 's/.*"port":"\([0-9]*\)".*/\1/p' <<<"$line")
    [[ -n $port ]] || die "no port in hookline's listening line: $line"
    curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$port/healthz" ||
        die "hookline ($name) /healthz fails"
    [[ $url != postgresql:* ]] || db_cpu0=$(pg_cpu_s)
    run_wrk "$name" "http://127.0.0.1:$port/hooks/bench" "$hl_pid"
    [[ $url != postgresql:* ]] || db_cpu1=$(pg_cpu_s)
    R_DBCPU=$(awk -v a="$db_cpu0" -v b="$db_cpu1" 'BEGIN { printf "%.3f\n", b - a }')

    # Wait until the counters stop moving (in-flight group commits finish).
    prev=-1
    R_ACCEPTED=0
    for ((i = 0; i < SETTLE_WAIT_S * 4; i++)); do
        m=$(fetch_metrics "$port") || die "GET /metrics failed"
        R_ACCEPTED=$(metrics_value "$m" "$S_ACC")
        queued=$(metrics_value "$m" hookline_store_write_queue)
        if [[ $R_ACCEPTED == "$prev" && $queued == 0 ]]; then
            break
        fi
        prev=$R_ACCEPTED
        sleep 0.25
    done
    if [[ $url == postgresql:* ]]; then
        R_ROWS=$(pg_psql "$PG_DB" 'SELECT count(*) FROM events;') ||
            die "counting the events in PostgreSQL failed"
    elif command -v sqlite3 >/dev/null 2>&1; then
        R_ROWS=$(sqlite3 -readonly "$DB" 'SELECT count(*) FROM events;')
    else
        R_ROWS=$(python3 -c 'import sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(c.execute("SELECT count(*) FROM events").fetchone()[0])' "$DB")
    fi
    R_OTHER=$(awk '/^hookline_events_received_total\{/ && $1 !~ /status="accepted"/ && $2 != 0' <<<"$m")
    R_COMMITS=$(metrics_value "$m" 'hookline_store_commits_total{result="ok"}')
    R_OPS=$(metrics_value "$m" hookline_store_committed_operations_total)
    stop_pid "$hl_pid"
    PIDS=()
    if grep -q '"level":"\(warn\|error\)"' "$TMP/$name.err"; then
        echo "---- $name warnings/errors (first 10) ----"
        grep '"level":"\(warn\|error\)"' "$TMP/$name.err" | head -n 10
    fi
}

S_ACC='hookline_events_received_total{source="bench",status="accepted"}'
DB="$TMP/bench.db"
if [[ -n ${HOOKLINE_BENCH_EXTRA_CONFIG:-} ]]; then
    echo "extra config: $HOOKLINE_BENCH_EXTRA_CONFIG"
fi
run_hookline hookline "sqlite:$DB"
accepted=$R_ACCEPTED rows=$R_ROWS other=$R_OTHER commits=$R_COMMITS ops=$R_OPS
if [[ $STORE == pg ]]; then
    rm -f "$DB" "$DB-wal" "$DB-shm" # keep the disk as it was for PostgreSQL
    run_hookline hookline-pg "$PG_URL" "file:$PG_PASSFILE"
    pg_accepted=$R_ACCEPTED pg_rows=$R_ROWS pg_other=$R_OTHER pg_commits=$R_COMMITS
    pg_ops=$R_OPS pg_dbcpu=$R_DBCPU
fi

# ---------------------------------------------------------------- several instances
# run_multi: INSTANCES hooklines on one fresh PostgreSQL database, one wrk each at
# once (CONNECTIONS split between them). Sets M_RPS (aggregate), M_ACCEPTED, M_ROWS,
# M_OTHER and M_ERRS.
run_multi() {
    local n=$INSTANCES i k port line pid conns config m prev acc
    local -a ports=() pids=() wpids=()
    pg_psql postgres "CREATE DATABASE hookline_bench_multi;" ||
        die "cannot create database hookline_bench_multi"
    local url="postgresql://hookline@127.0.0.1:$PG_PORT/hookline_bench_multi"
    for ((i = 0; i < n; i++)); do
        config="$TMP/multi-$i.json"
        python3 - "$config" "$url" "file:$PG_PASSFILE" "bench-$i" <<'EOF' || die "cannot write the config"
import json, sys
path, url, pwref, ident = sys.argv[1:5]
cfg = {"listen": {"host": "127.0.0.1", "port": 0},
       "sources": {"bench": {"verify": {"scheme": "token", "header": "Authorization",
                                        "prefix": "Bearer ", "secret": "env:BENCH_TOKEN"}}},
       "store": {"url": url, "password": pwref}, "instance": {"id": ident},
       "log": {"level": "info"}}
with open(path, "w") as f:
    json.dump(cfg, f, indent=2)
EOF
        (cd "$TMP" && exec "$HOOKLINE" serve -c "$config") >"$TMP/multi-$i.out" 2>"$TMP/multi-$i.err" &
        pid=$!
        PIDS+=("$pid")
        pids+=("$pid")
        line=$(wait_for_line "$pid" "$TMP/multi-$i.err" '"msg":"listening"') || {
            cat "$TMP/multi-$i.err" >&2
            die "hookline instance $i did not listen within ${PORT_WAIT_S}s"
        }
        port=$(sed -n 's/.*"port":"\([0-9]*\)".*/\1/p' <<<"$line")
        ports+=("$port")
    done
    echo "---- wrk against $n instances on one PostgreSQL database ----"
    for ((i = 0; i < n; i++)); do
        conns=$((CONNECTIONS / n + (i < CONNECTIONS % n ? 1 : 0)))
        # A run id of its own: the wrk processes' bodies must differ (else duplicates).
        BENCH_RUN_ID="$BENCH_RUN_ID-$i" wrk -t1 -c"$conns" -d"$DURATION" --latency -s "$LUA" \
            "http://127.0.0.1:${ports[$i]}/hooks/bench" >"$TMP/multi-$i.wrk" 2>&1 &
        wpids+=("$!")
    done
    for ((i = 0; i < n; i++)); do
        wait "${wpids[$i]}" || { cat "$TMP/multi-$i.wrk" >&2; die "wrk failed against instance $i"; }
        grep -q '^BENCH_RESULT ' "$TMP/multi-$i.wrk" || die "no BENCH_RESULT from wrk $i"
    done
    M_RPS=$(for ((i = 0; i < n; i++)); do
        printf '%s %s\n' "$(result_field "$TMP/multi-$i.wrk" requests)" \
            "$(result_field "$TMP/multi-$i.wrk" duration_us)"
    done | awk '{ r += $1; if ($2 > d) d = $2 } END { printf "%.0f\n", (d > 0 ? r * 1e6 / d : 0) }')
    M_ACCEPTED=0
    M_OTHER=""
    M_ERRS=""
    for ((i = 0; i < n; i++)); do
        prev=-1
        for ((k = 0; k < SETTLE_WAIT_S * 4; k++)); do
            m=$(fetch_metrics "${ports[$i]}") || die "GET /metrics failed (instance $i)"
            acc=$(metrics_value "$m" "$S_ACC")
            if [[ $acc == "$prev" && $(metrics_value "$m" hookline_store_write_queue) == 0 ]]; then
                break
            fi
            prev=$acc
            sleep 0.25
        done
        M_ACCEPTED=$((M_ACCEPTED + acc))
        M_OTHER+=$(awk '/^hookline_events_received_total\{/ && $1 !~ /status="accepted"/ && $2 != 0' <<<"$m")
        M_ERRS+=$(wrk_errors "multi-$i")
    done
    M_ROWS=$(pg_psql hookline_bench_multi 'SELECT count(*) FROM events;') ||
        die "counting the events in PostgreSQL failed"
    for pid in "${pids[@]}"; do
        stop_pid "$pid"
    done
    PIDS=()
    for ((i = 0; i < n; i++)); do
        if grep -q '"level":"\(warn\|error\)"' "$TMP/multi-$i.err"; then
            echo "---- instance $i warnings/errors (first 5) ----"
            grep '"level":"\(warn\|error\)"' "$TMP/multi-$i.err" | head -n 5
        fi
    done
}
if ((INSTANCES > 1)); then
    run_multi
fi

# ---------------------------------------------------------------- summary
# run_cpu NAME: "wrk_cores server_cores wrk_us_per_req server_us_per_req" of a wrk run
# (CPU per answered request: what a ratio target has to fit into on these cores).
run_cpu() {
    local wrk_s srv_s
    read -r wrk_s srv_s <"$TMP/$1.cpu"
    awk -v w="$wrk_s" -v s="$srv_s" -v n="$(result_field "$TMP/$1.wrk" requests)" \
        -v d="$(result_field "$TMP/$1.wrk" duration_us)" 'BEGIN {
        t = d / 1e6
        printf "%.2f %.2f %.1f %.1f\n", (t > 0 ? w / t : 0), (t > 0 ? s / t : 0),
            (n > 0 ? w * 1e6 / n : 0), (n > 0 ? s * 1e6 / n : 0) }'
}
ratio_of() { # ratio_of A B [TARGET] -> A/B with 2 decimals and its target marker
    awk -v a="$1" -v b="$2" -v t="${3:-$TARGET_RATIO}" 'BEGIN {
        r = sprintf("%.2f", (b > 0 ? a / b : 0)); printf "%s (target >= %s%s)\n", r, t,
            (r + 0 >= t ? "" : ": BELOW TARGET") }'
}
# stored_text ANSWERED STORED WHAT: "202s stored: ..." (STORED may exceed ANSWERED
# by the requests in flight when wrk stopped: stored, never answered).
stored_text() {
    local d=$(($2 - $1))
    if ((d == 0)); then
        printf '202s stored: %s = %s %s' "$1" "$3" "$2"
    else
        printf '202s stored: %s, %s %s: %+d unanswered' "$1" "$3" "$2" "$d"
    fi
}

read -r b_rps b_p50 b_p99 < <(summary_fields baseline)
read -r h_rps h_p50 h_p99 < <(summary_fields hookline)
read -r b_wrk_c b_srv_c b_wrk_us b_srv_us < <(run_cpu baseline)
read -r h_wrk_c h_srv_c h_wrk_us h_srv_us < <(run_cpu hookline)
if [[ $FLOOR_RUN == 1 ]]; then
    read -r f_rps f_p50 f_p99 < <(summary_fields floor)
    read -r f_wrk_c f_srv_c f_wrk_us f_srv_us < <(run_cpu floor)
fi
if [[ $STORE == pg ]]; then
    read -r p_rps p_p50 p_p99 < <(summary_fields hookline-pg)
    read -r p_wrk_c p_srv_c p_wrk_us p_srv_us < <(run_cpu hookline-pg)
    # PostgreSQL's own CPU during the pg run (its backends do the inserts).
    read -r p_db_c p_db_us < <(awk -v s="$pg_dbcpu" \
        -v n="$(result_field "$TMP/hookline-pg.wrk" requests)" \
        -v d="$(result_field "$TMP/hookline-pg.wrk" duration_us)" 'BEGIN {
        t = d / 1e6; printf "%.2f %.1f\n", (t > 0 ? s / t : 0), (n > 0 ? s * 1e6 / n : 0) }')
fi

echo
echo "==== ingest benchmark summary ===="
printf 'baseline: %s req/s  p50 %s ms  p99 %s ms\n' "$b_rps" "$b_p50" "$b_p99"
if [[ $FLOOR_RUN == 1 ]]; then
    printf 'floor:    %s req/s  p50 %s ms  p99 %s ms  (%s)\n' "$f_rps" "$f_p50" "$f_p99" \
        "$(stored_text "$f_answered" "$f_records" records)"
fi
# Rows may exceed the 202s counted by at most the connections in flight when wrk
# stopped: wrk closes them, hookline still stores (and does not count) those
# events because no answer was sent. A 202 without a row is never acceptable.
# The same holds for the floor's records.
unanswered=$((rows - accepted))
printf 'hookline: %s req/s  p50 %s ms  p99 %s ms  (%s)\n' "$h_rps" "$h_p50" "$h_p99" \
    "$(stored_text "$accepted" "$rows" rows)"
if [[ $STORE == pg ]]; then
    printf 'pg:       %s req/s  p50 %s ms  p99 %s ms  (%s)\n' "$p_rps" "$p_p50" "$p_p99" \
        "$(stored_text "$pg_accepted" "$pg_rows" rows)"
fi
printf 'ratio:    hookline/baseline %s\n' "$(ratio_of "$h_rps" "$b_rps")"
if [[ $FLOOR_RUN == 1 ]]; then
    printf 'ratio:    hookline/floor    %s\n' "$(ratio_of "$h_rps" "$f_rps")"
fi
if [[ $STORE == pg ]]; then
    printf 'ratio pg/sqlite: %s\n' "$(ratio_of "$p_rps" "$h_rps" "$TARGET_PG_RATIO")"
fi
if ((INSTANCES > 1)); then
    printf 'pg x%d:    %s req/s aggregate over %d instances (%s)\n' "$INSTANCES" "$M_RPS" \
        "$INSTANCES" "$(stored_text "$M_ACCEPTED" "$M_ROWS" rows)"
    printf 'ratio %d-instances/1-instance (pg): %s\n' "$INSTANCES" \
        "$(awk -v a="$M_RPS" -v b="$p_rps" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
fi
cpu="cpu:      baseline run: wrk $b_wrk_c + server $b_srv_c cores;"
cpr="cpu/req:  baseline server $b_srv_us us,"
wrk_us="$b_wrk_us"
if [[ $FLOOR_RUN == 1 ]]; then
    cpu+=" floor run: wrk $f_wrk_c + server $f_srv_c cores;"
    cpr+=" floor $f_srv_us us,"
    wrk_us+=" / $f_wrk_us"
fi
printf '%s hookline run: wrk %s + server %s cores (of %d)\n' "$cpu" "$h_wrk_c" "$h_srv_c" "$(nproc)"
printf '%s hookline %s us; wrk %s / %s us\n' "$cpr" "$h_srv_us" "$wrk_us" "$h_wrk_us"
if [[ $STORE == pg ]]; then
    printf 'cpu pg:   pg run: wrk %s + hookline %s + postgres %s cores (of %d); per request:' \
        "$p_wrk_c" "$p_srv_c" "$p_db_c" "$(nproc)"
    printf ' hookline %s us, postgres %s us, wrk %s us\n' "$p_srv_us" "$p_db_us" "$p_wrk_us"
fi
awk -v c="$commits" -v o="$ops" 'BEGIN {
    printf "store:    %d group commits, %.1f events per commit on average\n", c, (c > 0 ? o / c : 0) }'
if [[ $STORE == pg ]]; then
    awk -v c="$pg_commits" -v o="$pg_ops" 'BEGIN {
    printf "store pg: %d group commits, %.1f events per commit on average\n", c, (c > 0 ? o / c : 0) }'
fi
if [[ $FLOOR_RUN == 1 ]]; then
    awk -v s="$f_syncs" -v r="$f_records" 'BEGIN {
    printf "floor io: %d fdatasyncs, %.1f records per fdatasync on average\n", s, (s > 0 ? r / s : 0) }'
fi

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
errs=$(wrk_errors hookline)
if [[ -n $errs ]]; then
    echo "FAIL: wrk against hookline reported errors (status = non-2xx/3xx):$errs" >&2
    grep -E 'Non-2xx|Socket errors' "$TMP/hookline.wrk" >&2 || true
    fail=1
fi
if [[ $STORE == pg ]]; then
    # The same checks for the PostgreSQL run (rows counted through psql).
    unanswered=$((pg_rows - pg_accepted))
    if ((unanswered < 0)); then
        echo "FAIL: hookline on PostgreSQL counted $pg_accepted x 202 but its events table has" \
            "only $pg_rows rows: $((-unanswered)) answered events are not stored" >&2
        fail=1
    elif ((unanswered > CONNECTIONS)); then
        echo "FAIL: PostgreSQL's events table has $pg_rows rows, $unanswered more than the" \
            "$pg_accepted 202s counted; at most $CONNECTIONS can be in flight when wrk stops" >&2
        fail=1
    elif ((unanswered > 0)); then
        echo "note: pg run: $unanswered events were stored but never answered (wrk closed" \
            "their connections when it stopped)"
    fi
    if [[ -n $pg_other ]]; then
        echo "FAIL: hookline on PostgreSQL answered other than 202 accepted:" >&2
        printf '  %s\n' "$pg_other" >&2
        fail=1
    fi
    errs=$(wrk_errors hookline-pg)
    if [[ -n $errs ]]; then
        echo "FAIL: wrk against hookline on PostgreSQL reported errors:$errs" >&2
        grep -E 'Non-2xx|Socket errors' "$TMP/hookline-pg.wrk" >&2 || true
        fail=1
    fi
fi
if ((INSTANCES > 1)); then
    unanswered=$((M_ROWS - M_ACCEPTED))
    if ((unanswered < 0 || unanswered > CONNECTIONS)); then
        echo "FAIL: $INSTANCES instances counted $M_ACCEPTED x 202, the events table has" \
            "$M_ROWS rows" >&2
        fail=1
    fi
    if [[ -n $M_OTHER || -n $M_ERRS ]]; then
        echo "FAIL: the instances answered other than 202 accepted or wrk saw errors:" \
            "$M_OTHER$M_ERRS" >&2
        fail=1
    fi
fi
if [[ $FLOOR_RUN == 1 ]]; then
    f_extra=$((f_records - f_answered))
    if ((f_extra < 0)); then
        echo "FAIL: the durable floor sent $f_answered x 202 but its file holds only" \
            "$f_records records" >&2
        fail=1
    elif ((f_extra > CONNECTIONS)); then
        echo "FAIL: the durable floor's file holds $f_records records, $f_extra more than the" \
            "$f_answered 202s sent; at most $CONNECTIONS can be in flight when wrk stops" >&2
        fail=1
    fi
    if ((f_errors > 0)); then
        echo "FAIL: the durable floor's write or fdatasync failed ($f_errors batches):" >&2
        cat "$TMP/floor.err" >&2
        fail=1
    fi
    errs=$(wrk_errors floor)
    if [[ -n $errs ]]; then
        echo "FAIL: wrk against the durable floor reported errors:$errs" >&2
        grep -E 'Non-2xx|Socket errors' "$TMP/floor.wrk" >&2 || true
        fail=1
    fi
fi
# Issue "Audit trail and operations": the same measurement with the audit chain and the
# JSON Lines mirror on must keep the ratio. Run once more (with its own baseline, so the
# ratio is again from one invocation) unless this already is that run or AUDIT_RUN=0.
if [[ $fail == 0 && -z ${HOOKLINE_BENCH_EXTRA_CONFIG:-} && ${AUDIT_RUN:-1} == 1 ]]; then
    echo
    if [[ -n $PG_DIR ]]; then # the next run starts a PostgreSQL of its own
        "$REPO/scripts/pg.sh" stop "$PG_DIR" >&2 || die "stopping PostgreSQL failed"
        PG_DIR=""
    fi
    echo "==== again with the audit JSONL mirror on (AUDIT_RUN=0 skips this) ===="
    HOOKLINE_BENCH_EXTRA_CONFIG='{"audit": {"jsonl_path": "audit.jsonl"}}' "$0" || fail=1
fi
exit "$fail"
