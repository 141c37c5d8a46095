/*
 * export.c — `livepush export`: an app's repository as plain files (see
 * export.h for the layout and the guarantees, docs/export.md for serving).
 *
 * One run, under a flock(2) on the export folder:
 *   1. read the timestamp (the file, or the bytes a refresh just signed),
 *      the snapshot it names and every targets role that snapshot names,
 *      into memory, checking their form (types, versions, names, hashes);
 *   2. copy every root version (1.root.json upward until one is missing);
 *   3. copy the target files those roles list, checking length and SHA-256;
 *      the release manifests (targets "releases/<code>.json" of the
 *      top-level role) are parsed and give the blobs;
 *   4. copy the blobs (checked against their names and the manifests'
 *      sizes);
 *   5. for every release listed, the pairs of releases the server planned
 *      deltas for (looked up in the database like the server's index route
 *      does) that are finished: copy their deltas, then write the index;
 *      pairs still being made are left out (a device then fetches whole
 *      files) and counted;
 *   6. the targets roles and the snapshot, root.json, mirror.json;
 *   7. timestamp.json, last, unless the export holds a newer one.
 * Nothing is read from the data folder that the steps before did not name,
 * and the server writes versioned and content-addressed files once, so the
 * files read belong to the one repository state the timestamp describes
 * even while the server publishes.  The blob store's own functions are not
 * used: opening a store cleans its tmp/ folder, which belongs to the
 * running server; the blob path (<blobs>/<first 2 hex>/<sha256>) is
 * computed here from the documented layout instead.
 *
 * Writes: each file goes to a temporary file next to its final name, is
 * fsync'd and renamed, and the folder is fsync'd (lp_file_commit_tmp); a
 * folder created on the way is fsync'd into its parent, so once
 * timestamp.json is durable everything it leads to is too.  A file already
 * there is kept when it is what it should be (see export.h).
 */
#include "server/export.h"

#include "core/buf.h"
#include "core/file.h"
#include "core/timeutil.h"
#include "livepush/bundle.h"
#include "livepush/db.h"
#include "livepush/hash.h"
#include "server/service_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define META_MAX (64u * 1024 * 1024)  /* a metadata file (targets roles can be large) */
#define TIMESTAMP_MAX (1024u * 1024)  /* timestamp.json */
#define COPY_BUF (256u * 1024)
#define TARGET_NAME_MAX 1024u
#define ROLE_NAME_MAX 64u
#define ROOTS_MAX 100000u
#define FILE_MODE 0644
#define DIR_MODE 0755

typedef struct blob_ref {
    char sha[LP_BLOB_ID_SIZE];
    uint64_t size;
} blob_ref;

typedef struct target_ref {
    char *name;      /* the TUF target name */
    char *file;      /* its consistent file, relative to targets/ */
    char sha[LP_BLOB_ID_SIZE];
    uint64_t length;
    int64_t code;    /* releases/<code>.json of the top-level role; 0 otherwise */
} target_ref;

typedef struct role_file {
    char *name;
    uint64_t version;
    uint8_t *data;
    size_t len;
} role_file;

typedef struct exporter {
    const lp_export_opts *o;
    lp_export_result r;
    char *out;       /* o->out_dir without trailing slashes */
    char *repo;      /* <data>/repos/<app> */
    char *app_rel;   /* v1/apps/<app> */
    uint8_t *buf;    /* COPY_BUF bytes */
    uint8_t *ts;     /* the timestamp's bytes */
    size_t ts_len;
    uint8_t *snap;
    size_t snap_len;
    role_file *roles;
    size_t nroles;
    target_ref *targets;
    size_t ntargets, cap_targets;
    blob_ref *blobs;
    size_t nblobs, cap_blobs;
} exporter;

/* ---- small helpers ------------------------------------------------------------ */

static lp_status oom(lp_error *err)
{
    return lp_error_set(err, LP_ERR_NOMEM, "export: out of memory");
}

static void hex_of(const uint8_t md[LP_HASH_MAX_LEN], char out[LP_BLOB_ID_SIZE])
{
    lp_hex_encode(md, LP_SHA256_LEN, out);
    out[LP_BLOB_ID_HEX] = '\0';
}

static lp_status sha256_buf(const void *data, size_t len, char out[LP_BLOB_ID_SIZE],
                            lp_error *err)
{
    uint8_t md[LP_HASH_MAX_LEN];
    lp_status st = lp_hash_buf(LP_HASH_SHA256, data, len, md, err);
    if (!st)
        hex_of(md, out);
    return st;
}

/* The SHA-256 of the file at `path` (whole), through x->buf. */
static lp_status sha256_file(exporter *x, const char *path, char out[LP_BLOB_ID_SIZE],
                             lp_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "open %s: %s",
                            path, strerror(errno));
    lp_hash_ctx *h = NULL;
    lp_status st = lp_hash_new(&h, LP_HASH_SHA256, err);
    for (;;) {
        if (st)
            break;
        ssize_t n = read(fd, x->buf, COPY_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            st = lp_error_set(err, LP_ERR_IO, "read %s: %s", path, strerror(errno));
        if (n <= 0)
            break;
        st = lp_hash_update(h, x->buf, (size_t)n, err);
    }
    uint8_t md[LP_HASH_MAX_LEN];
    if (!st && !(st = lp_hash_final(h, md, err)))
        hex_of(md, out);
    lp_hash_free(h);
    close(fd);
    return st;
}

/* Makes the folders of `rel_dir` under the export folder; each one made
 * is fsync'd into its parent, so a durable file below it stays reachable. */
