# shellcheck shell=bash
# Sourced by run.sh and test.sh: installs the Debian 12 packages hookline needs
# when any is missing. hookline_install_deps run|test
hookline_install_deps() {
    local want=(build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev
        libcurl4-openssl-dev liblua5.4-dev libsqlite3-dev libssl-dev)
    if [ "${1:-run}" = test ]; then
        want+=(libcmocka-dev python3 clang-format)
    fi
    local missing=()
    local p
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "hookline: installing ${missing[*]}" >&2
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}
