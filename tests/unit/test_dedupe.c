/*
 * Unit tests for src/store/sqlite/dedupe.c: the key fingerprint (never 0, source/event_id boundary
 * kept), add and find, several rows under one fingerprint returned newest first with the
 * full count, growth to 100,000 keys, expiry by receive time (explicit and while adding),
 * the max_keys bound evicting the oldest keys first, dedupe_oldest and destroy(NULL).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/sqlite/dedupe.h"

/* Key i's fingerprint: multiplying by an odd constant is a bijection, so distinct i
 * give distinct fingerprints, and the +1 keeps small i away from 0. */
static uint64_t fp_of(uint64_t i)
{
    return i * 0x9E3779B97F4A7C15ULL + 1;
}

/* 1 when key i is held with exactly row `row`, 0 when it is absent; fails otherwise. */
static int holds(const struct dedupe *d, uint64_t i, int64_t row)
{
    int64_t rows[4] = {-1, -1, -1, -1};
    size_t n = dedupe_find(d, fp_of(i), rows, 4);
    if (n == 0)
        return 0;
    if (n != 1 || rows[0] != row)
        fail_msg("key %llu: %zu rows, first %lld, want 1 row %lld", (unsigned long long)i, n,
                 (long long)rows[0], (long long)row);
    return 1;
}

static void test_fingerprint(void **state)
{
    (void)state;
    assert_true(dedupe_fingerprint("ab", "c") != dedupe_fingerprint("a", "bc"));
    assert_true(dedupe_fingerprint("", "abc") != dedupe_fingerprint("abc", ""));
    assert_true(dedupe_fingerprint("github", "1") != dedupe_fingerprint("github", "2"));
    assert_true(dedupe_fingerprint("github", "1") != dedupe_fingerprint("gitlab", "1"));
    assert_true(dedupe_fingerprint("github", "evt-1") == dedupe_fingerprint("github", "evt-1"));
    assert_true(dedupe_fingerprint("", "") != 0);

    char id[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(id, sizeof id, "evt-%d", i);
        if (dedupe_fingerprint("src", id) == 0)
            fail_msg("fingerprint of (src, %s) is 0", id);
    }

    /* The store keeps fingerprints on disk (events.key_fp), so the function is
     * pinned. These values were also computed by an independent Python copy of
     * the documented scheme (FNV-1a 64 + avalanche per part, combined, mixed). */
    assert_true(dedupe_fingerprint("zendesk", "evt-1") == 0x996bd148fa0b6c4eULL);
    assert_true(dedupe_fingerprint("github", "4f1c2e") == 0xe49bc1d6f4150410ULL);
    assert_true(dedupe_fingerprint("", "") == 0x7f5776754d0e1ba0ULL);

    /* Long keys take the same path and keep the boundary too. */
    char a[701], b[701];
    memset(a, 'a', 600);
    a[600] = 0;
    memset(b, 'a', 599);
    b[599] = 0;
    assert_true(dedupe_fingerprint(a, "b") != dedupe_fingerprint(b, "ab"));
    assert_true(dedupe_fingerprint(a, "b") == dedupe_fingerprint(a, "b"));
    assert_true(dedupe_fingerprint(a, "b") != 0);
}

static void test_add_then_find(void **state)
{
    struct dedupe *d = dedupe_create(1000);
    int64_t rows[4] = {0};
    (void)state;
    assert_non_null(d);
    assert_int_equal(dedupe_count(d), 0);
    assert_int_equal(dedupe_find(d, dedupe_fingerprint("s", "e"), rows, 4), 0);

    uint64_t fp = dedupe_fingerprint("github", "evt-1");
    assert_int_equal(dedupe_add(d, fp, 42, 1000.5, 0), 0);
    assert_int_equal(dedupe_count(d), 1);
    assert_int_equal(dedupe_find(d, fp, rows, 4), 1);
    assert_int_equal(rows[0], 42);
    /* a neighbouring key is not a match */
    assert_int_equal(dedupe_find(d, dedupe_fingerprint("github", "evt-2"), rows, 4), 0);
    dedupe_destroy(d);
}

