/*
 * sqlite_backend: the embedded SQLite backend of the store, its open and close
 * and the const table (store_sqlite_backend) through which store.c reaches it.
 * The file is in WAL mode with synchronous=NORMAL (sqlite_wal.c makes commits
 * durable). Two connections: the writer, used only by the store's writer
 * thread, which opens and commits each batch's transaction here (begin,
 * commit, rollback; store_apply.c applies the ops through the primitives) and
 * alone owns sequence numbers, the cached audit chain tip and the dedupe set;
 * and a reader under rlock for queries from any thread. Nothing here may
 * block a reader on the writer.
 */
#include "sqlite_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "dedupe.h"
#include "log.h"

void sqlite_err(sqlite3 *db, const char *what, char *err, size_t err_len)
{
    snprintf(err, err_len, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

int sqlite_exec(sqlite3 *db, const char *sql, char *err, size_t err_len)
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
int sqlite_query_int64(sqlite3 *db, const char *sql, int64_t *out, const char *what, char *err,
                       size_t err_len)
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

void sqlite_bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

double sqlite_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* insert_events (store_int.h): one by one, each checked against the dedupe
 * set (and the events of this transaction). Writer thread, inside a
 * transaction. */
static int sqlite_insert_events(struct store_backend *base, struct store_op **ops, size_t n,
                                size_t *failed, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    (void)err;
    (void)err_len;
    for (size_t i = 0; i < n; i++)
        if (sqlite_insert_event(be, &ops[i]->u.event, ops[i]->error, sizeof ops[i]->error) < 0) {
            *failed = i;
            return -1;
        }
    return 0;
}

/* begin (store_int.h): BEGIN IMMEDIATE, then what other processes (a CLI
 * command, a second instance) committed since our last commit: the audit tip
 * and the events they stored, which dedupe like ours. */
static int sqlite_begin(struct store_backend *base, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    if (sqlite_exec(be->wdb, "BEGIN IMMEDIATE", err, err_len) < 0)
        return -1;
    be->changes_before = sqlite3_total_changes64(be->wdb);
    be->dd_nnew = 0;
    int dv = sqlite_data_version(be->wdb);
    if (dv != be->data_version) {
        if (sqlite_load_tip(be, err, err_len) < 0 ||
            (be->dd_loaded && sqlite_dedupe_catch_up(be, err, err_len) < 0)) {
            sqlite3_exec(be->wdb, "ROLLBACK", NULL, NULL, NULL);
            char e2[160];
            (void)sqlite_load_tip(be, e2, sizeof e2);
            return -1;
        }
        be->data_version = dv;
    }
    return 0;
}

/* rollback (store_int.h): the tip cached for the rolled-back records is read
 * again. A SQLite file is never "lost". */
static int sqlite_rollback(struct store_backend *base, const char *why)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    (void)why;
    sqlite3_exec(be->wdb, "ROLLBACK", NULL, NULL, NULL);
    be->dd_nnew = 0;
    char e2[160];
    (void)sqlite_load_tip(be, e2, sizeof e2);
    return STORE_ROLLBACK_DONE;
}

/* commit (store_int.h): COMMIT, the new events' keys into the dedupe set, a
 * checkpoint when the WAL is long; CLEAN when nothing was written (an idle
 * claim needs no fsync). */
static int sqlite_commit(struct store_backend *base, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    if (sqlite_exec(be->wdb, "COMMIT", err, err_len) < 0) {
        (void)sqlite_rollback(base, err);
        return STORE_COMMIT_FAILED;
    }
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
    sqlite_maybe_checkpoint(be);
    return sqlite3_total_changes64(be->wdb) == be->changes_before ? STORE_COMMIT_CLEAN
                                                                  : STORE_COMMIT_WROTE;
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

static void sqlite_close(struct store_backend *base)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    if (!be)
        return;
    sqlite_checkpointer_stop(be);
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
                       "content_type, headers, body, rule_version, jobs, key_fp, plan) VALUES "
                       "(?,?,?,?,?,?,?,?,?,?,?,?)",
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
    if (!opts->read_only)
        sqlite_checkpointer_start(be);
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
        if (v != store_sqlite_schema_version()) {
            snprintf(err, err_len,
                     "database schema version %d, this build needs %d (start `hookline serve` "
                     "once to migrate)",
                     v, store_sqlite_schema_version());
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
    .build_schema_version = store_sqlite_schema_version,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .audit_tip = sqlite_audit_tip,
    .audit_insert = sqlite_audit_insert,
    .audit_prune_point = sqlite_audit_prune_point,
    .audit_delete_through = sqlite_audit_delete_through,
    .control_set = sqlite_control_set,
    .release_running = sqlite_release_running,
    .jobs_claimable = NULL, /* store.c wakes its own listener; other processes poll */
    .insert_events = sqlite_insert_events,
    .event_replan = sqlite_event_replan,
    .number_did = sqlite_number_did,
    .number_remember = sqlite_number_remember,
    .job_insert = sqlite_job_insert,
    .job_heads = sqlite_job_heads,
    .jobs_pending_of_key = sqlite_jobs_pending_of_key,
    .job_take = sqlite_job_take,
    .job_set_state = sqlite_job_set_state,
    .job_update = sqlite_job_update,
    .jobs_rekey = sqlite_jobs_rekey,
    .job_wait_behind = sqlite_job_wait_behind,
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
    .watch_jobs = NULL, /* another process's jobs wait for the workers' poll */
};