static lp_status make_dirs(exporter *x, const char *rel_dir, lp_error *err)
{
    char *p = lp_str_printf("%s/%s", x->out, rel_dir);
    if (!p)
        return oom(err);
    size_t base = strlen(x->out) + 1, n = strlen(p);
    lp_status st = LP_OK;
    for (size_t i = base; !st && i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, DIR_MODE) == 0)
            st = lp_file_sync_parent(p, err);
        else if (errno != EEXIST)
            st = lp_error_set(err, LP_ERR_IO, "mkdir %s: %s", p, strerror(errno));
        p[i] = c;
    }
    struct stat sb;
    if (!st && (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        st = lp_error_set(err, LP_ERR_IO, "%s: not a folder", p);
    free(p);
    return st;
}

static lp_status make_parent_dirs(exporter *x, const char *rel, lp_error *err)
{
    const char *slash = strrchr(rel, '/');
    if (!slash)
        return LP_OK;
    char *dir = strndup(rel, (size_t)(slash - rel));
    if (!dir)
        return oom(err);
    lp_status st = make_dirs(x, dir, err);
    free(dir);
    return st;
}

static void written(exporter *x, const char *rel, uint64_t size)
{
    x->r.files_written++;
    x->r.bytes_written += size;
    if (x->o->on_file)
        x->o->on_file(x->o->ctx, rel, size);
}

/* ---- writing one file ------------------------------------------------------------ */

/* Whether the export's file `full` holds exactly `len` bytes at `data`. */
static bool same_bytes(const char *full, const void *data, size_t len)
{
    struct stat sb;
    if (lstat(full, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != len)
        return false;
    uint8_t *have = NULL;
    size_t hlen = 0;
    lp_error ignored;
    if (lp_file_read(full, len, &have, &hlen, &ignored))
        return false;
    bool same = hlen == len && (len == 0 || memcmp(have, data, len) == 0);
    free(have);
    return same;
}

/* Puts `len` bytes at `data` at <out>/<rel>.  An `immutable` file (named
 * by its version or content) that exists with that size is kept without
 * being read, unless verifying; any other is compared byte for byte. */
static lp_status put_bytes(exporter *x, const char *rel, const void *data, size_t len,
                           bool immutable, lp_error *err)
{
    char *full = lp_str_printf("%s/%s", x->out, rel);
    if (!full)
        return oom(err);
    struct stat sb;
    bool keep = false;
    if (immutable && !x->o->verify && lstat(full, &sb) == 0 && S_ISREG(sb.st_mode) &&
        (uint64_t)sb.st_size == len)
        keep = true;
    else
        keep = same_bytes(full, data, len);
    lp_status st = LP_OK;
    if (keep) {
        x->r.files_kept++;
    } else if (!(st = make_parent_dirs(x, rel, err)) &&
               !(st = lp_file_write_atomic(full, data, len, FILE_MODE, err))) {
        written(x, rel, len);
    }
    free(full);
    return st;
}

/* Copies the data folder's file `src` to <out>/<rel>.  It must hold
 * exactly `size` bytes and, when sha is not NULL, have that SHA-256.
 * `what` starts the messages.  A file already in the export with that
 * size is kept (when verifying: only when its content is right). */
static lp_status copy_in(exporter *x, const char *src, const char *rel, uint64_t size,
                         const char *sha, const char *what, lp_error *err)
{
    char *full = lp_str_printf("%s/%s", x->out, rel);
    if (!full)
        return oom(err);
    lp_status st = LP_OK;
    struct stat sb;
    if (lstat(full, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == size) {
        bool keep = !x->o->verify;
        if (!keep) {
            char have[LP_BLOB_ID_SIZE], want[LP_BLOB_ID_SIZE];
            st = sha256_file(x, full, have, err);
            if (!st && !sha && !(st = sha256_file(x, src, want, err)))
                sha = want;
            keep = !st && strcmp(have, sha) == 0;
            if (st == LP_ERR_NOT_FOUND)
                st = lp_error_prefix(err, st, "%s", what);
        }
        if (st || keep) {
            if (keep)
                x->r.files_kept++;
            free(full);
            return st;
        }
    }
    int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0) {
        st = lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO,
                          "%s: %s: %s", what, src, strerror(errno));
        free(full);
        return st;
    }
    if (fstat(in, &sb) != 0 || !S_ISREG(sb.st_mode))
        st = lp_error_set(err, LP_ERR_IO, "%s: %s is not a regular file", what, src);
    else if ((uint64_t)sb.st_size != size)
        st = lp_error_set(err, LP_ERR_LENGTH_MISMATCH, "%s: %s has %llu bytes, %llu expected",
                          what, src, (unsigned long long)sb.st_size, (unsigned long long)size);
    size_t cap = strlen(full) + 32;
    char *tmp = malloc(cap);
    int out = -1;
    lp_hash_ctx *h = NULL;
    if (!st && !tmp)
        st = oom(err);
    if (!st)
        st = make_parent_dirs(x, rel, err);
    if (!st && sha)
        st = lp_hash_new(&h, LP_HASH_SHA256, err);
    if (!st)
        st = lp_file_open_tmp(full, FILE_MODE, tmp, cap, &out, err);
    uint64_t done = 0;
    while (!st) {
        ssize_t n = read(in, x->buf, COPY_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            st = lp_error_set(err, LP_ERR_IO, "read %s: %s", src, strerror(errno));
        if (n <= 0)
            break;
        done += (uint64_t)n;
        if (done > size)
            st = lp_error_set(err, LP_ERR_LENGTH_MISMATCH, "%s: %s grew past %llu bytes", what,
                              src, (unsigned long long)size);
        if (!st && h)
            st = lp_hash_update(h, x->buf, (size_t)n, err);
        if (!st)
            st = lp_file_write_all(out, x->buf, (size_t)n, tmp, err);
    }
    if (!st && done != size)
        st = lp_error_set(err, LP_ERR_LENGTH_MISMATCH, "%s: read %llu bytes of %s, %llu expected",
                          what, (unsigned long long)done, src, (unsigned long long)size);
    if (!st && h) {
        uint8_t md[LP_HASH_MAX_LEN];
        char got[LP_BLOB_ID_SIZE];
        if (!(st = lp_hash_final(h, md, err))) {
            hex_of(md, got);
            if (strcmp(got, sha) != 0)
                st = lp_error_set(err, LP_ERR_HASH_MISMATCH,
                                  "%s: %s has SHA-256 %s, the metadata says %s (the data "
                                  "folder's copy is damaged)",
                                  what, src, got, sha);
        }
    }
    lp_hash_free(h);
    close(in);
    if (out >= 0) {
        if (!st) {
            st = lp_file_commit_tmp(out, tmp, full, err);
        } else {
            close(out);
            unlink(tmp);
        }
    }
    if (!st)
        written(x, rel, size);
    free(tmp);
    free(full);
    return st;
}

/* ---- reading the metadata ------------------------------------------------------------- */

/* The "signed" object of a metadata file, checked to be of `type` (and of
 * `version` when it is not 0).  *root gets the document (caller decrefs). */
static lp_status signed_of(const uint8_t *data, size_t len, const char *what, const char *type,
                           uint64_t version, json_t **root, json_t **sig, lp_error *err)
{
    json_error_t je;
    *root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je);
    if (!*root)
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: not valid JSON: %s (line %d)", what,
                            je.text, je.line);
    *sig = json_object_get(*root, "signed");
    const char *t = json_string_value(json_object_get(*sig, "_type"));
    json_t *v = json_object_get(*sig, "version");
    if (!json_is_object(*sig) || !t || strcmp(t, type) != 0)
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: not %s metadata", what, type);
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        (version && (uint64_t)json_integer_value(v) != version))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: version %lld, %llu expected", what,
                            json_is_integer(v) ? (long long)json_integer_value(v) : -1LL,
                            (unsigned long long)version);
    return LP_OK;
}

