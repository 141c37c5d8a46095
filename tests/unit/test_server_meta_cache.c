/*
 * test_server_meta_cache.c — the in-memory cache of small metadata files
 * (server/meta_cache.h) on its own, and through a real server on loopback.
 *
 * On its own: an entry is found only for its path and the very identity it
 * was stored with (inode, size, times), entries over the size bound are
 * handed back but not kept, references outlive replacement and the cache
 * itself, and threads hammering a cache smaller than the set of paths
 * only ever get the right bytes for a path.
 *
 * Through the server (files written by hand under DATA/repos/app/metadata,
 * read back with libcurl): a repeated GET, a file replaced by rename, a
 * file rewritten in place (other size; same size later), ranges, HEAD and
 * 304 on cached, uncached-in-memory (over the cache bound) and
 * sent-from-the-descriptor (over the memory bound) files, a symbolic link
 * (404 before and after), and readers racing a writer that replaces the
 * file by rename: every body is one whole version and its ETag is the
 * sha256 of that body.
 */
#include "core/buf.h"
#include "livepush/hash.h"
#include "server/http.h"
#include "server/meta_cache.h"
#include "testutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

/* ---- the cache on its own ------------------------------------------------------ */

static uint8_t *dup_bytes(const char *s)
{
    uint8_t *p = malloc(strlen(s) + 1);
    assert_non_null(p);
    memcpy(p, s, strlen(s) + 1);
    return p;
}

static struct stat stat_of(const char *path)
{
    struct stat sb;
    assert_int_equal(lstat(path, &sb), 0);
    return sb;
}

static void test_identity(void **state)
{
    (void)state;
    char *dir = lp_test_tmpdir("metacache");
    assert_non_null(dir);
    char *a = lp_test_join(dir, "a.json"), *b = lp_test_join(dir, "b.json");
    assert_int_equal(lp_test_write_str(a, "version one"), 0);
    assert_int_equal(lp_test_write_str(b, "other"), 0);
    lp_meta_cache *c = NULL;
    assert_int_equal(lp_meta_cache_new(&c, 16, 1024, NULL), LP_OK);

    struct stat sa = stat_of(a);
    assert_null(lp_meta_cache_get(c, a, &sa));
    lp_meta_entry *e = lp_meta_cache_put(c, a, &sa, dup_bytes("version one"), 11, "\"t1\"");
    assert_non_null(e);
    lp_meta_entry_release(e);

    e = lp_meta_cache_get(c, a, &sa);
    assert_non_null(e);
    assert_int_equal(e->len, 11);
    assert_memory_equal(e->data, "version one", 11);
    assert_string_equal(e->etag, "\"t1\"");
    lp_meta_entry_release(e);

    /* another path with the same identity is not this entry */
    assert_null(lp_meta_cache_get(c, b, &sa));
    /* each part of the identity counts */
    struct stat x = sa;
    x.st_ino++;
    assert_null(lp_meta_cache_get(c, a, &x));
    x = sa;
    x.st_size++;
    assert_null(lp_meta_cache_get(c, a, &x));
    x = sa;
    x.st_mtim.tv_nsec = (x.st_mtim.tv_nsec + 1) % 1000000000L;
    assert_null(lp_meta_cache_get(c, a, &x));
    x = sa;
    x.st_ctim.tv_sec++;
    assert_null(lp_meta_cache_get(c, a, &x));
    x = sa;
    x.st_dev++;
    assert_null(lp_meta_cache_get(c, a, &x));

    /* a new version by rename: a new inode, so a miss */
    assert_int_equal(lp_test_write_str(a, "version two"), 0);
    struct stat sa2 = stat_of(a);
    assert_null(lp_meta_cache_get(c, a, &sa2));

    lp_meta_cache_free(c);
    lp_test_rmtree(dir);
    free(a);
    free(b);
    free(dir);
}

