/*
 * test_server_http.c — the HTTP core of `livepush serve` over real HTTP on
 * loopback: a server started in-process on an ephemeral port serves a TUF
 * repository written by livepush's own writer, and libcurl (and raw sockets
 * where curl would be too polite) checks every answer: bodies, ETag and
 * 304, HEAD, ranges and 416, the JSON error shape, path checks, keep-alive,
 * the TUF client end to end, the connection, header and body limits, the
 * router's captures, graceful shutdown, the log lines and the
 * configuration layers.
 */
#include "core/buf.h"
#include "livepush/tuf.h"
#include "livepush/tuf_repo.h"
#include "server/config.h"
#include "server/http.h"
#include "server/log.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#define BIG_SIZE 100000u

typedef struct world {
    char *dir;       /* data dir */
    char *repo;      /* dir/repos/app1 */
    char target_url_path[256]; /* /v1/apps/app1/targets/<hash>.hello.txt */
    lp_http_server *srv;
    char base[128];
    uint8_t *big;    /* contents of targets/big.bin */
} world;

/* ---- an HTTP answer ----------------------------------------------------- */

typedef struct resp {
    long status;
    CURLcode rc;
    lp_buf body;
    char etag[128], content_range[128], cache[128], ctype[64], reqid[64], allow[64], clen[32];
    long connects;
} resp;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    resp *r = ud;
    return lp_buf_append(&r->body, p, size * n, NULL) ? 0 : size * n;
}

static void copy_header(const char *line, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (len <= nl + 1 || strncasecmp(line, name, nl) || line[nl] != ':')
        return;
    const char *v = line + nl + 1;
    size_t vl = len - nl - 1;
    while (vl && (*v == ' '))
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
        vl--;
    snprintf(out, cap, "%.*s", (int)vl, v);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    resp *r = ud;
    size_t len = size * n;
    copy_header(p, len, "ETag", r->etag, sizeof r->etag);
    copy_header(p, len, "Content-Range", r->content_range, sizeof r->content_range);
    copy_header(p, len, "Cache-Control", r->cache, sizeof r->cache);
    copy_header(p, len, "Content-Type", r->ctype, sizeof r->ctype);
    copy_header(p, len, "X-Request-Id", r->reqid, sizeof r->reqid);
    copy_header(p, len, "Allow", r->allow, sizeof r->allow);
    copy_header(p, len, "Content-Length", r->clen, sizeof r->clen);
    return len;
}

/* One request on handle h (NULL: a fresh handle).  method: "GET", "HEAD",
 * "POST"; hdrs: NULL-terminated extra header lines. */
