/*
 * Unit tests for src/jdoc.c: what a webhook body looks like after jdoc_parse
 * (node types, values, the tape layout and sibling skips), which texts the
 * strict parser refuses and the error text it gives, strings and UTF-8, the
 * depth bound, RFC 6901 pointers, and the conversions to and from jansson.
 * Inputs are copied into heap buffers of exactly their length so a sanitizer
 * build catches any read past the body.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>

#include "jdoc.h"

#define MALFORMED "malformed JSON at line "

/* ---- helpers ---- */

/* Parses text[len] from a heap copy of exactly len bytes (no NUL after it). */
static struct jdoc *parse_n(const char *text, size_t len, unsigned flags, unsigned max_depth,
                            char *why, size_t why_len)
{
    char *copy = malloc(len ? len : 1);
    struct jdoc *d;
    assert_non_null(copy);
    memcpy(copy, text, len);
    d = jdoc_parse(copy, len, flags, max_depth, why, why_len);
    free(copy);
    return d;
}

/* Parses text (as a C string) and fails the test when it is rejected. */
static struct jdoc *parse_ok_n(const char *text, size_t len, unsigned flags)
{
    char why[256] = "";
    struct jdoc *d = parse_n(text, len, flags, 0, why, sizeof why);
    if (!d)
        fail_msg("rejected %.*s: %s", (int)len, text, why);
    assert_true(d->nnodes >= 1);
    assert_ptr_equal(jdoc_root(d), d->nodes);
    return d;
}

static struct jdoc *parse_ok(const char *text)
{
    return parse_ok_n(text, strlen(text), 0);
}

/* Asserts text[len] is rejected and why reads "malformed JSON at line ...". */
static void assert_malformed_n(const char *text, size_t len, unsigned flags)
{
    char why[256] = "unset";
    struct jdoc *d = parse_n(text, len, flags, 0, why, sizeof why);
    if (d) {
        jdoc_free(d);
        fail_msg("accepted invalid JSON %.*s", (int)len, text);
    }
    if (strncmp(why, MALFORMED, strlen(MALFORMED)) != 0)
        fail_msg("input %.*s: why is '%s'", (int)len, text, why);
}

static void assert_malformed(const char *text)
{
    assert_malformed_n(text, strlen(text), 0);
}

/* Asserts n is a string node holding exactly want[want_len], NUL-terminated. */
static void assert_str_node(const struct jdoc *d, const struct jdoc_node *n, const char *want,
                            size_t want_len)
{
    const char *s;
    assert_non_null(n);
    assert_int_equal(n->type, JDOC_STRING);
    assert_int_equal(n->len, want_len);
    s = jdoc_str(d, n);
    assert_non_null(s);
    assert_memory_equal(s, want, want_len);
    assert_int_equal(s[want_len], '\0');
}

static void assert_int_node(const struct jdoc_node *n, long long want)
{
    assert_non_null(n);
    assert_int_equal(n->type, JDOC_INT);
    if (n->u.i != want)
        fail_msg("INT %lld, expected %lld", n->u.i, want);
}

static void assert_real_node(const struct jdoc_node *n, double want)
{
    assert_non_null(n);
    assert_int_equal(n->type, JDOC_REAL);
    if (n->u.d != want)
        fail_msg("REAL %.17g, expected %.17g", n->u.d, want);
}

/* Parses a one-value document and checks it is the string want[want_len]. */
static void assert_string_doc(const char *text, const char *want, size_t want_len)
{
    struct jdoc *d = parse_ok(text);
    assert_int_equal(d->nnodes, 1);
    assert_str_node(d, jdoc_root(d), want, want_len);
    jdoc_free(d);
}

/* A heap text of n nested arrays around 1 ("[[1]]" for n = 2); *len gets its length. */
static char *nested_arrays(size_t n, size_t *len)
{
    char *s = malloc(2 * n + 1);
    size_t i;
    assert_non_null(s);
    for (i = 0; i < n; i++)
        s[i] = '[';
    s[n] = '1';
    for (i = 0; i < n; i++)
        s[n + 1 + i] = ']';
    *len = 2 * n + 1;
    return s;
}

static const char *CONTAINERS = "{\"a\":1,\"b\":[true,null,{\"c\":\"d\"}],\"e\":{}}";

/* ---- scalars ---- */

static void test_literals(void **state)
{
    (void)state;
    struct jdoc *d;

    d = parse_ok("null");
    assert_int_equal(d->nnodes, 1);
    assert_int_equal(jdoc_root(d)->type, JDOC_NULL);
    assert_int_equal(d->depth, 0);
    jdoc_free(d);

    d = parse_ok("true");
    assert_int_equal(d->nnodes, 1);
    assert_int_equal(jdoc_root(d)->type, JDOC_TRUE);
    jdoc_free(d);

    d = parse_ok("false");
    assert_int_equal(d->nnodes, 1);
    assert_int_equal(jdoc_root(d)->type, JDOC_FALSE);
    jdoc_free(d);
}

static void test_integers(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        long long want;
    } cases[] = {
        {"0", 0},
        {"-0", 0},
        {"7", 7},
        {"-42", -42},
        {"1234567890", 1234567890LL},
        {"9223372036854775807", LLONG_MAX},
        {"-9223372036854775808", LLONG_MIN},
        {"9223372036854775806", LLONG_MAX - 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct jdoc *d = parse_ok(cases[i].text);
        assert_int_equal(d->nnodes, 1);
        assert_int_equal(d->depth, 0);
        assert_int_node(jdoc_root(d), cases[i].want);
        jdoc_free(d);
    }
}

