/*
 * console_http: everything under /console/ (see console_http.h). Assets are
 * answered with an ETag and revalidated on each load; every answer carries a
 * strict Content-Security-Policy (scripts and styles only from the console
 * itself, nothing inline, no frames), nosniff and no-referrer. Sign-in takes
 * the token in an Authorization header of a same-origin POST, never in a URL
 * or a body the page keeps; the session lives only in this process's memory.
 * Runs on the HTTP threads; the audit verification and a candidate rule's
 * replay (admin only) each run on a thread of their own (one at a time) so a
 * long chain or a long replay never holds an HTTP thread. Never logs a token,
 * a cookie or a CSRF token.
 */
#include "console/console_http.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "audit.h"
#include "console/console_assets.h"
#include "console/console_series.h"
#include "ingest.h"
#include "jdoc.h"
#include "log.h"
#include "digest.h"
#include "metrics.h"
#include "replay.h"
#include "rules.h"

#define CONSOLE_CSP                                                                                \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

enum console_verify_state { CONSOLE_VERIFY_IDLE = 0, CONSOLE_VERIFY_RUNNING, CONSOLE_VERIFY_DONE };

struct console_http {
    struct console_http_deps deps;
    struct console_sessions *sessions;
    struct console_series *series;
    pthread_mutex_t verify_mu;
    enum console_verify_state verify_state;
    bool verify_thread_live; /* a thread to join */
    pthread_t verify_thread;
    json_t *verify_result; /* owned; the last finished run */
    pthread_mutex_t replay_mu;
    enum console_verify_state replay_state;
    bool replay_thread_live; /* a thread to join */
    pthread_t replay_thread;
    json_t *replay_result;     /* owned; the last finished replay */
    atomic_bool replay_cancel; /* set by console_http_destroy */
};

static double console_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

struct console_http *console_http_create(const struct console_http_deps *deps)
{
    struct console_http *ch = calloc(1, sizeof *ch);
    if (!ch)
        return NULL;
    ch->deps = *deps;
    ch->sessions = console_sessions_create(0, 0, 0);
    ch->series = console_series_start();
    if (!ch->sessions || !ch->series) {
        console_sessions_destroy(ch->sessions);
        console_series_stop(ch->series);
        free(ch);
        return NULL;
    }
    pthread_mutex_init(&ch->verify_mu, NULL);
    pthread_mutex_init(&ch->replay_mu, NULL);
    atomic_init(&ch->replay_cancel, false);
    return ch;
}

void console_http_destroy(struct console_http *ch)
{
    if (!ch)
        return;
    pthread_mutex_lock(&ch->verify_mu);
    bool join = ch->verify_thread_live;
    ch->verify_thread_live = false;
    pthread_mutex_unlock(&ch->verify_mu);
    if (join)
        pthread_join(ch->verify_thread, NULL);
    json_decref(ch->verify_result);
    pthread_mutex_destroy(&ch->verify_mu);
    atomic_store(&ch->replay_cancel, true);
    pthread_mutex_lock(&ch->replay_mu);
    join = ch->replay_thread_live;
    ch->replay_thread_live = false;
    pthread_mutex_unlock(&ch->replay_mu);
    if (join)
        pthread_join(ch->replay_thread, NULL);
    json_decref(ch->replay_result);
    pthread_mutex_destroy(&ch->replay_mu);
    console_series_stop(ch->series);
    console_sessions_destroy(ch->sessions);
    free(ch);
}

/* ---------- answers ---------- */

struct console_extra {
    const char *set_cookie;
    const char *etag;
    const char *cache; /* Cache-Control; default no-store */
    const char *location;
    const char *allow;
};

static enum MHD_Result console_send(struct console_http *ch, struct MHD_Connection *conn,
                                    int status, const char *ctype, const void *body, size_t len,
                                    bool copy, const struct console_extra *x)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, (void *)body, copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    if (ctype)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, "Content-Security-Policy", CONSOLE_CSP);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Cross-Origin-Opener-Policy", "same-origin");
    MHD_add_response_header(r, "Cross-Origin-Resource-Policy", "same-origin");
    MHD_add_response_header(r, "Cache-Control", x && x->cache ? x->cache : "no-store");
    if (x && x->etag)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, x->etag);
    if (x && x->set_cookie)
        MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, x->set_cookie);
    if (x && x->location)
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, x->location);
    if (x && x->allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, x->allow);
    if (ch->deps.close_each)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result console_problem(struct console_http *ch, struct MHD_Connection *conn,
                                       int status, const char *slug, const char *title,
                                       const char *detail, const char *allow)
{
    struct ingest_response resp = {0};
    ingest_problem(&resp, status, slug, title, detail);
    struct console_extra x = {.allow = allow};
    enum MHD_Result rc = resp.body ? console_send(ch, conn, status, "application/problem+json",
                                                  resp.body, strlen(resp.body), true, &x)
                                   : MHD_NO;
    free(resp.body);
    return rc;
}

