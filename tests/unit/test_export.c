/*
 * test_export.c — `livepush export` and `livepush timestamp refresh` on a
 * real data folder (src/server/export.c): the service (real SQLite file,
 * blob store, server-held keys) publishes folder bundles and makes the
 * deltas between them (lp_service_delta_run_pair, what the delta worker
 * does); the export is read back by the real TUF client over file:// URLs,
 * as a device reading a static mirror would.
 *
 *   - an export holds every release, its blobs byte for byte, the delta
 *     index of each finished pair and its deltas, mirror.json, and
 *     timestamp.json written last; running it again writes nothing; a pair
 *     still being made is left out and counted, and added by a later run;
 *   - a damaged file in the data folder (a blob, a target) stops the export
 *     with the file named, and the export keeps serving its earlier state;
 *   - a damaged file in the export is kept by a plain run (the size is
 *     right) and replaced with --verify;
 *   - a timestamp.json in the export that is newer than the data folder's
 *     (or another one with the same version) is never replaced;
 *   - refusals: unknown app, bad name, nothing published, a database that
 *     cannot be opened (fine without deltas);
 *   - timestamp refresh: version + 1, the same snapshot, the expiry asked
 *     for, accepted by the TUF client; refused without the key;
 *   - exports made again and again while another thread publishes always
 *     give a repository the TUF client accepts, never going back.
 */
#include "livepush/db.h"
#include "livepush/hash.h"
#include "livepush/tuf.h"
#include "server/export.h"
#include "server/service.h"
#include "testdb.h"
#include "testutil.h"

#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define APP "shop"

