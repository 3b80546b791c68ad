/*
 * jdoc: the flat JSON document (see jdoc.h). One iterative pass over the text:
 * an explicit stack of open containers instead of recursion (the nesting bound
 * is the caller's, not the thread's stack), a node array that doubles as it
 * grows (nodes are addressed by index, so growth never invalidates anything),
 * and a string arena sized once to the text length, which unescaped strings
 * can never exceed. UTF-8 is checked once over the whole text before parsing;
 * outside strings any byte >= 0x80 is a syntax error anyway.
 */
#include "jdoc.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest number text converted through a stack buffer; longer ones use the heap. */
#define JDOC_NUM_STACK 64
/* The tape is indexed by uint32_t. */
#define JDOC_MAX_TEXT ((size_t)UINT32_MAX / 2)

struct jparser {
    const unsigned char *s;
    size_t len;
    size_t pos;
    unsigned flags;
    unsigned max_depth;
    struct jdoc *d;
    size_t cap;        /* nodes allocated */
    uint32_t *stack;   /* indexes of open containers */
    const char *error; /* static text, set on the first error */
    size_t error_pos;
};

bool jdoc_utf8_valid(const unsigned char *s, size_t n, size_t *bad)
{
    size_t i = 0;
    while (i < n) {
        /* Eight ASCII bytes at a time. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & UINT64_C(0x8080808080808080))
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            *bad = i;
            return false;
        }
        if (n - i < len) {
            *bad = i;
            return false;
        }
        for (size_t k = 1; k < len; k++) {
            unsigned cc = s[i + k];
            if ((cc & 0xc0) != 0x80) {
                *bad = i;
                return false;
            }
            cp = (cp << 6) | (cc & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            *bad = i;
            return false;
        }
        i += len;
    }
    return true;
}

static bool jp_fail(struct jparser *p, const char *msg)
{
    if (!p->error) {
        p->error = msg;
        p->error_pos = p->pos;
    }
    return false;
}

/* Appends a node; returns its index or UINT32_MAX when out of memory. */
static uint32_t jp_node(struct jparser *p, enum jdoc_type type)
{
    struct jdoc *d = p->d;
    if (d->nnodes == p->cap) {
        size_t cap = p->cap * 2;
        struct jdoc_node *n = realloc(d->nodes, cap * sizeof *n);
        if (!n)
            return UINT32_MAX;
        d->nodes = n;
        p->cap = cap;
    }
    uint32_t idx = (uint32_t)d->nnodes++;
    struct jdoc_node *n = &d->nodes[idx];
    n->type = (uint8_t)type;
    n->len = 0;
    n->next = idx + 1;
    n->u.i = 0;
    return idx;
}

static void jp_ws(struct jparser *p)
{
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t')
            break;
        p->pos++;
    }
}

static int jp_hex4(const unsigned char *h)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = h[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

static size_t jp_put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parses the string at p->pos (on the opening quote) into a new node. */
static bool jp_string(struct jparser *p)
{
    uint32_t idx = jp_node(p, JDOC_STRING);
    if (idx == UINT32_MAX)
        return jp_fail(p, "out of memory");
    struct jdoc *d = p->d;
    size_t start = d->strings_len;
    char *out = d->strings + start;
    size_t o = 0;
    p->pos++; /* opening quote */
    for (;;) {
        /* Copy the plain run up to a quote, backslash or control byte. */
        size_t run = p->pos;
        /* Eight bytes at a time while none is a quote, a backslash or below 0x20
         * (the classic "has zero byte" / "has byte less than" word tests). */
        while (run + 8 <= p->len) {
            uint64_t w;
            memcpy(&w, p->s + run, 8);
            const uint64_t ones = UINT64_C(0x0101010101010101), high = ones * 0x80;
            uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
            uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w);
            if (hit & high)
                break;
            run += 8;
        }
        while (run < p->len) {
            unsigned char c = p->s[run];
            if (c == '"' || c == '\\' || c < 0x20)
                break;
            run++;
        }
        memcpy(out + o, p->s + p->pos, run - p->pos);
        o += run - p->pos;
        p->pos = run;
        if (p->pos >= p->len)
            return jp_fail(p, "premature end of input in a string");
        unsigned char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20)
            return jp_fail(p, "control character in a string");
        /* An escape. */
        if (p->pos + 1 >= p->len)
            return jp_fail(p, "premature end of input in a string");
        unsigned char e = p->s[p->pos + 1];
        p->pos += 2;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            out[o++] = (char)e;
            break;
        case 'b':
            out[o++] = '\b';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'u': {
            p->pos -= 2;
            if (p->len - p->pos < 6)
                return jp_fail(p, "invalid \\u escape");
            int hi = jp_hex4(p->s + p->pos + 2);
            if (hi < 0)
                return jp_fail(p, "invalid \\u escape");
            uint32_t cp = (uint32_t)hi;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return jp_fail(p, "lone low surrogate in a \\u escape");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                int lo = -1;
                if (p->len - p->pos >= 12 && p->s[p->pos + 6] == '\\' && p->s[p->pos + 7] == 'u')
                    lo = jp_hex4(p->s + p->pos + 8);
                if (lo < 0xdc00 || lo > 0xdfff)
                    return jp_fail(p, "lone high surrogate in a \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
                p->pos += 6;
            }
            if (cp == 0 && !(p->flags & JDOC_ALLOW_NUL))
                return jp_fail(p, "\\u0000 is not allowed in a string");
            p->pos += 6;
            o += jp_put_utf8(out + o, cp);
            break;
        }
        default:
            p->pos -= 2;
            return jp_fail(p, "invalid escape in a string");
        }
    }
    out[o] = '\0';
    d->nodes[idx].u.off = (uint32_t)start;
    d->nodes[idx].len = (uint32_t)o;
    d->strings_len = start + o + 1;
    return true;
}