static resp request(CURL *h, const char *method, const char *url, const char *const *hdrs,
                    const char *body, size_t body_len)
{
    resp r;
    memset(&r, 0, sizeof r);
    lp_buf_init(&r.body, 0);
    CURL *c = h ? h : curl_easy_init();
    assert_non_null(c);
    struct curl_slist *list = NULL;
    for (size_t i = 0; hdrs && hdrs[i]; i++)
        list = curl_slist_append(list, hdrs[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_NOBODY, !strcmp(method, "HEAD") ? 1L : 0L);
    if (!strcmp(method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else if (strcmp(method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    r.rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r.connects);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(list);
    if (!h)
        curl_easy_cleanup(c);
    return r;
}

static resp get(world *w, const char *path, const char *const *hdrs)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", w->base, path);
    return request(NULL, "GET", url, hdrs, NULL, 0);
}

/* Asserts the error shape with `code`. */
static void expect_error(resp *r, long status, const char *code)
{
    if (r->status != status)
        fail_msg("expected %ld, got %ld: %s", status, r->status,
                 r->body.data ? (char *)r->body.data : "");
    assert_string_equal(r->ctype, "application/json");
    json_error_t je;
    json_t *doc = json_loadb((const char *)r->body.data, r->body.len, 0, &je);
    assert_non_null(doc);
    json_t *e = json_object_get(doc, "error");
    assert_true(json_is_object(e));
    assert_int_equal(json_object_size(e), 2);
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    assert_true(json_string_length(json_object_get(e, "message")) > 0);
    json_decref(doc);
}

/* ---- test routes (the router API itself) ------------------------------- */

static void on_params(lp_http_request *rq, void *user)
{
    (void)user;
    json_t *a = json_array();
    for (size_t i = 0; lp_http_param(rq, i); i++)
        json_array_append_new(a, json_string(lp_http_param(rq, i)));
    char *text = json_dumps(a, JSON_COMPACT);
    lp_http_respond_json(rq, 200, text);
    free(text);
    json_decref(a);
}

static void on_echo(lp_http_request *rq, void *user)
{
    (void)user;
    size_t len;
    lp_http_body(rq, &len);
    char text[64];
    snprintf(text, sizeof text, "{\"length\":%zu}", len);
    lp_http_respond_json(rq, 200, text);
}

static void on_silent(lp_http_request *rq, void *user)
{
    (void)rq;
    (void)user;
}

typedef struct server_opts {
    unsigned threads, max_connections;
    size_t max_header_bytes;
    uint64_t max_body_bytes;
    const lp_log *log;
} server_opts;

static lp_http_server *start_server(const char *data_dir, const server_opts *so)
{
    lp_http_server_options opt = {.listen = "127.0.0.1:0",
                           .threads = so->threads,
                           .max_connections = so->max_connections,
                           .connection_timeout_s = 10,
                           .max_header_bytes = so->max_header_bytes,
                           .max_body_bytes = so->max_body_bytes,
                           .log = so->log};
    lp_http_server *s = NULL;
    lp_error err;
    if (lp_http_server_new(&s, &opt, &err) || lp_http_add_repo_routes(s, data_dir, &err) ||
        lp_http_server_route(s, "GET", "/t/*/x/**", on_params, NULL, &err) ||
        lp_http_server_route(s, "POST", "/echo", on_echo, NULL, &err) ||
        lp_http_server_route(s, "GET", "/silent", on_silent, NULL, &err) ||
        lp_http_server_start(s, &err))
        fail_msg("server: %s", err.msg);
    return s;
}

/* ---- fixture --------------------------------------------------------------- */

static lp_key *g_key; /* one key per test run: keygen is slow under sanitizers */

static void publish_repo(world *w, bool create)
{
    lp_error err;
    lp_tuf_repo *r = NULL;
    if (create) {
        assert_int_equal(lp_tuf_repo_create(&r, w->repo, &err), LP_OK);
        const char *roles[] = {"root", "targets", "snapshot", "timestamp"};
        for (int i = 0; i < 4; i++)
            assert_int_equal(lp_tuf_repo_add_key(r, roles[i], g_key, &err), LP_OK);
        assert_int_equal(lp_tuf_repo_add_target(r, "targets", "hello.txt", "hello world\n", 12,
                                                NULL, LP_TUF_HASH_SHA256, &err),
                         LP_OK);
    } else {
        assert_int_equal(lp_tuf_repo_open(&r, w->repo, &err), LP_OK);
        assert_int_equal(lp_tuf_repo_touch(r, "targets", &err), LP_OK);
    }
    const lp_key *keys[] = {g_key};
    if (lp_tuf_repo_publish(r, keys, 1, &err))
        fail_msg("publish: %s", err.msg);
    lp_tuf_repo_free(r);
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    w->dir = lp_test_tmpdir("server");
    assert_non_null(w->dir);
    w->repo = malloc(strlen(w->dir) + 32);
    sprintf(w->repo, "%s/repos/app1", w->dir);
    publish_repo(w, true);
    /* the hashed name of hello.txt under targets/ */
    char *tdir = lp_test_join(w->repo, "targets");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep 'hello.txt$'", tdir);
    FILE *p = popen(cmd, "r");
    char name[200] = "";
    assert_non_null(fgets(name, sizeof name, p));
    pclose(p);
    name[strcspn(name, "\n")] = '\0';
    snprintf(w->target_url_path, sizeof w->target_url_path, "/v1/apps/app1/targets/%s", name);
    /* a bigger plain file for ranges, in a sub-folder */
    w->big = malloc(BIG_SIZE);
    for (size_t i = 0; i < BIG_SIZE; i++)
        w->big[i] = (uint8_t)(i * 7 + i / 251);
    char *big = lp_test_join(tdir, "sub/big.bin");
    assert_int_equal(lp_test_write_file(big, w->big, BIG_SIZE), 0);
    free(big);
    free(tdir);
    server_opts so = {.threads = 2, .max_connections = 64, .max_body_bytes = 1000};
    w->srv = start_server(w->dir, &so);
    snprintf(w->base, sizeof w->base, "%s", lp_http_server_url(w->srv));
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    lp_http_server_free(w->srv);
    lp_test_rmtree(w->dir);
    free(w->dir);
    free(w->repo);
    free(w->big);
    free(w);
    return 0;
}

/* ---- tests -------------------------------------------------------------------- */

static void test_metadata_and_targets(void **state)
{
    world *w = *state;
    char *path = lp_test_join(w->repo, "metadata/timestamp.json");
    size_t len;
    uint8_t *want = lp_test_read_file(path, &len);
    free(path);
    resp r = get(w, "/v1/apps/app1/metadata/timestamp.json", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, len);
    assert_memory_equal(r.body.data, want, len);
    assert_string_equal(r.ctype, "application/json");
    assert_string_equal(r.cache, "no-cache");
    assert_int_equal(strlen(r.etag), 66); /* sha256 in quotes */
    assert_true(strlen(r.reqid) > 8);
    free(want);
    lp_buf_free(&r.body);

    r = get(w, "/v1/apps/app1/metadata/1.root.json", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.cache, "public, max-age=31536000, immutable");
    lp_buf_free(&r.body);

    r = get(w, w->target_url_path, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 12);
    assert_memory_equal(r.body.data, "hello world\n", 12);
    assert_string_equal(r.ctype, "application/octet-stream");
    assert_string_equal(r.cache, "public, max-age=31536000, immutable");
    assert_true(strlen(r.etag) > 2);
    lp_buf_free(&r.body);

    r = get(w, "/healthz", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal((char *)r.body.data, "{\"status\":\"ok\"}");
    lp_buf_free(&r.body);
}

static void test_etag_304(void **state)
{
    world *w = *state;
    const char *ts = "/v1/apps/app1/metadata/timestamp.json";
    resp r = get(w, ts, NULL);
    assert_int_equal(r.status, 200);
    char etag[128], hdr[200];
    snprintf(etag, sizeof etag, "%s", r.etag);
    lp_buf_free(&r.body);

    snprintf(hdr, sizeof hdr, "If-None-Match: %s", etag);
    const char *h1[] = {hdr, NULL};
    r = get(w, ts, h1);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body.len, 0);
    assert_string_equal(r.etag, etag);
    assert_string_equal(r.cache, "no-cache");
    lp_buf_free(&r.body);

    snprintf(hdr, sizeof hdr, "If-None-Match: \"nope\", W/%s", etag);
    r = get(w, ts, h1);
    assert_int_equal(r.status, 304);
    lp_buf_free(&r.body);

    const char *h2[] = {"If-None-Match: \"something-else\"", NULL};
    r = get(w, ts, h2);
    assert_int_equal(r.status, 200);
    assert_true(r.body.len > 0);
    lp_buf_free(&r.body);

    /* a target: its own ETag works the same */
    r = get(w, w->target_url_path, NULL);
    snprintf(hdr, sizeof hdr, "If-None-Match: %s", r.etag);
    lp_buf_free(&r.body);
    r = get(w, w->target_url_path, h1);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body.len, 0);
    lp_buf_free(&r.body);

    /* a new timestamp: the old ETag no longer matches */
    publish_repo(w, false);
    snprintf(hdr, sizeof hdr, "If-None-Match: %s", etag);
    r = get(w, ts, h1);
    assert_int_equal(r.status, 200);
    assert_string_not_equal(r.etag, etag);
    lp_buf_free(&r.body);
}

static void test_head(void **state)
{
    world *w = *state;
    char url[512];
    snprintf(url, sizeof url, "%s/v1/apps/app1/targets/sub/big.bin", w->base);
    resp r = request(NULL, "HEAD", url, NULL, NULL, 0);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    assert_string_equal(r.clen, "100000");
    assert_true(strlen(r.etag) > 2);
    lp_buf_free(&r.body);
}

static void expect_range(world *w, const char *range, long status, size_t from, size_t len,
                         const char *content_range)
{
    char hdr[128];
    snprintf(hdr, sizeof hdr, "Range: %s", range);
    const char *h[] = {hdr, NULL};
    resp r = get(w, "/v1/apps/app1/targets/sub/big.bin", h);
    if (r.status != status)
        fail_msg("Range %s: expected %ld, got %ld", range, status, r.status);
    if (status == 416) {
        expect_error(&r, 416, "range_not_satisfiable");
    } else {
        assert_int_equal(r.body.len, len);
        assert_memory_equal(r.body.data, w->big + from, len);
    }
    assert_string_equal(r.content_range, content_range);
    lp_buf_free(&r.body);
}

static void test_ranges(void **state)
{
    world *w = *state;
    expect_range(w, "bytes=0-9", 206, 0, 10, "bytes 0-9/100000");
    expect_range(w, "bytes=99990-", 206, 99990, 10, "bytes 99990-99999/100000");
    expect_range(w, "bytes=-5", 206, 99995, 5, "bytes 99995-99999/100000");
    expect_range(w, "bytes=50000-9999999", 206, 50000, 50000, "bytes 50000-99999/100000");
    expect_range(w, "bytes=-200000", 206, 0, BIG_SIZE, "bytes 0-99999/100000");
    expect_range(w, "bytes=0-1,5-6", 200, 0, BIG_SIZE, "");
    expect_range(w, "bytes=9-3", 200, 0, BIG_SIZE, "");
    expect_range(w, "items=0-3", 200, 0, BIG_SIZE, "");
    expect_range(w, "bytes=100000-", 416, 0, 0, "bytes */100000");
    expect_range(w, "bytes=-0", 416, 0, 0, "bytes */100000");

    /* If-Range: the current ETag keeps the range, another one sends all */
    resp r = get(w, "/v1/apps/app1/targets/sub/big.bin", NULL);
    char h1[200], h2[] = "If-Range: \"old\"";
    snprintf(h1, sizeof h1, "If-Range: %s", r.etag);
    lp_buf_free(&r.body);
    const char *ok[] = {"Range: bytes=10-19", h1, NULL};
    r = get(w, "/v1/apps/app1/targets/sub/big.bin", ok);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body.len, 10);
    lp_buf_free(&r.body);
    const char *stale[] = {"Range: bytes=10-19", h2, NULL};
    r = get(w, "/v1/apps/app1/targets/sub/big.bin", stale);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, BIG_SIZE);
    lp_buf_free(&r.body);
}

