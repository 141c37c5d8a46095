/*
 * file.c — the delta entries over memory, descriptors and paths.
 *
 * Files are mapped read-only (PROT_READ, MAP_PRIVATE): the base is read in
 * place, never copied, so applying costs no memory for it beyond the page
 * cache.  A delta file is read with pread(2) through the stream buffers.
 * The result of lp_delta_apply_file is written to a temporary file next to
 * the output (src/core/file.h) and renamed over it only once its digest is
 * verified; the made delta is written with lp_file_write_atomic.
 */
#include "core/file.h"
#include "delta/delta_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int fd;
    const uint8_t *p;
    size_t len;
} mapping;

static lp_status map_file(const char *path, mapping *m, lp_error *err)
{
    m->p = NULL;
    m->len = 0;
    m->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (m->fd < 0)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "open %s: %s",
                            path, strerror(errno));
    struct stat sb;
    if (fstat(m->fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return lp_error_set(err, LP_ERR_IO, "%s: not a readable regular file", path);
    if ((uint64_t)sb.st_size > LP_DELTA_MAX_SIZE)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "%s: %lld bytes exceeds the delta limit of "
                            "%llu", path, (long long)sb.st_size,
                            (unsigned long long)LP_DELTA_MAX_SIZE);
    m->len = (size_t)sb.st_size;
    if (m->len == 0)
        return LP_OK;
    void *p = mmap(NULL, m->len, PROT_READ, MAP_PRIVATE, m->fd, 0);
    if (p == MAP_FAILED)
        return lp_error_set(err, LP_ERR_IO, "mmap %s: %s", path, strerror(errno));
    m->p = p;
    return LP_OK;
}

static void unmap_file(mapping *m)
{
    if (m->p)
        munmap((void *)m->p, m->len);
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
    m->p = NULL;
}

lp_status lp_delta_make_file(const char *old_path, const char *new_path, const char *delta_path,
                             const lp_delta_options *opt, lp_delta_stats *stats, lp_error *err)
{
    mapping o = {.fd = -1}, n = {.fd = -1};
    uint8_t *d = NULL;
    size_t dn = 0;
    lp_status st = map_file(old_path, &o, err);
    if (!st)
        st = map_file(new_path, &n, err);
    if (!st)
        st = lp_delta_make(o.p, o.len, n.p, n.len, opt, &d, &dn, stats, err);
    if (!st)
        st = lp_file_write_atomic(delta_path, d, dn, 0644, err);
    free(d);
    unmap_file(&o);
    unmap_file(&n);
    return st;
}

/* ---- sources of delta bytes ---- */

typedef struct {
    const uint8_t *p;
    uint64_t len;
} mem_src;

static lp_status mem_read(void *ctx, uint64_t off, void *buf, size_t n, lp_error *err)
{
    const mem_src *m = ctx;
    if (off > m->len || n > m->len - off)
        return lp_error_set(err, LP_ERR_MALFORMED, "read past the end of the delta");
    memcpy(buf, m->p + off, n);
    return LP_OK;
}

static lp_status fd_read(void *ctx, uint64_t off, void *buf, size_t n, lp_error *err)
{
    int fd = *(const int *)ctx;
    uint8_t *b = buf;
    while (n > 0) {
        ssize_t r = pread(fd, b, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return lp_error_set(err, LP_ERR_IO, "reading the delta: %s", strerror(errno));
        if (r == 0)
            return lp_error_set(err, LP_ERR_MALFORMED, "delta file shrank while read");
        b += r;
        off += (uint64_t)r;
        n -= (size_t)r;
    }
    return LP_OK;
}

lp_status lp_delta_apply_mem(const uint8_t *old, size_t old_len, const uint8_t *delta,
                             size_t delta_len, const uint8_t *expect_new_sha256,
                             lp_delta_write_fn write, void *ctx, lp_error *err)
{
    if (!delta && delta_len)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "delta apply: NULL delta");
    mem_src m = {delta, delta_len};
    return lpd_apply(old, old_len, mem_read, &m, delta_len, expect_new_sha256, write, ctx, NULL,
                     err);
}

