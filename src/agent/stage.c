/*
 * stage.c — building a release next to the installed ones.
 *
 * lp_updater_stage turns a verified tree manifest into <root>/releases/<id>/:
 *
 *   1. Plan.  The manifests of the installed releases are loaded and their
 *      file entries sorted by SHA-256; so are the new release's.  For each
 *      new file (in SHA order, so equal contents sit together) the plan picks
 *      a hard link from a file with the same content and mode (an installed
 *      one whose size lstat confirms, or one staged just before in the same
 *      release), else a copy from a file with the same content (a hard link
 *      would change the mode of the shared inode), else a fetch.
 *   2. Free space (statvfs of the staging folder): the bytes to copy or fetch,
 *      rounded to 4 KiB blocks, + 4 KiB per entry + the manifest +
 *      reserve_bytes; and one inode per entry.
 *   3. Build staging/<id>/: folders and symlinks in manifest order (a parent
 *      sorts before its children), then the files in plan order, all through
 *      *at() calls on the staging folder's descriptor with O_NOFOLLOW/O_EXCL.
 *      A link that fails falls back to a copy, a copy whose source is gone or
 *      differs falls back to a fetch.  Copies are streamed through a fixed
 *      64 KiB buffer and hashed on the way; fetched files are hashed and
 *      sized again (a wrong byte must never reach a release), unless the
 *      caller says the blob source checks size and SHA-256 itself as it
 *      writes (opts->fetch_checks, as lp_net_fetch_blob does).  Every copied
 *      or fetched file gets its mode and is fsync'd once; at the end every
 *      folder is fsync'd.
 *   4. Under the root's lock: the manifest is stored with the record of
 *      the files whose content is known (checked.c: fetched and copied
 *      files, and links whose source still had the identity its release's
 *      record noted), state.json lists the release, staging/<id> is renamed
 *      to releases/<id> and releases/ is fsync'd.  Listing before renaming keeps the version label through a
 *      crash: a listed release without its folder is forgotten by recovery.
 * Any failure removes staging/<id>; nothing else has changed.  stage.lock is
 * held throughout, so recovery in another process leaves the folder alone.
 */
#include "agent/agent.h"

#include "core/file.h"
#include "core/timeutil.h"
#include "livepush/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define COPY_BUF (64u * 1024)
#define BLOCK 4096u

/* A file of an installed release that has some content. */
typedef struct source {
    const lp_manifest_entry *e;
    uint64_t release;
    const lp_agent_fileid *noted; /* its identity when last checked */
} source;

typedef enum action { ACT_FETCH = 0, ACT_LINK = 1, ACT_COPY = 2 } action;

/* One file of the new release and how it will be made. */
typedef struct item {
    const lp_manifest_entry *e;
    action act;
    char *from; /* absolute path of the file to link or copy */
    const lp_agent_fileid *noted; /* a link from an installed file: its noted identity */
    const struct item *twin;      /* a link within the release: the item linked */
    bool checked;                 /* made, and its content known */
} item;

typedef struct stager {
    lp_updater *u;
    const lp_manifest *m;
    uint64_t id;
    lp_blob_fetch_fn fetch;
    void *fetch_ctx;
    const lp_stage_opts *opts;
    lp_stage_stats stats;
    uint64_t done_bytes, total_bytes;
    char *dir; /* <root>/.livepush/staging/<id> */
    int dfd;
    lp_manifest *installed; /* manifests of installed releases */
    uint64_t *installed_ids;
    lp_agent_fileid **installed_noted; /* their records of checked files */
    size_t installed_count;
    source *src;
    size_t src_count;
    item *items;
    size_t item_count;
    lp_agent_fileid *noted; /* the new release's record (note_checked) */
    size_t noted_files;
    uint8_t *buf; /* COPY_BUF bytes */
} stager;

static void stager_free(stager *g)
{
    for (size_t i = 0; i < g->installed_count; i++) {
        lp_manifest_free(&g->installed[i]);
        if (g->installed_noted)
            free(g->installed_noted[i]);
    }
    free(g->installed_noted);
    free(g->installed);
    free(g->installed_ids);
    free(g->src);
    for (size_t i = 0; i < g->item_count; i++)
        free(g->items[i].from);
    free(g->items);
    free(g->noted);
    free(g->buf);
    if (g->dfd >= 0)
        close(g->dfd);
    free(g->dir);
}

