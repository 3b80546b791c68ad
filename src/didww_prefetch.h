/*
 * didww_prefetch: batched reads of DID state for the delivery workers. When a worker
 * claims several jobs it reads the DIDs they name in one list request per filter
 * (GET /v3/dids?filter[id]=a,b,c or filter[number]=...&include=...&page[size]=N, every
 * page), keeps each DID's state with the time it was fetched, and serves it to the
 * per-job path: a number's resolution and a DID's before-state (the no-op read). A state
 * is served once (taken) and only while younger than max_age_s; anything missing, taken
 * or stale is read singly as before. Thread-safe: the workers share one cache.
 */
#ifndef HOOKLINE_DIDWW_PREFETCH_H
#define HOOKLINE_DIDWW_PREFETCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "didww_client.h"

#define DIDWW_PREFETCH_PAGE_MAX 100 /* DIDWW's page[size] limit: 400 beyond */

struct didww_prefetch;

/* Sends GET path within the rate limit and fills *resp (caller frees). Returns 0 or -1
 * when an answer arrived or not (resp->status), or DIDWW_PREFETCH_STOPPED when nothing
 * was sent because the service stops. */
typedef int (*didww_prefetch_send_fn)(void *ctx, const char *path, struct didww_response *resp);
#define DIDWW_PREFETCH_STOPPED (-2)

/* A new, empty cache serving states younger than max_age_s. Returns NULL when out of
 * memory; free with didww_prefetch_destroy. */
struct didww_prefetch *didww_prefetch_create(double max_age_s);

/* Forgets everything (a new claim round). */
void didww_prefetch_clear(struct didww_prefetch *p);

/* The list path for page of values (borrowed, n > 0) under filter ("id" or "number"),
 * with include (may be NULL) and page[size] page_size, into out[out_len]. Returns false
 * when it does not fit. */
bool didww_prefetch_path(const char *filter, const char *const *values, size_t n,
                         const char *include, int page_size, int page, char *out, size_t out_len);

/* Reads every page of the list of values (borrowed) under filter through send and
 * caches the states with fetch time now. Numbers asked for and absent from a complete
 * answer are remembered as resolving to nothing. Returns the number of requests sent
 * (>= 1) when every page was answered 200; DIDWW_PREFETCH_STOPPED; or -1 when a page
 * was not: *failed then holds that answer (caller frees with didww_response_free) and
 * the states of earlier pages stay cached. */
int didww_prefetch_fetch(struct didww_prefetch *p, const char *filter, const char *const *values,
                         size_t n, const char *include, int page_size, double now,
                         didww_prefetch_send_fn send, void *ctx, struct didww_response *failed);

/* Stores the states of one list answer (body borrowed) fetched at time at. Returns the
 * number of DIDs in it, or -1 when the body is not a DID list. */
int didww_prefetch_add(struct didww_prefetch *p, const char *body, size_t len, double at);

/* Remembers that number was asked for in a complete answer at time at and had no DID. */
void didww_prefetch_mark_absent(struct didww_prefetch *p, const char *number, double at);

/* The fresh state of DID id, taken out of the cache: returns a new reference (caller
 * decrefs) or NULL when absent, already taken or older than max_age_s at now. */
json_t *didww_prefetch_take(struct didww_prefetch *p, const char *id, double now);

/* A number's resolution: 1 with its DID id in did[did_len], 0 when a fresh complete
 * answer had no DID with that number, -1 when unknown (not asked, or stale). */
int didww_prefetch_number(struct didww_prefetch *p, const char *number, double now, char *did,
                          size_t did_len);

/* Frees p; NULL is a no-op. */
void didww_prefetch_destroy(struct didww_prefetch *p);

#endif
