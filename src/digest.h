/*
 * digest: small cryptographic and encoding helpers over OpenSSL's libcrypto:
 * SHA-256, HMAC (SHA-1/256/512), hex and base64 coding, constant-time comparison.
 * Pure functions, no global state; safe from any thread.
 */
#ifndef HOOKLINE_DIGEST_H
#define HOOKLINE_DIGEST_H

#include <stdbool.h>
#include <stddef.h>

enum digest_alg { DIGEST_SHA256 = 0, DIGEST_SHA1, DIGEST_SHA512 };

#define DIGEST_MAX_LEN 64 /* SHA-512 */
#define DIGEST_SHA256_HEX_LEN 64

/* Output size in bytes of alg (20, 32 or 64). */
size_t digest_len(enum digest_alg alg);

/* SHA-256 of data into out[32]. */
void digest_sha256(const void *data, size_t len, unsigned char out[32]);

/* SHA-256 of the concatenation a || b || c (any may have length 0) into out[32]. */
void digest_sha256_parts(const void *a, size_t alen, const void *b, size_t blen, const void *c,
                         size_t clen, unsigned char out[32]);

/* SHA-256 of data as 64 lower-case hex chars plus NUL into out[65]. */
void digest_sha256_hex(const void *data, size_t len, char out[DIGEST_SHA256_HEX_LEN + 1]);

/* HMAC of msg with key; writes digest_len(alg) bytes to out (caller's buffer of at
 * least DIGEST_MAX_LEN). Returns 0, or -1 on a libcrypto failure. */
int digest_hmac(enum digest_alg alg, const void *key, size_t key_len, const void *msg,
                size_t msg_len, unsigned char *out);

/* Lower-case hex of in[len] into out, which must hold 2*len+1 bytes. */
void digest_hex_encode(const unsigned char *in, size_t len, char *out);

/* Decodes hex (either case) text[text_len] into out (capacity out_cap).
 * Returns the number of bytes written, or -1 on bad input or too small out. */
long digest_hex_decode(const char *text, size_t text_len, unsigned char *out, size_t out_cap);

/* Standard base64 (with padding) of in[len] into out, which must hold
 * 4*((len+2)/3)+1 bytes. Returns the length written (without NUL). */
size_t digest_base64_encode(const unsigned char *in, size_t len, char *out);

/* Decodes standard base64 (padding required unless the length is a multiple of 4;
 * no whitespace) text[text_len] into out (capacity out_cap). Returns the number of
 * bytes written, or -1 on bad input or too small out. */
long digest_base64_decode(const char *text, size_t text_len, unsigned char *out, size_t out_cap);

/* Constant-time equality of a[len] and b[len]: time depends on len only. */
bool digest_equal(const void *a, const void *b, size_t len);

/* Constant-time equality of two byte strings of possibly different length; the
 * time depends on the lengths only, never on where the contents differ. */
bool digest_equal_str(const void *a, size_t a_len, const void *b, size_t b_len);

#endif
