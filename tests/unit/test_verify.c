/*
 * Unit tests for src/verify.c: every scheme against requests a sender would really produce.
 * Expected signatures come from outside this code base: the Standard Webhooks reference
 * vector (standard-webhooks/standard-webhooks, libraries/go/webhook_test.go TestWebhookSign
 * and libraries/python/tests/test_webhooks.py test_sign_function), GitHub's documented
 * X-Hub-Signature-256 example, HubSpot's documented v1 and v2 examples ("Validating
 * requests", developers.hubspot.com), and values computed once with `openssl dgst -hmac`
 * or Python's hmac module.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "verify.h"

/* ---- Standard Webhooks reference vector (see the file comment) ---- */
#define SW_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SW_SECRET_B64 "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SW_MSG_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SW_TS "1614265330"
#define SW_TS_NUM 1614265330
#define SW_PAYLOAD "{\"test\": 2432232314}"
#define SW_SIG "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
/* A wrong but well-formed v1 signature used by the same upstream tests. */
#define SW_OTHER_SIG "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
/* 24 bytes of 0xaa: a second, unrelated key. */
#define SW_SECRET_2 "whsec_qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"

/* ---- GitHub docs example: secret, payload, X-Hub-Signature-256 ---- */
#define GH_SECRET "It's a Secret to Everybody"
#define GH_PAYLOAD "Hello, World!"
#define GH_SIG_HEX "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

/* ---- Zendesk-style: base64(HMAC-SHA256(secret, timestamp + body)); computed with
 * printf '2021-03-25T17:53:39Z{"ticket":{"id":35436}}' | openssl dgst -sha256 -hmac KEY
 * -binary | base64 ---- */
#define ZD_SECRET "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ"
#define ZD_TS "2021-03-25T17:53:39Z"
#define ZD_TS_NUM 1616694819
#define ZD_PAYLOAD "{\"ticket\":{\"id\":35436}}"
#define ZD_SIG "I2v8ZAfvMmzbyxnzI7VPMtWzalVi62QBrj9QhyAeKTA="

/* ---- SHA-1 over "{method}|{url}|{body}" and SHA-512 base64 over the body (openssl) ---- */
#define S1_SECRET "k3y-sha1"
#define S1_URL "http://127.0.0.1:8080/hooks/x?a=b"
#define S1_PAYLOAD "{\"a\":1}"
#define S1_SIG "448113419d1bcd2b399a5fbe2f37c210427476fd"
#define S5_SECRET "k3y-sha512"
#define S5_SIG                                                                                     \
    "wF1ZVfyDKLsUvEmw9Vg3Kk5y1tdyBmlOhanHOUq6d7YQufwqJMSjTh6uKHWj6O9LAfdtLuQljc0VuqVF3HmJFQ=="

/* ---- A request built from name/value pairs ---- */
#define MAX_PAIRS 8

struct pair {
    const char *name;
    const char *value;
};

struct fake_req {
    struct pair headers[MAX_PAIRS];
    size_t nheaders;
    struct pair query[MAX_PAIRS];
    size_t nquery;
    struct verify_request req;
};

static const char *find_pair(const struct pair *pairs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(pairs[i].name, name) == 0)
            return pairs[i].value;
    return NULL;
}

static const char *lookup_header(void *ctx, const char *name)
{
    struct fake_req *f = ctx;

    return find_pair(f->headers, f->nheaders, name);
}

static const char *lookup_query(void *ctx, const char *name)
{
    struct fake_req *f = ctx;

    return find_pair(f->query, f->nquery, name);
}

static void req_init(struct fake_req *f, const char *body, int64_t now)
{
    memset(f, 0, sizeof *f);
    f->req.method = "POST";
    f->req.url = "http://127.0.0.1:8080/hooks/test";
    f->req.body = (const unsigned char *)body;
    f->req.body_len = strlen(body);
    f->req.header = lookup_header;
    f->req.query = lookup_query;
    f->req.ctx = f;
    f->req.now = now;
}

static void req_header(struct fake_req *f, const char *name, const char *value)
{
    assert_true(f->nheaders < MAX_PAIRS);
    f->headers[f->nheaders].name = name;
    f->headers[f->nheaders].value = value;
    f->nheaders++;
}

static void req_query(struct fake_req *f, const char *name, const char *value)
{
    assert_true(f->nquery < MAX_PAIRS);
    f->query[f->nquery].name = name;
    f->query[f->nquery].value = value;
    f->nquery++;
}

/* ---- A hand-built config, as config.c would fill it in ---- */
static char *dup_str(const char *s)
{
    char *d = strdup(s);

    assert_non_null(d);
    return d;
}

static void cfg_init(struct verify_config *cfg, enum verify_scheme scheme)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->scheme = scheme;
    cfg->algorithm = DIGEST_SHA256;
    cfg->encoding = VERIFY_ENC_HEX;
    cfg->tolerance_s = 300;
}

static void cfg_add_secret(struct verify_config *cfg, const char *text)
{
    size_t len = strlen(text);
    struct verify_secret *s = realloc(cfg->secrets, (cfg->nsecrets + 1) * sizeof *s);

    assert_non_null(s);
    cfg->secrets = s;
    s[cfg->nsecrets].bytes = malloc(len ? len : 1);
    assert_non_null(s[cfg->nsecrets].bytes);
    memcpy(s[cfg->nsecrets].bytes, text, len);
    s[cfg->nsecrets].len = len;
    cfg->nsecrets++;
}

static void cfg_prepare_ok(struct verify_config *cfg)
{
    char err[256] = "";

    if (verify_prepare(cfg, err, sizeof err) != 0)
        fail_msg("verify_prepare failed: %s", err);
}

/* Runs the request, checks the status and returns the reason (static storage). */
static const char *run(const struct verify_config *cfg, struct fake_req *f, enum verify_status want)
{
    static struct verify_result res;
    enum verify_status st;

    memset(&res, 0x5a, sizeof res);
    st = verify_request(cfg, &f->req, &res);
    assert_int_equal(st, res.status);
    if (res.status != want)
        fail_msg("status %d, want %d (reason: %s)", (int)res.status, (int)want, res.reason);
    assert_non_null(memchr(res.reason, '\0', sizeof res.reason));
    return res.reason;
}

/* ================= standard-webhooks ================= */

static void sw_config(struct verify_config *cfg, const char *secret)
{
    cfg_init(cfg, VERIFY_SCHEME_STANDARD_WEBHOOKS);
    cfg_add_secret(cfg, secret);
}

static void sw_request(struct fake_req *f, const char *body, const char *sig_header, int64_t now)
{
    req_init(f, body, now);
    req_header(f, "webhook-id", SW_MSG_ID);
    req_header(f, "webhook-timestamp", SW_TS);
    req_header(f, "webhook-signature", sig_header);
}

