/*
 * rules: runs the operator's Lua 5.4 script in a sandbox. The shared part is
 * the current program (script text, version, data files), swapped atomically
 * by reload under r->lock and reference-counted so a thread finishing an event
 * on the old program is never disturbed. Each thread that runs rules owns one
 * lua_State (thread-local, never shared): an allow-list environment with
 * read-only library tables, a counting allocator (memory limit), a count hook
 * (instruction limit that pcall cannot swallow) and a fresh global table per
 * event so nothing one event writes is seen by the next.
 */
#include "rules.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "digest.h"
#include "jout.h"
#include "log.h"
#include "lua_json.h"

#define RULES_MAX_SCRIPT_BYTES (1u << 20)
#define RULES_MAX_DATA_BYTES (16u << 20)
#define RULES_HOOK_STEP 1000
#define RULES_MAX_LOG_FIELDS 16

struct rules_program {
    atomic_int refs;
    char *text;
    size_t len;
    char version[24];
    json_t **data; /* one per data file, same order as the options */
};

struct rules {
    pthread_mutex_t lock; /* guards current */
    struct rules_program *current;
    pthread_key_t key; /* the calling thread's struct rules_vm */
    char *script_path, *display_name, *api_version;
    char *script_text; /* the script held in memory (script_path NULL), or NULL */
    size_t script_len;
    char **data_names, **data_paths;
    size_t ndata;
    int64_t instruction_limit, memory_limit;
    int json_max_depth;
    rules_gate_fn gate; /* checks a reloaded program before it is installed; NULL: none */
    void *gate_ctx;
};

/* Small Lua blocks come from per-state size-class free lists carved out of
 * 64 KiB chunks: Lua tells the allocator every block's size, so no header is
 * needed, and an event's tables and strings cost a list pop instead of a
 * malloc. Chunks are returned when the state closes. */
#define RULES_POOL_QUANTUM 16
#define RULES_POOL_MAX 256
#define RULES_POOL_CLASSES (RULES_POOL_MAX / RULES_POOL_QUANTUM)
#define RULES_POOL_CHUNK (64 * 1024)
/* A state whose pool grew beyond this many chunks (an event that built a lot,
 * e.g. one stopped by the memory limit) is closed after its event and rebuilt
 * at the next one, so a single event cannot pin its peak for good. */
#define RULES_POOL_RETAIN_CHUNKS 64

struct rules_pool_chunk {
    struct rules_pool_chunk *next;
    size_t used;
    _Alignas(16) unsigned char mem[];
};

struct rules_pool {
    void *free[RULES_POOL_CLASSES];
    struct rules_pool_chunk *chunks;
    size_t nchunks;
};

struct rules_vm {
    struct rules_pool pool;
    lua_State *L;
    struct rules *r;
    struct rules_program *prog;
    size_t mem_used;
    size_t mem_limit; /* 0: unlimited (while building the state) */
    bool mem_fired;
    char mem_line[LUA_IDSIZE + 16]; /* "file:line" where the memory limit fired, or "" */
    int64_t instr_count, instr_budget;
    bool instr_fired;
    char limit_msg[256];
    struct actions_ctx actions;
    int main_ref, g0_ref, on_event_ref, event_meta_ref, env_ref;
    const struct rules_event *ev;
    bool skipped;
    char skip_reason[256];
};

static char rules_skip_sentinel;

/* ---------- programs ---------- */

static void rules_program_unref(struct rules_program *p)
{
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    free(p->text);
    if (p->data) {
        /* data count is not stored on the program; the array is NULL-terminated */
        for (size_t i = 0; p->data[i]; i++)
            json_decref(p->data[i]);
    }
    free(p->data);
    free(p);
}

static struct rules_program *rules_current(struct rules *r)
{
    pthread_mutex_lock(&r->lock);
    struct rules_program *p = r->current;
    if (p)
        atomic_fetch_add(&p->refs, 1);
    pthread_mutex_unlock(&r->lock);
    return p;
}

static char *rules_read_file(const char *path, size_t max, size_t *len, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (!f) {
        snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(max + 1);
    if (!buf) {
        snprintf(err, err_len, "%s: out of memory", path);
        goto fail;
    }
    *len = fread(buf, 1, max + 1, f);
    if (ferror(f)) {
        snprintf(err, err_len, "%s: read error: %s", path, strerror(errno));
        goto fail;
    }
    if (*len > max) {
        snprintf(err, err_len, "%s: larger than %zu bytes", path, max);
        goto fail;
    }
    buf[*len] = '\0';
    fclose(f);
    return buf;
fail:
    free(buf);
    fclose(f);
    return NULL;
}

static struct rules_program *rules_program_load(struct rules *r, char *err, size_t err_len)
{
    struct rules_program *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    atomic_init(&p->refs, 1);
    if (r->script_text && r->script_len > RULES_MAX_SCRIPT_BYTES) {
        snprintf(err, err_len, "%s: larger than %u bytes", r->display_name,
                 (unsigned)RULES_MAX_SCRIPT_BYTES);
    } else if (r->script_text) {
        p->text = malloc(r->script_len + 1);
        if (p->text) {
            memcpy(p->text, r->script_text, r->script_len);
            p->text[r->script_len] = '\0';
            p->len = r->script_len;
        } else {
            snprintf(err, err_len, "out of memory");
        }
    } else {
        p->text = rules_read_file(r->script_path, RULES_MAX_SCRIPT_BYTES, &p->len, err, err_len);
    }
    if (!p->text)
        goto fail;
    p->data = calloc(r->ndata + 1, sizeof *p->data);
    /* The version covers the script and every data file: a changed mapping is a
     * changed rule. */
    size_t dcap = r->ndata * (DIGEST_SHA256_HEX_LEN + 1) + 1;
    char *dhex = calloc(1, dcap);
    if (!dhex) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    if (!p->data) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < r->ndata; i++) {
        json_error_t jerr;
        size_t len;
        char *text = rules_read_file(r->data_paths[i], RULES_MAX_DATA_BYTES, &len, err, err_len);
        if (!text) {
            free(dhex);
            goto fail;
        }
        p->data[i] = json_loadb(text, len, 0, &jerr);
        digest_sha256_hex(text, len, dhex + i * (DIGEST_SHA256_HEX_LEN + 1));
        dhex[i * (DIGEST_SHA256_HEX_LEN + 1) + DIGEST_SHA256_HEX_LEN] = '\n';
        free(text);
        if (!p->data[i]) {
            snprintf(err, err_len, "%s:%d: rules.data.%s: invalid JSON: %s", r->data_paths[i],
                     jerr.line, r->data_names[i], jerr.text);
            free(dhex);
            goto fail;
        }
    }
    unsigned char md[32];
    char hex[DIGEST_SHA256_HEX_LEN + 1];
    digest_sha256_parts(p->text, p->len, dhex, strlen(dhex), NULL, 0, md);
    digest_hex_encode(md, sizeof md, hex);
    snprintf(p->version, sizeof p->version, "%.16s", hex);
    free(dhex);
    return p;
fail:
    rules_program_unref(p);
    return NULL;
}

