/*
 * test_tuf_list.c — listing the top-level targets by name prefix after a
 * refresh: refused before a refresh, sorted by name, prefix filtering, the
 * entry fields (length, sha256, custom JSON, role) equal to what a lookup
 * gives, delegated roles left out, the count bound, and a later refresh
 * seeing a removed target gone.  The repository is written with livepush's
 * writer and served over HTTP on loopback.
 */
#include "httpd.h"
#include "livepush/hash.h"
#include "livepush/tuf.h"
#include "livepush/tuf_repo.h"
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

typedef struct world {
    char *dir, *repo, *meta;
    lp_key *k;
    lp_tuf_repo *r;
    lp_test_httpd *httpd;
    char murl[200], turl[200];
} world;

static void add(world *w, const char *role, const char *name, const char *content,
                const char *custom)
{
    lp_error err;
    if (lp_tuf_repo_add_target(w->r, role, name, content, strlen(content), custom,
                               LP_TUF_HASH_SHA256, &err))
        fail_msg("add %s to %s: %s", name, role, err.msg);
}

static void publish(world *w)
{
    lp_error err;
    const lp_key *keys[] = {w->k};
    if (lp_tuf_repo_publish(w->r, keys, 1, &err))
        fail_msg("publish: %s", err.msg);
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    assert_non_null(w->dir = lp_test_tmpdir("tuflist"));
    w->repo = lp_test_join(w->dir, "repo");
    w->meta = lp_test_join(w->dir, "client");
    lp_error err;
    assert_int_equal(lp_key_generate(&w->k, LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_create(&w->r, w->repo, &err), LP_OK);
    const char *roles[] = {"root", "targets", "snapshot", "timestamp"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(lp_tuf_repo_add_key(w->r, roles[i], w->k, &err), LP_OK);
    /* Inserted out of order on purpose: the listing sorts. */
    add(w, "targets", "releases/2.json", "two", "{\"version_code\":2,\"b\":[1],\"a\":\"x\"}");
    add(w, "targets", "releases/10.json", "ten!", "{\"version_code\":10}");
    add(w, "targets", "releases/1.json", "one", NULL);
    add(w, "targets", "other/readme.txt", "not a release", NULL);
    const char *paths[] = {"releases/*"};
    assert_int_equal(lp_tuf_repo_delegate(w->r, "targets", "extra", paths, 1, false, 1, &err),
                     LP_OK);
    assert_int_equal(lp_tuf_repo_add_key(w->r, "extra", w->k, &err), LP_OK);
    add(w, "extra", "releases/99.json", "delegated", NULL);
    publish(w);
    w->httpd = lp_test_httpd_start(w->repo);
    assert_non_null(w->httpd);
    snprintf(w->murl, sizeof w->murl, "%s/metadata", lp_test_httpd_url(w->httpd));
    snprintf(w->turl, sizeof w->turl, "%s/targets", lp_test_httpd_url(w->httpd));
    char *root = lp_test_join(w->repo, "metadata/1.root.json");
    assert_int_equal(lp_tuf_init_trusted_root(w->meta, root, &err), LP_OK);
    free(root);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    lp_test_httpd_stop(w->httpd);
    lp_tuf_repo_free(w->r);
    lp_key_free(w->k);
    lp_test_rmtree(w->dir);
    free(w->dir);
    free(w->repo);
    free(w->meta);
    free(w);
    return 0;
}

static lp_tuf_client *open_client(world *w, bool refresh)
{
    lp_tuf_client_config cfg = {.metadata_dir = w->meta, .metadata_url = w->murl,
                                .targets_url = w->turl};
    lp_tuf_client *c = NULL;
    lp_error err;
    assert_int_equal(lp_tuf_client_open(&c, &cfg, &err), LP_OK);
    if (refresh && lp_tuf_client_refresh(c, NULL, &err))
        fail_msg("refresh: %s", err.msg);
    return c;
}

static void sha_hex(const char *s, char out[65])
{
    uint8_t md[LP_HASH_MAX_LEN];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, s, strlen(s), md, NULL), LP_OK);
    lp_hex_encode(md, LP_SHA256_LEN, out);
}

static void test_needs_refresh(void **state)
{
    world *w = *state;
    lp_tuf_client *c = open_client(w, false);
    lp_tuf_target_list l = {(lp_tuf_target **)1, 7}; /* overwritten even on failure */
    lp_error err;
    assert_int_equal(lp_tuf_client_list_targets(c, "releases/", 0, &l, &err), LP_ERR_STATE);
    assert_null(l.items);
    assert_int_equal(l.count, 0);
    assert_non_null(strstr(err.msg, "not refreshed"));
    lp_tuf_client_free(c);
}

