/*
 * replay: shadow replay of stored events through a candidate rule. It reads
 * events in keyset batches (REPLAY_BATCH rows per statement, so no read
 * transaction stays open for the whole run beside a serving instance), runs the
 * candidate on the calling thread's one Lua state, and compares the plan with
 * the outcome stored with the event (events.plan, or the plan rebuilt from the
 * jobs rows for events stored before plans were kept). The report is written
 * as it goes (changes and failures), the summary last, so memory does not grow
 * with the number of events. Never writes to the store, never sends anything.
 * The CLI runs it on its main thread; the console (replay_candidate_compile,
 * replay_run_json) on a thread of its own, one run at a time.
 */
#include "replay.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "ingest.h"
#include "jdoc.h"

/* Events per read statement. */
#define REPLAY_BATCH 512
/* Failures kept for the JSON document (the text report prints them all). */
#define REPLAY_MAX_FAILURES 1000

struct replay_ctx {
    struct rules *rules;
    const struct replay_options *o;
    struct replay_summary *sum;
    int64_t last_row;
    int64_t batch_rows;
    bool done;     /* until or limit reached */
    json_t *fails; /* JSON: the failures kept */
    int64_t fails_dropped;
    int64_t changes_dropped; /* JSON: changes past o->max_changes */
    double next_progress, started;
};

static double replay_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void replay_print_json(FILE *f, const json_t *v)
{
    char *t = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    fputs(t ? t : "null", f);
    free(t);
}

/* Adds one request of action to the counts: which 0 before, 1 after, 2 both. */
static void replay_count_action(struct replay_summary *s, const char *a, int which)
{
    size_t k = 0;
    while (k < s->nactions && strcmp(s->actions[k].action, a) != 0)
        k++;
    if (k == s->nactions) {
        if (s->nactions == REPLAY_MAX_ACTIONS)
            return; /* more kinds than DIDWW's actions: not counted */
        snprintf(s->actions[k].action, sizeof s->actions[k].action, "%s", a);
        s->nactions++;
    }
    if (which != 1)
        s->actions[k].before++;
    if (which != 0)
        s->actions[k].after++;
}

/* Adds the requests of plan (an array of {"action", ...}) to the per-action
 * counts, before or after. */
static void replay_count(struct replay_summary *s, const json_t *plan, bool after)
{
    size_t i;
    json_t *job;
    json_array_foreach(plan, i, job)
    {
        const char *a = json_string_value(json_object_get(job, "action"));
        replay_count_action(s, a ? a : "?", after ? 1 : 0);
    }
}

/* The outcome stored when the event arrived, as a plan array (a new
 * reference, NULL when out of memory), *error set when the rule failed then. */
static json_t *replay_before(const struct store_event_row *row, const char **error)
{
    *error = NULL;
    if (!row->plan_json) {
        if (row->status && strcmp(row->status, "rule_failed") == 0)
            *error = "the rule failed (its message was not stored with the event)";
        return json_array();
    }
    json_t *before = json_loads(row->plan_json, JSON_DECODE_ANY, NULL);
    if (json_is_object(before)) {
        *error = json_string_value(json_object_get(before, "error"));
        if (!*error)
            *error = "the rule failed";
    } else if (!json_is_array(before)) {
        json_decref(before);
        before = json_array();
    }
    return before;
}

