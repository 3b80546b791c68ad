/*
 * pg_audit: the audit trail in PostgreSQL. The chain primitives run on the
 * writer thread inside its transaction: the first audit_tip of a transaction
 * takes the chain's advisory lock and reads the tip, so records other
 * processes append (a CLI command while serve runs, another instance) continue
 * the same chain; records store_apply.c sealed are buffered and sent in
 * multi-row INSERTs before the commit. Retention's primitives find the prune
 * point and delete through it. Queries (filters, a DID's whole story, the
 * stored-column check of `audit verify`) run on the reader connection under
 * rlock; a listing never fails on a tampered record unless asked to check.
 */
#include "pg_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "number.h"

/* Rows per INSERT statement when the sealed records are sent (9 parameters
 * each, PostgreSQL takes at most 65535). */
#define PG_AUDIT_ROWS_PER_INSERT 500
#define PG_AUDIT_COLS 9

/* Takes the chain lock for this transaction and loads next_seq and the tip
 * from the newest record. Writer thread, inside a transaction. */
static int pg_chain_begin(struct pg_backend *be, char *err, size_t err_len)
{
    if (be->chain_locked)
        return 0;
    /* One round trip, two statements: the tip is read after the lock is held
     * (each statement of a query string takes its own snapshot). */
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT pg_advisory_xact_lock(%lld); "
             "SELECT seq, record FROM audit ORDER BY seq DESC LIMIT 1",
             (long long)PG_CHAIN_LOCK_KEY);
    PGresult *r = pg_run(be->w.c, sql, NULL, PGRES_TUPLES_OK,
                         "reading the audit tip under its lock", err, err_len);
    if (!r)
        return -1;
    be->next_seq = 1;
    snprintf(be->tip, sizeof be->tip, "%s", AUDIT_GENESIS_HASH);
    if (PQntuples(r) == 1) {
        be->next_seq = pg_get_int(r, 0, 0) + 1;
        json_t *rec = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
        const char *h = json_string_value(json_object_get(rec, "hash"));
        if (h)
            snprintf(be->tip, sizeof be->tip, "%s", h);
        json_decref(rec);
    }
    PQclear(r);
    be->chain_locked = true;
    return 0;
}

static char *pg_jdup(json_t *rec, const char *key)
{
    const char *s = json_string_value(json_object_get(rec, key));
    return s ? strdup(s) : NULL;
}

static void pg_audit_row_free(struct pg_audit_row *row)
{
    free(row->time);
    free(row->kind);
    free(row->source);
    free(row->event_id);
    free(row->did);
    free(row->number);
    free(row->text);
}

/* audit_tip (store_int.h): the first call of a transaction takes the chain
 * lock and reads the tip. Writer thread, inside a transaction. */
int pg_audit_tip(struct store_backend *base, int64_t *next_seq, char tip[AUDIT_HASH_HEX_LEN + 1],
                 char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    if (pg_chain_begin(be, err, err_len) < 0)
        return -1;
    *next_seq = be->next_seq;
    memcpy(tip, be->tip, AUDIT_HASH_HEX_LEN + 1);
    return 0;
}

/* audit_insert (store_int.h): the sealed row is buffered, sent with the
 * others of the transaction in multi-row INSERTs (pg_audit_flush). */
int pg_audit_insert_row(struct store_backend *base, const json_t *rec, int64_t seq, char *text,
                        const char *hash, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    json_t *r = (json_t *)rec; /* jansson's getters take non-const */
    if (be->nrows == be->rows_cap) {
        size_t cap = be->rows_cap ? be->rows_cap * 2 : 256;
        struct pg_audit_row *nr = realloc(be->rows, cap * sizeof *nr);
        if (!nr) {
            free(text);
            snprintf(err, err_len, "out of memory");
            return -1;
        }
        be->rows = nr;
        be->rows_cap = cap;
    }
    json_t *job = json_object_get(r, "job_id");
    struct pg_audit_row row = {.seq = seq,
                               .job_id = json_is_integer(job) ? json_integer_value(job) : 0,
                               .has_job = json_is_integer(job),
                               .time = pg_jdup(r, "time"),
                               .kind = pg_jdup(r, "kind"),
                               .source = pg_jdup(r, "source"),
                               .event_id = pg_jdup(r, "event_id"),
                               .did = pg_jdup(r, "did"),
                               .number = pg_jdup(r, "number"),
                               .text = text};
    if (!row.time || !row.kind) {
        pg_audit_row_free(&row);
        snprintf(err, err_len, "an audit record without time or kind");
        return -1;
    }
    be->rows[be->nrows++] = row;
    be->next_seq = seq + 1;
    memcpy(be->tip, hash, sizeof be->tip);
    return 0;
}

