/*
 * stream.h — one compressed stream of a delta, read in bounded memory
 * (internal to src/delta).
 *
 * A stream is a region [off, off + len) of the delta holding exactly one
 * zstd frame whose decompressed size the header gives.  It is read through a
 * fixed input buffer and decoded into a fixed output buffer; the frame's
 * declared content size must equal the header's, its window must be within
 * the bound given at open, and it must end exactly at the region's end.
 *
 * A stream opened with frame_max > 0 holds instead a sequence of frames
 * (LP_DELTA_FLAG_DICT_FRAMES), each declaring a content size of 1..frame_max
 * bytes, checked before it is decoded (zstd's decoder then holds at most that
 * much of it, whatever window the frame asks for), the sizes adding up to the
 * header's; the dictionary, if any, is given to every frame.
 */
#ifndef LP_DELTA_STREAM_H
#define LP_DELTA_STREAM_H

#include "delta/delta_priv.h"

#include <zstd.h>

typedef struct lpd_stream {
    const char *name; /* "control", "diff", "extra": starts every message */
    ZSTD_DCtx *dctx;
    lpd_read_fn read;
    void *rctx;
    uint64_t off, end;        /* part of the region not yet read */
    uint8_t *in, *out;
    size_t in_cap, in_pos, in_len;
    size_t out_pos, out_len;
    uint64_t raw_left;        /* decoded bytes still to come */
    uint64_t frame_max;       /* 0: one frame; else the bound of each frame */
    const void *prefix;       /* dictionary of every frame, or NULL */
    size_t prefix_len;
    int done;                 /* the (last) frame ended */
} lpd_stream;

/* Opens the stream; prefix (may be NULL) is the frames' dictionary, which
 * must outlive the stream; frame_max as above (0: exactly one frame).
 * LP_ERR_MALFORMED, LP_ERR_NOMEM, LP_ERR_IO. */
lp_status lpd_stream_open(lpd_stream *s, const char *name, lpd_read_fn read, void *rctx,
                          uint64_t off, uint64_t len, uint64_t raw, int window_log_max,
                          const void *prefix, size_t prefix_len, uint64_t frame_max,
                          lp_error *err);

/* Reads exactly n decoded bytes into dst; LP_ERR_MALFORMED if the stream
 * ends first or is corrupted. */
lp_status lpd_stream_read(lpd_stream *s, void *dst, size_t n, lp_error *err);

/* Reads one LEB128 varint (at most 64 bits). */
lp_status lpd_stream_varint(lpd_stream *s, uint64_t *v, lp_error *err);

/* Checks that every decoded byte was used and the frame ended exactly at
 * the region's end.  LP_ERR_MALFORMED otherwise. */
lp_status lpd_stream_finish(lpd_stream *s, lp_error *err);

/* Frees the buffers; a zeroed stream is fine. */
void lpd_stream_close(lpd_stream *s);

#endif
