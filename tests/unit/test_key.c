/*
 * test_key.c — signing keys: ed25519, ecdsa-sha2-nistp256, rsassa-pss-sha256.
 *
 * Checked against outside references, not only against itself:
 *   - RFC 8032 section 7.1 test vectors 1-3 (exact ed25519 signature bytes);
 *   - the independent TUF test keys in $LP_TUF_VECTORS (PKCS#8 PEM private
 *     keys and TUF public key objects written by securesystemslib): every
 *     key loads with the right type and gives back exactly the public value
 *     the vectors list;
 *   - the signatures on the vectors' metadata, made by python-tuf: all three
 *     types verify over the canonical bytes of `signed`, and ed25519
 *     re-signatures reproduce them byte for byte;
 *   - RSA-PSS signatures made here with EVP directly at salt lengths other
 *     than 32, which a TUF verifier must accept.
 * Every failure path (tampered data, garbage signatures of any length, bad
 * public values, bad or encrypted private PEMs) must give the documented
 * status and leave OpenSSL's error queue empty.
 */
#include "core/file.h"
#include "livepush/hash.h"
#include "livepush/key.h"
#include "testutil.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#define NTYPES 3
static const lp_key_type all_types[NTYPES] = {LP_KEY_ED25519, LP_KEY_ECDSA_P256, LP_KEY_RSA_PSS};

/* Keys generated once for the whole run (RSA-3072 generation is slow). */
static lp_key *gen[NTYPES];
static char *tmpdir;

static const char *vectors(void)
{
    return lp_test_vectors_dir();
}

static void assert_queue_empty(void)
{
    assert_int_equal(ERR_peek_error(), 0);
}

static void tmp_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static char *read_text(const char *path)
{
    char *text = (char *)lp_test_read_file(path, NULL);
    if (!text)
        fail_msg("cannot read %s", path);
    return text;
}

static void write_text(const char *path, const char *text, size_t len)
{
    assert_int_equal(lp_test_write_file(path, text, len), 0);
}

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    lp_error err;
    if (lp_hex_decode(hex, out, cap, &n, &err) != LP_OK)
        fail_msg("%s", err.msg);
    return n;
}

/* A mem BIO's contents as a new NUL-terminated string; frees the BIO. */
static char *bio_text(BIO *bio)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    assert_true(n > 0);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(bio);
    return s;
}

static char *evp_public_pem(EVP_PKEY *pkey)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
    return bio_text(bio);
}

static char *evp_private_pem(EVP_PKEY *pkey)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
    return bio_text(bio);
}

/* The key's private half as an OpenSSL key, through its PKCS#8 PEM. */
static EVP_PKEY *evp_of(const lp_key *key)
{
    char *pem;
    assert_int_equal(lp_key_private_pem(key, &pem, NULL), LP_OK);
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    free(pem);
    assert_non_null(pkey);
    return pkey;
}

/* A public-only lp_key for `key`, through its TUF public value. */
static lp_key *public_of(const lp_key *key)
{
    char *pub;
    lp_key *k;
    lp_error err;
    assert_int_equal(lp_key_public_value(key, &pub, &err), LP_OK);
    if (lp_key_from_public(&k, lp_key_get_type(key), pub, &err) != LP_OK)
        fail_msg("%s", err.msg);
    free(pub);
    assert_false(lp_key_has_private(k));
    return k;
}

static void expect_bad_signature(const lp_key *key, const void *msg, size_t len,
                                 const uint8_t *sig, size_t siglen)
{
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_key_verify(key, msg, len, sig, siglen, &err);
    if (st != LP_ERR_BAD_SIGNATURE)
        fail_msg("%s: signature of %zu bytes: got %s (%s), expected bad_signature",
                 lp_key_scheme_name(lp_key_get_type(key)), siglen, lp_status_name(st), err.msg);
    assert_int_equal(err.code, LP_ERR_BAD_SIGNATURE);
    assert_non_null(strstr(err.msg, lp_key_scheme_name(lp_key_get_type(key))));
    assert_queue_empty();
}

