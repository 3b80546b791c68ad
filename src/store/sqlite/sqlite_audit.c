/*
 * sqlite_audit: the audit trail in SQLite. The chain primitives (the tip the
 * writer caches, storing a record store_apply.c sealed, with its Bloom block)
 * and retention's (where to prune to, deleting through a seq) run on the
 * writer thread inside its transaction; queries (filters, a DID's whole story, the stored-column
 * check of `audit verify`) run on the reader connection under rlock from any thread. A query never
 * writes and never fails on a tampered record unless asked to check.
 */
#include "sqlite_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "bloom.h"
#include "number.h"

/* Loads next_seq and the chain tip from the newest audit record. */
int sqlite_load_tip(struct sqlite_backend *be, char *err, size_t err_len)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(be->wdb, "SELECT seq, record FROM audit ORDER BY seq DESC LIMIT 1", -1,
                           &st, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "reading the audit tip", err, err_len);
        return -1;
    }
    be->next_seq = 1;
    snprintf(be->tip, sizeof be->tip, "%s", AUDIT_GENESIS_HASH);
    if (sqlite3_step(st) == SQLITE_ROW) {
        be->next_seq = sqlite3_column_int64(st, 0) + 1;
        json_t *r = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
        const char *h = json_string_value(json_object_get(r, "hash"));
        if (h)
            snprintf(be->tip, sizeof be->tip, "%s", h);
        json_decref(r);
    }
    sqlite3_finalize(st);
    return 0;
}

static const char *sqlite_jstr(json_t *rec, const char *key)
{
    return json_string_value(json_object_get(rec, key));
}

/* audit_tip (store_int.h): the writer's cached tip (begin reloads it when
 * another process appended). Writer thread. */
int sqlite_audit_tip(struct store_backend *base, int64_t *next_seq,
                     char tip[AUDIT_HASH_HEX_LEN + 1], char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    (void)err;
    (void)err_len;
    *next_seq = be->next_seq;
    memcpy(tip, be->tip, AUDIT_HASH_HEX_LEN + 1);
    return 0;
}

/* audit_insert (store_int.h): the row, and when it completes a block, the
 * block's Bloom filter. Writer thread, inside a transaction. */
int sqlite_audit_insert(struct store_backend *base, const json_t *rec, int64_t seq, char *text,
                        const char *hash, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    json_t *r = (json_t *)rec; /* jansson's getters take non-const */
    sqlite3_stmt *st = be->ins_audit;
    json_t *job = json_object_get(r, "job_id");
    sqlite3_bind_int64(st, 1, seq);
    sqlite_bind_text_or_null(st, 2, sqlite_jstr(r, "time"));
    sqlite_bind_text_or_null(st, 3, sqlite_jstr(r, "kind"));
    sqlite_bind_text_or_null(st, 4, sqlite_jstr(r, "source"));
    sqlite_bind_text_or_null(st, 5, sqlite_jstr(r, "event_id"));
    if (json_is_integer(job))
        sqlite3_bind_int64(st, 6, json_integer_value(job));
    else
        sqlite3_bind_null(st, 6);
    sqlite_bind_text_or_null(st, 7, sqlite_jstr(r, "did"));
    sqlite_bind_text_or_null(st, 8, sqlite_jstr(r, "number"));
    sqlite3_bind_text(st, 9, text, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    free(text);
    if (rc != SQLITE_DONE) {
        sqlite_err(be->wdb, "appending an audit record", err, err_len);
        return -1;
    }
    be->next_seq = seq + 1;
    memcpy(be->tip, hash, sizeof be->tip);
    /* The record just appended completed its block: file the block's filter. */
    if (seq % SQLITE_BLOOM_BLOCK == 0 &&
        sqlite_bloom_build(be, &be->blooms[SQLITE_BLOOMS_AUDIT], seq / SQLITE_BLOOM_BLOCK - 1, err,
                           err_len) < 0)
        return -1;
    return 0;
}

/* Runs a DELETE whose one parameter is `through`; the deleted row count goes to
 * *changes when not NULL. Returns 0, or -1 with err set. Writer thread. */
static int sqlite_delete_through(struct sqlite_backend *be, const char *sql, int64_t through,
                                 int64_t *changes, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(be->wdb, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, through);
        if (sqlite3_step(st) == SQLITE_DONE) {
            if (changes)
                *changes = sqlite3_changes(be->wdb);
            rc = 0;
        }
    }
    if (rc < 0)
        sqlite_err(be->wdb, "pruning", err, err_len);
    sqlite3_finalize(st);
    return rc;
}

