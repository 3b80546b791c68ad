/*
 * test_log: every log line is one valid JSON object whatever the message holds
 * (quotes, newlines, control bytes, values far over the line limit), and the
 * level filter works, and repeated lines from one call site are rate-limited
 * with a count of what was dropped; an instance id set once is in every line
 * (escaped like any value). stderr is captured through a pipe.
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

static double fake_now;

static double fake_clock(void)
{
    return fake_now;
}

/* A flood from one site: 20 lines a window, the rest counted. Another site
 * keeps its own budget. The next window's first line is preceded by the count. */
static void write_flood(void)
{
    log_set_level(LOG_INFO);
    log_set_clock(fake_clock);
    fake_now = 1000.0;
    for (int i = 0; i < 1000; i++)
        log_msgf(LOG_WARN, "client %d went away", i);
    for (int i = 0; i < 3; i++)
        log_write(LOG_ERROR, "store: commit failed", (const char *[]){"n", "1", NULL});
    fake_now += 10.5;
    log_msgf(LOG_WARN, "client %d went away", 1000);
    for (int i = 0; i < 50; i++)
        log_msgf(LOG_DEBUG, "debug %d", i); /* filtered by level, never counted */
    log_set_clock(NULL);
}

static void test_repeated_lines_are_rate_limited(void **state)
{
    char *out = capture(write_flood);
    int client = 0, store = 0, notes = 0;
    char last_msg[128] = "";
    for (char *line = out, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        const char *msg = json_string_value(json_object_get(o, "msg"));
        if (strncmp(msg, "client ", 7) == 0)
            client++;
        else if (strcmp(msg, "store: commit failed") == 0)
            store++;
        else if (strcmp(msg, "log: repeated lines were suppressed") == 0) {
            notes++;
            assert_string_equal(json_string_value(json_object_get(o, "suppressed")), "980");
            assert_string_equal(json_string_value(json_object_get(o, "like")),
                                "client %d went away");
        } else
            fail_msg("unexpected line: %s", line);
        snprintf(last_msg, sizeof last_msg, "%s", msg);
        json_decref(o);
    }
    assert_int_equal(client, 21); /* 20 in the first window, 1 in the next */
    assert_int_equal(store, 3);
    assert_int_equal(notes, 1);
    assert_string_equal(last_msg, "client 1000 went away");
    free(out);
}

static void write_with_instance(void)
{
    log_set_level(LOG_INFO);
    log_set_instance("hl-\"a\"");
    log_write(LOG_INFO, "one", (const char *[]){"k", "v", NULL});
    log_msgf(LOG_WARN, "two %d", 2);
    log_set_instance(NULL);
    log_write(LOG_INFO, "three", NULL);
}

static void test_instance_in_every_line(void **state)
{
    (void)state;
    char *out = capture(write_with_instance);
    const char *want[] = {"hl-\"a\"", "hl-\"a\"", NULL};
    int i = 0;
    for (char *line = out, *nl; *line; line = nl + 1, i++) {
        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        assert_non_null(o);
        const char *inst = json_string_value(json_object_get(o, "instance"));
        assert_true(i < 3);
        if (want[i])
            assert_string_equal(inst, want[i]);
        else
            assert_null(inst); /* unset: no field */
        json_decref(o);
    }
    assert_int_equal(i, 3);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_are_json_objects),
        cmocka_unit_test(test_parse_level),
        cmocka_unit_test(test_instance_in_every_line),
        cmocka_unit_test(test_repeated_lines_are_rate_limited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
