/*
 * store: the backend-independent half of the store. It owns the write queue,
 * the single writer thread that turns every operation queued while the last
 * commit was running into one transaction (group commit), and, for backends
 * whose commit does not fsync by itself, the syncer thread that makes committed
 * batches durable with one fsync while the writer already builds the next one.
 * Outcomes are reported through the op's callback only once durable. Locks:
 * st->lock (queue) and st->sync_lock (committed batches), never held together;
 * callbacks run with neither held. Reads are passed straight to the backend.
 * The backend is found by URL scheme here (store_backend_for_url) and reached
 * only through its const ops table (store_int.h); this file never sees a
 * backend's own state, and no backend sees struct store.
 */
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <unistd.h>

#include "audit.h"
#include "log.h"
#include "metrics.h"
#include "store/store_int.h"

struct store {
    struct store_backend *be;
    struct store_options opts;

    pthread_mutex_t lock;
    pthread_cond_t wake; /* writer waits for work */
    struct store_op *head, *tail;
    size_t pending;
    bool closing;
    bool have_writer;
    pthread_t writer;

    bool last_commit_ok;  /* under lock */
    char last_error[160]; /* under lock */

    /* Committed batches waiting for the syncer's fsync (backends with sync). */
    pthread_mutex_t sync_lock;
    pthread_cond_t sync_wake;
    pthread_cond_t sync_taken; /* writer waits for the syncer to take its list */
    struct store_batch *sync_head, *sync_tail;
    bool sync_stop;
    bool have_syncer;
    pthread_t syncer;

    void (*job_listener)(void *ctx); /* set before serving */
    void *job_listener_ctx;
    bool watching; /* the backend's watch_jobs calls job_listener (opening thread) */

    /* The maintenance thread: JSONL mirror and retention. */
    pthread_mutex_t mirror_lock;
    pthread_cond_t mirror_wake;
    bool mirror_due, mirror_stop;
    bool have_mirror; /* open and close only (the thread that owns st) */
    /* Read by the writer after each commit; set once the mirror thread runs with
     * a mirror file, cleared before it is joined. Atomic: the writer starts
     * before the mirror thread does. */
    atomic_bool mirror_wanted;
    pthread_t mirror;
    int mirror_fd;
    int64_t mirror_seq; /* maintenance thread only: last seq written to the mirror */
    char *jsonl_path;

    /* This process holds the maintenance lease (a shared backend; always true
     * otherwise). Written by the maintenance thread, read by any. */
    atomic_bool leader;
    double leader_checked; /* maintenance thread only: monotonic seconds */
};

struct store_batch {
    struct store_batch *next;
    double started;
    size_t n;
    struct store_op *ops[];
};

static void store_mirror_kick(struct store *st);

/* ---------- the backend registry: store URLs by scheme ---------- */

/* Every scheme a store URL may have, and the backend of this build serving it
 * (NULL: recognised, so config can say so, but not built yet). */
static const struct store_scheme_entry {
    const char *prefix;
    enum store_scheme scheme;
    bool rest_is_url; /* the backend is given the whole URL, prefix included */
    const struct store_backend_ops *ops;
} store_schemes[] = {
    {"sqlite:", STORE_SCHEME_SQLITE, false, &store_sqlite_backend},
    {"postgresql://", STORE_SCHEME_POSTGRESQL, true, &store_pg_backend},
    {"postgres://", STORE_SCHEME_POSTGRESQL, true, &store_pg_backend},
};

static const struct store_scheme_entry *store_scheme_find(const char *url)
{
    for (size_t i = 0; url && i < sizeof store_schemes / sizeof store_schemes[0]; i++)
        if (strncmp(url, store_schemes[i].prefix, strlen(store_schemes[i].prefix)) == 0)
            return &store_schemes[i];
    return NULL;
}

enum store_scheme store_url_scheme(const char *url, const char **rest)
{
    const struct store_scheme_entry *e = store_scheme_find(url);
    if (rest)
        *rest = e && !e->rest_is_url ? url + strlen(e->prefix) : url;
    return e ? e->scheme : STORE_SCHEME_UNKNOWN;
}

int store_url_make(enum store_scheme scheme, const char *rest, char *out, size_t len)
{
    for (size_t i = 0; i < sizeof store_schemes / sizeof store_schemes[0]; i++) {
        const struct store_scheme_entry *e = &store_schemes[i];
        if (e->scheme != scheme)
            continue;
        int n = snprintf(out, len, "%s%s", e->rest_is_url ? "" : e->prefix, rest ? rest : "");
        if (n >= 0 && (size_t)n < len)
            return 0;
        break;
    }
    if (len > 0)
        out[0] = '\0';
    return -1;
}

