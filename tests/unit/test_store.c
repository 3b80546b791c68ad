/*
 * test_store: the SQLite backend's own machinery on a real file (what every
 * backend must do is in test_store_conformance.c): the dedupe set (preloaded
 * at open, catching up with other handles, bounded, a duplicate inside one
 * group commit), the per-block Bloom filters of audit records and events
 * (backfilled at open, pruned with their records, their key lists), migrations
 * of an old file, a newer schema refused, and a locked file failing a commit
 * for every op of the batch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <time.h>

#include "audit.h"
#include "store/sqlite/dedupe.h"
#include "log.h"
#include "store/store.h"
#include "test_util.h"

static char dir[512];
static char dbpath[700];
static char url[760];

static struct store *open_store_with(int busy_timeout_ms, int queue_max, int batch_max,
                                     size_t dedupe_max_keys, bool preload)
{
    struct store *st = NULL;
    char err[256];
    struct store_options o = {.url = url,
                              .busy_timeout_ms = busy_timeout_ms,
                              .queue_max = queue_max,
                              .batch_max = batch_max,
                              .dedupe_max_keys = dedupe_max_keys,
                              .dedupe_preload = preload};
    int rc = store_open(&o, &st, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "store_open: %s\n", err);
    assert_int_equal(rc, 0);
    return st;
}

static struct store *open_store_tuned(int busy_timeout_ms, int queue_max, int batch_max,
                                      size_t dedupe_max_keys)
{
    return open_store_with(busy_timeout_ms, queue_max, batch_max, dedupe_max_keys, false);
}

/* As serve opens it: the dedupe set loaded at open. */
static struct store *open_store_preloaded(void)
{
    return open_store_with(100, 100, 16, 0, true);
}

static struct store *open_store(void)
{
    return open_store_tuned(100, 100, 16, 0);
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

struct collect {
    char kinds[64][32];
    char events[64][32];
    int n;
};

static int collect_kind(const char *text, int64_t seq, void *ctx)
{
    struct collect *c = ctx;
    json_t *r = json_loads(text, 0, NULL);
    if (c->n < 64) {
        const char *ev = json_string_value(json_object_get(r, "event_id"));
        snprintf(c->kinds[c->n], 32, "%s", json_string_value(json_object_get(r, "kind")));
        snprintf(c->events[c->n++], 32, "%s", ev ? ev : "");
    }
    json_decref(r);
    return 0;
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

static void test_migrates_old_file(void **state)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    /* Schema version 1 exactly as shipped. */
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE events (id INTEGER PRIMARY KEY, source TEXT NOT NULL,"
                     " event_id TEXT NOT NULL, dedupe_key TEXT, received_at REAL NOT NULL,"
                     " status TEXT NOT NULL, content_type TEXT NOT NULL,"
                     " headers TEXT NOT NULL, body BLOB NOT NULL,"
                     " UNIQUE (source, dedupe_key));"
                     "CREATE INDEX events_by_event_id ON events (event_id);"
                     "INSERT INTO events (source, event_id, dedupe_key, received_at,"
                     " status, content_type, headers, body) VALUES ('zd', 'old-1',"
                     " 'old-1', strftime('%s','now'), 'accepted', 'application/json',"
                     " '{}', x'7b7d');"
                     "PRAGMA user_version = 1;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);

    struct store *st = open_store();
    assert_int_equal(store_count_events(st, "zd"), 1);
    struct store_op dup;
    json_t *r;
    fill_event(&dup, "old-1", (double)time(NULL), &r);
    assert_int_equal(store_submit_wait(st, &dup), 0);
    assert_int_equal(dup.u.event.result, STORE_EVENT_DUPLICATE);
    json_decref(r);
    store_close(st);

    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), store_sqlite_schema_version());
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static void test_newer_schema_refused(void **state)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct store *st = NULL;
    char err[256];
    struct store_options o = {.url = url, .busy_timeout_ms = 100};
    assert_int_equal(store_open(&o, &st, err, sizeof err), -1);
    assert_non_null(strstr(err, "newer than this build"));
}

