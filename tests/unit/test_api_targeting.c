/*
 * test_api_targeting.c — targeting rules through the management API, over
 * real HTTP to the real server and service on a scratch data folder
 * (tests/support/apitest.h), down to the signed TUF metadata and a device.
 *
 *   - refusals: every kind of bad "targeting" on POST .../releases is a 400
 *     whose message names the member ("field 'targeting.colour'"), and the
 *     upload stays usable: the same upload is then published with good
 *     rules;
 *   - good rules round-trip: the answer and GET .../releases/<v> show them,
 *     the database keeps them in canonical form (members sorted whatever
 *     order the request used), and the app's targets metadata, read from
 *     the repository's own file, lists them as the target's custom field
 *     "targeting"; a release without rules (absent, null or {}) shows null
 *     and its target has no such field; a device (lp_check_for_update over
 *     lp_net) that passes the rules is offered the release, one that does
 *     not is given the reason;
 *   - rollback: keeps the restored release's rules by default, takes new
 *     ones, clears them with {}, refuses bad ones naming the member;
 *   - an app whose publisher signs: the bytes the server prepares for
 *     signing carry the rules in the new target's custom part, byte for
 *     byte in canonical form, and once signed the published metadata does.
 */
#include "agent/net.h"
#include "apitest.h"
#include "core/file.h"
#include "publisher.h"
#include "testutil.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define ID_A "0123456789abcdef0123456789abcdef"
#define ID_B "fedcba9876543210fedcba9876543210"

/* The rules used throughout, as a request gives them (members in another
 * order) and in canonical form. */
#define RULES_REQUEST                                                                            \
    "{\"devices\":[\"" ID_B "\",\"" ID_A "\"],\"max_from_code\":4,\"attributes\":{\"tier\":"    \
    "\"gold\",\"region\":[\"eu\",\"uk\"]},\"min_from_code\":0}"
#define RULES_CANONICAL                                                                          \
    "{\"attributes\":{\"region\":[\"eu\",\"uk\"],\"tier\":\"gold\"},\"devices\":[\"" ID_B        \
    "\",\"" ID_A "\"],\"max_from_code\":4,\"min_from_code\":0}"

static json_t *expect_error(lp_apitest *t, const char *method, const char *path,
                            const char *body, long status, const char *code, const char *part)
{
    lp_apiresp r;
    static const char *const ct[] = {"Content-Type: application/json", NULL};
    assert_int_equal(lp_apitest_call(t, method, path, t->admin, NULL, ct, body,
                                     body ? strlen(body) : 0, &r),
                     0);
    if (r.status != status || strcmp(lp_apiresp_code(&r), code) ||
        (part && !strstr(lp_apiresp_message(&r), part)))
        fail_msg("%s %s: HTTP %ld: %s (expected %ld %s '%s')", method, path, r.status,
                 r.body ? r.body : "", status, code, part ? part : "");
    printf("  %s %s: %ld %s\n", method, path, r.status, lp_apiresp_message(&r));
    json_t *j = json_incref(r.json);
    lp_apiresp_free(&r);
    return j;
}

/* POST .../releases of `app` with upload `id`, version `version` and the
 * members `extra` (",\"targeting\":{...}" or ""); the answer when the
 * status is `status`. */
static json_t *publish(lp_apitest *t, const char *app, const char *id, const char *version,
                       const char *extra, long status)
{
    char path[128];
    size_t cap = strlen(extra) + 512;
    char *req = malloc(cap);
    assert_non_null(req);
    snprintf(path, sizeof path, "/api/v1/apps/%s/releases", app);
    snprintf(req, cap,
             "{\"upload\":\"%s\",\"version\":\"%s\",\"kind\":\"file\",\"file_name\":\"f.txt\"%s}",
             id, version, extra);
    json_t *j = lp_apitest_json(t, "POST", path, t->admin, req, status);
    free(req);
    assert_non_null(j);
    return j;
}

static void upload(lp_apitest *t, const char *app, const char *content, char id[64])
{
    assert_int_equal(lp_apitest_upload(t, t->admin, app, content, strlen(content),
                                       strlen(content), 1, id),
                     0);
}