static void test_errors(void **state)
{
    world *w = *state;
    static const struct {
        const char *path;
        long status;
        const char *code;
    } cases[] = {
        {"/v1/apps/app1/metadata/99.root.json", 404, "not_found"},
        {"/v1/apps/app1/targets/nope/none.bin", 404, "not_found"},
        {"/v1/apps/app1/targets/sub", 404, "not_found"}, /* a folder */
        {"/v1/apps/other/metadata/timestamp.json", 404, "not_found"},
        {"/v1/apps/app1/metadata/a/b", 404, "not_found"}, /* no such route */
        {"/nothing", 404, "not_found"},
        {"/v1/apps/a%20b/metadata/timestamp.json", 400, "bad_request"},
        {"/v1/apps/app1/metadata/../../../etc/passwd", 400, "bad_request"},
        {"/v1/apps/app1/metadata/%2e%2e/%2E%2E/x", 400, "bad_request"},
        {"/v1/apps/%2e%2e/metadata/timestamp.json", 400, "bad_request"},
        {"/v1/apps/app1/targets/sub//big.bin", 400, "bad_request"},
        {"/v1/apps/app1/targets/./sub/big.bin", 400, "bad_request"},
        {"/v1/apps/app1/metadata/timestamp.json%00.x", 400, "bad_request"},
        {"/v1/apps/app1/metadata/%0a", 400, "bad_request"},
        {"/silent", 500, "internal"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        resp r = get(w, cases[i].path, NULL);
        if (r.status != cases[i].status)
            fail_msg("%s: expected %ld, got %ld", cases[i].path, cases[i].status, r.status);
        expect_error(&r, cases[i].status, cases[i].code);
        lp_buf_free(&r.body);
    }
    /* a symbolic link out of the repository is not followed */
    char *link = lp_test_join(w->repo, "targets/escape");
    assert_int_equal(symlink("/etc/passwd", link), 0);
    free(link);
    resp r = get(w, "/v1/apps/app1/targets/escape", NULL);
    expect_error(&r, 404, "not_found");
    lp_buf_free(&r.body);
}

static void test_method_not_allowed(void **state)
{
    world *w = *state;
    char url[512];
    snprintf(url, sizeof url, "%s/v1/apps/app1/metadata/timestamp.json", w->base);
    resp r = request(NULL, "POST", url, NULL, "x", 1);
    expect_error(&r, 405, "method_not_allowed");
    assert_non_null(strstr(r.allow, "GET"));
    lp_buf_free(&r.body);
    snprintf(url, sizeof url, "%s/echo", w->base);
    r = get(w, "/echo", NULL);
    expect_error(&r, 405, "method_not_allowed");
    assert_string_equal(r.allow, "POST");
    lp_buf_free(&r.body);
}

static void test_router_captures_and_body(void **state)
{
    world *w = *state;
    resp r = get(w, "/t/one/x/two/three/f.bin", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal((char *)r.body.data, "[\"one\",\"two/three/f.bin\"]");
    lp_buf_free(&r.body);
    r = get(w, "/t/one/x", NULL); /* "**" needs at least one segment */
    expect_error(&r, 404, "not_found");
    lp_buf_free(&r.body);

    char url[256];
    snprintf(url, sizeof url, "%s/echo", w->base);
    char body[2000];
    memset(body, 'b', sizeof body);
    r = request(NULL, "POST", url, NULL, body, 1000); /* the limit exactly */
    assert_int_equal(r.status, 200);
    assert_string_equal((char *)r.body.data, "{\"length\":1000}");
    lp_buf_free(&r.body);
    r = request(NULL, "POST", url, NULL, body, 1001);
    expect_error(&r, 413, "payload_too_large");
    lp_buf_free(&r.body);
    /* chunked, so no Content-Length announces it */
    const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
    r = request(NULL, "POST", url, chunked, body, sizeof body);
    expect_error(&r, 413, "payload_too_large");
    lp_buf_free(&r.body);
}

static void test_keep_alive(void **state)
{
    world *w = *state;
    CURL *c = curl_easy_init();
    char url[512];
    long connects = 0;
    const char *paths[] = {"/healthz", "/v1/apps/app1/metadata/timestamp.json", "/nothing",
                           w->target_url_path, "/v1/apps/app1/metadata/1.root.json"};
    for (int i = 0; i < 5; i++) {
        snprintf(url, sizeof url, "%s%s", w->base, paths[i]);
        resp r = request(c, "GET", url, NULL, NULL, 0);
        assert_int_equal(r.rc, CURLE_OK);
        connects += r.connects;
        lp_buf_free(&r.body);
    }
    curl_easy_cleanup(c);
    assert_int_equal(connects, 1);
}

static void test_tuf_client(void **state)
{
    world *w = *state;
    lp_error err;
    char *meta = lp_test_join(w->dir, "client");
    char *root = lp_test_join(w->repo, "metadata/1.root.json");
    assert_int_equal(lp_tuf_init_trusted_root(meta, root, &err), LP_OK);
    char murl[256], turl[256];
    snprintf(murl, sizeof murl, "%s/v1/apps/app1/metadata", w->base);
    snprintf(turl, sizeof turl, "%s/v1/apps/app1/targets", w->base);
    lp_tuf_client_config cfg = {.metadata_dir = meta, .metadata_url = murl, .targets_url = turl};
    lp_tuf_client *c;
    assert_int_equal(lp_tuf_client_open(&c, &cfg, &err), LP_OK);
    if (lp_tuf_client_refresh(c, NULL, &err))
        fail_msg("refresh: %s", err.msg);
    lp_tuf_target *t = NULL;
    assert_int_equal(lp_tuf_client_find_target(c, "hello.txt", &t, &err), LP_OK);
    char *dest = lp_test_join(w->dir, "hello.out");
    if (lp_tuf_client_download_target(c, t, dest, &err))
        fail_msg("download: %s", err.msg);
    size_t len;
    uint8_t *got = lp_test_read_file(dest, &len);
    assert_int_equal(len, 12);
    assert_memory_equal(got, "hello world\n", 12);
    free(got);
    lp_tuf_target_free(t);
    lp_tuf_client_free(c);
    free(dest);
    free(root);
    free(meta);
}

/* A raw TCP connection to the server; -1 on failure. */
static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Sends a request on fd and reads the first bytes of the answer into buf;
 * returns the count (0: closed, -1: nothing before the timeout). */
static ssize_t raw_exchange(int fd, const char *req, char *buf, size_t cap)
{
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0)
        return 0;
    ssize_t n = recv(fd, buf, cap - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

static void test_connection_limit(void **state)
{
    world *w = *state;
    server_opts so = {.threads = 1, .max_connections = 2};
    lp_http_server *s = start_server(w->dir, &so);
    uint16_t port = lp_http_server_port(s);
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    char buf[512];
    int a = raw_connect(port), b = raw_connect(port);
    assert_true(a >= 0 && b >= 0);
    assert_true(raw_exchange(a, req, buf, sizeof buf) > 0); /* both served, kept open */
    assert_non_null(strstr(buf, "200 OK"));
    assert_true(raw_exchange(b, req, buf, sizeof buf) > 0);
    assert_non_null(strstr(buf, "200 OK"));
    int c = raw_connect(port); /* the kernel may accept; the server must not serve */
    if (c >= 0) {
        ssize_t n = raw_exchange(c, req, buf, sizeof buf);
        if (n > 0)
            fail_msg("a connection over the limit was answered: %s", buf);
        close(c);
    }
    close(a);
    /* with a place free again, a new connection is served */
    long status = 0;
    for (int i = 0; i < 40 && status != 200; i++) {
        char url[128];
        snprintf(url, sizeof url, "%s/healthz", lp_http_server_url(s));
        resp r = request(NULL, "GET", url, NULL, NULL, 0);
        status = r.status;
        lp_buf_free(&r.body);
        if (status != 200)
            usleep(50000);
    }
    assert_int_equal(status, 200);
    close(b);
    lp_http_server_free(s);
}

static void test_header_limit(void **state)
{
    world *w = *state;
    server_opts so = {.threads = 1, .max_connections = 8, .max_header_bytes = 8192};
    lp_http_server *s = start_server(w->dir, &so);
    char url[128];
    snprintf(url, sizeof url, "%s/healthz", lp_http_server_url(s));
    size_t n = 20000;
    char *big = malloc(n + 16);
    memcpy(big, "X-Big: ", 7);
    memset(big + 7, 'a', n);
    big[7 + n] = '\0';
    const char *h[] = {big, NULL};
    resp r = request(NULL, "GET", url, h, NULL, 0);
    /* libmicrohttpd answers 431 or closes the connection: never a 200 */
    assert_true(r.status != 200);
    assert_true(r.rc != CURLE_OK || r.status == 431 || r.status == 413 || r.status == 400);
    lp_buf_free(&r.body);
    free(big);
    r = request(NULL, "GET", url, NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    lp_buf_free(&r.body);
    lp_http_server_free(s);
}

typedef struct slow_dl {
    char url[256];
    long rate;
    resp r;
} slow_dl;

static void *slow_download(void *arg)
{
    slow_dl *d = arg;
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)d->rate);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 16384L);
    d->r = request(c, "GET", d->url, NULL, NULL, 0);
    curl_easy_cleanup(c);
    return NULL;
}

#define SLOW_SIZE (24u << 20) /* more than loopback socket buffers hold */

/* Starts a slow download of a SLOW_SIZE file and waits until it is in
 * flight. */
static void start_slow(world *w, lp_http_server *s, slow_dl *d, pthread_t *th, long rate)
{
    char *path = lp_test_join(w->repo, "targets/slow.bin");
    struct stat sb;
    if (stat(path, &sb) != 0) {
        uint8_t *data = calloc(1, SLOW_SIZE);
        assert_int_equal(lp_test_write_file(path, data, SLOW_SIZE), 0);
        free(data);
    }
    free(path);
    memset(d, 0, sizeof *d);
    snprintf(d->url, sizeof d->url, "%s/v1/apps/app1/targets/slow.bin", lp_http_server_url(s));
    d->rate = rate;
    assert_int_equal(pthread_create(th, NULL, slow_download, d), 0);
    for (int i = 0; i < 1000 && lp_http_server_in_flight(s) == 0; i++)
        usleep(10000);
    assert_int_equal(lp_http_server_in_flight(s), 1);
    usleep(100000);
}

static void test_shutdown_drains(void **state)
{
    world *w = *state;
    server_opts so = {.threads = 2, .max_connections = 8};
    lp_http_server *s = start_server(w->dir, &so);
    uint16_t port = lp_http_server_port(s);
    slow_dl d;
    pthread_t th;
    start_slow(w, s, &d, &th, 8l << 20); /* about three seconds */
    lp_error err;
    assert_int_equal(lp_http_server_shutdown(s, 20000, &err), LP_OK);
    /* no longer accepting */
    int fd = raw_connect(port);
    assert_int_equal(fd, -1);
    pthread_join(th, NULL);
    assert_int_equal(d.r.rc, CURLE_OK);
    assert_int_equal(d.r.status, 200);
    assert_int_equal(d.r.body.len, SLOW_SIZE);
    lp_buf_free(&d.r.body);
    lp_http_server_free(s);

    /* a timeout shorter than the transfer: cut off, and said so */
    s = start_server(w->dir, &so);
    start_slow(w, s, &d, &th, 4l << 20);
    assert_int_equal(lp_http_server_shutdown(s, 200, &err), LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "1 request(s) still in flight"));
    pthread_join(th, NULL);
    assert_true(d.r.rc != CURLE_OK || d.r.body.len < SLOW_SIZE);
    lp_buf_free(&d.r.body);
    lp_http_server_free(s);
}

