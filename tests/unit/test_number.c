/*
 * test_number: numbers as people and CRMs write them become DIDWW's digits;
 * national and 00 forms, letters, misplaced '+' and odd lengths are refused with
 * a reason that says what to write instead, and a hostile input cannot put a
 * control character into that reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "number.h"

static void expect_ok(const char *in, const char *want)
{
    char out[NUMBER_BUF_LEN], why[300];
    enum number_result rc = number_normalize(in, out, sizeof out, why, sizeof why);
    if (rc != NUMBER_OK || strcmp(out, want) != 0)
        fail_msg("[%s]: result %d out [%s] why [%s], wanted [%s]", in, rc, out, why, want);
    assert_string_equal(why, "");
}

static void expect_refused(const char *in, enum number_result want_rc, const char *want_why)
{
    char out[NUMBER_BUF_LEN], why[300];
    enum number_result rc = number_normalize(in, out, sizeof out, why, sizeof why);
    if (rc != want_rc || !strstr(why, want_why))
        fail_msg("[%s]: result %d why [%s], wanted %d with [%s]", in, rc, why, want_rc, want_why);
    assert_string_equal(out, "");
}

static void test_written_forms_normalise(void **state)
{
    expect_ok("+43 (720) 000-0007", "437200000007");
    expect_ok("+44 20 7946 0418", "442079460418");
    expect_ok("+44-20-7946-0418", "442079460418");
    expect_ok("+1 (415) 555.0100", "14155550100");
    expect_ok("442079460418", "442079460418");
    expect_ok("+442079460418", "442079460418");
    expect_ok("  +44\t20 7946 0418  ", "442079460418");
    expect_ok("+44\xc2\xa0"
              "20\xc2\xa0"
              "7946\xc2\xa0"
              "0418",
              "442079460418"); /* no-break spaces */
    /* The bracketed national trunk prefix after the country code is dropped. */
    expect_ok("+44 (0)20 7946 0418", "442079460418");
    expect_ok("+43 (0) 720 000 0007", "437200000007");
    /* DIDWW's sandbox numbers: 17 digits. */
    expect_ok("+12345678901234567", "12345678901234567");
    expect_ok("123456", "123456");
}

static void test_national_and_00_forms_say_so(void **state)
{
    expect_refused("0049 30 1234567", NUMBER_INTL_PREFIX, "number '0049 30 1234567' is in 00 form");
    expect_refused("0049 30 1234567", NUMBER_INTL_PREFIX, "write it as +49301234567");
    expect_refused("+0049 30 1234567", NUMBER_INTL_PREFIX, "write it as +49301234567");
    expect_refused("0720 000 0007", NUMBER_NATIONAL, "number '0720 000 0007' is in national form");
    expect_refused("0720 000 0007", NUMBER_NATIONAL, "must be converted to international form");
    expect_refused("(0) 720 000 0007", NUMBER_NATIONAL, "national form");
    expect_refused("+0720 000 0007", NUMBER_NATIONAL, "no country code starts with 0");
}

static void test_bad_input_is_refused(void **state)
{
    expect_refused("", NUMBER_EMPTY, "has no digits");
    expect_refused(" - . ", NUMBER_EMPTY, "has no digits");
    expect_refused("12ab", NUMBER_BAD_CHAR, "has 'a'");
    expect_refused("1-800-FLOWERS", NUMBER_BAD_CHAR, "has 'F'");
    expect_refused("+44 20 7946 0418 ext 12", NUMBER_BAD_CHAR, "has 'e'");
    expect_refused("44+2079460418", NUMBER_BAD_CHAR, "'+' may only come first");
    expect_refused("++442079460418", NUMBER_BAD_CHAR, "'+' may only come first");
    expect_refused("+44 (20 7946 0418", NUMBER_BAD_CHAR, "'(' without its ')'");
    expect_refused("+44 20) 7946 0418", NUMBER_BAD_CHAR, "')' without its '('");
    expect_refused("+44 ((20)) 7946 0418", NUMBER_BAD_CHAR, "nested");
    expect_refused("+44/20/79460418", NUMBER_BAD_CHAR, "has '/'");
    expect_refused("12", NUMBER_TOO_SHORT, "has 2 digits");
    expect_refused("+12345", NUMBER_TOO_SHORT, "at least 6");
    expect_refused("+123456789012345678", NUMBER_TOO_LONG,
                   "has 18 digits: a number has at most 17");
    expect_refused("1234567890123456789012345678901234567890123456789", NUMBER_TOO_LONG,
                   "has 49 digits");
}

static void test_reason_is_one_printable_line(void **state)
{
    char out[NUMBER_BUF_LEN], why[300];
    assert_int_equal(
        number_normalize("0720\n{\"level\":\"error\"}", out, sizeof out, why, sizeof why),
        NUMBER_BAD_CHAR);
    assert_null(strchr(why, '\n'));
    assert_non_null(strstr(why, "'0720?{\"level\""));
    assert_non_null(strstr(why, "byte 0x0a"));
    /* a long input is cut in the quote */
    char longin[200];
    memset(longin, '7', sizeof longin - 1);
    longin[sizeof longin - 1] = '\0';
    assert_int_equal(number_normalize(longin, out, sizeof out, why, sizeof why), NUMBER_TOO_LONG);
    assert_true(strlen(why) < 150);
    assert_non_null(strstr(why, "...'"));
    /* why may be NULL; a small out refuses what does not fit */
    char small[8];
    assert_int_equal(number_normalize("+43 720 000 0007", small, sizeof small, NULL, 0),
                     NUMBER_TOO_LONG);
    assert_int_equal(number_normalize("+43 720 0", small, sizeof small, NULL, 0), NUMBER_OK);
    assert_string_equal(small, "437200");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_written_forms_normalise),
        cmocka_unit_test(test_national_and_00_forms_say_so),
        cmocka_unit_test(test_bad_input_is_refused),
        cmocka_unit_test(test_reason_is_one_printable_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
