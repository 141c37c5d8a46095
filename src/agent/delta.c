/*
 * delta.c — the device's side of deltas between releases: the index of the
 * deltas the server made for a pair of releases, and fetching one delta and
 * applying it (see the deltas part of the network section of
 * include/livepush/updater.h and docs/agent.md, "Deltas").
 *
 * The index (GET <server>/v1/apps/<app>/deltas/<from>/<to>.json) is read
 * through the lp_net's fetcher, so the URL policy, the retries and the
 * bound (LP_DELTA_INDEX_MAX_BYTES) apply; it is parsed strictly: one JSON
 * object without duplicate keys, "from" and "to" the pair asked for,
 * "complete" a boolean, every entry of "deltas" an object with "result" and
 * "base" (64 lower-case hex digits, different) and "size" (an integer from
 * LP_DELTA_MIN_SIZE to LP_DELTA_MAX_SIZE + 2^20), no pair listed twice.
 * Members this version does not know are ignored, so the server may add
 * some.  Anything else makes the whole index malformed: the caller then
 * uses no delta at all.  Entries are kept sorted by (result, base) so a
 * lookup is a binary search.
 *
 * A delta is not signed and needs no hash in advance: it is downloaded like
 * a blob (lp_net_download: resume, Range, retries, no byte more than the
 * index lists) into <state>/downloads/<base>-<result>.delta.part, then
 * applied with lp_delta_apply_fd_to_fd: the base file is mapped read-only,
 * the engine checks the delta's header (its result no larger than the
 * manifest lists), the base's SHA-256 and the result's (which must be the
 * one the signed manifest gives) before the result is used; the result is
 * written by position, on two threads, into the destination, created with
 * O_EXCL.  Any failure deletes the partial delta
 * and what was written at the destination, so the caller can fetch the
 * full blob there instead.  A successful apply deletes the delta too.
 */
#include "agent/net.h"

#include "core/file.h"
#include "livepush/delta.h"
#include "livepush/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest size an index may give a delta: a result of LP_DELTA_MAX_SIZE
 * that compresses badly, plus room for the header and frames. */
#define DELTA_SIZE_MAX (LP_DELTA_MAX_SIZE + ((uint64_t)1 << 20))

/* ---- the index ------------------------------------------------------------ */

static int cmp_ref(const void *a, const void *b)
{
    const lp_delta_ref *x = a, *y = b;
    int c = strcmp(x->result, y->result);
    return c ? c : strcmp(x->base, y->base);
}

/* The integer member `name` of o into *v, within [min, max]. */
static bool member_u64(const json_t *o, const char *name, uint64_t min, uint64_t max,
                       uint64_t *v)
{
    json_t *m = json_object_get(o, name);
    if (!json_is_integer(m) || json_integer_value(m) < 0)
        return false;
    uint64_t x = (uint64_t)json_integer_value(m);
    if (x < min || x > max)
        return false;
    *v = x;
    return true;
}

static bool member_sha(const json_t *o, const char *name, char out[LP_BLOB_ID_SIZE])
{
    const char *s = json_string_value(json_object_get(o, name));
    if (!s || !lp_net_is_sha256_hex(s))
        return false;
    memcpy(out, s, LP_BLOB_ID_SIZE);
    return true;
}