/* ---- plan --------------------------------------------------------------- */

static int cmp_source(const void *a, const void *b)
{
    const source *x = a, *y = b;
    int c = strcmp(x->e->sha256, y->e->sha256);
    if (c)
        return c;
    /* Newest release first: its files are the likeliest to be untouched. */
    return x->release < y->release ? 1 : x->release > y->release ? -1 : 0;
}

static int cmp_item(const void *a, const void *b)
{
    const item *x = a, *y = b;
    int c = strcmp(x->e->sha256, y->e->sha256);
    return c ? c : strcmp(x->e->path, y->e->path);
}

/* Loads the manifests of the given installed releases; one that cannot be
 * read is skipped (its files are simply not reused). */
static lp_status load_sources(stager *g, lp_error *err)
{
    size_t files = 0;
    if (g->installed_count &&
        (!(g->installed = calloc(g->installed_count, sizeof *g->installed)) ||
         !(g->installed_noted = calloc(g->installed_count, sizeof *g->installed_noted))))
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->installed_count; i++) {
        char *p = lp_agent_path(g->u, ".livepush/manifests/%llu.json",
                                (unsigned long long)g->installed_ids[i]);
        if (!p)
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        uint8_t *data = NULL;
        size_t len = 0;
        lp_error ignored;
        size_t n = 0;
        if (!lp_file_read(p, LP_MANIFEST_MAX_JSON_BYTES, &data, &len, &ignored) &&
            lp_manifest_from_json(data, len, &g->installed[i], &ignored) == LP_OK) {
            for (size_t k = 0; k < g->installed[i].count; k++)
                n += g->installed[i].entries[k].type == LP_ENTRY_FILE;
        } else {
            lp_manifest_init(&g->installed[i]);
        }
        free(data);
        free(p);
        lp_status st = lp_agent_checked_load(g->u, g->installed_ids[i], n,
                                             &g->installed_noted[i], err);
        if (st)
            return st;
        files += n;
    }
    if (files && !(g->src = calloc(files, sizeof *g->src)))
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->installed_count; i++)
        for (size_t k = 0, f = 0; k < g->installed[i].count; k++)
            if (g->installed[i].entries[k].type == LP_ENTRY_FILE)
                g->src[g->src_count++] = (source){&g->installed[i].entries[k],
                                                  g->installed_ids[i],
                                                  &g->installed_noted[i][f++]};
    if (g->src_count)
        qsort(g->src, g->src_count, sizeof *g->src, cmp_source);
    return LP_OK;
}

/* True if `path` is a regular file of `size` bytes with permission bits
 * `mode` (mode 0: any); *sb gets what lstat saw. */
static bool file_matches(const char *path, uint64_t size, uint32_t mode, struct stat *sb)
{
    return lstat(path, sb) == 0 && S_ISREG(sb->st_mode) && (uint64_t)sb->st_size == size &&
           (!mode || (uint32_t)(sb->st_mode & 07777) == mode);
}