static void test_ipv6(void **state)
{
    world *w = *state;
    lp_http_server_options opt = {.listen = "[::1]:0", .threads = 1};
    lp_http_server *s;
    lp_error err;
    assert_int_equal(lp_http_server_new(&s, &opt, &err), LP_OK);
    assert_int_equal(lp_http_add_repo_routes(s, w->dir, &err), LP_OK);
    if (lp_http_server_start(s, &err)) {
        lp_http_server_free(s);
        skip(); /* no IPv6 loopback here */
    }
    assert_non_null(strstr(lp_http_server_url(s), "http://[::1]:"));
    char url[256];
    snprintf(url, sizeof url, "%s/v1/apps/app1/metadata/1.root.json", lp_http_server_url(s));
    resp r = request(NULL, "GET", url, NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    lp_buf_free(&r.body);
    lp_http_server_free(s);
}

static void test_log_lines(void **state)
{
    world *w = *state;
    FILE *f = tmpfile();
    assert_non_null(f);
    lp_log log = {.out = f, .format = LP_LOG_JSON, .min_level = LP_LOG_INFO};
    server_opts so = {.threads = 1, .max_connections = 8, .log = &log};
    lp_http_server *s = start_server(w->dir, &so);
    char url[256];
    snprintf(url, sizeof url, "%s/v1/apps/app1/metadata/1.root.json", lp_http_server_url(s));
    resp r = request(NULL, "GET", url, NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    lp_http_server_shutdown(s, 5000, NULL);
    lp_http_server_free(s);
    rewind(f);
    char line[2048];
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *ev = json_loads(line, 0, &je);
        if (!ev)
            fail_msg("log line is not JSON: %s", line);
        assert_non_null(json_string_value(json_object_get(ev, "ts")));
        assert_non_null(json_string_value(json_object_get(ev, "level")));
        const char *msg = json_string_value(json_object_get(ev, "msg"));
        assert_non_null(msg);
        if (!strcmp(msg, "request")) {
            found = true;
            assert_string_equal(json_string_value(json_object_get(ev, "request_id")), r.reqid);
            assert_string_equal(json_string_value(json_object_get(ev, "method")), "GET");
            assert_string_equal(json_string_value(json_object_get(ev, "path")),
                                "/v1/apps/app1/metadata/1.root.json");
            assert_int_equal(json_integer_value(json_object_get(ev, "status")), 200);
            assert_int_equal(json_integer_value(json_object_get(ev, "bytes")), r.body.len);
            assert_true(json_is_number(json_object_get(ev, "duration_ms")));
            assert_non_null(strstr(json_string_value(json_object_get(ev, "remote")),
                                   "127.0.0.1:"));
        }
        json_decref(ev);
    }
    assert_true(found);
    lp_buf_free(&r.body);
    fclose(f);

    /* the text form */
    f = tmpfile();
    log = (lp_log){.out = f, .format = LP_LOG_TEXT, .min_level = LP_LOG_DEBUG};
    lp_log_event(&log, LP_LOG_WARN, "hello", json_pack("{s:s,s:i}", "k", "a b", "n", 3));
    rewind(f);
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, " warn hello k=\"a b\" n=3\n"));
    fclose(f);
}

