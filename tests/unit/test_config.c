/*
 * test_config: config loading as an operator meets it: defaults, relative
 * paths, env:/file: secrets, and one precise line per problem, all of them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "test_util.h"

static char dir[512];

static struct config *load(const char *text, struct config_diags *d)
{
    char path[700];
    test_write_file(dir, "c.json", text, path, sizeof path);
    return config_load(path, d);
}

/* True when some diagnostic contains needle (and, if line > 0, is on that line). */
static int has_diag(const struct config_diags *d, const char *needle, int line, int warning)
{
    for (size_t i = 0; i < d->n; i++)
        if (strstr(d->items[i].msg, needle) && (line <= 0 || d->items[i].line == line) &&
            d->items[i].warning == warning)
            return 1;
    return 0;
}

static void test_minimal_defaults(void **state)
{
    struct config_diags d = {0};
    struct config *c = load("{\"sources\": {\"a\": {\"verify\": {\"scheme\": \"none\", "
                            "\"insecure\": true}}}}",
                            &d);
    assert_non_null(c);
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 8080);
    assert_int_equal(c->max_body_bytes, 1048576);
    assert_string_equal(c->didww_api_version, "2026-04-16"); /* what DIDWW's SDKs send */
    assert_int_equal(c->didww_rate_limit_per_s, 20);
    assert_int_equal(c->delivery_workers, 4);
    assert_int_equal(c->sources[0].dedupe_window_s, 604800);
    /* sqlite path relative to the config file's directory */
    char want[700];
    snprintf(want, sizeof want, "%s/var/hookline.db", dir);
    char *real = realpath(dir, NULL);
    snprintf(want, sizeof want, "%s/var/hookline.db", real);
    free(real);
    assert_string_equal(c->store_sqlite_path, want);
    assert_true(has_diag(&d, "insecure", 0, 1));
    config_free(c);
    config_diags_free(&d);
}

static void test_unknown_keys_named_with_line(void **state)
{
    struct config_diags d = {0};
    struct config *c =
        load("{\n"
             "  \"listen\": {\"port\": 80, \"prot\": 1},\n"
             "  \"sources\": {\n"
             "    \"zd\": {\"verify\": {\"scheme\": \"token\", \"header\": \"X-T\",\n"
             "                        \"secret\": \"abcdefgh\", \"schem\": 1}}\n"
             "  },\n"
             "  \"extra\": true\n"
             "}\n",
             &d);
    assert_null(c);
    assert_true(has_diag(&d, "listen.prot: unknown key", 2, 0));
    assert_true(has_diag(&d, "sources.zd.verify.schem: unknown key", 5, 0));
    assert_true(has_diag(&d, "extra: unknown key", 7, 0));
    config_diags_free(&d);
}

static void test_types_and_ranges(void **state)
{
    struct config_diags d = {0};
    struct config *c = load("{\"listen\": {\"port\": \"80\", \"max_body_bytes\": 0},"
                            " \"delivery\": {\"workers\": 1000},"
                            " \"didww\": {\"api_version\": \"1999-01-01\"},"
                            " \"log\": {\"level\": \"loud\"}}",
                            &d);
    assert_null(c);
    assert_true(has_diag(&d, "listen.port: must be an integer", 0, 0));
    assert_true(has_diag(&d, "listen.max_body_bytes: must be between 1 and", 0, 0));
    assert_true(has_diag(&d, "delivery.workers: must be between 1 and 64, got 1000", 0, 0));
    assert_true(has_diag(&d, "didww.api_version: unsupported version 1999-01-01", 0, 0));
    assert_true(has_diag(&d, "log.level: must be debug, info, warn or error", 0, 0));
    config_diags_free(&d);
}

static void test_instance_id(void **state)
{
    struct config_diags d = {0};
    (void)state;
    struct config *c = load("{\"instance\": {\"id\": \"hl-a.eu_1:7\"}}", &d);
    assert_non_null(c);
    assert_string_equal(c->instance_id, "hl-a.eu_1:7");
    config_free(c);
    config_diags_free(&d);
    c = load("{}", &d);
    assert_non_null(c);
    assert_null(c->instance_id); /* serve uses HOSTNAME-PID */
    config_free(c);
    config_diags_free(&d);
    c = load("{\"instance\": {\"id\": \"has space\", \"name\": 1}}", &d);
    assert_null(c);
    assert_true(has_diag(&d, "instance.id: must be 1 to 64 characters", 0, 0));
    assert_true(has_diag(&d, "instance.name: unknown key", 0, 0));
    config_diags_free(&d);
}

