/*
 * main: the `hookline` command line. Dispatches to serve, check, rule-test,
 * audit, jobs, events and version, and owns the service's lifetime: load config,
 * open the store, start the HTTP listener, then wait on signals in the main
 * thread (SIGTERM/SIGINT: graceful stop; SIGHUP: rule reload). All other threads
 * block these signals. On a store several instances share (PostgreSQL) a
 * "peers" thread of its own keeps this instance in step with the others: its
 * heartbeat row, a delivery pause or resume and a rule reload requested on any
 * of them.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "http_server.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "rules.h"
#include "audit.h"
#include "delivery.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "store/store.h"

#define MAIN_SHUTDOWN_GRACE_MS 10000
/* The peers thread looks at the shared control rows this often, and beats. */
#define MAIN_PEERS_POLL_MS 500
/* The control key a rule reload on one instance writes for all to follow. */
#define MAIN_RELOAD_KEY "rules.reload"
/* An instance whose heartbeat is older than this is shown as stale. */
#define MAIN_INSTANCE_STALE_S 10.0
/* The peers thread looks for jobs of instances that stopped every this many rounds. */
#define MAIN_RECLAIM_EVERY 4

static void main_usage(FILE *f)
{
    fprintf(
        f,
        "hookline %s: webhooks from CRM and ticketing tools to DIDWW routing changes\n\n"
        "usage: hookline COMMAND [options]\n\n"
        "commands:\n"
        "  serve -c FILE          run the service until SIGTERM/SIGINT (SIGHUP reloads rules)\n"
        "  check -c FILE          validate the config and compile the rules; exit 1 listing every "
        "problem\n"
        "  rule-test -c FILE --source NAME [--header 'K: V']... EVENT.json\n"
        "                         run the rule on one event offline; print the planned requests\n"
        "  rule-test -c FILE --cases CASES.json\n"
        "                         run the rule's test cases; PASS/FAIL each, exit 1 on a failure\n"
        "  rule-test -c FILE --replay [--rule CANDIDATE.lua] [--since 7d] [--source S] [--limit "
        "N]\n"
        "            [--format text|json]\n"
        "                         replay stored events through a rule; compare with stored plans\n"
        "  audit -c FILE [...]    query the audit trail (see hookline audit --help)\n"
        "  audit verify -c FILE   check the audit hash chain\n"
        "  jobs -c FILE list|retry|cancel|pause|resume\n"
        "                         inspect and steer the delivery queue (see hookline jobs --help)\n"
        "  events -c FILE list|reprocess\n"
        "                         list stored events; rerun the rule on rule_failed ones\n"
        "  version                print the version\n\n"
        "hookline COMMAND --help describes one command.\n\n"
        "exit codes: 0 success, 1 the command failed, 2 usage error\n",
        HOOKLINE_VERSION);
}

static double main_dedupe_keys(void *ctx)
{
    struct store_dedupe_stats s;
    (void)store_dedupe_stats(ctx, &s);
    return (double)s.keys;
}

static double main_dedupe_evicted(void *ctx)
{
    struct store_dedupe_stats s;
    (void)store_dedupe_stats(ctx, &s);
    return (double)s.evicted;
}

static double main_store_pending(void *ctx)
{
    return (double)store_pending(ctx);
}

/* Appends one audit record and waits for its commit (used for rare events:
 * reloads). Returns 0 or -1. */
static int main_audit_now(struct store *st, json_t *rec)
{
    struct store_op op = {.kind = STORE_OP_AUDIT, .audit = &rec, .naudit = 1};
    int rc = store_submit_wait(st, &op);
    if (rc < 0)
        log_write(LOG_ERROR, "audit record not stored", (const char *[]){"error", op.error, NULL});
    json_decref(rec);
    return rc;
}

/* This process's instance id (instance.id, or hostname-pid). Set before
 * threads start. */
static char main_instance[CONFIG_INSTANCE_ID_MAX + 16];

static double main_now(void);

/* On a shared store, asks every other instance to reload its rules: the
 * control row MAIN_RELOAD_KEY changes to "<this id>|<time>" and each peers
 * thread follows it. */
