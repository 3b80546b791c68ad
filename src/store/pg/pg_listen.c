/*
 * pg_listen: the PostgreSQL backend's watch (store_backend_ops.watch_jobs).
 * Every transaction that makes a job claimable commits with NOTIFY
 * hookline_jobs (pg_backend.c), whichever process ran it: serve, `hookline
 * jobs retry`, `events reprocess`, another instance. The serving process holds
 * one more connection, in a thread of its own (pg-listen), that LISTENs on the
 * channel and calls the store's job listener on each notification, so idle
 * delivery workers start at once instead of at their next poll. A lost
 * connection is made again with the same backoff as the others; meanwhile
 * nothing is called and the workers' poll still finds the jobs. After each
 * (re)connection the listener is called once: what became claimable while
 * nobody listened.
 */
#include "pg_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Waits until fd is readable, the stop pipe is, or ms passed (-1: no limit).
 * Returns true when the thread is to stop. */
static bool pg_listen_wait(struct pg_backend *be, int fd, int ms)
{
    struct pollfd p[2] = {{.fd = be->listen_pipe[0], .events = POLLIN},
                          {.fd = fd, .events = POLLIN}};
    int rc = poll(p, fd >= 0 ? 2 : 1, ms);
    if (rc < 0 && errno != EINTR)
        return atomic_load(&be->listen_stop); /* cannot happen with valid fds */
    return atomic_load(&be->listen_stop) || (p[0].revents & POLLIN);
}

/* Connects and LISTENs. Returns the connection, or NULL with be->l in its
 * backoff and err set. */
static PGconn *pg_listen_connect(struct pg_backend *be, char *err, size_t err_len)
{
    PGconn *c = pg_conn_get(be, &be->l, err, err_len);
    if (!c)
        return NULL;
    if (pg_cmd(c, "LISTEN " PG_JOBS_CHANNEL, NULL, NULL, "listening for jobs", err, err_len) < 0) {
        pg_conn_drop(&be->l, err);
        return NULL;
    }
    return c;
}

static void *pg_listen_main(void *arg)
{
    struct pg_backend *be = arg;
    pthread_setname_np(pthread_self(), "pg-listen"); /* as top -H and perf show it */
    bool was_lost = false;
    while (!atomic_load(&be->listen_stop)) {
        char err[200];
        PGconn *c = be->l.c;
        if (!c) {
            c = pg_listen_connect(be, err, sizeof err);
            if (!c) {
                if (!was_lost)
                    log_write(LOG_WARN, "store: job notifications lost, polling meanwhile",
                              (const char *[]){"error", err, NULL});
                was_lost = true;
                int ms = (int)((be->l.retry_at - pg_mono_now()) * 1000) + 1;
                (void)pg_listen_wait(be, -1, ms > 0 ? ms : 1);
                continue;
            }
            if (was_lost)
                log_info("store: job notifications back");
            was_lost = false;
            be->listen_fn(be->listen_ctx); /* what became claimable while not listening */
        }
        if (pg_listen_wait(be, PQsocket(c), -1))
            break;
        if (!PQconsumeInput(c) || PQstatus(c) == CONNECTION_BAD) {
            char why[160];
            snprintf(why, sizeof why, "%.*s", (int)strcspn(PQerrorMessage(c), "\n"),
                     PQerrorMessage(c));
            pg_conn_drop(&be->l, why);
            continue;
        }
        bool wake = false;
        int self = atomic_load(&be->writer_pid);
        PGnotify *n;
        while ((n = PQnotifies(c)) != NULL) {
            /* This process's own commits woke delivery already (store.c). */
            if (n->be_pid != self)
                wake = true;
            PQfreemem(n);
        }
        if (wake)
            be->listen_fn(be->listen_ctx);
    }
    return NULL;
}

/* Stops the thread, if any, and frees what it used. */
static void pg_listen_stop(struct pg_backend *be)
{
    if (be->have_listener) {
        atomic_store(&be->listen_stop, true);
        ssize_t w;
        do
            w = write(be->listen_pipe[1], "x", 1);
        while (w < 0 && errno == EINTR);
        pthread_join(be->listener, NULL);
        be->have_listener = false;
    }
    for (int i = 0; i < 2; i++)
        if (be->listen_pipe[i] >= 0) {
            close(be->listen_pipe[i]);
            be->listen_pipe[i] = -1;
        }
    if (be->l.c)
        PQfinish(be->l.c);
    memset(&be->l, 0, sizeof be->l);
    be->listen_fn = NULL;
    be->listen_ctx = NULL;
}

int pg_watch_jobs(struct store_backend *base, void (*fn)(void *ctx), void *ctx, char *err,
                  size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    pg_listen_stop(be);
    if (!fn)
        return 0;
    if (be->read_only) {
        snprintf(err, err_len, "a read-only store does not watch jobs");
        return -1;
    }
    if (pipe2(be->listen_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, err_len, "cannot watch jobs: %s", strerror(errno));
        be->listen_pipe[0] = be->listen_pipe[1] = -1;
        return -1;
    }
    be->listen_fn = fn;
    be->listen_ctx = ctx;
    atomic_store(&be->listen_stop, false);
    if (pthread_create(&be->listener, NULL, pg_listen_main, be) != 0) {
        snprintf(err, err_len, "cannot start the pg-listen thread");
        pg_listen_stop(be);
        return -1;
    }
    be->have_listener = true;
    return 0;
}
