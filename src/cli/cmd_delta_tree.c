/*
 * cmd_delta_tree.c — `livepush delta tree make|apply`: a whole folder sent
 * as deltas, in one process.
 *
 *   livepush delta tree make OLD_DIR NEW_DIR OUT_DIR [--level N] [--json]
 *   livepush delta tree apply OLD_DIR IN_DIR OUT_DIR
 *
 * make describes both folders (lp_delta_tree_scan), plans them with the
 * library's tree plan (lp_delta_tree_plan_make, the server's choice of
 * bases), and writes into OUT_DIR, per distinct content of NEW_DIR that
 * OLD_DIR lacks, either <sha256>.delta (against the best base any of its
 * paths found, as the server does) or <sha256>.zst (the file compressed with
 * zstd at level 19, when no base was found), and plan.json: the new tree's
 * manifest and, per file, how it is sent.  Every file is written atomically.
 *
 * apply reads IN_DIR/plan.json as untrusted input (bounded; the manifest is
 * parsed strictly, so paths and link targets are checked, and every file of
 * the manifest must have exactly one plan line naming its digest) and
 * rebuilds the new tree in a fresh folder next to OUT_DIR: unchanged files
 * hard-linked to OLD_DIR's (copied when a link cannot be made or the mode
 * differs; so OLD_DIR's files must not be changed in place afterwards, as
 * with the device's releases), deltas applied with lp_delta_apply_file_fd (base and
 * result digests checked), new files decompressed, by two threads taking
 * the files in turn; every file's SHA-256 is checked against the manifest.  The new tree is made durable at once (one
 * syncfs of its file system, then its folder) and the
 * folder renamed to OUT_DIR only when everything verified; on any failure it
 * is removed and OUT_DIR does not appear.
 */
#include "cli/cli.h"
#include "core/file.h"
#include "livepush/bundle.h"
#include "livepush/delta.h"
#include "livepush/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <pthread.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define PLAN_VERSION 1
#define PLAN_MAX_BYTES ((size_t)LP_MANIFEST_MAX_JSON_BYTES * 2)
#define CHUNK ((size_t)1 << 17)

static const char tree_usage[] =
    "usage: livepush delta tree make OLD_DIR NEW_DIR OUT_DIR [--level N] [--json]\n"
    "       livepush delta tree apply OLD_DIR IN_DIR OUT_DIR [--sync on|off]\n"
    "\n"
    "make   plans NEW_DIR against OLD_DIR (unchanged content costs nothing, a\n"
    "       changed file is sent as a delta against the old file at the same\n"
    "       path, else one with the same name, else one with the same extension\n"
    "       and a close size; other files are sent whole with zstd -19) and\n"
    "       writes OUT_DIR/plan.json, <sha256>.delta and <sha256>.zst files.\n"
    "       --level is the zstd level of the deltas' streams (default 19).\n"
    "apply  rebuilds NEW_DIR as OUT_DIR (which must not exist) from OLD_DIR and\n"
    "       IN_DIR (what make wrote); every file is checked against its SHA-256\n"
    "       and OUT_DIR appears only when all of them verified.  Unchanged files\n"
    "       are hard links to OLD_DIR's (copies across file systems).  --sync off\n"
    "       skips the syncfs(2) of the new tree and the fsync of its folder (a\n"
    "       power loss may then lose files of OUT_DIR; default on).\n";

static int tree_usage_error(const char *why)
{
    fprintf(stderr, "livepush delta tree: %s\n\n%s", why, tree_usage);
    return LP_EXIT_USAGE;
}

static char *join3(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s%s", a, b, c);
    return p;
}

/* ---- make ------------------------------------------------------------------ */

/* Compresses src into dst (atomically) at zstd level 19, checking that the
 * content still has the digest `sha` of the plan; *out_size gets dst's size. */
