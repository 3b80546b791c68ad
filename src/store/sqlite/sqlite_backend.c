/*
 * store_sqlite: the embedded SQLite backend of the store interface. The file is
 * in WAL mode with synchronous=NORMAL: a commit writes its frames to the WAL
 * without fsync, and sqlite_sync (the store's syncer thread) fdatasyncs the WAL
 * file before any submitter is told, so durability equals synchronous=FULL while
 * the next transaction is built during the fsync. Two connections: the writer (used only by the
 * store's writer thread, which serialises all writes, sequence numbers and the audit chain tip) and
 * a reader guarded by a mutex for queries from any thread. The schema is versioned by PRAGMA
 * user_version and migrated forward at open.
 */
#include "store/store_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "bloom.h"
#include "dedupe.h"
#include "log.h"
#include "number.h"

/* Audit records (by seq) and events (by row id) are grouped in blocks of
 * SQLITE_BLOOM_BLOCK; when a block is complete, a Bloom filter of its event ids
 * (16 bits per row, 7 probes: about 0.06% false positives) is stored in
 * audit_event_blooms or event_id_blooms, and a query by event id reads only the
 * blocks whose filter matches plus the incomplete newest block. */
#define SQLITE_BLOOM_BLOCK 4096
#define SQLITE_BLOOM_BYTES 8192
#define SQLITE_BLOOM_PROBES 7
/* Loading the dedupe set stops after this many consecutive events older than
 * the window. */
#define SQLITE_DEDUPE_OLD_RUN 10000
/* More candidate blocks than this and a query by event id scans the table. */
#define SQLITE_BLOOM_MAX_RANGES 64

/* One table's Bloom blocks: its filter table and the statements around it. */
struct sqlite_blooms {
    const char *what;           /* "audit" or "event", for messages */
    const char *next_block_sql; /* the first block without a filter row */
    const char *filters_sql;    /* first, last, scheme, bits of blocks ending <= ?1 */
    const char *max_row_sql;    /* the highest row (seq or id) in the table */
    sqlite3_stmt *sel_ids;      /* writer: event ids of rows ?1..?2 (events: with
                                 * id, received_at, key_fp, source) */
    sqlite3_stmt *ins;          /* writer: stores a block's filter row (events:
                                 * with the keys blob as ?6) */
    bool with_keys;             /* events: the row also stores the dedupe keys */
};
enum { SQLITE_BLOOMS_AUDIT, SQLITE_BLOOMS_EVENTS };

/* An event stored in the open transaction, added to the dedupe set once the
 * transaction commits. */
struct sqlite_new_key {
    uint64_t fp;
    int64_t row;
    double at;
};

struct sqlite_backend {
    struct store_backend base;
    sqlite3 *wdb; /* writer thread only */
    sqlite3 *rdb; /* under rlock */
    pthread_mutex_t rlock;
    sqlite3_stmt *ins_event, *ins_job, *ins_audit, *replan;
    int64_t next_seq;       /* writer thread only */
    int data_version;       /* writer thread only: PRAGMA data_version seen */
    uint64_t commits;       /* writer thread only */
    int wal_frames;         /* writer thread only: frames in the WAL */
    pthread_t checkpointer; /* WAL checkpoints off the commit path */
    bool have_checkpointer;
    pthread_mutex_t ck_lock;
    pthread_cond_t ck_wake;
    bool ck_stop, ck_due;
    char *path;
    int wal_fd; /* syncer thread only: the WAL file, for fdatasync */
    ino_t wal_ino;
    char tip[AUDIT_HASH_HEX_LEN + 1]; /* hash of the newest audit record */

    /* Deduplication (writer thread only): the keys of the events received in
     * the last dedupe_window_s, loaded at the first event after open and kept
     * current from the events other processes insert (seen by data_version). */
    struct dedupe *dd;
    bool dd_loaded;
    int64_t dd_max_row; /* every event row <= this is in dd (or expired) */
    double dd_window_s;
    size_t dd_max_keys;
    _Atomic uint64_t dd_evicted; /* keys dropped early because dd was full */
    _Atomic uint64_t dd_keys;    /* dedupe_count(dd), published for metrics */
    struct sqlite_new_key *dd_new;
    size_t dd_nnew, dd_new_cap;
    sqlite3_stmt *sel_event_key, *sel_events_after;
    struct sqlite_blooms blooms[2]; /* SQLITE_BLOOMS_AUDIT, SQLITE_BLOOMS_EVENTS */
};

/* The number DIDWW reported for the DID of a job.attempt (its before-state) or a
 * job.noop (its state), on the records that name the DID by id alone. Indexed by
 * migration 9: a query must use these texts unchanged for SQLite to use the
 * index (and a shipped migration is never edited, so neither are they). */
#define SQLITE_READ_NUMBER                                                                         \
    "CASE WHEN json_valid(record) THEN coalesce(json_extract(record, '$.detail.before.number'), "  \
    "json_extract(record, '$.detail.state.number')) END"
#define SQLITE_READ_NUMBER_ROWS                                                                    \
    "kind IN ('job.attempt', 'job.noop') AND did IS NOT NULL AND number IS NULL"
/* The records of a job that name no DID: admin actions on the job, group jobs. */
#define SQLITE_BARE_JOB_ROWS "job_id IS NOT NULL AND did IS NULL AND number IS NULL"

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
};

#define SQLITE_SCHEMA_VERSION ((int)(sizeof sqlite_migrations / sizeof sqlite_migrations[0]))

int store_sqlite_schema_version(void)
{
    return SQLITE_SCHEMA_VERSION;
}

