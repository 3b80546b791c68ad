/*
 * test_actions: the didww.* rule calls per DIDWW API version, as a rule author meets
 * them: every released version is accepted and sends its generation's exact bodies
 * (seed 000 names up to 2021-04-19, voice_in_* from 2021-12-15), and 2026-11-19's cap
 * of 10 trunks per group is refused at the script's file:line when the rule calls it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "actions.h"
#include "jdoc.h"
#include "rules.h"
#include "test_util.h"

#include <jansson.h>

static char dir[512];

static struct rules *make_rules(const char *text, const char *api_version)
{
    char err[600], script[700];
    struct rules *r = NULL;
    test_write_file(dir, "main.lua", text, script, sizeof script);
    struct rules_options o = {.script_path = script,
                              .display_name = "main.lua",
                              .instruction_limit = 200000,
                              .memory_limit_bytes = 1 << 20,
                              .api_version = api_version};
    if (rules_create(&o, &r, err, sizeof err) != 0)
        fail_msg("rules_create(%s): %s", api_version, err);
    return r;
}

static enum rules_outcome run(struct rules *r, struct rules_result *res)
{
    static const char body_json[] = "{}";
    struct jdoc *body = jdoc_parse(body_json, strlen(body_json), 0, 0, NULL, 0);
    assert_non_null(body);
    json_t *headers = json_object();
    struct rules_event ev = {
        "crm", "evt-1", 1.5, headers, body, (const unsigned char *)body_json, strlen(body_json)};
    rules_run(r, &ev, res);
    jdoc_free(body);
    json_decref(headers);
    return res->outcome;
}

static const char routes[] =
    "function on_event(ev)\n"
    "  didww.route_did{did = 'f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c',\n"
    "                  trunk = 'd9b6ec47-0b72-452b-b4b4-23dd9d5be7e6'}\n"
    "  didww.set_group_trunks{trunk_group = '714e8148-0aea-4cb6-8680-bd1d06453418',\n"
    "                         trunks = {'ca7da6d0-aa0b-447d-8fc0-1bc58b51298c'}}\n"
    "end\n";

/* Each version sends its own generation's names, byte for byte. */
static void test_every_version_sends_its_bodies(void **state)
{
    static const struct {
        const char *version, *did_body, *group_path, *group_body;
    } cases[] = {
        {"2017-09-18",
         "{\"data\":{\"type\":\"dids\",\"id\":\"f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c\","
         "\"relationships\":{\"trunk\":{\"data\":{\"type\":\"trunks\",\"id\":\"d9b6ec47-0b72-452b-"
         "b4b4-23dd9d5be7e6\"}},\"trunk_group\":{\"data\":null}}}}",
         "/v3/trunk_groups/714e8148-0aea-4cb6-8680-bd1d06453418",
         "{\"data\":{\"type\":\"trunk_groups\",\"id\":\"714e8148-0aea-4cb6-8680-bd1d06453418\","
         "\"relationships\":{\"trunks\":{\"data\":[{\"type\":\"trunks\",\"id\":\"ca7da6d0-aa0b-"
         "447d-8fc0-1bc58b51298c\"}]}}}}"},
        {"2021-04-19", NULL, "/v3/trunk_groups/714e8148-0aea-4cb6-8680-bd1d06453418", NULL},
        {"2021-12-15",
         "{\"data\":{\"type\":\"dids\",\"id\":\"f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c\","
         "\"relationships\":{\"voice_in_trunk\":{\"data\":{\"type\":\"voice_in_trunks\",\"id\":"
         "\"d9b6ec47-0b72-452b-b4b4-23dd9d5be7e6\"}},\"voice_in_trunk_group\":{\"data\":null}}}}",
         "/v3/voice_in_trunk_groups/714e8148-0aea-4cb6-8680-bd1d06453418",
         "{\"data\":{\"type\":\"voice_in_trunk_groups\",\"id\":\"714e8148-0aea-4cb6-8680-"
         "bd1d06453418\",\"relationships\":{\"voice_in_trunks\":{\"data\":[{\"type\":\"voice_in_"
         "trunks\",\"id\":\"ca7da6d0-aa0b-447d-8fc0-1bc58b51298c\"}]}}}}"},
        {"2022-05-10", NULL, "/v3/voice_in_trunk_groups/714e8148-0aea-4cb6-8680-bd1d06453418",
         NULL},
        {"2026-04-16", NULL, "/v3/voice_in_trunk_groups/714e8148-0aea-4cb6-8680-bd1d06453418",
         NULL},
        {"2026-11-19", NULL, "/v3/voice_in_trunk_groups/714e8148-0aea-4cb6-8680-bd1d06453418",
         NULL},
    };
    const char *did_body = NULL, *group_body = NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* A NULL body means: the same as the generation's first version above. */
        if (cases[i].did_body)
            did_body = cases[i].did_body;
        if (cases[i].group_body)
            group_body = cases[i].group_body;
        struct rules *r = make_rules(routes, cases[i].version);
        struct rules_result res;
        if (run(r, &res) != RULES_DECIDED)
            fail_msg("%s: %s", cases[i].version, res.message);
        assert_int_equal(res.plan.n, 2);
        assert_string_equal(res.plan.jobs[0].path, "/v3/dids/f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c");
        assert_string_equal(res.plan.jobs[0].body, did_body);
        assert_string_equal(res.plan.jobs[1].path, cases[i].group_path);
        assert_string_equal(res.plan.jobs[1].body, group_body);
        rules_result_free(&res);
        rules_destroy(r);
    }
}