static lp_status compress_file(const char *src, const char *dst, const char *sha,
                               uint64_t *out_size, lp_error *err)
{
    char tmp[4400];
    int in = -1, out = -1;
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    uint8_t *ibuf = malloc(CHUNK), *obuf = malloc(ZSTD_CStreamOutSize());
    lp_hash_ctx *h = NULL;
    lp_status st = LP_OK;
    *out_size = 0;
    if (!cc || !ibuf || !obuf) {
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        goto done;
    }
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 19);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
        st = lp_error_set(err, LP_ERR_IO, "open %s: %s", src, strerror(errno));
        goto done;
    }
    if ((st = lp_hash_new(&h, LP_HASH_SHA256, err)) ||
        (st = lp_file_open_tmp(dst, 0644, tmp, sizeof tmp, &out, err)))
        goto done;
    for (int last = 0; !st && !last;) {
        ssize_t n = read(in, ibuf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = lp_error_set(err, LP_ERR_IO, "read %s: %s", src, strerror(errno));
            break;
        }
        last = n == 0;
        if ((st = lp_hash_update(h, ibuf, (size_t)n, err)))
            break;
        ZSTD_inBuffer ib = {ibuf, (size_t)n, 0};
        size_t left;
        do {
            ZSTD_outBuffer ob = {obuf, ZSTD_CStreamOutSize(), 0};
            left = ZSTD_compressStream2(cc, &ob, &ib, last ? ZSTD_e_end : ZSTD_e_continue);
            if (ZSTD_isError(left)) {
                st = lp_error_set(err, LP_ERR_IO, "compress %s: %s", src, ZSTD_getErrorName(left));
                break;
            }
            st = lp_file_write_all(out, obuf, ob.pos, tmp, err);
            if (!st)
                *out_size += ob.pos;
        } while (!st && (last ? left != 0 : ib.pos < ib.size));
    }
    uint8_t d[LP_HASH_MAX_LEN];
    char hex[65];
    if (!st && !(st = lp_hash_final(h, d, err))) {
        lp_hex_encode(d, 32, hex);
        if (strcmp(hex, sha))
            st = lp_error_set(err, LP_ERR_HASH_MISMATCH, "%s changed while being sent", src);
    }
    if (out >= 0) {
        if (st) {
            close(out);
            unlink(tmp);
        } else {
            st = lp_file_commit_tmp(out, tmp, dst, err);
        }
    }
done:
    if (in >= 0)
        close(in);
    lp_hash_free(h);
    free(ibuf);
    free(obuf);
    ZSTD_freeCCtx(cc);
    return st;
}

static int by_content(const void *a, const void *b)
{
    const lp_delta_tree_item *x = *(const lp_delta_tree_item *const *)a;
    const lp_delta_tree_item *y = *(const lp_delta_tree_item *const *)b;
    int c = strcmp(x->file->sha256, y->file->sha256);
    return c ? c : strcmp(x->file->path, y->file->path);
}

typedef struct sent {
    lp_delta_tree_kind kind;       /* for the whole content */
    const lp_manifest_entry *base; /* SAME / DELTA */
    int rule;
    uint64_t bytes; /* of the .delta or .zst (counted once per content) */
} sent;

typedef struct totals {
    size_t files, same, delta, new_, contents_sent;
    uint64_t new_bytes, sent_bytes, delta_bytes, zst_bytes;
} totals;

static lp_status make_all(const char *old_dir, const char *new_dir, const char *out_dir,
                          const lp_delta_options *opt, const lp_manifest *nm,
                          const lp_delta_tree_plan *plan, sent *how, totals *t, lp_error *err)
{
    const lp_delta_tree_item **by = calloc(plan->count ? plan->count : 1, sizeof *by);
    if (!by)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < plan->count; i++)
        by[i] = &plan->items[i];
    qsort(by, plan->count, sizeof *by, by_content);
    lp_status st = LP_OK;
    for (size_t i = 0; !st && i < plan->count;) {
        size_t j = i + 1;
        while (j < plan->count && !strcmp(by[j]->file->sha256, by[i]->file->sha256))
            j++;
        sent s = {.kind = by[i]->kind, .base = by[i]->base};
        if (s.kind != LP_DELTA_TREE_SAME) {
            int best = 4;
            s.kind = LP_DELTA_TREE_NEW;
            s.base = NULL;
            for (size_t k = i; k < j; k++)
                if (by[k]->kind == LP_DELTA_TREE_DELTA && by[k]->rule < best) {
                    best = by[k]->rule;
                    s = (sent){LP_DELTA_TREE_DELTA, by[k]->base, best, 0};
                }
        }
        const lp_manifest_entry *f = by[i]->file;
        char *src = join3(new_dir, f->path, "");
        char *dst = join3(out_dir, f->sha256, s.kind == LP_DELTA_TREE_DELTA ? ".delta" : ".zst");
        char *base = s.base ? join3(old_dir, s.base->path, "") : NULL;
        if (!src || !dst || (s.base && !base)) {
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        } else if (s.kind == LP_DELTA_TREE_DELTA) {
            lp_delta_stats ds;
            lp_delta_header h;
            char hex[65];
            st = lp_delta_make_file(base, src, dst, opt, &ds, err);
            if (!st)
                st = lp_delta_read_header_file(dst, &h, err);
            if (!st) {
                lp_hex_encode(h.new_sha256, 32, hex);
                if (strcmp(hex, f->sha256))
                    st = lp_error_set(err, LP_ERR_HASH_MISMATCH, "%s changed while being sent",
                                      src);
            }
            if (st)
                lp_error_prefix(err, st, "delta of %s against %s", f->path, s.base->path);
            s.bytes = ds.delta_size;
            t->delta_bytes += s.bytes;
        } else if (s.kind == LP_DELTA_TREE_NEW) {
            st = compress_file(src, dst, f->sha256, &s.bytes, err);
            t->zst_bytes += s.bytes;
        }
        t->sent_bytes += s.bytes;
        t->contents_sent += s.kind != LP_DELTA_TREE_SAME;
        for (size_t k = i; k < j; k++)
            how[by[k] - plan->items] = s;
        free(src);
        free(dst);
        free(base);
        i = j;
    }
    free(by);
    (void)nm;
    return st;
}

