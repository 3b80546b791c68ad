/*
 * Unit tests for src/sfdc_outbound.c: a realistic Salesforce Outbound Message
 * (tests/fixtures/salesforce/) becomes the table a rule sees, the SessionId never
 * reaches it and is redacted in the stored copy, and everything an XML bomb or a
 * non-Salesforce document needs is refused with a reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sfdc_outbound.h"

#define SESSION                                                                                    \
    "00D5g000004ElSm!AQ4AQH0dMHZfz972Szmpkb58urFRkgeBGsxL_QJWwYMfAbUeeG7c1E6LYUfiDUkWe6H"

#define ENV_OPEN                                                                                   \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"                                                   \
    "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" "               \
    "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>"                       \
    "<notifications xmlns=\"http://soap.sforce.com/2005/09/outbound\">"
#define ENV_CLOSE "</notifications></soapenv:Body></soapenv:Envelope>"
#define ORG                                                                                        \
    "<OrganizationId>00D5g000004ElSmEAK</OrganizationId><ActionId>04k5g000000CaSjAAK</ActionId>"
#define NOTE(id)                                                                                   \
    "<Notification><Id>" id "</Id><sObject xsi:type=\"sf:Lead\" "                                  \
    "xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\"><sf:Id>00Q5g00000ABCDEFGH</sf:Id>"        \
    "</sObject></Notification>"

/* Reads a fixture into a new buffer. */
static unsigned char *read_fixture(const char *name, size_t *len)
{
    char path[1024];
    const char *dir = getenv("HOOKLINE_SOURCE_DIR");
    FILE *f;
    unsigned char *buf;
    long n;

    snprintf(path, sizeof path, "%s/tests/fixtures/salesforce/%s", dir ? dir : ".", name);
    f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Parses text, expecting failure with a reason containing want. */
static void expect_refused(const char *text, const char *want)
{
    struct sfdc_outbound m;
    char why[256] = "";

    assert_int_equal(
        sfdc_outbound_parse((const unsigned char *)text, strlen(text), &m, why, sizeof why), -1);
    if (strstr(why, want) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", why, want);
    assert_null(m.body);
    assert_null(m.redacted);
}

static void test_account_fixture(void **state)
{
    struct sfdc_outbound m;
    char why[256] = "";
    size_t len;
    unsigned char *xml = read_fixture("account_outbound.xml", &len);
    json_t *n, *so;

    (void)state;
    assert_int_equal(sfdc_outbound_parse(xml, len, &m, why, sizeof why), 0);
    assert_string_equal(json_string_value(json_object_get(m.body, "organization_id")),
                        "00D5g000004ElSmEAK");
    assert_string_equal(json_string_value(json_object_get(m.body, "action_id")),
                        "04k5g000000CaSjAAK");
    assert_string_equal(json_string_value(json_object_get(m.body, "enterprise_url")),
                        "https://acme-corp.my.salesforce.com/services/Soap/c/60.0/00D5g000004ElSm");
    assert_null(json_object_get(m.body, "session_id"));
    assert_int_equal(json_array_size(json_object_get(m.body, "notifications")), 1);
    n = json_array_get(json_object_get(m.body, "notifications"), 0);
    assert_string_equal(json_string_value(json_object_get(n, "id")), "04l5g00000Hd7XzAAJ");
    so = json_object_get(n, "sobject");
    assert_string_equal(json_string_value(json_object_get(so, "type")), "Account");
    assert_string_equal(json_string_value(json_object_get(so, "Id")), "0015g00000QkR2xAAF");
    /* &amp; is decoded; a nil field is null; custom fields keep their API names. */
    assert_string_equal(json_string_value(json_object_get(so, "Name")),
                        "Edge Communications & Partners");
    assert_true(json_is_null(json_object_get(so, "Fax")));
    assert_string_equal(json_string_value(json_object_get(so, "Support_Number__c")),
                        "+493090182000");

    /* The stored copy: SessionId text gone, everything else byte-identical. */
    assert_null(strstr((const char *)m.redacted, "AQ4AQH0dMHZfz972"));
    assert_non_null(strstr((const char *)m.redacted, "<SessionId>[redacted]</SessionId>"));
    {
        const char *s = strstr((const char *)xml, "<SessionId>");
        const char *e = strstr((const char *)xml, "</SessionId>");
        size_t pre = (size_t)(s - (const char *)xml) + strlen("<SessionId>");

        assert_memory_equal(m.redacted, xml, pre);
        assert_int_equal(m.redacted_len, len - (size_t)(e - (const char *)xml - pre) + 10);
        assert_memory_equal(m.redacted + pre + 10, e, len - (size_t)(e - (const char *)xml));
    }
    /* The redacted copy parses to the same table. */
    {
        struct sfdc_outbound again;

        assert_int_equal(sfdc_outbound_parse(m.redacted, m.redacted_len, &again, why, sizeof why),
                         0);
        assert_true(json_equal(again.body, m.body));
        sfdc_outbound_free(&again);
    }
    sfdc_outbound_free(&m);
    free(xml);
}

static void test_two_notifications_nil_session(void **state)
{
    struct sfdc_outbound m;
    char why[256] = "";
    size_t len;
    unsigned char *xml = read_fixture("two_cases_outbound.xml", &len);
    json_t *arr;

    (void)state;
    assert_int_equal(sfdc_outbound_parse(xml, len, &m, why, sizeof why), 0);
    arr = json_object_get(m.body, "notifications");
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "id")),
                        "04l5g00000Hd8AcAAJ");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(arr, 0), "sobject"), "Priority")),
                        "High");
    /* Nothing to redact: the stored copy is the message itself. */
    assert_int_equal(m.redacted_len, len);
    assert_memory_equal(m.redacted, xml, len);
    sfdc_outbound_free(&m);
    free(xml);
}

