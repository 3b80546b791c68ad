/*
 * metrics: process-wide Prometheus counters, gauges and histograms, rendered in
 * the text exposition format for GET /metrics. Any thread may update them; one
 * mutex guards the labelled series, plain counters are atomic.
 */
#ifndef HOOKLINE_METRICS_H
#define HOOKLINE_METRICS_H

#include <stdbool.h>
#include <stddef.h>

/* Creates the registry. Returns 0 or -1 (out of memory). Call once at start-up. */
int metrics_init(void);

/* Frees the registry; safe to call when metrics_init was never called. */
void metrics_shutdown(void);

/* hookline_events_received_total{source,status} += 1. source and status are
 * borrowed; the registry copies them. Series are capped at 4096 (then dropped). */
void metrics_event_received(const char *source, const char *status);

/* hookline_jobs_total{state} += 1 (a job reached state). */
void metrics_job_state(const char *state);

/* hookline_didww_requests_total{method,status} += 1 and one observation of
 * hookline_didww_request_duration_seconds (status 0: no answer). */
void metrics_didww_request(const char *method, int status, double seconds);

/* hookline_delivery_paused. */
void metrics_set_delivery_paused(bool paused);

/* hookline_instance_info{instance,rule_version} 1 and, when leader >= 0,
 * hookline_instance_leader{instance} (1/0). NULL strings and leader < 0 leave
 * the value as it was; strings copied. */
void metrics_set_instance(const char *id, const char *rule_version, int leader);
/* hookline_rule_duration_seconds histogram observation. */
void metrics_rule_duration(double seconds);

/* hookline_store_commits_total / hookline_store_commit_batch_size: one group
 * commit of n operations that took seconds. */
void metrics_store_commit(size_t n, double seconds, int ok);

/* Gauges that other modules own; a function pointer returning the current value
 * lets /metrics read the queue from the store at scrape time. */
typedef double (*metrics_gauge_fn)(void *ctx);
void metrics_set_gauge(const char *name, const char *help, metrics_gauge_fn fn, void *ctx);

/* The same for a counter another module owns (rendered as TYPE counter; the
 * name should end in _total). name and help are borrowed for the process. */
void metrics_set_counter_fn(const char *name, const char *help, metrics_gauge_fn fn, void *ctx);

/* Renders every series. Returns a new heap string (caller frees) and its length
 * in *len, or NULL on out of memory. */
char *metrics_render(size_t *len);

#endif