/* audit_prune_point (store_int.h). Writer thread, inside a transaction. */
int sqlite_audit_prune_point(struct store_backend *base, const char *cutoff, int64_t *through,
                             char hash[AUDIT_HASH_HEX_LEN + 1], char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(be->wdb,
                           "SELECT seq, record FROM audit WHERE seq = (SELECT max(seq) FROM audit "
                           "WHERE time < ?1 AND seq < (SELECT max(seq) FROM audit))",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->wdb, "pruning", err, err_len);
        return STORE_PRUNE_POINT_FAILED;
    }
    sqlite3_bind_text(st, 1, cutoff, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    int rc = STORE_PRUNE_POINT_NONE;
    if (s == SQLITE_ROW) {
        *through = sqlite3_column_int64(st, 0);
        json_t *last = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
        const char *h = json_string_value(json_object_get(last, "hash"));
        snprintf(hash, AUDIT_HASH_HEX_LEN + 1, "%s", h ? h : "");
        json_decref(last);
        rc = STORE_PRUNE_POINT_FOUND;
    } else if (s != SQLITE_DONE) {
        sqlite_err(be->wdb, "pruning", err, err_len);
        rc = STORE_PRUNE_POINT_FAILED;
    }
    sqlite3_finalize(st);
    return rc;
}

/* audit_delete_through (store_int.h): the records and the Bloom blocks
 * they filled. Writer thread, inside a transaction. */
int sqlite_audit_delete_through(struct store_backend *base, int64_t through, int64_t *deleted,
                                char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    if (sqlite_delete_through(be, "DELETE FROM audit WHERE seq <= ?", through, deleted, err,
                              err_len) < 0 ||
        sqlite_delete_through(be, "DELETE FROM audit_event_blooms WHERE last_seq <= ?", through,
                              NULL, err, err_len) < 0)
        return -1;
    return 0;
}

/* An SQL text that grows as needed (a story's lists have no fixed size). */
struct sqlite_text {
    char *p;
    size_t len, cap;
    bool failed; /* out of memory: p is incomplete */
};

static void sqlite_text_add(struct sqlite_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sqlite_text_add(struct sqlite_text *t, const char *fmt, ...)
{
    while (!t->failed) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
        } else if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        } else {
            size_t ncap = t->cap ? t->cap * 2 : 1024;
            while (ncap < t->len + (size_t)n + 1)
                ncap *= 2;
            char *np = realloc(t->p, ncap);
            if (np) {
                t->p = np;
                t->cap = ncap;
            } else {
                t->failed = true;
            }
        }
    }
}

/* A DID's story (docs/contract.md section 6): every record about the DID whichever way it is
 * asked for (--did or --number) and however the rule named it. Records link by
 * columns: a record names the DID by id (did), by number (number, while a job
 * named by number is unresolved), or only by its job (admin actions) or its
 * event (event.received, the decision when the event planned several jobs). So
 * the story is, from the DIDs and numbers the question names:
 *   links:  the DID ids of the number (records naming both, did_numbers learnt
 *           by delivery, the number DIDWW reported when delivery read a DID the
 *           rule named by id) and the numbers of each DID id;
 *   core:   the records naming one of those ids, or naming no id and one of
 *           those numbers (jobs queued and dead before the number was resolved);
 *   jobs:   the records of core's jobs that name no DID (admin.job_retry);
 *   events: the records of core's events that belong to no job (event.received,
 *           rule.decided, event.duplicate, admin.reprocess), but not other DIDs'
 *           jobs of the same event.
 * Every step uses an index (audit_by_did, audit_by_number, audit_by_read_number,
 * audit_by_bare_job, did_numbers') or, for events, the blocks whose Bloom filter
 * may hold one of them (a block is 4096 records: a story whose events lie in
 * more than SQLITE_STORY_MAX_RANGES blocks reads the whole table for them). */
#define SQLITE_STORY_MAX_LINKS 64
#define SQLITE_STORY_MAX_RANGES 512

