/*
 * Unit tests for src/lua_json.c: what a rule script sees through json.encode,
 * json.decode, json.null, json.array and json.object, and what the C side gets from
 * lua_json_push / lua_json_to_json. Script-level behaviour runs as Lua snippets in a
 * real Lua 5.4 state. jansson allocations are counted process-wide so the
 * out-of-memory tests can prove no reference outlives a Lua memory error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lua_json.h"

/* ---- jansson allocation counter (installed in main before any jansson use) ---- */

static long jansson_live;

static void *count_malloc(size_t n)
{
    void *p = malloc(n);
    if (p)
        jansson_live++;
    return p;
}

static void count_free(void *p)
{
    if (p)
        jansson_live--;
    free(p);
}

/* ---- Lua allocator with a byte budget ---- */

struct budget {
    size_t used;
    size_t limit;
    long refused;
};

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct budget *b = ud;
    size_t old = ptr ? osize : 0;
    void *p;
    if (nsize == 0) {
        free(ptr);
        b->used -= old;
        return NULL;
    }
    if (nsize > old && b->used + (nsize - old) > b->limit) {
        b->refused++;
        return NULL;
    }
    p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    b->used = b->used - old + nsize;
    return p;
}

/* ---- helpers ---- */

static void install_json(lua_State *L, int max_depth)
{
    lua_json_init(L);
    lua_json_push_lib(L, max_depth);
    lua_setglobal(L, "json");
}

static lua_State *new_state(int max_depth)
{
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    install_json(L, max_depth);
    return L;
}

static int setup(void **state)
{
    *state = new_state(LUA_JSON_DEFAULT_MAX_DEPTH);
    return 0;
}

static int teardown(void **state)
{
    lua_close(*state);
    return 0;
}

/* Runs a chunk that must succeed (its assert()s are the checks). */
static void run_ok(lua_State *L, const char *code)
{
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("Lua failed: %s\n  in: %s", lua_tostring(L, -1), code);
    lua_settop(L, 0);
}

/* Runs `return <expr>` and compares the string result with want (length-aware). */
static void expect_str(lua_State *L, const char *expr, const char *want, size_t want_len)
{
    char code[4096];
    size_t len;
    const char *got;
    snprintf(code, sizeof code, "return %s", expr);
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("Lua failed: %s\n  in: %s", lua_tostring(L, -1), code);
    got = lua_tolstring(L, -1, &len);
    if (!got || len != want_len || memcmp(got, want, len) != 0)
        fail_msg("%s\n  got:  %s\n  want: %s", expr, got ? got : "(not a string)", want);
    lua_settop(L, 0);
}

#define EXPECT_JSON(L, expr, want) expect_str((L), (expr), (want), sizeof(want) - 1)

/* Runs a chunk that must raise an error whose message contains every needle. */
static void expect_error(lua_State *L, const char *code, const char *needle1, const char *needle2)
{
    const char *msg;
    if (luaL_dostring(L, code) == LUA_OK)
        fail_msg("expected an error from: %s", code);
    msg = lua_tostring(L, -1);
    assert_non_null(msg);
    if (!strstr(msg, needle1) || (needle2 && !strstr(msg, needle2)))
        fail_msg("error '%s' lacks '%s'%s%s\n  in: %s", msg, needle1, needle2 ? " / " : "",
                 needle2 ? needle2 : "", code);
    lua_settop(L, 0);
}

/* Pushes `n` nested arrays around 1 as text: [[[1]]] for n = 3. */
static char *nested_text(int n)
{
    size_t len = (size_t)n * 2 + 2;
    char *s = malloc(len);
    assert_non_null(s);
    memset(s, '[', (size_t)n);
    s[n] = '1';
    memset(s + n + 1, ']', (size_t)n);
    s[2 * n + 1] = '\0';
    return s;
}

/* ---- round trips ---- */

