/*
 * log: structured logging, one JSON object per line on stderr
 * ({"time":..., "level":..., "msg":..., fields...}). Thread-safe: each line is
 * formatted into a local buffer and written with a single write(2).
 * Callers must never pass a secret as a message or field value.
 */
#ifndef HOOKLINE_LOG_H
#define HOOKLINE_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the minimum level written; default LOG_INFO. Call before threads start. */
void log_set_level(enum log_level level);

/* Sets the instance id written as "instance" into every line (id borrowed,
 * copied; NULL or "": none). Call before threads start. */
void log_set_instance(const char *id);

/* Parses "debug", "info", "warn", "error". Returns 0 and *out, or -1. */
int log_parse_level(const char *name, enum log_level *out);

/* True when a line at level would be written. */
bool log_enabled(enum log_level level);

/* Rate limit: each call site (identified by the address of its message or
 * format string) writes at most 20 lines per 10 s; further lines are dropped
 * and counted, and the site's next line after the window is preceded by
 * {"msg":"log: repeated lines were suppressed","suppressed":"N","like":MSG}.
 * Debug lines are not limited. A message must therefore be a string literal
 * or a stable pointer, never a buffer reused for different texts. */

/* Test seam: the monotonic clock the rate limit uses (NULL: the real one).
 * Also forgets every site's budget. */
void log_set_clock(double (*now)(void));

/* Writes one line. fields is NULL or a borrowed NULL-terminated list of
 * alternating key/value strings, e.g. (const char *[]){"source", "zendesk", NULL}.
 * Values are JSON-escaped; a line is capped at 4 KiB (longer values are cut). */
void log_write(enum log_level level, const char *msg, const char *const *fields);

/* printf-style message without extra fields. */
void log_msgf(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_info(...) log_msgf(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msgf(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msgf(LOG_ERROR, __VA_ARGS__)
#define log_debug(...) log_msgf(LOG_DEBUG, __VA_ARGS__)

#endif