/* The version in meta[key] (a positive integer). */
static bool meta_version(json_t *meta, const char *key, uint64_t *v)
{
    json_t *n = json_object_get(json_object_get(meta, key), "version");
    if (!json_is_integer(n) || json_integer_value(n) < 1)
        return false;
    *v = (uint64_t)json_integer_value(n);
    return true;
}

static bool role_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > ROLE_NAME_MAX || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
            return false;
    return true;
}

/* A target name that is safe as a relative path: 1..TARGET_NAME_MAX bytes,
 * '/'-separated parts, none empty, "." or "..", no control character or
 * backslash. */
static bool target_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TARGET_NAME_MAX)
        return false;
    const char *part = s;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '/' || c == '\0') {
            size_t len = (size_t)(s + i - part);
            if (len == 0 || (len == 1 && part[0] == '.') ||
                (len == 2 && part[0] == '.' && part[1] == '.'))
                return false;
            part = s + i + 1;
        } else if (c < 0x20 || c == 0x7f || c == '\\') {
            return false;
        }
    }
    return true;
}

/* 123 from "releases/123.json" (1..18 digits, no leading zero); 0 otherwise. */
static int64_t release_code(const char *name)
{
    static const char pre[] = "releases/";
    if (strncmp(name, pre, sizeof pre - 1) != 0)
        return 0;
    const char *p = name + sizeof pre - 1, *dot = strchr(p, '.');
    if (!dot || strcmp(dot, ".json") != 0 || dot == p || dot - p > 18 || p[0] == '0')
        return 0;
    int64_t v = 0;
    for (; p < dot; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        v = v * 10 + (*p - '0');
    }
    return v;
}

static lp_status add_target(exporter *x, const char *role, const char *name, json_t *t,
                            const char *what, lp_error *err)
{
    json_t *len = json_object_get(t, "length");
    const char *sha = json_string_value(json_object_get(json_object_get(t, "hashes"), "sha256"));
    if (!target_name_ok(name))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: target name '%.200s' is not a safe "
                            "relative path", what, name);
    if (!json_is_integer(len) || json_integer_value(len) < 0 || !sha || !lp_blob_id_valid(sha))
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "%s: target '%.200s' needs a length and a sha256 hash (64 lower-case "
                            "hex digits)", what, name);
    if (x->ntargets == x->cap_targets) {
        size_t cap = x->cap_targets ? x->cap_targets * 2 : 64;
        target_ref *n = realloc(x->targets, cap * sizeof *n);
        if (!n)
            return oom(err);
        x->targets = n;
        x->cap_targets = cap;
    }
    target_ref *r = &x->targets[x->ntargets];
    memset(r, 0, sizeof *r);
    const char *slash = strrchr(name, '/');
    r->name = strdup(name);
    r->file = slash ? lp_str_printf("%.*s/%s.%s", (int)(slash - name), name, sha, slash + 1)
                    : lp_str_printf("%s.%s", sha, name);
    if (!r->name || !r->file) {
        free(r->name);
        free(r->file);
        return oom(err);
    }
    snprintf(r->sha, sizeof r->sha, "%s", sha);
    r->length = (uint64_t)json_integer_value(len);
    r->code = strcmp(role, "targets") == 0 ? release_code(name) : 0;
    x->ntargets++;
    return LP_OK;
}

/* Reads the file <repo>/metadata/<name> (at most max bytes). */
static lp_status read_meta(exporter *x, const char *name, size_t max, uint8_t **data,
                           size_t *len, lp_error *err)
{
    char *path = lp_str_printf("%s/metadata/%s", x->repo, name);
    if (!path)
        return oom(err);
    lp_status st = lp_file_read(path, max, data, len, err);
    free(path);
    return st;
}

