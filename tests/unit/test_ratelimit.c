/*
 * Unit tests for src/ratelimit.c: with a fake clock, 20 slots in a 1000 ms window (the
 * 21st send waits exactly until the first leaves), the margin widening the window, a
 * long simulated run with random arrivals replayed to prove no window ever holds more
 * than N sends, and a clock that steps back. With the real clock, ratelimit_acquire
 * blocks for the window, is thread-safe, and gives up promptly when *stop is set (an
 * atomic set by another thread: the test is clean under ThreadSanitizer). A shared gate
 * (several instances' budget) is asked after the local slot, with the configured count
 * and window, waited on as it says, given up on when *stop is set, and its slot handed
 * back by ratelimit_done (at once by plain ratelimit_acquire).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit.h"

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_create_rejects_nonsense(void **state)
{
    (void)state;
    assert_null(ratelimit_create(0, 0));
    assert_null(ratelimit_create(-3, 50));
    assert_null(ratelimit_create(20, -1));
    ratelimit_destroy(NULL);
}

static void test_twenty_first_waits_for_the_first(void **state)
{
    struct ratelimit *rl = ratelimit_create(20, 0);
    (void)state;
    assert_non_null(rl);

    for (int i = 0; i < 20; i++)
        assert_int_equal(ratelimit_try(rl, 1000 + i), 0);
    /* the 21st at t=1019: the first (t=1000) leaves the window (t-1000, t] at t=2000 */
    assert_int_equal(ratelimit_try(rl, 1019), 981);
    assert_int_equal(ratelimit_try(rl, 1500), 500);
    assert_int_equal(ratelimit_try(rl, 1999), 1);
    assert_int_equal(ratelimit_try(rl, 2000), 0);
    /* that slot is used up; the next one frees when t=1001 leaves */
    assert_int_equal(ratelimit_try(rl, 2000), 1);
    assert_int_equal(ratelimit_try(rl, 2001), 0);
    ratelimit_destroy(rl);
}

static void test_burst_and_margin(void **state)
{
    struct ratelimit *rl = ratelimit_create(20, 100);
    (void)state;
    assert_non_null(rl);
    for (int i = 0; i < 20; i++)
        assert_int_equal(ratelimit_try(rl, 5000), 0);
    assert_int_equal(ratelimit_try(rl, 5000), 1100);
    assert_int_equal(ratelimit_try(rl, 6000), 100);
    /* the whole burst leaves together */
    for (int i = 0; i < 20; i++)
        assert_int_equal(ratelimit_try(rl, 6100), 0);
    assert_int_equal(ratelimit_try(rl, 6100), 1100);
    ratelimit_destroy(rl);
}

static void test_clock_stepping_back_admits_nothing_extra(void **state)
{
    struct ratelimit *rl = ratelimit_create(3, 0);
    (void)state;
    assert_non_null(rl);
    assert_int_equal(ratelimit_try(rl, 10000), 0);
    assert_int_equal(ratelimit_try(rl, 10000), 0);
    assert_int_equal(ratelimit_try(rl, 9000), 0); /* recorded as 10000 */
    assert_true(ratelimit_try(rl, 9000) > 0);
    assert_true(ratelimit_try(rl, 10999) > 0);
    assert_int_equal(ratelimit_try(rl, 11000), 0);
    ratelimit_destroy(rl);
}

/* Replays accepted send times (non-decreasing) and returns the largest number that fall
 * in any window (t - window, t]. */
static int max_in_any_window(const int64_t *t, size_t n, int64_t window)
{
    int worst = 0;
    size_t lo = 0;
    for (size_t hi = 0; hi < n; hi++) {
        while (t[lo] <= t[hi] - window)
            lo++;
        if ((int)(hi - lo + 1) > worst)
            worst = (int)(hi - lo + 1);
    }
    return worst;
}

