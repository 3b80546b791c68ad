/*
 * pg_int.h: private to src/store/pg/. The PostgreSQL backend's state (struct
 * pg_backend), the small libpq helpers its files share (parameter lists, one
 * statement run with its error turned into a message) and the functions one
 * file of the backend calls in another. Threads: the writer connection belongs
 * to the store's writer thread alone, the reader connection is used under
 * rlock from any thread. Nothing outside this folder includes it; store.c knows
 * the backend only as store_pg_backend.
 */
#ifndef HOOKLINE_PG_INT_H
#define HOOKLINE_PG_INT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "store/store_int.h"

/* The key of the transaction-level advisory lock every writer (serve, a CLI
 * command, another instance) holds from reading the audit chain's tip to its
 * commit, so the chain stays one line across processes. */
#define PG_CHAIN_LOCK_KEY 7201560101
/* The key of the session-level advisory lock that serialises migrations. */
#define PG_MIGRATE_LOCK_KEY 7201560100
/* The channel every transaction that made a job claimable notifies on commit
 * (new jobs, a retry due now, a release, a re-plan); pg_listen.c listens. */
#define PG_JOBS_CHANNEL "hookline_jobs"

/* Parameters of one statement: at most PG_MAX_PARAMS, texts borrowed unless
 * copied into buf (numbers). */
#define PG_MAX_PARAMS 24
struct pg_params {
    const char *v[PG_MAX_PARAMS];
    int len[PG_MAX_PARAMS];
    int fmt[PG_MAX_PARAMS]; /* 1: binary (bytea) */
    char buf[PG_MAX_PARAMS][32];
    int n;
};

/* A lost connection is tried again after a delay that doubles from
 * PG_RECONNECT_MIN_S up to PG_RECONNECT_MAX_S; meanwhile every operation on it
 * fails at once. */
#define PG_RECONNECT_MIN_S 0.2
#define PG_RECONNECT_MAX_S 5.0

/* One connection and its reconnect state. */
struct pg_conn {
    PGconn *c;        /* NULL: not connected */
    double retry_at;  /* monotonic seconds: no attempt before */
    double backoff_s; /* the next delay */
    char why[160];    /* why the last attempt or statement failed; no secrets */
    bool prepared;    /* the writer's named statements exist on c */
};

/* An audit record sealed in the open transaction and not yet sent: the writer
 * sends them in one multi-row INSERT (pg_audit_flush). Strings owned. */
struct pg_audit_row {
    int64_t seq;
    int64_t job_id;
    bool has_job;
    char *time, *kind, *source, *event_id, *did, *number, *text;
};

struct pg_backend {
    struct store_backend base;
    char *url;      /* the libpq URI (holds no password) */
    char *password; /* NULL: libpq's own (PGPASSFILE, ~/.pgpass); cleansed at close */
    bool read_only;
    struct pg_conn w; /* writer thread only */
    struct pg_conn r; /* under rlock */
    pthread_mutex_t rlock;

    /* The audit chain, writer thread only, valid while chain_locked (the
     * advisory lock is held in the open transaction). */
    bool chain_locked;
    int64_t next_seq;
    char tip[AUDIT_HASH_HEX_LEN + 1];
    struct pg_audit_row *rows;
    size_t nrows, rows_cap;

    /* Writer thread only: the open transaction made a job claimable, so its
     * COMMIT goes with NOTIFY PG_JOBS_CHANNEL. */
    bool notify_jobs;
    /* The writer connection's server process id (0: none): its notifications
     * are skipped by the listener, store.c already woke delivery for them. */
    atomic_int writer_pid;

    /* The watch (pg_listen.c): the thread pg-listen and its own connection,
     * started and stopped by the thread that opens and closes the store. */
    struct pg_conn l; /* the pg-listen thread only */
    pthread_t listener;
    bool have_listener;
    atomic_bool listen_stop;
    int listen_pipe[2]; /* a byte in [1] wakes the thread to stop */
    void (*listen_fn)(void *ctx);
    void *listen_ctx;

    /* What several instances share (pg_shared.c): its own connection, used
     * under slock from any thread, which holds the maintenance lease. */
    struct pg_conn s;
    pthread_mutex_t slock;
    char *instance; /* serve's instance id, named by claims; NULL: none (CLI) */
};