const struct store_backend_ops *store_backend_for_url(const char *url, const char **rest)
{
    const struct store_scheme_entry *e = store_scheme_find(url);
    if (!e || !e->ops)
        return NULL;
    (void)store_url_scheme(url, rest);
    return e->ops;
}

int store_build_schema_version(enum store_scheme scheme)
{
    for (size_t i = 0; i < sizeof store_schemes / sizeof store_schemes[0]; i++) {
        const struct store_scheme_entry *e = &store_schemes[i];
        if (e->scheme == scheme && e->ops && e->ops->build_schema_version)
            return e->ops->build_schema_version();
    }
    return -1;
}

int store_url_check(const char *url, char *err, size_t err_len)
{
    const char *rest = NULL;
    const struct store_backend_ops *ops = store_backend_for_url(url, &rest);
    if (!ops) {
        snprintf(err, err_len, "must be sqlite:PATH or postgresql://USER@HOST:PORT/DATABASE");
        return -1;
    }
    return ops->check_url ? ops->check_url(rest, err, err_len) : 0;
}

int store_schema_info(const struct store_options *opts, int *version, int *build, char *err,
                      size_t err_len)
{
    const char *rest = NULL;
    const struct store_backend_ops *ops = store_backend_for_url(opts->url, &rest);
    if (!ops) {
        snprintf(err, err_len, "unsupported store URL scheme");
        return -1;
    }
    if (!ops->schema_info)
        return 0;
    return ops->schema_info(rest, opts, version, build, err, err_len) < 0 ? -1 : 1;
}

static double store_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void store_finish(struct store_op *op)
{
    if (op->wait_lock_) {
        pthread_mutex_lock(op->wait_lock_);
        op->finished_ = true;
        pthread_cond_signal(op->wait_cond_);
        pthread_mutex_unlock(op->wait_lock_);
    } else if (op->done) {
        op->done(op, op->done_ctx);
    }
}

static void store_note_commit(struct store *st, int rc, const char *err)
{
    pthread_mutex_lock(&st->lock);
    if (rc == 0) {
        st->last_commit_ok = true;
    } else {
        if (st->last_commit_ok)
            log_write(LOG_ERROR, "store: commit failed", (const char *[]){"error", err, NULL});
        st->last_commit_ok = false;
        snprintf(st->last_error, sizeof st->last_error, "%s", err);
    }
    pthread_mutex_unlock(&st->lock);
}

/* ---------- results: the one place that knows where each kind keeps its own ---------- */

/* Sets op's result to its kind's *_FAILED (failed) or *_PENDING. */
static void store_op_set(struct store_op *op, bool failed)
{
    switch (op->kind) {
    case STORE_OP_EVENT:
        op->u.event.result = failed ? STORE_EVENT_FAILED : STORE_EVENT_PENDING;
        break;
    case STORE_OP_REPLAN:
        op->u.replan.result = failed ? STORE_REPLAN_FAILED : STORE_REPLAN_PENDING;
        break;
    case STORE_OP_CLAIM:
        op->u.claim.result = failed ? STORE_CLAIM_FAILED : STORE_CLAIM_PENDING;
        break;
    case STORE_OP_JOB:
        op->u.job.result = failed ? STORE_JOB_FAILED : STORE_JOB_PENDING;
        break;
    case STORE_OP_MAP_NUMBER:
        op->u.map_number.result = failed ? STORE_MAP_FAILED : STORE_MAP_PENDING;
        break;
    case STORE_OP_CONTROL:
        op->u.control.result = failed ? STORE_WRITE_FAILED : STORE_WRITE_PENDING;
        break;
    case STORE_OP_PRUNE:
        op->u.prune.result = failed ? STORE_WRITE_FAILED : STORE_WRITE_PENDING;
        break;
    case STORE_OP_RELEASE:
        op->u.release.result = failed ? STORE_WRITE_FAILED : STORE_WRITE_PENDING;
        break;
    case STORE_OP_AUDIT:
        op->u.audit.result = failed ? STORE_WRITE_FAILED : STORE_WRITE_PENDING;
        break;
    }
}

void store_op_set_failed(struct store_op *op)
{
    store_op_set(op, true);
}

void store_op_reset(struct store_op *op)
{
    store_op_set(op, false);
}

