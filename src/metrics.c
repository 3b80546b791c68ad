/*
 * metrics: holds the process's Prometheus series and renders them as text.
 * Labelled counters live in a small array under one mutex (label sets are few:
 * sources x statuses); histograms use fixed bucket bounds. Gauges are callbacks
 * into the module that owns the value, read at scrape time. Never blocks on I/O.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define METRICS_MAX_SERIES 4096
#define METRICS_WINDOW_S 60 /* the budget gauges look back this many seconds */
#define METRICS_MAX_GAUGES 32
#define METRICS_RENDER_MAX (4u << 20)

struct metrics_series {
    char *a, *b; /* label values (b may be NULL for one-label families) */
    unsigned long long count;
};

/* A counter family with one or two labels. */
struct metrics_family {
    const char *name, *help, *label_a, *label_b;
    struct metrics_series *series;
    size_t n;
};

struct metrics_histogram {
    const double *bounds;
    size_t nbounds;
    unsigned long long buckets[16]; /* cumulative at render time */
    unsigned long long count;
    double sum;
};

struct metrics_gauge {
    const char *name;
    const char *help;
    metrics_gauge_fn fn;
    void *ctx;
    const char *type; /* "gauge" or "counter" */
};

static const double metrics_rule_bounds[] = {0.00001, 0.00005, 0.0001, 0.0005, 0.001,
                                             0.005,   0.01,    0.05,   0.1,    0.5};
static const double metrics_commit_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                               0.025,  0.05,  0.1,    0.25,  1.0};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_family metrics_events = {"hookline_events_received_total",
                                               "Webhook requests answered, by source and outcome.",
                                               "source",
                                               "status",
                                               NULL,
                                               0};
static struct metrics_family metrics_jobs = {
    "hookline_jobs_total",
    "Jobs that reached a state (done, dead, pending = retry scheduled).",
    "state",
    NULL,
    NULL,
    0};
static struct metrics_family metrics_requests = {
    "hookline_didww_requests_total",
    "Requests sent to DIDWW by method and status (0: no answer).",
    "method",
    "status",
    NULL,
    0};
static struct metrics_family *const metrics_families[] = {&metrics_events, &metrics_jobs,
                                                          &metrics_requests};
static const double metrics_request_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25,
                                                0.5,  1.0,   2.5,  5.0, 15.0};
static struct metrics_histogram metrics_request = {metrics_request_bounds, 10, {0}, 0, 0};
static int metrics_paused;
/* Requests sent and jobs finished (done or dead) per second of the last minute, a ring
 * indexed by monotonic second; a slot of an older second is emptied before reuse. */
static struct {
    long long second;
    unsigned long long requests, jobs;
} metrics_window[METRICS_WINDOW_S];

static long long metrics_second(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec;
}

/* The slot of second now (emptied when it held an older second); metrics_lock held. */
static void metrics_window_add(long long now, unsigned long long requests, unsigned long long jobs)
{
    size_t i = (size_t)(now % METRICS_WINDOW_S);
    if (metrics_window[i].second != now) {
        metrics_window[i].second = now;
        metrics_window[i].requests = 0;
        metrics_window[i].jobs = 0;
    }
    metrics_window[i].requests += requests;
    metrics_window[i].jobs += jobs;
}
static struct metrics_histogram metrics_rule = {metrics_rule_bounds, 10, {0}, 0, 0};
static struct metrics_histogram metrics_commit = {metrics_commit_bounds, 10, {0}, 0, 0};
static unsigned long long metrics_commits_ok, metrics_commits_failed, metrics_committed_ops;
static struct metrics_gauge metrics_gauges[METRICS_MAX_GAUGES];
static size_t metrics_ngauges;

static void metrics_observe(struct metrics_histogram *h, double v)
{
    for (size_t i = 0; i < h->nbounds; i++) {
        if (v <= h->bounds[i]) {
            h->buckets[i]++;
            break;
        }
    }
    h->count++;
    h->sum += v;
}

int metrics_init(void)
{
    int rc = 0;
    pthread_mutex_lock(&metrics_lock);
    for (size_t i = 0; i < sizeof metrics_families / sizeof metrics_families[0]; i++) {
        struct metrics_family *f = metrics_families[i];
        if (!f->series)
            f->series = calloc(METRICS_MAX_SERIES, sizeof *f->series);
        if (!f->series)
            rc = -1;
    }
    pthread_mutex_unlock(&metrics_lock);
    return rc;
}

void metrics_shutdown(void)
{
    pthread_mutex_lock(&metrics_lock);
    for (size_t i = 0; i < sizeof metrics_families / sizeof metrics_families[0]; i++) {
        struct metrics_family *f = metrics_families[i];
        for (size_t k = 0; k < f->n; k++) {
            free(f->series[k].a);
            free(f->series[k].b);
        }
        free(f->series);
        f->series = NULL;
        f->n = 0;
    }
    metrics_ngauges = 0;
    memset(metrics_window, 0, sizeof metrics_window);
    pthread_mutex_unlock(&metrics_lock);
}

