/*
 * console_http: the operations console's HTTP side under /console/: the
 * embedded assets (console_assets.c, generated at build time), sign-in and
 * sign-out, and the console's own JSON reads (overview, dry run, rules,
 * integrity) and the replay of a candidate rule (admin only). It also decides who makes a /v1 admin
 * request: the bearer token or, for the console, the session cookie with its CSRF check. Runs on
 * the HTTP threads (libmicrohttpd); the audit verification and a candidate's replay each run on a
 * thread of their own; the overview's samples come from console_series' thread.
 */
#ifndef HOOKLINE_CONSOLE_HTTP_H
#define HOOKLINE_CONSOLE_HTTP_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "console/console.h"
#include "store/store.h"

struct rules;

/* What the console needs from the service. All borrowed; must outlive it. */
struct console_http_deps {
    const struct config *cfg;
    struct store *st;
    struct rules *rules; /* NULL: no rules.script (no dry run) */
    /* Delivery pause state (for the overview); may be NULL. */
    bool (*delivery_paused)(void *ctx, char *why, size_t why_len);
    void *ctx;
    bool close_each; /* listen.keep_alive false: answers carry Connection: close */
};

struct console_http;

/* Creates the console (session table, sampler thread). Returns a new console
 * (caller frees with console_http_destroy) or NULL on out of memory. */
struct console_http *console_http_create(const struct console_http_deps *deps);

/* Stops the threads and forgets every session. NULL is a no-op. */
void console_http_destroy(struct console_http *ch);

/* Answers a request whose path starts with /console. HTTP threads. */
enum MHD_Result console_http_handle(struct console_http *ch, struct MHD_Connection *conn,
                                    const char *url, const char *method);

/* POST /console/api/replay: the request body's bound (bytes) and the
 * candidate's (bytes of rule text). */
#define CONSOLE_REPLAY_BODY_MAX (320 * 1024)
#define CONSOLE_REPLAY_RULE_MAX (256 * 1024)

/* Answers POST /console/api/replay once its body (len bytes, borrowed; NULL
 * when empty; too_large when it passed CONSOLE_REPLAY_BODY_MAX and was
 * dropped) has arrived: admin only, compiles the candidate and starts its
 * replay on the console's replay thread (202), or refuses. HTTP threads. */
enum MHD_Result console_http_replay_post(struct console_http *ch, struct MHD_Connection *conn,
                                         const unsigned char *body, size_t len, bool too_large);

/* Who makes an admin request. */
struct console_caller {
    enum console_role role;
    bool session;                        /* by a console session (else a bearer token) */
    char handle[CONSOLE_HANDLE_HEX + 1]; /* the session's handle (not secret) */
};

enum console_auth {
    CONSOLE_AUTH_OK = 0,
    CONSOLE_AUTH_UNAUTHENTICATED, /* 401: no valid token or session */
    CONSOLE_AUTH_FORBIDDEN,       /* 403: a viewer asked for a change, or the CSRF check failed */
};

/* Authenticates conn: an Authorization: Bearer header decides alone (admin or
 * viewer token); without one, the session cookie. change: the request changes
 * something (then a viewer is forbidden and a session must pass the CSRF
 * check). Fills *who; on a refusal *why names it (static string). */
enum console_auth console_http_authorize(struct console_http *ch, struct MHD_Connection *conn,
                                         bool change, struct console_caller *who, const char **why);

/* Writes who made a change as audit records name it ("admin API" for a bearer
 * token, "console admin session <handle>" for a session) into out[len]. */
void console_http_actor(const struct console_caller *who, char *out, size_t len);

/* Appends an admin.console audit record (action, target, role, session) for a
 * change made through a session, and waits for its commit. Returns 0 or -1. */
int console_http_audit_change(struct console_http *ch, const struct console_caller *who,
                              const char *action, const char *target);

#endif
