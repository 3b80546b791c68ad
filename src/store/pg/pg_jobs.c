/*
 * pg_jobs: the delivery queue in PostgreSQL, with the SQLite backend's rules
 * (sqlite_jobs.c): jobs inserted with their event, claimed per order key (only
 * the oldest unfinished job of a key, one running job per key, leases),
 * superseded by a later job that fully replaces them (coalescing), moved
 * between states, re-keyed when a number is resolved to a DID; re-planned
 * rule_failed events and the control values (delivery pause) too. Claims lock
 * their rows with FOR UPDATE SKIP LOCKED, so a second process never takes a
 * job this transaction is taking. Writes run on the writer thread in its
 * transaction; queries on the reader connection under rlock. It never decides
 * delivery policy: supersedes comes from delivery.
 */
#include "pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"

int pg_insert_jobs(struct pg_backend *be, int64_t event_row, const char *source,
                   const char *event_id, double created_at, const struct store_job_spec *jobs,
                   size_t njobs, char *err, size_t err_len)
{
    /* A job naming a DID by a number already resolved joins the DID's key. */
    static const char sql[] =
        "WITH m AS (SELECT did FROM did_numbers WHERE $8::text IS NULL AND number = $9) "
        "INSERT INTO jobs (event_row, source, event_id, action, method, path, body, did, number, "
        "order_key, next_attempt_at, created_at, updated_at) SELECT $1, $2, $3, $4, $5, $6, $7, "
        "coalesce($8, (SELECT did FROM m)), $9, coalesce('did:' || (SELECT did FROM m), $10), "
        "$11, $11, $11 RETURNING id, did";
    for (size_t i = 0; i < njobs; i++) {
        const struct store_job_spec *j = &jobs[i];
        struct pg_params p = {0};
        pg_params_int(&p, event_row);
        pg_params_text(&p, source);
        pg_params_text(&p, event_id);
        pg_params_text(&p, j->action);
        pg_params_text(&p, j->method);
        pg_params_text(&p, j->path);
        pg_params_text(&p, j->body);
        pg_params_text(&p, j->did);
        pg_params_text(&p, j->number);
        pg_params_text(&p, j->order_key);
        pg_params_double(&p, created_at);
        PGresult *r = pg_run(be->w.c, sql, &p, PGRES_TUPLES_OK, "inserting a job", err, err_len);
        if (!r)
            return -1;
        json_t *rec = audit_record_new("job.queued", source, event_id);
        if (!rec) {
            PQclear(r);
            snprintf(err, err_len, "out of memory");
            return -1;
        }
        json_object_set_new(rec, "job_id", json_integer(pg_get_int(r, 0, 0)));
        const char *did = pg_get_str(r, 0, 1);
        if (did)
            json_object_set_new(rec, "did", json_string(did));
        PQclear(r);
        if (j->number)
            json_object_set_new(rec, "number", json_string(j->number));
        audit_detail_set_str(rec, "action", j->action);
        audit_detail_set_str(rec, "method", j->method);
        audit_detail_set_str(rec, "path", j->path);
        int arc = pg_append_audit(be, rec, err, err_len);
        json_decref(rec);
        if (arc < 0)
            return -1;
    }
    if (njobs > 0)
        be->notify_jobs = true; /* new jobs: wake the listeners on commit */
    return 0;
}

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

/* Marks the pending jobs of key that a later pending job fully replaces. */
static int pg_coalesce(struct pg_backend *be, const char *key, double now,
                       store_supersedes_fn supersedes, char *err, size_t err_len)
{
    struct pg_params p = {0};
    pg_params_text(&p, key);
    PGresult *r = pg_run(be->w.c,
                         "SELECT " PG_JOB_COLUMNS " FROM jobs WHERE order_key = $1 AND state = "
                         "'pending' ORDER BY id LIMIT 10000",
                         &p, PGRES_TUPLES_OK, "coalescing", err, err_len);
    if (!r)
        return -1;
    int n = PQntuples(r);
    struct store_job *jobs = calloc(n > 0 ? (size_t)n : 1, sizeof *jobs);
    int rc = -1;
    if (!jobs) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++)
        pg_job_from_row(r, i, &jobs[i]);
    for (int i = 0; i + 1 < n; i++) {
        for (int k = n - 1; k > i; k--) {
            if (!supersedes(&jobs[k], &jobs[i]))
                continue;
            struct pg_params u = {0};
            pg_params_double(&u, now);
            pg_params_int(&u, jobs[i].id);
            if (pg_cmd(be->w.c,
                       "UPDATE jobs SET state = 'superseded', updated_at = $1 WHERE id = $2 AND "
                       "state = 'pending'",
                       &u, NULL, "superseding a job", err, err_len) < 0)
                goto out;
            json_t *rec = store_job_record("job.superseded", &jobs[i]);
            audit_detail_set_int(rec, "superseded_by", (long long)jobs[k].id);
            int arc = rec ? pg_append_audit(be, rec, err, err_len) : -1;
            json_decref(rec);
            if (arc < 0)
                goto out;
            break;
        }
    }
    rc = 0;