/* Step 1: the timestamp, its snapshot, the snapshot's targets roles. */
static lp_status read_metadata(exporter *x, lp_error *err)
{
    lp_status st = LP_OK;
    if (x->o->timestamp) {
        if (x->o->timestamp_len > TIMESTAMP_MAX)
            return lp_error_set(err, LP_ERR_TOO_LARGE, "timestamp: more than %u bytes",
                                TIMESTAMP_MAX);
        if (!(x->ts = malloc(x->o->timestamp_len ? x->o->timestamp_len : 1)))
            return oom(err);
        memcpy(x->ts, x->o->timestamp, x->o->timestamp_len);
        x->ts_len = x->o->timestamp_len;
    } else if ((st = read_meta(x, "timestamp.json", TIMESTAMP_MAX, &x->ts, &x->ts_len, err))) {
        if (st == LP_ERR_NOT_FOUND)
            return lp_error_set(err, st,
                                "app %s has no timestamp.json yet (%s/metadata): nothing is "
                                "published",
                                x->o->app, x->repo);
        return st;
    }
    json_t *doc = NULL, *sig = NULL;
    st = signed_of(x->ts, x->ts_len, "timestamp.json", "timestamp", 0, &doc, &sig, err);
    uint64_t snap_version = 0;
    if (!st) {
        x->r.timestamp_version = (uint64_t)json_integer_value(json_object_get(sig, "version"));
        const char *exp = json_string_value(json_object_get(sig, "expires"));
        if (!exp || lp_time_parse(exp, &x->r.timestamp_expires, err))
            st = lp_error_set(err, LP_ERR_MALFORMED, "timestamp.json: no valid 'expires'");
    }
    if (!st && !meta_version(json_object_get(sig, "meta"), "snapshot.json", &snap_version))
        st = lp_error_set(err, LP_ERR_MALFORMED, "timestamp.json: no snapshot version");
    json_decref(doc);
    doc = NULL;
    if (st)
        return st;
    x->r.snapshot_version = snap_version;
    char name[64];
    snprintf(name, sizeof name, "%llu.snapshot.json", (unsigned long long)snap_version);
    if ((st = read_meta(x, name, META_MAX, &x->snap, &x->snap_len, err)))
        return lp_error_prefix(err, st, "the snapshot timestamp.json names");
    if ((st = signed_of(x->snap, x->snap_len, name, "snapshot", snap_version, &doc, &sig, err))) {
        json_decref(doc);
        return st;
    }
    json_t *meta = json_object_get(sig, "meta");
    size_t n = json_object_size(meta);
    if (!json_is_object(meta) || n == 0 || !json_object_get(meta, "targets.json"))
        st = lp_error_set(err, LP_ERR_MALFORMED, "%s: 'meta' must list targets.json", name);
    if (!st && !(x->roles = calloc(n, sizeof *x->roles)))
        st = oom(err);
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val) {
        (void)val;
        if (st)
            break;
        size_t kl = strlen(key);
        role_file *rf = &x->roles[x->nroles];
        if (kl <= 5 || strcmp(key + kl - 5, ".json") != 0 || !role_name_ok(key, kl - 5) ||
            !meta_version(meta, key, &rf->version)) {
            st = lp_error_set(err, LP_ERR_MALFORMED,
                              "%s: meta entry '%.100s' is not <role>.json with a version", name,
                              key);
            break;
        }
        if (!(rf->name = strndup(key, kl - 5))) {
            st = oom(err);
            break;
        }
        x->nroles++;
        if (!strcmp(rf->name, "root") || !strcmp(rf->name, "snapshot") ||
            !strcmp(rf->name, "timestamp")) {
            st = lp_error_set(err, LP_ERR_MALFORMED, "%s: lists the %s role", name, rf->name);
            break;
        }
        char file[128];
        snprintf(file, sizeof file, "%llu.%s.json", (unsigned long long)rf->version, rf->name);
        if ((st = read_meta(x, file, META_MAX, &rf->data, &rf->len, err))) {
            lp_error_prefix(err, st, "the %s role %s names", rf->name, name);
            break;
        }
        json_t *rdoc = NULL, *rsig = NULL;
        st = signed_of(rf->data, rf->len, file, "targets", rf->version, &rdoc, &rsig, err);
        json_t *targets = json_object_get(rsig, "targets");
        if (!st && !json_is_object(targets))
            st = lp_error_set(err, LP_ERR_MALFORMED, "%s: no 'targets' object", file);
        const char *tname;
        json_t *t;
        json_object_foreach(targets, tname, t) {
            if (st)
                break;
            st = add_target(x, rf->name, tname, t, file, err);
        }
        json_decref(rdoc);
    }
    json_decref(doc);
    return st;
}

/* ---- the steps ---------------------------------------------------------------------- */

/* Step 2: 1.root.json, 2.root.json, ... until one is missing. */
static lp_status export_roots(exporter *x, lp_error *err)
{
    lp_status st = LP_OK;
    uint32_t n = 1;
    for (; !st && n <= ROOTS_MAX; n++) {
        char name[64], *rel = NULL;
        snprintf(name, sizeof name, "%u.root.json", n);
        uint8_t *data = NULL;
        size_t len = 0;
        st = read_meta(x, name, META_MAX, &data, &len, err);
        if (st == LP_ERR_NOT_FOUND && n > 1) {
            st = LP_OK;
            break;
        }
        if (!st && !(rel = lp_str_printf("%s/metadata/%s", x->app_rel, name)))
            st = oom(err);
        if (!st)
            st = put_bytes(x, rel, data, len, true, err);
        free(rel);
        free(data);
    }
    return st;
}

static int cmp_blob(const void *a, const void *b)
{
    return strcmp(((const blob_ref *)a)->sha, ((const blob_ref *)b)->sha);
}

