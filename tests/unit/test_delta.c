/*
 * test_delta.c — the delta engine (include/livepush/delta.h) on real data.
 *
 * Round trips: a real text file edited programmatically, the two real
 * x86-64 executables of this build (livepush-agent to livepush: related code
 * linked differently, so the branch transform is exercised), real shared
 * libraries, and the edge cases (empty, one byte, identical).  Refusals:
 * every truncation of a small delta, a bit flip in every byte, the wrong
 * base, a result other than the expected one, and hostile deltas built by
 * hand (huge sizes, overflowing lengths, entries that point outside the base
 * or the result, streams that lie about their size) — each must fail with a
 * status and a message, and apply_file must leave no output and no
 * temporary file behind.
 */
#define ZSTD_STATIC_LINKING_ONLY /* magicless frames, as version 2 writes them */
#include "core/file.h"
#include "delta/delta_priv.h"
#include "livepush/delta.h"
#include "livepush/hash.h"
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>
#include <cmocka.h>

static char *tmp;

static int setup(void **state)
{
    (void)state;
    tmp = lp_test_tmpdir("delta");
    return tmp ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    lp_test_rmtree(tmp);
    free(tmp);
    return 0;
}

/* A real text: the first license text found, else this test's own source. */
static uint8_t *real_text(size_t *len)
{
    const char *cands[] = {"/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/GPL-2",
                           "/etc/services"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        uint8_t *p = lp_test_read_file(cands[i], len);
        if (p && *len > 10000)
            return p;
        free(p);
    }
    char *src = lp_test_join(lp_test_getenv_or_skip("LP_SOURCE_DIR"), "tests/unit/test_delta.c");
    uint8_t *p = lp_test_read_file(src, len);
    free(src);
    return p;
}

/* Edits: every 37th line gets a word replaced, a paragraph is moved, a block
 * is inserted and one deleted. */
static uint8_t *edit_text(const uint8_t *in, size_t n, size_t *out_len)
{
    uint8_t *out = malloc(n * 2 + 4096);
    assert_non_null(out);
    size_t o = 0, line = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\n' && ++line % 37 == 0) {
            memcpy(out + o, " [edited]", 9);
            o += 9;
        }
        if (i == n / 3) {
            static const char ins[] = "\nA whole new paragraph was inserted here, with words.\n";
            memcpy(out + o, ins, sizeof ins - 1);
            o += sizeof ins - 1;
        }
        if (i >= n / 2 && i < n / 2 + 300)
            continue; /* deleted */
        out[o++] = in[i];
    }
    memcpy(out + o, in, n / 10); /* the start repeated at the end */
    o += n / 10;
    *out_len = o;
    return out;
}

static void roundtrip(const uint8_t *old, size_t on, const uint8_t *nw, size_t nn, int level,
                      lp_delta_stats *stats)
{
    lp_error err;
    uint8_t *d = NULL, *out = NULL;
    size_t dn = 0, outn = 0;
    lp_delta_options opt = {.level = level};
    assert_int_equal(lp_delta_make(old, on, nw, nn, &opt, &d, &dn, stats, &err), LP_OK);
    assert_true(dn >= LP_DELTA_MIN_SIZE);
    lp_delta_header h;
    assert_int_equal(lp_delta_read_header(d, dn, dn, &h, &err), LP_OK);
    assert_int_equal(h.version, LP_DELTA_VERSION);
    assert_int_equal(h.old_size, on);
    assert_int_equal(h.new_size, nn);
    assert_int_equal(lp_delta_apply_buf(old, on, d, dn, nn, &out, &outn, &err), LP_OK);
    assert_int_equal(outn, nn);
    assert_true(nn == 0 || memcmp(out, nw, nn) == 0);
    free(out);
    free(d);
}

static void test_text_roundtrip(void **state)
{
    (void)state;
    size_t n, m;
    uint8_t *old = real_text(&n);
    assert_non_null(old);
    uint8_t *nw = edit_text(old, n, &m);
    lp_delta_stats s;
    roundtrip(old, n, nw, m, 19, &s);
    assert_int_equal(s.x86, 0);
    assert_true(s.delta_size < m / 10); /* a small edit makes a small delta */
    assert_true(s.matched > m / 2);
    roundtrip(nw, m, old, n, 1, &s); /* and backwards */
    free(old);
    free(nw);
}

static void test_executables_roundtrip(void **state)
{
    (void)state;
    size_t n, m;
    uint8_t *old = lp_test_read_file(lp_test_getenv_or_skip("LP_AGENT_BIN"), &n);
    uint8_t *nw = lp_test_read_file(lp_test_getenv_or_skip("LP_BIN"), &m);
    assert_non_null(old);
    assert_non_null(nw);
    assert_true(lpd_x86_detect(old, n) && lpd_x86_detect(nw, m));
    lp_delta_stats s;
    roundtrip(old, n, nw, m, 3, &s);
    assert_int_equal(s.x86, 1);
    assert_true(s.delta_size < m);
    free(old);
    free(nw);
}

static void test_shared_libraries(void **state)
{
    (void)state;
    const char *a = "/usr/lib/x86_64-linux-gnu/libzstd.so.1";
    const char *b = "/usr/lib/x86_64-linux-gnu/libdivsufsort.so.3";
    size_t n, m;
    uint8_t *old = lp_test_read_file(a, &n), *nw = lp_test_read_file(b, &m);
    if (!old || !nw) {
        free(old);
        free(nw);
        skip();
    }
    lp_delta_stats s;
    roundtrip(old, n, nw, m, 3, &s);
    /* The same library with a patched and a shifted section. */
    uint8_t *mod = malloc(n + 4096);
    assert_non_null(mod);
    memcpy(mod, old, n / 2);
    memset(mod + n / 2, 0x90, 4096);
    memcpy(mod + n / 2 + 4096, old + n / 2, n - n / 2);
    for (size_t i = 0; i < n; i += 997)
        mod[i] ^= 0x5A;
    roundtrip(old, n, mod, n + 4096, 19, &s);
    assert_true(s.delta_size < n / 4);
    free(mod);
    free(old);
    free(nw);
}

static void test_edge_sizes(void **state)
{
    (void)state;
    const uint8_t a[] = "a", b[] = "b";
    lp_delta_stats s;
    roundtrip(NULL, 0, NULL, 0, 19, &s);
    roundtrip(a, 1, NULL, 0, 19, &s);
    roundtrip(NULL, 0, b, 1, 19, &s);
    roundtrip(a, 1, b, 1, 19, &s);
    roundtrip(a, 1, a, 1, 19, &s);
    size_t n;
    uint8_t *t = real_text(&n);
    roundtrip(t, n, t, n, 19, &s); /* identical */
    assert_true(s.delta_size < 400);
    roundtrip(t, n, NULL, 0, 19, &s);
    roundtrip(NULL, 0, t, n, 19, &s);
    roundtrip(t, 1, t, n, 19, &s);
    free(t);
}

static void test_transform_bijective(void **state)
{
    (void)state;
    size_t n;
    uint8_t *bin = lp_test_read_file(lp_test_getenv_or_skip("LP_BIN"), &n);
    assert_non_null(bin);
    uint8_t *c = malloc(n);
    assert_non_null(c);
    memcpy(c, bin, n);
    lpd_x86_encode(c, n, 0);
    assert_memory_not_equal(c, bin, n);
    lpd_x86_decode(c, n, 0);
    assert_memory_equal(c, bin, n);
    /* Dense branch opcodes: every pattern of E8/E9/0F 8x and operands. */
    uint32_t x = 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        c[i] = (x >> 16) % 3 == 0 ? (uint8_t)(0xE8 + ((x >> 20) & 1)) : (uint8_t)(x >> 24);
    }
    memcpy(bin, c, n);
    lpd_x86_encode(c, n, 3 * LP_DELTA_BLOCK);
    lpd_x86_decode(c, n, 3 * LP_DELTA_BLOCK);
    assert_memory_equal(c, bin, n);
    free(c);
    free(bin);
}

/* lpd_x86_patch with its cursor gives, for any sequence of reads of a block
 * (forward, backward, overlapping operands, single bytes), the bytes of the
 * whole-block transform: checked on the real executable's blocks. */
static void test_transform_patch_reads(void **state)
{
    (void)state;
    size_t n;
    uint8_t *bin = lp_test_read_file(lp_test_getenv_or_skip("LP_BIN"), &n);
    assert_non_null(bin);
    uint8_t *enc = malloc(n), *dst = malloc(LP_DELTA_BLOCK);
    uint16_t *ops = malloc((LP_DELTA_BLOCK / 5 + 1) * sizeof *ops);
    assert_true(enc && dst && ops);
    memcpy(enc, bin, n);
    lpd_x86_encode(enc, n, 0);
    uint32_t x = 7;
    size_t checked = 0;
    for (size_t start = 0; start < n; start += LP_DELTA_BLOCK) {
        size_t len = n - start < LP_DELTA_BLOCK ? n - start : LP_DELTA_BLOCK;
        size_t nops = lpd_x86_operands(bin + start, len, ops);
        uint32_t cursor = 0;
        size_t from = 0;
        for (int r = 0; r < 400; r++) {
            x = x * 1103515245u + 12345u;
            unsigned kind = (x >> 16) % 4;
            if (kind == 0) /* jump anywhere */
                from = (x >> 8) % len;
            else if (kind == 1 && from > 0) /* step back a little */
                from -= 1 + (x >> 8) % (from < 64 ? from : 64);
            size_t m = 1 + (x >> 4) % (kind == 2 ? 3 : 700);
            if (m > len - from)
                m = len - from;
            memcpy(dst, bin + start + from, m);
            lpd_x86_patch(bin + start, start, ops, nops, &cursor, from, dst, m);
            assert_memory_equal(dst, enc + start + from, m);
            checked += m;
            from = (from + m) % len;
        }
    }
    assert_true(checked > n / 4);
    free(ops);
    free(dst);
    free(enc);
    free(bin);
}

