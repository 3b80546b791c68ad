/*
 * store_apply: the store's operations written once, above the backends. One
 * attempt at a group commit (store_apply_batch) opens a transaction through
 * the backend's primitives (store_int.h), applies each op by its kind's rules
 * and commits; the audit records every kind appends are sealed into the hash
 * chain here (store_audit_append), and retention's checkpoint record is built
 * here. A backend only stores, finds and updates rows. Runs on the store's
 * writer thread only; it never retries (store.c isolates a failed op and
 * calls it again) and never blocks on anything but the backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "store/store_int.h"

/* ---------- the audit chain ---------- */

/* Seals rec (borrowed; seq, prev_hash and hash are set on it) into the chain
 * after the backend's tip and stores it, inside the open transaction. */
static int store_audit_append(struct store_backend *be, json_t *rec, char *err, size_t err_len)
{
    int64_t seq = 0;
    char tip[AUDIT_HASH_HEX_LEN + 1], hash[AUDIT_HASH_HEX_LEN + 1];
    if (be->ops->audit_tip(be, &seq, tip, err, err_len) < 0)
        return -1;
    char *text = audit_seal(rec, seq, tip, hash);
    if (!text) {
        snprintf(err, err_len, "out of memory sealing an audit record");
        return -1;
    }
    return be->ops->audit_insert(be, rec, seq, text, hash, err, err_len);
}

/* Appends op's own records (op->audit, in order). */
static int store_audit_append_op(struct store_backend *be, struct store_op *op, char *err,
                                 size_t err_len)
{
    for (size_t i = 0; i < op->naudit; i++)
        if (store_audit_append(be, op->audit[i], err, err_len) < 0)
            return -1;
    return 0;
}

/* ---------- the domain's records ---------- */

/* event.duplicate for an event found stored already (ev->row: the original).
 * Returns a new reference, or NULL when out of memory. */
static json_t *store_duplicate_record(const struct store_op_event *ev)
{
    json_t *rec = audit_record_new("event.duplicate", ev->source, ev->event_id);
    if (rec)
        json_object_set_new(json_object_get(rec, "detail"), "original_row", json_integer(ev->row));
    return rec;
}

/* A record of kind about job j (job.superseded, ...): job id, DID, number,
 * detail.action. Returns a new reference, or NULL when out of memory. */
static json_t *store_job_record(const char *kind, const struct store_job *j)
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

/* ---------- the operations, kind by kind ---------- */

/* STORE_OP_AUDIT: the op's records. */
static int store_apply_audit(struct store_backend *be, struct store_op *op, char *err,
                             size_t err_len)
{
    if (store_audit_append_op(be, op, err, err_len) < 0)
        return -1;
    op->u.audit.result = STORE_WRITE_DONE;
    return 0;
}

/* STORE_OP_CONTROL: the value, then the op's records. */
static int store_apply_control(struct store_backend *be, struct store_op *op, char *err,
                               size_t err_len)
{
    struct store_op_control *c = &op->u.control;
    if (be->ops->control_set(be, c->key, c->value, c->at, err, err_len) < 0 ||
        store_audit_append_op(be, op, err, err_len) < 0)
        return -1;
    c->result = STORE_WRITE_DONE;
    return 0;
}

/* STORE_OP_RELEASE: released jobs are claimable again. */
static int store_apply_release(struct store_backend *be, struct store_op *op, char *err,
                               size_t err_len)
{
    struct store_op_release *r = &op->u.release;
    r->released = 0;
    if (be->ops->release_running(be, r, &r->released, err, err_len) < 0)
        return -1;
    if (r->released > 0 && be->ops->jobs_claimable)
        be->ops->jobs_claimable(be);
    r->result = STORE_WRITE_DONE;
    return 0;
}

/* STORE_OP_PRUNE: deletes the records older than the cutoff (never the newest)
 * and appends the audit.pruned checkpoint `audit verify` continues from: the
 * last deleted seq and its hash. */