static void test_locked_database_fails_batch(void **state)
{
    struct store *st = open_store();
    sqlite3 *db;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    struct store_op a;
    json_t *ra;
    fill_event(&a, "locked-1", (double)time(NULL), &ra);
    assert_int_equal(store_submit_wait(st, &a), -1);
    assert_int_equal(a.u.event.result, STORE_EVENT_FAILED);
    assert_non_null(strstr(a.error, "store unavailable"));
    char why[200];
    assert_false(store_ready(st, why, sizeof why));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    /* The same event is stored once the lock is gone; the chain is intact. */
    struct store_op b;
    json_t *rb;
    fill_event(&b, "locked-1", (double)time(NULL), &rb);
    assert_int_equal(store_submit_wait(st, &b), 0);
    assert_int_equal(b.u.event.result, STORE_EVENT_STORED);
    assert_true(store_ready(st, why, sizeof why));
    assert_chain_ok(st, 1);
    json_decref(ra);
    json_decref(rb);
    store_close(st);
}

static void test_queue_full_refuses(void **state)
{
    struct store *st = NULL;
    char err[256];
    struct store_options o = {.url = url, .busy_timeout_ms = 2000, .queue_max = 1, .batch_max = 1};
    assert_int_equal(store_open(&o, &st, err, sizeof err), 0);
    /* Hold the write lock so the writer is stuck on the first op. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    struct store_op ops[3];
    json_t *recs[3];
    int refused = 0;
    const char *ids[] = {"q-0", "q-1", "q-2"};
    for (int i = 0; i < 3; i++) {
        fill_event(&ops[i], ids[i], (double)time(NULL), &recs[i]);
        ops[i].done = NULL;
        if (store_submit(st, &ops[i]) < 0) {
            refused++;
            assert_non_null(strstr(ops[i].error, "queue is full"));
        }
    }
    assert_true(refused >= 1);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    store_close(st); /* flushes what was queued */
    for (int i = 0; i < 3; i++)
        json_decref(recs[i]);
}

/* ---- helpers of the dedupe and audit-block tests ---- */

/* Counts ops finished through their done callback. */
struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
};

