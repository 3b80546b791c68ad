/*
 * test_store_conformance: the store's contract (store.h only), one suite that
 * every backend must pass. It runs against the backend named by argv[1] or
 * HOOKLINE_TEST_STORE: "sqlite" (a temporary file, the default) or "pg" (a
 * fresh database hl_<random> per test on the server named by
 * HOOKLINE_TEST_PG_URL, password in HOOKLINE_TEST_PG_PASSFILE, dropped after
 * the test; scripts/test.sh starts that server). Covered: events stored once
 * per key inside the window, jobs and audit in one transaction, claims (FIFO
 * per order key, leases, due times), job changes and their outcomes,
 * coalescing, number mapping, re-plans, release, control values, retention
 * pruning with its chain checkpoint, the audit and event queries with their
 * filters, the stored-column check, durability across reopen and migration
 * from an empty database. Backend machinery (SQLite's Bloom blocks, dedupe
 * set, WAL syncer) is tested in test_store.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <time.h>

#include "audit.h"
#include "store/store.h"
#include "test_util.h"

enum backend { BACKEND_SQLITE, BACKEND_PG };
static enum backend backend = BACKEND_SQLITE;

static char dir[512];
static char dbpath[700];
static char url[1024];
/* pg: the server's URL (never holds a password), its password, this test's database. */
static const char *pg_base_url;
static char pg_password[256];
static char pg_db[40];

/* ---- the database under test, reached around the store (for tampering) ---- */

/* base_url with its database replaced by db, into out[len]. */
static void pg_url_with_db(const char *base_url, const char *db, char *out, size_t len)
{
    const char *auth = strstr(base_url, "://");
    assert_non_null(auth);
    const char *path = strchr(auth + 3, '/');
    const char *query = strchr(auth + 3, '?');
    size_t host_end =
        path ? (size_t)(path - base_url) : (query ? (size_t)(query - base_url) : strlen(base_url));
    int n = snprintf(out, len, "%.*s/%s%s", (int)host_end, base_url, db, query ? query : "");
    assert_true(n > 0 && (size_t)n < len);
}