typedef struct fx {
    char *dir, *data, *out;
    lp_testdb *tdb; /* the PostgreSQL schema when LP_TEST_PG_URL is set (testdb.h) */
    lp_service *svc;
    char written[64][256]; /* the files the last export wrote, in order */
    size_t nwritten;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = lp_test_tmpdir("export");
    f->data = lp_test_join(f->dir, "data");
    f->out = lp_test_join(f->dir, "out");
    if (lp_testdb_is_pg())
        assert_non_null(f->tdb = lp_testdb_new(f->dir, "unused"));
    lp_service_options o = {.data_dir = f->data,
                            .db_url = f->tdb ? f->tdb->url : NULL,
                            .db_connections = 4,
                            .deltas = {.releases = 3, .min_size = 256}};
    lp_error err;
    lp_error_clear(&err);
    if (lp_service_open(&f->svc, &o, &err) || lp_service_app_create(f->svc, APP, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    lp_service_close(f->svc);
    lp_testdb_free(f->tdb);
    lp_test_rmtree(f->dir);
    free(f->data);
    free(f->out);
    free(f->dir);
    free(f);
    return 0;
}

/* ---- content and publishing ---------------------------------------------------------- */

/* A folder bundle for release n: main.txt (a long text with line n
 * changed), lib.bin (the same random bytes in every release) and, from
 * n = 3 on, extra-<n>.bin (new random bytes). */
static char *make_bundle(fx *f, int n)
{
    char name[64];
    snprintf(name, sizeof name, "src/v%d", n);
    char *b = lp_test_join(f->dir, name);
    size_t cap = 64 * 1024, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (int i = 0; i < 600; i++)
        len += (size_t)snprintf(text + len, cap - len, "line %04d: the %s fox jumps\n", i,
                                i == n * 50 ? "slow red" : "quick brown");
    char *p = lp_test_join(b, "app/main.txt");
    assert_int_equal(lp_test_write_file(p, text, len), 0);
    free(p);
    free(text);
    uint8_t lib[8192];
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof lib; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        lib[i] = (uint8_t)s;
    }
    p = lp_test_join(b, "app/lib.bin");
    assert_int_equal(lp_test_write_file(p, lib, sizeof lib), 0);
    free(p);
    if (n >= 3) {
        for (size_t i = 0; i < sizeof lib; i++)
            lib[i] ^= (uint8_t)(n * 31 + i);
        char extra[64];
        snprintf(extra, sizeof extra, "app/extra-%d.bin", n);
        p = lp_test_join(b, extra);
        assert_int_equal(lp_test_write_file(p, lib, sizeof lib), 0);
        free(p);
    }
    return b;
}

static void publish(fx *f, int n)
{
    char *b = make_bundle(f, n);
    char version[16];
    snprintf(version, sizeof version, "v%d", n);
    lp_release_fields rf = {.version = version, .version_code = n};
    lp_error err;
    lp_error_clear(&err);
    if (lp_service_publish(f->svc, APP, b, NULL, &rf, NULL, &err))
        fail_msg("publish v%d: %s", n, err.msg);
    free(b);
}

/* Makes every planned delta, as the delta worker would. */
static void make_deltas(fx *f)
{
    lp_db *db = NULL;
    lp_error err;
    assert_int_equal(lp_service_db_acquire(f->svc, &db, &err), LP_OK);
    for (;;) {
        lp_db_delta_pair pair;
        lp_status st = lp_db_delta_pair_next(db, &pair, &err);
        if (st == LP_ERR_NOT_FOUND)
            break;
        assert_int_equal(st, LP_OK);
        bool stopped = false;
        if (lp_service_delta_run_pair(f->svc, &pair, NULL, NULL, &stopped, &err))
            fail_msg("delta pair: %s", err.msg);
    }
    lp_service_db_release(f->svc, db);
}

/* ---- exporting and reading back ----------------------------------------------------- */

static void note_file(void *ctx, const char *rel, uint64_t size)
{
    fx *f = ctx;
    (void)size;
    if (f->nwritten < 64)
        snprintf(f->written[f->nwritten], sizeof f->written[0], "%s", rel);
    f->nwritten++;
}

static lp_status export_to(fx *f, const char *out, bool verify, lp_export_result *r,
                           lp_error *err)
{
    f->nwritten = 0;
    lp_export_opts o = {.data_dir = f->data, .db_url = f->tdb ? f->tdb->url : NULL,
                        .app = APP, .out_dir = out, .verify = verify,
                        .on_file = note_file, .ctx = f};
    lp_error_clear(err);
    return lp_export_app(&o, r, err);
}

static lp_export_result export_ok(fx *f)
{
    lp_export_result r;
    lp_error err;
    if (export_to(f, f->out, false, &r, &err))
        fail_msg("export: %s", err.msg);
    assert_int_equal(r.files_written, f->nwritten);
    /* timestamp.json, when written, is the last file */
    for (size_t i = 0; i < f->nwritten && i < 64; i++)
        if (!strcmp(f->written[i], "v1/apps/" APP "/metadata/timestamp.json"))
            assert_int_equal(i, f->nwritten - 1);
    return r;
}

static char *out_path(fx *f, const char *rel)
{
    char *p = malloc(strlen(f->out) + strlen(rel) + 2);
    sprintf(p, "%s/%s", f->out, rel);
    return p;
}

/* A TUF client over the export (file:// URLs) with its own metadata
 * folder `cdir` (set up from the export's 1.root.json the first time). */
static lp_tuf_client *client(fx *f, const char *out, const char *cdir)
{
    char meta[4096], targets[4096], root[4096];
    snprintf(meta, sizeof meta, "file://%s/v1/apps/%s/metadata", out, APP);
    snprintf(targets, sizeof targets, "file://%s/v1/apps/%s/targets", out, APP);
    snprintf(root, sizeof root, "%s/v1/apps/%s/metadata/1.root.json", out, APP);
    lp_error err;
    struct stat sb;
    if (stat(cdir, &sb) != 0 && lp_tuf_init_trusted_root(cdir, root, &err))
        fail_msg("trusted root: %s", err.msg);
    lp_tuf_client_config cfg = {.metadata_dir = cdir, .metadata_url = meta,
                                .targets_url = targets};
    lp_tuf_client *c = NULL;
    if (lp_tuf_client_open(&c, &cfg, &err))
        fail_msg("client: %s", err.msg);
    (void)f;
    return c;
}

/* Refreshes a client over the export and returns how many releases it
 * lists; each release manifest is downloaded (checked by TUF) and each of
 * its blobs must be in the export with its content. */
static size_t releases_seen(fx *f, const char *out, const char *cdir, lp_tuf_versions *v)
{
    lp_tuf_client *c = client(f, out, cdir);
    lp_error err;
    if (lp_tuf_client_refresh(c, NULL, &err))
        fail_msg("refresh over the export: %s", err.msg);
    if (v)
        lp_tuf_client_versions(c, v);
    lp_tuf_target_list l;
    assert_int_equal(lp_tuf_client_list_targets(c, "releases/", 0, &l, &err), LP_OK);
    for (size_t i = 0; i < l.count; i++) {
        char dest[4200];
        snprintf(dest, sizeof dest, "%s/manifest-%zu.json", cdir, i);
        if (lp_tuf_client_download_target(c, l.items[i], dest, &err))
            fail_msg("download %s: %s", lp_tuf_target_name(l.items[i]), err.msg);
        size_t len = 0;
        uint8_t *m = lp_test_read_file(dest, &len);
        assert_non_null(m);
        json_t *doc = json_loadb((const char *)m, len, 0, NULL);
        assert_non_null(doc);
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(doc, "entries"), k, e) {
            const char *sha = json_string_value(json_object_get(e, "sha256"));
            if (!sha)
                continue;
            char rel[128];
            snprintf(rel, sizeof rel, "%s/v1/blobs/%s", out, sha);
            size_t blen = 0;
            uint8_t *blob = lp_test_read_file(rel, &blen);
            if (!blob)
                fail_msg("blob %s is not in the export", sha);
            uint8_t md[LP_HASH_MAX_LEN];
            char hex[65];
            assert_int_equal(lp_hash_buf(LP_HASH_SHA256, blob, blen, md, NULL), LP_OK);
            lp_hex_encode(md, 32, hex);
            hex[64] = '\0';
            assert_string_equal(hex, sha);
            assert_int_equal((json_int_t)blen, json_integer_value(json_object_get(e, "size")));
            free(blob);
        }
        json_decref(doc);
        free(m);
    }
    size_t n = l.count;
    lp_tuf_target_list_free(&l);
    lp_tuf_client_free(c);
    return n;
}

