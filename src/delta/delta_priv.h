/*
 * delta_priv.h — internals of the delta engine shared by the files of src/delta.
 *
 * The engine is split by noun: format.c (the header), transform.c (the
 * x86-64 branch transform), match.c (suffix-array matching into control
 * entries), encode.c (streams and compression: lp_delta_make), stream.c
 * (bounded reading of one compressed stream), decode.c (the streaming
 * apply), digest.c (the digests the apply checks), file.c (the file-level
 * make and apply).
 */
#ifndef LP_DELTA_PRIV_H
#define LP_DELTA_PRIV_H

#include "livepush/delta.h"

#include <stddef.h>
#include <stdint.h>

/* Stream decoding bounds (see decode.c): a control or diff stream, and an
 * extra stream without dictionary, may use a window of at most 8 MiB; an extra
 * stream with the base as dictionary decodes into a buffer of its own size,
 * so its raw size must be at most 16 MiB. */
#define LPD_WINDOW_LOG 23
#define LPD_PREFIX_EXTRA_MAX ((uint64_t)16 << 20)
#define LPD_PREFIX_WINDOW_LOG_MAX 31
/* Bytes of operand lists of base blocks that apply keeps for an x86 delta
 * (12 MiB; beyond, they are dropped and rebuilt as needed): with the stream
 * decoders (8 + 8 + 16 MiB at most) the whole stays under
 * LP_DELTA_APPLY_MEM_MAX. */
#define LPD_INDEX_MAX ((size_t)12 << 20)

/* Serialises h (version 1, 2 or 3 as h->version says) into out, which has
 * room for LP_DELTA_HEADER_SIZE bytes, check value included; returns its
 * length. */
size_t lpd_header_encode(const lp_delta_header *h, uint8_t *out);

/* ---- digests (digest.c) ---- */
#define LPD_XXH128_LEN 16
/* XXH3-128 of data[0..len) in canonical (big-endian) form. */
void lpd_xxh128(const void *data, size_t len, uint8_t out[LPD_XXH128_LEN]);
/* 1 when the result of a delta with header h is checked by SHA-256: the
 * caller gave the digest it trusts (expect non-NULL), or a delta of version
 * 1 or 2; 0: by the delta's XXH3-128. */
int lpd_digest_is_sha256(const lp_delta_header *h, const uint8_t *expect);
/* A streaming digest of the result, SHA-256 or XXH3-128; owned by the
 * caller (lpd_digest_free).  LP_ERR_NOMEM. */
typedef struct lpd_digest lpd_digest;
lp_status lpd_digest_new(lpd_digest **out, int sha256, lp_error *err);
lp_status lpd_digest_update(lpd_digest *d, const void *data, size_t len, lp_error *err);
/* Finishes the digest and compares it with the header's digest of the
 * result: LP_ERR_HASH_MISMATCH naming the algorithm when it differs. */
lp_status lpd_digest_check(lpd_digest *d, const lp_delta_header *h, lp_error *err);
void lpd_digest_free(lpd_digest *d);
/* Checks the base old[0..old_len) against the header: XXH3-128 for version
 * 3, SHA-256 before.  LP_ERR_HASH_MISMATCH naming the algorithm. */
lp_status lpd_base_check(const lp_delta_header *h, const uint8_t *old, size_t old_len,
                         lp_error *err);

/* ---- segments of a version 2 dictionary-frames delta (filter.c) ----
 * The result is cut into segments; a raw one is coded as frames of at most
 * LPD_FRAME_MAX bytes with the whole base as dictionary, a filtered one as a
 * single frame of its filtered bytes whose dictionary is a region of the
 * base filtered the same way (see filter.c for the filters). */
