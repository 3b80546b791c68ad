/*
 * bloom: a fixed-size Bloom filter over byte-string keys, used by the SQLite
 * store as a per-block skip index ("which blocks of audit records may hold this
 * event id?") instead of a B-tree index whose random-key inserts cost a page
 * write per record. The hash and probe layout are part of the on-disk format:
 * never change them without a new scheme number. Pure functions; any thread.
 */
#ifndef HOOKLINE_BLOOM_H
#define HOOKLINE_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Scheme 1: 64-bit FNV-1a finished with a MurmurHash3-style mix; probe i is
 * bit (h_lo + i * (h_hi | 1)) mod (nbytes * 8). */
#define BLOOM_SCHEME 1

/* The 64-bit hash of key[0..len) under BLOOM_SCHEME. */
uint64_t bloom_hash(const void *key, size_t len);

/* Sets the probes bits of hash h in bits[0..nbytes) (nbytes > 0). */
void bloom_add(unsigned char *bits, size_t nbytes, uint64_t h, int probes);

/* False when no key of hash h was added to bits; true when one may have been. */
bool bloom_may_contain(const unsigned char *bits, size_t nbytes, uint64_t h, int probes);

#endif
