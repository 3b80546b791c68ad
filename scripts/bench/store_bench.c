/*
 * store_bench: events per second through hookline's store (src/store/store.c +
 * src/store/sqlite/: group commit, dedupe, audit chain, fsync'd WAL) against a
 * baseline in the same run: the same bytes per event (redacted headers, body,
 * sealed-size audit record) appended to a plain file by one group-commit thread
 * with one write() and one fdatasync() per batch, the floor for "durable before
 * answering". No HTTP: THREADS submitting threads each keep one event in flight,
 * like webhook connections. Rounds alternate baseline and store; medians and
 * the ratio store/baseline are printed.
 *
 * Usage: store_bench --dir DIR [--seconds S] [--threads N] [--rounds R]
 *   DIR must exist; each round works on fresh files inside it (removed after).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "log.h"
#include "store/store.h"

#define BENCH_MAX_THREADS 512
#define BENCH_MAX_ROUNDS 15

static const char bench_headers[] =
    "{\"accept\":\"*/*\",\"authorization\":\"[redacted]\",\"content-length\":\"112\","
    "\"content-type\":\"application/json\",\"host\":\"127.0.0.1:8080\"}";

static double bench_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double bench_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double bench_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* One event as a submitter builds it: id, body and its audit record. */
struct bench_event {
    char id[65];
    char body[200];
    int body_len;
    json_t *rec;
};

static void bench_event_make(struct bench_event *e, unsigned thread, unsigned long n)
{
    /* A distinct, random-looking id per event, as a body hash would be. */
    unsigned long long x = ((unsigned long long)thread << 40) ^ n ^ 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 64; i += 16) {
        x ^= x >> 31;
        x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 27;
        snprintf(e->id + i, 17, "%016llx", x);
    }
    e->body_len = snprintf(e->body, sizeof e->body,
                           "{\"type\":\"bench.event\",\"thread\":%u,\"seq\":%lu,"
                           "\"data\":{\"number\":\"4371234567\",\"trunk\":\"bench-trunk\"}}",
                           thread, n);
    e->rec = audit_record_new("event.received", "bench", e->id);
    audit_detail_set_str(e->rec, "content_type", "application/json");
    audit_detail_set_int(e->rec, "bytes", e->body_len);
    audit_detail_set_int(e->rec, "jobs", 0);
    audit_detail_set_str(e->rec, "remote", "127.0.0.1");
}

/* ---- shared run state ---- */

struct bench_run {
    bool use_store;
    struct store *st;
    atomic_bool stop;
    atomic_long done;
    atomic_long failed;
    /* baseline appender */
    pthread_mutex_t lock;
    pthread_cond_t wake, synced;
    char *buf;
    size_t len, cap;
    long queued_seq, synced_seq, batches;
    bool closing;
    int fd;
};

static void *bench_appender(void *arg)
{
    struct bench_run *r = arg;
    char *mine = NULL;
    size_t mine_cap = 0;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (r->len == 0 && !r->closing)
            pthread_cond_wait(&r->wake, &r->lock);
        if (r->len == 0 && r->closing)
            break;
        /* Take the whole queue: one write and one fsync for all of it. */
        char *tmp = mine;
        size_t tcap = mine_cap;
        mine = r->buf;
        mine_cap = r->cap;
        size_t n = r->len;
        long upto = r->queued_seq;
        r->buf = tmp;
        r->cap = tcap;
        r->len = 0;
        pthread_mutex_unlock(&r->lock);
        bool ok = write(r->fd, mine, n) == (ssize_t)n && fdatasync(r->fd) == 0;
        pthread_mutex_lock(&r->lock);
        if (!ok)
            atomic_fetch_add(&r->failed, 1);
        r->synced_seq = upto;
        r->batches++;
        pthread_cond_broadcast(&r->synced);
    }
    pthread_mutex_unlock(&r->lock);
    free(mine);
    return NULL;
}

