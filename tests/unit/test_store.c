/*
 * test_store: the store on a real SQLite file: events stored once per key,
 * duplicates inside the window, keys released after it, jobs and audit in the
 * same transaction, the hash chain intact across reopen, migrations of an old
 * file, and a failed commit reported to every op of the batch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <time.h>

#include "audit.h"
#include "store.h"
#include "test_util.h"

static char dir[512];
static char dbpath[700];
static char url[760];

static struct store *open_store(void)
{
    struct store *st = NULL;
    char err[256];
    struct store_options o = {
        .url = url, .busy_timeout_ms = 100, .queue_max = 100, .batch_max = 16};
    int rc = store_open(&o, &st, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "store_open: %s\n", err);
    assert_int_equal(rc, 0);
    return st;
}

static void fill_event(struct store_op *op, const char *id, double at, json_t **rec)
{
    memset(op, 0, sizeof *op);
    op->kind = STORE_OP_EVENT;
    op->source = "zd";
    op->event_id = id;
    op->received_at = at;
    op->dedupe_window_s = 60;
    op->status = "accepted";
    op->content_type = "application/json";
    op->headers_json = "{}";
    op->body = (const unsigned char *)"{\"a\":1}";
    op->body_len = 7;
    *rec = audit_record_new("event.received", "zd", id);
    op->audit = rec;
    op->naudit = 1;
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

static void test_store_once_then_duplicate(void **state)
{
    struct store *st = open_store();
    struct store_op a, b;
    json_t *ra, *rb;
    double now = (double)time(NULL);
    fill_event(&a, "evt-1", now, &ra);
    fill_event(&b, "evt-1", now + 1, &rb);
    assert_int_equal(store_submit_wait(st, &a), 0);
    assert_int_equal(a.outcome, STORE_STORED);
    assert_int_equal(store_submit_wait(st, &b), 0);
    assert_int_equal(b.outcome, STORE_DUPLICATE);
    assert_int_equal(b.event_row, a.event_row);
    assert_int_equal(store_count_events(st, "zd"), 1);
    assert_int_equal(store_count_events(st, "other"), 0);

    struct collect c = {0};
    struct store_audit_filter all = {0};
    char err[200];
    assert_int_equal(store_audit_scan(st, &all, collect_kind, &c, err, sizeof err), 0);
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
    assert_int_equal(b.outcome, STORE_STORED);
    assert_int_not_equal(b.event_row, a.event_row);
    assert_int_equal(store_count_events(st, "zd"), 2);
    json_decref(ra);
    json_decref(rb);
    store_close(st);
}

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
    a.jobs = jobs;
    a.njobs = 2;
    assert_int_equal(store_submit_wait(st, &a), 0);
    struct collect c = {0};
    struct store_audit_filter f = {.kind = "job.*"};
    char err[200];
    assert_int_equal(store_audit_scan(st, &f, collect_kind, &c, err, sizeof err), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.kinds[0], "job.queued");
    /* filter by number finds the job of the DID named by number */
    struct collect c2 = {0};
    struct store_audit_filter fn = {.number = "4371234567"};
    assert_int_equal(store_audit_scan(st, &fn, collect_kind, &c2, err, sizeof err), 0);
    assert_int_equal(c2.n, 1);
    json_decref(ra);
    store_close(st);
}

static void test_chain_survives_reopen(void **state)
{
    struct store *st = open_store();
    struct store_op ops[5];
    json_t *recs[5];
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "c-%d", i);
        fill_event(&ops[i], strdup(id), (double)time(NULL), &recs[i]);
        assert_int_equal(store_submit_wait(st, &ops[i]), 0);
    }
    store_close(st);
    st = open_store();
    struct store_op more;
    json_t *rm;
    fill_event(&more, "c-more", (double)time(NULL), &rm);
    assert_int_equal(store_submit_wait(st, &more), 0);
    assert_chain_ok(st, 6);
    for (int i = 0; i < 5; i++) {
        free((char *)ops[i].event_id);
        json_decref(recs[i]);
    }
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
    char err[200];
    assert_int_equal(store_audit_scan(st, &f, collect_kind, &c, err, sizeof err), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.events[0], "l-2");
    assert_string_equal(c.events[1], "l-3");
    struct store_audit_filter fe = {.event_id = "l-3"};
    struct collect c3 = {0};
    assert_int_equal(store_audit_scan(st, &fe, collect_kind, &c3, err, sizeof err), 0);
    assert_int_equal(c3.n, 1);
    for (int i = 0; i < 4; i++)
        json_decref(recs[i]);
    store_close(st);
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
    assert_int_equal(dup.outcome, STORE_DUPLICATE);
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
    assert_int_equal(a.outcome, STORE_FAILED);
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
    assert_int_equal(b.outcome, STORE_STORED);
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
        cmocka_unit_test_setup(test_store_once_then_duplicate, setup),
        cmocka_unit_test_setup(test_key_released_after_window, setup),
        cmocka_unit_test_setup(test_jobs_queued_in_same_transaction, setup),
        cmocka_unit_test_setup(test_chain_survives_reopen, setup),
        cmocka_unit_test_setup(test_limit_returns_newest_in_order, setup),
        cmocka_unit_test_setup(test_migrates_old_file, setup),
        cmocka_unit_test_setup(test_newer_schema_refused, setup),
        cmocka_unit_test_setup(test_locked_database_fails_batch, setup),
        cmocka_unit_test_setup(test_queue_full_refuses, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
