/*
 * delivery: worker threads (delivery.workers) that each own one DIDWW client
 * and loop: claim one due job (through the store writer, leased), resolve a
 * DID named by number (cached), read the DID to skip a change already in place
 * and keep its before-state, send the request within the shared rate limit,
 * classify the answer and record the outcome with its audit records in one
 * store operation. Shared state: the rate limiter, the number cache (its own
 * mutex), and the pause flag and wake-up condition (d->lock). Locks are never
 * held across a request or a store call.
 */
#include "delivery.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "audit.h"
#include "backoff.h"
#include "delivery_inflight.h"
#include "delivery_ready.h"
#include "didww_auth.h"
#include "didww_client.h"
#include "didww_prefetch.h"
#include "digest.h"
#include "jsonapi.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"

#define DELIVERY_IDLE_POLL_MS 200 /* delivery.idle_poll_ms unset */
#define DELIVERY_ROUND_WAIT_MS 20 /* another worker is reading a round: look again */
#define DELIVERY_PAUSE_POLL_MS 500
#define DELIVERY_CACHE_SIZE 1024
#define DELIVERY_STOPPED (-2)             /* delivery_send: not sent, the service is stopping */
#define DELIVERY_THROTTLE_DEFAULT_MS 1000 /* a 429 without a usable Retry-After blocks 1 s */
/* The shared rate budget counts requests in windows this long: 1 s and a
 * little for clock granularity (a slot counts from its answer, so the delay
 * between a grant and the request reaching DIDWW needs no margin). */
#define DELIVERY_SHARED_WINDOW_MS 1002
/* A job refused with 401 on a shared store is due again only after this long,
 * well past the half second in which the other instances see the pause row. */
#define DELIVERY_SHARED_PAUSE_HOLD_S 2.0

struct delivery_cache_entry {
    char number[24];
    char did[40];
    double expires;
};

struct delivery {
    struct delivery_options opts;
    struct store *st;
    struct ratelimit *rl;
    pthread_t *threads;
    int nthreads;
    atomic_int stop;     /* set by delivery_stop; read without d->lock by workers and the limiter */
    char key_fp[17];     /* first 16 hex of SHA-256 of the API key: detects a changed key */
    char budget_key[32]; /* "didww:<key_fp>": the shared rate budget's name (shared store) */

    pthread_mutex_t lock; /* guards paused, pause_reason, wake */
    pthread_cond_t wake;
    bool paused;
    bool pausing; /* a pause is being recorded */
    char pause_reason[256];
    uint64_t wake_seq;

    pthread_mutex_t cache_lock;
    struct delivery_cache_entry cache[DELIVERY_CACHE_SIZE];

    struct delivery_worker *workers_mem;
    struct didww_auth *auth; /* 2026-11-19: the bearer token all workers share; else NULL */
    struct delivery_inflight inflight; /* how many workers claim: sized to rate x latency */
    struct delivery_ready ready;       /* a claim round's jobs, for any free worker */
    struct didww_prefetch *pf;         /* DID states read in one list per claim round */
    pthread_mutex_t busy_lock;         /* guards busy */
    struct delivery_busy *busy;        /* per worker: the DID of the job it works on */
};

struct delivery_busy {
    char did[40];
    int64_t job_id;
};

struct delivery_worker;

struct delivery_worker {
    struct delivery *d;
    struct didww_client *client;
    struct drand48_data rng;
    int index;
};

static double delivery_wall(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

static double delivery_rand01(void *ctx)
{
    double r;
    drand48_r(ctx, &r);
    return r;
}

/* ---------- coalescing ---------- */

/* Adds the attribute and relationship names of a PATCH body to set. */
static bool delivery_fields(const char *body, json_t *set)
{
    json_t *doc = body ? json_loads(body, 0, NULL) : NULL;
    json_t *data = json_object_get(doc, "data");
    if (!json_is_object(data)) {
        json_decref(doc);
        return false;
    }
    static const char *const parts[] = {"attributes", "relationships"};
    for (size_t i = 0; i < 2; i++) {
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(data, parts[i]), k, v)
        {
            char name[160];
            snprintf(name, sizeof name, "%s/%s", parts[i], k);
            json_object_set_new(set, name, json_true());
        }
    }
    json_decref(doc);
    return true;
}

bool delivery_supersedes(const struct store_job *later, const struct store_job *earlier)
{
    if (!later->method || !earlier->method || strcmp(later->method, "PATCH") != 0 ||
        strcmp(earlier->method, "PATCH") != 0 || !later->path || !earlier->path ||
        strcmp(later->path, earlier->path) != 0)
        return false;
    json_t *a = json_object(), *b = json_object();
    bool ok = delivery_fields(later->body, a) && delivery_fields(earlier->body, b);
    if (ok) {
        const char *k;
        json_t *v;
        json_object_foreach(b, k, v)
        {
            if (!json_object_get(a, k)) {
                ok = false;
                break;
            }
        }
    }
    json_decref(a);
    json_decref(b);
    return ok;
}

/* ---------- number cache ---------- */

static bool delivery_cache_get(struct delivery *d, const char *number, char *did, size_t len)
{
    bool hit = false;
    double now = delivery_wall();
    pthread_mutex_lock(&d->cache_lock);
    for (size_t i = 0; i < DELIVERY_CACHE_SIZE; i++) {
        struct delivery_cache_entry *e = &d->cache[i];
        if (e->expires > now && strcmp(e->number, number) == 0) {
            snprintf(did, len, "%s", e->did);
            hit = true;
            break;
        }
    }
    pthread_mutex_unlock(&d->cache_lock);
    return hit;
}

static void delivery_cache_put(struct delivery *d, const char *number, const char *did)
{
    double now = delivery_wall();
    int ttl = d->opts.number_cache_ttl_s > 0 ? d->opts.number_cache_ttl_s : 300;
    pthread_mutex_lock(&d->cache_lock);
    size_t slot = 0;
    double oldest = 1e300;
    for (size_t i = 0; i < DELIVERY_CACHE_SIZE; i++) {
        if (strcmp(d->cache[i].number, number) == 0 || d->cache[i].expires < oldest) {
            slot = i;
            oldest = d->cache[i].expires;
            if (strcmp(d->cache[i].number, number) == 0)
                break;
        }
    }
    snprintf(d->cache[slot].number, sizeof d->cache[slot].number, "%s", number);
    snprintf(d->cache[slot].did, sizeof d->cache[slot].did, "%s", did);
    d->cache[slot].expires = now + ttl;
    pthread_mutex_unlock(&d->cache_lock);
}