static void main_reload_broadcast(struct store *st)
{
    if (!store_shared(st))
        return;
    char value[160];
    snprintf(value, sizeof value, "%s|%.6f", main_instance, main_now());
    struct store_op op = {.kind = STORE_OP_CONTROL,
                          .u.control = {.key = MAIN_RELOAD_KEY, .value = value, .at = main_now()}};
    if (store_submit_wait(st, &op) < 0)
        log_write(LOG_ERROR, "the rule reload could not be passed to the other instances",
                  (const char *[]){"error", op.error, NULL});
}

/* Reloads the rules and audits the outcome. Returns 0 with the version in msg,
 * or -1 with the reason in msg. */
static int main_reload_rules(struct rules *rules, struct store *st, const char *why, char *msg,
                             size_t msg_len)
{
    char err[600], version[24];
    if (!rules) {
        log_info("%s: no rules.script configured; nothing to reload", why);
        snprintf(msg, msg_len, "no rules.script is configured");
        return -1;
    }
    if (rules_reload(rules, err, sizeof err) < 0) {
        snprintf(msg, msg_len, "%s", err);
        log_write(LOG_ERROR, "rules reload failed",
                  (const char *[]){"error", err, "trigger", why, NULL});
        json_t *rec = audit_record_new("rules.reload_failed", NULL, NULL);
        audit_detail_set_str(rec, "reason", err);
        audit_detail_set_str(rec, "trigger", why);
        rules_version(rules, version, sizeof version);
        audit_detail_set_str(rec, "rule_version", version);
        main_audit_now(st, rec);
        return -1;
    }
    rules_version(rules, version, sizeof version);
    metrics_set_instance(NULL, version, -1);
    snprintf(msg, msg_len, "%s", version);
    log_write(LOG_INFO, "rules reloaded",
              (const char *[]){"rule_version", version, "trigger", why, NULL});
    json_t *rec = audit_record_new("rules.reloaded", NULL, NULL);
    audit_detail_set_str(rec, "rule_version", version);
    audit_detail_set_str(rec, "trigger", why);
    main_audit_now(st, rec);
    return 0;
}

struct main_admin_ctx {
    struct rules *rules;
    struct store *st;
    struct delivery *delivery;
};

static int main_admin_resume(void *vctx, char *msg, size_t msg_len)
{
    struct main_admin_ctx *ctx = vctx;
    if (!ctx->delivery) {
        snprintf(msg, msg_len, "delivery is not running (didww.api_key is not set)");
        return -1;
    }
    int rc = delivery_resume(ctx->delivery, "POST /v1/delivery/resume");
    if (rc < 0)
        snprintf(msg, msg_len, "the store could not record the resume");
    return rc;
}

static int main_admin_pause(void *vctx, const char *who, const char *reason, char *msg,
                            size_t msg_len)
{
    struct main_admin_ctx *ctx = vctx;
    if (!ctx->delivery) {
        snprintf(msg, msg_len, "delivery is not running (didww.api_key is not set)");
        return -1;
    }
    int rc = delivery_pause_by(ctx->delivery, who, reason);
    if (rc < 0)
        snprintf(msg, msg_len, "the store could not record the pause");
    return rc;
}

static bool main_admin_paused(void *vctx, char *why, size_t why_len)
{
    struct main_admin_ctx *ctx = vctx;
    return ctx->delivery && delivery_paused(ctx->delivery, why, why_len);
}

static void main_jobs_committed(void *ctx)
{
    delivery_notify(ctx);
}

static double main_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

static double main_queue_depth(void *ctx)
{
    double age;
    int64_t n = store_jobs_depth(ctx, NULL, main_now(), &age);
    return n < 0 ? 0 : (double)n;
}

static double main_queue_age(void *ctx)
{
    double age = 0;
    store_jobs_depth(ctx, "pending", main_now(), &age);
    return age;
}

static int main_admin_reload(void *vctx, char *msg, size_t msg_len)
{
    struct main_admin_ctx *ctx = vctx;
    int rc = main_reload_rules(ctx->rules, ctx->st, "POST /v1/rules/reload", msg, msg_len);
    main_reload_broadcast(ctx->st);
    return rc;
}

