/*
 * test_rollout.c — staged rollouts, pause and halt, A/B splits and
 * maintenance windows as devices evaluate them, and the trust the rollout
 * role gets.
 *
 * The cohort arithmetic on its own: the bucket is the documented formula
 * (recomputed here with a plain SHA-256), raising a rollout only adds
 * devices and reaches about the share asked, an A/B arm is sticky and
 * weighted, windows (crossing midnight too), and every malformed policy
 * refused.
 *
 * Trust, with a repository written by the TUF writer whose release key,
 * online key and rollout key are three different keys: signing with the
 * online and rollout keys alone (a stolen server), a policy can halt, pause
 * and narrow, but a release listed by the rollout role is never offered
 * (and is not even reachable through the delegation), a policy naming an
 * older version code moves nobody back, the top-level targets cannot be
 * re-signed, and a policy the device cannot read offers nothing.
 *
 * With the real service: the rollout API re-signs the policy with the
 * app's rollout key only, 1000 device ids checked at 10% then 50% land in
 * their cohorts (the first 10% kept), pause and halt stop new installs,
 * and a halt is final (409).
 */
#include "agent/net.h"
#include "apitest.h"
#include "core/file.h"
#include "httpd.h"
#include "livepush/hash.h"
#include "livepush/tuf_repo.h"
#include "livepush/tuf_sign.h"
#include "testutil.h"
#include "tuf/json.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static void device_id(unsigned i, char out[33])
{
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)i * 0x9e3779b97f4a7c15ull,
             (unsigned long long)i + 1);
}

static void parse_policy(const char *json, lp_rollout_policy *p, lp_status want)
{
    json_t *doc = NULL;
    lp_error err;
    assert_int_equal(lp_json_parse(json, strlen(json), NULL, &doc, &err), LP_OK);
    lp_status st = lp_rollout_policy_parse(doc, "stable", p, &err);
    json_decref(doc);
    if (st != want)
        fail_msg("policy %s: status %d (%s), expected %d", json, st, err.msg, want);
}

#define SALT "0123456789abcdef0123456789abcdef"

/* ---- the arithmetic ---------------------------------------------------------- */

static void test_bucket_formula(void **state)
{
    (void)state;
    const char *text = SALT ":00000000000000aa00000000000000bb:42";
    uint8_t d[LP_HASH_MAX_LEN];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, text, strlen(text), d, NULL), LP_OK);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | d[i];
    assert_int_equal(lp_rollout_bucket(SALT, "00000000000000aa00000000000000bb", 42),
                     (uint32_t)(v % 10000));
    /* another release, another device, another salt: other buckets */
    unsigned same = 0;
    for (unsigned i = 0; i < 100; i++) {
        char id[33];
        device_id(i, id);
        same += lp_rollout_bucket(SALT, id, 1) == lp_rollout_bucket(SALT, id, 2);
    }
    assert_true(same < 5);
}

static void test_cohorts_grow(void **state)
{
    (void)state;
    lp_rollout_policy p10 = {0}, p20 = {0};
    parse_policy("{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":"
                 "[{\"version_code\":7,\"percent_bp\":1000,\"state\":\"active\"}]}",
                 &p10, LP_OK);
    parse_policy("{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":"
                 "[{\"version_code\":7,\"percent_bp\":2000,\"state\":\"active\"}]}",
                 &p20, LP_OK);
    unsigned in10 = 0, in20 = 0;
    char why[256];
    for (unsigned i = 0; i < 10000; i++) {
        char id[33];
        device_id(i, id);
        bool a = lp_rollout_allows(&p10, "stable", id, 7, why, sizeof why);
        bool b = lp_rollout_allows(&p20, "stable", id, 7, why, sizeof why);
        if (a && !b)
            fail_msg("device %s inside at 10%% but not at 20%%", id);
        if (!b)
            assert_non_null(strstr(why, "outside the staged rollout of version code 7"));
        in10 += a;
        in20 += b;
        /* the same answer every time */
        assert_int_equal(lp_rollout_allows(&p10, "stable", id, 7, why, sizeof why), a);
        /* a release the policy does not list is for everyone */
        assert_true(lp_rollout_allows(&p10, "stable", id, 8, why, sizeof why));
    }
    assert_in_range(in10, 900, 1100);
    assert_in_range(in20, 1900, 2100);
    /* no device id: not part of any share */
    assert_false(lp_rollout_allows(&p10, "stable", NULL, 7, why, sizeof why));
    assert_non_null(strstr(why, "no id"));
    lp_rollout_policy_free(&p10);
    lp_rollout_policy_free(&p20);
}