/* A libpq connection to db (NULL: the server URL's own database). */
static PGconn *pg_connect(const char *db)
{
    char u[1024];
    if (db)
        pg_url_with_db(pg_base_url, db, u, sizeof u);
    else
        snprintf(u, sizeof u, "%s", pg_base_url);
    const char *keys[] = {"dbname", "password", "connect_timeout", NULL};
    const char *vals[] = {u, pg_password, "10", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connecting to PostgreSQL: %s", PQerrorMessage(c));
    return c;
}

static void pg_admin(const char *sql)
{
    PGconn *c = pg_connect(NULL);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* Runs sql on the store's database through a connection of the test's own. */
static void db_exec(const char *sql)
{
    if (backend == BACKEND_PG) {
        PGconn *c = pg_connect(pg_db);
        PGresult *r = PQexec(c, sql);
        ExecStatusType s = PQresultStatus(r);
        if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
            fail_msg("%s: %s", sql, PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
        return;
    }
    sqlite3 *db;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
    sqlite3_free(msg);
    sqlite3_close(db);
}

/* The first column of the first row of sql, as text, into out[len]. */
static void db_text(const char *sql, char *out, size_t len)
{
    if (backend == BACKEND_PG) {
        PGconn *c = pg_connect(pg_db);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
            fail_msg("%s: %s", sql, PQerrorMessage(c));
        snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        PQfinish(c);
        return;
    }
    sqlite3 *db;
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(q, 0);
    snprintf(out, len, "%s", t ? (const char *)t : "");
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* ---- opening the store under test ---- */

static struct store_options options(void)
{
    return (struct store_options){.url = url,
                                  .password = backend == BACKEND_PG ? pg_password : NULL,
                                  .busy_timeout_ms = 2000,
                                  .queue_max = 1000,
                                  .batch_max = 16};
}

static struct store *open_store(void)
{
    struct store *st = NULL;
    char err[256];
    struct store_options o = options();
    if (store_open(&o, &st, err, sizeof err) != 0)
        fail_msg("store_open: %s", err);
    return st;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fill_event_from(struct store_op *op, const char *source, const char *id, double at,
                            json_t **rec)
{
    memset(op, 0, sizeof *op);
    op->kind = STORE_OP_EVENT;
    op->u.event.source = source;
    op->u.event.event_id = id;
    op->u.event.received_at = at;
    op->u.event.dedupe_window_s = 60;
    op->u.event.status = "accepted";
    op->u.event.content_type = "application/json";
    op->u.event.headers_json = "{}";
    op->u.event.body = (const unsigned char *)"{\"a\":1}";
    op->u.event.body_len = 7;
    *rec = audit_record_new("event.received", source, id);
    op->audit = rec;
    op->naudit = 1;
}

static void fill_event(struct store_op *op, const char *id, double at, json_t **rec)
{
    fill_event_from(op, "zd", id, at, rec);
}

/* Submits one event (source, id) received at `at` and returns its outcome;
 * the row stored or duplicated goes to *row. */
static enum store_event_result submit_event(struct store *st, const char *source, const char *id,
                                            double at, int64_t *row)
{
    struct store_op op;
    json_t *rec;
    fill_event_from(&op, source, id, at, &rec);
    int rc = store_submit_wait(st, &op);
    if (rc != 0)
        fail_msg("submit %s/%s: %s", source, id, op.error);
    json_decref(rec);
    *row = op.u.event.row;
    return op.u.event.result;
}

/* Stores event id of source with the given jobs (and an event.received record). */
static int64_t submit_jobs(struct store *st, const char *id, const struct store_job_spec *jobs,
                           size_t njobs)
{
    struct store_op op;
    json_t *rec;
    fill_event(&op, id, wall_now(), &rec);
    op.u.event.jobs = jobs;
    op.u.event.njobs = njobs;
    if (store_submit_wait(st, &op) != 0)
        fail_msg("event %s: %s", id, op.error);
    assert_int_equal(op.u.event.result, STORE_EVENT_STORED);
    json_decref(rec);
    return op.u.event.row;
}

struct collect {
    char kinds[64][32];
    char events[64][32];
    int64_t seqs[64];
    json_t *recs[64];
    int n;
    bool keep; /* keep each record in recs (caller frees with collect_free) */
};

static int collect_kind(const char *text, int64_t seq, void *ctx)
{
    struct collect *c = ctx;
    json_t *r = json_loads(text, 0, NULL);
    if (c->n < 64) {
        const char *ev = json_string_value(json_object_get(r, "event_id"));
        snprintf(c->kinds[c->n], 32, "%s", json_string_value(json_object_get(r, "kind")));
        snprintf(c->events[c->n], 32, "%s", ev ? ev : "");
        c->seqs[c->n] = seq;
        if (c->keep) {
            c->recs[c->n] = r;
            r = NULL;
        }
        c->n++;
    }
    json_decref(r);
    return 0;
}

static void collect_free(struct collect *c)
{
    for (int i = 0; i < c->n && i < 64; i++)
        json_decref(c->recs[i]);
}

/* The records matching f, kinds and event ids in c (c zeroed first). */
static void scan(struct store *st, const struct store_audit_filter *f, struct collect *c)
{
    char err[256];
    bool keep = c->keep;
    memset(c, 0, sizeof *c);
    c->keep = keep;
    if (store_audit_scan(st, f, collect_kind, c, err, sizeof err) != 0)
        fail_msg("audit scan: %s", err);
}

static int64_t audit_count(struct store *st)
{
    struct collect c = {0};
    struct store_audit_filter all = {0};
    scan(st, &all, &c);
    return c.n;
}

struct chain {
    char prev[AUDIT_HASH_HEX_LEN + 1];
    int64_t next;
    int broken;
};

static int check_chain(const char *text, int64_t seq, void *ctx)
{
    struct chain *c = ctx;
    char hash[AUDIT_HASH_HEX_LEN + 1], why[200];
    if (seq != c->next || audit_check(text, seq, c->prev, hash, why, sizeof why) != 0) {
        c->broken = 1;
        return 1;
    }
    memcpy(c->prev, hash, sizeof hash);
    c->next++;
    return 0;
}

static void assert_chain_ok(struct store *st, int64_t expect_records)
{
    struct chain c = {.next = 1};
    struct store_audit_filter all = {0};
    char err[200];
    memcpy(c.prev, AUDIT_GENESIS_HASH, sizeof c.prev);
    assert_int_equal(store_audit_scan(st, &all, check_chain, &c, err, sizeof err), 0);
    assert_int_equal(c.broken, 0);
    assert_int_equal(c.next - 1, expect_records);
}

/* ---- jobs as the store reports them ---- */

struct jobrow {
    int64_t id;
    char state[16], order_key[80], did[64];
    int attempts, last_status;
};

struct joblist {
    struct jobrow j[32];
    int n;
};

static int collect_job(const struct store_job *job, const char *state, int last_status,
                       const char *last_error, void *ctx)
{
    struct joblist *l = ctx;
    (void)last_error;
    if (l->n < 32) {
        struct jobrow *r = &l->j[l->n++];
        r->id = job->id;
        snprintf(r->state, sizeof r->state, "%s", state ? state : "");
        snprintf(r->order_key, sizeof r->order_key, "%s", job->order_key ? job->order_key : "");
        snprintf(r->did, sizeof r->did, "%s", job->did ? job->did : "");
        r->attempts = job->attempts;
        r->last_status = last_status;
    }
    return 0;
}

static struct joblist jobs_in(struct store *st, const char *state)
{
    struct joblist l = {0};
    char err[200];
    if (store_jobs_scan(st, state, 0, collect_job, &l, err, sizeof err) != 0)
        fail_msg("jobs scan: %s", err);
    return l;
}

static const struct jobrow *job_row(const struct joblist *l, int64_t id)
{
    for (int i = 0; i < l->n; i++)
        if (l->j[i].id == id)
            return &l->j[i];
    fail_msg("job %lld not listed", (long long)id);
    return NULL;
}

/* Claims up to max jobs at now; their ids in ids[] (sorted as returned), the count returned. */
static int claim(struct store *st, double now, int max, store_supersedes_fn sup, int64_t *ids)
{
    struct store_op op = {.kind = STORE_OP_CLAIM,
                          .u.claim = {.now = now, .lease_s = 60, .max = max, .supersedes = sup}};
    if (store_submit_wait(st, &op) != 0)
        fail_msg("claim: %s", op.error);
    int n = op.u.claim.n;
    assert_int_equal(op.u.claim.result, n > 0 ? STORE_CLAIM_CLAIMED : STORE_CLAIM_NONE);
    for (int i = 0; i < n; i++) {
        ids[i] = op.u.claim.jobs[i].id;
        store_job_clear(&op.u.claim.jobs[i]);
    }
    free(op.u.claim.jobs);
    return n;
}

/* Moves job id to state (at now, next_at for a retry); returns the outcome. */
static enum store_job_result job_move(struct store *st, int64_t id, const char *state,
                                      const char *only_from, double next_at, json_t *rec)
{
    struct store_op op = {
        .kind = STORE_OP_JOB,
        .u.job = {.id = id,
                  .state = state,
                  .only_from = only_from,
                  .next_at = next_at,
                  .attempts = 1,
                  .last_status = 200,
                  .at = wall_now()},
        .audit = rec ? &rec : NULL,
        .naudit = rec ? 1 : 0,
    };
    if (store_submit_wait(st, &op) != 0)
        fail_msg("job %lld: %s", (long long)id, op.error);
    return op.u.job.result;
}

/* ---- events and dedupe ---- */

static void test_store_once_then_duplicate(void **state)
{
    struct store *st = open_store();
    struct store_op a, b;
    json_t *ra, *rb;
    double now = (double)time(NULL);
    fill_event(&a, "evt-1", now, &ra);
    fill_event(&b, "evt-1", now + 1, &rb);
    assert_int_equal(store_submit_wait(st, &a), 0);
    assert_int_equal(a.u.event.result, STORE_EVENT_STORED);
    assert_int_equal(store_submit_wait(st, &b), 0);
    assert_int_equal(b.u.event.result, STORE_EVENT_DUPLICATE);
    assert_int_equal(b.u.event.row, a.u.event.row);
    assert_int_equal(store_count_events(st, "zd"), 1);
    assert_int_equal(store_count_events(st, "other"), 0);
    assert_int_equal(store_count_events(st, NULL), 1);

    struct collect c = {0};
    struct store_audit_filter all = {0};
    scan(st, &all, &c);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.kinds[0], "event.received");
    assert_string_equal(c.kinds[1], "event.duplicate");
    json_decref(ra);
    json_decref(rb);
    store_close(st);
}

static void test_key_released_after_window(void **state)
{
    struct store *st = open_store();
    struct store_op a, b;
    json_t *ra, *rb;
    fill_event(&a, "evt-2", 1000.0, &ra);
    fill_event(&b, "evt-2", 1000.0 + 61, &rb); /* window is 60 s */
    assert_int_equal(store_submit_wait(st, &a), 0);
    assert_int_equal(store_submit_wait(st, &b), 0);
    assert_int_equal(b.u.event.result, STORE_EVENT_STORED);
    assert_int_not_equal(b.u.event.row, a.u.event.row);
    assert_int_equal(store_count_events(st, "zd"), 2);
    json_decref(ra);
    json_decref(rb);
    store_close(st);
}

static void test_duplicate_found_after_restart(void **state)
{
    double now = wall_now();
    int64_t first, row;
    struct store *st = open_store();
    assert_int_equal(submit_event(st, "zd", "r-1", now, &first), STORE_EVENT_STORED);
    store_close(st);

    st = open_store();
    assert_int_equal(submit_event(st, "zd", "r-1", now + 1, &row), STORE_EVENT_DUPLICATE);
    assert_int_equal(row, first);
    /* The key is (source, event id): another source's event of that id is new. */
    assert_int_equal(submit_event(st, "other", "r-1", now + 2, &row), STORE_EVENT_STORED);
    assert_int_not_equal(row, first);
    assert_int_equal(store_count_events(st, "zd"), 1);
    assert_int_equal(store_count_events(st, "other"), 1);
    store_close(st);
}

static void test_duplicate_across_two_handles(void **state)
{
    double now = wall_now();
    int64_t r1, r2, row;
    struct store *a = open_store();
    struct store *b = open_store();
    assert_int_equal(submit_event(a, "zd", "warm", now, &row), STORE_EVENT_STORED);
    assert_int_equal(submit_event(b, "zd", "shared-1", now, &r1), STORE_EVENT_STORED);
    assert_int_equal(submit_event(a, "zd", "shared-1", now + 1, &row), STORE_EVENT_DUPLICATE);
    assert_int_equal(row, r1);
    assert_int_equal(submit_event(a, "zd", "shared-2", now + 2, &r2), STORE_EVENT_STORED);
    assert_int_equal(submit_event(b, "zd", "shared-2", now + 3, &row), STORE_EVENT_DUPLICATE);
    assert_int_equal(row, r2);
    assert_int_equal(store_count_events(a, "zd"), 3);
    /* Both wrote to one chain: received, received, duplicate, received, duplicate. */
    assert_chain_ok(a, 5);
    store_close(a);
    store_close(b);
}

static void test_newest_copy_decides_after_window(void **state)
{
    double t0 = wall_now() - 300; /* the window is 60 s */
    int64_t first, second, row;
    struct store *st = open_store();
    assert_int_equal(submit_event(st, "zd", "win-1", t0, &first), STORE_EVENT_STORED);
    /* Its twin is older than the window: stored again. */
    assert_int_equal(submit_event(st, "zd", "win-1", t0 + 61, &second), STORE_EVENT_STORED);
    assert_int_not_equal(second, first);
    /* A third copy is inside the second's window (not the first's). */
    assert_int_equal(submit_event(st, "zd", "win-1", t0 + 62, &row), STORE_EVENT_DUPLICATE);
    assert_int_equal(row, second);
    store_close(st);

    /* The same after a restart. */
    st = open_store();
    assert_int_equal(submit_event(st, "zd", "win-1", t0 + 90, &row), STORE_EVENT_DUPLICATE);
    assert_int_equal(row, second);
    assert_int_equal(submit_event(st, "zd", "win-1", t0 + 200, &row), STORE_EVENT_STORED);
    assert_int_not_equal(row, first);
    assert_int_not_equal(row, second);
    assert_int_equal(store_count_events(st, "zd"), 3);
    store_close(st);
}

struct rows {
    int64_t row[16];
    char status[16][16], source[16][16], id[16][16], body[16][32], headers[16][32], ctype[16][32];
    int n;
};

static int collect_row(const struct store_event_row *r, void *ctx)
{
    struct rows *c = ctx;
    if (c->n < 16) {
        int i = c->n;
        c->row[i] = r->row;
        snprintf(c->status[i], 16, "%s", r->status);
        snprintf(c->source[i], 16, "%s", r->source);
        snprintf(c->id[i], 16, "%s", r->event_id);
        snprintf(c->body[i], 32, "%.*s", (int)r->body_len, (const char *)r->body);
        snprintf(c->headers[i], 32, "%s", r->headers_json);
        snprintf(c->ctype[i], 32, "%s", r->content_type);
    }
    c->n++;
    return 0;
}

static struct rows events_where(struct store *st, const struct store_event_filter *f)
{
    struct rows c = {0};
    char err[200];
    if (store_events_scan(st, f, collect_row, &c, err, sizeof err) != 0)
        fail_msg("events scan: %s", err);
    return c;
}

/* events_scan: every column read back, each filter, oldest first, a limit. */
static void test_events_scan_filters(void **state)
{
    struct store *st = open_store();
    double now = wall_now();
    struct store_op op;
    json_t *rec;
    fill_event_from(&op, "crm", "e-1", now, &rec);
    op.u.event.headers_json = "{\"x-a\":\"1\"}";
    op.u.event.content_type = "text/plain";
    op.u.event.body = (const unsigned char *)"hello\0world";
    op.u.event.body_len = 11;
    assert_int_equal(store_submit_wait(st, &op), 0);
    json_decref(rec);
    int64_t row;
    fill_event_from(&op, "zd", "e-2", now, &rec);
    op.u.event.status = "rule_failed";
    assert_int_equal(store_submit_wait(st, &op), 0);
    json_decref(rec);
    assert_int_equal(submit_event(st, "zd", "e-3", now, &row), STORE_EVENT_STORED);
    assert_int_equal(submit_event(st, "crm", "e-2", now, &row), STORE_EVENT_STORED);

    struct store_event_filter f = {0};
    struct rows r = events_where(st, &f);
    assert_int_equal(r.n, 4);
    assert_true(r.row[0] < r.row[1] && r.row[1] < r.row[2] && r.row[2] < r.row[3]);
    assert_string_equal(r.id[0], "e-1");
    assert_string_equal(r.source[0], "crm");
    assert_string_equal(r.ctype[0], "text/plain");
    assert_string_equal(r.headers[0], "{\"x-a\":\"1\"}");
    assert_memory_equal(r.body[0], "hello", 6); /* the body up to its NUL, bytes kept */
    f = (struct store_event_filter){.status = "rule_failed"};
    r = events_where(st, &f);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.id[0], "e-2");
    assert_string_equal(r.status[0], "rule_failed");
    f = (struct store_event_filter){.source = "crm"};
    r = events_where(st, &f);
    assert_int_equal(r.n, 2);
    f = (struct store_event_filter){.event_id = "e-2"};
    r = events_where(st, &f);
    assert_int_equal(r.n, 2);
    f = (struct store_event_filter){.event_id = "e-2", .source = "crm"};
    r = events_where(st, &f);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.source[0], "crm");
    f = (struct store_event_filter){.limit = 2};
    r = events_where(st, &f);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.id[0], "e-1");
    assert_string_equal(r.id[1], "e-2");
    f = (struct store_event_filter){.event_id = "never"};
    r = events_where(st, &f);
    assert_int_equal(r.n, 0);
    store_close(st);
}

/* ---- jobs ---- */

static void test_jobs_queued_in_same_transaction(void **state)
{
    struct store *st = open_store();
    struct store_op a;
    json_t *ra;
    struct store_job_spec jobs[2] = {
        {"route_did", "PATCH", "/v3/dids/x", "{}", "f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c", NULL,
         "did:f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c"},
        {"route_did", "PATCH", "/v3/dids/number:4371234567", "{}", NULL, "4371234567",
         "number:4371234567"},
    };
    fill_event(&a, "evt-jobs", (double)time(NULL), &ra);
    a.u.event.jobs = jobs;
    a.u.event.njobs = 2;
    assert_int_equal(store_submit_wait(st, &a), 0);
    struct collect c = {0};
    struct store_audit_filter f = {.kind = "job.*"};
    scan(st, &f, &c);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.kinds[0], "job.queued");
    /* filter by number finds the job of the DID named by number and its event,
     * not the other DID's job of the same event */
    struct store_audit_filter fn = {.number = "+43 71 234 567"};
    scan(st, &fn, &c);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.kinds[0], "event.received");
    assert_string_equal(c.kinds[1], "job.queued");
    struct joblist l = jobs_in(st, "pending");
    assert_int_equal(l.n, 2);
    assert_string_equal(l.j[1].order_key, "number:4371234567");
    double age = -1;
    assert_int_equal(store_jobs_depth(st, NULL, wall_now() + 10, &age), 2);
    assert_true(age >= 10 && age < 100);
    assert_int_equal(store_jobs_depth(st, "running", wall_now(), &age), 0);
    assert_true(age == 0);
    json_decref(ra);
    store_close(st);
}

