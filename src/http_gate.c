/*
 * http_gate: owns the listening socket and the first moments of every client
 * connection. One thread ("http-gate") accepts, counts connections per peer
 * address, peeks at each new connection until its first request head is
 * complete (MSG_PEEK: libmicrohttpd later reads the same bytes), refuses bad
 * heads itself with problem JSON, and hands good ones to libmicrohttpd. The
 * same thread sweeps deadlines every 100 ms: heads still incomplete, and
 * connections libmicrohttpd holds whose next head or whose body is late (those
 * are shut down; libmicrohttpd then closes them). One mutex guards the
 * connection list, the fd table and the address counts; the HTTP threads take
 * it briefly in their notifications. It never blocks on a client.
 */
#include "http_gate.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define GATE_SWEEP_MS 100
#define GATE_LINGER_MS 2000     /* a refused connection is drained this long, then closed */
#define GATE_LINGER_BYTES 65536 /* ... or after this many discarded bytes */
#define GATE_ORPHAN_MS 10000    /* handed over but never announced by the HTTP library */
#define GATE_ADDR_BUCKETS 1024
#define GATE_METHOD_MAX 32

/* ---------- request head syntax (RFC 9112) ---------- */

static bool gate_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void gate_verdict(struct http_head_check *out, enum http_head_verdict v, int status,
                         const char *detail)
{
    out->verdict = v;
    out->status = status;
    out->detail = detail;
}

/* Finds the blank line ending the head at or after from: returns the offset
 * just past it, or 0 if there is none yet. */
