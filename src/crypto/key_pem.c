/*
 * key_pem.c — keys as text: TUF public values and PKCS#8 PEM private keys
 * (see include/livepush/key.h; generation, sign and verify are in key.c).
 *
 * Design:
 *   - Public values: ed25519 is exactly 64 hex digits (the raw 32-byte key);
 *     ecdsa and rsa are a PEM SubjectPublicKeyInfo written by
 *     PEM_write_bio_PUBKEY: 64-column base64 and a final newline, the same
 *     text securesystemslib writes for the same key.  Public values come from
 *     signed but otherwise untrusted metadata, so they are parsed strictly:
 *     at most 16 KiB, starting with the "PUBLIC KEY" armour, no PEM headers,
 *     one DER SubjectPublicKeyInfo with no trailing bytes, nothing but white
 *     space after the END line.  OpenSSL checks that an EC point is on the
 *     curve while decoding it; lp_key_wrap then checks algorithm, curve and
 *     size, and the type must be the one the metadata named.
 *   - Private keys are read with PEM_read_bio_PrivateKey_ex and a passphrase
 *     callback that always refuses and records that it was asked.  So an
 *     encrypted key never makes OpenSSL prompt on a terminal, and the error
 *     says plainly that encrypted keys are not supported.  Input is bounded
 *     to 64 KiB (a PKCS#8 RSA-8192 key is about 6.5 KiB), files included.
 *   - Private keys are written with PEM_write_bio_PrivateKey without a
 *     cipher, which emits PKCS#8 ("BEGIN PRIVATE KEY").  The text is built in
 *     a secure-memory BIO and every copy this file makes is cleansed before
 *     it is freed; files go through lp_file_write_atomic with mode 0600, so a
 *     key file is never readable by others and never half-written.
 */
#include "core/file.h"
#include "crypto/key_priv.h"
#include "livepush/hash.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define PRIVATE_PEM_MAX (64u * 1024u)
#define ED25519_PUBLIC_LEN 32
/* An 8192-bit RSA SubjectPublicKeyInfo is about 1.5 KiB of PEM. */
#define PUBLIC_PEM_MAX (16u * 1024u)

static const char PUBLIC_PEM_BEGIN[] = "-----BEGIN PUBLIC KEY-----";

/* Copies a memory BIO's contents to a new NUL-terminated string and frees
 * the BIO.  `what` names the text for messages. */
static lp_status bio_to_string(BIO *bio, char **out, const char *what, lp_error *err)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *s = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (!s) {
        BIO_free(bio);
        return lp_error_set(err, n > 0 ? LP_ERR_NOMEM : LP_ERR_CRYPTO, "writing %s: %s", what,
                            n > 0 ? "out of memory" : "empty output");
    }
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(bio);
    *out = s;
    return LP_OK;
}

