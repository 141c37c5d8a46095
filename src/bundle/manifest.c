/*
 * manifest.c — tree manifests: building, validation, canonical JSON (see
 * livepush/bundle.h).
 *
 * Entries are collected in any order in a growable array; lp_manifest_finish
 * adds the parent folders nobody listed, sorts by path bytes (strcmp, which
 * compares as unsigned char) and then checks the tree as a whole with binary
 * search: no duplicate path, every ancestor of an entry is a folder (an entry
 * below a file or a symlink would let an extractor write through a link),
 * and every symlink, resolved the way the kernel would resolve it inside the
 * tree (following other symlinks of the tree, at most 40 of them), stays
 * inside the root.  The per-entry lexical target check catches the simple
 * cases early, with the entry's name; the resolution catches chains such as
 * "s -> d", "d/x -> ..", "l -> s/x/..".
 *
 * JSON goes through jansson and src/tuf/json.h: output is canonical JSON
 * (the bytes a TUF target hash covers); input is parsed with the strict
 * parser and every member is checked by hand — exact key sets per type,
 * strings without NUL, bounded sizes — with messages that name the entry.
 */
#include "livepush/bundle.h"

#include "tuf/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SYMLINK_HOPS 40

const char *lp_entry_type_name(lp_entry_type t)
{
    switch (t) {
    case LP_ENTRY_FILE: return "file";
    case LP_ENTRY_SYMLINK: return "symlink";
    case LP_ENTRY_DIR: return "dir";
    }
    return "unknown";
}

uint32_t lp_manifest_mode(lp_entry_type type, uint32_t mode)
{
    switch (type) {
    case LP_ENTRY_FILE: return (mode & 0111) ? 0755 : 0644;
    case LP_ENTRY_SYMLINK: return 0777;
    case LP_ENTRY_DIR: return 0755;
    }
    return 0;
}

/* Bytes below 0x20 and DEL are refused; the rest must be valid UTF-8
 * (checked by jansson, which refuses to make a string of invalid UTF-8). */
static lp_status check_text(const char *what, const char *s, size_t len, lp_error *err)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return lp_error_set(err, LP_ERR_MALFORMED, "%s \"%.*s\": control character", what,
                                (int)len, s);
    }
    json_t *j = json_stringn(s, len);
    if (!j)
        return lp_error_set(err, LP_ERR_MALFORMED, "%s \"%.*s\": not valid UTF-8", what,
                            (int)len, s);
    json_decref(j);
    return LP_OK;
}

lp_status lp_manifest_check_path(const char *path, size_t max_len, lp_error *err)
{
    if (!max_len || max_len > LP_MANIFEST_MAX_PATH)
        max_len = LP_MANIFEST_MAX_PATH;
    size_t len = strlen(path);
    if (len == 0)
        return lp_error_set(err, LP_ERR_MALFORMED, "empty path");
    if (len > max_len)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "path \"%.64s...\": %zu bytes exceeds the limit of %zu",
                            path, len, max_len);
    if (path[0] == '/')
        return lp_error_set(err, LP_ERR_MALFORMED, "path \"%s\": absolute", path);
    const char *p = path;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0)
            return lp_error_set(err, LP_ERR_MALFORMED, "path \"%s\": empty component", path);
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return lp_error_set(err, LP_ERR_MALFORMED, "path \"%s\": '%.*s' component", path,
                                (int)n, p);
        if (!slash)
            break;
        p = slash + 1;
    }
    return check_text("path", path, len, err);
}

lp_status lp_manifest_check_target(const char *path, const char *target, size_t max_len,
                                   lp_error *err)
{
    if (!max_len || max_len > LP_MANIFEST_MAX_TARGET)
        max_len = LP_MANIFEST_MAX_TARGET;
    size_t len = strlen(target);
    if (len == 0)
        return lp_error_set(err, LP_ERR_MALFORMED, "symlink \"%s\": empty target", path);
    if (len > max_len)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "symlink \"%s\": target of %zu bytes exceeds the limit of %zu", path,
                            len, max_len);
    if (target[0] == '/')
        return lp_error_set(err, LP_ERR_MALFORMED, "symlink \"%s\": absolute target \"%s\"", path,
                            target);
    lp_status st = check_text("symlink target", target, len, err);
    if (st)
        return lp_error_prefix(err, st, "symlink \"%s\"", path);
    /* Depth of the link's folder below the root, then walk the target. */
    long depth = 0;
    for (const char *q = path; *q; q++)
        depth += *q == '/';
    const char *p = target;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (--depth < 0)
                return lp_error_set(err, LP_ERR_MALFORMED,
                                    "symlink \"%s\": target \"%s\" leaves the bundle", path,
                                    target);
        } else if (n && !(n == 1 && p[0] == '.')) {
            depth++;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    return LP_OK;
}

