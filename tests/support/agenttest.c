/*
 * agenttest.c — fixtures for the updater's tests (see agenttest.h).
 *
 * The tree check walks the folder with fstatat/readlinkat relative to the
 * release folder (never following symlinks) and hashes files with the
 * library's streaming hash, so it compares what is on disk with what the
 * manifest promises, byte for byte.
 */
#include "agenttest.h"

#include "core/file.h"
#include "livepush/hash.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int agt_make_release(lp_blobstore *bs, const agt_entry *entries, size_t n, lp_manifest *m)
{
    lp_manifest_init(m);
    lp_error err;
    for (size_t i = 0; i < n; i++) {
        const agt_entry *e = &entries[i];
        lp_status st;
        if (e->target) {
            st = lp_manifest_add_symlink(m, e->path, e->target, &err);
        } else if (e->content) {
            char id[LP_BLOB_ID_SIZE];
            st = lp_blobstore_put_mem(bs, e->content, strlen(e->content), NULL, id, &err);
            if (!st)
                st = lp_manifest_add_file(m, e->path, e->mode ? e->mode : 0644,
                                          strlen(e->content), id, &err);
        } else {
            st = lp_manifest_add_dir(m, e->path, &err);
        }
        if (st) {
            fprintf(stderr, "release entry %s: %s\n", e->path, err.msg);
            lp_manifest_free(m);
            return -1;
        }
    }
    if (lp_manifest_finish(m, &err)) {
        fprintf(stderr, "finishing manifest: %s\n", err.msg);
        lp_manifest_free(m);
        return -1;
    }
    return 0;
}

lp_status agt_fetch(void *ctx, const char *sha256, uint64_t size, const char *dest_path,
                    lp_error *err)
{
    agt_source *src = ctx;
    (void)size;
    int in;
    lp_status st = lp_blobstore_open_blob(src->bs, sha256, &in, NULL, err);
    if (st)
        return st;
    int out = open(dest_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return lp_error_set(err, LP_ERR_IO, "create %s: %s", dest_path, strerror(errno));
    }
    bool tamper = src->tamper && strcmp(src->tamper_sha, sha256) == 0;
    char buf[8192];
    ssize_t r;
    bool first = true;
    while ((r = read(in, buf, sizeof buf)) > 0) {
        if (tamper && first && src->tamper == AGT_TAMPER_FLIP)
            buf[0] ^= 0x20;
        first = false;
        if (write(out, buf, (size_t)r) != r) {
            r = -1;
            break;
        }
    }
    if (r == 0 && tamper && src->tamper == AGT_TAMPER_APPEND)
        r = write(out, "!", 1) == 1 ? 0 : -1;
    if (r == 0 && fsync(out) != 0)
        r = -1;
    close(in);
    close(out);
    if (r != 0) {
        unlink(dest_path);
        return lp_error_set(err, LP_ERR_IO, "copy blob %s: %s", sha256, strerror(errno));
    }
    src->fetches++;
    return LP_OK;
}

static int fail(const char *dir, const char *path, const char *what)
{
    fprintf(stderr, "tree %s: %s: %s\n", dir, path, what);
    return -1;
}

/* Counts entries below `path` (relative to dfd), recursively. */
static int count_tree(int dfd, const char *path)
{
    int fd = openat(dfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        n++;
        if (de->d_type == DT_DIR) {
            char sub[2048];
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            int k = count_tree(dfd, sub);
            if (k < 0) {
                closedir(d);
                return -1;
            }
            n += k;
        }
    }
    closedir(d);
    return n;
}

