/*
 * verify: proves a webhook request authentic according to its source's scheme
 * (standard-webhooks, hmac template, token, basic, HubSpot v1/v2/v3, none). Pure functions over a
 * borrowed request view; no I/O, no logging, no global state, so any HTTP thread
 * may call it. Results never carry a secret or an expected signature.
 */
#ifndef HOOKLINE_VERIFY_H
#define HOOKLINE_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"

enum verify_scheme {
    VERIFY_SCHEME_NONE = 0,
    VERIFY_SCHEME_STANDARD_WEBHOOKS,
    VERIFY_SCHEME_HMAC,
    VERIFY_SCHEME_TOKEN,
    VERIFY_SCHEME_BASIC,
    VERIFY_SCHEME_HUBSPOT_V1, /* X-HubSpot-Signature: hex SHA-256(secret + body) */
    VERIFY_SCHEME_HUBSPOT_V2, /* X-HubSpot-Signature: hex SHA-256(secret + method + URI + body) */
    VERIFY_SCHEME_HUBSPOT_V3, /* X-HubSpot-Signature-v3: base64 HMAC-SHA256(method + URI + body +
                                 timestamp), URI escapes decoded as HubSpot specifies */
};

enum verify_encoding { VERIFY_ENC_HEX = 0, VERIFY_ENC_BASE64 };

/* One secret, as bytes. For standard-webhooks the configured "whsec_<base64>"
 * text is decoded by verify_prepare into the raw key; for the other schemes the
 * bytes are the configured text itself. */
struct verify_secret {
    unsigned char *bytes; /* owned by the struct verify_config */
    size_t len;
};

/* The verify block of one source, as config.c fills it in. All strings are owned
 * by this struct and released by verify_config_free. */
struct verify_config {
    enum verify_scheme scheme;
    struct verify_secret *secrets; /* any one may match (key rotation) */
    size_t nsecrets;
    enum digest_alg algorithm;     /* hmac; default sha256 */
    enum verify_encoding encoding; /* hmac; default hex */
    char *header;           /* hmac: header holding the signature; token: header (may be NULL) */
    char *prefix;           /* hmac: prefix stripped from the header value ("sha256=");
                               token: prefix of the header value ("Bearer "); may be NULL */
    char *signed_template;  /* hmac: e.g. "{header:x-ts}{body}"; default "{body}" */
    char *timestamp_header; /* hmac: optional timestamp header */
    char *query;            /* token: query parameter holding the token (may be NULL) */
    char *username;         /* basic; the accepted passwords are the secrets */
    int64_t tolerance_s;    /* standard-webhooks and hmac timestamp_header; default 300 */
    bool insecure;          /* none: must be true */
    bool trust_forwarded;   /* the signed URL takes X-Forwarded-Host / X-Forwarded-Proto (the
                               first entry of each) instead of Host; set only behind a proxy
                               that sets or strips them */
};

/* Accessors for one request; names are matched case-insensitively by the caller's
 * function. Returned strings are borrowed and valid during verify_request(). */
typedef const char *(*verify_lookup_fn)(void *ctx, const char *name);

/* A borrowed view of one incoming request. */
struct verify_request {
    const char *method;        /* "POST" */
    const char *url;           /* full URL as received: "http://host/hooks/x?a=b" */
    const unsigned char *body; /* may contain NULs */
    size_t body_len;
    verify_lookup_fn header; /* header value or NULL */
    verify_lookup_fn query;  /* URL-decoded query parameter or NULL */
    void *ctx;               /* passed to header/query */
    int64_t now;             /* arrival time, Unix seconds */
};

enum verify_status {
    VERIFY_OK = 0,
    VERIFY_MISSING,   /* a required header/parameter is absent */
    VERIFY_MALFORMED, /* present but unparseable (bad base64, bad timestamp format) */
    VERIFY_STALE,     /* timestamp outside tolerance, past or future */
    VERIFY_MISMATCH,  /* well-formed, but no secret produced a matching signature */
};

struct verify_result {
    enum verify_status status;
    /* A short human reason for logs, audit and the 401 problem detail, e.g.
     * "missing header webhook-signature", "timestamp 912 s old exceeds tolerance 300 s",
     * "signature does not match". Never contains a secret or a computed signature. */
    char reason[160];
};

/* Checks cfg for consistency after config.c filled it in and decodes whsec_ secrets.
 * Returns 0, or -1 with a one-line message (naming the field, never a secret value)
 * in err[err_len]. Call once at load time. */
int verify_prepare(struct verify_config *cfg, char *err, size_t err_len);

/* Verifies req against cfg (prepared). Fills *res; returns res->status. Every
 * comparison against secret-derived material is constant time. */
enum verify_status verify_request(const struct verify_config *cfg, const struct verify_request *req,
                                  struct verify_result *res);

/* Parses a timestamp header value: Unix seconds, Unix milliseconds (values above
 * 10^11), or RFC 3339 ("2021-03-25T17:53:39Z", optional fraction and offset).
 * Returns 0 and *out in seconds, or -1. */
int verify_parse_timestamp(const char *text, int64_t *out);

/* The URL a sender signed, for {url}, hubspot-v2 and hubspot-v3: req->url ("scheme://host"
 * + target) with scheme and host replaced by the first X-Forwarded-Proto (http/https) and
 * X-Forwarded-Host entries when cfg->trust_forwarded is set and they are well-formed.
 * Returns a new string (caller frees) or NULL when out of memory. */
char *verify_signed_url(const struct verify_config *cfg, const struct verify_request *req);

/* HubSpot v3's URI rule: decodes only the escapes %3A %2F %3F %40 %21 %24 %27 %28 %29 %2A
 * %2C %3B (either hex case) and copies everything else, other escapes included, unchanged.
 * Returns a new string (caller frees) or NULL when out of memory. */
char *verify_hubspot_decode_uri(const char *uri);

/* Name of a scheme as written in the config ("standard-webhooks", ...). */
const char *verify_scheme_name(enum verify_scheme scheme);

/* Releases everything cfg owns (not cfg itself); secrets are wiped first.
 * NULL is a no-op. */
void verify_config_free(struct verify_config *cfg);

#endif
