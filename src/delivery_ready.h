/*
 * delivery_ready: the claimed jobs waiting for a free delivery worker. One worker
 * claims a round of jobs (delivery.batch_size), reads their DIDs in one list request,
 * and puts them here; every worker takes the next job from here before claiming, so a
 * round's jobs are sent in parallel. Jobs here are leased (running) in the store. A new
 * round starts when fewer than a low mark wait and no other round is being read. A job
 * still waiting at its round's deadline (its lease would no longer cover its requests)
 * is dropped unsent: the store hands it out again when the lease ends. Thread-safe (a
 * mutex).
 */
#ifndef HOOKLINE_DELIVERY_READY_H
#define HOOKLINE_DELIVERY_READY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

struct delivery_ready {
    pthread_mutex_t lock;
    struct store_job *jobs; /* owned: a FIFO in jobs[head .. head + n) */
    double *deadlines;      /* per job: pop drops it unsent after this time */
    size_t head, n, cap;
    bool round; /* a worker is claiming and reading a round */
};

void delivery_ready_init(struct delivery_ready *r);

/* Moves the oldest waiting job whose deadline is not past at now into *out (caller
 * clears it with store_job_clear); jobs past their deadline are dropped on the way.
 * Returns false when none waits. */
bool delivery_ready_pop(struct delivery_ready *r, double now, struct store_job *out);

/* True (and the round is the caller's) when fewer than low jobs wait and no round is
 * running: the caller claims, then calls delivery_ready_end_round. */
bool delivery_ready_begin_round(struct delivery_ready *r, size_t low);

/* Ends the caller's round, moving jobs[0..n) in with their deadline (the array's
 * elements are owned by the queue afterwards; the array itself stays the caller's).
 * Returns false when out of memory: the jobs then stay the caller's. */
bool delivery_ready_end_round(struct delivery_ready *r, struct store_job *jobs, size_t n,
                              double deadline);

/* True while a round is being claimed or read. */
bool delivery_ready_round_running(struct delivery_ready *r);

/* Frees what waits (the caller has put those jobs back in the store first). */
void delivery_ready_destroy(struct delivery_ready *r);

#endif