/* The first source with this content (binary search). */
static size_t first_source(const stager *g, const char *sha)
{
    size_t lo = 0, hi = g->src_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(g->src[mid].e->sha256, sha) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static char *installed_path(const stager *g, const source *s)
{
    return lp_agent_path(g->u, "releases/%llu/%s", (unsigned long long)s->release, s->e->path);
}

/* Picks the action for items[i]; items[group..i-1] have the same content
 * and come earlier in the plan. */
static lp_status plan_item(stager *g, size_t group, size_t i, lp_error *err)
{
    item *it = &g->items[i];
    const lp_manifest_entry *e = it->e;
    char *copy_from = NULL;
    /* Same content staged earlier in this release. */
    for (size_t k = group; k < i; k++) {
        if (g->items[k].e->mode == e->mode) {
            it->act = ACT_LINK;
            it->twin = &g->items[k];
            it->from = lp_path_join(g->dir, g->items[k].e->path);
            return it->from ? LP_OK : lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        }
        if (!copy_from && !(copy_from = lp_path_join(g->dir, g->items[k].e->path)))
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    for (size_t k = first_source(g, e->sha256);
         k < g->src_count && strcmp(g->src[k].e->sha256, e->sha256) == 0; k++) {
        /* Only files that can serve: the right size, and the right mode
         * unless a copy source is still wanted. */
        if (g->src[k].e->size != e->size || (copy_from && g->src[k].e->mode != e->mode))
            continue;
        char *p = installed_path(g, &g->src[k]);
        if (!p) {
            free(copy_from);
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        }
        struct stat sb;
        if (file_matches(p, e->size, e->mode, &sb)) {
            free(copy_from);
            it->act = ACT_LINK;
            it->from = p;
            it->noted = g->src[k].noted;
            return LP_OK;
        }
        if (!copy_from && file_matches(p, e->size, 0, &sb))
            copy_from = p;
        else
            free(p);
    }
    it->act = copy_from ? ACT_COPY : ACT_FETCH;
    it->from = copy_from;
    return LP_OK;
}

static lp_status make_plan(stager *g, lp_error *err)
{
    size_t files = 0;
    for (size_t i = 0; i < g->m->count; i++)
        files += g->m->entries[i].type == LP_ENTRY_FILE;
    if (files && !(g->items = calloc(files, sizeof *g->items)))
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->m->count; i++)
        if (g->m->entries[i].type == LP_ENTRY_FILE)
            g->items[g->item_count++].e = &g->m->entries[i];
    if (g->item_count)
        qsort(g->items, g->item_count, sizeof *g->items, cmp_item);
    size_t group = 0;
    for (size_t i = 0; i < g->item_count; i++) {
        if (strcmp(g->items[i].e->sha256, g->items[group].e->sha256) != 0)
            group = i;
        lp_status st = plan_item(g, group, i, err);
        if (st)
            return st;
    }
    return LP_OK;
}

static lp_status check_space(stager *g, size_t manifest_len, lp_error *err)
{
    uint64_t need = g->u->reserve_bytes + manifest_len + (uint64_t)BLOCK * (g->m->count + 1);
    for (size_t i = 0; i < g->item_count; i++)
        if (g->items[i].act != ACT_LINK)
            need += (g->items[i].e->size + BLOCK - 1) / BLOCK * BLOCK;
    g->stats.bytes_needed = need;
    char *staging = lp_agent_path(g->u, ".livepush/staging");
    if (!staging)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    struct statvfs vfs;
    if (statvfs(staging, &vfs) != 0) {
        lp_status st = lp_error_set(err, LP_ERR_IO, "statvfs %s: %s", staging, strerror(errno));
        free(staging);
        return st;
    }
    free(staging);
    uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    if (need > avail)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "needs %llu bytes, %llu free on the file system of %s "
                            "(%llu of them kept in reserve)",
                            (unsigned long long)need, (unsigned long long)avail, g->u->root,
                            (unsigned long long)g->u->reserve_bytes);
    uint64_t inodes = (uint64_t)g->m->count + 16;
    if (vfs.f_files && (uint64_t)vfs.f_favail < inodes)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "needs %llu inodes, %llu free on the file system of %s",
                            (unsigned long long)inodes, (unsigned long long)vfs.f_favail,
                            g->u->root);
    return LP_OK;
}

/* ---- building ------------------------------------------------------------- */

static void progress(stager *g, uint64_t bytes)
{
    g->done_bytes += bytes;
    if (g->opts && g->opts->progress)
        g->opts->progress(g->opts->progress_ctx, g->done_bytes, g->total_bytes);
}

/* Opens the staged file `path` read-only, checks its size and SHA-256 (only
 * the size when the blob source checks: opts->fetch_checks), sets its mode
 * and fsyncs it.  Mismatches: LP_ERR_LENGTH_MISMATCH /
 * LP_ERR_HASH_MISMATCH. */
