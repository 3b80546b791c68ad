/*
 * store_int.h: the store's backend interface, private to the files under
 * src/store/ (nothing outside the store includes it). A backend is one const
 * table of callbacks, struct store_backend_ops, exported under one name
 * (store_sqlite_backend, store_pg_backend) and found by URL scheme in one place,
 * store_backend_for_url in store.c. store.c (queue, group commit, syncer,
 * mirror and retention) and store_apply.c (every operation's rules: dedupe
 * outcomes, job planning, FIFO per key, coalescing, the audit records and
 * their hash chain, retention checkpoints) reach a backend only through this
 * table of primitives; a backend never sees struct store and decides no
 * domain rule. The way PostgreSQL's tableam.h and curl's vtls_int.h do it:
 * grouped callbacks, capabilities next to them, a version.
 */
#ifndef HOOKLINE_STORE_INT_H
#define HOOKLINE_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "audit.h"
#include "store/store.h"

/* The version of struct store_backend_ops below. A table states the version
 * it was written against; store_open refuses any other. */
/* 3: watch_jobs; 4: try_batch; 5: primitives (transactions, the audit chain,
 * ...) replace try_batch, the operations are built in store_apply.c; 6: the
 * optional callbacks several instances share */
#define STORE_BACKEND_OPS_VERSION 6

/* store_apply_batch: the transaction committed and wrote nothing (no sync needed). */
#define STORE_BATCH_CLEAN 1
/* store_apply_batch: ops[*bad] failed alone; the transaction was rolled back. */
#define STORE_BATCH_OP_FAILED 2

/* The outcome of a backend's commit. */
enum store_commit_result {
    STORE_COMMIT_FAILED = -1, /* not committed (err says why); the backend rolled back */
    STORE_COMMIT_WROTE = 0,   /* committed (durable after sync) */
    STORE_COMMIT_CLEAN = 1,   /* committed and wrote nothing: no sync needed */
};

/* The outcome of a backend's rollback. */
enum store_rollback_result {
    STORE_ROLLBACK_DONE = 0,  /* rolled back; the next transaction may begin at once */
    STORE_ROLLBACK_LOST = -1, /* the connection went with it: the whole batch failed */
};

/* The outcome of looking a number up (number_did). */
enum store_number_result {
    STORE_NUMBER_FAILED = -1,
    STORE_NUMBER_UNKNOWN = 0, /* never resolved */
    STORE_NUMBER_KNOWN = 1,   /* the DID id written out */
};

/* The outcome of taking a claim head (job_take). */
enum store_take_result {
    STORE_TAKE_FAILED = -1,
    STORE_TAKE_GONE = 0,  /* no longer pending or running (superseded meanwhile): left alone */
    STORE_TAKE_TAKEN = 1, /* leased and read */
};

/* The outcome of a conditional job move (job_set_state, job_wait_behind). */
enum store_move_result {
    STORE_MOVE_FAILED = -1,
    STORE_MOVE_LEFT = 0, /* the condition did not hold: left alone */
    STORE_MOVE_MOVED = 1,
};

