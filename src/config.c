/*
 * config: reads the JSON config file with jansson, checks every key against the
 * schema of docs/contract.md section 2 and fills struct config. A small scanner over the raw
 * text maps key paths to line numbers so each problem reads "file:line: path:
 * message". Secrets are resolved from the environment or files and never echoed
 * in a message. Runs on the main thread only, before any other thread starts.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "store/store.h"

#define CONFIG_MAX_FILE_BYTES (1u << 20)
#define CONFIG_MAX_SECRET_BYTES 4096
#define CONFIG_SCAN_MAX_DEPTH 64

struct config_line {
    char *path;
    int line;
};

struct config_ctx {
    struct config *cfg;
    struct config_diags *diags;
    const char *file;
    struct config_line *lines;
    size_t nlines, caplines;
    int nerrors;
    unsigned flags;
    int nliterals;      /* literal secrets found in the config text */
    unsigned file_mode; /* permission bits of the config file; 0 when unknown */
};

/* ---------- diagnostics ---------- */

static void config_diag_add(struct config_diags *d, bool warning, int line, const char *msg)
{
    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 16;
        struct config_diag *ni = realloc(d->items, ncap * sizeof *ni);
        if (!ni)
            return;
        d->items = ni;
        d->cap = ncap;
    }
    struct config_diag *g = &d->items[d->n++];
    g->warning = warning;
    g->line = line;
    snprintf(g->msg, sizeof g->msg, "%s", msg);
}

static int config_line_of(const struct config_ctx *ctx, const char *path)
{
    /* The exact path, else the nearest enclosing key that the scanner saw. */
    size_t best = 0;
    int line = 0;
    for (size_t i = 0; i < ctx->nlines; i++) {
        const char *p = ctx->lines[i].path;
        size_t n = strlen(p);
        if (strncmp(p, path, n) == 0 && (path[n] == '\0' || path[n] == '.' || path[n] == '[') &&
            n >= best) {
            best = n;
            line = ctx->lines[i].line;
        }
    }
    return line;
}

static void config_report(struct config_ctx *ctx, bool warning, const char *path, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));

static void config_report(struct config_ctx *ctx, bool warning, const char *path, const char *fmt,
                          ...)
{
    char msg[256], full[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (path && *path)
        snprintf(full, sizeof full, "%s: %s", path, msg);
    else
        snprintf(full, sizeof full, "%s", msg);
    config_diag_add(ctx->diags, warning, path ? config_line_of(ctx, path) : 0, full);
    if (!warning)
        ctx->nerrors++;
}

#define config_error(ctx, path, ...) config_report(ctx, false, path, __VA_ARGS__)
#define config_warn(ctx, path, ...) config_report(ctx, true, path, __VA_ARGS__)

/* ---------- key path -> line scanner ---------- */

struct config_scan {
    const char *s;
    size_t i, len;
    int line;
    struct config_ctx *ctx;
};

static void config_scan_ws(struct config_scan *sc)
{
    while (sc->i < sc->len && isspace((unsigned char)sc->s[sc->i])) {
        if (sc->s[sc->i] == '\n')
            sc->line++;
        sc->i++;
    }
}

/* Reads a JSON string at sc->i into out (cut at out_len), decoding only \" and \\. */
static int config_scan_string(struct config_scan *sc, char *out, size_t out_len)
{
    size_t o = 0;
    if (sc->i >= sc->len || sc->s[sc->i] != '"')
        return -1;
    sc->i++;
    while (sc->i < sc->len && sc->s[sc->i] != '"') {
        char c = sc->s[sc->i++];
        if (c == '\\' && sc->i < sc->len)
            c = sc->s[sc->i++];
        if (c == '\n')
            sc->line++;
        if (o + 1 < out_len)
            out[o++] = c;
    }
    if (sc->i >= sc->len)
        return -1;
    sc->i++;
    if (out_len)
        out[o] = '\0';
    return 0;
}

static void config_scan_record(struct config_scan *sc, const char *path, int line)
{
    struct config_ctx *ctx = sc->ctx;
    if (ctx->nlines == ctx->caplines) {
        size_t ncap = ctx->caplines ? ctx->caplines * 2 : 64;
        struct config_line *nl = realloc(ctx->lines, ncap * sizeof *nl);
        if (!nl)
            return;
        ctx->lines = nl;
        ctx->caplines = ncap;
    }
    char *p = strdup(path);
    if (!p)
        return;
    ctx->lines[ctx->nlines++] = (struct config_line){p, line};
}

static int config_scan_value(struct config_scan *sc, const char *path, int depth)
{
    char key[256], sub[512];
    if (depth > CONFIG_SCAN_MAX_DEPTH)
        return -1;
    config_scan_ws(sc);
    if (sc->i >= sc->len)
        return -1;
    char c = sc->s[sc->i];
    if (c == '{') {
        sc->i++;
        for (;;) {
            config_scan_ws(sc);
            if (sc->i < sc->len && sc->s[sc->i] == '}') {
                sc->i++;
                return 0;
            }
            int line = sc->line;
            if (config_scan_string(sc, key, sizeof key) < 0)
                return -1;
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
            config_scan_record(sc, sub, line);
            config_scan_ws(sc);
            if (sc->i >= sc->len || sc->s[sc->i] != ':')
                return -1;
            sc->i++;
            if (config_scan_value(sc, sub, depth + 1) < 0)
                return -1;
            config_scan_ws(sc);
            if (sc->i < sc->len && sc->s[sc->i] == ',')
                sc->i++;
        }
    } else if (c == '[') {
        sc->i++;
        for (int idx = 0;; idx++) {
            config_scan_ws(sc);
            if (sc->i < sc->len && sc->s[sc->i] == ']') {
                sc->i++;
                return 0;
            }
            snprintf(sub, sizeof sub, "%s[%d]", path, idx);
            config_scan_record(sc, sub, sc->line);
            if (config_scan_value(sc, sub, depth + 1) < 0)
                return -1;
            config_scan_ws(sc);
            if (sc->i < sc->len && sc->s[sc->i] == ',')
                sc->i++;
        }
    } else if (c == '"') {
        return config_scan_string(sc, key, sizeof key);
    }
    while (sc->i < sc->len && !strchr(",}] \t\r\n", sc->s[sc->i]))
        sc->i++;
    return 0;
}

/* ---------- typed getters ---------- */

static void config_check_keys(struct config_ctx *ctx, json_t *obj, const char *path,
                              const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], key) == 0)
                ok = true;
        if (!ok) {
            char kp[320];
            snprintf(kp, sizeof kp, "%s%s%s", path, *path ? "." : "", key);
            config_error(ctx, kp, "unknown key");
        }
    }
}

