/*
 * didww_client: the HTTP client a delivery worker uses to talk to the DIDWW API v3. It
 * owns one libcurl easy handle (so the connection is kept alive between requests), the
 * fixed request headers and copies of the options; a client belongs to one worker
 * thread and is never shared. Responses are buffered up to DIDWW_CLIENT_MAX_RESPONSE:
 * past that the transfer is aborted (the status already received still counts) rather
 * than read to the end. It must never write the API key anywhere but the Api-Key
 * header, nor a bearer token anywhere but the Authorization header: not into errors,
 * not into logs. In bearer mode (2026-11-19) the token comes from the didww_auth all
 * workers share and its header is linked to the fixed list for one request at a time.
 */
#include "didww_client.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "didww_auth.h"

#ifndef HOOKLINE_VERSION
#define HOOKLINE_VERSION "dev"
#endif

#define DIDWW_CLIENT_MAX_PATH 8192
#define DIDWW_CLIENT_MAX_METHOD 15
#define DIDWW_CLIENT_DEFAULT_TIMEOUT_MS 15000
#define DIDWW_CLIENT_MAX_CONNECT_TIMEOUT_MS 5000
#define DIDWW_CLIENT_MEDIA_TYPE "application/vnd.api+json"

struct didww_client {
    CURL *curl;
    struct curl_slist *headers;
    char *base_url; /* without trailing slashes */
    char *api_key;
    struct didww_auth *auth; /* borrowed; NULL: Api-Key mode */
    struct curl_slist *tail; /* last node of headers: a bearer line is linked after it */
    char errbuf[CURL_ERROR_SIZE];
};

/* The body being received for one request. */
struct didww_client_body {
    char *buf; /* NUL-terminated when non-NULL */
    size_t len, cap;
    int truncated;
    int oom;
};

/* True when s is non-empty printable ASCII (no CR/LF that could split a header). */
static bool didww_client_header_safe(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

/* Appends "name: value" to list ("name:" when value is NULL, which tells libcurl not
 * to send a header it would add itself). Returns the new list, or NULL (list freed) on
 * failure. */
static struct curl_slist *didww_client_add_header(struct curl_slist *list, const char *name,
                                                  const char *value)
{
    char line[1024];
    struct curl_slist *next;
    int n = value ? snprintf(line, sizeof line, "%s: %s", name, value)
                  : snprintf(line, sizeof line, "%s:", name);

    if (n < 0 || (size_t)n >= sizeof line) {
        curl_slist_free_all(list);
        return NULL;
    }
    next = curl_slist_append(list, line);
    /* The line may hold the key: do not leave it on the stack. */
    memset(line, 0, sizeof line);
    if (!next)
        curl_slist_free_all(list);
    return next;
}

struct didww_client *didww_client_create(const struct didww_client_options *opts)
{
    struct didww_client *c = NULL;
    struct curl_slist *h = NULL;
    long timeout_ms, connect_ms;
    size_t blen;

    if (!opts || !opts->base_url || (!opts->auth && !didww_client_header_safe(opts->api_key)) ||
        !didww_client_header_safe(opts->api_version))
        return NULL;
    c = calloc(1, sizeof *c);
    if (!c)
        goto fail;
    blen = strlen(opts->base_url);
    while (blen > 0 && opts->base_url[blen - 1] == '/')
        blen--;
    if (blen == 0)
        goto fail;
    c->base_url = strndup(opts->base_url, blen);
    c->api_key = strdup(opts->auth ? "" : opts->api_key);
    c->auth = opts->auth;
    if (!c->base_url || !c->api_key)
        goto fail;

    /* Bearer mode sends no Api-Key to /v3: 2026-11-19 refuses it with 401. */
    h = opts->auth ? didww_client_add_header(NULL, "Content-Type", DIDWW_CLIENT_MEDIA_TYPE)
                   : didww_client_add_header(NULL, "Api-Key", opts->api_key);
    if (h && !opts->auth)
        h = didww_client_add_header(h, "Content-Type", DIDWW_CLIENT_MEDIA_TYPE);
    if (h)
        h = didww_client_add_header(h, "Accept", DIDWW_CLIENT_MEDIA_TYPE);
    if (h)
        h = didww_client_add_header(h, "X-DIDWW-API-Version", opts->api_version);
    if (h) /* no "Expect: 100-continue" round trip before a body */
        h = didww_client_add_header(h, "Expect", NULL);
    if (!h)
        goto fail;
    c->headers = h;
    for (c->tail = h; c->tail->next; c->tail = c->tail->next)
        ;

    timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DIDWW_CLIENT_DEFAULT_TIMEOUT_MS;
    connect_ms = opts->connect_timeout_ms;
    if (connect_ms <= 0)
        connect_ms = timeout_ms < DIDWW_CLIENT_MAX_CONNECT_TIMEOUT_MS
                         ? timeout_ms
                         : DIDWW_CLIENT_MAX_CONNECT_TIMEOUT_MS;

    c->curl = curl_easy_init();
    if (!c->curl)
        goto fail;
    if (curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers) != CURLE_OK ||
        curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "hookline/" HOOKLINE_VERSION) != CURLE_OK ||
        curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK ||
        curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, connect_ms) != CURLE_OK ||
        curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(c->curl, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
        curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        /* Proxy variables in the environment must not divert the key elsewhere. */
        curl_easy_setopt(c->curl, CURLOPT_NOPROXY, "*") != CURLE_OK ||
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(c->curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
#else
        curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) !=
            CURLE_OK ||
#endif
        curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf) != CURLE_OK)
        goto fail;
    return c;

