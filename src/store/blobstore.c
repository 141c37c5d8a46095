/*
 * blobstore.c — the content-addressed blob store (see livepush/blobstore.h).
 *
 * Every write is a writer: a temporary file made with mkostemp (so
 * concurrent writers never share one) in tmp/ or in a stage folder, fed in
 * chunks while a SHA-256 context hashes the same bytes.  Commit fsyncs the
 * file, checks the expected hash if one was given, and renames the file to
 * its content address; when that name already exists the temporary file is
 * unlinked instead (the content is identical by construction).  The folder
 * that received the rename is fsync'd, and so is the root when a new
 * two-hex-digit prefix folder was created, so a committed blob survives a
 * crash.
 *
 * A stage is "tmp/stage-XXXXXX" (mkdtemp).  Staged blobs are named by their
 * ID inside it; committing the stage renames each into the store.  A crash
 * before or during that leaves only files under tmp/ (plus, during commit,
 * some complete blobs that no manifest refers to yet — harmless, garbage
 * collection removes unreferenced blobs), and opening the store empties tmp/.
 * A store that several processes share (lp_blobstore_open_shared: servers
 * on one shared folder) cannot empty tmp/ at open, since another process
 * may be writing there: it removes only what has not changed for
 * LP_BLOBSTORE_TMP_MAX_AGE, which no write in progress is.
 *
 * IDs are validated before they are used in any path, so no ID can name a
 * file outside the store.
 */
#include "livepush/blobstore.h"

#include "core/file.h"
#include "livepush/hash.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64u * 1024)

struct lp_blobstore {
    char *root;
    char *tmp;
};

struct lp_blob_stage {
    lp_blobstore *bs;
    char *dir;
    size_t count;
};

struct lp_blob_writer {
    lp_blobstore *bs;
    lp_blob_stage *stage; /* NULL: commit goes to the store */
    int fd;
    char *tmp_path;
    lp_hash_ctx *hash;
    uint64_t size;
};

bool lp_blob_id_valid(const char *id)
{
    if (!id)
        return false;
    for (size_t i = 0; i < LP_BLOB_ID_HEX; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return id[LP_BLOB_ID_HEX] == '\0';
}

/* Removes the entries of folder `dir` (files, and folders one level deep
 * with their files); with older_than > 0 only entries last changed before
 * that time (a folder: itself and everything in it).  Best effort: used for
 * cleaning up. */
static void empty_folder(const char *dir, int depth, time_t older_than)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *p = lp_path_join(dir, de->d_name);
        if (!p)
            break;
        struct stat sb;
        if (lstat(p, &sb) != 0 || (older_than > 0 && sb.st_mtime >= older_than)) {
            /* gone already, or recent: kept */
        } else if (S_ISDIR(sb.st_mode)) {
            if (depth > 0) {
                empty_folder(p, depth - 1, older_than);
                rmdir(p); /* fails, keeping it, when something recent stayed inside */
            }
        } else {
            unlink(p);
        }
        free(p);
    }
    closedir(d);
}

static lp_status open_store(const char *root, time_t older_than, lp_blobstore **out,
                            lp_error *err)
{
    *out = NULL;
    if (!root || !*root)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "blob store: empty folder name");
    lp_blobstore *bs = calloc(1, sizeof *bs);
    if (!bs)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    bs->root = strdup(root);
    bs->tmp = lp_path_join(root, "tmp");
    if (!bs->root || !bs->tmp) {
        lp_blobstore_close(bs);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    lp_status st = lp_file_mkdirs(bs->tmp, 0755, err);
    if (st) {
        lp_blobstore_close(bs);
        return lp_error_prefix(err, st, "blob store %s", root);
    }
    empty_folder(bs->tmp, 1, older_than);
    *out = bs;
    return LP_OK;
}

lp_status lp_blobstore_open(const char *root, lp_blobstore **out, lp_error *err)
{
    return open_store(root, 0, out, err);
}

lp_status lp_blobstore_open_shared(const char *root, lp_blobstore **out, lp_error *err)
{
    return open_store(root, time(NULL) - LP_BLOBSTORE_TMP_MAX_AGE, out, err);
}

void lp_blobstore_close(lp_blobstore *bs)
{
    if (!bs)
        return;
    free(bs->root);
    free(bs->tmp);
    free(bs);
}

const char *lp_blobstore_root(const lp_blobstore *bs)
{
    return bs->root;
}

