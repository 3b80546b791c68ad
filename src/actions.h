/*
 * actions: the `didww` table of the rule API (docs/contract.md section 4). Each call
 * validates its arguments where it is made (a bad one raises a Lua error naming
 * the call, the field and the script's file:line) and appends the exact DIDWW
 * JSON:API request (docs/contract.md section 5, seed 000) to the event's plan, using the
 * relationship names of the configured API version. Runs on the thread that owns
 * the lua_State; holds no global state.
 */
#ifndef HOOKLINE_ACTIONS_H
#define HOOKLINE_ACTIONS_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#define ACTIONS_MAX_JOBS 100

/* Relationship naming generation (DIDWW's API notes; summarised in docs/contract.md section 5). */
enum actions_naming {
    ACTIONS_NAMING_LEGACY = 0,      /* 2017-09-18, 2021-04-19: trunk, trunk_group, trunks */
    ACTIONS_NAMING_VOICE_IN,        /* 2021-12-15 .. 2026-04-16: voice_in_trunk, ... */
    ACTIONS_NAMING_VOICE_IN_CAPPED, /* 2026-11-19: voice_in names, a trunk group holds at most
                                       ACTIONS_MAX_GROUP_TRUNKS_2026_11 trunks */
};

/* 2026-11-19 caps a trunk group's voice_in_trunks at 10 (DIDWW's docs for that version). */
#define ACTIONS_MAX_GROUP_TRUNKS_2026_11 10

/* One planned DIDWW request. All strings owned by the job. */
struct actions_job {
    char *action;    /* "route_did", "set_group_trunks", ... */
    char *method;    /* "PATCH", "POST", "DELETE" */
    char *path;      /* "/v3/dids/<id>" or "/v3/dids/number:<digits>" */
    char *body;      /* compact JSON text, exactly as sent */
    char *did;       /* DID id, or NULL when named by number */
    char *number;    /* digits, or NULL */
    char *order_key; /* "did:<id>", "number:<digits>" or "group:<id>" */
};

/* The requests planned for one event. */
struct actions_plan {
    struct actions_job *jobs;
    size_t n, cap;
};

/* Per-state context the didww functions write to; owned by the caller. */
struct actions_ctx {
    enum actions_naming naming;
    bool has_billing_cycles;   /* billing_cycles_count exists from 2021-04-19 */
    struct actions_plan *plan; /* the current event's plan; NULL outside an event */
};

/* Maps an api_version ("2022-05-10") to its naming (which also selects the version's
 * limits). Returns 0, or -1 when unknown. Pointers borrowed/written by the caller. */
int actions_naming_for_version(const char *api_version, enum actions_naming *naming,
                               bool *has_billing_cycles);

/* Pushes the `didww` table whose functions append to ctx->plan. ctx is borrowed
 * and must outlive L. */
void actions_push_lib(lua_State *L, struct actions_ctx *ctx);

/* Frees every job of plan and resets it (the struct itself is the caller's). */
void actions_plan_clear(struct actions_plan *plan);

/* True when s is a canonical UUID (8-4-4-4-12 hex digits). */
bool actions_is_uuid(const char *s);

#endif
