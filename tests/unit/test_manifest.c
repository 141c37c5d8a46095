/*
 * test_manifest.c — tree manifests: building, normalisation, whole-tree
 * checks, the exact canonical JSON, the round trip, and the strict parser's
 * refusals (each names the field or entry).
 */
#include "livepush/bundle.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define SHA_A "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
#define SHA_B "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void test_build_and_json(void **state)
{
    (void)state;
    lp_manifest m;
    lp_manifest_init(&m);
    lp_error err;
    /* Out of order, parents implied, modes to normalise. */
    assert_int_equal(lp_manifest_add_file(&m, "lib/x/data", 04775, 5, SHA_A, &err), LP_OK);
    assert_int_equal(lp_manifest_add_file(&m, "README", 0666, 0, SHA_B, &err), LP_OK);
    assert_int_equal(lp_manifest_add_symlink(&m, "lib/cur", "x/data", &err), LP_OK);
    assert_int_equal(lp_manifest_add_dir(&m, "empty", &err), LP_OK);
    assert_int_equal(lp_manifest_add_file(&m, "bin-x", 0100, 5, SHA_A, &err), LP_OK);
    char *json = NULL;
    size_t len = 0;
    assert_int_equal(lp_manifest_to_json(&m, &json, &len, &err), LP_ERR_STATE);
    assert_int_equal(lp_manifest_finish(&m, &err), LP_OK);
    assert_int_equal(m.count, 7);
    assert_int_equal(lp_manifest_total_size(&m), 10);
    const lp_manifest_entry *e = lp_manifest_find(&m, "lib/x");
    assert_non_null(e);
    assert_int_equal(e->type, LP_ENTRY_DIR);
    assert_null(lp_manifest_find(&m, "lib/y"));
    assert_int_equal(lp_manifest_find(&m, "lib/x/data")->mode, 0755);
    assert_int_equal(lp_manifest_find(&m, "README")->mode, 0644);

    assert_int_equal(lp_manifest_to_json(&m, &json, &len, &err), LP_OK);
    const char *expect =
        "{\"entries\":["
        "{\"mode\":\"0644\",\"path\":\"README\",\"sha256\":\"" SHA_B "\",\"size\":0,"
        "\"type\":\"file\"},"
        "{\"mode\":\"0755\",\"path\":\"bin-x\",\"sha256\":\"" SHA_A "\",\"size\":5,"
        "\"type\":\"file\"},"
        "{\"path\":\"empty\",\"type\":\"dir\"},"
        "{\"path\":\"lib\",\"type\":\"dir\"},"
        "{\"path\":\"lib/cur\",\"target\":\"x/data\",\"type\":\"symlink\"},"
        "{\"path\":\"lib/x\",\"type\":\"dir\"},"
        "{\"mode\":\"0755\",\"path\":\"lib/x/data\",\"sha256\":\"" SHA_A "\",\"size\":5,"
        "\"type\":\"file\"}"
        "],\"manifest_version\":1}";
    assert_string_equal(json, expect);
    assert_int_equal(len, strlen(expect));

    /* Round trip: same bytes. */
    lp_manifest back;
    assert_int_equal(lp_manifest_from_json(json, len, &back, &err), LP_OK);
    assert_int_equal(back.count, m.count);
    char *json2 = NULL;
    size_t len2 = 0;
    assert_int_equal(lp_manifest_to_json(&back, &json2, &len2, &err), LP_OK);
    assert_string_equal(json, json2);
    assert_string_equal(lp_manifest_find(&back, "lib/cur")->target, "x/data");
    free(json2);
    lp_manifest_free(&back);
    free(json);
    lp_manifest_free(&m);

    /* The empty manifest. */
    lp_manifest_init(&m);
    assert_int_equal(lp_manifest_finish(&m, &err), LP_OK);
    assert_int_equal(lp_manifest_to_json(&m, &json, &len, &err), LP_OK);
    assert_string_equal(json, "{\"entries\":[],\"manifest_version\":1}");
    free(json);
    lp_manifest_free(&m);
}