bool store_op_failed(const struct store_op *op)
{
    switch (op->kind) {
    case STORE_OP_EVENT:
        return op->u.event.result == STORE_EVENT_FAILED;
    case STORE_OP_REPLAN:
        return op->u.replan.result == STORE_REPLAN_FAILED;
    case STORE_OP_CLAIM:
        return op->u.claim.result == STORE_CLAIM_FAILED;
    case STORE_OP_JOB:
        return op->u.job.result == STORE_JOB_FAILED;
    case STORE_OP_MAP_NUMBER:
        return op->u.map_number.result == STORE_MAP_FAILED;
    case STORE_OP_CONTROL:
        return op->u.control.result == STORE_WRITE_FAILED;
    case STORE_OP_PRUNE:
        return op->u.prune.result == STORE_WRITE_FAILED;
    case STORE_OP_RELEASE:
        return op->u.release.result == STORE_WRITE_FAILED;
    case STORE_OP_AUDIT:
        return op->u.audit.result == STORE_WRITE_FAILED;
    }
    return true; /* an unknown kind is never applied */
}

/* True when op stored new jobs (delivery is woken once they are durable). */
static bool store_op_queued_jobs(const struct store_op *op)
{
    if (op->kind == STORE_OP_EVENT)
        return op->u.event.result == STORE_EVENT_STORED && op->u.event.njobs > 0;
    if (op->kind == STORE_OP_REPLAN)
        return op->u.replan.result == STORE_REPLAN_REPLANNED && op->u.replan.njobs > 0;
    return false;
}

/* Finishes every op of b: as the backend decided when rc == 0, failed with err
 * otherwise. */
static void store_finish_batch(struct store *st, struct store_batch *b, int rc, const char *err)
{
    if (rc == 0)
        store_mirror_kick(st);
    bool new_jobs = false;
    for (size_t i = 0; i < b->n; i++)
        if (rc == 0 && store_op_queued_jobs(b->ops[i]))
            new_jobs = true;
    if (new_jobs && st->job_listener)
        st->job_listener(st->job_listener_ctx);
    for (size_t i = 0; i < b->n; i++) {
        struct store_op *op = b->ops[i];
        if (rc != 0) {
            store_op_set_failed(op);
            snprintf(op->error, sizeof op->error, "store unavailable: %s", err);
        }
        store_finish(op);
    }
}

/* ---------- JSONL mirror and retention (the maintenance thread) ---------- */

#define STORE_MIRROR_POLL_MS 1000
/* Appends (each with its fdatasync) are at least this far apart: under load one
 * append carries the records of many commits instead of one each. */
#define STORE_MIRROR_MIN_GAP_MS 50
#define STORE_PRUNE_EVERY_S 3600.0

static void store_mirror_kick(struct store *st)
{
    if (!atomic_load_explicit(&st->mirror_wanted, memory_order_acquire))
        return; /* no mirror file: retention alone runs on its timer */
    pthread_mutex_lock(&st->mirror_lock);
    st->mirror_due = true;
    pthread_cond_signal(&st->mirror_wake);
    pthread_mutex_unlock(&st->mirror_lock);
}

/* The seq of the last complete line of the mirror; a torn last line (a crash
 * mid-write) is cut off so the file stays valid JSON Lines. */
static int64_t store_mirror_last_seq(int fd)
{
    char buf[65536];
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0)
        return 0;
    off_t start = size > (off_t)sizeof buf - 1 ? size - (off_t)sizeof buf + 1 : 0;
    ssize_t n = pread(fd, buf, (size_t)(size - start), start);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    ssize_t end = n;
    while (end > 0 && buf[end - 1] != '\n')
        end--;
    if (end < n && ftruncate(fd, start + end) < 0)
        return 0;
    if (end == 0)
        return 0;
    buf[end - 1] = '\0';
    char *line = strrchr(buf, '\n');
    json_t *r = json_loads(line ? line + 1 : buf, 0, NULL);
    int64_t seq = json_integer_value(json_object_get(r, "seq"));
    json_decref(r);
    return seq;
}

struct store_mirror_buf {
    char *p;
    size_t len, cap;
    int64_t last;
    bool failed;
};

static int store_mirror_collect(const char *text, int64_t seq, void *ctx)
{
    struct store_mirror_buf *b = ctx;
    size_t n = strlen(text);
    if (b->len + n + 1 > b->cap) {
        size_t ncap = (b->cap ? b->cap * 2 : 65536);
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->failed = true;
            return 1;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, text, n);
    b->p[b->len + n] = '\n';
    b->len += n + 1;
    b->last = seq;
    return 0;
}

