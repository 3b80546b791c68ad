#!/usr/bin/env bash
# Installs what the build and the tests need (Debian 12), builds hookline with
# -Werror and runs every test (cmocka unit tests and the integration tests that
# drive the real binary over loopback HTTP) through ctest.
# Environment: HOOKLINE_BUILD_TYPE (RelWithDebInfo; Asan for the sanitizer build),
# HOOKLINE_BUILD_DIR (build), HOOKLINE_CTEST_ARGS (extra ctest arguments, e.g. "-L unit").
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
# shellcheck disable=SC2086
ctest --test-dir "$build_dir" --output-on-failure -j2 ${HOOKLINE_CTEST_ARGS:-}