struct main_instances_ctx {
    json_t *list;
    double now;
};

static int main_instance_item(const struct store_instance *in, void *vctx)
{
    struct main_instances_ctx *c = vctx;
    double age = in->heartbeat_age_s;
    json_t *o =
        json_pack("{s:s, s:s?, s:b, s:b, s:f, s:b}", "id", in->id, "rule_version", in->rule_version,
                  "leader", in->leader, "paused", in->paused, "heartbeat_age_s",
                  age < 0 ? 0.0 : age, "stale", age > MAIN_INSTANCE_STALE_S);
    if (o)
        json_array_append_new(c->list, o);
    return 0;
}

/* /readyz extras: this instance, its rule version and, on a shared store,
 * every instance's row. */
static json_t *main_admin_status(void *vctx)
{
    struct main_admin_ctx *ctx = vctx;
    char version[40] = "";
    if (ctx->rules)
        rules_version(ctx->rules, version, sizeof version);
    json_t *o = json_pack("{s:s, s:s?, s:b}", "instance", main_instance, "rule_version",
                          ctx->rules ? version : NULL, "leader", store_is_leader(ctx->st));
    if (!o || !store_shared(ctx->st))
        return o;
    struct main_instances_ctx c = {json_array(), main_now()};
    char err[200];
    if (c.list && store_instances_scan(ctx->st, main_instance_item, &c, err, sizeof err) == 0)
        json_object_set_new(o, "instances", c.list);
    else
        json_decref(c.list);
    return o;
}

/* ---------- the peers thread (a store shared by several instances) ---------- */

struct main_peers {
    struct store *st;
    struct rules *rules;
    struct delivery *delivery;
    double started_at;
    char last_reload[160]; /* the MAIN_RELOAD_KEY value followed last */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    pthread_t thread;
    bool have_thread;
};

static void main_peers_beat(struct main_peers *p)
{
    char version[40] = "", err[200];
    if (p->rules)
        rules_version(p->rules, version, sizeof version);
    bool leader = store_is_leader(p->st);
    metrics_set_instance(NULL, p->rules ? version : NULL, leader);
    struct store_instance self = {.id = main_instance,
                                  .started_at = p->started_at,
                                  .rule_version = p->rules ? version : NULL,
                                  .leader = leader,
                                  .paused = p->delivery && delivery_paused(p->delivery, NULL, 0)};
    if (store_instance_beat(p->st, &self, err, sizeof err) < 0)
        log_write(LOG_WARN, "instance heartbeat not recorded",
                  (const char *[]){"error", err, NULL});
}

/* A rule reload requested on another instance: follow it once. */
static void main_peers_reload(struct main_peers *p)
{
    char value[160];
    if (store_control_get(p->st, MAIN_RELOAD_KEY, value, sizeof value) != 1 ||
        strcmp(value, p->last_reload) == 0)
        return;
    snprintf(p->last_reload, sizeof p->last_reload, "%s", value);
    char *bar = strchr(value, '|');
    if (bar)
        *bar = '\0';
    if (strcmp(value, main_instance) == 0 || !p->rules)
        return; /* this instance's own request: it reloaded already */
    char why[200], msg[600];
    snprintf(why, sizeof why, "instance %s", value);
    main_reload_rules(p->rules, p->st, why, msg, sizeof msg);
}

/* Jobs held by an instance that stopped beating (killed) go back to the queue
 * before their lease runs out. */
static void main_peers_reclaim(struct main_peers *p)
{
    struct store_op rel = {.kind = STORE_OP_RELEASE,
                           .u.release = {.at = main_now(),
                                         .instance = main_instance,
                                         .stale_s = DELIVERY_HOLDER_STALE_S}};
    if (store_submit_wait(p->st, &rel) == 0 && rel.u.release.released > 0) {
        char n[32];
        snprintf(n, sizeof n, "%lld", (long long)rel.u.release.released);
        log_write(LOG_WARN, "jobs held by an instance that stopped are queued again",
                  (const char *[]){"count", n, NULL});
    }
}

