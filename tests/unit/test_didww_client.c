/*
 * Unit tests for src/didww_client.c against a real HTTP server: a small libmicrohttpd
 * server on 127.0.0.1 (port 0) inside the test process records each request's method,
 * path, headers and body and answers with a configurable status, body, Retry-After and
 * delay. Checked: every DIDWW header, byte-exact bodies for each method, base URL / path
 * joining, one kept-alive connection for several requests, the 1 MiB response cap, a
 * timeout, a refused connection, Retry-After capture, that proxy variables are ignored,
 * and that the key never shows up in an error.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <microhttpd.h>

#include "didww_client.h"

#define TEST_KEY "SECRET-KEY-0123456789abcdef"
#define TEST_VERSION "2022-05-10"
#define BIG_BODY_LEN (2u << 20)

/* The loopback server: what to answer and what it saw (the last request). */
struct srv {
    struct MHD_Daemon *d;
    uint16_t port;
    pthread_mutex_t mu;
    atomic_int stopping; /* set by the test thread, read by connection threads */
    /* answer */
    int status;
    const char *body;
    size_t body_len;
    const char *retry_after_name; /* default "Retry-After" */
    const char *retry_after;      /* NULL: no header */
    int sleep_ms;
    /* seen */
    int requests;
    int connections;
    char method[16];
    char url[512];
    char filter_number[64];
    char api_key[256];
    char content_type[128];
    char accept[128];
    char api_version[64];
    char user_agent[128];
    int has_expect;
    char *req_body;
    size_t req_body_len;
};

/* One request's upload, collected across calls of the access handler. */
struct upload {
    char *buf;
    size_t len;
};

static void copy_header(struct MHD_Connection *conn, const char *name, char *out, size_t len)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    snprintf(out, len, "%s", v ? v : "<absent>");
}

static enum MHD_Result srv_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    struct srv *s = cls;
    struct upload *up = *con_cls;
    (void)version;

    if (!up) {
        up = calloc(1, sizeof *up);
        if (!up)
            return MHD_NO;
        *con_cls = up;
        return MHD_YES;
    }
    if (*upload_data_size) {
        char *p = realloc(up->buf, up->len + *upload_data_size + 1);
        if (!p)
            return MHD_NO;
        memcpy(p + up->len, upload_data, *upload_data_size);
        up->buf = p;
        up->len += *upload_data_size;
        up->buf[up->len] = '\0';
        *upload_data_size = 0;
        return MHD_YES;
    }

    pthread_mutex_lock(&s->mu);
    s->requests++;
    snprintf(s->method, sizeof s->method, "%s", method);
    snprintf(s->url, sizeof s->url, "%s", url);
    const char *fn = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "filter[number]");
    snprintf(s->filter_number, sizeof s->filter_number, "%s", fn ? fn : "");
    copy_header(conn, "Api-Key", s->api_key, sizeof s->api_key);
    copy_header(conn, "Content-Type", s->content_type, sizeof s->content_type);
    copy_header(conn, "Accept", s->accept, sizeof s->accept);
    copy_header(conn, "X-DIDWW-API-Version", s->api_version, sizeof s->api_version);
    copy_header(conn, "User-Agent", s->user_agent, sizeof s->user_agent);
    s->has_expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect") != NULL;
    free(s->req_body);
    s->req_body = up->buf;
    s->req_body_len = up->len;
    up->buf = NULL;
    up->len = 0;
    int status = s->status, sleep_ms = s->sleep_ms;
    const char *ra = s->retry_after, *ra_name = s->retry_after_name;
    /* Copied while the lock is held: the test may free its body once the next
     * answer is set, while this connection's thread is still sending. */
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(s->body_len, (void *)s->body, MHD_RESPMEM_MUST_COPY);
    pthread_mutex_unlock(&s->mu);
    if (!resp)
        return MHD_NO;

    /* A slow server; ends early when the test tears the server down. */
    for (int slept = 0; slept < sleep_ms && !atomic_load(&s->stopping); slept += 10) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }

    MHD_add_response_header(resp, "Content-Type", "application/vnd.api+json");
    if (ra)
        MHD_add_response_header(resp, ra_name ? ra_name : "Retry-After", ra);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned int)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void srv_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                             enum MHD_RequestTerminationCode toe)
{
    struct upload *up = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (up) {
        free(up->buf);
        free(up);
        *con_cls = NULL;
    }
}

static void srv_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
    struct srv *s = cls;
    (void)conn;
    (void)socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        pthread_mutex_lock(&s->mu);
        s->connections++;
        pthread_mutex_unlock(&s->mu);
    }
}