static lp_status add_blobs(exporter *x, const lp_manifest *m, const char *what, lp_error *err)
{
    for (size_t i = 0; i < m->count; i++) {
        const lp_manifest_entry *e = &m->entries[i];
        if (e->type != LP_ENTRY_FILE)
            continue;
        if (x->nblobs == x->cap_blobs) {
            size_t cap = x->cap_blobs ? x->cap_blobs * 2 : 256;
            blob_ref *n = realloc(x->blobs, cap * sizeof *n);
            if (!n)
                return oom(err);
            x->blobs = n;
            x->cap_blobs = cap;
        }
        blob_ref *b = &x->blobs[x->nblobs++];
        snprintf(b->sha, sizeof b->sha, "%s", e->sha256);
        b->size = e->size;
    }
    (void)what;
    return LP_OK;
}

/* Step 3: the target files; release manifests give the blobs. */
static lp_status export_targets(exporter *x, lp_error *err)
{
    lp_status st = LP_OK;
    for (size_t i = 0; !st && i < x->ntargets; i++) {
        const target_ref *t = &x->targets[i];
        char *src = lp_str_printf("%s/targets/%s", x->repo, t->file);
        char *rel = lp_str_printf("%s/targets/%s", x->app_rel, t->file);
        char *what = lp_str_printf("target %s", t->name);
        if (!src || !rel || !what)
            st = oom(err);
        if (!st && !t->code) {
            st = copy_in(x, src, rel, t->length, t->sha, what, err);
        } else if (!st) {
            /* A release manifest: read it whole, check it, keep its blobs. */
            uint8_t *data = NULL;
            size_t len = 0;
            char got[LP_BLOB_ID_SIZE];
            lp_manifest m;
            lp_manifest_init(&m);
            if (t->length > LP_MANIFEST_MAX_JSON_BYTES)
                st = lp_error_set(err, LP_ERR_TOO_LARGE, "%s: %llu bytes, more than a manifest "
                                  "may have", what, (unsigned long long)t->length);
            if (!st && (st = lp_file_read(src, LP_MANIFEST_MAX_JSON_BYTES, &data, &len, err)))
                lp_error_prefix(err, st, "%s", what);
            if (!st && len != t->length)
                st = lp_error_set(err, LP_ERR_LENGTH_MISMATCH, "%s: %s has %zu bytes, the "
                                  "metadata says %llu", what, src, len,
                                  (unsigned long long)t->length);
            if (!st && !(st = sha256_buf(data, len, got, err)) && strcmp(got, t->sha) != 0)
                st = lp_error_set(err, LP_ERR_HASH_MISMATCH,
                                  "%s: %s has SHA-256 %s, the metadata says %s", what, src, got,
                                  t->sha);
            if (!st && (st = lp_manifest_from_json(data, len, &m, err)))
                lp_error_prefix(err, st, "%s", what);
            if (!st)
                st = add_blobs(x, &m, what, err);
            if (!st)
                st = put_bytes(x, rel, data, len, true, err);
            if (!st)
                x->r.releases++;
            lp_manifest_free(&m);
            free(data);
        }
        free(src);
        free(rel);
        free(what);
    }
    x->r.targets = x->ntargets;
    if (st || !x->nblobs)
        return st;
    qsort(x->blobs, x->nblobs, sizeof *x->blobs, cmp_blob);
    size_t k = 0;
    for (size_t i = 0; i < x->nblobs; i++) {
        if (k && strcmp(x->blobs[k - 1].sha, x->blobs[i].sha) == 0) {
            if (x->blobs[k - 1].size != x->blobs[i].size)
                return lp_error_set(err, LP_ERR_MALFORMED,
                                    "blob %s: the manifests give it %llu and %llu bytes",
                                    x->blobs[i].sha, (unsigned long long)x->blobs[k - 1].size,
                                    (unsigned long long)x->blobs[i].size);
            continue;
        }
        x->blobs[k++] = x->blobs[i];
    }
    x->nblobs = k;
    return LP_OK;
}

/* Step 4: the blobs. */
static lp_status export_blobs(exporter *x, lp_error *err)
{
    lp_status st = LP_OK;
    for (size_t i = 0; !st && i < x->nblobs; i++) {
        const blob_ref *b = &x->blobs[i];
        char *src = lp_str_printf("%s/blobs/%.2s/%s", x->o->data_dir, b->sha, b->sha);
        char *rel = lp_str_printf("v1/blobs/%s", b->sha);
        char what[80];
        snprintf(what, sizeof what, "blob %s", b->sha);
        st = src && rel ? copy_in(x, src, rel, b->size, b->sha, what, err) : oom(err);
        free(src);
        free(rel);
    }
    x->r.blobs = x->nblobs;
    return st;
}

/* ---- step 5: deltas ------------------------------------------------------------------ */

typedef struct release_set {
    lp_db_release_list *pages;
    size_t npages;
    const lp_db_release **all; /* by version code, descending */
    size_t count;
} release_set;

static void release_set_free(release_set *s)
{
    for (size_t i = 0; i < s->npages; i++)
        lp_db_release_list_free(&s->pages[i]);
    free(s->pages);
    free(s->all);
    memset(s, 0, sizeof *s);
}

/* Every release of the app, in pages of LP_DB_LIST_MAX. */
static lp_status release_set_load(lp_db *db, int64_t app_id, release_set *s, lp_error *err)
{
    memset(s, 0, sizeof *s);
    int64_t before = 0;
    lp_status st = LP_OK;
    for (;;) {
        lp_db_release_list *pages = realloc(s->pages, (s->npages + 1) * sizeof *pages);
        if (!pages) {
            st = oom(err);
            break;
        }
        s->pages = pages;
        lp_db_release_list *page = &s->pages[s->npages];
        memset(page, 0, sizeof *page);
        if ((st = lp_db_release_list_by_app(db, app_id, NULL, before, LP_DB_LIST_MAX, page, err)))
            break;
        s->npages++;
        if (page->count == 0)
            break;
        const lp_db_release **all = realloc(s->all, (s->count + page->count) * sizeof *all);
        if (!all) {
            st = oom(err);
            break;
        }
        s->all = all;
        for (size_t i = 0; i < page->count; i++)
            s->all[s->count++] = &page->items[i];
        before = page->items[page->count - 1].version_code;
        if (page->count < LP_DB_LIST_MAX || before <= 1)
            break;
    }
    if (st)
        release_set_free(s);
    return st;
}

