/*
 * stream.c — bounded decoding of one delta stream (see stream.h).
 *
 * Memory: one zstd decoding context whose window is limited with
 * ZSTD_d_windowLogMax (a frame asking for more is refused by zstd before it
 * allocates), an input buffer of ZSTD_DStreamInSize() and a 64 KiB output
 * buffer.  The bytes a frame may produce are bounded by the header's raw size,
 * checked against the frame's own content size before decoding starts.
 */
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader_advanced, magicless frames */
#include "delta/stream.h"

#include <stdlib.h>
#include <string.h>

#define OUT_CAP 65536u

static lp_status bad(lpd_stream *s, lp_error *err, const char *what)
{
    return lp_error_set(err, LP_ERR_MALFORMED, "%s stream: %s", s->name, what);
}

static lp_status fill_input(lpd_stream *s, lp_error *err)
{
    size_t n = s->end - s->off < s->in_cap ? (size_t)(s->end - s->off) : s->in_cap;
    lp_status st = s->read(s->rctx, s->off, s->in, n, err);
    if (st)
        return lp_error_prefix(err, st, "%s stream", s->name);
    s->off += n;
    s->in_pos = 0;
    s->in_len = n;
    return LP_OK;
}

/* Checks the declared size of the frame that starts at in[in_pos] (at least
 * its header is in the buffer, or all that is left of the region) and hands
 * the dictionary to it. */
static unsigned long long content_size(const lpd_stream *s)
{
    if (!s->v2)
        return ZSTD_getFrameContentSize(s->in + s->in_pos, s->in_len - s->in_pos);
    ZSTD_frameHeader fh;
    size_t r = ZSTD_getFrameHeader_advanced(&fh, s->in + s->in_pos, s->in_len - s->in_pos,
                                            ZSTD_f_zstd1_magicless);
    if (r != 0 || fh.frameType != ZSTD_frame)
        return ZSTD_CONTENTSIZE_ERROR;
    return fh.frameContentSize;
}

static lp_status frame_start(lpd_stream *s, lp_error *err)
{
    unsigned long long fcs = content_size(s);
    if (fcs == ZSTD_CONTENTSIZE_ERROR || fcs == ZSTD_CONTENTSIZE_UNKNOWN)
        return bad(s, err, "not a zstd frame with a declared size");
    if (s->frame_max == 0 && fcs != s->raw_left)
        return lp_error_set(err, LP_ERR_MALFORMED, "%s stream: frame holds %llu bytes, the "
                            "header says %llu", s->name, fcs,
                            (unsigned long long)s->raw_left);
    if (s->frame_max && (fcs == 0 || fcs > s->frame_max || fcs > s->raw_left))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s stream: a frame declares %llu bytes "
                            "(1..%llu allowed, %llu left)", s->name, fcs,
                            (unsigned long long)s->frame_max, (unsigned long long)s->raw_left);
    if (s->prefix) {
        size_t r = ZSTD_DCtx_refPrefix(s->dctx, s->prefix, s->prefix_len);
        if (ZSTD_isError(r))
            return lp_error_set(err, LP_ERR_NOMEM, "%s stream: zstd: %s", s->name,
                                ZSTD_getErrorName(r));
    }
    return LP_OK;
}

/* Makes sure the buffer holds a whole frame header (18 bytes at most) or all
 * that is left of the region, keeping the unread bytes. */
static lp_status header_bytes(lpd_stream *s, lp_error *err)
{
    size_t have = s->in_len - s->in_pos;
    if (have >= 18 || s->off == s->end)
        return LP_OK;
    memmove(s->in, s->in + s->in_pos, have);
    size_t n = s->end - s->off < s->in_cap - have ? (size_t)(s->end - s->off) : s->in_cap - have;
    lp_status st = s->read(s->rctx, s->off, s->in + have, n, err);
    if (st)
        return lp_error_prefix(err, st, "%s stream", s->name);
    s->off += n;
    s->in_pos = 0;
    s->in_len = have + n;
    return LP_OK;
}

static lp_status check_frame(lpd_stream *s, uint64_t len, lp_error *err)
{
    if (len == 0)
        return bad(s, err, "empty (a zstd frame is required)");
    lp_status st = fill_input(s, err);
    return st ? st : frame_start(s, err);
}