static void test_reals(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        double want;
    } cases[] = {
        {"1.5", 1.5},
        {"-2.5e-3", -2.5e-3},
        {"1E2", 100.0},
        {"1e2", 100.0},
        {"1e+2", 100.0},
        {"0.1", 0.1},
        {"1.0", 1.0},
        {"0e0", 0.0},
        {"-0.0", 0.0},
        {"3.141592653589793", 3.141592653589793},
        {"1.7976931348623157e308", DBL_MAX},
        {"2.2250738585072014e-308", DBL_MIN},
        /* beyond 64-bit integer range, but a real: accepted */
        {"9223372036854775808.0", 9223372036854775808.0},
        {"12345678901234567890e0", 12345678901234567890.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct jdoc *d = parse_ok(cases[i].text);
        assert_int_equal(d->nnodes, 1);
        assert_real_node(jdoc_root(d), cases[i].want);
        jdoc_free(d);
    }
}

/* Numbers longer than any stack buffer a parser might convert them in. */
static void test_long_numbers(void **state)
{
    (void)state;
    char text[160];
    struct jdoc *d;

    /* "0." then 99 zeros then "1": 1e-100 */
    memcpy(text, "0.", 2);
    memset(text + 2, '0', 99);
    text[101] = '1';
    d = parse_ok_n(text, 102, 0);
    assert_real_node(jdoc_root(d), 1e-100);
    jdoc_free(d);

    /* "1." then 120 zeros then "e2": 100.0 */
    text[0] = '1';
    text[1] = '.';
    memset(text + 2, '0', 120);
    memcpy(text + 122, "e2", 2);
    d = parse_ok_n(text, 124, 0);
    assert_real_node(jdoc_root(d), 100.0);
    jdoc_free(d);
}

static void test_real_underflow_accepted(void **state)
{
    (void)state;
    struct jdoc *d = parse_ok("1e-400");
    assert_int_equal(jdoc_root(d)->type, JDOC_REAL);
    assert_true(fabs(jdoc_root(d)->u.d) < 1e-300);
    jdoc_free(d);
}

static void test_number_overflow_rejected(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "100000000000000000000",
        "[1,99999999999999999999999999]",
        "1e400",
        "-1e400",
        "1.8e308",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char why[256] = "unset";
        struct jdoc *d = parse_n(texts[i], strlen(texts[i]), 0, 0, why, sizeof why);
        if (d) {
            jdoc_free(d);
            fail_msg("accepted out-of-range %s", texts[i]);
        }
        if (strncmp(why, "malformed JSON at line 1 column", 31) != 0)
            fail_msg("input %s: why is '%s'", texts[i], why);
    }
}

static void test_top_level_string(void **state)
{
    (void)state;
    struct jdoc *d = parse_ok("\"hello world\"");
    assert_int_equal(d->nnodes, 1);
    assert_int_equal(d->depth, 0);
    assert_str_node(d, jdoc_root(d), "hello world", 11);
    assert_int_equal(strlen(jdoc_str(d, jdoc_root(d))), 11);
    jdoc_free(d);

    assert_string_doc("\"\"", "", 0);
}

/* ---- grammar ---- */

static void test_grammar_errors(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "",
        "   ",
        "\n\t\r ",
        "{",
        "[",
        "]",
        "}",
        "[1,]",
        "[,1]",
        "[1,,2]",
        "{\"a\":1,}",
        "{\"a\":}",
        "{\"a\"}",
        "{,}",
        "01",
        "00",
        "-01",
        "1.",
        ".5",
        "+1",
        "-",
        "1e",
        "1e+",
        "1.e3",
        "0x10",
        "tru",
        "nul",
        "fals",
        "True",
        "NULL",
        "nulll",
        "[1 2]",
        "{\"a\" 1}",
        "{\"a\":1 \"b\":2}",
        "{1:2}",
        "{null:2}",
        "'x'",
        "\"abc",
        "[\"abc]",
        "\"a\x01"
        "b\"",
        "\"a\tb\"",
        "\"a\nb\"",
        "1 2",
        "[]]",
        "{}}",
        "[] []",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "\"\\x\"",
        "\"\\a\"",
        "\"\\'\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"\\U00e9\"",
        "\"\\",
        "\f1",
        "1\v",
        "[1]/* c */",
        "// c\n1",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        assert_malformed(texts[i]);
}

static void test_raw_nul_in_body_rejected(void **state)
{
    (void)state;
    /* A NUL byte inside len is neither whitespace nor a value. */
    assert_malformed_n("[1]\0", 4, 0);
    assert_malformed_n("\0[1]", 4, 0);
    assert_malformed_n("\"a\0b\"", 5, 0);
    assert_malformed_n("\"a\0b\"", 5, JDOC_ALLOW_NUL);
}

static void test_whitespace_everywhere(void **state)
{
    (void)state;
    struct jdoc *d = parse_ok(" \t\r\n{ \"a\" : [ 1 , 2 ] } \n");
    const struct jdoc_node *root = jdoc_root(d), *a;
    assert_int_equal(root->type, JDOC_OBJECT);
    assert_int_equal(root->len, 1);
    a = jdoc_get(d, root, "a", 1);
    assert_non_null(a);
    assert_int_equal(a->type, JDOC_ARRAY);
    assert_int_equal(a->len, 2);
    assert_int_node(jdoc_at(d, a, 0), 1);
    assert_int_node(jdoc_at(d, a, 1), 2);
    assert_null(jdoc_at(d, a, 2));
    assert_int_equal(d->nnodes, 5);
    jdoc_free(d);

    d = parse_ok("  -12  ");
    assert_int_node(jdoc_root(d), -12);
    jdoc_free(d);

    d = parse_ok("[\n]");
    assert_int_equal(jdoc_root(d)->type, JDOC_ARRAY);
    assert_int_equal(jdoc_root(d)->len, 0);
    jdoc_free(d);
}

