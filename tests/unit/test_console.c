/*
 * Unit tests for src/console/: the session table (creation, lookup, idle and
 * absolute expiry, the bound with least-recently-used eviction, sign-out), the
 * token roles, Cookie header parsing, the Set-Cookie flags, the CSRF and origin
 * checks, the metrics parser behind the overview's charts, and the embedded
 * assets table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "console/console.h"
#include "console/console_assets.h"
#include "console/console_series.h"

static void test_session_lifecycle(void **state)
{
    (void)state;
    struct console_sessions *cs = console_sessions_create(0, 0, 0);
    assert_non_null(cs);
    struct console_session_info a, b, got;
    assert_int_equal(console_session_new(cs, CONSOLE_ROLE_ADMIN, 1000.0, &a), 0);
    assert_int_equal(console_session_new(cs, CONSOLE_ROLE_VIEWER, 1000.0, &b), 0);
    assert_int_equal(strlen(a.cookie), CONSOLE_SECRET_HEX);
    assert_int_equal(strlen(a.csrf), CONSOLE_SECRET_HEX);
    assert_int_equal(strlen(a.handle), CONSOLE_HANDLE_HEX);
    /* three different random values, and two sessions never share one */
    assert_string_not_equal(a.cookie, a.csrf);
    assert_string_not_equal(a.cookie, b.cookie);
    assert_string_not_equal(a.csrf, b.csrf);
    assert_null(strstr(a.cookie, a.handle));
    assert_true(a.expires == 1000.0 + CONSOLE_IDLE_S);

    assert_true(console_session_find(cs, a.cookie, 1001.0, &got));
    assert_int_equal(got.role, CONSOLE_ROLE_ADMIN);
    assert_string_equal(got.csrf, a.csrf);
    assert_string_equal(got.handle, a.handle);
    assert_string_equal(got.cookie, ""); /* a lookup never hands the cookie back */
    assert_true(console_session_find(cs, b.cookie, 1001.0, &got));
    assert_int_equal(got.role, CONSOLE_ROLE_VIEWER);

    /* a wrong, truncated or empty cookie finds nothing */
    char wrong[CONSOLE_SECRET_HEX + 1];
    memcpy(wrong, a.cookie, sizeof wrong);
    wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
    assert_false(console_session_find(cs, wrong, 1001.0, &got));
    assert_false(console_session_find(cs, "", 1001.0, &got));
    wrong[20] = '\0';
    assert_false(console_session_find(cs, wrong, 1001.0, &got));
    assert_false(console_session_find(cs, NULL, 1001.0, &got));

    /* sign-out ends that session only */
    assert_true(console_session_end(cs, a.cookie));
    assert_false(console_session_find(cs, a.cookie, 1002.0, &got));
    assert_false(console_session_end(cs, a.cookie));
    assert_true(console_session_find(cs, b.cookie, 1002.0, &got));
    assert_int_equal(console_session_count(cs, 1002.0), 1);
    console_sessions_destroy(cs);
    console_sessions_destroy(NULL);
}

static void test_session_expiry(void **state)
{
    (void)state;
    /* idle 100 s, absolute 250 s */
    struct console_sessions *cs = console_sessions_create(8, 100, 250);
    struct console_session_info s, got;
    assert_int_equal(console_session_new(cs, CONSOLE_ROLE_ADMIN, 0.0, &s), 0);
    /* used every 90 s it stays alive, and each use restarts the idle time ... */
    assert_true(console_session_find(cs, s.cookie, 90.0, &got));
    assert_true(got.expires == 190.0);
    assert_true(console_session_find(cs, s.cookie, 180.0, &got));
    /* ... but never past the absolute lifetime */
    assert_true(got.expires == 250.0);
    assert_true(console_session_find(cs, s.cookie, 249.0, &got));
    assert_false(console_session_find(cs, s.cookie, 250.0, &got));
    assert_int_equal(console_session_count(cs, 250.0), 0);

    /* unused for the idle time: gone */
    assert_int_equal(console_session_new(cs, CONSOLE_ROLE_VIEWER, 1000.0, &s), 0);
    assert_true(console_session_find(cs, s.cookie, 1099.0, &got));
    assert_false(console_session_find(cs, s.cookie, 1199.5, &got));
    console_sessions_destroy(cs);
}

static void test_session_bound(void **state)
{
    (void)state;
    struct console_sessions *cs = console_sessions_create(4, 0, 0);
    struct console_session_info s[6], got;
    for (int i = 0; i < 4; i++)
        assert_int_equal(console_session_new(cs, CONSOLE_ROLE_VIEWER, 10.0 + i, &s[i]), 0);
    /* session 0 is used again, so session 1 is now the least recently used */
    assert_true(console_session_find(cs, s[0].cookie, 20.0, &got));
    assert_int_equal(console_session_new(cs, CONSOLE_ROLE_ADMIN, 21.0, &s[4]), 0);
    assert_int_equal(console_session_count(cs, 22.0), 4);
    assert_false(console_session_find(cs, s[1].cookie, 22.0, &got));
    assert_true(console_session_find(cs, s[0].cookie, 22.0, &got));
    assert_true(console_session_find(cs, s[4].cookie, 22.0, &got));
    for (int i = 0; i < 50; i++)
        assert_int_equal(console_session_new(cs, CONSOLE_ROLE_VIEWER, 30.0 + i, &s[5]), 0);
    assert_int_equal(console_session_count(cs, 100.0), 4);
    console_sessions_destroy(cs);
}

