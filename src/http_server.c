/*
 * http_server: runs libmicrohttpd (internal thread pool, epoll) behind
 * http_gate, which owns the listening socket and hands over each connection
 * once its first request head is valid, and adapts libmicrohttpd's callbacks
 * to ingest. One struct http_request lives per
 * request (created in the URI log callback, freed in the completion callback).
 * A webhook whose event is queued for the store is suspended; the store's
 * writer thread resumes it from the op's completion callback. The in-flight
 * counter lets a graceful stop wait for every answer before closing.
 */
#include "http_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "console/console_http.h"
#include "digest.h"
#include "http_gate.h"
#include "log.h"
#include "metrics.h"
#include "number.h"
#include "verify.h"

#define HTTP_MAX_URI 4096         /* request target, bytes */
#define HTTP_MAX_HEAD 16384       /* request line and header fields, bytes */
#define HTTP_PAUSE_BODY_MAX 4096  /* POST /v1/delivery/pause body, bytes */
#define HTTP_PAUSE_REASON_MAX 200 /* its reason, characters */
#define HTTP_PAUSE_DEFAULT "paused by an operator"

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_gate *gate;
    const struct config *cfg;
    struct ingest *ing;
    struct store *st;
    unsigned port;
    atomic_int inflight;
    struct http_admin admin;
    struct console_http *console; /* /console/ and the session side of /v1 auth */
};

/* HTTP_ADMIN_BODY: the JSON body of POST /v1/delivery/pause or POST
 * /console/api/replay is read (up to body_max bytes; the rest is dropped). */
enum http_phase { HTTP_NEW = 0, HTTP_BODY, HTTP_WAITING, HTTP_ANSWER, HTTP_ADMIN_BODY };

struct http_request {
    struct http_server *srv;
    struct MHD_Connection *conn;
    enum http_phase phase;
    char *uri; /* as received, with the query string */
    char source[80];
    struct http_gate_conn *gc; /* the gate's tracker of this connection (deadlines) */
    double body_started;       /* monotonic seconds; the body deadline runs from here */
    unsigned char *body;
    size_t len, cap;
    bool too_large;
    size_t body_max; /* HTTP_ADMIN_BODY: the bound of this body */
    bool counted;
    struct ingest_pending pending;
    struct ingest_response resp;
};

/* ---------- helpers ---------- */

static double http_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* listen.keep_alive false: every answer closes its connection, so every request
 * is the first of its connection and passes the gate's byte-exact checks. Set
 * once by http_server_start before the library runs; one server per process. */
static atomic_bool http_close_each;

static enum MHD_Result http_send(struct MHD_Connection *conn, int status, const char *ctype,
                                 const char *body, size_t len, int retry_after, const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (atomic_load_explicit(&http_close_each, memory_order_relaxed))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result http_send_resp(struct MHD_Connection *conn, struct ingest_response *resp)
{
    static const char fallback[] =
        "{\"type\":\"urn:hookline:problem:internal\",\"title\":"
        "\"Internal error\",\"status\":500,\"detail\":\"out of memory\"}";
    if (!resp->body)
        return http_send(conn, 500, "application/problem+json", fallback, sizeof fallback - 1, 0,
                         NULL);
    return http_send(conn, resp->status, resp->content_type, resp->body, strlen(resp->body),
                     resp->retry_after_s, resp->allow);
}

static enum MHD_Result http_problem(struct MHD_Connection *conn, int status, const char *slug,
                                    const char *title, const char *detail, const char *allow)
{
    struct ingest_response resp = {0};
    ingest_problem(&resp, status, slug, title, detail);
    resp.allow = allow;
    enum MHD_Result rc = http_send_resp(conn, &resp);
    free(resp.body);
    return rc;
}

static double http_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A refusal after which the connection must not be reused (its framing or
 * head cannot be trusted): problem JSON with "Connection: close". */
static enum MHD_Result http_refuse_and_close(struct MHD_Connection *conn, int status,
                                             const char *detail)
{
    struct ingest_response resp = {0};
    ingest_problem(&resp, status, status == 408 ? "request-timeout" : "malformed-request",
                   status == 408 ? "Request Timeout" : "Bad Request", detail);
    enum MHD_Result rc = MHD_NO;
    struct MHD_Response *r =
        resp.body
            ? MHD_create_response_from_buffer(strlen(resp.body), resp.body, MHD_RESPMEM_MUST_COPY)
            : NULL;
    if (r) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/problem+json");
        MHD_add_response_header(r, "Cache-Control", "no-store");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
        rc = MHD_queue_response(conn, (unsigned)status, r);
        MHD_destroy_response(r);
    }
    free(resp.body);
    return rc;
}

struct http_framing {
    const char *clen; /* the first Content-Length value */
    size_t clen_len;
    bool conflict, te;
};

static enum MHD_Result http_framing_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                          size_t key_size, const char *value, size_t value_size)
{
    struct http_framing *f = cls;
    (void)kind;
    (void)key_size;
    if (!key || !value)
        return MHD_YES;
    if (strcasecmp(key, "Content-Length") == 0) {
        if (f->clen && (value_size != f->clen_len || memcmp(value, f->clen, value_size) != 0))
            f->conflict = true;
        f->clen = value;
        f->clen_len = value_size;
    } else if (strcasecmp(key, "Transfer-Encoding") == 0) {
        f->te = true;
    }
    return MHD_YES;
}