static void sqlite_err(sqlite3 *db, const char *what, char *err, size_t err_len)
{
    snprintf(err, err_len, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

static int sqlite_exec(sqlite3 *db, const char *sql, char *err, size_t err_len)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, err_len, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Runs a query returning one integer into *out. Returns 0, or -1 with err set
 * ("what: reason"). */
static int sqlite_query_int64(sqlite3 *db, const char *sql, int64_t *out, const char *what,
                              char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        sqlite_err(db, what, err, err_len);
    }
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_user_version(sqlite3 *db)
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

static int sqlite_migrate(sqlite3 *db, char *err, size_t err_len)
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

static int sqlite_data_version(sqlite3 *db)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA data_version", -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* WAL checkpoints. A thread of its own (with its own connection) copies pages
 * back into the database with PASSIVE checkpoints that never delay a commit; it
 * is woken once the WAL holds SQLITE_CHECKPOINT_FRAMES frames (and every second). Under a
 * continuous write load such a checkpoint never quite catches up, so the WAL could not restart and
 * would grow without bound: once it holds SQLITE_WAL_MAX_FRAMES frames, the
 * writer finishes the checkpoint itself between two transactions (little is
 * left to copy by then) and the next transaction starts the WAL from the top. */
#define SQLITE_CHECKPOINT_FRAMES 2048
#define SQLITE_WAL_MAX_FRAMES 8192

static int sqlite_wal_hook(void *ud, sqlite3 *db, const char *name, int frames)
{
    struct sqlite_backend *be = ud;
    (void)db;
    (void)name;
    be->wal_frames = frames;
    return SQLITE_OK;
}

static void sqlite_maybe_checkpoint(struct sqlite_backend *be)
{
    if (be->wal_frames >= SQLITE_WAL_MAX_FRAMES) {
        sqlite3_wal_checkpoint_v2(be->wdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        be->wal_frames = 0;
    }
    if (!be->have_checkpointer || be->wal_frames < SQLITE_CHECKPOINT_FRAMES)
        return;
    pthread_mutex_lock(&be->ck_lock);
    be->ck_due = true;
    pthread_cond_signal(&be->ck_wake);
    pthread_mutex_unlock(&be->ck_lock);
}

static void *sqlite_checkpoint_main(void *arg)
{
    struct sqlite_backend *be = arg;
    pthread_setname_np(pthread_self(), "sqlite-ckpt");
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(be->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 1000);
    /* A connection learns that the file is in WAL mode only once it has read
     * it; until then a checkpoint call does nothing. */
    sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL);
    for (;;) {
        pthread_mutex_lock(&be->ck_lock);
        while (!be->ck_due && !be->ck_stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1; /* at least once a second while idle */
            if (pthread_cond_timedwait(&be->ck_wake, &be->ck_lock, &ts) != 0)
                break;
        }
        bool stop = be->ck_stop;
        be->ck_due = false;
        pthread_mutex_unlock(&be->ck_lock);
        /* PASSIVE never blocks the writer; the last one at shutdown truncates. */
        sqlite3_wal_checkpoint_v2(
            db, NULL, stop ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (stop)
            break;
    }
    sqlite3_close(db);
    return NULL;
}

/* Loads next_seq and the chain tip from the newest audit record. */
static int sqlite_load_tip(struct sqlite_backend *be, char *err, size_t err_len)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(be->wdb, "SELECT seq, record FROM audit ORDER BY seq DESC LIMIT 1", -1,
                           &st, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "reading the audit tip", err, err_len);
        return -1;
    }
    be->next_seq = 1;
    snprintf(be->tip, sizeof be->tip, "%s", AUDIT_GENESIS_HASH);
    if (sqlite3_step(st) == SQLITE_ROW) {
        be->next_seq = sqlite3_column_int64(st, 0) + 1;
        json_t *r = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
        const char *h = json_string_value(json_object_get(r, "hash"));
        if (h)
            snprintf(be->tip, sizeof be->tip, "%s", h);
        json_decref(r);
    }
    sqlite3_finalize(st);
    return 0;
}

static const char *sqlite_jstr(json_t *rec, const char *key)
{
    return json_string_value(json_object_get(rec, key));
}

static void sqlite_bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static double sqlite_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A block's dedupe keys: SQLITE_BLOOM_BLOCK entries, entry i for row id
 * block * SQLITE_BLOOM_BLOCK + 1 + i, each the row's dedupe_fingerprint and
 * the bits of its received_at double, both little-endian 64-bit (an on-disk
 * format: the same on every machine). A missing row leaves zeros: time 0 is
 * older than any window. */
#define SQLITE_KEYS_ENTRY 16
#define SQLITE_KEYS_BYTES (SQLITE_BLOOM_BLOCK * SQLITE_KEYS_ENTRY)

static void sqlite_le64_put(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t sqlite_le64_get(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void sqlite_keys_put(unsigned char *keys, size_t i, uint64_t fp, double at)
{
    uint64_t bits;
    memcpy(&bits, &at, sizeof bits);
    sqlite_le64_put(keys + i * SQLITE_KEYS_ENTRY, fp);
    sqlite_le64_put(keys + i * SQLITE_KEYS_ENTRY + 8, bits);
}

static void sqlite_keys_get(const unsigned char *keys, size_t i, uint64_t *fp, double *at)
{
    uint64_t bits = sqlite_le64_get(keys + i * SQLITE_KEYS_ENTRY + 8);
    *fp = sqlite_le64_get(keys + i * SQLITE_KEYS_ENTRY);
    memcpy(at, &bits, sizeof *at);
}

/* Stores the Bloom filter of the event ids of complete block `block` of one
 * table (rows block * SQLITE_BLOOM_BLOCK + 1 ..). A block without event ids gets
 * no row: a query treats a missing block like a filter that matches nothing.
 * Writer thread, inside a transaction. */
static int sqlite_bloom_build(struct sqlite_backend *be, struct sqlite_blooms *bs, int64_t block,
                              char *err, size_t err_len)
{
    int64_t first = block * SQLITE_BLOOM_BLOCK + 1, last = (block + 1) * SQLITE_BLOOM_BLOCK;
    unsigned char *bits = calloc(1, SQLITE_BLOOM_BYTES);
    unsigned char *keyblob = bs->with_keys ? calloc(1, SQLITE_KEYS_BYTES) : NULL;
    char what[64];
    if (!bits || (bs->with_keys && !keyblob)) {
        snprintf(err, err_len, "out of memory building an %s block filter", bs->what);
        return -1;
    }
    int rc = -1;
    size_t keys = 0;
    sqlite3_stmt *st = bs->sel_ids;
    sqlite3_bind_int64(st, 1, first);
    sqlite3_bind_int64(st, 2, last);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const void *id = sqlite3_column_text(st, 0);
        bloom_add(bits, SQLITE_BLOOM_BYTES, bloom_hash(id, (size_t)sqlite3_column_bytes(st, 0)),
                  SQLITE_BLOOM_PROBES);
        keys++;
        int64_t row = bs->with_keys ? sqlite3_column_int64(st, 1) : 0;
        if (bs->with_keys && row >= first && row <= last) {
            /* An event stored before schema 7 has no fingerprint column value. */
            uint64_t fp =
                sqlite3_column_type(st, 3) == SQLITE_NULL
                    ? dedupe_fingerprint((const char *)sqlite3_column_text(st, 4), (const char *)id)
                    : (uint64_t)sqlite3_column_int64(st, 3);
            sqlite_keys_put(keyblob, (size_t)(row - first), fp, sqlite3_column_double(st, 2));
        }
    }
    sqlite3_reset(st);
    if (s != SQLITE_DONE) {
        snprintf(what, sizeof what, "reading an %s block", bs->what);
        sqlite_err(be->wdb, what, err, err_len);
        goto out;
    }
    if (keys > 0) {
        st = bs->ins;
        sqlite3_bind_int64(st, 1, block);
        sqlite3_bind_int64(st, 2, first);
        sqlite3_bind_int64(st, 3, last);
        sqlite3_bind_int(st, 4, BLOOM_SCHEME);
        sqlite3_bind_blob(st, 5, bits, SQLITE_BLOOM_BYTES, SQLITE_STATIC);
        if (bs->with_keys)
            sqlite3_bind_blob(st, 6, keyblob, SQLITE_KEYS_BYTES, SQLITE_STATIC);
        s = sqlite3_step(st);
        sqlite3_reset(st);
        if (s != SQLITE_DONE) {
            snprintf(what, sizeof what, "storing an %s block filter", bs->what);
            sqlite_err(be->wdb, what, err, err_len);
            goto out;
        }
    }
    rc = 0;
out:
    free(bits);
    free(keyblob);
    return rc;
}

/* Builds the filters of complete blocks of one table that have none yet (rows
 * written before the filters existed, or blocks left empty). Writer, at open;
 * logs what took more than a moment. */
static int sqlite_bloom_backfill(struct sqlite_backend *be, struct sqlite_blooms *bs, char *err,
                                 size_t err_len)
{
    int64_t max_row = 0, from = 0;
    char what[64];
    snprintf(what, sizeof what, "reading the %s block filters", bs->what);
    if (sqlite_query_int64(be->wdb, bs->max_row_sql, &max_row, what, err, err_len) < 0 ||
        sqlite_query_int64(be->wdb, bs->next_block_sql, &from, what, err, err_len) < 0)
        return -1;
    int64_t complete = max_row / SQLITE_BLOOM_BLOCK; /* blocks 0..complete-1 */
    if (from >= complete)
        return 0;
    double started = sqlite_wall_now();
    if (sqlite_exec(be->wdb, "BEGIN IMMEDIATE", err, err_len) < 0)
        return -1;
    for (int64_t b = from; b < complete; b++)
        if (sqlite_bloom_build(be, bs, b, err, err_len) < 0) {
            sqlite3_exec(be->wdb, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    if (sqlite_exec(be->wdb, "COMMIT", err, err_len) < 0)
        return -1;
    double took = sqlite_wall_now() - started;
    if (took >= 1.0) {
        char blocks[32], secs[32];
        snprintf(blocks, sizeof blocks, "%lld", (long long)(complete - from));
        snprintf(secs, sizeof secs, "%.1f", took);
        log_write(LOG_INFO, "block filters built for rows stored before they existed",
                  (const char *[]){"table", bs->what, "blocks", blocks, "seconds", secs, NULL});
    }
    return 0;
}

/* Seals rec into the chain and inserts it. Writer thread, inside a transaction. */
static int sqlite_append_audit(struct sqlite_backend *be, json_t *rec, char *err, size_t err_len)
{
    char hash[AUDIT_HASH_HEX_LEN + 1];
    char *text = audit_seal(rec, be->next_seq, be->tip, hash);
    if (!text) {
        snprintf(err, err_len, "out of memory sealing an audit record");
        return -1;
    }
    sqlite3_stmt *st = be->ins_audit;
    json_t *job = json_object_get(rec, "job_id");
    sqlite3_bind_int64(st, 1, be->next_seq);
    sqlite_bind_text_or_null(st, 2, sqlite_jstr(rec, "time"));
    sqlite_bind_text_or_null(st, 3, sqlite_jstr(rec, "kind"));
    sqlite_bind_text_or_null(st, 4, sqlite_jstr(rec, "source"));
    sqlite_bind_text_or_null(st, 5, sqlite_jstr(rec, "event_id"));
    if (json_is_integer(job))
        sqlite3_bind_int64(st, 6, json_integer_value(job));
    else
        sqlite3_bind_null(st, 6);
    sqlite_bind_text_or_null(st, 7, sqlite_jstr(rec, "did"));
    sqlite_bind_text_or_null(st, 8, sqlite_jstr(rec, "number"));
    sqlite3_bind_text(st, 9, text, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    free(text);
    if (rc != SQLITE_DONE) {
        sqlite_err(be->wdb, "appending an audit record", err, err_len);
        return -1;
    }
    be->next_seq++;
    memcpy(be->tip, hash, sizeof be->tip);
    /* The record just appended completed its block: file the block's filter. */
    if ((be->next_seq - 1) % SQLITE_BLOOM_BLOCK == 0 &&
        sqlite_bloom_build(be, &be->blooms[SQLITE_BLOOMS_AUDIT],
                           (be->next_seq - 1) / SQLITE_BLOOM_BLOCK - 1, err, err_len) < 0)
        return -1;
    return 0;
}

/* Appends the op's own audit records (in order) inside the open transaction. */
static int sqlite_append_op_audit(struct sqlite_backend *be, struct store_op *op, char *err,
                                  size_t err_len)
{
    for (size_t i = 0; i < op->naudit; i++)
        if (sqlite_append_audit(be, op->audit[i], err, err_len) < 0)
            return -1;
    return 0;
}

/* Adds one stored event to the dedupe set, noting keys evicted before expiry. */
static void sqlite_dedupe_add(struct sqlite_backend *be, uint64_t fp, int64_t row, double at,
                              double cutoff)
{
    long evicted = dedupe_add(be->dd, fp, row, at, cutoff);
    if (evicted < 0) {
        log_error("store: out of memory in the dedupe set");
        abort(); /* the project's OOM policy: see README */
    }
    if (evicted > 0) {
        atomic_fetch_add(&be->dd_evicted, (uint64_t)evicted);
        char n[32], max[32];
        snprintf(n, sizeof n, "%ld", evicted);
        snprintf(max, sizeof max, "%zu", be->dd_max_keys);
        log_write(LOG_WARN,
                  "dedupe set full: the oldest event keys were dropped before their window "
                  "ended (raise store.dedupe_max_keys)",
                  (const char *[]){"dropped", n, "dedupe_max_keys", max, NULL});
    }
    if (row > be->dd_max_row)
        be->dd_max_row = row;
}

/* The state of one dedupe load: entries are offered newest first. */
struct sqlite_load {
    double cutoff;
    size_t n, old_run;
    bool done;
};

/* Offers one event to the load; sets l->done when the load should stop. */
static void sqlite_load_offer(struct sqlite_backend *be, struct sqlite_load *l, int64_t row,
                              double at, uint64_t fp)
{
    /* Rows are in arrival order, so the first one older than the window
     * usually ends the load; but a clock stepped back can stamp a few rows
     * too old, so only a long run of them does. */
    if (at < l->cutoff) {
        if (++l->old_run >= SQLITE_DEDUPE_OLD_RUN)
            l->done = true;
        return;
    }
    l->old_run = 0;
    sqlite_dedupe_add(be, fp, row, at, l->cutoff);
    if (++l->n >= be->dd_max_keys)
        l->done = true;
}

/* Offers the events of rows lo..hi (newest first) read from the events table:
 * the incomplete newest block, or a complete block whose keys are missing. */
static int sqlite_load_rows(struct sqlite_backend *be, struct sqlite_load *l, int64_t lo,
                            int64_t hi, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(be->wdb,
                           "SELECT id, received_at, key_fp, source, event_id FROM events "
                           "WHERE id BETWEEN ? AND ? ORDER BY id DESC",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "loading the dedupe set", err, err_len);
        return -1;
    }
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    int s = SQLITE_DONE; /* l->done may stop the loop before a step */
    while (!l->done && (s = sqlite3_step(st)) == SQLITE_ROW) {
        /* An event stored before schema 7 has no fingerprint column value. */
        uint64_t fp = sqlite3_column_type(st, 2) == SQLITE_NULL
                          ? dedupe_fingerprint((const char *)sqlite3_column_text(st, 3),
                                               (const char *)sqlite3_column_text(st, 4))
                          : (uint64_t)sqlite3_column_int64(st, 2);
        sqlite_load_offer(be, l, sqlite3_column_int64(st, 0), sqlite3_column_double(st, 1), fp);
    }
    bool ok = l->done || s == SQLITE_DONE;
    if (!ok)
        sqlite_err(be->wdb, "loading the dedupe set", err, err_len);
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

/* Loads the dedupe set from the events received inside the window, newest
 * first, at most dd_max_keys of them: the incomplete newest block from the
 * events table, then each complete block's keys from event_id_blooms (16
 * bytes an event, no event rows read). Writer thread, inside a transaction. */
static int sqlite_dedupe_load(struct sqlite_backend *be, char *err, size_t err_len)
{
    if (!be->dd)
        be->dd = dedupe_create(be->dd_max_keys);
    if (!be->dd) {
        snprintf(err, err_len, "out of memory for the dedupe set");
        return -1;
    }
    sqlite3_stmt *st = NULL;
    int64_t newest = 0;
    struct sqlite_load l = {.cutoff = sqlite_wall_now() - be->dd_window_s};
    int rc = -1;
    if (sqlite_query_int64(be->wdb, "SELECT coalesce(max(id), 0) FROM events", &newest,
                           "loading the dedupe set", err, err_len) < 0)
        goto out;
    int64_t complete = newest / SQLITE_BLOOM_BLOCK; /* blocks 0..complete-1 */
    if (sqlite_load_rows(be, &l, complete * SQLITE_BLOOM_BLOCK + 1, newest, err, err_len) < 0)
        goto out;
    if (sqlite3_prepare_v2(be->wdb, "SELECT keys FROM event_id_blooms WHERE block = ?", -1, &st,
                           NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "loading the dedupe set", err, err_len);
        goto out;
    }
    for (int64_t b = complete - 1; b >= 0 && !l.done; b--) {
        int64_t first = b * SQLITE_BLOOM_BLOCK + 1;
        sqlite3_bind_int64(st, 1, b);
        int s = sqlite3_step(st);
        const unsigned char *keys = s == SQLITE_ROW ? sqlite3_column_blob(st, 0) : NULL;
        if (s != SQLITE_ROW && s != SQLITE_DONE) {
            sqlite_err(be->wdb, "loading the dedupe set", err, err_len);
            goto out;
        }
        if (keys && sqlite3_column_bytes(st, 0) == SQLITE_KEYS_BYTES) {
            for (size_t i = SQLITE_BLOOM_BLOCK; i-- > 0 && !l.done;) {
                uint64_t fp;
                double at;
                sqlite_keys_get(keys, i, &fp, &at);
                sqlite_load_offer(be, &l, first + (int64_t)i, at, fp);
            }
        } else if (sqlite_load_rows(be, &l, first, first + SQLITE_BLOOM_BLOCK - 1, err, err_len) <
                   0) { /* no keys for this block: read its rows */
            goto out;
        }
        sqlite3_reset(st);
    }
    be->dd_max_row = newest;
    be->dd_loaded = true;
    atomic_store(&be->dd_keys, (uint64_t)dedupe_count(be->dd));
    rc = 0;
out:
    sqlite3_finalize(st);
    if (rc < 0) {
        dedupe_destroy(be->dd); /* partly loaded: start again next time */
        be->dd = NULL;
    }
    return rc;
}

/* Adds the events another process stored since our last commit. */
static int sqlite_dedupe_catch_up(struct sqlite_backend *be, char *err, size_t err_len)
{
    sqlite3_stmt *st = be->sel_events_after;
    double cutoff = sqlite_wall_now() - be->dd_window_s;
    sqlite3_bind_int64(st, 1, be->dd_max_row);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t fp = sqlite3_column_type(st, 4) == SQLITE_NULL
                          ? dedupe_fingerprint((const char *)sqlite3_column_text(st, 1),
                                               (const char *)sqlite3_column_text(st, 2))
                          : (uint64_t)sqlite3_column_int64(st, 4);
        sqlite_dedupe_add(be, fp, sqlite3_column_int64(st, 0), sqlite3_column_double(st, 3),
                          cutoff);
    }
    sqlite3_reset(st);
    if (s != SQLITE_DONE) {
        sqlite_err(be->wdb, "reading new events", err, err_len);
        return -1;
    }
    return 0;
}

/* 1 when event row `row` is (source, event_id) and was received less than
 * window_s before `at` (its receive time in *row_at), 0 when not, -1 on error. */
static int sqlite_dedupe_confirm(struct sqlite_backend *be, int64_t row, const struct store_op *op,
                                 char *err, size_t err_len)
{
    sqlite3_stmt *st = be->sel_event_key;
    sqlite3_bind_int64(st, 1, row);
    int s = sqlite3_step(st);
    int match = 0;
    if (s == SQLITE_ROW) {
        const char *src = (const char *)sqlite3_column_text(st, 0);
        const char *id = (const char *)sqlite3_column_text(st, 1);
        double at = sqlite3_column_double(st, 2);
        match = src && id && strcmp(src, op->source) == 0 && strcmp(id, op->event_id) == 0 &&
                op->received_at - at < (double)op->dedupe_window_s;
    }
    sqlite3_reset(st);
    if (s != SQLITE_ROW && s != SQLITE_DONE) {
        sqlite_err(be->wdb, "looking up a duplicate", err, err_len);
        return -1;
    }
    return match;
}

/* Inserts the event, or finds the stored event it duplicates (same source and
 * event id, received inside the source's window). Returns 0 with op->outcome
 * set. The dedupe set narrows the candidates to rows with the same key
 * fingerprint; each candidate is confirmed against its row. */
static int sqlite_insert_event(struct sqlite_backend *be, struct store_op *op, char *err,
                               size_t err_len)
{
    if (!be->dd_loaded && sqlite_dedupe_load(be, err, err_len) < 0)
        return -1;
    uint64_t fp = dedupe_fingerprint(op->source, op->event_id);
    /* Events of this transaction first (newest first), then the set's. */
    for (size_t i = be->dd_nnew; i-- > 0;) {
        if (be->dd_new[i].fp != fp)
            continue;
        int m = sqlite_dedupe_confirm(be, be->dd_new[i].row, op, err, err_len);
        if (m < 0)
            return -1;
        if (m) {
            op->outcome = STORE_DUPLICATE;
            op->event_row = be->dd_new[i].row;
            return 0;
        }
    }
    int64_t rows[8];
    size_t n = dedupe_find(be->dd, fp, rows, sizeof rows / sizeof rows[0]);
    if (n > sizeof rows / sizeof rows[0])
        n = sizeof rows / sizeof rows[0]; /* the newest ones decide */
    for (size_t i = 0; i < n; i++) {
        int m = sqlite_dedupe_confirm(be, rows[i], op, err, err_len);
        if (m < 0)
            return -1;
        if (m) {
            op->outcome = STORE_DUPLICATE;
            op->event_row = rows[i];
            return 0;
        }
    }
    if (be->dd_nnew == be->dd_new_cap) {
        size_t cap = be->dd_new_cap ? be->dd_new_cap * 2 : 64;
        struct sqlite_new_key *nk = realloc(be->dd_new, cap * sizeof *nk);
        if (!nk) {
            snprintf(err, err_len, "out of memory");
            return -1;
        }
        be->dd_new = nk;
        be->dd_new_cap = cap;
    }
    sqlite3_stmt *st = be->ins_event;
    sqlite3_bind_text(st, 1, op->source, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->event_id, -1, SQLITE_STATIC);
    sqlite3_bind_null(st, 3); /* dedupe_key: schema 7 keeps keys in memory */
    sqlite3_bind_double(st, 4, op->received_at);
    sqlite3_bind_text(st, 5, op->status ? op->status : "accepted", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, op->content_type ? op->content_type : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, op->headers_json ? op->headers_json : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 8, op->body ? (const void *)op->body : (const void *)"",
                      (int)op->body_len, SQLITE_STATIC);
    sqlite_bind_text_or_null(st, 9, op->rule_version);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)op->njobs);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)fp);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        sqlite_err(be->wdb, "inserting the event", err, err_len);
        return -1;
    }
    op->outcome = STORE_STORED;
    op->event_row = sqlite3_last_insert_rowid(be->wdb);
    be->dd_new[be->dd_nnew++] =
        (struct sqlite_new_key){.fp = fp, .row = op->event_row, .at = op->received_at};
    /* The event just stored completed its block: file the block's filter. */
    if (op->event_row % SQLITE_BLOOM_BLOCK == 0 &&
        sqlite_bloom_build(be, &be->blooms[SQLITE_BLOOMS_EVENTS],
                           op->event_row / SQLITE_BLOOM_BLOCK - 1, err, err_len) < 0)
        return -1;
    return 0;
}

