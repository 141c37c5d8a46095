/*
 * test_api_deltas.c — deltas between releases, end to end inside the real
 * server (tests/support/apitest.h: service, real SQLite file, HTTP on
 * loopback, the delta worker as `serve` starts it).
 *
 * Two releases are published as real tar.gz bundles: an x86-64 executable
 * copied from /usr/bin and patched, text files changed in place, a file
 * moved to another folder and changed (base found by its name), a file
 * renamed and changed (base found by its extension and size), a file moved
 * unchanged and one unchanged (content the device has: no delta), random
 * content replaced by other random content (a delta larger than the ratio:
 * not kept, not listed), a file under the minimum size, and a new file with
 * nothing like it.  The tests wait for the worker by polling the index and
 * check exactly which pairs it lists with which bases, fetch deltas over
 * HTTP (whole, by Range, HEAD), apply them with lp_delta_apply_buf to the
 * first release's bytes and get the second's; check the release's "deltas"
 * summary, the 404s, that K limits the pairs, that a publish answers before
 * any delta is made, and that a pair interrupted mid-way resumes after a
 * restart of the server.
 */
#include "apitest.h"
#include "livepush/delta.h"
#include "server/config.h"
#include "livepush/hash.h"
#include "testutil.h"

#include <archive.h>
#include <archive_entry.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#define WAIT_S 120

/* ---- content --------------------------------------------------------------- */

typedef struct blob {
    const char *path;
    uint8_t *data;
    size_t len;
} blob;

typedef struct tree {
    blob f[16];
    size_t n;
} tree;

static void tree_add(tree *t, const char *path, const void *data, size_t len)
{
    assert_true(t->n < 16);
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    t->f[t->n++] = (blob){path, copy, len};
}

static void tree_free(tree *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->f[i].data);
    t->n = 0;
}

static const blob *tree_get(const tree *t, const char *path)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->f[i].path, path))
            return &t->f[i];
    fail_msg("no file %s in the test tree", path);
    return NULL;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint8_t *random_bytes(uint64_t seed, size_t n)
{
    uint8_t *b = malloc(n);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rng_next(&seed);
    return b;
}

/* Text of `lines` lines; every line whose number is a multiple of `every`
 * (0: none) reads differently, so two versions differ in a few places. */
static char *text(const char *topic, size_t lines, size_t every, size_t *len)
{
    size_t cap = lines * 96 + 1;
    char *t = malloc(cap);
    assert_non_null(t);
    size_t n = 0;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < lines; i++) {
        unsigned v = (unsigned)(rng_next(&seed) % 100000);
        bool changed = every && i % every == 0;
        n += (size_t)snprintf(t + n, cap - n, "%s %zu: %s value %u, the %s fox\n", topic, i,
                              changed ? "CHANGED" : "stable", v, changed ? "red" : "brown");
    }
    *len = n;
    return t;
}

static void add_text(tree *t, const char *path, const char *topic, size_t lines, size_t every)
{
    size_t len;
    char *s = text(topic, lines, every, &len);
    tree_add(t, path, s, len);
    free(s);
}

/* v1 and v2 of the app (see the top of this file). */
static void make_trees(tree *v1, tree *v2)
{
    size_t elf_len = 0;
    uint8_t *elf = lp_test_read_file("/usr/bin/sort", &elf_len);
    assert_non_null(elf);
    assert_true(elf_len > 16384);
    tree_add(v1, "bin/tool", elf, elf_len);
    /* Patch a few places of the executable, as a small code change does. */
    for (size_t k = 1; k <= 6; k++)
        for (size_t i = 0; i < 24; i++)
            elf[elf_len * k / 7 + i] ^= (uint8_t)(0x5a + i);
    tree_add(v2, "bin/tool", elf, elf_len);
    free(elf);

    add_text(v1, "notes.txt", "note", 400, 0);
    add_text(v2, "notes.txt", "note", 400, 37);
    add_text(v1, "same.txt", "same", 60, 0);
    add_text(v2, "same.txt", "same", 60, 0);
    add_text(v1, "old/name.md", "name", 200, 0);
    add_text(v2, "new/name.md", "name", 200, 29);
    add_text(v1, "lib/alpha.js", "alpha", 150, 0);
    add_text(v2, "lib/beta.js", "alpha", 150, 41);
    add_text(v1, "docs/guide.txt", "guide", 80, 0);
    add_text(v2, "manual/guide-2.txt", "guide", 80, 0);
    uint8_t *r1 = random_bytes(1, 32768), *r2 = random_bytes(2, 32768), *r3 = random_bytes(3, 4096);
    tree_add(v1, "big.raw", r1, 32768);
    tree_add(v2, "big.raw", r2, 32768);
    tree_add(v2, "fresh.bin", r3, 4096);
    free(r1);
    free(r2);
    free(r3);
    add_text(v1, "small.txt", "small", 5, 0);
    add_text(v2, "small.txt", "small", 5, 2);
}

