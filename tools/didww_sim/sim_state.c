/*
 * sim_state: owns the simulator's resources (DIDs, trunks, trunk groups and the optional
 * read-only side collections) as one jansson document, plus a pristine copy for reset.
 * Loading is strict: unknown top-level keys, dangling references, a DID routed to both a
 * trunk and a trunk group, or a trunk in two groups are refused with a message naming the
 * entry, because a silently "fixed" fixture would make tests lie. Any MHD connection thread
 * may call in; every read or write of the document happens under st->lock, which is never
 * held together with another lock.
 */
#include "sim_state.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sim_state {
    pthread_mutex_t lock;
    json_t *initial; /* as loaded, normalised; the reset target */
    json_t *cur;
};

/* Side collections: accepted so includes can render them, never changed by the API. */
static const char *const state_side_collections[] = {"capacity_pools",
                                                     "shared_capacity_groups",
                                                     "did_groups",
                                                     "orders",
                                                     "address_verifications",
                                                     "pops",
                                                     NULL};

#define STATE_DEFAULT_CREATED_AT "2024-01-02T10:00:00.000Z"
#define STATE_MAX_NUMBER_DIGITS 20

static int state_fail(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int state_fail(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return -1;
}

static bool state_in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* Sets key to a default only when absent; returns -1 on out of memory. */
static int state_default(json_t *obj, const char *key, json_t *value)
{
    if (!value)
        return -1;
    if (json_object_get(obj, key)) {
        json_decref(value);
        return 0;
    }
    return json_object_set_new(obj, key, value);
}

static bool state_is_int_in(json_t *v, long long lo, long long hi)
{
    return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi;
}

static bool state_is_str_or_null(json_t *v)
{
    return json_is_string(v) || json_is_null(v);
}

/* Checks that every element of arr is an object with a unique non-empty string id, and
 * fills index (an object id -> element, borrowed) when given. A jansson object is a hash
 * table: the check is linear in the collection's size (tens of thousands of DIDs load in
 * well under a second; a pairwise comparison took minutes). */
static int state_check_ids(json_t *arr, const char *name, json_t *index, char *err, size_t err_len)
{
    size_t i;
    json_t *e, *seen = index ? json_incref(index) : json_object();
    int rc = 0;
    if (!seen)
        return state_fail(err, err_len, "out of memory");
    if (!json_is_array(arr)) {
        rc = state_fail(err, err_len, "%s must be an array", name);
        goto out;
    }
    json_array_foreach(arr, i, e)
    {
        json_t *id = json_object_get(e, "id");
        if (!json_is_object(e)) {
            rc = state_fail(err, err_len, "%s[%zu] must be an object", name, i);
            goto out;
        }
        if (!json_is_string(id) || json_string_length(id) == 0 || json_string_length(id) > 64) {
            rc = state_fail(err, err_len, "%s[%zu].id must be a string of 1..64 characters", name,
                            i);
            goto out;
        }
        if (json_object_get(seen, json_string_value(id))) {
            rc = state_fail(err, err_len, "%s[%zu].id \"%s\" is used twice", name, i,
                            json_string_value(id));
            goto out;
        }
        if (json_object_set(seen, json_string_value(id), e) < 0) {
            rc = state_fail(err, err_len, "out of memory");
            goto out;
        }
    }
out:
    json_decref(seen);
    return rc;
}

static int state_norm_trunk(json_t *t, size_t i, char *err, size_t err_len)
{
    if (!json_is_string(json_object_get(t, "name")))
        return state_fail(err, err_len, "trunks[%zu].name must be a string", i);
    if (json_object_get(t, "trunk_group") || json_object_get(t, "voice_in_trunk_group"))
        return state_fail(err, err_len,
                          "trunks[%zu]: group membership is set in trunk_groups[].trunks", i);
    if (state_default(t, "priority", json_integer(1)) < 0 ||
        state_default(t, "weight", json_integer(100)) < 0 ||
        state_default(t, "capacity_limit", json_null()) < 0 ||
        state_default(t, "ringing_timeout", json_null()) < 0 ||
        state_default(t, "cli_format", json_string("raw")) < 0 ||
        state_default(t, "cli_prefix", json_null()) < 0 ||
        state_default(t, "description", json_null()) < 0 ||
        state_default(t, "created_at", json_string(STATE_DEFAULT_CREATED_AT)) < 0)
        return state_fail(err, err_len, "out of memory");
    return 0;
}

static int state_norm_group(json_t *doc, json_t *g, size_t i, char *err, size_t err_len)
{
    size_t k;
    json_t *tid;
    if (!json_is_string(json_object_get(g, "name")))
        return state_fail(err, err_len, "trunk_groups[%zu].name must be a string", i);
    if (state_default(g, "capacity_limit", json_null()) < 0 ||
        state_default(g, "created_at", json_string(STATE_DEFAULT_CREATED_AT)) < 0 ||
        state_default(g, "trunks", json_array()) < 0)
        return state_fail(err, err_len, "out of memory");
    json_t *cl = json_object_get(g, "capacity_limit");
    if (!json_is_null(cl) && !state_is_int_in(cl, 0, 32767))
        return state_fail(err, err_len, "trunk_groups[%zu].capacity_limit must be 0..32767 or null",
                          i);
    json_t *trunks = json_object_get(g, "trunks");
    if (!json_is_array(trunks))
        return state_fail(err, err_len, "trunk_groups[%zu].trunks must be an array of trunk ids",
                          i);
    if (json_array_size(trunks) > SIM_GROUP_MAX_TRUNKS)
        return state_fail(err, err_len, "trunk_groups[%zu] has more than %d trunks", i,
                          SIM_GROUP_MAX_TRUNKS);
    json_array_foreach(trunks, k, tid)
    {
        if (!json_is_string(tid) || !sim_state_find(doc, "trunks", json_string_value(tid)))
            return state_fail(err, err_len, "trunk_groups[%zu].trunks[%zu]: unknown trunk id", i,
                              k);
        json_t *owner = sim_state_group_of_trunk(doc, json_string_value(tid));
        if (owner != g)
            return state_fail(err, err_len,
                              "trunk_groups[%zu].trunks[%zu]: trunk \"%s\" is already in group "
                              "\"%s\" (a trunk belongs to one group)",
                              i, k, json_string_value(tid),
                              json_string_value(json_object_get(owner, "id")));
        for (size_t m = 0; m < k; m++)
            if (json_equal(json_array_get(trunks, m), tid))
                return state_fail(err, err_len, "trunk_groups[%zu].trunks lists \"%s\" twice", i,
                                  json_string_value(tid));
    }
    return 0;
}

static int state_norm_did_defaults(json_t *d)
{
    /* The 2017-09-18 flag maps onto billing_cycles_count: 0 means "removed at period end". */
    json_t *pr = json_object_get(d, "pending_removal");
    if (pr && !json_object_get(d, "billing_cycles_count"))
        json_object_set_new(d, "billing_cycles_count",
                            json_is_true(pr) ? json_integer(0) : json_null());
    json_object_del(d, "pending_removal");
    if (state_default(d, "description", json_null()) < 0 ||
        state_default(d, "capacity_limit", json_null()) < 0 ||
        state_default(d, "terminated", json_false()) < 0 ||
        state_default(d, "billing_cycles_count", json_null()) < 0 ||
        state_default(d, "dedicated_channels_count", json_integer(0)) < 0 ||
        state_default(d, "blocked", json_false()) < 0 ||
        state_default(d, "awaiting_registration", json_false()) < 0 ||
        state_default(d, "channels_included_count", json_integer(0)) < 0 ||
        state_default(d, "created_at", json_string(STATE_DEFAULT_CREATED_AT)) < 0 ||
        state_default(d, "expires_at", json_null()) < 0 ||
        state_default(d, "trunk", json_null()) < 0 ||
        state_default(d, "trunk_group", json_null()) < 0 ||
        state_default(d, "capacity_pool", json_null()) < 0 ||
        state_default(d, "shared_capacity_group", json_null()) < 0 ||
        state_default(d, "did_group", json_null()) < 0 ||
        state_default(d, "order", json_null()) < 0 ||
        state_default(d, "address_verification", json_null()) < 0)
        return -1;
    return 0;
}

/* trunks and groups: the id indexes built by state_check_ids (borrowed). */
static int state_norm_did(json_t *trunks, json_t *groups, json_t *d, size_t i, char *err,
                          size_t err_len)
{
    static const char *const bools[] = {"terminated", "blocked", "awaiting_registration", NULL};
    static const char *const refs[] = {"capacity_pool", "shared_capacity_group", "did_group",
                                       "order",         "address_verification",  NULL};
    json_t *num = json_object_get(d, "number");
    if (!json_is_string(num) || json_string_length(num) == 0 ||
        json_string_length(num) > STATE_MAX_NUMBER_DIGITS ||
        strspn(json_string_value(num), "0123456789") != json_string_length(num))
        return state_fail(err, err_len, "dids[%zu].number must be 1..%d digits (no '+')", i,
                          STATE_MAX_NUMBER_DIGITS);
    if (state_norm_did_defaults(d) < 0)
        return state_fail(err, err_len, "out of memory");
    if (!state_is_str_or_null(json_object_get(d, "description")))
        return state_fail(err, err_len, "dids[%zu].description must be a string or null", i);
    json_t *cl = json_object_get(d, "capacity_limit");
    if (!json_is_null(cl) && !state_is_int_in(cl, 0, 32767))
        return state_fail(err, err_len, "dids[%zu].capacity_limit must be 0..32767 or null", i);
    json_t *bc = json_object_get(d, "billing_cycles_count");
    if (!json_is_null(bc) && !state_is_int_in(bc, 0, 999))
        return state_fail(err, err_len, "dids[%zu].billing_cycles_count must be 0..999 or null", i);
    if (!state_is_int_in(json_object_get(d, "dedicated_channels_count"), 0, 32767))
        return state_fail(err, err_len, "dids[%zu].dedicated_channels_count must be 0..32767", i);
    for (size_t k = 0; bools[k]; k++)
        if (!json_is_boolean(json_object_get(d, bools[k])))
            return state_fail(err, err_len, "dids[%zu].%s must be true or false", i, bools[k]);
    for (size_t k = 0; refs[k]; k++)
        if (!state_is_str_or_null(json_object_get(d, refs[k])))
            return state_fail(err, err_len, "dids[%zu].%s must be an id string or null", i,
                              refs[k]);
    json_t *trunk = json_object_get(d, "trunk"), *group = json_object_get(d, "trunk_group");
    if (!state_is_str_or_null(trunk) || !state_is_str_or_null(group))
        return state_fail(err, err_len, "dids[%zu].trunk/trunk_group must be id strings or null",
                          i);
    if (json_is_string(trunk) && !json_object_get(trunks, json_string_value(trunk)))
        return state_fail(err, err_len, "dids[%zu].trunk: unknown trunk \"%s\"", i,
                          json_string_value(trunk));
    if (json_is_string(group) && !json_object_get(groups, json_string_value(group)))
        return state_fail(err, err_len, "dids[%zu].trunk_group: unknown trunk group \"%s\"", i,
                          json_string_value(group));
    if (json_is_string(trunk) && json_is_string(group))
        return state_fail(err, err_len,
                          "dids[%zu] has both a trunk and a trunk group (DIDWW routes a DID to "
                          "one of them)",
                          i);
    return 0;
}

json_t *sim_state_normalize(json_t *in, char *err, size_t err_len)
{
    static const char *const main_collections[] = {"dids", "trunks", "trunk_groups", NULL};
    json_t *doc = NULL, *v, *numbers = json_object();
    json_t *index[3] = {json_object(), json_object(), json_object()}; /* as main_collections */
    const char *key;
    size_t i;
    if (!numbers || !index[0] || !index[1] || !index[2]) {
        state_fail(err, err_len, "out of memory");
        goto fail;
    }
    if (!json_is_object(in)) {
        state_fail(err, err_len, "the state must be a JSON object");
        goto fail;
    }
    json_object_foreach(in, key, v)
    {
        if (!state_in_list(key, main_collections) && !state_in_list(key, state_side_collections)) {
            state_fail(err, err_len, "unknown top-level key \"%s\"", key);
            goto fail;
        }
    }
    doc = json_deep_copy(in);
    if (!doc) {
        state_fail(err, err_len, "out of memory");
        goto fail;
    }
    for (i = 0; main_collections[i]; i++)
        if (state_default(doc, main_collections[i], json_array()) < 0) {
            state_fail(err, err_len, "out of memory");
            goto fail;
        }
    for (i = 0; main_collections[i]; i++)
        if (state_check_ids(json_object_get(doc, main_collections[i]), main_collections[i],
                            index[i], err, err_len) < 0)
            goto fail;
    for (i = 0; state_side_collections[i]; i++) {
        json_t *side = json_object_get(doc, state_side_collections[i]);
        if (side && state_check_ids(side, state_side_collections[i], NULL, err, err_len) < 0)
            goto fail;
    }
    json_array_foreach(json_object_get(doc, "trunks"), i, v)
    {
        if (state_norm_trunk(v, i, err, err_len) < 0)
            goto fail;
    }
    json_array_foreach(json_object_get(doc, "trunk_groups"), i, v)
    {
        if (state_norm_group(doc, v, i, err, err_len) < 0)
            goto fail;
    }
    json_array_foreach(json_object_get(doc, "dids"), i, v)
    {
        if (state_norm_did(index[1], index[2], v, i, err, err_len) < 0)
            goto fail;
        const char *num = json_string_value(json_object_get(v, "number"));
        if (json_object_get(numbers, num)) {
            state_fail(err, err_len, "dids[%zu].number \"%s\" is used twice", i, num);
            goto fail;
        }
        if (json_object_set_new(numbers, num, json_true()) < 0) {
            state_fail(err, err_len, "out of memory");
            goto fail;
        }
    }
    for (i = 0; i < 3; i++)
        json_decref(index[i]);
    json_decref(numbers);
    return doc;
fail:
    for (i = 0; i < 3; i++)
        json_decref(index[i]);
    json_decref(numbers);
    json_decref(doc);
    return NULL;
}

struct sim_state *sim_state_load(const char *path, char *err, size_t err_len)
{
    json_error_t jerr;
    json_t *raw = NULL, *doc = NULL;
    struct sim_state *st = NULL;
    char why[256];
    raw = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!raw) {
        state_fail(err, err_len, "%s:%d: %s", path, jerr.line, jerr.text);
        goto fail;
    }
    doc = sim_state_normalize(raw, why, sizeof why);
    if (!doc) {
        state_fail(err, err_len, "%s: %s", path, why);
        goto fail;
    }
    st = calloc(1, sizeof *st);
    if (!st) {
        state_fail(err, err_len, "out of memory");
        goto fail;
    }
    st->cur = json_deep_copy(doc);
    if (!st->cur) {
        state_fail(err, err_len, "out of memory");
        goto fail;
    }
    pthread_mutex_init(&st->lock, NULL);
    st->initial = doc;
    json_decref(raw);
    return st;
fail:
    free(st);
    json_decref(doc);
    json_decref(raw);
    return NULL;
}

