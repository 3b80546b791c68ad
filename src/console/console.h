/*
 * console: the operations console's sessions and request checks, free of any
 * HTTP library so they can be tested alone. A session is created by signing in
 * with admin.token (role admin) or admin.viewer_token (role viewer); it lives in
 * memory only (a restart revokes every session), in a table of bounded size, and
 * expires after an idle time and an absolute lifetime. Each session has three
 * values: the cookie (secret, only in the Set-Cookie answer), the CSRF token
 * (secret, sent back by the page in a header on every change) and the handle
 * (not secret: names the session in audit records and logs). Any thread; one
 * mutex guards the table.
 */
#ifndef HOOKLINE_CONSOLE_H
#define HOOKLINE_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define CONSOLE_COOKIE_NAME "hookline_session"
#define CONSOLE_SECRET_HEX 64    /* cookie and CSRF token: 32 random bytes in hex */
#define CONSOLE_HANDLE_HEX 12    /* session handle: 6 random bytes in hex */
#define CONSOLE_IDLE_S 1800      /* a session unused this long ends (30 minutes) */
#define CONSOLE_ABSOLUTE_S 43200 /* and every session ends this long after sign-in (12 hours) */
#define CONSOLE_MAX_SESSIONS 256 /* signing in beyond this ends the least recently used */

enum console_role { CONSOLE_ROLE_NONE = 0, CONSOLE_ROLE_VIEWER, CONSOLE_ROLE_ADMIN };

/* What a caller learns about a session (copies; the cookie only at creation). */
struct console_session_info {
    enum console_role role;
    char cookie[CONSOLE_SECRET_HEX + 1];
    char csrf[CONSOLE_SECRET_HEX + 1];
    char handle[CONSOLE_HANDLE_HEX + 1];
    double created, expires; /* Unix seconds: sign-in, and when it ends if unused */
};

struct console_sessions;

/* A new empty table of at most max sessions (0: CONSOLE_MAX_SESSIONS) with the
 * given lifetimes in seconds (0: the defaults above). Returns a new table
 * (caller frees with console_sessions_destroy) or NULL on out of memory. */
struct console_sessions *console_sessions_create(size_t max, double idle_s, double absolute_s);

/* Frees the table and forgets every session. NULL is a no-op. */
void console_sessions_destroy(struct console_sessions *cs);

/* Creates a session of role at now; fills *out (all three values). When the
 * table is full the least recently used session ends first. Returns 0, or -1
 * when no random bytes could be had. */
int console_session_new(struct console_sessions *cs, enum console_role role, double now,
                        struct console_session_info *out);

/* Looks up the session whose cookie is cookie (compared in constant time),
 * dropping it when expired at now; a live one is touched (idle time restarts)
 * and copied to *out without its cookie. Returns true when found alive. */
bool console_session_find(struct console_sessions *cs, const char *cookie, double now,
                          struct console_session_info *out);

/* Ends the session with this cookie. Returns true when there was one. */
bool console_session_end(struct console_sessions *cs, const char *cookie);

/* Live sessions at now (expired ones are dropped). */
size_t console_session_count(struct console_sessions *cs, double now);

/* The role a token gives: admin.token, admin.viewer_token (both compared in
 * constant time, both always compared), or CONSOLE_ROLE_NONE. given is
 * borrowed and need not be NUL-terminated. */
enum console_role console_token_role(const struct config *cfg, const char *given, size_t len);

/* "admin", "viewer" or "none". Static string. */
const char *console_role_name(enum console_role role);

/* Finds cookie name in a Cookie header value ("a=1; b=2") and copies its value
 * into out[out_len]. Returns 0, or -1 when absent, empty or too long. */
int console_cookie_get(const char *header, const char *name, char *out, size_t out_len);

/* Writes the Set-Cookie value for a new session (secure: add Secure) or, with
 * cookie NULL, the value that clears it. Returns 0 or -1 (does not fit). */
int console_cookie_format(const char *cookie, double max_age_s, bool secure, char *out,
                          size_t out_len);

/* The origin check of a request that changes something (sign-in included):
 * Sec-Fetch-Site, when sent, must be "same-origin"; Origin, when sent, must be
 * http(s)://host with host equal to the Host header; at least one of the two
 * must be present. NULL arguments are absent headers. Returns NULL when the
 * request passes, else a static reason. */
const char *console_origin_refusal(const char *origin, const char *sec_fetch_site,
                                   const char *host);

/* The CSRF check of a change made with a session cookie: the header token
 * must equal the session's (constant time), and the request must come from the
 * console's own origin: Sec-Fetch-Site, when sent, must be "same-origin"; Origin,
 * when sent, must be http(s)://host with host equal to the Host header; at least
 * one of the two must be present. Any argument but expected may be NULL (absent).
 * Returns NULL when the request passes, else a static reason. */
const char *console_csrf_refusal(const char *expected, const char *header_token, const char *origin,
                                 const char *sec_fetch_site, const char *host);

#endif
