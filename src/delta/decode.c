/*
 * decode.c — the streaming apply shared by every lp_delta_apply_* entry.
 *
 * Order of checks: header (format.c), base size and the expected result
 * digest, memory bound of the extra stream, the base's digest, then the
 * control entries one by one.  Every entry's lengths are checked against
 * what is left of the result and of the base before any byte is touched,
 * with arithmetic that cannot wrap; seeks must land inside the base.
 *
 * The result is built in one LP_DELTA_BLOCK buffer aligned on block
 * boundaries of the result: when full it is un-transformed (x86 deltas),
 * hashed and handed to the writer.  Base bytes of an x86 delta are the
 * mapped bytes with the rewritten operands patched in: the list of those
 * operands is built for a base block when it is first read (one scan of the
 * block) and kept, up to LPD_INDEX_MAX bytes of lists (then all are dropped
 * and rebuilt as needed), so that matches may jump anywhere in the base at
 * the cost of a copy of the bytes they read.  Added bytes are produced run by run of the diff stream: a zero run
 * is a copy of the base, a literal run is added to the base eight bytes at a
 * time.  Memory: the block buffers, three stream decoders (stream.c) and
 * nothing proportional to the files.
 */
#include "delta/stream.h"
#include "livepush/hash.h"

#include <lzma.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Bases of at least this many bytes are hashed on a thread of their own, and
 * results of at least this many are finished by one (the output pipe). */
#define LPD_BASE_HASH_THREAD_MIN ((size_t)1 << 20)
#define LPD_PIPE_MIN ((uint64_t)1 << 20)

/* Operand list of one base block (see lpd_x86_operands); ops NULL: not built. */
typedef struct {
    uint16_t *ops;
    uint32_t n;
    uint32_t cur; /* where the last patch of this block stopped (a hint) */
    int lent;     /* ops is the prebuilt list (pre_ops), not this thread's */
} blk_ops;

/* Operand lists built ahead, block after block from the first, by the thread
 * that hashes the base (an x86 delta whose result has a sink), up to half of
 * LPD_INDEX_MAX; the apply uses a block's when it is there (published with
 * a release store) and builds its own otherwise, within the other half. */
typedef struct {
    uint16_t *ops; /* NULL until published */
    uint32_t n;
} pre_ops;

typedef struct {
    const uint8_t *old;
    size_t old_len;
    int x86;
    blk_ops *idx;        /* one per base block (x86 only) */
    size_t nblk, idx_bytes;
    pre_ops *pre;        /* nblk lists built ahead, or NULL */
    int pre_stop;        /* tells their builder to stop (atomic) */
    uint16_t *ops_tmp;   /* room for one block's list while it is built */
    uint8_t *scratch;    /* transformed base bytes of an add */
    uint8_t *out;
    size_t out_n;
    uint64_t out_base, new_pos, old_pos;
    /* placing: blocks are written at place_at (advancing it), not hashed:
     * the segments after a run of LZMA pieces, made while the helper still
     * decodes its last piece and hashed after it (lzma_pair_end) */
    int placing;
    uint64_t place_at;
    uint64_t zeros, lits; /* what is left of the current diff run record */
    lp_delta_header h;
    const uint8_t *expect; /* the result's SHA-256 the caller trusts, or NULL */
    lpd_digest *hash;    /* of the result (digest.c) */
    lp_delta_write_fn write;
    void *wctx;
    const lpd_sink *sink; /* or NULL: the result goes to write, in order */
    struct out_pipe *pipe; /* or NULL: flush finishes blocks itself */
    lpd_read_fn read;
    void *rctx;
    lpd_stream s[3];
} app;

static void idx_drop(app *a)
{
    for (size_t i = 0; a->idx && i < a->nblk; i++) {
        if (!a->idx[i].lent)
            free(a->idx[i].ops);
        a->idx[i].ops = NULL;
        a->idx[i].lent = 0;
    }
    a->idx_bytes = 0;
}

/* Operand list of the base block blk, built on first use; NULL when out of
 * memory. */
static blk_ops *block_ops(app *a, uint64_t blk)
{
    blk_ops *b = &a->idx[blk];
    if (b->ops)
        return b;
    uint16_t *lent = a->pre ? __atomic_load_n(&a->pre[blk].ops, __ATOMIC_ACQUIRE) : NULL;
    if (lent) {
        *b = (blk_ops){.ops = lent, .n = a->pre[blk].n, .lent = 1};
        return b;
    }
    uint64_t start = blk * LP_DELTA_BLOCK;
    size_t len = a->old_len - start < LP_DELTA_BLOCK ? (size_t)(a->old_len - start)
                                                     : LP_DELTA_BLOCK;
    size_t k = lpd_x86_operands(a->old + start, len, a->ops_tmp);
    size_t bytes = (k + 1) * sizeof *b->ops;
    if (a->idx_bytes + bytes > (a->pre ? LPD_INDEX_MAX / 2 : LPD_INDEX_MAX))
        idx_drop(a);
    if (!(b->ops = malloc(bytes)))
        return NULL;
    memcpy(b->ops, a->ops_tmp, k * sizeof *b->ops);
    b->n = (uint32_t)k;
    b->cur = 0;
    a->idx_bytes += bytes;
    return b;
}

/* A made block finished: un-transformed (x86 deltas), hashed, written. */
static lp_status finish_block(app *a, uint8_t *b, size_t n, uint64_t at, lp_error *err)
{
    if (a->x86)
        lpd_x86_decode(b, n, at);
    lp_status st = lpd_digest_update(a->hash, b, n, err);
    if (!st)
        st = a->sink ? a->sink->write_at(a->sink->ctx, at, b, n, err)
                     : a->write(a->wctx, b, n, err);
    return st;
}

/* Hashes len bytes of the result at offset `at`, read back from the sink
 * through buf (a block). */
static lp_status hash_back(app *a, uint8_t *buf, uint64_t at, uint64_t len, lp_error *err)
{
    lp_status st = LP_OK;
    for (uint64_t off = 0; !st && off < len;) {
        size_t n = len - off < LP_DELTA_BLOCK ? (size_t)(len - off) : LP_DELTA_BLOCK;
        st = a->sink->read_at(a->sink->ctx, at + off, buf, n, err);
        if (!st)
            st = lpd_digest_update(a->hash, buf, n, err);
        off += n;
    }
    return st;
}