static void test_roundtrip_nested(void **state)
{
    lua_State *L = *state;
    EXPECT_JSON(L,
                "json.encode(json.decode('{\"b\":[1,2,{\"c\":\"x\",\"d\":[[],{}]}],"
                "\"a\":{\"t\":true,\"f\":false,\"n\":null},\"s\":\"h\\\\u00e9llo \\\\u2603 "
                "\\\\ud83d\\\\ude00\"}'))",
                "{\"a\":{\"f\":false,\"n\":null,\"t\":true},\"b\":[1,2,{\"c\":\"x\",\"d\":[[],{}]}"
                "],\"s\":\"h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80\"}");
    run_ok(L, "local v = json.decode('{\"a\":{\"b\":[10,20,{\"c\":\"\\\\u00e9\"}]}}')\n"
              "assert(v.a.b[1] == 10 and v.a.b[2] == 20 and #v.a.b == 3)\n"
              "assert(v.a.b[3].c == '\\u{e9}')\n");
    /* Top-level scalars decode and encode as themselves. */
    run_ok(L, "assert(json.decode('1') == 1 and json.decode('\"s\"') == 's')\n"
              "assert(json.decode('true') == true and json.decode('false') == false)\n"
              "assert(json.decode('null') == json.null)\n");
    EXPECT_JSON(L, "json.encode('x')", "\"x\"");
    EXPECT_JSON(L, "json.encode(true)", "true");
    EXPECT_JSON(L, "json.encode(nil)", "null");
}

static void test_strings_with_nul_and_unicode(void **state)
{
    lua_State *L = *state;
    run_ok(L, "local s = json.decode('\"a\\\\u0000b\"')\n"
              "assert(#s == 3 and s == 'a\\0b')\n"
              "local o = json.decode('{\"k\":\"\\\\u0000\"}')\n"
              "assert(o.k == '\\0')\n");
    /* jansson 2.14 decodes NUL in string values but not in object keys. */
    expect_error(L, "json.decode('{\"k\\\\u0000x\":1}')", "NUL byte in object key", NULL);
    EXPECT_JSON(L, "json.encode('a\\0b')", "\"a\\u0000b\"");
    EXPECT_JSON(L, "json.encode({['k\\0x'] = 1})", "{\"k\\u0000x\":1}");
    EXPECT_JSON(L, "json.encode(json.decode('\"a\\\\u0000b\"'))", "\"a\\u0000b\"");
    /* 4-byte UTF-8 and escapes survive both ways. */
    EXPECT_JSON(L, "json.encode({s = '\\u{1F600} \"q\" \\\\ \\n'})",
                "{\"s\":\"\xf0\x9f\x98\x80 \\\"q\\\" \\\\ \\n\"}");
}

static void test_integers(void **state)
{
    lua_State *L = *state;
    run_ok(L, "local v = json.decode('[9007199254740993, 9223372036854775807, "
              "-9223372036854775808, 0, -1]')\n"
              "assert(math.type(v[1]) == 'integer' and v[1] == 9007199254740993)\n"
              "assert(v[2] == math.maxinteger and v[3] == math.mininteger)\n"
              "assert(math.type(v[4]) == 'integer' and v[5] == -1)\n");
    EXPECT_JSON(L,
                "json.encode(json.decode('[9007199254740993,9223372036854775807,"
                "-9223372036854775808]'))",
                "[9007199254740993,9223372036854775807,-9223372036854775808]");
    EXPECT_JSON(L, "json.encode({math.maxinteger, math.mininteger, (1 << 53) + 1})",
                "[9223372036854775807,-9223372036854775808,9007199254740993]");
    EXPECT_JSON(L, "json.encode(1)", "1");
}

