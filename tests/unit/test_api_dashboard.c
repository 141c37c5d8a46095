/*
 * test_api_dashboard.c — the web dashboard's routes and the API pieces it
 * reads, over real HTTP to the real server and service on a scratch data
 * folder (tests/support/apitest.h).
 *
 * Covers: / answering 302 to /dashboard and /dashboard/ 308 to /dashboard;
 * the page and every embedded file served byte for byte with its
 * Content-Type, a strong ETag (If-None-Match: 304, also in a list or weak),
 * Cache-Control: no-cache, and the Content-Security-Policy, nosniff and
 * no-referrer headers (404s too); HEAD; 405 for other methods; uPlot's two
 * files among them; the embedded page and scripts themselves keeping the
 * rules the policy and docs/dashboard.md set (no inline script or style, no
 * event-handler attribute, no innerHTML or eval in the dashboard's own
 * scripts).  GET /api/v1/apps/<app>/devices/<id>: the device, its newest
 * events (events=N), and the pending release derived from them (a download
 * under way, none after it was activated, none after it failed); 404 for
 * an unknown or malformed id, 400 for an unknown query parameter, 401
 * without a token, 403 for a download-only token.  GET /api/v1/audit's
 * "head": the seq of the newest entry, and after=head-N giving the newest N.
 */
#include "apitest.h"
#include "server/dashboard_assets.h"
#include "testutil.h"

#include <curl/curl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define CSP                                                                              \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "    \
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

#define DEV "00000000000000000000000000000abc"
#define DEV_B "00000000000000000000000000000def"

typedef struct world {
    lp_apitest *t;
    char read[LP_TOKEN_TEXT_SIZE], download[LP_TOKEN_TEXT_SIZE];
} world;

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    if (!w || !(w->t = lp_apitest_start(0)))
        return -1;
    if (lp_apitest_token(w->t, "r", "read", w->read, NULL) ||
        lp_apitest_token(w->t, "d", "download", w->download, NULL))
        return -1;
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    lp_apitest_stop(w->t);
    free(w);
    return 0;
}

static void call(world *w, const char *method, const char *path, const char *const *extra,
                 lp_apiresp *r)
{
    assert_int_equal(lp_apitest_call(w->t, method, path, NULL, NULL, extra, NULL, 0, r), 0);
}

static void assert_policy_headers(const lp_apiresp *r)
{
    assert_string_equal(r->csp, CSP);
    assert_string_equal(r->nosniff, "nosniff");
    assert_string_equal(r->referrer, "no-referrer");
}

static const lp_dashboard_asset *asset(const char *name)
{
    for (size_t i = 0; i < lp_dashboard_asset_count; i++)
        if (!strcmp(lp_dashboard_assets[i].name, name))
            return &lp_dashboard_assets[i];
    fail_msg("the dashboard has no embedded file %s", name);
    return NULL;
}

/* ---- the routes ------------------------------------------------------------------- */

static void test_redirects(void **state)
{
    world *w = *state;
    lp_apiresp r;
    call(w, "GET", "/", NULL, &r);
    assert_int_equal(r.status, 302);
    assert_string_equal(r.location, "/dashboard");
    assert_policy_headers(&r);
    lp_apiresp_free(&r);

    call(w, "GET", "/dashboard/", NULL, &r);
    assert_int_equal(r.status, 308);
    assert_string_equal(r.location, "/dashboard");
    lp_apiresp_free(&r);

    /* the rule is the HTTP core's: any plain path, GET or HEAD only */
    call(w, "HEAD", "/api/v1/apps/", NULL, &r);
    assert_int_equal(r.status, 308);
    assert_string_equal(r.location, "/api/v1/apps");
    lp_apiresp_free(&r);
    static const char *const still_refused[][2] = {
        {"POST", "/dashboard/"},        /* not a GET */
        {"GET", "/dashboard//"},        /* two slashes */
        {"GET", "//example.org/"},      /* would leave the server */
        {"GET", "/a%20b/"},             /* not plain: would need escaping */
        {"GET", "/dashboard/%2e%2e/x/"}, /* the path check refuses it first */
    };
    for (size_t i = 0; i < sizeof still_refused / sizeof still_refused[0]; i++) {
        call(w, still_refused[i][0], still_refused[i][1], NULL, &r);
        if (r.status != 400)
            fail_msg("%s %s: HTTP %ld, wanted 400", still_refused[i][0], still_refused[i][1],
                     r.status);
        assert_string_equal(r.location, "");
        lp_apiresp_free(&r);
    }
}