/* The DID id a number was resolved to, into out[len]; false when unknown. */
static bool sqlite_mapped_did(struct sqlite_backend *be, const char *number, char *out, size_t len)
{
    sqlite3_stmt *st;
    bool found = false;
    if (sqlite3_prepare_v2(be->wdb, "SELECT did FROM did_numbers WHERE number = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(st, 1, number, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
        found = true;
    }
    sqlite3_finalize(st);
    return found;
}

static int sqlite_insert_jobs(struct sqlite_backend *be, struct store_op *op, char *err,
                              size_t err_len)
{
    for (size_t i = 0; i < op->njobs; i++) {
        const struct store_job_spec *j = &op->jobs[i];
        sqlite3_stmt *st = be->ins_job;
        char mapped[64], key[96];
        const char *did = j->did, *order_key = j->order_key;
        if (!did && j->number && sqlite_mapped_did(be, j->number, mapped, sizeof mapped)) {
            did = mapped;
            snprintf(key, sizeof key, "did:%s", mapped);
            order_key = key;
        }
        sqlite3_bind_int64(st, 1, op->event_row);
        sqlite3_bind_text(st, 2, op->source, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, op->event_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, j->action, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, j->method, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, j->path, -1, SQLITE_STATIC);
        sqlite_bind_text_or_null(st, 7, j->body);
        sqlite_bind_text_or_null(st, 8, did);
        sqlite_bind_text_or_null(st, 9, j->number);
        sqlite3_bind_text(st, 10, order_key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(st, 11, op->received_at);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE) {
            sqlite_err(be->wdb, "inserting a job", err, err_len);
            return -1;
        }
        json_t *rec = audit_record_new("job.queued", op->source, op->event_id);
        if (!rec) {
            snprintf(err, err_len, "out of memory");
            return -1;
        }
        json_object_set_new(rec, "job_id", json_integer(sqlite3_last_insert_rowid(be->wdb)));
        if (did)
            json_object_set_new(rec, "did", json_string(did));
        if (j->number)
            json_object_set_new(rec, "number", json_string(j->number));
        audit_detail_set_str(rec, "action", j->action);
        audit_detail_set_str(rec, "method", j->method);
        audit_detail_set_str(rec, "path", j->path);
        int arc = sqlite_append_audit(be, rec, err, err_len);
        json_decref(rec);
        if (arc < 0)
            return -1;
    }
    return 0;
}

/* ---------- the delivery queue ---------- */

static char *sqlite_col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

#define SQLITE_JOB_COLUMNS                                                                         \
    "id, source, event_id, action, method, path, body, did, number, order_key, attempts, "         \
    "created_at, state, last_status, last_error"

static void sqlite_job_from_row(sqlite3_stmt *st, struct store_job *j)
{
    j->id = sqlite3_column_int64(st, 0);
    j->source = sqlite_col_dup(st, 1);
    j->event_id = sqlite_col_dup(st, 2);
    j->action = sqlite_col_dup(st, 3);
    j->method = sqlite_col_dup(st, 4);
    j->path = sqlite_col_dup(st, 5);
    j->body = sqlite_col_dup(st, 6);
    j->did = sqlite_col_dup(st, 7);
    j->number = sqlite_col_dup(st, 8);
    j->order_key = sqlite_col_dup(st, 9);
    j->attempts = sqlite3_column_int(st, 10);
    j->created_at = sqlite3_column_double(st, 11);
}

static json_t *sqlite_job_record(const char *kind, const struct store_job *j)
{
    json_t *rec = audit_record_new(kind, j->source, j->event_id);
    if (!rec)
        return NULL;
    json_object_set_new(rec, "job_id", json_integer(j->id));
    if (j->did)
        json_object_set_new(rec, "did", json_string(j->did));
    if (j->number)
        json_object_set_new(rec, "number", json_string(j->number));
    audit_detail_set_str(rec, "action", j->action);
    return rec;
}

/* Marks the pending jobs of key that a later pending job fully replaces. */
static int sqlite_coalesce(struct sqlite_backend *be, const char *key, double now,
                           store_supersedes_fn supersedes, char *err, size_t err_len)
{
    sqlite3_stmt *q = NULL, *upd = NULL;
    struct store_job *jobs = NULL;
    size_t n = 0, cap = 0;
    int rc = -1;
    if (sqlite3_prepare_v2(be->wdb,
                           "SELECT " SQLITE_JOB_COLUMNS " FROM jobs WHERE order_key = ? AND "
                           "state = 'pending' ORDER BY id LIMIT 10000",
                           -1, &q, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(be->wdb,
                           "UPDATE jobs SET state = 'superseded', updated_at = ? WHERE id = ? AND "
                           "state = 'pending'",
                           -1, &upd, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "coalescing", err, err_len);
        goto out;
    }
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct store_job *nj = realloc(jobs, ncap * sizeof *nj);
            if (!nj) {
                snprintf(err, err_len, "out of memory");
                goto out;
            }
            jobs = nj;
            cap = ncap;
        }
        memset(&jobs[n], 0, sizeof jobs[n]);
        sqlite_job_from_row(q, &jobs[n++]);
    }
    for (size_t i = 0; i + 1 < n; i++) {
        for (size_t k = n - 1; k > i; k--) {
            if (!supersedes(&jobs[k], &jobs[i]))
                continue;
            sqlite3_bind_double(upd, 1, now);
            sqlite3_bind_int64(upd, 2, jobs[i].id);
            int s = sqlite3_step(upd);
            sqlite3_reset(upd);
            if (s != SQLITE_DONE) {
                sqlite_err(be->wdb, "superseding a job", err, err_len);
                goto out;
            }
            json_t *rec = sqlite_job_record("job.superseded", &jobs[i]);
            audit_detail_set_int(rec, "superseded_by", (long long)jobs[k].id);
            int arc = rec ? sqlite_append_audit(be, rec, err, err_len) : -1;
            json_decref(rec);
            if (arc < 0)
                goto out;
            break;
        }
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++)
        store_job_clear(&jobs[i]);
    free(jobs);
    sqlite3_finalize(q);
    sqlite3_finalize(upd);
    return rc;
}

