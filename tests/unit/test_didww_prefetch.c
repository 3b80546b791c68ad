/*
 * test_didww_prefetch: the batched-read cache: list paths, paging across a page
 * boundary (meta.total_records), a DID missing from the answer, a number that
 * resolves to nothing, a 429 on a page, states served once and only while fresh.
 * The "server" is a function answering from a fixed set of DIDs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "didww_prefetch.h"

#define IDS_N 7

/* A fake DIDWW list endpoint over DIDs d0..d6 (numbers 4410..4416), pages of the asked
 * size; fail_page answers 429 on that page. Records the paths it saw. */
struct fake {
    int fail_page;
    int calls;
    char paths[8][8192];
};

static const char *arg(const char *path, const char *name, char *out, size_t len)
{
    const char *p = strstr(path, name);
    if (!p)
        return NULL;
    p += strlen(name);
    size_t n = strcspn(p, "&");
    snprintf(out, len, "%.*s", (int)n, p);
    return out;
}

static bool listed(const char *list, const char *v)
{
    char buf[8192];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *s = buf, *next; s; s = next) {
        next = strchr(s, ',');
        if (next)
            *next++ = '\0';
        if (strcmp(s, v) == 0)
            return true;
    }
    return false;
}

static int fake_send(void *ctx, const char *path, struct didww_response *resp)
{
    struct fake *f = ctx;
    memset(resp, 0, sizeof *resp);
    snprintf(f->paths[f->calls % 8], sizeof f->paths[0], "%s", path);
    f->calls++;
    char ids[8192] = "", nums[8192] = "", size[16] = "100", page[16] = "1";
    bool by_id = arg(path, "filter[id]=", ids, sizeof ids) != NULL;
    arg(path, "filter[number]=", nums, sizeof nums);
    arg(path, "page[size]=", size, sizeof size);
    arg(path, "page[number]=", page, sizeof page);
    long sz = strtol(size, NULL, 10), pg = strtol(page, NULL, 10);
    if (pg == f->fail_page) {
        resp->status = 429;
        snprintf(resp->retry_after, sizeof resp->retry_after, "2");
        return 0;
    }
    json_t *all = json_array();
    for (int i = 0; i < IDS_N; i++) {
        char id[8], num[8];
        snprintf(id, sizeof id, "d%d", i);
        snprintf(num, sizeof num, "441%d", i);
        if (by_id ? !listed(ids, id) : !listed(nums, num))
            continue;
        json_array_append_new(
            all, json_pack("{s:s, s:s, s:{s:s, s:n}, s:{s:{s:{s:s, s:s}}, s:{s:n}}}", "type",
                           "dids", "id", id, "attributes", "number", num, "description",
                           "relationships", "voice_in_trunk", "data", "type", "voice_in_trunks",
                           "id", "t1", "voice_in_trunk_group", "data"));
    }
    json_t *data = json_array();
    for (long i = (pg - 1) * sz; i < (long)json_array_size(all) && i < pg * sz; i++)
        json_array_append(data, json_array_get(all, (size_t)i));
    json_t *doc = json_pack("{s:o, s:{s:i}}", "data", data, "meta", "total_records",
                            (int)json_array_size(all));
    json_decref(all);
    resp->status = 200;
    resp->body = json_dumps(doc, JSON_COMPACT);
    resp->body_len = strlen(resp->body);
    json_decref(doc);
    return 0;
}

static void test_path(void **state)
{
    (void)state;
    const char *v[] = {"a", "b", "c"};
    char out[256];
    assert_true(didww_prefetch_path("id", v, 3, "voice_in_trunk,voice_in_trunk_group", 100, 1, out,
                                    sizeof out));
    assert_string_equal(out, "/v3/dids?filter[id]=a,b,c&include=voice_in_trunk,voice_in_trunk_"
                             "group&page[size]=100&page[number]=1");
    char tiny[20];
    assert_false(didww_prefetch_path("id", v, 3, NULL, 100, 1, tiny, sizeof tiny));
}