static void test_bounds_and_references(void **state)
{
    (void)state;
    lp_meta_cache *c = NULL;
    assert_int_equal(lp_meta_cache_new(&c, 0, 8, NULL), LP_ERR_INVALID_ARG);
    assert_null(c);
    assert_int_equal(lp_meta_cache_new(&c, 1, 8, NULL), LP_OK);
    assert_int_equal(lp_meta_cache_max_bytes(c), 8);
    struct stat sb;
    memset(&sb, 0, sizeof sb);
    sb.st_ino = 1;

    /* over the bound: handed back, not kept */
    lp_meta_entry *big = lp_meta_cache_put(c, "/p", &sb, dup_bytes("123456789"), 9, "\"b\"");
    assert_non_null(big);
    assert_memory_equal(big->data, "123456789", 9);
    assert_null(lp_meta_cache_get(c, "/p", &sb));
    lp_meta_entry_release(big);

    /* at the bound: kept */
    lp_meta_entry *e1 = lp_meta_cache_put(c, "/p", &sb, dup_bytes("12345678"), 8, "\"e1\"");
    lp_meta_entry *held = lp_meta_cache_get(c, "/p", &sb);
    assert_ptr_equal(held, e1);
    lp_meta_entry_release(e1);

    /* one slot: another path replaces the entry, which the holder keeps */
    lp_meta_entry *e2 = lp_meta_cache_put(c, "/q", &sb, dup_bytes("abc"), 3, "\"e2\"");
    assert_null(lp_meta_cache_get(c, "/p", &sb));
    assert_memory_equal(held->data, "12345678", 8);
    lp_meta_entry *again = lp_meta_cache_get(c, "/q", &sb);
    assert_ptr_equal(again, e2);
    lp_meta_entry_release(again);

    /* the cache goes; references held stay valid */
    lp_meta_cache_free(c);
    assert_memory_equal(held->data, "12345678", 8);
    assert_string_equal(e2->etag, "\"e2\"");
    lp_meta_entry_release(held);
    lp_meta_entry_release(e2);
    lp_meta_entry_release(NULL);
    lp_meta_cache_free(NULL);
}

#define NPATHS 8
#define NTHREADS 4

typedef struct hammer {
    lp_meta_cache *c;
    unsigned seed;
    atomic_int bad;
    atomic_int hits;
} hammer;

/* Content of path i at version v: "path-<i>-<v>", identity ino = i, size
 * = the length, mtime = v. */
static void *hammer_thread(void *arg)
{
    hammer *h = arg;
    unsigned seed = h->seed;
    for (int n = 0; n < 20000; n++) {
        seed = seed * 1103515245u + 12345u;
        unsigned i = (seed >> 8) % NPATHS, v = (seed >> 16) % 3;
        char path[32], text[32];
        snprintf(path, sizeof path, "/m/%u", i);
        int len = snprintf(text, sizeof text, "path-%u-%u", i, v);
        struct stat sb;
        memset(&sb, 0, sizeof sb);
        sb.st_ino = i + 1;
        sb.st_size = len;
        sb.st_mtim.tv_sec = v;
        lp_meta_entry *e = lp_meta_cache_get(h->c, path, &sb);
        if (e) {
            atomic_fetch_add(&h->hits, 1);
        } else {
            uint8_t *data = dup_bytes(text);
            e = lp_meta_cache_put(h->c, path, &sb, data, (size_t)len, text);
        }
        if (!e || e->len != (size_t)len || memcmp(e->data, text, (size_t)len) ||
            strcmp(e->etag, text))
            atomic_fetch_add(&h->bad, 1);
        lp_meta_entry_release(e);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    hammer h = {.bad = 0, .hits = 0};
    assert_int_equal(lp_meta_cache_new(&h.c, 3, 64, NULL), LP_OK); /* fewer slots than paths */
    pthread_t t[NTHREADS];
    hammer each[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        each[i].c = h.c;
        each[i].seed = 17u + (unsigned)i * 7919u;
        atomic_init(&each[i].bad, 0);
        atomic_init(&each[i].hits, 0);
        assert_int_equal(pthread_create(&t[i], NULL, hammer_thread, &each[i]), 0);
    }
    int bad = 0, hits = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(t[i], NULL);
        bad += atomic_load(&each[i].bad);
        hits += atomic_load(&each[i].hits);
    }
    lp_meta_cache_free(h.c);
    assert_int_equal(bad, 0);
    assert_true(hits > 0);
}

