/*
 * Unit tests for src/store/sqlite/bloom.c: no false negatives for 4096 event-id-like keys, an empty
 * filter that holds nothing, a measured false-positive rate near the theory for 8192
 * bytes / 7 probes, the hash and the probe layout pinned to fixed values (both are part
 * of the SQLite store's on-disk format), and the hash's sensitivity to every byte and to
 * the length of binary keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "store/sqlite/bloom.h"

#define FILTER_BYTES 8192
#define FILTER_PROBES 7
#define FILTER_KEYS 4096
#define KEY_LEN 64

/* splitmix64: a bijection on uint64_t, so distinct inputs give distinct outputs. */
static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* Writes the 64-hex-char key number n (like a SHA-256 event id) into out[KEY_LEN + 1].
 * Its first 16 characters are splitmix64(4n), so distinct n give distinct keys. */
static void hex_key(uint64_t n, char *out)
{
    for (int w = 0; w < 4; w++)
        snprintf(out + 16 * w, 17, "%016llx", (unsigned long long)splitmix64(4 * n + (uint64_t)w));
}

static uint64_t key_hash(uint64_t n)
{
    char key[KEY_LEN + 1];
    hex_key(n, key);
    return bloom_hash(key, KEY_LEN);
}

static void test_no_false_negatives(void **state)
{
    static unsigned char bits[FILTER_BYTES];
    (void)state;
    memset(bits, 0, sizeof bits);
    for (uint64_t n = 0; n < FILTER_KEYS; n++)
        bloom_add(bits, sizeof bits, key_hash(n), FILTER_PROBES);
    for (uint64_t n = 0; n < FILTER_KEYS; n++) {
        if (!bloom_may_contain(bits, sizeof bits, key_hash(n), FILTER_PROBES))
            fail_msg("key %llu was added but is reported absent", (unsigned long long)n);
    }
}

static void test_empty_filter_contains_nothing(void **state)
{
    static unsigned char bits[FILTER_BYTES];
    (void)state;
    memset(bits, 0, sizeof bits);
    for (uint64_t n = 0; n < 10000; n++) {
        if (bloom_may_contain(bits, sizeof bits, key_hash(n), FILTER_PROBES))
            fail_msg("empty filter claims key %llu", (unsigned long long)n);
    }
    /* one probe and a one-byte filter too */
    unsigned char one = 0;
    assert_false(bloom_may_contain(&one, 1, bloom_hash("x", 1), 1));
}

static void test_false_positive_rate(void **state)
{
    static unsigned char bits[FILTER_BYTES];
    (void)state;
    memset(bits, 0, sizeof bits);
    for (uint64_t n = 0; n < FILTER_KEYS; n++)
        bloom_add(bits, sizeof bits, key_hash(n), FILTER_PROBES);

    /* Keys from a disjoint range of n, so none of them was added. The theory,
     * (1 - e^(-7 * 4096 / 65536))^7, gives about 0.07%; allow 0.5%. */
    const uint64_t trials = 100000;
    uint64_t hits = 0;
    for (uint64_t n = 1ULL << 40; n < (1ULL << 40) + trials; n++)
        hits += bloom_may_contain(bits, sizeof bits, key_hash(n), FILTER_PROBES);
    if (hits * 1000 >= trials * 5)
        fail_msg("false-positive rate %llu / %llu is above 0.5%%", (unsigned long long)hits,
                 (unsigned long long)trials);
}

/*
 * The hash is part of the on-disk format (BLOOM_SCHEME 1): the SQLite store keeps the
 * filters it built. If these values change, every filter already on disk answers "absent"
 * for keys it holds. Never update them to make this test pass: a new hash needs a new
 * scheme number. The values were computed once from the implementation and checked
 * against an independent FNV-1a + fmix64 implementation.
 */
static void test_hash_pinned(void **state)
{
    (void)state;
    assert_int_equal(BLOOM_SCHEME, 1);
    assert_true(bloom_hash("", 0) == 0xefd01f60ba992926ULL);
    assert_true(bloom_hash("a", 1) == 0x82a2a958a9bece5bULL);
    assert_true(bloom_hash("hookline", 8) == 0xaeeec46c32fd11daULL);
    assert_true(bloom_hash("evt_0123456789abcdef", 20) == 0xa8ade120b0782371ULL);
    assert_true(bloom_hash("a\0b", 3) == 0xab78f5eca36d0e2bULL);
    /* deterministic: the same bytes at another address hash the same */
    char copy[] = "hookline";
    assert_true(bloom_hash(copy, 8) == bloom_hash("hookline", 8));
}

