/*
 * ingest_dir.c — a folder as a bundle (see ingest_priv.h).
 *
 * The walk is relative to open folder descriptors (openat, fstatat with
 * AT_SYMLINK_NOFOLLOW, readlinkat), so symbolic links inside the folder are
 * recorded as links and never followed, and a folder renamed during the walk
 * cannot redirect it elsewhere.  A regular file is opened with O_NOFOLLOW and
 * its identity (device and inode) compared with what fstatat saw, so a file
 * swapped for a link or a fifo between the two calls is refused rather than
 * read.  Hard links inside a folder are simply files with the same content
 * (stored once by the blob store).  Device nodes, fifos and sockets are
 * refused by name.  Nesting is bounded by LP_INGEST_MAX_DEPTH, which also
 * bounds the descriptors held open at once.
 */
#include "bundle/ingest_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static lp_status walk(lp_ingest_ctx *c, int dirfd, const char *prefix, int depth, lp_error *err);

static lp_status one_entry(lp_ingest_ctx *c, int dirfd, const char *base, const char *name,
                           int depth, lp_error *err)
{
    lp_status st = lp_manifest_check_path(name, c->lim.max_path_len, err);
    if (st)
        return lp_error_prefix(err, st, "entry \"%.256s\"", name);
    st = lp_ingest_count(c, name, err);
    if (st)
        return st;
    struct stat sb;
    if (fstatat(dirfd, base, &sb, AT_SYMLINK_NOFOLLOW) != 0)
        return lp_error_set(err, LP_ERR_IO, "entry \"%s\": stat: %s", name, strerror(errno));
    if (S_ISREG(sb.st_mode)) {
        int fd = openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            return lp_error_set(err, LP_ERR_IO, "entry \"%s\": open: %s", name, strerror(errno));
        struct stat fb;
        if (fstat(fd, &fb) != 0 || !S_ISREG(fb.st_mode) || fb.st_ino != sb.st_ino ||
            fb.st_dev != sb.st_dev) {
            close(fd);
            return lp_error_set(err, LP_ERR_IO, "entry \"%s\": changed while being read", name);
        }
        st = lp_ingest_file_fd(c, fd, name, (uint32_t)sb.st_mode, err);
        close(fd);
        return st;
    }
    if (S_ISLNK(sb.st_mode)) {
        size_t cap = c->lim.max_target_len + 2;
        char *t = malloc(cap);
        if (!t)
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        ssize_t n = readlinkat(dirfd, base, t, cap);
        if (n < 0) {
            st = lp_error_set(err, LP_ERR_IO, "entry \"%s\": readlink: %s", name,
                              strerror(errno));
        } else if ((size_t)n >= cap - 1) {
            st = lp_error_set(err, LP_ERR_TOO_LARGE,
                              "symlink \"%s\": target exceeds the limit of %zu bytes", name,
                              c->lim.max_target_len);
        } else {
            t[n] = '\0';
            st = lp_ingest_symlink(c, name, t, err);
        }
        free(t);
        return st;
    }
    if (S_ISDIR(sb.st_mode)) {
        st = lp_manifest_add_dir(c->m, name, err);
        if (st)
            return st;
        int sub = openat(dirfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            return lp_error_set(err, LP_ERR_IO, "entry \"%s\": open folder: %s", name,
                                strerror(errno));
        st = walk(c, sub, name, depth + 1, err);
        close(sub);
        return st;
    }
    const char *what = S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "device node"
                       : S_ISFIFO(sb.st_mode)                     ? "fifo"
                       : S_ISSOCK(sb.st_mode)                     ? "socket"
                                                                  : "special file";
    return lp_error_set(err, LP_ERR_MALFORMED, "entry \"%s\": %s not allowed in a bundle", name,
                        what);
}

static lp_status walk(lp_ingest_ctx *c, int dirfd, const char *prefix, int depth, lp_error *err)
{
    if (depth > LP_INGEST_MAX_DEPTH)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "entry \"%s\": folders nested deeper than %d levels", prefix,
                            LP_INGEST_MAX_DEPTH);
    int fd = dup(dirfd);
    if (fd < 0)
        return lp_error_set(err, LP_ERR_IO, "folder \"%s\": %s", prefix, strerror(errno));
    DIR *d = fdopendir(fd);
    if (!d) {
        lp_status st = lp_error_set(err, LP_ERR_IO, "folder \"%s\": %s", prefix, strerror(errno));
        close(fd);
        return st;
    }
    lp_status st = LP_OK;
    struct dirent *de;
    while (!st) {
        errno = 0;
        de = readdir(d);
        if (!de) {
            if (errno)
                st = lp_error_set(err, LP_ERR_IO, "read folder \"%s\": %s", prefix,
                                  strerror(errno));
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        size_t n = strlen(prefix) + strlen(de->d_name) + 2;
        char *name = malloc(n);
        if (!name) {
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(name, n, "%s%s%s", prefix, *prefix ? "/" : "", de->d_name);
        st = one_entry(c, dirfd, de->d_name, name, depth, err);
        free(name);
    }
    closedir(d);
    return st;
}

lp_status lp_ingest_dir(lp_ingest_ctx *c, const char *path, lp_error *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO,
                            "open folder %s: %s", path, strerror(errno));
    lp_status st = walk(c, fd, "", 0, err);
    close(fd);
    return st;
}