static void test_same_fingerprint_newest_first(void **state)
{
    static const int64_t added[] = {5, 9, 1, 7, 3, 11, 2};
    struct dedupe *d = dedupe_create(1000);
    const uint64_t fp = 0x1234;
    /* Same low bits, so same start slot in any table up to 2^32 slots: must not mix. */
    const uint64_t other = fp + (1ULL << 32);
    int64_t rows[16];
    (void)state;
    for (size_t i = 0; i < sizeof added / sizeof added[0]; i++) {
        assert_int_equal(dedupe_add(d, fp, added[i], 100.0 + (double)i, 0), 0);
        assert_int_equal(dedupe_add(d, other, 1000 + added[i], 100.0 + (double)i, 0), 0);
    }
    assert_int_equal(dedupe_count(d), 14);

    /* all of them, largest row first */
    memset(rows, 0, sizeof rows);
    assert_int_equal(dedupe_find(d, fp, rows, 16), 7);
    static const int64_t want[] = {11, 9, 7, 5, 3, 2, 1};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(rows[i], want[i]);

    /* fewer slots than rows: the count still says 7, and the newest three are kept */
    int64_t three[4] = {-1, -1, -1, -1};
    assert_int_equal(dedupe_find(d, fp, three, 3), 7);
    assert_int_equal(three[0], 11);
    assert_int_equal(three[1], 9);
    assert_int_equal(three[2], 7);
    assert_int_equal(three[3], -1); /* nothing written past max */

    int64_t one = -1;
    assert_int_equal(dedupe_find(d, fp, &one, 1), 7);
    assert_int_equal(one, 11);
    /* max 0 only counts */
    assert_int_equal(dedupe_find(d, fp, NULL, 0), 7);

    /* the colliding key keeps its own rows */
    assert_int_equal(dedupe_find(d, other, rows, 16), 7);
    assert_int_equal(rows[0], 1011);
    assert_int_equal(rows[6], 1001);
    dedupe_destroy(d);
}

static void test_find_absent(void **state)
{
    struct dedupe *d = dedupe_create(1000);
    int64_t rows[2] = {-7, -7};
    (void)state;
    for (uint64_t i = 0; i < 500; i++)
        dedupe_add(d, fp_of(i), (int64_t)i, 10.0, 0);
    for (uint64_t i = 500; i < 5000; i++)
        assert_int_equal(dedupe_find(d, fp_of(i), rows, 2), 0);
    assert_int_equal(rows[0], -7);
    assert_int_equal(rows[1], -7);
    dedupe_destroy(d);
}

static void test_growth(void **state)
{
    const uint64_t n = 100000;
    struct dedupe *d = dedupe_create(1000000);
    (void)state;
    assert_non_null(d);
    for (uint64_t i = 0; i < n; i++) {
        long ev = dedupe_add(d, fp_of(i), (int64_t)i + 1, 1000.0 + (double)i, 0);
        if (ev != 0)
            fail_msg("add %llu returned %ld", (unsigned long long)i, ev);
    }
    assert_int_equal(dedupe_count(d), n);
    for (uint64_t i = 0; i < n; i++) {
        if (!holds(d, i, (int64_t)i + 1))
            fail_msg("key %llu lost after growth", (unsigned long long)i);
    }
    for (uint64_t i = n; i < n + 1000; i++)
        assert_int_equal(holds(d, i, 0), 0);
    assert_true(dedupe_oldest(d) == 1000.0);
    dedupe_destroy(d);
}

