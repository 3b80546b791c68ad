/*
 * pg_backend: the PostgreSQL backend of the store (libpq), its connections,
 * open and close, the transaction primitives (begin, commit with its NOTIFY,
 * rollback) and the const table (store_pg_backend) through which the store
 * reaches it. Two connections: the writer, used only by the store's writer
 * thread, on which each write batch is one transaction committed with
 * synchronous_commit on (a commit is durable by itself: no
 * syncer thread), and a reader under rlock for queries from any thread. A
 * connection that is lost is reconnected with a bounded backoff; meanwhile
 * every operation on it fails at once, so webhooks get 503 and /readyz says
 * why. The password is handed to libpq and never logged or put in a message.
 */
#include "pg_int.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void pg_params_set(struct pg_params *p, const char *v, int len, int fmt)
{
    if (p->n >= PG_MAX_PARAMS)
        abort(); /* a statement of this file with too many parameters: a bug */
    p->v[p->n] = v;
    p->len[p->n] = len;
    p->fmt[p->n] = fmt;
    p->n++;
}

void pg_params_text(struct pg_params *p, const char *s)
{
    pg_params_set(p, s, 0, 0);
}

void pg_params_int(struct pg_params *p, int64_t v)
{
    snprintf(p->buf[p->n < PG_MAX_PARAMS ? p->n : 0], sizeof p->buf[0], "%lld", (long long)v);
    pg_params_set(p, p->buf[p->n < PG_MAX_PARAMS ? p->n : 0], 0, 0);
}

void pg_params_double(struct pg_params *p, double v)
{
    snprintf(p->buf[p->n < PG_MAX_PARAMS ? p->n : 0], sizeof p->buf[0], "%.17g", v);
    pg_params_set(p, p->buf[p->n < PG_MAX_PARAMS ? p->n : 0], 0, 0);
}

void pg_params_bytes(struct pg_params *p, const void *data, size_t len)
{
    pg_params_set(p, data ? (const char *)data : "", (int)len, 1);
}

/* PostgreSQL's message, first line only, into err as "what: message". */
static void pg_error(PGconn *c, const PGresult *r, const char *what, char *err, size_t err_len)
{
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    if (!m || !*m)
        m = c ? PQerrorMessage(c) : "out of memory";
    if (!m || !*m)
        m = "unknown error";
    int n = (int)strcspn(m, "\n");
    snprintf(err, err_len, "%s: %.*s", what, n, m);
}

PGresult *pg_run(PGconn *c, const char *sql, const struct pg_params *p, ExecStatusType want,
                 const char *what, char *err, size_t err_len)
{
    /* Without parameters, the simple protocol: a migration is several statements. */
    PGresult *r = p ? PQexecParams(c, sql, p->n, NULL, p->v, p->len, p->fmt, 0) : PQexec(c, sql);
    if (r && PQresultStatus(r) == want)
        return r;
    pg_error(c, r, what, err, err_len);
    PQclear(r);
    return NULL;
}

int pg_cmd(PGconn *c, const char *sql, const struct pg_params *p, int64_t *changed,
           const char *what, char *err, size_t err_len)
{
    PGresult *r = pg_run(c, sql, p, PGRES_COMMAND_OK, what, err, err_len);
    if (!r)
        return -1;
    if (changed) {
        const char *t = PQcmdTuples(r);
        *changed = t && *t ? strtoll(t, NULL, 10) : 0;
    }
    PQclear(r);
    return 0;
}

int pg_stream(PGconn *c, const char *sql, const struct pg_params *p, pg_row_fn fn, void *ctx,
              const char *what, char *err, size_t err_len)
{
    if (!PQsendQueryParams(c, sql, p ? p->n : 0, NULL, p ? p->v : NULL, p ? p->len : NULL,
                           p ? p->fmt : NULL, 0)) {
        pg_error(c, NULL, what, err, err_len);
        return -1;
    }
    (void)PQsetSingleRowMode(c);
    int rc = 0, stop = 0;
    PGresult *r;
    /* Every result is read, also after fn stopped or failed: the connection
     * must be idle again for the next statement. */
    while ((r = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE && !stop) {
            int f = fn(r, ctx);
            if (f != 0) {
                stop = 1;
                if (f < 0)
                    rc = -1;
            }
        } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && rc == 0) {
            pg_error(c, r, what, err, err_len);
            rc = -1;
            stop = 1;
        }
        PQclear(r);
    }
    return rc;
}

const char *pg_get_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

int64_t pg_get_int(const PGresult *r, int row, int col)
{
    const char *s = pg_get_str(r, row, col);
    return s ? strtoll(s, NULL, 10) : 0;
}