static int store_apply_prune(struct store_backend *be, struct store_op *op, char *err,
                             size_t err_len)
{
    struct store_op_prune *p = &op->u.prune;
    char cutoff[32], continue_hash[AUDIT_HASH_HEX_LEN + 1] = "";
    int64_t through = 0;
    audit_format_time(p->before, cutoff);
    p->deleted = 0;
    int found = be->ops->audit_prune_point(be, cutoff, &through, continue_hash, err, err_len);
    if (found == STORE_PRUNE_POINT_FAILED)
        return -1;
    if (found == STORE_PRUNE_POINT_NONE) {
        p->result = STORE_WRITE_DONE;
        return 0;
    }
    if (strlen(continue_hash) != AUDIT_HASH_HEX_LEN) {
        snprintf(err, err_len, "audit record %lld has no hash", (long long)through);
        return -1;
    }
    if (be->ops->audit_delete_through(be, through, &p->deleted, err, err_len) < 0)
        return -1;
    json_t *rec = audit_record_new("audit.pruned", NULL, NULL);
    if (!rec) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    audit_detail_set_int(rec, "through_seq", (long long)through);
    audit_detail_set_str(rec, "continue_hash", continue_hash);
    audit_detail_set_str(rec, "cutoff", cutoff);
    audit_detail_set_int(rec, "deleted", (long long)p->deleted);
    int rc = store_audit_append(be, rec, err, err_len);
    json_decref(rec);
    if (rc < 0)
        return -1;
    p->result = STORE_WRITE_DONE;
    return 0;
}

/* ---------- jobs ---------- */

/* Inserts jobs[0..njobs) of event event_row, each with its job.queued record.
 * A job naming a DID by a number already resolved joins the DID's key, so
 * one DID has one FIFO whichever way rules name it. */
static int store_insert_jobs(struct store_backend *be, int64_t event_row, const char *source,
                             const char *event_id, double created_at,
                             const struct store_job_spec *jobs, size_t njobs, char *err,
                             size_t err_len)
{
    for (size_t i = 0; i < njobs; i++) {
        const struct store_job_spec *j = &jobs[i];
        char mapped[128], key[160];
        const char *did = j->did, *order_key = j->order_key;
        if (!did && j->number) {
            int known = be->ops->number_did(be, j->number, mapped, sizeof mapped, err, err_len);
            if (known == STORE_NUMBER_FAILED)
                return -1;
            if (known == STORE_NUMBER_KNOWN) {
                did = mapped;
                snprintf(key, sizeof key, "did:%s", mapped);
                order_key = key;
            }
        }
        int64_t id = 0;
        if (be->ops->job_insert(be, event_row, source, event_id, created_at, j, did, order_key, &id,
                                err, err_len) < 0)
            return -1;
        json_t *rec = audit_record_new("job.queued", source, event_id);
        if (!rec) {
            snprintf(err, err_len, "out of memory");
            return -1;
        }
        json_object_set_new(rec, "job_id", json_integer(id));
        if (did)
            json_object_set_new(rec, "did", json_string(did));
        if (j->number)
            json_object_set_new(rec, "number", json_string(j->number));
        audit_detail_set_str(rec, "action", j->action);
        audit_detail_set_str(rec, "method", j->method);
        audit_detail_set_str(rec, "path", j->path);
        int rc = store_audit_append(be, rec, err, err_len);
        json_decref(rec);
        if (rc < 0)
            return -1;
    }
    if (njobs > 0 && be->ops->jobs_claimable)
        be->ops->jobs_claimable(be);
    return 0;
}

/* Coalescing: each pending job of key that a later pending job of the key
 * fully replaces (the latest such) is superseded, with a job.superseded
 * record naming the job that replaces it. */
static int store_coalesce(struct store_backend *be, const char *key, double now,
                          store_supersedes_fn supersedes, char *err, size_t err_len)
{
    struct store_job *jobs = NULL;
    size_t n = 0;
    if (be->ops->jobs_pending_of_key(be, key, &jobs, &n, err, err_len) < 0)
        return -1;
    int rc = -1;
    for (size_t i = 0; i + 1 < n; i++) {
        for (size_t k = n - 1; k > i; k--) {
            if (!supersedes(&jobs[k], &jobs[i]))
                continue;
            int moved =
                be->ops->job_set_state(be, jobs[i].id, "superseded", "pending", now, err, err_len);
            if (moved == STORE_MOVE_FAILED)
                goto out;
            if (moved == STORE_MOVE_MOVED) {
                json_t *rec = store_job_record("job.superseded", &jobs[i]);
                audit_detail_set_int(rec, "superseded_by", (long long)jobs[k].id);
                int arc = rec ? store_audit_append(be, rec, err, err_len) : -1;
                if (!rec)
                    snprintf(err, err_len, "out of memory");
                json_decref(rec);
                if (arc < 0)
                    goto out;
            }
            break;
        }
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++)
        store_job_clear(&jobs[i]);
    free(jobs);
    return rc;
}

/* The most jobs one claim takes. */
#define STORE_CLAIM_MAX 256

/* STORE_OP_CLAIM: the heads of the keys due (FIFO per order key, one running
 * job per key, leases), coalesced first (a key's later pending jobs may
 * supersede its head), then taken under a lease. */