static void *main_peers_main(void *arg)
{
    struct main_peers *p = arg;
    pthread_setname_np(pthread_self(), "peers");
    bool shared = store_shared(p->st);
    for (unsigned long round = 1;; round++) {
        if (shared)
            main_peers_beat(p);
        if (p->delivery)
            delivery_sync_pause(p->delivery);
        if (shared)
            main_peers_reload(p);
        if (shared && p->delivery && round % MAIN_RECLAIM_EVERY == 0)
            main_peers_reclaim(p);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += MAIN_PEERS_POLL_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&p->lock);
        if (!p->stop)
            pthread_cond_timedwait(&p->wake, &p->lock, &ts);
        bool stop = p->stop;
        pthread_mutex_unlock(&p->lock);
        if (stop)
            break;
    }
    return NULL;
}

/* Starts the peers thread on a shared store; on a store of its own only when
 * delivery runs, to follow a pause recorded by `hookline jobs pause`. */
static void main_peers_start(struct main_peers *p)
{
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (!store_shared(p->st) && !p->delivery)
        return;
    /* A reload requested before this instance started is not followed. */
    if (!store_shared(p->st) ||
        store_control_get(p->st, MAIN_RELOAD_KEY, p->last_reload, sizeof p->last_reload) != 1)
        p->last_reload[0] = '\0';
    p->have_thread = pthread_create(&p->thread, NULL, main_peers_main, p) == 0;
    if (!p->have_thread)
        log_error("cannot start the peers thread: pauses and reloads of other instances are "
                  "not followed");
}

/* Stops the peers thread and removes this instance's row. */
static void main_peers_stop(struct main_peers *p)
{
    if (p->have_thread) {
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_signal(&p->wake);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->thread, NULL);
        p->have_thread = false;
        char err[200];
        if (store_shared(p->st))
            (void)store_instance_forget(p->st, main_instance, err, sizeof err);
    }
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
}

/* instance.id, or hostname-pid. */
static void main_set_instance(const struct config *cfg)
{
    if (cfg && cfg->instance_id) {
        snprintf(main_instance, sizeof main_instance, "%s", cfg->instance_id);
    } else {
        char host[65] = "";
        if (gethostname(host, sizeof host - 1) != 0 || !host[0])
            snprintf(host, sizeof host, "host");
        snprintf(main_instance, sizeof main_instance, "%.60s-%ld", host, (long)getpid());
    }
    log_set_instance(main_instance);
    audit_set_instance(main_instance);
}

