/*
 * store_verify.c: the one walk over the audit hash chain that `hookline audit
 * verify` and the console's integrity view both run. It starts from the newest
 * retention checkpoint (an audit.pruned record names the last pruned seq and the
 * hash the chain continues from) or from the genesis hash, and checks every
 * later record's hash, seq continuity and stored columns (audit_check and the
 * backend's column check). Read-only; any thread; it never writes or repairs.
 */
#include "store/store.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "audit.h"

struct store_verify_walk {
    struct store_audit_verdict *v;
    char prev[AUDIT_HASH_HEX_LEN + 1];
    int64_t expect_seq;
};

/* The newest audit.pruned record: where the chain continues. */
static int store_verify_checkpoint(const char *text, int64_t seq, void *vctx)
{
    struct store_verify_walk *w = vctx;
    json_t *r = json_loads(text, 0, NULL);
    json_t *d = json_object_get(r, "detail");
    const char *h = json_string_value(json_object_get(d, "continue_hash"));
    json_int_t through = json_integer_value(json_object_get(d, "through_seq"));
    if (h && strlen(h) == AUDIT_HASH_HEX_LEN && through > 0 && through < seq) {
        w->v->pruned = true;
        w->v->pruned_through = through;
        memcpy(w->prev, h, sizeof w->prev);
    }
    json_decref(r);
    return 0;
}

static int store_verify_record(const char *text, int64_t seq, void *vctx)
{
    struct store_verify_walk *w = vctx;
    struct store_audit_verdict *v = w->v;
    char hash[AUDIT_HASH_HEX_LEN + 1];
    if (seq != w->expect_seq) {
        v->result = STORE_VERIFY_BROKEN;
        v->broken_seq = w->expect_seq;
        snprintf(v->why, sizeof v->why,
                 "record %lld is missing (the next stored record is %lld): deleted",
                 (long long)w->expect_seq, (long long)seq);
        return 1;
    }
    if (audit_check(text, seq, w->prev, hash, v->why, sizeof v->why) < 0) {
        v->result = STORE_VERIFY_BROKEN;
        v->broken_seq = seq;
        return 1;
    }
    memcpy(w->prev, hash, sizeof w->prev);
    w->expect_seq = seq + 1;
    v->records++;
    return 0;
}

int store_audit_verify(struct store *st, struct store_audit_verdict *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    struct store_verify_walk w = {.v = out, .expect_seq = 1};
    memcpy(w.prev, AUDIT_GENESIS_HASH, sizeof w.prev);
    struct store_audit_filter pf = {.kind = "audit.pruned", .limit = 1};
    if (store_audit_scan(st, &pf, store_verify_checkpoint, &w, err, err_len) < 0)
        return -1;
    struct store_audit_filter all = {.check_columns = true};
    if (out->pruned) {
        w.expect_seq = out->pruned_through + 1;
        all.after_seq = out->pruned_through;
    }
    if (store_audit_scan(st, &all, store_verify_record, &w, err, err_len) < 0)
        return -1;
    if (out->result == STORE_VERIFY_INTACT && out->records == 0 && w.expect_seq > 1) {
        out->result = STORE_VERIFY_TAIL_MISSING;
        out->missing_from = w.expect_seq;
    }
    return 0;
}