static void test_mode(void **state)
{
    (void)state;
    assert_int_equal(lp_manifest_mode(LP_ENTRY_FILE, 0644), 0644);
    assert_int_equal(lp_manifest_mode(LP_ENTRY_FILE, 0666), 0644);
    assert_int_equal(lp_manifest_mode(LP_ENTRY_FILE, 07777), 0755);
    assert_int_equal(lp_manifest_mode(LP_ENTRY_FILE, 04644), 0644);
    assert_int_equal(lp_manifest_mode(LP_ENTRY_FILE, 0001), 0755);
    assert_int_equal(lp_manifest_mode(LP_ENTRY_FILE, 0100755), 0755);
    assert_int_equal(lp_manifest_mode(LP_ENTRY_DIR, 0700), 0755);
    assert_int_equal(lp_manifest_mode(LP_ENTRY_SYMLINK, 0), 0777);
}

static void test_paths(void **state)
{
    (void)state;
    lp_error err;
    const char *ok[] = {"a", "a/b", "a b/c.d", ".hidden", "a/..b", "a/b..", "\xc3\xa9t\xc3\xa9"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        assert_int_equal(lp_manifest_check_path(ok[i], 0, &err), LP_OK);
    struct {
        const char *path;
        lp_status st;
        const char *msg;
    } bad[] = {
        {"", LP_ERR_MALFORMED, "empty path"},
        {"/etc/passwd", LP_ERR_MALFORMED, "absolute"},
        {"a//b", LP_ERR_MALFORMED, "empty component"},
        {"a/", LP_ERR_MALFORMED, "empty component"},
        {"./a", LP_ERR_MALFORMED, "'.' component"},
        {"a/../b", LP_ERR_MALFORMED, "'..' component"},
        {"..", LP_ERR_MALFORMED, "'..' component"},
        {"a\nb", LP_ERR_MALFORMED, "control character"},
        {"a\x7f", LP_ERR_MALFORMED, "control character"},
        {"\xff\xfe", LP_ERR_MALFORMED, "UTF-8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(lp_manifest_check_path(bad[i].path, 0, &err), bad[i].st);
        if (!strstr(err.msg, bad[i].msg))
            fail_msg("%s: %s", bad[i].path, err.msg);
    }
    char longp[LP_MANIFEST_MAX_PATH + 2];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    assert_int_equal(lp_manifest_check_path(longp, 0, &err), LP_ERR_TOO_LARGE);
    longp[LP_MANIFEST_MAX_PATH] = 0;
    assert_int_equal(lp_manifest_check_path(longp, 0, &err), LP_OK);
    assert_int_equal(lp_manifest_check_path(longp, 100, &err), LP_ERR_TOO_LARGE);
}

static void test_targets(void **state)
{
    (void)state;
    lp_error err;
    assert_int_equal(lp_manifest_check_target("a/l", "../b", 0, &err), LP_OK);
    assert_int_equal(lp_manifest_check_target("a/b/l", "../../c/./d/", 0, &err), LP_OK);
    assert_int_equal(lp_manifest_check_target("l", ".", 0, &err), LP_OK);
    assert_int_equal(lp_manifest_check_target("l", "../x", 0, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "symlink \"l\": target \"../x\" leaves the bundle"));
    assert_int_equal(lp_manifest_check_target("a/l", "x/../../../y", 0, &err), LP_ERR_MALFORMED);
    assert_int_equal(lp_manifest_check_target("a/l", "/etc/passwd", 0, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "absolute target"));
    assert_int_equal(lp_manifest_check_target("a/l", "", 0, &err), LP_ERR_MALFORMED);
    assert_int_equal(lp_manifest_check_target("a/l", "x\ny", 0, &err), LP_ERR_MALFORMED);
    assert_int_equal(lp_manifest_check_target("a/l", "abcdef", 5, &err), LP_ERR_TOO_LARGE);
}

/* Adds the given symlinks (pairs) and finishes; returns the status. */
static lp_status links(lp_error *err, const char *const *pairs, size_t n)
{
    lp_manifest m;
    lp_manifest_init(&m);
    lp_status st = LP_OK;
    for (size_t i = 0; i + 1 < n && !st; i += 2)
        st = lp_manifest_add_symlink(&m, pairs[i], pairs[i + 1], err);
    if (!st)
        st = lp_manifest_finish(&m, err);
    lp_manifest_free(&m);
    return st;
}

static void test_tree_checks(void **state)
{
    (void)state;
    lp_error err;
    lp_manifest m;
    lp_manifest_init(&m);
    assert_int_equal(lp_manifest_add_file(&m, "a", 0644, 1, SHA_A, &err), LP_OK);
    assert_int_equal(lp_manifest_add_dir(&m, "a", &err), LP_OK);
    assert_int_equal(lp_manifest_finish(&m, &err), LP_ERR_MALFORMED);
    assert_string_equal(err.msg, "duplicate path \"a\"");
    lp_manifest_free(&m);

    /* Writing below a symlink or a file is refused. */
    assert_int_equal(lp_manifest_add_symlink(&m, "l", "d", &err), LP_OK);
    assert_int_equal(lp_manifest_add_file(&m, "l/x", 0644, 1, SHA_A, &err), LP_OK);
    assert_int_equal(lp_manifest_finish(&m, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "entry \"l/x\": \"l\" above it is a symlink"));
    lp_manifest_free(&m);
    assert_int_equal(lp_manifest_add_file(&m, "f", 0644, 1, SHA_A, &err), LP_OK);
    assert_int_equal(lp_manifest_add_file(&m, "f/g/h", 0644, 1, SHA_A, &err), LP_OK);
    assert_int_equal(lp_manifest_finish(&m, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "above it is a file"));
    lp_manifest_free(&m);

    /* Chains: each link is inside on its own, the combination escapes. */
    const char *chain[] = {"s", "d", "d/x", "..", "l", "s/x/.."};
    assert_int_equal(links(&err, chain, 6), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "symlink \"l\""));
    const char *chain_ok[] = {"s", "d", "d/x", "..", "l", "s/x/d"};
    assert_int_equal(links(&err, chain_ok, 6), LP_OK);
    const char *loop[] = {"a", "b", "b", "a/x"};
    assert_int_equal(links(&err, loop, 4), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "levels of symlinks"));
    const char *deep[] = {"p/q/l", "../../r", "r", "p"};
    assert_int_equal(links(&err, deep, 4), LP_OK);
}

