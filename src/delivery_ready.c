/*
 * delivery_ready: the FIFO of claimed jobs between a claim round and the workers (see
 * the header). A growable array compacted on push; jobs are moved by struct copy.
 */
#include "delivery_ready.h"

#include <stdlib.h>
#include <string.h>

void delivery_ready_init(struct delivery_ready *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
}

bool delivery_ready_pop(struct delivery_ready *r, double now, struct store_job *out)
{
    bool got = false;
    pthread_mutex_lock(&r->lock);
    while (!got && r->n > 0) {
        struct store_job *j = &r->jobs[r->head];
        bool late = now > r->deadlines[r->head];
        if (late)
            store_job_clear(j);
        else
            *out = *j;
        memset(j, 0, sizeof *j);
        r->head++;
        r->n--;
        got = !late;
    }
    pthread_mutex_unlock(&r->lock);
    return got;
}

bool delivery_ready_begin_round(struct delivery_ready *r, size_t low)
{
    pthread_mutex_lock(&r->lock);
    bool mine = !r->round && r->n < low;
    if (mine)
        r->round = true;
    pthread_mutex_unlock(&r->lock);
    return mine;
}

bool delivery_ready_end_round(struct delivery_ready *r, struct store_job *jobs, size_t n,
                              double deadline)
{
    bool ok = true;
    pthread_mutex_lock(&r->lock);
    r->round = false;
    if (r->head > 0) {
        memmove(r->jobs, r->jobs + r->head, r->n * sizeof *r->jobs);
        memmove(r->deadlines, r->deadlines + r->head, r->n * sizeof *r->deadlines);
        r->head = 0;
    }
    if (r->n + n > r->cap) {
        size_t cap = (r->n + n) * 2;
        struct store_job *p = realloc(r->jobs, cap * sizeof *p);
        if (p)
            r->jobs = p;
        double *dl = p ? realloc(r->deadlines, cap * sizeof *dl) : NULL;
        if (dl)
            r->deadlines = dl;
        if (!p || !dl)
            ok = false;
        else
            r->cap = cap;
    }
    if (ok && n > 0) {
        memcpy(r->jobs + r->n, jobs, n * sizeof *jobs);
        for (size_t i = 0; i < n; i++)
            r->deadlines[r->n + i] = deadline;
        r->n += n;
    }
    pthread_mutex_unlock(&r->lock);
    return ok;
}

bool delivery_ready_round_running(struct delivery_ready *r)
{
    pthread_mutex_lock(&r->lock);
    bool running = r->round;
    pthread_mutex_unlock(&r->lock);
    return running;
}

void delivery_ready_destroy(struct delivery_ready *r)
{
    for (size_t i = 0; i < r->n; i++)
        store_job_clear(&r->jobs[r->head + i]);
    free(r->jobs);
    free(r->deadlines);
    pthread_mutex_destroy(&r->lock);
}