static bool metrics_same(const char *x, const char *y)
{
    return (!x && !y) || (x && y && strcmp(x, y) == 0);
}

/* Adds 1 to the series (a, b) of f. Caller holds metrics_lock. */
static void metrics_count(struct metrics_family *f, const char *a, const char *b)
{
    if (!f->series)
        return;
    for (size_t i = 0; i < f->n; i++) {
        if (metrics_same(f->series[i].a, a) && metrics_same(f->series[i].b, b)) {
            f->series[i].count++;
            return;
        }
    }
    if (f->n >= METRICS_MAX_SERIES)
        return;
    struct metrics_series *s = &f->series[f->n];
    s->a = strdup(a);
    s->b = b ? strdup(b) : NULL;
    if (!s->a || (b && !s->b)) {
        free(s->a);
        free(s->b);
        s->a = s->b = NULL;
        return;
    }
    s->count = 1;
    f->n++;
}

void metrics_event_received(const char *source, const char *status)
{
    pthread_mutex_lock(&metrics_lock);
    metrics_count(&metrics_events, source, status);
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_job_state(const char *state)
{
    pthread_mutex_lock(&metrics_lock);
    metrics_count(&metrics_jobs, state, NULL);
    if (state && (strcmp(state, "done") == 0 || strcmp(state, "dead") == 0))
        metrics_window_add(metrics_second(), 0, 1);
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_didww_request(const char *method, int status, double seconds)
{
    char st[16];
    snprintf(st, sizeof st, "%d", status);
    pthread_mutex_lock(&metrics_lock);
    metrics_count(&metrics_requests, method, st);
    metrics_observe(&metrics_request, seconds);
    metrics_window_add(metrics_second(), 1, 0);
    pthread_mutex_unlock(&metrics_lock);
}

/* hookline_instance_info's labels and hookline_instance_leader, under
 * metrics_lock ("" when unset: not rendered). */
static char metrics_instance[80], metrics_rule_version[40];
static int metrics_leader = -1;

void metrics_set_instance(const char *id, const char *rule_version, int leader)
{
    pthread_mutex_lock(&metrics_lock);
    if (id)
        snprintf(metrics_instance, sizeof metrics_instance, "%s", id);
    if (rule_version)
        snprintf(metrics_rule_version, sizeof metrics_rule_version, "%s", rule_version);
    if (leader >= 0)
        metrics_leader = leader ? 1 : 0;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_set_delivery_paused(bool paused)
{
    pthread_mutex_lock(&metrics_lock);
    metrics_paused = paused ? 1 : 0;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_rule_duration(double seconds)
{
    pthread_mutex_lock(&metrics_lock);
    metrics_observe(&metrics_rule, seconds);
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_store_commit(size_t n, double seconds, int ok)
{
    pthread_mutex_lock(&metrics_lock);
    if (ok) {
        metrics_commits_ok++;
        metrics_committed_ops += n;
        metrics_observe(&metrics_commit, seconds);
    } else {
        metrics_commits_failed++;
    }
    pthread_mutex_unlock(&metrics_lock);
}

static void metrics_set_fn(const char *name, const char *help, metrics_gauge_fn fn, void *ctx,
                           const char *type)
{
    pthread_mutex_lock(&metrics_lock);
    for (size_t i = 0; i < metrics_ngauges; i++) {
        if (strcmp(metrics_gauges[i].name, name) == 0) {
            metrics_gauges[i].fn = fn;
            metrics_gauges[i].ctx = ctx;
            goto out;
        }
    }
    if (metrics_ngauges < METRICS_MAX_GAUGES)
        metrics_gauges[metrics_ngauges++] = (struct metrics_gauge){name, help, fn, ctx, type};
out:
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_set_gauge(const char *name, const char *help, metrics_gauge_fn fn, void *ctx)
{
    metrics_set_fn(name, help, fn, ctx, "gauge");
}

void metrics_set_counter_fn(const char *name, const char *help, metrics_gauge_fn fn, void *ctx)
{
    metrics_set_fn(name, help, fn, ctx, "counter");
}

struct metrics_buf {
    char *p;
    size_t len, cap;
    int failed;
};

static void metrics_printf(struct metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void metrics_printf(struct metrics_buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap * 2;
        if (ncap > METRICS_RENDER_MAX) {
            b->failed = 1;
            return;
        }
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

/* Label values are sources and fixed words; escape the three characters the
 * exposition format requires anyway. */
static void metrics_label(struct metrics_buf *b, const char *v)
{
    for (const char *s = v; *s; s++) {
        if (*s == '\\' || *s == '"')
            metrics_printf(b, "\\%c", *s);
        else if (*s == '\n')
            metrics_printf(b, "\\n");
        else
            metrics_printf(b, "%c", *s);
    }
}

static void metrics_render_histogram(struct metrics_buf *b, const char *name, const char *help,
                                     const struct metrics_histogram *h)
{
    unsigned long long cum = 0;
    metrics_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i < h->nbounds; i++) {
        cum += h->buckets[i];
        metrics_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], cum);
    }
    metrics_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name, h->count,
                   name, h->sum, name, h->count);
}

char *metrics_render(size_t *len)
{
    struct metrics_buf b = {malloc(8192), 0, 8192, 0};
    if (!b.p)
        return NULL;
    struct metrics_gauge gauges[METRICS_MAX_GAUGES];
    size_t ngauges;

    pthread_mutex_lock(&metrics_lock);
    for (size_t i = 0; i < sizeof metrics_families / sizeof metrics_families[0]; i++) {
        const struct metrics_family *f = metrics_families[i];
        metrics_printf(&b, "# HELP %s %s\n# TYPE %s counter\n", f->name, f->help, f->name);
        for (size_t k = 0; k < f->n; k++) {
            metrics_printf(&b, "%s{%s=\"", f->name, f->label_a);
            metrics_label(&b, f->series[k].a);
            if (f->label_b) {
                metrics_printf(&b, "\",%s=\"", f->label_b);
                metrics_label(&b, f->series[k].b);
            }
            metrics_printf(&b, "\"} %llu\n", f->series[k].count);
        }
    }
    metrics_render_histogram(&b, "hookline_didww_request_duration_seconds",
                             "Duration of one request to DIDWW.", &metrics_request);
    metrics_printf(&b,
                   "# HELP hookline_delivery_paused 1 while delivery is paused (DIDWW refused "
                   "the API key).\n# TYPE hookline_delivery_paused gauge\n"
                   "hookline_delivery_paused %d\n",
                   metrics_paused);
    if (metrics_instance[0]) {
        metrics_printf(&b, "# HELP hookline_instance_info This process: its instance id and the "
                           "rule version in force.\n# TYPE hookline_instance_info gauge\n"
                           "hookline_instance_info{instance=\"");
        metrics_label(&b, metrics_instance);
        metrics_printf(&b, "\",rule_version=\"");
        metrics_label(&b, metrics_rule_version);
        metrics_printf(&b, "\"} 1\n");
        if (metrics_leader >= 0) {
            metrics_printf(&b, "# HELP hookline_instance_leader 1 while this instance runs the "
                               "audit mirror and retention.\n# TYPE hookline_instance_leader "
                               "gauge\nhookline_instance_leader{instance=\"");
            metrics_label(&b, metrics_instance);
            metrics_printf(&b, "\"} %d\n", metrics_leader);
        }
    }
    unsigned long long w_req = 0, w_jobs = 0;
    long long now = metrics_second();
    for (size_t i = 0; i < METRICS_WINDOW_S; i++) {
        if (metrics_window[i].second > now - METRICS_WINDOW_S) {
            w_req += metrics_window[i].requests;
            w_jobs += metrics_window[i].jobs;
        }
    }
    metrics_printf(&b,
                   "# HELP hookline_delivery_requests_per_job Requests sent to DIDWW per job "
                   "finished (done or dead) over the last minute; 0 when none finished.\n"
                   "# TYPE hookline_delivery_requests_per_job gauge\n"
                   "hookline_delivery_requests_per_job %.3f\n"
                   "# HELP hookline_delivery_jobs_per_second Jobs finished (done or dead) per "
                   "second over the last minute.\n"
                   "# TYPE hookline_delivery_jobs_per_second gauge\n"
                   "hookline_delivery_jobs_per_second %.3f\n",
                   w_jobs ? (double)w_req / (double)w_jobs : 0.0,
                   (double)w_jobs / METRICS_WINDOW_S);
    metrics_render_histogram(&b, "hookline_rule_duration_seconds",
                             "Time spent running the rule script for one event.", &metrics_rule);
    metrics_render_histogram(&b, "hookline_store_commit_duration_seconds",
                             "Duration of one group commit, fsync included.", &metrics_commit);
    metrics_printf(&b,
                   "# HELP hookline_store_commits_total Group commits by result.\n"
                   "# TYPE hookline_store_commits_total counter\n"
                   "hookline_store_commits_total{result=\"ok\"} %llu\n"
                   "hookline_store_commits_total{result=\"failed\"} %llu\n"
                   "# HELP hookline_store_committed_operations_total Operations made durable.\n"
                   "# TYPE hookline_store_committed_operations_total counter\n"
                   "hookline_store_committed_operations_total %llu\n",
                   metrics_commits_ok, metrics_commits_failed, metrics_committed_ops);
    ngauges = metrics_ngauges;
    memcpy(gauges, metrics_gauges, sizeof gauges);
    pthread_mutex_unlock(&metrics_lock);

    /* Gauge callbacks may query the store: call them outside the lock. */
    for (size_t i = 0; i < ngauges; i++) {
        double v = gauges[i].fn(gauges[i].ctx);
        metrics_printf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", gauges[i].name, gauges[i].help,
                       gauges[i].name, gauges[i].type, gauges[i].name, v);
    }
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
