/*
 * files.c — serving immutable files and the per-app TUF repositories
 * (see http.h).
 *
 * A file is opened once (O_NOFOLLOW, regular files only) and everything
 * about the answer comes from that one descriptor: its fstat gives the size
 * and identity, the ETag is computed from it, and libmicrohttpd sends the
 * body from it (MHD_create_response_from_fd_at_offset64, which uses
 * sendfile(2)).  The repository writer replaces files by rename, so an open
 * descriptor keeps seeing one consistent version even while a new one is
 * published.
 *
 * Metadata files up to METADATA_MEMORY_MAX are read whole into memory
 * instead: the ETag needs their content anyway, and an answer from memory
 * goes out as headers and body in one send (a file body costs a second
 * system call and a second TCP segment).  Those up to METADATA_CACHE_MAX
 * are kept in a cache (meta_cache.h) keyed by path and file identity: a
 * request first lstat()s the path, and when the cache holds that very
 * version the answer is sent straight from the cached bytes with the
 * cached ETag, with no open, read or hash.  This is what keeps the polled
 * timestamp.json cheap.  Larger metadata is hashed through the descriptor
 * and sent from it like a target.  The repository routes own their cache
 * through lp_http_server_adopt, so it lives as long as the server.
 *
 * The app folder is only looked at when the file cannot be opened, to tell
 * "no such app" from "no such file" in the 404.
 *
 * ETags are strong.  Metadata files are small and some change in place
 * (timestamp.json, root.json), so their ETag is the sha256 of the content,
 * read through the descriptor.  Target files are content-addressed and
 * never change, so a hash of (device, inode, size, mtime) is enough and
 * costs no read.  Cache-Control: versioned metadata ("N.<role>.json") and
 * targets never change, so they cache for a year ("immutable"); every other
 * metadata file (timestamp.json, root.json) must be revalidated
 * ("no-cache"), which the ETag makes cheap.
 *
 * Range: one "bytes=" range (a-b, a-, -n) is honoured with 206; several
 * ranges or a malformed header get the whole file (HTTP allows it); a
 * range starting past the end gets 416.
 */
#include "server/http.h"

#include "livepush/hash.h"
#include "server/meta_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CACHE_IMMUTABLE "public, max-age=31536000, immutable"
#define CACHE_REVALIDATE "no-cache"
#define METADATA_HASH_MAX (16u * 1024 * 1024)
#define METADATA_MEMORY_MAX (1024u * 1024)
#define METADATA_CACHE_SLOTS 64
#define METADATA_CACHE_MAX (256u * 1024)

/* ---- ETag helpers ----------------------------------------------------------- */

void lp_http_etag_from_stat(const struct stat *sb, char out[40])
{
    char id[160];
    int n = snprintf(id, sizeof id, "%llu:%llu:%lld:%lld.%09ld", (unsigned long long)sb->st_dev,
                     (unsigned long long)sb->st_ino, (long long)sb->st_size,
                     (long long)sb->st_mtim.tv_sec, (long)sb->st_mtim.tv_nsec);
    uint8_t md[LP_HASH_MAX_LEN];
    char hex[2 * LP_HASH_MAX_LEN + 1];
    if (n < 0 || lp_hash_buf(LP_HASH_SHA256, id, (size_t)n, md, NULL) != LP_OK)
        memset(md, 0, sizeof md);
    lp_hex_encode(md, 16, hex);
    snprintf(out, 40, "\"%.32s\"", hex);
}

/* The sha256 of the whole file behind fd as "\"<64 hex>\"" (out: 70 bytes);
 * falls back to the stat ETag if the file cannot be read. */
static void etag_from_content(int fd, const struct stat *sb, char out[70])
{
    lp_hash_ctx *h = NULL;
    uint8_t buf[16384], md[LP_HASH_MAX_LEN];
    off_t pos = 0;
    bool ok = sb->st_size <= (off_t)METADATA_HASH_MAX &&
              lp_hash_new(&h, LP_HASH_SHA256, NULL) == LP_OK;
    while (ok && pos < sb->st_size) {
        ssize_t n = pread(fd, buf, sizeof buf, pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || lp_hash_update(h, buf, (size_t)n, NULL) != LP_OK)
            ok = false;
        else
            pos += n;
    }
    if (ok && lp_hash_final(h, md, NULL) == LP_OK) {
        char hex[2 * LP_HASH_MAX_LEN + 1];
        lp_hex_encode(md, 32, hex);
        snprintf(out, 70, "\"%.64s\"", hex);
    } else {
        char st[40];
        lp_http_etag_from_stat(sb, st);
        snprintf(out, 70, "%s", st);
    }
    lp_hash_free(h);
}