/* A small real delta for the refusal tests. */
static void small_pair(uint8_t **old, size_t *on, uint8_t **nw, size_t *nn, uint8_t **d,
                       size_t *dn)
{
    size_t n;
    uint8_t *t = real_text(&n);
    *on = n < 3000 ? n : 3000;
    *old = t;
    *nw = edit_text(t, *on, nn);
    lp_error err;
    assert_int_equal(lp_delta_make(*old, *on, *nw, *nn, NULL, d, dn, NULL, &err), LP_OK);
}

static lp_status sink(void *ctx, const uint8_t *data, size_t len, lp_error *err)
{
    (void)data;
    (void)err;
    *(size_t *)ctx += len;
    return LP_OK;
}

static lp_status try_apply(const uint8_t *old, size_t on, const uint8_t *d, size_t dn,
                           lp_error *err)
{
    size_t n = 0;
    lp_error_clear(err);
    lp_status st = lp_delta_apply_mem(old, on, d, dn, NULL, sink, &n, err);
    if (st)
        assert_true(err->msg[0] != '\0');
    return st;
}

static void test_truncated_every_length(void **state)
{
    (void)state;
    uint8_t *old, *nw, *d;
    size_t on, nn, dn;
    small_pair(&old, &on, &nw, &nn, &d, &dn);
    lp_error err;
    for (size_t len = 0; len < dn; len++)
        assert_int_not_equal(try_apply(old, on, d, len, &err), LP_OK);
    /* and one byte too many */
    uint8_t *longer = malloc(dn + 1);
    memcpy(longer, d, dn);
    longer[dn] = 0;
    assert_int_equal(try_apply(old, on, longer, dn + 1, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "trailing"));
    assert_int_equal(try_apply(old, on, d, dn - 1, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "truncated"));
    free(longer);
    free(old);
    free(nw);
    free(d);
}

static void test_bit_flips(void **state)
{
    (void)state;
    uint8_t *old, *nw, *d;
    size_t on, nn, dn;
    small_pair(&old, &on, &nw, &nn, &d, &dn);
    lp_error err;
    size_t refused = 0;
    for (size_t i = 0; i < dn; i++) {
        for (int bit = 0; bit < 8; bit++) {
            d[i] ^= (uint8_t)(1u << bit);
            uint8_t *out = NULL;
            size_t outn = 0;
            lp_status st = lp_delta_apply_buf(old, on, d, dn, 1 << 20, &out, &outn, &err);
            if (st == LP_OK) /* a flip that changes nothing may pass, with the exact result */
                assert_true(outn == nn && memcmp(out, nw, nn) == 0);
            else
                refused++, assert_true(err.msg[0] != '\0');
            free(out);
            d[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_true(refused > dn * 8 * 9 / 10);
    free(old);
    free(nw);
    free(d);
}

static void test_wrong_base_and_result(void **state)
{
    (void)state;
    uint8_t *old, *nw, *d;
    size_t on, nn, dn;
    small_pair(&old, &on, &nw, &nn, &d, &dn);
    lp_error err;
    old[10] ^= 1;
    assert_int_equal(try_apply(old, on, d, dn, &err), LP_ERR_HASH_MISMATCH);
    assert_non_null(strstr(err.msg, "base"));
    old[10] ^= 1;
    assert_int_equal(try_apply(old, on - 1, d, dn, &err), LP_ERR_LENGTH_MISMATCH);
    uint8_t other[32] = {0};
    size_t n = 0;
    assert_int_equal(lp_delta_apply_mem(old, on, d, dn, other, sink, &n, &err),
                     LP_ERR_HASH_MISMATCH);
    assert_int_equal(n, 0);
    uint8_t good[LP_HASH_MAX_LEN];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, nw, nn, good, &err), LP_OK);
    assert_int_equal(lp_delta_apply_mem(old, on, d, dn, good, sink, &n, &err), LP_OK);
    assert_int_equal(n, nn);
    free(old);
    free(nw);
    free(d);
}

/* The delta d with its header replaced by nh encoded (the streams kept). */
static uint8_t *rehead(const uint8_t *d, size_t dn, const lp_delta_header *nh, size_t *len)
{
    lp_delta_header h;
    lp_error err;
    assert_int_equal(lp_delta_read_header(d, dn, dn, &h, &err), LP_OK);
    uint8_t hdr[LP_DELTA_HEADER_SIZE];
    size_t hn = lpd_header_encode(nh, hdr);
    *len = hn + dn - h.header_len;
    uint8_t *p = malloc(*len);
    assert_non_null(p);
    memcpy(p, hdr, hn);
    memcpy(p + hn, d + h.header_len, dn - h.header_len);
    return p;
}

static void xxh128_of(const uint8_t *p, size_t n, uint8_t out[16])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(p, n));
    memcpy(out, c.digest, 16);
}

/* The apply of d (with its header replaced by nh) to old: its status, and
 * the message must hold `needle` when it fails. */
static lp_status apply_rehead(const uint8_t *old, size_t on, const uint8_t *d, size_t dn,
                              const lp_delta_header *nh, const uint8_t *expect,
                              const char *needle)
{
    size_t xn, n = 0;
    uint8_t *x = rehead(d, dn, nh, &xn);
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_delta_apply_mem(old, on, x, xn, expect, sink, &n, &err);
    if (st && (!needle || !strstr(err.msg, needle)))
        fail_msg("refused with \"%s\", want \"%s\"", err.msg, needle ? needle : "success");
    free(x);
    return st;
}

/* A delta of version 3 names base and result by SHA-256 and by XXH3-128
 * (as xxHash's own library computes them).  The base is checked by its
 * XXH3-128, the result by its XXH3-128, or by SHA-256 when the caller gives
 * the one it trusts; deltas of version 2 (SHA-256 only) still apply, both
 * checked by SHA-256. */
static void test_digests(void **state)
{
    (void)state;
    uint8_t *old, *nw, *d;
    size_t on, nn, dn;
    small_pair(&old, &on, &nw, &nn, &d, &dn);
    lp_delta_header h;
    lp_error err;
    assert_int_equal(lp_delta_read_header(d, dn, dn, &h, &err), LP_OK);
    assert_int_equal(h.version, 3);
    uint8_t so[LP_HASH_MAX_LEN], sn[LP_HASH_MAX_LEN], xo[16], xn[16];
    lp_hash_buf(LP_HASH_SHA256, old, on, so, NULL);
    lp_hash_buf(LP_HASH_SHA256, nw, nn, sn, NULL);
    xxh128_of(old, on, xo);
    xxh128_of(nw, nn, xn);
    assert_memory_equal(h.old_sha256, so, 32);
    assert_memory_equal(h.new_sha256, sn, 32);
    assert_memory_equal(h.old_xxh128, xo, 16);
    assert_memory_equal(h.new_xxh128, xn, 16);
    assert_int_equal(apply_rehead(old, on, d, dn, &h, NULL, NULL), LP_OK);
    assert_int_equal(apply_rehead(old, on, d, dn, &h, sn, NULL), LP_OK);

    /* the result's XXH3-128 is what is checked without expect; with it,
     * SHA-256 is (the XXH3-128 then plays no part) */
    lp_delta_header x = h;
    x.new_xxh128[15] ^= 1;
    assert_int_equal(apply_rehead(old, on, d, dn, &x, NULL, "XXH3-128"), LP_ERR_HASH_MISMATCH);
    assert_int_equal(apply_rehead(old, on, d, dn, &x, sn, NULL), LP_OK);
    /* a header naming another SHA-256 than the one trusted: refused first */
    x = h;
    x.new_sha256[0] ^= 1;
    assert_int_equal(apply_rehead(old, on, d, dn, &x, sn, "expected"), LP_ERR_HASH_MISMATCH);
    /* the base by its XXH3-128, whatever its SHA-256 says */
    x = h;
    x.old_xxh128[0] ^= 1;
    assert_int_equal(apply_rehead(old, on, d, dn, &x, NULL, "base"), LP_ERR_HASH_MISMATCH);
    assert_int_equal(apply_rehead(old, on, d, dn, &x, sn, "XXH3-128"), LP_ERR_HASH_MISMATCH);
    x = h;
    x.old_sha256[0] ^= 1;
    assert_int_equal(apply_rehead(old, on, d, dn, &x, NULL, NULL), LP_OK);

    /* version 2: the same streams, SHA-256 digests only, both checked */
    x = h;
    x.version = LP_DELTA_VERSION_2;
    memset(x.old_xxh128, 0, 16);
    memset(x.new_xxh128, 0, 16);
    assert_int_equal(apply_rehead(old, on, d, dn, &x, NULL, NULL), LP_OK);
    x.new_sha256[0] ^= 1;
    assert_int_equal(apply_rehead(old, on, d, dn, &x, NULL, "SHA-256"), LP_ERR_HASH_MISMATCH);
    x.new_sha256[0] ^= 1;
    x.old_sha256[0] ^= 1;
    assert_int_equal(apply_rehead(old, on, d, dn, &x, NULL, "SHA-256"), LP_ERR_HASH_MISMATCH);
    free(old);
    free(nw);
    free(d);
}

/* One stream compressed here: a zstd frame (version 1), or a magicless one
 * and nothing for no bytes (version 2). */
static uint8_t *forge_stream(int v2, const uint8_t *src, size_t n, size_t *zn)
{
    uint8_t *z = malloc(ZSTD_compressBound(n));
    assert_non_null(z);
    *zn = 0;
    if (v2 && n == 0)
        return z;
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3);
    if (v2)
        ZSTD_CCtx_setParameter(cc, ZSTD_c_format, ZSTD_f_zstd1_magicless);
    *zn = ZSTD_compress2(cc, z, ZSTD_compressBound(n), src, n);
    ZSTD_freeCCtx(cc);
    assert_false(ZSTD_isError(*zn));
    return z;
}

