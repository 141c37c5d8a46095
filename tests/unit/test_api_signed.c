/*
 * test_api_signed.c — apps whose publisher signs, through the management
 * API over real HTTP (the real server and service on a scratch data folder,
 * tests/support/apitest.h), with the publisher's keys held only by the
 * test (tests/support/publisher.h):
 *
 *   - creating the app: POST /api/v1/apps {"signing":"publisher"} (202, the
 *     online keys), the root built offline, PUT .../root (201); roots the
 *     server refuses (422 naming the role; nothing made), a root before the
 *     app is begun (409), a bad "signing" value (400);
 *   - a release with a targets threshold of two keys: POST .../releases
 *     (202, pending, the bytes to sign as a JSON string whose raw newline
 *     survives), GET .../pending, one signature (409 "threshold", kept, one
 *     more needed), the second (201 published), a TUF client that trusts
 *     the root file and refreshes through the server;
 *   - refusals: a key the targets role does not list and a signature over
 *     other bytes (422 bad_signature naming the key ID, nothing kept), a
 *     malformed signatures body (400 naming the member), a second prepare
 *     while one is pending (409), signing what is published (409);
 *   - cancel (DELETE .../pending, by version and without), rollback
 *     prepared, cancelled, prepared again and signed;
 *   - the server-signed app refuses the two-step routes (409) and the data
 *     folder holds no root or targets key of the publisher's app.
 */
#include "apitest.h"
#include "livepush/tuf.h"
#include "livepush/tuf_sign.h"
#include "publisher.h"
#include "testutil.h"

#include <curl/curl.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

static const uint8_t CONTENT[] = "hello, signed world\n";

enum { K_ROOT, K_REL1, K_REL2, K_OUTSIDER, NKEYS };

typedef struct world {
    lp_apitest *t;
    lp_key *k[NKEYS];
    char upload[LP_TOKEN_TEXT_SIZE];
} world;

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->t = lp_apitest_start(0);
    assert_non_null(w->t);
    lp_error err;
    for (int i = 0; i < NKEYS; i++)
        assert_int_equal(lp_key_generate(&w->k[i], i == K_REL2 ? LP_KEY_ECDSA_P256
                                                                : LP_KEY_ED25519,
                                         &err),
                         LP_OK);
    assert_int_equal(lp_apitest_token(w->t, "ci", "upload", w->upload, NULL), 0);
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

static const char *keyid(const lp_key *k)
{
    static char ids[4][65];
    static int n;
    char *id = ids[n++ % 4];
    assert_int_equal(lp_tuf_key_id(k, id, NULL), LP_OK);
    return id;
}

/* Sends a JSON request and checks an error answer: status, code and a
 * message containing `part`; returns the answer's JSON (new reference). */
