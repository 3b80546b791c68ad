/*
 * test_rules: the rule engine as an attacker and an operator meet it: every
 * sandbox escape attempt fails cleanly, limits fail only the offending event,
 * globals do not leak between events, reload switches or keeps the old script,
 * and didww.* arguments are validated with file:line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "rules.h"
#include "test_util.h"

static char dir[512];
static char script[700];

static struct rules *make_rules(const char *text, const char *api_version)
{
    char err[600];
    struct rules *r = NULL;
    test_write_file(dir, "main.lua", text, script, sizeof script);
    struct rules_options o = {.script_path = script,
                              .display_name = "main.lua",
                              .instruction_limit = 200000,
                              .memory_limit_bytes = 1 << 20,
                              .api_version = api_version ? api_version : "2022-05-10"};
    if (rules_create(&o, &r, err, sizeof err) != 0)
        fail_msg("rules_create: %s", err);
    return r;
}

static enum rules_outcome run(struct rules *r, const char *body_json, struct rules_result *res)
{
    struct jdoc *body = jdoc_parse(body_json, strlen(body_json), 0, 0, NULL, 0);
    assert_non_null(body);
    json_t *headers = json_pack("{s:s}", "x-test", "1");
    struct rules_event ev = {"zendesk",        "evt-1", 1.5,
                             headers,          body,    (const unsigned char *)body_json,
                             strlen(body_json)};
    rules_run(r, &ev, res);
    jdoc_free(body);
    json_decref(headers);
    return res->outcome;
}

/* Runs a one-line on_event body and expects a failure mentioning want. */
static void expect_failure(const char *code, const char *want)
{
    char text[2048];
    snprintf(text, sizeof text, "function on_event(ev)\n%s\nend\n", code);
    struct rules *r = make_rules(text, NULL);
    struct rules_result res;
    enum rules_outcome o = run(r, "{}", &res);
    if (o != RULES_FAILED || !strstr(res.message, want))
        fail_msg("code [%s]: outcome %d message [%s], wanted failure with [%s]", code, o,
                 res.message, want);
    assert_int_equal(res.plan.n, 0);
    rules_result_free(&res);
    rules_destroy(r);
}

static void test_sandbox_escapes_fail(void **state)
{
    expect_failure("io.open('/etc/passwd')", "main.lua:2:");
    expect_failure("io.open('/etc/passwd')", "'io'");
    expect_failure("os.execute('true')", "execute");
    expect_failure("os.exit(1)", "exit");
    expect_failure("require('os')", "require");
    expect_failure("dofile('/etc/passwd')", "dofile");
    expect_failure("loadfile('/etc/passwd')", "loadfile");
    expect_failure("debug.getinfo(1)", "debug");
    expect_failure("package.loaded.os.execute('true')", "package");
    expect_failure("collectgarbage('stop')", "not allowed");
    /* binary chunks cannot be loaded, whatever mode the script asks for */
    expect_failure("local f, e = load('\\27Lua\\84\\0', 'x', 'b') assert(f, e)", "binary");
    expect_failure("local f, e = load(string.dump(function() end)) assert(f, e)", "binary");
    /* library tables and the string metatable are read-only */
    expect_failure("string.upper = nil", "read-only");
    expect_failure("table.insert = print", "read-only");
    expect_failure("getmetatable('').__index = {}", "boolean");
    expect_failure("setmetatable(string, {})", "protected");
    expect_failure("rawset(string, 'x', 1)", "rawset");
    expect_failure("setmetatable(_ENV, nil)", "protected");
}