/* Writes a script whose line 3 sets (or adds) n trunks. */
static void group_script(char *out, size_t len, const char *call, int n)
{
    size_t off = (size_t)snprintf(out, len,
                                  "function on_event(ev)\n"
                                  "  local g = '714e8148-0aea-4cb6-8680-bd1d06453418'\n"
                                  "  didww.%s{trunk_group = g, trunks = {",
                                  call);
    for (int i = 0; i < n && off < len; i++)
        off += (size_t)snprintf(out + off, len - off, "%s'ca7da6d0-aa0b-447d-8fc0-%012d'",
                                i ? ", " : "", i);
    if (off < len)
        snprintf(out + off, len - off, "}}\nend\n");
}

/* 2026-11-19 caps a group at 10 trunks: 11 is refused at main.lua:3, 10 passes, and
 * older versions keep their own (larger) bound. Removing 11 is not capped. */
static void test_2026_11_19_group_cap_has_file_line(void **state)
{
    char text[4096];
    struct rules_result res;

    group_script(text, sizeof text, "set_group_trunks", 11);
    struct rules *r = make_rules(text, "2026-11-19");
    assert_int_equal(run(r, &res), RULES_FAILED);
    assert_string_equal(res.message,
                        "main.lua:3: didww.set_group_trunks: field 'trunks' has 11 entries; API "
                        "version 2026-11-19 allows at most 10 trunks in a trunk group");
    assert_int_equal(res.plan.n, 0);
    rules_result_free(&res);
    rules_destroy(r);

    group_script(text, sizeof text, "add_group_trunks", 11);
    r = make_rules(text, "2026-11-19");
    assert_int_equal(run(r, &res), RULES_FAILED);
    assert_non_null(strstr(res.message, "main.lua:3: didww.add_group_trunks: field 'trunks' has "
                                        "11 entries"));
    rules_result_free(&res);
    rules_destroy(r);

    group_script(text, sizeof text, "remove_group_trunks", 11);
    r = make_rules(text, "2026-11-19");
    assert_int_equal(run(r, &res), RULES_DECIDED);
    rules_result_free(&res);
    rules_destroy(r);

    group_script(text, sizeof text, "set_group_trunks", 10);
    r = make_rules(text, "2026-11-19");
    assert_int_equal(run(r, &res), RULES_DECIDED);
    assert_int_equal(res.plan.n, 1);
    rules_result_free(&res);
    rules_destroy(r);

    group_script(text, sizeof text, "set_group_trunks", 11);
    r = make_rules(text, "2026-04-16");
    assert_int_equal(run(r, &res), RULES_DECIDED);
    rules_result_free(&res);
    rules_destroy(r);
}

static void test_unknown_version_refused(void **state)
{
    enum actions_naming n;
    bool billing;
    assert_int_equal(actions_naming_for_version("2026-11-19", &n, &billing), 0);
    assert_int_equal(n, ACTIONS_NAMING_VOICE_IN_CAPPED);
    assert_int_equal(actions_naming_for_version("2017-09-18", &n, &billing), 0);
    assert_int_equal(n, ACTIONS_NAMING_LEGACY);
    assert_false(billing);
    assert_int_equal(actions_naming_for_version("2026-12-01", &n, &billing), -1);
}

static int setup(void **state)
{
    test_tmpdir(dir, sizeof dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_every_version_sends_its_bodies, setup),
        cmocka_unit_test_setup(test_2026_11_19_group_cap_has_file_line, setup),
        cmocka_unit_test(test_unknown_version_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
