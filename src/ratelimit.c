/*
 * ratelimit: the one limiter all delivery workers share, so hookline never sends more
 * than N requests to DIDWW in any window of (1000 + margin) ms. It owns a ring buffer
 * of the last N accepted send times, guarded by its own mutex (a leaf lock: nothing
 * else is called while it is held). Any thread may call it; ratelimit_acquire sleeps in
 * steps of at most 50 ms so a shutdown is noticed quickly, and it never sleeps while
 * holding the mutex. With a shared gate set (several instances on one store), a
 * slot is taken locally first, then from the shared budget, which is asked without
 * the mutex held (it is one database round trip).
 */
#include "ratelimit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#define RATELIMIT_MAX_PER_SECOND 100000 /* bounds the ring's allocation */
#define RATELIMIT_SLEEP_STEP_MS 50

struct ratelimit {
    pthread_mutex_t mu;
    int n;             /* sends allowed per window */
    int64_t window_ms; /* 1000 + margin */
    int64_t *times;    /* ring of the last `count` send times, oldest at head */
    int head;
    int count;
    int64_t last; /* the newest recorded time: recorded times never go backwards */
    /* Throttling after DIDWW answered 429: nothing is sent before blocked_until,
     * and only `eff` (<= n) sends per window, raised by one per second without a
     * new 429 until it is back at n. */
    int eff;
    int64_t blocked_until, last_throttle, last_raise;
    /* The budget shared with other processes; NULL: none. Set before use. */
    ratelimit_shared_fn shared;
    ratelimit_shared_done_fn shared_done;
    void *shared_ctx;
    int64_t shared_window_ms;
};

void ratelimit_set_shared(struct ratelimit *rl, ratelimit_shared_fn take,
                          ratelimit_shared_done_fn done, void *ctx, int64_t window_ms)
{
    rl->shared = take;
    rl->shared_done = done;
    rl->shared_ctx = ctx;
    rl->shared_window_ms = window_ms;
}

void ratelimit_done(struct ratelimit *rl, const struct ratelimit_ticket *t)
{
    if (rl->shared_done && t && t->slot > 0)
        rl->shared_done(rl->shared_ctx, t);
}

/* Sleeps wait_ms in steps of at most RATELIMIT_SLEEP_STEP_MS. Returns -1 as soon
 * as *stop is set, else 0. */
static int ratelimit_sleep(int64_t wait_ms, const atomic_int *stop)
{
    int64_t until = ratelimit_now_ms() + wait_ms;
    for (;;) {
        if (stop && atomic_load(stop))
            return -1;
        int64_t left = until - ratelimit_now_ms();
        if (left <= 0)
            return 0;
        if (left > RATELIMIT_SLEEP_STEP_MS)
            left = RATELIMIT_SLEEP_STEP_MS;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left * 1000000L};
        /* EINTR just ends this step early; the loop re-checks. */
        (void)clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
    }
}

/* Takes a slot of the shared budget, waiting as told. Returns 0, or -1 when *stop
 * was set first. */
static int ratelimit_acquire_shared(struct ratelimit *rl, const atomic_int *stop,
                                    struct ratelimit_ticket *t)
{
    for (;;) {
        int64_t wait = rl->shared(rl->shared_ctx, rl->n, rl->shared_window_ms, t);
        if (wait <= 0)
            return 0;
        if (ratelimit_sleep(wait, stop) < 0)
            return -1;
    }
}

struct ratelimit *ratelimit_create(int per_second, int margin_ms)
{
    struct ratelimit *rl = NULL;

    if (per_second < 1 || per_second > RATELIMIT_MAX_PER_SECOND || margin_ms < 0 ||
        margin_ms > 60000)
        return NULL;
    rl = calloc(1, sizeof *rl);
    if (!rl)
        goto fail;
    rl->times = calloc((size_t)per_second, sizeof *rl->times);
    if (!rl->times)
        goto fail;
    if (pthread_mutex_init(&rl->mu, NULL) != 0)
        goto fail;
    rl->n = per_second;
    rl->eff = per_second;
    rl->window_ms = 1000 + (int64_t)margin_ms;
    return rl;

fail:
    if (rl)
        free(rl->times);
    free(rl);
    return NULL;
}

