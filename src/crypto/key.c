/*
 * key.c — signing keys: names, generation, sign and verify (see
 * include/livepush/key.h; the text forms of keys, private PEM and TUF public
 * values, are in key_pem.c).
 *
 * Design:
 *   - Only OpenSSL 3 EVP interfaces.  The per-type differences are confined
 *     to lp_key_wrap/classify (what an acceptable key is) and setup_ctx
 *     (digest and RSA-PSS parameters); everything else is type-agnostic.
 *   - RSA-PSS: SHA-256 with MGF1-SHA256.  Signing uses a 32-byte salt (the
 *     digest length); verification uses RSA_PSS_SALTLEN_AUTO, so a signature
 *     with any salt length is accepted, as TUF verifiers must.
 *   - Verification never reports a bad signature as a library failure:
 *     whatever the bytes (empty, truncated, not DER, wrong length), the
 *     answer is LP_ERR_BAD_SIGNATURE and OpenSSL's error queue is emptied.
 *     Only failing to set up the operation is LP_ERR_CRYPTO.
 *   - A key is never modified after creation; each sign or verify uses its
 *     own EVP_MD_CTX, so one key may serve many threads.
 */
#include "crypto/key_priv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/rsa.h>

#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192
#define RSA_GENERATE_BITS 3072
#define RSA_PSS_SIGN_SALT 32

static const struct {
    const char *type_name;
    const char *scheme;
} key_names[] = {
    [LP_KEY_ED25519] = {"ed25519", "ed25519"},
    [LP_KEY_ECDSA_P256] = {"ecdsa", "ecdsa-sha2-nistp256"},
    [LP_KEY_RSA_PSS] = {"rsa", "rsassa-pss-sha256"},
};

static bool type_valid(lp_key_type type)
{
    return (unsigned)type < sizeof key_names / sizeof key_names[0];
}

lp_status lp_crypto_fail(lp_error *err, lp_status code, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_peek_last_error();
    char reason[256] = "no detail from the crypto library";
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    return lp_error_set(err, code, "%s: %s", what, reason);
}

const char *lp_key_type_name(lp_key_type type)
{
    return type_valid(type) ? key_names[type].type_name : "unknown";
}

const char *lp_key_scheme_name(lp_key_type type)
{
    return type_valid(type) ? key_names[type].scheme : "unknown";
}

lp_status lp_key_type_from_names(const char *keytype, const char *scheme, lp_key_type *type,
                                 lp_error *err)
{
    if (keytype && scheme) {
        for (size_t i = 0; i < sizeof key_names / sizeof key_names[0]; i++) {
            if (strcmp(scheme, key_names[i].scheme) != 0)
                continue;
            /* "ecdsa-sha2-nistp256" is an older spelling of keytype "ecdsa". */
            if (!strcmp(keytype, key_names[i].type_name) ||
                (i == LP_KEY_ECDSA_P256 && !strcmp(keytype, "ecdsa-sha2-nistp256"))) {
                *type = (lp_key_type)i;
                return LP_OK;
            }
        }
    }
    return lp_error_set(err, LP_ERR_UNSUPPORTED,
                        "key type \"%.64s\" with scheme \"%.64s\" not supported",
                        keytype ? keytype : "(missing)", scheme ? scheme : "(missing)");
}

lp_status lp_key_type_from_name(const char *name, lp_key_type *type, lp_error *err)
{
    for (size_t i = 0; name && i < sizeof key_names / sizeof key_names[0]; i++) {
        if (!strcmp(name, key_names[i].type_name)) {
            *type = (lp_key_type)i;
            return LP_OK;
        }
    }
    return lp_error_set(err, LP_ERR_UNSUPPORTED,
                        "key type \"%.64s\" not supported (expected ed25519, ecdsa or rsa)",
                        name ? name : "(missing)");
}

static lp_status classify(const EVP_PKEY *pkey, lp_status bad_code, lp_key_type *type,
                          lp_error *err)
{
    if (EVP_PKEY_is_a(pkey, "ED25519")) {
        *type = LP_KEY_ED25519;
        return LP_OK;
    }
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64];
        size_t glen = 0;
        if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) != 1) {
            ERR_clear_error();
            return lp_error_set(err, bad_code,
                                "EC key without a named curve not supported (need P-256)");
        }
        if (strcmp(group, SN_X9_62_prime256v1) != 0)
            return lp_error_set(err, bad_code, "EC key on curve %s not supported (need P-256)",
                                group);
        *type = LP_KEY_ECDSA_P256;
        return LP_OK;
    }
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS)
            return lp_error_set(err, bad_code, "RSA key of %d bits not supported (need %d to %d)",
                                bits, RSA_MIN_BITS, RSA_MAX_BITS);
        *type = LP_KEY_RSA_PSS;
        return LP_OK;
    }
    const char *name = EVP_PKEY_get0_type_name(pkey);
    return lp_error_set(err, bad_code, "%s key not supported (need ed25519, ecdsa P-256 or rsa)",
                        name ? name : "unknown");
}