/* ---- through the server ------------------------------------------------------- */

#define MID_SIZE (300u * 1024)       /* over the cache bound, read into memory */
#define LARGE_SIZE (2u * 1024 * 1024) /* over the memory bound, sent from the file */

typedef struct world {
    char *dir, *meta; /* data folder; DATA/repos/app/metadata */
    lp_http_server *srv;
    char base[128];
} world;

typedef struct resp {
    long status;
    lp_buf body;
    char etag[128], content_range[128], clen[32];
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
    while (vl && *v == ' ')
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
        vl--;
    snprintf(out, cap, "%.*s", (int)vl, v);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    resp *r = ud;
    copy_header(p, size * n, "ETag", r->etag, sizeof r->etag);
    copy_header(p, size * n, "Content-Range", r->content_range, sizeof r->content_range);
    copy_header(p, size * n, "Content-Length", r->clen, sizeof r->clen);
    return size * n;
}

/* GET (or HEAD) base + /v1/apps/app/metadata/<file> with up to one extra
 * header line.  No cmocka asserts: reader threads use it too. */
static resp fetch(const world *w, const char *file, const char *hdr, bool head)
{
    resp r;
    memset(&r, 0, sizeof r);
    lp_buf_init(&r.body, 0);
    char url[512];
    snprintf(url, sizeof url, "%s/v1/apps/app/metadata/%s", w->base, file);
    CURL *c = curl_easy_init();
    if (!c)
        return r;
    struct curl_slist *list = hdr ? curl_slist_append(NULL, hdr) : NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_NOBODY, head ? 1L : 0L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
    return r;
}

/* "\"<sha256 hex>\"" of data. */
static void sha_etag(const void *data, size_t len, char out[70])
{
    uint8_t md[LP_HASH_MAX_LEN];
    char hex[2 * LP_HASH_MAX_LEN + 1];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, data, len, md, NULL), LP_OK);
    lp_hex_encode(md, 32, hex);
    snprintf(out, 70, "\"%.64s\"", hex);
}

/* Expects a 200 with exactly `want` (len bytes) and its sha256 ETag. */
static void expect_body(const world *w, const char *file, const void *want, size_t len)
{
    resp r = fetch(w, file, NULL, false);
    if (r.status != 200)
        fail_msg("GET %s: %ld", file, r.status);
    assert_int_equal(r.body.len, len);
    assert_memory_equal(r.body.data, want, len);
    char etag[70];
    sha_etag(want, len, etag);
    assert_string_equal(r.etag, etag);
    lp_buf_free(&r.body);
}

static void write_in_place(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static uint8_t *pattern(size_t len, unsigned salt)
{
    uint8_t *p = malloc(len);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)('a' + (i * 31 + i / 977 + salt) % 26);
    return p;
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->dir = lp_test_tmpdir("metacache-http");
    assert_non_null(w->dir);
    w->meta = lp_test_join(w->dir, "repos/app/metadata");
    char *p = lp_test_join(w->meta, "timestamp.json");
    assert_int_equal(lp_test_write_str(p, "{\"v\":1}"), 0);
    free(p);
    lp_http_server_options opt = {.listen = "127.0.0.1:0", .threads = 4};
    lp_error err;
    if (lp_http_server_new(&w->srv, &opt, &err) ||
        lp_http_add_repo_routes(w->srv, w->dir, &err) || lp_http_server_start(w->srv, &err))
        fail_msg("server: %s", err.msg);
    snprintf(w->base, sizeof w->base, "%s", lp_http_server_url(w->srv));
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    lp_http_server_free(w->srv);
    lp_test_rmtree(w->dir);
    free(w->meta);
    free(w->dir);
    free(w);
    return 0;
}

