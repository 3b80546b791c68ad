/*
 * sim_auth: the 2026-11-19 authentication and budget of the simulator. Tokens are random
 * 32-byte hex strings kept in a fixed table (the oldest entry is reused when it is full),
 * each with its scope, API version, expiry (monotonic) and a revoked flag. The token
 * endpoint validates like DIDWW documents (aud required, scope full|read, expires_in
 * 60..3600, errors OAuth-shaped) and grants at most max_ttl_s seconds, so a test can watch
 * a client renew. The budget is a fixed window per account. Everything is under a.lock.
 */
#include "sim_auth.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sim_api.h"

#define AUTH_MAX_TOKENS 1024
#define AUTH_TOKEN_HEX 64
#define AUTH_AUDIENCE "api.didww.com"

struct auth_token {
    char value[AUTH_TOKEN_HEX + 1]; /* "" for a free slot */
    char scope[8];
    char version[16];
    double expires_at;
    double issued_at;
    bool revoked;
};

struct sim_auth {
    pthread_mutex_t lock;
    struct auth_token tokens[AUTH_MAX_TOKENS];
    size_t next; /* slot the next token takes */
    long max_ttl_s;
    long budget, window_s; /* current settings */
    long budget0, window0; /* the command line's, for reset */
    double window_start;   /* monotonic */
    long window_used;
    int fail_status, fail_count; /* the next fail_count token requests get fail_status */
    int fail_retry_after;
    char fail_error[48];
    unsigned long issued, refused; /* token requests answered 200 / otherwise */
    bool refuse_tokens;            /* /v3 refuses every token (401 invalid_token) */
};

static double auth_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct sim_auth *sim_auth_create(long budget, long window_s)
{
    struct sim_auth *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    pthread_mutex_init(&a->lock, NULL);
    a->max_ttl_s = 3600;
    a->budget = a->budget0 = budget;
    a->window_s = a->window0 = window_s > 0 ? window_s : 60;
    return a;
}

void sim_auth_destroy(struct sim_auth *a)
{
    if (!a)
        return;
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* {"error": e, "error_description": d}: DIDWW's token endpoint answers OAuth-shaped. */
static void auth_oauth_error(struct sim_auth_reply *out, int status, const char *e, const char *d)
{
    json_t *doc = json_pack("{s:s, s:s}", "error", e, "error_description", d);
    out->status = status;
    out->body = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    out->no_store = true;
    json_decref(doc);
}

void sim_auth_token(struct sim_auth *a, const char *key_header, const char *want_key,
                    const char *body, size_t body_len, struct sim_auth_reply *out)
{
    json_t *req = NULL;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&a->lock);
    if (a->fail_count > 0) {
        a->fail_count--;
        a->refused++;
        int st = a->fail_status;
        out->retry_after = st == 429 ? a->fail_retry_after : 0;
        auth_oauth_error(out, st,
                         a->fail_error[0] ? a->fail_error
                         : st == 429      ? "rate_limit_exceeded"
                         : st == 401      ? "invalid_client"
                                          : "server_error",
                         "Injected by the simulator (/__sim/auth fail).");
        pthread_mutex_unlock(&a->lock);
        return;
    }
    size_t klen = key_header ? strlen(key_header) : 0, want = strlen(want_key);
    if (!key_header || klen != want || CRYPTO_memcmp(key_header, want_key, want) != 0) {
        a->refused++;
        auth_oauth_error(out, 401, "invalid_client",
                         key_header ? "The Api-Key is not valid."
                                    : "An Api-Key header is required.");
        pthread_mutex_unlock(&a->lock);
        return;
    }
    req = body && body_len ? json_loadb(body, body_len, 0, NULL) : NULL;
    json_t *aud = json_object_get(req, "aud"), *scope = json_object_get(req, "scope");
    json_t *ver = json_object_get(req, "api_version"), *exp = json_object_get(req, "expires_in");
    const char *sc = scope ? json_string_value(scope) : "full";
    long ttl = 900;
    if (!json_is_object(req)) {
        auth_oauth_error(out, 400, "invalid_request", "The body must be a JSON object.");
        goto refused;
    }
    if (!json_is_string(aud) || strcmp(json_string_value(aud), AUTH_AUDIENCE) != 0) {
        auth_oauth_error(out, 400, "invalid_request",
                         aud ? "aud must be api.didww.com." : "aud is required.");
        goto refused;
    }
    if (!sc || (strcmp(sc, "full") != 0 && strcmp(sc, "read") != 0)) {
        auth_oauth_error(out, 400, "invalid_scope", "scope must be full or read.");
        goto refused;
    }
    if (ver && (!json_is_string(ver) || !sim_api_naming(json_string_value(ver)))) {
        auth_oauth_error(out, 400, "invalid_request", "api_version is not a released version.");
        goto refused;
    }
    if (exp) {
        if (!json_is_integer(exp) || json_integer_value(exp) < 60 ||
            json_integer_value(exp) > 3600) {
            auth_oauth_error(out, 400, "invalid_request",
                             "expires_in must be an integer from 60 to 3600.");
            goto refused;
        }
        ttl = (long)json_integer_value(exp);
    }
    if (ttl > a->max_ttl_s)
        ttl = a->max_ttl_s;

    unsigned char raw[AUTH_TOKEN_HEX / 2];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        auth_oauth_error(out, 500, "server_error", "No randomness.");
        goto refused;
    }
    struct auth_token *t = &a->tokens[a->next];
    a->next = (a->next + 1) % AUTH_MAX_TOKENS;
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(t->value + 2 * i, 3, "%02x", raw[i]);
    snprintf(t->scope, sizeof t->scope, "%s", sc);
    snprintf(t->version, sizeof t->version, "%s", ver ? json_string_value(ver) : "2026-11-19");
    t->issued_at = auth_now();
    t->expires_at = t->issued_at + (double)ttl;
    t->revoked = false;
    a->issued++;
    json_t *doc = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "access_token", t->value,
                            "token_type", "Bearer", "expires_in", (int)ttl, "aud", AUTH_AUDIENCE,
                            "scope", t->scope, "api_version", t->version);
    out->status = 200;
    out->body = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    out->no_store = true;
    json_decref(doc);
    pthread_mutex_unlock(&a->lock);
    json_decref(req);
    return;