static void test_states_and_split(void **state)
{
    (void)state;
    lp_rollout_policy p = {0};
    parse_policy("{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":["
                 "{\"version_code\":3,\"percent_bp\":10000,\"state\":\"paused\"},"
                 "{\"version_code\":4,\"percent_bp\":10000,\"state\":\"halted\"},"
                 "{\"version_code\":5,\"percent_bp\":10000,\"state\":\"active\",\"weight\":30},"
                 "{\"version_code\":6,\"percent_bp\":10000,\"state\":\"active\",\"weight\":70}]}",
                 &p, LP_OK);
    char why[256], id[33];
    device_id(1, id);
    assert_false(lp_rollout_allows(&p, "stable", id, 3, why, sizeof why));
    assert_non_null(strstr(why, "version code 3 on channel stable is paused"));
    assert_false(lp_rollout_allows(&p, "stable", id, 4, why, sizeof why));
    assert_non_null(strstr(why, "is halted"));
    unsigned arm5 = 0;
    for (unsigned i = 0; i < 4000; i++) {
        device_id(i, id);
        bool a = lp_rollout_allows(&p, "stable", id, 5, why, sizeof why);
        bool b = lp_rollout_allows(&p, "stable", id, 6, why, sizeof why);
        if (a == b)
            fail_msg("device %s: in both arms or in none", id);
        if (!b)
            assert_non_null(strstr(why, "this device is in the arm of version code 5"));
        arm5 += a;
        /* sticky: the point does not depend on anything but the device */
        assert_int_equal(lp_rollout_split_point(SALT, id, 100),
                         lp_rollout_split_point(SALT, id, 100));
    }
    assert_in_range(arm5, 1100, 1300); /* 30% of 4000 */
    lp_rollout_policy_free(&p);
}

static void test_window(void **state)
{
    (void)state;
    lp_rollout_policy p = {0};
    parse_policy("{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":[],"
                 "\"window\":{\"start\":120,\"end\":240}}",
                 &p, LP_OK);
    int64_t day = 1796000000 - 1796000000 % 86400;
    assert_false(lp_rollout_in_window(&p, day + 119 * 60));
    assert_true(lp_rollout_in_window(&p, day + 120 * 60));
    assert_true(lp_rollout_in_window(&p, day + 239 * 60 + 59));
    assert_false(lp_rollout_in_window(&p, day + 240 * 60));
    lp_rollout_policy_free(&p);
    parse_policy("{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":[],"
                 "\"window\":{\"start\":1380,\"end\":60}}",
                 &p, LP_OK);
    assert_true(lp_rollout_in_window(&p, day + 1439 * 60));
    assert_true(lp_rollout_in_window(&p, day + 30 * 60));
    assert_false(lp_rollout_in_window(&p, day + 61 * 60));
    assert_false(lp_rollout_in_window(&p, day + 720 * 60));
    /* through the offer, as the device uses it */
    lp_update_offer o = {.window_start = 1380, .window_end = 60};
    assert_false(lp_update_offer_in_window(&o, day + 720 * 60));
    o.window_start = o.window_end = -1;
    assert_true(lp_update_offer_in_window(&o, day + 720 * 60));
    lp_rollout_policy_free(&p);
}

static void test_policy_refusals(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "[]",
        "{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":[],\"extra\":1}",
        "{\"channel\":\"beta\",\"salt\":\"" SALT "\",\"releases\":[]}",
        "{\"channel\":\"stable\",\"salt\":\"0123\",\"releases\":[]}",
        "{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":{}}",
        "{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":[{\"version_code\":2,"
        "\"percent_bp\":10001,\"state\":\"active\"}]}",
        "{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":[{\"version_code\":2,"
        "\"percent_bp\":100,\"state\":\"gone\"}]}",
        "{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":[{\"version_code\":2,"
        "\"percent_bp\":100,\"state\":\"active\",\"colour\":1}]}",
        "{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":[{\"version_code\":3,"
        "\"percent_bp\":1,\"state\":\"active\"},{\"version_code\":2,\"percent_bp\":1,"
        "\"state\":\"active\"}]}",
        "{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":[{\"version_code\":2,"
        "\"percent_bp\":100,\"state\":\"active\",\"weight\":0}]}",
        "{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":[],\"window\":"
        "{\"start\":60,\"end\":60}}",
        "{\"channel\":\"stable\",\"salt\":\"" SALT "\",\"releases\":[],\"window\":"
        "{\"start\":60,\"end\":1440}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lp_rollout_policy p = {0};
        parse_policy(bad[i], &p, LP_ERR_MALFORMED);
        assert_false(p.present);
        lp_rollout_policy_free(&p);
    }
}

/* ---- trust: a repository with three kinds of keys ---------------------------------- */

typedef struct trust {
    char *dir, *www, *appdir, *state, *work;
    lp_key *release, *online, *rollout;
    lp_tuf_repo *r;
    lp_test_httpd *httpd;
    lp_net *net;
    lp_tuf_client *tuf;
} trust;

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

#define REL(code) "{\"channels\":[\"stable\"],\"mandatory\":false,\"version\":\"v" #code \
                  "\",\"version_code\":" #code "}"

static void add(trust *t, const char *role, const char *name, const char *content,
                const char *custom)
{
    lp_error err;
    if (lp_tuf_repo_add_target(t->r, role, name, content, strlen(content), custom,
                               LP_TUF_HASH_SHA256, &err))
        fail_msg("add %s to %s: %s", name, role, err.msg);
}

/* Publishes with the keys given; the status is returned. */
static lp_status publish_with(trust *t, const lp_key *const *keys, size_t n, lp_error *err)
{
    return lp_tuf_repo_publish(t->r, keys, n, err);
}

/* Signs as a stolen server would: the online and rollout keys only. */
static void publish_as_server(trust *t)
{
    const lp_key *keys[] = {t->online, t->rollout};
    lp_error err;
    if (publish_with(t, keys, 2, &err))
        fail_msg("publish with the server's keys: %s", err.msg);
}

static void set_policy(trust *t, const char *releases)
{
    char custom[2048];
    snprintf(custom, sizeof custom,
             "{\"channel\":\"stable\",\"releases\":%s,\"salt\":\"" SALT "\"}", releases);
    add(t, "rollout", "rollout/stable.json", custom, custom);
}

static void trust_setup(trust *t)
{
    memset(t, 0, sizeof *t);
    lp_error err;
    assert_non_null(t->dir = lp_test_tmpdir("rollouttrust"));
    t->www = lp_test_join(t->dir, "www");
    t->appdir = lp_test_join(t->www, "v1/apps/demo");
    assert_int_equal(lp_file_mkdirs(t->appdir, 0755, &err), LP_OK);
    assert_int_equal(lp_key_generate(&t->release, LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_key_generate(&t->online, LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_key_generate(&t->rollout, LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_create(&t->r, t->appdir, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_add_key(t->r, "root", t->release, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_add_key(t->r, "targets", t->release, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_add_key(t->r, "snapshot", t->online, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_add_key(t->r, "timestamp", t->online, &err), LP_OK);
    const char *paths[] = {"rollout/*"};
    assert_int_equal(lp_tuf_repo_delegate(t->r, "targets", "rollout", paths, 1, true, 1, &err),
                     LP_OK);
    assert_int_equal(lp_tuf_repo_add_key(t->r, "rollout", t->rollout, &err), LP_OK);
    char *m1 = manifest_json("a.txt", "one"), *m2 = manifest_json("a.txt", "two");
    add(t, "targets", "releases/1.json", m1, REL(1));
    add(t, "targets", "releases/2.json", m2, REL(2));
    free(m1);
    free(m2);
    const lp_key *all[] = {t->release, t->online, t->rollout};
    assert_int_equal(publish_with(t, all, 3, &err), LP_OK);
    assert_non_null(t->httpd = lp_test_httpd_start(t->www));
    t->state = lp_test_join(t->dir, "device");
    t->work = lp_test_join(t->state, "downloads");
    char *meta = lp_test_join(t->state, "metadata");
    char *root = lp_test_join(t->appdir, "metadata/1.root.json");
    assert_int_equal(lp_tuf_init_trusted_root(meta, root, &err), LP_OK);
    free(meta);
    free(root);
    lp_net_config c = {.server_url = lp_test_httpd_url(t->httpd), .app = "demo",
                       .state_dir = t->state, .attempts = 2, .backoff_base_ms = 5,
                       .backoff_max_ms = 10};
    assert_int_equal(lp_net_open(&c, &t->net, &err), LP_OK);
    assert_int_equal(lp_net_open_tuf(t->net, &t->tuf, &err), LP_OK);
}

static void trust_teardown(trust *t)
{
    lp_tuf_client_free(t->tuf);
    lp_net_close(t->net);
    lp_test_httpd_stop(t->httpd);
    lp_tuf_repo_free(t->r);
    lp_key_free(t->release);
    lp_key_free(t->online);
    lp_key_free(t->rollout);
    lp_test_rmtree(t->dir);
    free(t->dir);
    free(t->www);
    free(t->appdir);
    free(t->state);
    free(t->work);
}

typedef struct skips {
    char text[4096];
} skips;

static void on_skip(void *ctx, const char *target, const char *reason)
{
    skips *s = ctx;
    size_t n = strlen(s->text);
    snprintf(s->text + n, sizeof s->text - n, "%s: %s\n", target, reason);
}

/* The version code offered to device `id` running `current` (0: none). */
static uint64_t offered(trust *t, uint64_t current, const char *id, skips *s)
{
    memset(s, 0, sizeof *s);
    lp_check_opts o = {.channel = "stable", .platform = "linux", .arch = "x86_64",
                       .current_id = current, .device_id = id, .work_dir = t->work,
                       .on_skip = on_skip, .skip_ctx = s};
    lp_update_offer offer;
    bool available = false;
    lp_error err;
    if (lp_check_for_update(t->tuf, &o, &offer, &available, &err))
        fail_msg("check: %s", err.msg);
    uint64_t code = available ? offer.version_code : 0;
    lp_update_offer_free(&offer);
    return code;
}

static void test_trust(void **state)
{
    (void)state;
    trust t;
    trust_setup(&t);
    skips s;
    char id[33];
    device_id(3, id);
    lp_error err;

    /* no policy yet: the newest release for everyone */
    assert_int_equal(offered(&t, 1, id, &s), 2);

    /* the server alone can halt, pause and narrow */
    set_policy(&t, "[{\"percent_bp\":10000,\"state\":\"halted\",\"version_code\":2}]");
    publish_as_server(&t);
    assert_int_equal(offered(&t, 1, id, &s), 0);
    assert_non_null(strstr(s.text, "releases/2.json: the rollout of version code 2 on channel "
                                   "stable is halted"));
    set_policy(&t, "[{\"percent_bp\":10000,\"state\":\"paused\",\"version_code\":2}]");
    publish_as_server(&t);
    assert_int_equal(offered(&t, 1, id, &s), 0);
    set_policy(&t, "[{\"percent_bp\":0,\"state\":\"active\",\"version_code\":2}]");
    publish_as_server(&t);
    assert_int_equal(offered(&t, 1, id, &s), 0);
    assert_non_null(strstr(s.text, "outside the staged rollout"));

    /* ... but cannot add a release: one the rollout role lists is never
     * offered, and is out of its delegation's reach */
    char *m9 = manifest_json("a.txt", "nine");
    add(&t, "rollout", "releases/9.json", m9, REL(9));
    free(m9);
    set_policy(&t, "[{\"percent_bp\":10000,\"state\":\"active\",\"version_code\":9}]");
    publish_as_server(&t);
    assert_int_equal(offered(&t, 1, id, &s), 2);
    assert_int_equal(offered(&t, 2, id, &s), 0);
    lp_tuf_target *found = NULL;
    assert_int_equal(lp_tuf_client_find_target(t.tuf, "releases/9.json", &found, &err),
                     LP_ERR_NOT_FOUND);

    /* ... nor move a device back: a policy naming an older release fully
     * active changes nothing for a device on a newer one */
    set_policy(&t, "[{\"percent_bp\":10000,\"state\":\"active\",\"version_code\":1}]");
    publish_as_server(&t);
    assert_int_equal(offered(&t, 2, id, &s), 0);
    assert_non_null(strstr(s.text, "releases/1.json: version code 1 is not newer"));

    /* ... nor re-sign the release keys' targets */
    char *m10 = manifest_json("a.txt", "ten");
    add(&t, "targets", "releases/10.json", m10, REL(10));
    free(m10);
    const lp_key *server_keys[] = {t.online, t.rollout};
    assert_int_equal(publish_with(&t, server_keys, 2, &err), LP_ERR_BAD_SIGNATURE);
    assert_non_null(strstr(err.msg, "targets"));
    /* nothing was written: the repository as served is what it was */
    lp_tuf_repo_free(t.r);
    assert_int_equal(lp_tuf_repo_open(&t.r, t.appdir, &err), LP_OK);
    assert_int_equal(offered(&t, 1, id, &s), 2);
    assert_null(strstr(s.text, "releases/10.json"));

    /* a policy the device cannot read offers nothing, and says why */
    add(&t, "rollout", "rollout/stable.json", "{}",
        "{\"channel\":\"stable\",\"releases\":[],\"salt\":\"" SALT "\",\"stop\":true}");
    publish_as_server(&t);
    lp_check_opts o = {.channel = "stable", .current_id = 1, .device_id = id,
                       .work_dir = t.work};
    lp_update_offer offer;
    bool available = true;
    assert_int_equal(lp_check_for_update(t.tuf, &o, &offer, &available, &err),
                     LP_ERR_MALFORMED);
    assert_false(available);
    assert_non_null(strstr(err.msg, "rollout/stable.json"));
    assert_non_null(strstr(err.msg, "unknown member 'stop'"));
    trust_teardown(&t);
}

/* ---- the real service -------------------------------------------------------------- */

static void publish_release(lp_apitest *t, const char *content, const char *version)
{
    char id[64], req[512];
    assert_int_equal(lp_apitest_upload(t, t->admin, "shop", content, strlen(content),
                                       strlen(content), 1, id),
                     0);
    snprintf(req, sizeof req,
             "{\"upload\":\"%s\",\"version\":\"%s\",\"kind\":\"file\",\"file_name\":\"f\"}", id,
             version);
    json_decref(lp_apitest_json(t, "POST", "/api/v1/apps/shop/releases", t->admin, req, 201));
}

static void put_rollout(lp_apitest *t, const char *body, long expect)
{
    json_t *j = lp_apitest_json(t, "PUT", "/api/v1/apps/shop/releases/2.0/rollout", t->admin,
                                body, expect);
    assert_non_null(j);
    if (expect == 200)
        assert_true(json_is_true(json_object_get(json_object_get(j, "rollout"), "enforced")));
    json_decref(j);
}

#define FLEET 1000

static void test_service_cohorts(void **state)
{
    (void)state;
    lp_apitest *t = lp_apitest_start(0);
    assert_non_null(t);
    json_decref(lp_apitest_json(t, "POST", "/api/v1/apps", t->admin, "{\"name\":\"shop\"}", 201));
    publish_release(t, "one\n", "1.0");
    publish_release(t, "two\n", "2.0");
    put_rollout(t, "{\"channel\":\"stable\",\"percent_bp\":1000}", 200);

    /* the policy is signed by the app's rollout key, and only by it */
    lp_error err;
    char *kp = lp_test_join(t->dir, "keys/shop/rollout.pem");
    lp_key *rk = NULL;
    assert_int_equal(lp_key_load_private_file(&rk, kp, &err), LP_OK);
    char kid[65];
    assert_int_equal(lp_tuf_key_id(rk, kid, &err), LP_OK);
    lp_key_free(rk);
    free(kp);
    char *meta = lp_test_join(t->dir, "repos/shop/metadata/2.rollout.json");
    uint8_t *data;
    size_t len;
    assert_int_equal(lp_file_read(meta, 1 << 20, &data, &len, &err), LP_OK);
    json_t *doc = NULL;
    assert_int_equal(lp_json_parse(data, len, NULL, &doc, &err), LP_OK);
    json_t *sigs = json_object_get(doc, "signatures");
    assert_int_equal(json_array_size(sigs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(sigs, 0), "keyid")),
                        kid);
    json_decref(doc);
    free(data);
    free(meta);

    trust dev = {0};
    dev.dir = lp_test_tmpdir("rolloutfleet");
    dev.state = lp_test_join(dev.dir, "device");
    dev.work = lp_test_join(dev.state, "downloads");
    char *m = lp_test_join(dev.state, "metadata");
    char *root = lp_test_join(t->dir, "repos/shop/metadata/1.root.json");
    assert_int_equal(lp_tuf_init_trusted_root(m, root, &err), LP_OK);
    free(m);
    free(root);
    lp_net_config c = {.server_url = t->base, .app = "shop", .state_dir = dev.state,
                       .attempts = 2, .backoff_base_ms = 5, .backoff_max_ms = 10};
    assert_int_equal(lp_net_open(&c, &dev.net, &err), LP_OK);
    assert_int_equal(lp_net_open_tuf(dev.net, &dev.tuf, &err), LP_OK);

    static bool first[FLEET];
    unsigned n10 = 0, n50 = 0;
    skips s;
    for (unsigned i = 0; i < FLEET; i++) {
        char id[33];
        device_id(i, id);
        first[i] = offered(&dev, 1, id, &s) == 2;
        n10 += first[i];
    }
    put_rollout(t, "{\"channel\":\"stable\",\"percent_bp\":5000}", 200);
    for (unsigned i = 0; i < FLEET; i++) {
        char id[33];
        device_id(i, id);
        bool in = offered(&dev, 1, id, &s) == 2;
        if (first[i] && !in)
            fail_msg("device %u was in at 10%% and is out at 50%%", i);
        n50 += in;
    }
    assert_in_range(n10, 70, 130);
    assert_in_range(n50, 470, 530);
    print_message("rollout cohorts: %u of %u at 10%%, %u at 50%%\n", n10, FLEET, n50);

    /* pause and halt stop every new install; a halt is final */
    put_rollout(t, "{\"channel\":\"stable\",\"state\":\"paused\"}", 200);
    unsigned after = 0;
    for (unsigned i = 0; i < 50; i++) {
        char id[33];
        device_id(i, id);
        after += offered(&dev, 1, id, &s) == 2;
    }
    assert_int_equal(after, 0);
    put_rollout(t, "{\"channel\":\"stable\",\"state\":\"active\"}", 200);
    put_rollout(t, "{\"channel\":\"stable\",\"state\":\"halted\",\"reason\":\"crashes\"}", 200);
    for (unsigned i = 0; i < 50; i++) {
        char id[33];
        device_id(i, id);
        after += offered(&dev, 1, id, &s) == 2;
    }
    assert_int_equal(after, 0);
    put_rollout(t, "{\"channel\":\"stable\",\"state\":\"active\"}", 409);
    put_rollout(t, "{\"channel\":\"beta\",\"percent_bp\":10}", 404);
    put_rollout(t, "{\"channel\":\"stable\",\"percent_bp\":10001}", 400);
    put_rollout(t, "{\"channel\":\"stable\"}", 400);

    json_t *list = lp_apitest_json(t, "GET", "/api/v1/apps/shop/rollouts", t->admin, NULL, 200);
    json_t *r0 = json_array_get(json_object_get(list, "rollouts"), 0);
    assert_string_equal(json_string_value(json_object_get(r0, "state")), "halted");
    assert_string_equal(json_string_value(json_object_get(r0, "reason")), "crashes");
    json_decref(list);

    lp_tuf_client_free(dev.tuf);
    lp_net_close(dev.net);
    lp_test_rmtree(dev.dir);
    free(dev.dir);
    free(dev.state);
    free(dev.work);
    lp_apitest_stop(t);
}

/* Two releases of one channel as the arms of an A/B split: each device gets
 * the same arm on every check, the arms' shares follow the weights, and the
 * figures the server shows are per arm. */
static void test_service_split(void **state)
{
    (void)state;
    lp_apitest *t = lp_apitest_start(0);
    assert_non_null(t);
    json_decref(lp_apitest_json(t, "POST", "/api/v1/apps", t->admin, "{\"name\":\"shop\"}", 201));
    publish_release(t, "one\n", "1.0");
    publish_release(t, "two\n", "2.0");
    publish_release(t, "three\n", "3.0");
    json_decref(lp_apitest_json(t, "PUT", "/api/v1/apps/shop/releases/2.0/rollout", t->admin,
                                "{\"channel\":\"stable\",\"weight\":25}", 200));
    json_decref(lp_apitest_json(t, "PUT", "/api/v1/apps/shop/releases/3.0/rollout", t->admin,
                                "{\"channel\":\"stable\",\"weight\":75}", 200));
    lp_error err;
    trust dev = {0};
    dev.dir = lp_test_tmpdir("rolloutsplit");
    dev.state = lp_test_join(dev.dir, "device");
    dev.work = lp_test_join(dev.state, "downloads");
    char *m = lp_test_join(dev.state, "metadata");
    char *root = lp_test_join(t->dir, "repos/shop/metadata/1.root.json");
    assert_int_equal(lp_tuf_init_trusted_root(m, root, &err), LP_OK);
    free(m);
    free(root);
    lp_net_config c = {.server_url = t->base, .app = "shop", .state_dir = dev.state,
                       .attempts = 2, .backoff_base_ms = 5, .backoff_max_ms = 10};
    assert_int_equal(lp_net_open(&c, &dev.net, &err), LP_OK);
    assert_int_equal(lp_net_open_tuf(dev.net, &dev.tuf, &err), LP_OK);
    unsigned arm2 = 0, arm3 = 0;
    skips s;
    for (unsigned i = 0; i < 400; i++) {
        char id[33];
        device_id(i, id);
        uint64_t a = offered(&dev, 1, id, &s);
        assert_true(a == 2 || a == 3);
        assert_int_equal(offered(&dev, 1, id, &s), a); /* sticky */
        if (a == 2)
            assert_non_null(strstr(s.text, "releases/3.json: A/B split on channel stable: this "
                                           "device is in the arm of version code 2"));
        /* the device installs its arm and reports it */
        char body[512];
        snprintf(body, sizeof body,
                 "{\"device_id\":\"%s\",\"channel\":\"stable\",\"events\":["
                 "{\"seq\":1,\"type\":\"activated\",\"at\":1796000000,\"version_code\":%llu,"
                 "\"from_version_code\":1}]}",
                 id, (unsigned long long)a);
        lp_apiresp r;
        assert_int_equal(lp_apitest_call(t, "POST", "/v1/apps/shop/events", NULL, NULL, NULL, body,
                                         strlen(body), &r),
                         0);
        assert_int_equal(r.status, 200);
        lp_apiresp_free(&r);
        arm2 += a == 2;
        arm3 += a == 3;
    }
    print_message("A/B split 25/75: %u and %u of 400 devices\n", arm2, arm3);
    assert_in_range(arm2, 70, 130);
    /* telemetry per arm */
    json_t *list = lp_apitest_json(t, "GET", "/api/v1/apps/shop/rollouts", t->admin, NULL, 200);
    json_t *rows = json_object_get(list, "rollouts");
    assert_int_equal(json_array_size(rows), 2);
    for (size_t k = 0; k < 2; k++) {
        json_t *row = json_array_get(rows, k);
        json_int_t code = json_integer_value(json_object_get(row, "version_code"));
        json_int_t inst =
            json_integer_value(json_object_get(json_object_get(row, "devices"), "installed"));
        assert_int_equal(inst, code == 2 ? arm2 : arm3);
    }
    json_decref(list);
    /* the split ended: the newest release for everyone */
    json_decref(lp_apitest_json(t, "PUT", "/api/v1/apps/shop/releases/2.0/rollout", t->admin,
                                "{\"channel\":\"stable\",\"weight\":0}", 200));
    json_decref(lp_apitest_json(t, "PUT", "/api/v1/apps/shop/releases/3.0/rollout", t->admin,
                                "{\"channel\":\"stable\",\"weight\":0}", 200));
    for (unsigned i = 0; i < 20; i++) {
        char id[33];
        device_id(i, id);
        assert_int_equal(offered(&dev, 2, id, &s), 3);
    }
    lp_tuf_client_free(dev.tuf);
    lp_net_close(dev.net);
    lp_test_rmtree(dev.dir);
    free(dev.dir);
    free(dev.state);
    free(dev.work);
    lp_apitest_stop(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_formula),   cmocka_unit_test(test_cohorts_grow),
        cmocka_unit_test(test_states_and_split), cmocka_unit_test(test_window),
        cmocka_unit_test(test_policy_refusals),  cmocka_unit_test(test_trust),
        cmocka_unit_test(test_service_cohorts),  cmocka_unit_test(test_service_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
