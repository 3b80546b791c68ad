/*
 * console_series: the last hour of the service's own counters for the
 * console's overview charts. A sampler thread reads the metrics registry every
 * CONSOLE_SERIES_STEP_S seconds into a ring of CONSOLE_SERIES_LEN samples (no
 * external Prometheus needed). The parser is pure and tested alone; the ring
 * has its own mutex. Never touches the store.
 */
#ifndef HOOKLINE_CONSOLE_SERIES_H
#define HOOKLINE_CONSOLE_SERIES_H

#include <jansson.h>
#include <stddef.h>

#define CONSOLE_SERIES_STEP_S 10
#define CONSOLE_SERIES_LEN 360 /* one hour at one sample per 10 s */
#define CONSOLE_SERIES_STATUSES 16

/* One reading of the counters (cumulative, as /metrics shows them). */
struct console_sample {
    double t;              /* Unix seconds */
    double events;         /* hookline_events_received_total, all series */
    double accepted;       /* ... of status accepted */
    double jobs_done;      /* hookline_jobs_total{state="done"} */
    double jobs_dead;      /* hookline_jobs_total{state="dead"} */
    double didww_requests; /* hookline_didww_requests_total, all series */
    double queue_depth;    /* hookline_queue_depth */
    double queue_oldest_s; /* hookline_queue_oldest_age_seconds */
    double paused;         /* hookline_delivery_paused */
    /* DIDWW answers by status (the status label, "0": no answer). */
    char status[CONSOLE_SERIES_STATUSES][8];
    double status_count[CONSOLE_SERIES_STATUSES];
    size_t nstatus;
};

/* Reads Prometheus text (metrics_render's output) into *out (t untouched).
 * Unknown series are ignored. Pure. */
void console_series_parse(const char *text, struct console_sample *out);

struct console_series;

/* Starts the sampler thread (first sample at once). Returns a new series
 * (caller stops it with console_series_stop) or NULL. */
struct console_series *console_series_start(void);

/* Stops the thread and frees. NULL is a no-op. */
void console_series_stop(struct console_series *s);

/* Takes one sample now (the thread does this every step; also for tests). */
void console_series_sample(struct console_series *s);

/* The samples, oldest first, as a new JSON array of
 * [t, events, accepted, jobs_done, jobs_dead, didww_requests, queue_depth,
 * queue_oldest_s, paused], and in *latest (when not NULL) the newest sample.
 * Returns a new reference (caller owns) or NULL. */
json_t *console_series_json(struct console_series *s, struct console_sample *latest);

#endif