lp_status lp_delta_index_parse(const void *json, size_t len, uint64_t from, uint64_t to,
                               lp_delta_index *out, lp_error *err)
{
    if (!out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "delta index: no output");
    memset(out, 0, sizeof *out);
    if (!json && len)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "delta index: no data");
    if (len > LP_DELTA_INDEX_MAX_BYTES)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "delta index %llu -> %llu: %zu bytes, more than the %u allowed",
                            (unsigned long long)from, (unsigned long long)to, len,
                            LP_DELTA_INDEX_MAX_BYTES);
    json_error_t je;
    json_t *root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "delta index %llu -> %llu: not valid JSON: %s (line %d)",
                            (unsigned long long)from, (unsigned long long)to, je.text,
                            je.line);
    lp_status st = LP_OK;
    uint64_t f = 0, t = 0;
    json_t *complete = json_object_get(root, "complete");
    json_t *list = json_object_get(root, "deltas");
    if (!json_is_object(root))
        st = lp_error_set(err, LP_ERR_MALFORMED, "delta index %llu -> %llu: not a JSON object",
                          (unsigned long long)from, (unsigned long long)to);
    else if (!member_u64(root, "from", 1, INT64_MAX, &f) ||
             !member_u64(root, "to", 1, INT64_MAX, &t))
        st = lp_error_set(err, LP_ERR_MALFORMED,
                          "delta index %llu -> %llu: 'from' and 'to' must be version codes",
                          (unsigned long long)from, (unsigned long long)to);
    else if (f != from || t != to)
        st = lp_error_set(err, LP_ERR_MALFORMED,
                          "delta index %llu -> %llu: it describes %llu -> %llu",
                          (unsigned long long)from, (unsigned long long)to,
                          (unsigned long long)f, (unsigned long long)t);
    else if (!json_is_boolean(complete))
        st = lp_error_set(err, LP_ERR_MALFORMED,
                          "delta index %llu -> %llu: 'complete' must be true or false",
                          (unsigned long long)from, (unsigned long long)to);
    else if (!json_is_array(list))
        st = lp_error_set(err, LP_ERR_MALFORMED,
                          "delta index %llu -> %llu: 'deltas' must be an array",
                          (unsigned long long)from, (unsigned long long)to);
    size_t n = st ? 0 : json_array_size(list);
    if (n && !(out->deltas = calloc(n, sizeof *out->deltas)))
        st = lp_error_set(err, LP_ERR_NOMEM, "delta index: out of memory");
    for (size_t i = 0; !st && i < n; i++) {
        json_t *e = json_array_get(list, i);
        lp_delta_ref *r = &out->deltas[i];
        if (!json_is_object(e) || !member_sha(e, "result", r->result) ||
            !member_sha(e, "base", r->base) ||
            !member_u64(e, "size", LP_DELTA_MIN_SIZE, DELTA_SIZE_MAX, &r->size) ||
            strcmp(r->result, r->base) == 0)
            st = lp_error_set(err, LP_ERR_MALFORMED,
                              "delta index %llu -> %llu: deltas[%zu] must be an object with "
                              "'result' and 'base' (different SHA-256 digests, 64 lower-case "
                              "hex digits) and 'size' (%u to %llu)",
                              (unsigned long long)from, (unsigned long long)to, i,
                              LP_DELTA_MIN_SIZE, (unsigned long long)DELTA_SIZE_MAX);
    }
    if (!st && n) {
        qsort(out->deltas, n, sizeof *out->deltas, cmp_ref);
        for (size_t i = 1; !st && i < n; i++)
            if (cmp_ref(&out->deltas[i - 1], &out->deltas[i]) == 0)
                st = lp_error_set(err, LP_ERR_MALFORMED,
                                  "delta index %llu -> %llu: the delta %s -> %s is listed twice",
                                  (unsigned long long)from, (unsigned long long)to,
                                  out->deltas[i].base, out->deltas[i].result);
    }
    if (!st) {
        out->from = f;
        out->to = t;
        out->complete = json_is_true(complete);
        out->count = n;
    }
    json_decref(root);
    if (st)
        lp_delta_index_free(out);
    return st;
}

void lp_delta_index_free(lp_delta_index *ix)
{
    if (!ix)
        return;
    free(ix->deltas);
    memset(ix, 0, sizeof *ix);
}

const lp_delta_ref *lp_delta_index_find(const lp_delta_index *ix, const char *result,
                                        size_t *count)
{
    *count = 0;
    if (!ix || !result)
        return NULL;
    size_t lo = 0, hi = ix->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(ix->deltas[mid].result, result) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < ix->count && strcmp(ix->deltas[end].result, result) == 0)
        end++;
    *count = end - lo;
    return end > lo ? &ix->deltas[lo] : NULL;
}

lp_status lp_net_fetch_delta_index(lp_net *n, uint64_t from, uint64_t to, lp_delta_index *out,
                                   lp_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!n || !out || !from || !to)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "delta index: missing argument");
    char path[96];
    snprintf(path, sizeof path, "deltas/%llu/%llu.json", (unsigned long long)from,
             (unsigned long long)to);
    char *url = lp_net_url(n, true, path);
    if (!url)
        return lp_error_set(err, LP_ERR_NOMEM, "delta index: out of memory");
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_fetch_to_buffer(lp_net_tuf_fetcher(n), url, LP_DELTA_INDEX_MAX_BYTES,
                                      &data, &len, err);
    if (st)
        lp_error_prefix(err, st, "delta index %llu -> %llu", (unsigned long long)from,
                        (unsigned long long)to);
    else
        st = lp_delta_index_parse(data, len, from, to, out, err);
    free(data);
    free(url);
    return st;
}

/* ---- one delta ------------------------------------------------------------- */

/* Applies the complete delta `part` to the base file into a new file
 * dest_path; on failure nothing is left at dest_path. */