struct sqlite_story {
    json_t *dids;    /* DID ids (strings) */
    json_t *numbers; /* numbers (digit strings) */
    json_t *events;  /* [source, event_id] of core's events */
    char *ranges;    /* audit rows that may hold them (sqlite_hash_ranges), "" for all */
};

static void sqlite_story_free(struct sqlite_story *s)
{
    json_decref(s->dids);
    json_decref(s->numbers);
    json_decref(s->events);
    free(s->ranges);
    memset(s, 0, sizeof *s);
}

/* Adds s to the string array arr unless it is there or arr is full. */
static void sqlite_story_add(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    if (!s || !*s || json_array_size(arr) >= SQLITE_STORY_MAX_LINKS)
        return;
    json_array_foreach(arr, i, v)
    {
        if (strcmp(json_string_value(v), s) == 0)
            return;
    }
    json_array_append_new(arr, json_string(s));
}

/* Runs sql with ?1 = key and adds each non-NULL first column to arr (numbers
 * normalised; a value that is no valid number is left out). */
static int sqlite_story_collect(struct sqlite_backend *be, const char *sql, const char *key,
                                json_t *arr, bool numbers, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(be->rdb, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->rdb, "audit story query", err, err_len);
        return -1;
    }
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        char num[NUMBER_BUF_LEN];
        if (!v)
            continue;
        if (numbers && number_normalize(v, num, sizeof num, NULL, 0) != NUMBER_OK)
            continue;
        sqlite_story_add(arr, numbers ? num : v);
    }
    sqlite3_finalize(st);
    if (s != SQLITE_DONE) {
        sqlite_err(be->rdb, "audit story query", err, err_len);
        return -1;
    }
    return 0;
}

/* The records that name the DIDs in ?1 (JSON array) or, naming no DID, the
 * numbers in ?2: the core of a story. */
#define SQLITE_STORY_CORE(cols)                                                                    \
    "SELECT " cols " FROM audit WHERE did IN (SELECT value FROM json_each(?1)) UNION ALL "         \
    "SELECT " cols " FROM audit WHERE did IS NULL AND number IN (SELECT value FROM json_each(?2))"

/* Finds the story's links, its events and their candidate rows. Reader
 * connection, under rlock. Returns 0, or -1 with err set (a number that is not
 * in international form is refused as the rule API refuses it). */
static int sqlite_story_build(struct sqlite_backend *be, const struct store_audit_filter *f,
                              struct sqlite_story *s, char *err, size_t err_len)
{
    static const char numbers_of_did[] =
        "SELECT coalesce(number, CASE WHEN kind IN ('job.attempt', 'job.noop') "
        "THEN " SQLITE_READ_NUMBER " END) FROM audit WHERE did = ?1 "
        "UNION SELECT number FROM did_numbers WHERE did = ?1";
    static const char dids_of_number[] =
        "SELECT did FROM audit WHERE number = ?1 AND did IS NOT NULL "
        "UNION SELECT did FROM did_numbers WHERE number = ?1 "
        "UNION SELECT did FROM audit WHERE " SQLITE_READ_NUMBER
        " = ?1 AND " SQLITE_READ_NUMBER_ROWS;
    sqlite3_stmt *st = NULL;
    char *dids = NULL, *numbers = NULL;
    uint64_t *hashes = NULL;
    size_t nhashes = 0, cap = 0;
    int rc = -1;

