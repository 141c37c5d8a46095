/*
 * format.c — the delta header: encoding, and checked decoding.
 *
 * Version 3 (written; docs/delta.md has the table), all integers
 * little-endian, "varint" an LEB128 number:
 *     0   8  magic "LPDELTA\n"
 *     8   4  version (3)
 *    12   …  varint flags, varint base size, varint result size,
 *            32 bytes base SHA-256, 32 bytes result SHA-256,
 *            16 bytes base XXH3-128, 16 bytes result XXH3-128,
 *            varint compressed lengths of control, diff, extra,
 *            varint decoded lengths of control, diff, extra,
 *            4 bytes check: the first 4 bytes of SHA-256 of the bytes before
 * Version 2 (read): the same without the XXH3-128 digests.
 * Version 1 (read): the same fields at fixed offsets, 152 bytes:
 *     12 4 flags, 16 8 base size, 24 8 result size, 32 32 + 64 32 digests,
 *     96/104/112 8 compressed lengths, 120/128/136 8 decoded lengths,
 *     144 8 check (first 8 bytes of SHA-256 of bytes 0..143).
 * The streams follow the header in that order and end exactly at the end of
 * the delta.  Decoding checks, in this order: magic, version, that every
 * varint fits (at most 5 bytes: no field may exceed 2^35), check value,
 * flags, sizes against LP_DELTA_MAX_SIZE, that diff + extra make the result,
 * that the stream lengths add up to the delta's length without overflow.
 */
#include "delta/delta_priv.h"
#include "livepush/hash.h"

#include <string.h>
#include <time.h>

static const uint8_t magic[8] = {'L', 'P', 'D', 'E', 'L', 'T', 'A', '\n'};
#define CHECK_OFF 144u /* version 1 */
#define V1_HEADER 152u
#define V2_CHECK 4u
#define V2_VARINT_MAX 5u /* bytes of one header varint: values below 2^35 */

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void check_value(const uint8_t *hdr, size_t n, uint8_t *out, size_t out_len)
{
    uint8_t d[LP_HASH_MAX_LEN];
    if (lp_hash_buf(LP_HASH_SHA256, hdr, n, d, NULL) != LP_OK)
        memset(d, 0, sizeof d); /* cannot happen short of OpenSSL failing: the
                                   header then fails its check, loudly */
    memcpy(out, d, out_len);
}

size_t lpd_header_encode(const lp_delta_header *h, uint8_t *out)
{
    memset(out, 0, LP_DELTA_HEADER_SIZE);
    memcpy(out, magic, 8);
    put32(out + 8, h->version);
    if (h->version == LP_DELTA_VERSION_1) {
        put32(out + 12, h->flags);
        put64(out + 16, h->old_size);
        put64(out + 24, h->new_size);
        memcpy(out + 32, h->old_sha256, 32);
        memcpy(out + 64, h->new_sha256, 32);
        put64(out + 96, h->control_len);
        put64(out + 104, h->diff_len);
        put64(out + 112, h->extra_len);
        put64(out + 120, h->control_raw);
        put64(out + 128, h->diff_raw);
        put64(out + 136, h->extra_raw);
        check_value(out, CHECK_OFF, out + CHECK_OFF, 8);
        return V1_HEADER;
    }
    size_t n = 12;
    n += lpd_put_varint(out + n, h->flags);
    n += lpd_put_varint(out + n, h->old_size);
    n += lpd_put_varint(out + n, h->new_size);
    memcpy(out + n, h->old_sha256, 32);
    memcpy(out + n + 32, h->new_sha256, 32);
    n += 64;
    if (h->version >= LP_DELTA_VERSION_3) {
        memcpy(out + n, h->old_xxh128, 16);
        memcpy(out + n + 16, h->new_xxh128, 16);
        n += 32;
    }
    const uint64_t v[6] = {h->control_len, h->diff_len, h->extra_len,
                           h->control_raw, h->diff_raw, h->extra_raw};
    for (int i = 0; i < 6; i++)
        n += lpd_put_varint(out + n, v[i]);
    check_value(out, n, out + n, V2_CHECK);
    return n + V2_CHECK;
}