static json_t *expect_error(world *w, const char *method, const char *path, const char *token,
                            const char *body, long status, const char *code, const char *part)
{
    lp_apiresp r;
    static const char *const ct[] = {"Content-Type: application/json", NULL};
    assert_int_equal(lp_apitest_call(w->t, method, path, token ? token : w->t->admin, NULL, ct,
                                     body, body ? strlen(body) : 0, &r),
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

/* Uploads CONTENT and prepares release `version` of `app` with notes that
 * hold a newline; returns the 202 answer. */
static json_t *prepare(world *w, const char *app, const char *version)
{
    char id[64], path[128], req[512];
    assert_int_equal(lp_apitest_upload(w->t, w->upload, app, CONTENT, sizeof CONTENT - 1, 8, 1,
                                       id),
                     0);
    snprintf(path, sizeof path, "/api/v1/apps/%s/releases", app);
    snprintf(req, sizeof req,
             "{\"upload\":\"%s\",\"version\":\"%s\",\"kind\":\"file\",\"file_name\":\"hi.txt\","
             "\"notes\":\"line one\\nline two\",\"channels\":[\"beta\"]}",
             id, version);
    json_t *j = lp_apitest_json(w->t, "POST", path, w->upload, req, 202);
    assert_non_null(j);
    return j;
}

/* The bytes to sign of an answer (borrowed) and their length. */
static const char *signed_bytes(const json_t *ans, size_t *len)
{
    const json_t *s = json_object_get(json_object_get(ans, "sign"), "signed");
    assert_true(json_is_string(s));
    *len = json_string_length(s);
    return json_string_value(s);
}

/* POSTs signatures by `keys` over the answer's bytes to .../releases/<v>/
 * signatures; returns the answer when the status is `expect`. */
static json_t *send_signatures(world *w, const char *app, const char *version,
                               const json_t *ans, const int *keys, size_t n, long expect)
{
    lp_key *ks[4];
    for (size_t i = 0; i < n; i++)
        ks[i] = w->k[keys[i]];
    size_t len = 0;
    const char *canon = signed_bytes(ans, &len);
    char *body = lp_testpub_signatures(ks, n, canon, len);
    assert_non_null(body);
    char path[256];
    snprintf(path, sizeof path, "/api/v1/apps/%s/releases/%s/signatures", app, version);
    lp_apiresp r;
    static const char *const ct[] = {"Content-Type: application/json", NULL};
    assert_int_equal(
        lp_apitest_call(w->t, "POST", path, w->upload, NULL, ct, body, strlen(body), &r), 0);
    free(body);
    if (r.status != expect)
        fail_msg("POST %s: HTTP %ld (expected %ld): %s", path, r.status, expect,
                 r.body ? r.body : "");
    json_t *j = json_incref(r.json);
    lp_apiresp_free(&r);
    return j;
}

/* A fresh TUF client trusting `root` refreshes from the server; returns
 * how many of releases/1..max.json it finds; *custom gets the custom JSON
 * of releases/<want>.json. */
static int client_finds(world *w, const char *app, const char *root, size_t rlen, int max,
                        int want, char **custom)
{
    static int seq;
    char dir[4096], rootfile[4096], meta[512], targets[512];
    snprintf(dir, sizeof dir, "%s/client-%d", w->t->dir, ++seq);
    snprintf(rootfile, sizeof rootfile, "%s/client-%d.root.json", w->t->dir, seq);
    snprintf(meta, sizeof meta, "%s/v1/apps/%s/metadata", w->t->base, app);
    snprintf(targets, sizeof targets, "%s/v1/apps/%s/targets", w->t->base, app);
    assert_int_equal(lp_test_write_file(rootfile, root, rlen), 0);
    lp_error err;
    if (lp_tuf_init_trusted_root(dir, rootfile, &err))
        fail_msg("init: %s", err.msg);
    lp_tuf_client_config cfg = {.metadata_dir = dir, .metadata_url = meta,
                                .targets_url = targets};
    lp_tuf_client *c = NULL;
    if (lp_tuf_client_open(&c, &cfg, &err) || lp_tuf_client_refresh(c, NULL, &err))
        fail_msg("refresh: %s", err.msg);
    int found = 0;
    for (int code = 1; code <= max; code++) {
        char name[64], dest[4200];
        snprintf(name, sizeof name, "releases/%d.json", code);
        lp_tuf_target *t = NULL;
        if (lp_tuf_client_find_target(c, name, &t, NULL) != LP_OK)
            continue;
        found++;
        snprintf(dest, sizeof dest, "%s/%d.json", dir, code);
        if (lp_tuf_client_download_target(c, t, dest, &err))
            fail_msg("download %s: %s", name, err.msg);
        if (code == want && custom)
            *custom = strdup(lp_tuf_target_custom_json(t));
        lp_tuf_target_free(t);
    }
    lp_tuf_client_free(c);
    return found;
}

/* ---- creating the app ----------------------------------------------------------- */

static void test_create(void **state)
{
    world *w = *state;
    /* a bad mode, a root before the app is begun, beginning an existing app */
    json_decref(expect_error(w, "POST", "/api/v1/apps", NULL,
                             "{\"name\":\"x\",\"signing\":\"both\"}", 400, "bad_request",
                             "field 'signing'"));
    json_decref(expect_error(w, "PUT", "/api/v1/apps/early/root", NULL, "{\"root\":\"{}\"}",
                             409, "conflict", "begin the app first"));
    json_decref(expect_error(w, "POST", "/api/v1/apps", NULL,
                             "{\"name\":\"default\",\"signing\":\"publisher\"}", 409,
                             "conflict", "default"));
    json_decref(expect_error(w, "PUT", "/api/v1/apps/early/root", NULL, "{\"rot\":\"{}\"}",
                             400, "bad_request", "field 'rot': unknown field"));

    json_t *begun = lp_apitest_json(w->t, "POST", "/api/v1/apps", w->t->admin,
                                    "{\"name\":\"shop\",\"signing\":\"publisher\"}", 202);
    assert_non_null(begun);
    const json_t *app = json_object_get(begun, "app");
    assert_string_equal(json_string_value(json_object_get(app, "signing")), "publisher");
    assert_string_equal(json_string_value(json_object_get(app, "state")), "awaiting_root");
    json_t *online = json_object_get(begun, "online_keys");
    assert_int_equal(strlen(json_string_value(
                         json_object_get(json_object_get(online, "snapshot"), "keyid"))),
                     64);
    /* until its root is in, the app does not exist */
    json_decref(expect_error(w, "GET", "/api/v1/apps/shop", NULL, NULL, 404, "not_found",
                             "shop"));
    /* beginning again hands out the same keys */
    json_t *again = lp_apitest_json(w->t, "POST", "/api/v1/apps", w->t->admin,
                                    "{\"name\":\"shop\",\"signing\":\"publisher\"}", 202);
    assert_true(json_equal(online, json_object_get(again, "online_keys")));
    json_decref(again);

    /* roots the server refuses: the publisher's key as timestamp key; not
     * JSON; not signed by its root key */
    char scratch[4096];
    size_t len = 0;
    json_t *wrong = json_deep_copy(online);
    json_t *mine = json_pack("{s:s,s:o}", "keyid", keyid(w->k[K_OUTSIDER]), "key", json_null());
    {
        char *text = NULL;
        assert_int_equal(lp_tuf_key_to_json(w->k[K_OUTSIDER], &text, NULL, NULL), LP_OK);
        json_object_set_new(mine, "key", json_loads(text, 0, NULL));
        free(text);
    }
    json_object_set_new(wrong, "timestamp", mine);
    snprintf(scratch, sizeof scratch, "%s/scratch-wrong", w->t->dir);
    char *root = lp_testpub_make_root(scratch, wrong, &w->k[K_ROOT], 1, 1, &w->k[K_REL1], 1, 1,
                                      &len);
    json_decref(wrong);
    char *body = lp_testpub_root_body(root, len);
    json_decref(expect_error(w, "PUT", "/api/v1/apps/shop/root", NULL, body, 422,
                             "unprocessable", "role timestamp"));
    free(body);
    free(root);
    json_decref(expect_error(w, "PUT", "/api/v1/apps/shop/root", NULL, "{\"root\":\"[1]\"}",
                             422, "unprocessable", "root"));
    snprintf(scratch, sizeof scratch, "%s/scratch-unsigned", w->t->dir);
    lp_key *rel[2] = {w->k[K_REL1], w->k[K_REL2]};
    root = lp_testpub_make_root(scratch, online, &w->k[K_ROOT], 1, 1, rel, 2, 2, &len);
    assert_non_null(root);
    char *sig = strstr(root, "\"sig\":\"");
    assert_non_null(sig);
    char keep = sig[7];
    sig[7] = keep == 'a' ? 'b' : 'a';
    body = lp_testpub_root_body(root, len);
    json_decref(expect_error(w, "PUT", "/api/v1/apps/shop/root", NULL, body, 422,
                             "unprocessable", "root"));
    free(body);
    /* an upload token may not send the root */
    sig[7] = keep;
    body = lp_testpub_root_body(root, len);
    json_decref(expect_error(w, "PUT", "/api/v1/apps/shop/root", w->upload, body, 403,
                             "forbidden", "admin"));
    json_decref(expect_error(w, "GET", "/api/v1/apps/shop", NULL, NULL, 404, "not_found",
                             "shop"));

    /* the right root */
    json_t *made = lp_apitest_json(w->t, "PUT", "/api/v1/apps/shop/root", w->t->admin, body,
                                   201);
    assert_non_null(made);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(made, "app"), "signing")),
        "publisher");
    json_decref(made);
    json_decref(expect_error(w, "PUT", "/api/v1/apps/shop/root", NULL, body, 409, "conflict",
                             "shop"));
    free(body);
    free(root);
    json_decref(begun);

    json_t *list = lp_apitest_json(w->t, "GET", "/api/v1/apps", w->upload, NULL, 200);
    size_t i;
    json_t *a;
    int seen = 0;
    json_array_foreach(json_object_get(list, "apps"), i, a)
    {
        const char *name = json_string_value(json_object_get(a, "name"));
        const char *signing = json_string_value(json_object_get(a, "signing"));
        if (!strcmp(name, "shop"))
            seen += !strcmp(signing, "publisher");
        if (!strcmp(name, "default"))
            seen += !strcmp(signing, "server");
    }
    assert_int_equal(seen, 2);
    json_decref(list);
    json_t *show = lp_apitest_json(w->t, "GET", "/api/v1/apps/shop", w->upload, NULL, 200);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(show, "app"), "signing")),
        "publisher");
    assert_true(json_is_null(json_object_get(show, "latest")));
    json_decref(show);
}

