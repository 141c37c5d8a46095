/*
 * test_api_audit.c — the audit log over real HTTP: the real server and
 * service on a scratch data folder (tests/support/apitest.h), management
 * actions done through the API with real tokens, and the log read back
 * from GET /api/v1/audit.
 *
 *   - every kind of action leaves its entry, with the token that did it as
 *     actor ("token:<id>"), the app, the subject and the details: app and
 *     channel created, tokens created and revoked, releases published and
 *     rolled back, an app whose publisher signs begun and its root
 *     installed, a release prepared, one signature of two (kept, not yet
 *     published), the second (published), a pending release withdrawn; the
 *     first start's admin token and default app are the server's own
 *     entries;
 *   - a refused action leaves none;
 *   - the chain the server wrote verifies, against the head it appended to
 *     audit.head after every entry (one line per entry, the last one the
 *     newest);
 *   - paging (limit, after, next) and the app filter;
 *   - scopes: the route needs admin (read and upload tokens: 403, none:
 *     401), and bad query arguments are 400 naming the argument.
 */
#include "apitest.h"
#include "publisher.h"
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static const uint8_t CONTENT[] = "hello, audited world\n";

typedef struct world {
    lp_apitest *t;
    char admin_id[LP_TOKEN_ID_LEN + 1];
    char read[LP_TOKEN_TEXT_SIZE], read_id[LP_TOKEN_ID_LEN + 1];
    char upload[LP_TOKEN_TEXT_SIZE], upload_id[LP_TOKEN_ID_LEN + 1];
    lp_key *root_key, *rel1, *rel2;
} world;

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->t = lp_apitest_start(0);
    assert_non_null(w->t);
    json_t *me = lp_apitest_json(w->t, "GET", "/api/v1/whoami", w->t->admin, NULL, 200);
    assert_non_null(me);
    snprintf(w->admin_id, sizeof w->admin_id, "%s",
             json_string_value(json_object_get(json_object_get(me, "token"), "id")));
    json_decref(me);
    assert_int_equal(lp_apitest_token(w->t, "reader", "read", w->read, w->read_id), 0);
    assert_int_equal(lp_apitest_token(w->t, "ci", "upload", w->upload, w->upload_id), 0);
    lp_error err;
    assert_int_equal(lp_key_generate(&w->root_key, LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_key_generate(&w->rel1, LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_key_generate(&w->rel2, LP_KEY_ED25519, &err), LP_OK);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    lp_apitest_stop(w->t);
    lp_key_free(w->root_key);
    lp_key_free(w->rel1);
    lp_key_free(w->rel2);
    free(w);
    return 0;
}

/* The whole log through the API (as admin), following "next". */
static json_t *all_entries(world *w, const char *query)
{
    json_t *all = json_array();
    long long after = 0;
    for (;;) {
        char path[256];
        snprintf(path, sizeof path, "/api/v1/audit?limit=7&after=%lld%s%s", after,
                 query ? "&" : "", query ? query : "");
        json_t *page = lp_apitest_json(w->t, "GET", path, w->t->admin, NULL, 200);
        assert_non_null(page);
        const json_t *entries = json_object_get(page, "entries");
        assert_true(json_is_array(entries));
        assert_true(json_array_size(entries) <= 7);
        json_array_extend(all, (json_t *)entries);
        json_t *next = json_object_get(page, "next");
        if (json_is_null(next)) {
            json_decref(page);
            return all;
        }
        assert_int_equal(json_array_size(entries), 7);
        after = json_integer_value(next);
        assert_int_equal(after, json_integer_value(json_object_get(
                                    json_array_get(entries, 6), "seq")));
        json_decref(page);
    }
}

static const char *str(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Finds the first entry with seq > *from of `action` (and subject when not
 * NULL) and checks its actor and app; *from becomes its seq. */
static const json_t *expect_entry(const json_t *entries, long long *from, const char *actor,
                                  const char *action, const char *app, const char *subject)
{
    size_t i;
    const json_t *e;
    json_array_foreach(entries, i, e)
    {
        long long seq = json_integer_value(json_object_get(e, "seq"));
        if (seq <= *from || strcmp(str(e, "action"), action) != 0 ||
            (subject && (!str(e, "subject") || strcmp(str(e, "subject"), subject) != 0)))
            continue;
        if (!str(e, "actor") || strcmp(str(e, "actor"), actor) != 0)
            fail_msg("entry %lld (%s): actor %s, expected %s", seq, action, str(e, "actor"),
                     actor);
        if (app ? !str(e, "app") || strcmp(str(e, "app"), app) : !json_is_null(
                                                                       json_object_get(e, "app")))
            fail_msg("entry %lld (%s): app %s, expected %s", seq, action, str(e, "app"),
                     app ? app : "null");
        printf("  #%lld %s %s %s %s\n", seq, actor, action, app ? app : "-",
               subject ? subject : "-");
        *from = seq;
        return e;
    }
    fail_msg("no entry %s%s%s after seq %lld", action, subject ? " " : "", subject ? subject : "",
             *from);
    return NULL;
}

static long long detail_int(const json_t *e, const char *k)
{
    return json_integer_value(json_object_get(json_object_get(e, "details"), k));
}

static void publish(world *w, const char *app, const char *version, long expect)
{
    char id[64], path[128], req[256];
    assert_int_equal(lp_apitest_upload(w->t, w->upload, app, CONTENT, sizeof CONTENT - 1, 8, 1,
                                       id),
                     0);
    snprintf(path, sizeof path, "/api/v1/apps/%s/releases", app);
    snprintf(req, sizeof req,
             "{\"upload\":\"%s\",\"version\":\"%s\",\"kind\":\"file\",\"channels\":[\"beta\"]}",
             id, version);
    json_t *j = lp_apitest_json(w->t, "POST", path, w->upload, req, expect);
    assert_non_null(j);
    json_decref(j);
}

/* Prepares `version` of publisher-signed `app` and returns the bytes to
 * sign (malloc'd). */
static char *prepare(world *w, const char *app, const char *version, size_t *len)
{
    char id[64], path[128], req[256];
    assert_int_equal(lp_apitest_upload(w->t, w->upload, app, CONTENT, sizeof CONTENT - 1, 8, 1,
                                       id),
                     0);
    snprintf(path, sizeof path, "/api/v1/apps/%s/releases", app);
    snprintf(req, sizeof req, "{\"upload\":\"%s\",\"version\":\"%s\",\"kind\":\"file\"}", id,
             version);
    json_t *j = lp_apitest_json(w->t, "POST", path, w->upload, req, 202);
    assert_non_null(j);
    const json_t *s = json_object_get(json_object_get(j, "sign"), "signed");
    *len = json_string_length(s);
    char *out = malloc(*len + 1);
    memcpy(out, json_string_value(s), *len + 1);
    json_decref(j);
    return out;
}

static void sign(world *w, const char *app, const char *version, lp_key *key,
                 const char *canon, size_t len, long expect)
{
    char *body = lp_testpub_signatures(&key, 1, canon, len);
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
    lp_apiresp_free(&r);
}

static void test_actions_recorded(void **state)
{
    world *w = *state;
    char admin[64], up[64];
    snprintf(admin, sizeof admin, "token:%s", w->admin_id);
    snprintf(up, sizeof up, "token:%s", w->upload_id);

    json_t *j = lp_apitest_json(w->t, "POST", "/api/v1/apps", w->t->admin, "{\"name\":\"aud\"}",
                                201);
    json_decref(j);
    j = lp_apitest_json(w->t, "POST", "/api/v1/apps/aud/channels", w->t->admin,
                        "{\"name\":\"beta\"}", 201);
    json_decref(j);
    /* refused: no entry */
    j = lp_apitest_json(w->t, "POST", "/api/v1/apps/aud/channels", w->t->admin,
                        "{\"name\":\"beta\"}", 409);
    json_decref(j);
    publish(w, "aud", "1.0", 201);
    publish(w, "aud", "2.0", 201);
    j = lp_apitest_json(w->t, "POST", "/api/v1/apps/aud/rollback", w->upload,
                        "{\"target\":\"1.0\"}", 201);
    json_decref(j);
    char victim[LP_TOKEN_TEXT_SIZE], victim_id[LP_TOKEN_ID_LEN + 1], path[128];
    assert_int_equal(lp_apitest_token(w->t, "victim", "read", victim, victim_id), 0);
    snprintf(path, sizeof path, "/api/v1/tokens/%s", victim_id);
    j = lp_apitest_json(w->t, "DELETE", path, w->t->admin, NULL, 200);
    json_decref(j);

    /* an app whose publisher signs, two release keys needed */
    lp_key *rel[2] = {w->rel1, w->rel2};
    assert_int_equal(lp_apitest_publisher_app(w->t, "pub", w->root_key, rel, 2, 2, NULL, NULL),
                     0);
    size_t len = 0;
    char *canon = prepare(w, "pub", "1.0", &len);
    sign(w, "pub", "1.0", w->rel1, canon, len, 409); /* kept, one more needed */
    sign(w, "pub", "1.0", w->rel2, canon, len, 201); /* published */
    free(canon);
    canon = prepare(w, "pub", "1.1", &len);
    free(canon);
    j = lp_apitest_json(w->t, "DELETE", "/api/v1/apps/pub/pending", w->upload, NULL, 200);
    json_decref(j);

    json_t *all = all_entries(w, NULL);
    long long at = 0;
    /* the first start */
    const json_t *e = expect_entry(all, &at, "server", "token.created", NULL, w->admin_id);
    assert_int_equal(at, 1);
    e = expect_entry(all, &at, "server", "app.created", "default", NULL);
    assert_int_equal(at, 2);
    e = expect_entry(all, &at, admin, "token.created", NULL, w->read_id);
    assert_string_equal(str(json_object_get(e, "details"), "name"), "reader");
    e = expect_entry(all, &at, admin, "token.created", NULL, w->upload_id);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(json_object_get(e, "details"),
                                                         "scopes"),
                                         0)),
        "upload");
    expect_entry(all, &at, admin, "app.created", "aud", NULL);
    expect_entry(all, &at, admin, "channel.created", "aud", "beta");
    e = expect_entry(all, &at, up, "release.published", "aud", "1.0");
    assert_int_equal(detail_int(e, "version_code"), 1);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(json_object_get(e, "details"),
                                                         "channels"),
                                         0)),
        "beta");
    assert_int_equal(strlen(str(json_object_get(e, "details"), "manifest_sha256")), 64);
    e = expect_entry(all, &at, up, "release.published", "aud", "2.0");
    assert_int_equal(detail_int(e, "version_code"), 2);
    e = expect_entry(all, &at, up, "rollback.published", "aud", "1.0");
    assert_int_equal(detail_int(e, "version_code"), 3);
    const json_t *restores = json_object_get(json_object_get(e, "details"), "restores");
    assert_string_equal(str(restores, "version"), "1.0");
    assert_int_equal(json_integer_value(json_object_get(restores, "version_code")), 1);
    expect_entry(all, &at, admin, "token.created", NULL, victim_id);
    expect_entry(all, &at, admin, "token.revoked", NULL, victim_id);
    e = expect_entry(all, &at, admin, "app.begun", "pub", NULL);
    assert_int_equal(strlen(str(json_object_get(json_object_get(e, "details"), "online_keys"),
                                "timestamp")),
                     64);
    e = expect_entry(all, &at, admin, "app.root_installed", "pub", NULL);
    assert_int_equal(strlen(str(json_object_get(e, "details"), "root_sha256")), 64);
    expect_entry(all, &at, up, "release.prepared", "pub", "1.0");
    e = expect_entry(all, &at, up, "release.signatures_added", "pub", "1.0");
    assert_int_equal(detail_int(e, "held"), 1);
    assert_int_equal(detail_int(e, "threshold"), 2);
    assert_true(json_is_false(json_object_get(json_object_get(e, "details"), "published")));
    assert_int_equal(json_array_size(json_object_get(json_object_get(e, "details"), "keyids")),
                     1);
    e = expect_entry(all, &at, up, "release.signatures_added", "pub", "1.0");
    assert_int_equal(detail_int(e, "held"), 2);
    assert_true(json_is_true(json_object_get(json_object_get(e, "details"), "published")));
    e = expect_entry(all, &at, up, "release.published", "pub", "1.0");
    assert_int_equal(detail_int(e, "signatures"), 2);
    expect_entry(all, &at, up, "release.prepared", "pub", "1.1");
    expect_entry(all, &at, up, "release.withdrawn", "pub", "1.1");
    /* nothing else: one entry per action, none for the refused one */
    assert_int_equal(at, (long long)json_array_size(all));
    assert_int_equal(json_array_size(all), 19);

    /* Every entry links to the one before it, as listed. */
    size_t i;
    const char *prev = "0000000000000000000000000000000000000000000000000000000000000000";
    json_array_foreach(all, i, e)
    {
        assert_int_equal(json_integer_value(json_object_get(e, "seq")), (long long)i + 1);
        assert_string_equal(str(e, "prev_hash"), prev);
        prev = str(e, "hash");
    }

    /* The chain verifies against the head the server wrote after each
     * entry; the file has one line per entry, the newest last. */
    const char *head_path = lp_service_audit_head_path(w->t->svc);
    assert_non_null(strstr(head_path, "audit.head"));
    lp_db_audit_head head;
    bool found = false;
    lp_error err;
    assert_int_equal(lp_service_audit_head_read(head_path, &head, &found, &err), LP_OK);
    assert_true(found);
    assert_int_equal(head.seq, 19);
    assert_string_equal(head.hash, prev);
    size_t flen = 0;
    char *file = (char *)lp_test_read_file(head_path, &flen);
    assert_non_null(file);
    size_t lines = 0;
    for (size_t k = 0; k < flen; k++)
        lines += file[k] == '\n';
    assert_int_equal(lines, 19);
    assert_non_null(strstr(file, "{\"seq\":1,\"hash\":\""));
    free(file);
    lp_db *db = NULL;
    assert_int_equal(lp_service_db_acquire(w->t->svc, &db, &err), LP_OK);
    lp_db_audit_report rep;
    lp_status st = lp_db_audit_verify(db, &head, &rep, &err);
    lp_service_db_release(w->t->svc, db);
    assert_int_equal(st, LP_OK);
    if (rep.problem != LP_DB_AUDIT_INTACT)
        fail_msg("verify: %s", rep.message);
    assert_int_equal(rep.entries, 19);
    json_decref(all);

    /* The app filter. */
    all = all_entries(w, "app=pub");
    assert_int_equal(json_array_size(all), 8);
    json_array_foreach(all, i, e) assert_string_equal(str(e, "app"), "pub");
    json_decref(all);
    all = all_entries(w, "app=nothing-here");
    assert_int_equal(json_array_size(all), 0);
    json_decref(all);
}

