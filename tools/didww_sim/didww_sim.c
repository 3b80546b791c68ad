/*
 * didww-sim: a stateful DIDWW API v3 simulator for hookline's tests and for users trying
 * rules without the real API. This file owns the process: command line, the libmicrohttpd
 * listener (one thread per connection, so injected latency can simply sleep), and the
 * transport-level behaviour in front of sim_api: request log, dropped connections, Api-Key
 * check (or, for 2026-11-19, the bearer check and the token endpoint of sim_auth), API
 * version selection, the 20 req/s limiter (the account budget for 2026-11-19), injected 5xx
 * and the JSON:API media type rules. Locks: srv->lock (counters, limiter, RNG) and srv->log_lock
 * (request log) are leaves, and the state lock lives in sim_state; no two are ever held together.
 */
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "sim_api.h"
#include "sim_auth.h"
#include "sim_state.h"

#define SIM_MEDIA_TYPE "application/vnd.api+json"
#define SIM_MAX_BODY (1024 * 1024)
#define SIM_WINDOW_CAP 65536  /* timestamps kept per sliding one-second window */
#define SIM_RECENT_MAX 10000  /* request log entries kept for GET /__sim/requests */
#define SIM_LOG_TEXT_MAX 2048 /* a non-JSON body is logged up to this many bytes */

enum sim_fault_body { SIM_FAULT_JSON, SIM_FAULT_HTML };

struct sim_opts {
    const char *state_path;
    const char *host;
    long port;
    char *api_key; /* owned */
    long rate_limit;
    long latency_ms, jitter_ms;
    double fail_rate;
    long fail_status;
    long burst_n, burst_every;
    long burst_status; /* status of --burst-5xx answers [503]; 429 adds Retry-After: 1 */
    double drop_rate;
    bool drop_after; /* --drop-phase after: process, then drop the answer */
    const char *request_log;
    uint64_t seed;
    const char *default_version;
    bool always_linkage;
    enum sim_fault_body fault_body;
    long budget, budget_window_s; /* 2026-11-19: requests per window for the account */
};

/* Request times inside the last second (monotonic seconds), as a ring buffer. */
struct sim_window {
    double *ts;
    size_t cap, head, count;
    size_t max_seen;
};

struct sim_server {
    struct sim_opts o;
    struct sim_state *st;
    struct sim_auth *auth;
    struct MHD_Daemon *daemon;
    unsigned port;

    pthread_mutex_t lock; /* everything down to log_lock */
    uint64_t rng;
    double *admitted; /* limiter: times of the last rate_limit admitted requests */
    size_t adm_head, adm_count;
    struct sim_window seen_w, admitted_w;
    uint64_t fault_seq; /* requests that reached the fault stage (burst position) */
    uint64_t requests_total, rate_limited, dropped, faults;
    uint64_t by_status[600];

    pthread_mutex_t log_lock;
    FILE *log;
    json_t *recent;
};

struct sim_req {
    char *uri; /* as received, with the query string */
    double t_wall_ms, t_mono;
    char *body;
    size_t len, cap;
    bool too_large, started;
};

/* What the pipeline decided for one request. */
struct sim_answer {
    int status;
    char *body; /* malloc'd; NULL for none */
    const char *ctype;
    int retry_after; /* seconds, 0 = none */
    char allow[64];
    const char *fault;  /* "fail_rate", "burst", "drop" or NULL */
    bool no_store;      /* Cache-Control: no-store (token answers) */
    char www_auth[160]; /* WWW-Authenticate, "" for none */
};

/* ---------- small utilities ---------- */

