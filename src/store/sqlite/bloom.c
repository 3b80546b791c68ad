/*
 * bloom: Bloom filter bits and the hash that feeds them (see bloom.h). Stateless:
 * the caller owns the bit array. The hash is not cryptographic; a filter only
 * narrows where to look, and the store always compares the real key after it.
 */
#include "bloom.h"

uint64_t bloom_hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a offset basis */
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL; /* FNV prime */
    }
    /* FNV-1a's low bits mix poorly; finish with a 64-bit avalanche. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static size_t bloom_bit(uint64_t h, int i, size_t nbits)
{
    uint64_t lo = h & 0xffffffffULL, hi = (h >> 32) | 1ULL;
    return (size_t)((lo + (uint64_t)i * hi) % nbits);
}

void bloom_add(unsigned char *bits, size_t nbytes, uint64_t h, int probes)
{
    size_t nbits = nbytes * 8;
    for (int i = 0; i < probes; i++) {
        size_t b = bloom_bit(h, i, nbits);
        bits[b >> 3] |= (unsigned char)(1u << (b & 7));
    }
}

bool bloom_may_contain(const unsigned char *bits, size_t nbytes, uint64_t h, int probes)
{
    size_t nbits = nbytes * 8;
    for (int i = 0; i < probes; i++) {
        size_t b = bloom_bit(h, i, nbits);
        if (!(bits[b >> 3] & (1u << (b & 7))))
            return false;
    }
    return true;
}
