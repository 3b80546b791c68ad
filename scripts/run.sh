#!/usr/bin/env bash
# Runs hookline on its embedded default: installs the packages it needs
# (Debian 12), builds, and starts `hookline serve` on conf/hookline.json with the
# SQLite store under var/. Without DIDWW_API_KEY in the environment it also
# starts the bundled DIDWW simulator (tools/didww_sim, state conf/didww-sim-state.json) and
# points hookline at it, so rules can be tried without a DIDWW account.
# Secrets the config names but the environment lacks are generated once into
# var/dev-secrets.env (mode 600); their values are never printed.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/deps.sh
. "$repo/scripts/deps.sh"
hookline_install_deps run

cmake -S "$repo" -B "$repo/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$repo/build" -j"$(nproc)" --target hookline didww-sim >/dev/null

mkdir -p "$repo/var"
chmod 700 "$repo/var"
secrets="$repo/var/dev-secrets.env"
if [ ! -f "$secrets" ]; then
    umask 077
    {
        for v in ZENDESK_SECRET HUBSPOT_SECRET ZAPIER_TOKEN FRESHDESK_PASSWORD HOOKLINE_ADMIN_TOKEN \
            SIM_DIDWW_API_KEY; do
            printf '%s=%s\n' "$v" "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
        done
        printf 'CRM_WEBHOOK_SECRET=whsec_%s\n' "$(head -c 24 /dev/urandom | base64)"
    } >"$secrets"
    echo "hookline: generated development secrets in $secrets" >&2
fi
# Variables already set in the environment win over the generated ones. A line is
# NAME=VALUE, the value everything after the first '=' as is (hookline's CLI and
# scripts/env.sh read the file the same way).
while IFS= read -r line || [ -n "$line" ]; do
    name=${line%%=*}
    case $name in '' | [0-9]* | *[!A-Za-z0-9_]*) continue ;; esac
    [ "$name" != "$line" ] && [ -z "${!name:-}" ] && export "$name=${line#*=}"
done <"$secrets"
echo "hookline: in another shell, '. scripts/env.sh' loads these secrets (for curl);" \
    "hookline's commands read $secrets themselves" >&2

sim_pid=""
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

if [ -z "${DIDWW_API_KEY:-}" ]; then
    export DIDWW_API_KEY="$SIM_DIDWW_API_KEY"
    state="$repo/var/didww-sim-state.json"
    [ -f "$state" ] || cp "$repo/conf/didww-sim-state.json" "$state"
    "$repo/build/didww-sim" --state "$state" --api-key-env DIDWW_API_KEY --port 0 \
        --request-log "$repo/var/didww-sim-requests.log" >"$repo/var/didww-sim.out" 2>&1 &
    sim_pid=$!
    port=""
    for _ in $(seq 1 50); do
        port=$(grep -o '"port":"[0-9]*"' "$repo/var/didww-sim.out" 2>/dev/null | grep -o '[0-9]*' || true)
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "hookline: the DIDWW simulator did not start (see var/didww-sim.out)" >&2; exit 1; }
    export HOOKLINE_DIDWW_BASE_URL="http://127.0.0.1:$port/v3"
    echo "hookline: no DIDWW_API_KEY set: delivering to the bundled simulator at $HOOKLINE_DIDWW_BASE_URL" >&2
    echo "hookline: its requests are logged in var/didww-sim-requests.log; its state: curl http://127.0.0.1:$port/__sim/state" >&2
fi

config=${HOOKLINE_CONFIG:-$repo/conf/hookline.json}
echo "hookline: serving with $config (store under $repo/var; Ctrl-C stops)" >&2
"$repo/build/hookline" serve -c "$config" &
hl_pid=$!
trap 'kill -TERM $hl_pid 2>/dev/null; wait $hl_pid; cleanup' INT TERM
wait $hl_pid
