/*
 * didww_client: one HTTP client to the DIDWW API v3 per delivery worker
 * (libcurl easy handle, connections kept alive). Every request carries Api-Key,
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

struct didww_client_options {
    const char *base_url;    /* "https://sandbox-api.didww.com/v3" (no trailing slash needed) */
    const char *api_key;     /* secret: sent as Api-Key, never logged */
    const char *api_version; /* "2022-05-10" */
    long timeout_ms;         /* total per request */
    long connect_timeout_ms; /* 0: min(timeout_ms, 5000) */
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
};

/* Creates a client; opts strings are copied. Returns NULL on failure. Call
 * curl_global_init once at start-up before any client is created. */
struct didww_client *didww_client_create(const struct didww_client_options *opts);

/* Sends method path (beginning with "/v3/..." or "/...": joined to base_url
 * without doubling "/v3") with body (may be NULL). Fills *resp (caller frees
 * with didww_response_free). Returns 0 when an HTTP response arrived (any
 * status), -1 on a transport error (resp->status == 0, resp->error set). */
int didww_client_send(struct didww_client *c, const char *method, const char *path,
                      const char *body, struct didww_response *resp);

void didww_response_free(struct didww_response *resp);

/* Frees c; NULL is a no-op. */
void didww_client_destroy(struct didww_client *c);

#endif