static void test_limits_fail_only_that_event(void **state)
{
    struct rules *r =
        make_rules("function on_event(ev)\n"
                   "  local m = ev.body.mode\n"
                   "  if m == 'loop' then while true do end end\n"
                   "  if m == 'pcall' then\n"
                   "    for i = 1, 100 do pcall(function() while true do end end) end\n"
                   "    didww.unroute_did{number = '4371234567'}\n" /* must never be planned */
                   "  end\n"
                   "  if m == 'rep' then local s = string.rep('x', 64 * 1024 * 1024) end\n"
                   "  if m == 'table' then local t = {} for i = 1, 1e8 do t[i] = {i} end end\n"
                   "  if m == 'recurse' then local function f(n) return f(n + 1) + 1 end f(1) end\n"
                   "  if m == 'catchmem' then pcall(string.rep, 'x', 64 * 1024 * 1024)\n"
                   "    didww.unroute_did{number = '4371234567'} end\n"
                   "  if m == 'ok' then didww.unroute_did{number = '4371234567'} end\n"
                   "end\n",
                   NULL);
    struct rules_result res;
    static const struct {
        const char *body, *want;
    } cases[] = {
        {"{\"mode\":\"loop\"}", "instruction limit of 200000 exceeded"},
        {"{\"mode\":\"pcall\"}", "instruction limit"},
        {"{\"mode\":\"rep\"}", "main.lua:8: memory limit of 1048576 bytes exceeded"},
        {"{\"mode\":\"table\"}", "limit"},
        {"{\"mode\":\"recurse\"}", ""},
        {"{\"mode\":\"catchmem\"}", "main.lua:11: memory limit"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(run(r, cases[i].body, &res), RULES_FAILED);
        if (!strstr(res.message, cases[i].want))
            fail_msg("%s: message [%s] lacks [%s]", cases[i].body, res.message, cases[i].want);
        assert_int_equal(res.plan.n, 0);
        rules_result_free(&res);
        /* the engine stays healthy for the next event */
        assert_int_equal(run(r, "{\"mode\":\"ok\"}", &res), RULES_DECIDED);
        assert_int_equal(res.plan.n, 1);
        rules_result_free(&res);
    }
    /* the instruction-limit message points at the looping line */
    assert_int_equal(run(r, "{\"mode\":\"loop\"}", &res), RULES_FAILED);
    assert_non_null(strstr(res.message, "main.lua:3:"));
    rules_result_free(&res);
    rules_destroy(r);
}

static void test_globals_do_not_leak(void **state)
{
    struct rules *r = make_rules("counter = 0\n"
                                 "function on_event(ev)\n"
                                 "  if seen then error('leaked: ' .. tostring(seen)) end\n"
                                 "  seen = ev.id\n"
                                 "  counter = counter + 1\n"
                                 "  if counter ~= 1 then error('counter leaked') end\n"
                                 "end\n",
                                 NULL);
    struct rules_result res;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(run(r, "{}", &res), RULES_DECIDED);
        rules_result_free(&res);
    }
    rules_destroy(r);
}

/* An event that builds a lot (here 300,000 small tables, well inside a 64 MiB
 * limit) leaves its thread's state oversized; the engine closes that state and
 * the next event runs on a fresh one with the same script, data and results. */
static void test_big_event_then_normal_event(void **state)
{
    char err[600];
    struct rules *r = NULL;
    test_write_file(dir, "main.lua",
                    "loaded = (loaded or 0) + 1\n"
                    "function on_event(ev)\n"
                    "  assert(loaded == 1, 'top level ran ' .. loaded .. ' times in one state')\n"
                    "  if ev.body.big then\n"
                    "    local t = {}\n"
                    "    for i = 1, 300000 do t[i] = {i} end\n"
                    "    skip('built ' .. #t)\n"
                    "  end\n"
                    "  didww.route_did{number = ev.body.number,\n"
                    "                  trunk = '11e32ee9-5939-4975-b638-f702120b5ffe'}\n"
                    "end\n",
                    script, sizeof script);
    struct rules_options o = {.script_path = script,
                              .display_name = "main.lua",
                              .instruction_limit = 50000000,
                              .memory_limit_bytes = 64 << 20,
                              .api_version = "2022-05-10"};
    if (rules_create(&o, &r, err, sizeof err) != 0)
        fail_msg("rules_create: %s", err);
    struct rules_result res;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(run(r, "{\"big\": true}", &res), RULES_SKIPPED);
        assert_string_equal(res.message, "built 300000");
        rules_result_free(&res);
        enum rules_outcome out = run(r, "{\"number\": \"+442079460418\"}", &res);
        if (out != RULES_DECIDED)
            fail_msg("round %d: outcome %d: %s", round, out, res.message);
        assert_int_equal(res.plan.n, 1);
        assert_string_equal(res.plan.jobs[0].path, "/v3/dids/number:442079460418");
        rules_result_free(&res);
    }
    rules_destroy(r);
}