/* The gate checks every connection's first head byte by byte. Later requests
 * on a kept-alive connection reach us only as libmicrohttpd decoded them: what
 * can still be seen is checked here (RFC 9112 section 6.3 framing, an encoded
 * NUL in the raw target). Returns the refusal's detail, or NULL. */
static const char *http_framing_refusal(struct MHD_Connection *conn, const char *raw_uri)
{
    struct http_framing f = {0};
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, http_framing_field, &f);
    if (f.conflict)
        return "conflicting Content-Length values (RFC 9112 section 6.3)";
    if (f.te && f.clen)
        return "Transfer-Encoding together with Content-Length (RFC 9112 section 6.3)";
    for (const char *p = raw_uri; p && (p = strchr(p, '%')) != NULL; p++)
        if (p[1] == '0' && p[2] == '0')
            return "the request target contains an encoded NUL (%00)";
    return NULL;
}

/* True when the body has taken longer than listen.body_timeout_ms. */
static bool http_body_late(const struct http_request *rq)
{
    return http_mono() - rq->body_started > rq->srv->cfg->listen_body_timeout_ms / 1000.0;
}

/* Header and query lookups for verify/ingest (MHD matches names case-insensitively). */
static const char *http_header(void *ctx, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)ctx, MHD_HEADER_KIND, name);
}

static const char *http_query(void *ctx, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)ctx, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result http_collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                           const char *value)
{
    json_t *obj = cls;
    char lower[128];
    size_t n = strlen(key);
    if (n >= sizeof lower || !value)
        return MHD_YES;
    for (size_t i = 0; i <= n; i++)
        lower[i] = (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] + 32 : key[i]);
    json_t *v = json_string(value);
    if (!v) /* not UTF-8: keep a marker rather than fail the event */
        v = json_string("[not utf-8]");
    json_t *prev = json_object_get(obj, lower);
    if (prev && json_is_string(prev)) {
        /* Repeated header: join as HTTP does. */
        size_t l1 = json_string_length(prev), l2 = strlen(json_string_value(v));
        char *joined = malloc(l1 + l2 + 3);
        if (joined) {
            memcpy(joined, json_string_value(prev), l1);
            memcpy(joined + l1, ", ", 2);
            memcpy(joined + l1 + 2, json_string_value(v), l2 + 1);
            json_object_set_new(obj, lower, json_string(joined));
            free(joined);
        }
        json_decref(v);
    } else {
        json_object_set_new(obj, lower, v);
    }
    (void)kind;
    return MHD_YES;
}

static void http_remote(struct MHD_Connection *conn, char *out, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
}

/* ---------- non-webhook routes ---------- */

static enum MHD_Result http_metrics(struct MHD_Connection *conn)
{
    size_t len = 0;
    char *text = metrics_render(&len);
    if (!text)
        return http_problem(conn, 500, "internal", "Internal error", "cannot render metrics", NULL);
    enum MHD_Result rc =
        http_send(conn, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, 0, NULL);
    free(text);
    return rc;
}

static enum MHD_Result http_readyz(struct http_server *srv, struct MHD_Connection *conn)
{
    char why[320] = "";
    if (!store_ready(srv->st, why, sizeof why))
        return http_problem(conn, 503, "not-ready", "Not ready", why, NULL);
    char paused[256] = "";
    if (srv->admin.delivery_paused &&
        srv->admin.delivery_paused(srv->admin.ctx, paused, sizeof paused)) {
        snprintf(why, sizeof why,
                 "delivery is paused: %s (resume with `hookline jobs resume` "
                 "or POST /v1/delivery/resume)",
                 paused);
        return http_problem(conn, 503, "delivery-paused", "Not ready", why, NULL);
    }
    json_t *extra = srv->admin.status ? srv->admin.status(srv->admin.ctx) : NULL;
    if (extra) {
        json_object_set_new(extra, "status", json_string("ready"));
        char *text = json_dumps(extra, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(extra);
        if (text) {
            enum MHD_Result rc =
                http_send(conn, 200, "application/json", text, strlen(text), 0, NULL);
            free(text);
            return rc;
        }
    }
    static const char ok[] = "{\"status\":\"ready\"}";
    return http_send(conn, 200, "application/json", ok, sizeof ok - 1, 0, NULL);
}

/* ---------- admin API ---------- */

/* ---- admin reads: audit, events, jobs ---- */

#define HTTP_ADMIN_PAGE_DEFAULT 100
#define HTTP_ADMIN_PAGE_MAX 1000

static enum MHD_Result http_json(struct MHD_Connection *conn, int status, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text)
        return http_problem(conn, 500, "internal", "Internal error", "out of memory", NULL);
    enum MHD_Result rc = http_send(conn, status, "application/json", text, strlen(text), 0, NULL);
    free(text);
    return rc;
}

static int http_parse_positive(const char *s, int64_t *out)
{
    char *end;
    if (!s || !*s)
        return -1;
    long long v = strtoll(s, &end, 10);
    if (*end || v <= 0)
        return -1;
    *out = v;
    return 0;
}

static int http_parse_when(const char *s, double *out)
{
    int64_t secs;
    if (config_parse_duration(s, &secs) == 0) {
        *out = http_now() - (double)secs;
        return 0;
    }
    if (strchr(s, '-') && verify_parse_timestamp(s, &secs) == 0) {
        *out = (double)secs;
        return 0;
    }
    return -1;
}