double pg_get_double(const PGresult *r, int row, int col)
{
    const char *s = pg_get_str(r, row, col);
    return s ? strtod(s, NULL) : 0;
}

char *pg_get_dup(const PGresult *r, int row, int col)
{
    const char *s = pg_get_str(r, row, col);
    return s ? strdup(s) : NULL;
}

double pg_mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---------- connections ---------- */

/* Server notices ("... already exists, skipping") are not for the operator:
 * libpq would print them on stderr, in the middle of a command's output. */
static void pg_ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* A new connection to url (the password, when given, as libpq's own parameter,
 * never in a string that could be printed). Returns it, or NULL with err set. */
static PGconn *pg_connect(const char *url, const char *password, char *err, size_t err_len)
{
    const char *keys[] = {"dbname", "password", "connect_timeout", "application_name", NULL};
    const char *vals[] = {url, password, "5", "hookline", NULL};
    if (!password) {
        keys[1] = "connect_timeout";
        vals[1] = "5";
        keys[2] = "application_name";
        vals[2] = "hookline";
        keys[3] = NULL;
        vals[3] = NULL;
    }
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c) {
        snprintf(err, err_len, "cannot connect to PostgreSQL: out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        pg_error(c, NULL, "cannot connect to PostgreSQL", err, err_len);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, pg_ignore_notice, NULL);
    /* A 2xx means committed: never let a server default weaken that. */
    char e[160];
    if (pg_cmd(c, "SET synchronous_commit = on", NULL, NULL, "configuring the session", e,
               sizeof e) < 0) {
        snprintf(err, err_len, "%s", e);
        PQfinish(c);
        return NULL;
    }
    return c;
}

PGconn *pg_conn_get(struct pg_backend *be, struct pg_conn *pc, char *err, size_t err_len)
{
    /* A server that went away closed the socket: reading what is pending sees
     * it without a round trip, and the connection is made again at once. */
    /* (Twice: a server shutting down sends its goodbye first, the EOF after.) */
    if (pc->c && (PQconsumeInput(pc->c) == 0 || PQconsumeInput(pc->c) == 0 ||
                  PQstatus(pc->c) == CONNECTION_BAD)) {
        PQfinish(pc->c);
        pc->c = NULL;
    }
    if (pc->c)
        return pc->c;
    double now = pg_mono_now();
    if (now < pc->retry_at) {
        snprintf(err, err_len, "PostgreSQL unreachable, reconnecting (next attempt in %.1fs): %s",
                 pc->retry_at - now, pc->why);
        return NULL;
    }
    pc->c = pg_connect(be->url, be->password, pc->why, sizeof pc->why);
    if (!pc->c) {
        pc->backoff_s = pc->backoff_s <= 0 ? PG_RECONNECT_MIN_S : pc->backoff_s * 2;
        if (pc->backoff_s > PG_RECONNECT_MAX_S)
            pc->backoff_s = PG_RECONNECT_MAX_S;
        pc->retry_at = pg_mono_now() + pc->backoff_s;
        snprintf(err, err_len, "%s", pc->why);
        return NULL;
    }
    pc->backoff_s = 0;
    pc->retry_at = 0;
    pc->prepared = false;
    return pc->c;
}

void pg_conn_drop(struct pg_conn *pc, const char *why)
{
    snprintf(pc->why, sizeof pc->why, "%s", why && *why ? why : "connection lost");
    if (pc->c)
        PQfinish(pc->c);
    pc->c = NULL;
    pc->backoff_s = PG_RECONNECT_MIN_S;
    pc->retry_at = pg_mono_now() + pc->backoff_s;
}

/* Drops pc's connection when it is broken (a restart, a network cut): the next
 * use reconnects. */
static void pg_conn_check(struct pg_conn *pc, const char *why)
{
    if (pc->c && PQstatus(pc->c) == CONNECTION_BAD)
        pg_conn_drop(pc, why);
}

PGconn *pg_reader(struct pg_backend *be, char *err, size_t err_len)
{
    return pg_conn_get(be, &be->r, err, err_len);
}

void pg_reader_check(struct pg_backend *be)
{
    pg_conn_check(&be->r, "connection lost");
}

/* ---------- writes: the batch engine (writer thread) ---------- */

static void pg_rollback(struct pg_backend *be)
{
    pg_audit_discard(be);
    be->notify_jobs = false;
    if (be->w.c && PQstatus(be->w.c) == CONNECTION_OK) {
        PGresult *r = PQexec(be->w.c, "ROLLBACK");
        PQclear(r);
    }
}

/* begin (store_int.h): the writer connection (reconnected when the backoff
 * allows), then BEGIN. */
static int pg_begin(struct store_backend *base, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    PGconn *c = pg_conn_get(be, &be->w, err, err_len);
    atomic_store(&be->writer_pid, c ? PQbackendPID(c) : 0);
    if (!c)
        return -1;
    be->notify_jobs = false;
    if (pg_cmd(c, "BEGIN", NULL, NULL, "starting a transaction", err, err_len) < 0) {
        pg_rollback(be);
        pg_conn_check(&be->w, err);
        return -1;
    }
    return 0;
}

/* rollback (store_int.h): lost when the connection went (a restart, a
 * network cut): the next begin reconnects. */
static int pg_rollback_op(struct store_backend *base, const char *why)
{
    struct pg_backend *be = (struct pg_backend *)base;
    bool alive = be->w.c && PQstatus(be->w.c) != CONNECTION_BAD;
    pg_rollback(be);
    pg_conn_check(&be->w, why);
    return alive ? STORE_ROLLBACK_DONE : STORE_ROLLBACK_LOST;
}

/* commit (store_int.h): the audit rows still buffered, then COMMIT. With
 * synchronous_commit on, COMMIT returns once the WAL is flushed. A
 * notification goes out only if it commits (one round trip for both). */
static int pg_commit(struct store_backend *base, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    if (pg_audit_flush(be, err, err_len) < 0 ||
        pg_cmd(be->w.c, be->notify_jobs ? "NOTIFY " PG_JOBS_CHANNEL "; COMMIT" : "COMMIT", NULL,
               NULL, "commit", err, err_len) < 0) {
        pg_rollback(be);
        pg_conn_check(&be->w, err);
        return STORE_COMMIT_FAILED;
    }
    be->chain_locked = false;
    be->notify_jobs = false;
    return STORE_COMMIT_WROTE;
}

/* jobs_claimable (store_int.h): NOTIFY with the commit. */
static void pg_jobs_claimable(struct store_backend *base)
{
    ((struct pg_backend *)base)->notify_jobs = true;
}

/* insert_events (store_int.h): in pipelines of PG_EVENTS_PER_PIPELINE (one
 * round trip each). Writer thread, inside a transaction. */
static int pg_insert_events_op(struct store_backend *base, struct store_op **ops, size_t n,
                               size_t *failed, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    for (size_t from = 0; from < n; from += PG_EVENTS_PER_PIPELINE) {
        size_t m = n - from < PG_EVENTS_PER_PIPELINE ? n - from : PG_EVENTS_PER_PIPELINE;
        size_t bad = m;
        if (pg_insert_events(be, ops + from, m, &bad, err, err_len) < 0) {
            *failed = bad >= m ? n : from + bad;
            return -1;
        }
    }
    return 0;
}

/* ---------- reads, open, close ---------- */

static bool pg_ping(struct store_backend *base, char *why, size_t why_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    char err[200];
    bool ok = false;
    pthread_mutex_lock(&be->rlock);
    /* A connection found broken is made again and asked once more. */
    for (int attempt = 0; attempt < 2 && !ok; attempt++) {
        PGconn *c = pg_reader(be, err, sizeof err);
        if (!c)
            break;
        PGresult *r =
            pg_run(c, "SELECT 1", NULL, PGRES_TUPLES_OK, "store query failed", err, sizeof err);
        ok = r != NULL;
        PQclear(r);
        if (!ok && PQstatus(c) != CONNECTION_BAD)
            break;
        if (!ok) {
            PQfinish(be->r.c);
            be->r.c = NULL;
        }
    }
    pthread_mutex_unlock(&be->rlock);
    if (!ok)
        snprintf(why, why_len, "%s", err);
    return ok;
}

static void pg_close(struct store_backend *base)
{
    struct pg_backend *be = (struct pg_backend *)base;
    if (!be)
        return;
    (void)pg_watch_jobs(base, NULL, NULL, NULL, 0); /* store.c stopped it already */
    pg_audit_discard(be);
    free(be->rows);
    if (be->w.c)
        PQfinish(be->w.c);
    if (be->r.c)
        PQfinish(be->r.c);
    pthread_mutex_destroy(&be->rlock);
    pg_shared_free(be);
    if (be->password) {
        OPENSSL_cleanse(be->password, strlen(be->password));
        free(be->password);
    }
    free(be->url);
    free(be);
}

static int pg_check_url(const char *url, char *err, size_t err_len)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &msg);
    if (!opts) {
        /* libpq's message may quote the URL: say only what is wrong. */
        PQfreemem(msg);
        snprintf(err, err_len,
                 "is not a valid PostgreSQL URI (postgresql://USER@HOST:PORT/DATABASE)");
        return -1;
    }
    int rc = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val) {
            snprintf(err, err_len,
                     "must not hold a password: give it as store.password (\"env:NAME\" or "
                     "\"file:PATH\") or in libpq's PGPASSFILE");
            rc = -1;
        }
    PQconninfoFree(opts);
    return rc;
}

