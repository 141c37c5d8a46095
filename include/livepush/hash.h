/*
 * livepush/hash.h — SHA-256 and SHA-512, one-shot and streaming.
 *
 * Digests are raw bytes; lp_hex_encode/lp_hex_decode convert to the
 * lower-case hex that TUF metadata and content addresses use.  Backed by
 * Nettle (SHA extensions of the CPU where present).  A streaming context is
 * owned by the caller and freed with
 * lp_hash_free; contexts are independent, so any number may be used from any
 * threads at once.
 */
#ifndef LIVEPUSH_HASH_H
#define LIVEPUSH_HASH_H

#include "livepush/error.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lp_hash_alg {
    LP_HASH_SHA256 = 0,
    LP_HASH_SHA512 = 1,
} lp_hash_alg;

#define LP_SHA256_LEN 32
#define LP_SHA512_LEN 64
#define LP_HASH_MAX_LEN 64

/* Digest length in bytes of `alg` (32 or 64). */
size_t lp_hash_len(lp_hash_alg alg);

/* TUF name of `alg`: "sha256" or "sha512". */
const char *lp_hash_alg_name(lp_hash_alg alg);

/* Looks up an algorithm by TUF name.  LP_ERR_UNSUPPORTED for any other name. */
lp_status lp_hash_alg_from_name(const char *name, lp_hash_alg *alg, lp_error *err);

/* Streaming context (opaque). */
typedef struct lp_hash_ctx lp_hash_ctx;

/* Creates a context for `alg`; the caller owns *out.  LP_ERR_INVALID_ARG (no
 * such algorithm), LP_ERR_NOMEM. */
lp_status lp_hash_new(lp_hash_ctx **out, lp_hash_alg alg, lp_error *err);
/* Feeds `len` bytes.  LP_ERR_INVALID_ARG (ctx NULL), LP_ERR_STATE (after
 * lp_hash_final). */
lp_status lp_hash_update(lp_hash_ctx *ctx, const void *data, size_t len, lp_error *err);
/* Writes the digest (lp_hash_len bytes) to `out`; the context may not be
 * updated afterwards, only freed.  LP_ERR_INVALID_ARG, LP_ERR_STATE (final
 * twice). */
lp_status lp_hash_final(lp_hash_ctx *ctx, uint8_t out[LP_HASH_MAX_LEN], lp_error *err);
/* Frees a context; NULL is fine. */
void lp_hash_free(lp_hash_ctx *ctx);

/* One-shot digest of a buffer into `out` (lp_hash_len bytes).
 * LP_ERR_INVALID_ARG, LP_ERR_NOMEM. */
lp_status lp_hash_buf(lp_hash_alg alg, const void *data, size_t len, uint8_t out[LP_HASH_MAX_LEN],
                      lp_error *err);

/* Digest of a whole file read in fixed-size chunks (constant memory); the
 * file's size goes to *size when size is non-NULL.  LP_ERR_NOT_FOUND, LP_ERR_IO. */
lp_status lp_hash_file(lp_hash_alg alg, const char *path, uint8_t out[LP_HASH_MAX_LEN],
                       uint64_t *size, lp_error *err);

/* Writes 2*n lower-case hex digits and a NUL to `out` (size >= 2*n+1). */
void lp_hex_encode(const uint8_t *in, size_t n, char *out);

/* Decodes hex (either case, even length) into `out` of capacity `cap`;
 * *outlen receives the byte count.  LP_ERR_MALFORMED for a non-hex digit or odd
 * length, LP_ERR_TOO_LARGE if it does not fit. */
lp_status lp_hex_decode(const char *hex, uint8_t *out, size_t cap, size_t *outlen, lp_error *err);

/* Constant-time comparison of two byte strings of length n: 1 if equal. */
int lp_mem_equal(const void *a, const void *b, size_t n);

#ifdef __cplusplus
}
#endif
#endif