static int srv_setup(void **state)
{
    struct srv *s = calloc(1, sizeof *s);
    struct sockaddr_in sa;

    if (!s)
        return -1;
    pthread_mutex_init(&s->mu, NULL);
    s->status = 200;
    s->body = "{\"data\":{\"type\":\"dids\",\"id\":\"x\"}}";
    s->body_len = strlen(s->body);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, srv_on_request, s, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, srv_on_completed,
                            s, MHD_OPTION_NOTIFY_CONNECTION, srv_on_connection, s, MHD_OPTION_END);
    if (!s->d) {
        free(s);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0) {
        MHD_stop_daemon(s->d);
        free(s);
        return -1;
    }
    s->port = info->port;
    *state = s;
    return 0;
}

static int srv_teardown(void **state)
{
    struct srv *s = *state;
    atomic_store(&s->stopping, 1);
    MHD_stop_daemon(s->d);
    free(s->req_body);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return 0;
}

/* A client for s with base_url "http://127.0.0.1:<port><suffix>". */
static struct didww_client *client_for(const struct srv *s, const char *suffix, long timeout_ms)
{
    char base[128];
    snprintf(base, sizeof base, "http://127.0.0.1:%u%s", (unsigned)s->port, suffix);
    struct didww_client_options o = {
        .base_url = base,
        .api_key = TEST_KEY,
        .api_version = TEST_VERSION,
        .timeout_ms = timeout_ms,
        .connect_timeout_ms = 0,
    };
    struct didww_client *c = didww_client_create(&o);
    assert_non_null(c);
    return c;
}

static void answer(struct srv *s, int status, const char *body, size_t len, const char *retry_after)
{
    pthread_mutex_lock(&s->mu);
    s->status = status;
    s->body = body;
    s->body_len = len;
    s->retry_after = retry_after;
    pthread_mutex_unlock(&s->mu);
}

static void test_headers_and_patch_body(void **state)
{
    struct srv *s = *state;
    struct didww_client *c = client_for(s, "/v3", 5000);
    struct didww_response r;
    static const char body[] =
        "{\"data\":{\"type\":\"dids\",\"id\":\"f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c\","
        "\"relationships\":{\"voice_in_trunk\":{\"data\":{\"type\":\"voice_in_trunks\","
        "\"id\":\"d9b6ec47-0b72-452b-b4b4-23dd9d5be7e6\"}},\"voice_in_trunk_group\":"
        "{\"data\":null}}}}";

    assert_int_equal(
        didww_client_send(c, "PATCH", "/v3/dids/f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c", body, &r),
        0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.truncated, 0);
    assert_string_equal(r.retry_after, "");
    assert_int_equal(r.body_len, s->body_len);
    assert_memory_equal(r.body, s->body, s->body_len);
    assert_int_equal(r.body[r.body_len], '\0');
    assert_true(r.duration_ms >= 0 && r.duration_ms < 5000);
    didww_response_free(&r);
    assert_null(r.body);

    pthread_mutex_lock(&s->mu);
    assert_string_equal(s->method, "PATCH");
    assert_string_equal(s->url, "/v3/dids/f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c");
    assert_string_equal(s->api_key, TEST_KEY);
    assert_string_equal(s->content_type, "application/vnd.api+json");
    assert_string_equal(s->accept, "application/vnd.api+json");
    assert_string_equal(s->api_version, TEST_VERSION);
    assert_string_equal(s->user_agent, "hookline/" HOOKLINE_VERSION);
    assert_memory_equal(s->user_agent, "hookline/", 9);
    assert_false(s->has_expect);
    assert_int_equal(s->req_body_len, strlen(body));
    assert_memory_equal(s->req_body, body, strlen(body));
    pthread_mutex_unlock(&s->mu);
    didww_client_destroy(c);
}