/* ---- the output pipe ----
 * With a sink, the made blocks are finished (finish_block) by a second
 * thread while the next ones are made: a ring of PIPE_N blocks, a->out being
 * the one the maker fills.  The finisher owns a->hash while the pipe runs;
 * pipe_drain waits until it has finished every block handed over. */
#define PIPE_N 4

typedef struct out_pipe {
    app *a;
    uint8_t *ring[PIPE_N];
    uint64_t len[PIPE_N];
    uint64_t at[PIPE_N];
    int back[PIPE_N];  /* a job to read len bytes back from the sink at `at`
                        * and hash them (placed there by another thread) */
    size_t head, tail; /* blocks handed over, blocks finished */
    int stop;
    lp_status st;      /* the finisher's failure */
    lp_error err;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t tid;
} out_pipe;

static void *pipe_run(void *arg)
{
    out_pipe *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->tail == p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->tail == p->head)
            break;
        size_t i = p->tail % PIPE_N;
        lp_status st = p->st;
        pthread_mutex_unlock(&p->mu);
        if (!st && !p->back[i])
            st = finish_block(p->a, p->ring[i], (size_t)p->len[i], p->at[i], &p->err);
        if (!st && p->back[i])
            st = hash_back(p->a, p->ring[i], p->at[i], p->len[i], &p->err);
        pthread_mutex_lock(&p->mu);
        p->st = st;
        p->tail++;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static lp_status pipe_failed(out_pipe *p, lp_error *err)
{
    if (err)
        *err = p->err;
    return p->st;
}

/* Hands a->out over (a made block; or with back, a job to hash the len
 * bytes at result offset `at` read back from the sink, using a->out as its
 * buffer) and makes the next free block a->out. */
static lp_status pipe_put(app *a, int back, uint64_t at, uint64_t len, lp_error *err)
{
    out_pipe *p = a->pipe;
    pthread_mutex_lock(&p->mu);
    size_t i = p->head % PIPE_N;
    p->len[i] = len;
    p->at[i] = at;
    p->back[i] = back;
    p->head++;
    pthread_cond_broadcast(&p->cv);
    while (p->head - p->tail >= PIPE_N && !p->st)
        pthread_cond_wait(&p->cv, &p->mu);
    lp_status st = p->st;
    pthread_mutex_unlock(&p->mu);
    a->out = p->ring[p->head % PIPE_N];
    return st ? pipe_failed(p, err) : LP_OK;
}

static lp_status pipe_drain(app *a, lp_error *err)
{
    out_pipe *p = a->pipe;
    if (!p)
        return LP_OK;
    pthread_mutex_lock(&p->mu);
    while (p->tail != p->head)
        pthread_cond_wait(&p->cv, &p->mu);
    lp_status st = p->st;
    pthread_mutex_unlock(&p->mu);
    return st ? pipe_failed(p, err) : LP_OK;
}

/* Starts the pipe (a->out becomes its first block); LP_OK without one when
 * a thread cannot be had. */
static lp_status pipe_start(app *a, lp_error *err)
{
    out_pipe *p = calloc(1, sizeof *p);
    if (!p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    p->a = a;
    for (size_t i = 0; i < PIPE_N; i++)
        if (!(p->ring[i] = malloc(LP_DELTA_BLOCK))) {
            for (size_t j = 0; j < i; j++)
                free(p->ring[j]);
            free(p);
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->tid, NULL, pipe_run, p) != 0) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        for (size_t i = 0; i < PIPE_N; i++)
            free(p->ring[i]);
        free(p);
        return LP_OK;
    }
    a->pipe = p;
    a->out = p->ring[0];
    return LP_OK;
}

/* Stops the pipe (after a drain, or on failure with blocks left: they are
 * not finished); a->out is then NULL. */
static void pipe_stop(app *a)
{
    out_pipe *p = a->pipe;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    if (!p->st)
        p->st = LP_ERR_STATE; /* blocks still queued are dropped, not finished */
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->tid, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    for (size_t i = 0; i < PIPE_N; i++)
        free(p->ring[i]);
    free(p);
    a->pipe = NULL;
    a->out = NULL;
}

static lp_status flush(app *a, lp_error *err)
{
    if (a->out_n == 0)
        return LP_OK;
    lp_status st;
    if (a->placing) {
        st = a->sink->write_at(a->sink->ctx, a->place_at, a->out, a->out_n, err);
        a->place_at += a->out_n;
        a->out_n = 0;
        return st;
    }
    st = a->pipe ? pipe_put(a, 0, a->out_base, a->out_n, err)
                 : finish_block(a, a->out, a->out_n, a->out_base, err);
    a->out_base += a->out_n;
    a->out_n = 0;
    return st;
}

/* Adds b[0..n) to o[0..n) byte by byte (mod 256), eight bytes at a time. */
static void add_bytes(uint8_t *restrict o, const uint8_t *restrict b, size_t n)
{
    const uint64_t hi = 0x8080808080808080ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, o + i, 8);
        memcpy(&y, b + i, 8);
        x = ((x & ~hi) + (y & ~hi)) ^ ((x ^ y) & hi);
        memcpy(o + i, &x, 8);
    }
    for (; i < n; i++)
        o[i] = (uint8_t)(o[i] + b[i]);
}

/* dst[0..n) = base bytes from a->old_pos (plus dst's own bytes when add).
 * Base bytes of an x86 delta are the mapped bytes with the block's rewritten
 * operands patched in: straight into dst for a copy, through the scratch
 * block for an add. */
static lp_status from_base(app *a, uint8_t *dst, size_t n, int add, lp_error *err)
{
    if (!a->x86) {
        if (add)
            add_bytes(dst, a->old + a->old_pos, n);
        else
            memcpy(dst, a->old + a->old_pos, n);
        a->old_pos += n;
        return LP_OK;
    }
    for (size_t done = 0; done < n;) {
        uint64_t pos = a->old_pos, blk = pos / LP_DELTA_BLOCK, start = blk * LP_DELTA_BLOCK;
        size_t in_blk = (size_t)(pos - start), m = n - done;
        if (m > LP_DELTA_BLOCK - in_blk)
            m = LP_DELTA_BLOCK - in_blk;
        blk_ops *b = block_ops(a, blk);
        if (!b)
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory for a base block");
        uint8_t *t = add ? a->scratch : dst + done;
        memcpy(t, a->old + pos, m);
        lpd_x86_patch(a->old + start, start, b->ops, b->n, &b->cur, in_blk, t, m);
        if (add)
            add_bytes(dst + done, t, m);
        done += m;
        a->old_pos += m;
    }
    return LP_OK;
}