/* One event: 0 to go on, 1 to stop. */
static int replay_event(const struct store_event_row *row, void *vctx)
{
    struct replay_ctx *ctx = vctx;
    const struct replay_options *o = ctx->o;
    struct replay_summary *s = ctx->sum;
    ctx->last_row = row->row;
    ctx->batch_rows++;
    if (o->until > 0 && row->received_at > o->until) {
        ctx->done = true;
        return 1;
    }
    s->events++;

    json_t *before = NULL;
    const char *before_error = NULL;
    if (row->plan_from_jobs)
        s->from_jobs++;
    if (!row->plan_json)
        s->no_plan++;
    if (row->rule_version && o->in_force_version && o->in_force_version[0] &&
        strcmp(row->rule_version, o->in_force_version) != 0)
        s->other_version++;

    /* The candidate's outcome. */
    char *after_text = NULL;
    char err[600] = "";
    json_t *headers = json_loads(row->headers_json ? row->headers_json : "{}", 0, NULL);
    struct jdoc *body = ingest_decode_body(row->content_type ? row->content_type : "", row->body,
                                           row->body_len, err, sizeof err);
    struct rules_result res = {0};
    json_t *after = NULL;
    const char *fail = NULL;
    if (!headers || !body) {
        fail = body ? "the stored headers are not JSON" : err;
    } else {
        struct rules_event ev = {row->source, row->event_id, row->received_at, headers,
                                 body,        row->body,     row->body_len};
        rules_run(ctx->rules, &ev, &res);
        if (res.outcome == RULES_FAILED)
            fail = res.message;
        else if (!(after_text = rules_outcome_text(&res)))
            fail = "out of memory";
    }
    /* The same text as stored (the common case): unchanged without parsing either. */
    if (!fail && row->plan_json && strcmp(after_text, row->plan_json) == 0) {
        s->unchanged++;
        for (size_t i = 0; i < res.plan.n; i++)
            replay_count_action(s, res.plan.jobs[i].action, 2);
        goto next;
    }
    if (!fail && !(after = json_loads(after_text, 0, NULL)))
        fail = "out of memory";
    if (!fail && !before) {
        before = replay_before(row, &before_error);
        if (!before)
            fail = "out of memory";
    }

    if (fail) {
        s->failed++;
        if (o->json) {
            if (json_array_size(ctx->fails) < REPLAY_MAX_FAILURES)
                json_array_append_new(ctx->fails,
                                      json_pack("{s:I, s:s, s:s, s:s}", "row", (json_int_t)row->row,
                                                "event_id", row->event_id, "source", row->source,
                                                "error", fail));
            else
                ctx->fails_dropped++;
        } else {
            fprintf(o->out, "failed: %s %s (row %lld): %s\n", row->source, row->event_id,
                    (long long)row->row, fail);
        }
    } else {
        if (!before_error) /* a failed rule planned nothing */
            replay_count(s, before, false);
        replay_count(s, after, true);
        bool same = !before_error && json_equal(before, after);
        if (same) {
            s->unchanged++;
        } else {
            char when[32];
            audit_format_time(row->received_at, when);
            if (o->json && o->max_changes > 0 && s->changed >= o->max_changes) {
                ctx->changes_dropped++;
            } else if (o->json) {
                json_t *c =
                    json_pack("{s:s, s:s, s:I, s:s, s:O, s:O}", "event_id", row->event_id, "source",
                              row->source, "row", (json_int_t)row->row, "received_at", when,
                              "before", before_error ? json_null() : before, "after", after);
                if (c && before_error)
                    json_object_set_new(c, "before_error", json_string(before_error));
                if (c && row->plan_from_jobs)
                    json_object_set_new(c, "before_from_jobs", json_true());
                fputs(s->changed ? ",\n" : "\n", o->out);
                replay_print_json(o->out, c);
                json_decref(c);
            } else {
                fprintf(o->out, "changed: %s %s (row %lld, received %s)\n", row->source,
                        row->event_id, (long long)row->row, when);
                if (before_error) {
                    fprintf(o->out, "  before: rule failed: %s\n", before_error);
                } else {
                    fprintf(o->out, "  before: ");
                    replay_print_json(o->out, before);
                    fputs(row->plan_from_jobs ? "  (from its jobs rows)\n" : "\n", o->out);
                }
                fprintf(o->out, "  after:  ");
                replay_print_json(o->out, after);
                fputc('\n', o->out);
            }
            s->changed++;
        }
    }
next:
    free(after_text);
    json_decref(after);
    json_decref(before);
    json_decref(headers);
    jdoc_free(body);
    rules_result_free(&res);

    if (o->progress) {
        double now = replay_now();
        if (now >= ctx->next_progress) {
            fprintf(stderr, "\rreplay: %lld events, %lld changed, %lld failed (%.0f/s)\033[K",
                    (long long)s->events, (long long)s->changed, (long long)s->failed,
                    (double)s->events / (now - ctx->started > 0 ? now - ctx->started : 1));
            fflush(stderr);
            ctx->next_progress = now + 0.5;
        }
    }
    if ((o->limit > 0 && s->events >= o->limit) ||
        (o->cancel && atomic_load_explicit(o->cancel, memory_order_relaxed))) {
        ctx->done = true;
        return 1;
    }
    return 0;
}

static void replay_text_summary(const struct replay_options *o, const struct replay_summary *s)
{
    FILE *f = o->out;
    fprintf(f, "events: %lld, unchanged: %lld, changed: %lld, failed: %lld\n", (long long)s->events,
            (long long)s->unchanged, (long long)s->changed, (long long)s->failed);
    if (s->nactions) {
        fprintf(f, "requests per action (stored -> candidate):\n");
        for (size_t i = 0; i < s->nactions; i++)
            fprintf(f, "  %-20s %lld -> %lld\n", s->actions[i].action,
                    (long long)s->actions[i].before, (long long)s->actions[i].after);
    }
    if (s->from_jobs)
        fprintf(f,
                "note: %lld events were stored before plans were kept: their stored plan is "
                "rebuilt from their jobs rows\n",
                (long long)s->from_jobs);
    if (s->no_plan)
        fprintf(f,
                "note: %lld events have no stored plan (stored before plans were kept with no "
                "jobs, or with no rule configured): compared as planning nothing\n",
                (long long)s->no_plan);
    if (s->other_version)
        fprintf(f,
                "note: %lld events were planned by another rule version than the one in force "
                "(its script or rules.data changed since); they are compared all the same, so a "
                "difference there may come from the change, not the candidate\n",
                (long long)s->other_version);
    if (o->data_configured)
        fprintf(f, "note: the candidate reads rules.data as it is now, not as it was when each "
                   "event arrived\n");
}

