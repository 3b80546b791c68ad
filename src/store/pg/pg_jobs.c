/*
 * pg_jobs: the job, number-mapping, control and re-plan primitives of the
 * store (store_int.h) in PostgreSQL: rows inserted, found and updated; which
 * job goes first, what coalesces and which records are written is decided
 * above, in store_apply.c. Claim heads are locked FOR UPDATE SKIP LOCKED, so a
 * second process never takes a job this transaction is taking. Writes run on
 * the writer thread in its transaction; queries (depth, listings) on the
 * reader connection under rlock.
 */
#include "pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"

#define PG_JOB_COLUMNS                                                                             \
    "id, source, event_id, action, method, path, body, did, number, order_key, attempts, "         \
    "created_at, state, last_status, last_error"

static void pg_job_from_row(const PGresult *r, int i, struct store_job *j)
{
    j->id = pg_get_int(r, i, 0);
    j->source = pg_get_dup(r, i, 1);
    j->event_id = pg_get_dup(r, i, 2);
    j->action = pg_get_dup(r, i, 3);
    j->method = pg_get_dup(r, i, 4);
    j->path = pg_get_dup(r, i, 5);
    j->body = pg_get_dup(r, i, 6);
    j->did = pg_get_dup(r, i, 7);
    j->number = pg_get_dup(r, i, 8);
    j->order_key = pg_get_dup(r, i, 9);
    j->attempts = (int)pg_get_int(r, i, 10);
    j->created_at = pg_get_double(r, i, 11);
}

/* number_did (store_int.h). Writer thread, inside a transaction. */
int pg_number_did(struct store_backend *base, const char *number, char *did, size_t did_len,
                  char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_text(&p, number);
    PGresult *r = pg_run(be->w.c, "SELECT did FROM did_numbers WHERE number = $1", &p,
                         PGRES_TUPLES_OK, "reading a number", err, err_len);
    if (!r)
        return -1;
    int known = PQntuples(r) > 0 ? STORE_NUMBER_KNOWN : STORE_NUMBER_UNKNOWN;
    if (known == STORE_NUMBER_KNOWN)
        snprintf(did, did_len, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return known;
}

/* number_remember (store_int.h). Writer thread, inside a transaction. */
int pg_number_remember(struct store_backend *base, const char *number, const char *did, double at,
                       char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_text(&p, number);
    pg_params_text(&p, did);
    pg_params_double(&p, at);
    return pg_cmd(be->w.c,
                  "INSERT INTO did_numbers (number, did, updated_at) VALUES ($1, $2, $3) "
                  "ON CONFLICT (number) DO UPDATE SET did = $2, updated_at = $3",
                  &p, NULL, "mapping a number", err, err_len);
}

/* job_insert (store_int.h). Writer thread, inside a transaction. */
int pg_job_insert(struct store_backend *base, int64_t event_row, const char *source,
                  const char *event_id, double created_at, const struct store_job_spec *j,
                  const char *did, const char *order_key, int64_t *id, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_int(&p, event_row);
    pg_params_text(&p, source);
    pg_params_text(&p, event_id);
    pg_params_text(&p, j->action);
    pg_params_text(&p, j->method);
    pg_params_text(&p, j->path);
    pg_params_text(&p, j->body);
    pg_params_text(&p, did);
    pg_params_text(&p, j->number);
    pg_params_text(&p, order_key);
    pg_params_double(&p, created_at);
    PGresult *r = pg_run(be->w.c,
                         "INSERT INTO jobs (event_row, source, event_id, action, method, path, "
                         "body, did, number, order_key, next_attempt_at, created_at, updated_at) "
                         "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $11) "
                         "RETURNING id",
                         &p, PGRES_TUPLES_OK, "inserting a job", err, err_len);
    if (!r)
        return -1;
    *id = pg_get_int(r, 0, 0);
    PQclear(r);
    return 0;
}

/* job_heads (store_int.h): locked FOR UPDATE SKIP LOCKED, so a second process
 * never takes a job this transaction is taking. Writer thread, inside a
 * transaction. */
int pg_job_heads(struct store_backend *base, double now, int max, struct store_job *heads, int *n,
                 char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    *n = 0;
    pg_params_double(&p, now);
    pg_params_int(&p, max);
    PGresult *r = pg_run(be->w.c,
                         "SELECT j.id, j.order_key FROM jobs j WHERE ((j.state = 'pending' AND "
                         "j.next_attempt_at <= $1) OR (j.state = 'running' AND j.lease_until < "
                         "$1)) AND j.id = (SELECT min(k.id) FROM jobs k WHERE k.order_key = "
                         "j.order_key AND k.state IN ('pending', 'running')) ORDER BY j.id LIMIT "
                         "$2 FOR UPDATE OF j SKIP LOCKED",
                         &p, PGRES_TUPLES_OK, "claiming jobs", err, err_len);
    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r) && *n < max; i++) {
        memset(&heads[*n], 0, sizeof heads[*n]);
        heads[*n].id = pg_get_int(r, i, 0);
        heads[*n].order_key = pg_get_dup(r, i, 1);
        (*n)++;
    }
    PQclear(r);
    return 0;
}