lp_status lp_key_wrap(EVP_PKEY *pkey, bool has_private, lp_status bad_code, lp_key **out,
                      lp_error *err)
{
    *out = NULL;
    lp_key_type type;
    lp_status st = classify(pkey, bad_code, &type, err);
    if (st) {
        EVP_PKEY_free(pkey);
        return st;
    }
    lp_key *k = calloc(1, sizeof *k);
    if (!k) {
        EVP_PKEY_free(pkey);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    k->type = type;
    k->has_private = has_private;
    k->pkey = pkey;
    *out = k;
    return LP_OK;
}

lp_status lp_key_generate(lp_key **out, lp_key_type type, lp_error *err)
{
    *out = NULL;
    EVP_PKEY *pkey = NULL;
    switch (type) {
    case LP_KEY_ED25519: pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"); break;
    case LP_KEY_ECDSA_P256: pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); break;
    case LP_KEY_RSA_PSS:
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)RSA_GENERATE_BITS);
        break;
    default: return lp_error_set(err, LP_ERR_INVALID_ARG, "key type %d unknown", (int)type);
    }
    if (!pkey)
        return lp_crypto_fail(err, LP_ERR_CRYPTO, "generating a %s key", lp_key_type_name(type));
    lp_status st = lp_key_wrap(pkey, true, LP_ERR_CRYPTO, out, err);
    if (st)
        return lp_error_prefix(err, st, "generating a %s key", lp_key_type_name(type));
    return LP_OK;
}

lp_key_type lp_key_get_type(const lp_key *key)
{
    return key->type;
}

bool lp_key_has_private(const lp_key *key)
{
    return key->has_private;
}

/* Starts a sign or verify operation on mctx with the key's scheme. */
static int setup_ctx(const lp_key *key, EVP_MD_CTX *mctx, bool sign)
{
    const char *md = key->type == LP_KEY_ED25519 ? NULL : "SHA256";
    EVP_PKEY_CTX *pctx = NULL;
    int ok = sign ? EVP_DigestSignInit_ex(mctx, &pctx, md, NULL, NULL, key->pkey, NULL)
                  : EVP_DigestVerifyInit_ex(mctx, &pctx, md, NULL, NULL, key->pkey, NULL);
    if (ok != 1)
        return 0;
    if (key->type == LP_KEY_RSA_PSS) {
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", NULL) != 1 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, sign ? RSA_PSS_SIGN_SALT
                                                        : RSA_PSS_SALTLEN_AUTO) != 1)
            return 0;
    }
    return 1;
}

lp_status lp_key_sign(const lp_key *key, const void *msg, size_t len, uint8_t **sig,
                      size_t *siglen, lp_error *err)
{
    static const unsigned char empty[1];
    *sig = NULL;
    *siglen = 0;
    const char *scheme = lp_key_scheme_name(key->type);
    if (!key->has_private)
        return lp_error_set(err, LP_ERR_STATE, "%s: cannot sign with a public key only", scheme);
    int max = EVP_PKEY_get_size(key->pkey);
    if (max <= 0)
        return lp_crypto_fail(err, LP_ERR_CRYPTO, "%s: signature size unknown", scheme);
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    uint8_t *buf = malloc((size_t)max);
    if (!mctx || !buf) {
        EVP_MD_CTX_free(mctx);
        free(buf);
        ERR_clear_error();
        return lp_error_set(err, LP_ERR_NOMEM, "%s: out of memory", scheme);
    }
    size_t n = (size_t)max;
    if (setup_ctx(key, mctx, true) != 1 ||
        EVP_DigestSign(mctx, buf, &n, len ? msg : empty, len) != 1) {
        EVP_MD_CTX_free(mctx);
        free(buf);
        return lp_crypto_fail(err, LP_ERR_CRYPTO, "%s: signing failed", scheme);
    }
    EVP_MD_CTX_free(mctx);
    *sig = buf;
    *siglen = n;
    return LP_OK;
}

lp_status lp_key_verify(const lp_key *key, const void *msg, size_t len, const uint8_t *sig,
                        size_t siglen, lp_error *err)
{
    static const unsigned char empty[1];
    const char *scheme = lp_key_scheme_name(key->type);
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    if (!mctx) {
        ERR_clear_error();
        return lp_error_set(err, LP_ERR_NOMEM, "%s: out of memory", scheme);
    }
    if (setup_ctx(key, mctx, false) != 1) {
        EVP_MD_CTX_free(mctx);
        return lp_crypto_fail(err, LP_ERR_CRYPTO, "%s: cannot start verification", scheme);
    }
    int r = EVP_DigestVerify(mctx, siglen ? sig : empty, siglen, len ? msg : empty, len);
    EVP_MD_CTX_free(mctx);
    if (r != 1) {
        ERR_clear_error();
        return lp_error_set(err, LP_ERR_BAD_SIGNATURE, "%s: signature of %zu bytes is not valid",
                            scheme, siglen);
    }
    return LP_OK;
}

void lp_key_free(lp_key *key)
{
    if (!key)
        return;
    /* OpenSSL clears private key material as it frees it. */
    EVP_PKEY_free(key->pkey);
    OPENSSL_cleanse(key, sizeof *key);
    free(key);
}