static int setup_group(void **state)
{
    (void)state;
    tmpdir = lp_test_tmpdir("key");
    if (!tmpdir)
        return -1;
    for (int i = 0; i < NTYPES; i++) {
        lp_error err;
        if (lp_key_generate(&gen[i], all_types[i], &err) != LP_OK) {
            fprintf(stderr, "generate: %s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

static int teardown_group(void **state)
{
    (void)state;
    for (int i = 0; i < NTYPES; i++)
        lp_key_free(gen[i]);
    int r = lp_test_rmtree(tmpdir);
    free(tmpdir);
    return r;
}

/* An RSA key whose SubjectPublicKeyInfo carries the id-RSASSA-PSS OID
 * rather than rsaEncryption. */
static EVP_PKEY *rsa_pss_oid_key(void)
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "RSA-PSS", NULL);
    assert_non_null(c);
    assert_int_equal(EVP_PKEY_keygen_init(c), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(c, 2048), 1);
    assert_int_equal(EVP_PKEY_generate(c, &pkey), 1);
    EVP_PKEY_CTX_free(c);
    return pkey;
}

/* --- names -------------------------------------------------------------- */

static void test_type_names(void **state)
{
    (void)state;
    lp_key_type t;
    lp_error err;
    const char *names[] = {"ed25519", "ecdsa", "rsa"};
    const char *schemes[] = {"ed25519", "ecdsa-sha2-nistp256", "rsassa-pss-sha256"};
    for (int i = 0; i < NTYPES; i++) {
        assert_string_equal(lp_key_type_name(all_types[i]), names[i]);
        assert_string_equal(lp_key_scheme_name(all_types[i]), schemes[i]);
        assert_int_equal(lp_key_type_from_names(names[i], schemes[i], &t, &err), LP_OK);
        assert_int_equal(t, all_types[i]);
        assert_int_equal(lp_key_type_from_name(names[i], &t, &err), LP_OK);
        assert_int_equal(t, all_types[i]);
    }
    assert_int_equal(lp_key_type_from_names("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256", &t, &err),
                     LP_OK);
    assert_int_equal(t, LP_KEY_ECDSA_P256);

    const char *bad[][2] = {
        {"ed25519", "ecdsa-sha2-nistp256"}, {"ecdsa", "ed25519"},
        {"rsa", "rsa-pkcs1v15-sha256"},     {"rsa", "rsassa-pss-sha512"},
        {"ecdsa", "ecdsa-sha2-nistp384"},   {"ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384"},
        {"RSA", "rsassa-pss-sha256"},       {"", ""},
        {"rsassa-pss-sha256", "rsa"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lp_error_clear(&err);
        assert_int_equal(lp_key_type_from_names(bad[i][0], bad[i][1], &t, &err),
                         LP_ERR_UNSUPPORTED);
        assert_int_equal(err.code, LP_ERR_UNSUPPORTED);
        char both[160];
        snprintf(both, sizeof both, "\"%s\" with scheme \"%s\"", bad[i][0], bad[i][1]);
        assert_non_null(strstr(err.msg, both));
    }
    assert_int_equal(lp_key_type_from_names(NULL, "ed25519", &t, NULL), LP_ERR_UNSUPPORTED);
    assert_int_equal(lp_key_type_from_names("ed25519", NULL, &t, NULL), LP_ERR_UNSUPPORTED);
    const char *badname[] = {"ED25519", "ecdsa-sha2-nistp256x", "dsa", "", "rsa "};
    for (size_t i = 0; i < sizeof badname / sizeof badname[0]; i++)
        assert_int_equal(lp_key_type_from_name(badname[i], &t, &err), LP_ERR_UNSUPPORTED);
    assert_int_equal(lp_key_type_from_name(NULL, &t, NULL), LP_ERR_UNSUPPORTED);
    assert_string_equal(lp_key_type_name((lp_key_type)9), "unknown");
}

/* --- RFC 8032 ----------------------------------------------------------- */

static void test_rfc8032_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *secret, *public, *msg, *sig;
    } v[] = {
        {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
         "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
         "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
        {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
         "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
         "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
        {"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
         "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
         "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
         "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t seed[32], msg[8], want[64];
        assert_int_equal(unhex(v[i].secret, seed, sizeof seed), 32);
        size_t mlen = unhex(v[i].msg, msg, sizeof msg);
        assert_int_equal(unhex(v[i].sig, want, sizeof want), 64);

        /* The seed goes through a PKCS#8 PEM, as a key file would. */
        EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
        assert_non_null(pkey);
        char *pem = evp_private_pem(pkey);
        EVP_PKEY_free(pkey);
        assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----\n"));
        lp_key *key;
        lp_error err;
        assert_int_equal(lp_key_from_private_pem(&key, pem, strlen(pem), &err), LP_OK);
        free(pem);
        assert_int_equal(lp_key_get_type(key), LP_KEY_ED25519);
        assert_true(lp_key_has_private(key));

        char *pub;
        assert_int_equal(lp_key_public_value(key, &pub, &err), LP_OK);
        assert_string_equal(pub, v[i].public);
        free(pub);

        uint8_t *sig;
        size_t siglen;
        assert_int_equal(lp_key_sign(key, msg, mlen, &sig, &siglen, &err), LP_OK);
        assert_int_equal(siglen, 64);
        assert_memory_equal(sig, want, 64);
        free(sig);

        /* The published public key alone verifies the published signature. */
        lp_key *pk;
        assert_int_equal(lp_key_from_public(&pk, LP_KEY_ED25519, v[i].public, &err), LP_OK);
        assert_int_equal(lp_key_verify(pk, msg, mlen, want, 64, &err), LP_OK);
        want[63] ^= 0x40;
        expect_bad_signature(pk, msg, mlen, want, 64);
        lp_key_free(pk);
        lp_key_free(key);
    }
}

/* --- sign / verify ------------------------------------------------------ */

static void test_sign_verify_all_types(void **state)
{
    (void)state;
    static const char text[] = "{\"signed\":{\"_type\":\"targets\",\"version\":7}}";
    for (int i = 0; i < NTYPES; i++) {
        lp_key *key = gen[i];
        lp_error err;
        assert_int_equal(lp_key_get_type(key), all_types[i]);
        assert_true(lp_key_has_private(key));
        lp_key *pub = public_of(key);
        assert_int_equal(lp_key_get_type(pub), all_types[i]);

        uint8_t *sig;
        size_t siglen;
        assert_int_equal(lp_key_sign(key, text, strlen(text), &sig, &siglen, &err), LP_OK);
        switch (all_types[i]) {
        case LP_KEY_ED25519: assert_int_equal(siglen, 64); break;
        case LP_KEY_ECDSA_P256:
            assert_in_range(siglen, 8, 72);
            assert_int_equal(sig[0], 0x30); /* DER SEQUENCE */
            assert_int_equal(sig[1], siglen - 2);
            break;
        case LP_KEY_RSA_PSS: assert_int_equal(siglen, 3072 / 8); break;
        }
        assert_int_equal(lp_key_verify(key, text, strlen(text), sig, siglen, &err), LP_OK);
        assert_int_equal(lp_key_verify(pub, text, strlen(text), sig, siglen, &err), LP_OK);

        /* Tampered message: one flipped bit anywhere, a byte more, a byte less. */
        char msg[sizeof text];
        memcpy(msg, text, sizeof text);
        const size_t spots[] = {0, sizeof text / 2, sizeof text - 2};
        for (size_t s = 0; s < 3; s++) {
            msg[spots[s]] ^= 0x01;
            expect_bad_signature(pub, msg, strlen(text), sig, siglen);
            msg[spots[s]] ^= 0x01;
        }
        expect_bad_signature(pub, text, strlen(text) - 1, sig, siglen);
        expect_bad_signature(pub, text, strlen(text) + 1, sig, siglen);
        expect_bad_signature(pub, text, 0, sig, siglen);

        /* Tampered signature: a flipped bit at the start, middle and end,
         * truncated, extended. */
        uint8_t *bad = malloc(siglen + 1);
        assert_non_null(bad);
        const size_t sspots[] = {0, 1, siglen / 2, siglen - 1};
        for (size_t s = 0; s < 4; s++) {
            memcpy(bad, sig, siglen);
            bad[sspots[s]] ^= 0x01;
            expect_bad_signature(pub, text, strlen(text), bad, siglen);
        }
        memcpy(bad, sig, siglen);
        bad[siglen] = 0;
        expect_bad_signature(pub, text, strlen(text), bad, siglen + 1);
        expect_bad_signature(pub, text, strlen(text), bad, siglen - 1);
        expect_bad_signature(pub, text, strlen(text), bad, 0);
        expect_bad_signature(pub, text, strlen(text), NULL, 0);
        free(bad);

        /* The right signature still verifies after all that. */
        assert_int_equal(lp_key_verify(pub, text, strlen(text), sig, siglen, &err), LP_OK);
        free(sig);

        /* Empty messages sign and verify too. */
        assert_int_equal(lp_key_sign(key, NULL, 0, &sig, &siglen, &err), LP_OK);
        assert_int_equal(lp_key_verify(pub, "", 0, sig, siglen, &err), LP_OK);
        expect_bad_signature(pub, "x", 1, sig, siglen);
        free(sig);

        /* A public key cannot sign. */
        sig = (uint8_t *)"not touched";
        assert_int_equal(lp_key_sign(pub, text, 1, &sig, &siglen, &err), LP_ERR_STATE);
        assert_int_equal(err.code, LP_ERR_STATE);
        assert_null(sig);
        assert_int_equal(siglen, 0);
        lp_key_free(pub);
    }
}

static void test_randomised_and_deterministic(void **state)
{
    (void)state;
    for (int i = 0; i < NTYPES; i++) {
        uint8_t *a, *b;
        size_t alen, blen;
        assert_int_equal(lp_key_sign(gen[i], "same", 4, &a, &alen, NULL), LP_OK);
        assert_int_equal(lp_key_sign(gen[i], "same", 4, &b, &blen, NULL), LP_OK);
        bool same = alen == blen && memcmp(a, b, alen) == 0;
        /* ed25519 is deterministic; ECDSA and PSS use fresh randomness. */
        assert_int_equal(same, all_types[i] == LP_KEY_ED25519);
        assert_int_equal(lp_key_verify(gen[i], "same", 4, a, alen, NULL), LP_OK);
        assert_int_equal(lp_key_verify(gen[i], "same", 4, b, blen, NULL), LP_OK);
        free(a);
        free(b);
    }
}

static void test_garbage_signatures(void **state)
{
    (void)state;
    static const char msg[] = "message";
    uint8_t junk[1024];
    for (int i = 0; i < NTYPES; i++) {
        lp_key *pub = public_of(gen[i]);
        /* Every length from 0 to 600 with patterned bytes, and all-zero /
         * all-one signatures of the exact expected size. */
        for (size_t n = 0; n <= 600; n++) {
            for (size_t j = 0; j < n; j++)
                junk[j] = (uint8_t)(j * 37 + n);
            expect_bad_signature(pub, msg, strlen(msg), junk, n);
        }
        const size_t sizes[] = {64, 70, 71, 72, 384, 512, sizeof junk};
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            memset(junk, 0, sizes[s]);
            expect_bad_signature(pub, msg, strlen(msg), junk, sizes[s]);
            memset(junk, 0xff, sizes[s]);
            expect_bad_signature(pub, msg, strlen(msg), junk, sizes[s]);
        }
        /* DER-shaped nonsense: r = s = 0, r = s = 1, lengths that overrun. */
        const uint8_t der[][10] = {
            {0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00},
            {0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01},
            {0x30, 0x80, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00, 0x00},
            {0x30, 0x7f, 0x02, 0x7e, 0x01},
            {0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02, 0x01},
        };
        for (size_t d = 0; d < sizeof der / sizeof der[0]; d++)
            expect_bad_signature(pub, msg, strlen(msg), der[d], sizeof der[d]);
        lp_key_free(pub);
    }
}

static void test_wrong_key(void **state)
{
    (void)state;
    static const char msg[] = "wrong key";
    lp_key *other[NTYPES];
    const char *vdir = vectors(); /* may skip: before anything is allocated */
    for (int i = 0; i < NTYPES; i++) {
        if (all_types[i] == LP_KEY_RSA_PSS) {
            char p[512];
            snprintf(p, sizeof p, "%s/keytypes/keys/keytypes-root-rsa.pem", vdir);
            assert_int_equal(lp_key_load_private_file(&other[i], p, NULL), LP_OK);
        } else {
            assert_int_equal(lp_key_generate(&other[i], all_types[i], NULL), LP_OK);
        }
    }
    for (int i = 0; i < NTYPES; i++) {
        uint8_t *sig;
        size_t siglen;
        assert_int_equal(lp_key_sign(gen[i], msg, strlen(msg), &sig, &siglen, NULL), LP_OK);
        /* Another key of the same type, and keys of the other types. */
        for (int j = 0; j < NTYPES; j++) {
            expect_bad_signature(other[j], msg, strlen(msg), sig, siglen);
            if (j != i)
                expect_bad_signature(gen[j], msg, strlen(msg), sig, siglen);
        }
        free(sig);
    }
    for (int i = 0; i < NTYPES; i++)
        lp_key_free(other[i]);
}

/* Signs msg with RSA-PSS/SHA-256 (or another digest / padding) directly
 * with EVP, independent of lp_key_sign. */
static size_t evp_rsa_sign(EVP_PKEY *pkey, int padding, const char *md, const char *mgf1,
                           int saltlen, const char *msg, uint8_t *sig, size_t cap)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx;
    assert_non_null(m);
    assert_int_equal(EVP_DigestSignInit_ex(m, &pctx, md, NULL, NULL, pkey, NULL), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, padding), 1);
    if (padding == RSA_PKCS1_PSS_PADDING) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, mgf1, NULL), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, saltlen), 1);
    }
    size_t n = cap;
    assert_int_equal(EVP_DigestSign(m, sig, &n, (const uint8_t *)msg, strlen(msg)), 1);
    EVP_MD_CTX_free(m);
    return n;
}