fail:
    didww_client_destroy(c); /* frees the headers too once they are attached */
    return NULL;
}

/* libcurl write callback: keeps at most DIDWW_CLIENT_MAX_RESPONSE bytes. Past that it
 * returns short, which aborts the transfer (CURLE_WRITE_ERROR) instead of reading an
 * unbounded body to the end; curl then closes that connection and the next request
 * opens a new one. */
static size_t didww_client_on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct didww_client_body *b = userp;
    size_t n = size * nmemb;
    size_t room = DIDWW_CLIENT_MAX_RESPONSE - b->len;
    size_t take = n < room ? n : room;

    if (take > 0 && b->len + take + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + take + 1)
            cap *= 2;
        if (cap > (size_t)DIDWW_CLIENT_MAX_RESPONSE + 1)
            cap = (size_t)DIDWW_CLIENT_MAX_RESPONSE + 1;
        char *p = realloc(b->buf, cap);
        if (!p) {
            b->oom = 1;
            return 0;
        }
        b->buf = p;
        b->cap = cap;
    }
    if (take > 0) {
        memcpy(b->buf + b->len, data, take);
        b->len += take;
        b->buf[b->len] = '\0';
    }
    if (take < n) {
        b->truncated = 1;
        return 0;
    }
    return n;
}

/* libcurl header callback: captures Retry-After (name case-insensitive, value trimmed,
 * cut to fit). A new status line starts a new header block (1xx, redirects), which
 * forgets what an earlier block said. */
static size_t didww_client_on_header(char *data, size_t size, size_t nitems, void *userp)
{
    static const char name[] = "retry-after:";
    struct didww_response *resp = userp;
    size_t n = size * nitems;
    size_t name_len = sizeof name - 1;

    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        resp->retry_after[0] = '\0';
        return n;
    }
    if (n > name_len && strncasecmp(data, name, name_len) == 0) {
        const char *v = data + name_len;
        size_t vlen = n - name_len;
        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t' || v[vlen - 1] == '\r' ||
                            v[vlen - 1] == '\n'))
            vlen--;
        if (vlen >= sizeof resp->retry_after)
            vlen = sizeof resp->retry_after - 1;
        memcpy(resp->retry_after, v, vlen);
        resp->retry_after[vlen] = '\0';
    }
    return n;
}

/* True when method is 1..15 upper-case letters (a token that cannot inject anything). */
static bool didww_client_method_ok(const char *method)
{
    size_t n = 0;
    if (!method)
        return false;
    for (; method[n]; n++)
        if (method[n] < 'A' || method[n] > 'Z' || n >= DIDWW_CLIENT_MAX_METHOD)
            return false;
    return n > 0;
}