static lp_status verify_fetched(stager *g, const lp_manifest_entry *e, lp_error *err)
{
    int fd = openat(g->dfd, e->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO,
                            "the blob source left no file: %s", strerror(errno));
    struct stat sb;
    lp_status st = LP_OK;
    lp_hash_ctx *h = NULL;
    if (fstat(fd, &sb) != 0) {
        st = lp_error_set(err, LP_ERR_IO, "stat: %s", strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = lp_error_set(err, LP_ERR_IO, "the blob source left something other than a file");
        goto out;
    }
    if ((uint64_t)sb.st_size != e->size) {
        st = lp_error_set(err, LP_ERR_LENGTH_MISMATCH,
                          "the blob source delivered %lld bytes, the manifest says %llu",
                          (long long)sb.st_size, (unsigned long long)e->size);
        goto out;
    }
    if (g->opts && g->opts->fetch_checks)
        goto done; /* hashed as it was written */
    if ((st = lp_hash_new(&h, LP_HASH_SHA256, err)))
        goto out;
    uint64_t total = 0;
    for (;;) {
        ssize_t r = read(fd, g->buf, COPY_BUF);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st = lp_error_set(err, LP_ERR_IO, "read: %s", strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        total += (uint64_t)r;
        if (total > e->size) {
            st = lp_error_set(err, LP_ERR_LENGTH_MISMATCH, "the file grew while being checked");
            goto out;
        }
        if ((st = lp_hash_update(h, g->buf, (size_t)r, err)))
            goto out;
    }
    uint8_t d[LP_HASH_MAX_LEN];
    char hex[LP_BLOB_ID_SIZE];
    if ((st = lp_hash_final(h, d, err)))
        goto out;
    lp_hex_encode(d, LP_SHA256_LEN, hex);
    if (total != e->size)
        st = lp_error_set(err, LP_ERR_LENGTH_MISMATCH, "the file shrank while being checked");
    else if (strcmp(hex, e->sha256) != 0)
        st = lp_error_set(err, LP_ERR_HASH_MISMATCH,
                          "the blob source delivered content with SHA-256 %s", hex);
    if (st)
        goto out;
done:
    if (fchmod(fd, e->mode) != 0)
        st = lp_error_set(err, LP_ERR_IO, "chmod: %s", strerror(errno));
    else if (fsync(fd) != 0)
        st = lp_error_set(err, LP_ERR_IO, "fsync: %s", strerror(errno));
out:
    lp_hash_free(h);
    close(fd);
    return st;
}

static lp_status fetch_item(stager *g, const lp_manifest_entry *e, lp_error *err)
{
    if (!g->fetch)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "no blob source to fetch blob %s from",
                            e->sha256);
    char *dest = lp_path_join(g->dir, e->path);
    if (!dest)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_error ferr;
    lp_error_clear(&ferr);
    lp_status st = g->fetch(g->fetch_ctx, e->sha256, e->size, dest, &ferr);
    if (st) {
        st = lp_error_set(err, st, "fetching blob %s: %s", e->sha256,
                          ferr.msg[0] ? ferr.msg : lp_status_name(st));
    } else if ((st = verify_fetched(g, e, err))) {
        lp_error_prefix(err, st, "blob %s", e->sha256);
    } else {
        g->stats.files_fetched++;
        g->stats.bytes_fetched += e->size;
        lp_agent_crash_point(g->u, "stage:after-fetch");
    }
    if (st)
        unlinkat(g->dfd, e->path, 0);
    free(dest);
    return st;
}

/* Copies `from` into the staged file, checking size and content on the way.
 * *source_bad says the failure came from the source (gone, changed), so a
 * fetch may still succeed. */
static lp_status copy_item(stager *g, const lp_manifest_entry *e, const char *from,
                           bool *source_bad, lp_error *err)
{
    *source_bad = true;
    int in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "open %s: %s", from, strerror(errno));
    int out = -1;
    lp_hash_ctx *h = NULL;
    lp_status st;
    struct stat sb;
    if (fstat(in, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != e->size) {
        st = lp_error_set(err, LP_ERR_LENGTH_MISMATCH, "%s is no longer a file of %llu bytes",
                          from, (unsigned long long)e->size);
        goto done;
    }
    if ((st = lp_hash_new(&h, LP_HASH_SHA256, err)))
        goto done;
    out = openat(g->dfd, e->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        *source_bad = false;
        st = lp_error_set(err, LP_ERR_IO, "create: %s", strerror(errno));
        goto done;
    }
    uint64_t total = 0;
    for (;;) {
        ssize_t r = read(in, g->buf, COPY_BUF);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st = lp_error_set(err, LP_ERR_IO, "read %s: %s", from, strerror(errno));
            goto done;
        }
        if (r == 0)
            break;
        total += (uint64_t)r;
        if (total > e->size) {
            st = lp_error_set(err, LP_ERR_LENGTH_MISMATCH, "%s grew while being copied", from);
            goto done;
        }
        if ((st = lp_hash_update(h, g->buf, (size_t)r, err)))
            goto done;
        if ((st = lp_file_write_all(out, g->buf, (size_t)r, e->path, err))) {
            *source_bad = false;
            goto done;
        }
    }
    uint8_t d[LP_HASH_MAX_LEN];
    char hex[LP_BLOB_ID_SIZE];
    if ((st = lp_hash_final(h, d, err)))
        goto done;
    lp_hex_encode(d, LP_SHA256_LEN, hex);
    if (total != e->size || strcmp(hex, e->sha256) != 0) {
        st = lp_error_set(err, LP_ERR_HASH_MISMATCH, "%s no longer has the content %s", from,
                          e->sha256);
        goto done;
    }
    *source_bad = false;
    if (fchmod(out, e->mode) != 0)
        st = lp_error_set(err, LP_ERR_IO, "chmod: %s", strerror(errno));
    else if (fsync(out) != 0)
        st = lp_error_set(err, LP_ERR_IO, "fsync: %s", strerror(errno));
done:
    lp_hash_free(h);
    close(in);
    if (out >= 0) {
        close(out);
        if (st)
            unlinkat(g->dfd, e->path, 0);
    }
    if (!st) {
        g->stats.files_copied++;
        g->stats.bytes_copied += e->size;
        lp_agent_crash_point(g->u, "stage:after-copy");
    }
    return st;
}