/* 1 if sig verifies as PSS/SHA-256/MGF1-SHA256 with exactly `saltlen`. */
static int evp_pss_verify_strict(EVP_PKEY *pkey, int saltlen, const char *msg, const uint8_t *sig,
                                 size_t siglen)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx;
    assert_non_null(m);
    assert_int_equal(EVP_DigestVerifyInit_ex(m, &pctx, "SHA256", NULL, NULL, pkey, NULL), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", NULL), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, saltlen), 1);
    int r = EVP_DigestVerify(m, sig, siglen, (const uint8_t *)msg, strlen(msg));
    EVP_MD_CTX_free(m);
    ERR_clear_error();
    return r == 1;
}

static void test_rsa_pss_salt_lengths(void **state)
{
    (void)state;
    static const char msg[] = "any salt is fine";
    char p[512];
    snprintf(p, sizeof p, "%s/keytypes/keys/keytypes-targets-rsa.pem", vectors());
    lp_key *vec;
    assert_int_equal(lp_key_load_private_file(&vec, p, NULL), LP_OK);
    const lp_key *keys[] = {gen[2], vec};
    for (size_t k = 0; k < 2; k++) {
        assert_int_equal(lp_key_get_type(keys[k]), LP_KEY_RSA_PSS);
        EVP_PKEY *pkey = evp_of(keys[k]);
        lp_key *pub = public_of(keys[k]);
        uint8_t sig[512];
        lp_error err;

        const int salts[] = {0, 1, 20, 32, 64, RSA_PSS_SALTLEN_MAX, RSA_PSS_SALTLEN_DIGEST};
        for (size_t s = 0; s < sizeof salts / sizeof salts[0]; s++) {
            size_t n = evp_rsa_sign(pkey, RSA_PKCS1_PSS_PADDING, "SHA256", "SHA256", salts[s], msg,
                                    sig, sizeof sig);
            if (lp_key_verify(pub, msg, strlen(msg), sig, n, &err) != LP_OK)
                fail_msg("salt length %d: %s", salts[s], err.msg);
            sig[n / 3] ^= 0x10;
            expect_bad_signature(pub, msg, strlen(msg), sig, n);
        }

        /* Other paddings and digests are not rsassa-pss-sha256. */
        size_t n = evp_rsa_sign(pkey, RSA_PKCS1_PADDING, "SHA256", NULL, 0, msg, sig, sizeof sig);
        expect_bad_signature(pub, msg, strlen(msg), sig, n);
        n = evp_rsa_sign(pkey, RSA_PKCS1_PSS_PADDING, "SHA512", "SHA256", 32, msg, sig, sizeof sig);
        expect_bad_signature(pub, msg, strlen(msg), sig, n);
        n = evp_rsa_sign(pkey, RSA_PKCS1_PSS_PADDING, "SHA256", "SHA1", 32, msg, sig, sizeof sig);
        expect_bad_signature(pub, msg, strlen(msg), sig, n);

        /* lp_key_sign uses exactly a 32-byte salt with MGF1-SHA256. */
        uint8_t *ours;
        size_t olen;
        assert_int_equal(lp_key_sign(keys[k], msg, strlen(msg), &ours, &olen, &err), LP_OK);
        assert_true(evp_pss_verify_strict(pkey, 32, msg, ours, olen));
        assert_false(evp_pss_verify_strict(pkey, 20, msg, ours, olen));
        assert_false(evp_pss_verify_strict(pkey, 0, msg, ours, olen));
        free(ours);

        EVP_PKEY_free(pkey);
        lp_key_free(pub);
    }
    lp_key_free(vec);
}

