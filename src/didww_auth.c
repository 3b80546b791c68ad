/*
 * didww_auth: mints and shares the bearer token of DIDWW API version 2026-11-19. State
 * (the token, its generation, its renewal and expiry times, a 429 back-off) lives
 * under one mutex; a mint runs with the mutex released and the `minting` flag set, so
 * workers that still hold a valid token go on using it while one thread renews, and
 * workers without one wait on the condition variable: one mint in flight. The token
 * endpoint is spoken to with a libcurl handle of its own that only the minting thread
 * touches. Buffers that held the key or a token are wiped before they are freed.
 */
#include "didww_auth.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "backoff.h"
#include "log.h"

#ifndef HOOKLINE_VERSION
#define HOOKLINE_VERSION "dev"
#endif

#define DIDWW_AUTH_MAX_ANSWER 65536
#define DIDWW_AUTH_DEFAULT_EXPIRES_S 900
#define DIDWW_AUTH_DEFAULT_TIMEOUT_MS 15000
#define DIDWW_AUTH_MAX_RENEW_MARGIN_S 60.0

struct didww_auth {
    pthread_mutex_t lock; /* guards everything below except curl */
    pthread_cond_t minted;
    bool minting;
    char *token; /* NULL: none; a secret */
    uint64_t generation;
    uint64_t mints;
    double renew_at;      /* monotonic seconds: mint a new one from here on */
    double expires_at;    /* monotonic seconds: the token is no longer used from here */
    double blocked_until; /* monotonic seconds: a 429 said not to ask before this */

    CURL *curl; /* the minting thread's only */
    char *auth_url, *api_key, *api_version, *scope;
    int expires_in_s;
    long timeout_ms;
};

/* One token answer being received. */
struct didww_auth_body {
    char *buf;
    size_t len;
    bool too_big;
};

struct didww_auth_headers {
    char retry_after[64];
};

static double didww_auth_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void didww_auth_wipe_free(char *s)
{
    if (!s)
        return;
    memset(s, 0, strlen(s));
    free(s);
}

