/*
 * delivery_inflight: how many delivery workers send at once. To use a budget of R
 * requests per second at a round trip of L seconds about R x L requests must be in
 * flight (Little's law); this keeps an exponentially weighted mean of the observed
 * round trips and answers ceil(R x L x 1.25) + 1, within [min, max]. The rate limiter
 * stays the only gate on requests per second: this only decides how many workers may
 * claim jobs. Thread-safe (a mutex).
 */
#ifndef HOOKLINE_DELIVERY_INFLIGHT_H
#define HOOKLINE_DELIVERY_INFLIGHT_H

#include <pthread.h>
#include <stdint.h>

struct delivery_inflight {
    pthread_mutex_t lock;
    double ewma_ms; /* 0 until the first observation */
    int rate, min, max;
};

/* Sets f up for rate requests per second and [min, max] workers (min >= 1). */
void delivery_inflight_init(struct delivery_inflight *f, int rate, int min, int max);

/* One request's round trip in milliseconds (weight 0.2). */
void delivery_inflight_observe(struct delivery_inflight *f, int64_t ms);

/* The number of workers that may send now. */
int delivery_inflight_target(struct delivery_inflight *f);

void delivery_inflight_destroy(struct delivery_inflight *f);

#endif
