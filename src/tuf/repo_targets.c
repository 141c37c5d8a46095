/*
 * repo_targets.c — target entries of the repository writer and the files
 * they name (see livepush/tuf_repo.h).
 *
 * A target's content is stored once, by content address, exactly where a
 * consistent-snapshot client fetches it: targets/<dir of name>/<sha256>.<basename>.
 * The file is written when the target is added (atomically: a temporary
 * file in the same folder, fsync'd, renamed), before any metadata names it,
 * so a reader never sees metadata pointing at a missing file.  Files are
 * never removed: clients holding older metadata may still fetch them.
 *
 * Everything that can be refused (role, name, hash choice, custom JSON) is
 * checked before a byte is written.  Streaming from a file hashes while
 * copying, so memory use does not depend on the file's size.
 */
#include "tuf/repo_priv.h"

#include "core/file.h"
#include "livepush/hash.h"
#include "tuf/json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COPY_CHUNK (64u * 1024)
#define CUSTOM_MAX_BYTES (1024u * 1024)

static lp_status oom(lp_error *err)
{
    return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
}

/* The targets role `role`, which must be "targets" or a delegated role. */
static lp_status targets_role(const lp_tuf_repo *r, const char *role, int *out, lp_error *err)
{
    int i = role ? lp_repo_find(r, role) : -1;
    if (i < 0)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "role \"%.80s\" does not exist",
                            role ? role : "");
    if (r->roles[i].type != LP_MD_TARGETS)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "role %s does not list targets", role);
    *out = i;
    return LP_OK;
}

/* Parses custom JSON text: an object that canonical JSON can encode. */
static lp_status parse_custom(const char *text, json_t **out, lp_error *err)
{
    *out = NULL;
    if (!text)
        return LP_OK;
    lp_json_limits lim = {.max_bytes = CUSTOM_MAX_BYTES};
    json_t *v;
    lp_status st = lp_json_parse(text, strlen(text), &lim, &v, err);
    if (st)
        return lp_error_prefix(err, LP_ERR_MALFORMED, "custom JSON");
    if (!json_is_object(v)) {
        json_decref(v);
        return lp_error_set(err, LP_ERR_MALFORMED, "custom JSON: expected an object");
    }
    char *canon;
    size_t len;
    if ((st = lp_cjson_dumps(v, &canon, &len, err))) {
        json_decref(v);
        return lp_error_prefix(err, LP_ERR_MALFORMED, "custom JSON");
    }
    free(canon);
    *out = v;
    return LP_OK;
}

/* Checks everything about an add before any file is written. */
static lp_status check_add(const lp_tuf_repo *r, const char *role, const char *name,
                           const char *custom_json, lp_tuf_hashes hashes, int *ri,
                           json_t **custom, lp_error *err)
{
    lp_status st;
    if ((st = targets_role(r, role, ri, err)))
        return st;
    if (!name)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "no target name given");
    if ((st = lp_repo_check_target_name(name, err)))
        return st;
    if (hashes != LP_TUF_HASH_SHA256 && hashes != LP_TUF_HASH_SHA256_SHA512)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "unsupported choice of hashes (%d)",
                            (int)hashes);
    return parse_custom(custom_json, custom, err);
}

/* targets/<dir of name> (malloc'd) and the basename inside `name`. */
static char *target_dir(const lp_tuf_repo *r, const char *name, const char **base)
{
    const char *slash = strrchr(name, '/');
    *base = slash ? slash + 1 : name;
    if (!slash)
        return strdup(r->targetsdir);
    char *rel = strndup(name, (size_t)(slash - name));
    char *d = rel ? lp_path_join(r->targetsdir, rel) : NULL;
    free(rel);
    return d;
}

static char *final_path(const char *dir, const char *sha256_hex, const char *base)
{
    size_t n = strlen(dir) + strlen(sha256_hex) + strlen(base) + 3;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s.%s", dir, sha256_hex, base);
    return p;
}

/* Stores the entry for `name` in role i (a no-op if it is identical). */
static lp_status set_entry(lp_tuf_repo *r, int i, const char *name, uint64_t len,
                           const char *sha256_hex, const char *sha512_hex, json_t *custom,
                           lp_error *err)
{
    json_t *hashes = json_pack("{s:s}", "sha256", sha256_hex);
    if (hashes && sha512_hex)
        json_object_set_new(hashes, "sha512", json_string(sha512_hex));
    json_t *e = json_pack("{s:I, s:o}", "length", (json_int_t)len, "hashes", hashes);
    if (!e)
        return oom(err);
    if (custom && json_object_set(e, "custom", custom) != 0) {
        json_decref(e);
        return oom(err);
    }
    json_t *old = json_object_get(r->roles[i].targets, name);
    if (old && json_equal(old, e)) {
        json_decref(e);
        return LP_OK;
    }
    if (json_object_set_new(r->roles[i].targets, name, e) != 0)
        return oom(err);
    lp_repo_mark_changed(r, i);
    return LP_OK;
}

