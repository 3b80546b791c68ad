/*
 * http_server: the libmicrohttpd listener. Routes /hooks/{source} to ingest,
 * serves /healthz, /readyz and /metrics, and answers everything else with
 * problem JSON. Webhook requests are suspended while their store operation
 * waits for the group commit, so no HTTP thread ever blocks on fsync.
 */
#ifndef HOOKLINE_HTTP_SERVER_H
#define HOOKLINE_HTTP_SERVER_H

#include <jansson.h>
#include <stdbool.h>

#include "config.h"
#include "ingest.h"
#include "store/store.h"

struct http_server;

struct rules;

/* Admin operations the listener exposes under /v1 (Authorization: Bearer
 * admin.token, compared in constant time). Callbacks run on an HTTP thread and
 * may block briefly. */
struct http_admin {
    /* Reloads the rules; returns 0 with the new version in msg, or -1 with the
     * compile error ("file:line: message") in msg. */
    int (*reload_rules)(void *ctx, char *msg, size_t msg_len);
    /* Lifts a delivery pause: 0 resumed, 1 was not paused, -1 failed (msg says why). */
    int (*resume_delivery)(void *ctx, char *msg, size_t msg_len);
    /* True when delivery is paused, with the reason in why (for /readyz). */
    bool (*delivery_paused)(void *ctx, char *why, size_t why_len);
    void *ctx;
    /* The rule engine, borrowed (NULL: none): the console's dry run and rule
     * version read it. */
    struct rules *rules;
    /* Members added to a ready /readyz answer (this instance's id, its rule
     * version, the instances sharing the store): returns a new object (the
     * server decrefs it) or NULL. May be NULL. */
    json_t *(*status)(void *ctx);
    /* Pauses delivery at an operator's request (who and reason borrowed): 0
     * paused, 1 was paused already, -1 failed (msg says why). May be NULL. */
    int (*pause_delivery)(void *ctx, const char *who, const char *reason, char *msg,
                          size_t msg_len);
};

/* Starts listening on cfg->listen_host:listen_port with cfg->listen_threads
 * threads. cfg, ing and st are borrowed and must outlive the server. Returns a
 * new server (caller stops it with http_server_stop) or NULL with err set. */
struct http_server *http_server_start(const struct config *cfg, struct ingest *ing,
                                      struct store *st, const struct http_admin *admin, char *err,
                                      size_t err_len);

/* The port actually bound (useful with port 0). */
unsigned http_server_port(const struct http_server *srv);

/* Graceful stop: stops accepting new connections, waits up to grace_ms for the
 * requests in flight to be answered, then closes everything and frees srv.
 * NULL is a no-op. */
void http_server_stop(struct http_server *srv, int grace_ms);

#endif
