/*
 * cli: the offline commands of docs/contract.md section 1 that read the config and the
 * store without running the service: `check`, `audit` and `audit verify`.
 * Each returns the process exit code (0 ok, 1 the command's own failure,
 * 2 usage). Main thread only.
 */
#ifndef HOOKLINE_CLI_H
#define HOOKLINE_CLI_H

#include <stddef.h>

/* argv[0] is the command name ("check", "audit", "rule-test"). */
int cli_check(int argc, char **argv);
int cli_audit(int argc, char **argv);
int cli_rule_test(int argc, char **argv);
int cli_events(int argc, char **argv);
int cli_jobs(int argc, char **argv);

struct config;
struct rules;

/* Creates the rule engine the config names. Returns 0 with *out set (NULL when
 * the config has no rules.script), or -1 with "file:line: message" in err. */
int cli_rules_create(const struct config *cfg, struct rules **out, char *err, size_t err_len);

/* Loads the config at path, printing its errors to stderr, and its warnings too
 * when warnings is non-NULL (then set to their count). Returns a new
 * config (caller frees with config_free) or NULL when it has errors. */
struct config *cli_load_config(const char *path, int *warnings);

/* What cli_dev_secrets_load did. */
struct cli_dev_secrets {
    char path[4200];    /* the file looked at */
    char names[1024];   /* the variables taken from it, ", "-separated; never values */
    int count;          /* how many */
    char warning[4400]; /* why the file was ignored (return -1) */
};

/* Development secrets: scripts/run.sh generates the secrets conf/hookline.json
 * names into var/dev-secrets.env beside the config's directory (for
 * $repo/conf/hookline.json: $repo/var/dev-secrets.env), which a new shell does not
 * have. For every "env:NAME" in the config at config_path whose NAME is unset or
 * empty, takes NAME from that file (setenv), but only when the file is a regular
 * file (not a symlink) owned by this user with no group/other permission bits.
 * Call before threads start. Returns the number of variables set (names in
 * out->names, the file in out->path), 0 when there is no such file or nothing to
 * take, or -1 when the file exists but was ignored (out->warning says why). */
int cli_dev_secrets_load(const char *config_path, struct cli_dev_secrets *out);

/* Writes the store URL cfg names into out[len]: the absolute "sqlite:PATH" of a
 * SQLite store, the URI as written for PostgreSQL. */
void cli_store_url(const struct config *cfg, char *out, size_t len);

/* Creates the directory that will hold the SQLite file of url, if missing. */
int cli_prepare_store_dir(const char *sqlite_path);

#endif
