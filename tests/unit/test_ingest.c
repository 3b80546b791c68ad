/*
 * test_ingest: the ingest path without HTTP: media types, form decoding, JSON
 * pointers, event ids, header redaction, and prepare/complete against a real
 * SQLite store, including the planner seam storing jobs with the event.
 * Includes ingest.c to reach its static helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/ingest.c"

#include <time.h>

#include "test_util.h"

static char dir[512];

static void test_media_types(void **state)
{
    assert_int_equal(ingest_media_type("application/json"), INGEST_MEDIA_JSON);
    assert_int_equal(ingest_media_type("Application/JSON; charset=utf-8"), INGEST_MEDIA_JSON);
    assert_int_equal(ingest_media_type("application/vnd.api+json"), INGEST_MEDIA_JSON);
    assert_int_equal(ingest_media_type("application/x-www-form-urlencoded"), INGEST_MEDIA_FORM);
    assert_int_equal(ingest_media_type("text/plain"), INGEST_MEDIA_OTHER);
    assert_int_equal(ingest_media_type("application/jsonx"), INGEST_MEDIA_OTHER);
    assert_int_equal(ingest_media_type("multipart/form-data; boundary=x"), INGEST_MEDIA_OTHER);
    assert_int_equal(ingest_media_type(NULL), INGEST_MEDIA_OTHER);
}

static void test_form_fields(void **state)
{
    char why[200];
    const char *body = "name=Ann+Lee&phone=%2B4371234567&tag=a&tag=b&empty=&flag";
    json_t *o = ingest_parse_form((const unsigned char *)body, strlen(body), why, sizeof why);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "name")), "Ann Lee");
    assert_string_equal(json_string_value(json_object_get(o, "phone")), "+4371234567");
    assert_true(json_is_array(json_object_get(o, "tag")));
    assert_int_equal(json_array_size(json_object_get(o, "tag")), 2);
    assert_string_equal(json_string_value(json_object_get(o, "empty")), "");
    assert_string_equal(json_string_value(json_object_get(o, "flag")), "");
    json_decref(o);
}

static void test_form_errors(void **state)
{
    char why[200];
    const char *bad[] = {"a=%zz", "a=%4", "a=%00", "=x", "a=%C3%28"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert_null(
            ingest_parse_form((const unsigned char *)bad[i], strlen(bad[i]), why, sizeof why));
        assert_true(strlen(why) > 0);
    }
}

static void test_json_pointer(void **state)
{
    char why[200];
    const char *text = "{\"ticket\": {\"id\": 42, \"tags\": [\"a\", \"b\"], \"a/b\": 1,"
                       " \"m~n\": 2}}";
    struct jdoc *doc = ingest_decode_body("application/json", (const unsigned char *)text,
                                          strlen(text), why, sizeof why);
    assert_non_null(doc);
    assert_int_equal(jdoc_pointer(doc, "/ticket/id")->u.i, 42);
    assert_string_equal(jdoc_str(doc, jdoc_pointer(doc, "/ticket/tags/1")), "b");
    assert_int_equal(jdoc_pointer(doc, "/ticket/a~1b")->u.i, 1);
    assert_int_equal(jdoc_pointer(doc, "/ticket/m~0n")->u.i, 2);
    assert_null(jdoc_pointer(doc, "/ticket/tags/2"));
    assert_null(jdoc_pointer(doc, "/ticket/tags/01"));
    assert_null(jdoc_pointer(doc, "/nope"));
    assert_null(jdoc_pointer(doc, "ticket"));
    jdoc_free(doc);
}

/* A form body decodes to a document of its fields; a malformed JSON body says where. */
static void test_decode_body(void **state)
{
    char why[200];
    const char *form = "name=Ann+Lee&tag=a&tag=b";
    struct jdoc *doc =
        ingest_decode_body("application/x-www-form-urlencoded", (const unsigned char *)form,
                           strlen(form), why, sizeof why);
    assert_non_null(doc);
    assert_string_equal(jdoc_str(doc, jdoc_pointer(doc, "/name")), "Ann Lee");
    assert_string_equal(jdoc_str(doc, jdoc_pointer(doc, "/tag/1")), "b");
    jdoc_free(doc);
    const char *bad = "{\"a\": 1,\n \"b\": tru}";
    assert_null(ingest_decode_body("application/json", (const unsigned char *)bad, strlen(bad), why,
                                   sizeof why));
    assert_non_null(strstr(why, "malformed JSON at line 2"));
}

/* A Salesforce Outbound Message: text/xml only for a salesforce-outbound source, the
 * table as the rule and reprocessing see it, and the event id of one and of several
 * notifications. */