/* ---------- pause ---------- */

static void delivery_check_external_resume(struct delivery *d);

static void delivery_set_paused(struct delivery *d, bool paused, const char *reason)
{
    pthread_mutex_lock(&d->lock);
    d->paused = paused;
    snprintf(d->pause_reason, sizeof d->pause_reason, "%s", reason ? reason : "");
    if (!paused)
        pthread_cond_broadcast(&d->wake);
    pthread_mutex_unlock(&d->lock);
    metrics_set_delivery_paused(paused);
}

bool delivery_paused(struct delivery *d, char *why, size_t why_len)
{
    pthread_mutex_lock(&d->lock);
    bool p = d->paused;
    if (why)
        snprintf(why, why_len, "%s", d->pause_reason);
    pthread_mutex_unlock(&d->lock);
    return p;
}

/* Writes (value != NULL) or clears the pause row with one audit record of kind
 * carrying detail[key] = text and detail.errors = errors (borrowed, may be NULL).
 * Returns 0 or -1 (logged). */
static int delivery_control(struct delivery *d, const char *value, const char *kind,
                            const char *key, const char *text, const json_t *errors, const char *by)
{
    json_t *rec = audit_record_new(kind, NULL, NULL);
    audit_detail_set_str(rec, key, text);
    if (by)
        audit_detail_set_str(rec, "by", by);
    if (rec && errors)
        json_object_set_new(json_object_get(rec, "detail"), "errors", json_deep_copy(errors));
    struct store_op op = {
        .kind = STORE_OP_CONTROL,
        .u.control = {.key = DELIVERY_PAUSE_KEY, .value = value, .at = delivery_wall()},
        .audit = &rec,
        .naudit = rec ? 1 : 0};
    int rc = store_submit_wait(d->st, &op);
    if (rc < 0)
        log_write(LOG_ERROR, "could not record a delivery pause change",
                  (const char *[]){"error", op.error, NULL});
    json_decref(rec);
    return rc;
}

/* Copies DIDWW's JSON:API errors (borrowed) with every occurrence of the API key
 * replaced: an answer that echoes the key must not put it in the audit trail or
 * the log. Returns a new reference, or NULL when errors is empty or NULL. */
static json_t *delivery_errors_without_key(const json_t *errors, const char *key)
{
    if (!json_is_array(errors) || json_array_size(errors) == 0)
        return NULL;
    json_t *out = json_deep_copy(errors);
    size_t klen = key ? strlen(key) : 0;
    size_t i;
    json_t *e;
    json_array_foreach(out, i, e)
    {
        const char *k;
        json_t *v;
        json_object_foreach(e, k, v)
        {
            const char *text = json_string_value(v);
            if (!text || klen == 0 || !strstr(text, key))
                continue;
            char clean[1024];
            size_t o = 0;
            for (const char *p = text; *p && o + 1 < sizeof clean;) {
                if (strncmp(p, key, klen) == 0) {
                    o += (size_t)snprintf(clean + o, sizeof clean - o, "[redacted]");
                    if (o >= sizeof clean)
                        o = sizeof clean - 1;
                    p += klen;
                } else {
                    clean[o++] = *p++;
                }
            }
            clean[o] = '\0';
            json_string_set(v, clean);
        }
    }
    return out;
}

/* Pauses this process for the pause row value (reason|key:fp) another instance
 * recorded; nothing is written. */
static void delivery_pause_from_row(struct delivery *d, char *value)
{
    char *bar = strstr(value, "|key:");
    if (bar)
        *bar = '\0';
    delivery_set_paused(d, true, value);
    log_write(LOG_ERROR, "delivery paused by another instance",
              (const char *[]){"reason", value, NULL});
}

void delivery_sync_pause(struct delivery *d)
{
    char value[400];
    int rc = store_control_get(d->st, DELIVERY_PAUSE_KEY, value, sizeof value);
    pthread_mutex_lock(&d->lock);
    bool paused = d->paused, pausing = d->pausing;
    pthread_mutex_unlock(&d->lock);
    if (rc == 1 && !paused && !pausing)
        delivery_pause_from_row(d, value);
    else if (rc == 0 && paused && !pausing)
        delivery_check_external_resume(d);
}

/* Records a pause: control row (so other processes and restarts see it) and
 * delivery.paused with the reason, DIDWW's errors (borrowed, may be NULL) and who
 * asked (NULL: DIDWW's 401), then stops every worker from claiming. A 401 pause
 * row carries the key's fingerprint (a changed key lifts it at start); an
 * operator's does not. Returns 0, 1 when delivery was paused already, -1 when
 * the store failed. */
static int delivery_pause_record(struct delivery *d, const char *reason, const json_t *errors,
                                 const char *by)
{
    pthread_mutex_lock(&d->lock);
    bool busy = d->paused || d->pausing;
    if (!busy)
        d->pausing = true; /* a busy caller must not leave it set: nobody would clear it */
    pthread_mutex_unlock(&d->lock);
    if (busy)
        return 1;
    char row[400];
    /* Another instance recorded this pause already (its 401 came first), or for
     * an operator another process did (hookline jobs pause) just now. */
    if ((store_shared(d->st) || by) &&
        store_control_get(d->st, DELIVERY_PAUSE_KEY, row, sizeof row) == 1) {
        delivery_pause_from_row(d, row);
        pthread_mutex_lock(&d->lock);
        d->pausing = false;
        pthread_mutex_unlock(&d->lock);
        return 1;
    }
    json_t *errs = delivery_errors_without_key(errors, d->opts.api_key);
    /* The row first, then the flag: a paused worker that looks for an external
     * resume must find the row, or it would lift the pause at once. */
    char value[400];
    if (by)
        snprintf(value, sizeof value, "%s", reason);
    else
        snprintf(value, sizeof value, "%s|key:%s", reason, d->key_fp);
    int rc = delivery_control(d, value, "delivery.paused", "reason", reason, errs, by);
    if (rc == 0 || !by)
        delivery_set_paused(d, true, reason);
    pthread_mutex_lock(&d->lock);
    d->pausing = false;
    pthread_mutex_unlock(&d->lock);
    if (rc == 0 || !by) {
        char *errs_text = errs ? json_dumps(errs, JSON_COMPACT) : NULL;
        /* by (an operator's pause) and errors (a 401's) never come together. */
        log_write(LOG_ERROR, "delivery paused",
                  (const char *[]){"reason", reason,
                                   by          ? "by"
                                   : errs_text ? "errors"
                                               : NULL,
                                   by ? by : errs_text, NULL});
        free(errs_text);
    }
    json_decref(errs);
    return rc < 0 ? -1 : 0;
}

