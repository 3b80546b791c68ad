/*
 * sim_api: the /v3/ surface of the DIDWW simulator. Routes a request, renders DIDs, trunks
 * and trunk groups in the naming of the requested API version, and validates writes the way
 * DIDWW's jsonapi-resources stack does: structural problems are 400 (Param not allowed,
 * Invalid Links Object, ...), an id/type that does not match the URL is 409 (JSON:API),
 * an unknown record is 404, and model validation failures are 422 with code "100" pointing
 * at the attribute. Writes are all-or-nothing. Runs on MHD connection threads and holds the
 * state lock (and no other) for the whole of one request.
 */
#include "sim_api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API_MAX_PATH 2048
#define API_MAX_SEGS 6
#define API_MAX_SEG_LEN 128
#define API_URL_LEN 1024
#define API_PAGE_SIZE_DEFAULT 50
#define API_PAGE_SIZE_MAX 100

/* clang-format off */
static const struct sim_naming api_namings[] = {
    {"2017-09-18", "trunk", "trunk_group", "trunks", "trunks", "trunk_groups",
     "trunk_id", "trunk_group_id", true, false, false},
    {"2021-04-19", "trunk", "trunk_group", "trunks", "trunks", "trunk_groups",
     "trunk_id", "trunk_group_id", false, true, false},
    {"2021-12-15", "voice_in_trunk", "voice_in_trunk_group", "voice_in_trunks", "voice_in_trunks",
     "voice_in_trunk_groups", "voice_in_trunk_id", "voice_in_trunk_group_id", false, true, false},
    {"2022-05-10", "voice_in_trunk", "voice_in_trunk_group", "voice_in_trunks", "voice_in_trunks",
     "voice_in_trunk_groups", "voice_in_trunk_id", "voice_in_trunk_group_id", false, true, false},
    {"2026-04-16", "voice_in_trunk", "voice_in_trunk_group", "voice_in_trunks", "voice_in_trunks",
     "voice_in_trunk_groups", "voice_in_trunk_id", "voice_in_trunk_group_id", false, true, false},
    {"2026-11-19", "voice_in_trunk", "voice_in_trunk_group", "voice_in_trunks", "voice_in_trunks",
     "voice_in_trunk_groups", "voice_in_trunk_id", "voice_in_trunk_group_id", false, true, true},
};
/* clang-format on */

/* Include flags. */
enum {
    INC_TRUNK = 1u << 0,
    INC_GROUP = 1u << 1,
    INC_TRUNK_GROUP = 1u << 2, /* trunk.trunk_group */
    INC_TRUNK_POP = 1u << 3,   /* trunk.pop */
    INC_CP = 1u << 4,
    INC_SCG = 1u << 5,
    INC_DID_GROUP = 1u << 6,
    INC_ORDER = 1u << 7,
    INC_ADDR = 1u << 8,
    INC_TRUNKS = 1u << 9, /* a group's trunks */
    INC_POP = 1u << 10,   /* a trunk's pop */
};

enum api_kind { KIND_DIDS, KIND_TRUNKS, KIND_GROUPS };

struct api_ctx {
    const struct sim_call *c;
    const struct sim_naming *nm;
    json_t *doc;      /* the state document, locked */
    json_t *included; /* compound document members, in order */
    json_t *seen;     /* "type/id" of everything in data or included */
    struct sim_reply *out;
};

static const char api_oom_body[] =
    "{\"errors\":[{\"title\":\"Internal Server Error\",\"detail\":\"Internal Server Error\","
    "\"code\":\"500\",\"status\":\"500\"}]}";

const struct sim_naming *sim_api_naming(const char *version)
{
    for (size_t i = 0; i < sizeof api_namings / sizeof api_namings[0]; i++)
        if (strcmp(api_namings[i].version, version) == 0)
            return &api_namings[i];
    return NULL;
}

/* ---------- JSON helpers ---------- */

/* A JSON string for text that may hold bytes from the request; non-UTF-8 becomes '?'. */
static json_t *api_jstr(const char *s)
{
    json_t *v = json_string(s ? s : "");
    if (v)
        return v;
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        copy[i] = (s[i] & 0x80) ? '?' : s[i];
    v = json_string(copy);
    free(copy);
    return v;
}

static json_t *api_linkage(const char *type, json_t *id)
{
    if (!json_is_string(id))
        return json_null();
    return json_pack("{s:s, s:O}", "type", type, "id", id);
}

/* ---------- errors ---------- */

static json_t *api_err(int status, const char *code, const char *title, const char *detail,
                       const char *pointer)
{
    char st[8];
    json_t *e = json_object();
    if (!e)
        return NULL;
    snprintf(st, sizeof st, "%d", status);
    json_object_set_new(e, "title", api_jstr(title));
    if (detail)
        json_object_set_new(e, "detail", api_jstr(detail));
    json_object_set_new(e, "code", json_string(code));
    if (pointer)
        json_object_set_new(e, "source", json_pack("{s:o}", "pointer", api_jstr(pointer)));
    json_object_set_new(e, "status", json_string(st));
    return e;
}

static void api_errf(json_t *errs, int status, const char *code, const char *title,
                     const char *pointer, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Appends one error whose detail is formatted. */
static void api_errf(json_t *errs, int status, const char *code, const char *title,
                     const char *pointer, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    json_array_append_new(errs, api_err(status, code, title, detail, pointer));
}

/* A Rails validation error as DIDWW renders it: title = message, detail "attr - message". */
static void api_invalid(json_t *errs, const char *attr, const char *pointer_attr,
                        const char *message)
{
    char pointer[160];
    snprintf(pointer, sizeof pointer, "/data/attributes/%s", pointer_attr);
    api_errf(errs, 422, "100", message, pointer, "%s - %s", attr, message);
}

/* An unknown related id, as DIDWW words it: title "should exist", detail "<fk> - is invalid",
 * pointer at the foreign key attribute (voice_in_trunk_id in the newer naming). */
static void api_should_exist(json_t *errs, const char *attr, const char *pointer_attr)
{
    char pointer[160];
    snprintf(pointer, sizeof pointer, "/data/attributes/%s", pointer_attr);
    api_errf(errs, 422, "100", "should exist", pointer, "%s - is invalid", attr);
}

char *sim_api_error_doc(int status, const char *code, const char *title, const char *detail,
                        const char *pointer)
{
    json_t *doc = json_pack("{s:[o]}", "errors", api_err(status, code, title, detail, pointer));
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return text;
}

static void api_reply_json(struct sim_reply *out, int status, json_t *doc)
{
    out->status = status;
    out->body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!out->body) {
        out->status = 500;
        out->body = strdup(api_oom_body);
    }
}

/* Steals errs (an array); answers with the given status. */
static void api_reply_errors(struct sim_reply *out, int status, json_t *errs)
{
    api_reply_json(out, status, json_pack("{s:o}", "errors", errs));
}

static void api_reply_error(struct sim_reply *out, int status, const char *code, const char *title,
                            const char *detail, const char *pointer)
{
    api_reply_errors(out, status, json_pack("[o]", api_err(status, code, title, detail, pointer)));
}

static void api_not_found(struct sim_reply *out, const char *id)
{
    char detail[256];
    snprintf(detail, sizeof detail, "The record identified by %s could not be found.", id);
    api_reply_error(out, 404, "404", "Record not found", detail, NULL);
}

