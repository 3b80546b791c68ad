/*
 * fuzz_body: the webhook body decoder (ingest_decode_body: jdoc for JSON, the
 * form decoder for application/x-www-form-urlencoded) on hostile bodies, plus
 * what ingest does next with a decoded body: JSON pointer lookups for
 * "event_id": "json:/..." and the conversion to jansson for the rule engine.
 *
 * Input: BODY, optionally followed by "\n--\n" and a JSON pointer to resolve.
 * Invariants beyond "no crash, no leak, no UB":
 *  - a body jdoc accepts, jansson accepts too, and jdoc_to_json equals jansson's
 *    value (same numbers, same strings, last duplicate key wins);
 *  - a string node holds no NUL (JDOC_ALLOW_NUL not given) and len == strlen;
 *  - jdoc_get and jdoc_at find each member and element (the last duplicate key);
 *  - jdoc_from_json(jdoc_to_json(d)) gives the same value back;
 *  - jdoc_utf8_valid calls valid every text jansson or jdoc accepts.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_util.h"
#include "ingest.h"
#include "jdoc.h"

/* Walks every node of d and checks string nodes. */
static void check_nodes(const struct jdoc *d, unsigned flags)
{
    for (size_t i = 0; i < d->nnodes; i++) {
        const struct jdoc_node *n = &d->nodes[i];
        fuzz_check(n->next > i && n->next <= d->nnodes, "node %zu: next %u out of order", i,
                   n->next);
        if (n->type == JDOC_STRING) {
            const char *s = jdoc_str(d, n);
            fuzz_check(s[n->len] == '\0', "string node %zu is not NUL-terminated", i);
            if (!(flags & JDOC_ALLOW_NUL))
                fuzz_check(strlen(s) == n->len, "string node %zu holds a NUL", i);
        }
    }
}

/* Looks up the first members and elements of every container by name and index:
 * each is found, and a member lookup gives the last member of that name. */
static void check_lookups(const struct jdoc *d)
{
    for (size_t i = 0; i < d->nnodes; i++) {
        const struct jdoc_node *c = &d->nodes[i];
        if (c->type == JDOC_OBJECT) {
            const struct jdoc_node *k = c + 1;
            for (uint32_t m = 0; m < c->len && m < 16; m++) {
                const struct jdoc_node *v = k + 1;
                fuzz_check(k->type == JDOC_STRING, "object member %u has no string key", m);
                const struct jdoc_node *got = jdoc_get(d, c, jdoc_str(d, k), k->len);
                fuzz_check(got != NULL && got >= v, "member %u not found by its key", m);
                k = jdoc_skip(d, v);
            }
        } else if (c->type == JDOC_ARRAY) {
            const struct jdoc_node *e = c + 1;
            for (uint32_t m = 0; m < c->len && m < 16; m++) {
                fuzz_check(jdoc_at(d, c, m) == e, "element %u not found at its index", m);
                e = jdoc_skip(d, e);
            }
            fuzz_check(jdoc_at(d, c, c->len) == NULL, "an element past the end");
        }
    }
}

/* Converts d to jansson and back and checks the value survives. Returns the value. */
static json_t *check_round_trip(const struct jdoc *d)
{
    char why[256];
    json_t *v = jdoc_to_json(d, jdoc_root(d));
    fuzz_check(v != NULL, "jdoc_to_json failed");
    struct jdoc *again = jdoc_from_json(v, why, sizeof why);
    fuzz_check(again != NULL, "jdoc_from_json(jdoc_to_json(d)) failed: %s", why);
    json_t *w = jdoc_to_json(again, jdoc_root(again));
    fuzz_check(w && json_equal(v, w), "jdoc_from_json(jdoc_to_json(d)) differs");
    json_decref(w);
    jdoc_free(again);
    return v;
}

static void check_event_id(const struct jdoc *d, const char *ptr, const uint8_t *body, size_t len)
{
    char why[256];
    struct config_source src = {
        .name = "fuzz", .event_id = CONFIG_EVENT_ID_JSON, .event_id_arg = (char *)ptr};
    struct ingest_request req = {.method = "POST", .body = body, .body_len = len};
    char *id = ingest_derive_event_id(&src, &req, d, why, sizeof why);
    free(id);
    src.event_id = CONFIG_EVENT_ID_BODY_SHA256;
    id = ingest_derive_event_id(&src, &req, d, why, sizeof why);
    fuzz_check(id && strlen(id) == 64, "body-sha256 event id is not 64 hex digits");
    free(id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const pointers[] = {"", "/id", "/ticket/id", "/0", "/a~1b", "/~0", NULL};
    char why[256];
    struct fuzz_part parts[2];
    fuzz_split(data, size, parts, 2);
    const uint8_t *body = parts[0].p;
    size_t len = parts[0].n;

    /* JSON, as ingest decodes it */
    struct jdoc *d = ingest_decode_body("application/json", body, len, why, sizeof why);
    json_error_t jerr;
    json_t *j = json_loadb((const char *)body, len, JSON_DECODE_ANY, &jerr);
    size_t bad = 0;
    bool utf8 = jdoc_utf8_valid(body, len, &bad);
    fuzz_check(utf8 || bad < len, "jdoc_utf8_valid: bad offset %zu beyond %zu", bad, len);
    fuzz_check(!j || utf8, "jansson accepted a body that jdoc_utf8_valid calls bad at %zu", bad);
    if (d) {
        fuzz_check(utf8, "jdoc accepted a body that is not UTF-8");
        check_nodes(d, 0);
        check_lookups(d);
        json_t *v = check_round_trip(d);
        fuzz_check(j != NULL, "jdoc accepted what jansson refuses: %s", jerr.text);
        fuzz_check(json_equal(v, j), "jdoc and jansson read the body differently");
        json_decref(v);
        for (size_t i = 0; pointers[i]; i++)
            check_event_id(d, pointers[i], body, len);
        if (parts[1].present) {
            char *ptr = fuzz_strndup(parts[1].p, parts[1].n);
            (void)jdoc_pointer(d, ptr);
            check_event_id(d, ptr, body, len);
            free(ptr);
        }
        jdoc_free(d);
    }
    json_decref(j);

    /* the same text with "\u0000" allowed and a small nesting bound */
    d = jdoc_parse((const char *)body, len, JDOC_ALLOW_NUL, 8, why, sizeof why);
    if (d) {
        fuzz_check(d->depth <= 8, "depth %u beyond the bound 8", d->depth);
        check_nodes(d, JDOC_ALLOW_NUL);
        jdoc_free(d);
    }

    /* a form body */
    d = ingest_decode_body("application/x-www-form-urlencoded; charset=UTF-8", body, len, why,
                           sizeof why);
    if (d) {
        fuzz_check(jdoc_root(d)->type == JDOC_OBJECT, "a form did not decode to an object");
        check_nodes(d, 0);
        json_decref(check_round_trip(d));
        jdoc_free(d);
    }
    return 0;
}