struct http_collect {
    json_t *array;
    int64_t last;
};

static int http_collect_audit(const char *text, int64_t seq, void *ctx)
{
    struct http_collect *c = ctx;
    json_t *r = json_loads(text, 0, NULL);
    if (r)
        json_array_append_new(c->array, r);
    c->last = seq;
    return 0;
}

/* GET /v1/audit?kind=&source=&event=&did=&number=&job=&since=&until=&after=&limit= :
 * the matching records in seq order from after (exclusive), and next_after for
 * the following page (null at the end). */
static enum MHD_Result http_admin_audit(struct http_server *srv, struct MHD_Connection *conn)
{
    struct store_audit_filter f = {.oldest_first = true, .limit = HTTP_ADMIN_PAGE_DEFAULT};
    const char *v;
    f.kind = http_query(conn, "kind");
    f.source = http_query(conn, "source");
    f.event_id = http_query(conn, "event");
    f.did = http_query(conn, "did");
    char number[NUMBER_BUF_LEN], why[256];
    if ((v = http_query(conn, "number")) != NULL) {
        if (number_normalize(v, number, sizeof number, why, sizeof why) != NUMBER_OK)
            return http_problem(conn, 400, "bad-query", "Bad query", why, NULL);
        f.number = number;
    }
    if ((v = http_query(conn, "job")) && http_parse_positive(v, &f.job_id) < 0)
        return http_problem(conn, 400, "bad-query", "Bad query", "job must be a positive integer",
                            NULL);
    if ((v = http_query(conn, "after")) && http_parse_positive(v, &f.after_seq) < 0)
        return http_problem(conn, 400, "bad-query", "Bad query", "after must be a positive seq",
                            NULL);
    if ((v = http_query(conn, "limit")) &&
        (http_parse_positive(v, &f.limit) < 0 || f.limit > HTTP_ADMIN_PAGE_MAX))
        return http_problem(conn, 400, "bad-query", "Bad query", "limit must be 1..1000", NULL);
    if ((v = http_query(conn, "since")) && http_parse_when(v, &f.since) < 0)
        return http_problem(conn, 400, "bad-query", "Bad query",
                            "since takes 15m, 2h, 7d or an RFC 3339 time", NULL);
    if ((v = http_query(conn, "until")) && http_parse_when(v, &f.until) < 0)
        return http_problem(conn, 400, "bad-query", "Bad query",
                            "until takes 15m, 2h, 7d or an RFC 3339 time", NULL);
    struct http_collect c = {json_array(), 0};
    char err[200];
    if (store_audit_scan(srv->st, &f, http_collect_audit, &c, err, sizeof err) < 0) {
        json_decref(c.array);
        return http_problem(conn, 503, "store-unavailable", "Service unavailable", err, NULL);
    }
    json_t *doc = json_pack("{s:o}", "records", c.array);
    json_object_set_new(doc, "next_after",
                        (int64_t)json_array_size(c.array) == f.limit ? json_integer(c.last)
                                                                     : json_null());
    return http_json(conn, 200, doc);
}

static int http_collect_event(const struct store_event_row *row, void *ctx)
{
    json_t *arr = ctx;
    json_t *e = json_pack("{s:I, s:s, s:s, s:f, s:s, s:s}", "row", (json_int_t)row->row, "source",
                          row->source, "event_id", row->event_id, "received_at", row->received_at,
                          "status", row->status, "content_type", row->content_type);
    if (!e)
        return 0;
    json_t *h = json_loads(row->headers_json ? row->headers_json : "{}", 0, NULL);
    json_object_set_new(e, "headers", h ? h : json_object());
    json_t *b = json_stringn((const char *)row->body, row->body_len);
    json_object_set_new(e, "body", b ? b : json_string("[not UTF-8]"));
    json_array_append_new(arr, e);
    return 0;
}

static int http_collect_job(const struct store_job *j, const char *state, int last_status,
                            const char *last_error, void *ctx)
{
    json_t *arr = ctx;
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:f}", "id", (json_int_t)j->id,
                          "state", state, "source", j->source, "event_id", j->event_id, "action",
                          j->action, "method", j->method, "path", j->path, "attempts", j->attempts,
                          "created_at", j->created_at);
    if (!o)
        return 0;
    if (j->did)
        json_object_set_new(o, "did", json_string(j->did));
    if (j->number)
        json_object_set_new(o, "number", json_string(j->number));
    if (last_status)
        json_object_set_new(o, "last_status", json_integer(last_status));
    if (last_error)
        json_object_set_new(o, "last_error", json_string(last_error));
    json_array_append_new(arr, o);
    return 0;
}

/* POST /v1/delivery/pause: body (may be NULL; len bytes; too_large when it
 * passed HTTP_PAUSE_BODY_MAX) is empty or {"reason": "..."}. by names the
 * caller. */