static lp_status make_file(stager *g, item *it, lp_error *err)
{
    const lp_manifest_entry *e = it->e;
    lp_status st;
    struct stat sb;
    if (it->act == ACT_LINK && file_matches(it->from, e->size, e->mode, &sb)) {
        /* Known content: a twin made (and checked) earlier in this release,
         * or an installed file not written since its content was checked. */
        bool known = it->twin ? it->twin->checked : lp_agent_fileid_same(it->noted, &sb);
        if (linkat(AT_FDCWD, it->from, g->dfd, e->path, 0) == 0) {
            g->stats.files_linked++;
            it->checked = known;
            lp_agent_crash_point(g->u, "stage:after-link");
            return LP_OK;
        }
    }
    if (it->act != ACT_FETCH) {
        bool source_bad;
        st = copy_item(g, e, it->from, &source_bad, err);
        it->checked = !st;
        if (!st || !source_bad)
            return st;
    }
    st = fetch_item(g, e, err);
    it->checked = !st;
    return st;
}

/* The record of the files whose content staging knows, in manifest order,
 * with their identities as they are now (after every link: a link changes
 * no identity, but a later write would). */
static lp_status note_checked(stager *g, lp_agent_fileid **out, size_t *files, lp_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < g->m->count; i++)
        n += g->m->entries[i].type == LP_ENTRY_FILE;
    *files = n;
    *out = n ? calloc(n, sizeof **out) : NULL;
    bool *known = g->m->count ? calloc(g->m->count, sizeof *known) : NULL;
    if ((n && !*out) || (g->m->count && !known)) {
        free(known);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < g->item_count; i++)
        known[g->items[i].e - g->m->entries] = g->items[i].checked;
    struct timespec now;
    lp_agent_clock_now(&now);
    for (size_t i = 0, f = 0; i < g->m->count; i++) {
        if (g->m->entries[i].type != LP_ENTRY_FILE)
            continue;
        struct stat sb;
        if (known[i] && fstatat(g->dfd, g->m->entries[i].path, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
            lp_agent_fileid_settled(&sb, &now))
            lp_agent_fileid_of(&sb, &(*out)[f]);
        f++;
    }
    free(known);
    return LP_OK;
}

