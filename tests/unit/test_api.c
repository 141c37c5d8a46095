/*
 * test_api.c — the management API's behaviour over real HTTP, against the
 * real server and service on a scratch data folder (tests/support/apitest.h):
 * strict request bodies (unknown field, wrong type, duplicate key, bad
 * JSON), the body limit, resumable uploads (offset mismatch, resume after
 * half, consumed by a publish), publishing real tar.gz bundles (fields,
 * files and bytes, refusals: incomplete, sha256 mismatch, an unsafe entry,
 * a taken version, a version code that goes back — each leaving the upload
 * usable), listing and paging releases, rollback, apps and channels, the
 * token round trip, and blobs (ETag, Range, 304, immutable caching).
 *
 * Every test makes its own app, so the tests do not depend on their order.
 * Bundles are real archives written with libarchive.
 */
#include "apitest.h"
#include "core/file.h"
#include "livepush/hash.h"
#include "testutil.h"

#include <archive.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define MiB (1024u * 1024)

/* ---- helpers ------------------------------------------------------------------ */

typedef struct tar_entry {
    const char *path;
    const char *data; /* NULL: a folder */
    unsigned mode;
} tar_entry;

/* A tar.gz of `n` entries in a new buffer (*len gets its size). */
static uint8_t *make_tgz(const tar_entry *e, size_t n, size_t *len)
{
    size_t cap = 1 << 20;
    uint8_t *buf = malloc(cap);
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_memory(a, buf, cap, len), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *ae = archive_entry_new();
        archive_entry_set_pathname(ae, e[i].path);
        archive_entry_set_filetype(ae, e[i].data ? AE_IFREG : AE_IFDIR);
        archive_entry_set_perm(ae, e[i].mode ? e[i].mode : 0644);
        archive_entry_set_size(ae, e[i].data ? (la_int64_t)strlen(e[i].data) : 0);
        assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
        if (e[i].data)
            assert_int_equal(archive_write_data(a, e[i].data, strlen(e[i].data)),
                             (la_ssize_t)strlen(e[i].data));
        archive_entry_free(ae);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    return buf;
}

static void make_app(lp_apitest *t, const char *name)
{
    char req[128];
    snprintf(req, sizeof req, "{\"name\":\"%s\"}", name);
    json_t *j = lp_apitest_json(t, "POST", "/api/v1/apps", t->admin, req, 201);
    assert_non_null(j);
    json_decref(j);
}

/* Uploads `data` whole and publishes it with the extra JSON members
 * `fields` (",\"k\":v..." or ""); returns the answer when the status is
 * `expect`. */
static json_t *publish(lp_apitest *t, const char *app, const void *data, size_t len,
                       const char *version, const char *fields, long expect, char *id_out)
{
    char id[64], path[128], req[1024];
    assert_int_equal(lp_apitest_upload(t, t->admin, app, data, len, len, 1, id), 0);
    if (id_out)
        strcpy(id_out, id);
    snprintf(path, sizeof path, "/api/v1/apps/%s/releases", app);
    snprintf(req, sizeof req, "{\"upload\":\"%s\",\"version\":\"%s\"%s}", id, version, fields);
    return lp_apitest_json(t, "POST", path, t->admin, req, expect);
}

/* Sends a request and checks the error answer: status, code and a message
 * containing `part`. */
static void expect_error(lp_apitest *t, const char *method, const char *path, const char *body,
                         long status, const char *code, const char *part)
{
    lp_apiresp r;
    static const char *const ct[] = {"Content-Type: application/json", NULL};
    assert_int_equal(lp_apitest_call(t, method, path, t->admin, NULL, ct, body,
                                     body ? strlen(body) : 0, &r),
                     0);
    if (r.status != status || strcmp(lp_apiresp_code(&r), code) ||
        (part && !strstr(lp_apiresp_message(&r), part)))
        fail_msg("%s %s %s: HTTP %ld: %s (expected %ld %s '%s')", method, path,
                 body ? body : "", r.status, r.body ? r.body : "", status, code,
                 part ? part : "");
    lp_apiresp_free(&r);
}

static int setup(void **state)
{
    lp_apitest *t = lp_apitest_start(0);
    assert_non_null(t);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    lp_apitest_stop(*state);
    return 0;
}

