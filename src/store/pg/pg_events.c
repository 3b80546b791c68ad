/*
 * pg_events: events in PostgreSQL. An event is stored together with its key in
 * event_keys, whose primary key (source, event_id) is the dedupe: one statement
 * inserts the key, or moves it to the new event when the stored one is older
 * than the window, and inserts the event only then; nothing is held in memory,
 * so every process on the database dedupes alike. The events of a batch are
 * sent in one pipeline (one round trip). Inserts run on the writer
 * thread inside its transaction; scans on the reader connection under rlock.
 */
#include "pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* $1 source, $2 event_id, $3 received_at, $4 window, $5.. the event. One row:
 * (the new event's id, true), or (the original's id, false) for a duplicate;
 * none when the original is not visible yet (another process's transaction
 * that committed meanwhile: pg_event_original finds it). The key's row lock
 * (ON CONFLICT) orders concurrent writers of one key. */
static const char pg_insert_event_sql[] =
    "WITH k AS (INSERT INTO event_keys AS o (source, event_id, event_row, received_at) "
    "VALUES ($1, $2, nextval('events_id_seq'), $3) "
    "ON CONFLICT (source, event_id) DO UPDATE SET event_row = EXCLUDED.event_row, "
    "received_at = EXCLUDED.received_at WHERE EXCLUDED.received_at - o.received_at >= $4 "
    "RETURNING event_row), "
    "e AS (INSERT INTO events (id, source, event_id, received_at, status, content_type, headers, "
    "body, rule_version, jobs, plan) SELECT event_row, $1, $2, $3, $5, $6, $7, $8, $9, $10, $11 "
    "FROM k "
    "RETURNING id) "
    "SELECT id, TRUE FROM e UNION ALL SELECT event_row, FALSE FROM event_keys WHERE source = $1 "
    "AND event_id = $2 AND NOT EXISTS (SELECT 1 FROM k)";

static void pg_event_params(struct pg_params *p, const struct store_op_event *op)
{
    pg_params_text(p, op->source);
    pg_params_text(p, op->event_id);
    pg_params_double(p, op->received_at);
    pg_params_double(p, (double)op->dedupe_window_s);
    pg_params_text(p, op->status ? op->status : "accepted");
    pg_params_text(p, op->content_type ? op->content_type : "");
    pg_params_text(p, op->headers_json ? op->headers_json : "{}");
    pg_params_bytes(p, op->body, op->body_len);
    pg_params_text(p, op->rule_version);
    pg_params_int(p, (int64_t)op->njobs);
    pg_params_text(p, op->plan_json);
}

static void pg_event_result(struct store_op_event *op, const PGresult *r)
{
    bool stored = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    op->result = stored ? STORE_EVENT_STORED : STORE_EVENT_DUPLICATE;
    op->row = PQntuples(r) == 1 ? pg_get_int(r, 0, 0) : 0;
}

/* The original of a duplicate the insert could not see. */
static int pg_event_original(struct pg_backend *be, struct store_op_event *op, char *err,
                             size_t err_len)
{
    struct pg_params p = {0};
    pg_params_text(&p, op->source);
    pg_params_text(&p, op->event_id);
    PGresult *r =
        pg_run(be->w.c, "SELECT event_row FROM event_keys WHERE source = $1 AND event_id = $2", &p,
               PGRES_TUPLES_OK, "looking up a duplicate", err, err_len);
    if (!r)
        return -1;
    op->row = PQntuples(r) == 1 ? pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    return 0;
}

/* The insert is parsed and planned once per connection, not once per event. */
#define PG_INSERT_EVENT_STMT "hookline_insert_event"

int pg_insert_events(struct pg_backend *be, struct store_op **ops, size_t n, size_t *bad, char *err,
                     size_t err_len)
{
    PGconn *c = be->w.c;
    *bad = n;
    if (!be->w.prepared) {
        PGresult *r = PQprepare(c, PG_INSERT_EVENT_STMT, pg_insert_event_sql, 0, NULL);
        bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) {
            const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
            snprintf(err, err_len, "preparing the event insert: %.*s", (int)strcspn(m, "\n"), m);
        }
        PQclear(r);
        if (!ok)
            return -1;
        be->w.prepared = true;
    }
    if (n == 1) {
        struct pg_params p = {0};
        pg_event_params(&p, &ops[0]->u.event);
        PGresult *r = PQexecPrepared(c, PG_INSERT_EVENT_STMT, p.n, p.v, p.len, p.fmt, 0);
        if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
            const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
            snprintf(ops[0]->error, sizeof ops[0]->error, "inserting the event: %.*s",
                     (int)strcspn(m, "\n"), m);
            PQclear(r);
            *bad = 0;
            snprintf(err, err_len, "%s", ops[0]->error);
            return -1;
        }
        pg_event_result(&ops[0]->u.event, r);
        PQclear(r);
    } else {
        /* Pipeline mode: every insert sent, then every answer read; one round
         * trip for the lot. The statements run in order, so two events of one
         * key in the batch dedupe as they would one by one. */
        if (!PQenterPipelineMode(c)) {
            snprintf(err, err_len, "inserting events: cannot enter pipeline mode");
            return -1;
        }
        size_t sent = 0;
        for (; sent < n; sent++) {
            struct pg_params p = {0};
            pg_event_params(&p, &ops[sent]->u.event);
            if (!PQsendQueryPrepared(c, PG_INSERT_EVENT_STMT, p.n, p.v, p.len, p.fmt, 0))
                break;
        }
        int rc = sent == n && PQpipelineSync(c) ? 0 : -1;
        if (rc < 0)
            snprintf(err, err_len, "inserting events: %.*s", (int)strcspn(PQerrorMessage(c), "\n"),
                     PQerrorMessage(c));
        for (size_t i = 0; rc == 0 && i < n; i++) {
            PGresult *r = PQgetResult(c);
            ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
            if (st == PGRES_TUPLES_OK) {
                pg_event_result(&ops[i]->u.event, r);
            } else {
                const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
                snprintf(ops[i]->error, sizeof ops[i]->error, "inserting the event: %.*s",
                         (int)strcspn(m, "\n"), m);
                snprintf(err, err_len, "%s", ops[i]->error);
                *bad = i;
                rc = -1;
            }
            PQclear(r);
            if (r)
                PQclear(PQgetResult(c)); /* the NULL that ends each statement */
        }
        /* The rest (aborted statements, the sync) until the pipeline is idle. */
        for (int guard = 0; guard < 4 * (int)n + 8 && !PQexitPipelineMode(c); guard++) {
            PGresult *r = PQgetResult(c);
            if (!r && PQstatus(c) == CONNECTION_BAD)
                break;
            PQclear(r);
        }
        if (PQpipelineStatus(c) != PQ_PIPELINE_OFF) {
            /* Never leave the writer's connection half way: make a new one. */
            PQfinish(be->w.c);
            be->w.c = NULL;
            *bad = n;
            snprintf(err, err_len, "inserting events: the pipeline did not finish");
            return -1;
        }
        if (rc < 0)
            return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct store_op_event *ev = &ops[i]->u.event;
        if (ev->result == STORE_EVENT_DUPLICATE && ev->row == 0 &&
            pg_event_original(be, ev, ops[i]->error, sizeof ops[i]->error) < 0) {
            *bad = i;
            snprintf(err, err_len, "%s", ops[i]->error);
            return -1;
        }
    }
    return 0;
}