static void test_floats(void **state)
{
    lua_State *L = *state;
    EXPECT_JSON(L, "json.encode(1.0)", "1.0");
    EXPECT_JSON(L, "json.encode(json.decode('1.0'))", "1.0");
    EXPECT_JSON(L, "json.encode({1, 1.0, 0.5, -2.25})", "[1,1.0,0.5,-2.25]");
    run_ok(L, "assert(math.type(json.decode('1.0')) == 'float')\n"
              "assert(math.type(json.decode('1')) == 'integer')\n"
              "assert(math.type(json.decode('1e2')) == 'float')\n"
              "for _, x in ipairs({0.1, 1/3, 1e300, -1e-300, 5e-324, 123456.789}) do\n"
              "  local back = json.decode(json.encode(x))\n"
              "  assert(back == x and math.type(back) == 'float', tostring(x))\n"
              "end\n"
              "assert(1/json.decode(json.encode(-0.0)) == -math.huge)\n");
}

/* ---- null ---- */

static void test_null_both_directions(void **state)
{
    lua_State *L = *state;
    run_ok(L, "local ev = json.decode('{\"a\":null,\"b\":[null,1]}')\n"
              "assert(ev.a == json.null and ev.a ~= nil)\n"
              "assert(ev.b[1] == json.null and #ev.b == 2)\n"
              "assert(type(json.null) == 'userdata')\n");
    EXPECT_JSON(L, "json.encode({a = json.null})", "{\"a\":null}");
    EXPECT_JSON(L, "json.encode(json.array(1, json.null, 3))", "[1,null,3]");
    EXPECT_JSON(L, "json.encode(json.null)", "null");

    /* The C side agrees with the script's json.null. */
    lua_json_push_null(L);
    assert_true(lua_json_is_null(L, -1));
    lua_getglobal(L, "json");
    lua_getfield(L, -1, "null");
    assert_true(lua_rawequal(L, -1, -3));
    assert_true(lua_json_is_null(L, -1));
    lua_pushnil(L);
    assert_false(lua_json_is_null(L, -1));
    lua_pushlightuserdata(L, L);
    assert_false(lua_json_is_null(L, -1));
    lua_settop(L, 0);
}

/* ---- empty tables, arrays, objects ---- */

static void test_empty_and_marked_tables(void **state)
{
    lua_State *L = *state;
    EXPECT_JSON(L, "json.encode(json.decode('[]'))", "[]");
    EXPECT_JSON(L, "json.encode(json.decode('{}'))", "{}");
    EXPECT_JSON(L, "json.encode(json.decode('{\"a\":[],\"b\":{}}'))", "{\"a\":[],\"b\":{}}");
    EXPECT_JSON(L, "json.encode(json.array())", "[]");
    EXPECT_JSON(L, "json.encode(json.object())", "{}");
    EXPECT_JSON(L, "json.encode({})", "{}");
    EXPECT_JSON(L, "json.encode({1, 2, 3})", "[1,2,3]");
    EXPECT_JSON(L, "json.encode({a = {}, b = {'x'}})", "{\"a\":{},\"b\":[\"x\"]}");
    EXPECT_JSON(L, "json.encode(json.array('a', {k = 1}, json.array()))", "[\"a\",{\"k\":1},[]]");

    /* Decoded tables are plain to the script: readable, writable, and still marked. */
    EXPECT_JSON(L,
                "(function() local t = json.decode('[1,2]'); table.insert(t, 3); "
                "return json.encode(t) end)()",
                "[1,2,3]");
    EXPECT_JSON(L,
                "(function() local t = json.decode('[1]'); t[1] = nil; "
                "return json.encode(t) end)()",
                "[]");
    EXPECT_JSON(L,
                "(function() local t = json.decode('{}'); t.x = 'y'; "
                "return json.encode(t) end)()",
                "{\"x\":\"y\"}");
    run_ok(L, "local t = json.decode('{\"a\":1}')\n"
              "local n = 0 for k, v in pairs(t) do n = n + 1 end\n"
              "assert(n == 1 and t.a == 1 and rawget(t, 'a') == 1)\n"
              "assert(getmetatable(t) == false) -- the shared marker is protected\n"
              "assert(not pcall(setmetatable, t, {}))\n"
              "assert(getmetatable(json.decode('[]')) == false)\n");

    /* json.object(t) marks t in place; a {} that must stay an object. */
    EXPECT_JSON(L,
                "(function() local t = {}; assert(json.object(t) == t); "
                "return json.encode(t) end)()",
                "{}");
    EXPECT_JSON(L, "json.encode(json.object(json.decode('[]')))", "{}");
    expect_error(L, "json.object(setmetatable({}, {}))", "already has a metatable", NULL);
    expect_error(L, "json.array(1, nil, 3)", "argument 2 is nil", "json.null");
}