static bool jp_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool jp_number(struct jparser *p)
{
    size_t start = p->pos;
    size_t i = p->pos;
    bool neg = false, real = false;
    if (p->s[i] == '-') {
        neg = true;
        i++;
    }
    if (i >= p->len || !jp_digit(p->s[i]))
        return jp_fail(p, "invalid number");
    if (p->s[i] == '0') {
        i++;
        if (i < p->len && jp_digit(p->s[i]))
            return jp_fail(p, "invalid number: leading zero");
    } else {
        while (i < p->len && jp_digit(p->s[i]))
            i++;
    }
    size_t int_end = i;
    if (i < p->len && p->s[i] == '.') {
        real = true;
        i++;
        if (i >= p->len || !jp_digit(p->s[i])) {
            p->pos = i;
            return jp_fail(p, "invalid number: digits expected after '.'");
        }
        while (i < p->len && jp_digit(p->s[i]))
            i++;
    }
    if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
        real = true;
        i++;
        if (i < p->len && (p->s[i] == '+' || p->s[i] == '-'))
            i++;
        if (i >= p->len || !jp_digit(p->s[i])) {
            p->pos = i;
            return jp_fail(p, "invalid number: digits expected in the exponent");
        }
        while (i < p->len && jp_digit(p->s[i]))
            i++;
    }
    uint32_t idx = jp_node(p, real ? JDOC_REAL : JDOC_INT);
    if (idx == UINT32_MAX)
        return jp_fail(p, "out of memory");
    if (!real) {
        /* Accumulate as a negative number: its range includes LLONG_MIN. */
        long long v = 0;
        for (size_t k = start + (neg ? 1 : 0); k < int_end; k++) {
            int dgt = p->s[k] - '0';
            if (v < (LLONG_MIN + dgt) / 10)
                return jp_fail(p, "too big integer");
            v = v * 10 - dgt;
        }
        if (!neg) {
            if (v == LLONG_MIN)
                return jp_fail(p, "too big integer");
            v = -v;
        }
        p->d->nodes[idx].u.i = v;
    } else {
        char stackbuf[JDOC_NUM_STACK];
        size_t n = i - start;
        char *buf = n < sizeof stackbuf ? stackbuf : malloc(n + 1);
        if (!buf)
            return jp_fail(p, "out of memory");
        memcpy(buf, p->s + start, n);
        buf[n] = '\0';
        errno = 0;
        double v = strtod(buf, NULL);
        int overflow = errno == ERANGE && isinf(v);
        if (buf != stackbuf)
            free(buf);
        if (overflow)
            return jp_fail(p, "real number overflow");
        p->d->nodes[idx].u.d = v;
    }
    p->pos = i;
    return true;
}

