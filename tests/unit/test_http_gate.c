/*
 * test_http_gate: the request-head judge that decides, before libmicrohttpd
 * sees a connection, whether its first head is complete, acceptable, or to be
 * refused with which status: framing (RFC 9112 section 6.3), NUL bytes, size
 * limits, versions and field syntax; and the raw problem answers it writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_gate.h"

static const struct http_gate_limits lim = {
    .max_connections = 100,
    .max_per_address = 10,
    .header_timeout_ms = 1000,
    .body_timeout_ms = 1000,
    .max_head_bytes = 1024,
    .max_target_bytes = 256,
};

static struct http_head_check judge_n(const char *buf, size_t len)
{
    struct http_head_check c;
    http_gate_check_head(buf, len, &lim, &c);
    return c;
}

static struct http_head_check judge(const char *s)
{
    return judge_n(s, strlen(s));
}

static void test_good_heads(void **state)
{
    const char *ok[] = {
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /healthz HTTP/1.0\r\n\r\n",
        "\r\nPOST /hooks/a?x=%41 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        "POST /hooks/a HTTP/1.1\nContent-Length: 2\n\n{}",
        "POST /hooks/a HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        "POST /hooks/a HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n{}",
        "POST /hooks/a HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nX-Empty:\r\nX-Spaces:   v  \r\n\r\n",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        struct http_head_check c = judge(ok[i]);
        if (c.verdict != HTTP_HEAD_OK)
            fail_msg("case %zu refused: %s", i, c.detail ? c.detail : "(incomplete)");
        assert_int_equal(c.status, 0);
    }
    /* head_len stops at the blank line: the body is not judged. */
    const char *withbody = "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n\0\0\0";
    struct http_head_check c = judge_n(withbody, strlen(withbody) + 3);
    assert_int_equal(c.verdict, HTTP_HEAD_OK);
    assert_int_equal(c.head_len, strlen(withbody));
}

static void test_incomplete_waits(void **state)
{
    const char *partial[] = {"", "G", "GET /healthz HT", "GET /healthz HTTP/1.1\r\nHost: x\r\n",
                             "GET /healthz HTTP/1.1\r\nHost: x\r\n\r"};
    for (size_t i = 0; i < sizeof partial / sizeof *partial; i++)
        assert_int_equal(judge(partial[i]).verdict, HTTP_HEAD_INCOMPLETE);
}

struct refusal {
    const char *head;
    size_t len; /* 0: strlen */
    enum http_head_verdict verdict;
    int status;
};

static void test_refusals(void **state)
{
    static const char nul_value[] = "POST /hooks/a HTTP/1.1\r\nwebhook-id: a\0A\r\n\r\n";
    static const char nul_line[] = "GET /a\0b HTTP/1.1\r\n\r\n";
    const struct refusal r[] = {
        {"HELLO\r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"GET\r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"GET /\r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"GET  / HTTP/1.1\r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"GET / HTTP/1.1 \r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"GET / http/1.1\r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"GET / HTTP/2.0\r\n\r\n", 0, HTTP_HEAD_VERSION, 505},
        {"GET / HTTP/0.9\r\n\r\n", 0, HTTP_HEAD_VERSION, 505},
        {"GET / HTTP/1.1\r\n Folded: x\r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"GET / HTTP/1.1\r\nName : x\r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 2\r\n\r\n", 0,
         HTTP_HEAD_AMBIGUOUS_FRAMING, 400},
        {"POST / HTTP/1.1\r\nContent-Length: 7, 2\r\n\r\n", 0, HTTP_HEAD_AMBIGUOUS_FRAMING, 400},
        {"POST / HTTP/1.1\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
         HTTP_HEAD_AMBIGUOUS_FRAMING, 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n", 0,
         HTTP_HEAD_AMBIGUOUS_FRAMING, 400},
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 0, HTTP_HEAD_MALFORMED, 400},
        {"POST / HTTP/1.1\r\nContent-Length: 9999999999999999999\r\n\r\n", 0, HTTP_HEAD_MALFORMED,
         400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 0, HTTP_HEAD_UNSUPPORTED_CODING,
         501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0,
         HTTP_HEAD_UNSUPPORTED_CODING, 501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
         HTTP_HEAD_UNSUPPORTED_CODING, 501},
        {"POST /hooks/tok%00junk HTTP/1.1\r\n\r\n", 0, HTTP_HEAD_NUL, 400},
        {"POST /hooks/tok?token=a%00b HTTP/1.1\r\n\r\n", 0, HTTP_HEAD_NUL, 400},
        {nul_value, sizeof nul_value - 1, HTTP_HEAD_NUL, 400},
        {nul_line, sizeof nul_line - 1, HTTP_HEAD_NUL, 400},
    };
    for (size_t i = 0; i < sizeof r / sizeof *r; i++) {
        struct http_head_check c = judge_n(r[i].head, r[i].len ? r[i].len : strlen(r[i].head));
        if (c.verdict != r[i].verdict || c.status != r[i].status)
            fail_msg("case %zu (%.40s): verdict %d status %d, want %d %d", i, r[i].head, c.verdict,
                     c.status, r[i].verdict, r[i].status);
        assert_non_null(c.detail);
    }
}