static json_t *config_section(struct config_ctx *ctx, json_t *root, const char *name)
{
    json_t *s = json_object_get(root, name);
    if (s && !json_is_object(s)) {
        config_error(ctx, name, "must be an object");
        return NULL;
    }
    return s;
}

static void config_keypath(char *out, size_t len, const char *path, const char *key)
{
    snprintf(out, len, "%s%s%s", path, *path ? "." : "", key);
}

/* Copies the string at obj.key (or def) into *out (new heap string or NULL). */
static void config_get_str(struct config_ctx *ctx, json_t *obj, const char *path, const char *key,
                           const char *def, char **out)
{
    char kp[320];
    config_keypath(kp, sizeof kp, path, key);
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    const char *s = def;
    if (v) {
        if (!json_is_string(v)) {
            config_error(ctx, kp, "must be a string");
        } else if (json_string_length(v) == 0) {
            config_error(ctx, kp, "must not be empty");
        } else if (strlen(json_string_value(v)) != json_string_length(v)) {
            config_error(ctx, kp, "must not contain NUL characters");
        } else {
            s = json_string_value(v);
        }
    }
    free(*out);
    *out = s ? strdup(s) : NULL;
}

static void config_get_int(struct config_ctx *ctx, json_t *obj, const char *path, const char *key,
                           int64_t def, int64_t min, int64_t max, int64_t *out)
{
    char kp[320];
    config_keypath(kp, sizeof kp, path, key);
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    *out = def;
    if (!v)
        return;
    if (!json_is_integer(v)) {
        config_error(ctx, kp, "must be an integer");
        return;
    }
    json_int_t n = json_integer_value(v);
    if (n < min || n > max) {
        config_error(ctx, kp, "must be between %lld and %lld, got %lld", (long long)min,
                     (long long)max, (long long)n);
        return;
    }
    *out = n;
}

static int config_get_int32(struct config_ctx *ctx, json_t *obj, const char *path, const char *key,
                            int def, int min, int max)
{
    int64_t v;
    config_get_int(ctx, obj, path, key, def, min, max, &v);
    return (int)v;
}

static bool config_get_bool(struct config_ctx *ctx, json_t *obj, const char *path, const char *key,
                            bool def)
{
    char kp[320];
    config_keypath(kp, sizeof kp, path, key);
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v)
        return def;
    if (!json_is_boolean(v)) {
        config_error(ctx, kp, "must be true or false");
        return def;
    }
    return json_is_true(v);
}

/* Resolves rel against the config directory. Returns a new string or NULL. */
static char *config_abs_path(const struct config *cfg, const char *rel)
{
    if (rel[0] == '/')
        return strdup(rel);
    size_t n = strlen(cfg->dir) + strlen(rel) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", cfg->dir, rel);
    return p;
}

/* Who besides the owner may read a file of permission bits mode: "group and
 * others", "group", "others", or NULL when nobody else may. */
static const char *config_readable_by(unsigned mode)
{
    bool g = mode & S_IRGRP, o = mode & S_IROTH;
    return g && o ? "group and others" : g ? "group" : o ? "others" : NULL;
}

/* Reads the first line of a secret file into a new buffer, without its line end
 * and trailing spaces, tabs and CRs (an editor's or echo's leftovers, never part
 * of a secret). *mode gets the permission bits of the file that was read. */
static char *config_read_secret_file(const char *path, int *err, unsigned *mode)
{
    char buf[CONFIG_MAX_SECRET_BYTES + 2];
    FILE *f = fopen(path, "r");
    if (!f) {
        *err = errno;
        return NULL;
    }
    struct stat st;
    *mode = fstat(fileno(f), &st) == 0 ? (unsigned)(st.st_mode & 07777) : 0;
    char *line = fgets(buf, sizeof buf, f);
    fclose(f);
    if (!line) {
        *err = 0;
        return NULL;
    }
    size_t n = strcspn(buf, "\r\n");
    while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    char *s = strdup(buf);
    OPENSSL_cleanse(buf, sizeof buf);
    return s;
}

/* Resolves a secret value ("env:NAME", "file:PATH" or literal). Returns a new
 * string, or NULL after reporting. When optional_env is set, an unset variable is
 * a warning and NULL is returned. Messages name the variable or file, never the value. */
static char *config_secret(struct config_ctx *ctx, const char *kp, json_t *v, bool optional_env)
{
    if (!json_is_string(v) || json_string_length(v) == 0) {
        config_error(ctx, kp,
                     "must be a non-empty string (\"env:NAME\", \"file:PATH\" or a literal)");
        return NULL;
    }
    const char *s = json_string_value(v);
    char *out = NULL;
    if (ctx->flags & CONFIG_LOAD_NO_SECRETS)
        return NULL;
    if (strncmp(s, "env:", 4) == 0) {
        const char *e = getenv(s + 4);
        if (!e || !*e) {
            if (optional_env)
                config_warn(ctx, kp, "environment variable %s is not set", s + 4);
            else
                config_error(ctx, kp, "environment variable %s is not set", s + 4);
            return NULL;
        }
        out = strdup(e);
    } else if (strncmp(s, "file:", 5) == 0) {
        char *p = config_abs_path(ctx->cfg, s + 5);
        int err = 0;
        unsigned mode = 0;
        out = p ? config_read_secret_file(p, &err, &mode) : NULL;
        if (!out) {
            config_error(ctx, kp, "cannot read secret file %s: %s", p ? p : s + 5,
                         err ? strerror(err) : "empty file");
        } else if (!*out) {
            config_error(ctx, kp, "secret file %s has no secret on its first line (empty or blank)",
                         p);
            free(out);
            out = NULL;
        }
        const char *who = config_readable_by(mode);
        if (out && who)
            config_warn(ctx, kp, "secret file %s is readable by %s (mode %04o): chmod 600 it",
                        s + 5, who, mode);
        free(p);
    } else {
        config_warn(ctx, kp,
                    "literal secret in the config file; prefer \"env:NAME\" or \"file:PATH\"");
        ctx->nliterals++;
        out = strdup(s);
    }
    return out;
}