static void test_methods_and_bodies_on_one_connection(void **state)
{
    struct srv *s = *state;
    struct didww_client *c = client_for(s, "/v3", 5000);
    struct didww_response r;
    static const struct {
        const char *method;
        const char *path;
        const char *body; /* NULL: none */
        const char *want_url;
    } steps[] = {
        {"GET", "/v3/dids/abc", NULL, "/v3/dids/abc"},
        {"PATCH", "/v3/dids/abc", "{\"data\":{\"id\":\"abc\"}}", "/v3/dids/abc"},
        {"GET", "/v3/dids/abc", NULL, "/v3/dids/abc"}, /* GET again: no leftover PATCH */
        {"POST", "/v3/voice_in_trunk_groups/g/relationships/voice_in_trunks",
         "{\"data\":[{\"type\":\"voice_in_trunks\",\"id\":\"t1\"}]}",
         "/v3/voice_in_trunk_groups/g/relationships/voice_in_trunks"},
        {"DELETE", "/v3/voice_in_trunk_groups/g/relationships/voice_in_trunks",
         "{\"data\":[{\"type\":\"voice_in_trunks\",\"id\":\"t1\"}]}",
         "/v3/voice_in_trunk_groups/g/relationships/voice_in_trunks"},
        {"DELETE", "/v3/dids/abc", NULL, "/v3/dids/abc"},
        {"PATCH", "/dids/abc", "{}", "/v3/dids/abc"}, /* path without /v3 */
    };

    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        assert_int_equal(didww_client_send(c, steps[i].method, steps[i].path, steps[i].body, &r),
                         0);
        assert_int_equal(r.status, 200);
        didww_response_free(&r);
        pthread_mutex_lock(&s->mu);
        assert_string_equal(s->method, steps[i].method);
        assert_string_equal(s->url, steps[i].want_url);
        const char *want = steps[i].body ? steps[i].body : "";
        assert_int_equal(s->req_body_len, strlen(want));
        if (s->req_body_len)
            assert_memory_equal(s->req_body, want, strlen(want));
        assert_string_equal(s->api_key, TEST_KEY);
        assert_string_equal(s->accept, "application/vnd.api+json");
        pthread_mutex_unlock(&s->mu);
    }
    /* every request went over the first connection (keep-alive) */
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->requests, (int)(sizeof steps / sizeof steps[0]));
    assert_int_equal(s->connections, 1);
    pthread_mutex_unlock(&s->mu);
    didww_client_destroy(c);
}

static void test_two_requests_one_connection(void **state)
{
    struct srv *s = *state;
    struct didww_client *c = client_for(s, "/v3", 5000);
    struct didww_response r;

    assert_int_equal(didww_client_send(c, "GET", "/v3/dids/1", NULL, &r), 0);
    didww_response_free(&r);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids/2", NULL, &r), 0);
    didww_response_free(&r);
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->requests, 2);
    assert_int_equal(s->connections, 1);
    pthread_mutex_unlock(&s->mu);
    didww_client_destroy(c);

    /* a second client is a second connection: the count is real */
    c = client_for(s, "/v3", 5000);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids/3", NULL, &r), 0);
    didww_response_free(&r);
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->connections, 2);
    pthread_mutex_unlock(&s->mu);
    didww_client_destroy(c);
}

static void test_large_patch_body_byte_exact(void **state)
{
    struct srv *s = *state;
    struct didww_client *c = client_for(s, "/v3", 5000);
    struct didww_response r;
    size_t n = 0, cap = (1u << 20) + 200000;
    char *body = malloc(cap);
    assert_non_null(body);

    /* > 1 MiB, where libcurl would otherwise ask "Expect: 100-continue" first and wait
     * for the server; UTF-8 and escapes included */
    n += (size_t)snprintf(body + n, cap - n,
                          "{\"data\":{\"type\":\"dids\",\"id\":\"x\","
                          "\"attributes\":{\"description\":\"");
    while (n < cap - 100)
        n += (size_t)snprintf(body + n, cap - n, "Zürich-\\u00e9-%zu ", n);
    n += (size_t)snprintf(body + n, cap - n, "\"}}}");

    assert_int_equal(didww_client_send(c, "PATCH", "/v3/dids/x", body, &r), 0);
    assert_int_equal(r.status, 200);
    didww_response_free(&r);
    pthread_mutex_lock(&s->mu);
    assert_false(s->has_expect);
    assert_int_equal(s->req_body_len, n);
    assert_memory_equal(s->req_body, body, n);
    pthread_mutex_unlock(&s->mu);
    free(body);
    didww_client_destroy(c);
}