/* Appends every record after mirror_seq, in seq order, then fdatasync. */
static void store_mirror_catch_up(struct store *st)
{
    for (int round = 0; round < 100; round++) {
        struct store_mirror_buf b = {0};
        struct store_audit_filter f = {
            .after_seq = st->mirror_seq, .limit = 5000, .oldest_first = true};
        char err[200];
        if (store_audit_scan(st, &f, store_mirror_collect, &b, err, sizeof err) < 0 || b.failed) {
            free(b.p);
            return;
        }
        if (b.len == 0) {
            free(b.p);
            return;
        }
        size_t off = 0;
        while (off < b.len) {
            ssize_t w = write(st->mirror_fd, b.p + off, b.len - off);
            if (w <= 0) {
                log_write(LOG_ERROR, "audit mirror write failed",
                          (const char *[]){"path", st->jsonl_path, NULL});
                free(b.p);
                return;
            }
            off += (size_t)w;
        }
        (void)fdatasync(st->mirror_fd);
        st->mirror_seq = b.last;
        free(b.p);
    }
}

static void store_prune(struct store *st)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct store_op op = {
        .kind = STORE_OP_PRUNE,
        .u.prune = {.before = (double)ts.tv_sec - 86400.0 * st->opts.retention_days}};
    if (store_submit_wait(st, &op) < 0) {
        log_write(LOG_WARN, "audit retention run failed",
                  (const char *[]){"error", op.error, NULL});
        return;
    }
    if (op.u.prune.deleted > 0) {
        char n[32];
        snprintf(n, sizeof n, "%lld", (long long)op.u.prune.deleted);
        log_write(LOG_INFO, "audit records pruned by retention",
                  (const char *[]){"count", n, NULL});
    }
}

/* On a shared backend, takes or keeps the maintenance lease (checked at most
 * once a second: the mirror thread wakes on every commit) and says whether
 * this process holds it. Maintenance thread only. */
#define STORE_LEADER_CHECK_S 1.0
static bool store_maintenance_lead(struct store *st)
{
    if (!st->be->ops->leader_try)
        return true;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    if (st->leader_checked > 0 && now - st->leader_checked < STORE_LEADER_CHECK_S)
        return atomic_load(&st->leader);
    st->leader_checked = now;
    bool lead = false;
    char err[200];
    if (st->be->ops->leader_try(st->be, &lead, err, sizeof err) < 0)
        lead = false;
    bool was = atomic_exchange(&st->leader, lead);
    if (lead && !was)
        log_write(LOG_INFO, "this instance runs the audit mirror and retention", NULL);
    else if (!lead && was)
        log_write(LOG_WARN, "maintenance lease lost: another instance takes over",
                  (const char *[]){"reason", err, NULL});
    return lead;
}

static void *store_mirror_main(void *arg)
{
    struct store *st = arg;
    pthread_setname_np(pthread_self(), "store-maint");
    double next_prune = 0;
    for (;;) {
        pthread_mutex_lock(&st->mirror_lock);
        if (!st->mirror_due && !st->mirror_stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += STORE_MIRROR_POLL_MS / 1000;
            pthread_cond_timedwait(&st->mirror_wake, &st->mirror_lock, &ts);
        }
        bool stop = st->mirror_stop;
        st->mirror_due = false;
        pthread_mutex_unlock(&st->mirror_lock);
        if (!store_maintenance_lead(st)) {
            if (stop)
                break;
            continue; /* another instance mirrors and prunes; its lease is watched */
        }
        if (st->opts.retention_days > 0 && store_now() >= next_prune && !stop) {
            store_prune(st);
            next_prune = store_now() + STORE_PRUNE_EVERY_S;
        }
        if (st->mirror_fd >= 0) {
            store_mirror_catch_up(st);
            if (!stop) {
                struct timespec gap = {0, STORE_MIRROR_MIN_GAP_MS * 1000000L};
                nanosleep(&gap, NULL);
            }
        }
        if (stop)
            break;
    }
    return NULL;
}

/* The syncer: one fsync makes every batch committed before it durable; only then
 * are their submitters told. Runs concurrently with the writer's next batch. */
