/*
 * sim_api: DIDWW API v3 resources as JSON:API over sim_state: routing of /v3/ paths,
 * rendering per API version (the two naming generations), PATCH/POST/DELETE validation
 * and DIDWW-shaped error documents. Knows nothing about HTTP transport, keys, rate limits
 * or faults (didww_sim.c owns those).
 */
#ifndef SIM_API_H
#define SIM_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "sim_state.h"

/* Names that differ between API versions. */
struct sim_naming {
    const char *version;
    const char *trunk_rel;  /* DID to-one: "trunk" or "voice_in_trunk" */
    const char *group_rel;  /* DID to-one: "trunk_group" or "voice_in_trunk_group" */
    const char *trunks_rel; /* group to-many: "trunks" or "voice_in_trunks" */
    const char *trunk_type; /* type and collection: "trunks" or "voice_in_trunks" */
    const char *group_type; /* type and collection: "trunk_groups" or "voice_in_trunk_groups" */
    const char *trunk_fk;   /* attribute DIDWW's validation errors point at */
    const char *group_fk;
    bool pending_removal;      /* 2017-09-18: pending_removal instead of billing_cycles_count */
    bool address_verification; /* 2021-04-19 and later */
    bool bearer_only;          /* 2026-11-19: Api-Key refused, Authorization: Bearer required */
};

/* The naming of a version string, or NULL when the simulator does not know the version.
 * The result is static. */
const struct sim_naming *sim_api_naming(const char *version);

/* One request, already authenticated and media-type checked. Everything is borrowed. */
struct sim_call {
    const char *method;
    const char *path; /* decoded path without the query string */
    json_t *query;    /* object: query parameter name -> string value */
    const char *body; /* may be NULL when body_len is 0 */
    size_t body_len;
    const struct sim_naming *nm;
    const char *base_url; /* "http://host:port", for links */
    bool always_linkage;  /* put relationship data in even when not included */
};

struct sim_reply {
    int status;
    char *body;     /* malloc'd JSON text, NULL for no body (204); caller frees */
    char allow[64]; /* Allow header for 405, else empty */
};

/* Answers one /v3/ request; always fills out (status 500 with a body on out of memory). */
void sim_api_handle(struct sim_state *st, const struct sim_call *call, struct sim_reply *out);

/* A JSON:API error document with one error (source omitted when pointer is NULL).
 * Returns malloc'd text or NULL on out of memory; caller frees. */
char *sim_api_error_doc(int status, const char *code, const char *title, const char *detail,
                        const char *pointer);

#endif
