/*
 * store: the durable state of hookline (events, jobs, audit records) behind one
 * interface, whatever the backend (src/store/sqlite/, src/store/pg/; the
 * backend interface itself is private, in store_int.h). Writes go
 * through a single writer thread that groups concurrent operations into one
 * transaction and one fsync ("group commit"); a submitter learns the outcome by
 * callback or by waiting. Reads use a separate connection and may run on any
 * thread. Nothing above this header knows which database is underneath.
 */
#ifndef HOOKLINE_STORE_H
#define HOOKLINE_STORE_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

struct store_options {
    const char *url;         /* "sqlite:PATH" (PATH used as given) or a PostgreSQL URI
                                without a password; see store_url_scheme */
    const char *password;    /* PostgreSQL: the password (borrowed; NULL: libpq's own
                                PGPASSFILE or ~/.pgpass); never logged */
    int busy_timeout_ms;     /* how long a write waits for a lock held elsewhere */
    int queue_max;           /* operations waiting for a commit; beyond it submit fails */
    int batch_max;           /* operations in one transaction */
    bool read_only;          /* CLI readers: no writer thread, no migrations */
    const char *jsonl_path;  /* audit mirror (JSON Lines), NULL: none */
    int retention_days;      /* > 0: prune audit records older than this, hourly */
    int64_t dedupe_window_s; /* the longest source window: how far back the
                                dedupe set is loaded at open (0: 7 days) */
    size_t dedupe_max_keys;  /* the dedupe set's bound (0: 2,000,000) */
    bool dedupe_preload;     /* load the dedupe set at open (serve), not at the
                                first event (CLI commands never store events) */
    const char *instance_id; /* serve's instance id (borrowed, copied): claims on a
                                shared store name their holder; NULL: none */
};

/* One DIDWW request planned by the rule engine, stored as a job in the same
 * transaction as its event. Strings are owned by whoever built the op. */
struct store_job_spec {
    const char *action;    /* "route_did", ... */
    const char *method;    /* "PATCH", "POST", "DELETE" */
    const char *path;      /* "/v3/dids/<id>" or with "number:<digits>" */
    const char *body;      /* JSON text, may be NULL for none */
    const char *did;       /* DID id when known, else NULL */
    const char *number;    /* DID number when named by number, else NULL */
    const char *order_key; /* "did:<id>", "number:<digits>" or "group:<id>": FIFO key */
};

enum store_op_kind {
    STORE_OP_EVENT = 1,  /* a new event, its jobs and audit records: u.event */
    STORE_OP_AUDIT,      /* audit records only: u.audit */
    STORE_OP_REPLAN,     /* a stored rule_failed event planned again: u.replan */
    STORE_OP_CLAIM,      /* claim due jobs for delivery: u.claim */
    STORE_OP_JOB,        /* record a job's new state: u.job */
    STORE_OP_CONTROL,    /* set a control value (delivery pause): u.control */
    STORE_OP_PRUNE,      /* delete old audit records, chain checkpoint: u.prune */
    STORE_OP_RELEASE,    /* every running job back to pending (at start): u.release */
    STORE_OP_MAP_NUMBER, /* number -> did learnt: remember it, re-key its jobs: u.map_number */
};

/* A job as delivery works on it. Strings are owned by the struct
 * (store_job_clear frees them). */
struct store_job {
    int64_t id;
    char *source, *event_id, *action, *method, *path, *body, *did, *number, *order_key;
    int attempts; /* attempts made before this claim */
    double created_at;
};

/* Frees what job owns and zeroes it. */
void store_job_clear(struct store_job *job);

/* Decides whether a later pending job fully replaces an earlier one of the same
 * order key (coalescing). Both borrowed. Supplied by delivery. */
typedef bool (*store_supersedes_fn)(const struct store_job *later, const struct store_job *earlier);

/* ---- the outcome of each kind of operation: one name per outcome ----
 * Each enum starts at *_PENDING (0: not decided yet) and has its own *_FAILED:
 * the operation was not applied (op->error says why; nothing it asked for was
 * written). Set when done() runs or store_submit_wait returns. */