#define LPD_FRAME_MAX ((uint64_t)16 << 20)  /* raw frame of a version 2 delta */
#define LPD_FILTER_MAX ((uint64_t)8 << 20)  /* filtered segment, its dictionary */
#define LPD_SEG_MAX 64                      /* segments of one delta */
#define LPD_SEGTAB_MAX 8192u                /* bytes of their table (the control stream) */
/* An LZMA segment is raw bytes coded as one LZMA2 stream (liblzma, no
 * container) whose preset dictionary is a region of the base: its decoder
 * holds a dictionary buffer of `dict` bytes, at most LPD_LZMA_DICT_MAX (the
 * zstd decoder's buffers are freed before it starts, so that the apply stays
 * under LP_DELTA_APPLY_MEM_MAX), and the region at most that.  The encoder
 * codes a raw segment of at least LPD_LZMA_MIN bytes this way
 * (lp_delta_options.lzma AUTO), one longer than LPD_LZMA_PAIR_PIECE cut
 * into equal segments of at most that (under half of their dictionary: the
 * decoder's window slides along the base as the segment is decoded, see
 * encode.c), and several of them are coded at once by the make's threads. */
#define LPD_LZMA_DICT_MAX ((uint64_t)40 << 20)
#define LPD_LZMA_DICT_MIN ((uint64_t)4096)
#define LPD_LZMA_MIN ((uint64_t)4 << 20)
/* Two LZMA segments in a row are decoded at once (on two threads) when their
 * dictionaries add up to at most LPD_LZMA_PAIR_MAX (room is left under
 * LP_DELTA_APPLY_MEM_MAX for the buffers); the encoder cuts a long raw part
 * into pieces of at most LPD_LZMA_PAIR_PIECE with dictionaries of
 * LPD_LZMA_PAIR_DICT so that they are. */
#define LPD_LZMA_PAIR_MAX ((uint64_t)44 << 20)
#define LPD_LZMA_PAIR_DICT ((uint64_t)22 << 20)
#define LPD_LZMA_PAIR_PIECE ((uint64_t)10 << 20)
enum { LPD_SEG_RAW = 0, LPD_SEG_TABLE = 1, LPD_SEG_EHFRAME = 2, LPD_SEG_LZMA = 3 };
typedef struct lpd_seg {
    uint64_t len;      /* bytes of the result */
    unsigned kind;     /* LPD_SEG_* */
    /* TABLE: records of `rec` bytes from byte `start` on; word k (of `width`
     * bytes, 4 or 8) of a record is coded as its difference from the same
     * word of the record before when bit k of `mask` is set.
     * EHFRAME: `va` is the address of the segment's first byte (of the
     * base region's for the dictionary: `old_va`).
     * LZMA: `dict` the dictionary size, `clen` the bytes of the stream. */
    uint64_t start, rec, width, mask, va, old_va, dict, clen;
    uint64_t old_off, old_len; /* the base region (filtered) that is its dictionary */
} lpd_seg;

/* Filters buf[0..n) in place (encode) or undoes it (decode); va as above. */
void lpd_filter_encode(const lpd_seg *s, uint64_t va, uint8_t *buf, size_t n);
void lpd_filter_decode(const lpd_seg *s, uint64_t va, uint8_t *buf, size_t n);
/* The segment table as bytes (the control stream of such a delta): returns
 * the length written to out (room for 16 + n * 100 bytes). */
size_t lpd_segs_encode(const lpd_seg *s, size_t n, uint8_t *out);
/* Parses and checks a segment table against the sizes of the base and the
 * result.  LP_ERR_MALFORMED. */
lp_status lpd_segs_decode(const uint8_t *p, size_t len, uint64_t old_len, uint64_t new_len,
                          lpd_seg *out, size_t *n, lp_error *err);
/* Plans the segments of new against old (ELF sections with a filter, raw
 * bytes between); returns the count (at least 1, at most LPD_SEG_MAX). */
size_t lpd_segs_plan(const uint8_t *old, size_t old_len, const uint8_t *nw, size_t new_len,
                     lpd_seg *out);