/* jobs_pending_of_key (store_int.h). Writer thread, inside a transaction. */
int pg_jobs_pending_of_key(struct store_backend *base, const char *key, struct store_job **out,
                           size_t *nout, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    *out = NULL;
    *nout = 0;
    pg_params_text(&p, key);
    PGresult *r = pg_run(be->w.c,
                         "SELECT " PG_JOB_COLUMNS " FROM jobs WHERE order_key = $1 AND state = "
                         "'pending' ORDER BY id LIMIT 10000",
                         &p, PGRES_TUPLES_OK, "coalescing", err, err_len);
    if (!r)
        return -1;
    int n = PQntuples(r);
    struct store_job *jobs = calloc(n > 0 ? (size_t)n : 1, sizeof *jobs);
    if (!jobs) {
        PQclear(r);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++)
        pg_job_from_row(r, i, &jobs[i]);
    PQclear(r);
    *out = jobs;
    *nout = (size_t)n;
    return 0;
}

/* job_take (store_int.h). Writer thread, inside a transaction. */
int pg_job_take(struct store_backend *base, int64_t id, double lease_until, double now,
                struct store_job *out, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_double(&p, lease_until);
    pg_params_double(&p, now);
    pg_params_int(&p, id);
    pg_params_text(&p, be->instance); /* who holds the lease (several instances) */
    PGresult *r = pg_run(be->w.c,
                         "UPDATE jobs SET state = 'running', lease_until = $1, updated_at = "
                         "$2, leased_by = $4 WHERE id = $3 AND state IN ('pending', 'running') "
                         "RETURNING " PG_JOB_COLUMNS,
                         &p, PGRES_TUPLES_OK, "claiming a job", err, err_len);
    if (!r)
        return -1;
    int took = PQntuples(r) == 1 ? STORE_TAKE_TAKEN : STORE_TAKE_GONE;
    memset(out, 0, sizeof *out);
    if (took == STORE_TAKE_TAKEN)
        pg_job_from_row(r, 0, out);
    PQclear(r);
    return took;
}

/* job_set_state (store_int.h). Writer thread, inside a transaction. */
int pg_job_set_state(struct store_backend *base, int64_t id, const char *state,
                     const char *only_from, double at, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    int64_t changed = 0;
    pg_params_text(&p, state);
    pg_params_double(&p, at);
    pg_params_int(&p, id);
    pg_params_text(&p, only_from);
    if (pg_cmd(be->w.c,
               "UPDATE jobs SET state = $1, updated_at = $2 WHERE id = $3 AND ($4::text IS NULL "
               "OR state = $4)",
               &p, &changed, "updating a job", err, err_len) < 0)
        return -1;
    return changed > 0 ? STORE_MOVE_MOVED : STORE_MOVE_LEFT;
}

