/*
 * test_api_auth.c — authentication and scopes on every management route,
 * over real HTTP: the real server and service on a scratch data folder on
 * loopback (tests/support/apitest.h), tokens made through the API itself.
 *
 * For each route of docs/api.md the same request is sent with: no token,
 * a malformed header, another scheme, a well-formed token with a wrong
 * secret, a token the server never issued, a revoked admin token (all 401
 * in the error shape with WWW-Authenticate: Bearer realm="livepush"); a
 * token without the route's scope (403 naming the scope; not for whoami,
 * which any valid token may call); and finally the right token, which must
 * get the route's success status.  The refusals come first, so the success
 * proves that none of them had an effect (a POST that had run would now
 * conflict).  The routes of apps whose publisher signs are in the table
 * too: an app is begun and its root sent, and release s1 of the app
 * "signed" (prepared in the setup) gets its signature, then s2 is prepared
 * and cancelled and a rollback prepared.  A last test checks last_used_at
 * and that no secret reaches the log.
 */
#include "apitest.h"
#include "publisher.h"
#include "testutil.h"

#include <curl/curl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

typedef struct world {
    lp_apitest *t;
    char read[LP_TOKEN_TEXT_SIZE], upload[LP_TOKEN_TEXT_SIZE], download[LP_TOKEN_TEXT_SIZE];
    char revoked[LP_TOKEN_TEXT_SIZE];
    char victim_id[LP_TOKEN_ID_LEN + 1]; /* revoked by the DELETE case */
    char up_put[64], up_del[64], up_pub[64], up_signed[64];
    /* an app whose publisher signs ("signed", release s1 prepared), and one
     * begun whose root is to be sent ("pubroot") */
    lp_key *root_key, *rel_key;
    char *root_body, *sig_body;
} world;