static void test_size_limits(void **state)
{
    char buf[4096];
    /* A target over the limit: 414 as soon as it shows, without waiting for the rest. */
    int n = snprintf(buf, sizeof buf, "GET /%0300d", 0);
    struct http_head_check c = judge_n(buf, (size_t)n);
    assert_int_equal(c.verdict, HTTP_HEAD_TARGET_TOO_LONG);
    assert_int_equal(c.status, 414);
    n = snprintf(buf, sizeof buf, "GET /%0300d HTTP/1.1\r\n\r\n", 0);
    assert_int_equal(judge_n(buf, (size_t)n).status, 414);
    /* Exactly at the target limit is fine. */
    n = snprintf(buf, sizeof buf, "GET /%0255d HTTP/1.1\r\n\r\n", 0);
    assert_int_equal(judge_n(buf, (size_t)n).verdict, HTTP_HEAD_OK);
    /* Header fields past max_head_bytes: 431, complete or not. */
    n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nX-Big: %01200d", 0);
    assert_int_equal(judge_n(buf, (size_t)n).status, 431);
    n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nX-Big: %01200d\r\n\r\n", 0);
    assert_int_equal(judge_n(buf, (size_t)n).status, 431);
    /* Just under it is fine. */
    n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nX-Big: %0980d\r\n\r\n", 0);
    assert_int_equal(judge_n(buf, (size_t)n).verdict, HTTP_HEAD_OK);
}

static void test_value_nul(void **state)
{
    assert_true(http_gate_value_has_nul("a\0A", 3));
    assert_false(http_gate_value_has_nul("aA", 2));
    assert_false(http_gate_value_has_nul(NULL, 0));
}

static void test_problem_answer(void **state)
{
    char out[1024];
    size_t n = http_gate_format_problem(out, sizeof out, 431, "header-too-large",
                                        "Request Header Fields Too Large", "too big");
    assert_true(n > 0 && n < sizeof out);
    assert_memory_equal(out, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46);
    assert_non_null(strstr(out, "Content-Type: application/problem+json\r\n"));
    assert_non_null(strstr(out, "Connection: close\r\n"));
    const char *body = strstr(out, "\r\n\r\n") + 4;
    const char *cl = strstr(out, "Content-Length: ") + 16;
    assert_int_equal(strtol(cl, NULL, 10), (long)strlen(body));
    json_error_t err;
    json_t *doc = json_loads(body, 0, &err);
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(doc, "status")), 431);
    assert_string_equal(json_string_value(json_object_get(doc, "type")),
                        "urn:hookline:problem:header-too-large");
    assert_string_equal(json_string_value(json_object_get(doc, "detail")), "too big");
    json_decref(doc);
    /* 429 and 503 tell the client when to come back. */
    n = http_gate_format_problem(out, sizeof out, 429, "x", "Too Many Requests", "d");
    assert_non_null(strstr(out, "Retry-After: 1\r\n"));
    /* Too small a buffer: nothing, never a cut answer. */
    assert_int_equal(http_gate_format_problem(out, 40, 400, "x", "Bad Request", "d"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_heads), cmocka_unit_test(test_incomplete_waits),
        cmocka_unit_test(test_refusals),   cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_value_nul),  cmocka_unit_test(test_problem_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