static void test_base_url_joining(void **state)
{
    struct srv *s = *state;
    struct didww_response r;
    static const struct {
        const char *suffix, *path, *want;
    } cases[] = {
        {"/v3", "/v3/dids/a", "/v3/dids/a"},      {"/v3/", "/v3/dids/a", "/v3/dids/a"},
        {"/v3", "/dids/a", "/v3/dids/a"},         {"", "/v3/dids/a", "/v3/dids/a"},
        {"/v3", "dids/a", "/v3/dids/a"},          {"/api/v3", "/v3/dids/a", "/api/v3/dids/a"},
        {"/v3x", "/v3/dids/a", "/v3x/v3/dids/a"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct didww_client *c = client_for(s, cases[i].suffix, 5000);
        assert_int_equal(didww_client_send(c, "GET", cases[i].path, NULL, &r), 0);
        didww_response_free(&r);
        pthread_mutex_lock(&s->mu);
        if (strcmp(s->url, cases[i].want) != 0)
            fail_msg("base ...%s + %s reached %s, want %s", cases[i].suffix, cases[i].path, s->url,
                     cases[i].want);
        pthread_mutex_unlock(&s->mu);
        didww_client_destroy(c);
    }

    /* a JSON:API filter in the query string arrives intact */
    struct didww_client *c = client_for(s, "/v3", 5000);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids?filter[number]=4379001234567", NULL, &r),
                     0);
    didww_response_free(&r);
    pthread_mutex_lock(&s->mu);
    assert_string_equal(s->url, "/v3/dids");
    assert_string_equal(s->filter_number, "4379001234567");
    pthread_mutex_unlock(&s->mu);
    didww_client_destroy(c);
}

static void test_truncated_response_keeps_client_usable(void **state)
{
    struct srv *s = *state;
    struct didww_client *c = client_for(s, "/v3", 10000);
    struct didww_response r;
    char *big = malloc(BIG_BODY_LEN);
    assert_non_null(big);
    for (size_t i = 0; i < BIG_BODY_LEN; i++)
        big[i] = (char)('a' + i % 26);

    answer(s, 200, big, BIG_BODY_LEN, NULL);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.truncated, 1);
    assert_int_equal(r.body_len, DIDWW_CLIENT_MAX_RESPONSE);
    assert_non_null(r.body);
    assert_memory_equal(r.body, big, DIDWW_CLIENT_MAX_RESPONSE);
    assert_int_equal(r.body[r.body_len], '\0');
    didww_response_free(&r);

    /* the next request on the same client works and is complete */
    static const char small[] = "{\"data\":[]}";
    answer(s, 200, small, strlen(small), NULL);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.truncated, 0);
    assert_int_equal(r.body_len, strlen(small));
    assert_string_equal(r.body, small);
    didww_response_free(&r);

    /* exactly the cap is not truncated */
    answer(s, 200, big, DIDWW_CLIENT_MAX_RESPONSE, NULL);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids", NULL, &r), 0);
    assert_int_equal(r.truncated, 0);
    assert_int_equal(r.body_len, DIDWW_CLIENT_MAX_RESPONSE);
    didww_response_free(&r);
    didww_client_destroy(c);
    answer(s, 200, small, strlen(small), NULL); /* big is freed below */
    free(big);
}

static void test_timeout_gives_status_zero(void **state)
{
    struct srv *s = *state;
    struct didww_client *c = client_for(s, "/v3", 300);
    struct didww_response r;

    pthread_mutex_lock(&s->mu);
    s->sleep_ms = 3000;
    pthread_mutex_unlock(&s->mu);
    assert_int_equal(didww_client_send(c, "PATCH", "/v3/dids/x", "{}", &r), -1);
    assert_int_equal(r.status, 0);
    assert_null(r.body);
    assert_true(r.error[0] != '\0');
    assert_null(strstr(r.error, TEST_KEY));
    assert_true(r.duration_ms >= 250 && r.duration_ms < 2500);
    didww_response_free(&r);

    /* the server is fast again: the client recovers */
    pthread_mutex_lock(&s->mu);
    s->sleep_ms = 0;
    pthread_mutex_unlock(&s->mu);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids/x", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.error, "");
    didww_response_free(&r);
    didww_client_destroy(c);
}

static void test_retry_after_captured(void **state)
{
    struct srv *s = *state;
    struct didww_client *c = client_for(s, "/v3", 5000);
    struct didww_response r;
    static const char err[] = "{\"errors\":[{\"title\":\"Too Many Requests\",\"status\":\"429\"}]}";

    answer(s, 429, err, strlen(err), "120");
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids/x", NULL, &r), 0);
    assert_int_equal(r.status, 429);
    assert_string_equal(r.retry_after, "120");
    assert_string_equal(r.body, err);
    didww_response_free(&r);

    /* header name in another case, HTTP-date value */
    pthread_mutex_lock(&s->mu);
    s->retry_after_name = "retry-AFTER";
    pthread_mutex_unlock(&s->mu);
    answer(s, 503, "", 0, "Wed, 21 Oct 2015 07:28:00 GMT");
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids/x", NULL, &r), 0);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.retry_after, "Wed, 21 Oct 2015 07:28:00 GMT");
    assert_int_equal(r.body_len, 0);
    didww_response_free(&r);

    /* absent again on the next answer: nothing carries over */
    answer(s, 401, "", 0, NULL);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids/x", NULL, &r), 0);
    assert_int_equal(r.status, 401);
    assert_string_equal(r.retry_after, "");
    didww_response_free(&r);
    didww_client_destroy(c);
}