void lp_manifest_init(lp_manifest *m)
{
    memset(m, 0, sizeof *m);
}

void lp_manifest_free(lp_manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->count; i++) {
        free(m->entries[i].path);
        free(m->entries[i].target);
    }
    free(m->entries);
    lp_manifest_init(m);
}

static lp_status add_entry(lp_manifest *m, const char *path, lp_manifest_entry **out,
                           lp_error *err)
{
    lp_status st = lp_manifest_check_path(path, 0, err);
    if (st)
        return st;
    if (m->count >= LP_MANIFEST_MAX_ENTRIES)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "more than %u entries",
                            (unsigned)LP_MANIFEST_MAX_ENTRIES);
    if (m->count == m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 16;
        lp_manifest_entry *ne = realloc(m->entries, ncap * sizeof *ne);
        if (!ne)
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        m->entries = ne;
        m->cap = ncap;
    }
    lp_manifest_entry *e = &m->entries[m->count];
    memset(e, 0, sizeof *e);
    e->path = strdup(path);
    if (!e->path)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    m->count++;
    m->finished = false;
    *out = e;
    return LP_OK;
}

lp_status lp_manifest_add_file(lp_manifest *m, const char *path, uint32_t mode, uint64_t size,
                               const char *sha256, lp_error *err)
{
    if (!lp_blob_id_valid(sha256))
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "file \"%s\": sha256 must be 64 lower-case hex digits", path);
    if (size > (uint64_t)INT64_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "file \"%s\": size out of range", path);
    lp_manifest_entry *e;
    lp_status st = add_entry(m, path, &e, err);
    if (st)
        return st;
    e->type = LP_ENTRY_FILE;
    e->mode = lp_manifest_mode(LP_ENTRY_FILE, mode);
    e->size = size;
    memcpy(e->sha256, sha256, LP_BLOB_ID_SIZE);
    return LP_OK;
}

lp_status lp_manifest_add_symlink(lp_manifest *m, const char *path, const char *target,
                                  lp_error *err)
{
    lp_status st = lp_manifest_check_target(path, target, 0, err);
    if (st)
        return st;
    char *t = strdup(target);
    if (!t)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_manifest_entry *e;
    st = add_entry(m, path, &e, err);
    if (st) {
        free(t);
        return st;
    }
    e->type = LP_ENTRY_SYMLINK;
    e->mode = lp_manifest_mode(LP_ENTRY_SYMLINK, 0);
    e->target = t;
    return LP_OK;
}

lp_status lp_manifest_add_dir(lp_manifest *m, const char *path, lp_error *err)
{
    lp_manifest_entry *e;
    lp_status st = add_entry(m, path, &e, err);
    if (st)
        return st;
    e->type = LP_ENTRY_DIR;
    e->mode = lp_manifest_mode(LP_ENTRY_DIR, 0);
    return LP_OK;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const lp_manifest_entry *)a)->path, ((const lp_manifest_entry *)b)->path);
}

