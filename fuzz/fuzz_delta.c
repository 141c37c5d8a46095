/*
 * fuzz_delta.c — libFuzzer harness for the delta decoder.
 *
 * Every input is applied as a delta to one fixed base (the small text that
 * make_base writes).  The seeds in fuzz/corpus/delta/ are deltas made with
 * `livepush delta make` from that text to edited versions of it (plus one
 * with the x86 transform forced, and one in dictionary frames, `--dict
 * only`), each behind a mode byte: version 1 deltas (seed-N, seed-x86,
 * seed-dict) and version 2 ones (v2-*; v2-lzma-* is an LZMA segment,
 * `--dict only --lzma on`).  The first input
 * byte picks the mode: even, the rest of the input is the delta as is; odd,
 * the harness first writes the base's real SHA-256 and a correct header
 * check value into it (for either header version), so that mutations reach the control entries and the
 * compressed streams instead of stopping at the header's checks.  An apply
 * must either succeed with exactly the bytes whose digest the header names,
 * or fail with a status and a message; it must never crash, read out of
 * bounds or allocate without bound (libFuzzer's -rss_limit_mb and
 * -malloc_limit_mb catch that; applying needs under LP_DELTA_APPLY_MEM_MAX).
 */
#include "livepush/delta.h"
#include "livepush/hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    uint64_t len;
} sinkctx;

static lp_status sink(void *ctx, const uint8_t *p, size_t n, lp_error *err)
{
    sinkctx *s = ctx;
    s->len += n;
    return lp_hash_update(s->h, p, n, err);
}

static void check(int ok)
{
    if (!ok)
        abort();
}

/* Version 2: the header's numbers are varints of at most 5 bytes; returns
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
    if (n >= 12 && d[8] == LP_DELTA_VERSION && !d[9] && !d[10] && !d[11]) {
        size_t at = 12;
        for (int i = 0; i < 3; i++)
            if (!skip_varint(d, n, &at))
                return;
        if (n - at < 64)
            return;
        memcpy(d + at, dig, 32);
        at += 64;
        for (int i = 0; i < 6; i++)
            if (!skip_varint(d, n, &at))
                return;
        if (n - at < 4)
            return;
        lp_hash_buf(LP_HASH_SHA256, d, at, dig, NULL);
        memcpy(d + at, dig, 4);
        return;
    }
    if (n < LP_DELTA_HEADER_SIZE)
        return;
    memcpy(d + 32, dig, 32);
    lp_hash_buf(LP_HASH_SHA256, d, LP_DELTA_HEADER_SIZE - 8, dig, NULL);
    memcpy(d + LP_DELTA_HEADER_SIZE - 8, dig, 8);
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
    sinkctx s = {NULL, 0};
    lp_error err;
    lp_error_clear(&err);
    check(lp_hash_new(&s.h, LP_HASH_SHA256, &err) == LP_OK);
    lp_status st = lp_delta_apply_mem(base, bn, d, size - 1, NULL, sink, &s, &err);
    if (st != LP_OK) {
        check(err.code == st && err.msg[0] != '\0');
    } else {
        lp_delta_header h;
        uint8_t dig[LP_HASH_MAX_LEN];
        check(lp_delta_read_header(d, size - 1, size - 1, &h, &err) == LP_OK);
        check(lp_hash_final(s.h, dig, &err) == LP_OK);
        check(s.len == h.new_size && memcmp(dig, h.new_sha256, 32) == 0);
    }
    lp_hash_free(s.h);
    free(d);
    return 0;
}
