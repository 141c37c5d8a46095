/*
 * encode.c — lp_delta_make: hashes, transform, matching, streams, header.
 *
 * The control entries from match.c become three streams:
 *   control  per entry three LEB128 varints: add, copy, zigzag(seek)
 *   diff     for each added byte, new - base (mod 256), mostly zeros, in
 *            run-length records (zero run, literal run, literal bytes):
 *            smaller once compressed, and faster to compress and decode
 *   extra    the bytes copied verbatim into the result
 * Each stream is one zstd frame at the chosen level with its window capped
 * at 2^LPD_WINDOW_LOG so that decoding memory stays bounded.
 *
 * Two codings compete (compress_all), within format version 1:
 *   - for an executable (x86 transform on), the extra stream is also tried
 *     with the (untransformed) base as a dictionary when the base is at most
 *     1 MiB (beyond, zstd's indexing of the dictionary costs seconds for a
 *     few hundred bytes saved);
 *   - for other files, the whole result as a single copy from the extra
 *     stream compressed with the base as dictionary (zstd's own patching:
 *     LZ77 over base + result with repeat offsets, which beats
 *     control/diff/extra on text with small scattered edits).
 * The smaller is kept; LP_DELTA_FLAG_EXTRA_PREFIX says the extra stream has
 * the dictionary (its decoded size at most LPD_PREFIX_EXTRA_MAX bytes, the
 * decoder's buffer).
 *
 * A third coding (dict_frames) is tried when the kept one is over 1/8 of the
 * result, or always with LP_DELTA_DICT_ON: the result cut into frames of
 * LP_DELTA_DICT_FRAME_MAX bytes, each compressed with the whole base as a raw
 * dictionary, indexed once (one CDict shared by the frames).  Files that
 * differ throughout (an executable rebuilt from changed sources, where the
 * approximate matches are short and the control stream grows to a quarter of
 * the delta) are coded smaller by zstd's optimal parser with the base in its
 * window; cutting the result into frames bounds what the decoder holds of it
 * (one frame) at the price of the matches between frames of the result.
 * Raw segments of at least LPD_LZMA_MIN bytes (every one with
 * LP_DELTA_LZMA_ON, none with OFF) are coded instead as one LZMA2 stream
 * each, with the base (or the part of it that fits the decoder's dictionary,
 * around the segment's place) as preset dictionary: LZMA's literals coded
 * against the byte at the last match distance and its finer contexts make
 * a rebuilt executable about 10% smaller than zstd's frames do.
 */
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_createCDict_advanced: a raw-content dictionary */
#include "delta/delta_priv.h"
#include "livepush/hash.h"

#include <lzma.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

typedef struct {
    uint8_t *p;
    size_t n;
} blob;

static lp_status compress(const uint8_t *src, size_t n, int level, const uint8_t *prefix,
                          size_t prefix_len, blob *out, lp_error *err)
{
    out->p = NULL;
    out->n = 0;
    if (n == 0) /* an empty stream has no frame */
        return LP_OK;
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    size_t cap = ZSTD_compressBound(n);
    out->p = malloc(cap ? cap : 1);
    if (!cc || !out->p) {
        ZSTD_freeCCtx(cc);
        free(out->p);
        out->p = NULL;
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory compressing %zu bytes", n);
    }
    int wlog = LPD_WINDOW_LOG;
    if (prefix) {
        wlog = 10;
        while (wlog < LPD_PREFIX_WINDOW_LOG_MAX && ((uint64_t)1 << wlog) < prefix_len + n)
            wlog++;
    }
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, wlog);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 0);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_format, ZSTD_f_zstd1_magicless);
    if (prefix)
        ZSTD_CCtx_refPrefix(cc, prefix, prefix_len);
    size_t r = ZSTD_compress2(cc, out->p, cap, src, n);
    ZSTD_freeCCtx(cc);
    if (ZSTD_isError(r)) {
        free(out->p);
        out->p = NULL;
        return lp_error_set(err, LP_ERR_NOMEM, "zstd: %s", ZSTD_getErrorName(r));
    }
    out->n = r;
    return LP_OK;
}

static uint64_t zigzag(int64_t v)
{
    return v < 0 ? ((uint64_t)(-(v + 1)) << 1) | 1 : (uint64_t)v << 1;
}

/* Run-length form of the diff bytes: records of varint(zero bytes),
 * varint(literal bytes), the literal bytes.  A literal run absorbs zero runs
 * shorter than 3 bytes (cheaper inline than as a record).  Returns the size
 * written to out (at most n + n / 2 + 20). */
