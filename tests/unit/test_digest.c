/*
 * Unit tests for src/digest.c: SHA-256 (FIPS 180-2 examples), HMAC-SHA1/256/512 (RFC 2202
 * and RFC 4231 vectors), hex and base64 coding (RFC 4648 section 10 vectors) including the
 * strict rejection of malformed input, and the constant-time comparisons.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "digest.h"

/* Lower-case hex of HMAC(alg, key, msg), computed through digest_hmac. */
static void hmac_hex(enum digest_alg alg, const char *key, size_t key_len, const char *msg,
                     char *out)
{
    unsigned char mac[DIGEST_MAX_LEN];

    assert_int_equal(digest_hmac(alg, key, key_len, msg, strlen(msg), mac), 0);
    digest_hex_encode(mac, digest_len(alg), out);
}

static void test_digest_len(void **state)
{
    (void)state;
    assert_int_equal(digest_len(DIGEST_SHA1), 20);
    assert_int_equal(digest_len(DIGEST_SHA256), 32);
    assert_int_equal(digest_len(DIGEST_SHA512), 64);
}

static void test_sha256_vectors(void **state)
{
    char hex[DIGEST_SHA256_HEX_LEN + 1];
    unsigned char raw[32];

    (void)state;
    digest_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    digest_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    digest_sha256(NULL, 0, raw);
    assert_int_equal(raw[0], 0xe3);
    assert_int_equal(raw[31], 0x55);
}

/* RFC 4231 test cases 1 and 2 (SHA-256, SHA-512), RFC 2202 test case 2 (SHA-1). */
static void test_hmac_rfc_vectors(void **state)
{
    char hex[2 * DIGEST_MAX_LEN + 1];
    char key20[20];

    (void)state;
    memset(key20, 0x0b, sizeof key20);
    hmac_hex(DIGEST_SHA256, key20, sizeof key20, "Hi There", hex);
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    hmac_hex(DIGEST_SHA256, "Jefe", 4, "what do ya want for nothing?", hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    hmac_hex(DIGEST_SHA512, "Jefe", 4, "what do ya want for nothing?", hex);
    assert_string_equal(hex, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
                             "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");

    hmac_hex(DIGEST_SHA1, "Jefe", 4, "what do ya want for nothing?", hex);
    assert_string_equal(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
}

static void test_hmac_rejects_unknown_alg(void **state)
{
    unsigned char mac[DIGEST_MAX_LEN];

    (void)state;
    assert_int_equal(digest_hmac((enum digest_alg)42, "k", 1, "m", 1, mac), -1);
}

static void test_hex_roundtrip_and_errors(void **state)
{
    const unsigned char in[] = {0x00, 0x01, 0xab, 0xff};
    unsigned char out[8];
    char hex[9];

    (void)state;
    digest_hex_encode(in, sizeof in, hex);
    assert_string_equal(hex, "0001abff");
    assert_int_equal(digest_hex_decode("0001ABff", 8, out, sizeof out), 4);
    assert_memory_equal(out, in, 4);
    assert_int_equal(digest_hex_decode("", 0, out, sizeof out), 0);

    assert_int_equal(digest_hex_decode("abc", 3, out, sizeof out), -1);  /* odd length */
    assert_int_equal(digest_hex_decode("zz", 2, out, sizeof out), -1);   /* not hex */
    assert_int_equal(digest_hex_decode("0x12", 4, out, sizeof out), -1); /* no 0x */
    assert_int_equal(digest_hex_decode(" 1", 2, out, sizeof out), -1);   /* no spaces */
    assert_int_equal(digest_hex_decode("0001abff", 8, out, 3), -1);      /* too small */
}

/* RFC 4648 section 10. */
static void test_base64_rfc4648_vectors(void **state)
{
    static const struct {
        const char *plain;
        const char *b64;
    } v[] = {{"", ""},
             {"f", "Zg=="},
             {"fo", "Zm8="},
             {"foo", "Zm9v"},
             {"foob", "Zm9vYg=="},
             {"fooba", "Zm9vYmE="},
             {"foobar", "Zm9vYmFy"}};
    char enc[16];
    unsigned char dec[16];

    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t plen = strlen(v[i].plain);

        assert_int_equal(digest_base64_encode((const unsigned char *)v[i].plain, plen, enc),
                         strlen(v[i].b64));
        assert_string_equal(enc, v[i].b64);
        assert_int_equal(digest_base64_decode(v[i].b64, strlen(v[i].b64), dec, sizeof dec),
                         (long)plen);
        assert_memory_equal(dec, v[i].plain, plen);
    }
}

static void test_base64_binary_roundtrip(void **state)
{
    unsigned char in[256], dec[256];
    char enc[4 * ((256 + 2) / 3) + 1];

    (void)state;
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)(255 - i);
    for (size_t n = 0; n <= sizeof in; n += 17) {
        size_t e = digest_base64_encode(in, n, enc);

        assert_int_equal(e, 4 * ((n + 2) / 3));
        assert_int_equal(digest_base64_decode(enc, e, dec, sizeof dec), (long)n);
        assert_memory_equal(dec, in, n);
    }
}

static void test_base64_strict_rejects(void **state)
{
    static const char *bad[] = {
        "Zm9",      /* length not a multiple of 4 (missing padding) */
        "Zg=",      /* short padding */
        "Zm9v\n",   /* whitespace */
        "Zm 9v",    /* inner space */
        "Zm9v====", /* padding only quantum */
        "Z===",     /* three padding characters */
        "Zg==Zm9v", /* padding in the middle */
        "Zm=v",     /* '=' followed by data */
        "Zm9-",     /* URL-safe alphabet */
        "Zm9_",     /* URL-safe alphabet */
        "Zh==",     /* non-zero bits under the padding */
        "Zm9=",     /* non-zero bits under the padding */
        "====",
    };
    unsigned char dec[16];

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (digest_base64_decode(bad[i], strlen(bad[i]), dec, sizeof dec) != -1)
            fail_msg("accepted bad base64 \"%s\"", bad[i]);
    }
    /* An embedded NUL is a bad character, not the end of the text. */
    assert_int_equal(digest_base64_decode("Zm\0v", 4, dec, sizeof dec), -1);
    /* Output capacity is honoured exactly. */
    assert_int_equal(digest_base64_decode("Zm9vYmFy", 8, dec, 5), -1);
    assert_int_equal(digest_base64_decode("Zm9vYmFy", 8, dec, 6), 6);
}

static void test_equal(void **state)
{
    (void)state;
    assert_true(digest_equal("abcd", "abcd", 4));
    assert_false(digest_equal("abcd", "abce", 4));
    assert_true(digest_equal("x", "y", 0));

    assert_true(digest_equal_str("secret", 6, "secret", 6));
    assert_false(digest_equal_str("secret", 6, "secreT", 6));
    assert_false(digest_equal_str("secret", 6, "secret2", 7));
    assert_false(digest_equal_str("secret2", 7, "secret", 6));
    assert_false(digest_equal_str("", 0, "a", 1));
    assert_true(digest_equal_str("", 0, "", 0));
    assert_true(digest_equal_str(NULL, 0, NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_len),
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_hmac_rfc_vectors),
        cmocka_unit_test(test_hmac_rejects_unknown_alg),
        cmocka_unit_test(test_hex_roundtrip_and_errors),
        cmocka_unit_test(test_base64_rfc4648_vectors),
        cmocka_unit_test(test_base64_binary_roundtrip),
        cmocka_unit_test(test_base64_strict_rejects),
        cmocka_unit_test(test_equal),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