static void *store_syncer_main(void *arg)
{
    struct store *st = arg;
    pthread_setname_np(pthread_self(), "store-syncer"); /* as top -H and perf show it */
    for (;;) {
        pthread_mutex_lock(&st->sync_lock);
        while (!st->sync_head && !st->sync_stop)
            pthread_cond_wait(&st->sync_wake, &st->sync_lock);
        struct store_batch *list = st->sync_head;
        st->sync_head = st->sync_tail = NULL;
        bool stop = st->sync_stop;
        pthread_cond_signal(&st->sync_taken);
        pthread_mutex_unlock(&st->sync_lock);
        if (!list && stop)
            break;
        char err[160] = "";
        int rc = st->be->ops->sync(st->be, err, sizeof err);
        if (rc != 0)
            store_note_commit(st, rc, err);
        double now = store_now();
        while (list) {
            struct store_batch *next = list->next;
            metrics_store_commit(list->n, now - list->started, rc == 0);
            store_finish_batch(st, list, rc, err);
            free(list);
            list = next;
        }
    }
    return NULL;
}

/* A group commit: the backend's attempts, each without the ops that failed
 * alone in the ones before (a constraint, bad input), so one bad webhook
 * never fails the others. Returns what store_apply_batch returned for the attempt
 * that committed (0 or STORE_BATCH_CLEAN), or -1 (every op then failed).
 * Writer thread. */
static int store_write_batch(struct store_backend *be, struct store_op **ops, size_t n, char *err,
                             size_t err_len)
{
    for (size_t i = 0; i < n; i++)
        store_op_reset(ops[i]);
    for (size_t attempt = 0; attempt <= n; attempt++) {
        size_t bad = 0;
        int rc = store_apply_batch(be, ops, n, &bad, err, err_len);
        if (rc != STORE_BATCH_OP_FAILED)
            return rc;
        store_op_set_failed(ops[bad]);
        for (size_t i = 0; i < n; i++)
            if (!store_op_failed(ops[i]))
                store_op_reset(ops[i]);
    }
    snprintf(err, err_len, "batch could not be applied");
    return -1;
}

static void *store_writer_main(void *arg)
{
    struct store *st = arg;
    pthread_setname_np(pthread_self(), "store-writer");
    size_t cap = (size_t)st->opts.batch_max;
    for (;;) {
        struct store_batch *b = malloc(sizeof *b + cap * sizeof b->ops[0]);
        if (!b) {
            log_error("store: out of memory for a write batch");
            abort(); /* the project's OOM policy: see README */
        }
        struct store_op **batch = b->ops;
        if (st->have_syncer) {
            pthread_mutex_lock(&st->sync_lock);
            while (st->sync_head)
                pthread_cond_wait(&st->sync_taken, &st->sync_lock);
            pthread_mutex_unlock(&st->sync_lock);
        }
        pthread_mutex_lock(&st->lock);
        while (!st->head && !st->closing)
            pthread_cond_wait(&st->wake, &st->lock);
        if (!st->head && st->closing) {
            pthread_mutex_unlock(&st->lock);
            free(b);
            break;
        }
        size_t n = 0;
        while (st->head && n < cap) {
            struct store_op *op = st->head;
            st->head = op->next_;
            op->next_ = NULL;
            batch[n++] = op;
        }
        if (!st->head)
            st->tail = NULL;
        st->pending -= n;
        pthread_mutex_unlock(&st->lock);

        char err[160] = "";
        b->n = n;
        b->next = NULL;
        b->started = store_now();
        int rc = store_write_batch(st->be, batch, n, err, sizeof err);
        bool clean = rc == STORE_BATCH_CLEAN;
        if (clean)
            rc = 0;
        store_note_commit(st, rc, err);
        if (clean) { /* nothing to make durable: answer at once */
            store_finish_batch(st, b, 0, err);
            free(b);
            continue;
        }
        if (rc == 0 && st->have_syncer) {
            pthread_mutex_lock(&st->sync_lock);
            if (st->sync_tail)
                st->sync_tail->next = b;
            else
                st->sync_head = b;
            st->sync_tail = b;
            pthread_cond_signal(&st->sync_wake);
            pthread_mutex_unlock(&st->sync_lock);
            continue;
        }
        metrics_store_commit(n, store_now() - b->started, rc == 0);
        store_finish_batch(st, b, rc, err);
        free(b);
    }
    return NULL;
}