void pg_audit_discard(struct pg_backend *be)
{
    for (size_t i = 0; i < be->nrows; i++)
        pg_audit_row_free(&be->rows[i]);
    be->nrows = 0;
    be->chain_locked = false;
}

/* Sends rows[from, from + n) in one INSERT. */
static int pg_audit_insert(struct pg_backend *be, size_t from, size_t n, char *err, size_t err_len)
{
    static const char head[] =
        "INSERT INTO audit (seq, time, kind, source, event_id, job_id, did, number, record) "
        "VALUES ";
    size_t cap = sizeof head + n * 64;
    char *sql = malloc(cap);
    const char **vals = calloc(n * PG_AUDIT_COLS, sizeof *vals);
    char(*nums)[24] = calloc(n * 2, sizeof *nums);
    int rc = -1;
    if (!sql || !vals || !nums) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    size_t len = (size_t)snprintf(sql, cap, "%s", head);
    for (size_t i = 0; i < n; i++) {
        const struct pg_audit_row *row = &be->rows[from + i];
        int b = (int)(i * PG_AUDIT_COLS);
        snprintf(nums[2 * i], sizeof nums[0], "%lld", (long long)row->seq);
        snprintf(nums[2 * i + 1], sizeof nums[0], "%lld", (long long)row->job_id);
        vals[b] = nums[2 * i];
        vals[b + 1] = row->time;
        vals[b + 2] = row->kind;
        vals[b + 3] = row->source;
        vals[b + 4] = row->event_id;
        vals[b + 5] = row->has_job ? nums[2 * i + 1] : NULL;
        vals[b + 6] = row->did;
        vals[b + 7] = row->number;
        vals[b + 8] = row->text;
        int w =
            snprintf(sql + len, cap - len, "%s($%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d)", i ? "," : "",
                     b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9);
        if (w < 0 || (size_t)w >= cap - len) {
            snprintf(err, err_len, "audit insert statement too long");
            goto out;
        }
        len += (size_t)w;
    }
    PGresult *r = PQexecParams(be->w.c, sql, (int)(n * PG_AUDIT_COLS), NULL, vals, NULL, NULL, 0);
    if (r && PQresultStatus(r) == PGRES_COMMAND_OK) {
        rc = 0;
    } else {
        const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(be->w.c);
        snprintf(err, err_len, "appending audit records: %.*s", (int)strcspn(m, "\n"), m);
    }
    PQclear(r);
out:
    free(sql);
    free(vals);
    free(nums);
    return rc;
}

int pg_audit_flush(struct pg_backend *be, char *err, size_t err_len)
{
    for (size_t from = 0; from < be->nrows; from += PG_AUDIT_ROWS_PER_INSERT) {
        size_t n = be->nrows - from;
        if (n > PG_AUDIT_ROWS_PER_INSERT)
            n = PG_AUDIT_ROWS_PER_INSERT;
        if (pg_audit_insert(be, from, n, err, err_len) < 0)
            return -1;
    }
    for (size_t i = 0; i < be->nrows; i++)
        pg_audit_row_free(&be->rows[i]);
    be->nrows = 0;
    return 0;
}

/* audit_prune_point (store_int.h): the records buffered so far are sent
 * first, the chain lock held. Writer thread, inside a transaction. */
int pg_audit_prune_point(struct store_backend *base, const char *cutoff, int64_t *through,
                         char hash[AUDIT_HASH_HEX_LEN + 1], char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    if (pg_chain_begin(be, err, err_len) < 0 || pg_audit_flush(be, err, err_len) < 0)
        return STORE_PRUNE_POINT_FAILED;
    struct pg_params p = {0};
    pg_params_text(&p, cutoff);
    PGresult *r = pg_run(be->w.c,
                         "SELECT seq, record FROM audit WHERE seq = (SELECT max(seq) FROM audit "
                         "WHERE time < $1 AND seq < (SELECT max(seq) FROM audit))",
                         &p, PGRES_TUPLES_OK, "pruning", err, err_len);
    if (!r)
        return STORE_PRUNE_POINT_FAILED;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return STORE_PRUNE_POINT_NONE;
    }
    *through = pg_get_int(r, 0, 0);
    json_t *last = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
    PQclear(r);
    const char *h = json_string_value(json_object_get(last, "hash"));
    snprintf(hash, AUDIT_HASH_HEX_LEN + 1, "%s", h ? h : "");
    json_decref(last);
    return STORE_PRUNE_POINT_FOUND;
}

