#!/usr/bin/env bash
# Installs what the build and the tests need (Debian 12), builds hookline with
# -Werror and runs every test (cmocka unit tests and the integration tests that
# drive the real binary over loopback HTTP) through ctest.
# The integration tests run twice: on SQLite (integration.*) and on a real PostgreSQL
# (integration_pg.*), which this script starts once for the whole ctest run
# (scripts/pg.sh, in a temp dir under the build dir) and stops on exit, unless the
# caller already started one and exported HOOKLINE_TEST_PG_URL and
# HOOKLINE_TEST_PG_PASSFILE (.ci/run does: one server for all its runs; every test
# creates a database of its own on it, so runs cannot see each other's data).
# Environment: HOOKLINE_BUILD_TYPE (RelWithDebInfo; Asan for the sanitizer build),
# HOOKLINE_BUILD_DIR (build), HOOKLINE_CTEST_ARGS (extra ctest arguments, e.g. "-L unit"),
# HOOKLINE_PG (1; 0 starts no PostgreSQL and leaves the integration_pg tests out).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/deps.sh
. "$repo/scripts/deps.sh"
hookline_install_deps test

build_type=${HOOKLINE_BUILD_TYPE:-RelWithDebInfo}
build_dir=${HOOKLINE_BUILD_DIR:-$repo/build}
case "$build_dir" in /*) ;; *) build_dir="$repo/$build_dir" ;; esac

cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE="$build_type" -DHOOKLINE_WERROR=ON \
    -DHOOKLINE_TESTS=ON >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
rm -rf "$build_dir/testtmp"

pg_args=()
if [ "${HOOKLINE_PG:-1}" = 0 ]; then
    pg_args=(-LE integration_pg)
elif [ -n "${HOOKLINE_TEST_PG_URL:-}" ] && [ -n "${HOOKLINE_TEST_PG_PASSFILE:-}" ]; then
    echo "hookline: using the PostgreSQL the caller started (HOOKLINE_TEST_PG_URL)" >&2
else
    pg_dir=$(mktemp -d "$build_dir/pg.XXXXXX")
    stop_pg() {
        bash "$repo/scripts/pg.sh" stop "$pg_dir" || echo "hookline: PostgreSQL under $pg_dir did not stop" >&2
        rm -rf "$pg_dir"
    }
    trap stop_pg EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # A server that does not start fails the run: the PostgreSQL variants are not optional.
    if ! pg_env=$(bash "$repo/scripts/pg.sh" start "$pg_dir"); then
        echo "hookline: PostgreSQL did not start; HOOKLINE_PG=0 runs the SQLite tests only" >&2
        exit 1
    fi
    eval "$pg_env"
    export HOOKLINE_TEST_PG_URL HOOKLINE_TEST_PG_PASSFILE
fi
# shellcheck disable=SC2086
ctest --test-dir "$build_dir" --output-on-failure -j2 "${pg_args[@]}" ${HOOKLINE_CTEST_ARGS:-}