static void test_sw_published_vector(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    sw_config(&cfg, SW_SECRET);
    cfg_prepare_ok(&cfg);
    /* verify_prepare decoded whsec_ into the 24 raw key bytes. */
    assert_int_equal(cfg.secrets[0].len, 24);
    assert_int_equal(cfg.secrets[0].bytes[0], 0x31);
    assert_int_equal(cfg.secrets[0].bytes[23], 0xb0);

    sw_request(&f, SW_PAYLOAD, "v1," SW_SIG, SW_TS_NUM);
    run(&cfg, &f, VERIFY_OK);
    /* Header names are case-insensitive. */
    req_init(&f, SW_PAYLOAD, SW_TS_NUM + 10);
    req_header(&f, "Webhook-Id", SW_MSG_ID);
    req_header(&f, "WEBHOOK-TIMESTAMP", SW_TS);
    req_header(&f, "Webhook-Signature", "v1," SW_SIG);
    run(&cfg, &f, VERIFY_OK);
    verify_config_free(&cfg);
}

static void test_sw_secret_without_prefix(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    sw_config(&cfg, SW_SECRET_B64);
    cfg_prepare_ok(&cfg);
    sw_request(&f, SW_PAYLOAD, "v1," SW_SIG, SW_TS_NUM);
    run(&cfg, &f, VERIFY_OK);
    verify_config_free(&cfg);
}

static void test_sw_svix_headers(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    sw_config(&cfg, SW_SECRET);
    cfg_prepare_ok(&cfg);
    req_init(&f, SW_PAYLOAD, SW_TS_NUM);
    req_header(&f, "svix-id", SW_MSG_ID);
    req_header(&f, "svix-timestamp", SW_TS);
    req_header(&f, "svix-signature", "v1," SW_SIG);
    run(&cfg, &f, VERIFY_OK);

    /* A missing svix header is reported by its svix name. */
    req_init(&f, SW_PAYLOAD, SW_TS_NUM);
    req_header(&f, "svix-id", SW_MSG_ID);
    req_header(&f, "svix-timestamp", SW_TS);
    assert_string_equal(run(&cfg, &f, VERIFY_MISSING), "missing header svix-signature");
    verify_config_free(&cfg);
}

static void test_sw_tampered_body(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    sw_config(&cfg, SW_SECRET);
    cfg_prepare_ok(&cfg);
    sw_request(&f, "{\"test\": 2432232315}", "v1," SW_SIG, SW_TS_NUM);
    assert_string_equal(run(&cfg, &f, VERIFY_MISMATCH), "signature does not match");

    /* The id and timestamp are signed too. */
    req_init(&f, SW_PAYLOAD, SW_TS_NUM);
    req_header(&f, "webhook-id", "msg_other");
    req_header(&f, "webhook-timestamp", SW_TS);
    req_header(&f, "webhook-signature", "v1," SW_SIG);
    run(&cfg, &f, VERIFY_MISMATCH);
    req_init(&f, SW_PAYLOAD, SW_TS_NUM);
    req_header(&f, "webhook-id", SW_MSG_ID);
    req_header(&f, "webhook-timestamp", "1614265331");
    req_header(&f, "webhook-signature", "v1," SW_SIG);
    run(&cfg, &f, VERIFY_MISMATCH);
    verify_config_free(&cfg);
}

static void test_sw_stale_and_future(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    sw_config(&cfg, SW_SECRET);
    cfg_prepare_ok(&cfg);

    /* The edges of the window are accepted. */
    sw_request(&f, SW_PAYLOAD, "v1," SW_SIG, SW_TS_NUM + 300);
    run(&cfg, &f, VERIFY_OK);
    sw_request(&f, SW_PAYLOAD, "v1," SW_SIG, SW_TS_NUM - 300);
    run(&cfg, &f, VERIFY_OK);

    sw_request(&f, SW_PAYLOAD, "v1," SW_SIG, SW_TS_NUM + 912);
    assert_string_equal(run(&cfg, &f, VERIFY_STALE), "timestamp 912 s old exceeds tolerance 300 s");
    sw_request(&f, SW_PAYLOAD, "v1," SW_SIG, SW_TS_NUM - 400);
    assert_string_equal(run(&cfg, &f, VERIFY_STALE),
                        "timestamp 400 s in the future exceeds tolerance 300 s");

    /* A configured tolerance is honoured. */
    cfg.tolerance_s = 1000;
    sw_request(&f, SW_PAYLOAD, "v1," SW_SIG, SW_TS_NUM + 912);
    run(&cfg, &f, VERIFY_OK);
    verify_config_free(&cfg);
}

static void test_sw_missing_and_malformed(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    sw_config(&cfg, SW_SECRET);
    cfg_prepare_ok(&cfg);

    req_init(&f, SW_PAYLOAD, SW_TS_NUM);
    assert_string_equal(run(&cfg, &f, VERIFY_MISSING), "missing header webhook-id");

    req_init(&f, SW_PAYLOAD, SW_TS_NUM);
    req_header(&f, "webhook-id", SW_MSG_ID);
    req_header(&f, "webhook-signature", "v1," SW_SIG);
    assert_string_equal(run(&cfg, &f, VERIFY_MISSING), "missing header webhook-timestamp");

    req_init(&f, SW_PAYLOAD, SW_TS_NUM);
    req_header(&f, "webhook-id", SW_MSG_ID);
    req_header(&f, "webhook-timestamp", SW_TS);
    assert_string_equal(run(&cfg, &f, VERIFY_MISSING), "missing header webhook-signature");

    static const char *bad_ts[] = {
        "hello",       "1614265330.5",         "-1614265330",
        " 1614265330", "2021-02-25T15:02:10Z", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad_ts / sizeof bad_ts[0]; i++) {
        req_init(&f, SW_PAYLOAD, SW_TS_NUM);
        req_header(&f, "webhook-id", SW_MSG_ID);
        req_header(&f, "webhook-timestamp", bad_ts[i]);
        req_header(&f, "webhook-signature", "v1," SW_SIG);
        assert_string_equal(run(&cfg, &f, VERIFY_MALFORMED), "bad timestamp in webhook-timestamp");
    }

    sw_request(&f, SW_PAYLOAD, "v1,not*base64!", SW_TS_NUM);
    assert_string_equal(run(&cfg, &f, VERIFY_MALFORMED), "bad base64 in webhook-signature");

    /* Only v1a (asymmetric) signatures: nothing this scheme can check. */
    sw_request(&f, SW_PAYLOAD, "v1a," SW_SIG, SW_TS_NUM);
    assert_string_equal(run(&cfg, &f, VERIFY_MISMATCH), "no v1 signature in webhook-signature");
    /* The right signature under another version tag is not accepted. */
    sw_request(&f, SW_PAYLOAD, "v2," SW_SIG " v1a," SW_SIG " V1," SW_SIG, SW_TS_NUM);
    assert_string_equal(run(&cfg, &f, VERIFY_MISMATCH), "no v1 signature in webhook-signature");
    /* A bare signature without a version tag is not accepted. */
    sw_request(&f, SW_PAYLOAD, SW_SIG, SW_TS_NUM);
    run(&cfg, &f, VERIFY_MISMATCH);
    /* A truncated signature is a mismatch, not a crash or a prefix match. */
    sw_request(&f, SW_PAYLOAD, "v1,g0hM9SsE+OTPJTGt", SW_TS_NUM);
    run(&cfg, &f, VERIFY_MISMATCH);
    verify_config_free(&cfg);
}