/* ---------- allocator and hook ---------- */

/* The pool class of a block of n bytes (1..RULES_POOL_MAX), from 0. */
static size_t rules_pool_class(size_t n)
{
    return (n - 1) / RULES_POOL_QUANTUM;
}

static void *rules_pool_get(struct rules_pool *pool, size_t n)
{
    size_t c = rules_pool_class(n);
    void *b = pool->free[c];
    if (b) {
        memcpy(&pool->free[c], b, sizeof(void *));
        return b;
    }
    size_t size = (c + 1) * RULES_POOL_QUANTUM;
    struct rules_pool_chunk *ch = pool->chunks;
    if (!ch || RULES_POOL_CHUNK - ch->used < size) {
        ch = malloc(sizeof *ch + RULES_POOL_CHUNK);
        if (!ch)
            return NULL;
        ch->used = 0;
        ch->next = pool->chunks;
        pool->chunks = ch;
        pool->nchunks++;
    }
    b = ch->mem + ch->used;
    ch->used += size;
    return b;
}

static void rules_pool_put(struct rules_pool *pool, void *b, size_t n)
{
    size_t c = rules_pool_class(n);
    memcpy(b, &pool->free[c], sizeof(void *));
    pool->free[c] = b;
}

static void rules_pool_release(struct rules_pool *pool)
{
    while (pool->chunks) {
        struct rules_pool_chunk *next = pool->chunks->next;
        free(pool->chunks);
        pool->chunks = next;
    }
    pool->nchunks = 0;
    memset(pool->free, 0, sizeof pool->free);
}

/* Called once, from the allocator, when the memory limit refuses a block: notes
 * the script line that asked for it (the innermost Lua function on the stack; a C
 * function such as string.rep has no line). Reading the stack allocates nothing
 * (lua_getstack, and lua_getinfo with "Sl", fill caller-owned structs), so this
 * is safe while an allocation is in progress. */
static void rules_note_mem_line(struct rules_vm *vm)
{
    lua_Debug ar;
    vm->mem_line[0] = '\0';
    if (!vm->L)
        return;
    for (int level = 0; level < 8 && lua_getstack(vm->L, level, &ar); level++) {
        if (lua_getinfo(vm->L, "Sl", &ar) && ar.currentline > 0) {
            snprintf(vm->mem_line, sizeof vm->mem_line, "%s:%d", ar.short_src, ar.currentline);
            return;
        }
    }
}

static void *rules_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct rules_vm *vm = ud;
    size_t old = ptr ? osize : 0;
    bool old_pooled = old > 0 && old <= RULES_POOL_MAX;
    bool new_pooled = nsize > 0 && nsize <= RULES_POOL_MAX;
    if (nsize == 0) {
        vm->mem_used -= old;
        if (old_pooled)
            rules_pool_put(&vm->pool, ptr, old);
        else
            free(ptr);
        return NULL;
    }
    if (vm->mem_limit && nsize > old && vm->mem_used - old + nsize > vm->mem_limit) {
        if (!vm->mem_fired)
            rules_note_mem_line(vm);
        vm->mem_fired = true;
        return NULL;
    }
    void *np;
    if (old_pooled && new_pooled && rules_pool_class(old) == rules_pool_class(nsize)) {
        np = ptr; /* the block already has room */
    } else if (!old_pooled && !new_pooled) {
        np = realloc(ptr, nsize);
    } else {
        np = new_pooled ? rules_pool_get(&vm->pool, nsize) : malloc(nsize);
        /* Lua relies on a shrink never failing, so when the smaller block cannot be
         * had (out of memory) the larger one is kept. Freed later with the smaller
         * size it joins that size's free list: safe, as it is big enough; a malloc'd
         * one is then never returned to malloc (only under memory exhaustion). */
        if (!np && ptr && nsize <= old)
            np = ptr;
        else if (np && ptr) {
            memcpy(np, ptr, old < nsize ? old : nsize);
            if (old_pooled)
                rules_pool_put(&vm->pool, ptr, old);
            else
                free(ptr);
        }
    }
    if (np)
        vm->mem_used = vm->mem_used - old + nsize;
    return np;
}