static bool jp_literal(struct jparser *p, const char *word, size_t n, enum jdoc_type type)
{
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return jp_fail(p, "invalid token");
    if (jp_node(p, type) == UINT32_MAX)
        return jp_fail(p, "out of memory");
    p->pos += n;
    return true;
}

/* Parses an object key and the colon after it (p->pos on the key's quote). */
static bool jp_key(struct jparser *p)
{
    if (p->pos >= p->len || p->s[p->pos] != '"')
        return jp_fail(p, p->pos >= p->len ? "premature end of input" : "string key expected");
    if (!jp_string(p))
        return false;
    jp_ws(p);
    if (p->pos >= p->len || p->s[p->pos] != ':')
        return jp_fail(p, "':' expected after an object key");
    p->pos++;
    return true;
}

static bool jp_run(struct jparser *p)
{
    struct jdoc *d = p->d;
    unsigned depth = 0;
    for (;;) {
        /* A value. */
        jp_ws(p);
        if (p->pos >= p->len)
            return jp_fail(p, "premature end of input");
        unsigned char c = p->s[p->pos];
        bool opened = false;
        if (c == '{' || c == '[') {
            if (depth >= p->max_depth)
                return jp_fail(p, "nesting too deep");
            uint32_t idx = jp_node(p, c == '{' ? JDOC_OBJECT : JDOC_ARRAY);
            if (idx == UINT32_MAX)
                return jp_fail(p, "out of memory");
            p->stack[depth++] = idx;
            if (depth > d->depth)
                d->depth = depth;
            p->pos++;
            jp_ws(p);
            if (p->pos < p->len && p->s[p->pos] == (c == '{' ? '}' : ']')) {
                p->pos++;
                depth--;
                d->nodes[idx].next = (uint32_t)d->nnodes;
            } else if (c == '{') {
                if (!jp_key(p))
                    return false;
                opened = true;
            } else {
                opened = true;
            }
        } else if (c == '"') {
            if (!jp_string(p))
                return false;
        } else if (c == '-' || jp_digit(c)) {
            if (!jp_number(p))
                return false;
        } else if (c == 't') {
            if (!jp_literal(p, "true", 4, JDOC_TRUE))
                return false;
        } else if (c == 'f') {
            if (!jp_literal(p, "false", 5, JDOC_FALSE))
                return false;
        } else if (c == 'n') {
            if (!jp_literal(p, "null", 4, JDOC_NULL))
                return false;
        } else {
            return jp_fail(p, "invalid token");
        }
        if (opened)
            continue; /* the container's first value comes next */

        /* After a complete value: close containers or move to the next member. */
        for (;;) {
            if (depth == 0) {
                jp_ws(p);
                if (p->pos != p->len)
                    return jp_fail(p, "end of input expected");
                return true;
            }
            struct jdoc_node *top = &d->nodes[p->stack[depth - 1]];
            top->len++;
            jp_ws(p);
            if (p->pos >= p->len)
                return jp_fail(p, "premature end of input");
            unsigned char sep = p->s[p->pos];
            bool obj = top->type == JDOC_OBJECT;
            if (sep == ',') {
                p->pos++;
                if (obj) {
                    jp_ws(p);
                    if (!jp_key(p))
                        return false;
                }
                break;
            }
            if (sep != (obj ? '}' : ']'))
                return jp_fail(p, obj ? "',' or '}' expected" : "',' or ']' expected");
            p->pos++;
            top->next = (uint32_t)d->nnodes;
            depth--;
        }
    }
}

