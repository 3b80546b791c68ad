/*
 * didww_prefetch: the shared cache of DID states read in batches (see the header).
 * States live in a JSON object keyed by DID id ({"state": ..., "at": seconds}); numbers
 * in another keyed by digits without "+" ({"id": id or null, "at": seconds}). Paging
 * follows meta.total_records (else links.next), bounded by the pages n values can fill.
 * One mutex guards both; entries older than max_age_s are pruned on each answer.
 */
#include "didww_prefetch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonapi.h"

struct didww_prefetch {
    pthread_mutex_t lock; /* guards by_id and by_number; never held across a request */
    double max_age_s;
    json_t *by_id;
    json_t *by_number;
};

static const char *didww_prefetch_digits(const char *s)
{
    return s && *s == '+' ? s + 1 : s;
}

struct didww_prefetch *didww_prefetch_create(double max_age_s)
{
    struct didww_prefetch *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    p->max_age_s = max_age_s;
    p->by_id = json_object();
    p->by_number = json_object();
    if (!p->by_id || !p->by_number) {
        didww_prefetch_destroy(p);
        return NULL;
    }
    return p;
}

void didww_prefetch_clear(struct didww_prefetch *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    json_object_clear(p->by_id);
    json_object_clear(p->by_number);
    pthread_mutex_unlock(&p->lock);
}

/* Drops the entries of set older than max_age_s at now; p->lock held. */
static void didww_prefetch_prune(struct didww_prefetch *p, json_t *set, double now)
{
    const char *key;
    json_t *e, *tmp;
    json_object_foreach_safe(set, tmp, key, e)
    {
        if (now - json_real_value(json_object_get(e, "at")) > p->max_age_s)
            json_object_del(set, key);
    }
}

bool didww_prefetch_path(const char *filter, const char *const *values, size_t n,
                         const char *include, int page_size, int page, char *out, size_t out_len)
{
    size_t o = 0;
    int w = snprintf(out, out_len, "/v3/dids?filter[%s]=", filter);
    if (w < 0 || (size_t)w >= out_len)
        return false;
    o = (size_t)w;
    for (size_t i = 0; i < n; i++) {
        w = snprintf(out + o, out_len - o, "%s%s", i ? "," : "", values[i]);
        if (w < 0 || (size_t)w >= out_len - o)
            return false;
        o += (size_t)w;
    }
    if (include && *include) {
        w = snprintf(out + o, out_len - o, "&include=%s", include);
        if (w < 0 || (size_t)w >= out_len - o)
            return false;
        o += (size_t)w;
    }
    w = snprintf(out + o, out_len - o, "&page[size]=%d&page[number]=%d", page_size, page);
    return w >= 0 && (size_t)w < out_len - o;
}

int didww_prefetch_add(struct didww_prefetch *p, const char *body, size_t len, double at)
{
    char why[200];
    json_t *states = jsonapi_did_list_states(body, len, NULL, why, sizeof why);
    if (!states)
        return -1;
    size_t i;
    json_t *st;
    pthread_mutex_lock(&p->lock);
    didww_prefetch_prune(p, p->by_id, at);
    didww_prefetch_prune(p, p->by_number, at);
    json_array_foreach(states, i, st)
    {
        const char *id = json_string_value(json_object_get(st, "id"));
        const char *number = json_string_value(json_object_get(st, "number"));
        json_object_set_new(p->by_id, id, json_pack("{s:O, s:f}", "state", st, "at", at));
        if (number)
            json_object_set_new(p->by_number, didww_prefetch_digits(number),
                                json_pack("{s:s, s:f}", "id", id, "at", at));
    }
    pthread_mutex_unlock(&p->lock);
    int n = (int)json_array_size(states);
    json_decref(states);
    return n;
}