static void test_event_fields_and_json(void **state)
{
    struct rules *r = make_rules(
        "function on_event(ev)\n"
        "  assert(ev.source == 'zendesk' and ev.id == 'evt-1' and ev.received_at == 1.5)\n"
        "  assert(ev.headers['x-test'] == '1')\n"
        "  assert(ev.body.n == json.null)\n"
        "  assert(json.encode(ev.body.empty) == '[]')\n"
        "  assert(math.type(ev.body.i) == 'integer' and math.type(ev.body.f) == 'float')\n"
        "  assert(#ev.raw > 10)\n"
        "  assert(data == nil or next(data) == nil)\n"
        "  skip('nothing to do for ' .. ev.body.who)\n"
        "end\n",
        NULL);
    struct rules_result res;
    assert_int_equal(run(r, "{\"n\":null,\"empty\":[],\"i\":1,\"f\":1.5,\"who\":\"ann\"}", &res),
                     RULES_SKIPPED);
    assert_string_equal(res.message, "nothing to do for ann");
    assert_int_equal(strlen(res.version), 16);
    rules_result_free(&res);
    rules_destroy(r);
}

static void test_naming_generations(void **state)
{
    const char *text =
        "function on_event(ev)\n"
        "  didww.route_did{did = 'f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c',\n"
        "                  trunk = 'd9b6ec47-0b72-452b-b4b4-23dd9d5be7e6'}\n"
        "  didww.remove_group_trunks{trunk_group = '714e8148-0aea-4cb6-8680-bd1d06453418',\n"
        "                  trunks = {'ca7da6d0-aa0b-447d-8fc0-1bc58b51298c'}}\n"
        "end\n";
    struct rules_result res;
    struct rules *r = make_rules(text, "2022-05-10");
    assert_int_equal(run(r, "{}", &res), RULES_DECIDED);
    assert_int_equal(res.plan.n, 2);
    assert_string_equal(
        res.plan.jobs[0].body,
        "{\"data\":{\"type\":\"dids\",\"id\":\"f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c\","
        "\"relationships\":{\"voice_in_trunk\":{\"data\":{\"type\":\"voice_in_trunks\","
        "\"id\":\"d9b6ec47-0b72-452b-b4b4-23dd9d5be7e6\"}},\"voice_in_trunk_group\":{\"data\":null}"
        "}}}");
    assert_string_equal(res.plan.jobs[0].order_key, "did:f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c");
    assert_string_equal(res.plan.jobs[1].method, "DELETE");
    assert_string_equal(res.plan.jobs[1].path,
                        "/v3/voice_in_trunk_groups/714e8148-0aea-4cb6-8680-bd1d06453418/"
                        "relationships/voice_in_trunks");
    rules_result_free(&res);
    rules_destroy(r);

    r = make_rules(text, "2017-09-18");
    assert_int_equal(run(r, "{}", &res), RULES_DECIDED);
    assert_string_equal(
        res.plan.jobs[0].body,
        "{\"data\":{\"type\":\"dids\",\"id\":\"f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c\","
        "\"relationships\":{\"trunk\":{\"data\":{\"type\":\"trunks\","
        "\"id\":\"d9b6ec47-0b72-452b-b4b4-23dd9d5be7e6\"}},\"trunk_group\":{\"data\":null}}}}");
    assert_string_equal(
        res.plan.jobs[1].path,
        "/v3/trunk_groups/714e8148-0aea-4cb6-8680-bd1d06453418/relationships/trunks");
    assert_string_equal(res.plan.jobs[1].body,
                        "{\"data\":[{\"type\":\"trunks\","
                        "\"id\":\"ca7da6d0-aa0b-447d-8fc0-1bc58b51298c\"}]}");
    rules_result_free(&res);
    rules_destroy(r);
}

