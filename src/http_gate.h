/*
 * http_gate: the listener's front door. It owns the listening socket, holds
 * each new connection until its first request head has arrived complete and
 * valid (read with MSG_PEEK, so nothing is consumed), and only then hands the
 * socket to libmicrohttpd. It enforces what libmicrohttpd cannot: a bound on
 * connections per peer address, a deadline for a request head and for a whole
 * body (on kept-alive connections too, through the tracker below), and problem
 * JSON for heads that libmicrohttpd would answer with its own HTML pages.
 */
#ifndef HOOKLINE_HTTP_GATE_H
#define HOOKLINE_HTTP_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Every bound the gate enforces; all explicit, no hidden defaults. */
struct http_gate_limits {
    unsigned max_connections; /* open client connections in all, held and handed over */
    unsigned max_per_address; /* open connections from one peer address; 0: no bound */
    int header_timeout_ms;    /* a request head must be complete this long after the
                                 connection opened or the previous answer was sent */
    int body_timeout_ms;      /* a whole body must arrive this long after its head */
    size_t max_head_bytes;    /* request line and header fields together */
    size_t max_target_bytes;  /* the request target (path and query) */
};

/* What a request head amounts to. Every refusal has its own name and status. */
enum http_head_verdict {
    HTTP_HEAD_INCOMPLETE = 0, /* no blank line yet and no limit passed: wait */
    HTTP_HEAD_OK,
    HTTP_HEAD_MALFORMED,          /* 400: request line or field syntax */
    HTTP_HEAD_NUL,                /* 400: a NUL byte, raw or as %00 in the target */
    HTTP_HEAD_AMBIGUOUS_FRAMING,  /* 400: conflicting Content-Length, or TE with CL */
    HTTP_HEAD_TARGET_TOO_LONG,    /* 414 */
    HTTP_HEAD_TOO_LARGE,          /* 431 */
    HTTP_HEAD_VERSION,            /* 505 */
    HTTP_HEAD_UNSUPPORTED_CODING, /* 501: a transfer coding other than chunked */
};

struct http_head_check {
    enum http_head_verdict verdict;
    int status;         /* the HTTP status to answer a refusal with (0 otherwise) */
    const char *detail; /* static text for the problem's detail (NULL when OK) */
    size_t head_len;    /* bytes up to and including the blank line (when OK) */
};

/* Judges the first len bytes a client sent. Pure: no allocation, no I/O; buf
 * is borrowed and need not be NUL-terminated. */
void http_gate_check_head(const char *buf, size_t len, const struct http_gate_limits *lim,
                          struct http_head_check *out);

/* Checks one header field as libmicrohttpd decoded it (for the requests that
 * follow the first on a kept-alive connection, which the gate does not see):
 * value_len is the length libmicrohttpd reports, so an embedded NUL shows. */
bool http_gate_value_has_nul(const char *value, size_t value_len);

/* Writes a complete HTTP/1.1 answer with a problem JSON body and
 * "Connection: close" into out (at most out_len bytes). Returns its length, or
 * 0 if it did not fit. Used for refusals sent before libmicrohttpd has the
 * connection. */
size_t http_gate_format_problem(char *out, size_t out_len, int status, const char *slug,
                                const char *title, const char *detail);

struct http_gate;
struct http_gate_conn;

/* Takes a validated connection: returns true if the HTTP library took fd (it
 * then owns and closes it), false if it refused (it has closed fd). Called on
 * the gate's thread. */
typedef bool (*http_gate_handoff_fn)(void *ctx, int fd, const struct sockaddr *sa,
                                     socklen_t sa_len);

/* Binds host:port (port 0: any free port) and prepares the gate; no thread
 * runs yet. lim is copied. Returns a new gate (free with http_gate_destroy)
 * or NULL with err set. */
struct http_gate *http_gate_create(const char *host, int port, const struct http_gate_limits *lim,
                                   char *err, size_t err_len);

/* The port actually bound. */
unsigned http_gate_port(const struct http_gate *g);

/* Starts the gate's thread ("http-gate"): accept, hold, hand over to handoff,
 * sweep deadlines every 100 ms. ctx is borrowed. 0 or -1 with err set. */
int http_gate_run(struct http_gate *g, http_gate_handoff_fn handoff, void *ctx, char *err,
                  size_t err_len);

/* Stops accepting: closes the listening socket and every connection still
 * waiting for its head. Connections already handed over are left to finish. */
void http_gate_stop_accepting(struct http_gate *g);

/* Stops the thread and frees g. Call only after the HTTP library has closed
 * every handed-over connection (its close notifications touch g). NULL is a
 * no-op. */
void http_gate_destroy(struct http_gate *g);

/* Tracker for a connection the HTTP library holds. */
enum http_gate_phase {
    HTTP_GATE_AWAIT_HEAD, /* between requests: header_timeout applies */
    HTTP_GATE_AWAIT_BODY, /* head done, body arriving: body_timeout applies */
    HTTP_GATE_BUSY,       /* being answered (or waiting for the store): no deadline */
};

/* Called from the HTTP library's "connection started" notification with the
 * socket's fd. Returns the tracker (borrowed; valid until
 * http_gate_conn_closed) or NULL for a socket the gate did not hand over. */
struct http_gate_conn *http_gate_conn_started(struct http_gate *g, int fd);

/* Moves a tracked connection to phase, restarting its deadline. NULL is a no-op. */
void http_gate_conn_phase(struct http_gate *g, struct http_gate_conn *c,
                          enum http_gate_phase phase);

/* Called from the "connection closed" notification, before the socket is
 * closed: forgets c and releases its address's share. NULL is a no-op. */
void http_gate_conn_closed(struct http_gate *g, struct http_gate_conn *c);

/* Counters for /metrics (monotonic). */
struct http_gate_stats {
    unsigned long long refused_per_address, refused_total, head_timeouts, body_timeouts, bad_heads;
    unsigned held, open;
};
void http_gate_stats(struct http_gate *g, struct http_gate_stats *out);

#endif