/* A delta with the given header fields and raw streams, compressed here in
 * the header's version. */
static uint8_t *forge(lp_delta_header *h, const uint8_t *s[3], const size_t sn[3], size_t *len)
{
    uint8_t *z[3];
    size_t zn[3], total = 0;
    for (int i = 0; i < 3; i++) {
        z[i] = forge_stream(h->version != LP_DELTA_VERSION_1, s[i], sn[i], &zn[i]);
        total += zn[i];
    }
    if (!h->control_len && !h->diff_len && !h->extra_len) {
        h->control_len = zn[0];
        h->diff_len = zn[1];
        h->extra_len = zn[2];
    }
    uint8_t hdr[LP_DELTA_HEADER_SIZE];
    size_t at = lpd_header_encode(h, hdr);
    uint8_t *p = malloc(total + at);
    memcpy(p, hdr, at);
    total += at;
    for (int i = 0; i < 3; i++) {
        memcpy(p + at, z[i], zn[i]);
        at += zn[i];
        free(z[i]);
    }
    *len = total;
    return p;
}

static lp_delta_header base_header(const uint8_t *old, size_t on, uint64_t nn)
{
    lp_delta_header h = {.version = LP_DELTA_VERSION_1, .old_size = on, .new_size = nn};
    uint8_t d[LP_HASH_MAX_LEN];
    lp_hash_buf(LP_HASH_SHA256, old, on, d, NULL);
    memcpy(h.old_sha256, d, 32);
    lpd_xxh128(old, on, h.old_xxh128);
    return h;
}

static void expect_refused(const uint8_t *old, size_t on, lp_delta_header h, const char *ctl,
                           size_t ctl_n, size_t diff_n, size_t extra_n, lp_status want,
                           const char *needle)
{
    static uint8_t zeros[4096];
    /* diff_n zero diff bytes: one run-length record (diff_n < 128) */
    const uint8_t rle[2] = {(uint8_t)diff_n, 0};
    const uint8_t *s[3] = {(const uint8_t *)ctl, rle, zeros};
    const size_t sn[3] = {ctl_n, diff_n ? 2 : 0, extra_n};
    if (!h.control_raw && !h.diff_raw && !h.extra_raw) {
        h.control_raw = ctl_n;
        h.diff_raw = sn[1];
        h.extra_raw = extra_n;
    }
    size_t dn;
    uint8_t *d = forge(&h, s, sn, &dn);
    lp_error err;
    lp_status st = try_apply(old, on, d, dn, &err);
    if (st != want || !strstr(err.msg, needle))
        fail_msg("got %d \"%s\", want %d containing \"%s\"", st, err.msg, want, needle);
    free(d);
}

static void test_hostile_headers(void **state)
{
    (void)state;
    const uint8_t old[] = "0123456789abcdef0123456789abcdef";
    size_t on = sizeof old - 1;
    lp_delta_header h = base_header(old, on, 16);
    /* add 16 from the base: a valid delta, for reference */
    expect_refused(old, on, h, "\x10\x00\x00", 3, 16, 0, LP_ERR_HASH_MISMATCH, "result");
    lp_delta_header x = h;
    x.version = 4;
    expect_refused(old, on, x, "\x10\x00\x00", 3, 16, 0, LP_ERR_UNSUPPORTED, "version 4");
    x.version = 0;
    expect_refused(old, on, x, "\x10\x00\x00", 3, 16, 0, LP_ERR_UNSUPPORTED, "version 0");
    x = h;
    x.flags = 0x80;
    expect_refused(old, on, x, "\x10\x00\x00", 3, 16, 0, LP_ERR_UNSUPPORTED, "flags");
    x = h;
    x.new_size = UINT64_MAX;
    expect_refused(old, on, x, "\x10\x00\x00", 3, 16, 0, LP_ERR_TOO_LARGE, "limit");
    x = h;
    x.old_size = LP_DELTA_MAX_SIZE + 1;
    expect_refused(old, on, x, "\x10\x00\x00", 3, 16, 0, LP_ERR_TOO_LARGE, "limit");
    x = h;
    x.control_len = UINT64_MAX - 10; /* sum would overflow */
    x.diff_len = 20;
    expect_refused(old, on, x, "\x10\x00\x00", 3, 16, 0, LP_ERR_TOO_LARGE, "stream lengths");
    x = h;
    x.control_len = 1000000; /* beyond the data */
    x.diff_len = 1;
    x.extra_len = 1;
    expect_refused(old, on, x, "\x10\x00\x00", 3, 16, 0, LP_ERR_MALFORMED, "truncated");
    x = h;
    x.extra_raw = 17; /* more extra bytes than the result has */
    x.control_raw = 3;
    x.diff_raw = 2;
    expect_refused(old, on, x, "\x10\x00\x00", 3, 16, 0, LP_ERR_MALFORMED, "too large");
    x = h;
    x.control_raw = 4; /* frame holds 3 */
    x.diff_raw = 2;
    expect_refused(old, on, x, "\x10\x00\x00", 3, 16, 0, LP_ERR_MALFORMED, "header says");
    x = base_header(old, on, 32 << 20);
    x.flags = LP_DELTA_FLAG_EXTRA_PREFIX;
    x.control_raw = 3;
    x.extra_raw = 32 << 20;
    expect_refused(old, on, x, "\x00\x80\x80\x10\x00", 5, 0, 0, LP_ERR_TOO_LARGE, "memory");
}

static void test_hostile_entries(void **state)
{
    (void)state;
    const uint8_t old[] = "0123456789abcdef0123456789abcdef";
    size_t on = sizeof old - 1;
    lp_delta_header h = base_header(old, on, 40);
    /* add 40 > base of 32 */
    expect_refused(old, on, h, "\x28\x00\x00", 3, 40, 0, LP_ERR_MALFORMED, "beyond");
    /* copy beyond the result */
    expect_refused(old, on, h, "\x00\x29\x00", 3, 0, 40, LP_ERR_MALFORMED, "beyond the result");
    /* seek before the start of the base (zigzag 3 = -2) */
    expect_refused(old, on, h, "\x01\x00\x03\x27\x00\x00", 6, 1, 39, LP_ERR_MALFORMED, "seek");
    /* seek past the end (zigzag 100 = +50) */
    expect_refused(old, on, h, "\x01\x00\x64\x27\x00\x00", 6, 1, 39, LP_ERR_MALFORMED, "seek");
    /* a number longer than 64 bits */
    expect_refused(old, on, h, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00\x00", 12, 40, 0,
                   LP_ERR_MALFORMED, "64 bits");
    /* control stream ends before the result is complete */
    expect_refused(old, on, h, "\x10\x00\x00", 3, 40, 0, LP_ERR_MALFORMED, "control stream");
    /* diff stream shorter than the entries need: header says 16+24 */
    lp_delta_header x = h;
    x.control_raw = 3;
    x.diff_raw = 2;
    x.extra_raw = 24;
    expect_refused(old, on, x, "\x14\x14\x00", 3, 16, 24, LP_ERR_MALFORMED, "diff stream");
    /* an empty run record in the diff stream */
    {
        lp_delta_header e = base_header(old, on, 16);
        static const uint8_t ctl[] = {0x10, 0x00, 0x00}, rec[] = {0x00, 0x00};
        const uint8_t *s3[3] = {ctl, rec, rec};
        const size_t n3[3] = {3, 2, 0};
        e.control_raw = 3;
        e.diff_raw = 2;
        size_t dn;
        uint8_t *d = forge(&e, s3, n3, &dn);
        lp_error err;
        assert_int_equal(try_apply(old, on, d, dn, &err), LP_ERR_MALFORMED);
        assert_non_null(strstr(err.msg, "empty run record"));
        free(d);
    }
    /* control bytes left over after the result is complete */
    expect_refused(old, on, h, "\x00\x28\x00\x00\x01\x00", 6, 0, 40, LP_ERR_MALFORMED,
                   "does not use");
}