static void delivery_pause(struct delivery *d, const char *reason, const json_t *errors)
{
    (void)delivery_pause_record(d, reason, errors, NULL);
}

int delivery_pause_by(struct delivery *d, const char *who, const char *reason)
{
    return delivery_pause_record(d, reason, NULL, who ? who : "an operator");
}

int delivery_resume(struct delivery *d, const char *who)
{
    char value[400];
    /* On a shared store another instance's pause may not have reached this
     * one yet: its row is what is lifted. */
    if (!delivery_paused(d, NULL, 0) &&
        !(store_shared(d->st) &&
          store_control_get(d->st, DELIVERY_PAUSE_KEY, value, sizeof value) == 1))
        return 1;
    if (delivery_control(d, NULL, "delivery.resumed", "by", who, NULL, NULL) < 0)
        return -1;
    delivery_set_paused(d, false, NULL);
    log_write(LOG_INFO, "delivery resumed", (const char *[]){"by", who, NULL});
    return 0;
}

/* While paused: another process (hookline jobs resume) may have lifted it. */
static void delivery_check_external_resume(struct delivery *d)
{
    char value[400];
    int rc = store_control_get(d->st, DELIVERY_PAUSE_KEY, value, sizeof value);
    if (rc == 0) {
        delivery_set_paused(d, false, NULL);
        log_write(LOG_INFO, "delivery resumed", (const char *[]){"by", "another process", NULL});
    }
}

void delivery_notify(struct delivery *d)
{
    pthread_mutex_lock(&d->lock);
    d->wake_seq++;
    pthread_cond_broadcast(&d->wake);
    pthread_mutex_unlock(&d->lock);
}

/* The wake counter, read under the lock that delivery_notify writes it under. */
static uint64_t delivery_wake_seq(struct delivery *d)
{
    pthread_mutex_lock(&d->lock);
    uint64_t seen = d->wake_seq;
    pthread_mutex_unlock(&d->lock);
    return seen;
}

static void delivery_wait(struct delivery *d, uint64_t seen, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&d->lock);
    while (!atomic_load(&d->stop) && d->wake_seq == seen) {
        if (pthread_cond_timedwait(&d->wake, &d->lock, &ts) != 0)
            break;
    }
    pthread_mutex_unlock(&d->lock);
}

/* ---------- one job ---------- */

struct delivery_result {
    const char *state; /* done, dead, pending (retry) */
    double next_at;
    int attempts;
    int status;
    char error[300];
    char did[40];
    json_t *records[4];
    size_t nrec;
};

static json_t *delivery_record(const char *kind, const struct store_job *job, const char *did)
{
    json_t *rec = audit_record_new(kind, job->source, job->event_id);
    if (!rec)
        return NULL;
    json_object_set_new(rec, "job_id", json_integer(job->id));
    if (did && *did)
        json_object_set_new(rec, "did", json_string(did));
    else if (job->did)
        json_object_set_new(rec, "did", json_string(job->did));
    if (job->number)
        json_object_set_new(rec, "number", json_string(job->number));
    audit_detail_set_str(rec, "action", job->action);
    return rec;
}

static void delivery_add(struct delivery_result *r, json_t *rec)
{
    if (rec && r->nrec < sizeof r->records / sizeof r->records[0])
        r->records[r->nrec++] = rec;
    else
        json_decref(rec);
}

/* Sends one request within the rate limit; counts it in the metrics. */
static int delivery_send(struct delivery_worker *w, const char *method, const char *path,
                         const char *body, struct didww_response *resp)
{
    struct delivery *d = w->d;
    memset(resp, 0, sizeof *resp);
    struct ratelimit_ticket ticket = {0};
    if (ratelimit_acquire_ticket(d->rl, &d->stop, &ticket) < 0) {
        snprintf(resp->error, sizeof resp->error, "shutting down");
        return DELIVERY_STOPPED;
    }
    int rc = didww_client_send(w->client, method, path, body, resp);
    /* The shared slot counts from the answer: the request reached DIDWW before. */
    ratelimit_done(d->rl, &ticket);
    metrics_didww_request(method, resp->status, (double)resp->duration_ms / 1000.0);
    return rc;
}

static json_t *delivery_http(const char *method, const char *path, const struct didww_response *r,
                             int attempt)
{
    json_t *h = json_pack("{s:s, s:s, s:i, s:I}", "method", method, "path", path, "status",
                          r->status, "duration_ms", (json_int_t)r->duration_ms);
    if (h && attempt > 0)
        json_object_set_new(h, "attempt", json_integer(attempt));
    if (h && (r->status == 0 || r->auth_failed) && r->error[0])
        json_object_set_new(h, "error", json_string(r->error));
    /* 2026-11-19: the status is the token endpoint's, the request was not sent. */
    if (h && r->auth_failed)
        json_object_set_new(h, "token_endpoint", json_true());
    return h;
}

/* Applies the classification of the answer to method path (the request that
 * was really sent: the number lookup, the no-op read or the job's own request)
 * to the result. */