static bool wrote(const fx *f, const char *rel)
{
    for (size_t i = 0; i < f->nwritten && i < 64; i++)
        if (!strcmp(f->written[i], rel))
            return true;
    return false;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_export_and_again(void **state)
{
    fx *f = *state;
    publish(f, 1);
    publish(f, 2);
    make_deltas(f);
    lp_export_result r = export_ok(f);
    assert_string_equal(f->written[f->nwritten - 1], "v1/apps/" APP "/metadata/timestamp.json");
    assert_int_equal(r.releases, 2);
    assert_int_equal(r.delta_pairs, 1);
    assert_true(r.deltas >= 1);
    assert_int_equal(r.delta_pairs_pending, 0);
    assert_int_equal(r.deltas_missing, 0);
    assert_int_equal(r.files_kept, 0);
    assert_true(wrote(f, "v1/apps/" APP "/mirror.json"));
    assert_true(wrote(f, "v1/apps/" APP "/deltas/1/2.json"));
    assert_true(wrote(f, "v1/apps/" APP "/metadata/root.json"));
    char *cdir = lp_test_join(f->dir, "client");
    assert_int_equal(releases_seen(f, f->out, cdir, NULL), 2);

    /* the index: the pair, complete, each delta in the export */
    char *ix = out_path(f, "v1/apps/" APP "/deltas/1/2.json");
    size_t len = 0;
    char *text = (char *)lp_test_read_file(ix, &len);
    assert_non_null(text);
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(doc, "from")), 1);
    assert_int_equal(json_integer_value(json_object_get(doc, "to")), 2);
    assert_true(json_is_true(json_object_get(doc, "complete")));
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(doc, "deltas"), i, e) {
        char rel[200];
        snprintf(rel, sizeof rel, "v1/deltas/%s/%s",
                 json_string_value(json_object_get(e, "base")),
                 json_string_value(json_object_get(e, "result")));
        char *p = out_path(f, rel);
        struct stat sb;
        assert_int_equal(stat(p, &sb), 0);
        assert_int_equal(sb.st_size, json_integer_value(json_object_get(e, "size")));
        free(p);
    }
    json_decref(doc);
    free(text);
    free(ix);
    /* the marker */
    char *mp = out_path(f, "v1/apps/" APP "/mirror.json");
    text = (char *)lp_test_read_file(mp, &len);
    assert_non_null(text);
    assert_string_equal(text, "{\"app\":\"" APP "\",\"format\":1,\"static\":true,\"telemetry\":false}");
    free(text);
    free(mp);

    /* again: nothing written */
    r = export_ok(f);
    assert_int_equal(r.files_written, 0);
    assert_true(r.files_kept > 10);

    /* v3: its pairs are not made yet, so left out and counted */
    publish(f, 3);
    r = export_ok(f);
    assert_int_equal(r.releases, 3);
    assert_int_equal(r.delta_pairs, 1);
    assert_int_equal(r.delta_pairs_pending, 2);
    assert_false(wrote(f, "v1/apps/" APP "/deltas/1/3.json"));
    for (size_t k = 0; k < f->nwritten; k++) /* nothing old is written again */
        assert_null(strstr(f->written[k], "deltas/1/2.json"));
    assert_int_equal(releases_seen(f, f->out, cdir, NULL), 3);
    make_deltas(f);
    r = export_ok(f);
    assert_int_equal(r.delta_pairs, 3);
    assert_int_equal(r.delta_pairs_pending, 0);
    assert_true(wrote(f, "v1/apps/" APP "/deltas/1/3.json"));
    assert_true(wrote(f, "v1/apps/" APP "/deltas/2/3.json"));
    /* only the indexes and deltas, and the timestamp (unchanged: kept) */
    for (size_t k = 0; k < f->nwritten; k++)
        assert_true(strstr(f->written[k], "/deltas/") != NULL);
    free(cdir);
}