static int dir_entries(const char *path)
{
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* ---- dictionary frames ------------------------------------------------------ */

/* A pair over LPD_FRAME_MAX: the real executables of this build,
 * concatenated (old: livepush then livepush-agent, repeated; new: the other
 * order, every 4096th byte changed) up to about 17 MiB.  Both start with an
 * ELF file, whose tables the dictionary frames filter. */
static void big_pair(uint8_t **old, size_t *on, uint8_t **nw, size_t *nn)
{
    size_t an, bn;
    uint8_t *a = lp_test_read_file(lp_test_getenv_or_skip("LP_BIN"), &an);
    uint8_t *b = lp_test_read_file(lp_test_getenv_or_skip("LP_AGENT_BIN"), &bn);
    assert_true(a && b);
    size_t want = LPD_FRAME_MAX + (1u << 20);
    *old = malloc(want + an + bn);
    *nw = malloc(want + an + bn);
    assert_true(*old && *nw);
    for (*on = 0; *on < want; *on += an + bn) {
        memcpy(*old + *on, a, an);
        memcpy(*old + *on + an, b, bn);
    }
    for (*nn = 0; *nn < want; *nn += an + bn) {
        memcpy(*nw + *nn, b, bn);
        memcpy(*nw + *nn + bn, a, an);
    }
    for (size_t i = 0; i < *nn; i += 4096)
        (*nw)[i]++;
    free(a);
    free(b);
}

/* Bytes of the magicless zstd frame at p (version 2 streams), read from its
 * frame header and block headers. */
static size_t frame_size(const uint8_t *p, size_t n)
{
    assert_true(n >= 1);
    unsigned fhd = p[0], fcs = fhd >> 6, single = (fhd >> 5) & 1, sum = (fhd >> 2) & 1;
    static const size_t did[4] = {0, 1, 2, 4}, fcsz[4] = {0, 2, 4, 8};
    size_t at = 1 + !single + did[fhd & 3] + (fcs == 0 ? single : fcsz[fcs]);
    for (;;) {
        assert_true(at + 3 <= n);
        uint32_t bh = p[at] | (uint32_t)p[at + 1] << 8 | (uint32_t)p[at + 2] << 16;
        at += 3 + (((bh >> 1) & 3) == 1 ? 1 : bh >> 3);
        if (bh & 1)
            break;
    }
    at += sum ? 4 : 0;
    assert_true(at <= n);
    return at;
}

static size_t count_frames(const uint8_t *d, size_t dn, const lp_delta_header *h)
{
    size_t at = h->header_len + h->control_len + h->diff_len, n = 0;
    while (at < dn) {
        at += frame_size(d + at, dn - at);
        n++;
    }
    return n;
}

/* LP_DELTA_DICT_ONLY: the result as frames with the base as dictionary;
 * round trip, several frames, and the refusals: a frame cut off, a byte
 * changed in the second frame, the last frame missing (lengths fixed up). */
static void test_dict_frames(void **state)
{
    (void)state;
    uint8_t *old, *nw, *d = NULL, *out = NULL;
    size_t on, nn, dn, outn;
    big_pair(&old, &on, &nw, &nn);
    lp_error err;
    lp_delta_stats st;
    lp_delta_options opt = {.dict = LP_DELTA_DICT_ONLY, .dict_level = 3,
                            .lzma = LP_DELTA_LZMA_OFF};
    assert_int_equal(lp_delta_make(old, on, nw, nn, &opt, &d, &dn, &st, &err), LP_OK);
    assert_true(st.dict_tried && st.dict_kept);
    lp_delta_header h;
    assert_int_equal(lp_delta_read_header(d, dn, dn, &h, &err), LP_OK);
    assert_int_equal(h.flags, LP_DELTA_FLAG_DICT_FRAMES);
    assert_true(count_frames(d, dn, &h) >= 2);
    assert_true(dn < nn / 2); /* the base did its work as dictionary */
    assert_int_equal(lp_delta_apply_buf(old, on, d, dn, nn, &out, &outn, &err), LP_OK);
    assert_int_equal(outn, nn);
    assert_memory_equal(out, nw, nn);
    free(out);

    /* a byte changed inside the second frame */
    size_t first = h.header_len + h.control_len + h.diff_len;
    size_t f1 = frame_size(d + first, dn - first);
    d[first + f1 + 40] ^= 0x5A;
    assert_int_not_equal(try_apply(old, on, d, dn, &err), LP_OK);
    d[first + f1 + 40] ^= 0x5A;

    /* the delta cut in the middle of the second frame */
    assert_int_not_equal(try_apply(old, on, d, first + f1 + 10, &err), LP_OK);

    /* the last frame missing, the header's lengths made to agree */
    size_t at = first, last = first;
    while (at < dn) {
        last = at;
        at += frame_size(d + at, dn - at);
    }
    lp_delta_header x = h;
    x.extra_len = last - first;
    uint8_t hdr[LP_DELTA_HEADER_SIZE];
    size_t hn = lpd_header_encode(&x, hdr);
    uint8_t *cut = malloc(hn + last - h.header_len);
    assert_non_null(cut);
    memcpy(cut, hdr, hn);
    memcpy(cut + hn, d + h.header_len, last - h.header_len);
    lp_status rc = try_apply(old, on, cut, hn + last - h.header_len, &err);
    free(cut);
    assert_int_equal(rc, LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "extra stream"));
    free(d);
    free(old);
    free(nw);
}

/* Frames compressed by several threads (sharing the dictionary's tables):
 * the same bytes whatever the number of threads, and a correct result. */
static void test_dict_frames_threads(void **state)
{
    (void)state;
    uint8_t *old, *nw, *d2 = NULL, *d3 = NULL, *out = NULL;
    size_t on, nn, n2, n3, outn;
    big_pair(&old, &on, &nw, &nn);
    lp_error err;
    lp_delta_options opt = {.dict = LP_DELTA_DICT_ONLY, .dict_level = 3, .threads = 2,
                            .lzma = LP_DELTA_LZMA_OFF};
    assert_int_equal(lp_delta_make(old, on, nw, nn, &opt, &d2, &n2, NULL, &err), LP_OK);
    opt.threads = 3;
    assert_int_equal(lp_delta_make(old, on, nw, nn, &opt, &d3, &n3, NULL, &err), LP_OK);
    assert_int_equal(n2, n3);
    assert_memory_equal(d2, d3, n2);
    assert_int_equal(lp_delta_apply_buf(old, on, d3, n3, nn, &out, &outn, &err), LP_OK);
    assert_int_equal(outn, nn);
    assert_memory_equal(out, nw, nn);
    free(out);
    free(d2);
    free(d3);
    free(old);
    free(nw);
}

/* Forged frame sequences: a frame declaring more than
 * LP_DELTA_DICT_FRAME_MAX bytes, frames adding up to less than the header
 * says, and the flag combined with another coding. */
static void test_dict_frames_hostile(void **state)
{
    (void)state;
    const uint8_t old[] = "0123456789abcdef0123456789abcdef";
    size_t on = sizeof old - 1;
    size_t big = LP_DELTA_DICT_FRAME_MAX + 1;
    uint8_t *zeros = calloc(1, big);
    assert_non_null(zeros);
    /* one frame of 8 MiB + 1 */
    lp_delta_header x = base_header(old, on, big);
    x.flags = LP_DELTA_FLAG_DICT_FRAMES;
    x.control_raw = 5;
    x.extra_raw = big;
    const uint8_t ctl[] = {0x00, 0x81, 0x80, 0x80, 0x04, 0x00}; /* add 0, copy 8 MiB + 1, seek 0 */
    const uint8_t *sv[3] = {ctl, NULL, zeros};
    size_t sn[3] = {6, 0, big}, dn;
    x.control_raw = 6;
    uint8_t *d = forge(&x, sv, sn, &dn);
    lp_error err;
    assert_int_equal(try_apply(old, on, d, dn, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "a frame declares"));
    free(d);
    /* frames of 16 bytes where the header says 32 */
    x = base_header(old, on, 32);
    x.flags = LP_DELTA_FLAG_DICT_FRAMES;
    const uint8_t ctl2[] = {0x00, 0x20, 0x00};
    sv[0] = ctl2;
    sn[0] = 3;
    sn[2] = 16;
    x.control_raw = 3;
    x.extra_raw = 32;
    d = forge(&x, sv, sn, &dn);
    assert_int_equal(try_apply(old, on, d, dn, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "extra stream"));
    free(d);
    /* combined with the x86 transform */
    expect_refused(old, on,
                   (lp_delta_header){.version = LP_DELTA_VERSION_1,
                                     .flags = LP_DELTA_FLAG_DICT_FRAMES | LP_DELTA_FLAG_X86,
                                     .old_size = on, .new_size = 16},
                   "\x00\x10\x00", 3, 0, 16, LP_ERR_MALFORMED, "combine");
    free(zeros);
}

/* The segment table of a dictionary-frames delta (its control stream). */
static size_t read_segs(const uint8_t *d, size_t dn, const lp_delta_header *h, size_t on,
                        lpd_seg *segs)
{
    uint8_t tab[LPD_SEGTAB_MAX];
    assert_true(h->control_raw > 0 && h->control_raw <= sizeof tab);
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    ZSTD_DCtx_setParameter(dc, ZSTD_d_format, ZSTD_f_zstd1_magicless);
    size_t tn = ZSTD_decompressDCtx(dc, tab, sizeof tab, d + h->header_len, h->control_len);
    ZSTD_freeDCtx(dc);
    assert_false(ZSTD_isError(tn));
    (void)dn;
    size_t n;
    lp_error err;
    assert_int_equal(lpd_segs_decode(tab, tn, on, h->new_size, segs, &n, &err), LP_OK);
    return n;
}

/* The delta d with another segment table (control stream), the extra
 * stream's bytes as they are. */
static uint8_t *with_segs(const uint8_t *d, const lp_delta_header *h, const lpd_seg *segs,
                          size_t n, size_t *len)
{
    uint8_t tab[16 + LPD_SEG_MAX * 100];
    size_t tn = lpd_segs_encode(segs, n, tab), zn;
    uint8_t *z = forge_stream(1, tab, tn, &zn);
    lp_delta_header x = *h;
    x.control_len = zn;
    x.control_raw = tn;
    uint8_t hdr[LP_DELTA_HEADER_SIZE];
    size_t hn = lpd_header_encode(&x, hdr);
    const uint8_t *extra = d + h->header_len + h->control_len + h->diff_len;
    uint8_t *p = malloc(hn + zn + h->extra_len);
    assert_non_null(p);
    memcpy(p, hdr, hn);
    memcpy(p + hn, z, zn);
    memcpy(p + hn + zn, extra, h->extra_len);
    *len = hn + zn + h->extra_len;
    free(z);
    return p;
}

/* LZMA segments: the raw parts of the dictionary-frames coding as LZMA2
 * streams with the base as preset dictionary.  Round trip, smaller than the
 * same coding in zstd frames, the table names one LZMA segment holding the
 * whole extra stream; refused cleanly: a byte changed inside it, the delta
 * cut inside it (lengths made to agree), the table's stream length one short
 * or one long, and the zstd frames of a table's raw segment fed to LZMA. */