int agt_check_tree(const char *dir, const lp_manifest *m)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0)
        return fail(dir, ".", strerror(errno));
    int rc = 0;
    for (size_t i = 0; i < m->count && rc == 0; i++) {
        const lp_manifest_entry *e = &m->entries[i];
        struct stat sb;
        if (fstatat(dfd, e->path, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = fail(dir, e->path, strerror(errno));
            break;
        }
        if (e->type == LP_ENTRY_DIR) {
            if (!S_ISDIR(sb.st_mode) || (sb.st_mode & 07777) != 0755)
                rc = fail(dir, e->path, "not a folder with mode 0755");
        } else if (e->type == LP_ENTRY_SYMLINK) {
            char t[2048];
            ssize_t n = readlinkat(dfd, e->path, t, sizeof t - 1);
            if (!S_ISLNK(sb.st_mode) || n < 0)
                rc = fail(dir, e->path, "not a symlink");
            else {
                t[n] = 0;
                if (strcmp(t, e->target) != 0)
                    rc = fail(dir, e->path, "wrong symlink target");
            }
        } else {
            if (!S_ISREG(sb.st_mode) || (uint32_t)(sb.st_mode & 07777) != e->mode ||
                (uint64_t)sb.st_size != e->size) {
                rc = fail(dir, e->path, "not a file with the listed mode and size");
                break;
            }
            char *p = lp_path_join(dir, e->path);
            uint8_t d[LP_HASH_MAX_LEN];
            char hex[LP_BLOB_ID_SIZE];
            lp_error err;
            if (!p || lp_hash_file(LP_HASH_SHA256, p, d, NULL, &err) != LP_OK)
                rc = fail(dir, e->path, "cannot hash");
            else {
                lp_hex_encode(d, LP_SHA256_LEN, hex);
                if (strcmp(hex, e->sha256) != 0)
                    rc = fail(dir, e->path, "content differs from the manifest");
            }
            free(p);
        }
    }
    if (rc == 0) {
        int n = count_tree(dfd, ".");
        if (n != (int)m->count) {
            fprintf(stderr, "tree %s: %d entries on disk, %zu in the manifest\n", dir, n,
                    m->count);
            rc = -1;
        }
    }
    close(dfd);
    return rc;
}

int agt_check_current(const char *root, uint64_t id, const lp_manifest *m)
{
    char link[4096], want[64], target[128];
    snprintf(link, sizeof link, "%s/current", root);
    snprintf(want, sizeof want, "releases/%llu", (unsigned long long)id);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0) {
        fprintf(stderr, "readlink %s: %s\n", link, strerror(errno));
        return -1;
    }
    target[n] = 0;
    if (strcmp(target, want) != 0) {
        fprintf(stderr, "%s points to %s, expected %s\n", link, target, want);
        return -1;
    }
    return agt_check_tree(link, m);
}

int agt_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

lp_updater_config agt_config(const char *root)
{
    lp_updater_config cfg = {0};
    cfg.root = root;
    cfg.hook_timeout_ms = 5000;
    cfg.hook_kill_grace_ms = 500;
    return cfg;
}

lp_updater *agt_open(const lp_updater_config *cfg)
{
    lp_updater *u = NULL;
    lp_error err;
    if (lp_updater_open(cfg, &u, &err) != LP_OK) {
        fprintf(stderr, "open %s: %s\n", cfg->root, err.msg);
        return NULL;
    }
    return u;
}

int agt_install(lp_updater *u, const lp_manifest *m, uint64_t id, const char *version,
                agt_source *src)
{
    lp_error err;
    lp_stage_opts opts = {.version = version};
    if (lp_updater_stage(u, m, id, &opts, agt_fetch, src, NULL, &err) != LP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    if (lp_updater_activate(u, id, &err) != LP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

int agt_write_hook(const char *dir, const char *name, const char *body)
{
    char *p = lp_path_join(dir, name);
    if (!p)
        return -1;
    size_t n = strlen(body) + 32;
    char *text = malloc(n);
    snprintf(text, n, "#!/bin/sh\n%s\n", body);
    int rc = lp_test_write_str(p, text);
    if (rc == 0 && chmod(p, 0755) != 0)
        rc = -1;
    free(text);
    free(p);
    return rc;
}