static const struct store_job_spec spec_a = {"route_did", "PATCH", "/v3/dids/d-a", "{\"n\":1}",
                                             "d-a",       NULL,    "did:d-a"};
static const struct store_job_spec spec_b = {"route_did", "PATCH", "/v3/dids/d-b", "{}",
                                             "d-b",       NULL,    "did:d-b"};

/* One job of a key at a time, oldest first; a running job holds its key until
 * it finishes or its lease ends; a retry waits for its time. */
static void test_claim_fifo_per_key(void **state)
{
    struct store *st = open_store();
    const struct store_job_spec three[3] = {spec_a, spec_a, spec_b};
    submit_jobs(st, "f-1", three, 3); /* jobs 1, 2 (key d-a), 3 (key d-b) */
    int64_t ids[8];
    double now = wall_now();
    assert_int_equal(claim(st, now, 10, NULL, ids), 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 3);
    /* both keys busy: nothing else is due */
    assert_int_equal(claim(st, now, 10, NULL, ids), 0);
    assert_int_equal(store_jobs_depth(st, "running", now, &(double){0}), 2);
    /* job 1 done: job 2 is next of its key */
    json_t *rec = audit_record_new("job.done", "zd", "f-1");
    json_object_set_new(rec, "job_id", json_integer(1));
    assert_int_equal(job_move(st, 1, "done", NULL, 0, rec), STORE_JOB_MOVED);
    json_decref(rec);
    assert_int_equal(claim(st, now, 10, NULL, ids), 1);
    assert_int_equal(ids[0], 2);
    /* job 2 retried in an hour: not due before; job 3's lease (60 s) ends
     * first, and it is claimed again */
    assert_int_equal(job_move(st, 2, "pending", NULL, now + 3600, NULL), STORE_JOB_MOVED);
    assert_int_equal(claim(st, now + 1, 10, NULL, ids), 0);
    assert_int_equal(claim(st, now + 100, 10, NULL, ids), 1);
    assert_int_equal(ids[0], 3);
    assert_int_equal(claim(st, now + 3601, 10, NULL, ids), 2); /* and 3's lease ended again */
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 3);
    /* the claim respects max */
    assert_int_equal(job_move(st, 2, "dead", NULL, 0, NULL), STORE_JOB_MOVED);
    assert_int_equal(job_move(st, 3, "pending", NULL, now, NULL), STORE_JOB_MOVED);
    submit_jobs(st, "f-2", &spec_a, 1); /* job 4 */
    assert_int_equal(claim(st, now + 3800, 1, NULL, ids), 1);
    assert_int_equal(ids[0], 3);
    struct joblist l = jobs_in(st, NULL);
    assert_int_equal(l.n, 4);
    assert_string_equal(job_row(&l, 1)->state, "done");
    assert_string_equal(job_row(&l, 2)->state, "dead");
    assert_string_equal(job_row(&l, 3)->state, "running");
    assert_string_equal(job_row(&l, 4)->state, "pending");
    assert_int_equal(job_row(&l, 1)->last_status, 200);
    assert_int_equal(jobs_in(st, "done").n, 1);
    /* the job.done record went in with the change */
    struct collect c = {0};
    struct store_audit_filter f = {.job_id = 1};
    scan(st, &f, &c);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.kinds[0], "job.queued");
    assert_string_equal(c.kinds[1], "job.done");
    store_close(st);
}

/* A later pending job of the same action and path replaces an earlier one. */
static bool same_request(const struct store_job *later, const struct store_job *earlier)
{
    return strcmp(later->action, earlier->action) == 0 && strcmp(later->path, earlier->path) == 0;
}