/* The sha256 of len bytes at data as "\"<64 hex>\"" (out: 70 bytes); falls
 * back to the stat ETag if hashing fails. */
static void etag_from_data(const uint8_t *data, size_t len, const struct stat *sb, char out[70])
{
    uint8_t md[LP_HASH_MAX_LEN];
    if (lp_hash_buf(LP_HASH_SHA256, data, len, md, NULL) == LP_OK) {
        char hex[2 * LP_HASH_MAX_LEN + 1];
        lp_hex_encode(md, 32, hex);
        snprintf(out, 70, "\"%.64s\"", hex);
    } else {
        char st[40];
        lp_http_etag_from_stat(sb, st);
        snprintf(out, 70, "%s", st);
    }
}

/* Reads the whole file behind fd (sb->st_size bytes, at most `max`) into a
 * malloc'd buffer; NULL when it cannot be read, is larger than max, or its
 * size changed under the reader. */
static uint8_t *read_whole(int fd, const struct stat *sb, size_t max, size_t *len)
{
    if (sb->st_size < 0 || (uint64_t)sb->st_size > max)
        return NULL;
    size_t size = (size_t)sb->st_size, pos = 0;
    uint8_t *data = malloc(size ? size : 1);
    while (data && pos < size) {
        ssize_t n = pread(fd, data + pos, size - pos, (off_t)pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(data);
            return NULL;
        }
        pos += (size_t)n;
    }
    *len = size;
    return data;
}

/* Does an If-None-Match list (comma-separated entity tags, or "*") hold
 * `etag`?  Weak comparison, as RFC 9110 asks for If-None-Match. */
static bool etag_listed(const char *list, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 1 && p[0] == '*')
            return true;
        const char *tag = p;
        if (len >= 2 && tag[0] == 'W' && tag[1] == '/') {
            tag += 2;
            len -= 2;
        }
        if (len == elen && !memcmp(tag, etag, len))
            return true;
        p = end ? end + 1 : p + strlen(p);
    }
    return false;
}

/* ---- ranges ------------------------------------------------------------------ */

static bool parse_u64(const char *s, const char *end, uint64_t *v)
{
    if (s == end)
        return false;
    uint64_t x = 0;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

enum range_kind { RANGE_NONE, RANGE_OK, RANGE_UNSATISFIABLE };

static enum range_kind parse_range(const char *v, uint64_t size, uint64_t *from, uint64_t *to)
{
    static const char unit[] = "bytes=";
    if (!v || strncmp(v, unit, sizeof unit - 1) != 0)
        return RANGE_NONE;
    v += sizeof unit - 1;
    while (*v == ' ')
        v++;
    const char *end = v + strlen(v);
    while (end > v && end[-1] == ' ')
        end--;
    const char *dash = memchr(v, '-', (size_t)(end - v));
    if (!dash || memchr(v, ',', (size_t)(end - v)))
        return RANGE_NONE;
    uint64_t a, b;
    if (dash == v) { /* bytes=-n: the last n bytes */
        if (!parse_u64(dash + 1, end, &b))
            return RANGE_NONE;
        if (b == 0 || size == 0)
            return RANGE_UNSATISFIABLE;
        *from = b >= size ? 0 : size - b;
        *to = size - 1;
        return RANGE_OK;
    }
    if (!parse_u64(v, dash, &a))
        return RANGE_NONE;
    if (dash + 1 == end)
        b = UINT64_MAX;
    else if (!parse_u64(dash + 1, end, &b) || b < a)
        return RANGE_NONE;
    if (a >= size)
        return RANGE_UNSATISFIABLE;
    *from = a;
    *to = b >= size ? size - 1 : b;
    return RANGE_OK;
}

/* ---- sending a file ------------------------------------------------------------ */

static void add_file_headers(struct MHD_Response *r, const lp_http_file_info *info)
{
    MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, info->etag);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, info->cache_control);
    MHD_add_response_header(r, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
}

