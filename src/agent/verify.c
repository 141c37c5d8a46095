/*
 * verify.c — checking an installed release against its manifest.
 *
 * lp_updater_verify checks the whole release before it is activated: every
 * manifest entry must be on disk with its type and mode, files with their
 * size and SHA-256 (streamed through a fixed buffer), symlinks with their
 * target, and nothing else may be there.  A file is read only when the
 * record of checked files (checked.c) does not show it unchanged since its
 * content was last checked: a file staging fetched or copied, or hard-linked
 * from an installed release whose copy was checked and not written since
 * (an app that wrote into its release folder changed the modification
 * time), is not read again.  After a check that read anything, the record
 * is rewritten to cover every file.
 *
 * The walk uses *at() calls on folder descriptors opened with O_NOFOLLOW, in
 * manifest order (a folder sorts before its contents), so a folder replaced
 * by a symlink is reported as such and never followed.  The extra-entry
 * check walks the folders recursively, bounded by the manifest's own depth
 * and size limits.  The first difference is the error, naming the path.
 */
#include "agent/agent.h"

#include "core/file.h"
#include "livepush/hash.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VERIFY_BUF (64u * 1024)
#define MAX_DEPTH 256

typedef struct verifier {
    const lp_manifest *m;
    uint64_t id;
    int dfd;      /* releases/<id> */
    uint8_t *buf; /* VERIFY_BUF bytes */
    size_t seen;  /* entries found by the extra-entry walk */
    lp_agent_fileid *ids; /* per file entry: noted identity, then the one seen */
    size_t file_index;    /* of the entry being checked */
    bool use_record;
    lp_verify_stats stats;
} verifier;

static lp_status differs(verifier *v, lp_status code, const char *path, const char *what,
                         lp_error *err)
{
    return lp_error_set(err, code, "release %llu: %s: %s", (unsigned long long)v->id, path,
                        what);
}

static lp_status check_file(verifier *v, const lp_manifest_entry *e, lp_error *err)
{
    int fd = openat(v->dfd, e->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return differs(v, LP_ERR_IO, e->path, strerror(errno), err);
    lp_hash_ctx *h = NULL;
    lp_status st = lp_hash_new(&h, LP_HASH_SHA256, err);
    uint64_t total = 0;
    while (!st) {
        ssize_t r = read(fd, v->buf, VERIFY_BUF);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            st = differs(v, LP_ERR_IO, e->path, strerror(errno), err);
        if (r <= 0)
            break;
        total += (uint64_t)r;
        if (total > e->size)
            st = differs(v, LP_ERR_LENGTH_MISMATCH, e->path, "longer than the manifest says",
                         err);
        else
            st = lp_hash_update(h, v->buf, (size_t)r, err);
    }
    uint8_t d[LP_HASH_MAX_LEN];
    char hex[LP_BLOB_ID_SIZE];
    if (!st && total != e->size)
        st = differs(v, LP_ERR_LENGTH_MISMATCH, e->path, "shorter than the manifest says", err);
    if (!st && !(st = lp_hash_final(h, d, err))) {
        lp_hex_encode(d, LP_SHA256_LEN, hex);
        if (strcmp(hex, e->sha256) != 0) {
            char what[200];
            snprintf(what, sizeof what, "content has SHA-256 %s, the manifest says %s", hex,
                     e->sha256);
            st = differs(v, LP_ERR_HASH_MISMATCH, e->path, what, err);
        }
    }
    lp_hash_free(h);
    close(fd);
    if (!st) {
        v->stats.files_read++;
        v->stats.bytes_read += total;
    }
    return st;
}

static lp_status check_entry(verifier *v, const lp_manifest_entry *e, lp_error *err)
{
    struct stat sb;
    if (fstatat(v->dfd, e->path, &sb, AT_SYMLINK_NOFOLLOW) != 0)
        return differs(v, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, e->path,
                       strerror(errno), err);
    char what[160];
    switch (e->type) {
    case LP_ENTRY_DIR:
        if (!S_ISDIR(sb.st_mode))
            return differs(v, LP_ERR_STATE, e->path, "not a folder", err);
        break;
    case LP_ENTRY_SYMLINK: {
        if (!S_ISLNK(sb.st_mode))
            return differs(v, LP_ERR_STATE, e->path, "not a symlink", err);
        char target[LP_MANIFEST_MAX_TARGET + 2];
        ssize_t n = readlinkat(v->dfd, e->path, target, sizeof target - 1);
        if (n < 0)
            return differs(v, LP_ERR_IO, e->path, strerror(errno), err);
        target[n] = '\0';
        if (strcmp(target, e->target) != 0)
            return differs(v, LP_ERR_STATE, e->path, "symlink points elsewhere", err);
        return LP_OK;
    }
    case LP_ENTRY_FILE:
        if (!S_ISREG(sb.st_mode))
            return differs(v, LP_ERR_STATE, e->path, "not a regular file", err);
        if ((uint64_t)sb.st_size != e->size) {
            snprintf(what, sizeof what, "%lld bytes, the manifest says %llu",
                     (long long)sb.st_size, (unsigned long long)e->size);
            return differs(v, LP_ERR_LENGTH_MISMATCH, e->path, what, err);
        }
        break;
    }
    if ((sb.st_mode & 07777) != e->mode) {
        snprintf(what, sizeof what, "mode %04o, the manifest says %04o",
                 (unsigned)(sb.st_mode & 07777), (unsigned)e->mode);
        return differs(v, LP_ERR_STATE, e->path, what, err);
    }
    if (e->type != LP_ENTRY_FILE)
        return LP_OK;
    lp_agent_fileid *id = &v->ids[v->file_index++];
    if (v->use_record && lp_agent_fileid_same(id, &sb))
        return LP_OK;
    struct timespec started;
    lp_agent_clock_now(&started);
    lp_status st = check_file(v, e, err);
    /* The identity before reading, if no write can hide behind it: a write
     * during or after the read changes the modification time, so the next
     * check reads the file again. */
    if (!st && lp_agent_fileid_settled(&sb, &started))
        lp_agent_fileid_of(&sb, id);
    else
        id->known = false;
    return st;
}

/* Every entry below folder `fd` (relative path `prefix`, "" for the top)
 * must be listed.  Takes ownership of fd. */
static lp_status walk(verifier *v, int fd, const char *prefix, unsigned depth, lp_error *err)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return differs(v, LP_ERR_IO, *prefix ? prefix : ".", strerror(errno), err);
    }
    lp_status st = LP_OK;
    char path[LP_MANIFEST_MAX_PATH + 1];
    while (!st) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                st = differs(v, LP_ERR_IO, *prefix ? prefix : ".", strerror(errno), err);
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        int n = snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "/" : "", de->d_name);
        const lp_manifest_entry *e = n > 0 && (size_t)n < sizeof path
                                         ? lp_manifest_find(v->m, path)
                                         : NULL;
        if (!e) {
            st = differs(v, LP_ERR_STATE, n > 0 && (size_t)n < sizeof path ? path : de->d_name,
                         "not in the manifest", err);
            break;
        }
        v->seen++;
        if (e->type != LP_ENTRY_DIR)
            continue;
        if (depth >= MAX_DEPTH) {
            st = differs(v, LP_ERR_TOO_LARGE, path, "folders nested too deep", err);
            break;
        }
        int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            st = differs(v, LP_ERR_IO, path, strerror(errno), err);
        else
            st = walk(v, sub, path, depth + 1, err);
    }
    closedir(d);
    return st;
}

