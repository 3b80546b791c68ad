/*
 * actions: implements didww.route_did, unroute_did, update_did,
 * set_group_trunks, add_group_trunks and remove_group_trunks for rule scripts.
 * Arguments are checked strictly (unknown fields, missing or doubled targets,
 * malformed UUIDs, ranges) and raise Lua errors located at the script's call;
 * a DID's number is taken as people write it and normalised by number.c.
 * Request bodies are built with jansson in the key order of DIDWW's seed
 * document. Called on the rule thread that owns the lua_State.
 */
#include "actions.h"

#include <ctype.h>
#include <stdarg.h>
#include <jansson.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lua_json.h"
#include "number.h"

#define ACTIONS_MAX_DESCRIPTION 255
#define ACTIONS_MAX_GROUP_TRUNKS 64

int actions_naming_for_version(const char *v, enum actions_naming *naming, bool *has_billing)
{
    static const char *const legacy[] = {"2017-09-18", "2021-04-19", NULL};
    static const char *const voice_in[] = {"2021-12-15", "2022-05-10", "2026-04-16", "2026-11-19",
                                           NULL};
    for (size_t i = 0; legacy[i]; i++) {
        if (strcmp(v, legacy[i]) == 0) {
            *naming = ACTIONS_NAMING_LEGACY;
            *has_billing = i > 0;
            return 0;
        }
    }
    for (size_t i = 0; voice_in[i]; i++) {
        if (strcmp(v, voice_in[i]) == 0) {
            *naming = strcmp(v, "2026-11-19") == 0 ? ACTIONS_NAMING_VOICE_IN_CAPPED
                                                   : ACTIONS_NAMING_VOICE_IN;
            *has_billing = true;
            return 0;
        }
    }
    return -1;
}

