/*
 * livepush/key.h — signing keys: ed25519, ecdsa-sha2-nistp256, rsassa-pss-sha256.
 *
 * An lp_key holds a public key and, optionally, its private half.  Keys come
 * from a PKCS#8 PEM file (private), from a TUF public value (the 64 hex digits
 * of an ed25519 key, or a PEM SubjectPublicKeyInfo for ecdsa and rsa), or are
 * generated.  Private keys are written as unencrypted PKCS#8 PEM with mode
 * 0600, atomically.
 *
 * Signatures are the raw bytes TUF stores hex-encoded in a signature's `sig`:
 *   ed25519            64-byte RFC 8032 signature (deterministic)
 *   ecdsa-sha2-nistp256 DER-encoded ECDSA signature over SHA-256
 *   rsassa-pss-sha256  RSASSA-PSS, SHA-256, MGF1-SHA256; signing uses a salt
 *                      of 32 random bytes, verification accepts any salt length
 *
 * TUF names (lp_key_type_name / lp_key_scheme_name): keytype "ed25519",
 * "ecdsa" (also accepted on input: "ecdsa-sha2-nistp256"), "rsa"; schemes
 * "ed25519", "ecdsa-sha2-nistp256", "rsassa-pss-sha256".
 *
 * Key IDs (the sha256 of the canonical JSON of the TUF key object) are the
 * business of the TUF layer, which knows the whole object; see tuf.h.
 *
 * Ownership: every lp_key returned through an `out` parameter belongs to the
 * caller and is released with lp_key_free.  A key is immutable after creation
 * and may be shared between threads.
 */
#ifndef LIVEPUSH_KEY_H
#define LIVEPUSH_KEY_H

#include "livepush/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lp_key_type {
    LP_KEY_ED25519 = 0,
    LP_KEY_ECDSA_P256 = 1,
    LP_KEY_RSA_PSS = 2,
} lp_key_type;

typedef struct lp_key lp_key;

/* TUF keytype string: "ed25519", "ecdsa", "rsa". */
const char *lp_key_type_name(lp_key_type type);
/* TUF scheme string: "ed25519", "ecdsa-sha2-nistp256", "rsassa-pss-sha256". */
const char *lp_key_scheme_name(lp_key_type type);
/* Maps a TUF keytype + scheme pair to a type.  LP_ERR_UNSUPPORTED (naming
 * both strings) for any pair not listed above. */
lp_status lp_key_type_from_names(const char *keytype, const char *scheme, lp_key_type *type,
                                 lp_error *err);
/* Parses a user-facing name ("ed25519", "ecdsa", "rsa").  LP_ERR_UNSUPPORTED. */
lp_status lp_key_type_from_name(const char *name, lp_key_type *type, lp_error *err);

/* Generates a new key pair (rsa: 3072 bits).  LP_ERR_CRYPTO, LP_ERR_NOMEM. */
lp_status lp_key_generate(lp_key **out, lp_key_type type, lp_error *err);

/* Loads a private key from PKCS#8 PEM text (NUL not required; `len` bytes).
 * The type is taken from the key.  LP_ERR_MALFORMED for text that is not a
 * PEM private key, LP_ERR_UNSUPPORTED for other algorithms or curves. */
lp_status lp_key_from_private_pem(lp_key **out, const char *pem, size_t len, lp_error *err);
/* Same, from a file (at most 64 KiB).  Adds LP_ERR_NOT_FOUND, LP_ERR_IO. */
lp_status lp_key_load_private_file(lp_key **out, const char *path, lp_error *err);
/* Writes the private key as PKCS#8 PEM to `path`, mode 0600, atomically.
 * LP_ERR_STATE if the key has no private half, LP_ERR_IO. */
lp_status lp_key_save_private_file(const lp_key *key, const char *path, lp_error *err);
/* Private key as PKCS#8 PEM text; *pem is malloc'd, caller frees. */
lp_status lp_key_private_pem(const lp_key *key, char **pem, lp_error *err);

/* Builds a public key from its TUF `keyval.public` value for `type`.
 * LP_ERR_MALFORMED when the value is not valid for the type (wrong length,
 * not hex, not a PEM SubjectPublicKeyInfo, wrong curve or algorithm). */
lp_status lp_key_from_public(lp_key **out, lp_key_type type, const char *public_value,
                             lp_error *err);
/* The TUF `keyval.public` value of the key; *out is malloc'd, caller frees.
 * (ed25519: 64 lower-case hex; ecdsa, rsa: PEM SubjectPublicKeyInfo ending
 * in a newline.) */
lp_status lp_key_public_value(const lp_key *key, char **out, lp_error *err);

lp_key_type lp_key_get_type(const lp_key *key);
bool lp_key_has_private(const lp_key *key);

/* Signs `len` bytes at `msg`; *sig is malloc'd (caller frees), *siglen its
 * length.  LP_ERR_STATE without a private half, LP_ERR_CRYPTO. */
lp_status lp_key_sign(const lp_key *key, const void *msg, size_t len, uint8_t **sig,
                      size_t *siglen, lp_error *err);

/* Verifies a signature.  LP_OK when valid, LP_ERR_BAD_SIGNATURE when not
 * (including a malformed signature), LP_ERR_CRYPTO if the library failed. */
lp_status lp_key_verify(const lp_key *key, const void *msg, size_t len, const uint8_t *sig,
                        size_t siglen, lp_error *err);

/* Frees a key (NULL is fine); private material is cleared first. */
void lp_key_free(lp_key *key);

#ifdef __cplusplus
}
#endif
#endif