/* Appends one event's bytes and waits until a fsync covered them. */
static int bench_append(struct bench_run *r, const struct bench_event *e)
{
    char *audit = json_dumps(e->rec, JSON_COMPACT | JSON_SORT_KEYS);
    if (!audit)
        return -1;
    /* id, headers, body, the audit record and room for what sealing adds
     * (seq, prev_hash and hash: about 160 bytes), one line per event. */
    size_t la = strlen(audit), lh = sizeof bench_headers - 1, lb = (size_t)e->body_len;
    size_t need = 64 + lh + lb + la + 160 + 1;
    pthread_mutex_lock(&r->lock);
    if (r->len + need > r->cap) {
        size_t cap = r->cap ? r->cap : 65536;
        while (cap < r->len + need)
            cap *= 2;
        char *nb = realloc(r->buf, cap);
        if (!nb) {
            pthread_mutex_unlock(&r->lock);
            free(audit);
            return -1;
        }
        r->buf = nb;
        r->cap = cap;
    }
    char *p = r->buf + r->len;
    memcpy(p, e->id, 64);
    memcpy(p + 64, bench_headers, lh);
    memcpy(p + 64 + lh, e->body, lb);
    memcpy(p + 64 + lh + lb, audit, la);
    memset(p + 64 + lh + lb + la, ' ', 160);
    p[need - 1] = '\n';
    r->len += need;
    long my = ++r->queued_seq;
    pthread_cond_signal(&r->wake);
    while (r->synced_seq < my)
        pthread_cond_wait(&r->synced, &r->lock);
    pthread_mutex_unlock(&r->lock);
    free(audit);
    return 0;
}

struct bench_worker {
    struct bench_run *run;
    unsigned id;
    unsigned long round;
};

static void *bench_submitter(void *arg)
{
    struct bench_worker *w = arg;
    struct bench_run *r = w->run;
    unsigned long n = w->round << 32;
    while (!atomic_load(&r->stop)) {
        struct bench_event e;
        bench_event_make(&e, w->id, n++);
        if (!e.rec) {
            atomic_fetch_add(&r->failed, 1);
            break;
        }
        int rc;
        if (r->use_store) {
            struct store_op op = {.kind = STORE_OP_EVENT,
                                  .u.event = {.source = "bench",
                                              .event_id = e.id,
                                              .received_at = bench_wall(),
                                              .dedupe_window_s = 604800,
                                              .status = "accepted",
                                              .content_type = "application/json",
                                              .headers_json = bench_headers,
                                              .body = (const unsigned char *)e.body,
                                              .body_len = (size_t)e.body_len},
                                  .audit = &e.rec,
                                  .naudit = 1};
            rc = store_submit_wait(r->st, &op) == 0 && op.u.event.result == STORE_EVENT_STORED ? 0
                                                                                               : -1;
        } else {
            rc = bench_append(r, &e);
        }
        json_decref(e.rec);
        if (rc == 0)
            atomic_fetch_add(&r->done, 1);
        else
            atomic_fetch_add(&r->failed, 1);
    }
    return NULL;
}

struct bench_result {
    double rate, cpu_us, per_commit;
};

/* One timed round of either kind on fresh files in dir. Returns 0 or -1. */
static int bench_round(const char *dir, bool use_store, unsigned threads, double seconds,
                       unsigned long round, struct bench_result *out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-%lu", dir, use_store ? "store.db" : "append.log", round);
    struct bench_run r = {.use_store = use_store, .fd = -1};
    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.wake, NULL);
    pthread_cond_init(&r.synced, NULL);
    pthread_t appender, tids[BENCH_MAX_THREADS];
    struct bench_worker ws[BENCH_MAX_THREADS];
    int rc = -1;
    bool have_appender = false;
    if (use_store) {
        char url[4200], err[256];
        snprintf(url, sizeof url, "sqlite:%s", path);
        struct store_options o = {.url = url, .busy_timeout_ms = 5000, .dedupe_preload = true};
        if (store_open(&o, &r.st, err, sizeof err) < 0) {
            fprintf(stderr, "store_bench: %s\n", err);
            goto out;
        }
    } else {
        r.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
        if (r.fd < 0 || pthread_create(&appender, NULL, bench_appender, &r) != 0) {
            fprintf(stderr, "store_bench: %s: %s\n", path, strerror(errno));
            goto out;
        }
        have_appender = true;
    }
    for (unsigned i = 0; i < threads; i++) {
        ws[i] = (struct bench_worker){.run = &r, .id = i, .round = round};
        if (pthread_create(&tids[i], NULL, bench_submitter, &ws[i]) != 0) {
            fprintf(stderr, "store_bench: cannot start thread %u\n", i);
            atomic_store(&r.stop, true);
            threads = i;
            break;
        }
    }
    /* Measure after a short warm-up, then stop everyone. */
    struct timespec warm = {0, 200 * 1000 * 1000};
    nanosleep(&warm, NULL);
    pthread_mutex_lock(&r.lock);
    long b0 = r.batches;
    pthread_mutex_unlock(&r.lock);
    long n0 = atomic_load(&r.done);
    double t0 = bench_mono(), c0 = bench_cpu();
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
    long n1 = atomic_load(&r.done);
    pthread_mutex_lock(&r.lock);
    long b1 = r.batches;
    pthread_mutex_unlock(&r.lock);
    double t1 = bench_mono(), c1 = bench_cpu();
    atomic_store(&r.stop, true);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    out->rate = (double)(n1 - n0) / (t1 - t0);
    out->cpu_us = n1 > n0 ? (c1 - c0) * 1e6 / (double)(n1 - n0) : 0;
    out->per_commit = b1 > b0 ? (double)(n1 - n0) / (double)(b1 - b0) : 0;
    rc = atomic_load(&r.failed) == 0 && n1 > n0 ? 0 : -1;
    if (rc < 0)
        fprintf(stderr, "store_bench: %ld failed submissions\n", atomic_load(&r.failed));