/* True when s is non-empty printable ASCII without spaces (fits a header safely). */
static bool didww_auth_token_safe(const char *s, size_t len)
{
    if (len == 0 || len >= DIDWW_AUTH_MAX_TOKEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

struct didww_auth *didww_auth_create(const struct didww_auth_options *opts)
{
    struct didww_auth *a;
    if (!opts || !opts->auth_url || !opts->api_key || !opts->api_version)
        return NULL;
    a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->minted, NULL);
    a->auth_url = strdup(opts->auth_url);
    a->api_key = strdup(opts->api_key);
    a->api_version = strdup(opts->api_version);
    a->scope = strdup(opts->scope ? opts->scope : "full");
    a->expires_in_s = opts->expires_in_s > 0 ? opts->expires_in_s : DIDWW_AUTH_DEFAULT_EXPIRES_S;
    a->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DIDWW_AUTH_DEFAULT_TIMEOUT_MS;
    a->curl = curl_easy_init();
    if (!a->auth_url || !a->api_key || !a->api_version || !a->scope || !a->curl) {
        didww_auth_destroy(a);
        return NULL;
    }
    return a;
}

static size_t didww_auth_on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct didww_auth_body *b = userp;
    size_t n = size * nmemb;
    if (b->len + n > DIDWW_AUTH_MAX_ANSWER) {
        b->too_big = true;
        return 0;
    }
    char *p = realloc(b->buf, b->len + n + 1);
    if (!p)
        return 0;
    b->buf = p;
    memcpy(b->buf + b->len, data, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return n;
}

static size_t didww_auth_on_header(char *data, size_t size, size_t nitems, void *userp)
{
    static const char name[] = "retry-after:";
    struct didww_auth_headers *h = userp;
    size_t n = size * nitems, nl = sizeof name - 1;
    if (n > nl && strncasecmp(data, name, nl) == 0) {
        const char *v = data + nl;
        size_t vlen = n - nl;
        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
            vlen--;
        if (vlen >= sizeof h->retry_after)
            vlen = sizeof h->retry_after - 1;
        memcpy(h->retry_after, v, vlen);
        h->retry_after[vlen] = '\0';
    }
    return n;
}

/* Copies a JSON string member of doc into out (bounded), "" when absent. */
static void didww_auth_member(const json_t *doc, const char *name, char *out, size_t len)
{
    const char *v = json_string_value(json_object_get(doc, name));
    snprintf(out, len, "%s", v ? v : "");
}

/* One POST to the token endpoint, with the lock NOT held. On success returns 0 with a
 * new token in *token (caller wipes and frees) and its lifetime in *lifetime_s; else
 * -1 with *f filled and, for a 429, *wait_ms set (-1 when no usable Retry-After). */
static int didww_auth_mint(struct didww_auth *a, char **token, int *lifetime_s,
                           struct didww_auth_failure *f, int64_t *wait_ms)
{
    struct didww_auth_body b = {0};
    struct didww_auth_headers hd = {{0}};
    struct curl_slist *h = NULL, *next;
    char line[DIDWW_AUTH_MAX_TOKEN + 64];
    char *body = NULL;
    json_t *req = NULL, *ans = NULL;
    long code = 0;
    CURLcode rc;
    int ret = -1;

    *token = NULL;
    *wait_ms = -1;
    memset(f, 0, sizeof *f);
    req = json_pack("{s:s, s:s, s:s, s:i}", "aud", DIDWW_AUTH_AUDIENCE, "scope", a->scope,
                    "api_version", a->api_version, "expires_in", a->expires_in_s);
    body = req ? json_dumps(req, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (!body) {
        snprintf(f->message, sizeof f->message, "out of memory building the token request");
        goto out;
    }
    static const char *const fixed[] = {"Content-Type: application/json",
                                        "Accept: application/json", "Expect:", NULL};
    for (size_t i = 0; fixed[i]; i++) {
        next = curl_slist_append(h, fixed[i]);
        if (!next)
            goto oom;
        h = next;
    }
    if (snprintf(line, sizeof line, "Api-Key: %s", a->api_key) >= (int)sizeof line)
        goto oom;
    next = curl_slist_append(h, line);
    memset(line, 0, sizeof line);
    if (!next)
        goto oom;
    h = next;

    curl_easy_reset(a->curl);
    if (curl_easy_setopt(a->curl, CURLOPT_URL, a->auth_url) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, h) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_USERAGENT, "hookline/" HOOKLINE_VERSION) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, body) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body)) !=
            CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_TIMEOUT_MS, a->timeout_ms) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_NOPROXY, "*") != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_WRITEFUNCTION, didww_auth_on_body) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_WRITEDATA, &b) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_HEADERFUNCTION, didww_auth_on_header) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_HEADERDATA, &hd) != CURLE_OK) {
        snprintf(f->message, sizeof f->message, "cannot set up the token request");
        goto out;
    }
    rc = curl_easy_perform(a->curl);
    curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, NULL);
    if (rc != CURLE_OK || curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK ||
        code < 100) {
        snprintf(f->message, sizeof f->message, "token endpoint %s: %s", a->auth_url,
                 b.too_big ? "answer too large" : curl_easy_strerror(rc));
        goto out;
    }
    f->status = (int)code;
    ans = b.buf ? json_loadb(b.buf, b.len, 0, NULL) : NULL;
    if (code != 200) {
        char desc[128];
        didww_auth_member(ans, "error", f->error, sizeof f->error);
        didww_auth_member(ans, "error_description", desc, sizeof desc);
        if (code == 429) {
            snprintf(f->retry_after, sizeof f->retry_after, "%s", hd.retry_after);
            *wait_ms = hd.retry_after[0] ? backoff_retry_after_ms(hd.retry_after, time(NULL)) : -1;
        }
        snprintf(f->message, sizeof f->message, "token endpoint %s answered %ld%s%s%s%s",
                 a->auth_url, code, f->error[0] ? " " : "", f->error, desc[0] ? ": " : "", desc);
        goto out;
    }
    const char *tok = json_string_value(json_object_get(ans, "access_token"));
    const char *type = json_string_value(json_object_get(ans, "token_type"));
    json_t *exp = json_object_get(ans, "expires_in");
    if (!tok || !didww_auth_token_safe(tok, strlen(tok)) || !type ||
        strcasecmp(type, "Bearer") != 0) {
        snprintf(f->message, sizeof f->message,
                 "token endpoint %s answered 200 without a usable Bearer access_token",
                 a->auth_url);
        f->status = 0; /* treated like a transport failure: retried */
        goto out;
    }
    *lifetime_s =
        json_is_integer(exp) && json_integer_value(exp) > 0 && json_integer_value(exp) <= 86400
            ? (int)json_integer_value(exp)
            : a->expires_in_s;
    *token = strdup(tok);
    if (!*token)
        goto oom;
    ret = 0;
    goto out;
oom:
    snprintf(f->message, sizeof f->message, "out of memory building the token request");
out:
    /* The answer holds the token: wipe it and the request headers (they hold the key). */
    if (ans) {
        json_t *t = json_object_get(ans, "access_token");
        if (json_is_string(t))
            memset((char *)json_string_value(t), 0, json_string_length(t));
    }
    json_decref(ans);
    if (b.buf) {
        memset(b.buf, 0, b.len);
        free(b.buf);
    }
    for (struct curl_slist *p = h; p; p = p->next)
        memset(p->data, 0, strlen(p->data));
    curl_slist_free_all(h);
    free(body);
    json_decref(req);
    return ret;
}