/* --- private key files -------------------------------------------------- */

static void test_private_roundtrip(void **state)
{
    (void)state;
    for (int i = 0; i < NTYPES; i++) {
        char path[256];
        tmp_path(path, sizeof path, lp_key_type_name(all_types[i]));
        lp_error err;
        /* Saved twice: the second save replaces the first atomically. */
        assert_int_equal(lp_key_save_private_file(gen[i], path, &err), LP_OK);
        assert_int_equal(lp_key_save_private_file(gen[i], path, &err), LP_OK);
        struct stat sb;
        assert_int_equal(stat(path, &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0600);

        char *text = read_text(path);
        assert_true(strncmp(text, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
        size_t tl = strlen(text);
        assert_string_equal(text + tl - 26, "-----END PRIVATE KEY-----\n");
        char *pem;
        assert_int_equal(lp_key_private_pem(gen[i], &pem, &err), LP_OK);
        assert_string_equal(pem, text);
        free(pem);
        free(text);

        lp_key *back;
        assert_int_equal(lp_key_load_private_file(&back, path, &err), LP_OK);
        assert_int_equal(lp_key_get_type(back), all_types[i]);
        assert_true(lp_key_has_private(back));
        char *p1, *p2;
        assert_int_equal(lp_key_public_value(gen[i], &p1, &err), LP_OK);
        assert_int_equal(lp_key_public_value(back, &p2, &err), LP_OK);
        assert_string_equal(p1, p2);
        free(p1);
        free(p2);

        /* The loaded key signs what the original verifies, and vice versa. */
        uint8_t *sig;
        size_t siglen;
        assert_int_equal(lp_key_sign(back, "round", 5, &sig, &siglen, &err), LP_OK);
        assert_int_equal(lp_key_verify(gen[i], "round", 5, sig, siglen, &err), LP_OK);
        free(sig);
        assert_int_equal(lp_key_sign(gen[i], "trip", 4, &sig, &siglen, &err), LP_OK);
        assert_int_equal(lp_key_verify(back, "trip", 4, sig, siglen, &err), LP_OK);
        free(sig);
        lp_key_free(back);

        /* A public-only key has nothing to save. */
        lp_key *pub = public_of(gen[i]);
        char other[256];
        tmp_path(other, sizeof other, "public-only.pem");
        assert_int_equal(lp_key_save_private_file(pub, other, &err), LP_ERR_STATE);
        assert_int_equal(err.code, LP_ERR_STATE);
        assert_false(lp_file_exists(other));
        pem = (char *)"untouched";
        assert_int_equal(lp_key_private_pem(pub, &pem, &err), LP_ERR_STATE);
        assert_null(pem);
        lp_key_free(pub);
    }
    /* A folder that does not exist is an I/O error naming the path. */
    char path[256];
    tmp_path(path, sizeof path, "no/such/dir/key.pem");
    lp_error err;
    assert_int_equal(lp_key_save_private_file(gen[0], path, &err), LP_ERR_IO);
    assert_non_null(strstr(err.msg, "no/such/dir"));
}

static void expect_private_pem_fails(const char *pem, size_t len, lp_status want,
                                     const char *msg_part)
{
    lp_key *k = (lp_key *)&k;
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_key_from_private_pem(&k, pem, len, &err);
    if (st != want)
        fail_msg("expected %s, got %s (%s)", lp_status_name(want), lp_status_name(st), err.msg);
    assert_int_equal(err.code, want);
    assert_null(k);
    if (msg_part && !strstr(err.msg, msg_part))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, msg_part);
    assert_queue_empty();
}

static void test_private_errors(void **state)
{
    (void)state;
    lp_error err;
    lp_key *k;
    char path[256];

    tmp_path(path, sizeof path, "missing.pem");
    assert_int_equal(lp_key_load_private_file(&k, path, &err), LP_ERR_NOT_FOUND);
    assert_null(k);
    assert_non_null(strstr(err.msg, "missing.pem"));

    /* Files past 64 KiB are refused before parsing. */
    char *pem;
    assert_int_equal(lp_key_private_pem(gen[0], &pem, NULL), LP_OK);
    size_t pl = strlen(pem);
    size_t big = 64 * 1024 + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, '\n', big);
    memcpy(huge, pem, pl);
    tmp_path(path, sizeof path, "huge.pem");
    write_text(path, huge, big);
    assert_int_equal(lp_key_load_private_file(&k, path, &err), LP_ERR_TOO_LARGE);
    expect_private_pem_fails(huge, big, LP_ERR_TOO_LARGE, NULL);
    /* ... but the same key with a little trailing space is fine. */
    assert_int_equal(lp_key_from_private_pem(&k, huge, pl + 100, &err), LP_OK);
    lp_key_free(k);
    free(huge);

    /* Not PEM, truncated PEM, a public key, a damaged body. */
    tmp_path(path, sizeof path, "garbage.pem");
    write_text(path, "hello\n", 6);
    assert_int_equal(lp_key_load_private_file(&k, path, &err), LP_ERR_MALFORMED);
    assert_null(k);
    assert_non_null(strstr(err.msg, "garbage.pem"));
    assert_queue_empty();
    expect_private_pem_fails("", 0, LP_ERR_MALFORMED, "not a PEM private key");
    expect_private_pem_fails(pem, pl / 2, LP_ERR_MALFORMED, NULL);
    char *damaged = strdup(pem);
    assert_non_null(damaged);
    damaged[40] = damaged[40] == 'A' ? 'B' : 'A';
    damaged[41] = '*';
    expect_private_pem_fails(damaged, pl, LP_ERR_MALFORMED, NULL);
    free(damaged);
    free(pem);
    char *pub;
    assert_int_equal(lp_key_public_value(gen[1], &pub, NULL), LP_OK);
    expect_private_pem_fails(pub, strlen(pub), LP_ERR_MALFORMED, NULL);
    free(pub);

    /* Encrypted keys (PKCS#8 and traditional) are refused plainly, without
     * ever asking for a passphrase. */
    EVP_PKEY *pkey = evp_of(gen[1]);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PKCS8PrivateKey(bio, pkey, EVP_aes_256_cbc(), NULL, 0, NULL,
                                                   (void *)"secret"),
                     1);
    char *enc = bio_text(bio);
    assert_non_null(strstr(enc, "BEGIN ENCRYPTED PRIVATE KEY"));
    expect_private_pem_fails(enc, strlen(enc), LP_ERR_UNSUPPORTED, "encrypted");
    tmp_path(path, sizeof path, "encrypted.pem");
    write_text(path, enc, strlen(enc));
    assert_int_equal(lp_key_load_private_file(&k, path, &err), LP_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "encrypted"));
    free(enc);
    bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey_traditional(bio, pkey, EVP_aes_128_cbc(),
                                                          (unsigned char *)"secret", 6, NULL, NULL),
                     1);
    enc = bio_text(bio);
    assert_non_null(strstr(enc, "ENCRYPTED"));
    expect_private_pem_fails(enc, strlen(enc), LP_ERR_UNSUPPORTED, "encrypted");
    free(enc);
    EVP_PKEY_free(pkey);

    /* Keys of other algorithms, curves and sizes are unsupported. */
    EVP_PKEY *others[] = {
        EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"),
        EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1"),
        EVP_PKEY_Q_keygen(NULL, NULL, "ED448"),
        EVP_PKEY_Q_keygen(NULL, NULL, "X25519"),
        EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024),
        rsa_pss_oid_key(),
    };
    const char *why[] = {"secp384r1", "secp256k1", "ED448", "X25519", "1024 bits", "RSA-PSS"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        assert_non_null(others[i]);
        char *text = evp_private_pem(others[i]);
        expect_private_pem_fails(text, strlen(text), LP_ERR_UNSUPPORTED, why[i]);
        free(text);
        EVP_PKEY_free(others[i]);
    }
}

