/*
 * sfdc_outbound: turns one Salesforce Outbound Message into the table a rule sees. The
 * message is parsed by expat in one pass, namespace-aware, with a small stack of frames
 * that knows the notifications() shape (Envelope > Body > notifications > Notification >
 * sObject > fields). Anything that could make a parser do unbounded or external work is
 * refused: a DOCTYPE (so no DTD, no entity declaration), external entities, nesting deeper
 * than SFDC_OUTBOUND_MAX_DEPTH, more than SFDC_OUTBOUND_MAX_ELEMENTS elements, element text
 * over SFDC_OUTBOUND_MAX_TEXT. The SessionId is a live Salesforce credential: it never
 * reaches the table, and the stored copy of the message has its text replaced.
 * Called on HTTP threads (and by reprocess); keeps no state between calls.
 */
#include "sfdc_outbound.h"

#include <expat.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_SEP ' ' /* URIs cannot contain a space */
#define XSI_NS "http://www.w3.org/2001/XMLSchema-instance"
#define REDACTED "[redacted]"

const char sfdc_outbound_ack[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
    "<soapenv:Envelope xmlns:soapenv=\"" SFDC_OUTBOUND_NS_SOAP "\">"
    "<soapenv:Body><notificationsResponse xmlns=\"" SFDC_OUTBOUND_NS "\">"
    "<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>";

/* What an open element is, by where it sits. */
enum frame_kind {
    FRAME_ENVELOPE,
    FRAME_BODY,
    FRAME_SKIP,          /* an element whose content is ignored (soapenv:Header, unknown) */
    FRAME_NOTIFICATIONS, /* outbound:notifications */
    FRAME_SCALAR,        /* OrganizationId, ActionId, EnterpriseUrl, PartnerUrl */
    FRAME_SESSION,       /* SessionId: its text is redacted, never kept */
    FRAME_NOTIFICATION,
    FRAME_NOTIFICATION_ID,
    FRAME_SOBJECT,
    FRAME_FIELD, /* a field of an sObject (or of a field with children) */
};

struct frame {
    enum frame_kind kind;
    const char *key; /* FRAME_SCALAR: the table key; FRAME_FIELD: the field name (owned) */
    json_t *obj;     /* NOTIFICATION, SOBJECT: the table; FIELD: children, once any */
    bool nil;        /* xsi:nil="true" */
};

struct parse_state {
    XML_Parser parser;
    struct frame stack[SFDC_OUTBOUND_MAX_DEPTH];
    int depth;
    size_t elements;
    char *text; /* text of the innermost open element that keeps text */
    size_t text_len;
    json_t *body;
    json_t *notifications;
    bool seen_notifications;
    bool session_seen;
    XML_Index session_start, session_end; /* byte range of the SessionId's text; -1: none */
    char why[160];
};

__attribute__((format(printf, 2, 3))) static void fail(struct parse_state *st, const char *fmt, ...)
{
    va_list ap;

    if (st->why[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(st->why, sizeof st->why, fmt, ap);
        va_end(ap);
    }
    XML_StopParser(st->parser, XML_FALSE);
}

/* The local part of an expanded name "URI local" (or the name itself without a URI). */
static const char *local_name(const char *name)
{
    const char *sp = strrchr(name, NS_SEP);

    return sp ? sp + 1 : name;
}

/* True when the expanded name is ns's local. */
static bool is_name(const char *name, const char *ns, const char *local)
{
    size_t n = strlen(ns);

    return strncmp(name, ns, n) == 0 && name[n] == NS_SEP && strcmp(name + n + 1, local) == 0;
}

/* Value of an attribute by expanded name, or NULL. */
static const char *attr(const char **atts, const char *ns, const char *local)
{
    for (size_t i = 0; atts[i] != NULL; i += 2)
        if (is_name(atts[i], ns, local))
            return atts[i + 1];
    return NULL;
}

static bool keeps_text(enum frame_kind k)
{
    return k == FRAME_SCALAR || k == FRAME_NOTIFICATION_ID || k == FRAME_FIELD;
}

/* The kind of a child element of parent named name. */
static enum frame_kind child_kind(struct parse_state *st, enum frame_kind parent, const char *name,
                                  const char **key)
{
    static const struct {
        const char *local, *key;
    } scalars[] = {{"OrganizationId", "organization_id"},
                   {"ActionId", "action_id"},
                   {"EnterpriseUrl", "enterprise_url"},
                   {"PartnerUrl", "partner_url"}};

    *key = NULL;
    switch (parent) {
    case FRAME_ENVELOPE:
        return is_name(name, SFDC_OUTBOUND_NS_SOAP, "Body") ? FRAME_BODY : FRAME_SKIP;
    case FRAME_BODY:
        if (is_name(name, SFDC_OUTBOUND_NS, "notifications")) {
            if (st->seen_notifications)
                fail(st, "more than one notifications element");
            st->seen_notifications = true;
            return FRAME_NOTIFICATIONS;
        }
        fail(st, "the SOAP body is not a Salesforce outbound notifications message");
        return FRAME_SKIP;
    case FRAME_NOTIFICATIONS:
        for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
            if (is_name(name, SFDC_OUTBOUND_NS, scalars[i].local)) {
                *key = scalars[i].key;
                return FRAME_SCALAR;
            }
        }
        if (is_name(name, SFDC_OUTBOUND_NS, "SessionId")) {
            /* Only one range is redacted: a second SessionId would be stored as sent. */
            if (st->session_seen)
                fail(st, "more than one SessionId");
            st->session_seen = true;
            return FRAME_SESSION;
        }
        if (is_name(name, SFDC_OUTBOUND_NS, "Notification"))
            return FRAME_NOTIFICATION;
        return FRAME_SKIP;
    case FRAME_NOTIFICATION:
        if (is_name(name, SFDC_OUTBOUND_NS, "Id"))
            return FRAME_NOTIFICATION_ID;
        if (is_name(name, SFDC_OUTBOUND_NS, "sObject"))
            return FRAME_SOBJECT;
        return FRAME_SKIP;
    case FRAME_SOBJECT:
    case FRAME_FIELD:
        return FRAME_FIELD;
    case FRAME_SKIP:
    case FRAME_SCALAR:
    case FRAME_SESSION:
    case FRAME_NOTIFICATION_ID:
        return FRAME_SKIP;
    }
    return FRAME_SKIP;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    struct parse_state *st = ud;
    struct frame *f;
    const char *key = NULL;
    const char *nil;
    enum frame_kind kind;

    /* expat may still call back after a stop: once failed, nothing more is done. */
    if (st->why[0] != '\0')
        return;
    if (++st->elements > SFDC_OUTBOUND_MAX_ELEMENTS) {
        fail(st, "more than %d elements", SFDC_OUTBOUND_MAX_ELEMENTS);
        return;
    }
    if (st->depth >= SFDC_OUTBOUND_MAX_DEPTH) {
        fail(st, "elements nest deeper than %d", SFDC_OUTBOUND_MAX_DEPTH);
        return;
    }
    if (st->depth == 0) {
        if (!is_name(name, SFDC_OUTBOUND_NS_SOAP, "Envelope")) {
            fail(st, "the document is not a SOAP 1.1 envelope");
            return;
        }
        kind = FRAME_ENVELOPE;
    } else {
        kind = child_kind(st, st->stack[st->depth - 1].kind, name, &key);
    }
    f = &st->stack[st->depth];
    memset(f, 0, sizeof *f);
    f->kind = kind;
    f->key = key;
    nil = attr(atts, XSI_NS, "nil");
    f->nil = nil != NULL && (strcmp(nil, "true") == 0 || strcmp(nil, "1") == 0);

    switch (kind) {
    case FRAME_NOTIFICATION:
        if (json_array_size(st->notifications) >= SFDC_OUTBOUND_MAX_NOTIFICATIONS) {
            fail(st, "more than %d notifications", SFDC_OUTBOUND_MAX_NOTIFICATIONS);
            return;
        }
        f->obj = json_object();
        if (f->obj == NULL || json_array_append_new(st->notifications, f->obj) != 0) {
            fail(st, "out of memory");
            return;
        }
        break;
    case FRAME_SOBJECT: {
        const char *type = attr(atts, XSI_NS, "type");
        const char *colon = type ? strrchr(type, ':') : NULL;
        json_t *parent = st->stack[st->depth - 1].obj;

        if (json_object_get(parent, "sobject") != NULL) {
            fail(st, "a Notification has more than one sObject");
            return;
        }
        f->obj = json_object();
        if (f->obj == NULL || json_object_set_new(parent, "sobject", f->obj) != 0) {
            fail(st, "out of memory");
            return;
        }
        if (type != NULL &&
            json_object_set_new(f->obj, "type", json_string(colon ? colon + 1 : type)) != 0) {
            fail(st, "out of memory");
            return;
        }
        break;
    }
    case FRAME_FIELD: {
        struct frame *parent = &st->stack[st->depth - 1];

        if (parent->kind == FRAME_FIELD && parent->obj == NULL) {
            /* The parent field has children: it becomes a table. */
            parent->obj = json_object();
            if (parent->obj == NULL) {
                fail(st, "out of memory");
                return;
            }
        }
        f->key = strdup(local_name(name));
        if (f->key == NULL) {
            fail(st, "out of memory");
            return;
        }
        break;
    }
    case FRAME_SESSION:
        st->session_start = XML_GetCurrentByteIndex(st->parser) +
                            XML_GetCurrentByteCount(st->parser); /* after the start tag */
        break;
    default:
        break;
    }
    st->depth++;
    st->text_len = 0;
}

/* Stores a finished field in its parent table (an sObject or a field with children). */
static void end_field(struct parse_state *st, struct frame *f)
{
    json_t *parent = st->stack[st->depth - 1].obj;
    json_t *value;

    if (f->obj != NULL)
        value = f->obj;
    else if (f->nil)
        value = json_null();
    else
        value = json_stringn(st->text ? st->text : "", st->text_len);
    f->obj = NULL;
    if (value == NULL || parent == NULL || json_object_set_new(parent, f->key, value) != 0)
        fail(st, "out of memory");
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    struct parse_state *st = ud;
    struct frame *f;

    (void)name;
    if (st->why[0] != '\0' || st->depth == 0)
        return;
    f = &st->stack[--st->depth];
    switch (f->kind) {
    case FRAME_SCALAR:
        if (!f->nil && st->text_len > 0 &&
            json_object_set_new(st->body, f->key, json_stringn(st->text, st->text_len)) != 0)
            fail(st, "out of memory");
        break;
    case FRAME_SESSION: {
        XML_Index end = XML_GetCurrentByteIndex(st->parser);

        if (end > st->session_start)
            st->session_end = end;
        else
            st->session_start = -1;
        break;
    }
    case FRAME_NOTIFICATION_ID:
        if (json_object_set_new(st->stack[st->depth - 1].obj, "id",
                                json_stringn(st->text ? st->text : "", st->text_len)) != 0)
            fail(st, "out of memory");
        break;
    case FRAME_FIELD:
        end_field(st, f);
        free((char *)f->key);
        f->key = NULL;
        break;
    default:
        break;
    }
    st->text_len = 0;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    struct parse_state *st = ud;

    if (st->why[0] != '\0' || st->depth == 0 || !keeps_text(st->stack[st->depth - 1].kind) ||
        len <= 0)
        return;
    if (st->text_len + (size_t)len > SFDC_OUTBOUND_MAX_TEXT) {
        fail(st, "an element's text exceeds %d bytes", SFDC_OUTBOUND_MAX_TEXT);
        return;
    }
    if (st->text == NULL) {
        st->text = malloc(SFDC_OUTBOUND_MAX_TEXT);
        if (st->text == NULL) {
            fail(st, "out of memory");
            return;
        }
    }
    memcpy(st->text + st->text_len, s, (size_t)len);
    st->text_len += (size_t)len;
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    fail(ud, "DOCTYPE is not allowed");
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name, int is_param,
                                   const XML_Char *value, int value_len, const XML_Char *base,
                                   const XML_Char *sysid, const XML_Char *pubid,
                                   const XML_Char *notation)
{
    (void)name;
    (void)is_param;
    (void)value;
    (void)value_len;
    (void)base;
    (void)sysid;
    (void)pubid;
    (void)notation;
    fail(ud, "entity declarations are not allowed");
}

static int XMLCALL on_external_entity(XML_Parser p, const XML_Char *context, const XML_Char *base,
                                      const XML_Char *sysid, const XML_Char *pubid)
{
    (void)p;
    (void)context;
    (void)base;
    (void)sysid;
    (void)pubid;
    return XML_STATUS_ERROR; /* never fetched */
}

/* Checks the finished table; fills st->why on a problem. */
static bool check_message(struct parse_state *st)
{
    size_t i;
    json_t *n;

    if (!st->seen_notifications) {
        fail(st, "no notifications element in the SOAP body");
        return false;
    }
    if (json_object_get(st->body, "organization_id") == NULL) {
        fail(st, "no OrganizationId");
        return false;
    }
    if (json_array_size(st->notifications) == 0) {
        fail(st, "no Notification");
        return false;
    }
    json_array_foreach(st->notifications, i, n)
    {
        json_t *id = json_object_get(n, "id");

        if (!json_is_string(id) || json_string_length(id) == 0) {
            fail(st, "Notification %zu has no Id", i + 1);
            return false;
        }
    }
    return true;
}

/* The message with the SessionId's text replaced. */
static int redact(const unsigned char *xml, size_t len, const struct parse_state *st,
                  struct sfdc_outbound *out)
{
    size_t start, end, rlen = sizeof REDACTED - 1;

    if (st->session_start < 0 || st->session_end <= st->session_start ||
        (size_t)st->session_end > len) {
        out->redacted = malloc(len + 1);
        if (out->redacted == NULL)
            return -1;
        memcpy(out->redacted, xml, len);
        out->redacted[len] = '\0';
        out->redacted_len = len;
        return 0;
    }
    start = (size_t)st->session_start;
    end = (size_t)st->session_end;
    out->redacted_len = len - (end - start) + rlen;
    out->redacted = malloc(out->redacted_len + 1);
    if (out->redacted == NULL)
        return -1;
    memcpy(out->redacted, xml, start);
    memcpy(out->redacted + start, REDACTED, rlen);
    memcpy(out->redacted + start + rlen, xml + end, len - end);
    out->redacted[out->redacted_len] = '\0';
    return 0;
}

int sfdc_outbound_parse(const unsigned char *xml, size_t len, struct sfdc_outbound *out, char *why,
                        size_t why_len)
{
    struct parse_state st;
    int rc = -1;

    memset(out, 0, sizeof *out);
    memset(&st, 0, sizeof st);
    st.session_start = st.session_end = -1;
    if (len > (size_t)0x7fffffff) {
        snprintf(why, why_len, "the message is too large");
        return -1;
    }
    st.body = json_object();
    st.notifications = json_array();
    /* The encoding argument overrides any declared one: only UTF-8 is read. */
    st.parser = XML_ParserCreateNS("UTF-8", NS_SEP);
    if (st.body == NULL || st.notifications == NULL || st.parser == NULL ||
        json_object_set(st.body, "notifications", st.notifications) != 0) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    XML_SetUserData(st.parser, &st);
    XML_SetElementHandler(st.parser, on_start, on_end);
    XML_SetCharacterDataHandler(st.parser, on_text);
    XML_SetStartDoctypeDeclHandler(st.parser, on_doctype);
    XML_SetEntityDeclHandler(st.parser, on_entity_decl);
    XML_SetExternalEntityRefHandler(st.parser, on_external_entity);
    XML_SetParamEntityParsing(st.parser, XML_PARAM_ENTITY_PARSING_NEVER);

    if (XML_Parse(st.parser, (const char *)xml, (int)len, XML_TRUE) != XML_STATUS_OK) {
        if (st.why[0] != '\0')
            snprintf(why, why_len, "%s", st.why);
        else
            snprintf(why, why_len, "XML error at line %lu: %s",
                     (unsigned long)XML_GetCurrentLineNumber(st.parser),
                     XML_ErrorString(XML_GetErrorCode(st.parser)));
        goto out;
    }
    if (!check_message(&st)) {
        snprintf(why, why_len, "%s", st.why);
        goto out;
    }
    if (redact(xml, len, &st, out) != 0) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    out->body = st.body;
    st.body = NULL;
    rc = 0;
out:
    /* Frames left open by a stopped parse still own their field names and tables. */
    for (int i = 0; i < st.depth; i++) {
        if (st.stack[i].kind == FRAME_FIELD) {
            free((char *)st.stack[i].key);
            json_decref(st.stack[i].obj);
        }
    }
    if (st.parser != NULL)
        XML_ParserFree(st.parser);
    free(st.text);
    json_decref(st.notifications);
    json_decref(st.body);
    return rc;
}

bool sfdc_outbound_org_matches(const char *configured, const char *received)
{
    size_t c, r;

    if (configured == NULL || received == NULL)
        return false;
    c = strlen(configured);
    r = strlen(received);
    if (c == r)
        return strcmp(configured, received) == 0;
    return c == 15 && r == 18 && strncmp(configured, received, 15) == 0;
}

void sfdc_outbound_free(struct sfdc_outbound *m)
{
    if (m == NULL)
        return;
    json_decref(m->body);
    free(m->redacted);
    m->body = NULL;
    m->redacted = NULL;
    m->redacted_len = 0;
}