static lp_status load_manifest(lp_updater *u, uint64_t id, lp_manifest *m, lp_error *err)
{
    lp_manifest_init(m);
    char *p = lp_agent_path(u, ".livepush/manifests/%llu.json", (unsigned long long)id);
    if (!p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_file_read(p, LP_MANIFEST_MAX_JSON_BYTES, &data, &len, err);
    if (!st)
        st = lp_manifest_from_json(data, len, m, err);
    if (st)
        lp_error_prefix(err, st, "%s", p);
    free(data);
    free(p);
    return st;
}

lp_status lp_updater_verify_stats(lp_updater *u, uint64_t id, lp_verify_stats *stats,
                                  lp_error *err)
{
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (!id || id > LP_AGENT_MAX_ID)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "verifying: no release id given");
    verifier v = {.id = id, .dfd = -1, .use_record = !u->verify_all};
    lp_manifest m;
    lp_status st = load_manifest(u, id, &m, err);
    v.m = &m;
    for (size_t i = 0; !st && i < m.count; i++)
        v.stats.files += m.entries[i].type == LP_ENTRY_FILE;
    if (!st)
        st = lp_agent_checked_load(u, id, (size_t)v.stats.files, &v.ids, err);
    char *dir = st ? NULL : lp_agent_path(u, "releases/%llu", (unsigned long long)id);
    if (!st && (!dir || !(v.buf = malloc(VERIFY_BUF))))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (!st && (v.dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        st = lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "open %s: %s",
                          dir, strerror(errno));
    for (size_t i = 0; !st && i < m.count; i++)
        st = check_entry(&v, &m.entries[i], err);
    if (!st) {
        int top = dup(v.dfd);
        if (top < 0)
            st = lp_error_set(err, LP_ERR_IO, "dup: %s", strerror(errno));
        else if (lseek(top, 0, SEEK_SET) != 0 && errno != ESPIPE)
            st = lp_error_set(err, LP_ERR_IO, "rewind %s: %s", dir, strerror(errno));
        if (!st)
            st = walk(&v, top, "", 0, err);
        else if (top >= 0)
            close(top);
    }
    if (!st && v.seen != m.count)
        st = lp_error_set(err, LP_ERR_STATE,
                          "release %llu: %zu entries on disk, %zu in the manifest",
                          (unsigned long long)id, v.seen, m.count);
    /* A shortcut for later checks, not part of this one: a record that
     * cannot be written (a read-only root) only means reading again. */
    if (!st && v.stats.files_read) {
        lp_error ignored;
        lp_agent_checked_write(u, id, v.ids, (size_t)v.stats.files, &ignored);
    }
    if (stats)
        *stats = v.stats;
    if (v.dfd >= 0)
        close(v.dfd);
    free(v.buf);
    free(v.ids);
    free(dir);
    lp_manifest_free(&m);
    return st;
}

lp_status lp_updater_verify(lp_updater *u, uint64_t id, lp_error *err)
{
    return lp_updater_verify_stats(u, id, NULL, err);
}