static void config_free_secret(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* ---------- sections ---------- */

static void config_parse_listen(struct config_ctx *ctx, json_t *root)
{
    static const char *const keys[] = {"host",
                                       "port",
                                       "max_body_bytes",
                                       "threads",
                                       "max_connections",
                                       "max_connections_per_address",
                                       "header_timeout_ms",
                                       "body_timeout_ms",
                                       "idle_timeout_s",
                                       "keep_alive",
                                       NULL};
    struct config *cfg = ctx->cfg;
    json_t *s = config_section(ctx, root, "listen");
    if (s)
        config_check_keys(ctx, s, "listen", keys);
    config_get_str(ctx, s, "listen", "host", "127.0.0.1", &cfg->listen_host);
    cfg->listen_port = config_get_int32(ctx, s, "listen", "port", 8080, 0, 65535);
    int64_t mb;
    config_get_int(ctx, s, "listen", "max_body_bytes", 1048576, 1, 64 * 1048576, &mb);
    cfg->max_body_bytes = (size_t)mb;
    cfg->listen_threads = config_get_int32(ctx, s, "listen", "threads", 0, 0, 256);
    cfg->listen_max_connections =
        config_get_int32(ctx, s, "listen", "max_connections", 10000, 16, 1000000);
    cfg->listen_max_connections_per_address =
        config_get_int32(ctx, s, "listen", "max_connections_per_address", 256, 0, 1000000);
    cfg->listen_header_timeout_ms =
        config_get_int32(ctx, s, "listen", "header_timeout_ms", 10000, 100, 600000);
    cfg->listen_body_timeout_ms =
        config_get_int32(ctx, s, "listen", "body_timeout_ms", 60000, 100, 3600000);
    cfg->listen_idle_timeout_s = config_get_int32(ctx, s, "listen", "idle_timeout_s", 30, 1, 3600);
    cfg->listen_keep_alive = config_get_bool(ctx, s, "listen", "keep_alive", true);
}

static void config_parse_store(struct config_ctx *ctx, json_t *root)
{
    static const char *const keys[] = {
        "url", "password", "busy_timeout_ms", "queue_max", "batch_max", "dedupe_max_keys", NULL};
    struct config *cfg = ctx->cfg;
    json_t *s = config_section(ctx, root, "store");
    if (s)
        config_check_keys(ctx, s, "store", keys);
    config_get_str(ctx, s, "store", "url", "sqlite:var/hookline.db", &cfg->store_url);
    cfg->store_busy_timeout_ms =
        config_get_int32(ctx, s, "store", "busy_timeout_ms", 5000, 0, 600000);
    cfg->store_queue_max = config_get_int32(ctx, s, "store", "queue_max", 10000, 1, 1000000);
    cfg->store_batch_max = config_get_int32(ctx, s, "store", "batch_max", 512, 1, 100000);
    cfg->store_dedupe_max_keys =
        config_get_int32(ctx, s, "store", "dedupe_max_keys", 2000000, 1000, 100000000);
    if (!cfg->store_url)
        return;
    const char *rest = NULL;
    enum store_scheme scheme = store_url_scheme(cfg->store_url, &rest);
    json_t *password = s ? json_object_get(s, "password") : NULL;
    if (scheme == STORE_SCHEME_SQLITE && rest[0]) {
        cfg->store_sqlite_path = config_abs_path(cfg, rest);
        if (password)
            config_error(ctx, "store.password", "only a PostgreSQL store takes a password");
    } else if (scheme == STORE_SCHEME_POSTGRESQL) {
        char why[200];
        if (store_url_check(cfg->store_url, why, sizeof why) < 0)
            config_error(ctx, "store.url", "%s", why);
        /* The store's own secret: every command that reads the store needs it,
         * so it is resolved even when other secrets are not. */
        if (password) {
            unsigned flags = ctx->flags;
            ctx->flags &= ~CONFIG_LOAD_NO_SECRETS;
            cfg->store_password = config_secret(ctx, "store.password", password, false);
            ctx->flags = flags;
        }
    } else {
        config_error(ctx, "store.url",
                     "must be sqlite:PATH or postgresql://USER@HOST:PORT/DATABASE");
    }
}

/* The token endpoint DIDWW pairs with base_url: auth.didww.com for api.didww.com,
 * auth-sandbox.didww.com for sandbox-api.didww.com, else base_url's origin + "/token"
 * (the bundled simulator serves it there). Returns a new string or NULL. */
static char *config_default_auth_url(const char *base_url)
{
    char out[512];
    const char *host, *end;
    if (!base_url)
        return NULL;
    host = strstr(base_url, "://");
    if (!host)
        return NULL;
    host += 3;
    end = host + strcspn(host, "/?#");
    if ((size_t)(end - host) == strlen("api.didww.com") && strncmp(host, "api.didww.com", 13) == 0)
        return strdup("https://auth.didww.com/token");
    if ((size_t)(end - host) == strlen("sandbox-api.didww.com") &&
        strncmp(host, "sandbox-api.didww.com", 21) == 0)
        return strdup("https://auth-sandbox.didww.com/token");
    if (snprintf(out, sizeof out, "%.*s/token", (int)(end - base_url), base_url) >= (int)sizeof out)
        return NULL;
    return strdup(out);
}

/* didww.auth_url and didww.token_expires_in: used by 2026-11-19 (bearer tokens). */
static void config_parse_didww_auth(struct config_ctx *ctx, json_t *s)
{
    struct config *cfg = ctx->cfg;
    config_get_str(ctx, s, "didww", "auth_url", NULL, &cfg->didww_auth_url);
    const char *override = getenv("HOOKLINE_DIDWW_AUTH_URL");
    if (override && *override) {
        free(cfg->didww_auth_url);
        cfg->didww_auth_url = strdup(override);
        config_warn(ctx, "didww.auth_url", "overridden by HOOKLINE_DIDWW_AUTH_URL (%.200s)",
                    override);
    }
    if (!cfg->didww_auth_url)
        cfg->didww_auth_url = config_default_auth_url(cfg->didww_base_url);
    if (cfg->didww_auth_url && strncmp(cfg->didww_auth_url, "https://", 8) != 0 &&
        strncmp(cfg->didww_auth_url, "http://", 7) != 0)
        config_error(ctx, "didww.auth_url", "must start with https:// or http://");
    cfg->didww_token_expires_in =
        config_get_int32(ctx, s, "didww", "token_expires_in", 900, 60, 3600);
}

static void config_parse_didww(struct config_ctx *ctx, json_t *root)
{
    static const char *const keys[] = {"base_url",         "api_key",    "api_version",
                                       "rate_limit_per_s", "timeout_ms", "auth_url",
                                       "token_expires_in", NULL};
    /* Every released version (DIDWW never retires one). */
    static const char *const versions[] = {"2017-09-18", "2021-04-19", "2021-12-15", "2022-05-10",
                                           "2026-04-16", "2026-11-19", NULL};
    struct config *cfg = ctx->cfg;
    json_t *s = config_section(ctx, root, "didww");
    if (s)
        config_check_keys(ctx, s, "didww", keys);
    config_get_str(ctx, s, "didww", "base_url", "https://sandbox-api.didww.com/v3",
                   &cfg->didww_base_url);
    /* Deployment override (staging, the bundled simulator): never a secret. */
    const char *override = getenv("HOOKLINE_DIDWW_BASE_URL");
    if (override && *override) {
        free(cfg->didww_base_url);
        cfg->didww_base_url = strdup(override);
        config_warn(ctx, "didww.base_url", "overridden by HOOKLINE_DIDWW_BASE_URL (%.200s)",
                    override);
    }
    if (cfg->didww_base_url && strncmp(cfg->didww_base_url, "https://", 8) != 0 &&
        strncmp(cfg->didww_base_url, "http://", 7) != 0)
        config_error(ctx, "didww.base_url", "must start with https:// or http://");
    json_t *key = s ? json_object_get(s, "api_key") : NULL;
    if (key)
        cfg->didww_api_key = config_secret(ctx, "didww.api_key", key, true);
    /* The default is what DIDWW's SDKs send (README "DIDWW API versions"). */
    config_get_str(ctx, s, "didww", "api_version", CONFIG_DIDWW_DEFAULT_VERSION,
                   &cfg->didww_api_version);
    if (cfg->didww_api_version) {
        bool known = false;
        for (size_t i = 0; versions[i]; i++)
            if (strcmp(versions[i], cfg->didww_api_version) == 0)
                known = true;
        if (!known)
            config_error(ctx, "didww.api_version",
                         "unsupported version %s (supported: 2017-09-18, 2021-04-19, 2021-12-15, "
                         "2022-05-10, 2026-04-16, 2026-11-19)",
                         cfg->didww_api_version);
    }
    config_parse_didww_auth(ctx, s);
    cfg->didww_rate_limit_per_s =
        config_get_int32(ctx, s, "didww", "rate_limit_per_s", 20, 1, 1000);
    cfg->didww_timeout_ms = config_get_int32(ctx, s, "didww", "timeout_ms", 15000, 100, 600000);
}

static void config_parse_delivery(struct config_ctx *ctx, json_t *root)
{
    static const char *const keys[] = {"workers",
                                       "max_attempts",
                                       "backoff_initial_ms",
                                       "backoff_max_ms",
                                       "skip_noop",
                                       "idle_poll_ms",
                                       "max_in_flight",
                                       "batch_size",
                                       "batch_page_size",
                                       "prefetch_max_age_ms",
                                       NULL};
    struct config *cfg = ctx->cfg;
    json_t *s = config_section(ctx, root, "delivery");
    if (s)
        config_check_keys(ctx, s, "delivery", keys);
    cfg->delivery_workers = config_get_int32(ctx, s, "delivery", "workers", 4, 1, 64);
    cfg->delivery_max_attempts = config_get_int32(ctx, s, "delivery", "max_attempts", 10, 1, 100);
    config_get_int(ctx, s, "delivery", "backoff_initial_ms", 1000, 1, 3600000,
                   &cfg->delivery_backoff_initial_ms);
    config_get_int(ctx, s, "delivery", "backoff_max_ms", 600000, 1, 86400000,
                   &cfg->delivery_backoff_max_ms);
    if (cfg->delivery_backoff_max_ms < cfg->delivery_backoff_initial_ms)
        config_error(ctx, "delivery.backoff_max_ms", "must not be less than backoff_initial_ms");
    cfg->delivery_skip_noop = config_get_bool(ctx, s, "delivery", "skip_noop", true);
    cfg->delivery_idle_poll_ms =
        config_get_int32(ctx, s, "delivery", "idle_poll_ms", 200, 50, 60000);
    cfg->delivery_max_in_flight = config_get_int32(ctx, s, "delivery", "max_in_flight", 64, 1, 256);
    cfg->delivery_batch_size = config_get_int32(ctx, s, "delivery", "batch_size", 50, 1, 100);
    cfg->delivery_batch_page_size =
        config_get_int32(ctx, s, "delivery", "batch_page_size", 100, 1, 100);
    cfg->delivery_prefetch_max_age_ms =
        config_get_int32(ctx, s, "delivery", "prefetch_max_age_ms", 10000, 100, 60000);
}

static void config_parse_rules(struct config_ctx *ctx, json_t *root)
{
    static const char *const keys[] = {"script", "data", "instruction_limit", "memory_limit_bytes",
                                       "cases",  NULL};
    struct config *cfg = ctx->cfg;
    json_t *s = config_section(ctx, root, "rules");
    if (s)
        config_check_keys(ctx, s, "rules", keys);
    char *script = NULL;
    config_get_str(ctx, s, "rules", "script", NULL, &script);
    if (script) {
        cfg->rules_script = config_abs_path(cfg, script);
        if (cfg->rules_script && access(cfg->rules_script, R_OK) != 0)
            config_error(ctx, "rules.script", "cannot read %s: %s", cfg->rules_script,
                         strerror(errno));
        free(script);
    }
    char *cases = NULL;
    config_get_str(ctx, s, "rules", "cases", NULL, &cases);
    if (cases) {
        cfg->rules_cases = config_abs_path(cfg, cases);
        if (cfg->rules_cases && access(cfg->rules_cases, R_OK) != 0)
            config_error(ctx, "rules.cases", "cannot read %s: %s", cfg->rules_cases,
                         strerror(errno));
        else if (!script)
            config_error(ctx, "rules.cases", "needs rules.script (the rule the cases test)");
        free(cases);
    }
    json_t *data = s ? json_object_get(s, "data") : NULL;
    if (data && !json_is_object(data)) {
        config_error(ctx, "rules.data", "must be an object of name -> JSON file");
    } else if (data && json_object_size(data) > 0) {
        cfg->rules_data = calloc(json_object_size(data), sizeof *cfg->rules_data);
        const char *name;
        json_t *v;
        json_object_foreach(data, name, v)
        {
            char kp[320];
            snprintf(kp, sizeof kp, "rules.data.%s", name);
            if (!json_is_string(v)) {
                config_error(ctx, kp, "must be a file path string");
                continue;
            }
            char *p = config_abs_path(cfg, json_string_value(v));
            if (p && access(p, R_OK) != 0)
                config_error(ctx, kp, "cannot read %s: %s", p, strerror(errno));
            if (cfg->rules_data) {
                cfg->rules_data[cfg->nrules_data].name = strdup(name);
                cfg->rules_data[cfg->nrules_data].path = p;
                cfg->nrules_data++;
            } else {
                free(p);
            }
        }
    }
    config_get_int(ctx, s, "rules", "instruction_limit", 1000000, 1000, 1000000000,
                   &cfg->rules_instruction_limit);
    config_get_int(ctx, s, "rules", "memory_limit_bytes", 8388608, 65536, 1073741824,
                   &cfg->rules_memory_limit_bytes);
}

static int config_parse_scheme(const char *s, enum verify_scheme *out)
{
    static const enum verify_scheme all[] = {VERIFY_SCHEME_STANDARD_WEBHOOKS,
                                             VERIFY_SCHEME_HMAC,
                                             VERIFY_SCHEME_TOKEN,
                                             VERIFY_SCHEME_BASIC,
                                             VERIFY_SCHEME_HUBSPOT_V1,
                                             VERIFY_SCHEME_HUBSPOT_V2,
                                             VERIFY_SCHEME_HUBSPOT_V3,
                                             VERIFY_SCHEME_NONE};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(s, verify_scheme_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

static void config_add_secret(struct verify_config *v, char *s)
{
    struct verify_secret *ns = realloc(v->secrets, (v->nsecrets + 1) * sizeof *ns);
    if (!ns) {
        config_free_secret(s);
        return;
    }
    v->secrets = ns;
    v->secrets[v->nsecrets].bytes = (unsigned char *)s;
    v->secrets[v->nsecrets].len = strlen(s);
    v->nsecrets++;
}

static void config_parse_verify(struct config_ctx *ctx, json_t *vobj, const char *path,
                                struct verify_config *v)
{
    static const char *const keys[] = {
        "scheme",   "secret",   "secrets",          "algorithm",   "header", "prefix",
        "encoding", "signed",   "timestamp_header", "tolerance_s", "query",  "username",
        "password", "insecure", "trust_forwarded",  NULL};
    char kp[320];
    int errors_before = ctx->nerrors;
    config_check_keys(ctx, vobj, path, keys);

    char *scheme = NULL;
    config_get_str(ctx, vobj, path, "scheme", NULL, &scheme);
    config_keypath(kp, sizeof kp, path, "scheme");
    if (!scheme) {
        if (!json_object_get(vobj, "scheme"))
            config_error(ctx, kp,
                         "is required (standard-webhooks, hmac, token, basic, hubspot-v1, "
                         "hubspot-v2, hubspot-v3 or none)");
        return;
    }
    if (config_parse_scheme(scheme, &v->scheme) < 0) {
        config_error(ctx, kp,
                     "unknown scheme \"%s\" (standard-webhooks, hmac, token, basic, hubspot-v1, "
                     "hubspot-v2, hubspot-v3, none)",
                     scheme);
        free(scheme);
        return;
    }
    free(scheme);

    json_t *one = json_object_get(vobj, "secret");
    json_t *many = json_object_get(vobj, "secrets");
    json_t *pw = json_object_get(vobj, "password");
    if (one) {
        config_keypath(kp, sizeof kp, path, "secret");
        char *s = config_secret(ctx, kp, one, false);
        if (s)
            config_add_secret(v, s);
    }
    if (pw) {
        config_keypath(kp, sizeof kp, path, "password");
        char *s = config_secret(ctx, kp, pw, false);
        if (s)
            config_add_secret(v, s);
    }
    if (many) {
        config_keypath(kp, sizeof kp, path, "secrets");
        if (!json_is_array(many) || json_array_size(many) == 0) {
            config_error(ctx, kp, "must be a non-empty array of secrets");
        } else {
            size_t i;
            json_t *e;
            json_array_foreach(many, i, e)
            {
                char ekp[340];
                snprintf(ekp, sizeof ekp, "%s[%zu]", kp, i);
                char *s = config_secret(ctx, ekp, e, false);
                if (s)
                    config_add_secret(v, s);
            }
        }
    }

    char *alg = NULL, *enc = NULL;
    config_get_str(ctx, vobj, path, "algorithm", "sha256", &alg);
    config_keypath(kp, sizeof kp, path, "algorithm");
    if (alg && strcmp(alg, "sha256") == 0)
        v->algorithm = DIGEST_SHA256;
    else if (alg && strcmp(alg, "sha1") == 0)
        v->algorithm = DIGEST_SHA1;
    else if (alg && strcmp(alg, "sha512") == 0)
        v->algorithm = DIGEST_SHA512;
    else if (alg)
        config_error(ctx, kp, "must be sha256, sha1 or sha512");
    free(alg);
    config_get_str(ctx, vobj, path, "encoding", "hex", &enc);
    config_keypath(kp, sizeof kp, path, "encoding");
    if (enc && strcmp(enc, "hex") == 0)
        v->encoding = VERIFY_ENC_HEX;
    else if (enc && strcmp(enc, "base64") == 0)
        v->encoding = VERIFY_ENC_BASE64;
    else if (enc)
        config_error(ctx, kp, "must be hex or base64");
    free(enc);

    config_get_str(ctx, vobj, path, "header", NULL, &v->header);
    config_get_str(ctx, vobj, path, "signed", NULL, &v->signed_template);
    config_get_str(ctx, vobj, path, "timestamp_header", NULL, &v->timestamp_header);
    config_get_str(ctx, vobj, path, "query", NULL, &v->query);
    config_get_str(ctx, vobj, path, "username", NULL, &v->username);
    /* A prefix may legitimately be "Bearer " with a trailing space: read it raw. */
    json_t *prefix = json_object_get(vobj, "prefix");
    config_keypath(kp, sizeof kp, path, "prefix");
    if (prefix && !json_is_string(prefix))
        config_error(ctx, kp, "must be a string");
    else if (prefix)
        v->prefix = strdup(json_string_value(prefix));
    config_get_int(ctx, vobj, path, "tolerance_s", 300, 1, 86400 * 7, &v->tolerance_s);
    v->insecure = config_get_bool(ctx, vobj, path, "insecure", false);
    v->trust_forwarded = config_get_bool(ctx, vobj, path, "trust_forwarded", false);

    if (v->trust_forwarded && v->scheme != VERIFY_SCHEME_HMAC &&
        v->scheme != VERIFY_SCHEME_HUBSPOT_V2 && v->scheme != VERIFY_SCHEME_HUBSPOT_V3) {
        config_keypath(kp, sizeof kp, path, "trust_forwarded");
        config_warn(ctx, kp, "has no effect: scheme %s does not sign the URL",
                    verify_scheme_name(v->scheme));
    }
    if (v->scheme == VERIFY_SCHEME_NONE && v->insecure) {
        config_warn(ctx, path, "scheme none accepts unauthenticated webhooks (\"insecure\": true)");
    }
    if (ctx->flags & CONFIG_LOAD_NO_SECRETS)
        return;
    /* A secret that could not be resolved was reported already; check the rest
     * of the block with a stand-in so every problem is listed at once. */
    if (v->nsecrets == 0 && (one || many || pw) && ctx->nerrors > errors_before) {
        char *standin = strdup(v->scheme == VERIFY_SCHEME_STANDARD_WEBHOOKS
                                   ? "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                                   : "stand-in");
        if (standin)
            config_add_secret(v, standin);
    }
    char err[256];
    if (verify_prepare(v, err, sizeof err) < 0)
        config_error(ctx, path, "%s", err);
}

static void config_parse_event_id(struct config_ctx *ctx, json_t *sobj, const char *path,
                                  struct config_source *src)
{
    char kp[320];
    config_keypath(kp, sizeof kp, path, "event_id");
    json_t *v = json_object_get(sobj, "event_id");
    if (!v)
        return;
    if (!json_is_string(v)) {
        config_error(ctx, kp, "must be \"header:NAME\", \"json:/pointer\" or \"body-sha256\"");
        return;
    }
    const char *s = json_string_value(v);
    if (strncmp(s, "header:", 7) == 0 && s[7]) {
        src->event_id = CONFIG_EVENT_ID_HEADER;
        src->event_id_arg = strdup(s + 7);
        for (char *p = src->event_id_arg; p && *p; p++)
            *p = (char)tolower((unsigned char)*p);
    } else if (strncmp(s, "json:", 5) == 0 && s[5] == '/') {
        src->event_id = CONFIG_EVENT_ID_JSON;
        src->event_id_arg = strdup(s + 5);
    } else if (strcmp(s, "body-sha256") == 0) {
        src->event_id = CONFIG_EVENT_ID_BODY_SHA256;
    } else {
        config_error(ctx, kp,
                     "must be \"header:NAME\", \"json:/pointer\" or \"body-sha256\", got \"%s\"",
                     s);
    }
}

/* A Salesforce organization id: 15 or 18 letters and digits. */
static bool config_valid_org_id(const char *id)
{
    size_t n = strlen(id);
    if (n != 15 && n != 18)
        return false;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p))
            return false;
    return true;
}

/* sources.NAME.format and, for salesforce-outbound, sources.NAME.organization_id. */
static void config_parse_format(struct config_ctx *ctx, json_t *sobj, const char *path,
                                struct config_source *src)
{
    char kp[340];
    char *fmt = NULL;
    config_get_str(ctx, sobj, path, "format", "webhook", &fmt);
    config_keypath(kp, sizeof kp, path, "format");
    if (fmt && strcmp(fmt, "webhook") == 0)
        src->format = CONFIG_FORMAT_WEBHOOK;
    else if (fmt && strcmp(fmt, "salesforce-outbound") == 0)
        src->format = CONFIG_FORMAT_SALESFORCE_OUTBOUND;
    else if (fmt)
        config_error(ctx, kp, "must be \"webhook\" or \"salesforce-outbound\", got \"%s\"", fmt);
    free(fmt);
    config_get_str(ctx, sobj, path, "organization_id", NULL, &src->organization_id);
    config_keypath(kp, sizeof kp, path, "organization_id");
    if (src->format == CONFIG_FORMAT_SALESFORCE_OUTBOUND) {
        if (!src->organization_id && !json_object_get(sobj, "organization_id"))
            config_error(ctx, kp, "is required for format salesforce-outbound");
        else if (src->organization_id && !config_valid_org_id(src->organization_id))
            config_error(ctx, kp,
                         "must be a Salesforce organization id (15 or 18 letters and "
                         "digits)");
    } else if (src->organization_id) {
        config_error(ctx, kp, "is only used with \"format\": \"salesforce-outbound\"");
    }
}

static bool config_valid_source_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64)
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return false;
    return true;
}