/* Flips one byte of the file at path. */
static void damage(const char *path)
{
    size_t len = 0;
    uint8_t *b = lp_test_read_file(path, &len);
    assert_non_null(b);
    assert_true(len > 10);
    b[len / 2] ^= 0x01;
    assert_int_equal(lp_test_write_file(path, b, len), 0);
    free(b);
}

static char *blob_path(fx *f, const char *content, size_t len)
{
    uint8_t md[LP_HASH_MAX_LEN];
    char hex[65];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, content, len, md, NULL), LP_OK);
    lp_hex_encode(md, 32, hex);
    hex[64] = '\0';
    char rel[200];
    snprintf(rel, sizeof rel, "blobs/%.2s/%s", hex, hex);
    return lp_test_join(f->data, rel);
}

static void test_damaged_source(void **state)
{
    fx *f = *state;
    publish(f, 1);
    publish(f, 2);
    export_ok(f);
    char *ts = out_path(f, "v1/apps/" APP "/metadata/timestamp.json");
    size_t before_len = 0;
    uint8_t *before = lp_test_read_file(ts, &before_len);
    assert_non_null(before);

    /* v3 brings extra-3.bin; its blob is damaged in the data folder */
    publish(f, 3);
    char *src = lp_test_join(f->dir, "src/v3/app/extra-3.bin");
    size_t len = 0;
    uint8_t *content = lp_test_read_file(src, &len);
    assert_non_null(content);
    char *bp = blob_path(f, (const char *)content, len);
    damage(bp);
    lp_export_result r;
    lp_error err;
    assert_int_equal(export_to(f, f->out, false, &r, &err), LP_ERR_HASH_MISMATCH);
    if (!strstr(err.msg, bp) || !strstr(err.msg, "damaged"))
        fail_msg("message: %s", err.msg);
    /* the export still serves v1 and v2, with its old timestamp */
    size_t after_len = 0;
    uint8_t *after = lp_test_read_file(ts, &after_len);
    assert_true(after_len == before_len && !memcmp(before, after, after_len));
    char *cdir = lp_test_join(f->dir, "client");
    assert_int_equal(releases_seen(f, f->out, cdir, NULL), 2);
    /* repaired: the next run goes on */
    damage(bp);
    export_ok(f);
    assert_int_equal(releases_seen(f, f->out, cdir, NULL), 3);

    /* a damaged target file (a release manifest) in the data folder, into a new export */
    char *other = lp_test_join(f->dir, "out-2");
    char *tdir = lp_test_join(f->data, "repos/" APP "/targets/releases");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "ls %s | grep '\\.2\\.json$' | head -1", tdir);
    FILE *pp = popen(cmd, "r");
    char name[256] = "";
    assert_non_null(fgets(name, sizeof name, pp));
    pclose(pp);
    name[strcspn(name, "\n")] = '\0';
    char *tp = lp_test_join(tdir, name);
    damage(tp);
    assert_int_equal(export_to(f, other, false, &r, &err), LP_ERR_HASH_MISMATCH);
    assert_non_null(strstr(err.msg, "releases/2.json"));
    char *ots = lp_test_join(other, "v1/apps/" APP "/metadata/timestamp.json");
    struct stat sb;
    assert_int_not_equal(stat(ots, &sb), 0); /* no timestamp: nothing to follow */
    damage(tp);
    free(ots);
    free(tp);
    free(tdir);
    free(other);
    free(cdir);
    free(bp);
    free(content);
    free(src);
    free(after);
    free(before);
    free(ts);
}

