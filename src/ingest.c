/*
 * ingest: turns one HTTP request on /hooks/{source} into a stored event or a
 * precise refusal. Order of checks: route (404), method (405), media type
 * (415), size (413), signature (401), body syntax and event id (400), the
 * OrganizationId of a Salesforce Outbound Message (403), then the store (202/200, or
 * 503 + Retry-After; a stored or duplicate Salesforce message gets the SOAP ack). Called on
 * libmicrohttpd's threads; the only shared state is the read-only config and the store handle.
 * Rejected requests are audited asynchronously; accepted ones in the event's transaction.
 */
#include "ingest.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit.h"
#include "digest.h"
#include "jout.h"
#include "log.h"
#include "metrics.h"
#include "rules.h"
#include "sfdc_outbound.h"

#define INGEST_MAX_EVENT_ID 256
#define INGEST_MAX_FORM_FIELDS 1000

struct ingest {
    const struct config *cfg;
    struct store *st;
    struct ingest_planner planner;
};

struct ingest *ingest_create(const struct config *cfg, struct store *st)
{
    struct ingest *ing = calloc(1, sizeof *ing);
    if (!ing)
        return NULL;
    ing->cfg = cfg;
    ing->st = st;
    return ing;
}

void ingest_set_planner(struct ingest *ing, const struct ingest_planner *planner)
{
    if (planner)
        ing->planner = *planner;
    else
        memset(&ing->planner, 0, sizeof ing->planner);
}

void ingest_destroy(struct ingest *ing)
{
    free(ing);
}

void ingest_problem(struct ingest_response *resp, int status, const char *slug, const char *title,
                    const char *detail)
{
    char type[128];
    snprintf(type, sizeof type, "urn:hookline:problem:%s", slug);
    json_t *p = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", title, "status", status,
                          "detail", detail ? detail : title);
    free(resp->body);
    resp->status = status;
    resp->body = p ? json_dumps(p, JSON_COMPACT) : NULL;
    resp->content_type = "application/problem+json";
    json_decref(p);
}

/* The answer to a stored or duplicate event: {"event_id", "status"[, "jobs"]}
 * (jobs < 0 leaves it out), written without a jansson tree (hot path). */
static void ingest_event_answer(struct ingest_response *resp, int status, const char *event_id,
                                const char *outcome, long long jobs)
{
    struct jout o = {0};
    jout_cstr(&o, "{\"event_id\":");
    jout_string(&o, event_id, strlen(event_id), false);
    jout_cstr(&o, ",\"status\":");
    jout_string(&o, outcome, strlen(outcome), false);
    if (jobs >= 0) {
        jout_cstr(&o, ",\"jobs\":");
        jout_int(&o, jobs);
    }
    jout_raw(&o, "}", 1);
    free(resp->body);
    resp->status = status;
    resp->body = o.failed ? NULL : o.p;
    if (o.failed)
        free(o.p);
    resp->content_type = "application/json";
}

/* ---------- rejected requests: metrics and an asynchronous audit record ---------- */

struct ingest_async_audit {
    struct store_op op;
    json_t *rec;
};

static void ingest_async_done(struct store_op *op, void *ctx)
{
    struct ingest_async_audit *a = ctx;
    if (store_op_failed(op))
        log_write(LOG_WARN, "audit record not stored", (const char *[]){"error", op->error, NULL});
    json_decref(a->rec);
    free(a);
}

static void ingest_reject(struct ingest *ing, const char *source, const char *metric_status,
                          int http_status, const char *reason, const char *remote)
{
    metrics_event_received(source, metric_status);
    struct ingest_async_audit *a = calloc(1, sizeof *a);
    if (!a)
        return;
    a->rec = audit_record_new("event.rejected", source, NULL);
    if (!a->rec) {
        free(a);
        return;
    }
    audit_detail_set_int(a->rec, "status", http_status);
    audit_detail_set_str(a->rec, "reason", reason);
    audit_detail_set_str(a->rec, "remote", remote);
    a->op.kind = STORE_OP_AUDIT;
    a->op.audit = &a->rec;
    a->op.naudit = 1;
    a->op.done = ingest_async_done;
    a->op.done_ctx = a;
    if (store_submit(ing->st, &a->op) < 0) {
        log_write(LOG_WARN, "audit record dropped", (const char *[]){"error", a->op.error, NULL});
        json_decref(a->rec);
        free(a);
    }
}