static enum MHD_Result console_json(struct console_http *ch, struct MHD_Connection *conn,
                                    int status, json_t *doc, const struct console_extra *x)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text)
        return console_problem(ch, conn, 500, "internal", "Internal error", "out of memory", NULL);
    enum MHD_Result rc =
        console_send(ch, conn, status, "application/json", text, strlen(text), true, x);
    free(text);
    return rc;
}

/* ---------- who is asking ---------- */

static const char *console_header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* The session of the request's cookie into *info. */
static bool console_session_of(struct console_http *ch, struct MHD_Connection *conn,
                               struct console_session_info *info,
                               char cookie[CONSOLE_SECRET_HEX + 1])
{
    const char *hdr = console_header(conn, "Cookie");
    char buf[CONSOLE_SECRET_HEX + 1];
    if (!hdr || console_cookie_get(hdr, CONSOLE_COOKIE_NAME, buf, sizeof buf) < 0)
        return false;
    bool ok = console_session_find(ch->sessions, buf, console_now(), info);
    if (ok && cookie)
        memcpy(cookie, buf, sizeof buf);
    memset(buf, 0, sizeof buf);
    return ok;
}

enum console_auth console_http_authorize(struct console_http *ch, struct MHD_Connection *conn,
                                         bool change, struct console_caller *who, const char **why)
{
    memset(who, 0, sizeof *who);
    *why = NULL;
    const char *auth = console_header(conn, "Authorization");
    if (auth) {
        if (strncasecmp(auth, "Bearer ", 7) != 0)
            return CONSOLE_AUTH_UNAUTHENTICATED;
        who->role = console_token_role(ch->deps.cfg, auth + 7, strlen(auth + 7));
        if (who->role == CONSOLE_ROLE_NONE)
            return CONSOLE_AUTH_UNAUTHENTICATED;
    } else {
        struct console_session_info info;
        if (!console_session_of(ch, conn, &info, NULL))
            return CONSOLE_AUTH_UNAUTHENTICATED;
        who->role = info.role;
        who->session = true;
        memcpy(who->handle, info.handle, sizeof who->handle);
        if (change) {
            const char *refusal = console_csrf_refusal(
                info.csrf, console_header(conn, "X-CSRF-Token"), console_header(conn, "Origin"),
                console_header(conn, "Sec-Fetch-Site"), console_header(conn, "Host"));
            memset(&info, 0, sizeof info);
            if (refusal) {
                *why = refusal;
                return CONSOLE_AUTH_FORBIDDEN;
            }
        }
        memset(&info, 0, sizeof info);
    }
    if (change && who->role != CONSOLE_ROLE_ADMIN) {
        *why = "the viewer role may read but not change anything";
        return CONSOLE_AUTH_FORBIDDEN;
    }
    return CONSOLE_AUTH_OK;
}

void console_http_actor(const struct console_caller *who, char *out, size_t len)
{
    if (who->session)
        snprintf(out, len, "console %s session %s", console_role_name(who->role), who->handle);
    else
        snprintf(out, len, "admin API");
}

int console_http_audit_change(struct console_http *ch, const struct console_caller *who,
                              const char *action, const char *target)
{
    json_t *rec = audit_record_new("admin.console", NULL, NULL);
    if (!rec)
        return -1;
    audit_detail_set_str(rec, "action", action);
    if (target)
        audit_detail_set_str(rec, "target", target);
    audit_detail_set_str(rec, "role", console_role_name(who->role));
    audit_detail_set_str(rec, "session", who->handle);
    struct store_op op = {.kind = STORE_OP_AUDIT, .audit = &rec, .naudit = 1};
    int rc = store_submit_wait(ch->deps.st, &op);
    if (rc < 0)
        log_write(LOG_ERROR, "audit record not stored", (const char *[]){"error", op.error, NULL});
    json_decref(rec);
    return rc;
}

/* Refuses the request unless authorized; returns true when it may go on. */
static bool console_gate(struct console_http *ch, struct MHD_Connection *conn, bool change,
                         struct console_caller *who, enum MHD_Result *rc)
{
    const char *why;
    enum console_auth a = console_http_authorize(ch, conn, change, who, &why);
    if (a == CONSOLE_AUTH_OK)
        return true;
    if (a == CONSOLE_AUTH_FORBIDDEN)
        *rc = console_problem(ch, conn, 403, "forbidden", "Forbidden", why, NULL);
    else
        *rc = console_problem(ch, conn, 401, "unauthorized", "Unauthorized",
                              "sign in with admin.token or admin.viewer_token", NULL);
    return false;
}

/* ---------- sign-in, sign-out ---------- */

/* hookline serves plain HTTP; TLS ends at a proxy, which says so in X-Forwarded-Proto.
 * (A forged header only makes the cookie stricter.) */
static bool console_secure(struct MHD_Connection *conn)
{
    const char *proto = console_header(conn, "X-Forwarded-Proto");
    return proto && strcasecmp(proto, "https") == 0;
}

