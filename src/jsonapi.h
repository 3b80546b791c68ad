/*
 * jsonapi: reads what DIDWW answers: JSON:API error documents (condensed for
 * the audit), DID resources (the routing and attributes that a change will
 * replace: the before-state), DID lists (lookup by number), and decides whether
 * a planned PATCH is already satisfied (a no-op). Pure functions over jansson
 * values; no I/O.
 */
#ifndef HOOKLINE_JSONAPI_H
#define HOOKLINE_JSONAPI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Condenses a JSON:API error document (body text, may be NULL or not JSON) into
 * a new array of {"status","code","title","detail","pointer"} objects (members
 * absent when absent), at most 10 entries with strings cut to 300 bytes.
 * Returns a new reference (possibly an empty array), never NULL unless out of memory. */
json_t *jsonapi_errors(const char *body, size_t len);

/* The state of a DID as hookline cares about it, from GET /v3/dids/{id}
 * (either naming generation). Returns a new object
 * {"id","number","trunk","trunk_group","capacity_pool","shared_capacity_group",
 *  "description","capacity_limit","dedicated_channels_count","billing_cycles_count",
 *  "terminated"} with JSON null for relationships not set (a relationship whose
 * data is absent from the document is reported as absent from the object, so
 * "unknown" differs from "null"), or NULL with why set when the document is not
 * a DID resource. */
json_t *jsonapi_did_state(const char *body, size_t len, char *why, size_t why_len);

/* The states (as jsonapi_did_state gives them, one per element of data, in order) of a
 * DID list answer: GET /v3/dids?filter[id]=...&include=... Returns a new array (caller
 * decrefs), or NULL with why set when the document is not a list of DID resources.
 * *total (may be NULL) gets meta.total_records, or -1 when absent. */
json_t *jsonapi_did_list_states(const char *body, size_t len, long *total, char *why,
                                size_t why_len);

/* From GET /v3/dids?filter[number]=...: the id of the DID whose number equals
 * digits. Returns 1 and writes the id to out[out_len], 0 when there is none, or
 * -1 with why set when the document is malformed. */
int jsonapi_find_did(const char *body, size_t len, const char *digits, char *out, size_t out_len,
                     char *why, size_t why_len);

/* True when applying the planned DID PATCH body (text as sent) to state (from
 * jsonapi_did_state) would change nothing: every attribute and relationship in
 * the body already has that value. Relationship names of both generations are
 * understood (trunk / voice_in_trunk map to "trunk", trunk_group /
 * voice_in_trunk_group to "trunk_group"). A relationship the state does not know
 * is never a no-op. */
bool jsonapi_patch_is_noop(const char *patch_body, const json_t *state);

/* Replaces "number:<digits>" by did_id in a planned body's data.id. Returns a
 * new heap string (caller frees) or NULL on a body that is not JSON. */
char *jsonapi_with_did_id(const char *patch_body, const char *did_id);

#endif
