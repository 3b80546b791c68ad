/*
 * jsonapi: reads what DIDWW answers. It condenses JSON:API error documents for the
 * audit, extracts the before-state of a DID (attributes and to-one relationships, in
 * either naming generation: trunk / trunk_group or voice_in_trunk /
 * voice_in_trunk_group), finds a DID id in a list by number, decides whether a planned
 * PATCH is already satisfied, and puts the resolved DID id into a planned body. Pure
 * functions over jansson values: no I/O, no global state, any thread may call them.
 */
#include "jsonapi.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define JSONAPI_MAX_ERRORS 10
#define JSONAPI_MAX_STRING 300

/* The DID attributes the state carries (copied as they are, null included). */
static const char *const jsonapi_did_attrs[] = {"number",
                                                "description",
                                                "capacity_limit",
                                                "dedicated_channels_count",
                                                "billing_cycles_count",
                                                "terminated",
                                                NULL};

/* To-one relationship names as they appear in a document -> the name in the state. The
 * voice_in_* names come first: when a document had both, the newer generation wins. */
static const char *const jsonapi_did_rels[][2] = {
    {"voice_in_trunk", "trunk"},
    {"trunk", "trunk"},
    {"voice_in_trunk_group", "trunk_group"},
    {"trunk_group", "trunk_group"},
    {"capacity_pool", "capacity_pool"},
    {"shared_capacity_group", "shared_capacity_group"},
};
#define JSONAPI_N_RELS (sizeof jsonapi_did_rels / sizeof jsonapi_did_rels[0])

/* The state key for a relationship name of either generation, or NULL when unknown. */
static const char *jsonapi_rel_key(const char *name)
{
    for (size_t i = 0; i < JSONAPI_N_RELS; i++)
        if (strcmp(jsonapi_did_rels[i][0], name) == 0)
            return jsonapi_did_rels[i][1];
    return NULL;
}

static bool jsonapi_is_did_attr(const char *name)
{
    for (size_t i = 0; jsonapi_did_attrs[i]; i++)
        if (strcmp(jsonapi_did_attrs[i], name) == 0)
            return true;
    return false;
}

static void jsonapi_set_why(char *why, size_t why_len, const char *msg)
{
    if (why && why_len > 0)
        snprintf(why, why_len, "%s", msg);
}

/* Parses body[0..len) as a JSON object; NULL when it is absent, not JSON or not an
 * object. Returns a new reference. */