/* ---- pg_backend.c: helpers, connections, the batch engine ---- */

void pg_params_text(struct pg_params *p, const char *s); /* s borrowed; NULL: SQL NULL */
void pg_params_int(struct pg_params *p, int64_t v);
void pg_params_double(struct pg_params *p, double v);
void pg_params_bytes(struct pg_params *p, const void *data, size_t len); /* borrowed */

/* Runs sql with p (may be NULL) on c. Returns the result (caller PQclears) when
 * its status is want, else NULL with err set to "what: PostgreSQL's reason". */
PGresult *pg_run(PGconn *c, const char *sql, const struct pg_params *p, ExecStatusType want,
                 const char *what, char *err, size_t err_len);
/* pg_run for a statement without rows; *changed (may be NULL) gets the row count. */
int pg_cmd(PGconn *c, const char *sql, const struct pg_params *p, int64_t *changed,
           const char *what, char *err, size_t err_len);
/* Runs a query and calls fn with each row as it arrives (libpq's single-row
 * mode: a scan of millions of rows holds one at a time), the row being row 0
 * of the result, borrowed for the call. fn returns 0 to go on, 1 to stop, -1
 * to stop and fail (fn set err). Returns 0, or -1 with err set. */
typedef int (*pg_row_fn)(const PGresult *row, void *ctx);
int pg_stream(PGconn *c, const char *sql, const struct pg_params *p, pg_row_fn fn, void *ctx,
              const char *what, char *err, size_t err_len);
/* Column values of a result; pg_get_str is NULL for SQL NULL. */
const char *pg_get_str(const PGresult *r, int row, int col);
int64_t pg_get_int(const PGresult *r, int row, int col);
double pg_get_double(const PGresult *r, int row, int col);
char *pg_get_dup(const PGresult *r, int row, int col); /* new string or NULL */

double pg_mono_now(void);

/* pc's connection, (re)connected when the backoff allows; NULL with err set
 * when PostgreSQL cannot be reached. The thread that owns pc only. */
PGconn *pg_conn_get(struct pg_backend *be, struct pg_conn *pc, char *err, size_t err_len);
/* Drops pc's connection and waits the shortest backoff before the next
 * attempt (a lost connection, or one that failed a statement it needs). */
void pg_conn_drop(struct pg_conn *pc, const char *why);

/* The reader connection, connected when needed; call under rlock. NULL with
 * why set when PostgreSQL cannot be reached (no attempt before the backoff). */
PGconn *pg_reader(struct pg_backend *be, char *err, size_t err_len);
/* After a failed statement on the reader: drops it when the connection is gone. */
void pg_reader_check(struct pg_backend *be);

/* ---- pg_listen.c: the watch (store_backend_ops.watch_jobs) ---- */

int pg_watch_jobs(struct store_backend *base, void (*fn)(void *ctx), void *ctx, char *err,
                  size_t err_len);

/* ---- pg_shared.c: the state several instances share (store_backend_ops'
 * optional shared callbacks) ---- */

/* The key of the session-level advisory lock the maintenance leader holds. */
#define PG_LEADER_LOCK_KEY 7201560102LL

void pg_shared_init(struct pg_backend *be);
void pg_shared_free(struct pg_backend *be);
int pg_rate_take(struct store_backend *base, const char *key, int n, double window_s, double hold_s,
                 struct store_rate_slot *slot, double *wait_s, char *err, size_t err_len);
int pg_rate_done(struct store_backend *base, const char *key, const struct store_rate_slot *slot,
                 char *err, size_t err_len);
int pg_leader_try(struct store_backend *base, bool *leader, char *err, size_t err_len);
int pg_instance_beat(struct store_backend *base, const struct store_instance *self, char *err,
                     size_t err_len);
int pg_instance_forget(struct store_backend *base, const char *id, char *err, size_t err_len);
int pg_instances_scan(struct store_backend *base, store_instance_fn fn, void *ctx, char *err,
                      size_t err_len);

/* ---- pg_schema.c: migrations, on the opening thread ---- */

int pg_migrate(PGconn *c, char *err, size_t err_len);
/* The schema version the database holds (0: none), or -1 with err set. */
int pg_schema_version(PGconn *c, char *err, size_t err_len);
int pg_build_schema_version(void);

