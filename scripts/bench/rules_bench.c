/*
 * rules_bench: events per second per thread through the rule engine, for
 * scripts/bench/rules.sh. Mode "baseline" decodes the event body
 * (ingest_decode_body) and frees it; mode "rule" decodes, runs the rule
 * (rules_run, on the calling thread's own lua_State) and frees the plan. Rounds
 * alternate baseline/rule three times; each round runs every worker thread at
 * once for --seconds and the summary takes the median round of each mode. The
 * main thread only parses options, releases rounds through a barrier and prints;
 * nothing is stored or sent. A rule that fails, skips or plans no job aborts the
 * run (exit 1): the benchmark must never time an error path.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ingest.h"
#include "log.h"
#include "rules.h"

#define BENCH_MAX_DATA 16
#define BENCH_MAX_THREADS 256
#define BENCH_MAX_EVENT_BYTES (16u << 20)
#define BENCH_BATCH 64           /* events between two looks at the clock */
#define BENCH_WARMUP_EVENTS 2000 /* per mode and thread, before the first round */
#define BENCH_ROUNDS_PER_MODE 3
#define BENCH_TARGET_RATE 100000.0 /* events/s/core through the example rule */
#define BENCH_TARGET_OVERHEAD_US 10.0

enum bench_mode { BENCH_BASELINE = 0, BENCH_RULE = 1 };

static const char *const bench_mode_names[] = {"baseline", "rule"};

struct bench_opts {
    const char *script;
    const char *data_names[BENCH_MAX_DATA];
    const char *data_args[BENCH_MAX_DATA]; /* paths as given */
    size_t ndata;
    const char *event_path;
    const char *headers_path; /* NULL: the built-in Zendesk-like headers */
    const char *source;
    const char *content_type;
    const char *api_version;
    const char *log_level;
    double seconds;
    long threads;
    long long instruction_limit;
    long long memory_limit;
    bool run_baseline, run_rule;
};

/* Read-only after start-up, except the failure fields (under fail_lock). */
struct bench_shared {
    const struct bench_opts *opts;
    struct rules *rules;
    unsigned char *raw;
    size_t raw_len;
    json_t *headers;
    char *event_id;
    double received_at;
    pthread_barrier_t barrier; /* workers + main */
    enum bench_mode rounds[2 * BENCH_ROUNDS_PER_MODE];
    size_t nrounds;
    atomic_bool failed;
    pthread_mutex_t fail_lock;
    char fail_msg[700];
};

struct bench_worker {
    pthread_t tid;
    size_t index;
    struct bench_shared *sh;
    uint64_t count[2 * BENCH_ROUNDS_PER_MODE];
    double elapsed[2 * BENCH_ROUNDS_PER_MODE];
    size_t jobs; /* jobs planned per event (rule mode) */
};

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bench_usage(FILE *out)
{
    fprintf(out,
            "usage: rules_bench --script PATH --event FILE --source NAME [options]\n"
            "  --data NAME=PATH          rules.data entry (repeatable, at most %d)\n"
            "  --seconds N               length of one round [3] (decimals allowed)\n"
            "  --threads N               worker threads run at once [1]\n"
            "  --api-version V           didww.api_version [2022-05-10]\n"
            "  --instruction-limit N     per event [1000000]\n"
            "  --memory-limit N          Lua heap bytes per event [8388608]\n"
            "  --content-type TYPE       media type for ingest_decode_body [application/json]\n"
            "  --headers FILE            JSON object of lower-case request headers\n"
            "                            [a built-in Zendesk-like set]\n"
            "  --log-level LEVEL         debug|info|warn|error [warn]: below warn every\n"
            "                            log.info of the rule writes a line to stderr\n"
            "  --mode both|rule|baseline which modes to run [both] (one mode: 3 rounds)\n",
            BENCH_MAX_DATA);
}

