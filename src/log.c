/*
 * log: writes structured log lines (JSON objects, one per line) to stderr.
 * Any thread may call it; a line is built in a stack buffer of fixed size and
 * emitted with one write(2), so lines from different threads never interleave.
 * Repeated lines are rate-limited: each call site (its message or format
 * string) may write LOG_BURST lines per LOG_WINDOW_S seconds; the rest are
 * counted and reported as one "suppressed" line when the site next writes.
 * A flood (a client disconnecting 10,000 times, a full disk failing every
 * commit) thus cannot fill the disk the logs live on. Globals: the level (set
 * once at start-up) and the rate table under its own mutex. Never allocates.
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096
#define LOG_SITES 128
#define LOG_BURST 20    /* lines per call site per window */
#define LOG_WINDOW_S 10 /* seconds */

static enum log_level log_min_level = LOG_INFO;

/* One call site's budget in the current window. */
struct log_site {
    const void *key; /* the message or format string's address */
    double window_start;
    unsigned written;
    unsigned long long suppressed;
};

static pthread_mutex_t log_rate_mu = PTHREAD_MUTEX_INITIALIZER;
static struct log_site log_sites[LOG_SITES];
static double (*log_clock)(void);
static const char *const log_level_names[] = {"debug", "info", "warn", "error"};
/* The process's instance id, written into every line after msg ("" none). Set
 * before threads start, read-only afterwards. */
static char log_instance[80];

void log_set_instance(const char *id)
{
    snprintf(log_instance, sizeof log_instance, "%s", id ? id : "");
}

void log_set_level(enum log_level level)
{
    log_min_level = level;
}

int log_parse_level(const char *name, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

bool log_enabled(enum log_level level)
{
    return level >= log_min_level;
}

/* Appends s JSON-escaped to buf at *pos, never past cap-1; stops when full. */
static void log_append_escaped(char *buf, size_t cap, size_t *pos, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p && *pos + 7 < cap; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            buf[(*pos)++] = '\\';
            buf[(*pos)++] = (char)c;
        } else if (c == '\n') {
            buf[(*pos)++] = '\\';
            buf[(*pos)++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            buf[(*pos)++] = '\\';
            buf[(*pos)++] = 'u';
            buf[(*pos)++] = '0';
            buf[(*pos)++] = '0';
            buf[(*pos)++] = hex[c >> 4];
            buf[(*pos)++] = hex[c & 15];
        } else {
            buf[(*pos)++] = (char)c;
        }
    }
}

static void log_append_raw(char *buf, size_t cap, size_t *pos, const char *s)
{
    size_t n = strlen(s);
    if (*pos + n + 3 >= cap)
        n = *pos + 3 < cap ? cap - *pos - 3 : 0;
    memcpy(buf + *pos, s, n);
    *pos += n;
}

static void log_emit(enum log_level level, const char *msg, const char *const *fields)
{
    char buf[LOG_LINE_MAX];
    size_t pos = 0;
    struct timeval tv;
    struct tm tm;
    char ts[40];

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03ldZ", (long)(tv.tv_usec / 1000));

    log_append_raw(buf, sizeof buf, &pos, "{\"time\":\"");
    log_append_raw(buf, sizeof buf, &pos, ts);
    log_append_raw(buf, sizeof buf, &pos, "\",\"level\":\"");
    log_append_raw(buf, sizeof buf, &pos, log_level_names[level]);
    log_append_raw(buf, sizeof buf, &pos, "\",\"msg\":\"");
    log_append_escaped(buf, sizeof buf - 64, &pos, msg);
    log_append_raw(buf, sizeof buf, &pos, "\"");
    if (log_instance[0]) {
        log_append_raw(buf, sizeof buf, &pos, ",\"instance\":\"");
        log_append_escaped(buf, sizeof buf - 64, &pos, log_instance);
        log_append_raw(buf, sizeof buf, &pos, "\"");
    }
    for (size_t i = 0; fields && fields[i] && fields[i + 1]; i += 2) {
        log_append_raw(buf, sizeof buf, &pos, ",\"");
        log_append_escaped(buf, sizeof buf - 64, &pos, fields[i]);
        log_append_raw(buf, sizeof buf, &pos, "\":\"");
        log_append_escaped(buf, sizeof buf - 64, &pos, fields[i + 1]);
        log_append_raw(buf, sizeof buf, &pos, "\"");
    }
    if (pos + 3 > sizeof buf)
        pos = sizeof buf - 3;
    buf[pos++] = '}';
    buf[pos++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, pos);
    (void)w;
}

static double log_now(void)
{
    if (log_clock)
        return log_clock();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void log_set_clock(double (*now)(void))
{
    pthread_mutex_lock(&log_rate_mu);
    log_clock = now;
    memset(log_sites, 0, sizeof log_sites);
    pthread_mutex_unlock(&log_rate_mu);
}

/* Decides whether the call site key may write now. Returns true to write;
 * *suppressed is then the number of lines the site dropped in its previous
 * window (to be reported), else 0. Debug lines are never limited. */
static bool log_admit(enum log_level level, const void *key, unsigned long long *suppressed)
{
    *suppressed = 0;
    if (level == LOG_DEBUG)
        return true;
    double now = log_now();
    pthread_mutex_lock(&log_rate_mu);
    size_t h = (size_t)(((uintptr_t)key >> 3) * 0x9E3779B97F4A7C15ull) % LOG_SITES;
    struct log_site *s = NULL;
    for (size_t i = 0; i < 8; i++) { /* a short probe; the oldest slot is reused */
        struct log_site *c = &log_sites[(h + i) % LOG_SITES];
        if (c->key == key) {
            s = c;
            break;
        }
        if (!s || c->key == NULL || (s->key && c->window_start < s->window_start))
            s = c;
    }
    if (s->key != key) {
        s->key = key;
        s->window_start = now;
        s->written = 0;
        s->suppressed = 0;
    }
    if (now - s->window_start >= LOG_WINDOW_S) {
        *suppressed = s->suppressed;
        s->window_start = now;
        s->written = 0;
        s->suppressed = 0;
    }
    bool ok = s->written < LOG_BURST;
    if (ok)
        s->written++;
    else
        s->suppressed++;
    pthread_mutex_unlock(&log_rate_mu);
    return ok;
}

static void log_note_suppressed(enum log_level level, const char *like, unsigned long long n)
{
    char count[24], window[16];
    snprintf(count, sizeof count, "%llu", n);
    snprintf(window, sizeof window, "%d", LOG_WINDOW_S);
    log_emit(level, "log: repeated lines were suppressed",
             (const char *const[]){"suppressed", count, "window_s", window, "like", like, NULL});
}

void log_write(enum log_level level, const char *msg, const char *const *fields)
{
    if (!log_enabled(level))
        return;
    unsigned long long dropped;
    if (!log_admit(level, msg, &dropped))
        return;
    if (dropped)
        log_note_suppressed(level, msg, dropped);
    log_emit(level, msg, fields);
}

void log_msgf(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    unsigned long long dropped;
    if (!log_admit(level, fmt, &dropped))
        return;
    if (dropped)
        log_note_suppressed(level, fmt, dropped);
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_emit(level, msg, NULL);
}