static void test_argument_errors_name_call_and_field(void **state)
{
    static const struct {
        const char *code, *want;
    } cases[] = {
        {"didww.route_did{did = 'f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c', "
         "trunk = 'd9b6ec47-0b72-452b-b4b4-23dd9d5be7e6', "
         "trunk_group = '714e8148-0aea-4cb6-8680-bd1d06453418'}",
         "main.lua:2: didww.route_did: give either 'trunk' or 'trunk_group', not both"},
        {"didww.route_did{did = 'f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c', trunk = 'x', color = 1}",
         "didww.route_did: unknown field 'color'"},
        {"didww.route_did{trunk = 'd9b6ec47-0b72-452b-b4b4-23dd9d5be7e6'}",
         "didww.route_did: missing 'did' (UUID) or 'number'"},
        {"didww.unroute_did{did = 'not-a-uuid'}", "didww.unroute_did: field 'did' is not a UUID"},
        {"didww.unroute_did{number = '12ab'}", "didww.unroute_did: field 'number'"},
        {"didww.unroute_did{number = '0049 30 1234567'}",
         "main.lua:2: didww.unroute_did: field 'number': number '0049 30 1234567' is in 00 form"},
        {"didww.unroute_did{number = '0049 30 1234567'}", "write it as +49301234567"},
        {"didww.unroute_did{number = '0720 000 0007'}",
         "didww.unroute_did: field 'number': number '0720 000 0007' is in national form"},
        {"didww.unroute_did{number = '0720 000 0007'}", "must be converted to international form"},
        {"didww.unroute_did{number = '+123456789012345678'}", "has 18 digits"},
        {"didww.unroute_did{number = '+43 720 000 0007 ext 5'}", "field 'number'"},
        {"didww.unroute_did{number = -4371234567}", "field 'number' must not be negative"},
        {"didww.unroute_did{number = 4.5}", "field 'number' must be a string or an integer"},
        {"didww.unroute_did{number = '437\\0001234567'}", "NUL"},
        {"didww.unroute_did{did = 'f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c', number = '4371234567'}",
         "not both"},
        {"didww.update_did{number = '4371234567', capacity_limit = 40000}",
         "didww.update_did: field 'capacity_limit' must be between 0 and 32767, got 40000"},
        {"didww.update_did{number = '4371234567', capacity_limit = 1.5}", "must be an integer"},
        {"didww.update_did{number = '4371234567'}", "nothing to update"},
        {"didww.update_did{number = '4371234567', terminated = 'yes'}", "'terminated'"},
        {"didww.set_group_trunks{trunk_group = '714e8148-0aea-4cb6-8680-bd1d06453418', "
         "trunks = {a = 'ca7da6d0-aa0b-447d-8fc0-1bc58b51298c'}}",
         "not a map"},
        {"didww.add_group_trunks{trunk_group = '714e8148-0aea-4cb6-8680-bd1d06453418', trunks = "
         "{}}",
         "'trunks' is empty"},
        {"didww.set_group_trunks{trunk_group = '714e8148-0aea-4cb6-8680-bd1d06453418', "
         "trunks = {'ca7da6d0-aa0b-447d-8fc0-1bc58b51298c', "
         "'ca7da6d0-aa0b-447d-8fc0-1bc58b51298c'}}",
         "repeats"},
        {"didww.route_did('f10d40c7')", "expects a table"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_failure(cases[i].code, cases[i].want);
}

static void test_update_did_and_clearing(void **state)
{
    struct rules *r = make_rules(
        "function on_event(ev)\n"
        "  didww.update_did{number = '+4371234567', description = json.null, capacity_limit = 7,\n"
        "                   terminated = false, shared_capacity_group = json.null}\n"
        "  didww.set_group_trunks{trunk_group = '714e8148-0aea-4cb6-8680-bd1d06453418', trunks = "
        "{}}\n"
        "end\n",
        NULL);
    struct rules_result res;
    assert_int_equal(run(r, "{}", &res), RULES_DECIDED);
    assert_string_equal(res.plan.jobs[0].path, "/v3/dids/number:4371234567");
    assert_string_equal(res.plan.jobs[0].number, "4371234567");
    assert_null(res.plan.jobs[0].did);
    assert_string_equal(res.plan.jobs[0].body,
                        "{\"data\":{\"type\":\"dids\",\"id\":\"number:4371234567\",\"attributes\":"
                        "{\"description\":null,\"capacity_limit\":7,\"terminated\":false},"
                        "\"relationships\":{\"shared_capacity_group\":{\"data\":null}}}}");
    assert_string_equal(res.plan.jobs[1].body,
                        "{\"data\":{\"type\":\"voice_in_trunk_groups\",\"id\":"
                        "\"714e8148-0aea-4cb6-8680-bd1d06453418\",\"relationships\":"
                        "{\"voice_in_trunks\":{\"data\":[]}}}}");
    rules_result_free(&res);
    rules_destroy(r);
}

/* docs/contract.md section 4: a number as people write it, up to 17 digits (DIDWW's sandbox). */
static void test_numbers_as_people_write_them(void **state)
{
    struct rules *r =
        make_rules("function on_event(ev)\n"
                   "  didww.route_did{number = '+43 (720) 000-0007',\n"
                   "                  trunk = 'd9b6ec47-0b72-452b-b4b4-23dd9d5be7e6'}\n"
                   "  didww.unroute_did{number = '+44 20 7946 0418'}\n"
                   "  didww.unroute_did{number = '+44 (0)20 7946.0418'}\n"
                   "  didww.unroute_did{number = '+12345678901234567'}\n"
                   "  didww.unroute_did{number = 4371234567}\n"
                   "end\n",
                   NULL);
    struct rules_result res;
    assert_int_equal(run(r, "{}", &res), RULES_DECIDED);
    assert_int_equal(res.plan.n, 5);
    static const char *const want[] = {"437200000007", "442079460418", "442079460418",
                                       "12345678901234567", "4371234567"};
    for (size_t i = 0; i < 5; i++) {
        char path[64], key[64];
        snprintf(path, sizeof path, "/v3/dids/number:%s", want[i]);
        snprintf(key, sizeof key, "number:%s", want[i]);
        assert_string_equal(res.plan.jobs[i].number, want[i]);
        assert_string_equal(res.plan.jobs[i].path, path);
        assert_string_equal(res.plan.jobs[i].order_key, key);
        assert_non_null(strstr(res.plan.jobs[i].body, path + 9));
    }
    rules_result_free(&res);
    rules_destroy(r);
}

static void test_reload_switches_or_keeps(void **state)
{
    struct rules *r = make_rules("function on_event(ev) skip('v1') end\n", NULL);
    struct rules_result res;
    char v1[24], v2[24], err[600];
    rules_version(r, v1, sizeof v1);
    /* a broken script leaves the old one running, with file:line */
    test_write_file(dir, "main.lua", "function on_event(ev)\n  skip('v2'\nend\n", script,
                    sizeof script);
    assert_int_equal(rules_reload(r, err, sizeof err), -1);
    assert_non_null(strstr(err, "main.lua:3:"));
    assert_int_equal(run(r, "{}", &res), RULES_SKIPPED);
    assert_string_equal(res.message, "v1");
    rules_result_free(&res);
    /* no on_event: refused too */
    test_write_file(dir, "main.lua", "x = 1\n", script, sizeof script);
    assert_int_equal(rules_reload(r, err, sizeof err), -1);
    assert_non_null(strstr(err, "on_event"));
    /* a top-level infinite loop is refused by the instruction limit */
    test_write_file(dir, "main.lua", "while true do end\n", script, sizeof script);
    assert_int_equal(rules_reload(r, err, sizeof err), -1);
    assert_non_null(strstr(err, "instruction limit"));
    /* a good one switches at the next event */
    test_write_file(dir, "main.lua", "function on_event(ev) skip('v2') end\n", script,
                    sizeof script);
    assert_int_equal(rules_reload(r, err, sizeof err), 0);
    rules_version(r, v2, sizeof v2);
    assert_string_not_equal(v1, v2);
    assert_int_equal(run(r, "{}", &res), RULES_SKIPPED);
    assert_string_equal(res.message, "v2");
    assert_string_equal(res.version, v2);
    rules_result_free(&res);
    rules_destroy(r);
}

static void test_data_tables_read_only(void **state)
{
    char dpath[700], err[600];
    test_write_file(dir, "teams.json",
                    "{\"vip\": {\"group\": \"714e8148-0aea-4cb6-8680-bd1d06453418\"},"
                    " \"list\": [1, 2, 3]}",
                    dpath, sizeof dpath);
    test_write_file(dir, "main.lua",
                    "function on_event(ev)\n"
                    "  assert(#data.teams.list == 3)\n"
                    "  local n = 0 for _ in pairs(data.teams.vip) do n = n + 1 end assert(n == 1)\n"
                    "  if ev.body.write then data.teams.vip.group = 'x' end\n"
                    "  skip(data.teams.vip.group)\n"
                    "end\n",
                    script, sizeof script);
    const char *names[] = {"teams"}, *paths[] = {dpath};
    struct rules_options o = {.script_path = script,
                              .display_name = "main.lua",
                              .data_names = names,
                              .data_paths = paths,
                              .ndata = 1,
                              .instruction_limit = 100000,
                              .memory_limit_bytes = 1 << 20,
                              .api_version = "2022-05-10"};
    struct rules *r = NULL;
    assert_int_equal(rules_create(&o, &r, err, sizeof err), 0);
    struct rules_result res;
    assert_int_equal(run(r, "{}", &res), RULES_SKIPPED);
    assert_string_equal(res.message, "714e8148-0aea-4cb6-8680-bd1d06453418");
    rules_result_free(&res);
    assert_int_equal(run(r, "{\"write\": true}", &res), RULES_FAILED);
    assert_non_null(strstr(res.message, "read-only"));
    rules_result_free(&res);
    rules_destroy(r);
}

static void test_pattern_cost_is_bounded(void **state)
{
    /* backtracking patterns run in C where the count hook cannot stop them */
    expect_failure("local s = string.rep('a', 20000) s:find('.-.-.-b')",
                   "string.find: a pattern with 3 repetition items");
    expect_failure("string.match(string.rep('a', 20000), '(.*)(.*)x')", "string.match");
    expect_failure("for w in string.gmatch(string.rep('a', 5000), 'a*a*b') do end",
                   "string.gmatch");
    struct rules *r =
        make_rules("function on_event(ev)\n"
                   "  local s = string.rep('urgent ', 2000)\n"
                   "  assert(s:find('urgent', 1, true))\n"            /* plain: linear */
                   "  assert(('Ticket 42'):match('^(%a+) (%d+)$'))\n" /* small subject */
                   "  assert(string.gsub('a,b,c', ',', ';') == 'a;b;c')\n"
                   "  assert(s:find('^urgent'))\n" /* anchored, no repetition */
                   "  skip('ok')\n"
                   "end\n",
                   NULL);
    struct rules_result res;
    assert_int_equal(run(r, "{}", &res), RULES_SKIPPED);
    rules_result_free(&res);
    rules_destroy(r);
}

static void test_load_time_tables_are_frozen(void **state)
{
    struct rules *r = make_rules("state = {}\n"
                                 "local cache = {n = 0}\n"
                                 "limits = {max = 3}\n"
                                 "function on_event(ev)\n"
                                 "  if ev.body.mode == 'global' then state.last = ev.id end\n"
                                 "  if ev.body.mode == 'local' then cache.n = cache.n + 1 end\n"
                                 "  skip('max ' .. limits.max)\n"
                                 "end\n",
                                 NULL);
    struct rules_result res;
    assert_int_equal(run(r, "{\"mode\":\"global\"}", &res), RULES_FAILED);
    assert_non_null(strstr(res.message, "main.lua:5:"));
    assert_non_null(strstr(res.message, "read-only"));
    rules_result_free(&res);
    assert_int_equal(run(r, "{\"mode\":\"local\"}", &res), RULES_FAILED);
    assert_non_null(strstr(res.message, "read-only"));
    rules_result_free(&res);
    /* reading them is fine */
    assert_int_equal(run(r, "{}", &res), RULES_SKIPPED);
    assert_string_equal(res.message, "max 3");
    rules_result_free(&res);
    rules_destroy(r);
}

static void test_version_covers_data_and_uuids_lower_case(void **state)
{
    char dpath[700], err[600], v1[24], v2[24];
    test_write_file(dir, "d.json", "{\"a\": 1}", dpath, sizeof dpath);
    test_write_file(dir, "main.lua",
                    "function on_event(ev)\n"
                    "  didww.route_did{did = 'F10D40C7-FD0B-4D63-BB9B-27810A1A8F5C',\n"
                    "                  trunk = 'D9B6EC47-0B72-452B-B4B4-23DD9D5BE7E6'}\n"
                    "end\n",
                    script, sizeof script);
    const char *names[] = {"d"}, *paths[] = {dpath};
    struct rules_options o = {.script_path = script,
                              .display_name = "main.lua",
                              .data_names = names,
                              .data_paths = paths,
                              .ndata = 1,
                              .instruction_limit = 100000,
                              .memory_limit_bytes = 1 << 20,
                              .api_version = "2022-05-10"};
    struct rules *r = NULL;
    assert_int_equal(rules_create(&o, &r, err, sizeof err), 0);
    rules_version(r, v1, sizeof v1);
    struct rules_result res;
    assert_int_equal(run(r, "{}", &res), RULES_DECIDED);
    assert_string_equal(res.plan.jobs[0].did, "f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c");
    assert_string_equal(res.plan.jobs[0].order_key, "did:f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c");
    assert_non_null(strstr(res.plan.jobs[0].body, "d9b6ec47-0b72-452b-b4b4-23dd9d5be7e6"));
    rules_result_free(&res);
    test_write_file(dir, "d.json", "{\"a\": 2}", dpath, sizeof dpath);
    assert_int_equal(rules_reload(r, err, sizeof err), 0);
    rules_version(r, v2, sizeof v2);
    assert_string_not_equal(v1, v2);
    rules_destroy(r);
}

static int setup(void **state)
{
    test_tmpdir(dir, sizeof dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_sandbox_escapes_fail, setup),
        cmocka_unit_test_setup(test_limits_fail_only_that_event, setup),
        cmocka_unit_test_setup(test_globals_do_not_leak, setup),
        cmocka_unit_test_setup(test_big_event_then_normal_event, setup),
        cmocka_unit_test_setup(test_event_fields_and_json, setup),
        cmocka_unit_test_setup(test_naming_generations, setup),
        cmocka_unit_test_setup(test_argument_errors_name_call_and_field, setup),
        cmocka_unit_test_setup(test_update_did_and_clearing, setup),
        cmocka_unit_test_setup(test_numbers_as_people_write_them, setup),
        cmocka_unit_test_setup(test_reload_switches_or_keeps, setup),
        cmocka_unit_test_setup(test_data_tables_read_only, setup),
        cmocka_unit_test_setup(test_pattern_cost_is_bounded, setup),
        cmocka_unit_test_setup(test_load_time_tables_are_frozen, setup),
        cmocka_unit_test_setup(test_version_covers_data_and_uuids_lower_case, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
