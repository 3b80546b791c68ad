/*
 * sqlite_jobs: the job, number-mapping, control and re-plan primitives of the
 * store (store_int.h) in SQLite: rows inserted, found and updated; which job
 * goes first, what coalesces and which records are written is decided above,
 * in store_apply.c. Writes run on the writer thread in its transaction; job
 * queries on the reader connection under rlock.
 */
#include "sqlite_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"

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

/* Runs st (prepared by the caller, bound) to completion on the writer;
 * finalizes it. Returns 0, or -1 with err set ("what: SQLite's reason"). */
static int sqlite_run(struct sqlite_backend *be, sqlite3_stmt *st, const char *what, char *err,
                      size_t err_len)
{
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE) {
        sqlite_err(be->wdb, what, err, err_len);
        return -1;
    }
    return 0;
}

/* Prepares sql on the writer into *st; -1 with err set. */
static int sqlite_prep(struct sqlite_backend *be, const char *sql, sqlite3_stmt **st,
                       const char *what, char *err, size_t err_len)
{
    if (sqlite3_prepare_v2(be->wdb, sql, -1, st, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, what, err, err_len);
        return -1;
    }
    return 0;
}

/* number_did (store_int.h). Writer thread, inside a transaction. */
int sqlite_number_did(struct store_backend *base, const char *number, char *did, size_t did_len,
                      char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st;
    if (sqlite_prep(be, "SELECT did FROM did_numbers WHERE number = ?", &st, "reading a number",
                    err, err_len) < 0)
        return -1;
    sqlite3_bind_text(st, 1, number, -1, SQLITE_STATIC);
    int s = sqlite3_step(st), rc = STORE_NUMBER_UNKNOWN;
    if (s == SQLITE_ROW) {
        snprintf(did, did_len, "%s", (const char *)sqlite3_column_text(st, 0));
        rc = STORE_NUMBER_KNOWN;
    } else if (s != SQLITE_DONE) {
        sqlite_err(be->wdb, "reading a number", err, err_len);
        rc = STORE_NUMBER_FAILED;
    }
    sqlite3_finalize(st);
    return rc;
}

/* number_remember (store_int.h). Writer thread, inside a transaction. */
int sqlite_number_remember(struct store_backend *base, const char *number, const char *did,
                           double at, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st;
    if (sqlite_prep(be,
                    "INSERT INTO did_numbers (number, did, updated_at) VALUES (?1, ?2, ?3) "
                    "ON CONFLICT (number) DO UPDATE SET did = ?2, updated_at = ?3",
                    &st, "mapping a number", err, err_len) < 0)
        return -1;
    sqlite3_bind_text(st, 1, number, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, did, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, at);
    return sqlite_run(be, st, "mapping a number", err, err_len);
}

/* job_insert (store_int.h). Writer thread, inside a transaction. */
int sqlite_job_insert(struct store_backend *base, int64_t event_row, const char *source,
                      const char *event_id, double created_at, const struct store_job_spec *j,
                      const char *did, const char *order_key, int64_t *id, char *err,
                      size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st = be->ins_job;
    sqlite3_bind_int64(st, 1, event_row);
    sqlite3_bind_text(st, 2, source, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, event_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, j->action, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, j->method, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, j->path, -1, SQLITE_STATIC);
    sqlite_bind_text_or_null(st, 7, j->body);
    sqlite_bind_text_or_null(st, 8, did);
    sqlite_bind_text_or_null(st, 9, j->number);
    sqlite3_bind_text(st, 10, order_key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 11, created_at);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        sqlite_err(be->wdb, "inserting a job", err, err_len);
        return -1;
    }
    *id = sqlite3_last_insert_rowid(be->wdb);
    return 0;
}

/* job_heads (store_int.h). Writer thread, inside a transaction. */
int sqlite_job_heads(struct store_backend *base, double now, int max, struct store_job *heads,
                     int *n, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st;
    *n = 0;
    if (sqlite_prep(be,
                    "SELECT j.id, j.order_key FROM jobs j WHERE ((j.state = 'pending' AND "
                    "j.next_attempt_at <= ?1) OR (j.state = 'running' AND j.lease_until < "
                    "?1)) AND j.id = (SELECT min(k.id) FROM jobs k WHERE k.order_key = "
                    "j.order_key AND k.state IN ('pending', 'running')) ORDER BY j.id "
                    "LIMIT ?2",
                    &st, "claiming jobs", err, err_len) < 0)
        return -1;
    sqlite3_bind_double(st, 1, now);
    sqlite3_bind_int(st, 2, max);
    int s;
    while (*n < max && (s = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&heads[*n], 0, sizeof heads[*n]);
        heads[*n].id = sqlite3_column_int64(st, 0);
        heads[*n].order_key = sqlite_col_dup(st, 1);
        (*n)++;
    }
    sqlite3_finalize(st);
    return 0;
}

