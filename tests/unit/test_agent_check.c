/*
 * test_agent_check.c — choosing the release for a device, against real
 * repositories on loopback.
 *
 * With the real service (tests/support/apitest.h): releases published
 * through the management API on several channels, platforms, arches and
 * runtimes; the device's TUF client goes through lp_net to the server's
 * repository routes.  Checks: the highest eligible code wins, every other
 * target is reported with its reason, the manifest arrives verified and
 * parsed, the bad list, the current release (never backwards), the channel,
 * a missing runtime, and a server rollback arriving as a higher code.
 *
 * With a repository written by the TUF writer and served by the test
 * server: malformed custom fields of every kind are skipped with a reason
 * while the good target is still chosen, unknown fields are ignored, a
 * chosen manifest that does not parse fails the check, and a chosen
 * manifest whose bytes were changed on the server is refused by TUF.
 */
#include "agent/net.h"
#include "apitest.h"
#include "core/file.h"
#include "httpd.h"
#include "livepush/hash.h"
#include "livepush/tuf_repo.h"
#include "testutil.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

/* ---- skip reasons ------------------------------------------------------------- */

typedef struct skips {
    char text[8192];
} skips;

static void on_skip(void *ctx, const char *target, const char *reason)
{
    skips *s = ctx;
    size_t n = strlen(s->text);
    snprintf(s->text + n, sizeof s->text - n, "%s: %s\n", target, reason);
}

static void expect_skip(const skips *s, const char *target, const char *part)
{
    char want[256];
    snprintf(want, sizeof want, "%s: ", target);
    const char *line = strstr(s->text, want);
    const char *end = line ? strchr(line, '\n') : NULL;
    if (!line || !end)
        fail_msg("no skip reported for %s; reported:\n%s", target, s->text);
    char buf[1024];
    snprintf(buf, sizeof buf, "%.*s", (int)(end - line), line);
    if (!strstr(buf, part))
        fail_msg("%s: expected a reason containing '%s', got '%s'", target, part, buf);
}

/* ---- the device ---------------------------------------------------------------- */

typedef struct device {
    char *dir, *state;
    lp_net *net;
    lp_tuf_client *tuf;
} device;

static void device_open(device *d, const char *server, const char *app, const char *root_json)
{
    memset(d, 0, sizeof *d);
    assert_non_null(d->dir = lp_test_tmpdir("agentcheck"));
    d->state = lp_test_join(d->dir, ".livepush");
    char *meta = lp_test_join(d->state, "metadata");
    lp_error err;
    if (lp_tuf_init_trusted_root(meta, root_json, &err))
        fail_msg("trusted root: %s", err.msg);
    free(meta);
    lp_net_config c = {.server_url = server, .app = app, .state_dir = d->state,
                       .attempts = 2, .backoff_base_ms = 5, .backoff_max_ms = 10};
    if (lp_net_open(&c, &d->net, &err))
        fail_msg("net: %s", err.msg);
    if (lp_net_open_tuf(d->net, &d->tuf, &err))
        fail_msg("tuf: %s", err.msg);
}

static void device_close(device *d)
{
    lp_tuf_client_free(d->tuf);
    lp_net_close(d->net);
    lp_test_rmtree(d->dir);
    free(d->dir);
    free(d->state);
}

static lp_check_opts opts_for(device *d, skips *s)
{
    memset(s, 0, sizeof *s);
    char *work = lp_test_join(d->state, "downloads");
    static char work_buf[512];
    snprintf(work_buf, sizeof work_buf, "%s", work);
    free(work);
    return (lp_check_opts){.channel = "stable", .platform = "linux", .arch = "x86_64",
                           .runtime_version = "rt1", .work_dir = work_buf,
                           .on_skip = on_skip, .skip_ctx = s};
}

/* Runs a check that must succeed; returns whether an offer was made. */
static bool check(device *d, const lp_check_opts *o, lp_update_offer *offer)
{
    bool available = true;
    lp_error err;
    if (lp_check_for_update(d->tuf, o, offer, &available, &err))
        fail_msg("check: %s", err.msg);
    return available;
}