static void rules_hook(lua_State *L, lua_Debug *ar)
{
    void *ud;
    lua_getallocf(L, &ud);
    struct rules_vm *vm = ud;
    (void)ar;
    if (!vm->instr_fired) {
        vm->instr_count += RULES_HOOK_STEP;
        if (vm->instr_count <= vm->instr_budget)
            return;
        vm->instr_fired = true;
        lua_Debug here;
        if (lua_getstack(L, 0, &here) && lua_getinfo(L, "Sl", &here) && here.currentline > 0)
            snprintf(vm->limit_msg, sizeof vm->limit_msg,
                     "%s:%d: instruction limit of %lld exceeded", here.short_src, here.currentline,
                     (long long)vm->r->instruction_limit);
        else
            snprintf(vm->limit_msg, sizeof vm->limit_msg, "%s: instruction limit of %lld exceeded",
                     vm->r->display_name, (long long)vm->r->instruction_limit);
        /* From now on every instruction raises again, so a pcall in the script
         * cannot swallow the limit. */
        lua_sethook(L, rules_hook, LUA_MASKCOUNT, 1);
    }
    lua_pushstring(L, vm->limit_msg);
    lua_error(L);
}

static void rules_arm(struct rules_vm *vm, bool limit_memory)
{
    vm->instr_count = 0;
    vm->instr_budget = vm->r->instruction_limit;
    vm->instr_fired = false;
    vm->mem_fired = false;
    vm->mem_line[0] = '\0';
    vm->limit_msg[0] = '\0';
    vm->mem_limit = limit_memory ? vm->mem_used + (size_t)vm->r->memory_limit : 0;
    lua_sethook(vm->L, rules_hook, LUA_MASKCOUNT, RULES_HOOK_STEP);
}

static void rules_disarm(struct rules_vm *vm)
{
    lua_sethook(vm->L, NULL, 0, 0);
    vm->mem_limit = 0;
}

/* ---------- sandbox library ---------- */

static int rules_ro_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only table");
}

static int rules_ro_len(lua_State *L)
{
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_pushinteger(L, (lua_Integer)luaL_len(L, -1));
    return 1;
}

static int rules_ro_next(lua_State *L)
{
    /* (proxy, key) -> next of the real table */
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_pushvalue(L, 2);
    if (lua_next(L, -2))
        return 2;
    lua_pushnil(L);
    return 1;
}

static int rules_ro_pairs(lua_State *L)
{
    lua_pushcfunction(L, rules_ro_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Replaces the table at the top of the stack by a read-only proxy of it. */
static void rules_make_ro(lua_State *L)
{
    lua_newtable(L);          /* real proxy */
    lua_createtable(L, 0, 5); /* real proxy meta */
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, rules_ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, rules_ro_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, rules_ro_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2); /* real proxy */
    lua_remove(L, -2);       /* proxy */
}

/* Makes the table at the top (and every table inside it) read-only, in place
 * of the original. depth bounds the walk. */
static void rules_make_ro_deep(lua_State *L, int depth)
{
    if (depth > 0) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_istable(L, -1)) {
                rules_make_ro_deep(L, depth - 1); /* value replaced by its proxy */
                lua_pushvalue(L, -2);             /* key */
                lua_insert(L, -2);                /* ... key key proxy */
                lua_rawset(L, -4);
            } else {
                lua_pop(L, 1);
            }
        }
    }
    rules_make_ro(L);
}

static struct rules_vm *rules_vm_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

/* Lua's pattern matcher runs in C, where the count hook cannot stop it, and
 * backtracks: a pattern with q repetition items can take about n^q steps per
 * start position on an n-byte subject. The pattern functions are wrapped to
 * refuse a call whose worst case exceeds RULES_PATTERN_FACTOR times the
 * instruction limit, before it starts. */
#define RULES_PATTERN_FACTOR 10.0

static int rules_pattern_items(const char *p, size_t len)
{
    int q = 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '%') {
            if (i + 1 < len && p[i + 1] == 'b') {
                q++; /* %bxy scans ahead like a repetition */
                i += 3;
            } else {
                i++;
            }
        } else if (c == '[') {
            i++;
            if (i < len && p[i] == '^')
                i++;
            if (i < len && p[i] == ']')
                i++;
            while (i < len && p[i] != ']') {
                if (p[i] == '%')
                    i++;
                i++;
            }
        } else if (c == '*' || c == '+' || c == '-' || c == '?') {
            q++;
        }
    }
    return q;
}