/* True when job id is in state a or b (after coalescing it may be superseded). */
static bool sqlite_job_state_is(struct sqlite_backend *be, int64_t id, const char *a, const char *b)
{
    sqlite3_stmt *st;
    bool yes = false;
    if (sqlite3_prepare_v2(be->wdb, "SELECT state FROM jobs WHERE id = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return false;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *s = (const char *)sqlite3_column_text(st, 0);
        yes = s && (strcmp(s, a) == 0 || strcmp(s, b) == 0);
    }
    sqlite3_finalize(st);
    return yes;
}

/* Claims due jobs: the head (lowest id unfinished) of each order key, when it is
 * due and no job of the key is running under a live lease. */
static int sqlite_claim(struct sqlite_backend *be, struct store_op *op, char *err, size_t err_len)
{
    sqlite3_stmt *heads = NULL, *take = NULL, *row = NULL;
    int rc = -1;
    int cap = op->claim_max > 0 ? op->claim_max : 1;
    double now = op->claim_now;
    /* A batch retried after another op failed runs this again: start clean. */
    for (int i = 0; i < op->claim_n; i++)
        store_job_clear(&op->claim_jobs[i]);
    free(op->claim_jobs);
    op->claim_n = 0;
    op->claim_jobs = calloc((size_t)cap, sizeof *op->claim_jobs);
    if (!op->claim_jobs) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    if (sqlite3_prepare_v2(be->wdb,
                           "SELECT j.id, j.order_key FROM jobs j WHERE ((j.state = 'pending' AND "
                           "j.next_attempt_at <= ?1) OR (j.state = 'running' AND j.lease_until < "
                           "?1)) AND j.id = (SELECT min(k.id) FROM jobs k WHERE k.order_key = "
                           "j.order_key AND k.state IN ('pending', 'running')) ORDER BY j.id "
                           "LIMIT ?2",
                           -1, &heads, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(be->wdb,
                           "UPDATE jobs SET state = 'running', lease_until = ?1, updated_at = ?2 "
                           "WHERE id = ?3",
                           -1, &take, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(be->wdb, "SELECT " SQLITE_JOB_COLUMNS " FROM jobs WHERE id = ?", -1,
                           &row, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "claiming jobs", err, err_len);
        goto out;
    }
    /* Candidate heads first; then coalesce only their keys (a key's later pending
     * jobs may supersede its head) and take the heads that survive. */
    sqlite3_bind_double(heads, 1, now);
    sqlite3_bind_int(heads, 2, cap);
    int64_t cand[256];
    char *cand_key[256];
    int ncand = 0;
    while (sqlite3_step(heads) == SQLITE_ROW && ncand < cap && ncand < 256) {
        cand[ncand] = sqlite3_column_int64(heads, 0);
        cand_key[ncand] = sqlite_col_dup(heads, 1);
        ncand++;
    }
    sqlite3_reset(heads);
    int64_t ids[256];
    int nids = 0;
    int crc = 0;
    for (int i = 0; i < ncand; i++) {
        if (crc == 0 && op->claim_supersedes && cand_key[i])
            crc = sqlite_coalesce(be, cand_key[i], now, op->claim_supersedes, err, err_len);
        if (crc == 0 && sqlite_job_state_is(be, cand[i], "pending", "running"))
            ids[nids++] = cand[i];
        free(cand_key[i]);
    }
    if (crc < 0)
        goto out;
    for (int i = 0; i < nids; i++) {
        sqlite3_bind_double(take, 1, now + op->claim_lease_s);
        sqlite3_bind_double(take, 2, now);
        sqlite3_bind_int64(take, 3, ids[i]);
        int s = sqlite3_step(take);
        sqlite3_reset(take);
        if (s != SQLITE_DONE) {
            sqlite_err(be->wdb, "claiming a job", err, err_len);
            goto out;
        }
        sqlite3_bind_int64(row, 1, ids[i]);
        if (sqlite3_step(row) == SQLITE_ROW)
            sqlite_job_from_row(row, &op->claim_jobs[op->claim_n++]);
        sqlite3_reset(row);
    }
    op->outcome = STORE_STORED;
    rc = 0;
out:
    sqlite3_finalize(heads);
    sqlite3_finalize(take);
    sqlite3_finalize(row);
    if (rc < 0) {
        for (int i = 0; i < op->claim_n; i++)
            store_job_clear(&op->claim_jobs[i]);
        free(op->claim_jobs);
        op->claim_jobs = NULL;
        op->claim_n = 0;
    }
    return rc;
}

static int sqlite_job_update(struct sqlite_backend *be, struct store_op *op, char *err,
                             size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(be->wdb,
                           "UPDATE jobs SET state = ?1, next_attempt_at = coalesce(?2, "
                           "next_attempt_at), attempts = ?3, last_status = ?4, last_error = ?5, "
                           "did = coalesce(?6, did), lease_until = NULL, updated_at = ?7 WHERE "
                           "id = ?8 AND (?9 IS NULL OR state = ?9)",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "updating a job", err, err_len);
        return -1;
    }
    sqlite3_bind_text(st, 1, op->job_state, -1, SQLITE_STATIC);
    if (op->job_next_at > 0)
        sqlite3_bind_double(st, 2, op->job_next_at);
    sqlite3_bind_int(st, 3, op->job_attempts);
    if (op->job_last_status)
        sqlite3_bind_int(st, 4, op->job_last_status);
    sqlite_bind_text_or_null(st, 5, op->job_last_error);
    sqlite_bind_text_or_null(st, 6, op->job_did);
    sqlite3_bind_double(st, 7, op->received_at);
    sqlite3_bind_int64(st, 8, op->job_id);
    sqlite_bind_text_or_null(st, 9, op->job_only_from);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite_err(be->wdb, "updating a job", err, err_len);
        goto out;
    }
    if (sqlite3_changes(be->wdb) == 0) {
        int64_t exists = 0;
        char q[64];
        snprintf(q, sizeof q, "SELECT count(*) FROM jobs WHERE id = %lld", (long long)op->job_id);
        if (sqlite_query_int64(be->wdb, q, &exists, "updating a job", err, err_len) < 0)
            goto out;
        op->outcome = exists ? STORE_DUPLICATE : STORE_NOT_FOUND;
        rc = 0;
        goto out;
    }
    if (sqlite_append_op_audit(be, op, err, err_len) < 0)
        goto out;
    op->outcome = STORE_STORED;
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_map_number(struct sqlite_backend *be, struct store_op *op, char *err,
                             size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    char numkey[64], didkey[96];
    snprintf(numkey, sizeof numkey, "number:%s", op->map_number);
    snprintf(didkey, sizeof didkey, "did:%s", op->map_did);
    if (sqlite3_prepare_v2(be->wdb,
                           "INSERT INTO did_numbers (number, did, updated_at) VALUES (?1, ?2, ?3) "
                           "ON CONFLICT (number) DO UPDATE SET did = ?2, updated_at = ?3",
                           -1, &st, NULL) != SQLITE_OK)
        goto sqlerr;
    sqlite3_bind_text(st, 1, op->map_number, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->map_did, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, op->received_at);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto sqlerr;
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(be->wdb,
                           "UPDATE jobs SET order_key = ?1, did = coalesce(did, ?2) WHERE "
                           "order_key = ?3 AND state IN ('pending', 'running')",
                           -1, &st, NULL) != SQLITE_OK)
        goto sqlerr;
    sqlite3_bind_text(st, 1, didkey, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->map_did, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, numkey, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto sqlerr;
    sqlite3_finalize(st);
    st = NULL;
    op->outcome = STORE_STORED;
    if (op->job_id > 0) {
        /* An earlier job of the merged key goes first: this one waits its turn. */
        if (sqlite3_prepare_v2(be->wdb,
                               "UPDATE jobs SET state = 'pending', lease_until = NULL WHERE id = "
                               "?1 AND state = 'running' AND EXISTS (SELECT 1 FROM jobs k WHERE "
                               "k.order_key = ?2 AND k.id < ?1 AND k.state IN ('pending', "
                               "'running'))",
                               -1, &st, NULL) != SQLITE_OK)
            goto sqlerr;
        sqlite3_bind_int64(st, 1, op->job_id);
        sqlite3_bind_text(st, 2, didkey, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto sqlerr;
        if (sqlite3_changes(be->wdb) > 0)
            op->outcome = STORE_DUPLICATE;
    }
    rc = 0;
    goto out;
sqlerr:
    sqlite_err(be->wdb, "mapping a number", err, err_len);
out:
    sqlite3_finalize(st);
    return rc;
}

static bool sqlite_jobs_unresolved_before(struct store_backend *base, int64_t job_id)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st;
    bool yes = false;
    pthread_mutex_lock(&be->rlock);
    if (sqlite3_prepare_v2(be->rdb,
                           "SELECT 1 FROM jobs WHERE order_key >= 'number:' AND order_key < "
                           "'number;' AND id < ? AND attempts = 0 AND state IN ('pending', "
                           "'running') LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, job_id);
        yes = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&be->rlock);
    return yes;
}

/* Retention: deletes the records older than the cutoff (never the newest) and
 * appends the checkpoint the chain continues from. */
/* Runs a DELETE whose one parameter is `through`; the deleted row count goes to
 * *changes when not NULL. Returns 0, or -1 with err set. Writer thread. */
static int sqlite_delete_through(struct sqlite_backend *be, const char *sql, int64_t through,
                                 int64_t *changes, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(be->wdb, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, through);
        if (sqlite3_step(st) == SQLITE_DONE) {
            if (changes)
                *changes = sqlite3_changes(be->wdb);
            rc = 0;
        }
    }
    if (rc < 0)
        sqlite_err(be->wdb, "pruning", err, err_len);
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_prune(struct sqlite_backend *be, struct store_op *op, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    char cutoff[32];
    audit_format_time(op->prune_before, cutoff);
    op->pruned_count = 0;
    if (sqlite3_prepare_v2(be->wdb,
                           "SELECT seq, record FROM audit WHERE seq = (SELECT max(seq) FROM audit "
                           "WHERE time < ?1 AND seq < (SELECT max(seq) FROM audit))",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "pruning", err, err_len);
        return -1;
    }
    sqlite3_bind_text(st, 1, cutoff, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_DONE) { /* nothing old enough */
        op->outcome = STORE_STORED;
        rc = 0;
        goto out;
    }
    if (s != SQLITE_ROW) {
        sqlite_err(be->wdb, "pruning", err, err_len);
        goto out;
    }
    int64_t through = sqlite3_column_int64(st, 0);
    json_t *last = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
    const char *hash = json_string_value(json_object_get(last, "hash"));
    char continue_hash[AUDIT_HASH_HEX_LEN + 1];
    snprintf(continue_hash, sizeof continue_hash, "%s", hash ? hash : "");
    json_decref(last);
    sqlite3_finalize(st);
    st = NULL;
    if (strlen(continue_hash) != AUDIT_HASH_HEX_LEN) {
        snprintf(err, err_len, "audit record %lld has no hash", (long long)through);
        goto out;
    }
    if (sqlite_delete_through(be, "DELETE FROM audit WHERE seq <= ?", through, &op->pruned_count,
                              err, err_len) < 0 ||
        sqlite_delete_through(be, "DELETE FROM audit_event_blooms WHERE last_seq <= ?", through,
                              NULL, err, err_len) < 0)
        goto out;
    json_t *rec = audit_record_new("audit.pruned", NULL, NULL);
    if (!rec) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    audit_detail_set_int(rec, "through_seq", (long long)through);
    audit_detail_set_str(rec, "continue_hash", continue_hash);
    audit_detail_set_str(rec, "cutoff", cutoff);
    audit_detail_set_int(rec, "deleted", (long long)op->pruned_count);
    int arc = sqlite_append_audit(be, rec, err, err_len);
    json_decref(rec);
    if (arc < 0)
        goto out;
    op->outcome = STORE_STORED;
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_control_set(struct sqlite_backend *be, struct store_op *op, char *err,
                              size_t err_len)
{
    sqlite3_stmt *st = NULL;
    const char *sql = op->control_value
                          ? "INSERT INTO control (key, value, updated_at) VALUES (?1, ?2, ?3) "
                            "ON CONFLICT (key) DO UPDATE SET value = ?2, updated_at = ?3"
                          : "DELETE FROM control WHERE key = ?1";
    if (sqlite3_prepare_v2(be->wdb, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "control", err, err_len);
        return -1;
    }
    sqlite3_bind_text(st, 1, op->control_key, -1, SQLITE_STATIC);
    if (op->control_value) {
        sqlite3_bind_text(st, 2, op->control_value, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 3, op->received_at);
    }
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE) {
        sqlite_err(be->wdb, "control", err, err_len);
        return -1;
    }
    if (sqlite_append_op_audit(be, op, err, err_len) < 0)
        return -1;
    op->outcome = STORE_STORED;
    return 0;
}

/* Re-plans a rule_failed event: only the first reprocess of it wins. */
static int sqlite_replan(struct sqlite_backend *be, struct store_op *op, char *err, size_t err_len)
{
    sqlite3_stmt *st = be->replan;
    sqlite3_bind_text(st, 1, op->status ? op->status : "accepted", -1, SQLITE_STATIC);
    sqlite_bind_text_or_null(st, 2, op->rule_version);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)op->njobs);
    sqlite3_bind_int64(st, 4, op->event_row);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        sqlite_err(be->wdb, "updating the event", err, err_len);
        return -1;
    }
    if (sqlite3_changes(be->wdb) == 0) {
        op->outcome = STORE_DUPLICATE;
        return 0;
    }
    if (sqlite_append_op_audit(be, op, err, err_len) < 0)
        return -1;
    if (sqlite_insert_jobs(be, op, err, err_len) < 0)
        return -1;
    op->outcome = STORE_STORED;
    return 0;
}

