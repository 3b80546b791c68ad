/*
 * Unit tests for src/jsonapi.c: condensing the JSON:API error documents of
 * didww-api-notes.md (422 with a pointer, 404 without) and anything that is not one,
 * the DID before-state from the seed 002 "Get DID" answer (relationships without data
 * stay unknown) and from a document of the voice_in_* generation, lookup by number,
 * the no-op decision for routing to a trunk (both generations), unrouting and
 * attributes, and the id substitution in a planned body. The tests/fixtures/didww/ files
 * (hookline's own answers in the shapes DIDWW's SDKs record: a DID with and without
 * include, the number filter, 401/404/422/429 errors) are parsed as they are on disk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonapi.h"

#define DID_ID "44957076-778a-4802-b60c-d22db0cda284"
#define TRUNK_A "d9b6ec47-0b72-452b-b4b4-23dd9d5be7e6"
#define TRUNK_B "ca7da6d0-aa0b-447d-8fc0-1bc58b51298c"
#define GROUP_A "714e8148-0aea-4cb6-8680-bd1d06453418"

/* The first response of seed 002 ("Get DID"), verbatim apart from whitespace. */
static const char seed_002_did[] =
    "{\"data\":{\"id\":\"" DID_ID "\",\"type\":\"dids\",\"attributes\":{"
    "\"blocked\":false,\"capacity_limit\":1,\"description\":\"string\",\"terminated\":false,"
    "\"awaiting_registration\":false,\"number\":\"437xxxxxxxxx\","
    "\"expires_at\":\"2017-06-25T08:21:41.795Z\",\"channels_included_count\":2,"
    "\"created_at\":\"2017-06-25T08:21:41.795Z\",\"pending_removal\":false,"
    "\"dedicated_channels_count\":0},"
    "\"relationships\":{"
    "\"did_group\":{\"links\":{\"self\":\"https://api.didww.com/v3/dids/" DID_ID
    "/relationships/did_group\",\"related\":\"https://api.didww.com/v3/dids/" DID_ID
    "/did_group\"}},"
    "\"order\":{\"links\":{\"self\":\"https://api.didww.com/v3/dids/" DID_ID
    "/relationships/order\",\"related\":\"https://api.didww.com/v3/dids/" DID_ID "/order\"}},"
    "\"trunk\":{\"links\":{\"self\":\"https://api.didww.com/v3/dids/" DID_ID
    "/relationships/trunk\",\"related\":\"https://api.didww.com/v3/dids/" DID_ID "/trunk\"}},"
    "\"trunk_group\":{\"links\":{\"self\":\"https://api.didww.com/v3/dids/" DID_ID
    "/relationships/trunk_group\",\"related\":\"https://api.didww.com/v3/dids/" DID_ID
    "/trunk_group\"}},"
    "\"capacity_pool\":{\"links\":{\"self\":\"https://api.didww.com/v3/dids/" DID_ID
    "/relationships/capacity_pool\",\"related\":\"https://api.didww.com/v3/dids/" DID_ID
    "/capacity_pool\"}},"
    "\"shared_capacity_group\":{\"links\":{\"self\":\"https://api.didww.com/v3/dids/" DID_ID
    "/relationships/shared_capacity_group\",\"related\":\"https://api.didww.com/v3/dids/" DID_ID
    "/shared_capacity_group\"}}}}}";

/* The same DID in the 2022-05-10 generation, fetched with its relationship data. */
static const char voice_in_did[] =
    "{\"data\":{\"id\":\"" DID_ID "\",\"type\":\"dids\",\"attributes\":{"
    "\"capacity_limit\":null,\"description\":null,\"terminated\":false,"
    "\"number\":\"4379001234567\",\"billing_cycles_count\":null,\"dedicated_channels_count\":0},"
    "\"relationships\":{"
    "\"voice_in_trunk\":{\"links\":{\"self\":\"x\"},\"data\":{\"type\":\"voice_in_trunks\","
    "\"id\":\"" TRUNK_A "\"}},"
    "\"voice_in_trunk_group\":{\"data\":null},"
    "\"capacity_pool\":{\"data\":null},"
    "\"shared_capacity_group\":{\"links\":{\"self\":\"y\"}}}},"
    "\"meta\":{\"api_version\":\"2022-05-10\"}}";