/* --- public values ------------------------------------------------------ */

static void test_public_roundtrip(void **state)
{
    (void)state;
    for (int i = 0; i < NTYPES; i++) {
        lp_error err;
        char *value;
        assert_int_equal(lp_key_public_value(gen[i], &value, &err), LP_OK);
        if (all_types[i] == LP_KEY_ED25519) {
            assert_int_equal(strlen(value), 64);
            assert_int_equal(strspn(value, "0123456789abcdef"), 64);
        } else {
            /* Exactly what OpenSSL writes for the SubjectPublicKeyInfo. */
            EVP_PKEY *pkey = evp_of(gen[i]);
            char *want = evp_public_pem(pkey);
            EVP_PKEY_free(pkey);
            assert_string_equal(value, want);
            free(want);
            assert_true(strncmp(value, "-----BEGIN PUBLIC KEY-----\n", 27) == 0);
            size_t n = strlen(value);
            assert_string_equal(value + n - 25, "-----END PUBLIC KEY-----\n");
        }
        lp_key *pub;
        assert_int_equal(lp_key_from_public(&pub, all_types[i], value, &err), LP_OK);
        assert_int_equal(lp_key_get_type(pub), all_types[i]);
        assert_false(lp_key_has_private(pub));
        char *again;
        assert_int_equal(lp_key_public_value(pub, &again, &err), LP_OK);
        assert_string_equal(again, value);
        free(again);
        lp_key_free(pub);

        if (all_types[i] == LP_KEY_ED25519) {
            /* Upper-case hex names the same key. */
            for (char *c = value; *c; c++)
                if (*c >= 'a' && *c <= 'f')
                    *c = (char)(*c - 'a' + 'A');
            assert_int_equal(lp_key_from_public(&pub, all_types[i], value, &err), LP_OK);
            assert_int_equal(lp_key_public_value(pub, &again, &err), LP_OK);
            assert_int_equal(strspn(again, "0123456789abcdef"), 64);
            free(again);
            lp_key_free(pub);
        } else {
            /* CRLF line ends and no final newline still read as the same key. */
            char crlf[4096];
            size_t o = 0;
            for (const char *c = value; *c; c++) {
                assert_true(o + 2 < sizeof crlf);
                if (*c == '\n')
                    crlf[o++] = '\r';
                crlf[o++] = *c;
            }
            crlf[o - 2] = '\0'; /* drop the final CRLF */
            assert_int_equal(lp_key_from_public(&pub, all_types[i], crlf, &err), LP_OK);
            assert_int_equal(lp_key_public_value(pub, &again, &err), LP_OK);
            assert_string_equal(again, value);
            free(again);
            lp_key_free(pub);
        }
        free(value);
    }
}