/* Where a body comes from: an open descriptor (fd >= 0), or bytes in
 * memory (data) that release(cls) gives back once the response no longer
 * needs them.  send_body takes the source over. */
typedef struct body_src {
    int fd;
    const uint8_t *data;
    void (*release)(void *cls);
    void *cls;
} body_src;

static void body_release(body_src *b)
{
    if (b->fd >= 0)
        close(b->fd);
    if (b->release)
        b->release(b->cls);
    b->fd = -1;
    b->release = NULL;
}

/* The answer for a body of `size` bytes (see lp_http_send_file). */
static void send_body(lp_http_request *rq, body_src src, uint64_t size,
                      const lp_http_file_info *info)
{
    const char *inm = lp_http_header(rq, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm && etag_listed(inm, info->etag)) {
        body_release(&src);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (r)
            add_file_headers(r, info);
        lp_http_respond(rq, MHD_HTTP_NOT_MODIFIED, r, 0);
        return;
    }
    uint64_t from = 0, to = 0;
    enum range_kind rk = RANGE_NONE;
    const char *if_range = lp_http_header(rq, MHD_HTTP_HEADER_IF_RANGE);
    if (!if_range || !strcmp(if_range, info->etag))
        rk = parse_range(lp_http_header(rq, MHD_HTTP_HEADER_RANGE), size, &from, &to);
    char content_range[96];
    if (rk == RANGE_UNSATISFIABLE) {
        body_release(&src);
        char msg[128];
        snprintf(msg, sizeof msg, "the range starts past the end of the %llu-byte file",
                 (unsigned long long)size);
        size_t n = 0;
        struct MHD_Response *r = lp_http_error_response("range_not_satisfiable", msg, &n);
        snprintf(content_range, sizeof content_range, "bytes */%llu", (unsigned long long)size);
        if (r)
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
        lp_http_respond(rq, MHD_HTTP_RANGE_NOT_SATISFIABLE, r, n);
        return;
    }
    uint64_t len = rk == RANGE_OK ? to - from + 1 : size;
    struct MHD_Response *r = NULL;
    if (len == 0) {
        body_release(&src);
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else if (src.fd < 0) {
        /* from memory: headers and body leave in one send; the bytes are
         * given back when libmicrohttpd destroys the response */
        r = MHD_create_response_from_buffer_with_free_callback_cls(
            (size_t)len, (void *)(src.data + from), src.release, src.cls);
        if (!r)
            body_release(&src);
    } else {
        r = MHD_create_response_from_fd_at_offset64(len, src.fd, from);
        if (!r)
            body_release(&src);
    }
    if (!r) {
        lp_http_respond(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, 0);
        return;
    }
    add_file_headers(r, info);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, info->content_type);
    if (rk == RANGE_OK) {
        snprintf(content_range, sizeof content_range, "bytes %llu-%llu/%llu",
                 (unsigned long long)from, (unsigned long long)to, (unsigned long long)size);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
    }
    lp_http_respond(rq, rk == RANGE_OK ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK, r, len);
}

void lp_http_send_file(lp_http_request *rq, int fd, const struct stat *sb,
                       const lp_http_file_info *info)
{
    send_body(rq, (body_src){.fd = fd}, (uint64_t)sb->st_size, info);
}

/* lp_http_send_file for a cached version of a file (the reference is
 * taken over). */
static void send_entry(lp_http_request *rq, lp_meta_entry *e, const lp_http_file_info *info)
{
    send_body(rq,
              (body_src){.fd = -1, .data = e->data, .release = lp_meta_entry_release, .cls = e},
              e->len, info);
}

/* ---- the TUF repository routes ------------------------------------------------ */

bool lp_http_valid_app_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok)
            return false;
    }
    return strcmp(name, ".") && strcmp(name, "..");
}

/* "N.<anything>" with N all digits: a versioned metadata file. */
static bool versioned_name(const char *file)
{
    const char *p = file;
    while (*p >= '0' && *p <= '9')
        p++;
    return p != file && *p == '.';
}

static const char *content_type_of(const char *name)
{
    size_t n = strlen(name);
    return n >= 5 && !strcmp(name + n - 5, ".json") ? "application/json"
                                                    : "application/octet-stream";
}

/* What the repository routes share: the data folder and the cache of
 * small metadata files. */
