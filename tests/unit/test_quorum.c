/*
 * test_quorum.c — quorum approval of the releases of an app whose publisher
 * signs: a release needs k of the n release keys (the targets role's
 * threshold) to approve it before any device installs it.
 *
 * Everything is real: the server and service on a scratch data folder
 * behind real HTTP on loopback (tests/support/apitest.h), release keys of
 * two kinds held only by the test (two ed25519, one ECDSA P-256), the
 * approvals sent as signatures over the bytes the server prepared
 * (tests/support/publisher.h), and a device: the updater's TUF client over
 * lp_net, trusting the app's root file, choosing with lp_check_for_update.
 *
 * The app's root sets the targets threshold to 2 of 3 keys.  Checks:
 *   - a pending release's "approvals" ({present, required, missing, keys})
 *     in the prepare answer, GET .../pending, GET .../releases/<v> and the
 *     releases list: every release key listed, the approvers marked;
 *   - with 1 approval of 2 the device is not offered the release (before
 *     the first release the repository has no timestamp at all; later the
 *     device keeps the published release); the same key approving again
 *     still counts once;
 *   - with the 2nd approval the release is published (201, 2 of 2) and the
 *     device is offered it;
 *   - a token with the approve scope alone may approve (and read what is
 *     pending); a read-only one may not (403 naming both scopes);
 *   - a published release shows the keys that signed the targets metadata
 *     that first listed it (three releases approved by three different
 *     pairs, each told apart);
 *   - a 3rd key approving after publish is refused (409 "published, not
 *     waiting for signatures"), nothing is kept or written: the approvals
 *     and the repository's targets version stay as they were.
 */
#include "agent/net.h"
#include "apitest.h"
#include "core/file.h"
#include "livepush/tuf.h"
#include "livepush/tuf_sign.h"
#include "publisher.h"
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

enum { K_ROOT, K_A, K_B, K_C, NKEYS };

typedef struct world {
    lp_apitest *t;
    lp_key *k[NKEYS];
    char id[NKEYS][65];
    char upload[LP_TOKEN_TEXT_SIZE];   /* the publisher's: uploads and approves */
    char approver[LP_TOKEN_TEXT_SIZE]; /* scope approve only */
    char reader[LP_TOKEN_TEXT_SIZE];   /* scope read only */
} world;

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->t = lp_apitest_start(0);
    assert_non_null(w->t);
    lp_error err;
    for (int i = 0; i < NKEYS; i++) {
        assert_int_equal(lp_key_generate(&w->k[i], i == K_B ? LP_KEY_ECDSA_P256 : LP_KEY_ED25519,
                                         &err),
                         LP_OK);
        assert_int_equal(lp_tuf_key_id(w->k[i], w->id[i], &err), LP_OK);
    }
    assert_int_equal(lp_apitest_token(w->t, "ci", "upload", w->upload, NULL), 0);
    assert_int_equal(lp_apitest_token(w->t, "carol", "approve", w->approver, NULL), 0);
    assert_int_equal(lp_apitest_token(w->t, "auditor", "read", w->reader, NULL), 0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    lp_apitest_stop(w->t);
    for (int i = 0; i < NKEYS; i++)
        lp_key_free(w->k[i]);
    free(w);
    return 0;
}

/* ---- the publisher's side ------------------------------------------------------ */

/* Uploads `content` and prepares release `version` of app shop on channel
 * stable; returns the 202 answer. */
static json_t *prepare(world *w, const char *version, const char *content)
{
    char id[64], req[512];
    assert_int_equal(lp_apitest_upload(w->t, w->upload, "shop", content, strlen(content),
                                       strlen(content), 1, id),
                     0);
    snprintf(req, sizeof req,
             "{\"upload\":\"%s\",\"version\":\"%s\",\"kind\":\"file\",\"file_name\":\"app.txt\","
             "\"channels\":[\"stable\"]}",
             id, version);
    json_t *j = lp_apitest_json(w->t, "POST", "/api/v1/apps/shop/releases", w->upload, req, 202);
    assert_non_null(j);
    return j;
}

