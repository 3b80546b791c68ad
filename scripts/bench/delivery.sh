#!/usr/bin/env bash
# delivery.sh: delivery to DIDWW against the bundled simulator (didww-sim).
#
# Builds hookline and didww-sim (RelWithDebInfo, build/), then runs
# scripts/bench/delivery_bench.py, which starts didww-sim with LATENCY_MS of added
# latency and a rate limit of RATE_LIMIT per second, and hookline (rule
# scripts/bench/delivery_rule.lua, didww.rate_limit_per_s = RATE_LIMIT) and measures:
#   (a) a backlog of 600 jobs over 300 DIDs, queued at once (hookline first runs
#       without didww.api_key, then restarts with it): sustained requests per second
#       at the simulator / the limit (target >= 0.95) and the 429s it answered (0);
#   (b) 1,000 updates to 10 DIDs queued at once: requests sent per job (target
#       <= 0.02, through coalescing), with skip_noop true and false;
#   (c) one webhook at a time on an idle service: p50/p99 from the 202 to the PATCH
#       arriving at the simulator, beyond the simulator's latency (target <= 5 ms),
#       with skip_noop true (a GET first) and false;
#   (d) the request budget at DIDWW's real latency, default delivery settings (no
#       delivery.* key set): a backlog of 400 DIDs named by id (50 already in place, so
#       no-ops) and one of 200 named by number, each at every latency of D_LATENCIES
#       (a simulator of its own): jobs per second (first request to last answer) and
#       requests per job; targets at 250 ms: >= 0.95 of the budget in jobs/s, <= 1.05
#       requests per job; always: zero 429s, no PATCH of a DID already in place.
# Checks along the way: every webhook is a 202 with one job, all jobs end done (or
# superseded in (b)), every DID ends in the state its last job set, all answers 200.
#
# Environment: LATENCY_MS [20], RATE_LIMIT [20], WORKERS [4] (delivery.workers),
#   IDLE_N [200] (webhooks per (c) run), A_SKIP_NOOP [false] (false|true|both:
#   skip_noop of the (a) run(s); true doubles its requests and ~30 s more each),
#   SCENARIOS [abcd] (which of the above run, e.g. d), D_LATENCIES [250,20] (ms, the (d)
#   runs), STORE [sqlite]: `pg` runs every scenario on a PostgreSQL store: a server of its own
#   (scripts/pg.sh start in the temp dir, stopped on exit; or the one named by
#   HOOKLINE_TEST_PG_URL and HOOKLINE_TEST_PG_PASSFILE when set), a fresh database per run,
#   the job states read through psql; the same figures and targets.
#   INSTANCES [1]: with STORE=pg, N > 1 runs only (a), twice in the same invocation:
#   delivered by one instance, then by N instances on the one database (instance.id
#   bench-0..N-1) sharing the DIDWW rate budget; the N-instance run has the same
#   targets (>= 0.95 of the limit in aggregate, no 429).
# Exit: 0 when every run completed and its checks passed (a figure below target is
#   marked BELOW TARGET; it is a measurement, not a gate), 1 on a build or setup
#   error or a failed check. ~85 s for (a)-(c), ~2 min for (d) with the defaults.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
BUILD="$REPO/build"

LATENCY_MS=${LATENCY_MS:-20}
RATE_LIMIT=${RATE_LIMIT:-20}
WORKERS=${WORKERS:-4}
IDLE_N=${IDLE_N:-200}
A_SKIP_NOOP=${A_SKIP_NOOP:-false}
STORE=${STORE:-sqlite}
INSTANCES=${INSTANCES:-1}
SCENARIOS=${SCENARIOS:-abcd}
D_LATENCIES=${D_LATENCIES:-250,20}

die() {
    echo "delivery.sh: $*" >&2
    exit 1
}

[[ $LATENCY_MS =~ ^[0-9]+$ ]] || die "LATENCY_MS must be a whole number of ms (got '$LATENCY_MS')"
if ! [[ $RATE_LIMIT =~ ^[1-9][0-9]{0,3}$ ]] || ((RATE_LIMIT > 1000)); then
    die "RATE_LIMIT must be 1..1000 (got '$RATE_LIMIT')"
fi
if ! [[ $WORKERS =~ ^[1-9][0-9]?$ ]] || ((WORKERS > 64)); then
    die "WORKERS must be 1..64 (got '$WORKERS')"