static void expect_public_malformed(lp_key_type type, const char *value, const char *why)
{
    lp_key *k = (lp_key *)&k;
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_key_from_public(&k, type, value, &err);
    if (st != LP_ERR_MALFORMED)
        fail_msg("%s: %s: got %s (%s), expected malformed", lp_key_type_name(type), why,
                 lp_status_name(st), err.msg);
    assert_int_equal(err.code, LP_ERR_MALFORMED);
    assert_null(k);
    assert_non_null(strstr(err.msg, lp_key_type_name(type)));
    assert_queue_empty();
}

static void test_bad_public_values(void **state)
{
    (void)state;
    char *ed, *ec, *rsa;
    assert_int_equal(lp_key_public_value(gen[0], &ed, NULL), LP_OK);
    assert_int_equal(lp_key_public_value(gen[1], &ec, NULL), LP_OK);
    assert_int_equal(lp_key_public_value(gen[2], &rsa, NULL), LP_OK);
    char buf[8192];

    /* ed25519: 64 hex digits and nothing else. */
    expect_public_malformed(LP_KEY_ED25519, "", "empty");
    expect_public_malformed(LP_KEY_ED25519, NULL, "missing");
    snprintf(buf, sizeof buf, "%.62s", ed);
    expect_public_malformed(LP_KEY_ED25519, buf, "62 digits");
    snprintf(buf, sizeof buf, "%s00", ed);
    expect_public_malformed(LP_KEY_ED25519, buf, "66 digits");
    snprintf(buf, sizeof buf, "%s0", ed);
    expect_public_malformed(LP_KEY_ED25519, buf, "65 digits");
    snprintf(buf, sizeof buf, "%.63sg", ed);
    expect_public_malformed(LP_KEY_ED25519, buf, "non-hex");
    snprintf(buf, sizeof buf, " %.63s", ed);
    expect_public_malformed(LP_KEY_ED25519, buf, "leading space");
    snprintf(buf, sizeof buf, "%s\n", ed);
    expect_public_malformed(LP_KEY_ED25519, buf, "trailing newline");
    expect_public_malformed(LP_KEY_ED25519, ec, "a PEM");

    /* ecdsa and rsa: one PEM SubjectPublicKeyInfo of the right kind. */
    const lp_key_type pem_types[] = {LP_KEY_ECDSA_P256, LP_KEY_RSA_PSS};
    for (int t = 0; t < 2; t++) {
        lp_key_type ty = pem_types[t];
        const char *good = ty == LP_KEY_ECDSA_P256 ? ec : rsa;
        const char *other = ty == LP_KEY_ECDSA_P256 ? rsa : ec;
        expect_public_malformed(ty, "", "empty");
        expect_public_malformed(ty, "garbage", "garbage");
        expect_public_malformed(ty, ed, "ed25519 hex");
        expect_public_malformed(ty, other, "a key of the other type");
        expect_public_malformed(ty, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                                "junk DER");
        expect_public_malformed(ty, "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
                                "empty body");
        snprintf(buf, sizeof buf, "%.60s", good);
        expect_public_malformed(ty, buf, "truncated");
        snprintf(buf, sizeof buf, "junk\n%s", good);
        expect_public_malformed(ty, buf, "text before");
        snprintf(buf, sizeof buf, "%sjunk\n", good);
        expect_public_malformed(ty, buf, "text after");
        snprintf(buf, sizeof buf, "%s%s", good, good);
        expect_public_malformed(ty, buf, "two keys");
        /* A PEM header line inside the armour. */
        snprintf(buf, sizeof buf, "-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\n\n%s",
                 good + 27);
        expect_public_malformed(ty, buf, "PEM headers");
        /* Another armour label with the same body. */
        snprintf(buf, sizeof buf,
                 "-----BEGIN RSA PUBLIC KEY-----\n%.*s-----END RSA PUBLIC KEY-----\n",
                 (int)(strlen(good) - 27 - 25), good + 27);
        expect_public_malformed(ty, buf, "RSA PUBLIC KEY armour");
        /* One changed base64 digit in the body. */
        snprintf(buf, sizeof buf, "%s", good);
        buf[40] = buf[40] == 'A' ? 'B' : 'A';
        buf[41] = buf[41] == '/' ? '+' : '/';
        lp_key *k;
        lp_status st = lp_key_from_public(&k, ty, buf, NULL);
        /* (Either rejected, or a different valid key: never the same one.) */
        if (st == LP_OK) {
            char *v;
            assert_int_equal(lp_key_public_value(k, &v, NULL), LP_OK);
            assert_string_not_equal(v, good);
            free(v);
            lp_key_free(k);
        } else {
            assert_int_equal(st, LP_ERR_MALFORMED);
        }
        ERR_clear_error();
        /* A private key is not a public value. */
        char *priv;
        assert_int_equal(lp_key_private_pem(gen[ty], &priv, NULL), LP_OK);
        expect_public_malformed(ty, priv, "private PEM");
        free(priv);
    }

    /* Wrong curves, algorithms and sizes inside a well-formed PEM. */
    struct {
        lp_key_type type;
        EVP_PKEY *pkey;
        const char *why;
    } wrong[] = {
        {LP_KEY_ECDSA_P256, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"), "P-384"},
        {LP_KEY_ECDSA_P256, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521"), "P-521"},
        {LP_KEY_ECDSA_P256, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1"), "secp256k1"},
        {LP_KEY_ECDSA_P256, EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), "ed25519 SPKI"},
        {LP_KEY_RSA_PSS, EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), "ed25519 SPKI"},
        {LP_KEY_RSA_PSS, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024), "RSA-1024"},
        {LP_KEY_RSA_PSS, rsa_pss_oid_key(), "RSA-PSS OID"},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        assert_non_null(wrong[i].pkey);
        char *pem = evp_public_pem(wrong[i].pkey);
        expect_public_malformed(wrong[i].type, pem, wrong[i].why);
        free(pem);
        EVP_PKEY_free(wrong[i].pkey);
    }

    /* A P-256 point that is not on the curve. */
    EVP_PKEY *p256 = evp_of(gen[1]);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(i2d_PUBKEY_bio(bio, p256), 1);
    EVP_PKEY_free(p256);
    unsigned char *der;
    long dlen = BIO_get_mem_data(bio, (char **)&der);
    assert_int_equal(dlen, 91);
    der[dlen - 1] ^= 0x01; /* last byte of y */
    BIO *pem_bio = BIO_new(BIO_s_mem());
    assert_true(PEM_write_bio(pem_bio, "PUBLIC KEY", "", der, dlen) > 0);
    BIO_free(bio);
    char *off_curve = bio_text(pem_bio);
    expect_public_malformed(LP_KEY_ECDSA_P256, off_curve, "point off the curve");
    free(off_curve);

    /* Over-long values are refused without parsing. */
    char *huge = malloc(100000);
    assert_non_null(huge);
    memset(huge, 'A', 99999);
    huge[99999] = '\0';
    memcpy(huge, "-----BEGIN PUBLIC KEY-----\n", 27);
    expect_public_malformed(LP_KEY_RSA_PSS, huge, "huge");
    free(huge);

    free(ed);
    free(ec);
    free(rsa);
}

