/*
 * verify: decides whether one incoming webhook is authentic under its source's scheme
 * (standard-webhooks, hmac over a template, shared token, HTTP Basic, HubSpot's v1, v2 and
 * v3 signatures, or none). It owns
 * the prepared struct verify_config (decoded secrets) but keeps no other state; the
 * request is a borrowed view, so any HTTP thread may call verify_request concurrently.
 * Every comparison against secret-derived bytes is constant time, and no reason or error
 * text ever carries a secret, a computed signature or a submitted credential.
 */
#include "verify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#define VERIFY_DEFAULT_TOLERANCE_S 300
#define VERIFY_MAX_HEADER_NAME 128         /* longest NAME accepted in {header:NAME} */
#define VERIFY_MS_THRESHOLD 100000000000LL /* above this a Unix time is in milliseconds */
#define WHSEC_PREFIX "whsec_"
/* A received signature is decoded into a buffer this large: any base64 text of up to
 * SIG_B64_MAX characters fits, so a failed decode means bad characters, never "too long". */
#define SIG_B64_MAX 88 /* 4 * ceil(DIGEST_MAX_LEN / 3) */
#define SIG_DECODE_CAP (SIG_B64_MAX / 4 * 3)

/* The one family of Standard Webhooks header names used for one request. */
struct sw_names {
    const char *id;
    const char *timestamp;
    const char *signature;
};

static const struct sw_names sw_webhook_names = {"webhook-id", "webhook-timestamp",
                                                 "webhook-signature"};
static const struct sw_names sw_svix_names = {"svix-id", "svix-timestamp", "svix-signature"};

/* Placeholder kinds of an hmac signed-content template. */
enum tpl_kind { TPL_LITERAL, TPL_BODY, TPL_METHOD, TPL_URL, TPL_HEADER, TPL_BAD, TPL_OPEN };

/* One piece of a template: literal text or a placeholder (borrowed from the template). */
struct tpl_piece {
    enum tpl_kind kind;
    const char *text; /* literal text, or the NAME of {header:NAME} */
    size_t len;
};

/* Fills res with status and a printf-style reason; returns status. */
__attribute__((format(printf, 3, 4))) static enum verify_status
set_result(struct verify_result *res, enum verify_status status, const char *fmt, ...)
{
    va_list ap;

    res->status = status;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof res->reason, fmt, ap);
    va_end(ap);
    return status;
}

/* Writes a printf-style message to err[err_len] (either may be empty); returns -1. */
__attribute__((format(printf, 3, 4))) static int set_error(char *err, size_t err_len,
                                                           const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || err_len == 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return -1;
}