fi
[[ $IDLE_N =~ ^[1-9][0-9]*$ ]] || die "IDLE_N must be a positive integer (got '$IDLE_N')"
[[ $A_SKIP_NOOP =~ ^(false|true|both)$ ]] || die "A_SKIP_NOOP must be false, true or both"
[[ $SCENARIOS =~ ^[abcd]+$ ]] || die "SCENARIOS must be letters of abcd (got '$SCENARIOS')"
[[ $D_LATENCIES =~ ^[0-9]+(,[0-9]+)*$ ]] || die "D_LATENCIES must be ms values like 250,20"
[[ $STORE == sqlite || $STORE == pg ]] || die "STORE must be sqlite or pg (got '$STORE')"
[[ $INSTANCES =~ ^[1-9]$ ]] || die "INSTANCES must be 1..9 (got '$INSTANCES')"
if ((INSTANCES > 1)) && [[ $STORE != pg ]]; then
    die "INSTANCES > 1 needs STORE=pg (several instances share one PostgreSQL database)"
fi
for tool in cmake python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
for f in delivery_bench.py delivery_rule.lua; do
    [[ -f $SCRIPT_DIR/$f ]] || die "missing $SCRIPT_DIR/$f"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hookline-delivery-bench.XXXXXX")
DRIVER_PID=""
PG_DIR="" # set while our PostgreSQL (scripts/pg.sh) may run
# The driver stops the processes it started (try/finally, also on SIGINT/SIGTERM);
# this stops the driver and removes the databases, configs and logs.
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $DRIVER_PID ]] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        kill -TERM "$DRIVER_PID" 2>/dev/null || true
        wait "$DRIVER_PID" 2>/dev/null || true # bounded: the driver's stops time out
    fi
    if [[ -n $PG_DIR ]]; then # after the driver: hookline is stopped by then
        "$REPO/scripts/pg.sh" stop "$PG_DIR" >&2 || echo "delivery.sh: stopping PostgreSQL failed" >&2
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "delivery.sh: building hookline and didww-sim in $BUILD"
if ! cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$TMP/build.log" 2>&1 ||
    ! cmake --build "$BUILD" -j2 --target hookline didww-sim >>"$TMP/build.log" 2>&1; then
    tail -n 40 "$TMP/build.log" >&2
    die "build failed"
fi

store_args=()
if [[ $STORE == pg ]]; then
    if [[ -n ${HOOKLINE_TEST_PG_URL:-} && -n ${HOOKLINE_TEST_PG_PASSFILE:-} ]]; then
        # A server the caller started (.ci/run): the runs' databases are fresh ones on it.
        pg_url=$HOOKLINE_TEST_PG_URL
        pg_passfile=$HOOKLINE_TEST_PG_PASSFILE
    else
        # As root, pg.sh runs the server as `postgres`, which must traverse $TMP.
        if [[ $(id -u) == 0 ]]; then chmod 711 "$TMP"; fi
        PG_DIR="$TMP/pg"
        pg_env=$("$REPO/scripts/pg.sh" start "$PG_DIR") || die "scripts/pg.sh start failed"
        pg_url=$(sed -n 's/^HOOKLINE_TEST_PG_URL=//p' <<<"$pg_env")
        pg_passfile=$(sed -n 's/^HOOKLINE_TEST_PG_PASSFILE=//p' <<<"$pg_env")
    fi
    [[ -n $pg_url && -f $pg_passfile ]] || die "unexpected output from scripts/pg.sh start"
    psql_bin=$(command -v psql) || die "psql is required for STORE=pg"
    store_args=(--store pg --pg-url "$pg_url" --pg-passfile "$pg_passfile" --psql "$psql_bin")
fi

# In the background so that a signal to this shell runs the trap at once (bash
# delays traps while a foreground child runs).
python3 "$SCRIPT_DIR/delivery_bench.py" --hookline "$BUILD/hookline" --sim "$BUILD/didww-sim" \
    --rule "$SCRIPT_DIR/delivery_rule.lua" --workdir "$TMP" --latency-ms "$LATENCY_MS" \
    --rate-limit "$RATE_LIMIT" --workers "$WORKERS" --idle-n "$IDLE_N" \
    --a-skip-noop "$A_SKIP_NOOP" --instances "$INSTANCES" --scenarios "$SCENARIOS" \
    --d-latencies "$D_LATENCIES" "${store_args[@]}" &
DRIVER_PID=$!
rc=0
wait "$DRIVER_PID" || rc=$?
DRIVER_PID=""
((rc == 0)) || die "the benchmark failed (exit $rc; see above)"