static void config_parse_sources(struct config_ctx *ctx, json_t *root)
{
    static const char *const keys[] = {"verify", "event_id",        "dedupe_window_s",
                                       "format", "organization_id", NULL};
    struct config *cfg = ctx->cfg;
    json_t *s = config_section(ctx, root, "sources");
    if (!s || json_object_size(s) == 0) {
        config_warn(ctx, "sources", "no sources configured: every webhook will be answered 404");
        return;
    }
    cfg->sources = calloc(json_object_size(s), sizeof *cfg->sources);
    if (!cfg->sources)
        return;
    const char *name;
    json_t *sobj;
    json_object_foreach(s, name, sobj)
    {
        char path[320];
        snprintf(path, sizeof path, "sources.%s", name);
        if (!config_valid_source_name(name)) {
            config_error(ctx, path, "source names are 1-64 characters of A-Z a-z 0-9 - _");
            continue;
        }
        if (!json_is_object(sobj)) {
            config_error(ctx, path, "must be an object");
            continue;
        }
        config_check_keys(ctx, sobj, path, keys);
        struct config_source *src = &cfg->sources[cfg->nsources++];
        src->name = strdup(name);
        char vpath[340];
        snprintf(vpath, sizeof vpath, "%s.verify", path);
        json_t *vobj = json_object_get(sobj, "verify");
        if (!vobj || !json_is_object(vobj))
            config_error(ctx, vpath, "is required and must be an object");
        else
            config_parse_verify(ctx, vobj, vpath, &src->verify);
        config_parse_event_id(ctx, sobj, path, src);
        config_get_int(ctx, sobj, path, "dedupe_window_s", 604800, 0, 86400LL * 3650,
                       &src->dedupe_window_s);
        config_parse_format(ctx, sobj, path, src);
    }
}

