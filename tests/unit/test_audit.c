/*
 * test_audit: the record format and the hash chain: a sealed record verifies,
 * and editing a field, changing the order or linking to the wrong predecessor
 * is detected with a reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"

static void test_record_fields(void **state)
{
    json_t *r = audit_record_new("event.received", "zendesk", "msg_1");
    audit_detail_set_str(r, "reason", "ok");
    audit_detail_set_int(r, "jobs", 2);
    assert_string_equal(json_string_value(json_object_get(r, "kind")), "event.received");
    assert_string_equal(json_string_value(json_object_get(r, "source")), "zendesk");
    const char *t = json_string_value(json_object_get(r, "time"));
    assert_int_equal(strlen(t), 24); /* 2026-11-22T10:15:03.123Z */
    assert_int_equal(t[23], 'Z');
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "detail"), "jobs")), 2);
    json_t *anon = audit_record_new("admin.resume", NULL, NULL);
    assert_null(json_object_get(anon, "source"));
    json_decref(anon);
    json_decref(r);
}

static void test_time_format(void **state)
{
    char out[32];
    audit_format_time(1795861503.123, out);
    assert_string_equal(out, "2026-11-28T10:25:03.123Z");
    audit_format_time(1795861503.9996, out); /* rounds into the next second */
    assert_string_equal(out, "2026-11-28T10:25:04.000Z");
}

static void test_seal_and_check(void **state)
{
    char h1[AUDIT_HASH_HEX_LEN + 1], h2[AUDIT_HASH_HEX_LEN + 1], hc[AUDIT_HASH_HEX_LEN + 1];
    char why[200];
    json_t *a = audit_record_new("event.received", "zd", "e1");
    json_t *b = audit_record_new("event.duplicate", "zd", "e1");
    char *ta = audit_seal(a, 1, AUDIT_GENESIS_HASH, h1);
    char *tb = audit_seal(b, 2, h1, h2);
    assert_non_null(ta);
    assert_non_null(tb);
    assert_string_not_equal(h1, h2);
    assert_int_equal(audit_check(ta, 1, AUDIT_GENESIS_HASH, hc, why, sizeof why), 0);
    assert_string_equal(hc, h1);
    assert_int_equal(audit_check(tb, 2, h1, hc, why, sizeof why), 0);
    /* wrong predecessor: a record was deleted or inserted before it */
    assert_int_equal(audit_check(tb, 2, AUDIT_GENESIS_HASH, hc, why, sizeof why), -1);
    assert_non_null(strstr(why, "prev_hash"));
    /* wrong position */
    assert_int_equal(audit_check(tb, 3, h1, hc, why, sizeof why), -1);
    assert_non_null(strstr(why, "sequence"));
    free(ta);
    free(tb);
    json_decref(a);
    json_decref(b);
}

static void test_edit_detected(void **state)
{
    char h[AUDIT_HASH_HEX_LEN + 1], hc[AUDIT_HASH_HEX_LEN + 1], why[200];
    json_t *a = audit_record_new("event.rejected", "zd", NULL);
    audit_detail_set_int(a, "status", 401);
    char *text = audit_seal(a, 1, AUDIT_GENESIS_HASH, h);
    char *p = strstr(text, "401");
    assert_non_null(p);
    p[2] = '2'; /* 401 -> 402 */
    assert_int_equal(audit_check(text, 1, AUDIT_GENESIS_HASH, hc, why, sizeof why), -1);
    assert_non_null(strstr(why, "edited"));
    free(text);
    json_decref(a);
}

/* A key given twice keeps its hash for a reader that keeps the last value, while
 * SQLite's json_extract (the stored columns' check) reads the first: such a
 * record is refused, so the two can never disagree about what a record says. */