/* The work folder holds no leftover manifest download. */
static void expect_work_dir_clean(const char *dir)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL)
        if (strstr(e->d_name, "manifest"))
            fail_msg("leftover in %s: %s", dir, e->d_name);
    closedir(dh);
}

/* ---- against the real service ------------------------------------------------------ */

static void publish(lp_apitest *t, const char *app, const char *content, const char *version,
                    const char *fields)
{
    char id[64], path[128], req[1024];
    assert_int_equal(lp_apitest_upload(t, t->admin, app, content, strlen(content),
                                       strlen(content), 1, id),
                     0);
    snprintf(path, sizeof path, "/api/v1/apps/%s/releases", app);
    snprintf(req, sizeof req,
             "{\"upload\":\"%s\",\"version\":\"%s\",\"kind\":\"file\",\"file_name\":\"f.txt\"%s}",
             id, version, fields);
    json_t *j = lp_apitest_json(t, "POST", path, t->admin, req, 201);
    assert_non_null(j);
    json_decref(j);
}

static void test_service_choice(void **state)
{
    (void)state;
    lp_apitest *t = lp_apitest_start(0);
    assert_non_null(t);
    json_t *j = lp_apitest_json(t, "POST", "/api/v1/apps", t->admin, "{\"name\":\"shop\"}", 201);
    assert_non_null(j);
    json_decref(j);
    char *root = lp_test_join(t->dir, "repos/shop/metadata/1.root.json");
    device d;
    device_open(&d, t->base, "shop", root);
    free(root);
    skips s;
    lp_check_opts o = opts_for(&d, &s);
    lp_update_offer offer;

    /* nothing published yet */
    assert_false(check(&d, &o, &offer));
    assert_int_equal(offer.considered, 0);

    publish(t, "shop", "one\n", "1.0", ",\"channels\":[\"stable\"]");
    publish(t, "shop", "two\n", "2.0", ",\"channels\":[\"beta\"]");
    publish(t, "shop", "three\n", "3.0",
            ",\"channels\":[\"stable\",\"beta\"],\"mandatory\":true,\"notes\":\"fixes:\\n- one\\n\\tand two\","
            "\"platform\":\"linux\",\"arch\":\"x86_64\",\"runtime_version\":\"rt1\"");
    publish(t, "shop", "four\n", "4.0", ",\"channels\":[\"stable\"],\"platform\":\"windows\"");
    publish(t, "shop", "five\n", "5.0", ",\"channels\":[\"stable\"],\"arch\":\"aarch64\"");
    publish(t, "shop", "six\n", "6.0", ",\"channels\":[\"stable\"],\"runtime_version\":\"rt2\"");

    assert_true(check(&d, &o, &offer));
    assert_string_equal(offer.version, "3.0");
    assert_int_equal(offer.version_code, 3);
    assert_true(offer.mandatory);
    assert_string_equal(offer.notes, "fixes:\n- one\n\tand two"); /* raw in canonical JSON */
    assert_int_equal(offer.rollback_of, 0);
    assert_string_equal(offer.target, "releases/3.json");
    assert_int_equal(strlen(offer.manifest_sha256), 64);
    assert_int_equal(offer.considered, 6);
    assert_int_equal(offer.malformed, 0);
    assert_true(offer.manifest.finished);
    const lp_manifest_entry *e = lp_manifest_find(&offer.manifest, "f.txt");
    assert_non_null(e);
    assert_int_equal(e->type, LP_ENTRY_FILE);
    assert_int_equal(e->size, 6);
    char want[65];
    uint8_t md[LP_HASH_MAX_LEN];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, "three\n", 6, md, NULL), LP_OK);
    lp_hex_encode(md, LP_SHA256_LEN, want);
    assert_string_equal(e->sha256, want);
    expect_skip(&s, "releases/1.json", "lower than 3");
    expect_skip(&s, "releases/2.json", "not published on channel stable");
    expect_skip(&s, "releases/4.json", "for platform windows, this device is linux");
    expect_skip(&s, "releases/5.json", "for arch aarch64, this device is x86_64");
    expect_skip(&s, "releases/6.json", "needs runtime rt2, this device has rt1");
    expect_work_dir_clean(o.work_dir);

    /* the blob the manifest names comes through the same connection */
    char *dest = lp_test_join(d.dir, "f.txt");
    lp_error err;
    if (lp_net_fetch_blob(d.net, e->sha256, e->size, dest, &err))
        fail_msg("blob: %s", err.msg);
    char *got = (char *)lp_test_read_file(dest, NULL);
    assert_string_equal(got, "three\n");
    free(got);
    free(dest);
    lp_update_offer_free(&offer);
    assert_null(offer.version);
    lp_update_offer_free(&offer); /* twice is harmless */

    /* marked bad: the next best */
    uint64_t bad[] = {3};
    o = opts_for(&d, &s);
    o.bad_ids = bad;
    o.bad_count = 1;
    assert_true(check(&d, &o, &offer));
    assert_int_equal(offer.version_code, 1);
    assert_false(offer.mandatory);
    assert_null(offer.notes);
    expect_skip(&s, "releases/3.json", "marked bad on this device");
    lp_update_offer_free(&offer);

    /* never backwards */
    o = opts_for(&d, &s);
    o.current_id = 3;
    assert_false(check(&d, &o, &offer));
    assert_null(offer.version);
    expect_skip(&s, "releases/1.json", "not newer than the current 3");
    expect_skip(&s, "releases/3.json", "not newer than the current 3");

    /* another channel */
    o = opts_for(&d, &s);
    o.channel = "beta";
    assert_true(check(&d, &o, &offer));
    assert_int_equal(offer.version_code, 3);
    lp_update_offer_free(&offer);
    o.current_id = 3;
    assert_false(check(&d, &o, &offer));

    /* no runtime: releases that need one are not for this device */
    o = opts_for(&d, &s);
    o.runtime_version = NULL;
    assert_true(check(&d, &o, &offer));
    assert_int_equal(offer.version_code, 1);
    expect_skip(&s, "releases/3.json", "needs runtime rt1, this device has none");
    lp_update_offer_free(&offer);

    /* a server rollback to 1.0 arrives as a higher code */
    j = lp_apitest_json(t, "POST", "/api/v1/apps/shop/rollback", t->admin,
                        "{\"target\":\"1.0\",\"channels\":[\"stable\"]}", 201);
    assert_non_null(j);
    json_decref(j);
    o = opts_for(&d, &s);
    o.current_id = 3;
    assert_true(check(&d, &o, &offer));
    assert_int_equal(offer.version_code, 7);
    assert_string_equal(offer.version, "1.0");
    assert_int_equal(offer.rollback_of, 1);
    assert_non_null(lp_manifest_find(&offer.manifest, "f.txt"));
    lp_update_offer_free(&offer);

    /* bad arguments */
    o.channel = NULL;
    bool available = true;
    assert_int_equal(lp_check_for_update(d.tuf, &o, &offer, &available, &err),
                     LP_ERR_INVALID_ARG);
    assert_false(available);
    device_close(&d);
    lp_apitest_stop(t);
}

