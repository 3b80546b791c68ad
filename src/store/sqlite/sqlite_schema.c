/*
 * sqlite_schema: the SQLite schema, as the list of migrations that moves a file
 * from version i to i+1 (PRAGMA user_version), applied forward at open under
 * BEGIN IMMEDIATE by the thread that opens the store. A shipped migration is
 * never edited, only appended to: files of every earlier version migrate in
 * place. Read-only openers (CLI readers) never migrate.
 */
#include "sqlite_int.h"

#include <stdio.h>

/* Each entry moves the schema from version i to i+1. Never edit a shipped entry:
 * append a new one. */
static const char *const sqlite_migrations[] = {
    /* 1: events, unique on (source, dedupe_key) for deduplication */
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY,"
    "  source TEXT NOT NULL,"
    "  event_id TEXT NOT NULL,"
    "  dedupe_key TEXT,"
    "  received_at REAL NOT NULL,"
    "  status TEXT NOT NULL,"
    "  content_type TEXT NOT NULL,"
    "  headers TEXT NOT NULL,"
    "  body BLOB NOT NULL,"
    "  UNIQUE (source, dedupe_key));"
    "CREATE INDEX events_by_event_id ON events (event_id);",

    /* 2: rule outcome on events; the delivery queue */
    "ALTER TABLE events ADD COLUMN rule_version TEXT;"
    "ALTER TABLE events ADD COLUMN jobs INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE jobs ("
    "  id INTEGER PRIMARY KEY,"
    "  event_row INTEGER NOT NULL REFERENCES events (id),"
    "  source TEXT NOT NULL,"
    "  event_id TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  method TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  body TEXT,"
    "  did TEXT,"
    "  number TEXT,"
    "  order_key TEXT NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'pending',"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt_at REAL NOT NULL,"
    "  lease_until REAL,"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL,"
    "  last_status INTEGER,"
    "  last_error TEXT);"
    "CREATE INDEX jobs_by_state ON jobs (state, next_attempt_at);"
    "CREATE INDEX jobs_by_order ON jobs (order_key, id);",

    /* 3: the audit trail, hash-chained (the record text is what the hash covers) */
    "CREATE TABLE audit ("
    "  seq INTEGER PRIMARY KEY,"
    "  time TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  source TEXT,"
    "  event_id TEXT,"
    "  job_id INTEGER,"
    "  did TEXT,"
    "  number TEXT,"
    "  record TEXT NOT NULL);"
    "CREATE INDEX audit_by_kind ON audit (kind, seq);"
    "CREATE INDEX audit_by_event ON audit (event_id, seq);"
    "CREATE INDEX audit_by_did ON audit (did, seq);"
    "CREATE INDEX audit_by_number ON audit (number, seq);"
    "CREATE INDEX audit_by_time ON audit (time);",

    /* 4: fewer random-key index pages per event (ingest throughput): events are
     * found by (source, dedupe_key) or row id; the audit's sparse columns get
     * partial indexes. */
    "DROP INDEX events_by_event_id;"
    "DROP INDEX audit_by_event;"
    "DROP INDEX audit_by_did;"
    "DROP INDEX audit_by_number;"
    "CREATE INDEX audit_by_event ON audit (event_id, seq) WHERE event_id IS NOT NULL;"
    "CREATE INDEX audit_by_did ON audit (did, seq) WHERE did IS NOT NULL;"
    "CREATE INDEX audit_by_number ON audit (number, seq) WHERE number IS NOT NULL;",

    /* 5: control values shared by every process on the file (delivery pause) */
    "CREATE TABLE control ("
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL,"
    "  updated_at REAL NOT NULL);",

    /* 6: DID numbers resolved by delivery, so jobs naming a DID by number share
     * the FIFO of the DID's id */
    "CREATE TABLE did_numbers ("
    "  number TEXT PRIMARY KEY,"
    "  did TEXT NOT NULL,"
    "  updated_at REAL NOT NULL);",

    /* 7: no random-key index on the ingest path. Duplicates are found in memory
     * (struct dedupe; dedupe_key is no longer written, so the UNIQUE index only
     * gets NULLs, which append); audit records by event id through per-block
     * Bloom filters instead of audit_by_event. Blocks of records written before
     * this migration are filled in when the writer opens the file. key_fp is
     * the key's dedupe_fingerprint; events_keys (appended in row order, about
     * 30 bytes an event) lets serve load the dedupe set at start without
     * reading the events themselves. */
    "DROP INDEX audit_by_event;"
    "ALTER TABLE events ADD COLUMN key_fp INTEGER;"
    "CREATE INDEX events_keys ON events (id, received_at, key_fp);"
    "CREATE TABLE audit_event_blooms ("
    "  block INTEGER PRIMARY KEY,"
    "  first_seq INTEGER NOT NULL,"
    "  last_seq INTEGER NOT NULL,"
    "  scheme INTEGER NOT NULL,"
    "  bits BLOB NOT NULL);",

    /* 8: events by event id through per-block Bloom filters (as the audit's
     * since 7), so a lookup does not scan the events table. Events are never
     * deleted, so row ids run 1, 2, ... and block b holds ids b*4096+1 ..
     * (b+1)*4096. The same row carries the block's dedupe keys (keys: per row
     * the fingerprint and receive time, 16 bytes, see sqlite_keys_put), which
     * serve loads at start instead of reading the events_keys index: one less
     * B-tree written with every event. Blocks of events stored before this are
     * filled in when the writer opens the file. */
    "CREATE TABLE event_id_blooms ("
    "  block INTEGER PRIMARY KEY,"
    "  first_id INTEGER NOT NULL,"
    "  last_id INTEGER NOT NULL,"
    "  scheme INTEGER NOT NULL,"
    "  bits BLOB NOT NULL,"
    "  keys BLOB);"
    "DROP INDEX events_keys;",

    /* 9: a DID's whole story (docs/contract.md section 6; see struct sqlite_story). The
     * number DIDWW reported when delivery read a DID the rule named by id (the
     * record carries it in detail.before or detail.state, and no number column),
     * so `--number` finds that DID; and the records of a job that name no DID
     * (admin actions on a job), so `--did` finds them through the job's id.
     * Both are partial: of an event's records on the ingest path only a group
     * job's job.queued (it names no DID) enters one. The numbers delivery
     * resolved, by DID. */
    "CREATE INDEX audit_by_read_number ON audit (" SQLITE_READ_NUMBER
    ") WHERE " SQLITE_READ_NUMBER_ROWS ";"
    "CREATE INDEX audit_by_bare_job ON audit (job_id, seq) WHERE " SQLITE_BARE_JOB_ROWS ";"
    "CREATE INDEX did_numbers_by_did ON did_numbers (did);",

    /* 10: the rule's outcome stored with each event (rules_outcome_text: the
     * plan as `rule-test` prints it, or {"error": ...}), for `rule-test
     * --replay`. Events stored before have none: their plan is rebuilt once,
     * here, from their jobs rows (a job's action, method, path and body never
     * change after it is stored), and kept apart so replay can say so. A body
     * that is not JSON (never written by hookline) becomes a JSON string rather
     * than failing the migration. */
    "ALTER TABLE events ADD COLUMN plan TEXT;"
    "CREATE TABLE event_plans_from_jobs ("
    "  event_row INTEGER PRIMARY KEY,"
    "  plan TEXT NOT NULL);"
    "INSERT INTO event_plans_from_jobs (event_row, plan) "
    "SELECT event_row, json_group_array(json(p)) FROM (SELECT event_row, json_object("
    "'action', action, 'method', method, 'path', path, 'body', json(CASE WHEN body IS NULL "
    "THEN 'null' WHEN json_valid(body) THEN body ELSE json_quote(body) END)) "
    "AS p FROM jobs ORDER BY event_row, id) GROUP BY event_row;",
};

