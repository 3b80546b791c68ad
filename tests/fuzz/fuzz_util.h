/*
 * fuzz_util: helpers shared by the libFuzzer targets in tests/fuzz: splitting one
 * fuzz input into parts (separated by FUZZ_SEP, a line "--" of its own, so seed
 * files stay readable) and NUL-terminated copies of them. A check that fails
 * calls fuzz_fail, which aborts: libFuzzer reports it like a crash and keeps the
 * input.
 */
#ifndef HOOKLINE_FUZZ_UTIL_H
#define HOOKLINE_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_SEP "\n--\n"
#define FUZZ_SEP_LEN 4
#define FUZZ_MAX_PARTS 8

struct fuzz_part {
    const uint8_t *p; /* borrowed from the input */
    size_t n;
    int present; /* 0: the input has fewer parts */
};

/* Splits data[size] at FUZZ_SEP into at most max parts (the last one takes the rest). */
static inline void fuzz_split(const uint8_t *data, size_t size, struct fuzz_part *parts, size_t max)
{
    size_t i = 0;
    for (size_t k = 0; k < max; k++)
        parts[k] = (struct fuzz_part){NULL, 0, 0};
    for (size_t k = 0; k < max; k++) {
        const uint8_t *end = NULL;
        if (k + 1 < max)
            end = memmem(data + i, size - i, FUZZ_SEP, FUZZ_SEP_LEN);
        size_t n = end ? (size_t)(end - (data + i)) : size - i;
        parts[k] = (struct fuzz_part){data + i, n, 1};
        if (!end)
            break;
        i += n + FUZZ_SEP_LEN;
    }
}

/* A new NUL-terminated copy of p[n] (p may be NULL when n is 0). */
static inline char *fuzz_strndup(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* A broken invariant: says which and aborts (libFuzzer saves the input). */
#define fuzz_fail(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "fuzz invariant broken at %s:%d: ", __FILE__, __LINE__);                   \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

#define fuzz_check(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__VA_ARGS__);                                                                \
    } while (0)

#endif