static int rules_pattern_guard(lua_State *L)
{
    struct rules_vm *vm = rules_vm_of(L);
    const char *name = lua_tostring(L, lua_upvalueindex(2));
    size_t n, plen;
    luaL_checklstring(L, 1, &n);
    const char *pat = luaL_checklstring(L, 2, &plen);
    bool plain = strcmp(name, "find") == 0 && lua_toboolean(L, 4);
    if (!plain) {
        int q = rules_pattern_items(pat, plen);
        double starts = (plen > 0 && pat[0] == '^') ? 1.0 : (double)n + 1.0;
        double cost = starts;
        for (int i = 0; i < q && cost < 1e300; i++)
            cost *= (double)n + 1.0;
        double budget = (double)vm->r->instruction_limit * RULES_PATTERN_FACTOR;
        if (cost > budget) {
            char msg[300];
            snprintf(msg, sizeof msg,
                     "string.%s: a pattern with %d repetition items on a %zu-byte subject could "
                     "take %.3g steps, over the limit of %.3g (use a plain find, anchor with ^, "
                     "or shorten the subject)",
                     name, q, n, cost, budget);
            return luaL_error(L, "%s", msg);
        }
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* Replaces the pattern functions of the real string table (reached by both
 * string.find and s:find) with guarded ones. */
static void rules_guard_patterns(lua_State *L)
{
    static const char *const fns[] = {"find", "match", "gmatch", "gsub", NULL};
    lua_getglobal(L, "string");
    for (size_t i = 0; fns[i]; i++) {
        lua_getfield(L, -1, fns[i]);
        lua_pushstring(L, fns[i]);
        lua_pushcclosure(L, rules_pattern_guard, 2);
        lua_setfield(L, -2, fns[i]);
    }
    lua_pop(L, 1);
}

static int rules_lua_skip(lua_State *L)
{
    struct rules_vm *vm = rules_vm_of(L);
    const char *reason = luaL_optstring(L, 1, "skipped by rule");
    vm->skipped = true;
    snprintf(vm->skip_reason, sizeof vm->skip_reason, "%s", reason);
    lua_pushlightuserdata(L, &rules_skip_sentinel);
    return lua_error(L);
}

static int rules_lua_log(lua_State *L)
{
    struct rules_vm *vm = rules_vm_of(L);
    enum log_level level = (enum log_level)lua_tointeger(L, lua_upvalueindex(1));
    const char *msg = luaL_checkstring(L, 1);
    const char *fields[2 * (RULES_MAX_LOG_FIELDS + 3) + 1];
    size_t n = 0;
    if (!log_enabled(level))
        return 0; /* below the configured level: nothing to convert */
    fields[n++] = "rule";
    fields[n++] = vm->r->display_name;
    if (vm->ev) {
        fields[n++] = "source";
        fields[n++] = vm->ev->source;
        fields[n++] = "event_id";
        fields[n++] = vm->ev->event_id;
    }
    if (lua_istable(L, 2)) {
        lua_newtable(L); /* anchors the converted values until the line is written */
        int anchor = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            if (lua_type(L, -2) == LUA_TSTRING && n < 2 * (RULES_MAX_LOG_FIELDS + 3)) {
                const char *v = luaL_tolstring(L, -1, NULL);
                lua_rawseti(L, anchor, (lua_Integer)n);
                fields[n++] = lua_tostring(L, -2);
                fields[n++] = v;
            }
            lua_pop(L, 1);
        }
    }
    fields[n] = NULL;
    log_write(level, msg, fields);
    return 0;
}

static int rules_lua_print(lua_State *L)
{
    luaL_Buffer b;
    int n = lua_gettop(L);
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    if (log_enabled(LOG_DEBUG))
        log_write(LOG_DEBUG, lua_tostring(L, -1), (const char *[]){"from", "print", NULL});
    return 0;
}

static int rules_lua_load(lua_State *L)
{
    struct rules_vm *vm = rules_vm_of(L);
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1)); /* the real load */
    lua_pushvalue(L, 1);
    if (n >= 2)
        lua_pushvalue(L, 2);
    else
        lua_pushstring(L, "=(load)");
    lua_pushliteral(L, "t"); /* text only, whatever the caller asked */
    if (n >= 4)
        lua_pushvalue(L, 4);
    else
        lua_rawgeti(L, LUA_REGISTRYINDEX, vm->env_ref); /* the current event's globals */
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L) - n;
}

static int rules_lua_collectgarbage(lua_State *L)
{
    static const char *const allowed[] = {"collect", "count", "step", "isrunning", NULL};
    const char *opt = luaL_optstring(L, 1, "collect");
    for (size_t i = 0; allowed[i]; i++) {
        if (strcmp(opt, allowed[i]) == 0) {
            lua_pushvalue(L, lua_upvalueindex(1));
            lua_insert(L, 1);
            lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
            return lua_gettop(L);
        }
    }
    return luaL_error(L, "collectgarbage('%s') is not allowed in rules", opt);
}

static void rules_copy_field(lua_State *L, int from, const char *name)
{
    lua_getfield(L, from, name);
    lua_setfield(L, -2, name);
}