static void test_scopes_and_queries(void **state)
{
    world *w = *state;
    lp_apiresp r;
    const struct {
        const char *token;
        long status;
        const char *code;
    } who[] = {{w->read, 403, "forbidden"},
               {w->upload, 403, "forbidden"},
               {NULL, 401, "unauthorized"}};
    for (size_t i = 0; i < sizeof who / sizeof who[0]; i++) {
        assert_int_equal(lp_apitest_call(w->t, "GET", "/api/v1/audit", who[i].token, NULL, NULL,
                                         NULL, 0, &r),
                         0);
        assert_int_equal(r.status, who[i].status);
        assert_string_equal(lp_apiresp_code(&r), who[i].code);
        if (who[i].status == 403)
            assert_non_null(strstr(lp_apiresp_message(&r), "admin"));
        lp_apiresp_free(&r);
    }
    const struct {
        const char *path, *part;
    } bad[] = {
        {"/api/v1/audit?limit=0", "query 'limit'"},
        {"/api/v1/audit?limit=1001", "query 'limit'"},
        {"/api/v1/audit?after=-1", "query 'after'"},
        {"/api/v1/audit?after=x", "query 'after'"},
        {"/api/v1/audit?app=Not%20A%20Name", "query: app"},
        {"/api/v1/audit?colour=red", "query 'colour': unknown parameter"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(
            lp_apitest_call(w->t, "GET", bad[i].path, w->t->admin, NULL, NULL, NULL, 0, &r), 0);
        if (r.status != 400 || !strstr(lp_apiresp_message(&r), bad[i].part))
            fail_msg("%s: HTTP %ld %s (expected 400 with '%s')", bad[i].path, r.status,
                     r.body ? r.body : "", bad[i].part);
        lp_apiresp_free(&r);
    }
    /* The admin reads the log: the first start and the two tokens made by
     * the setup; the refused reads above added nothing. */
    json_t *page = lp_apitest_json(w->t, "GET", "/api/v1/audit", w->t->admin, NULL, 200);
    assert_non_null(page);
    assert_int_equal(json_array_size(json_object_get(page, "entries")), 4);
    assert_true(json_is_null(json_object_get(page, "next")));
    json_decref(page);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_actions_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scopes_and_queries, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
