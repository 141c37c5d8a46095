/*
 * livepush/delta.h — binary deltas: make a patch from an old file to a new
 * one, read its header, apply it.  This header is the manual of the engine;
 * docs/delta.md gives the format byte by byte and the measured figures.
 *
 * What a delta is
 *   A delta turns one exact "base" (old file) into one exact "result" (new
 *   file).  It carries a format version, the sizes of both and two digests
 *   of each (SHA-256, by which manifests name files, and XXH3-128, a fast
 *   non-cryptographic hash), and three compressed streams (control, diff,
 *   extra).  Applying it reconstructs the result from the base and checks
 *   both: a delta never produces anything but the exact result it names, or
 *   an error.  What is checked with which digest:
 *     - the base: by its XXH3-128 (what it catches is a wrong or damaged
 *       base; nothing an attacker gains by forging one, see below);
 *     - the result, when the caller gives the SHA-256 it trusts
 *       (expect_new_sha256, from signed metadata): by SHA-256, so that an
 *       LP_OK means the result is the one that was signed, whoever made the
 *       delta;
 *     - the result, without expect: by the delta's XXH3-128.  The delta's
 *       digests are as trustworthy as its other bytes, so this proves the
 *       result is the one the delta was made to give (no damage, the right
 *       base), which is all a digest inside an unsigned file can prove;
 *       a cryptographic digest there would cost ten times more for nothing.
 *   Deltas of versions 1 and 2 carry SHA-256 digests only, which are checked.
 *
 * How deltas are made (server side, lp_delta_make*)
 *   Suffix-array matching of the new file against the old (libdivsufsort),
 *   extended into approximate matches whose byte differences go to the diff
 *   stream; bytes with no useful match go to the extra stream (for an
 *   executable whose base is at most 1 MiB, also tried compressed with the
 *   old file as a dictionary, kept when smaller).  When both files look like
 *   x86-64 machine code (ELF, PE or Mach-O for x86-64) the relative targets
 *   of call and jump instructions are first rewritten as absolute ones, so that
 *   code which merely moved diffs to nothing; the transform is undone on apply.
 *   For files that are not executables, the whole result compressed with
 *   the base as zstd dictionary (a single copy from the extra stream) is
 *   also tried, and the smaller delta is kept.  When the matched coding
 *   comes out over 1/8 of the result (files that differ throughout, such as
 *   a rebuilt executable), the result is also coded as zstd frames of at
 *   most 16 MiB that each use the whole base as dictionary, at level 22
 *   (LP_DELTA_FLAG_DICT_FRAMES; lp_delta_options.dict), the address tables
 *   of an ELF file (.eh_frame_hdr, .eh_frame, .rela.dyn) filtered into what
 *   stays the same when code moves and coded against the same tables of the
 *   base, the raw parts of at least 4 MiB coded instead as LZMA2 streams
 *   with the base as preset dictionary (lp_delta_options.lzma: smaller,
 *   slower to apply), and the smaller is kept.  Deltas are written in format
 *   version 3 (a header of 121 to 157 bytes, empty streams cost nothing);
 *   version 2 and 1 deltas of earlier releases are still applied.  The stats (lp_delta_stats) describe the matching whichever
 *   coding was kept.
 *   Memory: about 5 x old + 3 x new bytes, plus the compressor's (the
 *   dictionary-frames coding at level 22 indexes the base: about 20 x old
 *   more); inputs larger than LP_DELTA_MAX_SIZE are refused.
 *
 * How deltas are applied (device side, lp_delta_apply*)
 *   Streaming, in bounded memory whatever the file sizes: the base is read in
 *   place (a buffer or a mapped file), the delta through fixed buffers, and
 *   the result is produced in blocks of LP_DELTA_BLOCK bytes that are hashed as
 *   they are handed out.  Memory outside the base is at most
 *   LP_DELTA_APPLY_MEM_MAX bytes; a delta that would need more is refused
 *   before anything is decoded.  The result's digest is checked at the end.
 *   Handed to a writer (lp_delta_apply_mem, lp_delta_apply_fd) the result
 *   comes in order and the base's digest is checked before the first write.
 *   Written to a file or a buffer (lp_delta_apply_file*, lp_delta_apply_buf)
 *   it is written by position: the base is hashed on a second thread while
 *   the result is made, and LZMA segments in a row (a long raw part cut into
 *   pieces) are decoded two at once, one by a second thread, each piece
 *   hashed in order once written (read back when the other thread wrote
 *   it); nothing is renamed into place or returned before both digests
 *   are checked.
 *
 * Safety
 *   Every field of a delta is treated as hostile: the header has its own
 *   check value, every length is checked against what is left of the base,
 *   the result and the stream before it is used, arithmetic cannot overflow,
 *   and a delta that is truncated, extended, corrupted or made for another
 *   base is refused with a message naming what is wrong
 *   (LP_ERR_MALFORMED, LP_ERR_UNSUPPORTED, LP_ERR_TOO_LARGE,
 *   LP_ERR_HASH_MISMATCH, LP_ERR_LENGTH_MISMATCH).
 *
 * Threads: no global state; every call is independent.
 */
