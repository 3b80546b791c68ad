/*
 * number: normalises phone numbers written by people and CRMs to the digits
 * DIDWW stores, and refuses the forms only the writer can resolve (national,
 * 00) with a reason that says what to write instead. The reason quotes the
 * input, which often comes from a webhook body: it is cut and made printable
 * so that it cannot forge a log line. Holds no state; any thread.
 */
#include "number.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Digits kept for the suggestion in a reason; longer inputs are counted only. */
#define NUMBER_KEEP 40
/* Input bytes quoted in a reason. */
#define NUMBER_QUOTE 40

/* in, cut to NUMBER_QUOTE bytes, with bytes outside printable ASCII as '?'. */
static void number_quote(const char *in, char out[NUMBER_QUOTE + 4])
{
    size_t i = 0;
    for (; in[i] && i < NUMBER_QUOTE; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (in[i]) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}

static enum number_result number_fail(enum number_result rc, const char *in, char *why,
                                      size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Writes "number '<in>' " followed by fmt into why; returns rc. */
static enum number_result number_fail(enum number_result rc, const char *in, char *why,
                                      size_t why_len, const char *fmt, ...)
{
    if (!why || why_len == 0)
        return rc;
    char q[NUMBER_QUOTE + 4];
    number_quote(in, q);
    int n = snprintf(why, why_len, "number '%s' ", q);
    if (n < 0 || (size_t)n >= why_len)
        return rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why + n, why_len - (size_t)n, fmt, ap);
    va_end(ap);
    return rc;
}

static bool number_is_space(const unsigned char *p, size_t *len)
{
    *len = 1;
    if (*p == ' ' || *p == '\t' || *p == '-' || *p == '.')
        return true;
    if (p[0] == 0xC2 && p[1] == 0xA0) { /* U+00A0, the no-break space of formatted text */
        *len = 2;
        return true;
    }
    return false;
}

enum number_result number_normalize(const char *in, char *out, size_t out_len, char *why,
                                    size_t why_len)
{
    char d[NUMBER_KEEP + 1];
    size_t n = 0;        /* digits seen (only the first NUMBER_KEEP are kept) */
    size_t group_at = 0; /* digits before the open parenthesis */
    bool plus = false, in_group = false;

    if (out && out_len)
        out[0] = '\0';
    if (why && why_len)
        why[0] = '\0';
    if (!in)
        in = "";
    for (const unsigned char *p = (const unsigned char *)in; *p;) {
        size_t len;
        if (*p >= '0' && *p <= '9') {
            if (n < NUMBER_KEEP)
                d[n] = (char)*p;
            n++;
            p++;
            continue;
        }
        if (number_is_space(p, &len)) {
            p += len;
            continue;
        }
        switch (*p) {
        case '+':
            if (plus || n > 0)
                return number_fail(NUMBER_BAD_CHAR, in, why, why_len,
                                   "has a '+' that does not start it: '+' may only come first");
            plus = true;
            break;
        case '(':
            if (in_group)
                return number_fail(NUMBER_BAD_CHAR, in, why, why_len, "has nested parentheses");
            in_group = true;
            group_at = n;
            break;
        case ')':
            if (!in_group)
                return number_fail(NUMBER_BAD_CHAR, in, why, why_len, "has a ')' without its '('");
            in_group = false;
            /* "+44 (0)20 ...": the bracketed national trunk prefix is not dialled
             * from abroad, so it is not part of the number. */
            if (group_at > 0 && n == group_at + 1 && group_at < NUMBER_KEEP && d[group_at] == '0')
                n--;
            break;
        default:
            if (*p >= 0x20 && *p < 0x7f)
                return number_fail(NUMBER_BAD_CHAR, in, why, why_len,
                                   "has '%c': only digits, spaces, dashes, dots, parentheses "
                                   "and a leading '+' may appear",
                                   *p);
            return number_fail(NUMBER_BAD_CHAR, in, why, why_len,
                               "has byte 0x%02x: only digits, spaces, dashes, dots, "
                               "parentheses and a leading '+' may appear",
                               *p);
        }
        p++;
    }
    if (in_group)
        return number_fail(NUMBER_BAD_CHAR, in, why, why_len, "has a '(' without its ')'");
    if (n == 0)
        return number_fail(NUMBER_EMPTY, in, why, why_len, "has no digits");
    size_t kept = n < NUMBER_KEEP ? n : NUMBER_KEEP;
    d[kept] = '\0';
    if (n >= 2 && d[0] == '0' && d[1] == '0')
        return number_fail(NUMBER_INTL_PREFIX, in, why, why_len,
                           "is in 00 form (the international prefix dialled from some "
                           "countries): write it as +%s%s",
                           d + 2, n > kept ? "..." : "");
    if (d[0] == '0' && plus)
        return number_fail(NUMBER_NATIONAL, in, why, why_len,
                           "has a 0 after the '+', and no country code starts with 0: write "
                           "it in international form, the country code first and without the "
                           "national 0");
    if (d[0] == '0')
        return number_fail(NUMBER_NATIONAL, in, why, why_len,
                           "is in national form (a leading 0): it must be converted to "
                           "international form, the country code first and without the "
                           "national 0 (+43 720 ... for 0720 ... in Austria)");
    if (n < NUMBER_MIN_DIGITS)
        return number_fail(NUMBER_TOO_SHORT, in, why, why_len,
                           "has %zu digit%s: an international number has at least %d", n,
                           n == 1 ? "" : "s", NUMBER_MIN_DIGITS);
    size_t max = NUMBER_MAX_DIGITS;
    if (out_len == 0)
        max = 0;
    else if (out_len - 1 < max)
        max = out_len - 1;
    if (n > max)
        return number_fail(NUMBER_TOO_LONG, in, why, why_len,
                           "has %zu digits: a number has at most %zu", n, max);
    memcpy(out, d, n + 1);
    return NUMBER_OK;
}