/* Approvals by `keys` (n of them, in one call) over the bytes of the
 * prepare answer `prep`, sent with `token`; returns the answer when its
 * status is `expect`. */
static json_t *approve_as(world *w, const char *token, const char *version, const json_t *prep,
                          const int *keys, size_t n, long expect)
{
    lp_key *ks[NKEYS];
    for (size_t i = 0; i < n; i++)
        ks[i] = w->k[keys[i]];
    const json_t *s = json_object_get(json_object_get(prep, "sign"), "signed");
    assert_true(json_is_string(s));
    char *body = lp_testpub_signatures(ks, n, json_string_value(s), json_string_length(s));
    assert_non_null(body);
    char path[256];
    snprintf(path, sizeof path, "/api/v1/apps/shop/releases/%s/signatures", version);
    json_t *j = lp_apitest_json(w->t, "POST", path, token, body, expect);
    free(body);
    if (!j)
        fail_msg("POST %s: not HTTP %ld", path, expect);
    return j;
}

/* The same with the publisher's upload token. */
static json_t *approve(world *w, const char *version, const json_t *prep, const int *keys,
                       size_t n, long expect)
{
    return approve_as(w, w->upload, version, prep, keys, n, expect);
}

/* Checks a release object's approvals: present / required / missing, and
 * exactly the keys flagged in `approved` (indexed like w->k; K_ROOT never)
 * marked approved among the three release keys listed. */
static void expect_approvals(world *w, const json_t *rel, long long present, long long required,
                             const bool approved[NKEYS])
{
    const json_t *a = json_object_get(rel, "approvals");
    if (!json_is_object(a)) {
        char *text = json_dumps(rel, JSON_COMPACT);
        fail_msg("release without approvals: %s", text ? text : "?");
    }
    assert_int_equal(json_integer_value(json_object_get(a, "present")), present);
    assert_int_equal(json_integer_value(json_object_get(a, "required")), required);
    assert_int_equal(json_integer_value(json_object_get(a, "missing")),
                     present >= required ? 0 : required - present);
    const json_t *keys = json_object_get(a, "keys");
    assert_int_equal(json_array_size(keys), 3);
    int seen = 0;
    size_t i;
    const json_t *k;
    json_array_foreach(keys, i, k)
    {
        const char *kid = json_string_value(json_object_get(k, "keyid"));
        assert_non_null(kid);
        assert_string_not_equal(kid, w->id[K_ROOT]);
        for (int j = K_A; j <= K_C; j++) {
            if (strcmp(kid, w->id[j]) != 0)
                continue;
            seen |= 1 << j;
            if (json_is_true(json_object_get(k, "approved")) != approved[j])
                fail_msg("key %d (%s): approved is %s, expected %s", j, kid,
                         approved[j] ? "false" : "true", approved[j] ? "true" : "false");
        }
    }
    assert_int_equal(seen, (1 << K_A) | (1 << K_B) | (1 << K_C));
}

/* GET .../releases/<version>: the release object (new reference). */
static json_t *release(world *w, const char *version)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/apps/shop/releases/%s", version);
    json_t *j = lp_apitest_json(w->t, "GET", path, w->upload, NULL, 200);
    assert_non_null(j);
    json_t *r = json_incref(json_object_get(j, "release"));
    json_decref(j);
    return r;
}

/* ---- the device ---------------------------------------------------------------- */

typedef struct device {
    char *dir, *state, *work;
    lp_net *net;
    lp_tuf_client *tuf;
} device;