static void test_env_and_file_secrets(void **state)
{
    char sec[700];
    struct config_diags d = {0};
    test_write_file(dir, "secret.txt", "from-file-secret-1\nsecond line\n", sec, sizeof sec);
    setenv("HL_TEST_TOKEN", "from-env-secret-1", 1);
    unsetenv("HL_TEST_MISSING");
    struct config *c = load("{\"sources\": {"
                            " \"a\": {\"verify\": {\"scheme\": \"token\", \"header\": \"X-T\","
                            "        \"secrets\": [\"env:HL_TEST_TOKEN\", \"file:secret.txt\"]}}}}",
                            &d);
    assert_non_null(c);
    assert_int_equal(c->sources[0].verify.nsecrets, 2);
    assert_memory_equal(c->sources[0].verify.secrets[0].bytes, "from-env-secret-1", 17);
    assert_int_equal(c->sources[0].verify.secrets[1].len, 18);
    assert_memory_equal(c->sources[0].verify.secrets[1].bytes, "from-file-secret-1", 18);
    config_free(c);
    config_diags_free(&d);

    c = load("{\"sources\": {\"a\": {\"verify\": {\"scheme\": \"token\", \"header\": \"X-T\","
             " \"secret\": \"env:HL_TEST_MISSING\"}},"
             " \"b\": {\"verify\": {\"scheme\": \"token\", \"header\": \"X-T\","
             " \"secret\": \"file:nope.txt\"}}}}",
             &d);
    assert_null(c);
    assert_true(has_diag(
        &d, "sources.a.verify.secret: environment variable HL_TEST_MISSING is not set", 0, 0));
    assert_true(has_diag(&d, "sources.b.verify.secret: cannot read secret file", 0, 0));
    /* every problem is listed, not only the first */
    assert_int_equal(d.n, 2);
    config_diags_free(&d);
}

static void test_literal_secret_warns_but_loads(void **state)
{
    struct config_diags d = {0};
    struct config *c = load("{\"sources\": {\"a\": {\"verify\": {\"scheme\": \"basic\","
                            " \"username\": \"u\", \"password\": \"literal-pass\"}}}}",
                            &d);
    assert_non_null(c);
    assert_true(has_diag(&d, "literal secret", 0, 1));
    for (size_t i = 0; i < d.n; i++)
        assert_null(strstr(d.items[i].msg, "literal-pass"));
    config_free(c);
    config_diags_free(&d);
}

/* ---- secret files: permissions and whitespace (issue 11, item 7) ---- */

static struct config *load_mode(const char *text, mode_t mode, struct config_diags *d)
{
    char path[700];
    test_write_file(dir, "c.json", text, path, sizeof path);
    assert_int_equal(chmod(path, mode), 0);
    return config_load(path, d);
}

static void write_secret(const char *name, const char *text, mode_t mode)
{
    char path[700];
    test_write_file(dir, name, text, path, sizeof path);
    assert_int_equal(chmod(path, mode), 0);
}

/* Counts the diagnostics that contain needle (any kind). */
static size_t count_diag(const struct config_diags *d, const char *needle)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n; i++)
        if (strstr(d->items[i].msg, needle))
            n++;
    return n;
}

static void test_secret_file_trailing_whitespace_stripped(void **state)
{
    struct config_diags d = {0};
    write_secret("sp.txt", "tok-space-1  \t \r\nsecond line\n", 0600);
    write_secret("tab.txt", "tok-tab-22\t\n", 0600);
    write_secret("nonl.txt", "tok-no-newline-3 ", 0600);
    struct config *c =
        load_mode("{\"sources\": {\"a\": {\"verify\": {\"scheme\": \"token\", \"header\": \"X-T\","
                  " \"secrets\": [\"file:sp.txt\", \"file:tab.txt\", \"file:nonl.txt\"]}}}}",
                  0600, &d);
    assert_non_null(c);
    const struct verify_config *v = &c->sources[0].verify;
    assert_int_equal(v->nsecrets, 3);
    assert_int_equal(v->secrets[0].len, 11);
    assert_memory_equal(v->secrets[0].bytes, "tok-space-1", 11);
    assert_int_equal(v->secrets[1].len, 10);
    assert_memory_equal(v->secrets[1].bytes, "tok-tab-22", 10);
    assert_int_equal(v->secrets[2].len, 16);
    assert_memory_equal(v->secrets[2].bytes, "tok-no-newline-3", 16);
    assert_int_equal(d.n, 0);
    config_free(c);
    config_diags_free(&d);
}