enum store_event_result {
    STORE_EVENT_PENDING = 0,
    STORE_EVENT_STORED,    /* stored with its jobs and records (u.event.row: its row) */
    STORE_EVENT_DUPLICATE, /* the same source and event id inside the window: not stored
                              again, an event.duplicate record instead (row: the original) */
    STORE_EVENT_FAILED,
};

enum store_replan_result {
    STORE_REPLAN_PENDING = 0,
    STORE_REPLAN_REPLANNED,       /* new status, jobs and records stored */
    STORE_REPLAN_NOT_RULE_FAILED, /* the event is no longer rule_failed (another
                                      reprocess got there first): left alone */
    STORE_REPLAN_FAILED,
};

enum store_claim_result {
    STORE_CLAIM_PENDING = 0,
    STORE_CLAIM_CLAIMED, /* u.claim.jobs[0..n) leased to the caller */
    STORE_CLAIM_NONE,    /* no job is due (n == 0) */
    STORE_CLAIM_FAILED,
};

enum store_job_result {
    STORE_JOB_PENDING = 0,
    STORE_JOB_MOVED,       /* the job is in its new state, the records appended */
    STORE_JOB_WRONG_STATE, /* the job is not in only_from: left alone, nothing appended */
    STORE_JOB_NOT_FOUND,   /* no job has that id */
    STORE_JOB_FAILED,
};

enum store_map_result {
    STORE_MAP_PENDING = 0,
    STORE_MAP_MAPPED,    /* remembered; the number's jobs now share the DID's key */
    STORE_MAP_MUST_WAIT, /* ... and u.map_number.job_id went back to pending behind an
                             earlier job of the DID: it must wait its turn */
    STORE_MAP_FAILED,
};

/* AUDIT, CONTROL, PRUNE and RELEASE: written or not. */
enum store_write_result {
    STORE_WRITE_PENDING = 0,
    STORE_WRITE_DONE,
    STORE_WRITE_FAILED,
};

/* ---- the operations: inputs, then results ---- */

/* STORE_OP_EVENT. The op's audit records are written only when the event is
 * stored (a duplicate gets its own event.duplicate record instead). */
struct store_op_event {
    const char *source;
    const char *event_id;    /* the sender's id, or the body hash: dedupe key */
    double received_at;      /* Unix seconds */
    int64_t dedupe_window_s; /* a stored event older than this no longer dedupes */
    const char *status;      /* "accepted" or "rule_failed" */
    const char *content_type;
    const char *headers_json; /* JSON object text, secrets already redacted */
    const unsigned char *body;
    size_t body_len;
    const char *rule_version; /* may be NULL */
    const struct store_job_spec *jobs;
    size_t njobs;
    const char *plan_json; /* the rule's outcome as rules_outcome_text writes it (events.plan,
                              read back by replay); NULL: none (no rule configured) */

    enum store_event_result result;
    int64_t row; /* row id of the stored (or original) event */
};

/* STORE_OP_REPLAN: event row is planned again; source and event_id name it for
 * the job rows, received_at is their creation time. */
struct store_op_replan {
    int64_t row;
    const char *source;
    const char *event_id;
    double received_at;
    const char *status;       /* "accepted" or "rule_failed" */
    const char *rule_version; /* may be NULL */
    const struct store_job_spec *jobs;
    size_t njobs;

    enum store_replan_result result;
};

/* STORE_OP_CLAIM: claims up to max due jobs whose order key has no earlier
 * unfinished job and no running one, leasing them until now + lease_s; first
 * supersedes earlier pending jobs that a later pending job of the same key
 * fully replaces (audited job.superseded). The claimed jobs are returned in
 * jobs (caller frees each with store_job_clear and the array with free, also
 * when n == 0), their count in n. */
struct store_op_claim {
    double now;
    double lease_s;
    int max;
    store_supersedes_fn supersedes;

    enum store_claim_result result;
    struct store_job *jobs;
    int n;
};