lp_status lp_tuf_repo_add_target(lp_tuf_repo *r, const char *role, const char *name,
                                 const void *data, size_t len, const char *custom_json,
                                 lp_tuf_hashes hashes, lp_error *err)
{
    int i = -1;
    json_t *custom = NULL;
    lp_status st = check_add(r, role, name, custom_json, hashes, &i, &custom, err);
    if (st)
        return lp_error_prefix(err, st, "add target %.200s", name ? name : "");
    if (!data && len)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "add target %s: no data", name);
    uint8_t d256[LP_HASH_MAX_LEN], d512[LP_HASH_MAX_LEN];
    char h256[2 * LP_SHA256_LEN + 1], h512[2 * LP_SHA512_LEN + 1];
    const char *base;
    char *dir = NULL, *path = NULL;
    if ((st = lp_hash_buf(LP_HASH_SHA256, data ? data : "", len, d256, err)) ||
        (hashes == LP_TUF_HASH_SHA256_SHA512 &&
         (st = lp_hash_buf(LP_HASH_SHA512, data ? data : "", len, d512, err))))
        goto out;
    lp_hex_encode(d256, LP_SHA256_LEN, h256);
    if (hashes == LP_TUF_HASH_SHA256_SHA512)
        lp_hex_encode(d512, LP_SHA512_LEN, h512);
    dir = target_dir(r, name, &base);
    path = dir ? final_path(dir, h256, base) : NULL;
    if (!path) {
        st = oom(err);
        goto out;
    }
    if ((st = lp_file_mkdirs(dir, 0755, err)) ||
        (st = lp_file_write_atomic(path, data ? data : "", len, 0644, err)))
        goto out;
    st = set_entry(r, i, name, len, h256, hashes == LP_TUF_HASH_SHA256_SHA512 ? h512 : NULL,
                   custom, err);
out:
    json_decref(custom);
    free(dir);
    free(path);
    return st ? lp_error_prefix(err, st, "add target %s", name) : LP_OK;
}

/* Copies fd `in` to `out` while hashing; *len receives the byte count. */
static lp_status copy_hashing(int in, int out, const char *src, lp_hash_ctx *h256,
                              lp_hash_ctx *h512, uint64_t *len, lp_error *err)
{
    uint8_t *buf = malloc(COPY_CHUNK);
    if (!buf)
        return oom(err);
    lp_status st = LP_OK;
    *len = 0;
    for (;;) {
        ssize_t n = read(in, buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = lp_error_set(err, LP_ERR_IO, "read %s: %s", src, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if ((st = lp_hash_update(h256, buf, (size_t)n, err)) ||
            (h512 && (st = lp_hash_update(h512, buf, (size_t)n, err))))
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                st = lp_error_set(err, LP_ERR_IO, "write copy of %s: %s", src, strerror(errno));
                break;
            }
            off += w;
        }
        if (st)
            break;
        *len += (uint64_t)n;
    }
    free(buf);
    return st;
}

lp_status lp_tuf_repo_add_target_file(lp_tuf_repo *r, const char *role, const char *name,
                                      const char *path, const char *custom_json,
                                      lp_tuf_hashes hashes, lp_error *err)
{
    int i = -1;
    json_t *custom = NULL;
    lp_status st = check_add(r, role, name, custom_json, hashes, &i, &custom, err);
    if (st)
        return lp_error_prefix(err, st, "add target %.200s", name ? name : "");
    if (!path)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "add target %s: no file given", name);
    const char *base;
    char *dir = target_dir(r, name, &base), *staging = dir ? lp_path_join(dir, base) : NULL;
    char *tmp = NULL, *final = NULL;
    lp_hash_ctx *c256 = NULL, *c512 = NULL;
    int in = -1, out = -1;
    size_t tmpcap = staging ? strlen(staging) + 32 : 0;
    if (!staging || !(tmp = malloc(tmpcap))) {
        st = oom(err);
        goto done;
    }
    if ((in = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        st = lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "open %s: %s",
                          path, strerror(errno));
        goto done;
    }
    if ((st = lp_hash_new(&c256, LP_HASH_SHA256, err)) ||
        (hashes == LP_TUF_HASH_SHA256_SHA512 && (st = lp_hash_new(&c512, LP_HASH_SHA512, err))) ||
        (st = lp_file_mkdirs(dir, 0755, err)) ||
        (st = lp_file_open_tmp(staging, 0644, tmp, tmpcap, &out, err)))
        goto done;
    uint64_t len = 0;
    uint8_t d256[LP_HASH_MAX_LEN], d512[LP_HASH_MAX_LEN];
    char h256[2 * LP_SHA256_LEN + 1], h512[2 * LP_SHA512_LEN + 1];
    if ((st = copy_hashing(in, out, path, c256, c512, &len, err)) ||
        (st = lp_hash_final(c256, d256, err)) || (c512 && (st = lp_hash_final(c512, d512, err)))) {
        close(out);
        unlink(tmp);
        goto done;
    }
    lp_hex_encode(d256, LP_SHA256_LEN, h256);
    if (c512)
        lp_hex_encode(d512, LP_SHA512_LEN, h512);
    if (!(final = final_path(dir, h256, base))) {
        close(out);
        unlink(tmp);
        st = oom(err);
        goto done;
    }
    /* commit_tmp closes `out` and removes the temporary file on failure. */
    if ((st = lp_file_commit_tmp(out, tmp, final, err)))
        goto done;
    st = set_entry(r, i, name, len, h256, c512 ? h512 : NULL, custom, err);
done:
    if (in >= 0)
        close(in);
    lp_hash_free(c256);
    lp_hash_free(c512);
    json_decref(custom);
    free(dir);
    free(staging);
    free(tmp);
    free(final);
    return st ? lp_error_prefix(err, st, "add target %s", name) : LP_OK;
}

lp_status lp_tuf_repo_remove_target(lp_tuf_repo *r, const char *role, const char *name,
                                    lp_error *err)
{
    int i = -1;
    lp_status st = targets_role(r, role, &i, err);
    if (st)
        return lp_error_prefix(err, st, "remove target %.200s", name ? name : "");
    if (!name || !json_object_get(r->roles[i].targets, name))
        return lp_error_set(err, LP_ERR_NOT_FOUND, "remove target: role %s lists no target "
                            "\"%.200s\"", role, name ? name : "");
    json_object_del(r->roles[i].targets, name);
    lp_repo_mark_changed(r, i);
    return LP_OK;
}