static lp_status dctx_params(lpd_stream *s, lp_error *err)
{
    size_t r = ZSTD_DCtx_setParameter(s->dctx, ZSTD_d_windowLogMax, s->window_log_max);
    if (!ZSTD_isError(r) && s->v2)
        r = ZSTD_DCtx_setParameter(s->dctx, ZSTD_d_format, ZSTD_f_zstd1_magicless);
    if (ZSTD_isError(r))
        return lp_error_set(err, LP_ERR_NOMEM, "%s stream: zstd: %s", s->name,
                            ZSTD_getErrorName(r));
    return LP_OK;
}

lp_status lpd_stream_open(lpd_stream *s, const char *name, lpd_read_fn read, void *rctx,
                          uint64_t off, uint64_t len, uint64_t raw, int window_log_max,
                          const void *prefix, size_t prefix_len, uint64_t frame_max,
                          int flags, lp_error *err)
{
    memset(s, 0, sizeof *s);
    s->name = name;
    s->read = read;
    s->rctx = rctx;
    s->off = off;
    s->end = off + len;
    s->raw_left = raw;
    s->frame_max = frame_max;
    s->prefix = prefix;
    s->prefix_len = prefix_len;
    s->in_cap = ZSTD_DStreamInSize();
    s->dctx = ZSTD_createDCtx();
    s->in = malloc(s->in_cap);
    s->out = malloc(OUT_CAP);
    if (!s->dctx || !s->in || !s->out)
        return lp_error_set(err, LP_ERR_NOMEM, "%s stream: out of memory", name);
    s->v2 = (flags & LPD_STREAM_V2) != 0;
    s->window_log_max = window_log_max;
    lp_status st = dctx_params(s, err);
    if (st)
        return st;
    if (s->v2 && len == 0) { /* an empty stream (the header checked raw is 0) */
        s->done = 1;
        return LP_OK;
    }
    if (s->v2 && frame_max)
        return len ? LP_OK : bad(s, err, "empty (a zstd frame is required)");
    return check_frame(s, len, err);
}

/* Decodes more output; called only when out is empty. */
static lp_status refill(lpd_stream *s, lp_error *err)
{
    int framed = s->v2 && s->frame_max;
    while (s->out_pos == s->out_len) {
        if (s->done || (framed && !s->in_frame))
            return bad(s, err, "ends before the data the control stream needs");
        if (s->in_pos == s->in_len) {
            if (s->off == s->end)
                return bad(s, err, "truncated (the frame does not end)");
            lp_status st = fill_input(s, err);
            if (st)
                return st;
        }
        ZSTD_inBuffer in = {s->in, s->in_len, s->in_pos};
        ZSTD_outBuffer out = {s->out, OUT_CAP, 0};
        size_t r = ZSTD_decompressStream(s->dctx, &out, &in);
        if (ZSTD_isError(r))
            return lp_error_set(err, LP_ERR_MALFORMED, "%s stream: corrupted (zstd: %s)",
                                s->name, ZSTD_getErrorName(r));
        s->in_pos = in.pos;
        if (out.pos > s->raw_left)
            return bad(s, err, "holds more than the header says");
        s->raw_left -= out.pos;
        s->out_pos = 0;
        s->out_len = out.pos;
        if (r == 0) {
            int more = s->in_pos != s->in_len || s->off != s->end;
            if (framed) {
                s->in_frame = 0;
                s->done = !more;
                continue;
            }
            if (more && !s->frame_max)
                return bad(s, err, "trailing bytes after its frame");
            if (!more) {
                s->done = 1;
            } else {
                lp_status st = header_bytes(s, err);
                if (!st)
                    st = frame_start(s, err);
                if (st)
                    return st;
            }
        }
    }
    return LP_OK;
}

lp_status lpd_stream_read(lpd_stream *s, void *dst, size_t n, lp_error *err)
{
    uint8_t *d = dst;
    while (n > 0) {
        if (s->out_pos == s->out_len) {
            lp_status st = refill(s, err);
            if (st)
                return st;
        }
        size_t k = s->out_len - s->out_pos < n ? s->out_len - s->out_pos : n;
        memcpy(d, s->out + s->out_pos, k);
        s->out_pos += k;
        d += k;
        n -= k;
    }
    return LP_OK;
}