int store_open(const struct store_options *opts, struct store **out, char *err, size_t err_len)
{
    struct store *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    st->opts = *opts;
    if (st->opts.batch_max <= 0)
        st->opts.batch_max = 512;
    if (st->opts.queue_max <= 0)
        st->opts.queue_max = 10000;
    st->last_commit_ok = true;
    st->mirror_fd = -1;
    atomic_init(&st->leader, false);
    st->opts.jsonl_path = NULL; /* kept in st->jsonl_path (owned) */
    pthread_mutex_init(&st->mirror_lock, NULL);
    pthread_cond_init(&st->mirror_wake, NULL);
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->wake, NULL);
    pthread_mutex_init(&st->sync_lock, NULL);
    pthread_cond_init(&st->sync_wake, NULL);
    pthread_cond_init(&st->sync_taken, NULL);

    const char *rest = NULL;
    const struct store_backend_ops *ops = store_backend_for_url(opts->url, &rest);
    if (!ops) {
        snprintf(err, err_len,
                 "unsupported store URL scheme (expected sqlite:PATH or postgresql://...)");
        goto fail;
    }
    if (ops->version != STORE_BACKEND_OPS_VERSION) {
        snprintf(err, err_len, "the %s store backend was built for interface version %d, not %d",
                 ops->name, ops->version, STORE_BACKEND_OPS_VERSION);
        goto fail;
    }
    st->be = ops->open(rest, &st->opts, err, err_len);
    if (!st->be)
        goto fail;
    if (!opts->read_only && st->be->ops->needs_sync_thread) {
        if (pthread_create(&st->syncer, NULL, store_syncer_main, st) != 0) {
            snprintf(err, err_len, "cannot start the store syncer thread");
            goto fail;
        }
        st->have_syncer = true;
    }
    if (!opts->read_only) {
        if (pthread_create(&st->writer, NULL, store_writer_main, st) != 0) {
            snprintf(err, err_len, "cannot start the store writer thread");
            goto fail;
        }
        st->have_writer = true;
    }
    if (!opts->read_only && opts->jsonl_path) {
        st->jsonl_path = strdup(opts->jsonl_path);
        st->mirror_fd = st->jsonl_path
                            ? open(st->jsonl_path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640)
                            : -1;
        if (st->mirror_fd < 0) {
            snprintf(err, err_len, "cannot open audit.jsonl_path %s: %s", opts->jsonl_path,
                     strerror(errno));
            goto fail_started;
        }
        st->mirror_seq = store_mirror_last_seq(st->mirror_fd);
    }
    if (!opts->read_only && (st->mirror_fd >= 0 || opts->retention_days > 0)) {
        if (pthread_create(&st->mirror, NULL, store_mirror_main, st) == 0) {
            st->have_mirror = true;
            atomic_store_explicit(&st->mirror_wanted, st->mirror_fd >= 0, memory_order_release);
        }
        store_mirror_kick(st);
    }
    *out = st;
    return 0;
fail_started:
    store_close(st);
    return -1;
fail:
    if (st->have_syncer) {
        pthread_mutex_lock(&st->sync_lock);
        st->sync_stop = true;
        pthread_cond_signal(&st->sync_wake);
        pthread_mutex_unlock(&st->sync_lock);
        pthread_join(st->syncer, NULL);
    }
    if (st->be)
        st->be->ops->close(st->be);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->wake);
    pthread_mutex_destroy(&st->sync_lock);
    pthread_cond_destroy(&st->sync_wake);
    pthread_cond_destroy(&st->sync_taken);
    free(st);
    return -1;
}

int store_submit(struct store *st, struct store_op *op)
{
    store_op_reset(op);
    op->error[0] = '\0';
    op->next_ = NULL;
    pthread_mutex_lock(&st->lock);
    if (!st->have_writer || st->closing) {
        pthread_mutex_unlock(&st->lock);
        snprintf(op->error, sizeof op->error, "store is shutting down");
        store_op_set_failed(op);
        return -1;
    }
    if (st->pending >= (size_t)st->opts.queue_max) {
        pthread_mutex_unlock(&st->lock);
        snprintf(op->error, sizeof op->error, "store write queue is full (%d operations)",
                 st->opts.queue_max);
        store_op_set_failed(op);
        return -1;
    }
    if (st->tail)
        st->tail->next_ = op;
    else
        st->head = op;
    st->tail = op;
    st->pending++;
    pthread_cond_signal(&st->wake);
    pthread_mutex_unlock(&st->lock);
    return 0;
}