/* ---------- pre-body checks ---------- */

enum ingest_media {
    INGEST_MEDIA_OTHER = 0,
    INGEST_MEDIA_JSON,
    INGEST_MEDIA_FORM,
    INGEST_MEDIA_XML
};

static enum ingest_media ingest_media_type(const char *ct)
{
    if (!ct)
        return INGEST_MEDIA_OTHER;
    while (*ct == ' ')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return INGEST_MEDIA_JSON;
    if (n == 33 && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0)
        return INGEST_MEDIA_FORM;
    if (n == 8 && strncasecmp(ct, "text/xml", 8) == 0)
        return INGEST_MEDIA_XML;
    /* Structured syntax suffix: application/vnd.foo+json */
    if (n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
        strncasecmp(ct + n - 5, "+json", 5) == 0)
        return INGEST_MEDIA_JSON;
    return INGEST_MEDIA_OTHER;
}

bool ingest_precheck(struct ingest *ing, const char *source, const char *method,
                     const char *content_type, long long content_length,
                     struct ingest_response *resp)
{
    char detail[256];
    const struct config_source *src = source ? config_find_source(ing->cfg, source) : NULL;
    if (!src) {
        metrics_event_received("unknown", "unknown_source");
        ingest_problem(resp, 404, "unknown-source", "Unknown source",
                       "no webhook source with this name is configured");
        return false;
    }
    if (strcmp(method, "POST") != 0) {
        metrics_event_received(source, "method_not_allowed");
        snprintf(detail, sizeof detail, "webhooks are delivered with POST, not %.16s", method);
        ingest_problem(resp, 405, "method-not-allowed", "Method not allowed", detail);
        resp->allow = "POST";
        return false;
    }
    enum ingest_media media = ingest_media_type(content_type);
    if (src->format == CONFIG_FORMAT_SALESFORCE_OUTBOUND && media != INGEST_MEDIA_XML) {
        snprintf(detail, sizeof detail,
                 "content type %.64s is not accepted; this source takes Salesforce Outbound "
                 "Messages (text/xml)",
                 content_type ? content_type : "(none)");
        ingest_reject(ing, source, "unsupported_media_type", 415, detail, NULL);
        ingest_problem(resp, 415, "unsupported-media-type", "Unsupported media type", detail);
        return false;
    }
    if (src->format == CONFIG_FORMAT_WEBHOOK &&
        (media == INGEST_MEDIA_OTHER || media == INGEST_MEDIA_XML)) {
        snprintf(detail, sizeof detail,
                 "content type %.64s is not accepted; send application/json or "
                 "application/x-www-form-urlencoded",
                 content_type ? content_type : "(none)");
        ingest_reject(ing, source, "unsupported_media_type", 415, detail, NULL);
        ingest_problem(resp, 415, "unsupported-media-type", "Unsupported media type", detail);
        return false;
    }
    if (content_length >= 0 && (unsigned long long)content_length > ing->cfg->max_body_bytes) {
        ingest_too_large(ing, source, resp);
        return false;
    }
    return true;
}

void ingest_too_large(struct ingest *ing, const char *source, struct ingest_response *resp)
{
    char detail[160];
    snprintf(detail, sizeof detail, "the body exceeds the limit of %zu bytes",
             ing->cfg->max_body_bytes);
    ingest_reject(ing, source, "too_large", 413, detail, NULL);
    ingest_problem(resp, 413, "body-too-large", "Body too large", detail);
}

/* ---------- body decoding ---------- */

