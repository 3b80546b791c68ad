/*
 * Unit tests for src/didww_auth.c (and didww_client's bearer mode) against a real token
 * endpoint: a libmicrohttpd server on 127.0.0.1 in the test process that counts token
 * requests, records the last one, answers what the test set (status, body, Retry-After,
 * delay) and serves /v3/ paths accepting only the last token it issued (or none). Checked:
 * the request (Api-Key, JSON body), one mint for eight threads at once, renewal before
 * expiry and not per call (a failed renewal keeps the token still valid), invalidation by
 * generation (a stale one mints nothing), the OAuth errors as failures without the key, a 429's
 * Retry-After honoured without asking again, an answer without a token refused, and the client
 * sending Authorization instead of Api-Key and retrying once with a new token after a 401.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>

#include "didww_auth.h"
#include "didww_client.h"

#define KEY "auth-test-key-0f9e8d7c6b5a"

struct tsrv {
    struct MHD_Daemon *d;
    uint16_t port;
    pthread_mutex_t mu;
    /* token answer */
    int status;
    int expires_in;
    const char *body; /* NULL: a token answer built from a counter */
    const char *retry_after;
    int sleep_ms;
    /* seen */
    int mints, v3_calls, v3_refused;
    char api_key[128], last_body[512], last_auth[256];
    char issued[64]; /* the last token issued; /v3 accepts only it */
    bool v3_refuse_all;
};

struct upload {
    char *buf;
    size_t len;
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static enum MHD_Result tsrv_on(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *size, void **con_cls)
{
    struct tsrv *s = cls;
    struct upload *u = *con_cls;
    (void)version;
    (void)method;
    if (!u) {
        u = calloc(1, sizeof *u);
        *con_cls = u;
        return MHD_YES;
    }
    if (*size) {
        char *p = realloc(u->buf, u->len + *size + 1);
        if (!p)
            return MHD_NO;
        u->buf = p;
        memcpy(u->buf + u->len, data, *size);
        u->len += *size;
        u->buf[u->len] = '\0';
        *size = 0;
        return MHD_YES;
    }
    char out[512];
    int status = 200;
    const char *ra = NULL;
    pthread_mutex_lock(&s->mu);
    int delay = s->sleep_ms;
    pthread_mutex_unlock(&s->mu);
    if (strcmp(url, "/token") == 0) {
        if (delay)
            sleep_ms(delay);
        pthread_mutex_lock(&s->mu);
        s->mints++;
        const char *k = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Api-Key");
        snprintf(s->api_key, sizeof s->api_key, "%s", k ? k : "<absent>");
        snprintf(s->last_body, sizeof s->last_body, "%s", u->buf ? u->buf : "");
        status = s->status;
        ra = s->retry_after;
        if (s->body) {
            snprintf(out, sizeof out, "%s", s->body);
        } else {
            snprintf(s->issued, sizeof s->issued, "tok-%04d-abcdef", s->mints);
            snprintf(out, sizeof out,
                     "{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expires_in\":%d,"
                     "\"aud\":\"api.didww.com\",\"scope\":\"full\",\"api_version\":"
                     "\"2026-11-19\"}",
                     s->issued, s->expires_in);
        }
        pthread_mutex_unlock(&s->mu);
    } else {
        const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        const char *k = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Api-Key");
        char want[96];
        pthread_mutex_lock(&s->mu);
        s->v3_calls++;
        snprintf(s->last_auth, sizeof s->last_auth, "%s", a ? a : "<absent>");
        snprintf(want, sizeof want, "Bearer %s", s->issued);
        bool ok = a && !k && strcmp(a, want) == 0 && !s->v3_refuse_all;
        if (!ok)
            s->v3_refused++;
        pthread_mutex_unlock(&s->mu);
        status = ok ? 200 : 401;
        snprintf(out, sizeof out, "%s",
                 ok ? "{\"data\":[]}" : "{\"errors\":[{\"status\":\"401\"}]}");
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(out), out, MHD_RESPMEM_MUST_COPY);
    if (ra)
        MHD_add_response_header(r, "Retry-After", ra);
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static void tsrv_done(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct upload *u = *con_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (u) {
        free(u->buf);
        free(u);
    }
    *con_cls = NULL;
}

/* The test thread changes and reads the server's fields under its lock (the server's
 * threads see them only there). */
static void tsrv_answer(struct tsrv *s, int status, const char *body, const char *retry_after)
{
    pthread_mutex_lock(&s->mu);
    s->status = status;
    s->body = body;
    s->retry_after = retry_after;
    pthread_mutex_unlock(&s->mu);
}

static int tsrv_int(struct tsrv *s, const int *field)
{
    pthread_mutex_lock(&s->mu);
    int v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}

static void tsrv_copy(struct tsrv *s, const char *field, char *out, size_t len)
{
    pthread_mutex_lock(&s->mu);
    snprintf(out, len, "%s", field);
    pthread_mutex_unlock(&s->mu);
}

static int setup(void **state)
{
    struct tsrv *s = calloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->status = 200;
    s->expires_in = 900;
    s->d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL,
        NULL, tsrv_on, s, MHD_OPTION_NOTIFY_COMPLETED, tsrv_done, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&(struct sockaddr_in){.sin_family = AF_INET,
                                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)},
        MHD_OPTION_END);
    assert_non_null(s->d);
    s->port = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT)->port;
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    struct tsrv *s = *state;
    MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return 0;
}