/* True when path is non-empty, bounded and free of spaces and control bytes. */
static bool didww_client_path_ok(const char *path)
{
    size_t n = 0;
    if (!path || !*path)
        return false;
    for (; path[n]; n++)
        if ((unsigned char)path[n] <= 0x20 || (unsigned char)path[n] >= 0x7f ||
            n >= DIDWW_CLIENT_MAX_PATH)
            return false;
    return true;
}

/* base_url + path as a new string (caller frees): a base ending in "/v3" and a path
 * starting with "/v3/" share that segment once; a path without a leading slash gets one. */
static char *didww_client_url(const struct didww_client *c, const char *path)
{
    size_t blen = strlen(c->base_url);
    const char *sep = "";
    char *url;
    size_t len;

    if (blen >= 3 && strcmp(c->base_url + blen - 3, "/v3") == 0 &&
        (strncmp(path, "/v3/", 4) == 0 || strcmp(path, "/v3") == 0))
        path += 3;
    if (*path != '/' && *path != '\0' && *path != '?')
        sep = "/";
    len = blen + strlen(sep) + strlen(path) + 1;
    url = malloc(len);
    if (url)
        snprintf(url, len, "%s%s%s", c->base_url, sep, path);
    return url;
}

/* Sets the request line options for method with body (may be NULL). A body goes as
 * POSTFIELDS whatever the method (DELETE of to-many members carries one); GET and DELETE
 * without a body send none, other methods send an empty one (Content-Length: 0). */
static CURLcode didww_client_set_method(CURL *curl, const char *method, const char *body)
{
    CURLcode rc;
    bool bodiless =
        strcmp(method, "GET") == 0 || strcmp(method, "DELETE") == 0 || strcmp(method, "HEAD") == 0;

    if (!body && bodiless) {
        rc = curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(curl, CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST,
                                  strcmp(method, "DELETE") == 0 ? method : NULL);
        return rc;
    }
    if (!body)
        body = "";
    rc = curl_easy_setopt(curl, CURLOPT_NOBODY, 0L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST,
                              strcmp(method, "POST") == 0 ? NULL : method);
    return rc;
}

/* Unlinks and frees the per-request Authorization line (wiped: it holds the token). */
static void didww_client_drop_bearer(struct didww_client *c, struct curl_slist *line)
{
    if (!line)
        return;
    c->tail->next = NULL;
    memset(line->data, 0, strlen(line->data));
    curl_slist_free_all(line);
}

/* Writes a transport error into resp; the key never appears in it (curl's messages do
 * not carry request headers, and a message that somehow did is replaced). */
static void didww_client_fail(const struct didww_client *c, struct didww_response *resp,
                              CURLcode rc, const char *what)
{
    if (what)
        snprintf(resp->error, sizeof resp->error, "%s", what);
    else
        snprintf(resp->error, sizeof resp->error, "%s%s%s", curl_easy_strerror(rc),
                 c->errbuf[0] ? ": " : "", c->errbuf);
    if (c->api_key[0] && strstr(resp->error, c->api_key))
        snprintf(resp->error, sizeof resp->error, "%s", curl_easy_strerror(rc));
    resp->status = 0;
}

