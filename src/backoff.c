/*
 * backoff: retry timing for DIDWW requests (docs/contract.md section 5): classifies an HTTP
 * outcome into done / retry / final / pause, computes exponential backoff with full
 * jitter, and parses Retry-After (delta-seconds or any of the three HTTP-date forms
 * of RFC 9110 section 5.6.7, parsed by hand so no locale or TZ can change the result).
 * Every function is pure: the clock and the random source are passed in, nothing is
 * allocated and no state is kept, so any thread may call it.
 */
#include "backoff.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BACKOFF_RETRY_AFTER_MAX_S (BACKOFF_RETRY_AFTER_MAX_MS / 1000)

static const char *const backoff_wkday[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const backoff_weekday[7] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                               "Friday", "Saturday", "Sunday"};
static const char *const backoff_month[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

enum backoff_class backoff_classify(int status)
{
    /* 0 means no response at all (refused, reset, timeout); a negative value is not an
     * HTTP status either, so it is treated the same way. */
    if (status <= 0)
        return BACKOFF_RETRY;
    if (status >= 200 && status <= 299)
        return BACKOFF_DONE;
    switch (status) {
    case 408:
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
        return BACKOFF_RETRY;
    case 401:
        return BACKOFF_PAUSE;
    default:
        /* 400, 403, 404, 409, 422 and everything else unexpected (1xx, 3xx, 405, 501,
         * ...): sending the same request again would get the same answer. */
        return BACKOFF_FINAL;
    }
}

int64_t backoff_delay_ms(int attempt, int64_t initial_ms, int64_t max_ms, double (*rand01)(void *),
                         void *rand_ctx)
{
    if (initial_ms <= 0 || max_ms <= 0)
        return 0;
    if (attempt < 1)
        attempt = 1;

    /* Double until the cap is reached: at most 63 iterations whatever attempt is, and
     * the doubling never runs past max_ms, so nothing overflows. */
    int64_t cap = initial_ms < max_ms ? initial_ms : max_ms;
    for (int i = 1; i < attempt && cap < max_ms; i++)
        cap = cap > max_ms / 2 ? max_ms : cap * 2;

    double r = rand01 ? rand01(rand_ctx) : 0.0;
    if (!(r > 0.0)) /* also NaN */
        return 0;
    /* Uniform over the integers 0..cap inclusive; r < 1 keeps floor(r * (cap + 1)) <= cap,
     * and a source that breaks its promise (r >= 1) is clamped. */
    double d = r * ((double)cap + 1.0);
    if (d >= (double)cap)
        return cap;
    return (int64_t)d;
}

/* Advances *p past s (ASCII case-insensitive). Returns false, leaving *p, on a mismatch. */
static bool backoff_lit(const char **p, const char *s)
{
    size_t n = strlen(s);
    if (strncasecmp(*p, s, n) != 0)
        return false;
    *p += n;
    return true;
}

/* Reads exactly n (1..4) decimal digits. */
static bool backoff_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char ch = (*p)[i];
        if (ch < '0' || ch > '9')
            return false;
        v = v * 10 + (ch - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/* Reads a three-letter month name; *mon is 1..12. */
static bool backoff_month_name(const char **p, int *mon)
{
    for (int i = 0; i < 12; i++) {
        if (backoff_lit(p, backoff_month[i])) {
            *mon = i + 1;
            return true;
        }
    }
    return false;
}

/* Reads "HH:MM:SS" (second 60 allowed for a leap second). */
static bool backoff_time_of_day(const char **p, int *h, int *m, int *s)
{
    if (!backoff_digits(p, 2, h) || !backoff_lit(p, ":") || !backoff_digits(p, 2, m) ||
        !backoff_lit(p, ":") || !backoff_digits(p, 2, s))
        return false;
    return *h <= 23 && *m <= 59 && *s <= 60;
}

static bool backoff_is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int backoff_days_in_month(int64_t y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && backoff_is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d (H. Hinnant's algorithm). */
static int64_t backoff_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The Gregorian year containing Unix time t. */
static int64_t backoff_year_of(int64_t t)
{
    int64_t z = (t >= 0 ? t : t - 86399) / 86400 + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    return yoe + era * 400 + (m <= 2);
}

/* True when word[0..len) is one of names[0..n). */
static bool backoff_name_in(const char *word, size_t len, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && strncasecmp(word, names[i], len) == 0)
            return true;
    return false;
}

/* Parses an HTTP-date (s is trimmed): IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT",
 * RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" or asctime "Sun Nov  6 08:49:37 1994".
 * The weekday must be a real name but is not checked against the date (RFC 9110 lets
 * a recipient ignore it). Returns false when s is none of them. */
static bool backoff_http_date(const char *s, int64_t now_s, int64_t *out)
{
    const char *p = s;
    size_t name_len = 0;
    int day = 0, mon = 0, year = 0, h = 0, mi = 0, sec = 0;
    int64_t y;

    while ((p[name_len] >= 'A' && p[name_len] <= 'Z') || (p[name_len] >= 'a' && p[name_len] <= 'z'))
        name_len++;
    if (name_len == 3 && p[3] == ',') {
        /* IMF-fixdate */
        if (!backoff_name_in(p, 3, backoff_wkday, 7))
            return false;
        p += 4;
        if (!backoff_lit(&p, " ") || !backoff_digits(&p, 2, &day) || !backoff_lit(&p, " ") ||
            !backoff_month_name(&p, &mon) || !backoff_lit(&p, " ") ||
            !backoff_digits(&p, 4, &year) || !backoff_lit(&p, " ") ||
            !backoff_time_of_day(&p, &h, &mi, &sec) || !backoff_lit(&p, " ") ||
            !backoff_lit(&p, "GMT"))
            return false;
        y = year;
    } else if (name_len > 3 && p[name_len] == ',') {
        /* RFC 850: two-digit year */
        if (!backoff_name_in(p, name_len, backoff_weekday, 7))
            return false;
        p += name_len + 1;
        if (!backoff_lit(&p, " ") || !backoff_digits(&p, 2, &day) || !backoff_lit(&p, "-") ||
            !backoff_month_name(&p, &mon) || !backoff_lit(&p, "-") ||
            !backoff_digits(&p, 2, &year) || !backoff_lit(&p, " ") ||
            !backoff_time_of_day(&p, &h, &mi, &sec) || !backoff_lit(&p, " ") ||
            !backoff_lit(&p, "GMT"))
            return false;
        /* RFC 9110: a year more than 50 years in the future is the most recent past year
         * with the same last two digits. */
        int64_t now_year = backoff_year_of(now_s);
        y = now_year - now_year % 100 + year;
        if (y > now_year + 50)
            y -= 100;
    } else if (name_len == 3 && p[3] == ' ') {
        /* asctime: "Sun Nov  6 08:49:37 1994" (day padded with a space, or two digits) */
        if (!backoff_name_in(p, 3, backoff_wkday, 7))
            return false;
        p += 4;
        if (!backoff_month_name(&p, &mon) || !backoff_lit(&p, " "))
            return false;
        if (*p == ' ') {
            p++;
            if (!backoff_digits(&p, 1, &day))
                return false;
        } else if (!backoff_digits(&p, 2, &day)) {
            return false;
        }
        if (!backoff_lit(&p, " ") || !backoff_time_of_day(&p, &h, &mi, &sec) ||
            !backoff_lit(&p, " ") || !backoff_digits(&p, 4, &year))
            return false;
        y = year;
    } else {
        return false;
    }
    if (*p != '\0' || mon < 1 || mon > 12 || day < 1 || day > backoff_days_in_month(y, mon))
        return false;
    *out = backoff_days_from_civil(y, mon, day) * 86400 + h * 3600 + mi * 60 + sec;
    return true;
}

int64_t backoff_retry_after_ms(const char *value, int64_t now_s)
{
    char buf[64];
    size_t len;

    if (!value)
        return -1;
    /* Trim optional whitespace around the field value (RFC 9110 OWS). */
    while (*value == ' ' || *value == '\t')
        value++;
    len = strlen(value);
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t' || value[len - 1] == '\r' ||
                       value[len - 1] == '\n'))
        len--;
    if (len == 0)
        return -1;

    size_t ndigits = strspn(value, "0123456789");
    if (ndigits >= len) {
        /* delta-seconds = 1*DIGIT: anything past the cap, even past LLONG_MAX, is the cap. */
        if (len >= sizeof buf)
            return BACKOFF_RETRY_AFTER_MAX_MS;
        memcpy(buf, value, len);
        buf[len] = '\0';
        errno = 0;
        char *end = NULL;
        long long v = strtoll(buf, &end, 10);
        if (end != buf + len)
            return -1;
        if (errno == ERANGE || v > BACKOFF_RETRY_AFTER_MAX_S)
            return BACKOFF_RETRY_AFTER_MAX_MS;
        return (int64_t)v * 1000;
    }

    if (len >= sizeof buf)
        return -1;
    memcpy(buf, value, len);
    buf[len] = '\0';
    int64_t when;
    if (!backoff_http_date(buf, now_s, &when))
        return -1;
    if (when <= now_s)
        return 0;
    /* when is within years 0..9999, so this subtraction only overflows for an absurd
     * now_s; both cases end at the cap. */
    int64_t diff;
    if (__builtin_sub_overflow(when, now_s, &diff) || diff > BACKOFF_RETRY_AFTER_MAX_S)
        return BACKOFF_RETRY_AFTER_MAX_MS;
    return diff * 1000;
}

int64_t backoff_next_ms(int attempt, int64_t initial_ms, int64_t max_ms, int64_t retry_after_ms,
                        double (*rand01)(void *), void *rand_ctx)
{
    int64_t d = backoff_delay_ms(attempt, initial_ms, max_ms, rand01, rand_ctx);
    if (retry_after_ms >= 0) {
        /* The server's word wins over max_ms, but not beyond the absurdity cap. */
        if (retry_after_ms > BACKOFF_RETRY_AFTER_MAX_MS)
            retry_after_ms = BACKOFF_RETRY_AFTER_MAX_MS;
        if (retry_after_ms > d)
            d = retry_after_ms;
    }
    return d;
}