/* job_update (store_int.h). Writer thread, inside a transaction. */
int pg_job_update(struct store_backend *base, const struct store_op_job *job, char *err,
                  size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_text(&p, job->state);
    if (job->next_at > 0)
        pg_params_double(&p, job->next_at);
    else
        pg_params_text(&p, NULL);
    pg_params_int(&p, job->attempts);
    if (job->last_status)
        pg_params_int(&p, job->last_status);
    else
        pg_params_text(&p, NULL);
    pg_params_text(&p, job->last_error);
    pg_params_text(&p, job->did);
    pg_params_double(&p, job->at);
    pg_params_int(&p, job->id);
    pg_params_text(&p, job->only_from);
    int64_t changed = 0;
    if (pg_cmd(be->w.c,
               "UPDATE jobs SET state = $1, next_attempt_at = coalesce($2::float8, "
               "next_attempt_at), attempts = $3, last_status = $4::integer, last_error = $5, "
               "did = coalesce($6, did), lease_until = NULL, updated_at = $7 WHERE id = $8 AND "
               "($9::text IS NULL OR state = $9)",
               &p, &changed, "updating a job", err, err_len) < 0)
        return -1;
    if (changed > 0)
        return STORE_JOB_MOVED;
    struct pg_params q = {0};
    pg_params_int(&q, job->id);
    PGresult *r = pg_run(be->w.c, "SELECT 1 FROM jobs WHERE id = $1", &q, PGRES_TUPLES_OK,
                         "updating a job", err, err_len);
    if (!r)
        return -1;
    int result = PQntuples(r) > 0 ? STORE_JOB_WRONG_STATE : STORE_JOB_NOT_FOUND;
    PQclear(r);
    return result;
}

/* jobs_rekey (store_int.h). Writer thread, inside a transaction. */
int pg_jobs_rekey(struct store_backend *base, const char *from_key, const char *to_key,
                  const char *did, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_text(&p, to_key);
    pg_params_text(&p, did);
    pg_params_text(&p, from_key);
    return pg_cmd(be->w.c,
                  "UPDATE jobs SET order_key = $1, did = coalesce(did, $2) WHERE order_key = $3 "
                  "AND state IN ('pending', 'running')",
                  &p, NULL, "mapping a number", err, err_len);
}

/* job_wait_behind (store_int.h). Writer thread, inside a transaction. */
int pg_job_wait_behind(struct store_backend *base, int64_t id, const char *key, char *err,
                       size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    int64_t changed = 0;
    pg_params_int(&p, id);
    pg_params_text(&p, key);
    if (pg_cmd(be->w.c,
               "UPDATE jobs SET state = 'pending', lease_until = NULL WHERE id = $1 AND "
               "state = 'running' AND EXISTS (SELECT 1 FROM jobs k WHERE k.order_key = $2 "
               "AND k.id < $1 AND k.state IN ('pending', 'running'))",
               &p, &changed, "mapping a number", err, err_len) < 0)
        return -1;
    return changed > 0 ? STORE_MOVE_MOVED : STORE_MOVE_LEFT;
}

/* control_set (store_int.h). Writer thread, inside a transaction. */
int pg_control_set(struct store_backend *base, const char *key, const char *value, double at,
                   char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_text(&p, key);
    if (value) {
        pg_params_text(&p, value);
        pg_params_double(&p, at);
    }
    return pg_cmd(be->w.c,
                  value ? "INSERT INTO control (key, value, updated_at) VALUES ($1, $2, $3) "
                          "ON CONFLICT (key) DO UPDATE SET value = $2, updated_at = $3"
                        : "DELETE FROM control WHERE key = $1",
                  &p, NULL, "control", err, err_len);
}

/* release_running (store_int.h). Writer thread, inside a transaction. With
 * r->instance set (several instances), never a job a live instance holds
 * (pg_shared.c keeps the heartbeats). */
int pg_release_running(struct store_backend *base, const struct store_op_release *r,
                       int64_t *released, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_double(&p, r->at);
    if (r->instance) {
        pg_params_text(&p, r->instance);
        pg_params_double(&p, r->stale_s);
        pg_params_text(&p, r->reclaim_own ? "true" : "false");
    }
    return pg_cmd(be->w.c,
                  r->instance
                      ? "UPDATE jobs SET state = 'pending', lease_until = NULL, leased_by = NULL, "
                        "updated_at = $1 WHERE state = 'running' AND (lease_until < $1 OR "
                        "leased_by IS NULL OR ($4::boolean AND leased_by = $2) OR (leased_by <> $2 "
                        "AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = jobs.leased_by AND "
                        "i.heartbeat_at > extract(epoch FROM clock_timestamp()) - $3::float8)))"
                      : "UPDATE jobs SET state = 'pending', lease_until = NULL, updated_at = $1 "
                        "WHERE state = 'running'",
                  &p, released, "releasing jobs", err, err_len);
}