static void test_nested_field_becomes_table(void **state)
{
    struct sfdc_outbound m;
    char why[256] = "";
    const char *text = ENV_OPEN ORG
        "<Notification><Id>04l5g00000Hd7XzAAJ</Id><sObject xsi:type=\"sf:Contact\" "
        "xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\"><sf:Owner><sf:Name>Ann</sf:Name>"
        "</sf:Owner></sObject></Notification>" ENV_CLOSE;
    json_t *so;

    (void)state;
    assert_int_equal(
        sfdc_outbound_parse((const unsigned char *)text, strlen(text), &m, why, sizeof why), 0);
    so = json_object_get(json_array_get(json_object_get(m.body, "notifications"), 0), "sobject");
    assert_string_equal(json_string_value(json_object_get(json_object_get(so, "Owner"), "Name")),
                        "Ann");
    sfdc_outbound_free(&m);
}

static void test_refuses_doctype_and_entities(void **state)
{
    (void)state;
    /* The billion laughs: refused at the DOCTYPE, before any entity is declared. */
    expect_refused("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
                   "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>"
                   "<lolz>&lol2;</lolz>",
                   "DOCTYPE is not allowed");
    /* External entity (XXE). */
    expect_refused("<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
                   "<r>&x;</r>",
                   "DOCTYPE is not allowed");
    /* A DOCTYPE with no subset at all. */
    expect_refused("<!DOCTYPE soapenv:Envelope SYSTEM \"http://127.0.0.1:1/x.dtd\">" ENV_OPEN ORG
                       NOTE("04l5g00000Hd7XzAAJ") ENV_CLOSE,
                   "DOCTYPE is not allowed");
    /* An undeclared entity is a well-formedness error. */
    expect_refused(ENV_OPEN "<OrganizationId>&x;</OrganizationId>" ENV_CLOSE, "XML error");
}

static void test_refuses_bad_shape(void **state)
{
    (void)state;
    expect_refused("<a/>", "not a SOAP 1.1 envelope");
    expect_refused("<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">"
                   "<soapenv:Body><other/></soapenv:Body></soapenv:Envelope>",
                   "not a Salesforce outbound notifications message");
    expect_refused(ENV_OPEN NOTE("04l5g00000Hd7XzAAJ") ENV_CLOSE, "no OrganizationId");
    expect_refused(ENV_OPEN ORG ENV_CLOSE, "no Notification");
    expect_refused(ENV_OPEN ORG "<Notification><sObject/></Notification>" ENV_CLOSE,
                   "Notification 1 has no Id");
    expect_refused(ENV_OPEN ORG
                   "<SessionId>a</SessionId><SessionId>b</SessionId>" NOTE("04l5g00000Hd7XzAAJ")
                       ENV_CLOSE,
                   "more than one SessionId");
    expect_refused(ENV_OPEN ORG "<Notification>", "XML error");
    expect_refused("", "XML error");
    expect_refused("{\"json\": true}", "XML error");
}

