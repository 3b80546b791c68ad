#!/usr/bin/env bash
# rules.sh: events per second per thread through the example rule.
#
# Builds build/rules_bench (scripts/bench/rules_bench.c, linked against
# hookline_core) and runs it on the Zendesk example: conf/rules/main.lua with
# data teams=conf/rules/teams.json and the event
# tests/fixtures/zendesk_ticket_urgent.json for source "zendesk". Each run
# alternates the decode-only baseline and the rule (decode + rules_run + plan)
# three times and prints the medians and the rule overhead per event; first with
# 1 thread, then with BENCH_THREADS threads at once (each its own lua_State).
#
# Environment: BENCH_SECONDS [3] (one round; 6 rounds per run), BENCH_THREADS [2].
# Exit: 0 when both runs completed (even below target: the figures say
#   BELOW TARGET), 1 on a build error or when the rule fails, skips or plans no job.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
BUILD="$REPO/build"

BENCH_SECONDS=${BENCH_SECONDS:-3}
BENCH_THREADS=${BENCH_THREADS:-2}
RULE=conf/rules/main.lua
DATA=conf/rules/teams.json
EVENT=tests/fixtures/zendesk_ticket_urgent.json

die() {
    echo "rules.sh: $*" >&2
    exit 1
}

[[ $BENCH_SECONDS =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BENCH_SECONDS must be a number of seconds (got '$BENCH_SECONDS')"
[[ $BENCH_THREADS =~ ^[1-9][0-9]*$ ]] || die "BENCH_THREADS must be a positive integer (got '$BENCH_THREADS')"
for f in "$RULE" "$DATA" "$EVENT"; do
    [[ -f $REPO/$f ]] || die "missing $REPO/$f"
done
command -v cmake >/dev/null 2>&1 || die "cmake is required"

LOG=$(mktemp "${TMPDIR:-/tmp}/hookline-rules-bench.XXXXXX")
trap 'rm -f "$LOG"' EXIT

echo "rules.sh: building rules_bench in $BUILD"
if ! cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$LOG" 2>&1 ||
    ! cmake --build "$BUILD" --target rules_bench -j "$(nproc)" >>"$LOG" 2>&1; then
    cat "$LOG" >&2
    die "build failed"
fi

# Relative paths so the rule's file:line messages read "conf/rules/main.lua:N".
cd "$REPO"
run() {
    "$BUILD/rules_bench" --script "$RULE" --data "teams=$DATA" --event "$EVENT" \
        --source zendesk --seconds "$BENCH_SECONDS" --threads "$1"
}

echo
echo "== 1 thread =="
run 1
echo
echo "== $BENCH_THREADS threads at once ($(nproc) CPUs online) =="
run "$BENCH_THREADS"