static void test_encode_indent_option(void **state)
{
    lua_State *L = *state;
    EXPECT_JSON(L, "json.encode({b = 1, a = {2}}, {indent = 2})",
                "{\n  \"a\": [\n    2\n  ],\n  \"b\": 1\n}");
    EXPECT_JSON(L, "json.encode({a = 1}, {indent = 0})", "{\"a\":1}");
    expect_error(L, "json.encode({}, {indent = 99})", "indent", NULL);
    expect_error(L, "json.encode({}, 'pretty')", "table expected", NULL);
}

/* ---- rejections ---- */

static void test_nan_and_inf_rejected(void **state)
{
    lua_State *L = *state;
    expect_error(L, "json.encode(0/0)", "NaN is not valid JSON", NULL);
    expect_error(L, "json.encode({a = {1, math.huge}})", "value at .a[2]", "infinity");
    expect_error(L, "json.encode({x = -math.huge})", ".x", "-infinity");
}

static void test_key_shapes_rejected(void **state)
{
    lua_State *L = *state;
    expect_error(L, "json.encode({1, 2, a = 3})", "mixed keys", NULL);
    expect_error(L, "json.encode({o = {[1] = 'x', [3] = 'y'}})", ".o", "not a sequence");
    expect_error(L, "json.encode({[0] = 'x'})", "not a sequence", NULL);
    expect_error(L, "json.encode({[true] = 1})", "key of type boolean", NULL);
    expect_error(L, "json.encode({[1.5] = 1})", "key of type float", NULL);
    expect_error(L, "local t = json.decode('[1]'); t.x = 1; json.encode(t)",
                 "array table has keys other than 1..n", NULL);
    expect_error(L, "local t = json.object(); t[1] = 1; json.encode(t)",
                 "object table has a non-string key", NULL);
}

static void test_functions_and_userdata_rejected(void **state)
{
    lua_State *L = *state;
    expect_error(L, "json.encode({f = print})", "value at .f", "function is not valid JSON");
    expect_error(L, "json.encode({coroutine.create(print)})", "[1]", "thread");
    expect_error(L, "json.encode(io.stdout)", "userdata", NULL);
    expect_error(L, "json.encode()", "bad argument #1", NULL);
}

static void test_cycles_rejected_shared_tables_allowed(void **state)
{
    lua_State *L = *state;
    expect_error(L, "local t = {}; t.self = t; json.encode(t)", ".self", "cycle");
    expect_error(L, "local a = {}; local b = {a}; a.b = b; json.encode({a})", "[1].b[1]", "cycle");
    /* The same table twice, side by side, is not a cycle. */
    EXPECT_JSON(L, "(function() local s = {1}; return json.encode({a = s, b = s}) end)()",
                "{\"a\":[1],\"b\":[1]}");
}