/* --- the independent TUF test vectors ----------------------------------- */

static json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        fail_msg("%s: %s", path, je.text);
    return j;
}

/* Checks every key of a vectors keys folder; returns how many. */
static int check_vector_keys(const char *case_name)
{
    char dir[512], p[1024];
    snprintf(dir, sizeof dir, "%s/%s/keys", vectors(), case_name);
    snprintf(p, sizeof p, "%s/keys.json", dir);
    json_t *index = load_json(p);
    const char *label;
    json_t *info;
    int count = 0;
    json_object_foreach(index, label, info) {
        const char *keytype = json_string_value(json_object_get(info, "keytype"));
        const char *scheme = json_string_value(json_object_get(info, "scheme"));
        const char *priv = json_string_value(json_object_get(info, "private_key"));
        const char *pubf = json_string_value(json_object_get(info, "public_key"));
        assert_non_null(keytype);
        assert_non_null(scheme);
        assert_non_null(priv);
        assert_non_null(pubf);
        lp_key_type want;
        lp_error err;
        assert_int_equal(lp_key_type_from_names(keytype, scheme, &want, &err), LP_OK);

        snprintf(p, sizeof p, "%s/%s", dir, pubf);
        json_t *pubj = load_json(p);
        assert_string_equal(json_string_value(json_object_get(pubj, "keytype")), keytype);
        assert_string_equal(json_string_value(json_object_get(pubj, "scheme")), scheme);
        const char *pubval =
            json_string_value(json_object_get(json_object_get(pubj, "keyval"), "public"));
        assert_non_null(pubval);

        snprintf(p, sizeof p, "%s/%s", dir, priv);
        lp_key *key;
        if (lp_key_load_private_file(&key, p, &err) != LP_OK)
            fail_msg("%s: %s", label, err.msg);
        assert_int_equal(lp_key_get_type(key), want);
        assert_true(lp_key_has_private(key));
        char *value;
        assert_int_equal(lp_key_public_value(key, &value, &err), LP_OK);
        if (strcmp(value, pubval) != 0)
            fail_msg("%s: public value\n%s\ndiffers from the vectors'\n%s", label, value, pubval);
        free(value);

        /* The vectors' public value alone verifies what the key signs. */
        lp_key *pub;
        if (lp_key_from_public(&pub, want, pubval, &err) != LP_OK)
            fail_msg("%s: %s", label, err.msg);
        uint8_t *sig;
        size_t siglen;
        assert_int_equal(lp_key_sign(key, label, strlen(label), &sig, &siglen, &err), LP_OK);
        assert_int_equal(lp_key_verify(pub, label, strlen(label), sig, siglen, &err), LP_OK);
        expect_bad_signature(pub, label, strlen(label) - 1, sig, siglen);
        free(sig);
        lp_key_free(pub);
        lp_key_free(key);
        json_decref(pubj);
        count++;
    }
    json_decref(index);
    return count;
}

static void test_vector_keys(void **state)
{
    (void)state;
    assert_int_equal(check_vector_keys("keytypes"), 6);
    assert_int_equal(check_vector_keys("basic"), 4);
}

/* The bytes a vectors metadata file's signatures cover.  The files are
 * python-tuf's compact form, {"signatures":[...],"signed":{...}} with sorted
 * keys and no whitespace, which equals canonical JSON except that a newline
 * inside a string is written as the escape \n (see the vectors' README).
 * The only escapes allowed here are \n, so the mapping is exact. */
static char *signed_bytes(const char *file_text, size_t *len)
{
    const char *start = strstr(file_text, "],\"signed\":");
    assert_non_null(start);
    start += strlen("],\"signed\":");
    size_t n = strlen(start);
    assert_true(n > 0 && start[n - 1] == '}');
    n--; /* the envelope's closing brace */
    char *out = malloc(n + 1);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (start[i] == '\\') {
            assert_int_equal(start[i + 1], 'n');
            out[o++] = '\n';
            i++;
        } else {
            out[o++] = start[i];
        }
    }
    out[o] = '\0';
    *len = o;
    return out;
}