/* The outcome of finding where retention prunes to. */
enum store_prune_point {
    STORE_PRUNE_POINT_FAILED = -1,
    STORE_PRUNE_POINT_NONE = 0,  /* no record is old enough (the newest never is) */
    STORE_PRUNE_POINT_FOUND = 1, /* *through and hash set */
};

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
    /* The schema version this build writes (`hookline version`). */
    int (*build_schema_version)(void);
    /* Connects without migrating and reports the schema version the database
     * holds (0: none yet) and the one this build writes. Returns 0, or -1 with
     * err set. NULL when the backend has no such report (SQLite: `hookline
     * version` names its schema). */
    int (*schema_info)(const char *rest, const struct store_options *opts, int *version, int *build,
                       char *err, size_t err_len);

    /* ---- writes: primitives on the store's writer thread only ----
     * store_apply.c builds every operation from these, inside one transaction
     * per group commit: begin, the primitives each op needs, commit (or
     * rollback when an op failed). Each returns 0, or -1 with err set, unless
     * said otherwise; a failed primitive leaves the transaction to rollback. */

    /* Starts the batch's transaction (SQLite: catches up with other processes'
     * commits: the audit tip, the dedupe set). On failure nothing is open. */
    int (*begin)(struct store_backend *be, char *err, size_t err_len);
    /* Commits it (PostgreSQL: with synchronous_commit on, so durable; with the
     * NOTIFY asked for by jobs_claimable). Returns an enum store_commit_result;
     * on STORE_COMMIT_FAILED the backend rolled back itself. */
    int (*commit)(struct store_backend *be, char *err, size_t err_len);
    /* Rolls the open transaction back; why (borrowed) is the reason given when
     * the connection turns out lost. Returns an enum store_rollback_result. */
    int (*rollback)(struct store_backend *be, const char *why);

    /* The audit chain. audit_tip gives the seq the next record takes and the
     * hash it continues from (the first call of a transaction takes the chain's
     * lock where other processes may append: PostgreSQL). audit_insert stores
     * record rec (borrowed), already sealed by the store as seq with hash, as
     * text (stolen: the backend frees it, also on failure), and makes seq + 1
     * and hash the tip. Nothing above the seam caches the tip. */
    int (*audit_tip)(struct store_backend *be, int64_t *next_seq, char tip[AUDIT_HASH_HEX_LEN + 1],
                     char *err, size_t err_len);
    int (*audit_insert)(struct store_backend *be, const json_t *rec, int64_t seq, char *text,
                        const char *hash, char *err, size_t err_len);
    /* Retention: the newest record whose time is before cutoff (RFC 3339 UTC,
     * as records carry it) that is not the newest record of all: its seq in
     * *through and its hash in hash. Returns an enum store_prune_point. */
    int (*audit_prune_point)(struct store_backend *be, const char *cutoff, int64_t *through,
                             char hash[AUDIT_HASH_HEX_LEN + 1], char *err, size_t err_len);
    /* Deletes every record with seq <= through (and whatever the backend
     * keeps about them); how many records went in *deleted. */
    int (*audit_delete_through)(struct store_backend *be, int64_t through, int64_t *deleted,
                                char *err, size_t err_len);

    /* Sets control key to value at time at (value NULL: deletes it). */
    int (*control_set)(struct store_backend *be, const char *key, const char *value, double at,
                       char *err, size_t err_len);
    /* Running jobs back to pending at time r->at, how many in *released:
     * every one, or with r->instance set (a shared store) only those no live
     * instance holds (store.h, struct store_op_release). */
    int (*release_running)(struct store_backend *be, const struct store_op_release *r,
                           int64_t *released, char *err, size_t err_len);
    /* The transaction made a job claimable: tell the other processes once it
     * commits (PostgreSQL: NOTIFY). NULL: the backend has no one to tell
     * (SQLite: store.c wakes its own listener). */
    void (*jobs_claimable)(struct store_backend *be);

    /* ---- events ---- */

    /* Inserts the events of ops[0..n) (each STORE_OP_EVENT, none failed) in
     * order, each unless the same source and event id is stored already
     * inside its dedupe_window_s (the newest copy decides; an earlier event of
     * the same call counts): sets u.event.result to STORE_EVENT_STORED (row:
     * the new row) or STORE_EVENT_DUPLICATE (row: the original). A backend may
     * send them together (PostgreSQL: one pipeline). Returns 0, or -1 with
     * *failed the index of the op that failed alone (its error in
     * ops[*failed]->error) or n when the transaction failed (err set). */
    int (*insert_events)(struct store_backend *be, struct store_op **ops, size_t n, size_t *failed,
                         char *err, size_t err_len);
    /* Event row gets status, rule_version and njobs if its status is
     * rule_failed. Returns STORE_REPLAN_REPLANNED, STORE_REPLAN_NOT_RULE_FAILED
     * (left alone), or -1 with err set. */
    int (*event_replan)(struct store_backend *be, int64_t row, const char *status,
                        const char *rule_version, size_t njobs, char *err, size_t err_len);

    /* ---- jobs ---- */

    /* The DID id number (digits) was resolved to, into did[did_len]. Returns
     * an enum store_number_result (err set on STORE_NUMBER_FAILED). */
    int (*number_did)(struct store_backend *be, const char *number, char *did, size_t did_len,
                      char *err, size_t err_len);
    /* Remembers that number is DID did (at: the time). */
    int (*number_remember)(struct store_backend *be, const char *number, const char *did, double at,
                           char *err, size_t err_len);
    /* Inserts a pending job of event event_row, due at created_at: spec's
     * request with did (may be NULL) and order_key as given (spec's own are
     * not read); its id in *id. */
    int (*job_insert)(struct store_backend *be, int64_t event_row, const char *source,
                      const char *event_id, double created_at, const struct store_job_spec *spec,
                      const char *did, const char *order_key, int64_t *id, char *err,
                      size_t err_len);
    /* The heads of at most max order keys, lowest id first: for each key its
     * lowest-id unfinished job, when that one is pending and due at now or
     * running under a lease ended before now (PostgreSQL locks them, skipping
     * rows another transaction holds). Only id and order_key are set in
     * heads[0..*n) (caller clears each with store_job_clear). */
    int (*job_heads)(struct store_backend *be, double now, int max, struct store_job *heads, int *n,
                     char *err, size_t err_len);
    /* The pending jobs of order key, lowest id first (at most 10000), every
     * member set, in a new array *jobs of *n (caller clears each and frees it). */
    int (*jobs_pending_of_key)(struct store_backend *be, const char *key, struct store_job **jobs,
                               size_t *n, char *err, size_t err_len);
    /* Leases job id until lease_until (state running, updated at now) if it is
     * still pending or running, and reads it into *out (caller clears).
     * Returns an enum store_take_result (err set on STORE_TAKE_FAILED). */
    int (*job_take)(struct store_backend *be, int64_t id, double lease_until, double now,
                    struct store_job *out, char *err, size_t err_len);
    /* Moves job id to state at time at if it is in only_from (NULL: any).
     * Returns an enum store_move_result (err set on STORE_MOVE_FAILED). */
    int (*job_set_state)(struct store_backend *be, int64_t id, const char *state,
                         const char *only_from, double at, char *err, size_t err_len);
    /* Records job->id's new state and outcome as store.h's STORE_OP_JOB says
     * (the lease ends). Returns STORE_JOB_MOVED, STORE_JOB_WRONG_STATE,
     * STORE_JOB_NOT_FOUND, or -1 with err set. */
    int (*job_update)(struct store_backend *be, const struct store_op_job *job, char *err,
                      size_t err_len);
    /* Every unfinished job of order key from_key moves to to_key, taking did
     * when it names none. */
    int (*jobs_rekey)(struct store_backend *be, const char *from_key, const char *to_key,
                      const char *did, char *err, size_t err_len);
    /* Running job id goes back to pending (lease ended) if key has an
     * unfinished job with a lower id. Returns an enum store_move_result
     * (STORE_MOVE_MOVED: sent back; err set on STORE_MOVE_FAILED). */
    int (*job_wait_behind)(struct store_backend *be, int64_t id, const char *key, char *err,
                           size_t err_len);

    /* ---- durability (the store's syncer thread) ---- */

    /* Makes every batch written so far durable (fsync). Runs concurrently with
     * the writer's next transaction. Returns 0 or -1 with err set. NULL unless needs_sync_thread.
     */
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

/* ---- store_apply.c: the operations above the seam (writer thread) ---- */

/* One attempt at a group commit: applies every op of ops[0..n) not already
 * failed in one transaction through be's primitives, setting each op's result,
 * and commits. Returns 0 when it committed (durable after sync),
 * STORE_BATCH_CLEAN when it committed and wrote nothing, STORE_BATCH_OP_FAILED
 * when ops[*bad] failed alone (its error in ops[*bad]->error; everything rolled
 * back), -1 when it did not commit (err says why). */
int store_apply_batch(struct store_backend *be, struct store_op **ops, size_t n, size_t *bad,
                      char *err, size_t err_len);

/* The backends of this build, one const table each. */
extern const struct store_backend_ops store_sqlite_backend;
extern const struct store_backend_ops store_pg_backend;

/* The backend of url's scheme, with *rest set as store_url_scheme does; NULL
 * when no backend of this build serves the scheme. store.c, the one place
 * backends are looked up. */
const struct store_backend_ops *store_backend_for_url(const char *url, const char **rest);

#endif