/* ---- strict bodies ---------------------------------------------------------------- */

static void test_strict_bodies(void **state)
{
    lp_apitest *t = *state;
    const char *apps = "/api/v1/apps";
    expect_error(t, "POST", apps, "{\"name\":\"x1\",\"colour\":\"red\"}", 400, "bad_request",
                 "field 'colour': unknown field");
    expect_error(t, "POST", apps, "{\"name\":5}", 400, "bad_request",
                 "field 'name': expected a string");
    expect_error(t, "POST", apps, "{}", 400, "bad_request", "field 'name': missing");
    expect_error(t, "POST", apps, "{\"name\":\"a1\",\"name\":\"b1\"}", 400, "bad_request",
                 "duplicate");
    expect_error(t, "POST", apps, "{\"name\":", 400, "bad_request", "invalid JSON");
    expect_error(t, "POST", apps, "{\"name\":\"q1\"} x", 400, "bad_request", NULL);
    expect_error(t, "POST", apps, "[\"q1\"]", 400, "bad_request", "JSON object");
    expect_error(t, "POST", apps, NULL, 400, "bad_request", "JSON object");
    expect_error(t, "POST", "/api/v1/tokens", "{\"name\":\"t\",\"scopes\":[\"root\"]}", 400,
                 "bad_request", "field 'scopes'");
    expect_error(t, "POST", "/api/v1/tokens", "{\"name\":\"t\",\"scopes\":\"read\"}", 400,
                 "bad_request", "field 'scopes': expected an array of strings");
    expect_error(t, "POST", "/api/v1/apps/default/uploads", "{\"size\":1.5}", 400,
                 "bad_request", "field 'size': expected an integer");
    expect_error(t, "POST", "/api/v1/apps/default/uploads", "{\"size\":0}", 400,
                 "bad_request", "field 'size'");
    expect_error(t, "POST", "/api/v1/apps/default/uploads", "{\"size\":5,\"sha256\":\"ab\"}",
                 400, "bad_request", "field 'sha256'");
    expect_error(t, "POST", "/api/v1/apps/default/releases",
                 "{\"upload\":\"u\",\"version\":\"v\",\"mandatory\":\"yes\"}", 400, "bad_request",
                 "field 'mandatory': expected true or false");
    expect_error(t, "POST", "/api/v1/apps/default/releases",
                 "{\"upload\":\"u\",\"version\":\"v\",\"kind\":\"zipfile\"}", 400, "bad_request",
                 "field 'kind'");
    expect_error(t, "POST", "/api/v1/apps/default/rollback", "{\"target\":\"v\",\"to\":1}", 400,
                 "bad_request", "field 'to': unknown field");
    /* bounds: a field over its length, an array over its count */
    char *big = malloc(20000);
    int at = snprintf(big, 20000, "{\"upload\":\"u\",\"version\":\"v\",\"notes\":\"");
    memset(big + at, 'n', 16385);
    strcpy(big + at + 16385, "\"}");
    expect_error(t, "POST", "/api/v1/apps/default/releases", big, 400, "bad_request",
                 "field 'notes': longer than 16384 bytes");
    strcpy(big, "{\"target\":\"v\",\"channels\":[");
    for (int i = 0; i < 17; i++)
        sprintf(big + strlen(big), "%s\"c%d\"", i ? "," : "", i);
    strcat(big, "]}");
    expect_error(t, "POST", "/api/v1/apps/default/rollback", big, 400, "bad_request",
                 "field 'channels': more than 16 items");
    free(big);
    /* nothing was created by any of them */
    json_t *j = lp_apitest_json(t, "GET", apps, t->admin, NULL, 200);
    assert_non_null(j);
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(j, "apps"), i, a)
    {
        const char *n = json_string_value(json_object_get(a, "name"));
        assert_true(strcmp(n, "x1") && strcmp(n, "a1") && strcmp(n, "b1") && strcmp(n, "q1"));
    }
    json_decref(j);
}

static json_int_t upload_offset(lp_apitest *t, const char *id, long expect)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/uploads/%s", id);
    json_t *j = lp_apitest_json(t, "GET", path, t->admin, NULL, expect);
    if (expect != 200) {
        assert_non_null(j);
        json_decref(j);
        return -1;
    }
    assert_non_null(j);
    json_int_t off = json_integer_value(json_object_get(json_object_get(j, "upload"), "offset"));
    json_decref(j);
    return off;
}

