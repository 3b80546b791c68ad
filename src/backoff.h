/*
 * backoff: retry timing for DIDWW requests: exponential backoff with full
 * jitter, Retry-After parsing (delta-seconds or HTTP-date), and the
 * classification of an HTTP outcome into done / retry / final / pause
 * (docs/contract.md section 5). Pure functions with the clock and random source passed in, so the
 * retry logic is tested without sleeping.
 */
#ifndef HOOKLINE_BACKOFF_H
#define HOOKLINE_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

/* Longest delay a Retry-After value can ask for: larger (absurd) values are cut to
 * one day, so a hostile or broken server cannot park a job for years. */
#define BACKOFF_RETRY_AFTER_MAX_MS (86400LL * 1000)

enum backoff_class {
    BACKOFF_DONE = 0, /* 2xx */
    BACKOFF_RETRY,    /* network error, timeout, 408, 429, 500, 502, 503, 504 */
    BACKOFF_FINAL,    /* 400, 403, 404, 409, 422 and any other 4xx/5xx not listed: dead */
    BACKOFF_PAUSE,    /* 401: pause all delivery */
};

/* Classifies an attempt: status is the HTTP status, or 0 when no response came
 * (connection error, timeout, dropped connection). */
enum backoff_class backoff_classify(int status);

/* Full-jitter delay before attempt number `attempt` (1 = the first retry):
 * uniform in [0, min(max_ms, initial_ms * 2^(attempt-1))], using rand01() (a
 * value in [0, 1)). Never overflows for large attempt numbers. */
int64_t backoff_delay_ms(int attempt, int64_t initial_ms, int64_t max_ms, double (*rand01)(void *),
                         void *rand_ctx);

/* Parses a Retry-After value: delta-seconds ("120") or an HTTP-date
 * ("Wed, 21 Oct 2015 07:28:00 GMT", also the obsolete RFC 850 and asctime
 * forms). now_s is the current Unix time. Returns the delay in milliseconds
 * (0 for a date in the past), or -1 when the value is unparseable. */
int64_t backoff_retry_after_ms(const char *value, int64_t now_s);

/* The delay to wait before the next attempt: the jittered backoff, floored by
 * retry_after_ms when it is >= 0, capped by max_ms unless Retry-After asks for
 * more (the server's word wins). */
int64_t backoff_next_ms(int attempt, int64_t initial_ms, int64_t max_ms, int64_t retry_after_ms,
                        double (*rand01)(void *), void *rand_ctx);

#endif
