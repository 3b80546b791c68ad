/*
 * test_rule_cases: the plan diff (equal plans print nothing whatever their key
 * order; a changed value is one "-" and one "+" line between common lines;
 * added and removed requests; plans too long for a line diff are shown whole),
 * the checks on a cases file (each malformed case named by file, number and
 * name), a run of cases with a real rule (PASS/FAIL lines, the diff, the last
 * line) and the reload gate refusing a rule whose cases fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rule_cases.c"
#include "test_util.h"

static json_t *parse(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    return v;
}

static char *diff_of(const char *a, const char *b)
{
    json_t *x = parse(a), *y = parse(b);
    char *d = rule_cases_diff(x, y, "");
    json_decref(x);
    json_decref(y);
    assert_non_null(d);
    return d;
}

static void test_diff_equal_plans_print_nothing(void **state)
{
    (void)state;
    char *d =
        diff_of("[{\"a\": 1, \"b\": {\"c\": [1, 2]}}]", "[{\"b\": {\"c\": [1, 2]}, \"a\": 1}]");
    assert_string_equal(d, "");
    free(d);
}

static void test_diff_changed_value(void **state)
{
    (void)state;
    char *d = diff_of("[{\"action\": \"route_did\", \"trunk\": \"A\"}]",
                      "[{\"action\": \"route_did\", \"trunk\": \"B\"}]");
    assert_string_equal(d, "  [\n"
                           "    {\n"
                           "      \"action\": \"route_did\",\n"
                           "-     \"trunk\": \"A\"\n"
                           "+     \"trunk\": \"B\"\n"
                           "    }\n"
                           "  ]\n");
    free(d);
}

static void test_diff_added_and_removed_requests(void **state)
{
    (void)state;
    char *d = diff_of("[]", "[1]");
    assert_string_equal(d, "- []\n+ [\n+   1\n+ ]\n");
    free(d);
    d = diff_of("[1, 2, 3]", "[1, 3]");
    assert_string_equal(d, "  [\n    1,\n-   2,\n    3\n  ]\n");
    free(d);
    /* the indent prefixes every line */
    json_t *x = parse("1"), *y = parse("2");
    d = rule_cases_diff(x, y, ">>");
    assert_string_equal(d, ">>- 1\n>>+ 2\n");
    free(d);
    json_decref(x);
    json_decref(y);
}

static void test_diff_long_plans_shown_whole(void **state)
{
    (void)state;
    json_t *a = json_array(), *b = json_array();
    for (int i = 0; i < 3000; i++) {
        json_array_append_new(a, json_integer(i));
        json_array_append_new(b, json_integer(i + 1));
    }
    char *d = rule_cases_diff(a, b, "");
    assert_non_null(d);
    /* no common line is printed: every line of a, then every line of b */
    assert_null(strstr(d, "\n  "));
    assert_true(strncmp(d, "- [\n-   0,\n", 11) == 0);
    assert_non_null(strstr(d, "-   2999\n- ]\n+ [\n+   1,\n"));
    free(d);
    json_decref(a);
    json_decref(b);
}

/* A config with source "zd" and the rule text in a fresh directory; with
 * cases_text, rules.cases names cases_name holding it. */
static struct config *setup_cases(const char *rule, char *dir, size_t dir_len,
                                  const char *cases_name, const char *cases_text)
{
    char path[600], cfgtext[600];
    test_tmpdir(dir, dir_len);
    test_write_file(dir, "main.lua", rule, path, sizeof path);
    if (cases_name)
        test_write_file(dir, cases_name, cases_text, path, sizeof path);
    snprintf(cfgtext, sizeof cfgtext,
             "{\"store\": {\"url\": \"sqlite:x.db\"}, \"rules\": {\"script\": \"main.lua\"%s%s%s},"
             " \"sources\": {\"zd\": {\"verify\": {\"scheme\": \"none\", \"insecure\": true}}}}",
             cases_name ? ", \"cases\": \"" : "", cases_name ? cases_name : "",
             cases_name ? "\"" : "");
    test_write_file(dir, "hookline.json", cfgtext, path, sizeof path);
    struct config_diags d = {0};
    struct config *cfg = config_load_opts(path, CONFIG_LOAD_NO_SECRETS, &d);
    config_diags_free(&d);
    assert_non_null(cfg);
    return cfg;
}