static lp_status apply_fd(const uint8_t *old, size_t old_len, int delta_fd,
                          const uint8_t *expect_new_sha256, lp_delta_write_fn write, void *ctx,
                          const lpd_sink *sink, lp_error *err)
{
    struct stat sb;
    if (fstat(delta_fd, &sb) != 0)
        return lp_error_set(err, LP_ERR_IO, "delta: fstat: %s", strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return lp_error_set(err, LP_ERR_IO, "delta: not a regular file");
    return lpd_apply(old, old_len, fd_read, &delta_fd, (uint64_t)sb.st_size, expect_new_sha256,
                     write, ctx, sink, err);
}

lp_status lp_delta_apply_fd(const uint8_t *old, size_t old_len, int delta_fd,
                            const uint8_t *expect_new_sha256, lp_delta_write_fn write, void *ctx,
                            lp_error *err)
{
    return apply_fd(old, old_len, delta_fd, expect_new_sha256, write, ctx, NULL, err);
}

lp_status lp_delta_read_header_file(const char *path, lp_delta_header *h, lp_error *err)
{
    memset(h, 0, sizeof *h);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "open %s: %s",
                            path, strerror(errno));
    struct stat sb;
    uint8_t hdr[LP_DELTA_HEADER_SIZE];
    lp_status st = LP_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        st = lp_error_set(err, LP_ERR_IO, "%s: not a readable regular file", path);
    size_t n = !st && (uint64_t)sb.st_size < sizeof hdr ? (size_t)sb.st_size : sizeof hdr;
    if (!st)
        st = fd_read(&fd, 0, hdr, n, err);
    if (!st)
        st = lp_delta_read_header(hdr, n, (uint64_t)sb.st_size, h, err);
    close(fd);
    return st ? lp_error_prefix(err, st, "%s", path) : LP_OK;
}

/* ---- writers ---- */

static lp_status fd_write(void *ctx, const uint8_t *data, size_t len, lp_error *err)
{
    return lp_file_write_all(*(const int *)ctx, data, len, "the result", err);
}

/* A result file written by position, from offset `base` of the file on;
 * end: the end of what was written (the result's size once it is all). */
typedef struct {
    int fd;
    uint64_t base;
    _Atomic uint64_t end;
} fd_sink;

static lp_status fd_write_at(void *ctx, uint64_t off, const uint8_t *p, size_t n, lp_error *err)
{
    fd_sink *f = ctx;
    uint64_t end = off + n, seen = atomic_load(&f->end);
    while (seen < end && !atomic_compare_exchange_weak(&f->end, &seen, end))
        ;
    for (off += f->base; n > 0;) {
        ssize_t w = pwrite(f->fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return lp_error_set(err, LP_ERR_IO, "writing the result: %s",
                                w < 0 ? strerror(errno) : "no progress");
        p += w;
        off += (uint64_t)w;
        n -= (size_t)w;
    }
    return LP_OK;
}

static lp_status fd_read_at(void *ctx, uint64_t off, uint8_t *p, size_t n, lp_error *err)
{
    const fd_sink *f = ctx;
    int fd = f->fd;
    lp_status st = fd_read(&fd, f->base + off, p, n, err);
    return st ? lp_error_prefix(err, st, "reading the result back") : LP_OK;
}

/* lp_delta_apply_file and its unsynced form: the result into a temporary
 * file next to out_path, renamed over it once verified. */
static lp_status apply_to_path(const char *old_path, const char *delta_path, const char *out_path,
                               const uint8_t *expect_new_sha256, int sync, lp_error *err)
{
    char tmp[4096];
    int ofd = -1;
    if (strlen(out_path) + 16 > sizeof tmp)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "output path too long");
    lp_status st = lp_file_open_tmp(out_path, 0644, tmp, sizeof tmp, &ofd, err);
    if (st)
        return st;
    st = lp_delta_apply_file_fd(old_path, delta_path, ofd, expect_new_sha256, err);
    if (st) {
        close(ofd);
        unlink(tmp);
        return st;
    }
    return sync ? lp_file_commit_tmp(ofd, tmp, out_path, err)
                : lp_file_rename_tmp(ofd, tmp, out_path, err);
}

lp_status lp_delta_apply_file(const char *old_path, const char *delta_path, const char *out_path,
                              const uint8_t *expect_new_sha256, lp_error *err)
{
    return apply_to_path(old_path, delta_path, out_path, expect_new_sha256, 1, err);
}

lp_status lp_delta_apply_file_unsynced(const char *old_path, const char *delta_path,
                                       const char *out_path, const uint8_t *expect_new_sha256,
                                       lp_error *err)
{
    return apply_to_path(old_path, delta_path, out_path, expect_new_sha256, 0, err);
}

typedef struct {
    uint8_t *p;
    size_t cap;
} out_buf;

static lp_status buf_write_at(void *ctx, uint64_t off, const uint8_t *data, size_t len,
                              lp_error *err)
{
    out_buf *b = ctx;
    if (off > b->cap || len > b->cap - off)
        return lp_error_set(err, LP_ERR_MALFORMED, "result longer than its header says");
    memcpy(b->p + off, data, len);
    return LP_OK;
}

