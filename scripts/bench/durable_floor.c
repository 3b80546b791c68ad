/*
 * Durable floor for scripts/bench/ingest.sh: the least work any webhook
 * receiver can do and still honestly answer "stored". A bare libmicrohttpd
 * server (the same threading mode as hookline and baseline.c: internal polling
 * thread + epoll, a pool of one thread per online CPU) that reads each request's
 * body, suspends the request and hands the body to one writer thread. The
 * writer appends the bodies to FILE and calls fdatasync once per batch, by group
 * commit: everything that arrived while the previous fdatasync ran goes into the
 * next one (one write() and one fdatasync() per batch). Then it resumes each
 * request, which is answered 202 only now that its body is on disk. No parsing,
 * no authentication, no index: the ratio hookline/floor measures what hookline
 * adds beyond making the bytes durable.
 *
 * Each record is "LEN SP BODY LF" (LEN the body's length in decimal), so the
 * records can be counted and checked whatever the bodies contain.
 *
 * Usage: durable_floor PORT FILE   (binds 127.0.0.1 only; PORT 0 picks a free
 *   port; FILE must not exist yet; prints "listening 127.0.0.1:PORT" to stdout
 *   when ready; on SIGTERM/SIGINT it stores what is queued, stops and prints
 *   "stats answered=N records=R syncs=S errors=E": N the 202s sent in full,
 *   R the records appended and synced, S the fdatasync calls, E failed
 *   write/fdatasync batches (their requests were answered 500))
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#if MHD_VERSION < 0x00097002
typedef int floor_result;
#else
typedef enum MHD_Result floor_result;
#endif

#define FLOOR_MAX_BODY ((size_t)1 << 20) /* hookline's default listen.max_body_bytes */
#define FLOOR_BUF_INIT ((size_t)64 << 10)
#define FLOOR_BUF_MAX ((size_t)16 << 20) /* a larger batch is written in several writes */
#define FLOOR_HDR_MAX 24                 /* "LEN " for any size_t */

static const char body_202[] = "{\"status\": \"accepted\"}";

enum floor_state {
    FLOOR_BODY,    /* reading the body */
    FLOOR_QUEUED,  /* suspended, waiting for the writer */
    FLOOR_STORED,  /* on disk: answer 202 */
    FLOOR_FAILED,  /* write or fdatasync failed: answer 500 */
    FLOOR_REFUSED, /* the writer has stopped: answer 503 */
};

struct floor_req {
    struct MHD_Connection *conn;
    struct floor_req *next; /* the writer's queue */
    unsigned char *body;
    size_t len, cap;
    bool too_large;
    bool sent_202;
    enum floor_state state;
};

struct floor {
    int fd;
    struct MHD_Response *resp_202;
    pthread_mutex_t mu; /* guards head, tail, stopping */
    pthread_cond_t cv;
    struct floor_req *head, *tail;
    bool stopping;
    /* The writer's own: */
    unsigned char *buf;
    size_t buf_len, buf_cap;
    unsigned long long records, syncs, errors;
    /* Any MHD thread: */
    atomic_ullong answered;
};