static int ingest_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes s[0..n) ('+' is a space) into a new string; NULL on bad input. */
static char *ingest_form_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            int hi = i + 2 < n ? ingest_hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? ingest_hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* Decodes a form body into an object of fields; a repeated field becomes an
 * array of its values. Returns a new reference, or NULL with why set. */
static json_t *ingest_parse_form(const unsigned char *body, size_t len, char *why, size_t why_len)
{
    json_t *obj = json_object();
    size_t i = 0, fields = 0;
    const char *s = (const char *)body;
    if (!obj)
        return NULL;
    if (memchr(body, '\0', len)) {
        snprintf(why, why_len, "the form body contains a NUL byte");
        goto fail;
    }
    while (i < len) {
        size_t end = i;
        while (end < len && s[end] != '&')
            end++;
        if (end > i) {
            if (++fields > INGEST_MAX_FORM_FIELDS) {
                snprintf(why, why_len, "the form has more than %d fields", INGEST_MAX_FORM_FIELDS);
                goto fail;
            }
            size_t eq = i;
            while (eq < end && s[eq] != '=')
                eq++;
            char *key = ingest_form_decode(s + i, eq - i);
            char *val =
                ingest_form_decode(s + (eq < end ? eq + 1 : end), eq < end ? end - eq - 1 : 0);
            json_t *jv = val ? json_string(val) : NULL;
            if (!key || !jv || !*key) {
                snprintf(why, why_len,
                         key && jv && !*key ? "a form field has an empty name"
                                            : "bad percent-encoding or UTF-8 in the form body");
                free(key);
                free(val);
                json_decref(jv);
                goto fail;
            }
            json_t *prev = json_object_get(obj, key);
            if (!prev) {
                json_object_set_new(obj, key, jv);
            } else if (json_is_array(prev)) {
                json_array_append_new(prev, jv);
            } else {
                json_t *arr = json_array();
                json_array_append(arr, prev);
                json_array_append_new(arr, jv);
                json_object_set_new(obj, key, arr);
            }
            free(key);
            free(val);
        }
        i = end + 1;
    }
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

struct jdoc *ingest_decode_body(const char *content_type, const unsigned char *body, size_t len,
                                char *why, size_t why_len)
{
    if (ingest_media_type(content_type) == INGEST_MEDIA_FORM) {
        json_t *fields = ingest_parse_form(body, len, why, why_len);
        struct jdoc *d = fields ? jdoc_from_json(fields, why, why_len) : NULL;
        json_decref(fields);
        return d;
    }
    if (ingest_media_type(content_type) == INGEST_MEDIA_XML) {
        struct sfdc_outbound m;
        if (sfdc_outbound_parse(body, len, &m, why, why_len) != 0)
            return NULL;
        struct jdoc *d = jdoc_from_json(m.body, why, why_len);
        sfdc_outbound_free(&m);
        return d;
    }
    return jdoc_parse((const char *)body, len, 0, 0, why, why_len);
}

static bool ingest_event_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > INGEST_MAX_EVENT_ID)
        return false;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* The event id of a Salesforce Outbound Message: its one notification Id, or for a
 * message of several, "sha256:" + the SHA-256 (hex) of the Ids joined by commas. A
 * redelivery carries the same notifications, so it gets the same id. */
