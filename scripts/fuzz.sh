#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS]: builds the libFuzzer targets of tests/fuzz (clang, with
# ASan and UBSan) in build-fuzz and runs each for SECONDS (default 45) on a copy of
# its seed corpus, tests/fuzz/corpus/NAME, in a temporary directory (with the
# dictionary tests/fuzz/fuzz_NAME.dict when there is one). Prints one line
# per target with its exec count and exits 1 when any target crashed, leaked, hung
# (-timeout=10) or ran out of memory (-rss_limit_mb=2048); the input that did it is
# kept in build-fuzz/fuzz-crashes/TARGET/ with the fuzzer's log.
# Environment: HOOKLINE_FUZZ_JOBS (targets run at once; default: the core count).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:-45}
if ! [[ $secs =~ ^[1-9][0-9]{0,5}$ ]] || [ $# -gt 1 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS]   (each target runs SECONDS, default 45)" >&2
    exit 2
fi

# shellcheck source=scripts/deps.sh
. "$repo/scripts/deps.sh"
hookline_install_deps run
# clang and its libFuzzer/sanitizer runtimes, only when missing
missing=()
for p in clang libclang-rt-14-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "hookline: installing ${missing[*]}" >&2
    sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

build_dir=$repo/build-fuzz
work=$(mktemp -d "${TMPDIR:-/tmp}/hookline-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
if ! { CC=clang cmake -S "$repo" -B "$build_dir" -DCMAKE_C_COMPILER=clang \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOOKLINE_FUZZ=ON -DHOOKLINE_TESTS=OFF \
    -DHOOKLINE_BENCH=OFF && cmake --build "$build_dir" -j"$(nproc)" --target fuzz; } \
    >"$work/build.log" 2>&1; then
    cat "$work/build.log" >&2
    echo "fuzz: the build failed" >&2
    exit 1
fi

targets=()
for f in "$repo"/tests/fuzz/fuzz_*.c; do
    targets+=("$(basename "$f" .c)")
done

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# Runs one target in $work/NAME (its own TMPDIR, so what it writes goes with it).
run_target() {
    local name=$1 short=${1#fuzz_}
    local dir=$work/$name
    mkdir -p "$dir/corpus" "$dir/crash" "$dir/tmp"
    cp -R "$repo/tests/fuzz/corpus/$short/." "$dir/corpus/"
    local opts=(-max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
        -artifact_prefix="$dir/crash/")
    [ -f "$repo/tests/fuzz/$name.dict" ] && opts+=(-dict="$repo/tests/fuzz/$name.dict")
    local rc=0
    (cd "$dir" && TMPDIR="$dir/tmp" "$build_dir/$name" "${opts[@]}" "$dir/corpus" \
        </dev/null >"$dir/log" 2>&1) || rc=$?
    echo "$rc" >"$dir/rc"
}

jobs=${HOOKLINE_FUZZ_JOBS:-$(nproc)}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || jobs=1
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_target "$t" &
    running=$((running + 1))
done
wait

failed=0
for t in "${targets[@]}"; do
    dir=$work/$t
    rc=$(cat "$dir/rc" 2>/dev/null || echo 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$dir/log" | tail -n1)
    if [ -z "$execs" ]; then # no final stats (killed): the last progress line
        execs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$dir/log" | tail -n1)
    fi
    seeds=$(find "$repo/tests/fuzz/corpus/${t#fuzz_}" -type f | wc -l)
    units=$(find "$dir/corpus" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        printf '%s: ok, %s execs in %s s (corpus %s -> %s)\n' "$t" "${execs:-0}" "$secs" \
            "$seeds" "$units"
    else
        failed=1
        keep=$build_dir/fuzz-crashes/$t
        rm -rf "$keep"
        mkdir -p "$keep"
        cp -R "$dir/crash/." "$keep/" 2>/dev/null || true
        cp "$dir/log" "$keep/log"
        why=$(grep -m1 -E '==[0-9]+==ERROR|fuzz invariant broken|runtime error|ALARM|out-of-memory' \
            "$dir/log" || echo "exit status $rc")
        printf '%s: FAILED after %s execs: %s\n' "$t" "${execs:-0}" "$why"
        for a in "$keep"/*; do
            case "$a" in */log) ;; *) printf '  input: %s (reproduce: %s %s)\n' "$a" \
                "$build_dir/$t" "$a" ;; esac
        done
        printf '  log: %s\n' "$keep/log"
        # the report from its first line (a stack trace), else the log's end
        pat='==[0-9]+==ERROR|fuzz invariant broken|runtime error|ALARM|out-of-memory'
        if grep -qE "$pat" "$dir/log"; then
            sed -nE "/$pat/,\$p" "$dir/log" | head -n 30 | sed 's/^/  | /'
        else
            tail -n 30 "$dir/log" | sed 's/^/  | /'
        fi
    fi
done
exit "$failed"