static void test_verify_and_newer_timestamp(void **state)
{
    fx *f = *state;
    publish(f, 1);
    export_ok(f);
    /* a blob in the export damaged with its size kept */
    char *src = lp_test_join(f->dir, "src/v1/app/lib.bin");
    size_t len = 0;
    uint8_t *content = lp_test_read_file(src, &len);
    uint8_t md[LP_HASH_MAX_LEN];
    char hex[65], rel[128];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, content, len, md, NULL), LP_OK);
    lp_hex_encode(md, 32, hex);
    hex[64] = '\0';
    snprintf(rel, sizeof rel, "v1/blobs/%s", hex);
    char *bp = out_path(f, rel);
    damage(bp);
    lp_export_result r = export_ok(f);
    assert_int_equal(r.files_written, 0); /* the size is right: kept */
    lp_error err;
    assert_int_equal(export_to(f, f->out, true, &r, &err), LP_OK);
    assert_int_equal(r.files_written, 1);
    assert_string_equal(f->written[0], rel);
    size_t blen = 0;
    uint8_t *blob = lp_test_read_file(bp, &blen);
    assert_true(blen == len && !memcmp(blob, content, len));
    free(blob);

    /* an export whose timestamp.json is newer than the data folder's */
    char *ts = out_path(f, "v1/apps/" APP "/metadata/timestamp.json");
    const char *newer = "{\"signatures\":[],\"signed\":{\"_type\":\"timestamp\",\"version\":999,"
                        "\"expires\":\"2099-01-01T00:00:00Z\",\"meta\":{}}}";
    assert_int_equal(lp_test_write_str(ts, newer), 0);
    assert_int_equal(export_to(f, f->out, false, &r, &err), LP_ERR_ROLLBACK);
    assert_non_null(strstr(err.msg, "version 999"));
    char *now = (char *)lp_test_read_file(ts, &blen);
    assert_string_equal(now, newer);
    free(now);
    /* another timestamp with the data folder's version */
    char same[512];
    snprintf(same, sizeof same,
             "{\"signatures\":[],\"signed\":{\"_type\":\"timestamp\",\"version\":%llu,"
             "\"expires\":\"2099-01-01T00:00:00Z\",\"meta\":{}}}",
             (unsigned long long)r.timestamp_version);
    assert_int_equal(lp_test_write_str(ts, same), 0);
    assert_int_equal(export_to(f, f->out, false, &r, &err), LP_ERR_STATE);
    /* a damaged one (not a timestamp at all) is simply replaced */
    assert_int_equal(lp_test_write_str(ts, "garbage"), 0);
    assert_int_equal(export_to(f, f->out, false, &r, &err), LP_OK);
    assert_int_equal(r.files_written, 1);
    char *cdir = lp_test_join(f->dir, "client");
    assert_int_equal(releases_seen(f, f->out, cdir, NULL), 1);
    free(cdir);
    free(ts);
    free(bp);
    free(content);
    free(src);
}