static char *ingest_sfdc_event_id(const struct jdoc *body, char *why, size_t why_len)
{
    const struct jdoc_node *arr = body ? jdoc_pointer(body, "/notifications") : NULL;
    size_t n = arr && arr->type == JDOC_ARRAY ? arr->len : 0;
    struct jout o = {0};
    char hex[DIGEST_SHA256_HEX_LEN + 1];
    char *id = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct jdoc_node *v = jdoc_get(body, jdoc_at(body, arr, i), "id", 2);
        if (!v || v->type != JDOC_STRING) {
            free(o.p);
            snprintf(why, why_len, "Notification %zu has no Id", i + 1);
            return NULL;
        }
        if (n == 1) {
            id = strdup(jdoc_str(body, v));
            break;
        }
        if (i > 0)
            jout_raw(&o, ",", 1);
        jout_raw(&o, jdoc_str(body, v), v->len);
    }
    if (n == 0) {
        snprintf(why, why_len, "no Notification");
        return NULL;
    }
    if (n > 1 && !o.failed) {
        digest_sha256_hex(o.p, o.len, hex);
        size_t len = sizeof "sha256:" + DIGEST_SHA256_HEX_LEN;
        id = malloc(len);
        if (id)
            snprintf(id, len, "sha256:%s", hex);
    }
    free(o.p);
    if (!id) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    if (!ingest_event_id_ok(id)) {
        free(id);
        snprintf(why, why_len, "the event id must be 1-%d printable characters",
                 INGEST_MAX_EVENT_ID);
        return NULL;
    }
    return id;
}

char *ingest_derive_event_id(const struct config_source *src, const struct ingest_request *req,
                             const struct jdoc *body, char *why, size_t why_len)
{
    char hex[DIGEST_SHA256_HEX_LEN + 1];
    char buf[64];
    const char *id = NULL;
    enum config_event_id kind = src->event_id;
    const char *arg = src->event_id_arg;

    if (kind == CONFIG_EVENT_ID_DEFAULT && src->format == CONFIG_FORMAT_SALESFORCE_OUTBOUND)
        return ingest_sfdc_event_id(body, why, why_len);
    if (kind == CONFIG_EVENT_ID_DEFAULT) {
        if (src->verify.scheme == VERIFY_SCHEME_STANDARD_WEBHOOKS) {
            id = req->header(req->lookup_ctx, "webhook-id");
            if (!id)
                id = req->header(req->lookup_ctx, "svix-id");
            if (!id) {
                snprintf(why, why_len, "missing header webhook-id");
                return NULL;
            }
        } else {
            kind = CONFIG_EVENT_ID_BODY_SHA256;
        }
    }
    if (kind == CONFIG_EVENT_ID_HEADER) {
        id = req->header(req->lookup_ctx, arg);
        if (!id) {
            snprintf(why, why_len, "missing header %.64s holding the event id", arg);
            return NULL;
        }
    } else if (kind == CONFIG_EVENT_ID_JSON) {
        const struct jdoc_node *v = body ? jdoc_pointer(body, arg) : NULL;
        if (v && v->type == JDOC_STRING && strlen(jdoc_str(body, v)) == v->len) {
            id = jdoc_str(body, v);
        } else if (v && v->type == JDOC_INT) {
            snprintf(buf, sizeof buf, "%lld", v->u.i);
            id = buf;
        } else {
            snprintf(why, why_len, "no string or integer event id at %.64s in the body", arg);
            return NULL;
        }
    } else if (kind == CONFIG_EVENT_ID_BODY_SHA256) {
        digest_sha256_hex(req->body, req->body_len, hex);
        id = hex;
    }
    if (!ingest_event_id_ok(id)) {
        snprintf(why, why_len, "the event id must be 1-%d printable characters",
                 INGEST_MAX_EVENT_ID);
        return NULL;
    }
    return strdup(id);
}

/* Headers whose value is a credential: stored and shown to rules as
 * "[redacted]". ctx is the struct config_source. */
static bool ingest_header_is_secret(const char *key, void *ctx)
{
    const struct config_source *src = ctx;
    return strcmp(key, "authorization") == 0 || strcmp(key, "proxy-authorization") == 0 ||
           strcmp(key, "cookie") == 0 || strcmp(key, "webhook-signature") == 0 ||
           strcmp(key, "svix-signature") == 0 ||
           (src->verify.header && strcasecmp(key, src->verify.header) == 0);
}

/* Headers as shown to the rule: values of credentials replaced (the stored
 * text is redacted the same way by jout_dump_sorted with the same predicate).
 * Returns a new reference, or NULL on out of memory. */
