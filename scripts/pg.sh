#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: real, loopback only, under one directory.
#   scripts/pg.sh start DIR   installs postgresql, postgresql-client and libpq-dev when
#                             missing, runs initdb into DIR/data (scram-sha-256, superuser
#                             `hookline` with a random password kept in DIR/pgpass.secret,
#                             mode 600, never printed), starts postgres on a free port of
#                             127.0.0.1 and prints shell assignments on stdout:
#                               HOOKLINE_TEST_PG_URL=postgresql://hookline@127.0.0.1:PORT/postgres
#                               HOOKLINE_TEST_PG_PASSFILE=DIR/pgpass.secret
#   scripts/pg.sh stop DIR    stops it (pg_ctl -m fast, bounded); idempotent.
# Use: eval "$(scripts/pg.sh start DIR)". The server runs as an unprivileged user: as
# root, the `postgres` account (runuser), which owns DIR/data and DIR/run (socket, log)
# and may only traverse DIR itself; as anyone else, that user. Every wait is bounded.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

START_TIMEOUT_S=${HOOKLINE_PG_START_TIMEOUT:-60}
STOP_TIMEOUT_S=30

die() {
    echo "pg.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: scripts/pg.sh start|stop DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2
case "$cmd" in start | stop) ;; *) usage ;; esac

# The newest installed server's binaries (Debian keeps them out of PATH).
pg_bindir() {
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        if [ ! -x "$d/initdb" ] || [ ! -x "$d/pg_ctl" ] || [ ! -x "$d/postgres" ]; then
            continue
        fi
        best=$(printf '%s\n%s\n' "$best" "$d" | sed '/^$/d' | sort -V | tail -n 1)
    done
    [ -n "$best" ] || return 1
    printf '%s\n' "$best"
}

# As root the server runs as `postgres`; otherwise as the invoking user.
as_server=()
if [ "$(id -u)" -eq 0 ]; then
    as_server=(runuser -u postgres --)
fi

run_server_cmd() {
    # Run from DIR: the server's user may not be allowed into the caller's directory.
    (cd "$dir" && "${as_server[@]}" "$@")
}

# Stops the server whose data directory is DIR/data. Returns 0 when none runs afterwards.
pg_stop() {
    local bindir pid
    [ -f "$dir/data/postmaster.pid" ] || return 0
    bindir=$(pg_bindir) || die "no PostgreSQL binaries under /usr/lib/postgresql/*/bin"
    pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
    if run_server_cmd "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t "$STOP_TIMEOUT_S" stop \
        >/dev/null 2>&1; then
        return 0
    fi
    # pg_ctl stop fails when the server is not running (a stale pid file): fine.
    if ! run_server_cmd "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        return 0
    fi
    echo "pg.sh: fast shutdown did not finish in ${STOP_TIMEOUT_S}s; immediate shutdown" >&2
    run_server_cmd "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 10 stop >/dev/null 2>&1 &&
        return 0
    # The postmaster this directory started, by its id, as the last resort.
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
    ! kill -0 "$pid" 2>/dev/null
}

if [ "$cmd" = stop ]; then
    [ -d "$dir" ] || exit 0
    dir=$(cd "$dir" && pwd)
    pg_stop || die "the server under $dir/data did not stop"
    exit 0
fi

# ---------------- start ----------------
# shellcheck source=scripts/deps.sh
. "$repo/scripts/deps.sh"
hookline_install_missing postgresql postgresql-client libpq-dev >&2
bindir=$(pg_bindir) || die "no PostgreSQL binaries under /usr/lib/postgresql/*/bin"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
[ ! -e "$dir/data" ] || die "$dir/data exists: stop that server and remove $dir first"
case "$dir" in *[[:space:]]* | *\'* | *\"* | *\\*) die "DIR must not hold spaces or quotes: $dir" ;; esac

if [ ${#as_server[@]} -gt 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' account (package postgresql)"
    # postgres may pass through DIR (not list it) to reach its own data and run dirs.
    chmod 711 "$dir"
    runuser -u postgres -- test -x "$dir" ||
        die "user postgres cannot reach $dir: make every directory above it traversable (o+x)"
fi
mkdir -m 700 "$dir/data" "$dir/run"
if [ ${#as_server[@]} -gt 0 ]; then
    chown postgres: "$dir/data" "$dir/run"
fi

# The superuser's password: random, written once, never on a command line or stdout.
umask 077
password=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
printf '%s\n' "$password" >"$dir/pgpass.secret"
chmod 600 "$dir/pgpass.secret"
initpw="$dir/run/initdb.pw"
printf '%s\n' "$password" >"$initpw"
if [ ${#as_server[@]} -gt 0 ]; then chown postgres: "$initpw"; fi

if ! run_server_cmd "$bindir/initdb" -D "$dir/data" -U hookline --auth=scram-sha-256 \
    --pwfile="$initpw" -E UTF8 --no-locale --no-instructions >"$dir/run/initdb.log" 2>&1; then
    rm -f "$initpw"
    cat "$dir/run/initdb.log" >&2
    die "initdb failed"
fi
rm -f "$initpw"

# Loopback only, durable (fsync, synchronous_commit: a 2xx means committed), small.
cat >>"$dir/data/postgresql.conf" <<EOF

# ---- scripts/pg.sh (test server) ----
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/run'
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 16MB
max_connections = 200
logging_collector = off
EOF
cat >"$dir/data/pg_hba.conf" <<'EOF'
# scripts/pg.sh: password (SCRAM) on the socket and on 127.0.0.1, nothing else.
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
EOF

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 30000))
}

# A port found free may be taken before postgres binds it: try a few.
started=""
for attempt in 1 2 3 4 5; do
    port=$(free_port)
    if run_server_cmd "$bindir/pg_ctl" -D "$dir/data" -l "$dir/run/postgres.log" \
        -o "-p $port" -w -t "$START_TIMEOUT_S" start >/dev/null 2>&1; then
        started=yes
        break
    fi
    if run_server_cmd "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        pg_stop || true
        break  # it runs but did not become ready in time: not a port clash
    fi
    grep -q 'could not bind\|Address already in use' "$dir/run/postgres.log" 2>/dev/null || break
    echo "pg.sh: port $port taken, attempt $attempt; trying another" >&2
done
if [ -z "$started" ]; then
    tail -n 30 "$dir/run/postgres.log" >&2 2>/dev/null || true
    die "postgres did not start (log: $dir/run/postgres.log)"
fi

# Ready means a real login over TCP with the password works (bounded).
psql_bin="$bindir/psql"
[ -x "$psql_bin" ] || psql_bin=$(command -v psql) || die "psql not found"
deadline=$((SECONDS + START_TIMEOUT_S))
until PGPASSWORD=$password PGCONNECT_TIMEOUT=5 "$psql_bin" -X -q -At -h 127.0.0.1 -p "$port" \
    -U hookline -d postgres -c 'SELECT 1' >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
        pg_stop || true
        tail -n 30 "$dir/run/postgres.log" >&2 2>/dev/null || true
        die "postgres on 127.0.0.1:$port did not accept a login within ${START_TIMEOUT_S}s"
    fi
    sleep 0.2
done
unset password
echo "pg.sh: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port," \
    "data in $dir/data" >&2
printf 'HOOKLINE_TEST_PG_URL=%s\n' "postgresql://hookline@127.0.0.1:$port/postgres"
printf 'HOOKLINE_TEST_PG_PASSFILE=%s\n' "$dir/pgpass.secret"