static double sim_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double sim_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void sim_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* splitmix64; caller holds srv->lock. */
static uint64_t sim_rand(struct sim_server *srv)
{
    uint64_t z = (srv->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double sim_rand01(struct sim_server *srv)
{
    return (double)(sim_rand(srv) >> 11) / 9007199254740992.0;
}

static bool sim_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool sim_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

/* "sha256:" + the first 12 hex digits of SHA-256(s): proves a secret was sent, not what. */
static void sim_fingerprint(const char *s, char *out, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (!EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL) || mdlen < 6) {
        snprintf(out, len, "sha256:?");
        return;
    }
    snprintf(out, len, "sha256:%02x%02x%02x%02x%02x%02x", md[0], md[1], md[2], md[3], md[4], md[5]);
}

/* ---------- sliding windows and the limiter (caller holds srv->lock) ---------- */

static int sim_window_init(struct sim_window *w, size_t cap)
{
    w->ts = calloc(cap, sizeof *w->ts);
    w->cap = cap;
    w->head = w->count = w->max_seen = 0;
    return w->ts ? 0 : -1;
}

static void sim_window_push(struct sim_window *w, double now)
{
    while (w->count > 0 && w->ts[w->head] <= now - 1.0) {
        w->head = (w->head + 1) % w->cap;
        w->count--;
    }
    if (w->count == w->cap) { /* saturated: forget the oldest */
        w->head = (w->head + 1) % w->cap;
        w->count--;
    }
    w->ts[(w->head + w->count) % w->cap] = now;
    w->count++;
    if (w->count > w->max_seen)
        w->max_seen = w->count;
}

/* Admits at most rate_limit requests in any one-second sliding window. */
static bool sim_limiter_admit(struct sim_server *srv, double now)
{
    size_t limit = (size_t)srv->o.rate_limit;
    if (limit == 0)
        return true;
    if (srv->adm_count < limit) {
        srv->admitted[(srv->adm_head + srv->adm_count) % limit] = now;
        srv->adm_count++;
        return true;
    }
    if (srv->admitted[srv->adm_head] <= now - 1.0) {
        srv->admitted[srv->adm_head] = now;
        srv->adm_head = (srv->adm_head + 1) % limit;
        return true;
    }
    return false;
}

static void sim_reset_counters(struct sim_server *srv)
{
    pthread_mutex_lock(&srv->lock);
    srv->adm_head = srv->adm_count = 0;
    srv->seen_w.head = srv->seen_w.count = srv->seen_w.max_seen = 0;
    srv->admitted_w.head = srv->admitted_w.count = srv->admitted_w.max_seen = 0;
    srv->fault_seq = srv->requests_total = srv->rate_limited = srv->dropped = srv->faults = 0;
    memset(srv->by_status, 0, sizeof srv->by_status);
    srv->rng = srv->o.seed;
    pthread_mutex_unlock(&srv->lock);
    pthread_mutex_lock(&srv->log_lock);
    json_array_clear(srv->recent);
    pthread_mutex_unlock(&srv->log_lock);
}

/* ---------- answers ---------- */

static void sim_answer_error(struct sim_answer *a, int status, const char *code, const char *title,
                             const char *detail)
{
    a->status = status;
    a->body = sim_api_error_doc(status, code, title, detail, NULL);
    a->ctype = SIM_MEDIA_TYPE;
}

static const char *sim_reason(int status)
{
    const char *r = MHD_get_reason_phrase_for((unsigned)status);
    return r && *r ? r : "Error";
}

static void sim_answer_fault(struct sim_server *srv, struct sim_answer *a, int status,
                             const char *fault)
{
    a->fault = fault;
    if (srv->o.fault_body == SIM_FAULT_HTML) {
        char html[512];
        snprintf(html, sizeof html,
                 "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d "
                 "%s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
                 status, sim_reason(status), status, sim_reason(status));
        a->status = status;
        a->body = strdup(html);
        a->ctype = "text/html";
        return;
    }
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    sim_answer_error(a, status, code, sim_reason(status), sim_reason(status));
}

static enum MHD_Result sim_send(struct MHD_Connection *conn, const struct sim_answer *a)
{
    static const char fallback[] = "{\"errors\":[{\"title\":\"Internal Server Error\","
                                   "\"code\":\"500\",\"status\":\"500\"}]}";
    int status = a->status;
    const char *body = a->body;
    if (!body && status != 204) { /* out of memory on the way */
        status = 500;
        body = fallback;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(
        body ? strlen(body) : 0, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    if (body)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                a->ctype ? a->ctype : SIM_MEDIA_TYPE);
    if (a->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", a->retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (a->allow[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, a->allow);
    if (a->no_store)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (a->www_auth[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, a->www_auth);
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result sim_send_json(struct MHD_Connection *conn, int status, json_t *doc)
{
    struct sim_answer a = {.status = status, .ctype = "application/json"};
    a.body = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(16)) : NULL;
    json_decref(doc);
    enum MHD_Result rc = sim_send(conn, &a);
    free(a.body);
    return rc;
}

/* ---------- request log ---------- */

static enum MHD_Result sim_collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value)
{
    json_t *obj = cls;
    char lower[128], shown[64];
    size_t n = strlen(key);
    (void)kind;
    if (n >= sizeof lower || !value)
        return MHD_YES;
    for (size_t i = 0; i <= n; i++)
        lower[i] = (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] + 32 : key[i]);
    if (strcmp(lower, "api-key") == 0 || strcmp(lower, "authorization") == 0) {
        sim_fingerprint(value, shown, sizeof shown);
        value = shown;
    }
    json_t *v = json_string(value);
    if (!v)
        v = json_string("[not utf-8]");
    json_t *prev = json_object_get(obj, lower);
    if (json_is_string(prev)) { /* repeated header: join as HTTP does */
        size_t l1 = json_string_length(prev), l2 = json_string_length(v);
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
    return MHD_YES;
}

/* Appends one line to the request log (file and memory). status < 0: no answer was sent. */
static void sim_log_request(struct sim_server *srv, struct MHD_Connection *conn, struct sim_req *rq,
                            const char *method, const struct sim_answer *a, bool dropped)
{
    json_t *e = json_object(), *headers = json_object(), *body = json_null(), *body_text = NULL;
    if (!e || !headers)
        goto done;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, sim_collect_header, headers);
    if (rq->len > 0 && !rq->too_large) {
        json_t *parsed = json_loadb(rq->body, rq->len, 0, NULL);
        if (parsed) {
            body = parsed;
        } else {
            char text[SIM_LOG_TEXT_MAX + 1];
            size_t n = rq->len < SIM_LOG_TEXT_MAX ? rq->len : SIM_LOG_TEXT_MAX;
            memcpy(text, rq->body, n);
            text[n] = '\0';
            body_text = json_string(text);
            if (!body_text)
                body_text = json_string("[not utf-8]");
        }
    }
    json_object_set_new(e, "t", json_real(rq->t_wall_ms));
    json_object_set_new(e, "method", json_string(method));
    json_t *path = json_string(rq->uri ? rq->uri : "");
    json_object_set_new(e, "path", path ? path : json_string("[not utf-8]"));
    json_object_set(e, "headers", headers);
    json_object_set(e, "body", body);
    if (body_text)
        json_object_set_new(e, "body_text", body_text);
    json_object_set_new(e, "status", dropped ? json_null() : json_integer(a->status));
    if (dropped && srv->o.drop_after)
        json_object_set_new(e, "would_status", json_integer(a->status));
    if (a->fault)
        json_object_set_new(e, "fault", json_string(a->fault));
    json_object_set_new(e, "duration_ms",
                        json_real((double)(long)((sim_mono() - rq->t_mono) * 10000.0) / 10.0));
    /* 16 significant digits: microseconds in "t" without binary noise in "duration_ms". */
    char *line = json_dumps(e, JSON_COMPACT | JSON_REAL_PRECISION(16));
    pthread_mutex_lock(&srv->log_lock);
    if (srv->log && line) {
        fputs(line, srv->log);
        fputc('\n', srv->log);
        fflush(srv->log);
    }
    if (json_array_size(srv->recent) >= SIM_RECENT_MAX)
        json_array_remove(srv->recent, 0);
    json_array_append(srv->recent, e);
    pthread_mutex_unlock(&srv->log_lock);
    free(line);
done:
    json_decref(body);
    json_decref(headers);
    json_decref(e);
}

/* ---------- the /v3/ pipeline ---------- */

static bool sim_accept_ok(const char *accept)
{
    char buf[1024];
    if (!accept || !*accept)
        return true;
    snprintf(buf, sizeof buf, "%s", accept);
    for (char *p = buf, *next; p; p = next) {
        next = strchr(p, ',');
        if (next)
            *next++ = '\0';
        p += strspn(p, " \t");
        size_t n = strlen(p);
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            p[--n] = '\0';
        /* jsonapi-resources: the media type without parameters, or anything from */
        if (strcmp(p, SIM_MEDIA_TYPE) == 0 || strncmp(p, "*/*", 3) == 0)
            return true;
    }
    return false;
}

static void sim_base_url(struct sim_server *srv, struct MHD_Connection *conn, char *out, size_t len)
{
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    if (host && *host && strlen(host) < 256 &&
        strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") ==
            strlen(host))
        snprintf(out, len, "http://%s", host);
    else
        snprintf(out, len, "http://%s:%u", srv->o.host, srv->port);
}

static enum MHD_Result sim_collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                         const char *value)
{
    char buf[1024];
    (void)kind;
    json_t *v = json_string(value ? value : "");
    if (!v) { /* not UTF-8: keep it with the bytes as '?', so it is refused rather than ignored */
        snprintf(buf, sizeof buf, "%s", value);
        for (char *p = buf; *p; p++)
            if (*p & 0x80)
                *p = '?';
        v = json_string(buf);
    }
    if (v) /* fails (and frees v) for a key that is not UTF-8: it names nothing the API knows */
        json_object_set_new((json_t *)cls, key, v);
    return MHD_YES;
}

/* Auth, version, limiter, faults, media types, then sim_api. Fills a. */
static void sim_pipeline(struct sim_server *srv, struct MHD_Connection *conn, struct sim_req *rq,
                         const char *url, const char *method, struct sim_answer *a)
{
    const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Api-Key");
    const char *version = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-DIDWW-API-Version");
    const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
    const char *ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    char detail[512];

    bool writes = strcmp(method, "PATCH") == 0 || strcmp(method, "POST") == 0 ||
                  (strcmp(method, "DELETE") == 0 && rq->len > 0);
    const struct sim_naming *nm = NULL;
    const struct sim_naming *asked = sim_api_naming(version ? version : srv->o.default_version);
    if (asked && asked->bearer_only) {
        /* 2026-11-19: Api-Key is refused outright; a bearer token from /token is required. */
        struct sim_auth_reply ar;
        if (key && *key) {
            sim_answer_error(a, 401, "401", "Unauthorized",
                             "API version 2026-11-19 does not accept the Api-Key header; "
                             "authenticate with an Authorization: Bearer token.");
            return;
        }
        if (sim_auth_check(srv->auth,
                           MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"),
                           asked->version, writes, &ar) < 0) {
            a->status = ar.status;
            a->body = ar.body;
            a->ctype = SIM_MEDIA_TYPE;
            snprintf(a->www_auth, sizeof a->www_auth, "%s", ar.www_auth);
            return;
        }
        nm = asked;
    } else {
        if (!key || !*key) {
            sim_answer_error(a, 401, "401", "Unauthorized", "An Api-Key header is required.");
            return;
        }
        size_t klen = strlen(key), want = strlen(srv->o.api_key);
        if (klen != want || CRYPTO_memcmp(key, srv->o.api_key, want) != 0) {
            sim_answer_error(a, 401, "401", "Unauthorized", "The Api-Key is not valid.");
            return;
        }
        nm = sim_api_naming(version ? version : srv->o.default_version);
        if (!nm) {
            snprintf(detail, sizeof detail,
                     "X-DIDWW-API-Version %.64s is not supported. Supported versions: "
                     "2017-09-18, 2021-04-19, 2021-12-15, 2022-05-10, 2026-04-16, 2026-11-19.",
                     version);
            sim_answer_error(a, 400, "400", "Invalid API version", detail);
            return;
        }
    }

    double now = sim_mono();
    const char *fault = NULL;
    int budget_retry = 0;
    char budget_detail[200] = "";
    /* 2026-11-19 replaces the per-key 20/s with the account's budget per window. */
    bool in_budget = !nm->bearer_only || sim_auth_budget_admit(srv->auth, now, &budget_retry,
                                                               budget_detail, sizeof budget_detail);
    pthread_mutex_lock(&srv->lock);
    sim_window_push(&srv->seen_w, now);
    bool admitted = nm->bearer_only ? in_budget : sim_limiter_admit(srv, now);
    if (admitted) {
        sim_window_push(&srv->admitted_w, now);
        uint64_t pos = srv->fault_seq++;
        uint64_t n = (uint64_t)srv->o.burst_n, m = (uint64_t)srv->o.burst_every;
        if (n > 0 && (m == 0 ? pos < n : pos % (m + n) >= m))
            fault = "burst";
        else if (srv->o.fail_rate > 0 && sim_rand01(srv) < srv->o.fail_rate)
            fault = "fail_rate";
        if (fault)
            srv->faults++;
    } else {
        srv->rate_limited++;
    }
    pthread_mutex_unlock(&srv->lock);
    if (!admitted && nm->bearer_only) {
        sim_answer_error(a, 429, "too_many_requests", "Too Many Requests", budget_detail);
        a->retry_after = budget_retry;
        return;
    }
    if (!admitted) {
        snprintf(detail, sizeof detail, "More than %ld requests per second.", srv->o.rate_limit);
        sim_answer_error(a, 429, "429", "Too Many Requests", detail);
        a->retry_after = 1;
        return;
    }
    if (fault) {
        sim_answer_fault(srv, a,
                         strcmp(fault, "burst") == 0 ? (int)srv->o.burst_status
                                                     : (int)srv->o.fail_status,
                         fault);
        if (a->status == 429)
            a->retry_after = 1;
        return;
    }

    if (!sim_accept_ok(accept)) {
        snprintf(detail, sizeof detail,
                 "All requests must use the '" SIM_MEDIA_TYPE
                 "' Accept without media type parameters. This request specified '%.300s'.",
                 accept);
        sim_answer_error(a, 406, "406", "Not acceptable", detail);
        return;
    }
    if (writes && (!ctype || strcmp(ctype, SIM_MEDIA_TYPE) != 0)) {
        snprintf(detail, sizeof detail,
                 "All requests that create or update must use the '" SIM_MEDIA_TYPE
                 "' Content-Type. This request specified '%.300s'.",
                 ctype ? ctype : "");
        sim_answer_error(a, 415, "415", "Unsupported media type", detail);
        return;
    }
    if (rq->too_large) {
        snprintf(detail, sizeof detail, "The request body is larger than %d bytes.", SIM_MAX_BODY);
        sim_answer_error(a, 413, "413", "Payload Too Large", detail);
        return;
    }

    char base[300];
    json_t *query = json_object();
    sim_base_url(srv, conn, base, sizeof base);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, sim_collect_query, query);
    struct sim_call call = {.method = method,
                            .path = url,
                            .query = query,
                            .body = rq->body,
                            .body_len = rq->len,
                            .nm = nm,
                            .base_url = base,
                            .always_linkage = srv->o.always_linkage};
    struct sim_reply reply;
    sim_api_handle(srv->st, &call, &reply);
    json_decref(query);
    a->status = reply.status;
    a->body = reply.body;
    a->ctype = SIM_MEDIA_TYPE;
    snprintf(a->allow, sizeof a->allow, "%s", reply.allow);
}

