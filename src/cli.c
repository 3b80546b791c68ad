/*
 * cli: implements `hookline check`, `hookline audit` (filters, json/table/csv
 * output, --follow), `hookline audit verify` (walks the hash chain and names
 * the first broken record) and `hookline rule-test` (one event; --cases through
 * rule_cases; --replay through replay). Reads the store through its read-only interface,
 * so it is safe to run beside a live `serve`. Main thread only.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "audit.h"
#include "config.h"
#include "delivery.h"
#include "ingest.h"
#include "log.h"
#include "number.h"
#include "replay.h"
#include "rule_cases.h"
#include "rules.h"
#include "store/store.h"

/* ---------- development secrets (scripts/run.sh's var/dev-secrets.env) ---------- */

#define CLI_DEV_SECRETS_MAX_BYTES (64u << 10)
#define CLI_DEV_SECRETS_MAX_NAMES 64

/* Adds NAME of every "env:NAME" string under v to names (up to max); depth bounded. */
static void cli_env_refs(const json_t *v, int depth, char names[][128], size_t *n, size_t max)
{
    if (depth > 32)
        return;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strncmp(s, "env:", 4) == 0 && s[4] && strlen(s + 4) < 128 && *n < max)
            snprintf(names[(*n)++], 128, "%s", s + 4);
        return;
    }
    size_t i;
    const char *k;
    json_t *e;
    if (json_is_array(v))
        json_array_foreach(v, i, e) cli_env_refs(e, depth + 1, names, n, max);
    else if (json_is_object(v))
        json_object_foreach((json_t *)v, k, e) cli_env_refs(e, depth + 1, names, n, max);
}