/* Applies one op inside the open transaction. */
static int sqlite_apply_op(struct sqlite_backend *be, struct store_op *op, char *err,
                           size_t err_len)
{
    if (op->kind == STORE_OP_REPLAN)
        return sqlite_replan(be, op, err, err_len);
    if (op->kind == STORE_OP_CLAIM)
        return sqlite_claim(be, op, err, err_len);
    if (op->kind == STORE_OP_JOB)
        return sqlite_job_update(be, op, err, err_len);
    if (op->kind == STORE_OP_CONTROL)
        return sqlite_control_set(be, op, err, err_len);
    if (op->kind == STORE_OP_PRUNE)
        return sqlite_prune(be, op, err, err_len);
    if (op->kind == STORE_OP_MAP_NUMBER)
        return sqlite_map_number(be, op, err, err_len);
    if (op->kind == STORE_OP_RELEASE) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(be->wdb,
                               "UPDATE jobs SET state = 'pending', lease_until = NULL, "
                               "updated_at = ? WHERE state = 'running'",
                               -1, &st, NULL) != SQLITE_OK) {
            sqlite_err(be->wdb, "releasing jobs", err, err_len);
            return -1;
        }
        sqlite3_bind_double(st, 1, op->received_at);
        int s = sqlite3_step(st);
        sqlite3_finalize(st);
        if (s != SQLITE_DONE) {
            sqlite_err(be->wdb, "releasing jobs", err, err_len);
            return -1;
        }
        op->pruned_count = sqlite3_changes(be->wdb);
        op->outcome = STORE_STORED;
        return 0;
    }
    if (op->kind == STORE_OP_EVENT) {
        if (sqlite_insert_event(be, op, err, err_len) < 0)
            return -1;
        if (op->outcome == STORE_DUPLICATE) {
            json_t *rec = audit_record_new("event.duplicate", op->source, op->event_id);
            if (!rec) {
                snprintf(err, err_len, "out of memory");
                return -1;
            }
            json_object_set_new(json_object_get(rec, "detail"), "original_row",
                                json_integer(op->event_row));
            int rc = sqlite_append_audit(be, rec, err, err_len);
            json_decref(rec);
            return rc;
        }
        for (size_t i = 0; i < op->naudit; i++)
            if (sqlite_append_audit(be, op->audit[i], err, err_len) < 0)
                return -1;
        return sqlite_insert_jobs(be, op, err, err_len);
    }
    if (sqlite_append_op_audit(be, op, err, err_len) < 0)
        return -1;
    op->outcome = STORE_STORED;
    return 0;
}

/* One attempt at the batch: every op not yet failed, in one transaction.
 * Returns 0 committed, 1 when op *bad failed alone (rolled back; caller retries
 * without it), -1 when the transaction itself failed. */
static int sqlite_try_batch(struct sqlite_backend *be, struct store_op **ops, size_t n, size_t *bad,
                            char *err, size_t err_len)
{
    if (sqlite_exec(be->wdb, "BEGIN IMMEDIATE", err, err_len) < 0)
        return -1;
    /* Another process (a CLI command, a second instance) may have appended to
     * the audit chain since our last commit: reload the tip if so. */
    be->dd_nnew = 0;
    int dv = sqlite_data_version(be->wdb);
    if (dv != be->data_version) {
        if (sqlite_load_tip(be, err, err_len) < 0)
            goto fail;
        /* ... and may have stored events: they dedupe like ours. */
        if (be->dd_loaded && sqlite_dedupe_catch_up(be, err, err_len) < 0)
            goto fail;
        be->data_version = dv;
    }
    for (size_t i = 0; i < n; i++) {
        struct store_op *op = ops[i];
        if (op->outcome == STORE_FAILED)
            continue;
        if (sqlite_apply_op(be, op, op->error, sizeof op->error) < 0) {
            *bad = i;
            sqlite3_exec(be->wdb, "ROLLBACK", NULL, NULL, NULL);
            (void)sqlite_load_tip(be, err, err_len);
            return 1;
        }
    }
    if (sqlite_exec(be->wdb, "COMMIT", err, err_len) < 0)
        goto fail;
    /* data_version is not re-read here: it only moves for other connections'
     * commits, so a change now would be one we have not caught up with. */
    be->commits++;
    if (be->dd_nnew > 0) {
        double cutoff = sqlite_wall_now() - be->dd_window_s;
        for (size_t i = 0; i < be->dd_nnew; i++)
            sqlite_dedupe_add(be, be->dd_new[i].fp, be->dd_new[i].row, be->dd_new[i].at, cutoff);
        be->dd_nnew = 0;
        atomic_store(&be->dd_keys, (uint64_t)dedupe_count(be->dd));
    }
    return 0;
fail:
    sqlite3_exec(be->wdb, "ROLLBACK", NULL, NULL, NULL);
    {
        char e2[160];
        (void)sqlite_load_tip(be, e2, sizeof e2);
    }
    return -1;
}

static int sqlite_write_batch(struct store_backend *base, struct store_op **ops, size_t n,
                              char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    int64_t changes_before = sqlite3_total_changes64(be->wdb);
    for (size_t i = 0; i < n; i++)
        ops[i]->outcome = STORE_PENDING;
    /* An op that fails alone (rare: constraint or encoding problems) is marked
     * failed and the rest of the batch is tried again without it. */
    for (size_t attempt = 0; attempt <= n; attempt++) {
        size_t bad = 0;
        int rc = sqlite_try_batch(be, ops, n, &bad, err, err_len);
        if (rc <= 0) {
            if (rc == 0)
                sqlite_maybe_checkpoint(be);
            /* A transaction that wrote nothing (an idle claim) needs no fsync. */
            if (rc == 0 && sqlite3_total_changes64(be->wdb) == changes_before)
                return STORE_BATCH_CLEAN;
            return rc;
        }
        ops[bad]->outcome = STORE_FAILED;
        for (size_t i = 0; i < n; i++)
            if (ops[i]->outcome != STORE_FAILED)
                ops[i]->outcome = STORE_PENDING;
    }
    snprintf(err, err_len, "batch could not be applied");
    return -1;
}

static bool sqlite_ping(struct store_backend *base, char *why, size_t why_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    pthread_mutex_lock(&be->rlock);
    int rc = sqlite3_exec(be->rdb, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        snprintf(why, why_len, "store query failed: %s", sqlite3_errmsg(be->rdb));
    pthread_mutex_unlock(&be->rlock);
    return rc == SQLITE_OK;
}

/* Writes into cond[len] the row ranges (seq or id, per bs) holding every row
 * that may carry one of the event ids whose bloom_hash is in hashes[0..n), as
 * SQL VALUES rows "(lo,hi),(lo,hi)...": the blocks whose Bloom filter matches
 * one of them plus the rows after the last complete block. Leaves cond empty
 * (no narrowing) when more than max_ranges blocks match or cond is full: the
 * caller then reads the whole table. Reader connection, under rlock. Returns 0
 * or -1 with err set. */
static int sqlite_hash_ranges(struct sqlite_backend *be, const struct sqlite_blooms *bs,
                              const uint64_t *hashes, size_t n, size_t max_ranges, char *cond,
                              size_t len, char *err, size_t err_len)
{
    cond[0] = '\0';
    sqlite3_stmt *st = NULL;
    int64_t max_row = 0;
    char what[32];
    snprintf(what, sizeof what, "%s query", bs->what);
    if (sqlite_query_int64(be->rdb, bs->max_row_sql, &max_row, what, err, err_len) < 0)
        return -1;
    /* Rows up to `covered` are in complete blocks, each with a filter row
     * unless it holds no event id. */
    int64_t covered = max_row / SQLITE_BLOOM_BLOCK * SQLITE_BLOOM_BLOCK;
    if (sqlite3_prepare_v2(be->rdb, bs->filters_sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->rdb, what, err, err_len);
        return -1;
    }
    sqlite3_bind_int64(st, 1, covered);
    size_t used = 0, nranges = 0;
    bool too_many = false;
    int s = SQLITE_DONE;
    int w = snprintf(cond, len, "(%lld,%lld)", (long long)covered + 1, (long long)INT64_MAX);
    if (w < 0 || (size_t)w >= len)
        too_many = true;
    else
        used = (size_t)w;
    while (!too_many && (s = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *bits = sqlite3_column_blob(st, 3);
        int nbytes = sqlite3_column_bytes(st, 3);
        bool maybe = sqlite3_column_int(st, 2) != BLOOM_SCHEME || nbytes <= 0 || !bits;
        for (size_t i = 0; !maybe && i < n; i++)
            maybe = bloom_may_contain(bits, (size_t)nbytes, hashes[i], SQLITE_BLOOM_PROBES);
        if (!maybe)
            continue;
        if (++nranges > max_ranges) {
            too_many = true;
            break;
        }
        w = snprintf(cond + used, len - used, ",(%lld,%lld)",
                     (long long)sqlite3_column_int64(st, 0),
                     (long long)sqlite3_column_int64(st, 1));
        if (w < 0 || (size_t)w >= len - used) {
            too_many = true;
            break;
        }
        used += (size_t)w;
    }
    if (!too_many && s != SQLITE_DONE) {
        sqlite3_finalize(st);
        sqlite_err(be->rdb, what, err, err_len);
        return -1;
    }
    sqlite3_finalize(st);
    if (too_many)
        cond[0] = '\0';
    return 0;
}

/* sqlite_hash_ranges for one event id, at most SQLITE_BLOOM_MAX_RANGES blocks. */
static int sqlite_event_ranges(struct sqlite_backend *be, const struct sqlite_blooms *bs,
                               const char *event_id, char *cond, size_t len, char *err,
                               size_t err_len)
{
    uint64_t h = bloom_hash(event_id, strlen(event_id));
    return sqlite_hash_ranges(be, bs, &h, 1, SQLITE_BLOOM_MAX_RANGES, cond, len, err, err_len);
}

/* The FROM clause of a query on table narrowed to the row ranges of
 * sqlite_event_ranges (joined as constant rows: an OR of ranges would make
 * SQLite scan the whole table), or the whole table when ranges is empty. */
static void sqlite_ranges_from(char *from, size_t len, const char *table, const char *rowid_col,
                               const char *ranges)
{
    if (ranges[0])
        snprintf(from, len, "(VALUES %s) AS r CROSS JOIN %s ON %s BETWEEN r.column1 AND r.column2",
                 ranges, table, rowid_col);
    else
        snprintf(from, len, "%s", table);
}

/* ---------- audit queries ---------- */

/* An SQL text that grows as needed (a story's lists have no fixed size). */
struct sqlite_text {
    char *p;
    size_t len, cap;
    bool failed; /* out of memory: p is incomplete */
};

static void sqlite_text_add(struct sqlite_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sqlite_text_add(struct sqlite_text *t, const char *fmt, ...)
{
    while (!t->failed) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
        } else if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        } else {
            size_t ncap = t->cap ? t->cap * 2 : 1024;
            while (ncap < t->len + (size_t)n + 1)
                ncap *= 2;
            char *np = realloc(t->p, ncap);
            if (np) {
                t->p = np;
                t->cap = ncap;
            } else {
                t->failed = true;
            }
        }
    }
}