static void test_claim_coalesces(void **state)
{
    struct store *st = open_store();
    const struct store_job_spec four[4] = {spec_a, spec_b, spec_a, spec_a};
    submit_jobs(st, "co-1", four, 4);
    int64_t ids[8];
    /* the heads were 1 and 2; 1 is superseded by 4, which the next claim takes */
    assert_int_equal(claim(st, wall_now(), 10, same_request, ids), 1);
    assert_int_equal(ids[0], 2);
    assert_int_equal(claim(st, wall_now(), 10, same_request, ids), 1);
    assert_int_equal(ids[0], 4);
    struct joblist l = jobs_in(st, "superseded");
    assert_int_equal(l.n, 2);
    assert_int_equal(l.j[0].id, 1);
    assert_int_equal(l.j[1].id, 3);
    struct collect c = {.keep = true};
    struct store_audit_filter f = {.kind = "job.superseded"};
    scan(st, &f, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(json_integer_value(json_object_get(c.recs[0], "job_id")), 1);
    assert_string_equal(json_string_value(json_object_get(c.recs[0], "did")), "d-a");
    json_t *d = json_object_get(c.recs[0], "detail");
    assert_int_equal(json_integer_value(json_object_get(d, "superseded_by")), 4);
    assert_string_equal(json_string_value(json_object_get(d, "action")), "route_did");
    assert_int_equal(json_integer_value(json_object_get(c.recs[1], "job_id")), 3);
    collect_free(&c);
    store_close(st);
}

static void test_job_transition_outcomes(void **state)
{
    struct store *st = open_store();
    submit_jobs(st, "t-1", &spec_a, 1);
    char err[200];
    assert_int_equal(job_move(st, 1, "dead", NULL, 0, NULL), STORE_JOB_MOVED);
    assert_int_equal(
        store_job_transition(st, 1, "pending", "dead", "admin.job_retry", "ops", err, sizeof err),
        STORE_JOB_MOVED);
    assert_int_equal(
        store_job_transition(st, 1, "pending", "dead", "admin.job_retry", "ops", err, sizeof err),
        STORE_JOB_WRONG_STATE);
    assert_int_equal(
        store_job_transition(st, 7, "pending", "dead", "admin.job_retry", "ops", err, sizeof err),
        STORE_JOB_NOT_FOUND);
    assert_int_equal(store_job_transition(st, 1, "cancelled", "pending", "job.cancelled", "ops",
                                          err, sizeof err),
                     STORE_JOB_MOVED);
    /* one record per move, naming who */
    struct collect c = {.keep = true};
    struct store_audit_filter f = {.job_id = 1, .kind = "admin.*"};
    scan(st, &f, &c);
    assert_int_equal(c.n, 1);
    json_t *d = json_object_get(c.recs[0], "detail");
    assert_string_equal(json_string_value(json_object_get(d, "by")), "ops");
    collect_free(&c);
    f = (struct store_audit_filter){.job_id = 1};
    scan(st, &f, &c);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.kinds[2], "job.cancelled");
    collect_free(&c);
    int64_t ids[4];
    assert_int_equal(claim(st, wall_now(), 10, NULL, ids), 0);
    store_close(st);
}

/* A number learnt to be a DID: its jobs join the DID's key, and a job being
 * delivered behind an earlier job of that DID waits its turn. */
static void test_map_number_rekeys(void **state)
{
    struct store *st = open_store();
    const struct store_job_spec by_number = {
        "route_did", "PATCH",      "/v3/dids/number:4371234567", "{}",
        NULL,        "4371234567", "number:4371234567"};
    submit_jobs(st, "m-1", &spec_a, 1);    /* job 1: did:d-a */
    submit_jobs(st, "m-2", &by_number, 1); /* job 2: number:... */
    submit_jobs(st, "m-3", &by_number, 1); /* job 3: number:... */
    /* job 3 names the DID by a number never resolved: a later job by id waits */
    assert_true(store_jobs_unresolved_before(st, 4));
    assert_false(store_jobs_unresolved_before(st, 2));
    int64_t ids[8];
    assert_int_equal(claim(st, wall_now(), 10, NULL, ids), 2); /* jobs 1 and 2 */
    struct store_op map = {
        .kind = STORE_OP_MAP_NUMBER,
        .u.map_number = {.number = "4371234567", .did = "d-a", .job_id = 2, .at = wall_now()}};
    assert_int_equal(store_submit_wait(st, &map), 0);
    assert_int_equal(map.u.map_number.result, STORE_MAP_MUST_WAIT);
    struct joblist l = jobs_in(st, NULL);
    assert_string_equal(job_row(&l, 2)->order_key, "did:d-a");
    assert_string_equal(job_row(&l, 2)->state, "pending");
    assert_string_equal(job_row(&l, 3)->order_key, "did:d-a");
    assert_string_equal(job_row(&l, 3)->did, "d-a");
    /* one FIFO now: nothing until job 1 finishes, then job 2 */
    assert_int_equal(claim(st, wall_now(), 10, NULL, ids), 0);
    assert_int_equal(job_move(st, 1, "done", NULL, 0, NULL), STORE_JOB_MOVED);
    assert_int_equal(claim(st, wall_now(), 10, NULL, ids), 1);
    assert_int_equal(ids[0], 2);
    /* mapping again without a job in flight: mapped */
    map.u.map_number = (struct store_op_map_number){
        .number = "4371234567", .did = "d-a", .job_id = 0, .at = wall_now()};
    assert_int_equal(store_submit_wait(st, &map), 0);
    assert_int_equal(map.u.map_number.result, STORE_MAP_MAPPED);
    /* a later job by that number joins the DID's key at once */
    submit_jobs(st, "m-4", &by_number, 1);
    l = jobs_in(st, NULL);
    assert_string_equal(job_row(&l, 4)->order_key, "did:d-a");
    store_close(st);
}

/* Every running job back to pending (a start after a crash). */
static void test_release_running_jobs(void **state)
{
    struct store *st = open_store();
    const struct store_job_spec two[2] = {spec_a, spec_b};
    submit_jobs(st, "rel-1", two, 2);
    int64_t ids[4];
    assert_int_equal(claim(st, wall_now(), 10, NULL, ids), 2);
    struct store_op rel = {.kind = STORE_OP_RELEASE, .u.release = {.at = wall_now()}};
    assert_int_equal(store_submit_wait(st, &rel), 0);
    assert_int_equal(rel.u.release.result, STORE_WRITE_DONE);
    assert_int_equal(rel.u.release.released, 2);
    assert_int_equal(jobs_in(st, "pending").n, 2);
    assert_int_equal(claim(st, wall_now(), 10, NULL, ids), 2);
    store_close(st);
}

/* A rule_failed event planned again: once. */
static void test_replan_once(void **state)
{
    struct store *st = open_store();
    struct store_op op;
    json_t *rec;
    fill_event(&op, "rp-1", wall_now(), &rec);
    op.u.event.status = "rule_failed";
    assert_int_equal(store_submit_wait(st, &op), 0);
    json_decref(rec);
    int64_t row = op.u.event.row;
    json_t *decided = audit_record_new("rule.decided", "zd", "rp-1");
    struct store_op rp = {.kind = STORE_OP_REPLAN,
                          .u.replan = {.row = row,
                                       .source = "zd",
                                       .event_id = "rp-1",
                                       .received_at = wall_now(),
                                       .status = "accepted",
                                       .rule_version = "v2",
                                       .jobs = &spec_a,
                                       .njobs = 1},
                          .audit = &decided,
                          .naudit = 1};
    assert_int_equal(store_submit_wait(st, &rp), 0);
    assert_int_equal(rp.u.replan.result, STORE_REPLAN_REPLANNED);
    struct store_event_filter ef = {.event_id = "rp-1"};
    struct rows r = events_where(st, &ef);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.status[0], "accepted");
    assert_int_equal(jobs_in(st, "pending").n, 1);
    struct collect c = {0};
    struct store_audit_filter f = {.event_id = "rp-1"};
    scan(st, &f, &c);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.kinds[1], "rule.decided");
    assert_string_equal(c.kinds[2], "job.queued");
    /* a second reprocess finds it accepted: nothing more */
    rp.u.replan.result = STORE_REPLAN_PENDING;
    assert_int_equal(store_submit_wait(st, &rp), 0);
    assert_int_equal(rp.u.replan.result, STORE_REPLAN_NOT_RULE_FAILED);
    assert_int_equal(jobs_in(st, "pending").n, 1);
    scan(st, &f, &c);
    assert_int_equal(c.n, 3);
    json_decref(decided);
    store_close(st);
}

/* ---- control values ---- */

static void test_control_set_get_delete(void **state)
{
    struct store *st = open_store();
    char v[64];
    assert_int_equal(store_control_get(st, "delivery.paused", v, sizeof v), 0);
    json_t *rec = audit_record_new("delivery.paused", NULL, NULL);
    struct store_op op = {
        .kind = STORE_OP_CONTROL,
        .u.control = {.key = "delivery.paused", .value = "401 at 12:00", .at = wall_now()},
        .audit = &rec,
        .naudit = 1};
    assert_int_equal(store_submit_wait(st, &op), 0);
    assert_int_equal(op.u.control.result, STORE_WRITE_DONE);
    json_decref(rec);
    assert_int_equal(store_control_get(st, "delivery.paused", v, sizeof v), 1);
    assert_string_equal(v, "401 at 12:00");
    op = (struct store_op){.kind = STORE_OP_CONTROL,
                           .u.control = {.key = "delivery.paused", .value = "again", .at = 1}};
    assert_int_equal(store_submit_wait(st, &op), 0);
    assert_int_equal(store_control_get(st, "delivery.paused", v, sizeof v), 1);
    assert_string_equal(v, "again");
    store_close(st);
    st = open_store(); /* durable */
    assert_int_equal(store_control_get(st, "delivery.paused", v, sizeof v), 1);
    assert_string_equal(v, "again");
    op = (struct store_op){.kind = STORE_OP_CONTROL,
                           .u.control = {.key = "delivery.paused", .value = NULL, .at = 2}};
    assert_int_equal(store_submit_wait(st, &op), 0);
    assert_int_equal(store_control_get(st, "delivery.paused", v, sizeof v), 0);
    assert_int_equal(audit_count(st), 1);
    store_close(st);
}

/* ---- the watch (PostgreSQL: LISTEN/NOTIFY) ---- */

struct heard {
    pthread_mutex_t lock;
    int calls;
};