/* Dumps v compactly and compares with want (key order included). */
static void assert_dump(const json_t *v, const char *want)
{
    char *got = json_dumps(v, JSON_COMPACT);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static json_t *errors_of(const char *body)
{
    json_t *e = jsonapi_errors(body, body ? strlen(body) : 0);
    assert_non_null(e);
    assert_true(json_is_array(e));
    return e;
}

static void test_errors_422(void **state)
{
    static const char body[] =
        "{\"errors\":[{\"title\":\"must be less than or equal to 32767\",\n"
        "            \"detail\":\"capacity_limit - must be less than or equal to 32767\",\n"
        "            \"code\":\"100\",\"source\":{\"pointer\":\"/data/attributes/capacity_limit\"},"
        "\"status\":\"422\"}]}";
    (void)state;
    json_t *e = errors_of(body);
    assert_dump(e, "[{\"status\":\"422\",\"code\":\"100\","
                   "\"title\":\"must be less than or equal to 32767\","
                   "\"detail\":\"capacity_limit - must be less than or equal to 32767\","
                   "\"pointer\":\"/data/attributes/capacity_limit\"}]");
    json_decref(e);
}

static void test_errors_404(void **state)
{
    static const char body[] =
        "{\"errors\":[{\"title\":\"Record not found\",\"detail\":\"The record "
        "identified by " DID_ID " could not be found.\",\"code\":\"404\","
        "\"status\":\"404\"}]}";
    (void)state;
    json_t *e = errors_of(body);
    assert_dump(e, "[{\"status\":\"404\",\"code\":\"404\",\"title\":\"Record not found\","
                   "\"detail\":\"The record identified by " DID_ID " could not be found.\"}]");
    json_decref(e);
}

static void test_errors_not_a_document(void **state)
{
    static const char *const bodies[] = {
        "<html><body>502 Bad Gateway</body></html>",
        "",
        "{}",
        "[]",
        "{\"errors\":\"nope\"}",
        "{\"errors\":{\"title\":\"x\"}}",
        "{\"errors\":[1,\"two\",null]}",
        "{\"data\":{\"type\":\"dids\",\"id\":\"x\"}}",
        "{\"errors\":[{\"title\":\"unterminated",
    };
    (void)state;
    json_t *e = jsonapi_errors(NULL, 0);
    assert_non_null(e);
    assert_int_equal(json_array_size(e), 0);
    json_decref(e);
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        e = errors_of(bodies[i]);
        if (json_array_size(e) != 0)
            fail_msg("body %zu gave %zu errors", i, json_array_size(e));
        json_decref(e);
    }
    /* a length shorter than the text is honoured */
#define ONE_ERROR "{\"errors\":[{\"code\":\"1\"}]}"
    e = jsonapi_errors(ONE_ERROR "garbage", sizeof ONE_ERROR - 1);
#undef ONE_ERROR
    assert_int_equal(json_array_size(e), 1);
    json_decref(e);
}

static void test_errors_limits(void **state)
{
    char body[8192];
    size_t n = 0;
    (void)state;

    /* 15 errors -> 10; numeric status -> text; members of other types left out */
    n += (size_t)snprintf(body + n, sizeof body - n, "{\"errors\":[");
    for (int i = 0; i < 15; i++)
        n += (size_t)snprintf(body + n, sizeof body - n,
                              "%s{\"status\":422,\"code\":\"%d\",\"title\":[1],\"source\":{}}",
                              i ? "," : "", i);
    snprintf(body + n, sizeof body - n, "]}");
    json_t *e = errors_of(body);
    assert_int_equal(json_array_size(e), 10);
    assert_dump(json_array_get(e, 9), "{\"status\":\"422\",\"code\":\"9\"}");
    json_decref(e);

    /* strings cut to 300 bytes, never inside a UTF-8 sequence: 299 'a' then "é" (2 bytes) */
    char title[400];
    memset(title, 'a', 299);
    memcpy(title + 299, "\xc3\xa9zzzz", 7);
    snprintf(body, sizeof body, "{\"errors\":[{\"title\":\"%s\",\"detail\":\"%.350s\"}]}", title,
             "0123456789012345678901234567890123456789012345678901234567890123456789"
             "0123456789012345678901234567890123456789012345678901234567890123456789"
             "0123456789012345678901234567890123456789012345678901234567890123456789"
             "0123456789012345678901234567890123456789012345678901234567890123456789"
             "0123456789012345678901234567890123456789012345678901234567890123456789");
    e = errors_of(body);
    assert_int_equal(json_array_size(e), 1);
    const char *t = json_string_value(json_object_get(json_array_get(e, 0), "title"));
    assert_non_null(t);
    assert_int_equal(strlen(t), 299);
    assert_int_equal(strspn(t, "a"), 299);
    const char *d = json_string_value(json_object_get(json_array_get(e, 0), "detail"));
    assert_non_null(d);
    assert_int_equal(strlen(d), 300);
    json_decref(e);
}