/* A DID's story (docs/contract.md section 6): every record about the DID whichever way it is
 * asked for (--did or --number) and however the rule named it. Records link by
 * columns: a record names the DID by id (did), by number (number, while a job
 * named by number is unresolved), or only by its job (admin actions) or its
 * event (event.received, the decision when the event planned several jobs). So
 * the story is, from the DIDs and numbers the question names:
 *   links:  the DID ids of the number (records naming both, did_numbers learnt
 *           by delivery, the number DIDWW reported when delivery read a DID the
 *           rule named by id) and the numbers of each DID id;
 *   core:   the records naming one of those ids, or naming no id and one of
 *           those numbers (jobs queued and dead before the number was resolved);
 *   jobs:   the records of core's jobs that name no DID (admin.job_retry);
 *   events: the records of core's events that belong to no job (event.received,
 *           rule.decided, event.duplicate, admin.reprocess), but not other DIDs'
 *           jobs of the same event.
 * Every step uses an index (audit_by_did, audit_by_number, audit_by_read_number,
 * audit_by_bare_job, did_numbers') or, for events, the blocks whose Bloom filter
 * may hold one of them (a block is 4096 records: a story whose events lie in
 * more than SQLITE_STORY_MAX_RANGES blocks reads the whole table for them). */
#define SQLITE_STORY_MAX_LINKS 64
#define SQLITE_STORY_MAX_RANGES 512

struct sqlite_story {
    json_t *dids;    /* DID ids (strings) */
    json_t *numbers; /* numbers (digit strings) */
    json_t *events;  /* [source, event_id] of core's events */
    char *ranges;    /* audit rows that may hold them (sqlite_hash_ranges), "" for all */
};

static void sqlite_story_free(struct sqlite_story *s)
{
    json_decref(s->dids);
    json_decref(s->numbers);
    json_decref(s->events);
    free(s->ranges);
    memset(s, 0, sizeof *s);
}

/* Adds s to the string array arr unless it is there or arr is full. */
static void sqlite_story_add(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    if (!s || !*s || json_array_size(arr) >= SQLITE_STORY_MAX_LINKS)
        return;
    json_array_foreach(arr, i, v)
    {
        if (strcmp(json_string_value(v), s) == 0)
            return;
    }
    json_array_append_new(arr, json_string(s));
}

/* Runs sql with ?1 = key and adds each non-NULL first column to arr (numbers
 * normalised; a value that is no valid number is left out). */
static int sqlite_story_collect(struct sqlite_backend *be, const char *sql, const char *key,
                                json_t *arr, bool numbers, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(be->rdb, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->rdb, "audit story query", err, err_len);
        return -1;
    }
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        char num[NUMBER_BUF_LEN];
        if (!v)
            continue;
        if (numbers && number_normalize(v, num, sizeof num, NULL, 0) != NUMBER_OK)
            continue;
        sqlite_story_add(arr, numbers ? num : v);
    }
    sqlite3_finalize(st);
    if (s != SQLITE_DONE) {
        sqlite_err(be->rdb, "audit story query", err, err_len);
        return -1;
    }
    return 0;
}

/* The records that name the DIDs in ?1 (JSON array) or, naming no DID, the
 * numbers in ?2: the core of a story. */
#define SQLITE_STORY_CORE(cols)                                                                    \
    "SELECT " cols " FROM audit WHERE did IN (SELECT value FROM json_each(?1)) UNION ALL "         \
    "SELECT " cols " FROM audit WHERE did IS NULL AND number IN (SELECT value FROM json_each(?2))"

/* Finds the story's links, its events and their candidate rows. Reader
 * connection, under rlock. Returns 0, or -1 with err set (a number that is not
 * in international form is refused as the rule API refuses it). */
static int sqlite_story_build(struct sqlite_backend *be, const struct store_audit_filter *f,
                              struct sqlite_story *s, char *err, size_t err_len)
{
    static const char numbers_of_did[] =
        "SELECT coalesce(number, CASE WHEN kind IN ('job.attempt', 'job.noop') "
        "THEN " SQLITE_READ_NUMBER " END) FROM audit WHERE did = ?1 "
        "UNION SELECT number FROM did_numbers WHERE did = ?1";
    static const char dids_of_number[] =
        "SELECT did FROM audit WHERE number = ?1 AND did IS NOT NULL "
        "UNION SELECT did FROM did_numbers WHERE number = ?1 "
        "UNION SELECT did FROM audit WHERE " SQLITE_READ_NUMBER
        " = ?1 AND " SQLITE_READ_NUMBER_ROWS;
    sqlite3_stmt *st = NULL;
    char *dids = NULL, *numbers = NULL;
    uint64_t *hashes = NULL;
    size_t nhashes = 0, cap = 0;
    int rc = -1;

    s->dids = json_array();
    s->numbers = json_array();
    s->events = json_array();
    if (!s->dids || !s->numbers || !s->events)
        goto oom;
    if (f->did) {
        /* DIDWW's ids are lower case, and so is every id hookline stores. */
        char *id = strdup(f->did);
        if (!id)
            goto oom;
        for (char *p = id; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        sqlite_story_add(s->dids, id);
        free(id);
    }
    if (f->number) {
        char num[NUMBER_BUF_LEN];
        if (number_normalize(f->number, num, sizeof num, err, err_len) != NUMBER_OK)
            goto out;
        sqlite_story_add(s->numbers, num);
        if (sqlite_story_collect(be, dids_of_number, num, s->dids, false, err, err_len) < 0)
            goto out;
    }
    for (size_t i = 0; i < json_array_size(s->dids); i++)
        if (sqlite_story_collect(be, numbers_of_did, json_string_value(json_array_get(s->dids, i)),
                                 s->numbers, true, err, err_len) < 0)
            goto out;

    dids = json_dumps(s->dids, JSON_COMPACT);
    numbers = json_dumps(s->numbers, JSON_COMPACT);
    if (!dids || !numbers)
        goto oom;
    if (sqlite3_prepare_v2(
            be->rdb,
            "SELECT source, event_id FROM (" SQLITE_STORY_CORE(
                "source, event_id") ") WHERE event_id IS NOT NULL AND source IS NOT NULL "
                                    "GROUP BY source, event_id",
            -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->rdb, "audit story query", err, err_len);
        goto out;
    }
    sqlite3_bind_text(st, 1, dids, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, numbers, -1, SQLITE_STATIC);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *src = (const char *)sqlite3_column_text(st, 0);
        const char *eid = (const char *)sqlite3_column_text(st, 1);
        if (nhashes == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            uint64_t *nh = realloc(hashes, ncap * sizeof *nh);
            if (!nh)
                goto oom;
            hashes = nh;
            cap = ncap;
        }
        hashes[nhashes++] = bloom_hash(eid, (size_t)sqlite3_column_bytes(st, 1));
        if (json_array_append_new(s->events, json_pack("[ss]", src, eid)) < 0)
            goto oom;
    }
    if (step != SQLITE_DONE) {
        sqlite_err(be->rdb, "audit story query", err, err_len);
        goto out;
    }
    if (nhashes > 0) {
        size_t len = SQLITE_STORY_MAX_RANGES * 48 + 64;
        s->ranges = malloc(len);
        if (!s->ranges)
            goto oom;
        if (sqlite_hash_ranges(be, &be->blooms[SQLITE_BLOOMS_AUDIT], hashes, nhashes,
                               SQLITE_STORY_MAX_RANGES, s->ranges, len, err, err_len) < 0)
            goto out;
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, err_len, "out of memory building an audit story");
out:
    sqlite3_finalize(st);
    free(dids);
    free(numbers);
    free(hashes);
    return rc;
}

/* Appends the WITH clause that defines story(seq) for s, with its lists as the
 * parameters :dids, :numbers and :events. */
static void sqlite_story_sql(struct sqlite_text *t, const struct sqlite_story *s)
{
    sqlite_text_add(t,
                    "WITH core(seq, job_id) AS MATERIALIZED (%s), story(seq) AS ("
                    "SELECT seq FROM core "
                    "UNION SELECT seq FROM audit WHERE job_id IN (SELECT job_id FROM core) "
                    "AND " SQLITE_BARE_JOB_ROWS,
                    SQLITE_STORY_CORE("seq, job_id"));
    if (json_array_size(s->events) > 0) {
        sqlite_text_add(t, " UNION SELECT a.seq FROM ");
        if (s->ranges && s->ranges[0])
            sqlite_text_add(t,
                            "(VALUES %s) AS er CROSS JOIN audit a ON a.seq BETWEEN er.column1 "
                            "AND er.column2",
                            s->ranges);
        else
            sqlite_text_add(t, "audit a");
        sqlite_text_add(t, " WHERE a.job_id IS NULL AND (a.source, a.event_id) IN (SELECT "
                           "json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM "
                           "json_each(:events))");
    }
    sqlite_text_add(t, ") ");
}

/* A scan with check_columns (what `audit verify` asks for) also checks each
 * record's stored columns against the record:
 * queries select rows by those columns, so one edited there hides a record
 * from them (or shows it where it does not belong) while its hash still holds.
 * The expression names the first column that differs, 'record' when the record
 * is not JSON (json_valid's parse is the one json_extract reuses), NULL when all
 * match. A record with a key twice could show json_extract one value and the
 * hash check another: audit_check refuses such a record. */
#define SQLITE_COLUMN_CHECK                                                                        \
    "CASE WHEN json_valid(record) THEN CASE "                                                      \
    "WHEN seq IS NOT json_extract(record, '$.seq') THEN 'seq' "                                    \
    "WHEN time IS NOT json_extract(record, '$.time') THEN 'time' "                                 \
    "WHEN kind IS NOT json_extract(record, '$.kind') THEN 'kind' "                                 \
    "WHEN source IS NOT json_extract(record, '$.source') THEN 'source' "                           \
    "WHEN event_id IS NOT json_extract(record, '$.event_id') THEN 'event_id' "                     \
    "WHEN job_id IS NOT json_extract(record, '$.job_id') THEN 'job_id' "                           \
    "WHEN did IS NOT json_extract(record, '$.did') THEN 'did' "                                    \
    "WHEN number IS NOT json_extract(record, '$.number') THEN 'number' END ELSE 'record' END"

/* A column's value for a message: NULL, an integer, or text quoted, cut and
 * made printable. */
static void sqlite_value_text(sqlite3_stmt *st, int i, char *out, size_t len)
{
    int type = sqlite3_column_type(st, i);
    if (type == SQLITE_NULL) {
        snprintf(out, len, "nothing");
    } else if (type == SQLITE_INTEGER) {
        snprintf(out, len, "%lld", (long long)sqlite3_column_int64(st, i));
    } else {
        const unsigned char *t = sqlite3_column_text(st, i);
        char q[48];
        size_t n = 0;
        for (; t && t[n] && n < 40; n++)
            q[n] = t[n] >= 0x20 && t[n] < 0x7f ? (char)t[n] : '?';
        q[n] = '\0';
        snprintf(out, len, "'%s%s'", q, t && t[n] ? "..." : "");
    }
}