static void heard_fn(void *ctx)
{
    struct heard *h = ctx;
    pthread_mutex_lock(&h->lock);
    h->calls++;
    pthread_mutex_unlock(&h->lock);
}

static int heard_calls(struct heard *h)
{
    pthread_mutex_lock(&h->lock);
    int n = h->calls;
    pthread_mutex_unlock(&h->lock);
    return n;
}

/* Waits (at most 5 s) until h was called more than `after` times. */
static bool heard_more_than(struct heard *h, int after)
{
    for (int i = 0; i < 500; i++) {
        if (heard_calls(h) > after)
            return true;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* A serving store hears of every change another process (a CLI command,
 * another instance) makes that can let a job go: new jobs, and a job that
 * finishes, is cancelled or is retried (now or later). */
static void test_watch_hears_other_processes(void **state)
{
    struct store *serve = open_store();
    struct store *cli = open_store();
    struct heard h = {PTHREAD_MUTEX_INITIALIZER, 0};
    store_set_job_listener(serve, heard_fn, &h);
    /* called once when its connection is made: what became claimable unheard */
    assert_true(heard_more_than(&h, 0));
    const struct store_job_spec three[3] = {spec_a, spec_a, spec_a};
    int n = heard_calls(&h);
    submit_jobs(cli, "w-1", three, 3);
    assert_true(heard_more_than(&h, n));
    int64_t ids[4];
    assert_int_equal(claim(cli, wall_now(), 10, NULL, ids), 1);
    /* job 1 done: job 2 may go */
    n = heard_calls(&h);
    assert_int_equal(job_move(cli, 1, "done", NULL, 0, NULL), STORE_JOB_MOVED);
    assert_true(heard_more_than(&h, n));
    /* job 2 cancelled by an operator: job 3 may go */
    char err[200];
    n = heard_calls(&h);
    assert_int_equal(store_job_transition(cli, 2, "cancelled", "pending", "job.cancelled", "ops",
                                          err, sizeof err),
                     STORE_JOB_MOVED);
    assert_true(heard_more_than(&h, n));
    /* job 3 taken, then a retry scheduled for later */
    assert_int_equal(claim(cli, wall_now(), 10, NULL, ids), 1);
    assert_int_equal(ids[0], 3);
    n = heard_calls(&h);
    assert_int_equal(job_move(cli, 3, "pending", NULL, wall_now() + 30, NULL), STORE_JOB_MOVED);
    assert_true(heard_more_than(&h, n));
    store_set_job_listener(serve, NULL, NULL);
    store_close(cli);
    store_close(serve);
}

/* ---- the audit trail ---- */

static void test_chain_survives_reopen(void **state)
{
    struct store *st = open_store();
    struct store_op ops[5];
    json_t *recs[5];
    char ids[5][16];
    for (int i = 0; i < 5; i++) {
        snprintf(ids[i], sizeof ids[i], "c-%d", i);
        fill_event(&ops[i], ids[i], (double)time(NULL), &recs[i]);
        assert_int_equal(store_submit_wait(st, &ops[i]), 0);
    }
    store_close(st);
    st = open_store();
    struct store_op more;
    json_t *rm;
    fill_event(&more, "c-more", (double)time(NULL), &rm);
    assert_int_equal(store_submit_wait(st, &more), 0);
    assert_chain_ok(st, 6);
    for (int i = 0; i < 5; i++)
        json_decref(recs[i]);
    json_decref(rm);
    store_close(st);
}

static void test_limit_returns_newest_in_order(void **state)
{
    struct store *st = open_store();
    json_t *recs[4];
    struct store_op ops[4];
    const char *ids[] = {"l-0", "l-1", "l-2", "l-3"};
    for (int i = 0; i < 4; i++) {
        fill_event(&ops[i], ids[i], (double)time(NULL), &recs[i]);
        assert_int_equal(store_submit_wait(st, &ops[i]), 0);
    }
    struct collect c = {0};
    struct store_audit_filter f = {.limit = 2};
    scan(st, &f, &c);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.events[0], "l-2");
    assert_string_equal(c.events[1], "l-3");
    struct store_audit_filter fe = {.event_id = "l-3"};
    scan(st, &fe, &c);
    assert_int_equal(c.n, 1);
    for (int i = 0; i < 4; i++)
        json_decref(recs[i]);
    store_close(st);
}

/* Appends records of kinds[i] (source zd, event ids a-<i>) in one AUDIT op;
 * old: stamped 2020-01-01T00:00:0i. */
static void append_records(struct store *st, const char *const *kinds, int n, bool old)
{
    json_t *recs[16];
    assert_true(n <= 16);
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "a-%d", i);
        recs[i] = audit_record_new(kinds[i], "zd", id);
        if (old) {
            char t[32];
            snprintf(t, sizeof t, "2020-01-01T00:00:0%d.000Z", i % 10);
            json_object_set_new(recs[i], "time", json_string(t));
        }
    }
    struct store_op op = {.kind = STORE_OP_AUDIT, .audit = recs, .naudit = (size_t)n};
    if (store_submit_wait(st, &op) != 0)
        fail_msg("audit: %s", op.error);
    assert_int_equal(op.u.audit.result, STORE_WRITE_DONE);
    for (int i = 0; i < n; i++)
        json_decref(recs[i]);
}

static void test_audit_filters(void **state)
{
    struct store *st = open_store();
    static const char *const old_kinds[] = {"admin.job_retry", "job.done", "admin.pause"};
    static const char *const new_kinds[] = {"job.done", "admin.resume", "job.dead"};
    append_records(st, old_kinds, 3, true);  /* 1-3 */
    append_records(st, new_kinds, 3, false); /* 4-6 */
    int64_t row;
    assert_int_equal(submit_event(st, "crm", "x-1", wall_now(), &row), STORE_EVENT_STORED); /* 7 */
    struct collect c = {0};
    struct store_audit_filter f = {.kind = "job.done"};
    scan(st, &f, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.seqs[0], 2);
    assert_int_equal(c.seqs[1], 4);
    f = (struct store_audit_filter){.kind = "admin.*"};
    scan(st, &f, &c);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.seqs[2], 5);
    f = (struct store_audit_filter){.source = "crm"};
    scan(st, &f, &c);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.seqs[0], 7);
    f = (struct store_audit_filter){.since = wall_now() - 3600};
    scan(st, &f, &c);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.seqs[0], 4);
    f = (struct store_audit_filter){.until = 1577836802.5}; /* 2020-01-01T00:00:02.5Z */
    scan(st, &f, &c);
    assert_int_equal(c.n, 3);
    f = (struct store_audit_filter){.after_seq = 5};
    scan(st, &f, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.seqs[0], 6);
    f = (struct store_audit_filter){.after_seq = 1, .limit = 2, .oldest_first = true};
    scan(st, &f, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.seqs[0], 2);
    assert_int_equal(c.seqs[1], 3);
    f = (struct store_audit_filter){.kind = "job.*", .limit = 2};
    scan(st, &f, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.seqs[0], 4);
    assert_int_equal(c.seqs[1], 6);
    f = (struct store_audit_filter){.kind = "none.*"};
    scan(st, &f, &c);
    assert_int_equal(c.n, 0);
    store_close(st);
}

/* Retention deletes what is old (never the newest record) and leaves a
 * checkpoint the chain continues from. */
static void test_prune_leaves_checkpoint(void **state)
{
    struct store *st = open_store();
    static const char *const kinds[] = {"a.one", "a.two", "a.three"};
    append_records(st, kinds, 3, true);
    append_records(st, kinds, 2, false);
    struct collect before = {.keep = true};
    struct store_audit_filter all = {0};
    scan(st, &all, &before);
    assert_int_equal(before.n, 5);
    const char *hash3 = json_string_value(json_object_get(before.recs[2], "hash"));
    assert_non_null(hash3);

    struct store_op op = {.kind = STORE_OP_PRUNE, .u.prune = {.before = wall_now() - 86400}};
    assert_int_equal(store_submit_wait(st, &op), 0);
    assert_int_equal(op.u.prune.result, STORE_WRITE_DONE);
    assert_int_equal(op.u.prune.deleted, 3);
    struct collect after = {.keep = true};
    scan(st, &all, &after);
    assert_int_equal(after.n, 3);
    assert_int_equal(after.seqs[0], 4);
    assert_string_equal(after.kinds[2], "audit.pruned");
    json_t *d = json_object_get(after.recs[2], "detail");
    assert_int_equal(json_integer_value(json_object_get(d, "through_seq")), 3);
    assert_int_equal(json_integer_value(json_object_get(d, "deleted")), 3);
    assert_string_equal(json_string_value(json_object_get(d, "continue_hash")), hash3);
    /* the chain continues from the checkpoint */
    struct chain c = {.next = 4};
    char err[200];
    memcpy(c.prev, hash3, sizeof c.prev);
    assert_int_equal(store_audit_scan(st, &all, check_chain, &c, err, sizeof err), 0);
    assert_int_equal(c.broken, 0);
    assert_int_equal(c.next, 7);

    /* nothing old: nothing deleted, nothing appended */
    op = (struct store_op){.kind = STORE_OP_PRUNE, .u.prune = {.before = wall_now() - 86400}};
    assert_int_equal(store_submit_wait(st, &op), 0);
    assert_int_equal(op.u.prune.deleted, 0);
    assert_int_equal(audit_count(st), 3);
    /* everything old: all but the newest */
    op = (struct store_op){.kind = STORE_OP_PRUNE, .u.prune = {.before = wall_now() + 86400}};
    assert_int_equal(store_submit_wait(st, &op), 0);
    assert_int_equal(op.u.prune.deleted, 2);
    struct collect last = {0};
    scan(st, &all, &last);
    assert_int_equal(last.n, 2);
    assert_int_equal(last.seqs[0], 6);
    assert_string_equal(last.kinds[1], "audit.pruned");
    collect_free(&before);
    collect_free(&after);
    store_close(st);
}