bool actions_is_uuid(const char *s)
{
    static const int dash[] = {8, 13, 18, 23};
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0, d = 0; i < 36; i++) {
        if (d < 4 && i == dash[d]) {
            if (s[i] != '-')
                return false;
            d++;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

void actions_plan_clear(struct actions_plan *plan)
{
    if (!plan)
        return;
    for (size_t i = 0; i < plan->n; i++) {
        struct actions_job *j = &plan->jobs[i];
        free(j->action);
        free(j->method);
        free(j->path);
        free(j->body);
        free(j->did);
        free(j->number);
        free(j->order_key);
    }
    free(plan->jobs);
    plan->jobs = NULL;
    plan->n = plan->cap = 0;
}

/* ---------- names by generation ---------- */

struct actions_names {
    const char *trunk_rel, *group_rel;   /* DID to-one relationships */
    const char *trunk_type, *group_type; /* resource types (and collections) */
    const char *group_trunks_rel;        /* group to-many relationship */
};

static const struct actions_names actions_legacy = {"trunk", "trunk_group", "trunks",
                                                    "trunk_groups", "trunks"};
static const struct actions_names actions_voice_in = {"voice_in_trunk", "voice_in_trunk_group",
                                                      "voice_in_trunks", "voice_in_trunk_groups",
                                                      "voice_in_trunks"};

static const struct actions_names *actions_names_of(const struct actions_ctx *ctx)
{
    return ctx->naming == ACTIONS_NAMING_LEGACY ? &actions_legacy : &actions_voice_in;
}

/* ---------- argument helpers (all raise Lua errors) ---------- */

static struct actions_ctx *actions_ctx_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static int actions_fail(lua_State *L, const char *call, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int actions_fail(lua_State *L, const char *call, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Level 1 is the script line that made the call. */
    return luaL_error(L, "didww.%s: %s", call, msg);
}

/* Rejects any key of the argument table not in allowed. */
static void actions_check_fields(lua_State *L, const char *call, const char *const *allowed)
{
    if (!lua_istable(L, 1))
        actions_fail(L, call, "expects a table argument, e.g. didww.%s{did = \"...\", ...}", call);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            actions_fail(L, call, "fields are named (got a %s key)", luaL_typename(L, -1));
        const char *k = lua_tostring(L, -1);
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(k, allowed[i]) == 0)
                ok = true;
        if (!ok)
            actions_fail(L, call, "unknown field '%s'", k);
    }
}

/* Pushes field name of the argument table; returns its Lua type. */
static int actions_field(lua_State *L, const char *name)
{
    return lua_getfield(L, 1, name);
}

/* Reads an optional UUID field into out[37], lower-cased (DIDWW's ids are lower
 * case; one spelling keeps ordering and coalescing per DID exact). Returns out,
 * or NULL when absent (json.null when allow_null sets *is_null). */
static const char *actions_uuid(lua_State *L, const char *call, const char *name, bool allow_null,
                                bool *is_null, char out[37])
{
    int t = actions_field(L, name);
    const char *v = NULL;
    if (is_null)
        *is_null = false;
    if (t == LUA_TNIL) {
        /* absent */
    } else if (allow_null && lua_json_is_null(L, -1)) {
        *is_null = true;
    } else if (t != LUA_TSTRING) {
        actions_fail(L, call, "field '%s' must be a UUID string, got %s", name,
                     luaL_typename(L, -1));
    } else {
        const char *s = lua_tostring(L, -1);
        if (!actions_is_uuid(s))
            actions_fail(L, call, "field '%s' is not a UUID: \"%.40s\"", name, s);
        for (int i = 0; i < 36; i++)
            out[i] = (char)tolower((unsigned char)s[i]);
        out[36] = '\0';
        v = out;
    }
    lua_pop(L, 1);
    return v;
}

/* Resolves did= or number= into out_did / out_number (digits). Exactly one. */
static void actions_target(lua_State *L, const char *call, const char **did, char did_buf[37],
                           char *number, size_t number_len)
{
    *did = actions_uuid(L, call, "did", false, NULL, did_buf);
    int t = actions_field(L, "number");
    number[0] = '\0';
    if (t != LUA_TNIL) {
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            actions_fail(L, call, "field 'number' must be a string or an integer, got %s",
                         luaL_typename(L, -1));
        if (t == LUA_TNUMBER && !lua_isinteger(L, -1))
            actions_fail(L, call, "field 'number' must be a string or an integer, got a float");
        if (t == LUA_TNUMBER && lua_tointeger(L, -1) < 0)
            actions_fail(L, call, "field 'number' must not be negative");
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        char why[320];
        if (strlen(s) != len)
            actions_fail(L, call, "field 'number' contains a NUL byte");
        if (number_normalize(s, number, number_len, why, sizeof why) != NUMBER_OK)
            actions_fail(L, call, "field 'number': %s", why);
    }
    lua_pop(L, 1);
    if (*did && number[0])
        actions_fail(L, call, "give either 'did' or 'number', not both");
    if (!*did && !number[0])
        actions_fail(L, call, "missing 'did' (UUID) or 'number' (international form)");
}

/* ---------- plan building ---------- */

static json_t *actions_ref(const char *type, const char *id)
{
    return json_pack("{s:s, s:s}", "type", type, "id", id);
}

/* Appends a job; takes ownership of text (a heap string, may be NULL for no
 * body). Raises a Lua error on overflow or outside an event (text is freed). */
static void actions_push(lua_State *L, const char *call, const char *method, const char *path,
                         char *text, const char *did, const char *number, const char *order_key)
{
    struct actions_ctx *ctx = actions_ctx_of(L);
    struct actions_plan *plan = ctx->plan;
    if (!plan) {
        free(text);
        actions_fail(L, call, "can only be called while handling an event (inside on_event)");
    }
    if (plan->n >= ACTIONS_MAX_JOBS) {
        free(text);
        actions_fail(L, call, "more than %d actions for one event", ACTIONS_MAX_JOBS);
    }
    if (plan->n == plan->cap) {
        size_t ncap = plan->cap ? plan->cap * 2 : 4;
        struct actions_job *nj = realloc(plan->jobs, ncap * sizeof *nj);
        if (!nj) {
            free(text);
            luaL_error(L, "out of memory");
        }
        plan->jobs = nj;
        plan->cap = ncap;
    }
    struct actions_job *j = &plan->jobs[plan->n];
    memset(j, 0, sizeof *j);
    j->action = strdup(call);
    j->method = strdup(method);
    j->path = strdup(path);
    j->body = text;
    j->did = did ? strdup(did) : NULL;
    j->number = number && *number ? strdup(number) : NULL;
    j->order_key = strdup(order_key);
    plan->n++;
    if (!j->action || !j->method || !j->path || !j->order_key)
        luaL_error(L, "out of memory");
}

/* Appends a job whose body is a jansson document (stolen: decref'd here). */
static void actions_add(lua_State *L, const char *call, const char *method, const char *path,
                        json_t *body, const char *did, const char *number, const char *order_key)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    bool oom = body && !text;
    json_decref(body);
    if (oom)
        luaL_error(L, "out of memory");
    actions_push(L, call, method, path, text, did, number, order_key);
}

