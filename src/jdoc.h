/*
 * jdoc: one JSON text parsed into an immutable, flat document (a "tape" of
 * nodes in text order plus one arena of unescaped strings). It is how a webhook
 * body travels from ingest to the rule engine: one validating pass with two
 * allocations, no per-value heap objects, and a tree walk that is a linear scan.
 * Strict RFC 8259 (any value at the top level): UTF-8 checked, lone surrogates
 * and "\u0000" rejected (unless JDOC_ALLOW_NUL), integers beyond 64 bits and
 * reals beyond double range rejected, nesting bounded. A repeated object key is
 * kept in the tape; lookups and conversions let the last one win (as jansson's
 * default does). Thread-safe: a document is never modified after parsing.
 *
 * Layout: a container node is followed by its children. An array's children
 * are its elements; an object's are (key, value) pairs, the key a JDOC_STRING
 * node. Every node's `next` is the index of the first node after its subtree,
 * so siblings are reached without visiting their insides.
 */
#ifndef HOOKLINE_JDOC_H
#define HOOKLINE_JDOC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest container nesting jdoc_parse accepts when the caller passes 0. */
#define JDOC_DEFAULT_MAX_DEPTH 512

/* jdoc_parse flags */
#define JDOC_ALLOW_NUL 0x1u /* accept "\u0000" in strings */

enum jdoc_type {
    JDOC_NULL = 0,
    JDOC_FALSE,
    JDOC_TRUE,
    JDOC_INT,
    JDOC_REAL,
    JDOC_STRING,
    JDOC_ARRAY,
    JDOC_OBJECT
};

struct jdoc_node {
    uint8_t type;  /* enum jdoc_type */
    uint32_t len;  /* STRING: bytes (without the NUL); ARRAY: elements; OBJECT: members */
    uint32_t next; /* index of the node after this value's subtree */
    union {
        long long i;  /* INT */
        double d;     /* REAL */
        uint32_t off; /* STRING: offset of its NUL-terminated text in the arena */
    } u;
};

struct jdoc {
    struct jdoc_node *nodes; /* nodes[0] is the root */
    size_t nnodes;
    char *strings; /* arena of NUL-terminated strings */
    size_t strings_len;
    unsigned depth; /* deepest container nesting (0: the root is a scalar) */
};

/* Parses text[len]. Returns a new document (caller frees with jdoc_free), or
 * NULL with why[why_len] set to "malformed JSON at line L column C: REASON" (or
 * "out of memory"). max_depth bounds container nesting (0: the default). */
struct jdoc *jdoc_parse(const char *text, size_t len, unsigned flags, unsigned max_depth, char *why,
                        size_t why_len);

/* True when s[n] is strict UTF-8 (no overlong forms, no surrogates, nothing above
 * U+10FFFF); otherwise false with *bad set to the offset of the first bad
 * sequence. */
bool jdoc_utf8_valid(const unsigned char *s, size_t n, size_t *bad);

/* Frees d. NULL is a no-op. */
void jdoc_free(struct jdoc *d);

/* The root value (never NULL for a parsed document). Borrowed from d. */
const struct jdoc_node *jdoc_root(const struct jdoc *d);

/* The node after n's subtree: n's next sibling when n is not its parent's last
 * child. Borrowed from d. */
const struct jdoc_node *jdoc_skip(const struct jdoc *d, const struct jdoc_node *n);

/* A string node's text (NUL-terminated, n->len bytes; may hold NULs only with
 * JDOC_ALLOW_NUL). Borrowed from d. */
const char *jdoc_str(const struct jdoc *d, const struct jdoc_node *n);

/* The value of obj's last member named key[key_len], or NULL when obj is not an
 * object or has no such member. Borrowed from d. */
const struct jdoc_node *jdoc_get(const struct jdoc *d, const struct jdoc_node *obj, const char *key,
                                 size_t key_len);

/* Element i (0-based) of array arr, or NULL. Borrowed from d. */
const struct jdoc_node *jdoc_at(const struct jdoc *d, const struct jdoc_node *arr, size_t i);

/* Resolves an RFC 6901 JSON pointer ("" is the root; "~0" and "~1" escapes;
 * array indexes in decimal without leading zeros). Returns a borrowed node, or
 * NULL when nothing is there. */
const struct jdoc_node *jdoc_pointer(const struct jdoc *d, const char *ptr);

/* Builds the jansson value of n. Returns a new reference (caller owns), or NULL
 * when out of memory. */
json_t *jdoc_to_json(const struct jdoc *d, const struct jdoc_node *n);

/* Builds a document from a jansson value (borrowed), by encoding and parsing
 * it. Returns a new document (caller frees) or NULL with why set. */
struct jdoc *jdoc_from_json(const json_t *v, char *why, size_t why_len);

#endif
