/*
 * pack.c — a folder as a deterministic tar (see pack.h).
 *
 * The walk uses openat/fstatat relative to each folder's descriptor, with
 * O_NOFOLLOW, so a symbolic link is never followed and a folder swapped for
 * a link during the walk is not entered.  Each folder's names are sorted
 * with strcmp before they are visited.  Files are copied exactly as long as
 * fstat said when the header was written; a file that turns out shorter or
 * longer is an error (the tar would otherwise not match its header).
 */
#include "cli/pack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PACK_MAX_DEPTH 128
#define PACK_MAX_PATH 4096
#define COPY_BLOCK (64 * 1024)

typedef struct packer {
    struct archive *a;
    struct archive_entry *e;
    char *block;
    lp_error *err;
} packer;

static int cmp_names(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static lp_status archive_fail(packer *p, const char *what, const char *path)
{
    return lp_error_set(p->err, LP_ERR_IO, "packing %s: %s: %s", path, what,
                        archive_error_string(p->a) ? archive_error_string(p->a) : "failed");
}

/* Fills the reused entry for `path` with `type` and `perm`. */
static void entry_reset(packer *p, const char *path, mode_t type, mode_t perm, int64_t size)
{
    archive_entry_clear(p->e);
    archive_entry_copy_pathname(p->e, path);
    archive_entry_set_filetype(p->e, (unsigned)type);
    archive_entry_set_perm(p->e, perm & 07777);
    archive_entry_set_size(p->e, size);
    archive_entry_set_mtime(p->e, 0, 0);
    archive_entry_set_uid(p->e, 0);
    archive_entry_set_gid(p->e, 0);
}

static lp_status write_header(packer *p, const char *path)
{
    int r = archive_write_header(p->a, p->e);
    /* ARCHIVE_WARN: a name that is not valid in the locale is written as raw
     * bytes, which is what the server sees and judges */
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
        return archive_fail(p, "writing the header", path);
    return LP_OK;
}

static lp_status pack_file(packer *p, int dirfd, const char *name, const char *path)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return lp_error_set(p->err, LP_ERR_IO, "packing %s: open: %s", path, strerror(errno));
    struct stat sb;
    lp_status st = LP_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = lp_error_set(p->err, LP_ERR_IO, "packing %s: changed while being packed", path);
        goto out;
    }
    entry_reset(p, path, AE_IFREG, sb.st_mode, (int64_t)sb.st_size);
    if ((st = write_header(p, path)))
        goto out;
    uint64_t left = (uint64_t)sb.st_size;
    while (left > 0) {
        size_t want = left < COPY_BLOCK ? (size_t)left : COPY_BLOCK;
        ssize_t r = read(fd, p->block, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st = lp_error_set(p->err, LP_ERR_IO, "packing %s: read: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0) {
            st = lp_error_set(p->err, LP_ERR_IO, "packing %s: the file shrank while being packed",
                              path);
            goto out;
        }
        if (archive_write_data(p->a, p->block, (size_t)r) != r) {
            st = archive_fail(p, "writing", path);
            goto out;
        }
        left -= (uint64_t)r;
    }
    char extra;
    ssize_t r;
    do
        r = read(fd, &extra, 1);
    while (r < 0 && errno == EINTR);
    if (r != 0)
        st = lp_error_set(p->err, LP_ERR_IO, "packing %s: the file grew while being packed", path);
out:
    close(fd);
    return st;
}

static lp_status pack_link(packer *p, int dirfd, const char *name, const char *path,
                           const struct stat *sb)
{
    char target[PACK_MAX_PATH + 1];
    ssize_t n = readlinkat(dirfd, name, target, sizeof target);
    if (n < 0)
        return lp_error_set(p->err, LP_ERR_IO, "packing %s: readlink: %s", path, strerror(errno));
    if ((size_t)n >= sizeof target)
        return lp_error_set(p->err, LP_ERR_TOO_LARGE,
                            "packing %s: symbolic link target longer than %d bytes", path,
                            PACK_MAX_PATH);
    target[n] = 0;
    entry_reset(p, path, AE_IFLNK, 0777, 0);
    archive_entry_copy_symlink(p->e, target);
    (void)sb;
    return write_header(p, path);
}