static int main_serve(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL;
    int c, rc = 1;
    char err[256];
    struct config *cfg = NULL;
    struct store *st = NULL;
    struct ingest *ing = NULL;
    struct http_server *srv = NULL;
    struct rules *rules = NULL;
    struct delivery *delivery = NULL;
    struct main_peers peers = {0};
    bool peers_started = false;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (c == 'c') {
            path = optarg;
        } else if (c == 'h') {
            printf("usage: hookline serve -c FILE\n");
            return 0;
        } else {
            fprintf(stderr, "usage: hookline serve -c FILE\n");
            return 2;
        }
    }
    if (!path || optind != argc) {
        fprintf(stderr, "usage: hookline serve -c FILE\n");
        return 2;
    }

    /* Every thread created from here on inherits this mask; the main thread
     * takes the signals with sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    main_set_instance(NULL); /* instance.id, once the config is read */
    /* Secrets run.sh generated for this config, when the shell lacks them. */
    struct cli_dev_secrets ds;
    int nds = cli_dev_secrets_load(path, &ds);
    if (nds > 0)
        log_write(LOG_INFO, "secrets taken from the development secrets file",
                  (const char *[]){"names", ds.names, "file", ds.path, NULL});
    else if (nds < 0)
        log_write(LOG_WARN, "development secrets file not used",
                  (const char *[]){"reason", ds.warning, NULL});

    /* Config problems go out as JSON log lines like everything serve says. */
    struct config_diags diags = {0};
    cfg = config_load(path, &diags);
    for (size_t i = 0; i < diags.n; i++) {
        char line[16];
        snprintf(line, sizeof line, "%d", diags.items[i].line);
        log_write(
            diags.items[i].warning ? LOG_WARN : LOG_ERROR,
            diags.items[i].warning ? "config warning" : "config error",
            (const char *[]){"file", path, "line", line, "problem", diags.items[i].msg, NULL});
    }
    config_diags_free(&diags);
    if (!cfg)
        goto out;
    main_set_instance(cfg);
    enum log_level level = LOG_INFO;
    log_parse_level(cfg->log_level, &level);
    log_set_level(level);
    if (metrics_init() < 0) {
        log_error("out of memory");
        goto out;
    }

    if (cfg->store_sqlite_path && cli_prepare_store_dir(cfg->store_sqlite_path) < 0) {
        log_write(LOG_ERROR, "cannot create the store directory",
                  (const char *[]){"path", cfg->store_sqlite_path, NULL});
        goto out;
    }
    char url[4200];
    cli_store_url(cfg, url, sizeof url);
    if (cfg->audit_jsonl_path && cli_prepare_store_dir(cfg->audit_jsonl_path) < 0) {
        log_write(LOG_ERROR, "cannot create the audit mirror directory",
                  (const char *[]){"path", cfg->audit_jsonl_path, NULL});
        goto out;
    }
    struct store_options so = {.url = url,
                               .password = cfg->store_password,
                               .busy_timeout_ms = cfg->store_busy_timeout_ms,
                               .queue_max = cfg->store_queue_max,
                               .batch_max = cfg->store_batch_max,
                               .jsonl_path = cfg->audit_jsonl_path,
                               .retention_days = cfg->audit_retention_days,
                               .dedupe_max_keys = (size_t)cfg->store_dedupe_max_keys,
                               .dedupe_preload = true,
                               .instance_id = main_instance};
    for (size_t i = 0; i < cfg->nsources; i++)
        if (cfg->sources[i].dedupe_window_s > so.dedupe_window_s)
            so.dedupe_window_s = cfg->sources[i].dedupe_window_s;
    if (store_open(&so, &st, err, sizeof err) < 0) {
        log_write(LOG_ERROR, "cannot open the store", (const char *[]){"error", err, NULL});
        goto out;
    }
    metrics_set_gauge("hookline_store_write_queue", "Operations waiting for the next group commit.",
                      main_store_pending, st);
    struct store_dedupe_stats dds;
    if (store_dedupe_stats(st, &dds) == 0) { /* a backend with an in-memory dedupe set */
        metrics_set_gauge(
            "hookline_dedupe_keys",
            "Event keys held in memory for deduplication (store.dedupe_max_keys bounds it).",
            main_dedupe_keys, st);
        metrics_set_counter_fn("hookline_dedupe_evicted_total",
                               "Event keys dropped before their dedupe window ended because the "
                               "set was full.",
                               main_dedupe_evicted, st);
    }

    char rerr[600];
    if (cli_rules_create(cfg, &rules, rerr, sizeof rerr) < 0) {
        log_write(LOG_ERROR, "cannot load the rules", (const char *[]){"error", rerr, NULL});
        goto out;
    }
    ing = ingest_create(cfg, st);
    if (!ing) {
        log_error("out of memory");
        goto out;
    }
    ingest_use_rules(ing, rules);
    metrics_set_gauge("hookline_queue_depth", "Jobs waiting for delivery or being delivered.",
                      main_queue_depth, st);
    metrics_set_gauge("hookline_queue_oldest_age_seconds",
                      "Age of the oldest job waiting for delivery.", main_queue_age, st);
    peers = (struct main_peers){.st = st, .rules = rules};
    if (store_shared(st)) {
        /* The row first: other instances must see this one alive before it
         * holds any job (they take back jobs whose holder has no heartbeat). */
        peers.started_at = main_now();
        main_peers_beat(&peers);
    }
    if (cfg->didww_api_key) {
        struct delivery_options dopts = {.base_url = cfg->didww_base_url,
                                         .api_key = cfg->didww_api_key,
                                         .api_version = cfg->didww_api_version,
                                         .auth_url = cfg->didww_auth_url,
                                         .token_expires_in_s = cfg->didww_token_expires_in,
                                         .timeout_ms = cfg->didww_timeout_ms,
                                         .rate_limit_per_s = cfg->didww_rate_limit_per_s,
                                         .workers = cfg->delivery_workers,
                                         .max_attempts = cfg->delivery_max_attempts,
                                         .backoff_initial_ms = cfg->delivery_backoff_initial_ms,
                                         .backoff_max_ms = cfg->delivery_backoff_max_ms,
                                         .skip_noop = cfg->delivery_skip_noop,
                                         .idle_poll_ms = cfg->delivery_idle_poll_ms,
                                         .instance_id = main_instance,
                                         .max_in_flight = cfg->delivery_max_in_flight,
                                         .batch_size = cfg->delivery_batch_size,
                                         .batch_page_size = cfg->delivery_batch_page_size,
                                         .prefetch_max_age_ms = cfg->delivery_prefetch_max_age_ms};
        if (delivery_start(&dopts, st, &delivery, err, sizeof err) < 0) {
            log_write(LOG_ERROR, "cannot start delivery", (const char *[]){"error", err, NULL});
            goto out;
        }
        store_set_job_listener(st, main_jobs_committed, delivery);
    } else {
        log_warn("didww.api_key is not set: planned jobs wait in the queue, nothing is sent");
    }
    char rv[40] = "";
    if (rules)
        rules_version(rules, rv, sizeof rv);
    metrics_set_instance(main_instance, rv, store_shared(st) ? 0 : -1);
    peers.delivery = delivery;
    main_peers_start(&peers);
    peers_started = true;
    struct main_admin_ctx admin_ctx = {rules, st, delivery};
    struct http_admin admin = {rules ? main_admin_reload : NULL,
                               main_admin_resume,
                               main_admin_paused,
                               &admin_ctx,
                               rules,
                               main_admin_status,
                               main_admin_pause};
    srv = http_server_start(cfg, ing, st, &admin, err, sizeof err);
    if (!srv) {
        log_write(LOG_ERROR, "cannot start the listener", (const char *[]){"error", err, NULL});
        goto out;
    }
    char port[16], nsrc[16];
    snprintf(port, sizeof port, "%u", http_server_port(srv));
    snprintf(nsrc, sizeof nsrc, "%zu", cfg->nsources);
    log_write(LOG_INFO, "listening",
              (const char *[]){"host", cfg->listen_host, "port", port, "sources", nsrc, "version",
                               HOOKLINE_VERSION, NULL});

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            char msg[600];
            main_reload_rules(rules, st, "SIGHUP", msg, sizeof msg);
            main_reload_broadcast(st);
            continue;
        }
        log_write(LOG_INFO, "shutting down",
                  (const char *[]){"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", NULL});
        break;
    }
    rc = 0;