/* jobs_pending_of_key (store_int.h). Writer thread, inside a transaction. */
int sqlite_jobs_pending_of_key(struct store_backend *base, const char *key, struct store_job **out,
                               size_t *nout, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *q;
    struct store_job *jobs = NULL;
    size_t n = 0, cap = 0;
    *out = NULL;
    *nout = 0;
    if (sqlite_prep(be,
                    "SELECT " SQLITE_JOB_COLUMNS " FROM jobs WHERE order_key = ? AND "
                    "state = 'pending' ORDER BY id LIMIT 10000",
                    &q, "coalescing", err, err_len) < 0)
        return -1;
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct store_job *nj = realloc(jobs, ncap * sizeof *nj);
            if (!nj) {
                snprintf(err, err_len, "out of memory");
                for (size_t i = 0; i < n; i++)
                    store_job_clear(&jobs[i]);
                free(jobs);
                sqlite3_finalize(q);
                return -1;
            }
            jobs = nj;
            cap = ncap;
        }
        memset(&jobs[n], 0, sizeof jobs[n]);
        sqlite_job_from_row(q, &jobs[n++]);
    }
    sqlite3_finalize(q);
    *out = jobs;
    *nout = n;
    return 0;
}

/* job_take (store_int.h). Writer thread, inside a transaction. */
int sqlite_job_take(struct store_backend *base, int64_t id, double lease_until, double now,
                    struct store_job *out, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st;
    if (sqlite_prep(be,
                    "UPDATE jobs SET state = 'running', lease_until = ?1, updated_at = ?2 "
                    "WHERE id = ?3 AND state IN ('pending', 'running')",
                    &st, "claiming a job", err, err_len) < 0)
        return STORE_TAKE_FAILED;
    sqlite3_bind_double(st, 1, lease_until);
    sqlite3_bind_double(st, 2, now);
    sqlite3_bind_int64(st, 3, id);
    if (sqlite_run(be, st, "claiming a job", err, err_len) < 0)
        return STORE_TAKE_FAILED;
    if (sqlite3_changes(be->wdb) == 0)
        return STORE_TAKE_GONE;
    if (sqlite_prep(be, "SELECT " SQLITE_JOB_COLUMNS " FROM jobs WHERE id = ?", &st,
                    "claiming a job", err, err_len) < 0)
        return STORE_TAKE_FAILED;
    sqlite3_bind_int64(st, 1, id);
    int rc = STORE_TAKE_GONE;
    memset(out, 0, sizeof *out);
    if (sqlite3_step(st) == SQLITE_ROW) {
        sqlite_job_from_row(st, out);
        rc = STORE_TAKE_TAKEN;
    }
    sqlite3_finalize(st);
    return rc;
}

/* job_set_state (store_int.h). Writer thread, inside a transaction. */
int sqlite_job_set_state(struct store_backend *base, int64_t id, const char *state,
                         const char *only_from, double at, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st;
    if (sqlite_prep(be,
                    "UPDATE jobs SET state = ?1, updated_at = ?2 WHERE id = ?3 AND "
                    "(?4 IS NULL OR state = ?4)",
                    &st, "updating a job", err, err_len) < 0)
        return -1;
    sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, at);
    sqlite3_bind_int64(st, 3, id);
    sqlite_bind_text_or_null(st, 4, only_from);
    if (sqlite_run(be, st, "updating a job", err, err_len) < 0)
        return -1;
    return sqlite3_changes(be->wdb) > 0 ? STORE_MOVE_MOVED : STORE_MOVE_LEFT;
}

/* job_update (store_int.h). Writer thread, inside a transaction. */
int sqlite_job_update(struct store_backend *base, const struct store_op_job *job, char *err,
                      size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st = NULL;
    if (sqlite_prep(be,
                    "UPDATE jobs SET state = ?1, next_attempt_at = coalesce(?2, "
                    "next_attempt_at), attempts = ?3, last_status = ?4, last_error = ?5, "
                    "did = coalesce(?6, did), lease_until = NULL, updated_at = ?7 WHERE "
                    "id = ?8 AND (?9 IS NULL OR state = ?9)",
                    &st, "updating a job", err, err_len) < 0)
        return -1;
    sqlite3_bind_text(st, 1, job->state, -1, SQLITE_STATIC);
    if (job->next_at > 0)
        sqlite3_bind_double(st, 2, job->next_at);
    sqlite3_bind_int(st, 3, job->attempts);
    if (job->last_status)
        sqlite3_bind_int(st, 4, job->last_status);
    sqlite_bind_text_or_null(st, 5, job->last_error);
    sqlite_bind_text_or_null(st, 6, job->did);
    sqlite3_bind_double(st, 7, job->at);
    sqlite3_bind_int64(st, 8, job->id);
    sqlite_bind_text_or_null(st, 9, job->only_from);
    if (sqlite_run(be, st, "updating a job", err, err_len) < 0)
        return -1;
    if (sqlite3_changes(be->wdb) > 0)
        return STORE_JOB_MOVED;
    int64_t exists = 0;
    char q[64];
    snprintf(q, sizeof q, "SELECT count(*) FROM jobs WHERE id = %lld", (long long)job->id);
    if (sqlite_query_int64(be->wdb, q, &exists, "updating a job", err, err_len) < 0)
        return -1;
    return exists ? STORE_JOB_WRONG_STATE : STORE_JOB_NOT_FOUND;
}

