/*
 * test_agent_fetch.c — the updater's network connection against a real HTTP
 * server on loopback (tests/support/httpd.c), which serves blobs at
 * /v1/blobs/<sha256> with Range support and injects faults: connections cut
 * part-way, error statuses with Retry-After, Range ignored.
 *
 * Covers: a whole download (content, mode, partial file gone, progress), an
 * empty blob (no request), resume after a cut within one call and across
 * a restart (only the rest is transferred: bytes served are counted, the
 * Range sent is checked), a complete 206 that covers less than asked
 * (continued), a 200 answer to a Range request (starts over), a
 * damaged partial file from an earlier run (fetched again from byte 0), a
 * tampered blob (refused, partial file deleted, nothing at the destination),
 * too long and too short content, Retry-After in seconds and as an HTTP-date
 * (the wait is measured), a Retry-After beyond the limit, giving up after
 * the attempts with a message naming blob, attempts and cause, a refused
 * connection, 404 without retries, the URL policy (https required for
 * non-loopback hosts, allow_http, allow-list, redirects checked hop by hop),
 * the fetcher handed to the TUF client (retries, 404), a move across file
 * systems, and the header parsers and back-off bounds on their own.
 */
#include "agent/net.h"
#include "core/file.h"
#include "httpd.h"
#include "livepush/hash.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#define BIG (300u * 1024 + 17)

typedef struct world {
    char *dir, *www, *state;
    lp_test_httpd *httpd;
    uint8_t *big;
    char big_sha[65];
    uint64_t progress_calls, progress_done, progress_total;
} world;

static world w;

/* ---- helpers ---------------------------------------------------------------- */

static void sha_of(const void *data, size_t len, char out[65])
{
    uint8_t md[LP_HASH_MAX_LEN];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, data, len, md, NULL), LP_OK);
    lp_hex_encode(md, LP_SHA256_LEN, out);
}

/* Serves `data` as the blob named `name` (normally its sha256). */
static void put_blob(const char *name, const void *data, size_t len)
{
    char rel[128];
    snprintf(rel, sizeof rel, "v1/blobs/%s", name);
    char *p = lp_test_join(w.www, rel);
    assert_int_equal(lp_test_write_file(p, data, len), 0);
    free(p);
}

static void blob_path(const char *sha, char *out, size_t cap)
{
    snprintf(out, cap, "/v1/blobs/%s", sha);
}

static char *part_path(const char *sha)
{
    char name[128];
    snprintf(name, sizeof name, "downloads/%s.part", sha);
    return lp_test_join(w.state, name);
}

static void on_progress(void *ctx, const char *sha, uint64_t done, uint64_t total)
{
    world *x = ctx;
    assert_int_equal(strlen(sha), 64);
    assert_true(done <= total);
    x->progress_calls++;
    x->progress_done = done;
    x->progress_total = total;
}

static lp_net_config base_config(void)
{
    lp_net_config c = {.server_url = lp_test_httpd_url(w.httpd),
                       .app = "demo",
                       .state_dir = w.state,
                       .attempts = 4,
                       .backoff_base_ms = 5,
                       .backoff_max_ms = 40,
                       .progress = on_progress,
                       .progress_ctx = &w};
    c.http.connect_timeout_ms = 2000;
    c.http.low_speed_secs = 5;
    return c;
}

static lp_net *open_net(const lp_net_config *c)
{
    lp_net *n = NULL;
    lp_error err;
    if (lp_net_open(c, &n, &err))
        fail_msg("lp_net_open: %s", err.msg);
    return n;
}