/* ---- body limit -------------------------------------------------------------------- */

static void test_body_limit(void **state)
{
    lp_apitest *t = *state;
    make_app(t, "big");
    size_t chunk = 8 * MiB, total = chunk + 100;
    uint8_t *data = malloc(total + 64 * 1024 + 1);
    for (size_t i = 0; i < total + 64 * 1024 + 1; i++)
        data[i] = (uint8_t)(i * 31 + (i >> 12));
    char id[64];
    assert_int_equal(lp_apitest_upload(t, t->admin, "big", data, total, 0, 0, id), 0);
    /* the default limit takes an 8 MiB chunk ... */
    assert_int_equal(lp_apitest_put(t, t->admin, id, data, 0, chunk, total, NULL), 200);
    /* ... and refuses a body above 8 MiB + 64 KiB, before the handler runs */
    char id2[64];
    size_t over = 8 * MiB + 64 * 1024 + 1;
    assert_int_equal(lp_apitest_upload(t, t->admin, "big", data, over, 0, 0, id2), 0);
    lp_apiresp r;
    char path[128], range[96];
    snprintf(path, sizeof path, "/api/v1/uploads/%s", id2);
    snprintf(range, sizeof range, "Content-Range: bytes 0-%zu/%zu", over - 1, over);
    const char *const put_hdrs[] = {range, "Expect: 100-continue", NULL};
    assert_int_equal(lp_apitest_call(t, "PUT", path, t->admin, NULL, put_hdrs, data, over, &r),
                     0);
    assert_int_equal(r.status, 413);
    /* the HTTP core's code for it (server.md) */
    assert_string_equal(lp_apiresp_code(&r), "payload_too_large");
    lp_apiresp_free(&r);
    assert_int_equal(upload_offset(t, id2, 200), 0);
    /* a JSON body over the limit too */
    char *huge = malloc(over + 32);
    memset(huge, ' ', over + 32);
    memcpy(huge, "{\"name\":\"x\"", 11);
    huge[over + 30] = '}';
    huge[over + 31] = '\0';
    static const char *const ct[] = {"Content-Type: application/json", "Expect: 100-continue",
                                     NULL};
    assert_int_equal(lp_apitest_call(t, "POST", "/api/v1/apps", t->admin, NULL, ct, huge,
                                     strlen(huge), &r),
                     0);
    assert_int_equal(r.status, 413);
    lp_apiresp_free(&r);
    free(huge);
    /* the first upload goes on from where it was */
    assert_int_equal(lp_apitest_put(t, t->admin, id, data, chunk, total - chunk, total, &r), 200);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "upload"),
                                                        "offset")),
                     (json_int_t)total);
    lp_apiresp_free(&r);
    free(data);
}

/* ---- uploads ----------------------------------------------------------------------- */