static void test_sw_multiple_signatures(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    sw_config(&cfg, SW_SECRET);
    cfg_prepare_ok(&cfg);
    /* The upstream multi-signature case: wrong v1, a v2, the right one, wrong v1. */
    sw_request(&f, SW_PAYLOAD,
               "v1," SW_OTHER_SIG " v2," SW_OTHER_SIG " v1," SW_SIG " v1," SW_OTHER_SIG, SW_TS_NUM);
    run(&cfg, &f, VERIFY_OK);
    /* The spec's example mixes v1 and v1a; a bad entry beside a good one does not hurt. */
    sw_request(&f, SW_PAYLOAD,
               "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFy==  "
               "v1,%%% v1," SW_SIG,
               SW_TS_NUM);
    run(&cfg, &f, VERIFY_OK);
    /* Several v1 entries, none right. */
    sw_request(&f, SW_PAYLOAD, "v1," SW_OTHER_SIG " v1," SW_OTHER_SIG, SW_TS_NUM);
    assert_string_equal(run(&cfg, &f, VERIFY_MISMATCH), "signature does not match");
    verify_config_free(&cfg);
}

static void test_sw_key_rotation(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    sw_config(&cfg, SW_SECRET_2);
    cfg_add_secret(&cfg, SW_SECRET);
    cfg_prepare_ok(&cfg);
    sw_request(&f, SW_PAYLOAD, "v1," SW_SIG, SW_TS_NUM);
    run(&cfg, &f, VERIFY_OK);
    verify_config_free(&cfg);

    sw_config(&cfg, SW_SECRET_2);
    cfg_add_secret(&cfg, "whsec_" SW_OTHER_SIG);
    cfg_prepare_ok(&cfg);
    sw_request(&f, SW_PAYLOAD, "v1," SW_SIG, SW_TS_NUM);
    run(&cfg, &f, VERIFY_MISMATCH);
    verify_config_free(&cfg);
}

/* ================= hmac ================= */

static void test_hmac_github(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    cfg_init(&cfg, VERIFY_SCHEME_HMAC);
    cfg_add_secret(&cfg, GH_SECRET);
    cfg.header = dup_str("X-Hub-Signature-256");
    cfg.prefix = dup_str("sha256=");
    cfg_prepare_ok(&cfg);

    req_init(&f, GH_PAYLOAD, 1700000000);
    req_header(&f, "x-hub-signature-256", "sha256=" GH_SIG_HEX);
    run(&cfg, &f, VERIFY_OK);

    /* Upper-case hex is the same signature. */
    req_init(&f, GH_PAYLOAD, 1700000000);
    req_header(&f, "x-hub-signature-256",
               "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17");
    run(&cfg, &f, VERIFY_OK);

    req_init(&f, "Hello, World?", 1700000000);
    req_header(&f, "x-hub-signature-256", "sha256=" GH_SIG_HEX);
    assert_string_equal(run(&cfg, &f, VERIFY_MISMATCH), "signature does not match");

    req_init(&f, GH_PAYLOAD, 1700000000);
    assert_string_equal(run(&cfg, &f, VERIFY_MISSING), "missing header X-Hub-Signature-256");

    req_init(&f, GH_PAYLOAD, 1700000000);
    req_header(&f, "x-hub-signature-256", GH_SIG_HEX);
    assert_string_equal(run(&cfg, &f, VERIFY_MALFORMED),
                        "header X-Hub-Signature-256 lacks prefix sha256=");

    req_init(&f, GH_PAYLOAD, 1700000000);
    req_header(&f, "x-hub-signature-256", "sha256=xyz");
    assert_string_equal(run(&cfg, &f, VERIFY_MALFORMED), "bad hex in X-Hub-Signature-256");

    /* A SHA-1 length signature against SHA-256: wrong length is a mismatch. */
    req_init(&f, GH_PAYLOAD, 1700000000);
    req_header(&f, "x-hub-signature-256", "sha256=" S1_SIG);
    run(&cfg, &f, VERIFY_MISMATCH);
    /* A prefix of the right signature is no match either. */
    req_init(&f, GH_PAYLOAD, 1700000000);
    req_header(&f, "x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a");
    run(&cfg, &f, VERIFY_MISMATCH);
    verify_config_free(&cfg);
}

static void zendesk_config(struct verify_config *cfg, const char *secret)
{
    cfg_init(cfg, VERIFY_SCHEME_HMAC);
    cfg_add_secret(cfg, secret);
    cfg->header = dup_str("X-Zendesk-Webhook-Signature");
    cfg->encoding = VERIFY_ENC_BASE64;
    cfg->signed_template = dup_str("{header:x-zendesk-webhook-signature-timestamp}{body}");
    cfg->timestamp_header = dup_str("X-Zendesk-Webhook-Signature-Timestamp");
    cfg->tolerance_s = 300;
}

static void zendesk_request(struct fake_req *f, const char *body, const char *ts, int64_t now)
{
    req_init(f, body, now);
    req_header(f, "x-zendesk-webhook-signature", ZD_SIG);
    if (ts != NULL)
        req_header(f, "x-zendesk-webhook-signature-timestamp", ts);
}

static void test_hmac_zendesk(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    zendesk_config(&cfg, ZD_SECRET);
    cfg_prepare_ok(&cfg);

    zendesk_request(&f, ZD_PAYLOAD, ZD_TS, ZD_TS_NUM + 5);
    run(&cfg, &f, VERIFY_OK);

    zendesk_request(&f, "{\"ticket\":{\"id\":35437}}", ZD_TS, ZD_TS_NUM);
    run(&cfg, &f, VERIFY_MISMATCH);

    /* The timestamp is part of the signed content: the same instant written with an
     * offset is a different string, hence a different signature. */
    zendesk_request(&f, ZD_PAYLOAD, "2021-03-25T18:53:39+01:00", ZD_TS_NUM);
    run(&cfg, &f, VERIFY_MISMATCH);

    zendesk_request(&f, ZD_PAYLOAD, ZD_TS, ZD_TS_NUM + 912);
    assert_string_equal(run(&cfg, &f, VERIFY_STALE), "timestamp 912 s old exceeds tolerance 300 s");
    zendesk_request(&f, ZD_PAYLOAD, ZD_TS, ZD_TS_NUM - 400);
    assert_string_equal(run(&cfg, &f, VERIFY_STALE),
                        "timestamp 400 s in the future exceeds tolerance 300 s");

    zendesk_request(&f, ZD_PAYLOAD, NULL, ZD_TS_NUM);
    assert_string_equal(run(&cfg, &f, VERIFY_MISSING),
                        "missing header X-Zendesk-Webhook-Signature-Timestamp");

    zendesk_request(&f, ZD_PAYLOAD, "March 25th", ZD_TS_NUM);
    assert_string_equal(run(&cfg, &f, VERIFY_MALFORMED),
                        "bad timestamp in X-Zendesk-Webhook-Signature-Timestamp");

    req_init(&f, ZD_PAYLOAD, ZD_TS_NUM);
    req_header(&f, "x-zendesk-webhook-signature", "I2v8ZAfvMmzbyxnz!7VPMtWzalVi62QBrj9QhyAeKTA=");
    req_header(&f, "x-zendesk-webhook-signature-timestamp", ZD_TS);
    assert_string_equal(run(&cfg, &f, VERIFY_MALFORMED),
                        "bad base64 in X-Zendesk-Webhook-Signature");
    verify_config_free(&cfg);
}

