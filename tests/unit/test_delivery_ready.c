/*
 * test_delivery_ready: a claim round's jobs wait in arrival order for any worker; one
 * round at a time, only below the low mark; a job past its round's deadline is dropped
 * unsent (its lease would not cover it), except when draining at shutdown (now 0).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "delivery_ready.h"

static void fill(struct store_job *jobs, int n, int64_t first_id)
{
    memset(jobs, 0, sizeof *jobs * (size_t)n);
    for (int i = 0; i < n; i++)
        jobs[i].id = first_id + i;
}

static void test_fifo_and_rounds(void **state)
{
    (void)state;
    struct delivery_ready r;
    delivery_ready_init(&r);
    struct store_job out, jobs[3];
    assert_false(delivery_ready_pop(&r, 1.0, &out));
    assert_true(delivery_ready_begin_round(&r, 2));
    assert_false(delivery_ready_begin_round(&r, 2)); /* one round at a time */
    assert_true(delivery_ready_round_running(&r));
    fill(jobs, 3, 10);
    assert_true(delivery_ready_end_round(&r, jobs, 3, 100.0));
    assert_false(delivery_ready_round_running(&r));
    assert_false(delivery_ready_begin_round(&r, 2)); /* 3 wait: not below the mark */
    assert_true(delivery_ready_pop(&r, 1.0, &out));
    assert_int_equal(out.id, 10);
    assert_true(delivery_ready_pop(&r, 1.0, &out));
    assert_int_equal(out.id, 11);
    assert_true(delivery_ready_begin_round(&r, 2)); /* 1 waits */
    fill(jobs, 2, 20);
    assert_true(delivery_ready_end_round(&r, jobs, 2, 100.0));
    int64_t want[] = {12, 20, 21};
    for (int i = 0; i < 3; i++) {
        assert_true(delivery_ready_pop(&r, 1.0, &out));
        assert_int_equal(out.id, want[i]);
    }
    assert_false(delivery_ready_pop(&r, 1.0, &out));
    delivery_ready_destroy(&r);
}

static void test_deadline(void **state)
{
    (void)state;
    struct delivery_ready r;
    delivery_ready_init(&r);
    struct store_job out, jobs[2];
    assert_true(delivery_ready_begin_round(&r, 1));
    fill(jobs, 2, 1);
    assert_true(delivery_ready_end_round(&r, jobs, 1, 50.0));
    assert_true(delivery_ready_begin_round(&r, 5));
    assert_true(delivery_ready_end_round(&r, jobs + 1, 1, 80.0));
    /* At 60 the first round's job is late: dropped; the second's is served. */
    assert_true(delivery_ready_pop(&r, 60.0, &out));
    assert_int_equal(out.id, 2);
    assert_false(delivery_ready_pop(&r, 60.0, &out));
    /* Draining at shutdown (now 0) returns late ones too. */
    assert_true(delivery_ready_begin_round(&r, 5));
    fill(jobs, 1, 7);
    assert_true(delivery_ready_end_round(&r, jobs, 1, 1.0));
    assert_true(delivery_ready_pop(&r, 0, &out));
    assert_int_equal(out.id, 7);
    delivery_ready_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_rounds),
        cmocka_unit_test(test_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