/* Builds the base environment (allow-list) and leaves it on the stack. */
static void rules_push_base(struct rules_vm *vm)
{
    static const char *const base_fns[] = {
        "assert",   "error",    "ipairs", "next",   "pairs",        "pcall",
        "rawequal", "rawget",   "rawlen", "select", "setmetatable", "getmetatable",
        "tonumber", "tostring", "type",   "xpcall", "_VERSION",     NULL};
    lua_State *L = vm->L;
    struct rules *r = vm->r;
    int g = lua_gettop(L) + 1;
    lua_pushglobaltable(L); /* g: the full globals, never visible to scripts */
    lua_newtable(L);        /* base */
    for (size_t i = 0; base_fns[i]; i++)
        rules_copy_field(L, g, base_fns[i]);

    lua_getfield(L, g, "load");
    lua_pushcclosure(L, rules_lua_load, 1);
    lua_setfield(L, -2, "load");
    lua_getfield(L, g, "collectgarbage");
    lua_pushcclosure(L, rules_lua_collectgarbage, 1);
    lua_setfield(L, -2, "collectgarbage");
    lua_pushcfunction(L, rules_lua_print);
    lua_setfield(L, -2, "print");
    lua_pushcfunction(L, rules_lua_skip);
    lua_setfield(L, -2, "skip");

    static const char *const libs[] = {"string", "table", "math", "utf8", NULL};
    for (size_t i = 0; libs[i]; i++) {
        lua_getfield(L, g, libs[i]);
        rules_make_ro(L);
        lua_setfield(L, -2, libs[i]);
    }
    lua_getfield(L, g, "os");
    lua_newtable(L);
    rules_copy_field(L, -2, "time");
    rules_copy_field(L, -2, "date");
    rules_copy_field(L, -2, "clock");
    rules_make_ro(L);
    lua_setfield(L, -3, "os");
    lua_pop(L, 1); /* the real os */

    lua_json_push_lib(L, r->json_max_depth);
    rules_make_ro(L);
    lua_setfield(L, -2, "json");

    static const char *const levels[] = {"debug", "info", "warn", "error"};
    lua_newtable(L);
    for (int i = 0; i < 4; i++) {
        lua_pushinteger(L, i);
        lua_pushcclosure(L, rules_lua_log, 1);
        lua_setfield(L, -2, levels[i]);
    }
    rules_make_ro(L);
    lua_setfield(L, -2, "log");

    actions_push_lib(L, &vm->actions);
    rules_make_ro(L);
    lua_setfield(L, -2, "didww");

    lua_newtable(L);
    for (size_t i = 0; i < r->ndata; i++) {
        char err[200];
        if (lua_json_push(L, vm->prog->data[i], r->json_max_depth, err, sizeof err) < 0)
            lua_pushnil(L);
        else if (lua_istable(L, -1))
            rules_make_ro_deep(L, r->json_max_depth);
        lua_setfield(L, -2, r->data_names[i]);
    }
    rules_make_ro(L);
    lua_setfield(L, -2, "data");

    lua_remove(L, g);
}

static bool rules_is_proxy(lua_State *L, int idx)
{
    bool proxy = false;
    if (lua_getmetatable(L, idx)) {
        lua_getfield(L, -1, "__newindex");
        proxy = lua_tocfunction(L, -1) == rules_ro_newindex;
        lua_pop(L, 2);
    }
    return proxy;
}

static void rules_freeze_value(lua_State *L, int visited, int depth);

/* Freezes the tables a Lua function reaches through its upvalues (not _ENV). */
static void rules_freeze_function(lua_State *L, int visited, int depth)
{
    int f = lua_gettop(L);
    if (lua_iscfunction(L, f) || depth <= 0)
        return;
    lua_pushvalue(L, f);
    if (lua_rawget(L, visited) != LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, f);
    lua_pushboolean(L, 1);
    lua_rawset(L, visited);
    for (int i = 1;; i++) {
        const char *name = lua_getupvalue(L, f, i);
        if (!name)
            break;
        if (strcmp(name, "_ENV") == 0 || (!lua_istable(L, -1) && !lua_isfunction(L, -1))) {
            lua_pop(L, 1);
            continue;
        }
        bool table = lua_istable(L, -1);
        rules_freeze_value(L, visited, depth - 1);
        if (table)
            lua_setupvalue(L, f, i); /* shared upvalue: every closure sees the proxy */
        else
            lua_pop(L, 1);
    }
}

/* Freezes the value at the top of the stack in place: a plain table (no
 * metatable) is replaced by a read-only proxy of itself after its contents were
 * frozen; a function has the tables of its upvalues frozen. */
static void rules_freeze_value(lua_State *L, int visited, int depth)
{
    if (lua_isfunction(L, -1)) {
        rules_freeze_function(L, visited, depth);
        return;
    }
    if (!lua_istable(L, -1) || depth <= 0 || rules_is_proxy(L, -1))
        return;
    lua_pushvalue(L, -1);
    int seen = lua_rawget(L, visited);
    if (seen == LUA_TTABLE) { /* already frozen: use its proxy */
        lua_replace(L, -2);
        return;
    }
    lua_pop(L, 1);
    if (seen != LUA_TNIL) /* being frozen further up (a cycle): leave this reference */
        return;
    if (lua_getmetatable(L, -1)) { /* objects with metatables are left alone */
        lua_pop(L, 1);
        return;
    }
    int t = lua_gettop(L);
    lua_pushvalue(L, t);
    lua_pushboolean(L, 1);
    lua_rawset(L, visited); /* cycle guard while walking */
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_istable(L, -1)) {
            rules_freeze_value(L, visited, depth - 1);
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, t);
        } else {
            if (lua_isfunction(L, -1))
                rules_freeze_function(L, visited, depth - 1);
            lua_pop(L, 1);
        }
    }
    lua_pushvalue(L, t);
    rules_make_ro(L);
    lua_pushvalue(L, t);
    lua_pushvalue(L, -2);
    lua_rawset(L, visited); /* original -> proxy */
    lua_replace(L, t);
}

/* After the script's top level ran: every plain table it created (globals and
 * the locals its functions capture) becomes read-only, so no event can leave
 * state behind for the next one. */