static enum MHD_Result http_admin_pause(struct http_server *srv, struct MHD_Connection *conn,
                                        const char *by, const unsigned char *body, size_t len,
                                        bool too_large)
{
    if (too_large)
        return http_problem(conn, 413, "too-large", "Payload too large",
                            "the body of a pause is at most 4096 bytes", NULL);
    char reason[4 * HTTP_PAUSE_REASON_MAX + 1];
    snprintf(reason, sizeof reason, "%s", HTTP_PAUSE_DEFAULT);
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i < len) {
        json_error_t jerr;
        json_t *doc = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
        json_t *r = json_is_object(doc) ? json_object_get(doc, "reason") : NULL;
        const char *bad = NULL;
        if (!json_is_object(doc))
            bad = "the body must be a JSON object such as {\"reason\": \"...\"}";
        else if (r && !json_is_null(r) && !json_is_string(r))
            bad = "reason must be a string";
        else if (json_is_string(r)) {
            const char *t = json_string_value(r);
            size_t n = json_string_length(r), chars = 0;
            for (size_t k = 0; k < n && !bad; k++) {
                unsigned char ch = (unsigned char)t[k];
                if (ch < 0x20 || ch == 0x7f)
                    bad = "reason must not contain control characters";
                else if ((ch & 0xc0) != 0x80)
                    chars++;
            }
            if (!bad && chars > HTTP_PAUSE_REASON_MAX)
                bad = "reason is at most 200 characters";
            size_t lead = strspn(t, " ");
            if (!bad && t[lead])
                snprintf(reason, sizeof reason, "%s", t);
        }
        json_decref(doc);
        if (bad)
            return http_problem(conn, 400, "bad-request", "Bad request", bad, NULL);
    }
    char msg[300] = "";
    int rc = srv->admin.pause_delivery
                 ? srv->admin.pause_delivery(srv->admin.ctx, by, reason, msg, sizeof msg)
                 : -1;
    if (rc < 0)
        return http_problem(conn, 409, "delivery-off", "Not paused",
                            msg[0] ? msg : "delivery is not running", NULL);
    char now[256] = "";
    if (srv->admin.delivery_paused)
        (void)srv->admin.delivery_paused(srv->admin.ctx, now, sizeof now);
    return http_json(conn, 200,
                     json_pack("{s:s, s:b, s:s}", "status", rc == 0 ? "paused" : "already_paused",
                               "paused", 1, "reason", now[0] ? now : reason));
}