static void test_connection_refused(void **state)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    struct didww_response r;
    char base[128];
    (void)state;

    /* A port nobody listens on: bind one, note it, close it. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);

    snprintf(base, sizeof base, "http://127.0.0.1:%u/v3", (unsigned)ntohs(sa.sin_port));
    struct didww_client_options o = {base, TEST_KEY, TEST_VERSION, 2000, 0, NULL};
    struct didww_client *c = didww_client_create(&o);
    assert_non_null(c);
    assert_int_equal(didww_client_send(c, "PATCH", "/v3/dids/x", "{}", &r), -1);
    assert_int_equal(r.status, 0);
    assert_null(r.body);
    assert_true(r.error[0] != '\0');
    assert_null(strstr(r.error, TEST_KEY));
    didww_response_free(&r);
    didww_client_destroy(c);
}

static void test_rejects_bad_input(void **state)
{
    struct srv *s = *state;
    struct didww_response r;
    (void)state;

    /* header injection through the options is refused at creation */
    struct didww_client_options o = {
        "http://127.0.0.1:1/v3", "key\r\nX-Evil: 1", TEST_VERSION, 1000, 0, NULL};
    assert_null(didww_client_create(&o));
    o.api_key = TEST_KEY;
    o.api_version = "2022-05-10\n";
    assert_null(didww_client_create(&o));
    o.api_version = TEST_VERSION;
    o.api_key = "";
    assert_null(didww_client_create(&o));
    o.api_key = NULL;
    assert_null(didww_client_create(&o));
    assert_null(didww_client_create(NULL));
    didww_client_destroy(NULL);
    didww_response_free(NULL);

    /* other protocols are not spoken, whatever the base URL says */
    struct didww_client_options f = {"file:///etc", TEST_KEY, TEST_VERSION, 1000, 0, NULL};
    struct didww_client *c = didww_client_create(&f);
    assert_non_null(c);
    assert_int_equal(didww_client_send(c, "GET", "/passwd", NULL, &r), -1);
    assert_int_equal(r.status, 0);
    assert_null(r.body);
    didww_client_destroy(c);

    /* method and path are checked before anything is sent */
    c = client_for(s, "/v3", 5000);
    assert_int_equal(didww_client_send(c, "PA TCH", "/v3/dids/x", "{}", &r), -1);
    assert_int_equal(r.status, 0);
    assert_int_equal(didww_client_send(c, "patch", "/v3/dids/x", "{}", &r), -1);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids/x\r\nX-Evil: 1", NULL, &r), -1);
    assert_int_equal(didww_client_send(c, "GET", "", NULL, &r), -1);
    assert_int_equal(didww_client_send(c, NULL, "/v3/dids/x", NULL, &r), -1);
    assert_int_equal(didww_client_send(NULL, "GET", "/v3/dids/x", NULL, &r), -1);
    assert_int_equal(didww_client_send(c, "GET", "/v3/dids/x", NULL, NULL), -1);
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->requests, 0);
    pthread_mutex_unlock(&s->mu);
    didww_client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_headers_and_patch_body, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_methods_and_bodies_on_one_connection, srv_setup,
                                        srv_teardown),
        cmocka_unit_test_setup_teardown(test_two_requests_one_connection, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_large_patch_body_byte_exact, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_base_url_joining, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_truncated_response_keeps_client_usable, srv_setup,
                                        srv_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_gives_status_zero, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_captured, srv_setup, srv_teardown),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test_setup_teardown(test_rejects_bad_input, srv_setup, srv_teardown),
    };
    int rc;

    signal(SIGPIPE, SIG_IGN);
    /* A proxy in the environment must not divert the client: point every proxy
     * variable at a dead port, so each test also proves they are ignored. */
    setenv("http_proxy", "http://127.0.0.1:9", 1);
    setenv("https_proxy", "http://127.0.0.1:9", 1);
    setenv("ALL_PROXY", "http://127.0.0.1:9", 1);
    setenv("all_proxy", "http://127.0.0.1:9", 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