out:
    for (int i = 0; jobs && i < n; i++)
        store_job_clear(&jobs[i]);
    free(jobs);
    PQclear(r);
    return rc;
}

/* Claims due jobs: the head (lowest id unfinished) of each order key, when it is
 * due and no job of the key is running under a live lease. */
int pg_claim(struct pg_backend *be, struct store_op_claim *op, char *err, size_t err_len)
{
    int cap = op->max > 0 ? op->max : 1;
    if (cap > 256)
        cap = 256;
    double now = op->now;
    int rc = -1;
    PGresult *heads = NULL;
    /* A batch retried after another op failed runs this again: start clean. */
    for (int i = 0; i < op->n; i++)
        store_job_clear(&op->jobs[i]);
    free(op->jobs);
    op->n = 0;
    op->jobs = calloc((size_t)cap, sizeof *op->jobs);
    if (!op->jobs) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    struct pg_params p = {0};
    pg_params_double(&p, now);
    pg_params_int(&p, cap);
    heads = pg_run(be->w.c,
                   "SELECT j.id, j.order_key FROM jobs j WHERE ((j.state = 'pending' AND "
                   "j.next_attempt_at <= $1) OR (j.state = 'running' AND j.lease_until < $1)) "
                   "AND j.id = (SELECT min(k.id) FROM jobs k WHERE k.order_key = j.order_key AND "
                   "k.state IN ('pending', 'running')) ORDER BY j.id LIMIT $2 "
                   "FOR UPDATE OF j SKIP LOCKED",
                   &p, PGRES_TUPLES_OK, "claiming jobs", err, err_len);
    if (!heads)
        goto out;
    /* Coalesce only the candidates' keys (a key's later pending jobs may
     * supersede its head), then take the heads that survive. */
    for (int i = 0; i < PQntuples(heads); i++) {
        const char *key = pg_get_str(heads, i, 1);
        if (op->supersedes && key && pg_coalesce(be, key, now, op->supersedes, err, err_len) < 0)
            goto out;
    }
    for (int i = 0; i < PQntuples(heads) && op->n < cap; i++) {
        struct pg_params t = {0};
        pg_params_double(&t, now + op->lease_s);
        pg_params_double(&t, now);
        pg_params_int(&t, pg_get_int(heads, i, 0));
        pg_params_text(&t, be->instance);
        PGresult *r = pg_run(be->w.c,
                             "UPDATE jobs SET state = 'running', lease_until = $1, updated_at = "
                             "$2, leased_by = $4 WHERE id = $3 AND state IN ('pending', "
                             "'running') RETURNING " PG_JOB_COLUMNS,
                             &t, PGRES_TUPLES_OK, "claiming a job", err, err_len);
        if (!r)
            goto out;
        if (PQntuples(r) == 1)
            pg_job_from_row(r, 0, &op->jobs[op->n++]);
        PQclear(r);
    }
    op->result = op->n > 0 ? STORE_CLAIM_CLAIMED : STORE_CLAIM_NONE;
    rc = 0;
out:
    PQclear(heads);
    if (rc < 0) {
        for (int i = 0; i < op->n; i++)
            store_job_clear(&op->jobs[i]);
        free(op->jobs);
        op->jobs = NULL;
        op->n = 0;
    }
    return rc;
}

int pg_job_update(struct pg_backend *be, struct store_op *op, char *err, size_t err_len)
{
    struct store_op_job *job = &op->u.job;
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
    if (changed == 0) {
        struct pg_params q = {0};
        pg_params_int(&q, job->id);
        PGresult *r = pg_run(be->w.c, "SELECT 1 FROM jobs WHERE id = $1", &q, PGRES_TUPLES_OK,
                             "updating a job", err, err_len);
        if (!r)
            return -1;
        job->result = PQntuples(r) > 0 ? STORE_JOB_WRONG_STATE : STORE_JOB_NOT_FOUND;
        PQclear(r);
        return 0;
    }
    if (pg_append_op_audit(be, op, err, err_len) < 0)
        return -1;
    job->result = STORE_JOB_MOVED;
    /* Back to pending and due now (jobs retry): wake the listeners on commit. A
     * retry scheduled for later is found by the workers' poll. */
    if (strcmp(job->state, "pending") == 0 && job->next_at <= job->at)
        be->notify_jobs = true;
    return 0;
}

