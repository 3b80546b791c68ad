/*
 * sqlite_events: events in SQLite and the SQLite-only machinery around them:
 * the in-memory dedupe set (dedupe.c) the writer dedupes against without a
 * random-key index, the per-block key lists it is loaded from at start, and the
 * per-block Bloom filters (bloom.c) behind queries by event id, for events and
 * audit records alike. Inserts, the set and the blocks belong to the writer
 * thread; event queries run on the reader connection under rlock. A fingerprint
 * match is only a candidate: it is confirmed against the row, never trusted.
 */
#include "sqlite_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bloom.h"
#include "dedupe.h"
#include "log.h"

/* A block's dedupe keys: SQLITE_BLOOM_BLOCK entries, entry i for row id
 * block * SQLITE_BLOOM_BLOCK + 1 + i, each the row's dedupe_fingerprint and
 * the bits of its received_at double, both little-endian 64-bit (an on-disk
 * format: the same on every machine). A missing row leaves zeros: time 0 is
 * older than any window. */
#define SQLITE_KEYS_ENTRY 16
#define SQLITE_KEYS_BYTES (SQLITE_BLOOM_BLOCK * SQLITE_KEYS_ENTRY)

static void sqlite_le64_put(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t sqlite_le64_get(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void sqlite_keys_put(unsigned char *keys, size_t i, uint64_t fp, double at)
{
    uint64_t bits;
    memcpy(&bits, &at, sizeof bits);
    sqlite_le64_put(keys + i * SQLITE_KEYS_ENTRY, fp);
    sqlite_le64_put(keys + i * SQLITE_KEYS_ENTRY + 8, bits);
}

static void sqlite_keys_get(const unsigned char *keys, size_t i, uint64_t *fp, double *at)
{
    uint64_t bits = sqlite_le64_get(keys + i * SQLITE_KEYS_ENTRY + 8);
    *fp = sqlite_le64_get(keys + i * SQLITE_KEYS_ENTRY);
    memcpy(at, &bits, sizeof *at);
}

/* Stores the Bloom filter of the event ids of complete block `block` of one
 * table (rows block * SQLITE_BLOOM_BLOCK + 1 ..). A block without event ids gets
 * no row: a query treats a missing block like a filter that matches nothing.
 * Writer thread, inside a transaction. */
int sqlite_bloom_build(struct sqlite_backend *be, struct sqlite_blooms *bs, int64_t block,
                       char *err, size_t err_len)
{
    int64_t first = block * SQLITE_BLOOM_BLOCK + 1, last = (block + 1) * SQLITE_BLOOM_BLOCK;
    unsigned char *bits = calloc(1, SQLITE_BLOOM_BYTES);
    unsigned char *keyblob = bs->with_keys ? calloc(1, SQLITE_KEYS_BYTES) : NULL;
    char what[64];
    if (!bits || (bs->with_keys && !keyblob)) {
        snprintf(err, err_len, "out of memory building an %s block filter", bs->what);
        return -1;
    }
    int rc = -1;
    size_t keys = 0;
    sqlite3_stmt *st = bs->sel_ids;
    sqlite3_bind_int64(st, 1, first);
    sqlite3_bind_int64(st, 2, last);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const void *id = sqlite3_column_text(st, 0);
        bloom_add(bits, SQLITE_BLOOM_BYTES, bloom_hash(id, (size_t)sqlite3_column_bytes(st, 0)),
                  SQLITE_BLOOM_PROBES);
        keys++;
        int64_t row = bs->with_keys ? sqlite3_column_int64(st, 1) : 0;
        if (bs->with_keys && row >= first && row <= last) {
            /* An event stored before schema 7 has no fingerprint column value. */
            uint64_t fp =
                sqlite3_column_type(st, 3) == SQLITE_NULL
                    ? dedupe_fingerprint((const char *)sqlite3_column_text(st, 4), (const char *)id)
                    : (uint64_t)sqlite3_column_int64(st, 3);
            sqlite_keys_put(keyblob, (size_t)(row - first), fp, sqlite3_column_double(st, 2));
        }
    }
    sqlite3_reset(st);
    if (s != SQLITE_DONE) {
        snprintf(what, sizeof what, "reading an %s block", bs->what);
        sqlite_err(be->wdb, what, err, err_len);
        goto out;
    }
    if (keys > 0) {
        st = bs->ins;
        sqlite3_bind_int64(st, 1, block);
        sqlite3_bind_int64(st, 2, first);
        sqlite3_bind_int64(st, 3, last);
        sqlite3_bind_int(st, 4, BLOOM_SCHEME);
        sqlite3_bind_blob(st, 5, bits, SQLITE_BLOOM_BYTES, SQLITE_STATIC);
        if (bs->with_keys)
            sqlite3_bind_blob(st, 6, keyblob, SQLITE_KEYS_BYTES, SQLITE_STATIC);
        s = sqlite3_step(st);
        sqlite3_reset(st);
        if (s != SQLITE_DONE) {
            snprintf(what, sizeof what, "storing an %s block filter", bs->what);
            sqlite_err(be->wdb, what, err, err_len);
            goto out;
        }
    }
    rc = 0;
out:
    free(bits);
    free(keyblob);
    return rc;
}

/* Builds the filters of complete blocks of one table that have none yet (rows
 * written before the filters existed, or blocks left empty). Writer, at open;
 * logs what took more than a moment. */
int sqlite_bloom_backfill(struct sqlite_backend *be, struct sqlite_blooms *bs, char *err,
                          size_t err_len)
{
    int64_t max_row = 0, from = 0;
    char what[64];
    snprintf(what, sizeof what, "reading the %s block filters", bs->what);
    if (sqlite_query_int64(be->wdb, bs->max_row_sql, &max_row, what, err, err_len) < 0 ||
        sqlite_query_int64(be->wdb, bs->next_block_sql, &from, what, err, err_len) < 0)
        return -1;
    int64_t complete = max_row / SQLITE_BLOOM_BLOCK; /* blocks 0..complete-1 */
    if (from >= complete)
        return 0;
    double started = sqlite_wall_now();
    if (sqlite_exec(be->wdb, "BEGIN IMMEDIATE", err, err_len) < 0)
        return -1;
    for (int64_t b = from; b < complete; b++)
        if (sqlite_bloom_build(be, bs, b, err, err_len) < 0) {
            sqlite3_exec(be->wdb, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    if (sqlite_exec(be->wdb, "COMMIT", err, err_len) < 0)
        return -1;
    double took = sqlite_wall_now() - started;
    if (took >= 1.0) {
        char blocks[32], secs[32];
        snprintf(blocks, sizeof blocks, "%lld", (long long)(complete - from));
        snprintf(secs, sizeof secs, "%.1f", took);
        log_write(LOG_INFO, "block filters built for rows stored before they existed",
                  (const char *[]){"table", bs->what, "blocks", blocks, "seconds", secs, NULL});
    }
    return 0;
}

/* Adds one stored event to the dedupe set, noting keys evicted before expiry. */
void sqlite_dedupe_add(struct sqlite_backend *be, uint64_t fp, int64_t row, double at,
                       double cutoff)
{
    long evicted = dedupe_add(be->dd, fp, row, at, cutoff);
    if (evicted < 0) {
        log_error("store: out of memory in the dedupe set");
        abort(); /* the project's OOM policy: see README */
    }
    if (evicted > 0) {
        atomic_fetch_add(&be->dd_evicted, (uint64_t)evicted);
        char n[32], max[32];
        snprintf(n, sizeof n, "%ld", evicted);
        snprintf(max, sizeof max, "%zu", be->dd_max_keys);
        log_write(LOG_WARN,
                  "dedupe set full: the oldest event keys were dropped before their window "
                  "ended (raise store.dedupe_max_keys)",
                  (const char *[]){"dropped", n, "dedupe_max_keys", max, NULL});
    }
    if (row > be->dd_max_row)
        be->dd_max_row = row;
}

/* The state of one dedupe load: entries are offered newest first. */
struct sqlite_load {
    double cutoff;
    size_t n, old_run;
    bool done;
};

/* Offers one event to the load; sets l->done when the load should stop. */
static void sqlite_load_offer(struct sqlite_backend *be, struct sqlite_load *l, int64_t row,
                              double at, uint64_t fp)
{
    /* Rows are in arrival order, so the first one older than the window
     * usually ends the load; but a clock stepped back can stamp a few rows
     * too old, so only a long run of them does. */
    if (at < l->cutoff) {
        if (++l->old_run >= SQLITE_DEDUPE_OLD_RUN)
            l->done = true;
        return;
    }
    l->old_run = 0;
    sqlite_dedupe_add(be, fp, row, at, l->cutoff);
    if (++l->n >= be->dd_max_keys)
        l->done = true;
}

/* Offers the events of rows lo..hi (newest first) read from the events table:
 * the incomplete newest block, or a complete block whose keys are missing. */
static int sqlite_load_rows(struct sqlite_backend *be, struct sqlite_load *l, int64_t lo,
                            int64_t hi, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(be->wdb,
                           "SELECT id, received_at, key_fp, source, event_id FROM events "
                           "WHERE id BETWEEN ? AND ? ORDER BY id DESC",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "loading the dedupe set", err, err_len);
        return -1;
    }
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    int s = SQLITE_DONE; /* l->done may stop the loop before a step */
    while (!l->done && (s = sqlite3_step(st)) == SQLITE_ROW) {
        /* An event stored before schema 7 has no fingerprint column value. */
        uint64_t fp = sqlite3_column_type(st, 2) == SQLITE_NULL
                          ? dedupe_fingerprint((const char *)sqlite3_column_text(st, 3),
                                               (const char *)sqlite3_column_text(st, 4))
                          : (uint64_t)sqlite3_column_int64(st, 2);
        sqlite_load_offer(be, l, sqlite3_column_int64(st, 0), sqlite3_column_double(st, 1), fp);
    }
    bool ok = l->done || s == SQLITE_DONE;
    if (!ok)
        sqlite_err(be->wdb, "loading the dedupe set", err, err_len);
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

/* Loads the dedupe set from the events received inside the window, newest
 * first, at most dd_max_keys of them: the incomplete newest block from the
 * events table, then each complete block's keys from event_id_blooms (16
 * bytes an event, no event rows read). Writer thread, inside a transaction. */
int sqlite_dedupe_load(struct sqlite_backend *be, char *err, size_t err_len)
{
    if (!be->dd)
        be->dd = dedupe_create(be->dd_max_keys);
    if (!be->dd) {
        snprintf(err, err_len, "out of memory for the dedupe set");
        return -1;
    }
    sqlite3_stmt *st = NULL;
    int64_t newest = 0;
    struct sqlite_load l = {.cutoff = sqlite_wall_now() - be->dd_window_s};
    int rc = -1;
    if (sqlite_query_int64(be->wdb, "SELECT coalesce(max(id), 0) FROM events", &newest,
                           "loading the dedupe set", err, err_len) < 0)
        goto out;
    int64_t complete = newest / SQLITE_BLOOM_BLOCK; /* blocks 0..complete-1 */
    if (sqlite_load_rows(be, &l, complete * SQLITE_BLOOM_BLOCK + 1, newest, err, err_len) < 0)
        goto out;
    if (sqlite3_prepare_v2(be->wdb, "SELECT keys FROM event_id_blooms WHERE block = ?", -1, &st,
                           NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "loading the dedupe set", err, err_len);
        goto out;
    }
    for (int64_t b = complete - 1; b >= 0 && !l.done; b--) {
        int64_t first = b * SQLITE_BLOOM_BLOCK + 1;
        sqlite3_bind_int64(st, 1, b);
        int s = sqlite3_step(st);
        const unsigned char *keys = s == SQLITE_ROW ? sqlite3_column_blob(st, 0) : NULL;
        if (s != SQLITE_ROW && s != SQLITE_DONE) {
            sqlite_err(be->wdb, "loading the dedupe set", err, err_len);
            goto out;
        }
        if (keys && sqlite3_column_bytes(st, 0) == SQLITE_KEYS_BYTES) {
            for (size_t i = SQLITE_BLOOM_BLOCK; i-- > 0 && !l.done;) {
                uint64_t fp;
                double at;
                sqlite_keys_get(keys, i, &fp, &at);
                sqlite_load_offer(be, &l, first + (int64_t)i, at, fp);
            }
        } else if (sqlite_load_rows(be, &l, first, first + SQLITE_BLOOM_BLOCK - 1, err, err_len) <
                   0) { /* no keys for this block: read its rows */
            goto out;
        }
        sqlite3_reset(st);
    }
    be->dd_max_row = newest;
    be->dd_loaded = true;
    atomic_store(&be->dd_keys, (uint64_t)dedupe_count(be->dd));
    rc = 0;
out:
    sqlite3_finalize(st);
    if (rc < 0) {
        dedupe_destroy(be->dd); /* partly loaded: start again next time */
        be->dd = NULL;
    }
    return rc;
}

/* Adds the events another process stored since our last commit. */
int sqlite_dedupe_catch_up(struct sqlite_backend *be, char *err, size_t err_len)
{
    sqlite3_stmt *st = be->sel_events_after;
    double cutoff = sqlite_wall_now() - be->dd_window_s;
    sqlite3_bind_int64(st, 1, be->dd_max_row);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t fp = sqlite3_column_type(st, 4) == SQLITE_NULL
                          ? dedupe_fingerprint((const char *)sqlite3_column_text(st, 1),
                                               (const char *)sqlite3_column_text(st, 2))
                          : (uint64_t)sqlite3_column_int64(st, 4);
        sqlite_dedupe_add(be, fp, sqlite3_column_int64(st, 0), sqlite3_column_double(st, 3),
                          cutoff);
    }
    sqlite3_reset(st);
    if (s != SQLITE_DONE) {
        sqlite_err(be->wdb, "reading new events", err, err_len);
        return -1;
    }
    return 0;
}

/* 1 when event row `row` is (source, event_id) and was received less than
 * window_s before `at` (its receive time in *row_at), 0 when not, -1 on error. */
static int sqlite_dedupe_confirm(struct sqlite_backend *be, int64_t row,
                                 const struct store_op_event *op, char *err, size_t err_len)
{
    sqlite3_stmt *st = be->sel_event_key;
    sqlite3_bind_int64(st, 1, row);
    int s = sqlite3_step(st);
    int match = 0;
    if (s == SQLITE_ROW) {
        const char *src = (const char *)sqlite3_column_text(st, 0);
        const char *id = (const char *)sqlite3_column_text(st, 1);
        double at = sqlite3_column_double(st, 2);
        match = src && id && strcmp(src, op->source) == 0 && strcmp(id, op->event_id) == 0 &&
                op->received_at - at < (double)op->dedupe_window_s;
    }
    sqlite3_reset(st);
    if (s != SQLITE_ROW && s != SQLITE_DONE) {
        sqlite_err(be->wdb, "looking up a duplicate", err, err_len);
        return -1;
    }
    return match;
}

/* Inserts the event, or finds the stored event it duplicates (same source and
 * event id, received inside the source's window). Returns 0 with op->result
 * set. The dedupe set narrows the candidates to rows with the same key
 * fingerprint; each candidate is confirmed against its row. */
int sqlite_insert_event(struct sqlite_backend *be, struct store_op_event *op, char *err,
                        size_t err_len)
{
    if (!be->dd_loaded && sqlite_dedupe_load(be, err, err_len) < 0)
        return -1;
    uint64_t fp = dedupe_fingerprint(op->source, op->event_id);
    /* Events of this transaction first (newest first), then the set's. */
    for (size_t i = be->dd_nnew; i-- > 0;) {
        if (be->dd_new[i].fp != fp)
            continue;
        int m = sqlite_dedupe_confirm(be, be->dd_new[i].row, op, err, err_len);
        if (m < 0)
            return -1;
        if (m) {
            op->result = STORE_EVENT_DUPLICATE;
            op->row = be->dd_new[i].row;
            return 0;
        }
    }
    int64_t rows[8];
    size_t n = dedupe_find(be->dd, fp, rows, sizeof rows / sizeof rows[0]);
    if (n > sizeof rows / sizeof rows[0])
        n = sizeof rows / sizeof rows[0]; /* the newest ones decide */
    for (size_t i = 0; i < n; i++) {
        int m = sqlite_dedupe_confirm(be, rows[i], op, err, err_len);
        if (m < 0)
            return -1;
        if (m) {
            op->result = STORE_EVENT_DUPLICATE;
            op->row = rows[i];
            return 0;
        }
    }
    if (be->dd_nnew == be->dd_new_cap) {
        size_t cap = be->dd_new_cap ? be->dd_new_cap * 2 : 64;
        struct sqlite_new_key *nk = realloc(be->dd_new, cap * sizeof *nk);
        if (!nk) {
            snprintf(err, err_len, "out of memory");
            return -1;
        }
        be->dd_new = nk;
        be->dd_new_cap = cap;
    }
    sqlite3_stmt *st = be->ins_event;
    sqlite3_bind_text(st, 1, op->source, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->event_id, -1, SQLITE_STATIC);
    sqlite3_bind_null(st, 3); /* dedupe_key: schema 7 keeps keys in memory */
    sqlite3_bind_double(st, 4, op->received_at);
    sqlite3_bind_text(st, 5, op->status ? op->status : "accepted", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, op->content_type ? op->content_type : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, op->headers_json ? op->headers_json : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 8, op->body ? (const void *)op->body : (const void *)"",
                      (int)op->body_len, SQLITE_STATIC);
    sqlite_bind_text_or_null(st, 9, op->rule_version);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)op->njobs);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)fp);
    sqlite_bind_text_or_null(st, 12, op->plan_json);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        sqlite_err(be->wdb, "inserting the event", err, err_len);
        return -1;
    }
    op->result = STORE_EVENT_STORED;
    op->row = sqlite3_last_insert_rowid(be->wdb);
    be->dd_new[be->dd_nnew++] =
        (struct sqlite_new_key){.fp = fp, .row = op->row, .at = op->received_at};
    /* The event just stored completed its block: file the block's filter. */
    if (op->row % SQLITE_BLOOM_BLOCK == 0 &&
        sqlite_bloom_build(be, &be->blooms[SQLITE_BLOOMS_EVENTS], op->row / SQLITE_BLOOM_BLOCK - 1,
                           err, err_len) < 0)
        return -1;
    return 0;
}