static void device_open(device *d, const char *server, const char *root_file)
{
    memset(d, 0, sizeof *d);
    assert_non_null(d->dir = lp_test_tmpdir("quorum-device"));
    d->state = lp_test_join(d->dir, ".livepush");
    d->work = lp_test_join(d->state, "downloads");
    char *meta = lp_test_join(d->state, "metadata");
    lp_error err;
    if (lp_tuf_init_trusted_root(meta, root_file, &err))
        fail_msg("trusted root: %s", err.msg);
    free(meta);
    lp_net_config c = {.server_url = server, .app = "shop", .state_dir = d->state,
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
    free(d->work);
}

/* The device, running release `current` (0: none), checks for an update:
 * the status of lp_check_for_update, and *code the version code offered
 * (0: none). */
static lp_status check(device *d, uint64_t current, uint64_t *code, lp_error *err)
{
    lp_check_opts o = {.channel = "stable", .platform = "linux", .arch = "x86_64",
                       .current_id = current, .work_dir = d->work};
    lp_update_offer offer;
    bool available = false;
    *code = 0;
    lp_status st = lp_check_for_update(d->tuf, &o, &offer, &available, err);
    if (!st && available)
        *code = offer.version_code;
    if (!st)
        lp_update_offer_free(&offer);
    return st;
}

/* The version code offered to the device running `current`, which must
 * check without error. */
static uint64_t offered(device *d, uint64_t current)
{
    uint64_t code = 0;
    lp_error err;
    if (check(d, current, &code, &err))
        fail_msg("check: %s", err.msg);
    return code;
}

/* ---- the quorum ------------------------------------------------------------------ */

static void test_quorum(void **state)
{
    world *w = *state;
    lp_key *rel[3] = {w->k[K_A], w->k[K_B], w->k[K_C]};
    char *root = NULL;
    size_t rlen = 0;
    assert_int_equal(lp_apitest_publisher_app(w->t, "shop", w->k[K_ROOT], rel, 3, 2, &root,
                                              &rlen),
                     0);
    char *root_file = lp_test_join(w->t->dir, "shop.root.json");
    assert_int_equal(lp_test_write_file(root_file, root, rlen), 0);
    free(root);
    device d;
    device_open(&d, w->t->base, root_file);
    free(root_file);
    const bool none[NKEYS] = {0}, only_a[NKEYS] = {[K_A] = true},
               ab[NKEYS] = {[K_A] = true, [K_B] = true}, only_c[NKEYS] = {[K_C] = true},
               ac[NKEYS] = {[K_A] = true, [K_C] = true}, bc[NKEYS] = {[K_B] = true, [K_C] = true};
    const int a[] = {K_A}, b[] = {K_B}, c[] = {K_C}, bc_keys[] = {K_B, K_C};

    /* release 1.0, the first: prepared, no approval yet */
    json_t *p1 = prepare(w, "1.0", "one\n");
    expect_approvals(w, json_object_get(p1, "release"), 0, 2, none);

    /* 1 approval of 2: kept, 1 missing; nobody can install it (nothing is
     * published at all yet: the repository has no timestamp) */
    json_t *j = approve(w, "1.0", p1, a, 1, 409);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "threshold");
    expect_approvals(w, json_object_get(j, "release"), 1, 2, only_a);
    json_decref(j);
    j = lp_apitest_json(w->t, "GET", "/api/v1/apps/shop/pending", w->upload, NULL, 200);
    assert_non_null(j);
    expect_approvals(w, json_object_get(j, "release"), 1, 2, only_a);
    json_decref(j);
    uint64_t code = 99;
    lp_error err;
    lp_status st = check(&d, 0, &code, &err);
    printf("  device before the first quorum: %s (%s)\n", lp_status_name(st), err.msg);
    assert_int_equal(st, LP_ERR_NOT_FOUND);
    assert_int_equal(code, 0);

    /* the 2nd approval: published, 2 of 2; the device is offered it */
    j = approve(w, "1.0", p1, b, 1, 201);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "release"), "state")), "published");
    expect_approvals(w, json_object_get(j, "release"), 2, 2, ab);
    json_decref(j);
    json_decref(p1);
    assert_int_equal(offered(&d, 0), 1);

    /* release 2.0: C approves (twice: one key counts once), with a token
     * that may approve and nothing else; a read-only token may not */
    json_t *p2 = prepare(w, "2.0", "two\n");
    j = approve_as(w, w->reader, "2.0", p2, c, 1, 403);
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(j, "error"),
                                                             "message")),
                           "lacks the scope 'upload' or 'approve'"));
    json_decref(j);
    json_decref(approve_as(w, w->approver, "2.0", p2, c, 1, 409));
    j = approve_as(w, w->approver, "2.0", p2, c, 1, 409);
    expect_approvals(w, json_object_get(j, "release"), 1, 2, only_c);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "sign"), "needed")),
                     1);
    json_decref(j);
    j = lp_apitest_json(w->t, "GET", "/api/v1/apps/shop/pending", w->upload, NULL, 200);
    expect_approvals(w, json_object_get(j, "release"), 1, 2, only_c);
    json_decref(j);
    json_t *r = release(w, "2.0");
    assert_string_equal(json_string_value(json_object_get(r, "state")), "pending");
    expect_approvals(w, r, 1, 2, only_c);
    json_decref(r);
    /* the list: the pending release's approvals; a published one's are
     * left null there */
    j = lp_apitest_json(w->t, "GET", "/api/v1/apps/shop/releases", w->upload, NULL, 200);
    const json_t *list = json_object_get(j, "releases");
    assert_int_equal(json_array_size(list), 2);
    expect_approvals(w, json_array_get(list, 0), 1, 2, only_c);
    assert_true(json_is_null(json_object_get(json_array_get(list, 1), "approvals")));
    json_decref(j);

    /* 1 approval of 2: the device running 1.0 is offered nothing, a new
     * device 1.0 only */
    assert_int_equal(offered(&d, 1), 0);
    assert_int_equal(offered(&d, 0), 1);

    /* A approves: 2 of 2, published; the device is offered 2.0 */
    j = approve(w, "2.0", p2, a, 1, 201);
    expect_approvals(w, json_object_get(j, "release"), 2, 2, ac);
    json_decref(j);
    assert_int_equal(offered(&d, 1), 2);

    /* B approving after the publish: refused, nothing pending, nothing
     * kept or written */
    char targets3[4096];
    snprintf(targets3, sizeof targets3, "%s/repos/shop/metadata/3.targets.json", w->t->dir);
    assert_int_equal(lp_file_exists(targets3), 0);
    lp_apiresp resp;
    static const char *const ct[] = {"Content-Type: application/json", NULL};
    const json_t *s2 = json_object_get(json_object_get(p2, "sign"), "signed");
    char *body = lp_testpub_signatures(&w->k[K_B], 1, json_string_value(s2),
                                       json_string_length(s2));
    assert_int_equal(lp_apitest_call(w->t, "POST", "/api/v1/apps/shop/releases/2.0/signatures",
                                     w->upload, NULL, ct, body, strlen(body), &resp),
                     0);
    free(body);
    printf("  a 3rd approval after the publish: HTTP %ld %s\n", resp.status,
           lp_apiresp_message(&resp));
    assert_int_equal(resp.status, 409);
    assert_string_equal(lp_apiresp_code(&resp), "conflict");
    assert_non_null(strstr(lp_apiresp_message(&resp), "is published, not waiting for signatures"));
    lp_apiresp_free(&resp);
    assert_int_equal(lp_file_exists(targets3), 0);
    json_decref(lp_apitest_json(w->t, "GET", "/api/v1/apps/shop/pending", w->upload, NULL, 404));
    r = release(w, "2.0");
    expect_approvals(w, r, 2, 2, ac);
    json_decref(r);
    json_decref(p2);

    /* release 3.0, approved by B and C in one call; each published release
     * shows the keys of the targets version that first listed it */
    json_t *p3 = prepare(w, "3.0", "three\n");
    j = approve(w, "3.0", p3, bc_keys, 2, 201);
    expect_approvals(w, json_object_get(j, "release"), 2, 2, bc);
    json_decref(j);
    json_decref(p3);
    assert_int_equal(offered(&d, 2), 3);
    const char *versions[] = {"1.0", "2.0", "3.0"};
    const bool *want[] = {ab, ac, bc};
    for (int i = 0; i < 3; i++) {
        r = release(w, versions[i]);
        expect_approvals(w, r, 2, 2, want[i]);
        json_decref(r);
    }
    device_close(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quorum),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