static void test_lzma_segments(void **state)
{
    (void)state;
    uint8_t *old, *nw, *d = NULL, *z = NULL, *out = NULL;
    size_t on, nn, dn, zn, outn;
    big_pair(&old, &on, &nw, &nn);
    on = nn = (size_t)3 << 20; /* LZMA at level 9 is slow: 3 MiB is enough */
    lp_error err;
    lp_delta_options opt = {.dict = LP_DELTA_DICT_ONLY, .dict_level = 3,
                            .lzma = LP_DELTA_LZMA_ON};
    assert_int_equal(lp_delta_make(old, on, nw, nn, &opt, &d, &dn, NULL, &err), LP_OK);
    assert_int_equal(lp_delta_apply_buf(old, on, d, dn, nn, &out, &outn, &err), LP_OK);
    assert_int_equal(outn, nn);
    assert_memory_equal(out, nw, nn);
    free(out);
    opt.lzma = LP_DELTA_LZMA_OFF;
    assert_int_equal(lp_delta_make(old, on, nw, nn, &opt, &z, &zn, NULL, &err), LP_OK);
    assert_true(dn < zn);
    /* AUTO leaves a result under LPD_LZMA_MIN to zstd */
    opt.lzma = LP_DELTA_LZMA_AUTO;
    uint8_t *a = NULL;
    size_t an;
    assert_int_equal(lp_delta_make(old, on, nw, nn, &opt, &a, &an, NULL, &err), LP_OK);
    assert_int_equal(an, zn);
    assert_memory_equal(a, z, zn);
    free(a);

    lp_delta_header h;
    assert_int_equal(lp_delta_read_header(d, dn, dn, &h, &err), LP_OK);
    lpd_seg segs[LPD_SEG_MAX];
    assert_int_equal(read_segs(d, dn, &h, on, segs), 1);
    assert_int_equal(segs[0].kind, LPD_SEG_LZMA);
    assert_int_equal(segs[0].clen, h.extra_len);
    assert_true(segs[0].dict <= LPD_LZMA_DICT_MAX && segs[0].old_len == on);
    size_t extra = h.header_len + h.control_len + h.diff_len;

    /* a byte changed in the middle of the LZMA stream */
    d[extra + h.extra_len / 2] ^= 0x21;
    assert_int_not_equal(try_apply(old, on, d, dn, &err), LP_OK);
    d[extra + h.extra_len / 2] ^= 0x21;

    /* cut inside it, the header's extra length made to agree */
    lp_delta_header x = h;
    x.extra_len = h.extra_len / 2;
    uint8_t hdr[LP_DELTA_HEADER_SIZE];
    size_t hn = lpd_header_encode(&x, hdr);
    size_t cn = hn + h.control_len + x.extra_len;
    uint8_t *cut = malloc(cn);
    assert_non_null(cut);
    memcpy(cut, hdr, hn);
    memcpy(cut + hn, d + h.header_len, h.control_len + x.extra_len);
    assert_int_equal(try_apply(old, on, cut, cn, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "LZMA"));
    free(cut);

    /* the table's stream length one short, one long */
    for (int delta = -1; delta <= 1; delta += 2) {
        lpd_seg t = segs[0];
        t.clen = (uint64_t)((int64_t)t.clen + delta);
        size_t fn;
        uint8_t *f = with_segs(d, &h, &t, 1, &fn);
        assert_int_equal(try_apply(old, on, f, fn, &err), LP_ERR_MALFORMED);
        assert_non_null(strstr(err.msg, delta < 0 ? "LZMA segment is truncated"
                                                  : "ends before its declared length"));
        free(f);
    }

    /* zstd frames read as an LZMA stream */
    lp_delta_header zh;
    assert_int_equal(lp_delta_read_header(z, zn, zn, &zh, &err), LP_OK);
    lpd_seg t = segs[0];
    t.clen = zh.extra_len;
    size_t fn;
    uint8_t *f = with_segs(z, &zh, &t, 1, &fn);
    assert_int_equal(try_apply(old, on, f, fn, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "LZMA segment"));
    free(f);
    free(z);
    free(d);
    free(old);
    free(nw);
}

/* Collects a result handed out in order. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} collected;

static lp_status collect(void *ctx, const uint8_t *data, size_t len, lp_error *err)
{
    collected *c = ctx;
    if (len > c->cap - c->n)
        return lp_error_set(err, LP_ERR_MALFORMED, "collect: too long");
    memcpy(c->p + c->n, data, len);
    c->n += len;
    return LP_OK;
}

/* One delta whose segments are the LZMA segments of k deltas from the same
 * base (each of one LZMA segment), their streams one after the other: a run
 * of LZMA segments as a long raw part is cut into.  *h gets its header. */
static uint8_t *lzma_run_delta(uint8_t *const *ds, const size_t *dns, size_t k,
                               const uint8_t *result, size_t on, lp_delta_header *h, size_t *len)
{
    lpd_seg segs[LPD_SEG_MAX];
    uint64_t extra = 0, raw = 0;
    for (size_t i = 0; i < k; i++) {
        lp_delta_header hi;
        lp_error err;
        assert_int_equal(lp_delta_read_header(ds[i], dns[i], dns[i], &hi, &err), LP_OK);
        if (i == 0)
            *h = hi;
        if (hi.control_raw == 0) { /* zstd frames, the whole result one raw segment */
            segs[i] = (lpd_seg){.len = hi.new_size, .kind = LPD_SEG_RAW};
            extra += hi.extra_len;
            raw += hi.extra_raw;
            continue;
        }
        assert_int_equal(read_segs(ds[i], dns[i], &hi, on, &segs[i]), 1);
        assert_int_equal(segs[i].kind, LPD_SEG_LZMA);
        assert_true(segs[i].dict <= LPD_LZMA_PAIR_MAX / 2);
        extra += hi.extra_len;
        raw += hi.extra_raw;
    }
    uint8_t *cat = malloc(LP_DELTA_HEADER_SIZE + 64 + extra), *at;
    assert_non_null(cat);
    /* a stand-in delta for with_segs: no header or control, the streams */
    lp_delta_header x = *h;
    x.header_len = x.control_len = x.diff_len = 0;
    x.extra_len = extra;
    at = cat;
    for (size_t i = 0; i < k; i++) {
        lp_delta_header hi;
        lp_error err;
        assert_int_equal(lp_delta_read_header(ds[i], dns[i], dns[i], &hi, &err), LP_OK);
        memcpy(at, ds[i] + hi.header_len + hi.control_len + hi.diff_len, hi.extra_len);
        at += hi.extra_len;
    }
    x.new_size = raw;
    x.extra_raw = raw;
    lp_error err;
    uint8_t dg[LP_HASH_MAX_LEN];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, result, raw, dg, &err), LP_OK);
    memcpy(x.new_sha256, dg, 32);
    lpd_xxh128(result, raw, x.new_xxh128);
    uint8_t *d = with_segs(cat, &x, segs, k, len);
    free(cat);
    assert_int_equal(lp_delta_read_header(d, *len, *len, h, &err), LP_OK);
    return d;
}

/* A run of LZMA segments is decoded by two threads when the result can be
 * written by position (a buffer, a file): the same bytes as the in-order
 * apply, a file's result placed after what the descriptor had written and
 * the descriptor left at its end, a descriptor open for writing only
 * served in order; refused cleanly: a byte changed in any of
 * the segments (whichever thread decodes it), the run's streams longer than
 * the delta, and a base of the right size but other bytes (hashed on its own
 * thread while the result is made). */