static void jp_where(const unsigned char *s, size_t pos, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < pos; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if ((s[i] & 0xc0) != 0x80) {
            (*col)++; /* columns count characters, not continuation bytes */
        }
    }
}

struct jdoc *jdoc_parse(const char *text, size_t len, unsigned flags, unsigned max_depth, char *why,
                        size_t why_len)
{
    struct jparser p = {.s = (const unsigned char *)text,
                        .len = len,
                        .flags = flags,
                        .max_depth = max_depth ? max_depth : JDOC_DEFAULT_MAX_DEPTH};
    struct jdoc *d = NULL;
    size_t bad = 0;
    if (why && why_len)
        why[0] = '\0';
    if (len > JDOC_MAX_TEXT) {
        if (why && why_len)
            snprintf(why, why_len, "JSON text of %zu bytes is too large", len);
        return NULL;
    }
    if (!jdoc_utf8_valid(p.s, len, &bad)) {
        p.error = "invalid UTF-8";
        p.error_pos = bad;
        goto fail;
    }
    d = calloc(1, sizeof *d);
    /* Nodes: a first guess that covers typical payloads without growing. */
    p.cap = len / 8 + 16;
    p.stack = malloc(sizeof *p.stack * (p.max_depth < len + 1 ? p.max_depth : len + 1));
    if (d) {
        d->nodes = malloc(p.cap * sizeof *d->nodes);
        d->strings = malloc(len + 1);
    }
    if (!d || !d->nodes || !d->strings || !p.stack) {
        p.error = "out of memory";
        goto fail;
    }
    p.d = d;
    if (!jp_run(&p))
        goto fail;
    free(p.stack);
    return d;
fail:
    free(p.stack);
    jdoc_free(d);
    if (why && why_len) {
        if (p.error && strcmp(p.error, "out of memory") == 0) {
            snprintf(why, why_len, "out of memory");
        } else {
            size_t line, col;
            jp_where(p.s, p.error_pos, &line, &col);
            snprintf(why, why_len, "malformed JSON at line %zu column %zu: %s", line, col,
                     p.error ? p.error : "invalid input");
        }
    }
    return NULL;
}

void jdoc_free(struct jdoc *d)
{
    if (!d)
        return;
    free(d->nodes);
    free(d->strings);
    free(d);
}

const struct jdoc_node *jdoc_root(const struct jdoc *d)
{
    return &d->nodes[0];
}

const struct jdoc_node *jdoc_skip(const struct jdoc *d, const struct jdoc_node *n)
{
    return &d->nodes[n->next];
}

const char *jdoc_str(const struct jdoc *d, const struct jdoc_node *n)
{
    return d->strings + n->u.off;
}

const struct jdoc_node *jdoc_get(const struct jdoc *d, const struct jdoc_node *obj, const char *key,
                                 size_t key_len)
{
    if (!obj || obj->type != JDOC_OBJECT)
        return NULL;
    const struct jdoc_node *found = NULL;
    const struct jdoc_node *k = obj + 1;
    for (uint32_t i = 0; i < obj->len; i++) {
        const struct jdoc_node *v = k + 1;
        if (k->len == key_len && memcmp(jdoc_str(d, k), key, key_len) == 0)
            found = v;
        k = jdoc_skip(d, v);
    }
    return found;
}

const struct jdoc_node *jdoc_at(const struct jdoc *d, const struct jdoc_node *arr, size_t i)
{
    if (!arr || arr->type != JDOC_ARRAY || i >= arr->len)
        return NULL;
    const struct jdoc_node *e = arr + 1;
    while (i-- > 0)
        e = jdoc_skip(d, e);
    return e;
}