static void api_no_route(struct api_ctx *x, const char *hint)
{
    char detail[API_MAX_PATH + 256];
    snprintf(detail, sizeof detail, "No route matches [%s] %s%s", x->c->method, x->c->path,
             hint ? hint : "");
    api_reply_error(x->out, 404, "404", "Not found", detail, NULL);
}

static void api_method_not_allowed(struct api_ctx *x, const char *allow)
{
    char detail[API_MAX_PATH + 64];
    snprintf(detail, sizeof detail, "%s is not allowed on %s", x->c->method, x->c->path);
    snprintf(x->out->allow, sizeof x->out->allow, "%s", allow);
    api_reply_error(x->out, 405, "405", "Method Not Allowed", detail, NULL);
}

/* ---------- rendering ---------- */

static void api_url(struct api_ctx *x, char *buf, size_t len, const char *coll, const char *id,
                    const char *tail)
{
    snprintf(buf, len, "%s/v3/%s/%s%s%s", x->c->base_url, coll, id, tail ? "/" : "",
             tail ? tail : "");
}

static json_t *api_rel_links(struct api_ctx *x, const char *coll, const char *id, const char *name)
{
    char self[API_URL_LEN], related[API_URL_LEN], tail[160];
    snprintf(tail, sizeof tail, "relationships/%s", name);
    api_url(x, self, sizeof self, coll, id, tail);
    api_url(x, related, sizeof related, coll, id, name);
    return json_pack("{s:s, s:s}", "self", self, "related", related);
}

/* A relationship object; data (stolen) is shown when with_data or --always-include-linkage. */
static json_t *api_rel(struct api_ctx *x, const char *coll, const char *id, const char *name,
                       bool with_data, json_t *data)
{
    json_t *r = json_pack("{s:o}", "links", api_rel_links(x, coll, id, name));
    if (r && (with_data || x->c->always_linkage))
        json_object_set(r, "data", data);
    json_decref(data);
    return r;
}

static bool api_mark_seen(struct api_ctx *x, const char *type, const char *id)
{
    char key[256];
    snprintf(key, sizeof key, "%s/%s", type, id);
    if (json_object_get(x->seen, key))
        return false;
    json_object_set_new(x->seen, key, json_true());
    return true;
}

static void api_add_included(struct api_ctx *x, json_t *res)
{
    if (!res)
        return;
    const char *type = json_string_value(json_object_get(res, "type"));
    const char *id = json_string_value(json_object_get(res, "id"));
    if (type && id && api_mark_seen(x, type, id))
        json_array_append(x->included, res);
    json_decref(res);
}

/* Copies the keys of src not listed in skip (NULL-terminated) into attrs. */
static void api_copy_extra(json_t *attrs, json_t *src, const char *const *skip)
{
    const char *key;
    json_t *v;
    json_object_foreach(src, key, v)
    {
        bool skipped = false;
        for (size_t i = 0; skip[i] && !skipped; i++)
            skipped = strcmp(skip[i], key) == 0;
        if (!skipped && !json_object_get(attrs, key))
            json_object_set(attrs, key, v);
    }
}

/* Resources the simulator only holds as optional read-only fixtures (did_groups, ...). */
static json_t *api_side(struct api_ctx *x, const char *type, const char *id)
{
    static const char *const skip[] = {"id", NULL};
    json_t *attrs = json_object();
    json_t *src = sim_state_find(x->doc, type, id);
    if (src)
        api_copy_extra(attrs, src, skip);
    return json_pack("{s:s, s:s, s:o}", "id", id, "type", type, "attributes", attrs);
}

static json_t *api_group(struct api_ctx *x, json_t *g, unsigned inc);

static json_t *api_trunk(struct api_ctx *x, json_t *t, unsigned inc)
{
    static const char *const order[] = {
        "priority",    "capacity_limit",  "weight",     "name",          "cli_format", "cli_prefix",
        "description", "ringing_timeout", "created_at", "configuration", NULL};
    static const char *const skip[] = {"id", "pop", NULL};
    const struct sim_naming *nm = x->nm;
    const char *id = json_string_value(json_object_get(t, "id"));
    json_t *attrs = json_object(), *rels = json_object();
    for (size_t i = 0; order[i]; i++)
        if (json_object_get(t, order[i]))
            json_object_set(attrs, order[i], json_object_get(t, order[i]));
    api_copy_extra(attrs, t, skip);
    json_t *group = sim_state_group_of_trunk(x->doc, id);
    json_object_set_new(rels, nm->group_rel,
                        api_rel(x, nm->trunk_type, id, nm->group_rel, inc & INC_GROUP,
                                api_linkage(nm->group_type, json_object_get(group, "id"))));
    json_object_set_new(rels, "pop",
                        api_rel(x, nm->trunk_type, id, "pop", inc & INC_POP,
                                api_linkage("pops", json_object_get(t, "pop"))));
    json_t *res = json_pack("{s:s, s:s, s:o, s:o}", "id", id, "type", nm->trunk_type, "attributes",
                            attrs, "relationships", rels);
    if ((inc & INC_GROUP) && group)
        api_add_included(x, api_group(x, group, 0));
    if ((inc & INC_POP) && json_is_string(json_object_get(t, "pop")))
        api_add_included(x, api_side(x, "pops", json_string_value(json_object_get(t, "pop"))));
    return res;
}

static json_t *api_group(struct api_ctx *x, json_t *g, unsigned inc)
{
    static const char *const order[] = {"name", "capacity_limit", "created_at", NULL};
    static const char *const skip[] = {"id", "trunks", NULL};
    const struct sim_naming *nm = x->nm;
    const char *id = json_string_value(json_object_get(g, "id"));
    json_t *attrs = json_object(), *linkage = json_array(), *trunks = json_object_get(g, "trunks");
    char self[API_URL_LEN];
    size_t i;
    json_t *tid;
    for (i = 0; order[i]; i++)
        if (json_object_get(g, order[i]))
            json_object_set(attrs, order[i], json_object_get(g, order[i]));
    api_copy_extra(attrs, g, skip);
    json_array_foreach(trunks, i, tid)
    {
        json_array_append_new(linkage, api_linkage(nm->trunk_type, tid));
    }
    api_url(x, self, sizeof self, nm->group_type, id, NULL);
    json_t *rels =
        json_pack("{s:o}", nm->trunks_rel,
                  api_rel(x, nm->group_type, id, nm->trunks_rel, inc & INC_TRUNKS, linkage));
    json_t *res =
        json_pack("{s:s, s:s, s:{s:s}, s:o, s:o, s:{s:I}}", "id", id, "type", nm->group_type,
                  "links", "self", self, "attributes", attrs, "relationships", rels, "meta",
                  "trunks_count", (json_int_t)json_array_size(trunks));
    if (inc & INC_TRUNKS) {
        json_array_foreach(trunks, i, tid)
        {
            json_t *t = sim_state_find(x->doc, "trunks", json_string_value(tid));
            if (t)
                api_add_included(x, api_trunk(x, t, 0));
        }
    }
    return res;
}

