/*
 * delivery: the worker pool that sends planned jobs to DIDWW. Workers claim
 * jobs from the store under a lease (a crash returns them to the queue), one at
 * a time per order key (per DID or trunk group, in arrival order), resolve DIDs
 * named by number, skip changes that are already in place, respect one shared
 * rate limit, retry with backoff, and record every step in the audit trail. A
 * 401 pauses all delivery until an operator resumes it or the key changes.
 */
#ifndef HOOKLINE_DELIVERY_H
#define HOOKLINE_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct delivery_options {
    const char *base_url;
    const char *api_key; /* secret */
    const char *api_version;
    const char *auth_url;   /* token endpoint: used by 2026-11-19 (bearer tokens) */
    int token_expires_in_s; /* lifetime asked for a bearer token; 0: 900 */
    long timeout_ms;
    int rate_limit_per_s;
    int workers;
    int max_attempts;
    int64_t backoff_initial_ms;
    int64_t backoff_max_ms;
    bool skip_noop;
    int number_cache_ttl_s;  /* 0: 300 */
    int idle_poll_ms;        /* an idle worker looks for due jobs this often; 0: 200 */
    const char *instance_id; /* this process's id (a shared store: whose leases to reclaim) */
    int max_in_flight;       /* cap on workers sending at once; 0: max(workers, 64) */
    int batch_size;          /* jobs claimed per round (their DIDs read in one list); 0: 50 */
    int batch_page_size;     /* page[size] of the list reads, 1..100; 0: 100 */
    int prefetch_max_age_ms; /* a prefetched before-state older than this is read again */
};

/* On a shared store, a job held by an instance whose heartbeat is older than
 * this is taken back (its holder is gone) without waiting for the lease. */
#define DELIVERY_HOLDER_STALE_S 15.0

struct delivery;

/* Starts the workers over st (borrowed, must outlive the pool). Options are
 * copied. Returns 0 and the pool in *out, or -1 with err set. */
int delivery_start(const struct delivery_options *opts, struct store *st, struct delivery **out,
                   char *err, size_t err_len);

/* Wakes idle workers: new jobs were committed. Any thread; never blocks. */
void delivery_notify(struct delivery *d);

/* True while delivery is paused; the reason goes to why[why_len]. */
bool delivery_paused(struct delivery *d, char *why, size_t why_len);

/* Pauses delivery at an operator's request: the same pause row a 401 writes
 * (every instance on a shared store pauses; a resume anywhere lifts it), audited
 * delivery.paused with detail.by = who and detail.reason = reason (both borrowed,
 * not NULL). Unlike a 401 pause it holds across a change of API key. Returns 0,
 * 1 when delivery was paused already (nothing recorded), -1 when the store
 * failed (nothing paused). */
int delivery_pause_by(struct delivery *d, const char *who, const char *reason);

/* Lifts a pause (audited delivery.resumed with who). Returns 0, or 1 when
 * delivery was not paused, -1 when the store failed. */
int delivery_resume(struct delivery *d, const char *who);

/* Brings this process's pause in line with the pause row other instances on a
 * shared store write and clear (a 401 seen elsewhere pauses here, a resume
 * anywhere resumes here). Called periodically by serve's peer thread; any
 * thread. */
void delivery_sync_pause(struct delivery *d);

/* Stops the workers (each finishes its current request) and frees d. */
void delivery_stop(struct delivery *d);

/* The coalescing rule: true when later (a pending job of the same order key)
 * fully replaces earlier: both PATCH the same path and later sets every
 * attribute and relationship earlier sets. Both borrowed. */
bool delivery_supersedes(const struct store_job *later, const struct store_job *earlier);

/* Control key under which a pause is recorded in the store. */
#define DELIVERY_PAUSE_KEY "delivery.paused"

#endif
