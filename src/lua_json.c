/*
 * lua_json: the bridge between jansson values and Lua 5.4 values, and the `json`
 * library the rule script sees. It owns the marker metatables that keep an empty
 * decoded [] distinct from {}, the json.null sentinel, and a to-be-closed guard type
 * that releases a jansson tree when a Lua error (out of memory included) unwinds
 * past it. Called only on the thread that owns the lua_State. It must never leak a
 * jansson reference across a longjmp: the Lua-facing functions finish all jansson
 * work, or park the tree in a guard, before anything that can raise.
 */
#include "lua_json.h"

#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(json_int_t) <= sizeof(lua_Integer), "json_int_t must fit a lua_Integer");

/* Registry keys: addresses of these statics. Light-userdata keys (lua_rawgetp) let
 * the encoder look the markers up without allocating, so it never raises. */
static char null_sentinel;
static char array_mt_key;
static char object_mt_key;
static char guard_mt_key;

/* Longest path kept in an encoder error message, and the longest key shown in it. */
#define PATH_MAX_LEN 160
#define PATH_KEY_MAX 40

struct guard {
    json_t *v;
};

/* The encoder's state for one lua_json_to_json call. */
struct enc {
    lua_State *L;
    int max_depth;
    char *err;
    size_t err_len;
    char path[PATH_MAX_LEN];
    size_t path_len;
    int path_cut; /* a segment did not fit: the path shown ends in "..." */
};

/* One table on the way from the root to the value being encoded (cycle check). */
struct visit {
    const void *table;
    const struct visit *up;
};

/* Where the path stood before a segment was added, to restore it afterwards. */
struct path_mark {
    size_t len;
    int cut;
};

/* What a scan of a table's keys found. */
struct keyscan {
    lua_Integer n;     /* all keys */
    lua_Integer n_str; /* string keys */
    lua_Integer n_int; /* integer keys */
    lua_Integer max_int;
    int int_below_one; /* an integer key < 1 */
    int bad_type;      /* type of the first key that is neither string nor integer, or 0 */
    int bad_is_float;
};

enum marker { MARK_NONE, MARK_ARRAY, MARK_OBJECT };

/* Strict UTF-8 (the same rules as JSON bodies: see jdoc_utf8_valid). */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t bad;
    return jdoc_utf8_valid(s, n, &bad);
}

static void set_err(char *err, size_t err_len, const char *msg)
{
    if (err && err_len)
        snprintf(err, err_len, "%s", msg);
}

/* ---- path bookkeeping for encoder messages ---- */

static void path_append(struct enc *e, const char *seg, size_t seg_len, struct path_mark *m)
{
    m->len = e->path_len;
    m->cut = e->path_cut;
    if (e->path_cut)
        return;
    if (e->path_len + seg_len >= sizeof e->path) {
        e->path_cut = 1;
        return;
    }
    memcpy(e->path + e->path_len, seg, seg_len);
    e->path_len += seg_len;
    e->path[e->path_len] = '\0';
}

static void path_restore(struct enc *e, const struct path_mark *m)
{
    e->path_len = m->len;
    e->path_cut = m->cut;
    e->path[e->path_len] = '\0';
}

static void path_push_index(struct enc *e, lua_Integer i, struct path_mark *m)
{
    char seg[32];
    int n = snprintf(seg, sizeof seg, "[%lld]", (long long)i);
    path_append(e, seg, n > 0 ? (size_t)n : 0, m);
}