static json_t *api_did(struct api_ctx *x, json_t *d, unsigned inc)
{
    static const char *const order[] = {"blocked",    "capacity_limit",          "description",
                                        "terminated", "awaiting_registration",   "number",
                                        "expires_at", "channels_included_count", "created_at",
                                        NULL};
    static const char *const skip[] = {"id",
                                       "trunk",
                                       "trunk_group",
                                       "capacity_pool",
                                       "shared_capacity_group",
                                       "did_group",
                                       "order",
                                       "address_verification",
                                       "billing_cycles_count",
                                       "pending_removal",
                                       "dedicated_channels_count",
                                       NULL};
    /* Side relationships: name, type, include flag. */
    static const struct {
        const char *name, *type;
        unsigned flag;
    } side[] = {{"capacity_pool", "capacity_pools", INC_CP},
                {"shared_capacity_group", "shared_capacity_groups", INC_SCG},
                {"did_group", "did_groups", INC_DID_GROUP},
                {"order", "orders", INC_ORDER},
                {"address_verification", "address_verifications", INC_ADDR}};
    const struct sim_naming *nm = x->nm;
    const char *id = json_string_value(json_object_get(d, "id"));
    json_t *attrs = json_object(), *rels = json_object();
    json_t *bc = json_object_get(d, "billing_cycles_count");
    size_t i;
    for (i = 0; order[i]; i++)
        json_object_set(attrs, order[i], json_object_get(d, order[i]));
    if (nm->pending_removal)
        json_object_set_new(attrs, "pending_removal",
                            json_boolean(json_is_integer(bc) && json_integer_value(bc) == 0));
    else
        json_object_set(attrs, "billing_cycles_count", bc);
    json_object_set(attrs, "dedicated_channels_count",
                    json_object_get(d, "dedicated_channels_count"));
    api_copy_extra(attrs, d, skip);

    json_t *trunk = json_object_get(d, "trunk"), *group = json_object_get(d, "trunk_group");
    json_object_set_new(rels, "did_group",
                        api_rel(x, "dids", id, "did_group", inc & INC_DID_GROUP,
                                api_linkage("did_groups", json_object_get(d, "did_group"))));
    json_object_set_new(rels, "order",
                        api_rel(x, "dids", id, "order", inc & INC_ORDER,
                                api_linkage("orders", json_object_get(d, "order"))));
    json_object_set_new(
        rels, nm->trunk_rel,
        api_rel(x, "dids", id, nm->trunk_rel, inc & INC_TRUNK, api_linkage(nm->trunk_type, trunk)));
    json_object_set_new(
        rels, nm->group_rel,
        api_rel(x, "dids", id, nm->group_rel, inc & INC_GROUP, api_linkage(nm->group_type, group)));
    for (i = 0; i < sizeof side / sizeof side[0]; i++) {
        if (side[i].flag == INC_DID_GROUP || side[i].flag == INC_ORDER)
            continue; /* already placed, in DIDWW's order */
        if (side[i].flag == INC_ADDR && !nm->address_verification)
            continue;
        json_object_set_new(rels, side[i].name,
                            api_rel(x, "dids", id, side[i].name, inc & side[i].flag,
                                    api_linkage(side[i].type, json_object_get(d, side[i].name))));
    }
    json_t *res = json_pack("{s:s, s:s, s:o, s:o}", "id", id, "type", "dids", "attributes", attrs,
                            "relationships", rels);

    if ((inc & INC_TRUNK) && json_is_string(trunk)) {
        json_t *t = sim_state_find(x->doc, "trunks", json_string_value(trunk));
        unsigned sub =
            ((inc & INC_TRUNK_GROUP) ? INC_GROUP : 0) | ((inc & INC_TRUNK_POP) ? INC_POP : 0);
        if (t)
            api_add_included(x, api_trunk(x, t, sub));
    }
    if ((inc & INC_GROUP) && json_is_string(group)) {
        json_t *g = sim_state_find(x->doc, "trunk_groups", json_string_value(group));
        if (g)
            api_add_included(x, api_group(x, g, 0));
    }
    for (i = 0; i < sizeof side / sizeof side[0]; i++) {
        json_t *sid = json_object_get(d, side[i].name);
        if ((inc & side[i].flag) && json_is_string(sid))
            api_add_included(x, api_side(x, side[i].type, json_string_value(sid)));
    }
    return res;
}

static json_t *api_render(struct api_ctx *x, enum api_kind kind, json_t *obj, unsigned inc)
{
    const char *type = kind == KIND_DIDS     ? "dids"
                       : kind == KIND_TRUNKS ? x->nm->trunk_type
                                             : x->nm->group_type;
    api_mark_seen(x, type, json_string_value(json_object_get(obj, "id")));
    if (kind == KIND_DIDS)
        return api_did(x, obj, inc);
    if (kind == KIND_TRUNKS)
        return api_trunk(x, obj, inc);
    return api_group(x, obj, inc);
}

/* Answers a document: data (stolen), included if any, meta (stolen, may be NULL) with the
 * api_version added, links (stolen, may be NULL). */
static void api_reply_doc(struct api_ctx *x, int status, json_t *data, json_t *meta, json_t *links)
{
    json_t *doc = json_object();
    if (!meta)
        meta = json_object();
    json_object_set_new(doc, "data", data ? data : json_null());
    if (json_array_size(x->included) > 0)
        json_object_set(doc, "included", x->included);
    json_object_set_new(meta, "api_version", json_string(x->nm->version));
    json_object_set_new(doc, "meta", meta);
    if (links)
        json_object_set_new(doc, "links", links);
    api_reply_json(x->out, status, doc);
}

/* ---------- query parameters ---------- */

static const char *api_query(struct api_ctx *x, const char *name)
{
    return json_string_value(json_object_get(x->c->query, name));
}

/* Parses ?include= for a resource kind; false after answering 400. */
static bool api_parse_include(struct api_ctx *x, enum api_kind kind, unsigned *flags)
{
    const struct sim_naming *nm = x->nm;
    const char *inc = api_query(x, "include");
    char tg[96], tp[96], buf[512];
    struct {
        const char *path;
        unsigned flags;
    } table[20];
    size_t n = 0;
    *flags = 0;
    if (!inc || !*inc)
        return true;
    snprintf(tg, sizeof tg, "%s.%s", nm->trunk_rel, nm->group_rel);
    snprintf(tp, sizeof tp, "%s.pop", nm->trunk_rel);
    if (kind == KIND_DIDS) {
        table[n].path = "order", table[n++].flags = INC_ORDER;
        table[n].path = nm->trunk_rel, table[n++].flags = INC_TRUNK;
        table[n].path = tg, table[n++].flags = INC_TRUNK | INC_TRUNK_GROUP;
        table[n].path = tp, table[n++].flags = INC_TRUNK | INC_TRUNK_POP;
        table[n].path = nm->group_rel, table[n++].flags = INC_GROUP;
        table[n].path = "capacity_pool", table[n++].flags = INC_CP;
        table[n].path = "shared_capacity_group", table[n++].flags = INC_SCG;
        table[n].path = "did_group", table[n++].flags = INC_DID_GROUP;
        /* Accepted; the nested resources are not simulated, so only did_group is included. */
        table[n].path = "did_group.country", table[n++].flags = INC_DID_GROUP;
        table[n].path = "did_group.city", table[n++].flags = INC_DID_GROUP;
        table[n].path = "did_group.region", table[n++].flags = INC_DID_GROUP;
        table[n].path = "did_group.did_group_type", table[n++].flags = INC_DID_GROUP;
        table[n].path = "did_group.stock_keeping_units", table[n++].flags = INC_DID_GROUP;
        if (nm->address_verification)
            table[n].path = "address_verification", table[n++].flags = INC_ADDR;
    } else if (kind == KIND_TRUNKS) {
        table[n].path = nm->group_rel, table[n++].flags = INC_GROUP;
        table[n].path = "pop", table[n++].flags = INC_POP;
    } else {
        table[n].path = nm->trunks_rel, table[n++].flags = INC_TRUNKS;
    }
    snprintf(buf, sizeof buf, "%s", inc);
    for (char *p = buf, *next; p; p = next) {
        next = strchr(p, ',');
        if (next)
            *next++ = '\0';
        size_t k;
        for (k = 0; k < n; k++)
            if (strcmp(p, table[k].path) == 0)
                break;
        if (k == n) {
            const char *type = kind == KIND_DIDS     ? "dids"
                               : kind == KIND_TRUNKS ? nm->trunk_type
                                                     : nm->group_type;
            char detail[640];
            snprintf(detail, sizeof detail, "%s is not a valid relationship of %s", p, type);
            api_reply_error(x->out, 400, "112", "Invalid field", detail, NULL);
            return false;
        }
        *flags |= table[k].flags;
    }
    return true;
}