static void rules_freeze_globals(lua_State *L, int g0)
{
    lua_newtable(L);
    int visited = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, g0)) {
        if (lua_istable(L, -1)) {
            rules_freeze_value(L, visited, LUA_JSON_DEFAULT_MAX_DEPTH);
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, g0);
        } else {
            if (lua_isfunction(L, -1))
                rules_freeze_value(L, visited, LUA_JSON_DEFAULT_MAX_DEPTH);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* Builds the state for prog: sandbox, script loaded and its top level run.
 * Returns 0, or -1 with "file:line: message" in err. */
static int rules_vm_build(struct rules_vm *vm, char *err, size_t err_len)
{
    struct rules *r = vm->r;
    lua_State *L = lua_newstate(rules_alloc, vm);
    if (!L) {
        snprintf(err, err_len, "cannot create a Lua state: out of memory");
        return -1;
    }
    vm->L = L;
    luaL_requiref(L, "_G", luaopen_base, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 1);
    lua_settop(L, 0);
    lua_json_init(L);
    rules_guard_patterns(L);

    /* Scripts cannot reach or replace the string metatable. */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    rules_push_base(vm); /* base */
    lua_newtable(L);     /* G0: the script's own globals, reading through to base */
    /* G0 starts as a copy of base: a global read from an event then costs one
     * miss in the event's table and one hit here, instead of a second miss and
     * a third lookup in base. Assigning one at the top level only shadows it,
     * as before; the library tables themselves stay read-only proxies. */
    lua_pushnil(L);
    while (lua_next(L, -3)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    vm->g0_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    vm->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* The per-event environment's metatable: reads fall through to G0. */
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    vm->event_meta_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    char chunk[300];
    snprintf(chunk, sizeof chunk, "@%s", r->display_name);
    if (luaL_loadbufferx(L, vm->prog->text, vm->prog->len, chunk, "t") != LUA_OK) {
        snprintf(err, err_len, "%s", lua_tostring(L, -1));
        return -1;
    }
    lua_pushvalue(L, -2); /* G0 */
    lua_setupvalue(L, -2, 1);
    lua_pushvalue(L, -1);
    vm->main_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    rules_arm(vm, false);
    int rc = lua_pcall(L, 0, 0, 0);
    rules_disarm(vm);
    if (rc != LUA_OK) {
        if (vm->instr_fired)
            snprintf(err, err_len, "%s (while loading)", vm->limit_msg);
        else
            snprintf(err, err_len, "%s",
                     lua_isstring(L, -1) ? lua_tostring(L, -1) : "error object is not a string");
        return -1;
    }
    rules_freeze_globals(L, lua_gettop(L));
    lua_getfield(L, -1, "on_event"); /* from G0 */
    if (!lua_isfunction(L, -1)) {
        snprintf(err, err_len, "%s: the script must define a function on_event(ev)",
                 r->display_name);
        return -1;
    }
    vm->on_event_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);
    /* An event's garbage is short-lived: the generational collector suits it. */
    lua_gc(L, LUA_GCGEN, 0, 0);
    return 0;
}

static void rules_vm_destroy(struct rules_vm *vm)
{
    if (!vm)
        return;
    if (vm->L)
        lua_close(vm->L);
    rules_pool_release(&vm->pool);
    rules_program_unref(vm->prog);
    free(vm);
}

static void rules_vm_tls_destroy(void *p)
{
    rules_vm_destroy(p);
}

static struct rules_vm *rules_vm_new(struct rules *r, struct rules_program *prog, char *err,
                                     size_t err_len)
{
    struct rules_vm *vm = calloc(1, sizeof *vm);
    if (!vm) {
        snprintf(err, err_len, "out of memory");
        rules_program_unref(prog);
        return NULL;
    }
    vm->r = r;
    vm->prog = prog; /* takes the reference */
    bool billing;
    if (actions_naming_for_version(r->api_version, &vm->actions.naming, &billing) < 0) {
        snprintf(err, err_len, "unsupported didww.api_version %s", r->api_version);
        rules_vm_destroy(vm);
        return NULL;
    }
    vm->actions.has_billing_cycles = billing;
    if (rules_vm_build(vm, err, err_len) < 0) {
        rules_vm_destroy(vm);
        return NULL;
    }
    return vm;
}

/* The calling thread's state for the current program (built or rebuilt now). */
static struct rules_vm *rules_vm_get(struct rules *r, char *err, size_t err_len)
{
    struct rules_vm *vm = pthread_getspecific(r->key);
    struct rules_program *prog = rules_current(r);
    if (vm && vm->prog == prog) {
        rules_program_unref(prog);
        return vm;
    }
    struct rules_vm *fresh = rules_vm_new(r, prog, err, err_len);
    if (!fresh)
        return vm; /* keep running the old program on this thread */
    rules_vm_destroy(vm);
    pthread_setspecific(r->key, fresh);
    return fresh;
}

/* ---------- running an event ---------- */

/* ev's __index: builds ev.headers and ev.raw on first use (most rules read
 * neither) and caches them in ev. */
static int rules_ev_index(lua_State *L)
{
    struct rules_vm *vm = lua_touserdata(L, lua_upvalueindex(1));
    const char *key = lua_tostring(L, 2);
    char err[200];
    if (!key || !vm->ev)
        return 0;
    if (strcmp(key, "headers") == 0 && vm->ev->headers) {
        if (lua_json_push(L, vm->ev->headers, 4, err, sizeof err) < 0)
            return luaL_error(L, "event headers: %s", err);
    } else if (strcmp(key, "raw") == 0) {
        lua_pushlstring(L, (const char *)vm->ev->raw, vm->ev->raw_len);
    } else {
        return 0;
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, key);
    return 1;
}

/* Runs under lua_pcall: builds ev and calls on_event(ev). */
static int rules_call_event(lua_State *L)
{
    struct rules_vm *vm = lua_touserdata(L, 1);
    const struct rules_event *ev = vm->ev;
    char err[200];
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->on_event_ref);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, ev->source);
    lua_setfield(L, -2, "source");
    lua_pushstring(L, ev->event_id);
    lua_setfield(L, -2, "id");
    lua_pushnumber(L, ev->received_at);
    lua_setfield(L, -2, "received_at");
    lua_createtable(L, 0, 1);
    lua_pushlightuserdata(L, vm);
    lua_pushcclosure(L, rules_ev_index, 1);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    if (ev->body) {
        if (lua_json_push_doc(L, ev->body, vm->r->json_max_depth, err, sizeof err) < 0)
            return luaL_error(L, "event body: %s", err);
        lua_setfield(L, -2, "body");
    }
    lua_call(L, 1, 0);
    return 0;
}