static json_t *ingest_redacted_headers(const struct config_source *src, json_t *headers)
{
    json_t *copy = json_deep_copy(headers);
    const char *key;
    json_t *v;
    void *tmp;
    if (!copy)
        return NULL;
    json_object_foreach_safe(copy, tmp, key, v)
    {
        if (ingest_header_is_secret(key, (void *)src) &&
            json_object_set_new(copy, key, json_string("[redacted]")) != 0) {
            json_decref(copy);
            return NULL;
        }
    }
    return copy;
}

static const char *ingest_verify_slug(enum verify_status s)
{
    switch (s) {
    case VERIFY_MISSING:
        return "signature-missing";
    case VERIFY_STALE:
        return "timestamp-out-of-tolerance";
    case VERIFY_MALFORMED:
        return "signature-malformed";
    default:
        return "signature-invalid";
    }
}

/* A Salesforce Outbound Message: parse it (400 when it is not one, or refused: DTD,
 * entities, limits), check its OrganizationId (403), and keep the table as p->body and
 * the SessionId-redacted message as p->stored_body. Returns false with *resp filled. */
static bool ingest_prepare_sfdc(struct ingest *ing, const struct config_source *src,
                                const struct ingest_request *req, struct ingest_pending *p,
                                struct ingest_response *resp)
{
    char why[256];
    struct sfdc_outbound m;
    if (sfdc_outbound_parse(req->body, req->body_len, &m, why, sizeof why) != 0) {
        if (strcmp(why, "out of memory") == 0) {
            ingest_problem(resp, 503, "out-of-memory", "Service unavailable", "out of memory");
            resp->retry_after_s = 1;
            return false;
        }
        ingest_reject(ing, src->name, "malformed", 400, why, req->remote);
        ingest_problem(resp, 400, "malformed-body", "Malformed body", why);
        return false;
    }
    const char *org = json_string_value(json_object_get(m.body, "organization_id"));
    if (!sfdc_outbound_org_matches(src->organization_id, org)) {
        char detail[160];
        snprintf(detail, sizeof detail,
                 "OrganizationId %.18s is not the organization configured for this source",
                 org ? org : "");
        ingest_reject(ing, src->name, "forbidden", 403, detail, req->remote);
        ingest_problem(resp, 403, "organization-mismatch", "Forbidden", detail);
        sfdc_outbound_free(&m);
        return false;
    }
    p->body = jdoc_from_json(m.body, why, sizeof why);
    p->stored_body = m.redacted;
    p->stored_len = m.redacted_len;
    m.redacted = NULL;
    sfdc_outbound_free(&m);
    if (!p->body) {
        ingest_problem(resp, 503, "out-of-memory", "Service unavailable", "out of memory");
        resp->retry_after_s = 1;
        return false;
    }
    return true;
}

/* The SOAP acknowledgement Salesforce waits for (200, text/xml). */
static void ingest_sfdc_ack(struct ingest_response *resp)
{
    free(resp->body);
    resp->status = 200;
    resp->body = strdup(sfdc_outbound_ack);
    resp->content_type = "text/xml; charset=utf-8";
}

bool ingest_prepare(struct ingest *ing, const struct ingest_request *req, struct ingest_pending *p,
                    struct ingest_response *resp)
{
    char why[256];
    const struct config_source *src = config_find_source(ing->cfg, req->source);
    if (!src) { /* the precheck answers this; kept for direct callers */
        ingest_problem(resp, 404, "unknown-source", "Unknown source",
                       "no webhook source with this name is configured");
        return false;
    }
    p->src = src;

    struct verify_request vr = {
        .method = req->method,
        .url = req->url,
        .body = req->body,
        .body_len = req->body_len,
        .header = req->header,
        .query = req->query,
        .ctx = req->lookup_ctx,
        .now = (int64_t)req->now,
    };
    struct verify_result vres;
    if (verify_request(&src->verify, &vr, &vres) != VERIFY_OK) {
        ingest_reject(ing, src->name, "unauthorized", 401, vres.reason, req->remote);
        ingest_problem(resp, 401, ingest_verify_slug(vres.status), "Unauthorized", vres.reason);
        return false;
    }