static json_t *console_session_doc(const struct console_session_info *info)
{
    return json_pack("{s:s, s:s, s:s, s:f, s:i, s:i}", "role", console_role_name(info->role),
                     "session", info->handle, "csrf", info->csrf, "expires", info->expires,
                     "idle_s", CONSOLE_IDLE_S, "absolute_s", CONSOLE_ABSOLUTE_S);
}

static enum MHD_Result console_api_session(struct console_http *ch, struct MHD_Connection *conn,
                                           const char *method)
{
    if (strcmp(method, "GET") == 0) {
        struct console_session_info info;
        if (!console_session_of(ch, conn, &info, NULL))
            return console_problem(ch, conn, 401, "unauthorized", "Unauthorized", "not signed in",
                                   NULL);
        json_t *doc = console_session_doc(&info);
        memset(&info, 0, sizeof info);
        return console_json(ch, conn, 200, doc, NULL);
    }
    const char *refusal = console_origin_refusal(console_header(conn, "Origin"),
                                                 console_header(conn, "Sec-Fetch-Site"),
                                                 console_header(conn, "Host"));
    if (strcmp(method, "POST") == 0) {
        if (refusal)
            return console_problem(ch, conn, 403, "forbidden", "Forbidden", refusal, NULL);
        const char *auth = console_header(conn, "Authorization");
        enum console_role role = CONSOLE_ROLE_NONE;
        if (auth && strncasecmp(auth, "Bearer ", 7) == 0)
            role = console_token_role(ch->deps.cfg, auth + 7, strlen(auth + 7));
        if (role == CONSOLE_ROLE_NONE) {
            log_write(LOG_WARN, "console sign-in refused",
                      (const char *[]){"reason", "wrong or missing token", NULL});
            return console_problem(ch, conn, 401, "unauthorized", "Unauthorized",
                                   ch->deps.cfg->admin_token || ch->deps.cfg->admin_viewer_token
                                       ? "the token is not admin.token or admin.viewer_token"
                                       : "sign-in is disabled (neither admin.token nor "
                                         "admin.viewer_token is set)",
                                   NULL);
        }
        struct console_session_info info;
        if (console_session_new(ch->sessions, role, console_now(), &info) < 0)
            return console_problem(ch, conn, 503, "unavailable", "Service unavailable",
                                   "no random bytes for a session", NULL);
        char cookie[256];
        console_cookie_format(info.cookie, CONSOLE_ABSOLUTE_S, console_secure(conn), cookie,
                              sizeof cookie);
        log_write(LOG_INFO, "console sign-in",
                  (const char *[]){"role", console_role_name(role), "session", info.handle, NULL});
        json_t *doc = console_session_doc(&info);
        memset(&info, 0, sizeof info);
        struct console_extra x = {.set_cookie = cookie};
        enum MHD_Result rc = console_json(ch, conn, 200, doc, &x);
        memset(cookie, 0, sizeof cookie);
        return rc;
    }
    if (strcmp(method, "DELETE") == 0) {
        struct console_session_info info;
        char cookie[CONSOLE_SECRET_HEX + 1];
        if (!console_session_of(ch, conn, &info, cookie))
            return console_problem(ch, conn, 401, "unauthorized", "Unauthorized", "not signed in",
                                   NULL);
        const char *csrf = console_csrf_refusal(
            info.csrf, console_header(conn, "X-CSRF-Token"), console_header(conn, "Origin"),
            console_header(conn, "Sec-Fetch-Site"), console_header(conn, "Host"));
        if (csrf) {
            memset(cookie, 0, sizeof cookie);
            return console_problem(ch, conn, 403, "forbidden", "Forbidden", csrf, NULL);
        }
        console_session_end(ch->sessions, cookie);
        memset(cookie, 0, sizeof cookie);
        log_write(LOG_INFO, "console sign-out", (const char *[]){"session", info.handle, NULL});
        char clear[160];
        console_cookie_format(NULL, 0, console_secure(conn), clear, sizeof clear);
        struct console_extra x = {.set_cookie = clear};
        return console_json(ch, conn, 200, json_pack("{s:s}", "status", "signed_out"), &x);
    }
    return console_problem(ch, conn, 405, "method-not-allowed", "Method not allowed",
                           "use GET, POST or DELETE", "GET, POST, DELETE");
}

/* ---------- overview ---------- */