#ifndef LIVEPUSH_DELTA_H
#define LIVEPUSH_DELTA_H

#include "livepush/bundle.h"
#include "livepush/error.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Format version written by this library (3).  It also reads versions 2 and
 * 1 (LP_DELTA_VERSION_2, LP_DELTA_VERSION_1), the formats of earlier
 * releases: version 3 is version 2 with the XXH3-128 digests of base and
 * result added to the header. */
#define LP_DELTA_VERSION 3u
#define LP_DELTA_VERSION_3 3u
#define LP_DELTA_VERSION_2 2u
#define LP_DELTA_VERSION_1 1u
/* The most bytes any header takes: reading the first LP_DELTA_HEADER_SIZE
 * bytes of a delta (or all of a shorter one) is always enough for
 * lp_delta_read_header. */
#define LP_DELTA_HEADER_SIZE 160u
/* Fewest bytes a well-formed delta can have (a version 2 header with every
 * number at its smallest and no stream). */
#define LP_DELTA_MIN_SIZE 89u
/* Largest base or result, in bytes, that a delta may describe (1 GiB). */
#define LP_DELTA_MAX_SIZE ((uint64_t)1 << 30)
/* Block of the result that apply hashes and hands to the writer at once;
 * also the unit of the executable transform (64 KiB). */
#define LP_DELTA_BLOCK 65536u
/* Bound on what applying allocates, all buffers included (48 MiB). */
#define LP_DELTA_APPLY_MEM_MAX ((size_t)48 << 20)

/* Header flags. */
#define LP_DELTA_FLAG_X86 0x1u          /* x86-64 branch transform was applied */
#define LP_DELTA_FLAG_EXTRA_PREFIX 0x2u /* extra stream uses the base as dictionary */
/* The result is a sequence of zstd frames in the extra stream, each with a
 * dictionary: in version 1 one control entry copies all of it and every
 * frame (at most LP_DELTA_DICT_FRAME_MAX decoded bytes) has the whole base as
 * dictionary; in version 2 the control stream is a table of segments, raw
 * ones in frames of at most 16 MiB with the base as dictionary and filtered
 * ones (tables of an executable) of at most 8 MiB with a filtered region of
 * the base (docs/delta.md).  Combines with no other flag. */
#define LP_DELTA_FLAG_DICT_FRAMES 0x4u
/* Largest decoded size of one frame of a version 1 LP_DELTA_FLAG_DICT_FRAMES
 * delta (8 MiB): what its decoder holds of the result at once. */
#define LP_DELTA_DICT_FRAME_MAX ((uint64_t)8 << 20)