/* event_replan (store_int.h). Writer thread, inside a transaction. */
int pg_event_replan(struct store_backend *base, int64_t row, const char *status,
                    const char *rule_version, size_t njobs, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    int64_t changed = 0;
    pg_params_text(&p, status);
    pg_params_text(&p, rule_version);
    pg_params_int(&p, (int64_t)njobs);
    pg_params_int(&p, row);
    if (pg_cmd(be->w.c,
               "UPDATE events SET status = $1, rule_version = $2, jobs = $3 WHERE id = $4 AND "
               "status = 'rule_failed'",
               &p, &changed, "updating the event", err, err_len) < 0)
        return -1;
    return changed > 0 ? STORE_REPLAN_REPLANNED : STORE_REPLAN_NOT_RULE_FAILED;
}

/* ---------- queries (reader connection, under rlock) ---------- */

/* Runs a reader query; the result (caller PQclears) or NULL with err set. */
static PGresult *pg_read(struct pg_backend *be, const char *sql, const struct pg_params *p,
                         const char *what, char *err, size_t err_len)
{
    PGconn *c = pg_reader(be, err, err_len);
    if (!c)
        return NULL;
    PGresult *r = pg_run(c, sql, p, PGRES_TUPLES_OK, what, err, err_len);
    if (!r)
        pg_reader_check(be);
    return r;
}

bool pg_jobs_unresolved_before(struct store_backend *base, int64_t job_id)
{
    struct pg_backend *be = (struct pg_backend *)base;
    char err[200];
    struct pg_params p = {0};
    pg_params_int(&p, job_id);
    pthread_mutex_lock(&be->rlock);
    PGresult *r = pg_read(be,
                          "SELECT 1 FROM jobs WHERE order_key >= 'number:' AND order_key < "
                          "'number;' AND id < $1 AND attempts = 0 AND state IN ('pending', "
                          "'running') LIMIT 1",
                          &p, "job query", err, sizeof err);
    bool yes = r && PQntuples(r) > 0;
    PQclear(r);
    pthread_mutex_unlock(&be->rlock);
    return yes;
}

int pg_control_get(struct store_backend *base, const char *key, char *out, size_t len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    char err[200];
    struct pg_params p = {0};
    pg_params_text(&p, key);
    pthread_mutex_lock(&be->rlock);
    PGresult *r =
        pg_read(be, "SELECT value FROM control WHERE key = $1", &p, "control", err, sizeof err);
    int rc = -1;
    if (r && PQntuples(r) > 0) {
        snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
        rc = 1;
    } else if (r) {
        rc = 0;
    }
    PQclear(r);
    pthread_mutex_unlock(&be->rlock);
    return rc;
}

int64_t pg_jobs_depth(struct store_backend *base, const char *state, double now,
                      double *oldest_age_s)
{
    struct pg_backend *be = (struct pg_backend *)base;
    char err[200];
    struct pg_params p = {0};
    pg_params_text(&p, state);
    *oldest_age_s = 0;
    pthread_mutex_lock(&be->rlock);
    PGresult *r = pg_read(be,
                          "SELECT count(*), min(created_at) FROM jobs WHERE CASE WHEN $1::text "
                          "IS NULL THEN state IN ('pending', 'running') ELSE state = $1 END",
                          &p, "job query", err, sizeof err);
    int64_t n = -1;
    if (r) {
        n = pg_get_int(r, 0, 0);
        if (n > 0 && !PQgetisnull(r, 0, 1))
            *oldest_age_s = now - pg_get_double(r, 0, 1);
    }
    PQclear(r);
    pthread_mutex_unlock(&be->rlock);
    return n;
}

int pg_jobs_scan(struct store_backend *base, const char *state, int64_t limit, store_job_fn fn,
                 void *ctx, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_text(&p, state);
    if (limit > 0)
        pg_params_int(&p, limit);
    else
        pg_params_text(&p, NULL);
    pthread_mutex_lock(&be->rlock);
    PGresult *r = pg_read(be,
                          "SELECT " PG_JOB_COLUMNS " FROM jobs WHERE ($1::text IS NULL OR state "
                          "= $1) ORDER BY id LIMIT $2::bigint",
                          &p, "job query", err, err_len);
    for (int i = 0; r && i < PQntuples(r); i++) {
        struct store_job j = {0};
        pg_job_from_row(r, i, &j);
        int stop =
            fn(&j, pg_get_str(r, i, 12), (int)pg_get_int(r, i, 13), pg_get_str(r, i, 14), ctx);
        store_job_clear(&j);
        if (stop)
            break;
    }
    int rc = r ? 0 : -1;
    PQclear(r);
    pthread_mutex_unlock(&be->rlock);
    return rc;
}
