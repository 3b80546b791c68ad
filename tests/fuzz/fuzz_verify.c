/*
 * fuzz_verify: webhook signature verification (verify_request) with hostile
 * headers, query parameters, URL and body, against fixed test secrets and the
 * verify blocks of the shipped example config (conf/hookline.json): Standard
 * Webhooks, Zendesk- and HubSpot-style HMAC templates, GitHub-style "sha256="
 * hex, sha1/sha512, token in a header or the query, HTTP Basic and none, and the
 * hubspot-v1/v2/v3 schemes with and without trust_forwarded (and an hmac {url}
 * template with it). Also feeds each header value to verify_parse_timestamp and each
 * URL to verify_hubspot_decode_uri.
 *
 * Input: one selector byte, then parts separated by "\n--\n":
 *   BODY -- HEADERS ("Name: value" lines) -- QUERY ("name=value" lines) -- URL -- TEMPLATE
 * selector % 10 picks the verify block, or with bit 0x40 set 10 + selector % 5 (the
 * HubSpot and forwarded-URL blocks); selector >= 128 adds a second (rotated)
 * secret; a non-empty TEMPLATE replaces an hmac block's "signed" template (when
 * verify_prepare accepts it). The clock is fixed at FUZZ_NOW.
 * Invariants: no crash, leak or UB; the status is one of enum verify_status and the
 * reason is a NUL-terminated string that never contains a secret the request did
 * not carry.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_util.h"
#include "verify.h"

#define FUZZ_NOW 1764000000 /* 2025-11-24T16:00:00Z, the seeds' timestamps are near it */
#define FUZZ_MAX_FIELDS 32

/* The test secrets (the seeds are signed with the first of each pair). */
#define WHSEC_1 "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define WHSEC_2 "whsec_dGhlLXJvdGF0ZWQtc2Vjb25kLWtleS0xMjM0NTY="
#define HMAC_1 "fuzz-hmac-secret-one"
#define HMAC_2 "fuzz-hmac-secret-two"
#define TOKEN_1 "fuzz-token-Lq3vP9"
#define TOKEN_2 "fuzz-token-rotated-Zk2"

struct field {
    char *name, *value;
};

struct fuzz_req {
    struct field headers[FUZZ_MAX_FIELDS], query[FUZZ_MAX_FIELDS];
    size_t nheaders, nquery;
};

/* Parses "name<sep>value" lines of p[n] into out (values NUL-terminated copies; a
 * value with a NUL byte ends there, as a C string). */
static size_t parse_fields(const uint8_t *p, size_t n, char sep, struct field *out)
{
    size_t count = 0, i = 0;
    while (i < n && count < FUZZ_MAX_FIELDS) {
        const uint8_t *nl = memchr(p + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - p) : n;
        const uint8_t *s = memchr(p + i, sep, end - i);
        if (s) {
            size_t k = (size_t)(s - p);
            size_t v = k + 1;
            if (sep == ':')
                while (v < end && (p[v] == ' ' || p[v] == '\t'))
                    v++;
            out[count].name = fuzz_strndup(p + i, k - i);
            out[count].value = fuzz_strndup(p + v, end - v);
            count++;
        }
        i = end + 1;
    }
    return count;
}