static void test_page_and_files(void **state)
{
    world *w = *state;
    const lp_dashboard_asset *index = asset("index.html");
    lp_apiresp r;
    call(w, "GET", "/dashboard", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/html; charset=utf-8");
    assert_string_equal(r.cache, "no-cache");
    assert_string_equal(r.etag, index->etag);
    assert_int_equal(strlen(r.etag), 34);
    assert_policy_headers(&r);
    assert_int_equal(r.len, index->len);
    assert_memory_equal(r.body, index->data, index->len);
    assert_non_null(strstr(r.body, "<script type=\"module\" src=\"/dashboard/app.js\"></script>"));
    lp_apiresp_free(&r);

    /* every embedded file, as built; uPlot's two among them */
    asset("uPlot.iife.min.js");
    asset("uPlot.min.css");
    assert_true(lp_dashboard_asset_count >= 4);
    for (size_t i = 0; i < lp_dashboard_asset_count; i++) {
        const lp_dashboard_asset *a = &lp_dashboard_assets[i];
        char path[128];
        snprintf(path, sizeof path, "/dashboard/%s", a->name);
        call(w, "GET", path, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.ctype, a->content_type);
        assert_string_equal(r.etag, a->etag);
        assert_policy_headers(&r);
        assert_int_equal(r.len, a->len);
        assert_memory_equal(r.body, a->data, a->len);
        lp_apiresp_free(&r);
        const char *type = strrchr(a->name, '.');
        assert_non_null(type);
        if (!strcmp(type, ".js"))
            assert_string_equal(a->content_type, "text/javascript; charset=utf-8");
        else if (!strcmp(type, ".css"))
            assert_string_equal(a->content_type, "text/css; charset=utf-8");
    }

    call(w, "HEAD", "/dashboard/app.js", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    assert_string_equal(r.etag, asset("app.js")->etag);
    lp_apiresp_free(&r);

    call(w, "GET", "/dashboard/nope.js", NULL, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(lp_apiresp_code(&r), "not_found");
    assert_policy_headers(&r);
    lp_apiresp_free(&r);

    call(w, "POST", "/dashboard", NULL, &r);
    assert_int_equal(r.status, 405);
    lp_apiresp_free(&r);
}

static void test_etag(void **state)
{
    world *w = *state;
    const char *tag = asset("index.html")->etag;
    char same[200], list[240], weak[220];
    snprintf(same, sizeof same, "If-None-Match: %s", tag);
    snprintf(list, sizeof list, "If-None-Match: \"0123\", %s", tag);
    snprintf(weak, sizeof weak, "If-None-Match: W/%s", tag);
    const char *const fresh[][2] = {{same, NULL}, {list, NULL}, {weak, NULL},
                                    {"If-None-Match: *", NULL}};
    lp_apiresp r;
    for (size_t i = 0; i < sizeof fresh / sizeof fresh[0]; i++) {
        call(w, "GET", "/dashboard", fresh[i], &r);
        if (r.status != 304)
            fail_msg("%s: HTTP %ld, wanted 304", fresh[i][0], r.status);
        assert_int_equal(r.len, 0);
        assert_string_equal(r.etag, tag);
        assert_policy_headers(&r);
        lp_apiresp_free(&r);
    }
    const char *const stale[] = {"If-None-Match: \"0123456789abcdef0123456789abcdef\"", NULL};
    call(w, "GET", "/dashboard", stale, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, asset("index.html")->len);
    lp_apiresp_free(&r);
}

/* True when `text` (NUL-terminated) contains `needle`, ignoring case. */
static bool has(const char *text, const char *needle)
{
    return strcasestr(text, needle) != NULL;
}

/* The embedded files keep the rules of the Content-Security-Policy (which
 * the browser test checks in a browser too) and of docs/dashboard.md. */
static void test_files_keep_the_policy(void **state)
{
    (void)state;
    const char *html = (const char *)asset("index.html")->data;
    /* every <script> loads a file; no <style>, no style or on... attribute */
    for (const char *p = html; (p = strcasestr(p, "<script")); p++) {
        const char *end = strchr(p, '>');
        assert_non_null(end);
        assert_true(memmem(p, (size_t)(end - p), " src=\"/dashboard/", 17) != NULL);
        assert_true(!strncmp(end, "></script>", 10));
    }
    assert_false(has(html, "<style"));
    assert_false(has(html, " style="));
    assert_false(has(html, "javascript:"));
    for (const char *p = html; (p = strstr(p, " on")); p++) {
        size_t n = strspn(p + 3, "abcdefghijklmnopqrstuvwxyz");
        if (n && p[3 + n] == '=')
            fail_msg("index.html has an event-handler attribute: %.40s", p);
    }
    static const char *const banned[] = {"innerHTML", "outerHTML", "insertAdjacentHTML",
                                         "document.write", "eval(", "new Function",
                                         "setAttribute('style", "setAttribute(\"style"};
    size_t scripts = 0;
    for (size_t i = 0; i < lp_dashboard_asset_count; i++) {
        const lp_dashboard_asset *a = &lp_dashboard_assets[i];
        const char *dot = strrchr(a->name, '.');
        if (!dot || strcmp(dot, ".js") || !strncmp(a->name, "uPlot", 5))
            continue;
        scripts++;
        for (size_t k = 0; k < sizeof banned / sizeof banned[0]; k++)
            if (strstr((const char *)a->data, banned[k]))
                fail_msg("%s uses %s", a->name, banned[k]);
    }
    assert_true(scripts >= 3);
}

/* ---- GET /api/v1/apps/<app>/devices/<id> ----------------------------------------- */

static void post_events(world *w, const char *body)
{
    static const char *const ct[] = {"Content-Type: application/json", NULL};
    lp_apiresp r;
    assert_int_equal(lp_apitest_call(w->t, "POST", "/v1/apps/default/events", NULL, NULL, ct,
                                     body, strlen(body), &r),
                     0);
    if (r.status != 200)
        fail_msg("events: HTTP %ld: %s", r.status, r.body ? r.body : "");
    lp_apiresp_free(&r);
}

static json_t *device(world *w, const char *query)
{
    char path[200];
    snprintf(path, sizeof path, "/api/v1/apps/default/devices/" DEV "%s", query);
    json_t *j = lp_apitest_json(w->t, "GET", path, w->read, NULL, 200);
    assert_non_null(j);
    return j;
}

static void test_one_device(void **state)
{
    world *w = *state;
    /* running 1, on its way to 2: checked, then downloaded */
    post_events(w, "{\"device_id\":\"" DEV "\",\"channel\":\"stable\",\"events\":["
            "{\"seq\":1,\"type\":\"activated\",\"at\":1700000001,\"version\":\"v1\","
            "\"version_code\":1},"
            "{\"seq\":2,\"type\":\"checked\",\"at\":1700000100,\"version\":\"v2\","
            "\"version_code\":2},"
            "{\"seq\":3,\"type\":\"downloaded\",\"at\":1700000101,\"version\":\"v2\","
            "\"version_code\":2,\"bytes\":1234}]}");
    json_t *j = device(w, "");
    json_t *d = json_object_get(j, "device");
    assert_string_equal(json_string_value(json_object_get(d, "device_id")), DEV);
    assert_string_equal(json_string_value(json_object_get(d, "channel")), "stable");
    assert_int_equal(json_integer_value(json_object_get(d, "version_code")), 1);
    json_t *p = json_object_get(j, "pending");
    assert_int_equal(json_integer_value(json_object_get(p, "version_code")), 2);
    assert_string_equal(json_string_value(json_object_get(p, "version")), "v2");
    assert_string_equal(json_string_value(json_object_get(p, "step")), "downloaded");
    assert_int_equal(json_integer_value(json_object_get(p, "at")), 1700000101);
    json_t *ev = json_object_get(j, "events");
    assert_int_equal(json_array_size(ev), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 0), "seq")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 0), "bytes")), 1234);
    json_decref(j);

    j = device(w, "?events=2");
    assert_int_equal(json_array_size(json_object_get(j, "events")), 2);
    json_decref(j);

    /* activated: it runs 2, nothing pending */
    post_events(w, "{\"device_id\":\"" DEV "\",\"events\":["
            "{\"seq\":4,\"type\":\"activated\",\"at\":1700000102,\"version\":\"v2\","
            "\"version_code\":2,\"from_version_code\":1}]}");
    j = device(w, "");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "device"),
                                                        "version_code")),
                     2);
    assert_true(json_is_null(json_object_get(j, "pending")));
    json_decref(j);

    /* 3 downloaded, then failed: the attempt ended, nothing pending */
    post_events(w, "{\"device_id\":\"" DEV "\",\"events\":["
            "{\"seq\":5,\"type\":\"staged\",\"at\":1700000200,\"version_code\":3},"
            "{\"seq\":6,\"type\":\"failed\",\"at\":1700000201,\"version_code\":3,"
            "\"reason\":\"verify: hash mismatch\"}]}");
    j = device(w, "");
    assert_true(json_is_null(json_object_get(j, "pending")));
    json_decref(j);
    /* ... and a step of an older release than the one it runs is not pending */
    post_events(w, "{\"device_id\":\"" DEV "\",\"events\":["
            "{\"seq\":7,\"type\":\"checked\",\"at\":1700000300,\"version_code\":2}]}");
    j = device(w, "");
    assert_true(json_is_null(json_object_get(j, "pending")));
    json_decref(j);

    /* refusals */
    static const struct {
        const char *path;
        int token; /* 0 none, 1 read, 2 download */
        long status;
        const char *code;
    } bad[] = {
        {"/api/v1/apps/default/devices/" DEV_B, 1, 404, "not_found"},
        {"/api/v1/apps/default/devices/XYZ", 1, 404, "not_found"},
        {"/api/v1/apps/default/devices/0123", 1, 404, "not_found"},
        {"/api/v1/apps/nope/devices/" DEV, 1, 404, "not_found"},
        {"/api/v1/apps/default/devices/" DEV "?colour=red", 1, 400, "bad_request"},
        {"/api/v1/apps/default/devices/" DEV "?events=0", 1, 400, "bad_request"},
        {"/api/v1/apps/default/devices/" DEV "?events=1001", 1, 400, "bad_request"},
        {"/api/v1/apps/default/devices/" DEV, 0, 401, "unauthorized"},
        {"/api/v1/apps/default/devices/" DEV, 2, 403, "forbidden"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lp_apiresp r;
        const char *tok = bad[i].token == 1 ? w->read : bad[i].token == 2 ? w->download : NULL;
        assert_int_equal(lp_apitest_call(w->t, "GET", bad[i].path, tok, NULL, NULL, NULL, 0, &r),
                         0);
        if (r.status != bad[i].status || strcmp(lp_apiresp_code(&r), bad[i].code))
            fail_msg("%s: HTTP %ld %s, wanted %ld %s", bad[i].path, r.status,
                     lp_apiresp_code(&r), bad[i].status, bad[i].code);
        lp_apiresp_free(&r);
    }
}

