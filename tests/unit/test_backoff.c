/*
 * Unit tests for src/backoff.c: the classification (docs/contract.md section 5)
 * of every listed status (and of statuses it does not list), full-jitter bounds with a fake random
 * source, the max_ms cap and huge attempt numbers, Retry-After as delta-seconds and as each of the
 * three HTTP-date forms against a fixed clock, and Retry-After as a floor in
 * backoff_next_ms.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "backoff.h"

/* Wed, 21 Oct 2015 07:28:00 GMT */
#define NOW_2015 1445412480LL
/* Sun, 06 Nov 1994 08:49:37 GMT */
#define T_1994 784111777LL

/* Fake random source: returns the double ctx points at. */
static double fixed_rand(void *ctx)
{
    return *(const double *)ctx;
}

/* A seeded xorshift, so the sweep below is reproducible. */
static double xorshift_rand(void *ctx)
{
    uint64_t *s = ctx;
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0; /* [0, 1) */
}

static void test_classify_table(void **state)
{
    static const struct {
        int status;
        enum backoff_class want;
    } table[] = {
        {0, BACKOFF_RETRY},   {200, BACKOFF_DONE},  {201, BACKOFF_DONE},  {202, BACKOFF_DONE},
        {204, BACKOFF_DONE},  {299, BACKOFF_DONE},  {408, BACKOFF_RETRY}, {429, BACKOFF_RETRY},
        {500, BACKOFF_RETRY}, {502, BACKOFF_RETRY}, {503, BACKOFF_RETRY}, {504, BACKOFF_RETRY},
        {401, BACKOFF_PAUSE}, {400, BACKOFF_FINAL}, {403, BACKOFF_FINAL}, {404, BACKOFF_FINAL},
        {409, BACKOFF_FINAL}, {422, BACKOFF_FINAL}, /* every other non-2xx is final too: */
        {100, BACKOFF_FINAL}, {199, BACKOFF_FINAL}, {300, BACKOFF_FINAL}, {301, BACKOFF_FINAL},
        {304, BACKOFF_FINAL}, {402, BACKOFF_FINAL}, {405, BACKOFF_FINAL}, {406, BACKOFF_FINAL},
        {410, BACKOFF_FINAL}, {415, BACKOFF_FINAL}, {499, BACKOFF_FINAL}, {501, BACKOFF_FINAL},
        {505, BACKOFF_FINAL}, {599, BACKOFF_FINAL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (backoff_classify(table[i].status) != table[i].want)
            fail_msg("status %d: got %d, want %d", table[i].status,
                     (int)backoff_classify(table[i].status), (int)table[i].want);
    }
}

static void test_jitter_bounds(void **state)
{
    double zero = 0.0, top = 0.999999, half = 0.5;
    (void)state;

    /* rand 0 -> no wait at all (full jitter starts at 0). */
    for (int a = 1; a <= 20; a++)
        assert_int_equal(backoff_delay_ms(a, 1000, 600000, fixed_rand, &zero), 0);
    /* rand just under 1 -> the whole window initial * 2^(attempt-1). */
    assert_int_equal(backoff_delay_ms(1, 1000, 600000, fixed_rand, &top), 1000);
    assert_int_equal(backoff_delay_ms(2, 1000, 600000, fixed_rand, &top), 2000);
    assert_int_equal(backoff_delay_ms(3, 1000, 600000, fixed_rand, &top), 4000);
    assert_int_equal(backoff_delay_ms(10, 1000, 600000, fixed_rand, &top), 512000);
    assert_int_equal(backoff_delay_ms(3, 1000, 600000, fixed_rand, &half), 2000);
    /* attempt < 1 is the first retry */
    assert_int_equal(backoff_delay_ms(0, 1000, 600000, fixed_rand, &top), 1000);
    assert_int_equal(backoff_delay_ms(-5, 1000, 600000, fixed_rand, &top), 1000);
}

static void test_jitter_sweep_stays_in_window(void **state)
{
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    int64_t lo_seen = INT64_MAX, hi_seen = 0;
    (void)state;

    for (int a = 1; a <= 40; a++) {
        int64_t window = a >= 21 ? 600000 : 500LL << (a - 1);
        if (window > 600000)
            window = 600000;
        for (int k = 0; k < 2000; k++) {
            int64_t d = backoff_delay_ms(a, 500, 600000, xorshift_rand, &seed);
            assert_in_range(d, 0, window);
            if (a == 1) {
                lo_seen = d < lo_seen ? d : lo_seen;
                hi_seen = d > hi_seen ? d : hi_seen;
            }
        }
    }
    /* Really spread over the window, not stuck at one end. */
    assert_true(lo_seen < 50);
    assert_true(hi_seen > 450);
}

static void test_cap_at_max(void **state)
{
    double top = 0.999999;
    (void)state;
    assert_int_equal(backoff_delay_ms(11, 1000, 600000, fixed_rand, &top), 600000);
    assert_int_equal(backoff_delay_ms(50, 1000, 600000, fixed_rand, &top), 600000);
    /* initial above max: max wins from the first attempt */
    assert_int_equal(backoff_delay_ms(1, 5000, 3000, fixed_rand, &top), 3000);
    /* a random source that breaks its promise (>= 1) is clamped to the window */
    double one = 1.0, big = 7.5;
    assert_int_equal(backoff_delay_ms(1, 1000, 600000, fixed_rand, &one), 1000);
    assert_int_equal(backoff_delay_ms(1, 1000, 600000, fixed_rand, &big), 1000);
    /* nonsense parameters give no wait rather than a negative one */
    assert_int_equal(backoff_delay_ms(3, 0, 600000, fixed_rand, &top), 0);
    assert_int_equal(backoff_delay_ms(3, 1000, -1, fixed_rand, &top), 0);
}

static void test_huge_attempts_do_not_overflow(void **state)
{
    double top = 0.999999, zero = 0.0;
    (void)state;
    assert_int_equal(backoff_delay_ms(INT_MAX, 1000, 600000, fixed_rand, &top), 600000);
    assert_int_equal(backoff_delay_ms(INT_MAX, 1000, 600000, fixed_rand, &zero), 0);
    /* With no effective cap the window saturates at INT64_MAX instead of wrapping. */
    int64_t d = backoff_delay_ms(INT_MAX, 1000, INT64_MAX, fixed_rand, &top);
    assert_true(d > INT64_MAX / 2);
    assert_int_equal(backoff_delay_ms(100, INT64_MAX / 3, INT64_MAX, fixed_rand, &top) >= 0, 1);
    assert_int_equal(backoff_delay_ms(64, 1, INT64_MAX, fixed_rand, &zero), 0);
}

static void test_retry_after_seconds(void **state)
{
    (void)state;
    assert_int_equal(backoff_retry_after_ms("120", NOW_2015), 120000);
    assert_int_equal(backoff_retry_after_ms("0", NOW_2015), 0);
    assert_int_equal(backoff_retry_after_ms(" 7\t", NOW_2015), 7000);
    assert_int_equal(backoff_retry_after_ms("007", NOW_2015), 7000);
    assert_int_equal(backoff_retry_after_ms("86400", NOW_2015), 86400000);
    /* absurd values are cut to one day */
    assert_int_equal(backoff_retry_after_ms("86401", NOW_2015), BACKOFF_RETRY_AFTER_MAX_MS);
    assert_int_equal(backoff_retry_after_ms("9223372036854775807", NOW_2015),
                     BACKOFF_RETRY_AFTER_MAX_MS);
    assert_int_equal(backoff_retry_after_ms("99999999999999999999999999999999999999999999999"
                                            "9999999999999999999999999999999999",
                                            NOW_2015),
                     BACKOFF_RETRY_AFTER_MAX_MS);
}

static void test_retry_after_garbage(void **state)
{
    static const char *const bad[] = {
        "",
        "   ",
        "abc",
        "-5",
        "+5",
        "1.5",
        "12a",
        "0x10",
        "1 2",
        "Wed, 21 Oct 2015 07:30:00 GMT x",
        "Wed, 21 Oct 2015 07:30:00",
        "Wed, 21 Oct 2015 07:30:00 UTC",
        "Xyz, 21 Oct 2015 07:30:00 GMT",
        "Wed, 32 Oct 2015 07:30:00 GMT",
        "Wed, 29 Feb 2015 07:30:00 GMT",
        "Wed, 21 Foo 2015 07:30:00 GMT",
        "Wed, 21 Oct 2015 24:00:00 GMT",
        "Wed, 21 Oct 2015 07:60:00 GMT",
        "Wed, 1 Oct 2015 07:30:00 GMT",
        "Wed, 21 Oct 15 07:30:00 GMT",
        "Wednesday, 21-Oct-2015 07:30:00 GMT",
        "Wed Oct 21 07:30:00 15",
        "Wed Oct 21 07:30:00 2015 GMT",
        "2015-10-21T07:30:00Z",
    };
    (void)state;
    assert_int_equal(backoff_retry_after_ms(NULL, NOW_2015), -1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (backoff_retry_after_ms(bad[i], NOW_2015) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
    }
}

static void test_retry_after_dates(void **state)
{
    (void)state;
    /* IMF-fixdate, two minutes after the fixed now */
    assert_int_equal(backoff_retry_after_ms("Wed, 21 Oct 2015 07:30:00 GMT", NOW_2015), 120000);
    assert_int_equal(backoff_retry_after_ms("  Wed, 21 Oct 2015 07:28:01 GMT  ", NOW_2015), 1000);
    /* the weekday is not checked against the date (RFC 9110 lets a recipient ignore it) */
    assert_int_equal(backoff_retry_after_ms("Mon, 21 Oct 2015 07:30:00 GMT", NOW_2015), 120000);
    /* past and present dates: retry now */
    assert_int_equal(backoff_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", NOW_2015), 0);
    assert_int_equal(backoff_retry_after_ms("Wed, 21 Oct 2015 07:00:00 GMT", NOW_2015), 0);
    assert_int_equal(backoff_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", NOW_2015), 0);
    /* far future: cut to one day */
    assert_int_equal(backoff_retry_after_ms("Fri, 01 Jan 2100 00:00:00 GMT", NOW_2015),
                     BACKOFF_RETRY_AFTER_MAX_MS);
    /* the RFC 9110 examples, one per form, ten seconds ahead */
    assert_int_equal(backoff_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", T_1994 - 10), 10000);
    assert_int_equal(backoff_retry_after_ms("Sunday, 06-Nov-94 08:49:37 GMT", T_1994 - 10), 10000);
    assert_int_equal(backoff_retry_after_ms("Sun Nov  6 08:49:37 1994", T_1994 - 10), 10000);
    /* asctime with a two-digit day, RFC 850 in 2015 */
    assert_int_equal(backoff_retry_after_ms("Wed Oct 21 07:30:00 2015", NOW_2015), 120000);
    assert_int_equal(backoff_retry_after_ms("Wednesday, 21-Oct-15 07:30:00 GMT", NOW_2015), 120000);
    /* RFC 850 two-digit year: "94" seen in 2015 is 1994 (2094 is > 50 years ahead), "30"
     * is 2030 */
    assert_int_equal(backoff_retry_after_ms("Sunday, 06-Nov-94 08:49:37 GMT", NOW_2015), 0);
    assert_int_equal(backoff_retry_after_ms("Monday, 21-Oct-30 07:28:00 GMT", NOW_2015),
                     BACKOFF_RETRY_AFTER_MAX_MS);
    /* leap day exists in 2000 */
    assert_int_equal(backoff_retry_after_ms("Tue, 29 Feb 2000 00:00:05 GMT", 951782400LL), 5000);
}

static void test_next_ms_floors_by_retry_after(void **state)
{
    double zero = 0.0, top = 0.999999;
    (void)state;
    /* no Retry-After: plain jitter */
    assert_int_equal(backoff_next_ms(1, 1000, 600000, -1, fixed_rand, &top), 1000);
    assert_int_equal(backoff_next_ms(1, 1000, 600000, -1, fixed_rand, &zero), 0);
    /* Retry-After floors the jitter */
    assert_int_equal(backoff_next_ms(1, 1000, 600000, 5000, fixed_rand, &zero), 5000);
    assert_int_equal(backoff_next_ms(1, 1000, 600000, 0, fixed_rand, &zero), 0);
    /* ...but does not lower it */
    assert_int_equal(backoff_next_ms(3, 1000, 600000, 100, fixed_rand, &top), 4000);
    /* the server's word beats max_ms */
    assert_int_equal(backoff_next_ms(1, 1000, 60000, 120000, fixed_rand, &top), 120000);
    /* ...up to the one-day cap */
    assert_int_equal(backoff_next_ms(1, 1000, 60000, INT64_MAX, fixed_rand, &top),
                     BACKOFF_RETRY_AFTER_MAX_MS);
    /* end to end with a parsed header */
    assert_int_equal(
        backoff_next_ms(1, 1000, 600000,
                        backoff_retry_after_ms("Wed, 21 Oct 2015 07:30:00 GMT", NOW_2015),
                        fixed_rand, &zero),
        120000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_jitter_sweep_stays_in_window),
        cmocka_unit_test(test_cap_at_max),
        cmocka_unit_test(test_huge_attempts_do_not_overflow),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_garbage),
        cmocka_unit_test(test_retry_after_dates),
        cmocka_unit_test(test_next_ms_floors_by_retry_after),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
