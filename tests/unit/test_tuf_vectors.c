/*
 * test_tuf_vectors.c — the TUF client against repositories written by an
 * independent implementation ($LP_TUF_VECTORS, see its README.md).
 *
 * One test per case listed in cases.json.  Each case folder is served over
 * real HTTP on loopback; the client starts from the case's trusted root (and
 * its trusted/ cache, where given), refreshes, and for every target in
 * EXPECT.json a fresh client refreshes, looks the target up, downloads and
 * verifies it.  Every conclusion must be the one EXPECT.json states: the
 * result, the failing step, the failure class (or one it lists as also
 * acceptable), the trusted versions, and the root version persisted on disk.
 */
#include "httpd.h"
#include "livepush/tuf.h"
#include "tuf/metadata.h"
#include "core/file.h"

#include <dirent.h>
#include <ftw.h>
#include <jansson.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static const char *vectors(void)
{
    const char *v = getenv("LP_TUF_VECTORS");
    return v ? v : "../shared/tuf-vectors";
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static lp_status status_of_class(const char *cls)
{
    static const struct { const char *name; lp_status st; } map[] = {
        {"rollback", LP_ERR_ROLLBACK},
        {"expired", LP_ERR_EXPIRED},
        {"version_mismatch", LP_ERR_VERSION_MISMATCH},
        {"signature_threshold_not_met", LP_ERR_BAD_SIGNATURE},
        {"malformed_metadata", LP_ERR_MALFORMED},
        {"target_hash_mismatch", LP_ERR_HASH_MISMATCH},
        {"target_length_mismatch", LP_ERR_LENGTH_MISMATCH},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(map[i].name, cls))
            return map[i].st;
    fail_msg("unknown failure class %s", cls);
    return LP_OK;
}

/* Does status st match the expected failure (or one of also_acceptable)? */
static int failure_matches(const json_t *exp, lp_status st)
{
    if (st == status_of_class(json_string_value(json_object_get(exp, "failure"))))
        return 1;
    const json_t *also = json_object_get(exp, "also_acceptable");
    size_t i;
    const json_t *v;
    if (json_is_string(also))
        return st == status_of_class(json_string_value(also));
    json_array_foreach(also, i, v)
        if (st == status_of_class(json_string_value(v)))
            return 1;
    return 0;
}

typedef struct fixture {
    char casedir[1024];
    json_t *expect;
    lp_test_httpd *httpd;
    char metadata_url[256], targets_url[256];
} fixture;

/* A fresh client folder holding the case's starting trust. */
static lp_tuf_client *start_client(fixture *f, char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/lp-vec-XXXXXX");
    assert_non_null(mkdtemp(dir));
    const json_t *start = json_object_get(f->expect, "client_start");
    char root[1200];
    snprintf(root, sizeof root, "%s/%s", f->casedir,
             json_string_value(json_object_get(start, "trusted_root")));
    lp_error err;
    lp_status st = lp_tuf_init_trusted_root(dir, root, &err);
    if (st)
        fail_msg("init trusted root: %s", err.msg);
    const json_t *tdir = json_object_get(start, "trusted_metadata_dir");
    if (json_is_string(tdir)) {
        char src[1200];
        snprintf(src, sizeof src, "%s/%s", f->casedir, json_string_value(tdir));
        DIR *d = opendir(src);
        assert_non_null(d);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char from[1500], to[1500];
            snprintf(from, sizeof from, "%s/%s", src, e->d_name);
            snprintf(to, sizeof to, "%s/%s", dir, e->d_name);
            uint8_t *data;
            size_t len;
            assert_int_equal(lp_file_read(from, 1 << 20, &data, &len, NULL), LP_OK);
            assert_int_equal(lp_file_write_atomic(to, data, len, 0644, NULL), LP_OK);
            free(data);
        }
        closedir(d);
    }
    lp_tuf_client_config cfg = {.metadata_dir = dir,
                                .metadata_url = f->metadata_url,
                                .targets_url = f->targets_url};
    lp_tuf_client *c;
    st = lp_tuf_client_open(&c, &cfg, &err);
    if (st)
        fail_msg("open client: %s", err.msg);
    return c;
}

static uint64_t persisted_root_version(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/root.json", dir);
    uint8_t *data;
    size_t len;
    assert_int_equal(lp_file_read(path, 1 << 20, &data, &len, NULL), LP_OK);
    lp_md *md;
    assert_int_equal(lp_md_parse(data, len, LP_MD_ROOT, "root.json", &md, NULL), LP_OK);
    uint64_t v = md->version;
    lp_md_free(md);
    free(data);
    return v;
}