/* ---------- /__sim/ control endpoints (no key, not logged, not limited) ---------- */

static json_t *sim_stats_json(struct sim_server *srv)
{
    json_t *by = json_object();
    pthread_mutex_lock(&srv->lock);
    for (int s = 100; s < 600; s++)
        if (srv->by_status[s]) {
            char k[8];
            snprintf(k, sizeof k, "%d", s);
            json_object_set_new(by, k, json_integer((json_int_t)srv->by_status[s]));
        }
    json_t *doc = json_pack("{s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:I}", "requests_total",
                            (json_int_t)srv->requests_total, "responses_by_status", by,
                            "rate_limited", (json_int_t)srv->rate_limited, "dropped",
                            (json_int_t)srv->dropped, "faults_injected", (json_int_t)srv->faults,
                            "max_requests_per_second", (json_int_t)srv->seen_w.max_seen,
                            "max_accepted_per_second", (json_int_t)srv->admitted_w.max_seen,
                            "rate_limit_per_second", (json_int_t)srv->o.rate_limit);
    pthread_mutex_unlock(&srv->lock);
    return doc;
}

static enum MHD_Result sim_control(struct sim_server *srv, struct MHD_Connection *conn,
                                   struct sim_req *rq, const char *url, const char *method)
{
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (strcmp(url, "/__sim/state") == 0 && get)
        return sim_send_json(conn, 200, sim_state_snapshot(srv->st));
    if (strcmp(url, "/__sim/state") == 0 && strcmp(method, "PUT") == 0) {
        char err[512] = "the body is not a JSON document (or over 1 MiB)";
        json_t *in = rq->too_large ? NULL : json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
        json_t *doc = in ? sim_state_normalize(in, err, sizeof err) : NULL;
        json_decref(in);
        if (!doc)
            return sim_send_json(conn, 400, json_pack("{s:s}", "error", err));
        sim_state_replace(srv->st, doc);
        return sim_send_json(conn, 200, sim_state_snapshot(srv->st));
    }
    if (strcmp(url, "/__sim/stats") == 0 && get)
        return sim_send_json(conn, 200, sim_stats_json(srv));
    if (strcmp(url, "/__sim/requests") == 0 && get) {
        pthread_mutex_lock(&srv->log_lock);
        json_t *copy = json_deep_copy(srv->recent);
        pthread_mutex_unlock(&srv->log_lock);
        return sim_send_json(conn, 200, json_pack("{s:o}", "requests", copy));
    }
    if (strcmp(url, "/__sim/auth") == 0 && get)
        return sim_send_json(conn, 200, sim_auth_json(srv->auth));
    if (strcmp(url, "/__sim/auth") == 0 && strcmp(method, "POST") == 0) {
        char err[256] = "the body is not a JSON object";
        json_t *in = rq->too_large ? NULL : json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
        int rc = in ? sim_auth_configure(srv->auth, in, err, sizeof err) : -1;
        json_decref(in);
        if (rc < 0)
            return sim_send_json(conn, 400, json_pack("{s:s}", "error", err));
        return sim_send_json(conn, 200, sim_auth_json(srv->auth));
    }
    if (strcmp(url, "/__sim/reset") == 0 && strcmp(method, "POST") == 0) {
        sim_state_reset(srv->st);
        sim_auth_reset(srv->auth);
        sim_reset_counters(srv);
        struct sim_answer a = {.status = 204};
        return sim_send(conn, &a);
    }
    return sim_send_json(conn, 404,
                         json_pack("{s:s}", "error",
                                   "unknown control endpoint (GET/PUT /__sim/state, GET "
                                   "/__sim/stats, GET /__sim/requests, GET/POST /__sim/auth, "
                                   "POST /__sim/reset)"));
}