static void test_random_run_never_exceeds_limit(void **state)
{
    enum { STEPS = 200000, N = 20, MARGIN = 50 };
    const int64_t window = 1000 + MARGIN;
    struct ratelimit *rl = ratelimit_create(N, MARGIN);
    int64_t *sent = calloc(STEPS, sizeof *sent);
    size_t nsent = 0, lo = 0, refused = 0;
    uint64_t seed = 0x2545F4914F6CDD1DULL;
    int64_t t = 0;
    (void)state;
    assert_non_null(rl);
    assert_non_null(sent);

    for (int i = 0; i < STEPS; i++) {
        /* Bursty arrivals: mostly 0..99 ms apart, sometimes a pause of up to 2.5 s. */
        uint64_t r = xorshift(&seed);
        t += (r % 32 == 0) ? (int64_t)(r >> 8) % 2500 : (int64_t)(r >> 8) % 100;
        int64_t wait = ratelimit_try(rl, t);
        if (wait == 0) {
            sent[nsent++] = t;
            continue;
        }
        /* A refusal is only ever given when the window really holds N sends. */
        refused++;
        while (sent[lo] <= t - window)
            lo++;
        assert_int_equal(nsent - lo, N);
        assert_in_range(wait, 1, window);
        /* The promised wait is exact: one ms earlier is still refused, then it is free. */
        if (r % 7 == 0) {
            assert_true(ratelimit_try(rl, t + wait - 1) > 0);
            t += wait;
            assert_int_equal(ratelimit_try(rl, t), 0);
            sent[nsent++] = t;
        }
    }
    assert_true(refused > 1000); /* the run did push against the limit */
    assert_int_equal(max_in_any_window(sent, nsent, window), N);
    free(sent);
    ratelimit_destroy(rl);
}

static void test_acquire_blocks_for_the_window(void **state)
{
    struct ratelimit *rl = ratelimit_create(1, 0);
    atomic_int stop = 0;
    (void)state;
    assert_non_null(rl);
    int64_t t0 = mono_ms();
    assert_int_equal(ratelimit_acquire(rl, &stop), 0);
    assert_int_equal(ratelimit_acquire(rl, &stop), 0);
    int64_t took = mono_ms() - t0;
    assert_true(took >= 995);
    assert_true(took < 3000);
    ratelimit_destroy(rl);
}

struct stopper {
    atomic_int *stop;
    int delay_ms;
};

static void *stop_later(void *arg)
{
    struct stopper *s = arg;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)s->delay_ms * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store(s->stop, 1); /* another thread reads it: atomic (no data race) */
    return NULL;
}

static void test_acquire_gives_up_on_stop(void **state)
{
    struct ratelimit *rl = ratelimit_create(1, 5000);
    atomic_int stop = 0;
    struct stopper s = {&stop, 100};
    pthread_t th;
    (void)state;
    assert_non_null(rl);
    assert_int_equal(ratelimit_acquire(rl, &stop), 0);
    assert_int_equal(pthread_create(&th, NULL, stop_later, &s), 0);
    int64_t t0 = mono_ms();
    assert_int_equal(ratelimit_acquire(rl, &stop), -1);
    int64_t took = mono_ms() - t0;
    pthread_join(th, NULL);
    /* noticed within one 50 ms sleep step of being set (with slack for a loaded box) */
    assert_true(took >= 90);
    assert_true(took < 600);
    ratelimit_destroy(rl);
}

/* A shared budget that says "wait" the first `refuse` times, then grants slot
 * `calls`; done records the slots handed back. */
struct fake_shared {
    int calls, refuse, n, dones, last_done;
    int64_t window_ms, wait_ms;
};

static int64_t fake_take(void *ctx, int n, int64_t window_ms, struct ratelimit_ticket *t)
{
    struct fake_shared *f = ctx;
    f->calls++;
    f->n = n;
    f->window_ms = window_ms;
    if (f->calls <= f->refuse)
        return f->wait_ms;
    t->slot = f->calls;
    t->until = 1.5;
    return 0;
}