static void test_parse_errors(void **state)
{
    (void)state;
#define F(extra) "{\"mode\":\"0644\",\"path\":\"a\",\"sha256\":\"" SHA_A "\",\"size\":1" extra ",\"type\":\"file\"}"
#define DOC(entries) "{\"entries\":[" entries "],\"manifest_version\":1}"
    struct {
        const char *json;
        lp_status st;
        const char *msg;
    } cases[] = {
        {"[]", LP_ERR_MALFORMED, "expected an object"},
        {"{\"entries\":[]}", LP_ERR_MALFORMED, "manifest_version"},
        {"{\"entries\":[],\"manifest_version\":2}", LP_ERR_UNSUPPORTED, "manifest_version 2"},
        {"{\"entries\":{},\"manifest_version\":1}", LP_ERR_MALFORMED, "entries"},
        {"{\"entries\":[],\"manifest_version\":1,\"x\":1}", LP_ERR_MALFORMED, "unknown field \"x\""},
        {DOC("1"), LP_ERR_MALFORMED, "entries[0]: expected an object"},
        {DOC(F(",\"extra\":true")), LP_ERR_MALFORMED, "unknown field \"extra\""},
        {DOC("{\"path\":\"a\",\"type\":\"file\"}"), LP_ERR_MALFORMED, "entries[0].mode: missing"},
        {DOC("{\"mode\":\"0644\",\"path\":\"a\",\"sha256\":\"" SHA_A "\",\"size\":\"1\",\"type\":\"file\"}"),
         LP_ERR_MALFORMED, "entries[0].size"},
        {DOC("{\"mode\":\"0644\",\"path\":\"a\",\"sha256\":\"" SHA_A "\",\"size\":-1,\"type\":\"file\"}"),
         LP_ERR_MALFORMED, "entries[0].size"},
        {DOC("{\"mode\":\"0644\",\"path\":\"a\",\"sha256\":\"ABC\",\"size\":1,\"type\":\"file\"}"),
         LP_ERR_MALFORMED, "sha256 must be"},
        {DOC("{\"mode\":\"0600\",\"path\":\"a\",\"sha256\":\"" SHA_A "\",\"size\":1,\"type\":\"file\"}"),
         LP_ERR_MALFORMED, "mode must be"},
        {DOC("{\"mode\":420,\"path\":\"a\",\"sha256\":\"" SHA_A "\",\"size\":1,\"type\":\"file\"}"),
         LP_ERR_MALFORMED, "entries[0].mode"},
        {DOC("{\"path\":\"a\",\"type\":\"fifo\"}"), LP_ERR_MALFORMED, "unknown type \"fifo\""},
        {DOC("{\"path\":\"a\",\"type\":\"dir\",\"mode\":\"0755\"}"), LP_ERR_MALFORMED,
         "unknown field \"mode\""},
        {DOC("{\"path\":\"b\",\"type\":\"dir\"},{\"path\":\"a\",\"type\":\"dir\"}"),
         LP_ERR_MALFORMED, "entries[1] \"a\": not in sorted order"},
        {DOC("{\"path\":\"a\",\"type\":\"dir\"},{\"path\":\"a\",\"type\":\"dir\"}"),
         LP_ERR_MALFORMED, "entries[1] \"a\": duplicate path"},
        {DOC("{\"path\":\"a/b\",\"type\":\"dir\"}"), LP_ERR_MALFORMED,
         "\"a/b\": folder \"a\" not listed"},
        {DOC("{\"path\":\"a\\u0000b\",\"type\":\"dir\"}"), LP_ERR_MALFORMED, "NUL"},
        {DOC("{\"path\":\"../a\",\"type\":\"dir\"}"), LP_ERR_MALFORMED, "'..' component"},
        {DOC("{\"path\":\"/a\",\"type\":\"dir\"}"), LP_ERR_MALFORMED, "absolute"},
        {DOC("{\"path\":\"l\",\"target\":\"../../etc\",\"type\":\"symlink\"}"), LP_ERR_MALFORMED,
         "leaves the bundle"},
        {DOC("{\"path\":\"l\",\"type\":\"symlink\"}"), LP_ERR_MALFORMED, "entries[0].target: missing"},
        {DOC("{\"path\":7,\"type\":\"dir\"}"), LP_ERR_MALFORMED, "entries[0].path"},
        {"{\"entries\":[],\"manifest_version\":1} x", LP_ERR_MALFORMED, "manifest"},
        {"{\"entries\":[],\"entries\":[],\"manifest_version\":1}", LP_ERR_MALFORMED, "manifest"},
        {"", LP_ERR_MALFORMED, "manifest"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lp_manifest m;
        lp_error err;
        lp_status st = lp_manifest_from_json(cases[i].json, strlen(cases[i].json), &m, &err);
        if (st != cases[i].st || !strstr(err.msg, cases[i].msg))
            fail_msg("case %zu: got %s \"%s\", want %s \"%s\"", i, lp_status_name(st), err.msg,
                     lp_status_name(cases[i].st), cases[i].msg);
        assert_int_equal(m.count, 0);
        assert_null(m.entries);
    }
    /* The base file entry itself parses. */
    lp_manifest m;
    lp_error err;
    const char *good = DOC(F(""));
    assert_int_equal(lp_manifest_from_json(good, strlen(good), &m, &err), LP_OK);
    assert_int_equal(m.count, 1);
    assert_int_equal(m.entries[0].size, 1);
    lp_manifest_free(&m);
#undef F
#undef DOC
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_json), cmocka_unit_test(test_mode),
        cmocka_unit_test(test_paths),          cmocka_unit_test(test_targets),
        cmocka_unit_test(test_tree_checks),    cmocka_unit_test(test_parse_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