/* The rules of a release answer, as canonical text ("null" when none). */
static char *rules_of(const json_t *ans)
{
    const json_t *rel = json_object_get(ans, "release");
    assert_non_null(rel);
    const json_t *t = json_object_get(rel, "targeting");
    assert_non_null(t); /* always present */
    return json_dumps(t, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static void expect_rules(const json_t *ans, const char *want)
{
    char *got = rules_of(ans);
    if (strcmp(got, want))
        fail_msg("targeting %s, expected %s", got, want);
    free(got);
}

/* The newest targets metadata file of the app's repository (N.targets.json
 * with the highest N), as text. */
static char *targets_file(lp_apitest *t, const char *app)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/repos/%s/metadata", t->dir, app);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    long best = 0;
    while ((e = readdir(d)) != NULL) {
        char *end = NULL;
        long n = strtol(e->d_name, &end, 10);
        if (n > best && end && !strcmp(end, ".targets.json"))
            best = n;
    }
    closedir(d);
    assert_true(best > 0);
    char path[4300];
    snprintf(path, sizeof path, "%s/%ld.targets.json", dir, best);
    char *text = (char *)lp_test_read_file(path, NULL);
    assert_non_null(text);
    return text;
}

/* The custom field "targeting" of target releases/<code>.json in the
 * newest targets metadata, as canonical text, or NULL when it has none. */
static char *signed_rules(lp_apitest *t, const char *app, int code)
{
    char *text = targets_file(t, app);
    json_t *doc = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(doc);
    char name[64];
    snprintf(name, sizeof name, "releases/%d.json", code);
    const json_t *entry =
        json_object_get(json_object_get(json_object_get(doc, "signed"), "targets"), name);
    assert_non_null(entry);
    const json_t *rules = json_object_get(json_object_get(entry, "custom"), "targeting");
    char *out = rules ? json_dumps(rules, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    return out;
}

/* ---- a device on the service ------------------------------------------------------- */

typedef struct device {
    char *dir, *state, *work;
    lp_net *net;
    lp_tuf_client *tuf;
    char skips[4096];
} device;

static void on_skip(void *ctx, const char *target, const char *reason)
{
    device *d = ctx;
    size_t n = strlen(d->skips);
    snprintf(d->skips + n, sizeof d->skips - n, "%s: %s\n", target, reason);
}

static void device_open(device *d, lp_apitest *t, const char *app)
{
    memset(d, 0, sizeof *d);
    assert_non_null(d->dir = lp_test_tmpdir("apitargeting"));
    d->state = lp_test_join(d->dir, ".livepush");
    d->work = lp_test_join(d->state, "downloads");
    char *meta = lp_test_join(d->state, "metadata");
    char root[4200];
    snprintf(root, sizeof root, "%s/repos/%s/metadata/1.root.json", t->dir, app);
    lp_error err;
    if (lp_tuf_init_trusted_root(meta, root, &err))
        fail_msg("trusted root: %s", err.msg);
    free(meta);
    lp_net_config c = {.server_url = t->base, .app = app, .state_dir = d->state, .attempts = 2,
                       .backoff_base_ms = 5, .backoff_max_ms = 10};
    if (lp_net_open(&c, &d->net, &err) || lp_net_open_tuf(d->net, &d->tuf, &err))
        fail_msg("device: %s", err.msg);
}

static void device_close(device *d)
{
    lp_tuf_client_free(d->tuf);
    lp_net_close(d->net);
    lp_test_rmtree(d->dir);
    free(d->dir);
    free(d->state);
    free(d->work);
}

/* The version code offered to a device with these attributes and id. */
static uint64_t device_offer(device *d, const lp_device_attribute *attrs, size_t n,
                             const char *id, uint64_t current)
{
    d->skips[0] = '\0';
    lp_check_opts o = {.channel = "stable", .platform = "linux", .arch = "x86_64",
                       .work_dir = d->work, .on_skip = on_skip, .skip_ctx = d,
                       .current_id = current, .device_id = id, .attributes = attrs,
                       .attribute_count = n};
    lp_update_offer offer;
    bool available = false;
    lp_error err;
    if (lp_check_for_update(d->tuf, &o, &offer, &available, &err))
        fail_msg("check: %s", err.msg);
    uint64_t code = available ? offer.version_code : 0;
    lp_update_offer_free(&offer);
    return code;
}

/* ---- the server-signed app ------------------------------------------------------------ */

static void test_publish_refusals(void **state)
{
    (void)state;
    lp_apitest *t = lp_apitest_start(0);
    assert_non_null(t);
    char id[64];
    upload(t, "default", "one\n", id);
    static const struct {
        const char *targeting, *member, *what;
    } bad[] = {
        {"\"eu\"", "field 'targeting'", "expected an object"},
        {"{\"colour\":\"blue\"}", "field 'targeting.colour'", "unknown member"},
        {"{\"min_from_code\":-1}", "field 'targeting.min_from_code'", "integer >= 0"},
        {"{\"max_from_code\":\"4\"}", "field 'targeting.max_from_code'", "integer >= 0"},
        {"{\"min_from_code\":5,\"max_from_code\":3}", "field 'targeting.max_from_code'",
         "3 is below min_from_code 5"},
        {"{\"attributes\":[\"region\"]}", "field 'targeting.attributes'", "expected an object"},
        {"{\"attributes\":{}}", "field 'targeting.attributes'", "got 0"},
        {"{\"attributes\":{\"Region\":\"eu\"}}", "field 'targeting.attributes'",
         "attribute name 'Region' is not"},
        {"{\"attributes\":{\"region\":\"\"}}", "field 'targeting.attributes.region'",
         "expected a string of 1..128"},
        {"{\"attributes\":{\"region\":\"e\\tu\"}}", "field 'targeting.attributes.region'",
         "printable ASCII"},
        {"{\"attributes\":{\"region\":[]}}", "field 'targeting.attributes.region'",
         "got a list of 0"},
        {"{\"attributes\":{\"region\":[\"eu\",7]}}", "field 'targeting.attributes.region[1]'",
         "expected a string"},
        {"{\"attributes\":{\"region\":[\"eu\",\"eu\"]}}",
         "field 'targeting.attributes.region[1]'", "listed twice"},
        {"{\"devices\":\"" ID_A "\"}", "field 'targeting.devices'", "expected a list"},
        {"{\"devices\":[]}", "field 'targeting.devices'", "got 0"},
        {"{\"devices\":[\"" ID_A "\",\"ABCDEF0123456789\"]}", "field 'targeting.devices[1]'",
         "lower-case hex"},
        {"{\"devices\":[\"" ID_A "\",\"" ID_B "\",\"" ID_A "\"]}",
         "field 'targeting.devices[2]'", "listed twice (as [0] too)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[1024];
        snprintf(body, sizeof body,
                 "{\"upload\":\"%s\",\"version\":\"1.0\",\"kind\":\"file\",\"file_name\":"
                 "\"f.txt\",\"targeting\":%s}",
                 id, bad[i].targeting);
        json_t *j = expect_error(t, "POST", "/api/v1/apps/default/releases", body, 400,
                                 "bad_request", bad[i].member);
        const char *msg =
            json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        if (!strstr(msg, bad[i].what))
            fail_msg("%s: message '%s' lacks '%s'", bad[i].targeting, msg, bad[i].what);
        json_decref(j);
    }
    /* 33 attribute names; 10001 devices */
    size_t cap = 10002 * 40 + 512;
    char *body = malloc(cap);
    assert_non_null(body);
    size_t n = (size_t)snprintf(body, cap,
                                "{\"upload\":\"%s\",\"version\":\"1.0\",\"kind\":\"file\","
                                "\"file_name\":\"f.txt\",\"targeting\":{\"attributes\":{",
                                id);
    for (unsigned i = 0; i < 33; i++)
        n += (size_t)snprintf(body + n, cap - n, "%s\"k%u\":\"v\"", i ? "," : "", i);
    snprintf(body + n, cap - n, "}}}");
    json_decref(expect_error(t, "POST", "/api/v1/apps/default/releases", body, 400,
                             "bad_request", "field 'targeting.attributes': expected 1..32 "
                                            "attributes, got 33"));
    n = (size_t)snprintf(body, cap,
                         "{\"upload\":\"%s\",\"version\":\"1.0\",\"kind\":\"file\","
                         "\"file_name\":\"f.txt\",\"targeting\":{\"devices\":[",
                         id);
    for (unsigned i = 0; i < 10001; i++)
        n += (size_t)snprintf(body + n, cap - n, "%s\"%032x\"", i ? "," : "", i);
    snprintf(body + n, cap - n, "]}}");
    json_decref(expect_error(t, "POST", "/api/v1/apps/default/releases", body, 400,
                             "bad_request", "field 'targeting.devices': expected a list of "
                                            "1..10000 device ids, got 10001"));
    free(body);

    /* nothing was consumed: the same upload publishes with good rules */
    json_t *ok = publish(t, "default", id, "1.0", ",\"targeting\":" RULES_REQUEST, 201);
    expect_rules(ok, RULES_CANONICAL);
    json_decref(ok);
    lp_apitest_stop(t);
}

static void test_round_trip(void **state)
{
    (void)state;
    lp_apitest *t = lp_apitest_start(0);
    assert_non_null(t);
    char id[64];

    /* 1: no rules; 2: the rules; 3: null; 4: {} */
    upload(t, "default", "one\n", id);
    json_t *j = publish(t, "default", id, "1.0", "", 201);
    expect_rules(j, "null");
    json_decref(j);
    upload(t, "default", "two\n", id);
    j = publish(t, "default", id, "2.0", ",\"targeting\":" RULES_REQUEST, 201);
    expect_rules(j, RULES_CANONICAL);
    json_decref(j);
    upload(t, "default", "three\n", id);
    json_decref(publish(t, "default", id, "3.0", ",\"targeting\":null", 201));
    upload(t, "default", "four\n", id);
    json_decref(publish(t, "default", id, "4.0", ",\"targeting\":{}", 201));

    /* GET shows them */
    j = lp_apitest_json(t, "GET", "/api/v1/apps/default/releases/2.0", t->admin, NULL, 200);
    expect_rules(j, RULES_CANONICAL);
    json_decref(j);
    for (int v = 1; v <= 4; v += v == 1 ? 2 : 1) {
        char path[128];
        snprintf(path, sizeof path, "/api/v1/apps/default/releases/%d.0", v);
        j = lp_apitest_json(t, "GET", path, t->admin, NULL, 200);
        expect_rules(j, "null");
        json_decref(j);
    }
    j = lp_apitest_json(t, "GET", "/api/v1/apps/default/releases", t->admin, NULL, 200);
    const json_t *list = json_object_get(j, "releases");
    assert_int_equal(json_array_size(list), 4);
    char *listed = json_dumps(json_object_get(json_array_get(list, 2), "targeting"),
                              JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(listed, RULES_CANONICAL);
    free(listed);
    json_decref(j);

    /* the signed targets metadata, read from the repository's file */
    char *text = targets_file(t, "default");
    char want[1024];
    snprintf(want, sizeof want, "\"targeting\":%s", RULES_CANONICAL);
    assert_non_null(strstr(text, want));
    free(text);
    char *rules = signed_rules(t, "default", 2);
    assert_non_null(rules);
    assert_string_equal(rules, RULES_CANONICAL);
    free(rules);
    for (int code = 1; code <= 4; code += code == 1 ? 2 : 1)
        assert_null(signed_rules(t, "default", code));
    lp_apitest_stop(t);
}

static void test_device_takes_targeted(void **state)
{
    (void)state;
    lp_apitest *t = lp_apitest_start(0);
    assert_non_null(t);
    char id[64];
    upload(t, "default", "one\n", id);
    json_decref(publish(t, "default", id, "1.0", "", 201));
    upload(t, "default", "two\n", id);
    json_decref(publish(t, "default", id, "2.0", ",\"targeting\":" RULES_REQUEST, 201));
    device d;
    device_open(&d, t, "default");
    const lp_device_attribute uk_gold[] = {{"region", "uk"}, {"tier", "gold"}};
    const lp_device_attribute us_gold[] = {{"region", "us"}, {"tier", "gold"}};
    assert_int_equal(device_offer(&d, uk_gold, 2, ID_A, 0), 2);
    assert_int_equal(device_offer(&d, uk_gold, 2, ID_B, 1), 2);
    assert_int_equal(device_offer(&d, us_gold, 2, ID_A, 0), 1);
    if (!strstr(d.skips, "releases/2.json: needs attribute region to be one of eu, uk, this "
                         "device has region=us"))
        fail_msg("skips: %s", d.skips);
    assert_int_equal(device_offer(&d, uk_gold, 2, "00112233445566778899aabbccddeeff", 0), 1);
    if (!strstr(d.skips, "releases/2.json: not in the release's list of 2 devices"))
        fail_msg("skips: %s", d.skips);
    device_close(&d);
    lp_apitest_stop(t);
}

static void test_rollback(void **state)
{
    (void)state;
    lp_apitest *t = lp_apitest_start(0);
    assert_non_null(t);
    char id[64];
    upload(t, "default", "one\n", id);
    json_decref(publish(t, "default", id, "1.0", ",\"targeting\":" RULES_REQUEST, 201));
    upload(t, "default", "two\n", id);
    json_decref(publish(t, "default", id, "2.0", "", 201));

    /* by default the restored release's rules */
    json_t *j = lp_apitest_json(t, "POST", "/api/v1/apps/default/rollback", t->admin,
                                "{\"target\":\"1.0\"}", 201);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "release"),
                                                        "version_code")),
                     3);
    expect_rules(j, RULES_CANONICAL);
    json_decref(j);
    char *rules = signed_rules(t, "default", 3);
    assert_string_equal(rules, RULES_CANONICAL);
    free(rules);
    /* null is the same as absent */
    j = lp_apitest_json(t, "POST", "/api/v1/apps/default/rollback", t->admin,
                        "{\"target\":\"1.0\",\"targeting\":null}", 201);
    expect_rules(j, RULES_CANONICAL);
    json_decref(j);
    /* new rules */
    j = lp_apitest_json(t, "POST", "/api/v1/apps/default/rollback", t->admin,
                        "{\"target\":\"1.0\",\"targeting\":{\"min_from_code\":2}}", 201);
    expect_rules(j, "{\"min_from_code\":2}");
    json_decref(j);
    rules = signed_rules(t, "default", 5);
    assert_string_equal(rules, "{\"min_from_code\":2}");
    free(rules);
    /* none */
    j = lp_apitest_json(t, "POST", "/api/v1/apps/default/rollback", t->admin,
                        "{\"target\":\"1.0\",\"targeting\":{}}", 201);
    expect_rules(j, "null");
    json_decref(j);
    assert_null(signed_rules(t, "default", 6));
    /* bad ones are refused, naming the member; nothing published */
    json_decref(expect_error(t, "POST", "/api/v1/apps/default/rollback",
                             "{\"target\":\"1.0\",\"targeting\":{\"devices\":[\"xyz\"]}}", 400,
                             "bad_request", "field 'targeting.devices[0]'"));
    json_decref(expect_error(t, "POST", "/api/v1/apps/default/rollback",
                             "{\"target\":\"1.0\",\"targeting\":{\"cohort\":1}}", 400,
                             "bad_request", "field 'targeting.cohort': unknown member"));
    j = lp_apitest_json(t, "GET", "/api/v1/apps/default/releases", t->admin, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "releases")), 6);
    json_decref(j);
    lp_apitest_stop(t);
}