/* ---- against a repository written by hand ------------------------------------------ */

typedef struct repo {
    char *dir, *www, *appdir;
    lp_key *k;
    lp_tuf_repo *r;
    lp_test_httpd *httpd;
} repo;

static void repo_add(repo *rp, const char *name, const char *content, const char *custom)
{
    lp_error err;
    if (lp_tuf_repo_add_target(rp->r, "targets", name, content, strlen(content), custom,
                               LP_TUF_HASH_SHA256, &err))
        fail_msg("add %s: %s", name, err.msg);
}

static void repo_publish(repo *rp)
{
    lp_error err;
    const lp_key *keys[] = {rp->k};
    if (lp_tuf_repo_publish(rp->r, keys, 1, &err))
        fail_msg("publish: %s", err.msg);
}

/* A valid manifest of one file, as JSON (new string). */
static char *manifest_json(const char *file, const char *content)
{
    lp_manifest m;
    lp_manifest_init(&m);
    uint8_t md[LP_HASH_MAX_LEN];
    char hex[65];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, content, strlen(content), md, NULL), LP_OK);
    lp_hex_encode(md, LP_SHA256_LEN, hex);
    lp_error err;
    assert_int_equal(lp_manifest_add_file(&m, file, 0644, strlen(content), hex, &err), LP_OK);
    assert_int_equal(lp_manifest_finish(&m, &err), LP_OK);
    char *text;
    size_t len;
    assert_int_equal(lp_manifest_to_json(&m, &text, &len, &err), LP_OK);
    lp_manifest_free(&m);
    return text;
}