/* Binary search in the first n (sorted) entries. */
static const lp_manifest_entry *find_n(const lp_manifest *m, size_t n, const char *path)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->entries[mid].path, path);
        if (c == 0)
            return &m->entries[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const lp_manifest_entry *lp_manifest_find(const lp_manifest *m, const char *path)
{
    return find_n(m, m->count, path);
}

/* Adds a dir entry for every ancestor folder not listed yet.  Entries must
 * be sorted on entry (they are not sorted on return).  Paths that share a
 * prefix are contiguous in sorted order, so an ancestor that is also an
 * ancestor of the previous entry was handled with that entry: each missing
 * folder is added once, in O(depth) lookups per entry. */
static lp_status add_missing_parents(lp_manifest *m, lp_error *err)
{
    size_t n = m->count;
    for (size_t i = 0; i < n; i++) {
        const char *p = m->entries[i].path;
        const char *prev = i ? m->entries[i - 1].path : "";
        size_t plen = strlen(p);
        for (size_t k = plen; k-- > 0;) {
            if (p[k] != '/')
                continue;
            if (strncmp(prev, p, k) == 0 && (prev[k] == '/' || prev[k] == '\0'))
                break;
            char *anc = strndup(p, k);
            if (!anc)
                return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
            lp_status st = LP_OK;
            bool listed = find_n(m, n, anc) != NULL;
            if (!listed)
                st = lp_manifest_add_dir(m, anc, err);
            free(anc);
            if (st)
                return st;
            if (listed)
                break;
        }
    }
    return LP_OK;
}

/* Resolves symlink `e` inside the tree, following the tree's other symlinks;
 * refuses a resolution that goes above the root. */
static lp_status check_resolution(const lp_manifest *m, const lp_manifest_entry *e, lp_error *err)
{
    lp_buf cur, rest;
    lp_buf_init(&cur, 0);
    lp_buf_init(&rest, 0);
    const char *slash = strrchr(e->path, '/');
    lp_status st = LP_OK;
    if (slash)
        st = lp_buf_append(&cur, e->path, (size_t)(slash - e->path), err);
    if (!st)
        st = lp_buf_append_str(&rest, e->target, err);
    size_t pos = 0;
    int hops = 0;
    while (!st && pos < rest.len) {
        const char *c = (const char *)rest.data + pos;
        const char *end = memchr(c, '/', rest.len - pos);
        size_t n = end ? (size_t)(end - c) : rest.len - pos;
        pos += n + (end ? 1 : 0);
        if (n == 0 || (n == 1 && c[0] == '.'))
            continue;
        if (n == 2 && c[0] == '.' && c[1] == '.') {
            if (cur.len == 0) {
                st = lp_error_set(err, LP_ERR_MALFORMED,
                                  "symlink \"%s\": target \"%s\" leaves the bundle through "
                                  "another symlink",
                                  e->path, e->target);
                break;
            }
            char *s = memrchr(cur.data, '/', cur.len);
            cur.len = s ? (size_t)(s - (char *)cur.data) : 0;
            cur.data[cur.len] = 0;
            continue;
        }
        size_t old = cur.len;
        if (cur.len)
            st = lp_buf_append(&cur, "/", 1, err);
        if (!st)
            st = lp_buf_append(&cur, c, n, err);
        if (st)
            break;
        const lp_manifest_entry *link = lp_manifest_find(m, (const char *)cur.data);
        if (link && link->type == LP_ENTRY_SYMLINK) {
            if (++hops > MAX_SYMLINK_HOPS) {
                st = lp_error_set(err, LP_ERR_MALFORMED,
                                  "symlink \"%s\": more than %d levels of symlinks", e->path,
                                  MAX_SYMLINK_HOPS);
                break;
            }
            /* Replace the link by its target: rest = target + "/" + remainder. */
            lp_buf next;
            lp_buf_init(&next, 0);
            st = lp_buf_append_str(&next, link->target, err);
            if (!st)
                st = lp_buf_append(&next, "/", 1, err);
            if (!st)
                st = lp_buf_append(&next, rest.data + pos, rest.len - pos, err);
            lp_buf_free(&rest);
            rest = next;
            pos = 0;
            cur.len = old;
            cur.data[cur.len] = 0;
        }
    }
    lp_buf_free(&cur);
    lp_buf_free(&rest);
    return st;
}

lp_status lp_manifest_finish(lp_manifest *m, lp_error *err)
{
    if (m->count)
        qsort(m->entries, m->count, sizeof *m->entries, cmp_entry);
    lp_status st = add_missing_parents(m, err);
    if (st)
        return st;
    if (m->count)
        qsort(m->entries, m->count, sizeof *m->entries, cmp_entry);
    for (size_t i = 0; i < m->count; i++) {
        const lp_manifest_entry *e = &m->entries[i];
        if (i > 0 && strcmp(e->path, m->entries[i - 1].path) == 0)
            return lp_error_set(err, LP_ERR_MALFORMED, "duplicate path \"%s\"", e->path);
        for (const char *s = strchr(e->path, '/'); s; s = strchr(s + 1, '/')) {
            char *anc = strndup(e->path, (size_t)(s - e->path));
            if (!anc)
                return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
            const lp_manifest_entry *a = lp_manifest_find(m, anc);
            if (a && a->type != LP_ENTRY_DIR) {
                st = lp_error_set(err, LP_ERR_MALFORMED, "entry \"%s\": \"%s\" above it is a %s",
                                  e->path, anc, lp_entry_type_name(a->type));
                free(anc);
                return st;
            }
            free(anc);
        }
    }
    for (size_t i = 0; i < m->count; i++) {
        if (m->entries[i].type != LP_ENTRY_SYMLINK)
            continue;
        st = check_resolution(m, &m->entries[i], err);
        if (st)
            return st;
    }
    m->finished = true;
    return LP_OK;
}

uint64_t lp_manifest_total_size(const lp_manifest *m)
{
    uint64_t t = 0;
    for (size_t i = 0; i < m->count; i++)
        if (m->entries[i].type == LP_ENTRY_FILE)
            t += m->entries[i].size;
    return t;
}

/* ---- JSON ------------------------------------------------------------ */

static int set_new(json_t *obj, const char *key, json_t *v)
{
    return v ? json_object_set_new(obj, key, v) : -1;
}

/* The canonical JSON of the manifest, written entry by entry: each entry is
 * a small jansson object encoded and dropped at once, so building the text
 * needs no more memory than the text itself (a whole-document jansson tree
 * costs several times that).  Keys sort as canonical JSON wants: "entries"
 * before "manifest_version", and within an entry "mode" < "path" < "sha256"
 * < "size" < "target" < "type" (the encoder sorts them). */
lp_status lp_manifest_to_json(const lp_manifest *m, char **out, size_t *len, lp_error *err)
{
    *out = NULL;
    if (!m->finished)
        return lp_error_set(err, LP_ERR_STATE, "manifest: not finished");
    lp_buf b;
    lp_buf_init(&b, 0);
    lp_status st = lp_buf_append_str(&b, "{\"entries\":[", err);
    for (size_t i = 0; i < m->count && !st; i++) {
        const lp_manifest_entry *e = &m->entries[i];
        json_t *o = json_object();
        int bad = !o || set_new(o, "path", json_string(e->path)) ||
                  set_new(o, "type", json_string(lp_entry_type_name(e->type)));
        if (!bad && e->type == LP_ENTRY_FILE) {
            bad = set_new(o, "mode", json_string(e->mode == 0755 ? "0755" : "0644")) ||
                  set_new(o, "size", json_integer((json_int_t)e->size)) ||
                  set_new(o, "sha256", json_string(e->sha256));
        } else if (!bad && e->type == LP_ENTRY_SYMLINK) {
            bad = set_new(o, "target", json_string(e->target));
        }
        if (bad)
            st = lp_error_set(err, LP_ERR_NOMEM, "manifest: out of memory building JSON");
        if (!st && i > 0)
            st = lp_buf_append(&b, ",", 1, err);
        if (!st)
            st = lp_cjson_encode(o, &b, err);
        json_decref(o);
    }
    if (!st)
        st = lp_buf_printf(&b, err, "],\"manifest_version\":%d}", LP_MANIFEST_VERSION);
    if (st) {
        lp_buf_free(&b);
        return st;
    }
    *out = (char *)lp_buf_steal(&b, len);
    return LP_OK;
}

/* The string member `key` of entry object `o`, without NUL bytes. */
static lp_status get_str(const json_t *o, const char *where, const char *key, const char **out,
                         lp_error *err)
{
    lp_status st = lp_json_get_string(o, where, key, out, err);
    if (st)
        return st;
    if (strlen(*out) != json_string_length(json_object_get(o, key)))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s.%s: contains a NUL byte", where, key);
    return LP_OK;
}

static lp_status parse_entry(const json_t *o, size_t i, lp_manifest *m, lp_error *err)
{
    char where[64];
    snprintf(where, sizeof where, "entries[%zu]", i);
    if (!json_is_object(o))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: expected an object", where);
    const char *path, *type;
    lp_status st = get_str(o, where, "path", &path, err);
    if (!st)
        st = get_str(o, where, "type", &type, err);
    if (st)
        return st;
    size_t nkeys;
    if (strcmp(type, "file") == 0) {
        const char *mode, *sha;
        int64_t size;
        nkeys = 5;
        st = get_str(o, where, "mode", &mode, err);
        if (!st)
            st = get_str(o, where, "sha256", &sha, err);
        if (!st)
            st = lp_json_get_int(o, where, "size", 0, INT64_MAX, &size, err);
        if (st)
            return lp_error_prefix(err, st, "entry \"%.256s\"", path);
        uint32_t mv;
        if (strcmp(mode, "0644") == 0)
            mv = 0644;
        else if (strcmp(mode, "0755") == 0)
            mv = 0755;
        else
            return lp_error_set(err, LP_ERR_MALFORMED,
                                "%s \"%.256s\": mode must be \"0644\" or \"0755\"", where, path);
        if (json_object_size(o) != nkeys)
            goto unknown;
        st = lp_manifest_add_file(m, path, mv, (uint64_t)size, sha, err);
    } else if (strcmp(type, "symlink") == 0) {
        const char *target;
        nkeys = 3;
        st = get_str(o, where, "target", &target, err);
        if (st)
            return lp_error_prefix(err, st, "entry \"%.256s\"", path);
        if (json_object_size(o) != nkeys)
            goto unknown;
        st = lp_manifest_add_symlink(m, path, target, err);
    } else if (strcmp(type, "dir") == 0) {
        nkeys = 2;
        if (json_object_size(o) != nkeys)
            goto unknown;
        st = lp_manifest_add_dir(m, path, err);
    } else {
        return lp_error_set(err, LP_ERR_MALFORMED, "%s \"%.256s\": unknown type \"%.32s\"", where,
                            path, type);
    }
    if (st)
        return lp_error_prefix(err, st, "%s", where);
    return LP_OK;
unknown:;
    const char *key;
    json_t *v;
    static const char *const known[] = {"path", "type", "mode", "size", "sha256", "target"};
    json_object_foreach((json_t *)o, key, v) {
        (void)v;
        int ok = 0;
        size_t lim = strcmp(type, "file") == 0 ? 5 : 2;
        for (size_t k = 0; k < lim; k++)
            ok |= strcmp(key, known[k]) == 0;
        if (strcmp(type, "symlink") == 0 && strcmp(key, "target") == 0)
            ok = 1;
        if (!ok)
            return lp_error_set(err, LP_ERR_MALFORMED, "%s \"%.256s\": unknown field \"%.64s\"",
                                where, path, key);
    }
    return lp_error_set(err, LP_ERR_MALFORMED, "%s \"%.256s\": unexpected fields", where, path);
}

lp_status lp_manifest_from_json(const void *data, size_t len, lp_manifest *m, lp_error *err)
{
    lp_manifest_init(m);
    lp_json_limits lim = {.max_bytes = LP_MANIFEST_MAX_JSON_BYTES, .max_depth = 4};
    json_t *root = NULL;
    lp_status st = lp_json_parse(data, len, &lim, &root, err);
    if (st)
        return lp_error_prefix(err, st, "manifest");
    json_t *arr = NULL;
    int64_t version = 0;
    if (!json_is_object(root)) {
        st = lp_error_set(err, LP_ERR_MALFORMED, "manifest: expected an object");
        goto out;
    }
    st = lp_json_get_int(root, "manifest", "manifest_version", 0, INT64_MAX, &version, err);
    if (!st && version != LP_MANIFEST_VERSION)
        st = lp_error_set(err, LP_ERR_UNSUPPORTED, "manifest: manifest_version %lld not supported",
                          (long long)version);
    if (!st)
        st = lp_json_get_array(root, "manifest", "entries", &arr, err);
    if (st)
        goto out;
    if (json_object_size(root) != 2) {
        const char *key;
        json_t *v;
        json_object_foreach(root, key, v) {
            (void)v;
            if (strcmp(key, "entries") && strcmp(key, "manifest_version")) {
                st = lp_error_set(err, LP_ERR_MALFORMED, "manifest: unknown field \"%.64s\"", key);
                goto out;
            }
        }
    }
    size_t n = json_array_size(arr);
    if (n > LP_MANIFEST_MAX_ENTRIES) {
        st = lp_error_set(err, LP_ERR_TOO_LARGE, "manifest: %zu entries exceeds the limit of %u",
                          n, (unsigned)LP_MANIFEST_MAX_ENTRIES);
        goto out;
    }
    for (size_t i = 0; i < n && !st; i++)
        st = parse_entry(json_array_get(arr, i), i, m, err);
    if (st)
        goto out;
    /* Strictly increasing paths, and each entry's folder listed before it. */
    for (size_t i = 0; i < m->count; i++) {
        const char *p = m->entries[i].path;
        if (i > 0 && strcmp(m->entries[i - 1].path, p) >= 0) {
            st = lp_error_set(err, LP_ERR_MALFORMED,
                              "manifest: entries[%zu] \"%.256s\": %s", i, p,
                              strcmp(m->entries[i - 1].path, p) == 0 ? "duplicate path"
                                                                     : "not in sorted order");
            goto out;
        }
        const char *slash = strrchr(p, '/');
        if (slash) {
            char *parent = strndup(p, (size_t)(slash - p));
            if (!parent) {
                st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
                goto out;
            }
            const lp_manifest_entry *pe = find_n(m, i, parent);
            if (!pe)
                st = lp_error_set(err, LP_ERR_MALFORMED,
                                  "manifest: entries[%zu] \"%.256s\": folder \"%.256s\" not listed",
                                  i, p, parent);
            free(parent);
            if (st)
                goto out;
        }
    }
    st = lp_manifest_finish(m, err);
    if (st)
        st = lp_error_prefix(err, st, "manifest");
out:
    json_decref(root);
    if (st)
        lp_manifest_free(m);
    return st;
}