/* A tar.gz of the tree in a new buffer. */
static uint8_t *make_tgz(const tree *t, size_t *len)
{
    size_t cap = 1u << 20;
    for (size_t i = 0; i < t->n; i++)
        cap += t->f[i].len + 1024;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_memory(a, buf, cap, len), ARCHIVE_OK);
    for (size_t i = 0; i < t->n; i++) {
        struct archive_entry *ae = archive_entry_new();
        archive_entry_set_pathname(ae, t->f[i].path);
        archive_entry_set_filetype(ae, AE_IFREG);
        archive_entry_set_perm(ae, 0644);
        archive_entry_set_size(ae, (la_int64_t)t->f[i].len);
        assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
        assert_int_equal(archive_write_data(a, t->f[i].data, t->f[i].len),
                         (la_ssize_t)t->f[i].len);
        archive_entry_free(ae);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    return buf;
}

static void sha_hex(const blob *b, char out[65])
{
    uint8_t d[LP_HASH_MAX_LEN];
    lp_error err;
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, b->data, b->len, d, &err), LP_OK);
    lp_hex_encode(d, 32, out);
    out[64] = '\0';
}

/* ---- server ----------------------------------------------------------------- */

static void make_app(lp_apitest *t, const char *name)
{
    char req[128];
    snprintf(req, sizeof req, "{\"name\":\"%s\"}", name);
    json_t *j = lp_apitest_json(t, "POST", "/api/v1/apps", t->admin, req, 201);
    assert_non_null(j);
    json_decref(j);
}

/* Publishes the tree as `version`; returns how long the publish request
 * took, in seconds. */