int64_t pg_count_events(struct store_backend *base, const char *source)
{
    struct pg_backend *be = (struct pg_backend *)base;
    char err[200];
    int64_t n = -1;
    pthread_mutex_lock(&be->rlock);
    PGconn *c = pg_reader(be, err, sizeof err);
    if (c) {
        struct pg_params p = {0};
        pg_params_text(&p, source);
        PGresult *r = pg_run(c, "SELECT count(*) FROM events WHERE $1::text IS NULL OR source = $1",
                             &p, PGRES_TUPLES_OK, "counting events", err, sizeof err);
        if (r)
            n = pg_get_int(r, 0, 0);
        else
            pg_reader_check(be);
        PQclear(r);
    }
    pthread_mutex_unlock(&be->rlock);
    return n;
}

struct pg_event_rows {
    store_event_fn fn;
    void *ctx;
    char *err;
    size_t err_len;
};

static int pg_event_row(const PGresult *r, void *vctx)
{
    struct pg_event_rows *e = vctx;
    size_t blen = 0;
    unsigned char *body = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 7), &blen);
    if (!body) {
        snprintf(e->err, e->err_len, "out of memory reading an event body");
        return -1;
    }
    struct store_event_row row = {
        .row = pg_get_int(r, 0, 0),
        .source = pg_get_str(r, 0, 1),
        .event_id = pg_get_str(r, 0, 2),
        .received_at = pg_get_double(r, 0, 3),
        .status = pg_get_str(r, 0, 4),
        .content_type = pg_get_str(r, 0, 5),
        .headers_json = pg_get_str(r, 0, 6),
        .body = body,
        .body_len = blen,
        .rule_version = pg_get_str(r, 0, 9),
    };
    /* events.plan, else the plan rebuilt from the jobs rows (schema 3). */
    row.plan_json = pg_get_str(r, 0, 8);
    if (!row.plan_json) {
        row.plan_json = pg_get_str(r, 0, 10);
        row.plan_from_jobs = row.plan_json != NULL;
    }
    int stop = e->fn(&row, e->ctx);
    PQfreemem(body);
    return stop != 0 ? 1 : 0;
}

int pg_events_scan(struct store_backend *base, const struct store_event_filter *f,
                   store_event_fn fn, void *ctx, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    int rc = -1;
    pthread_mutex_lock(&be->rlock);
    PGconn *c = pg_reader(be, err, err_len);
    if (!c)
        goto out;
    struct pg_params p = {0};
    pg_params_text(&p, f->status);
    pg_params_text(&p, f->source);
    pg_params_text(&p, f->event_id);
    if (f->limit > 0)
        pg_params_int(&p, f->limit);
    else
        pg_params_text(&p, NULL);
    if (f->since > 0)
        pg_params_double(&p, f->since);
    else
        pg_params_text(&p, NULL);
    pg_params_int(&p, f->after_row > 0 ? f->after_row : 0);
    struct pg_event_rows rows = {.fn = fn, .ctx = ctx, .err = err, .err_len = err_len};
    rc = pg_stream(c,
                   "SELECT e.id, e.source, e.event_id, e.received_at, e.status, e.content_type, "
                   "e.headers, e.body, e.plan, e.rule_version, j.plan FROM events e LEFT JOIN "
                   "event_plans_from_jobs j ON e.plan IS NULL AND j.event_row = e.id "
                   "WHERE ($1::text IS NULL OR e.status = $1) AND ($2::text IS NULL OR "
                   "e.source = $2) AND ($3::text IS NULL OR e.event_id = $3) AND "
                   "($5::float8 IS NULL OR e.received_at >= $5) AND e.id > $6::bigint "
                   "ORDER BY e.id LIMIT $4::bigint",
                   &p, pg_event_row, &rows, "event query", err, err_len);
    if (rc < 0)
        pg_reader_check(be);
out:
    pthread_mutex_unlock(&be->rlock);
    return rc;
}