static void test_did_state_from_seed(void **state)
{
    char why[128] = "";
    (void)state;
    json_t *s = jsonapi_did_state(seed_002_did, strlen(seed_002_did), why, sizeof why);
    assert_non_null(s);
    /* relationships listed only with links are unknown: absent, not null; the 2017
     * pending_removal is not billing_cycles_count */
    assert_dump(s, "{\"id\":\"" DID_ID "\",\"number\":\"437xxxxxxxxx\","
                   "\"description\":\"string\",\"capacity_limit\":1,"
                   "\"dedicated_channels_count\":0,\"terminated\":false}");
    assert_null(json_object_get(s, "trunk"));
    assert_null(json_object_get(s, "trunk_group"));
    assert_null(json_object_get(s, "billing_cycles_count"));
    json_decref(s);
}

static void test_did_state_voice_in(void **state)
{
    char why[128] = "";
    (void)state;
    json_t *s = jsonapi_did_state(voice_in_did, strlen(voice_in_did), why, sizeof why);
    assert_non_null(s);
    assert_dump(s, "{\"id\":\"" DID_ID "\",\"number\":\"4379001234567\","
                   "\"trunk\":\"" TRUNK_A "\",\"trunk_group\":null,\"capacity_pool\":null,"
                   "\"description\":null,\"capacity_limit\":null,"
                   "\"dedicated_channels_count\":0,\"billing_cycles_count\":null,"
                   "\"terminated\":false}");
    json_decref(s);

    /* legacy names with data work the same way */
    static const char legacy[] =
        "{\"data\":{\"id\":\"d1\",\"type\":\"dids\",\"attributes\":{\"number\":\"1\"},"
        "\"relationships\":{\"trunk\":{\"data\":null},\"trunk_group\":{\"data\":"
        "{\"type\":\"trunk_groups\",\"id\":\"" GROUP_A "\"}}}}}";
    s = jsonapi_did_state(legacy, strlen(legacy), why, sizeof why);
    assert_non_null(s);
    assert_dump(s,
                "{\"id\":\"d1\",\"number\":\"1\",\"trunk\":null,\"trunk_group\":\"" GROUP_A "\"}");
    json_decref(s);
}

static void test_did_state_rejects_non_did(void **state)
{
    static const char *const bodies[] = {
        "not json",
        "[]",
        "{\"errors\":[{\"status\":\"404\"}]}",
        "{\"data\":[]}",
        "{\"data\":{\"type\":\"trunks\",\"id\":\"x\"}}",
        "{\"data\":{\"type\":\"dids\"}}",
        "{\"data\":{\"type\":\"dids\",\"id\":\"\"}}",
        "{\"data\":{\"type\":\"dids\",\"id\":\"x\",\"attributes\":[]}}",
    };
    char why[128];
    (void)state;
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        why[0] = '\0';
        json_t *s = jsonapi_did_state(bodies[i], strlen(bodies[i]), why, sizeof why);
        if (s)
            fail_msg("body %zu accepted", i);
        assert_true(why[0] != '\0');
    }
    assert_null(jsonapi_did_state(NULL, 0, NULL, 0)); /* why may be NULL */
}