static enum MHD_Result http_admin(struct http_server *srv, struct MHD_Connection *conn,
                                  const char *url, const char *method, const unsigned char *body,
                                  size_t body_len, bool body_too_large)
{
    /* Every POST changes something: admin only, and through a session only
     * with the CSRF check (console_http_authorize). */
    bool change = strcmp(method, "POST") == 0;
    struct console_caller who;
    const char *refusal = NULL;
    enum console_auth auth = console_http_authorize(srv->console, conn, change, &who, &refusal);
    if (auth == CONSOLE_AUTH_FORBIDDEN)
        return http_problem(conn, 403, "forbidden", "Forbidden", refusal, NULL);
    if (auth != CONSOLE_AUTH_OK) {
        struct ingest_response resp = {0};
        ingest_problem(&resp, 401, "unauthorized", "Unauthorized",
                       srv->cfg->admin_token || srv->cfg->admin_viewer_token
                           ? "a valid Authorization: Bearer token is required"
                           : "the admin API is disabled (admin.token is not set)");
        struct MHD_Response *r = MHD_create_response_from_buffer(resp.body ? strlen(resp.body) : 0,
                                                                 resp.body, MHD_RESPMEM_MUST_COPY);
        enum MHD_Result rc = MHD_NO;
        if (r) {
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/problem+json");
            MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
            MHD_add_response_header(r, "Cache-Control", "no-store");
            if (atomic_load_explicit(&http_close_each, memory_order_relaxed))
                MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
            rc = MHD_queue_response(conn, 401, r);
            MHD_destroy_response(r);
        }
        free(resp.body);
        return rc;
    }
    char by[80];
    console_http_actor(&who, by, sizeof by);
    if (change && who.session) {
        char action[160];
        snprintf(action, sizeof action, "%s %s", method, url);
        console_http_audit_change(srv->console, &who, action, NULL);
    }
    if (strcmp(url, "/v1/rules/reload") == 0) {
        if (strcmp(method, "POST") != 0)
            return http_problem(conn, 405, "method-not-allowed", "Method not allowed", "use POST",
                                "POST");
        char msg[600] = "";
        if (!srv->admin.reload_rules)
            return http_problem(conn, 409, "no-rules", "No rules", "no rules.script is configured",
                                NULL);
        if (srv->admin.reload_rules(srv->admin.ctx, msg, sizeof msg) < 0)
            return http_problem(conn, 422, "rules-invalid", "Rules not reloaded", msg, NULL);
        json_t *ok = json_pack("{s:s, s:s}", "status", "reloaded", "rule_version", msg);
        char *text = ok ? json_dumps(ok, JSON_COMPACT) : NULL;
        json_decref(ok);
        enum MHD_Result rc =
            text ? http_send(conn, 200, "application/json", text, strlen(text), 0, NULL) : MHD_NO;
        free(text);
        return rc;
    }
    bool get = strcmp(method, "GET") == 0;
    if (strcmp(url, "/v1/audit") == 0) {
        if (!get)
            return http_problem(conn, 405, "method-not-allowed", "Method not allowed", "use GET",
                                "GET");
        return http_admin_audit(srv, conn);
    }
    if (strncmp(url, "/v1/events/", 11) == 0 && url[11]) {
        if (!get)
            return http_problem(conn, 405, "method-not-allowed", "Method not allowed", "use GET",
                                "GET");
        json_t *arr = json_array();
        struct store_event_filter f = {.event_id = url + 11, .limit = 100};
        char err[200];
        if (store_events_scan(srv->st, &f, http_collect_event, arr, err, sizeof err) < 0) {
            json_decref(arr);
            return http_problem(conn, 503, "store-unavailable", "Service unavailable", err, NULL);
        }
        if (json_array_size(arr) == 0) {
            json_decref(arr);
            return http_problem(conn, 404, "not-found", "Not found", "no event with this id", NULL);
        }
        return http_json(conn, 200, json_pack("{s:o}", "events", arr));
    }
    if (strcmp(url, "/v1/jobs") == 0) {
        if (!get)
            return http_problem(conn, 405, "method-not-allowed", "Method not allowed", "use GET",
                                "GET");
        int64_t limit = HTTP_ADMIN_PAGE_MAX;
        const char *l = http_query(conn, "limit");
        if (l && (http_parse_positive(l, &limit) < 0 || limit > HTTP_ADMIN_PAGE_MAX))
            return http_problem(conn, 400, "bad-query", "Bad query", "limit must be 1..1000", NULL);
        json_t *arr = json_array();
        char err[200];
        if (store_jobs_scan(srv->st, http_query(conn, "state"), limit, http_collect_job, arr, err,
                            sizeof err) < 0) {
            json_decref(arr);
            return http_problem(conn, 503, "store-unavailable", "Service unavailable", err, NULL);
        }
        return http_json(conn, 200, json_pack("{s:o}", "jobs", arr));
    }
    if (strncmp(url, "/v1/jobs/", 9) == 0) {
        char *end;
        long long id = strtoll(url + 9, &end, 10);
        bool retry = strcmp(end, "/retry") == 0, cancel = strcmp(end, "/cancel") == 0;
        if (id <= 0 || (!retry && !cancel))
            return http_problem(conn, 404, "not-found", "Not found",
                                "use /v1/jobs/{id}/retry or /v1/jobs/{id}/cancel", NULL);
        if (strcmp(method, "POST") != 0)
            return http_problem(conn, 405, "method-not-allowed", "Method not allowed", "use POST",
                                "POST");
        char err[200];
        int rc = retry ? store_job_transition(srv->st, id, "pending", "dead", "admin.job_retry", by,
                                              err, sizeof err)
                       : store_job_transition(srv->st, id, "cancelled", "pending", "job.cancelled",
                                              by, err, sizeof err);
        if (rc < 0)
            return http_problem(conn, 503, "store-unavailable", "Service unavailable", err, NULL);
        if (rc == STORE_JOB_NOT_FOUND)
            return http_problem(conn, 404, "not-found", "Not found", "no job has this id", NULL);
        if (rc == STORE_JOB_WRONG_STATE)
            return http_problem(conn, 409, "job-state", "Conflict",
                                retry ? "only a dead job can be retried"
                                      : "only a pending job can be cancelled",
                                NULL);
        return http_json(conn, 200,
                         json_pack("{s:I, s:s}", "id", (json_int_t)id, "state",
                                   retry ? "pending" : "cancelled"));
    }
    if (strcmp(url, "/v1/delivery/pause") == 0) {
        if (strcmp(method, "POST") != 0)
            return http_problem(conn, 405, "method-not-allowed", "Method not allowed", "use POST",
                                "POST");
        return http_admin_pause(srv, conn, by, body, body_len, body_too_large);
    }
    if (strcmp(url, "/v1/delivery/resume") == 0) {
        if (strcmp(method, "POST") != 0)
            return http_problem(conn, 405, "method-not-allowed", "Method not allowed", "use POST",
                                "POST");
        char msg[300] = "";
        int rc = srv->admin.resume_delivery
                     ? srv->admin.resume_delivery(srv->admin.ctx, msg, sizeof msg)
                     : -1;
        if (rc < 0)
            return http_problem(conn, 409, "delivery-off", "Not resumed",
                                msg[0] ? msg : "delivery is not running", NULL);
        const char *text = rc == 0 ? "{\"status\":\"resumed\"}" : "{\"status\":\"not_paused\"}";
        return http_send(conn, 200, "application/json", text, strlen(text), 0, NULL);
    }
    return http_problem(conn, 404, "not-found", "Not found",
                        "no such admin endpoint in this version", NULL);
}

static enum MHD_Result http_route_simple(struct http_server *srv, struct MHD_Connection *conn,
                                         const char *url, const char *method)
{
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 ||
        strcmp(url, "/metrics") == 0) {
        if (!get)
            return http_problem(conn, 405, "method-not-allowed", "Method not allowed",
                                "this endpoint answers GET only", "GET, HEAD");
        if (strcmp(url, "/healthz") == 0) {
            static const char ok[] = "{\"status\":\"ok\"}";
            return http_send(conn, 200, "application/json", ok, sizeof ok - 1, 0, NULL);
        }
        if (strcmp(url, "/readyz") == 0)
            return http_readyz(srv, conn);
        return http_metrics(conn);
    }
    if (strncmp(url, "/v1/", 4) == 0)
        return http_admin(srv, conn, url, method, NULL, 0, false);
    if (strcmp(url, "/console") == 0 || strncmp(url, "/console/", 9) == 0)
        return console_http_handle(srv->console, conn, url, method);
    return http_problem(conn, 404, "not-found", "Not found", "no such endpoint", NULL);
}

/* ---------- webhook route ---------- */