static size_t rle(const uint8_t *d, size_t n, uint8_t *out)
{
    size_t o = 0, i = 0;
    while (i < n) {
        size_t z = i;
        while (z < n && d[z] == 0)
            z++;
        size_t e = z;
        while (e < n) {
            if (d[e] != 0) {
                e++;
                continue;
            }
            size_t r = e;
            while (r < n && d[r] == 0 && r - e < 3)
                r++;
            if (r - e >= 3 || r == n)
                break;
            e = r;
        }
        o += lpd_put_varint(out + o, z - i);
        o += lpd_put_varint(out + o, e - z);
        memcpy(out + o, d + z, e - z);
        o += e - z;
        i = e;
    }
    return o;
}

/* Builds the raw streams from the entries. */
static lp_status build_streams(const uint8_t *old, const uint8_t *nw, const lpd_ctrl_list *l,
                               blob *ctl, blob *dif, blob *ext, lp_delta_stats *s, lp_error *err)
{
    size_t total_add = 0, total_copy = 0;
    for (size_t i = 0; i < l->n; i++) {
        total_add += l->v[i].add;
        total_copy += l->v[i].copy;
    }
    ctl->p = malloc(l->n * 30 + 1);
    uint8_t *d = malloc(total_add + 1);
    dif->p = malloc(total_add + total_add / 2 + 32);
    ext->p = malloc(total_copy + 1);
    if (!d || !ctl->p || !dif->p || !ext->p) {
        free(d);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory for the delta streams");
    }
    size_t op = 0, np = 0, dn = 0;
    ctl->n = dif->n = ext->n = 0;
    for (size_t i = 0; i < l->n; i++) {
        const lpd_ctrl *c = &l->v[i];
        for (uint64_t k = 0; k < c->add; k++) {
            d[dn] = (uint8_t)(nw[np + k] - old[op + k]);
            s->matched_equal += d[dn++] == 0;
        }
        np += c->add;
        op += c->add;
        memcpy(ext->p + ext->n, nw + np, c->copy);
        ext->n += c->copy;
        np += c->copy;
        op = (size_t)((int64_t)op + c->seek);
        ctl->n += lpd_put_varint(ctl->p + ctl->n, c->add);
        ctl->n += lpd_put_varint(ctl->p + ctl->n, c->copy);
        ctl->n += lpd_put_varint(ctl->p + ctl->n, zigzag(c->seek));
    }
    dif->n = rle(d, dn, dif->p);
    free(d);
    s->matched = total_add;
    s->literal = total_copy;
    s->entries = l->n;
    return LP_OK;
}

static size_t total(const blob z[3])
{
    return z[0].n + z[1].n + z[2].n;
}

static void blobs_free(blob z[3])
{
    for (int i = 0; i < 3; i++) {
        free(z[i].p);
        z[i] = (blob){0};
    }
}

/* A delta that is one copy of the whole result from the extra stream has
 * neither control nor diff stream (version 2); raw[] receives the decoded
 * sizes (for the header), raw[2] the result's. */
static void one_copy(size_t new_len, blob raw[3], blob z[3])
{
    raw[0] = (blob){NULL, 0};
    raw[1] = (blob){NULL, 0};
    raw[2] = (blob){NULL, new_len};
    z[0] = z[1] = (blob){NULL, 0};
}

/* The whole result as one copy from the extra stream, compressed with the
 * base as dictionary: zstd's own patching, which wins on text with small
 * scattered edits. */
static lp_status whole(const uint8_t *old, size_t old_len, const uint8_t *nw, size_t new_len,
                       int level, blob raw[3], blob z[3], lp_error *err)
{
    one_copy(new_len, raw, z);
    return compress(nw, new_len, level, old, old_len, &z[2], err);
}

/* Compresses the three streams.  The extra stream is also tried with the
 * base as dictionary when that is cheap (a base of at most
 * PREFIX_TRY_MAX bytes: zstd indexes the whole dictionary at this level, a
 * cost out of proportion to the small extra stream of an executable).  For
 * files that are not executables, the whole result compressed with the base
 * as dictionary is tried too (see whole()); the smaller coding is kept and
 * *raw / *flags describe it. */