static void test_error_line_and_column(void **state)
{
    (void)state;
    char why[256] = "unset";
    struct jdoc *d;

    d = parse_n("{\n  \"a\": tru\n}", 14, 0, 0, why, sizeof why);
    assert_null(d);
    assert_true(strncmp(why, MALFORMED, strlen(MALFORMED)) == 0);
    if (!strstr(why, "line 2"))
        fail_msg("why is '%s'", why);

    snprintf(why, sizeof why, "%s", "unset");
    d = parse_n("[\n1,\n\n x]", 9, 0, 0, why, sizeof why);
    assert_null(d);
    if (!strstr(why, "line 4 column"))
        fail_msg("why is '%s'", why);

    snprintf(why, sizeof why, "%s", "unset");
    d = parse_n("[1,]", 4, 0, 0, why, sizeof why);
    assert_null(d);
    if (strncmp(why, "malformed JSON at line 1 column ", 32) != 0)
        fail_msg("why is '%s'", why);
    /* a reason follows the position */
    assert_non_null(strstr(why, ": "));
    assert_true(strlen(strstr(why, ": ")) > 2);
}

static void test_why_is_bounded(void **state)
{
    (void)state;
    char buf[64];
    struct jdoc *d;
    memset(buf, 'Z', sizeof buf);
    d = jdoc_parse("[1,", 3, 0, 0, buf, 8);
    assert_null(d);
    assert_true(memchr(buf, '\0', 8) != NULL);
    for (size_t i = 8; i < sizeof buf; i++)
        assert_int_equal(buf[i], 'Z');
}

/* ---- strings ---- */