static int is_identifier(const char *k, size_t len)
{
    if (len == 0 || len > PATH_KEY_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)k[i];
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

/* Adds ".key", or ["key"] when the key is not a plain name. Long keys are cut (never
 * inside a UTF-8 sequence) and bytes that could garble a log line become '?'. */
static void path_push_key(struct enc *e, const char *k, size_t len, struct path_mark *m)
{
    char seg[PATH_KEY_MAX + 16];
    size_t n = 0;
    if (is_identifier(k, len)) {
        seg[n++] = '.';
        memcpy(seg + n, k, len);
        n += len;
        path_append(e, seg, n, m);
        return;
    }
    int utf8 = utf8_valid((const unsigned char *)k, len);
    size_t show = len;
    if (show > PATH_KEY_MAX) {
        show = PATH_KEY_MAX;
        while (utf8 && show > 0 && ((unsigned char)k[show] & 0xc0) == 0x80)
            show--;
    }
    seg[n++] = '[';
    seg[n++] = '"';
    for (size_t i = 0; i < show; i++) {
        unsigned char c = (unsigned char)k[i];
        int printable = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') || (c >= 0x80 && utf8);
        seg[n++] = printable ? (char)c : '?';
    }
    if (show < len) {
        memcpy(seg + n, "...", 3);
        n += 3;
    }
    seg[n++] = '"';
    seg[n++] = ']';
    path_append(e, seg, n, m);
}

__attribute__((format(printf, 2, 3))) static json_t *enc_fail(struct enc *e, const char *fmt, ...)
{
    char reason[128];
    va_list ap;
    if (!e->err || !e->err_len)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    snprintf(e->err, e->err_len, "value at %s%s: %s", e->path_len ? e->path : ".",
             e->path_cut ? "..." : "", reason);
    return NULL;
}

static json_t *enc_checked(struct enc *e, json_t *v)
{
    return v ? v : enc_fail(e, "out of memory");
}

/* ---- Lua -> JSON ---- */

static enum marker table_marker(lua_State *L, int idx)
{
    enum marker m = MARK_NONE;
    if (!lua_getmetatable(L, idx))
        return MARK_NONE;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
    if (lua_rawequal(L, -1, -2))
        m = MARK_ARRAY;
    lua_pop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &object_mt_key);
    if (lua_rawequal(L, -1, -2))
        m = MARK_OBJECT;
    lua_pop(L, 2);
    return m;
}

static void scan_keys(lua_State *L, int idx, struct keyscan *ks)
{
    memset(ks, 0, sizeof *ks);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2);
        ks->n++;
        if (kt == LUA_TSTRING) {
            ks->n_str++;
        } else if (kt == LUA_TNUMBER && lua_isinteger(L, -2)) {
            lua_Integer k = lua_tointeger(L, -2);
            ks->n_int++;
            if (k < 1)
                ks->int_below_one = 1;
            else if (k > ks->max_int)
                ks->max_int = k;
        } else if (!ks->bad_type) {
            ks->bad_type = kt;
            ks->bad_is_float = kt == LUA_TNUMBER;
        }
        lua_pop(L, 1);
    }
}

static json_t *enc_value(struct enc *e, int idx, int depth, const struct visit *up);

static json_t *enc_array(struct enc *e, int idx, lua_Integer n, int depth, const struct visit *here)
{
    lua_State *L = e->L;
    json_t *arr = json_array();
    if (!arr)
        return enc_fail(e, "out of memory");
    for (lua_Integer i = 1; i <= n; i++) {
        struct path_mark m;
        json_t *c;
        lua_rawgeti(L, idx, i);
        path_push_index(e, i, &m);
        c = enc_value(e, lua_gettop(L), depth + 1, here);
        path_restore(e, &m);
        lua_pop(L, 1);
        if (!c)
            goto fail;
        if (json_array_append_new(arr, c) < 0) { /* steals c even on failure */
            enc_fail(e, "out of memory");
            goto fail;
        }
    }
    return arr;
fail:
    json_decref(arr);
    return NULL;
}

static json_t *enc_object(struct enc *e, int idx, int depth, const struct visit *here)
{
    lua_State *L = e->L;
    json_t *obj = json_object();
    if (!obj)
        return enc_fail(e, "out of memory");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        struct path_mark m;
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen); /* a string: no in-place conversion */
        json_t *c;
        path_push_key(e, k, klen, &m);
        if (!utf8_valid((const unsigned char *)k, klen)) {
            enc_fail(e, "key is not valid UTF-8");
            lua_pop(L, 2);
            goto fail;
        }
        c = enc_value(e, lua_gettop(L), depth + 1, here);
        path_restore(e, &m);
        if (!c) {
            lua_pop(L, 2);
            goto fail;
        }
        if (json_object_setn_new_nocheck(obj, k, klen, c) < 0) { /* steals c */
            enc_fail(e, "out of memory");
            lua_pop(L, 2);
            goto fail;
        }
        lua_pop(L, 1);
    }
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