/* STORE_OP_JOB: job id moves to state ("done", "dead", "pending" for a retry at
 * next_at, "cancelled", "superseded"); attempts, last_status and last_error are
 * recorded; did (may be NULL) stores a resolved DID id; at is the update time.
 * only_from (may be NULL) restricts the change to a job currently in that state
 * (e.g. cancel only "pending"). The op's audit records are appended in the same
 * transaction when the job moved. */
struct store_op_job {
    int64_t id;
    const char *state;
    const char *only_from;
    double next_at;
    int attempts;
    int last_status;
    const char *last_error;
    const char *did;
    double at;

    enum store_job_result result;
};

/* STORE_OP_CONTROL: key = value (NULL deletes) at time at, with the op's audit
 * records. */
struct store_op_control {
    const char *key;
    const char *value;
    double at;

    enum store_write_result result;
};

/* STORE_OP_PRUNE: deletes audit records whose time is before `before` (Unix
 * seconds) and appends an audit.pruned record {through_seq, continue_hash} from
 * which `audit verify` continues; deleted says how many went. The newest record
 * is never pruned. */
struct store_op_prune {
    double before;

    enum store_write_result result;
    int64_t deleted;
};

/* STORE_OP_RELEASE: every running job back to pending at time at; released
 * says how many. On a shared store with instance set, only the running jobs
 * no live instance holds: those whose lease ran out, those whose holder's
 * heartbeat is older than stale_s (or that have none), and with reclaim_own
 * those leased by instance itself (its previous run, killed). */
struct store_op_release {
    double at;
    const char *instance;
    double stale_s;
    bool reclaim_own;

    enum store_write_result result;
    int64_t released;
};

/* STORE_OP_MAP_NUMBER: number (digits) is DID did. Stores the mapping and moves
 * every unfinished job keyed "number:<digits>" to "did:<id>" so one DID has one
 * FIFO whichever way rules name it. job_id (0: none) is the job being
 * delivered: see STORE_MAP_MUST_WAIT. */
struct store_op_map_number {
    const char *number;
    const char *did;
    int64_t job_id;
    double at;

    enum store_map_result result;
};

/* STORE_OP_AUDIT: the op's audit records only. */
struct store_op_audit {
    enum store_write_result result;
};

/* One write operation: kind says which member of u it is. The submitter owns
 * the struct and everything it points to until done() has been called (or
 * store_submit_wait returned). */
struct store_op {
    enum store_op_kind kind;
    union {
        struct store_op_event event;
        struct store_op_audit audit;
        struct store_op_replan replan;
        struct store_op_claim claim;
        struct store_op_job job;
        struct store_op_control control;
        struct store_op_prune prune;
        struct store_op_release release;
        struct store_op_map_number map_number;
    } u;

    /* Audit records appended in the same transaction (see each kind for when).
     * Borrowed; the store adds seq/prev_hash/hash to them while sealing. */
    json_t **audit;
    size_t naudit;

    char error[160]; /* when the result is *_FAILED: why, no secrets */

    /* Completion: called once on the writer thread; must not block or submit. */
    void (*done)(struct store_op *op, void *ctx);
    void *done_ctx;

    /* Internal to store.c. */
    struct store_op *next_;
    pthread_mutex_t *wait_lock_;
    pthread_cond_t *wait_cond_;
    bool finished_;
};

/* True when op's result is its kind's *_FAILED. */
bool store_op_failed(const struct store_op *op);

/* Opens (and migrates, unless read_only) the store at opts->url. Returns 0 and a
 * new handle in *out (caller closes with store_close), or -1 with a one-line
 * reason in err[err_len]. */
int store_open(const struct store_options *opts, struct store **out, char *err, size_t err_len);

/* Queues op for the next group commit. Returns 0 (op->done will be called
 * exactly once, on the writer thread), or -1 when the queue is full or the store
 * is closing (op->done is not called; the result is *_FAILED and op->error
 * says why). */
int store_submit(struct store *st, struct store_op *op);

/* Submits op and blocks until it is committed or failed. Returns 0 when op's
 * result is any but *_FAILED (read it for which), else -1 (op->error says why). */
