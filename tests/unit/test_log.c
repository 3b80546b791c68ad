/*
 * test_log: every log line is one valid JSON object whatever the message holds
 * (quotes, newlines, control bytes, values far over the line limit), and the
 * level filter works. stderr is captured through a pipe.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Runs fn with stderr redirected; returns what was written (caller frees). */
static char *capture(void (*fn)(void))
{
    int fds[2], saved = dup(STDERR_FILENO);
    assert_int_equal(pipe(fds), 0);
    dup2(fds[1], STDERR_FILENO);
    close(fds[1]);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    char *buf = calloc(1, 65536);
    size_t n = 0;
    ssize_t r;
    while ((r = read(fds[0], buf + n, 65535 - n)) > 0)
        n += (size_t)r;
    close(fds[0]);
    return buf;
}

static void write_nasty(void)
{
    log_set_level(LOG_INFO);
    log_write(LOG_INFO, "quote \" backslash \\ newline \n tab \t bell \a",
              (const char *[]){"field", "ctl \x01 end", "k\"ey", "v", NULL});
    char big[10000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_write(LOG_WARN, big, (const char *[]){"also", big, NULL});
    log_write(LOG_DEBUG, "not shown at info", NULL);
    log_msgf(LOG_ERROR, "formatted %d", 42);
}

static void test_lines_are_json_objects(void **state)
{
    char *out = capture(write_nasty);
    int lines = 0;
    for (char *line = out, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl)
            fail_msg("last line is not terminated: %.120s", line);
        *nl = '\0';
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!o)
            fail_msg("line %d is not JSON (%s): %.120s", lines + 1, err.text, line);
        assert_non_null(json_object_get(o, "time"));
        assert_non_null(json_object_get(o, "level"));
        assert_true(strlen(line) <= 4096);
        if (lines == 0) {
            assert_string_equal(json_string_value(json_object_get(o, "msg")),
                                "quote \" backslash \\ newline \n tab \t bell \a");
            assert_string_equal(json_string_value(json_object_get(o, "field")), "ctl \x01 end");
        }
        if (lines == 2) {
            assert_string_equal(json_string_value(json_object_get(o, "level")), "error");
            assert_string_equal(json_string_value(json_object_get(o, "msg")), "formatted 42");
        }
        json_decref(o);
        lines++;
    }
    assert_int_equal(lines, 3); /* the debug line is filtered out */
    free(out);
}

static void test_parse_level(void **state)
{
    enum log_level l;
    assert_int_equal(log_parse_level("warn", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_parse_level("verbose", &l), -1);
    log_set_level(LOG_ERROR);
    assert_false(log_enabled(LOG_WARN));
    assert_true(log_enabled(LOG_ERROR));
    log_set_level(LOG_INFO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_are_json_objects),
        cmocka_unit_test(test_parse_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