static size_t gate_head_end(const char *buf, size_t len, size_t from)
{
    for (size_t i = from; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < len && buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static bool gate_has_encoded_nul(const char *s, size_t n)
{
    for (size_t i = 0; i + 2 < n; i++)
        if (s[i] == '%' && s[i + 1] == '0' && s[i + 2] == '0')
            return true;
    return false;
}

/* Checks the request line [p, eol) (eol at the LF). Returns false with out set
 * on a refusal. */
static bool gate_request_line(const char *p, const char *eol, const struct http_gate_limits *lim,
                              struct http_head_check *out)
{
    if (eol > p && eol[-1] == '\r')
        eol--;
    const char *q = p;
    while (q < eol && gate_tchar((unsigned char)*q))
        q++;
    if (q == p || q - p > GATE_METHOD_MAX || q == eol || *q != ' ') {
        gate_verdict(out, HTTP_HEAD_MALFORMED, 400,
                     "malformed request line: expected METHOD SP target SP HTTP-version");
        return false;
    }
    const char *target = ++q;
    while (q < eol && *q != ' ')
        q++;
    size_t tlen = (size_t)(q - target);
    if (tlen > lim->max_target_bytes) {
        gate_verdict(out, HTTP_HEAD_TARGET_TOO_LONG, 414,
                     "the request target is longer than this server accepts");
        return false;
    }
    if (tlen == 0 || q == eol) {
        gate_verdict(out, HTTP_HEAD_MALFORMED, 400,
                     "malformed request line: expected METHOD SP target SP HTTP-version");
        return false;
    }
    for (const char *t = target; t < target + tlen; t++) {
        unsigned char c = (unsigned char)*t;
        if (c <= 0x20 || c == 0x7f) {
            gate_verdict(out, HTTP_HEAD_MALFORMED, 400,
                         "the request target contains a control character or a space");
            return false;
        }
    }
    if (gate_has_encoded_nul(target, tlen)) {
        gate_verdict(out, HTTP_HEAD_NUL, 400, "the request target contains an encoded NUL (%00)");
        return false;
    }
    const char *ver = q + 1;
    size_t vlen = (size_t)(eol - ver);
    if (vlen == 8 && memcmp(ver, "HTTP/1.", 7) == 0 && (ver[7] == '0' || ver[7] == '1'))
        return true;
    if (vlen == 8 && memcmp(ver, "HTTP/", 5) == 0 && ver[5] >= '0' && ver[5] <= '9' &&
        ver[6] == '.' && ver[7] >= '0' && ver[7] <= '9') {
        gate_verdict(out, HTTP_HEAD_VERSION, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
        return false;
    }
    gate_verdict(out, HTTP_HEAD_MALFORMED, 400,
                 "malformed request line: the HTTP version is not HTTP/1.0 or HTTP/1.1 syntax");
    return false;
}

/* Parses a Content-Length value (a comma list of equal decimal numbers is one
 * value, RFC 9110 section 8.6). Returns the value, -1 if not a number, -2 if
 * the list disagrees with itself. */
static long long gate_content_length(const char *v, size_t n)
{
    long long value = -1;
    size_t i = 0;
    while (i <= n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t digits = 0;
        long long x = 0;
        while (i < n && v[i] >= '0' && v[i] <= '9') {
            if (++digits > 18)
                return -1;
            x = x * 10 + (v[i] - '0');
            i++;
        }
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (digits == 0 || (i < n && v[i] != ','))
            return -1;
        if (value >= 0 && x != value)
            return -2;
        value = x;
        i++; /* past the comma, or past the end */
    }
    return value;
}

static bool gate_name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* Checks the header fields [p, end) where end is the start of the blank line. */
static bool gate_fields(const char *p, const char *end, struct http_head_check *out)
{
    long long clen = -1;
    int te = 0, hosts = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *le = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
        if (*p == ' ' || *p == '\t') {
            gate_verdict(out, HTTP_HEAD_MALFORMED, 400,
                         "obsolete line folding in a header field is not accepted");
            return false;
        }
        if (memchr(p, '\r', (size_t)(le - p))) {
            gate_verdict(out, HTTP_HEAD_MALFORMED, 400, "a bare CR in a header field");
            return false;
        }
        const char *colon = memchr(p, ':', (size_t)(le - p));
        const char *q = p;
        while (q < le && gate_tchar((unsigned char)*q))
            q++;
        if (!colon || colon == p || q != colon) {
            gate_verdict(out, HTTP_HEAD_MALFORMED, 400,
                         "malformed header field: expected a token name followed by ':'");
            return false;
        }
        size_t nlen = (size_t)(colon - p);
        const char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (gate_name_is(p, nlen, "content-length")) {
            long long x = gate_content_length(v, (size_t)(ve - v));
            if (x == -1) {
                gate_verdict(out, HTTP_HEAD_MALFORMED, 400, "Content-Length is not a number");
                return false;
            }
            if (x == -2 || (clen >= 0 && x != clen)) {
                gate_verdict(out, HTTP_HEAD_AMBIGUOUS_FRAMING, 400,
                             "conflicting Content-Length values (RFC 9112 section 6.3)");
                return false;
            }
            clen = x;
        } else if (gate_name_is(p, nlen, "transfer-encoding")) {
            if (++te > 1 || (size_t)(ve - v) != 7 || strncasecmp(v, "chunked", 7) != 0) {
                gate_verdict(out, HTTP_HEAD_UNSUPPORTED_CODING, 501,
                             "only Transfer-Encoding: chunked is supported");
                return false;
            }
        } else if (gate_name_is(p, nlen, "host")) {
            if (++hosts > 1) {
                gate_verdict(out, HTTP_HEAD_MALFORMED, 400, "more than one Host header");
                return false;
            }
        }
        p = eol + 1;
    }
    if (te && clen >= 0) {
        gate_verdict(out, HTTP_HEAD_AMBIGUOUS_FRAMING, 400,
                     "Transfer-Encoding together with Content-Length (RFC 9112 section 6.3)");
        return false;
    }
    return true;
}

void http_gate_check_head(const char *buf, size_t len, const struct http_gate_limits *lim,
                          struct http_head_check *out)
{
    memset(out, 0, sizeof *out);
    size_t p = 0;
    /* RFC 9112 section 2.2: empty lines before the request line are ignored. */
    while (p < len && p < 8 && (buf[p] == '\r' || buf[p] == '\n'))
        p++;
    size_t end = gate_head_end(buf, len, p);
    size_t scan = end ? end : len;
    if (memchr(buf, '\0', scan)) {
        gate_verdict(out, HTTP_HEAD_NUL, 400, "the request head contains a NUL byte");
        return;
    }
    const char *eol = memchr(buf + p, '\n', scan - p);
    if (!eol) {
        if (scan - p > lim->max_target_bytes + GATE_METHOD_MAX + 16)
            gate_verdict(out, HTTP_HEAD_TARGET_TOO_LONG, 414,
                         "the request target is longer than this server accepts");
        else if (scan >= lim->max_head_bytes)
            gate_verdict(out, HTTP_HEAD_TOO_LARGE, 431, "the request head is too large");
        return;
    }
    if (!gate_request_line(buf + p, eol, lim, out))
        return;
    if (!end || end > lim->max_head_bytes) {
        if (len >= lim->max_head_bytes || end > lim->max_head_bytes)
            gate_verdict(out, HTTP_HEAD_TOO_LARGE, 431,
                         "the request header fields are larger than this server accepts");
        return;
    }
    /* The blank line starts at end-1 (LF) or end-2 (CRLF). */
    size_t blank = buf[end - 2] == '\r' ? end - 2 : end - 1;
    if (!gate_fields(eol + 1, buf + blank, out))
        return;
    gate_verdict(out, HTTP_HEAD_OK, 0, NULL);
    out->head_len = end;
}

bool http_gate_value_has_nul(const char *value, size_t value_len)
{
    return value && memchr(value, '\0', value_len) != NULL;
}

static const char *gate_reason(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 408:
        return "Request Timeout";
    case 414:
        return "URI Too Long";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

size_t http_gate_format_problem(char *out, size_t out_len, int status, const char *slug,
                                const char *title, const char *detail)
{
    char body[512];
    /* title, slug and detail are this file's own static texts: no escaping needed. */
    int bl = snprintf(body, sizeof body,
                      "{\"type\":\"urn:hookline:problem:%s\",\"title\":\"%s\",\"status\":%d,"
                      "\"detail\":\"%s\"}",
                      slug, title, status, detail);
    if (bl < 0 || (size_t)bl >= sizeof body)
        return 0;
    int n = snprintf(out, out_len,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\n"
                     "Content-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n"
                     "%s\r\n%s",
                     status, gate_reason(status), bl,
                     status == 503 || status == 429 ? "Retry-After: 1\r\n" : "", body);
    if (n < 0 || (size_t)n >= out_len)
        return 0;
    return (size_t)n;
}

/* ---------- the gate ---------- */

enum gate_state { GATE_PENDING, GATE_LINGER, GATE_HANDED, GATE_ATTACHED };

struct gate_addr {
    int family;
    unsigned char bytes[16];
};

struct gate_addr_count {
    struct gate_addr addr;
    unsigned count;
    struct gate_addr_count *next;
};

struct http_gate_conn {
    int fd;
    enum gate_state state;
    enum http_gate_phase phase;
    bool reaped;
    double since; /* start of the current deadline, monotonic seconds */
    size_t drained;
    struct gate_addr addr;
    struct sockaddr_storage sa;
    socklen_t sa_len;
    struct http_gate_conn *prev, *next;
};

struct http_gate {
    struct http_gate_limits lim;
    int listen_fd, epoll_fd, wake_fd;
    unsigned port;
    pthread_t thread;
    bool running;
    atomic_bool stop, stop_accepting;
    http_gate_handoff_fn handoff;
    void *handoff_ctx;

    pthread_mutex_t mu;           /* guards everything below */
    struct http_gate_conn *conns; /* every open connection */
    struct http_gate_conn **by_fd;
    size_t by_fd_len;
    struct gate_addr_count *addr_buckets[GATE_ADDR_BUCKETS];
    unsigned open, held;
    unsigned long long refused_per_address, refused_total, head_timeouts, body_timeouts, bad_heads;
    double last_refusal_log;
    unsigned long long refusals_unlogged;
};

static void gate_close_listener(struct http_gate *g);

static double gate_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void gate_addr_of(const struct sockaddr *sa, struct gate_addr *out)
{
    memset(out, 0, sizeof *out);
    out->family = sa->sa_family;
    if (sa->sa_family == AF_INET)
        memcpy(out->bytes, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    else if (sa->sa_family == AF_INET6)
        memcpy(out->bytes, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
}

static unsigned gate_addr_hash(const struct gate_addr *a)
{
    uint32_t h = 2166136261u ^ (uint32_t)a->family;
    for (int i = 0; i < 16; i++)
        h = (h ^ a->bytes[i]) * 16777619u;
    return h % GATE_ADDR_BUCKETS;
}

/* Under mu: the count for a, created at zero when create is set. */
static struct gate_addr_count *gate_addr_find(struct http_gate *g, const struct gate_addr *a,
                                              bool create)
{
    unsigned b = gate_addr_hash(a);
    for (struct gate_addr_count *c = g->addr_buckets[b]; c; c = c->next)
        if (c->addr.family == a->family && memcmp(c->addr.bytes, a->bytes, 16) == 0)
            return c;
    if (!create)
        return NULL;
    struct gate_addr_count *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->addr = *a;
    c->next = g->addr_buckets[b];
    g->addr_buckets[b] = c;
    return c;
}

static void gate_addr_release(struct http_gate *g, const struct gate_addr *a)
{
    unsigned b = gate_addr_hash(a);
    for (struct gate_addr_count **pp = &g->addr_buckets[b]; *pp; pp = &(*pp)->next) {
        struct gate_addr_count *c = *pp;
        if (c->addr.family == a->family && memcmp(c->addr.bytes, a->bytes, 16) == 0) {
            if (c->count > 0)
                c->count--;
            if (c->count == 0) {
                *pp = c->next;
                free(c);
            }
            return;
        }
    }
}

/* Under mu: links c into the list and the fd table. */
static int gate_link(struct http_gate *g, struct http_gate_conn *c)
{
    if ((size_t)c->fd >= g->by_fd_len) {
        size_t n = g->by_fd_len ? g->by_fd_len : 1024;
        while (n <= (size_t)c->fd)
            n *= 2;
        struct http_gate_conn **nt = realloc(g->by_fd, n * sizeof *nt);
        if (!nt)
            return -1;
        memset(nt + g->by_fd_len, 0, (n - g->by_fd_len) * sizeof *nt);
        g->by_fd = nt;
        g->by_fd_len = n;
    }
    /* A connection still filed under this fd was handed over and lost by the
     * HTTP library before it announced it (the fd was closed and reused). */
    struct http_gate_conn *stale = g->by_fd[c->fd];
    if (stale && stale->state == GATE_HANDED) {
        g->by_fd[c->fd] = NULL;
        if (stale->prev)
            stale->prev->next = stale->next;
        else
            g->conns = stale->next;
        if (stale->next)
            stale->next->prev = stale->prev;
        gate_addr_release(g, &stale->addr);
        g->open--;
        free(stale);
    }
    g->by_fd[c->fd] = c;
    c->prev = NULL;
    c->next = g->conns;
    if (g->conns)
        g->conns->prev = c;
    g->conns = c;
    return 0;
}

/* Under mu: unlinks c, releases its address share and frees it. Does not close fd. */
static void gate_forget(struct http_gate *g, struct http_gate_conn *c)
{
    if ((size_t)c->fd < g->by_fd_len && g->by_fd[c->fd] == c)
        g->by_fd[c->fd] = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        g->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    gate_addr_release(g, &c->addr);
    g->open--;
    if (c->state == GATE_PENDING || c->state == GATE_LINGER)
        g->held--;
    free(c);
}

/* Under mu: sends a refusal, then keeps the connection only to drain what the
 * client still sends (so the answer is not lost to a reset), bounded in time
 * and bytes. */
static void gate_refuse(struct http_gate *g, struct http_gate_conn *c, int status, const char *slug,
                        const char *title, const char *detail)
{
    char msg[1024];
    size_t n = http_gate_format_problem(msg, sizeof msg, status, slug, title, detail);
    if (n) {
        ssize_t w = send(c->fd, msg, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
    }
    shutdown(c->fd, SHUT_WR);
    c->state = GATE_LINGER;
    c->since = gate_now();
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(g->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        close(c->fd);
        gate_forget(g, c);
    }
}

/* Under mu: a refusal sent before the connection was registered anywhere. */
static void gate_refuse_new(struct http_gate *g, int fd, int status, const char *slug,
                            const char *detail)
{
    char msg[1024];
    size_t n = http_gate_format_problem(msg, sizeof msg, status, slug, gate_reason(status), detail);
    if (n) {
        ssize_t w = send(fd, msg, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
    }
    close(fd);
    double now = gate_now();
    g->refusals_unlogged++;
    if (now - g->last_refusal_log >= 10.0) {
        log_warn("http: refused %llu connection(s) in the last %.0f s (%s)", g->refusals_unlogged,
                 g->last_refusal_log > 0 ? now - g->last_refusal_log : 0.0, detail);
        g->last_refusal_log = now;
        g->refusals_unlogged = 0;
    }
}

static void gate_accept(struct http_gate *g)
{
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(g->listen_fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                log_warn("http: cannot accept: %s", strerror(errno));
            return;
        }
        struct gate_addr a;
        gate_addr_of((struct sockaddr *)&sa, &a);
        pthread_mutex_lock(&g->mu);
        if (g->open >= g->lim.max_connections) {
            g->refused_total++;
            gate_refuse_new(g, fd, 503, "too-many-connections",
                            "the server holds as many connections as it is configured for");
            pthread_mutex_unlock(&g->mu);
            continue;
        }
        struct gate_addr_count *ac = gate_addr_find(g, &a, true);
        if (!ac || (g->lim.max_per_address && ac->count >= g->lim.max_per_address)) {
            g->refused_per_address++;
            gate_refuse_new(g, fd, 429, "too-many-connections-from-address",
                            "too many open connections from this address");
            if (ac && ac->count == 0)
                gate_addr_release(g, &a);
            pthread_mutex_unlock(&g->mu);
            continue;
        }
        struct http_gate_conn *c = calloc(1, sizeof *c);
        if (c) {
            c->fd = fd;
            c->addr = a;
        }
        if (!c || gate_link(g, c) < 0) {
            if (ac->count == 0)
                gate_addr_release(g, &a);
            free(c);
            close(fd);
            pthread_mutex_unlock(&g->mu);
            continue;
        }
        ac->count++;
        g->open++;
        g->held++;
        c->state = GATE_PENDING;
        c->since = gate_now();
        memcpy(&c->sa, &sa, sl);
        c->sa_len = sl;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = c};
        if (epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            gate_forget(g, c);
        }
        pthread_mutex_unlock(&g->mu);
    }
}

static const char *gate_slug(enum http_head_verdict v)
{
    switch (v) {
    case HTTP_HEAD_NUL:
        return "nul-byte";
    case HTTP_HEAD_AMBIGUOUS_FRAMING:
        return "ambiguous-framing";
    case HTTP_HEAD_TARGET_TOO_LONG:
        return "uri-too-long";
    case HTTP_HEAD_TOO_LARGE:
        return "header-too-large";
    case HTTP_HEAD_VERSION:
        return "http-version";
    case HTTP_HEAD_UNSUPPORTED_CODING:
        return "transfer-coding";
    default:
        return "malformed-request";
    }
}

/* A pending connection has data (or closed): judge its head so far. */
static void gate_readable(struct http_gate *g, struct http_gate_conn *c, char *buf, size_t cap)
{
    if (c->state == GATE_LINGER) {
        for (;;) {
            ssize_t n = recv(c->fd, buf, cap, MSG_DONTWAIT);
            if (n > 0 && (c->drained += (size_t)n) < GATE_LINGER_BYTES)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            break; /* closed, failed or drained enough */
        }
        close(c->fd);
        gate_forget(g, c);
        return;
    }
    size_t want = g->lim.max_head_bytes + 1 < cap ? g->lim.max_head_bytes + 1 : cap;
    ssize_t n = recv(c->fd, buf, want, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) { /* the client went away before sending a head */
        close(c->fd);
        gate_forget(g, c);
        return;
    }
    struct http_head_check chk;
    http_gate_check_head(buf, (size_t)n, &g->lim, &chk);
    if (chk.verdict == HTTP_HEAD_INCOMPLETE)
        return;
    if (chk.verdict != HTTP_HEAD_OK) {
        g->bad_heads++;
        gate_refuse(g, c, chk.status, gate_slug(chk.verdict), gate_reason(chk.status), chk.detail);
        return;
    }
    epoll_ctl(g->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    c->state = GATE_HANDED;
    c->since = gate_now();
    g->held--;
    int fd = c->fd;
    struct sockaddr_storage sa = c->sa;
    socklen_t sl = c->sa_len;
    /* The HTTP library's thread may announce the connection (and take mu)
     * before handoff returns: release mu around it. */
    pthread_mutex_unlock(&g->mu);
    bool taken = g->handoff(g->handoff_ctx, fd, (struct sockaddr *)&sa, sl);
    pthread_mutex_lock(&g->mu);
    if (!taken && (size_t)fd < g->by_fd_len && g->by_fd[fd] && g->by_fd[fd]->state == GATE_HANDED)
        gate_forget(g, g->by_fd[fd]); /* refused and closed by the library */
}

static void gate_sweep(struct http_gate *g, double now)
{
    double head = g->lim.header_timeout_ms / 1000.0, body = g->lim.body_timeout_ms / 1000.0;
    struct http_gate_conn *next;
    for (struct http_gate_conn *c = g->conns; c; c = next) {
        next = c->next;
        double age = now - c->since;
        switch (c->state) {
        case GATE_PENDING:
            if (age > head) {
                g->head_timeouts++;
                gate_refuse(g, c, 408, "request-timeout", "Request Timeout",
                            "the request head did not arrive in time");
            }
            break;
        case GATE_LINGER:
            if (age * 1000.0 > GATE_LINGER_MS) {
                close(c->fd);
                gate_forget(g, c);
            }
            break;
        case GATE_HANDED:
            if (age * 1000.0 > GATE_ORPHAN_MS)
                gate_forget(g, c); /* the library refused it before announcing it */
            break;
        case GATE_ATTACHED:
            if (c->reaped || c->phase == HTTP_GATE_BUSY)
                break;
            if ((c->phase == HTTP_GATE_AWAIT_HEAD && age > head) ||
                (c->phase == HTTP_GATE_AWAIT_BODY && age > body)) {
                /* The library still owns the fd and closes it after its close
                 * notification, which takes mu: shutting it down here is safe. */
                if (c->phase == HTTP_GATE_AWAIT_HEAD)
                    g->head_timeouts++;
                else
                    g->body_timeouts++;
                shutdown(c->fd, SHUT_RDWR);
                c->reaped = true;
            }
            break;
        }
    }
}

static void *gate_main(void *arg)
{
    struct http_gate *g = arg;
    size_t cap = g->lim.max_head_bytes + 1 > 65536 ? g->lim.max_head_bytes + 1 : 65536;
    char *buf = malloc(cap);
    if (!buf) {
        log_error("http: the gate cannot allocate its %zu-byte buffer", cap);
        return NULL;
    }
    double last_sweep = gate_now();
    struct epoll_event evs[64];
    while (!atomic_load(&g->stop)) {
        int n = epoll_wait(g->epoll_fd, evs, 64, GATE_SWEEP_MS);
        pthread_mutex_lock(&g->mu);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &g->listen_fd) {
                pthread_mutex_unlock(&g->mu);
                if (!atomic_load(&g->stop_accepting))
                    gate_accept(g);
                pthread_mutex_lock(&g->mu);
            } else if (p == &g->wake_fd) {
                uint64_t v;
                ssize_t r = read(g->wake_fd, &v, sizeof v);
                (void)r;
            } else {
                gate_readable(g, p, buf, cap);
            }
        }
        if (atomic_load(&g->stop_accepting) && g->listen_fd >= 0)
            gate_close_listener(g);
        double now = gate_now();
        if (now - last_sweep >= GATE_SWEEP_MS / 1000.0) {
            gate_sweep(g, now);
            last_sweep = now;
        }
        pthread_mutex_unlock(&g->mu);
    }
    free(buf);
    return NULL;
}

struct http_gate *http_gate_create(const char *host, int port, const struct http_gate_limits *lim,
                                   char *err, size_t err_len)
{
    struct http_gate *g = calloc(1, sizeof *g);
    struct addrinfo hints = {0}, *ai = NULL;
    char portstr[16];
    if (!g) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    g->lim = *lim;
    g->listen_fd = g->epoll_fd = g->wake_fd = -1;
    pthread_mutex_init(&g->mu, NULL);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    snprintf(portstr, sizeof portstr, "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai != 0) {
        snprintf(err, err_len, "listen.host %s: %s", host, gai_strerror(gai));
        goto fail;
    }
    g->listen_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (g->listen_fd < 0 ||
        setsockopt(g->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        (ai->ai_family == AF_INET6 &&
         setsockopt(g->listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
        bind(g->listen_fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(g->listen_fd, 1024) < 0) {
        snprintf(err, err_len, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        goto fail;
    }
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    if (getsockname(g->listen_fd, (struct sockaddr *)&bound, &bl) == 0)
        g->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    g->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    g->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &g->listen_fd};
    struct epoll_event wev = {.events = EPOLLIN, .data.ptr = &g->wake_fd};
    if (g->epoll_fd < 0 || g->wake_fd < 0 ||
        epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, g->listen_fd, &lev) < 0 ||
        epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, g->wake_fd, &wev) < 0) {
        snprintf(err, err_len, "cannot set up the listener: %s", strerror(errno));
        goto fail;
    }
    freeaddrinfo(ai);
    return g;
fail:
    if (ai)
        freeaddrinfo(ai);
    http_gate_destroy(g);
    return NULL;
}

unsigned http_gate_port(const struct http_gate *g)
{
    return g->port;
}

int http_gate_run(struct http_gate *g, http_gate_handoff_fn handoff, void *ctx, char *err,
                  size_t err_len)
{
    g->handoff = handoff;
    g->handoff_ctx = ctx;
    int rc = pthread_create(&g->thread, NULL, gate_main, g);
    if (rc != 0) {
        snprintf(err, err_len, "cannot start the http-gate thread: %s", strerror(rc));
        return -1;
    }
    pthread_setname_np(g->thread, "http-gate");
    g->running = true;
    return 0;
}

void http_gate_stop_accepting(struct http_gate *g)
{
    if (!g)
        return;
    atomic_store(&g->stop_accepting, true);
    if (g->running && !atomic_load(&g->stop)) {
        /* The gate's thread closes the listener and the held connections
         * itself (it may be reading them); wait for it, briefly. */
        uint64_t one = 1;
        ssize_t w = write(g->wake_fd, &one, sizeof one);
        (void)w;
        for (int i = 0; i < 200; i++) {
            pthread_mutex_lock(&g->mu);
            bool closed = g->listen_fd < 0;
            pthread_mutex_unlock(&g->mu);
            if (closed)
                return;
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        return;
    }
    pthread_mutex_lock(&g->mu);
    gate_close_listener(g);
    pthread_mutex_unlock(&g->mu);
}

/* Under mu: closes the listening socket and every connection still held. */
static void gate_close_listener(struct http_gate *g)
{
    if (g->listen_fd >= 0) {
        epoll_ctl(g->epoll_fd, EPOLL_CTL_DEL, g->listen_fd, NULL);
        close(g->listen_fd);
        g->listen_fd = -1;
    }
    struct http_gate_conn *next;
    for (struct http_gate_conn *c = g->conns; c; c = next) {
        next = c->next;
        if (c->state == GATE_PENDING || c->state == GATE_LINGER) {
            epoll_ctl(g->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            gate_forget(g, c);
        }
    }
}

void http_gate_destroy(struct http_gate *g)
{
    if (!g)
        return;
    if (g->running) {
        atomic_store(&g->stop, true);
        uint64_t one = 1;
        ssize_t w = write(g->wake_fd, &one, sizeof one);
        (void)w;
        pthread_join(g->thread, NULL);
    }
    http_gate_stop_accepting(g);
    while (g->conns) { /* only connections the library never announced are left */
        struct http_gate_conn *c = g->conns;
        gate_forget(g, c);
    }
    for (int b = 0; b < GATE_ADDR_BUCKETS; b++) {
        while (g->addr_buckets[b]) {
            struct gate_addr_count *c = g->addr_buckets[b];
            g->addr_buckets[b] = c->next;
            free(c);
        }
    }
    if (g->epoll_fd >= 0)
        close(g->epoll_fd);
    if (g->wake_fd >= 0)
        close(g->wake_fd);
    free(g->by_fd);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

struct http_gate_conn *http_gate_conn_started(struct http_gate *g, int fd)
{
    struct http_gate_conn *c = NULL;
    pthread_mutex_lock(&g->mu);
    if (fd >= 0 && (size_t)fd < g->by_fd_len && g->by_fd[fd] &&
        g->by_fd[fd]->state == GATE_HANDED) {
        c = g->by_fd[fd];
        c->state = GATE_ATTACHED;
        c->phase = HTTP_GATE_AWAIT_HEAD;
        c->since = gate_now();
    }
    pthread_mutex_unlock(&g->mu);
    return c;
}

void http_gate_conn_phase(struct http_gate *g, struct http_gate_conn *c, enum http_gate_phase phase)
{
    if (!c)
        return;
    double now = gate_now();
    pthread_mutex_lock(&g->mu);
    c->phase = phase;
    c->since = now;
    pthread_mutex_unlock(&g->mu);
}

void http_gate_conn_closed(struct http_gate *g, struct http_gate_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&g->mu);
    gate_forget(g, c);
    pthread_mutex_unlock(&g->mu);
}

void http_gate_stats(struct http_gate *g, struct http_gate_stats *out)
{
    pthread_mutex_lock(&g->mu);
    out->refused_per_address = g->refused_per_address;
    out->refused_total = g->refused_total;
    out->head_timeouts = g->head_timeouts;
    out->body_timeouts = g->body_timeouts;
    out->bad_heads = g->bad_heads;
    out->held = g->held;
    out->open = g->open;
    pthread_mutex_unlock(&g->mu);
}