static enum MHD_Result console_api_overview(struct console_http *ch, struct MHD_Connection *conn)
{
    struct console_sample now = {.t = console_now()};
    size_t len = 0;
    char *text = metrics_render(&len);
    if (text)
        console_series_parse(text, &now);
    free(text);
    json_t *series = console_series_json(ch->series, NULL);
    /* The reading of this request ends the series, so rates show from the first sample on. */
    if (series)
        json_array_append_new(series,
                              json_pack("[f,f,f,f,f,f,f,f,f]", now.t, now.events, now.accepted,
                                        now.jobs_done, now.jobs_dead, now.didww_requests,
                                        now.queue_depth, now.queue_oldest_s, now.paused));
    json_t *didww = json_object();
    for (size_t i = 0; i < now.nstatus; i++)
        json_object_set_new(didww, now.status[i], json_real(now.status_count[i]));
    char why[256] = "";
    bool paused =
        ch->deps.delivery_paused && ch->deps.delivery_paused(ch->deps.ctx, why, sizeof why);
    char version[24] = "";
    if (ch->deps.rules)
        rules_version(ch->deps.rules, version, sizeof version);
    json_t *doc = json_pack(
        "{s:f, s:i, s:o, s:{s:f, s:f, s:f, s:f, s:f, s:f, s:f}, s:o, s:b, s:s, s:o}", "now", now.t,
        "step_s", CONSOLE_SERIES_STEP_S, "series", series ? series : json_array(), "current",
        "events", now.events, "accepted", now.accepted, "jobs_done", now.jobs_done, "jobs_dead",
        now.jobs_dead, "didww_requests", now.didww_requests, "queue_depth", now.queue_depth,
        "queue_oldest_s", now.queue_oldest_s, "didww_by_status", didww, "paused", paused,
        "paused_reason", why, "rule_version", version[0] ? json_string(version) : json_null());
    return console_json(ch, conn, 200, doc, NULL);
}

/* ---------- rules and dry run ---------- */

static int console_newest_record(const char *text, int64_t seq, void *ctx)
{
    json_t **out = ctx;
    json_decref(*out);
    *out = json_loads(text, 0, NULL);
    (void)seq;
    return 0;
}

static json_t *console_newest(struct console_http *ch, const char *kind)
{
    json_t *rec = NULL;
    struct store_audit_filter f = {.kind = kind, .limit = 1};
    char err[200];
    if (store_audit_scan(ch->deps.st, &f, console_newest_record, &rec, err, sizeof err) < 0) {
        json_decref(rec);
        return NULL;
    }
    return rec;
}

static enum MHD_Result console_api_rules(struct console_http *ch, struct MHD_Connection *conn)
{
    char version[24] = "";
    if (ch->deps.rules)
        rules_version(ch->deps.rules, version, sizeof version);
    json_t *ok = console_newest(ch, "rules.reloaded");
    json_t *failed = console_newest(ch, "rules.reload_failed");
    json_t *doc =
        json_pack("{s:b, s:o, s:o, s:o}", "configured", ch->deps.rules != NULL, "rule_version",
                  version[0] ? json_string(version) : json_null(), "last_reload",
                  ok ? ok : json_null(), "last_reload_failed", failed ? failed : json_null());
    return console_json(ch, conn, 200, doc, NULL);
}

struct console_dry {
    struct console_http *ch;
    const char *source;
    json_t *out;
};

static int console_dry_event(const struct store_event_row *row, void *vctx)
{
    struct console_dry *d = vctx;
    if (d->source && strcmp(d->source, row->source) != 0)
        return 0;
    char why[256] = "";
    json_t *headers = json_loads(row->headers_json ? row->headers_json : "{}", 0, NULL);
    struct jdoc *body =
        ingest_decode_body(row->content_type, row->body, row->body_len, why, sizeof why);
    if (!headers || !body) {
        d->out = json_pack("{s:s, s:s, s:s}", "source", row->source, "outcome", "undecodable",
                           "message", why[0] ? why : "the stored event cannot be decoded");
        json_decref(headers);
        jdoc_free(body);
        return 1;
    }
    struct rules_event ev = {.source = row->source,
                             .event_id = row->event_id,
                             .received_at = row->received_at,
                             .headers = headers,
                             .body = body,
                             .raw = row->body,
                             .raw_len = row->body_len};
    struct rules_result res;
    memset(&res, 0, sizeof res);
    rules_run(d->ch->deps.rules, &ev, &res);
    static const char *const outcomes[] = {"decided", "skipped", "failed"};
    json_t *jobs = json_array();
    for (size_t i = 0; i < res.plan.n; i++) {
        const struct actions_job *j = &res.plan.jobs[i];
        json_t *b = j->body ? json_loads(j->body, 0, NULL) : NULL;
        json_t *o = json_pack("{s:s, s:s, s:s, s:o}", "action", j->action, "method", j->method,
                              "path", j->path, "body", b ? b : json_null());
        if (o && j->did)
            json_object_set_new(o, "did", json_string(j->did));
        if (o && j->number)
            json_object_set_new(o, "number", json_string(j->number));
        json_array_append_new(jobs, o);
    }
    d->out = json_pack("{s:s, s:s, s:s, s:s, s:f, s:o}", "source", row->source, "outcome",
                       outcomes[res.outcome], "message", res.message, "rule_version", res.version,
                       "duration_ms", res.duration_s * 1000.0, "jobs", jobs);
    rules_result_free(&res);
    json_decref(headers);
    jdoc_free(body);
    return 1;
}