static struct config *setup(const char *rule, char *dir, size_t dir_len, const char *cases_name)
{
    return setup_cases(rule, dir, dir_len, cases_name, NULL);
}

static struct rules *engine(const struct config *cfg)
{
    struct rules_options o = {.script_path = cfg->rules_script, .display_name = "main.lua"};
    struct rules *r = NULL;
    char err[300];
    assert_int_equal(rules_create(&o, &r, err, sizeof err), 0);
    return r;
}

#define RULE                                                                                       \
    "function on_event(ev)\n"                                                                      \
    "  if ev.body.fail then error('asked to fail') end\n"                                          \
    "  if ev.body.skip then skip('asked to skip') end\n"                                           \
    "  didww.unroute_did{number = ev.body.phone or ev.headers['x-phone']}\n"                       \
    "end\n"

static void test_malformed_cases_name_file_and_case(void **state)
{
    (void)state;
    char dir[400], path[600], err[600];
    struct config *cfg = setup(RULE, dir, sizeof dir, NULL);
    struct rules *r = engine(cfg);
    struct rule_cases_report rep;
    static const struct {
        const char *text, *message;
    } bad[] = {
        {"[{\"name\": \"a\", \"source\": \"zd\", \"body\": {}, \"expect\": []}, 7]",
         "cases.json: case 2: must be an object"},
        {"[{\"name\": \"\", \"source\": \"zd\", \"body\": {}, \"expect\": []}]",
         "cases.json: case 1 (): \"name\" must be a non-empty string"},
        {"[{\"name\": \"n\", \"body\": {}, \"expect\": []}]", "case 1 (n): \"source\" must be"},
        {"[{\"name\": \"n\", \"source\": \"zd\", \"expect\": []}]",
         "case 1 (n): give exactly one of \"body\""},
        {"[{\"name\": \"n\", \"source\": \"zd\", \"raw\": 5, \"expect\": []}]",
         "case 1 (n): \"raw\" must be a string"},
        {"[{\"name\": \"n\", \"source\": \"zd\", \"headers\": {\"content-type\": "
         "\"application/x-www-form-urlencoded\"}, \"body\": {\"a\": \"1\"}, \"expect\": []}]",
         "case 1 (n): a form body is given as \"raw\""},
        {"[{\"name\": \"n\", \"source\": \"zd\", \"body\": {}, \"expect\": [], \"expect_error\": "
         "\"x\"}]",
         "case 1 (n): give exactly one of \"expect\""},
        {"[{\"name\": \"n\", \"source\": \"zd\", \"body\": {}, \"expect_error\": \"\"}]",
         "case 1 (n): \"expect_error\" must be a non-empty string"},
        {"[{\"name\": \"n\", \"source\": \"zd\", \"body\": {}, \"expect\": [], \"id\": 3}]",
         "case 1 (n): \"id\" must be a non-empty string"},
        {"[{\"name\": \"n\", \"source\": \"zd\", \"body\": {}, \"expect\": [], \"received_at\": "
         "\"x\"}]",
         "case 1 (n): \"received_at\" must be Unix seconds"},
        {"[{\"name\": \"n\", \"source\": \"zd\", \"body\": {}, \"expect\": [], \"extra\": 1}]",
         "case 1 (n): unknown key \"extra\""},
        {"{\"name\": \"n\"}", "cases.json: must be a JSON array of cases"},
        {"[{\"name\": \"n\",", "cases.json:1:"},
        {"[{\"name\": \"n\", \"name\": \"m\"}]", "cases.json:1:"}, /* duplicate key */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        test_write_file(dir, "cases.json", bad[i].text, path, sizeof path);
        err[0] = '\0';
        assert_int_equal(rule_cases_run(cfg, r, path, NULL, &rep, err, sizeof err), -1);
        if (!strstr(err, bad[i].message))
            fail_msg("case %zu: \"%s\" does not contain \"%s\"", i, err, bad[i].message);
        assert_int_equal(rep.passed + rep.failed, 0);
    }
    rules_destroy(r);
    config_free(cfg);
}

