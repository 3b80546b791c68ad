/*
 * fuzz_didww: what hookline reads from DIDWW's answers (src/jsonapi.c, used by
 * src/delivery.c on didww_client responses): JSON:API error documents
 * (jsonapi_errors), a DID resource as the before-state (jsonapi_did_state), a DID
 * list searched by number (jsonapi_find_did), the no-op decision of a planned
 * PATCH against that state (jsonapi_patch_is_noop), the DID id put into a
 * planned body (jsonapi_with_did_id), and the Retry-After header
 * (backoff_retry_after_ms).
 *
 * Input: RESPONSE_BODY [-- PLANNED_PATCH [-- NUMBER_DIGITS [-- RETRY_AFTER]]],
 * parts separated by "\n--\n"; absent parts take realistic defaults.
 * Invariants: no crash, leak or UB; errors is an array of at most 10 objects whose
 * strings are at most 300 bytes and encode as JSON; a found DID id fits its buffer;
 * a DID state is an object; Retry-After is -1 or a delay >= 0.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "fuzz_util.h"
#include "jsonapi.h"

#define FUZZ_NOW 1764000000

static const char *const default_patches[] = {
    "{\"data\":{\"type\":\"dids\",\"id\":\"number:4371234567\",\"relationships\":"
    "{\"voice_in_trunk\":{\"data\":{\"type\":\"voice_in_trunks\","
    "\"id\":\"7c3e9a62-1f0b-4d9e-8d57-0c2b2f0e5a11\"}}}}}",
    "{\"data\":{\"type\":\"dids\",\"id\":\"f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c\","
    "\"attributes\":{\"description\":\"Vienna support line\",\"capacity_limit\":10},"
    "\"relationships\":{\"trunk_group\":{\"data\":null}}}}",
    NULL};

static void check_errors(json_t *errs)
{
    fuzz_check(json_is_array(errs), "jsonapi_errors did not return an array");
    fuzz_check(json_array_size(errs) <= 10, "more than 10 errors kept");
    size_t i;
    json_t *e;
    json_array_foreach(errs, i, e)
    {
        fuzz_check(json_is_object(e), "error %zu is no object", i);
        const char *k;
        json_t *v;
        json_object_foreach(e, k, v)
        {
            if (json_is_string(v))
                fuzz_check(json_string_length(v) <= 300, "error %zu.%s longer than 300", i, k);
        }
    }
    char *text = json_dumps(errs, JSON_COMPACT);
    fuzz_check(text != NULL, "the condensed errors do not encode");
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_part parts[4];
    fuzz_split(data, size, parts, 4);
    /* didww_client hands over a NUL-terminated body with its length */
    char *body = fuzz_strndup(parts[0].p, parts[0].n);
    size_t len = parts[0].n;
    char why[256], id[128];

    json_t *errs = jsonapi_errors(body, len);
    check_errors(errs);
    json_decref(errs);

    char *digits = parts[2].present ? fuzz_strndup(parts[2].p, parts[2].n)
                                    : fuzz_strndup((const uint8_t *)"4371234567", 10);
    memset(id, 'x', sizeof id);
    int found = jsonapi_find_did(body, len, digits, id, sizeof id, why, sizeof why);
    fuzz_check(found >= -1 && found <= 1, "jsonapi_find_did returned %d", found);
    if (found == 1)
        fuzz_check(memchr(id, '\0', sizeof id) != NULL, "found id not terminated");

    json_t *state = jsonapi_did_state(body, len, why, sizeof why);
    if (state) {
        fuzz_check(json_is_object(state), "DID state is no object");
        for (size_t i = 0; default_patches[i]; i++)
            (void)jsonapi_patch_is_noop(default_patches[i], state);
        (void)jsonapi_patch_is_noop(body, state);
    }
    char *patch = NULL;
    if (parts[1].present) {
        patch = fuzz_strndup(parts[1].p, parts[1].n);
        if (state)
            (void)jsonapi_patch_is_noop(patch, state);
        free(jsonapi_with_did_id(patch, found == 1 ? id : "f10d40c7"));
    }
    free(jsonapi_with_did_id(body, "f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c"));
    json_decref(state);

    if (parts[3].present) {
        char *ra = fuzz_strndup(parts[3].p, parts[3].n);
        int64_t ms = backoff_retry_after_ms(ra, FUZZ_NOW);
        fuzz_check(ms >= -1, "Retry-After %s gave %lld", ra, (long long)ms);
        free(ra);
    }
    free(patch);
    free(digits);
    free(body);
    return 0;
}