static void bench_fail(struct bench_shared *sh, const char *what, const char *detail)
{
    pthread_mutex_lock(&sh->fail_lock);
    if (!atomic_load(&sh->failed))
        snprintf(sh->fail_msg, sizeof sh->fail_msg, "%s: %s", what, detail);
    atomic_store(&sh->failed, true);
    pthread_mutex_unlock(&sh->fail_lock);
}

static int bench_parse_long(const char *flag, const char *s, long long min, long long max,
                            long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "rules_bench: %s wants an integer in [%lld, %lld], got '%s'\n", flag, min,
                max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int bench_parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0.01 || v > 3600) {
        fprintf(stderr, "rules_bench: --seconds wants a number in [0.01, 3600], got '%s'\n", s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Parses argv into o. Returns 0, 1 after --help, or -1 on a usage error. */
static int bench_parse_args(int argc, char **argv, struct bench_opts *o)
{
    *o = (struct bench_opts){.source = NULL,
                             .content_type = "application/json",
                             .api_version = "2022-05-10",
                             .log_level = "warn",
                             .seconds = 3,
                             .threads = 1,
                             .instruction_limit = 1000000,
                             .memory_limit = 8388608,
                             .run_baseline = true,
                             .run_rule = true};
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0) {
            bench_usage(stdout);
            return 1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "rules_bench: %s needs a value (or is unknown)\n", flag);
            return -1;
        }
        const char *val = argv[++i];
        long long n;
        if (strcmp(flag, "--script") == 0) {
            o->script = val;
        } else if (strcmp(flag, "--data") == 0) {
            const char *eq = strchr(val, '=');
            if (!eq || eq == val || eq[1] == '\0') {
                fprintf(stderr, "rules_bench: --data wants NAME=PATH, got '%s'\n", val);
                return -1;
            }
            if (o->ndata == BENCH_MAX_DATA) {
                fprintf(stderr, "rules_bench: at most %d --data entries\n", BENCH_MAX_DATA);
                return -1;
            }
            char *name = strndup(val, (size_t)(eq - val));
            if (!name) {
                fprintf(stderr, "rules_bench: out of memory\n");
                return -1;
            }
            o->data_names[o->ndata] = name;
            o->data_args[o->ndata] = eq + 1;
            o->ndata++;
        } else if (strcmp(flag, "--event") == 0) {
            o->event_path = val;
        } else if (strcmp(flag, "--headers") == 0) {
            o->headers_path = val;
        } else if (strcmp(flag, "--source") == 0) {
            o->source = val;
        } else if (strcmp(flag, "--content-type") == 0) {
            o->content_type = val;
        } else if (strcmp(flag, "--api-version") == 0) {
            o->api_version = val;
        } else if (strcmp(flag, "--log-level") == 0) {
            o->log_level = val;
        } else if (strcmp(flag, "--seconds") == 0) {
            if (bench_parse_seconds(val, &o->seconds) < 0)
                return -1;
        } else if (strcmp(flag, "--threads") == 0) {
            if (bench_parse_long(flag, val, 1, BENCH_MAX_THREADS, &n) < 0)
                return -1;
            o->threads = (long)n;
        } else if (strcmp(flag, "--instruction-limit") == 0) {
            if (bench_parse_long(flag, val, 1, INT64_MAX / 2, &n) < 0)
                return -1;
            o->instruction_limit = n;
        } else if (strcmp(flag, "--memory-limit") == 0) {
            if (bench_parse_long(flag, val, 1, INT64_MAX / 2, &n) < 0)
                return -1;
            o->memory_limit = n;
        } else if (strcmp(flag, "--mode") == 0) {
            o->run_baseline = strcmp(val, "both") == 0 || strcmp(val, "baseline") == 0;
            o->run_rule = strcmp(val, "both") == 0 || strcmp(val, "rule") == 0;
            if (!o->run_baseline && !o->run_rule) {
                fprintf(stderr, "rules_bench: --mode wants both, rule or baseline\n");
                return -1;
            }
        } else {
            fprintf(stderr, "rules_bench: unknown option %s\n", flag);
            return -1;
        }
    }
    if (!o->event_path || !o->source || (o->run_rule && !o->script)) {
        fprintf(stderr, "rules_bench: --event, --source and (for the rule mode) --script are "
                        "required\n");
        return -1;
    }
    return 0;
}