static json_t *enc_table(struct enc *e, int idx, int depth, const struct visit *up)
{
    lua_State *L = e->L;
    const void *p = lua_topointer(L, idx);
    struct visit here = {p, up};
    struct keyscan ks;
    enum marker mark;
    int is_seq;

    for (const struct visit *v = up; v; v = v->up)
        if (v->table == p)
            return enc_fail(e, "table contains itself (cycle)");
    if (depth >= e->max_depth)
        return enc_fail(e, "nesting deeper than %d levels", e->max_depth);
    if (!lua_checkstack(L, 4))
        return enc_fail(e, "Lua stack exhausted");

    mark = table_marker(L, idx);
    scan_keys(L, idx, &ks);
    if (ks.bad_type)
        return enc_fail(e, "table key of type %s is not allowed (keys must be strings or 1..n)",
                        ks.bad_is_float ? "float" : lua_typename(L, ks.bad_type));
    is_seq = ks.n > 0 && ks.n_int == ks.n && !ks.int_below_one && ks.max_int == ks.n;

    switch (mark) {
    case MARK_ARRAY:
        if (ks.n > 0 && !is_seq)
            return enc_fail(e, "array table has keys other than 1..n");
        return enc_array(e, idx, ks.n, depth, &here);
    case MARK_OBJECT:
        if (ks.n_int > 0)
            return enc_fail(e, "object table has a non-string key");
        return enc_object(e, idx, depth, &here);
    case MARK_NONE:
        break;
    }
    if (is_seq)
        return enc_array(e, idx, ks.n, depth, &here);
    if (ks.n_str == ks.n) /* includes the empty table: {} */
        return enc_object(e, idx, depth, &here);
    if (ks.n_str > 0)
        return enc_fail(e, "table has mixed keys (strings and integers)");
    return enc_fail(e, "table's integer keys are not a sequence 1..n");
}

static json_t *enc_value(struct enc *e, int idx, int depth, const struct visit *up)
{
    lua_State *L = e->L;
    int t = lua_type(L, idx);
    switch (t) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
        double d;
        if (lua_isinteger(L, idx))
            return enc_checked(e, json_integer((json_int_t)lua_tointeger(L, idx)));
        d = (double)lua_tonumber(L, idx);
        if (isnan(d))
            return enc_fail(e, "NaN is not valid JSON");
        if (isinf(d))
            return enc_fail(e, "%s is not valid JSON", d > 0 ? "infinity" : "-infinity");
        return enc_checked(e, json_real(d));
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (!utf8_valid((const unsigned char *)s, len))
            return enc_fail(e, "string is not valid UTF-8");
        return enc_checked(e, json_stringn_nocheck(s, len));
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == &null_sentinel)
            return json_null();
        break;
    case LUA_TTABLE:
        return enc_table(e, idx, depth, up);
    default:
        break;
    }
    return enc_fail(e, "a %s is not valid JSON", lua_typename(L, t));
}

json_t *lua_json_to_json(lua_State *L, int idx, int max_depth, char *err, size_t err_len)
{
    struct enc e;
    e.L = L;
    e.max_depth = max_depth;
    e.err = err;
    e.err_len = err_len;
    e.path[0] = '\0';
    e.path_len = 0;
    e.path_cut = 0;
    return enc_value(&e, lua_absindex(L, idx), 0, NULL);
}

/* ---- JSON -> Lua ---- */

static void set_marker(lua_State *L, const char *key)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, key);
    lua_setmetatable(L, -2);
}