static void fake_done(void *ctx, const struct ratelimit_ticket *t)
{
    struct fake_shared *f = ctx;
    f->dones++;
    f->last_done = t->slot;
}

static void test_shared_gate_is_asked_and_waited_on(void **state)
{
    struct ratelimit *rl = ratelimit_create(7, 20);
    struct fake_shared f = {.refuse = 2, .wait_ms = 40};
    (void)state;
    assert_non_null(rl);
    ratelimit_set_shared(rl, fake_take, fake_done, &f, 1030);
    int64_t t0 = mono_ms();
    struct ratelimit_ticket t = {0};
    assert_int_equal(ratelimit_acquire_ticket(rl, NULL, &t), 0);
    int64_t took = mono_ms() - t0;
    assert_int_equal(f.calls, 3); /* refused twice, then granted */
    assert_int_equal(t.slot, 3);
    assert_int_equal(f.dones, 0); /* held while the request is in flight */
    ratelimit_done(rl, &t);
    assert_int_equal(f.dones, 1);
    assert_int_equal(f.last_done, 3);
    assert_int_equal(f.n, 7);
    assert_int_equal(f.window_ms, 1030);
    assert_true(took >= 75); /* waited as told, twice */
    /* a local refusal comes first: the shared gate is not asked for a slot the local
     * limiter does not give (7 taken in the window: the 8th waits locally) */
    for (int i = 1; i < 7; i++)
        assert_int_equal(ratelimit_acquire(rl, NULL), 0);
    assert_int_equal(f.calls, 9);
    assert_int_equal(f.dones, 7); /* plain acquire hands each slot back at once */
    assert_true(ratelimit_try(rl, ratelimit_now_ms()) > 0);
    assert_int_equal(f.calls, 9);
    ratelimit_destroy(rl);
}

static void test_shared_gate_wait_gives_up_on_stop(void **state)
{
    struct ratelimit *rl = ratelimit_create(5, 20);
    struct fake_shared f = {.refuse = 1000000, .wait_ms = 5000};
    atomic_int stop = 0;
    struct stopper s = {&stop, 100};
    pthread_t th;
    (void)state;
    assert_non_null(rl);
    ratelimit_set_shared(rl, fake_take, fake_done, &f, 1030);
    assert_int_equal(pthread_create(&th, NULL, stop_later, &s), 0);
    int64_t t0 = mono_ms();
    struct ratelimit_ticket t = {.slot = 9};
    assert_int_equal(ratelimit_acquire_ticket(rl, &stop, &t), -1);
    assert_int_equal(t.slot, 0); /* nothing held */
    ratelimit_done(rl, &t);
    assert_int_equal(f.dones, 0);
    int64_t took = mono_ms() - t0;
    pthread_join(th, NULL);
    assert_true(took >= 90);
    assert_true(took < 600);
    assert_int_equal(f.calls, 1);
    ratelimit_destroy(rl);
}

struct worker {
    struct ratelimit *rl;
    atomic_int *stop;
    int sends;
    int failures;
};

static void *acquire_many(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->sends; i++)
        if (ratelimit_acquire(w->rl, w->stop) != 0)
            w->failures++;
    return NULL;
}