static void test_hmac_template_missing_header(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    zendesk_config(&cfg, ZD_SECRET);
    free(cfg.timestamp_header);
    cfg.timestamp_header = NULL; /* only the template needs the header now */
    cfg_prepare_ok(&cfg);
    zendesk_request(&f, ZD_PAYLOAD, NULL, ZD_TS_NUM);
    assert_string_equal(run(&cfg, &f, VERIFY_MISSING),
                        "missing header x-zendesk-webhook-signature-timestamp");
    zendesk_request(&f, ZD_PAYLOAD, ZD_TS, ZD_TS_NUM);
    run(&cfg, &f, VERIFY_OK);
    verify_config_free(&cfg);
}

static void test_hmac_key_rotation(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    zendesk_config(&cfg, "an-old-secret");
    cfg_add_secret(&cfg, ZD_SECRET);
    cfg_prepare_ok(&cfg);
    zendesk_request(&f, ZD_PAYLOAD, ZD_TS, ZD_TS_NUM);
    run(&cfg, &f, VERIFY_OK);
    verify_config_free(&cfg);

    zendesk_config(&cfg, "an-old-secret");
    cfg_add_secret(&cfg, "a-new-secret");
    cfg_prepare_ok(&cfg);
    zendesk_request(&f, ZD_PAYLOAD, ZD_TS, ZD_TS_NUM);
    assert_string_equal(run(&cfg, &f, VERIFY_MISMATCH), "signature does not match");
    verify_config_free(&cfg);
}

static void test_hmac_sha1_method_url(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    cfg_init(&cfg, VERIFY_SCHEME_HMAC);
    cfg_add_secret(&cfg, S1_SECRET);
    cfg.algorithm = DIGEST_SHA1;
    cfg.header = dup_str("X-Signature");
    cfg.signed_template = dup_str("{method}|{url}|{body}");
    cfg_prepare_ok(&cfg);

    req_init(&f, S1_PAYLOAD, 0);
    f.req.url = S1_URL;
    req_header(&f, "X-Signature", S1_SIG);
    run(&cfg, &f, VERIFY_OK);
    f.req.method = "PUT";
    run(&cfg, &f, VERIFY_MISMATCH);
    verify_config_free(&cfg);
}

static void test_hmac_sha512_base64(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    cfg_init(&cfg, VERIFY_SCHEME_HMAC);
    cfg_add_secret(&cfg, S5_SECRET);
    cfg.algorithm = DIGEST_SHA512;
    cfg.encoding = VERIFY_ENC_BASE64;
    cfg.header = dup_str("X-Signature");
    cfg_prepare_ok(&cfg);

    req_init(&f, S1_PAYLOAD, 0);
    req_header(&f, "X-Signature", S5_SIG);
    run(&cfg, &f, VERIFY_OK);
    /* A body with an embedded NUL is signed byte for byte. */
    f.req.body = (const unsigned char *)"{\"a\":1}\0x";
    f.req.body_len = 9;
    run(&cfg, &f, VERIFY_MISMATCH);
    verify_config_free(&cfg);
}

/* ================= token, basic, none ================= */

static void token_config(struct verify_config *cfg)
{
    cfg_init(cfg, VERIFY_SCHEME_TOKEN);
    cfg_add_secret(cfg, "tok-old");
    cfg_add_secret(cfg, "tok-123");
}

static void test_token_header_bearer(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    token_config(&cfg);
    cfg.header = dup_str("Authorization");
    cfg.prefix = dup_str("Bearer ");
    cfg_prepare_ok(&cfg);

    req_init(&f, "{}", 0);
    req_header(&f, "authorization", "Bearer tok-123");
    run(&cfg, &f, VERIFY_OK);
    req_init(&f, "{}", 0);
    req_header(&f, "authorization", "bearer tok-old");
    run(&cfg, &f, VERIFY_OK);

    req_init(&f, "{}", 0);
    req_header(&f, "authorization", "Bearer tok-12");
    assert_string_equal(run(&cfg, &f, VERIFY_MISMATCH), "token does not match");
    req_init(&f, "{}", 0);
    req_header(&f, "authorization", "Bearer tok-1234");
    run(&cfg, &f, VERIFY_MISMATCH);
    req_init(&f, "{}", 0);
    req_header(&f, "authorization", "tok-123");
    run(&cfg, &f, VERIFY_MALFORMED);
    req_init(&f, "{}", 0);
    assert_string_equal(run(&cfg, &f, VERIFY_MISSING), "missing header Authorization");
    verify_config_free(&cfg);
}

static void test_token_query(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    token_config(&cfg);
    cfg.query = dup_str("token");
    cfg_prepare_ok(&cfg);

    req_init(&f, "{}", 0);
    req_query(&f, "token", "tok-123");
    run(&cfg, &f, VERIFY_OK);
    req_init(&f, "{}", 0);
    req_query(&f, "token", "wrong");
    run(&cfg, &f, VERIFY_MISMATCH);
    req_init(&f, "{}", 0);
    req_header(&f, "token", "tok-123"); /* a header is not the query parameter */
    assert_string_equal(run(&cfg, &f, VERIFY_MISSING), "missing query parameter token");
    verify_config_free(&cfg);
}

static void basic_request(struct fake_req *f, const char *authorization)
{
    req_init(f, "{}", 0);
    if (authorization != NULL)
        req_header(f, "Authorization", authorization);
}

static void test_basic(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    cfg_init(&cfg, VERIFY_SCHEME_BASIC);
    cfg_add_secret(&cfg, "pa:ss w0rd"); /* "hook:pa:ss w0rd" splits at the first ':' */
    cfg.username = dup_str("hook");
    cfg_prepare_ok(&cfg);

    basic_request(&f, "Basic aG9vazpwYTpzcyB3MHJk");
    run(&cfg, &f, VERIFY_OK);
    basic_request(&f, "basic  aG9vazpwYTpzcyB3MHJk");
    run(&cfg, &f, VERIFY_OK);

    basic_request(&f, "Basic aG9vazp3cm9uZw=="); /* hook:wrong */
    assert_string_equal(run(&cfg, &f, VERIFY_MISMATCH), "credentials do not match");
    basic_request(&f, "Basic ZXZlOnBhOnNzIHcwcmQ="); /* eve:pa:ss w0rd */
    run(&cfg, &f, VERIFY_MISMATCH);
    basic_request(&f, "Basic aG9vaw=="); /* "hook", no colon */
    run(&cfg, &f, VERIFY_MALFORMED);
    basic_request(&f, "Basic aG9v*");
    run(&cfg, &f, VERIFY_MALFORMED);
    basic_request(&f, "Bearer aG9vazpwYTpzcyB3MHJk");
    run(&cfg, &f, VERIFY_MALFORMED);
    basic_request(&f, NULL);
    assert_string_equal(run(&cfg, &f, VERIFY_MISSING), "missing header Authorization");
    verify_config_free(&cfg);
}

