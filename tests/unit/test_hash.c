/*
 * test_hash.c — SHA-256 / SHA-512, hex coding and constant-time compare.
 *
 * Digests are checked against the published FIPS 180 known answers (empty
 * string, "abc", the 448-bit message and one million 'a's fed through the
 * streaming interface), streaming with awkward chunk sizes must equal the
 * one-shot digest, and lp_hash_file is run on real files larger than its
 * read chunk, on an empty file, and on things that are not regular files.
 */
#include "livepush/hash.h"
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

struct kat {
    lp_hash_alg alg;
    const char *msg;
    const char *hex;
};

static const struct kat kats[] = {
    {LP_HASH_SHA256, "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {LP_HASH_SHA256, "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {LP_HASH_SHA256, "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {LP_HASH_SHA512, "",
     "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
     "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"},
    {LP_HASH_SHA512, "abc",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
     "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
    {LP_HASH_SHA512, "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c335"
     "96fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445"},
};

static const char *million_a[] = {
    [LP_HASH_SHA256] = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
    [LP_HASH_SHA512] = "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
                       "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b",
};

static void assert_digest_hex(lp_hash_alg alg, const uint8_t *d, const char *hex)
{
    char got[2 * LP_HASH_MAX_LEN + 1];
    lp_hex_encode(d, lp_hash_len(alg), got);
    assert_string_equal(got, hex);
}

/* Deterministic filler bytes (a small LCG): enough to make chunk boundaries
 * matter, no randomness that could hide a failure. */
static void fill(uint8_t *p, size_t n)
{
    uint32_t x = 0x12345678u;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

static void test_alg_names(void **state)
{
    (void)state;
    lp_error err;
    lp_hash_alg alg;
    assert_int_equal(lp_hash_len(LP_HASH_SHA256), 32);
    assert_int_equal(lp_hash_len(LP_HASH_SHA512), 64);
    assert_string_equal(lp_hash_alg_name(LP_HASH_SHA256), "sha256");
    assert_string_equal(lp_hash_alg_name(LP_HASH_SHA512), "sha512");
    assert_int_equal(lp_hash_alg_from_name("sha256", &alg, &err), LP_OK);
    assert_int_equal(alg, LP_HASH_SHA256);
    assert_int_equal(lp_hash_alg_from_name("sha512", &alg, &err), LP_OK);
    assert_int_equal(alg, LP_HASH_SHA512);
    const char *bad[] = {"SHA256", "sha-256", "md5", "sha1", "", "sha2560", "sha25"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lp_error_clear(&err);
        assert_int_equal(lp_hash_alg_from_name(bad[i], &alg, &err), LP_ERR_UNSUPPORTED);
        assert_int_equal(err.code, LP_ERR_UNSUPPORTED);
        assert_non_null(strstr(err.msg, "not supported"));
    }
    assert_int_equal(lp_hash_alg_from_name(NULL, &alg, NULL), LP_ERR_INVALID_ARG);

    /* An out-of-range value is refused, never indexed. */
    lp_hash_alg junk = (lp_hash_alg)7;
    assert_int_equal(lp_hash_len(junk), 0);
    assert_string_equal(lp_hash_alg_name(junk), "unknown");
    lp_hash_ctx *c = (lp_hash_ctx *)&c;
    assert_int_equal(lp_hash_new(&c, junk, &err), LP_ERR_INVALID_ARG);
    assert_null(c);
    uint8_t d[LP_HASH_MAX_LEN];
    assert_int_equal(lp_hash_buf(junk, "x", 1, d, NULL), LP_ERR_INVALID_ARG);
}

static void test_known_answers(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof kats / sizeof kats[0]; i++) {
        uint8_t d[LP_HASH_MAX_LEN];
        lp_error err;
        assert_int_equal(lp_hash_buf(kats[i].alg, kats[i].msg, strlen(kats[i].msg), d, &err),
                         LP_OK);
        assert_digest_hex(kats[i].alg, d, kats[i].hex);

        /* The same through a streaming context, one byte at a time. */
        lp_hash_ctx *c;
        assert_int_equal(lp_hash_new(&c, kats[i].alg, &err), LP_OK);
        for (const char *p = kats[i].msg; *p; p++)
            assert_int_equal(lp_hash_update(c, p, 1, &err), LP_OK);
        memset(d, 0, sizeof d);
        assert_int_equal(lp_hash_final(c, d, &err), LP_OK);
        lp_hash_free(c);
        assert_digest_hex(kats[i].alg, d, kats[i].hex);
    }
}

static void test_million_a_streaming(void **state)
{
    (void)state;
    char block[1000];
    memset(block, 'a', sizeof block);
    for (int a = LP_HASH_SHA256; a <= LP_HASH_SHA512; a++) {
        lp_hash_ctx *c;
        lp_error err;
        assert_int_equal(lp_hash_new(&c, (lp_hash_alg)a, &err), LP_OK);
        for (int i = 0; i < 1000; i++)
            assert_int_equal(lp_hash_update(c, block, sizeof block, &err), LP_OK);
        uint8_t d[LP_HASH_MAX_LEN];
        assert_int_equal(lp_hash_final(c, d, &err), LP_OK);
        lp_hash_free(c);
        assert_digest_hex((lp_hash_alg)a, d, million_a[a]);
    }
}

static void test_streaming_equals_oneshot(void **state)
{
    (void)state;
    enum { N = 200003 };
    uint8_t *data = malloc(N);
    assert_non_null(data);
    fill(data, N);
    const size_t chunks[] = {1, 3, 7, 63, 64, 65, 127, 129, 4099, 65535, 65537, N};
    for (int a = LP_HASH_SHA256; a <= LP_HASH_SHA512; a++) {
        uint8_t want[LP_HASH_MAX_LEN];
        assert_int_equal(lp_hash_buf((lp_hash_alg)a, data, N, want, NULL), LP_OK);
        for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
            lp_hash_ctx *c;
            assert_int_equal(lp_hash_new(&c, (lp_hash_alg)a, NULL), LP_OK);
            for (size_t off = 0; off < N; off += chunks[k]) {
                size_t n = N - off < chunks[k] ? N - off : chunks[k];
                assert_int_equal(lp_hash_update(c, data + off, n, NULL), LP_OK);
                /* Empty updates in between change nothing. */
                assert_int_equal(lp_hash_update(c, data, 0, NULL), LP_OK);
            }
            uint8_t got[LP_HASH_MAX_LEN];
            assert_int_equal(lp_hash_final(c, got, NULL), LP_OK);
            lp_hash_free(c);
            assert_memory_equal(got, want, lp_hash_len((lp_hash_alg)a));
        }
        /* One changed byte changes the digest. */
        data[N / 2] ^= 1;
        uint8_t other[LP_HASH_MAX_LEN];
        assert_int_equal(lp_hash_buf((lp_hash_alg)a, data, N, other, NULL), LP_OK);
        assert_memory_not_equal(other, want, lp_hash_len((lp_hash_alg)a));
        data[N / 2] ^= 1;
    }
    free(data);
}

static void test_use_after_final(void **state)
{
    (void)state;
    lp_hash_ctx *c;
    lp_error err;
    uint8_t d[LP_HASH_MAX_LEN];
    assert_int_equal(lp_hash_new(&c, LP_HASH_SHA256, &err), LP_OK);
    assert_int_equal(lp_hash_update(c, "abc", 3, &err), LP_OK);
    assert_int_equal(lp_hash_final(c, d, &err), LP_OK);
    assert_digest_hex(LP_HASH_SHA256, d, kats[1].hex);
    assert_int_equal(lp_hash_update(c, "x", 1, &err), LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "sha256"));
    assert_int_equal(lp_hash_final(c, d, &err), LP_ERR_STATE);
    lp_hash_free(c);
    lp_hash_free(NULL);
}