/* Header value by name, or NULL when absent or empty. Borrowed from the request. */
static const char *req_header(const struct verify_request *req, const char *name)
{
    const char *v;

    if (req->header == NULL)
        return NULL;
    v = req->header(req->ctx, name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* Query parameter by name, or NULL when absent or empty. Borrowed from the request. */
static const char *req_query(const struct verify_request *req, const char *name)
{
    const char *v;

    if (req->query == NULL)
        return NULL;
    v = req->query(req->ctx, name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* Parses text[len] as a non-negative decimal integer that fits int64_t: digits only,
 * no sign, no whitespace. Returns 0 or -1. */
static int parse_decimal(const char *text, size_t len, int64_t *out)
{
    char buf[24];
    char *end = NULL;
    long long v;

    if (len == 0 || len >= sizeof buf)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (text[i] < '0' || text[i] > '9')
            return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    errno = 0;
    v = strtoll(buf, &end, 10);
    if (errno != 0 || end != buf + len || v < 0)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* Parses exactly n digits at p into *out. Returns 0 or -1. */
static int parse_fixed(const char *p, size_t n, int *out)
{
    int v = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era;
    int64_t yoe;
    int64_t doy;
    int64_t doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm). Returns 0 or -1. */
static int parse_rfc3339(const char *s, int64_t *out)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int year, mon, day, hour, min, sec;
    int off_h = 0, off_m = 0, sign = 0;
    const char *p = s;
    int dim;

    if (strlen(s) < 20)
        return -1;
    if (parse_fixed(p, 4, &year) || p[4] != '-' || parse_fixed(p + 5, 2, &mon) || p[7] != '-' ||
        parse_fixed(p + 8, 2, &day))
        return -1;
    if (p[10] != 'T' && p[10] != 't' && p[10] != ' ')
        return -1;
    if (parse_fixed(p + 11, 2, &hour) || p[13] != ':' || parse_fixed(p + 14, 2, &min) ||
        p[16] != ':' || parse_fixed(p + 17, 2, &sec))
        return -1;
    p += 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            p++; /* the fraction is dropped: whole seconds suffice for a tolerance */
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        if (parse_fixed(p + 1, 2, &off_h) || p[3] != ':' || parse_fixed(p + 4, 2, &off_m))
            return -1;
        p += 6;
    } else {
        return -1;
    }
    if (*p != '\0')
        return -1;

    if (mon < 1 || mon > 12 || hour > 23 || min > 59 || sec > 60 || off_h > 23 || off_m > 59)
        return -1;
    dim = mdays[mon - 1] + (mon == 2 && is_leap(year));
    if (day < 1 || day > dim)
        return -1;

    *out = days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec -
           (int64_t)sign * (off_h * 3600 + off_m * 60);
    return 0;
}

int verify_parse_timestamp(const char *text, int64_t *out)
{
    int64_t v;
    size_t len;

    if (text == NULL || out == NULL)
        return -1;
    len = strlen(text);
    if (parse_decimal(text, len, &v) == 0) {
        *out = v > VERIFY_MS_THRESHOLD ? v / 1000 : v;
        return 0;
    }
    return parse_rfc3339(text, out);
}

/* Checks ts against now +/- tol; on failure fills res with VERIFY_STALE. */
static enum verify_status check_window(struct verify_result *res, int64_t ts, int64_t now,
                                       int64_t tol)
{
    int64_t age;

    if (__builtin_sub_overflow(now, ts, &age))
        return set_result(res, VERIFY_STALE, "timestamp exceeds tolerance %" PRId64 " s", tol);
    if (age > tol)
        return set_result(res, VERIFY_STALE,
                          "timestamp %" PRId64 " s old exceeds tolerance %" PRId64 " s", age, tol);
    if (age < 0 && (age == INT64_MIN || -age > tol))
        return set_result(res, VERIFY_STALE,
                          "timestamp %" PRId64 " s in the future exceeds tolerance %" PRId64 " s",
                          age == INT64_MIN ? INT64_MAX : -age, tol);
    return VERIFY_OK;
}

/* Next piece of tpl at *pos; advances *pos. Returns false at the end of the template. */
static bool tpl_next(const char *tpl, size_t *pos, struct tpl_piece *piece)
{
    const char *p = tpl + *pos;
    const char *close;
    size_t n;

    if (*p == '\0')
        return false;
    if (*p != '{') {
        const char *brace = strchr(p, '{');

        n = brace ? (size_t)(brace - p) : strlen(p);
        piece->kind = TPL_LITERAL;
        piece->text = p;
        piece->len = n;
        *pos += n;
        return true;
    }
    close = strchr(p, '}');
    if (close == NULL) {
        piece->kind = TPL_OPEN;
        piece->text = p;
        piece->len = strlen(p);
        *pos += piece->len;
        return true;
    }
    n = (size_t)(close - p) + 1; /* "{...}" */
    piece->text = p + 1;
    piece->len = n - 2;
    if (piece->len == 4 && memcmp(piece->text, "body", 4) == 0) {
        piece->kind = TPL_BODY;
    } else if (piece->len == 6 && memcmp(piece->text, "method", 6) == 0) {
        piece->kind = TPL_METHOD;
    } else if (piece->len == 3 && memcmp(piece->text, "url", 3) == 0) {
        piece->kind = TPL_URL;
    } else if (piece->len > 7 && memcmp(piece->text, "header:", 7) == 0 &&
               piece->len - 7 < VERIFY_MAX_HEADER_NAME &&
               memchr(piece->text + 7, '{', piece->len - 7) == NULL) {
        piece->kind = TPL_HEADER;
        piece->text += 7;
        piece->len -= 7;
    } else {
        piece->kind = TPL_BAD;
    }
    *pos += n;
    return true;
}

/* Rejects a template with an unknown or unterminated placeholder. Returns 0 or -1. */
static int check_template(const char *tpl, char *err, size_t err_len)
{
    struct tpl_piece piece;
    size_t pos = 0;

    while (tpl_next(tpl, &pos, &piece)) {
        if (piece.kind == TPL_OPEN)
            return set_error(err, err_len, "verify.signed: unterminated placeholder");
        if (piece.kind != TPL_BAD)
            continue;
        return set_error(err, err_len,
                         "verify.signed: unknown placeholder {%.*s} (use {body}, {method}, "
                         "{url} or {header:NAME})",
                         (int)(piece.len > 40 ? 40 : piece.len), piece.text);
    }
    return 0;
}

/* Name of secret i for messages: the user wrote "secret" or "secrets": [...]. */
static void secret_field(const struct verify_config *cfg, size_t i, char *buf, size_t len)
{
    if (cfg->nsecrets == 1)
        snprintf(buf, len, "verify.secret");
    else
        snprintf(buf, len, "verify.secrets[%zu]", i);
}

/* Replaces every whsec_ secret by its decoded key; all or nothing. Returns 0 or -1. */
static int decode_whsec_secrets(struct verify_config *cfg, char *err, size_t err_len)
{
    unsigned char **keys = NULL;
    size_t *lens = NULL;
    char field[48];
    size_t i;

    keys = calloc(cfg->nsecrets, sizeof *keys);
    lens = calloc(cfg->nsecrets, sizeof *lens);
    if (keys == NULL || lens == NULL) {
        set_error(err, err_len, "verify: out of memory");
        goto fail;
    }
    for (i = 0; i < cfg->nsecrets; i++) {
        const char *text = (const char *)cfg->secrets[i].bytes;
        size_t len = cfg->secrets[i].len;
        size_t plen = strlen(WHSEC_PREFIX);
        long n;

        if (len >= plen && memcmp(text, WHSEC_PREFIX, plen) == 0) {
            text += plen;
            len -= plen;
        }
        /* Sized by the undecoded text so the fail path knows how much to wipe. */
        keys[i] = malloc(cfg->secrets[i].len + 1);
        if (keys[i] == NULL) {
            set_error(err, err_len, "verify: out of memory");
            goto fail;
        }
        n = digest_base64_decode(text, len, keys[i], cfg->secrets[i].len + 1);
        if (n <= 0) {
            secret_field(cfg, i, field, sizeof field);
            set_error(err, err_len, "%s is not a valid whsec_ base64 secret", field);
            goto fail;
        }
        lens[i] = (size_t)n;
    }
    for (i = 0; i < cfg->nsecrets; i++) {
        OPENSSL_cleanse(cfg->secrets[i].bytes, cfg->secrets[i].len);
        free(cfg->secrets[i].bytes);
        cfg->secrets[i].bytes = keys[i];
        cfg->secrets[i].len = lens[i];
    }
    free(keys);
    free(lens);
    return 0;

fail:
    for (i = 0; keys != NULL && i < cfg->nsecrets; i++) {
        if (keys[i] != NULL) {
            OPENSSL_cleanse(keys[i], cfg->secrets[i].len + 1);
            free(keys[i]);
        }
    }
    free(keys);
    free(lens);
    return -1;
}

int verify_prepare(struct verify_config *cfg, char *err, size_t err_len)
{
    const char *name;

    if (err != NULL && err_len > 0)
        err[0] = '\0';
    if (cfg == NULL)
        return set_error(err, err_len, "verify: no configuration");
    name = verify_scheme_name(cfg->scheme);

    if (cfg->scheme == VERIFY_SCHEME_NONE) {
        if (!cfg->insecure)
            return set_error(err, err_len,
                             "verify.insecure: scheme none requires \"insecure\": true");
        return 0;
    }
    if (cfg->scheme != VERIFY_SCHEME_STANDARD_WEBHOOKS && cfg->scheme != VERIFY_SCHEME_HMAC &&
        cfg->scheme != VERIFY_SCHEME_TOKEN && cfg->scheme != VERIFY_SCHEME_BASIC &&
        cfg->scheme != VERIFY_SCHEME_HUBSPOT_V1 && cfg->scheme != VERIFY_SCHEME_HUBSPOT_V2 &&
        cfg->scheme != VERIFY_SCHEME_HUBSPOT_V3)
        return set_error(err, err_len, "verify.scheme: unknown scheme");

    if (cfg->nsecrets == 0 || cfg->secrets == NULL)
        return set_error(err, err_len, "verify.secret is required for scheme %s", name);
    for (size_t i = 0; i < cfg->nsecrets; i++) {
        if (cfg->secrets[i].bytes == NULL || cfg->secrets[i].len == 0) {
            char field[48];

            secret_field(cfg, i, field, sizeof field);
            return set_error(err, err_len, "%s is empty", field);
        }
    }
    if (cfg->tolerance_s < 0)
        return set_error(err, err_len, "verify.tolerance_s must not be negative");
    if (cfg->tolerance_s == 0)
        cfg->tolerance_s = VERIFY_DEFAULT_TOLERANCE_S;

    switch (cfg->scheme) {
    case VERIFY_SCHEME_STANDARD_WEBHOOKS:
        return decode_whsec_secrets(cfg, err, err_len);
    case VERIFY_SCHEME_HMAC:
        if (cfg->header == NULL || cfg->header[0] == '\0')
            return set_error(err, err_len, "verify.header is required for scheme hmac");
        if (digest_len(cfg->algorithm) == 0)
            return set_error(err, err_len, "verify.algorithm: unknown algorithm");
        if (cfg->encoding != VERIFY_ENC_HEX && cfg->encoding != VERIFY_ENC_BASE64)
            return set_error(err, err_len, "verify.encoding: unknown encoding");
        if (cfg->signed_template != NULL && cfg->signed_template[0] == '\0')
            return set_error(err, err_len, "verify.signed must not be empty");
        if (cfg->signed_template != NULL && check_template(cfg->signed_template, err, err_len) != 0)
            return -1;
        if (cfg->timestamp_header != NULL && cfg->timestamp_header[0] == '\0')
            return set_error(err, err_len, "verify.timestamp_header must not be empty");
        return 0;
    case VERIFY_SCHEME_TOKEN:
        if ((cfg->header == NULL || cfg->header[0] == '\0') &&
            (cfg->query == NULL || cfg->query[0] == '\0'))
            return set_error(err, err_len,
                             "verify.header or verify.query is required for scheme token");
        return 0;
    case VERIFY_SCHEME_BASIC:
        if (cfg->username == NULL || cfg->username[0] == '\0')
            return set_error(err, err_len, "verify.username is required for scheme basic");
        if (strchr(cfg->username, ':') != NULL)
            return set_error(err, err_len, "verify.username must not contain ':'");
        for (size_t i = 0; i < cfg->nsecrets; i++) {
            if (memchr(cfg->secrets[i].bytes, '\0', cfg->secrets[i].len) != NULL) {
                char field[48];

                secret_field(cfg, i, field, sizeof field);
                return set_error(err, err_len, "%s must not contain a NUL byte", field);
            }
        }
        return 0;
    case VERIFY_SCHEME_HUBSPOT_V1:
    case VERIFY_SCHEME_HUBSPOT_V2:
    case VERIFY_SCHEME_HUBSPOT_V3:
    case VERIFY_SCHEME_NONE:
        break;
    }
    return 0;
}

/* Standard Webhooks: HMAC-SHA256 over "id.timestamp.body", v1 signatures, tolerance. */
static enum verify_status verify_standard(const struct verify_config *cfg,
                                          const struct verify_request *req,
                                          struct verify_result *res)
{
    const struct sw_names *names = &sw_webhook_names;
    const char *id, *ts_text, *sig;
    size_t id_len, ts_len, total, n_v1 = 0, n_bad = 0;
    unsigned char *content = NULL;
    unsigned char mac[DIGEST_MAX_LEN];
    int64_t ts;
    bool matched = false;

    /* The svix- names only when no webhook- header is present but some svix- one is, so
     * a request with neither is reported by the standard names. */
    if (req_header(req, sw_webhook_names.id) == NULL &&
        req_header(req, sw_webhook_names.timestamp) == NULL &&
        req_header(req, sw_webhook_names.signature) == NULL &&
        (req_header(req, sw_svix_names.id) != NULL ||
         req_header(req, sw_svix_names.timestamp) != NULL ||
         req_header(req, sw_svix_names.signature) != NULL))
        names = &sw_svix_names;
    id = req_header(req, names->id);
    ts_text = req_header(req, names->timestamp);
    sig = req_header(req, names->signature);
    if (id == NULL)
        return set_result(res, VERIFY_MISSING, "missing header %s", names->id);
    if (ts_text == NULL)
        return set_result(res, VERIFY_MISSING, "missing header %s", names->timestamp);
    if (sig == NULL)
        return set_result(res, VERIFY_MISSING, "missing header %s", names->signature);

    ts_len = strlen(ts_text);
    if (parse_decimal(ts_text, ts_len, &ts) != 0)
        return set_result(res, VERIFY_MALFORMED, "bad timestamp in %s", names->timestamp);
    if (check_window(res, ts, req->now, cfg->tolerance_s) != VERIFY_OK)
        return res->status;

    id_len = strlen(id);
    if (req->body_len > SIZE_MAX - id_len - ts_len - 2)
        return set_result(res, VERIFY_MALFORMED, "request too large to verify");
    total = id_len + 1 + ts_len + 1 + req->body_len;
    content = malloc(total);
    if (content == NULL)
        return set_result(res, VERIFY_MISMATCH, "out of memory while verifying");
    memcpy(content, id, id_len);
    content[id_len] = '.';
    memcpy(content + id_len + 1, ts_text, ts_len);
    content[id_len + 1 + ts_len] = '.';
    if (req->body_len > 0)
        memcpy(content + id_len + ts_len + 2, req->body, req->body_len);

    for (size_t s = 0; s < cfg->nsecrets && !matched; s++) {
        const char *p = sig;

        if (digest_hmac(DIGEST_SHA256, cfg->secrets[s].bytes, cfg->secrets[s].len, content, total,
                        mac) != 0)
            continue;
        n_v1 = n_bad = 0;
        while (*p != '\0' && !matched) {
            const char *end, *comma;
            unsigned char got[SIG_DECODE_CAP];
            long got_len;

            while (*p == ' ')
                p++;
            end = strchr(p, ' ');
            if (end == NULL)
                end = p + strlen(p);
            comma = memchr(p, ',', (size_t)(end - p));
            /* Only "v1" is HMAC-SHA256; "v1a" and later tags belong to other schemes. */
            if (comma != NULL && comma - p == 2 && memcmp(p, "v1", 2) == 0) {
                size_t b64_len = (size_t)(end - comma - 1);

                n_v1++;
                got_len = digest_base64_decode(comma + 1, b64_len, got, sizeof got);
                if (got_len < 0 && b64_len <= SIG_B64_MAX)
                    n_bad++; /* longer text is a wrong length, not bad base64 */
                if (got_len >= 0 && digest_equal_str(got, (size_t)got_len, mac, 32))
                    matched = true;
            }
            p = end;
        }
    }
    OPENSSL_cleanse(mac, sizeof mac);
    free(content);

    if (matched)
        return set_result(res, VERIFY_OK, "signature matches");
    if (n_v1 == 0)
        return set_result(res, VERIFY_MISMATCH, "no v1 signature in %s", names->signature);
    if (n_bad == n_v1)
        return set_result(res, VERIFY_MALFORMED, "bad base64 in %s", names->signature);
    return set_result(res, VERIFY_MISMATCH, "signature does not match");
}

/* Length of the signed content of tpl for req, or sets res (missing header / too large)
 * and returns false. */
static bool hmac_content_len(const char *tpl, const struct verify_request *req, const char *url,
                             struct verify_result *res, size_t *out)
{
    struct tpl_piece piece;
    size_t pos = 0, total = 0;

    while (tpl_next(tpl, &pos, &piece)) {
        size_t add = 0;

        switch (piece.kind) {
        case TPL_LITERAL:
            add = piece.len;
            break;
        case TPL_BODY:
            add = req->body_len;
            break;
        case TPL_METHOD:
            add = req->method ? strlen(req->method) : 0;
            break;
        case TPL_URL:
            add = strlen(url);
            break;
        case TPL_HEADER: {
            char name[VERIFY_MAX_HEADER_NAME];
            const char *v;

            memcpy(name, piece.text, piece.len);
            name[piece.len] = '\0';
            v = req_header(req, name);
            if (v == NULL) {
                set_result(res, VERIFY_MISSING, "missing header %s", name);
                return false;
            }
            add = strlen(v);
            break;
        }
        case TPL_BAD:
        case TPL_OPEN:
            set_result(res, VERIFY_MALFORMED, "bad signed-content template");
            return false;
        }
        if (add > SIZE_MAX - total) {
            set_result(res, VERIFY_MALFORMED, "request too large to verify");
            return false;
        }
        total += add;
    }
    *out = total;
    return true;
}

/* Writes the signed content of tpl for req into out[cap] (hmac_content_len bytes); never
 * past cap even if a header lookup answers differently the second time. */
static void hmac_content_fill(const char *tpl, const struct verify_request *req, const char *url,
                              unsigned char *out, size_t cap)
{
    struct tpl_piece piece;
    size_t pos = 0, o = 0;

    while (tpl_next(tpl, &pos, &piece)) {
        const void *src = NULL;
        size_t n = 0;
        char name[VERIFY_MAX_HEADER_NAME];

        switch (piece.kind) {
        case TPL_LITERAL:
            src = piece.text;
            n = piece.len;
            break;
        case TPL_BODY:
            src = req->body;
            n = req->body_len;
            break;
        case TPL_METHOD:
            src = req->method;
            n = req->method ? strlen(req->method) : 0;
            break;
        case TPL_URL:
            src = url;
            n = strlen(url);
            break;
        case TPL_HEADER:
            memcpy(name, piece.text, piece.len);
            name[piece.len] = '\0';
            src = req_header(req, name);
            n = src ? strlen(src) : 0;
            break;
        case TPL_BAD:
        case TPL_OPEN:
            break;
        }
        if (n > cap - o)
            n = cap - o;
        if (n > 0)
            memcpy(out + o, src, n);
        o += n;
    }
}

/* Generic HMAC: signature header (+prefix, hex/base64) over a template of the request. */
static enum verify_status verify_hmac(const struct verify_config *cfg,
                                      const struct verify_request *req, struct verify_result *res)
{
    const char *tpl = cfg->signed_template ? cfg->signed_template : "{body}";
    const char *value, *text;
    size_t text_len, content_len = 0, mac_len = digest_len(cfg->algorithm);
    unsigned char got[SIG_DECODE_CAP];
    unsigned char mac[DIGEST_MAX_LEN];
    unsigned char *content = NULL;
    char *url = NULL;
    long got_len;
    bool matched = false;

    value = req_header(req, cfg->header);
    if (value == NULL)
        return set_result(res, VERIFY_MISSING, "missing header %s", cfg->header);
    text = value;
    if (cfg->prefix != NULL && cfg->prefix[0] != '\0') {
        size_t plen = strlen(cfg->prefix);

        if (strncmp(text, cfg->prefix, plen) != 0)
            return set_result(res, VERIFY_MALFORMED, "header %s lacks prefix %s", cfg->header,
                              cfg->prefix);
        text += plen;
    }
    while (*text == ' ' || *text == '\t')
        text++;
    text_len = strlen(text);
    while (text_len > 0 && (text[text_len - 1] == ' ' || text[text_len - 1] == '\t'))
        text_len--;

    if (cfg->timestamp_header != NULL) {
        const char *ts_text = req_header(req, cfg->timestamp_header);
        int64_t ts;

        if (ts_text == NULL)
            return set_result(res, VERIFY_MISSING, "missing header %s", cfg->timestamp_header);
        if (verify_parse_timestamp(ts_text, &ts) != 0)
            return set_result(res, VERIFY_MALFORMED, "bad timestamp in %s", cfg->timestamp_header);
        if (check_window(res, ts, req->now, cfg->tolerance_s) != VERIFY_OK)
            return res->status;
    }

    /* A signature longer than any digest cannot match; decoding it is pointless. */
    if (cfg->encoding == VERIFY_ENC_HEX) {
        if (text_len > 2 * DIGEST_MAX_LEN)
            return set_result(res, VERIFY_MISMATCH, "signature does not match");
        got_len = digest_hex_decode(text, text_len, got, sizeof got);
        if (got_len < 0)
            return set_result(res, VERIFY_MALFORMED, "bad hex in %s", cfg->header);
    } else {
        if (text_len > SIG_B64_MAX)
            return set_result(res, VERIFY_MISMATCH, "signature does not match");
        got_len = digest_base64_decode(text, text_len, got, sizeof got);
        if (got_len < 0)
            return set_result(res, VERIFY_MALFORMED, "bad base64 in %s", cfg->header);
    }

    /* The URL is built only when the template signs it. */
    if (strstr(tpl, "{url}") != NULL) {
        url = verify_signed_url(cfg, req);
        if (url == NULL)
            return set_result(res, VERIFY_MISMATCH, "out of memory while verifying");
    }
    if (!hmac_content_len(tpl, req, url ? url : "", res, &content_len)) {
        free(url);
        return res->status;
    }
    /* malloc(0) may return NULL; one spare byte keeps the empty case uniform. */
    content = malloc(content_len + 1);
    if (content == NULL) {
        free(url);
        return set_result(res, VERIFY_MISMATCH, "out of memory while verifying");
    }
    hmac_content_fill(tpl, req, url ? url : "", content, content_len);
    free(url);

    for (size_t s = 0; s < cfg->nsecrets && !matched; s++) {
        if (digest_hmac(cfg->algorithm, cfg->secrets[s].bytes, cfg->secrets[s].len, content,
                        content_len, mac) != 0)
            continue;
        if (digest_equal_str(got, (size_t)got_len, mac, mac_len))
            matched = true;
    }
    OPENSSL_cleanse(mac, sizeof mac);
    free(content);
    if (matched)
        return set_result(res, VERIFY_OK, "signature matches");
    return set_result(res, VERIFY_MISMATCH, "signature does not match");
}

/* True when value[len] equals one of the secrets; every secret is compared. */
static bool matches_any_secret(const struct verify_config *cfg, const void *value, size_t len)
{
    bool any = false;

    for (size_t s = 0; s < cfg->nsecrets; s++)
        any |= digest_equal_str(value, len, cfg->secrets[s].bytes, cfg->secrets[s].len);
    return any;
}

/* Shared token from a header (optional prefix such as "Bearer ") or a query parameter. */
static enum verify_status verify_token(const struct verify_config *cfg,
                                       const struct verify_request *req, struct verify_result *res)
{
    bool use_header = cfg->header != NULL && cfg->header[0] != '\0';
    bool use_query = cfg->query != NULL && cfg->query[0] != '\0';
    const char *token = NULL;

    if (use_header) {
        token = req_header(req, cfg->header);
        if (token != NULL && cfg->prefix != NULL && cfg->prefix[0] != '\0') {
            size_t plen = strlen(cfg->prefix);

            /* Authentication scheme names are case-insensitive (RFC 9110 11.1). */
            if (strncasecmp(token, cfg->prefix, plen) != 0)
                return set_result(res, VERIFY_MALFORMED, "header %s lacks prefix %s", cfg->header,
                                  cfg->prefix);
            token += plen;
        }
    }
    if (token == NULL && use_query)
        token = req_query(req, cfg->query);
    if (token == NULL) {
        if (use_header && use_query)
            return set_result(res, VERIFY_MISSING, "missing header %s or query parameter %s",
                              cfg->header, cfg->query);
        if (use_header)
            return set_result(res, VERIFY_MISSING, "missing header %s", cfg->header);
        return set_result(res, VERIFY_MISSING, "missing query parameter %s", cfg->query);
    }
    if (matches_any_secret(cfg, token, strlen(token)))
        return set_result(res, VERIFY_OK, "token matches");
    return set_result(res, VERIFY_MISMATCH, "token does not match");
}

/* HTTP Basic: "Authorization: Basic base64(user:pass)". */
static enum verify_status verify_basic(const struct verify_config *cfg,
                                       const struct verify_request *req, struct verify_result *res)
{
    const char *value = req_header(req, "Authorization");
    const char *b64;
    const unsigned char *colon;
    unsigned char *cred = NULL;
    size_t b64_len, user_len;
    long n;
    bool user_ok, pass_ok;
    enum verify_status st;

    if (value == NULL)
        return set_result(res, VERIFY_MISSING, "missing header Authorization");
    if (strncasecmp(value, "Basic ", 6) != 0)
        return set_result(res, VERIFY_MALFORMED, "Authorization is not Basic");
    b64 = value + 6;
    while (*b64 == ' ')
        b64++;
    b64_len = strlen(b64);
    while (b64_len > 0 && b64[b64_len - 1] == ' ')
        b64_len--;

    cred = malloc(b64_len + 1);
    if (cred == NULL)
        return set_result(res, VERIFY_MISMATCH, "out of memory while verifying");
    n = digest_base64_decode(b64, b64_len, cred, b64_len + 1);
    if (n < 0) {
        st = set_result(res, VERIFY_MALFORMED, "bad base64 in Authorization");
        goto out;
    }
    colon = memchr(cred, ':', (size_t)n);
    if (colon == NULL) {
        st = set_result(res, VERIFY_MALFORMED, "Basic credentials lack ':'");
        goto out;
    }
    user_len = (size_t)(colon - cred);
    user_ok = digest_equal_str(cred, user_len, cfg->username, strlen(cfg->username));
    pass_ok = matches_any_secret(cfg, colon + 1, (size_t)n - user_len - 1);
    if (user_ok & pass_ok)
        st = set_result(res, VERIFY_OK, "credentials match");
    else
        st = set_result(res, VERIFY_MISMATCH, "credentials do not match");

out:
    OPENSSL_cleanse(cred, b64_len + 1);
    free(cred);
    return st;
}

/* ---------- the signed URL and HubSpot's schemes ---------- */

/* First entry of a comma-separated forwarded header, blanks trimmed; NULL when empty. */
static const char *first_entry(const char *value, size_t *len)
{
    size_t n;

    if (value == NULL)
        return NULL;
    while (*value == ' ' || *value == '\t')
        value++;
    n = strcspn(value, ",");
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    *len = n;
    return n > 0 ? value : NULL;
}

/* A host[:port] as a proxy forwards it: letters, digits, '.', '-', '_', ':', '[', ']'. */
static bool forwarded_host_ok(const char *host, size_t len)
{
    if (len == 0 || len > 255)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)host[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']'))
            return false;
    }
    return true;
}

