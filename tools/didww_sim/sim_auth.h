/*
 * sim_auth: what API version 2026-11-19 adds to the simulator: the token endpoint
 * (POST /token, DIDWW's auth.didww.com), the bearer tokens it issues (expiring,
 * revocable, scoped "full" or "read"), their check on /v3, and the per-account request
 * budget that replaces the 20-per-second limit in that version. Tests steer it through
 * /__sim/auth (didww_sim.c). Thread-safe: one lock, never held with another.
 */
#ifndef SIM_AUTH_H
#define SIM_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct sim_auth;

/* What to answer. body is malloc'd (caller frees) or NULL. */
struct sim_auth_reply {
    int status;
    char *body;
    int retry_after;    /* seconds, 0: no header */
    bool no_store;      /* Cache-Control: no-store */
    char www_auth[160]; /* WWW-Authenticate value, "" for none */
};

/* budget: requests per window_s for the whole account under 2026-11-19 (0: off). */
struct sim_auth *sim_auth_create(long budget, long window_s);
void sim_auth_destroy(struct sim_auth *a);

/* POST /token: key_header is the request's Api-Key (may be NULL), want_key the account's. */
void sim_auth_token(struct sim_auth *a, const char *key_header, const char *want_key,
                    const char *body, size_t body_len, struct sim_auth_reply *out);

/* Checks a /v3 request of version (a bearer-only one): authorization is the header (may
 * be NULL), write whether the method changes something. Returns 0 when allowed, else
 * fills out (401 invalid_token, 403 insufficient_scope) and returns -1. */
int sim_auth_check(struct sim_auth *a, const char *authorization, const char *version, bool write,
                   struct sim_auth_reply *out);

/* The account's budget for 2026-11-19: true when admitted, else *retry_after_s is the
 * number of seconds until the window ends. */
bool sim_auth_budget_admit(struct sim_auth *a, double now, int *retry_after_s, char *detail,
                           size_t detail_len);

/* POST /__sim/auth: {"max_ttl_s", "budget", "budget_window_s", "fail": {"status", "count",
 * "retry_after", "error"}, "revoke": true, "refuse_tokens": bool} (all optional). Returns 0,
 * or -1 with err. */
int sim_auth_configure(struct sim_auth *a, json_t *cfg, char *err, size_t err_len);

/* GET /__sim/auth: settings and the tokens issued (raw values: a test needs them to prove
 * they appear nowhere else), with scope, api_version, seconds left and revoked. */
json_t *sim_auth_json(struct sim_auth *a);

/* Forgets tokens, faults and budget use; settings back to the command line's. */
void sim_auth_reset(struct sim_auth *a);

#endif