    /* Authentic: decode the body. */
    const unsigned char *stored = req->body;
    size_t stored_len = req->body_len;
    if (src->format == CONFIG_FORMAT_SALESFORCE_OUTBOUND) {
        if (!ingest_prepare_sfdc(ing, src, req, p, resp))
            return false;
        stored = p->stored_body;
        stored_len = p->stored_len;
    } else {
        p->body = ingest_decode_body(req->content_type, req->body, req->body_len, why, sizeof why);
    }
    if (!p->body) {
        ingest_reject(ing, src->name, "malformed", 400, why, req->remote);
        ingest_problem(resp, 400, "malformed-body", "Malformed body", why);
        return false;
    }
    p->event_id = ingest_derive_event_id(src, req, p->body, why, sizeof why);
    if (!p->event_id) {
        ingest_reject(ing, src->name, "malformed", 400, why, req->remote);
        ingest_problem(resp, 400, "event-id-missing", "Event id missing", why);
        return false;
    }
    /* The stored headers are written with secrets redacted, straight from the
     * request's object; a rule gets its own redacted copy. */
    struct jout_opts hopts = {
        .replace = ingest_header_is_secret, .replacement = "[redacted]", .ctx = (void *)src};
    p->headers_json = jout_dump_sorted(req->headers, &hopts);
    json_t *redacted = ing->planner.plan ? ingest_redacted_headers(src, req->headers) : NULL;
    p->content_type = strdup(req->content_type);
    p->received = audit_record_new("event.received", src->name, p->event_id);
    if (!p->headers_json || !p->content_type || !p->received || (ing->planner.plan && !redacted)) {
        json_decref(redacted);
        ingest_problem(resp, 503, "out-of-memory", "Service unavailable", "out of memory");
        resp->retry_after_s = 1;
        return false;
    }

    /* The rule engine's seam: plan jobs to store with the event. */
    if (ing->planner.plan) {
        struct ingest_event ev = {src->name, p->event_id, req->now,  redacted,
                                  p->body,   stored,      stored_len};
        ing->planner.plan(ing->planner.ctx, &ev, &p->plan);
    }
    json_decref(redacted);

    audit_detail_set_str(p->received, "content_type", req->content_type);
    audit_detail_set_int(p->received, "bytes", (long long)req->body_len);
    audit_detail_set_int(p->received, "jobs", (long long)p->plan.njobs);
    audit_detail_set_str(p->received, "remote", req->remote);
    p->audit = calloc(1 + p->plan.naudit, sizeof *p->audit);
    if (!p->audit) {
        ingest_problem(resp, 503, "out-of-memory", "Service unavailable", "out of memory");
        resp->retry_after_s = 1;
        return false;
    }
    p->audit[0] = p->received;
    for (size_t i = 0; i < p->plan.naudit; i++)
        p->audit[1 + i] = p->plan.audit[i];

    struct store_op *op = &p->op;
    op->kind = STORE_OP_EVENT;
    struct store_op_event *ev = &op->u.event;
    ev->source = src->name;
    ev->event_id = p->event_id;
    ev->received_at = req->now;
    ev->dedupe_window_s = src->dedupe_window_s;
    ev->status = p->plan.rule_failed ? "rule_failed" : "accepted";
    ev->content_type = p->content_type;
    ev->headers_json = p->headers_json;
    ev->body = stored;
    ev->body_len = stored_len;
    ev->rule_version = p->plan.rule_version;
    ev->jobs = p->plan.jobs;
    ev->njobs = p->plan.njobs;
    ev->plan_json = p->plan.plan_json;
    op->audit = p->audit;
    op->naudit = 1 + p->plan.naudit;
    return true;
}

