/*
 * replay: shadow replay (`hookline rule-test --replay`): runs a candidate rule
 * over stored events in arrival order and compares each plan with the one
 * stored when the event arrived. Read-only: it plans, sends nothing and writes
 * nothing to the store or the audit trail.
 */
#ifndef HOOKLINE_REPLAY_H
#define HOOKLINE_REPLAY_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "rules.h"
#include "store/store.h"

#define REPLAY_MAX_ACTIONS 16

struct replay_options {
    double since;                 /* > 0: events received at or after (Unix seconds) */
    double until;                 /* > 0: stop at the first event received after (the start) */
    const char *source;           /* NULL: every source */
    int64_t limit;                /* > 0: at most this many events, the oldest first */
    const char *in_force_version; /* the configured rule's version ("": none) */
    bool data_configured;         /* rules.data is set: said in the output */
    bool json;                    /* the JSON document instead of text */
    FILE *out;                    /* where the report goes */
    bool progress;                /* a progress line on stderr (a terminal) */
    int64_t max_changes;          /* > 0 (JSON): list at most this many changes (all counted) */
    const atomic_bool *cancel;    /* non-NULL: the run stops (as at its limit) once true */
};

/* Requests planned per action, before (stored) and after (candidate), over the
 * events compared (failed ones are not). */
struct replay_action_count {
    char action[32];
    int64_t before, after;
};

struct replay_summary {
    int64_t events, unchanged, changed, failed;
    int64_t from_jobs;     /* stored plan rebuilt from jobs rows (events before plans were kept) */
    int64_t no_plan;       /* no stored plan at all: compared as planning nothing */
    int64_t other_version; /* planned by another rule version than the one in force */
    struct replay_action_count actions[REPLAY_MAX_ACTIONS];
    size_t nactions;
};

/* Replays the events of st that o selects through candidate (borrowed; run on
 * the calling thread, one Lua state reused for every event), reading them in
 * batches, and writes the report to o->out: text (each changed event's before
 * and after as found, each failure, then the summary) or one JSON document
 * {"events", "unchanged", "changed", "failed", "changes": [{"event_id",
 * "source", "before", "after"}], ...}. Fills *sum. Returns 0, or -1 with err
 * set when the store cannot be read (the report is then incomplete). */
int replay_run(struct store *st, struct rules *candidate, const struct replay_options *o,
               struct replay_summary *sum, char *err, size_t err_len);

/* Compiles a candidate rule from text (len bytes, borrowed) the way rules_create
 * compiles a script, with base's data files, limits and API version (base's
 * script_path and display_name are not used; messages name the script
 * "candidate.lua"). The engine keeps its own copy of the text: nothing is
 * written to disk. Returns 0 and a new engine in *out (caller frees with
 * rules_destroy, on the thread that ran it), or -1 with err set
 * ("candidate.lua:LINE: message" for a script that does not compile). */
int replay_candidate_compile(const char *text, size_t len, const struct rules_options *base,
                             struct rules **out, char *err, size_t err_len);

/* replay_run with the JSON report (o->json, o->out and o->progress are
 * ignored) returned as a document instead of written: a new reference with
 * "candidate_version" added, or NULL with err set when the store could not be
 * read or memory ran out. Fills *sum. Blocks the calling thread for the run. */
json_t *replay_run_json(struct store *st, struct rules *candidate, const struct replay_options *o,
                        struct replay_summary *sum, char *err, size_t err_len);

#endif