static const uint8_t CONTENT[] = "hello, world\n";

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->t = lp_apitest_start(0);
    assert_non_null(w->t);
    char revoked_id[LP_TOKEN_ID_LEN + 1], victim[LP_TOKEN_TEXT_SIZE], path[128];
    assert_int_equal(lp_apitest_token(w->t, "r", "read", w->read, NULL), 0);
    assert_int_equal(lp_apitest_token(w->t, "u", "upload", w->upload, NULL), 0);
    assert_int_equal(lp_apitest_token(w->t, "d", "download", w->download, NULL), 0);
    assert_int_equal(lp_apitest_token(w->t, "x", "admin", w->revoked, revoked_id), 0);
    assert_int_equal(lp_apitest_token(w->t, "v", "read", victim, w->victim_id), 0);
    snprintf(path, sizeof path, "/api/v1/tokens/%s", revoked_id);
    json_t *j = lp_apitest_json(w->t, "DELETE", path, w->t->admin, NULL, 200);
    assert_non_null(j);
    json_decref(j);

    /* release v1, for the routes that need one */
    char id[64];
    assert_int_equal(lp_apitest_upload(w->t, w->t->admin, "default", CONTENT,
                                       sizeof CONTENT - 1, 5, 1, id),
                     0);
    char req[256];
    snprintf(req, sizeof req,
             "{\"upload\":\"%s\",\"version\":\"v1\",\"kind\":\"file\",\"file_name\":\"hello.txt\"}",
             id);
    j = lp_apitest_json(w->t, "POST", "/api/v1/apps/default/releases", w->t->admin, req, 201);
    assert_non_null(j);
    json_decref(j);

    /* uploads: one to PUT to, one to DELETE, one complete to publish */
    assert_int_equal(lp_apitest_upload(w->t, w->upload, "default", CONTENT, 4, 0, 0, w->up_put),
                     0);
    assert_int_equal(lp_apitest_upload(w->t, w->upload, "default", CONTENT, 4, 0, 0, w->up_del),
                     0);
    assert_int_equal(lp_apitest_upload(w->t, w->upload, "default", CONTENT, sizeof CONTENT - 1,
                                       64, 0, w->up_pub),
                     0);

    /* the publisher-signed apps */
    lp_error err;
    assert_int_equal(lp_key_generate(&w->root_key, LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_key_generate(&w->rel_key, LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_apitest_publisher_app(w->t, "signed", w->root_key, &w->rel_key, 1, 1,
                                              NULL, NULL),
                     0);
    j = lp_apitest_json(w->t, "POST", "/api/v1/apps", w->t->admin,
                        "{\"name\":\"pubroot\",\"signing\":\"publisher\"}", 202);
    assert_non_null(j);
    char scratch[4096];
    snprintf(scratch, sizeof scratch, "%s/scratch-pubroot", w->t->dir);
    size_t rlen = 0;
    char *root = lp_testpub_make_root(scratch, json_object_get(j, "online_keys"), &w->root_key,
                                      1, 1, &w->rel_key, 1, 1, &rlen);
    assert_non_null(root);
    w->root_body = lp_testpub_root_body(root, rlen);
    free(root);
    json_decref(j);
    assert_int_equal(lp_apitest_upload(w->t, w->upload, "signed", CONTENT, sizeof CONTENT - 1,
                                       64, 0, id),
                     0);
    snprintf(req, sizeof req, "{\"upload\":\"%s\",\"version\":\"s1\",\"kind\":\"file\"}",
             id);
    j = lp_apitest_json(w->t, "POST", "/api/v1/apps/signed/releases", w->upload, req, 202);
    assert_non_null(j);
    json_t *sg = json_object_get(json_object_get(j, "sign"), "signed");
    w->sig_body =
        lp_testpub_signatures(&w->rel_key, 1, json_string_value(sg), json_string_length(sg));
    assert_non_null(w->sig_body);
    json_decref(j);
    assert_int_equal(lp_apitest_upload(w->t, w->upload, "signed", CONTENT, 5, 5, 0,
                                       w->up_signed),
                     0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    lp_apitest_stop(w->t);
    lp_key_free(w->root_key);
    lp_key_free(w->rel_key);
    free(w->root_body);
    free(w->sig_body);
    free(w);
    return 0;
}

/* ---- the route table ---------------------------------------------------------- */

typedef struct rcase {
    const char *method;
    char path[160];
    lp_scopes need;
    char body[8192];
    char range[64]; /* Content-Range for PUT */
    long ok;
} rcase;

static size_t build_cases(world *w, rcase *c)
{
    size_t n = 0;
#define CASE(m, need_, okst, body_, ...)                                                       \
    do {                                                                                       \
        c[n] = (rcase){.method = m, .need = need_, .ok = okst};                                \
        snprintf(c[n].path, sizeof c[n].path, __VA_ARGS__);                                    \
        snprintf(c[n].body, sizeof c[n].body, "%s", body_);                                    \
        n++;                                                                                   \
    } while (0)
    char pub[256];
    snprintf(pub, sizeof pub, "{\"upload\":\"%s\",\"version\":\"v2\",\"kind\":\"file\"}",
             w->up_pub);
    CASE("GET", 0, 200, "", "/api/v1/whoami");
    CASE("GET", LP_SCOPE_READ, 200, "", "/api/v1/apps");
    CASE("POST", LP_SCOPE_ADMIN, 201, "{\"name\":\"second\"}", "/api/v1/apps");
    CASE("GET", LP_SCOPE_READ, 200, "", "/api/v1/apps/default");
    CASE("GET", LP_SCOPE_READ, 200, "", "/api/v1/apps/default/channels");
    CASE("POST", LP_SCOPE_ADMIN, 201, "{\"name\":\"beta\"}", "/api/v1/apps/default/channels");
    CASE("GET", LP_SCOPE_READ, 200, "", "/api/v1/apps/default/releases");
    CASE("GET", LP_SCOPE_READ, 200, "", "/api/v1/apps/default/releases/v1");
    CASE("POST", LP_SCOPE_UPLOAD, 201, "{\"size\":10}", "/api/v1/apps/default/uploads");
    CASE("GET", LP_SCOPE_UPLOAD, 200, "", "/api/v1/uploads/%s", w->up_put);
    CASE("PUT", LP_SCOPE_UPLOAD, 200, "abcd", "/api/v1/uploads/%s", w->up_put);
    snprintf(c[n - 1].range, sizeof c[n - 1].range, "Content-Range: bytes 0-3/4");
    CASE("DELETE", LP_SCOPE_UPLOAD, 200, "", "/api/v1/uploads/%s", w->up_del);
    CASE("POST", LP_SCOPE_UPLOAD, 201, pub, "/api/v1/apps/default/releases");
    CASE("POST", LP_SCOPE_UPLOAD, 201, "{\"target\":\"v1\"}", "/api/v1/apps/default/rollback");
    CASE("GET", LP_SCOPE_ADMIN, 200, "", "/api/v1/tokens");
    CASE("POST", LP_SCOPE_ADMIN, 201, "{\"name\":\"ci\",\"scopes\":[\"upload\"]}",
         "/api/v1/tokens");
    CASE("DELETE", LP_SCOPE_ADMIN, 200, "", "/api/v1/tokens/%s", w->victim_id);
    /* apps whose publisher signs (api_signing.c) */
    CASE("POST", LP_SCOPE_ADMIN, 202, "{\"name\":\"pub2\",\"signing\":\"publisher\"}",
         "/api/v1/apps");
    CASE("PUT", LP_SCOPE_ADMIN, 201, w->root_body, "/api/v1/apps/pubroot/root");
    CASE("GET", LP_SCOPE_READ, 200, "", "/api/v1/apps/signed/pending");
    CASE("POST", LP_SCOPE_UPLOAD, 201, w->sig_body, "/api/v1/apps/signed/releases/s1/signatures");
    snprintf(pub, sizeof pub, "{\"upload\":\"%s\",\"version\":\"s2\",\"kind\":\"file\"}",
             w->up_signed);
    CASE("POST", LP_SCOPE_UPLOAD, 202, pub, "/api/v1/apps/signed/releases");
    CASE("DELETE", LP_SCOPE_UPLOAD, 200, "", "/api/v1/apps/signed/pending");
    CASE("POST", LP_SCOPE_UPLOAD, 202, "{\"target\":\"s1\"}", "/api/v1/apps/signed/rollback");
    /* devices and their events (api_devices.c) */
    CASE("GET", LP_SCOPE_READ, 200, "", "/api/v1/apps/default/devices");
    CASE("GET", LP_SCOPE_READ, 200, "", "/api/v1/apps/default/events");
    /* the audit log (api_audit.c) */
    CASE("GET", LP_SCOPE_ADMIN, 200, "", "/api/v1/audit");
    /* rollouts (api_rollouts.c) */
    CASE("GET", LP_SCOPE_READ, 200, "", "/api/v1/apps/default/rollouts");
    CASE("PUT", LP_SCOPE_ROLLOUT, 200, "{\"channel\":\"stable\",\"percent_bp\":5000}",
         "/api/v1/apps/default/releases/v1/rollout");
    CASE("POST", LP_SCOPE_ROLLOUT, 200, "{\"channel\":\"beta\"}",
         "/api/v1/apps/default/releases/v1/promote");
    CASE("PUT", LP_SCOPE_ROLLOUT, 200, "{\"start\":\"02:00\",\"end\":\"04:00\"}",
         "/api/v1/apps/default/channels/stable/window");
    CASE("PUT", LP_SCOPE_ADMIN, 200, "{\"rate_bp\":1000,\"min_devices\":5}",
         "/api/v1/apps/default/guardrail");
    CASE("GET", LP_SCOPE_READ, 200, "", "/api/v1/apps/default/releases/v1/adoption");
    /* metrics (api_metrics.c) */
    CASE("GET", LP_SCOPE_READ, 200, "", "/metrics");
#undef CASE
    return n;
}

static long send_case(world *w, const rcase *c, const char *token, const char *raw,
                      lp_apiresp *r)
{
    const char *hdrs[3] = {c->range[0] ? c->range : "Content-Type: application/json", NULL};
    size_t len = strlen(c->body);
    assert_int_equal(
        lp_apitest_call(w->t, c->method, c->path, token, raw, hdrs, len ? c->body : NULL, len, r),
        0);
    return r->status;
}

static void expect_401(world *w, const rcase *c, const char *token, const char *raw)
{
    lp_apiresp r;
    send_case(w, c, token, raw, &r);
    if (r.status != 401 || strcmp(lp_apiresp_code(&r), "unauthorized") ||
        strcmp(r.www_auth, "Bearer realm=\"livepush\"") || !*lp_apiresp_message(&r))
        fail_msg("%s %s with %s: HTTP %ld, WWW-Authenticate '%s': %s", c->method, c->path,
                 raw ? raw : token ? "a bad token" : "no token", r.status, r.www_auth,
                 r.body ? r.body : "");
    /* nothing of a presented secret is echoed */
    if (token)
        assert_null(strstr(r.body, token + LP_TOKEN_PREFIX_LEN + LP_TOKEN_ID_LEN + 1));
    lp_apiresp_free(&r);
}

static void expect_403(world *w, const rcase *c, const char *token, const char *scope)
{
    lp_apiresp r;
    send_case(w, c, token, NULL, &r);
    char want[64];
    snprintf(want, sizeof want, "'%s'", scope);
    if (r.status != 403 || strcmp(lp_apiresp_code(&r), "forbidden") ||
        !strstr(lp_apiresp_message(&r), want))
        fail_msg("%s %s lacking %s: HTTP %ld: %s", c->method, c->path, scope, r.status,
                 r.body ? r.body : "");
    lp_apiresp_free(&r);
}

/* A token the server never issued, and the admin token with one secret
 * character changed. */
static void forged_tokens(const world *w, char unknown[LP_TOKEN_TEXT_SIZE],
                          char wrong[LP_TOKEN_TEXT_SIZE])
{
    lp_token_record rec;
    assert_int_equal(lp_token_generate(LP_SCOPE_ADMIN, unknown, &rec, NULL), LP_OK);
    memcpy(wrong, w->t->admin, LP_TOKEN_TEXT_SIZE);
    size_t i = LP_TOKEN_PREFIX_LEN + LP_TOKEN_ID_LEN + 1 + 10;
    wrong[i] = wrong[i] == 'A' ? 'B' : 'A';
}

static void test_every_route(void **state)
{
    world *w = *state;
    rcase *cases = calloc(40, sizeof *cases);
    assert_non_null(cases);
    size_t n = build_cases(w, cases);
    assert_int_equal(n, 34); /* every management route of docs/api.md */
    char unknown[LP_TOKEN_TEXT_SIZE], wrong[LP_TOKEN_TEXT_SIZE], lower[80];
    forged_tokens(w, unknown, wrong);
    snprintf(lower, sizeof lower, "bearer   %s", w->read);
    for (size_t i = 0; i < n; i++) {
        const rcase *c = &cases[i];
        expect_401(w, c, NULL, NULL);
        expect_401(w, c, NULL, "Bearer lp_short");
        expect_401(w, c, NULL, "Bearer");
        expect_401(w, c, NULL, "Basic dXNlcjpwYXNz");
        expect_401(w, c, unknown, NULL);
        expect_401(w, c, wrong, NULL);
        expect_401(w, c, w->revoked, NULL);
        if (c->need == LP_SCOPE_READ)
            expect_403(w, c, w->download, "read");
        else if (c->need == LP_SCOPE_UPLOAD)
            expect_403(w, c, w->read, "upload");
        else if (c->need == LP_SCOPE_ADMIN)
            expect_403(w, c, w->upload, "admin");
        else if (c->need == LP_SCOPE_ROLLOUT)
            expect_403(w, c, w->upload, "rollout");
        /* the right token; upload implies read, admin implies everything */
        const char *tok = c->need == LP_SCOPE_ADMIN || c->need == LP_SCOPE_ROLLOUT ? w->t->admin
                          : c->need == LP_SCOPE_READ && (i & 1) ? w->upload
                          : c->need == 0 ? w->download
                                         : (c->need == LP_SCOPE_READ ? w->read : w->upload);
        lp_apiresp r;
        send_case(w, c, i == 1 ? NULL : tok, i == 1 ? lower : NULL, &r);
        /* every answer is a JSON object but the Prometheus text of /metrics */
        if (r.status != c->ok || (!json_is_object(r.json) && strcmp(c->path, "/metrics")))
            fail_msg("%s %s: HTTP %ld, expected %ld: %s", c->method, c->path, r.status, c->ok,
                     r.body ? r.body : "");
        assert_string_equal(r.cache, "no-store");
        lp_apiresp_free(&r);
    }
    free(cases);
}

/* whoami shows the token; last_used_at moves; the log never holds a secret. */
static void test_whoami_and_last_used(void **state)
{
    world *w = *state;
    json_t *j = lp_apitest_json(w->t, "GET", "/api/v1/whoami", w->read, NULL, 200);
    assert_non_null(j);
    json_t *tok = json_object_get(j, "token");
    assert_string_equal(json_string_value(json_object_get(tok, "name")), "r");
    assert_int_equal(json_array_size(json_object_get(tok, "scopes")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(tok, "scopes"), 0)),
                        "read");
    assert_true(json_is_integer(json_object_get(tok, "last_used_at")));
    assert_true(json_integer_value(json_object_get(tok, "last_used_at")) > 1700000000);
    assert_true(json_is_null(json_object_get(tok, "revoked_at")));
    assert_null(json_object_get(tok, "secret"));
    json_decref(j);

    char *log = lp_apitest_log_text(w->t);
    assert_non_null(log);
    assert_non_null(strstr(log, "\"msg\":\"auth refused\""));
    const char *secrets[] = {w->t->admin, w->read, w->upload, w->download, w->revoked};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        assert_null(strstr(log, secrets[i] + LP_TOKEN_PREFIX_LEN + LP_TOKEN_ID_LEN + 1));
    free(log);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route),
        cmocka_unit_test(test_whoami_and_last_used),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