static void test_refusals(void **state)
{
    fx *f = *state;
    lp_export_result r;
    lp_error err;
    lp_export_opts o = {.data_dir = f->data, .db_url = f->tdb ? f->tdb->url : NULL,
                        .app = "nope", .out_dir = f->out};
    assert_int_equal(lp_export_app(&o, &r, &err), LP_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "no app named 'nope'"));
    o.app = "../" APP;
    assert_int_equal(lp_export_app(&o, &r, &err), LP_ERR_INVALID_ARG);
    o.app = NULL;
    assert_int_equal(lp_export_app(&o, &r, &err), LP_ERR_INVALID_ARG);
    /* an app folder without a timestamp: nothing published */
    char *empty = lp_test_join(f->data, "repos/empty/metadata");
    char *marker = lp_test_join(empty, "1.root.json");
    assert_int_equal(lp_test_write_str(marker, "{}"), 0);
    o.app = "empty";
    assert_int_equal(lp_export_app(&o, &r, &err), LP_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "no timestamp.json yet"));
    free(marker);
    free(empty);
    /* a database that cannot be opened: only the deltas need it */
    publish(f, 1);
    o.app = APP;
    o.db_url = "sqlite:/nonexistent-folder/livepush.db";
    assert_int_not_equal(lp_export_app(&o, &r, &err), LP_OK);
    assert_non_null(strstr(err.msg, "database"));
    o.no_deltas = true;
    assert_int_equal(lp_export_app(&o, &r, &err), LP_OK);
    assert_int_equal(r.releases, 1);
    /* refresh: no such app, nothing published, no key */
    uint8_t *ts = NULL;
    size_t len = 0;
    assert_int_equal(lp_export_timestamp_refresh(f->data, "nope", 0, &ts, &len, NULL, NULL, &err),
                     LP_ERR_NOT_FOUND);
    assert_int_equal(lp_export_timestamp_refresh(f->data, "empty", 0, &ts, &len, NULL, NULL, &err),
                     LP_ERR_NOT_FOUND);
    char *key = lp_test_join(f->data, "keys/" APP "/timestamp.pem");
    char *moved = lp_test_join(f->dir, "timestamp.pem");
    assert_int_equal(rename(key, moved), 0);
    assert_int_equal(lp_export_timestamp_refresh(f->data, APP, 0, &ts, &len, NULL, NULL, &err),
                     LP_ERR_NOT_FOUND);
    if (!strstr(err.msg, "not on this machine") || !strstr(err.msg, key))
        fail_msg("message: %s", err.msg);
    assert_null(ts);
    assert_int_equal(rename(moved, key), 0);
    free(moved);
    free(key);
}