void ingest_complete(struct ingest *ing, struct ingest_pending *p, struct ingest_response *resp)
{
    const char *source = p->src ? p->src->name : "unknown";
    bool sfdc = p->src && p->src->format == CONFIG_FORMAT_SALESFORCE_OUTBOUND;
    switch (p->op.u.event.result) {
    case STORE_EVENT_STORED: {
        const char *status = p->plan.rule_failed ? "rule_failed" : "accepted";
        metrics_event_received(source, status);
        if (sfdc)
            ingest_sfdc_ack(resp);
        else
            ingest_event_answer(resp, 202, p->event_id, status, (long long)p->plan.njobs);
        break;
    }
    case STORE_EVENT_DUPLICATE:
        metrics_event_received(source, "duplicate");
        if (sfdc)
            ingest_sfdc_ack(resp);
        else
            ingest_event_answer(resp, 200, p->event_id, "duplicate", -1);
        break;
    case STORE_EVENT_PENDING: /* not submitted: cannot happen */
    case STORE_EVENT_FAILED:
        metrics_event_received(source, "store_unavailable");
        log_write(LOG_WARN, "event not stored",
                  (const char *[]){"source", source, "error", p->op.error, NULL});
        ingest_problem(resp, 503, "store-unavailable", "Service unavailable",
                       "the event could not be stored durably; retry later");
        resp->retry_after_s = 2;
        break;
    }
    (void)ing;
}

void ingest_pending_free(struct ingest_pending *p)
{
    if (p->plan.release)
        p->plan.release(&p->plan);
    free(p->event_id);
    free(p->headers_json);
    free(p->content_type);
    free(p->stored_body);
    jdoc_free(p->body);
    json_decref(p->received);
    free(p->audit);
    memset(p, 0, sizeof *p);
}

/* ---------- the rule engine as planner ---------- */

struct ingest_rules_plan {
    struct rules_result res;
    struct store_job_spec *specs;
    json_t *decision;
    char *plan_json; /* stored with the event for `rule-test --replay` */
};

static void ingest_rules_release(struct ingest_plan *plan)
{
    struct ingest_rules_plan *h = plan->owner;
    if (!h)
        return;
    rules_result_free(&h->res);
    free(h->specs);
    json_decref(h->decision);
    free(h->plan_json);
    free(h);
    plan->owner = NULL;
}

static int ingest_rules_plan(void *ctx, const struct ingest_event *ev, struct ingest_plan *plan)
{
    struct rules *rules = ctx;
    struct ingest_rules_plan *h = calloc(1, sizeof *h);
    if (!h) {
        plan->rule_failed = true;
        return 0;
    }
    struct rules_event rev = {ev->source, ev->event_id, ev->received_at, ev->headers,
                              ev->body,   ev->raw,      ev->raw_len};
    rules_run(rules, &rev, &h->res);
    metrics_rule_duration(h->res.duration_s);

    static const char *const kinds[] = {"rule.decided", "rule.skipped", "rule.failed"};
    h->decision = audit_record_new(kinds[h->res.outcome], ev->source, ev->event_id);
    audit_detail_set_str(h->decision, "rule_version", h->res.version);
    size_t n = h->res.plan.n;
    if (h->res.outcome == RULES_DECIDED) {
        json_t *actions = json_array();
        h->specs = n ? calloc(n, sizeof *h->specs) : NULL;
        for (size_t i = 0; i < n; i++) {
            struct actions_job *j = &h->res.plan.jobs[i];
            json_array_append_new(actions, json_string(j->action));
            if (h->specs)
                h->specs[i] = (struct store_job_spec){j->action, j->method, j->path,     j->body,
                                                      j->did,    j->number, j->order_key};
        }
        json_object_set_new(json_object_get(h->decision, "detail"), "actions", actions);
        audit_detail_set_int(h->decision, "jobs", (long long)n);
        if (n == 1 && h->res.plan.jobs[0].did)
            json_object_set_new(h->decision, "did", json_string(h->res.plan.jobs[0].did));
        if (n == 1 && h->res.plan.jobs[0].number)
            json_object_set_new(h->decision, "number", json_string(h->res.plan.jobs[0].number));
        if (n && !h->specs) { /* out of memory: do not lose the event, fail the rule */
            h->res.outcome = RULES_FAILED;
            snprintf(h->res.message, sizeof h->res.message, "out of memory planning jobs");
        }
    } else {
        audit_detail_set_str(h->decision, "reason", h->res.message);
    }
    if (h->res.outcome == RULES_FAILED)
        log_write(LOG_WARN, "rule failed",
                  (const char *[]){"source", ev->source, "event_id", ev->event_id, "error",
                                   h->res.message, NULL});
    h->plan_json = rules_outcome_text(&h->res); /* NULL (out of memory): none stored */
    plan->plan_json = h->plan_json;
    plan->rule_failed = h->res.outcome == RULES_FAILED;
    plan->jobs = plan->rule_failed ? NULL : h->specs;
    plan->njobs = plan->rule_failed ? 0 : n;
    plan->audit = &h->decision;
    plan->naudit = h->decision ? 1 : 0;
    plan->rule_version = h->res.version;
    plan->release = ingest_rules_release;
    plan->owner = h;
    return 0;
}