static void test_prefix_sorted_fields(void **state)
{
    world *w = *state;
    lp_tuf_client *c = open_client(w, true);
    lp_tuf_target_list l;
    lp_error err;
    if (lp_tuf_client_list_targets(c, "releases/", 0, &l, &err))
        fail_msg("list: %s", err.msg);
    /* byte order, top-level role only (releases/99.json is delegated) */
    assert_int_equal(l.count, 3);
    assert_string_equal(lp_tuf_target_name(l.items[0]), "releases/1.json");
    assert_string_equal(lp_tuf_target_name(l.items[1]), "releases/10.json");
    assert_string_equal(lp_tuf_target_name(l.items[2]), "releases/2.json");
    const char *content[] = {"one", "ten!", "two"};
    for (int i = 0; i < 3; i++) {
        char want[65];
        sha_hex(content[i], want);
        assert_int_equal(lp_tuf_target_length(l.items[i]), strlen(content[i]));
        assert_string_equal(lp_tuf_target_sha256(l.items[i]), want);
        assert_string_equal(lp_tuf_target_role(l.items[i]), "targets");
    }
    assert_null(lp_tuf_target_custom_json(l.items[0]));
    assert_string_equal(lp_tuf_target_custom_json(l.items[1]), "{\"version_code\":10}");
    /* canonical JSON: keys sorted */
    assert_string_equal(lp_tuf_target_custom_json(l.items[2]),
                        "{\"a\":\"x\",\"b\":[1],\"version_code\":2}");

    /* identical to a lookup, and downloadable as listed */
    lp_tuf_target *t = NULL;
    assert_int_equal(lp_tuf_client_find_target(c, "releases/2.json", &t, &err), LP_OK);
    assert_string_equal(lp_tuf_target_sha256(t), lp_tuf_target_sha256(l.items[2]));
    assert_string_equal(lp_tuf_target_custom_json(t), lp_tuf_target_custom_json(l.items[2]));
    lp_tuf_target_free(t);
    char *dest = lp_test_join(w->dir, "two.json");
    if (lp_tuf_client_download_target(c, l.items[2], dest, &err))
        fail_msg("download: %s", err.msg);
    char *got = (char *)lp_test_read_file(dest, NULL);
    assert_string_equal(got, "two");
    free(got);
    free(dest);
    lp_tuf_target_list_free(&l);
    assert_null(l.items);
    assert_int_equal(l.count, 0);
    lp_tuf_target_list_free(&l); /* twice is harmless */

    /* everything, and nothing */
    assert_int_equal(lp_tuf_client_list_targets(c, NULL, 0, &l, &err), LP_OK);
    assert_int_equal(l.count, 4);
    assert_string_equal(lp_tuf_target_name(l.items[0]), "other/readme.txt");
    lp_tuf_target_list_free(&l);
    assert_int_equal(lp_tuf_client_list_targets(c, "", 0, &l, &err), LP_OK);
    assert_int_equal(l.count, 4);
    lp_tuf_target_list_free(&l);
    assert_int_equal(lp_tuf_client_list_targets(c, "nothing/", 0, &l, &err), LP_OK);
    assert_int_equal(l.count, 0);
    assert_null(l.items);
    lp_tuf_client_free(c);
}

static void test_bound(void **state)
{
    world *w = *state;
    lp_tuf_client *c = open_client(w, true);
    lp_tuf_target_list l;
    lp_error err;
    assert_int_equal(lp_tuf_client_list_targets(c, "releases/", 2, &l, &err), LP_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "3 targets match, more than the limit of 2"));
    assert_int_equal(l.count, 0);
    assert_int_equal(lp_tuf_client_list_targets(c, "releases/", 3, &l, &err), LP_OK);
    assert_int_equal(l.count, 3);
    lp_tuf_target_list_free(&l);
    lp_tuf_client_free(c);
}

static void test_removed_after_refresh(void **state)
{
    world *w = *state;
    lp_error err;
    assert_int_equal(lp_tuf_repo_remove_target(w->r, "targets", "releases/10.json", &err), LP_OK);
    publish(w);
    lp_tuf_client *c = open_client(w, true);
    lp_tuf_target_list l;
    assert_int_equal(lp_tuf_client_list_targets(c, "releases/", 0, &l, &err), LP_OK);
    assert_int_equal(l.count, 2);
    assert_string_equal(lp_tuf_target_name(l.items[0]), "releases/1.json");
    assert_string_equal(lp_tuf_target_name(l.items[1]), "releases/2.json");
    lp_tuf_target_list_free(&l);
    lp_tuf_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_needs_refresh),
        cmocka_unit_test(test_prefix_sorted_fields),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_removed_after_refresh),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