static void delivery_classify(struct delivery_worker *w, const struct store_job *job,
                              const char *method, const char *path,
                              const struct didww_response *resp, int attempt,
                              struct delivery_result *r)
{
    struct delivery *d = w->d;
    enum backoff_class cls = backoff_classify(resp->status);
    r->status = resp->status;
    r->attempts = attempt;
    if (cls == BACKOFF_DONE) {
        r->state = "done";
        delivery_add(r, delivery_record("job.done", job, r->did));
        return;
    }
    json_t *errors = jsonapi_errors(resp->body, resp->body_len);
    if (resp->status == 0)
        snprintf(r->error, sizeof r->error, "%s", resp->error);
    else
        snprintf(r->error, sizeof r->error, "HTTP %d", resp->status);
    /* Bearer mode: the token endpoint refusing the key (or the request: 400, 403) is not
     * the job's fault and no retry will fix it, so delivery pauses saying so. */
    if (resp->auth_failed && resp->status >= 400 && resp->status < 500 && resp->status != 429)
        cls = BACKOFF_PAUSE;
    if (cls == BACKOFF_PAUSE) {
        char reason[256];
        if (resp->auth_failed)
            snprintf(reason, sizeof reason,
                     "the DIDWW token endpoint (didww.auth_url) answered %d%s%s: %s", resp->status,
                     resp->auth_error[0] ? " " : "", resp->auth_error,
                     strcmp(resp->auth_error, "invalid_client") == 0 || resp->status == 401
                         ? "it refused the API key"
                         : "it refused the token request");
        else if (d->auth)
            snprintf(reason, sizeof reason,
                     "DIDWW answered 401 to %s %s with a newly minted bearer token: the token "
                     "was refused",
                     method, path);
        else
            snprintf(reason, sizeof reason, "DIDWW answered 401 to %s %s: the API key was refused",
                     method, path);
        delivery_pause(d, reason, errors);
        r->state = "pending"; /* not the job's fault: it waits for the resume */
        r->attempts = attempt - 1;
        /* On a shared store the other instances learn of the pause from its row
         * within a poll: until then the job is not due, so none sends it again. */
        r->next_at = delivery_wall() + (store_shared(d->st) ? DELIVERY_SHARED_PAUSE_HOLD_S : 0);
        json_decref(errors);
        return;
    }
    /* Throttling is DIDWW protecting itself, not a failure of the job: a 429 does
     * not use up one of max_attempts (the storm would otherwise kill jobs). */
    bool throttled = resp->status == 429;
    int64_t ra = resp->retry_after[0] ? backoff_retry_after_ms(resp->retry_after, time(NULL)) : -1;
    if (throttled) {
        r->attempts = attempt - 1;
        /* DIDWW throttles the key, not this job: every worker holds back for Retry-After
         * (or a second) and the shared limiter halves its rate. The lookup and the no-op
         * read reach this function with their 429s too. */
        ratelimit_throttle(d->rl, ratelimit_now_ms(), ra >= 0 ? ra : DELIVERY_THROTTLE_DEFAULT_MS);
    }
    if (cls == BACKOFF_RETRY && (throttled || attempt < d->opts.max_attempts)) {
        int64_t delay = backoff_next_ms(attempt, d->opts.backoff_initial_ms, d->opts.backoff_max_ms,
                                        ra, delivery_rand01, &w->rng);
        r->state = "pending";
        r->next_at = delivery_wall() + (double)delay / 1000.0;
        json_t *rec = delivery_record("job.retry_scheduled", job, r->did);
        audit_detail_set_int(rec, "delay_ms", (long long)delay);
        audit_detail_set_int(rec, "next_attempt", r->attempts + 1);
        if (throttled)
            json_object_set_new(json_object_get(rec, "detail"), "throttled", json_true());
        if (ra >= 0)
            audit_detail_set_int(rec, "retry_after_ms", (long long)ra);
        delivery_add(r, rec);
        json_decref(errors);
        return;
    }
    r->state = "dead";
    json_t *rec = delivery_record("job.dead", job, r->did);
    audit_detail_set_str(rec, "reason",
                         cls == BACKOFF_RETRY ? "retries exhausted" : "DIDWW refused the request");
    audit_detail_set_int(rec, "attempts", attempt);
    if (rec && errors)
        json_object_set_new(json_object_get(rec, "detail"), "errors", errors);
    else
        json_decref(errors);
    delivery_add(r, rec);
}

/* Resolves job->number to a DID id (cache, then GET /v3/dids?filter[number]=).
 * Returns 1 resolved, 0 when the result is final (r filled), -1 retry/pause (r
 * filled), DELIVERY_STOPPED when nothing was sent because the service stops. */
static int delivery_resolve(struct delivery_worker *w, const struct store_job *job, int attempt,
                            struct delivery_result *r)
{
    if (job->did) {
        snprintf(r->did, sizeof r->did, "%s", job->did);
        return 1;
    }
    if (!job->number) /* a trunk group job: no DID to resolve */
        return 1;
    if (delivery_cache_get(w->d, job->number, r->did, sizeof r->did))
        return 1;
    /* The claim round's list read already answered for this number. */
    int pre = didww_prefetch_number(w->d->pf, job->number, delivery_wall(), r->did, sizeof r->did);
    if (pre == 1) {
        delivery_cache_put(w->d, job->number, r->did);
        return 1;
    }
    if (pre == 0) {
        r->state = "dead";
        r->attempts = attempt;
        snprintf(r->error, sizeof r->error, "no DID with this number");
        json_t *rec = delivery_record("job.dead", job, NULL);
        audit_detail_set_str(rec, "reason", "no DID with this number in the account");
        delivery_add(r, rec);
        return 0;
    }
    char path[128], why[200];
    snprintf(path, sizeof path, "/v3/dids?filter[number]=%s", job->number);
    struct didww_response resp;
    if (delivery_send(w, "GET", path, NULL, &resp) == DELIVERY_STOPPED)
        return DELIVERY_STOPPED;
    if (backoff_classify(resp.status) == BACKOFF_DONE) {
        int found = jsonapi_find_did(resp.body, resp.body_len, job->number, r->did, sizeof r->did,
                                     why, sizeof why);
        didww_response_free(&resp);
        if (found == 1) {
            delivery_cache_put(w->d, job->number, r->did);
            return 1;
        }
        r->state = "dead";
        r->attempts = attempt;
        snprintf(r->error, sizeof r->error, "%s",
                 found == 0 ? "no DID with this number" : "unreadable DID list");
        json_t *rec = delivery_record("job.dead", job, NULL);
        audit_detail_set_str(rec, "reason",
                             found == 0 ? "no DID with this number in the account" : why);
        delivery_add(r, rec);
        return 0;
    }
    json_t *rec = delivery_record("job.attempt", job, NULL);
    if (rec)
        json_object_set_new(rec, "http", delivery_http("GET", path, &resp, attempt));
    delivery_add(r, rec);
    delivery_classify(w, job, "GET", path, &resp, attempt, r);
    didww_response_free(&resp);
    return r->state && strcmp(r->state, "dead") == 0 ? 0 : -1;
}

/* Puts a claimed job back in the queue untouched (no attempt used, nothing
 * audited), due again after delay_s. */