void sim_state_destroy(struct sim_state *st)
{
    if (!st)
        return;
    pthread_mutex_destroy(&st->lock);
    json_decref(st->initial);
    json_decref(st->cur);
    free(st);
}

void sim_state_lock(struct sim_state *st)
{
    pthread_mutex_lock(&st->lock);
}

void sim_state_unlock(struct sim_state *st)
{
    pthread_mutex_unlock(&st->lock);
}

json_t *sim_state_doc(struct sim_state *st)
{
    return st->cur;
}

json_t *sim_state_snapshot(struct sim_state *st)
{
    pthread_mutex_lock(&st->lock);
    json_t *copy = json_deep_copy(st->cur);
    pthread_mutex_unlock(&st->lock);
    return copy;
}

void sim_state_reset(struct sim_state *st)
{
    json_t *copy = json_deep_copy(st->initial);
    if (!copy)
        return; /* out of memory: keep the current state rather than lose it */
    sim_state_replace(st, copy);
}

void sim_state_replace(struct sim_state *st, json_t *doc)
{
    pthread_mutex_lock(&st->lock);
    json_t *old = st->cur;
    st->cur = doc;
    pthread_mutex_unlock(&st->lock);
    json_decref(old);
}

json_t *sim_state_find(json_t *doc, const char *collection, const char *id)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(doc, collection), i, e)
    {
        const char *eid = json_string_value(json_object_get(e, "id"));
        if (eid && strcmp(eid, id) == 0)
            return e;
    }
    return NULL;
}