/* ---- publishing with a threshold of two ------------------------------------------- */

static void test_threshold_flow(void **state)
{
    world *w = *state;
    lp_key *rel[2] = {w->k[K_REL1], w->k[K_REL2]};
    char *root = NULL;
    size_t rlen = 0;
    assert_int_equal(lp_apitest_publisher_app(w->t, "quorum", w->k[K_ROOT], rel, 2, 2, &root,
                                              &rlen),
                     0);

    json_t *p1 = prepare(w, "quorum", "1.0");
    const json_t *r1 = json_object_get(p1, "release");
    assert_string_equal(json_string_value(json_object_get(r1, "state")), "pending");
    assert_int_equal(json_integer_value(json_object_get(r1, "version_code")), 1);
    const json_t *sign = json_object_get(p1, "sign");
    assert_string_equal(json_string_value(json_object_get(sign, "role")), "targets");
    assert_int_equal(json_array_size(json_object_get(sign, "signatures")), 0);
    size_t len = 0;
    const char *canon = signed_bytes(p1, &len);
    /* canonical bytes: the notes' newline is raw; readable once escaped */
    assert_non_null(memchr(canon, '\n', len));
    char *text = NULL;
    assert_int_equal(lp_tuf_canonical_to_json(canon, len, &text, NULL, NULL), LP_OK);
    json_t *sg = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    free(text);
    assert_non_null(sg);
    const json_t *entry = json_object_get(json_object_get(sg, "targets"), "releases/1.json");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(entry, "hashes"), "sha256")),
        json_string_value(json_object_get(json_object_get(r1, "manifest"), "sha256")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(entry, "custom"), "notes")),
        "line one\nline two");
    json_decref(sg);

    /* the pending release: the same bytes; not listed as latest yet */
    json_t *pend = lp_apitest_json(w->t, "GET", "/api/v1/apps/quorum/pending", w->upload, NULL,
                                   200);
    size_t plen = 0;
    const char *pcanon = signed_bytes(pend, &plen);
    assert_int_equal(plen, len);
    assert_memory_equal(pcanon, canon, len);
    json_decref(pend);
    json_t *show = lp_apitest_json(w->t, "GET", "/api/v1/apps/quorum", w->upload, NULL, 200);
    assert_true(json_is_null(json_object_get(show, "latest")));
    json_decref(show);

    /* one pending release at a time */
    char id[64], req[256];
    assert_int_equal(lp_apitest_upload(w->t, w->upload, "quorum", CONTENT, 4, 4, 0, id), 0);
    snprintf(req, sizeof req, "{\"upload\":\"%s\",\"version\":\"1.1\",\"kind\":\"file\"}", id);
    json_decref(expect_error(w, "POST", "/api/v1/apps/quorum/releases", w->upload, req, 409,
                             "conflict", "waiting for signatures"));

    /* refused signatures: nothing kept */
    const int outsider[] = {K_OUTSIDER};
    json_t *bad = send_signatures(w, "quorum", "1.0", p1, outsider, 1, 422);
    assert_string_equal(json_string_value(json_object_get(json_object_get(bad, "error"), "code")),
                        "bad_signature");
    assert_non_null(strstr(
        json_string_value(json_object_get(json_object_get(bad, "error"), "message")),
        keyid(w->k[K_OUTSIDER])));
    json_decref(bad);
    char *other = strdup(canon);
    char *at = strstr(other, "\"version_code\":1");
    assert_non_null(at);
    at[strlen("\"version_code\":")] = '7';
    char *ob = lp_testpub_signatures(&w->k[K_REL1], 1, other, len);
    json_decref(expect_error(w, "POST", "/api/v1/apps/quorum/releases/1.0/signatures",
                             w->upload, ob, 422, "bad_signature", keyid(w->k[K_REL1])));
    free(ob);
    free(other);
    json_decref(expect_error(w, "POST", "/api/v1/apps/quorum/releases/1.0/signatures",
                             w->upload, "{\"signatures\":[{\"keyid\":\"ab\"}]}", 400,
                             "bad_request", "signatures[0].sig"));
    json_decref(expect_error(w, "POST", "/api/v1/apps/quorum/releases/1.0/signatures",
                             w->upload, "{\"signatures\":[{\"keyid\":\"ab\",\"sig\":\"00\","
                                        "\"x\":1}]}",
                             400, "bad_request", "signatures[0].x"));
    json_decref(expect_error(w, "POST", "/api/v1/apps/quorum/releases/1.0/signatures",
                             w->upload, "{\"signatures\":[\"ab\"]}", 400, "bad_request",
                             "array of objects"));
    json_decref(expect_error(w, "POST", "/api/v1/apps/quorum/releases/9.9/signatures",
                             w->upload, "{\"signatures\":[]}", 404, "not_found", "9.9"));
    pend = lp_apitest_json(w->t, "GET", "/api/v1/apps/quorum/pending", w->upload, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(json_object_get(pend, "sign"),
                                                     "signatures")),
                     0);
    json_decref(pend);

    /* one signature of two: kept; one more needed */
    const int one[] = {K_REL1}, two[] = {K_REL2};
    json_t *short1 = send_signatures(w, "quorum", "1.0", p1, one, 1, 409);
    const json_t *err = json_object_get(short1, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "threshold");
    assert_non_null(strstr(json_string_value(json_object_get(err, "message")), "1 more needed"));
    assert_non_null(strstr(json_string_value(json_object_get(err, "message")), "role targets"));
    const json_t *s1 = json_object_get(short1, "sign");
    assert_int_equal(json_integer_value(json_object_get(s1, "threshold")), 2);
    assert_int_equal(json_integer_value(json_object_get(s1, "needed")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(s1, "signatures"), 0)),
                        keyid(w->k[K_REL1]));
    assert_string_equal(json_string_value(json_object_get(json_object_get(short1, "release"),
                                                          "state")),
                        "pending");
    json_decref(short1);
    pend = lp_apitest_json(w->t, "GET", "/api/v1/apps/quorum/pending", w->upload, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(json_object_get(pend, "sign"),
                                                     "signatures")),
                     1);
    json_decref(pend);

    /* the second key holder signs: published */
    json_t *done = send_signatures(w, "quorum", "1.0", p1, two, 1, 201);
    assert_string_equal(json_string_value(json_object_get(json_object_get(done, "release"),
                                                          "state")),
                        "published");
    json_decref(done);
    char *custom = NULL;
    assert_int_equal(client_finds(w, "quorum", root, rlen, 3, 1, &custom), 1);
    assert_non_null(strstr(custom, "\"version\":\"1.0\""));
    free(custom);
    json_decref(expect_error(w, "GET", "/api/v1/apps/quorum/pending", w->upload, NULL, 404,
                             "not_found", "no release waiting"));
    json_decref(expect_error(w, "POST", "/api/v1/apps/quorum/releases/1.0/signatures",
                             w->upload, "{\"signatures\":[]}", 409, "conflict",
                             "not waiting for signatures"));
    json_decref(p1);

    /* both signatures in one call */
    json_t *p2 = prepare(w, "quorum", "2.0");
    const int both[] = {K_REL1, K_REL2};
    json_decref(send_signatures(w, "quorum", "2.0", p2, both, 2, 201));
    json_decref(p2);
    assert_int_equal(client_finds(w, "quorum", root, rlen, 3, 0, NULL), 2);

    /* the data folder holds no root or targets key of this app: only the
     * online keys (rollout, snapshot, timestamp) */
    char keys[4096];
    snprintf(keys, sizeof keys, "%s/keys/quorum", w->t->dir);
    struct dirent **names = NULL;
    int n = scandir(keys, &names, NULL, alphasort);
    assert_int_equal(n, 5);
    assert_string_equal(names[2]->d_name, "rollout.pem");
    assert_string_equal(names[3]->d_name, "snapshot.pem");
    assert_string_equal(names[4]->d_name, "timestamp.pem");
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(root);
}