/* ---------- MHD callbacks ---------- */

static void *sim_uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct sim_req *rq = calloc(1, sizeof *rq);
    (void)cls;
    (void)conn;
    if (!rq)
        return NULL;
    rq->uri = strdup(uri ? uri : "");
    rq->t_wall_ms = sim_wall_ms();
    rq->t_mono = sim_mono();
    return rq;
}

static void sim_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                          enum MHD_RequestTerminationCode toe)
{
    struct sim_req *rq = *req_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (!rq)
        return;
    free(rq->uri);
    free(rq->body);
    free(rq);
    *req_cls = NULL;
}

static void sim_append_body(struct sim_req *rq, const char *data, size_t size)
{
    if (rq->too_large)
        return;
    if (rq->len + size > SIM_MAX_BODY) {
        rq->too_large = true;
        return;
    }
    if (rq->len + size + 1 > rq->cap) {
        size_t ncap = rq->cap ? rq->cap : 4096;
        while (ncap < rq->len + size + 1)
            ncap *= 2;
        char *nb = realloc(rq->body, ncap);
        if (!nb) {
            rq->too_large = true; /* refuse rather than truncate */
            return;
        }
        rq->body = nb;
        rq->cap = ncap;
    }
    memcpy(rq->body + rq->len, data, size);
    rq->len += size;
    rq->body[rq->len] = '\0';
}