/* --- lp_hash_file ------------------------------------------------------- */

static char *tmpdir;

static int setup_tmpdir(void **state)
{
    (void)state;
    tmpdir = lp_test_tmpdir("hash");
    return tmpdir ? 0 : -1;
}

static int teardown_tmpdir(void **state)
{
    (void)state;
    int r = lp_test_rmtree(tmpdir);
    free(tmpdir);
    return r;
}

static void write_file(const char *path, const void *data, size_t len)
{
    assert_int_equal(lp_test_write_file(path, data, len), 0);
}

static void test_hash_file(void **state)
{
    (void)state;
    char path[512];
    lp_error err;
    uint8_t d[LP_HASH_MAX_LEN];
    uint64_t size = 1;

    /* One million 'a's: about fifteen 64 KiB reads plus a partial one. */
    enum { M = 1000000 };
    char *a = malloc(M);
    assert_non_null(a);
    memset(a, 'a', M);
    snprintf(path, sizeof path, "%s/million", tmpdir);
    write_file(path, a, M);
    free(a);
    for (int alg = LP_HASH_SHA256; alg <= LP_HASH_SHA512; alg++) {
        size = 0;
        assert_int_equal(lp_hash_file((lp_hash_alg)alg, path, d, &size, &err), LP_OK);
        assert_int_equal(size, M);
        assert_digest_hex((lp_hash_alg)alg, d, million_a[alg]);
    }
    assert_int_equal(lp_hash_file(LP_HASH_SHA256, path, d, NULL, &err), LP_OK);

    /* Exactly two chunks plus one byte of filler: equals the one-shot digest. */
    enum { ODD = 2 * 65536 + 1 };
    uint8_t *odd = malloc(ODD);
    assert_non_null(odd);
    fill(odd, ODD);
    snprintf(path, sizeof path, "%s/odd", tmpdir);
    write_file(path, odd, ODD);
    uint8_t want[LP_HASH_MAX_LEN];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA512, odd, ODD, want, NULL), LP_OK);
    free(odd);
    assert_int_equal(lp_hash_file(LP_HASH_SHA512, path, d, &size, &err), LP_OK);
    assert_int_equal(size, ODD);
    assert_memory_equal(d, want, LP_SHA512_LEN);

    snprintf(path, sizeof path, "%s/empty", tmpdir);
    write_file(path, "", 0);
    size = 99;
    assert_int_equal(lp_hash_file(LP_HASH_SHA256, path, d, &size, &err), LP_OK);
    assert_int_equal(size, 0);
    assert_digest_hex(LP_HASH_SHA256, d, kats[0].hex);
}

