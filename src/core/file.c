/*
 * file.c — bounded reads and atomic writes (see file.h).
 *
 * The write protocol: create "<name>.tmp-XXXXXX" in the target folder
 * (mkstemp, so concurrent writers never share a temp file), write all bytes,
 * fsync, rename(2) over the final name, then fsync the folder so the rename
 * itself is durable.
 */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

lp_status lp_file_read(const char *path, size_t max, uint8_t **data, size_t *len, lp_error *err)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "open %s: %s",
                            path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > max) {
        close(fd);
        return lp_error_set(err, LP_ERR_TOO_LARGE, "%s: %lld bytes exceeds the limit of %zu", path,
                            (long long)sb.st_size, max);
    }
    size_t cap = (size_t)sb.st_size;
    uint8_t *p = malloc(cap + 1);
    if (!p) {
        close(fd);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory reading %s", path);
    }
    size_t got = 0;
    for (;;) {
        if (got == cap) {
            /* The file may have grown since fstat: probe one more byte. */
            char probe;
            ssize_t r = read(fd, &probe, 1);
            if (r == 0)
                break;
            if (r < 0 && errno == EINTR)
                continue;
            free(p);
            close(fd);
            if (r < 0)
                return lp_error_set(err, LP_ERR_IO, "read %s: %s", path, strerror(errno));
            return lp_error_set(err, LP_ERR_IO, "%s: changed while being read", path);
        }
        ssize_t r = read(fd, p + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(p);
            close(fd);
            return lp_error_set(err, LP_ERR_IO, "read %s: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    p[got] = 0;
    *data = p;
    *len = got;
    return LP_OK;
}

lp_status lp_file_sync_parent(const char *path, lp_error *err)
{
    char *copy = strdup(path);
    if (!copy)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        lp_status st = lp_error_set(err, LP_ERR_IO, "open folder %s: %s", dir, strerror(errno));
        free(copy);
        return st;
    }
    if (fsync(fd) != 0 && errno != EINVAL) {
        lp_status st = lp_error_set(err, LP_ERR_IO, "fsync folder %s: %s", dir, strerror(errno));
        close(fd);
        free(copy);
        return st;
    }
    close(fd);
    free(copy);
    return LP_OK;
}

lp_status lp_file_open_tmp(const char *final_path, mode_t mode, char *tmp_path, size_t tmp_cap,
                           int *fd, lp_error *err)
{
    int n = snprintf(tmp_path, tmp_cap, "%s.tmp-XXXXXX", final_path);
    if (n < 0 || (size_t)n >= tmp_cap)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "path too long: %s", final_path);
    *fd = mkostemp(tmp_path, O_CLOEXEC);
    if (*fd < 0)
        return lp_error_set(err, LP_ERR_IO, "create temporary file for %s: %s", final_path,
                            strerror(errno));
    if (fchmod(*fd, mode) != 0) {
        int e = errno;
        close(*fd);
        unlink(tmp_path);
        return lp_error_set(err, LP_ERR_IO, "chmod %s: %s", tmp_path, strerror(e));
    }
    return LP_OK;
}

lp_status lp_file_rename_tmp(int fd, const char *tmp_path, const char *final_path,
                             lp_error *err)
{
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp_path);
        return lp_error_set(err, LP_ERR_IO, "close %s: %s", tmp_path, strerror(e));
    }
    if (rename(tmp_path, final_path) != 0) {
        int e = errno;
        unlink(tmp_path);
        return lp_error_set(err, LP_ERR_IO, "rename %s to %s: %s", tmp_path, final_path,
                            strerror(e));
    }
    return LP_OK;
}

lp_status lp_file_commit_tmp(int fd, const char *tmp_path, const char *final_path, lp_error *err)
{
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp_path);
        return lp_error_set(err, LP_ERR_IO, "fsync %s: %s", tmp_path, strerror(e));
    }
    lp_status st = lp_file_rename_tmp(fd, tmp_path, final_path, err);
    return st ? st : lp_file_sync_parent(final_path, err);
}

lp_status lp_file_write_all(int fd, const void *data, size_t len, const char *what,
                            lp_error *err)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return lp_error_set(err, LP_ERR_IO, "write %s: %s", what, strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    return LP_OK;
}

lp_status lp_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                               lp_error *err)
{
    size_t cap = strlen(path) + 32;
    char *tmp = malloc(cap);
    if (!tmp)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    int fd;
    lp_status st = lp_file_open_tmp(path, mode, tmp, cap, &fd, err);
    if (st) {
        free(tmp);
        return st;
    }
    if ((st = lp_file_write_all(fd, data, len, path, err))) {
        close(fd);
        unlink(tmp);
        free(tmp);
        return st;
    }
    st = lp_file_commit_tmp(fd, tmp, path, err);
    free(tmp);
    return st;
}

lp_status lp_file_mkdirs(const char *path, mode_t mode, lp_error *err)
{
    char *p = strdup(path);
    if (!p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            lp_status st = lp_error_set(err, LP_ERR_IO, "mkdir %s: %s", p, strerror(errno));
            free(p);
            return st;
        }
        p[i] = c;
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        free(p);
        return lp_error_set(err, LP_ERR_IO, "%s: not a folder", path);
    }
    free(p);
    return LP_OK;
}

char *lp_path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la > 1 && a[la - 1] == '/')
        la--;
    while (lb && *b == '/') {
        b++;
        lb--;
    }
    char *r = malloc(la + lb + 2);
    if (!r)
        return NULL;
    memcpy(r, a, la);
    r[la] = '/';
    memcpy(r + la + 1, b, lb);
    r[la + lb + 1] = 0;
    return r;
}

int lp_file_exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}