/* What lp_delta_read_header reports; all fields are checked values. */
typedef struct lp_delta_header {
    uint32_t version;           /* LP_DELTA_VERSION or LP_DELTA_VERSION_1 */
    uint32_t header_len;        /* bytes of the header: the streams start there */
    uint32_t flags;             /* LP_DELTA_FLAG_* */
    uint64_t old_size;          /* bytes of the base */
    uint64_t new_size;          /* bytes of the result */
    uint8_t old_sha256[32];     /* SHA-256 of the base */
    uint8_t new_sha256[32];     /* SHA-256 of the result */
    uint8_t old_xxh128[16];     /* XXH3-128 of the base, canonical (big-endian)
                                   form; version 3 only, else zeros */
    uint8_t new_xxh128[16];     /* XXH3-128 of the result; version 3 only */
    uint64_t control_len;       /* compressed bytes of each stream, in order */
    uint64_t diff_len;
    uint64_t extra_len;
    uint64_t control_raw;       /* decompressed bytes of each stream */
    uint64_t diff_raw;
    uint64_t extra_raw;
} lp_delta_header;

/* How lp_delta_make treats executables. */
typedef enum lp_delta_x86 {
    LP_DELTA_X86_AUTO = 0, /* transform when both files are x86-64 executables */
    LP_DELTA_X86_OFF = 1,
    LP_DELTA_X86_ON = 2,   /* transform whatever the content */
} lp_delta_x86;

/* Whether lp_delta_make also tries the dictionary-frames coding
 * (LP_DELTA_FLAG_DICT_FRAMES: zstd's own patching, the base as dictionary of
 * every frame of the result), which wins when the two files differ so much
 * that few long approximate matches exist (a rebuilt executable). */
typedef enum lp_delta_dict {
    LP_DELTA_DICT_AUTO = 0, /* tried when the matched coding is over 1/8 of the result */
    LP_DELTA_DICT_OFF = 1,
    LP_DELTA_DICT_ON = 2,   /* always tried (the smaller coding is kept) */
    LP_DELTA_DICT_ONLY = 3, /* the only coding: no matching at all (faster, and
                               what zstd --patch-from would give, in frames) */
} lp_delta_dict;

/* Raw segments of the dictionary-frames coding as LZMA2 streams (liblzma)
 * with a region of the base as preset dictionary, instead of zstd frames:
 * about 10% smaller on rebuilt executables, decoded about 5x slower than
 * zstd, and with a dictionary buffer of up to 48 MiB when applied. */
typedef enum lp_delta_lzma {
    LP_DELTA_LZMA_AUTO = 0, /* raw segments of at least 4 MiB */
    LP_DELTA_LZMA_OFF = 1,  /* none: zstd frames only */
    LP_DELTA_LZMA_ON = 2,   /* every raw segment */
} lp_delta_lzma;

typedef struct lp_delta_options {
    int level;          /* zstd level of the streams, 1..22; 0 means 19 */
    lp_delta_x86 x86;   /* executable transform (default AUTO) */
    lp_delta_dict dict; /* dictionary-frames coding (default AUTO) */
    int dict_level;     /* zstd level of that coding, 1..22; 0 means 22 */
    int threads;        /* threads that compress its frames, 1..LP_DELTA_THREADS_MAX;
                           0 means 1.  With more than one, the threads share the
                           dictionary's tables (less memory than one thread's
                           copy, about 1.5 x the time per frame) */
    lp_delta_lzma lzma; /* LZMA segments in that coding (default AUTO) */
} lp_delta_options;

/* Most threads lp_delta_options.threads may ask for. */
#define LP_DELTA_THREADS_MAX 16