#define PREFIX_TRY_MAX ((size_t)1 << 20)
static lp_status compress_all(blob raw[3], const uint8_t *old, size_t old_len,
                              const uint8_t *nw, size_t new_len, int level, blob z[3],
                              uint32_t *flags, lp_error *err)
{
    lp_status st = LP_OK;
    for (int i = 0; i < 3 && !st; i++)
        st = compress(raw[i].p, raw[i].n, level, NULL, 0, &z[i], err);
    if (st || old_len == 0)
        return st;
    if (!(*flags & LP_DELTA_FLAG_X86)) {
        if (new_len > LPD_PREFIX_EXTRA_MAX)
            return LP_OK;
        blob wraw[3], wz[3] = {{0}};
        st = whole(old, old_len, nw, new_len, level, wraw, wz, err);
        if (!st && total(wz) < total(z)) {
            blobs_free(z);
            blobs_free(raw);
            for (int i = 0; i < 3; i++) {
                z[i] = wz[i];
                raw[i].n = wraw[i].n;
            }
            *flags |= LP_DELTA_FLAG_EXTRA_PREFIX;
        } else {
            blobs_free(wz);
        }
        return st;
    }
    if (raw[2].n == 0 || raw[2].n > LPD_PREFIX_EXTRA_MAX || old_len > PREFIX_TRY_MAX)
        return LP_OK;
    blob alt = {0};
    st = compress(raw[2].p, raw[2].n, level, old, old_len, &alt, err);
    if (st)
        return st;
    if (alt.n < z[2].n) {
        free(z[2].p);
        z[2] = alt;
        *flags |= LP_DELTA_FLAG_EXTRA_PREFIX;
    } else {
        free(alt.p);
    }
    return LP_OK;
}

/* One frame of the dictionary-frames coding: src[0..n) compressed with the
 * shared CDict of the base, or (a filtered segment) with prefix as
 * dictionary. */
typedef struct {
    const uint8_t *src, *prefix;
    size_t n, prefix_len;
    uint64_t lzma_dict; /* an LZMA segment: its dictionary size; else 0 */
    int level;          /* zstd level of a frame */
    uint8_t *out;
    size_t out_n;
} frame_in;

/* The frames still to compress, taken by the threads one at a time in the
 * order of `order` (the costliest first: LZMA streams, then the largest), so
 * that one long stream does not leave the other threads idle at the end. */
typedef struct {
    pthread_mutex_t mu;
    const size_t *order;
    size_t next, n;
} frame_queue;

/* One thread's work on the dictionary frames: frames taken from the queue,
 * each into its own buffer. */
typedef struct {
    const ZSTD_CDict *cd;
    frame_in *fr;
    frame_queue *q;
    int wlog, attach;
    size_t zerr;    /* a zstd error code, or 0 */
    int lzerr;      /* a liblzma error code, or 0 */
    int nomem;
} frame_job;

/* An LZMA segment: f->src as one LZMA2 stream (end mark included) with
 * f->prefix as preset dictionary; returns a liblzma code (LZMA_OK). */
static int lzma_frame(frame_in *f)
{
    lzma_options_lzma o;
    if (lzma_lzma_preset(&o, 9))
        return LZMA_PROG_ERROR;
    /* machine code: instructions are not aligned (no position bits), and
     * long matches are worth finding whole (measured on rebuilt executables:
     * 0.6% smaller, no slower to decode; the decoder reads lc, lp and pb from
     * the stream) */
    o.lp = 0;
    o.pb = 0;
    o.nice_len = 273;
    o.dict_size = (uint32_t)f->lzma_dict;
    o.preset_dict = f->prefix_len ? f->prefix : NULL;
    o.preset_dict_size = (uint32_t)f->prefix_len;
    lzma_filter flt[2] = {{LZMA_FILTER_LZMA2, &o}, {LZMA_VLI_UNKNOWN, NULL}};
    size_t cap = f->n + f->n / 8 + 65536;
    if (!(f->out = malloc(cap)))
        return LZMA_MEM_ERROR;
    lzma_stream z = LZMA_STREAM_INIT;
    lzma_ret r = lzma_raw_encoder(&z, flt);
    if (r != LZMA_OK)
        return (int)r;
    z.next_in = f->src;
    z.avail_in = f->n;
    z.next_out = f->out;
    z.avail_out = cap;
    while ((r = lzma_code(&z, LZMA_FINISH)) == LZMA_OK)
        ;
    f->out_n = cap - z.avail_out;
    lzma_end(&z);
    return r == LZMA_STREAM_END ? LZMA_OK : (int)r;
}