/* Concatenates the NULL-terminated parts into out[len] (cut to fit, always
 * terminated). The hot path builds every text of a route with this instead of
 * snprintf, whose format parsing costs more than the copying. */
static void actions_join(char *out, size_t len, const char *const *parts)
{
    size_t o = 0;
    for (size_t i = 0; parts[i] && o + 1 < len; i++) {
        size_t n = strlen(parts[i]);
        if (n > len - 1 - o)
            n = len - 1 - o;
        memcpy(out + o, parts[i], n);
        o += n;
    }
    out[o] = '\0';
}

/* The DID path, id and FIFO key for a target named by id or number. */
static void actions_did_refs(const char *did, const char *number, char *id, size_t id_len,
                             char *path, size_t path_len, char *key, size_t key_len)
{
    if (did) {
        actions_join(id, id_len, (const char *const[]){did, NULL});
        actions_join(key, key_len, (const char *const[]){"did:", did, NULL});
    } else {
        actions_join(id, id_len, (const char *const[]){"number:", number, NULL});
        actions_join(key, key_len, (const char *const[]){"number:", number, NULL});
    }
    actions_join(path, path_len, (const char *const[]){"/v3/dids/", id, NULL});
}

static json_t *actions_did_doc(const char *id, json_t *attributes, json_t *relationships)
{
    json_t *data = json_pack("{s:s, s:s}", "type", "dids", "id", id);
    if (attributes)
        json_object_set_new(data, "attributes", attributes);
    if (relationships)
        json_object_set_new(data, "relationships", relationships);
    return json_pack("{s:o}", "data", data);
}

/* Appends a PATCH whose body text is already built (fixed-shape documents of
 * validated ids need no JSON library: measurably faster on the hot path). */
static void actions_add_text(lua_State *L, const char *call, const char *path, const char *text,
                             const char *did, const char *number, const char *order_key)
{
    char *copy = strdup(text);
    if (!copy)
        luaL_error(L, "out of memory");
    actions_push(L, call, "PATCH", path, copy, did, number, order_key);
}

/* {"data":{"type":"dids","id":ID,"relationships":{TRUNK:{"data":T},GROUP:{"data":G}}}}
 * where T and G are a resource identifier or null, exactly as jansson would
 * print it compactly (the ids are validated UUIDs or "number:<digits>"). */
static void actions_route_text(char *out, size_t len, const struct actions_names *nm,
                               const char *id, const char *trunk, const char *group)
{
    char t[128], g[128];
    if (trunk)
        actions_join(t, sizeof t,
                     (const char *const[]){"{\"type\":\"", nm->trunk_type, "\",\"id\":\"", trunk,
                                           "\"}", NULL});
    else
        actions_join(t, sizeof t, (const char *const[]){"null", NULL});
    if (group)
        actions_join(g, sizeof g,
                     (const char *const[]){"{\"type\":\"", nm->group_type, "\",\"id\":\"", group,
                                           "\"}", NULL});
    else
        actions_join(g, sizeof g, (const char *const[]){"null", NULL});
    actions_join(out, len,
                 (const char *const[]){"{\"data\":{\"type\":\"dids\",\"id\":\"", id,
                                       "\",\"relationships\":{\"", nm->trunk_rel, "\":{\"data\":",
                                       t, "},\"", nm->group_rel, "\":{\"data\":", g, "}}}}", NULL});
}

static int actions_route_did(lua_State *L)
{
    static const char *const fields[] = {"did", "number", "trunk", "trunk_group", NULL};
    const char *call = "route_did";
    struct actions_ctx *ctx = actions_ctx_of(L);
    const struct actions_names *nm = actions_names_of(ctx);
    const char *did;
    char did_buf[37], number[32], id[64], path[96], key[80];
    actions_check_fields(L, call, fields);
    actions_target(L, call, &did, did_buf, number, sizeof number);
    char trunk_buf[37], group_buf[37];
    const char *trunk = actions_uuid(L, call, "trunk", false, NULL, trunk_buf);
    const char *group = actions_uuid(L, call, "trunk_group", false, NULL, group_buf);
    if (trunk && group)
        actions_fail(L, call,
                     "give either 'trunk' or 'trunk_group', not both (a DID routes to one)");
    if (!trunk && !group)
        actions_fail(L, call, "missing 'trunk' or 'trunk_group'");
    actions_did_refs(did, number, id, sizeof id, path, sizeof path, key, sizeof key);
    char text[512];
    actions_route_text(text, sizeof text, nm, id, trunk, group);
    actions_add_text(L, call, path, text, did, number, key);
    return 0;
}