/* ---- GET /api/v1/audit: head ------------------------------------------------------ */

static void test_audit_head(void **state)
{
    world *w = *state;
    /* a few more entries: tokens and channels */
    for (int i = 0; i < 3; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"name\":\"ch%d\"}", i);
        json_decref(lp_apitest_json(w->t, "POST", "/api/v1/apps/default/channels", w->t->admin,
                                    body, 201));
    }
    json_t *all = lp_apitest_json(w->t, "GET", "/api/v1/audit?limit=1000", w->t->admin, NULL, 200);
    assert_non_null(all);
    json_t *entries = json_object_get(all, "entries");
    size_t n = json_array_size(entries);
    assert_true(n >= 6);
    json_int_t newest = json_integer_value(json_object_get(json_array_get(entries, n - 1), "seq"));
    assert_int_equal(json_integer_value(json_object_get(all, "head")), newest);
    json_decref(all);

    char path[96];
    snprintf(path, sizeof path, "/api/v1/audit?after=%lld&limit=2", (long long)newest - 2);
    json_t *two = lp_apitest_json(w->t, "GET", path, w->t->admin, NULL, 200);
    assert_non_null(two);
    entries = json_object_get(two, "entries");
    assert_int_equal(json_array_size(entries), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(entries, 1), "seq")),
                     newest);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(entries, 1), "action")),
        "channel.created");
    assert_true(json_is_null(json_object_get(two, "next")));
    /* head is the whole log's, also when filtered by app */
    json_decref(two);
    json_t *one = lp_apitest_json(w->t, "GET", "/api/v1/audit?app=nope&limit=1", w->t->admin,
                                  NULL, 200);
    assert_non_null(one);
    assert_int_equal(json_array_size(json_object_get(one, "entries")), 0);
    assert_int_equal(json_integer_value(json_object_get(one, "head")), newest);
    json_decref(one);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_redirects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_and_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_etag, setup, teardown),
        cmocka_unit_test(test_files_keep_the_policy),
        cmocka_unit_test_setup_teardown(test_one_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_head, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