static void test_expire(void **state)
{
    struct dedupe *d = dedupe_create(100000);
    (void)state;
    for (uint64_t i = 0; i < 2000; i++)
        dedupe_add(d, fp_of(i), (int64_t)i, 1000.0 + (double)i, 0);
    /* two rows under one fingerprint on each side of the cut */
    dedupe_add(d, 0xABCD, 7001, 1200.0, 0);
    dedupe_add(d, 0xABCD, 7002, 2800.0, 0);
    assert_int_equal(dedupe_count(d), 2002);

    /* nothing older than everything: no change */
    dedupe_expire(d, 500.0);
    assert_int_equal(dedupe_count(d), 2002);

    dedupe_expire(d, 2500.0);
    assert_int_equal(dedupe_count(d), 501); /* 2500..2999 and row 7002 */
    for (uint64_t i = 0; i < 1500; i++) {
        if (holds(d, i, (int64_t)i))
            fail_msg("key %llu (at %g) survived expiry", (unsigned long long)i, 1000.0 + i);
    }
    for (uint64_t i = 1500; i < 2000; i++) {
        if (!holds(d, i, (int64_t)i))
            fail_msg("key %llu (at %g) was expired", (unsigned long long)i, 1000.0 + i);
    }
    int64_t rows[4];
    assert_int_equal(dedupe_find(d, 0xABCD, rows, 4), 1);
    assert_int_equal(rows[0], 7002);
    assert_true(dedupe_oldest(d) == 2500.0);

    /* entries keep being added after an expiry */
    assert_int_equal(dedupe_add(d, fp_of(5000), 5000, 3000.0, 0), 0);
    assert_int_equal(holds(d, 5000, 5000), 1);

    dedupe_expire(d, 1e9);
    assert_int_equal(dedupe_count(d), 0);
    assert_int_equal(dedupe_find(d, 0xABCD, rows, 4), 0);
    assert_true(dedupe_oldest(d) == 0);
    dedupe_destroy(d);
}

static void test_add_drops_expired_when_full(void **state)
{
    struct dedupe *d = dedupe_create(1000);
    (void)state;
    for (uint64_t i = 0; i < 1000; i++)
        assert_int_equal(dedupe_add(d, fp_of(i), (int64_t)i, 1000.0 + (double)i, 0), 0);
    assert_int_equal(dedupe_count(d), 1000);

    /* Full: the 500 entries received before 1500 make room, and none of them counts as
     * evicted before its expiry. */
    assert_int_equal(dedupe_add(d, fp_of(1000), 1000, 3000.0, 1500.0), 0);
    assert_int_equal(dedupe_count(d), 501);
    for (uint64_t i = 0; i < 500; i++)
        assert_int_equal(holds(d, i, (int64_t)i), 0);
    for (uint64_t i = 500; i <= 1000; i++)
        assert_int_equal(holds(d, i, (int64_t)i), 1);
    assert_true(dedupe_oldest(d) == 1500.0);
    dedupe_destroy(d);
}

static void test_max_keys_bound(void **state)
{
    const uint64_t n = 5000;
    struct dedupe *d = dedupe_create(1000);
    long evicted = 0;
    int evicting_adds = 0;
    (void)state;
    for (uint64_t i = 0; i < n; i++) {
        long ev = dedupe_add(d, fp_of(i), (int64_t)i, 1.0 + (double)i, 0);
        assert_true(ev >= 0);
        if (ev > 0)
            evicting_adds++;
        evicted += ev;
        if (dedupe_count(d) > 1000)
            fail_msg("count %zu above max_keys after add %llu", dedupe_count(d),
                     (unsigned long long)i);
    }
    assert_true(evicting_adds > 0);
    /* nothing expired, so every key not held was reported evicted */
    assert_int_equal((uint64_t)evicted + dedupe_count(d), n);
    /* about an eighth goes at a time, not the whole set */
    assert_true(dedupe_count(d) >= 850);

    /* What is held is exactly the newest keys: a suffix of the sequence. */
    uint64_t first = n;
    for (uint64_t i = 0; i < n; i++) {
        if (holds(d, i, (int64_t)i)) {
            first = i;
            break;
        }
    }
    assert_true(first < n);
    assert_int_equal(n - first, dedupe_count(d));
    for (uint64_t i = first; i < n; i++) {
        if (!holds(d, i, (int64_t)i))
            fail_msg("key %llu newer than held key %llu is gone", (unsigned long long)i,
                     (unsigned long long)first);
    }
    assert_int_equal(holds(d, 0, 0), 0);
    assert_int_equal(holds(d, n - 1, (int64_t)n - 1), 1);
    assert_true(dedupe_oldest(d) == 1.0 + (double)first);
    dedupe_destroy(d);
}