static void http_store_done(struct store_op *op, void *ctx)
{
    struct http_request *rq = ctx;
    (void)op;
    rq->phase = HTTP_ANSWER;
    MHD_resume_connection(rq->conn);
}

static enum MHD_Result http_hook_first(struct http_request *rq, struct MHD_Connection *conn,
                                       const char *method)
{
    struct http_server *srv = rq->srv;
    const char *ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    const char *clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    long long declared = -1;
    if (clen) {
        char *end;
        declared = strtoll(clen, &end, 10);
        if (*end || declared < 0)
            declared = -1;
    }
    if (!ingest_precheck(srv->ing, rq->source, method, ctype, declared, &rq->resp)) {
        rq->phase = HTTP_ANSWER;
        return http_send_resp(conn, &rq->resp);
    }
    size_t initial = declared > 0 ? (size_t)declared : 4096;
    if (initial > srv->cfg->max_body_bytes)
        initial = srv->cfg->max_body_bytes;
    rq->body = malloc(initial + 1);
    if (!rq->body)
        return http_problem(conn, 503, "out-of-memory", "Service unavailable", "out of memory",
                            NULL);
    rq->cap = initial;
    rq->phase = HTTP_BODY;
    rq->body_started = http_mono();
    http_gate_conn_phase(srv->gate, rq->gc, HTTP_GATE_AWAIT_BODY);
    return MHD_YES;
}

/* Appends upload data; past the limit the rest is drained, never buffered. */
static void http_hook_data(struct http_request *rq, const char *data, size_t size)
{
    size_t max = rq->srv->cfg->max_body_bytes;
    if (rq->too_large)
        return;
    if (rq->len + size > max) {
        rq->too_large = true;
        free(rq->body);
        rq->body = NULL;
        rq->len = rq->cap = 0;
        return;
    }
    if (rq->len + size > rq->cap) {
        size_t ncap = rq->cap * 2;
        while (ncap < rq->len + size)
            ncap *= 2;
        if (ncap > max)
            ncap = max;
        unsigned char *nb = realloc(rq->body, ncap + 1);
        if (!nb) {
            rq->too_large = true; /* out of memory: refuse rather than truncate */
            free(rq->body);
            rq->body = NULL;
            rq->len = rq->cap = 0;
            return;
        }
        rq->body = nb;
        rq->cap = ncap;
    }
    memcpy(rq->body + rq->len, data, size);
    rq->len += size;
}

static enum MHD_Result http_hook_complete(struct http_request *rq, struct MHD_Connection *conn,
                                          const char *method)
{
    struct http_server *srv = rq->srv;
    if (rq->too_large) {
        ingest_too_large(srv->ing, rq->source, &rq->resp);
        rq->phase = HTTP_ANSWER;
        return http_send_resp(conn, &rq->resp);
    }
    rq->body[rq->len] = '\0';
    json_t *headers = json_object();
    MHD_get_connection_values(conn, MHD_HEADER_KIND, http_collect_header, headers);
    char remote[64];
    http_remote(conn, remote, sizeof remote);

    /* The URL as this listener (plain HTTP) received it; verify swaps in the forwarded
     * scheme and host for a source with verify.trust_forwarded. */
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    size_t ulen = strlen(rq->uri) + (host ? strlen(host) : 0) + 16;
    char *full = malloc(ulen);
    if (full)
        snprintf(full, ulen, "http://%s%s", host ? host : "", rq->uri);

    struct ingest_request req = {
        .method = method,
        .source = rq->source,
        .url = full ? full : rq->uri,
        .content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"),
        .remote = remote,
        .headers = headers,
        .header = http_header,
        .query = http_query,
        .lookup_ctx = conn,
        .body = rq->body,
        .body_len = rq->len,
        .now = http_now(),
    };
    bool go = ingest_prepare(srv->ing, &req, &rq->pending, &rq->resp);
    json_decref(headers);
    free(full);
    if (!go) {
        rq->phase = HTTP_ANSWER;
        return http_send_resp(conn, &rq->resp);
    }
    rq->pending.op.done = http_store_done;
    rq->pending.op.done_ctx = rq;
    rq->phase = HTTP_WAITING;
    /* Suspend before submitting: the writer may resume us at once. */
    MHD_suspend_connection(conn);
    if (store_submit(srv->st, &rq->pending.op) < 0) {
        rq->phase = HTTP_ANSWER;
        MHD_resume_connection(conn);
    }
    return MHD_YES;
}

static enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **req_cls)
{
    struct http_server *srv = cls;
    struct http_request *rq = *req_cls;
    (void)version;
    if (!rq)
        return MHD_NO; /* the URI callback failed to allocate */
    rq->conn = conn;

    if (rq->phase == HTTP_NEW) {
        if (!rq->counted) {
            rq->counted = true;
            atomic_fetch_add(&srv->inflight, 1);
            const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
            rq->gc = ci ? ci->socket_context : NULL;
            http_gate_conn_phase(srv->gate, rq->gc, HTTP_GATE_BUSY);
        }
        const char *refusal = http_framing_refusal(conn, rq->uri);
        if (refusal) {
            metrics_event_received("unknown", "malformed");
            return http_refuse_and_close(conn, 400, refusal);
        }
        bool pause = strcmp(url, "/v1/delivery/pause") == 0,
             replay = strcmp(url, "/console/api/replay") == 0;
        if ((pause || replay) && strcmp(method, "POST") == 0) {
            rq->phase = HTTP_ADMIN_BODY;
            rq->body_max = pause ? HTTP_PAUSE_BODY_MAX : CONSOLE_REPLAY_BODY_MAX;
            rq->body_started = http_mono();
            http_gate_conn_phase(srv->gate, rq->gc, HTTP_GATE_AWAIT_BODY);
            return MHD_YES;
        }
        if (strncmp(url, "/hooks/", 7) != 0)
            return http_route_simple(srv, conn, url, method);
        const char *name = url + 7;
        if (strlen(name) >= sizeof rq->source || strchr(name, '/')) {
            metrics_event_received("unknown", "unknown_source");
            return http_problem(conn, 404, "unknown-source", "Unknown source",
                                "no webhook source with this name is configured", NULL);
        }
        snprintf(rq->source, sizeof rq->source, "%s", name);
        return http_hook_first(rq, conn, method);
    }
    if (rq->phase == HTTP_BODY) {
        if (http_body_late(rq)) {
            rq->phase = HTTP_ANSWER;
            *upload_data_size = 0;
            http_gate_conn_phase(srv->gate, rq->gc, HTTP_GATE_BUSY);
            return http_refuse_and_close(conn, 408, "the request body did not arrive in time");
        }
        if (*upload_data_size > 0) {
            http_hook_data(rq, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return MHD_YES;
        }
        http_gate_conn_phase(srv->gate, rq->gc, HTTP_GATE_BUSY);
        return http_hook_complete(rq, conn, method);
    }
    if (rq->phase == HTTP_ADMIN_BODY) {
        if (http_body_late(rq)) {
            rq->phase = HTTP_ANSWER;
            *upload_data_size = 0;
            http_gate_conn_phase(srv->gate, rq->gc, HTTP_GATE_BUSY);
            return http_refuse_and_close(conn, 408, "the request body did not arrive in time");
        }
        if (*upload_data_size > 0) {
            size_t n = *upload_data_size;
            *upload_data_size = 0;
            if (rq->too_large || rq->len + n > rq->body_max) {
                rq->too_large = true; /* dropped, never buffered */
                free(rq->body);
                rq->body = NULL;
                rq->len = 0;
                return MHD_YES;
            }
            if (!rq->body && !(rq->body = malloc(rq->body_max + 1))) {
                rq->too_large = true; /* out of memory: refuse rather than truncate */
                return MHD_YES;
            }
            memcpy(rq->body + rq->len, upload_data, n);
            rq->len += n;
            return MHD_YES;
        }
        rq->phase = HTTP_ANSWER;
        http_gate_conn_phase(srv->gate, rq->gc, HTTP_GATE_BUSY);
        if (strcmp(url, "/console/api/replay") == 0)
            return console_http_replay_post(srv->console, conn, rq->body, rq->len, rq->too_large);
        return http_admin(srv, conn, url, method, rq->body, rq->len, rq->too_large);
    }
    if (rq->phase == HTTP_ANSWER && !rq->resp.body && rq->pending.op.kind) {
        ingest_complete(srv->ing, &rq->pending, &rq->resp);
        return http_send_resp(conn, &rq->resp);
    }
    if (rq->phase == HTTP_WAITING)
        return MHD_YES; /* spurious call while suspended */
    /* Already answered: discard any further upload data. */
    *upload_data_size = 0;
    return MHD_YES;
}

static void *http_uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct http_request *rq = calloc(1, sizeof *rq);
    (void)conn;
    if (!rq)
        return NULL;
    rq->srv = cls;
    size_t n = strnlen(uri, HTTP_MAX_URI);
    rq->uri = malloc(n + 1);
    if (!rq->uri) {
        free(rq);
        return NULL;
    }
    memcpy(rq->uri, uri, n);
    rq->uri[n] = '\0';
    return rq;
}

static void http_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                           enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct http_request *rq = *req_cls;
    (void)conn;
    (void)toe;
    if (!rq)
        return;
    if (rq->counted) {
        http_gate_conn_phase(srv->gate, rq->gc, HTTP_GATE_AWAIT_HEAD);
        atomic_fetch_sub(&srv->inflight, 1);
    }
    ingest_pending_free(&rq->pending);
    free(rq->resp.body);
    free(rq->body);
    free(rq->uri);
    free(rq);
    *req_cls = NULL;
}

static void http_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    (void)cls;
    log_write(LOG_WARN, "http", (const char *[]){"detail", msg, NULL});
}

static void http_notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                                   enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? http_gate_conn_started(srv->gate, ci->connect_fd) : NULL;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        http_gate_conn_closed(srv->gate, *socket_context);
        *socket_context = NULL;
    }
}

static bool http_handoff(void *ctx, int fd, const struct sockaddr *sa, socklen_t sa_len)
{
    struct http_server *srv = ctx;
    return MHD_add_connection(srv->daemon, fd, sa, sa_len) == MHD_YES;
}

static struct http_server *http_metrics_owner; /* the server whose gate /metrics reads */
static pthread_mutex_t http_metrics_mu = PTHREAD_MUTEX_INITIALIZER;