static void test_upload_offsets(void **state)
{
    lp_apitest *t = *state;
    make_app(t, "offsets");
    const uint8_t data[] = "0123456789";
    char id[64];
    assert_int_equal(lp_apitest_upload(t, t->admin, "offsets", data, 10, 0, 0, id), 0);
    assert_int_equal(strlen(id), 32); /* 128 random bits */
    lp_apiresp r;
    /* a chunk that does not start at the offset */
    assert_int_equal(lp_apitest_put(t, t->admin, id, data, 5, 5, 10, &r), 409);
    assert_string_equal(lp_apiresp_code(&r), "offset_mismatch");
    json_t *up = json_object_get(r.json, "upload");
    assert_string_equal(json_string_value(json_object_get(up, "id")), id);
    assert_int_equal(json_integer_value(json_object_get(up, "offset")), 0);
    assert_int_equal(json_integer_value(json_object_get(up, "size")), 10);
    lp_apiresp_free(&r);
    /* the first half; the same chunk again is a mismatch at 5 */
    assert_int_equal(lp_apitest_put(t, t->admin, id, data, 0, 5, 10, NULL), 200);
    assert_int_equal(lp_apitest_put(t, t->admin, id, data, 0, 5, 10, &r), 409);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r.json, "upload"), "offset")), 5);
    lp_apiresp_free(&r);
    /* Content-Range that disagrees with the upload or the body */
    char path[128];
    snprintf(path, sizeof path, "/api/v1/uploads/%s", id);
    const char *bad[] = {NULL, "Content-Range: bytes 5-9/11", "Content-Range: bytes 5-8/10",
                         "Content-Range: bytes=5-9/10", "Content-Range: bytes 9-5/10",
                         "Content-Range: bytes 5-9/*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *h[] = {bad[i], NULL};
        assert_int_equal(lp_apitest_call(t, "PUT", path, t->admin, NULL, bad[i] ? h : NULL,
                                         data + 5, 5, &r),
                         0);
        if (r.status != 400 || strcmp(lp_apiresp_code(&r), "bad_request"))
            fail_msg("%s: HTTP %ld %s", bad[i] ? bad[i] : "(none)", r.status, r.body);
        lp_apiresp_free(&r);
    }
    assert_int_equal(upload_offset(t, id, 200), 5);

    /* while someone else works on the upload (a lock on its partial file),
     * a chunk is refused at once as busy */
    char part[512];
    snprintf(part, sizeof part, "%s/uploads/%s.part", t->dir, id);
    int fd = open(part, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    assert_int_equal(lp_apitest_put(t, t->admin, id, data, 5, 5, 10, &r), 409);
    assert_string_equal(lp_apiresp_code(&r), "conflict");
    assert_non_null(strstr(lp_apiresp_message(&r), "busy"));
    lp_apiresp_free(&r);
    /* a crash after a write but before the offset was recorded leaves
     * bytes past the offset; the next chunk replaces them */
    assert_int_equal(pwrite(fd, "XXXXXXX", 7, 5), 7);
    close(fd);
    assert_int_equal(lp_apitest_put(t, t->admin, id, data, 5, 5, 10, NULL), 200);
    assert_int_equal(upload_offset(t, id, 200), 10);
    size_t got_len = 0;
    uint8_t *got = lp_test_read_file(part, &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, 10);
    assert_memory_equal(got, data, 10);
    free(got);
    /* then a DELETE */
    snprintf(path, sizeof path, "/api/v1/uploads/%s", id);
    json_t *j = lp_apitest_json(t, "DELETE", path, t->admin, NULL, 200);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "deleted")), id);
    json_decref(j);
    upload_offset(t, id, 404);
    expect_error(t, "DELETE", path, NULL, 404, "not_found", id);
    expect_error(t, "GET", "/api/v1/uploads/nosuchupload", NULL, 404, "not_found", NULL);
    expect_error(t, "POST", "/api/v1/apps/nosuchapp/uploads", "{\"size\":3}", 404, "not_found",
                 "nosuchapp");
}