static enum MHD_Result sim_access(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct sim_server *srv = cls;
    struct sim_req *rq = *req_cls;
    (void)version;
    if (!rq)
        return MHD_NO;
    if (!rq->started) { /* headers only; the body (if any) comes next */
        rq->started = true;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        sim_append_body(rq, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strncmp(url, "/__sim/", 7) == 0)
        return sim_control(srv, conn, rq, url, method);

    struct sim_answer a = {0};
    bool drop = false;
    pthread_mutex_lock(&srv->lock);
    srv->requests_total++;
    if (srv->o.drop_rate > 0 && sim_rand01(srv) < srv->o.drop_rate) {
        drop = true;
        srv->dropped++;
    }
    long delay = srv->o.latency_ms;
    if (srv->o.jitter_ms > 0)
        delay += (long)(sim_rand(srv) % (uint64_t)(srv->o.jitter_ms + 1));
    pthread_mutex_unlock(&srv->lock);

    if (drop && !srv->o.drop_after) { /* the network ate it: nothing reached the API */
        a.fault = "drop";
        sim_log_request(srv, conn, rq, method, &a, true);
        return MHD_NO;
    }
    if (delay > 0)
        sim_sleep_ms(delay);
    if (strcmp(url, "/token") == 0) {
        /* The token endpoint (auth.didww.com in production): not rate limited here. */
        struct sim_auth_reply ar = {0};
        if (strcmp(method, "POST") == 0) {
            sim_auth_token(srv->auth, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Api-Key"),
                           srv->o.api_key, rq->too_large ? NULL : rq->body,
                           rq->too_large ? 0 : rq->len, &ar);
        } else {
            ar.status = 405;
            ar.body =
                strdup("{\"error\":\"invalid_request\",\"error_description\":\"POST only.\"}");
            snprintf(a.allow, sizeof a.allow, "POST");
        }
        a.status = ar.status;
        a.body = ar.body;
        a.ctype = "application/json";
        a.retry_after = ar.retry_after;
        a.no_store = ar.no_store;
    } else {
        sim_pipeline(srv, conn, rq, url, method, &a);
    }
    if (drop) { /* processed (state may have changed), but the answer is lost */
        a.fault = "drop";
        sim_log_request(srv, conn, rq, method, &a, true);
        free(a.body);
        return MHD_NO;
    }
    pthread_mutex_lock(&srv->lock);
    if (a.status >= 100 && a.status < 600)
        srv->by_status[a.status]++;
    pthread_mutex_unlock(&srv->lock);
    enum MHD_Result rc = sim_send(conn, &a);
    sim_log_request(srv, conn, rq, method, &a, false);
    free(a.body);
    return rc;
}

/* ---------- command line ---------- */

static void sim_usage(FILE *f)
{
    fputs("usage: didww-sim --state FILE.json (--api-key KEY | --api-key-env NAME) [options]\n"
          "  --host ADDR              listen address [127.0.0.1]\n"
          "  --port N                 port, 0 picks a free one [0]\n"
          "  --default-version V      API version when X-DIDWW-API-Version is absent "
          "[2022-05-10]\n"
          "  --rate-limit N           requests per second per key, 0 = off [20]\n"
          "  --latency-ms N           added delay before answering [0]\n"
          "  --latency-jitter-ms N    plus a random 0..N ms [0]\n"
          "  --fail-rate P            answer --fail-status to this fraction (0..1) [0]\n"
          "  --fail-status N          status for --fail-rate [500]\n"
          "  --burst-5xx N            answer 503 to N requests ...\n"
          "  --burst-every M          ... after every M good ones (0: only the first N) [0]\n"
          "  --burst-status N         status of those answers (429: with Retry-After: 1) "
          "[503]\n"
          "  --drop-rate P            close this fraction of connections unanswered [0]\n"
          "  --drop-phase before|after  drop before processing, or after applying [before]\n"
          "  --fault-body json|html   body of injected 5xx [json]\n"
          "  --request-log FILE       append one JSON line per request\n"
          "  --seed N                 RNG seed for faults and jitter [1]\n"
          "  --always-include-linkage put relationship data in even without include=\n"
          "  --budget N               2026-11-19: requests per window for the account, 0 = off "
          "[1200]\n"
          "  --budget-window S        2026-11-19: the budget's window in seconds [60]\n"
          "prints {\"msg\":\"listening\",\"port\":\"N\"} on stdout when ready; SIGTERM/SIGINT "
          "stop it.\n",
          f);
}

/* Returns 0, or 2 after printing a usage error. */
static int sim_parse_args(int argc, char **argv, struct sim_opts *o)
{
    const char *key_env = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        const char *name = argv[i];
        if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
            sim_usage(stdout);
            exit(0);
        }
        if (strcmp(name, "--always-include-linkage") == 0) {
            o->always_linkage = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "didww-sim: %s needs a value (or is unknown)\n", name);
            return 2;
        }
        const char *v = argv[++i];
        bool ok = true;
        if (strcmp(name, "--state") == 0)
            o->state_path = v;
        else if (strcmp(name, "--host") == 0)
            o->host = v;
        else if (strcmp(name, "--port") == 0)
            ok = sim_parse_long(v, 0, 65535, &o->port);
        else if (strcmp(name, "--api-key") == 0)
            key = v;
        else if (strcmp(name, "--api-key-env") == 0)
            key_env = v;
        else if (strcmp(name, "--rate-limit") == 0)
            ok = sim_parse_long(v, 0, 100000, &o->rate_limit);
        else if (strcmp(name, "--latency-ms") == 0)
            ok = sim_parse_long(v, 0, 600000, &o->latency_ms);
        else if (strcmp(name, "--latency-jitter-ms") == 0)
            ok = sim_parse_long(v, 0, 600000, &o->jitter_ms);
        else if (strcmp(name, "--fail-rate") == 0)
            ok = sim_parse_double(v, 0.0, 1.0, &o->fail_rate);
        else if (strcmp(name, "--fail-status") == 0)
            ok = sim_parse_long(v, 400, 599, &o->fail_status);
        else if (strcmp(name, "--burst-5xx") == 0)
            ok = sim_parse_long(v, 0, 1000000, &o->burst_n);
        else if (strcmp(name, "--burst-status") == 0)
            ok = sim_parse_long(v, 400, 599, &o->burst_status);
        else if (strcmp(name, "--burst-every") == 0)
            ok = sim_parse_long(v, 0, 1000000, &o->burst_every);
        else if (strcmp(name, "--drop-rate") == 0)
            ok = sim_parse_double(v, 0.0, 1.0, &o->drop_rate);
        else if (strcmp(name, "--drop-phase") == 0) {
            ok = strcmp(v, "before") == 0 || strcmp(v, "after") == 0;
            o->drop_after = strcmp(v, "after") == 0;
        } else if (strcmp(name, "--fault-body") == 0) {
            ok = strcmp(v, "json") == 0 || strcmp(v, "html") == 0;
            o->fault_body = strcmp(v, "html") == 0 ? SIM_FAULT_HTML : SIM_FAULT_JSON;
        } else if (strcmp(name, "--request-log") == 0)
            o->request_log = v;
        else if (strcmp(name, "--seed") == 0) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            ok = !errno && end != v && !*end && v[0] != '-';
            o->seed = (uint64_t)s;
        } else if (strcmp(name, "--default-version") == 0)
            o->default_version = v;
        else if (strcmp(name, "--budget") == 0)
            ok = sim_parse_long(v, 0, 1000000, &o->budget);
        else if (strcmp(name, "--budget-window") == 0)
            ok = sim_parse_long(v, 1, 3600, &o->budget_window_s);
        else {
            fprintf(stderr, "didww-sim: unknown option %s (see --help)\n", name);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "didww-sim: invalid value for %s: %s\n", name, v);
            return 2;
        }
    }
    if (!o->state_path) {
        fprintf(stderr, "didww-sim: --state FILE is required (see --help)\n");
        return 2;
    }
    if (key_env) {
        key = getenv(key_env);
        if (!key || !*key) {
            fprintf(stderr, "didww-sim: environment variable %s is not set\n", key_env);
            return 2;
        }
    }
    if (!key || !*key) {
        fprintf(stderr, "didww-sim: one of --api-key or --api-key-env is required\n");
        return 2;
    }
    o->api_key = strdup(key);
    if (!sim_api_naming(o->default_version)) {
        fprintf(stderr, "didww-sim: --default-version %s is not a simulated API version\n",
                o->default_version);
        return 2;
    }
    return o->api_key ? 0 : 2;
}