static const char *lookup_header(void *ctx, const char *name)
{
    struct fuzz_req *r = ctx;
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static const char *lookup_query(void *ctx, const char *name)
{
    struct fuzz_req *r = ctx;
    for (size_t i = 0; i < r->nquery; i++)
        if (strcmp(r->query[i].name, name) == 0)
            return r->query[i].value;
    return NULL;
}

static char *dup(const char *s)
{
    return s ? fuzz_strndup((const uint8_t *)s, strlen(s)) : NULL;
}

static void add_secret(struct verify_config *c, const char *text)
{
    struct verify_secret *ns = realloc(c->secrets, (c->nsecrets + 1) * sizeof *ns);
    if (!ns)
        abort();
    c->secrets = ns;
    c->secrets[c->nsecrets].bytes = (unsigned char *)dup(text);
    c->secrets[c->nsecrets].len = strlen(text);
    c->nsecrets++;
}

/* Fills c with verify block number which (0-9), as config.c would. */
static void make_config(struct verify_config *c, unsigned which, bool rotated)
{
    memset(c, 0, sizeof *c);
    c->tolerance_s = 300;
    c->algorithm = DIGEST_SHA256;
    c->encoding = VERIFY_ENC_HEX;
    const char *s1 = HMAC_1, *s2 = HMAC_2;
    switch (which) {
    case 0: /* crm: Standard Webhooks */
        c->scheme = VERIFY_SCHEME_STANDARD_WEBHOOKS;
        s1 = WHSEC_1;
        s2 = WHSEC_2;
        break;
    case 1: /* zendesk */
        c->scheme = VERIFY_SCHEME_HMAC;
        c->encoding = VERIFY_ENC_BASE64;
        c->header = dup("X-Zendesk-Webhook-Signature");
        c->signed_template = dup("{header:x-zendesk-webhook-signature-timestamp}{body}");
        c->timestamp_header = dup("X-Zendesk-Webhook-Signature-Timestamp");
        break;
    case 2: /* hubspot v3 (millisecond timestamps) */
        c->scheme = VERIFY_SCHEME_HMAC;
        c->encoding = VERIFY_ENC_BASE64;
        c->header = dup("X-HubSpot-Signature-v3");
        c->signed_template = dup("{method}{url}{body}{header:x-hubspot-request-timestamp}");
        c->timestamp_header = dup("X-HubSpot-Request-Timestamp");
        break;
    case 3: /* GitHub style */
        c->scheme = VERIFY_SCHEME_HMAC;
        c->header = dup("X-Hub-Signature-256");
        c->prefix = dup("sha256=");
        break;
    case 4:
        c->scheme = VERIFY_SCHEME_HMAC;
        c->algorithm = DIGEST_SHA1;
        c->encoding = VERIFY_ENC_BASE64;
        c->header = dup("X-Signature");
        break;
    case 5:
        c->scheme = VERIFY_SCHEME_HMAC;
        c->algorithm = DIGEST_SHA512;
        c->header = dup("X-Signature");
        c->signed_template = dup("{method} {url}\n{body}");
        break;
    case 6: /* bearer token, or ?token= */
        c->scheme = VERIFY_SCHEME_TOKEN;
        c->header = dup("Authorization");
        c->prefix = dup("Bearer ");
        c->query = dup("token");
        s1 = TOKEN_1;
        s2 = TOKEN_2;
        break;
    case 7: /* zapier: ?token= only */
        c->scheme = VERIFY_SCHEME_TOKEN;
        c->query = dup("token");
        s1 = TOKEN_1;
        s2 = TOKEN_2;
        break;
    case 8: /* freshdesk: Basic */
        c->scheme = VERIFY_SCHEME_BASIC;
        c->username = dup("freshdesk");
        s1 = TOKEN_1;
        s2 = TOKEN_2;
        break;
    case 10:
        c->scheme = VERIFY_SCHEME_HUBSPOT_V1;
        break;
    case 11:
        c->scheme = VERIFY_SCHEME_HUBSPOT_V2;
        c->trust_forwarded = true;
        break;
    case 12:
        c->scheme = VERIFY_SCHEME_HUBSPOT_V3;
        break;
    case 13:
        c->scheme = VERIFY_SCHEME_HUBSPOT_V3;
        c->trust_forwarded = true;
        break;
    case 14: /* an hmac {url} template behind a trusted proxy */
        c->scheme = VERIFY_SCHEME_HMAC;
        c->header = dup("X-Signature");
        c->signed_template = dup("{method}{url}{body}");
        c->trust_forwarded = true;
        break;
    default:
        c->scheme = VERIFY_SCHEME_NONE;
        c->insecure = true;
        return;
    }
    add_secret(c, s1);
    if (rotated)
        add_secret(c, s2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const secrets[] = {HMAC_1, HMAC_2, TOKEN_1, TOKEN_2, "MfKQ9r8GKYqr", NULL};
    if (size < 1)
        return 0;
    unsigned sel = data[0];
    unsigned block = (sel & 0x40) ? 10 + sel % 5 : sel % 10;
    struct fuzz_part parts[5];
    fuzz_split(data + 1, size - 1, parts, 5);

    struct verify_config cfg;
    make_config(&cfg, block, sel >= 128);
    char err[256];
    if (parts[4].present && parts[4].n > 0 && cfg.scheme == VERIFY_SCHEME_HMAC) {
        free(cfg.signed_template);
        cfg.signed_template = fuzz_strndup(parts[4].p, parts[4].n);
    }
    if (verify_prepare(&cfg, err, sizeof err) != 0) {
        fuzz_check(parts[4].present && parts[4].n > 0, "a fixed verify block was refused: %s", err);
        verify_config_free(&cfg);
        return 0;
    }

    struct fuzz_req r = {0};
    r.nheaders = parse_fields(parts[1].p, parts[1].n, ':', r.headers);
    r.nquery = parse_fields(parts[2].p, parts[2].n, '=', r.query);
    char *url = parts[3].present ? fuzz_strndup(parts[3].p, parts[3].n)
                                 : dup("http://127.0.0.1:8080/hooks/fuzz");
    struct verify_request req = {
        .method = "POST",
        .url = url,
        .body = parts[0].p,
        .body_len = parts[0].n,
        .header = lookup_header,
        .query = lookup_query,
        .ctx = &r,
        .now = FUZZ_NOW,
    };
    struct verify_result res;
    memset(&res, 0x55, sizeof res); /* a result left unset shows */
    enum verify_status st = verify_request(&cfg, &req, &res);
#ifdef FUZZ_PRINT_RESULT /* to see what a seed reaches: -DFUZZ_PRINT_RESULT */
    fprintf(stderr, "block %u: status %d: %s\n", block, st, res.reason);
#endif
    fuzz_check(st == res.status, "returned status %d, result says %d", st, res.status);
    fuzz_check(st >= VERIFY_OK && st <= VERIFY_MISMATCH, "status %d out of range", st);
    fuzz_check(memchr(res.reason, '\0', sizeof res.reason) != NULL, "reason not terminated");
    for (size_t i = 0; secrets[i]; i++) /* (unless the request itself carried it) */
        fuzz_check(strstr(res.reason, secrets[i]) == NULL ||
                       memmem(data, size, secrets[i], strlen(secrets[i])) != NULL,
                   "reason holds a secret: %s", res.reason);

    for (size_t i = 0; i < r.nheaders; i++) {
        int64_t ts;
        (void)verify_parse_timestamp(r.headers[i].value, &ts);
    }
    char *signed_url = verify_signed_url(&cfg, &req);
    char *decoded = signed_url ? verify_hubspot_decode_uri(signed_url) : NULL;
    fuzz_check(decoded == NULL || strlen(decoded) <= strlen(signed_url), "decoding grew the URI");
    free(decoded);
    free(signed_url);

    for (size_t i = 0; i < r.nheaders; i++) {
        free(r.headers[i].name);
        free(r.headers[i].value);
    }
    for (size_t i = 0; i < r.nquery; i++) {
        free(r.query[i].name);
        free(r.query[i].value);
    }
    free(url);
    verify_config_free(&cfg);
    return 0;
}
