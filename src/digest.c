/*
 * digest: hashing, HMAC, hex/base64 coding and constant-time comparison for the
 * signature checks in verify.c and the content hashes used elsewhere. It owns no state
 * and allocates nothing; every function works on caller buffers, so any thread may call
 * it. The decoders are strict (no whitespace, no stray padding, canonical trailing bits)
 * because a lenient decoder lets several encodings stand for one signature. The only
 * shared data are the digest implementations, fetched from libcrypto once per process
 * (OpenSSL 3 otherwise looks them up again on every call, under a lock).
 */
#include "digest.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static const char hex_digits[] = "0123456789abcdef";
static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static pthread_once_t digest_once = PTHREAD_ONCE_INIT;
static const EVP_MD *digest_fetched[3]; /* SHA-256, SHA-1, SHA-512; never freed */

static void digest_fetch_all(void)
{
    /* A failed fetch leaves NULL and the legacy getter is used instead. */
    digest_fetched[0] = EVP_MD_fetch(NULL, "SHA256", NULL);
    digest_fetched[1] = EVP_MD_fetch(NULL, "SHA1", NULL);
    digest_fetched[2] = EVP_MD_fetch(NULL, "SHA512", NULL);
}

/* Borrowed libcrypto digest for alg, or NULL for an unknown value. */
static const EVP_MD *digest_md(enum digest_alg alg)
{
    pthread_once(&digest_once, digest_fetch_all);
    switch (alg) {
    case DIGEST_SHA256:
        return digest_fetched[0] ? digest_fetched[0] : EVP_sha256();
    case DIGEST_SHA1:
        return digest_fetched[1] ? digest_fetched[1] : EVP_sha1();
    case DIGEST_SHA512:
        return digest_fetched[2] ? digest_fetched[2] : EVP_sha512();
    }
    return NULL;
}

size_t digest_len(enum digest_alg alg)
{
    switch (alg) {
    case DIGEST_SHA256:
        return 32;
    case DIGEST_SHA1:
        return 20;
    case DIGEST_SHA512:
        return 64;
    }
    return 0;
}

void digest_sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int out_len = 0;

    /* EVP_Digest cannot fail for SHA-256 short of memory corruption; zero the output
     * so a failure can never pass for a real hash. */
    if (EVP_Digest(len ? data : "", len, out, &out_len, digest_md(DIGEST_SHA256), NULL) != 1 ||
        out_len != 32)
        memset(out, 0, 32);
}

void digest_sha256_parts(const void *a, size_t alen, const void *b, size_t blen, const void *c,
                         size_t clen, unsigned char out[32])
{
    unsigned int out_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, digest_md(DIGEST_SHA256), NULL) == 1 &&
             (alen == 0 || EVP_DigestUpdate(ctx, a, alen) == 1) &&
             (blen == 0 || EVP_DigestUpdate(ctx, b, blen) == 1) &&
             (clen == 0 || EVP_DigestUpdate(ctx, c, clen) == 1) &&
             EVP_DigestFinal_ex(ctx, out, &out_len) == 1 && out_len == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        memset(out, 0, 32);
}

void digest_sha256_hex(const void *data, size_t len, char out[DIGEST_SHA256_HEX_LEN + 1])
{
    unsigned char raw[32];

    digest_sha256(data, len, raw);
    digest_hex_encode(raw, sizeof raw, out);
}

int digest_hmac(enum digest_alg alg, const void *key, size_t key_len, const void *msg,
                size_t msg_len, unsigned char *out)
{
    const EVP_MD *md = digest_md(alg);
    unsigned int out_len = 0;

    if (md == NULL || key_len > INT_MAX)
        return -1;
    /* Never hand NULL to libcrypto for an empty key or message. */
    if (HMAC(md, key_len ? key : "", (int)key_len, msg_len ? msg : (const void *)"", msg_len, out,
             &out_len) == NULL)
        return -1;
    if (out_len != digest_len(alg))
        return -1;
    return 0;
}

void digest_hex_encode(const unsigned char *in, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex_digits[in[i] >> 4];
        out[2 * i + 1] = hex_digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

/* Value of one hex digit, or -1. */
static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long digest_hex_decode(const char *text, size_t text_len, unsigned char *out, size_t out_cap)
{
    size_t n = text_len / 2;

    if (text_len % 2 != 0 || n > out_cap || n > LONG_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value((unsigned char)text[2 * i]);
        int lo = hex_value((unsigned char)text[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)((hi << 4) | lo);
    }
    return (long)n;
}

size_t digest_base64_encode(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0;
    size_t i = 0;

    for (; i + 3 <= len; i += 3) {
        unsigned long v =
            ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8) | in[i + 2];

        out[o++] = b64_alphabet[(v >> 18) & 0x3f];
        out[o++] = b64_alphabet[(v >> 12) & 0x3f];
        out[o++] = b64_alphabet[(v >> 6) & 0x3f];
        out[o++] = b64_alphabet[v & 0x3f];
    }
    if (len - i == 1) {
        unsigned long v = (unsigned long)in[i] << 16;

        out[o++] = b64_alphabet[(v >> 18) & 0x3f];
        out[o++] = b64_alphabet[(v >> 12) & 0x3f];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8);

        out[o++] = b64_alphabet[(v >> 18) & 0x3f];
        out[o++] = b64_alphabet[(v >> 12) & 0x3f];
        out[o++] = b64_alphabet[(v >> 6) & 0x3f];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

/* Value of one base64 alphabet character, or -1 (padding included). */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long digest_base64_decode(const char *text, size_t text_len, unsigned char *out, size_t out_cap)
{
    size_t pad = 0;
    size_t n;
    size_t o = 0;

    if (text_len % 4 != 0)
        return -1;
    if (text_len == 0)
        return 0;
    if (text[text_len - 1] == '=')
        pad = text[text_len - 2] == '=' ? 2 : 1;
    n = text_len / 4 * 3 - pad;
    if (n > out_cap || n > LONG_MAX)
        return -1;

    for (size_t i = 0; i < text_len; i += 4) {
        bool last = i + 4 == text_len;
        size_t data_chars = last ? 4 - pad : 4;
        unsigned long v = 0;

        for (size_t k = 0; k < 4; k++) {
            int d = 0;

            if (k < data_chars) {
                d = b64_value((unsigned char)text[i + k]);
                if (d < 0)
                    return -1; /* bad character, or '=' before the end */
            }
            v = (v << 6) | (unsigned long)d;
        }
        /* The bits under the padding must be zero, or the text is not canonical. */
        if ((pad == 1 && last && (v & 0xff) != 0) || (pad == 2 && last && (v & 0xffff) != 0))
            return -1;
        out[o++] = (unsigned char)(v >> 16);
        if (data_chars >= 3)
            out[o++] = (unsigned char)(v >> 8);
        if (data_chars == 4)
            out[o++] = (unsigned char)v;
    }
    return (long)o;
}

bool digest_equal(const void *a, const void *b, size_t len)
{
    if (len == 0)
        return true;
    return CRYPTO_memcmp(a, b, len) == 0;
}

bool digest_equal_str(const void *a, size_t a_len, const void *b, size_t b_len)
{
    /* On a length mismatch compare a with itself so the work still depends only on the
     * lengths, never on the contents. */
    const void *other = a_len == b_len ? b : a;
    int diff = a_len == 0 ? 0 : CRYPTO_memcmp(a, other, a_len);

    return (a_len == b_len) & (diff == 0);
}