/* x86-64 branch transform over buf, which holds the file's bytes from
 * file offset `base` (a multiple of LP_DELTA_BLOCK); each LP_DELTA_BLOCK of
 * the file is transformed on its own, so any block can be (un)done alone. */
void lpd_x86_encode(uint8_t *buf, size_t len, uint64_t base);
void lpd_x86_decode(uint8_t *buf, size_t len, uint64_t base);
/* The operands that lpd_x86_encode rewrites in one block b[0..n) (n at most
 * LP_DELTA_BLOCK, the block's own untransformed bytes): their offsets in the
 * block, ascending, into out (room for n / 5 + 1); returns the count. */
size_t lpd_x86_operands(const uint8_t *b, size_t n, uint16_t *out);
/* dst[0..n) = the transformed bytes [from, from + n) of the block whose
 * untransformed bytes are block_bytes (at file offset block_pos), given that
 * dst already holds the untransformed ones and ops its lpd_x86_operands.
 * *cursor is a hint kept between calls on the same block (start it at 0):
 * any value gives the same bytes, a good one saves the search. */
void lpd_x86_patch(const uint8_t *block_bytes, uint64_t block_pos, const uint16_t *ops,
                   size_t nops, uint32_t *cursor, size_t from, uint8_t *dst, size_t n);
/* 1 if the bytes start like an x86-64 ELF, PE or Mach-O file. */
int lpd_x86_detect(const uint8_t *p, size_t len);

/* One control entry: `add` bytes of base + diff, then `copy` bytes of extra,
 * then the base position moves by `seek`. */
typedef struct lpd_ctrl {
    uint64_t add;
    uint64_t copy;
    int64_t seek;
} lpd_ctrl;

typedef struct lpd_ctrl_list {
    lpd_ctrl *v;
    size_t n, cap;
} lpd_ctrl_list;

/* Matches nw against old (both already transformed) and appends the control
 * entries to *out; t_sort/t_match get the time of each phase.  Inputs are at
 * most LP_DELTA_MAX_SIZE.  LP_ERR_NOMEM. */
lp_status lpd_match(const uint8_t *old, size_t old_len, const uint8_t *nw, size_t new_len,
                    lpd_ctrl_list *out, double *t_sort, double *t_match, lp_error *err);

/* LEB128 unsigned varint: writes at most 10 bytes, returns the count. */
size_t lpd_put_varint(uint8_t *out, uint64_t v);

/* Monotonic clock in seconds. */
double lpd_now(void);

/* Reads `n` bytes at `off` of the delta into buf. */
typedef lp_status (*lpd_read_fn)(void *ctx, uint64_t off, void *buf, size_t n, lp_error *err);

/* A result that can be written and read back at any offset (a file, a
 * buffer): the apply may then decode parts of it on two threads and hash
 * the placed parts afterwards, and checks the base's digest on a thread of
 * its own while it decodes (the result is not used before both are checked).
 * Both functions may be called from two threads at once, on disjoint ranges;
 * they must be as safe to call concurrently as `read`.  read_at may be NULL
 * (a descriptor open for writing only): nothing is then read back, and LZMA
 * segments are decoded one at a time. */
typedef struct lpd_sink {
    lp_status (*write_at)(void *ctx, uint64_t off, const uint8_t *p, size_t n, lp_error *err);
    lp_status (*read_at)(void *ctx, uint64_t off, uint8_t *p, size_t n, lp_error *err);
    void *ctx;
} lpd_sink;

/* The streaming apply over any source of delta bytes (decode.c): the result
 * goes to `sink` when it is not NULL (write is then unused), else in order to
 * write.  `read` may be called from two threads at once when sink is given. */
lp_status lpd_apply(const uint8_t *old, size_t old_len, lpd_read_fn read, void *rctx,
                    uint64_t delta_len, const uint8_t *expect_new_sha256, lp_delta_write_fn write,
                    void *wctx, const lpd_sink *sink, lp_error *err);

#endif