static double publish(lp_apitest *t, const char *app, const tree *tr, const char *version)
{
    size_t len = 0;
    uint8_t *tgz = make_tgz(tr, &len);
    char id[64], path[128], req[256];
    assert_int_equal(lp_apitest_upload(t, t->admin, app, tgz, len, len, 1, id), 0);
    free(tgz);
    snprintf(path, sizeof path, "/api/v1/apps/%s/releases", app);
    snprintf(req, sizeof req, "{\"upload\":\"%s\",\"version\":\"%s\"}", id, version);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    json_t *j = lp_apitest_json(t, "POST", path, t->admin, req, 201);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_non_null(j);
    json_decref(j);
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

/* GET of the index (from, to) of `app`: its JSON when 200, NULL when
 * `expect` (404) came. */
static json_t *get_index(lp_apitest *t, const char *app, int from, int to, long expect)
{
    char path[160];
    snprintf(path, sizeof path, "/v1/apps/%s/deltas/%d/%d.json", app, from, to);
    return lp_apitest_json(t, "GET", path, NULL, NULL, expect);
}

static void expect_404(lp_apitest *t, const char *path)
{
    lp_apiresp r;
    assert_int_equal(lp_apitest_call(t, "GET", path, NULL, NULL, NULL, NULL, 0, &r), 0);
    if (r.status != 404 || strcmp(lp_apiresp_code(&r), "not_found"))
        fail_msg("GET %s: HTTP %ld %s (expected 404 not_found)", path, r.status,
                 r.body ? r.body : "");
    lp_apiresp_free(&r);
}

/* Polls the index until it says complete (WAIT_S at most). */
static json_t *wait_complete(lp_apitest *t, const char *app, int from, int to)
{
    for (int i = 0; i < WAIT_S * 50; i++) {
        json_t *j = get_index(t, app, from, to, 200);
        assert_non_null(j);
        if (json_is_true(json_object_get(j, "complete")))
            return j;
        json_decref(j);
        usleep(20000);
    }
    fail_msg("deltas %d -> %d of %s not complete after %d s", from, to, app, WAIT_S);
    return NULL;
}

/* One expected entry: the result file of v2 and the base file of v1. */
typedef struct want {
    const char *result, *base;
} want;

static const want expected[] = {
    {"bin/tool", "bin/tool"},         /* same path */
    {"notes.txt", "notes.txt"},       /* same path */
    {"new/name.md", "old/name.md"},   /* same base name elsewhere */
    {"lib/beta.js", "lib/alpha.js"},  /* same extension, closest size */
};
#define NWANT (sizeof expected / sizeof expected[0])

/* Checks that the index lists exactly the expected pairs (sorted by
 * result), each with a size below the file's. */
static void check_index(const json_t *idx, const tree *v1, const tree *v2, int from, int to)
{
    assert_int_equal(json_integer_value(json_object_get(idx, "from")), from);
    assert_int_equal(json_integer_value(json_object_get(idx, "to")), to);
    const json_t *arr = json_object_get(idx, "deltas");
    assert_true(json_is_array(arr));
    if (json_array_size(arr) != NWANT) {
        char *dump = json_dumps(idx, 0);
        fail_msg("index lists %zu deltas, expected %zu: %s", json_array_size(arr),
                 (size_t)NWANT, dump);
    }
    for (size_t k = 0; k < NWANT; k++) {
        char r[65], b[65];
        sha_hex(tree_get(v2, expected[k].result), r);
        sha_hex(tree_get(v1, expected[k].base), b);
        bool seen = false;
        size_t i;
        const json_t *e;
        json_array_foreach(arr, i, e) {
            if (strcmp(json_string_value(json_object_get(e, "result")), r))
                continue;
            seen = true;
            if (strcmp(json_string_value(json_object_get(e, "base")), b))
                fail_msg("%s: base is not %s", expected[k].result, expected[k].base);
            json_int_t size = json_integer_value(json_object_get(e, "size"));
            assert_true(size > 0);
            assert_true((double)size <= 0.6 * (double)tree_get(v2, expected[k].result)->len);
        }
        if (!seen)
            fail_msg("the index does not list %s", expected[k].result);
    }
    for (size_t i = 1; i < json_array_size(arr); i++)
        assert_true(strcmp(json_string_value(json_object_get(json_array_get(arr, i - 1),
                                                               "result")),
                           json_string_value(json_object_get(json_array_get(arr, i),
                                                             "result"))) < 0);
}

/* Fetches the delta of `result` (from `base`) over HTTP, whole and by
 * Range, applies it to v1's bytes and compares with v2's. */
static void fetch_and_apply(lp_apitest *t, const blob *base, const blob *result)
{
    char b[65], r[65], path[200];
    sha_hex(base, b);
    sha_hex(result, r);
    snprintf(path, sizeof path, "/v1/deltas/%s/%s", b, r);
    lp_apiresp whole, part, head;
    assert_int_equal(lp_apitest_call(t, "GET", path, NULL, NULL, NULL, NULL, 0, &whole), 0);
    assert_int_equal(whole.status, 200);
    assert_true(whole.len > LP_DELTA_HEADER_SIZE);
    char etag[160];
    snprintf(etag, sizeof etag, "\"%s-%s\"", b, r);
    assert_string_equal(whole.etag, etag);
    assert_string_equal(whole.ctype, "application/octet-stream");

    uint8_t *out = NULL;
    size_t out_len = 0;
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_delta_apply_buf(base->data, base->len, (const uint8_t *)whole.body,
                                      whole.len, 1u << 30, &out, &out_len, &err);
    if (st)
        fail_msg("applying the delta of %s: %s", result->path, err.msg);
    assert_int_equal(out_len, result->len);
    assert_memory_equal(out, result->data, result->len);
    free(out);

    /* The same bytes by Range, the way a resumed download asks. */
    static const char *const range[] = {"Range: bytes=100-", NULL};
    assert_int_equal(lp_apitest_call(t, "GET", path, NULL, NULL, range, NULL, 0, &part), 0);
    assert_int_equal(part.status, 206);
    assert_int_equal(part.len, whole.len - 100);
    assert_memory_equal(part.body, whole.body + 100, part.len);
    char cr[96];
    snprintf(cr, sizeof cr, "bytes 100-%zu/%zu", whole.len - 1, whole.len);
    assert_string_equal(part.content_range, cr);

    assert_int_equal(lp_apitest_call(t, "HEAD", path, NULL, NULL, NULL, NULL, 0, &head), 0);
    assert_int_equal(head.status, 200);
    assert_int_equal(head.len, 0);
    lp_apiresp_free(&whole);
    lp_apiresp_free(&part);
    lp_apiresp_free(&head);
}

/* The "deltas" object of release `version`. */
static json_t *summary(lp_apitest *t, const char *app, const char *version)
{
    char path[160];
    snprintf(path, sizeof path, "/api/v1/apps/%s/releases/%s", app, version);
    json_t *j = lp_apitest_json(t, "GET", path, t->admin, NULL, 200);
    assert_non_null(j);
    json_t *rel = json_object_get(j, "release");
    json_t *d = json_object_get(rel ? rel : j, "deltas");
    assert_true(json_is_object(d));
    json_incref(d);
    json_decref(j);
    return d;
}

static json_int_t field(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static lp_apitest_opts worker_opts(unsigned k)
{
    return (lp_apitest_opts){.deltas = {.releases = k, .min_size = 1024, .max_ratio = 0.6},
                             .delta_worker = true};
}

/* ---- tests ------------------------------------------------------------------ */

static void test_publish_and_fetch(void **state)
{
    (void)state;
    lp_apitest_opts o = worker_opts(3);
    lp_apitest *t = lp_apitest_start_with(&o);
    assert_non_null(t);
    tree v1 = {0}, v2 = {0};
    make_trees(&v1, &v2);
    make_app(t, "shop");
    publish(t, "shop", &v1, "1.0");
    /* The first release has nothing to be a delta from. */
    expect_404(t, "/v1/apps/shop/deltas/1/1.json");
    double took = publish(t, "shop", &v2, "2.0");

    /* The publish answered before the worker made the deltas (the
     * executable alone takes it far longer than an index request). */
    json_t *early = get_index(t, "shop", 1, 2, 200);
    assert_non_null(early);
    assert_true(json_is_false(json_object_get(early, "complete")));
    json_decref(early);

    json_t *idx = wait_complete(t, "shop", 1, 2);
    check_index(idx, &v1, &v2, 1, 2);
    json_decref(idx);
    print_message("publish answered in %.3f s\n", took);

    for (size_t k = 0; k < NWANT; k++)
        fetch_and_apply(t, tree_get(&v1, expected[k].base), tree_get(&v2, expected[k].result));

    /* Above the ratio: made, not kept, not listed, not served. */
    char b[65], r[65], path[4400];
    sha_hex(tree_get(&v1, "big.raw"), b);
    sha_hex(tree_get(&v2, "big.raw"), r);
    snprintf(path, sizeof path, "/v1/deltas/%s/%s", b, r);
    expect_404(t, path);
    snprintf(path, sizeof path, "%s/deltas/%s/%s", t->dir, b, r);
    assert_false(lp_test_read_file(path, NULL) != NULL);
    /* Kept ones are where the contract says. */
    sha_hex(tree_get(&v1, "bin/tool"), b);
    sha_hex(tree_get(&v2, "bin/tool"), r);
    snprintf(path, sizeof path, "%s/deltas/%s/%s", t->dir, b, r);
    size_t dlen = 0;
    uint8_t *d = lp_test_read_file(path, &dlen);
    assert_non_null(d);
    lp_delta_header h;
    lp_error err;
    assert_int_equal(lp_delta_read_header(d, dlen, dlen, &h, &err), LP_OK);
    assert_int_equal(h.new_size, tree_get(&v2, "bin/tool")->len);
    free(d);

    json_t *sum = summary(t, "shop", "2.0");
    assert_int_equal(field(sum, "made"), NWANT);
    assert_int_equal(field(sum, "too_large"), 1);
    assert_int_equal(field(sum, "failed"), 0);
    assert_int_equal(field(sum, "pending"), 0);
    assert_true(field(sum, "bytes") > 0);
    json_decref(sum);
    sum = summary(t, "shop", "1.0");
    assert_int_equal(field(sum, "made"), 0);
    assert_int_equal(field(sum, "pending"), 0);
    json_decref(sum);

    /* What was not planned, or does not exist. */
    expect_404(t, "/v1/apps/shop/deltas/2/1.json");
    expect_404(t, "/v1/apps/shop/deltas/1/3.json");
    expect_404(t, "/v1/apps/shop/deltas/1/2.txt");
    expect_404(t, "/v1/apps/shop/deltas/x/2.json");
    expect_404(t, "/v1/apps/shop/deltas/01/2.json");
    expect_404(t, "/v1/apps/nosuchapp/deltas/1/2.json");
    expect_404(t, "/v1/deltas/0000000000000000000000000000000000000000000000000000000000000000/"
                  "1111111111111111111111111111111111111111111111111111111111111111");
    lp_apiresp bad;
    assert_int_equal(lp_apitest_call(t, "GET", "/v1/deltas/abc/def", NULL, NULL, NULL, NULL, 0,
                                     &bad),
                     0);
    assert_int_equal(bad.status, 400);
    lp_apiresp_free(&bad);
    tree_free(&v1);
    tree_free(&v2);
    lp_apitest_stop(t);
}

/* K = 1: a release gets deltas from the one before it on its channel only. */
static void test_releases_limit(void **state)
{
    (void)state;
    lp_apitest_opts o = worker_opts(1);
    lp_apitest *t = lp_apitest_start_with(&o);
    assert_non_null(t);
    tree v1 = {0}, v2 = {0}, v3 = {0};
    add_text(&v1, "a.txt", "a", 300, 0);
    add_text(&v2, "a.txt", "a", 300, 17);
    add_text(&v3, "a.txt", "a", 300, 13);
    make_app(t, "k1");
    publish(t, "k1", &v1, "1");
    publish(t, "k1", &v2, "2");
    publish(t, "k1", &v3, "3");
    json_t *j = wait_complete(t, "k1", 2, 3);
    assert_int_equal(json_array_size(json_object_get(j, "deltas")), 1);
    json_decref(j);
    j = wait_complete(t, "k1", 1, 2);
    assert_int_equal(json_array_size(json_object_get(j, "deltas")), 1);
    json_decref(j);
    expect_404(t, "/v1/apps/k1/deltas/1/3.json");
    tree_free(&v1);
    tree_free(&v2);
    tree_free(&v3);
    lp_apitest_stop(t);

    /* K = 0: nothing is planned at all. */
    o = worker_opts(0);
    t = lp_apitest_start_with(&o);
    assert_non_null(t);
    add_text(&v1, "a.txt", "a", 300, 0);
    add_text(&v2, "a.txt", "a", 300, 17);
    make_app(t, "k0");
    publish(t, "k0", &v1, "1");
    publish(t, "k0", &v2, "2");
    expect_404(t, "/v1/apps/k0/deltas/1/2.json");
    json_t *sum = summary(t, "k0", "2");
    assert_int_equal(field(sum, "pending"), 0);
    assert_int_equal(field(sum, "made"), 0);
    json_decref(sum);
    tree_free(&v1);
    tree_free(&v2);
    lp_apitest_stop(t);
}

static bool stop_at_second(void *ctx)
{
    int *calls = ctx;
    return ++*calls >= 2;
}

/* The job is in the database: published with no worker running, then
 * interrupted after one file, it is finished by the worker after a
 * restart. */
static void test_resume_after_restart(void **state)
{
    (void)state;
    lp_apitest_opts o = worker_opts(3);
    o.delta_worker = false;
    lp_apitest *t = lp_apitest_start_with(&o);
    assert_non_null(t);
    tree v1 = {0}, v2 = {0};
    make_trees(&v1, &v2);
    make_app(t, "svc");
    publish(t, "svc", &v1, "1.0");
    publish(t, "svc", &v2, "2.0");

    /* Right after the publish: planned, nothing made. */
    json_t *idx = get_index(t, "svc", 1, 2, 200);
    assert_non_null(idx);
    assert_true(json_is_false(json_object_get(idx, "complete")));
    assert_int_equal(json_array_size(json_object_get(idx, "deltas")), 0);
    json_decref(idx);
    json_t *sum = summary(t, "svc", "2.0");
    assert_int_equal(field(sum, "pending"), 1);
    assert_int_equal(field(sum, "made") + field(sum, "too_large"), 0);
    json_decref(sum);

    /* Work on the pair and stop after its first file, as a shutdown does. */
    lp_db *db = NULL;
    lp_db_delta_pair pair;
    lp_error err;
    lp_error_clear(&err);
    assert_int_equal(lp_service_db_acquire(t->svc, &db, &err), LP_OK);
    assert_int_equal(lp_db_delta_pair_next(db, &pair, &err), LP_OK);
    lp_service_db_release(t->svc, db);
    assert_int_equal(pair.from_code, 1);
    assert_int_equal(pair.to_code, 2);
    assert_false(pair.done);
    int calls = 0;
    bool stopped = false;
    assert_int_equal(lp_service_delta_run_pair(t->svc, &pair, stop_at_second, &calls, &stopped,
                                               &err),
                     LP_OK);
    assert_true(stopped);
    sum = summary(t, "svc", "2.0");
    assert_int_equal(field(sum, "pending"), 1);
    assert_int_equal(field(sum, "made") + field(sum, "too_large"), 1);
    json_decref(sum);

    /* A restart with the worker resumes and finishes it. */
    o.delta_worker = true;
    assert_int_equal(lp_apitest_restart(t, &o), 0);
    idx = wait_complete(t, "svc", 1, 2);
    check_index(idx, &v1, &v2, 1, 2);
    json_decref(idx);
    sum = summary(t, "svc", "2.0");
    assert_int_equal(field(sum, "pending"), 0);
    assert_int_equal(field(sum, "made"), NWANT);
    assert_int_equal(field(sum, "too_large"), 1);
    json_decref(sum);
    fetch_and_apply(t, tree_get(&v1, "old/name.md"), tree_get(&v2, "new/name.md"));
    char *log = lp_apitest_log_text(t);
    assert_non_null(log);
    assert_non_null(strstr(log, "deltas interrupted"));
    assert_non_null(strstr(log, "deltas done"));
    free(log);
    tree_free(&v1);
    tree_free(&v2);
    lp_apitest_stop(t);
}

/* An "executable" (an x86-64 ELF header, then 1.2 MB of random bytes) whose
 * next version is made of 8-byte pieces taken in turn from two places of
 * the old one: too short for the engine's matches (its delta is as large as
 * the file), found at once by zstd with the old file as dictionary. */
static void dict_pair(tree *v1, tree *v2)
{
    static const uint8_t elf[20] = {0x7F, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0,
                                    0,    0,   0,   0,   0, 0, 0, 0, 62, 0};
    size_t n = 1200000, m = 20 + 4000 * 8;
    uint8_t *old = random_bytes(99, n), *nw = malloc(m);
    assert_non_null(nw);
    memcpy(old, elf, sizeof elf);
    memcpy(nw, elf, sizeof elf);
    for (size_t k = 0; k < 4000; k++)
        memcpy(nw + 20 + k * 8, old + (k % 2 ? 600000 : 1000) + (k / 2) * 8, 8);
    tree_add(v1, "bin/app", old, n);
    tree_add(v2, "bin/app", nw, m);
    free(old);
    free(nw);
}

/* The server's dictionary frames: with them (at level 9 here, for speed)
 * the file's delta is kept in that coding and applies; with
 * --delta-dict-level 0 (no_dict) the same file's delta is too large to keep. */
static void test_dictionary_frames(void **state)
{
    (void)state;
    tree v1 = {0}, v2 = {0};
    dict_pair(&v1, &v2);
    char b[65], r[65], path[4400];
    sha_hex(tree_get(&v1, "bin/app"), b);
    sha_hex(tree_get(&v2, "bin/app"), r);
    for (int no_dict = 0; no_dict < 2; no_dict++) {
        lp_apitest_opts o = worker_opts(3);
        o.deltas.dict_level = 9;
        o.deltas.no_dict = no_dict;
        lp_apitest *t = lp_apitest_start_with(&o);
        assert_non_null(t);
        make_app(t, "dict");
        publish(t, "dict", &v1, "1.0");
        publish(t, "dict", &v2, "2.0");
        json_decref(wait_complete(t, "dict", 1, 2));
        json_t *sum = summary(t, "dict", "2.0");
        assert_int_equal(field(sum, "made"), no_dict ? 0 : 1);
        assert_int_equal(field(sum, "too_large"), no_dict ? 1 : 0);
        json_decref(sum);
        snprintf(path, sizeof path, "%s/deltas/%s/%s", t->dir, b, r);
        size_t dlen = 0;
        uint8_t *d = lp_test_read_file(path, &dlen);
        if (no_dict) {
            assert_null(d);
        } else {
            assert_non_null(d);
            lp_delta_header h;
            lp_error err;
            assert_int_equal(lp_delta_read_header(d, dlen, dlen, &h, &err), LP_OK);
            assert_int_equal(h.flags, LP_DELTA_FLAG_DICT_FRAMES);
            assert_true(dlen < tree_get(&v2, "bin/app")->len / 2);
            fetch_and_apply(t, tree_get(&v1, "bin/app"), tree_get(&v2, "bin/app"));
            free(d);
        }
        lp_apitest_stop(t);
    }
    tree_free(&v1);
    tree_free(&v2);
}

/* The delta options, from flags and from a config file. */
static void test_config(void **state)
{
    (void)state;
    lp_server_config cfg;
    lp_error err;
    lp_error_clear(&err);
    lp_server_config_defaults(&cfg);
    assert_int_equal(cfg.delta_releases, 3);
    assert_int_equal(cfg.delta_min_size, 1024);
    assert_true(cfg.delta_max_ratio > 0.599 && cfg.delta_max_ratio < 0.601);
    assert_int_equal(lp_server_config_set(&cfg, "delta-max-ratio", "0.25", "--delta-max-ratio",
                                          &err),
                     LP_OK);
    assert_true(cfg.delta_max_ratio > 0.249 && cfg.delta_max_ratio < 0.251);
    assert_int_equal(lp_server_config_set(&cfg, "delta-max-ratio", "1", "x", &err), LP_OK);
    static const char *const bad[] = {"0", "1.01", "-0.5", ".5", "5.", "0.5.1", "", "1e-1",
                                      "0,5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(lp_server_config_set(&cfg, "delta-max-ratio", bad[i], "x", &err),
                         LP_ERR_INVALID_ARG);
    assert_int_equal(lp_server_config_set(&cfg, "delta-releases", "65", "x", &err),
                     LP_ERR_INVALID_ARG);
    assert_int_equal(lp_server_config_set(&cfg, "delta-releases", "0", "x", &err), LP_OK);
    /* the engine's dictionary frames: level 22 by default, 0 turns them off; 1 thread */
    assert_int_equal(cfg.delta_dict_level, 22);
    assert_int_equal(cfg.delta_threads, 1);
    assert_int_equal(lp_server_config_set(&cfg, "delta-dict-level", "0", "x", &err), LP_OK);
    assert_int_equal(cfg.delta_dict_level, 0);
    assert_int_equal(lp_server_config_set(&cfg, "delta-dict-level", "23", "x", &err),
                     LP_ERR_INVALID_ARG);
    assert_int_equal(lp_server_config_set(&cfg, "delta-threads", "4", "x", &err), LP_OK);
    assert_int_equal(cfg.delta_threads, 4);
    assert_int_equal(lp_server_config_set(&cfg, "delta-threads", "0", "x", &err),
                     LP_ERR_INVALID_ARG);
    assert_int_equal(lp_server_config_set(&cfg, "delta-threads", "17", "x", &err),
                     LP_ERR_INVALID_ARG);

    char *dir = lp_test_tmpdir("dcfg");
    assert_non_null(dir);
    char *file = lp_test_join(dir, "serve.json");
    assert_int_equal(lp_test_write_str(file, "{\"delta_max_ratio\": 0.5, \"delta_releases\": 5,"
                                             " \"delta_min_size\": 4096, \"delta_dict_level\": 19,"
                                             " \"delta_threads\": 2}"),
                     0);
    lp_server_config_defaults(&cfg);
    assert_int_equal(lp_server_config_apply_file(&cfg, file, &err), LP_OK);
    assert_true(cfg.delta_max_ratio > 0.499 && cfg.delta_max_ratio < 0.501);
    assert_int_equal(cfg.delta_releases, 5);
    assert_int_equal(cfg.delta_min_size, 4096);
    assert_int_equal(cfg.delta_dict_level, 19);
    assert_int_equal(cfg.delta_threads, 2);
    assert_int_equal(lp_test_write_str(file, "{\"delta_max_ratio\": \"0.5\"}"), 0);
    assert_int_equal(lp_server_config_apply_file(&cfg, file, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "delta_max_ratio"));
    lp_test_rmtree(dir);
    free(file);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_and_fetch),
        cmocka_unit_test(test_releases_limit),
        cmocka_unit_test(test_resume_after_restart),
        cmocka_unit_test(test_dictionary_frames),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