/* Packs the contents of the open folder `dirfd`, whose path in the tar is
 * `prefix` ("" for the top). */
static lp_status pack_tree(packer *p, int dirfd, const char *prefix, int depth)
{
    if (depth > PACK_MAX_DEPTH)
        return lp_error_set(p->err, LP_ERR_TOO_LARGE, "packing %s: folders nested deeper than %d",
                            prefix, PACK_MAX_DEPTH);
    int dup_fd = dup(dirfd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        return lp_error_set(p->err, LP_ERR_IO, "packing %s: opendir: %s", *prefix ? prefix : ".",
                            strerror(errno));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    lp_status st = LP_OK;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 32;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                st = lp_error_set(p->err, LP_ERR_NOMEM, "out of memory");
                break;
            }
            names = nn;
            cap = ncap;
        }
        if (!(names[n] = strdup(de->d_name))) {
            st = lp_error_set(p->err, LP_ERR_NOMEM, "out of memory");
            break;
        }
        n++;
        errno = 0;
    }
    if (!st && errno)
        st = lp_error_set(p->err, LP_ERR_IO, "packing %s: readdir: %s", *prefix ? prefix : ".",
                          strerror(errno));
    closedir(d);
    if (!st && n)
        qsort(names, n, sizeof *names, cmp_names);

    char *path = malloc(PACK_MAX_PATH + 1);
    if (!st && !path)
        st = lp_error_set(p->err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n && !st; i++) {
        int len = snprintf(path, PACK_MAX_PATH + 1, "%s%s%s", prefix, *prefix ? "/" : "", names[i]);
        if (len < 0 || len > PACK_MAX_PATH) {
            st = lp_error_set(p->err, LP_ERR_TOO_LARGE, "packing %s/%s: path longer than %d bytes",
                              prefix, names[i], PACK_MAX_PATH);
            break;
        }
        struct stat sb;
        if (fstatat(dirfd, names[i], &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            st = lp_error_set(p->err, LP_ERR_IO, "packing %s: stat: %s", path, strerror(errno));
        } else if (S_ISREG(sb.st_mode)) {
            st = pack_file(p, dirfd, names[i], path);
        } else if (S_ISLNK(sb.st_mode)) {
            st = pack_link(p, dirfd, names[i], path, &sb);
        } else if (S_ISDIR(sb.st_mode)) {
            entry_reset(p, path, AE_IFDIR, 0755, 0);
            st = write_header(p, path);
            int sub = -1;
            if (!st) {
                sub = openat(dirfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0)
                    st = lp_error_set(p->err, LP_ERR_IO, "packing %s: open folder: %s", path,
                                      strerror(errno));
            }
            if (!st)
                st = pack_tree(p, sub, path, depth + 1);
            if (sub >= 0)
                close(sub);
        } else {
            st = lp_error_set(p->err, LP_ERR_UNSUPPORTED,
                              "packing %s: not a regular file, folder or symbolic link", path);
        }
    }
    free(path);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return st;
}

lp_status lp_pack_dir(const char *dir, int fd, lp_error *err)
{
    int top = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (top < 0)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "packing %s: %s",
                            dir, strerror(errno));
    packer p = {.a = archive_write_new(), .e = archive_entry_new(), .block = malloc(COPY_BLOCK),
                .err = err};
    lp_status st = LP_OK;
    if (!p.a || !p.e || !p.block) {
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    } else if (archive_write_set_format_pax_restricted(p.a) != ARCHIVE_OK ||
               archive_write_add_filter_none(p.a) != ARCHIVE_OK ||
               archive_write_open_fd(p.a, fd) != ARCHIVE_OK) {
        st = archive_fail(&p, "starting the tar", dir);
    } else {
        st = pack_tree(&p, top, "", 0);
        if (archive_write_close(p.a) != ARCHIVE_OK && !st)
            st = archive_fail(&p, "finishing the tar", dir);
    }
    if (p.a)
        archive_write_free(p.a);
    if (p.e)
        archive_entry_free(p.e);
    free(p.block);
    close(top);
    if (st)
        return lp_error_prefix(err, st, "folder bundle %s", dir);
    return LP_OK;
}