static void test_vector_signatures(void **state)
{
    (void)state;
    char dir[512], p[1024];
    snprintf(dir, sizeof dir, "%s/keytypes", vectors());
    snprintf(p, sizeof p, "%s/keys/keys.json", dir);
    json_t *index = load_json(p);
    const char *files[] = {"1.root.json", "1.snapshot.json", "1.targets.json", "timestamp.json"};
    int verified[NTYPES] = {0};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        snprintf(p, sizeof p, "%s/metadata/%s", dir, files[f]);
        char *text = read_text(p);
        size_t mlen;
        char *msg = signed_bytes(text, &mlen);
        json_t *md = load_json(p);
        json_t *sigs = json_object_get(md, "signatures");
        assert_true(json_array_size(sigs) > 0);
        size_t i;
        json_t *s;
        json_array_foreach(sigs, i, s) {
            const char *keyid = json_string_value(json_object_get(s, "keyid"));
            const char *sighex = json_string_value(json_object_get(s, "sig"));
            const char *label = NULL;
            json_t *info = NULL, *v;
            json_object_foreach(index, label, v) {
                if (!strcmp(json_string_value(json_object_get(v, "keyid")), keyid)) {
                    info = v;
                    break;
                }
            }
            assert_non_null(info);
            snprintf(p, sizeof p, "%s/keys/%s", dir,
                     json_string_value(json_object_get(info, "public_key")));
            json_t *pubj = load_json(p);
            lp_key_type type;
            lp_error err;
            assert_int_equal(
                lp_key_type_from_names(json_string_value(json_object_get(pubj, "keytype")),
                                       json_string_value(json_object_get(pubj, "scheme")), &type,
                                       &err),
                LP_OK);
            lp_key *pub;
            assert_int_equal(
                lp_key_from_public(
                    &pub, type,
                    json_string_value(json_object_get(json_object_get(pubj, "keyval"), "public")),
                    &err),
                LP_OK);
            uint8_t sig[1024];
            size_t siglen = unhex(sighex, sig, sizeof sig);
            if (lp_key_verify(pub, msg, mlen, sig, siglen, &err) != LP_OK)
                fail_msg("%s signed by %s: %s", files[f], label, err.msg);
            verified[type]++;
            /* One changed byte of the metadata breaks it. */
            msg[mlen / 2] ^= 0x20;
            expect_bad_signature(pub, msg, mlen, sig, siglen);
            msg[mlen / 2] ^= 0x20;

            if (type == LP_KEY_ED25519) {
                /* Deterministic: re-signing reproduces the vectors' bytes. */
                snprintf(p, sizeof p, "%s/keys/%s", dir,
                         json_string_value(json_object_get(info, "private_key")));
                lp_key *key;
                assert_int_equal(lp_key_load_private_file(&key, p, &err), LP_OK);
                uint8_t *mine;
                size_t minelen;
                assert_int_equal(lp_key_sign(key, msg, mlen, &mine, &minelen, &err), LP_OK);
                assert_int_equal(minelen, siglen);
                assert_memory_equal(mine, sig, siglen);
                free(mine);
                lp_key_free(key);
            }
            lp_key_free(pub);
            json_decref(pubj);
        }
        json_decref(md);
        free(msg);
        free(text);
    }
    /* root carries one signature of each type; the others one each. */
    assert_int_equal(verified[LP_KEY_ED25519], 2);
    assert_int_equal(verified[LP_KEY_ECDSA_P256], 2);
    assert_int_equal(verified[LP_KEY_RSA_PSS], 2);
    json_decref(index);
}

static void test_ed25519_vector_determinism(void **state)
{
    (void)state;
    char p[512];
    snprintf(p, sizeof p, "%s/basic/keys/basic-root.pem", vectors());
    lp_key *key;
    lp_error err;
    assert_int_equal(lp_key_load_private_file(&key, p, &err), LP_OK);
    assert_int_equal(lp_key_get_type(key), LP_KEY_ED25519);
    static const char msg[] = "livepush fixed message";
    uint8_t *a, *b;
    size_t alen, blen;
    assert_int_equal(lp_key_sign(key, msg, strlen(msg), &a, &alen, &err), LP_OK);
    assert_int_equal(lp_key_sign(key, msg, strlen(msg), &b, &blen, &err), LP_OK);
    assert_int_equal(alen, 64);
    assert_int_equal(blen, 64);
    assert_memory_equal(a, b, 64);

    /* Equal to what OpenSSL's own EVP signer makes from the same PEM. */
    char *text = read_text(p);
    BIO *bio = BIO_new_mem_buf(text, -1);
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    free(text);
    assert_non_null(pkey);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit_ex(m, NULL, NULL, NULL, NULL, pkey, NULL), 1);
    uint8_t ref[64];
    size_t rlen = sizeof ref;
    assert_int_equal(EVP_DigestSign(m, ref, &rlen, (const uint8_t *)msg, strlen(msg)), 1);
    EVP_MD_CTX_free(m);
    EVP_PKEY_free(pkey);
    assert_int_equal(rlen, 64);
    assert_memory_equal(a, ref, 64);

    lp_key *pub = public_of(key);
    assert_int_equal(lp_key_verify(pub, msg, strlen(msg), a, alen, &err), LP_OK);
    lp_key_free(pub);
    free(a);
    free(b);
    lp_key_free(key);
    lp_key_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_rfc8032_vectors),
        cmocka_unit_test(test_sign_verify_all_types),
        cmocka_unit_test(test_randomised_and_deterministic),
        cmocka_unit_test(test_garbage_signatures),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_rsa_pss_salt_lengths),
        cmocka_unit_test(test_private_roundtrip),
        cmocka_unit_test(test_private_errors),
        cmocka_unit_test(test_public_roundtrip),
        cmocka_unit_test(test_bad_public_values),
        cmocka_unit_test(test_vector_keys),
        cmocka_unit_test(test_vector_signatures),
        cmocka_unit_test(test_ed25519_vector_determinism),
    };
    return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