static lp_status apply(const char *part, const char *base_path, const uint8_t result_md[32],
                       uint64_t result_size, const char *dest_path, bool sync, lp_error *err)
{
    int dfd = -1, bfd = -1, ofd = -1;
    void *map = NULL;
    size_t map_len = 0;
    lp_status st = LP_OK;
    struct stat sb;
    if ((dfd = open(part, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        st = lp_error_set(err, LP_ERR_IO, "open %s: %s", part, strerror(errno));
    else if ((bfd = open(base_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "base %s: %s", base_path, strerror(errno));
    else if (fstat(bfd, &sb) != 0 || !S_ISREG(sb.st_mode))
        st = lp_error_set(err, LP_ERR_IO, "base %s: not a regular file", base_path);
    else if ((uint64_t)sb.st_size > LP_DELTA_MAX_SIZE)
        st = lp_error_set(err, LP_ERR_TOO_LARGE, "base %s: larger than deltas allow",
                          base_path);
    if (!st && sb.st_size > 0) {
        map_len = (size_t)sb.st_size;
        map = mmap(NULL, map_len, PROT_READ, MAP_PRIVATE, bfd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            st = lp_error_set(err, LP_ERR_IO, "mmap %s: %s", base_path, strerror(errno));
        }
    }
    /* read and write: the apply writes by position on two threads and reads
     * back what its helper wrote; nothing over the manifest's size is
     * written (refused from the delta's header first) */
    if (!st && (ofd = open(dest_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                           0600)) < 0)
        st = lp_error_set(err, LP_ERR_IO, "create %s: %s", dest_path, strerror(errno));
    if (!st)
        st = lp_delta_apply_fd_to_fd(map, map_len, dfd, result_md, result_size, ofd, err);
    off_t made = !st ? lseek(ofd, 0, SEEK_CUR) : 0;
    if (!st && (made < 0 || (uint64_t)made != result_size))
        st = lp_error_set(err, LP_ERR_LENGTH_MISMATCH,
                          "the delta made %lld bytes, the manifest lists %llu", (long long)made,
                          (unsigned long long)result_size);
    if (!st && sync && fsync(ofd) != 0)
        st = lp_error_set(err, LP_ERR_IO, "fsync %s: %s", dest_path, strerror(errno));
    if (ofd >= 0) {
        close(ofd);
        if (st)
            unlink(dest_path);
    }
    if (map)
        munmap(map, map_len);
    if (bfd >= 0)
        close(bfd);
    if (dfd >= 0)
        close(dfd);
    return st;
}

lp_status lp_net_fetch_delta(lp_net *n, const lp_delta_ref *ref, const char *base_path,
                             uint64_t result_size, const char *dest_path, bool sync,
                             lp_error *err)
{
    if (!n || !ref || !base_path || !dest_path || !dest_path[0])
        return lp_error_set(err, LP_ERR_INVALID_ARG, "fetch delta: missing argument");
    if (!lp_net_is_sha256_hex(ref->base) || !lp_net_is_sha256_hex(ref->result))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "fetch delta: base and result must be 64 lower-case hex digits");
    if (ref->size < LP_DELTA_MIN_SIZE || ref->size > DELTA_SIZE_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "fetch delta: size %llu out of range",
                            (unsigned long long)ref->size);
    uint8_t md[32];
    size_t mdlen = 0;
    lp_status st = lp_hex_decode(ref->result, md, sizeof md, &mdlen, err);
    if (st)
        return st;
    char what[160], path[160];
    snprintf(what, sizeof what, "delta %s-%s", ref->base, ref->result);
    snprintf(path, sizeof path, "deltas/%s/%s", ref->base, ref->result);
    char *url = lp_net_url(n, false, path);
    snprintf(path, sizeof path, "%s-%s.delta.part", ref->base, ref->result);
    char *part = lp_path_join(lp_net_downloads_dir(n), path);
    if (!url || !part)
        st = lp_error_set(err, LP_ERR_NOMEM, "fetch delta: out of memory");
    if (!st) {
        lp_net_dl d = {.url = url, .what = what, .size_from = "the delta index",
                             .progress_id = ref->result, .size = ref->size, .part = part};
        st = lp_net_download(n, &d, err);
    }
    if (!st && (st = apply(part, base_path, md, result_size, dest_path, sync, err)))
        lp_error_prefix(err, st, "%s", what);
    if (part && unlink(part) == 0)
        lp_file_sync_parent(part, NULL);
    free(url);
    free(part);
    return st;
}
