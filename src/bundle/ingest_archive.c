/*
 * ingest_archive.c — an archive as a bundle, read with libarchive (see
 * ingest_priv.h).
 *
 * The archive is read as a stream from its descriptor (64 KiB blocks) and
 * each file's data is copied chunk by chunk into a staged blob, so memory use
 * does not depend on the archive's size.  Limits are applied to the bytes
 * libarchive actually produces (ingest.c), never to sizes in headers.
 *
 * Formats and filters are enabled one by one rather than with the "_all"
 * calls: "mtree" describes files by their paths on the local disk (reading
 * one would read the server's files), "raw" and "empty" accept any input,
 * and some "_all" filters run external programs.  What remains: tar (all
 * variants), zip, 7-Zip, cpio, ISO 9660, XAR, CAB, LHA, RAR and RAR5, each
 * optionally compressed with gzip, bzip2, xz, lzma, lzip, zstd, lz4 or
 * compress.  When the first header cannot be read because no format
 * recognises the input, the caller is told "not an archive" and may treat
 * the input as one plain file.
 *
 * Entry rules: names are normalised and checked (ingest.c); regular files,
 * folders and relative symlinks that stay inside the bundle are kept; a hard
 * link becomes a copy of the earlier file entry it names (looked up in a
 * hash table of file names built at the first hard link) and is refused when
 * it names anything else; device nodes, fifos and sockets are refused.
 */
#include "bundle/ingest_priv.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <search.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK (64u * 1024)

typedef struct reader {
    lp_ingest_ctx *c;
    struct archive *a;
    struct hsearch_data files; /* file entry path -> index, once has_table */
    bool has_table;
    uint8_t *buf;
} reader;

static void enable_formats(struct archive *a)
{
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_lzma(a);
    archive_read_support_filter_lzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_lz4(a);
    archive_read_support_filter_compress(a);
    archive_read_support_format_tar(a);
    archive_read_support_format_gnutar(a);
    archive_read_support_format_zip(a);
    archive_read_support_format_7zip(a);
    archive_read_support_format_cpio(a);
    archive_read_support_format_iso9660(a);
    archive_read_support_format_xar(a);
    archive_read_support_format_cab(a);
    archive_read_support_format_lha(a);
    archive_read_support_format_rar(a);
    archive_read_support_format_rar5(a);
}

static lp_status table_add(reader *r, size_t idx, lp_error *err)
{
    ENTRY in = {.key = r->c->m->entries[idx].path, .data = (void *)(uintptr_t)idx}, *out;
    if (!hsearch_r(in, ENTER, &out, &r->files))
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory indexing entries");
    return LP_OK;
}

/* Adds file entry `name` as a copy of the earlier file entry `target`. */
static lp_status hard_link(reader *r, const char *name, const char *raw_target, lp_error *err)
{
    lp_ingest_ctx *c = r->c;
    char *target = NULL;
    lp_status st = lp_ingest_norm_path(c, raw_target, &target, err);
    if (st)
        return lp_error_prefix(err, st, "hard link \"%s\"", name);
    if (!r->has_table) {
        memset(&r->files, 0, sizeof r->files);
        if (!hcreate_r((size_t)c->lim.max_entries + 1, &r->files)) {
            free(target);
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory indexing entries");
        }
        r->has_table = true;
        for (size_t i = 0; i < c->m->count && !st; i++)
            if (c->m->entries[i].type == LP_ENTRY_FILE)
                st = table_add(r, i, err);
        if (st) {
            free(target);
            return st;
        }
    }
    ENTRY q = {.key = target, .data = NULL}, *found = NULL;
    if (!hsearch_r(q, FIND, &found, &r->files) || !found) {
        st = lp_error_set(err, LP_ERR_MALFORMED,
                          "entry \"%s\": hard link to \"%s\", which is not an earlier file of "
                          "the bundle",
                          name, raw_target);
        free(target);
        return st;
    }
    free(target);
    const lp_manifest_entry *e = &c->m->entries[(uintptr_t)found->data];
    /* Copy the fields: adding may move the entries array. */
    char sha[LP_BLOB_ID_SIZE];
    memcpy(sha, e->sha256, sizeof sha);
    uint32_t mode = e->mode;
    uint64_t size = e->size;
    st = lp_manifest_add_file(c->m, name, mode, size, sha, err);
    if (!st)
        st = table_add(r, c->m->count - 1, err);
    return st;
}