char *verify_signed_url(const struct verify_config *cfg, const struct verify_request *req)
{
    const char *url = req->url ? req->url : "";
    const char *sep = strstr(url, "://");
    const char *scheme, *host, *target, *fwd;
    size_t scheme_len, host_len, target_len, n = 0;
    char *out;

    if (!cfg->trust_forwarded || sep == NULL)
        return strdup(url);
    scheme = url;
    scheme_len = (size_t)(sep - url);
    host = sep + 3;
    host_len = strcspn(host, "/?");
    target = host + host_len;
    target_len = strlen(target);

    fwd = first_entry(req_header(req, "X-Forwarded-Proto"), &n);
    if (fwd != NULL && n == 5 && strncasecmp(fwd, "https", 5) == 0) {
        scheme = "https";
        scheme_len = 5;
    } else if (fwd != NULL && n == 4 && strncasecmp(fwd, "http", 4) == 0) {
        scheme = "http";
        scheme_len = 4;
    }
    fwd = first_entry(req_header(req, "X-Forwarded-Host"), &n);
    if (fwd != NULL && forwarded_host_ok(fwd, n)) {
        host = fwd;
        host_len = n;
    }
    out = malloc(scheme_len + 3 + host_len + target_len + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, scheme, scheme_len);
    memcpy(out + scheme_len, "://", 3);
    memcpy(out + scheme_len + 3, host, host_len);
    memcpy(out + scheme_len + 3 + host_len, target, target_len + 1);
    return out;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *verify_hubspot_decode_uri(const char *uri)
{
    static const char decoded[] = ":/?@!$'()*,;";
    size_t n = strlen(uri), o = 0;
    char *out = malloc(n + 1);

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (uri[i] == '%' && i + 2 < n) {
            int hi = hex_value(uri[i + 1]), lo = hex_value(uri[i + 2]);

            if (hi >= 0 && lo >= 0 && memchr(decoded, hi * 16 + lo, sizeof decoded - 1) != NULL) {
                out[o++] = (char)(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        out[o++] = uri[i];
    }
    out[o] = '\0';
    return out;
}

/* HubSpot v3: base64 HMAC-SHA256 of method + decoded URI + body + timestamp (milliseconds),
 * timestamp within tolerance_s (HubSpot: 5 minutes). */
static enum verify_status verify_hubspot_v3(const struct verify_config *cfg,
                                            const struct verify_request *req,
                                            struct verify_result *res)
{
    static const char sig_name[] = "X-HubSpot-Signature-v3";
    static const char ts_name[] = "X-HubSpot-Request-Timestamp";
    const char *sig = req_header(req, sig_name);
    const char *ts_text = req_header(req, ts_name);
    const char *method = req->method ? req->method : "";
    unsigned char got[SIG_DECODE_CAP];
    unsigned char mac[DIGEST_MAX_LEN];
    unsigned char *content = NULL;
    char *url = NULL, *uri = NULL;
    size_t sig_len, m_len, u_len, t_len, total;
    long got_len;
    int64_t ts;
    bool matched = false;

    if (sig == NULL)
        return set_result(res, VERIFY_MISSING, "missing header %s", sig_name);
    if (ts_text == NULL)
        return set_result(res, VERIFY_MISSING, "missing header %s", ts_name);
    if (verify_parse_timestamp(ts_text, &ts) != 0)
        return set_result(res, VERIFY_MALFORMED, "bad timestamp in %s", ts_name);
    if (check_window(res, ts, req->now, cfg->tolerance_s) != VERIFY_OK)
        return res->status;
    sig_len = strlen(sig);
    while (sig_len > 0 && (sig[sig_len - 1] == ' ' || sig[sig_len - 1] == '\t'))
        sig_len--;
    if (sig_len > SIG_B64_MAX)
        return set_result(res, VERIFY_MISMATCH, "signature does not match");
    got_len = digest_base64_decode(sig, sig_len, got, sizeof got);
    if (got_len < 0)
        return set_result(res, VERIFY_MALFORMED, "bad base64 in %s", sig_name);

    url = verify_signed_url(cfg, req);
    uri = url ? verify_hubspot_decode_uri(url) : NULL;
    free(url);
    if (uri == NULL)
        return set_result(res, VERIFY_MISMATCH, "out of memory while verifying");
    m_len = strlen(method);
    u_len = strlen(uri);
    t_len = strlen(ts_text);
    if (req->body_len > SIZE_MAX - m_len - u_len - t_len - 1) {
        free(uri);
        return set_result(res, VERIFY_MALFORMED, "request too large to verify");
    }
    total = m_len + u_len + req->body_len + t_len;
    content = malloc(total + 1);
    if (content == NULL) {
        free(uri);
        return set_result(res, VERIFY_MISMATCH, "out of memory while verifying");
    }
    memcpy(content, method, m_len);
    memcpy(content + m_len, uri, u_len);
    if (req->body_len > 0)
        memcpy(content + m_len + u_len, req->body, req->body_len);
    memcpy(content + m_len + u_len + req->body_len, ts_text, t_len);
    free(uri);

    for (size_t s = 0; s < cfg->nsecrets && !matched; s++) {
        if (digest_hmac(DIGEST_SHA256, cfg->secrets[s].bytes, cfg->secrets[s].len, content, total,
                        mac) != 0)
            continue;
        matched = digest_equal_str(got, (size_t)got_len, mac, 32);
    }
    OPENSSL_cleanse(mac, sizeof mac);
    free(content);
    if (matched)
        return set_result(res, VERIFY_OK, "signature matches");
    return set_result(res, VERIFY_MISMATCH, "signature does not match");
}

/* HubSpot v1 / v2: hex SHA-256 (a plain hash, not an HMAC) of client secret + body (v1) or
 * client secret + method + URI + body (v2), in X-HubSpot-Signature. */
static enum verify_status verify_hubspot_legacy(const struct verify_config *cfg,
                                                const struct verify_request *req, bool v2,
                                                struct verify_result *res)
{
    static const char sig_name[] = "X-HubSpot-Signature";
    const char *want = v2 ? "v2" : "v1";
    const char *sig = req_header(req, sig_name);
    const char *version = req_header(req, "X-HubSpot-Signature-Version");
    const char *method = v2 && req->method ? req->method : "";
    unsigned char got[SIG_DECODE_CAP];
    unsigned char hash[32];
    unsigned char *content = NULL;
    char *url = NULL;
    size_t sig_len, m_len, u_len, max_secret = 0, cap;
    long got_len;
    bool matched = false;

    if (sig == NULL)
        return set_result(res, VERIFY_MISSING, "missing header %s", sig_name);
    /* HubSpot names the version it signed with; a different one can never match. */
    if (version != NULL && strcasecmp(version, want) != 0)
        return set_result(res, VERIFY_MISMATCH,
                          "X-HubSpot-Signature-Version is %.8s, the source expects %s", version,
                          want);
    while (*sig == ' ' || *sig == '\t')
        sig++;
    sig_len = strlen(sig);
    while (sig_len > 0 && (sig[sig_len - 1] == ' ' || sig[sig_len - 1] == '\t'))
        sig_len--;
    if (sig_len > 2 * DIGEST_MAX_LEN)
        return set_result(res, VERIFY_MISMATCH, "signature does not match");
    got_len = digest_hex_decode(sig, sig_len, got, sizeof got);
    if (got_len < 0)
        return set_result(res, VERIFY_MALFORMED, "bad hex in %s", sig_name);

    if (v2) {
        url = verify_signed_url(cfg, req);
        if (url == NULL)
            return set_result(res, VERIFY_MISMATCH, "out of memory while verifying");
    }
    m_len = strlen(method);
    u_len = url ? strlen(url) : 0;
    for (size_t s = 0; s < cfg->nsecrets; s++)
        if (cfg->secrets[s].len > max_secret)
            max_secret = cfg->secrets[s].len;
    if (req->body_len > SIZE_MAX - max_secret - m_len - u_len - 1) {
        free(url);
        return set_result(res, VERIFY_MALFORMED, "request too large to verify");
    }
    cap = max_secret + m_len + u_len + req->body_len;
    content = malloc(cap + 1);
    if (content == NULL) {
        free(url);
        return set_result(res, VERIFY_MISMATCH, "out of memory while verifying");
    }
    for (size_t s = 0; s < cfg->nsecrets && !matched; s++) {
        size_t k = cfg->secrets[s].len, o = k;

        memcpy(content, cfg->secrets[s].bytes, k);
        memcpy(content + o, method, m_len);
        o += m_len;
        if (u_len > 0)
            memcpy(content + o, url, u_len);
        o += u_len;
        if (req->body_len > 0)
            memcpy(content + o, req->body, req->body_len);
        o += req->body_len;
        digest_sha256(content, o, hash);
        matched = digest_equal_str(got, (size_t)got_len, hash, sizeof hash);
    }
    /* The buffer held the client secret. */
    OPENSSL_cleanse(content, cap + 1);
    OPENSSL_cleanse(hash, sizeof hash);
    free(content);
    free(url);
    if (matched)
        return set_result(res, VERIFY_OK, "signature matches");
    return set_result(res, VERIFY_MISMATCH, "signature does not match");
}

enum verify_status verify_request(const struct verify_config *cfg, const struct verify_request *req,
                                  struct verify_result *res)
{
    res->status = VERIFY_OK;
    res->reason[0] = '\0';
    switch (cfg->scheme) {
    case VERIFY_SCHEME_NONE:
        if (!cfg->insecure)
            return set_result(res, VERIFY_MISMATCH, "scheme none requires \"insecure\": true");
        return set_result(res, VERIFY_OK, "not verified (insecure)");
    case VERIFY_SCHEME_STANDARD_WEBHOOKS:
        return verify_standard(cfg, req, res);
    case VERIFY_SCHEME_HMAC:
        return verify_hmac(cfg, req, res);
    case VERIFY_SCHEME_TOKEN:
        return verify_token(cfg, req, res);
    case VERIFY_SCHEME_BASIC:
        return verify_basic(cfg, req, res);
    case VERIFY_SCHEME_HUBSPOT_V1:
        return verify_hubspot_legacy(cfg, req, false, res);
    case VERIFY_SCHEME_HUBSPOT_V2:
        return verify_hubspot_legacy(cfg, req, true, res);
    case VERIFY_SCHEME_HUBSPOT_V3:
        return verify_hubspot_v3(cfg, req, res);
    }
    return set_result(res, VERIFY_MISMATCH, "unknown verification scheme");
}

const char *verify_scheme_name(enum verify_scheme scheme)
{
    switch (scheme) {
    case VERIFY_SCHEME_NONE:
        return "none";
    case VERIFY_SCHEME_STANDARD_WEBHOOKS:
        return "standard-webhooks";
    case VERIFY_SCHEME_HMAC:
        return "hmac";
    case VERIFY_SCHEME_TOKEN:
        return "token";
    case VERIFY_SCHEME_BASIC:
        return "basic";
    case VERIFY_SCHEME_HUBSPOT_V1:
        return "hubspot-v1";
    case VERIFY_SCHEME_HUBSPOT_V2:
        return "hubspot-v2";
    case VERIFY_SCHEME_HUBSPOT_V3:
        return "hubspot-v3";
    }
    return "unknown";
}

void verify_config_free(struct verify_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; cfg->secrets != NULL && i < cfg->nsecrets; i++) {
        if (cfg->secrets[i].bytes != NULL) {
            OPENSSL_cleanse(cfg->secrets[i].bytes, cfg->secrets[i].len);
            free(cfg->secrets[i].bytes);
        }
    }
    free(cfg->secrets);
    free(cfg->header);
    free(cfg->prefix);
    free(cfg->signed_template);
    free(cfg->timestamp_header);
    free(cfg->query);
    free(cfg->username);
    cfg->secrets = NULL;
    cfg->nsecrets = 0;
    cfg->header = cfg->prefix = cfg->signed_template = NULL;
    cfg->timestamp_header = cfg->query = cfg->username = NULL;
}