static struct store_backend *pg_open(const char *url, const struct store_options *opts, char *err,
                                     size_t err_len)
{
    if (pg_check_url(url, err, err_len) < 0) {
        char e[200];
        snprintf(e, sizeof e, "store.url %s", err);
        snprintf(err, err_len, "%s", e);
        return NULL;
    }
    struct pg_backend *be = calloc(1, sizeof *be);
    if (!be) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    be->base.ops = &store_pg_backend;
    be->listen_pipe[0] = be->listen_pipe[1] = -1;
    be->read_only = opts->read_only;
    pthread_mutex_init(&be->rlock, NULL);
    pg_shared_init(be);
    be->instance = opts->instance_id ? strdup(opts->instance_id) : NULL;
    be->url = strdup(url);
    be->password = opts->password ? strdup(opts->password) : NULL;
    if (!be->url || (opts->password && !be->password)) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    be->r.c = pg_connect(be->url, be->password, err, err_len);
    if (!be->r.c)
        goto fail;
    if (!opts->read_only) {
        be->w.c = pg_connect(be->url, be->password, err, err_len);
        if (!be->w.c || pg_migrate(be->w.c, err, err_len) < 0)
            goto fail;
    } else {
        int v = pg_schema_version(be->r.c, err, err_len);
        if (v < 0)
            goto fail;
        if (v != pg_build_schema_version()) {
            snprintf(err, err_len,
                     "database schema version %d, this build needs %d (start `hookline serve` "
                     "once to migrate)",
                     v, pg_build_schema_version());
            goto fail;
        }
    }
    return &be->base;
fail:
    pg_close(&be->base);
    return NULL;
}