static void test_none(void **state)
{
    struct verify_config cfg;
    struct fake_req f;
    char err[256] = "";

    (void)state;
    cfg_init(&cfg, VERIFY_SCHEME_NONE);
    assert_int_equal(verify_prepare(&cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "\"insecure\": true"));
    req_init(&f, "{}", 0);
    run(&cfg, &f, VERIFY_MISMATCH); /* even if someone skips verify_prepare */

    cfg.insecure = true;
    cfg_prepare_ok(&cfg);
    run(&cfg, &f, VERIFY_OK);
    verify_config_free(&cfg);
}

/* ================= verify_prepare ================= */

static void expect_prepare_error(struct verify_config *cfg, const char *needle, const char *secret)
{
    char err[256] = "";

    assert_int_equal(verify_prepare(cfg, err, sizeof err), -1);
    if (strstr(err, needle) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err, needle);
    if (secret != NULL && strstr(err, secret) != NULL)
        fail_msg("error \"%s\" reveals the secret", err);
    verify_config_free(cfg);
}

static void test_prepare_errors(void **state)
{
    struct verify_config cfg;

    (void)state;
    sw_config(&cfg, "whsec_c2VjcmV0*dmFsdWU=");
    expect_prepare_error(&cfg, "verify.secret", "c2VjcmV0");

    sw_config(&cfg, SW_SECRET);
    cfg_add_secret(&cfg, "whsec_bm90IHBhZGRlZA"); /* unpadded */
    expect_prepare_error(&cfg, "verify.secrets[1]", "bm90IHBhZGRlZA");

    sw_config(&cfg, "whsec_");
    expect_prepare_error(&cfg, "verify.secret", NULL);

    cfg_init(&cfg, VERIFY_SCHEME_STANDARD_WEBHOOKS);
    expect_prepare_error(&cfg, "verify.secret is required for scheme standard-webhooks", NULL);

    cfg_init(&cfg, VERIFY_SCHEME_HMAC);
    cfg_add_secret(&cfg, "hmac-secret");
    expect_prepare_error(&cfg, "verify.header is required for scheme hmac", "hmac-secret");

    cfg_init(&cfg, VERIFY_SCHEME_HMAC);
    cfg_add_secret(&cfg, "hmac-secret");
    cfg.header = dup_str("X-Sig");
    cfg.signed_template = dup_str("{timestamp}.{body}");
    expect_prepare_error(&cfg, "unknown placeholder {timestamp}", "hmac-secret");

    cfg_init(&cfg, VERIFY_SCHEME_HMAC);
    cfg_add_secret(&cfg, "hmac-secret");
    cfg.header = dup_str("X-Sig");
    cfg.signed_template = dup_str("{header:}{body}");
    expect_prepare_error(&cfg, "unknown placeholder", NULL);

    cfg_init(&cfg, VERIFY_SCHEME_HMAC);
    cfg_add_secret(&cfg, "hmac-secret");
    cfg.header = dup_str("X-Sig");
    cfg.signed_template = dup_str("{body");
    expect_prepare_error(&cfg, "verify.signed", NULL);

    cfg_init(&cfg, VERIFY_SCHEME_HMAC);
    cfg.header = dup_str("X-Sig");
    expect_prepare_error(&cfg, "verify.secret is required for scheme hmac", NULL);

    cfg_init(&cfg, VERIFY_SCHEME_TOKEN);
    cfg_add_secret(&cfg, "tok");
    expect_prepare_error(&cfg, "verify.header or verify.query is required for scheme token", NULL);

    cfg_init(&cfg, VERIFY_SCHEME_BASIC);
    cfg_add_secret(&cfg, "pw");
    expect_prepare_error(&cfg, "verify.username is required for scheme basic", NULL);

    cfg_init(&cfg, VERIFY_SCHEME_TOKEN);
    cfg_add_secret(&cfg, "tok");
    cfg_add_secret(&cfg, "");
    cfg.query = dup_str("t");
    expect_prepare_error(&cfg, "verify.secrets[1] is empty", NULL);

    cfg_init(&cfg, VERIFY_SCHEME_TOKEN);
    cfg_add_secret(&cfg, "tok");
    cfg.query = dup_str("t");
    cfg.tolerance_s = -1;
    expect_prepare_error(&cfg, "verify.tolerance_s", NULL);

    /* The accepted template placeholders. */
    cfg_init(&cfg, VERIFY_SCHEME_HMAC);
    cfg_add_secret(&cfg, "hmac-secret");
    cfg.header = dup_str("X-Sig");
    cfg.signed_template = dup_str("v0:{header:X-Slack-Request-Timestamp}:{method} {url}}{body}");
    cfg_prepare_ok(&cfg);
    verify_config_free(&cfg);
    verify_config_free(&cfg); /* a second free is harmless */
    verify_config_free(NULL);
}

/* ================= verify_parse_timestamp ================= */

static void test_parse_timestamp(void **state)
{
    static const struct {
        const char *text;
        int64_t want;
    } good[] = {
        {"0", 0},
        {"1614265330", 1614265330},
        {"100000000000", 100000000000}, /* 1e11 itself is still seconds */
        {"1614265330123", 1614265330},  /* milliseconds */
        {"2021-03-25T17:53:39Z", 1616694819},
        {"2021-03-25t17:53:39z", 1616694819},
        {"2021-03-25T17:53:39.999999Z", 1616694819},
        {"2021-03-25T18:53:39+01:00", 1616694819},
        {"2021-03-25T12:23:39-05:30", 1616694819},
        {"2000-02-29T23:59:59.123-05:30", 951888599},
        {"1970-01-01T00:00:00Z", 0},
    };
    static const char *bad[] = {
        "",
        "-5",
        "+5",
        " 5",
        "5 ",
        "12a",
        "1e9",
        "99999999999999999999",
        "2021-03-25T17:53:39",  /* no zone */
        "2021-03-25 17:53",     /* no seconds */
        "2021-02-29T00:00:00Z", /* not a leap year */
        "2021-13-01T00:00:00Z",
        "2021-04-31T00:00:00Z",
        "2021-03-25T24:00:00Z",
        "2021-03-25T17:60:00Z",
        "2021-03-25T17:53:39.Z",    /* empty fraction */
        "2021-03-25T17:53:39+0100", /* offset without colon */
        "2021-03-25T17:53:39Zjunk",
        "2021/03/25T17:53:39Z",
    };
    int64_t out;

    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        out = -1;
        if (verify_parse_timestamp(good[i].text, &out) != 0)
            fail_msg("rejected \"%s\"", good[i].text);
        if (out != good[i].want)
            fail_msg("\"%s\" -> %lld, want %lld", good[i].text, (long long)out,
                     (long long)good[i].want);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (verify_parse_timestamp(bad[i], &out) == 0)
            fail_msg("accepted \"%s\"", bad[i]);
    }
}

/* ================= HubSpot ================= */

