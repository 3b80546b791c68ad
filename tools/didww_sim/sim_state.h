/*
 * sim_state: the simulator's DIDs, trunks and trunk groups, held as one jansson document
 * in the version-independent shape of the state file (see README.md). Loading validates and
 * normalises (defaults filled in, references checked); the API layer reads and mutates the
 * document only while holding the state lock.
 */
#ifndef SIM_STATE_H
#define SIM_STATE_H

#include <jansson.h>
#include <stddef.h>

/* Most trunks one group may hold (DIDWW documents this cap for 2026-11-19; applied to all). */
#define SIM_GROUP_MAX_TRUNKS 10

struct sim_state;

/* Reads and validates a state file; NULL with a one-line message in err on failure.
 * The returned state is the reset target of sim_state_reset(). Caller destroys it. */
struct sim_state *sim_state_load(const char *path, char *err, size_t err_len);

/* destroy(NULL) is a no-op. */
void sim_state_destroy(struct sim_state *st);

/* Validates a state document and returns a normalised deep copy (new reference), or NULL
 * with a message in err. Does not modify doc. */
json_t *sim_state_normalize(json_t *doc, char *err, size_t err_len);

/* The lock guards the document returned by sim_state_doc(). Never held together with any
 * other simulator lock. */
void sim_state_lock(struct sim_state *st);
void sim_state_unlock(struct sim_state *st);

/* The current document: borrowed, valid only while the caller holds the lock. */
json_t *sim_state_doc(struct sim_state *st);

/* Deep copy of the current document (new reference); takes the lock itself. */
json_t *sim_state_snapshot(struct sim_state *st);

/* Restores the document loaded at start; takes the lock itself. */
void sim_state_reset(struct sim_state *st);

/* Replaces the current document; steals doc, which must come from sim_state_normalize().
 * Takes the lock itself. */
void sim_state_replace(struct sim_state *st, json_t *doc);

/* Lookups in a locked document; all results are borrowed. */
json_t *sim_state_find(json_t *doc, const char *collection, const char *id);
json_t *sim_state_group_of_trunk(json_t *doc, const char *trunk_id);

/* Makes trunk_ids (array of strings) the whole membership of group. A trunk belongs to at most
 * one group (its to-one relationship), so a trunk taken into this group leaves its old one.
 * Caller has validated the ids and the cap. */
void sim_state_set_group_trunks(json_t *doc, json_t *group, json_t *trunk_ids);

#endif
