#!/usr/bin/env bash
# replay.sh: shadow replay throughput (`hookline rule-test --replay`) against the
# rule engine's own rate (rules.sh's measure, rules_bench, 1 thread) in the same run.
#
# Builds build/hookline and build/rules_bench, makes a SQLite store of EVENTS stored
# Zendesk events (tests/fixtures/zendesk_ticket_urgent.json, a distinct id each, with
# the plan stored as serve stores it: the schema is created by `hookline serve`, the
# rows are copied by SQL), then times three things on the example rule
# (conf/rules/main.lua + teams.json):
#   - rules_bench: decode + run + plan of the same event in memory (the rule rate);
#   - replay of the rule in force over the EVENTS events (store read + decode + run +
#     plan + compare), median of ROUNDS runs;
#   - replay of a rule planning the same request without looking at the event
#     (store read + decode + plan + compare): what everything but the rule's own
#     logic costs, so a slow store read can be told from a slow rule.
# Prints the rates and replay/rule (issue 16's target: >= 0.5).
#
# Environment: EVENTS [100000], ROUNDS [3], BENCH_SECONDS [2] (rules_bench round),
#   STORE [sqlite]: `pg` replays from a PostgreSQL store instead (a server of its own,
#   `scripts/pg.sh start` in the temp dir, stopped on exit; rows copied through psql).
# Exit: 0 when everything ran (even below target: the figures say BELOW TARGET), 1 on
#   a build or run error, or when replay did not find every event unchanged.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
BUILD="$REPO/build"
EVENTS=${EVENTS:-100000}
ROUNDS=${ROUNDS:-3}
BENCH_SECONDS=${BENCH_SECONDS:-2}
EVENT=tests/fixtures/zendesk_ticket_urgent.json
STORE=${STORE:-sqlite}

# pg_psql DB SQL: runs SQL on our PostgreSQL as its superuser (the password from the
# file pg.sh wrote, through the environment: never on a command line or printed).
pg_psql() {
    PGPASSWORD=$(cat "$PG_PASSFILE") PGCONNECT_TIMEOUT=5 timeout 300 psql -X -q -At \
        -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U hookline -d "$1" -c "$2"
}

die() {
    echo "replay.sh: $*" >&2
    exit 1
}
[[ $EVENTS =~ ^[1-9][0-9]*$ ]] || die "EVENTS must be a positive integer (got '$EVENTS')"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
[[ $STORE == sqlite || $STORE == pg ]] || die "STORE must be sqlite or pg (got '$STORE')"
if [[ $STORE == sqlite ]]; then
    command -v sqlite3 >/dev/null 2>&1 || die "sqlite3 is required (apt-get install sqlite3)"
else
    command -v psql >/dev/null 2>&1 || die "psql is required for STORE=pg"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hookline-replay-bench.XXXXXX")
SERVE_PID=
PG_DIR=
cleanup() {
    [[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
    if [[ -n $PG_DIR ]]; then
        "$REPO/scripts/pg.sh" stop "$PG_DIR" >&2 || echo "replay.sh: stopping PostgreSQL failed" >&2
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "replay.sh: building hookline and rules_bench in $BUILD"
if ! cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$WORK/build.log" 2>&1 ||
    ! cmake --build "$BUILD" --target hookline rules_bench -j "$(nproc)" >>"$WORK/build.log" 2>&1; then
    cat "$WORK/build.log" >&2
    die "build failed"
fi
HOOKLINE="$BUILD/hookline"

# The config: the example rule and data, one insecure source (nothing is received).
cp "$REPO/conf/rules/main.lua" "$REPO/conf/rules/teams.json" "$WORK/"
STORE_JSON='"url": "sqlite:events.db"'
if [[ $STORE == pg ]]; then
    # As root, pg.sh runs the server as `postgres`, which must traverse $WORK.
    if [[ $(id -u) == 0 ]]; then chmod 711 "$WORK"; fi
    PG_DIR="$WORK/pg"
    pg_env=$("$REPO/scripts/pg.sh" start "$PG_DIR") || die "scripts/pg.sh start failed"
    PG_URL=$(sed -n 's/^HOOKLINE_TEST_PG_URL=//p' <<<"$pg_env")
    PG_PASSFILE=$(sed -n 's/^HOOKLINE_TEST_PG_PASSFILE=//p' <<<"$pg_env")
    PG_PORT=$(sed -n 's|^postgresql://[^@]*@127\.0\.0\.1:\([0-9]*\)/.*|\1|p' <<<"$PG_URL")
    [[ -n $PG_PORT && -f $PG_PASSFILE ]] || die "unexpected output from scripts/pg.sh start"
    pg_psql postgres "CREATE DATABASE hookline_replay;" || die "cannot create the database"
    STORE_JSON="\"url\": \"postgresql://hookline@127.0.0.1:$PG_PORT/hookline_replay\", \"password\": \"file:$PG_PASSFILE\""
fi
cat >"$WORK/hookline.json" <<EOF
{ "listen": { "host": "127.0.0.1", "port": 0 },
  "store": { $STORE_JSON },
  "rules": { "script": "main.lua", "data": { "teams": "teams.json" } },
  "sources": { "zendesk": { "verify": { "scheme": "none", "insecure": true } } },
  "log": { "level": "info" } }
EOF

# The schema, as serve creates it.
"$HOOKLINE" serve -c "$WORK/hookline.json" 2>"$WORK/serve.log" &
SERVE_PID=$!
for _ in $(seq 150); do
    grep -q '"msg":"listening"' "$WORK/serve.log" 2>/dev/null && break
    sleep 0.1
done
grep -q '"msg":"listening"' "$WORK/serve.log" || { cat "$WORK/serve.log" >&2; die "serve did not start"; }
kill "$SERVE_PID" && wait "$SERVE_PID" 2>/dev/null || true
SERVE_PID=

# The baseline rule: the same request, planned without looking at the event.
python3 - "$WORK/hookline.json" "$REPO/$EVENT" "$WORK/fixed.lua" "$HOOKLINE" <<'PY'
import json, subprocess, sys
cfg, event, out, hookline = sys.argv[1:]
plan = json.loads(subprocess.run([hookline, "rule-test", "-c", cfg, "--source", "zendesk", event],
                                 capture_output=True, text=True, check=True).stdout)
rel = plan[0]["body"]["data"]["relationships"]
group = rel["voice_in_trunk_group"]["data"]["id"]
number = plan[0]["path"].rsplit(":", 1)[1]
with open(out, "w") as f:
    f.write('function on_event(ev) didww.route_did{number = "+%s", trunk_group = "%s"} end\n'
            % (number, group))
PY

# EVENTS events, each with the plan rule-test prints for it (what ingest stores).
PLAN=$("$HOOKLINE" rule-test -c "$WORK/hookline.json" --source zendesk "$REPO/$EVENT" 2>/dev/null |
    python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), separators=(",", ":")))')
VERSION=$("$HOOKLINE" check -c "$WORK/hookline.json" 2>/dev/null | sed -n 's/.*rules \([0-9a-f]*\)).*/\1/p')
BODY_HEX=$(od -An -tx1 -v "$REPO/$EVENT" | tr -d ' \n')
NOW=$(date +%s)
HEADERS='{"content-type":"application/json","user-agent":"Zendesk Webhook"}'
if [[ $STORE == sqlite ]]; then
    sqlite3 "$WORK/events.db" <<EOF
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $EVENTS)
INSERT INTO events (source, event_id, received_at, status, content_type, headers, body,
                    rule_version, jobs, plan)
