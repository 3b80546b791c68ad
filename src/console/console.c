/*
 * console: the console's session table, cookie parsing and CSRF check (see
 * console.h). Sessions are held in a fixed array under one mutex; nothing here
 * logs, and no secret (token, cookie, CSRF token) ever leaves this module but
 * through the caller's own struct console_session_info. Any thread.
 */
#include "console/console.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "digest.h"

struct console_slot {
    bool used;
    struct console_session_info info;
    double last_used;
};

struct console_sessions {
    pthread_mutex_t mu;
    struct console_slot *slots;
    size_t max;
    double idle_s, absolute_s;
};

struct console_sessions *console_sessions_create(size_t max, double idle_s, double absolute_s)
{
    struct console_sessions *cs = calloc(1, sizeof *cs);
    if (!cs)
        return NULL;
    cs->max = max ? max : CONSOLE_MAX_SESSIONS;
    cs->idle_s = idle_s > 0 ? idle_s : CONSOLE_IDLE_S;
    cs->absolute_s = absolute_s > 0 ? absolute_s : CONSOLE_ABSOLUTE_S;
    cs->slots = calloc(cs->max, sizeof *cs->slots);
    if (!cs->slots) {
        free(cs);
        return NULL;
    }
    pthread_mutex_init(&cs->mu, NULL);
    return cs;
}

void console_sessions_destroy(struct console_sessions *cs)
{
    if (!cs)
        return;
    /* Wipe the secrets before the memory goes back to the allocator. */
    memset(cs->slots, 0, cs->max * sizeof *cs->slots);
    free(cs->slots);
    pthread_mutex_destroy(&cs->mu);
    free(cs);
}

static int console_random_hex(char *out, size_t nbytes)
{
    unsigned char raw[32];
    static const char hex[] = "0123456789abcdef";
    if (nbytes > sizeof raw || RAND_bytes(raw, (int)nbytes) != 1)
        return -1;
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
    memset(raw, 0, sizeof raw);
    return 0;
}

/* The time a slot's session ends if not used again. */
static double console_slot_expires(const struct console_sessions *cs, const struct console_slot *s)
{
    double idle_end = s->last_used + cs->idle_s, abs_end = s->info.created + cs->absolute_s;
    return idle_end < abs_end ? idle_end : abs_end;
}

static void console_slot_clear(struct console_slot *s)
{
    memset(s, 0, sizeof *s);
}

int console_session_new(struct console_sessions *cs, enum console_role role, double now,
                        struct console_session_info *out)
{
    struct console_session_info info = {.role = role, .created = now};
    if (console_random_hex(info.cookie, CONSOLE_SECRET_HEX / 2) < 0 ||
        console_random_hex(info.csrf, CONSOLE_SECRET_HEX / 2) < 0 ||
        console_random_hex(info.handle, CONSOLE_HANDLE_HEX / 2) < 0)
        return -1;
    pthread_mutex_lock(&cs->mu);
    struct console_slot *pick = NULL, *lru = NULL;
    for (size_t i = 0; i < cs->max; i++) {
        struct console_slot *s = &cs->slots[i];
        if (s->used && console_slot_expires(cs, s) <= now)
            console_slot_clear(s);
        if (!s->used) {
            if (!pick)
                pick = s;
        } else if (!lru || s->last_used < lru->last_used) {
            lru = s;
        }
    }
    if (!pick) {
        pick = lru;
        console_slot_clear(pick);
    }
    pick->used = true;
    pick->info = info;
    pick->last_used = now;
    info.expires = console_slot_expires(cs, pick);
    pick->info.expires = info.expires;
    pthread_mutex_unlock(&cs->mu);
    *out = info;
    memset(&info, 0, sizeof info);
    return 0;
}

bool console_session_find(struct console_sessions *cs, const char *cookie, double now,
                          struct console_session_info *out)
{
    if (!cookie || strlen(cookie) != CONSOLE_SECRET_HEX)
        return false;
    bool found = false;
    pthread_mutex_lock(&cs->mu);
    for (size_t i = 0; i < cs->max; i++) {
        struct console_slot *s = &cs->slots[i];
        if (!s->used || !digest_equal(s->info.cookie, cookie, CONSOLE_SECRET_HEX))
            continue;
        if (console_slot_expires(cs, s) <= now) {
            console_slot_clear(s);
            break;
        }
        s->last_used = now;
        s->info.expires = console_slot_expires(cs, s);
        *out = s->info;
        memset(out->cookie, 0, sizeof out->cookie);
        found = true;
        break;
    }
    pthread_mutex_unlock(&cs->mu);
    return found;
}