/* Starts the next run-length record of the diff stream. */
static lp_status diff_record(app *a, lp_error *err)
{
    lpd_stream *s = &a->s[1];
    lp_status st = lpd_stream_varint(s, &a->zeros, err);
    if (!st)
        st = lpd_stream_varint(s, &a->lits, err);
    if (!st && a->zeros == 0 && a->lits == 0)
        st = lp_error_set(err, LP_ERR_MALFORMED, "diff stream: empty run record");
    if (!st && (a->zeros > a->h.new_size || a->lits > a->h.new_size))
        st = lp_error_set(err, LP_ERR_MALFORMED, "diff stream: run longer than the result");
    return st;
}

/* n added bytes into dst: base + diff, run by run. */
static lp_status add_run(app *a, uint8_t *dst, size_t n, lp_error *err)
{
    while (n > 0) {
        lp_status st = LP_OK;
        if (a->zeros == 0 && a->lits == 0 && (st = diff_record(a, err)))
            return st;
        size_t k = n;
        if (a->zeros) {
            k = a->zeros < k ? (size_t)a->zeros : k;
            st = from_base(a, dst, k, 0, err);
            a->zeros -= k;
        } else {
            k = a->lits < k ? (size_t)a->lits : k;
            st = lpd_stream_read(&a->s[1], dst, k, err);
            if (!st)
                st = from_base(a, dst, k, 1, err);
            a->lits -= k;
        }
        if (st)
            return st;
        dst += k;
        n -= k;
    }
    return LP_OK;
}

static lp_status do_add(app *a, uint64_t len, lp_error *err)
{
    while (len > 0) {
        size_t k = LP_DELTA_BLOCK - a->out_n;
        if (k > len)
            k = (size_t)len;
        lp_status st = add_run(a, a->out + a->out_n, k, err);
        a->out_n += k;
        len -= k;
        if (!st && a->out_n == LP_DELTA_BLOCK)
            st = flush(a, err);
        if (st)
            return st;
    }
    return LP_OK;
}

static lp_status do_copy(app *a, uint64_t len, lp_error *err)
{
    while (len > 0) {
        size_t k = LP_DELTA_BLOCK - a->out_n;
        if (k > len)
            k = (size_t)len;
        lp_status st = lpd_stream_read(&a->s[2], a->out + a->out_n, k, err);
        a->out_n += k;
        len -= k;
        if (!st && a->out_n == LP_DELTA_BLOCK)
            st = flush(a, err);
        if (st)
            return st;
    }
    return LP_OK;
}

/* Hands p[0..n) to the result, block by block. */
static lp_status emit(app *a, const uint8_t *p, size_t n, lp_error *err)
{
    while (n > 0) {
        size_t k = LP_DELTA_BLOCK - a->out_n;
        if (k > n)
            k = n;
        memcpy(a->out + a->out_n, p, k);
        a->out_n += k;
        p += k;
        n -= k;
        if (a->out_n == LP_DELTA_BLOCK) {
            lp_status st = flush(a, err);
            if (st)
                return st;
        }
    }
    return LP_OK;
}

static lp_status lzma_bad(lp_error *err, const char *what, lzma_ret r)
{
    return lp_error_set(err, r == LZMA_MEM_ERROR ? LP_ERR_NOMEM : LP_ERR_MALFORMED,
                        "extra stream: LZMA segment %s (liblzma code %d)", what, (int)r);
}

/* Where an LZMA segment's bytes come from and where its result goes: from
 * the extra stream (x) or read at delta offset src through inbuf; into the
 * result blocks (hashed and written in order), or placed at result offset
 * dst through outbuf (hashed later, see lzma_pair). */
typedef struct {
    app *a;
    lpd_stream *x;
    uint64_t src, dst;
    uint8_t *inbuf, *outbuf;
    lzma_stream *z; /* a decoder kept between segments (its dictionary buffer
                     * is reused when the next one's is as large), or NULL */
} lz_io;

#define LZ_IN_CAP 65536u
#define LZ_OUT_CAP (4u * LP_DELTA_BLOCK)

static lp_status lz_in(lz_io *io, uint64_t left, const uint8_t **p, size_t *n, lp_error *err)
{
    if (io->x)
        return lpd_stream_raw(io->x, left < SIZE_MAX ? (size_t)left : SIZE_MAX, p, n, err);
    size_t k = left < LZ_IN_CAP ? (size_t)left : LZ_IN_CAP;
    lp_status st = io->a->read(io->a->rctx, io->src, io->inbuf, k, err);
    if (st)
        return lp_error_prefix(err, st, "extra stream: LZMA segment");
    io->src += k;
    *p = io->inbuf;
    *n = k;
    return LP_OK;
}

static size_t lz_room(lz_io *io, uint8_t **buf)
{
    if (io->outbuf) {
        *buf = io->outbuf;
        return LZ_OUT_CAP;
    }
    *buf = io->a->out + io->a->out_n;
    return LP_DELTA_BLOCK - io->a->out_n;
}

static lp_status lz_made(lz_io *io, size_t n, lp_error *err)
{
    app *a = io->a;
    if (io->outbuf) {
        lp_status st = a->sink->write_at(a->sink->ctx, io->dst, io->outbuf, n, err);
        io->dst += n;
        return st;
    }
    a->out_n += n;
    lp_status st = io->x ? lpd_stream_produced(io->x, n, err) : LP_OK;
    if (!st && a->out_n == LP_DELTA_BLOCK)
        st = flush(a, err);
    return st;
}

/* LZMA's dictionary buffer (tens of MiB, read at random by every match) in
 * huge pages where the system gives them on request (transparent huge pages
 * in "madvise" mode): a 22 MiB dictionary then takes 11 pages and 11 faults
 * instead of 5632 of each, and its reads miss the TLB far less. */
#define LZ_HUGE ((size_t)2 << 20)

static void *lz_alloc(void *opaque, size_t nmemb, size_t size)
{
    (void)opaque;
    if (size && nmemb > SIZE_MAX / size)
        return NULL;
    size_t n = nmemb * size;
    if (n < 4 * LZ_HUGE)
        return malloc(n);
    size_t r = (n + LZ_HUGE - 1) / LZ_HUGE * LZ_HUGE;
    void *p = aligned_alloc(LZ_HUGE, r);
    if (p)
        madvise(p, r, MADV_HUGEPAGE); /* a hint: without it, small pages */
    return p;
}

static void lz_free(void *opaque, void *ptr)
{
    (void)opaque;
    free(ptr);
}

