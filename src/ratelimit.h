/*
 * ratelimit: one limiter shared by every delivery worker so hookline never
 * sends more than N requests to DIDWW in any window of one second (plus a
 * safety margin), as DIDWW counts per API key. A sliding window of the last N
 * send times, guarded by a mutex; the clock is passed in so tests need no sleep.
 * When several processes share one key (instances on one PostgreSQL store), a
 * shared gate (ratelimit_set_shared) is asked too, after the local slot: the
 * budget all processes draw from, whose slot a request holds until it is
 * answered (ratelimit_acquire_ticket, ratelimit_done).
 */
#ifndef HOOKLINE_RATELIMIT_H
#define HOOKLINE_RATELIMIT_H

#include <stdatomic.h>
#include <stdint.h>

struct ratelimit;

/* Creates a limiter allowing `per_second` sends in any window of
 * (1000 + margin_ms) ms. Returns a new limiter (free with ratelimit_destroy) or NULL. */
struct ratelimit *ratelimit_create(int per_second, int margin_ms);

/* Tries to take a send slot at now_ms (a monotonic clock in milliseconds).
 * Returns 0 when the slot is taken (the caller must send now), or the number of
 * milliseconds to wait before trying again. Thread-safe. */
int64_t ratelimit_try(struct ratelimit *rl, int64_t now_ms);

/* Blocks (sleeping) until a slot is taken, using the real monotonic clock.
 * Returns 0, or -1 when *stop became non-zero while waiting. stop (borrowed, may
 * be NULL) is atomic because another thread sets it to end the wait. A shared
 * slot taken is handed back at once (it counts from now). */
int ratelimit_acquire(struct ratelimit *rl, const atomic_int *stop);

/* DIDWW answered 429: nothing is sent before now_ms + block_ms (Retry-After,
 * or a second), and the sends allowed per window are halved, then raised by one
 * per second without a new throttle until back at the configured rate. A 429
 * reported while a block is in force (the answer to a request already in flight
 * when the block began) only extends the block: it does not halve again.
 * Thread-safe. */
void ratelimit_throttle(struct ratelimit *rl, int64_t now_ms, int64_t block_ms);

/* The sends currently allowed per window (for tests and logs). */
int ratelimit_effective(struct ratelimit *rl);

/* The monotonic clock ratelimit_acquire uses, in milliseconds. */
int64_t ratelimit_now_ms(void);

/* A slot of the shared budget held by one request (slot 0: none). */
struct ratelimit_ticket {
    int slot;
    double until;
};

/* A budget shared with other processes: takes one of n slots in any window of
 * window_ms, returning 0 when taken (send now; *t says which), else the
 * milliseconds to wait before asking again (also after an error: nothing is
 * sent unasked). */
typedef int64_t (*ratelimit_shared_fn)(void *ctx, int n, int64_t window_ms,
                                       struct ratelimit_ticket *t);
/* The request of t was answered (or failed): its slot counts from now. */
typedef void (*ratelimit_shared_done_fn)(void *ctx, const struct ratelimit_ticket *t);

/* Makes ratelimit_acquire_ticket also take a slot from take (ctx borrowed,
 * must outlive rl) with the configured per-second count in windows of
 * window_ms, and ratelimit_done hand it back to done. Call before any thread
 * uses rl. */
void ratelimit_set_shared(struct ratelimit *rl, ratelimit_shared_fn take,
                          ratelimit_shared_done_fn done, void *ctx, int64_t window_ms);

/* ratelimit_acquire, keeping the shared slot taken (if any) in *t for
 * ratelimit_done once the request is answered. Returns 0 or -1 (stopped; *t
 * holds nothing). */
int ratelimit_acquire_ticket(struct ratelimit *rl, const atomic_int *stop,
                             struct ratelimit_ticket *t);

/* The request *t was taken for is answered (or failed). No-op for an empty t. */
void ratelimit_done(struct ratelimit *rl, const struct ratelimit_ticket *t);

/* Frees rl; NULL is a no-op. */
void ratelimit_destroy(struct ratelimit *rl);

#endif