/* HubSpot's documented examples (developers.hubspot.com, "Validating requests"). */
#define HS_SECRET "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
#define HS_V1_BODY                                                                                 \
    "[{\"eventId\":1,\"subscriptionId\":12345,\"portalId\":62515,\"occurredAt\":1564113600000,"    \
    "\"subscriptionType\":\"contact.creation\",\"attemptNumber\":0,\"objectId\":123,"              \
    "\"changeSource\":\"CRM\",\"changeFlag\":\"NEW\",\"appId\":54321}]"
#define HS_V1_SIG "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
#define HS_V2_URL "https://www.example.com/webhook_uri"
#define HS_V2_GET_SIG "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
#define HS_V2_BODY "{\"example_field\":\"example_value\"}"
#define HS_V2_POST_SIG "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"

/* v3, computed with Python's hmac over the URI as HubSpot signs it (the twelve escapes
 * decoded, %3D and %20 kept):
 * base64(HMAC-SHA256(secret, "POST" + decoded URI + body + timestamp)). */
#define HS3_SECRET "hubspot-client-secret-0001"
#define HS3_BODY "[{\"objectId\":123,\"subscriptionType\":\"deal.propertyChange\"}]"
#define HS3_TS "1764990000000"
#define HS3_NOW 1764990000
#define HS3_TARGET "/hooks/hubspot?next=https%3A%2F%2Fapp.example%2Fdeal%3Fid%3D7&tag=a%20b%40c"
#define HS3_SIG "iKbk+j8QFO8BaOIoCLLtLsujt+JwGihygDm4BbyoPTk="
/* The same over the undecoded URI: what a verifier without HubSpot's rule would expect. */
#define HS3_SIG_UNDECODED "MrKzYbBqDrvaAxb0+D7jrLtvr3HUt1D7EKox/UZku0k="

static void test_hubspot_v1_documented(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    cfg_init(&cfg, VERIFY_SCHEME_HUBSPOT_V1);
    cfg_add_secret(&cfg, HS_SECRET);
    cfg_prepare_ok(&cfg);
    req_init(&f, HS_V1_BODY, 0);
    req_header(&f, "X-HubSpot-Signature", HS_V1_SIG);
    req_header(&f, "X-HubSpot-Signature-Version", "v1");
    run(&cfg, &f, VERIFY_OK);
    /* Upper-case hex is the same signature. */
    req_init(&f, HS_V1_BODY, 0);
    req_header(&f, "X-HubSpot-Signature",
               "232DB2615F3D666FE21A8EC971AC7B5402D33B9A925784DF3CA654D05F4817DE");
    run(&cfg, &f, VERIFY_OK);
    /* Tampered body. */
    req_init(&f, "[{\"eventId\":2}]", 0);
    req_header(&f, "X-HubSpot-Signature", HS_V1_SIG);
    run(&cfg, &f, VERIFY_MISMATCH);
    /* An HMAC of the same input is not what HubSpot v1 sends. */
    req_init(&f, HS_V1_BODY, 0);
    req_header(&f, "X-HubSpot-Signature",
               "0000000000000000000000000000000000000000000000000000000000000000");
    run(&cfg, &f, VERIFY_MISMATCH);
    /* Missing, malformed, other version. */
    req_init(&f, HS_V1_BODY, 0);
    assert_non_null(strstr(run(&cfg, &f, VERIFY_MISSING), "X-HubSpot-Signature"));
    req_init(&f, HS_V1_BODY, 0);
    req_header(&f, "X-HubSpot-Signature", "zz");
    run(&cfg, &f, VERIFY_MALFORMED);
    req_init(&f, HS_V1_BODY, 0);
    req_header(&f, "X-HubSpot-Signature", HS_V1_SIG);
    req_header(&f, "X-HubSpot-Signature-Version", "v2");
    assert_non_null(strstr(run(&cfg, &f, VERIFY_MISMATCH), "expects v1"));
    verify_config_free(&cfg);
}

static void test_hubspot_v2_documented(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    cfg_init(&cfg, VERIFY_SCHEME_HUBSPOT_V2);
    cfg_add_secret(&cfg, "another-app-secret");
    cfg_add_secret(&cfg, HS_SECRET); /* rotation: the second secret matches */
    cfg_prepare_ok(&cfg);
    req_init(&f, "", 0);
    f.req.method = "GET";
    f.req.url = HS_V2_URL;
    req_header(&f, "X-HubSpot-Signature", HS_V2_GET_SIG);
    req_header(&f, "X-HubSpot-Signature-Version", "v2");
    run(&cfg, &f, VERIFY_OK);
    req_init(&f, HS_V2_BODY, 0);
    f.req.url = HS_V2_URL;
    req_header(&f, "X-HubSpot-Signature", HS_V2_POST_SIG);
    run(&cfg, &f, VERIFY_OK);
    /* The URI is signed: another path, or the same body under GET, does not match. */
    req_init(&f, HS_V2_BODY, 0);
    f.req.url = "https://www.example.com/other_uri";
    req_header(&f, "X-HubSpot-Signature", HS_V2_POST_SIG);
    run(&cfg, &f, VERIFY_MISMATCH);
    req_init(&f, HS_V2_BODY, 0);
    f.req.method = "GET";
    f.req.url = HS_V2_URL;
    req_header(&f, "X-HubSpot-Signature", HS_V2_POST_SIG);
    run(&cfg, &f, VERIFY_MISMATCH);
    /* A v1 signature of the body is not a v2 one. */
    req_init(&f, HS_V1_BODY, 0);
    f.req.url = HS_V2_URL;
    req_header(&f, "X-HubSpot-Signature", HS_V1_SIG);
    run(&cfg, &f, VERIFY_MISMATCH);
    verify_config_free(&cfg);
}

static void hs3_request(struct fake_req *f, const char *url, const char *sig, const char *ts,
                        int64_t now)
{
    req_init(f, HS3_BODY, now);
    f->req.url = url;
    req_header(f, "X-HubSpot-Signature-v3", sig);
    req_header(f, "X-HubSpot-Request-Timestamp", ts);
}