int store_submit_wait(struct store *st, struct store_op *op);

/* True when the store answers a trivial query and the last commit succeeded;
 * otherwise false with the reason in why[why_len]. Any thread. */
bool store_ready(struct store *st, char *why, size_t why_len);

/* Operations waiting for the writer (for metrics and back-pressure). */
size_t store_pending(struct store *st);

/* Filters of an audit query; zero/NULL fields do not filter. */
struct store_audit_filter {
    const char *kind; /* exact, or a prefix ending in '*' ("admin.*") */
    const char *source;
    const char *event_id;
    /* did and number: the DID's whole story (docs/contract.md section 6), every
     * record about it however rules named it; number as a person writes it,
     * already normalised by number_normalize (another form fails the scan). */
    const char *did;
    const char *number;
    int64_t job_id;      /* 0: any */
    double since, until; /* Unix seconds; 0: unbounded */
    int64_t after_seq;   /* only records with seq > after_seq */
    int64_t limit;       /* 0: no limit; else the newest `limit` matches */
    bool oldest_first;   /* with limit: the first `limit` matches instead (pagination) */
    bool check_columns;  /* also check each record's stored columns against the record and
                            fail naming the first that differs (what `audit verify` asks) */
};

/* Calls fn(record_json, seq, ctx) for each matching record in ascending seq.
 * record_json is borrowed for the call. fn returning non-zero stops the scan.
 * Returns 0, or -1 with err set. With filter->check_columns each record's
 * stored columns are checked against it and the scan fails naming the first
 * record and column that differ; a listing never fails on a tampered trail
 * (an operator must be able to look at it). Any thread. */
typedef int (*store_audit_fn)(const char *record_json, int64_t seq, void *ctx);
int store_audit_scan(struct store *st, const struct store_audit_filter *filter, store_audit_fn fn,
                     void *ctx, char *err, size_t err_len);

/* One stored event as read back (all members borrowed for the callback). */
struct store_event_row {
    int64_t row;
    const char *source;
    const char *event_id;
    double received_at;
    const char *status;
    const char *content_type;
    const char *headers_json;
    const unsigned char *body;
    size_t body_len;
    /* The rule's outcome when the event arrived (store_op_event.plan_json), or
     * for an event stored before plans were (SQLite schema 10, PostgreSQL 3)
     * the plan rebuilt from its jobs rows when the schema was migrated
     * (plan_from_jobs set; a rule that planned nothing left none: NULL). */
    const char *plan_json;
    bool plan_from_jobs;
    const char *rule_version; /* the rule version that planned it, NULL: none */
};

struct store_event_filter {
    const char *status;   /* NULL: any */
    const char *source;   /* NULL: any */
    const char *event_id; /* NULL: any */
    int64_t limit;        /* 0: no limit; oldest first */
    double since;         /* > 0: only events received at or after (Unix seconds) */
    int64_t after_row;    /* > 0: only events of a later row (keyset batches) */
};

/* Calls fn for each matching event, oldest first; fn returning non-zero stops.
 * Returns 0, or -1 with err set. Any thread. */
typedef int (*store_event_fn)(const struct store_event_row *row, void *ctx);
int store_events_scan(struct store *st, const struct store_event_filter *filter, store_event_fn fn,
                      void *ctx, char *err, size_t err_len);

/* Reads a control value into out[len]. Returns 1 when set, 0 when not, -1 on error. */
int store_control_get(struct store *st, const char *key, char *out, size_t len);

/* True when an unfinished job older than job_id names a DID by a number never
 * resolved yet (no attempt made): a job keyed by DID id must wait for it, since
 * it may be the same DID. */
bool store_jobs_unresolved_before(struct store *st, int64_t job_id);

/* Counts jobs in state (NULL: pending and running) and the age in seconds of
 * the oldest pending one (0 when none) at now. Returns the count or -1. */
int64_t store_jobs_depth(struct store *st, const char *state, double now, double *oldest_age_s);

/* Calls fn for each job in state (NULL: any), oldest first, at most limit (0:
 * no limit). The job and its strings are borrowed for the call. Returns 0 or -1. */