    s->dids = json_array();
    s->numbers = json_array();
    s->events = json_array();
    if (!s->dids || !s->numbers || !s->events)
        goto oom;
    if (f->did) {
        /* DIDWW's ids are lower case, and so is every id hookline stores. */
        char *id = strdup(f->did);
        if (!id)
            goto oom;
        for (char *p = id; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        sqlite_story_add(s->dids, id);
        free(id);
    }
    if (f->number) {
        char num[NUMBER_BUF_LEN];
        if (number_normalize(f->number, num, sizeof num, err, err_len) != NUMBER_OK)
            goto out;
        sqlite_story_add(s->numbers, num);
        if (sqlite_story_collect(be, dids_of_number, num, s->dids, false, err, err_len) < 0)
            goto out;
    }
    for (size_t i = 0; i < json_array_size(s->dids); i++)
        if (sqlite_story_collect(be, numbers_of_did, json_string_value(json_array_get(s->dids, i)),
                                 s->numbers, true, err, err_len) < 0)
            goto out;

    dids = json_dumps(s->dids, JSON_COMPACT);
    numbers = json_dumps(s->numbers, JSON_COMPACT);
    if (!dids || !numbers)
        goto oom;
    if (sqlite3_prepare_v2(
            be->rdb,
            "SELECT source, event_id FROM (" SQLITE_STORY_CORE(
                "source, event_id") ") WHERE event_id IS NOT NULL AND source IS NOT NULL "
                                    "GROUP BY source, event_id",
            -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->rdb, "audit story query", err, err_len);
        goto out;
    }
    sqlite3_bind_text(st, 1, dids, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, numbers, -1, SQLITE_STATIC);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *src = (const char *)sqlite3_column_text(st, 0);
        const char *eid = (const char *)sqlite3_column_text(st, 1);
        if (nhashes == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            uint64_t *nh = realloc(hashes, ncap * sizeof *nh);
            if (!nh)
                goto oom;
            hashes = nh;
            cap = ncap;
        }
        hashes[nhashes++] = bloom_hash(eid, (size_t)sqlite3_column_bytes(st, 1));
        if (json_array_append_new(s->events, json_pack("[ss]", src, eid)) < 0)
            goto oom;
    }
    if (step != SQLITE_DONE) {
        sqlite_err(be->rdb, "audit story query", err, err_len);
        goto out;
    }
    if (nhashes > 0) {
        size_t len = SQLITE_STORY_MAX_RANGES * 48 + 64;
        s->ranges = malloc(len);
        if (!s->ranges)
            goto oom;
        if (sqlite_hash_ranges(be, &be->blooms[SQLITE_BLOOMS_AUDIT], hashes, nhashes,
                               SQLITE_STORY_MAX_RANGES, s->ranges, len, err, err_len) < 0)
            goto out;
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, err_len, "out of memory building an audit story");
out:
    sqlite3_finalize(st);
    free(dids);
    free(numbers);
    free(hashes);
    return rc;
}

/* Appends the WITH clause that defines story(seq) for s, with its lists as the
 * parameters :dids, :numbers and :events. */
static void sqlite_story_sql(struct sqlite_text *t, const struct sqlite_story *s)
{
    sqlite_text_add(t,
                    "WITH core(seq, job_id) AS MATERIALIZED (%s), story(seq) AS ("
                    "SELECT seq FROM core "
                    "UNION SELECT seq FROM audit WHERE job_id IN (SELECT job_id FROM core) "
                    "AND " SQLITE_BARE_JOB_ROWS,
                    SQLITE_STORY_CORE("seq, job_id"));
    if (json_array_size(s->events) > 0) {
        sqlite_text_add(t, " UNION SELECT a.seq FROM ");
        if (s->ranges && s->ranges[0])
            sqlite_text_add(t,
                            "(VALUES %s) AS er CROSS JOIN audit a ON a.seq BETWEEN er.column1 "
                            "AND er.column2",
                            s->ranges);
        else
            sqlite_text_add(t, "audit a");
        sqlite_text_add(t, " WHERE a.job_id IS NULL AND (a.source, a.event_id) IN (SELECT "
                           "json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM "
                           "json_each(:events))");
    }
    sqlite_text_add(t, ") ");
}

/* A scan with check_columns (what `audit verify` asks for) also checks each
 * record's stored columns against the record:
 * queries select rows by those columns, so one edited there hides a record
 * from them (or shows it where it does not belong) while its hash still holds.
 * The expression names the first column that differs, 'record' when the record
 * is not JSON (json_valid's parse is the one json_extract reuses), NULL when all
 * match. A record with a key twice could show json_extract one value and the
 * hash check another: audit_check refuses such a record. */
#define SQLITE_COLUMN_CHECK                                                                        \
    "CASE WHEN json_valid(record) THEN CASE "                                                      \
    "WHEN seq IS NOT json_extract(record, '$.seq') THEN 'seq' "                                    \
    "WHEN time IS NOT json_extract(record, '$.time') THEN 'time' "                                 \
    "WHEN kind IS NOT json_extract(record, '$.kind') THEN 'kind' "                                 \
    "WHEN source IS NOT json_extract(record, '$.source') THEN 'source' "                           \
    "WHEN event_id IS NOT json_extract(record, '$.event_id') THEN 'event_id' "                     \
    "WHEN job_id IS NOT json_extract(record, '$.job_id') THEN 'job_id' "                           \
    "WHEN did IS NOT json_extract(record, '$.did') THEN 'did' "                                    \
    "WHEN number IS NOT json_extract(record, '$.number') THEN 'number' END ELSE 'record' END"