static void test_lzma_pairs(void **state)
{
    (void)state;
    uint8_t *old, *nw;
    size_t on, nn;
    big_pair(&old, &on, &nw, &nn);
    on = (size_t)2 << 20;
    size_t part = (size_t)1 << 20, k = 3;
    lp_delta_options opt = {.dict = LP_DELTA_DICT_ONLY, .dict_level = 3,
                            .lzma = LP_DELTA_LZMA_ON};
    uint8_t *ds[4];
    size_t dns[4];
    lp_error err;
    for (size_t i = 0; i < k; i++)
        assert_int_equal(lp_delta_make(old, on, nw + i * part, part, &opt, &ds[i], &dns[i], NULL,
                                       &err), LP_OK);
    lp_delta_header h;
    size_t dn, rn = k * part;
    uint8_t *d = lzma_run_delta(ds, dns, k, nw, on, &h, &dn);

    /* the run followed by a raw segment in zstd frames: made while the helper
     * may still decode its last piece (placed after the run, hashed after
     * it); either way the same bytes, every time */
    opt.lzma = LP_DELTA_LZMA_OFF;
    assert_int_equal(lp_delta_make(old, on, nw + k * part, part, &opt, &ds[k], &dns[k], NULL,
                                   &err), LP_OK);
    lp_delta_header th;
    size_t tn;
    uint8_t *td = lzma_run_delta(ds, dns, k + 1, nw, on, &th, &tn);
    /* and preceded by one too: the run's helper starts before it is reached,
     * where the frames before it say the run's streams start */
    uint8_t *hd_ds[5] = {ds[k], ds[0], ds[1], ds[2], ds[k]};
    size_t hd_dns[5] = {dns[k], dns[0], dns[1], dns[2], dns[k]};
    size_t hn_ = part + rn + part;
    uint8_t *want = malloc(hn_);
    assert_non_null(want);
    memcpy(want, nw + k * part, part);
    memcpy(want + part, nw, rn + part);
    lp_delta_header hh;
    size_t hdn;
    uint8_t *hd = lzma_run_delta(hd_ds, hd_dns, 5, want, on, &hh, &hdn);
    for (int round = 0; round < 8; round++) {
        uint8_t *o = NULL;
        size_t on2;
        assert_int_equal(lp_delta_apply_buf(old, on, td, tn, rn + part, &o, &on2, &err), LP_OK);
        assert_int_equal(on2, rn + part);
        assert_memory_equal(o, nw, rn + part);
        free(o);
        assert_int_equal(lp_delta_apply_buf(old, on, hd, hdn, hn_, &o, &on2, &err), LP_OK);
        assert_int_equal(on2, hn_);
        assert_memory_equal(o, want, hn_);
        free(o);
    }
    /* the head's frame one byte shorter in the table's eyes: the run's
     * streams are not where the frames end; refused, whichever thread
     * notices first */
    lpd_seg hs[LPD_SEG_MAX];
    assert_int_equal(read_segs(hd, hdn, &hh, on, hs), 5);
    hs[0].len--;
    hs[4].len++;
    size_t bn;
    uint8_t *bad = with_segs(hd, &hh, hs, 5, &bn);
    uint8_t *o = NULL;
    size_t on2;
    assert_int_not_equal(lp_delta_apply_buf(old, on, bad, bn, hn_, &o, &on2, &err), LP_OK);
    assert_null(o);
    free(bad);
    free(hd);
    free(want);
    free(td);
    free(ds[k]);

    /* a buffer (two threads), in order through a writer (one): same bytes */
    uint8_t *out = NULL;
    size_t outn;
    assert_int_equal(lp_delta_apply_buf(old, on, d, dn, rn, &out, &outn, &err), LP_OK);
    assert_int_equal(outn, rn);
    assert_memory_equal(out, nw, rn);
    free(out);
    collected c = {malloc(rn), 0, rn};
    assert_int_equal(lp_delta_apply_mem(old, on, d, dn, h.new_sha256, collect, &c, &err), LP_OK);
    assert_int_equal(c.n, rn);
    assert_memory_equal(c.p, nw, rn);
    free(c.p);

    /* a file, after five bytes the descriptor already wrote */
    char *po = lp_test_join(tmp, "pairs.old"), *pd = lp_test_join(tmp, "pairs.delta");
    char *pr = lp_test_join(tmp, "pairs.out");
    assert_int_equal(lp_test_write_file(po, old, on), 0);
    assert_int_equal(lp_test_write_file(pd, d, dn), 0);
    int fd = open(pr, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "head:", 5), 5);
    assert_int_equal(lp_delta_apply_file_fd(po, pd, fd, h.new_sha256, &err), LP_OK);
    assert_int_equal(write(fd, "!", 1), 1);
    close(fd);
    size_t fn;
    uint8_t *f = lp_test_read_file(pr, &fn);
    assert_int_equal(fn, 5 + rn + 1);
    assert_memory_equal(f, "head:", 5);
    assert_memory_equal(f + 5, nw, rn);
    assert_int_equal(f[5 + rn], '!');
    free(f);
    /* open for writing only: nothing can be read back, one thread */
    fd = open(pr, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(lp_delta_apply_file_fd(po, pd, fd, h.new_sha256, &err), LP_OK);
    close(fd);
    f = lp_test_read_file(pr, &fn);
    assert_int_equal(fn, rn);
    assert_memory_equal(f, nw, rn);
    free(f);

    /* a byte changed in each segment's stream in turn */
    size_t extra = h.header_len + h.control_len + h.diff_len, seg_at = 0;
    for (size_t i = 0; i < k; i++) {
        lp_delta_header hi;
        assert_int_equal(lp_delta_read_header(ds[i], dns[i], dns[i], &hi, &err), LP_OK);
        size_t at = extra + seg_at + hi.extra_len / 2;
        d[at] ^= 0x40;
        lp_error_clear(&err);
        assert_int_equal(lp_delta_apply_buf(old, on, d, dn, rn, &out, &outn, &err),
                         LP_ERR_MALFORMED);
        assert_non_null(strstr(err.msg, "LZMA segment"));
        assert_null(out);
        d[at] ^= 0x40;
        seg_at += hi.extra_len;
    }

    /* the table's last stream one byte longer than what the delta holds */
    lpd_seg segs[LPD_SEG_MAX];
    assert_int_equal(read_segs(d, dn, &h, on, segs), k);
    segs[k - 1].clen++;
    size_t ln;
    uint8_t *longer = with_segs(d, &h, segs, k, &ln);
    assert_int_equal(lp_delta_apply_buf(old, on, longer, ln, rn, &out, &outn, &err),
                     LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "truncated"));
    free(longer);

    /* another base of the same size */
    old[on / 2] ^= 1;
    assert_int_equal(lp_test_write_file(po, old, on), 0);
    assert_int_equal(lp_delta_apply_file(po, pd, pr, NULL, &err), LP_ERR_HASH_MISMATCH);
    assert_non_null(strstr(err.msg, "base is not the file"));
    assert_int_equal(lp_delta_apply_buf(old, on, d, dn, rn, &out, &outn, &err),
                     LP_ERR_HASH_MISMATCH);
    assert_non_null(strstr(err.msg, "base is not the file"));

    for (size_t i = 0; i < k; i++)
        free(ds[i]);
    free(d);
    free(po);
    free(pd);
    free(pr);
    free(old);
    free(nw);
}

/* lp_delta_apply_fd_to_fd: the result written into the descriptor; a delta
 * making more than max_out bytes refused before anything is written. */
static void test_apply_fd_to_fd(void **state)
{
    (void)state;
    uint8_t *old, *nw, *d;
    size_t on, nn, dn;
    small_pair(&old, &on, &nw, &nn, &d, &dn);
    char *pd = lp_test_join(tmp, "fdfd.delta"), *pr = lp_test_join(tmp, "fdfd.out");
    assert_int_equal(lp_test_write_file(pd, d, dn), 0);
    int dfd = open(pd, O_RDONLY);
    int ofd = open(pr, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(dfd >= 0 && ofd >= 0);
    lp_error err;
    assert_int_equal(lp_delta_apply_fd_to_fd(old, on, dfd, NULL, nn - 1, ofd, &err),
                     LP_ERR_LENGTH_MISMATCH);
    assert_non_null(strstr(err.msg, "more than"));
    assert_int_equal(lseek(ofd, 0, SEEK_END), 0);
    assert_int_equal(lp_delta_apply_fd_to_fd(old, on, dfd, NULL, nn, ofd, &err), LP_OK);
    assert_int_equal(lseek(ofd, 0, SEEK_CUR), (off_t)nn);
    close(ofd);
    close(dfd);
    size_t fn;
    uint8_t *f = lp_test_read_file(pr, &fn);
    assert_int_equal(fn, nn);
    assert_memory_equal(f, nw, nn);
    assert_int_equal(lp_delta_apply_fd_to_fd(old, on, -1, NULL, nn, 1, &err),
                     LP_ERR_INVALID_ARG);
    free(f);
    free(pd);
    free(pr);
    free(old);
    free(nw);
    free(d);
}

/* The filters of dictionary-frames segments undo exactly what they do, on any
 * bytes: random ones, and records that look like .eh_frame's. */
static void test_filters_bijective(void **state)
{
    (void)state;
    size_t n = 70000;
    uint8_t *a = malloc(n), *b = malloc(n);
    assert_true(a && b);
    uint32_t x = 7;
    const lpd_seg kinds[] = {
        {.kind = LPD_SEG_TABLE, .start = 12, .rec = 8, .width = 4, .mask = 3},
        {.kind = LPD_SEG_TABLE, .start = 0, .rec = 24, .width = 8, .mask = 3},
        {.kind = LPD_SEG_TABLE, .start = 5, .rec = 64, .width = 4, .mask = 0xA5A5},
        {.kind = LPD_SEG_EHFRAME},
    };
    for (int round = 0; round < 8; round++) {
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            a[i] = (uint8_t)(x >> 23);
        }
        if (round & 1) /* plausible records: lengths of 20..60, ids, LSDA marks */
            for (size_t i = 0; i + 64 < n;) {
                uint32_t len = 16 + (a[i] % 44);
                memcpy(a + i, &len, 4);
                if (a[i + 5] & 1)
                    memset(a + i + 4, 0, 4);
                a[i + 16] = 4;
                i += 4 + len;
            }
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            size_t m = n - (size_t)round * 777;
            memcpy(b, a, m);
            lpd_filter_encode(&kinds[k], 0x400000 + round, b, m);
            if (round & 1)
                assert_memory_not_equal(a, b, m);
            lpd_filter_decode(&kinds[k], 0x400000 + round, b, m);
            assert_memory_equal(a, b, m);
            lpd_filter_decode(&kinds[k], 0x1234, b, m); /* and the other way round */
            lpd_filter_encode(&kinds[k], 0x1234, b, m);
            assert_memory_equal(a, b, m);
        }
    }
    free(a);
    free(b);
    /* this build's executables: the tables are found and filtered */
    size_t on, nn;
    uint8_t *old = lp_test_read_file(lp_test_getenv_or_skip("LP_AGENT_BIN"), &on);
    uint8_t *nw = lp_test_read_file(lp_test_getenv_or_skip("LP_BIN"), &nn);
    assert_true(old && nw);
    lpd_seg segs[LPD_SEG_MAX];
    size_t ns = lpd_segs_plan(old, on, nw, nn, segs), filtered = 0;
    uint64_t sum = 0;
    for (size_t i = 0; i < ns; i++) {
        sum += segs[i].len;
        filtered += segs[i].kind != LPD_SEG_RAW && segs[i].old_len > 0;
    }
    assert_int_equal(sum, nn);
    assert_true(filtered >= 2); /* .eh_frame and .eh_frame_hdr at least */
    uint8_t tab[16 + LPD_SEG_MAX * 100];
    size_t tn = lpd_segs_encode(segs, ns, tab), back_n;
    lpd_seg back[LPD_SEG_MAX];
    lp_error err;
    assert_int_equal(lpd_segs_decode(tab, tn, on, nn, back, &back_n, &err), LP_OK);
    assert_int_equal(back_n, ns);
    assert_memory_equal(back, segs, ns * sizeof *segs);
    /* the dictionary frames of these ELF files round trip */
    lp_delta_options opt = {.dict = LP_DELTA_DICT_ONLY, .dict_level = 3};
    uint8_t *d = NULL, *out = NULL;
    size_t dn, outn;
    assert_int_equal(lp_delta_make(old, on, nw, nn, &opt, &d, &dn, NULL, &err), LP_OK);
    lp_delta_header h;
    assert_int_equal(lp_delta_read_header(d, dn, dn, &h, &err), LP_OK);
    assert_true(h.control_raw > 0); /* a segment table */
    assert_int_equal(lp_delta_apply_buf(old, on, d, dn, nn, &out, &outn, &err), LP_OK);
    assert_int_equal(outn, nn);
    assert_memory_equal(out, nw, nn);
    free(out);
    free(d);
    free(old);
    free(nw);
}