static void config_parse_admin(struct config_ctx *ctx, json_t *root)
{
    static const char *const keys[] = {"token", "viewer_token", NULL};
    json_t *s = config_section(ctx, root, "admin");
    if (!s)
        return;
    config_check_keys(ctx, s, "admin", keys);
    json_t *t = json_object_get(s, "token");
    if (t) {
        ctx->cfg->admin_token = config_secret(ctx, "admin.token", t, true);
        if (ctx->cfg->admin_token && strlen(ctx->cfg->admin_token) < 16)
            config_error(ctx, "admin.token", "must be at least 16 characters long");
    }
    json_t *vt = json_object_get(s, "viewer_token");
    if (vt) {
        ctx->cfg->admin_viewer_token = config_secret(ctx, "admin.viewer_token", vt, true);
        if (ctx->cfg->admin_viewer_token && strlen(ctx->cfg->admin_viewer_token) < 16)
            config_error(ctx, "admin.viewer_token", "must be at least 16 characters long");
        if (ctx->cfg->admin_viewer_token && ctx->cfg->admin_token &&
            strcmp(ctx->cfg->admin_viewer_token, ctx->cfg->admin_token) == 0)
            config_error(ctx, "admin.viewer_token", "must differ from admin.token");
    }
}

static void config_parse_audit(struct config_ctx *ctx, json_t *root)
{
    static const char *const keys[] = {"retention_days", "jsonl_path", NULL};
    struct config *cfg = ctx->cfg;
    json_t *s = config_section(ctx, root, "audit");
    if (s)
        config_check_keys(ctx, s, "audit", keys);
    cfg->audit_retention_days = config_get_int32(ctx, s, "audit", "retention_days", 365, 1, 36500);
    char *p = NULL;
    config_get_str(ctx, s, "audit", "jsonl_path", NULL, &p);
    if (p) {
        cfg->audit_jsonl_path = config_abs_path(cfg, p);
        free(p);
    }
}