static void test_resume_and_publish(void **state)
{
    lp_apitest *t = *state;
    make_app(t, "resume");
    tar_entry files[] = {{"app/", NULL, 0755},
                         {"app/main.txt", "main program\n", 0644},
                         {"app/run.sh", "#!/bin/sh\necho hi\n", 0755}};
    size_t len = 0;
    uint8_t *tgz = make_tgz(files, 3, &len);
    char id[64];
    assert_int_equal(lp_apitest_upload(t, t->admin, "resume", tgz, len, 0, 1, id), 0);
    size_t half = len / 2;
    assert_int_equal(lp_apitest_put(t, t->admin, id, tgz, 0, half, len, NULL), 200);
    /* a client that lost track asks where the upload stands, and goes on */
    assert_int_equal(upload_offset(t, id, 200), (json_int_t)half);
    assert_int_equal(lp_apitest_put(t, t->admin, id, tgz, half, len - half, len, NULL), 200);
    assert_int_equal(upload_offset(t, id, 200), (json_int_t)len);

    char req[512];
    snprintf(req, sizeof req,
             "{\"upload\":\"%s\",\"version\":\"2.0.0\",\"channels\":[\"stable\",\"beta\"],"
             "\"runtime_version\":\"rt1\",\"platform\":\"linux\",\"arch\":\"x86_64\","
             "\"mandatory\":true,\"notes\":\"first\",\"kind\":\"archive\"}",
             id);
    json_t *j = lp_apitest_json(t, "POST", "/api/v1/apps/resume/releases", t->admin, req, 201);
    assert_non_null(j);
    json_t *rel = json_object_get(j, "release");
    assert_string_equal(json_string_value(json_object_get(rel, "app")), "resume");
    assert_string_equal(json_string_value(json_object_get(rel, "version")), "2.0.0");
    assert_int_equal(json_integer_value(json_object_get(rel, "version_code")), 1);
    assert_int_equal(json_array_size(json_object_get(rel, "channels")), 2);
    assert_string_equal(json_string_value(json_object_get(rel, "platform")), "linux");
    assert_string_equal(json_string_value(json_object_get(rel, "notes")), "first");
    assert_true(json_is_true(json_object_get(rel, "mandatory")));
    assert_string_equal(json_string_value(json_object_get(rel, "state")), "published");
    assert_true(json_is_null(json_object_get(rel, "rollback_of")));
    assert_int_equal(json_integer_value(json_object_get(rel, "files")), 2);
    assert_int_equal(json_integer_value(json_object_get(rel, "bytes")), 13 + 18);
    char admin_id[LP_TOKEN_ID_LEN + 1];
    memcpy(admin_id, t->admin + LP_TOKEN_PREFIX_LEN, LP_TOKEN_ID_LEN);
    admin_id[LP_TOKEN_ID_LEN] = '\0';
    assert_string_equal(json_string_value(json_object_get(rel, "created_by")), admin_id);
    json_t *man = json_object_get(rel, "manifest");
    const char *msha = json_string_value(json_object_get(man, "sha256"));
    assert_non_null(msha);
    assert_int_equal(strlen(msha), 64);
    assert_string_equal(json_string_value(json_object_get(man, "target")), "releases/1.json");
    char sha[65];
    snprintf(sha, sizeof sha, "%s", msha);
    json_decref(j);

    /* consumed: the upload and its partial file are gone */
    upload_offset(t, id, 404);
    char part[512];
    snprintf(part, sizeof part, "%s/uploads/%s.part", t->dir, id);
    assert_int_equal(lp_file_exists(part), 0);

    /* visible through the API and the repository */
    j = lp_apitest_json(t, "GET", "/api/v1/apps/resume", t->admin, NULL, 200);
    assert_non_null(j);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "latest"), "version")), "2.0.0");
    assert_int_equal(json_array_size(json_object_get(j, "channels")), 2);
    json_decref(j);
    j = lp_apitest_json(t, "GET", "/api/v1/apps/resume/releases/2.0.0", t->admin, NULL, 200);
    assert_non_null(j);
    json_decref(j);
    lp_apiresp r;
    assert_int_equal(lp_apitest_call(t, "GET", "/v1/apps/resume/metadata/timestamp.json", NULL,
                                     NULL, NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 200);
    lp_apiresp_free(&r);

    /* the manifest as a blob: public, immutable, strong ETag = name, Range, 304 */
    char path[128], etag[80], inm[128];
    snprintf(path, sizeof path, "/v1/blobs/%s", sha);
    snprintf(etag, sizeof etag, "\"%s\"", sha);
    assert_int_equal(lp_apitest_call(t, "GET", path, NULL, NULL, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.etag, etag);
    assert_string_equal(r.cache, "public, max-age=31536000, immutable");
    uint8_t md[LP_HASH_MAX_LEN];
    char hex[65];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, r.body, r.len, md, NULL), LP_OK);
    lp_hex_encode(md, 32, hex);
    assert_string_equal(hex, sha);
    assert_non_null(strstr(r.body, "app/run.sh"));
    lp_apiresp_free(&r);
    const char *range[] = {"Range: bytes=0-9", NULL};
    assert_int_equal(lp_apitest_call(t, "GET", path, NULL, NULL, range, NULL, 0, &r), 0);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.len, 10);
    assert_int_equal(strncmp(r.content_range, "bytes 0-9/", 10), 0);
    lp_apiresp_free(&r);
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *cond[] = {inm, NULL};
    assert_int_equal(lp_apitest_call(t, "GET", path, NULL, NULL, cond, NULL, 0, &r), 0);
    assert_int_equal(r.status, 304);
    lp_apiresp_free(&r);
    char missing[128];
    snprintf(missing, sizeof missing, "/v1/blobs/%064d", 0);
    assert_int_equal(lp_apitest_call(t, "GET", missing, NULL, NULL, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    lp_apiresp_free(&r);
    assert_int_equal(lp_apitest_call(t, "GET", "/v1/blobs/ABC", NULL, NULL, NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 400);
    lp_apiresp_free(&r);
    free(tgz);
}

/* ---- refused publishes ----------------------------------------------------------- */

static void test_publish_refusals(void **state)
{
    lp_apitest *t = *state;
    make_app(t, "refuse");
    make_app(t, "other");
    const char *rels = "/api/v1/apps/refuse/releases";
    char id[64], req[256], path[128];
    const uint8_t data[] = "some bytes\n";

    /* incomplete */
    assert_int_equal(lp_apitest_upload(t, t->admin, "refuse", data, 11, 0, 0, id), 0);
    assert_int_equal(lp_apitest_put(t, t->admin, id, data, 0, 4, 11, NULL), 200);
    snprintf(req, sizeof req, "{\"upload\":\"%s\",\"version\":\"v1\",\"kind\":\"file\"}", id);
    expect_error(t, "POST", rels, req, 409, "conflict", "incomplete");
    /* another app's upload, and no upload at all */
    expect_error(t, "POST", "/api/v1/apps/other/releases", req, 404, "not_found", NULL);
    expect_error(t, "POST", rels, "{\"upload\":\"nope\",\"version\":\"v1\"}", 404, "not_found",
                 NULL);

    /* declared sha256 differs from the content */
    char sha_other[65];
    uint8_t md[LP_HASH_MAX_LEN];
    lp_hash_buf(LP_HASH_SHA256, "other", 5, md, NULL);
    lp_hex_encode(md, 32, sha_other);
    snprintf(req, sizeof req, "{\"size\":11,\"sha256\":\"%s\"}", sha_other);
    json_t *j = lp_apitest_json(t, "POST", "/api/v1/apps/refuse/uploads", t->admin, req, 201);
    assert_non_null(j);
    snprintf(id, sizeof id, "%s",
             json_string_value(json_object_get(json_object_get(j, "upload"), "id")));
    json_decref(j);
    assert_int_equal(lp_apitest_put(t, t->admin, id, data, 0, 11, 11, NULL), 200);
    snprintf(req, sizeof req, "{\"upload\":\"%s\",\"version\":\"v1\",\"kind\":\"file\"}", id);
    expect_error(t, "POST", rels, req, 422, "unprocessable", "sha256");

    /* an archive with an entry that climbs out of the tree */
    tar_entry evil[] = {{"ok.txt", "fine\n", 0644}, {"../evil.txt", "gotcha\n", 0644}};
    size_t len = 0;
    uint8_t *tgz = make_tgz(evil, 2, &len);
    assert_int_equal(lp_apitest_upload(t, t->admin, "refuse", tgz, len, len, 1, id), 0);
    snprintf(req, sizeof req, "{\"upload\":\"%s\",\"version\":\"v1\"}", id);
    lp_apiresp r;
    static const char *const ct[] = {"Content-Type: application/json", NULL};
    assert_int_equal(lp_apitest_call(t, "POST", rels, t->admin, NULL, ct, req, strlen(req), &r),
                     0);
    assert_int_equal(r.status, 422);
    assert_string_equal(lp_apiresp_code(&r), "unprocessable");
    assert_non_null(strstr(lp_apiresp_message(&r), "../evil.txt"));
    assert_null(strstr(lp_apiresp_message(&r), t->dir)); /* no server paths */
    lp_apiresp_free(&r);
    free(tgz);
    /* refused: nothing stored, the upload kept; it can be deleted */
    j = lp_apitest_json(t, "GET", "/api/v1/apps/refuse/releases", t->admin, NULL, 200);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "releases")), 0);
    json_decref(j);
    assert_int_equal(upload_offset(t, id, 200), (json_int_t)len);
    snprintf(path, sizeof path, "/api/v1/uploads/%s", id);
    j = lp_apitest_json(t, "DELETE", path, t->admin, NULL, 200);
    assert_non_null(j);
    json_decref(j);

    /* v1 published; the same version again is a conflict, a version code
     * that does not go up is "rollback"; the refused upload then publishes */
    j = publish(t, "refuse", data, 11, "v1", ",\"kind\":\"file\"", 201, NULL);
    assert_non_null(j);
    json_decref(j);
    j = publish(t, "refuse", data, 11, "v1", ",\"kind\":\"file\"", 409, id);
    assert_non_null(j);
    assert_string_equal(lp_apiresp_code(&(lp_apiresp){.json = j}), "conflict");
    json_decref(j);
    snprintf(req, sizeof req,
             "{\"upload\":\"%s\",\"version\":\"v9\",\"version_code\":1,\"kind\":\"file\"}", id);
    expect_error(t, "POST", rels, req, 409, "rollback", NULL);
    snprintf(req, sizeof req, "{\"upload\":\"%s\",\"version\":\"v2\",\"kind\":\"file\"}", id);
    j = lp_apitest_json(t, "POST", rels, t->admin, req, 201);
    assert_non_null(j);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "release"), "version_code")), 2);
    json_decref(j);
}