static const lp_db_release *release_by_code(const release_set *s, int64_t code, size_t *index)
{
    size_t lo = 0, hi = s->count;
    while (lo < hi) { /* descending order */
        size_t mid = lo + (hi - lo) / 2;
        if (s->all[mid]->version_code > code)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < s->count && s->all[lo]->version_code == code) {
        *index = lo;
        return s->all[lo];
    }
    return NULL;
}

static bool on_channel(const lp_db_release *r, const char *channel)
{
    for (size_t i = 0; i < r->n_channels; i++)
        if (strcmp(r->channels[i], channel) == 0)
            return true;
    return false;
}

static int cmp_code(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* One planned pair: its deltas, then its index. */
static lp_status export_pair(exporter *x, lp_db *db, const lp_db_delta_pair *pair,
                             lp_error *err)
{
    lp_db_delta_list list = {0};
    lp_status st = lp_db_delta_list_pair(db, pair->from_release_id, pair->to_release_id,
                                         LP_DB_DELTA_MADE, &list, err);
    json_t *arr = st ? NULL : json_array();
    if (!st && !arr)
        st = oom(err);
    size_t listed = 0;
    for (size_t i = 0; !st && i < list.count; i++) {
        const lp_db_delta *d = &list.items[i];
        if (!lp_blob_id_valid(d->base_sha256) || !lp_blob_id_valid(d->result_sha256)) {
            st = lp_error_set(err, LP_ERR_MALFORMED, "the database lists a delta with a bad name");
            break;
        }
        char *src = lp_str_printf("%s/deltas/%s/%s", x->o->data_dir, d->base_sha256, d->result_sha256);
        char *rel = lp_str_printf("v1/deltas/%s/%s", d->base_sha256, d->result_sha256);
        char what[160];
        snprintf(what, sizeof what, "delta %s/%s", d->base_sha256, d->result_sha256);
        if (!src || !rel)
            st = oom(err);
        else if (!lp_file_exists(src))
            x->r.deltas_missing++; /* left out of the index: the device fetches the file */
        else if (!(st = copy_in(x, src, rel, d->size, NULL, what, err))) {
            json_t *e = json_pack("{s:s,s:s,s:I}", "result", d->result_sha256, "base",
                                  d->base_sha256, "size", (json_int_t)d->size);
            if (!e || json_array_append_new(arr, e))
                st = oom(err);
            listed++;
        }
        free(src);
        free(rel);
    }
    lp_db_delta_list_free(&list);
    json_t *doc = NULL;
    if (!st) {
        doc = json_pack("{s:I,s:I,s:b,s:O}", "from", (json_int_t)pair->from_code, "to",
                        (json_int_t)pair->to_code, "complete", 1, "deltas", arr);
        if (!doc)
            st = oom(err);
    }
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    char *rel = lp_str_printf("%s/deltas/%lld/%lld.json", x->app_rel, (long long)pair->from_code,
                     (long long)pair->to_code);
    if (!st && (!text || !rel))
        st = oom(err);
    if (!st)
        st = put_bytes(x, rel, text, strlen(text), false, err);
    if (!st) {
        x->r.delta_pairs++;
        x->r.deltas += listed;
    }
    free(rel);
    free(text);
    json_decref(doc);
    json_decref(arr);
    return st;
}

/* The pairs planned for release `to` (see the top of this file): from the
 * earlier releases of each of its channels, as many as the server may
 * pair a release with. */
static lp_status export_pairs_to(exporter *x, lp_db *db, int64_t app_id, const release_set *s,
                                 int64_t to_code, lp_error *err)
{
    size_t at = 0;
    const lp_db_release *to = release_by_code(s, to_code, &at);
    if (!to)
        return LP_OK; /* the database does not know it: nothing was planned */
    size_t cap = (size_t)to->n_channels * (2 * LP_DB_DELTA_RELEASES_MAX) + 1, n = 0;
    int64_t *from = calloc(cap, sizeof *from);
    if (!from)
        return oom(err);
    for (size_t c = 0; c < to->n_channels; c++) {
        size_t published = 0, taken = 0;
        for (size_t i = at + 1; i < s->count && taken < 2 * LP_DB_DELTA_RELEASES_MAX; i++) {
            const lp_db_release *r = s->all[i];
            if (!on_channel(r, to->channels[c]))
                continue;
            from[n++] = r->version_code;
            taken++;
            if (strcmp(r->state, LP_DB_STATE_PUBLISHED) == 0 &&
                ++published == LP_DB_DELTA_RELEASES_MAX)
                break;
        }
    }
    qsort(from, n, sizeof *from, cmp_code);
    lp_status st = LP_OK;
    for (size_t i = 0; !st && i < n; i++) {
        if (i && from[i] == from[i - 1])
            continue;
        lp_db_delta_pair pair;
        lp_status ps = lp_db_delta_pair_get(db, app_id, from[i], to_code, &pair, err);
        if (ps == LP_ERR_NOT_FOUND)
            continue;
        if (ps)
            st = ps;
        else if (!pair.done)
            x->r.delta_pairs_pending++;
        else
            st = export_pair(x, db, &pair, err);
    }
    free(from);
    return st;
}

static lp_status export_deltas(exporter *x, lp_error *err)
{
    char *url = NULL;
    if (x->o->db_url && x->o->db_url[0]) {
        url = strdup(x->o->db_url);
    } else {
        char *file = lp_str_printf("%s/livepush.db", x->o->data_dir);
        if (file && !lp_file_exists(file)) {
            lp_status st = lp_error_set(err, LP_ERR_NOT_FOUND,
                                        "no database at %s: the deltas need the server's "
                                        "database (give its URL, or leave the deltas out)",
                                        file);
            free(file);
            return st;
        }
        url = file ? lp_str_printf("sqlite:%s", file) : NULL;
        free(file);
    }
    if (!url)
        return oom(err);
    lp_db *db = NULL;
    lp_db_app app = {0};
    release_set set = {0};
    lp_status st = lp_db_open(url, &db, err);
    if (st)
        lp_error_prefix(err, st, "database");
    if (!st && (st = lp_db_app_get_by_name(db, x->o->app, &app, err)) == LP_ERR_NOT_FOUND)
        st = lp_error_set(err, st, "the database has no app named '%s'", x->o->app);
    if (!st)
        st = release_set_load(db, app.id, &set, err);
    for (size_t i = 0; !st && i < x->ntargets; i++)
        if (x->targets[i].code)
            st = export_pairs_to(x, db, app.id, &set, x->targets[i].code, err);
    release_set_free(&set);
    lp_db_app_free(&app);
    lp_db_close(db);
    free(url);
    return st;
}

/* ---- steps 6 and 7 ----------------------------------------------------------------- */

static lp_status export_metadata(exporter *x, lp_error *err)
{
    lp_status st = LP_OK;
    for (size_t i = 0; !st && i < x->nroles; i++) {
        const role_file *rf = &x->roles[i];
        char *rel = lp_str_printf("%s/metadata/%llu.%s.json", x->app_rel,
                         (unsigned long long)rf->version, rf->name);
        st = rel ? put_bytes(x, rel, rf->data, rf->len, true, err) : oom(err);
        free(rel);
    }
    char *rel = NULL;
    if (!st && !(rel = lp_str_printf("%s/metadata/%llu.snapshot.json", x->app_rel,
                            (unsigned long long)x->r.snapshot_version)))
        st = oom(err);
    if (!st)
        st = put_bytes(x, rel, x->snap, x->snap_len, true, err);
    free(rel);
    rel = NULL;
    /* root.json: the newest root, for a device's first set-up */
    uint8_t *root = NULL;
    size_t rlen = 0;
    lp_status rs = st ? st : read_meta(x, "root.json", META_MAX, &root, &rlen, err);
    if (rs == LP_OK && !(rel = lp_str_printf("%s/metadata/root.json", x->app_rel)))
        rs = oom(err);
    if (rs == LP_OK)
        st = put_bytes(x, rel, root, rlen, false, err);
    else if (rs != LP_ERR_NOT_FOUND)
        st = rs;
    free(root);
    free(rel);
    rel = NULL;
    /* mirror.json: tells a device that this is a static mirror (no events) */
    json_t *m = st ? NULL
                   : json_pack("{s:s,s:i,s:b,s:b}", "app", x->o->app, "format", 1, "static", 1,
                               "telemetry", 0);
    char *text = m ? json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(m);
    if (!st && (!text || !(rel = lp_str_printf("%s/mirror.json", x->app_rel))))
        st = oom(err);
    if (!st)
        st = put_bytes(x, rel, text, strlen(text), false, err);
    free(text);
    free(rel);
    return st;
}

/* Step 7: timestamp.json, unless the export already has a newer one. */
static lp_status export_timestamp(exporter *x, lp_error *err)
{
    char *rel = lp_str_printf("%s/metadata/timestamp.json", x->app_rel);
    char *full = rel ? lp_str_printf("%s/%s", x->out, rel) : NULL;
    if (!full) {
        free(rel);
        return oom(err);
    }
    uint8_t *have = NULL;
    size_t hlen = 0;
    lp_error e;
    lp_status st = LP_OK;
    if (lp_file_read(full, TIMESTAMP_MAX, &have, &hlen, &e) == LP_OK) {
        json_t *doc = NULL, *sig = NULL;
        if (signed_of(have, hlen, full, "timestamp", 0, &doc, &sig, &e) == LP_OK) {
            uint64_t v = (uint64_t)json_integer_value(json_object_get(sig, "version"));
            if (v > x->r.timestamp_version)
                st = lp_error_set(err, LP_ERR_ROLLBACK,
                                  "%s has timestamp version %llu, newer than version %llu of "
                                  "the data folder: not replaced (a device that saw it would "
                                  "refuse the older one); export from the data folder that "
                                  "made it, or into a new folder",
                                  full, (unsigned long long)v,
                                  (unsigned long long)x->r.timestamp_version);
            else if (v == x->r.timestamp_version &&
                     (hlen != x->ts_len || memcmp(have, x->ts, hlen) != 0))
                st = lp_error_set(err, LP_ERR_STATE,
                                  "%s holds another timestamp with the same version %llu: not "
                                  "replaced; export from the data folder that made it, or "
                                  "into a new folder",
                                  full, (unsigned long long)v);
        }
        json_decref(doc);
    }
    free(have);
    if (!st)
        st = put_bytes(x, rel, x->ts, x->ts_len, false, err);
    free(full);
    free(rel);
    return st;
}

/* ---- the whole ------------------------------------------------------------------------ */

static void exporter_free(exporter *x)
{
    for (size_t i = 0; i < x->nroles; i++) {
        free(x->roles[i].name);
        free(x->roles[i].data);
    }
    free(x->roles);
    for (size_t i = 0; i < x->ntargets; i++) {
        free(x->targets[i].name);
        free(x->targets[i].file);
    }
    free(x->targets);
    free(x->blobs);
    free(x->ts);
    free(x->snap);
    free(x->buf);
    free(x->out);
    free(x->repo);
    free(x->app_rel);
}

lp_status lp_export_app(const lp_export_opts *o, lp_export_result *r, lp_error *err)
{
    if (r)
        memset(r, 0, sizeof *r);
    if (!o || !o->data_dir || !o->data_dir[0] || !o->out_dir || !o->out_dir[0] || !o->app)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "export: the data folder, the app and the export folder are needed");
    lp_status st = lp_service_check_app_name(o->app, err);
    if (st)
        return st;
    exporter x = {.o = o};
    x.out = strdup(o->out_dir);
    x.repo = lp_str_printf("%s/repos/%s", o->data_dir, o->app);
    x.app_rel = lp_str_printf("v1/apps/%s", o->app);
    x.buf = malloc(COPY_BUF);
    if (!x.out || !x.repo || !x.app_rel || !x.buf) {
        exporter_free(&x);
        return oom(err);
    }
    for (size_t n = strlen(x.out); n > 1 && x.out[n - 1] == '/'; n--)
        x.out[n - 1] = '\0';
    struct stat sb;
    if (stat(x.repo, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "no app named '%s' in %s (no folder %s)",
                          o->app, o->data_dir, x.repo);
        exporter_free(&x);
        return st;
    }
    int lock = -1;
    st = lp_file_mkdirs(x.out, DIR_MODE, err);
    if (!st && (lock = open(x.out, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        st = lp_error_set(err, LP_ERR_IO, "open %s: %s", x.out, strerror(errno));
    while (!st && flock(lock, LOCK_EX) != 0)
        if (errno != EINTR)
            st = lp_error_set(err, LP_ERR_IO, "lock %s: %s", x.out, strerror(errno));
    if (!st)
        st = read_metadata(&x, err);
    if (!st)
        st = export_roots(&x, err);
    if (!st)
        st = export_targets(&x, err);
    if (!st)
        st = export_blobs(&x, err);
    if (!st && !o->no_deltas)
        st = export_deltas(&x, err);
    if (!st)
        st = export_metadata(&x, err);
    if (!st)
        st = export_timestamp(&x, err);
    if (lock >= 0)
        close(lock); /* releases the flock */
    if (r)
        *r = x.r;
    if (st)
        lp_error_prefix(err, st, "export of app %s", o->app);
    exporter_free(&x);
    return st;
}

/* ---- livepush timestamp refresh ----------------------------------------------------- */

lp_status lp_export_timestamp_refresh(const char *data_dir, const char *app, int64_t lifetime_s,
                                      uint8_t **timestamp, size_t *len, uint64_t *version,
                                      int64_t *expires, lp_error *err)
{
    if (timestamp)
        *timestamp = NULL;
    if (len)
        *len = 0;
    if (!data_dir || !data_dir[0] || !app || lifetime_s < 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "timestamp refresh: a data folder, an app and a lifetime >= 0 are "
                            "needed");
    lp_status st = lp_service_check_app_name(app, err);
    if (st)
        return st;
    char *repos = lp_str_printf("%s/repos", data_dir);
    char *repo = lp_str_printf("%s/repos/%s", data_dir, app);
    char *ts_path = lp_str_printf("%s/repos/%s/metadata/timestamp.json", data_dir, app);
    char *key_path = lp_str_printf("%s/keys/%s/timestamp.pem", data_dir, app);
    if (!repos || !repo || !ts_path || !key_path)
        st = oom(err);
    struct stat sb;
    if (!st && (stat(repo, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "no app named '%s' in %s (no folder %s)", app,
                          data_dir, repo);
    if (!st && !lp_file_exists(ts_path))
        st = lp_error_set(err, LP_ERR_NOT_FOUND,
                          "app %s has no timestamp.json yet (%s): nothing is published", app,
                          ts_path);
    if (!st && stat(key_path, &sb) != 0)
        st = lp_error_set(err, LP_ERR_NOT_FOUND,
                          "app %s: the timestamp key is not on this machine (%s: %s); run this "
                          "where the server keeps the app's online keys",
                          app, key_path, strerror(errno));
    lp_key *key = NULL;
    if (!st && (st = lp_key_load_private_file(&key, key_path, err)))
        lp_error_prefix(err, st, "app %s: timestamp key", app);
    int lock = -1;
    lp_tuf_repo *r = NULL;
    if (!st)
        st = lp_service_lock_app_in(repos, app, &lock, err);
    if (!st)
        st = lp_tuf_repo_open(&r, repo, err);
    if (!st)
        st = lifetime_s ? lp_tuf_repo_set_expires(r, "timestamp", lp_time_now() + lifetime_s, err)
                        : lp_tuf_repo_touch(r, "timestamp", err);
    if (!st) {
        const lp_key *keys[] = {key};
        st = lp_tuf_repo_publish(r, keys, 1, err);
    }
    uint8_t *data = NULL;
    size_t dlen = 0;
    if (!st)
        st = lp_file_read(ts_path, TIMESTAMP_MAX, &data, &dlen, err);
    lp_service_unlock(lock);
    json_t *doc = NULL, *sig = NULL;
    if (!st)
        st = signed_of(data, dlen, ts_path, "timestamp", 0, &doc, &sig, err);
    if (!st && version)
        *version = (uint64_t)json_integer_value(json_object_get(sig, "version"));
    const char *exp = json_string_value(json_object_get(sig, "expires"));
    if (!st && expires && (!exp || lp_time_parse(exp, expires, err)))
        st = lp_error_set(err, LP_ERR_MALFORMED, "%s: no valid 'expires'", ts_path);
    json_decref(doc);
    if (!st && timestamp) {
        *timestamp = data;
        data = NULL;
        if (len)
            *len = dlen;
    }
    free(data);
    lp_tuf_repo_free(r);
    lp_key_free(key);
    if (st)
        lp_error_prefix(err, st, "timestamp refresh of app %s", app);
    free(repos);
    free(repo);
    free(ts_path);
    free(key_path);
    return st;
}