static enum MHD_Result console_api_dryrun(struct console_http *ch, struct MHD_Connection *conn)
{
    const char *event = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "event");
    if (!event || !*event)
        return console_problem(ch, conn, 400, "bad-query", "Bad query", "event is required", NULL);
    if (!ch->deps.rules)
        return console_problem(ch, conn, 409, "no-rules", "No rules",
                               "no rules.script is configured", NULL);
    struct console_dry d = {
        .ch = ch, .source = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "source")};
    struct store_event_filter f = {.event_id = event, .limit = 100};
    char err[200];
    if (store_events_scan(ch->deps.st, &f, console_dry_event, &d, err, sizeof err) < 0) {
        json_decref(d.out);
        return console_problem(ch, conn, 503, "store-unavailable", "Service unavailable", err,
                               NULL);
    }
    if (!d.out)
        return console_problem(ch, conn, 404, "not-found", "Not found", "no event with this id",
                               NULL);
    json_object_set_new(d.out, "stored", json_false());
    json_object_set_new(d.out, "sent", json_false());
    return console_json(ch, conn, 200, d.out, NULL);
}

/* ---------- integrity ---------- */

/* The same walk as `hookline audit verify` (store_audit_verify), on the verify
 * thread. */
static void *console_verify_main(void *arg)
{
    struct console_http *ch = arg;
    struct store_audit_verdict v;
    char err[300] = "";
    double started = console_now();
    int rc = store_audit_verify(ch->deps.st, &v, err, sizeof err);
    json_t *doc;
    if (rc < 0)
        doc = json_pack("{s:s, s:s}", "result", "error", "message", err);
    else if (v.result == STORE_VERIFY_BROKEN)
        doc = json_pack("{s:s, s:I, s:s}", "result", "broken", "seq", (json_int_t)v.broken_seq,
                        "message", v.why);
    else if (v.result == STORE_VERIFY_TAIL_MISSING)
        doc = json_pack("{s:s, s:s}", "result", "broken", "message",
                        "records after the retention checkpoint are missing");
    else
        doc = json_pack("{s:s, s:I, s:o}", "result", "intact", "records", (json_int_t)v.records,
                        "pruned_through", v.pruned ? json_integer(v.pruned_through) : json_null());
    if (doc) {
        json_object_set_new(doc, "started", json_real(started));
        json_object_set_new(doc, "finished", json_real(console_now()));
    }
    pthread_mutex_lock(&ch->verify_mu);
    json_decref(ch->verify_result);
    ch->verify_result = doc;
    ch->verify_state = CONSOLE_VERIFY_DONE;
    pthread_mutex_unlock(&ch->verify_mu);
    return NULL;
}

static enum MHD_Result console_api_verify(struct console_http *ch, struct MHD_Connection *conn,
                                          const char *method)
{
    bool start = strcmp(method, "POST") == 0;
    if (!start && strcmp(method, "GET") != 0)
        return console_problem(ch, conn, 405, "method-not-allowed", "Method not allowed",
                               "use GET or POST", "GET, POST");
    pthread_t old;
    bool join = false;
    pthread_mutex_lock(&ch->verify_mu);
    if (start && ch->verify_state != CONSOLE_VERIFY_RUNNING) {
        if (ch->verify_thread_live) {
            old = ch->verify_thread;
            join = true; /* finished: its result is already stored */
        }
        ch->verify_state = CONSOLE_VERIFY_RUNNING;
        ch->verify_thread_live = false;
    } else {
        start = false;
    }
    pthread_mutex_unlock(&ch->verify_mu);
    if (join)
        pthread_join(old, NULL);
    if (start) {
        pthread_t t;
        if (pthread_create(&t, NULL, console_verify_main, ch) != 0) {
            pthread_mutex_lock(&ch->verify_mu);
            ch->verify_state = CONSOLE_VERIFY_IDLE;
            pthread_mutex_unlock(&ch->verify_mu);
            return console_problem(ch, conn, 503, "unavailable", "Service unavailable",
                                   "cannot start the verification", NULL);
        }
        pthread_mutex_lock(&ch->verify_mu);
        ch->verify_thread = t;
        ch->verify_thread_live = true;
        pthread_mutex_unlock(&ch->verify_mu);
    }
    pthread_mutex_lock(&ch->verify_mu);
    static const char *const states[] = {"idle", "running", "done"};
    /* A copy: the verify thread may replace (and free) the result while this one is written. */
    json_t *doc = json_pack("{s:s, s:o?}", "state", states[ch->verify_state], "last",
                            json_deep_copy(ch->verify_result));
    pthread_mutex_unlock(&ch->verify_mu);
    return console_json(ch, conn, start ? 202 : 200, doc, NULL);
}

/* ---------- replay of a candidate rule ---------- */