int store_submit_wait(struct store *st, struct store_op *op)
{
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    op->wait_lock_ = &lock;
    op->wait_cond_ = &cond;
    op->finished_ = false;
    int rc = store_submit(st, op);
    if (rc == 0) {
        pthread_mutex_lock(&lock);
        while (!op->finished_)
            pthread_cond_wait(&cond, &lock);
        pthread_mutex_unlock(&lock);
    }
    op->wait_lock_ = NULL;
    op->wait_cond_ = NULL;
    pthread_mutex_destroy(&lock);
    pthread_cond_destroy(&cond);
    if (rc != 0 || store_op_failed(op))
        return -1;
    return 0;
}

bool store_ready(struct store *st, char *why, size_t why_len)
{
    pthread_mutex_lock(&st->lock);
    bool ok = st->last_commit_ok;
    if (!ok)
        snprintf(why, why_len, "last commit failed: %s", st->last_error);
    pthread_mutex_unlock(&st->lock);
    if (!ok)
        return false;
    return st->be->ops->ping(st->be, why, why_len);
}

size_t store_pending(struct store *st)
{
    pthread_mutex_lock(&st->lock);
    size_t n = st->pending;
    pthread_mutex_unlock(&st->lock);
    return n;
}

int store_audit_scan(struct store *st, const struct store_audit_filter *filter, store_audit_fn fn,
                     void *ctx, char *err, size_t err_len)
{
    return st->be->ops->audit_scan(st->be, filter, fn, ctx, err, err_len);
}

int store_events_scan(struct store *st, const struct store_event_filter *filter, store_event_fn fn,
                      void *ctx, char *err, size_t err_len)
{
    return st->be->ops->events_scan(st->be, filter, fn, ctx, err, err_len);
}

void store_job_clear(struct store_job *job)
{
    if (!job)
        return;
    free(job->source);
    free(job->event_id);
    free(job->action);
    free(job->method);
    free(job->path);
    free(job->body);
    free(job->did);
    free(job->number);
    free(job->order_key);
    memset(job, 0, sizeof *job);
}

int store_control_get(struct store *st, const char *key, char *out, size_t len)
{
    return st->be->ops->control_get(st->be, key, out, len);
}

int64_t store_jobs_depth(struct store *st, const char *state, double now, double *oldest_age_s)
{
    return st->be->ops->jobs_depth(st->be, state, now, oldest_age_s);
}

int store_jobs_scan(struct store *st, const char *state, int64_t limit, store_job_fn fn, void *ctx,
                    char *err, size_t err_len)
{
    return st->be->ops->jobs_scan(st->be, state, limit, fn, ctx, err, err_len);
}

bool store_jobs_unresolved_before(struct store *st, int64_t job_id)
{
    return st->be->ops->jobs_unresolved_before(st->be, job_id);
}

int store_job_transition(struct store *st, int64_t id, const char *state, const char *from_state,
                         const char *kind, const char *by, char *err, size_t err_len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double now = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    json_t *rec = audit_record_new(kind, NULL, NULL);
    if (!rec) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    json_object_set_new(rec, "job_id", json_integer(id));
    audit_detail_set_str(rec, "by", by);
    audit_detail_set_str(rec, "state", state);
    struct store_op op = {.kind = STORE_OP_JOB,
                          .u.job = {.id = id,
                                    .state = state,
                                    .only_from = from_state,
                                    .next_at = now,
                                    .attempts = 0,
                                    .at = now},
                          .audit = &rec,
                          .naudit = 1};
    int rc = store_submit_wait(st, &op);
    json_decref(rec);
    if (rc < 0) {
        snprintf(err, err_len, "%s", op.error);
        return -1;
    }
    if (op.u.job.result != STORE_JOB_MOVED)
        return (int)op.u.job.result; /* STORE_JOB_NOT_FOUND or STORE_JOB_WRONG_STATE */
    if (strcmp(state, "pending") == 0 && st->job_listener)
        st->job_listener(st->job_listener_ctx);
    return STORE_JOB_MOVED;
}

/* Stops the backend's watch: once it returns, the backend calls no listener. */
static void store_unwatch_jobs(struct store *st)
{
    if (!st->watching)
        return;
    (void)st->be->ops->watch_jobs(st->be, NULL, NULL, NULL, 0);
    st->watching = false;
}

void store_set_job_listener(struct store *st, void (*fn)(void *ctx), void *ctx)
{
    store_unwatch_jobs(st); /* first: it may be calling the old listener */
    st->job_listener = fn;
    st->job_listener_ctx = ctx;
    /* A serving store also hears of jobs other processes made claimable, where
     * the backend can tell (PostgreSQL's LISTEN/NOTIFY); else the poll finds them. */
    if (!fn || st->opts.read_only || !st->be->ops->watch_jobs)
        return;
    char err[200];
    if (st->be->ops->watch_jobs(st->be, fn, ctx, err, sizeof err) == 0)
        st->watching = true;
    else
        log_write(LOG_WARN, "store: not watching for jobs of other processes, polling",
                  (const char *[]){"error", err, NULL});
}