refused:
    a->refused++;
    pthread_mutex_unlock(&a->lock);
    json_decref(req);
}

static void auth_refuse(struct sim_auth_reply *out, int status, const char *error,
                        const char *detail)
{
    out->status = status;
    out->body = sim_api_error_doc(status, status == 401 ? "401" : "403",
                                  status == 401 ? "Unauthorized" : "Forbidden", detail, NULL);
    snprintf(out->www_auth, sizeof out->www_auth, "Bearer error=\"%s\"", error);
}

int sim_auth_check(struct sim_auth *a, const char *authorization, const char *version, bool write,
                   struct sim_auth_reply *out)
{
    memset(out, 0, sizeof *out);
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) {
        out->status = 401;
        out->body = sim_api_error_doc(401, "401", "Unauthorized",
                                      "API version 2026-11-19 requires an Authorization: Bearer "
                                      "token from the token endpoint.",
                                      NULL);
        snprintf(out->www_auth, sizeof out->www_auth, "Bearer");
        return -1;
    }
    const char *tok = authorization + 7;
    size_t n = strlen(tok);
    double now = auth_now();
    pthread_mutex_lock(&a->lock);
    struct auth_token *hit = NULL;
    for (size_t i = 0; i < AUTH_MAX_TOKENS && !hit; i++)
        if (a->tokens[i].value[0] && n == AUTH_TOKEN_HEX &&
            CRYPTO_memcmp(a->tokens[i].value, tok, AUTH_TOKEN_HEX) == 0)
            hit = &a->tokens[i];
    const char *why = NULL;
    bool scope_ok = true;
    if (!hit || a->refuse_tokens)
        why = "The access token is not valid.";
    else if (hit->revoked)
        why = "The access token has been revoked.";
    else if (now >= hit->expires_at)
        why = "The access token has expired.";
    else if (strcmp(hit->version, version) != 0)
        why = "The access token was issued for another API version.";
    else if (write && strcmp(hit->scope, "full") != 0)
        scope_ok = false;
    pthread_mutex_unlock(&a->lock);
    if (why) {
        auth_refuse(out, 401, "invalid_token", why);
        return -1;
    }
    if (!scope_ok) {
        auth_refuse(out, 403, "insufficient_scope",
                    "The access token has scope read; this request needs scope full.");
        return -1;
    }
    return 0;
}

bool sim_auth_budget_admit(struct sim_auth *a, double now, int *retry_after_s, char *detail,
                           size_t detail_len)
{
    bool ok = true;
    pthread_mutex_lock(&a->lock);
    if (a->budget > 0) {
        if (a->window_start == 0 || now >= a->window_start + (double)a->window_s) {
            a->window_start = now;
            a->window_used = 0;
        }
        if (a->window_used >= a->budget) {
            double left = a->window_start + (double)a->window_s - now;
            *retry_after_s = (int)left + 1;
            snprintf(detail, detail_len,
                     "The account's budget of %ld requests per %ld s is used up; retry in %d s.",
                     a->budget, a->window_s, *retry_after_s);
            ok = false;
        } else {
            a->window_used++;
        }
    }
    pthread_mutex_unlock(&a->lock);
    return ok;
}

