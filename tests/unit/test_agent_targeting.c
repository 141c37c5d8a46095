/*
 * test_agent_targeting.c — the device judges a release's rules, one rule at
 * a time, against a real TUF repository.
 *
 * Each test writes release targets with the TUF writer (real ed25519
 * signatures, custom parts as the server writes them), serves the
 * repository with the loopback test server, and runs lp_check_for_update
 * through lp_net and the TUF client as a device does.  Every test has a
 * target the rule lets through and one it stops, and checks both the choice
 * and the reason reported for the skipped one:
 *   runtime version, platform, arch (set by the release, equal on the
 *   device); the version code range (both ends, one end, a device with no
 *   release); attributes (one value, a list of values, several names, a
 *   missing name); the device list (in, out, a device without an id).
 * Fail closed: targeting with a member this version does not know, or a
 * malformed one, makes that release skipped as malformed, even when the
 * device would pass every rule it knows, while a plain release is still
 * taken.  Bad device options (id, attributes) are refused.  The reader and
 * the canonical form the server stores (lp_targeting_canonical) are checked
 * member by member.
 */
#include "agent/net.h"
#include "core/file.h"
#include "httpd.h"
#include "livepush/hash.h"
#include "livepush/tuf_repo.h"
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define ID_A "0123456789abcdef0123456789abcdef"
#define ID_B "fedcba9876543210fedcba9876543210"
#define ID_C "00112233445566778899aabbccddeeff"

/* ---- fixture: a repository served on loopback, and a device ---------------- */

typedef struct fixture {
    char *dir, *www, *appdir, *state, *work;
    lp_key *k;
    lp_tuf_repo *r;
    lp_test_httpd *httpd;
    lp_net *net;
    lp_tuf_client *tuf;
    char *manifest;   /* a valid manifest of one file */
    char skips[8192]; /* "<target>: <reason>\n" of the last check */
} fixture;

static void on_skip(void *ctx, const char *target, const char *reason)
{
    fixture *f = ctx;
    size_t n = strlen(f->skips);
    snprintf(f->skips + n, sizeof f->skips - n, "%s: %s\n", target, reason);
}

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