/* ---------- GET ---------- */

static const char *api_collection(struct api_ctx *x, enum api_kind kind)
{
    return kind == KIND_DIDS ? "dids" : kind == KIND_TRUNKS ? "trunks" : "trunk_groups";
}

static void api_get_one(struct api_ctx *x, enum api_kind kind, const char *id)
{
    unsigned inc;
    if (!api_parse_include(x, kind, &inc))
        return;
    json_t *obj = sim_state_find(x->doc, api_collection(x, kind), id);
    if (!obj) {
        api_not_found(x->out, id);
        return;
    }
    api_reply_doc(x, 200, api_render(x, kind, obj, inc), NULL, NULL);
}

/* Does obj pass filter[name]=value? Values are comma-separated alternatives. */
static bool api_filter_match(struct api_ctx *x, enum api_kind kind, json_t *obj, const char *name,
                             const char *value)
{
    const struct sim_naming *nm = x->nm;
    char want[8192], idfilter_t[96], idfilter_g[96];
    json_t *field = NULL;
    snprintf(idfilter_t, sizeof idfilter_t, "%s.id", nm->trunk_rel);
    snprintf(idfilter_g, sizeof idfilter_g, "%s.id", nm->group_rel);
    if (kind == KIND_DIDS) {
        if (strcmp(name, "id") == 0 || strcmp(name, "number") == 0 ||
            strcmp(name, "blocked") == 0 || strcmp(name, "terminated") == 0 ||
            strcmp(name, "awaiting_registration") == 0)
            field = json_object_get(obj, name);
        else if (strcmp(name, idfilter_t) == 0)
            field = json_object_get(obj, "trunk");
        else if (strcmp(name, idfilter_g) == 0)
            field = json_object_get(obj, "trunk_group");
    } else {
        field = json_object_get(obj, "name");
    }
    snprintf(want, sizeof want, "%s", value);
    for (char *p = want, *next; p; p = next) {
        next = strchr(p, ',');
        if (next)
            *next++ = '\0';
        if (json_is_string(field) && strcmp(json_string_value(field), p) == 0)
            return true;
        if (json_is_boolean(field) && strcmp(json_is_true(field) ? "true" : "false", p) == 0)
            return true;
    }
    return false;
}

static bool api_filter_allowed(struct api_ctx *x, enum api_kind kind, const char *name)
{
    static const char *const did_filters[] = {
        "id", "number", "blocked", "terminated", "awaiting_registration", NULL};
    char t[96], g[96];
    if (kind != KIND_DIDS)
        return strcmp(name, "name") == 0;
    for (size_t i = 0; did_filters[i]; i++)
        if (strcmp(name, did_filters[i]) == 0)
            return true;
    snprintf(t, sizeof t, "%s.id", x->nm->trunk_rel);
    snprintf(g, sizeof g, "%s.id", x->nm->group_rel);
    return strcmp(name, t) == 0 || strcmp(name, g) == 0;
}

/* Reads page[name]; false after answering 400. */
static bool api_page_param(struct api_ctx *x, const char *name, long lo, long hi, long *val)
{
    char key[32];
    snprintf(key, sizeof key, "page[%s]", name);
    const char *s = api_query(x, key);
    if (!s)
        return true;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) {
        char detail[256];
        snprintf(detail, sizeof detail, "%s is not a valid value for %s page parameter.", s, name);
        api_reply_error(x->out, 400, "118", "Invalid page value", detail, NULL);
        return false;
    }
    *val = v;
    return true;
}

static void api_get_list(struct api_ctx *x, enum api_kind kind)
{
    const char *coll = api_collection(x, kind);
    const char *type = kind == KIND_DIDS     ? "dids"
                       : kind == KIND_TRUNKS ? x->nm->trunk_type
                                             : x->nm->group_type;
    const char *key;
    json_t *v, *e;
    unsigned inc;
    long page = 1, size = API_PAGE_SIZE_DEFAULT;
    size_t i;
    if (!api_parse_include(x, kind, &inc))
        return;
    json_object_foreach(x->c->query, key, v)
    {
        if (strncmp(key, "filter[", 7) == 0) {
            char name[128];
            size_t n = strlen(key);
            snprintf(name, sizeof name, "%.*s", (int)(n > 8 ? n - 8 : 0), key + 7);
            if (key[n - 1] != ']' || !api_filter_allowed(x, kind, name)) {
                char detail[256];
                snprintf(detail, sizeof detail, "%s is not allowed.", name);
                api_reply_error(x->out, 400, "102", "Filter not allowed", detail, NULL);
                return;
            }
        } else if (strncmp(key, "page[", 5) == 0 && strcmp(key, "page[number]") != 0 &&
                   strcmp(key, "page[size]") != 0) {
            char detail[256];
            snprintf(detail, sizeof detail, "%s is not an allowed page parameter.", key);
            api_reply_error(x->out, 400, "105", "Page parameter not allowed", detail, NULL);
            return;
        }
    }
    if (!api_page_param(x, "number", 1, 1000000, &page) ||
        !api_page_param(x, "size", 1, API_PAGE_SIZE_MAX, &size))
        return;

    json_t *matches = json_array();
    json_array_foreach(json_object_get(x->doc, coll), i, e)
    {
        bool ok = true;
        json_object_foreach(x->c->query, key, v)
        {
            size_t n = strlen(key);
            if (ok && strncmp(key, "filter[", 7) == 0 && n > 8) {
                char name[128];
                snprintf(name, sizeof name, "%.*s", (int)(n - 8), key + 7);
                ok = api_filter_match(x, kind, e, name, json_string_value(v));
            }
        }
        if (ok)
            json_array_append(matches, e);
    }
    size_t total = json_array_size(matches);
    size_t first = (size_t)(page - 1) * (size_t)size;
    json_t *data = json_array();
    for (i = first; i < total && i < first + (size_t)size; i++)
        json_array_append_new(data, api_render(x, kind, json_array_get(matches, i), inc));
    json_decref(matches);

    long last = total == 0 ? 1 : (long)((total + (size_t)size - 1) / (size_t)size);
    char f[API_URL_LEN], l[API_URL_LEN];
    snprintf(f, sizeof f, "%s/v3/%s?page%%5Bnumber%%5D=1&page%%5Bsize%%5D=%ld", x->c->base_url,
             type, size);
    snprintf(l, sizeof l, "%s/v3/%s?page%%5Bnumber%%5D=%ld&page%%5Bsize%%5D=%ld", x->c->base_url,
             type, last, size);
    json_t *links = json_pack("{s:s, s:s}", "first", f, "last", l);
    if (page < last) {
        snprintf(f, sizeof f, "%s/v3/%s?page%%5Bnumber%%5D=%ld&page%%5Bsize%%5D=%ld",
                 x->c->base_url, type, page + 1, size);
        json_object_set_new(links, "next", json_string(f));
    }
    if (page > 1 && page <= last) {
        snprintf(f, sizeof f, "%s/v3/%s?page%%5Bnumber%%5D=%ld&page%%5Bsize%%5D=%ld",
                 x->c->base_url, type, page - 1, size);
        json_object_set_new(links, "prev", json_string(f));
    }
    api_reply_doc(x, 200, data, json_pack("{s:I}", "total_records", (json_int_t)total), links);
}