out:
    http_server_stop(srv, MAIN_SHUTDOWN_GRACE_MS); /* joins the HTTP threads and their Lua states */
    if (peers_started)
        main_peers_stop(&peers);
    if (st)
        store_set_job_listener(st, NULL, NULL);
    delivery_stop(delivery); /* workers finish their current request */
    ingest_destroy(ing);
    rules_destroy(rules);
    store_close(st);
    if (rc == 0)
        log_info("stopped");
    metrics_shutdown();
    config_free(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (argc < 2) {
        main_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        main_usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("hookline %s (sqlite schema %d, postgresql schema %d)\n", HOOKLINE_VERSION,
               store_build_schema_version(STORE_SCHEME_SQLITE),
               store_build_schema_version(STORE_SCHEME_POSTGRESQL));
        return 0;
    }
    if (strcmp(cmd, "serve") == 0)
        return main_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0)
        return cli_check(argc - 1, argv + 1);
    if (strcmp(cmd, "audit") == 0)
        return cli_audit(argc - 1, argv + 1);
    if (strcmp(cmd, "rule-test") == 0)
        return cli_rule_test(argc - 1, argv + 1);
    if (strcmp(cmd, "events") == 0)
        return cli_events(argc - 1, argv + 1);
    if (strcmp(cmd, "jobs") == 0)
        return cli_jobs(argc - 1, argv + 1);
    fprintf(stderr, "hookline: unknown command '%s' (see hookline --help)\n", cmd);
    return 2;
}