static void test_salesforce_outbound_body(void **state)
{
    static const char xml[] =
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" "
        "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>"
        "<notifications xmlns=\"http://soap.sforce.com/2005/09/outbound\">"
        "<OrganizationId>00D5g000004ElSmEAK</OrganizationId>"
        "<SessionId>[redacted]</SessionId>"
        "<Notification><Id>04l5g00000Hd8AbAAJ</Id><sObject xsi:type=\"sf:Case\" "
        "xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\"><sf:Status>New</sf:Status>"
        "</sObject></Notification>"
        "<Notification><Id>04l5g00000Hd8AcAAJ</Id></Notification>"
        "</notifications></soapenv:Body></soapenv:Envelope>";
    char why[200];
    struct config_source src = {.name = "sf", .format = CONFIG_FORMAT_SALESFORCE_OUTBOUND};
    struct ingest_request req = {.body = (const unsigned char *)xml, .body_len = strlen(xml)};
    (void)state;

    assert_int_equal(ingest_media_type("text/xml; charset=utf-8"), INGEST_MEDIA_XML);
    struct jdoc *doc = ingest_decode_body("text/xml; charset=utf-8", (const unsigned char *)xml,
                                          strlen(xml), why, sizeof why);
    assert_non_null(doc);
    assert_string_equal(jdoc_str(doc, jdoc_pointer(doc, "/notifications/0/sobject/type")), "Case");
    assert_string_equal(jdoc_str(doc, jdoc_pointer(doc, "/notifications/0/sobject/Status")), "New");
    assert_null(jdoc_pointer(doc, "/session_id"));
    char *id = ingest_derive_event_id(&src, &req, doc, why, sizeof why);
    char want[80];
    char hex[DIGEST_SHA256_HEX_LEN + 1];
    const char *ids = "04l5g00000Hd8AbAAJ,04l5g00000Hd8AcAAJ";
    digest_sha256_hex(ids, strlen(ids), hex);
    snprintf(want, sizeof want, "sha256:%s", hex);
    assert_non_null(id);
    assert_string_equal(id, want);
    free(id);
    jdoc_free(doc);

    /* One notification: its Id. */
    const char *one = strstr(xml, "<Notification><Id>04l5g00000Hd8AcAAJ");
    char single[1024];
    snprintf(single, sizeof single, "%.*s%s", (int)(strstr(xml, "<Notification>") - xml), xml, one);
    doc = ingest_decode_body("text/xml", (const unsigned char *)single, strlen(single), why,
                             sizeof why);
    assert_non_null(doc);
    id = ingest_derive_event_id(&src, &req, doc, why, sizeof why);
    assert_non_null(id);
    assert_string_equal(id, "04l5g00000Hd8AcAAJ");
    free(id);
    jdoc_free(doc);

    /* A body sent as text/xml that is not XML is refused with expat's reason. */
    assert_null(ingest_decode_body("text/xml", (const unsigned char *)"{}", 2, why, sizeof why));
    assert_non_null(strstr(why, "XML error"));
}

/* ---------- prepare/complete with a real store ---------- */

struct kv {
    const char *k, *v;
};
static struct kv req_headers[8];

static const char *lookup(void *ctx, const char *name)
{
    struct kv *h = ctx;
    for (int i = 0; h[i].k; i++)
        if (strcasecmp(h[i].k, name) == 0)
            return h[i].v;
    return NULL;
}

static int plan_two_jobs(void *ctx, const struct ingest_event *ev, struct ingest_plan *plan)
{
    static struct store_job_spec jobs[1] = {{"route_did", "PATCH", "/v3/dids/number:4371234567",
                                             "{}", NULL, "4371234567", "number:4371234567"}};
    int *calls = ctx;
    (*calls)++;
    /* the planner sees the decoded body and redacted headers */
    assert_int_equal(jdoc_get(ev->body, jdoc_root(ev->body), "a", 1)->u.i, 1);
    assert_string_equal(json_string_value(json_object_get(ev->headers, "authorization")),
                        "[redacted]");
    plan->jobs = jobs;
    plan->njobs = 1;
    plan->rule_version = "test-rule";
    return 0;
}

