/*
 * audit: builds audit records (docs/contract.md section 6) and computes their hash chain.
 * A record is a jansson object; the store assigns seq and prev_hash inside its
 * write transaction and calls audit_chain_hash, so the chain stays correct under
 * concurrent writers. Pure functions; any thread may call them. A record must
 * never carry a secret: callers pass only names, ids, statuses and reasons.
 */
#ifndef HOOKLINE_AUDIT_H
#define HOOKLINE_AUDIT_H

#include <jansson.h>
#include <stdint.h>

#define AUDIT_HASH_HEX_LEN 64
/* prev_hash of the first record of a chain. */
#define AUDIT_GENESIS_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* A new record {"time", "kind", "source", "event_id", "detail": {}}; source and
 * event_id may be NULL (then omitted). time is now, RFC 3339 UTC with
 * milliseconds; detail.instance is the process's instance id when one was set
 * (audit_set_instance). Returns a new reference (caller owns), or NULL on out
 * of memory. */
json_t *audit_record_new(const char *kind, const char *source, const char *event_id);

/* Sets the instance id every later audit_record_new puts in detail.instance
 * (id borrowed, copied; NULL or "": none). `serve` calls it before threads
 * start; CLI commands leave it unset. */
void audit_set_instance(const char *id);

/* Sets detail.key to a string value (copied); no-op on a NULL record or value. */
void audit_detail_set_str(json_t *record, const char *key, const char *value);

/* Sets detail.key to an integer. */
void audit_detail_set_int(json_t *record, const char *key, long long value);

/* Canonical JSON of record without its "hash" member: compact, keys sorted,
 * ASCII-escaped. Returns a new heap string (caller frees) or NULL. */
char *audit_canonical(const json_t *record);

/* hash = hex(SHA-256(prev_hash "\n" canonical)). Writes 64 hex chars + NUL. */
void audit_chain_hash(const char *prev_hash, const char *canonical,
                      char out[AUDIT_HASH_HEX_LEN + 1]);

/* Seals a record: sets seq and prev_hash, computes hash, sets it. Returns a new
 * heap string with the record's final JSON (caller frees), the new hash in
 * out_hash, or NULL on out of memory. */
char *audit_seal(json_t *record, int64_t seq, const char *prev_hash,
                 char out_hash[AUDIT_HASH_HEX_LEN + 1]);

/* Checks one stored record (its JSON text) against the expected seq and
 * prev_hash. Returns 0 when intact, or -1 with a reason in why[why_len] (also
 * for a text that gives a key twice: readers could disagree on its value). On
 * success writes the record's hash to out_hash. */
int audit_check(const char *json_text, int64_t expect_seq, const char *expect_prev,
                char out_hash[AUDIT_HASH_HEX_LEN + 1], char *why, size_t why_len);

/* Formats t (Unix seconds, fractional) as "2026-11-22T10:15:03.123Z" into out[32]. */
void audit_format_time(double t, char out[32]);

#endif