static double rules_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int rules_run(struct rules *r, const struct rules_event *ev, struct rules_result *res)
{
    memset(res, 0, sizeof *res);
    double t0 = rules_now();
    char err[256];
    struct rules_vm *vm = rules_vm_get(r, err, sizeof err);
    if (!vm) {
        res->outcome = RULES_FAILED;
        snprintf(res->message, sizeof res->message, "%s", err);
        rules_version(r, res->version, sizeof res->version);
        return -1;
    }
    lua_State *L = vm->L;
    snprintf(res->version, sizeof res->version, "%s", vm->prog->version);
    vm->ev = ev;
    vm->skipped = false;
    vm->actions.plan = &res->plan;

    /* A fresh global table for this event. */
    lua_settop(L, 0);
    lua_newtable(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->event_meta_ref);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawseti(L, LUA_REGISTRYINDEX, vm->env_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->main_ref);
    lua_pushvalue(L, -2);
    lua_setupvalue(L, -2, 1); /* every function of the script shares this _ENV */
    lua_settop(L, 0);

    lua_pushcfunction(L, rules_call_event);
    lua_pushlightuserdata(L, vm);
    rules_arm(vm, true);
    int rc = lua_pcall(L, 1, 0, 0);
    rules_disarm(vm);

    if (vm->instr_fired) {
        res->outcome = RULES_FAILED;
        snprintf(res->message, sizeof res->message, "%s", vm->limit_msg);
    } else if (vm->mem_fired) {
        res->outcome = RULES_FAILED;
        snprintf(res->message, sizeof res->message, "%s: memory limit of %lld bytes exceeded",
                 vm->mem_line[0] ? vm->mem_line : r->display_name, (long long)r->memory_limit);
    } else if (vm->skipped) {
        res->outcome = RULES_SKIPPED;
        snprintf(res->message, sizeof res->message, "%s", vm->skip_reason);
    } else if (rc != LUA_OK) {
        res->outcome = RULES_FAILED;
        if (lua_type(L, -1) == LUA_TSTRING)
            snprintf(res->message, sizeof res->message, "%s", lua_tostring(L, -1));
        else
            snprintf(res->message, sizeof res->message, "%s: error object is a %s value",
                     r->display_name, luaL_typename(L, -1));
    } else {
        res->outcome = RULES_DECIDED;
    }
    if (res->outcome != RULES_DECIDED)
        actions_plan_clear(&res->plan);

    /* Drop the event's globals and restore the load-time environment. */
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->main_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->g0_ref);
    lua_setupvalue(L, -2, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->g0_ref);
    lua_rawseti(L, LUA_REGISTRYINDEX, vm->env_ref);
    lua_settop(L, 0);
    vm->ev = NULL;
    vm->actions.plan = NULL;
    if (vm->pool.nchunks > RULES_POOL_RETAIN_CHUNKS) {
        rules_vm_destroy(vm); /* the next event on this thread builds a new state */
        pthread_setspecific(r->key, NULL);
    } else if (res->outcome == RULES_FAILED) {
        lua_gc(L, LUA_GCCOLLECT);
    }
    res->duration_s = rules_now() - t0;
    return 0;
}

void rules_result_free(struct rules_result *res)
{
    actions_plan_clear(&res->plan);
}

/* ---------- lifecycle ---------- */

static int rules_gate_check(struct rules *r, struct rules_program *p, char *err, size_t err_len);

static int rules_install(struct rules *r, char *err, size_t err_len)
{
    struct rules_program *p = rules_program_load(r, err, err_len);
    if (!p)
        return -1;
    /* Compile and run the top level completely before anyone switches. */
    atomic_fetch_add(&p->refs, 1);
    struct rules_vm *probe = rules_vm_new(r, p, err, err_len);
    if (!probe) {
        rules_program_unref(p);
        return -1;
    }
    rules_vm_destroy(probe);
    if (r->gate && rules_gate_check(r, p, err, err_len) < 0) {
        rules_program_unref(p);
        return -1;
    }
    pthread_mutex_lock(&r->lock);
    struct rules_program *old = r->current;
    r->current = p;
    pthread_mutex_unlock(&r->lock);
    rules_program_unref(old);
    return 0;
}

/* A new engine with o's options and no program yet (NULL with err set). */
static struct rules *rules_new_engine(const struct rules_options *o, char *err, size_t err_len)
{
    struct rules *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->lock, NULL);
    if (pthread_key_create(&r->key, rules_vm_tls_destroy) != 0) {
        snprintf(err, err_len, "cannot create a thread-local key");
        pthread_mutex_destroy(&r->lock);
        free(r);
        return NULL;
    }
    if (o->script_text) {
        /* rules_program_load refuses one over the size limit, as it does a file */
        r->script_text = malloc(o->script_len + 1);
        if (!r->script_text) {
            snprintf(err, err_len, "out of memory");
            pthread_key_delete(r->key);
            pthread_mutex_destroy(&r->lock);
            free(r);
            return NULL;
        }
        memcpy(r->script_text, o->script_text, o->script_len);
        r->script_text[o->script_len] = '\0';
        r->script_len = o->script_len;
    } else {
        r->script_path = strdup(o->script_path);
    }
    r->display_name = strdup(o->display_name ? o->display_name : o->script_path);
    r->api_version = strdup(o->api_version ? o->api_version : "2022-05-10");
    r->instruction_limit = o->instruction_limit > 0 ? o->instruction_limit : 1000000;
    r->memory_limit = o->memory_limit_bytes > 0 ? o->memory_limit_bytes : 8388608;
    r->json_max_depth = o->json_max_depth > 0 ? o->json_max_depth : LUA_JSON_DEFAULT_MAX_DEPTH;
    r->ndata = o->ndata;
    r->data_names = calloc(o->ndata + 1, sizeof *r->data_names);
    r->data_paths = calloc(o->ndata + 1, sizeof *r->data_paths);
    for (size_t i = 0; r->data_names && r->data_paths && i < o->ndata; i++) {
        r->data_names[i] = strdup(o->data_names[i]);
        r->data_paths[i] = strdup(o->data_paths[i]);
    }
    return r;
}

