/*
 * test_util: helpers shared by the cmocka unit tests: a fresh temporary
 * directory per test under $HOOKLINE_TEST_TMP (or /tmp) and small file writers.
 */
#ifndef HOOKLINE_TEST_UTIL_H
#define HOOKLINE_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Creates a new empty directory and writes its path into out[len]. */
static inline void test_tmpdir(char *out, size_t len)
{
    const char *base = getenv("HOOKLINE_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(out, len, "%s/hl-unit-XXXXXX", base);
    if (!mkdtemp(out)) {
        perror("mkdtemp");
        abort();
    }
}

/* Writes text to dir/name and the full path into out[len]. */
static inline void test_write_file(const char *dir, const char *name, const char *text, char *out,
                                   size_t len)
{
    snprintf(out, len, "%s/%s", dir, name);
    FILE *f = fopen(out, "w");
    if (!f) {
        perror("fopen");
        abort();
    }
    fputs(text, f);
    fclose(f);
}

#endif