static const lzma_allocator lz_allocator = {lz_alloc, lz_free, NULL};

/* An LZMA segment (see delta_priv.h): exactly g->clen bytes of the extra
 * stream decoded into exactly g->len bytes of the result, the stream's end
 * mark included, with the base region as preset dictionary.  Memory: the
 * decoder's dictionary of g->dict bytes (checked against LPD_LZMA_DICT_MAX
 * when the table was read). */
static lp_status lzma_decode(lz_io *io, const lpd_seg *g, lp_error *err)
{
    app *a = io->a;
    lzma_options_lzma o;
    memset(&o, 0, sizeof o);
    if (lzma_lzma_preset(&o, 6))
        return lzma_bad(err, "options", LZMA_PROG_ERROR);
    o.dict_size = (uint32_t)g->dict;
    o.preset_dict = g->old_len ? a->old + g->old_off : NULL;
    o.preset_dict_size = (uint32_t)g->old_len;
    lzma_filter f[2] = {{LZMA_FILTER_LZMA2, &o}, {LZMA_VLI_UNKNOWN, NULL}};
    lzma_stream own = LZMA_STREAM_INIT, *zp = io->z ? io->z : &own;
    zp->allocator = &lz_allocator;
    lzma_ret r = lzma_raw_decoder(zp, f);
    zp->next_in = NULL; /* nothing of another segment's is left in it */
    zp->avail_in = 0;
    if (r != LZMA_OK)
        return lzma_bad(err, "decoder", r);
    uint64_t in_left = g->clen, out_left = g->len;
    uint8_t spare;
    lp_status st = LP_OK;
    while (!st) {
        if (zp->avail_in == 0 && in_left > 0) {
            const uint8_t *p;
            size_t n;
            if ((st = lz_in(io, in_left, &p, &n, err)))
                break;
            zp->next_in = p;
            zp->avail_in = n;
            in_left -= n;
        }
        /* room for the rest of the segment, or one spare byte that must
         * stay empty (the stream must end exactly there) */
        uint8_t *buf;
        size_t room = lz_room(io, &buf);
        if (room > out_left)
            room = (size_t)out_left;
        zp->next_out = room ? buf : &spare;
        zp->avail_out = room ? room : 1;
        r = lzma_code(zp, LZMA_RUN);
        size_t made = (room ? room : 1) - zp->avail_out;
        if (!room && made) {
            st = lzma_bad(err, "holds more bytes than the segment", LZMA_DATA_ERROR);
            break;
        }
        out_left -= made;
        if (made && (st = lz_made(io, made, err)))
            break;
        if (r == LZMA_STREAM_END) {
            if (out_left || in_left || zp->avail_in)
                st = lzma_bad(err, out_left ? "ends before the segment does"
                                            : "ends before its declared length", r);
            break;
        }
        if (r != LZMA_OK) {
            st = lzma_bad(err, r == LZMA_BUF_ERROR ? "is truncated" : "is corrupted", r);
            break;
        }
    }
    lzma_end(&own);
    return st;
}

static lp_status lzma_segment(app *a, const lpd_seg *g, lp_error *err)
{
    lz_io io = {.a = a, .x = &a->s[2]};
    lp_status st = lpd_stream_raw_start(io.x, err);
    return st ? st : lzma_decode(&io, g, err);
}

/* ---- two LZMA segments at once ----
 * A run of LZMA segments whose bytes follow each other in the extra stream
 * (so that each one's place in the delta and in the result is known) is
 * shared by the calling thread and one helper, each taking the next segment
 * not yet taken.  The caller decodes a segment straight into the result
 * blocks when every one before it is hashed; otherwise the segment is placed
 * at its offset of the sink, and hashed, in order, by reading it back. */
typedef struct {
    app *a;
    const lpd_seg *g;
    size_t k, hashed;
    uint64_t src[LPD_SEG_MAX], dst[LPD_SEG_MAX];
    int taken[LPD_SEG_MAX];  /* by one of the two threads */
    int helpers[LPD_SEG_MAX]; /* planned for the helper (else the calling thread) */
    uint64_t clen, len;      /* of the whole run: bytes of the stream, of the result */
    int placed[LPD_SEG_MAX]; /* decoded and written to the sink */
    int failed;
    lp_error werr;           /* the helper's failure */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t tid;
    int started;             /* the helper runs */
} lz_pair;

/* The segment that the calling thread (helper = 0) or the helper (helper =
 * 1) decodes next, or k when none is left (or one failed): the first of
 * those planned for it (pair_plan) not yet taken, else the last of the
 * other's (taken over when the plan's estimate was off). */
static size_t pair_take(lz_pair *p, int helper)
{
    pthread_mutex_lock(&p->mu);
    size_t m = p->k, other = p->k;
    for (size_t i = 0; i < p->k && !p->failed; i++) {
        if (p->taken[i])
            continue;
        if (p->helpers[i] == helper && m == p->k)
            m = i;
        if (p->helpers[i] != helper)
            other = i;
    }
    if (m == p->k)
        m = other;
    if (m < p->k)
        p->taken[m] = 1;
    pthread_mutex_unlock(&p->mu);
    return m;
}

/* Relative cost of decoding an LZMA segment, per byte of its stream, to
 * that of any other segment per byte it makes (measured on executables:
 * about 110 and 8 ns). */
#define LPD_LZMA_COST 14

/* Plans which thread decodes which segment of the run: the longest first
 * (by bytes of stream), each to the thread with less to do so far, the
 * calling thread starting with `other` bytes of segments to make besides
 * the run (before it, while the helper starts; after it, while the helper
 * ends), so that both end together. */
static void pair_plan(lz_pair *p, uint64_t other)
{
    uint64_t load[2] = {other, 0};
    int done[LPD_SEG_MAX] = {0};
    for (size_t n = 0; n < p->k; n++) {
        size_t m = p->k;
        for (size_t i = 0; i < p->k; i++)
            if (!done[i] && (m == p->k || p->g[i].clen > p->g[m].clen))
                m = i;
        done[m] = 1;
        int h = load[1] <= load[0];
        p->helpers[m] = h;
        load[h] += p->g[m].clen * LPD_LZMA_COST;
    }
}