/* Writes into cond[len] the row ranges (seq or id, per bs) holding every row
 * that may carry one of the event ids whose bloom_hash is in hashes[0..n), as
 * SQL VALUES rows "(lo,hi),(lo,hi)...": the blocks whose Bloom filter matches
 * one of them plus the rows after the last complete block. Leaves cond empty
 * (no narrowing) when more than max_ranges blocks match or cond is full: the
 * caller then reads the whole table. Reader connection, under rlock. Returns 0
 * or -1 with err set. */
int sqlite_hash_ranges(struct sqlite_backend *be, const struct sqlite_blooms *bs,
                       const uint64_t *hashes, size_t n, size_t max_ranges, char *cond, size_t len,
                       char *err, size_t err_len)
{
    cond[0] = '\0';
    sqlite3_stmt *st = NULL;
    int64_t max_row = 0;
    char what[32];
    snprintf(what, sizeof what, "%s query", bs->what);
    if (sqlite_query_int64(be->rdb, bs->max_row_sql, &max_row, what, err, err_len) < 0)
        return -1;
    /* Rows up to `covered` are in complete blocks, each with a filter row
     * unless it holds no event id. */
    int64_t covered = max_row / SQLITE_BLOOM_BLOCK * SQLITE_BLOOM_BLOCK;
    if (sqlite3_prepare_v2(be->rdb, bs->filters_sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->rdb, what, err, err_len);
        return -1;
    }
    sqlite3_bind_int64(st, 1, covered);
    size_t used = 0, nranges = 0;
    bool too_many = false;
    int s = SQLITE_DONE;
    int w = snprintf(cond, len, "(%lld,%lld)", (long long)covered + 1, (long long)INT64_MAX);
    if (w < 0 || (size_t)w >= len)
        too_many = true;
    else
        used = (size_t)w;
    while (!too_many && (s = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *bits = sqlite3_column_blob(st, 3);
        int nbytes = sqlite3_column_bytes(st, 3);
        bool maybe = sqlite3_column_int(st, 2) != BLOOM_SCHEME || nbytes <= 0 || !bits;
        for (size_t i = 0; !maybe && i < n; i++)
            maybe = bloom_may_contain(bits, (size_t)nbytes, hashes[i], SQLITE_BLOOM_PROBES);
        if (!maybe)
            continue;
        if (++nranges > max_ranges) {
            too_many = true;
            break;
        }
        w = snprintf(cond + used, len - used, ",(%lld,%lld)",
                     (long long)sqlite3_column_int64(st, 0),
                     (long long)sqlite3_column_int64(st, 1));
        if (w < 0 || (size_t)w >= len - used) {
            too_many = true;
            break;
        }
        used += (size_t)w;
    }
    if (!too_many && s != SQLITE_DONE) {
        sqlite3_finalize(st);
        sqlite_err(be->rdb, what, err, err_len);
        return -1;
    }
    sqlite3_finalize(st);
    if (too_many)
        cond[0] = '\0';
    return 0;
}

/* sqlite_hash_ranges for one event id, at most SQLITE_BLOOM_MAX_RANGES blocks. */
int sqlite_event_ranges(struct sqlite_backend *be, const struct sqlite_blooms *bs,
                        const char *event_id, char *cond, size_t len, char *err, size_t err_len)
{
    uint64_t h = bloom_hash(event_id, strlen(event_id));
    return sqlite_hash_ranges(be, bs, &h, 1, SQLITE_BLOOM_MAX_RANGES, cond, len, err, err_len);
}

/* The FROM clause of a query on table narrowed to the row ranges of
 * sqlite_event_ranges (joined as constant rows: an OR of ranges would make
 * SQLite scan the whole table), or the whole table when ranges is empty. */
void sqlite_ranges_from(char *from, size_t len, const char *table, const char *rowid_col,
                        const char *ranges)
{
    if (ranges[0])
        snprintf(from, len, "(VALUES %s) AS r CROSS JOIN %s ON %s BETWEEN r.column1 AND r.column2",
                 ranges, table, rowid_col);
    else
        snprintf(from, len, "%s", table);
}

int64_t sqlite_count_events(struct store_backend *base, const char *source)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st;
    int64_t n = -1;
    pthread_mutex_lock(&be->rlock);
    if (sqlite3_prepare_v2(be->rdb,
                           source ? "SELECT count(*) FROM events WHERE source = ?"
                                  : "SELECT count(*) FROM events",
                           -1, &st, NULL) == SQLITE_OK) {
        if (source)
            sqlite3_bind_text(st, 1, source, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&be->rlock);
    return n;
}

int sqlite_events_scan(struct store_backend *base, const struct store_event_filter *f,
                       store_event_fn fn, void *ctx, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    char ranges[4096] = ""; /* up to SQLITE_BLOOM_MAX_RANGES of about 60 chars */
    char from[4200], sql[4800];
    pthread_mutex_lock(&be->rlock);
    /* By event id: only the id ranges whose block filter matches are read. */
    if (f->event_id && sqlite_event_ranges(be, &be->blooms[SQLITE_BLOOMS_EVENTS], f->event_id,
                                           ranges, sizeof ranges, err, err_len) < 0)
        goto out;
    sqlite_ranges_from(from, sizeof from, "events", "id", ranges);
    snprintf(sql, sizeof sql,
             "SELECT id, source, event_id, received_at, status, content_type, "
             "headers, body, plan, rule_version, CASE WHEN plan IS NULL THEN (SELECT j.plan "
             "FROM event_plans_from_jobs j WHERE j.event_row = events.id) END "
             "FROM %s WHERE (?1 IS NULL OR status = ?1) AND "
             "(?2 IS NULL OR source = ?2) AND (?3 IS NULL OR event_id = ?3) AND "
             "(?5 IS NULL OR received_at >= ?5) AND id > ?6 ORDER BY id LIMIT ?4",
             from);
    if (sqlite3_prepare_v2(be->rdb, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->rdb, "event query", err, err_len);
        goto out;
    }
    sqlite_bind_text_or_null(st, 1, f->status);
    sqlite_bind_text_or_null(st, 2, f->source);
    sqlite_bind_text_or_null(st, 3, f->event_id);
    sqlite3_bind_int64(st, 4, f->limit > 0 ? f->limit : -1);
    if (f->since > 0)
        sqlite3_bind_double(st, 5, f->since);
    sqlite3_bind_int64(st, 6, f->after_row > 0 ? f->after_row : 0);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_event_row row = {
            .row = sqlite3_column_int64(st, 0),
            .source = (const char *)sqlite3_column_text(st, 1),
            .event_id = (const char *)sqlite3_column_text(st, 2),
            .received_at = sqlite3_column_double(st, 3),
            .status = (const char *)sqlite3_column_text(st, 4),
            .content_type = (const char *)sqlite3_column_text(st, 5),
            .headers_json = (const char *)sqlite3_column_text(st, 6),
            .body = sqlite3_column_blob(st, 7),
            .body_len = (size_t)sqlite3_column_bytes(st, 7),
            .rule_version = (const char *)sqlite3_column_text(st, 9),
        };
        /* events.plan, else the plan rebuilt from the jobs rows (schema 10). */
        row.plan_json = (const char *)sqlite3_column_text(st, 8);
        if (!row.plan_json) {
            row.plan_json = (const char *)sqlite3_column_text(st, 10);
            row.plan_from_jobs = row.plan_json != NULL;
        }
        if (fn(&row, ctx) != 0)
            break;
    }
    if (s != SQLITE_ROW && s != SQLITE_DONE) {
        sqlite_err(be->rdb, "event query", err, err_len);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&be->rlock);
    return rc;
}

void sqlite_dedupe_stats(struct store_backend *base, struct store_dedupe_stats *out)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    out->keys = atomic_load(&be->dd_keys);
    out->max_keys = be->dd_max_keys;
    out->evicted = atomic_load(&be->dd_evicted);
}
