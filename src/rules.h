/*
 * rules: the Lua 5.4 rule engine. It owns the current compiled rule program
 * (script text, version hash, data tables) and one sandboxed lua_State per
 * thread that runs rules (created on first use, never shared, rebuilt when a
 * reload changed the program). Running a rule on an event yields the planned
 * DIDWW jobs and the audit records of the decision. Reload compiles the new
 * script completely before any thread switches to it.
 */
#ifndef HOOKLINE_RULES_H
#define HOOKLINE_RULES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actions.h"
#include "jdoc.h"

struct rules;

struct rules_options {
    const char *script_path;       /* absolute path of the script (NULL with script_text) */
    const char *script_text;       /* or the script itself (copied; at most the script
                                      size limit): a candidate replayed from the console */
    size_t script_len;             /* script_text's length */
    const char *display_name;      /* name in file:line messages ("rules/main.lua") */
    const char *const *data_names; /* rules.data names (ndata) */
    const char *const *data_paths; /* their JSON files (absolute) */
    size_t ndata;
    int64_t instruction_limit;  /* per event (and for loading the script) */
    int64_t memory_limit_bytes; /* Lua heap per event, beyond the loaded state */
    const char *api_version;    /* didww.api_version: relationship names */
    int json_max_depth;         /* 0: LUA_JSON_DEFAULT_MAX_DEPTH */
};

/* One event as the rule sees it. All borrowed. */
struct rules_event {
    const char *source;
    const char *event_id;
    double received_at;
    json_t *headers;         /* object of lower-case names */
    const struct jdoc *body; /* decoded JSON or form fields */
    const unsigned char *raw;
    size_t raw_len;
};

enum rules_outcome { RULES_DECIDED = 0, RULES_SKIPPED, RULES_FAILED };

/* What one run produced; owned by the caller, released with rules_result_free. */
struct rules_result {
    enum rules_outcome outcome;
    struct actions_plan plan; /* jobs (empty unless RULES_DECIDED) */
    char message[512];        /* failure "file:line: message", or the skip reason */
    char version[24];         /* first 16 hex chars of SHA-256 over the script and data files */
    double duration_s;
};

/* Compiles the script and loads the data files. Returns 0 and a new engine in
 * *out (caller frees with rules_destroy), or -1 with "file:line: message" in
 * err[err_len]. opts strings are copied. */
int rules_create(const struct rules_options *opts, struct rules **out, char *err, size_t err_len);

/* Re-reads and compiles the script (and data files); on success every thread
 * switches at its next event. On failure the old program stays and err says
 * why ("file:line: message"). Any thread. Returns 0 or -1. */
int rules_reload(struct rules *r, char *err, size_t err_len);

/* Copies the current version into out[len]. Any thread. */
void rules_version(struct rules *r, char *out, size_t len);

/* Runs on_event for ev on the calling thread's state. Always fills *res (a
 * failure is an outcome, not an error). Returns 0, or -1 only when no state
 * could be created (then res->outcome is RULES_FAILED with the reason). */
int rules_run(struct rules *r, const struct rules_event *ev, struct rules_result *res);

/* Checks a reloaded program before any thread switches to it: candidate is an
 * engine of its own running the new program (borrowed for the call; run it on
 * the calling thread only). Returns 0 to install it, or -1 with err[err_len]
 * saying why not (the old program stays). */
typedef int (*rules_gate_fn)(struct rules *candidate, void *ctx, char *err, size_t err_len);

/* Sets (fn NULL: clears) the gate rules_reload runs after the new program
 * compiled: a reload the gate refuses fails with the gate's message. ctx is
 * borrowed until cleared or r is destroyed. rules_create runs no gate. */
void rules_set_reload_gate(struct rules *r, rules_gate_fn fn, void *ctx);

/* The plan as `rule-test` prints it: a JSON array of {"action", "method",
 * "path", "body"} in planned order. Returns a new reference (caller decrefs),
 * or NULL when out of memory. */
json_t *rules_plan_json(const struct actions_plan *plan);

/* The outcome of a run as stored with its event (events.plan): compact JSON,
 * the rules_plan_json array when the rule decided or skipped (skipped: []),
 * {"error": "file:line: message"} when it failed. Returns a new string (caller
 * frees), or NULL when out of memory. */
char *rules_outcome_text(const struct rules_result *res);

/* Releases what res owns. */
void rules_result_free(struct rules_result *res);

/* Frees the engine and the calling thread's state; other threads' states are
 * freed when those threads exit. NULL is a no-op. */
void rules_destroy(struct rules *r);

#endif
