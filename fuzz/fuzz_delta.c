/*
 * fuzz_delta.c — libFuzzer harness for the delta decoder.
 *
 * Every input is applied as a delta to one fixed base (the small text that
 * make_base writes).  The seeds in fuzz/corpus/delta/ are deltas made with
 * `livepush delta make` from that text to edited versions of it (plus one
 * with the x86 transform forced, and one in dictionary frames, `--dict
 * only`), each behind a mode byte: version 1 deltas (seed-N, seed-x86,
 * seed-dict), version 2 ones (v2-*; v2-lzma-* is an LZMA segment,
 * `--dict only --lzma on`) and version 3 ones (v3-*, the same with the
 * XXH3-128 digests).  The first input byte picks the mode: even, the rest
 * of the input is the delta as is; odd, the harness first writes the base's
 * real digests and a correct header check value into it (for any header
 * version), so that mutations reach the control entries and the compressed
 * streams instead of stopping at the header's checks.  An apply must either
 * succeed with exactly the bytes whose digest the header names (XXH3-128 in
 * version 3, SHA-256 before: the one the apply checks without an expected
 * digest), or fail with a status and a message; it must never crash, read out of
 * bounds or allocate without bound (libFuzzer's -rss_limit_mb and
 * -malloc_limit_mb catch that; applying needs under LP_DELTA_APPLY_MEM_MAX).
 */
#include "livepush/delta.h"
#include "livepush/hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BASE_LINES 64

static size_t make_base(uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < BASE_LINES; i++) {
        int w = snprintf((char *)out + n, cap - n, "line %d: the quick brown fox %d\n", i,
                         (i * 7) % 13);
        n += (size_t)w;
    }
    return n;
}

typedef struct {
    lp_hash_ctx *h;
    XXH3_state_t *x;
    uint64_t len;
} sinkctx;

static lp_status sink(void *ctx, const uint8_t *p, size_t n, lp_error *err)
{
    sinkctx *s = ctx;
    s->len += n;
    XXH3_128bits_update(s->x, p, n);
    return lp_hash_update(s->h, p, n, err);
}

static void check(int ok)
{
    if (!ok)
        abort();
}

static void xxh128(const uint8_t *p, size_t n, uint8_t out[16])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(p, n));
    memcpy(out, c.digest, 16);
}

/* Versions 2 and 3: the header's numbers are varints of at most 5 bytes; returns
 * 0 when the header does not parse that far. */
static int skip_varint(const uint8_t *d, size_t n, size_t *at)
{
    for (int i = 0; i < 5 && *at < n; i++)
        if (!(d[(*at)++] & 0x80))
            return 1;
    return 0;
}

static void fix_header(uint8_t *d, size_t n, const uint8_t *base, size_t bn)
{
    uint8_t dig[LP_HASH_MAX_LEN];
    lp_hash_buf(LP_HASH_SHA256, base, bn, dig, NULL);
    if (n >= 12 && (d[8] == LP_DELTA_VERSION_2 || d[8] == LP_DELTA_VERSION_3) && !d[9] &&
        !d[10] && !d[11]) {
        size_t at = 12, digests = d[8] == LP_DELTA_VERSION_3 ? 96 : 64;
        for (int i = 0; i < 3; i++)
            if (!skip_varint(d, n, &at))
                return;
        if (n - at < digests)
            return;
        memcpy(d + at, dig, 32);
        if (digests > 64)
            xxh128(base, bn, d + at + 64);
        at += digests;
        for (int i = 0; i < 6; i++)
            if (!skip_varint(d, n, &at))
                return;
        if (n - at < 4)
            return;
        lp_hash_buf(LP_HASH_SHA256, d, at, dig, NULL);
        memcpy(d + at, dig, 4);
        return;
    }
    if (n < 152) /* version 1: a fixed header of 152 bytes */
        return;
    memcpy(d + 32, dig, 32);
    lp_hash_buf(LP_HASH_SHA256, d, 144, dig, NULL);
    memcpy(d + 144, dig, 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t base[4096];
    static size_t bn;
    if (!bn)
        bn = make_base(base, sizeof base);
    if (size < 1)
        return 0;
    uint8_t *d = malloc(size);
    check(d != NULL);
    memcpy(d, data + 1, size - 1);
    if (data[0] & 1)
        fix_header(d, size - 1, base, bn);
    sinkctx s = {NULL, XXH3_createState(), 0};
    lp_error err;
    lp_error_clear(&err);
    check(s.x && XXH3_128bits_reset(s.x) == XXH_OK);
    check(lp_hash_new(&s.h, LP_HASH_SHA256, &err) == LP_OK);
    lp_status st = lp_delta_apply_mem(base, bn, d, size - 1, NULL, sink, &s, &err);
    if (st != LP_OK) {
        check(err.code == st && err.msg[0] != '\0');
    } else {
        lp_delta_header h;
        uint8_t dig[LP_HASH_MAX_LEN];
        check(lp_delta_read_header(d, size - 1, size - 1, &h, &err) == LP_OK);
        check(lp_hash_final(s.h, dig, &err) == LP_OK);
        check(s.len == h.new_size);
        if (h.version >= LP_DELTA_VERSION_3) {
            XXH128_canonical_t c;
            XXH128_canonicalFromHash(&c, XXH3_128bits_digest(s.x));
            check(memcmp(c.digest, h.new_xxh128, 16) == 0);
        } else {
            check(memcmp(dig, h.new_sha256, 32) == 0);
        }
    }
    lp_hash_free(s.h);
    XXH3_freeState(s.x);
    free(d);
    return 0;
}
