/*
 * rule_cases: runs an operator's rule test cases (a JSON array of events, each
 * with the plan it must produce or the error it must raise) through the rule
 * engine, offline: it builds each event the way a webhook would arrive (body
 * decoding and event id as ingest does them), never touches the store or the
 * network, and compares plans as JSON values (key order does not matter),
 * printing a line diff of the two when they differ. Runs on the calling thread
 * (the CLI's, or the thread reloading the rules for the reload gate); the
 * engine's state for that thread is the one used.
 */
#include "rule_cases.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ingest.h"

#define RULE_CASES_MAX_FILE_BYTES (16u << 20)
#define RULE_CASES_MAX_CASES 10000
#define RULE_CASES_MAX_HEADERS 64
/* An LCS table beyond this many cells is not built: both plans are shown whole. */
#define RULE_CASES_MAX_DIFF_CELLS (4u << 20)
#define RULE_CASES_MAX_DIFF_BYTES (1u << 20)

/* ---------- a bounded text buffer ---------- */

struct rule_cases_buf {
    char *p;
    size_t len, cap;
    bool failed; /* out of memory or over RULE_CASES_MAX_DIFF_BYTES */
};

static void rule_cases_put(struct rule_cases_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > RULE_CASES_MAX_DIFF_BYTES) {
        b->failed = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void rule_cases_puts(struct rule_cases_buf *b, const char *s)
{
    rule_cases_put(b, s, strlen(s));
}

/* ---------- the plan diff ---------- */

/* Splits text at newlines in place; returns the line count (lines[] points into text). */
static size_t rule_cases_lines(char *text, char ***lines)
{
    size_t n = 1;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    *lines = calloc(n, sizeof **lines);
    if (!*lines)
        return 0;
    size_t i = 0;
    char *start = text;
    for (char *p = text;; p++) {
        if (*p == '\n' || *p == '\0') {
            bool end = *p == '\0';
            *p = '\0';
            (*lines)[i++] = start;
            start = p + 1;
            if (end)
                break;
        }
    }
    return i;
}

static void rule_cases_line(struct rule_cases_buf *b, const char *indent, const char *mark,
                            const char *line)
{
    rule_cases_puts(b, indent);
    rule_cases_puts(b, mark);
    rule_cases_puts(b, line);
    rule_cases_puts(b, "\n");
}

char *rule_cases_diff(const json_t *expected, const json_t *actual, const char *indent)
{
    char *ta = json_dumps(expected, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    char *tb = json_dumps(actual, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    char **la = NULL, **lb = NULL;
    unsigned *lcs = NULL;
    struct rule_cases_buf b = {0};
    char *out = NULL;
    if (!ta || !tb)
        goto out;
    if (strcmp(ta, tb) == 0) {
        out = strdup("");
        goto out;
    }
    size_t na = rule_cases_lines(ta, &la), nb = rule_cases_lines(tb, &lb);
    if (!na || !nb)
        goto out;
    if ((na + 1) * (nb + 1) <= RULE_CASES_MAX_DIFF_CELLS)
        lcs = calloc((na + 1) * (nb + 1), sizeof *lcs);
    if (!lcs) {
        /* Too long for a line diff (or no memory for one): both, whole. */
        for (size_t i = 0; i < na; i++)
            rule_cases_line(&b, indent, "- ", la[i]);
        for (size_t j = 0; j < nb; j++)
            rule_cases_line(&b, indent, "+ ", lb[j]);
    } else {
        /* lcs[i][j]: the longest common subsequence of la[i..] and lb[j..]. */
#define RULE_CASES_LCS(i, j) lcs[(i) * (nb + 1) + (j)]
        for (size_t i = na; i-- > 0;)
            for (size_t j = nb; j-- > 0;)
                RULE_CASES_LCS(i, j) = strcmp(la[i], lb[j]) == 0
                                           ? RULE_CASES_LCS(i + 1, j + 1) + 1
                                           : (RULE_CASES_LCS(i + 1, j) > RULE_CASES_LCS(i, j + 1)
                                                  ? RULE_CASES_LCS(i + 1, j)
                                                  : RULE_CASES_LCS(i, j + 1));
        size_t i = 0, j = 0;
        while (i < na || j < nb) {
            if (i < na && j < nb && strcmp(la[i], lb[j]) == 0) {
                rule_cases_line(&b, indent, "  ", la[i]);
                i++;
                j++;
            } else if (i < na &&
                       (j == nb || RULE_CASES_LCS(i + 1, j) >= RULE_CASES_LCS(i, j + 1))) {
                rule_cases_line(&b, indent, "- ", la[i++]); /* removals first, as diff does */
            } else {
                rule_cases_line(&b, indent, "+ ", lb[j++]);
            }
        }
#undef RULE_CASES_LCS
    }
    if (!b.failed) {
        out = b.p ? b.p : strdup("");
        b.p = NULL;
    }
out:
    free(b.p);
    free(lcs);
    free(la);
    free(lb);
    free(ta);
    free(tb);
    return out;
}

/* ---------- one case ---------- */

struct rule_cases_case {
    const char *name;
    const char *source;
    json_t *headers;          /* lower-case names -> strings (new reference) */
    const char *content_type; /* from headers, or "application/json" */
    char *raw;                /* the body bytes (body printed compact, or raw) */
    size_t raw_len;
    const char *id;       /* "id": the event id, else derived as ingest does */
    double received_at;   /* "received_at", else now */
    const json_t *expect; /* borrowed from the file's document */
    const char *expect_error;
};

static void rule_cases_case_free(struct rule_cases_case *c)
{
    json_decref(c->headers);
    free(c->raw);
    memset(c, 0, sizeof *c);
}

/* Reads case i (0-based) of the document into *c. 0, or -1 with err set. */
static int rule_cases_parse(const char *path, size_t i, const json_t *v, struct rule_cases_case *c,
                            char *err, size_t err_len)
{
    static const char *const keys[] = {"name",   "source",       "headers", "body",        "raw",
                                       "expect", "expect_error", "id",      "received_at", "about",
                                       NULL};
    memset(c, 0, sizeof *c);
    char where[200];
    const json_t *name = json_object_get(v, "name");
    if (json_is_string(name))
        snprintf(where, sizeof where, "%s: case %zu (%s)", path, i + 1, json_string_value(name));
    else
        snprintf(where, sizeof where, "%s: case %zu", path, i + 1);
    if (!json_is_object(v)) {
        snprintf(err, err_len, "%s: must be an object", where);
        return -1;
    }
    const char *key;
    json_t *field;
    json_object_foreach((json_t *)v, key, field)
    {
        size_t k = 0;
        while (keys[k] && strcmp(keys[k], key) != 0)
            k++;
        if (!keys[k]) {
            snprintf(err, err_len, "%s: unknown key \"%s\"", where, key);
            return -1;
        }
    }
    if (!json_is_string(name) || json_string_length(name) == 0) {
        snprintf(err, err_len, "%s: \"name\" must be a non-empty string", where);
        return -1;
    }
    c->name = json_string_value(name);
    const json_t *src = json_object_get(v, "source");
    if (!json_is_string(src)) {
        snprintf(err, err_len, "%s: \"source\" must be a string (a source of the config)", where);
        return -1;
    }
    c->source = json_string_value(src);
    c->headers = json_object();
    if (!c->headers)
        goto oom;
    const json_t *h = json_object_get(v, "headers");
    if (h && !json_is_object(h)) {
        snprintf(err, err_len, "%s: \"headers\" must be an object of name -> string", where);
        return -1;
    }
    if (json_object_size(h) > RULE_CASES_MAX_HEADERS) {
        snprintf(err, err_len, "%s: more than %d headers", where, RULE_CASES_MAX_HEADERS);
        return -1;
    }
    json_object_foreach((json_t *)h, key, field)
    {
        char lname[256];
        if (!json_is_string(field) || strlen(key) == 0 || strlen(key) >= sizeof lname) {
            snprintf(err, err_len, "%s: header \"%s\" must have a string value", where, key);
            return -1;
        }
        size_t k = 0;
        for (; key[k]; k++)
            lname[k] = (char)tolower((unsigned char)key[k]);
        lname[k] = '\0';
        if (json_object_set_new(c->headers, lname, json_string(json_string_value(field))) < 0)
            goto oom;
    }
    const json_t *ct = json_object_get(c->headers, "content-type");
    c->content_type = ct ? json_string_value(ct) : "application/json";
    const json_t *body = json_object_get(v, "body"), *raw = json_object_get(v, "raw");
    if ((body != NULL) == (raw != NULL)) {
        snprintf(err, err_len, "%s: give exactly one of \"body\" (JSON) and \"raw\" (text)", where);
        return -1;
    }
    if (raw && !json_is_string(raw)) {
        snprintf(err, err_len, "%s: \"raw\" must be a string (the body's bytes)", where);
        return -1;
    }
    if (body && strncasecmp(c->content_type, "application/x-www-form-urlencoded", 33) == 0) {
        snprintf(err, err_len, "%s: a form body is given as \"raw\" (a=1&b=2), not \"body\"",
                 where);
        return -1;
    }
    if (raw) {
        c->raw_len = json_string_length(raw);
        c->raw = malloc(c->raw_len + 1);
        if (!c->raw)
            goto oom;
        memcpy(c->raw, json_string_value(raw), c->raw_len + 1);
    } else {
        c->raw = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        if (!c->raw)
            goto oom;
        c->raw_len = strlen(c->raw);
    }
    const json_t *id = json_object_get(v, "id");
    if (id && (!json_is_string(id) || json_string_length(id) == 0)) {
        snprintf(err, err_len, "%s: \"id\" must be a non-empty string", where);
        return -1;
    }
    c->id = id ? json_string_value(id) : NULL;
    const json_t *at = json_object_get(v, "received_at");
    if (at && !json_is_number(at)) {
        snprintf(err, err_len, "%s: \"received_at\" must be Unix seconds (a number)", where);
        return -1;
    }
    c->received_at = at ? json_number_value(at) : (double)time(NULL);
    c->expect = json_object_get(v, "expect");
    const json_t *ee = json_object_get(v, "expect_error");
    if ((c->expect != NULL) == (ee != NULL)) {
        snprintf(err, err_len, "%s: give exactly one of \"expect\" (a plan) and \"expect_error\"",
                 where);
        return -1;
    }
    if (c->expect && !json_is_array(c->expect)) {
        snprintf(err, err_len,
                 "%s: \"expect\" must be an array (the plan as `hookline rule-test` prints it)",
                 where);
        return -1;
    }
    if (ee && (!json_is_string(ee) || json_string_length(ee) == 0)) {
        snprintf(err, err_len, "%s: \"expect_error\" must be a non-empty string", where);
        return -1;
    }
    c->expect_error = ee ? json_string_value(ee) : NULL;
    return 0;
oom:
    snprintf(err, err_len, "%s: out of memory", where);
    return -1;
}

static const char *rule_cases_header(void *ctx, const char *name)
{
    char lname[256];
    size_t k = 0;
    for (; name[k] && k + 1 < sizeof lname; k++)
        lname[k] = (char)tolower((unsigned char)name[k]);
    lname[k] = '\0';
    return json_string_value(json_object_get(ctx, lname));
}

static const char *rule_cases_no_query(void *ctx, const char *name)
{
    (void)ctx;
    (void)name;
    return NULL;
}

/* Runs case c. Returns true when it passes; otherwise why[why_len] says why and
 * *diff (caller frees; may stay NULL) holds the plan diff. */
static bool rule_cases_check(const struct config *cfg, struct rules *r,
                             const struct rule_cases_case *c, char *why, size_t why_len,
                             char **diff)
{
    struct jdoc *body = NULL;
    char *derived = NULL, err[600] = "";
    json_t *plan = NULL;
    struct rules_result res = {0};
    bool pass = false, failed = false;
    const char *failure = NULL;
    *diff = NULL;

    const struct config_source *src = config_find_source(cfg, c->source);
    if (!src) {
        snprintf(err, sizeof err, "no source named %s in the config", c->source);
        failed = true;
    }
    if (!failed) {
        body = ingest_decode_body(c->content_type, (const unsigned char *)c->raw, c->raw_len, err,
                                  sizeof err);
        failed = body == NULL;
    }
    const char *event_id = c->id;
    if (!failed && !event_id) {
        struct ingest_request req = {.method = "POST",
                                     .source = c->source,
                                     .url = "",
                                     .content_type = c->content_type,
                                     .headers = c->headers,
                                     .header = rule_cases_header,
                                     .query = rule_cases_no_query,
                                     .lookup_ctx = c->headers,
                                     .body = (const unsigned char *)c->raw,
                                     .body_len = c->raw_len,
                                     .now = c->received_at};
        derived = ingest_derive_event_id(src, &req, body, err, sizeof err);
        failed = derived == NULL;
        event_id = derived;
    }
    if (!failed) {
        struct rules_event ev = {c->source,  event_id, c->received_at,
                                 c->headers, body,     (const unsigned char *)c->raw,
                                 c->raw_len};
        rules_run(r, &ev, &res);
        if (res.outcome == RULES_FAILED) {
            snprintf(err, sizeof err, "%s", res.message);
            failed = true;
        }
    }
    failure = failed ? err : NULL;

    if (c->expect_error) {
        if (!failure && res.outcome == RULES_SKIPPED)
            snprintf(why, why_len, "expected an error containing \"%s\"; the rule skipped (%s)",
                     c->expect_error, res.message);
        else if (!failure)
            snprintf(why, why_len,
                     "expected an error containing \"%s\"; the rule planned %zu "
                     "request%s",
                     c->expect_error, res.plan.n, res.plan.n == 1 ? "" : "s");
        else if (!strstr(failure, c->expect_error))
            snprintf(why, why_len, "the error \"%s\" does not contain \"%s\"", failure,
                     c->expect_error);
        else
            pass = true;
        goto out;
    }
    if (failure) {
        snprintf(why, why_len, "%s", failure);
        goto out;
    }
    plan = rules_plan_json(&res.plan);
    if (!plan) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    if (json_equal(c->expect, plan)) {
        pass = true;
        goto out;
    }
    if (res.outcome == RULES_SKIPPED)
        snprintf(why, why_len, "the rule skipped (%s); expected %zu request%s", res.message,
                 json_array_size(c->expect), json_array_size(c->expect) == 1 ? "" : "s");
    else
        snprintf(why, why_len, "plan differs (- expected, + actual)");
    *diff = rule_cases_diff(c->expect, plan, "    ");
out:
    json_decref(plan);
    rules_result_free(&res);
    jdoc_free(body);
    free(derived);
    return pass;
}

/* ---------- a file of cases ---------- */

int rule_cases_run(const struct config *cfg, struct rules *r, const char *path, FILE *out,
                   struct rule_cases_report *rep, char *err, size_t err_len)
{
    memset(rep, 0, sizeof *rep);
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    struct rule_cases_case *cases = NULL;
    size_t n = 0;
    int rc = -1;
    if (!doc) {
        if (jerr.line > 0)
            snprintf(err, err_len, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        else
            snprintf(err, err_len, "%s: %s", path, jerr.text);
        return -1;
    }
    if (!json_is_array(doc)) {
        snprintf(err, err_len, "%s: must be a JSON array of cases", path);
        goto out;
    }
    if (json_array_size(doc) > RULE_CASES_MAX_CASES) {
        snprintf(err, err_len, "%s: more than %d cases", path, RULE_CASES_MAX_CASES);
        goto out;
    }
    cases = calloc(json_array_size(doc) + 1, sizeof *cases);
    if (!cases) {
        snprintf(err, err_len, "%s: out of memory", path);
        goto out;
    }
    /* Every case is checked before any runs: a malformed file runs nothing. */
    for (; n < json_array_size(doc); n++)
        if (rule_cases_parse(path, n, json_array_get(doc, n), &cases[n], err, err_len) < 0) {
            n++;
            goto out;
        }
    for (size_t i = 0; i < n; i++) {
        char why[1200] = "", *diff = NULL;
        bool pass = rule_cases_check(cfg, r, &cases[i], why, sizeof why, &diff);
        if (pass) {
            rep->passed++;
            if (out)
                fprintf(out, "PASS %s\n", cases[i].name);
        } else {
            rep->failed++;
            if (out)
                fprintf(out, "FAIL %s: %s\n%s", cases[i].name, why, diff ? diff : "");
            size_t used = strlen(rep->failing);
            snprintf(rep->failing + used, sizeof rep->failing - used, "%s%s", used ? ", " : "",
                     cases[i].name);
        }
        free(diff);
    }
    if (out)
        fprintf(out, "%d passed, %d failed\n", rep->passed, rep->failed);
    rc = 0;
out:
    for (size_t i = 0; cases && i < n; i++)
        rule_cases_case_free(&cases[i]);
    free(cases);
    json_decref(doc);
    return rc;
}

int rule_cases_gate(struct rules *candidate, void *ctx, char *err, size_t err_len)
{
    const struct config *cfg = ctx;
    if (!cfg || !cfg->rules_cases)
        return 0;
    struct rule_cases_report rep;
    char e[600];
    if (rule_cases_run(cfg, candidate, cfg->rules_cases, NULL, &rep, e, sizeof e) < 0) {
        snprintf(err, err_len, "rules.cases: %s", e);
        return -1;
    }
    if (rep.failed > 0) {
        snprintf(err, err_len, "rules.cases %s: %d of %d cases fail: %s", cfg->rules_cases,
                 rep.failed, rep.failed + rep.passed, rep.failing);
        return -1;
    }
    return 0;
}