/* What lp_delta_make did; filled on success (may be NULL). */
typedef struct lp_delta_stats {
    uint64_t old_size, new_size, delta_size;
    uint64_t matched;        /* result bytes taken from the base (diff stream) */
    uint64_t matched_equal;  /* ... of which equal to the base byte */
    uint64_t literal;        /* result bytes not taken from the base (extra) */
    uint64_t entries;        /* control entries */
    uint64_t control_len, diff_len, extra_len; /* compressed stream sizes */
    int x86;                 /* 1 if the transform was used */
    int dict_tried;          /* 1 if the dictionary-frames coding was tried */
    int dict_kept;           /* 1 if it was smaller and is the delta */
    uint64_t dict_size;      /* its size in bytes when tried (header included) */
    double t_hash, t_transform, t_sort, t_match, t_compress, t_total; /* seconds */
    double t_dict;           /* seconds spent on the dictionary-frames coding */
} lp_delta_stats;

/*
 * Makes a delta from old[0..old_len) to new_[0..new_len) (either may be
 * empty; the buffers may be mapped files and are only read).  opt may be
 * NULL (defaults).  On success *delta is a new malloc'd buffer of *delta_len
 * bytes that the caller frees, and *stats (if non-NULL) is filled.
 * Errors: LP_ERR_INVALID_ARG (bad level), LP_ERR_TOO_LARGE (an input over
 * LP_DELTA_MAX_SIZE), LP_ERR_NOMEM, LP_ERR_CRYPTO.  On failure *delta is NULL.
 */
lp_status lp_delta_make(const uint8_t *old, size_t old_len, const uint8_t *new_, size_t new_len,
                        const lp_delta_options *opt, uint8_t **delta, size_t *delta_len,
                        lp_delta_stats *stats, lp_error *err);

/*
 * Makes a delta from the file old_path to the file new_path and writes it to
 * delta_path atomically (temporary file, fsync, rename; mode 0644).  Both
 * inputs are mapped, not copied.  Errors as lp_delta_make, plus
 * LP_ERR_NOT_FOUND and LP_ERR_IO (messages name the path).
 */
lp_status lp_delta_make_file(const char *old_path, const char *new_path, const char *delta_path,
                             const lp_delta_options *opt, lp_delta_stats *stats, lp_error *err);

/*
 * Reads and checks a delta's header from its first `len` bytes (at least
 * LP_DELTA_HEADER_SIZE).  `total` is the delta's whole length, checked
 * against the stream lengths the header gives (0: not checked).
 * Errors: LP_ERR_MALFORMED (not a delta, corrupted header, sizes that do not
 * add up, truncated or trailing bytes), LP_ERR_UNSUPPORTED (other version,
 * unknown flags), LP_ERR_TOO_LARGE (sizes over the limits).
 */
lp_status lp_delta_read_header(const uint8_t *data, size_t len, uint64_t total,
                               lp_delta_header *h, lp_error *err);

/* The same for a delta file (reads its header and size only). */
lp_status lp_delta_read_header_file(const char *path, lp_delta_header *h, lp_error *err);

/*
 * Receives the result as it is produced: `len` bytes (at most
 * LP_DELTA_BLOCK) that follow the ones before.  Returns LP_OK to go on, or an
 * error (filled in err) that stops the apply and is returned by it.  These
 * bytes are NOT yet verified: the caller must not use them unless the apply
 * call returns LP_OK.
 */
typedef lp_status (*lp_delta_write_fn)(void *ctx, const uint8_t *data, size_t len, lp_error *err);

/*
 * Applies the delta held in memory (delta[0..delta_len)) to the base
 * old[0..old_len), handing the result to write(ctx, ...) block by block.
 * expect_new_sha256 (32 bytes, may be NULL) is the digest the caller trusts
 * (e.g. from a signed manifest): a delta naming another result is refused
 * before any work, and the result is checked by SHA-256.  The base's digest
 * is checked before the first write; LP_OK means the whole result was
 * written and its digest equals the header's: its SHA-256, equal to the
 * expected one, when expect_new_sha256 is given; else its XXH3-128 (its
 * SHA-256 for a delta of version 1 or 2): see "What a delta is" above.
 * Errors: those of lp_delta_read_header, LP_ERR_HASH_MISMATCH (base is not
 * the one the delta was made from, result differs, or it is not the
 * expected result), LP_ERR_MALFORMED (streams corrupted or inconsistent),
 * LP_ERR_TOO_LARGE (would need more memory than LP_DELTA_APPLY_MEM_MAX),
 * LP_ERR_NOMEM, and whatever `write` returns.
 */