static void test_small_max_keys(void **state)
{
    struct dedupe *d = dedupe_create(16);
    (void)state;
    for (uint64_t i = 0; i < 200; i++) {
        assert_true(dedupe_add(d, fp_of(i), (int64_t)i, 10.0 + (double)i, 0) >= 0);
        assert_true(dedupe_count(d) <= 16);
    }
    assert_int_equal(holds(d, 199, 199), 1);
    assert_int_equal(holds(d, 0, 0), 0);
    dedupe_destroy(d);
}

static void test_oldest(void **state)
{
    struct dedupe *d = dedupe_create(1000);
    (void)state;
    assert_true(dedupe_oldest(d) == 0);
    dedupe_add(d, fp_of(1), 1, 50.0, 0);
    assert_true(dedupe_oldest(d) == 50.0);
    dedupe_add(d, fp_of(2), 2, 20.25, 0);
    dedupe_add(d, fp_of(3), 3, 80.0, 0);
    assert_true(dedupe_oldest(d) == 20.25);
    dedupe_expire(d, 30.0);
    assert_true(dedupe_oldest(d) == 50.0);
    dedupe_destroy(d);
}

/* Receive times often tie (a burst inside one clock tick, whole-second CLI
 * times): eviction still drops only about an eighth, never the whole set. */
static void test_eviction_with_tied_times(void **state)
{
    (void)state;
    struct dedupe *d = dedupe_create(1000);
    assert_non_null(d);
    long evicted = 0;
    for (uint64_t i = 0; i < 1001; i++) {
        long e = dedupe_add(d, fp_of(i), (int64_t)i, 100.0, 0);
        assert_true(e >= 0);
        evicted += e;
    }
    assert_true(evicted > 0 && evicted <= 1000 / 8 + 1);
    assert_int_equal(dedupe_count(d) + (size_t)evicted, 1001);
    /* The newest key is always kept. */
    int64_t row = 0;
    assert_int_equal(dedupe_find(d, fp_of(1000), &row, 1), 1);
    assert_int_equal(row, 1000);
    dedupe_destroy(d);
}

/* Times at or below zero (a broken clock, bad stored data) must not disable
 * the bound, and the oldest of them is reported as such. */
static void test_bound_holds_for_zero_and_negative_times(void **state)
{
    (void)state;
    struct dedupe *d = dedupe_create(1000);
    assert_non_null(d);
    for (uint64_t i = 0; i < 3000; i++) {
        assert_true(dedupe_add(d, fp_of(i), (int64_t)i, 0.0, -1.0) >= 0);
        assert_true(dedupe_count(d) <= 1000);
    }
    assert_true(dedupe_add(d, fp_of(5000), 5000, -3.0, -10.0) >= 0);
    assert_true(dedupe_oldest(d) == -3.0);
    dedupe_destroy(d);
}

static void test_destroy_null(void **state)
{
    (void)state;
    dedupe_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_add_then_find),
        cmocka_unit_test(test_same_fingerprint_newest_first),
        cmocka_unit_test(test_find_absent),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_expire),
        cmocka_unit_test(test_add_drops_expired_when_full),
        cmocka_unit_test(test_max_keys_bound),
        cmocka_unit_test(test_small_max_keys),
        cmocka_unit_test(test_oldest),
        cmocka_unit_test(test_eviction_with_tied_times),
        cmocka_unit_test(test_bound_holds_for_zero_and_negative_times),
        cmocka_unit_test(test_destroy_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