static void delivery_requeue(struct delivery *d, const struct store_job *job, double delay_s)
{
    struct store_op op = {.kind = STORE_OP_JOB,
                          .u.job = {.id = job->id,
                                    .state = "pending",
                                    .only_from = "running",
                                    .next_at = delivery_wall() + delay_s,
                                    .attempts = job->attempts,
                                    .at = delivery_wall()}};
    (void)store_submit_wait(d->st, &op);
}

/* One DID has one FIFO however rules name it: once a number is resolved, its
 * jobs join the DID's key. Returns true when this job must wait for an earlier
 * job of that DID (it was put back in the queue). */
static bool delivery_join_did_key(struct delivery *d, const struct store_job *job, const char *did)
{
    struct store_op op = {
        .kind = STORE_OP_MAP_NUMBER,
        .u.map_number = {
            .number = job->number, .did = did, .job_id = job->id, .at = delivery_wall()}};
    if (store_submit_wait(d->st, &op) < 0)
        return false; /* ordering by the old key still holds for this job */
    return op.u.map_number.result == STORE_MAP_MUST_WAIT;
}

/* Marks did as worked on by this worker's job, unless an older job of this process
 * works on it: then false (the job must go back to the queue). A job by id can pass the
 * store's checks just after an older job by number resolved to the same DID (its round
 * read the number), so the store alone does not keep them apart inside one process. */
static bool delivery_mark_did(struct delivery_worker *w, int64_t job_id, const char *did)
{
    struct delivery *d = w->d;
    bool ok = true;
    pthread_mutex_lock(&d->busy_lock);
    for (int i = 0; i < d->nthreads && ok; i++)
        if (i != w->index && d->busy[i].job_id != 0 && d->busy[i].job_id < job_id &&
            strcmp(d->busy[i].did, did) == 0)
            ok = false;
    if (ok) {
        snprintf(d->busy[w->index].did, sizeof d->busy[w->index].did, "%s", did);
        d->busy[w->index].job_id = job_id;
    }
    pthread_mutex_unlock(&d->busy_lock);
    return ok;
}

static void delivery_unmark_did(struct delivery_worker *w)
{
    pthread_mutex_lock(&w->d->busy_lock);
    w->d->busy[w->index].job_id = 0;
    pthread_mutex_unlock(&w->d->busy_lock);
}

static void delivery_process(struct delivery_worker *w, struct store_job *job)
{
    struct delivery *d = w->d;
    struct delivery_result r = {0};
    int attempt = job->attempts + 1;
    char *body = NULL;
    json_t *before = NULL;

    /* A job naming a DID by id waits while an older job names some DID by a
     * number never resolved yet: it may be the same DID. */
    if (job->did && strncmp(job->order_key, "did:", 4) == 0 &&
        store_jobs_unresolved_before(d->st, job->id)) {
        delivery_requeue(d, job, 0.02);
        return;
    }
    int resolved = delivery_resolve(w, job, attempt, &r);
    if (resolved == DELIVERY_STOPPED)
        goto release;
    if (resolved != 1)
        goto record;
    if (r.did[0] && !delivery_mark_did(w, job->id, r.did)) {
        delivery_requeue(d, job, 0.02); /* an older job of this DID is in flight */
        return;
    }
    if (job->number && strncmp(job->order_key, "number:", 7) == 0 &&
        delivery_join_did_key(d, job, r.did))
        return; /* an earlier job for this DID goes first */
    char path[256];
    if (job->number && strncmp(job->path, "/v3/dids/number:", 16) == 0) {
        snprintf(path, sizeof path, "/v3/dids/%s", r.did);
        body = job->body ? jsonapi_with_did_id(job->body, r.did) : NULL;
    } else {
        snprintf(path, sizeof path, "%s", job->path);
        body = job->body ? strdup(job->body) : NULL;
    }

    /* Read the DID first: skip a change already in place, keep the before-state. */
    if (d->opts.skip_noop && strcmp(job->method, "PATCH") == 0 &&
        strncmp(path, "/v3/dids/", 9) == 0 && body) {
        bool legacy = strcmp(d->opts.api_version, "2021-04-19") == 0 ||
                      strcmp(d->opts.api_version, "2017-09-18") == 0;
        char get[320], why[200];
        snprintf(get, sizeof get, "%s?include=%s", path,
                 legacy ? "trunk,trunk_group" : "voice_in_trunk,voice_in_trunk_group");
        /* The claim round's list read, when fresh, is the before-state (see the README). */
        before = didww_prefetch_take(w->d->pf, path + 9, delivery_wall());
        struct didww_response resp = {0};
        if (!before && delivery_send(w, "GET", get, NULL, &resp) == DELIVERY_STOPPED)
            goto release;
        enum backoff_class cls = before ? BACKOFF_DONE : backoff_classify(resp.status);
        if (before) {
            /* served from the list read: nothing sent */
        } else if (cls == BACKOFF_DONE) {
            before = jsonapi_did_state(resp.body, resp.body_len, why, sizeof why);
        } else if (cls != BACKOFF_RETRY || resp.status != 0) {
            /* A refused read decides the job like the change would have. */
            json_t *rec = delivery_record("job.attempt", job, r.did);
            if (rec)
                json_object_set_new(rec, "http", delivery_http("GET", get, &resp, attempt));
            delivery_add(&r, rec);
            delivery_classify(w, job, "GET", get, &resp, attempt, &r);
            didww_response_free(&resp);
            goto record;
        }
        didww_response_free(&resp);
        if (before && jsonapi_patch_is_noop(body, before)) {
            r.state = "done";
            r.attempts = job->attempts;
            json_t *rec = delivery_record("job.noop", job, r.did);
            if (rec)
                json_object_set_new(json_object_get(rec, "detail"), "state", json_incref(before));
            delivery_add(&r, rec);
            goto record;
        }
    }

    struct didww_response resp;
    if (delivery_send(w, job->method, path, body, &resp) == DELIVERY_STOPPED)
        goto release;
    delivery_inflight_observe(&d->inflight, resp.duration_ms);
    json_t *rec = delivery_record("job.attempt", job, r.did);
    if (rec) {
        json_object_set_new(rec, "http", delivery_http(job->method, path, &resp, attempt));
        if (before)
            json_object_set_new(json_object_get(rec, "detail"), "before", json_incref(before));
        json_t *planned = body ? json_loads(body, 0, NULL) : NULL;
        if (planned)
            json_object_set_new(json_object_get(rec, "detail"), "after",
                                json_incref(json_object_get(planned, "data")));
        json_decref(planned);
    }
    delivery_add(&r, rec);
    delivery_classify(w, job, job->method, path, &resp, attempt, &r);
    didww_response_free(&resp);

    goto record;
release:
    /* Stopping before the request went out: the job goes back to the queue as it
     * was (no attempt used, nothing audited but the release). */
    for (size_t i = 0; i < r.nrec; i++)
        json_decref(r.records[i]);
    r.nrec = 0;
    r.state = "pending";
    r.attempts = job->attempts;
    r.next_at = delivery_wall();
    r.status = 0;
    snprintf(r.error, sizeof r.error, "released at shutdown");
record:
    if (r.nrec > 0 || strcmp(r.state, "pending") != 0)
        metrics_job_state(r.state);
    struct store_op op = {.kind = STORE_OP_JOB,
                          .u.job = {.id = job->id,
                                    .state = r.state,
                                    .only_from = "running",
                                    .next_at = r.next_at,
                                    .attempts = r.attempts,
                                    .last_status = r.status,
                                    .last_error = r.error[0] ? r.error : NULL,
                                    .did = r.did[0] ? r.did : NULL,
                                    .at = delivery_wall()},
                          .audit = r.records,
                          .naudit = r.nrec};
    if (store_submit_wait(d->st, &op) < 0) {
        char id[32];
        snprintf(id, sizeof id, "%lld", (long long)job->id);
        log_write(LOG_ERROR, "job outcome not stored; the lease will return it to the queue",
                  (const char *[]){"job_id", id, "error", op.error, NULL});
    }
    for (size_t i = 0; i < r.nrec; i++)
        json_decref(r.records[i]);
    free(body);
    json_decref(before);
}

