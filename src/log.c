/*
 * log: writes structured log lines (JSON objects, one per line) to stderr.
 * Any thread may call it; a line is built in a stack buffer of fixed size and
 * emitted with one write(2), so lines from different threads never interleave.
 * The only global is the level, set once at start-up. It never allocates.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static enum log_level log_min_level = LOG_INFO;
static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

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

void log_write(enum log_level level, const char *msg, const char *const *fields)
{
    if (!log_enabled(level))
        return;
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

void log_msgf(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_write(level, msg, NULL);
}
