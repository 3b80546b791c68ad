/*
 * fuzz_config: config parsing (config_load_text, the in-memory form of
 * config_load) on hostile config text: the schema walk, the key-path -> line
 * scanner, secret resolution (env: and file:), verify blocks (verify_prepare),
 * durations. The relative paths of the config resolve against a temporary
 * directory that holds a few secret, rules and data files, and the variables of
 * the example config (conf/hookline.json) are set, so realistic configs load.
 *
 * Input: the config text (JSON). Each input is loaded twice: without resolving
 * secrets (as the audit readers do) and, unless the text could name a device or
 * kernel file for a file: secret (a read could block), with them.
 * Invariants: no crash, leak or UB; a config that loads finds each of its sources
 * by name and has an absolute store path; no diagnostic holds a secret value that
 * the input itself did not contain.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fuzz_util.h"

static char fuzz_dir[256];

/* Secret values the environment and files give; no diagnostic may show one. */
static const char *const fuzz_secrets[] = {"zendesk-fuzz-Secret-1",
                                           "hubspot-fuzz-Secret-2",
                                           "zapierFuzzToken3",
                                           "freshdeskFuzzPassword4",
                                           "adminFuzzToken-0123456789abcdef",
                                           "didwwFuzzKey5",
                                           "fileFuzzSecret-6",
                                           NULL};

static void write_file(const char *name, const char *text, mode_t mode)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        abort();
    chmod(path, mode);
}

/* What LLVMFuzzerInitialize makes under fuzz_dir, children before parents. */
static const char *const fuzz_files[] = {"rules/main.lua",
                                         "rules/teams.json",
                                         "secrets/token.txt",
                                         "secrets/open.txt",
                                         "secrets/blank.txt",
                                         "secrets/crm.key",
                                         "rules",
                                         "secrets",
                                         NULL};

static void remove_fuzz_dir(void)
{
    char path[512];
    for (size_t i = 0; fuzz_files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", fuzz_dir, fuzz_files[i]);
        remove(path);
    }
    rmdir(fuzz_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/hl-fuzz-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fuzz_dir))
        abort();
    char sub[300];
    snprintf(sub, sizeof sub, "%s/rules", fuzz_dir);
    mkdir(sub, 0700);
    snprintf(sub, sizeof sub, "%s/secrets", fuzz_dir);
    mkdir(sub, 0700);
    write_file("rules/main.lua", "return function(event) return {} end\n", 0644);
    write_file("rules/teams.json", "{\"support\": [\"+4371234567\"]}\n", 0644);
    write_file("secrets/token.txt", "fileFuzzSecret-6 \r\nsecond line\n", 0600);
    write_file("secrets/open.txt", "fileFuzzSecret-6\n", 0644);
    write_file("secrets/blank.txt", " \t\r\n", 0600);
    write_file("secrets/crm.key", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", 0600);
    setenv("ZENDESK_SECRET", fuzz_secrets[0], 1);
    setenv("HUBSPOT_SECRET", fuzz_secrets[1], 1);
    setenv("ZAPIER_TOKEN", fuzz_secrets[2], 1);
    setenv("FRESHDESK_PASSWORD", fuzz_secrets[3], 1);
    setenv("HOOKLINE_ADMIN_TOKEN", fuzz_secrets[4], 1);
    setenv("DIDWW_API_KEY", fuzz_secrets[5], 1);
    setenv("CRM_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1);
    unsetenv("HOOKLINE_DIDWW_BASE_URL");
    atexit(remove_fuzz_dir);
    return 0;
}

/* False when the text could make a file: secret open a device, a kernel file or a
 * FIFO under /run (an escape could spell any path, so none is allowed either). */
static bool safe_to_resolve(const uint8_t *data, size_t size)
{
    static const char *const bad[] = {"/dev", "/proc", "/sys", "/run", NULL};
    if (memchr(data, '\\', size))
        return false;
    for (size_t i = 0; bad[i]; i++)
        if (memmem(data, size, bad[i], strlen(bad[i])))
            return false;
    return true;
}

static void check_loaded(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->nsources; i++)
        fuzz_check(config_find_source(cfg, cfg->sources[i].name) != NULL,
                   "source %zu not found by its name", i);
    fuzz_check(!cfg->store_sqlite_path || cfg->store_sqlite_path[0] == '/',
               "store path is not absolute");
    fuzz_check(!cfg->rules_script || cfg->rules_script[0] == '/', "rules path is not absolute");
}

static void check_diags(const struct config_diags *d, const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < d->n; i++) {
        const char *msg = d->items[i].msg;
        fuzz_check(memchr(msg, '\0', sizeof d->items[i].msg) != NULL, "diag not terminated");
        for (size_t k = 0; fuzz_secrets[k]; k++)
            fuzz_check(!strstr(msg, fuzz_secrets[k]) ||
                           memmem(data, size, fuzz_secrets[k], strlen(fuzz_secrets[k])),
                       "a diagnostic shows a secret: %s", msg);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config_diags d = {0};
    struct config *cfg = config_load_text("fuzz.json", fuzz_dir, (const char *)data, size,
                                          CONFIG_LOAD_NO_SECRETS, &d);
    if (cfg)
        check_loaded(cfg);
    check_diags(&d, data, size);
    config_free(cfg);
    config_diags_free(&d);

    if (safe_to_resolve(data, size)) {
        cfg = config_load_text("fuzz.json", fuzz_dir, (const char *)data, size, 0, &d);
        if (cfg)
            check_loaded(cfg);
        check_diags(&d, data, size);
        config_free(cfg);
        config_diags_free(&d);
    }

    if (size < 32) {
        char *s = fuzz_strndup(data, size);
        int64_t secs;
        if (config_parse_duration(s, &secs) == 0)
            fuzz_check(secs >= 0, "negative duration from \"%s\"", s);
        free(s);
    }
    return 0;
}