static void test_hubspot_v3_decoded_uri(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    cfg_init(&cfg, VERIFY_SCHEME_HUBSPOT_V3);
    cfg_add_secret(&cfg, HS3_SECRET);
    cfg_prepare_ok(&cfg);
    hs3_request(&f, "https://hooks.example.com" HS3_TARGET, HS3_SIG, HS3_TS, HS3_NOW);
    run(&cfg, &f, VERIFY_OK);
    /* A signature over the escaped URI is not HubSpot's. */
    hs3_request(&f, "https://hooks.example.com" HS3_TARGET, HS3_SIG_UNDECODED, HS3_TS, HS3_NOW);
    run(&cfg, &f, VERIFY_MISMATCH);
    /* Tampered body, other timestamp (signed), other host. */
    hs3_request(&f, "https://hooks.example.com" HS3_TARGET, HS3_SIG, HS3_TS, HS3_NOW);
    f.req.body = (const unsigned char *)"[]";
    f.req.body_len = 2;
    run(&cfg, &f, VERIFY_MISMATCH);
    hs3_request(&f, "https://hooks.example.com" HS3_TARGET, HS3_SIG, "1764990000001", HS3_NOW);
    run(&cfg, &f, VERIFY_MISMATCH);
    hs3_request(&f, "https://evil.example.com" HS3_TARGET, HS3_SIG, HS3_TS, HS3_NOW);
    run(&cfg, &f, VERIFY_MISMATCH);
    /* Five minutes either way, not more. */
    hs3_request(&f, "https://hooks.example.com" HS3_TARGET, HS3_SIG, HS3_TS, HS3_NOW + 300);
    run(&cfg, &f, VERIFY_OK);
    hs3_request(&f, "https://hooks.example.com" HS3_TARGET, HS3_SIG, HS3_TS, HS3_NOW + 301);
    run(&cfg, &f, VERIFY_STALE);
    hs3_request(&f, "https://hooks.example.com" HS3_TARGET, HS3_SIG, HS3_TS, HS3_NOW - 301);
    run(&cfg, &f, VERIFY_STALE);
    /* Missing and malformed. */
    req_init(&f, HS3_BODY, HS3_NOW);
    req_header(&f, "X-HubSpot-Request-Timestamp", HS3_TS);
    assert_non_null(strstr(run(&cfg, &f, VERIFY_MISSING), "X-HubSpot-Signature-v3"));
    req_init(&f, HS3_BODY, HS3_NOW);
    req_header(&f, "X-HubSpot-Signature-v3", HS3_SIG);
    assert_non_null(strstr(run(&cfg, &f, VERIFY_MISSING), "X-HubSpot-Request-Timestamp"));
    hs3_request(&f, "https://hooks.example.com" HS3_TARGET, "!!!!", HS3_TS, HS3_NOW);
    run(&cfg, &f, VERIFY_MALFORMED);
    hs3_request(&f, "https://hooks.example.com" HS3_TARGET, HS3_SIG, "yesterday", HS3_NOW);
    run(&cfg, &f, VERIFY_MALFORMED);
    verify_config_free(&cfg);
}

static void test_hubspot_decode_uri(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B", ":/?@!$'()*,;"},
        {"%3a%2f%3f%40%2a%2c%3b", ":/?@*,;"},         /* either hex case */
        {"%20%25%26%3D%2B%23", "%20%25%26%3D%2B%23"}, /* other escapes stay as they are */
        {"%2541", "%2541"},                           /* decoded once, never twice */
        {"a%3", "a%3"},                               /* truncated escape */
        {"a%", "a%"},
        {"%zz%3A", "%zz:"},
        {"", ""},
        {"/hooks/x?q=%E2%82%AC", "/hooks/x?q=%E2%82%AC"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = verify_hubspot_decode_uri(cases[i].in);

        assert_non_null(got);
        assert_string_equal(got, cases[i].out);
        free(got);
    }
}

static void test_signed_url_forwarded(void **state)
{
    struct verify_config cfg;
    struct fake_req f;
    char *u;

    (void)state;
    cfg_init(&cfg, VERIFY_SCHEME_HUBSPOT_V3);
    req_init(&f, "", 0);
    f.req.url = "http://127.0.0.1:8080/hooks/hubspot?a=b";
    req_header(&f, "X-Forwarded-Host", "hooks.example.com, proxy2.internal");
    req_header(&f, "X-Forwarded-Proto", "https,http");

    /* Not trusted (the default): the URL as received. */
    u = verify_signed_url(&cfg, &f.req);
    assert_string_equal(u, "http://127.0.0.1:8080/hooks/hubspot?a=b");
    free(u);
    /* Trusted: the first entry of each. */
    cfg.trust_forwarded = true;
    u = verify_signed_url(&cfg, &f.req);
    assert_string_equal(u, "https://hooks.example.com/hooks/hubspot?a=b");
    free(u);
    /* A forwarded host that is not a host, or a proto that is not http(s), is ignored. */
    req_init(&f, "", 0);
    f.req.url = "http://127.0.0.1:8080/hooks/hubspot";
    req_header(&f, "X-Forwarded-Host", "evil.example/x?");
    req_header(&f, "X-Forwarded-Proto", "gopher");
    u = verify_signed_url(&cfg, &f.req);
    assert_string_equal(u, "http://127.0.0.1:8080/hooks/hubspot");
    free(u);
    /* Only one of them. */
    req_init(&f, "", 0);
    f.req.url = "http://127.0.0.1:8080/hooks/hubspot";
    req_header(&f, "X-Forwarded-Host", "  [2001:db8::1]:8443 ");
    u = verify_signed_url(&cfg, &f.req);
    assert_string_equal(u, "http://[2001:db8::1]:8443/hooks/hubspot");
    free(u);
}

static void test_hubspot_v3_behind_proxy(void **state)
{
    struct verify_config cfg;
    struct fake_req f;

    (void)state;
    cfg_init(&cfg, VERIFY_SCHEME_HUBSPOT_V3);
    cfg_add_secret(&cfg, HS3_SECRET);
    cfg_prepare_ok(&cfg);
    /* HubSpot called https://hooks.example.com/...; the proxy forwarded to 127.0.0.1. */
    hs3_request(&f, "http://127.0.0.1:8080" HS3_TARGET, HS3_SIG, HS3_TS, HS3_NOW);
    req_header(&f, "X-Forwarded-Host", "hooks.example.com");
    req_header(&f, "X-Forwarded-Proto", "https");
    run(&cfg, &f, VERIFY_MISMATCH); /* not trusted: the local URL is not what HubSpot signed */
    cfg.trust_forwarded = true;
    run(&cfg, &f, VERIFY_OK);
    verify_config_free(&cfg);

    /* The hmac template's {url} follows the same option. */
    cfg_init(&cfg, VERIFY_SCHEME_HMAC);
    cfg_add_secret(&cfg, S1_SECRET);
    cfg.algorithm = DIGEST_SHA1;
    cfg.header = dup_str("X-Sig");
    cfg.signed_template = dup_str("{method}|{url}|{body}");
    cfg.trust_forwarded = true;
    cfg_prepare_ok(&cfg);
    req_init(&f, S1_PAYLOAD, 0);
    f.req.url = "http://10.0.0.5:9000/hooks/x?a=b";
    req_header(&f, "X-Sig", S1_SIG);
    req_header(&f, "X-Forwarded-Host", "127.0.0.1:8080");
    req_header(&f, "X-Forwarded-Proto", "http");
    run(&cfg, &f, VERIFY_OK);
    verify_config_free(&cfg);
}

static void test_scheme_names(void **state)
{
    (void)state;
    assert_string_equal(verify_scheme_name(VERIFY_SCHEME_NONE), "none");
    assert_string_equal(verify_scheme_name(VERIFY_SCHEME_STANDARD_WEBHOOKS), "standard-webhooks");
    assert_string_equal(verify_scheme_name(VERIFY_SCHEME_HMAC), "hmac");
    assert_string_equal(verify_scheme_name(VERIFY_SCHEME_TOKEN), "token");
    assert_string_equal(verify_scheme_name(VERIFY_SCHEME_BASIC), "basic");
    assert_string_equal(verify_scheme_name(VERIFY_SCHEME_HUBSPOT_V1), "hubspot-v1");
    assert_string_equal(verify_scheme_name(VERIFY_SCHEME_HUBSPOT_V2), "hubspot-v2");
    assert_string_equal(verify_scheme_name(VERIFY_SCHEME_HUBSPOT_V3), "hubspot-v3");
}