/* ---- a DID's whole story (docs/contract.md section 6) ---- */

#define STORY_X "f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c"
#define STORY_Y "1e0c45b1-1fea-4552-b41b-ffa9f5eb44c5"
#define STORY_N "437200000007"
#define STORY_M "4371234568"

/* Stores event id of source with its rule.decided record (naming decided_did or
 * decided_number, as ingest does for a one-job plan) and jobs. */
static void story_event(struct store *st, const char *source, const char *id,
                        const struct store_job_spec *jobs, size_t njobs, const char *decided_did,
                        const char *decided_number)
{
    struct store_op op;
    json_t *recs[2];
    fill_event_from(&op, source, id, wall_now(), &recs[0]);
    recs[1] = audit_record_new("rule.decided", source, id);
    if (decided_did)
        json_object_set_new(recs[1], "did", json_string(decided_did));
    if (decided_number)
        json_object_set_new(recs[1], "number", json_string(decided_number));
    op.audit = recs;
    op.naudit = 2;
    op.u.event.jobs = jobs;
    op.u.event.njobs = njobs;
    if (store_submit_wait(st, &op) != 0)
        fail_msg("story event %s: %s", id, op.error);
    json_decref(recs[0]);
    json_decref(recs[1]);
}

/* Records a job's outcome as delivery does: its state and one record of kind
 * naming the job's DID as delivery knew it (read_number: the number DIDWW
 * reported in the before-state of a DID named by id). */
static void story_job(struct store *st, int64_t job, const char *state, const char *kind,
                      const char *event_id, const char *did, const char *number,
                      const char *read_number)
{
    json_t *rec = audit_record_new(kind, "zd", event_id);
    json_object_set_new(rec, "job_id", json_integer(job));
    if (did)
        json_object_set_new(rec, "did", json_string(did));
    if (number)
        json_object_set_new(rec, "number", json_string(number));
    if (read_number)
        json_object_set_new(json_object_get(rec, "detail"), "before",
                            json_pack("{s:s, s:n}", "number", read_number, "trunk"));
    struct store_op op = {.kind = STORE_OP_JOB,
                          .u.job = {.id = job, .state = state, .attempts = 1, .at = wall_now()},
                          .audit = &rec,
                          .naudit = 1};
    if (store_submit_wait(st, &op) != 0)
        fail_msg("job %lld: %s", (long long)job, op.error);
    json_decref(rec);
}

struct story {
    int64_t seq[64];
    int n;
};

static int collect_story(const char *text, int64_t seq, void *ctx)
{
    struct story *s = ctx;
    (void)text;
    if (s->n < 64)
        s->seq[s->n++] = seq;
    return 0;
}

static void assert_story(struct store *st, const struct store_audit_filter *f, const int64_t *want,
                         int nwant)
{
    struct story got = {0};
    char err[256];
    if (store_audit_scan(st, f, collect_story, &got, err, sizeof err) != 0)
        fail_msg("did %s number %s: %s", f->did ? f->did : "-", f->number ? f->number : "-", err);
    char g[512] = "", w[512] = "";
    for (int i = 0; i < got.n; i++)
        snprintf(g + strlen(g), sizeof g - strlen(g), " %lld", (long long)got.seq[i]);
    for (int i = 0; i < nwant; i++)
        snprintf(w + strlen(w), sizeof w - strlen(w), " %lld", (long long)want[i]);
    if (strcmp(g, w) != 0)
        fail_msg("did %s number %s kind %s: got seqs%s, wanted%s", f->did ? f->did : "-",
                 f->number ? f->number : "-", f->kind ? f->kind : "-", g, w);
}

