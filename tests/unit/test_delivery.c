/*
 * test_delivery: the coalescing rule that decides which pending jobs a later job
 * replaces. A wrong answer either sends stale routing (too lax) or sends every
 * update (too strict), so each shape of job is checked. Also: DIDWW's errors kept
 * in delivery.paused never carry the API key. delivery.c is included to reach its
 * static functions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "delivery.c"

static struct store_job job(const char *method, const char *path, const char *body)
{
    struct store_job j = {0};
    j.method = (char *)method;
    j.path = (char *)path;
    j.body = (char *)body;
    return j;
}

#define DID "/v3/dids/f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c"
#define ROUTE_T(t)                                                                                 \
    "{\"data\":{\"type\":\"dids\",\"id\":\"x\",\"relationships\":{\"voice_in_trunk\":{\"data\":"   \
    "{\"type\":\"voice_in_trunks\",\"id\":\"" t "\"}},\"voice_in_trunk_group\":{\"data\":null}}}}"
#define DESC(d)                                                                                    \
    "{\"data\":{\"type\":\"dids\",\"id\":\"x\",\"attributes\":{\"description\":\"" d "\"}}}"

static void test_later_route_replaces_earlier_route(void **state)
{
    struct store_job a = job("PATCH", DID, ROUTE_T("1")), b = job("PATCH", DID, ROUTE_T("2"));
    assert_true(delivery_supersedes(&b, &a));
    assert_true(delivery_supersedes(&a, &b)); /* the rule is about fields, not values */
}

static void test_different_fields_do_not_replace(void **state)
{
    struct store_job route = job("PATCH", DID, ROUTE_T("1")), desc = job("PATCH", DID, DESC("x"));
    assert_false(delivery_supersedes(&desc, &route));
    assert_false(delivery_supersedes(&route, &desc));
    /* a later change setting more fields covers an earlier one setting fewer */
    struct store_job both = job("PATCH", DID,
                                "{\"data\":{\"attributes\":{\"description\":\"y\"},"
                                "\"relationships\":{\"voice_in_trunk\":{\"data\":null},"
                                "\"voice_in_trunk_group\":{\"data\":null}}}}");
    assert_true(delivery_supersedes(&both, &route));
    assert_true(delivery_supersedes(&both, &desc));
    assert_false(delivery_supersedes(&desc, &both));
}

static void test_only_patch_of_the_same_path(void **state)
{
    struct store_job a = job("PATCH", DID, ROUTE_T("1"));
    struct store_job other =
        job("PATCH", "/v3/dids/1e0c45b1-1fea-4552-b41b-ffa9f5eb44c5", ROUTE_T("2"));
    assert_false(delivery_supersedes(&other, &a));
    /* link POST/DELETE add and remove members: order matters, never coalesced */
    const char *link = "/v3/voice_in_trunk_groups/g/relationships/voice_in_trunks";
    struct store_job add = job("POST", link, "{\"data\":[]}");
    struct store_job del = job("DELETE", link, "{\"data\":[]}");
    assert_false(delivery_supersedes(&del, &add));
    assert_false(delivery_supersedes(&add, &add));
    /* a group replacement replaces an earlier replacement of the same group */
    const char *group = "/v3/voice_in_trunk_groups/g";
    struct store_job s1 =
        job("PATCH", group, "{\"data\":{\"relationships\":{\"voice_in_trunks\":{\"data\":[]}}}}");
    struct store_job s2 = job("PATCH", group,
                              "{\"data\":{\"relationships\":{\"voice_in_trunks\":{\"data\":"
                              "[{\"type\":\"voice_in_trunks\",\"id\":\"t\"}]}}}}");
    assert_true(delivery_supersedes(&s2, &s1));
}

static void test_unreadable_bodies_never_replace(void **state)
{
    struct store_job a = job("PATCH", DID, ROUTE_T("1"));
    struct store_job junk = job("PATCH", DID, "not json");
    struct store_job none = job("PATCH", DID, NULL);
    assert_false(delivery_supersedes(&junk, &a));
    assert_false(delivery_supersedes(&a, &junk));
    assert_false(delivery_supersedes(&none, &a));
}

static void test_pause_errors_never_carry_the_key(void **state)
{
    const char *key = "k3y-7f2a";
    json_t *errors = json_pack("[{s:s, s:s, s:s}, {s:s}]", "status", "401", "title", "Unauthorized",
                               "detail", "Api-Key k3y-7f2a is not valid (k3y-7f2a)", "code", "401");
    json_t *clean = delivery_errors_without_key(errors, key);
    assert_non_null(clean);
    char *text = json_dumps(clean, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "[{\"detail\":\"Api-Key [redacted] is not valid ([redacted])\","
                              "\"status\":\"401\",\"title\":\"Unauthorized\"},{\"code\":\"401\"}]");
    free(text);
    /* the answer as parsed is left as it was */
    assert_non_null(
        strstr(json_string_value(json_object_get(json_array_get(errors, 0), "detail")), key));
    json_decref(clean);
    json_t *none = json_array();
    assert_null(delivery_errors_without_key(none, key));
    assert_null(delivery_errors_without_key(NULL, key));
    json_decref(none);
    json_decref(errors);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_later_route_replaces_earlier_route),
        cmocka_unit_test(test_different_fields_do_not_replace),
        cmocka_unit_test(test_only_patch_of_the_same_path),
        cmocka_unit_test(test_unreadable_bodies_never_replace),
        cmocka_unit_test(test_pause_errors_never_carry_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