static void test_acquire_shared_by_threads(void **state)
{
    enum { THREADS = 4, EACH = 10 };
    struct ratelimit *rl = ratelimit_create(20, 0);
    atomic_int stop = 0;
    struct worker w[THREADS];
    pthread_t th[THREADS];
    (void)state;
    assert_non_null(rl);

    int64_t t0 = mono_ms();
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){rl, &stop, EACH, 0};
        assert_int_equal(pthread_create(&th[i], NULL, acquire_many, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    /* 40 sends at 20 per second: the 21st cannot go before the first has aged 1 s, and
     * the 40th goes right then. */
    int64_t took = mono_ms() - t0;
    assert_true(took >= 995);
    assert_true(took < 3000);
    /* every slot of the current window is taken */
    assert_true(ratelimit_try(rl, mono_ms()) > 0);
    ratelimit_destroy(rl);
}

/* After a 429 every sender waits for Retry-After, then the rate is halved and
 * climbs back one send per second. */
static void test_throttle_blocks_halves_and_recovers(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_create(20, 0);
    assert_non_null(rl);
    assert_int_equal(ratelimit_try(rl, 0), 0);
    ratelimit_throttle(rl, 100, 1000);
    assert_int_equal(ratelimit_effective(rl), 10);
    assert_int_equal(ratelimit_try(rl, 500), 600); /* blocked until 1100 */
    /* from 1100: at most 10 in any window */
    int sent = 0;
    for (int64_t t = 1100; t < 2050; t += 5)
        if (ratelimit_try(rl, t) == 0)
            sent++;
    assert_int_equal(sent, 10);
    /* a second 429 halves again; never below one */
    ratelimit_throttle(rl, 2100, 0);
    ratelimit_throttle(rl, 2100, 0);
    ratelimit_throttle(rl, 2100, 0);
    ratelimit_throttle(rl, 2100, 0);
    assert_int_equal(ratelimit_effective(rl), 1);
    /* without new 429s it climbs back to 20, one step a second */
    int64_t t = 2100;
    for (int i = 0; i < 40 && ratelimit_effective(rl) < 20; i++) {
        t += 1000;
        (void)ratelimit_try(rl, t);
    }
    assert_int_equal(ratelimit_effective(rl), 20);
    assert_true(t - 2100 >= 19000);
    ratelimit_destroy(rl);
}

/* The other workers' requests in flight when DIDWW starts throttling are answered 429
 * too, during the block the first 429 started: they extend the block but are one
 * throttle, so the rate is halved once, not once per worker. */
static void test_throttle_during_block_extends_without_halving_again(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_create(40, 20);
    assert_non_null(rl);
    ratelimit_throttle(rl, 1000, 1000);
    assert_int_equal(ratelimit_effective(rl), 20);
    ratelimit_throttle(rl, 1005, 1000); /* three more 429s, answered within the block */
    ratelimit_throttle(rl, 1010, 1000);
    ratelimit_throttle(rl, 1030, 1000);
    assert_int_equal(ratelimit_effective(rl), 20);
    assert_int_equal(ratelimit_try(rl, 1500), 530); /* blocked until 2030, the latest end */
    assert_int_equal(ratelimit_try(rl, 2030), 0);
    /* a 429 for a request sent after the block is a new throttle: halved again */
    ratelimit_throttle(rl, 2100, 1000);
    assert_int_equal(ratelimit_effective(rl), 10);
    /* a shorter Retry-After within the block does not shorten it */
    ratelimit_throttle(rl, 2200, 0);
    assert_int_equal(ratelimit_effective(rl), 10);
    assert_int_equal(ratelimit_try(rl, 2500), 600);
    ratelimit_destroy(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_rejects_nonsense),
        cmocka_unit_test(test_twenty_first_waits_for_the_first),
        cmocka_unit_test(test_burst_and_margin),
        cmocka_unit_test(test_clock_stepping_back_admits_nothing_extra),
        cmocka_unit_test(test_random_run_never_exceeds_limit),
        cmocka_unit_test(test_acquire_blocks_for_the_window),
        cmocka_unit_test(test_acquire_gives_up_on_stop),
        cmocka_unit_test(test_acquire_shared_by_threads),
        cmocka_unit_test(test_shared_gate_is_asked_and_waited_on),
        cmocka_unit_test(test_shared_gate_wait_gives_up_on_stop),
        cmocka_unit_test(test_throttle_blocks_halves_and_recovers),
        cmocka_unit_test(test_throttle_during_block_extends_without_halving_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