int store_dedupe_stats(struct store *st, struct store_dedupe_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!st->be->ops->has_dedupe_set)
        return -1;
    st->be->ops->dedupe_stats(st->be, out);
    return 0;
}

int64_t store_count_events(struct store *st, const char *source)
{
    return st->be->ops->count_events(st->be, source);
}

/* ---------- several instances on one database ---------- */

bool store_shared(struct store *st)
{
    return st->be->ops->rate_take != NULL;
}

int store_rate_take(struct store *st, const char *key, int n, double window_s, double hold_s,
                    struct store_rate_slot *slot, double *wait_s, char *err, size_t err_len)
{
    *wait_s = 0.1;
    slot->slot = 0;
    if (!st->be->ops->rate_take) {
        snprintf(err, err_len, "the %s store is not shared", st->be->ops->name);
        return -1;
    }
    return st->be->ops->rate_take(st->be, key, n, window_s, hold_s, slot, wait_s, err, err_len);
}

int store_rate_done(struct store *st, const char *key, const struct store_rate_slot *slot,
                    char *err, size_t err_len)
{
    if (!st->be->ops->rate_done) {
        snprintf(err, err_len, "the %s store is not shared", st->be->ops->name);
        return -1;
    }
    return st->be->ops->rate_done(st->be, key, slot, err, err_len);
}

bool store_is_leader(struct store *st)
{
    return !st->be->ops->leader_try || atomic_load(&st->leader);
}

int store_instance_beat(struct store *st, const struct store_instance *self, char *err,
                        size_t err_len)
{
    if (!st->be->ops->instance_beat) {
        snprintf(err, err_len, "the %s store is not shared", st->be->ops->name);
        return -1;
    }
    return st->be->ops->instance_beat(st->be, self, err, err_len);
}

int store_instance_forget(struct store *st, const char *id, char *err, size_t err_len)
{
    if (!st->be->ops->instance_forget) {
        snprintf(err, err_len, "the %s store is not shared", st->be->ops->name);
        return -1;
    }
    return st->be->ops->instance_forget(st->be, id, err, err_len);
}

int store_instances_scan(struct store *st, store_instance_fn fn, void *ctx, char *err,
                         size_t err_len)
{
    if (!st->be->ops->instances_scan) {
        snprintf(err, err_len, "the %s store is not shared", st->be->ops->name);
        return -1;
    }
    return st->be->ops->instances_scan(st->be, fn, ctx, err, err_len);
}

void store_close(struct store *st)
{
    if (!st)
        return;
    store_unwatch_jobs(st); /* before the backend closes: it calls the listener */
    if (st->have_mirror) {  /* it may submit; its last run mirrors the tail */
        atomic_store_explicit(&st->mirror_wanted, false, memory_order_release);
        pthread_mutex_lock(&st->mirror_lock);
        st->mirror_stop = true;
        pthread_cond_signal(&st->mirror_wake);
        pthread_mutex_unlock(&st->mirror_lock);
        pthread_join(st->mirror, NULL);
        st->have_mirror = false;
    }
    pthread_mutex_lock(&st->lock);
    st->closing = true;
    pthread_cond_signal(&st->wake);
    pthread_mutex_unlock(&st->lock);
    if (st->have_writer)
        pthread_join(st->writer, NULL);
    if (st->have_syncer) { /* after the writer: every committed batch gets its fsync */
        pthread_mutex_lock(&st->sync_lock);
        st->sync_stop = true;
        pthread_cond_signal(&st->sync_wake);
        pthread_mutex_unlock(&st->sync_lock);
        pthread_join(st->syncer, NULL);
    }
    /* The mirror's last run happened before the writer stopped; catch the final
     * batch up here, on the closing thread. */
    if (st->mirror_fd >= 0) {
        store_mirror_catch_up(st);
        close(st->mirror_fd);
    }
    free(st->jsonl_path);
    st->be->ops->close(st->be);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->wake);
    pthread_mutex_destroy(&st->sync_lock);
    pthread_cond_destroy(&st->sync_wake);
    pthread_cond_destroy(&st->sync_taken);
    pthread_mutex_destroy(&st->mirror_lock);
    pthread_cond_destroy(&st->mirror_wake);
    free(st);
}