/* True when key[key_len] equals the pointer token tok[0, tok_len) once its ~0
 * and ~1 escapes are decoded. A malformed escape never matches. */
static bool jdoc_token_eq(const char *key, size_t key_len, const char *tok, size_t tok_len)
{
    size_t k = 0;
    for (size_t i = 0; i < tok_len; i++, k++) {
        char c = tok[i];
        if (c == '~') {
            if (i + 1 >= tok_len || (tok[i + 1] != '0' && tok[i + 1] != '1'))
                return false;
            c = tok[++i] == '0' ? '~' : '/';
        }
        if (k >= key_len || key[k] != c)
            return false;
    }
    return k == key_len;
}

const struct jdoc_node *jdoc_pointer(const struct jdoc *d, const char *ptr)
{
    const struct jdoc_node *cur = jdoc_root(d);
    if (*ptr != '\0' && *ptr != '/')
        return NULL;
    while (cur && *ptr == '/') {
        const char *tok = ++ptr;
        while (*ptr && *ptr != '/')
            ptr++;
        size_t n = (size_t)(ptr - tok);
        if (cur->type == JDOC_OBJECT) {
            const struct jdoc_node *found = NULL, *k = cur + 1;
            for (uint32_t i = 0; i < cur->len; i++) {
                if (jdoc_token_eq(jdoc_str(d, k), k->len, tok, n))
                    found = k + 1; /* the last of repeated keys wins */
                k = jdoc_skip(d, k + 1);
            }
            cur = found;
        } else if (cur->type == JDOC_ARRAY) {
            size_t idx = 0;
            if (n == 0 || (tok[0] == '0' && n > 1) || n > 9)
                return NULL;
            for (size_t k = 0; k < n; k++) {
                if (tok[k] < '0' || tok[k] > '9')
                    return NULL;
                idx = idx * 10 + (size_t)(tok[k] - '0');
            }
            cur = jdoc_at(d, cur, idx);
        } else {
            return NULL;
        }
    }
    return cur;
}

json_t *jdoc_to_json(const struct jdoc *d, const struct jdoc_node *n)
{
    switch ((enum jdoc_type)n->type) {
    case JDOC_NULL:
        return json_null();
    case JDOC_FALSE:
        return json_false();
    case JDOC_TRUE:
        return json_true();
    case JDOC_INT:
        return json_integer((json_int_t)n->u.i);
    case JDOC_REAL:
        return json_real(n->u.d);
    case JDOC_STRING:
        return json_stringn_nocheck(jdoc_str(d, n), n->len);
    case JDOC_ARRAY: {
        json_t *a = json_array();
        const struct jdoc_node *e = n + 1;
        for (uint32_t i = 0; a && i < n->len; i++) {
            if (json_array_append_new(a, jdoc_to_json(d, e)) < 0) {
                json_decref(a);
                return NULL;
            }
            e = jdoc_skip(d, e);
        }
        return a;
    }
    case JDOC_OBJECT: {
        json_t *o = json_object();
        const struct jdoc_node *k = n + 1;
        for (uint32_t i = 0; o && i < n->len; i++) {
            const struct jdoc_node *v = k + 1;
            if (json_object_setn_new_nocheck(o, jdoc_str(d, k), k->len, jdoc_to_json(d, v)) < 0) {
                json_decref(o);
                return NULL;
            }
            k = jdoc_skip(d, v);
        }
        return o;
    }
    }
    return NULL;
}

struct jdoc *jdoc_from_json(const json_t *v, char *why, size_t why_len)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
        if (why && why_len)
            snprintf(why, why_len, "out of memory");
        return NULL;
    }
    struct jdoc *d = jdoc_parse(text, strlen(text), JDOC_ALLOW_NUL, 0, why, why_len);
    free(text);
    return d;
}