/* audit_delete_through (store_int.h). Writer thread, inside a transaction. */
int pg_audit_delete_through(struct store_backend *base, int64_t through, int64_t *deleted,
                            char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_int(&p, through);
    return pg_cmd(be->w.c, "DELETE FROM audit WHERE seq <= $1", &p, deleted, "pruning", err,
                  err_len);
}

/* ---------- queries (reader connection, under rlock) ---------- */

/* A bounded SQL text. */
struct pg_text {
    char p[8192];
    size_t len;
    bool failed;
};

__attribute__((format(printf, 2, 3))) static void pg_text_add(struct pg_text *t, const char *fmt,
                                                              ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->p + t->len, sizeof t->p - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof t->p - t->len)
        t->failed = true;
    else
        t->len += (size_t)n;
}

/* The number DIDWW reported for the DID of a job.attempt (its before-state) or
 * a job.noop (its state), on records that name the DID by id alone: the text
 * audit_by_read_number indexes (pg_schema.c), unchanged so the index is used. */
#define PG_READ_NUMBER                                                                             \
    "coalesce(hookline_jsonb(record) #>> '{detail,before,number}', "                               \
    "hookline_jsonb(record) #>> '{detail,state,number}')"
#define PG_READ_NUMBER_ROWS                                                                        \
    "kind IN ('job.attempt', 'job.noop') AND did IS NOT NULL AND number IS NULL"
#define PG_BARE_JOB_ROWS "job_id IS NOT NULL AND did IS NULL AND number IS NULL"

/* At most this many DID ids and numbers link into one story. */
#define PG_STORY_MAX_LINKS 64

/* Adds s to the string array arr unless it is there or arr is full. */
static void pg_story_add(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    if (!s || !*s || json_array_size(arr) >= PG_STORY_MAX_LINKS)
        return;
    json_array_foreach(arr, i, v)
    {
        if (strcmp(json_string_value(v), s) == 0)
            return;
    }
    json_array_append_new(arr, json_string(s));
}

/* Runs sql with $1 = key and adds each non-NULL first column to arr (numbers
 * normalised; a value that is no valid number is left out). */
static int pg_story_collect(PGconn *c, const char *sql, const char *key, json_t *arr, bool numbers,
                            char *err, size_t err_len)
{
    struct pg_params p = {0};
    pg_params_text(&p, key);
    PGresult *r = pg_run(c, sql, &p, PGRES_TUPLES_OK, "audit story query", err, err_len);
    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *v = pg_get_str(r, i, 0);
        char num[NUMBER_BUF_LEN];
        if (!v)
            continue;
        if (numbers && number_normalize(v, num, sizeof num, NULL, 0) != NUMBER_OK)
            continue;
        pg_story_add(arr, numbers ? num : v);
    }
    PQclear(r);
    return 0;
}

/* A DID's story (docs/contract.md section 6), as the SQLite backend tells it
 * (sqlite_audit.c explains the links, core, jobs and events): here the links
 * are found first, then one query selects the story's records through the
 * ordinary indexes. Fills dids and numbers (JSON arrays). */
static int pg_story_links(PGconn *c, const struct store_audit_filter *f, json_t *dids,
                          json_t *numbers, char *err, size_t err_len)
{
    static const char numbers_of_did[] = "SELECT coalesce(number, CASE WHEN " PG_READ_NUMBER_ROWS
                                         " THEN " PG_READ_NUMBER " END) FROM audit WHERE did = $1 "
                                         "UNION SELECT number FROM did_numbers WHERE did = $1";
    static const char dids_of_number[] =
        "SELECT did FROM audit WHERE number = $1 AND did IS NOT NULL "
        "UNION SELECT did FROM did_numbers WHERE number = $1 "
        "UNION SELECT did FROM audit WHERE " PG_READ_NUMBER " = $1 AND " PG_READ_NUMBER_ROWS;
    if (f->did) {
        /* DIDWW's ids are lower case, and so is every id hookline stores. */
        char id[128];
        snprintf(id, sizeof id, "%s", f->did);
        for (char *q = id; *q; q++)
            if (*q >= 'A' && *q <= 'Z')
                *q = (char)(*q - 'A' + 'a');
        pg_story_add(dids, id);
    }
    if (f->number) {
        char num[NUMBER_BUF_LEN];
        if (number_normalize(f->number, num, sizeof num, err, err_len) != NUMBER_OK)
            return -1;
        pg_story_add(numbers, num);
        if (pg_story_collect(c, dids_of_number, num, dids, false, err, err_len) < 0)
            return -1;
    }
    for (size_t i = 0; i < json_array_size(dids); i++)
        if (pg_story_collect(c, numbers_of_did, json_string_value(json_array_get(dids, i)), numbers,
                             true, err, err_len) < 0)
            return -1;
    return 0;
}