static void test_prepare_store_complete(void **state)
{
    char path[700], err[200];
    setenv("HL_INGEST_TOKEN", "ingest-secret-token", 1);
    test_write_file(
        dir, "c.json",
        "{\"store\": {\"url\": \"sqlite:s.db\"}, \"sources\": {\"t\": {\"verify\":"
        " {\"scheme\": \"token\", \"header\": \"Authorization\", \"prefix\": \"Bearer \","
        " \"secret\": \"env:HL_INGEST_TOKEN\"}, \"event_id\": \"json:/id\"}}}",
        path, sizeof path);
    struct config_diags d = {0};
    struct config *cfg = config_load(path, &d);
    assert_non_null(cfg);
    char url[800];
    snprintf(url, sizeof url, "sqlite:%s", cfg->store_sqlite_path);
    struct store *st;
    struct store_options so = {.url = url, .busy_timeout_ms = 100};
    assert_int_equal(store_open(&so, &st, err, sizeof err), 0);
    struct ingest *ing = ingest_create(cfg, st);
    int calls = 0;
    struct ingest_planner planner = {plan_two_jobs, &calls};
    ingest_set_planner(ing, &planner);

    req_headers[0] = (struct kv){"Authorization", "Bearer ingest-secret-token"};
    req_headers[1] = (struct kv){"Content-Type", "application/json"};
    json_t *hdrs = json_pack("{s:s, s:s}", "authorization", "Bearer ingest-secret-token",
                             "content-type", "application/json");
    const char *body = "{\"id\": \"evt-77\", \"a\": 1}";
    struct ingest_request req = {.method = "POST",
                                 .source = "t",
                                 .url = "http://h/hooks/t",
                                 .content_type = "application/json",
                                 .remote = "127.0.0.1",
                                 .headers = hdrs,
                                 .header = lookup,
                                 .query = lookup,
                                 .lookup_ctx = req_headers,
                                 .body = (const unsigned char *)body,
                                 .body_len = strlen(body),
                                 .now = (double)time(NULL)};
    struct ingest_pending p = {0};
    struct ingest_response resp = {0};
    assert_true(ingest_prepare(ing, &req, &p, &resp));
    assert_int_equal(calls, 1);
    assert_null(strstr(p.headers_json, "ingest-secret-token"));
    assert_int_equal(store_submit_wait(st, &p.op), 0);
    ingest_complete(ing, &p, &resp);
    assert_int_equal(resp.status, 202);
    assert_string_equal(resp.body, "{\"event_id\":\"evt-77\",\"status\":\"accepted\",\"jobs\":1}");
    ingest_pending_free(&p);
    free(resp.body);

    /* wrong token: 401 problem without the secret */
    req_headers[0].v = "Bearer not-it";
    memset(&p, 0, sizeof p);
    memset(&resp, 0, sizeof resp);
    assert_false(ingest_prepare(ing, &req, &p, &resp));
    assert_int_equal(resp.status, 401);
    assert_string_equal(resp.content_type, "application/problem+json");
    assert_null(strstr(resp.body, "ingest-secret-token"));
    ingest_pending_free(&p);
    free(resp.body);

    /* authentic but no event id at /id: 400 */
    req_headers[0].v = "Bearer ingest-secret-token";
    const char *noid = "{\"a\": 1}";
    req.body = (const unsigned char *)noid;
    req.body_len = strlen(noid);
    memset(&p, 0, sizeof p);
    memset(&resp, 0, sizeof resp);
    assert_false(ingest_prepare(ing, &req, &p, &resp));
    assert_int_equal(resp.status, 400);
    assert_non_null(strstr(resp.body, "/id"));
    ingest_pending_free(&p);
    free(resp.body);

    /* precheck: unknown source, wrong method, media type, declared size */
    memset(&resp, 0, sizeof resp);
    assert_false(ingest_precheck(ing, "nope", "POST", "application/json", 10, &resp));
    assert_int_equal(resp.status, 404);
    assert_false(ingest_precheck(ing, "t", "GET", "application/json", 10, &resp));
    assert_int_equal(resp.status, 405);
    assert_string_equal(resp.allow, "POST");
    resp.allow = NULL;
    assert_false(ingest_precheck(ing, "t", "POST", "text/xml", 10, &resp));
    assert_int_equal(resp.status, 415);
    assert_false(ingest_precheck(ing, "t", "POST", "application/json", 2 * 1048576, &resp));
    assert_int_equal(resp.status, 413);
    assert_true(ingest_precheck(ing, "t", "POST", "application/json", -1, &resp));
    free(resp.body);

    json_decref(hdrs);
    ingest_destroy(ing);
    store_close(st);
    config_free(cfg);
    config_diags_free(&d);
}

static int setup(void **state)
{
    test_tmpdir(dir, sizeof dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_media_types),
        cmocka_unit_test(test_form_fields),
        cmocka_unit_test(test_form_errors),
        cmocka_unit_test(test_json_pointer),
        cmocka_unit_test(test_decode_body),
        cmocka_unit_test(test_salesforce_outbound_body),
        cmocka_unit_test_setup(test_prepare_store_complete, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
