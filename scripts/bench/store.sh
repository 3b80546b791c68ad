#!/usr/bin/env bash
# store.sh: events per second through hookline's store against a durable-append baseline.
#
# Builds build/store_bench (scripts/bench/store_bench.c, linked against
# hookline_core) and runs it in a temporary directory: THREADS submitting
# threads each keep one event in flight (like webhook connections, no HTTP).
# Rounds alternate the baseline (the same bytes per event appended to a plain
# file, one write and one fdatasync per group) and the SQLite store (group
# commit, dedupe, the audit chain, the fsync'd WAL); the medians and the ratio
# store/baseline are printed.
#
# Environment: BENCH_SECONDS [3] (one round of one kind), BENCH_THREADS [50],
#   BENCH_ROUNDS [3], TMPDIR (where the files go; the disk being measured).
# Exit: 0 when every round completed, 1 on a build error or a failed submission.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
BUILD="$REPO/build"

BENCH_SECONDS=${BENCH_SECONDS:-3}
BENCH_THREADS=${BENCH_THREADS:-50}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}

die() {
    echo "store.sh: $*" >&2
    exit 1
}

[[ $BENCH_SECONDS =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BENCH_SECONDS must be a number of seconds (got '$BENCH_SECONDS')"
[[ $BENCH_THREADS =~ ^[1-9][0-9]*$ ]] || die "BENCH_THREADS must be a positive integer (got '$BENCH_THREADS')"
[[ $BENCH_ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer (got '$BENCH_ROUNDS')"
command -v cmake >/dev/null 2>&1 || die "cmake is required"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hookline-store-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "store.sh: building store_bench in $BUILD"
if ! cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$WORK/build.log" 2>&1 ||
    ! cmake --build "$BUILD" --target store_bench -j "$(nproc)" >>"$WORK/build.log" 2>&1; then
    cat "$WORK/build.log" >&2
    die "build failed"
fi
"$BUILD/store_bench" --dir "$WORK" --seconds "$BENCH_SECONDS" --threads "$BENCH_THREADS" \
    --rounds "$BENCH_ROUNDS"
