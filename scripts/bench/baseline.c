/*
 * Baseline for scripts/bench/ingest.sh: a bare libmicrohttpd server that reads
 * the whole request body and answers every request with a small JSON 202, doing
 * no other work. It uses the same threading mode as hookline (internal polling
 * thread + epoll, a thread pool of one thread per online CPU), so the ratio
 * hookline/baseline measures what hookline's own work costs on this machine.
 *
 * Usage: baseline PORT   (binds 127.0.0.1 only; PORT 0 picks a free port; prints
 *                         "listening 127.0.0.1:PORT" to stdout when ready; exits
 *                         on SIGTERM/SIGINT)
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#if MHD_VERSION < 0x00097002
typedef int baseline_result;
#else
typedef enum MHD_Result baseline_result;
#endif

static const char body_202[] = "{\"status\": \"accepted\"}";

/* Marker stored in *req_cls after the first call so the body chunks that follow
 * are recognised; its address is all that matters. */
static char request_seen;

static baseline_result baseline_access(void *cls, struct MHD_Connection *conn, const char *url,
                                       const char *method, const char *version,
                                       const char *upload_data, size_t *upload_data_size,
                                       void **req_cls)
{
    struct MHD_Response *resp = cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload_data;
    if (*req_cls == NULL) {
        /* Headers only; ask for the body. */
        *req_cls = &request_seen;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        /* Consume the chunk: reading the body is part of the work being compared. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    return MHD_queue_response(conn, 202, resp);
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

int main(int argc, char **argv)
{
    unsigned short port = 0;
    if (argc != 2 || parse_port(argv[1], &port) < 0) {
        fprintf(stderr, "usage: %s PORT (0-65535, 0 picks a free port)\n",
                argc > 0 ? argv[0] : "baseline");
        return 2;
    }

    /* Block the stop signals before MHD starts its threads (they inherit the
     * mask), then wait for them synchronously in the main thread. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        fprintf(stderr, "baseline: cannot block signals\n");
        return 1;
    }

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = ncpu > 0 && ncpu < 256 ? (unsigned)ncpu : 1;

    struct MHD_Response *resp = MHD_create_response_from_buffer(
        sizeof body_202 - 1, (void *)body_202, MHD_RESPMEM_PERSISTENT);
    if (!resp || MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") !=
                     MHD_YES) {
        fprintf(stderr, "baseline: cannot create the response\n");
        return 1;
    }

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        baseline_access, resp, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)10000,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "baseline: cannot listen on 127.0.0.1:%u\n", (unsigned)port);
        MHD_destroy_response(resp);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening 127.0.0.1:%u\n", info ? (unsigned)info->port : (unsigned)port);
    fflush(stdout);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) == 0 && (sig == SIGTERM || sig == SIGINT))
            break;
    }
    MHD_stop_daemon(d);
    MHD_destroy_response(resp);
    return 0;
}