int pg_map_number(struct pg_backend *be, struct store_op_map_number *op, char *err, size_t err_len)
{
    char numkey[64], didkey[96];
    snprintf(numkey, sizeof numkey, "number:%s", op->number);
    snprintf(didkey, sizeof didkey, "did:%s", op->did);
    struct pg_params p = {0};
    pg_params_text(&p, op->number);
    pg_params_text(&p, op->did);
    pg_params_double(&p, op->at);
    if (pg_cmd(be->w.c,
               "INSERT INTO did_numbers (number, did, updated_at) VALUES ($1, $2, $3) "
               "ON CONFLICT (number) DO UPDATE SET did = $2, updated_at = $3",
               &p, NULL, "mapping a number", err, err_len) < 0)
        return -1;
    p = (struct pg_params){0};
    pg_params_text(&p, didkey);
    pg_params_text(&p, op->did);
    pg_params_text(&p, numkey);
    if (pg_cmd(be->w.c,
               "UPDATE jobs SET order_key = $1, did = coalesce(did, $2) WHERE order_key = $3 AND "
               "state IN ('pending', 'running')",
               &p, NULL, "mapping a number", err, err_len) < 0)
        return -1;
    op->result = STORE_MAP_MAPPED;
    if (op->job_id > 0) {
        /* An earlier job of the merged key goes first: this one waits its turn. */
        int64_t changed = 0;
        p = (struct pg_params){0};
        pg_params_int(&p, op->job_id);
        pg_params_text(&p, didkey);
        if (pg_cmd(be->w.c,
                   "UPDATE jobs SET state = 'pending', lease_until = NULL WHERE id = $1 AND "
                   "state = 'running' AND EXISTS (SELECT 1 FROM jobs k WHERE k.order_key = $2 "
                   "AND k.id < $1 AND k.state IN ('pending', 'running'))",
                   &p, &changed, "mapping a number", err, err_len) < 0)
            return -1;
        if (changed > 0)
            op->result = STORE_MAP_MUST_WAIT;
    }
    return 0;
}

int pg_control_set(struct pg_backend *be, struct store_op *op, char *err, size_t err_len)
{
    struct store_op_control *c = &op->u.control;
    struct pg_params p = {0};
    pg_params_text(&p, c->key);
    if (c->value) {
        pg_params_text(&p, c->value);
        pg_params_double(&p, c->at);
    }
    if (pg_cmd(be->w.c,
               c->value ? "INSERT INTO control (key, value, updated_at) VALUES ($1, $2, $3) "
                          "ON CONFLICT (key) DO UPDATE SET value = $2, updated_at = $3"
                        : "DELETE FROM control WHERE key = $1",
               &p, NULL, "control", err, err_len) < 0)
        return -1;
    if (pg_append_op_audit(be, op, err, err_len) < 0)
        return -1;
    c->result = STORE_WRITE_DONE;
    return 0;
}

/* Every running job back to pending (a process starting after another was
 * killed mid-request). */
int pg_release(struct pg_backend *be, struct store_op_release *op, char *err, size_t err_len)
{
    struct pg_params p = {0};
    pg_params_double(&p, op->at);
    if (op->instance) {
        /* Several instances: never a job a live instance holds (pg_shared.c). */
        pg_params_text(&p, op->instance);
        pg_params_double(&p, op->stale_s);
        pg_params_text(&p, op->reclaim_own ? "true" : "false");
    }
    if (pg_cmd(be->w.c,
               op->instance
                   ? "UPDATE jobs SET state = 'pending', lease_until = NULL, leased_by = NULL, "
                     "updated_at = $1 WHERE state = 'running' AND (lease_until < $1 OR "
                     "leased_by IS NULL OR ($4::boolean AND leased_by = $2) OR (leased_by <> $2 "
                     "AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = jobs.leased_by AND "
                     "i.heartbeat_at > extract(epoch FROM clock_timestamp()) - $3::float8)))"
                   : "UPDATE jobs SET state = 'pending', lease_until = NULL, updated_at = $1 "
                     "WHERE state = 'running'",
               &p, &op->released, "releasing jobs", err, err_len) < 0)
        return -1;
    if (op->released > 0)
        be->notify_jobs = true;
    op->result = STORE_WRITE_DONE;
    return 0;
}

/* Re-plans a rule_failed event: only the first reprocess of it wins. */
int pg_replan(struct pg_backend *be, struct store_op *op, char *err, size_t err_len)
{
    struct store_op_replan *rp = &op->u.replan;
    struct pg_params p = {0};
    int64_t changed = 0;
    pg_params_text(&p, rp->status ? rp->status : "accepted");
    pg_params_text(&p, rp->rule_version);
    pg_params_int(&p, (int64_t)rp->njobs);
    pg_params_int(&p, rp->row);
    if (pg_cmd(be->w.c,
               "UPDATE events SET status = $1, rule_version = $2, jobs = $3 WHERE id = $4 AND "
               "status = 'rule_failed'",
               &p, &changed, "updating the event", err, err_len) < 0)
        return -1;
    if (changed == 0) {
        rp->result = STORE_REPLAN_NOT_RULE_FAILED;
        return 0;
    }
    if (pg_append_op_audit(be, op, err, err_len) < 0 ||
        pg_insert_jobs(be, rp->row, rp->source, rp->event_id, rp->received_at, rp->jobs, rp->njobs,
                       err, err_len) < 0)
        return -1;
    rp->result = STORE_REPLAN_REPLANNED;
    return 0;
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