static void config_parse_log(struct config_ctx *ctx, json_t *root)
{
    static const char *const keys[] = {"level", NULL};
    json_t *s = config_section(ctx, root, "log");
    if (s)
        config_check_keys(ctx, s, "log", keys);
    config_get_str(ctx, s, "log", "level", "info", &ctx->cfg->log_level);
    const char *l = ctx->cfg->log_level;
    if (l && strcmp(l, "debug") && strcmp(l, "info") && strcmp(l, "warn") && strcmp(l, "error"))
        config_error(ctx, "log.level", "must be debug, info, warn or error");
}

static void config_parse_instance(struct config_ctx *ctx, json_t *root)
{
    static const char *const keys[] = {"id", NULL};
    json_t *s = config_section(ctx, root, "instance");
    if (s)
        config_check_keys(ctx, s, "instance", keys);
    config_get_str(ctx, s, "instance", "id", NULL, &ctx->cfg->instance_id);
    const char *id = ctx->cfg->instance_id;
    if (!id)
        return;
    size_t n = strlen(id);
    bool ok = n > 0 && n <= CONFIG_INSTANCE_ID_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)id[i]) || strchr("._:-", id[i]) != NULL;
    if (!ok)
        config_error(ctx, "instance.id",
                     "must be 1 to 64 characters of letters, digits, '.', '_', ':' or '-'");
}