lp_status lp_delta_apply_mem(const uint8_t *old, size_t old_len, const uint8_t *delta,
                             size_t delta_len, const uint8_t *expect_new_sha256,
                             lp_delta_write_fn write, void *ctx, lp_error *err);

/* The same with the delta read from an open file descriptor (positioned reads
 * through fixed buffers, the descriptor's offset is not used or changed;
 * LP_ERR_IO on a read error).  The caller keeps ownership of delta_fd. */
lp_status lp_delta_apply_fd(const uint8_t *old, size_t old_len, int delta_fd,
                            const uint8_t *expect_new_sha256, lp_delta_write_fn write, void *ctx,
                            lp_error *err);

/*
 * Applies the delta file delta_path to the base file old_path (mapped) and
 * writes the result to out_path: into a temporary file next to it, fsync'd
 * and renamed over out_path only when the result's digest is verified (mode
 * 0644).  On any failure out_path is untouched and no temporary file is left.
 * expect_new_sha256 as for lp_delta_apply_mem.
 */
lp_status lp_delta_apply_file(const char *old_path, const char *delta_path, const char *out_path,
                              const uint8_t *expect_new_sha256, lp_error *err);
/*
 * lp_delta_apply_file without its fsyncs (of the result and of its folder):
 * the rename is still atomic for readers and against a crash of the
 * process, but after a power loss out_path may be missing or empty.  For a
 * caller that syncs later itself, or that compares the engine with tools
 * that never sync (`livepush delta apply --sync off`).  Errors as
 * lp_delta_apply_file.
 */
lp_status lp_delta_apply_file_unsynced(const char *old_path, const char *delta_path,
                                       const char *out_path, const uint8_t *expect_new_sha256,
                                       lp_error *err);
/*
 * The same, writing the result into the open file out_fd from its current
 * offset, with no temporary file, no rename and no fsync: for a caller that
 * builds a whole new folder and makes it durable and visible at once (as
 * `livepush delta tree apply` does).  A regular file is written by position
 * (pwrite; read back with pread when out_fd is open for reading too, which
 * lets LZMA segments be decoded two at once) and left at the result's end;
 * anything else (a pipe) is written in order.
 * On failure out_fd holds a partial result that the caller must discard.
 * The caller keeps ownership of out_fd.  Errors as lp_delta_apply_file.
 */
lp_status lp_delta_apply_file_fd(const char *old_path, const char *delta_path, int out_fd,
                                 const uint8_t *expect_new_sha256, lp_error *err);

/*
 * Applies the delta read from delta_fd (as lp_delta_apply_fd) to the base
 * old[0..old_len) and writes the result into out_fd from its current offset,
 * as lp_delta_apply_file_fd does (by position on a regular file, on two
 * threads when out_fd is open for reading too; left at the result's end).
 * A delta whose header declares a result of more than max_out bytes is
 * refused before anything is written (LP_ERR_LENGTH_MISMATCH): a device
 * passes the size its signed manifest lists, so that a hostile delta cannot
 * fill its disk.  On failure out_fd holds a partial result that the caller
 * must discard.  The caller keeps ownership of both descriptors and of old.
 * Errors as lp_delta_apply_fd, LP_ERR_INVALID_ARG (NULL base, negative
 * descriptor).
 */
lp_status lp_delta_apply_fd_to_fd(const uint8_t *old, size_t old_len, int delta_fd,
                                  const uint8_t *expect_new_sha256, uint64_t max_out, int out_fd,
                                  lp_error *err);

/*
 * Convenience for small files: applies delta to old and returns the whole
 * result in a new malloc'd buffer (*out, *out_len; the caller frees it).
 * The result must not exceed max_out bytes (LP_ERR_TOO_LARGE, checked against
 * the header before anything is allocated).  On failure *out is NULL.
 */
