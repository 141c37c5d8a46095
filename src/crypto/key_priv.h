/*
 * key_priv.h — what key.c and key_pem.c share (internal to src/crypto).
 *
 * An lp_key is an OpenSSL EVP_PKEY plus the livepush type it was checked to
 * be and whether it carries a private half.  Every key enters livepush
 * through lp_key_wrap, which is the single place that decides whether an
 * EVP_PKEY is one of the supported types (ed25519; EC on P-256 by named
 * curve; RSA with rsaEncryption parameters and a modulus of 2048 to 8192
 * bits), so no key of another kind can ever be signed or verified with.
 */
#ifndef LP_CRYPTO_KEY_PRIV_H
#define LP_CRYPTO_KEY_PRIV_H

#include "livepush/key.h"

#include <openssl/evp.h>

struct lp_key {
    lp_key_type type;
    bool has_private;
    EVP_PKEY *pkey;
};

/* Checks that pkey is a supported key and wraps it in a new lp_key (caller
 * owns *out).  Takes ownership of pkey in every case (freed on failure).  A
 * key of an unsupported algorithm, curve or size fails with `bad_code` (the
 * caller decides whether that is LP_ERR_UNSUPPORTED or LP_ERR_MALFORMED). */
lp_status lp_key_wrap(EVP_PKEY *pkey, bool has_private, lp_status bad_code, lp_key **out,
                      lp_error *err);

/* Sets `code` with a message "<fmt>: <OpenSSL's reason>" and empties
 * OpenSSL's per-thread error queue, so no failure leaks into a later call. */
lp_status lp_crypto_fail(lp_error *err, lp_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