static void test_invalid_utf8_rejected(void **state)
{
    lua_State *L = *state;
    expect_error(L, "json.encode('\\xff')", "string is not valid UTF-8", NULL);
    expect_error(L, "json.encode({s = 'ok\\xc0\\xaf'})", ".s", "not valid UTF-8"); /* overlong */
    expect_error(L, "json.encode({'\\xed\\xa0\\x80'})", "[1]", "not valid UTF-8"); /* surrogate */
    expect_error(L, "json.encode({'\\xf4\\x90\\x80\\x80'})", "not valid UTF-8", NULL);
    expect_error(L, "json.encode({['k\\xff'] = 1})", "key is not valid UTF-8", "[\"k?\"]");
    expect_error(L, "json.encode('\\xe2\\x98')", "not valid UTF-8", NULL); /* truncated */
}

/* ---- depth ---- */

static void decode_depth(lua_State *L, int n, int want_ok)
{
    char *text = nested_text(n);
    int rc;
    lua_getglobal(L, "json");
    lua_getfield(L, -1, "decode");
    lua_pushstring(L, text);
    free(text);
    rc = lua_pcall(L, 1, 1, 0);
    if (want_ok) {
        if (rc != LUA_OK)
            fail_msg("%d-deep decode failed: %s", n, lua_tostring(L, -1));
    } else {
        assert_int_equal(rc, LUA_ERRRUN);
        assert_non_null(strstr(lua_tostring(L, -1), "nesting deeper than 64 levels"));
    }
    lua_settop(L, 0);
}

static void test_depth_limit_decode(void **state)
{
    lua_State *L = *state;
    decode_depth(L, 60, 1);
    decode_depth(L, 64, 1);
    decode_depth(L, 65, 0);
    decode_depth(L, 100, 0);
}

static void test_depth_limit_encode(void **state)
{
    lua_State *L = *state;
    static const char build[] = "function nest(n) local t = 1\n"
                                "  for i = 1, n do t = {t} end return t end\n";
    run_ok(L, build);
    run_ok(L, "assert(#json.encode(nest(60)) == 121)");
    run_ok(L, "assert(#json.encode(nest(64)) == 129)");
    expect_error(L, "json.encode(nest(65))", "nesting deeper than 64 levels", NULL);
    expect_error(L, "json.encode(nest(100))", "nesting deeper than 64 levels", NULL);

    /* A smaller limit from push_lib applies to both directions. */
    lua_json_push_lib(L, 3);
    lua_setglobal(L, "json3");
    run_ok(L, "assert(json3.encode(nest(3)) == '[[[1]]]')\n"
              "assert(json3.decode('[[[1]]]')[1][1][1] == 1)\n");
    expect_error(L, "json3.encode(nest(4))", "deeper than 3", NULL);
    expect_error(L, "json3.decode('[[[[1]]]]')", "deeper than 3", NULL);
}

/* ---- decode errors ---- */

static void test_decode_malformed(void **state)
{
    lua_State *L = *state;
    expect_error(L, "json.decode('{')", "json.decode:", "line 1");
    expect_error(L, "json.decode('{\"a\":1,}')", "line 1 column", NULL);
    expect_error(L, "json.decode('[1,\\n2,\\n}')", "line 3", NULL);
    expect_error(L, "json.decode('')", "json.decode:", "line");
    expect_error(L, "json.decode('[1] x')", "line", NULL);
    expect_error(L, "json.decode('\"\\xff\"')", "json.decode:", NULL);
    run_ok(L, "local ok, err = pcall(json.decode, '[')\n"
              "assert(not ok and type(err) == 'string')\n");
}

/* ---- the C API directly ---- */