static void test_secret_file_only_whitespace_is_an_error(void **state)
{
    struct config_diags d = {0};
    write_secret("blank.txt", " \t \r\nthe-second-line\n", 0600);
    struct config *c = load_mode("{\"sources\": {\"a\": {\"verify\": {\"scheme\": \"token\","
                                 " \"header\": \"X-T\", \"secret\": \"file:blank.txt\"}}}}",
                                 0600, &d);
    assert_null(c);
    assert_true(has_diag(&d, "sources.a.verify.secret: secret file ", 0, 0));
    assert_true(has_diag(&d, "blank.txt", 0, 0));
    assert_int_equal(count_diag(&d, "the-second-line"), 0);
    config_diags_free(&d);
}

static void test_secret_file_readable_by_others_warns(void **state)
{
    struct config_diags d = {0};
    write_secret("s644.txt", "SecretValue-file-644\n", 0644);
    write_secret("s640.txt", "SecretValue-file-640\n", 0640);
    write_secret("s604.txt", "SecretValue-file-604\n", 0604);
    write_secret("s666.txt", "SecretValue-file-666\n", 0666);
    write_secret("s600.txt", "SecretValue-file-600\n", 0600);
    write_secret("s400.txt", "SecretValue-file-400\n", 0400);
    struct config *c =
        load_mode("{\"sources\": {\"a\": {\"verify\": {\"scheme\": \"token\", \"header\": \"X-T\","
                  " \"secrets\": [\"file:s644.txt\", \"file:s640.txt\", \"file:s604.txt\","
                  " \"file:s666.txt\", \"file:s600.txt\", \"file:s400.txt\"]}}},"
                  " \"admin\": {\"token\": \"file:s644.txt\"}}",
                  0644, &d);
    assert_non_null(c); /* a warning, not an error */
    assert_true(has_diag(&d,
                         "sources.a.verify.secrets[0]: secret file s644.txt is readable by group "
                         "and others (mode 0644): chmod 600 it",
                         0, 1));
    assert_true(has_diag(&d, "secret file s640.txt is readable by group (mode 0640)", 0, 1));
    assert_true(has_diag(&d, "secret file s604.txt is readable by others (mode 0604)", 0, 1));
    assert_true(
        has_diag(&d, "secret file s666.txt is readable by group and others (mode 0666)", 0, 1));
    assert_true(has_diag(&d, "admin.token: secret file s644.txt is readable", 0, 1));
    assert_int_equal(count_diag(&d, "s600.txt"), 0);
    assert_int_equal(count_diag(&d, "s400.txt"), 0);
    assert_int_equal(count_diag(&d, "readable"), 5);
    /* no literal secret in the config: its own mode 0644 is no concern */
    assert_int_equal(d.n, 5);
    assert_int_equal(count_diag(&d, "SecretValue"), 0);
    config_free(c);
    config_diags_free(&d);
}

static void test_config_with_literal_secret_readable_warns(void **state)
{
    static const char text[] = "{\"sources\": {\"a\": {\"verify\": {\"scheme\": \"basic\","
                               " \"username\": \"u\", \"password\": \"literal-pass-Qz7\"}}}}";
    struct config_diags d = {0};
    struct config *c = load_mode(text, 0644, &d);
    assert_non_null(c);
    assert_true(has_diag(&d, "literal secret", 0, 1));
    assert_true(has_diag(&d, "readable by group and others (mode 0644): chmod 600 it", 0, 1));
    assert_int_equal(d.n, 2);
    assert_int_equal(count_diag(&d, "literal-pass-Qz7"), 0);
    config_free(c);
    config_diags_free(&d);

    c = load_mode(text, 0640, &d);
    assert_non_null(c);
    assert_true(has_diag(&d, "readable by group (mode 0640)", 0, 1));
    assert_int_equal(d.n, 2);
    config_free(c);
    config_diags_free(&d);

    c = load_mode(text, 0600, &d);
    assert_non_null(c);
    assert_true(has_diag(&d, "literal secret", 0, 1));
    assert_int_equal(count_diag(&d, "readable"), 0);
    assert_int_equal(d.n, 1);
    config_free(c);
    config_diags_free(&d);

    /* secrets not resolved (audit readers): no literal, no permission warning */
    char path[700];
    snprintf(path, sizeof path, "%s/c.json", dir);
    assert_int_equal(chmod(path, 0644), 0);
    c = config_load_opts(path, CONFIG_LOAD_NO_SECRETS, &d);
    assert_non_null(c);
    assert_int_equal(count_diag(&d, "readable"), 0);
    config_free(c);
    config_diags_free(&d);
}