/* "<root>/<ab>/<id>" into a new string; the ID must be valid. */
static char *blob_path(const lp_blobstore *bs, const char *id)
{
    size_t n = strlen(bs->root) + 3 + LP_BLOB_ID_HEX + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%.2s/%s", bs->root, id, id);
    return p;
}

static lp_status check_id(const char *id, lp_error *err)
{
    if (!lp_blob_id_valid(id))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "blob ID must be 64 lower-case hex digits");
    return LP_OK;
}

/* ---- writers ---------------------------------------------------------- */

static lp_status writer_new(lp_blobstore *bs, lp_blob_stage *stage, lp_blob_writer **out,
                            lp_error *err)
{
    *out = NULL;
    lp_blob_writer *w = calloc(1, sizeof *w);
    if (!w)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    w->bs = bs;
    w->stage = stage;
    w->fd = -1;
    const char *dir = stage ? stage->dir : bs->tmp;
    size_t n = strlen(dir) + 32;
    w->tmp_path = malloc(n);
    if (!w->tmp_path) {
        free(w);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    snprintf(w->tmp_path, n, "%s/part-XXXXXX", dir);
    lp_status st = lp_hash_new(&w->hash, LP_HASH_SHA256, err);
    if (st) {
        free(w->tmp_path);
        free(w);
        return st;
    }
    w->fd = mkostemp(w->tmp_path, O_CLOEXEC);
    if (w->fd < 0) {
        st = lp_error_set(err, LP_ERR_IO, "create temporary blob in %s: %s", dir,
                          strerror(errno));
        lp_hash_free(w->hash);
        free(w->tmp_path);
        free(w);
        return st;
    }
    if (fchmod(w->fd, 0644) != 0) {
        st = lp_error_set(err, LP_ERR_IO, "chmod %s: %s", w->tmp_path, strerror(errno));
        lp_blob_writer_abort(w);
        return st;
    }
    *out = w;
    return LP_OK;
}

lp_status lp_blobstore_writer(lp_blobstore *bs, lp_blob_writer **out, lp_error *err)
{
    return writer_new(bs, NULL, out, err);
}

lp_status lp_blob_writer_write(lp_blob_writer *w, const void *data, size_t len, lp_error *err)
{
    lp_status st = lp_hash_update(w->hash, data, len, err);
    if (st)
        return st;
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t n = write(w->fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return lp_error_set(err, LP_ERR_IO, "write %s: %s", w->tmp_path, strerror(errno));
        p += n;
        left -= (size_t)n;
    }
    w->size += len;
    return LP_OK;
}

uint64_t lp_blob_writer_size(const lp_blob_writer *w)
{
    return w->size;
}

void lp_blob_writer_abort(lp_blob_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp_path)
        unlink(w->tmp_path);
    lp_hash_free(w->hash);
    free(w->tmp_path);
    free(w);
}

static lp_status sync_folder(const char *dir, lp_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return lp_error_set(err, LP_ERR_IO, "open folder %s: %s", dir, strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "fsync folder %s: %s", dir, strerror(e));
    }
    close(fd);
    return LP_OK;
}

/* Moves file `src` to blob `id` in the store, or unlinks it if that blob
 * exists.  Creates the prefix folder when missing. */
