/*
 * store_int.h: the store's backend interface, private to the files under
 * src/store/ (nothing outside the store includes it). A backend is one const
 * table of callbacks, struct store_backend_ops, exported under one name
 * (store_sqlite_backend, store_pg_backend) and found by URL scheme in one place,
 * store_backend_for_url in store.c. store.c (queue, group commit, syncer,
 * mirror and retention) reaches a backend only through this table; a backend
 * never sees struct store. The way PostgreSQL's tableam.h and curl's
 * vtls_int.h do it: grouped callbacks, capabilities next to them, a version.
 */
#ifndef HOOKLINE_STORE_INT_H
#define HOOKLINE_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "store/store.h"

/* The version of struct store_backend_ops below. A table states the version
 * it was written against; store_open refuses any other. */
#define STORE_BACKEND_OPS_VERSION                                                                  \
    5 /* 3: watch_jobs; 4: try_batch replaces write_batch; 5: shared */

/* try_batch: the transaction committed and wrote nothing (no sync needed). */
#define STORE_BATCH_CLEAN 1
/* try_batch: ops[*bad] failed alone; the transaction was rolled back. */
#define STORE_BATCH_OP_FAILED 2

/* An open backend. Each backend's own state struct starts with this member,
 * so a callback receives it and casts to its own type. */
struct store_backend {
    const struct store_backend_ops *ops;
};

struct store_backend_ops {
    int version;      /* STORE_BACKEND_OPS_VERSION */
    const char *name; /* "sqlite", "postgresql": for messages */

    /* ---- capabilities ---- */

    /* The backend keeps an in-memory dedupe set: dedupe_stats is set. */
    bool has_dedupe_set;
    /* A commit is not durable by itself: sync is set, and the store runs a
     * syncer thread that calls it after each committed batch, telling the
     * submitters only once it returned. */
    bool needs_sync_thread;

    /* ---- lifecycle (the thread that opens and closes the store) ---- */

    /* Opens (and unless opts->read_only migrates) the database named by rest,
     * the URL without what store_url_scheme strips. Returns a new backend
     * (caller closes it with close) or NULL with err set. */
    struct store_backend *(*open)(const char *rest, const struct store_options *opts, char *err,
                                  size_t err_len);
    /* Frees everything be holds; the writer and syncer threads are stopped
     * before. NULL is a no-op. */
    void (*close)(struct store_backend *be);
    /* Checks rest (as open gets it) without connecting: 0, or -1 with err set
     * to what follows "store.url " in a message (never echoing a secret). NULL:
     * every rest the scheme's prefix admits is fine. */
    int (*check_url)(const char *rest, char *err, size_t err_len);
    /* Connects without migrating and reports the schema version the database
     * holds (0: none yet) and the one this build writes. Returns 0, or -1 with
     * err set. NULL when the backend has no such report (SQLite: `hookline
     * version` names its schema). */
    int (*schema_info)(const char *rest, const struct store_options *opts, int *version, int *build,
                       char *err, size_t err_len);

    /* ---- writes (the store's writer thread only) ---- */

    /* One attempt at a group commit: applies every op of ops[0..n) not already
     * failed (store_op_failed) in one transaction, setting each op's result
     * (its kind's enum, store.h), and commits. Returns 0 when the transaction
     * committed (durable after sync), STORE_BATCH_CLEAN when it committed and
     * wrote nothing, STORE_BATCH_OP_FAILED when ops[*bad] failed alone (its
     * error in ops[*bad]->error; everything rolled back), -1 when it did not
     * commit (err says why). store.c marks the failed op and tries the rest
     * again (store_write_batch), so a backend never loops itself. */
    int (*try_batch)(struct store_backend *be, struct store_op **ops, size_t n, size_t *bad,
                     char *err, size_t err_len);

    /* ---- durability (the store's syncer thread) ---- */

    /* Makes every batch written so far durable (fsync). Runs concurrently with
     * try_batch. Returns 0 or -1 with err set. NULL unless needs_sync_thread. */
    int (*sync)(struct store_backend *be, char *err, size_t err_len);

    /* ---- reads (any thread; the semantics of the store.h function of the
     * same name) ---- */