static void test_verify_block_errors(void **state)
{
    struct config_diags d = {0};
    struct config *c =
        load("{\"sources\": {"
             " \"a\": {\"verify\": {\"scheme\": \"magic\", \"secret\": \"x1234567\"}},"
             " \"b\": {\"verify\": {\"scheme\": \"none\"}},"
             " \"c\": {\"verify\": {\"scheme\": \"hmac\", \"secret\": \"x1234567\"}},"
             " \"d e\": {\"verify\": {\"scheme\": \"none\", \"insecure\": true}},"
             " \"f\": {\"verify\": {\"scheme\": \"none\", \"insecure\": true},"
             "        \"event_id\": \"cookie:x\"}}}",
             &d);
    assert_null(c);
    assert_true(has_diag(&d, "sources.a.verify.scheme: unknown scheme \"magic\"", 0, 0));
    assert_true(has_diag(&d, "sources.b.verify", 0, 0));
    assert_true(has_diag(&d, "insecure", 0, 0));
    assert_true(has_diag(&d, "sources.c.verify", 0, 0));
    assert_true(has_diag(&d, "header", 0, 0));
    assert_true(has_diag(&d, "sources.d e: source names are", 0, 0));
    assert_true(has_diag(&d, "sources.f.event_id: must be", 0, 0));
    config_diags_free(&d);
}

static void test_sender_keys(void **state)
{
    struct config_diags d = {0};
    setenv("HL_T_SECRET", "sender-test-secret-1", 1);
    struct config *c = load(
        "{\"sources\": {"
        " \"hs\": {\"verify\": {\"scheme\": \"hubspot-v3\", \"secret\": \"env:HL_T_SECRET\","
        "                       \"trust_forwarded\": true}},"
        " \"hs1\": {\"verify\": {\"scheme\": \"hubspot-v1\", \"secret\": \"env:HL_T_SECRET\"}},"
        " \"hs2\": {\"verify\": {\"scheme\": \"hubspot-v2\", \"secret\": \"env:HL_T_SECRET\"}},"
        " \"tok\": {\"verify\": {\"scheme\": \"token\", \"query\": \"t\","
        "                        \"secret\": \"env:HL_T_SECRET\", \"trust_forwarded\": true}},"
        " \"sf\": {\"format\": \"salesforce-outbound\", \"organization_id\": \"00D5g000004ElSm\","
        "          \"verify\": {\"scheme\": \"token\", \"query\": \"token\","
        "                       \"secret\": \"env:HL_T_SECRET\"}}}}",
        &d);
    (void)state;
    if (!c)
        for (size_t i = 0; i < d.n; i++)
            print_message("%s\n", d.items[i].msg);
    assert_non_null(c);
    assert_int_equal(config_find_source(c, "hs")->verify.scheme, VERIFY_SCHEME_HUBSPOT_V3);
    assert_true(config_find_source(c, "hs")->verify.trust_forwarded);
    assert_int_equal(config_find_source(c, "hs")->verify.tolerance_s, 300);
    assert_int_equal(config_find_source(c, "hs")->format, CONFIG_FORMAT_WEBHOOK);
    assert_int_equal(config_find_source(c, "hs1")->verify.scheme, VERIFY_SCHEME_HUBSPOT_V1);
    assert_false(config_find_source(c, "hs1")->verify.trust_forwarded);
    assert_int_equal(config_find_source(c, "hs2")->verify.scheme, VERIFY_SCHEME_HUBSPOT_V2);
    assert_int_equal(config_find_source(c, "sf")->format, CONFIG_FORMAT_SALESFORCE_OUTBOUND);
    assert_string_equal(config_find_source(c, "sf")->organization_id, "00D5g000004ElSm");
    assert_true(has_diag(&d, "sources.tok.verify.trust_forwarded: has no effect", 0, 1));
    assert_false(has_diag(&d, "sources.hs.verify.trust_forwarded", 0, 1));
    config_free(c);
    config_diags_free(&d);

    c = load(
        "{\"sources\": {"
        " \"a\": {\"format\": \"salesforce-outbound\","
        "         \"verify\": {\"scheme\": \"none\", \"insecure\": true}},"
        " \"b\": {\"format\": \"salesforce-outbound\", \"organization_id\": \"00D-bad\","
        "         \"verify\": {\"scheme\": \"none\", \"insecure\": true}},"
        " \"c\": {\"format\": \"soap\", \"verify\": {\"scheme\": \"none\", \"insecure\": true}},"
        " \"d\": {\"organization_id\": \"00D5g000004ElSm\","
        "         \"verify\": {\"scheme\": \"none\", \"insecure\": true}},"
        " \"e\": {\"verify\": {\"scheme\": \"hubspot-v3\"}},"
        " \"f\": {\"verify\": {\"scheme\": \"hubspot-v2\", \"secret\": \"env:HL_T_SECRET\","
        "                      \"trust_forwarded\": \"yes\"}}}}",
        &d);
    assert_null(c);
    assert_true(has_diag(&d, "sources.a.organization_id: is required for format", 0, 0));
    assert_true(
        has_diag(&d, "sources.b.organization_id: must be a Salesforce organization id", 0, 0));
    assert_true(
        has_diag(&d, "sources.c.format: must be \"webhook\" or \"salesforce-outbound\"", 0, 0));
    assert_true(has_diag(&d, "sources.d.organization_id: is only used with", 0, 0));
    assert_true(
        has_diag(&d, "sources.e.verify: verify.secret is required for scheme hubspot-v3", 0, 0));
    assert_true(has_diag(&d, "sources.f.verify.trust_forwarded", 0, 0));
    config_diags_free(&d);
}