static void test_c_api_to_json_messages(void **state)
{
    lua_State *L = *state;
    char err[256];
    char tiny[24];
    json_t *v;

    assert_int_equal(luaL_dostring(L, "return {a = {1, 0/0}}"), LUA_OK);
    v = lua_json_to_json(L, -1, 64, err, sizeof err);
    assert_null(v);
    assert_string_equal(err, "value at .a[2]: NaN is not valid JSON");

    /* A small buffer is cut, never overrun, and stays terminated. */
    memset(tiny, 'Z', sizeof tiny);
    assert_null(lua_json_to_json(L, -1, 64, tiny, sizeof tiny));
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    assert_null(lua_json_to_json(L, -1, 64, NULL, 0));
    lua_settop(L, 0);

    assert_int_equal(luaL_dostring(L, "return {['a b'] = {f = print}}"), LUA_OK);
    assert_null(lua_json_to_json(L, 1, 64, err, sizeof err));
    assert_string_equal(err, "value at [\"a b\"].f: a function is not valid JSON");
    lua_settop(L, 0);

    assert_int_equal(luaL_dostring(L, "return 0/0"), LUA_OK);
    assert_null(lua_json_to_json(L, 1, 64, err, sizeof err));
    assert_string_equal(err, "value at .: NaN is not valid JSON");
    lua_settop(L, 0);

    /* A path longer than the message budget ends in "..." rather than overflowing. */
    assert_int_equal(luaL_dostring(L, "local t = {bad = print}\n"
                                      "for i = 1, 30 do t = {['key_number_' .. i] = t} end\n"
                                      "return t"),
                     LUA_OK);
    assert_null(lua_json_to_json(L, 1, 64, err, sizeof err));
    assert_non_null(strstr(err, "...: a function is not valid JSON"));
    assert_true(strncmp(err, "value at .key_number_30.key_number_29.", 38) == 0);
    lua_settop(L, 0);

    /* Success returns a new reference the caller owns. */
    assert_int_equal(luaL_dostring(L, "return {n = 1, l = {true, 'x'}}"), LUA_OK);
    v = lua_json_to_json(L, 1, 64, err, sizeof err);
    assert_non_null(v);
    assert_int_equal(json_integer_value(json_object_get(v, "n")), 1);
    assert_true(json_is_true(json_array_get(json_object_get(v, "l"), 0)));
    json_decref(v);
    lua_settop(L, 0);
}

static void test_c_api_push(void **state)
{
    lua_State *L = *state;
    char err[128];
    json_t *v = json_loads("{\"a\":[1,2.5,\"s\",null,true]}", 0, NULL);
    json_t *deep = json_loads("[[[[1]]]]", 0, NULL);
    assert_non_null(v);
    assert_non_null(deep);

    assert_int_equal(lua_json_push(L, v, 64, err, sizeof err), 0);
    assert_int_equal(lua_gettop(L), 1);
    lua_setglobal(L, "ev");
    run_ok(L, "assert(#ev.a == 5 and ev.a[1] == 1 and ev.a[2] == 2.5 and ev.a[3] == 's')\n"
              "assert(ev.a[4] == json.null and ev.a[5] == true)\n"
              "assert(json.encode(ev) == '{\"a\":[1,2.5,\"s\",null,true]}')\n");

    /* Too deep: -1, a message, and nothing left on the stack. */
    lua_pushinteger(L, 7);
    assert_int_equal(lua_json_push(L, deep, 3, err, sizeof err), -1);
    assert_string_equal(err, "nesting deeper than 3 levels");
    assert_int_equal(lua_gettop(L), 1);
    assert_int_equal(lua_tointeger(L, 1), 7);
    assert_int_equal(lua_json_push(L, deep, 4, err, sizeof err), 0);
    assert_int_equal(lua_gettop(L), 2);
    lua_settop(L, 0);

    /* Borrowed: the caller's references are untouched. */
    assert_int_equal(v->refcount, 1);
    json_decref(v);
    json_decref(deep);
}

/* ---- out of memory ---- */

struct oom_case {
    const char *setup;    /* runs with no budget */
    const char *function; /* "decode" or "encode" */
    const char *arg;      /* global holding the argument */
};

/* Calls json.<function>(<arg>) with budgets rising from "nothing left" until it
 * succeeds. Every failure must be a memory error, and after every attempt the
 * jansson tree must already be released (not merely collectable later). */