/* ---- pg_audit.c: the chain and appends on the writer inside its
 * transaction; the scan on the reader ---- */

int pg_audit_flush(struct pg_backend *be, char *err, size_t err_len);
void pg_audit_discard(struct pg_backend *be);
/* The audit primitives of store_int.h. */
int pg_audit_tip(struct store_backend *base, int64_t *next_seq, char tip[AUDIT_HASH_HEX_LEN + 1],
                 char *err, size_t err_len);
int pg_audit_insert_row(struct store_backend *base, const json_t *rec, int64_t seq, char *text,
                        const char *hash, char *err, size_t err_len);
int pg_audit_prune_point(struct store_backend *base, const char *cutoff, int64_t *through,
                         char hash[AUDIT_HASH_HEX_LEN + 1], char *err, size_t err_len);
int pg_audit_delete_through(struct store_backend *base, int64_t through, int64_t *deleted,
                            char *err, size_t err_len);
int pg_audit_scan(struct store_backend *base, const struct store_audit_filter *f, store_audit_fn fn,
                  void *ctx, char *err, size_t err_len);

/* ---- pg_events.c ---- */

/* Inserts the events of ops[0..n) (all STORE_OP_EVENT) in order, setting each
 * one's result and row. Returns 0, or -1 with err set and *bad the index of the
 * op that failed (its error set; n when the connection or the pipeline failed). */
#define PG_EVENTS_PER_PIPELINE 256
int pg_insert_events(struct pg_backend *be, struct store_op **ops, size_t n, size_t *bad, char *err,
                     size_t err_len);
int64_t pg_count_events(struct store_backend *base, const char *source);
int pg_events_scan(struct store_backend *base, const struct store_event_filter *f,
                   store_event_fn fn, void *ctx, char *err, size_t err_len);

/* ---- pg_jobs.c: the job, number, control and re-plan primitives of
 * store_int.h on the writer inside its transaction; queries on the reader ---- */

int pg_number_did(struct store_backend *base, const char *number, char *did, size_t did_len,
                  char *err, size_t err_len);
int pg_number_remember(struct store_backend *base, const char *number, const char *did, double at,
                       char *err, size_t err_len);
int pg_job_insert(struct store_backend *base, int64_t event_row, const char *source,
                  const char *event_id, double created_at, const struct store_job_spec *spec,
                  const char *did, const char *order_key, int64_t *id, char *err, size_t err_len);
int pg_job_heads(struct store_backend *base, double now, int max, struct store_job *heads, int *n,
                 char *err, size_t err_len);
int pg_jobs_pending_of_key(struct store_backend *base, const char *key, struct store_job **jobs,
                           size_t *n, char *err, size_t err_len);
int pg_job_take(struct store_backend *base, int64_t id, double lease_until, double now,
                struct store_job *out, char *err, size_t err_len);
int pg_job_set_state(struct store_backend *base, int64_t id, const char *state,
                     const char *only_from, double at, char *err, size_t err_len);
int pg_job_update(struct store_backend *base, const struct store_op_job *job, char *err,
                  size_t err_len);
int pg_jobs_rekey(struct store_backend *base, const char *from_key, const char *to_key,
                  const char *did, char *err, size_t err_len);
int pg_job_wait_behind(struct store_backend *base, int64_t id, const char *key, char *err,
                       size_t err_len);
int pg_event_replan(struct store_backend *base, int64_t row, const char *status,
                    const char *rule_version, size_t njobs, char *err, size_t err_len);
int pg_control_set(struct store_backend *base, const char *key, const char *value, double at,
                   char *err, size_t err_len);
int pg_release_running(struct store_backend *base, const struct store_op_release *r,
                       int64_t *released, char *err, size_t err_len);
bool pg_jobs_unresolved_before(struct store_backend *base, int64_t job_id);
int pg_control_get(struct store_backend *base, const char *key, char *out, size_t len);
int64_t pg_jobs_depth(struct store_backend *base, const char *state, double now,
                      double *oldest_age_s);
int pg_jobs_scan(struct store_backend *base, const char *state, int64_t limit, store_job_fn fn,
                 void *ctx, char *err, size_t err_len);

#endif