#define GOOD(code) "{\"channels\":[\"stable\"],\"mandatory\":false,\"version\":\"v" #code \
                   "\",\"version_code\":" #code

static void test_malformed_custom(void **state)
{
    (void)state;
    repo rp = {0};
    assert_non_null(rp.dir = lp_test_tmpdir("agentrepo"));
    rp.www = lp_test_join(rp.dir, "www");
    rp.appdir = lp_test_join(rp.www, "v1/apps/demo");
    lp_error err;
    assert_int_equal(lp_file_mkdirs(rp.appdir, 0755, &err), LP_OK);
    assert_int_equal(lp_key_generate(&rp.k, LP_KEY_ED25519, &err), LP_OK);
    char *repo_dir = lp_test_join(rp.dir, "repo");
    assert_int_equal(lp_tuf_repo_create(&rp.r, rp.appdir, &err), LP_OK);
    free(repo_dir);
    const char *roles[] = {"root", "targets", "snapshot", "timestamp"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(lp_tuf_repo_add_key(rp.r, roles[i], rp.k, &err), LP_OK);

    char *m1 = manifest_json("a.txt", "alpha");
    /* the good one, with a field this version does not know */
    repo_add(&rp, "releases/1.json", m1, GOOD(1) ",\"rollout\":{\"percent\":10}}");
    repo_add(&rp, "releases/2.json", m1,
             "{\"channels\":[\"stable\"],\"version\":\"v2\",\"version_code\":2}");
    repo_add(&rp, "releases/3.json", m1,
             "{\"channels\":\"stable\",\"mandatory\":false,\"version\":\"v3\","
             "\"version_code\":3}");
    repo_add(&rp, "releases/4.json", m1, GOOD(5) "}");
    repo_add(&rp, "releases/5.json", m1, NULL);
    repo_add(&rp, "releases/6.json", m1,
             "{\"channels\":[\"stable\"],\"mandatory\":false,\"version\":\"v\\u0001\","
             "\"version_code\":6}");
    repo_add(&rp, "releases/7.json", m1,
             "{\"channels\":[\"stable\"],\"mandatory\":false,\"version\":\"v7\","
             "\"version_code\":\"7\"}");
    repo_add(&rp, "releases/8.json", m1, GOOD(8) ",\"platform\":7}");
    repo_add(&rp, "releases/9.json", m1,
             "{\"channels\":[],\"mandatory\":false,\"version\":\"v9\",\"version_code\":9}");
    repo_add(&rp, "releases/10.json", m1, GOOD(10) ",\"rollback_of\":0}");
    repo_add(&rp, "releases/11.json", m1, "{\"note\":\"nothing else\"}");
    repo_add(&rp, "other/12.json", m1, GOOD(12) "}"); /* outside releases/: not considered */
    /* the highest good release, with a manifest that does not parse */
    repo_add(&rp, "releases/20.json", "{\"entries\":[]}", GOOD(20) "}");
    repo_publish(&rp);
    assert_non_null(rp.httpd = lp_test_httpd_start(rp.www));
    char *root = lp_test_join(rp.appdir, "metadata/1.root.json");
    device d;
    device_open(&d, lp_test_httpd_url(rp.httpd), "demo", root);
    free(root);
    skips s;
    lp_check_opts o = opts_for(&d, &s);
    lp_update_offer offer;
    bool available = true;
    assert_int_equal(lp_check_for_update(d.tuf, &o, &offer, &available, &err),
                     LP_ERR_MALFORMED);
    assert_false(available);
    if (!strstr(err.msg, "release v20 (code 20)") || !strstr(err.msg, "releases/20.json"))
        fail_msg("message: %s", err.msg);
    assert_null(offer.version);
    assert_int_equal(offer.considered, 12);
    assert_int_equal(offer.malformed, 10);
    expect_work_dir_clean(o.work_dir);

    /* without it the good one is chosen; the malformed are reported */
    lp_error e2;
    assert_int_equal(lp_tuf_repo_remove_target(rp.r, "targets", "releases/20.json", &e2), LP_OK);
    repo_publish(&rp);
    o = opts_for(&d, &s);
    assert_true(check(&d, &o, &offer));
    assert_int_equal(offer.version_code, 1);
    assert_string_equal(offer.version, "v1");
    assert_int_equal(offer.considered, 11);
    assert_int_equal(offer.malformed, 10);
    assert_non_null(lp_manifest_find(&offer.manifest, "a.txt"));
    lp_update_offer_free(&offer);
    expect_skip(&s, "releases/2.json", "custom field mandatory");
    expect_skip(&s, "releases/3.json", "custom field channels");
    expect_skip(&s, "releases/4.json", "does not match version_code 5");
    expect_skip(&s, "releases/5.json", "no custom part");
    expect_skip(&s, "releases/6.json", "custom field version");
    expect_skip(&s, "releases/7.json", "custom field version_code");
    expect_skip(&s, "releases/8.json", "custom field platform");
    expect_skip(&s, "releases/9.json", "custom field channels");
    expect_skip(&s, "releases/10.json", "custom field rollback_of");
    expect_skip(&s, "releases/11.json", "custom field version:");
    assert_null(strstr(s.text, "other/12.json"));
    assert_null(strstr(s.text, "releases/1.json"));

    /* the manifest's bytes changed on the server: TUF refuses them */
    repo_add(&rp, "releases/21.json", m1, GOOD(21) "}");
    repo_publish(&rp);
    char sha[65];
    uint8_t md[LP_HASH_MAX_LEN];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, m1, strlen(m1), md, NULL), LP_OK);
    lp_hex_encode(md, LP_SHA256_LEN, sha);
    char rel[128];
    snprintf(rel, sizeof rel, "targets/releases/%s.21.json", sha);
    char *served = lp_test_join(rp.appdir, rel);
    assert_int_equal(lp_file_exists(served), 1);
    char *evil = strdup(m1);
    evil[strlen(evil) - 2] ^= 1; /* same length, other bytes */
    assert_int_equal(unlink(served), 0);
    assert_int_equal(lp_test_write_str(served, evil), 0);
    o = opts_for(&d, &s);
    assert_int_equal(lp_check_for_update(d.tuf, &o, &offer, &available, &err),
                     LP_ERR_HASH_MISMATCH);
    assert_false(available);
    assert_non_null(strstr(err.msg, "releases/21.json"));
    expect_work_dir_clean(o.work_dir);
    free(evil);
    free(served);

    free(m1);
    device_close(&d);
    lp_test_httpd_stop(rp.httpd);
    lp_tuf_repo_free(rp.r);
    lp_key_free(rp.k);
    lp_test_rmtree(rp.dir);
    free(rp.dir);
    free(rp.www);
    free(rp.appdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_service_choice),
        cmocka_unit_test(test_malformed_custom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