static lp_status write_plan(const char *out_dir, const lp_manifest *nm,
                            const lp_delta_tree_plan *plan, const sent *how, const totals *t,
                            lp_error *err)
{
    static const char *kinds[] = {"same", "delta", "new"};
    char *mj = NULL;
    size_t mlen = 0;
    lp_status st = lp_manifest_to_json(nm, &mj, &mlen, err);
    if (st)
        return st;
    json_error_t je;
    json_t *manifest = json_loadb(mj, mlen, 0, &je);
    free(mj);
    json_t *files = json_array();
    json_t *root = json_pack(
        "{s:i,s:o,s:o,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}}", "plan_version", PLAN_VERSION,
        "manifest", manifest, "files", files, "totals", "files", (json_int_t)t->files, "same",
        (json_int_t)t->same, "delta", (json_int_t)t->delta, "new", (json_int_t)t->new_,
        "new_bytes", (json_int_t)t->new_bytes, "sent_bytes", (json_int_t)t->sent_bytes,
        "delta_bytes", (json_int_t)t->delta_bytes, "zst_bytes", (json_int_t)t->zst_bytes);
    if (!root)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory writing the plan");
    for (size_t i = 0; i < plan->count; i++) {
        const lp_manifest_entry *f = plan->items[i].file;
        json_t *o = json_pack("{s:s,s:s,s:I,s:s}", "path", f->path, "sha256", f->sha256, "size",
                              (json_int_t)f->size, "kind", kinds[how[i].kind]);
        if (o && how[i].base) {
            json_object_set_new(o, "base", json_string(how[i].base->path));
            json_object_set_new(o, "base_sha256", json_string(how[i].base->sha256));
        }
        if (o && how[i].kind == LP_DELTA_TREE_DELTA)
            json_object_set_new(o, "rule", json_integer(how[i].rule));
        if (o && how[i].kind != LP_DELTA_TREE_SAME)
            json_object_set_new(o, "bytes", json_integer((json_int_t)how[i].bytes));
        if (!o || json_array_append_new(files, o)) {
            json_decref(root);
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory writing the plan");
        }
    }
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_ENSURE_ASCII);
    json_decref(root);
    char *path = join3(out_dir, "plan.json", "");
    if (!text || !path)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory writing the plan");
    else
        st = lp_file_write_atomic(path, text, strlen(text), 0644, err);
    free(text);
    free(path);
    return st;
}