/* ---- cancel and rollback -------------------------------------------------------------- */

static void test_cancel_and_rollback(void **state)
{
    world *w = *state;
    char *root = NULL;
    size_t rlen = 0;
    assert_int_equal(lp_apitest_publisher_app(w->t, "undo", w->k[K_ROOT], &w->k[K_REL1], 1, 1,
                                              &root, &rlen),
                     0);
    const int one[] = {K_REL1};
    json_t *p = prepare(w, "undo", "v1");
    json_decref(send_signatures(w, "undo", "v1", p, one, 1, 201));
    json_decref(p);

    /* a release prepared, then cancelled: withdrawn, never listed */
    p = prepare(w, "undo", "v2");
    json_decref(expect_error(w, "DELETE", "/api/v1/apps/undo/pending?version=v1", w->upload,
                             NULL, 409, "conflict", "not waiting for signatures"));
    json_decref(expect_error(w, "DELETE", "/api/v1/apps/undo/pending?versoin=v2", w->upload,
                             NULL, 400, "bad_request", "versoin"));
    json_t *gone = lp_apitest_json(w->t, "DELETE", "/api/v1/apps/undo/pending?version=v2",
                                   w->upload, NULL, 200);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(gone, "release"), "state")),
        "withdrawn");
    json_decref(gone);
    json_decref(expect_error(w, "DELETE", "/api/v1/apps/undo/pending", w->upload, NULL, 404,
                             "not_found", "no release waiting"));
    json_decref(send_signatures(w, "undo", "v2", p, one, 1, 409));
    json_decref(p);

    /* rollback to v1: prepared, cancelled (without naming it), prepared
     * again and signed */
    json_t *rb = lp_apitest_json(w->t, "POST", "/api/v1/apps/undo/rollback", w->upload,
                                 "{\"target\":\"v1\"}", 202);
    assert_non_null(rb);
    const json_t *rel = json_object_get(rb, "release");
    assert_string_equal(json_string_value(json_object_get(rel, "state")), "pending");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(rel, "rollback_of"), "version")),
        "v1");
    json_decref(rb);
    json_decref(lp_apitest_json(w->t, "DELETE", "/api/v1/apps/undo/pending", w->upload, NULL,
                                200));
    json_decref(expect_error(w, "POST", "/api/v1/apps/undo/rollback", w->upload,
                             "{\"target\":\"v2\"}", 409, "conflict", "withdrawn"));
    rb = lp_apitest_json(w->t, "POST", "/api/v1/apps/undo/rollback", w->upload,
                         "{\"target\":\"v1\"}", 202);
    int64_t code = json_integer_value(json_object_get(json_object_get(rb, "release"),
                                                      "version_code"));
    assert_int_equal(code, 4);
    json_decref(send_signatures(w, "undo", "v1", rb, one, 1, 201));
    json_decref(rb);
    char *custom = NULL;
    assert_int_equal(client_finds(w, "undo", root, rlen, 5, 4, &custom), 2);
    assert_non_null(strstr(custom, "\"rollback_of\":1"));
    free(custom);
    free(root);

    /* a server-signed app has no two-step routes */
    json_decref(expect_error(w, "GET", "/api/v1/apps/default/pending", w->upload, NULL, 409,
                             "conflict", "server signs"));
    json_decref(expect_error(w, "POST", "/api/v1/apps/default/releases/v1/signatures",
                             w->upload, "{\"signatures\":[]}", 409, "conflict",
                             "server signs"));
    json_decref(expect_error(w, "DELETE", "/api/v1/apps/nowhere/pending", w->upload, NULL, 404,
                             "not_found", "nowhere"));
    json_decref(expect_error(w, "PUT", "/api/v1/apps/default/root", NULL, "{\"root\":\"{}\"}",
                             409, "conflict", "default"));
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_threshold_flow),
        cmocka_unit_test(test_cancel_and_rollback),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
