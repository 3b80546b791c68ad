/*
 * sqlite_int.h: private to src/store/sqlite/. The SQLite backend's state
 * (struct sqlite_backend), the on-disk constants its files share, and the
 * functions one file of the backend calls in another. Which thread may call
 * what is said at each file's top: writes on the store's writer thread only,
 * reads on the reader connection under rlock. Nothing outside this folder
 * includes it; store.c knows the backend only as store_sqlite_backend.
 */
#ifndef HOOKLINE_SQLITE_INT_H
#define HOOKLINE_SQLITE_INT_H

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit.h"
#include "dedupe.h"
#include "store/store_int.h"

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
    int64_t changes_before; /* writer thread only: total changes at begin */
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

/* ---- sqlite_backend.c: shared helpers, the batch engine, open and close ----
 * Errors go to err[err_len] as "what: SQLite's reason". The ops callbacks
 * (taking struct store_backend *) follow store_int.h. */

void sqlite_err(sqlite3 *db, const char *what, char *err, size_t err_len);
int sqlite_exec(sqlite3 *db, const char *sql, char *err, size_t err_len);
int sqlite_query_int64(sqlite3 *db, const char *sql, int64_t *out, const char *what, char *err,
                       size_t err_len);
void sqlite_bind_text_or_null(sqlite3_stmt *st, int i, const char *s);
double sqlite_wall_now(void);

/* ---- sqlite_schema.c: migrations, on the opening thread ---- */

int sqlite_user_version(sqlite3 *db);
int sqlite_migrate(sqlite3 *db, char *err, size_t err_len);

/* ---- sqlite_wal.c: the WAL hook and checkpoints (writer), sync (syncer) ---- */

int sqlite_wal_hook(void *ud, sqlite3 *db, const char *name, int frames);
void sqlite_maybe_checkpoint(struct sqlite_backend *be);
/* Starts the checkpointer thread (a writer's open); when it cannot start, the
 * writer's own checkpoints still keep the WAL bounded. */
void sqlite_checkpointer_start(struct sqlite_backend *be);
/* Stops and joins it; its last checkpoint truncates the WAL. No-op when it
 * never started. */
void sqlite_checkpointer_stop(struct sqlite_backend *be);
int sqlite_sync(struct store_backend *base, char *err, size_t err_len);

/* ---- sqlite_audit.c: appends and prune on the writer inside its transaction;
 * audit_scan on the reader ---- */

int sqlite_load_tip(struct sqlite_backend *be, char *err, size_t err_len);
/* The audit primitives of store_int.h. */
int sqlite_audit_tip(struct store_backend *base, int64_t *next_seq,
                     char tip[AUDIT_HASH_HEX_LEN + 1], char *err, size_t err_len);
int sqlite_audit_insert(struct store_backend *base, const json_t *rec, int64_t seq, char *text,
                        const char *hash, char *err, size_t err_len);
int sqlite_audit_prune_point(struct store_backend *base, const char *cutoff, int64_t *through,
                             char hash[AUDIT_HASH_HEX_LEN + 1], char *err, size_t err_len);
int sqlite_audit_delete_through(struct store_backend *base, int64_t through, int64_t *deleted,
                                char *err, size_t err_len);
int sqlite_audit_scan(struct store_backend *base, const struct store_audit_filter *f,
                      store_audit_fn fn, void *ctx, char *err, size_t err_len);

/* ---- sqlite_events.c: inserts, dedupe set and blocks on the writer; the
 * range helpers and scans on the reader under rlock ---- */

int sqlite_bloom_build(struct sqlite_backend *be, struct sqlite_blooms *bs, int64_t block,
                       char *err, size_t err_len);
int sqlite_bloom_backfill(struct sqlite_backend *be, struct sqlite_blooms *bs, char *err,
                          size_t err_len);
void sqlite_dedupe_add(struct sqlite_backend *be, uint64_t fp, int64_t row, double at,
                       double cutoff);
int sqlite_dedupe_load(struct sqlite_backend *be, char *err, size_t err_len);
int sqlite_dedupe_catch_up(struct sqlite_backend *be, char *err, size_t err_len);
int sqlite_insert_event(struct sqlite_backend *be, struct store_op_event *op, char *err,
                        size_t err_len);
int sqlite_hash_ranges(struct sqlite_backend *be, const struct sqlite_blooms *bs,
                       const uint64_t *hashes, size_t n, size_t max_ranges, char *cond, size_t len,
                       char *err, size_t err_len);
int sqlite_event_ranges(struct sqlite_backend *be, const struct sqlite_blooms *bs,
                        const char *event_id, char *cond, size_t len, char *err, size_t err_len);
void sqlite_ranges_from(char *from, size_t len, const char *table, const char *rowid_col,
                        const char *ranges);
int64_t sqlite_count_events(struct store_backend *base, const char *source);
int sqlite_events_scan(struct store_backend *base, const struct store_event_filter *f,
                       store_event_fn fn, void *ctx, char *err, size_t err_len);
void sqlite_dedupe_stats(struct store_backend *base, struct store_dedupe_stats *out);

/* ---- sqlite_jobs.c: the job, number, control and re-plan primitives of
 * store_int.h on the writer inside its transaction; queries on the reader ---- */

int sqlite_number_did(struct store_backend *base, const char *number, char *did, size_t did_len,
                      char *err, size_t err_len);
int sqlite_number_remember(struct store_backend *base, const char *number, const char *did,
                           double at, char *err, size_t err_len);
int sqlite_job_insert(struct store_backend *base, int64_t event_row, const char *source,
                      const char *event_id, double created_at, const struct store_job_spec *spec,
                      const char *did, const char *order_key, int64_t *id, char *err,
                      size_t err_len);
int sqlite_job_heads(struct store_backend *base, double now, int max, struct store_job *heads,
                     int *n, char *err, size_t err_len);
int sqlite_jobs_pending_of_key(struct store_backend *base, const char *key, struct store_job **jobs,
                               size_t *n, char *err, size_t err_len);
int sqlite_job_take(struct store_backend *base, int64_t id, double lease_until, double now,
                    struct store_job *out, char *err, size_t err_len);
int sqlite_job_set_state(struct store_backend *base, int64_t id, const char *state,
                         const char *only_from, double at, char *err, size_t err_len);
int sqlite_job_update(struct store_backend *base, const struct store_op_job *job, char *err,
                      size_t err_len);
int sqlite_jobs_rekey(struct store_backend *base, const char *from_key, const char *to_key,
                      const char *did, char *err, size_t err_len);
int sqlite_job_wait_behind(struct store_backend *base, int64_t id, const char *key, char *err,
                           size_t err_len);
int sqlite_event_replan(struct store_backend *base, int64_t row, const char *status,
                        const char *rule_version, size_t njobs, char *err, size_t err_len);
bool sqlite_jobs_unresolved_before(struct store_backend *base, int64_t job_id);
int sqlite_control_set(struct store_backend *base, const char *key, const char *value, double at,
                       char *err, size_t err_len);
int sqlite_release_running(struct store_backend *base, const struct store_op_release *r,
                           int64_t *released, char *err, size_t err_len);
int sqlite_control_get(struct store_backend *base, const char *key, char *out, size_t len);
int64_t sqlite_jobs_depth(struct store_backend *base, const char *state, double now,
                          double *oldest_age_s);
int sqlite_jobs_scan(struct store_backend *base, const char *state, int64_t limit, store_job_fn fn,
                     void *ctx, char *err, size_t err_len);

#endif