/* 1 if frame a should be compressed before frame b (see frame_queue). */
static int frame_before(const frame_in *a, const frame_in *b)
{
    if ((a->lzma_dict != 0) != (b->lzma_dict != 0))
        return a->lzma_dict != 0;
    return a->n > b->n;
}

static void *frame_worker(void *arg)
{
    frame_job *j = arg;
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    if (!cc) {
        j->nomem = 1;
        return NULL;
    }
    while (!j->zerr && !j->lzerr && !j->nomem) {
        pthread_mutex_lock(&j->q->mu);
        size_t i = j->q->next < j->q->n ? j->q->order[j->q->next++] : SIZE_MAX;
        pthread_mutex_unlock(&j->q->mu);
        if (i == SIZE_MAX)
            break;
        frame_in *f = &j->fr[i];
        if (f->lzma_dict) {
            j->lzerr = lzma_frame(f);
            continue;
        }
        size_t cap = ZSTD_compressBound(f->n);
        if (!(f->out = malloc(cap))) {
            j->nomem = 1;
            break;
        }
        ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters);
        ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, f->level);
        ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 0);
        ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 1);
        ZSTD_CCtx_setParameter(cc, ZSTD_c_format, ZSTD_f_zstd1_magicless);
        size_t r = 0;
        if (f->prefix || !j->cd) {
            int wlog = 10;
            while (wlog < LPD_PREFIX_WINDOW_LOG_MAX &&
                   ((uint64_t)1 << wlog) < f->prefix_len + f->n)
                wlog++;
            ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, wlog);
            if (f->prefix)
                r = ZSTD_CCtx_refPrefix(cc, f->prefix, f->prefix_len);
        } else {
            ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, j->wlog);
            /* several threads share the dictionary's tables instead of a copy each */
            if (j->attach)
                ZSTD_CCtx_setParameter(cc, ZSTD_c_forceAttachDict, ZSTD_dictForceAttach);
            r = ZSTD_CCtx_refCDict(cc, j->cd);
        }
        if (!ZSTD_isError(r))
            r = ZSTD_compress2(cc, f->out, cap, f->src, f->n);
        if (ZSTD_isError(r))
            j->zerr = r;
        else
            f->out_n = r;
    }
    ZSTD_freeCCtx(cc);
    return NULL;
}

/* Makes a raw segment at result offset `at` an LZMA one: its dictionary is
 * as large as base + segment need, at most dict_max, and its region the
 * part of the base that fits, starting an eighth of the dictionary before
 * the segment's offset (the decoder's window then slides along the base as
 * the segment is decoded). */
static void make_lzma(lpd_seg *g, uint64_t at, size_t old_len, uint64_t dict_max)
{
    uint64_t dict = old_len + g->len;
    dict = dict < LPD_LZMA_DICT_MIN ? LPD_LZMA_DICT_MIN : dict;
    dict = dict > dict_max ? dict_max : dict;
    uint64_t rlen = old_len < dict ? old_len : dict, r0 = at > dict / 8 ? at - dict / 8 : 0;
    if (r0 > old_len - rlen)
        r0 = old_len - rlen;
    g->kind = LPD_SEG_LZMA;
    g->dict = dict;
    g->old_off = r0;
    g->old_len = rlen;
}

/* The dictionary-frames coding of the whole result (see the top): the
 * segments of lpd_segs_plan, raw ones cut into frames of LPD_FRAME_MAX with
 * the base as dictionary (indexed once), filtered ones one frame each with
 * their filtered base region as dictionary, raw ones of LZMA size (per lz)
 * as LZMA segments; the frames and LZMA streams shared out over `threads`
 * threads.  raw[0] / z[0] get the segment table (none when the whole result
 * is one raw segment). */
