/*
 * lua_json: converts between jansson values and Lua 5.4 values for the rule
 * engine, and provides the `json` table the rule script sees (json.encode,
 * json.decode, json.null). JSON null is the unique light userdata json.null;
 * decoded arrays and objects carry marker metatables so an empty decoded array
 * encodes back as [] and an empty object as {}. Integers stay integers, reals
 * stay floats; NaN and infinities are rejected; nesting is bounded. Called only
 * on the thread that owns the lua_State.
 */
#ifndef HOOKLINE_LUA_JSON_H
#define HOOKLINE_LUA_JSON_H

#include <jansson.h>
#include <lua.h>
#include <stddef.h>

#include "jdoc.h"

#define LUA_JSON_DEFAULT_MAX_DEPTH 64

/* Installs the marker metatables and json.null in L's registry. Call once per
 * state before any other function here. */
void lua_json_init(lua_State *L);

/* Pushes the Lua value for v (borrowed) onto L's stack: object -> table with the
 * object marker metatable, array -> table (1-based) with the array marker
 * metatable, string -> string (embedded NULs kept), integer -> integer,
 * real -> float, true/false -> boolean, null -> json.null.
 * Returns 0, or -1 (nothing pushed) when v nests deeper than max_depth, with a
 * message in err[err_len]. May raise a Lua memory error (call under pcall); the
 * caller keeps ownership of v, so park it in a lua_json_push_guard slot first or
 * the raise leaks it. */
int lua_json_push(lua_State *L, json_t *v, int max_depth, char *err, size_t err_len);

/* Pushes the Lua value of doc's root (doc borrowed), converted as lua_json_push
 * converts a jansson value. Returns 0, or -1 (nothing pushed) when doc nests
 * deeper than max_depth, with a message in err[err_len]. May raise a Lua memory
 * error (call under pcall); doc stays the caller's either way. */
int lua_json_push_doc(lua_State *L, const struct jdoc *doc, int max_depth, char *err,
                      size_t err_len);

/* Converts the Lua value at stack index idx to JSON. Returns a new reference
 * (caller owns) or NULL with a message in err[err_len] naming the problem and
 * where it is (e.g. "value at .a[2]: NaN is not valid JSON"). Rules:
 * nil and json.null -> null; boolean; integer -> integer; float -> real, NaN/Inf
 * rejected; string -> string (must be UTF-8); table with the array marker, or
 * whose keys are exactly 1..n (n >= 1) -> array; table with the object marker,
 * or whose keys are all strings -> object; an empty unmarked table -> object {};
 * mixed keys, non-string non-sequence keys, functions, userdata (other than
 * json.null), threads, cycles and nesting beyond max_depth -> error. */
json_t *lua_json_to_json(lua_State *L, int idx, int max_depth, char *err, size_t err_len);

/* Pushes a new table that is the `json` library for scripts: encode(v [, opts]) ->
 * compact JSON text with sorted keys (opts.indent = 1..31 pretty-prints),
 * decode(text) -> value (errors raise a Lua error with jansson's line/column),
 * null -> the json.null sentinel, array(...) -> a table marked as array (so
 * json.array() encodes as []; a nil argument is an error), object([t]) -> a new
 * empty table, or t itself, marked as object. max_depth bounds both directions. */
void lua_json_push_lib(lua_State *L, int max_depth);

/* Pushes a to-be-closed guard in the running C function's frame (call it from a C
 * function run under lua_pcall / lua_call) and returns its slot, initially NULL.
 * A reference stored in *slot is owned by the guard: it is json_decref'd when the
 * slot closes, i.e. when the C function returns, when lua_settop/lua_pop goes below
 * it, or when a Lua error unwinds past it. Clear *slot to take the reference back.
 * Do not lua_remove/lua_replace the guard. May raise a memory error, before the
 * guard owns anything. */
json_t **lua_json_push_guard(lua_State *L);

/* True when the value at idx is json.null. */
int lua_json_is_null(lua_State *L, int idx);

/* Pushes json.null. */
void lua_json_push_null(lua_State *L);

#endif