static struct didww_auth *make_auth(struct tsrv *s)
{
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/token", (unsigned)s->port);
    struct didww_auth_options o = {.auth_url = url,
                                   .api_key = KEY,
                                   .api_version = "2026-11-19",
                                   .expires_in_s = 300,
                                   .timeout_ms = 5000};
    struct didww_auth *a = didww_auth_create(&o);
    assert_non_null(a);
    return a;
}

static int mints(struct tsrv *s)
{
    return tsrv_int(s, &s->mints);
}

struct racer {
    struct didww_auth *a;
    char token[128];
    uint64_t gen;
    int rc;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct didww_auth_failure f;
    r->rc = didww_auth_get(r->a, r->token, sizeof r->token, &r->gen, &f);
    return NULL;
}

static void test_one_mint_for_eight_threads(void **state)
{
    struct tsrv *s = *state;
    char seen[512];
    pthread_mutex_lock(&s->mu);
    s->sleep_ms = 200; /* everyone arrives while the mint is in flight */
    pthread_mutex_unlock(&s->mu);
    struct didww_auth *a = make_auth(s);
    struct racer r[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        r[i] = (struct racer){.a = a};
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(mints(s), 1);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(r[i].rc, 0);
        assert_string_equal(r[i].token, "tok-0001-abcdef");
        assert_int_equal(r[i].gen, r[0].gen);
    }
    assert_int_equal(didww_auth_mints(a), 1);
    /* the request: the key as Api-Key, the documented body */
    tsrv_copy(s, s->api_key, seen, sizeof seen);
    assert_string_equal(seen, KEY);
    tsrv_copy(s, s->last_body, seen, sizeof seen);
    json_t *body = json_loads(seen, 0, NULL);
    assert_non_null(body);
    assert_string_equal(json_string_value(json_object_get(body, "aud")), "api.didww.com");
    assert_string_equal(json_string_value(json_object_get(body, "scope")), "full");
    assert_string_equal(json_string_value(json_object_get(body, "api_version")), "2026-11-19");
    assert_int_equal(json_integer_value(json_object_get(body, "expires_in")), 300);
    json_decref(body);
    didww_auth_destroy(a);
}

