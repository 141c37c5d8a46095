/*
 * test_fetch.c — the libcurl fetcher against a real HTTP server on loopback
 * (tests/support/httpd.c) and against real files through file:// URLs.
 *
 * Covers: full downloads, the size bound (Content-Length known, endless
 * chunked body, exact size, off by one, empty body), status mapping (404,
 * 410, 500, redirect loops, redirects to file://), sink errors, file:// URLs,
 * connection failures and timeouts, connection reuse, and the test server's
 * own Range, path-decoding and ".." handling that other tests rely on.
 */
#include "httpd.h"
#include "livepush/fetch.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#define BIG_SIZE (300u * 1024 + 17) /* several curl buffers, not a round number */
#define MIB (1024u * 1024)

typedef struct fixture {
    char *dir;      /* scratch folder: root/ is served, outside.txt is not */
    char *root;
    lp_test_httpd *httpd;
    lp_fetcher *f;
    uint8_t *big;   /* content of root/big.bin */
} fixture;

static fixture fx;

static char *url_of(const char *path)
{
    size_t n = strlen(lp_test_httpd_url(fx.httpd)) + strlen(path) + 1;
    char *u = malloc(n);
    assert_non_null(u);
    snprintf(u, n, "%s%s", lp_test_httpd_url(fx.httpd), path);
    return u;
}

static void write_root(const char *name, const void *data, size_t len)
{
    char *p = lp_test_join(fx.root, name);
    assert_non_null(p);
    assert_int_equal(lp_test_write_file(p, data, len), 0);
    free(p);
}