static int pg_schema_info(const char *url, const struct store_options *opts, int *version,
                          int *build, char *err, size_t err_len)
{
    if (pg_check_url(url, err, err_len) < 0)
        return -1;
    PGconn *c = pg_connect(url, opts->password, err, err_len);
    if (!c)
        return -1;
    *version = pg_schema_version(c, err, err_len);
    *build = pg_build_schema_version();
    PQfinish(c);
    return *version < 0 ? -1 : 0;
}

/* The PostgreSQL backend's table: the only symbol store.c knows it by. */
const struct store_backend_ops store_pg_backend = {
    .version = STORE_BACKEND_OPS_VERSION,
    .name = "postgresql",
    .has_dedupe_set = false,
    .needs_sync_thread = false,
    .open = pg_open,
    .close = pg_close,
    .check_url = pg_check_url,
    .build_schema_version = pg_build_schema_version,
    .schema_info = pg_schema_info,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback_op,
    .audit_tip = pg_audit_tip,
    .audit_insert = pg_audit_insert_row,
    .audit_prune_point = pg_audit_prune_point,
    .audit_delete_through = pg_audit_delete_through,
    .control_set = pg_control_set,
    .release_running = pg_release_running,
    .jobs_claimable = pg_jobs_claimable,
    .insert_events = pg_insert_events_op,
    .event_replan = pg_event_replan,
    .number_did = pg_number_did,
    .number_remember = pg_number_remember,
    .job_insert = pg_job_insert,
    .job_heads = pg_job_heads,
    .jobs_pending_of_key = pg_jobs_pending_of_key,
    .job_take = pg_job_take,
    .job_set_state = pg_job_set_state,
    .job_update = pg_job_update,
    .jobs_rekey = pg_jobs_rekey,
    .job_wait_behind = pg_job_wait_behind,
    .sync = NULL,
    .ping = pg_ping,
    .audit_scan = pg_audit_scan,
    .events_scan = pg_events_scan,
    .count_events = pg_count_events,
    .control_get = pg_control_get,
    .jobs_depth = pg_jobs_depth,
    .jobs_scan = pg_jobs_scan,
    .jobs_unresolved_before = pg_jobs_unresolved_before,
    .dedupe_stats = NULL,
    .watch_jobs = pg_watch_jobs,
    .rate_take = pg_rate_take,
    .rate_done = pg_rate_done,
    .leader_try = pg_leader_try,
    .instance_beat = pg_instance_beat,
    .instance_forget = pg_instance_forget,
    .instances_scan = pg_instances_scan,
};