/* The slot decision; the caller holds rl->mu. */
static int64_t ratelimit_try_locked(struct ratelimit *rl, int64_t now_ms)
{
    /* Callers on several threads read the clock before taking the lock, so their times
     * can arrive slightly out of order. Recording max(now, last) keeps the ring sorted
     * (oldest at head) and only ever counts a send as later than it was: conservative. */
    if (rl->count > 0 && now_ms < rl->last)
        now_ms = rl->last;

    if (now_ms < rl->blocked_until)
        return rl->blocked_until - now_ms;
    if (rl->eff < rl->n && now_ms - rl->last_throttle >= 1000 && now_ms - rl->last_raise >= 1000) {
        rl->eff++;
        rl->last_raise = now_ms;
    }
    /* The slot is free when fewer than eff sends lie in (now - window, now]: the
     * eff-th most recent one has left the window. */
    if (rl->count >= rl->eff) {
        int64_t kth = rl->times[(rl->head + rl->count - rl->eff) % rl->n];
        int64_t wait = kth + rl->window_ms - now_ms;
        if (wait > 0)
            return wait;
    }
    if (rl->count < rl->n) {
        rl->times[(rl->head + rl->count) % rl->n] = now_ms;
        rl->count++;
    } else {
        rl->times[rl->head] = now_ms;
        rl->head = (rl->head + 1) % rl->n;
    }
    rl->last = now_ms;
    return 0;
}

void ratelimit_throttle(struct ratelimit *rl, int64_t now_ms, int64_t block_ms)
{
    pthread_mutex_lock(&rl->mu);
    /* While a block is in force nothing is sent, so a 429 arriving then answers a request
     * sent before the block began (the other workers' requests in flight): it extends the
     * block but is the same throttle, not a new one, and does not halve again. */
    bool in_block = now_ms < rl->blocked_until;
    if (now_ms + block_ms > rl->blocked_until)
        rl->blocked_until = now_ms + block_ms;
    if (!in_block)
        rl->eff = rl->eff > 1 ? rl->eff / 2 : 1;
    /* Recovery counts from the end of the block, not from the 429. */
    rl->last_throttle = rl->blocked_until > now_ms ? rl->blocked_until : now_ms;
    rl->last_raise = rl->last_throttle;
    pthread_mutex_unlock(&rl->mu);
}

int ratelimit_effective(struct ratelimit *rl)
{
    pthread_mutex_lock(&rl->mu);
    int eff = rl->eff;
    pthread_mutex_unlock(&rl->mu);
    return eff;
}

int64_t ratelimit_try(struct ratelimit *rl, int64_t now_ms)
{
    pthread_mutex_lock(&rl->mu);
    int64_t wait = ratelimit_try_locked(rl, now_ms);
    pthread_mutex_unlock(&rl->mu);
    return wait;
}

int64_t ratelimit_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ratelimit_acquire(struct ratelimit *rl, const atomic_int *stop)
{
    struct ratelimit_ticket t = {0};
    int rc = ratelimit_acquire_ticket(rl, stop, &t);
    ratelimit_done(rl, &t);
    return rc;
}

int ratelimit_acquire_ticket(struct ratelimit *rl, const atomic_int *stop,
                             struct ratelimit_ticket *t)
{
    t->slot = 0;
    for (;;) {
        /* The clock is read under the lock so concurrent acquirers record in order. */
        pthread_mutex_lock(&rl->mu);
        int64_t wait = ratelimit_try_locked(rl, ratelimit_now_ms());
        pthread_mutex_unlock(&rl->mu);
        if (wait == 0)
            return rl->shared ? ratelimit_acquire_shared(rl, stop, t) : 0;
        if (stop && atomic_load(stop))
            return -1;
        if (wait > RATELIMIT_SLEEP_STEP_MS)
            wait = RATELIMIT_SLEEP_STEP_MS;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)wait * 1000000L};
        /* EINTR just ends this step early; the loop re-checks the slot and *stop. */
        (void)clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
        if (stop && atomic_load(stop))
            return -1;
    }
}

void ratelimit_destroy(struct ratelimit *rl)
{
    if (!rl)
        return;
    pthread_mutex_destroy(&rl->mu);
    free(rl->times);
    free(rl);
}