static char *read_all(FILE *f)
{
    long n = ftell(f);
    rewind(f);
    char *s = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    return s;
}

static void test_run_prints_pass_fail_and_diff(void **state)
{
    (void)state;
    char dir[400], path[600], err[600];
    struct config *cfg = setup(RULE, dir, sizeof dir, NULL);
    struct rules *r = engine(cfg);
    test_write_file(
        dir, "cases.json",
        "[{\"name\": \"unroute\", \"source\": \"zd\", \"body\": {\"phone\": \"+4372000\"},"
        "  \"expect\": [{\"method\": \"PATCH\", \"action\": \"unroute_did\","
        "    \"path\": \"/v3/dids/number:4372000\", \"body\": {\"data\": {\"type\": \"dids\","
        "    \"id\": \"number:4372000\", \"relationships\": {\"voice_in_trunk\": {\"data\": null},"
        "    \"voice_in_trunk_group\": {\"data\": null}}}}}]},"
        " {\"name\": \"header\", \"source\": \"zd\", \"headers\": {\"X-Phone\": \"+4372001\"},"
        "  \"raw\": \"{}\", \"expect\": []},"
        " {\"name\": \"form\", \"source\": \"zd\", \"headers\": {\"Content-Type\":"
        "  \"application/x-www-form-urlencoded\"}, \"raw\": \"skip=1\", \"expect\": []},"
        " {\"name\": \"fails\", \"source\": \"zd\", \"body\": {\"fail\": true},"
        "  \"expect_error\": \"asked to fail\"},"
        " {\"name\": \"bad json\", \"source\": \"zd\", \"raw\": \"{\", \"expect_error\": "
        "\"JSON\"}]",
        path, sizeof path);
    FILE *out = tmpfile();
    struct rule_cases_report rep;
    assert_int_equal(rule_cases_run(cfg, r, path, out, &rep, err, sizeof err), 0);
    char *text = read_all(out);
    fclose(out);
    assert_int_equal(rep.passed, 4);
    assert_int_equal(rep.failed, 1);
    assert_string_equal(rep.failing, "header");
    assert_non_null(strstr(text, "PASS unroute\nFAIL header: plan differs (- expected, + actual)\n"
                                 "    - []\n    + [\n"));
    assert_non_null(strstr(text, "PASS form\nPASS fails\nPASS bad json\n4 passed, 1 failed\n"));
    free(text);
    rules_destroy(r);
    config_free(cfg);
}

static void test_gate_refuses_a_rule_whose_cases_fail(void **state)
{
    (void)state;
    char dir[400], path[600], err[600], v1[24], v2[24];
    struct config *cfg = setup_cases(RULE, dir, sizeof dir, "cases.json",
                                     "[{\"name\": \"skips\", \"source\": \"zd\", \"body\": "
                                     "{\"skip\": 1}, \"expect\": []}]");
    struct rules *r = engine(cfg);
    rules_set_reload_gate(r, rule_cases_gate, cfg);
    rules_version(r, v1, sizeof v1);
    /* a rule that no longer skips breaks the case: refused, the old one stays */
    test_write_file(dir, "main.lua",
                    "function on_event(ev) didww.unroute_did{number = '+4372000'} end\n", path,
                    sizeof path);
    assert_int_equal(rules_reload(r, err, sizeof err), -1);
    assert_non_null(strstr(err, "1 of 1 cases fail: skips"));
    rules_version(r, v2, sizeof v2);
    assert_string_equal(v1, v2);
    /* one that passes is installed */
    test_write_file(dir, "main.lua", "function on_event(ev) skip('no') end\n", path, sizeof path);
    assert_int_equal(rules_reload(r, err, sizeof err), 0);
    rules_version(r, v2, sizeof v2);
    assert_string_not_equal(v1, v2);
    rules_destroy(r);
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diff_equal_plans_print_nothing),
        cmocka_unit_test(test_diff_changed_value),
        cmocka_unit_test(test_diff_added_and_removed_requests),
        cmocka_unit_test(test_diff_long_plans_shown_whole),
        cmocka_unit_test(test_malformed_cases_name_file_and_case),
        cmocka_unit_test(test_run_prints_pass_fail_and_diff),
        cmocka_unit_test(test_gate_refuses_a_rule_whose_cases_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