    bool (*ping)(struct store_backend *be, char *why, size_t why_len);
    int (*audit_scan)(struct store_backend *be, const struct store_audit_filter *filter,
                      store_audit_fn fn, void *ctx, char *err, size_t err_len);
    int (*events_scan)(struct store_backend *be, const struct store_event_filter *filter,
                       store_event_fn fn, void *ctx, char *err, size_t err_len);
    int64_t (*count_events)(struct store_backend *be, const char *source);
    int (*control_get)(struct store_backend *be, const char *key, char *out, size_t len);
    int64_t (*jobs_depth)(struct store_backend *be, const char *state, double now,
                          double *oldest_age_s);
    int (*jobs_scan)(struct store_backend *be, const char *state, int64_t limit, store_job_fn fn,
                     void *ctx, char *err, size_t err_len);
    bool (*jobs_unresolved_before)(struct store_backend *be, int64_t job_id);
    /* NULL unless has_dedupe_set. */
    void (*dedupe_stats)(struct store_backend *be, struct store_dedupe_stats *out);

    /* ---- optional: jobs made claimable by any process (the thread that
     * opens and closes the store) ---- */

    /* Starts calling fn(ctx) from a thread of the backend's own each time a
     * transaction of any process (this one, a CLI command, another instance)
     * that made a job claimable commits; fn must not block. fn NULL stops it
     * and returns once fn can no longer be called. Polling stays the fallback:
     * while the backend cannot watch (a lost connection) it just calls nothing.
     * Returns 0, or -1 with err set. NULL: the backend cannot tell (SQLite). */
    int (*watch_jobs)(struct store_backend *be, void (*fn)(void *ctx), void *ctx, char *err,
                      size_t err_len);

    /* ---- optional: what several processes on one database share (any
     * thread; the semantics of the store.h function of the same name). All
     * NULL when the backend serves one process (SQLite). ---- */

    /* store_rate_take: 0 taken, 1 wait *wait_s, -1 error; store_rate_done. */
    int (*rate_take)(struct store_backend *be, const char *key, int n, double window_s,
                     double hold_s, struct store_rate_slot *slot, double *wait_s, char *err,
                     size_t err_len);
    int (*rate_done)(struct store_backend *be, const char *key, const struct store_rate_slot *slot,
                     char *err, size_t err_len);
    /* Takes or keeps the maintenance lease (a session advisory lock on a
     * connection of the backend's own, so it ends with the process): *leader
     * says whether this process holds it. Returns 0, or -1 with err set
     * (*leader false). */
    int (*leader_try)(struct store_backend *be, bool *leader, char *err, size_t err_len);
    int (*instance_beat)(struct store_backend *be, const struct store_instance *self, char *err,
                         size_t err_len);
    int (*instance_forget)(struct store_backend *be, const char *id, char *err, size_t err_len);
    int (*instances_scan)(struct store_backend *be, store_instance_fn fn, void *ctx, char *err,
                          size_t err_len);
};

/* ---- services of store.c to the backends ---- */

/* Sets op's result to its kind's *_FAILED (op->error is left as it is). */
void store_op_set_failed(struct store_op *op);

/* Sets op's result back to its kind's *_PENDING: a batch is applied again
 * after another op of it failed. */
void store_op_reset(struct store_op *op);

/* Domain records every backend appends the same way (written once here).
 * Each returns a new reference (caller decrefs) or NULL when out of memory. */

/* event.duplicate for an event found stored already (ev->row: the original). */
json_t *store_duplicate_record(const struct store_op_event *ev);

/* A record of kind about job j (job.superseded, ...): job id, DID, number,
 * detail.action. */
json_t *store_job_record(const char *kind, const struct store_job *j);

/* The backends of this build, one const table each. */
extern const struct store_backend_ops store_sqlite_backend;
extern const struct store_backend_ops store_pg_backend;

/* The backend of url's scheme, with *rest set as store_url_scheme does; NULL
 * when no backend of this build serves the scheme. store.c, the one place
 * backends are looked up. */
const struct store_backend_ops *store_backend_for_url(const char *url, const char **rest);

#endif