bool console_session_end(struct console_sessions *cs, const char *cookie)
{
    if (!cookie || strlen(cookie) != CONSOLE_SECRET_HEX)
        return false;
    bool found = false;
    pthread_mutex_lock(&cs->mu);
    for (size_t i = 0; i < cs->max; i++) {
        struct console_slot *s = &cs->slots[i];
        if (s->used && digest_equal(s->info.cookie, cookie, CONSOLE_SECRET_HEX)) {
            console_slot_clear(s);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&cs->mu);
    return found;
}

size_t console_session_count(struct console_sessions *cs, double now)
{
    size_t n = 0;
    pthread_mutex_lock(&cs->mu);
    for (size_t i = 0; i < cs->max; i++) {
        struct console_slot *s = &cs->slots[i];
        if (s->used && console_slot_expires(cs, s) <= now)
            console_slot_clear(s);
        if (s->used)
            n++;
    }
    pthread_mutex_unlock(&cs->mu);
    return n;
}

enum console_role console_token_role(const struct config *cfg, const char *given, size_t len)
{
    const char *admin = cfg->admin_token, *viewer = cfg->admin_viewer_token;
    /* Both comparisons always run, so the time does not tell which one matched. */
    bool is_admin = admin && digest_equal_str(given, len, admin, strlen(admin));
    bool is_viewer = viewer && digest_equal_str(given, len, viewer, strlen(viewer));
    if (len == 0)
        return CONSOLE_ROLE_NONE;
    return is_admin ? CONSOLE_ROLE_ADMIN : is_viewer ? CONSOLE_ROLE_VIEWER : CONSOLE_ROLE_NONE;
}

const char *console_role_name(enum console_role role)
{
    return role == CONSOLE_ROLE_ADMIN ? "admin" : role == CONSOLE_ROLE_VIEWER ? "viewer" : "none";
}

int console_cookie_get(const char *header, const char *name, char *out, size_t out_len)
{
    size_t nlen = strlen(name);
    const char *p = header;
    if (!header || out_len == 0)
        return -1;
    out[0] = '\0';
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        if (plen > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            const char *v = p + nlen + 1;
            size_t vlen = plen - nlen - 1;
            while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
                v++;
                vlen -= 2;
            }
            if (vlen == 0 || vlen >= out_len)
                return -1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return 0;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return -1;
}

int console_cookie_format(const char *cookie, double max_age_s, bool secure, char *out,
                          size_t out_len)
{
    int n = snprintf(out, out_len, "%s=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Strict%s",
                     CONSOLE_COOKIE_NAME, cookie ? cookie : "", cookie ? (long long)max_age_s : 0LL,
                     secure ? "; Secure" : "");
    if (n < 0 || (size_t)n >= out_len) {
        if (out_len)
            out[0] = '\0';
        return -1;
    }
    return 0;
}

/* True when origin is "http://HOST" or "https://HOST" with HOST equal to host
 * (case-insensitive; the port is part of both). */
static bool console_origin_matches(const char *origin, const char *host)
{
    const char *rest = NULL;
    if (strncasecmp(origin, "http://", 7) == 0)
        rest = origin + 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        rest = origin + 8;
    return rest && host && *host && strcasecmp(rest, host) == 0;
}

const char *console_csrf_refusal(const char *expected, const char *header_token, const char *origin,
                                 const char *sec_fetch_site, const char *host)
{
    if (!expected || !*expected)
        return "no session";
    if (!header_token ||
        !digest_equal_str(header_token, strlen(header_token), expected, strlen(expected)))
        return "the X-CSRF-Token header is missing or does not match the session";
    return console_origin_refusal(origin, sec_fetch_site, host);
}

const char *console_origin_refusal(const char *origin, const char *sec_fetch_site, const char *host)
{
    if (!origin && !sec_fetch_site)
        return "neither Origin nor Sec-Fetch-Site says where the request comes from";
    if (sec_fetch_site && strcmp(sec_fetch_site, "same-origin") != 0)
        return "Sec-Fetch-Site is not same-origin";
    if (origin && !console_origin_matches(origin, host))
        return "Origin is not this console's origin";
    return NULL;
}
