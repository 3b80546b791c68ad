/*
 * jout: JSON text written straight into a growable buffer (see jout.h). The
 * formatting rules copy jansson's dump exactly, so text written here and text
 * written by json_dumps hash the same; tests/unit/test_jout.c holds the two
 * against each other.
 */
#include "jout.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOUT_FIRST_CAP 512
#define JOUT_STACK_MEMBERS 32 /* objects up to this size are sorted without malloc */

void jout_raw(struct jout *o, const char *s, size_t n)
{
    if (o->failed)
        return;
    if (n >= SIZE_MAX / 2 - o->len) {
        o->failed = true;
        return;
    }
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : JOUT_FIRST_CAP;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->failed = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

void jout_cstr(struct jout *o, const char *s)
{
    jout_raw(o, s, strlen(s));
}

void jout_int(struct jout *o, long long v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%lld", v);
    jout_raw(o, num, (size_t)n);
}

/* Decodes one UTF-8 sequence at s[0..n); returns its length, or 0 when it is
 * invalid (overlong, a surrogate, above U+10FFFF, truncated). */
static size_t jout_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
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

/* The escape sequence for cp into esc (at least 13 bytes); returns its length. */
static size_t jout_escape(uint32_t cp, char *esc)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    char short_esc = 0;
    switch (cp) {
    case '"':
        short_esc = '"';
        break;
    case '\\':
        short_esc = '\\';
        break;
    case '\b':
        short_esc = 'b';
        break;
    case '\f':
        short_esc = 'f';
        break;
    case '\n':
        short_esc = 'n';
        break;
    case '\r':
        short_esc = 'r';
        break;
    case '\t':
        short_esc = 't';
        break;
    default:
        break;
    }
    if (short_esc) {
        esc[0] = '\\';
        esc[1] = short_esc;
        return 2;
    }
    uint32_t units[2] = {cp, 0};
    int nu = 1;
    if (cp >= 0x10000) {
        uint32_t v = cp - 0x10000;
        units[0] = 0xD800 | (v >> 10);
        units[1] = 0xDC00 | (v & 0x3FF);
        nu = 2;
    }
    for (int u = 0; u < nu; u++) {
        esc[k++] = '\\';
        esc[k++] = 'u';
        for (int sh = 12; sh >= 0; sh -= 4)
            esc[k++] = hex[(units[u] >> sh) & 0xF];
    }
    return k;
}

void jout_string(struct jout *o, const char *str, size_t n, bool ascii)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;
    jout_raw(o, "\"", 1);
    while (i < n && !o->failed) {
        unsigned c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = jout_utf8_next(s + i, n - i, &cp);
        if (len == 0) {
            o->failed = true;
            return;
        }
        if (cp >= 0x80 && !ascii) { /* valid UTF-8 stays as it is */
            i += len;
            continue;
        }
        jout_raw(o, str + run, i - run);
        i += len;
        run = i;
        char esc[13];
        jout_raw(o, esc, jout_escape(cp, esc));
    }
    jout_raw(o, str + run, n - run);
    jout_raw(o, "\"", 1);
}

struct jout_member {
    const char *key;
    size_t len;
    json_t *value;
};

/* jansson's key order: bytes, then the shorter key first. */
static int jout_member_cmp(const void *a, const void *b)
{
    const struct jout_member *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Sets o->failed (without touching the text) for values jansson must format. */
static void jout_value(struct jout *o, json_t *v, const struct jout_opts *opts, int depth)
{
    if (o->failed)
        return;
    if (depth > JOUT_MAX_DEPTH) {
        o->failed = true;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        struct jout_member stack[JOUT_STACK_MEMBERS];
        struct jout_member *m = stack;
        size_t cap = json_object_size(v), n = 0;
        if (cap > JOUT_STACK_MEMBERS) {
            m = malloc(cap * sizeof *m);
            if (!m) {
                o->failed = true;
                return;
            }
        }
        const char *key;
        size_t klen;
        json_t *val;
        void *tmp;
        json_object_keylen_foreach_safe(v, tmp, key, klen, val)
        {
            if (depth == 0 && opts->skip && strcmp(key, opts->skip) == 0)
                continue;
            if (n < cap)
                m[n++] = (struct jout_member){key, klen, val};
        }
        qsort(m, n, sizeof *m, jout_member_cmp);
        jout_raw(o, "{", 1);
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                jout_raw(o, ",", 1);
            jout_string(o, m[i].key, m[i].len, opts->ascii);
            jout_raw(o, ":", 1);
            if (depth == 0 && opts->replace && opts->replace(m[i].key, opts->ctx))
                jout_string(o, opts->replacement, strlen(opts->replacement), opts->ascii);
            else
                jout_value(o, m[i].value, opts, depth + 1);
        }
        jout_raw(o, "}", 1);
        if (m != stack)
            free(m);
        return;
    }
    case JSON_ARRAY:
        jout_raw(o, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i > 0)
                jout_raw(o, ",", 1);
            jout_value(o, json_array_get(v, i), opts, depth + 1);
        }
        jout_raw(o, "]", 1);
        return;
    case JSON_STRING:
        jout_string(o, json_string_value(v), json_string_length(v), opts->ascii);
        return;
    case JSON_INTEGER:
        jout_int(o, (long long)json_integer_value(v));
        return;
    case JSON_TRUE:
        jout_raw(o, "true", 4);
        return;
    case JSON_FALSE:
        jout_raw(o, "false", 5);
        return;
    case JSON_NULL:
        jout_raw(o, "null", 4);
        return;
    default: /* reals: jansson's own formatting decides */
        o->failed = true;
        return;
    }
}

/* The reference path: a copy with opts applied, dumped by jansson. */
static char *jout_dump_jansson(json_t *v, const struct jout_opts *opts)
{
    json_t *copy = json_deep_copy(v);
    char *s = NULL;
    if (!copy)
        return NULL;
    if (json_is_object(copy)) {
        const char *key;
        json_t *val;
        void *tmp;
        json_object_foreach_safe(copy, tmp, key, val)
        {
            if (opts->skip && strcmp(key, opts->skip) == 0)
                json_object_del(copy, key);
            else if (opts->replace && opts->replace(key, opts->ctx) &&
                     json_object_set_new(copy, key, json_string(opts->replacement)) != 0)
                goto out;
        }
    }
    s = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS | (opts->ascii ? JSON_ENSURE_ASCII : 0));
out:
    json_decref(copy);
    return s;
}

char *jout_dump_sorted(json_t *v, const struct jout_opts *opts)
{
    static const struct jout_opts none = {0};
    if (!opts)
        opts = &none;
    struct jout o = {0};
    jout_value(&o, v, opts, 0);
    if (!o.failed && o.p)
        return o.p;
    free(o.p);
    return jout_dump_jansson(v, opts);
}
