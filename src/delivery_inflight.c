/*
 * delivery_inflight: the in-flight target from the observed round trip (see the
 * header). The mean starts from the first observation, so an idle service begins with
 * min workers and reaches the target after a few answers.
 */
#include "delivery_inflight.h"

#include <math.h>

#define DELIVERY_INFLIGHT_WEIGHT 0.2
#define DELIVERY_INFLIGHT_HEADROOM 1.25

void delivery_inflight_init(struct delivery_inflight *f, int rate, int min, int max)
{
    pthread_mutex_init(&f->lock, NULL);
    f->ewma_ms = 0;
    f->rate = rate > 0 ? rate : 1;
    f->min = min > 0 ? min : 1;
    f->max = max >= f->min ? max : f->min;
}

void delivery_inflight_observe(struct delivery_inflight *f, int64_t ms)
{
    if (ms < 0)
        return;
    pthread_mutex_lock(&f->lock);
    if (f->ewma_ms <= 0)
        f->ewma_ms = (double)ms;
    else
        f->ewma_ms += DELIVERY_INFLIGHT_WEIGHT * ((double)ms - f->ewma_ms);
    pthread_mutex_unlock(&f->lock);
}

int delivery_inflight_target(struct delivery_inflight *f)
{
    pthread_mutex_lock(&f->lock);
    double need = ceil((double)f->rate * f->ewma_ms / 1000.0 * DELIVERY_INFLIGHT_HEADROOM) + 1;
    int n = need > (double)f->max ? f->max : need < (double)f->min ? f->min : (int)need;
    pthread_mutex_unlock(&f->lock);
    return n;
}

void delivery_inflight_destroy(struct delivery_inflight *f)
{
    pthread_mutex_destroy(&f->lock);
}
