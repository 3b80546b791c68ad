/*
 * config: loads and validates hookline's JSON configuration (docs/contract.md section 2).
 * Unknown keys, wrong types and out-of-range values are reported by key path and
 * line; every problem is collected, not just the first. Secrets written as
 * "env:NAME" or "file:PATH" are resolved here; relative paths are made absolute
 * against the config file's directory. Called once at start-up (main thread).
 */
#ifndef HOOKLINE_CONFIG_H
#define HOOKLINE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "verify.h"

/* didww.api_version when unset: the version DIDWW's official SDKs send (README). */
#define CONFIG_DIDWW_DEFAULT_VERSION "2026-04-16"

enum config_event_id {
    CONFIG_EVENT_ID_DEFAULT = 0,
    CONFIG_EVENT_ID_HEADER,
    CONFIG_EVENT_ID_JSON,
    CONFIG_EVENT_ID_BODY_SHA256
};

/* How a source's bodies are read (sources.NAME.format). */
enum config_format {
    CONFIG_FORMAT_WEBHOOK = 0,        /* JSON or form, by Content-Type (default) */
    CONFIG_FORMAT_SALESFORCE_OUTBOUND /* Salesforce Outbound Messages: SOAP text/xml, acked */
};

struct config_source {
    char *name;
    enum config_format format;
    char *organization_id; /* salesforce-outbound: the expected OrganizationId */
    struct verify_config verify;
    enum config_event_id event_id;
    char *event_id_arg;      /* header name (lower case) or JSON pointer; NULL otherwise */
    int64_t dedupe_window_s; /* default 604800 */
};

struct config_data_file {
    char *name;
    char *path; /* absolute */
};

struct config {
    char *path; /* the config file as given */
    char *dir;  /* its directory, absolute */

    char *listen_host;
    int listen_port;
    size_t max_body_bytes;
    int listen_threads;                     /* 0: one per core */
    int listen_max_connections;             /* open client connections in all */
    int listen_max_connections_per_address; /* from one peer address; 0: unbounded */
    int listen_header_timeout_ms; /* a head complete after connect or the previous answer */
    int listen_body_timeout_ms;   /* a whole body after its head */
    int listen_idle_timeout_s;    /* no byte either way for this long closes a connection */
    bool listen_keep_alive;       /* false: every answer closes its connection */

    char *store_url;         /* as written */
    char *store_sqlite_path; /* absolute, for sqlite: URLs; NULL otherwise */
    char *store_password;    /* PostgreSQL: resolved store.password, NULL: libpq's own */
    int store_busy_timeout_ms;
    int store_queue_max;       /* operations waiting for a commit before 503 */
    int store_batch_max;       /* operations in one group commit */
    int store_dedupe_max_keys; /* event keys held in memory for deduplication */

    char *didww_base_url;
    char *didww_api_key; /* secret; NULL when its env var is unset (delivery disabled) */
    char *didww_api_version;
    char *didww_auth_url;       /* token endpoint for 2026-11-19 (derived from base_url if unset) */
    int didww_token_expires_in; /* seconds asked for a bearer token, 60..3600 */
    int didww_rate_limit_per_s;
    int didww_timeout_ms;

    int delivery_workers;
    int delivery_max_attempts;
    int64_t delivery_backoff_initial_ms;
    int64_t delivery_backoff_max_ms;
    bool delivery_skip_noop;
    int delivery_idle_poll_ms;        /* an idle worker looks for due jobs this often */
    int delivery_max_in_flight;       /* cap on workers sending at once (Little's law) */
    int delivery_batch_size;          /* jobs claimed per round, their DIDs read in one list */
    int delivery_batch_page_size;     /* page[size] of those list reads (DIDWW: <= 100) */
    int delivery_prefetch_max_age_ms; /* a before-state older than this is read again */

    char *rules_script; /* absolute; NULL when not configured */
    char *rules_cases;  /* rules.cases: operator test cases (absolute); NULL when not set */
    struct config_data_file *rules_data;
    size_t nrules_data;
    int64_t rules_instruction_limit;
    int64_t rules_memory_limit_bytes;

    struct config_source *sources;
    size_t nsources;

    char *admin_token;        /* secret; NULL disables the admin API (every /v1 call is 401) */
    char *admin_viewer_token; /* secret; read-only role of the admin API and the console */

    int audit_retention_days;
    char *audit_jsonl_path; /* absolute or NULL */

    char *log_level;

    /* instance.id: this process's name among the instances sharing a store (log
     * lines, audit detail.instance, metrics, /readyz); NULL: hostname-pid. */
    char *instance_id;
};

/* The longest instance.id. */
#define CONFIG_INSTANCE_ID_MAX 64

/* One problem found while loading. */
struct config_diag {
    bool warning;  /* false: error */
    int line;      /* 0 when unknown */
    char msg[320]; /* "sources.zendesk.verify.secret: environment variable X is not set" */
};

struct config_diags {
    struct config_diag *items;
    size_t n, cap;
};

/* Flags of config_load_opts. */
#define CONFIG_LOAD_NO_SECRETS 1u /* readers of the store (audit): secrets are not resolved */

/* Loads path into a new config. Returns the config (caller frees with
 * config_free) when there is no error, else NULL; every error and warning is
 * appended to diags (caller frees with config_diags_free) either way. */
struct config *config_load(const char *path, struct config_diags *diags);

/* config_load with flags (CONFIG_LOAD_NO_SECRETS: env:/file: secrets are left
 * unresolved and unchecked; the result must not be used to serve). */
struct config *config_load_opts(const char *path, unsigned flags, struct config_diags *diags);

/* Parses a config from memory: text[len] (need not be NUL-terminated) named name
 * in diagnostics (NULL: "(memory)"), relative paths resolved against dir (an
 * absolute directory; NULL: the current one). Otherwise as config_load_opts; the
 * text has no file mode, so no permission warning is given for it. */
struct config *config_load_text(const char *name, const char *dir, const char *text, size_t len,
                                unsigned flags, struct config_diags *diags);

/* Looks up a source by name. Returns a borrowed pointer valid for cfg's life, or NULL. */
const struct config_source *config_find_source(const struct config *cfg, const char *name);

/* Prints each diag as "file:line: error: msg" to stderr; returns the error count. */
size_t config_diags_print(const struct config_diags *diags, const char *path);

/* Frees cfg and everything it owns (secrets wiped first). NULL is a no-op. */
void config_free(struct config *cfg);

/* Frees the diag list (not the struct itself). */
void config_diags_free(struct config_diags *diags);

/* Parses a duration "15m", "2h", "7d", "30s" into seconds. Returns 0 or -1. */
int config_parse_duration(const char *text, int64_t *seconds);

#endif