out:
    if (have_appender) {
        pthread_mutex_lock(&r.lock);
        r.closing = true;
        pthread_cond_signal(&r.wake);
        pthread_mutex_unlock(&r.lock);
        pthread_join(appender, NULL);
    }
    if (r.fd >= 0)
        close(r.fd);
    store_close(r.st);
    free(r.buf);
    pthread_mutex_destroy(&r.lock);
    pthread_cond_destroy(&r.wake);
    pthread_cond_destroy(&r.synced);
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char f[4200];
        snprintf(f, sizeof f, "%s%s", path, suffixes[i]);
        unlink(f);
    }
    return rc;
}

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static bool bench_num(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    double seconds = 3, threads = 50, rounds = 3;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = v != NULL;
        if (ok && strcmp(argv[i], "--dir") == 0)
            dir = v;
        else if (ok && strcmp(argv[i], "--seconds") == 0)
            ok = bench_num(v, 0.2, 600, &seconds);
        else if (ok && strcmp(argv[i], "--threads") == 0)
            ok = bench_num(v, 1, BENCH_MAX_THREADS, &threads);
        else if (ok && strcmp(argv[i], "--rounds") == 0)
            ok = bench_num(v, 1, BENCH_MAX_ROUNDS, &rounds);
        else
            ok = false;
        if (!ok) {
            fprintf(stderr,
                    "usage: store_bench --dir DIR [--seconds 0.2-600] [--threads 1-%d] "
                    "[--rounds 1-%d]\n",
                    BENCH_MAX_THREADS, BENCH_MAX_ROUNDS);
            return 2;
        }
        i++;
    }
    if (!dir) {
        fprintf(stderr, "store_bench: --dir is required\n");
        return 2;
    }
    int nr = (int)rounds;
    unsigned nt = (unsigned)threads;
    log_set_level(LOG_WARN); /* no "dedupe set loaded" line per round */
    double base[BENCH_MAX_ROUNDS], store[BENCH_MAX_ROUNDS];
    double base_cpu[BENCH_MAX_ROUNDS], store_cpu[BENCH_MAX_ROUNDS];
    double base_pc[BENCH_MAX_ROUNDS];
    printf("store_bench: %u submitting threads, %d rounds of %.1f s each kind, %ld CPUs\n", nt, nr,
           seconds, sysconf(_SC_NPROCESSORS_ONLN));
    for (int i = 0; i < nr; i++) {
        struct bench_result b, s;
        if (bench_round(dir, false, nt, seconds, (unsigned long)(2 * i), &b) < 0 ||
            bench_round(dir, true, nt, seconds, (unsigned long)(2 * i + 1), &s) < 0)
            return 1;
        base[i] = b.rate;
        base_cpu[i] = b.cpu_us;
        base_pc[i] = b.per_commit;
        store[i] = s.rate;
        store_cpu[i] = s.cpu_us;
        printf("round %d: baseline append %.0f events/s (%.1f us CPU/event, %.1f per fsync) | "
               "store %.0f events/s (%.1f us CPU/event)\n",
               i + 1, b.rate, b.cpu_us, b.per_commit, s.rate, s.cpu_us);
    }
    double mb = bench_median(base, nr), ms = bench_median(store, nr);
    printf("median: baseline append %.0f events/s (%.1f us CPU/event, %.1f per fsync); "
           "store %.0f events/s (%.1f us CPU/event); ratio store/baseline %.2f\n",
           mb, bench_median(base_cpu, nr), bench_median(base_pc, nr), ms,
           bench_median(store_cpu, nr), ms / mb);
    return 0;
}
