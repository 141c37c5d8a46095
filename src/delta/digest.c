/*
 * digest.c — the digests a delta's apply checks.
 *
 * A delta of version 3 names its base and its result twice: by SHA-256 (the
 * names a signed manifest and the server use) and by XXH3-128 (xxHash, a
 * non-cryptographic 128-bit hash at several GB/s).  The apply checks the
 * base by its XXH3-128 and the result by:
 *   - SHA-256 when the caller gives the digest it trusts (expect: from signed
 *     metadata), since only a cryptographic digest can stand for a signature;
 *   - XXH3-128 otherwise: the delta's own digests are no more trusted than
 *     the delta's other bytes, so a cryptographic one would prove nothing
 *     more than that the result is the one the delta was made to give; what
 *     they must catch is damage and a wrong base, at any size, and XXH3-128
 *     does (a chance of 2^-128 to miss), at a tenth of SHA-256's cost.
 * Deltas of versions 1 and 2 carry SHA-256 only, checked as before.
 *
 * XXH3-128 digests are written in xxHash's canonical form (big-endian).
 */
#include "delta/delta_priv.h"
#include "livepush/hash.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct lpd_digest {
    lp_hash_ctx *sha; /* SHA-256, or NULL */
    XXH3_state_t *xx; /* XXH3-128, or NULL */
};

static void canonical(XXH128_hash_t h, uint8_t out[LPD_XXH128_LEN])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(out, c.digest, LPD_XXH128_LEN);
}

void lpd_xxh128(const void *data, size_t len, uint8_t out[LPD_XXH128_LEN])
{
    canonical(XXH3_128bits(data, len), out);
}

/* 1 when the digests got and want are equal (SHA-256 ones when sha, else
 * XXH3-128), in constant time. */
static int same(const uint8_t *got, const uint8_t *want, int sha)
{
    return lp_mem_equal(got, want, sha ? LP_SHA256_LEN : LPD_XXH128_LEN);
}

static const char *alg(int sha)
{
    return sha ? "SHA-256" : "XXH3-128";
}

int lpd_digest_is_sha256(const lp_delta_header *h, const uint8_t *expect)
{
    return expect != NULL || h->version < LP_DELTA_VERSION_3;
}

lp_status lpd_digest_new(lpd_digest **out, int sha256, lp_error *err)
{
    lpd_digest *d = calloc(1, sizeof *d);
    *out = NULL;
    if (!d)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_status st = LP_OK;
    if (sha256)
        st = lp_hash_new(&d->sha, LP_HASH_SHA256, err);
    else if (!(d->xx = XXH3_createState()) || XXH3_128bits_reset(d->xx) != XXH_OK)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (st) {
        lpd_digest_free(d);
        return st;
    }
    *out = d;
    return LP_OK;
}

lp_status lpd_digest_update(lpd_digest *d, const void *data, size_t len, lp_error *err)
{
    if (d->sha)
        return lp_hash_update(d->sha, data, len, err);
    if (len && XXH3_128bits_update(d->xx, data, len) != XXH_OK)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "XXH3-128: update refused");
    return LP_OK;
}

lp_status lpd_digest_check(lpd_digest *d, const lp_delta_header *h, lp_error *err)
{
    uint8_t got[LP_HASH_MAX_LEN];
    if (d->sha) {
        lp_status st = lp_hash_final(d->sha, got, err);
        if (st)
            return st;
    } else {
        canonical(XXH3_128bits_digest(d->xx), got);
    }
    int sha = d->sha != NULL;
    if (!same(got, sha ? h->new_sha256 : h->new_xxh128, sha))
        return lp_error_set(err, LP_ERR_HASH_MISMATCH, "result's %s differs from the one the "
                            "delta names (corrupted delta)", alg(sha));
    return LP_OK;
}

void lpd_digest_free(lpd_digest *d)
{
    if (!d)
        return;
    lp_hash_free(d->sha);
    if (d->xx)
        XXH3_freeState(d->xx);
    free(d);
}

lp_status lpd_base_check(const lp_delta_header *h, const uint8_t *old, size_t old_len,
                         lp_error *err)
{
    uint8_t got[LP_HASH_MAX_LEN];
    int sha = h->version < LP_DELTA_VERSION_3;
    if (sha) {
        lp_status st = lp_hash_buf(LP_HASH_SHA256, old, old_len, got, err);
        if (st)
            return st;
    } else {
        lpd_xxh128(old, old_len, got);
    }
    if (!same(got, sha ? h->old_sha256 : h->old_xxh128, sha))
        return lp_error_set(err, LP_ERR_HASH_MISMATCH, "base is not the file the delta was made "
                            "from (%s differs)", alg(sha));
    return LP_OK;
}