static void run_oom_sweep(const struct oom_case *c, size_t step)
{
    struct budget b = {0, SIZE_MAX, 0};
    lua_State *L = lua_newstate(budget_alloc, &b);
    long baseline;
    int failures = 0, succeeded = 0;
    assert_non_null(L);
    luaL_openlibs(L);
    install_json(L, LUA_JSON_DEFAULT_MAX_DEPTH);
    run_ok(L, c->setup);
    lua_gc(L, LUA_GCCOLLECT);
    lua_gc(L, LUA_GCSTOP); /* no finalizer may tidy up behind the test's back */
    baseline = jansson_live;

    for (size_t extra = 0; !succeeded; extra += step) {
        int rc;
        lua_getglobal(L, "json");
        lua_getfield(L, -1, c->function);
        lua_getglobal(L, c->arg);
        b.limit = b.used + extra;
        rc = lua_pcall(L, 1, 1, 0);
        b.limit = SIZE_MAX;
        assert_int_equal(jansson_live, baseline);
        if (rc == LUA_OK) {
            succeeded = 1;
        } else {
            if (rc != LUA_ERRMEM)
                fail_msg("budget +%zu: %s", extra, lua_tostring(L, -1));
            failures++;
        }
        lua_settop(L, 0);
    }
    assert_true(failures > 0);
    assert_true(b.refused > 0);
    lua_close(L);
    assert_int_equal(jansson_live, baseline);
}

static const char big_doc_setup[] =
    "doc = '{\"items\":[' .. string.rep('{\"id\":12345,\"name\":\"item name here\","
    "\"tags\":[\"a\",\"b\",\"c\"],\"n\":null,\"r\":1.5},', 2000) .. '{}]}'\n"
    "tree = json.decode(doc)\n"
    "assert(#tree.items == 2001)\n";

static void test_oom_decode_big_document(void **state)
{
    struct oom_case c = {big_doc_setup, "decode", "doc"};
    (void)state;
    run_oom_sweep(&c, 8192);
}

static void test_oom_decode_every_small_budget(void **state)
{
    struct oom_case c = {"doc = '{\"a\":[1,{\"b\":\"x\"},[null,2.5]],\"c\":\"y\"}'", "decode",
                         "doc"};
    (void)state;
    run_oom_sweep(&c, 8);
}

static void test_oom_encode(void **state)
{
    struct oom_case c = {big_doc_setup, "encode", "tree"};
    (void)state;
    run_oom_sweep(&c, 8192);
}

/* The guard releases its reference when the C function that made it fails. */
static int guarded_then_raise(lua_State *L)
{
    json_t **slot = lua_json_push_guard(L);
    *slot = json_pack("{s:[i,i]}", "x", 1, 2);
    return luaL_error(L, "boom");
}

static void test_guard_releases_on_error(void **state)
{
    lua_State *L = *state;
    long before = jansson_live;
    lua_gc(L, LUA_GCSTOP);
    lua_pushcfunction(L, guarded_then_raise);
    assert_int_equal(lua_pcall(L, 0, 0, 0), LUA_ERRRUN);
    assert_int_equal(jansson_live, before);
    lua_settop(L, 0);
    lua_gc(L, LUA_GCRESTART);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_nested, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings_with_nul_and_unicode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_floats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_both_directions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_and_marked_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_indent_option, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nan_and_inf_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_shapes_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_functions_and_userdata_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cycles_rejected_shared_tables_allowed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_invalid_utf8_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth_limit_decode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth_limit_encode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_c_api_to_json_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_c_api_push, setup, teardown),
        cmocka_unit_test(test_oom_decode_big_document),
        cmocka_unit_test(test_oom_decode_every_small_budget),
        cmocka_unit_test(test_oom_encode),
        cmocka_unit_test_setup_teardown(test_guard_releases_on_error, setup, teardown),
    };
    /* Before any jansson allocation, so every reference is counted. */
    json_set_alloc_funcs(count_malloc, count_free);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