/* ---------- main ---------- */

static int sim_start(struct sim_server *srv, char *err, size_t err_len)
{
    struct addrinfo hints = {0}, *ai = NULL;
    char port[16];
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST | AI_PASSIVE;
    snprintf(port, sizeof port, "%ld", srv->o.port);
    int gai = getaddrinfo(srv->o.host, port, &hints, &ai);
    if (gai != 0) {
        snprintf(err, err_len, "--host %s: %s (give a numeric address)", srv->o.host,
                 gai_strerror(gai));
        return -1;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, sim_access, srv, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)512, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)256, MHD_OPTION_URI_LOG_CALLBACK, sim_uri_log,
        srv, MHD_OPTION_NOTIFY_COMPLETED, sim_completed, srv, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->daemon) {
        snprintf(err, err_len, "cannot listen on %s:%ld (address in use or not permitted)",
                 srv->o.host, srv->o.port);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : (unsigned)srv->o.port;
    return 0;
}

int main(int argc, char **argv)
{
    struct sim_server srv = {.o = {.host = "127.0.0.1",
                                   .rate_limit = 20,
                                   .fail_status = 500,
                                   .burst_status = 503,
                                   .seed = 1,
                                   .default_version = "2022-05-10",
                                   .budget = 1200,
                                   .budget_window_s = 60}};
    char err[600];
    int rc = 1, sig = 0;
    sigset_t set;

    int usage = sim_parse_args(argc, argv, &srv.o);
    if (usage)
        return usage;
    srv.rng = srv.o.seed;
    pthread_mutex_init(&srv.lock, NULL);
    pthread_mutex_init(&srv.log_lock, NULL);
    srv.recent = json_array();
    srv.auth = sim_auth_create(srv.o.budget, srv.o.budget_window_s);
    srv.admitted = calloc(srv.o.rate_limit > 0 ? (size_t)srv.o.rate_limit : 1, sizeof(double));
    if (!srv.recent || !srv.admitted || !srv.auth ||
        sim_window_init(&srv.seen_w, SIM_WINDOW_CAP) < 0 ||
        sim_window_init(&srv.admitted_w, SIM_WINDOW_CAP) < 0) {
        fprintf(stderr, "didww-sim: out of memory\n");
        goto fail;
    }
    srv.st = sim_state_load(srv.o.state_path, err, sizeof err);
    if (!srv.st) {
        fprintf(stderr, "didww-sim: %s\n", err);
        goto fail;
    }
    if (srv.o.request_log) {
        srv.log = fopen(srv.o.request_log, "a");
        if (!srv.log) {
            fprintf(stderr, "didww-sim: cannot open --request-log %s: %s\n", srv.o.request_log,
                    strerror(errno));
            goto fail;
        }
    }

    /* Block the stop signals before any thread exists, so only sigwait() sees them. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    if (sim_start(&srv, err, sizeof err) < 0) {
        fprintf(stderr, "didww-sim: %s\n", err);
        goto fail;
    }
    printf("{\"msg\":\"listening\",\"port\":\"%u\"}\n", srv.port);
    fflush(stdout);
    while (sigwait(&set, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
        ;
    MHD_stop_daemon(srv.daemon);
    rc = 0;
fail:
    if (srv.log)
        fclose(srv.log);
    sim_state_destroy(srv.st);
    sim_auth_destroy(srv.auth);
    json_decref(srv.recent);
    free(srv.admitted);
    free(srv.seen_w.ts);
    free(srv.admitted_w.ts);
    free(srv.o.api_key);
    pthread_mutex_destroy(&srv.lock);
    pthread_mutex_destroy(&srv.log_lock);
    return rc;
}