/* Writes all of buf (retrying short writes and EINTR); 0 or -1. */
static int floor_write_all(int fd, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int floor_flush(struct floor *fl)
{
    int rc = floor_write_all(fl->fd, fl->buf, fl->buf_len);
    fl->buf_len = 0;
    return rc;
}

/* Makes room for need more bytes in the writer's buffer, writing out what it
 * holds when it would pass FLOOR_BUF_MAX; 0 or -1. */
static int floor_reserve(struct floor *fl, size_t need)
{
    if (fl->buf_len + need <= fl->buf_cap)
        return 0;
    size_t ncap = fl->buf_cap ? fl->buf_cap : FLOOR_BUF_INIT;
    while (ncap < fl->buf_len + need && ncap < FLOOR_BUF_MAX)
        ncap *= 2;
    if (ncap < fl->buf_len + need) {
        if (floor_flush(fl) < 0)
            return -1;
        if (need <= fl->buf_cap)
            return 0;
        ncap = need; /* need <= FLOOR_MAX_BODY + FLOOR_HDR_MAX + 1 < FLOOR_BUF_MAX */
    }
    unsigned char *nb = realloc(fl->buf, ncap);
    if (!nb)
        return -1;
    fl->buf = nb;
    fl->buf_cap = ncap;
    return 0;
}

/* Appends every record of the batch and makes them durable; 0 or -1. */
static int floor_store(struct floor *fl, struct floor_req *batch, unsigned long long *n)
{
    *n = 0;
    fl->buf_len = 0;
    for (struct floor_req *rq = batch; rq; rq = rq->next) {
        char hdr[FLOOR_HDR_MAX];
        int hl = snprintf(hdr, sizeof hdr, "%zu ", rq->len);
        if (hl < 0 || (size_t)hl >= sizeof hdr)
            return -1;
        if (floor_reserve(fl, (size_t)hl + rq->len + 1) < 0)
            return -1;
        memcpy(fl->buf + fl->buf_len, hdr, (size_t)hl);
        fl->buf_len += (size_t)hl;
        if (rq->len > 0)
            memcpy(fl->buf + fl->buf_len, rq->body, rq->len);
        fl->buf_len += rq->len;
        fl->buf[fl->buf_len++] = '\n';
        (*n)++;
    }
    if (floor_flush(fl) < 0)
        return -1;
    fl->syncs++;
    return fdatasync(fl->fd) == 0 ? 0 : -1;
}

/* The writer thread: takes everything queued, stores it with one fdatasync,
 * resumes those requests; exits once stopping is set and the queue is empty. */
static void *floor_writer(void *arg)
{
    struct floor *fl = arg;
    for (;;) {
        pthread_mutex_lock(&fl->mu);
        while (!fl->head && !fl->stopping)
            pthread_cond_wait(&fl->cv, &fl->mu);
        struct floor_req *batch = fl->head;
        fl->head = fl->tail = NULL;
        pthread_mutex_unlock(&fl->mu);
        if (!batch)
            break;
        unsigned long long n = 0;
        bool ok = floor_store(fl, batch, &n) == 0;
        if (ok) {
            fl->records += n;
        } else {
            if (fl->errors++ == 0)
                fprintf(stderr, "durable_floor: write/fdatasync failed: %s\n", strerror(errno));
        }
        struct floor_req *next;
        for (struct floor_req *rq = batch; rq; rq = next) {
            next = rq->next; /* rq is the MHD thread's again once resumed */
            rq->state = ok ? FLOOR_STORED : FLOOR_FAILED;
            MHD_resume_connection(rq->conn);
        }
    }
    return NULL;
}

/* Keeps the chunk; past FLOOR_MAX_BODY the rest is drained, never buffered. */
static void floor_append(struct floor_req *rq, const char *data, size_t size)
{
    if (rq->too_large)
        return;
    if (size > FLOOR_MAX_BODY - rq->len) {
        rq->too_large = true;
        return;
    }
    if (rq->len + size > rq->cap) {
        size_t ncap = rq->cap ? rq->cap : 512;
        while (ncap < rq->len + size)
            ncap *= 2;
        unsigned char *nb = realloc(rq->body, ncap);
        if (!nb) {
            rq->too_large = true; /* out of memory: refuse rather than truncate */
            return;
        }
        rq->body = nb;
        rq->cap = ncap;
    }
    memcpy(rq->body + rq->len, data, size);
    rq->len += size;
}

static floor_result floor_answer(struct MHD_Connection *conn, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    floor_result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* Suspends the request and queues it for the writer (suspend first: the
 * writer may resume it at once). */
static void floor_submit(struct floor *fl, struct floor_req *rq)
{
    rq->state = FLOOR_QUEUED;
    MHD_suspend_connection(rq->conn);
    pthread_mutex_lock(&fl->mu);
    bool stopping = fl->stopping;
    if (!stopping) {
        rq->next = NULL;
        if (fl->tail)
            fl->tail->next = rq;
        else
            fl->head = rq;
        fl->tail = rq;
        pthread_cond_signal(&fl->cv);
    }
    pthread_mutex_unlock(&fl->mu);
    if (stopping) {
        rq->state = FLOOR_REFUSED;
        MHD_resume_connection(rq->conn);
    }
}

static floor_result floor_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls)
{
    struct floor *fl = cls;
    struct floor_req *rq = *req_cls;
    (void)url;
    (void)method;
    (void)version;
    if (!rq) {
        /* Headers only; ask for the body. */
        rq = calloc(1, sizeof *rq);
        if (!rq)
            return MHD_NO;
        rq->conn = conn;
        rq->state = FLOOR_BODY;
        *req_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        floor_append(rq, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    switch (rq->state) {
    case FLOOR_BODY:
        if (rq->too_large)
            return floor_answer(conn, 413, "{\"status\": \"too large\"}");
        floor_submit(fl, rq);
        return MHD_YES;
    case FLOOR_STORED:
        rq->sent_202 = true;
        return MHD_queue_response(conn, 202, fl->resp_202);
    case FLOOR_FAILED:
        return floor_answer(conn, 500, "{\"status\": \"not stored\"}");
    case FLOOR_REFUSED:
        return floor_answer(conn, 503, "{\"status\": \"stopping\"}");
    case FLOOR_QUEUED:
        break;
    }
    return MHD_YES; /* not reached: a suspended request gets no calls */
}

/* Counts the 202s sent in full (as hookline counts only the 202s it sends)
 * and frees the request. */
static void floor_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                            enum MHD_RequestTerminationCode toe)
{
    struct floor *fl = cls;
    struct floor_req *rq = *req_cls;
    (void)conn;
    if (!rq)
        return;
    if (rq->sent_202 && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        atomic_fetch_add(&fl->answered, 1);
    free(rq->body);
    free(rq);
    *req_cls = NULL;
}

static int parse_port(const char *s, unsigned short *port)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 65535)
        return -1;
    *port = (unsigned short)v;
    return 0;
}

/* fsyncs the directory holding path, so that the new file itself is durable. */
static int sync_parent_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof dir)
        return -1;
    if (slash && n == 0)
        n = 1; /* "/file": the root */
    if (n == 0) {
        dir[0] = '.';
        n = 1;
    } else {
        memcpy(dir, path, n);
    }
    dir[n] = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = fsync(dfd);
    close(dfd);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 1;
    unsigned short port = 0;
    struct floor fl = {.fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    bool writer_started = false;
    pthread_t writer;
    struct MHD_Daemon *d = NULL;

    if (argc != 3 || parse_port(argv[1], &port) < 0 || argv[2][0] == '\0') {
        fprintf(stderr, "usage: %s PORT FILE (PORT 0-65535, 0 picks a free port; FILE new)\n",
                argc > 0 ? argv[0] : "durable_floor");
        return 2;
    }
    const char *path = argv[2];

    /* Block the stop signals before any thread starts (they inherit the mask),
     * then wait for them synchronously in the main thread. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        fprintf(stderr, "durable_floor: cannot block signals\n");
        goto out;
    }

    fl.fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fl.fd < 0) {
        fprintf(stderr, "durable_floor: cannot create %s: %s\n", path, strerror(errno));
        goto out;
    }
    if (sync_parent_dir(path) < 0) {
        fprintf(stderr, "durable_floor: cannot fsync the directory of %s: %s\n", path,
                strerror(errno));
        goto out;
    }

    fl.resp_202 = MHD_create_response_from_buffer(sizeof body_202 - 1, (void *)body_202,
                                                  MHD_RESPMEM_PERSISTENT);
    if (!fl.resp_202 || MHD_add_response_header(fl.resp_202, MHD_HTTP_HEADER_CONTENT_TYPE,
                                                "application/json") != MHD_YES) {
        fprintf(stderr, "durable_floor: cannot create the response\n");
        goto out;
    }

    if (pthread_create(&writer, NULL, floor_writer, &fl) != 0) {
        fprintf(stderr, "durable_floor: cannot start the writer thread\n");
        goto out;
    }
    writer_started = true;

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = ncpu > 0 && ncpu < 256 ? (unsigned)ncpu : 1;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, floor_access, &fl, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)10000,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
        MHD_OPTION_NOTIFY_COMPLETED, floor_completed, &fl, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "durable_floor: cannot listen on 127.0.0.1:%u\n", (unsigned)port);
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening 127.0.0.1:%u\n", info ? (unsigned)info->port : (unsigned)port);
    fflush(stdout);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) == 0 && (sig == SIGTERM || sig == SIGINT))
            break;
    }
    rc = 0;

out:
    /* The writer drains its queue and resumes those requests before it exits;
     * requests completed after that are refused (503), so none stays suspended
     * when the daemon stops. */
    if (writer_started) {
        pthread_mutex_lock(&fl.mu);
        fl.stopping = true;
        pthread_cond_signal(&fl.cv);
        pthread_mutex_unlock(&fl.mu);
        pthread_join(writer, NULL);
    }
    if (d)
        MHD_stop_daemon(d);
    if (rc == 0)
        printf("stats answered=%llu records=%llu syncs=%llu errors=%llu\n",
               (unsigned long long)atomic_load(&fl.answered), fl.records, fl.syncs, fl.errors);
    pthread_cond_destroy(&fl.cv);
    pthread_mutex_destroy(&fl.mu);
    if (fl.resp_202)
        MHD_destroy_response(fl.resp_202);
    if (fl.fd >= 0 && close(fl.fd) != 0 && rc == 0) {
        fprintf(stderr, "durable_floor: close: %s\n", strerror(errno));
        rc = 1;
    }
    free(fl.buf);
    return rc;
}