/* GET /v3/{coll}/{id}/relationships/{rel} (linkage) or /v3/{coll}/{id}/{rel} (related). */
static void api_get_rel(struct api_ctx *x, enum api_kind kind, const char *id, const char *rel,
                        bool linkage_only)
{
    const struct sim_naming *nm = x->nm;
    json_t *obj = sim_state_find(x->doc, api_collection(x, kind), id);
    json_t *data = NULL;
    const char *coll = kind == KIND_DIDS     ? "dids"
                       : kind == KIND_TRUNKS ? nm->trunk_type
                                             : nm->group_type;
    if (!obj) {
        api_not_found(x->out, id);
        return;
    }
    if (kind == KIND_GROUPS) { /* rel is trunks_rel (checked by the router) */
        json_t *tids = json_object_get(obj, "trunks"), *tid;
        size_t i;
        data = json_array();
        json_array_foreach(tids, i, tid)
        {
            json_t *t = sim_state_find(x->doc, "trunks", json_string_value(tid));
            if (t)
                json_array_append_new(data, linkage_only ? api_linkage(nm->trunk_type, tid)
                                                         : api_render(x, KIND_TRUNKS, t, 0));
        }
    } else if (kind == KIND_TRUNKS) { /* group_rel or pop */
        json_t *g = sim_state_group_of_trunk(x->doc, id);
        if (strcmp(rel, "pop") == 0) {
            json_t *pop = json_object_get(obj, "pop");
            data = !json_is_string(pop) ? json_null()
                   : linkage_only       ? api_linkage("pops", pop)
                                        : api_side(x, "pops", json_string_value(pop));
        } else {
            data = !g             ? json_null()
                   : linkage_only ? api_linkage(nm->group_type, json_object_get(g, "id"))
                                  : api_render(x, KIND_GROUPS, g, 0);
        }
    } else {
        static const struct {
            const char *name, *type;
        } side[] = {{"capacity_pool", "capacity_pools"},
                    {"shared_capacity_group", "shared_capacity_groups"},
                    {"did_group", "did_groups"},
                    {"order", "orders"},
                    {"address_verification", "address_verifications"}};
        if (strcmp(rel, nm->trunk_rel) == 0 || strcmp(rel, nm->group_rel) == 0) {
            bool is_trunk = strcmp(rel, nm->trunk_rel) == 0;
            json_t *ref = json_object_get(obj, is_trunk ? "trunk" : "trunk_group");
            json_t *target = json_is_string(ref)
                                 ? sim_state_find(x->doc, is_trunk ? "trunks" : "trunk_groups",
                                                  json_string_value(ref))
                                 : NULL;
            data = !target        ? json_null()
                   : linkage_only ? api_linkage(is_trunk ? nm->trunk_type : nm->group_type, ref)
                                  : api_render(x, is_trunk ? KIND_TRUNKS : KIND_GROUPS, target, 0);
        } else {
            for (size_t i = 0; i < sizeof side / sizeof side[0]; i++) {
                if (strcmp(rel, side[i].name) != 0)
                    continue;
                json_t *ref = json_object_get(obj, side[i].name);
                data = !json_is_string(ref) ? json_null()
                       : linkage_only       ? api_linkage(side[i].type, ref)
                                            : api_side(x, side[i].type, json_string_value(ref));
            }
        }
    }
    json_t *links = linkage_only ? api_rel_links(x, coll, id, rel) : NULL;
    api_reply_doc(x, 200, data, NULL, links);
}

/* ---------- write helpers ---------- */

/* Parses the body and returns it (new reference) with *data borrowed; NULL after answering
 * 400. */
static json_t *api_parse_body(struct api_ctx *x, json_t **data)
{
    json_error_t jerr;
    json_t *body;
    if (x->c->body_len == 0) {
        api_reply_error(x->out, 400, "106", "Missing Parameter",
                        "The required parameter, data, is missing.", NULL);
        return NULL;
    }
    body = json_loadb(x->c->body, x->c->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!body) {
        char detail[300];
        snprintf(detail, sizeof detail,
                 "The request body is not valid JSON: %s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        api_reply_error(x->out, 400, "400", "Bad Request", detail, NULL);
        return NULL;
    }
    *data = json_object_get(body, "data");
    if (!*data) {
        api_reply_error(x->out, 400, "106", "Missing Parameter",
                        "The required parameter, data, is missing.", NULL);
        json_decref(body);
        return NULL;
    }
    return body;
}

/* Checks a resource object against the URL: id and type. false after answering. */
static bool api_check_resource(struct api_ctx *x, json_t *data, const char *type,
                               const char *path_id)
{
    if (!json_is_object(data)) {
        api_reply_error(x->out, 400, "122", "Invalid data format", "Data must be a hash.", "/data");
        return false;
    }
    json_t *id = json_object_get(data, "id"), *t = json_object_get(data, "type");
    if (!id || json_is_null(id)) {
        api_reply_error(x->out, 400, "109", "A key is required",
                        "The resource object does not contain a key.", "/data/id");
        return false;
    }
    if (!json_is_string(id) || strcmp(json_string_value(id), path_id) != 0) {
        char *shown = json_is_string(id) ? NULL : json_dumps(id, JSON_ENCODE_ANY);
        char detail[300];
        snprintf(detail, sizeof detail, "The URL does not support the key %s",
                 json_is_string(id) ? json_string_value(id) : (shown ? shown : "?"));
        free(shown);
        api_reply_error(x->out, 409, "110", "Key is not included in URL", detail, "/data/id");
        return false;
    }
    if (!t || json_is_null(t)) {
        api_reply_error(x->out, 400, "106", "Missing Parameter",
                        "The required parameter, type, is missing.", "/data/type");
        return false;
    }
    if (!json_is_string(t) || strcmp(json_string_value(t), type) != 0) {
        char *shown = json_dumps(t, JSON_ENCODE_ANY);
        char detail[300];
        snprintf(detail, sizeof detail, "%s is not a valid type for this operation.",
                 json_is_string(t) ? json_string_value(t) : (shown ? shown : "?"));
        free(shown);
        api_reply_error(x->out, 409, "116", "Type Mismatch", detail, "/data/type");
        return false;
    }
    return true;
}

/* attributes / relationships members: absent -> empty, non-object -> 400 error in errs. */
static json_t *api_member(json_t *data, const char *name, json_t *errs)
{
    json_t *m = json_object_get(data, name);
    if (!m || json_is_null(m))
        return NULL;
    if (!json_is_object(m)) {
        char pointer[64];
        snprintf(pointer, sizeof pointer, "/data/%s", name);
        api_errf(errs, 400, "122", "Invalid data format", pointer, "%s must be a hash.", name);
        return NULL;
    }
    return m;
}

static bool api_in(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

/* Collects "Param not allowed" for keys of obj not in allowed. */
static void api_not_allowed(json_t *obj, const char *const *allowed, const char *where,
                            json_t *errs)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (api_in(key, allowed))
            continue;
        char pointer[200];
        snprintf(pointer, sizeof pointer, "/data/%s/%s", where, key);
        api_errf(errs, 400, "105", "Param not allowed", pointer, "%s is not allowed.", key);
    }
}