static void test_string_escapes(void **state)
{
    (void)state;
    assert_string_doc("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8);
    assert_string_doc("\"a\\\"b\"", "a\"b", 3);
    assert_string_doc("\"\\u0041\"", "A", 1);
    assert_string_doc("\"\\u00e9\"", "\xc3\xa9", 2);
    assert_string_doc("\"\\u00E9\"", "\xc3\xa9", 2);
    assert_string_doc("\"\\u007f\"", "\x7f", 1);
    assert_string_doc("\"\\u0080\"", "\xc2\x80", 2);
    assert_string_doc("\"\\u07ff\"", "\xdf\xbf", 2);
    assert_string_doc("\"\\u0800\"", "\xe0\xa0\x80", 3);
    assert_string_doc("\"\\u20ac\"", "\xe2\x82\xac", 3);
    assert_string_doc("\"\\uffff\"", "\xef\xbf\xbf", 3);
    assert_string_doc("\"x\\u0001y\"",
                      "x\x01"
                      "y",
                      3);
    assert_string_doc("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4);
    assert_string_doc("\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80", 4);
    assert_string_doc("\"\\ud800\\udc00\"", "\xf0\x90\x80\x80", 4);
    assert_string_doc("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf", 4);
    assert_string_doc("\"a\\ud83d\\ude00b\"",
                      "a\xf0\x9f\x98\x80"
                      "b",
                      6);
}

static void test_lone_surrogates_rejected(void **state)
{
    (void)state;
    assert_malformed("\"\\ud83d\"");
    assert_malformed("\"\\ude00\"");
    assert_malformed("\"\\ud83dx\"");
    assert_malformed("\"\\ud83d\\u0041\"");
    assert_malformed("\"\\ud83d\\ud83d\"");
    assert_malformed("\"\\ude00\\ud83d\"");
    assert_malformed("\"\\ud83d\\n\"");
}

static void test_escaped_nul(void **state)
{
    (void)state;
    char why[256] = "unset";
    struct jdoc *d;

    d = parse_n("\"a\\u0000b\"", 10, 0, 0, why, sizeof why);
    assert_null(d);
    assert_true(strncmp(why, MALFORMED, strlen(MALFORMED)) == 0);
    assert_malformed("{\"\\u0000\":1}");

    d = parse_ok_n("\"a\\u0000b\"", 10, JDOC_ALLOW_NUL);
    assert_str_node(d, jdoc_root(d), "a\0b", 3);
    jdoc_free(d);
}

static void test_raw_utf8(void **state)
{
    (void)state;
    assert_string_doc("\"\xc3\xa9\"", "\xc3\xa9", 2);
    assert_string_doc("\"caf\xc3\xa9\"", "caf\xc3\xa9", 5);
    assert_string_doc("\"\xe2\x82\xac\"", "\xe2\x82\xac", 3);
    assert_string_doc("\"\xf0\x9f\x98\x80\"", "\xf0\x9f\x98\x80", 4);
    assert_string_doc("\"\xf4\x8f\xbf\xbf\"", "\xf4\x8f\xbf\xbf", 4);
    assert_string_doc("\"\xef\xbf\xbf\"", "\xef\xbf\xbf", 3);
    assert_string_doc("\"\x7f\"", "\x7f", 1);
}

static void test_invalid_utf8_rejected(void **state)
{
    (void)state;
    assert_malformed("\"\xff\"");
    assert_malformed("\"\xfe\"");
    assert_malformed("\"\x80\"");
    assert_malformed("\"\xc0\xaf\"");
    assert_malformed("\"\xc1\xbf\"");
    assert_malformed("\"\xe0\x80\xaf\"");
    assert_malformed("\"\xf0\x80\x80\xaf\"");
    assert_malformed("\"\xed\xa0\x80\"");
    assert_malformed("\"\xed\xbf\xbf\"");
    assert_malformed("\"\xe2\x82\"");
    assert_malformed("\"\xc3\"");
    assert_malformed("\"\xf0\x9f\x98\"");
    assert_malformed("\"\xf4\x90\x80\x80\"");
    assert_malformed("\"\xf5\x80\x80\x80\"");
    assert_malformed("\"\xc3\x41\"");
    assert_malformed("{\"\xff\":1}");
    assert_malformed("[\"ok\",\"\xe2\x82\"]");
    /* the body ends inside a multi-byte sequence */
    assert_malformed_n("\"\xe2\x82", 3, 0);
}

static void test_str_nul_terminated_and_len(void **state)
{
    (void)state;
    struct jdoc *d = parse_ok("[\"one\",\"\",\"thr\\u00e9e\",\"x\\ny\"]");
    const struct jdoc_node *root = jdoc_root(d);
    static const char *const want[] = {"one", "",
                                       "thr\xc3\xa9"
                                       "e",
                                       "x\ny"};
    assert_int_equal(root->len, 4);
    for (size_t i = 0; i < 4; i++) {
        const struct jdoc_node *n = jdoc_at(d, root, i);
        assert_str_node(d, n, want[i], strlen(want[i]));
        assert_string_equal(jdoc_str(d, n), want[i]);
        assert_int_equal(strlen(jdoc_str(d, n)), n->len);
    }
    jdoc_free(d);
}

static void test_long_string(void **state)
{
    (void)state;
    size_t n = 200000, len = n + 2;
    char *text = malloc(len);
    struct jdoc *d;
    const char *s;
    assert_non_null(text);
    text[0] = '"';
    for (size_t i = 0; i < n; i++)
        text[1 + i] = (char)('a' + i % 26);
    text[len - 1] = '"';
    d = parse_ok_n(text, len, 0);
    assert_int_equal(jdoc_root(d)->type, JDOC_STRING);
    assert_int_equal(jdoc_root(d)->len, n);
    s = jdoc_str(d, jdoc_root(d));
    assert_memory_equal(s, text + 1, n);
    assert_int_equal(s[n], '\0');
    jdoc_free(d);
    free(text);
}

/* ---- containers and layout ---- */

static void test_containers(void **state)
{
    (void)state;
    struct jdoc *d = parse_ok(CONTAINERS);
    const struct jdoc_node *root = jdoc_root(d), *a, *b, *e, *inner;

    assert_int_equal(root->type, JDOC_OBJECT);
    assert_int_equal(root->len, 3);
    assert_int_equal(d->depth, 3);
    /* obj "a" 1 "b" arr true null obj "c" "d" "e" obj */
    assert_int_equal(d->nnodes, 12);

    a = jdoc_get(d, root, "a", 1);
    assert_int_node(a, 1);

    b = jdoc_get(d, root, "b", 1);
    assert_non_null(b);
    assert_int_equal(b->type, JDOC_ARRAY);
    assert_int_equal(b->len, 3);
    assert_int_equal(jdoc_at(d, b, 0)->type, JDOC_TRUE);
    assert_int_equal(jdoc_at(d, b, 1)->type, JDOC_NULL);
    inner = jdoc_at(d, b, 2);
    assert_non_null(inner);
    assert_int_equal(inner->type, JDOC_OBJECT);
    assert_int_equal(inner->len, 1);
    assert_null(jdoc_at(d, b, 3));
    assert_null(jdoc_at(d, b, 1000000));
    assert_str_node(d, jdoc_get(d, inner, "c", 1), "d", 1);
    assert_null(jdoc_get(d, inner, "d", 1));

    e = jdoc_get(d, root, "e", 1);
    assert_non_null(e);
    assert_int_equal(e->type, JDOC_OBJECT);
    assert_int_equal(e->len, 0);
    assert_null(jdoc_get(d, e, "a", 1));
    assert_ptr_equal(jdoc_skip(d, e), d->nodes + d->nnodes);

    assert_null(jdoc_get(d, root, "c", 1));
    assert_null(jdoc_get(d, root, "", 0));
    assert_null(jdoc_get(d, root, "A", 1));

    jdoc_free(d);
}

static void test_tape_layout(void **state)
{
    (void)state;
    struct jdoc *d = parse_ok(CONTAINERS);
    const struct jdoc_node *root = jdoc_root(d), *n, *b;

    /* Nodes are in text order; an object's children are key, value pairs. */
    assert_str_node(d, &d->nodes[1], "a", 1);
    assert_int_node(&d->nodes[2], 1);
    assert_str_node(d, &d->nodes[3], "b", 1);
    assert_int_equal(d->nodes[4].type, JDOC_ARRAY);
    assert_int_equal(d->nodes[5].type, JDOC_TRUE);
    assert_int_equal(d->nodes[6].type, JDOC_NULL);
    assert_int_equal(d->nodes[7].type, JDOC_OBJECT);
    assert_str_node(d, &d->nodes[8], "c", 1);
    assert_str_node(d, &d->nodes[9], "d", 1);
    assert_str_node(d, &d->nodes[10], "e", 1);
    assert_int_equal(d->nodes[11].type, JDOC_OBJECT);

    assert_ptr_equal(jdoc_skip(d, root), d->nodes + d->nnodes);
    assert_int_equal(root->next, d->nnodes);
    assert_int_equal(d->nodes[4].next, 10);
    assert_int_equal(d->nodes[7].next, 10);
    assert_int_equal(d->nodes[5].next, 6);

    /* Skipping from the first child visits key, value, key, value, ... */
    n = root + 1;
    b = jdoc_get(d, root, "b", 1);
    assert_str_node(d, n, "a", 1);
    n = jdoc_skip(d, n);
    assert_int_node(n, 1);
    n = jdoc_skip(d, n);
    assert_str_node(d, n, "b", 1);
    n = jdoc_skip(d, n);
    assert_ptr_equal(n, b);
    n = jdoc_skip(d, n);
    assert_str_node(d, n, "e", 1);
    n = jdoc_skip(d, n);
    assert_int_equal(n->type, JDOC_OBJECT);
    n = jdoc_skip(d, n);
    assert_ptr_equal(n, d->nodes + d->nnodes);

    jdoc_free(d);
}

static void test_sibling_walk_array(void **state)
{
    (void)state;
    struct jdoc *d = parse_ok("[1,[2,[3]],{\"k\":[4,5]},\"s\",[],{},null]");
    const struct jdoc_node *root = jdoc_root(d), *end = d->nodes + d->nnodes, *n;
    static const uint8_t want[] = {JDOC_INT,   JDOC_ARRAY,  JDOC_OBJECT, JDOC_STRING,
                                   JDOC_ARRAY, JDOC_OBJECT, JDOC_NULL};
    size_t count = 0;

    assert_int_equal(root->type, JDOC_ARRAY);
    assert_int_equal(root->len, 7);
    for (n = root + 1; n < end; n = jdoc_skip(d, n)) {
        assert_true(count < 7);
        assert_int_equal(n->type, want[count]);
        assert_ptr_equal(n, jdoc_at(d, root, count));
        count++;
    }
    assert_int_equal(count, root->len);
    assert_ptr_equal(n, end);
    jdoc_free(d);
}

static void test_empty_containers(void **state)
{
    (void)state;
    struct jdoc *d = parse_ok("[]");
    assert_int_equal(d->nnodes, 1);
    assert_int_equal(jdoc_root(d)->type, JDOC_ARRAY);
    assert_int_equal(jdoc_root(d)->len, 0);
    assert_int_equal(d->depth, 1);
    assert_null(jdoc_at(d, jdoc_root(d), 0));
    assert_ptr_equal(jdoc_skip(d, jdoc_root(d)), d->nodes + 1);
    jdoc_free(d);

    d = parse_ok("{}");
    assert_int_equal(d->nnodes, 1);
    assert_int_equal(jdoc_root(d)->type, JDOC_OBJECT);
    assert_int_equal(jdoc_root(d)->len, 0);
    assert_int_equal(d->depth, 1);
    assert_null(jdoc_get(d, jdoc_root(d), "a", 1));
    jdoc_free(d);

    d = parse_ok("[[],{},[[]]]");
    assert_int_equal(jdoc_root(d)->len, 3);
    assert_int_equal(jdoc_at(d, jdoc_root(d), 0)->len, 0);
    assert_int_equal(jdoc_at(d, jdoc_root(d), 1)->len, 0);
    assert_int_equal(jdoc_at(d, jdoc_root(d), 2)->len, 1);
    assert_int_equal(d->depth, 3);
    jdoc_free(d);
}

static void test_repeated_key_last_wins(void **state)
{
    (void)state;
    struct jdoc *d = parse_ok("{\"k\":1,\"x\":0,\"k\":2}");
    const struct jdoc_node *root = jdoc_root(d);
    json_t *j;

    /* both members stay in the tape */
    assert_int_equal(root->len, 3);
    assert_int_node(jdoc_get(d, root, "k", 1), 2);
    assert_int_node(jdoc_pointer(d, "/k"), 2);

    j = jdoc_to_json(d, root);
    assert_non_null(j);
    assert_true(json_is_object(j));
    assert_int_equal(json_object_size(j), 2);
    assert_true(json_is_integer(json_object_get(j, "k")));
    assert_int_equal(json_integer_value(json_object_get(j, "k")), 2);
    json_decref(j);
    jdoc_free(d);
}

static void test_get_and_at_on_wrong_types(void **state)
{
    (void)state;
    struct jdoc *d = parse_ok("{\"a\":[1,2],\"s\":\"str\",\"i\":5,\"o\":{\"0\":1}}");
    const struct jdoc_node *root = jdoc_root(d);
    const struct jdoc_node *arr = jdoc_get(d, root, "a", 1);

    assert_non_null(arr);
    assert_null(jdoc_get(d, arr, "a", 1));
    assert_null(jdoc_get(d, arr, "0", 1));
    /* an object's first child is a key, not an element */
    assert_null(jdoc_at(d, root, 0));
    assert_null(jdoc_at(d, jdoc_get(d, root, "o", 1), 0));
    assert_null(jdoc_at(d, jdoc_get(d, root, "s", 1), 0));
    assert_null(jdoc_get(d, jdoc_get(d, root, "s", 1), "str", 3));
    assert_null(jdoc_at(d, jdoc_get(d, root, "i", 1), 0));
    assert_null(jdoc_get(d, jdoc_get(d, root, "i", 1), "i", 1));
    jdoc_free(d);

    d = parse_ok("\"a\"");
    assert_null(jdoc_get(d, jdoc_root(d), "a", 1));
    assert_null(jdoc_at(d, jdoc_root(d), 0));
    jdoc_free(d);
}

static void test_get_uses_key_len(void **state)
{
    (void)state;
    struct jdoc *d = parse_ok("{\"ab\":2,\"a\":1,\"abc\":3}");
    const struct jdoc_node *root = jdoc_root(d);
    assert_int_node(jdoc_get(d, root, "ab", 1), 1);
    assert_int_node(jdoc_get(d, root, "ab", 2), 2);
    assert_int_node(jdoc_get(d, root, "abcd", 3), 3);
    assert_null(jdoc_get(d, root, "abcd", 4));
    assert_null(jdoc_get(d, root, "b", 1));
    jdoc_free(d);

    /* keys with a NUL compare by length, not as C strings */
    d = parse_ok_n("{\"a\\u0000b\":5,\"a\":6}", 20, JDOC_ALLOW_NUL);
    root = jdoc_root(d);
    assert_int_node(jdoc_get(d, root, "a\0b", 3), 5);
    assert_int_node(jdoc_get(d, root, "a", 1), 6);
    assert_null(jdoc_get(d, root, "a\0c", 3));
    jdoc_free(d);
}

/* ---- depth ---- */

static void test_depth_reported(void **state)
{
    (void)state;
    struct jdoc *d = parse_ok("1");
    assert_int_equal(d->depth, 0);
    jdoc_free(d);
    d = parse_ok("[]");
    assert_int_equal(d->depth, 1);
    jdoc_free(d);
    d = parse_ok("[[[1]]]");
    assert_int_equal(d->depth, 3);
    jdoc_free(d);
    d = parse_ok("[[1],[[2]],3]");
    assert_int_equal(d->depth, 3);
    jdoc_free(d);
    d = parse_ok("{\"a\":{\"b\":{}}}");
    assert_int_equal(d->depth, 3);
    jdoc_free(d);
}

static void test_depth_limit_explicit(void **state)
{
    (void)state;
    char why[256] = "unset";
    struct jdoc *d;

    d = parse_n("[[[1]]]", 7, 0, 3, why, sizeof why);
    if (!d)
        fail_msg("max_depth 3 rejected [[[1]]]: %s", why);
    assert_int_equal(d->depth, 3);
    jdoc_free(d);

    snprintf(why, sizeof why, "%s", "");
    d = parse_n("[[[[1]]]]", 9, 0, 3, why, sizeof why);
    assert_null(d);
    assert_true(why[0] != '\0');

    snprintf(why, sizeof why, "%s", "");
    d = parse_n("{\"a\":[{\"b\":1}]}", 15, 0, 2, why, sizeof why);
    assert_null(d);
    assert_true(why[0] != '\0');

    d = parse_n("{\"a\":[1]}", 9, 0, 2, why, sizeof why);
    assert_non_null(d);
    jdoc_free(d);

    /* scalars need no depth at all */
    d = parse_n("\"x\"", 3, 0, 1, why, sizeof why);
    assert_non_null(d);
    jdoc_free(d);
    d = parse_n("[]", 2, 0, 1, why, sizeof why);
    assert_non_null(d);
    jdoc_free(d);
    d = parse_n("[[]]", 4, 0, 1, why, sizeof why);
    assert_null(d);
}

static void test_depth_limit_default(void **state)
{
    (void)state;
    char why[256] = "unset";
    size_t len;
    char *text;
    struct jdoc *d;

    text = nested_arrays(JDOC_DEFAULT_MAX_DEPTH, &len);
    d = jdoc_parse(text, len, 0, 0, why, sizeof why);
    free(text);
    if (!d)
        fail_msg("512-deep rejected: %s", why);
    assert_int_equal(d->depth, 512);
    assert_int_equal(d->nnodes, 513);
    assert_int_node(&d->nodes[512], 1);
    jdoc_free(d);

    snprintf(why, sizeof why, "%s", "");
    text = nested_arrays(JDOC_DEFAULT_MAX_DEPTH + 1, &len);
    d = jdoc_parse(text, len, 0, 0, why, sizeof why);
    free(text);
    assert_null(d);
    assert_true(why[0] != '\0');

    /* far beyond the bound: rejected, not a stack overflow */
    snprintf(why, sizeof why, "%s", "");
    text = nested_arrays(200000, &len);
    d = jdoc_parse(text, len, 0, 0, why, sizeof why);
    free(text);
    assert_null(d);
    assert_true(why[0] != '\0');
}

/* ---- pointers ---- */

static void test_pointer(void **state)
{
    (void)state;
    struct jdoc *d =
        parse_ok("{\"a\":1,\"b\":[true,null,{\"c\":\"d\"}],\"a/b\":2,\"m~n\":3,\"\":4,\"~1\":5}");
    const struct jdoc_node *n;

    assert_ptr_equal(jdoc_pointer(d, ""), jdoc_root(d));
    assert_str_node(d, jdoc_pointer(d, "/b/2/c"), "d", 1);
    n = jdoc_pointer(d, "/b/0");
    assert_non_null(n);
    assert_int_equal(n->type, JDOC_TRUE);
    n = jdoc_pointer(d, "/b/1");
    assert_non_null(n);
    assert_int_equal(n->type, JDOC_NULL);
    n = jdoc_pointer(d, "/b");
    assert_non_null(n);
    assert_int_equal(n->type, JDOC_ARRAY);
    assert_int_node(jdoc_pointer(d, "/a"), 1);
    assert_int_node(jdoc_pointer(d, "/a~1b"), 2);
    assert_int_node(jdoc_pointer(d, "/m~0n"), 3);
    assert_int_node(jdoc_pointer(d, "/"), 4);
    /* "~01" is "~1" (not "/") */
    assert_int_node(jdoc_pointer(d, "/~01"), 5);

    assert_null(jdoc_pointer(d, "/b/01"));
    assert_null(jdoc_pointer(d, "/b/00"));
    assert_null(jdoc_pointer(d, "/b/-1"));
    assert_null(jdoc_pointer(d, "/b/-"));
    assert_null(jdoc_pointer(d, "/b/+1"));
    assert_null(jdoc_pointer(d, "/b/1x"));
    assert_null(jdoc_pointer(d, "/b/"));
    assert_null(jdoc_pointer(d, "/b/3"));
    assert_null(jdoc_pointer(d, "/b/9"));
    assert_null(jdoc_pointer(d, "/b/18446744073709551616"));
    assert_null(jdoc_pointer(d, "/x"));
    assert_null(jdoc_pointer(d, "a"));
    assert_null(jdoc_pointer(d, "/a/x"));
    assert_null(jdoc_pointer(d, "/a/0"));
    assert_null(jdoc_pointer(d, "/b/2/c/0"));
    assert_null(jdoc_pointer(d, "/b/2/x"));
    assert_null(jdoc_pointer(d, "/c"));
    jdoc_free(d);

    d = parse_ok("[10,20]");
    assert_int_node(jdoc_pointer(d, "/0"), 10);
    assert_null(jdoc_pointer(d, "/0/0"));
    assert_int_node(jdoc_pointer(d, "/1"), 20);
    assert_null(jdoc_pointer(d, "/2"));
    jdoc_free(d);
}

static void test_pointer_long_key(void **state)
{
    (void)state;
    enum { KEY = 300 };
    char text[KEY + 16], ptr[KEY + 8];
    size_t len = 0;
    struct jdoc *d;

    text[len++] = '{';
    text[len++] = '"';
    memset(text + len, 'k', KEY);
    len += KEY;
    memcpy(text + len, "\":{\"x\":7}}", 10);
    len += 10;
    d = parse_ok_n(text, len, 0);
    assert_int_node(jdoc_get(d, jdoc_get(d, jdoc_root(d), text + 2, KEY), "x", 1), 7);

    ptr[0] = '/';
    memset(ptr + 1, 'k', KEY);
    memcpy(ptr + 1 + KEY, "/x", 3);
    assert_int_node(jdoc_pointer(d, ptr), 7);
    ptr[1 + KEY] = '\0';
    assert_non_null(jdoc_pointer(d, ptr));
    assert_int_equal(jdoc_pointer(d, ptr)->type, JDOC_OBJECT);
    ptr[KEY] = '\0'; /* one 'k' short */
    assert_null(jdoc_pointer(d, ptr));
    jdoc_free(d);
}

/* ---- jansson conversions ---- */

static void test_to_json_round_trip(void **state)
{
    (void)state;
    struct jdoc *d =
        parse_ok("{\"n\":null,\"t\":true,\"f\":false,\"i\":-42,\"big\":9223372036854775807,"
                 "\"r\":1.5,\"one\":1.0,\"s\":\"h\\u00e9\\n\",\"a\":[1,\"x\",[]],"
                 "\"o\":{\"k\":{}}}");
    json_t *j = jdoc_to_json(d, jdoc_root(d));
    char *text;

    assert_non_null(j);
    text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    assert_non_null(text);
    assert_string_equal(text, "{\"a\":[1,\"x\",[]],\"big\":9223372036854775807,\"f\":false,"
                              "\"i\":-42,\"n\":null,\"o\":{\"k\":{}},\"one\":1.0,\"r\":1.5,"
                              "\"s\":\"h\xc3\xa9\\n\",\"t\":true}");
    free(text);

    assert_true(json_is_integer(json_object_get(j, "i")));
    assert_int_equal(json_integer_value(json_object_get(j, "i")), -42);
    assert_true(json_is_real(json_object_get(j, "one")));
    assert_true(json_real_value(json_object_get(j, "one")) == 1.0);
    assert_true(json_is_true(json_object_get(j, "t")));
    assert_true(json_is_false(json_object_get(j, "f")));
    assert_true(json_is_null(json_object_get(j, "n")));
    json_decref(j);

    /* a subtree converts alone */
    j = jdoc_to_json(d, jdoc_pointer(d, "/a"));
    assert_non_null(j);
    text = json_dumps(j, JSON_COMPACT);
    assert_string_equal(text, "[1,\"x\",[]]");
    free(text);
    json_decref(j);

    j = jdoc_to_json(d, jdoc_pointer(d, "/s"));
    assert_true(json_is_string(j));
    assert_string_equal(json_string_value(j), "h\xc3\xa9\n");
    json_decref(j);
    jdoc_free(d);
}

static void test_to_json_string_with_nul(void **state)
{
    (void)state;
    struct jdoc *d = parse_ok_n("[\"a\\u0000b\"]", 12, JDOC_ALLOW_NUL);
    json_t *j = jdoc_to_json(d, jdoc_root(d));
    json_t *s;
    assert_non_null(j);
    s = json_array_get(j, 0);
    assert_true(json_is_string(s));
    assert_int_equal(json_string_length(s), 3);
    assert_memory_equal(json_string_value(s), "a\0b", 3);
    json_decref(j);
    jdoc_free(d);
}

static void test_from_json(void **state)
{
    (void)state;
    char why[256] = "unset";
    json_t *v = json_pack("{s:s,s:[s,s]}", "a", "1", "b", "x", "y");
    struct jdoc *d;
    const struct jdoc_node *root, *b;

    assert_non_null(v);
    d = jdoc_from_json(v, why, sizeof why);
    if (!d)
        fail_msg("jdoc_from_json: %s", why);
    /* v is borrowed */
    assert_int_equal(v->refcount, 1);
    json_decref(v);

    root = jdoc_root(d);
    assert_int_equal(root->type, JDOC_OBJECT);
    assert_int_equal(root->len, 2);
    assert_str_node(d, jdoc_get(d, root, "a", 1), "1", 1);
    b = jdoc_get(d, root, "b", 1);
    assert_non_null(b);
    assert_int_equal(b->type, JDOC_ARRAY);
    assert_int_equal(b->len, 2);
    assert_str_node(d, jdoc_at(d, b, 0), "x", 1);
    assert_str_node(d, jdoc_at(d, b, 1), "y", 1);
    assert_null(jdoc_at(d, b, 2));
    jdoc_free(d);

    v = json_pack("[I,f,f,n,b,b,s]", (json_int_t)-7, 2.5, 1.0, 1, 0, "\xc3\xa9");
    d = jdoc_from_json(v, why, sizeof why);
    json_decref(v);
    if (!d)
        fail_msg("jdoc_from_json: %s", why);
    root = jdoc_root(d);
    assert_int_equal(root->len, 7);
    assert_int_node(jdoc_at(d, root, 0), -7);
    assert_real_node(jdoc_at(d, root, 1), 2.5);
    assert_real_node(jdoc_at(d, root, 2), 1.0);
    assert_int_equal(jdoc_at(d, root, 3)->type, JDOC_NULL);
    assert_int_equal(jdoc_at(d, root, 4)->type, JDOC_TRUE);
    assert_int_equal(jdoc_at(d, root, 5)->type, JDOC_FALSE);
    assert_str_node(d, jdoc_at(d, root, 6), "\xc3\xa9", 2);
    jdoc_free(d);

    /* a form field may carry a NUL (%00); it survives the conversion */
    v = json_pack("{s:s%}", "f", "a\0b", (size_t)3);
    assert_non_null(v);
    d = jdoc_from_json(v, why, sizeof why);
    json_decref(v);
    if (!d)
        fail_msg("jdoc_from_json with a NUL: %s", why);
    assert_str_node(d, jdoc_get(d, jdoc_root(d), "f", 1), "a\0b", 3);
    jdoc_free(d);

    v = json_integer(3);
    d = jdoc_from_json(v, why, sizeof why);
    json_decref(v);
    assert_non_null(d);
    assert_int_node(jdoc_root(d), 3);
    jdoc_free(d);
}

/* ---- buffers ---- */

static void test_body_not_nul_terminated(void **state)
{
    (void)state;
    struct jdoc *d;

    d = parse_ok_n("[1]XYZ", 3, 0);
    assert_int_equal(jdoc_root(d)->type, JDOC_ARRAY);
    assert_int_equal(jdoc_root(d)->len, 1);
    assert_int_node(jdoc_at(d, jdoc_root(d), 0), 1);
    jdoc_free(d);

    d = parse_ok_n("12345", 2, 0);
    assert_int_node(jdoc_root(d), 12);
    jdoc_free(d);

    d = parse_ok_n("1.25e1x", 6, 0);
    assert_real_node(jdoc_root(d), 12.5);
    jdoc_free(d);

    d = parse_ok_n("\"abc\"def", 5, 0);
    assert_str_node(d, jdoc_root(d), "abc", 3);
    jdoc_free(d);

    d = parse_ok_n("truex", 4, 0);
    assert_int_equal(jdoc_root(d)->type, JDOC_TRUE);
    jdoc_free(d);

    /* cut short by len: every one of these must be rejected */
    assert_malformed_n("[1]", 2, 0);
    assert_malformed_n("true", 3, 0);
    assert_malformed_n("null", 2, 0);
    assert_malformed_n("\"abc\"", 4, 0);
    assert_malformed_n("\"\\u00e9\"", 6, 0);
    assert_malformed_n("\"\\", 2, 0);
    assert_malformed_n("1e5", 2, 0);
    assert_malformed_n("-5", 1, 0);
    assert_malformed_n("1.5", 2, 0);
    assert_malformed_n("{\"a\":1}", 6, 0);
    assert_malformed_n("x", 0, 0);
}

static void test_large_document(void **state)
{
    (void)state;
    size_t cap = 10000 * 40 + 16, len = 0;
    char *text = malloc(cap);
    struct jdoc *d;
    const struct jdoc_node *root, *last, *mid;

    assert_non_null(text);
    text[len++] = '[';
    for (int i = 0; i < 10000; i++) {
        int w = snprintf(text + len, cap - len, "%s{\"i\":%d,\"s\":\"v%d\"}", i ? "," : "", i, i);
        assert_true(w > 0 && (size_t)w < cap - len);
        len += (size_t)w;
    }
    text[len++] = ']';

    d = parse_ok_n(text, len, 0);
    free(text);
    root = jdoc_root(d);
    assert_int_equal(root->type, JDOC_ARRAY);
    assert_int_equal(root->len, 10000);
    assert_int_equal(d->nnodes, 1 + 10000 * 5);
    assert_int_equal(d->depth, 2);

    last = jdoc_at(d, root, 9999);
    assert_non_null(last);
    assert_int_equal(last->type, JDOC_OBJECT);
    assert_int_node(jdoc_get(d, last, "i", 1), 9999);
    assert_str_node(d, jdoc_get(d, last, "s", 1), "v9999", 5);
    assert_null(jdoc_at(d, root, 10000));

    mid = jdoc_at(d, root, 4321);
    assert_int_node(jdoc_get(d, mid, "i", 1), 4321);
    assert_str_node(d, jdoc_pointer(d, "/5000/s"), "v5000", 5);
    assert_ptr_equal(jdoc_skip(d, last), d->nodes + d->nnodes);
    jdoc_free(d);
}

static void test_free_null(void **state)
{
    (void)state;
    jdoc_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_reals),
        cmocka_unit_test(test_long_numbers),
        cmocka_unit_test(test_real_underflow_accepted),
        cmocka_unit_test(test_number_overflow_rejected),
        cmocka_unit_test(test_top_level_string),
        cmocka_unit_test(test_grammar_errors),
        cmocka_unit_test(test_raw_nul_in_body_rejected),
        cmocka_unit_test(test_whitespace_everywhere),
        cmocka_unit_test(test_error_line_and_column),
        cmocka_unit_test(test_why_is_bounded),
        cmocka_unit_test(test_string_escapes),
        cmocka_unit_test(test_lone_surrogates_rejected),
        cmocka_unit_test(test_escaped_nul),
        cmocka_unit_test(test_raw_utf8),
        cmocka_unit_test(test_invalid_utf8_rejected),
        cmocka_unit_test(test_str_nul_terminated_and_len),
        cmocka_unit_test(test_long_string),
        cmocka_unit_test(test_containers),
        cmocka_unit_test(test_tape_layout),
        cmocka_unit_test(test_sibling_walk_array),
        cmocka_unit_test(test_empty_containers),
        cmocka_unit_test(test_repeated_key_last_wins),
        cmocka_unit_test(test_get_and_at_on_wrong_types),
        cmocka_unit_test(test_get_uses_key_len),
        cmocka_unit_test(test_depth_reported),
        cmocka_unit_test(test_depth_limit_explicit),
        cmocka_unit_test(test_depth_limit_default),
        cmocka_unit_test(test_pointer),
        cmocka_unit_test(test_pointer_long_key),
        cmocka_unit_test(test_to_json_round_trip),
        cmocka_unit_test(test_to_json_string_with_nul),
        cmocka_unit_test(test_from_json),
        cmocka_unit_test(test_body_not_nul_terminated),
        cmocka_unit_test(test_large_document),
        cmocka_unit_test(test_free_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