/* A version 2 dictionary-frames delta forged from a segment table and the
 * frames' decoded sizes (frame_sizes, 0-terminated): raw frames with the
 * base as dictionary, filtered ones as their segment says. */
static uint8_t *forge_frames(const uint8_t *old, size_t on, const uint8_t *nw, size_t nn,
                             const lpd_seg *segs, size_t ns, const size_t *frame_sizes,
                             const uint8_t *tab, size_t tn, size_t *len)
{
    uint8_t *ext = malloc(2 * nn + 4096), *buf = malloc(nn + 1);
    size_t en = 0, at = 0, fi = 0;
    assert_true(ext && buf);
    for (size_t i = 0; i < ns; i++) {
        const lpd_seg *g = &segs[i];
        uint8_t *dict = NULL;
        memcpy(buf, nw + at, (size_t)g->len);
        if (g->kind != LPD_SEG_RAW) {
            lpd_filter_encode(g, g->va, buf, (size_t)g->len);
            dict = malloc((size_t)g->old_len + 1);
            memcpy(dict, old + g->old_off, (size_t)g->old_len);
            lpd_filter_encode(g, g->old_va, dict, (size_t)g->old_len);
        }
        for (size_t o = 0; o < g->len;) {
            size_t m = frame_sizes[fi++];
            assert_true(m > 0);
            ZSTD_CCtx *cc = ZSTD_createCCtx();
            ZSTD_CCtx_setParameter(cc, ZSTD_c_format, ZSTD_f_zstd1_magicless);
            ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 25);
            if (g->kind == LPD_SEG_RAW)
                ZSTD_CCtx_refPrefix(cc, old, on);
            else if (g->old_len)
                ZSTD_CCtx_refPrefix(cc, dict, (size_t)g->old_len);
            size_t r = ZSTD_compress2(cc, ext + en, 2 * nn + 4096 - en, buf + o, m);
            assert_false(ZSTD_isError(r));
            ZSTD_freeCCtx(cc);
            en += r;
            o += m;
        }
        free(dict);
        at += (size_t)g->len;
    }
    lp_delta_header h = base_header(old, on, nn);
    h.version = LP_DELTA_VERSION;
    h.flags = LP_DELTA_FLAG_DICT_FRAMES;
    uint8_t dg[LP_HASH_MAX_LEN];
    lp_hash_buf(LP_HASH_SHA256, nw, nn, dg, NULL);
    memcpy(h.new_sha256, dg, 32);
    lpd_xxh128(nw, nn, h.new_xxh128);
    size_t cn;
    uint8_t *cz = forge_stream(1, tab, tn, &cn);
    h.control_len = cn;
    h.control_raw = tn;
    h.extra_len = en;
    h.extra_raw = nn;
    uint8_t hdr[LP_DELTA_HEADER_SIZE];
    size_t hn = lpd_header_encode(&h, hdr);
    uint8_t *p = malloc(hn + cn + en);
    memcpy(p, hdr, hn);
    memcpy(p + hn, cz, cn);
    memcpy(p + hn + cn, ext, en);
    *len = hn + cn + en;
    free(cz);
    free(ext);
    free(buf);
    return p;
}

/* Segment tables and frames of version 2, valid and hostile. */
static void test_segments_hostile(void **state)
{
    (void)state;
    size_t on = 3000, nn = 3000;
    uint8_t *old = malloc(on), *nw = malloc(nn);
    assert_true(old && nw);
    uint32_t x = 3;
    for (size_t i = 0; i < on; i++) {
        x = x * 1103515245u + 12345u;
        old[i] = (uint8_t)(x >> 24);
        nw[i] = (i % 7) ? old[i] : (uint8_t)(old[i] + 1);
    }
    /* raw 1000 | table 1000 (dictionary: base 500..1500) | ehframe 1000 */
    lpd_seg segs[3] = {
        {.len = 1000, .kind = LPD_SEG_RAW},
        {.len = 1000, .kind = LPD_SEG_TABLE, .start = 4, .rec = 16, .width = 8, .mask = 1,
         .old_off = 500, .old_len = 1000},
        {.len = 1000, .kind = LPD_SEG_EHFRAME, .va = 0x1000, .old_va = 0x2000, .old_off = 2000,
         .old_len = 1000},
    };
    uint8_t tab[512];
    size_t tn = lpd_segs_encode(segs, 3, tab), dn;
    const size_t good[] = {600, 400, 1000, 1000, 0};
    uint8_t *d = forge_frames(old, on, nw, nn, segs, 3, good, tab, tn, &dn), *out = NULL;
    size_t outn;
    lp_error err;
    assert_int_equal(lp_delta_apply_buf(old, on, d, dn, nn, &out, &outn, &err), LP_OK);
    assert_memory_equal(out, nw, nn);
    free(out);
    free(d);
    /* a filtered segment in two frames */
    const size_t split[] = {1000, 500, 500, 1000, 0};
    d = forge_frames(old, on, nw, nn, segs, 3, split, tab, tn, &dn);
    assert_int_equal(try_apply(old, on, d, dn, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "filtered segment"));
    free(d);
    /* a raw frame running over its segment's end */
    lpd_seg two[2] = {{.len = 1000, .kind = LPD_SEG_RAW}, {.len = 2000, .kind = LPD_SEG_RAW}};
    size_t tn2 = lpd_segs_encode(two, 2, tab);
    lpd_seg one[1] = {{.len = 3000, .kind = LPD_SEG_RAW}};
    const size_t over[] = {3000, 0};
    d = forge_frames(old, on, nw, nn, one, 1, over, tab, tn2, &dn);
    assert_int_equal(try_apply(old, on, d, dn, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "a frame declares"));
    free(d);
    /* hostile tables: each refused by lpd_segs_decode with a message */
    struct {
        lpd_seg s[2];
        size_t n;
        const char *needle;
    } bad[] = {
        {{{.len = 1000}, {.len = 1000}}, 2, "segments make"},
        {{{.len = 3000, .kind = 4}}, 1, "unknown kind"},
        {{{.len = 3000, .kind = LPD_SEG_LZMA, .dict = LPD_LZMA_DICT_MAX + 1, .clen = 9}}, 1,
         "LZMA dictionary"},
        {{{.len = 3000, .kind = LPD_SEG_LZMA, .dict = LPD_LZMA_DICT_MIN - 1, .clen = 9}}, 1,
         "LZMA dictionary"},
        {{{.len = 3000, .kind = LPD_SEG_LZMA, .dict = LPD_LZMA_DICT_MIN}}, 1, "empty LZMA"},
        {{{.len = 3000, .kind = LPD_SEG_LZMA, .dict = LPD_LZMA_DICT_MIN, .clen = 9,
           .old_off = 2000, .old_len = 1001}}, 1, "outside the base"},
        {{{.len = 2999}, {.len = 0}}, 2, "empty"},
        {{{.len = 1000}, {.len = 2000, .kind = LPD_SEG_TABLE, .rec = 8, .width = 4,
                          .old_off = 2500, .old_len = 501}}, 2, "outside the base"},
        {{{.len = 1000}, {.len = 2000, .kind = LPD_SEG_TABLE, .rec = 12, .width = 8}}, 2,
         "table layout"},
        {{{.len = 1000}, {.len = 2000, .kind = LPD_SEG_TABLE, .rec = 8, .width = 4, .mask = 4}},
         2, "table layout"},
        {{{.len = 1000}, {.len = 2000, .kind = LPD_SEG_TABLE, .rec = 8, .width = 4,
                          .start = 2001}}, 2, "table layout"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lpd_seg back[LPD_SEG_MAX];
        size_t bn, k = lpd_segs_encode(bad[i].s, bad[i].n, tab);
        assert_int_equal(lpd_segs_decode(tab, k, on, nn, back, &bn, &err), LP_ERR_MALFORMED);
        if (!strstr(err.msg, bad[i].needle))
            fail_msg("table %zu: \"%s\" lacks \"%s\"", i, err.msg, bad[i].needle);
        tab[k] = 0; /* and trailing bytes */
        k = lpd_segs_encode(one, 1, tab);
        assert_int_equal(lpd_segs_decode(tab, k + 1, on, nn, back, &bn, &err),
                         LP_ERR_MALFORMED);
    }
    {
        lpd_seg back[LPD_SEG_MAX];
        size_t bn;
        const uint8_t zero[] = {0}, many[] = {65};
        assert_int_equal(lpd_segs_decode(zero, 1, on, nn, back, &bn, &err), LP_ERR_MALFORMED);
        assert_int_equal(lpd_segs_decode(many, 1, on, nn, back, &bn, &err), LP_ERR_MALFORMED);
        lpd_seg huge = {.len = LPD_FILTER_MAX + 1, .kind = LPD_SEG_EHFRAME};
        size_t k = lpd_segs_encode(&huge, 1, tab);
        assert_int_equal(lpd_segs_decode(tab, k, on, LPD_FILTER_MAX + 1, back, &bn, &err),
                         LP_ERR_MALFORMED);
        assert_non_null(strstr(err.msg, "over the limit"));
    }
    /* a segment table over its bound, and version 2 header rules */
    lp_delta_header h = base_header(old, on, nn);
    h.version = LP_DELTA_VERSION;
    h.flags = LP_DELTA_FLAG_DICT_FRAMES;
    h.control_raw = LPD_SEGTAB_MAX + 1;
    h.extra_raw = nn;
    static uint8_t big[LPD_SEGTAB_MAX + 1];
    const uint8_t *sv[3] = {big, NULL, nw};
    size_t sn[3] = {sizeof big, 0, nn};
    d = forge(&h, sv, sn, &dn);
    assert_int_equal(try_apply(old, on, d, dn, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "bytes of segments"));
    free(d);
    h = base_header(old, on, nn);
    h.version = LP_DELTA_VERSION;
    h.diff_raw = 2; /* no control stream, but a diff stream */
    h.extra_raw = nn;
    const uint8_t rle[2] = {1, 0};
    sv[1] = rle;
    sn[0] = 0;
    sn[1] = 2;
    d = forge(&h, sv, sn, &dn);
    assert_int_equal(try_apply(old, on, d, dn, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "not the whole result"));
    free(d);
    h = base_header(old, on, nn);
    h.version = LP_DELTA_VERSION;
    h.extra_raw = nn;
    h.extra_len = 0; /* raw bytes but no frame */
    h.control_len = 1;
    sn[1] = 0;
    d = forge(&h, sv, sn, &dn);
    assert_int_equal(try_apply(old, on, d, dn, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "decodes to"));
    free(d);
    /* a header number over 5 bytes */
    h = base_header(old, on, (uint64_t)1 << 40);
    h.version = LP_DELTA_VERSION;
    uint8_t hdr[LP_DELTA_HEADER_SIZE];
    size_t hn = lpd_header_encode(&h, hdr);
    assert_int_equal(try_apply(old, on, hdr, hn, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "5 bytes"));
    free(old);
    free(nw);
}

/* Version 1 deltas, as earlier releases wrote them, still apply: entries,
 * and dictionary frames. */
static void test_version_1(void **state)
{
    (void)state;
    const uint8_t old[] = "0123456789abcdef0123456789abcdef";
    size_t on = sizeof old - 1, dn;
    const uint8_t want[] = "0123456789abcdefXYZ";
    lp_delta_header h = base_header(old, on, 19);
    uint8_t dg[LP_HASH_MAX_LEN];
    lp_hash_buf(LP_HASH_SHA256, want, 19, dg, NULL);
    memcpy(h.new_sha256, dg, 32);
    const uint8_t ctl[] = {16, 3, 0}, rle[] = {16, 0};
    const uint8_t *sv[3] = {ctl, rle, (const uint8_t *)"XYZ"};
    size_t sn[3] = {3, 2, 3};
    h.control_raw = 3;
    h.diff_raw = 2;
    h.extra_raw = 3;
    uint8_t *d = forge(&h, sv, sn, &dn), *out = NULL;
    size_t outn;
    lp_error err;
    assert_int_equal(lp_delta_apply_buf(old, on, d, dn, 19, &out, &outn, &err), LP_OK);
    assert_memory_equal(out, want, 19);
    free(out);
    free(d);
    /* dictionary frames (one frame, the base as dictionary) */
    lp_delta_header f = base_header(old, on, 19);
    memcpy(f.new_sha256, dg, 32);
    f.flags = LP_DELTA_FLAG_DICT_FRAMES;
    const uint8_t one[] = {0, 19, 0};
    size_t cap = ZSTD_compressBound(19);
    uint8_t *z = malloc(cap);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_refPrefix(cc, old, on);
    size_t zn = ZSTD_compress2(cc, z, cap, want, 19);
    ZSTD_freeCCtx(cc);
    assert_false(ZSTD_isError(zn));
    uint8_t *cz = forge_stream(0, one, 3, &sn[0]), *dz = forge_stream(0, NULL, 0, &sn[1]);
    f.control_len = sn[0];
    f.diff_len = sn[1];
    f.extra_len = zn;
    f.control_raw = 3;
    f.extra_raw = 19;
    uint8_t hdr[LP_DELTA_HEADER_SIZE];
    size_t hn = lpd_header_encode(&f, hdr);
    assert_int_equal(hn, 152); /* the fixed header of version 1 */
    d = malloc(hn + sn[0] + sn[1] + zn);
    memcpy(d, hdr, hn);
    memcpy(d + hn, cz, sn[0]);
    memcpy(d + hn + sn[0], dz, sn[1]);
    memcpy(d + hn + sn[0] + sn[1], z, zn);
    assert_int_equal(lp_delta_apply_buf(old, on, d, hn + sn[0] + sn[1] + zn, 19, &out, &outn,
                                        &err), LP_OK);
    assert_memory_equal(out, want, 19);
    free(out);
    free(d);
    free(z);
    free(cz);
    free(dz);
}

/* AUTO tries the dictionary frames only when the matched coding is over 1/8
 * of the result: not for a lightly edited text, yes for unrelated bytes. */
static void test_dict_auto(void **state)
{
    (void)state;
    size_t n, nn;
    uint8_t *t = real_text(&n);
    uint8_t *e = edit_text(t, n, &nn);
    lp_delta_stats st;
    roundtrip(t, n, e, nn, 3, &st);
    assert_false(st.dict_tried);
    uint8_t *r = malloc(n);
    assert_non_null(r);
    uint32_t x = 99;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        r[i] = (uint8_t)(x >> 23);
    }
    roundtrip(t, n, r, n, 3, &st);
    assert_true(st.dict_tried);
    free(r);
    free(e);
    free(t);
}