static void check_refresh(fixture *f, const char *casename)
{
    const json_t *exp = json_object_get(f->expect, "refresh");
    char dir[64];
    lp_tuf_client *c = start_client(f, dir, sizeof dir);
    lp_error err;
    lp_error_clear(&err);
    lp_tuf_step step;
    lp_status st = lp_tuf_client_refresh(c, &step, &err);
    lp_tuf_versions v;
    lp_tuf_client_versions(c, &v);
    const char *result = json_string_value(json_object_get(exp, "result"));
    if (!strcmp(result, "success")) {
        if (st)
            fail_msg("%s: refresh should succeed, failed: %s", casename, err.msg);
        const json_t *tv = json_object_get(exp, "trusted_versions");
        assert_int_equal(v.root, json_integer_value(json_object_get(tv, "root")));
        assert_int_equal(v.timestamp, json_integer_value(json_object_get(tv, "timestamp")));
        assert_int_equal(v.snapshot, json_integer_value(json_object_get(tv, "snapshot")));
        assert_int_equal(v.targets, json_integer_value(json_object_get(tv, "targets")));
        assert_int_equal(persisted_root_version(dir), v.root);
    } else {
        if (!st)
            fail_msg("%s: refresh should fail", casename);
        const char *want_step = json_string_value(json_object_get(exp, "failed_at"));
        if (strcmp(lp_tuf_step_name(step), want_step))
            fail_msg("%s: failed at %s, expected %s (%s)", casename, lp_tuf_step_name(step),
                     want_step, err.msg);
        if (!failure_matches(exp, st))
            fail_msg("%s: failure %s, expected %s (%s)", casename, lp_status_name(st),
                     json_string_value(json_object_get(exp, "failure")), err.msg);
        uint64_t want_root = (uint64_t)json_integer_value(json_object_get(exp, "trusted_root_version"));
        assert_int_equal(v.root, want_root);
        assert_int_equal(persisted_root_version(dir), want_root);
        assert_non_null(strstr(err.msg, "refresh failed at the"));
        printf("  %s: refused as expected: %s\n", casename, err.msg);
    }
    lp_tuf_client_free(c);
    rm_rf(dir);
}

static void check_target(fixture *f, const char *casename, const char *name, const json_t *exp)
{
    char dir[64];
    lp_tuf_client *c = start_client(f, dir, sizeof dir);
    lp_error err;
    lp_error_clear(&err);
    lp_tuf_step step;
    lp_status st = lp_tuf_client_refresh(c, &step, &err);
    const char *result = json_string_value(json_object_get(exp, "result"));
    lp_tuf_target *t = NULL;
    char dest[600];
    snprintf(dest, sizeof dest, "%s/download.bin", dir);
    if (!st) {
        st = lp_tuf_client_find_target(c, name, &t, &err);
        if (!st)
            st = lp_tuf_client_download_target(c, t, dest, &err);
    }
    if (!strcmp(result, "found")) {
        if (st)
            fail_msg("%s: %s should be found: %s", casename, name, err.msg);
        assert_string_equal(lp_tuf_target_sha256(t), json_string_value(json_object_get(exp, "sha256")));
        assert_int_equal(lp_tuf_target_length(t), json_integer_value(json_object_get(exp, "length")));
        assert_string_equal(lp_tuf_target_role(t), json_string_value(json_object_get(exp, "found_in_role")));
        uint8_t *data;
        size_t len;
        assert_int_equal(lp_file_read(dest, 1 << 24, &data, &len, NULL), LP_OK);
        assert_int_equal(len, lp_tuf_target_length(t));
        free(data);
    } else if (!strcmp(result, "not_found")) {
        if (st != LP_ERR_NOT_FOUND)
            fail_msg("%s: %s should not be found, got %s: %s", casename, name, lp_status_name(st), err.msg);
    } else {
        if (!st)
            fail_msg("%s: %s should fail", casename, name);
        if (!failure_matches(exp, st))
            fail_msg("%s: %s failed with %s, expected %s (%s)", casename, name, lp_status_name(st),
                     json_string_value(json_object_get(exp, "failure")), err.msg);
        /* Nothing unverified may be left at the destination. */
        assert_false(lp_file_exists(dest));
    }
    lp_tuf_target_free(t);
    lp_tuf_client_free(c);
    rm_rf(dir);
}

static void test_case(void **state)
{
    const char *casename = *state;
    fixture f;
    memset(&f, 0, sizeof f);
    snprintf(f.casedir, sizeof f.casedir, "%s/%s", vectors(), casename);
    char ep[1200];
    snprintf(ep, sizeof ep, "%s/EXPECT.json", f.casedir);
    json_error_t je;
    f.expect = json_load_file(ep, 0, &je);
    if (!f.expect)
        fail_msg("%s: %s", ep, je.text);
    f.httpd = lp_test_httpd_start(f.casedir);
    assert_non_null(f.httpd);
    snprintf(f.metadata_url, sizeof f.metadata_url, "%s/%s", lp_test_httpd_url(f.httpd),
             json_string_value(json_object_get(f.expect, "metadata_dir")));
    snprintf(f.targets_url, sizeof f.targets_url, "%s/%s", lp_test_httpd_url(f.httpd),
             json_string_value(json_object_get(f.expect, "targets_dir")));

    check_refresh(&f, casename);
    const char *name;
    json_t *texp;
    json_object_foreach(json_object_get(f.expect, "targets"), name, texp)
        check_target(&f, casename, name, texp);

    lp_test_httpd_stop(f.httpd);
    json_decref(f.expect);
}

int main(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/cases.json", vectors());
    json_error_t je;
    json_t *cases = json_load_file(path, 0, &je);
    if (!cases) {
        fprintf(stderr, "cannot read %s: %s (set LP_TUF_VECTORS)\n", path, je.text);
        return 1;
    }
    json_t *list = json_object_get(cases, "cases");
    struct CMUnitTest *tests = calloc(json_array_size(list), sizeof *tests);
    size_t n = 0, i;
    json_t *c;
    json_array_foreach(list, i, c) {
        if (!json_object_get(c, "expect"))
            continue; /* canonical JSON vectors are checked by test_json */
        tests[n].name = json_string_value(json_object_get(c, "path"));
        tests[n].test_func = test_case;
        tests[n].initial_state = (void *)json_string_value(json_object_get(c, "path"));
        n++;
    }
    if (n < 18) {
        fprintf(stderr, "expected at least 18 client cases in %s, found %zu\n", path, n);
        return 1;
    }
    int rc = _cmocka_run_group_tests("tuf_vectors", tests, n, NULL, NULL);
    free(tests);
    json_decref(cases);
    return rc;
}