static int setup(void **state)
{
    (void)state;
    fx.dir = lp_test_tmpdir("fetch");
    if (!fx.dir)
        return -1;
    fx.root = lp_test_join(fx.dir, "root");
    fx.big = malloc(BIG_SIZE);
    if (!fx.root || !fx.big)
        return -1;
    for (size_t i = 0; i < BIG_SIZE; i++)
        fx.big[i] = (uint8_t)((i * 7919u) >> 3);
    write_root("big.bin", fx.big, BIG_SIZE);
    write_root("small.txt", "hello, world\n", 13);
    write_root("empty", "", 0);
    write_root("a b.txt", "spaced\n", 7);
    write_root("dir/nested.json", "{\"n\":1}", 7);
    char *outside = lp_test_join(fx.dir, "outside.txt");
    if (!outside || lp_test_write_str(outside, "secret\n") != 0)
        return -1;
    free(outside);
    fx.httpd = lp_test_httpd_start(fx.root);
    if (!fx.httpd)
        return -1;
    lp_test_httpd_set_endless(fx.httpd, "/endless");
    lp_error err;
    if (lp_http_fetcher_new(&fx.f, NULL, &err) != LP_OK) {
        fprintf(stderr, "fetcher: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (fx.f)
        fx.f->destroy(fx.f);
    lp_test_httpd_stop(fx.httpd);
    int rc = lp_test_rmtree(fx.dir);
    free(fx.dir);
    free(fx.root);
    free(fx.big);
    return rc;
}

/* A sink that counts the bytes it is given and can fail on its Nth call. */
typedef struct counting_sink {
    uint64_t got;
    unsigned calls;
    unsigned fail_on_call; /* 0: never fail */
} counting_sink;

static lp_status count_sink(void *ctx, const void *data, size_t len, lp_error *err)
{
    counting_sink *s = ctx;
    (void)data;
    s->calls++;
    if (s->fail_on_call && s->calls == s->fail_on_call)
        return lp_error_set(err, LP_ERR_IO, "writing download: disk full (test)");
    s->got += len;
    return LP_OK;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- successful fetches ------------------------------------------------ */

static void test_fetch_whole_file(void **state)
{
    (void)state;
    char *u = url_of("/big.bin");
    uint8_t *data;
    size_t len;
    lp_error err;
    lp_status st = lp_fetch_to_buffer(fx.f, u, 10 * MIB, &data, &len, &err);
    if (st)
        fail_msg("fetch: %s", err.msg);
    assert_int_equal(len, BIG_SIZE);
    assert_memory_equal(data, fx.big, BIG_SIZE);
    assert_int_equal(data[len], 0); /* NUL-terminated */
    free(data);

    char *nested = url_of("/dir/nested.json");
    assert_int_equal(lp_fetch_to_buffer(fx.f, nested, 100, &data, &len, &err), LP_OK);
    assert_string_equal((char *)data, "{\"n\":1}");
    free(data);
    free(nested);
    free(u);
}

static void test_exact_size_limit(void **state)
{
    (void)state;
    char *u = url_of("/big.bin");
    uint8_t *data = NULL;
    size_t len = 0;
    lp_error err;
    assert_int_equal(lp_fetch_to_buffer(fx.f, u, BIG_SIZE, &data, &len, &err), LP_OK);
    assert_int_equal(len, BIG_SIZE);
    assert_memory_equal(data, fx.big, BIG_SIZE);
    free(data);
    /* one byte less is too much */
    counting_sink s = {0};
    assert_int_equal(fx.f->fetch(fx.f, u, BIG_SIZE - 1, count_sink, &s, &err), LP_ERR_TOO_LARGE);
    assert_true(s.got <= BIG_SIZE - 1);
    free(u);
}

static void test_empty_body(void **state)
{
    (void)state;
    char *u = url_of("/empty");
    uint8_t *data = NULL;
    size_t len = 99;
    lp_error err;
    /* a limit of 0 still admits an empty body */
    assert_int_equal(lp_fetch_to_buffer(fx.f, u, 0, &data, &len, &err), LP_OK);
    assert_non_null(data);
    assert_int_equal(len, 0);
    assert_int_equal(data[0], 0);
    free(data);
    /* and a limit of 0 refuses a non-empty one */
    char *small = url_of("/small.txt");
    assert_int_equal(lp_fetch_to_buffer(fx.f, small, 0, &data, &len, &err), LP_ERR_TOO_LARGE);
    assert_null(data);
    free(small);
    free(u);
}

static void test_decoded_path(void **state)
{
    (void)state;
    char *u = url_of("/a%20b.txt");
    uint8_t *data;
    size_t len;
    lp_error err;
    assert_int_equal(lp_fetch_to_buffer(fx.f, u, 100, &data, &len, &err), LP_OK);
    assert_string_equal((char *)data, "spaced\n");
    free(data);
    free(u);
}

/* Consecutive fetches through one fetcher share one connection. */
static void test_connection_reuse(void **state)
{
    (void)state;
    /* a fresh fetcher, so earlier tests' connections do not count */
    lp_fetcher *f;
    lp_error err;
    lp_http_options o = {.user_agent = "livepush-test"};
    assert_int_equal(lp_http_fetcher_new(&f, &o, &err), LP_OK);
    unsigned before = lp_test_httpd_connections(fx.httpd);
    char *u = url_of("/small.txt");
    for (int i = 0; i < 3; i++) {
        uint8_t *data;
        size_t len;
        assert_int_equal(lp_fetch_to_buffer(f, u, 100, &data, &len, &err), LP_OK);
        assert_string_equal((char *)data, "hello, world\n");
        free(data);
    }
    assert_int_equal(lp_test_httpd_connections(fx.httpd) - before, 1);
    free(u);
    f->destroy(f);
}

/* ---- bounds ------------------------------------------------------------ */

static void test_too_large_with_length(void **state)
{
    (void)state;
    char *u = url_of("/big.bin");
    counting_sink s = {0};
    lp_error err;
    assert_int_equal(fx.f->fetch(fx.f, u, 1000, count_sink, &s, &err), LP_ERR_TOO_LARGE);
    assert_true(s.got <= 1000);
    assert_non_null(strstr(err.msg, u));
    assert_non_null(strstr(err.msg, "exceeds the limit of 1000 bytes"));
    free(u);
}

static void test_endless_body(void **state)
{
    (void)state;
    char *u = url_of("/endless");
    counting_sink s = {0};
    lp_error err;
    uint64_t sent_before = lp_test_httpd_bytes_sent(fx.httpd);
    double t0 = now_seconds();
    assert_int_equal(fx.f->fetch(fx.f, u, MIB, count_sink, &s, &err), LP_ERR_TOO_LARGE);
    double took = now_seconds() - t0;
    assert_true(took < 20.0);
    assert_true(s.got <= MIB);
    /* the limit was reached through the body, not refused up front */
    assert_true(s.got > MIB / 2);
    assert_true(lp_test_httpd_bytes_sent(fx.httpd) - sent_before >= MIB);
    assert_non_null(strstr(err.msg, "exceeds the limit of 1048576 bytes"));
    assert_int_equal(lp_test_httpd_requests(fx.httpd, "/endless"), 1);
    free(u);

    /* the fetcher is still usable after an aborted transfer */
    char *small = url_of("/small.txt");
    uint8_t *data;
    size_t len;
    assert_int_equal(lp_fetch_to_buffer(fx.f, small, 100, &data, &len, &err), LP_OK);
    assert_int_equal(len, 13);
    free(data);
    free(small);
}

/* ---- failures ---------------------------------------------------------- */

static void test_not_found(void **state)
{
    (void)state;
    char *u = url_of("/no/such.json");
    counting_sink s = {0};
    lp_error err;
    assert_int_equal(fx.f->fetch(fx.f, u, MIB, count_sink, &s, &err), LP_ERR_NOT_FOUND);
    assert_int_equal(s.calls, 0); /* the error page never reaches the sink */
    assert_non_null(strstr(err.msg, u));
    assert_non_null(strstr(err.msg, "HTTP 404"));
    free(u);

    u = url_of("/status/410");
    assert_int_equal(fx.f->fetch(fx.f, u, MIB, count_sink, &s, &err), LP_ERR_NOT_FOUND);
    free(u);

    /* a folder is not a file */
    u = url_of("/dir");
    assert_int_equal(fx.f->fetch(fx.f, u, MIB, count_sink, &s, &err), LP_ERR_NOT_FOUND);
    assert_int_equal(s.calls, 0);
    free(u);
}

static void test_server_error(void **state)
{
    (void)state;
    char *u = url_of("/status/500");
    counting_sink s = {0};
    lp_error err;
    assert_int_equal(fx.f->fetch(fx.f, u, MIB, count_sink, &s, &err), LP_ERR_NETWORK);
    assert_int_equal(s.calls, 0);
    char want[300];
    snprintf(want, sizeof want, "GET %s: HTTP 500", u);
    assert_string_equal(err.msg, want);
    free(u);

    u = url_of("/status/403/deeper");
    assert_int_equal(fx.f->fetch(fx.f, u, MIB, count_sink, &s, &err), LP_ERR_NETWORK);
    assert_non_null(strstr(err.msg, "HTTP 403"));
    free(u);
}

static void test_sink_error(void **state)
{
    (void)state;
    char *u = url_of("/big.bin");
    counting_sink s = {.fail_on_call = 1};
    lp_error err;
    assert_int_equal(fx.f->fetch(fx.f, u, 10 * MIB, count_sink, &s, &err), LP_ERR_IO);
    assert_string_equal(err.msg, "writing download: disk full (test)");
    assert_int_equal(s.calls, 1); /* the transfer stopped at once */
    assert_int_equal(s.got, 0);

    /* failing later, after some data, behaves the same */
    counting_sink s2 = {.fail_on_call = 2};
    assert_int_equal(fx.f->fetch(fx.f, u, 10 * MIB, count_sink, &s2, &err), LP_ERR_IO);
    assert_int_equal(s2.calls, 2);
    assert_true(s2.got > 0 && s2.got < BIG_SIZE);
    /* with no error record the status still comes back */
    counting_sink s3 = {.fail_on_call = 1};
    assert_int_equal(fx.f->fetch(fx.f, u, 10 * MIB, count_sink, &s3, NULL), LP_ERR_IO);
    free(u);
}

static void test_connection_refused(void **state)
{
    (void)state;
    /* a loopback port that nothing listens on: bind one, note it, close it */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    char u[100];
    snprintf(u, sizeof u, "http://127.0.0.1:%u/x.json", (unsigned)ntohs(sa.sin_port));
    counting_sink s = {0};
    lp_error err;
    assert_int_equal(fx.f->fetch(fx.f, u, MIB, count_sink, &s, &err), LP_ERR_NETWORK);
    assert_non_null(strstr(err.msg, u));
    assert_int_equal(s.calls, 0);
}

static void test_total_timeout(void **state)
{
    (void)state;
    lp_fetcher *f;
    lp_error err;
    lp_http_options o = {.total_timeout_ms = 300};
    assert_int_equal(lp_http_fetcher_new(&f, &o, &err), LP_OK);
    char *u = url_of("/endless");
    counting_sink s = {0};
    double t0 = now_seconds();
    assert_int_equal(f->fetch(f, u, UINT64_MAX, count_sink, &s, &err), LP_ERR_NETWORK);
    assert_true(now_seconds() - t0 < 10.0);
    assert_non_null(strstr(err.msg, u));
    assert_true(s.got > 0);
    free(u);
    f->destroy(f);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    lp_fetcher *f = NULL;
    lp_error err;
    lp_http_options o = {.connect_timeout_ms = -1};
    assert_int_equal(lp_http_fetcher_new(&f, &o, &err), LP_ERR_INVALID_ARG);
    assert_null(f);
    counting_sink s = {0};
    assert_int_equal(fx.f->fetch(fx.f, NULL, 10, count_sink, &s, &err), LP_ERR_INVALID_ARG);
    assert_int_equal(fx.f->fetch(fx.f, "", 10, count_sink, &s, &err), LP_ERR_INVALID_ARG);
    uint8_t *data;
    size_t len;
    assert_int_equal(lp_fetch_to_buffer(NULL, "http://127.0.0.1/", 10, &data, &len, &err),
                     LP_ERR_INVALID_ARG);
    /* a scheme outside http, https and file is refused before any traffic */
    assert_int_equal(fx.f->fetch(fx.f, "ftp://127.0.0.1/x", 10, count_sink, &s, &err),
                     LP_ERR_NETWORK);
    assert_non_null(strstr(err.msg, "ftp://127.0.0.1/x"));
    assert_int_equal(s.calls, 0);
}

/* ---- redirects --------------------------------------------------------- */

static void test_redirects(void **state)
{
    (void)state;
    lp_error err;
    uint8_t *data;
    size_t len;
    /* followed to an http URL */
    char target[200], u[400];
    snprintf(target, sizeof target, "%s/small.txt", lp_test_httpd_url(fx.httpd));
    snprintf(u, sizeof u, "%s/status/302?location=%s", lp_test_httpd_url(fx.httpd), target);
    assert_int_equal(lp_fetch_to_buffer(fx.f, u, 100, &data, &len, &err), LP_OK);
    assert_string_equal((char *)data, "hello, world\n");
    free(data);

    /* never to a local file */
    char *secret = lp_test_join(fx.dir, "outside.txt");
    snprintf(u, sizeof u, "%s/status/302?location=file://%s", lp_test_httpd_url(fx.httpd), secret);
    free(secret);
    counting_sink s = {0};
    assert_int_equal(fx.f->fetch(fx.f, u, 100, count_sink, &s, &err), LP_ERR_NETWORK);
    assert_int_equal(s.calls, 0);

    /* a loop stops after 5 redirects: the first request and 5 more */
    unsigned before = lp_test_httpd_requests(fx.httpd, "/status/307");
    char *loop = url_of("/status/307");
    assert_int_equal(fx.f->fetch(fx.f, loop, 100, count_sink, &s, &err), LP_ERR_NETWORK);
    assert_non_null(strstr(err.msg, loop));
    assert_int_equal(lp_test_httpd_requests(fx.httpd, "/status/307") - before, 6);
    assert_int_equal(s.calls, 0);
    free(loop);
}

/* ---- file:// ----------------------------------------------------------- */

static void test_file_urls(void **state)
{
    (void)state;
    char u[512];
    snprintf(u, sizeof u, "file://%s/big.bin", fx.root);
    uint8_t *data;
    size_t len;
    lp_error err;
    assert_int_equal(lp_fetch_to_buffer(fx.f, u, BIG_SIZE, &data, &len, &err), LP_OK);
    assert_int_equal(len, BIG_SIZE);
    assert_memory_equal(data, fx.big, BIG_SIZE);
    free(data);

    counting_sink s = {0};
    assert_int_equal(fx.f->fetch(fx.f, u, 1000, count_sink, &s, &err), LP_ERR_TOO_LARGE);
    assert_true(s.got <= 1000);

    snprintf(u, sizeof u, "file://%s/missing.json", fx.root);
    assert_int_equal(fx.f->fetch(fx.f, u, 1000, count_sink, &s, &err), LP_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, u));
}

/* ---- the test server itself -------------------------------------------- */

typedef struct curl_result {
    long code;
    char body[BIG_SIZE + 1];
    size_t len;
    char content_range[128];
} curl_result;

static size_t collect_body(char *p, size_t size, size_t n, void *ud)
{
    curl_result *r = ud;
    size_t k = size * n;
    if (k > sizeof r->body - 1 - r->len)
        return 0;
    memcpy(r->body + r->len, p, k);
    r->len += k;
    return k;
}

static size_t collect_header(char *p, size_t size, size_t n, void *ud)
{
    curl_result *r = ud;
    size_t k = size * n;
    static const char name[] = "content-range:";
    if (k > sizeof name && strncasecmp(p, name, sizeof name - 1) == 0) {
        size_t v = k - (sizeof name - 1);
        if (v >= sizeof r->content_range)
            v = sizeof r->content_range - 1;
        memcpy(r->content_range, p + sizeof name - 1, v);
        r->content_range[v] = '\0';
        /* trim spaces and the line end */
        char *s = r->content_range;
        while (*s == ' ')
            memmove(s, s + 1, strlen(s));
        s[strcspn(s, "\r\n")] = '\0';
    }
    return k;
}

/* A plain GET with curl, optionally with a Range header and the path sent
 * as is (no dot-segment removal). */
static curl_result *raw_get(const char *path, const char *range_header)
{
    curl_result *r = calloc(1, sizeof *r);
    assert_non_null(r);
    char *u = url_of(path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *hdrs = NULL;
    if (range_header)
        hdrs = curl_slist_append(NULL, range_header);
    curl_easy_setopt(c, CURLOPT_URL, u);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    free(u);
    return r;
}

static void test_server_ranges(void **state)
{
    (void)state;
    char want[128];
    curl_result *r = raw_get("/big.bin", "Range: bytes=10-19");
    assert_int_equal(r->code, 206);
    assert_int_equal(r->len, 10);
    assert_memory_equal(r->body, fx.big + 10, 10);
    snprintf(want, sizeof want, "bytes 10-19/%u", BIG_SIZE);
    assert_string_equal(r->content_range, want);
    free(r);

    r = raw_get("/big.bin", "Range: bytes=1000-");
    assert_int_equal(r->code, 206);
    assert_int_equal(r->len, BIG_SIZE - 1000);
    assert_memory_equal(r->body, fx.big + 1000, BIG_SIZE - 1000);
    free(r);

    r = raw_get("/big.bin", "Range: bytes=-5");
    assert_int_equal(r->code, 206);
    assert_int_equal(r->len, 5);
    assert_memory_equal(r->body, fx.big + BIG_SIZE - 5, 5);
    free(r);

    /* an end past the file is cut to the file */
    snprintf(want, sizeof want, "Range: bytes=%u-%u", BIG_SIZE - 3, BIG_SIZE + 100);
    r = raw_get("/big.bin", want);
    assert_int_equal(r->code, 206);
    assert_int_equal(r->len, 3);
    assert_memory_equal(r->body, fx.big + BIG_SIZE - 3, 3);
    free(r);

    /* starting at or past the end cannot be satisfied */
    snprintf(want, sizeof want, "Range: bytes=%u-", BIG_SIZE);
    r = raw_get("/big.bin", want);
    assert_int_equal(r->code, 416);
    assert_int_equal(r->len, 0);
    snprintf(want, sizeof want, "bytes */%u", BIG_SIZE);
    assert_string_equal(r->content_range, want);
    free(r);

    /* several ranges, or a malformed header, give the whole file */
    r = raw_get("/small.txt", "Range: bytes=0-1,4-5");
    assert_int_equal(r->code, 200);
    assert_int_equal(r->len, 13);
    free(r);
    r = raw_get("/small.txt", "Range: bytes=5-2");
    assert_int_equal(r->code, 200);
    assert_int_equal(r->len, 13);
    free(r);
    r = raw_get("/small.txt", "Range: lines=1-2");
    assert_int_equal(r->code, 200);
    assert_string_equal(r->body, "hello, world\n");
    free(r);
}

static void test_server_paths(void **state)
{
    (void)state;
    /* ".." is refused, also when spelled with %XX */
    curl_result *r = raw_get("/../outside.txt", NULL);
    assert_int_equal(r->code, 403);
    assert_null(strstr(r->body, "secret"));
    free(r);
    r = raw_get("/%2e%2e/outside.txt", NULL);
    assert_int_equal(r->code, 403);
    free(r);
    r = raw_get("/dir/%2E%2E/%2E%2E/outside.txt", NULL);
    assert_int_equal(r->code, 403);
    free(r);
    /* names that merely contain two dots are fine */
    write_root("v1..2.txt", "dots\n", 5);
    r = raw_get("/v1..2.txt", NULL);
    assert_int_equal(r->code, 200);
    assert_string_equal(r->body, "dots\n");
    free(r);

}

/* The counters, on a server of their own so no other request is counted. */
static void test_server_counters(void **state)
{
    (void)state;
    lp_test_httpd *h = lp_test_httpd_start(fx.root);
    assert_non_null(h);
    char u[200];
    snprintf(u, sizeof u, "%s/small.txt", lp_test_httpd_url(h));
    lp_error err;
    for (int i = 0; i < 2; i++) {
        uint8_t *data;
        size_t len;
        assert_int_equal(lp_fetch_to_buffer(fx.f, u, 100, &data, &len, &err), LP_OK);
        free(data);
    }
    snprintf(u, sizeof u, "%s/missing", lp_test_httpd_url(h));
    counting_sink s = {0};
    assert_int_equal(fx.f->fetch(fx.f, u, 100, count_sink, &s, &err), LP_ERR_NOT_FOUND);
    assert_int_equal(lp_test_httpd_requests(h, NULL), 3);
    assert_int_equal(lp_test_httpd_requests(h, "/small.txt"), 2);
    assert_int_equal(lp_test_httpd_requests(h, "/missing"), 1);
    assert_int_equal(lp_test_httpd_requests(h, "/never"), 0);
    assert_int_equal(lp_test_httpd_connections(h), 1);
    /* 2 x 13 bytes of file and the 10-byte "not found\n" page; completion is
     * reported by the server thread just after the last byte goes out */
    for (int i = 0; i < 200 && lp_test_httpd_bytes_sent(h) < 36; i++)
        usleep(10 * 1000);
    assert_int_equal(lp_test_httpd_bytes_sent(h), 36);
    lp_test_httpd_stop(h);
}

/* ---- the test helpers ------------------------------------------------- */

static void test_support_helpers(void **state)
{
    (void)state;
    char *d = lp_test_tmpdir("helpers");
    assert_non_null(d);
    char *f = lp_test_join(d, "x/y/z.txt");
    assert_int_equal(lp_test_write_str(f, "content"), 0);
    size_t len = 0;
    uint8_t *data = lp_test_read_file(f, &len);
    assert_non_null(data);
    assert_int_equal(len, 7);
    assert_string_equal((char *)data, "content");
    free(data);
    assert_null(lp_test_read_file(d, NULL)); /* a folder is not a file */
    /* a link to a file outside the tree is removed, its target is not */
    char *outside = lp_test_join(fx.dir, "outside.txt");
    char *link = lp_test_join(d, "x/link");
    assert_int_equal(symlink(outside, link), 0);
    assert_int_equal(lp_test_rmtree(d), 0);
    assert_int_equal(access(d, F_OK), -1);
    assert_int_equal(access(outside, F_OK), 0);
    assert_int_equal(lp_test_rmtree(d), 0); /* already gone is fine */
    assert_int_equal(lp_test_rmtree("/"), -1);
    setenv("LP_TEST_HELPER_VAR", "v", 1);
    assert_string_equal(lp_test_getenv_or_skip("LP_TEST_HELPER_VAR"), "v");
    free(link);
    free(outside);
    free(f);
    free(d);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT); /* for the raw requests */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_whole_file),
        cmocka_unit_test(test_exact_size_limit),
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_decoded_path),
        cmocka_unit_test(test_connection_reuse),
        cmocka_unit_test(test_too_large_with_length),
        cmocka_unit_test(test_endless_body),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_server_error),
        cmocka_unit_test(test_sink_error),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_total_timeout),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_file_urls),
        cmocka_unit_test(test_server_ranges),
        cmocka_unit_test(test_server_paths),
        cmocka_unit_test(test_server_counters),
        cmocka_unit_test(test_support_helpers),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return failed;
}
