/*
 * audit: record construction and the SHA-256 hash chain. Each record's hash
 * covers the previous record's hash and its own canonical JSON (keys sorted,
 * compact, ASCII), so editing, inserting or deleting any stored record breaks
 * the chain at that point. Holds no state; the store serialises appends.
 */
#include "audit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "digest.h"
#include "jout.h"

void audit_format_time(double t, char out[32])
{
    /* Round to whole milliseconds first: 0.123 s is stored as 0.12299999... */
    long long total_ms = llround(t * 1000.0);
    time_t secs = (time_t)(total_ms / 1000);
    long ms = (long)(total_ms % 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ms);
}

/* Set before threads start, read-only afterwards. */
static char audit_instance[80];

void audit_set_instance(const char *id)
{
    snprintf(audit_instance, sizeof audit_instance, "%s", id ? id : "");
}

json_t *audit_record_new(const char *kind, const char *source, const char *event_id)
{
    struct timeval tv;
    char ts[32];
    gettimeofday(&tv, NULL);
    audit_format_time((double)tv.tv_sec + tv.tv_usec / 1e6, ts);
    json_t *r = json_object();
    if (!r)
        return NULL;
    json_object_set_new(r, "time", json_string(ts));
    json_object_set_new(r, "kind", json_string(kind));
    if (source)
        json_object_set_new(r, "source", json_string(source));
    if (event_id)
        json_object_set_new(r, "event_id", json_string(event_id));
    json_t *detail = json_object();
    if (detail && audit_instance[0])
        json_object_set_new(detail, "instance", json_string(audit_instance));
    json_object_set_new(r, "detail", detail);
    return r;
}

void audit_detail_set_str(json_t *record, const char *key, const char *value)
{
    if (!record || !value)
        return;
    json_t *d = json_object_get(record, "detail");
    if (d)
        json_object_set_new(d, key, json_string(value));
}

void audit_detail_set_int(json_t *record, const char *key, long long value)
{
    if (!record)
        return;
    json_t *d = json_object_get(record, "detail");
    if (d)
        json_object_set_new(d, key, json_integer(value));
}

/* The canonical text of record without its member named skip: compact, keys
 * sorted, ASCII. jout writes exactly what json_dumps(JSON_COMPACT |
 * JSON_SORT_KEYS | JSON_ENSURE_ASCII) writes, which hashed the chains written
 * before it existed. */
static char *audit_dump_canonical(json_t *record, const char *skip)
{
    struct jout_opts opts = {.ascii = true, .skip = skip};
    return jout_dump_sorted(record, &opts);
}

char *audit_canonical(const json_t *record)
{
    return audit_dump_canonical((json_t *)record, "hash");
}

void audit_chain_hash(const char *prev_hash, const char *canonical,
                      char out[AUDIT_HASH_HEX_LEN + 1])
{
    unsigned char md[32];
    digest_sha256_parts(prev_hash, strlen(prev_hash), "\n", 1, canonical, strlen(canonical), md);
    digest_hex_encode(md, sizeof md, out);
}

char *audit_seal(json_t *record, int64_t seq, const char *prev_hash,
                 char out_hash[AUDIT_HASH_HEX_LEN + 1])
{
    json_object_set_new(record, "seq", json_integer(seq));
    json_object_set_new(record, "prev_hash", json_string(prev_hash));
    char *canon = audit_dump_canonical(record, "hash");
    if (!canon)
        return NULL;
    audit_chain_hash(prev_hash, canon, out_hash);
    json_object_set_new(record, "hash", json_string(out_hash));
    /* The stored text is the canonical form with "hash" appended last: one
     * serialisation per record. audit_check re-canonicalises, so member order in
     * the stored text does not matter. */
    size_t n = strlen(canon);
    char *text = realloc(canon, n + AUDIT_HASH_HEX_LEN + 12);
    if (!text) {
        free(canon);
        return NULL;
    }
    if (n > 2)
        snprintf(text + n - 1, AUDIT_HASH_HEX_LEN + 13, ",\"hash\":\"%s\"}", out_hash);
    else
        snprintf(text + n - 1, AUDIT_HASH_HEX_LEN + 13, "\"hash\":\"%s\"}", out_hash);
    return text;
}

int audit_check(const char *json_text, int64_t expect_seq, const char *expect_prev,
                char out_hash[AUDIT_HASH_HEX_LEN + 1], char *why, size_t why_len)
{
    json_error_t jerr;
    int rc = -1;
    char *canon = NULL;
    /* A key given twice would let a reader that keeps the first value (SQLite's
     * json_extract, which checks the stored columns) and one that keeps the last
     * (jansson, which hashes) see different records behind one valid hash. */
    json_t *r = json_loads(json_text, JSON_REJECT_DUPLICATES, &jerr);
    if (!r && strstr(jerr.text, "duplicate")) {
        snprintf(why, why_len, "record has a key twice (the record was edited)");
        goto out;
    }
    if (!r || !json_is_object(r)) {
        snprintf(why, why_len, "record is not valid JSON");
        goto out;
    }
    json_t *seq = json_object_get(r, "seq");
    const char *prev = json_string_value(json_object_get(r, "prev_hash"));
    const char *hash = json_string_value(json_object_get(r, "hash"));
    if (!json_is_integer(seq) || json_integer_value(seq) != expect_seq) {
        snprintf(why, why_len, "sequence number is %lld, expected %lld",
                 seq ? (long long)json_integer_value(seq) : -1LL, (long long)expect_seq);
        goto out;
    }
    if (!prev || strcmp(prev, expect_prev) != 0) {
        snprintf(why, why_len,
                 "prev_hash does not match the previous record's hash "
                 "(a record before it was deleted, inserted or edited)");
        goto out;
    }
    canon = audit_canonical(r);
    if (!canon) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    audit_chain_hash(prev, canon, out_hash);
    if (!hash || strcmp(hash, out_hash) != 0) {
        snprintf(why, why_len, "hash does not match the record's content (the record was edited)");
        goto out;
    }
    rc = 0;
out:
    free(canon);
    json_decref(r);
    return rc;
}