static void test_versions_through_server(void **state)
{
    world *w = *state;
    char *ts = lp_test_join(w->meta, "timestamp.json");
    expect_body(w, "timestamp.json", "{\"v\":1}", 7);
    expect_body(w, "timestamp.json", "{\"v\":1}", 7); /* from the cache */

    /* replaced by rename, as the repository writer does */
    assert_int_equal(lp_test_write_str(ts, "{\"v\":2,\"x\":0}"), 0);
    expect_body(w, "timestamp.json", "{\"v\":2,\"x\":0}", 13);

    /* rewritten in place with another size */
    write_in_place(ts, "{\"v\":3}", 7);
    expect_body(w, "timestamp.json", "{\"v\":3}", 7);

    /* rewritten in place with the same size, a while later (the times
     * differ) */
    struct timespec pause = {0, 30 * 1000 * 1000};
    nanosleep(&pause, NULL);
    write_in_place(ts, "{\"v\":4}", 7);
    expect_body(w, "timestamp.json", "{\"v\":4}", 7);
    expect_body(w, "timestamp.json", "{\"v\":4}", 7);

    /* a symbolic link is not served, before or after its target was */
    char *link = lp_test_join(w->meta, "link.json");
    assert_int_equal(symlink(ts, link), 0);
    for (int i = 0; i < 2; i++) {
        resp r = fetch(w, "link.json", NULL, false);
        assert_int_equal(r.status, 404);
        lp_buf_free(&r.body);
    }
    /* a missing file is a 404 naming the file; a missing app names the app */
    resp r = fetch(w, "7.root.json", NULL, false);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr((char *)r.body.data, "no metadata file '7.root.json'"));
    lp_buf_free(&r.body);
    free(link);
    free(ts);
}

/* Ranges, HEAD and 304 on a file of `len` bytes. */
static void check_file_answers(world *w, const char *file, const uint8_t *want, size_t len)
{
    for (int pass = 0; pass < 2; pass++) { /* the second may come from the cache */
        expect_body(w, file, want, len);
        char etag[70], hdr[128], cr[96];
        sha_etag(want, len, etag);

        resp r = fetch(w, file, "Range: bytes=3-9", false);
        assert_int_equal(r.status, 206);
        assert_int_equal(r.body.len, 7);
        assert_memory_equal(r.body.data, want + 3, 7);
        snprintf(cr, sizeof cr, "bytes 3-9/%zu", len);
        assert_string_equal(r.content_range, cr);
        lp_buf_free(&r.body);

        r = fetch(w, file, "Range: bytes=-4", false);
        assert_int_equal(r.status, 206);
        assert_int_equal(r.body.len, 4);
        assert_memory_equal(r.body.data, want + len - 4, 4);
        lp_buf_free(&r.body);

        snprintf(hdr, sizeof hdr, "Range: bytes=%zu-", len);
        r = fetch(w, file, hdr, false);
        assert_int_equal(r.status, 416);
        lp_buf_free(&r.body);

        r = fetch(w, file, NULL, true);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body.len, 0);
        assert_int_equal(strtoull(r.clen, NULL, 10), len);
        assert_string_equal(r.etag, etag);
        lp_buf_free(&r.body);

        snprintf(hdr, sizeof hdr, "If-None-Match: %s", etag);
        r = fetch(w, file, hdr, false);
        assert_int_equal(r.status, 304);
        assert_int_equal(r.body.len, 0);
        lp_buf_free(&r.body);
    }
}