/* The probe layout is on-disk format too: probe i sets bit (lo + i * (hi | 1)) mod nbits,
 * bit b being (1 << (b % 8)) in byte b / 8. */
static void test_probe_layout_pinned(void **state)
{
    static const uint64_t hashes[] = {0x0000000500000003ULL, 0xefd01f60ba992926ULL,
                                      0xffffffffffffffffULL, 0};
    unsigned char bits[64 + 2], want[64 + 2];
    (void)state;
    for (size_t k = 0; k < sizeof hashes / sizeof hashes[0]; k++) {
        uint64_t h = hashes[k];
        uint64_t lo = h & 0xffffffffULL, hi = (h >> 32) | 1;
        /* bytes 0 and 65 are guards: nothing may be written outside the filter */
        memset(bits, 0xA5, sizeof bits);
        memset(want, 0xA5, sizeof want);
        memset(bits + 1, 0, 64);
        memset(want + 1, 0, 64);
        for (uint64_t i = 0; i < 5; i++) {
            uint64_t b = (lo + i * hi) % (64 * 8);
            want[1 + b / 8] |= (unsigned char)(1u << (b % 8));
        }
        bloom_add(bits + 1, 64, h, 5);
        assert_memory_equal(bits, want, sizeof bits);
        assert_true(bloom_may_contain(bits + 1, 64, h, 5));
    }
    /* 0x0000000500000003: probes 3, 8, 13 -> byte 0 bit 3, byte 1 bits 0 and 5 */
    unsigned char small[4] = {0};
    bloom_add(small, sizeof small, 0x0000000500000003ULL, 3);
    assert_int_equal(small[0], 0x08);
    assert_int_equal(small[1], 0x21);
    assert_int_equal(small[2], 0);
    assert_int_equal(small[3], 0);
}

static void test_may_contain_needs_every_probe(void **state)
{
    unsigned char bits[16] = {0};
    uint64_t h = 0x0000000500000003ULL; /* probes at bits 3, 8, 13, 18 of 128 */
    (void)state;
    bloom_add(bits, sizeof bits, h, 4);
    assert_true(bloom_may_contain(bits, sizeof bits, h, 4));
    bits[2] &= (unsigned char)~(1u << 2); /* clear bit 18, the last probe */
    assert_false(bloom_may_contain(bits, sizeof bits, h, 4));
    /* the first three probes are still set */
    assert_true(bloom_may_contain(bits, sizeof bits, h, 3));
}

static void test_one_byte_changes_hash(void **state)
{
    char key[KEY_LEN + 1];
    (void)state;
    hex_key(12345, key);
    uint64_t base = bloom_hash(key, KEY_LEN);
    for (int pos = 0; pos < KEY_LEN; pos++) {
        char saved = key[pos];
        for (int c = 0; c < 256; c++) {
            if ((char)c == saved)
                continue;
            key[pos] = (char)c;
            if (bloom_hash(key, KEY_LEN) == base)
                fail_msg("byte %d set to 0x%02x does not change the hash", pos, c);
        }
        key[pos] = saved;
    }
    assert_true(bloom_hash(key, KEY_LEN) == base);
}

static void test_length_matters(void **state)
{
    static const unsigned char zeros[4] = {0, 0, 0, 0};
    (void)state;
    /* Binary keys: a trailing or embedded NUL is part of the key. */
    assert_true(bloom_hash("a", 1) != bloom_hash("a\0", 2));
    assert_true(bloom_hash("a\0b", 3) != bloom_hash("a", 1));
    assert_true(bloom_hash("a\0b", 3) != bloom_hash("a\0c", 3));
    assert_true(bloom_hash("ab", 2) != bloom_hash("a\0b", 3));
    uint64_t seen[5];
    for (size_t len = 0; len <= 4; len++) {
        seen[len] = bloom_hash(zeros, len);
        for (size_t j = 0; j < len; j++)
            assert_true(seen[j] != seen[len]);
    }
    /* only the first len bytes count */
    assert_true(bloom_hash("abcXYZ", 3) == bloom_hash("abc", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_false_negatives),
        cmocka_unit_test(test_empty_filter_contains_nothing),
        cmocka_unit_test(test_false_positive_rate),
        cmocka_unit_test(test_hash_pinned),
        cmocka_unit_test(test_probe_layout_pinned),
        cmocka_unit_test(test_may_contain_needs_every_probe),
        cmocka_unit_test(test_one_byte_changes_hash),
        cmocka_unit_test(test_length_matters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