static void test_token_roles(void **state)
{
    (void)state;
    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    char admin[] = "admin-token-0123456789", viewer[] = "viewer-token-0123456789";
    assert_int_equal(console_token_role(&cfg, admin, strlen(admin)), CONSOLE_ROLE_NONE);
    cfg.admin_token = admin;
    cfg.admin_viewer_token = viewer;
    assert_int_equal(console_token_role(&cfg, admin, strlen(admin)), CONSOLE_ROLE_ADMIN);
    assert_int_equal(console_token_role(&cfg, viewer, strlen(viewer)), CONSOLE_ROLE_VIEWER);
    assert_int_equal(console_token_role(&cfg, admin, strlen(admin) - 1), CONSOLE_ROLE_NONE);
    assert_int_equal(console_token_role(&cfg, "admin-token-0123456789x", 23), CONSOLE_ROLE_NONE);
    assert_int_equal(console_token_role(&cfg, "", 0), CONSOLE_ROLE_NONE);
    cfg.admin_token = NULL;
    assert_int_equal(console_token_role(&cfg, admin, strlen(admin)), CONSOLE_ROLE_NONE);
    assert_int_equal(console_token_role(&cfg, viewer, strlen(viewer)), CONSOLE_ROLE_VIEWER);
    assert_string_equal(console_role_name(CONSOLE_ROLE_ADMIN), "admin");
    assert_string_equal(console_role_name(CONSOLE_ROLE_VIEWER), "viewer");
}

static void test_cookie_parsing(void **state)
{
    (void)state;
    char out[80];
    assert_int_equal(
        console_cookie_get("hookline_session=abc", "hookline_session", out, sizeof out), 0);
    assert_string_equal(out, "abc");
    assert_int_equal(
        console_cookie_get("a=1; hookline_session=xyz; b=2", "hookline_session", out, sizeof out),
        0);
    assert_string_equal(out, "xyz");
    assert_int_equal(
        console_cookie_get("a=1;hookline_session=\"q\" ", "hookline_session", out, sizeof out), 0);
    assert_string_equal(out, "q");
    /* a longer name that starts the same is another cookie */
    assert_int_equal(console_cookie_get("hookline_session_old=1; x_hookline_session=2",
                                        "hookline_session", out, sizeof out),
                     -1);
    assert_int_equal(console_cookie_get("hookline_session=", "hookline_session", out, sizeof out),
                     -1);
    assert_int_equal(console_cookie_get("", "hookline_session", out, sizeof out), -1);
    assert_int_equal(console_cookie_get(NULL, "hookline_session", out, sizeof out), -1);
    /* too long for the buffer: refused, never cut */
    char small[4];
    assert_int_equal(
        console_cookie_get("hookline_session=abcdef", "hookline_session", small, sizeof small), -1);
}