static lp_status buf_read_at(void *ctx, uint64_t off, uint8_t *data, size_t len, lp_error *err)
{
    out_buf *b = ctx;
    if (off > b->cap || len > b->cap - off)
        return lp_error_set(err, LP_ERR_MALFORMED, "result longer than its header says");
    memcpy(data, b->p + off, len);
    return LP_OK;
}

lp_status lp_delta_apply_buf(const uint8_t *old, size_t old_len, const uint8_t *delta,
                             size_t delta_len, size_t max_out, uint8_t **out, size_t *out_len,
                             lp_error *err)
{
    *out = NULL;
    *out_len = 0;
    lp_delta_header h;
    lp_status st = lp_delta_read_header(delta, delta_len, delta_len, &h, err);
    if (st)
        return st;
    if (h.new_size > max_out)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "delta result of %llu bytes exceeds the "
                            "limit of %zu", (unsigned long long)h.new_size, max_out);
    out_buf b = {malloc((size_t)h.new_size + 1), (size_t)h.new_size};
    if (!b.p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory for a result of %llu bytes",
                            (unsigned long long)h.new_size);
    mem_src m = {delta, delta_len};
    lpd_sink sink = {buf_write_at, buf_read_at, &b};
    st = lpd_apply(old, old_len, mem_read, &m, delta_len, NULL, NULL, NULL, &sink, err);
    if (st) {
        free(b.p);
        return st;
    }
    *out = b.p;
    *out_len = b.cap;
    return LP_OK;
}

lp_status lp_delta_apply_fd_to_fd(const uint8_t *old, size_t old_len, int delta_fd,
                                  const uint8_t *expect_new_sha256, uint64_t max_out, int out_fd,
                                  lp_error *err)
{
    if ((!old && old_len) || delta_fd < 0 || out_fd < 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "delta apply: NULL base or bad descriptor");
    struct stat sb;
    uint8_t hdr[LP_DELTA_HEADER_SIZE];
    lp_delta_header h;
    if (fstat(delta_fd, &sb) != 0)
        return lp_error_set(err, LP_ERR_IO, "delta: fstat: %s", strerror(errno));
    size_t hn = (uint64_t)sb.st_size < sizeof hdr ? (size_t)sb.st_size : sizeof hdr;
    lp_status st = fd_read(&delta_fd, 0, hdr, hn, err);
    if (!st)
        st = lp_delta_read_header(hdr, hn, (uint64_t)sb.st_size, &h, err);
    if (st)
        return st;
    if (h.new_size > max_out)
        return lp_error_set(err, LP_ERR_LENGTH_MISMATCH, "the delta makes %llu bytes, more than "
                            "the %llu allowed", (unsigned long long)h.new_size,
                            (unsigned long long)max_out);
    /* a regular file is written by position (the apply may then use two
     * threads; it reads back only from a descriptor open for reading), and
     * left at the result's end as write(2) would */
    off_t at = fstat(out_fd, &sb) == 0 && S_ISREG(sb.st_mode) ? lseek(out_fd, 0, SEEK_CUR)
                                                               : (off_t)-1;
    int rw = (fcntl(out_fd, F_GETFL) & O_ACCMODE) == O_RDWR;
    fd_sink fs = {out_fd, at < 0 ? 0 : (uint64_t)at, 0};
    lpd_sink sink = {fd_write_at, rw ? fd_read_at : NULL, &fs};
    st = apply_fd(old, old_len, delta_fd, expect_new_sha256, fd_write, &out_fd,
                  at < 0 ? NULL : &sink, err);
    if (!st && at >= 0 && lseek(out_fd, at + (off_t)atomic_load(&fs.end), SEEK_SET) < 0)
        st = lp_error_set(err, LP_ERR_IO, "seeking past the result: %s", strerror(errno));
    return st;
}

lp_status lp_delta_apply_file_fd(const char *old_path, const char *delta_path, int out_fd,
                                 const uint8_t *expect_new_sha256, lp_error *err)
{
    mapping o = {.fd = -1};
    int dfd = -1;
    lp_status st = map_file(old_path, &o, err);
    if (!st && (dfd = open(delta_path, O_RDONLY | O_CLOEXEC)) < 0)
        st = lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "open %s: %s",
                          delta_path, strerror(errno));
    if (!st && (st = lp_delta_apply_fd_to_fd(o.p, o.len, dfd, expect_new_sha256,
                                             LP_DELTA_MAX_SIZE, out_fd, err)))
        lp_error_prefix(err, st, "%s", delta_path);
    if (dfd >= 0)
        close(dfd);
    unmap_file(&o);
    return st;
}