static char *dest_of(const char *name)
{
    return lp_test_join(w.dir, name);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void expect_file(const char *path, const void *data, size_t len)
{
    size_t got_len = 0;
    uint8_t *got = lp_test_read_file(path, &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    free(got);
}

/* A fresh blob of `len` bytes (content depends on seed), served; its sha256
 * goes to sha. */
static uint8_t *new_blob(size_t len, unsigned seed, char sha[65])
{
    uint8_t *b = malloc(len ? len : 1);
    assert_non_null(b);
    uint32_t x = 2166136261u ^ seed;
    for (size_t i = 0; i < len; i++) {
        x = x * 16777619u + 0x9e37u;
        b[i] = (uint8_t)(x >> 13);
    }
    sha_of(b, len, sha);
    put_blob(sha, b, len);
    return b;
}

static int setup(void **state)
{
    (void)state;
    memset(&w, 0, sizeof w);
    assert_non_null(w.dir = lp_test_tmpdir("agentfetch"));
    w.www = lp_test_join(w.dir, "www");
    w.state = lp_test_join(w.dir, "state");
    assert_int_equal(lp_file_mkdirs(w.www, 0755, NULL), LP_OK);
    assert_int_equal(lp_file_mkdirs(w.state, 0700, NULL), LP_OK);
    w.big = new_blob(BIG, 1, w.big_sha);
    assert_non_null(w.httpd = lp_test_httpd_start(w.www));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    lp_test_httpd_stop(w.httpd);
    lp_test_rmtree(w.dir);
    free(w.dir);
    free(w.www);
    free(w.state);
    free(w.big);
    return 0;
}

/* ---- downloads ------------------------------------------------------------------- */

static void test_whole_download(void **state)
{
    (void)state;
    lp_net_config c = base_config();
    lp_net *n = open_net(&c);
    char *dest = dest_of("whole.bin");
    lp_error err;
    w.progress_calls = 0;
    uint64_t before = lp_test_httpd_bytes_sent(w.httpd);
    if (lp_net_fetch_blob(n, w.big_sha, BIG, dest, &err))
        fail_msg("fetch: %s", err.msg);
    expect_file(dest, w.big, BIG);
    struct stat sb;
    assert_int_equal(stat(dest, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char *part = part_path(w.big_sha);
    assert_int_equal(lp_file_exists(part), 0);
    assert_int_equal(lp_test_httpd_bytes_sent(w.httpd) - before, BIG);
    assert_true(w.progress_calls >= 1);
    assert_int_equal(w.progress_done, BIG);
    assert_int_equal(w.progress_total, BIG);
    /* an lp_blob_fetch_fn as staging expects it */
    lp_blob_fetch_fn fn = lp_net_fetch_blob;
    assert_non_null(fn);
    free(part);
    free(dest);
    lp_net_close(n);
}

static void test_empty_blob(void **state)
{
    (void)state;
    char sha[65];
    free(new_blob(0, 2, sha));
    lp_net_config c = base_config();
    lp_net *n = open_net(&c);
    char *dest = dest_of("empty.bin");
    char path[128];
    blob_path(sha, path, sizeof path);
    lp_error err;
    assert_int_equal(lp_net_fetch_blob(n, sha, 0, dest, &err), LP_OK);
    expect_file(dest, "", 0);
    assert_int_equal(lp_test_httpd_requests(w.httpd, path), 0); /* nothing to ask for */
    free(dest);
    lp_net_close(n);
}

static void test_resume_within_call(void **state)
{
    (void)state;
    char sha[65], path[128];
    uint8_t *b = new_blob(BIG, 3, sha);
    blob_path(sha, path, sizeof path);
    lp_test_httpd_cut(w.httpd, path, 100000, 1);
    lp_net_config c = base_config();
    lp_net *n = open_net(&c);
    char *dest = dest_of("resumed.bin");
    uint64_t before = lp_test_httpd_bytes_sent(w.httpd);
    lp_error err;
    if (lp_net_fetch_blob(n, sha, BIG, dest, &err))
        fail_msg("fetch: %s", err.msg);
    expect_file(dest, b, BIG);
    assert_int_equal(lp_test_httpd_requests(w.httpd, path), 2);
    char range[128];
    lp_test_httpd_last_range(w.httpd, path, range, sizeof range);
    assert_string_equal(range, "bytes=100000-");
    /* only the rest went over the wire the second time */
    assert_int_equal(lp_test_httpd_bytes_sent(w.httpd) - before, BIG);
    free(dest);
    free(b);
    lp_net_close(n);
}

static void test_resume_after_restart(void **state)
{
    (void)state;
    char sha[65], path[128];
    uint8_t *b = new_blob(BIG, 4, sha);
    blob_path(sha, path, sizeof path);
    lp_test_httpd_cut(w.httpd, path, 70000, 1);
    lp_net_config c = base_config();
    c.attempts = 1;
    lp_net *n = open_net(&c);
    char *dest = dest_of("restart.bin");
    lp_error err;
    uint64_t before = lp_test_httpd_bytes_sent(w.httpd);
    assert_int_equal(lp_net_fetch_blob(n, sha, BIG, dest, &err), LP_ERR_NETWORK);
    assert_non_null(strstr(err.msg, "gave up after 1 attempts"));
    assert_non_null(strstr(err.msg, sha));
    assert_int_equal(lp_file_exists(dest), 0);
    lp_net_close(n);
    /* the partial file survives the "restart" */
    char *part = part_path(sha);
    struct stat sb;
    assert_int_equal(stat(part, &sb), 0);
    assert_int_equal(sb.st_size, 70000);
    n = open_net(&c);
    if (lp_net_fetch_blob(n, sha, BIG, dest, &err))
        fail_msg("fetch after restart: %s", err.msg);
    expect_file(dest, b, BIG);
    char range[128];
    lp_test_httpd_last_range(w.httpd, path, range, sizeof range);
    assert_string_equal(range, "bytes=70000-");
    assert_int_equal(lp_test_httpd_bytes_sent(w.httpd) - before, BIG);
    assert_int_equal(lp_file_exists(part), 0);
    free(part);
    free(dest);
    free(b);
    lp_net_close(n);
}

static void test_short_206(void **state)
{
    (void)state;
    char sha[65], path[128];
    uint8_t *b = new_blob(BIG, 13, sha);
    blob_path(sha, path, sizeof path);
    char *part = part_path(sha);
    assert_int_equal(lp_test_write_file(part, b, 1000), 0);
    lp_test_httpd_short_range(w.httpd, path, 20000, 1);
    lp_net_config c = base_config();
    lp_net *n = open_net(&c);
    char *dest = dest_of("short.bin");
    uint64_t before = lp_test_httpd_bytes_sent(w.httpd);
    lp_error err;
    if (lp_net_fetch_blob(n, sha, BIG, dest, &err))
        fail_msg("fetch: %s", err.msg);
    expect_file(dest, b, BIG);
    assert_int_equal(lp_test_httpd_requests(w.httpd, path), 2);
    char range[128];
    lp_test_httpd_last_range(w.httpd, path, range, sizeof range);
    assert_string_equal(range, "bytes=21000-");
    assert_int_equal(lp_test_httpd_bytes_sent(w.httpd) - before, BIG - 1000);
    free(part);
    free(dest);
    free(b);
    lp_net_close(n);
}

static void test_200_starts_over(void **state)
{
    (void)state;
    char sha[65], path[128];
    uint8_t *b = new_blob(BIG, 5, sha);
    blob_path(sha, path, sizeof path);
    char *part = part_path(sha);
    assert_int_equal(lp_file_mkdirs(w.state, 0700, NULL), LP_OK);
    assert_int_equal(lp_test_write_file(part, b, 5000), 0);
    lp_test_httpd_ignore_range(w.httpd, path, 1);
    lp_net_config c = base_config();
    lp_net *n = open_net(&c);
    char *dest = dest_of("over.bin");
    lp_error err;
    if (lp_net_fetch_blob(n, sha, BIG, dest, &err))
        fail_msg("fetch: %s", err.msg);
    expect_file(dest, b, BIG);
    assert_int_equal(lp_test_httpd_requests(w.httpd, path), 1);
    char range[128];
    lp_test_httpd_last_range(w.httpd, path, range, sizeof range);
    assert_string_equal(range, "bytes=5000-"); /* asked for the rest, got everything */
    free(part);
    free(dest);
    free(b);
    lp_net_close(n);
}

static void test_damaged_partial_file(void **state)
{
    (void)state;
    char sha[65], path[128];
    uint8_t *b = new_blob(BIG, 6, sha);
    blob_path(sha, path, sizeof path);
    char *part = part_path(sha);
    uint8_t junk[4096];
    memset(junk, 0xAB, sizeof junk);
    assert_int_equal(lp_test_write_file(part, junk, sizeof junk), 0);
    lp_net_config c = base_config();
    c.attempts = 1; /* the fresh start after a bad resume is not an extra attempt */
    lp_net *n = open_net(&c);
    char *dest = dest_of("damaged.bin");
    lp_error err;
    if (lp_net_fetch_blob(n, sha, BIG, dest, &err))
        fail_msg("fetch: %s", err.msg);
    expect_file(dest, b, BIG);
    assert_int_equal(lp_test_httpd_requests(w.httpd, path), 2);
    char range[128];
    lp_test_httpd_last_range(w.httpd, path, range, sizeof range);
    assert_string_equal(range, ""); /* the second request asked for everything */
    free(part);
    free(dest);
    free(b);
    lp_net_close(n);
}

static void test_tampered(void **state)
{
    (void)state;
    char sha[65];
    uint8_t *b = new_blob(BIG, 7, sha);
    b[BIG / 2] ^= 1; /* the server now holds other content under the name */
    put_blob(sha, b, BIG);
    lp_net_config c = base_config();
    lp_net *n = open_net(&c);
    char *dest = dest_of("tampered.bin");
    char *part = part_path(sha);
    lp_error err;
    assert_int_equal(lp_net_fetch_blob(n, sha, BIG, dest, &err), LP_ERR_HASH_MISMATCH);
    assert_non_null(strstr(err.msg, sha));
    assert_non_null(strstr(err.msg, "deleted"));
    assert_int_equal(lp_file_exists(part), 0);
    assert_int_equal(lp_file_exists(dest), 0);
    char path[128];
    blob_path(sha, path, sizeof path);
    assert_int_equal(lp_test_httpd_requests(w.httpd, path), 1); /* not retried */

    /* longer than the manifest says: cut off, deleted */
    char sha2[65];
    uint8_t *b2 = new_blob(1000, 8, sha2);
    assert_int_equal(lp_net_fetch_blob(n, sha2, 999, dest, &err), LP_ERR_LENGTH_MISMATCH);
    assert_non_null(strstr(err.msg, "more than the 999 bytes"));
    free(part);
    part = part_path(sha2);
    assert_int_equal(lp_file_exists(part), 0);
    assert_int_equal(lp_file_exists(dest), 0);
    /* shorter */
    assert_int_equal(lp_net_fetch_blob(n, sha2, 1001, dest, &err), LP_ERR_LENGTH_MISMATCH);
    assert_non_null(strstr(err.msg, "sent 1000 bytes, the manifest lists 1001"));
    assert_int_equal(lp_file_exists(part), 0);
    assert_int_equal(lp_file_exists(dest), 0);
    /* a bad name never reaches the network */
    assert_int_equal(lp_net_fetch_blob(n, "ABC", 3, dest, &err), LP_ERR_INVALID_ARG);
    free(part);
    free(dest);
    free(b);
    free(b2);
    lp_net_close(n);
}

/* ---- retries ---------------------------------------------------------------------- */

static void test_retry_after_seconds(void **state)
{
    (void)state;
    char sha[65], path[128];
    uint8_t *b = new_blob(4000, 9, sha);
    blob_path(sha, path, sizeof path);
    lp_test_httpd_fail(w.httpd, path, 503, "1", 1);
    lp_net_config c = base_config();
    lp_net *n = open_net(&c);
    char *dest = dest_of("ra1.bin");
    lp_error err;
    double t0 = now_s();
    if (lp_net_fetch_blob(n, sha, 4000, dest, &err))
        fail_msg("fetch: %s", err.msg);
    double took = now_s() - t0;
    expect_file(dest, b, 4000);
    assert_int_equal(lp_test_httpd_requests(w.httpd, path), 2);
    if (took < 1.0)
        fail_msg("Retry-After: 1 honoured in %.3f s", took);
    free(dest);
    free(b);
    lp_net_close(n);
}

static void test_retry_after_date(void **state)
{
    (void)state;
    char sha[65], path[128];
    uint8_t *b = new_blob(4000, 10, sha);
    blob_path(sha, path, sizeof path);
    time_t when = time(NULL) + 2;
    struct tm tm;
    gmtime_r(&when, &tm);
    char date[64];
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    lp_test_httpd_fail(w.httpd, path, 429, date, 1);
    lp_net_config c = base_config();
    lp_net *n = open_net(&c);
    char *dest = dest_of("ra2.bin");
    lp_error err;
    double t0 = now_s();
    if (lp_net_fetch_blob(n, sha, 4000, dest, &err))
        fail_msg("fetch: %s", err.msg);
    double took = now_s() - t0;
    expect_file(dest, b, 4000);
    assert_int_equal(lp_test_httpd_requests(w.httpd, path), 2);
    /* the date is 2 s ahead at one-second resolution: at least 1 s waited */
    if (took < 1.0)
        fail_msg("Retry-After: %s honoured in %.3f s", date, took);
    free(dest);
    free(b);
    lp_net_close(n);
}

static void test_retry_after_too_long(void **state)
{
    (void)state;
    char sha[65], path[128];
    uint8_t *b = new_blob(100, 11, sha);
    blob_path(sha, path, sizeof path);
    lp_test_httpd_fail(w.httpd, path, 503, "120", 1);
    lp_net_config c = base_config();
    c.retry_after_max_s = 1;
    lp_net *n = open_net(&c);
    char *dest = dest_of("ra3.bin");
    lp_error err;
    double t0 = now_s();
    assert_int_equal(lp_net_fetch_blob(n, sha, 100, dest, &err), LP_ERR_NETWORK);
    assert_true(now_s() - t0 < 1.0);
    assert_non_null(strstr(err.msg, "retry after 120 s, more than the 1 s allowed"));
    assert_non_null(strstr(err.msg, sha));
    assert_int_equal(lp_file_exists(dest), 0);
    free(dest);
    free(b);
    lp_net_close(n);
}

static void test_give_up(void **state)
{
    (void)state;
    char sha[65], path[128];
    uint8_t *b = new_blob(100, 12, sha);
    blob_path(sha, path, sizeof path);
    lp_test_httpd_fail(w.httpd, path, 500, NULL, 10);
    lp_net_config c = base_config();
    c.attempts = 3;
    lp_net *n = open_net(&c);
    char *dest = dest_of("giveup.bin");
    lp_error err;
    assert_int_equal(lp_net_fetch_blob(n, sha, 100, dest, &err), LP_ERR_NETWORK);
    char want[200];
    snprintf(want, sizeof want, "blob %s: gave up after 3 attempts: GET ", sha);
    if (!strstr(err.msg, want) || !strstr(err.msg, "HTTP 500"))
        fail_msg("message: %s", err.msg);
    assert_int_equal(lp_test_httpd_requests(w.httpd, path), 3);
    assert_int_equal(lp_file_exists(dest), 0);
    lp_net_close(n);

    /* nothing listening: the transport error is the cause */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    close(s); /* the port is now (almost certainly) closed */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    c.server_url = url;
    c.attempts = 2;
    n = open_net(&c);
    assert_int_equal(lp_net_fetch_blob(n, sha, 100, dest, &err), LP_ERR_NETWORK);
    if (!strstr(err.msg, "gave up after 2 attempts") || !strstr(err.msg, url))
        fail_msg("message: %s", err.msg);
    free(dest);
    free(b);
    lp_net_close(n);
}

static void test_not_found(void **state)
{
    (void)state;
    char sha[65], path[128];
    sha_of("never served", 12, sha);
    blob_path(sha, path, sizeof path);
    lp_net_config c = base_config();
    lp_net *n = open_net(&c);
    char *dest = dest_of("missing.bin");
    lp_error err;
    assert_int_equal(lp_net_fetch_blob(n, sha, 12, dest, &err), LP_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, sha));
    assert_non_null(strstr(err.msg, "HTTP 404"));
    assert_int_equal(lp_test_httpd_requests(w.httpd, path), 1);
    free(dest);
    lp_net_close(n);
}

/* ---- URL policy -------------------------------------------------------------------- */

static lp_status try_open(const char *url, bool allow_http, const char *const *hosts,
                          lp_error *err)
{
    lp_net_config c = base_config();
    c.server_url = url;
    c.allow_http = allow_http;
    c.allowed_hosts = hosts;
    lp_net *n = NULL;
    lp_status st = lp_net_open(&c, &n, err);
    lp_net_close(n);
    return st;
}

static void test_policy(void **state)
{
    (void)state;
    lp_error err;
    /* refused before any connection: the host does not even resolve */
    assert_int_equal(try_open("http://updates.invalid", false, NULL, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "plain http to a non-loopback host (updates.invalid)"));
    assert_int_equal(try_open("http://127.0.0.1.updates.invalid/x", false, NULL, &err),
                     LP_ERR_INVALID_ARG);
    assert_int_equal(try_open("https://updates.invalid", false, NULL, &err), LP_OK);
    assert_int_equal(try_open("http://updates.invalid", true, NULL, &err), LP_OK);
    assert_int_equal(try_open("http://localhost:9", false, NULL, &err), LP_OK);
    assert_int_equal(try_open("http://LOCALHOST:9", false, NULL, &err), LP_OK);
    assert_int_equal(try_open("http://127.7.8.9:9", false, NULL, &err), LP_OK);
    assert_int_equal(try_open("http://[::1]:9/", false, NULL, &err), LP_OK);
    assert_int_equal(try_open("http://[::2]:9/", false, NULL, &err), LP_ERR_INVALID_ARG);
    assert_int_equal(try_open("http://128.0.0.1", false, NULL, &err), LP_ERR_INVALID_ARG);
    assert_int_equal(try_open("ftp://127.0.0.1/", true, NULL, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "only http and https"));
    assert_int_equal(try_open("file:///etc/passwd", true, NULL, &err), LP_ERR_INVALID_ARG);
    assert_int_equal(try_open("not a url", true, NULL, &err), LP_ERR_INVALID_ARG);
    const char *only[] = {"updates.example.com", NULL};
    assert_int_equal(try_open("https://evil.example.com", false, only, &err),
                     LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "host evil.example.com is not in the allowed hosts"));
    assert_int_equal(try_open("https://UPDATES.example.com/base", false, only, &err), LP_OK);
    /* the allow-list binds loopback too */
    assert_int_equal(try_open(lp_test_httpd_url(w.httpd), false, only, &err),
                     LP_ERR_INVALID_ARG);
    const char *lo[] = {"127.0.0.1", NULL};
    lp_net_config c = base_config();
    c.allowed_hosts = lo;
    lp_net *n = open_net(&c);
    char *dest = dest_of("allowed.bin");
    if (lp_net_fetch_blob(n, w.big_sha, BIG, dest, &err))
        fail_msg("fetch: %s", err.msg);
    expect_file(dest, w.big, BIG);
    assert_int_equal(lp_net_check_url(n, "http://localhost:1/", &err), LP_ERR_INVALID_ARG);

    /* redirects are checked hop by hop */
    lp_fetcher *f = lp_net_tuf_fetcher(n);
    char url[512];
    snprintf(url, sizeof url, "%s/status/302?location=http://updates.invalid/x",
             lp_test_httpd_url(w.httpd));
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(lp_fetch_to_buffer(f, url, 1000, &data, &len, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "updates.invalid"));
    lp_net_close(n);
    c.allowed_hosts = NULL;
    n = open_net(&c);
    f = lp_net_tuf_fetcher(n);
    assert_int_equal(lp_fetch_to_buffer(f, url, 1000, &data, &len, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "plain http to a non-loopback host"));
    snprintf(url, sizeof url, "%s/status/302?location=/v1/blobs/%s", lp_test_httpd_url(w.httpd),
             w.big_sha);
    if (lp_fetch_to_buffer(f, url, BIG, &data, &len, &err))
        fail_msg("redirect to loopback: %s", err.msg);
    assert_int_equal(len, BIG);
    assert_memory_equal(data, w.big, BIG);
    free(data);
    free(dest);
    lp_net_close(n);
}

/* ---- the TUF fetcher ---------------------------------------------------------------- */

static void test_tuf_fetcher(void **state)
{
    (void)state;
    char *p = lp_test_join(w.www, "meta/timestamp.json");
    assert_int_equal(lp_test_write_str(p, "{\"x\":1}"), 0);
    free(p);
    lp_test_httpd_fail(w.httpd, "/meta/timestamp.json", 503, "0", 1);
    lp_test_httpd_fail(w.httpd, "/meta/timestamp.json", 502, NULL, 1);
    lp_net_config c = base_config();
    lp_net *n = open_net(&c);
    lp_fetcher *f = lp_net_tuf_fetcher(n);
    char url[256];
    snprintf(url, sizeof url, "%s/meta/timestamp.json", lp_test_httpd_url(w.httpd));
    uint8_t *data = NULL;
    size_t len = 0;
    lp_error err;
    if (lp_fetch_to_buffer(f, url, 100, &data, &len, &err))
        fail_msg("fetch: %s", err.msg);
    assert_string_equal((char *)data, "{\"x\":1}");
    free(data);
    assert_int_equal(lp_test_httpd_requests(w.httpd, "/meta/timestamp.json"), 3);
    /* bounded as the TUF client asks */
    assert_int_equal(lp_fetch_to_buffer(f, url, 3, &data, &len, &err), LP_ERR_TOO_LARGE);
    /* 404 ends the root chain: never retried */
    snprintf(url, sizeof url, "%s/meta/2.root.json", lp_test_httpd_url(w.httpd));
    assert_int_equal(lp_fetch_to_buffer(f, url, 100, &data, &len, &err), LP_ERR_NOT_FOUND);
    assert_int_equal(lp_test_httpd_requests(w.httpd, "/meta/2.root.json"), 1);
    lp_net_close(n);
}

/* ---- across file systems ---------------------------------------------------------- */

static void test_cross_device(void **state)
{
    (void)state;
    struct stat a, b;
    if (stat("/dev/shm", &b) != 0 || stat(w.state, &a) != 0 || a.st_dev == b.st_dev ||
        access("/dev/shm", W_OK) != 0)
        skip();
    char dest[128];
    snprintf(dest, sizeof dest, "/dev/shm/lp-agentfetch-%d.bin", (int)getpid());
    unlink(dest);
    lp_net_config c = base_config();
    lp_net *n = open_net(&c);
    lp_error err;
    if (lp_net_fetch_blob(n, w.big_sha, BIG, dest, &err))
        fail_msg("fetch: %s", err.msg);
    expect_file(dest, w.big, BIG);
    struct stat sb;
    assert_int_equal(stat(dest, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char *part = part_path(w.big_sha);
    assert_int_equal(lp_file_exists(part), 0);
    free(part);
    unlink(dest);
    lp_net_close(n);
}

/* ---- parsers ---------------------------------------------------------------------- */

static void test_parsers(void **state)
{
    (void)state;
    int64_t now = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */
    assert_int_equal(lp_net_retry_after_seconds("120", now), 120);
    assert_int_equal(lp_net_retry_after_seconds(" 0 ", now), 0);
    assert_int_equal(lp_net_retry_after_seconds("99999999999999999999", now), INT32_MAX);
    assert_int_equal(lp_net_retry_after_seconds("Wed, 21 Oct 2015 07:28:30 GMT", now), 30);
    assert_int_equal(lp_net_retry_after_seconds("Wednesday, 21-Oct-15 07:29:00 GMT", now), 60);
    assert_int_equal(lp_net_retry_after_seconds("Wed Oct 21 07:28:10 2015", now), 10);
    assert_int_equal(lp_net_retry_after_seconds("Tue, 20 Oct 2015 07:28:00 GMT", now), 0);
    assert_int_equal(lp_net_retry_after_seconds("", now), -1);
    assert_int_equal(lp_net_retry_after_seconds(NULL, now), -1);
    assert_int_equal(lp_net_retry_after_seconds("-5", now), -1);
    assert_int_equal(lp_net_retry_after_seconds("1.5", now), -1);
    assert_int_equal(lp_net_retry_after_seconds("soon", now), -1);

    uint64_t a, b, t;
    assert_true(lp_net_parse_content_range("bytes 100-199/200", &a, &b, &t));
    assert_int_equal(a, 100);
    assert_int_equal(b, 199);
    assert_int_equal(t, 200);
    assert_true(lp_net_parse_content_range("bytes 0-0/*", &a, &b, &t));
    assert_true(t == UINT64_MAX);
    assert_false(lp_net_parse_content_range("bytes 100-99/200", &a, &b, &t));
    assert_false(lp_net_parse_content_range("bytes 100-200/200", &a, &b, &t));
    assert_false(lp_net_parse_content_range("bytes */200", &a, &b, &t));
    assert_false(lp_net_parse_content_range("items 0-1/2", &a, &b, &t));
    assert_false(lp_net_parse_content_range("bytes 0-1/2x", &a, &b, &t));
    assert_false(lp_net_parse_content_range("bytes -1-2/3", &a, &b, &t));
    assert_false(lp_net_parse_content_range("", &a, &b, &t));

    /* full jitter stays within [0, min(max, base * 2^(n-1))] and varies */
    lp_net_config c = base_config();
    c.backoff_base_ms = 100;
    c.backoff_max_ms = 1000;
    lp_net *n = open_net(&c);
    uint32_t lo = UINT32_MAX, hi = 0;
    for (int i = 0; i < 200; i++) {
        uint32_t v1 = lp_net_backoff_ms(n, 1), v3 = lp_net_backoff_ms(n, 3),
                 v9 = lp_net_backoff_ms(n, 9);
        assert_true(v1 <= 100);
        assert_true(v3 <= 400);
        assert_true(v9 <= 1000);
        lo = v9 < lo ? v9 : lo;
        hi = v9 > hi ? v9 : hi;
    }
    assert_true(hi - lo > 100);
    lp_net_close(n);

    assert_true(lp_net_is_sha256_hex(w.big_sha));
    assert_false(lp_net_is_sha256_hex("abc"));
    char upper[65];
    snprintf(upper, sizeof upper, "%s", w.big_sha);
    upper[0] = 'A';
    assert_false(lp_net_is_sha256_hex(upper));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_download),
        cmocka_unit_test(test_empty_blob),
        cmocka_unit_test(test_resume_within_call),
        cmocka_unit_test(test_resume_after_restart),
        cmocka_unit_test(test_short_206),
        cmocka_unit_test(test_200_starts_over),
        cmocka_unit_test(test_damaged_partial_file),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_date),
        cmocka_unit_test(test_retry_after_too_long),
        cmocka_unit_test(test_give_up),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_tuf_fetcher),
        cmocka_unit_test(test_cross_device),
        cmocka_unit_test(test_parsers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
