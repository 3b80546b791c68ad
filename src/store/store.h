/*
 * store: the durable state of hookline (events, jobs, audit records) behind one
 * interface, whatever the backend (src/store/sqlite/ today; the backend
 * interface itself is private, in store_int.h). Writes go
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
    const char *url;         /* "sqlite:PATH" (PATH used as given); see store_url_scheme */
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
    STORE_OP_EVENT = 1,  /* a new event, its jobs and audit records */
    STORE_OP_AUDIT,      /* audit records only */
    STORE_OP_REPLAN,     /* a stored rule_failed event planned again: new status, jobs, audit */
    STORE_OP_CLAIM,      /* claim due jobs for delivery (see claim_* members) */
    STORE_OP_JOB,        /* record a job's new state (see job_* members) */
    STORE_OP_CONTROL,    /* set a control value (delivery pause) */
    STORE_OP_PRUNE,      /* delete audit records older than prune_before, chain checkpoint */
    STORE_OP_RELEASE,    /* every running job back to pending (at start); count in pruned_count */
    STORE_OP_MAP_NUMBER, /* number -> did learnt: remember it, re-key that number's jobs */
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

enum store_outcome {
    STORE_PENDING = 0,
    STORE_STORED,
    STORE_DUPLICATE,
    STORE_FAILED,
    STORE_NOT_FOUND /* STORE_OP_JOB: no job has that id */
};

/* One write operation. The submitter owns the struct and everything it points
 * to until done() has been called (or store_submit_wait returned). */
struct store_op {
    enum store_op_kind kind;

    /* STORE_OP_EVENT */
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

    /* Audit records appended in the same transaction. For STORE_OP_EVENT they are
     * written only when the event is stored (a duplicate gets its own
     * event.duplicate record instead). Borrowed; the store adds seq/prev_hash/hash
     * to them while sealing. */
    json_t **audit;
    size_t naudit;

    /* STORE_OP_REPLAN: event_row names the event (source and event_id must be set
     * too, for the job rows); status/rule_version/jobs/audit as for an event. The
     * outcome is STORE_DUPLICATE when the event is no longer rule_failed (another
     * reprocess got there first). */

    /* STORE_OP_CLAIM: claims up to claim_max due jobs whose order key has no
     * earlier unfinished job and no running one, leasing them until
     * claim_now + claim_lease_s; first supersedes earlier pending jobs that a
     * later pending job of the same key fully replaces (audited job.superseded).
     * The claimed jobs are returned in claim_jobs (caller frees each with
     * store_job_clear and the array with free), their count in claim_n. */
    double claim_now;
    double claim_lease_s;
    int claim_max;
    store_supersedes_fn claim_supersedes;
    struct store_job *claim_jobs;
    int claim_n;

    /* STORE_OP_JOB: job_id moves to job_state ("done", "dead", "pending" for a
     * retry at job_next_at, "cancelled", "superseded"); job_attempts and
     * job_last_status/job_last_error are recorded; job_did (may be NULL) stores a
     * resolved DID id. job_only_from (may be NULL) restricts the change to jobs
     * currently in that state (e.g. cancel only "pending"): outcome
     * STORE_DUPLICATE when the job was not in it, STORE_NOT_FOUND when there is
     * no such job. The audit records are appended
     * in the same transaction. */
    int64_t job_id;
    const char *job_state;
    const char *job_only_from;
    double job_next_at;
    int job_attempts;
    int job_last_status;
    const char *job_last_error;
    const char *job_did;

    /* STORE_OP_PRUNE: deletes audit records whose time is before prune_before
     * (Unix seconds) and appends an audit.pruned record {through_seq,
     * continue_hash} from which `audit verify` continues; pruned_count says how
     * many were deleted. The newest record is never pruned. */
    double prune_before;
    int64_t pruned_count;

    /* STORE_OP_MAP_NUMBER: map_number (digits) is DID map_did. Stores the mapping
     * and moves every unfinished job keyed "number:<digits>" to "did:<id>" so one
     * DID has one FIFO whichever way rules name it. When job_id is set and an
     * earlier unfinished job now shares its key, job_id goes back to pending and
     * the outcome is STORE_DUPLICATE (it must wait its turn). */
    const char *map_number;
    const char *map_did;

    /* STORE_OP_CONTROL: control_key = control_value (NULL deletes). */
    const char *control_key;
    const char *control_value;

    /* Result, valid when done() runs. */
    enum store_outcome outcome;
    int64_t event_row; /* row id of the stored (or original) event */
    char error[160];   /* when STORE_FAILED: why, no secrets */

    /* Completion: called once on the writer thread; must not block or submit. */
    void (*done)(struct store_op *op, void *ctx);
    void *done_ctx;

    /* Internal to store.c. */
    struct store_op *next_;
    pthread_mutex_t *wait_lock_;
    pthread_cond_t *wait_cond_;
    bool finished_;
};

/* Opens (and migrates, unless read_only) the store at opts->url. Returns 0 and a
 * new handle in *out (caller closes with store_close), or -1 with a one-line
 * reason in err[err_len]. */
int store_open(const struct store_options *opts, struct store **out, char *err, size_t err_len);

/* Queues op for the next group commit. Returns 0 (op->done will be called
 * exactly once, on the writer thread), or -1 when the queue is full or the store
 * is closing (op->done is not called; op->error says why). */
int store_submit(struct store *st, struct store_op *op);

/* Submits op and blocks until it is committed or failed. Returns 0 when the
 * outcome is STORE_STORED, STORE_DUPLICATE or STORE_NOT_FOUND, else -1
 * (op->error says why). */
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
};

struct store_event_filter {
    const char *status;   /* NULL: any */
    const char *source;   /* NULL: any */
    const char *event_id; /* NULL: any */
    int64_t limit;        /* 0: no limit; oldest first */
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
 * kind with detail.by = by, and waits for the commit. Returns a
 * store_transition value, or -1 on a store error (err set). */
enum store_transition {
    STORE_TRANSITION_MOVED = 0,
    STORE_TRANSITION_WRONG_STATE = 1, /* the job is not in from_state: left alone */
    STORE_TRANSITION_NO_JOB = 2,      /* no job has that id */
};
int store_job_transition(struct store *st, int64_t id, const char *state, const char *from_state,
                         const char *kind, const char *by, char *err, size_t err_len);

/* Called by the writer (or syncer) thread after a commit that queued new jobs
 * became durable, so delivery can start at once. Must not block. */
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
    STORE_SCHEME_POSTGRESQL,  /* "postgresql://..." or "postgres://..." (no backend yet) */
};

/* The scheme of url, and in *rest (when not NULL; borrowed from url) what the
 * backend is given: the PATH of "sqlite:PATH", the whole URL for PostgreSQL.
 * *rest is url itself for STORE_SCHEME_UNKNOWN. Any thread. */
enum store_scheme store_url_scheme(const char *url, const char **rest);

/* Writes into out[len] the URL of scheme with rest (a SQLite path, a
 * PostgreSQL URL), the inverse of store_url_scheme. Returns 0, or -1 when
 * scheme is unknown or the URL does not fit (out is then empty). */
int store_url_make(enum store_scheme scheme, const char *rest, char *out, size_t len);

#endif