static lp_status file_data(reader *r, const char *name, uint32_t mode, lp_error *err)
{
    lp_ingest_ctx *c = r->c;
    lp_blob_writer *w;
    lp_status st = lp_ingest_file_begin(c, &w, err);
    if (st)
        return st;
    for (;;) {
        la_ssize_t n = archive_read_data(r->a, r->buf, BLOCK);
        if (n == 0)
            break;
        if (n < 0) {
            st = lp_error_set(err, LP_ERR_MALFORMED, "entry \"%s\": %s", name,
                              archive_error_string(r->a) ? archive_error_string(r->a)
                                                         : "read error");
            break;
        }
        st = lp_ingest_file_data(c, w, name, r->buf, (size_t)n, err);
        if (st)
            break;
    }
    if (st) {
        lp_blob_writer_abort(w);
        return st;
    }
    st = lp_ingest_file_end(c, w, name, mode, err);
    if (!st && r->has_table)
        st = table_add(r, c->m->count - 1, err);
    return st;
}

static lp_status one_entry(reader *r, struct archive_entry *ae, lp_error *err)
{
    lp_ingest_ctx *c = r->c;
    const char *raw = archive_entry_pathname(ae);
    if (!raw || !*raw)
        return lp_error_set(err, LP_ERR_MALFORMED, "entry %llu: no readable name",
                            (unsigned long long)c->entries + 1);
    char *name = NULL;
    lp_status st = lp_ingest_norm_path(c, raw, &name, err);
    if (st)
        return st;
    unsigned type = archive_entry_filetype(ae);
    if (!name) {
        /* "./" — the root folder itself. */
        if (type == AE_IFDIR)
            return LP_OK;
        return lp_error_set(err, LP_ERR_MALFORMED, "entry \"%s\": not a folder", raw);
    }
    st = lp_ingest_count(c, name, err);
    const char *link = archive_entry_hardlink(ae);
    if (st) {
        /* counted too many */
    } else if (link) {
        st = hard_link(r, name, link, err);
    } else if (type == AE_IFREG) {
        st = file_data(r, name, (uint32_t)archive_entry_perm(ae), err);
    } else if (type == AE_IFDIR) {
        st = lp_manifest_add_dir(c->m, name, err);
    } else if (type == AE_IFLNK) {
        const char *t = archive_entry_symlink(ae);
        st = t ? lp_ingest_symlink(c, name, t, err)
               : lp_error_set(err, LP_ERR_MALFORMED, "symlink \"%s\": no target", name);
    } else {
        const char *what = type == AE_IFCHR || type == AE_IFBLK ? "device node"
                           : type == AE_IFIFO                   ? "fifo"
                           : type == AE_IFSOCK                  ? "socket"
                                                                : "entry of unknown type";
        st = lp_error_set(err, LP_ERR_MALFORMED, "entry \"%s\": %s not allowed in a bundle", name,
                          what);
    }
    free(name);
    return st;
}

/* True when libarchive failed because no enabled format (or filter chain
 * ending in a format) recognises the input.  libarchive reports that as
 * errno EILSEQ (its ARCHIVE_ERRNO_FILE_FORMAT on Linux) with no format
 * chosen. */
static bool unrecognised(struct archive *a)
{
    return archive_format(a) == 0 && archive_errno(a) == EILSEQ;
}

lp_status lp_ingest_archive(lp_ingest_ctx *c, int fd, const char *label, bool *not_archive,
                            lp_error *err)
{
    *not_archive = false;
    reader r;
    memset(&r, 0, sizeof r);
    r.c = c;
    r.buf = malloc(BLOCK);
    r.a = archive_read_new();
    if (!r.buf || !r.a) {
        free(r.buf);
        if (r.a)
            archive_read_free(r.a);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    enable_formats(r.a);
    lp_status st = LP_OK;
    if (archive_read_open_fd(r.a, fd, BLOCK) != ARCHIVE_OK) {
        /* Opening already reads ahead and picks the format. */
        const char *msg = archive_error_string(r.a) ? archive_error_string(r.a) : "open failed";
        if (unrecognised(r.a)) {
            *not_archive = true;
            st = lp_error_set(err, LP_ERR_MALFORMED, "%s: not an archive (%s)", label, msg);
        } else {
            st = lp_error_set(err, LP_ERR_MALFORMED, "%s: %s", label, msg);
        }
        goto out;
    }
    for (bool first = true; !st; first = false) {
        struct archive_entry *ae;
        int rc = archive_read_next_header(r.a, &ae);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc < ARCHIVE_WARN) {
            const char *msg = archive_error_string(r.a);
            if (first && unrecognised(r.a)) {
                *not_archive = true;
                st = lp_error_set(err, LP_ERR_MALFORMED, "%s: not an archive (%s)", label,
                                  msg ? msg : "unrecognised format");
            } else {
                st = lp_error_set(err, LP_ERR_MALFORMED, "%s: after %llu entries: %s", label,
                                  (unsigned long long)c->entries, msg ? msg : "read error");
            }
            break;
        }
        st = one_entry(&r, ae, err);
    }
out:
    if (r.has_table)
        hdestroy_r(&r.files);
    archive_read_free(r.a);
    free(r.buf);
    return st;
}