/* The columns a check_columns scan compares with the record, in select order
 * after seq and record. */
static const char *const pg_check_cols[] = {"time",   "kind", "source", "event_id",
                                            "job_id", "did",  "number"};

/* A value for a message: nothing, or text quoted, cut and made printable. */
static void pg_value_text(const char *t, bool quote, char *out, size_t len)
{
    if (!t) {
        snprintf(out, len, "nothing");
        return;
    }
    char q[48];
    size_t n = 0;
    for (; t[n] && n < 40; n++)
        q[n] = t[n] >= 0x20 && t[n] < 0x7f ? t[n] : '?';
    q[n] = '\0';
    snprintf(out, len, quote ? "'%s%s'" : "%s%s", q, t[n] ? "..." : "");
}

/* Checks row i's stored columns against its record; 0 when all match, else -1
 * with err naming the record and the first column that differs. */
static int pg_check_row(const PGresult *r, int i, char *err, size_t err_len)
{
    int64_t seq = pg_get_int(r, i, 0);
    json_t *rec = json_loads(PQgetvalue(r, i, 1), JSON_REJECT_DUPLICATES, NULL);
    const char *column = NULL;
    char stored[64] = "nothing", says[64] = "nothing";
    if (!json_is_object(rec)) {
        json_decref(rec);
        snprintf(err, err_len, "record seq %lld is not valid JSON (the record was edited)",
                 (long long)seq);
        return -1;
    }
    json_t *js = json_object_get(rec, "seq");
    if (!json_is_integer(js) || json_integer_value(js) != seq) {
        column = "seq";
        snprintf(stored, sizeof stored, "%lld", (long long)seq);
        if (json_is_integer(js))
            snprintf(says, sizeof says, "%lld", (long long)json_integer_value(js));
    }
    for (size_t k = 0; !column && k < sizeof pg_check_cols / sizeof pg_check_cols[0]; k++) {
        const char *name = pg_check_cols[k];
        const char *col = pg_get_str(r, i, 2 + (int)k);
        json_t *v = json_object_get(rec, name);
        bool is_int = strcmp(name, "job_id") == 0;
        bool same;
        char vbuf[32] = "";
        const char *vtext = NULL;
        if (json_is_string(v))
            vtext = json_string_value(v);
        else if (json_is_integer(v)) {
            snprintf(vbuf, sizeof vbuf, "%lld", (long long)json_integer_value(v));
            vtext = vbuf;
        }
        if (!col)
            same = !v || json_is_null(v);
        else if (is_int)
            same = json_is_integer(v) && json_integer_value(v) == strtoll(col, NULL, 10);
        else
            same = json_is_string(v) && strcmp(json_string_value(v), col) == 0;
        if (!same) {
            column = name;
            pg_value_text(col, !is_int, stored, sizeof stored);
            if (vtext)
                pg_value_text(vtext, json_is_string(v), says, sizeof says);
        }
    }
    json_decref(rec);
    if (!column)
        return 0;
    snprintf(err, err_len,
             "record seq %lld does not match its stored column '%s' (the column holds %s, the "
             "record %s): the column was edited",
             (long long)seq, column, stored, says);
    return -1;
}

struct pg_audit_rows {
    store_audit_fn fn;
    void *ctx;
    bool check;
    char *err;
    size_t err_len;
};

static int pg_audit_row(const PGresult *r, void *vctx)
{
    struct pg_audit_rows *a = vctx;
    if (a->check && pg_check_row(r, 0, a->err, a->err_len) < 0)
        return -1;
    return a->fn(PQgetvalue(r, 0, 1), pg_get_int(r, 0, 0), a->ctx) != 0 ? 1 : 0;
}