static int push_value(lua_State *L, json_t *v, int depth, int max_depth, char *err, size_t err_len)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v);
        if (depth >= max_depth)
            goto too_deep;
        luaL_checkstack(L, 3, "JSON nesting");
        lua_createtable(L, 0, n > INT_MAX ? INT_MAX : (int)n);
        for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
            lua_pushlstring(L, json_object_iter_key(it), json_object_iter_key_len(it));
            if (push_value(L, json_object_iter_value(it), depth + 1, max_depth, err, err_len) < 0) {
                lua_pop(L, 2);
                return -1;
            }
            lua_rawset(L, -3);
        }
        set_marker(L, &object_mt_key);
        return 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (depth >= max_depth)
            goto too_deep;
        luaL_checkstack(L, 3, "JSON nesting");
        lua_createtable(L, n > INT_MAX ? INT_MAX : (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            if (push_value(L, json_array_get(v, i), depth + 1, max_depth, err, err_len) < 0) {
                lua_pop(L, 1);
                return -1;
            }
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        set_marker(L, &array_mt_key);
        return 0;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        return 0;
    case JSON_REAL:
        lua_pushnumber(L, (lua_Number)json_real_value(v));
        return 0;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        return 0;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        return 0;
    case JSON_NULL:
        lua_json_push_null(L);
        return 0;
    }
    set_err(err, err_len, "unknown JSON type");
    return -1;
too_deep:
    if (err && err_len)
        snprintf(err, err_len, "nesting deeper than %d levels", max_depth);
    return -1;
}

int lua_json_push(lua_State *L, json_t *v, int max_depth, char *err, size_t err_len)
{
    if (!v) {
        set_err(err, err_len, "no value");
        return -1;
    }
    return push_value(L, v, 0, max_depth, err, err_len);
}

/* Pushes the value at n and returns the node after its subtree. The depth was
 * checked before the walk started (doc->depth), so this cannot fail except by
 * raising a Lua memory error. */
static const struct jdoc_node *push_doc_node(lua_State *L, const struct jdoc *doc,
                                             const struct jdoc_node *n)
{
    switch ((enum jdoc_type)n->type) {
    case JDOC_OBJECT: {
        const struct jdoc_node *k = n + 1;
        luaL_checkstack(L, 3, "JSON nesting");
        lua_createtable(L, 0, n->len > INT_MAX ? INT_MAX : (int)n->len);
        for (uint32_t i = 0; i < n->len; i++) {
            lua_pushlstring(L, jdoc_str(doc, k), k->len);
            k = push_doc_node(L, doc, k + 1);
            lua_rawset(L, -3);
        }
        set_marker(L, &object_mt_key);
        return k;
    }
    case JDOC_ARRAY: {
        const struct jdoc_node *e = n + 1;
        luaL_checkstack(L, 3, "JSON nesting");
        lua_createtable(L, n->len > INT_MAX ? INT_MAX : (int)n->len, 0);
        for (uint32_t i = 0; i < n->len; i++) {
            e = push_doc_node(L, doc, e);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        set_marker(L, &array_mt_key);
        return e;
    }
    case JDOC_STRING:
        lua_pushlstring(L, jdoc_str(doc, n), n->len);
        break;
    case JDOC_INT:
        lua_pushinteger(L, (lua_Integer)n->u.i);
        break;
    case JDOC_REAL:
        lua_pushnumber(L, (lua_Number)n->u.d);
        break;
    case JDOC_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JDOC_FALSE:
        lua_pushboolean(L, 0);
        break;
    case JDOC_NULL:
        lua_json_push_null(L);
        break;
    }
    return n + 1;
}

int lua_json_push_doc(lua_State *L, const struct jdoc *doc, int max_depth, char *err,
                      size_t err_len)
{
    if (!doc) {
        set_err(err, err_len, "no value");
        return -1;
    }
    if (max_depth < 0 || doc->depth > (unsigned)max_depth) {
        if (err && err_len)
            snprintf(err, err_len, "nesting deeper than %d levels", max_depth);
        return -1;
    }
    push_doc_node(L, doc, jdoc_root(doc));
    return 0;
}

/* ---- guard: a to-be-closed owner of one jansson reference ---- */

static int guard_close(lua_State *L)
{
    struct guard *g = lua_touserdata(L, 1);
    if (g) {
        json_decref(g->v);
        g->v = NULL;
    }
    return 0;
}

json_t **lua_json_push_guard(lua_State *L)
{
    struct guard *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->v = NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &guard_mt_key);
    lua_setmetatable(L, -2);
    lua_toclose(L, -1);
    return &g->v;
}

/* ---- the script-facing library ---- */

static int max_depth_upvalue(lua_State *L)
{
    lua_Integer d = lua_tointeger(L, lua_upvalueindex(1));
    return d > INT_MAX ? INT_MAX : (int)d;
}

