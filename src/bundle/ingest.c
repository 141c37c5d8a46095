/*
 * ingest.c — turning a bundle into a manifest plus blobs (see
 * livepush/bundle.h and ingest_priv.h).
 *
 * lp_ingest_path decides what the input is (a folder; a regular file that
 * libarchive recognises as an archive; otherwise a single plain file), runs
 * the matching front end, and only when every entry passed and the
 * manifest's whole-tree checks passed commits the stage into the store.  Any
 * failure discards the stage, so a refused bundle leaves the store as it
 * was.
 *
 * The checks every front end shares live here: name normalisation ("./a"
 * and "a" are the same entry, so duplicates are found after it), the entry
 * count, and the byte limits, which are applied to the bytes actually
 * produced while streaming — never to sizes an archive header claims — so a
 * lying header or a compression bomb is stopped as soon as it crosses a
 * limit, with the entry named.
 */
#include "bundle/ingest_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (64u * 1024)

void lp_ingest_limits_default(lp_ingest_limits *lim)
{
    lim->max_entries = LP_INGEST_DEFAULT_MAX_ENTRIES;
    lim->max_total_bytes = LP_INGEST_DEFAULT_MAX_TOTAL_BYTES;
    lim->max_file_bytes = LP_INGEST_DEFAULT_MAX_FILE_BYTES;
    lim->max_ratio = LP_INGEST_DEFAULT_MAX_RATIO;
    lim->ratio_min_bytes = LP_INGEST_DEFAULT_RATIO_MIN_BYTES;
    lim->max_path_len = LP_INGEST_DEFAULT_MAX_PATH;
    lim->max_target_len = LP_INGEST_DEFAULT_MAX_TARGET;
}

static void fill_limits(lp_ingest_limits *out, const lp_ingest_limits *in)
{
    lp_ingest_limits_default(out);
    if (!in)
        return;
#define TAKE(f)                                                                                    \
    if (in->f)                                                                                     \
    out->f = in->f
    TAKE(max_entries);
    TAKE(max_total_bytes);
    TAKE(max_file_bytes);
    TAKE(max_ratio);
    TAKE(ratio_min_bytes);
    TAKE(max_path_len);
    TAKE(max_target_len);
#undef TAKE
    if (out->max_entries > LP_MANIFEST_MAX_ENTRIES)
        out->max_entries = LP_MANIFEST_MAX_ENTRIES;
    if (out->max_path_len > LP_MANIFEST_MAX_PATH)
        out->max_path_len = LP_MANIFEST_MAX_PATH;
    if (out->max_target_len > LP_MANIFEST_MAX_TARGET)
        out->max_target_len = LP_MANIFEST_MAX_TARGET;
}

lp_status lp_ingest_norm_path(lp_ingest_ctx *c, const char *raw, char **out, lp_error *err)
{
    *out = NULL;
    size_t len = strlen(raw);
    if (len > c->lim.max_path_len * 2 + 16)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "entry \"%.64s...\": name exceeds the limit of %zu bytes", raw,
                            c->lim.max_path_len);
    if (raw[0] == '/')
        return lp_error_set(err, LP_ERR_MALFORMED, "entry \"%s\": absolute path", raw);
    char *norm = malloc(len + 1);
    if (!norm)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    size_t n = 0;
    const char *p = raw;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t k = slash ? (size_t)(slash - p) : strlen(p);
        if (k == 2 && p[0] == '.' && p[1] == '.') {
            free(norm);
            return lp_error_set(err, LP_ERR_MALFORMED, "entry \"%s\": '..' in path", raw);
        }
        if (k && !(k == 1 && p[0] == '.')) {
            if (n)
                norm[n++] = '/';
            memcpy(norm + n, p, k);
            n += k;
        }
        p += k;
        if (*p == '/')
            p++;
    }
    norm[n] = '\0';
    if (n == 0) {
        free(norm);
        return LP_OK;
    }
    lp_status st = lp_manifest_check_path(norm, c->lim.max_path_len, err);
    if (st) {
        free(norm);
        return lp_error_prefix(err, st, "entry \"%.256s\"", raw);
    }
    *out = norm;
    return LP_OK;
}

lp_status lp_ingest_count(lp_ingest_ctx *c, const char *name, lp_error *err)
{
    if (++c->entries > c->lim.max_entries)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "entry \"%s\": more than %llu entries in the bundle", name,
                            (unsigned long long)c->lim.max_entries);
    return LP_OK;
}

lp_status lp_ingest_file_begin(lp_ingest_ctx *c, lp_blob_writer **w, lp_error *err)
{
    return lp_blob_stage_writer(c->stage, w, err);
}

lp_status lp_ingest_file_data(lp_ingest_ctx *c, lp_blob_writer *w, const char *name,
                              const void *data, size_t len, lp_error *err)
{
    uint64_t fsize = lp_blob_writer_size(w) + len;
    if (fsize > c->lim.max_file_bytes)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "entry \"%s\": file larger than the limit of %llu bytes", name,
                            (unsigned long long)c->lim.max_file_bytes);
    c->total += len;
    if (c->total > c->lim.max_total_bytes)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "entry \"%s\": bundle content exceeds the limit of %llu bytes", name,
                            (unsigned long long)c->lim.max_total_bytes);
    if (c->archive_bytes && c->total > c->lim.ratio_min_bytes &&
        c->total / c->archive_bytes >= c->lim.max_ratio)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "entry \"%s\": %llu bytes unpacked from a %llu-byte archive exceeds "
                            "the compression ratio limit of %llu",
                            name, (unsigned long long)c->total,
                            (unsigned long long)c->archive_bytes,
                            (unsigned long long)c->lim.max_ratio);
    return lp_blob_writer_write(w, data, len, err);
}