static void test_did_story_whatever_the_naming(void **state)
{
    struct store *st = open_store();
    char err[256];
    const struct store_job_spec by_number = {"route_did", "PATCH", "/v3/dids/number:" STORY_N, "{}",
                                             NULL,        STORY_N, "number:" STORY_N};
    const struct store_job_spec by_id = {"route_did", "PATCH", "/v3/dids/" STORY_X, "{}",
                                         STORY_X,     NULL,    "did:" STORY_X};
    const struct store_job_spec y_by_id = {"route_did", "PATCH", "/v3/dids/" STORY_Y, "{}",
                                           STORY_Y,     NULL,    "did:" STORY_Y};
    const struct store_job_spec m_by_number = {
        "route_did", "PATCH", "/v3/dids/number:" STORY_M, "{}", NULL, STORY_M, "number:" STORY_M};

    /* 1-3: a rule names X by number; job 1 goes dead before the number is
     * resolved (4) and an operator retries it (5) */
    story_event(st, "zd", "s-1", &by_number, 1, NULL, STORY_N);
    story_job(st, 1, "dead", "job.dead", "s-1", NULL, STORY_N, NULL);
    assert_int_equal(
        store_job_transition(st, 1, "pending", "dead", "admin.job_retry", "test", err, sizeof err),
        STORE_JOB_MOVED);
    /* 6-8: another rule names X by id; the read before the PATCH records X's
     * number in the before-state (9) */
    story_event(st, "zd", "s-2", &by_id, 1, STORY_X, NULL);
    story_job(st, 2, "done", "job.attempt", "s-2", STORY_X, NULL, STORY_N);
    /* 10-13: one event for X (by number, job 3) and Y (by id, job 4) */
    const struct store_job_spec both[2] = {by_number, y_by_id};
    story_event(st, "zd", "s-3", both, 2, NULL, NULL);
    /* 14-16: Y alone; 17-18: another source's event with X's event id s-2 */
    story_event(st, "zd", "s-4", &y_by_id, 1, STORY_Y, NULL);
    story_event(st, "other", "s-2", NULL, 0, NULL, NULL);
    /* 19-21: Y by number M, queued before delivery learnt that M is Y */
    story_event(st, "zd", "s-5", &m_by_number, 1, NULL, STORY_M);
    struct store_op map = {.kind = STORE_OP_MAP_NUMBER,
                           .u.map_number = {.number = STORY_M, .did = STORY_Y, .at = wall_now()}};
    assert_int_equal(store_submit_wait(st, &map), 0);
    assert_int_equal(audit_count(st), 21);

    static const int64_t x_story[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    static const int64_t y_story[] = {10, 11, 13, 14, 15, 16, 19, 20, 21};
    struct store_audit_filter f = {.did = STORY_X};
    assert_story(st, &f, x_story, 12);
    /* typed in upper case, or by number as a person writes it */
    f.did = "F10D40C7-FD0B-4D63-BB9B-27810A1A8F5C";
    assert_story(st, &f, x_story, 12);
    f = (struct store_audit_filter){.number = "+43 (720) 000-0007"};
    assert_story(st, &f, x_story, 12);
    f = (struct store_audit_filter){.number = STORY_N};
    assert_story(st, &f, x_story, 12);
    f = (struct store_audit_filter){.did = STORY_Y};
    assert_story(st, &f, y_story, 9);
    f = (struct store_audit_filter){.number = "+43 71 234 568"};
    assert_story(st, &f, y_story, 9);
    /* other filters narrow the story */
    f = (struct store_audit_filter){.did = STORY_X, .kind = "job.*"};
    assert_story(st, &f, (const int64_t[]){3, 4, 8, 9, 12}, 5);
    f = (struct store_audit_filter){.number = STORY_N, .event_id = "s-2"};
    assert_story(st, &f, (const int64_t[]){6, 7, 8, 9}, 4);
    f = (struct store_audit_filter){.did = STORY_X, .limit = 2};
    assert_story(st, &f, (const int64_t[]){11, 12}, 2);
    f = (struct store_audit_filter){
        .did = STORY_X, .limit = 2, .oldest_first = true, .after_seq = 4};
    assert_story(st, &f, (const int64_t[]){5, 6}, 2);
    /* a DID or number nothing names has no story */
    f = (struct store_audit_filter){.did = "00000000-0000-4000-8000-000000000000"};
    assert_story(st, &f, NULL, 0);
    f = (struct store_audit_filter){.number = "4399999999"};
    assert_story(st, &f, NULL, 0);
    /* a number that is not in international form is refused, saying why */
    struct story got = {0};
    f = (struct store_audit_filter){.number = "0043 720 000 0007"};
    assert_int_equal(store_audit_scan(st, &f, collect_story, &got, err, sizeof err), -1);
    assert_non_null(strstr(err, "00 form"));
    assert_non_null(strstr(err, "+437200000007"));
    f = (struct store_audit_filter){.number = "0720 000 0007"};
    assert_int_equal(store_audit_scan(st, &f, collect_story, &got, err, sizeof err), -1);
    assert_non_null(strstr(err, "national form"));
    assert_int_equal(got.n, 0);
    store_close(st);
}

/* `audit verify` asks for check_columns: a stored column that no longer
 * matches its record is named with the record; a listing still answers. */
static void test_whole_trail_checks_columns(void **state)
{
    struct store *st = open_store();
    const struct store_job_spec by_id = {"route_did", "PATCH", "/v3/dids/" STORY_X, "{}",
                                         STORY_X,     NULL,    "did:" STORY_X};
    story_event(st, "zd", "c-1", &by_id, 1, STORY_X, NULL); /* 1-3 */
    story_event(st, "zd", "c-2", &by_id, 1, STORY_X, NULL); /* 4-6 */
    assert_chain_ok(st, 6);
    char time2[64], undo_time[160];
    db_text("SELECT time FROM audit WHERE seq = 2", time2, sizeof time2);
    snprintf(undo_time, sizeof undo_time, "UPDATE audit SET time = '%s' WHERE seq = 2", time2);
    const struct {
        const char *edit, *undo, *want;
    } cases[] = {
        {"UPDATE audit SET did = '" STORY_Y "' WHERE seq = 3",
         "UPDATE audit SET did = '" STORY_X "' WHERE seq = 3",
         "record seq 3 does not match its stored column 'did' (the column holds '" STORY_Y
         "', the record '" STORY_X "')"},
        {"UPDATE audit SET did = NULL WHERE seq = 6",
         "UPDATE audit SET did = '" STORY_X "' WHERE seq = 6",
         "record seq 6 does not match its stored column 'did' (the column holds nothing"},
        {"UPDATE audit SET job_id = 7 WHERE seq = 6", "UPDATE audit SET job_id = 2 WHERE seq = 6",
         "record seq 6 does not match its stored column 'job_id' (the column holds 7, the "
         "record 2)"},
        {"UPDATE audit SET event_id = 'c-9' WHERE seq = 1",
         "UPDATE audit SET event_id = 'c-1' WHERE seq = 1",
         "seq 1 does not match its stored column 'event_id'"},
        {"UPDATE audit SET kind = 'job.done' WHERE seq = 5",
         "UPDATE audit SET kind = 'rule.decided' WHERE seq = 5",
         "seq 5 does not match its stored column 'kind'"},
        {"UPDATE audit SET time = '2020-01-01T00:00:00.000Z' WHERE seq = 2", undo_time,
         "seq 2 does not match its stored column 'time'"},
        {"UPDATE audit SET source = 'other', number = '4371234567' WHERE seq = 4",
         "UPDATE audit SET source = 'zd', number = NULL WHERE seq = 4",
         "seq 4 does not match its stored column 'source'"},
        {"UPDATE audit SET number = '4371234567' WHERE seq = 4",
         "UPDATE audit SET number = NULL WHERE seq = 4",
         "seq 4 does not match its stored column 'number'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        db_exec(cases[i].edit);
        struct chain c = {.next = 1};
        struct store_audit_filter all = {.check_columns = true};
        char err[256] = "";
        memcpy(c.prev, AUDIT_GENESIS_HASH, sizeof c.prev);
        int rc = store_audit_scan(st, &all, check_chain, &c, err, sizeof err);
        if (rc != -1 || !strstr(err, cases[i].want))
            fail_msg("[%s]: rc %d err [%s], wanted [%s]", cases[i].edit, rc, err, cases[i].want);
        /* the records before it were read and verified */
        assert_int_equal(c.broken, 0);
        /* a listing without the check still shows the tampered trail */
        struct store_audit_filter listing = {0};
        struct collect seen = {0};
        scan(st, &listing, &seen);
        assert_int_equal(seen.n, 6);
        db_exec(cases[i].undo);
        assert_chain_ok(st, 6);
    }
    /* a query by column still answers (it cannot see what the column hides) */
    db_exec("UPDATE audit SET did = '" STORY_Y "' WHERE seq = 3");
    struct collect c = {0};
    struct store_audit_filter by_kind = {.kind = "job.queued"};
    scan(st, &by_kind, &c);
    assert_int_equal(c.n, 2);
    /* a record that is no longer JSON is named too */
    db_exec("UPDATE audit SET did = '" STORY_X "' WHERE seq = 3");
    db_exec("UPDATE audit SET record = substr(record, 2) WHERE seq = 2");
    struct store_audit_filter all = {.check_columns = true};
    struct chain ch = {.next = 1};
    char err[256];
    memcpy(ch.prev, AUDIT_GENESIS_HASH, sizeof ch.prev);
    assert_int_equal(store_audit_scan(st, &all, check_chain, &ch, err, sizeof err), -1);
    assert_non_null(strstr(err, "record seq 2 is not valid JSON"));
    store_close(st);
}

/* ---- outcomes, durability, migration, URLs ---- */

/* Each outcome of a job change, a claim and a re-plan has its own name. */
static void test_op_results_are_named(void **state)
{
    struct store *st = open_store();
    const struct store_job_spec spec = {"route_did", "PATCH", "/v3/dids/d-1", "{}",
                                        "d-1",       NULL,    "did:d-1"};
    story_event(st, "zd", "jr-1", &spec, 1, NULL, NULL);
    char err[200];
    /* job 1 is pending, not dead: a retry leaves it alone */
    assert_int_equal(
        store_job_transition(st, 1, "pending", "dead", "admin.job_retry", "test", err, sizeof err),
        STORE_JOB_WRONG_STATE);
    assert_int_equal(store_job_transition(st, 99, "cancelled", "pending", "job.cancelled", "test",
                                          err, sizeof err),
                     STORE_JOB_NOT_FOUND);
    struct store_op claim_op = {.kind = STORE_OP_CLAIM,
                                .u.claim = {.now = wall_now(), .lease_s = 60, .max = 1}};
    assert_int_equal(store_submit_wait(st, &claim_op), 0);
    assert_int_equal(claim_op.u.claim.result, STORE_CLAIM_CLAIMED);
    assert_int_equal(claim_op.u.claim.n, 1);
    assert_int_equal(claim_op.u.claim.jobs[0].id, 1);
    assert_string_equal(claim_op.u.claim.jobs[0].path, "/v3/dids/d-1");
    assert_string_equal(claim_op.u.claim.jobs[0].event_id, "jr-1");
    assert_int_equal(claim_op.u.claim.jobs[0].attempts, 0);
    store_job_clear(&claim_op.u.claim.jobs[0]);
    free(claim_op.u.claim.jobs);
    /* running now: a cancel (only from pending) leaves it alone; once it is
     * done nothing is due */
    assert_int_equal(store_job_transition(st, 1, "cancelled", "pending", "job.cancelled", "test",
                                          err, sizeof err),
                     STORE_JOB_WRONG_STATE);
    struct store_op done = {.kind = STORE_OP_JOB,
                            .u.job = {.id = 1, .state = "done", .attempts = 1, .at = wall_now()}};
    assert_int_equal(store_submit_wait(st, &done), 0);
    assert_int_equal(done.u.job.result, STORE_JOB_MOVED);
    claim_op = (struct store_op){.kind = STORE_OP_CLAIM,
                                 .u.claim = {.now = wall_now(), .lease_s = 60, .max = 1}};
    assert_int_equal(store_submit_wait(st, &claim_op), 0);
    assert_int_equal(claim_op.u.claim.result, STORE_CLAIM_NONE);
    free(claim_op.u.claim.jobs);
    /* the event was accepted, not rule_failed: a re-plan leaves it alone */
    struct store_op replan = {.kind = STORE_OP_REPLAN,
                              .u.replan = {.row = 1,
                                           .source = "zd",
                                           .event_id = "jr-1",
                                           .received_at = wall_now(),
                                           .status = "accepted"}};
    assert_int_equal(store_submit_wait(st, &replan), 0);
    assert_int_equal(replan.u.replan.result, STORE_REPLAN_NOT_RULE_FAILED);
    store_close(st);
}

/* Everything committed is there after the store is closed and opened again. */
static void test_reopen_keeps_everything(void **state)
{
    struct store *st = open_store();
    const struct store_job_spec two[2] = {spec_a, spec_b};
    submit_jobs(st, "d-1", two, 2);
    int64_t row;
    assert_int_equal(submit_event(st, "crm", "d-2", wall_now(), &row), STORE_EVENT_STORED);
    int64_t ids[4];
    assert_int_equal(claim(st, wall_now(), 1, NULL, ids), 1);
    store_close(st);

    st = open_store();
    assert_int_equal(store_count_events(st, NULL), 2);
    struct joblist l = jobs_in(st, NULL);
    assert_int_equal(l.n, 2);
    assert_string_equal(job_row(&l, 1)->state, "running");
    assert_string_equal(job_row(&l, 2)->state, "pending");
    assert_chain_ok(st, 4); /* received, queued, queued, received */
    assert_int_equal(submit_event(st, "zd", "d-1", wall_now(), &row), STORE_EVENT_DUPLICATE);
    store_close(st);

    /* a read-only handle (the CLI) sees the same */
    struct store_options o = options();
    o.read_only = true;
    char err[256];
    assert_int_equal(store_open(&o, &st, err, sizeof err), 0);
    assert_int_equal(store_count_events(st, NULL), 2);
    assert_int_equal(audit_count(st), 5);
    store_close(st);
}

/* An empty database is migrated to this build's schema at the first open. */
static void test_migrates_from_empty(void **state)
{
    struct store_options o = options();
    int version = -1, build = -1;
    char err[256];
    int info = store_schema_info(&o, &version, &build, err, sizeof err);
    if (backend == BACKEND_PG) {
        assert_int_equal(info, 1);
        assert_int_equal(version, 0);
        assert_true(build >= 1);
        /* what `hookline version` names */
        assert_int_equal(store_build_schema_version(STORE_SCHEME_POSTGRESQL), build);
    } else {
        assert_int_equal(info, 0); /* SQLite: `hookline version` names the schema */
        assert_true(store_sqlite_schema_version() >= 1);
        assert_int_equal(store_build_schema_version(STORE_SCHEME_SQLITE),
                         store_sqlite_schema_version());
        assert_int_equal(store_build_schema_version(STORE_SCHEME_UNKNOWN), -1);
    }
    struct store *st = open_store();
    assert_int_equal(store_count_events(st, NULL), 0);
    assert_int_equal(audit_count(st), 0);
    assert_int_equal(jobs_in(st, NULL).n, 0);
    store_close(st);
    if (backend == BACKEND_PG) {
        assert_int_equal(store_schema_info(&o, &version, &build, err, sizeof err), 1);
        assert_int_equal(version, build);
    }
    /* opening a migrated store again changes nothing */
    st = open_store();
    int64_t row;
    assert_int_equal(submit_event(st, "zd", "mig-1", wall_now(), &row), STORE_EVENT_STORED);
    store_close(st);
}

/* Store URLs: the one reader of a scheme prefix, and its inverse. */
static void test_store_urls(void **state)
{
    const char *rest = NULL;
    assert_int_equal(store_url_scheme("sqlite:/var/h.db", &rest), STORE_SCHEME_SQLITE);
    assert_string_equal(rest, "/var/h.db");
    assert_int_equal(store_url_scheme("sqlite:", &rest), STORE_SCHEME_SQLITE);
    assert_string_equal(rest, "");
    assert_int_equal(store_url_scheme("postgresql://db/hl", &rest), STORE_SCHEME_POSTGRESQL);
    assert_string_equal(rest, "postgresql://db/hl");
    assert_int_equal(store_url_scheme("postgres://db/hl", NULL), STORE_SCHEME_POSTGRESQL);
    assert_int_equal(store_url_scheme("SQLITE:x", &rest), STORE_SCHEME_UNKNOWN);
    assert_string_equal(rest, "SQLITE:x");
    assert_int_equal(store_url_scheme("var/h.db", NULL), STORE_SCHEME_UNKNOWN);
    char out[24];
    assert_int_equal(store_url_make(STORE_SCHEME_SQLITE, "/var/h.db", out, sizeof out), 0);
    assert_string_equal(out, "sqlite:/var/h.db");
    assert_int_equal(store_url_make(STORE_SCHEME_POSTGRESQL, "postgres://db/hl", out, sizeof out),
                     0);
    assert_string_equal(out, "postgres://db/hl");
    assert_int_equal(
        store_url_make(STORE_SCHEME_SQLITE, "/longer/than/the/buffer.db", out, sizeof out), -1);
    assert_string_equal(out, "");
    assert_int_equal(store_url_make(STORE_SCHEME_UNKNOWN, "x", out, sizeof out), -1);
}

/* A URL no backend of this build serves is refused at open. */
static void test_open_refuses_unserved_scheme(void **state)
{
    const char *urls[] = {"mysql://localhost/h", "redis://127.0.0.1/0", "var/h.db"};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        struct store_options o = {.url = urls[i]};
        struct store *st = NULL;
        char err[256] = "";
        assert_int_equal(store_open(&o, &st, err, sizeof err), -1);
        assert_null(st);
        assert_non_null(strstr(err, "unsupported store URL scheme"));
    }
}

/* ---- one fresh database per test ---- */

static int setup(void **state)
{
    (void)state;
    if (backend == BACKEND_SQLITE) {
        test_tmpdir(dir, sizeof dir);
        snprintf(dbpath, sizeof dbpath, "%s/store.db", dir);
        snprintf(url, sizeof url, "sqlite:%s", dbpath);
        return 0;
    }
    unsigned char rnd[8];
    int fd = open("/dev/urandom", O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, rnd, sizeof rnd), (ssize_t)sizeof rnd);
    close(fd);
    int n = snprintf(pg_db, sizeof pg_db, "hl_");
    for (size_t i = 0; i < sizeof rnd; i++)
        n += snprintf(pg_db + n, sizeof pg_db - (size_t)n, "%02x", rnd[i]);
    char sql[96];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", pg_db);
    pg_admin(sql);
    pg_url_with_db(pg_base_url, pg_db, url, sizeof url);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (backend == BACKEND_PG && pg_db[0]) {
        char sql[96];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", pg_db);
        pg_admin(sql);
        pg_db[0] = '\0';
    }
    return 0;
}