lp_status lp_delta_apply_buf(const uint8_t *old, size_t old_len, const uint8_t *delta,
                             size_t delta_len, size_t max_out, uint8_t **out, size_t *out_len,
                             lp_error *err);

/* ---- trees: which base each file of a new release is sent against ----- */

/*
 * How a file of the new tree reaches a device that has the old tree.
 *   SAME   its content (SHA-256) is somewhere in the old tree (a renamed or
 *          moved file too): it costs nothing; `base` is the first old file
 *          by path with that content.
 *   DELTA  it is sent as a delta against `base`, chosen by the first rule
 *          that finds one (`rule`):
 *            1. the old file at the same path (its content differs);
 *            2. else an old file with the same base name (last path
 *               component) elsewhere, the closest in size;
 *            3. else an old file with the same extension (a name without one
 *               counts as extension "") and the closest size, within a
 *               factor of 2.
 *          Only bases of 1..LP_DELTA_MAX_SIZE bytes are chosen; ties in size
 *          go to the first path, so the same trees give the same plan.
 *   NEW    no base (or the file is empty or over LP_DELTA_MAX_SIZE): it is
 *          sent whole.
 * The server (deltas between releases) and `livepush delta tree` both plan
 * with this.
 */
typedef enum lp_delta_tree_kind {
    LP_DELTA_TREE_SAME = 0,
    LP_DELTA_TREE_DELTA = 1,
    LP_DELTA_TREE_NEW = 2,
} lp_delta_tree_kind;

/* The plan of one file of the new tree.  Pointers are into the manifests
 * given to lp_delta_tree_plan, which must outlive the plan. */
typedef struct lp_delta_tree_item {
    const lp_manifest_entry *file; /* the file of the new tree */
    lp_delta_tree_kind kind;
    const lp_manifest_entry *base; /* old file (SAME, DELTA); NULL for NEW */
    int rule;                      /* DELTA: 1, 2 or 3 as above; else 0 */
} lp_delta_tree_item;

typedef struct lp_delta_tree_plan {
    lp_delta_tree_item *items; /* one per file entry of the new manifest, in its order */
    size_t count;
} lp_delta_tree_plan;

/*
 * Plans every file entry of new_ (symlinks and folders cost no file bytes
 * and are left out) against the file entries of old.  Both manifests must
 * be finished (lp_manifest_finish) and stay alive as long as *plan.  On
 * success *plan is filled and the caller frees it with
 * lp_delta_tree_plan_free; on failure it is empty.  Errors: LP_ERR_NOMEM.
 */
lp_status lp_delta_tree_plan_make(const lp_manifest *old, const lp_manifest *new_,
                                  lp_delta_tree_plan *plan, lp_error *err);

/* Frees what lp_delta_tree_plan_make allocated (not the manifests); the
 * plan is left empty.  NULL or an empty plan is fine. */
void lp_delta_tree_plan_free(lp_delta_tree_plan *plan);

/*
 * Describes the folder `dir` as a finished manifest (*m, initialised here;
 * empty on failure), hashing every regular file and storing nothing: the
 * rules of a folder bundle (include/livepush/bundle.h): symbolic links are
 * recorded, never followed, and must stay inside the tree; devices, fifos
 * and sockets are refused; nesting is bounded by LP_INGEST_MAX_DEPTH and the
 * entries by LP_MANIFEST_MAX_ENTRIES.  Errors: LP_ERR_NOT_FOUND, LP_ERR_IO,
 * LP_ERR_MALFORMED, LP_ERR_TOO_LARGE, LP_ERR_NOMEM, LP_ERR_CRYPTO; messages
 * name the entry.
 */
lp_status lp_delta_tree_scan(const char *dir, lp_manifest *m, lp_error *err);

#ifdef __cplusplus
}
#endif
#endif
