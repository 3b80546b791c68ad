/*
 * didww_client: one HTTP client to the DIDWW API v3 per delivery worker
 * (libcurl easy handle, connections kept alive). Every request carries Api-Key
 * (or, for 2026-11-19, Authorization: Bearer from the shared didww_auth),
 * Content-Type and Accept application/vnd.api+json, X-DIDWW-API-Version and a
 * User-Agent naming hookline; connect and total timeouts and a bounded
 * response size apply. Not thread-safe: a client belongs to one worker thread.
 */
#ifndef HOOKLINE_DIDWW_CLIENT_H
#define HOOKLINE_DIDWW_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#define DIDWW_CLIENT_MAX_RESPONSE (1u << 20)

struct didww_client;
struct didww_auth;

struct didww_client_options {
    const char *base_url;    /* "https://sandbox-api.didww.com/v3" (no trailing slash needed) */
    const char *api_key;     /* secret: sent as Api-Key, never logged; unused with auth */
    const char *api_version; /* "2022-05-10" */
    long timeout_ms;         /* total per request */
    long connect_timeout_ms; /* 0: min(timeout_ms, 5000) */
    struct didww_auth *auth; /* borrowed, shared by the workers: bearer tokens instead of
                                Api-Key (2026-11-19); NULL for the older versions */
};

/* One answer. body is owned by the response (didww_response_free). */
struct didww_response {
    int status; /* HTTP status, or 0 when no response arrived */
    char *body; /* NUL-terminated, may be NULL */
    size_t body_len;
    char retry_after[64]; /* Retry-After header value, "" when absent */
    int64_t duration_ms;
    char error[256]; /* transport error when status == 0 (no secrets) */
    int truncated;   /* the body exceeded DIDWW_CLIENT_MAX_RESPONSE */
    /* Bearer mode only. auth_failed: no token could be had, status/retry_after/error are
     * the token endpoint's (status 0: it did not answer) and auth_error is its OAuth
     * "error" ("invalid_client"). auth_retried: DIDWW refused a token with 401, a new
     * one was minted and the request sent once more (status is that second answer). */
    int auth_failed;
    int auth_retried;
    char auth_error[64];
};

/* Creates a client; opts strings are copied. Returns NULL on failure. Call
 * curl_global_init once at start-up before any client is created. */
struct didww_client *didww_client_create(const struct didww_client_options *opts);

/* Sends method path (beginning with "/v3/..." or "/...": joined to base_url
 * without doubling "/v3") with body (may be NULL). Fills *resp (caller frees
 * with didww_response_free). Returns 0 when an HTTP response arrived (any
 * status), -1 on a transport error (resp->status == 0, resp->error set). In bearer
 * mode a 401 makes it mint a new token and send once more; a token that cannot be
 * had returns the token endpoint's answer with resp->auth_failed set (0 when it
 * answered, -1 when it did not). */
int didww_client_send(struct didww_client *c, const char *method, const char *path,
                      const char *body, struct didww_response *resp);

void didww_response_free(struct didww_response *resp);

/* Frees c; NULL is a no-op. */
void didww_client_destroy(struct didww_client *c);

#endif