/* jobs_rekey (store_int.h). Writer thread, inside a transaction. */
int sqlite_jobs_rekey(struct store_backend *base, const char *from_key, const char *to_key,
                      const char *did, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st;
    if (sqlite_prep(be,
                    "UPDATE jobs SET order_key = ?1, did = coalesce(did, ?2) WHERE "
                    "order_key = ?3 AND state IN ('pending', 'running')",
                    &st, "mapping a number", err, err_len) < 0)
        return -1;
    sqlite3_bind_text(st, 1, to_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, did, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, from_key, -1, SQLITE_STATIC);
    return sqlite_run(be, st, "mapping a number", err, err_len);
}

/* job_wait_behind (store_int.h). Writer thread, inside a transaction. */
int sqlite_job_wait_behind(struct store_backend *base, int64_t id, const char *key, char *err,
                           size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st;
    if (sqlite_prep(be,
                    "UPDATE jobs SET state = 'pending', lease_until = NULL WHERE id = "
                    "?1 AND state = 'running' AND EXISTS (SELECT 1 FROM jobs k WHERE "
                    "k.order_key = ?2 AND k.id < ?1 AND k.state IN ('pending', "
                    "'running'))",
                    &st, "mapping a number", err, err_len) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    if (sqlite_run(be, st, "mapping a number", err, err_len) < 0)
        return -1;
    return sqlite3_changes(be->wdb) > 0 ? STORE_MOVE_MOVED : STORE_MOVE_LEFT;
}

bool sqlite_jobs_unresolved_before(struct store_backend *base, int64_t job_id)
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

/* control_set (store_int.h). Writer thread, inside a transaction. */
int sqlite_control_set(struct store_backend *base, const char *key, const char *value, double at,
                       char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st = NULL;
    const char *sql = value ? "INSERT INTO control (key, value, updated_at) VALUES (?1, ?2, ?3) "
                              "ON CONFLICT (key) DO UPDATE SET value = ?2, updated_at = ?3"
                            : "DELETE FROM control WHERE key = ?1";
    if (sqlite3_prepare_v2(be->wdb, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "control", err, err_len);
        return -1;
    }
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (value) {
        sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 3, at);
    }
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE) {
        sqlite_err(be->wdb, "control", err, err_len);
        return -1;
    }
    return 0;
}

/* release_running (store_int.h). Writer thread, inside a transaction. One
 * process serves a SQLite file: every running job is released (r->instance is
 * never set). */
int sqlite_release_running(struct store_backend *base, const struct store_op_release *r,
                           int64_t *released, char *err, size_t err_len)
{
    double at = r->at;
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(be->wdb,
                           "UPDATE jobs SET state = 'pending', lease_until = NULL, "
                           "updated_at = ? WHERE state = 'running'",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "releasing jobs", err, err_len);
        return -1;
    }
    sqlite3_bind_double(st, 1, at);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE) {
        sqlite_err(be->wdb, "releasing jobs", err, err_len);
        return -1;
    }
    *released = sqlite3_changes(be->wdb);
    return 0;
}

/* event_replan (store_int.h). Writer thread, inside a transaction. */
int sqlite_event_replan(struct store_backend *base, int64_t row, const char *status,
                        const char *rule_version, size_t njobs, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st = be->replan;
    sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
    sqlite_bind_text_or_null(st, 2, rule_version);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)njobs);
    sqlite3_bind_int64(st, 4, row);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        sqlite_err(be->wdb, "updating the event", err, err_len);
        return -1;
    }
    return sqlite3_changes(be->wdb) > 0 ? STORE_REPLAN_REPLANNED : STORE_REPLAN_NOT_RULE_FAILED;
}

int sqlite_control_get(struct store_backend *base, const char *key, char *out, size_t len)
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

int64_t sqlite_jobs_depth(struct store_backend *base, const char *state, double now,
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

int sqlite_jobs_scan(struct store_backend *base, const char *state, int64_t limit, store_job_fn fn,
                     void *ctx, char *err, size_t err_len)
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