static int store_apply_claim(struct store_backend *be, struct store_op *op, char *err,
                             size_t err_len)
{
    struct store_op_claim *c = &op->u.claim;
    int cap = c->max > 0 ? c->max : 1;
    if (cap > STORE_CLAIM_MAX)
        cap = STORE_CLAIM_MAX;
    /* A batch retried after another op failed runs this again: start clean. */
    for (int i = 0; i < c->n; i++)
        store_job_clear(&c->jobs[i]);
    free(c->jobs);
    c->n = 0;
    c->jobs = calloc((size_t)cap, sizeof *c->jobs);
    struct store_job heads[STORE_CLAIM_MAX];
    int nheads = 0, rc = -1;
    if (!c->jobs) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    if (be->ops->job_heads(be, c->now, cap, heads, &nheads, err, err_len) < 0) {
        nheads = 0;
        goto out;
    }
    for (int i = 0; i < nheads && c->supersedes; i++)
        if (heads[i].order_key &&
            store_coalesce(be, heads[i].order_key, c->now, c->supersedes, err, err_len) < 0)
            goto out;
    for (int i = 0; i < nheads && c->n < cap; i++) {
        int took = be->ops->job_take(be, heads[i].id, c->now + c->lease_s, c->now, &c->jobs[c->n],
                                     err, err_len);
        if (took == STORE_TAKE_FAILED)
            goto out;
        if (took == STORE_TAKE_TAKEN)
            c->n++;
    }
    c->result = c->n > 0 ? STORE_CLAIM_CLAIMED : STORE_CLAIM_NONE;
    rc = 0;
out:
    for (int i = 0; i < nheads; i++)
        store_job_clear(&heads[i]);
    if (rc < 0) {
        for (int i = 0; i < c->n; i++)
            store_job_clear(&c->jobs[i]);
        free(c->jobs);
        c->jobs = NULL;
        c->n = 0;
    }
    return rc;
}

/* STORE_OP_JOB: the new state, and the op's records when it moved. A job
 * leaving running or pending (done, dead, cancelled, superseded, or back to
 * pending for a retry, due now or later) may make a job claimable: itself, or
 * the next one of its key. */
static int store_apply_job(struct store_backend *be, struct store_op *op, char *err, size_t err_len)
{
    struct store_op_job *j = &op->u.job;
    int r = be->ops->job_update(be, j, err, err_len);
    if (r < 0)
        return -1;
    j->result = (enum store_job_result)r;
    if (j->result != STORE_JOB_MOVED)
        return 0;
    if (store_audit_append_op(be, op, err, err_len) < 0)
        return -1;
    if (strcmp(j->state, "running") != 0 && be->ops->jobs_claimable)
        be->ops->jobs_claimable(be);
    return 0;
}

/* STORE_OP_MAP_NUMBER: remembered, and every unfinished job keyed by the
 * number joins the DID's key; the job being delivered waits its turn behind
 * an earlier job of the DID. */
static int store_apply_map_number(struct store_backend *be, struct store_op *op, char *err,
                                  size_t err_len)
{
    struct store_op_map_number *m = &op->u.map_number;
    char numkey[64], didkey[160];
    snprintf(numkey, sizeof numkey, "number:%s", m->number);
    snprintf(didkey, sizeof didkey, "did:%s", m->did);
    if (be->ops->number_remember(be, m->number, m->did, m->at, err, err_len) < 0 ||
        be->ops->jobs_rekey(be, numkey, didkey, m->did, err, err_len) < 0)
        return -1;
    m->result = STORE_MAP_MAPPED;
    if (m->job_id > 0) {
        int waits = be->ops->job_wait_behind(be, m->job_id, didkey, err, err_len);
        if (waits == STORE_MOVE_FAILED)
            return -1;
        if (waits == STORE_MOVE_MOVED)
            m->result = STORE_MAP_MUST_WAIT;
    }
    return 0;
}

/* ---------- events ---------- */

/* The most events handed to insert_events at once. */
#define STORE_EVENTS_PER_CALL 256

/* What follows an event's insert: its records and jobs, or event.duplicate. */
static int store_event_finish(struct store_backend *be, struct store_op *op, char *err,
                              size_t err_len)
{
    struct store_op_event *ev = &op->u.event;
    if (ev->result == STORE_EVENT_DUPLICATE) {
        json_t *rec = store_duplicate_record(ev);
        if (!rec) {
            snprintf(err, err_len, "out of memory");
            return -1;
        }
        int rc = store_audit_append(be, rec, err, err_len);
        json_decref(rec);
        return rc;
    }
    if (store_audit_append_op(be, op, err, err_len) < 0)
        return -1;
    return store_insert_jobs(be, ev->row, ev->source, ev->event_id, ev->received_at, ev->jobs,
                             ev->njobs, err, err_len);
}