static lp_status build(stager *g, lp_error *err)
{
    if (mkdir(g->dir, 0755) != 0 || chmod(g->dir, 0755) != 0)
        return lp_error_set(err, LP_ERR_IO, "mkdir %s: %s", g->dir, strerror(errno));
    g->dfd = open(g->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (g->dfd < 0)
        return lp_error_set(err, LP_ERR_IO, "open %s: %s", g->dir, strerror(errno));
    lp_agent_crash_point(g->u, "stage:after-dir");
    for (size_t i = 0; i < g->m->count; i++) {
        const lp_manifest_entry *e = &g->m->entries[i];
        if (e->type == LP_ENTRY_DIR) {
            if (mkdirat(g->dfd, e->path, 0755) != 0 ||
                fchmodat(g->dfd, e->path, 0755, 0) != 0)
                return lp_error_set(err, LP_ERR_IO, "%s: mkdir: %s", e->path, strerror(errno));
            lp_agent_crash_point(g->u, "stage:after-dir");
        } else if (e->type == LP_ENTRY_SYMLINK) {
            if (symlinkat(e->target, g->dfd, e->path) != 0)
                return lp_error_set(err, LP_ERR_IO, "%s: symlink: %s", e->path, strerror(errno));
            lp_agent_crash_point(g->u, "stage:after-symlink");
        }
    }
    for (size_t i = 0; i < g->item_count; i++) {
        lp_status st = make_file(g, &g->items[i], err);
        if (st)
            return lp_error_prefix(err, st, "%s", g->items[i].e->path);
        progress(g, g->items[i].e->size);
    }
    /* Folders deepest first, then the release folder itself. */
    for (size_t i = g->m->count; i-- > 0;) {
        const lp_manifest_entry *e = &g->m->entries[i];
        if (e->type != LP_ENTRY_DIR)
            continue;
        int fd = openat(g->dfd, e->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0) {
            lp_status st = lp_error_set(err, LP_ERR_IO, "%s: fsync folder: %s", e->path,
                                        strerror(errno));
            if (fd >= 0)
                close(fd);
            return st;
        }
        close(fd);
    }
    if (fsync(g->dfd) != 0)
        return lp_error_set(err, LP_ERR_IO, "fsync %s: %s", g->dir, strerror(errno));
    lp_agent_crash_point(g->u, "stage:after-sync");
    return note_checked(g, &g->noted, &g->noted_files, err);
}

/* ---- moving it in ------------------------------------------------------------ */

static lp_status check_new(const lp_agent_state *s, lp_updater *u, uint64_t id, lp_error *err)
{
    if (lp_agent_state_release(s, id) || lp_agent_release_exists(u, id))
        return lp_error_set(err, LP_ERR_EXISTS, "release %llu is already installed",
                            (unsigned long long)id);
    const lp_agent_bad *b = lp_agent_state_bad(s, id);
    if (b)
        return lp_error_set(err, LP_ERR_STATE, "release %llu is marked bad on this device: %s",
                            (unsigned long long)id, b->reason);
    return LP_OK;
}

static lp_status install(stager *g, const char *json, size_t json_len, const char *version,
                         lp_error *err)
{
    lp_updater *u = g->u;
    unsigned long long v = (unsigned long long)g->id;
    char *manifest = lp_agent_path(u, ".livepush/manifests/%llu.json", v);
    char *dest = lp_agent_path(u, "releases/%llu", v);
    char *releases = lp_agent_path(u, "releases");
    char *staging = lp_agent_path(u, ".livepush/staging");
    lp_agent_state s;
    lp_agent_state_init(&s);
    lp_status st = LP_OK;
    bool listed = false;
    if (!manifest || !dest || !releases || !staging) {
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = lp_agent_begin(u, &s, err)))
        goto out;
    if ((st = check_new(&s, u, g->id, err)))
        goto end;
    if ((st = lp_agent_write_file(u, manifest, json, json_len, 0600,
                                  "stage:manifest-before-commit", err)))
        goto end;
    lp_agent_crash_point(u, "stage:after-manifest");
    if ((st = lp_agent_checked_write(u, g->id, g->noted, g->noted_files, err)))
        goto undo;
    if ((st = lp_agent_state_add_release(&s, g->id, version, lp_time_now(), err)) ||
        (st = lp_agent_state_write(u, &s, err)))
        goto undo;
    listed = true;
    lp_agent_crash_point(u, "stage:after-state");
    if (rename(g->dir, dest) != 0) {
        st = lp_error_set(err, LP_ERR_IO, "rename %s to %s: %s", g->dir, dest, strerror(errno));
        goto undo;
    }
    lp_agent_crash_point(u, "stage:after-rename");
    if ((st = lp_agent_sync_dir(releases, err)) || (st = lp_agent_sync_dir(staging, err)))
        goto end; /* the release is in place; only durability is in doubt */
    lp_agent_crash_point(u, "stage:done");
    goto end;
undo:
    if (listed) {
        lp_error ignored;
        lp_agent_state_remove_release(&s, g->id);
        lp_agent_state_write(u, &s, &ignored);
    }
    unlink(manifest);
    lp_agent_checked_remove(u, g->id);
end:
    lp_agent_end(u, &s);
out:
    free(manifest);
    free(dest);
    free(releases);
    free(staging);
    return st;
}