/* Names the record and the column that does not match it in err. */
static void sqlite_column_mismatch(struct sqlite_backend *be, int64_t seq, const char *column,
                                   char *err, size_t err_len)
{
    static const char *const known[] = {"seq",      "time",   "kind", "source",
                                        "event_id", "job_id", "did",  "number"};
    char sql[128], stored[64] = "?", says[64] = "?";
    sqlite3_stmt *st = NULL;
    if (strcmp(column, "record") == 0) {
        snprintf(err, err_len, "record seq %lld is not valid JSON (the record was edited)",
                 (long long)seq);
        return;
    }
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(column, known[i]) != 0)
            continue;
        snprintf(sql, sizeof sql,
                 "SELECT %s, json_extract(record, '$.%s') FROM audit WHERE seq = ?", known[i],
                 known[i]);
        if (sqlite3_prepare_v2(be->rdb, sql, -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, seq);
            if (sqlite3_step(st) == SQLITE_ROW) {
                sqlite_value_text(st, 0, stored, sizeof stored);
                sqlite_value_text(st, 1, says, sizeof says);
            }
        }
        sqlite3_finalize(st);
    }
    snprintf(err, err_len,
             "record seq %lld does not match its stored column '%s' (the column holds %s, the "
             "record %s): the column was edited",
             (long long)seq, column, stored, says);
}

static int sqlite_audit_scan(struct store_backend *base, const struct store_audit_filter *f,
                             store_audit_fn fn, void *ctx, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    struct sqlite_text where = {0}, sql = {0};
    struct sqlite_story story = {0};
    char ranges[4096] = ""; /* up to SQLITE_BLOOM_MAX_RANGES of about 60 chars */
    char since[32], until[32];
    size_t klen = 0;
    bool kprefix = false;
    bool by_story = f->did || f->number;
    bool check_columns = f->check_columns;
    char *dids = NULL, *numbers = NULL, *events = NULL;
    int rc = -1;
    sqlite3_stmt *st = NULL;

    sqlite_text_add(&where, "1=1");
    if (f->kind) {
        klen = strlen(f->kind);
        kprefix = klen > 0 && f->kind[klen - 1] == '*';
        sqlite_text_add(&where,
                        kprefix ? " AND substr(kind, 1, :klen) = :kind" : " AND kind = :kind");
    }
    if (f->source)
        sqlite_text_add(&where, " AND source = :source");
    pthread_mutex_lock(&be->rlock);
    if (f->event_id) {
        sqlite_text_add(&where, " AND event_id = :event");
        if (sqlite_event_ranges(be, &be->blooms[SQLITE_BLOOMS_AUDIT], f->event_id, ranges,
                                sizeof ranges, err, err_len) < 0)
            goto out;
    }
    if (by_story) {
        if (sqlite_story_build(be, f, &story, err, err_len) < 0)
            goto out;
        dids = json_dumps(story.dids, JSON_COMPACT);
        numbers = json_dumps(story.numbers, JSON_COMPACT);
        events = json_dumps(story.events, JSON_COMPACT);
        if (!dids || !numbers || !events) {
            snprintf(err, err_len, "out of memory building an audit story");
            goto out;
        }
        sqlite_text_add(&where, " AND seq IN (SELECT seq FROM story)");
        sqlite_story_sql(&sql, &story);
    }
    if (f->job_id)
        sqlite_text_add(&where, " AND job_id = :job");
    if (f->since > 0)
        sqlite_text_add(&where, " AND time >= :since");
    if (f->until > 0)
        sqlite_text_add(&where, " AND time <= :until");
    if (f->after_seq > 0)
        sqlite_text_add(&where, " AND seq > :after");
    /* With ranges, the audit table is only read inside them, by rowid. */
    char from[4200];
    sqlite_ranges_from(from, sizeof from, "audit", "seq", ranges);
    if (f->limit > 0 && f->oldest_first)
        sqlite_text_add(&sql, "SELECT seq, record FROM %s WHERE %s ORDER BY seq ASC LIMIT :limit",
                        from, where.p ? where.p : "");
    else if (f->limit > 0)
        sqlite_text_add(&sql,
                        "SELECT seq, record FROM (SELECT seq, record FROM %s WHERE %s ORDER BY "
                        "seq DESC LIMIT :limit) ORDER BY seq ASC",
                        from, where.p ? where.p : "");
    else
        sqlite_text_add(&sql, "SELECT seq, record%s FROM %s WHERE %s ORDER BY seq ASC",
                        check_columns ? ", " SQLITE_COLUMN_CHECK : "", from,
                        where.p ? where.p : "");
    if (where.failed || sql.failed) {
        snprintf(err, err_len, "out of memory building an audit query");
        goto out;
    }

    if (sqlite3_prepare_v2(be->rdb, sql.p, -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->rdb, "audit query", err, err_len);
        goto out;
    }
#define SQLITE_BIND_TEXT(name, val)                                                                \
    do {                                                                                           \
        int i_ = sqlite3_bind_parameter_index(st, name);                                           \
        if (i_ > 0)                                                                                \
            sqlite3_bind_text(st, i_, val, -1, SQLITE_TRANSIENT);                                  \
    } while (0)
#define SQLITE_BIND_INT(name, val)                                                                 \
    do {                                                                                           \
        int i_ = sqlite3_bind_parameter_index(st, name);                                           \
        if (i_ > 0)                                                                                \
            sqlite3_bind_int64(st, i_, val);                                                       \
    } while (0)
    if (f->kind) {
        char kbuf[128];
        snprintf(kbuf, sizeof kbuf, "%.*s", (int)(kprefix ? klen - 1 : klen), f->kind);
        SQLITE_BIND_TEXT(":kind", kbuf);
        SQLITE_BIND_INT(":klen", (int64_t)strlen(kbuf));
    }
    SQLITE_BIND_TEXT(":source", f->source);
    SQLITE_BIND_TEXT(":event", f->event_id);
    /* The story's lists: ?1 and ?2 of SQLITE_STORY_CORE, :events. */
    if (by_story) {
        sqlite3_bind_text(st, 1, dids, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, numbers, -1, SQLITE_STATIC);
        SQLITE_BIND_TEXT(":events", events);
    }
    SQLITE_BIND_INT(":job", f->job_id);
    if (f->since > 0) {
        audit_format_time(f->since, since);
        SQLITE_BIND_TEXT(":since", since);
    }
    if (f->until > 0) {
        audit_format_time(f->until, until);
        SQLITE_BIND_TEXT(":until", until);
    }
    SQLITE_BIND_INT(":after", f->after_seq);
    SQLITE_BIND_INT(":limit", f->limit);
#undef SQLITE_BIND_TEXT
#undef SQLITE_BIND_INT
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        if (check_columns && sqlite3_column_type(st, 2) != SQLITE_NULL) {
            char column[16];
            snprintf(column, sizeof column, "%s", (const char *)sqlite3_column_text(st, 2));
            sqlite_column_mismatch(be, seq, column, err, err_len);
            goto out;
        }
        if (fn((const char *)sqlite3_column_text(st, 1), seq, ctx) != 0)
            break;
    }
    if (s != SQLITE_ROW && s != SQLITE_DONE) {
        sqlite_err(be->rdb, "audit query", err, err_len);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&be->rlock);
    sqlite_story_free(&story);
    free(where.p);
    free(sql.p);
    free(dids);
    free(numbers);
    free(events);
    return rc;
}

static int64_t sqlite_count_events(struct store_backend *base, const char *source)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st;
    int64_t n = -1;
    pthread_mutex_lock(&be->rlock);
    if (sqlite3_prepare_v2(be->rdb,
                           source ? "SELECT count(*) FROM events WHERE source = ?"
                                  : "SELECT count(*) FROM events",
                           -1, &st, NULL) == SQLITE_OK) {
        if (source)
            sqlite3_bind_text(st, 1, source, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&be->rlock);
    return n;
}

static int sqlite_events_scan(struct store_backend *base, const struct store_event_filter *f,
                              store_event_fn fn, void *ctx, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    char ranges[4096] = ""; /* up to SQLITE_BLOOM_MAX_RANGES of about 60 chars */
    char from[4200], sql[4800];
    pthread_mutex_lock(&be->rlock);
    /* By event id: only the id ranges whose block filter matches are read. */
    if (f->event_id && sqlite_event_ranges(be, &be->blooms[SQLITE_BLOOMS_EVENTS], f->event_id,
                                           ranges, sizeof ranges, err, err_len) < 0)
        goto out;
    sqlite_ranges_from(from, sizeof from, "events", "id", ranges);
    snprintf(sql, sizeof sql,
             "SELECT id, source, event_id, received_at, status, content_type, "
             "headers, body FROM %s WHERE (?1 IS NULL OR status = ?1) AND "
             "(?2 IS NULL OR source = ?2) AND (?3 IS NULL OR event_id = ?3) "
             "ORDER BY id LIMIT ?4",
             from);
    if (sqlite3_prepare_v2(be->rdb, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->rdb, "event query", err, err_len);
        goto out;
    }
    sqlite_bind_text_or_null(st, 1, f->status);
    sqlite_bind_text_or_null(st, 2, f->source);
    sqlite_bind_text_or_null(st, 3, f->event_id);
    sqlite3_bind_int64(st, 4, f->limit > 0 ? f->limit : -1);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_event_row row = {
            .row = sqlite3_column_int64(st, 0),
            .source = (const char *)sqlite3_column_text(st, 1),
            .event_id = (const char *)sqlite3_column_text(st, 2),
            .received_at = sqlite3_column_double(st, 3),
            .status = (const char *)sqlite3_column_text(st, 4),
            .content_type = (const char *)sqlite3_column_text(st, 5),
            .headers_json = (const char *)sqlite3_column_text(st, 6),
            .body = sqlite3_column_blob(st, 7),
            .body_len = (size_t)sqlite3_column_bytes(st, 7),
        };
        if (fn(&row, ctx) != 0)
            break;
    }
    if (s != SQLITE_ROW && s != SQLITE_DONE) {
        sqlite_err(be->rdb, "event query", err, err_len);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&be->rlock);
    return rc;
}

/* Makes every committed transaction durable: fdatasync of the WAL file (any fd
 * of the file flushes it). The WAL is reopened if it was replaced, and its
 * directory is synced once per open so the file itself survives a crash. */