/* Parses a PEM SubjectPublicKeyInfo strictly (see the design notes). */
static lp_status parse_public_pem(const char *text, EVP_PKEY **out, lp_error *err)
{
    *out = NULL;
    size_t len = strnlen(text, PUBLIC_PEM_MAX + 1);
    if (len > PUBLIC_PEM_MAX)
        return lp_error_set(err, LP_ERR_MALFORMED, "PEM longer than %u bytes", PUBLIC_PEM_MAX);
    if (strncmp(text, PUBLIC_PEM_BEGIN, strlen(PUBLIC_PEM_BEGIN)) != 0)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "not a PEM SubjectPublicKeyInfo (does not start with \"%s\")",
                            PUBLIC_PEM_BEGIN);
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    if (!bio)
        return lp_crypto_fail(err, LP_ERR_NOMEM, "reading PEM");
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long der_len = 0;
    lp_status st = LP_OK;
    if (PEM_read_bio(bio, &name, &header, &der, &der_len) != 1) {
        st = lp_crypto_fail(err, LP_ERR_MALFORMED, "PEM unreadable");
        goto out;
    }
    if (strcmp(name, "PUBLIC KEY") != 0 || header[0] != '\0') {
        st = lp_error_set(err, LP_ERR_MALFORMED, "PEM has unexpected %s",
                          header[0] ? "headers" : "armour");
        goto out;
    }
    char *rest = NULL;
    long rest_len = BIO_get_mem_data(bio, &rest);
    for (long i = 0; i < rest_len; i++) {
        if (!strchr(" \t\r\n", rest[i])) {
            st = lp_error_set(err, LP_ERR_MALFORMED, "PEM: data after the END line");
            goto out;
        }
    }
    const unsigned char *p = der;
    EVP_PKEY *pkey = d2i_PUBKEY_ex(NULL, &p, der_len, NULL, NULL);
    if (!pkey) {
        st = lp_crypto_fail(err, LP_ERR_MALFORMED, "PEM: not a SubjectPublicKeyInfo");
        goto out;
    }
    if (p != der + der_len) {
        EVP_PKEY_free(pkey);
        st = lp_error_set(err, LP_ERR_MALFORMED, "PEM: bytes after the key");
        goto out;
    }
    *out = pkey;
out:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(bio);
    return st;
}

lp_status lp_key_from_public(lp_key **out, lp_key_type type, const char *public_value,
                             lp_error *err)
{
    *out = NULL;
    if ((unsigned)type > LP_KEY_RSA_PSS)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "key type %d unknown", (int)type);
    if (!public_value)
        return lp_error_set(err, LP_ERR_MALFORMED, "%s public key missing",
                            lp_key_type_name(type));
    EVP_PKEY *pkey = NULL;
    if (type == LP_KEY_ED25519) {
        uint8_t raw[ED25519_PUBLIC_LEN];
        size_t n = strnlen(public_value, 2 * ED25519_PUBLIC_LEN + 1);
        if (n > 2 * ED25519_PUBLIC_LEN)
            return lp_error_set(err, LP_ERR_MALFORMED,
                                "ed25519 public key: longer than %d hex digits",
                                2 * ED25519_PUBLIC_LEN);
        if (n < 2 * ED25519_PUBLIC_LEN)
            return lp_error_set(err, LP_ERR_MALFORMED,
                                "ed25519 public key: expected %d hex digits, got %zu",
                                2 * ED25519_PUBLIC_LEN, n);
        size_t got;
        lp_status st = lp_hex_decode(public_value, raw, sizeof raw, &got, err);
        if (st)
            return lp_error_prefix(err, LP_ERR_MALFORMED, "ed25519 public key");
        pkey = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, raw, sizeof raw);
        if (!pkey)
            return lp_crypto_fail(err, LP_ERR_MALFORMED, "ed25519 public key");
    } else {
        lp_status st = parse_public_pem(public_value, &pkey, err);
        if (st)
            return lp_error_prefix(err, st, "%s public key", lp_key_type_name(type));
    }
    lp_key *k;
    lp_status st = lp_key_wrap(pkey, false, LP_ERR_MALFORMED, &k, err);
    if (st)
        return lp_error_prefix(err, st, "%s public key", lp_key_type_name(type));
    if (k->type != type) {
        lp_key_type got = k->type;
        lp_key_free(k);
        return lp_error_set(err, LP_ERR_MALFORMED, "%s public key: the PEM holds a key of type %s",
                            lp_key_type_name(type), lp_key_type_name(got));
    }
    *out = k;
    return LP_OK;
}