static void test_cookie_format(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(console_cookie_format("abc", 43200, false, out, sizeof out), 0);
    assert_string_equal(out,
                        "hookline_session=abc; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict");
    assert_int_equal(console_cookie_format("abc", 60, true, out, sizeof out), 0);
    assert_non_null(strstr(out, "; Secure"));
    assert_non_null(strstr(out, "HttpOnly"));
    assert_int_equal(console_cookie_format(NULL, 0, false, out, sizeof out), 0);
    assert_string_equal(out, "hookline_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
    char tiny[10];
    assert_int_equal(console_cookie_format("abc", 60, false, tiny, sizeof tiny), -1);
    assert_string_equal(tiny, "");
}

static void test_csrf(void **state)
{
    (void)state;
    const char *tok = "1111222233334444555566667777888899990000aaaabbbbccccddddeeeeffff";
    const char *host = "127.0.0.1:8080";
    assert_null(console_csrf_refusal(tok, tok, "http://127.0.0.1:8080", "same-origin", host));
    assert_null(console_csrf_refusal(tok, tok, "https://127.0.0.1:8080", NULL, host));
    assert_null(console_csrf_refusal(tok, tok, NULL, "same-origin", host));
    /* the token */
    assert_non_null(console_csrf_refusal(tok, NULL, "http://127.0.0.1:8080", NULL, host));
    assert_non_null(console_csrf_refusal(tok, "", "http://127.0.0.1:8080", NULL, host));
    assert_non_null(console_csrf_refusal(tok, "1111", "http://127.0.0.1:8080", NULL, host));
    assert_non_null(console_csrf_refusal(NULL, tok, "http://127.0.0.1:8080", NULL, host));
    /* the origin */
    assert_non_null(console_csrf_refusal(tok, tok, "http://evil.example", NULL, host));
    assert_non_null(console_csrf_refusal(tok, tok, "http://127.0.0.1:8081", NULL, host));
    assert_non_null(console_csrf_refusal(tok, tok, "null", NULL, host));
    assert_non_null(console_csrf_refusal(tok, tok, "http://127.0.0.1:8080", "cross-site", host));
    assert_non_null(console_csrf_refusal(tok, tok, NULL, "same-site", host));
    assert_non_null(console_csrf_refusal(tok, tok, NULL, NULL, host));
    assert_non_null(console_csrf_refusal(tok, tok, "http://127.0.0.1:8080", NULL, NULL));
    assert_null(console_origin_refusal("http://127.0.0.1:8080", "same-origin", host));
    assert_non_null(console_origin_refusal(NULL, NULL, host));
}

static void test_series_parse(void **state)
{
    (void)state;
    const char *text = "# HELP hookline_events_received_total x\n"
                       "# TYPE hookline_events_received_total counter\n"
                       "hookline_events_received_total{source=\"zd\",status=\"accepted\"} 5\n"
                       "hookline_events_received_total{source=\"hs\",status=\"accepted\"} 2\n"
                       "hookline_events_received_total{source=\"zd\",status=\"unauthorized\"} 1\n"
                       "hookline_jobs_total{state=\"done\"} 4\n"
                       "hookline_jobs_total{state=\"dead\"} 1\n"
                       "hookline_jobs_total{state=\"pending\"} 9\n"
                       "hookline_didww_requests_total{method=\"PATCH\",status=\"200\"} 3\n"
                       "hookline_didww_requests_total{method=\"GET\",status=\"200\"} 2\n"
                       "hookline_didww_requests_total{method=\"PATCH\",status=\"0\"} 1\n"
                       "hookline_queue_depth 7\n"
                       "hookline_queue_oldest_age_seconds 12.5\n"
                       "hookline_delivery_paused 1\n"
                       "hookline_rule_duration_seconds_bucket{le=\"0.1\"} 99\n";
    struct console_sample s = {.t = 42};
    console_series_parse(text, &s);
    assert_true(s.t == 42);
    assert_true(s.events == 8);
    assert_true(s.accepted == 7);
    assert_true(s.jobs_done == 4);
    assert_true(s.jobs_dead == 1);
    assert_true(s.didww_requests == 6);
    assert_true(s.queue_depth == 7);
    assert_true(s.queue_oldest_s == 12.5);
    assert_true(s.paused == 1);
    assert_int_equal(s.nstatus, 2);
    assert_string_equal(s.status[0], "200");
    assert_true(s.status_count[0] == 5);
    assert_string_equal(s.status[1], "0");
    assert_true(s.status_count[1] == 1);
    console_series_parse("", &s);
    assert_true(s.events == 0 && s.nstatus == 0);
}

static void test_assets(void **state)
{
    (void)state;
    const char *names[] = {"index.html", "app.js", "api.js", "dom.js", "chart.js", "style.css"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const struct console_asset *a = console_asset_find(names[i]);
        assert_non_null(a);
        assert_true(a->len > 0);
        assert_int_equal(a->data[a->len], 0);
        assert_int_equal(a->etag[0], '"');
    }
    assert_string_equal(console_asset_find("app.js")->content_type,
                        "text/javascript; charset=utf-8");
    assert_string_equal(console_asset_find("index.html")->content_type, "text/html; charset=utf-8");
    assert_null(console_asset_find("../config.json"));
    /* the page loads only its own files: no inline script or style, no other host */
    const struct console_asset *idx = console_asset_find("index.html");
    char *html = strndup((const char *)idx->data, idx->len);
    assert_null(strstr(html, "<script>"));
    assert_null(strstr(html, "<style"));
    assert_null(strstr(html, " style="));
    assert_null(strstr(html, "http://"));
    assert_null(strstr(html, "https://"));
    free(html);
    /* no script assigns markup */
    for (size_t i = 0; i < console_assets_count; i++) {
        char *t = strndup((const char *)console_assets[i].data, console_assets[i].len);
        assert_null(strstr(t, "innerHTML"));
        assert_null(strstr(t, "outerHTML"));
        assert_null(strstr(t, "insertAdjacentHTML"));
        assert_null(strstr(t, "document.write"));
        assert_null(strstr(t, "localStorage"));
        assert_null(strstr(t, "sessionStorage"));
        free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_lifecycle),
        cmocka_unit_test(test_session_expiry),
        cmocka_unit_test(test_session_bound),
        cmocka_unit_test(test_token_roles),
        cmocka_unit_test(test_cookie_parsing),
        cmocka_unit_test(test_cookie_format),
        cmocka_unit_test(test_csrf),
        cmocka_unit_test(test_series_parse),
        cmocka_unit_test(test_assets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