/* ---------- batched reads (claim round) ---------- */

static int delivery_prefetch_send(void *ctx, const char *path, struct didww_response *resp)
{
    struct delivery_worker *w = ctx;
    int rc = delivery_send(w, "GET", path, NULL, resp);
    if (rc == DELIVERY_STOPPED)
        return DIDWW_PREFETCH_STOPPED;
    delivery_inflight_observe(&w->d->inflight, resp->duration_ms);
    return rc;
}

/* True when the API version's DID list is known to take array filters, include and
 * paging (2021-12-15 and later); the older versions keep single reads. */
static bool delivery_can_batch(const struct delivery *d)
{
    return strcmp(d->opts.api_version, "2021-04-19") != 0 &&
           strcmp(d->opts.api_version, "2017-09-18") != 0;
}

/* Reads the DIDs the claimed jobs name in one list per filter (ids; numbers not yet
 * resolved) into the shared cache. Returns false when DIDWW answered 429: the jobs were put back
 * untouched, due after Retry-After (or a second), and must not be processed. Any other
 * failure leaves the jobs to their single reads. */
static bool delivery_prefetch_round(struct delivery_worker *w, struct store_job *jobs, int n)
{
    struct delivery *d = w->d;
    if (n < 2 || !delivery_can_batch(d))
        return true;
    json_t *ids = json_object(), *numbers = json_object();
    for (int i = 0; i < n; i++) {
        const struct store_job *j = &jobs[i];
        char did[40];
        bool patch = j->method && strcmp(j->method, "PATCH") == 0 && j->body && j->path &&
                     strncmp(j->path, "/v3/dids/", 9) == 0;
        if (j->did && patch && d->opts.skip_noop)
            json_object_set_new(ids, j->did, json_true());
        else if (!j->did && j->number && delivery_cache_get(d, j->number, did, sizeof did)) {
            if (patch && d->opts.skip_noop)
                json_object_set_new(ids, did, json_true());
        } else if (!j->did && j->number)
            json_object_set_new(numbers, j->number, json_true());
    }
    bool go_on = true;
    json_t *lists[2] = {ids, numbers};
    static const char *const filters[2] = {"id", "number"};
    for (int k = 0; k < 2 && go_on; k++) {
        size_t m = json_object_size(lists[k]), i = 0;
        if (m == 0 || (m == 1 && k == 0))
            continue; /* one DID by id: its single read costs the same */
        const char **values = calloc(m, sizeof *values);
        const char *key;
        json_t *v;
        json_object_foreach(lists[k], key, v)
        {
            if (values)
                values[i++] = key;
        }
        struct didww_response failed;
        int rc = values ? didww_prefetch_fetch(w->d->pf, filters[k], values, m,
                                               "voice_in_trunk,voice_in_trunk_group",
                                               d->opts.batch_page_size, delivery_wall(),
                                               delivery_prefetch_send, w, &failed)
                        : 0;
        free(values);
        if (rc != -1)
            continue;
        if (failed.status == 429) {
            int64_t ra =
                failed.retry_after[0] ? backoff_retry_after_ms(failed.retry_after, time(NULL)) : -1;
            int64_t block = ra >= 0 ? ra : DELIVERY_THROTTLE_DEFAULT_MS;
            ratelimit_throttle(d->rl, ratelimit_now_ms(), block);
            for (int j = 0; j < n; j++)
                delivery_requeue(d, &jobs[j], (double)block / 1000.0);
            go_on = false;
        }
        char status[16];
        snprintf(status, sizeof status, "%d", failed.status);
        log_write(LOG_WARN,
                  go_on ? "batched DID read failed; the jobs read their DIDs singly"
                        : "batched DID read throttled (429); the jobs wait for Retry-After",
                  (const char *[]){"status", status, "error", failed.error, NULL});
        didww_response_free(&failed);
    }
    json_decref(ids);
    json_decref(numbers);
    return go_on;
}

/* A job naming a DID by id waits while an older job names some DID by a number not
 * resolved yet (it may be the same DID): decided for the whole round here, before any of
 * its numbers is resolved from the list read, which would otherwise re-key such an older
 * job while this one already runs beside it. Those jobs go back to the queue; the rest
 * are compacted in place. Returns the number left. */
static int delivery_round_order(struct delivery *d, struct store_job *jobs, int n)
{
    int youngest = -1;
    for (int i = 0; i < n; i++)
        if (jobs[i].did && strncmp(jobs[i].order_key, "did:", 4) == 0 &&
            (youngest < 0 || jobs[i].id > jobs[youngest].id))
            youngest = i;
    if (youngest < 0 || !store_jobs_unresolved_before(d->st, jobs[youngest].id))
        return n;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (jobs[i].did && strncmp(jobs[i].order_key, "did:", 4) == 0 &&
            store_jobs_unresolved_before(d->st, jobs[i].id)) {
            delivery_requeue(d, &jobs[i], 0.02);
            store_job_clear(&jobs[i]);
        } else {
            jobs[kept++] = jobs[i];
        }
    }
    return kept;
}