lp_status lp_ingest_file_end(lp_ingest_ctx *c, lp_blob_writer *w, const char *name,
                             uint32_t mode, lp_error *err)
{
    char id[LP_BLOB_ID_SIZE];
    uint64_t size;
    lp_status st = lp_blob_writer_commit(w, NULL, id, &size, err);
    if (st)
        return lp_error_prefix(err, st, "entry \"%s\"", name);
    return lp_manifest_add_file(c->m, name, mode, size, id, err);
}

lp_status lp_ingest_file_fd(lp_ingest_ctx *c, int fd, const char *name, uint32_t mode,
                            lp_error *err)
{
    uint8_t *buf = malloc(CHUNK);
    if (!buf)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_blob_writer *w;
    lp_status st = lp_ingest_file_begin(c, &w, err);
    while (!st) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = lp_error_set(err, LP_ERR_IO, "entry \"%s\": read: %s", name, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        st = lp_ingest_file_data(c, w, name, buf, (size_t)n, err);
    }
    free(buf);
    if (st) {
        lp_blob_writer_abort(w);
        return st;
    }
    return lp_ingest_file_end(c, w, name, mode, err);
}

lp_status lp_ingest_symlink(lp_ingest_ctx *c, const char *name, const char *target,
                            lp_error *err)
{
    lp_status st = lp_manifest_check_target(name, target, c->lim.max_target_len, err);
    if (st)
        return st;
    return lp_manifest_add_symlink(c->m, name, target, err);
}

/* The entry name of a single-file bundle: the given name or the basename. */
static lp_status single_name(const char *path, const char *given, char **out, lp_error *err)
{
    const char *name = given;
    if (!name) {
        const char *slash = strrchr(path, '/');
        name = slash ? slash + 1 : path;
    }
    if (strchr(name, '/'))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "file name \"%s\" contains '/'", name);
    lp_status st = lp_manifest_check_path(name, 0, err);
    if (st)
        return st;
    *out = strdup(name);
    return *out ? LP_OK : lp_error_set(err, LP_ERR_NOMEM, "out of memory");
}

static lp_status ingest_regular(lp_ingest_ctx *c, const char *path, const lp_ingest_opts *o,
                                lp_ingest_kind *kind, lp_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "open %s: %s",
                            path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "%s: not a regular file", path);
    }
    lp_status st;
    if (*kind != LP_INGEST_FILE) {
        bool not_archive = false;
        c->archive_bytes = sb.st_size > 0 ? (uint64_t)sb.st_size : 1;
        st = lp_ingest_archive(c, fd, path, &not_archive, err);
        c->archive_bytes = 0;
        if (!not_archive || *kind == LP_INGEST_ARCHIVE) {
            close(fd);
            if (!st)
                *kind = LP_INGEST_ARCHIVE;
            return st;
        }
        c->entries = 0;
        c->total = 0;
        if (lseek(fd, 0, SEEK_SET) != 0) {
            st = lp_error_set(err, LP_ERR_IO, "seek %s: %s", path, strerror(errno));
            close(fd);
            return st;
        }
    }
    *kind = LP_INGEST_FILE;
    char *name = NULL;
    st = single_name(path, o ? o->file_name : NULL, &name, err);
    if (!st)
        st = lp_ingest_count(c, name, err);
    if (!st)
        st = lp_ingest_file_fd(c, fd, name, (uint32_t)sb.st_mode, err);
    free(name);
    close(fd);
    return st;
}

lp_status lp_ingest_path(lp_blobstore *bs, const char *path, const lp_ingest_opts *opts,
                         lp_manifest *m, lp_ingest_kind *kind_out, lp_error *err)
{
    lp_manifest_init(m);
    lp_ingest_ctx c;
    memset(&c, 0, sizeof c);
    c.m = m;
    fill_limits(&c.lim, opts ? opts->limits : NULL);
    lp_ingest_kind kind = opts ? opts->kind : LP_INGEST_AUTO;

    struct stat sb;
    if (stat(path, &sb) != 0)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO,
                            "bundle %s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode) ? (kind != LP_INGEST_AUTO && kind != LP_INGEST_DIR)
                            : (!S_ISREG(sb.st_mode) || kind == LP_INGEST_DIR))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "bundle %s: not a %s", path,
                            kind == LP_INGEST_DIR    ? "folder"
                            : kind == LP_INGEST_AUTO ? "folder or regular file"
                                                     : "regular file");
    lp_status st = lp_blob_stage_open(bs, &c.stage, err);
    if (st)
        return lp_error_prefix(err, st, "bundle %s", path);
    if (S_ISDIR(sb.st_mode)) {
        kind = LP_INGEST_DIR;
        st = lp_ingest_dir(&c, path, err);
    } else {
        st = ingest_regular(&c, path, opts, &kind, err);
    }
    if (!st)
        st = lp_manifest_finish(m, err);
    if (!st && m->count > c.lim.max_entries)
        st = lp_error_set(err, LP_ERR_TOO_LARGE,
                          "%zu entries with the implied folders exceeds the limit of %llu",
                          m->count, (unsigned long long)c.lim.max_entries);
    if (st) {
        lp_blob_stage_discard(c.stage);
        lp_manifest_free(m);
        return lp_error_prefix(err, st, "bundle %s", path);
    }
    st = lp_blob_stage_commit(c.stage, err);
    if (st) {
        lp_manifest_free(m);
        return lp_error_prefix(err, st, "bundle %s", path);
    }
    if (kind_out)
        *kind_out = kind;
    return LP_OK;
}
