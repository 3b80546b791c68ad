/*
 * test_delivery_inflight: the number of sending workers follows Little's law on the
 * observed round trip (rate x latency, with headroom), within [min, max].
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "delivery_inflight.h"

static void test_target(void **state)
{
    (void)state;
    struct delivery_inflight f;
    delivery_inflight_init(&f, 20, 4, 64);
    assert_int_equal(delivery_inflight_target(&f), 4); /* nothing observed yet */
    delivery_inflight_observe(&f, 250);
    /* 20/s x 0.25 s = 5 in flight, x 1.25 = 6.25 -> 7, + 1. */
    assert_int_equal(delivery_inflight_target(&f), 8);
    for (int i = 0; i < 100; i++)
        delivery_inflight_observe(&f, 20);
    assert_int_equal(delivery_inflight_target(&f), 4); /* fast answers: the minimum */
    for (int i = 0; i < 100; i++)
        delivery_inflight_observe(&f, 5000);
    assert_int_equal(delivery_inflight_target(&f), 64); /* capped */
    delivery_inflight_destroy(&f);
}

static void test_ewma(void **state)
{
    (void)state;
    struct delivery_inflight f;
    delivery_inflight_init(&f, 100, 1, 1000);
    delivery_inflight_observe(&f, 100);
    delivery_inflight_observe(&f, 600); /* mean 100 + 0.2 x 500 = 200 ms */
    /* 100/s x 0.2 s x 1.25 = 25, + 1. */
    assert_int_equal(delivery_inflight_target(&f), 26);
    delivery_inflight_destroy(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target),
        cmocka_unit_test(test_ewma),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