#define SQLITE_SCHEMA_VERSION ((int)(sizeof sqlite_migrations / sizeof sqlite_migrations[0]))

int store_sqlite_schema_version(void)
{
    return SQLITE_SCHEMA_VERSION;
}

int sqlite_user_version(sqlite3 *db)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

int sqlite_migrate(sqlite3 *db, char *err, size_t err_len)
{
    char e[200];
    if (sqlite_exec(db, "BEGIN IMMEDIATE", e, sizeof e) < 0) {
        snprintf(err, err_len, "cannot lock the database for migration: %s", e);
        return -1;
    }
    int v = sqlite_user_version(db);
    if (v < 0 || v > SQLITE_SCHEMA_VERSION) {
        snprintf(err, err_len, "database schema version %d is newer than this build's %d", v,
                 SQLITE_SCHEMA_VERSION);
        goto fail;
    }
    for (int i = v; i < SQLITE_SCHEMA_VERSION; i++) {
        char sql[64];
        if (sqlite_exec(db, sqlite_migrations[i], e, sizeof e) < 0) {
            snprintf(err, err_len, "migration %d failed: %s", i + 1, e);
            goto fail;
        }
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", i + 1);
        if (sqlite_exec(db, sql, e, sizeof e) < 0) {
            snprintf(err, err_len, "migration %d failed: %s", i + 1, e);
            goto fail;
        }
    }
    if (sqlite_exec(db, "COMMIT", e, sizeof e) < 0) {
        snprintf(err, err_len, "migration commit failed: %s", e);
        goto fail;
    }
    return 0;
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}