void didww_prefetch_mark_absent(struct didww_prefetch *p, const char *number, double at)
{
    const char *digits = didww_prefetch_digits(number);
    pthread_mutex_lock(&p->lock);
    json_t *e = json_object_get(p->by_number, digits);
    /* An entry fetched now (this answer named the DID) wins over "absent". */
    if (!e || json_real_value(json_object_get(e, "at")) < at)
        json_object_set_new(p->by_number, digits, json_pack("{s:n, s:f}", "id", "at", at));
    pthread_mutex_unlock(&p->lock);
}

int didww_prefetch_fetch(struct didww_prefetch *p, const char *filter, const char *const *values,
                         size_t n, const char *include, int page_size, double now,
                         didww_prefetch_send_fn send, void *ctx, struct didww_response *failed)
{
    char path[8192];
    int sent = 0;
    if (page_size < 1 || page_size > DIDWW_PREFETCH_PAGE_MAX)
        page_size = DIDWW_PREFETCH_PAGE_MAX;
    memset(failed, 0, sizeof *failed);
    int max_pages = (int)(n / (size_t)page_size) + 2;
    for (int page = 1; page <= max_pages; page++) {
        if (!didww_prefetch_path(filter, values, n, include, page_size, page, path, sizeof path)) {
            snprintf(failed->error, sizeof failed->error, "list path too long");
            return -1;
        }
        struct didww_response resp;
        int rc = send(ctx, path, &resp);
        if (rc == DIDWW_PREFETCH_STOPPED)
            return DIDWW_PREFETCH_STOPPED;
        sent++;
        if (resp.status != 200) {
            *failed = resp;
            return -1;
        }
        long total = -1;
        char why[200];
        json_t *states = jsonapi_did_list_states(resp.body, resp.body_len, &total, why, sizeof why);
        size_t got = states ? json_array_size(states) : 0;
        json_decref(states);
        json_t *doc = resp.body ? json_loadb(resp.body, resp.body_len, 0, NULL) : NULL;
        bool has_next = json_is_string(json_object_get(json_object_get(doc, "links"), "next"));
        json_decref(doc);
        if (!states || didww_prefetch_add(p, resp.body, resp.body_len, now) < 0) {
            *failed = resp;
            failed->status = 0;
            snprintf(failed->error, sizeof failed->error, "unreadable DID list: %s", why);
            return -1;
        }
        didww_response_free(&resp);
        bool more = total >= 0 ? (long)page * page_size < total : has_next;
        if (!more || got == 0) {
            if (strcmp(filter, "number") == 0)
                for (size_t i = 0; i < n; i++)
                    didww_prefetch_mark_absent(p, values[i], now);
            return sent;
        }
    }
    /* More pages than n values can fill: the answer is not what was asked; what was
     * read stays, the rest is read singly. */
    return sent;
}

json_t *didww_prefetch_take(struct didww_prefetch *p, const char *id, double now)
{
    if (!id)
        return NULL;
    pthread_mutex_lock(&p->lock);
    json_t *e = json_object_get(p->by_id, id);
    double at = e ? json_real_value(json_object_get(e, "at")) : 0;
    json_t *state = e ? json_incref(json_object_get(e, "state")) : NULL;
    if (e)
        json_object_del(p->by_id, id);
    pthread_mutex_unlock(&p->lock);
    if (!state || now - at > p->max_age_s) {
        json_decref(state);
        return NULL;
    }
    return state;
}

int didww_prefetch_number(struct didww_prefetch *p, const char *number, double now, char *did,
                          size_t did_len)
{
    if (!number)
        return -1;
    int rc = -1;
    pthread_mutex_lock(&p->lock);
    json_t *e = json_object_get(p->by_number, didww_prefetch_digits(number));
    if (e && now - json_real_value(json_object_get(e, "at")) <= p->max_age_s) {
        const char *id = json_string_value(json_object_get(e, "id"));
        if (!id)
            rc = 0;
        else if (strlen(id) < did_len) {
            snprintf(did, did_len, "%s", id);
            rc = 1;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void didww_prefetch_destroy(struct didww_prefetch *p)
{
    if (!p)
        return;
    json_decref(p->by_id);
    json_decref(p->by_number);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
