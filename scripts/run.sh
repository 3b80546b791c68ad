#!/usr/bin/env bash
# Runs hookline on its embedded default: installs the packages it needs
# (Debian 12), builds, and starts `hookline serve` on conf/hookline.json with the
# SQLite store under var/. Secrets the config names but the environment lacks
# are generated once into var/dev-secrets.env (mode 600) for local use; their
# values are never printed.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/deps.sh
. "$repo/scripts/deps.sh"
hookline_install_deps run

cmake -S "$repo" -B "$repo/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOOKLINE_TESTS=OFF >/dev/null
cmake --build "$repo/build" -j"$(nproc)" >/dev/null

mkdir -p "$repo/var"
chmod 700 "$repo/var"
secrets="$repo/var/dev-secrets.env"
if [ ! -f "$secrets" ]; then
    umask 077
    {
        for v in ZENDESK_SECRET HUBSPOT_SECRET ZAPIER_TOKEN FRESHDESK_PASSWORD HOOKLINE_ADMIN_TOKEN; do
            printf '%s=%s\n' "$v" "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
        done
        printf 'CRM_WEBHOOK_SECRET=whsec_%s\n' "$(head -c 24 /dev/urandom | base64)"
    } >"$secrets"
    echo "hookline: generated development secrets in $secrets" >&2
fi
# Variables already set in the environment win over the generated ones.
while IFS='=' read -r name value; do
    [ -n "$name" ] && [ -z "${!name:-}" ] && export "$name=$value"
done <"$secrets"

config=${HOOKLINE_CONFIG:-$repo/conf/hookline.json}
echo "hookline: serving with $config (store under $repo/var; Ctrl-C stops)" >&2
exec "$repo/build/hookline" serve -c "$config"