static void *delivery_worker_main(void *arg)
{
    struct delivery_worker *w = arg;
    struct delivery *d = w->d;
    /* A round's jobs wait in d->ready for a free worker: the lease adds up to two
     * seconds per job of the round to that, and a job still waiting then is dropped
     * unsent (the store hands it out again when the lease ends). */
    double wait_s = 2.0 * d->opts.batch_size;
    double lease = (double)d->opts.timeout_ms / 1000.0 * 3 + 30 + wait_s;
    char name[16]; /* the kernel's limit, NUL included */
    snprintf(name, sizeof name, "delivery-%d", w->index % 1000000);
    pthread_setname_np(pthread_self(), name);
    while (!atomic_load(&d->stop)) {
        if (delivery_paused(d, NULL, 0)) {
            delivery_check_external_resume(d);
            if (delivery_paused(d, NULL, 0))
                delivery_wait(d, delivery_wake_seq(d), DELIVERY_PAUSE_POLL_MS);
            continue;
        }
        uint64_t seen = delivery_wake_seq(d);
        int target = delivery_inflight_target(&d->inflight);
        if (w->index >= target) {
            /* Not needed at the observed latency: enough workers keep the budget busy.
             * A plain sleep: the wake-ups for new jobs are for the workers in use. */
            struct timespec nap = {0, DELIVERY_IDLE_POLL_MS * 1000000L};
            nanosleep(&nap, NULL);
            continue;
        }
        struct store_job job;
        if (delivery_ready_pop(&d->ready, delivery_wall(), &job)) { /* an earlier round's */
            delivery_process(w, &job);
            delivery_unmark_did(w);
            store_job_clear(&job);
            continue;
        }
        /* The next round is read while about a second's worth of jobs still waits, so
         * the workers never run dry during its list request. */
        size_t low =
            (size_t)target + (size_t)(d->opts.rate_limit_per_s > 0 ? d->opts.rate_limit_per_s : 1);
        if (!delivery_ready_begin_round(&d->ready, low)) {
            delivery_wait(d, seen, DELIVERY_ROUND_WAIT_MS); /* another worker reads a round */
            continue;
        }
        struct store_op op = {.kind = STORE_OP_CLAIM,
                              .u.claim = {.now = delivery_wall(),
                                          .lease_s = lease,
                                          .max = delivery_can_batch(d) ? d->opts.batch_size : 1,
                                          .supersedes = delivery_supersedes}};
        struct store_op_claim *claim = &op.u.claim;
        if (store_submit_wait(d->st, &op) < 0 || claim->result != STORE_CLAIM_CLAIMED) {
            delivery_ready_end_round(&d->ready, NULL, 0, 0);
            free(claim->jobs);
            delivery_wait(d, seen,
                          d->opts.idle_poll_ms > 0 ? d->opts.idle_poll_ms : DELIVERY_IDLE_POLL_MS);
            continue;
        }
        claim->n = delivery_round_order(d, claim->jobs, claim->n);
        bool go_on = delivery_prefetch_round(w, claim->jobs, claim->n);
        /* The round's other jobs go to whichever workers are free; this one sends the
         * first (all of them, one after another, if the queue cannot take them). */
        int own = claim->n;
        if (go_on && claim->n > 1 &&
            delivery_ready_end_round(&d->ready, claim->jobs + 1, (size_t)claim->n - 1,
                                     op.u.claim.now + wait_s)) {
            own = 1;
            delivery_notify(d);
        } else {
            delivery_ready_end_round(&d->ready, NULL, 0, 0);
        }
        for (int i = 0; i < own; i++) {
            if (go_on)
                delivery_process(w, &claim->jobs[i]);
            delivery_unmark_did(w);
            store_job_clear(&claim->jobs[i]);
        }
        free(claim->jobs);
    }
    return NULL;
}

/* The shared budget's gate (ratelimit_shared_fn): one slot of the store's
 * budget for this API key, held at most the request's timeout and a second,
 * or how long to wait. */
static int64_t delivery_rate_shared(void *ctx, int n, int64_t window_ms, struct ratelimit_ticket *t)
{
    struct delivery *d = ctx;
    double wait_s = 0.1;
    char err[200];
    struct store_rate_slot slot = {0};
    int rc =
        store_rate_take(d->st, d->budget_key, n, (double)window_ms / 1000.0,
                        (double)d->opts.timeout_ms / 1000.0 + 1.0, &slot, &wait_s, err, sizeof err);
    if (rc == 0) {
        t->slot = slot.slot;
        t->until = slot.until;
        return 0;
    }
    if (rc < 0)
        log_write(LOG_WARN, "the shared rate budget cannot be read; nothing is sent",
                  (const char *[]){"error", err, NULL});
    int64_t ms = (int64_t)(wait_s * 1000.0) + 1;
    return ms > 0 ? ms : 1;
}

/* ratelimit_shared_done_fn: the request of t was answered. */
static void delivery_rate_shared_done(void *ctx, const struct ratelimit_ticket *t)
{
    struct delivery *d = ctx;
    char err[200];
    struct store_rate_slot slot = {.slot = t->slot, .until = t->until};
    if (store_rate_done(d->st, d->budget_key, &slot, err, sizeof err) < 0)
        log_write(LOG_WARN, "a shared rate slot stays held until its hold ends",
                  (const char *[]){"error", err, NULL});
}

