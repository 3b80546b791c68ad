/*
 * test_jout: jout_dump_sorted writes the same bytes as jansson's json_dumps
 * (compact, sorted keys, with and without JSON_ENSURE_ASCII) for every kind of
 * value, over random strings from the whole code point range; skip and replace
 * act on top-level members only; what the fast path cannot format falls back
 * to jansson; invalid UTF-8 gives NULL; the string writer's escapes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jout.h"

/* jansson's text for v with the same options applied by hand. */
static char *reference(json_t *v, bool ascii, const char *skip, const char *secret)
{
    json_t *copy = json_deep_copy(v);
    if (skip)
        json_object_del(copy, skip);
    if (secret && json_object_get(copy, secret))
        json_object_set_new(copy, secret, json_string("[gone]"));
    char *s = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS | (ascii ? JSON_ENSURE_ASCII : 0));
    json_decref(copy);
    return s;
}

static bool is_secret(const char *key, void *ctx)
{
    return strcmp(key, (const char *)ctx) == 0;
}

static void assert_same_as_jansson(json_t *v, const char *skip, const char *secret)
{
    for (int ascii = 0; ascii <= 1; ascii++) {
        struct jout_opts o = {.ascii = ascii, .skip = skip};
        if (secret) {
            o.replace = is_secret;
            o.replacement = "[gone]";
            o.ctx = (void *)secret;
        }
        char *want = reference(v, ascii, skip, secret);
        char *got = jout_dump_sorted(v, &o);
        assert_non_null(want);
        assert_non_null(got);
        assert_string_equal(got, want);
        free(want);
        free(got);
    }
}

static void test_every_value_kind(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:s, s:s, s:s, s:I, s:I, s:b, s:b, s:n, s:[], s:{}, s:[i,[s],{s:i}]}",
                          "quote\"back\\slash", "/ \b\f\n\r\t \x01\x1f\x7f", "utf8",
                          "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x9e \xef\xbf\xbf", "", "", "min",
                          (json_int_t)(-9223372036854775807LL - 1), "max",
                          (json_int_t)9223372036854775807LL, "t", 1, "f", 0, "null", "empty_a",
                          "empty_o", "nested", 1, "x", "deep", 2);
    assert_non_null(v);
    /* Key order is by bytes: upper case, then a prefix, then longer keys,
     * then non-ASCII keys. */
    json_object_set_new(v, "a\xc3\xa9", json_string("e acute"));
    json_object_set_new(v, "aa", json_string("prefix"));
    json_object_set_new(v, "a", json_string("shortest"));
    json_object_set_new(v, "A", json_string("upper"));
    assert_same_as_jansson(v, NULL, NULL);
    assert_same_as_jansson(v, "utf8", NULL);
    assert_same_as_jansson(v, NULL, "max");
    /* skip and replace apply at the top level only. */
    json_object_set_new(v, "inner", json_pack("{s:s}", "max", "kept"));
    assert_same_as_jansson(v, "t", "max");
    char *inner = jout_dump_sorted(json_object_get(v, "inner"), NULL);
    assert_string_equal(inner, "{\"max\":\"kept\"}");
    free(inner);
    json_decref(v);
}

static void test_fallbacks(void **state)
{
    (void)state;
    /* A real, and nesting deeper than JOUT_MAX_DEPTH: jansson formats them. */
    json_t *v = json_pack("{s:f, s:[f]}", "ratio", 0.1, "list", 1e300);
    assert_same_as_jansson(v, NULL, "ratio");
    json_t *deep = json_array();
    json_t *cur = deep;
    for (int i = 0; i < JOUT_MAX_DEPTH + 5; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    json_object_set_new(v, "deep", deep);
    assert_same_as_jansson(v, NULL, NULL);
    json_decref(v);

    /* A string that is not UTF-8 (only json_stringn_nocheck makes one). */
    json_t *bad = json_pack("{s:o}", "k", json_stringn_nocheck("\xff\xfe", 2));
    assert_null(jout_dump_sorted(bad, NULL));
    json_decref(bad);
}

static uint32_t rand_state = 12345;

static uint32_t next_rand(void)
{
    rand_state = rand_state * 1103515245u + 12345u;
    return rand_state >> 8;
}

/* Writes to out (13 bytes free) the JSON escape of cp ("\\uXXXX", a surrogate pair above
 * U+FFFF): jansson decodes the text, so the UTF-8 comes from it, not from
 * code under test. */
static size_t put_escape(uint32_t cp, char *out)
{
    if (cp < 0x10000)
        return (size_t)snprintf(out, 13, "\\u%04X", (unsigned)cp);
    uint32_t v = cp - 0x10000;
    return (size_t)snprintf(out, 13, "\\u%04X\\u%04X", (unsigned)(0xD800 | (v >> 10)),
                            (unsigned)(0xDC00 | (v & 0x3FF)));
}

/* A random string of up to 40 code points from all planes (never U+0000 or a
 * lone surrogate), as a new jansson string. */
static json_t *random_string(void)
{
    char text[40 * 12 + 3];
    size_t n = 0;
    text[n++] = '"';
    int chars = (int)(next_rand() % 40);
    for (int c = 0; c < chars; c++) {
        uint32_t cp;
        switch (next_rand() % 4) {
        case 0:
            cp = next_rand() % 0x80;
            break;
        case 1:
            cp = next_rand() % 0x800;
            break;
        case 2:
            cp = next_rand() % 0x10000;
            break;
        default:
            cp = 0x10000 + next_rand() % 0x100000;
            break;
        }
        if (cp >= 0xD800 && cp <= 0xDFFF)
            cp = 0xFFFD;
        if (cp == 0)
            cp = 0x20;
        n += put_escape(cp, text + n);
    }
    text[n++] = '"';
    text[n] = '\0';
    json_t *s = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(s);
    return s;
}

static void test_random_strings(void **state)
{
    (void)state;
    /* Random keys and values, and objects larger than the serialiser sorts
     * without an allocation. */
    for (int round = 0; round < 300; round++) {
        json_t *v = json_object();
        int members = 1 + (int)(next_rand() % 60);
        for (int m = 0; m < members; m++) {
            json_t *key = random_string();
            json_object_set_new(v, json_string_value(key), random_string());
            json_decref(key);
        }
        assert_same_as_jansson(v, NULL, NULL);
        json_decref(v);
    }
}

static void test_string_writer(void **state)
{
    (void)state;
    struct jout o = {0};
    jout_string(&o, "a\"b\\c\n\x01\xc3\xa9\xf0\x9f\x93\x9e", 13, true);
    jout_raw(&o, ",", 1);
    jout_string(&o, "\xc3\xa9", 2, false);
    jout_raw(&o, ",", 1);
    jout_int(&o, -42);
    assert_false(o.failed);
    assert_string_equal(o.p, "\"a\\\"b\\\\c\\n\\u0001\\u00E9\\uD83D\\uDCDE\",\"\xc3\xa9\",-42");
    /* Invalid UTF-8 (a lone continuation byte, an overlong form, a surrogate):
     * the buffer is marked failed and ignores later writes. */
    const char *bad[] = {"\x80", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct jout b = {0};
        jout_string(&b, bad[i], strlen(bad[i]), i % 2 == 0);
        assert_true(b.failed);
        size_t len = b.len;
        jout_cstr(&b, "more");
        assert_int_equal(b.len, len);
        free(b.p);
    }
    free(o.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_value_kind),
        cmocka_unit_test(test_fallbacks),
        cmocka_unit_test(test_random_strings),
        cmocka_unit_test(test_string_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