void ingest_use_rules(struct ingest *ing, struct rules *rules)
{
    struct ingest_planner p = {ingest_rules_plan, rules};
    ingest_set_planner(ing, rules ? &p : NULL);
}

int ingest_reprocess(struct ingest *ing, const struct store_event_row *row, char *outcome,
                     size_t outcome_len, char *err, size_t err_len)
{
    struct ingest_plan plan = {0};
    json_t *headers = json_loads(row->headers_json ? row->headers_json : "{}", 0, NULL);
    struct jdoc *body =
        ingest_decode_body(row->content_type, row->body, row->body_len, err, err_len);
    json_t *note = audit_record_new("admin.reprocess", row->source, row->event_id);
    int rc = -1;
    if (!headers || !body || !note) {
        if (!body && err[0] == '\0')
            snprintf(err, err_len, "out of memory");
        goto out;
    }
    if (!ing->planner.plan) {
        snprintf(err, err_len, "no rules.script is configured");
        goto out;
    }
    struct ingest_event ev = {row->source, row->event_id, row->received_at, headers,
                              body,        row->body,     row->body_len};
    ing->planner.plan(ing->planner.ctx, &ev, &plan);
    audit_detail_set_int(note, "event_row", (long long)row->row);
    audit_detail_set_str(note, "outcome", plan.rule_failed ? "rule_failed" : "accepted");
    json_t **audit = calloc(1 + plan.naudit, sizeof *audit);
    if (!audit) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    audit[0] = note;
    for (size_t i = 0; i < plan.naudit; i++)
        audit[1 + i] = plan.audit[i];
    struct store_op op = {
        .kind = STORE_OP_REPLAN,
        .u.replan = {.row = row->row,
                     .source = row->source,
                     .event_id = row->event_id,
                     .received_at = row->received_at,
                     .status = plan.rule_failed ? "rule_failed" : "accepted",
                     .rule_version = plan.rule_version,
                     .jobs = plan.jobs,
                     .njobs = plan.njobs},
        .audit = audit,
        .naudit = 1 + plan.naudit,
    };
    if (store_submit_wait(ing->st, &op) < 0) {
        snprintf(err, err_len, "%s", op.error);
        free(audit);
        goto out;
    }
    free(audit);
    if (op.u.replan.result == STORE_REPLAN_NOT_RULE_FAILED)
        snprintf(outcome, outcome_len, "already_reprocessed");
    else
        snprintf(outcome, outcome_len, "%s", op.u.replan.status);
    rc = 0;
out:
    if (plan.release)
        plan.release(&plan);
    json_decref(headers);
    jdoc_free(body);
    json_decref(note);
    return rc;
}