static lp_status dict_frames(const uint8_t *old, size_t old_len, const uint8_t *nw,
                             size_t new_len, int level, int threads, lp_delta_lzma lz,
                             blob raw[3], blob z[3], lp_error *err)
{
    one_copy(new_len, raw, z);
    lpd_seg segs[LPD_SEG_MAX];
    size_t nseg = lpd_segs_plan(old, old_len, nw, new_len, segs);
    size_t seg_of[LPD_SEG_MAX]; /* the frame of each LZMA segment */
    for (size_t i = 0, at = 0; i < nseg; at += (size_t)segs[i].len, i++) {
        lpd_seg *g = &segs[i];
        if (g->kind != LPD_SEG_RAW || lz == LP_DELTA_LZMA_OFF ||
            (lz == LP_DELTA_LZMA_AUTO && g->len < LPD_LZMA_MIN))
            continue;
        /* too long for one: cut into equal pieces, the first here, the
         * rest the next segment (if there is room for one), each with a
         * dictionary that lets the decoder take two at once; a raw
         * segment's dict (otherwise unused) marks the rest of a cut */
        if (g->len > LPD_LZMA_PAIR_PIECE && nseg < LPD_SEG_MAX) {
            uint64_t pieces = (g->len + LPD_LZMA_PAIR_PIECE - 1) / LPD_LZMA_PAIR_PIECE;
            uint64_t piece = (g->len + pieces - 1) / pieces;
            memmove(g + 2, g + 1, (nseg - i - 1) * sizeof *g);
            g[1] = (lpd_seg){.len = g->len - piece, .kind = LPD_SEG_RAW,
                             .dict = LPD_LZMA_PAIR_DICT};
            g->len = piece;
            g->dict = LPD_LZMA_PAIR_DICT;
            nseg++;
        }
        if (g->len <= LPD_LZMA_PAIR_PIECE || g->dict)
            make_lzma(g, at, old_len, g->dict ? g->dict : LPD_LZMA_DICT_MAX);
    }
    /* Indexing the base at level 22 takes ~0.6 s per MB of base: worth it
     * for the raw frames' sake only when LZMA did not take the large raw
     * parts; what is left then (ELF headers, small gaps) gets level 12
     * (~0.06 s per MB). */
    uint64_t raw_bytes = 0, lzma_bytes = 0;
    for (size_t i = 0; i < nseg; i++) {
        raw_bytes += segs[i].kind == LPD_SEG_RAW ? segs[i].len : 0;
        lzma_bytes += segs[i].kind == LPD_SEG_LZMA ? segs[i].len : 0;
    }
    int raw_level = lzma_bytes && raw_bytes < LPD_LZMA_MIN && level > 12 ? 12 : level;
    size_t nframes = 0;
    for (size_t i = 0; i < nseg; i++)
        nframes += segs[i].kind == LPD_SEG_RAW
                       ? (size_t)((segs[i].len + LPD_FRAME_MAX - 1) / LPD_FRAME_MAX)
                       : 1;
    uint8_t *tab = malloc(16 + nseg * 100);
    uint8_t **bufs = calloc(2 * nseg, sizeof *bufs); /* filtered copies */
    frame_in *fr = calloc(nframes, sizeof *fr);
    lp_status st = LP_OK;
    ZSTD_CDict *cd = NULL;
    int wlog = 10;
    while (wlog < LPD_PREFIX_WINDOW_LOG_MAX && ((uint64_t)1 << wlog) < old_len + LPD_FRAME_MAX)
        wlog++;
    if (!tab || !bufs || !fr)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory for the dictionary frames");
    size_t k = 0, at = 0;
    for (size_t i = 0; i < nseg && !st; i++) {
        const lpd_seg *g = &segs[i];
        if (g->kind == LPD_SEG_RAW) {
            for (uint64_t o = 0; o < g->len; o += LPD_FRAME_MAX)
                fr[k++] = (frame_in){.src = nw + at + o,
                                     .n = (size_t)(g->len - o < LPD_FRAME_MAX ? g->len - o
                                                                               : LPD_FRAME_MAX),
                                     .level = raw_level};
        } else if (g->kind == LPD_SEG_LZMA) {
            seg_of[i] = k;
            fr[k++] = (frame_in){.src = nw + at, .n = (size_t)g->len, .lzma_dict = g->dict,
                                 .prefix = old + g->old_off, .prefix_len = (size_t)g->old_len};
        } else {
            uint8_t *b = malloc((size_t)g->len), *d = malloc((size_t)g->old_len + 1);
            bufs[2 * i] = b;
            bufs[2 * i + 1] = d;
            if (!b || !d) {
                st = lp_error_set(err, LP_ERR_NOMEM, "out of memory for a filtered segment");
                break;
            }
            memcpy(b, nw + at, (size_t)g->len);
            lpd_filter_encode(g, g->va, b, (size_t)g->len);
            memcpy(d, old + g->old_off, (size_t)g->old_len);
            lpd_filter_encode(g, g->old_va, d, (size_t)g->old_len);
            fr[k++] = (frame_in){.src = b, .n = (size_t)g->len, .prefix = g->old_len ? d : NULL,
                                 .prefix_len = (size_t)g->old_len, .level = level};
        }
        at += (size_t)g->len;
    }
    if (!st && raw_bytes) {
        ZSTD_compressionParameters cp = ZSTD_getCParams(raw_level, LPD_FRAME_MAX, old_len);
        cp.windowLog = (unsigned)wlog;
        cd = ZSTD_createCDict_advanced(old, old_len, ZSTD_dlm_byRef, ZSTD_dct_rawContent, cp,
                                       ZSTD_defaultCMem);
        if (!cd)
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory for the dictionary of %zu "
                              "bytes", old_len);
    }
    size_t nt = (size_t)threads < nframes ? (size_t)threads : nframes;
    frame_job *jobs = calloc(nt ? nt : 1, sizeof *jobs);
    pthread_t *tid = calloc(nt ? nt : 1, sizeof *tid);
    size_t *order = calloc(nframes ? nframes : 1, sizeof *order);
    frame_queue q = {.order = order, .n = nframes};
    size_t started = 0;
    if (!st && (!jobs || !tid || !order))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory for the dictionary frames");
    if (!st) {
        /* costliest first: LZMA streams, then by size (a stable insertion
         * sort: a few dozen frames) */
        for (size_t i = 0; i < nframes; i++) {
            size_t at_k = i;
            for (; at_k > 0 && frame_before(&fr[i], &fr[order[at_k - 1]]); at_k--)
                order[at_k] = order[at_k - 1];
            order[at_k] = i;
        }
        pthread_mutex_init(&q.mu, NULL);
        for (size_t j = 0; j < nt; j++)
            jobs[j] = (frame_job){.cd = cd, .fr = fr, .q = &q, .wlog = wlog, .attach = nt > 1};
        /* jobs 1.. on their own threads (if one cannot start, the others
         * take its frames), job 0 here */
        for (size_t j = 1; j < nt; j++, started++)
            if (pthread_create(&tid[j], NULL, frame_worker, &jobs[j]) != 0)
                break;
        frame_worker(&jobs[0]);
        for (size_t j = 1; j <= started; j++)
            pthread_join(tid[j], NULL);
        pthread_mutex_destroy(&q.mu);
    }
    for (size_t j = 0; j < nt && !st; j++) {
        if (jobs[j].nomem || jobs[j].lzerr == LZMA_MEM_ERROR)
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory compressing a frame");
        else if (jobs[j].lzerr)
            st = lp_error_set(err, LP_ERR_NOMEM, "liblzma: error %d coding a segment",
                              jobs[j].lzerr);
        else if (jobs[j].zerr)
            st = lp_error_set(err, LP_ERR_NOMEM, "zstd: %s", ZSTD_getErrorName(jobs[j].zerr));
    }
    size_t total_n = 0;
    for (size_t i = 0; i < nframes && !st; i++)
        total_n += fr[i].out_n;
    if (!st && !(z[2].p = malloc(total_n ? total_n : 1)))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory for a delta of %zu bytes", total_n);
    for (size_t i = 0; i < nframes && !st; i++) {
        memcpy(z[2].p + z[2].n, fr[i].out, fr[i].out_n);
        z[2].n += fr[i].out_n;
    }
    for (size_t i = 0; i < nseg && !st; i++)
        if (segs[i].kind == LPD_SEG_LZMA)
            segs[i].clen = fr[seg_of[i]].out_n;
    /* the segment table, unless the whole result is one raw segment */
    if (!st && !(nseg == 1 && segs[0].kind == LPD_SEG_RAW)) {
        raw[0].n = lpd_segs_encode(segs, nseg, tab);
        st = compress(tab, raw[0].n, 19, NULL, 0, &z[0], err);
    }
    for (size_t i = 0; fr && i < nframes; i++)
        free(fr[i].out);
    for (size_t i = 0; bufs && i < 2 * nseg; i++)
        free(bufs[i]);
    free(bufs);
    free(fr);
    free(tab);
    free(jobs);
    free(tid);
    free(order);
    ZSTD_freeCDict(cd);
    return st;
}