lp_status lpd_stream_varint(lpd_stream *s, uint64_t *v, lp_error *err)
{
    /* Fast path: the whole number (at most 10 bytes) is in the buffer. */
    if (s->out_len - s->out_pos >= 10) {
        const uint8_t *p = s->out + s->out_pos;
        uint64_t x = 0;
        for (int i = 0; i < 10; i++) {
            if (i == 9 && p[i] > 1)
                return bad(s, err, "number does not fit in 64 bits");
            x |= (uint64_t)(p[i] & 0x7F) << (7 * i);
            if (!(p[i] & 0x80)) {
                s->out_pos += (size_t)i + 1;
                *v = x;
                return LP_OK;
            }
        }
        return bad(s, err, "number does not fit in 64 bits");
    }
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b;
        lp_status st = lpd_stream_read(s, &b, 1, err);
        if (st)
            return st;
        if (shift == 63 && b > 1)
            return bad(s, err, "number does not fit in 64 bits");
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            return LP_OK;
    }
    return bad(s, err, "number does not fit in 64 bits");
}

/* v2 frames: the current frame's bytes were all read; decodes what is left
 * of it (its end mark), expecting no more bytes. */
static lp_status end_frame(lpd_stream *s, lp_error *err)
{
    while (s->in_frame) {
        if (s->in_pos == s->in_len) {
            if (s->off == s->end)
                return bad(s, err, "truncated (the frame does not end)");
            lp_status st = fill_input(s, err);
            if (st)
                return st;
        }
        ZSTD_inBuffer in = {s->in, s->in_len, s->in_pos};
        ZSTD_outBuffer out = {s->out, OUT_CAP, 0};
        size_t r = ZSTD_decompressStream(s->dctx, &out, &in);
        if (ZSTD_isError(r))
            return lp_error_set(err, LP_ERR_MALFORMED, "%s stream: corrupted (zstd: %s)",
                                s->name, ZSTD_getErrorName(r));
        s->in_pos = in.pos;
        if (out.pos)
            return bad(s, err, "a frame holds more bytes than its segment");
        if (r == 0) {
            s->in_frame = 0;
            s->done = s->in_pos == s->in_len && s->off == s->end;
        }
    }
    return LP_OK;
}

lp_status lpd_stream_frame(lpd_stream *s, const void *prefix, size_t prefix_len, uint64_t max,
                           uint64_t *size, lp_error *err)
{
    *size = 0;
    if (!s->v2 || !s->frame_max)
        return bad(s, err, "not a stream of frames");
    if (s->out_pos != s->out_len)
        return bad(s, err, "a frame holds more bytes than its segment");
    lp_status st = end_frame(s, err);
    if (st)
        return st;
    if (s->in_pos == s->in_len && s->off == s->end)
        return bad(s, err, "ends before the data the control stream needs");
    if ((st = header_bytes(s, err)))
        return st;
    unsigned long long fcs = content_size(s);
    if (fcs == ZSTD_CONTENTSIZE_ERROR || fcs == ZSTD_CONTENTSIZE_UNKNOWN)
        return bad(s, err, "not a zstd frame with a declared size");
    if (fcs == 0 || fcs > max || fcs > s->raw_left)
        return lp_error_set(err, LP_ERR_MALFORMED, "%s stream: a frame declares %llu bytes "
                            "(1..%llu allowed, %llu left)", s->name, fcs,
                            (unsigned long long)max, (unsigned long long)s->raw_left);
    if (prefix) {
        size_t r = ZSTD_DCtx_refPrefix(s->dctx, prefix, prefix_len);
        if (ZSTD_isError(r))
            return lp_error_set(err, LP_ERR_NOMEM, "%s stream: zstd: %s", s->name,
                                ZSTD_getErrorName(r));
    }
    s->in_frame = 1;
    s->done = 0;
    *size = fcs;
    return LP_OK;
}

lp_status lpd_stream_raw_start(lpd_stream *s, lp_error *err)
{
    if (!s->v2 || !s->frame_max)
        return bad(s, err, "not a stream of frames");
    if (s->out_pos != s->out_len)
        return bad(s, err, "a frame holds more bytes than its segment");
    lp_status st = end_frame(s, err);
    if (st)
        return st;
    ZSTD_freeDCtx(s->dctx);
    if (!(s->dctx = ZSTD_createDCtx()))
        return lp_error_set(err, LP_ERR_NOMEM, "%s stream: out of memory", s->name);
    return dctx_params(s, err);
}

lp_status lpd_stream_raw(lpd_stream *s, size_t max, const uint8_t **p, size_t *n,
                         lp_error *err)
{
    if (s->in_pos == s->in_len) {
        if (s->off == s->end)
            return bad(s, err, "ends inside an LZMA segment (truncated)");
        lp_status st = fill_input(s, err);
        if (st)
            return st;
    }
    size_t k = s->in_len - s->in_pos;
    *p = s->in + s->in_pos;
    *n = k < max ? k : max;
    s->in_pos += *n;
    s->done = s->in_pos == s->in_len && s->off == s->end;
    return LP_OK;
}