int rules_create(const struct rules_options *o, struct rules **out, char *err, size_t err_len)
{
    struct rules *r = rules_new_engine(o, err, err_len);
    if (!r)
        return -1;
    if (rules_install(r, err, err_len) < 0) {
        rules_destroy(r);
        return -1;
    }
    *out = r;
    return 0;
}

/* Runs r's gate on program p, not installed yet: the gate gets an engine of
 * its own with r's options and p as its program (its state lives on the
 * calling thread and is freed before this returns). 0 or -1 with err set. */
static int rules_gate_check(struct rules *r, struct rules_program *p, char *err, size_t err_len)
{
    struct rules_options o = {.script_path = r->script_path,
                              .script_text = r->script_text,
                              .script_len = r->script_len,
                              .display_name = r->display_name,
                              .data_names = (const char *const *)r->data_names,
                              .data_paths = (const char *const *)r->data_paths,
                              .ndata = r->ndata,
                              .instruction_limit = r->instruction_limit,
                              .memory_limit_bytes = r->memory_limit,
                              .api_version = r->api_version,
                              .json_max_depth = r->json_max_depth};
    struct rules *cand = rules_new_engine(&o, err, err_len);
    if (!cand)
        return -1;
    atomic_fetch_add(&p->refs, 1);
    cand->current = p;
    int rc = r->gate(cand, r->gate_ctx, err, err_len);
    rules_destroy(cand);
    return rc < 0 ? -1 : 0;
}

void rules_set_reload_gate(struct rules *r, rules_gate_fn fn, void *ctx)
{
    pthread_mutex_lock(&r->lock);
    r->gate = fn;
    r->gate_ctx = ctx;
    pthread_mutex_unlock(&r->lock);
}

json_t *rules_plan_json(const struct actions_plan *plan)
{
    json_t *out = json_array();
    for (size_t i = 0; out && i < plan->n; i++) {
        const struct actions_job *j = &plan->jobs[i];
        json_t *b = j->body ? json_loads(j->body, 0, NULL) : NULL;
        json_t *o = json_pack("{s:s, s:s, s:s, s:o}", "action", j->action, "method", j->method,
                              "path", j->path, "body", b ? b : json_null());
        if (!o || json_array_append_new(out, o) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

char *rules_outcome_text(const struct rules_result *res)
{
    /* Written directly (no JSON tree): ingest stores it with every event and
     * replay compares it as text first. The job bodies are compact JSON already. */
    struct jout o = {0};
    if (res->outcome == RULES_FAILED) {
        jout_cstr(&o, "{\"error\":");
        jout_string(&o, res->message, strlen(res->message), false);
        jout_cstr(&o, "}");
        if (o.failed) { /* a message that is not UTF-8 */
            free(o.p);
            return strdup("{\"error\":\"the rule failed (its message is not UTF-8)\"}");
        }
        return o.p;
    }
    jout_cstr(&o, "[");
    for (size_t i = 0; i < res->plan.n; i++) {
        const struct actions_job *j = &res->plan.jobs[i];
        jout_cstr(&o, i ? ",{\"action\":" : "{\"action\":");
        jout_string(&o, j->action, strlen(j->action), false);
        jout_cstr(&o, ",\"method\":");
        jout_string(&o, j->method, strlen(j->method), false);
        jout_cstr(&o, ",\"path\":");
        jout_string(&o, j->path, strlen(j->path), false);
        jout_cstr(&o, ",\"body\":");
        jout_cstr(&o, j->body ? j->body : "null");
        jout_cstr(&o, "}");
    }
    jout_cstr(&o, "]");
    if (o.failed) {
        free(o.p);
        return NULL;
    }
    return o.p;
}

int rules_reload(struct rules *r, char *err, size_t err_len)
{
    return rules_install(r, err, err_len);
}

void rules_version(struct rules *r, char *out, size_t len)
{
    pthread_mutex_lock(&r->lock);
    snprintf(out, len, "%s", r->current ? r->current->version : "");
    pthread_mutex_unlock(&r->lock);
}

void rules_destroy(struct rules *r)
{
    if (!r)
        return;
    struct rules_vm *vm = pthread_getspecific(r->key);
    rules_vm_destroy(vm);
    pthread_setspecific(r->key, NULL);
    pthread_key_delete(r->key);
    rules_program_unref(r->current);
    for (size_t i = 0; i < r->ndata; i++) {
        if (r->data_names)
            free(r->data_names[i]);
        if (r->data_paths)
            free(r->data_paths[i]);
    }
    free(r->data_names);
    free(r->data_paths);
    free(r->script_path);
    free(r->script_text);
    free(r->display_name);
    free(r->api_version);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