static lp_status assemble(lp_delta_header *h, const blob z[3], uint8_t **delta, size_t *len,
                          lp_error *err)
{
    h->control_len = z[0].n;
    h->diff_len = z[1].n;
    h->extra_len = z[2].n;
    uint8_t hdr[LP_DELTA_HEADER_SIZE];
    size_t at = lpd_header_encode(h, hdr);
    h->header_len = (uint32_t)at;
    size_t n = at + z[0].n + z[1].n + z[2].n;
    uint8_t *p = malloc(n);
    if (!p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory for a delta of %zu bytes", n);
    memcpy(p, hdr, at);
    for (int i = 0; i < 3; i++) {
        if (z[i].n) /* an empty stream has no bytes (and may have no buffer) */
            memcpy(p + at, z[i].p, z[i].n);
        at += z[i].n;
    }
    *delta = p;
    *len = n;
    return LP_OK;
}

typedef struct {
    const uint8_t *old, *nw;
    uint8_t *old_t, *new_t; /* transformed copies, or NULL */
    lpd_ctrl_list ctrl;
    blob raw[3], z[3];
} work;

static void work_free(work *w)
{
    free(w->old_t);
    free(w->new_t);
    free(w->ctrl.v);
    for (int i = 0; i < 3; i++) {
        free(w->raw[i].p);
        free(w->z[i].p);
    }
}

static lp_status transform(work *w, size_t old_len, size_t new_len, lp_error *err)
{
    w->old_t = malloc(old_len + 1);
    w->new_t = malloc(new_len + 1);
    if (!w->old_t || !w->new_t)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory for the transformed inputs");
    memcpy(w->old_t, w->old, old_len);
    memcpy(w->new_t, w->nw, new_len);
    lpd_x86_encode(w->old_t, old_len, 0);
    lpd_x86_encode(w->new_t, new_len, 0);
    return LP_OK;
}

/* Tries the dictionary-frames coding and keeps it when smaller. */
static lp_status try_dict(work *w, size_t old_len, size_t new_len, int level, int threads,
                          lp_delta_lzma lz, int have, lp_delta_header *h, lp_delta_stats *s,
                          lp_error *err)
{
    /* the matched coding's working copies are not needed any more: only its
     * compressed streams, in case they stay the smaller */
    free(w->old_t);
    free(w->new_t);
    free(w->ctrl.v);
    w->old_t = w->new_t = NULL;
    w->ctrl = (lpd_ctrl_list){0};
    for (int i = 0; i < 3; i++) {
        free(w->raw[i].p);
        w->raw[i].p = NULL;
    }
    double t = lpd_now();
    blob raw[3] = {{0}}, z[3] = {{0}};
    lp_status st = dict_frames(w->old, old_len, w->nw, new_len, level, threads, lz, raw, z,
                               err);
    s->t_dict = lpd_now() - t;
    s->dict_tried = 1;
    s->dict_size = total(z);
    if (!st && (!have || total(z) < total(w->z))) { /* no coding yet (ONLY), or smaller */
        blobs_free(w->z);
        for (int i = 0; i < 3; i++) {
            w->z[i] = z[i];
            w->raw[i].n = raw[i].n;
        }
        h->flags = LP_DELTA_FLAG_DICT_FRAMES;
        h->control_raw = raw[0].n;
        h->diff_raw = raw[1].n;
        h->extra_raw = raw[2].n;
        s->dict_kept = 1;
    } else {
        blobs_free(z);
    }
    return st;
}

static lp_status check_args(const uint8_t *old, size_t old_len, const uint8_t *nw,
                            size_t new_len, int level, lp_error *err)
{
    if ((!old && old_len) || (!nw && new_len))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "delta: NULL input buffer");
    if (level < 1 || level > 22)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "delta: level %d is not in 1..22", level);
    if (old_len > LP_DELTA_MAX_SIZE || new_len > LP_DELTA_MAX_SIZE)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "delta: %s file of %zu bytes exceeds the "
                            "limit of %llu", old_len > LP_DELTA_MAX_SIZE ? "old" : "new",
                            old_len > LP_DELTA_MAX_SIZE ? old_len : new_len,
                            (unsigned long long)LP_DELTA_MAX_SIZE);
    return LP_OK;
}