static void test_pages_missing_and_fresh(void **state)
{
    (void)state;
    struct fake f = {.fail_page = 0};
    struct didww_prefetch *p = didww_prefetch_create(10.0);
    /* d0..d6 asked plus one the account does not have, pages of 3: 3 requests. */
    const char *v[] = {"d0", "d1", "d2", "d3", "d4", "d5", "d6", "gone"};
    struct didww_response failed;
    int sent =
        didww_prefetch_fetch(p, "id", v, 8, "voice_in_trunk", 3, 100.0, fake_send, &f, &failed);
    assert_int_equal(sent, 3);
    assert_int_equal(f.calls, 3);
    assert_non_null(strstr(f.paths[2], "page[size]=3&page[number]=3"));
    /* Every DID, the ones past the page boundary too, with its relationships. */
    for (int i = 0; i < IDS_N; i++) {
        char id[8];
        snprintf(id, sizeof id, "d%d", i);
        json_t *st = didww_prefetch_take(p, id, 105.0);
        assert_non_null(st);
        assert_string_equal(json_string_value(json_object_get(st, "trunk")), "t1");
        assert_true(json_is_null(json_object_get(st, "trunk_group")));
        json_decref(st);
        /* Served once: the next job for that DID reads it singly. */
        assert_null(didww_prefetch_take(p, id, 105.0));
    }
    /* Missing from the answer: nothing to serve, the single read decides. */
    assert_null(didww_prefetch_take(p, "gone", 105.0));
    didww_prefetch_destroy(p);
}

static void test_stale(void **state)
{
    (void)state;
    struct fake f = {0};
    struct didww_prefetch *p = didww_prefetch_create(10.0);
    const char *v[] = {"d0", "d1"};
    struct didww_response failed;
    assert_int_equal(didww_prefetch_fetch(p, "id", v, 2, NULL, 100, 100.0, fake_send, &f, &failed),
                     1);
    json_t *st = didww_prefetch_take(p, "d0", 110.0);
    assert_non_null(st); /* exactly max_age old: still served */
    json_decref(st);
    assert_null(didww_prefetch_take(p, "d1", 110.5)); /* older: read again */
    char did[40];
    assert_int_equal(didww_prefetch_number(p, "4410", 111.0, did, sizeof did), -1);
    didww_prefetch_clear(p);
    assert_int_equal(didww_prefetch_number(p, "4410", 100.0, did, sizeof did), -1);
    didww_prefetch_destroy(p);
}

static void test_numbers(void **state)
{
    (void)state;
    struct fake f = {0};
    struct didww_prefetch *p = didww_prefetch_create(10.0);
    const char *v[] = {"4411", "4999", "4415"};
    struct didww_response failed;
    assert_int_equal(
        didww_prefetch_fetch(p, "number", v, 3, NULL, 100, 50.0, fake_send, &f, &failed), 1);
    char did[40];
    assert_int_equal(didww_prefetch_number(p, "4411", 51.0, did, sizeof did), 1);
    assert_string_equal(did, "d1");
    /* The resolution answer doubles as the no-op read. */
    json_t *st = didww_prefetch_take(p, did, 51.0);
    assert_non_null(st);
    assert_string_equal(json_string_value(json_object_get(st, "number")), "4411");
    json_decref(st);
    /* A number that resolves to nothing, known from the complete answer. */
    assert_int_equal(didww_prefetch_number(p, "4999", 51.0, did, sizeof did), 0);
    assert_int_equal(didww_prefetch_number(p, "+4999", 51.0, did, sizeof did), 0);
    assert_int_equal(didww_prefetch_number(p, "+4415", 51.0, did, sizeof did), 1);
    assert_string_equal(did, "d5");
    /* Never asked: unknown. */
    assert_int_equal(didww_prefetch_number(p, "4412", 51.0, did, sizeof did), -1);
    didww_prefetch_destroy(p);
}

static void test_429_on_second_page(void **state)
{
    (void)state;
    struct fake f = {.fail_page = 2};
    struct didww_prefetch *p = didww_prefetch_create(10.0);
    const char *v[] = {"4410", "4411", "4412", "4413"};
    struct didww_response failed;
    assert_int_equal(didww_prefetch_fetch(p, "number", v, 4, NULL, 2, 1.0, fake_send, &f, &failed),
                     -1);
    assert_int_equal(failed.status, 429);
    assert_string_equal(failed.retry_after, "2");
    didww_response_free(&failed);
    char did[40];
    /* The first page stays; the numbers past it are not declared absent. */
    assert_int_equal(didww_prefetch_number(p, "4411", 1.0, did, sizeof did), 1);
    assert_int_equal(didww_prefetch_number(p, "4413", 1.0, did, sizeof did), -1);
    didww_prefetch_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_pages_missing_and_fresh),
        cmocka_unit_test(test_stale),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_429_on_second_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