/* ---- configuration ----------------------------------------------------------- */

static void test_config_layers(void **state)
{
    world *w = *state;
    lp_server_config cfg;
    lp_error err;
    assert_int_equal(lp_server_config_load(&cfg, NULL, 0, NULL, &err), LP_OK);
    assert_string_equal(cfg.listen, "127.0.0.1:8080");
    assert_string_equal(cfg.data_dir, "./livepush-data");
    assert_int_equal(cfg.threads, 0);
    assert_int_equal(cfg.log_format, LP_LOG_JSON);

    char *file = lp_test_join(w->dir, "serve.json");
    assert_int_equal(lp_test_write_str(file, "{\"threads\":3,\"listen\":\"[::1]:9000\","
                                             "\"data_dir\":\"/srv/lp\",\"log_format\":\"text\"}"),
                     0);
    char envc[300];
    snprintf(envc, sizeof envc, "LIVEPUSH_CONFIG=%s", file);
    char *env[] = {envc, "LIVEPUSH_THREADS=5", "LIVEPUSH_DATA_DIR=/env/dir", "OTHER=1", NULL};
    lp_server_setting flags[] = {{"threads", "7"}, {"max-connections", "9"}};
    assert_int_equal(lp_server_config_load(&cfg, flags, 2, env, &err), LP_OK);
    assert_int_equal(cfg.threads, 7);              /* flag */
    assert_int_equal(cfg.max_connections, 9);      /* flag */
    assert_string_equal(cfg.data_dir, "/env/dir"); /* env over file */
    assert_string_equal(cfg.listen, "[::1]:9000"); /* file */
    assert_int_equal(cfg.log_format, LP_LOG_TEXT); /* file */
    assert_int_equal(lp_server_config_load(&cfg, NULL, 0, env, &err), LP_OK);
    assert_int_equal(cfg.threads, 5);
    char *env2[] = {envc, NULL};
    assert_int_equal(lp_server_config_load(&cfg, NULL, 0, env2, &err), LP_OK);
    assert_int_equal(cfg.threads, 3);
    /* --config wins over LIVEPUSH_CONFIG */
    char *other = lp_test_join(w->dir, "other.json");
    assert_int_equal(lp_test_write_str(other, "{\"threads\":11}"), 0);
    lp_server_setting cflag[] = {{"config", other}};
    assert_int_equal(lp_server_config_load(&cfg, cflag, 1, env2, &err), LP_OK);
    assert_int_equal(cfg.threads, 11);

    /* refusals name what is wrong */
    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"{\"threads\":2,\"colour\":\"red\"}", "unknown key 'colour'"},
        {"{\"threads\":\"2\"}", "'threads': expected a non-negative integer"},
        {"{\"threads\":-1}", "'threads'"},
        {"{\"threads\":99999}", "'threads'"},
        {"{\"listen\":\"nowhere\"}", "'listen'"},
        {"{\"log_format\":\"xml\"}", "'log_format'"},
        {"{\"threads\":1,\"threads\":2}", "duplicate"},
        {"[1]", "expected a JSON object"},
        {"{", "config file"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(lp_test_write_str(other, bad[i].text), 0);
        lp_status st = lp_server_config_load(&cfg, cflag, 1, NULL, &err);
        assert_int_not_equal(st, LP_OK);
        if (!strstr(err.msg, bad[i].needle))
            fail_msg("%s: message '%s' lacks '%s'", bad[i].text, err.msg, bad[i].needle);
    }
    lp_server_setting badflag[] = {{"max-connections", "0"}};
    assert_int_equal(lp_server_config_load(&cfg, badflag, 1, NULL, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "--max-connections"));
    char *badenv[] = {"LIVEPUSH_LOG_LEVEL=loud", NULL};
    assert_int_not_equal(lp_server_config_load(&cfg, NULL, 0, badenv, &err), LP_OK);
    assert_non_null(strstr(err.msg, "LIVEPUSH_LOG_LEVEL"));
    free(other);
    free(file);
}