typedef struct repo_routes {
    const char *data_dir; /* borrowed */
    lp_meta_cache *cache;
} repo_routes;

static void repo_routes_free(void *p)
{
    repo_routes *rr = p;
    lp_meta_cache_free(rr->cache);
    free(rr);
}

/* The 404 for a file that cannot be opened: no such app, or no such file. */
static void respond_missing(lp_http_request *rq, const char *data_dir, const char *app,
                            const char *area, const char *rel)
{
    size_t cap = strlen(data_dir) + strlen(app) + 8;
    char *dir = malloc(cap);
    struct stat sb;
    bool app_known = true;
    if (dir) {
        snprintf(dir, cap, "%s/repos/%s", data_dir, app);
        app_known = stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode);
        free(dir);
    }
    if (!app_known)
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no app named '%s'", app);
    else
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "app '%s' has no %s file '%s'",
                              app, area, rel);
}

/* Serves <data>/repos/<app>/<area>/<rel>; path is that file's path. */
static void serve_path(lp_http_request *rq, const repo_routes *rr, const char *path,
                       const char *app, const char *area, const char *rel)
{
    bool is_meta = !strcmp(area, "metadata");
    char etag[LP_META_ETAG_MAX];
    lp_http_file_info info = {
        .etag = etag,
        .cache_control = !is_meta || versioned_name(rel) ? CACHE_IMMUTABLE : CACHE_REVALIDATE,
        .content_type = content_type_of(rel),
    };
    struct stat sb;
    if (is_meta && fstatat(AT_FDCWD, path, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG(sb.st_mode)) {
        lp_meta_entry *e = lp_meta_cache_get(rr->cache, path, &sb);
        if (e) {
            /* a copy: the entry may be gone once send_entry released it */
            snprintf(etag, sizeof etag, "%s", e->etag);
            send_entry(rq, e, &info);
            return;
        }
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd >= 0 && (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        respond_missing(rq, rr->data_dir, app, area, rel);
        return;
    }
    if (is_meta) {
        size_t len = 0;
        uint8_t *data = read_whole(fd, &sb, METADATA_MEMORY_MAX, &len);
        if (data) {
            close(fd);
            etag_from_data(data, len, &sb, etag);
            lp_meta_entry *e = lp_meta_cache_put(rr->cache, path, &sb, data, len, etag);
            if (e)
                send_entry(rq, e, &info);
            else
                lp_http_respond(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, 0);
            return;
        }
        etag_from_content(fd, &sb, etag);
    } else {
        lp_http_etag_from_stat(&sb, etag);
    }
    lp_http_send_file(rq, fd, &sb, &info);
}

static void serve_repo_file(lp_http_request *rq, const repo_routes *rr, const char *area)
{
    const char *app = lp_http_param(rq, 0), *rel = lp_http_param(rq, 1);
    if (!app || !rel || !lp_http_valid_app_name(app)) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "invalid app name (1 to 64 letters, digits, '-', '_', '.')");
        return;
    }
    size_t cap = strlen(rr->data_dir) + strlen(app) + strlen(area) + strlen(rel) + 16;
    char small[512];
    char *path = cap <= sizeof small ? small : malloc(cap);
    if (!path) {
        lp_http_respond(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, 0);
        return;
    }
    snprintf(path, cap, "%s/repos/%s/%s/%s", rr->data_dir, app, area, rel);
    serve_path(rq, rr, path, app, area, rel);
    if (path != small)
        free(path);
}

static void on_metadata(lp_http_request *rq, void *user)
{
    serve_repo_file(rq, user, "metadata");
}

static void on_target(lp_http_request *rq, void *user)
{
    serve_repo_file(rq, user, "targets");
}

lp_status lp_http_add_repo_routes(lp_http_server *s, const char *data_dir, lp_error *err)
{
    repo_routes *rr = calloc(1, sizeof *rr);
    if (!rr)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    rr->data_dir = data_dir;
    lp_status st = lp_meta_cache_new(&rr->cache, METADATA_CACHE_SLOTS, METADATA_CACHE_MAX, err);
    if (st) {
        free(rr);
        return st;
    }
    st = lp_http_server_adopt(s, rr, repo_routes_free, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/v1/apps/*/metadata/*", on_metadata, rr, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/v1/apps/*/targets/**", on_target, rr, err);
    return st;
}