/* ---- the operation ---------------------------------------------------------- */

static lp_status check_args(const lp_manifest *m, uint64_t id, const char *version,
                            lp_error *err)
{
    if (!m || !m->finished)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "the manifest is not finished");
    if (!id || id > LP_AGENT_MAX_ID)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "release id %llu is out of range",
                            (unsigned long long)id);
    if (version) {
        size_t n = strlen(version);
        if (!n || n > LP_UPDATER_MAX_VERSION)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "version label must have 1 to %u bytes",
                                LP_UPDATER_MAX_VERSION);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)version[i] < 0x20 || version[i] == 0x7f)
                return lp_error_set(err, LP_ERR_INVALID_ARG,
                                    "version label contains a control character");
    }
    return LP_OK;
}

static lp_status list_installed(stager *g, lp_error *err)
{
    lp_agent_state s;
    lp_status st = lp_agent_begin(g->u, &s, err);
    if (st)
        return st;
    st = check_new(&s, g->u, g->id, err);
    if (!st && s.release_count &&
        !(g->installed_ids = calloc(s.release_count, sizeof *g->installed_ids)))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < s.release_count; i++)
        g->installed_ids[g->installed_count++] = s.releases[i].id;
    lp_agent_end(g->u, &s);
    return st;
}

lp_status lp_updater_stage(lp_updater *u, const lp_manifest *m, uint64_t id,
                           const lp_stage_opts *opts, lp_blob_fetch_fn fetch, void *fetch_ctx,
                           lp_stage_stats *stats, lp_error *err)
{
    if (stats)
        memset(stats, 0, sizeof *stats);
    const char *version = opts ? opts->version : NULL;
    lp_status st = check_args(m, id, version, err);
    if (st)
        return lp_error_prefix(err, st, "staging release %llu", (unsigned long long)id);
    bool got = false;
    if ((st = lp_agent_stage_lock(u, &got, err)))
        return lp_error_prefix(err, st, "staging release %llu", (unsigned long long)id);
    if (!got)
        return lp_error_set(err, LP_ERR_STATE,
                            "staging release %llu: another staging is running in %s",
                            (unsigned long long)id, u->root);

    stager g = {.u = u, .m = m, .id = id, .fetch = fetch, .fetch_ctx = fetch_ctx, .opts = opts,
                .dfd = -1};
    g.total_bytes = lp_manifest_total_size(m);
    char *json = NULL;
    size_t json_len = 0;
    bool built = false;
    g.dir = lp_agent_path(u, ".livepush/staging/%llu", (unsigned long long)id);
    g.buf = malloc(COPY_BUF);
    if (!g.dir || !g.buf)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (!st)
        st = list_installed(&g, err);
    if (!st)
        st = lp_manifest_to_json(m, &json, &json_len, err);
    if (!st)
        st = load_sources(&g, err);
    if (!st)
        st = make_plan(&g, err);
    g.stats.files = g.item_count;
    if (!st)
        st = check_space(&g, json_len, err);
    if (!st) {
        lp_agent_crash_point(u, "stage:begin");
        st = lp_agent_rmtree(g.dir, err);
    }
    if (!st) {
        built = true;
        st = build(&g, err);
    }
    if (!st) {
        close(g.dfd);
        g.dfd = -1;
        st = install(&g, json, json_len, version, err);
    }
    if (st && built) {
        lp_error ignored;
        lp_agent_rmtree(g.dir, &ignored);
    }
    lp_agent_stage_unlock(u);
    if (stats)
        *stats = g.stats;
    free(json);
    stager_free(&g);
    if (st)
        return lp_error_prefix(err, st, "staging release %llu", (unsigned long long)id);
    return LP_OK;
}
