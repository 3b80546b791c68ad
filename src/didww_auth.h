/*
 * didww_auth: the bearer token DIDWW API version 2026-11-19 requires instead of Api-Key.
 * One didww_auth is shared by every delivery worker: it mints a token on first need
 * (POST didww.auth_url with the Api-Key header and {aud, scope, api_version,
 * expires_in}), hands copies to the workers, renews it before it expires (never per
 * request), lets a worker whose token was refused (401) ask for a new one once, and
 * remembers a 429's Retry-After so nobody asks the token endpoint again before it. At
 * most one mint is in flight. Thread-safe. The token is a secret: it is never logged,
 * audited, counted in metrics or written into an error.
 */
#ifndef HOOKLINE_DIDWW_AUTH_H
#define HOOKLINE_DIDWW_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define DIDWW_AUTH_MAX_TOKEN 4096           /* longest access_token accepted (bytes) */
#define DIDWW_AUTH_AUDIENCE "api.didww.com" /* aud for the API (DIDWW's authentication docs) */

struct didww_auth;

struct didww_auth_options {
    const char *auth_url;    /* "https://auth.didww.com/token" */
    const char *api_key;     /* secret: sent as Api-Key to auth_url only */
    const char *api_version; /* "2026-11-19": sent in the body */
    const char *scope;       /* "full" (NULL: "full") or "read" */
    int expires_in_s;        /* lifetime asked for, 60..3600 (0: 900) */
    long timeout_ms;         /* per token request (0: 15000) */
};

/* Why no token could be had. No field ever holds the key or a token. */
struct didww_auth_failure {
    int status;           /* the token endpoint's HTTP status, 0 when none arrived */
    char error[64];       /* OAuth "error" ("invalid_client", ...), "" when absent */
    char retry_after[64]; /* Retry-After for a 429 (seconds still to wait), "" otherwise */
    char message[256];    /* one line for an operator */
};

/* Creates the shared token holder; opts strings are copied. Returns NULL on failure.
 * curl_global_init must have run. */
struct didww_auth *didww_auth_create(const struct didww_auth_options *opts);

/* Copies a valid token into token[token_len] and its generation into *generation
 * (both caller-owned), minting or renewing first when needed (blocks while another
 * thread mints). Returns 0, or -1 with *f filled (f caller-owned). */
int didww_auth_get(struct didww_auth *a, char *token, size_t token_len, uint64_t *generation,
                   struct didww_auth_failure *f);

/* The token of generation was refused (401): forget it so that the next
 * didww_auth_get mints a new one. A stale generation (another worker already renewed)
 * changes nothing, so one refusal costs one mint however many workers saw it. */
void didww_auth_invalidate(struct didww_auth *a, uint64_t generation);

/* Number of successful mints so far (for tests and the README's claims). */
uint64_t didww_auth_mints(struct didww_auth *a);

/* Frees a (the token is wiped first); NULL is a no-op. No thread may be inside it. */
void didww_auth_destroy(struct didww_auth *a);

#endif
