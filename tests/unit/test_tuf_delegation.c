/*
 * test_tuf_delegation.c — the target search through delegated roles:
 * pre-order depth-first order, terminating cut-off, the bound on roles
 * visited, cycles, hash-prefix delegations and URL-quoted role names.
 * Repositories are written with livepush's writer and served over HTTP.
 */
#include "core/file.h"
#include "httpd.h"
#include "livepush/hash.h"
#include "livepush/tuf.h"
#include "livepush/tuf_repo.h"
#include "tuf/json.h"
#include "tuf/metadata.h"
#include "tuf/tufkey.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

typedef struct world {
    char dir[64], repo[128], meta[128];
    lp_key *k; /* one key signs every role: the search is what is tested */
    lp_tuf_repo *r;
    lp_test_httpd *httpd;
    char murl[200], turl[200];
} world;

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    snprintf(w->dir, sizeof w->dir, "/tmp/lp-deleg-XXXXXX");
    assert_non_null(mkdtemp(w->dir));
    snprintf(w->repo, sizeof w->repo, "%s/repo", w->dir);
    snprintf(w->meta, sizeof w->meta, "%s/client", w->dir);
    lp_error err;
    assert_int_equal(lp_key_generate(&w->k, LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_create(&w->r, w->repo, &err), LP_OK);
    const char *roles[] = {"root", "targets", "snapshot", "timestamp"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(lp_tuf_repo_add_key(w->r, roles[i], w->k, &err), LP_OK);
    *state = w;
    return 0;
}

static void serve(world *w)
{
    lp_error err;
    const lp_key *keys[] = {w->k};
    if (lp_tuf_repo_publish(w->r, keys, 1, &err))
        fail_msg("publish: %s", err.msg);
    if (!w->httpd) {
        w->httpd = lp_test_httpd_start(w->repo);
        snprintf(w->murl, sizeof w->murl, "%s/metadata", lp_test_httpd_url(w->httpd));
        snprintf(w->turl, sizeof w->turl, "%s/targets", lp_test_httpd_url(w->httpd));
        char root[200];
        snprintf(root, sizeof root, "%s/metadata/1.root.json", w->repo);
        assert_int_equal(lp_tuf_init_trusted_root(w->meta, root, &err), LP_OK);
    }
}

static int teardown(void **state)
{
    world *w = *state;
    if (w->httpd)
        lp_test_httpd_stop(w->httpd);
    lp_tuf_repo_free(w->r);
    lp_key_free(w->k);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
    assert_int_equal(system(cmd), 0);
    free(w);
    return 0;
}

static void delegate(world *w, const char *from, const char *to, const char *path, bool term)
{
    lp_error err;
    const char *paths[] = {path};
    if (lp_tuf_repo_delegate(w->r, from, to, paths, 1, term, 1, &err))
        fail_msg("delegate %s -> %s: %s", from, to, err.msg);
    assert_int_equal(lp_tuf_repo_add_key(w->r, to, w->k, &err), LP_OK);
}

static void add(world *w, const char *role, const char *name, const char *content)
{
    lp_error err;
    if (lp_tuf_repo_add_target(w->r, role, name, content, strlen(content), NULL,
                               LP_TUF_HASH_SHA256, &err))
        fail_msg("add %s to %s: %s", name, role, err.msg);
}

/* Looks `name` up with a fresh client; returns the status, and the role
 * that listed it in `role` (when found). */
static lp_status lookup(world *w, const char *name, uint32_t max_roles, char *role, size_t cap,
                        lp_error *err)
{
    lp_tuf_client_config cfg = {.metadata_dir = w->meta, .metadata_url = w->murl,
                                .targets_url = w->turl};
    cfg.limits.max_delegations = max_roles;
    lp_tuf_client *c;
    assert_int_equal(lp_tuf_client_open(&c, &cfg, err), LP_OK);
    if (lp_tuf_client_refresh(c, NULL, err))
        fail_msg("refresh: %s", err->msg);
    lp_tuf_target *t = NULL;
    lp_status st = lp_tuf_client_find_target(c, name, &t, err);
    if (!st) {
        snprintf(role, cap, "%s", lp_tuf_target_role(t));
        char dest[200];
        snprintf(dest, sizeof dest, "%s/dl", w->dir);
        st = lp_tuf_client_download_target(c, t, dest, err);
    }
    lp_tuf_target_free(t);
    lp_tuf_client_free(c);
    return st;
}

static void expect_role(world *w, const char *name, const char *want)
{
    char role[100] = "";
    lp_error err;
    lp_status st = lookup(w, name, 0, role, sizeof role, &err);
    if (!want) {
        if (st != LP_ERR_NOT_FOUND)
            fail_msg("%s: expected not found, got %s (%s) from %s", name, lp_status_name(st),
                     err.msg, role);
        return;
    }
    if (st)
        fail_msg("%s: %s", name, err.msg);
    if (strcmp(role, want))
        fail_msg("%s: found in %s, expected %s", name, role, want);
}

/* Pre-order: own targets, then children in order; terminating cuts off. */
static void test_search_order(void **state)
{
    world *w = *state;
    delegate(w, "targets", "first", "apps/*", true);
    delegate(w, "targets", "second", "*/*", false);
    delegate(w, "first", "first-child", "apps/*", false);
    add(w, "targets", "top.txt", "top");
    add(w, "first", "apps/a", "first a");
    add(w, "first-child", "apps/a", "child a");     /* shadowed by its parent */
    add(w, "first-child", "apps/b", "child b");
    add(w, "second", "apps/c", "second c");         /* cut off by terminating first */
    add(w, "second", "docs/d", "second d");
    serve(w);
    expect_role(w, "top.txt", "targets");
    expect_role(w, "apps/a", "first");
    expect_role(w, "apps/b", "first-child");
    expect_role(w, "apps/c", NULL);
    expect_role(w, "docs/d", "second");
    expect_role(w, "docs/none", NULL);
    expect_role(w, "a/b/c", NULL);
}

/* A chain longer than the bound on roles visited: not found with a reason,
 * found once the bound allows it. */
static void test_max_roles(void **state)
{
    world *w = *state;
    char prev[32] = "targets";
    for (int i = 0; i < 40; i++) {
        char name[32];
        snprintf(name, sizeof name, "link-%02d", i);
        delegate(w, prev, name, "deep/*", false);
        snprintf(prev, sizeof prev, "%s", name);
    }
    add(w, prev, "deep/end.txt", "the end");
    serve(w);
    char role[64] = "";
    lp_error err;
    assert_int_equal(lookup(w, "deep/end.txt", 0, role, sizeof role, &err), LP_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "maximum number of roles"));
    assert_int_equal(lookup(w, "deep/end.txt", 64, role, sizeof role, &err), LP_OK);
    assert_string_equal(role, "link-39");
}