/* A column's value for a message: NULL, an integer, or text quoted, cut and
 * made printable. */
static void sqlite_value_text(sqlite3_stmt *st, int i, char *out, size_t len)
{
    int type = sqlite3_column_type(st, i);
    if (type == SQLITE_NULL) {
        snprintf(out, len, "nothing");
    } else if (type == SQLITE_INTEGER) {
        snprintf(out, len, "%lld", (long long)sqlite3_column_int64(st, i));
    } else {
        const unsigned char *t = sqlite3_column_text(st, i);
        char q[48];
        size_t n = 0;
        for (; t && t[n] && n < 40; n++)
            q[n] = t[n] >= 0x20 && t[n] < 0x7f ? (char)t[n] : '?';
        q[n] = '\0';
        snprintf(out, len, "'%s%s'", q, t && t[n] ? "..." : "");
    }
}

/* Names the record and the column that does not match it in err. */
static void sqlite_column_mismatch(struct sqlite_backend *be, int64_t seq, const char *column,
                                   char *err, size_t err_len)
{
    static const char *const known[] = {"seq",      "time",   "kind", "source",
                                        "event_id", "job_id", "did",  "number"};
    char sql[128], stored[64] = "?", says[64] = "?";
    sqlite3_stmt *st = NULL;
    if (strcmp(column, "record") == 0) {
        snprintf(err, err_len, "record seq %lld is not valid JSON (the record was edited)",
                 (long long)seq);
        return;
    }
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(column, known[i]) != 0)
            continue;
        snprintf(sql, sizeof sql,
                 "SELECT %s, json_extract(record, '$.%s') FROM audit WHERE seq = ?", known[i],
                 known[i]);
        if (sqlite3_prepare_v2(be->rdb, sql, -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, seq);
            if (sqlite3_step(st) == SQLITE_ROW) {
                sqlite_value_text(st, 0, stored, sizeof stored);
                sqlite_value_text(st, 1, says, sizeof says);
            }
        }
        sqlite3_finalize(st);
    }
    snprintf(err, err_len,
             "record seq %lld does not match its stored column '%s' (the column holds %s, the "
             "record %s): the column was edited",
             (long long)seq, column, stored, says);
}

