/*
 * console_series: samples the metrics registry (metrics_render) every
 * CONSOLE_SERIES_STEP_S seconds on its own thread into a fixed ring, so the
 * console's overview can draw the last hour without an external Prometheus.
 * Memory is bounded by the ring's size; the HTTP threads only copy it out
 * under the mutex. It never touches the store directly (the queue gauges it
 * reads are the registry's own callbacks).
 */
#include "console/console_series.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "metrics.h"

struct console_series {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_t thread;
    bool stop;
    struct console_sample ring[CONSOLE_SERIES_LEN];
    size_t head, n; /* next slot to write, samples held */
};

/* The value of label name in a "{a="x",b="y"}" block, copied into out[len]. */
static void console_series_label(const char *labels, size_t llen, const char *name, char *out,
                                 size_t len)
{
    size_t nlen = strlen(name);
    out[0] = '\0';
    for (size_t i = 0; i + nlen + 2 < llen; i++) {
        if ((i == 0 || labels[i - 1] == '{' || labels[i - 1] == ',') &&
            memcmp(labels + i, name, nlen) == 0 && labels[i + nlen] == '=' &&
            labels[i + nlen + 1] == '"') {
            const char *v = labels + i + nlen + 2;
            size_t k = 0;
            while (v + k < labels + llen && v[k] != '"' && k + 1 < len) {
                out[k] = v[k];
                k++;
            }
            out[k] = '\0';
            return;
        }
    }
}

void console_series_parse(const char *text, struct console_sample *out)
{
    double t = out->t;
    memset(out, 0, sizeof *out);
    out->t = t;
    const char *p = text;
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[512];
        if (len < sizeof line && p[0] != '#' && len > 0) {
            memcpy(line, p, len);
            line[len] = '\0';
            char *sp = strrchr(line, ' ');
            char *brace = strchr(line, '{');
            if (sp) {
                char *end;
                double v = strtod(sp + 1, &end);
                size_t nlen = brace && brace < sp ? (size_t)(brace - line) : (size_t)(sp - line);
                const char *labels = brace && brace < sp ? brace : "";
                size_t llen = brace && brace < sp ? (size_t)(sp - brace) : 0;
                char name[128], lv[32];
                if (end != sp + 1 && nlen < sizeof name) {
                    memcpy(name, line, nlen);
                    name[nlen] = '\0';
                    if (strcmp(name, "hookline_events_received_total") == 0) {
                        out->events += v;
                        console_series_label(labels, llen, "status", lv, sizeof lv);
                        if (strcmp(lv, "accepted") == 0)
                            out->accepted += v;
                    } else if (strcmp(name, "hookline_jobs_total") == 0) {
                        console_series_label(labels, llen, "state", lv, sizeof lv);
                        if (strcmp(lv, "done") == 0)
                            out->jobs_done += v;
                        else if (strcmp(lv, "dead") == 0)
                            out->jobs_dead += v;
                    } else if (strcmp(name, "hookline_didww_requests_total") == 0) {
                        out->didww_requests += v;
                        console_series_label(labels, llen, "status", lv, sizeof lv);
                        size_t i = 0;
                        while (i < out->nstatus && strcmp(out->status[i], lv) != 0)
                            i++;
                        if (i == out->nstatus && i < CONSOLE_SERIES_STATUSES && lv[0] &&
                            strlen(lv) < sizeof out->status[i]) {
                            memcpy(out->status[i], lv, strlen(lv) + 1);
                            out->nstatus++;
                        }
                        if (i < out->nstatus)
                            out->status_count[i] += v;
                    } else if (strcmp(name, "hookline_queue_depth") == 0) {
                        out->queue_depth = v;
                    } else if (strcmp(name, "hookline_queue_oldest_age_seconds") == 0) {
                        out->queue_oldest_s = v;
                    } else if (strcmp(name, "hookline_delivery_paused") == 0) {
                        out->paused = v;
                    }
                }
            }
        }
        p = eol ? eol + 1 : NULL;
    }
}

static double console_series_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

void console_series_sample(struct console_series *s)
{
    size_t len = 0;
    char *text = metrics_render(&len);
    struct console_sample smp = {.t = console_series_now()};
    if (!text)
        return;
    console_series_parse(text, &smp);
    free(text);
    pthread_mutex_lock(&s->mu);
    s->ring[s->head] = smp;
    s->head = (s->head + 1) % CONSOLE_SERIES_LEN;
    if (s->n < CONSOLE_SERIES_LEN)
        s->n++;
    pthread_mutex_unlock(&s->mu);
}

static void *console_series_main(void *arg)
{
    struct console_series *s = arg;
    console_series_sample(s);
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += CONSOLE_SERIES_STEP_S;
        int rc = 0;
        while (!s->stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&s->cond, &s->mu, &until);
        if (s->stop)
            break;
        pthread_mutex_unlock(&s->mu);
        console_series_sample(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

struct console_series *console_series_start(void)
{
    struct console_series *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (pthread_create(&s->thread, NULL, console_series_main, s) != 0) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return NULL;
    }
    return s;
}

void console_series_stop(struct console_series *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

json_t *console_series_json(struct console_series *s, struct console_sample *latest)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    pthread_mutex_lock(&s->mu);
    size_t start = (s->head + CONSOLE_SERIES_LEN - s->n) % CONSOLE_SERIES_LEN;
    for (size_t i = 0; i < s->n; i++) {
        const struct console_sample *x = &s->ring[(start + i) % CONSOLE_SERIES_LEN];
        json_array_append_new(arr, json_pack("[f,f,f,f,f,f,f,f,f]", x->t, x->events, x->accepted,
                                             x->jobs_done, x->jobs_dead, x->didww_requests,
                                             x->queue_depth, x->queue_oldest_s, x->paused));
    }
    if (latest) {
        if (s->n > 0)
            *latest = s->ring[(s->head + CONSOLE_SERIES_LEN - 1) % CONSOLE_SERIES_LEN];
        else
            memset(latest, 0, sizeof *latest);
    }
    pthread_mutex_unlock(&s->mu);
    return arr;
}