/* ---- listing and rollback ---------------------------------------------------------- */

static void test_list_and_rollback(void **state)
{
    lp_apitest *t = *state;
    make_app(t, "paged");
    const char *names[] = {"v1", "v2", "v3"};
    for (int i = 0; i < 3; i++) {
        char content[32];
        snprintf(content, sizeof content, "content %d\n", i);
        json_t *j = publish(t, "paged", content, strlen(content), names[i],
                            ",\"kind\":\"file\",\"file_name\":\"f.txt\"", 201, NULL);
        assert_non_null(j);
        json_decref(j);
    }
    json_t *j = lp_apitest_json(t, "GET", "/api/v1/apps/paged/releases?limit=2", t->admin, NULL,
                                200);
    assert_non_null(j);
    json_t *list = json_object_get(j, "releases");
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "version")),
                        "v3");
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "version")),
                        "v2");
    assert_int_equal(json_integer_value(json_object_get(j, "next_before")), 2);
    json_decref(j);
    j = lp_apitest_json(t, "GET", "/api/v1/apps/paged/releases?limit=2&before=2", t->admin,
                        NULL, 200);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "releases")), 1);
    assert_true(json_is_null(json_object_get(j, "next_before")));
    json_decref(j);
    j = lp_apitest_json(t, "GET", "/api/v1/apps/paged/releases?channel=stable", t->admin, NULL,
                        200);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "releases")), 3);
    json_decref(j);
    j = lp_apitest_json(t, "GET", "/api/v1/apps/paged/releases?channel=beta", t->admin, NULL,
                        200);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "releases")), 0);
    json_decref(j);
    expect_error(t, "GET", "/api/v1/apps/paged/releases?colour=red", NULL, 400, "bad_request",
                 "'colour'");
    expect_error(t, "GET", "/api/v1/apps/paged/releases?limit=0", NULL, 400, "bad_request",
                 "'limit'");
    expect_error(t, "GET", "/api/v1/apps/paged/releases?before=x", NULL, 400, "bad_request",
                 "'before'");
    expect_error(t, "GET", "/api/v1/apps/paged/releases/v7", NULL, 404, "not_found", "v7");
    expect_error(t, "GET", "/api/v1/apps/nope/releases", NULL, 404, "not_found", "nope");

    j = lp_apitest_json(t, "POST", "/api/v1/apps/paged/rollback", t->admin,
                        "{\"target\":\"v1\",\"channels\":[\"stable\"]}", 201);
    assert_non_null(j);
    json_t *rel = json_object_get(j, "release");
    assert_string_equal(json_string_value(json_object_get(rel, "version")), "v1");
    assert_int_equal(json_integer_value(json_object_get(rel, "version_code")), 4);
    json_t *of = json_object_get(rel, "rollback_of");
    assert_string_equal(json_string_value(json_object_get(of, "version")), "v1");
    assert_int_equal(json_integer_value(json_object_get(of, "version_code")), 1);
    json_decref(j);
    expect_error(t, "POST", "/api/v1/apps/paged/rollback", "{\"target\":\"v0\"}", 404,
                 "not_found", "v0");
}