static int cmd_tree_make(int argc, char **argv)
{
    static const struct option lo[] = {{"level", required_argument, NULL, 'l'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    lp_delta_options opt = {0};
    int json = 0, ch;
    char *end;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'l':
            opt.level = (int)strtol(optarg, &end, 10);
            if (*end || opt.level < 1 || opt.level > 22)
                return tree_usage_error("--level must be a number from 1 to 22");
            break;
        case 'j': json = 1; break;
        case 'h': fputs(tree_usage, stdout); return LP_EXIT_OK;
        default: fputs(tree_usage, stderr); return LP_EXIT_USAGE;
        }
    }
    if (argc - optind != 3)
        return tree_usage_error("make needs OLD_DIR NEW_DIR OUT_DIR");
    const char *old_dir = argv[optind], *new_dir = argv[optind + 1], *out_dir = argv[optind + 2];
    lp_error err;
    lp_error_clear(&err);
    lp_manifest om = {0}, nm = {0};
    lp_delta_tree_plan plan = {0};
    sent *how = NULL;
    totals t = {0};
    lp_status st = lp_delta_tree_scan(old_dir, &om, &err);
    if (!st)
        st = lp_delta_tree_scan(new_dir, &nm, &err);
    if (!st)
        st = lp_delta_tree_plan_make(&om, &nm, &plan, &err);
    if (!st && !(how = calloc(plan.count ? plan.count : 1, sizeof *how)))
        st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    if (!st)
        st = lp_file_mkdirs(out_dir, 0755, &err);
    if (!st)
        st = make_all(old_dir, new_dir, out_dir, &opt, &nm, &plan, how, &t, &err);
    if (!st) {
        for (size_t i = 0; i < plan.count; i++) {
            t.files++;
            t.new_bytes += plan.items[i].file->size;
            t.same += how[i].kind == LP_DELTA_TREE_SAME;
            t.delta += how[i].kind == LP_DELTA_TREE_DELTA;
            t.new_ += how[i].kind == LP_DELTA_TREE_NEW;
        }
        st = write_plan(out_dir, &nm, &plan, how, &t, &err);
    }
    free(how);
    lp_delta_tree_plan_free(&plan);
    lp_manifest_free(&om);
    lp_manifest_free(&nm);
    if (st)
        return lp_cli_fail(&err, "delta tree make");
    if (json)
        printf("{\"files\":%zu,\"same\":%zu,\"delta\":%zu,\"new\":%zu,\"new_bytes\":%llu,"
               "\"sent_bytes\":%llu,\"delta_bytes\":%llu,\"zst_bytes\":%llu}\n",
               t.files, t.same, t.delta, t.new_, (unsigned long long)t.new_bytes,
               (unsigned long long)t.sent_bytes, (unsigned long long)t.delta_bytes,
               (unsigned long long)t.zst_bytes);
    else
        printf("%zu files: %zu unchanged, %zu sent as deltas (%llu bytes), %zu sent whole "
               "(%llu bytes)\nsent %llu bytes for %llu bytes of files (%.2f%%)\n",
               t.files, t.same, t.delta, (unsigned long long)t.delta_bytes, t.new_,
               (unsigned long long)t.zst_bytes, (unsigned long long)t.sent_bytes,
               (unsigned long long)t.new_bytes,
               t.new_bytes ? 100.0 * (double)t.sent_bytes / (double)t.new_bytes : 0.0);
    return LP_EXIT_OK;
}

/* ---- apply ----------------------------------------------------------------- */

/* Copies (decompress == 0) or decompresses src into the new file dst,
 * checking that the content is exactly `f` (size, SHA-256).  Not synced:
 * build_tree syncs the whole new tree at once. */
