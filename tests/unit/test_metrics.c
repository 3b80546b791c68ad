/*
 * test_metrics: the Prometheus text a scraper reads: counters per label set,
 * escaped label values, cumulative histogram buckets, gauges read at scrape time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static double gauge_value(void *ctx)
{
    return *(double *)ctx;
}

static char *render(void)
{
    size_t len = 0;
    char *text = metrics_render(&len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static void test_counters_and_labels(void **state)
{
    assert_int_equal(metrics_init(), 0);
    metrics_event_received("zendesk", "accepted");
    metrics_event_received("zendesk", "accepted");
    metrics_event_received("zendesk", "duplicate");
    metrics_event_received("we\"ird\\src", "accepted");
    metrics_job_state("done");
    metrics_didww_request("PATCH", 200, 0.03);
    metrics_didww_request("PATCH", 0, 2.0);
    metrics_set_delivery_paused(true);
    char *t = render();
    assert_non_null(strstr(t, "# TYPE hookline_events_received_total counter\n"));
    assert_non_null(
        strstr(t, "hookline_events_received_total{source=\"zendesk\",status=\"accepted\"} 2\n"));
    assert_non_null(
        strstr(t, "hookline_events_received_total{source=\"zendesk\",status=\"duplicate\"} 1\n"));
    assert_non_null(strstr(t, "{source=\"we\\\"ird\\\\src\",status=\"accepted\"} 1\n"));
    assert_non_null(strstr(t, "hookline_jobs_total{state=\"done\"} 1\n"));
    assert_non_null(strstr(t, "hookline_didww_requests_total{method=\"PATCH\",status=\"0\"} 1\n"));
    assert_non_null(strstr(t, "hookline_delivery_paused 1\n"));
    free(t);
    metrics_shutdown();
}

static void test_histogram_is_cumulative(void **state)
{
    assert_int_equal(metrics_init(), 0);
    metrics_rule_duration(0.000005); /* <= 10 us */
    metrics_rule_duration(0.002);    /* <= 5 ms */
    metrics_rule_duration(3.0);      /* +Inf only */
    char *t = render();
    assert_non_null(strstr(t, "# TYPE hookline_rule_duration_seconds histogram\n"));
    assert_non_null(strstr(t, "hookline_rule_duration_seconds_bucket{le=\"1e-05\"} 1\n"));
    assert_non_null(strstr(t, "hookline_rule_duration_seconds_bucket{le=\"0.005\"} 2\n"));
    assert_non_null(strstr(t, "hookline_rule_duration_seconds_bucket{le=\"0.5\"} 2\n"));
    assert_non_null(strstr(t, "hookline_rule_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(t, "hookline_rule_duration_seconds_count 3\n"));
    free(t);
    metrics_shutdown();
}

static void test_gauges_read_at_scrape_time(void **state)
{
    double depth = 7;
    assert_int_equal(metrics_init(), 0);
    metrics_set_gauge("hookline_queue_depth", "Jobs waiting.", gauge_value, &depth);
    char *t = render();
    assert_non_null(strstr(t, "# TYPE hookline_queue_depth gauge\nhookline_queue_depth 7\n"));
    free(t);
    depth = 0;
    t = render();
    assert_non_null(strstr(t, "hookline_queue_depth 0\n"));
    free(t);
    metrics_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_and_labels),
        cmocka_unit_test(test_histogram_is_cumulative),
        cmocka_unit_test(test_gauges_read_at_scrape_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