static void publish(fixture *f)
{
    lp_error err;
    const lp_key *keys[] = {f->k};
    if (lp_tuf_repo_publish(f->r, keys, 1, &err))
        fail_msg("publish: %s", err.msg);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_non_null(f->dir = lp_test_tmpdir("targeting"));
    f->www = lp_test_join(f->dir, "www");
    f->appdir = lp_test_join(f->www, "v1/apps/demo");
    lp_error err;
    assert_int_equal(lp_file_mkdirs(f->appdir, 0755, &err), LP_OK);
    assert_int_equal(lp_key_generate(&f->k, LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_create(&f->r, f->appdir, &err), LP_OK);
    const char *roles[] = {"root", "targets", "snapshot", "timestamp"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(lp_tuf_repo_add_key(f->r, roles[i], f->k, &err), LP_OK);
    publish(f);
    assert_non_null(f->httpd = lp_test_httpd_start(f->www));
    f->state = lp_test_join(f->dir, "device/.livepush");
    f->work = lp_test_join(f->state, "downloads");
    char *meta = lp_test_join(f->state, "metadata");
    char *root = lp_test_join(f->appdir, "metadata/1.root.json");
    if (lp_tuf_init_trusted_root(meta, root, &err))
        fail_msg("trusted root: %s", err.msg);
    free(meta);
    free(root);
    lp_net_config c = {.server_url = lp_test_httpd_url(f->httpd), .app = "demo",
                       .state_dir = f->state, .attempts = 2, .backoff_base_ms = 5,
                       .backoff_max_ms = 10};
    if (lp_net_open(&c, &f->net, &err) || lp_net_open_tuf(f->net, &f->tuf, &err))
        fail_msg("device: %s", err.msg);
    f->manifest = manifest_json("a.txt", "alpha");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    lp_tuf_client_free(f->tuf);
    lp_net_close(f->net);
    lp_test_httpd_stop(f->httpd);
    lp_tuf_repo_free(f->r);
    lp_key_free(f->k);
    lp_test_rmtree(f->dir);
    free(f->dir);
    free(f->www);
    free(f->appdir);
    free(f->state);
    free(f->work);
    free(f->manifest);
    free(f);
    return 0;
}

/* Adds release `code` on channel stable with `extra` members of the custom
 * part (",\"platform\":\"x\"" or ""). */
static void add_release(fixture *f, int code, const char *extra)
{
    char name[48], custom[4096];
    snprintf(name, sizeof name, "releases/%d.json", code);
    snprintf(custom, sizeof custom,
             "{\"channels\":[\"stable\"],\"mandatory\":false,\"version\":\"v%d\","
             "\"version_code\":%d%s}",
             code, code, extra);
    lp_error err;
    if (lp_tuf_repo_add_target(f->r, "targets", name, f->manifest, strlen(f->manifest), custom,
                               LP_TUF_HASH_SHA256, &err))
        fail_msg("add %s: %s", name, err.msg);
}

/* The options of a plain device: channel stable, linux, x86_64, runtime
 * rt1, no release, id ID_A, no attributes. */
static lp_check_opts opts(fixture *f)
{
    return (lp_check_opts){.channel = "stable", .platform = "linux", .arch = "x86_64",
                           .runtime_version = "rt1", .work_dir = f->work, .on_skip = on_skip,
                           .skip_ctx = f, .device_id = ID_A};
}

/* Runs a check that must succeed: the version code offered, 0 for none. */
static uint64_t offered(fixture *f, const lp_check_opts *o)
{
    f->skips[0] = '\0';
    lp_update_offer offer;
    bool available = true;
    lp_error err;
    if (lp_check_for_update(f->tuf, o, &offer, &available, &err))
        fail_msg("check: %s", err.msg);
    uint64_t code = available ? offer.version_code : 0;
    if (available)
        assert_non_null(lp_manifest_find(&offer.manifest, "a.txt"));
    lp_update_offer_free(&offer);
    return code;
}

/* The reason reported for `target` contains `part`. */
static void expect_skip(const fixture *f, const char *target, const char *part)
{
    char want[64];
    snprintf(want, sizeof want, "%s: ", target);
    const char *line = strstr(f->skips, want);
    const char *end = line ? strchr(line, '\n') : NULL;
    if (!line || !end)
        fail_msg("no skip reported for %s; reported:\n%s", target, f->skips);
    char buf[1024];
    snprintf(buf, sizeof buf, "%.*s", (int)(end - line), line);
    if (!strstr(buf, part))
        fail_msg("%s: expected a reason containing '%s', got '%s'", target, part, buf);
}

static void expect_no_skip(const fixture *f, const char *target)
{
    char want[64];
    snprintf(want, sizeof want, "%s: ", target);
    if (strstr(f->skips, want))
        fail_msg("%s was skipped:\n%s", target, f->skips);
}

/* ---- platform, arch, runtime version ------------------------------------------ */

static void test_runtime_version(void **state)
{
    fixture *f = *state;
    add_release(f, 1, "");
    add_release(f, 2, ",\"runtime_version\":\"rt2\"");
    publish(f);
    lp_check_opts o = opts(f);
    assert_int_equal(offered(f, &o), 1);
    expect_skip(f, "releases/2.json", "needs runtime rt2, this device has rt1");
    o.runtime_version = NULL;
    assert_int_equal(offered(f, &o), 1);
    expect_skip(f, "releases/2.json", "needs runtime rt2, this device has none");
    o.runtime_version = "rt2";
    assert_int_equal(offered(f, &o), 2);
    expect_no_skip(f, "releases/2.json");
}

static void test_platform(void **state)
{
    fixture *f = *state;
    add_release(f, 1, "");
    add_release(f, 2, ",\"platform\":\"windows\"");
    publish(f);
    lp_check_opts o = opts(f);
    assert_int_equal(offered(f, &o), 1);
    expect_skip(f, "releases/2.json", "for platform windows, this device is linux");
    o.platform = "windows";
    assert_int_equal(offered(f, &o), 2);
}

static void test_arch(void **state)
{
    fixture *f = *state;
    add_release(f, 1, "");
    add_release(f, 2, ",\"arch\":\"aarch64\"");
    publish(f);
    lp_check_opts o = opts(f);
    assert_int_equal(offered(f, &o), 1);
    expect_skip(f, "releases/2.json", "for arch aarch64, this device is x86_64");
    o.arch = "aarch64";
    assert_int_equal(offered(f, &o), 2);
}

/* ---- the version code the device runs ---------------------------------------------- */

static void test_code_range_both_ends(void **state)
{
    fixture *f = *state;
    add_release(f, 10, ",\"targeting\":{\"max_from_code\":5,\"min_from_code\":3}");
    publish(f);
    lp_check_opts o = opts(f);
    o.current_id = 2;
    assert_int_equal(offered(f, &o), 0);
    expect_skip(f, "releases/10.json", "for devices running version codes 3..5, this device "
                                       "runs 2");
    o.current_id = 3; /* the lower end is in */
    assert_int_equal(offered(f, &o), 10);
    o.current_id = 5; /* the upper end is in */
    assert_int_equal(offered(f, &o), 10);
    o.current_id = 6;
    assert_int_equal(offered(f, &o), 0);
    expect_skip(f, "releases/10.json", "for devices running version codes 3..5, this device "
                                       "runs 6");
}

static void test_code_range_one_end_and_no_release(void **state)
{
    fixture *f = *state;
    /* 10: only for devices with no release yet; 11: only for devices
     * running 4 or later */
    add_release(f, 10, ",\"targeting\":{\"max_from_code\":0}");
    add_release(f, 11, ",\"targeting\":{\"min_from_code\":4}");
    publish(f);
    lp_check_opts o = opts(f);
    o.current_id = 0;
    assert_int_equal(offered(f, &o), 10);
    expect_skip(f, "releases/11.json", "for devices running version code 4 or higher, this "
                                       "device runs 0 (no release)");
    o.current_id = 3;
    assert_int_equal(offered(f, &o), 0);
    expect_skip(f, "releases/10.json", "for devices running version code 0 or lower, this "
                                       "device runs 3");
    expect_skip(f, "releases/11.json", "version code 4 or higher, this device runs 3");
    o.current_id = 4;
    assert_int_equal(offered(f, &o), 11);
}

/* ---- attributes ---------------------------------------------------------------------- */

static void test_attribute_single_value(void **state)
{
    fixture *f = *state;
    add_release(f, 1, "");
    add_release(f, 2, ",\"targeting\":{\"attributes\":{\"region\":\"eu\"}}");
    publish(f);
    lp_check_opts o = opts(f);
    const lp_device_attribute eu[] = {{"model", "m1"}, {"region", "eu"}};
    const lp_device_attribute us[] = {{"region", "us"}};
    o.attributes = eu;
    o.attribute_count = 2;
    assert_int_equal(offered(f, &o), 2);
    o.attributes = us;
    o.attribute_count = 1;
    assert_int_equal(offered(f, &o), 1);
    expect_skip(f, "releases/2.json", "needs attribute region=eu, this device has region=us");
}

static void test_attribute_any_of(void **state)
{
    fixture *f = *state;
    add_release(f, 1, "");
    add_release(f, 2, ",\"targeting\":{\"attributes\":{\"region\":[\"eu\",\"uk\"]}}");
    /* several names: all must hold */
    add_release(f, 3,
                ",\"targeting\":{\"attributes\":{\"region\":[\"eu\",\"uk\"],\"tier\":\"gold\"}}");
    publish(f);
    lp_check_opts o = opts(f);
    const lp_device_attribute uk[] = {{"region", "uk"}};
    const lp_device_attribute eu_gold[] = {{"tier", "gold"}, {"region", "eu"}};
    const lp_device_attribute fr[] = {{"region", "fr"}, {"tier", "gold"}};
    o.attributes = uk;
    o.attribute_count = 1;
    assert_int_equal(offered(f, &o), 2);
    expect_skip(f, "releases/3.json", "needs attribute tier=gold, this device has no attribute "
                                      "tier");
    o.attributes = eu_gold;
    o.attribute_count = 2;
    assert_int_equal(offered(f, &o), 3);
    o.attributes = fr;
    o.attribute_count = 2;
    assert_int_equal(offered(f, &o), 1);
    expect_skip(f, "releases/2.json", "needs attribute region to be one of eu, uk, this device "
                                      "has region=fr");
    expect_skip(f, "releases/3.json", "needs attribute region to be one of eu, uk, this device "
                                      "has region=fr");
}

static void test_attribute_missing(void **state)
{
    fixture *f = *state;
    add_release(f, 1, "");
    add_release(f, 2, ",\"targeting\":{\"attributes\":{\"region\":\"eu\"}}");
    publish(f);
    lp_check_opts o = opts(f);
    assert_int_equal(offered(f, &o), 1);
    expect_skip(f, "releases/2.json", "needs attribute region=eu, this device has no attribute "
                                      "region");
    const lp_device_attribute other[] = {{"regions", "eu"}};
    o.attributes = other;
    o.attribute_count = 1;
    assert_int_equal(offered(f, &o), 1);
    expect_skip(f, "releases/2.json", "this device has no attribute region");
}

/* ---- device list --------------------------------------------------------------------- */

static void test_device_list(void **state)
{
    fixture *f = *state;
    add_release(f, 1, "");
    add_release(f, 2, ",\"targeting\":{\"devices\":[\"" ID_B "\",\"" ID_A "\"]}");
    publish(f);
    lp_check_opts o = opts(f);
    assert_int_equal(offered(f, &o), 2); /* ID_A is in */
    o.device_id = ID_B;
    assert_int_equal(offered(f, &o), 2);
    o.device_id = ID_C;
    assert_int_equal(offered(f, &o), 1);
    expect_skip(f, "releases/2.json", "not in the release's list of 2 devices");
    o.device_id = NULL;
    assert_int_equal(offered(f, &o), 1);
    expect_skip(f, "releases/2.json", "not in the release's list of 2 devices (this device has "
                                      "no id)");
}

/* All rules together: every one must hold. */
static void test_all_rules_together(void **state)
{
    fixture *f = *state;
    add_release(f, 1, "");
    add_release(f, 9, ",\"runtime_version\":\"rt1\",\"targeting\":{\"attributes\":{\"region\":"
                      "\"eu\"},\"devices\":[\"" ID_A "\"],\"max_from_code\":1,\"min_from_code\":"
                      "1}");
    publish(f);
    lp_check_opts o = opts(f);
    const lp_device_attribute eu[] = {{"region", "eu"}};
    o.attributes = eu;
    o.attribute_count = 1;
    o.current_id = 1;
    assert_int_equal(offered(f, &o), 9);
    o.device_id = ID_B;
    assert_int_equal(offered(f, &o), 0);
    expect_skip(f, "releases/9.json", "not in the release's list of 1 device");
    o.device_id = ID_A;
    o.attribute_count = 0;
    assert_int_equal(offered(f, &o), 0);
    expect_skip(f, "releases/9.json", "no attribute region");
    o.attribute_count = 1;
    o.current_id = 0;
    assert_int_equal(offered(f, &o), 1);
    expect_skip(f, "releases/9.json", "version codes 1..1, this device runs 0");
}

/* ---- fail closed ------------------------------------------------------------------------ */

static void test_unknown_and_malformed_targeting(void **state)
{
    fixture *f = *state;
    add_release(f, 1, "");
    /* a rule this version does not know: the device would pass every other */
    add_release(f, 2, ",\"targeting\":{\"colour\":\"blue\"}");
    add_release(f, 3, ",\"targeting\":{\"attributes\":{\"region\":\"eu\"},\"rollout_cohort\":7}");
    /* malformed ones */
    add_release(f, 4, ",\"targeting\":{\"devices\":\"" ID_A "\"}");
    add_release(f, 5, ",\"targeting\":[]");
    add_release(f, 6, ",\"targeting\":{\"max_from_code\":1,\"min_from_code\":2}");
    add_release(f, 7, ",\"targeting\":{\"attributes\":{\"region\":7}}");
    add_release(f, 8, ",\"targeting\":{\"attributes\":{\"Region\":\"eu\"}}");
    add_release(f, 9, ",\"targeting\":{\"attributes\":{\"region\":[]}}");
    add_release(f, 10, ",\"targeting\":{\"devices\":[\"" ID_A "\",\"" ID_A "\"]}");
    add_release(f, 11, ",\"targeting\":{\"devices\":[\"0123\"]}");
    add_release(f, 12, ",\"targeting\":{\"min_from_code\":-1}");
    add_release(f, 13, ",\"targeting\":{\"attributes\":{}}");
    add_release(f, 14, ",\"targeting\":{\"attributes\":{\"region\":[\"eu\",\"eu\"]}}");
    add_release(f, 15, ",\"targeting\":{\"min_from_code\":\"1\"}");
    publish(f);
    lp_check_opts o = opts(f);
    const lp_device_attribute eu[] = {{"region", "eu"}};
    o.attributes = eu;
    o.attribute_count = 1;
    f->skips[0] = '\0';
    lp_update_offer offer;
    bool available = false;
    lp_error err;
    if (lp_check_for_update(f->tuf, &o, &offer, &available, &err))
        fail_msg("check: %s", err.msg);
    assert_true(available);
    assert_int_equal(offer.version_code, 1); /* the plain release is still taken */
    assert_int_equal(offer.considered, 15);
    assert_int_equal(offer.malformed, 14);
    lp_update_offer_free(&offer);
    expect_skip(f, "releases/2.json", "malformed custom field targeting.colour: unknown member");
    expect_skip(f, "releases/3.json", "malformed custom field targeting.rollout_cohort: unknown "
                                      "member");
    expect_skip(f, "releases/4.json", "malformed custom field targeting.devices: expected a list");
    expect_skip(f, "releases/5.json", "malformed custom field targeting: expected an object");
    expect_skip(f, "releases/6.json", "targeting.max_from_code: 1 is below min_from_code 2");
    expect_skip(f, "releases/7.json", "targeting.attributes.region: expected a string");
    expect_skip(f, "releases/8.json", "attribute name 'Region' is not");
    expect_skip(f, "releases/9.json", "targeting.attributes.region: expected a string or a list "
                                      "of 1..32 strings, got a list of 0");
    expect_skip(f, "releases/10.json", "targeting.devices[1]: listed twice (as [0] too)");
    expect_skip(f, "releases/11.json", "targeting.devices[0]: expected a device id");
    expect_skip(f, "releases/12.json", "targeting.min_from_code: expected an integer >= 0");
    expect_skip(f, "releases/13.json", "targeting.attributes: expected 1..32 attributes, got 0");
    expect_skip(f, "releases/14.json", "targeting.attributes.region[1]: listed twice");
    expect_skip(f, "releases/15.json", "targeting.min_from_code: expected an integer");
}

/* ---- the device's own options -------------------------------------------------------------- */

static void expect_refused(fixture *f, const lp_check_opts *o, const char *part)
{
    lp_update_offer offer;
    bool available = true;
    lp_error err;
    assert_int_equal(lp_check_for_update(f->tuf, o, &offer, &available, &err),
                     LP_ERR_INVALID_ARG);
    assert_false(available);
    if (!strstr(err.msg, part))
        fail_msg("expected '%s' in '%s'", part, err.msg);
}

static void test_bad_device_options(void **state)
{
    fixture *f = *state;
    lp_check_opts o = opts(f);
    o.device_id = "0123456789ABCDEF";
    expect_refused(f, &o, "device id");
    o.device_id = "0123";
    expect_refused(f, &o, "device id");
    o = opts(f);
    const lp_device_attribute upper[] = {{"Region", "eu"}};
    o.attributes = upper;
    o.attribute_count = 1;
    expect_refused(f, &o, "device attribute 'Region'");
    const lp_device_attribute twice[] = {{"region", "eu"}, {"region", "us"}};
    o.attributes = twice;
    o.attribute_count = 2;
    expect_refused(f, &o, "device attribute region: given twice");
    const lp_device_attribute ctl[] = {{"region", "e\nu"}};
    o.attributes = ctl;
    o.attribute_count = 1;
    expect_refused(f, &o, "the value 'e?u' is not");
    o.attributes = NULL;
    o.attribute_count = 1;
    expect_refused(f, &o, "a count without a list");
    lp_device_attribute many[LP_TARGETING_MAX_ATTRIBUTES + 1];
    char keys[LP_TARGETING_MAX_ATTRIBUTES + 1][8];
    for (size_t i = 0; i <= LP_TARGETING_MAX_ATTRIBUTES; i++) {
        snprintf(keys[i], sizeof keys[i], "k%zu", i);
        many[i] = (lp_device_attribute){keys[i], "v"};
    }
    o.attributes = many;
    o.attribute_count = LP_TARGETING_MAX_ATTRIBUTES;
    assert_int_equal(offered(f, &o), 0); /* 32 is fine */
    o.attribute_count = LP_TARGETING_MAX_ATTRIBUTES + 1;
    expect_refused(f, &o, "33 given, at most 32");
}

/* ---- the canonical form the server stores ------------------------------------------------- */

static void expect_canonical(const char *in, const char *want)
{
    char *out = NULL;
    lp_error err;
    if (lp_targeting_canonical(in, strlen(in), &out, &err))
        fail_msg("%s: %s", in, err.msg);
    if (!want)
        assert_null(out);
    else if (!out || strcmp(out, want))
        fail_msg("%s: canonical '%s', expected '%s'", in, out ? out : "(none)", want);
    free(out);
}

static void expect_bad(const char *in, lp_status code, const char *part)
{
    char *out = (char *)"x";
    lp_error err;
    lp_status st = lp_targeting_canonical(in, strlen(in), &out, &err);
    if (st != code)
        fail_msg("%.80s: status %s (%s), expected %s", in, lp_status_name(st), err.msg,
                 lp_status_name(code));
    assert_null(out);
    if (!strstr(err.msg, part))
        fail_msg("%s: expected '%s' in '%s'", in, part, err.msg);
}

static void test_canonical(void **state)
{
    (void)state;
    expect_canonical("{}", NULL);
    expect_canonical(" { \"min_from_code\" : 0 } ", "{\"min_from_code\":0}");
    expect_canonical("{\"devices\":[\"" ID_B "\",\"" ID_A "\"],\"attributes\":{\"z\":\"1\","
                     "\"a\":[\"y\",\"x\"]},\"max_from_code\":9}",
                     "{\"attributes\":{\"a\":[\"y\",\"x\"],\"z\":\"1\"},\"devices\":[\"" ID_B
                     "\",\"" ID_A "\"],\"max_from_code\":9}");
    /* printable ASCII, quotes and backslashes included */
    expect_canonical("{\"attributes\":{\"note\":\"a \\\"b\\\\ ~\"}}",
                     "{\"attributes\":{\"note\":\"a \\\"b\\\\ ~\"}}");
    expect_bad("{\"colour\":1}", LP_ERR_INVALID_ARG, "targeting.colour: unknown member (known: "
                                                     "attributes, devices, max_from_code, "
                                                     "min_from_code)");
    expect_bad("[1]", LP_ERR_INVALID_ARG, "targeting: expected an object");
    expect_bad("{\"min_from_code\":1.5}", LP_ERR_INVALID_ARG, "targeting.min_from_code");
    expect_bad("{\"min_from_code\":true}", LP_ERR_INVALID_ARG, "targeting.min_from_code");
    expect_bad("{\"attributes\":{\"r\":\"\"}}", LP_ERR_INVALID_ARG, "targeting.attributes.r");
    expect_bad("{\"attributes\":{\"r\":\"\\u00e9\"}}", LP_ERR_INVALID_ARG,
               "targeting.attributes.r");
    expect_bad("{\"attributes\":{\"r\\u0000x\":\"a\"}}", LP_ERR_MALFORMED, "NUL byte");
    expect_bad("{\"attributes\":{\"r\\nx\":\"a\"}}", LP_ERR_INVALID_ARG,
               "attribute name 'r?x' is not");
    expect_bad("{\"devices\":[]}", LP_ERR_INVALID_ARG, "got 0");
    expect_bad("{\"min_from_code\":1,\"min_from_code\":2}", LP_ERR_MALFORMED, "targeting");
    expect_bad("{", LP_ERR_MALFORMED, "targeting");
    /* the bounds */
    char value[LP_TARGETING_MAX_VALUE + 2];
    memset(value, 'v', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    char text[512];
    snprintf(text, sizeof text, "{\"attributes\":{\"k\":\"%s\"}}", value);
    expect_bad(text, LP_ERR_INVALID_ARG, "targeting.attributes.k: expected a string of 1..128");
    value[LP_TARGETING_MAX_VALUE] = '\0';
    snprintf(text, sizeof text, "{\"attributes\":{\"k\":\"%s\"}}", value);
    expect_canonical(text, text);
    char key[LP_TARGETING_MAX_KEY + 2];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    snprintf(text, sizeof text, "{\"attributes\":{\"%s\":\"v\"}}", key);
    expect_bad(text, LP_ERR_INVALID_ARG, "is not 1..64 bytes");
    key[LP_TARGETING_MAX_KEY] = '\0';
    snprintf(text, sizeof text, "{\"attributes\":{\"%s\":\"v\"}}", key);
    expect_canonical(text, text);
    /* 33 values in a list, 33 names */
    char big[8192];
    size_t n = (size_t)snprintf(big, sizeof big, "{\"attributes\":{\"k\":[");
    for (unsigned i = 0; i <= LP_TARGETING_MAX_VALUES; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s\"v%u\"", i ? "," : "", i);
    snprintf(big + n, sizeof big - n, "]}}");
    expect_bad(big, LP_ERR_INVALID_ARG, "got a list of 33");
    n = (size_t)snprintf(big, sizeof big, "{\"attributes\":{");
    for (unsigned i = 0; i <= LP_TARGETING_MAX_ATTRIBUTES; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s\"k%02u\":\"v\"", i ? "," : "", i);
    snprintf(big + n, sizeof big - n, "}}");
    expect_bad(big, LP_ERR_INVALID_ARG, "expected 1..32 attributes, got 33");
    /* 10000 devices are fine, 10001 are not; a duplicate far apart is found */
    size_t cap = (LP_TARGETING_MAX_DEVICES + 2) * 40 + 64;
    char *devs = malloc(cap);
    assert_non_null(devs);
    for (unsigned count = LP_TARGETING_MAX_DEVICES; count <= LP_TARGETING_MAX_DEVICES + 1;
         count++) {
        n = (size_t)snprintf(devs, cap, "{\"devices\":[");
        for (unsigned i = 0; i < count; i++)
            n += (size_t)snprintf(devs + n, cap - n, "%s\"%032x\"", i ? "," : "", i);
        snprintf(devs + n, cap - n, "]}");
        if (count == LP_TARGETING_MAX_DEVICES)
            expect_canonical(devs, devs);
        else
            expect_bad(devs, LP_ERR_INVALID_ARG, "got 10001");
    }
    n = (size_t)snprintf(devs, cap, "{\"devices\":[");
    for (unsigned i = 0; i < 5000; i++)
        n += (size_t)snprintf(devs + n, cap - n, "%s\"%032x\"", i ? "," : "", i == 4321 ? 17 : i);
    snprintf(devs + n, cap - n, "]}");
    expect_bad(devs, LP_ERR_INVALID_ARG, "targeting.devices[4321]: listed twice (as [17] too)");
    free(devs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_runtime_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_platform, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_range_both_ends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_range_one_end_and_no_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attribute_single_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attribute_any_of, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attribute_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_rules_together, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_malformed_targeting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_device_options, setup, teardown),
        cmocka_unit_test(test_canonical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