SELECT 'zendesk', 'evt-' || i, $NOW - 3600 + i * 0.001, 'accepted', 'application/json',
       '$HEADERS', X'$BODY_HEX', '$VERSION', 1, '$PLAN' FROM n;
EOF
    echo "replay.sh: $EVENTS events stored in SQLite ($(du -h "$WORK/events.db" | cut -f1))"
else
    pg_psql hookline_replay "INSERT INTO events (source, event_id, received_at, status,
        content_type, headers, body, rule_version, jobs, plan)
        SELECT 'zendesk', 'evt-' || i, $NOW - 3600 + i * 0.001, 'accepted', 'application/json',
        '$HEADERS', decode('$BODY_HEX', 'hex'), '$VERSION', 1, '$PLAN'
        FROM generate_series(1, $EVENTS) AS i; ANALYZE events;" || die "filling the store failed"
    echo "replay.sh: $EVENTS events stored in PostgreSQL"
fi

# The rule rate, as rules.sh measures it (1 thread).
cd "$REPO"
RULE_RATE=$("$BUILD/rules_bench" --script conf/rules/main.lua --data teams=conf/rules/teams.json \
    --event "$EVENT" --source zendesk --seconds "$BENCH_SECONDS" --threads 1 2>/dev/null |
    sed -n 's/^rule (decode+run+plan): *\([0-9]*\) events.*/\1/p')
[[ -n $RULE_RATE ]] || die "rules_bench printed no rule rate"

# Median of ROUNDS replays; prints events/s.
replay_rate() {
    local rates=() i start end out
    for i in $(seq "$ROUNDS"); do
        start=$(date +%s.%N)
        out=$("$HOOKLINE" rule-test -c "$WORK/hookline.json" --replay --format json "$@" 2>"$WORK/replay.err") ||
            { cat "$WORK/replay.err" >&2; die "replay failed"; }
        end=$(date +%s.%N)
        python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["events"] == int(sys.argv[2]) else 1)' \
            "$out" "$EVENTS" || die "replay did not read the $EVENTS events: ${out:0:300}"
        rates+=("$(python3 -c "print(int($EVENTS / ($end - $start)))")")
    done
    printf '%s\n' "${rates[@]}" | sort -n | sed -n "$(((ROUNDS + 1) / 2))p"
}

REPLAY_RATE=$(replay_rate)
READ_RATE=$(replay_rate --rule "$WORK/fixed.lua")
# The rule in force replayed against itself changes nothing.
check=$("$HOOKLINE" rule-test -c "$WORK/hookline.json" --replay --limit 1000 2>&1)
grep -q "events: 1000, unchanged: 1000, changed: 0, failed: 0" <<<"$check" ||
    die "the rule in force replayed against itself changed something: $check"

RATIO=$(python3 -c "print('%.2f' % ($REPLAY_RATE / $RULE_RATE))")
VERDICT=$(python3 -c "print('ok' if $REPLAY_RATE / $RULE_RATE >= 0.5 else 'BELOW TARGET')")
echo
echo "rule rate (rules_bench, 1 thread):        $RULE_RATE events/s"
echo "replay, the example rule ($EVENTS events on $STORE): $REPLAY_RATE events/s (median of $ROUNDS)"
echo "replay, a fixed one-request rule:           $READ_RATE events/s (store read, decode, plan, compare)"
echo "replay / rule rate:                         ${RATIO}x (target >= 0.5) $VERDICT"
