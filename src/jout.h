/*
 * jout: writes JSON text without building jansson trees for it. A jout is a
 * growable output buffer with an escaping string writer, and jout_dump_sorted
 * serialises a jansson value compactly with object members sorted by key bytes,
 * byte-identical to json_dumps(JSON_COMPACT | JSON_SORT_KEYS [|
 * JSON_ENSURE_ASCII]). It carries the hot paths that used to call json_dumps:
 * the audit record's canonical form (which its hash covers), the stored
 * headers of a webhook and the ingest answer. jansson stays the reference:
 * values the fast path does not format itself (reals, invalid UTF-8, nesting
 * deeper than JOUT_MAX_DEPTH) are handed to json_dumps. Not thread-shared: one
 * jout per thread at a time; the functions keep no state of their own.
 */
#ifndef HOOKLINE_JOUT_H
#define HOOKLINE_JOUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Containers nested deeper than this go through jansson. */
#define JOUT_MAX_DEPTH 32

/* An output buffer; zero-initialise it ({0}). p is NUL-terminated whenever it
 * is non-NULL. failed is set on out of memory or invalid UTF-8; later writes
 * are then ignored. The caller owns p (free it). */
struct jout {
    char *p;
    size_t len, cap;
    bool failed;
};

/* Appends n bytes verbatim. */
void jout_raw(struct jout *o, const char *s, size_t n);

/* Appends s (NUL-terminated) verbatim. */
void jout_cstr(struct jout *o, const char *s);

/* Appends s[0..n) as a quoted JSON string: short escapes for " \ \b \f \n \r
 * \t, \u00XX (upper-case hex) for other control characters; with ascii, code
 * points above U+007F as \uHHHH escapes (surrogate pairs above U+FFFF), otherwise the
 * UTF-8 bytes as they are. Invalid UTF-8 sets o->failed. */
void jout_string(struct jout *o, const char *s, size_t n, bool ascii);

/* Appends a JSON integer. */
void jout_int(struct jout *o, long long v);

struct jout_opts {
    bool ascii;       /* as JSON_ENSURE_ASCII */
    const char *skip; /* a top-level object member left out, or NULL */
    /* Top-level members whose name this returns true for are written with the
     * string value replacement instead of their own (NULL: none). */
    bool (*replace)(const char *key, void *ctx);
    const char *replacement;
    void *ctx;
};

/* Serialises v (compact, members sorted by key bytes) with opts applied.
 * Returns a new heap string (caller frees), or NULL when v cannot be
 * serialised (out of memory, or a string that is not UTF-8). */
char *jout_dump_sorted(json_t *v, const struct jout_opts *opts);

#endif