/* Signs a metadata document in place with key k (replacing signatures). */
static void resign(json_t *doc, const lp_key *k)
{
    char *canon, *kjson, keyid[65];
    size_t clen;
    assert_int_equal(lp_cjson_dumps(json_object_get(doc, "signed"), &canon, &clen, NULL), LP_OK);
    uint8_t *sig;
    size_t slen;
    assert_int_equal(lp_key_sign(k, canon, clen, &sig, &slen, NULL), LP_OK);
    char *hex = malloc(2 * slen + 1);
    lp_hex_encode(sig, slen, hex);
    assert_int_equal(lp_tuf_key_to_json(k, &kjson, keyid, NULL), LP_OK);
    json_object_set_new(doc, "signatures",
                        json_pack("[{s:s, s:s}]", "keyid", keyid, "sig", hex));
    free(kjson);
    free(hex);
    free(sig);
    free(canon);
}

/* A delegation cycle (a -> b -> a) ends: each role is visited once. */
static void test_cycle(void **state)
{
    world *w = *state;
    delegate(w, "targets", "a", "*", false);
    delegate(w, "a", "b", "*", false);
    add(w, "b", "in-b.txt", "b");
    serve(w);
    /* b's metadata gains a delegation back to a, signed by b's key. */
    char path[300];
    snprintf(path, sizeof path, "%s/metadata/1.b.json", w->repo);
    uint8_t *data;
    size_t len;
    assert_int_equal(lp_file_read(path, 1 << 20, &data, &len, NULL), LP_OK);
    json_t *doc;
    assert_int_equal(lp_json_parse(data, len, NULL, &doc, NULL), LP_OK);
    free(data);
    json_t *key;
    char keyid[65];
    assert_int_equal(lp_tuf_key_json_new(w->k, &key, NULL), LP_OK);
    assert_int_equal(lp_tuf_keyid(key, keyid, NULL), LP_OK);
    json_t *deleg = json_pack("{s:{s:o}, s:[{s:s, s:[s], s:i, s:b, s:[s]}]}", "keys", keyid, key,
                              "roles", "name", "a", "keyids", keyid, "threshold", 1,
                              "terminating", 0, "paths", "*");
    json_object_set_new(json_object_get(doc, "signed"), "delegations", deleg);
    resign(doc, w->k);
    char *out;
    assert_int_equal(lp_json_dump_compact(doc, &out, &len, NULL), LP_OK);
    assert_int_equal(lp_file_write_atomic(path, out, len, 0644, NULL), LP_OK);
    free(out);
    json_decref(doc);
    expect_role(w, "in-b.txt", "b");
    char role[64];
    lp_error err;
    assert_int_equal(lookup(w, "nowhere.txt", 0, role, sizeof role, &err), LP_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "no role on the search path lists it"));
}

/* A delegated role is fetched as N.<role>.json and cached as <role>.json. */
static void test_role_file_names(void **state)
{
    world *w = *state;
    delegate(w, "targets", "team.a_b-c", "x/*", false);
    add(w, "team.a_b-c", "x/y", "quoted");
    serve(w);
    expect_role(w, "x/y", "team.a_b-c");
    char cached[300];
    snprintf(cached, sizeof cached, "%s/team.a_b-c.json", w->meta);
    assert_true(lp_file_exists(cached));
}

/* path_hash_prefixes delegations match on the sha256 of the target path. */
static void test_hash_prefix_match(void **state)
{
    (void)state;
    uint8_t d[LP_HASH_MAX_LEN];
    char hex[65];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, "apps/x", 6, d, NULL), LP_OK);
    lp_hex_encode(d, 32, hex);
    char prefix[3] = {hex[0], hex[1], 0};
    char other[3] = {hex[0] == 'f' ? '0' : 'f', hex[1], 0};
    char *pfx[] = {other, prefix};
    lp_md_role r = {.name = "bins", .hash_prefixes = pfx, .nprefixes = 2};
    assert_true(lp_md_role_matches(&r, "apps/x"));
    r.nprefixes = 1;
    assert_false(lp_md_role_matches(&r, "apps/x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_search_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_roles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_role_file_names, setup, teardown),
        cmocka_unit_test(test_hash_prefix_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