static void test_files(void **state)
{
    (void)state;
    uint8_t *old, *nw, *d;
    size_t on, nn, dn;
    small_pair(&old, &on, &nw, &nn, &d, &dn);
    free(d);
    char *dir = lp_test_join(tmp, "files");
    char *po = lp_test_join(dir, "old"), *pn = lp_test_join(dir, "new");
    char *pd = lp_test_join(dir, "delta"), *pout = lp_test_join(dir, "out");
    assert_int_equal(lp_test_write_file(po, old, on), 0);
    assert_int_equal(lp_test_write_file(pn, nw, nn), 0);
    lp_error err;
    lp_delta_stats s;
    assert_int_equal(lp_delta_make_file(po, pn, pd, NULL, &s, &err), LP_OK);
    lp_delta_header h;
    assert_int_equal(lp_delta_read_header_file(pd, &h, &err), LP_OK);
    assert_int_equal(h.new_size, nn);
    assert_int_equal(lp_delta_apply_file(po, pd, pout, h.new_sha256, &err), LP_OK);
    size_t outn;
    uint8_t *out = lp_test_read_file(pout, &outn);
    assert_true(outn == nn && memcmp(out, nw, nn) == 0);
    free(out);
    /* corrupted: the output stays as it was, and no temporary file remains */
    unlink(pout);
    size_t n;
    uint8_t *bytes = lp_test_read_file(pd, &n);
    bytes[n - 3] ^= 0x40;
    assert_int_equal(lp_test_write_file(pd, bytes, n), 0);
    assert_int_not_equal(lp_delta_apply_file(po, pd, pout, NULL, &err), LP_OK);
    assert_non_null(strstr(err.msg, pd));
    assert_false(lp_file_exists(pout));
    assert_int_equal(dir_entries(dir), 3);
    assert_int_equal(lp_delta_apply_file(po, "/nonexistent/delta", pout, NULL, &err),
                     LP_ERR_NOT_FOUND);
    free(bytes);
    free(dir), free(po), free(pn), free(pd), free(pout);
    free(old);
    free(nw);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    lp_error err;
    uint8_t *d;
    size_t dn;
    const uint8_t x[1] = {0};
    lp_delta_options opt = {.level = 23};
    assert_int_equal(lp_delta_make(x, 1, x, 1, &opt, &d, &dn, NULL, &err), LP_ERR_INVALID_ARG);
    opt = (lp_delta_options){.dict_level = 23};
    assert_int_equal(lp_delta_make(x, 1, x, 1, &opt, &d, &dn, NULL, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "dictionary level"));
    opt = (lp_delta_options){.threads = LP_DELTA_THREADS_MAX + 1};
    assert_int_equal(lp_delta_make(x, 1, x, 1, &opt, &d, &dn, NULL, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "threads"));
    /* sizes are checked before any byte is read */
    assert_int_equal(lp_delta_make(x, (size_t)LP_DELTA_MAX_SIZE + 1, x, 1, NULL, &d, &dn, NULL,
                                   &err), LP_ERR_TOO_LARGE);
    assert_null(d);
    assert_int_equal(try_apply(x, 1, (const uint8_t *)"LPDELTA\n", 8, &err), LP_ERR_MALFORMED);
    uint8_t junk[LP_DELTA_HEADER_SIZE] = "not a delta at all";
    assert_int_equal(try_apply(x, 1, junk, sizeof junk, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "magic"));
    memcpy(junk, "LPDELTA\n\1\0\0\0", 12);
    assert_int_equal(try_apply(x, 1, junk, sizeof junk, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "corrupted"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_roundtrip),
        cmocka_unit_test(test_executables_roundtrip),
        cmocka_unit_test(test_shared_libraries),
        cmocka_unit_test(test_edge_sizes),
        cmocka_unit_test(test_transform_bijective),
        cmocka_unit_test(test_transform_patch_reads),
        cmocka_unit_test(test_truncated_every_length),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_wrong_base_and_result),
        cmocka_unit_test(test_digests),
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_hostile_entries),
        cmocka_unit_test(test_dict_frames),
        cmocka_unit_test(test_dict_frames_threads),
        cmocka_unit_test(test_dict_frames_hostile),
        cmocka_unit_test(test_filters_bijective),
        cmocka_unit_test(test_segments_hostile),
        cmocka_unit_test(test_lzma_segments),
        cmocka_unit_test(test_lzma_pairs),
        cmocka_unit_test(test_apply_fd_to_fd),
        cmocka_unit_test(test_version_1),
        cmocka_unit_test(test_dict_auto),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