int didww_auth_get(struct didww_auth *a, char *token, size_t token_len, uint64_t *generation,
                   struct didww_auth_failure *f)
{
    int ret = -1;
    memset(f, 0, sizeof *f);
    pthread_mutex_lock(&a->lock);
    for (;;) {
        double now = didww_auth_now();
        bool valid = a->token && now < a->expires_at;
        /* A token still valid is used while it is not due, while another thread renews
         * it, and while a 429 forbids asking for a new one. */
        if (valid && (now < a->renew_at || a->minting || now < a->blocked_until)) {
            if (strlen(a->token) >= token_len) {
                snprintf(f->message, sizeof f->message, "token longer than the buffer");
                break;
            }
            memcpy(token, a->token, strlen(a->token) + 1);
            *generation = a->generation;
            ret = 0;
            break;
        }
        if (a->minting) {
            pthread_cond_wait(&a->minted, &a->lock);
            continue;
        }
        if (now < a->blocked_until) {
            /* A 429 asked us not to come back yet: say how long is left. */
            f->status = 429;
            snprintf(f->error, sizeof f->error, "rate_limit_exceeded");
            double left = a->blocked_until - now;
            long secs = (long)left + (left > (double)(long)left ? 1 : 0); /* rounded up */
            snprintf(f->retry_after, sizeof f->retry_after, "%ld", secs);
            snprintf(f->message, sizeof f->message,
                     "token endpoint %s throttled the key (429): waiting for its Retry-After",
                     a->auth_url);
            break;
        }
        a->minting = true;
        pthread_mutex_unlock(&a->lock);
        char *fresh = NULL;
        int lifetime = 0;
        int64_t wait_ms = -1;
        int rc = didww_auth_mint(a, &fresh, &lifetime, f, &wait_ms);
        pthread_mutex_lock(&a->lock);
        a->minting = false;
        pthread_cond_broadcast(&a->minted);
        now = didww_auth_now();
        if (rc < 0) {
            if (f->status == 429)
                a->blocked_until = now + (double)(wait_ms >= 0 ? wait_ms : 1000) / 1000.0;
            if (a->token && now < a->expires_at) {
                /* A renewal failed but the current token is still good: keep using it
                 * and try again a little later (never per request). */
                double left = a->expires_at - now;
                a->renew_at = now + (left < 5.0 ? left : 5.0);
                memset(f, 0, sizeof *f);
                continue;
            }
            break;
        }
        didww_auth_wipe_free(a->token);
        a->token = fresh;
        a->generation++;
        a->mints++;
        /* Renew a quarter of the lifetime (at most a minute) before it ends. */
        double margin = (double)lifetime / 4.0;
        if (margin > DIDWW_AUTH_MAX_RENEW_MARGIN_S)
            margin = DIDWW_AUTH_MAX_RENEW_MARGIN_S;
        /* Stop using it a little before DIDWW does (clock skew, time in flight). */
        a->expires_at = now + (double)lifetime - (lifetime >= 10 ? 1.0 : (double)lifetime / 10.0);
        a->renew_at = now + (double)lifetime - margin;
        char life[24];
        snprintf(life, sizeof life, "%d", lifetime);
        log_write(LOG_INFO, "DIDWW bearer token minted",
                  (const char *[]){"expires_in_s", life, "scope", a->scope, NULL});
        /* The loop hands it out: it is valid and not yet due for renewal. */
    }
    pthread_mutex_unlock(&a->lock);
    return ret;
}

void didww_auth_invalidate(struct didww_auth *a, uint64_t generation)
{
    pthread_mutex_lock(&a->lock);
    if (a->token && a->generation == generation) {
        didww_auth_wipe_free(a->token);
        a->token = NULL;
        a->expires_at = a->renew_at = 0;
    }
    pthread_mutex_unlock(&a->lock);
}

uint64_t didww_auth_mints(struct didww_auth *a)
{
    pthread_mutex_lock(&a->lock);
    uint64_t n = a->mints;
    pthread_mutex_unlock(&a->lock);
    return n;
}

void didww_auth_destroy(struct didww_auth *a)
{
    if (!a)
        return;
    if (a->curl)
        curl_easy_cleanup(a->curl);
    didww_auth_wipe_free(a->token);
    didww_auth_wipe_free(a->api_key);
    free(a->auth_url);
    free(a->api_version);
    free(a->scope);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->minted);
    free(a);
}