/* ---------- entry points ---------- */

/* Reads the whole config file; *mode gets its permission bits (0 when unknown). */
static char *config_read_file(const char *path, size_t *len, unsigned *mode, char *err,
                              size_t err_len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (!f) {
        snprintf(err, err_len, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    *mode = fstat(fileno(f), &st) == 0 ? (unsigned)(st.st_mode & 07777) : 0;
    buf = malloc(CONFIG_MAX_FILE_BYTES + 1);
    if (!buf) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    *len = fread(buf, 1, CONFIG_MAX_FILE_BYTES + 1, f);
    if (ferror(f)) {
        snprintf(err, err_len, "read error: %s", strerror(errno));
        goto fail;
    }
    if (*len > CONFIG_MAX_FILE_BYTES) {
        snprintf(err, err_len, "file larger than %u bytes", CONFIG_MAX_FILE_BYTES);
        goto fail;
    }
    buf[*len] = '\0';
    fclose(f);
    return buf;
fail:
    free(buf);
    fclose(f);
    return NULL;
}

struct config *config_load(const char *path, struct config_diags *diags)
{
    return config_load_opts(path, 0, diags);
}

/* Parses the config text[len] named name; dir (heap, absolute) is the directory
 * relative paths resolve against and is owned by the result (freed on failure).
 * file_mode: the permission bits of the file the text came from, 0 when none. */
static struct config *config_parse_text(const char *name, char *dir, const char *text, size_t len,
                                        unsigned file_mode, unsigned flags,
                                        struct config_diags *diags)
{
    struct config_ctx ctx = {0};
    ctx.flags = flags;
    ctx.file_mode = file_mode;
    struct config *cfg = calloc(1, sizeof *cfg);
    json_t *root = NULL;
    char err[256];

    ctx.diags = diags;
    ctx.file = name;
    ctx.cfg = cfg;
    if (!cfg) {
        free(dir);
        config_diag_add(diags, false, 0, "out of memory");
        return NULL;
    }
    cfg->dir = dir;
    cfg->path = strdup(name);
    if (!cfg->path || !cfg->dir) {
        config_diag_add(diags, false, 0, "out of memory");
        goto fail;
    }
    json_error_t jerr;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, sizeof err, "invalid JSON: %s", jerr.text);
        config_diag_add(diags, false, jerr.line > 0 ? jerr.line : 0, err);
        goto fail;
    }
    if (!json_is_object(root)) {
        config_diag_add(diags, false, 1, "the configuration must be a JSON object");
        goto fail;
    }
    struct config_scan sc = {text, 0, len, 1, &ctx};
    (void)config_scan_value(&sc, "", 0);

    static const char *const top[] = {"listen", "store", "didww", "delivery", "rules", "sources",
                                      "admin",  "audit", "log",   "instance", NULL};
    config_check_keys(&ctx, root, "", top);
    config_parse_listen(&ctx, root);
    config_parse_store(&ctx, root);
    config_parse_didww(&ctx, root);
    config_parse_delivery(&ctx, root);
    config_parse_rules(&ctx, root);
    config_parse_sources(&ctx, root);
    config_parse_admin(&ctx, root);
    config_parse_audit(&ctx, root);
    config_parse_log(&ctx, root);
    config_parse_instance(&ctx, root);
    const char *who = config_readable_by(ctx.file_mode);
    if (ctx.nliterals > 0 && who)
        config_warn(&ctx, NULL,
                    "the config file holds %s and is readable by %s (mode %04o): chmod 600 it, "
                    "or move the secrets to \"env:NAME\" or \"file:PATH\"",
                    ctx.nliterals == 1 ? "a literal secret" : "literal secrets", who,
                    ctx.file_mode);
    if (ctx.nerrors > 0)
        goto fail;

    json_decref(root);
    for (size_t i = 0; i < ctx.nlines; i++)
        free(ctx.lines[i].path);
    free(ctx.lines);
    return cfg;
fail:
    json_decref(root);
    for (size_t i = 0; i < ctx.nlines; i++)
        free(ctx.lines[i].path);
    free(ctx.lines);
    config_free(cfg);
    return NULL;
}

