/*
 * metrics: holds the process's Prometheus series and renders them as text.
 * Labelled counters live in a small array under one mutex (label sets are few:
 * sources x statuses); histograms use fixed bucket bounds. Gauges are callbacks
 * into the module that owns the value, read at scrape time. Never blocks on I/O.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_MAX_SERIES 4096
#define METRICS_MAX_GAUGES 16
#define METRICS_RENDER_MAX (4u << 20)

struct metrics_series {
    char *source;
    char *status;
    unsigned long long count;
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
};

static const double metrics_rule_bounds[] = {0.00001, 0.00005, 0.0001, 0.0005, 0.001,
                                             0.005,   0.01,    0.05,   0.1,    0.5};
static const double metrics_commit_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                               0.025,  0.05,  0.1,    0.25,  1.0};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_series *metrics_events;
static size_t metrics_nevents;
static struct metrics_histogram metrics_rule = {metrics_rule_bounds, 10, {0}, 0, 0};
static struct metrics_histogram metrics_commit = {metrics_commit_bounds, 10, {0}, 0, 0};
static unsigned long long metrics_commits_ok, metrics_commits_failed, metrics_committed_ops;
static struct metrics_gauge metrics_gauges[METRICS_MAX_GAUGES];
static size_t metrics_ngauges;

int metrics_init(void)
{
    pthread_mutex_lock(&metrics_lock);
    if (!metrics_events)
        metrics_events = calloc(METRICS_MAX_SERIES, sizeof *metrics_events);
    int rc = metrics_events ? 0 : -1;
    pthread_mutex_unlock(&metrics_lock);
    return rc;
}

void metrics_shutdown(void)
{
    pthread_mutex_lock(&metrics_lock);
    for (size_t i = 0; i < metrics_nevents; i++) {
        free(metrics_events[i].source);
        free(metrics_events[i].status);
    }
    free(metrics_events);
    metrics_events = NULL;
    metrics_nevents = 0;
    metrics_ngauges = 0;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_event_received(const char *source, const char *status)
{
    pthread_mutex_lock(&metrics_lock);
    if (!metrics_events)
        goto out;
    for (size_t i = 0; i < metrics_nevents; i++) {
        if (strcmp(metrics_events[i].source, source) == 0 &&
            strcmp(metrics_events[i].status, status) == 0) {
            metrics_events[i].count++;
            goto out;
        }
    }
    if (metrics_nevents < METRICS_MAX_SERIES) {
        struct metrics_series *s = &metrics_events[metrics_nevents];
        s->source = strdup(source);
        s->status = strdup(status);
        if (s->source && s->status) {
            s->count = 1;
            metrics_nevents++;
        } else {
            free(s->source);
            free(s->status);
            s->source = s->status = NULL;
        }
    }
out:
    pthread_mutex_unlock(&metrics_lock);
}

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

void metrics_set_gauge(const char *name, const char *help, metrics_gauge_fn fn, void *ctx)
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
        metrics_gauges[metrics_ngauges++] = (struct metrics_gauge){name, help, fn, ctx};
out:
    pthread_mutex_unlock(&metrics_lock);
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
    metrics_printf(&b, "# HELP hookline_events_received_total Webhook requests answered, by "
                       "source and outcome.\n# TYPE hookline_events_received_total counter\n");
    for (size_t i = 0; i < metrics_nevents; i++) {
        metrics_printf(&b, "hookline_events_received_total{source=\"");
        metrics_label(&b, metrics_events[i].source);
        metrics_printf(&b, "\",status=\"");
        metrics_label(&b, metrics_events[i].status);
        metrics_printf(&b, "\"} %llu\n", metrics_events[i].count);
    }
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
        metrics_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", gauges[i].name,
                       gauges[i].help, gauges[i].name, gauges[i].name, v);
    }
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