static json_t *jsonapi_load_object(const char *body, size_t len)
{
    if (!body)
        return NULL;
    json_t *doc = json_loadb(body, len, 0, NULL);
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* A new string of s cut to at most JSONAPI_MAX_STRING bytes, never inside a UTF-8
 * sequence (jansson accepts only valid UTF-8). */
static json_t *jsonapi_cut_string(const char *s, size_t len)
{
    if (len > JSONAPI_MAX_STRING) {
        len = JSONAPI_MAX_STRING;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    return json_stringn(s, len);
}

/* Sets to[key] to value as a cut string: strings as they are,
 * integers in decimal (some servers send "status": 422); anything else is left out. */
static void jsonapi_copy_text(json_t *to, const char *key, const json_t *value)
{
    json_t *s = NULL;

    if (json_is_string(value)) {
        s = jsonapi_cut_string(json_string_value(value), json_string_length(value));
    } else if (json_is_integer(value)) {
        char num[32];
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        s = json_string(num);
    }
    if (s)
        json_object_set_new(to, key, s);
}

json_t *jsonapi_errors(const char *body, size_t len)
{
    json_t *out = json_array();
    json_t *doc = NULL;
    json_t *errors, *e;
    size_t i;

    if (!out)
        return NULL;
    doc = jsonapi_load_object(body, len);
    errors = doc ? json_object_get(doc, "errors") : NULL;
    if (!json_is_array(errors))
        goto done;
    json_array_foreach(errors, i, e)
    {
        if (json_array_size(out) >= JSONAPI_MAX_ERRORS)
            break;
        if (!json_is_object(e))
            continue;
        json_t *item = json_object();
        if (!item)
            break;
        jsonapi_copy_text(item, "status", json_object_get(e, "status"));
        jsonapi_copy_text(item, "code", json_object_get(e, "code"));
        jsonapi_copy_text(item, "title", json_object_get(e, "title"));
        jsonapi_copy_text(item, "detail", json_object_get(e, "detail"));
        json_t *source = json_object_get(e, "source");
        if (json_is_object(source))
            jsonapi_copy_text(item, "pointer", json_object_get(source, "pointer"));
        json_array_append_new(out, item);
    }

done:
    json_decref(doc);
    return out;
}

/* The value a relationship object contributes to the state: json null for
 * "data": null, the id string for "data": {"type", "id"}, NULL (unknown) when the
 * document has no data member or something else. Returns a new reference. */
static json_t *jsonapi_rel_value(const json_t *rel)
{
    json_t *data;

    if (!json_is_object(rel))
        return NULL;
    data = json_object_get(rel, "data");
    if (json_is_null(data))
        return json_null();
    if (json_is_object(data)) {
        json_t *id = json_object_get(data, "id");
        if (json_is_string(id))
            return json_stringn(json_string_value(id), json_string_length(id));
    }
    return NULL;
}

/* The state of one DID resource object (borrowed data), or NULL with why set. */
static json_t *jsonapi_resource_state(const json_t *data, char *why, size_t why_len);

json_t *jsonapi_did_state(const char *body, size_t len, char *why, size_t why_len)
{
    json_t *doc = jsonapi_load_object(body, len);
    if (!doc) {
        jsonapi_set_why(why, why_len, "response is not a JSON object");
        return NULL;
    }
    json_t *state = jsonapi_resource_state(json_object_get(doc, "data"), why, why_len);
    json_decref(doc);
    return state;
}

json_t *jsonapi_did_list_states(const char *body, size_t len, long *total, char *why,
                                size_t why_len)
{
    json_t *doc = jsonapi_load_object(body, len), *out = NULL, *item;
    size_t i;
    if (!doc) {
        jsonapi_set_why(why, why_len, "response is not a JSON object");
        return NULL;
    }
    json_t *data = json_object_get(doc, "data");
    if (!json_is_array(data)) {
        jsonapi_set_why(why, why_len, "response data is not an array");
        goto done;
    }
    json_t *tr = json_object_get(json_object_get(doc, "meta"), "total_records");
    if (total)
        *total = json_is_integer(tr) ? (long)json_integer_value(tr) : -1;
    out = json_array();
    json_array_foreach(data, i, item)
    {
        json_t *state = jsonapi_resource_state(item, why, why_len);
        if (!state) {
            json_decref(out);
            out = NULL;
            goto done;
        }
        json_array_append_new(out, state);
    }
done:
    json_decref(doc);
    return out;
}

static json_t *jsonapi_resource_state(const json_t *data, char *why, size_t why_len)
{
    json_t *state = NULL;
    json_t *type, *id, *attrs, *rels;

    if (!json_is_object(data)) {
        jsonapi_set_why(why, why_len, "response has no data object");
        goto fail;
    }
    type = json_object_get(data, "type");
    id = json_object_get(data, "id");
    if (!json_is_string(type) || strcmp(json_string_value(type), "dids") != 0) {
        jsonapi_set_why(why, why_len, "data.type is not \"dids\"");
        goto fail;
    }
    if (!json_is_string(id) || json_string_length(id) == 0) {
        jsonapi_set_why(why, why_len, "data.id is missing");
        goto fail;
    }
    attrs = json_object_get(data, "attributes");
    rels = json_object_get(data, "relationships");
    if ((attrs && !json_is_object(attrs)) || (rels && !json_is_object(rels))) {
        jsonapi_set_why(why, why_len, "data.attributes or data.relationships is not an object");
        goto fail;
    }

    state = json_object();
    if (!state) {
        jsonapi_set_why(why, why_len, "out of memory");
        goto fail;
    }
    json_object_set_new(state, "id", json_stringn(json_string_value(id), json_string_length(id)));
    if (attrs)
        json_object_set(state, "number", json_object_get(attrs, "number"));
    for (size_t i = 0; i < JSONAPI_N_RELS; i++) {
        const char *key = jsonapi_did_rels[i][1];
        if (json_object_get(state, key))
            continue; /* the other generation already gave a value */
        json_t *v = rels ? jsonapi_rel_value(json_object_get(rels, jsonapi_did_rels[i][0])) : NULL;
        if (v)
            json_object_set_new(state, key, v);
    }
    if (attrs) {
        /* "number" is already in; json_object_set ignores a NULL (absent) value. */
        for (size_t i = 1; jsonapi_did_attrs[i]; i++)
            json_object_set(state, jsonapi_did_attrs[i],
                            json_object_get(attrs, jsonapi_did_attrs[i]));
    }
    return state;

fail:
    json_decref(state);
    return NULL;
}

/* Digits of a number with an optional leading '+' dropped. */
static const char *jsonapi_skip_plus(const char *s)
{
    return *s == '+' ? s + 1 : s;
}

int jsonapi_find_did(const char *body, size_t len, const char *digits, char *out, size_t out_len,
                     char *why, size_t why_len)
{
    json_t *doc = NULL, *data, *item;
    size_t i;
    int rc = -1;

    if (!digits || !out || out_len == 0) {
        jsonapi_set_why(why, why_len, "invalid arguments");
        goto done;
    }
    doc = jsonapi_load_object(body, len);
    if (!doc) {
        jsonapi_set_why(why, why_len, "response is not a JSON object");
        goto done;
    }
    data = json_object_get(doc, "data");
    if (!json_is_array(data)) {
        jsonapi_set_why(why, why_len, "response data is not an array");
        goto done;
    }
    rc = 0;
    json_array_foreach(data, i, item)
    {
        json_t *attrs = json_object_get(item, "attributes");
        json_t *number = json_object_get(attrs, "number");
        json_t *id = json_object_get(item, "id");
        if (!json_is_string(number) ||
            strcmp(jsonapi_skip_plus(json_string_value(number)), jsonapi_skip_plus(digits)) != 0)
            continue;
        if (!json_is_string(id) || json_string_length(id) == 0 ||
            json_string_length(id) >= out_len) {
            jsonapi_set_why(why, why_len, "matching DID has a missing or oversized id");
            rc = -1;
            goto done;
        }
        memcpy(out, json_string_value(id), json_string_length(id) + 1);
        rc = 1;
        goto done;
    }

done:
    json_decref(doc);
    return rc;
}

/* True when the planned relationship `rel` ({"data": null | {"type","id"}}) equals the
 * state's value for it. */
static bool jsonapi_rel_matches(const json_t *rel, const json_t *state_value)
{
    json_t *data;

    if (!state_value || !json_is_object(rel))
        return false;
    data = json_object_get(rel, "data");
    if (json_is_null(data))
        return json_is_null(state_value);
    if (json_is_object(data)) {
        json_t *id = json_object_get(data, "id");
        return json_is_string(id) && json_is_string(state_value) &&
               strcmp(json_string_value(id), json_string_value(state_value)) == 0;
    }
    return false; /* data absent, an array, or something else: not a DID to-one */
}

bool jsonapi_patch_is_noop(const char *patch_body, const json_t *state)
{
    json_t *doc = NULL, *data, *type, *id, *attrs, *rels, *v;
    const char *key;
    bool noop = false;
    size_t compared = 0;

    if (!patch_body || !json_is_object(state))
        return false;
    doc = jsonapi_load_object(patch_body, strlen(patch_body));
    data = doc ? json_object_get(doc, "data") : NULL;
    if (!json_is_object(data))
        goto done;
    type = json_object_get(data, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "dids") != 0)
        goto done;

    /* The state must be of the DID the body names: by id, or by "number:<digits>". */
    id = json_object_get(data, "id");
    if (json_is_string(id)) {
        const char *ids = json_string_value(id);
        json_t *want = strncmp(ids, "number:", 7) == 0 ? json_object_get(state, "number")
                                                       : json_object_get(state, "id");
        const char *cmp = strncmp(ids, "number:", 7) == 0 ? ids + 7 : ids;
        if (!json_is_string(want) ||
            strcmp(jsonapi_skip_plus(json_string_value(want)), jsonapi_skip_plus(cmp)) != 0)
            goto done;
    }

    attrs = json_object_get(data, "attributes");
    rels = json_object_get(data, "relationships");
    if ((attrs && !json_is_object(attrs)) || (rels && !json_is_object(rels)))
        goto done;
    json_object_foreach(attrs, key, v)
    {
        json_t *have = jsonapi_is_did_attr(key) ? json_object_get(state, key) : NULL;
        if (!have || !json_equal(v, have))
            goto done;
        compared++;
    }
    json_object_foreach(rels, key, v)
    {
        const char *state_key = jsonapi_rel_key(key);
        if (!state_key || !jsonapi_rel_matches(v, json_object_get(state, state_key)))
            goto done;
        compared++;
    }
    /* A body that sets nothing is sent rather than skipped: DIDWW is the judge of it. */
    noop = compared > 0;

done:
    json_decref(doc);
    return noop;
}

char *jsonapi_with_did_id(const char *patch_body, const char *did_id)
{
    json_t *doc = NULL, *data;
    char *text = NULL;

    if (!patch_body || !did_id)
        return NULL;
    doc = jsonapi_load_object(patch_body, strlen(patch_body));
    data = doc ? json_object_get(doc, "data") : NULL;
    if (!json_is_object(data))
        goto done;
    /* Replacing an existing key keeps its position: jansson objects keep insertion
     * order, so the body stays as actions.c wrote it apart from the id. */
    if (json_object_set_new(data, "id", json_string(did_id)) != 0)
        goto done;
    text = json_dumps(doc, JSON_COMPACT);

done:
    json_decref(doc);
    return text;
}