static int actions_unroute_did(lua_State *L)
{
    static const char *const fields[] = {"did", "number", NULL};
    const char *call = "unroute_did";
    const struct actions_names *nm = actions_names_of(actions_ctx_of(L));
    const char *did;
    char did_buf[37], number[32], id[64], path[96], key[80];
    actions_check_fields(L, call, fields);
    actions_target(L, call, &did, did_buf, number, sizeof number);
    actions_did_refs(did, number, id, sizeof id, path, sizeof path, key, sizeof key);
    char text[512];
    actions_route_text(text, sizeof text, nm, id, NULL, NULL);
    actions_add_text(L, call, path, text, did, number, key);
    return 0;
}

/* Checks an integer field within [min, max] (or json.null when nullable) and,
 * when out is non-NULL, builds its JSON value. Returns 1 when present, 0 when
 * absent. Raises before allocating anything. */
static int actions_int_field(lua_State *L, const char *call, const char *name, long long min,
                             long long max, bool nullable, json_t **out)
{
    int t = actions_field(L, name);
    int present = t != LUA_TNIL;
    if (!present) {
        lua_pop(L, 1);
        return 0;
    }
    if (nullable && lua_json_is_null(L, -1)) {
        lua_pop(L, 1);
        if (out)
            *out = json_null();
        return 1;
    }
    if (t != LUA_TNUMBER)
        actions_fail(L, call, "field '%s' must be an integer%s, got %s", name,
                     nullable ? " or json.null" : "", luaL_typename(L, -1));
    long long v;
    if (lua_isinteger(L, -1)) {
        v = (long long)lua_tointeger(L, -1);
    } else {
        double d = lua_tonumber(L, -1);
        if (!(d >= -9e15 && d <= 9e15) || d != (double)(long long)d)
            actions_fail(L, call, "field '%s' must be an integer, got %g", name, d);
        v = (long long)d;
    }
    if (v < min || v > max)
        actions_fail(L, call, "field '%s' must be between %lld and %lld, got %lld", name, min, max,
                     v);
    lua_pop(L, 1);
    if (out)
        *out = json_integer(v);
    return present;
}

static const char *const actions_to_one[][2] = {
    {"capacity_pool", "capacity_pools"}, {"shared_capacity_group", "shared_capacity_groups"}};