static void test_duplicate_key_refused(void **state)
{
    char h[AUDIT_HASH_HEX_LEN + 1], hc[AUDIT_HASH_HEX_LEN + 1], why[200];
    json_t *a = audit_record_new("job.done", "zd", "e1");
    json_object_set_new(a, "did", json_string("f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c"));
    char *text = audit_seal(a, 1, AUDIT_GENESIS_HASH, h);
    assert_int_equal(audit_check(text, 1, AUDIT_GENESIS_HASH, hc, why, sizeof why), 0);
    /* {"did":"<other>", ...the sealed members...}: the last "did" is the sealed one */
    char forged[2048];
    snprintf(forged, sizeof forged, "{\"did\":\"1e0c45b1-1fea-4552-b41b-ffa9f5eb44c5\",%s",
             text + 1);
    json_t *last_wins = json_loads(forged, 0, NULL);
    assert_non_null(last_wins);
    char *canon = audit_canonical(last_wins), *sealed = audit_canonical(a);
    assert_string_equal(canon, sealed); /* the hash alone would not notice */
    assert_int_equal(audit_check(forged, 1, AUDIT_GENESIS_HASH, hc, why, sizeof why), -1);
    assert_non_null(strstr(why, "key twice"));
    free(canon);
    free(sealed);
    json_decref(last_wins);
    free(text);
    json_decref(a);
}

static void test_canonical_is_order_independent(void **state)
{
    json_t *x = json_pack("{s:s, s:i, s:{s:s}}", "kind", "k", "seq", 1, "detail", "b", "c");
    json_t *y = json_pack("{s:{s:s}, s:i, s:s}", "detail", "b", "c", "seq", 1, "kind", "k");
    json_object_set_new(y, "hash", json_string("ignored"));
    char *cx = audit_canonical(x), *cy = audit_canonical(y);
    assert_string_equal(cx, cy);
    free(cx);
    free(cy);
    json_decref(x);
    json_decref(y);
}

/* jansson's dump is the reference for the canonical form (chains written before
 * the fast serialiser existed were hashed with it): the two must agree byte for
 * byte on every value a record can hold. */
static void assert_canonical_matches_jansson(json_t *r)
{
    json_t *copy = json_deep_copy(r);
    json_object_del(copy, "hash");
    char *want = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    char *got = audit_canonical(r);
    assert_non_null(want);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(want);
    free(got);
    json_decref(copy);
}

static void test_canonical_matches_jansson(void **state)
{
    (void)state;
    /* Every escape class: quotes, backslash, the short escapes, other control
     * characters, DEL, slash, two- three- and four-byte UTF-8, empty values. */
    json_t *r = audit_record_new("event.received", "zen\"desk\\", "id/1\b\f\n\r\t\x01\x1f\x7f");
    audit_detail_set_str(r, "reason", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x9e \xef\xbf\xbf");
    audit_detail_set_str(r, "", "");
    audit_detail_set_int(r, "neg", -9223372036854775807LL - 1);
    audit_detail_set_int(r, "big", 9223372036854775807LL);
    json_t *d = json_object_get(r, "detail");
    json_object_set_new(d, "flags", json_pack("[bbn[]{}{s:i}]", 1, 0, "z", 1));
    json_object_set_new(d, "errors", json_pack("[{s:s,s:s}]", "title", "Bad", "code", "100"));
    json_object_set_new(d, "a\xc3\xa9", json_string("key order is by bytes"));
    json_object_set_new(d, "aa", json_string("prefix sorts first"));
    json_object_set_new(d, "A", json_string("upper case before lower"));
    json_object_set_new(r, "hash", json_string("skipped"));
    assert_canonical_matches_jansson(r);

    /* A real goes through jansson's own formatting. */
    json_object_set_new(d, "ratio", json_real(0.1));
    assert_canonical_matches_jansson(r);
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_fields),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_seal_and_check),
        cmocka_unit_test(test_edit_detected),
        cmocka_unit_test(test_duplicate_key_refused),
        cmocka_unit_test(test_canonical_is_order_independent),
        cmocka_unit_test(test_canonical_matches_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