/* Reads a to-one relationship object {"data": null | {"type","id"}} into *id (borrowed,
 * NULL for null). false with a 400 error appended to errs. */
static bool api_to_one(json_t *val, const char *name, const char *type, const char **id,
                       json_t *errs)
{
    char pointer[200];
    snprintf(pointer, sizeof pointer, "/data/relationships/%s", name);
    json_t *d = json_is_object(val) ? json_object_get(val, "data") : NULL;
    *id = NULL;
    if (!d ||
        (!json_is_null(d) && !(json_is_object(d) && json_is_string(json_object_get(d, "type")) &&
                               json_is_string(json_object_get(d, "id"))))) {
        json_array_append_new(errs, api_err(400, "115", "Invalid Links Object",
                                            "Data is not a valid Links Object.", pointer));
        return false;
    }
    if (json_is_null(d))
        return true;
    const char *t = json_string_value(json_object_get(d, "type"));
    if (strcmp(t, type) != 0) {
        api_errf(errs, 400, "116", "Type Mismatch", pointer,
                 "%s is not a valid type for this operation.", t);
        return false;
    }
    *id = json_string_value(json_object_get(d, "id"));
    return true;
}

/* Reads a to-many relationship object {"data": [{"type","id"}...]} into a new array of id
 * strings (caller decrefs). NULL with a 400 error appended to errs. */
static json_t *api_to_many(json_t *val, const char *name, const char *type, json_t *errs)
{
    char pointer[200];
    size_t i;
    json_t *e;
    snprintf(pointer, sizeof pointer, "/data/relationships/%s", name);
    json_t *d = json_is_object(val) ? json_object_get(val, "data") : NULL;
    if (!json_is_array(d)) {
        json_array_append_new(errs, api_err(400, "115", "Invalid Links Object",
                                            "Data is not a valid Links Object.", pointer));
        return NULL;
    }
    json_t *ids = json_array();
    json_array_foreach(d, i, e)
    {
        json_t *t = json_object_get(e, "type"), *id = json_object_get(e, "id");
        if (!json_is_string(t) || !json_is_string(id)) {
            json_array_append_new(errs, api_err(400, "115", "Invalid Links Object",
                                                "Data is not a valid Links Object.", pointer));
            json_decref(ids);
            return NULL;
        }
        if (strcmp(json_string_value(t), type) != 0) {
            api_errf(errs, 400, "116", "Type Mismatch", pointer,
                     "%s is not a valid type for this operation.", json_string_value(t));
            json_decref(ids);
            return NULL;
        }
        json_array_append(ids, id);
    }
    return ids;
}

/* Integer attribute check in Rails' words; NULL when fine. */
static const char *api_check_int(json_t *v, bool nullable, long long lo, long long hi, char *msg,
                                 size_t len)
{
    if (json_is_null(v))
        return nullable ? NULL : "is not a number";
    if (json_is_real(v))
        return "must be an integer";
    if (!json_is_integer(v))
        return "is not a number";
    if (json_integer_value(v) > hi) {
        snprintf(msg, len, "must be less than or equal to %lld", hi);
        return msg;
    }
    if (json_integer_value(v) < lo) {
        snprintf(msg, len, "must be greater than or equal to %lld", lo);
        return msg;
    }
    return NULL;
}

/* ---------- DID updates ---------- */

/* Validates and applies attributes + relationships to DID id. link_mode answers 204 (a PATCH
 * to a relationship link) instead of the updated resource. */
static void api_did_update(struct api_ctx *x, const char *id, json_t *attrs, json_t *rels,
                           json_t *errs, bool link_mode)
{
    const struct sim_naming *nm = x->nm;
    const char *allowed_attrs[] = {"description",
                                   "capacity_limit",
                                   "terminated",
                                   "dedicated_channels_count",
                                   nm->pending_removal ? "pending_removal" : "billing_cycles_count",
                                   NULL};
    const char *allowed_rels[] = {nm->trunk_rel, nm->group_rel, "capacity_pool",
                                  "shared_capacity_group", NULL};
    const char *trunk_id = NULL, *group_id = NULL, *cp_id = NULL, *scg_id = NULL;
    json_t *v, *trunk_val = json_object_get(rels, nm->trunk_rel);
    json_t *group_val = json_object_get(rels, nm->group_rel);
    json_t *cp_val = json_object_get(rels, "capacity_pool");
    json_t *scg_val = json_object_get(rels, "shared_capacity_group");
    unsigned inc = 0;
    char msg[96];
    const char *why;

    api_not_allowed(attrs, allowed_attrs, "attributes", errs);
    api_not_allowed(rels, allowed_rels, "relationships", errs);
    if (trunk_val)
        api_to_one(trunk_val, nm->trunk_rel, nm->trunk_type, &trunk_id, errs);
    if (group_val)
        api_to_one(group_val, nm->group_rel, nm->group_type, &group_id, errs);
    if (cp_val)
        api_to_one(cp_val, "capacity_pool", "capacity_pools", &cp_id, errs);
    if (scg_val)
        api_to_one(scg_val, "shared_capacity_group", "shared_capacity_groups", &scg_id, errs);
    if (json_array_size(errs) > 0) {
        api_reply_errors(x->out, 400, json_incref(errs));
        return;
    }
    if (!link_mode && !api_parse_include(x, KIND_DIDS, &inc))
        return;
    json_t *did = sim_state_find(x->doc, "dids", id);
    if (!did) {
        api_not_found(x->out, id);
        return;
    }

    /* 422: model validations, all of them at once. */
    if ((v = json_object_get(attrs, "description")) && !json_is_string(v) && !json_is_null(v))
        api_invalid(errs, "description", "description", "is invalid");
    if ((v = json_object_get(attrs, "capacity_limit")) &&
        (why = api_check_int(v, true, 0, 32767, msg, sizeof msg)))
        api_invalid(errs, "capacity_limit", "capacity_limit", why);
    if ((v = json_object_get(attrs, "billing_cycles_count")) &&
        (why = api_check_int(v, true, 0, 999, msg, sizeof msg)))
        api_invalid(errs, "billing_cycles_count", "billing_cycles_count", why);
    if ((v = json_object_get(attrs, "dedicated_channels_count")) &&
        (why = api_check_int(v, false, 0, 32767, msg, sizeof msg)))
        api_invalid(errs, "dedicated_channels_count", "dedicated_channels_count", why);
    if ((v = json_object_get(attrs, "terminated")) && !json_is_boolean(v))
        api_invalid(errs, "terminated", "terminated", "is not included in the list");
    if ((v = json_object_get(attrs, "pending_removal")) && !json_is_boolean(v))
        api_invalid(errs, "pending_removal", "pending_removal", "is not included in the list");

    bool bad_ref = false;
    if (trunk_id && !sim_state_find(x->doc, "trunks", trunk_id)) {
        api_should_exist(errs, "trunk_id", nm->trunk_fk);
        bad_ref = true;
    }
    if (group_id && !sim_state_find(x->doc, "trunk_groups", group_id)) {
        api_should_exist(errs, "trunk_group_id", nm->group_fk);
        bad_ref = true;
    }
    /* DIDWW refuses unknown pool / shared group ids the same way (the side collections of
     * the state file are the account's). */
    if (cp_id && !sim_state_find(x->doc, "capacity_pools", cp_id))
        api_should_exist(errs, "capacity_pool_id", "capacity_pool_id");
    if (scg_id && !sim_state_find(x->doc, "shared_capacity_groups", scg_id))
        api_should_exist(errs, "shared_capacity_group_id", "shared_capacity_group_id");
    if (!bad_ref) {
        bool has_trunk =
            trunk_val ? trunk_id != NULL : json_is_string(json_object_get(did, "trunk"));
        bool has_group =
            group_val ? group_id != NULL : json_is_string(json_object_get(did, "trunk_group"));
        if (has_trunk && has_group) {
            /* Blame the side this request set (the trunk when it set both). */
            if (trunk_id)
                api_invalid(errs, "trunk_id", nm->trunk_fk,
                            "can't be assigned together with trunk_group_id");
            else
                api_invalid(errs, "trunk_group_id", nm->group_fk,
                            "can't be assigned together with trunk_id");
        }
    }
    if (json_array_size(errs) > 0) {
        api_reply_errors(x->out, 422, json_incref(errs));
        return;
    }

    /* Apply. */
    const char *key;
    json_object_foreach(attrs, key, v)
    {
        if (strcmp(key, "pending_removal") == 0)
            json_object_set_new(did, "billing_cycles_count",
                                json_is_true(v) ? json_integer(0) : json_null());
        else
            json_object_set(did, key, v);
    }
    if (trunk_val)
        json_object_set_new(did, "trunk", trunk_id ? json_string(trunk_id) : json_null());
    if (group_val)
        json_object_set_new(did, "trunk_group", group_id ? json_string(group_id) : json_null());
    if (cp_val)
        json_object_set_new(did, "capacity_pool", cp_id ? json_string(cp_id) : json_null());
    if (scg_val)
        json_object_set_new(did, "shared_capacity_group",
                            scg_id ? json_string(scg_id) : json_null());
    if (link_mode) {
        x->out->status = 204;
        return;
    }
    api_reply_doc(x, 200, api_render(x, KIND_DIDS, did, inc), NULL, NULL);
}