/* First pass of update_did: every check, no allocation (errors longjmp). */
static void actions_update_validate(lua_State *L, const char *call, const struct actions_ctx *ctx)
{
    int fields = 0;
    int t = actions_field(L, "description");
    if (t == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        json_t *probe = n <= ACTIONS_MAX_DESCRIPTION ? json_stringn(s, n) : NULL;
        bool ok = probe != NULL;
        json_decref(probe);
        if (!ok)
            actions_fail(L, call, "field 'description' must be UTF-8 text of at most %d bytes",
                         ACTIONS_MAX_DESCRIPTION);
        fields++;
    } else if (t != LUA_TNIL && lua_json_is_null(L, -1)) {
        fields++;
    } else if (t != LUA_TNIL) {
        actions_fail(L, call, "field 'description' must be a string or json.null, got %s",
                     luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    fields += actions_int_field(L, call, "capacity_limit", 0, 32767, true, NULL);
    fields += actions_int_field(L, call, "dedicated_channels_count", 0, 32767, false, NULL);
    int bill = actions_int_field(L, call, "billing_cycles_count", 0, 999, true, NULL);
    if (bill && !ctx->has_billing_cycles)
        actions_fail(L, call,
                     "field 'billing_cycles_count' does not exist in API version 2017-09-18");
    fields += bill;
    t = actions_field(L, "terminated");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        actions_fail(L, call, "field 'terminated' must be true or false, got %s",
                     luaL_typename(L, -1));
    fields += t != LUA_TNIL;
    lua_pop(L, 1);
    for (size_t i = 0; i < 2; i++) {
        bool is_null = false;
        char buf[37];
        if (actions_uuid(L, call, actions_to_one[i][0], true, &is_null, buf) || is_null)
            fields++;
    }
    if (fields == 0)
        actions_fail(L, call, "nothing to update: give at least one attribute or relationship");
}

static int actions_update_did(lua_State *L)
{
    static const char *const fields[] = {"did",
                                         "number",
                                         "description",
                                         "capacity_limit",
                                         "dedicated_channels_count",
                                         "billing_cycles_count",
                                         "terminated",
                                         "capacity_pool",
                                         "shared_capacity_group",
                                         NULL};
    const char *call = "update_did";
    struct actions_ctx *ctx = actions_ctx_of(L);
    const char *did;
    char did_buf[37], number[32], id[64], path[96], key[80];
    actions_check_fields(L, call, fields);
    actions_target(L, call, &did, did_buf, number, sizeof number);
    actions_update_validate(L, call, ctx);
    actions_did_refs(did, number, id, sizeof id, path, sizeof path, key, sizeof key);

    /* Second pass: build; nothing below raises a Lua error. */
    json_t *attrs = json_object();
    json_t *rel = json_object();
    json_t *v = NULL;
    lua_getfield(L, 1, "description");
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        json_object_set_new(attrs, "description", json_stringn(s, n));
    } else if (lua_json_is_null(L, -1)) {
        json_object_set_new(attrs, "description", json_null());
    }
    lua_pop(L, 1);
    if (actions_int_field(L, call, "capacity_limit", 0, 32767, true, &v))
        json_object_set_new(attrs, "capacity_limit", v);
    if (actions_int_field(L, call, "dedicated_channels_count", 0, 32767, false, &v))
        json_object_set_new(attrs, "dedicated_channels_count", v);
    if (actions_int_field(L, call, "billing_cycles_count", 0, 999, true, &v))
        json_object_set_new(attrs, "billing_cycles_count", v);
    lua_getfield(L, 1, "terminated");
    if (lua_type(L, -1) == LUA_TBOOLEAN)
        json_object_set_new(attrs, "terminated", json_boolean(lua_toboolean(L, -1)));
    lua_pop(L, 1);
    for (size_t i = 0; i < 2; i++) {
        bool is_null = false;
        char buf[37];
        const char *ref = actions_uuid(L, call, actions_to_one[i][0], true, &is_null, buf);
        if (is_null)
            json_object_set_new(rel, actions_to_one[i][0], json_pack("{s:n}", "data"));
        else if (ref)
            json_object_set_new(rel, actions_to_one[i][0],
                                json_pack("{s:o}", "data", actions_ref(actions_to_one[i][1], ref)));
    }
    bool has_attrs = json_object_size(attrs) > 0, has_rel = json_object_size(rel) > 0;
    json_t *doc = actions_did_doc(id, has_attrs ? json_incref(attrs) : NULL,
                                  has_rel ? json_incref(rel) : NULL);
    json_decref(attrs);
    json_decref(rel);
    actions_add(L, call, "PATCH", path, doc, did, number, key);
    return 0;
}

/* Reads trunk_group and the trunks list; returns the group id and a new array of
 * trunk identifiers (caller owns). cap_version applies the API version's cap on a
 * group's size (not to removals). */
static json_t *actions_group_args(lua_State *L, const char *call, const char **group,
                                  char group_buf[37], bool allow_empty, bool cap_version)
{
    static const char *const fields[] = {"trunk_group", "trunks", NULL};
    const struct actions_names *nm = actions_names_of(actions_ctx_of(L));
    actions_check_fields(L, call, fields);
    *group = actions_uuid(L, call, "trunk_group", false, NULL, group_buf);
    if (!*group)
        actions_fail(L, call, "missing 'trunk_group'");
    if (actions_field(L, "trunks") != LUA_TTABLE)
        actions_fail(L, call, "field 'trunks' must be a list of trunk UUIDs, e.g. {\"...\"}");
    lua_Integer n = (lua_Integer)luaL_len(L, -1);
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        count++;
        lua_pop(L, 1);
    }
    if ((lua_Integer)count != n)
        actions_fail(L, call, "field 'trunks' must be a list (keys 1..n), not a map");
    if (n == 0 && !allow_empty)
        actions_fail(L, call, "field 'trunks' is empty");
    if (n > ACTIONS_MAX_GROUP_TRUNKS)
        actions_fail(L, call, "field 'trunks' has more than %d entries", ACTIONS_MAX_GROUP_TRUNKS);
    /* The version's own cap: a membership PATCH (or a POST adding members) with more
     * trunks than a group may hold is refused here, at the script's line, instead of
     * by DIDWW with a 422 once the job is delivered. */
    if (cap_version && actions_ctx_of(L)->naming == ACTIONS_NAMING_VOICE_IN_CAPPED &&
        n > ACTIONS_MAX_GROUP_TRUNKS_2026_11)
        actions_fail(L, call,
                     "field 'trunks' has %lld entries; API version 2026-11-19 allows at most %d "
                     "trunks in a trunk group",
                     (long long)n, ACTIONS_MAX_GROUP_TRUNKS_2026_11);
    /* Validate everything first: a raised error must not leak the array. */
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, -1, i);
        if (lua_type(L, -1) != LUA_TSTRING || !actions_is_uuid(lua_tostring(L, -1)))
            actions_fail(L, call, "trunks[%lld] is not a UUID", (long long)i);
        for (lua_Integer k = 1; k < i; k++) {
            lua_geti(L, -2, k);
            bool same = strcasecmp(lua_tostring(L, -1), lua_tostring(L, -2)) == 0;
            lua_pop(L, 1);
            if (same)
                actions_fail(L, call, "trunks[%lld] repeats trunks[%lld]", (long long)i,
                             (long long)k);
        }
        lua_pop(L, 1);
    }
    json_t *arr = json_array();
    for (lua_Integer i = 1; i <= n; i++) {
        char lower[37];
        lua_geti(L, -1, i);
        const char *t = lua_tostring(L, -1);
        for (int c = 0; c < 36; c++)
            lower[c] = (char)tolower((unsigned char)t[c]);
        lower[36] = '\0';
        json_array_append_new(arr, actions_ref(nm->trunk_type, lower));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return arr;
}