#define CONSOLE_REPLAY_LIMIT_DEFAULT 10000
#define CONSOLE_REPLAY_LIMIT_MAX 100000
#define CONSOLE_REPLAY_CHANGES_LISTED 1000

/* One replay, handed to its thread (which frees it). */
struct console_replay_job {
    struct console_http *ch;
    struct rules *candidate; /* owned; destroyed on the replay thread */
    char *source;            /* owned; NULL: every source */
    double since, until, started;
    int64_t limit;
    char by[80], role[16], session[CONSOLE_HANDLE_HEX + 1];
    char sha256[DIGEST_SHA256_HEX_LEN + 1];
};

static void *console_replay_main(void *arg)
{
    struct console_replay_job *job = arg;
    struct console_http *ch = job->ch;
    char version[40] = "", err[600] = "";
    if (ch->deps.rules)
        rules_version(ch->deps.rules, version, sizeof version);
    struct replay_options o = {.since = job->since,
                               .until = job->until,
                               .source = job->source,
                               .limit = job->limit,
                               .in_force_version = version,
                               .data_configured = ch->deps.cfg->nrules_data > 0,
                               .max_changes = CONSOLE_REPLAY_CHANGES_LISTED,
                               .cancel = &ch->replay_cancel};
    struct replay_summary sum;
    json_t *doc = replay_run_json(ch->deps.st, job->candidate, &o, &sum, err, sizeof err);
    rules_destroy(job->candidate); /* its Lua state lives on this thread */
    json_t *out = json_pack("{s:s, s:s, s:f, s:f, s:I, s:o, s:f, s:s}", "candidate_sha256",
                            job->sha256, "by", job->by, "started", job->started, "finished",
                            console_now(), "limit", (json_int_t)job->limit, "source",
                            job->source ? json_string(job->source) : json_null(), "since",
                            job->since, "rule_in_force", version);
    if (out && doc)
        json_object_set_new(out, "report", doc);
    else if (out)
        json_object_set_new(out, "error", json_string(err));
    else
        json_decref(doc);

    json_t *rec = audit_record_new("rules.replayed", NULL, NULL);
    audit_detail_set_str(rec, "by", job->by);
    audit_detail_set_str(rec, "role", job->role);
    if (job->session[0])
        audit_detail_set_str(rec, "session", job->session);
    audit_detail_set_str(rec, "candidate_sha256", job->sha256);
    json_t *detail = json_object_get(rec, "detail");
    if (detail) {
        json_object_set_new(detail, "events", json_integer(sum.events));
        json_object_set_new(detail, "unchanged", json_integer(sum.unchanged));
        json_object_set_new(detail, "changed", json_integer(sum.changed));
        json_object_set_new(detail, "failed", json_integer(sum.failed));
        if (!doc)
            json_object_set_new(detail, "error", json_string(err));
    }
    struct store_op op = {.kind = STORE_OP_AUDIT, .audit = &rec, .naudit = rec ? 1 : 0};
    if (store_submit_wait(ch->deps.st, &op) < 0)
        log_write(LOG_ERROR, "audit record not stored", (const char *[]){"error", op.error, NULL});
    json_decref(rec);

    pthread_mutex_lock(&ch->replay_mu);
    json_decref(ch->replay_result);
    ch->replay_result = out;
    ch->replay_state = CONSOLE_VERIFY_DONE;
    pthread_mutex_unlock(&ch->replay_mu);
    free(job->source);
    free(job);
    return NULL;
}

/* The replay's state and its last result (a copy), for GET and a 202. */
static enum MHD_Result console_replay_state(struct console_http *ch, struct MHD_Connection *conn,
                                            int status)
{
    static const char *const states[] = {"idle", "running", "done"};
    pthread_mutex_lock(&ch->replay_mu);
    json_t *doc = json_pack("{s:s, s:o?}", "state", states[ch->replay_state], "last",
                            json_deep_copy(ch->replay_result));
    pthread_mutex_unlock(&ch->replay_mu);
    return console_json(ch, conn, status, doc, NULL);
}

/* Reads the POST body: 0, or an HTTP status with *why set. */
static int console_replay_parse(struct console_http *ch, const unsigned char *body, size_t len,
                                json_t **doc, const char **why)
{
    json_error_t jerr;
    *doc = body ? json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!json_is_object(*doc)) {
        *why = "the body must be a JSON object {\"rule\": \"...\", \"source\", \"since\", "
               "\"limit\"}";
        return 400;
    }
    json_t *rule = json_object_get(*doc, "rule"), *src = json_object_get(*doc, "source"),
           *since = json_object_get(*doc, "since"), *limit = json_object_get(*doc, "limit");
    if (!json_is_string(rule) || json_string_length(rule) == 0) {
        *why = "rule (the candidate's Lua text) is required";
        return 400;
    }
    if (json_string_length(rule) > CONSOLE_REPLAY_RULE_MAX) {
        *why = "the candidate rule is at most 262144 bytes";
        return 413;
    }
    if (src && !json_is_null(src) &&
        !(json_is_string(src) && (json_string_length(src) == 0 ||
                                  config_find_source(ch->deps.cfg, json_string_value(src))))) {
        *why = "source is not a configured source";
        return 400;
    }
    if (since && !json_is_null(since) &&
        !(json_is_number(since) && json_number_value(since) >= 0)) {
        *why = "since is a Unix time in seconds";
        return 400;
    }
    if (limit && !json_is_null(limit) &&
        !(json_is_integer(limit) && json_integer_value(limit) >= 1 &&
          json_integer_value(limit) <= CONSOLE_REPLAY_LIMIT_MAX)) {
        *why = "limit is an integer from 1 to 100000";
        return 400;
    }
    return 0;
}