static lp_status move_into_store(lp_blobstore *bs, const char *src, const char *id, lp_error *err)
{
    char *dst = blob_path(bs, id);
    if (!dst)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_status st = LP_OK;
    if (lp_file_exists(dst)) {
        unlink(src);
        free(dst);
        return LP_OK;
    }
    char *dir = strdup(dst);
    if (!dir) {
        free(dst);
        unlink(src);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    dir[strlen(bs->root) + 3] = '\0';
    if (mkdir(dir, 0755) == 0) {
        st = sync_folder(bs->root, err);
    } else if (errno != EEXIST) {
        st = lp_error_set(err, LP_ERR_IO, "mkdir %s: %s", dir, strerror(errno));
    }
    if (!st && rename(src, dst) != 0)
        st = lp_error_set(err, LP_ERR_IO, "rename %s to %s: %s", src, dst, strerror(errno));
    if (!st)
        st = sync_folder(dir, err);
    else
        unlink(src);
    free(dir);
    free(dst);
    return st;
}

lp_status lp_blob_writer_commit(lp_blob_writer *w, const char *expect, char *id_out,
                                uint64_t *size_out, lp_error *err)
{
    if (expect && !lp_blob_id_valid(expect)) {
        lp_blob_writer_abort(w);
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "expected SHA-256 must be 64 lower-case hex digits");
    }
    uint8_t digest[LP_HASH_MAX_LEN];
    char id[LP_BLOB_ID_SIZE];
    lp_status st = lp_hash_final(w->hash, digest, err);
    if (st) {
        lp_blob_writer_abort(w);
        return st;
    }
    lp_hex_encode(digest, LP_SHA256_LEN, id);
    if (expect && strcmp(expect, id) != 0) {
        lp_blob_writer_abort(w);
        return lp_error_set(err, LP_ERR_HASH_MISMATCH,
                            "blob content has SHA-256 %s, expected %s", id, expect);
    }
    if (fsync(w->fd) != 0) {
        st = lp_error_set(err, LP_ERR_IO, "fsync %s: %s", w->tmp_path, strerror(errno));
        lp_blob_writer_abort(w);
        return st;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) {
        st = lp_error_set(err, LP_ERR_IO, "close %s: %s", w->tmp_path, strerror(errno));
        lp_blob_writer_abort(w);
        return st;
    }
    uint64_t size = w->size;
    if (w->stage) {
        size_t n = strlen(w->stage->dir) + LP_BLOB_ID_HEX + 2;
        char *dst = malloc(n);
        if (!dst) {
            lp_blob_writer_abort(w);
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        }
        snprintf(dst, n, "%s/%s", w->stage->dir, id);
        if (lp_file_exists(dst)) {
            unlink(w->tmp_path);
        } else if (rename(w->tmp_path, dst) != 0) {
            st = lp_error_set(err, LP_ERR_IO, "rename %s to %s: %s", w->tmp_path, dst,
                              strerror(errno));
            unlink(w->tmp_path);
        } else {
            w->stage->count++;
        }
        free(dst);
    } else {
        st = move_into_store(w->bs, w->tmp_path, id, err);
    }
    free(w->tmp_path);
    w->tmp_path = NULL;
    lp_blob_writer_abort(w);
    if (st)
        return st;
    if (id_out)
        memcpy(id_out, id, LP_BLOB_ID_SIZE);
    if (size_out)
        *size_out = size;
    return LP_OK;
}

/* ---- whole-content puts ----------------------------------------------- */

lp_status lp_blobstore_put_mem(lp_blobstore *bs, const void *data, size_t len,
                               const char *expect, char *id_out, lp_error *err)
{
    lp_blob_writer *w;
    lp_status st = lp_blobstore_writer(bs, &w, err);
    if (st)
        return st;
    st = lp_blob_writer_write(w, data, len, err);
    if (st) {
        lp_blob_writer_abort(w);
        return st;
    }
    return lp_blob_writer_commit(w, expect, id_out, NULL, err);
}

lp_status lp_blobstore_put_fd(lp_blobstore *bs, int fd, uint64_t max_bytes, const char *expect,
                              char *id_out, uint64_t *size_out, lp_error *err)
{
    uint8_t *buf = malloc(CHUNK);
    if (!buf)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_blob_writer *w;
    lp_status st = lp_blobstore_writer(bs, &w, err);
    while (!st) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = lp_error_set(err, LP_ERR_IO, "read: %s", strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (max_bytes && w->size + (uint64_t)n > max_bytes) {
            st = lp_error_set(err, LP_ERR_TOO_LARGE, "content exceeds the limit of %llu bytes",
                              (unsigned long long)max_bytes);
            break;
        }
        st = lp_blob_writer_write(w, buf, (size_t)n, err);
    }
    free(buf);
    if (st) {
        lp_blob_writer_abort(w);
        return st;
    }
    return lp_blob_writer_commit(w, expect, id_out, size_out, err);
}

lp_status lp_blobstore_put_file(lp_blobstore *bs, const char *path, uint64_t max_bytes,
                                const char *expect, char *id_out, uint64_t *size_out,
                                lp_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "open %s: %s",
                            path, strerror(errno));
    lp_status st = lp_blobstore_put_fd(bs, fd, max_bytes, expect, id_out, size_out, err);
    close(fd);
    if (st)
        return lp_error_prefix(err, st, "%s", path);
    return LP_OK;
}

/* ---- reading ---------------------------------------------------------- */

bool lp_blobstore_has(lp_blobstore *bs, const char *id)
{
    if (!lp_blob_id_valid(id))
        return false;
    char *p = blob_path(bs, id);
    if (!p)
        return false;
    struct stat sb;
    bool ok = lstat(p, &sb) == 0 && S_ISREG(sb.st_mode);
    free(p);
    return ok;
}