static void pair_done(lz_pair *p, size_t m, lp_status st)
{
    pthread_mutex_lock(&p->mu);
    p->placed[m] = !st;
    p->failed |= st != LP_OK;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static lp_status pair_place(lz_pair *p, size_t m, uint8_t *bufs, lzma_stream *z, lp_error *err)
{
    lz_io io = {.a = p->a, .src = p->src[m], .dst = p->dst[m], .inbuf = bufs,
                .outbuf = bufs + LZ_IN_CAP, .z = z};
    return lzma_decode(&io, &p->g[m], err);
}

static void *pair_helper(void *arg)
{
    lz_pair *p = arg;
    uint8_t *bufs = malloc(LZ_IN_CAP + LZ_OUT_CAP);
    lp_status st = bufs ? LP_OK : lp_error_set(&p->werr, LP_ERR_NOMEM, "out of memory");
    lzma_stream z = LZMA_STREAM_INIT;
    for (size_t m; !st && (m = pair_take(p, 1)) < p->k;) {
        st = pair_place(p, m, bufs, &z, &p->werr);
        pair_done(p, m, st);
    }
    lzma_end(&z);
    if (st) {
        pthread_mutex_lock(&p->mu);
        p->failed = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    free(bufs);
    return NULL;
}

/* Hashes the placed segments that come next in the result, reading them
 * back from the sink (handed to the output pipe: it hashes them after the
 * blocks before them); with wait, waits for the helper's until all are. */
static lp_status pair_hash(lz_pair *p, int wait, lp_error *err)
{
    app *a = p->a;
    lp_status st = LP_OK;
    while (!st && p->hashed < p->k) {
        pthread_mutex_lock(&p->mu);
        while (wait && !p->placed[p->hashed] && !p->failed)
            pthread_cond_wait(&p->cv, &p->mu);
        int ready = p->placed[p->hashed];
        pthread_mutex_unlock(&p->mu);
        if (!ready)
            break;
        st = flush(a, err); /* the bytes before it, if a block was started */
        uint64_t len = p->g[p->hashed].len;
        if (!st) /* by the pipe's thread when there is one, after what it has */
            st = a->pipe ? pipe_put(a, 1, p->dst[p->hashed], len, err)
                         : hash_back(a, a->out, p->dst[p->hashed], len, err);
        a->out_base += len;
        p->hashed++;
    }
    return st;
}

/* Ends a run: waits for the helper, hashes what is left of the run in
 * order, then the bytes placed after it (a->placing, up to a->place_at);
 * with failed (a failure already reported) only waits and frees. */
static lp_status lzma_pair_end(lz_pair *p, int failed, lp_error *err)
{
    app *a = p->a;
    if (failed) { /* the helper stops after the piece it decodes */
        pthread_mutex_lock(&p->mu);
        p->failed = 1;
        pthread_mutex_unlock(&p->mu);
    }
    lp_status st = failed ? LP_ERR_STATE : pair_hash(p, 1, err);
    if (p->started)
        pthread_join(p->tid, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    if (!st && p->failed) {
        if (err)
            *err = p->werr;
        st = p->werr.code;
    }
    uint64_t run_end = p->dst[0] + p->len;
    if (!st && a->placing) {
        st = flush(a, err); /* placed too */
        a->placing = 0;
        uint64_t n = a->place_at - run_end;
        if (!st && n)
            st = a->pipe ? pipe_put(a, 1, run_end, n, err) : hash_back(a, a->out, run_end, n, err);
        a->out_base += n;
    }
    a->placing = 0;
    free(p);
    return st;
}

/* Segments g[0..k) (k >= 2, all LZMA) decoded by this thread and a helper:
 * returns once this thread finds none left to take, the helper perhaps
 * still decoding its last; *pp is then the run, for lzma_pair_end (NULL on
 * failure, everything ended).  The extra stream is left after the run. */
/* A run of the LZMA segments g[0..k) whose streams start at delta offset src
 * and whose bytes start at result offset dst, the helper started (the run's
 * streams checked to lie within the extra stream's region first).
 * LP_ERR_MALFORMED, LP_ERR_NOMEM. */
static lp_status pair_open(app *a, const lpd_seg *g, size_t k, uint64_t src, uint64_t dst,
                           uint64_t other, lz_pair **pp, lp_error *err)
{
    lz_pair *p = calloc(1, sizeof *p);
    if (!p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    *p = (lz_pair){.a = a, .g = g, .k = k};
    for (size_t m = 0; m < k; m++) {
        p->src[m] = src + p->clen;
        p->dst[m] = dst + p->len;
        p->clen += g[m].clen;
        p->len += g[m].len;
    }
    const lpd_stream *x = &a->s[2];
    if (src > x->end || p->clen > x->end - src) {
        free(p);
        return lp_error_set(err, LP_ERR_MALFORMED, "extra stream: ends inside an LZMA segment "
                            "(truncated)");
    }
    pair_plan(p, other);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    /* without a helper the calling thread takes every segment */
    p->started = pthread_create(&p->tid, NULL, pair_helper, p) == 0;
    *pp = p;
    return LP_OK;
}

/* Segments g[0..k) (k >= 2, all LZMA) decoded by this thread and a helper
 * (the run opened already when early is not NULL, see early_run): returns
 * once this thread finds none left to take, the helper perhaps still
 * decoding its last; *pp is then the run, for lzma_pair_end (NULL on
 * failure, everything ended).  The extra stream is left after the run. */
static lp_status lzma_pair(app *a, const lpd_seg *g, size_t k, uint64_t after, lz_pair *early,
                           lz_pair **pp, lp_error *err)
{
    *pp = NULL;
    lpd_stream *x = &a->s[2];
    lz_pair *p = early;
    lp_status st = lpd_stream_raw_start(x, err);
    if (!st && p && (p->src[0] != lpd_stream_raw_pos(x) || p->dst[0] != a->out_base + a->out_n))
        st = lp_error_set(err, LP_ERR_MALFORMED, "extra stream: the segments before an LZMA "
                          "run hold other lengths than their frames declare");
    if (!st && !p)
        st = pair_open(a, g, k, lpd_stream_raw_pos(x), a->out_base + a->out_n, after, &p, err);
    uint8_t *bufs = st ? NULL : malloc(LZ_IN_CAP + LZ_OUT_CAP);
    if (!st && !bufs)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (st) {
        if (p) {
            lp_error e;
            lzma_pair_end(p, 1, &e);
        }
        return st;
    }
    lzma_stream z = LZMA_STREAM_INIT;
    for (size_t m; !st && (m = pair_take(p, 0)) < k;) {
        st = pair_hash(p, 0, err);
        if (!st && p->hashed == m) {
            lz_io io = {.a = a, .src = p->src[m], .inbuf = bufs, .z = &z};
            st = lzma_decode(&io, &g[m], err);
            p->hashed += !st;
        } else if (!st) {
            st = pair_place(p, m, bufs, &z, err);
        }
        pair_done(p, m, st);
    }
    lzma_end(&z);
    free(bufs);
    if (!st)
        st = lpd_stream_raw_skip(x, p->clen, err);
    if (!st)
        st = lpd_stream_produced(x, p->len, err);
    if (!st)
        st = pair_hash(p, 0, err);
    *pp = p;
    if (st) {
        lp_error e;
        lzma_pair_end(p, 1, &e);
        *pp = NULL;
    }
    return st;
}

/* Whether the helper is still decoding a piece of the run. */
static int pair_busy(lz_pair *p)
{
    pthread_mutex_lock(&p->mu);
    int busy = 0;
    for (size_t m = 0; m < p->k; m++)
        busy |= !p->placed[m] && !p->failed;
    pthread_mutex_unlock(&p->mu);
    return busy;
}

/* One segment of a version 2 dictionary-frames delta (see filter.c): a raw
 * one is frames with the base as dictionary, a filtered one a single frame
 * whose dictionary is the base region filtered, undone once decoded. */
static lp_status segment(app *a, const lpd_seg *g, lp_error *err)
{
    lpd_stream *x = &a->s[2];
    uint64_t n;
    lp_status st = LP_OK;
    if (g->kind == LPD_SEG_LZMA)
        return lzma_segment(a, g, err);
    if (g->kind == LPD_SEG_RAW) {
        for (uint64_t left = g->len; left > 0 && !st; left -= n) {
            st = lpd_stream_frame(x, a->old, a->old_len,
                                  left < LPD_FRAME_MAX ? left : LPD_FRAME_MAX, &n, err);
            if (!st)
                st = do_copy(a, n, err);
        }
        return st;
    }
    uint8_t *dict = g->old_len ? malloc((size_t)g->old_len) : NULL;
    uint8_t *buf = malloc((size_t)g->len);
    if ((g->old_len && !dict) || !buf)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory for a segment of %llu bytes",
                          (unsigned long long)g->len);
    if (!st && dict) {
        memcpy(dict, a->old + g->old_off, (size_t)g->old_len);
        lpd_filter_encode(g, g->old_va, dict, (size_t)g->old_len);
    }
    if (!st)
        st = lpd_stream_frame(x, dict, (size_t)g->old_len, g->len, &n, err);
    if (!st && n != g->len)
        st = lp_error_set(err, LP_ERR_MALFORMED, "extra stream: a frame of %llu bytes for a "
                          "filtered segment of %llu", (unsigned long long)n,
                          (unsigned long long)g->len);
    if (!st)
        st = lpd_stream_read(x, buf, (size_t)n, err);
    if (!st) {
        lpd_filter_decode(g, g->va, buf, (size_t)n);
        st = emit(a, buf, (size_t)n, err);
    }
    free(dict);
    free(buf);
    return st;
}

/* How many LZMA segments from g[0] on lzma_pair takes at once: those in a
 * row of which any two fit LPD_LZMA_PAIR_MAX together, when the result has a
 * sink; 0 when fewer than two. */
static size_t pairable(const app *a, const lpd_seg *g, size_t n)
{
    if (!a->sink || !a->sink->read_at || a->x86)
        return 0;
    size_t k = 0;
    while (k < n && g[k].kind == LPD_SEG_LZMA && g[k].dict <= LPD_LZMA_PAIR_MAX / 2)
        k++;
    return k >= 2 ? k : 0;
}

/* The first run of LZMA pieces, opened (its helper decoding) before the
 * segments before it are made, when they are all small zstd segments (at
 * most LPD_EARLY_SEG_MAX bytes each: with the helper's dictionary the apply
 * stays in its memory bound) whose frames' extents show where the run's
 * streams start; *at its index.  NULL when there is none or that cannot be
 * told (the segments are then made in turn and any fault is reported by
 * their decoding). */
#define LPD_EARLY_SEG_MAX ((uint64_t)4 << 20)

/* Bytes of the segments from segs[i] up to the next LZMA one (or the end):
 * what the calling thread makes after a run ending before segs[i]. */
static uint64_t after_run(const lpd_seg *segs, size_t n, size_t i)
{
    uint64_t len = 0;
    for (; i < n && segs[i].kind != LPD_SEG_LZMA; i++)
        len += segs[i].len;
    return len;
}

static lz_pair *early_run(app *a, const lpd_seg *segs, size_t n, size_t *at)
{
    size_t r = 0, k = 0;
    while (r < n && !(k = pairable(a, segs + r, n - r))) {
        if (segs[r].kind == LPD_SEG_LZMA || segs[r].len > LPD_EARLY_SEG_MAX)
            return NULL;
        r++;
    }
    if (!k || r == 0)
        return NULL;
    lpd_stream *x = &a->s[2];
    uint64_t pos = lpd_stream_raw_pos(x), dst = 0;
    lp_error err;
    for (size_t i = 0; i < r; i++) {
        for (uint64_t got = 0; got < segs[i].len;) {
            uint64_t csize, content;
            if (lpd_frame_extent(a->read, a->rctx, pos, x->end, &csize, &content, &err) ||
                content == 0 || content > segs[i].len - got ||
                (segs[i].kind != LPD_SEG_RAW && content != segs[i].len))
                return NULL;
            pos += csize;
            got += content;
        }
        dst += segs[i].len;
    }
    lz_pair *p = NULL;
    if (pair_open(a, segs + r, k, pos, dst, dst + after_run(segs, n, r + k), &p, &err))
        return NULL;
    *at = r;
    return p;
}

/* Every segment of a version 2 dictionary-frames delta, in order. */
static lp_status segments(app *a, lp_error *err)
{
    lpd_seg segs[LPD_SEG_MAX];
    size_t n = 0;
    uint8_t *tab = NULL;
    lp_status st = LP_OK;
    if (a->h.control_raw == 0) { /* one raw segment */
        segs[0] = (lpd_seg){.len = a->h.new_size, .kind = LPD_SEG_RAW};
        n = 1;
    } else if (a->h.control_raw > LPD_SEGTAB_MAX) {
        st = lp_error_set(err, LP_ERR_MALFORMED, "control stream: %llu bytes of segments (at "
                          "most %u)", (unsigned long long)a->h.control_raw, LPD_SEGTAB_MAX);
    } else if (!(tab = malloc((size_t)a->h.control_raw))) {
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    } else {
        st = lpd_stream_read(&a->s[0], tab, (size_t)a->h.control_raw, err);
        if (!st)
            st = lpd_segs_decode(tab, (size_t)a->h.control_raw, a->old_len, a->h.new_size, segs,
                                 &n, err);
    }
    free(tab);
    lz_pair *run = NULL, *early = NULL;
    size_t early_at = 0;
    if (!st)
        early = early_run(a, segs, n, &early_at);
    for (size_t i = 0; i < n && !st;) {
        size_t k = run ? 0 : pairable(a, segs + i, n - i);
        if (run && (segs[i].kind == LPD_SEG_LZMA || !pair_busy(run))) {
            st = lzma_pair_end(run, 0, err);
            run = NULL;
            continue;
        }
        if (k) {
            lz_pair *e = early && i == early_at ? early : NULL;
            early = e ? NULL : early;
            st = lzma_pair(a, segs + i, k, after_run(segs, n, i + k), e, &run, err);
            /* the segments after it are made, placed, while the helper ends */
            if (!st && i + k < n && segs[i + k].kind != LPD_SEG_LZMA && pair_busy(run) &&
                !(st = flush(a, err))) { /* a block started before the run's unhashed pieces */
                a->placing = 1;
                a->place_at = run->dst[0] + run->len;
            }
        } else {
            st = segment(a, &segs[i], err);
        }
        for (size_t j = i + (k ? k : 1); i < j; i++)
            a->new_pos += segs[i].len;
    }
    if (run) {
        lp_status e = lzma_pair_end(run, st != LP_OK, err);
        st = st ? st : e;
    }
    if (early) { /* not reached: a failure before it */
        lp_error e;
        lzma_pair_end(early, 1, &e);
    }
    return st;
}

static lp_status bad_entry(app *a, lp_error *err, const char *what, uint64_t v)
{
    return lp_error_set(err, LP_ERR_MALFORMED, "control entry at result offset %llu: %s (%llu)",
                        (unsigned long long)a->new_pos, what, (unsigned long long)v);
}

static lp_status entry(app *a, lp_error *err)
{
    uint64_t add, copy, zz;
    if (a->h.version != LP_DELTA_VERSION_1 && a->h.control_raw == 0) {
        /* version 2 without a control stream: one copy of the whole result
         * (the header checked that the extra stream is all of it) */
        lp_status st = do_copy(a, a->h.new_size - a->new_pos, err);
        a->new_pos = a->h.new_size;
        return st;
    }
    lp_status st = lpd_stream_varint(&a->s[0], &add, err);
    if (!st)
        st = lpd_stream_varint(&a->s[0], &copy, err);
    if (!st)
        st = lpd_stream_varint(&a->s[0], &zz, err);
    if (st)
        return st;
    uint64_t new_left = a->h.new_size - a->new_pos;
    if (add > new_left || add > a->old_len - a->old_pos)
        return bad_entry(a, err, "added bytes beyond the result or the base", add);
    if ((st = do_add(a, add, err)))
        return st;
    a->new_pos += add;
    if (copy > a->h.new_size - a->new_pos)
        return bad_entry(a, err, "copied bytes beyond the result", copy);
    if ((st = do_copy(a, copy, err)))
        return st;
    a->new_pos += copy;
    uint64_t mag = (zz >> 1) + (zz & 1);
    if ((zz & 1) ? mag > a->old_pos : mag > a->old_len - a->old_pos)
        return bad_entry(a, err, "seek outside the base", zz);
    a->old_pos = (zz & 1) ? a->old_pos - mag : a->old_pos + mag;
    return LP_OK;
}

static lp_status check_base(app *a, const uint8_t *expect, lp_error *err)
{
    if (a->old_len != a->h.old_size)
        return lp_error_set(err, LP_ERR_LENGTH_MISMATCH, "base is %zu bytes; the delta was made "
                            "from one of %llu bytes", a->old_len,
                            (unsigned long long)a->h.old_size);
    if (expect && !lp_mem_equal(expect, a->h.new_sha256, 32))
        return lp_error_set(err, LP_ERR_HASH_MISMATCH, "delta makes another result than the "
                            "expected one (SHA-256 differs)");
    if ((a->h.flags & LP_DELTA_FLAG_EXTRA_PREFIX) && a->h.extra_raw > LPD_PREFIX_EXTRA_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "extra stream of %llu bytes with a dictionary "
                            "exceeds the apply memory bound (%llu)",
                            (unsigned long long)a->h.extra_raw,
                            (unsigned long long)LPD_PREFIX_EXTRA_MAX);
    return LP_OK;
}

/* The base's check (digest.c), on a thread of its own when the result has a
 * sink. */
typedef struct {
    app *a;
    lp_status st;
    lp_error err;
    pthread_t tid;
    int started;
} base_hash;

/* The operand lists of a->pre, block after block, until the apply says
 * stop or half of LPD_INDEX_MAX is used (or memory runs out: the apply then
 * builds the rest itself). */
static void prebuild(app *a)
{
    uint16_t *tmp = malloc((LP_DELTA_BLOCK / 5 + 1) * sizeof *tmp);
    size_t used = 0;
    for (size_t blk = 0; tmp && blk < a->nblk; blk++) {
        if (__atomic_load_n(&a->pre_stop, __ATOMIC_RELAXED))
            break;
        uint64_t start = (uint64_t)blk * LP_DELTA_BLOCK;
        size_t len = a->old_len - start < LP_DELTA_BLOCK ? (size_t)(a->old_len - start)
                                                         : LP_DELTA_BLOCK;
        size_t k = lpd_x86_operands(a->old + start, len, tmp);
        size_t bytes = (k + 1) * sizeof *tmp;
        uint16_t *ops = used + bytes <= LPD_INDEX_MAX / 2 ? malloc(bytes) : NULL;
        if (!ops)
            break;
        memcpy(ops, tmp, k * sizeof *tmp);
        used += bytes;
        a->pre[blk].n = (uint32_t)k;
        __atomic_store_n(&a->pre[blk].ops, ops, __ATOMIC_RELEASE);
    }
    free(tmp);
}

static void *base_hash_run(void *arg)
{
    base_hash *b = arg;
    if (b->a->pre)
        prebuild(b->a);
    b->st = lpd_base_check(&b->a->h, b->a->old, b->a->old_len, &b->err);
    return NULL;
}

static lp_status base_hash_check(base_hash *b, lp_error *err)
{
    if (b->started)
        pthread_join(b->tid, NULL);
    else
        b->st = lpd_base_check(&b->a->h, b->a->old, b->a->old_len, &b->err);
    b->started = 0;
    if (b->st && err)
        *err = b->err;
    return b->st;
}

static lp_status setup(app *a, lpd_read_fn read, void *rctx, lp_error *err)
{
    a->x86 = (a->h.flags & LP_DELTA_FLAG_X86) != 0;
    lp_status st = LP_OK;
    if (a->sink && a->h.new_size >= LPD_PIPE_MIN)
        st = pipe_start(a, err);
    if (!st && !a->pipe)
        a->out = malloc(LP_DELTA_BLOCK);
    if (a->x86) {
        if (!a->pre) /* else set already, read by the thread that prebuilds */
            a->nblk = a->old_len / LP_DELTA_BLOCK + 1;
        a->idx = calloc(a->nblk, sizeof *a->idx);
        a->ops_tmp = malloc((LP_DELTA_BLOCK / 5 + 1) * sizeof *a->ops_tmp);
        a->scratch = malloc(LP_DELTA_BLOCK);
        if (!a->idx || !a->ops_tmp || !a->scratch)
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    if (!st && !a->out)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (!st)
        st = lpd_digest_new(&a->hash, lpd_digest_is_sha256(&a->h, a->expect), err);
    uint64_t off = a->h.header_len;
    int prefix = (a->h.flags & LP_DELTA_FLAG_EXTRA_PREFIX) && a->old_len > 0;
    int frames = (a->h.flags & LP_DELTA_FLAG_DICT_FRAMES) != 0;
    int v2 = a->h.version != LP_DELTA_VERSION_1;
    int sf = v2 ? LPD_STREAM_V2 : 0;
    if (!st)
        st = lpd_stream_open(&a->s[0], "control", read, rctx, off, a->h.control_len,
                             a->h.control_raw, LPD_WINDOW_LOG, NULL, 0, 0, sf, err);
    off += a->h.control_len;
    if (!st)
        st = lpd_stream_open(&a->s[1], "diff", read, rctx, off, a->h.diff_len, a->h.diff_raw,
                             LPD_WINDOW_LOG, NULL, 0, 0, sf, err);
    off += a->h.diff_len;
    /* Dictionary frames may ask for any window up to 2^31: the decoder holds
     * at most a frame's declared size of it (checked per frame); version 2
     * gives each frame its dictionary (segment()). */
    if (!st)
        st = lpd_stream_open(&a->s[2], "extra", read, rctx, off, a->h.extra_len,
                             a->h.extra_raw,
                             prefix || frames ? LPD_PREFIX_WINDOW_LOG_MAX : LPD_WINDOW_LOG,
                             prefix || (frames && !v2) ? a->old : NULL, a->old_len,
                             frames ? (v2 ? LPD_FRAME_MAX : LP_DELTA_DICT_FRAME_MAX) : 0, sf,
                             err);
    return st;
}

static lp_status run(app *a, lp_error *err)
{
    lp_status st = LP_OK;
    if (a->h.version != LP_DELTA_VERSION_1 && (a->h.flags & LP_DELTA_FLAG_DICT_FRAMES))
        st = segments(a, err);
    while (!st && a->new_pos < a->h.new_size)
        st = entry(a, err);
    if (!st && (a->zeros || a->lits))
        st = lp_error_set(err, LP_ERR_MALFORMED, "diff stream: holds runs the control stream "
                          "does not use");
    for (int i = 0; i < 3 && !st; i++)
        st = lpd_stream_finish(&a->s[i], err);
    if (!st)
        st = flush(a, err);
    if (!st)
        st = pipe_drain(a, err);
    if (!st)
        st = lpd_digest_check(a->hash, &a->h, err);
    return st;
}

lp_status lpd_apply(const uint8_t *old, size_t old_len, lpd_read_fn read, void *rctx,
                    uint64_t delta_len, const uint8_t *expect_new_sha256, lp_delta_write_fn write,
                    void *wctx, const lpd_sink *sink, lp_error *err)
{
    if ((!old && old_len) || (!write && !sink))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "delta apply: NULL base or writer");
    app a = {.old = old, .old_len = old_len, .write = write, .wctx = wctx, .sink = sink,
             .read = read, .rctx = rctx, .expect = expect_new_sha256};
    base_hash b = {.a = &a};
    uint8_t hdr[LP_DELTA_HEADER_SIZE]; /* the most any header takes */
    size_t hn = delta_len < sizeof hdr ? (size_t)delta_len : sizeof hdr;
    lp_status st = read(rctx, 0, hdr, hn, err);
    if (!st)
        st = lp_delta_read_header(hdr, hn, delta_len, &a.h, err);
    if (!st)
        st = check_base(&a, expect_new_sha256, err);
    /* with a sink nothing is used before the end: the base is hashed while
     * the result is made (a base of another file then fails the check
     * below, or a check of the decoding, whichever comes first) */
    if (!st && sink && old_len >= LPD_BASE_HASH_THREAD_MIN) {
        /* an x86 delta's base operand lists are built there too, ahead */
        if (a.h.flags & LP_DELTA_FLAG_X86) {
            a.nblk = old_len / LP_DELTA_BLOCK + 1;
            a.pre = calloc(a.nblk, sizeof *a.pre);
        }
        b.started = pthread_create(&b.tid, NULL, base_hash_run, &b) == 0;
        if (!b.started) {
            free(a.pre);
            a.pre = NULL;
        }
    }
    if (!st && !b.started)
        st = base_hash_check(&b, err);
    if (!st)
        st = setup(&a, read, rctx, err);
    if (!st)
        st = run(&a, err);
    __atomic_store_n(&a.pre_stop, 1, __ATOMIC_RELAXED);
    if (b.started) {
        lp_error berr = {0};
        lp_status bst = base_hash_check(&b, &berr);
        if (bst) { /* the base's failure explains any other */
            if (err)
                *err = berr;
            st = bst;
        }
    }
    pipe_stop(&a);
    for (int i = 0; i < 3; i++)
        lpd_stream_close(&a.s[i]);
    idx_drop(&a);
    for (size_t i = 0; a.pre && i < a.nblk; i++)
        free(a.pre[i].ops);
    free(a.pre);
    free(a.idx);
    free(a.ops_tmp);
    free(a.scratch);
    free(a.out);
    lpd_digest_free(a.hash);
    return st;
}