static bool cli_env_name_ok(const char *s, size_t len)
{
    if (len == 0 || isdigit((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return false;
    return true;
}

int cli_dev_secrets_load(const char *config_path, struct cli_dev_secrets *out)
{
    memset(out, 0, sizeof *out);
    char dir[PATH_MAX], *real = NULL, *buf = NULL;
    char names[CLI_DEV_SECRETS_MAX_NAMES][128];
    size_t nnames = 0, len = 0;
    json_t *doc = NULL;
    int fd = -1, rc = 0;

    /* run.sh serves $repo/conf/hookline.json and writes $repo/var/dev-secrets.env:
     * the file sits in var/ beside the config file's directory. */
    snprintf(dir, sizeof dir, "%s", config_path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    real = realpath(dir, NULL);
    if (!real)
        return 0; /* the config load reports the missing file */
    char *up = strrchr(real, '/');
    if (up && up != real)
        *up = '\0';
    else if (up)
        up[1] = '\0';
    snprintf(out->path, sizeof out->path, "%s%svar/dev-secrets.env", real,
             real[strlen(real) - 1] == '/' ? "" : "/");
    free(real);

    fd = open(out->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        snprintf(out->warning, sizeof out->warning, "%s ignored: %s", out->path,
                 errno == ELOOP ? "it is a symbolic link" : strerror(errno));
        return -1;
    }
    /* Only a file this user owns and nobody else may read: anyone able to write it
     * could otherwise choose the secrets the service verifies webhooks with. */
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(out->warning, sizeof out->warning, "%s ignored: not a regular file", out->path);
        rc = -1;
        goto out;
    }
    if (st.st_uid != geteuid()) {
        snprintf(out->warning, sizeof out->warning,
                 "%s ignored: owned by uid %lu, not by this user (uid %lu)", out->path,
                 (unsigned long)st.st_uid, (unsigned long)geteuid());
        rc = -1;
        goto out;
    }
    if (st.st_mode & 077) {
        snprintf(out->warning, sizeof out->warning,
                 "%s ignored: group or others may read or write it (mode %04o): chmod 600 it",
                 out->path, (unsigned)(st.st_mode & 07777));
        rc = -1;
        goto out;
    }
    if (st.st_size > (off_t)CLI_DEV_SECRETS_MAX_BYTES) {
        snprintf(out->warning, sizeof out->warning, "%s ignored: larger than %u bytes", out->path,
                 CLI_DEV_SECRETS_MAX_BYTES);
        rc = -1;
        goto out;
    }

    /* Only names the config asks for as "env:NAME": the file never sets anything
     * else (a proxy, HOOKLINE_DIDWW_BASE_URL) in this process. */
    doc = json_load_file(config_path, 0, NULL);
    cli_env_refs(doc, 0, names, &nnames, CLI_DEV_SECRETS_MAX_NAMES);
    if (nnames == 0)
        goto out;
    buf = malloc(CLI_DEV_SECRETS_MAX_BYTES + 1);
    if (!buf)
        goto out;
    for (;;) {
        ssize_t r = read(fd, buf + len, CLI_DEV_SECRETS_MAX_BYTES - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == CLI_DEV_SECRETS_MAX_BYTES)
            break;
    }
    buf[len] = '\0';
    /* Lines NAME=VALUE, as run.sh writes and reads them: the value is the rest of
     * the line after the first '=', taken as is (no quotes, no expansion). */
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        size_t ll = strlen(line);
        if (ll > 0 && line[ll - 1] == '\r')
            line[--ll] = '\0';
        char *eq = strchr(line, '=');
        if (eq && cli_env_name_ok(line, (size_t)(eq - line)) && eq[1]) {
            *eq = '\0';
            const char *have = getenv(line);
            for (size_t i = 0; i < nnames; i++) {
                if (strcmp(names[i], line) != 0 || (have && *have))
                    continue;
                if (setenv(line, eq + 1, 1) == 0) {
                    size_t used = strlen(out->names);
                    snprintf(out->names + used, sizeof out->names - used, "%s%s", used ? ", " : "",
                             line);
                    out->count++;
                }
                break;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    rc = out->count;
out:
    if (buf) {
        OPENSSL_cleanse(buf, CLI_DEV_SECRETS_MAX_BYTES + 1);
        free(buf);
    }
    json_decref(doc);
    close(fd);
    return rc;
}

/* Before a config load that resolves secrets: takes the missing ones from
 * run.sh's file and says so on stderr (names only, never values). */
static void cli_use_dev_secrets(const char *config_path)
{
    struct cli_dev_secrets ds;
    int n = cli_dev_secrets_load(config_path, &ds);
    if (n > 0)
        fprintf(stderr, "note: %s taken from %s (not set in the environment)\n", ds.names, ds.path);
    else if (n < 0)
        fprintf(stderr, "warning: %s\n", ds.warning);
}

static struct config *cli_load_config_flags(const char *path, unsigned flags, int *warnings)
{
    if (!(flags & CONFIG_LOAD_NO_SECRETS))
        cli_use_dev_secrets(path);
    struct config_diags diags = {0};
    struct config *cfg = config_load_opts(path, flags, &diags);
    if (!warnings) { /* callers that do not report warnings print errors only */
        size_t keep = 0;
        for (size_t i = 0; i < diags.n; i++)
            if (!diags.items[i].warning)
                diags.items[keep++] = diags.items[i];
        diags.n = keep;
    }
    size_t errors = config_diags_print(&diags, path);
    if (warnings)
        *warnings = (int)(diags.n - errors);
    config_diags_free(&diags);
    return cfg;
}

struct config *cli_load_config(const char *path, int *warnings)
{
    return cli_load_config_flags(path, 0, warnings);
}

void cli_store_url(const struct config *cfg, char *out, size_t len)
{
    if (cfg->store_sqlite_path)
        (void)store_url_make(STORE_SCHEME_SQLITE, cfg->store_sqlite_path, out, len);
    else
        snprintf(out, len, "%s", cfg->store_url ? cfg->store_url : "");
}

/* Opens the store the config names (read_only for readers). Returns 0, or -1
 * after printing the reason prefixed with who. */
static int cli_open_store(const struct config *cfg, bool read_only, const char *who,
                          struct store **st)
{
    char url[4200], err[300];
    cli_store_url(cfg, url, sizeof url);
    struct store_options so = {.url = url,
                               .password = cfg->store_password,
                               .busy_timeout_ms = cfg->store_busy_timeout_ms,
                               .queue_max = 64,
                               .batch_max = 16,
                               .read_only = read_only};
    if (store_open(&so, st, err, sizeof err) < 0) {
        fprintf(stderr, "%s: %s\n", who, err);
        return -1;
    }
    return 0;
}

int cli_prepare_store_dir(const char *sqlite_path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", sqlite_path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    /* mkdir -p */
    for (char *p = dir + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(dir, 0750) < 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(dir, 0750) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

int cli_rules_create(const struct config *cfg, struct rules **out, char *err, size_t err_len)
{
    *out = NULL;
    if (!cfg->rules_script)
        return 0;
    const char *names[64], *paths[64];
    size_t n = cfg->nrules_data < 64 ? cfg->nrules_data : 64;
    for (size_t i = 0; i < n; i++) {
        names[i] = cfg->rules_data[i].name;
        paths[i] = cfg->rules_data[i].path;
    }
    /* Messages name the script relative to the config file when it is below it. */
    const char *display = cfg->rules_script;
    size_t dl = strlen(cfg->dir);
    if (strncmp(display, cfg->dir, dl) == 0 && display[dl] == '/')
        display += dl + 1;
    struct rules_options o = {
        .script_path = cfg->rules_script,
        .display_name = display,
        .data_names = names,
        .data_paths = paths,
        .ndata = n,
        .instruction_limit = cfg->rules_instruction_limit,
        .memory_limit_bytes = cfg->rules_memory_limit_bytes,
        .api_version = cfg->didww_api_version,
    };
    if (rules_create(&o, out, err, err_len) < 0)
        return -1;
    /* A reload (SIGHUP, /v1/rules/reload) refuses a rule whose rules.cases fail. */
    if (cfg->rules_cases)
        rules_set_reload_gate(*out, rule_cases_gate, (void *)cfg);
    return 0;
}

static void cli_check_usage(FILE *f)
{
    fprintf(f, "usage: hookline check -c FILE\n"
               "Validates the configuration and compiles the rules. Prints every problem as\n"
               "file:line: message; exits 0 when there is none, 1 otherwise.\n");
}

int cli_check(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (c == 'c') {
            path = optarg;
        } else if (c == 'h') {
            cli_check_usage(stdout);
            return 0;
        } else {
            cli_check_usage(stderr);
            return 2;
        }
    }
    if (!path || optind != argc) {
        cli_check_usage(stderr);
        return 2;
    }
    int warnings = 0;
    struct config *cfg = cli_load_config(path, &warnings);
    if (!cfg)
        return 1;
    struct rules *rules = NULL;
    char err[600];
    if (cli_rules_create(cfg, &rules, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        config_free(cfg);
        return 1;
    }
    if (rules && cfg->rules_cases) {
        struct rule_cases_report rep;
        if (rule_cases_run(cfg, rules, cfg->rules_cases, NULL, &rep, err, sizeof err) < 0) {
            fprintf(stderr, "%s\n", err);
            rules_destroy(rules);
            config_free(cfg);
            return 1;
        }
        if (rep.failed > 0) {
            fprintf(stderr,
                    "%s: %d of %d cases fail: %s (hookline rule-test -c %s --cases %s shows "
                    "why)\n",
                    cfg->rules_cases, rep.failed, rep.failed + rep.passed, rep.failing, path,
                    cfg->rules_cases);
            rules_destroy(rules);
            config_free(cfg);
            return 1;
        }
    }
    char version[24] = "none";
    if (rules)
        rules_version(rules, version, sizeof version);
    /* A store on a server: connect, and say which schema it holds. */
    char url[4200];
    int schema = 0, build = 0;
    cli_store_url(cfg, url, sizeof url);
    struct store_options so = {.url = url, .password = cfg->store_password, .read_only = true};
    int info = store_schema_info(&so, &schema, &build, err, sizeof err);
    if (info < 0) {
        fprintf(stderr, "%s: store: %s\n", path, err);
        rules_destroy(rules);
        config_free(cfg);
        return 1;
    }
    printf("%s: ok (%zu sources, rules %s%s)\n", path, cfg->nsources, version,
           warnings ? ", with warnings" : "");
    if (info > 0)
        printf("store: connected, schema version %d (this build: %d%s)\n", schema, build,
               schema == 0 ? "; `hookline serve` creates it" : "");
    rules_destroy(rules);
    config_free(cfg);
    return 0;
}

/* ---------- audit ---------- */

enum cli_format { CLI_JSON, CLI_TABLE, CLI_CSV };

struct cli_audit_ctx {
    enum cli_format format;
    int64_t last_seq;
};

static void cli_audit_usage(FILE *f)
{
    fprintf(f, "usage: hookline audit -c FILE [filters] [--format table|json|csv] [--follow]\n"
               "       hookline audit verify -c FILE\n"
               "filters: --since T --until T (15m, 2h, 7d or RFC 3339), --source S, --event ID,\n"
               "         --did UUID, --number DIGITS, --kind K (admin.* for a prefix), --job ID,\n"
               "         --limit N (the newest N matches, printed oldest first)\n"
               "formats: table (default; a header, then one row per record with full ids: paste\n"
               "         any of them back into --event, --did, --number or --job; a long value\n"
               "         widens its row), json (JSON Lines: one complete record, a JSON object,\n"
               "         per line), csv (RFC 4180 with a header row)\n"
               "verify checks the hash chain and exits 1 naming the first broken record.\n");
}

static int cli_parse_time(const char *s, double *out)
{
    int64_t secs;
    if (config_parse_duration(s, &secs) == 0) {
        *out = (double)(time(NULL) - secs);
        return 0;
    }
    if (verify_parse_timestamp(s, &secs) == 0 && strchr(s, '-')) {
        *out = (double)secs;
        return 0;
    }
    return -1;
}

static void cli_csv_field(const char *s)
{
    if (!s)
        return;
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

/* A short outcome for the table: status, reason or action. */
static void cli_outcome(json_t *r, char *out, size_t len)
{
    json_t *d = json_object_get(r, "detail");
    json_t *http = json_object_get(r, "http");
    const char *reason = json_string_value(json_object_get(d, "reason"));
    json_t *st = json_object_get(d, "status");
    if (json_is_object(http))
        snprintf(out, len, "%s %lld", json_string_value(json_object_get(http, "method")) ?: "",
                 (long long)json_integer_value(json_object_get(http, "status")));
    else if (reason && json_is_integer(st))
        snprintf(out, len, "%lld %s", (long long)json_integer_value(st), reason);
    else if (reason)
        snprintf(out, len, "%s", reason);
    else if (json_is_integer(json_object_get(d, "jobs")))
        snprintf(out, len, "jobs=%lld", (long long)json_integer_value(json_object_get(d, "jobs")));
    else if (json_string_value(json_object_get(d, "action")))
        snprintf(out, len, "%s", json_string_value(json_object_get(d, "action")));
    else if (json_string_value(json_object_get(d, "rule_version"))) /* rules.reloaded */
        snprintf(out, len, "rule_version %s (%s)",
                 json_string_value(json_object_get(d, "rule_version")),
                 json_string_value(json_object_get(d, "trigger")) ?: "");
    else if (json_string_value(json_object_get(d, "by"))) /* admin.*, delivery.resumed */
        snprintf(out, len, "by %s", json_string_value(json_object_get(d, "by")));
    else
        out[0] = '\0';
}

/* The audit table: minimum widths (a longer value widens its row, never cut). */
#define CLI_AUDIT_ROW "%-24s %-19s %-10s %-6s %-13s %-36s %-20s %s\n"

static int cli_print_record(const char *text, int64_t seq, void *vctx)
{
    struct cli_audit_ctx *ctx = vctx;
    ctx->last_seq = seq;
    if (ctx->format == CLI_JSON) {
        puts(text);
        return 0;
    }
    json_t *r = json_loads(text, 0, NULL);
    if (!r)
        return 0;
    const char *time_s = json_string_value(json_object_get(r, "time"));
    const char *kind = json_string_value(json_object_get(r, "kind"));
    const char *source = json_string_value(json_object_get(r, "source"));
    const char *event = json_string_value(json_object_get(r, "event_id"));
    const char *did = json_string_value(json_object_get(r, "did"));
    const char *number = json_string_value(json_object_get(r, "number"));
    char outcome[1024];
    cli_outcome(r, outcome, sizeof outcome);
    if (ctx->format == CLI_TABLE) {
        /* Nothing is cut: an id pasted from here must find its records. A value
         * longer than its column's width widens that row; the event id goes last
         * because sender ids (a body's SHA-256: 64 hex) are the longest. */
        char job[24] = "-";
        json_t *jid = json_object_get(r, "job_id");
        if (json_is_integer(jid))
            snprintf(job, sizeof job, "%lld", (long long)json_integer_value(jid));
        printf(CLI_AUDIT_ROW, time_s ? time_s : "", kind ? kind : "", source ? source : "-", job,
               number ? number : "-", did ? did : "-", outcome[0] ? outcome : "-",
               event ? event : "-");
    } else {
        char seqs[32];
        snprintf(seqs, sizeof seqs, "%lld", (long long)seq);
        const char *cols[] = {seqs, time_s, kind, source, event, did, number, outcome};
        for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
            if (i)
                putchar(',');
            cli_csv_field(cols[i]);
        }
        fputs("\r\n", stdout);
    }
    json_decref(r);
    return 0;
}

static volatile sig_atomic_t cli_stop;
static void cli_on_signal(int sig)
{
    (void)sig;
    cli_stop = 1;
}

int cli_audit(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"format", required_argument, NULL, 'f'},
        {"since", required_argument, NULL, 's'},  {"until", required_argument, NULL, 'u'},
        {"source", required_argument, NULL, 'S'}, {"event", required_argument, NULL, 'e'},
        {"did", required_argument, NULL, 'd'},    {"number", required_argument, NULL, 'n'},
        {"kind", required_argument, NULL, 'k'},   {"job", required_argument, NULL, 'j'},
        {"limit", required_argument, NULL, 'l'},  {"follow", no_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *path = NULL;
    struct store_audit_filter f = {0};
    struct cli_audit_ctx ctx = {.format = CLI_TABLE};
    char number[NUMBER_BUF_LEN];
    bool follow = false, verify = false;
    int c;
    char *end;

    if (argc > 1 && strcmp(argv[1], "verify") == 0) {
        verify = true;
        argv++;
        argc--;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'f':
            if (strcmp(optarg, "json") == 0)
                ctx.format = CLI_JSON;
            else if (strcmp(optarg, "table") == 0)
                ctx.format = CLI_TABLE;
            else if (strcmp(optarg, "csv") == 0)
                ctx.format = CLI_CSV;
            else {
                fprintf(stderr, "hookline audit: --format must be table, json or csv\n");
                return 2;
            }
            break;
        case 's':
        case 'u':
            if (cli_parse_time(optarg, c == 's' ? &f.since : &f.until) < 0) {
                fprintf(stderr, "hookline audit: --%s takes 15m, 2h, 7d or an RFC 3339 time\n",
                        c == 's' ? "since" : "until");
                return 2;
            }
            break;
        case 'S':
            f.source = optarg;
            break;
        case 'e':
            f.event_id = optarg;
            break;
        case 'd':
            f.did = optarg;
            break;
        case 'n': {
            char why[256];
            if (number_normalize(optarg, number, sizeof number, why, sizeof why) != NUMBER_OK) {
                fprintf(stderr, "hookline audit: --number %s\n", why);
                return 2;
            }
            f.number = number;
            break;
        }
        case 'k':
            f.kind = optarg;
            break;
        case 'j':
        case 'l':
            errno = 0;
            long long v = strtoll(optarg, &end, 10);
            if (errno || *end || v <= 0) {
                fprintf(stderr, "hookline audit: --%s takes a positive integer\n",
                        c == 'j' ? "job" : "limit");
                return 2;
            }
            if (c == 'j')
                f.job_id = v;
            else
                f.limit = v;
            break;
        case 'F':
            follow = true;
            break;
        case 'h':
            cli_audit_usage(stdout);
            return 0;
        default:
            cli_audit_usage(stderr);
            return 2;
        }
    }
    if (!path || optind != argc) {
        cli_audit_usage(stderr);
        return 2;
    }
    /* Reading the trail needs no webhook secret: an auditor's shell need not have them. */
    struct config *cfg = cli_load_config_flags(path, CONFIG_LOAD_NO_SECRETS, NULL);
    if (!cfg)
        return 1;
    struct store *st = NULL;
    char err[256];
    int rc = 1;
    if (cli_open_store(cfg, true, "hookline audit", &st) < 0)
        goto out;
    if (verify) {
        struct store_audit_verdict v;
        if (store_audit_verify(st, &v, err, sizeof err) < 0) {
            fprintf(stderr, "hookline audit verify: %s\n", err);
            goto out;
        }
        if (v.result == STORE_VERIFY_BROKEN) {
            fprintf(stderr, "hookline audit verify: chain broken at seq %lld: %s\n",
                    (long long)v.broken_seq, v.why);
            goto out;
        }
        if (v.result == STORE_VERIFY_TAIL_MISSING) {
            fprintf(stderr,
                    "hookline audit verify: records after the retention checkpoint (seq %lld) "
                    "are missing\n",
                    (long long)v.missing_from);
            goto out;
        }
        if (v.pruned)
            printf("audit chain intact: %lld records (seq %lld and earlier pruned by retention)\n",
                   (long long)v.records, (long long)v.pruned_through);
        else
            printf("audit chain intact: %lld records\n", (long long)v.records);
        rc = 0;
        goto out;
    }
    if (ctx.format == CLI_TABLE)
        printf(CLI_AUDIT_ROW, "TIME", "KIND", "SOURCE", "JOB", "NUMBER", "DID", "OUTCOME", "EVENT");
    else if (ctx.format == CLI_CSV)
        fputs("seq,time,kind,source,event_id,did,number,outcome\r\n", stdout);
    if (store_audit_scan(st, &f, cli_print_record, &ctx, err, sizeof err) < 0) {
        fprintf(stderr, "hookline audit: %s\n", err);
        goto out;
    }
    fflush(stdout);
    if (follow) {
        signal(SIGINT, cli_on_signal);
        signal(SIGTERM, cli_on_signal);
        f.limit = 0;
        while (!cli_stop) {
            struct timespec ts = {0, 200 * 1000 * 1000};
            nanosleep(&ts, NULL);
            f.after_seq = ctx.last_seq;
            if (store_audit_scan(st, &f, cli_print_record, &ctx, err, sizeof err) < 0) {
                fprintf(stderr, "hookline audit: %s\n", err);
                goto out;
            }
            fflush(stdout);
        }
    }
    rc = 0;
out:
    store_close(st);
    config_free(cfg);
    return rc;
}

/* ---------- rule-test ---------- */

#define CLI_MAX_HEADERS 64
#define CLI_MAX_EVENT_BYTES (16u << 20)

struct cli_headers {
    char *names[CLI_MAX_HEADERS];
    char *values[CLI_MAX_HEADERS];
    size_t n;
};

static const char *cli_header_lookup(void *ctx, const char *name)
{
    struct cli_headers *h = ctx;
    for (size_t i = 0; i < h->n; i++)
        if (strcasecmp(h->names[i], name) == 0)
            return h->values[i];
    return NULL;
}

static const char *cli_no_query(void *ctx, const char *name)
{
    (void)ctx;
    (void)name;
    return NULL;
}

static void cli_rule_test_usage(FILE *f)
{
    fprintf(f,
            "usage: hookline rule-test -c FILE --source NAME [--header 'K: V']... EVENT.json\n"
            "       hookline rule-test -c FILE --cases CASES.json\n"
            "       hookline rule-test -c FILE --replay [--rule CANDIDATE.lua] [--since 7d]\n"
            "                          [--source S] [--limit N] [--format text|json]\n"
            "Runs the rule on one event offline and prints the planned DIDWW requests as a JSON\n"
            "array. Touches no store and no network. Rule errors exit 1 with file:line: message.\n"
            "The body is decoded as a form when --header 'Content-Type: "
            "application/x-www-form-urlencoded' is given, else as JSON.\n"
            "--cases runs the test cases of a file (a JSON array of {name, source, headers,\n"
            "body or raw, expect or expect_error}): PASS/FAIL per case, a diff of the plans,\n"
            "\"N passed, N failed\" last; exits 1 when any fails.\n"
            "--replay runs a candidate rule (default: the configured one) over stored events,\n"
            "oldest first, and compares its plans with the ones stored when they arrived\n"
            "(--since 15m/2h/7d or RFC 3339, --limit: the first N events). Read-only: sends\n"
            "nothing, writes nothing; safe beside a running serve.\n");
}

/* rule-test --cases: 0 all passed, 1 a case failed or the file is malformed. */
static int cli_rule_cases(const char *path, const char *cases)
{
    struct config *cfg = cli_load_config_flags(path, CONFIG_LOAD_NO_SECRETS, NULL);
    struct rules *rules = NULL;
    char err[600];
    int rc = 1;
    if (!cfg)
        return 1;
    if (!cfg->rules_script) {
        fprintf(stderr, "hookline rule-test: %s has no rules.script\n", path);
        goto out;
    }
    if (cli_rules_create(cfg, &rules, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    struct rule_cases_report rep;
    if (rule_cases_run(cfg, rules, cases, stdout, &rep, err, sizeof err) < 0) {
        fprintf(stderr, "hookline rule-test: %s\n", err);
        goto out;
    }
    rc = rep.failed > 0 ? 1 : 0;
out:
    rules_destroy(rules);
    config_free(cfg);
    return rc;
}

struct cli_replay_args {
    const char *rule;
    const char *since;
    const char *source;
    int64_t limit;
    bool json;
};

/* The wall clock, Unix seconds with a fraction (events' received_at). */
static double cli_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* rule-test --replay: 0 when the replay ran (whatever it found), 1 when it could not. */
static int cli_replay(const char *path, const struct cli_replay_args *a)
{
    struct config *cfg = cli_load_config_flags(path, CONFIG_LOAD_NO_SECRETS, NULL);
    struct rules *in_force = NULL, *candidate = NULL;
    struct store *st = NULL;
    char err[600], version[24] = "";
    int rc = 1;
    struct replay_options o = {.source = a->source,
                               .limit = a->limit,
                               .json = a->json,
                               .out = stdout,
                               .until = cli_wall_now(),
                               .progress = isatty(STDERR_FILENO) == 1};
    if (!cfg)
        return 1;
    /* The rule's own log lines, once per replayed event, would drown the report. */
    log_set_level(LOG_ERROR);
    if (a->since && cli_parse_time(a->since, &o.since) < 0) {
        fprintf(stderr, "hookline rule-test: --since takes 15m, 2h, 7d or RFC 3339 (got %s)\n",
                a->since);
        rc = 2;
        goto out;
    }
    if (a->source && !config_find_source(cfg, a->source)) {
        fprintf(stderr, "hookline rule-test: no source named %s in %s\n", a->source, path);
        goto out;
    }
    if (cfg->rules_script) {
        if (cli_rules_create(cfg, &in_force, err, sizeof err) < 0) {
            if (!a->rule) { /* the rule in force is the candidate: nothing to replay */
                fprintf(stderr, "%s\n", err);
                goto out;
            }
            fprintf(stderr, "note: the configured rule does not compile: %s\n", err);
        } else {
            rules_version(in_force, version, sizeof version);
        }
    }
    if (a->rule) {
        const char *names[64], *paths[64];
        size_t n = cfg->nrules_data < 64 ? cfg->nrules_data : 64;
        for (size_t i = 0; i < n; i++) {
            names[i] = cfg->rules_data[i].name;
            paths[i] = cfg->rules_data[i].path;
        }
        char abs[4096];
        if (!realpath(a->rule, abs)) {
            fprintf(stderr, "hookline rule-test: %s: %s\n", a->rule, strerror(errno));
            goto out;
        }
        struct rules_options ro = {.script_path = abs,
                                   .display_name = a->rule,
                                   .data_names = names,
                                   .data_paths = paths,
                                   .ndata = n,
                                   .instruction_limit = cfg->rules_instruction_limit,
                                   .memory_limit_bytes = cfg->rules_memory_limit_bytes,
                                   .api_version = cfg->didww_api_version};
        if (rules_create(&ro, &candidate, err, sizeof err) < 0) {
            fprintf(stderr, "%s\n", err);
            goto out;
        }
    } else if (!in_force) {
        fprintf(stderr, "hookline rule-test: %s has no rules.script; give --rule CANDIDATE.lua\n",
                path);
        goto out;
    }
    if (cli_open_store(cfg, true, "hookline rule-test", &st) < 0)
        goto out;
    o.in_force_version = version;
    o.data_configured = cfg->nrules_data > 0;
    struct rules *r = candidate ? candidate : in_force;
    char cversion[24];
    rules_version(r, cversion, sizeof cversion);
    if (!o.json)
        printf("replay: %s (version %s) against the plans stored with each event%s%s\n",
               a->rule ? a->rule : "the rule in force", cversion, a->source ? ", source " : "",
               a->source ? a->source : "");
    struct replay_summary sum;
    if (replay_run(st, r, &o, &sum, err, sizeof err) < 0) {
        fprintf(stderr, "hookline rule-test: %s\n", err);
        goto out;
    }
    rc = 0;
out:
    store_close(st);
    rules_destroy(candidate);
    rules_destroy(in_force);
    config_free(cfg);
    return rc;
}

int cli_rule_test(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"source", required_argument, NULL, 's'},
                                         {"header", required_argument, NULL, 'H'},
                                         {"cases", required_argument, NULL, 'C'},
                                         {"replay", no_argument, NULL, 'R'},
                                         {"rule", required_argument, NULL, 'r'},
                                         {"since", required_argument, NULL, 'S'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL, *source = NULL, *cases = NULL;
    bool replay = false, replay_only = false;
    struct cli_replay_args ra = {0};
    char *end;
    struct cli_headers hdrs = {0};
    struct config *cfg = NULL;
    struct rules *rules = NULL;
    unsigned char *raw = NULL;
    struct jdoc *body = NULL;
    json_t *headers = json_object(), *out = NULL;
    char *event_id = NULL;
    struct rules_result res = {0};
    int rc = 1, c;
    char err[600];

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:s:H:C:Rr:S:l:f:h", opts, NULL)) != -1) {
        if (c == 'c') {
            path = optarg;
        } else if (c == 's') {
            source = optarg;
        } else if (c == 'H') {
            const char *colon = strchr(optarg, ':');
            if (!colon || colon == optarg || hdrs.n == CLI_MAX_HEADERS) {
                fprintf(stderr, "hookline rule-test: --header takes 'Name: value'\n");
                rc = 2;
                goto out;
            }
            const char *v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            hdrs.names[hdrs.n] = strndup(optarg, (size_t)(colon - optarg));
            hdrs.values[hdrs.n] = strdup(v);
            for (char *p = hdrs.names[hdrs.n]; p && *p; p++)
                *p = (char)tolower((unsigned char)*p);
            json_object_set_new(headers, hdrs.names[hdrs.n], json_string(v));
            hdrs.n++;
        } else if (c == 'C') {
            cases = optarg;
        } else if (c == 'R') {
            replay = true;
        } else if (c == 'r' || c == 'S' || c == 'l' || c == 'f') {
            replay_only = true;
            if (c == 'r') {
                ra.rule = optarg;
            } else if (c == 'S') {
                ra.since = optarg;
            } else if (c == 'l') {
                errno = 0;
                ra.limit = strtoll(optarg, &end, 10);
                if (errno || *end || ra.limit <= 0) {
                    fprintf(stderr, "hookline rule-test: --limit takes a positive integer\n");
                    rc = 2;
                    goto out;
                }
            } else if (strcmp(optarg, "json") == 0 || strcmp(optarg, "text") == 0) {
                ra.json = strcmp(optarg, "json") == 0;
            } else {
                fprintf(stderr, "hookline rule-test: --format takes text or json\n");
                rc = 2;
                goto out;
            }
        } else if (c == 'h') {
            cli_rule_test_usage(stdout);
            rc = 0;
            goto out;
        } else {
            cli_rule_test_usage(stderr);
            rc = 2;
            goto out;
        }
    }
    if (path && cases && !replay && !replay_only && !source && hdrs.n == 0 && optind == argc) {
        rc = cli_rule_cases(path, cases);
        goto out;
    }
    if (path && replay && !cases && hdrs.n == 0 && optind == argc) {
        ra.source = source;
        rc = cli_replay(path, &ra);
        goto out;
    }
    if (!path || !source || cases || replay || replay_only || optind != argc - 1) {
        cli_rule_test_usage(stderr);
        rc = 2;
        goto out;
    }
    /* Offline: the rule needs no webhook secret. */
    cfg = cli_load_config_flags(path, CONFIG_LOAD_NO_SECRETS, NULL);
    if (!cfg)
        goto out;
    const struct config_source *src = config_find_source(cfg, source);
    if (!src) {
        fprintf(stderr, "hookline rule-test: no source named %s in %s\n", source, path);
        goto out;
    }
    if (!cfg->rules_script) {
        fprintf(stderr, "hookline rule-test: %s has no rules.script\n", path);
        goto out;
    }
    FILE *f = fopen(argv[optind], "rb");
    if (!f) {
        fprintf(stderr, "hookline rule-test: %s: %s\n", argv[optind], strerror(errno));
        goto out;
    }
    raw = malloc(CLI_MAX_EVENT_BYTES + 1);
    size_t len = raw ? fread(raw, 1, CLI_MAX_EVENT_BYTES + 1, f) : 0;
    fclose(f);
    if (!raw || len > CLI_MAX_EVENT_BYTES) {
        fprintf(stderr, "hookline rule-test: %s: larger than %u bytes\n", argv[optind],
                CLI_MAX_EVENT_BYTES);
        goto out;
    }
    const char *ctype = cli_header_lookup(&hdrs, "content-type");
    body = ingest_decode_body(ctype ? ctype : "application/json", raw, len, err, sizeof err);
    if (!body) {
        fprintf(stderr, "%s: %s\n", argv[optind], err);
        goto out;
    }
    struct ingest_request req = {.method = "POST",
                                 .source = source,
                                 .url = "",
                                 .content_type = ctype,
                                 .headers = headers,
                                 .header = cli_header_lookup,
                                 .query = cli_no_query,
                                 .lookup_ctx = &hdrs,
                                 .body = raw,
                                 .body_len = len,
                                 .now = (double)time(NULL)};
    event_id = ingest_derive_event_id(src, &req, body, err, sizeof err);
    if (!event_id) {
        fprintf(stderr, "%s: %s\n", argv[optind], err);
        goto out;
    }
    if (cli_rules_create(cfg, &rules, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    struct rules_event ev = {source, event_id, req.now, headers, body, raw, len};
    rules_run(rules, &ev, &res);
    if (res.outcome == RULES_FAILED) {
        fprintf(stderr, "%s\n", res.message);
        goto out;
    }
    if (res.outcome == RULES_SKIPPED)
        fprintf(stderr, "skipped: %s\n", res.message);
    out = rules_plan_json(&res.plan); /* what --cases compares "expect" with */
    if (!out) {
        fprintf(stderr, "hookline rule-test: out of memory\n");
        goto out;
    }
    char *text = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text)
        puts(text);
    free(text);
    rc = 0;
out:
    rules_result_free(&res);
    rules_destroy(rules);
    json_decref(out);
    jdoc_free(body);
    json_decref(headers);
    free(event_id);
    free(raw);
    for (size_t i = 0; i < hdrs.n; i++) {
        free(hdrs.names[i]);
        free(hdrs.values[i]);
    }
    config_free(cfg);
    return rc;
}

/* ---------- events list | reprocess ---------- */

struct cli_events_ctx {
    struct ingest *ing;
    bool reprocess;
    int64_t seen, failed;
};

/* events list: a row per event, under CLI_EVENTS_HEADER. */
#define CLI_EVENTS_ROW "%-8lld %-24s %-12s %-12s %s\n"
#define CLI_EVENTS_HEADER "%-8s %-24s %-12s %-12s %s\n"

/* The statuses an event is stored with. */
static const char *const cli_event_statuses[] = {"accepted", "rule_failed", NULL};

/* The states a job can be in. */
static const char *const cli_job_states[] = {"pending",    "running",   "done", "dead",
                                             "superseded", "cancelled", NULL};

/* True when value is one of names (a NULL-terminated list). Otherwise prints
 * "hookline WHO: unknown WHAT 'value' (one of: ...)" to stderr and returns false. */
static bool cli_one_of(const char *who, const char *what, const char *value,
                       const char *const *names)
{
    for (size_t i = 0; names[i]; i++)
        if (strcmp(value, names[i]) == 0)
            return true;
    fprintf(stderr, "hookline %s: unknown %s '%s' (one of:", who, what, value);
    for (size_t i = 0; names[i]; i++)
        fprintf(stderr, " %s", names[i]);
    fprintf(stderr, ")\n");
    return false;
}

static int cli_event_row(const struct store_event_row *row, void *vctx)
{
    struct cli_events_ctx *ctx = vctx;
    char when[32];
    audit_format_time(row->received_at, when);
    ctx->seen++;
    if (!ctx->reprocess) {
        printf(CLI_EVENTS_ROW, (long long)row->row, when, row->source, row->status, row->event_id);
        return 0;
    }
    char outcome[32] = "", err[300] = "";
    if (ingest_reprocess(ctx->ing, row, outcome, sizeof outcome, err, sizeof err) < 0) {
        fprintf(stderr, "hookline events reprocess: %s %s: %s\n", row->source, row->event_id, err);
        ctx->failed++;
        return 0;
    }
    if (strcmp(outcome, "rule_failed") == 0)
        ctx->failed++;
    printf("%s %s: %s\n", row->source, row->event_id, outcome);
    return 0;
}

static void cli_events_usage(FILE *f)
{
    fprintf(
        f,
        "usage: hookline events -c FILE list [--status S] [--source S] [--event ID] [--limit N]\n"
        "       hookline events -c FILE reprocess [--source S] [--event ID] [--limit N]\n"
        "statuses: accepted rule_failed.\n"
        "reprocess runs the current rule again on stored events whose rule failed\n"
        "(status rule_failed) and stores their jobs; exits 1 when any still fails.\n");
}

int cli_events(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"status", required_argument, NULL, 'S'},
                                         {"source", required_argument, NULL, 's'},
                                         {"event", required_argument, NULL, 'e'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL;
    struct store_event_filter f = {0};
    struct cli_events_ctx ctx = {0};
    struct config *cfg = NULL;
    struct store *st = NULL;
    struct rules *rules = NULL;
    int c, rc = 1;
    char err[600], *end;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'S':
            if (!cli_one_of("events", "--status", optarg, cli_event_statuses))
                return 2;
            f.status = optarg;
            break;
        case 's':
            f.source = optarg;
            break;
        case 'e':
            f.event_id = optarg;
            break;
        case 'l':
            errno = 0;
            f.limit = strtoll(optarg, &end, 10);
            if (errno || *end || f.limit <= 0) {
                fprintf(stderr, "hookline events: --limit takes a positive integer\n");
                return 2;
            }
            break;
        case 'h':
            cli_events_usage(stdout);
            return 0;
        default:
            cli_events_usage(stderr);
            return 2;
        }
    }
    if (!path || optind != argc - 1 ||
        (strcmp(argv[optind], "list") != 0 && strcmp(argv[optind], "reprocess") != 0)) {
        cli_events_usage(stderr);
        return 2;
    }
    ctx.reprocess = strcmp(argv[optind], "reprocess") == 0;
    if (ctx.reprocess)
        f.status = "rule_failed";
    cfg = ctx.reprocess ? cli_load_config(path, NULL)
                        : cli_load_config_flags(path, CONFIG_LOAD_NO_SECRETS, NULL);
    if (!cfg)
        goto out;
    if (cli_open_store(cfg, !ctx.reprocess, "hookline events", &st) < 0)
        goto out;
    if (ctx.reprocess) {
        if (cli_rules_create(cfg, &rules, err, sizeof err) < 0) {
            fprintf(stderr, "%s\n", err);
            goto out;
        }
        if (!rules) {
            fprintf(stderr, "hookline events reprocess: %s has no rules.script\n", path);
            goto out;
        }
        ctx.ing = ingest_create(cfg, st);
        if (!ctx.ing)
            goto out;
        ingest_use_rules(ctx.ing, rules);
    }
    if (!ctx.reprocess)
        printf(CLI_EVENTS_HEADER, "ROW", "RECEIVED", "SOURCE", "STATUS", "EVENT");
    if (store_events_scan(st, &f, cli_event_row, &ctx, err, sizeof err) < 0) {
        fprintf(stderr, "hookline events: %s\n", err);
        goto out;
    }
    if (ctx.reprocess)
        fprintf(stderr, "reprocessed %lld events, %lld still failing\n", (long long)ctx.seen,
                (long long)ctx.failed);
    rc = ctx.failed ? 1 : 0;
out:
    ingest_destroy(ctx.ing);
    store_close(st);
    rules_destroy(rules);
    config_free(cfg);
    return rc;
}

/* ---------- jobs list | retry | cancel | pause | resume ---------- */

/* jobs list: a row per job (then "  [last: STATUS ERROR]" when it has been
 * tried), under CLI_JOBS_HEADER. */
#define CLI_JOBS_ROW "%-7lld %-10s %-8d %-24s %-18s %-6s %s"
#define CLI_JOBS_HEADER "%-7s %-10s %-8s %-24s %-18s %-6s %s\n"

static int cli_job_row(const struct store_job *j, const char *state, int last_status,
                       const char *last_error, void *ctx)
{
    char when[32];
    (void)ctx;
    audit_format_time(j->created_at, when);
    printf(CLI_JOBS_ROW, (long long)j->id, state, j->attempts, when, j->action, j->method, j->path);
    if (last_status || last_error)
        printf("  [last: %d %s]", last_status, last_error ? last_error : "");
    putchar('\n');
    return 0;
}

struct cli_ids {
    int64_t *ids;
    size_t n, cap;
};

static int cli_collect_dead(const struct store_job *j, const char *state, int last_status,
                            const char *last_error, void *ctx)
{
    struct cli_ids *c = ctx;
    (void)state;
    (void)last_status;
    (void)last_error;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        int64_t *ni = realloc(c->ids, ncap * sizeof *ni);
        if (!ni)
            return 1;
        c->ids = ni;
        c->cap = ncap;
    }
    c->ids[c->n++] = j->id;
    return 0;
}

static double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Moves one job to state (only from from_state), auditing kind. Returns 0,
 * 1 when the job was not in from_state, -1 on a store error. */
static int cli_job_move(struct store *st, int64_t id, const char *state, const char *from_state,
                        const char *kind)
{
    char err[200];
    int rc =
        store_job_transition(st, id, state, from_state, kind, "hookline jobs", err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "hookline jobs: job %lld: %s\n", (long long)id, err);
    return rc;
}

/* NULL when reason (may be NULL) is fit for a pause, else why not. */
static const char *cli_pause_reason_refusal(const char *reason)
{
    size_t chars = 0;
    for (const unsigned char *p = (const unsigned char *)(reason ? reason : ""); *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return "--reason must not contain control characters";
        if ((*p & 0xc0) != 0x80)
            chars++;
    }
    return chars > 200 ? "--reason is at most 200 characters" : NULL;
}

/* jobs pause: writes the pause row a running service follows within a second
 * and audits delivery.paused. Returns the exit status. */
static int cli_jobs_pause(struct store *st, const char *reason)
{
    char value[400];
    if (store_control_get(st, DELIVERY_PAUSE_KEY, value, sizeof value) == 1) {
        char *bar = strstr(value, "|key:");
        if (bar)
            *bar = '\0';
        printf("delivery is already paused: %s\n", value);
        return 0;
    }
    json_t *rec = audit_record_new("delivery.paused", NULL, NULL);
    audit_detail_set_str(rec, "reason", reason);
    audit_detail_set_str(rec, "by", "hookline jobs pause");
    struct store_op op = {
        .kind = STORE_OP_CONTROL,
        .u.control = {.key = DELIVERY_PAUSE_KEY, .value = reason, .at = cli_now()},
        .audit = &rec,
        .naudit = rec ? 1 : 0};
    int src = store_submit_wait(st, &op);
    json_decref(rec);
    if (src < 0) {
        fprintf(stderr, "hookline jobs: %s\n", op.error);
        return 1;
    }
    printf("delivery paused: %s\n", reason);
    return 0;
}

static void cli_jobs_usage(FILE *f)
{
    fprintf(f, "usage: hookline jobs -c FILE list [--state S] [--limit N]\n"
               "       hookline jobs -c FILE retry ID... | retry --dead\n"
               "       hookline jobs -c FILE cancel ID...\n"
               "       hookline jobs -c FILE pause [--reason TEXT]\n"
               "       hookline jobs -c FILE resume\n"
               "states: pending running done dead superseded cancelled. retry puts dead jobs back\n"
               "in the queue with a fresh attempt count; cancel stops pending ones; pause stops\n"
               "all delivery until a resume; resume lifts a delivery pause (the running service\n"
               "picks either up within a second).\n");
}

int cli_jobs(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"state", required_argument, NULL, 's'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {"dead", no_argument, NULL, 'd'},
                                         {"reason", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL, *state = NULL, *reason = NULL;
    int64_t limit = 0;
    bool all_dead = false;
    int c, rc = 1;
    char err[300], *end;
    struct config *cfg = NULL;
    struct store *st = NULL;
    struct cli_ids ids = {0};

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 's':
            if (!cli_one_of("jobs", "--state", optarg, cli_job_states))
                return 2;
            state = optarg;
            break;
        case 'l':
            errno = 0;
            limit = strtoll(optarg, &end, 10);
            if (errno || *end || limit <= 0) {
                fprintf(stderr, "hookline jobs: --limit takes a positive integer\n");
                return 2;
            }
            break;
        case 'd':
            all_dead = true;
            break;
        case 'r':
            reason = optarg;
            break;
        case 'h':
            cli_jobs_usage(stdout);
            return 0;
        default:
            cli_jobs_usage(stderr);
            return 2;
        }
    }
    if (!path || optind >= argc) {
        cli_jobs_usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind++];
    bool list = strcmp(cmd, "list") == 0, retry = strcmp(cmd, "retry") == 0,
         cancel = strcmp(cmd, "cancel") == 0, resume = strcmp(cmd, "resume") == 0,
         pause = strcmp(cmd, "pause") == 0;
    if (!list && !retry && !cancel && !resume && !pause) {
        cli_jobs_usage(stderr);
        return 2;
    }
    if (reason && !pause) {
        fprintf(stderr, "hookline jobs: --reason goes with pause only\n");
        return 2;
    }
    if (pause && cli_pause_reason_refusal(reason)) {
        fprintf(stderr, "hookline jobs: %s\n", cli_pause_reason_refusal(reason));
        return 2;
    }
    for (int i = optind; i < argc; i++) {
        errno = 0;
        long long id = strtoll(argv[i], &end, 10);
        if (errno || *end || id <= 0 || (!retry && !cancel)) {
            fprintf(stderr, "hookline jobs: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
        if (cli_collect_dead(&(struct store_job){.id = id}, NULL, 0, NULL, &ids) != 0)
            return 1;
    }
    if ((retry && !all_dead && ids.n == 0) || (cancel && ids.n == 0) || (all_dead && !retry)) {
        cli_jobs_usage(stderr);
        free(ids.ids);
        return 2;
    }
    cfg = cli_load_config_flags(path, CONFIG_LOAD_NO_SECRETS, NULL);
    if (!cfg)
        goto out;
    if (cli_open_store(cfg, list, "hookline jobs", &st) < 0)
        goto out;
    if (list) {
        printf(CLI_JOBS_HEADER, "ID", "STATE", "ATTEMPTS", "CREATED", "ACTION", "METHOD", "PATH");
        if (store_jobs_scan(st, state, limit, cli_job_row, NULL, err, sizeof err) < 0) {
            fprintf(stderr, "hookline jobs: %s\n", err);
            goto out;
        }
        rc = 0;
        goto out;
    }
    if (pause) {
        rc = cli_jobs_pause(st, reason && reason[strspn(reason, " ")] ? reason
                                                                      : "paused by an operator");
        goto out;
    }
    if (resume) {
        char value[400];
        if (store_control_get(st, DELIVERY_PAUSE_KEY, value, sizeof value) != 1) {
            printf("delivery is not paused\n");
            rc = 0;
            goto out;
        }
        json_t *rec = audit_record_new("delivery.resumed", NULL, NULL);
        audit_detail_set_str(rec, "by", "hookline jobs resume");
        struct store_op op = {.kind = STORE_OP_CONTROL,
                              .u.control = {.key = DELIVERY_PAUSE_KEY, .at = cli_now()},
                              .audit = &rec,
                              .naudit = 1};
        int src = store_submit_wait(st, &op);
        json_decref(rec);
        if (src < 0) {
            fprintf(stderr, "hookline jobs: %s\n", op.error);
            goto out;
        }
        printf("delivery resumed\n");
        rc = 0;
        goto out;
    }
    if (all_dead && store_jobs_scan(st, "dead", 0, cli_collect_dead, &ids, err, sizeof err) < 0) {
        fprintf(stderr, "hookline jobs: %s\n", err);
        goto out;
    }
    int failed = 0;
    for (size_t i = 0; i < ids.n; i++) {
        int m = retry ? cli_job_move(st, ids.ids[i], "pending", "dead", "admin.job_retry")
                      : cli_job_move(st, ids.ids[i], "cancelled", "pending", "job.cancelled");
        if (m == STORE_JOB_MOVED)
            printf("job %lld: %s\n", (long long)ids.ids[i], retry ? "queued again" : "cancelled");
        else if (m == STORE_JOB_WRONG_STATE)
            printf("job %lld: not %s, left alone\n", (long long)ids.ids[i],
                   retry ? "dead" : "pending");
        else if (m == STORE_JOB_NOT_FOUND)
            fprintf(stderr, "hookline jobs: job %lld: no such job\n", (long long)ids.ids[i]);
        if (m != STORE_JOB_MOVED)
            failed = 1;
    }
    rc = failed;
out:
    free(ids.ids);
    store_close(st);
    config_free(cfg);
    return rc;
}