json_t *sim_state_group_of_trunk(json_t *doc, const char *trunk_id)
{
    size_t i, k;
    json_t *g, *t;
    json_array_foreach(json_object_get(doc, "trunk_groups"), i, g)
    {
        json_array_foreach(json_object_get(g, "trunks"), k, t)
        {
            if (json_is_string(t) && strcmp(json_string_value(t), trunk_id) == 0)
                return g;
        }
    }
    return NULL;
}

void sim_state_set_group_trunks(json_t *doc, json_t *group, json_t *trunk_ids)
{
    size_t i, k;
    json_t *g, *t;
    json_t *fresh = json_array();
    if (!fresh)
        return;
    json_array_foreach(trunk_ids, i, t)
    {
        bool dup = false;
        for (k = 0; k < json_array_size(fresh); k++)
            dup = dup || json_equal(json_array_get(fresh, k), t);
        if (!dup)
            json_array_append(fresh, t);
    }
    /* Take the new members out of any other group first. */
    json_array_foreach(json_object_get(doc, "trunk_groups"), i, g)
    {
        if (g == group)
            continue;
        json_t *members = json_object_get(g, "trunks");
        for (k = json_array_size(members); k-- > 0;) {
            json_t *m = json_array_get(members, k);
            size_t n;
            json_array_foreach(fresh, n, t)
            {
                if (json_equal(m, t)) {
                    json_array_remove(members, k);
                    break;
                }
            }
        }
    }
    json_object_set_new(group, "trunks", fresh);
}