static void test_find_did(void **state)
{
    char id[64], why[128];
    (void)state;
    static const char none[] = "{\"data\":[],\"meta\":{\"total_records\":0}}";
    static const char one[] = "{\"data\":[{\"id\":\"" DID_ID "\",\"type\":\"dids\","
                              "\"attributes\":{\"number\":\"4379001234567\"}}]}";

    assert_int_equal(
        jsonapi_find_did(none, strlen(none), "4379001234567", id, sizeof id, why, sizeof why), 0);
    assert_int_equal(
        jsonapi_find_did(one, strlen(one), "4379001234567", id, sizeof id, why, sizeof why), 1);
    assert_string_equal(id, DID_ID);
    /* a leading '+' on either side is not a different number */
    id[0] = '\0';
    assert_int_equal(
        jsonapi_find_did(one, strlen(one), "+4379001234567", id, sizeof id, why, sizeof why), 1);
    assert_string_equal(id, DID_ID);
    /* a prefix or another number is not a match */
    assert_int_equal(
        jsonapi_find_did(one, strlen(one), "437900123456", id, sizeof id, why, sizeof why), 0);
    assert_int_equal(
        jsonapi_find_did(one, strlen(one), "43790012345678", id, sizeof id, why, sizeof why), 0);
    /* malformed documents */
    why[0] = '\0';
    assert_int_equal(jsonapi_find_did("<html>", 6, "1", id, sizeof id, why, sizeof why), -1);
    assert_true(why[0] != '\0');
    static const char obj[] = "{\"data\":{\"id\":\"x\",\"type\":\"dids\"}}";
    assert_int_equal(jsonapi_find_did(obj, strlen(obj), "1", id, sizeof id, why, sizeof why), -1);
    /* an id that does not fit is an error, never a truncated id */
    char small[8];
    assert_int_equal(
        jsonapi_find_did(one, strlen(one), "4379001234567", small, sizeof small, why, sizeof why),
        -1);
}

/* The state for the noop tests: DID_ID routed to TRUNK_A, no group, attributes known. */
static json_t *routed_state(void)
{
    char why[128];
    json_t *s = jsonapi_did_state(voice_in_did, strlen(voice_in_did), why, sizeof why);
    assert_non_null(s);
    return s;
}

static void test_noop_route_to_trunk(void **state)
{
    json_t *s = routed_state();
    (void)state;
    /* both generations map onto the same state */
    assert_true(jsonapi_patch_is_noop(
        "{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID "\",\"relationships\":{"
        "\"voice_in_trunk\":{\"data\":{\"type\":\"voice_in_trunks\",\"id\":\"" TRUNK_A "\"}},"
        "\"voice_in_trunk_group\":{\"data\":null}}}}",
        s));
    assert_true(jsonapi_patch_is_noop(
        "{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID "\",\"relationships\":{"
        "\"trunk\":{\"data\":{\"type\":\"trunks\",\"id\":\"" TRUNK_A "\"}},"
        "\"trunk_group\":{\"data\":null}}}}",
        s));
    /* named by number */
    assert_true(jsonapi_patch_is_noop(
        "{\"data\":{\"type\":\"dids\",\"id\":\"number:4379001234567\",\"relationships\":{"
        "\"trunk\":{\"data\":{\"type\":\"trunks\",\"id\":\"" TRUNK_A "\"}}}}}",
        s));
    /* another trunk */
    assert_false(jsonapi_patch_is_noop(
        "{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID "\",\"relationships\":{"
        "\"voice_in_trunk\":{\"data\":{\"type\":\"voice_in_trunks\",\"id\":\"" TRUNK_B "\"}},"
        "\"voice_in_trunk_group\":{\"data\":null}}}}",
        s));
    /* routing to a group while the DID is on a trunk */
    assert_false(jsonapi_patch_is_noop(
        "{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID "\",\"relationships\":{"
        "\"trunk\":{\"data\":null},"
        "\"trunk_group\":{\"data\":{\"type\":\"trunk_groups\",\"id\":\"" GROUP_A "\"}}}}}",
        s));
    /* state of another DID (by id or by number) */
    assert_false(jsonapi_patch_is_noop(
        "{\"data\":{\"type\":\"dids\",\"id\":\"" TRUNK_B "\",\"relationships\":{"
        "\"trunk\":{\"data\":{\"type\":\"trunks\",\"id\":\"" TRUNK_A "\"}}}}}",
        s));
    assert_false(jsonapi_patch_is_noop(
        "{\"data\":{\"type\":\"dids\",\"id\":\"number:4379001234568\",\"relationships\":{"
        "\"trunk\":{\"data\":{\"type\":\"trunks\",\"id\":\"" TRUNK_A "\"}}}}}",
        s));
    /* a relationship the state does not know (shared_capacity_group had no data) */
    assert_false(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID
                                       "\",\"relationships\":{"
                                       "\"shared_capacity_group\":{\"data\":null}}}}",
                                       s));
    assert_false(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID
                                       "\",\"relationships\":{"
                                       "\"address_verification\":{\"data\":null}}}}",
                                       s));
    json_decref(s);

    /* the seed's state knows no routing at all: never a no-op */
    char why[128];
    s = jsonapi_did_state(seed_002_did, strlen(seed_002_did), why, sizeof why);
    assert_non_null(s);
    assert_false(jsonapi_patch_is_noop(
        "{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID "\",\"relationships\":{"
        "\"trunk\":{\"data\":null},\"trunk_group\":{\"data\":null}}}}",
        s));
    json_decref(s);
}