/* ================= no secret in any reason ================= */

/* True when needle occurs in hay, ignoring ASCII case (hex may come in either case). */
static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay != '\0'; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

static void assert_reason_clean(const char *reason, const char *const *forbidden, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (contains_nocase(reason, forbidden[i]))
            fail_msg("reason \"%s\" reveals \"%s\"", reason, forbidden[i]);
}

static void test_reasons_never_reveal_secrets(void **state)
{
    /* Secrets, their decoded forms and the signatures the verifier computes. */
    static const char *const forbidden[] = {
        SW_SECRET_B64,
        SW_SIG,
        "g0hM9SsE",
        GH_SECRET,
        GH_SIG_HEX,
        "757107ea",
        ZD_SECRET,
        ZD_SIG,
        "I2v8ZAfv",
        "tok-123",
        "tok-old",
        "pa:ss",
        "aG9vazpwYTpzcyB3MHJk",
    };
    const size_t nf = sizeof forbidden / sizeof forbidden[0];
    struct verify_config cfg;
    struct fake_req f;
    char computed[2 * DIGEST_MAX_LEN + 1];
    unsigned char mac[DIGEST_MAX_LEN];
    const char *reason;
    const char *extra[1];

    (void)state;
    /* standard-webhooks: each way of failing, plus success. */
    sw_config(&cfg, SW_SECRET);
    cfg_prepare_ok(&cfg);
    sw_request(&f, "{\"test\": 1}", "v1," SW_OTHER_SIG, SW_TS_NUM);
    reason = run(&cfg, &f, VERIFY_MISMATCH);
    assert_reason_clean(reason, forbidden, nf);
    /* The signature computed for this tampered body must not leak either. */
    {
        static const char content[] = SW_MSG_ID "." SW_TS ".{\"test\": 1}";

        assert_int_equal(digest_hmac(DIGEST_SHA256, cfg.secrets[0].bytes, cfg.secrets[0].len,
                                     content, strlen(content), mac),
                         0);
        digest_base64_encode(mac, 32, computed);
        computed[12] = '\0'; /* any recognisable piece */
        extra[0] = computed;
        assert_reason_clean(reason, extra, 1);
    }
    sw_request(&f, SW_PAYLOAD, "v1," SW_SIG, SW_TS_NUM + 1000);
    assert_reason_clean(run(&cfg, &f, VERIFY_STALE), forbidden, nf);
    sw_request(&f, SW_PAYLOAD, "v1,bad*", SW_TS_NUM);
    assert_reason_clean(run(&cfg, &f, VERIFY_MALFORMED), forbidden, nf);
    sw_request(&f, SW_PAYLOAD, "v1," SW_SIG, SW_TS_NUM);
    assert_reason_clean(run(&cfg, &f, VERIFY_OK), forbidden, nf);
    verify_config_free(&cfg);

    /* hmac */
    cfg_init(&cfg, VERIFY_SCHEME_HMAC);
    cfg_add_secret(&cfg, GH_SECRET);
    cfg.header = dup_str("X-Hub-Signature-256");
    cfg.prefix = dup_str("sha256=");
    cfg_prepare_ok(&cfg);
    req_init(&f, "tampered", 0);
    req_header(&f, "X-Hub-Signature-256", "sha256=" GH_SIG_HEX);
    reason = run(&cfg, &f, VERIFY_MISMATCH);
    assert_reason_clean(reason, forbidden, nf);
    assert_int_equal(digest_hmac(DIGEST_SHA256, GH_SECRET, strlen(GH_SECRET), "tampered", 8, mac),
                     0);
    digest_hex_encode(mac, 32, computed);
    computed[16] = '\0';
    extra[0] = computed;
    assert_reason_clean(reason, extra, 1);
    verify_config_free(&cfg);

    zendesk_config(&cfg, ZD_SECRET);
    cfg_prepare_ok(&cfg);
    zendesk_request(&f, "x", ZD_TS, ZD_TS_NUM);
    assert_reason_clean(run(&cfg, &f, VERIFY_MISMATCH), forbidden, nf);
    zendesk_request(&f, ZD_PAYLOAD, ZD_TS, ZD_TS_NUM - 1000);
    assert_reason_clean(run(&cfg, &f, VERIFY_STALE), forbidden, nf);
    verify_config_free(&cfg);

    /* token: neither the secret nor the submitted value appears. */
    token_config(&cfg);
    cfg.header = dup_str("Authorization");
    cfg.prefix = dup_str("Bearer ");
    cfg_prepare_ok(&cfg);
    req_init(&f, "{}", 0);
    req_header(&f, "Authorization", "Bearer tok-12");
    assert_reason_clean(run(&cfg, &f, VERIFY_MISMATCH), forbidden, nf);
    req_init(&f, "{}", 0);
    req_header(&f, "Authorization", "tok-123");
    assert_reason_clean(run(&cfg, &f, VERIFY_MALFORMED), forbidden, nf);
    verify_config_free(&cfg);

    /* basic */
    cfg_init(&cfg, VERIFY_SCHEME_BASIC);
    cfg_add_secret(&cfg, "pa:ss w0rd");
    cfg.username = dup_str("hook");
    cfg_prepare_ok(&cfg);
    basic_request(&f, "Basic ZXZlOnBhOnNzIHcwcmQ=");
    assert_reason_clean(run(&cfg, &f, VERIFY_MISMATCH), forbidden, nf);
    verify_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sw_published_vector),
        cmocka_unit_test(test_sw_secret_without_prefix),
        cmocka_unit_test(test_sw_svix_headers),
        cmocka_unit_test(test_sw_tampered_body),
        cmocka_unit_test(test_sw_stale_and_future),
        cmocka_unit_test(test_sw_missing_and_malformed),
        cmocka_unit_test(test_sw_multiple_signatures),
        cmocka_unit_test(test_sw_key_rotation),
        cmocka_unit_test(test_hmac_github),
        cmocka_unit_test(test_hmac_zendesk),
        cmocka_unit_test(test_hmac_template_missing_header),
        cmocka_unit_test(test_hmac_key_rotation),
        cmocka_unit_test(test_hmac_sha1_method_url),
        cmocka_unit_test(test_hmac_sha512_base64),
        cmocka_unit_test(test_token_header_bearer),
        cmocka_unit_test(test_token_query),
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_prepare_errors),
        cmocka_unit_test(test_parse_timestamp),
        cmocka_unit_test(test_hubspot_v1_documented),
        cmocka_unit_test(test_hubspot_v2_documented),
        cmocka_unit_test(test_hubspot_v3_decoded_uri),
        cmocka_unit_test(test_hubspot_decode_uri),
        cmocka_unit_test(test_signed_url_forwarded),
        cmocka_unit_test(test_hubspot_v3_behind_proxy),
        cmocka_unit_test(test_scheme_names),
        cmocka_unit_test(test_reasons_never_reveal_secrets),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
