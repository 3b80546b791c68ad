# shellcheck shell=bash
# Sourced by run.sh, test.sh, fuzz.sh and pg.sh: installs the Debian 12 packages
# hookline needs when any is missing (apt-get only then; sudo when not root).
# hookline_install_deps run|test; hookline_install_missing PACKAGE...
hookline_install_deps() {
    # libpq-dev: the binary links libpq (the PostgreSQL store backend).
    # libexpat1-dev: the Salesforce Outbound Message (SOAP) parser.
    local want=(build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev
        libcurl4-openssl-dev liblua5.4-dev libsqlite3-dev libssl-dev libpq-dev libexpat1-dev)
    if [ "${1:-run}" = test ]; then
        # postgresql, postgresql-client: the real server the PostgreSQL test runs
        # start (scripts/pg.sh); nothing mocks the database.
        want+=(libcmocka-dev python3 clang-format postgresql postgresql-client)
        # chromium, nodejs, npm: the console's browser tests (tests/browser) drive
        # Debian's chromium with playwright-core from npm; hookline itself needs no node.
        # (npm: Debian's package, unless npm is already there, e.g. bundled with nodejs.)
        want+=(chromium nodejs)
        command -v npm >/dev/null 2>&1 || want+=(npm)
    fi
    hookline_install_missing "${want[@]}"
}

hookline_install_missing() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "hookline: installing ${missing[*]}" >&2
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    # apt's chatter goes to stderr: pg.sh's stdout carries only its assignments.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}