static void test_noop_unroute(void **state)
{
    static const char unroute[] =
        "{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID "\",\"relationships\":{"
        "\"voice_in_trunk\":{\"data\":null},\"voice_in_trunk_group\":{\"data\":null}}}}";
    (void)state;
    json_t *s = routed_state();
    assert_false(jsonapi_patch_is_noop(unroute, s)); /* still on TRUNK_A */
    json_object_set_new(s, "trunk", json_null());
    assert_true(jsonapi_patch_is_noop(unroute, s));
    /* a trunk id where the plan says null, and the reverse */
    json_object_set_new(s, "trunk_group", json_string(GROUP_A));
    assert_false(jsonapi_patch_is_noop(unroute, s));
    json_decref(s);
}

static void test_noop_attributes(void **state)
{
    (void)state;
    json_t *s = routed_state();
    assert_true(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID
                                      "\",\"attributes\":{\"capacity_limit\":null,"
                                      "\"description\":null,\"terminated\":false,"
                                      "\"dedicated_channels_count\":0,"
                                      "\"billing_cycles_count\":null}}}",
                                      s));
    assert_false(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID
                                       "\",\"attributes\":{\"capacity_limit\":5}}}",
                                       s));
    assert_false(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID
                                       "\",\"attributes\":{\"description\":\"\"}}}",
                                       s));
    assert_false(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID
                                       "\",\"attributes\":{\"terminated\":true}}}",
                                       s));
    /* an attribute the state does not carry */
    assert_false(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID
                                       "\",\"attributes\":{\"pending_removal\":false}}}",
                                       s));
    /* attributes and relationships together: every one must match */
    assert_true(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID
                                      "\",\"attributes\":{\"terminated\":false},"
                                      "\"relationships\":{\"capacity_pool\":{\"data\":null}}}}",
                                      s));
    assert_false(jsonapi_patch_is_noop(
        "{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID "\",\"attributes\":{\"terminated\":false},"
        "\"relationships\":{\"capacity_pool\":{\"data\":{\"type\":\"capacity_pools\","
        "\"id\":\"p1\"}}}}}",
        s));
    /* the state after a capacity change */
    json_object_set_new(s, "capacity_limit", json_integer(5));
    assert_true(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID
                                      "\",\"attributes\":{\"capacity_limit\":5}}}",
                                      s));
    assert_false(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID
                                       "\",\"attributes\":{\"capacity_limit\":null}}}",
                                       s));

    /* not decidable: nothing to compare, other resource types, bad input */
    assert_false(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID "\"}}", s));
    assert_false(
        jsonapi_patch_is_noop("{\"data\":{\"type\":\"voice_in_trunk_groups\",\"id\":\"" GROUP_A
                              "\",\"relationships\":{\"voice_in_trunks\":{\"data\":[]}}}}",
                              s));
    assert_false(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID
                                       "\",\"relationships\":{\"trunk\":{\"data\":[]}}}}",
                                       s));
    assert_false(jsonapi_patch_is_noop("not json", s));
    assert_false(jsonapi_patch_is_noop(NULL, s));
    assert_false(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID
                                       "\",\"attributes\":{\"terminated\":false}}}",
                                       NULL));
    json_decref(s);
}