static lp_status check_fields(const lp_delta_header *h, uint64_t total, lp_error *err)
{
    const uint32_t known = LP_DELTA_FLAG_X86 | LP_DELTA_FLAG_EXTRA_PREFIX |
                           LP_DELTA_FLAG_DICT_FRAMES;
    if (h->flags & ~known)
        return lp_error_set(err, LP_ERR_UNSUPPORTED, "delta header: unknown flags 0x%x",
                            h->flags & ~known);
    if ((h->flags & LP_DELTA_FLAG_DICT_FRAMES) && h->flags != LP_DELTA_FLAG_DICT_FRAMES)
        return lp_error_set(err, LP_ERR_MALFORMED, "delta header: flags 0x%x combine dictionary "
                            "frames with another coding", h->flags);
    if (h->old_size > LP_DELTA_MAX_SIZE || h->new_size > LP_DELTA_MAX_SIZE)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "delta header: base of %llu or result of %llu bytes exceeds the "
                            "limit of %llu", (unsigned long long)h->old_size,
                            (unsigned long long)h->new_size,
                            (unsigned long long)LP_DELTA_MAX_SIZE);
    /* Run-length records take at most 1.5 bytes per diff byte, plus 20. */
    if (h->extra_raw > h->new_size || h->diff_raw > h->new_size + h->new_size / 2 + 20)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "delta header: diff (%llu) or extra (%llu) stream too large for a "
                            "result of %llu bytes", (unsigned long long)h->diff_raw,
                            (unsigned long long)h->extra_raw, (unsigned long long)h->new_size);
    /* Each control entry is at least 3 bytes and moves the result on. */
    if (h->control_raw > 3 * 10 * (h->new_size + 1))
        return lp_error_set(err, LP_ERR_MALFORMED, "delta header: control stream of %llu bytes "
                            "for a result of %llu", (unsigned long long)h->control_raw,
                            (unsigned long long)h->new_size);
    uint64_t lim = LP_DELTA_MAX_SIZE * 4; /* far above what streams can take */
    if (h->control_len > lim || h->diff_len > lim || h->extra_len > lim)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "delta header: stream lengths too large");
    if (h->version != LP_DELTA_VERSION_1) {
        /* versions 2 and 3: an empty stream has no frame, any other has one */
        const uint64_t len[3] = {h->control_len, h->diff_len, h->extra_len};
        const uint64_t raw[3] = {h->control_raw, h->diff_raw, h->extra_raw};
        for (int i = 0; i < 3; i++)
            if ((len[i] == 0) != (raw[i] == 0))
                return lp_error_set(err, LP_ERR_MALFORMED, "delta header: %s stream of %llu "
                                    "bytes decodes to %llu", i == 0 ? "control" : i == 1 ?
                                    "diff" : "extra", (unsigned long long)len[i],
                                    (unsigned long long)raw[i]);
        if ((h->flags & LP_DELTA_FLAG_DICT_FRAMES) &&
            (h->diff_raw != 0 || h->extra_raw != h->new_size))
            return lp_error_set(err, LP_ERR_MALFORMED, "delta header: dictionary frames with a "
                                "diff stream or an extra stream that is not the whole result");
        /* no control stream: the result is one copy of the extra stream */
        if (h->control_raw == 0 && !(h->flags & LP_DELTA_FLAG_DICT_FRAMES) &&
            (h->diff_raw != 0 || h->extra_raw != h->new_size))
            return lp_error_set(err, LP_ERR_MALFORMED, "delta header: no control stream, but "
                                "the extra stream is not the whole result");
    }
    uint64_t want = h->header_len + h->control_len + h->diff_len + h->extra_len;
    if (total && total != want)
        return lp_error_set(err, LP_ERR_MALFORMED, "delta is %llu bytes but its header says "
                            "%llu (%s)", (unsigned long long)total, (unsigned long long)want,
                            total < want ? "truncated" : "trailing bytes");
    return LP_OK;
}

