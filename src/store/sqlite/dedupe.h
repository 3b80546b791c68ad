/*
 * dedupe: the set of recent webhook keys (source + event id) that a new event is
 * checked against, kept in memory by the SQLite store's writer so that storing
 * an event inserts no random-key index entry. It holds a 64-bit fingerprint, the
 * event's row and its receive time per key; a fingerprint match is only a
 * candidate, which the store confirms by reading that row. Bounded: at most
 * max_keys entries, the oldest evicted first. Not thread-safe: one owner thread.
 */
#ifndef HOOKLINE_DEDUPE_H
#define HOOKLINE_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

struct dedupe;

/* A new, empty set holding at most max_keys keys (>= 16). Returns NULL on out
 * of memory. Caller destroys with dedupe_destroy. */
struct dedupe *dedupe_create(size_t max_keys);

/* Frees d. NULL is a no-op. */
void dedupe_destroy(struct dedupe *d);

/* The fingerprint of (source, event_id); never 0. Both borrowed. The store
 * keeps it with each event, so the function must never change. */
uint64_t dedupe_fingerprint(const char *source, const char *event_id);

/* Writes up to max rows of entries whose fingerprint is fp into rows[], newest
 * first; returns how many there are in all (may exceed max). */
size_t dedupe_find(const struct dedupe *d, uint64_t fp, int64_t *rows, size_t max);

/* Adds fp -> (row, at). Entries received before expire_before are dropped when
 * the set needs room; if it is still full, the oldest eighth is evicted. Returns
 * the number of entries evicted before their expiry (0 normally), or -1 on out
 * of memory (the set is unchanged). */
long dedupe_add(struct dedupe *d, uint64_t fp, int64_t row, double at, double expire_before);

/* Drops every entry received before `before`. */
void dedupe_expire(struct dedupe *d, double before);

/* Entries held. */
size_t dedupe_count(const struct dedupe *d);

/* The receive time of the oldest entry held (0 when empty). */
double dedupe_oldest(const struct dedupe *d);

#endif