static void test_limits(void **state)
{
    char *text;
    size_t cap = 4u << 20, o = 0;

    (void)state;
    text = malloc(cap);
    assert_non_null(text);

    /* Nesting deeper than the limit inside an sObject. */
    o = (size_t)snprintf(text, cap, "%s%s<Notification><Id>1</Id><sObject>", ENV_OPEN, ORG);
    for (int i = 0; i < SFDC_OUTBOUND_MAX_DEPTH; i++)
        o += (size_t)snprintf(text + o, cap - o, "<f>");
    expect_refused(text, "nest deeper than");

    /* Text larger than the limit. */
    o = (size_t)snprintf(text, cap, "%s<OrganizationId>", ENV_OPEN);
    memset(text + o, 'a', SFDC_OUTBOUND_MAX_TEXT + 1);
    o += SFDC_OUTBOUND_MAX_TEXT + 1;
    snprintf(text + o, cap - o, "</OrganizationId>%s", ENV_CLOSE);
    expect_refused(text, "text exceeds");

    /* Too many elements. */
    o = (size_t)snprintf(text, cap, "%s%s<Notification><Id>1</Id><sObject>", ENV_OPEN, ORG);
    for (int i = 0; i <= SFDC_OUTBOUND_MAX_ELEMENTS; i++)
        o += (size_t)snprintf(text + o, cap - o, "<f/>");
    expect_refused(text, "more than");

    /* More notifications than Salesforce ever sends. */
    o = (size_t)snprintf(text, cap, "%s%s", ENV_OPEN, ORG);
    for (int i = 0; i <= SFDC_OUTBOUND_MAX_NOTIFICATIONS; i++)
        o += (size_t)snprintf(text + o, cap - o, "%s", NOTE("04l5g00000Hd7XzAAJ"));
    snprintf(text + o, cap - o, "%s", ENV_CLOSE);
    expect_refused(text, "more than 100 notifications");
    free(text);
}

static void test_session_redacted_with_entities(void **state)
{
    struct sfdc_outbound m;
    char why[256] = "";
    const char *text = ENV_OPEN ORG "<SessionId>" SESSION
                                    "&amp;x</SessionId>" NOTE("04l5g00000Hd7XzAAJ") ENV_CLOSE;

    (void)state;
    assert_int_equal(
        sfdc_outbound_parse((const unsigned char *)text, strlen(text), &m, why, sizeof why), 0);
    assert_null(strstr((const char *)m.redacted, "AQ4AQH0d"));
    assert_null(strstr((const char *)m.redacted, "&amp;x"));
    assert_non_null(strstr((const char *)m.redacted, "<SessionId>[redacted]</SessionId>"));
    {
        char *dump = json_dumps(m.body, 0);

        assert_non_null(dump);
        assert_null(strstr(dump, "AQ4AQH0d"));
        free(dump);
    }
    sfdc_outbound_free(&m);
}

static void test_org_matches(void **state)
{
    (void)state;
    assert_true(sfdc_outbound_org_matches("00D5g000004ElSmEAK", "00D5g000004ElSmEAK"));
    assert_true(sfdc_outbound_org_matches("00D5g000004ElSm", "00D5g000004ElSmEAK"));
    assert_false(sfdc_outbound_org_matches("00D5g000004ElSn", "00D5g000004ElSmEAK"));
    assert_false(sfdc_outbound_org_matches("00D5g000004ElSmEAK", "00D5g000004ElSm"));
    assert_false(sfdc_outbound_org_matches("00D5g000004ElSmEAK", "00d5g000004elsmeak"));
    assert_false(sfdc_outbound_org_matches("00D5g000004ElSmEAK", NULL));
    assert_false(sfdc_outbound_org_matches("00D5g000004ElSmEAK", ""));
}

static void test_ack_text(void **state)
{
    (void)state;
    assert_string_equal(
        sfdc_outbound_ack,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope "
        "xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>"
        "<notificationsResponse xmlns=\"http://soap.sforce.com/2005/09/outbound\"><Ack>true</Ack>"
        "</notificationsResponse></soapenv:Body></soapenv:Envelope>");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_account_fixture),
        cmocka_unit_test(test_two_notifications_nil_session),
        cmocka_unit_test(test_nested_field_becomes_table),
        cmocka_unit_test(test_refuses_doctype_and_entities),
        cmocka_unit_test(test_refuses_bad_shape),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_session_redacted_with_entities),
        cmocka_unit_test(test_org_matches),
        cmocka_unit_test(test_ack_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