typedef int (*store_job_fn)(const struct store_job *job, const char *state, int last_status,
                            const char *last_error, void *ctx);
int store_jobs_scan(struct store *st, const char *state, int64_t limit, store_job_fn fn, void *ctx,
                    char *err, size_t err_len);

/* Moves job id to state if it is in from_state, appending an audit record of
 * kind with detail.by = by, and waits for the commit. Returns STORE_JOB_MOVED,
 * STORE_JOB_WRONG_STATE (left alone) or STORE_JOB_NOT_FOUND, or -1 on a store
 * error (err set). */
int store_job_transition(struct store *st, int64_t id, const char *state, const char *from_state,
                         const char *kind, const char *by, char *err, size_t err_len);

/* fn(ctx) is called by the writer (or syncer) thread after a commit that queued
 * new jobs became durable, so delivery can start at once, and on a serving
 * store whose backend can tell (PostgreSQL), by the backend's own thread when
 * any process (a CLI command, another instance) made a job claimable. Must not
 * block. Set and cleared by the thread that opened st; NULL stops the watch
 * (no call after this returns). fn and ctx borrowed until cleared or closed. */
void store_set_job_listener(struct store *st, void (*fn)(void *ctx), void *ctx);

/* The dedupe set of a backend that keeps one (SQLite): keys held, its bound,
 * and keys dropped before their window ended because it was full. Any thread.
 * Returns 0, or -1 when the backend has none (the fields are then 0). */
struct store_dedupe_stats {
    uint64_t keys, max_keys, evicted;
};
int store_dedupe_stats(struct store *st, struct store_dedupe_stats *out);

/* Event counts by status, for tests and the CLI: returns the number of stored
 * events of source (NULL: all), or -1. */
int64_t store_count_events(struct store *st, const char *source);

/* ---- several instances on one database (docs/contract.md section 8) ----
 * A backend that several processes may serve at once (PostgreSQL) shares a
 * rate budget, a maintenance leader and a table of instances through these;
 * on one that serves one process (SQLite) they report "not shared" and cost
 * nothing. Any thread; each may block for one round trip to the database. */

/* True when several `serve` processes may share this store (PostgreSQL). */
bool store_shared(struct store *st);

/* A slot of a shared rate budget held by one request. */
struct store_rate_slot {
    int slot;     /* 1..n; 0: none */
    double until; /* the slot's time while the request is in flight */
};

/* Takes one slot of the budget named key: at most n requests reach DIDWW in
 * any window of window_s seconds, counted over every process on the store, by
 * the database's clock. A taken slot counts as used until hold_s from now (the
 * request's latest arrival), or until store_rate_done says it was answered.
 * Returns 0 when taken (*slot filled: send now), 1 when not with the seconds
 * to wait before asking again in *wait_s, -1 on a store error (err set;
 * *wait_s a short pause) or when the store is not shared. */
int store_rate_take(struct store *st, const char *key, int n, double window_s, double hold_s,
                    struct store_rate_slot *slot, double *wait_s, char *err, size_t err_len);

/* The request of slot (from store_rate_take of key) was answered, or failed:
 * the slot counts from now. Returns 0, or -1 with err set (the slot then
 * counts until its hold ends). */
int store_rate_done(struct store *st, const char *key, const struct store_rate_slot *slot,
                    char *err, size_t err_len);

/* True while this process holds the store's maintenance lease (the JSONL
 * mirror and retention run only there; a process that dies loses it to
 * another). Always true on a store that is not shared. Refreshed by the
 * store's maintenance thread; reading it never blocks. */
bool store_is_leader(struct store *st);

/* One instance as the instances table shows it. Strings borrowed. */
struct store_instance {
    const char *id;
    double started_at;        /* Unix seconds */
    double heartbeat_age_s;   /* scans: seconds since its last beat, by the database's clock */
    const char *rule_version; /* NULL: no rules */
    bool leader;
    bool paused;
};

/* Records self's heartbeat (insert or update its row). Returns 0, or -1 with
 * err set (also when the store is not shared). */