static double http_gate_metric(void *ctx)
{
    const char *which = ctx;
    struct http_gate_stats st = {0};
    pthread_mutex_lock(&http_metrics_mu);
    if (http_metrics_owner)
        http_gate_stats(http_metrics_owner->gate, &st);
    pthread_mutex_unlock(&http_metrics_mu);
    if (strcmp(which, "per_address") == 0)
        return (double)st.refused_per_address;
    if (strcmp(which, "total") == 0)
        return (double)st.refused_total;
    if (strcmp(which, "head") == 0)
        return (double)st.head_timeouts;
    if (strcmp(which, "body") == 0)
        return (double)st.body_timeouts;
    if (strcmp(which, "bad") == 0)
        return (double)st.bad_heads;
    return (double)st.open;
}

static void http_register_metrics(struct http_server *srv)
{
    pthread_mutex_lock(&http_metrics_mu);
    http_metrics_owner = srv;
    pthread_mutex_unlock(&http_metrics_mu);
    metrics_set_counter_fn("hookline_http_connections_refused_per_address_total",
                           "Connections refused because their address held "
                           "listen.max_connections_per_address already",
                           http_gate_metric, (void *)"per_address");
    metrics_set_counter_fn("hookline_http_connections_refused_total",
                           "Connections refused because listen.max_connections were open",
                           http_gate_metric, (void *)"total");
    metrics_set_counter_fn("hookline_http_header_timeouts_total",
                           "Connections closed because a request head was not complete within "
                           "listen.header_timeout_ms",
                           http_gate_metric, (void *)"head");
    metrics_set_counter_fn("hookline_http_body_timeouts_total",
                           "Connections closed because a body was not complete within "
                           "listen.body_timeout_ms",
                           http_gate_metric, (void *)"body");
    metrics_set_counter_fn("hookline_http_bad_heads_total",
                           "Requests refused by the gate: malformed head, NUL byte, ambiguous "
                           "framing, target or head too large, HTTP version",
                           http_gate_metric, (void *)"bad");
    metrics_set_gauge("hookline_http_connections_open", "Open client connections", http_gate_metric,
                      (void *)"open");
}

struct http_server *http_server_start(const struct config *cfg, struct ingest *ing,
                                      struct store *st, const struct http_admin *admin, char *err,
                                      size_t err_len)
{
    struct http_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    srv->cfg = cfg;
    srv->ing = ing;
    srv->st = st;
    if (admin)
        srv->admin = *admin;
    atomic_store(&http_close_each, !cfg->listen_keep_alive);
    struct http_gate_limits lim = {
        .max_connections = (unsigned)cfg->listen_max_connections,
        .max_per_address = (unsigned)cfg->listen_max_connections_per_address,
        .header_timeout_ms = cfg->listen_header_timeout_ms,
        .body_timeout_ms = cfg->listen_body_timeout_ms,
        .max_head_bytes = HTTP_MAX_HEAD,
        .max_target_bytes = HTTP_MAX_URI,
    };
    srv->gate = http_gate_create(cfg->listen_host, cfg->listen_port, &lim, err, err_len);
    if (!srv->gate)
        goto fail;
    unsigned threads = cfg->listen_threads > 0 ? (unsigned)cfg->listen_threads
                                               : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1)
        threads = 1;
    /* The gate owns the listening socket and bounds the connections; the
     * library's own bound is a backstop twice as large (it splits it between
     * its threads). Its memory per connection must hold any head the gate lets
     * through, so that it never answers 431 with its own HTML page. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_USE_NO_LISTEN_SOCKET;
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, http_access, srv, MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->listen_max_connections * 2 + threads, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->listen_idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)HTTP_MAX_HEAD * 4, MHD_OPTION_URI_LOG_CALLBACK, http_uri_log, srv,
        MHD_OPTION_NOTIFY_COMPLETED, http_completed, srv, MHD_OPTION_NOTIFY_CONNECTION,
        http_notify_connection, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(err, err_len, "cannot start the HTTP library on %s:%d", cfg->listen_host,
                 cfg->listen_port);
        goto fail;
    }
    struct console_http_deps cdeps = {.cfg = cfg,
                                      .st = st,
                                      .rules = srv->admin.rules,
                                      .delivery_paused = srv->admin.delivery_paused,
                                      .ctx = srv->admin.ctx,
                                      .close_each = !cfg->listen_keep_alive};
    srv->console = console_http_create(&cdeps);
    if (!srv->console) {
        snprintf(err, err_len, "out of memory (console)");
        goto fail;
    }
    srv->port = http_gate_port(srv->gate);
    if (http_gate_run(srv->gate, http_handoff, srv, err, err_len) < 0)
        goto fail;
    http_register_metrics(srv);
    return srv;
fail:
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    console_http_destroy(srv->console);
    http_gate_destroy(srv->gate);
    free(srv);
    return NULL;
}

unsigned http_server_port(const struct http_server *srv)
{
    return srv->port;
}

void http_server_stop(struct http_server *srv, int grace_ms)
{
    if (!srv)
        return;
    http_gate_stop_accepting(srv->gate);
    for (int waited = 0; atomic_load(&srv->inflight) > 0 && waited < grace_ms; waited += 10) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&srv->inflight) > 0)
        log_warn("shutdown: %d requests still in flight after %d ms", atomic_load(&srv->inflight),
                 grace_ms);
    MHD_stop_daemon(srv->daemon); /* closes every connection: the gate hears of each */
    pthread_mutex_lock(&http_metrics_mu);
    if (http_metrics_owner == srv)
        http_metrics_owner = NULL;
    pthread_mutex_unlock(&http_metrics_mu);
    http_gate_destroy(srv->gate);
    console_http_destroy(srv->console);
    free(srv);
}