/* ---- apps, channels, tokens -------------------------------------------------------- */

static void test_apps_and_channels(void **state)
{
    lp_apitest *t = *state;
    json_t *j = lp_apitest_json(t, "POST", "/api/v1/apps", t->admin, "{\"name\":\"web\"}", 201);
    assert_non_null(j);
    json_t *app = json_object_get(j, "app");
    assert_string_equal(json_string_value(json_object_get(app, "name")), "web");
    assert_string_equal(json_string_value(json_object_get(app, "signing")), "server");
    assert_string_equal(json_string_value(json_object_get(app, "metadata_url")),
                        "/v1/apps/web/metadata");
    assert_string_equal(json_string_value(json_object_get(app, "targets_url")),
                        "/v1/apps/web/targets");
    json_decref(j);
    expect_error(t, "POST", "/api/v1/apps", "{\"name\":\"web\"}", 409, "conflict", "web");
    expect_error(t, "POST", "/api/v1/apps", "{\"name\":\"Bad Name\"}", 400, "bad_request", NULL);
    expect_error(t, "GET", "/api/v1/apps/nope", NULL, 404, "not_found", "nope");
    j = lp_apitest_json(t, "GET", "/api/v1/apps/web", t->admin, NULL, 200);
    assert_non_null(j);
    assert_true(json_is_null(json_object_get(j, "latest")));
    json_decref(j);
    j = lp_apitest_json(t, "POST", "/api/v1/apps/web/channels", t->admin, "{\"name\":\"beta\"}",
                        201);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "channel"), "name")),
                        "beta");
    json_decref(j);
    expect_error(t, "POST", "/api/v1/apps/web/channels", "{\"name\":\"beta\"}", 409, "conflict",
                 NULL);
    j = lp_apitest_json(t, "GET", "/api/v1/apps/web/channels", t->admin, NULL, 200);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "channels")), 1);
    json_decref(j);
}