/* Reads tests/fixtures/didww/name (the source tree is $HOOKLINE_SOURCE_DIR); caller frees. */
static char *fixture(const char *name, size_t *len)
{
    const char *src = getenv("HOOKLINE_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/didww/%s", src ? src : ".", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = malloc(65536);
    assert_non_null(buf);
    *len = fread(buf, 1, 65535, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

#define FX_DID "7d3c2a10-5b1e-4c8f-9a42-0e6d1f2b3c4d"
#define FX_TRUNK "c41f0e2a-93d7-4b65-8e1c-2a7b9d0f6e53"
#define FX_GROUP "2b8e6f14-0c3a-4d97-b5e2-91f7a6c0d3e8"
#define FX_NUMBER "16091609000000417"

/* A DID read without include: routing unknown, so no routing change is a no-op; an
 * attribute hookline does not know (emergency_enabled) is ignored. With include, the
 * routing is known either way and an identical route is a no-op. */
static void test_fixture_dids(void **state)
{
    static const char route_trunk[] =
        "{\"data\":{\"type\":\"dids\",\"id\":\"" FX_DID "\",\"relationships\":{"
        "\"voice_in_trunk\":{\"data\":{\"type\":\"voice_in_trunks\",\"id\":\"" FX_TRUNK "\"}},"
        "\"voice_in_trunk_group\":{\"data\":null}}}}";
    static const char route_group[] =
        "{\"data\":{\"type\":\"dids\",\"id\":\"" FX_DID "\",\"relationships\":{"
        "\"voice_in_trunk\":{\"data\":null},\"voice_in_trunk_group\":{\"data\":{\"type\":"
        "\"voice_in_trunk_groups\",\"id\":\"" FX_GROUP "\"}}}}}";
    char why[128] = "";
    size_t len;
    (void)state;

    char *body = fixture("did_without_include.json", &len);
    json_t *s = jsonapi_did_state(body, len, why, sizeof why);
    assert_non_null(s);
    assert_dump(s, "{\"id\":\"" FX_DID "\",\"number\":\"" FX_NUMBER "\","
                   "\"description\":\"Front desk\",\"capacity_limit\":4,"
                   "\"dedicated_channels_count\":0,\"billing_cycles_count\":null,"
                   "\"terminated\":false}");
    assert_false(jsonapi_patch_is_noop(route_trunk, s));
    json_decref(s);
    free(body);

    body = fixture("did_include_trunk.json", &len);
    s = jsonapi_did_state(body, len, why, sizeof why);
    assert_non_null(s);
    assert_string_equal(json_string_value(json_object_get(s, "trunk")), FX_TRUNK);
    assert_true(json_is_null(json_object_get(s, "trunk_group")));
    assert_true(jsonapi_patch_is_noop(route_trunk, s));
    assert_false(jsonapi_patch_is_noop(route_group, s));
    json_decref(s);
    free(body);

    body = fixture("did_include_group.json", &len);
    s = jsonapi_did_state(body, len, why, sizeof why);
    assert_non_null(s);
    assert_true(json_is_null(json_object_get(s, "trunk")));
    assert_string_equal(json_string_value(json_object_get(s, "trunk_group")), FX_GROUP);
    assert_true(jsonapi_patch_is_noop(route_group, s));
    assert_false(jsonapi_patch_is_noop(route_trunk, s));
    json_decref(s);
    free(body);

    /* 2017-09-18 names, included but unrouted: known nulls; pending_removal is not
     * billing_cycles_count. */
    body = fixture("did_legacy_include_unrouted.json", &len);
    s = jsonapi_did_state(body, len, why, sizeof why);
    assert_non_null(s);
    assert_true(json_is_null(json_object_get(s, "trunk")));
    assert_true(json_is_null(json_object_get(s, "trunk_group")));
    assert_null(json_object_get(s, "billing_cycles_count"));
    assert_true(jsonapi_patch_is_noop("{\"data\":{\"type\":\"dids\",\"id\":\"" FX_DID
                                      "\",\"relationships\":{\"trunk\":{\"data\":null},"
                                      "\"trunk_group\":{\"data\":null}}}}",
                                      s));
    json_decref(s);
    free(body);
}

/* The number filter with a 17-digit sandbox number, and its empty answer. */
static void test_fixture_filter_number(void **state)
{
    char id[64] = "", why[128] = "";
    size_t len;
    (void)state;
    char *body = fixture("dids_filter_number.json", &len);
    assert_int_equal(jsonapi_find_did(body, len, FX_NUMBER, id, sizeof id, why, sizeof why), 1);
    assert_string_equal(id, FX_DID);
    free(body);
    body = fixture("dids_filter_number_empty.json", &len);
    assert_int_equal(
        jsonapi_find_did(body, len, "16091609000000999", id, sizeof id, why, sizeof why), 0);
    free(body);
}

/* Every error fixture condenses to its status, code, title, detail and pointer. */
static void test_fixture_errors(void **state)
{
    static const struct {
        const char *file, *want;
    } cases[] = {
        {"error_422_unknown_trunk.json",
         "[{\"status\":\"422\",\"code\":\"100\",\"title\":\"should exist\",\"detail\":"
         "\"trunk_id - is invalid\",\"pointer\":\"/data/attributes/voice_in_trunk_id\"}]"},
        {"error_422_capacity_limit.json",
         "[{\"status\":\"422\",\"code\":\"100\",\"title\":\"must be less than or equal to "
         "32767\",\"detail\":\"capacity_limit - must be less than or equal to 32767\","
         "\"pointer\":\"/data/attributes/capacity_limit\"}]"},
        {"error_404.json",
         "[{\"status\":\"404\",\"code\":\"404\",\"title\":\"Record not "
         "found\",\"detail\":\"The record identified by " FX_DID " could not be found.\"}]"},
        {"error_401.json", "[{\"status\":\"401\",\"code\":\"401\",\"title\":\"Unauthorized\","
                           "\"detail\":\"The Api-Key is not valid.\"}]"},
        {"error_400_param_not_allowed.json",
         "[{\"status\":\"400\",\"code\":\"105\",\"title\":\"Param not allowed\",\"detail\":"
         "\"trunk is not allowed.\",\"pointer\":\"/data/relationships/trunk\"}]"},
        {"error_429_budget.json",
         "[{\"status\":\"429\",\"code\":\"too_many_requests\",\"title\":\"Too Many "
         "Requests\",\"detail\":\"The account's budget of 1200 requests per 60 s is used up; "
         "retry in 12 s.\"}]"},
        /* OAuth-shaped token errors are not JSON:API: nothing to condense. */
        {"token_401_invalid_client.json", "[]"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        char *body = fixture(cases[i].file, &len);
        json_t *e = jsonapi_errors(body, len);
        assert_non_null(e);
        char *got = json_dumps(e, JSON_COMPACT);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("%s: got %s", cases[i].file, got);
        free(got);
        json_decref(e);
        free(body);
    }
}

static void test_with_did_id(void **state)
{
    static const char planned[] =
        "{\"data\":{\"type\":\"dids\",\"id\":\"number:4379001234567\",\"relationships\":{"
        "\"voice_in_trunk\":{\"data\":{\"type\":\"voice_in_trunks\",\"id\":\"" TRUNK_A "\"}},"
        "\"voice_in_trunk_group\":{\"data\":null}}}}";
    (void)state;
    char *out = jsonapi_with_did_id(planned, DID_ID);
    assert_non_null(out);
    /* only the id changed; key order and compact form kept */
    assert_string_equal(
        out, "{\"data\":{\"type\":\"dids\",\"id\":\"" DID_ID "\",\"relationships\":{"
             "\"voice_in_trunk\":{\"data\":{\"type\":\"voice_in_trunks\",\"id\":\"" TRUNK_A
             "\"}},\"voice_in_trunk_group\":{\"data\":null}}}}");
    free(out);

    /* a body with whitespace comes back compact */
    out = jsonapi_with_did_id("{ \"data\" : { \"id\" : \"number:1\", \"type\" : \"dids\", "
                              "\"attributes\" : { \"capacity_limit\" : 2 } } }",
                              "abc");
    assert_non_null(out);
    assert_string_equal(out, "{\"data\":{\"id\":\"abc\",\"type\":\"dids\","
                             "\"attributes\":{\"capacity_limit\":2}}}");
    free(out);

    assert_null(jsonapi_with_did_id("not json", DID_ID));
    assert_null(jsonapi_with_did_id("{\"data\":[]}", DID_ID));
    assert_null(jsonapi_with_did_id(planned, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_422),
        cmocka_unit_test(test_errors_404),
        cmocka_unit_test(test_errors_not_a_document),
        cmocka_unit_test(test_errors_limits),
        cmocka_unit_test(test_did_state_from_seed),
        cmocka_unit_test(test_did_state_voice_in),
        cmocka_unit_test(test_did_state_rejects_non_did),
        cmocka_unit_test(test_find_did),
        cmocka_unit_test(test_noop_route_to_trunk),
        cmocka_unit_test(test_noop_unroute),
        cmocka_unit_test(test_noop_attributes),
        cmocka_unit_test(test_with_did_id),
        cmocka_unit_test(test_fixture_dids),
        cmocka_unit_test(test_fixture_filter_number),
        cmocka_unit_test(test_fixture_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