static void replay_json_summary(const struct replay_options *o, const struct replay_summary *s,
                                json_t *fails, int64_t dropped, int64_t changes_dropped)
{
    json_t *actions = json_object();
    for (size_t i = 0; i < s->nactions; i++)
        json_object_set_new(actions, s->actions[i].action,
                            json_pack("{s:I, s:I}", "before", (json_int_t)s->actions[i].before,
                                      "after", (json_int_t)s->actions[i].after));
    json_t *tail =
        json_pack("{s:I, s:I, s:I, s:I, s:O, s:I, s:o, s:I, s:I, s:I, s:b}", "events",
                  (json_int_t)s->events, "unchanged", (json_int_t)s->unchanged, "changed",
                  (json_int_t)s->changed, "failed", (json_int_t)s->failed, "failures", fails,
                  "failures_not_listed", (json_int_t)dropped, "actions", actions, "plans_from_jobs",
                  (json_int_t)s->from_jobs, "no_plan", (json_int_t)s->no_plan, "other_rule_version",
                  (json_int_t)s->other_version, "data_read_as_now", o->data_configured);
    if (tail && o->max_changes > 0)
        json_object_set_new(tail, "changes_not_listed", json_integer(changes_dropped));
    /* The changes array is already out: the rest of the object follows it. */
    char *t = tail ? json_dumps(tail, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    fprintf(o->out, "\n],%s\n", t ? t + 1 : "\"error\":\"out of memory\"}");
    free(t);
    json_decref(tail);
}

int replay_run(struct store *st, struct rules *candidate, const struct replay_options *o,
               struct replay_summary *sum, char *err, size_t err_len)
{
    memset(sum, 0, sizeof *sum);
    struct replay_ctx ctx = {.rules = candidate, .o = o, .sum = sum};
    ctx.started = replay_now();
    ctx.next_progress = ctx.started + 0.5;
    if (o->json) {
        ctx.fails = json_array();
        fputs("{\"changes\":[", o->out);
    }
    int rc = 0;
    while (!ctx.done) {
        struct store_event_filter f = {.source = o->source,
                                       .since = o->since,
                                       .after_row = ctx.last_row,
                                       .limit = REPLAY_BATCH};
        ctx.batch_rows = 0;
        if (store_events_scan(st, &f, replay_event, &ctx, err, err_len) < 0) {
            rc = -1;
            break;
        }
        if (ctx.batch_rows < REPLAY_BATCH)
            break;
    }
    if (o->progress)
        fputs("\r\033[K", stderr);
    if (o->json)
        replay_json_summary(o, sum, ctx.fails, ctx.fails_dropped, ctx.changes_dropped);
    else
        replay_text_summary(o, sum);
    json_decref(ctx.fails);
    return rc;
}

int replay_candidate_compile(const char *text, size_t len, const struct rules_options *base,
                             struct rules **out, char *err, size_t err_len)
{
    *out = NULL;
    struct rules_options o = *base;
    o.script_path = NULL;
    o.script_text = text;
    o.script_len = len;
    o.display_name = "candidate.lua";
    return rules_create(&o, out, err, err_len);
}

json_t *replay_run_json(struct store *st, struct rules *candidate, const struct replay_options *o,
                        struct replay_summary *sum, char *err, size_t err_len)
{
    char *buf = NULL;
    size_t blen = 0;
    json_t *doc = NULL;
    struct replay_options jo = *o;
    jo.json = true;
    jo.progress = false;
    jo.out = open_memstream(&buf, &blen);
    if (!jo.out) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    int rc = replay_run(st, candidate, &jo, sum, err, err_len);
    if (fclose(jo.out) != 0 && rc == 0) {
        snprintf(err, err_len, "out of memory");
        rc = -1;
    }
    if (rc == 0) {
        json_error_t jerr;
        doc = buf ? json_loadb(buf, blen, 0, &jerr) : NULL;
        if (!doc) {
            snprintf(err, err_len, "out of memory");
        } else {
            char version[40];
            rules_version(candidate, version, sizeof version);
            json_object_set_new(doc, "candidate_version", json_string(version));
        }
    }
    free(buf);
    return doc;
}