/* ---- an app whose publisher signs --------------------------------------------------------- */

static void test_publisher_signed(void **state)
{
    (void)state;
    lp_apitest *t = lp_apitest_start(0);
    assert_non_null(t);
    lp_key *root_key = NULL, *rel_key = NULL;
    lp_error err;
    assert_int_equal(lp_key_generate(&root_key, LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_key_generate(&rel_key, LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_apitest_publisher_app(t, "signed", root_key, &rel_key, 1, 1, NULL, NULL),
                     0);
    char id[64];
    upload(t, "signed", "one\n", id);
    json_t *p = publish(t, "signed", id, "1.0", ",\"targeting\":" RULES_REQUEST, 202);
    expect_rules(p, RULES_CANONICAL);
    /* the bytes to sign carry the rules in the new target's custom part */
    const json_t *s = json_object_get(json_object_get(p, "sign"), "signed");
    assert_true(json_is_string(s));
    char want[1024];
    snprintf(want, sizeof want, "\"targeting\":%s", RULES_CANONICAL);
    if (!strstr(json_string_value(s), want))
        fail_msg("the prepared bytes lack %s: %s", want, json_string_value(s));
    char *body = lp_testpub_signatures(&rel_key, 1, json_string_value(s), json_string_length(s));
    assert_non_null(body);
    lp_apiresp r;
    static const char *const ct[] = {"Content-Type: application/json", NULL};
    assert_int_equal(lp_apitest_call(t, "POST", "/api/v1/apps/signed/releases/1.0/signatures",
                                     t->admin, NULL, ct, body, strlen(body), &r),
                     0);
    assert_int_equal(r.status, 201);
    lp_apiresp_free(&r);
    free(body);
    json_decref(p);
    char *rules = signed_rules(t, "signed", 1);
    assert_non_null(rules);
    assert_string_equal(rules, RULES_CANONICAL);
    free(rules);
    /* a rollback prepared: the restored release's rules */
    p = lp_apitest_json(t, "POST", "/api/v1/apps/signed/rollback", t->admin,
                        "{\"target\":\"1.0\"}", 202);
    assert_non_null(p);
    expect_rules(p, RULES_CANONICAL);
    s = json_object_get(json_object_get(p, "sign"), "signed");
    const char *second = strstr(json_string_value(s), want);
    assert_non_null(second);
    assert_non_null(strstr(second + 1, want)); /* both targets carry them */
    json_decref(p);
    lp_key_free(root_key);
    lp_key_free(rel_key);
    lp_apitest_stop(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_refusals),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_device_takes_targeted),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_publisher_signed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