static lp_status make(work *w, size_t old_len, size_t new_len, const lp_delta_options *opt,
                      lp_delta_header *h, lp_delta_stats *s, lp_error *err)
{
    int level = opt && opt->level ? opt->level : 19;
    int dict_level = opt && opt->dict_level ? opt->dict_level : 22;
    int threads = opt && opt->threads ? opt->threads : 1;
    lp_status st = check_args(w->old, old_len, w->nw, new_len, level, err);
    if (!st && (dict_level < 1 || dict_level > 22))
        st = lp_error_set(err, LP_ERR_INVALID_ARG, "delta: dictionary level %d is not in 1..22",
                          dict_level);
    if (!st && (threads < 1 || threads > LP_DELTA_THREADS_MAX))
        st = lp_error_set(err, LP_ERR_INVALID_ARG, "delta: %d threads is not in 1..%d", threads,
                          LP_DELTA_THREADS_MAX);
    double t = lpd_now();
    uint8_t d[2][LP_HASH_MAX_LEN];
    if (!st)
        st = lp_hash_buf(LP_HASH_SHA256, w->old, old_len, d[0], err);
    if (!st)
        st = lp_hash_buf(LP_HASH_SHA256, w->nw, new_len, d[1], err);
    s->t_hash = lpd_now() - t;
    if (st)
        return st;
    memcpy(h->old_sha256, d[0], 32);
    memcpy(h->new_sha256, d[1], 32);
    lpd_xxh128(w->old, old_len, h->old_xxh128);
    lpd_xxh128(w->nw, new_len, h->new_xxh128);
    lp_delta_dict dm = opt ? opt->dict : LP_DELTA_DICT_AUTO;
    lp_delta_lzma lz = opt ? opt->lzma : LP_DELTA_LZMA_AUTO;
    if (dm == LP_DELTA_DICT_ONLY) {
        if (old_len > 0 && new_len > 0)
            return try_dict(w, old_len, new_len, dict_level, threads, lz, 0, h, s, err);
        /* nothing to take from an empty base, or nothing to make: one copy */
        t = lpd_now();
        one_copy(new_len, w->raw, w->z);
        st = compress(w->nw, new_len, level, NULL, 0, &w->z[2], err);
        h->control_raw = w->raw[0].n;
        h->extra_raw = w->raw[2].n;
        s->t_compress = lpd_now() - t;
        return st;
    }
    lp_delta_x86 x = opt ? opt->x86 : LP_DELTA_X86_AUTO;
    s->x86 = x == LP_DELTA_X86_ON || (x == LP_DELTA_X86_AUTO && lpd_x86_detect(w->old, old_len) &&
                                      lpd_x86_detect(w->nw, new_len));
    t = lpd_now();
    if (s->x86 && (st = transform(w, old_len, new_len, err)))
        return st;
    s->t_transform = lpd_now() - t;
    const uint8_t *o = s->x86 ? w->old_t : w->old, *n = s->x86 ? w->new_t : w->nw;
    st = lpd_match(o, old_len, n, new_len, &w->ctrl, &s->t_sort, &s->t_match, err);
    if (!st)
        st = build_streams(o, n, &w->ctrl, &w->raw[0], &w->raw[1], &w->raw[2], s, err);
    t = lpd_now();
    h->flags = s->x86 ? LP_DELTA_FLAG_X86 : 0;
    if (!st)
        st = compress_all(w->raw, w->old, old_len, w->nw, new_len, level, w->z, &h->flags,
                          err);
    s->t_compress = lpd_now() - t;
    uint64_t kept = total(w->z);
    if (!st && old_len > 0 && new_len > 0 &&
        (dm == LP_DELTA_DICT_ON || (dm == LP_DELTA_DICT_AUTO && kept > new_len / 8)))
        st = try_dict(w, old_len, new_len, dict_level, threads, lz, 1, h, s, err);
    h->control_raw = w->raw[0].n;
    h->diff_raw = w->raw[1].n;
    h->extra_raw = w->raw[2].n;
    return st;
}

lp_status lp_delta_make(const uint8_t *old, size_t old_len, const uint8_t *new_, size_t new_len,
                        const lp_delta_options *opt, uint8_t **delta, size_t *delta_len,
                        lp_delta_stats *stats, lp_error *err)
{
    *delta = NULL;
    *delta_len = 0;
    double t0 = lpd_now();
    work w = {.old = old, .nw = new_};
    lp_delta_stats s = {0};
    lp_delta_header h = {.version = LP_DELTA_VERSION, .old_size = old_len, .new_size = new_len};
    lp_status st = make(&w, old_len, new_len, opt, &h, &s, err);
    if (!st)
        st = assemble(&h, w.z, delta, delta_len, err);
    work_free(&w);
    if (st)
        return st;
    if (s.dict_tried)
        s.dict_size += h.header_len;
    s.old_size = old_len;
    s.new_size = new_len;
    s.delta_size = *delta_len;
    s.control_len = h.control_len;
    s.diff_len = h.diff_len;
    s.extra_len = h.extra_len;
    s.t_total = lpd_now() - t0;
    if (stats)
        *stats = s;
    return LP_OK;
}