enum MHD_Result console_http_replay_post(struct console_http *ch, struct MHD_Connection *conn,
                                         const unsigned char *body, size_t len, bool too_large)
{
    struct console_caller who;
    enum MHD_Result rc = MHD_NO;
    if (!console_gate(ch, conn, true, &who, &rc))
        return rc;
    if (too_large)
        return console_problem(ch, conn, 413, "too-large", "Payload too large",
                               "the request body is at most 327680 bytes (the candidate at most "
                               "262144)",
                               NULL);
    json_t *doc = NULL;
    const char *why = NULL;
    int status = console_replay_parse(ch, body, len, &doc, &why);
    if (status) {
        json_decref(doc);
        return console_problem(ch, conn, status, status == 413 ? "too-large" : "bad-request",
                               status == 413 ? "Payload too large" : "Bad request", why, NULL);
    }
    pthread_mutex_lock(&ch->replay_mu);
    bool busy = ch->replay_state == CONSOLE_VERIFY_RUNNING;
    pthread_mutex_unlock(&ch->replay_mu);
    if (busy) {
        json_decref(doc);
        return console_problem(ch, conn, 409, "replay-running", "Conflict",
                               "a replay is running: wait for its result", NULL);
    }

    json_t *rule = json_object_get(doc, "rule");
    const char *text = json_string_value(rule);
    size_t tlen = json_string_length(rule);
    const struct config *cfg = ch->deps.cfg;
    const char *names[64], *paths[64];
    size_t n = cfg->nrules_data < 64 ? cfg->nrules_data : 64;
    for (size_t i = 0; i < n; i++) {
        names[i] = cfg->rules_data[i].name;
        paths[i] = cfg->rules_data[i].path;
    }
    struct rules_options base = {.data_names = names,
                                 .data_paths = paths,
                                 .ndata = n,
                                 .instruction_limit = cfg->rules_instruction_limit,
                                 .memory_limit_bytes = cfg->rules_memory_limit_bytes,
                                 .api_version = cfg->didww_api_version};
    struct console_replay_job *job = calloc(1, sizeof *job);
    char err[600] = "";
    if (!job) {
        json_decref(doc);
        return console_problem(ch, conn, 503, "unavailable", "Service unavailable", "out of memory",
                               NULL);
    }
    job->ch = ch;
    if (replay_candidate_compile(text, tlen, &base, &job->candidate, err, sizeof err) < 0) {
        free(job);
        json_decref(doc);
        return console_problem(ch, conn, 422, "rules-invalid", "The candidate does not compile",
                               err, NULL);
    }
    digest_sha256_hex(text, tlen, job->sha256);
    const char *src = json_string_value(json_object_get(doc, "source"));
    job->source = src && src[0] ? strdup(src) : NULL;
    json_t *since = json_object_get(doc, "since"), *limit = json_object_get(doc, "limit");
    job->since = json_is_number(since) ? json_number_value(since) : 0;
    job->limit =
        json_is_integer(limit) ? (int64_t)json_integer_value(limit) : CONSOLE_REPLAY_LIMIT_DEFAULT;
    job->started = console_now();
    job->until = job->started;
    console_http_actor(&who, job->by, sizeof job->by);
    snprintf(job->role, sizeof job->role, "%s", console_role_name(who.role));
    memcpy(job->session, who.handle, sizeof job->session);
    json_decref(doc);

    pthread_t old;
    bool join = false, start = true;
    pthread_mutex_lock(&ch->replay_mu);
    if (ch->replay_state == CONSOLE_VERIFY_RUNNING) {
        start = false; /* another request started one meanwhile */
    } else {
        if (ch->replay_thread_live) {
            old = ch->replay_thread;
            join = true; /* finished: its result is already stored */
        }
        ch->replay_state = CONSOLE_VERIFY_RUNNING;
        ch->replay_thread_live = false;
    }
    pthread_mutex_unlock(&ch->replay_mu);
    if (!start) {
        rules_destroy(job->candidate);
        free(job->source);
        free(job);
        return console_problem(ch, conn, 409, "replay-running", "Conflict",
                               "a replay is running: wait for its result", NULL);
    }
    if (join)
        pthread_join(old, NULL);
    log_write(LOG_INFO, "replay of a candidate rule started",
              (const char *[]){"by", job->by, "candidate_sha256", job->sha256, NULL});
    pthread_t t;
    if (pthread_create(&t, NULL, console_replay_main, job) != 0) {
        pthread_mutex_lock(&ch->replay_mu);
        ch->replay_state = CONSOLE_VERIFY_IDLE;
        pthread_mutex_unlock(&ch->replay_mu);
        rules_destroy(job->candidate);
        free(job->source);
        free(job);
        return console_problem(ch, conn, 503, "unavailable", "Service unavailable",
                               "cannot start the replay", NULL);
    }
    pthread_mutex_lock(&ch->replay_mu);
    ch->replay_thread = t;
    ch->replay_thread_live = true;
    pthread_mutex_unlock(&ch->replay_mu);
    return console_replay_state(ch, conn, 202);
}