lp_status lpd_frame_extent(lpd_read_fn read, void *rctx, uint64_t off, uint64_t end,
                           uint64_t *csize, uint64_t *content, lp_error *err)
{
    uint8_t b[18];
    size_t n = end - off < sizeof b ? (size_t)(end - off) : sizeof b;
    ZSTD_frameHeader fh;
    lp_status st = off < end ? read(rctx, off, b, n, err)
                             : lp_error_set(err, LP_ERR_MALFORMED, "no frame left");
    if (st)
        return st;
    if (ZSTD_getFrameHeader_advanced(&fh, b, n, ZSTD_f_zstd1_magicless) != 0 ||
        fh.frameType != ZSTD_frame || fh.frameContentSize == ZSTD_CONTENTSIZE_UNKNOWN)
        return lp_error_set(err, LP_ERR_MALFORMED, "not a zstd frame with a declared size");
    uint64_t pos = off + fh.headerSize;
    /* an encoder's blocks hold up to 128 KiB each: far more blocks than the
     * declared size explains is refused rather than walked */
    uint64_t blocks_max = fh.frameContentSize / 1024 + 64;
    for (int last = 0; !last; blocks_max--) {
        if (blocks_max == 0)
            return lp_error_set(err, LP_ERR_MALFORMED, "a zstd frame of more blocks than its "
                                "size explains");
        if (pos > end || end - pos < 3)
            return lp_error_set(err, LP_ERR_MALFORMED, "a zstd frame runs past its stream");
        if ((st = read(rctx, pos, b, 3, err)))
            return st;
        uint32_t bh = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16;
        unsigned type = (bh >> 1) & 3;
        if (type == 3)
            return lp_error_set(err, LP_ERR_MALFORMED, "a zstd block of a reserved type");
        last = bh & 1;
        pos += 3 + (type == 1 ? 1 : (bh >> 3));
    }
    pos += fh.checksumFlag ? 4 : 0;
    if (pos > end)
        return lp_error_set(err, LP_ERR_MALFORMED, "a zstd frame runs past its stream");
    *csize = pos - off;
    *content = fh.frameContentSize;
    return LP_OK;
}

uint64_t lpd_stream_raw_left(const lpd_stream *s)
{
    return (s->end - s->off) + (s->in_len - s->in_pos);
}

uint64_t lpd_stream_raw_pos(const lpd_stream *s)
{
    return s->off - (s->in_len - s->in_pos);
}

lp_status lpd_stream_raw_skip(lpd_stream *s, uint64_t n, lp_error *err)
{
    if (n > lpd_stream_raw_left(s))
        return bad(s, err, "ends inside an LZMA segment (truncated)");
    size_t k = s->in_len - s->in_pos;
    if (n <= k) {
        s->in_pos += (size_t)n;
    } else {
        s->off += n - k;
        s->in_pos = s->in_len;
    }
    s->done = s->in_pos == s->in_len && s->off == s->end;
    return LP_OK;
}

lp_status lpd_stream_produced(lpd_stream *s, uint64_t n, lp_error *err)
{
    if (n > s->raw_left)
        return bad(s, err, "holds more than the header says");
    s->raw_left -= n;
    return LP_OK;
}

lp_status lpd_stream_finish(lpd_stream *s, lp_error *err)
{
    if (s->out_pos != s->out_len || s->raw_left != 0)
        return bad(s, err, "holds bytes the control stream does not use");
    if (s->v2 && s->frame_max) {
        lp_status st = end_frame(s, err);
        if (st)
            return st;
        if (s->in_pos != s->in_len || s->off != s->end)
            return bad(s, err, "holds bytes the control stream does not use");
        return LP_OK;
    }
    if (!s->done) {
        /* The frame may still owe its end mark: decode it, expecting nothing. */
        lp_status st = refill(s, err);
        if (st == LP_OK)
            return bad(s, err, "holds bytes the control stream does not use");
        if (!s->done)
            return st;
        lp_error_clear(err);
    }
    return LP_OK;
}

void lpd_stream_close(lpd_stream *s)
{
    ZSTD_freeDCtx(s->dctx);
    free(s->in);
    free(s->out);
    memset(s, 0, sizeof *s);
}