static void test_timestamp_refresh(void **state)
{
    fx *f = *state;
    publish(f, 1);
    lp_export_result r0 = export_ok(f);
    char *cdir = lp_test_join(f->dir, "client");
    lp_tuf_versions v0;
    assert_int_equal(releases_seen(f, f->out, cdir, &v0), 1);

    uint8_t *ts = NULL;
    size_t len = 0;
    uint64_t version = 0;
    int64_t expires = 0;
    lp_error err;
    int64_t t0 = (int64_t)time(NULL);
    if (lp_export_timestamp_refresh(f->data, APP, 7200, &ts, &len, &version, &expires, &err))
        fail_msg("refresh: %s", err.msg);
    assert_int_equal(version, r0.timestamp_version + 1);
    assert_true(expires >= t0 + 7200 && expires <= (int64_t)time(NULL) + 7200);
    /* the data folder's timestamp.json is those bytes */
    char *repo_ts = lp_test_join(f->data, "repos/" APP "/metadata/timestamp.json");
    size_t rlen = 0;
    uint8_t *repo = lp_test_read_file(repo_ts, &rlen);
    assert_true(rlen == len && !memcmp(repo, ts, len));
    free(repo);
    /* the export from those bytes: only timestamp.json is written */
    f->nwritten = 0;
    lp_export_opts o = {.data_dir = f->data, .db_url = f->tdb ? f->tdb->url : NULL,
                        .app = APP, .out_dir = f->out, .timestamp = ts,
                        .timestamp_len = len, .on_file = note_file, .ctx = f};
    lp_export_result r;
    assert_int_equal(lp_export_app(&o, &r, &err), LP_OK);
    assert_int_equal(r.files_written, 1);
    assert_string_equal(f->written[0], "v1/apps/" APP "/metadata/timestamp.json");
    assert_int_equal(r.timestamp_version, version);
    assert_int_equal(r.snapshot_version, r0.snapshot_version);
    assert_int_equal(r.timestamp_expires, expires);
    lp_tuf_versions v1;
    assert_int_equal(releases_seen(f, f->out, cdir, &v1), 1);
    assert_int_equal(v1.timestamp, v0.timestamp + 1);
    assert_int_equal(v1.snapshot, v0.snapshot);
    free(ts);
    ts = NULL;
    /* without a lifetime: one day ahead, never shorter than what is left */
    assert_int_equal(lp_export_timestamp_refresh(f->data, APP, 0, NULL, NULL, &version, &expires,
                                                 &err),
                     LP_OK);
    assert_true(expires >= t0 + 86400);
    assert_int_equal(version, v1.timestamp + 1);
    /* a publish after a refresh goes on from the refreshed version */
    publish(f, 2);
    lp_export_result r2 = export_ok(f);
    assert_int_equal(r2.timestamp_version, version + 1);
    assert_int_equal(releases_seen(f, f->out, cdir, NULL), 2);
    free(repo_ts);
    free(cdir);
}

/* ---- exports while publishing --------------------------------------------------------- */

typedef struct publisher {
    fx *f;
    int from, to;
} publisher;

static void *publish_thread(void *arg)
{
    publisher *p = arg;
    for (int n = p->from; n <= p->to; n++)
        publish(p->f, n);
    return NULL;
}

static void test_export_while_publishing(void **state)
{
    fx *f = *state;
    publish(f, 1);
    export_ok(f);
    char *cdir = lp_test_join(f->dir, "client");
    size_t seen = releases_seen(f, f->out, cdir, NULL);
    publisher p = {.f = f, .from = 2, .to = 9};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, publish_thread, &p), 0);
    unsigned runs = 0;
    for (; seen < 9 && runs < 400; runs++) {
        lp_export_result r;
        lp_error err;
        if (export_to(f, f->out, false, &r, &err))
            fail_msg("export while publishing: %s", err.msg);
        size_t now = releases_seen(f, f->out, cdir, NULL);
        assert_true(now >= seen);
        assert_int_equal(now, r.releases);
        seen = now;
    }
    assert_int_equal(pthread_join(th, NULL), 0);
    export_ok(f);
    assert_int_equal(releases_seen(f, f->out, cdir, NULL), 9);
    printf("   %u exports while 8 releases were published\n", runs);
    free(cdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_export_and_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_and_newer_timestamp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timestamp_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_while_publishing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
