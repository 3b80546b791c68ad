/*
 * sqlite_jobs: the delivery queue in SQLite. Jobs inserted with their event,
 * claimed per order key (FIFO, one running job per key, leases), superseded by
 * a later job that fully replaces them (coalescing), moved between states,
 * re-keyed when a number is resolved to a DID; re-planned rule_failed events and
 * the control values (delivery pause) too. Writes run on the writer thread in
 * its transaction; job queries on the reader connection under rlock. It never
 * decides delivery policy: supersedes comes from delivery.
 */
#include "sqlite_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"

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

int sqlite_insert_jobs(struct sqlite_backend *be, int64_t event_row, const char *source,
                       const char *event_id, double created_at, const struct store_job_spec *jobs,
                       size_t njobs, char *err, size_t err_len)
{
    for (size_t i = 0; i < njobs; i++) {
        const struct store_job_spec *j = &jobs[i];
        sqlite3_stmt *st = be->ins_job;
        char mapped[64], key[96];
        const char *did = j->did, *order_key = j->order_key;
        if (!did && j->number && sqlite_mapped_did(be, j->number, mapped, sizeof mapped)) {
            did = mapped;
            snprintf(key, sizeof key, "did:%s", mapped);
            order_key = key;
        }
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
        json_t *rec = audit_record_new("job.queued", source, event_id);
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
            json_t *rec = store_job_record("job.superseded", &jobs[i]);
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
int sqlite_claim(struct sqlite_backend *be, struct store_op_claim *op, char *err, size_t err_len)
{
    sqlite3_stmt *heads = NULL, *take = NULL, *row = NULL;
    int rc = -1;
    int cap = op->max > 0 ? op->max : 1;
    double now = op->now;
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
        if (crc == 0 && op->supersedes && cand_key[i])
            crc = sqlite_coalesce(be, cand_key[i], now, op->supersedes, err, err_len);
        if (crc == 0 && sqlite_job_state_is(be, cand[i], "pending", "running"))
            ids[nids++] = cand[i];
        free(cand_key[i]);
    }
    if (crc < 0)
        goto out;
    for (int i = 0; i < nids; i++) {
        sqlite3_bind_double(take, 1, now + op->lease_s);
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
            sqlite_job_from_row(row, &op->jobs[op->n++]);
        sqlite3_reset(row);
    }
    op->result = op->n > 0 ? STORE_CLAIM_CLAIMED : STORE_CLAIM_NONE;
    rc = 0;
out:
    sqlite3_finalize(heads);
    sqlite3_finalize(take);
    sqlite3_finalize(row);
    if (rc < 0) {
        for (int i = 0; i < op->n; i++)
            store_job_clear(&op->jobs[i]);
        free(op->jobs);
        op->jobs = NULL;
        op->n = 0;
    }
    return rc;
}

int sqlite_job_update(struct sqlite_backend *be, struct store_op *op, char *err, size_t err_len)
{
    struct store_op_job *job = &op->u.job;
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
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite_err(be->wdb, "updating a job", err, err_len);
        goto out;
    }
    if (sqlite3_changes(be->wdb) == 0) {
        int64_t exists = 0;
        char q[64];
        snprintf(q, sizeof q, "SELECT count(*) FROM jobs WHERE id = %lld", (long long)job->id);
        if (sqlite_query_int64(be->wdb, q, &exists, "updating a job", err, err_len) < 0)
            goto out;
        job->result = exists ? STORE_JOB_WRONG_STATE : STORE_JOB_NOT_FOUND;
        rc = 0;
        goto out;
    }
    if (sqlite_append_op_audit(be, op, err, err_len) < 0)
        goto out;
    job->result = STORE_JOB_MOVED;
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

int sqlite_map_number(struct sqlite_backend *be, struct store_op_map_number *op, char *err,
                      size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    char numkey[64], didkey[96];
    snprintf(numkey, sizeof numkey, "number:%s", op->number);
    snprintf(didkey, sizeof didkey, "did:%s", op->did);
    if (sqlite3_prepare_v2(be->wdb,
                           "INSERT INTO did_numbers (number, did, updated_at) VALUES (?1, ?2, ?3) "
                           "ON CONFLICT (number) DO UPDATE SET did = ?2, updated_at = ?3",
                           -1, &st, NULL) != SQLITE_OK)
        goto sqlerr;
    sqlite3_bind_text(st, 1, op->number, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->did, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, op->at);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto sqlerr;
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(be->wdb,
                           "UPDATE jobs SET order_key = ?1, did = coalesce(did, ?2) WHERE "
                           "order_key = ?3 AND state IN ('pending', 'running')",
                           -1, &st, NULL) != SQLITE_OK)
        goto sqlerr;
    sqlite3_bind_text(st, 1, didkey, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->did, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, numkey, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto sqlerr;
    sqlite3_finalize(st);
    st = NULL;
    op->result = STORE_MAP_MAPPED;
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
            op->result = STORE_MAP_MUST_WAIT;
    }
    rc = 0;
    goto out;
sqlerr:
    sqlite_err(be->wdb, "mapping a number", err, err_len);
out:
    sqlite3_finalize(st);
    return rc;
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

int sqlite_control_set(struct sqlite_backend *be, struct store_op *op, char *err, size_t err_len)
{
    struct store_op_control *c = &op->u.control;
    sqlite3_stmt *st = NULL;
    const char *sql = c->value ? "INSERT INTO control (key, value, updated_at) VALUES (?1, ?2, ?3) "
                                 "ON CONFLICT (key) DO UPDATE SET value = ?2, updated_at = ?3"
                               : "DELETE FROM control WHERE key = ?1";
    if (sqlite3_prepare_v2(be->wdb, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "control", err, err_len);
        return -1;
    }
    sqlite3_bind_text(st, 1, c->key, -1, SQLITE_STATIC);
    if (c->value) {
        sqlite3_bind_text(st, 2, c->value, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 3, c->at);
    }
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE) {
        sqlite_err(be->wdb, "control", err, err_len);
        return -1;
    }
    if (sqlite_append_op_audit(be, op, err, err_len) < 0)
        return -1;
    c->result = STORE_WRITE_DONE;
    return 0;
}