static lp_status produce(const char *src, const char *dst, const lp_manifest_entry *f,
                         int decompress, lp_error *err)
{
    int in = -1, out = -1;
    ZSTD_DCtx *dc = decompress ? ZSTD_createDCtx() : NULL;
    uint8_t *ibuf = malloc(CHUNK), *obuf = malloc(CHUNK);
    lp_hash_ctx *h = NULL;
    uint64_t total = 0;
    size_t zret = 1;
    lp_status st = LP_OK;
    if (!ibuf || !obuf || (decompress && !dc)) {
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (dc)
        ZSTD_DCtx_setParameter(dc, ZSTD_d_windowLogMax, 27);
    if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
        st = lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "open %s: %s",
                          src, strerror(errno));
        goto done;
    }
    if ((out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)) < 0) {
        st = lp_error_set(err, LP_ERR_IO, "create %s: %s", dst, strerror(errno));
        goto done;
    }
    if ((st = lp_hash_new(&h, LP_HASH_SHA256, err)))
        goto done;
    for (;;) {
        ssize_t n = read(in, ibuf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = lp_error_set(err, LP_ERR_IO, "read %s: %s", src, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        ZSTD_inBuffer ib = {ibuf, (size_t)n, 0};
        while (!st && (dc ? ib.pos < ib.size : ib.pos == 0)) {
            size_t got;
            if (dc) {
                ZSTD_outBuffer ob = {obuf, CHUNK, 0};
                zret = ZSTD_decompressStream(dc, &ob, &ib);
                if (ZSTD_isError(zret)) {
                    st = lp_error_set(err, LP_ERR_MALFORMED, "%s: corrupted (zstd: %s)", src,
                                      ZSTD_getErrorName(zret));
                    break;
                }
                got = ob.pos;
                if (zret == 0 && ib.pos < ib.size) {
                    st = lp_error_set(err, LP_ERR_MALFORMED, "%s: trailing bytes after its frame",
                                      src);
                    break;
                }
            } else {
                memcpy(obuf, ibuf, (size_t)n);
                got = (size_t)n;
                ib.pos = ib.size;
            }
            total += got;
            if (total > f->size) {
                st = lp_error_set(err, LP_ERR_LENGTH_MISMATCH,
                                  "%s makes more than the %llu bytes of %s", src,
                                  (unsigned long long)f->size, f->path);
                break;
            }
            if (!st)
                st = lp_hash_update(h, obuf, got, err);
            if (!st)
                st = lp_file_write_all(out, obuf, got, dst, err);
        }
        if (st)
            break;
    }
    if (!st && dc && zret != 0)
        st = lp_error_set(err, LP_ERR_MALFORMED, "%s: truncated", src);
    uint8_t d[LP_HASH_MAX_LEN];
    char hex[65];
    if (!st && !(st = lp_hash_final(h, d, err))) {
        lp_hex_encode(d, 32, hex);
        if (total != f->size || strcmp(hex, f->sha256))
            st = lp_error_set(err, LP_ERR_HASH_MISMATCH,
                              "%s: content of %s differs from the plan's SHA-256", src, f->path);
    }
    if (!st && fchmod(out, f->mode) != 0)
        st = lp_error_set(err, LP_ERR_IO, "chmod %s: %s", dst, strerror(errno));
done:
    if (out >= 0 && close(out) != 0 && !st)
        st = lp_error_set(err, LP_ERR_IO, "close %s: %s", dst, strerror(errno));
    if (in >= 0)
        close(in);
    lp_hash_free(h);
    free(ibuf);
    free(obuf);
    ZSTD_freeDCtx(dc);
    return st;
}

/* An unchanged file: a hard link to the old tree's file when that file is a
 * regular file with the entry's mode and its content checks against the
 * entry (read, not written: nothing to sync), as the device's install links
 * unchanged files; a copy when the link cannot be made (another file system,
 * a link limit) or the mode differs. */
static lp_status link_or_copy(const char *src, const char *dst, const lp_manifest_entry *f,
                              lp_error *err)
{
    struct stat sb;
    if (lstat(src, &sb) != 0 || !S_ISREG(sb.st_mode) || (sb.st_mode & 07777) != f->mode)
        return produce(src, dst, f, 0, err);
    uint8_t d[LP_HASH_MAX_LEN];
    char hex[65];
    lp_status st = lp_hash_file(LP_HASH_SHA256, src, d, NULL, err);
    if (st)
        return st;
    lp_hex_encode(d, 32, hex);
    if ((uint64_t)sb.st_size != f->size || strcmp(hex, f->sha256))
        return lp_error_set(err, LP_ERR_HASH_MISMATCH,
                            "%s: content of %s differs from the plan's SHA-256", src, f->path);
    struct stat lb;
    if (link(src, dst) == 0) {
        /* the link must be the file that was checked, not one put there since */
        if (lstat(dst, &lb) == 0 && lb.st_ino == sb.st_ino && lb.st_dev == sb.st_dev)
            return LP_OK;
        return lp_error_set(err, LP_ERR_IO, "%s was replaced while it was checked", src);
    }
    if (errno == EXDEV || errno == EMLINK || errno == EPERM)
        return produce(src, dst, f, 0, err);
    return lp_error_set(err, LP_ERR_IO, "link %s to %s: %s", dst, src, strerror(errno));
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

/* Makes every file and folder written under top durable before the tree is
 * renamed into place: one syncfs(2) of top's file system (one journal commit
 * where a sync per file would cost one each; it also flushes what other
 * programs wrote there), then top itself. */
static lp_status sync_tree(const char *top, lp_error *err)
{
    int fd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return lp_error_set(err, LP_ERR_IO, "open folder %s: %s", top, strerror(errno));
    lp_status st = LP_OK;
    if (syncfs(fd) != 0)
        st = lp_error_set(err, LP_ERR_IO, "syncfs %s: %s", top, strerror(errno));
    else if (fsync(fd) != 0)
        st = lp_error_set(err, LP_ERR_IO, "fsync %s: %s", top, strerror(errno));
    close(fd);
    return st;
}

/* A changed file: its delta applied against the old file into the new file
 * dst (the delta names the result's SHA-256, which the library checks). */
static lp_status apply_one(const char *old, const char *delta, const char *dst,
                           const uint8_t want[32], uint32_t mode, lp_error *err)
{
    /* read and write: the apply reads back what its second thread wrote */
    int fd = open(dst, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return lp_error_set(err, LP_ERR_IO, "create %s: %s", dst, strerror(errno));
    lp_status st = lp_delta_apply_file_fd(old, delta, fd, want, err);
    if (!st && fchmod(fd, mode) != 0)
        st = lp_error_set(err, LP_ERR_IO, "chmod %s: %s", dst, strerror(errno));
    if (close(fd) != 0 && !st)
        st = lp_error_set(err, LP_ERR_IO, "close %s: %s", dst, strerror(errno));
    return st;
}

/* Reads and checks plan.json: *m gets the new tree's manifest, plan_of[i]
 * the plan line of m->entries[i] (files only; borrowed from *root). */
static lp_status read_plan(const char *in_dir, json_t **root, lp_manifest *m, json_t ***plan_of,
                           lp_error *err)
{
    char *path = join3(in_dir, "plan.json", "");
    uint8_t *data = NULL;
    size_t len = 0;
    *root = NULL;
    *plan_of = NULL;
    lp_manifest_init(m);
    if (!path)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_status st = lp_file_read(path, PLAN_MAX_BYTES, &data, &len, err);
    json_error_t je;
    if (!st && !(*root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je)))
        st = lp_error_set(err, LP_ERR_MALFORMED, "%s: line %d: %s", path, je.line, je.text);
    free(data);
    json_t *ver = st ? NULL : json_object_get(*root, "plan_version");
    json_t *man = st ? NULL : json_object_get(*root, "manifest");
    json_t *files = st ? NULL : json_object_get(*root, "files");
    if (!st && (!json_is_integer(ver) || json_integer_value(ver) != PLAN_VERSION))
        st = lp_error_set(err, LP_ERR_UNSUPPORTED, "%s: plan_version is not %d", path,
                          PLAN_VERSION);
    if (!st && (!json_is_object(man) || !json_is_array(files)))
        st = lp_error_set(err, LP_ERR_MALFORMED, "%s: no manifest object or files array", path);
    char *mtext = st ? NULL : json_dumps(man, JSON_COMPACT);
    if (!st && !mtext)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (!st)
        st = lp_manifest_from_json(mtext, strlen(mtext), m, err);
    free(mtext);
    if (!st && !(*plan_of = calloc(m->count ? m->count : 1, sizeof **plan_of)))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < json_array_size(files); i++) {
        json_t *o = json_array_get(files, i);
        const char *p = json_string_value(json_object_get(o, "path"));
        const char *sha = json_string_value(json_object_get(o, "sha256"));
        const char *kind = json_string_value(json_object_get(o, "kind"));
        const char *base = json_string_value(json_object_get(o, "base"));
        const lp_manifest_entry *e = p ? lp_manifest_find(m, p) : NULL;
        if (!e || e->type != LP_ENTRY_FILE || !sha || strcmp(sha, e->sha256))
            st = lp_error_set(err, LP_ERR_MALFORMED,
                              "%s: files[%zu] names no file of the manifest with its SHA-256",
                              path, i);
        else if (!kind || (strcmp(kind, "same") && strcmp(kind, "delta") && strcmp(kind, "new")))
            st = lp_error_set(err, LP_ERR_MALFORMED, "%s: %s: unknown kind", path, p);
        else if (strcmp(kind, "new") && (!base || lp_manifest_check_path(base, 0, err)))
            st = lp_error_set(err, LP_ERR_MALFORMED, "%s: %s: missing or invalid base", path, p);
        else if ((*plan_of)[e - m->entries])
            st = lp_error_set(err, LP_ERR_MALFORMED, "%s: %s is planned twice", path, p);
        else
            (*plan_of)[e - m->entries] = o;
    }
    for (size_t i = 0; !st && i < m->count; i++)
        if (m->entries[i].type == LP_ENTRY_FILE && !(*plan_of)[i])
            st = lp_error_set(err, LP_ERR_MALFORMED, "%s: no plan for %s", path,
                              m->entries[i].path);
    free(path);
    if (st) {
        free(*plan_of);
        *plan_of = NULL;
        json_decref(*root);
        *root = NULL;
        lp_manifest_free(m);
    }
    return st;
}

/* Builds every entry of m under `top` (a fresh folder), folders first; with
 * sync, makes them durable before returning. */
/* Entry e of the manifest (a file or a link) made in the new tree `top`. */
static lp_status build_one(const char *old_dir, const char *in_dir, const char *top,
                           const lp_manifest_entry *e, json_t *plan, lp_error *err)
{
    lp_status st = LP_OK;
    char *dst = join3(top, e->path, "");
    char *src = NULL;
    if (!dst)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (e->type == LP_ENTRY_SYMLINK) {
        if (symlink(e->target, dst) != 0)
            st = lp_error_set(err, LP_ERR_IO, "symlink %s: %s", dst, strerror(errno));
    } else if (e->type == LP_ENTRY_FILE) {
        const char *kind = json_string_value(json_object_get(plan, "kind"));
        const char *base = json_string_value(json_object_get(plan, "base"));
        if (!strcmp(kind, "same")) {
            src = join3(old_dir, base, "");
            st = src ? link_or_copy(src, dst, e, err)
                     : lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        } else if (!strcmp(kind, "new")) {
            src = join3(in_dir, e->sha256, ".zst");
            st = src ? produce(src, dst, e, 1, err)
                     : lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        } else {
            uint8_t want[32];
            size_t n = 0;
            char *old = join3(old_dir, base, "");
            src = join3(in_dir, e->sha256, ".delta");
            if (!old || !src)
                st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
            if (!st)
                st = lp_hex_decode(e->sha256, want, sizeof want, &n, err);
            if (!st)
                st = apply_one(old, src, dst, want, e->mode, err);
            free(old);
        }
        if (st)
            lp_error_prefix(err, st, "file %s", e->path);
    }
    free(src);
    free(dst);
    return st;
}

/* The files and links of the new tree, made by BUILD_THREADS threads that
 * each take the next entry not yet taken (their folders exist already; the
 * entries are independent); the first failure stops them all.  A delta
 * whose apply may take most of the delta memory bound (a result over
 * ALONE_OVER bytes in dictionary frames: LZMA dictionaries, zstd windows)
 * is applied while nothing else is made, so that the tree's apply stays
 * within the bound of one file's. */
#define BUILD_THREADS 2
#define ALONE_OVER ((uint64_t)4 << 20)

static int heavy_entry(const char *in_dir, const lp_manifest_entry *e, json_t *plan)
{
    const char *kind = json_string_value(json_object_get(plan, "kind"));
    if (e->type != LP_ENTRY_FILE || e->size <= ALONE_OVER || !kind || strcmp(kind, "delta") != 0)
        return 0;
    char *src = join3(in_dir, e->sha256, ".delta");
    lp_delta_header h;
    lp_error err;
    int heavy = src && !lp_delta_read_header_file(src, &h, &err) &&
                (h.flags & LP_DELTA_FLAG_DICT_FRAMES) && h.new_size > ALONE_OVER;
    free(src);
    return heavy; /* a delta that cannot be read fails in build_one */
}

typedef struct {
    const char *old_dir, *in_dir, *top;
    const lp_manifest *m;
    json_t **plan_of;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t active;       /* entries being made */
    int alone, waiting;  /* a heavy delta being applied, waiting to be */
    size_t next;
    lp_status st;
    lp_error err;
} builder;

static void *build_worker(void *arg)
{
    builder *b = arg;
    lp_error err = {0};
    for (;;) {
        pthread_mutex_lock(&b->mu);
        size_t i = b->st ? b->m->count : b->next++;
        pthread_mutex_unlock(&b->mu);
        if (i >= b->m->count)
            break;
        const lp_manifest_entry *e = &b->m->entries[i];
        if (e->type == LP_ENTRY_DIR)
            continue;
        int heavy = heavy_entry(b->in_dir, e, b->plan_of[i]);
        pthread_mutex_lock(&b->mu);
        b->waiting += heavy;
        while (b->alone || (heavy ? b->active > 0 : b->waiting > 0))
            pthread_cond_wait(&b->cv, &b->mu);
        b->waiting -= heavy;
        b->alone = heavy;
        b->active++;
        pthread_mutex_unlock(&b->mu);
        lp_status st = build_one(b->old_dir, b->in_dir, b->top, e, b->plan_of[i], &err);
        pthread_mutex_lock(&b->mu);
        b->active--;
        b->alone &= !heavy;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        if (st) {
            pthread_mutex_lock(&b->mu);
            if (!b->st) {
                b->st = st;
                b->err = err;
            }
            pthread_mutex_unlock(&b->mu);
            break;
        }
    }
    return NULL;
}

static lp_status build_tree(const char *old_dir, const char *in_dir, const char *top, int sync,
                            const lp_manifest *m, json_t **plan_of, lp_error *err)
{
    lp_status st = LP_OK;
    for (size_t i = 0; !st && i < m->count; i++) { /* sorted: parents come first */
        const lp_manifest_entry *e = &m->entries[i];
        if (e->type != LP_ENTRY_DIR)
            continue;
        char *p = join3(top, e->path, "");
        if (!p)
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        if (mkdir(p, 0755) != 0)
            st = lp_error_set(err, LP_ERR_IO, "mkdir %s: %s", p, strerror(errno));
        free(p);
    }
    if (st)
        return st;
    builder b = {.old_dir = old_dir, .in_dir = in_dir, .top = top, .m = m, .plan_of = plan_of};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    pthread_t tid[BUILD_THREADS - 1];
    size_t started = 0;
    while (started < BUILD_THREADS - 1 &&
           pthread_create(&tid[started], NULL, build_worker, &b) == 0)
        started++;
    build_worker(&b); /* this thread is one of them */
    for (size_t t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&b.mu);
    pthread_cond_destroy(&b.cv);
    if (b.st) {
        if (err)
            *err = b.err;
        return b.st;
    }
    return st || !sync ? st : sync_tree(top, err);
}

static int cmd_tree_apply(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--help") == 0)
        return fputs(tree_usage, stdout), LP_EXIT_OK;
    int sync = 1;
    if (argc == 6 && strcmp(argv[4], "--sync") == 0) {
        if (!lp_cli_delta_sync_arg(argv[5], &sync))
            return tree_usage_error("--sync must be on or off");
        argc = 4;
    }
    if (argc != 4)
        return tree_usage_error("apply needs OLD_DIR IN_DIR OUT_DIR [--sync on|off]");
    const char *old_dir = argv[1], *in_dir = argv[2], *out_dir = argv[3];
    lp_error err;
    lp_error_clear(&err);
    struct stat sb;
    if (lstat(out_dir, &sb) == 0) {
        lp_error_set(&err, LP_ERR_INVALID_ARG, "%s exists (apply writes a new folder)", out_dir);
        return lp_cli_fail(&err, "delta tree apply");
    }
    json_t *root = NULL, **plan_of = NULL;
    lp_manifest m;
    lp_status st = read_plan(in_dir, &root, &m, &plan_of, &err);
    char *top = st ? NULL : join3(out_dir, "", ".tmp-XXXXXX");
    if (!st && !top)
        st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    /* join3 put a '/' between OUT_DIR and the suffix: make it a sibling */
    if (top)
        memmove(top + strlen(out_dir), top + strlen(out_dir) + 1,
                strlen(top + strlen(out_dir) + 1) + 1);
    if (!st && !mkdtemp(top)) {
        st = lp_error_set(&err, LP_ERR_IO, "create %s: %s", top, strerror(errno));
        free(top);
        top = NULL;
    }
    if (!st && chmod(top, 0755) != 0)
        st = lp_error_set(&err, LP_ERR_IO, "chmod %s: %s", top, strerror(errno));
    if (!st)
        st = build_tree(old_dir, in_dir, top, sync, &m, plan_of, &err);
    if (!st && lstat(out_dir, &sb) == 0)
        st = lp_error_set(&err, LP_ERR_INVALID_ARG, "%s appeared meanwhile", out_dir);
    if (!st && rename(top, out_dir) != 0)
        st = lp_error_set(&err, LP_ERR_IO, "rename %s to %s: %s", top, out_dir, strerror(errno));
    if (st && top)
        nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (!st && sync)
        st = lp_file_sync_parent(out_dir, &err);
    free(top);
    free(plan_of);
    json_decref(root);
    lp_manifest_free(&m);
    if (st)
        return lp_cli_fail(&err, "delta tree apply");
    return LP_EXIT_OK;
}

int lp_cmd_delta_tree(int argc, char **argv)
{
    if (argc < 2)
        return tree_usage_error("missing subcommand (make or apply)");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return fputs(tree_usage, stdout), LP_EXIT_OK;
    if (!strcmp(argv[1], "make"))
        return cmd_tree_make(argc - 1, argv + 1);
    if (!strcmp(argv[1], "apply"))
        return cmd_tree_apply(argc - 1, argv + 1);
    return tree_usage_error("unknown subcommand (make or apply)");
}