static void api_patch_did(struct api_ctx *x, const char *id)
{
    json_t *data, *errs = json_array();
    json_t *body = api_parse_body(x, &data);
    if (body && api_check_resource(x, data, "dids", id)) {
        json_t *attrs = api_member(data, "attributes", errs);
        json_t *rels = api_member(data, "relationships", errs);
        api_did_update(x, id, attrs, rels, errs, false);
    }
    json_decref(errs);
    json_decref(body);
}

/* PATCH /v3/dids/{id}/relationships/{rel}: the body is the relationship object itself. */
static void api_patch_did_link(struct api_ctx *x, const char *id, const char *rel)
{
    json_t *data, *errs = json_array();
    json_t *body = api_parse_body(x, &data);
    if (body) {
        json_t *rels = json_pack("{s:O}", rel, body);
        api_did_update(x, id, NULL, rels, errs, true);
        json_decref(rels);
    }
    json_decref(errs);
    json_decref(body);
}

/* ---------- trunk group updates ---------- */

/* Checks trunk ids exist and the cap holds; appends 422 errors. */
static void api_check_members(struct api_ctx *x, json_t *ids, json_t *result, json_t *errs)
{
    const struct sim_naming *nm = x->nm;
    char pointer[160];
    size_t i, distinct = 0;
    json_t *id;
    snprintf(pointer, sizeof pointer, "/data/relationships/%s", nm->trunks_rel);
    json_array_foreach(ids, i, id)
    {
        if (!sim_state_find(x->doc, "trunks", json_string_value(id)))
            api_errf(errs, 422, "100", "should exist", pointer, "trunk_ids - %s is invalid",
                     json_string_value(id));
    }
    json_array_foreach(result, i, id)
    {
        bool dup = false;
        for (size_t k = 0; k < i && !dup; k++)
            dup = json_equal(json_array_get(result, k), id);
        distinct += !dup;
    }
    if (distinct > SIM_GROUP_MAX_TRUNKS) {
        char title[64];
        snprintf(title, sizeof title, "is too long (maximum is %d)", SIM_GROUP_MAX_TRUNKS);
        api_errf(errs, 422, "100", title, pointer, "%s - %s", nm->trunks_rel, title);
    }
}

static void api_patch_group(struct api_ctx *x, const char *id)
{
    const struct sim_naming *nm = x->nm;
    static const char *const allowed_attrs[] = {"name", "capacity_limit", NULL};
    const char *allowed_rels[] = {nm->trunks_rel, NULL};
    json_t *data, *errs = json_array(), *ids = NULL, *v;
    json_t *body = api_parse_body(x, &data);
    unsigned inc;
    char msg[96];
    const char *why;
    if (!body || !api_check_resource(x, data, nm->group_type, id))
        goto done;
    json_t *attrs = api_member(data, "attributes", errs);
    json_t *rels = api_member(data, "relationships", errs);
    api_not_allowed(attrs, allowed_attrs, "attributes", errs);
    api_not_allowed(rels, allowed_rels, "relationships", errs);
    json_t *tval = json_object_get(rels, nm->trunks_rel);
    if (tval)
        ids = api_to_many(tval, nm->trunks_rel, nm->trunk_type, errs);
    if (json_array_size(errs) > 0) {
        api_reply_errors(x->out, 400, json_incref(errs));
        goto done;
    }
    if (!api_parse_include(x, KIND_GROUPS, &inc))
        goto done;
    json_t *group = sim_state_find(x->doc, "trunk_groups", id);
    if (!group) {
        api_not_found(x->out, id);
        goto done;
    }
    if ((v = json_object_get(attrs, "name")) && (!json_is_string(v) || json_string_length(v) == 0))
        api_invalid(errs, "name", "name", "can't be blank");
    if ((v = json_object_get(attrs, "capacity_limit")) &&
        (why = api_check_int(v, true, 0, 32767, msg, sizeof msg)))
        api_invalid(errs, "capacity_limit", "capacity_limit", why);
    if (ids)
        api_check_members(x, ids, ids, errs);
    if (json_array_size(errs) > 0) {
        api_reply_errors(x->out, 422, json_incref(errs));
        goto done;
    }
    const char *key;
    json_object_foreach(attrs, key, v)
    {
        json_object_set(group, key, v);
    }
    if (ids)
        sim_state_set_group_trunks(x->doc, group, ids);
    api_reply_doc(x, 200, api_render(x, KIND_GROUPS, group, inc), NULL, NULL);
done:
    json_decref(ids);
    json_decref(errs);
    json_decref(body);
}

