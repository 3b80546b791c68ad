/*
 * number: a DID's phone number as people and CRMs write it, normalised to the
 * digits DIDWW stores (docs/contract.md section 4): spaces, dashes, dots, parentheses and
 * one leading '+' are dropped ("+43 (720) 000-0007" is "437200000007"), up to
 * 17 digits (DIDWW's sandbox numbers are longer than E.164's 15). National
 * ("0720 ...") and 00 ("0043 ...") forms are refused with a reason that says
 * so: only the writer knows the country. The one place where numbers are read:
 * the rule API (actions), `hookline audit --number`, `GET /v1/audit?number=` and
 * the store's audit query. Pure leaf module; any thread.
 */
#ifndef HOOKLINE_NUMBER_H
#define HOOKLINE_NUMBER_H

#include <stddef.h>

#define NUMBER_MIN_DIGITS 6
#define NUMBER_MAX_DIGITS 17
/* An output buffer of this size holds every normalised number and its NUL. */
#define NUMBER_BUF_LEN (NUMBER_MAX_DIGITS + 1)

enum number_result {
    NUMBER_OK = 0,
    NUMBER_EMPTY = -1,       /* no digit at all */
    NUMBER_BAD_CHAR = -2,    /* a letter or sign that is no separator, a misplaced '+',
                                unbalanced or nested parentheses */
    NUMBER_NATIONAL = -3,    /* a leading single 0 (or "+0"): national form */
    NUMBER_INTL_PREFIX = -4, /* a leading 00: the international prefix form */
    NUMBER_TOO_SHORT = -5,   /* fewer than NUMBER_MIN_DIGITS digits */
    NUMBER_TOO_LONG = -6,    /* more than NUMBER_MAX_DIGITS digits (or more than out holds) */
};

/* Normalises the number in (a NUL-terminated string, borrowed) into out[out_len]
 * as digits only. A "(0)" after the country code ("+44 (0)20 7946 0418", the
 * trunk prefix some countries print in brackets) is dropped with its brackets.
 * Returns NUMBER_OK, or another result with a one-line reason in why[why_len]
 * (may be NULL) that quotes the input (cut, control and non-ASCII bytes shown as
 * '?') and says how to write it, e.g. "number '0049 30 1234567' is in 00 form:
 * write it as +49301234567". out is "" on failure. */
enum number_result number_normalize(const char *in, char *out, size_t out_len, char *why,
                                    size_t why_len);

#endif