static void waiter_done(struct store_op *op, void *ctx)
{
    struct waiter *w = ctx;
    (void)op;
    pthread_mutex_lock(&w->lock);
    w->done++;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void waiter_wait(struct waiter *w, int n)
{
    pthread_mutex_lock(&w->lock);
    while (w->done < n)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

static void submit_async(struct store *st, struct store_op *op, struct waiter *w)
{
    op->done = waiter_done;
    op->done_ctx = w;
    assert_int_equal(store_submit(st, op), 0);
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
        fprintf(stderr, "submit %s/%s: %s\n", source, id, op.error);
    assert_int_equal(rc, 0);
    json_decref(rec);
    *row = op.u.event.row;
    return op.u.event.result;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs sql on the store's file through a connection of the test's own. */
static void db_exec(const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, msg ? msg : "?");
    sqlite3_free(msg);
    sqlite3_close(db);
    assert_int_equal(rc, SQLITE_OK);
}

static int64_t db_int(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

/* Audit records are filed in blocks of this many seqs (SQLITE_BLOOM_BLOCK). */
#define BLOCK 4096

/* The blocks with a filter row in table (audit_event_blooms or
 * event_id_blooms, whose first two columns after block are the row range), as
 * a bit mask; each row must span exactly its block. */
static unsigned bloom_blocks_of(const char *table)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    unsigned mask = 0;
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT * FROM %s ORDER BY block", table);
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    while (sqlite3_step(q) == SQLITE_ROW) {
        int64_t b = sqlite3_column_int64(q, 0);
        assert_true(b >= 0 && b < 32);
        assert_int_equal(sqlite3_column_int64(q, 1), b * BLOCK + 1);
        assert_int_equal(sqlite3_column_int64(q, 2), (b + 1) * BLOCK);
        assert_true(sqlite3_column_bytes(q, 4) > 0);
        mask |= 1u << b;
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return mask;
}

static unsigned bloom_blocks(void)
{
    return bloom_blocks_of("audit_event_blooms");
}

#define NEEDLE "needle-evt"

/* The event id of audit record `seq` in the block tests: NEEDLE at the chosen
 * seqs, none on every 7th record, else an id of its own ("ev-<seq>"). */
static const char *block_test_id(int64_t seq, const int64_t *needles, size_t nneedles, char buf[32])
{
    for (size_t i = 0; i < nneedles; i++)
        if (needles[i] == seq)
            return NEEDLE;
    if (seq % 7 == 0)
        return NULL;
    snprintf(buf, 32, "ev-%lld", (long long)seq);
    return buf;
}

/* Appends the audit records seq from..to (the store's newest is from - 1),
 * 512 to an op so that thousands take a few commits. */
static void append_audit_range(struct store *st, int64_t from, int64_t to, const int64_t *needles,
                               size_t nneedles)
{
    enum { CHUNK = 512 };
    json_t *recs[CHUNK];
    int64_t seq = from;
    while (seq <= to) {
        size_t n = 0;
        for (; n < CHUNK && seq <= to; n++, seq++) {
            char buf[32];
            recs[n] =
                audit_record_new("test.record", "zd", block_test_id(seq, needles, nneedles, buf));
            assert_non_null(recs[n]);
        }
        struct store_op op = {.kind = STORE_OP_AUDIT, .audit = recs, .naudit = n};
        int rc = store_submit_wait(st, &op);
        if (rc != 0)
            fprintf(stderr, "audit append: %s\n", op.error);
        assert_int_equal(rc, 0);
        for (size_t i = 0; i < n; i++)
            json_decref(recs[i]);
    }
}

struct seqs {
    const char *want_id;
    int64_t seq[64];
    int n;
    int wrong; /* records whose event_id or seq is not what was asked for */
};

static int collect_seq(const char *text, int64_t seq, void *ctx)
{
    struct seqs *c = ctx;
    json_t *r = json_loads(text, 0, NULL);
    const char *id = json_string_value(json_object_get(r, "event_id"));
    if (!id || strcmp(id, c->want_id) != 0 || json_integer_value(json_object_get(r, "seq")) != seq)
        c->wrong++;
    if (c->n < 64)
        c->seq[c->n] = seq;
    c->n++;
    json_decref(r);
    return 0;
}

/* Asserts that the audit query by event id (with limit / oldest_first) returns
 * exactly the records want[0..nwant), in that order. */
static void assert_event_seqs(struct store *st, const char *id, int64_t limit, bool oldest_first,
                              const int64_t *want, int nwant)
{
    struct seqs c = {.want_id = id};
    struct store_audit_filter f = {.event_id = id, .limit = limit, .oldest_first = oldest_first};
    char err[200];
    assert_int_equal(store_audit_scan(st, &f, collect_seq, &c, err, sizeof err), 0);
    assert_int_equal(c.wrong, 0);
    assert_int_equal(c.n, nwant);
    for (int i = 0; i < nwant; i++)
        assert_int_equal(c.seq[i], want[i]);
}

/* ---- deduplication ---- */

/* serve loads the key set when it opens the store: an event stored by another
 * handle after that load, but before serve's first batch, still dedupes. */
static void test_preloaded_set_catches_up(void **state)
{
    double now = wall_now();
    int64_t first, later, row;
    struct store *st = open_store();
    assert_int_equal(submit_event(st, "zd", "p-1", now, &first), STORE_EVENT_STORED);
    store_close(st);

    struct store *serve = open_store_preloaded();
    struct store *other = open_store();
    assert_int_equal(submit_event(other, "zd", "p-2", now + 1, &later), STORE_EVENT_STORED);
    store_close(other);
    assert_int_equal(submit_event(serve, "zd", "p-1", now + 2, &row), STORE_EVENT_DUPLICATE);
    assert_int_equal(row, first);
    assert_int_equal(submit_event(serve, "zd", "p-2", now + 3, &row), STORE_EVENT_DUPLICATE);
    assert_int_equal(row, later);
    assert_int_equal(store_count_events(serve, "zd"), 2);
    store_close(serve);
}

/* A clock stepped back stamps an event far in the past; the events stored
 * before it are still inside the window and must still dedupe after a restart. */
static void test_preload_skips_a_mis_stamped_event(void **state)
{
    double now = wall_now();
    int64_t first, row;
    struct store *st = open_store();
    assert_int_equal(submit_event(st, "zd", "s-1", now - 30, &first), STORE_EVENT_STORED);
    assert_int_equal(submit_event(st, "zd", "s-2", 1.0, &row), STORE_EVENT_STORED);
    assert_int_equal(submit_event(st, "zd", "s-3", now - 10, &row), STORE_EVENT_STORED);
    store_close(st);

    st = open_store_preloaded();
    assert_int_equal(submit_event(st, "zd", "s-1", now, &row), STORE_EVENT_DUPLICATE);
    assert_int_equal(row, first);
    assert_int_equal(store_count_events(st, "zd"), 3);
    store_close(st);
}

static void test_duplicate_inside_one_batch(void **state)
{
    struct store *st = open_store_tuned(5000, 100, 16, 0);
    double now = wall_now();
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    struct store_op x, a, b;
    json_t *rx, *ra, *rb;
    fill_event(&x, "batch-x", now, &rx);
    fill_event(&a, "batch-dup", now, &ra);
    fill_event(&b, "batch-dup", now + 0.5, &rb);

    /* Hold the write lock; once the writer has taken x it waits for the lock,
     * so a and b queue up behind it and form the next batch together. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    submit_async(st, &x, &w);
    for (int i = 0; i < 2000 && store_pending(st) > 0; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(store_pending(st), 0);
    submit_async(st, &a, &w);
    submit_async(st, &b, &w);
    assert_int_equal(store_pending(st), 2);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    waiter_wait(&w, 3);

    assert_int_equal(x.u.event.result, STORE_EVENT_STORED);
    assert_int_equal(a.u.event.result, STORE_EVENT_STORED);
    assert_int_equal(b.u.event.result, STORE_EVENT_DUPLICATE);
    assert_int_equal(b.u.event.row, a.u.event.row);
    assert_int_equal(store_count_events(st, "zd"), 2);
    struct collect c = {0};
    struct store_audit_filter f = {.event_id = "batch-dup"};
    char err[200];
    assert_int_equal(store_audit_scan(st, &f, collect_kind, &c, err, sizeof err), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.kinds[0], "event.received");
    assert_string_equal(c.kinds[1], "event.duplicate");
    json_decref(rx);
    json_decref(ra);
    json_decref(rb);
    store_close(st);
}

static void test_bounded_key_set_never_loses_an_event(void **state)
{
    enum { N = 3000 };
    /* The set's "dedupe set full" warnings are expected here: keep them quiet
     * (set before the store's threads start, restored after they end). */
    log_set_level(LOG_ERROR);
    struct store *st = open_store_tuned(5000, 4000, 512, 1000);
    struct store_op *ops = calloc(N, sizeof *ops);
    json_t **recs = calloc(N, sizeof *recs);
    char(*ids)[16] = calloc(N, sizeof *ids);
    assert_non_null(ops);
    assert_non_null(recs);
    assert_non_null(ids);
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    double now = wall_now();
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "k-%d", i);
        fill_event(&ops[i], ids[i], now - 30 + i * 0.001, &recs[i]);
        submit_async(st, &ops[i], &w);
    }
    waiter_wait(&w, N);
    int stored = 0;
    for (int i = 0; i < N; i++)
        stored += ops[i].u.event.result == STORE_EVENT_STORED;
    assert_int_equal(stored, N);
    assert_int_equal(store_count_events(st, "zd"), N);
    /* The bound forgets the oldest keys first: the newest still dedupes. */
    int64_t row;
    assert_int_equal(submit_event(st, "zd", ids[N - 1], now, &row), STORE_EVENT_DUPLICATE);
    assert_int_equal(row, ops[N - 1].u.event.row);
    assert_int_equal(store_count_events(st, "zd"), N);
    /* What /metrics shows the operator: the bound held, and keys were dropped. */
    struct store_dedupe_stats ds;
    assert_int_equal(store_dedupe_stats(st, &ds), 0);
    assert_int_equal(ds.max_keys, 1000);
    assert_true(ds.keys > 0 && ds.keys <= 1000);
    assert_true(ds.evicted >= N - 1000);
    for (int i = 0; i < N; i++)
        json_decref(recs[i]);
    free(ops);
    free(recs);
    free(ids);
    store_close(st);
    log_set_level(LOG_INFO);
}

/* ---- audit queries by event id (per-block Bloom filters) ---- */

static void test_audit_by_event_id_across_blocks(void **state)
{
    /* The needle at both ends of block 0 and block 1 and in the open tail. */
    const int64_t needles[] = {1, 4096, 4097, 6000, 8192, 8193, 9100};
    struct store *st = open_store();
    append_audit_range(st, 1, 2 * BLOCK, needles, 7);
    /* Exactly two complete blocks and no tail. */
    assert_event_seqs(st, NEEDLE, 0, false, needles, 5);
    assert_int_equal(bloom_blocks(), 0x3u);

    append_audit_range(st, 2 * BLOCK + 1, 2 * BLOCK + 1000, needles, 7);
    assert_event_seqs(st, NEEDLE, 0, false, needles, 7);
    assert_event_seqs(st, NEEDLE, 3, false, (const int64_t[]){8192, 8193, 9100}, 3);
    assert_event_seqs(st, NEEDLE, 2, true, (const int64_t[]){1, 4096}, 2);
    assert_event_seqs(st, "ev-10", 0, false, (const int64_t[]){10}, 1);
    assert_event_seqs(st, "ev-5000", 0, false, (const int64_t[]){5000}, 1);
    assert_event_seqs(st, "ev-9000", 0, false, (const int64_t[]){9000}, 1);
    assert_event_seqs(st, "never-seen", 0, false, NULL, 0);
    assert_event_seqs(st, "ev-7", 0, false, NULL, 0); /* every 7th has no id */
    assert_int_equal(bloom_blocks(), 0x3u);           /* the tail has no filter yet */
    store_close(st);
}

static void test_block_filters_rebuilt_at_open(void **state)
{
    const int64_t needles[] = {50, 4000, 4200};
    struct store *st = open_store();
    append_audit_range(st, 1, BLOCK + 300, needles, 3);
    store_close(st);
    assert_int_equal(db_int("PRAGMA user_version"), store_sqlite_schema_version());
    assert_int_equal(bloom_blocks(), 0x1u);

    /* Filters lost: the writer rebuilds them when it opens the file. */
    db_exec("DELETE FROM audit_event_blooms");
    assert_int_equal(bloom_blocks(), 0u);
    st = open_store();
    assert_int_equal(bloom_blocks(), 0x1u);
    assert_event_seqs(st, NEEDLE, 0, false, needles, 3);
    assert_event_seqs(st, "ev-100", 0, false, (const int64_t[]){100}, 1);
    store_close(st);

    /* A file from before schema 7 (audit_by_event, no filters) is migrated and
     * its complete blocks get their filters. */
    db_exec("DROP TABLE event_plans_from_jobs;"
            "ALTER TABLE events DROP COLUMN plan;"
            "DROP INDEX audit_by_read_number;"
            "DROP INDEX audit_by_bare_job;"
            "DROP INDEX did_numbers_by_did;"
            "DROP TABLE audit_event_blooms;"
            "DROP TABLE event_id_blooms;"
            "ALTER TABLE events DROP COLUMN key_fp;"
            "CREATE INDEX audit_by_event ON audit (event_id, seq) WHERE event_id IS NOT NULL;"
            "PRAGMA user_version = 6;");
    st = open_store();
    assert_int_equal(db_int("PRAGMA user_version"), store_sqlite_schema_version());
    assert_int_equal(bloom_blocks(), 0x1u);
    assert_event_seqs(st, NEEDLE, 0, false, needles, 3);
    assert_chain_ok(st, BLOCK + 300);
    store_close(st);
}

static void test_prune_drops_block_filters(void **state)
{
    const int64_t needles[] = {100, 4150, 4300, 8000, 8600};
    const int64_t survivors[] = {4300, 8000, 8600};
    struct store *st = open_store();
    append_audit_range(st, 1, 2 * BLOCK + 500, needles, 5);
    assert_int_equal(bloom_blocks(), 0x3u);
    /* Records 1..4200 are old (a record's time is the wall clock at append). */
    db_exec("UPDATE audit SET time = '2020-01-01T00:00:00.000Z' WHERE seq <= 4200");

    struct store_op op = {.kind = STORE_OP_PRUNE, .u.prune = {.before = wall_now() - 86400}};
    assert_int_equal(store_submit_wait(st, &op), 0);
    assert_int_equal(op.u.prune.deleted, 4200);
    assert_int_equal(db_int("SELECT min(seq) FROM audit"), 4201);
    /* Block 0 is gone with its records; block 1 keeps its filter. */
    assert_int_equal(bloom_blocks(), 0x2u);
    assert_event_seqs(st, NEEDLE, 0, false, survivors, 3);
    assert_event_seqs(st, NEEDLE, 1, false, (const int64_t[]){8600}, 1);
    assert_event_seqs(st, "ev-4201", 0, false, (const int64_t[]){4201}, 1);
    assert_event_seqs(st, "ev-4200", 0, false, NULL, 0);
    store_close(st);

    st = open_store();
    assert_int_equal(bloom_blocks(), 0x2u);
    assert_event_seqs(st, NEEDLE, 0, false, survivors, 3);
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

struct story {
    int64_t seq[64];
    int n;
};

static int collect_story(const char *text, int64_t seq, void *ctx)
{
    struct story *s = ctx;
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

/* A story's events are found through the Bloom blocks, also when they lie in
 * complete blocks far apart. */
static void test_did_story_across_blocks(void **state)
{
    struct store *st = open_store();
    const struct store_job_spec by_number = {"route_did", "PATCH", "/v3/dids/number:" STORY_N, "{}",
                                             NULL,        STORY_N, "number:" STORY_N};
    story_event(st, "zd", "far-1", &by_number, 1, NULL, NULL); /* 1-3 */
    append_audit_range(st, 4, 2 * BLOCK + 10, NULL, 0);
    story_event(st, "zd", "far-2", &by_number, 1, NULL, NULL);
    int64_t tail = 2 * BLOCK + 11;
    assert_int_equal(bloom_blocks(), 0x3u);
    struct store_audit_filter f = {.number = STORY_N};
    assert_story(st, &f, (const int64_t[]){1, 2, 3, tail, tail + 1, tail + 2}, 6);
    store_close(st);
}

/* ---- event lookups by event id (per-block Bloom filters on events) ---- */

/* The event stored as row i in the events-by-id tests: NEEDLE (from a source
 * of its own, so it is not a duplicate) at the chosen rows, else "e-<i>". */
static const char *event_test_id(int64_t i, const int64_t *needles, size_t nneedles, char buf[32],
                                 char source[32])
{
    snprintf(source, 32, "zd");
    for (size_t k = 0; k < nneedles; k++)
        if (needles[k] == i) {
            snprintf(source, 32, "src-%zu", k);
            return NEEDLE;
        }
    snprintf(buf, 32, "e-%lld", (long long)i);
    return buf;
}

/* Stores events as rows from..to (the table's newest is from - 1). */
static void store_event_range(struct store *st, int64_t from, int64_t to, const int64_t *needles,
                              size_t nneedles)
{
    size_t n = (size_t)(to - from + 1);
    struct store_op *ops = calloc(n, sizeof *ops);
    json_t **recs = calloc(n, sizeof *recs);
    char(*ids)[32] = calloc(n, sizeof *ids);
    char(*sources)[32] = calloc(n, sizeof *sources);
    assert_true(ops && recs && ids && sources);
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    double now = wall_now();
    for (size_t i = 0; i < n; i++) {
        const char *id = event_test_id(from + (int64_t)i, needles, nneedles, ids[i], sources[i]);
        if (id != ids[i])
            snprintf(ids[i], sizeof ids[i], "%s", id);
        fill_event_from(&ops[i], sources[i], ids[i], now, &recs[i]);
        submit_async(st, &ops[i], &w);
    }
    waiter_wait(&w, (int)n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ops[i].u.event.result, STORE_EVENT_STORED);
        /* Submitted in order to one writer: row ids follow. */
        assert_int_equal(ops[i].u.event.row, from + (int64_t)i);
        json_decref(recs[i]);
    }
    free(ops);
    free(recs);
    free(ids);
    free(sources);
}

struct rows {
    const char *want_id;
    int64_t row[64];
    int n, wrong;
};

static int collect_row(const struct store_event_row *r, void *ctx)
{
    struct rows *c = ctx;
    if (strcmp(r->event_id, c->want_id) != 0)
        c->wrong++;
    if (c->n < 64)
        c->row[c->n] = r->row;
    c->n++;
    return 0;
}

/* Asserts that the events query by event id (and source) returns exactly the
 * rows want[0..nwant), oldest first. */
static void assert_event_rows(struct store *st, const char *id, const char *source,
                              const int64_t *want, int nwant)
{
    struct rows c = {.want_id = id};
    struct store_event_filter f = {.event_id = id, .source = source};
    char err[200];
    assert_int_equal(store_events_scan(st, &f, collect_row, &c, err, sizeof err), 0);
    assert_int_equal(c.wrong, 0);
    assert_int_equal(c.n, nwant);
    for (int i = 0; i < nwant; i++)
        assert_int_equal(c.row[i], want[i]);
}

static void test_events_by_event_id_across_blocks(void **state)
{
    /* The needle at both ends of blocks 0 and 1 and in the open tail. */
    const int64_t needles[] = {1, 4096, 4097, 6000, 8192, 8193, 8500};
    struct store *st = open_store_tuned(5000, 2 * BLOCK + 600, 512, 0);
    store_event_range(st, 1, 2 * BLOCK, needles, 7);
    assert_int_equal(bloom_blocks_of("event_id_blooms"), 0x3u);
    assert_event_rows(st, NEEDLE, NULL, needles, 5);

    store_event_range(st, 2 * BLOCK + 1, 2 * BLOCK + 500, needles, 7);
    assert_int_equal(bloom_blocks_of("event_id_blooms"), 0x3u); /* no filter for the tail */
    assert_event_rows(st, NEEDLE, NULL, needles, 7);
    assert_event_rows(st, NEEDLE, "src-3", (const int64_t[]){6000}, 1);
    assert_event_rows(st, "e-2", NULL, (const int64_t[]){2}, 1);
    assert_event_rows(st, "e-5000", "zd", (const int64_t[]){5000}, 1);
    assert_event_rows(st, "e-8400", NULL, (const int64_t[]){8400}, 1);
    assert_event_rows(st, "never-seen", NULL, NULL, 0);
    store_close(st);

    /* Filters lost: the writer rebuilds them when it opens the file. */
    db_exec("DELETE FROM event_id_blooms");
    st = open_store();
    assert_int_equal(bloom_blocks_of("event_id_blooms"), 0x3u);
    assert_event_rows(st, NEEDLE, NULL, needles, 7);
    store_close(st);

    /* A schema 7 file (no event filters, the events_keys index) is migrated
     * and gets them. */
    db_exec("DROP TABLE event_plans_from_jobs;"
            "ALTER TABLE events DROP COLUMN plan;"
            "DROP INDEX audit_by_read_number;"
            "DROP INDEX audit_by_bare_job;"
            "DROP INDEX did_numbers_by_did;"
            "DROP TABLE event_id_blooms;"
            "CREATE INDEX events_keys ON events (id, received_at, key_fp);"
            "PRAGMA user_version = 7;");
    st = open_store();
    assert_int_equal(db_int("PRAGMA user_version"), store_sqlite_schema_version());
    assert_int_equal(bloom_blocks_of("event_id_blooms"), 0x3u);
    assert_int_equal(db_int("SELECT count(*) FROM sqlite_schema WHERE name = 'events_keys'"), 0);
    assert_event_rows(st, NEEDLE, NULL, needles, 7);
    assert_event_rows(st, "e-4095", NULL, (const int64_t[]){4095}, 1);
    store_close(st);
}

/* Submits (source, id) again and asserts it is the duplicate of row want. */
static void assert_duplicate_of(struct store *st, const char *source, const char *id, int64_t want)
{
    int64_t row = 0;
    assert_int_equal(submit_event(st, source, id, wall_now(), &row), STORE_EVENT_DUPLICATE);
    assert_int_equal(row, want);
}

/* Little-endian 64-bit value at p. */
static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* The on-disk format of a block's keys: entry i is row first + i, its
 * dedupe_fingerprint then its received_at's bits, each little-endian. */
static void assert_block_key(int64_t block, int64_t row, const char *source, const char *id)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT keys, (SELECT received_at FROM events WHERE id = "
                                        "?2) FROM event_id_blooms WHERE block = ?1",
                                        -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(q, 1, block);
    sqlite3_bind_int64(q, 2, row);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    const unsigned char *keys = sqlite3_column_blob(q, 0);
    assert_int_equal(sqlite3_column_bytes(q, 0), BLOCK * 16);
    const unsigned char *e = keys + (row - block * BLOCK - 1) * 16;
    assert_true(le64(e) == dedupe_fingerprint(source, id));
    double at = sqlite3_column_double(q, 1), stored;
    uint64_t bits = le64(e + 8);
    memcpy(&stored, &bits, sizeof stored);
    assert_true(stored == at);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static void test_preload_reads_block_keys(void **state)
{
    const int64_t needles[] = {3, 5000};
    struct store *st = open_store_tuned(5000, 2 * BLOCK + 600, 512, 0);
    store_event_range(st, 1, 2 * BLOCK + 500, needles, 2);
    store_close(st);
    /* Every complete block's row carries its keys, 16 bytes an event. */
    assert_int_equal(db_int("SELECT count(*) FROM event_id_blooms WHERE length(keys) = 65536"), 2);
    assert_block_key(0, 1, "zd", "e-1");
    assert_block_key(0, 4096, "zd", "e-4096");
    assert_block_key(1, 5000, "src-1", NEEDLE);

    /* serve's start: the set comes from the two blocks' keys and the tail's
     * rows; redeliveries from each are refused, the newest row of each
     * block and an event stored before schema 7 (no key_fp) included. */
    db_exec("UPDATE events SET key_fp = NULL WHERE id = 4000");
    db_exec("DELETE FROM event_id_blooms WHERE block = 0"); /* rebuilt, from the row */
    st = open_store_preloaded();
    struct store_dedupe_stats ds;
    assert_int_equal(store_dedupe_stats(st, &ds), 0);
    assert_int_equal(ds.keys, 2 * BLOCK + 500);
    assert_duplicate_of(st, "zd", "e-1", 1);
    assert_duplicate_of(st, "zd", "e-4000", 4000);
    assert_duplicate_of(st, "zd", "e-4096", 4096);
    assert_duplicate_of(st, "src-0", NEEDLE, 3);
    assert_duplicate_of(st, "src-1", NEEDLE, 5000);
    assert_duplicate_of(st, "zd", "e-8192", 8192);
    assert_duplicate_of(st, "zd", "e-8692", 8692);
    assert_int_equal(store_count_events(st, NULL), 2 * BLOCK + 500);
    store_close(st);

    /* A block row without keys: that block's events are read instead. */
    db_exec("UPDATE event_id_blooms SET keys = NULL WHERE block = 1");
    st = open_store_preloaded();
    assert_int_equal(store_dedupe_stats(st, &ds), 0);
    assert_int_equal(ds.keys, 2 * BLOCK + 500);
    assert_duplicate_of(st, "zd", "e-4097", 4097);
    assert_duplicate_of(st, "zd", "e-8000", 8000);
    store_close(st);

    /* Events older than the window are not loaded: block 0 is pushed out. */
    db_exec("UPDATE events SET received_at = received_at - 30 * 86400 WHERE id <= 4096;"
            "DELETE FROM event_id_blooms WHERE block = 0;");
    st = open_store_preloaded();
    assert_int_equal(store_dedupe_stats(st, &ds), 0);
    assert_int_equal(ds.keys, BLOCK + 500);
    store_close(st);
}

static int setup(void **state)
{
    test_tmpdir(dir, sizeof dir);
    snprintf(dbpath, sizeof dbpath, "%s/store.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", dbpath);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_migrates_old_file, setup),
        cmocka_unit_test_setup(test_newer_schema_refused, setup),
        cmocka_unit_test_setup(test_locked_database_fails_batch, setup),
        cmocka_unit_test_setup(test_queue_full_refuses, setup),
        cmocka_unit_test_setup(test_preloaded_set_catches_up, setup),
        cmocka_unit_test_setup(test_preload_skips_a_mis_stamped_event, setup),
        cmocka_unit_test_setup(test_duplicate_inside_one_batch, setup),
        cmocka_unit_test_setup(test_bounded_key_set_never_loses_an_event, setup),
        cmocka_unit_test_setup(test_audit_by_event_id_across_blocks, setup),
        cmocka_unit_test_setup(test_block_filters_rebuilt_at_open, setup),
        cmocka_unit_test_setup(test_prune_drops_block_filters, setup),
        cmocka_unit_test_setup(test_events_by_event_id_across_blocks, setup),
        cmocka_unit_test_setup(test_preload_reads_block_keys, setup),
        cmocka_unit_test_setup(test_did_story_across_blocks, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