int sqlite_audit_scan(struct store_backend *base, const struct store_audit_filter *f,
                      store_audit_fn fn, void *ctx, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    struct sqlite_text where = {0}, sql = {0};
    struct sqlite_story story = {0};
    char ranges[4096] = ""; /* up to SQLITE_BLOOM_MAX_RANGES of about 60 chars */
    char since[32], until[32];
    size_t klen = 0;
    bool kprefix = false;
    bool by_story = f->did || f->number;
    bool check_columns = f->check_columns;
    char *dids = NULL, *numbers = NULL, *events = NULL;
    int rc = -1;
    sqlite3_stmt *st = NULL;

    sqlite_text_add(&where, "1=1");
    if (f->kind) {
        klen = strlen(f->kind);
        kprefix = klen > 0 && f->kind[klen - 1] == '*';
        sqlite_text_add(&where,
                        kprefix ? " AND substr(kind, 1, :klen) = :kind" : " AND kind = :kind");
    }
    if (f->source)
        sqlite_text_add(&where, " AND source = :source");
    pthread_mutex_lock(&be->rlock);
    if (f->event_id) {
        sqlite_text_add(&where, " AND event_id = :event");
        if (sqlite_event_ranges(be, &be->blooms[SQLITE_BLOOMS_AUDIT], f->event_id, ranges,
                                sizeof ranges, err, err_len) < 0)
            goto out;
    }
    if (by_story) {
        if (sqlite_story_build(be, f, &story, err, err_len) < 0)
            goto out;
        dids = json_dumps(story.dids, JSON_COMPACT);
        numbers = json_dumps(story.numbers, JSON_COMPACT);
        events = json_dumps(story.events, JSON_COMPACT);
        if (!dids || !numbers || !events) {
            snprintf(err, err_len, "out of memory building an audit story");
            goto out;
        }
        sqlite_text_add(&where, " AND seq IN (SELECT seq FROM story)");
        sqlite_story_sql(&sql, &story);
    }
    if (f->job_id)
        sqlite_text_add(&where, " AND job_id = :job");
    if (f->since > 0)
        sqlite_text_add(&where, " AND time >= :since");
    if (f->until > 0)
        sqlite_text_add(&where, " AND time <= :until");
    if (f->after_seq > 0)
        sqlite_text_add(&where, " AND seq > :after");
    /* With ranges, the audit table is only read inside them, by rowid. */
    char from[4200];
    sqlite_ranges_from(from, sizeof from, "audit", "seq", ranges);
    if (f->limit > 0 && f->oldest_first)
        sqlite_text_add(&sql, "SELECT seq, record FROM %s WHERE %s ORDER BY seq ASC LIMIT :limit",
                        from, where.p ? where.p : "");
    else if (f->limit > 0)
        sqlite_text_add(&sql,
                        "SELECT seq, record FROM (SELECT seq, record FROM %s WHERE %s ORDER BY "
                        "seq DESC LIMIT :limit) ORDER BY seq ASC",
                        from, where.p ? where.p : "");
    else
        sqlite_text_add(&sql, "SELECT seq, record%s FROM %s WHERE %s ORDER BY seq ASC",
                        check_columns ? ", " SQLITE_COLUMN_CHECK : "", from,
                        where.p ? where.p : "");
    if (where.failed || sql.failed) {
        snprintf(err, err_len, "out of memory building an audit query");
        goto out;
    }

    if (sqlite3_prepare_v2(be->rdb, sql.p, -1, &st, NULL) != SQLITE_OK) {
        sqlite_err(be->rdb, "audit query", err, err_len);
        goto out;
    }
#define SQLITE_BIND_TEXT(name, val)                                                                \
    do {                                                                                           \
        int i_ = sqlite3_bind_parameter_index(st, name);                                           \
        if (i_ > 0)                                                                                \
            sqlite3_bind_text(st, i_, val, -1, SQLITE_TRANSIENT);                                  \
    } while (0)
#define SQLITE_BIND_INT(name, val)                                                                 \
    do {                                                                                           \
        int i_ = sqlite3_bind_parameter_index(st, name);                                           \
        if (i_ > 0)                                                                                \
            sqlite3_bind_int64(st, i_, val);                                                       \
    } while (0)
    if (f->kind) {
        char kbuf[128];
        snprintf(kbuf, sizeof kbuf, "%.*s", (int)(kprefix ? klen - 1 : klen), f->kind);
        SQLITE_BIND_TEXT(":kind", kbuf);
        SQLITE_BIND_INT(":klen", (int64_t)strlen(kbuf));
    }
    SQLITE_BIND_TEXT(":source", f->source);
    SQLITE_BIND_TEXT(":event", f->event_id);
    /* The story's lists: ?1 and ?2 of SQLITE_STORY_CORE, :events. */
    if (by_story) {
        sqlite3_bind_text(st, 1, dids, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, numbers, -1, SQLITE_STATIC);
        SQLITE_BIND_TEXT(":events", events);
    }
    SQLITE_BIND_INT(":job", f->job_id);
    if (f->since > 0) {
        audit_format_time(f->since, since);
        SQLITE_BIND_TEXT(":since", since);
    }
    if (f->until > 0) {
        audit_format_time(f->until, until);
        SQLITE_BIND_TEXT(":until", until);
    }
    SQLITE_BIND_INT(":after", f->after_seq);
    SQLITE_BIND_INT(":limit", f->limit);
#undef SQLITE_BIND_TEXT
#undef SQLITE_BIND_INT
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        if (check_columns && sqlite3_column_type(st, 2) != SQLITE_NULL) {
            char column[16];
            snprintf(column, sizeof column, "%s", (const char *)sqlite3_column_text(st, 2));
            sqlite_column_mismatch(be, seq, column, err, err_len);
            goto out;
        }
        if (fn((const char *)sqlite3_column_text(st, 1), seq, ctx) != 0)
            break;
    }
    if (s != SQLITE_ROW && s != SQLITE_DONE) {
        sqlite_err(be->rdb, "audit query", err, err_len);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&be->rlock);
    sqlite_story_free(&story);
    free(where.p);
    free(sql.p);
    free(dids);
    free(numbers);
    free(events);
    return rc;
}