/* POST (add absent), DELETE (remove given) or PATCH (replace) on the group's to-many link. */
static void api_group_link(struct api_ctx *x, const char *id)
{
    const struct sim_naming *nm = x->nm;
    const char *m = x->c->method;
    json_t *data, *errs = json_array(), *ids = NULL, *result = NULL, *e, *f;
    json_t *body = api_parse_body(x, &data);
    size_t i, k;
    if (!body)
        goto done;
    ids = api_to_many(body, nm->trunks_rel, nm->trunk_type, errs);
    if (!ids) {
        api_reply_errors(x->out, 400, json_incref(errs));
        goto done;
    }
    json_t *group = sim_state_find(x->doc, "trunk_groups", id);
    if (!group) {
        api_not_found(x->out, id);
        goto done;
    }
    json_t *current = json_object_get(group, "trunks");
    if (strcmp(m, "PATCH") == 0) {
        result = json_incref(ids);
        api_check_members(x, ids, result, errs);
    } else if (strcmp(m, "POST") == 0) {
        result = json_copy(current);
        json_array_foreach(ids, i, e)
        {
            bool present = false;
            json_array_foreach(result, k, f)
            {
                present = present || json_equal(f, e);
            }
            if (!present)
                json_array_append(result, e);
        }
        api_check_members(x, ids, result, errs);
    } else { /* DELETE: ids that are not members (or do not exist) are already absent */
        result = json_array();
        json_array_foreach(current, i, e)
        {
            bool drop = false;
            json_array_foreach(ids, k, f)
            {
                drop = drop || json_equal(f, e);
            }
            if (!drop)
                json_array_append(result, e);
        }
    }
    if (json_array_size(errs) > 0) {
        api_reply_errors(x->out, 422, json_incref(errs));
        goto done;
    }
    sim_state_set_group_trunks(x->doc, group, result);
    x->out->status = 204;
done:
    json_decref(result);
    json_decref(ids);
    json_decref(errs);
    json_decref(body);
}

/* ---------- routing ---------- */

static bool api_method_is(struct api_ctx *x, const char *m)
{
    return strcmp(x->c->method, m) == 0 ||
           (strcmp(m, "GET") == 0 && strcmp(x->c->method, "HEAD") == 0);
}

static bool api_is_did_rel(struct api_ctx *x, const char *rel)
{
    const char *rels[] = {x->nm->trunk_rel,
                          x->nm->group_rel,
                          "capacity_pool",
                          "shared_capacity_group",
                          "did_group",
                          "order",
                          x->nm->address_verification ? "address_verification" : "order",
                          NULL};
    return api_in(rel, rels);
}

static void api_route(struct api_ctx *x, char **seg, size_t n)
{
    const struct sim_naming *nm = x->nm;
    enum api_kind kind;
    if (n < 2 || strcmp(seg[0], "v3") != 0) {
        api_no_route(x, NULL);
        return;
    }
    if (strcmp(seg[1], "dids") == 0) {
        kind = KIND_DIDS;
    } else if (strcmp(seg[1], nm->trunk_type) == 0) {
        kind = KIND_TRUNKS;
    } else if (strcmp(seg[1], nm->group_type) == 0) {
        kind = KIND_GROUPS;
    } else {
        char hint[160] = "";
        if (strcmp(seg[1], "trunks") == 0 || strcmp(seg[1], "voice_in_trunks") == 0 ||
            strcmp(seg[1], "trunk_groups") == 0 || strcmp(seg[1], "voice_in_trunk_groups") == 0)
            snprintf(hint, sizeof hint, " (API version %s names the collections %s and %s)",
                     nm->version, nm->trunk_type, nm->group_type);
        api_no_route(x, hint);
        return;
    }
    if (n == 2) {
        if (!api_method_is(x, "GET"))
            api_method_not_allowed(x, "GET, HEAD");
        else
            api_get_list(x, kind);
        return;
    }
    const char *id = seg[2];
    if (n == 3) {
        if (api_method_is(x, "GET"))
            api_get_one(x, kind, id);
        else if (kind != KIND_TRUNKS && strcmp(x->c->method, "PATCH") == 0)
            kind == KIND_DIDS ? api_patch_did(x, id) : api_patch_group(x, id);
        else
            api_method_not_allowed(x, kind == KIND_TRUNKS ? "GET, HEAD" : "GET, HEAD, PATCH");
        return;
    }
    bool link = n == 5 && strcmp(seg[3], "relationships") == 0;
    if (!(n == 4 || link)) {
        api_no_route(x, NULL);
        return;
    }
    const char *rel = link ? seg[4] : seg[3];
    bool known = kind == KIND_DIDS ? api_is_did_rel(x, rel)
                 : kind == KIND_TRUNKS
                     ? (strcmp(rel, nm->group_rel) == 0 || strcmp(rel, "pop") == 0)
                     : strcmp(rel, nm->trunks_rel) == 0;
    if (!known) {
        api_no_route(x, NULL);
        return;
    }
    if (api_method_is(x, "GET")) {
        api_get_rel(x, kind, id, rel, link);
        return;
    }
    if (link && kind == KIND_DIDS && strcmp(x->c->method, "PATCH") == 0) {
        api_patch_did_link(x, id, rel);
        return;
    }
    if (link && kind == KIND_GROUPS &&
        (strcmp(x->c->method, "PATCH") == 0 || strcmp(x->c->method, "POST") == 0 ||
         strcmp(x->c->method, "DELETE") == 0)) {
        api_group_link(x, id);
        return;
    }
    api_method_not_allowed(x, !link                 ? "GET, HEAD"
                              : kind == KIND_DIDS   ? "GET, HEAD, PATCH"
                              : kind == KIND_GROUPS ? "GET, HEAD, PATCH, POST, DELETE"
                                                    : "GET, HEAD");
}

/* jsonapi-resources refuses a query parameter it does not know with 400 "Param not allowed"
 * (code 105); the known ones are include, filter[...], page[...], fields[...] and sort.
 * False after answering. */
static bool api_query_allowed(struct api_ctx *x)
{
    const char *key;
    json_t *v;
    json_object_foreach(x->c->query, key, v)
    {
        if (strcmp(key, "include") == 0 || strcmp(key, "sort") == 0 ||
            strncmp(key, "filter[", 7) == 0 || strncmp(key, "page[", 5) == 0 ||
            strncmp(key, "fields[", 7) == 0)
            continue;
        char detail[300];
        snprintf(detail, sizeof detail, "%.200s is not allowed.", key);
        api_reply_error(x->out, 400, "105", "Param not allowed", detail, NULL);
        return false;
    }
    return true;
}

void sim_api_handle(struct sim_state *st, const struct sim_call *call, struct sim_reply *out)
{
    char path[API_MAX_PATH];
    char *seg[API_MAX_SEGS];
    size_t n = 0;
    bool too_long = false;
    memset(out, 0, sizeof *out);
    struct api_ctx x = {.c = call, .nm = call->nm, .out = out};
    x.included = json_array();
    x.seen = json_object();
    if (!x.included || !x.seen) {
        out->status = 500;
        out->body = strdup(api_oom_body);
        goto done;
    }
    if (strlen(call->path) >= sizeof path) {
        api_no_route(&x, NULL);
        goto done;
    }
    snprintf(path, sizeof path, "%s", call->path);
    for (char *p = path + (path[0] == '/'), *next; p && *p; p = next) {
        next = strchr(p, '/');
        if (next)
            *next++ = '\0';
        if (n == API_MAX_SEGS || strlen(p) > API_MAX_SEG_LEN || !*p) {
            too_long = true;
            break;
        }
        seg[n++] = p;
    }
    if (too_long) {
        api_no_route(&x, NULL);
        goto done;
    }
    if (!api_query_allowed(&x))
        goto done;
    sim_state_lock(st);
    x.doc = sim_state_doc(st);
    api_route(&x, seg, n);
    sim_state_unlock(st);
done:
    json_decref(x.included);
    json_decref(x.seen);
}