static void test_token_round_trip(void **state)
{
    lp_apitest *t = *state;
    char tok[LP_TOKEN_TEXT_SIZE], id[LP_TOKEN_ID_LEN + 1], path[128];
    assert_int_equal(lp_apitest_token(t, "ci", "upload", tok, id), 0);
    json_t *j = lp_apitest_json(t, "GET", "/api/v1/tokens", t->admin, NULL, 200);
    assert_non_null(j);
    char *text = json_dumps(j, 0);
    assert_non_null(strstr(text, id));
    assert_null(strstr(text, tok + LP_TOKEN_PREFIX_LEN + LP_TOKEN_ID_LEN + 1)); /* no secret */
    assert_null(strstr(text, "\"secret\""));
    free(text);
    json_decref(j);
    j = lp_apitest_json(t, "GET", "/api/v1/whoami", tok, NULL, 200);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "token"), "id")),
                        id);
    json_decref(j);
    snprintf(path, sizeof path, "/api/v1/tokens/%s", id);
    j = lp_apitest_json(t, "DELETE", path, t->admin, NULL, 200);
    assert_non_null(j);
    assert_true(json_is_integer(json_object_get(json_object_get(j, "token"), "revoked_at")));
    json_decref(j);
    j = lp_apitest_json(t, "GET", "/api/v1/whoami", tok, NULL, 401);
    assert_non_null(j);
    json_decref(j);
    expect_error(t, "DELETE", "/api/v1/tokens/aaaaaaaaaaaa", NULL, 404, "not_found", NULL);
    expect_error(t, "POST", "/api/v1/tokens", "{\"name\":\"\",\"scopes\":[\"read\"]}", 400,
                 "bad_request", NULL);
    expect_error(t, "POST", "/api/v1/tokens", "{\"name\":\"n\",\"scopes\":[]}", 400,
                 "bad_request", "field 'scopes'");
    expect_error(t, "POST", "/api/v1/tokens", "{\"name\":\"n\",\"scopes\":[\"read\",\"read\"]}",
                 400, "bad_request", "twice");
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strict_bodies),     cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_upload_offsets),    cmocka_unit_test(test_resume_and_publish),
        cmocka_unit_test(test_publish_refusals),  cmocka_unit_test(test_list_and_rollback),
        cmocka_unit_test(test_apps_and_channels), cmocka_unit_test(test_token_round_trip),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