int store_instance_beat(struct store *st, const struct store_instance *self, char *err,
                        size_t err_len);

/* Deletes instance id's row (a clean stop). Returns 0 or -1 with err set. */
int store_instance_forget(struct store *st, const char *id, char *err, size_t err_len);

/* Calls fn for every instance row, by id; the struct is borrowed for the call;
 * fn returning non-zero stops. Returns 0, or -1 with err set. */
typedef int (*store_instance_fn)(const struct store_instance *inst, void *ctx);
int store_instances_scan(struct store *st, store_instance_fn fn, void *ctx, char *err,
                         size_t err_len);

/* ---- the audit chain's verification (store_verify.c) ---- */

/* The outcome of walking the audit chain. */
enum store_verify_result {
    STORE_VERIFY_INTACT = 0,       /* every record from the checkpoint (or genesis) checks */
    STORE_VERIFY_BROKEN = 1,       /* at broken_seq: a record edited, reordered or deleted */
    STORE_VERIFY_TAIL_MISSING = 2, /* nothing after the retention checkpoint: from missing_from */
};

struct store_audit_verdict {
    enum store_verify_result result;
    int64_t records;        /* records checked */
    bool pruned;            /* the walk started at a retention checkpoint */
    int64_t pruned_through; /* pruned: the last seq retention removed */
    int64_t broken_seq;     /* STORE_VERIFY_BROKEN */
    int64_t missing_from;   /* STORE_VERIFY_TAIL_MISSING: the first seq expected */
    char why[300];          /* STORE_VERIFY_BROKEN: what is wrong (names no secret) */
};

/* Walks the audit chain as `hookline audit verify` does: from the newest
 * retention checkpoint (or genesis), every record's seq, hash and stored
 * columns. Fills *out (caller's) and returns 0, or -1 with err set when the
 * store could not be read. Read-only; any thread. */
int store_audit_verify(struct store *st, struct store_audit_verdict *out, char *err,
                       size_t err_len);

/* Stops accepting, commits everything already queued, joins the writer and
 * closes. NULL is a no-op. */
void store_close(struct store *st);

/* The schema version this build writes to SQLite files (for tests and
 * `hookline version`). */
int store_sqlite_schema_version(void);

/* ---- store URLs: the one place a "scheme:" prefix is read ---- */

enum store_scheme {
    STORE_SCHEME_UNKNOWN = 0, /* no backend knows this URL */
    STORE_SCHEME_SQLITE,      /* "sqlite:PATH" */
    STORE_SCHEME_POSTGRESQL,  /* "postgresql://..." or "postgres://..." */
};

/* The scheme of url, and in *rest (when not NULL; borrowed from url) what the
 * backend is given: the PATH of "sqlite:PATH", the whole URL for PostgreSQL.
 * *rest is url itself for STORE_SCHEME_UNKNOWN. Any thread. */
enum store_scheme store_url_scheme(const char *url, const char **rest);

/* Writes into out[len] the URL of scheme with rest (a SQLite path, a
 * PostgreSQL URL), the inverse of store_url_scheme. Returns 0, or -1 when
 * scheme is unknown or the URL does not fit (out is then empty). */
int store_url_make(enum store_scheme scheme, const char *rest, char *out, size_t len);

/* The schema version this build writes with the backend of scheme (`hookline
 * version` names each), or -1 when no backend of this build serves it. */
int store_build_schema_version(enum store_scheme scheme);

/* Checks url without opening it: 0, or -1 with err[err_len] saying what
 * follows "store.url " in a message (a PostgreSQL URI that holds a password is
 * refused; the message never repeats it). Any thread. */
int store_url_check(const char *url, char *err, size_t err_len);

/* Connects to the store at opts->url (with opts->password) without migrating
 * and reports the schema version the database holds in *version (0: none yet)
 * and this build's in *build. Returns 1 when done, 0 when the backend has no
 * such report (SQLite), or -1 with err set (cannot connect). */
int store_schema_info(const struct store_options *opts, int *version, int *build, char *err,
                      size_t err_len);

#endif