int pg_audit_scan(struct store_backend *base, const struct store_audit_filter *f, store_audit_fn fn,
                  void *ctx, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_text where = {.len = 0}, *sql = NULL;
    struct pg_params p = {0};
    char since[32], until[32], kbuf[128];
    char *dids_text = NULL, *numbers_text = NULL;
    json_t *dids = json_array(), *numbers = json_array();
    int rc = -1;

    pthread_mutex_lock(&be->rlock);
    PGconn *c = pg_reader(be, err, err_len);
    sql = malloc(sizeof *sql);
    if (!c)
        goto out;
    if (!sql || !dids || !numbers) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    sql->len = 0;
    sql->failed = false;
    pg_text_add(&where, "TRUE");
    if (f->kind) {
        size_t klen = strlen(f->kind);
        bool prefix = klen > 0 && f->kind[klen - 1] == '*';
        snprintf(kbuf, sizeof kbuf, "%.*s", (int)(prefix ? klen - 1 : klen), f->kind);
        pg_params_text(&p, kbuf);
        if (prefix)
            pg_text_add(&where, " AND left(kind, length($%d)) = $%d", p.n, p.n);
        else
            pg_text_add(&where, " AND kind = $%d", p.n);
    }
    if (f->source) {
        pg_params_text(&p, f->source);
        pg_text_add(&where, " AND source = $%d", p.n);
    }
    if (f->event_id) {
        pg_params_text(&p, f->event_id);
        pg_text_add(&where, " AND event_id = $%d", p.n);
    }
    if (f->did || f->number) {
        if (pg_story_links(c, f, dids, numbers, err, err_len) < 0) {
            pg_reader_check(be);
            goto out;
        }
        dids_text = json_dumps(dids, JSON_COMPACT);
        numbers_text = json_dumps(numbers, JSON_COMPACT);
        if (!dids_text || !numbers_text) {
            snprintf(err, err_len, "out of memory building an audit story");
            goto out;
        }
        pg_params_text(&p, dids_text);
        int pd = p.n;
        pg_params_text(&p, numbers_text);
        int pn = p.n;
        /* core: the records naming one of the ids, or no id and one of the
         * numbers; then the bare records of core's jobs and the job-less
         * records of core's events. */
        pg_text_add(sql,
                    "WITH core AS MATERIALIZED (SELECT seq, job_id, source, event_id FROM audit "
                    "WHERE did IN (SELECT jsonb_array_elements_text($%d::jsonb)) UNION ALL "
                    "SELECT seq, job_id, source, event_id FROM audit WHERE did IS NULL AND "
                    "number IN (SELECT jsonb_array_elements_text($%d::jsonb))), "
                    "story AS (SELECT seq FROM core UNION SELECT seq FROM audit WHERE job_id IN "
                    "(SELECT job_id FROM core WHERE job_id IS NOT NULL) AND " PG_BARE_JOB_ROWS
                    " UNION SELECT a.seq FROM audit a WHERE a.job_id IS NULL AND a.event_id IS "
                    "NOT NULL AND (a.source, a.event_id) IN (SELECT source, event_id FROM core "
                    "WHERE source IS NOT NULL AND event_id IS NOT NULL)) ",
                    pd, pn);
        pg_text_add(&where, " AND seq IN (SELECT seq FROM story)");
    }
    if (f->job_id) {
        pg_params_int(&p, f->job_id);
        pg_text_add(&where, " AND job_id = $%d", p.n);
    }
    if (f->since > 0) {
        audit_format_time(f->since, since);
        pg_params_text(&p, since);
        pg_text_add(&where, " AND time >= $%d", p.n);
    }
    if (f->until > 0) {
        audit_format_time(f->until, until);
        pg_params_text(&p, until);
        pg_text_add(&where, " AND time <= $%d", p.n);
    }
    if (f->after_seq > 0) {
        pg_params_int(&p, f->after_seq);
        pg_text_add(&where, " AND seq > $%d", p.n);
    }
    const char *cols = f->check_columns ? "seq, record, time, kind, source, event_id, job_id, "
                                          "did, number"
                                        : "seq, record";
    if (f->limit > 0) {
        pg_params_int(&p, f->limit);
        if (f->oldest_first)
            pg_text_add(sql, "SELECT %s FROM audit WHERE %s ORDER BY seq ASC LIMIT $%d", cols,
                        where.p, p.n);
        else
            pg_text_add(sql,
                        "SELECT %s FROM (SELECT * FROM audit WHERE %s ORDER BY seq DESC LIMIT "
                        "$%d) AS newest ORDER BY seq ASC",
                        cols, where.p, p.n);
    } else {
        pg_text_add(sql, "SELECT %s FROM audit WHERE %s ORDER BY seq ASC", cols, where.p);
    }
    if (where.failed || sql->failed) {
        snprintf(err, err_len, "audit query too long");
        goto out;
    }
    struct pg_audit_rows rows = {
        .fn = fn, .ctx = ctx, .check = f->check_columns, .err = err, .err_len = err_len};
    rc = pg_stream(c, sql->p, &p, pg_audit_row, &rows, "audit query", err, err_len);
    if (rc < 0)
        pg_reader_check(be);
out:
    pthread_mutex_unlock(&be->rlock);
    free(sql);
    free(dids_text);
    free(numbers_text);
    json_decref(dids);
    json_decref(numbers);
    return rc;
}