struct config *config_load_opts(const char *path, unsigned flags, struct config_diags *diags)
{
    char err[256];
    char *real = realpath(path, NULL);
    if (!real) {
        snprintf(err, sizeof err, "cannot open config file: %s", strerror(errno));
        config_diag_add(diags, false, 0, err);
        return NULL;
    }
    char *slash = strrchr(real, '/');
    if (slash == real)
        slash[1] = '\0';
    else
        *slash = '\0';
    size_t len = 0;
    unsigned mode = 0;
    char *text = config_read_file(path, &len, &mode, err, sizeof err);
    if (!text) {
        free(real);
        config_diag_add(diags, false, 0, err);
        return NULL;
    }
    struct config *cfg = config_parse_text(path, real, text, len, mode, flags, diags);
    free(text);
    return cfg;
}

struct config *config_load_text(const char *name, const char *dir, const char *text, size_t len,
                                unsigned flags, struct config_diags *diags)
{
    char *d = dir ? strdup(dir) : realpath(".", NULL);
    if (!d) {
        config_diag_add(diags, false, 0, "out of memory");
        return NULL;
    }
    if (len > CONFIG_MAX_FILE_BYTES) {
        free(d);
        char err[64];
        snprintf(err, sizeof err, "file larger than %u bytes", CONFIG_MAX_FILE_BYTES);
        config_diag_add(diags, false, 0, err);
        return NULL;
    }
    return config_parse_text(name ? name : "(memory)", d, text, len, 0, flags, diags);
}

const struct config_source *config_find_source(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nsources; i++)
        if (strcmp(cfg->sources[i].name, name) == 0)
            return &cfg->sources[i];
    return NULL;
}

size_t config_diags_print(const struct config_diags *diags, const char *path)
{
    size_t errors = 0;
    for (size_t i = 0; i < diags->n; i++) {
        const struct config_diag *g = &diags->items[i];
        if (g->line > 0)
            fprintf(stderr, "%s:%d: %s: %s\n", path, g->line, g->warning ? "warning" : "error",
                    g->msg);
        else
            fprintf(stderr, "%s: %s: %s\n", path, g->warning ? "warning" : "error", g->msg);
        if (!g->warning)
            errors++;
    }
    return errors;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    free(cfg->dir);
    free(cfg->listen_host);
    free(cfg->store_url);
    free(cfg->store_sqlite_path);
    config_free_secret(cfg->store_password);
    free(cfg->didww_base_url);
    config_free_secret(cfg->didww_api_key);
    free(cfg->didww_api_version);
    free(cfg->didww_auth_url);
    free(cfg->rules_script);
    free(cfg->rules_cases);
    for (size_t i = 0; i < cfg->nrules_data; i++) {
        free(cfg->rules_data[i].name);
        free(cfg->rules_data[i].path);
    }
    free(cfg->rules_data);
    for (size_t i = 0; i < cfg->nsources; i++) {
        free(cfg->sources[i].name);
        free(cfg->sources[i].event_id_arg);
        free(cfg->sources[i].organization_id);
        verify_config_free(&cfg->sources[i].verify);
    }
    free(cfg->sources);
    config_free_secret(cfg->admin_token);
    config_free_secret(cfg->admin_viewer_token);
    free(cfg->audit_jsonl_path);
    free(cfg->log_level);
    free(cfg->instance_id);
    free(cfg);
}

void config_diags_free(struct config_diags *diags)
{
    free(diags->items);
    diags->items = NULL;
    diags->n = diags->cap = 0;
}

int config_parse_duration(const char *text, int64_t *seconds)
{
    char *end;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    if (errno || end == text || n < 0)
        return -1;
    int64_t mult;
    if (strcmp(end, "s") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60;
    else if (strcmp(end, "h") == 0)
        mult = 3600;
    else if (strcmp(end, "d") == 0)
        mult = 86400;
    else
        return -1;
    if (n > INT64_MAX / mult)
        return -1;
    *seconds = n * mult;
    return 0;
}