static void test_invalid_json_has_line(void **state)
{
    struct config_diags d = {0};
    struct config *c = load("{\n  \"listen\": {\n    \"port\": 80,\n  }\n}\n", &d);
    assert_null(c);
    assert_int_equal(d.n, 1);
    assert_true(strstr(d.items[0].msg, "invalid JSON") != NULL);
    assert_int_equal(d.items[0].line, 4);
    config_diags_free(&d);
}

static void test_duplicate_keys_rejected(void **state)
{
    struct config_diags d = {0};
    struct config *c =
        load("{\"log\": {\"level\": \"info\"}, \"log\": {\"level\": \"debug\"}}", &d);
    assert_null(c);
    assert_true(has_diag(&d, "duplicate", 0, 0));
    config_diags_free(&d);
}

static void test_event_id_forms(void **state)
{
    struct config_diags d = {0};
    struct config *c = load("{\"sources\": {"
                            " \"h\": {\"verify\": {\"scheme\": \"none\", \"insecure\": true},"
                            "        \"event_id\": \"header:X-Request-Id\"},"
                            " \"j\": {\"verify\": {\"scheme\": \"none\", \"insecure\": true},"
                            "        \"event_id\": \"json:/ticket/id\", \"dedupe_window_s\": 60},"
                            " \"b\": {\"verify\": {\"scheme\": \"none\", \"insecure\": true},"
                            "        \"event_id\": \"body-sha256\"}}}",
                            &d);
    assert_non_null(c);
    const struct config_source *h = config_find_source(c, "h");
    const struct config_source *j = config_find_source(c, "j");
    const struct config_source *b = config_find_source(c, "b");
    assert_int_equal(h->event_id, CONFIG_EVENT_ID_HEADER);
    assert_string_equal(h->event_id_arg, "x-request-id");
    assert_int_equal(j->event_id, CONFIG_EVENT_ID_JSON);
    assert_string_equal(j->event_id_arg, "/ticket/id");
    assert_int_equal(j->dedupe_window_s, 60);
    assert_int_equal(b->event_id, CONFIG_EVENT_ID_BODY_SHA256);
    assert_null(config_find_source(c, "zz"));
    config_free(c);
    config_diags_free(&d);
}

static void test_load_text_from_memory(void **state)
{
    struct config_diags d = {0};
    static const char text[] = "{\"store\": {\"url\": \"sqlite:var/m.db\"},"
                               " \"sources\": {\"a\": {\"verify\": {\"scheme\": \"none\","
                               " \"insecure\": true}}}}TRAILING";
    /* the length excludes "TRAILING": the text need not be NUL-terminated */
    struct config *c = config_load_text("mem.json", "/srv/hl", text, sizeof text - 1 - 8, 0, &d);
    assert_non_null(c);
    assert_string_equal(c->path, "mem.json");
    assert_string_equal(c->store_sqlite_path, "/srv/hl/var/m.db");
    assert_int_equal(c->nsources, 1);
    config_free(c);
    config_diags_free(&d);

    c = config_load_text(NULL, NULL, "{\"listen\": {\"port\": \"x\"}}", 25, 0, &d);
    assert_null(c);
    assert_true(has_diag(&d, "listen.port: must be an integer", 1, 0));
    config_diags_free(&d);
}

