/*
 * audit: record construction and the SHA-256 hash chain. Each record's hash
 * covers the previous record's hash and its own canonical JSON (keys sorted,
 * compact, ASCII), so editing, inserting or deleting any stored record breaks
 * the chain at that point. Holds no state; the store serialises appends.
 */
#include "audit.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "digest.h"

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
    json_object_set_new(r, "detail", json_object());
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

/* A growable output buffer for the canonical serialiser. */
struct audit_buf {
    char *p;
    size_t len, cap;
    bool failed; /* out of memory, or a value the fast path does not handle */
};

static void audit_buf_put(struct audit_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Decodes one UTF-8 sequence at s[0..n); returns its length (0 when invalid:
 * overlong, surrogate, above U+10FFFF, truncated) and the code point. */
static size_t audit_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/* A JSON string, ASCII only: the same bytes jansson writes with
 * JSON_ENSURE_ASCII (short escapes for \b \f \n \r \t " \\, \u00XX for other
 * control characters, \uXXXX upper-case hex and surrogate pairs above ASCII). */
static void audit_put_string(struct audit_buf *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;
    audit_buf_put(b, "\"", 1);
    while (i < n) {
        unsigned c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        audit_buf_put(b, str + run, i - run);
        uint32_t cp;
        size_t len = audit_utf8_next(s + i, n - i, &cp);
        if (len == 0) {
            b->failed = true; /* not UTF-8: jansson decides (it refuses too) */
            return;
        }
        i += len;
        run = i;
        char esc[13];
        size_t k = 0;
        switch (cp) {
        case '"':
            esc[k++] = '\\', esc[k++] = '"';
            break;
        case '\\':
            esc[k++] = '\\', esc[k++] = '\\';
            break;
        case '\b':
            esc[k++] = '\\', esc[k++] = 'b';
            break;
        case '\f':
            esc[k++] = '\\', esc[k++] = 'f';
            break;
        case '\n':
            esc[k++] = '\\', esc[k++] = 'n';
            break;
        case '\r':
            esc[k++] = '\\', esc[k++] = 'r';
            break;
        case '\t':
            esc[k++] = '\\', esc[k++] = 't';
            break;
        default: {
            uint32_t units[2] = {cp, 0};
            int nu = 1;
            if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;
                units[0] = 0xD800 | (v >> 10);
                units[1] = 0xDC00 | (v & 0x3FF);
                nu = 2;
            }
            for (int u = 0; u < nu; u++) {
                esc[k++] = '\\', esc[k++] = 'u';
                for (int sh = 12; sh >= 0; sh -= 4)
                    esc[k++] = hex[(units[u] >> sh) & 0xF];
            }
        }
        }
        audit_buf_put(b, esc, k);
    }
    audit_buf_put(b, str + run, n - run);
    audit_buf_put(b, "\"", 1);
}

struct audit_member {
    const char *key;
    size_t len;
    json_t *value;
};

static int audit_member_cmp(const void *a, const void *b)
{
    const struct audit_member *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

#define AUDIT_CANON_MAX_DEPTH 32  /* records are two levels deep */
#define AUDIT_CANON_STACK_KEYS 32 /* members sorted without an allocation */

static void audit_put_value(struct audit_buf *b, json_t *v, const char *skip, int depth)
{
    char num[32];
    if (b->failed)
        return;
    if (depth > AUDIT_CANON_MAX_DEPTH) {
        b->failed = true;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        struct audit_member stack[AUDIT_CANON_STACK_KEYS];
        struct audit_member *m = stack;
        size_t cap = json_object_size(v), n = 0;
        if (cap > AUDIT_CANON_STACK_KEYS) {
            m = malloc(cap * sizeof *m);
            if (!m) {
                b->failed = true;
                return;
            }
        }
        const char *key;
        size_t klen;
        json_t *val;
        void *tmp;
        json_object_keylen_foreach_safe(v, tmp, key, klen, val)
        {
            if (skip && strcmp(key, skip) == 0)
                continue;
            if (n < cap)
                m[n++] = (struct audit_member){key, klen, val};
        }
        qsort(m, n, sizeof *m, audit_member_cmp);
        audit_buf_put(b, "{", 1);
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                audit_buf_put(b, ",", 1);
            audit_put_string(b, m[i].key, m[i].len);
            audit_buf_put(b, ":", 1);
            audit_put_value(b, m[i].value, NULL, depth + 1);
        }
        audit_buf_put(b, "}", 1);
        if (m != stack)
            free(m);
        return;
    }
    case JSON_ARRAY:
        audit_buf_put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i > 0)
                audit_buf_put(b, ",", 1);
            audit_put_value(b, json_array_get(v, i), NULL, depth + 1);
        }
        audit_buf_put(b, "]", 1);
        return;
    case JSON_STRING:
        audit_put_string(b, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER: {
        int n = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        audit_buf_put(b, num, (size_t)n);
        return;
    }
    case JSON_TRUE:
        audit_buf_put(b, "true", 4);
        return;
    case JSON_FALSE:
        audit_buf_put(b, "false", 5);
        return;
    case JSON_NULL:
        audit_buf_put(b, "null", 4);
        return;
    default: /* reals: jansson's own formatting decides */
        b->failed = true;
        return;
    }
}

/* The canonical text of record without its member named skip (NULL: all).
 * Byte-identical to json_dumps(JSON_COMPACT | JSON_SORT_KEYS |
 * JSON_ENSURE_ASCII), which stays the reference: records the fast path does
 * not handle (reals, invalid UTF-8, deep nesting) go through jansson. */
static char *audit_dump_canonical(json_t *record, const char *skip)
{
    struct audit_buf b = {0};
    audit_put_value(&b, record, skip, 0);
    if (!b.failed && b.p)
        return b.p;
    free(b.p);
    json_t *copy = json_copy(record);
    if (!copy)
        return NULL;
    if (skip)
        json_object_del(copy, skip);
    char *s = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    json_decref(copy);
    return s;
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
    json_t *r = json_loads(json_text, 0, &jerr);
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
