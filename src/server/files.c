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

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CACHE_IMMUTABLE "public, max-age=31536000, immutable"
#define CACHE_REVALIDATE "no-cache"
#define METADATA_HASH_MAX (16u * 1024 * 1024)

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

void lp_http_send_file(lp_http_request *rq, int fd, const struct stat *sb,
                       const lp_http_file_info *info)
{
    uint64_t size = (uint64_t)sb->st_size;
    const char *inm = lp_http_header(rq, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm && etag_listed(inm, info->etag)) {
        close(fd);
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
        close(fd);
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
    struct MHD_Response *r;
    if (len == 0) {
        close(fd);
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_fd_at_offset64(len, fd, from);
        if (!r)
            close(fd);
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

/* Serves <data>/repos/<app>/<area>/<rel>. */
static void serve_repo_file(lp_http_request *rq, const char *data_dir, const char *area)
{
    const char *app = lp_http_param(rq, 0), *rel = lp_http_param(rq, 1);
    if (!app || !rel || !lp_http_valid_app_name(app)) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "invalid app name (1 to 64 letters, digits, '-', '_', '.')");
        return;
    }
    size_t cap = strlen(data_dir) + strlen(app) + strlen(area) + strlen(rel) + 16;
    char *path = malloc(cap);
    if (!path) {
        lp_http_respond(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, 0);
        return;
    }
    snprintf(path, cap, "%s/repos/%s", data_dir, app);
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        free(path);
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no app named '%s'", app);
        return;
    }
    snprintf(path, cap, "%s/repos/%s/%s/%s", data_dir, app, area, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    free(path);
    if (fd >= 0 && (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "app '%s' has no %s file '%s'",
                              app, area, rel);
        return;
    }
    bool is_meta = !strcmp(area, "metadata");
    char etag[70];
    if (is_meta)
        etag_from_content(fd, &sb, etag);
    else
        lp_http_etag_from_stat(&sb, etag);
    lp_http_file_info info = {
        .etag = etag,
        .cache_control = !is_meta || versioned_name(rel) ? CACHE_IMMUTABLE : CACHE_REVALIDATE,
        .content_type = content_type_of(rel),
    };
    lp_http_send_file(rq, fd, &sb, &info);
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
    void *user = (void *)data_dir;
    lp_status st = lp_http_server_route(s, "GET", "/v1/apps/*/metadata/*", on_metadata, user, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/v1/apps/*/targets/**", on_target, user, err);
    return st;
}