/* Every running job back to pending (a process starting after another was
 * killed mid-request). */
int sqlite_release(struct sqlite_backend *be, struct store_op_release *op, char *err,
                   size_t err_len)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(be->wdb,
                           "UPDATE jobs SET state = 'pending', lease_until = NULL, "
                           "updated_at = ? WHERE state = 'running'",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "releasing jobs", err, err_len);
        return -1;
    }
    sqlite3_bind_double(st, 1, op->at);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE) {
        sqlite_err(be->wdb, "releasing jobs", err, err_len);
        return -1;
    }
    op->released = sqlite3_changes(be->wdb);
    op->result = STORE_WRITE_DONE;
    return 0;
}

/* Re-plans a rule_failed event: only the first reprocess of it wins. */
int sqlite_replan(struct sqlite_backend *be, struct store_op *op, char *err, size_t err_len)
{
    struct store_op_replan *r = &op->u.replan;
    sqlite3_stmt *st = be->replan;
    sqlite3_bind_text(st, 1, r->status ? r->status : "accepted", -1, SQLITE_STATIC);
    sqlite_bind_text_or_null(st, 2, r->rule_version);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)r->njobs);
    sqlite3_bind_int64(st, 4, r->row);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        sqlite_err(be->wdb, "updating the event", err, err_len);
        return -1;
    }
    if (sqlite3_changes(be->wdb) == 0) {
        r->result = STORE_REPLAN_NOT_RULE_FAILED;
        return 0;
    }
    if (sqlite_append_op_audit(be, op, err, err_len) < 0)
        return -1;
    if (sqlite_insert_jobs(be, r->row, r->source, r->event_id, r->received_at, r->jobs, r->njobs,
                           err, err_len) < 0)
        return -1;
    r->result = STORE_REPLAN_REPLANNED;
    return 0;
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
