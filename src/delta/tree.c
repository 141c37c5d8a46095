/*
 * tree.c — planning a tree: which base each file of a new release is sent
 * against (see the tree section of include/livepush/delta.h), and the
 * description of a folder as a manifest without storing its content.
 *
 * Planning indexes the old tree's file entries four ways (by path, base
 * name, extension and content digest), each sorted by key and then path, so
 * every lookup is a binary search and every choice is deterministic: the
 * same two manifests always give the same plan.  For each new file: content
 * found -> SAME; else the base rules in order -> DELTA; else NEW.
 *
 * The folder scan walks relative to open folder descriptors (openat,
 * fstatat with AT_SYMLINK_NOFOLLOW, readlinkat), like the folder ingest of
 * src/bundle: links are recorded and never followed, a regular file is
 * opened with O_NOFOLLOW and its identity compared with what fstatat saw,
 * other file types are refused by name, and lp_manifest_finish checks the
 * whole (paths, link targets that stay inside the tree).
 */
#include "livepush/delta.h"
#include "livepush/hash.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- planning ----------------------------------------------------------- */

typedef struct keyed {
    const char *key;
    const lp_manifest_entry *e;
} keyed;

static int keyed_cmp(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return strcmp(x->e->path, y->e->path); /* a total order: same input, same choice */
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The extension of a path's base name without the dot; "" when there is
 * none (no dot, or only a leading one). */
static const char *extension(const char *path)
{
    const char *b = base_name(path);
    const char *dot = strrchr(b, '.');
    return dot && dot != b ? dot + 1 : b + strlen(b);
}

typedef struct oindex {
    keyed *by_path, *by_name, *by_ext, *by_sha;
    size_t n;
} oindex;

static void oindex_free(oindex *x)
{
    free(x->by_path);
    free(x->by_name);
    free(x->by_ext);
    free(x->by_sha);
    memset(x, 0, sizeof *x);
}

static lp_status oindex_build(const lp_manifest *m, oindex *x, lp_error *err)
{
    memset(x, 0, sizeof *x);
    size_t n = 0;
    for (size_t i = 0; i < m->count; i++)
        n += m->entries[i].type == LP_ENTRY_FILE;
    size_t alloc = n ? n : 1;
    x->by_path = calloc(alloc, sizeof *x->by_path);
    x->by_name = calloc(alloc, sizeof *x->by_name);
    x->by_ext = calloc(alloc, sizeof *x->by_ext);
    x->by_sha = calloc(alloc, sizeof *x->by_sha);
    if (!x->by_path || !x->by_name || !x->by_ext || !x->by_sha) {
        oindex_free(x);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory indexing the old tree");
    }
    for (size_t i = 0; i < m->count; i++) {
        const lp_manifest_entry *e = &m->entries[i];
        if (e->type != LP_ENTRY_FILE)
            continue;
        x->by_path[x->n] = (keyed){e->path, e};
        x->by_name[x->n] = (keyed){base_name(e->path), e};
        x->by_ext[x->n] = (keyed){extension(e->path), e};
        x->by_sha[x->n] = (keyed){e->sha256, e};
        x->n++;
    }
    qsort(x->by_path, x->n, sizeof *x->by_path, keyed_cmp);
    qsort(x->by_name, x->n, sizeof *x->by_name, keyed_cmp);
    qsort(x->by_ext, x->n, sizeof *x->by_ext, keyed_cmp);
    qsort(x->by_sha, x->n, sizeof *x->by_sha, keyed_cmp);
    return LP_OK;
}

/* Index of the first element of a[0..n) whose key is `key`, or n. */
static size_t lower_bound(const keyed *a, size_t n, const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(a[mid].key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && !strcmp(a[lo].key, key) ? lo : n;
}

static uint64_t size_distance(uint64_t a, uint64_t b) { return a > b ? a - b : b - a; }

static bool usable(const lp_manifest_entry *e)
{
    return e->size > 0 && e->size <= LP_DELTA_MAX_SIZE;
}

/* Among the entries of a[] with key `key`, the usable one closest in size
 * to `size` (within a factor of 2 when `factor2`), or NULL. */
static const lp_manifest_entry *closest(const keyed *a, size_t n, const char *key, uint64_t size,
                                        bool factor2)
{
    const lp_manifest_entry *best = NULL;
    for (size_t i = lower_bound(a, n, key); i < n && !strcmp(a[i].key, key); i++) {
        const lp_manifest_entry *e = a[i].e;
        if (!usable(e))
            continue;
        if (factor2 && (e->size > 2 * size || size > 2 * e->size))
            continue;
        if (!best || size_distance(e->size, size) < size_distance(best->size, size))
            best = e;
    }
    return best;
}

static void plan_one(const oindex *o, const lp_manifest_entry *f, lp_delta_tree_item *it)
{
    *it = (lp_delta_tree_item){.file = f, .kind = LP_DELTA_TREE_NEW};
    size_t i = lower_bound(o->by_sha, o->n, f->sha256);
    if (i < o->n) {
        it->kind = LP_DELTA_TREE_SAME;
        it->base = o->by_sha[i].e;
        return;
    }
    if (!usable(f))
        return;
    i = lower_bound(o->by_path, o->n, f->path);
    if (i < o->n && usable(o->by_path[i].e)) {
        *it = (lp_delta_tree_item){f, LP_DELTA_TREE_DELTA, o->by_path[i].e, 1};
        return;
    }
    const lp_manifest_entry *b = closest(o->by_name, o->n, base_name(f->path), f->size, false);
    if (b) {
        *it = (lp_delta_tree_item){f, LP_DELTA_TREE_DELTA, b, 2};
        return;
    }
    b = closest(o->by_ext, o->n, extension(f->path), f->size, true);
    if (b)
        *it = (lp_delta_tree_item){f, LP_DELTA_TREE_DELTA, b, 3};
}

lp_status lp_delta_tree_plan_make(const lp_manifest *old, const lp_manifest *new_,
                                  lp_delta_tree_plan *plan, lp_error *err)
{
    memset(plan, 0, sizeof *plan);
    size_t n = 0;
    for (size_t i = 0; i < new_->count; i++)
        n += new_->entries[i].type == LP_ENTRY_FILE;
    oindex o;
    lp_status st = oindex_build(old, &o, err);
    if (st)
        return st;
    plan->items = calloc(n ? n : 1, sizeof *plan->items);
    if (!plan->items) {
        oindex_free(&o);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory planning a tree");
    }
    for (size_t i = 0; i < new_->count; i++)
        if (new_->entries[i].type == LP_ENTRY_FILE)
            plan_one(&o, &new_->entries[i], &plan->items[plan->count++]);
    oindex_free(&o);
    return LP_OK;
}

void lp_delta_tree_plan_free(lp_delta_tree_plan *plan)
{
    if (!plan)
        return;
    free(plan->items);
    memset(plan, 0, sizeof *plan);
}

/* ---- describing a folder -------------------------------------------------- */

#define SCAN_CHUNK (1u << 20)

typedef struct scan {
    lp_manifest *m;
    uint8_t *buf; /* SCAN_CHUNK bytes */
    size_t entries;
} scan;

static lp_status scan_walk(scan *c, int dirfd, const char *prefix, int depth, lp_error *err);

static lp_status scan_file(scan *c, int fd, const char *name, uint32_t mode, lp_error *err)
{
    lp_hash_ctx *h = NULL;
    uint64_t size = 0;
    lp_status st = lp_hash_new(&h, LP_HASH_SHA256, err);
    while (!st) {
        ssize_t n = read(fd, c->buf, SCAN_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = lp_error_set(err, LP_ERR_IO, "entry \"%s\": read: %s", name, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        size += (uint64_t)n;
        st = lp_hash_update(h, c->buf, (size_t)n, err);
    }
    uint8_t d[LP_HASH_MAX_LEN];
    if (!st)
        st = lp_hash_final(h, d, err);
    lp_hash_free(h);
    if (st)
        return st;
    char hex[65];
    lp_hex_encode(d, 32, hex);
    return lp_manifest_add_file(c->m, name, mode, size, hex, err);
}

static lp_status scan_entry(scan *c, int dirfd, const char *base, const char *name, int depth,
                            lp_error *err)
{
    lp_status st = lp_manifest_check_path(name, 0, err);
    if (st)
        return lp_error_prefix(err, st, "entry \"%.256s\"", name);
    if (++c->entries > LP_MANIFEST_MAX_ENTRIES)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "entry \"%s\": more than %d entries", name,
                            LP_MANIFEST_MAX_ENTRIES);
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
        st = scan_file(c, fd, name, (uint32_t)sb.st_mode, err);
        close(fd);
        return st;
    }
    if (S_ISLNK(sb.st_mode)) {
        char t[LP_MANIFEST_MAX_TARGET + 2];
        ssize_t n = readlinkat(dirfd, base, t, sizeof t);
        if (n < 0)
            return lp_error_set(err, LP_ERR_IO, "entry \"%s\": readlink: %s", name,
                                strerror(errno));
        if ((size_t)n >= sizeof t - 1)
            return lp_error_set(err, LP_ERR_TOO_LARGE,
                                "symlink \"%s\": target exceeds the limit of %d bytes", name,
                                LP_MANIFEST_MAX_TARGET);
        t[n] = '\0';
        st = lp_manifest_check_target(name, t, 0, err);
        return st ? st : lp_manifest_add_symlink(c->m, name, t, err);
    }
    if (S_ISDIR(sb.st_mode)) {
        st = lp_manifest_add_dir(c->m, name, err);
        if (st)
            return st;
        int sub = openat(dirfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            return lp_error_set(err, LP_ERR_IO, "entry \"%s\": open folder: %s", name,
                                strerror(errno));
        st = scan_walk(c, sub, name, depth + 1, err);
        close(sub);
        return st;
    }
    return lp_error_set(err, LP_ERR_MALFORMED,
                        "entry \"%s\": not a regular file, symlink or folder", name);
}

static lp_status scan_walk(scan *c, int dirfd, const char *prefix, int depth, lp_error *err)
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
    while (!st) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                st = lp_error_set(err, LP_ERR_IO, "read folder \"%s\": %s", prefix,
                                  strerror(errno));
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        size_t n = strlen(prefix) + strlen(de->d_name) + 2;
        char *name = malloc(n);
        if (!name) {
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(name, n, "%s%s%s", prefix, *prefix ? "/" : "", de->d_name);
        st = scan_entry(c, dirfd, de->d_name, name, depth, err);
        free(name);
    }
    closedir(d);
    return st;
}

lp_status lp_delta_tree_scan(const char *dir, lp_manifest *m, lp_error *err)
{
    lp_manifest_init(m);
    scan c = {.m = m, .buf = malloc(SCAN_CHUNK)};
    if (!c.buf)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_status st;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        st = lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO,
                          "open folder %s: %s", dir, strerror(errno));
    } else {
        st = scan_walk(&c, fd, "", 0, err);
        close(fd);
        if (!st)
            st = lp_manifest_finish(m, err);
        if (st)
            lp_error_prefix(err, st, "folder %s", dir);
    }
    free(c.buf);
    if (st)
        lp_manifest_free(m);
    return st;
}