static int sqlite_sync(struct store_backend *base, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    char wal[4200];
    struct stat sb;
    snprintf(wal, sizeof wal, "%s-wal", be->path);
    if (stat(wal, &sb) < 0) {
        snprintf(err, err_len, "cannot stat the WAL file: %s", strerror(errno));
        return -1;
    }
    if (be->wal_fd < 0 || sb.st_ino != be->wal_ino) {
        if (be->wal_fd >= 0)
            close(be->wal_fd);
        be->wal_fd = open(wal, O_RDONLY | O_CLOEXEC);
        if (be->wal_fd < 0) {
            snprintf(err, err_len, "cannot open the WAL file: %s", strerror(errno));
            return -1;
        }
        be->wal_ino = sb.st_ino;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", be->path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    if (fdatasync(be->wal_fd) < 0) {
        snprintf(err, err_len, "fdatasync of the WAL failed: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int sqlite_control_get(struct store_backend *base, const char *key, char *out, size_t len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st;
    int rc = -1;
    pthread_mutex_lock(&be->rlock);
    if (sqlite3_prepare_v2(be->rdb, "SELECT value FROM control WHERE key = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW) {
            snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
            rc = 1;
        } else if (s == SQLITE_DONE) {
            rc = 0;
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&be->rlock);
    return rc;
}

static int64_t sqlite_jobs_depth(struct store_backend *base, const char *state, double now,
                                 double *oldest_age_s)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st;
    int64_t n = -1;
    *oldest_age_s = 0;
    pthread_mutex_lock(&be->rlock);
    if (sqlite3_prepare_v2(be->rdb,
                           state ? "SELECT count(*), min(created_at) FROM jobs WHERE state = ?"
                                 : "SELECT count(*), min(created_at) FROM jobs WHERE state IN "
                                   "('pending', 'running')",
                           -1, &st, NULL) == SQLITE_OK) {
        if (state)
            sqlite3_bind_text(st, 1, state, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW) {
            n = sqlite3_column_int64(st, 0);
            if (n > 0 && sqlite3_column_type(st, 1) != SQLITE_NULL)
                *oldest_age_s = now - sqlite3_column_double(st, 1);
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&be->rlock);
    return n;
}

static int sqlite_jobs_scan(struct store_backend *base, const char *state, int64_t limit,
                            store_job_fn fn, void *ctx, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    pthread_mutex_lock(&be->rlock);
    if (sqlite3_prepare_v2(be->rdb,
                           "SELECT " SQLITE_JOB_COLUMNS " FROM jobs WHERE (?1 IS NULL OR state = "
                           "?1) ORDER BY id LIMIT ?2",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->rdb, "job query", err, err_len);
        goto out;
    }
    sqlite_bind_text_or_null(st, 1, state);
    sqlite3_bind_int64(st, 2, limit > 0 ? limit : -1);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_job j = {0};
        sqlite_job_from_row(st, &j);
        int stop = fn(&j, (const char *)sqlite3_column_text(st, 12), sqlite3_column_int(st, 13),
                      (const char *)sqlite3_column_text(st, 14), ctx);
        store_job_clear(&j);
        if (stop)
            break;
    }
    if (s != SQLITE_ROW && s != SQLITE_DONE) {
        sqlite_err(be->rdb, "job query", err, err_len);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&be->rlock);
    return rc;
}

static void sqlite_close(struct store_backend *base)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    if (!be)
        return;
    if (be->have_checkpointer) {
        pthread_mutex_lock(&be->ck_lock);
        be->ck_stop = true;
        pthread_cond_signal(&be->ck_wake);
        pthread_mutex_unlock(&be->ck_lock);
        pthread_join(be->checkpointer, NULL);
    }
    sqlite3_stmt *all[] = {be->ins_event,
                           be->ins_job,
                           be->ins_audit,
                           be->replan,
                           be->sel_event_key,
                           be->sel_events_after,
                           be->blooms[SQLITE_BLOOMS_AUDIT].ins,
                           be->blooms[SQLITE_BLOOMS_AUDIT].sel_ids,
                           be->blooms[SQLITE_BLOOMS_EVENTS].ins,
                           be->blooms[SQLITE_BLOOMS_EVENTS].sel_ids};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(be->wdb);
    sqlite3_close(be->rdb);
    pthread_mutex_destroy(&be->rlock);
    pthread_mutex_destroy(&be->ck_lock);
    pthread_cond_destroy(&be->ck_wake);
    if (be->wal_fd >= 0)
        close(be->wal_fd);
    dedupe_destroy(be->dd);
    free(be->dd_new);
    free(be->path);
    free(be);
}

static void sqlite_dedupe_stats(struct store_backend *base, struct store_dedupe_stats *out)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    out->keys = atomic_load(&be->dd_keys);
    out->max_keys = be->dd_max_keys;
    out->evicted = atomic_load(&be->dd_evicted);
}

static int sqlite_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, char *err,
                          size_t err_len)
{
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
        sqlite_err(db, "preparing a statement", err, err_len);
        return -1;
    }
    return 0;
}

static int sqlite_open_writer(struct sqlite_backend *be, const char *path,
                              const struct store_options *opts, char *err, size_t err_len)
{
    char e[200];
    if (sqlite3_open_v2(path, &be->wdb,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "cannot open the database", err, err_len);
        return -1;
    }
    sqlite3_busy_timeout(be->wdb, opts->busy_timeout_ms);
    if (sqlite_exec(be->wdb, "PRAGMA journal_mode=WAL", e, sizeof e) < 0 ||
        sqlite_exec(be->wdb, "PRAGMA synchronous=NORMAL", e, sizeof e) < 0 ||
        sqlite_exec(be->wdb, "PRAGMA temp_store=MEMORY", e, sizeof e) < 0 ||
        sqlite_exec(be->wdb, "PRAGMA cache_size=-65536", e, sizeof e) < 0 ||
        sqlite_exec(be->wdb, "PRAGMA wal_autocheckpoint=0", e, sizeof e) < 0 ||
        sqlite_exec(be->wdb, "PRAGMA journal_size_limit=67108864", e, sizeof e) < 0 ||
        sqlite_exec(be->wdb, "PRAGMA foreign_keys=ON", e, sizeof e) < 0) {
        snprintf(err, err_len, "configuring the database: %s", e);
        return -1;
    }
    if (sqlite_migrate(be->wdb, err, err_len) < 0)
        return -1;
    sqlite3_wal_hook(be->wdb, sqlite_wal_hook, be);
    if (sqlite_prepare(be->wdb,
                       "INSERT INTO events (source, event_id, dedupe_key, received_at, status, "
                       "content_type, headers, body, rule_version, jobs, key_fp) VALUES "
                       "(?,?,?,?,?,?,?,?,?,?,?)",
                       &be->ins_event, err, err_len) < 0 ||
        sqlite_prepare(be->wdb, "SELECT source, event_id, received_at FROM events WHERE id = ?",
                       &be->sel_event_key, err, err_len) < 0 ||
        sqlite_prepare(be->wdb,
                       "SELECT id, source, event_id, received_at, key_fp FROM events "
                       "WHERE id > ? ORDER BY id",
                       &be->sel_events_after, err, err_len) < 0 ||
        sqlite_prepare(be->wdb,
                       "SELECT event_id FROM audit WHERE seq BETWEEN ? AND ? "
                       "AND event_id IS NOT NULL",
                       &be->blooms[SQLITE_BLOOMS_AUDIT].sel_ids, err, err_len) < 0 ||
        sqlite_prepare(be->wdb,
                       "INSERT OR REPLACE INTO audit_event_blooms (block, first_seq, last_seq, "
                       "scheme, bits) VALUES (?,?,?,?,?)",
                       &be->blooms[SQLITE_BLOOMS_AUDIT].ins, err, err_len) < 0 ||
        sqlite_prepare(be->wdb,
                       "SELECT event_id, id, received_at, key_fp, source FROM events "
                       "WHERE id BETWEEN ? AND ?",
                       &be->blooms[SQLITE_BLOOMS_EVENTS].sel_ids, err, err_len) < 0 ||
        sqlite_prepare(be->wdb,
                       "INSERT OR REPLACE INTO event_id_blooms (block, first_id, last_id, "
                       "scheme, bits, keys) VALUES (?,?,?,?,?,?)",
                       &be->blooms[SQLITE_BLOOMS_EVENTS].ins, err, err_len) < 0 ||
        sqlite_prepare(be->wdb,
                       "INSERT INTO jobs (event_row, source, event_id, action, method, path, "
                       "body, did, number, order_key, next_attempt_at, created_at, updated_at) "
                       "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?11,?11)",
                       &be->ins_job, err, err_len) < 0 ||
        sqlite_prepare(be->wdb,
                       "INSERT INTO audit (seq, time, kind, source, event_id, job_id, did, "
                       "number, record) VALUES (?,?,?,?,?,?,?,?,?)",
                       &be->ins_audit, err, err_len) < 0 ||
        sqlite_prepare(be->wdb,
                       "UPDATE events SET status = ?1, rule_version = ?2, jobs = ?3 "
                       "WHERE id = ?4 AND status = 'rule_failed'",
                       &be->replan, err, err_len) < 0)
        return -1;
    be->dd_window_s = opts->dedupe_window_s > 0 ? (double)opts->dedupe_window_s : 604800.0;
    be->dd_max_keys = opts->dedupe_max_keys > 0 ? opts->dedupe_max_keys : 2000000;
    if (sqlite_load_tip(be, err, err_len) < 0 ||
        sqlite_bloom_backfill(be, &be->blooms[SQLITE_BLOOMS_AUDIT], err, err_len) < 0 ||
        sqlite_bloom_backfill(be, &be->blooms[SQLITE_BLOOMS_EVENTS], err, err_len) < 0)
        return -1;
    if (!opts->dedupe_preload) {
        be->data_version = sqlite_data_version(be->wdb);
        return 0;
    }
    /* serve: load the keys now rather than hold up the first webhook. The
     * version is read in the same transaction, so any event stored after the
     * load is caught up at the first batch. */
    if (sqlite_exec(be->wdb, "BEGIN", err, err_len) < 0)
        return -1;
    double started = sqlite_wall_now();
    if (sqlite_dedupe_load(be, err, err_len) < 0) {
        sqlite3_exec(be->wdb, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    char keys[32], secs[32];
    snprintf(keys, sizeof keys, "%zu", dedupe_count(be->dd));
    snprintf(secs, sizeof secs, "%.3f", sqlite_wall_now() - started);
    log_write(LOG_INFO, "dedupe set loaded", (const char *[]){"keys", keys, "seconds", secs, NULL});
    be->data_version = sqlite_data_version(be->wdb);
    return sqlite_exec(be->wdb, "COMMIT", err, err_len);
}

static struct store_backend *sqlite_open(const char *path, const struct store_options *opts,
                                         char *err, size_t err_len)
{
    struct sqlite_backend *be = calloc(1, sizeof *be);
    if (!be) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    be->base.ops = &store_sqlite_backend;
    be->wal_fd = -1;
    be->blooms[SQLITE_BLOOMS_AUDIT] = (struct sqlite_blooms){
        .what = "audit",
        .next_block_sql = "SELECT coalesce(max(block) + 1, 0) FROM audit_event_blooms",
        .filters_sql = "SELECT first_seq, last_seq, scheme, bits FROM audit_event_blooms "
                       "WHERE last_seq <= ? ORDER BY block",
        .max_row_sql = "SELECT coalesce(max(seq), 0) FROM audit"};
    be->blooms[SQLITE_BLOOMS_EVENTS] = (struct sqlite_blooms){
        .what = "event",
        .next_block_sql = "SELECT coalesce(max(block) + 1, 0) FROM event_id_blooms",
        .filters_sql = "SELECT first_id, last_id, scheme, bits FROM event_id_blooms "
                       "WHERE last_id <= ? ORDER BY block",
        .max_row_sql = "SELECT coalesce(max(id), 0) FROM events",
        .with_keys = true};
    pthread_mutex_init(&be->rlock, NULL);
    pthread_mutex_init(&be->ck_lock, NULL);
    pthread_cond_init(&be->ck_wake, NULL);
    be->path = strdup(path);
    if (!be->path) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    if (!opts->read_only && sqlite_open_writer(be, path, opts, err, err_len) < 0)
        goto fail;
    if (!opts->read_only &&
        pthread_create(&be->checkpointer, NULL, sqlite_checkpoint_main, be) == 0)
        be->have_checkpointer = true;
    int flags =
        (opts->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &be->rdb, flags, NULL) != SQLITE_OK) {
        sqlite_err(be->rdb, "cannot open the database", err, err_len);
        goto fail;
    }
    sqlite3_busy_timeout(be->rdb, opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 5000);
    if (opts->read_only) {
        int v = sqlite_user_version(be->rdb);
        if (v < 0) {
            sqlite_err(be->rdb, "cannot read the database", err, err_len);
            goto fail;
        }
        if (v != SQLITE_SCHEMA_VERSION) {
            snprintf(err, err_len,
                     "database schema version %d, this build needs %d (start `hookline serve` "
                     "once to migrate)",
                     v, SQLITE_SCHEMA_VERSION);
            goto fail;
        }
    }
    return &be->base;
fail:
    sqlite_close(&be->base);
    return NULL;
}

/* The SQLite backend's table: the only symbol store.c knows it by. */
const struct store_backend_ops store_sqlite_backend = {
    .version = STORE_BACKEND_OPS_VERSION,
    .name = "sqlite",
    .has_dedupe_set = true,
    .needs_sync_thread = true,
    .open = sqlite_open,
    .close = sqlite_close,
    .write_batch = sqlite_write_batch,
    .sync = sqlite_sync,
    .ping = sqlite_ping,
    .audit_scan = sqlite_audit_scan,
    .events_scan = sqlite_events_scan,
    .count_events = sqlite_count_events,
    .control_get = sqlite_control_get,
    .jobs_depth = sqlite_jobs_depth,
    .jobs_scan = sqlite_jobs_scan,
    .jobs_unresolved_before = sqlite_jobs_unresolved_before,
    .dedupe_stats = sqlite_dedupe_stats,
};