static int actions_set_group_trunks(lua_State *L)
{
    const char *call = "set_group_trunks";
    const struct actions_names *nm = actions_names_of(actions_ctx_of(L));
    const char *group;
    char group_buf[37];
    json_t *arr = actions_group_args(L, call, &group, group_buf, true, true);
    char path[128], key[64];
    snprintf(path, sizeof path, "/v3/%s/%s", nm->group_type, group);
    snprintf(key, sizeof key, "group:%s", group);
    json_t *rel = json_object();
    json_object_set_new(rel, nm->group_trunks_rel, json_pack("{s:o}", "data", arr));
    json_t *doc = json_pack("{s:{s:s, s:s, s:o}}", "data", "type", nm->group_type, "id", group,
                            "relationships", rel);
    actions_add(L, call, "PATCH", path, doc, NULL, NULL, key);
    return 0;
}

static int actions_group_link(lua_State *L, const char *call, const char *method)
{
    const struct actions_names *nm = actions_names_of(actions_ctx_of(L));
    const char *group;
    char group_buf[37];
    json_t *arr =
        actions_group_args(L, call, &group, group_buf, false, strcmp(method, "POST") == 0);
    char path[160], key[64];
    snprintf(path, sizeof path, "/v3/%s/%s/relationships/%s", nm->group_type, group,
             nm->group_trunks_rel);
    snprintf(key, sizeof key, "group:%s", group);
    actions_add(L, call, method, path, json_pack("{s:o}", "data", arr), NULL, NULL, key);
    return 0;
}

static int actions_add_group_trunks(lua_State *L)
{
    return actions_group_link(L, "add_group_trunks", "POST");
}

static int actions_remove_group_trunks(lua_State *L)
{
    return actions_group_link(L, "remove_group_trunks", "DELETE");
}

void actions_push_lib(lua_State *L, struct actions_ctx *ctx)
{
    static const luaL_Reg fns[] = {{"route_did", actions_route_did},
                                   {"unroute_did", actions_unroute_did},
                                   {"update_did", actions_update_did},
                                   {"set_group_trunks", actions_set_group_trunks},
                                   {"add_group_trunks", actions_add_group_trunks},
                                   {"remove_group_trunks", actions_remove_group_trunks},
                                   {NULL, NULL}};
    lua_newtable(L);
    lua_pushlightuserdata(L, ctx);
    luaL_setfuncs(L, fns, 1);
}