int delivery_start(const struct delivery_options *opts, struct store *st, struct delivery **out,
                   char *err, size_t err_len)
{
    struct delivery *d = calloc(1, sizeof *d);
    struct delivery_worker *ws = NULL;
    if (!d) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    d->opts = *opts;
    d->st = st;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    pthread_mutex_init(&d->cache_lock, NULL);
    char hex[DIGEST_SHA256_HEX_LEN + 1];
    digest_sha256_hex(opts->api_key, strlen(opts->api_key), hex);
    snprintf(d->key_fp, sizeof d->key_fp, "%.16s", hex);
    d->rl = ratelimit_create(opts->rate_limit_per_s, 20);
    if (d->opts.batch_size <= 0)
        d->opts.batch_size = 50;
    if (d->opts.batch_page_size <= 0 || d->opts.batch_page_size > DIDWW_PREFETCH_PAGE_MAX)
        d->opts.batch_page_size = DIDWW_PREFETCH_PAGE_MAX;
    if (d->opts.prefetch_max_age_ms <= 0)
        d->opts.prefetch_max_age_ms = 10000;
    int min_workers = opts->workers > 0 ? opts->workers : 1;
    int max_in_flight = opts->max_in_flight > 0 ? opts->max_in_flight : 64;
    delivery_ready_init(&d->ready);
    pthread_mutex_init(&d->busy_lock, NULL);
    d->pf = didww_prefetch_create((double)d->opts.prefetch_max_age_ms / 1000.0);
    delivery_inflight_init(&d->inflight, opts->rate_limit_per_s, min_workers,
                           max_in_flight > min_workers ? max_in_flight : min_workers);
    d->nthreads = max_in_flight > min_workers ? max_in_flight : min_workers;
    d->busy = calloc((size_t)d->nthreads, sizeof *d->busy);
    d->threads = calloc((size_t)d->nthreads, sizeof *d->threads);
    ws = calloc((size_t)d->nthreads, sizeof *ws);
    if (!d->rl || !d->threads || !ws || !d->busy) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    /* Jobs a previous process left running (killed mid-request) go back to the
     * queue now instead of waiting for their lease: with SQLite, this process is
     * the only one that claims. On a shared store the running jobs may be other
     * live instances' own: they come back only when their lease runs out (a
     * claim takes a job whose lease expired), and every send also takes a slot
     * of the budget all instances share. */
    struct store_op rel = {.kind = STORE_OP_RELEASE, .u.release = {.at = delivery_wall()}};
    if (store_shared(st)) {
        snprintf(d->budget_key, sizeof d->budget_key, "didww:%s", d->key_fp);
        ratelimit_set_shared(d->rl, delivery_rate_shared, delivery_rate_shared_done, d,
                             DELIVERY_SHARED_WINDOW_MS);
        rel.u.release.instance = opts->instance_id ? opts->instance_id : "";
        rel.u.release.stale_s = DELIVERY_HOLDER_STALE_S;
        rel.u.release.reclaim_own = true;
    }
    if (store_submit_wait(st, &rel) == 0 && rel.u.release.released > 0) {
        char n[32];
        snprintf(n, sizeof n, "%lld", (long long)rel.u.release.released);
        log_write(LOG_WARN, "jobs left running by the previous process are queued again",
                  (const char *[]){"count", n, NULL});
    }
    /* A pause recorded earlier holds across restarts, unless the key changed. */
    char value[400];
    if (store_control_get(st, DELIVERY_PAUSE_KEY, value, sizeof value) == 1) {
        const char *fp = strstr(value, "|key:");
        if (fp && strcmp(fp + 5, d->key_fp) != 0) {
            d->paused = true; /* so that delivery_resume records the lift */
            delivery_resume(d, "the API key changed");
        } else {
            char *bar = strstr(value, "|key:");
            if (bar)
                *bar = '\0';
            delivery_set_paused(d, true, value);
            log_write(LOG_WARN, "delivery starts paused", (const char *[]){"reason", value, NULL});
        }
    }
    if (opts->api_version && strcmp(opts->api_version, "2026-11-19") == 0) {
        struct didww_auth_options ao = {.auth_url = opts->auth_url,
                                        .api_key = opts->api_key,
                                        .api_version = opts->api_version,
                                        .expires_in_s = opts->token_expires_in_s,
                                        .timeout_ms = opts->timeout_ms};
        d->auth = opts->auth_url ? didww_auth_create(&ao) : NULL;
        if (!d->auth) {
            snprintf(err, err_len, "cannot set up DIDWW bearer tokens (didww.auth_url)");
            goto fail;
        }
    }
    struct didww_client_options co = {.base_url = opts->base_url,
                                      .api_key = opts->api_key,
                                      .auth = d->auth,
                                      .api_version = opts->api_version,
                                      .timeout_ms = opts->timeout_ms};
    for (int i = 0; i < d->nthreads; i++) {
        ws[i].d = d;
        ws[i].index = i;
        srand48_r((long)time(NULL) ^ (long)(i * 7919), &ws[i].rng);
        ws[i].client = didww_client_create(&co);
        if (!ws[i].client || !d->pf) {
            snprintf(err, err_len, "cannot create the DIDWW client");
            goto fail;
        }
    }
    for (int i = 0; i < d->nthreads; i++) {
        if (pthread_create(&d->threads[i], NULL, delivery_worker_main, &ws[i]) != 0) {
            snprintf(err, err_len, "cannot start delivery worker %d", i);
            atomic_store(&d->stop, 1);
            for (int k = 0; k < i; k++)
                pthread_join(d->threads[k], NULL);
            goto fail;
        }
    }
    d->workers_mem = ws;
    *out = d;
    return 0;
fail:
    for (int i = 0; ws && i < d->nthreads; i++)
        didww_client_destroy(ws[i].client);
    free(ws);
    delivery_inflight_destroy(&d->inflight);
    didww_prefetch_destroy(d->pf);
    delivery_ready_destroy(&d->ready);
    free(d->busy);
    pthread_mutex_destroy(&d->busy_lock);
    didww_auth_destroy(d->auth);
    free(d->threads);
    ratelimit_destroy(d->rl);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->cache_lock);
    free(d);
    return -1;
}

void delivery_stop(struct delivery *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    atomic_store(&d->stop, 1);
    pthread_cond_broadcast(&d->wake);
    pthread_mutex_unlock(&d->lock);
    for (int i = 0; i < d->nthreads; i++)
        pthread_join(d->threads[i], NULL);
    /* Jobs of a round no worker reached: back to the queue untouched. */
    struct store_job left;
    while (delivery_ready_pop(&d->ready, 0, &left)) { /* late ones too */
        delivery_requeue(d, &left, 0);
        store_job_clear(&left);
    }
    struct delivery_worker *ws = d->workers_mem;
    for (int i = 0; i < d->nthreads; i++)
        didww_client_destroy(ws[i].client);
    free(ws);
    delivery_inflight_destroy(&d->inflight);
    didww_prefetch_destroy(d->pf);
    delivery_ready_destroy(&d->ready);
    free(d->busy);
    pthread_mutex_destroy(&d->busy_lock);
    didww_auth_destroy(d->auth);
    free(d->threads);
    ratelimit_destroy(d->rl);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->cache_lock);
    free(d);
}
