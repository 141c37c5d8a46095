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
 *
 * Version 2 streams (flag LPD_STREAM_V2) are magicless zstd frames; an
 * empty region is an empty stream (no frame).  A version 2 stream of frames
 * is read frame by frame: lpd_stream_frame starts the next one with its own
 * dictionary and bound, and a read never crosses the end of a frame.
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
    int v2;                   /* magicless frames; frames started by lpd_stream_frame */
    int in_frame;             /* v2 frames: a frame is started and has not ended */
    int window_log_max;       /* the zstd decoder's bound, kept to recreate it */
} lpd_stream;

#define LPD_STREAM_V2 1

/* Opens the stream; prefix (may be NULL) is the frames' dictionary, which
 * must outlive the stream; frame_max as above (0: exactly one frame).
 * LP_ERR_MALFORMED, LP_ERR_NOMEM, LP_ERR_IO. */
lp_status lpd_stream_open(lpd_stream *s, const char *name, lpd_read_fn read, void *rctx,
                          uint64_t off, uint64_t len, uint64_t raw, int window_log_max,
                          const void *prefix, size_t prefix_len, uint64_t frame_max,
                          int flags, lp_error *err);

/* Version 2 stream of frames: ends the current frame (all of its bytes must
 * have been read) and starts the next, which must declare 1..max bytes; it
 * is decoded with prefix[0..prefix_len) as dictionary (prefix may be NULL;
 * it must stay alive until the frame is read).  *size gets its declared
 * size.  LP_ERR_MALFORMED (no frame left, a size out of bounds, …). */
lp_status lpd_stream_frame(lpd_stream *s, const void *prefix, size_t prefix_len, uint64_t max,
                           uint64_t *size, lp_error *err);

/* Version 2 stream of frames: ends the current frame (as lpd_stream_frame)
 * before bytes of another coding (an LZMA segment) are taken whole from the
 * region with lpd_stream_raw, and frees what the zstd decoder holds of the
 * frames before (it is made anew).  LP_ERR_MALFORMED, LP_ERR_NOMEM. */
lp_status lpd_stream_raw_start(lpd_stream *s, lp_error *err);

/* The next bytes of the region as they are, at most max (at least 1):
 * *p points into the stream's input buffer, valid until the next call on
 * s; *n gets their count.  LP_ERR_MALFORMED when the region has none left. */
lp_status lpd_stream_raw(lpd_stream *s, size_t max, const uint8_t **p, size_t *n,
                         lp_error *err);

/* The extent of the magicless zstd frame at delta offset off, found from its
 * frame header and block headers without decoding it (at most one read per
 * block): *csize its bytes (within [off, end)), *content its declared
 * decoded size.  LP_ERR_MALFORMED (not a frame with a declared size, a
 * reserved block type, more than size / 1024 + 64 blocks, running past
 * end), LP_ERR_IO. */
lp_status lpd_frame_extent(lpd_read_fn read, void *rctx, uint64_t off, uint64_t end,
                           uint64_t *csize, uint64_t *content, lp_error *err);

/* After lpd_stream_raw_start: the delta offset of the next byte of the
 * region, and how many are left of it (buffered ones included). */
uint64_t lpd_stream_raw_pos(const lpd_stream *s);
uint64_t lpd_stream_raw_left(const lpd_stream *s);

/* After lpd_stream_raw_start: passes over the next n bytes of the region
 * (read by someone else through the same source).  LP_ERR_MALFORMED when
 * the region has fewer left. */
lp_status lpd_stream_raw_skip(lpd_stream *s, uint64_t n, lp_error *err);

/* Counts n bytes decoded by another coding against the header's decoded
 * size of the stream.  LP_ERR_MALFORMED when that is exceeded. */
lp_status lpd_stream_produced(lpd_stream *s, uint64_t n, lp_error *err);

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