/* One request; bearer (may be NULL) is the token to send as Authorization. */
static int didww_client_once(struct didww_client *c, const char *method, const char *path,
                             const char *body, const char *bearer, struct didww_response *resp)
{
    struct didww_client_body b = {0};
    struct curl_slist *auth_line = NULL;
    char *url = NULL;
    CURLcode rc = CURLE_OK;
    long code = 0;
    curl_off_t total_us = 0;

    if (!resp)
        return -1;
    memset(resp, 0, sizeof *resp);
    if (!c) {
        snprintf(resp->error, sizeof resp->error, "no client");
        return -1;
    }
    if (!didww_client_method_ok(method) || !didww_client_path_ok(path)) {
        didww_client_fail(c, resp, CURLE_OK, "invalid method or path");
        return -1;
    }
    url = didww_client_url(c, path);
    if (!url) {
        didww_client_fail(c, resp, CURLE_OK, "out of memory");
        return -1;
    }

    c->errbuf[0] = '\0';
    if (bearer) {
        /* Linked after the fixed headers for this request only, unlinked below. */
        auth_line = didww_client_add_header(NULL, "Authorization", bearer);
        if (!auth_line) {
            didww_client_fail(c, resp, CURLE_OK, "out of memory");
            goto fail;
        }
        c->tail->next = auth_line;
    }
    rc = curl_easy_setopt(c->curl, CURLOPT_URL, url);
    if (rc == CURLE_OK)
        rc = didww_client_set_method(c->curl, method, body);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, didww_client_on_body);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, didww_client_on_header);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, resp);
    if (rc != CURLE_OK) {
        didww_client_fail(c, resp, rc, NULL);
        goto fail;
    }

    rc = curl_easy_perform(c->curl);
    /* Drop the pointers to this call's stack and body before returning. */
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, NULL);
    if (curl_easy_getinfo(c->curl, CURLINFO_TOTAL_TIME_T, &total_us) == CURLE_OK)
        resp->duration_ms = (int64_t)(total_us / 1000);
    if (curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
        code = 0;

    if (b.oom) {
        didww_client_fail(c, resp, rc, "out of memory reading the response");
        goto fail;
    }
    /* A body cut at the cap is still an answer: the status and headers arrived. Any
     * other error (timeout, reset mid-body) means the answer was not complete, so it
     * counts as no response and the request is retried. */
    if (!(rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && b.truncated)) || code < 100 || code > 999) {
        didww_client_fail(c, resp, rc, rc == CURLE_OK ? "no HTTP status in the response" : NULL);
        goto fail;
    }
    resp->status = (int)code;
    resp->body = b.buf;
    resp->body_len = b.len;
    resp->truncated = b.truncated;
    free(url);
    didww_client_drop_bearer(c, auth_line);
    return 0;

fail:
    free(b.buf);
    free(url);
    didww_client_drop_bearer(c, auth_line);
    resp->retry_after[0] = '\0';
    return -1;
}

/* Bearer mode: a token from the shared holder, one request, and on a 401 one new token
 * and one more request. */
static int didww_client_send_bearer(struct didww_client *c, const char *method, const char *path,
                                    const char *body, struct didww_response *resp)
{
    /* "Bearer " + token: kept off the heap and wiped before returning. */
    char value[DIDWW_AUTH_MAX_TOKEN + 8];
    struct didww_auth_failure f;
    uint64_t gen = 0;
    int rc = -1;

    for (int attempt = 0; attempt < 2; attempt++) {
        memcpy(value, "Bearer ", 7);
        if (didww_auth_get(c->auth, value + 7, sizeof value - 7, &gen, &f) < 0) {
            memset(resp, 0, sizeof *resp);
            resp->status = f.status;
            resp->auth_failed = 1;
            resp->auth_retried = attempt > 0;
            snprintf(resp->auth_error, sizeof resp->auth_error, "%s", f.error);
            snprintf(resp->retry_after, sizeof resp->retry_after, "%s", f.retry_after);
            snprintf(resp->error, sizeof resp->error, "%s", f.message);
            rc = f.status ? 0 : -1;
            break;
        }
        rc = didww_client_once(c, method, path, body, value, resp);
        resp->auth_retried = attempt > 0;
        if (rc < 0 || resp->status != 401 || attempt > 0)
            break;
        /* Refused (expired early, revoked): forget it, mint once, send once more. */
        didww_auth_invalidate(c->auth, gen);
        didww_response_free(resp);
    }
    memset(value, 0, sizeof value);
    return rc;
}

int didww_client_send(struct didww_client *c, const char *method, const char *path,
                      const char *body, struct didww_response *resp)
{
    if (c && c->auth && resp)
        return didww_client_send_bearer(c, method, path, body, resp);
    return didww_client_once(c, method, path, body, NULL, resp);
}

void didww_response_free(struct didww_response *resp)
{
    if (!resp)
        return;
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

void didww_client_destroy(struct didww_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    free(c->base_url);
    if (c->api_key) {
        memset(c->api_key, 0, strlen(c->api_key));
        free(c->api_key);
    }
    free(c);
}