static int get_varint(const uint8_t *p, size_t len, size_t *at, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < V2_VARINT_MAX && *at < len; i++) {
        uint8_t b = p[(*at)++];
        x |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

/* Versions 2 and 3. */
static lp_status read_v2(const uint8_t *data, size_t len, lp_delta_header *h, lp_error *err)
{
    size_t at = 12, digests = h->version >= LP_DELTA_VERSION_3 ? 96 : 64;
    uint64_t f = 0, v[6];
    int ok = get_varint(data, len, &at, &f) && get_varint(data, len, &at, &h->old_size) &&
             get_varint(data, len, &at, &h->new_size) && len - at >= digests;
    if (ok) {
        memcpy(h->old_sha256, data + at, 32);
        memcpy(h->new_sha256, data + at + 32, 32);
        if (digests > 64) {
            memcpy(h->old_xxh128, data + at + 64, 16);
            memcpy(h->new_xxh128, data + at + 80, 16);
        }
        at += digests;
    }
    for (int i = 0; i < 6 && ok; i++)
        ok = get_varint(data, len, &at, &v[i]);
    if (!ok || len - at < V2_CHECK)
        return lp_error_set(err, LP_ERR_MALFORMED, "delta header is truncated or holds a "
                            "number over 5 bytes");
    uint8_t chk[V2_CHECK];
    check_value(data, at, chk, V2_CHECK);
    if (memcmp(chk, data + at, V2_CHECK) != 0)
        return lp_error_set(err, LP_ERR_MALFORMED, "delta header is corrupted (check value "
                            "differs)");
    if (f > UINT32_MAX)
        return lp_error_set(err, LP_ERR_UNSUPPORTED, "delta header: unknown flags 0x%llx",
                            (unsigned long long)f);
    h->flags = (uint32_t)f;
    h->control_len = v[0];
    h->diff_len = v[1];
    h->extra_len = v[2];
    h->control_raw = v[3];
    h->diff_raw = v[4];
    h->extra_raw = v[5];
    h->header_len = (uint32_t)(at + V2_CHECK);
    return LP_OK;
}

lp_status lp_delta_read_header(const uint8_t *data, size_t len, uint64_t total,
                               lp_delta_header *h, lp_error *err)
{
    memset(h, 0, sizeof *h);
    if (!data || len < 12)
        return lp_error_set(err, LP_ERR_MALFORMED, "delta of %zu bytes is shorter than its "
                            "header (truncated)", data ? len : 0);
    if (memcmp(data, magic, 8) != 0)
        return lp_error_set(err, LP_ERR_MALFORMED, "not a livepush delta (bad magic)");
    h->version = get32(data + 8);
    if (h->version < LP_DELTA_VERSION_1 || h->version > LP_DELTA_VERSION)
        return lp_error_set(err, LP_ERR_UNSUPPORTED, "delta format version %u (this library "
                            "reads versions %u to %u)", h->version, LP_DELTA_VERSION_1,
                            LP_DELTA_VERSION);
    lp_status st = LP_OK;
    if (h->version != LP_DELTA_VERSION_1) {
        st = read_v2(data, len, h, err);
    } else if (len < V1_HEADER) {
        st = lp_error_set(err, LP_ERR_MALFORMED, "delta of %zu bytes is shorter than its "
                          "%u-byte header (truncated)", len, V1_HEADER);
    } else {
        uint8_t chk[8];
        check_value(data, CHECK_OFF, chk, 8);
        if (memcmp(chk, data + CHECK_OFF, 8) != 0)
            return lp_error_set(err, LP_ERR_MALFORMED, "delta header is corrupted (check value "
                                "differs)");
        h->header_len = V1_HEADER;
        h->flags = get32(data + 12);
        h->old_size = get64(data + 16);
        h->new_size = get64(data + 24);
        memcpy(h->old_sha256, data + 32, 32);
        memcpy(h->new_sha256, data + 64, 32);
        h->control_len = get64(data + 96);
        h->diff_len = get64(data + 104);
        h->extra_len = get64(data + 112);
        h->control_raw = get64(data + 120);
        h->diff_raw = get64(data + 128);
        h->extra_raw = get64(data + 136);
    }
    if (!st)
        st = check_fields(h, total, err);
    if (st)
        memset(h, 0, sizeof *h);
    return st;
}

size_t lpd_put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

double lpd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