lp_status lp_key_public_value(const lp_key *key, char **out, lp_error *err)
{
    *out = NULL;
    if (key->type == LP_KEY_ED25519) {
        uint8_t raw[ED25519_PUBLIC_LEN];
        size_t n = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(key->pkey, raw, &n) != 1 || n != sizeof raw)
            return lp_crypto_fail(err, LP_ERR_CRYPTO, "ed25519 public key");
        char *hex = malloc(2 * sizeof raw + 1);
        if (!hex)
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        lp_hex_encode(raw, sizeof raw, hex);
        *out = hex;
        return LP_OK;
    }
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return lp_crypto_fail(err, LP_ERR_NOMEM, "writing %s public key",
                              lp_key_type_name(key->type));
    if (PEM_write_bio_PUBKEY(bio, key->pkey) != 1) {
        BIO_free(bio);
        return lp_crypto_fail(err, LP_ERR_CRYPTO, "writing %s public key",
                              lp_key_type_name(key->type));
    }
    return bio_to_string(bio, out, "public key PEM", err);
}

/* Passphrase callback: records the request and refuses it. */
static int refuse_passphrase(char *buf, int size, int rwflag, void *asked)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    *(bool *)asked = true;
    return -1;
}

lp_status lp_key_from_private_pem(lp_key **out, const char *pem, size_t len, lp_error *err)
{
    *out = NULL;
    if (!pem)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "private key PEM missing");
    if (len > PRIVATE_PEM_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "private key PEM of %zu bytes exceeds the limit of %u", len,
                            PRIVATE_PEM_MAX);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return lp_crypto_fail(err, LP_ERR_NOMEM, "reading private key PEM");
    bool asked = false;
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, refuse_passphrase, &asked, NULL, NULL);
    BIO_free(bio);
    if (!pkey) {
        if (asked) {
            ERR_clear_error();
            return lp_error_set(err, LP_ERR_UNSUPPORTED,
                                "private key PEM is encrypted; only unencrypted PKCS#8 keys "
                                "are supported");
        }
        /* OpenSSL's reason here ("unsupported", "no start line") misleads
         * more than it helps, so the message states what was expected. */
        ERR_clear_error();
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "not a PEM private key (expected PKCS#8 \"BEGIN PRIVATE KEY\")");
    }
    lp_status st = lp_key_wrap(pkey, true, LP_ERR_UNSUPPORTED, out, err);
    if (st)
        return lp_error_prefix(err, st, "private key");
    return LP_OK;
}

lp_status lp_key_load_private_file(lp_key **out, const char *path, lp_error *err)
{
    *out = NULL;
    uint8_t *data;
    size_t len;
    lp_status st = lp_file_read(path, PRIVATE_PEM_MAX, &data, &len, err);
    if (st)
        return lp_error_prefix(err, st, "loading private key");
    st = lp_key_from_private_pem(out, (const char *)data, len, err);
    OPENSSL_cleanse(data, len);
    free(data);
    if (st)
        return lp_error_prefix(err, st, "loading private key %s", path);
    return LP_OK;
}

lp_status lp_key_private_pem(const lp_key *key, char **pem, lp_error *err)
{
    *pem = NULL;
    if (!key->has_private)
        return lp_error_set(err, LP_ERR_STATE, "%s key has no private half",
                            lp_key_type_name(key->type));
    BIO *bio = BIO_new(BIO_s_secmem());
    if (!bio)
        return lp_crypto_fail(err, LP_ERR_NOMEM, "writing private key PEM");
    if (PEM_write_bio_PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL, NULL) != 1) {
        BIO_free(bio);
        return lp_crypto_fail(err, LP_ERR_CRYPTO, "writing %s private key PEM",
                              lp_key_type_name(key->type));
    }
    /* BIO_free cleanses the secure-memory buffer. */
    return bio_to_string(bio, pem, "private key PEM", err);
}

lp_status lp_key_save_private_file(const lp_key *key, const char *path, lp_error *err)
{
    char *pem;
    lp_status st = lp_key_private_pem(key, &pem, err);
    if (st)
        return lp_error_prefix(err, st, "saving private key to %s", path);
    size_t len = strlen(pem);
    st = lp_file_write_atomic(path, pem, len, 0600, err);
    OPENSSL_cleanse(pem, len);
    free(pem);
    if (st)
        return lp_error_prefix(err, st, "saving private key");
    return LP_OK;
}