/* STORE_OP_REPLAN: only the first reprocess of a rule_failed event wins. */
static int store_apply_replan(struct store_backend *be, struct store_op *op, char *err,
                              size_t err_len)
{
    struct store_op_replan *rp = &op->u.replan;
    int r = be->ops->event_replan(be, rp->row, rp->status ? rp->status : "accepted",
                                  rp->rule_version, rp->njobs, err, err_len);
    if (r < 0)
        return -1;
    if (r != STORE_REPLAN_REPLANNED) {
        rp->result = STORE_REPLAN_NOT_RULE_FAILED;
        return 0;
    }
    if (store_audit_append_op(be, op, err, err_len) < 0 ||
        store_insert_jobs(be, rp->row, rp->source, rp->event_id, rp->received_at, rp->jobs,
                          rp->njobs, err, err_len) < 0)
        return -1;
    rp->result = STORE_REPLAN_REPLANNED;
    return 0;
}

/* Applies one op (not an event: those go in runs) inside the open transaction. */
static int store_apply_op(struct store_backend *be, struct store_op *op, char *err, size_t err_len)
{
    switch (op->kind) {
    case STORE_OP_EVENT:
        break;
    case STORE_OP_AUDIT:
        return store_apply_audit(be, op, err, err_len);
    case STORE_OP_REPLAN:
        return store_apply_replan(be, op, err, err_len);
    case STORE_OP_CLAIM:
        return store_apply_claim(be, op, err, err_len);
    case STORE_OP_JOB:
        return store_apply_job(be, op, err, err_len);
    case STORE_OP_CONTROL:
        return store_apply_control(be, op, err, err_len);
    case STORE_OP_PRUNE:
        return store_apply_prune(be, op, err, err_len);
    case STORE_OP_RELEASE:
        return store_apply_release(be, op, err, err_len);
    case STORE_OP_MAP_NUMBER:
        return store_apply_map_number(be, op, err, err_len);
    }
    snprintf(err, err_len, "unknown store operation %d", (int)op->kind);
    return -1;
}

/* ---------- one attempt at a group commit ---------- */

int store_apply_batch(struct store_backend *be, struct store_op **ops, size_t n, size_t *bad,
                      char *err, size_t err_len)
{
    const struct store_backend_ops *o = be->ops;
    if (o->begin(be, err, err_len) < 0)
        return -1;
    for (size_t i = 0; i < n;) {
        if (store_op_failed(ops[i])) {
            i++;
            continue;
        }
        if (ops[i]->kind != STORE_OP_EVENT) {
            if (store_apply_op(be, ops[i], ops[i]->error, sizeof ops[i]->error) < 0) {
                *bad = i;
                goto op_failed;
            }
            i++;
            continue;
        }
        /* A run of events: inserted together, then each one's records and jobs
         * in order (the chain's order is the batch's). */
        struct store_op *run[STORE_EVENTS_PER_CALL];
        size_t at[STORE_EVENTS_PER_CALL], nrun = 0, failed = 0;
        for (; i < n && nrun < STORE_EVENTS_PER_CALL; i++) {
            if (store_op_failed(ops[i]))
                continue;
            if (ops[i]->kind != STORE_OP_EVENT)
                break;
            at[nrun] = i;
            run[nrun++] = ops[i];
        }
        if (o->insert_events(be, run, nrun, &failed, err, err_len) < 0) {
            if (failed >= nrun) {
                (void)o->rollback(be, err);
                return -1;
            }
            *bad = at[failed];
            goto op_failed;
        }
        for (size_t k = 0; k < nrun; k++)
            if (store_event_finish(be, run[k], run[k]->error, sizeof run[k]->error) < 0) {
                *bad = at[k];
                goto op_failed;
            }
    }
    int rc = o->commit(be, err, err_len);
    if (rc == STORE_COMMIT_FAILED)
        return -1;
    return rc == STORE_COMMIT_CLEAN ? STORE_BATCH_CLEAN : 0;
op_failed:
    /* An op that failed alone, unless the connection went with it. */
    if (o->rollback(be, ops[*bad]->error) == STORE_ROLLBACK_DONE)
        return STORE_BATCH_OP_FAILED;
    snprintf(err, err_len, "%s", ops[*bad]->error);
    ops[*bad]->error[0] = '\0';
    return -1;
}