/* Reads an optional integer member into *out when present and within lo..hi. */
static int auth_int(json_t *obj, const char *name, long lo, long hi, long *out, char *err,
                    size_t err_len)
{
    json_t *v = json_object_get(obj, name);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(err, err_len, "%s must be an integer from %ld to %ld", name, lo, hi);
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 0;
}

int sim_auth_configure(struct sim_auth *a, json_t *cfg, char *err, size_t err_len)
{
    static const char *const keys[] = {
        "max_ttl_s", "budget", "budget_window_s", "fail", "revoke", "refuse_tokens", NULL};
    const char *key;
    json_t *v;
    err[0] = '\0';
    if (!json_is_object(cfg)) {
        snprintf(err, err_len, "the body must be a JSON object");
        return -1;
    }
    json_object_foreach(cfg, key, v)
    {
        bool known = false;
        for (size_t i = 0; keys[i]; i++)
            known = known || strcmp(keys[i], key) == 0;
        if (!known) {
            snprintf(err, err_len, "unknown key %s", key);
            return -1;
        }
    }
    pthread_mutex_lock(&a->lock);
    long ttl = a->max_ttl_s, budget = a->budget, window = a->window_s;
    long fs = 0, fc = 0, fra = 0;
    json_t *fail = json_object_get(cfg, "fail");
    int rc = -1;
    if (auth_int(cfg, "max_ttl_s", 1, 3600, &ttl, err, err_len) < 0 ||
        auth_int(cfg, "budget", 0, 1000000, &budget, err, err_len) < 0 ||
        auth_int(cfg, "budget_window_s", 1, 3600, &window, err, err_len) < 0)
        goto out;
    if (fail) {
        const char *fe = json_string_value(json_object_get(fail, "error"));
        if (!json_is_object(fail) || auth_int(fail, "status", 400, 599, &fs, err, err_len) < 0 ||
            auth_int(fail, "count", 0, 1000000, &fc, err, err_len) < 0 ||
            auth_int(fail, "retry_after", 0, 3600, &fra, err, err_len) < 0 || fs == 0) {
            if (!err[0])
                snprintf(err, err_len, "fail needs {\"status\": 400..599, \"count\": N}");
            goto out;
        }
        a->fail_status = (int)fs;
        a->fail_count = (int)fc;
        a->fail_retry_after = (int)fra;
        snprintf(a->fail_error, sizeof a->fail_error, "%s", fe ? fe : "");
    }
    a->max_ttl_s = ttl;
    if (budget != a->budget || window != a->window_s) {
        a->budget = budget;
        a->window_s = window;
        a->window_start = 0;
    }
    if (json_object_get(cfg, "refuse_tokens"))
        a->refuse_tokens = json_is_true(json_object_get(cfg, "refuse_tokens"));
    if (json_is_true(json_object_get(cfg, "revoke")))
        for (size_t i = 0; i < AUTH_MAX_TOKENS; i++)
            a->tokens[i].revoked = true;
    rc = 0;
out:
    pthread_mutex_unlock(&a->lock);
    return rc;
}

json_t *sim_auth_json(struct sim_auth *a)
{
    json_t *list = json_array();
    double now = auth_now();
    pthread_mutex_lock(&a->lock);
    /* Oldest first: the table is a ring starting at next. */
    for (size_t k = 0; k < AUTH_MAX_TOKENS; k++) {
        struct auth_token *t = &a->tokens[(a->next + k) % AUTH_MAX_TOKENS];
        if (!t->value[0])
            continue;
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:f, s:b}", "access_token", t->value,
                                              "scope", t->scope, "api_version", t->version,
                                              "expires_in_s", t->expires_at - now, "revoked",
                                              t->revoked));
    }
    json_t *doc =
        json_pack("{s:o, s:I, s:I, s:I, s:I, s:I, s:I}", "tokens", list, "issued",
                  (json_int_t)a->issued, "refused", (json_int_t)a->refused, "max_ttl_s",
                  (json_int_t)a->max_ttl_s, "budget", (json_int_t)a->budget, "budget_window_s",
                  (json_int_t)a->window_s, "fail_count", (json_int_t)a->fail_count);
    pthread_mutex_unlock(&a->lock);
    return doc;
}

void sim_auth_reset(struct sim_auth *a)
{
    pthread_mutex_lock(&a->lock);
    memset(a->tokens, 0, sizeof a->tokens);
    a->next = 0;
    a->max_ttl_s = 3600;
    a->budget = a->budget0;
    a->window_s = a->window0;
    a->window_start = 0;
    a->window_used = 0;
    a->fail_count = a->fail_status = a->fail_retry_after = 0;
    a->fail_error[0] = '\0';
    a->issued = a->refused = 0;
    a->refuse_tokens = false;
    pthread_mutex_unlock(&a->lock);
}
