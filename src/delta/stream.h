/*
 * stream.h — one compressed stream of a delta, read in bounded memory
 * (internal to src/delta).
 *
 * A stream is a region [off, off + len) of the delta holding exactly one
 * zstd frame whose decompressed size the header gives.  It is read through a
 * fixed input buffer and decoded into a fixed output buffer; the frame's
 * declared content size must equal the header's, its window must be within
 * the bound given at open, and it must end exactly at the region's end.
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
    int done;                 /* the frame ended */
} lpd_stream;

/* Opens the stream; prefix (may be NULL) is the frame's dictionary, which
 * must outlive the stream.  LP_ERR_MALFORMED, LP_ERR_NOMEM, LP_ERR_IO. */
lp_status lpd_stream_open(lpd_stream *s, const char *name, lpd_read_fn read, void *rctx,
                          uint64_t off, uint64_t len, uint64_t raw, int window_log_max,
                          const void *prefix, size_t prefix_len, lp_error *err);

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