/* json.encode(v [, {indent = 0..31}]) */
static int l_encode(lua_State *L)
{
    size_t flags = JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY;
    char err[256];
    json_t **slot;
    size_t size;
    luaL_Buffer b;
    char *out;

    luaL_checkany(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        int isint;
        lua_Integer indent;
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "indent");
        indent = lua_tointegerx(L, -1, &isint);
        if (!lua_isnil(L, -1) && (!isint || indent < 0 || indent > JSON_MAX_INDENT))
            return luaL_error(L, "json.encode: opts.indent must be an integer 0..%d",
                              JSON_MAX_INDENT);
        if (indent > 0)
            flags = JSON_INDENT(indent) | JSON_SORT_KEYS | JSON_ENCODE_ANY;
        lua_pop(L, 1);
    }

    /* From here the tree lives in the guard, so a memory error below frees it. */
    slot = lua_json_push_guard(L);
    *slot = lua_json_to_json(L, 1, max_depth_upvalue(L), err, sizeof err);
    if (!*slot)
        return luaL_error(L, "json.encode: %s", err);
    size = json_dumpb(*slot, NULL, 0, flags);
    if (size == 0)
        return luaL_error(L, "json.encode: out of memory");
    out = luaL_buffinitsize(L, &b, size);
    if (json_dumpb(*slot, out, size, flags) != size)
        return luaL_error(L, "json.encode: out of memory");
    luaL_pushresultsize(&b, size);
    json_decref(*slot);
    *slot = NULL;
    return 1;
}

/* json.decode(text) */
static int l_decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    json_error_t jerr;
    char err[256];
    json_t **slot = lua_json_push_guard(L);

    *slot = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!*slot)
        return luaL_error(L, "json.decode: %s at line %d column %d", jerr.text, jerr.line,
                          jerr.column);
    if (lua_json_push(L, *slot, max_depth_upvalue(L), err, sizeof err) < 0)
        return luaL_error(L, "json.decode: %s", err);
    json_decref(*slot);
    *slot = NULL;
    return 1;
}

/* json.array(...): a new array-marked table holding the arguments. */
static int l_array(lua_State *L)
{
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++)
        if (lua_isnil(L, i))
            return luaL_error(L, "json.array: argument %d is nil (use json.null)", i);
    luaL_checkstack(L, 2, "json.array");
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        lua_pushvalue(L, i);
        lua_rawseti(L, -2, i);
    }
    set_marker(L, &array_mt_key);
    return 1;
}

/* json.object([t]): a new empty object-marked table, or t marked as an object. */
static int l_object(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_createtable(L, 0, 0);
        set_marker(L, &object_mt_key);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getmetatable(L, 1)) {
        lua_pop(L, 1);
        if (table_marker(L, 1) == MARK_NONE)
            return luaL_error(L, "json.object: the table already has a metatable");
    }
    lua_settop(L, 1);
    set_marker(L, &object_mt_key);
    return 1;
}

void lua_json_push_lib(lua_State *L, int max_depth)
{
    static const luaL_Reg funcs[] = {
        {"encode", l_encode}, {"decode", l_decode}, {"array", l_array},
        {"object", l_object}, {NULL, NULL},
    };
    luaL_newlibtable(L, funcs);
    lua_pushinteger(L, max_depth);
    luaL_setfuncs(L, funcs, 1);
    lua_json_push_null(L);
    lua_setfield(L, -2, "null");
}

/* ---- setup and the null sentinel ---- */

static void new_marker(lua_State *L, const char *key, const char *name)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    /* Shared by every decoded table of the state: scripts must not be able to
     * fetch and alter it (that would leak from one event into the next). */
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

void lua_json_init(lua_State *L)
{
    new_marker(L, &array_mt_key, "hookline.json.array");
    new_marker(L, &object_mt_key, "hookline.json.object");
    new_marker(L, &guard_mt_key, "hookline.json.guard");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &guard_mt_key);
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

int lua_json_is_null(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == &null_sentinel;
}

void lua_json_push_null(lua_State *L)
{
    lua_pushlightuserdata(L, &null_sentinel);
}