static void test_parse_listen(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(lp_server_parse_listen("127.0.0.1:0", &ss, &len, NULL), LP_OK);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(lp_server_parse_listen("[::]:8080", &ss, &len, NULL), LP_OK);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 8080);
    assert_int_equal(lp_server_parse_listen("localhost:80", &ss, &len, NULL), LP_OK);
    const char *bad[] = {"", "8080", ":8080", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:x",
                         "[::1:80", "::1:80", "example.com:80", "[zz]:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (lp_server_parse_listen(bad[i], &ss, &len, NULL) != LP_ERR_INVALID_ARG)
            fail_msg("accepted listen address '%s'", bad[i]);
    assert_true(lp_http_valid_app_name("my-app_1.2"));
    assert_false(lp_http_valid_app_name(".."));
    assert_false(lp_http_valid_app_name("a/b"));
    assert_false(lp_http_valid_app_name(""));
    char long_name[66];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    assert_false(lp_http_valid_app_name(long_name));
    long_name[64] = '\0';
    assert_true(lp_http_valid_app_name(long_name));
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    lp_error err;
    if (lp_key_generate(&g_key, LP_KEY_ED25519, &err)) {
        fprintf(stderr, "keygen: %s\n", err.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metadata_and_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_etag_304, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_not_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_router_captures_and_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tuf_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_layers, setup, teardown),
        cmocka_unit_test(test_parse_listen),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    lp_key_free(g_key);
    curl_global_cleanup();
    return rc;
}