/* Selects the backend (argv[1], else HOOKLINE_TEST_STORE, else sqlite); pg
 * needs the server's URL and password file. Returns 0 or -1 (message printed). */
static int choose_backend(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : getenv("HOOKLINE_TEST_STORE");
    if (!name || !*name || strcmp(name, "sqlite") == 0)
        return 0;
    if (strcmp(name, "pg") != 0) {
        fprintf(stderr, "test_store_conformance: backend must be sqlite or pg, not '%s'\n", name);
        return -1;
    }
    backend = BACKEND_PG;
    pg_base_url = getenv("HOOKLINE_TEST_PG_URL");
    const char *passfile = getenv("HOOKLINE_TEST_PG_PASSFILE");
    if (!pg_base_url || !*pg_base_url || !passfile || !*passfile) {
        fprintf(stderr, "test_store_conformance pg: needs HOOKLINE_TEST_PG_URL and "
                        "HOOKLINE_TEST_PG_PASSFILE (scripts/test.sh sets them)\n");
        return -1;
    }
    FILE *f = fopen(passfile, "r");
    if (!f || !fgets(pg_password, sizeof pg_password, f)) {
        fprintf(stderr, "test_store_conformance pg: cannot read HOOKLINE_TEST_PG_PASSFILE\n");
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    pg_password[strcspn(pg_password, "\r\n")] = '\0';
    return 0;
}

#define CASE(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(int argc, char **argv)
{
    if (choose_backend(argc, argv) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        CASE(test_store_once_then_duplicate),
        CASE(test_key_released_after_window),
        CASE(test_duplicate_found_after_restart),
        CASE(test_duplicate_across_two_handles),
        CASE(test_newest_copy_decides_after_window),
        CASE(test_events_scan_filters),
        CASE(test_jobs_queued_in_same_transaction),
        CASE(test_claim_fifo_per_key),
        CASE(test_claim_coalesces),
        CASE(test_job_transition_outcomes),
        CASE(test_map_number_rekeys),
        CASE(test_release_running_jobs),
        CASE(test_replan_once),
        CASE(test_control_set_get_delete),
        CASE(test_chain_survives_reopen),
        CASE(test_limit_returns_newest_in_order),
        CASE(test_audit_filters),
        CASE(test_prune_leaves_checkpoint),
        CASE(test_did_story_whatever_the_naming),
        CASE(test_whole_trail_checks_columns),
        CASE(test_op_results_are_named),
        CASE(test_reopen_keeps_everything),
        CASE(test_migrates_from_empty),
        cmocka_unit_test(test_store_urls),
        cmocka_unit_test(test_open_refuses_unserved_scheme),
    };
    /* The watch is a capability: PostgreSQL has it, SQLite's workers poll. */
    const struct CMUnitTest pg_only[] = {
        CASE(test_watch_hears_other_processes),
    };
    if (backend == BACKEND_PG) {
        int failed =
            cmocka_run_group_tests_name("store conformance (postgresql)", tests, NULL, NULL);
        return failed +
               cmocka_run_group_tests_name("store watch (postgresql)", pg_only, NULL, NULL);
    }
    return cmocka_run_group_tests_name("store conformance (sqlite)", tests, NULL, NULL);
}