/* Reads a whole file of at most max bytes. Returns a new buffer (caller frees)
 * or NULL after printing why. */
static unsigned char *bench_read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "rules_bench: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    unsigned char *buf = malloc(max + 1);
    if (!buf) {
        fprintf(stderr, "rules_bench: %s: out of memory\n", path);
        fclose(f);
        return NULL;
    }
    *len = fread(buf, 1, max + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || *len > max) {
        fprintf(stderr, "rules_bench: %s: %s\n", path,
                bad ? "read error" : "larger than the 16 MiB limit");
        free(buf);
        return NULL;
    }
    return buf;
}

/* The headers the rule sees: the --headers file, or what Zendesk sends (the
 * signature already redacted, as ingest hands it to the planner). */
static json_t *bench_headers(const struct bench_opts *o, size_t raw_len)
{
    if (o->headers_path) {
        json_error_t jerr;
        json_t *h = json_load_file(o->headers_path, 0, &jerr);
        if (!h || !json_is_object(h)) {
            fprintf(stderr, "rules_bench: %s:%d: %s\n", o->headers_path, jerr.line,
                    h ? "not a JSON object" : jerr.text);
            json_decref(h);
            return NULL;
        }
        return h;
    }
    char length[32];
    snprintf(length, sizeof length, "%zu", raw_len);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "content-type", o->content_type,
                     "content-length", length, "user-agent", "Zendesk Webhook",
                     "x-zendesk-account-id", "22129848", "x-zendesk-webhook-id",
                     "01HF8ZK3W4Q2N7R5T6V9X0Y1Z2", "x-zendesk-webhook-invocation-id", "8350205582",
                     "x-zendesk-webhook-signature", "[redacted]",
                     "x-zendesk-webhook-signature-timestamp", "2026-11-24T09:02:44Z");
}

/* One event of mode m. Returns the jobs planned (0 for the baseline), or -1
 * after recording why in sh. */
static long bench_one(struct bench_shared *sh, enum bench_mode m)
{
    const struct bench_opts *o = sh->opts;
    char why[256];
    struct jdoc *body = ingest_decode_body(o->content_type, sh->raw, sh->raw_len, why, sizeof why);
    if (!body) {
        bench_fail(sh, "decoding the event", why);
        return -1;
    }
    if (m == BENCH_BASELINE) {
        jdoc_free(body);
        return 0;
    }
    struct rules_event ev = {o->source, sh->event_id, sh->received_at, sh->headers,
                             body,      sh->raw,      sh->raw_len};
    struct rules_result res;
    rules_run(sh->rules, &ev, &res);
    long jobs = (long)res.plan.n;
    if (res.outcome == RULES_FAILED) {
        bench_fail(sh, "the rule failed", res.message);
        jobs = -1;
    } else if (res.outcome == RULES_SKIPPED) {
        bench_fail(sh, "the rule skipped the event (a benchmark event must plan jobs)",
                   res.message);
        jobs = -1;
    } else if (jobs == 0) {
        bench_fail(sh, "the rule planned 0 jobs", "a benchmark event must plan at least one job");
        jobs = -1;
    }
    rules_result_free(&res);
    jdoc_free(body);
    return jobs;
}

/* Runs mode m for the configured time; stores the count and elapsed seconds. */
static void bench_round(struct bench_worker *w, enum bench_mode m, size_t round)
{
    struct bench_shared *sh = w->sh;
    uint64_t n = 0;
    double t0 = bench_now(), deadline = t0 + sh->opts->seconds, t = t0;
    while (!atomic_load_explicit(&sh->failed, memory_order_relaxed)) {
        for (int i = 0; i < BENCH_BATCH; i++) {
            long jobs = bench_one(sh, m);
            if (jobs < 0)
                break;
            if (m == BENCH_RULE && (size_t)jobs != w->jobs) {
                char detail[96];
                snprintf(detail, sizeof detail, "%ld jobs after %zu in warm-up", jobs, w->jobs);
                bench_fail(sh, "the rule planned a varying number of jobs", detail);
                break;
            }
            n++;
        }
        t = bench_now();
        if (t >= deadline)
            break;
    }
    w->count[round] = n;
    w->elapsed[round] = t - t0;
}

