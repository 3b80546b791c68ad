/*
 * ingest: the webhook path of docs/contract.md section 3, independent of the HTTP library.
 * It checks the route, method, media type and size, verifies the signature,
 * decodes the body, derives the event id, lets the rule engine plan jobs
 * (through the planner seam) and prepares one store operation; when the store
 * reports back it builds the answer (202/200/503). Runs on HTTP threads; holds
 * no lock of its own.
 */
#ifndef HOOKLINE_INGEST_H
#define HOOKLINE_INGEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "jdoc.h"
#include "store/store.h"
#include "verify.h"

/* A decoded event as the rule engine sees it. All members borrowed. */
struct ingest_event {
    const char *source;
    const char *event_id;
    double received_at;
    json_t *headers;         /* object, lower-case names, secrets redacted */
    const struct jdoc *body; /* decoded JSON, or an object of form fields */
    const unsigned char *raw;
    size_t raw_len;
};

/* What a planner decided for one event. The planner owns jobs/audit memory
 * until ingest_pending_free calls release(). */
struct ingest_plan {
    struct store_job_spec *jobs;
    size_t njobs;
    json_t **audit; /* extra records (rule.decided, rule.failed, ...) */
    size_t naudit;
    bool rule_failed; /* stored with status rule_failed */
    const char *rule_version;
    const char *plan_json; /* the outcome stored with the event (rules_outcome_text), or NULL */
    void (*release)(struct ingest_plan *plan);
    void *owner;
};

/* The rule engine's seam. plan() runs on the HTTP thread that received the
 * event, before the store operation is built, so the event and its jobs commit
 * in one transaction. Returns 0; a rule failure is reported through
 * plan->rule_failed and an audit record, never by failing the webhook. With no
 * planner installed every event is stored with zero jobs. */
struct ingest_planner {
    int (*plan)(void *ctx, const struct ingest_event *ev, struct ingest_plan *plan);
    void *ctx;
};

/* A borrowed view of one HTTP request. */
struct ingest_request {
    const char *method;
    const char *source;       /* the {source} path segment */
    const char *url;          /* full URL for {url} in hmac templates */
    const char *content_type; /* NULL when absent */
    const char *remote;       /* peer address text, for the audit */
    json_t *headers;          /* borrowed object of lower-case header names */
    verify_lookup_fn header;
    verify_lookup_fn query;
    void *lookup_ctx;
    const unsigned char *body;
    size_t body_len;
    double now; /* arrival time, Unix seconds */
};

/* An answer to send. body is a heap string owned by the response. */
struct ingest_response {
    int status;
    char *body;
    const char *content_type;
    int retry_after_s; /* > 0: send Retry-After */
    const char *allow; /* non-NULL: send Allow */
};

/* State of one request between prepare and complete; caller-allocated, zeroed. */
struct ingest_pending {
    struct store_op op;
    char *event_id;
    char *headers_json;
    char *content_type;
    struct jdoc *body;
    json_t *received; /* the event.received record */
    json_t **audit;   /* received + plan records, in order */
    struct ingest_plan plan;
    const struct config_source *src;
    unsigned char *stored_body; /* salesforce-outbound: the message with SessionId redacted */
    size_t stored_len;
};

struct ingest;

/* Creates the ingest context over borrowed cfg and st (both must outlive it).
 * Returns a new context (caller frees with ingest_destroy) or NULL. */
struct ingest *ingest_create(const struct config *cfg, struct store *st);

/* Installs (or with NULL removes) the planner; call before serving. */
void ingest_set_planner(struct ingest *ing, const struct ingest_planner *planner);

struct rules;

/* Installs the rule engine as the planner: each event runs the rule on the
 * receiving thread and its jobs and decision records (rule.decided,
 * rule.skipped, rule.failed) are stored in the event's transaction. rules is
 * borrowed and must outlive ing. */
void ingest_use_rules(struct ingest *ing, struct rules *rules);

/* Decodes a body by media type: JSON, form fields as an object (a repeated
 * field becomes an array), or (text/xml) a Salesforce Outbound Message as the table
 * sfdc_outbound.h describes. Returns a new document (caller frees with jdoc_free),
 * or NULL with why set. */
struct jdoc *ingest_decode_body(const char *content_type, const unsigned char *body, size_t len,
                                char *why, size_t why_len);

/* The event id of a request to src (docs/contract.md section 2, event_id). Returns a new
 * string, or NULL with why set. */
char *ingest_derive_event_id(const struct config_source *src, const struct ingest_request *req,
                             const struct jdoc *body, char *why, size_t why_len);

/* Runs the planner again on a stored rule_failed event (after the rule was
 * fixed) and stores the new outcome, jobs and records in one transaction. The
 * previous rule.failed record stays. Returns 0 and a short outcome word in
 * outcome[len] ("accepted", "rule_failed", "already_reprocessed"), or -1 with
 * err set. Blocks until committed; not for HTTP threads. */
int ingest_reprocess(struct ingest *ing, const struct store_event_row *row, char *outcome,
                     size_t outcome_len, char *err, size_t err_len);

/* Checks what is known before the body arrives: source (404), method (405),
 * media type (415) and declared length (413; content_length < 0 when unknown).
 * Returns true to continue, false with *resp filled (caller frees resp->body). */
bool ingest_precheck(struct ingest *ing, const char *source, const char *method,
                     const char *content_type, long long content_length,
                     struct ingest_response *resp);

/* The body exceeded the limit while streaming: fills the 413 answer. */
void ingest_too_large(struct ingest *ing, const char *source, struct ingest_response *resp);

/* Verifies, decodes and plans. A salesforce-outbound source's message must also carry
 * the configured OrganizationId (403 otherwise, nothing stored). Returns true when
 * p->op is ready to submit to
 * the store (p->op.done is left to the caller), false with *resp filled. The
 * request's buffers must stay valid until ingest_pending_free. */
bool ingest_prepare(struct ingest *ing, const struct ingest_request *req, struct ingest_pending *p,
                    struct ingest_response *resp);

/* Builds the answer after the store reported on p->op (or after store_submit
 * failed, with p->op.u.event.result == STORE_EVENT_FAILED). A salesforce-outbound
 * source's stored or duplicate message is answered 200 with the SOAP acknowledgement
 * (text/xml); every other answer is the same as for any source. */
void ingest_complete(struct ingest *ing, struct ingest_pending *p, struct ingest_response *resp);

/* Releases what p holds (not p itself). */
void ingest_pending_free(struct ingest_pending *p);

/* A problem+json answer: fills resp with a new body. */
void ingest_problem(struct ingest_response *resp, int status, const char *slug, const char *title,
                    const char *detail);

/* Frees ing. NULL is a no-op. */
void ingest_destroy(struct ingest *ing);

#endif