/* ---------- routing ---------- */

static enum MHD_Result console_asset(struct console_http *ch, struct MHD_Connection *conn,
                                     const struct console_asset *a, bool head)
{
    const char *inm = console_header(conn, "If-None-Match");
    struct console_extra x = {.etag = a->etag, .cache = "no-cache"};
    if (inm && strcmp(inm, a->etag) == 0)
        return console_send(ch, conn, 304, NULL, "", 0, false, &x);
    (void)head; /* libmicrohttpd sends the head only for HEAD */
    return console_send(ch, conn, 200, a->content_type, a->data, a->len, false, &x);
}

enum MHD_Result console_http_handle(struct console_http *ch, struct MHD_Connection *conn,
                                    const char *url, const char *method)
{
    bool get = strcmp(method, "GET") == 0, head = strcmp(method, "HEAD") == 0;
    if (strcmp(url, "/console") == 0) {
        struct console_extra x = {.location = "/console/"};
        return console_send(ch, conn, 308, "text/plain; charset=utf-8", "", 0, false, &x);
    }
    if (strncmp(url, "/console/api/", 13) == 0) {
        const char *what = url + 13;
        if (strcmp(what, "session") == 0)
            return console_api_session(ch, conn, method);
        struct console_caller who;
        enum MHD_Result rc = MHD_NO;
        if (strcmp(what, "verify") == 0) {
            /* Verification changes nothing: a viewer may run it (CSRF still checked). */
            if (!console_gate(ch, conn, false, &who, &rc))
                return rc;
            if (strcmp(method, "POST") == 0 && who.session) {
                struct console_session_info info;
                const char *refusal = NULL;
                if (console_session_of(ch, conn, &info, NULL))
                    refusal = console_csrf_refusal(info.csrf, console_header(conn, "X-CSRF-Token"),
                                                   console_header(conn, "Origin"),
                                                   console_header(conn, "Sec-Fetch-Site"),
                                                   console_header(conn, "Host"));
                memset(&info, 0, sizeof info);
                if (refusal)
                    return console_problem(ch, conn, 403, "forbidden", "Forbidden", refusal, NULL);
            }
            return console_api_verify(ch, conn, method);
        }
        if (strcmp(what, "replay") == 0) {
            if (strcmp(method, "POST") == 0) /* with no body (the server reads one first) */
                return console_http_replay_post(ch, conn, NULL, 0, false);
            if (!get)
                return console_problem(ch, conn, 405, "method-not-allowed", "Method not allowed",
                                       "use GET or POST", "GET, POST");
            if (!console_gate(ch, conn, false, &who, &rc))
                return rc;
            if (who.role != CONSOLE_ROLE_ADMIN)
                return console_problem(ch, conn, 403, "forbidden", "Forbidden",
                                       "the replay of a candidate rule is for the admin role",
                                       NULL);
            return console_replay_state(ch, conn, 200);
        }
        if (!get)
            return console_problem(ch, conn, 405, "method-not-allowed", "Method not allowed",
                                   "use GET", "GET");
        if (!console_gate(ch, conn, false, &who, &rc))
            return rc;
        if (strcmp(what, "overview") == 0)
            return console_api_overview(ch, conn);
        if (strcmp(what, "rules") == 0)
            return console_api_rules(ch, conn);
        if (strcmp(what, "dryrun") == 0)
            return console_api_dryrun(ch, conn);
        return console_problem(ch, conn, 404, "not-found", "Not found", "no such console endpoint",
                               NULL);
    }
    if (!get && !head)
        return console_problem(ch, conn, 405, "method-not-allowed", "Method not allowed", "use GET",
                               "GET, HEAD");
    const char *name = url + 9; /* after "/console/" */
    const struct console_asset *a = *name ? (strchr(name, '/') ? NULL : console_asset_find(name))
                                          : console_asset_find("index.html");
    if (!a)
        return console_problem(ch, conn, 404, "not-found", "Not found", "no such console file",
                               NULL);
    return console_asset(ch, conn, a, head);
}