static void *bench_worker_main(void *arg)
{
    struct bench_worker *w = arg;
    struct bench_shared *sh = w->sh;
    /* Warm-up: builds this thread's lua_State and fills the caches, untimed. */
    for (int i = 0; i < BENCH_WARMUP_EVENTS && !atomic_load(&sh->failed); i++) {
        if (sh->opts->run_rule) {
            long jobs = bench_one(sh, BENCH_RULE);
            if (jobs < 0)
                break;
            w->jobs = (size_t)jobs;
        }
        if (sh->opts->run_baseline && bench_one(sh, BENCH_BASELINE) < 0)
            break;
    }
    pthread_barrier_wait(&sh->barrier); /* warm-up done */
    for (size_t r = 0; r < sh->nrounds; r++) {
        if (atomic_load(&sh->failed))
            break;                          /* every party sees the same flag after a barrier */
        pthread_barrier_wait(&sh->barrier); /* start */
        bench_round(w, sh->rounds[r], r);
        pthread_barrier_wait(&sh->barrier); /* end */
    }
    return NULL;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double bench_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double bench_rate(const struct bench_worker *w, size_t round)
{
    return w->elapsed[round] > 0 ? (double)w->count[round] / w->elapsed[round] : 0;
}

/* Mean per-thread rate of one round. */
static double bench_round_rate(const struct bench_worker *ws, size_t nthreads, size_t round)
{
    double sum = 0;
    for (size_t t = 0; t < nthreads; t++)
        sum += bench_rate(&ws[t], round);
    return sum / (double)nthreads;
}

/* Median over the rounds of mode m: of the per-thread mean (thread == SIZE_MAX)
 * or of one thread. */
static double bench_mode_median(const struct bench_shared *sh, const struct bench_worker *ws,
                                size_t nthreads, enum bench_mode m, size_t thread)
{
    double v[2 * BENCH_ROUNDS_PER_MODE];
    size_t n = 0;
    for (size_t r = 0; r < sh->nrounds; r++) {
        if (sh->rounds[r] != m)
            continue;
        v[n++] =
            thread == SIZE_MAX ? bench_round_rate(ws, nthreads, r) : bench_rate(&ws[thread], r);
    }
    return n ? bench_median(v, n) : 0;
}

static void bench_print_threads(const char *label, const struct bench_shared *sh,
                                const struct bench_worker *ws, size_t nthreads, enum bench_mode m)
{
    double total = 0;
    printf("%-24s", label);
    for (size_t t = 0; t < nthreads; t++) {
        double rate = bench_mode_median(sh, ws, nthreads, m, t);
        total += rate;
        printf("%st%zu %.0f", t ? ", " : "", t + 1, rate);
    }
    printf(" events/s; total %.0f events/s\n", total);
}

static void bench_summary(const struct bench_shared *sh, const struct bench_worker *ws,
                          size_t nthreads)
{
    const struct bench_opts *o = sh->opts;
    double base =
        o->run_baseline ? bench_mode_median(sh, ws, nthreads, BENCH_BASELINE, SIZE_MAX) : 0;
    double rule = o->run_rule ? bench_mode_median(sh, ws, nthreads, BENCH_RULE, SIZE_MAX) : 0;
    printf("\n");
    if (o->run_baseline)
        printf("baseline (decode only): %.0f events/s/thread\n", base);
    if (o->run_rule)
        printf("rule (decode+run+plan): %.0f events/s/thread  (%zu job%s/event)\n", rule,
               ws[0].jobs, ws[0].jobs == 1 ? "" : "s");
    if (o->run_baseline && o->run_rule && base > 0 && rule > 0) {
        double overhead = 1e6 / rule - 1e6 / base;
        printf("rule overhead:          %.2f us/event (target <= %.0f%s)\n", overhead,
               BENCH_TARGET_OVERHEAD_US,
               overhead <= BENCH_TARGET_OVERHEAD_US ? "" : ": BELOW TARGET");
    }
    if (o->run_rule)
        printf("rule rate vs target:    %.2fx of %.0f events/s/core%s\n", rule / BENCH_TARGET_RATE,
               BENCH_TARGET_RATE, rule >= BENCH_TARGET_RATE ? "" : "  BELOW TARGET");
    if (nthreads > 1) {
        if (o->run_baseline)
            bench_print_threads("per thread (baseline):", sh, ws, nthreads, BENCH_BASELINE);
        if (o->run_rule)
            bench_print_threads("per thread (rule):", sh, ws, nthreads, BENCH_RULE);
    }
}

/* Loads the event, headers and rule engine into sh. Returns 0 or -1 (printed). */
static int bench_setup(struct bench_shared *sh, const struct bench_opts *o, char **abs_paths)
{
    enum log_level level;
    if (log_parse_level(o->log_level, &level) < 0) {
        fprintf(stderr, "rules_bench: --log-level wants debug, info, warn or error\n");
        return -1;
    }
    log_set_level(level);

    sh->raw = bench_read_file(o->event_path, BENCH_MAX_EVENT_BYTES, &sh->raw_len);
    if (!sh->raw)
        return -1;
    char why[256];
    struct jdoc *body = ingest_decode_body(o->content_type, sh->raw, sh->raw_len, why, sizeof why);
    if (!body) {
        fprintf(stderr, "rules_bench: %s: %s\n", o->event_path, why);
        return -1;
    }
    const struct jdoc_node *idn = jdoc_get(body, jdoc_root(body), "id", 2);
    sh->event_id = strdup(idn && idn->type == JDOC_STRING ? jdoc_str(body, idn) : "bench-event");
    jdoc_free(body);
    sh->headers = bench_headers(o, sh->raw_len);
    if (!sh->event_id || !sh->headers) {
        fprintf(stderr, "rules_bench: cannot build the event\n");
        return -1;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    sh->received_at = (double)now.tv_sec + (double)now.tv_nsec / 1e9;

    if (!o->run_rule)
        return 0;
    /* rules_create wants absolute paths. */
    for (size_t i = 0; i <= o->ndata; i++) {
        const char *p = i < o->ndata ? o->data_args[i] : o->script;
        abs_paths[i] = realpath(p, NULL);
        if (!abs_paths[i]) {
            fprintf(stderr, "rules_bench: %s: %s\n", p, strerror(errno));
            return -1;
        }
    }
    struct rules_options ro = {.script_path = abs_paths[o->ndata],
                               .display_name = o->script,
                               .data_names = o->data_names,
                               .data_paths = (const char *const *)abs_paths,
                               .ndata = o->ndata,
                               .instruction_limit = o->instruction_limit,
                               .memory_limit_bytes = o->memory_limit,
                               .api_version = o->api_version};
    char err[512];
    if (rules_create(&ro, &sh->rules, err, sizeof err) < 0) {
        fprintf(stderr, "rules_bench: %s\n", err);
        return -1;
    }
    return 0;
}

/* Starts the workers, releases the rounds and prints each. Returns 0 or -1. */
static int bench_run(struct bench_shared *sh, struct bench_worker *ws, size_t nthreads)
{
    const struct bench_opts *o = sh->opts;
    size_t started = 0;
    for (size_t r = 0; r < BENCH_ROUNDS_PER_MODE; r++) {
        if (o->run_baseline)
            sh->rounds[sh->nrounds++] = BENCH_BASELINE;
        if (o->run_rule)
            sh->rounds[sh->nrounds++] = BENCH_RULE;
    }
    if (pthread_barrier_init(&sh->barrier, NULL, (unsigned)nthreads + 1) != 0) {
        fprintf(stderr, "rules_bench: cannot create a barrier\n");
        return -1;
    }
    for (; started < nthreads; started++) {
        ws[started].index = started;
        ws[started].sh = sh;
        if (pthread_create(&ws[started].tid, NULL, bench_worker_main, &ws[started]) != 0) {
            /* The barrier counts every thread: without them all we cannot go on. */
            fprintf(stderr, "rules_bench: cannot start thread %zu\n", started + 1);
            exit(1);
        }
    }
    pthread_barrier_wait(&sh->barrier); /* warm-up done */
    for (size_t r = 0; r < sh->nrounds && !atomic_load(&sh->failed); r++) {
        pthread_barrier_wait(&sh->barrier); /* start */
        pthread_barrier_wait(&sh->barrier); /* end */
        if (atomic_load(&sh->failed))
            break;
        enum bench_mode m = sh->rounds[r];
        printf("round %zu %-8s %9.0f events/s/thread", r / (o->run_baseline + o->run_rule) + 1,
               bench_mode_names[m], bench_round_rate(ws, nthreads, r));
        if (nthreads > 1) {
            printf("  [");
            for (size_t t = 0; t < nthreads; t++)
                printf("%s%.0f", t ? " " : "", bench_rate(&ws[t], r));
            printf("]");
        }
        printf("\n");
        fflush(stdout);
    }
    for (size_t t = 0; t < started; t++)
        pthread_join(ws[t].tid, NULL);
    pthread_barrier_destroy(&sh->barrier);
    if (atomic_load(&sh->failed)) {
        fprintf(stderr, "rules_bench: %s\n", sh->fail_msg);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct bench_opts o;
    int rc = bench_parse_args(argc, argv, &o);
    if (rc != 0) {
        if (rc < 0)
            bench_usage(stderr);
        return rc < 0 ? 1 : 0;
    }
    struct bench_shared sh = {.opts = &o};
    atomic_init(&sh.failed, false);
    pthread_mutex_init(&sh.fail_lock, NULL);
    char *abs_paths[BENCH_MAX_DATA + 1] = {0};
    size_t nthreads = (size_t)o.threads;
    struct bench_worker *ws = calloc(nthreads, sizeof *ws);
    rc = 1;
    if (!ws) {
        fprintf(stderr, "rules_bench: out of memory\n");
        goto done;
    }
    if (bench_setup(&sh, &o, abs_paths) < 0)
        goto done;

    char version[24] = "";
    if (sh.rules)
        rules_version(sh.rules, version, sizeof version);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("rules_bench: source %s, event %s (%zu bytes), script %s (version %s)\n", o.source,
           o.event_path, sh.raw_len, o.script ? o.script : "-", version[0] ? version : "-");
    printf("rules_bench: %zu thread%s on %ld online CPU%s, %d round%s of %.1f s per mode, "
           "log level %s\n",
           nthreads, nthreads == 1 ? "" : "s", cpus, cpus == 1 ? "" : "s", BENCH_ROUNDS_PER_MODE,
           BENCH_ROUNDS_PER_MODE == 1 ? "" : "s", o.seconds, o.log_level);
    if (cpus > 0 && (long)nthreads > cpus)
        printf("rules_bench: note: more threads than CPUs, per-thread rates are not per-core\n");
    fflush(stdout);

    if (bench_run(&sh, ws, nthreads) < 0)
        goto done;
    bench_summary(&sh, ws, nthreads);
    rc = 0;
done:
    rules_destroy(sh.rules); /* worker states went with their threads */
    json_decref(sh.headers);
    free(sh.event_id);
    free(sh.raw);
    for (size_t i = 0; i <= BENCH_MAX_DATA; i++)
        free(abs_paths[i]);
    for (size_t i = 0; i < o.ndata; i++)
        free((char *)o.data_names[i]);
    free(ws);
    pthread_mutex_destroy(&sh.fail_lock);
    return rc;
}
