/*
 * dedupe: an open-addressing (linear probing) hash table of key fingerprints
 * (see dedupe.h). Entries are never deleted one by one: when the table is 70%
 * full it is rebuilt without the expired entries, grown when still crowded, and
 * at max_keys the oldest eighth goes (exactly that many, whatever the ties). Every operation is
 * amortised O(1); a rebuild is O(capacity) and briefly holds both tables.
 */
#include "dedupe.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bloom.h"

struct dedupe_slot {
    uint64_t fp; /* 0: empty */
    int64_t row;
    double at;
};

struct dedupe {
    struct dedupe_slot *slots;
    size_t cap; /* power of two */
    size_t count;
    size_t max_keys;
};

#define DEDUPE_MIN_CAP 1024

static size_t dedupe_cap_for(size_t keys)
{
    size_t cap = DEDUPE_MIN_CAP;
    while (cap / 10 * 7 < keys)
        cap *= 2;
    return cap;
}

struct dedupe *dedupe_create(size_t max_keys)
{
    struct dedupe *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->max_keys = max_keys < 16 ? 16 : max_keys;
    d->cap = DEDUPE_MIN_CAP;
    d->slots = calloc(d->cap, sizeof *d->slots);
    if (!d->slots) {
        free(d);
        return NULL;
    }
    return d;
}

void dedupe_destroy(struct dedupe *d)
{
    if (!d)
        return;
    free(d->slots);
    free(d);
}

uint64_t dedupe_fingerprint(const char *source, const char *event_id)
{
    /* Stored in events.key_fp: an on-disk format, pinned by test_dedupe. The
     * two hashes are combined order-sensitively, so ("ab","c") and ("a","bc")
     * differ, then mixed again. */
    uint64_t a = bloom_hash(source, strlen(source));
    uint64_t b = bloom_hash(event_id, strlen(event_id));
    uint64_t h = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h ? h : 1;
}

static void dedupe_put(struct dedupe_slot *slots, size_t cap, const struct dedupe_slot *e)
{
    size_t i = (size_t)e->fp & (cap - 1);
    while (slots[i].fp)
        i = (i + 1) & (cap - 1);
    slots[i] = *e;
}

size_t dedupe_find(const struct dedupe *d, uint64_t fp, int64_t *rows, size_t max)
{
    size_t n = 0;
    for (size_t i = (size_t)fp & (d->cap - 1); d->slots[i].fp; i = (i + 1) & (d->cap - 1)) {
        if (d->slots[i].fp != fp)
            continue;
        /* Keep rows newest (largest) first: insertion sort into the small output. */
        int64_t r = d->slots[i].row;
        if (n < max) {
            size_t j = n;
            while (j > 0 && rows[j - 1] < r) {
                rows[j] = rows[j - 1];
                j--;
            }
            rows[j] = r;
        } else if (max > 0 && r > rows[max - 1]) {
            size_t j = max - 1;
            while (j > 0 && rows[j - 1] < r) {
                rows[j] = rows[j - 1];
                j--;
            }
            rows[j] = r;
        }
        n++;
    }
    return n;
}

static int dedupe_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Rebuilds into a table of new_cap keeping entries with at >= keep_from. With
 * evict > 0, the `evict` oldest of those are dropped too (ties broken by slot
 * order). Returns how many were evicted early, or -1 (d unchanged). */
static long dedupe_rebuild(struct dedupe *d, size_t new_cap, double keep_from, size_t evict)
{
    double cut = 0;
    size_t below = 0; /* live entries strictly older than cut */
    if (evict > 0) {
        size_t live = 0;
        double *ats = malloc(d->count * sizeof *ats);
        if (!ats)
            return -1;
        for (size_t i = 0; i < d->cap; i++)
            if (d->slots[i].fp && d->slots[i].at >= keep_from)
                ats[live++] = d->slots[i].at;
        if (evict > live)
            evict = live;
        if (evict > 0) {
            qsort(ats, live, sizeof *ats, dedupe_cmp_double);
            cut = ats[evict - 1];
            while (below < live && ats[below] < cut)
                below++;
        }
        free(ats);
    }
    struct dedupe_slot *ns = calloc(new_cap, sizeof *ns);
    if (!ns)
        return -1;
    size_t kept = 0, ties = evict > below ? evict - below : 0;
    long evicted = 0;
    for (size_t i = 0; i < d->cap; i++) {
        const struct dedupe_slot *e = &d->slots[i];
        if (!e->fp || e->at < keep_from)
            continue;
        if (evict > 0 && (e->at < cut || (e->at == cut && ties > 0))) {
            if (e->at == cut)
                ties--;
            evicted++;
            continue;
        }
        dedupe_put(ns, new_cap, e);
        kept++;
    }
    free(d->slots);
    d->slots = ns;
    d->cap = new_cap;
    d->count = kept;
    return evicted;
}

long dedupe_add(struct dedupe *d, uint64_t fp, int64_t row, double at, double expire_before)
{
    long evicted = 0;
    if (fp == 0)
        fp = 1;
    if (d->count + 1 > d->cap / 10 * 7 || d->count + 1 > d->max_keys) {
        size_t live = 0;
        for (size_t i = 0; i < d->cap; i++)
            if (d->slots[i].fp && d->slots[i].at >= expire_before)
                live++;
        size_t evict = live + 1 > d->max_keys ? live / 8 + 1 : 0;
        size_t keys = live - evict + 1;
        size_t want = dedupe_cap_for(keys * 2 < d->max_keys ? keys * 2 : d->max_keys);
        evicted = dedupe_rebuild(d, want, expire_before, evict);
        if (evicted < 0)
            return -1;
    }
    struct dedupe_slot e = {.fp = fp, .row = row, .at = at};
    dedupe_put(d->slots, d->cap, &e);
    d->count++;
    return evicted;
}

void dedupe_expire(struct dedupe *d, double before)
{
    size_t live = 0;
    for (size_t i = 0; i < d->cap; i++)
        if (d->slots[i].fp && d->slots[i].at >= before)
            live++;
    if (live == d->count)
        return;
    (void)dedupe_rebuild(d, dedupe_cap_for(live * 2), before, 0);
}

size_t dedupe_count(const struct dedupe *d)
{
    return d->count;
}

double dedupe_oldest(const struct dedupe *d)
{
    double oldest = 0;
    bool any = false;
    for (size_t i = 0; i < d->cap; i++)
        if (d->slots[i].fp && (!any || d->slots[i].at < oldest)) {
            oldest = d->slots[i].at;
            any = true;
        }
    return oldest;
}