static void test_durations(void **state)
{
    int64_t s;
    assert_int_equal(config_parse_duration("15m", &s), 0);
    assert_int_equal(s, 900);
    assert_int_equal(config_parse_duration("2h", &s), 0);
    assert_int_equal(s, 7200);
    assert_int_equal(config_parse_duration("7d", &s), 0);
    assert_int_equal(s, 604800);
    assert_int_equal(config_parse_duration("7", &s), -1);
    assert_int_equal(config_parse_duration("-1m", &s), -1);
    assert_int_equal(config_parse_duration("1w", &s), -1);
}

/* Every released DIDWW version loads; 2026-11-19 finds its token endpoint. */
static void test_didww_versions_and_auth_url(void **state)
{
    static const char *const versions[] = {"2017-09-18", "2021-04-19", "2021-12-15",
                                           "2022-05-10", "2026-04-16", "2026-11-19"};
    char text[512];
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        struct config_diags d = {0};
        snprintf(text, sizeof text,
                 "{\"sources\": {\"a\": {\"verify\": {\"scheme\": \"none\", \"insecure\": "
                 "true}}}, \"didww\": {\"api_version\": \"%s\", "
                 "\"base_url\": \"https://api.didww.com/v3\"}}",
                 versions[i]);
        struct config *c = load(text, &d);
        assert_non_null(c);
        assert_string_equal(c->didww_api_version, versions[i]);
        assert_string_equal(c->didww_auth_url, "https://auth.didww.com/token");
        assert_int_equal(c->didww_token_expires_in, 900);
        config_free(c);
        config_diags_free(&d);
    }
    struct config_diags d = {0};
    struct config *c = load("{\"sources\": {\"a\": {\"verify\": {\"scheme\": \"none\", "
                            "\"insecure\": true}}}, \"didww\": {\"api_version\": \"2026-11-19\"}}",
                            &d);
    assert_non_null(c);
    assert_string_equal(c->didww_auth_url, "https://auth-sandbox.didww.com/token");
    config_free(c);
    config_diags_free(&d);
    c = load("{\"sources\": {\"a\": {\"verify\": {\"scheme\": \"none\", \"insecure\": "
             "true}}}, \"didww\": {\"base_url\": \"http://127.0.0.1:9/v3\", "
             "\"token_expires_in\": 120}}",
             &d);
    assert_non_null(c);
    assert_string_equal(c->didww_auth_url, "http://127.0.0.1:9/token");
    assert_int_equal(c->didww_token_expires_in, 120);
    config_free(c);
    config_diags_free(&d);
    c = load("{\"sources\": {\"a\": {\"verify\": {\"scheme\": \"none\", \"insecure\": "
             "true}}}, \"didww\": {\"auth_url\": \"ftp://x/token\", \"token_expires_in\": 30}}",
             &d);
    assert_null(c);
    assert_true(has_diag(&d, "didww.auth_url: must start with https:// or http://", 0, 0));
    assert_true(has_diag(&d, "didww.token_expires_in", 0, 0));
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
        cmocka_unit_test_setup(test_minimal_defaults, setup),
        cmocka_unit_test_setup(test_unknown_keys_named_with_line, setup),
        cmocka_unit_test_setup(test_types_and_ranges, setup),
        cmocka_unit_test_setup(test_instance_id, setup),
        cmocka_unit_test_setup(test_env_and_file_secrets, setup),
        cmocka_unit_test_setup(test_literal_secret_warns_but_loads, setup),
        cmocka_unit_test_setup(test_secret_file_trailing_whitespace_stripped, setup),
        cmocka_unit_test_setup(test_secret_file_only_whitespace_is_an_error, setup),
        cmocka_unit_test_setup(test_secret_file_readable_by_others_warns, setup),
        cmocka_unit_test_setup(test_config_with_literal_secret_readable_warns, setup),
        cmocka_unit_test_setup(test_verify_block_errors, setup),
        cmocka_unit_test_setup(test_sender_keys, setup),
        cmocka_unit_test_setup(test_invalid_json_has_line, setup),
        cmocka_unit_test_setup(test_duplicate_keys_rejected, setup),
        cmocka_unit_test_setup(test_event_id_forms, setup),
        cmocka_unit_test_setup(test_load_text_from_memory, setup),
        cmocka_unit_test(test_durations),
        cmocka_unit_test_setup(test_didww_versions_and_auth_url, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