static void test_renewed_before_expiry_not_per_call(void **state)
{
    struct tsrv *s = *state;
    char tok[128];
    uint64_t g1, g2;
    struct didww_auth_failure f;
    pthread_mutex_lock(&s->mu);
    s->expires_in = 2; /* renewal due after 1.5 s */
    pthread_mutex_unlock(&s->mu);
    struct didww_auth *a = make_auth(s);
    assert_int_equal(didww_auth_get(a, tok, sizeof tok, &g1, &f), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(didww_auth_get(a, tok, sizeof tok, &g2, &f), 0);
    assert_int_equal(mints(s), 1);
    assert_int_equal(g1, g2);
    sleep_ms(1600);
    assert_int_equal(didww_auth_get(a, tok, sizeof tok, &g2, &f), 0);
    assert_int_equal(mints(s), 2);
    assert_true(g2 != g1);
    assert_string_equal(tok, "tok-0002-abcdef");

    /* A renewal that fails while the token is still good keeps the token (and does not
     * ask again on the next call). */
    sleep_ms(1600);
    tsrv_answer(s, 503, "{\"error\":\"server_error\"}", NULL);
    uint64_t g3;
    assert_int_equal(didww_auth_get(a, tok, sizeof tok, &g3, &f), 0);
    assert_int_equal(g3, g2);
    assert_string_equal(tok, "tok-0002-abcdef");
    assert_int_equal(mints(s), 3);
    assert_int_equal(didww_auth_get(a, tok, sizeof tok, &g3, &f), 0);
    assert_int_equal(mints(s), 3);
    didww_auth_destroy(a);
}

static void test_invalidate_by_generation(void **state)
{
    struct tsrv *s = *state;
    char tok[128];
    uint64_t g1, g2, g3;
    struct didww_auth_failure f;
    struct didww_auth *a = make_auth(s);
    assert_int_equal(didww_auth_get(a, tok, sizeof tok, &g1, &f), 0);
    didww_auth_invalidate(a, g1);
    assert_int_equal(didww_auth_get(a, tok, sizeof tok, &g2, &f), 0);
    assert_int_equal(mints(s), 2);
    /* a second worker that saw the same refused token changes nothing now */
    didww_auth_invalidate(a, g1);
    assert_int_equal(didww_auth_get(a, tok, sizeof tok, &g3, &f), 0);
    assert_int_equal(g3, g2);
    assert_int_equal(mints(s), 2);
    didww_auth_destroy(a);
}

static void test_refusals_and_429(void **state)
{
    struct tsrv *s = *state;
    char tok[128];
    uint64_t g;
    struct didww_auth_failure f;
    struct didww_auth *a = make_auth(s);

    tsrv_answer(s, 401,
                "{\"error\":\"invalid_client\",\"error_description\":\"The Api-Key is not "
                "valid.\"}",
                NULL);
    assert_int_equal(didww_auth_get(a, tok, sizeof tok, &g, &f), -1);
    assert_int_equal(f.status, 401);
    assert_string_equal(f.error, "invalid_client");
    assert_non_null(strstr(f.message, "answered 401 invalid_client: The Api-Key is not valid."));
    assert_null(strstr(f.message, KEY));

    tsrv_answer(s, 429, "{\"error\":\"rate_limit_exceeded\",\"error_description\":\"slow down\"}",
                "2");
    assert_int_equal(didww_auth_get(a, tok, sizeof tok, &g, &f), -1);
    assert_int_equal(f.status, 429);
    assert_string_equal(f.retry_after, "2");
    int seen = mints(s);
    /* Within Retry-After nobody asks again: the failure is answered from memory. */
    tsrv_answer(s, 200, NULL, NULL);
    assert_int_equal(didww_auth_get(a, tok, sizeof tok, &g, &f), -1);
    assert_int_equal(f.status, 429);
    assert_true(strcmp(f.retry_after, "1") == 0 || strcmp(f.retry_after, "2") == 0);
    assert_int_equal(mints(s), seen);
    sleep_ms(2100);
    assert_int_equal(didww_auth_get(a, tok, sizeof tok, &g, &f), 0);
    assert_int_equal(mints(s), seen + 1);

    /* 200 without a usable token is not a token */
    struct didww_auth *b = make_auth(s);
    tsrv_answer(s, 200, "{\"token_type\":\"Bearer\",\"expires_in\":900}", NULL);
    assert_int_equal(didww_auth_get(b, tok, sizeof tok, &g, &f), -1);
    assert_int_equal(f.status, 0);
    tsrv_answer(s, 200, "{\"access_token\":\"has space\",\"token_type\":\"Bearer\"}", NULL);
    assert_int_equal(didww_auth_get(b, tok, sizeof tok, &g, &f), -1);
    didww_auth_destroy(b);
    didww_auth_destroy(a);
}

static void test_client_bearer_mode_retries_once_after_401(void **state)
{
    struct tsrv *s = *state;
    char base[96];
    struct didww_response r;
    struct didww_auth *a = make_auth(s);
    snprintf(base, sizeof base, "http://127.0.0.1:%u/v3", (unsigned)s->port);
    struct didww_client_options o = {.base_url = base,
                                     .api_key = KEY,
                                     .api_version = "2026-11-19",
                                     .timeout_ms = 5000,
                                     .auth = a};
    struct didww_client *c = didww_client_create(&o);
    assert_non_null(c);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_false(r.auth_retried);
    char seen[256];
    tsrv_copy(s, s->last_auth, seen, sizeof seen);
    assert_string_equal(seen, "Bearer tok-0001-abcdef");
    didww_response_free(&r);

    /* DIDWW forgets the token (revoked): one 401, one new token, one retry, done. */
    pthread_mutex_lock(&s->mu);
    snprintf(s->issued, sizeof s->issued, "tok-revoked");
    pthread_mutex_unlock(&s->mu);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.auth_retried);
    assert_int_equal(mints(s), 2);
    assert_int_equal(tsrv_int(s, &s->v3_calls), 3);
    didww_response_free(&r);

    /* Refused again with a fresh token: the 401 is the answer, after exactly one retry. */
    pthread_mutex_lock(&s->mu);
    s->v3_refuse_all = true;
    pthread_mutex_unlock(&s->mu);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids", NULL, &r), 0);
    assert_int_equal(r.status, 401);
    assert_true(r.auth_retried);
    assert_false(r.auth_failed);
    assert_int_equal(tsrv_int(s, &s->v3_calls), 5);
    assert_int_equal(mints(s), 3);
    didww_response_free(&r);

    /* The token endpoint refusing the key comes back as an auth failure. */
    pthread_mutex_lock(&s->mu);
    s->v3_refuse_all = false;
    pthread_mutex_unlock(&s->mu);
    tsrv_answer(s, 401, "{\"error\":\"invalid_client\"}", NULL);
    didww_auth_invalidate(a, 3);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids", NULL, &r), 0);
    assert_int_equal(r.status, 401);
    assert_true(r.auth_failed);
    assert_string_equal(r.auth_error, "invalid_client");
    assert_null(strstr(r.error, KEY));
    didww_response_free(&r);
    didww_client_destroy(c);
    didww_auth_destroy(a);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_mint_for_eight_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renewed_before_expiry_not_per_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalidate_by_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_and_429, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_bearer_mode_retries_once_after_401, setup,
                                        teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