static void test_hash_file_errors(void **state)
{
    (void)state;
    char path[512];
    lp_error err;
    uint8_t d[LP_HASH_MAX_LEN];
    uint64_t size = 42;

    snprintf(path, sizeof path, "%s/missing", tmpdir);
    assert_int_equal(lp_hash_file(LP_HASH_SHA256, path, d, &size, &err), LP_ERR_NOT_FOUND);
    assert_int_equal(err.code, LP_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(size, 42);

    /* A folder is not a file. */
    assert_int_equal(lp_hash_file(LP_HASH_SHA256, tmpdir, d, &size, &err), LP_ERR_IO);
    assert_non_null(strstr(err.msg, "not a regular file"));

    /* A FIFO with no writer must be refused at once, not block. */
    snprintf(path, sizeof path, "%s/fifo", tmpdir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(lp_hash_file(LP_HASH_SHA256, path, d, &size, &err), LP_ERR_IO);
    assert_non_null(strstr(err.msg, "not a regular file"));
}

/* --- hex and compare ---------------------------------------------------- */

static void test_hex_encode(void **state)
{
    (void)state;
    const uint8_t in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff};
    char out[2 * sizeof in + 1];
    memset(out, 'X', sizeof out);
    lp_hex_encode(in, sizeof in, out);
    assert_string_equal(out, "00017f80abcdefff");
    char empty[1] = {'X'};
    lp_hex_encode(in, 0, empty);
    assert_string_equal(empty, "");

    /* Every byte value round-trips. */
    uint8_t all[256], back[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    char hex[513];
    lp_hex_encode(all, sizeof all, hex);
    assert_int_equal(strlen(hex), 512);
    size_t n = 0;
    assert_int_equal(lp_hex_decode(hex, back, sizeof back, &n, NULL), LP_OK);
    assert_int_equal(n, 256);
    assert_memory_equal(all, back, sizeof all);
}

static void test_hex_decode(void **state)
{
    (void)state;
    uint8_t out[8];
    size_t n = 99;
    lp_error err;
    assert_int_equal(lp_hex_decode("00ffAb9C", out, sizeof out, &n, &err), LP_OK);
    assert_int_equal(n, 4);
    const uint8_t want[] = {0x00, 0xff, 0xab, 0x9c};
    assert_memory_equal(out, want, sizeof want);

    assert_int_equal(lp_hex_decode("", out, sizeof out, &n, &err), LP_OK);
    assert_int_equal(n, 0);
    /* Exactly the capacity fits. */
    assert_int_equal(lp_hex_decode("0102030405060708", out, sizeof out, &n, &err), LP_OK);
    assert_int_equal(n, 8);

    const char *malformed[] = {"0", "abc", "0g", "g0", "zz", " 00", "00 ", "0x00", "00\n",
                               "+1", "-1", "\xc3\xa9\xc3\xa9"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        n = 99;
        lp_error_clear(&err);
        memset(out, 0x5a, sizeof out);
        assert_int_equal(lp_hex_decode(malformed[i], out, sizeof out, &n, &err),
                         LP_ERR_MALFORMED);
        assert_int_equal(err.code, LP_ERR_MALFORMED);
        assert_true(err.msg[0] != '\0');
        assert_int_equal(n, 0);
        /* Nothing is written on failure. */
        for (size_t j = 0; j < sizeof out; j++)
            assert_int_equal(out[j], 0x5a);
    }
    assert_non_null(strstr((lp_hex_decode("0g", out, 8, &n, &err), err.msg), "offset 1"));
    assert_non_null(strstr((lp_hex_decode("abc", out, 8, &n, &err), err.msg), "odd length"));

    n = 99;
    assert_int_equal(lp_hex_decode("010203040506070809", out, sizeof out, &n, &err),
                     LP_ERR_TOO_LARGE);
    assert_int_equal(err.code, LP_ERR_TOO_LARGE);
    assert_int_equal(n, 0);
    assert_int_equal(lp_hex_decode("00", out, 0, &n, NULL), LP_ERR_TOO_LARGE);
}

static void test_mem_equal(void **state)
{
    (void)state;
    uint8_t a[64], b[64];
    fill(a, sizeof a);
    memcpy(b, a, sizeof a);
    assert_true(lp_mem_equal(a, b, sizeof a));
    assert_true(lp_mem_equal(a, b, 0));
    b[0] ^= 0x80;
    assert_false(lp_mem_equal(a, b, sizeof a));
    assert_true(lp_mem_equal(a + 1, b + 1, sizeof a - 1));
    b[0] ^= 0x80;
    b[63] ^= 0x01;
    assert_false(lp_mem_equal(a, b, sizeof a));
    assert_true(lp_mem_equal(a, b, 63));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alg_names),
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_million_a_streaming),
        cmocka_unit_test(test_streaming_equals_oneshot),
        cmocka_unit_test(test_use_after_final),
        cmocka_unit_test(test_hash_file),
        cmocka_unit_test(test_hash_file_errors),
        cmocka_unit_test(test_hex_encode),
        cmocka_unit_test(test_hex_decode),
        cmocka_unit_test(test_mem_equal),
    };
    return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