static lp_status stat_blob(lp_blobstore *bs, const char *id, char **path, struct stat *sb,
                           lp_error *err)
{
    lp_status st = check_id(id, err);
    if (st)
        return st;
    *path = blob_path(bs, id);
    if (!*path)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (lstat(*path, sb) != 0 || !S_ISREG(sb->st_mode)) {
        free(*path);
        *path = NULL;
        return lp_error_set(err, LP_ERR_NOT_FOUND, "blob %s: not in the store", id);
    }
    return LP_OK;
}

lp_status lp_blobstore_path_of(lp_blobstore *bs, const char *id, char **path_out, lp_error *err)
{
    struct stat sb;
    return stat_blob(bs, id, path_out, &sb, err);
}

lp_status lp_blobstore_size(lp_blobstore *bs, const char *id, uint64_t *size_out, lp_error *err)
{
    char *p;
    struct stat sb;
    lp_status st = stat_blob(bs, id, &p, &sb, err);
    if (st)
        return st;
    free(p);
    *size_out = (uint64_t)sb.st_size;
    return LP_OK;
}

lp_status lp_blobstore_open_blob(lp_blobstore *bs, const char *id, int *fd_out,
                                 uint64_t *size_out, lp_error *err)
{
    *fd_out = -1;
    lp_status st = check_id(id, err);
    if (st)
        return st;
    char *p = blob_path(bs, id);
    if (!p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        st = lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "blob %s: %s",
                          id, errno == ENOENT ? "not in the store" : strerror(errno));
        free(p);
        return st;
    }
    free(p);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "blob %s: not a regular file", id);
    }
    if (size_out)
        *size_out = (uint64_t)sb.st_size;
    *fd_out = fd;
    return LP_OK;
}

lp_status lp_blobstore_remove(lp_blobstore *bs, const char *id, lp_error *err)
{
    lp_status st = check_id(id, err);
    if (st)
        return st;
    char *p = blob_path(bs, id);
    if (!p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (unlink(p) != 0) {
        st = lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "remove blob %s: %s",
                          id, strerror(errno));
        free(p);
        return st;
    }
    p[strlen(bs->root) + 3] = '\0';
    st = sync_folder(p, err);
    free(p);
    return st;
}

/* ---- staging ---------------------------------------------------------- */

lp_status lp_blob_stage_open(lp_blobstore *bs, lp_blob_stage **out, lp_error *err)
{
    *out = NULL;
    lp_blob_stage *s = calloc(1, sizeof *s);
    if (!s)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    size_t n = strlen(bs->tmp) + 32;
    s->dir = malloc(n);
    if (!s->dir) {
        free(s);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    snprintf(s->dir, n, "%s/stage-XXXXXX", bs->tmp);
    if (!mkdtemp(s->dir)) {
        lp_status st = lp_error_set(err, LP_ERR_IO, "create staging folder in %s: %s", bs->tmp,
                                    strerror(errno));
        free(s->dir);
        free(s);
        return st;
    }
    s->bs = bs;
    *out = s;
    return LP_OK;
}

lp_status lp_blob_stage_writer(lp_blob_stage *stage, lp_blob_writer **out, lp_error *err)
{
    return writer_new(stage->bs, stage, out, err);
}

size_t lp_blob_stage_count(const lp_blob_stage *stage)
{
    return stage->count;
}

lp_status lp_blob_stage_commit(lp_blob_stage *stage, lp_error *err)
{
    DIR *d = opendir(stage->dir);
    if (!d) {
        lp_status st = lp_error_set(err, LP_ERR_IO, "open staging folder %s: %s", stage->dir,
                                    strerror(errno));
        lp_blob_stage_discard(stage);
        return st;
    }
    lp_status st = LP_OK;
    struct dirent *de;
    while (!st && (de = readdir(d)) != NULL) {
        if (!lp_blob_id_valid(de->d_name))
            continue;
        char *src = lp_path_join(stage->dir, de->d_name);
        if (!src) {
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
            break;
        }
        st = move_into_store(stage->bs, src, de->d_name, err);
        free(src);
    }
    closedir(d);
    lp_blob_stage_discard(stage);
    return st;
}

void lp_blob_stage_discard(lp_blob_stage *stage)
{
    if (!stage)
        return;
    empty_folder(stage->dir, 0, 0);
    rmdir(stage->dir);
    free(stage->dir);
    free(stage);
}