static void test_sizes_through_server(void **state)
{
    world *w = *state;
    static const char small[] = "{\"signed\":{\"_type\":\"timestamp\",\"version\":12}}";
    char *p = lp_test_join(w->meta, "timestamp.json");
    assert_int_equal(lp_test_write_str(p, small), 0);
    free(p);
    check_file_answers(w, "timestamp.json", (const uint8_t *)small, sizeof small - 1);
    uint8_t *mid = pattern(MID_SIZE, 1), *large = pattern(LARGE_SIZE, 2);
    p = lp_test_join(w->meta, "3.targets.json");
    assert_int_equal(lp_test_write_file(p, mid, MID_SIZE), 0);
    free(p);
    p = lp_test_join(w->meta, "4.targets.json");
    assert_int_equal(lp_test_write_file(p, large, LARGE_SIZE), 0);
    free(p);
    check_file_answers(w, "3.targets.json", mid, MID_SIZE);
    check_file_answers(w, "4.targets.json", large, LARGE_SIZE);
    free(mid);
    free(large);
}

#define VERSIONS 40
#define READERS 3

typedef struct race {
    world *w;
    atomic_bool stop;
    atomic_int bad, seen;
    char detail[256];
} race;

/* Version v of the racing file: a distinct size and content per version. */
static size_t version_text(int v, char *out, size_t cap)
{
    int n = snprintf(out, cap, "{\"version\":%d,\"pad\":\"%0*d\"}", v, 10 + v % 7 * 9, v);
    return (size_t)n;
}

static void *reader(void *arg)
{
    race *rc = arg;
    while (!atomic_load(&rc->stop)) {
        resp r = fetch(rc->w, "race.json", NULL, false);
        bool ok = r.status == 200 && r.body.len > 0;
        if (ok) {
            /* the body is one whole version, and the ETag is its hash */
            int v = -1;
            char want[128], etag[70];
            ok = sscanf((const char *)r.body.data, "{\"version\":%d", &v) == 1 && v >= 0 &&
                 v < VERSIONS && version_text(v, want, sizeof want) == r.body.len &&
                 !memcmp(want, r.body.data, r.body.len);
            if (ok) {
                uint8_t md[LP_HASH_MAX_LEN];
                char hex[2 * LP_HASH_MAX_LEN + 1];
                ok = lp_hash_buf(LP_HASH_SHA256, r.body.data, r.body.len, md, NULL) == LP_OK;
                lp_hex_encode(md, 32, hex);
                snprintf(etag, sizeof etag, "\"%.64s\"", hex);
                ok = ok && !strcmp(etag, r.etag);
            }
        }
        if (!ok && atomic_fetch_add(&rc->bad, 1) == 0)
            snprintf(rc->detail, sizeof rc->detail, "status %ld, %zu bytes, etag %s", r.status,
                     r.body.len, r.etag);
        atomic_fetch_add(&rc->seen, 1);
        lp_buf_free(&r.body);
    }
    return NULL;
}

static void test_readers_race_writer(void **state)
{
    world *w = *state;
    race rc = {.w = w};
    atomic_init(&rc.stop, false);
    atomic_init(&rc.bad, 0);
    atomic_init(&rc.seen, 0);
    char *p = lp_test_join(w->meta, "race.json");
    char text[128];
    size_t n = version_text(0, text, sizeof text);
    assert_int_equal(lp_test_write_file(p, text, n), 0);
    pthread_t t[READERS];
    for (int i = 0; i < READERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, reader, &rc), 0);
    for (int v = 1; v < VERSIONS; v++) {
        n = version_text(v, text, sizeof text);
        assert_int_equal(lp_test_write_file(p, text, n), 0);
        struct timespec pause = {0, 2 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    atomic_store(&rc.stop, true);
    for (int i = 0; i < READERS; i++)
        pthread_join(t[i], NULL);
    if (atomic_load(&rc.bad))
        fail_msg("%d of %d answers were not one whole version: %s", atomic_load(&rc.bad),
                 atomic_load(&rc.seen), rc.detail);
    assert_true(atomic_load(&rc.seen) > 0);
    /* after the last write, the last version */
    n = version_text(VERSIONS - 1, text, sizeof text);
    expect_body(w, "race.json", text, n);
    free(p);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_bounds_and_references),
        cmocka_unit_test(test_threads),
        cmocka_unit_test_setup_teardown(test_versions_through_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sizes_through_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readers_race_writer, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
