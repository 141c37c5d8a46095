/*
 * test_api_events.c — the device API (POST /v1/apps/<app>/events) and the
 * devices / events lists, over real HTTP to the real server and service on
 * a scratch data folder (tests/support/apitest.h).
 *
 * Covers: a batch accepted and read back (devices and events lists, their
 * fields, filters and paging); the same batch re-sent counted as
 * duplicates and an overlapping one half new; refusals that name the
 * field (unknown member at the top and inside an event, a bad event type,
 * a missing seq, codes and durations out of range, a bad device_id, more
 * than 1000 events, a body over the batch bound, query arguments), an
 * unknown app, and that no refused batch stored anything; with
 * --device-auth token: no token and a bad one 401, a token without the
 * download scope 403, a download token 200; and the option itself in the
 * flag / environment / config file layers.
 */
#include "apitest.h"
#include "server/config.h"
#include "testutil.h"

#include <curl/curl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define DEV "0123456789abcdef0123456789abcdef"
#define DEV2 "aaaaaaaaaaaaaaaa"
#define EVENTS "/v1/apps/default/events"

typedef struct world {
    lp_apitest *t;
    char read[LP_TOKEN_TEXT_SIZE], download[LP_TOKEN_TEXT_SIZE];
} world;

static int start(void **state, bool device_token)
{
    world *w = calloc(1, sizeof *w);
    lp_apitest_opts o = {.device_token = device_token};
    if (!w || !(w->t = lp_apitest_start_with(&o)))
        return -1;
    if (lp_apitest_token(w->t, "r", "read", w->read, NULL) ||
        lp_apitest_token(w->t, "d", "download", w->download, NULL))
        return -1;
    *state = w;
    return 0;
}

static int setup_open(void **state) { return start(state, false); }
static int setup_token(void **state) { return start(state, true); }

static int teardown(void **state)
{
    world *w = *state;
    lp_apitest_stop(w->t);
    free(w);
    return 0;
}

/* POSTs `body` to `path` with `token` (may be NULL); the answer in *r. */
static long post(world *w, const char *path, const char *token, const char *body, lp_apiresp *r)
{
    static const char *const ct[] = {"Content-Type: application/json", NULL};
    assert_int_equal(lp_apitest_call(w->t, "POST", path, token, NULL, ct, body, strlen(body), r),
                     0);
    return r->status;
}

/* Sends a batch that must be taken; checks accepted / duplicates. */
static void send_ok(world *w, const char *token, const char *body, long accepted, long dups)
{
    lp_apiresp r;
    if (post(w, EVENTS, token, body, &r) != 200)
        fail_msg("HTTP %ld: %s", r.status, r.body ? r.body : "");
    assert_int_equal(json_integer_value(json_object_get(r.json, "accepted")), accepted);
    assert_int_equal(json_integer_value(json_object_get(r.json, "duplicates")), dups);
    assert_string_equal(r.cache, "no-store");
    lp_apiresp_free(&r);
}

/* A refusal with `status` whose message contains `needle`. */
static void send_bad(world *w, const char *path, const char *body, long status,
                     const char *needle)
{
    lp_apiresp r;
    post(w, path, NULL, body, &r);
    if (r.status != status || !strstr(lp_apiresp_message(&r), needle))
        fail_msg("%.120s: HTTP %ld, wanted %ld with '%s': %s", body, r.status, status, needle,
                 r.body ? r.body : "");
    lp_apiresp_free(&r);
}

static json_t *get(world *w, const char *path)
{
    json_t *j = lp_apitest_json(w->t, "GET", path, w->read, NULL, 200);
    assert_non_null(j);
    return j;
}

static const char BATCH[] =
    "{\"device_id\":\"" DEV "\",\"dropped\":2,\"events\":["
    "{\"seq\":1,\"type\":\"checked\",\"at\":1700000001},"
    "{\"seq\":2,\"type\":\"downloaded\",\"at\":1700000002,\"version\":\"v2\",\"version_code\":2,"
    "\"duration_ms\":340,\"bytes\":5311,\"files_fetched\":3,\"files_delta\":2,"
    "\"bytes_delta_saved\":0,\"delta_fallbacks\":null,"
    "\"reason\":\"share/notes.txt: delta corrupted\"},"
    "{\"seq\":3,\"type\":\"activated\",\"at\":1700000003,\"version\":\"v2\",\"version_code\":2,"
    "\"from_version_code\":1,\"reason\":null,\"duration_ms\":12}]}";

static void test_accept_and_read_back(void **state)
{
    world *w = *state;
    send_ok(w, NULL, BATCH, 3, 0);
    send_ok(w, NULL, BATCH, 0, 3); /* the answer was lost: sent again */
    send_ok(w, NULL,
            "{\"device_id\":\"" DEV "\",\"events\":["
            "{\"seq\":3,\"type\":\"activated\",\"at\":1700000003},"
            "{\"seq\":4,\"type\":\"failed\",\"at\":1700000004,\"version_code\":3,"
            "\"reason\":\"hook exited 1\"}]}",
            1, 1);
    send_ok(w, NULL, "{\"device_id\":\"" DEV2 "\",\"events\":[],\"dropped\":null}", 0, 0);

    json_t *j = get(w, "/api/v1/apps/default/devices");
    json_t *devs = json_object_get(j, "devices");
    assert_int_equal(json_array_size(devs), 2);
    json_t *d = json_array_get(devs, 0); /* ordered by device_id */
    assert_string_equal(json_string_value(json_object_get(d, "device_id")), DEV);
    assert_int_equal(json_integer_value(json_object_get(d, "version_code")), 2);
    assert_int_equal(json_integer_value(json_object_get(d, "dropped")), 2);
    assert_true(json_integer_value(json_object_get(d, "last_seen")) >=
                json_integer_value(json_object_get(d, "first_seen")));
    json_t *last = json_object_get(d, "last_event");
    assert_int_equal(json_integer_value(json_object_get(last, "seq")), 4);
    assert_string_equal(json_string_value(json_object_get(last, "type")), "failed");
    assert_string_equal(json_string_value(json_object_get(last, "reason")), "hook exited 1");
    assert_true(json_is_null(json_object_get(last, "duration_ms")));
    d = json_array_get(devs, 1);
    assert_true(json_is_null(json_object_get(d, "last_event")));
    assert_true(json_is_null(json_object_get(d, "version_code")));
    assert_true(json_is_null(json_object_get(j, "next")));
    json_decref(j);

    /* devices page by page */
    j = get(w, "/api/v1/apps/default/devices?limit=1");
    assert_int_equal(json_array_size(json_object_get(j, "devices")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "next")), DEV);
    json_decref(j);
    j = get(w, "/api/v1/apps/default/devices?limit=1&after=" DEV);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "devices"), 0),
                                          "device_id")),
        DEV2);
    assert_true(json_is_null(json_object_get(j, "next")));
    json_decref(j);

    /* events newest first, filtered, paged */
    j = get(w, "/api/v1/apps/default/events");
    json_t *evs = json_object_get(j, "events");
    assert_int_equal(json_array_size(evs), 4);
    json_t *e = json_array_get(evs, 1);
    assert_int_equal(json_integer_value(json_object_get(e, "seq")), 3);
    assert_string_equal(json_string_value(json_object_get(e, "version")), "v2");
    assert_int_equal(json_integer_value(json_object_get(e, "from_version_code")), 1);
    assert_int_equal(json_integer_value(json_object_get(e, "duration_ms")), 12);
    assert_int_equal(json_integer_value(json_object_get(e, "at")), 1700000003);
    assert_true(json_integer_value(json_object_get(e, "received_at")) > 1700000000);
    assert_true(json_is_null(json_object_get(e, "reason")));
    assert_true(json_is_null(json_object_get(e, "bytes"))); /* no figures given */
    assert_true(json_is_null(json_object_get(e, "files_fetched")));
    assert_true(json_is_null(json_object_get(e, "files_delta")));
    assert_true(json_is_null(json_object_get(e, "bytes_delta_saved")));
    assert_true(json_is_null(json_object_get(e, "delta_fallbacks")));
    e = json_array_get(evs, 2); /* the download's figures, as sent */
    assert_string_equal(json_string_value(json_object_get(e, "type")), "downloaded");
    assert_int_equal(json_integer_value(json_object_get(e, "bytes")), 5311);
    assert_int_equal(json_integer_value(json_object_get(e, "files_fetched")), 3);
    assert_int_equal(json_integer_value(json_object_get(e, "files_delta")), 2);
    assert_true(json_is_integer(json_object_get(e, "bytes_delta_saved")));
    assert_int_equal(json_integer_value(json_object_get(e, "bytes_delta_saved")), 0);
    assert_true(json_is_null(json_object_get(e, "delta_fallbacks")));
    assert_string_equal(json_string_value(json_object_get(e, "reason")),
                        "share/notes.txt: delta corrupted");
    json_decref(j);
    j = get(w, "/api/v1/apps/default/events?type=activated&device=" DEV);
    assert_int_equal(json_array_size(json_object_get(j, "events")), 1);
    json_decref(j);
    j = get(w, "/api/v1/apps/default/events?since=1700000003");
    assert_int_equal(json_array_size(json_object_get(j, "events")), 2);
    json_decref(j);
    j = get(w, "/api/v1/apps/default/events?limit=3");
    assert_int_equal(json_array_size(json_object_get(j, "events")), 3);
    json_int_t next = json_integer_value(json_object_get(j, "next"));
    assert_true(next > 0);
    json_decref(j);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/apps/default/events?limit=3&before=%lld",
             (long long)next);
    j = get(w, path);
    evs = json_object_get(j, "events");
    assert_int_equal(json_array_size(evs), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 0), "seq")), 1);
    assert_true(json_is_null(json_object_get(j, "next")));
    json_decref(j);
}

static void test_refusals(void **state)
{
    world *w = *state;
    const char *pre = "{\"device_id\":\"" DEV "\",\"events\":[";
    char body[1024];
#define BAD(events_json, needle)                                                     \
    do {                                                                             \
        snprintf(body, sizeof body, "%s%s]}", pre, events_json);                     \
        send_bad(w, EVENTS, body, 400, needle);                                      \
    } while (0)
    BAD("{\"seq\":1,\"type\":\"exploded\",\"at\":1}", "events[0].type");
    BAD("{\"seq\":1,\"type\":\"checked\",\"at\":1},{\"seq\":2,\"type\":\"checked\",\"at\":1,"
        "\"colour\":\"red\"}",
        "field 'events[1].colour': unknown field");
    BAD("{\"type\":\"checked\",\"at\":1}", "field 'events[0].seq': missing");
    BAD("{\"seq\":\"1\",\"type\":\"checked\",\"at\":1}", "field 'events[0].seq': expected");
    BAD("{\"seq\":0,\"type\":\"checked\",\"at\":1}", "events[0].seq");
    BAD("{\"seq\":1,\"type\":\"checked\",\"at\":0}", "events[0].at");
    BAD("{\"seq\":1,\"type\":\"checked\",\"at\":1,\"version_code\":0}", "events[0].version_code");
    BAD("{\"seq\":1,\"type\":\"checked\",\"at\":1,\"from_version_code\":-3}",
        "events[0].from_version_code");
    BAD("{\"seq\":1,\"type\":\"checked\",\"at\":1,\"duration_ms\":-1}", "events[0].duration_ms");
    BAD("{\"seq\":1,\"type\":\"checked\",\"at\":1,\"version\":\"v 1\"}", "events[0].version");
    BAD("{\"seq\":1,\"type\":\"checked\",\"at\":1,\"reason\":\"a\\u0007b\"}", "events[0].reason");
    static const char *const figures[] = {"bytes", "files_fetched", "files_delta",
                                          "bytes_delta_saved", "delta_fallbacks"};
    for (size_t k = 0; k < 5; k++) {
        char ev[256], needle[96];
        snprintf(ev, sizeof ev, "{\"seq\":1,\"type\":\"downloaded\",\"at\":1,\"%s\":-1}",
                 figures[k]);
        snprintf(needle, sizeof needle, "field 'events[0].%s': must be 0 or more", figures[k]);
        BAD(ev, needle);
        snprintf(ev, sizeof ev, "{\"seq\":1,\"type\":\"downloaded\",\"at\":1,\"%s\":\"12\"}",
                 figures[k]);
        snprintf(needle, sizeof needle, "field 'events[0].%s': expected", figures[k]);
        BAD(ev, needle);
        snprintf(ev, sizeof ev, "{\"seq\":1,\"type\":\"downloaded\",\"at\":1,\"%s\":1.5}",
                 figures[k]);
        BAD(ev, needle);
    }
    BAD("[]", "field 'events': expected an array of objects");
#undef BAD
    send_bad(w, EVENTS, "{\"device_id\":\"" DEV "\",\"events\":[],\"colour\":1}", 400,
             "field 'colour': unknown field");
    send_bad(w, EVENTS, "{\"device_id\":\"0123\",\"events\":[]}", 400, "device_id");
    send_bad(w, EVENTS, "{\"device_id\":\"" DEV "\",\"events\":[],\"dropped\":-1}", 400,
             "dropped");
    send_bad(w, EVENTS, "{\"events\":[]}", 400, "field 'device_id': missing");
    send_bad(w, EVENTS, "not json", 400, "request body");
    send_bad(w, "/v1/apps/nosuch/events", "{\"device_id\":\"" DEV "\",\"events\":[]}", 404,
             "nosuch");

    /* 1001 events; and a body over the batch bound */
    size_t cap = 5u * 1024 * 1024;
    char *big = malloc(cap);
    assert_non_null(big);
    size_t n = (size_t)snprintf(big, cap, "%s", pre);
    for (int i = 1; i <= 1001; i++)
        n += (size_t)snprintf(big + n, cap - n, "%s{\"seq\":%d,\"type\":\"checked\",\"at\":1}",
                              i > 1 ? "," : "", i);
    snprintf(big + n, cap - n, "]}");
    send_bad(w, EVENTS, big, 400, "field 'events': more than 1000 items");
    memset(big, ' ', cap - 1);
    big[cap - 1] = '\0';
    memcpy(big, pre, strlen(pre));
    send_bad(w, EVENTS, big, 413, "at most 4194304 bytes");
    free(big);

    /* nothing of it was stored */
    json_t *j = get(w, "/api/v1/apps/default/events");
    assert_int_equal(json_array_size(json_object_get(j, "events")), 0);
    json_decref(j);
    j = get(w, "/api/v1/apps/default/devices");
    assert_int_equal(json_array_size(json_object_get(j, "devices")), 0);
    json_decref(j);

    /* the lists' query arguments */
    static const struct {
        const char *path;
        long status;
        const char *needle;
    } q[] = {
        {"/api/v1/apps/default/events?colour=red", 400, "query 'colour'"},
        {"/api/v1/apps/default/events?limit=0", 400, "query 'limit'"},
        {"/api/v1/apps/default/events?since=x", 400, "query 'since'"},
        {"/api/v1/apps/default/events?type=boom", 400, "type: 'boom'"},
        {"/api/v1/apps/default/events?device=xyz", 400, "device"},
        {"/api/v1/apps/default/devices?after=nothex", 400, "after"},
        {"/api/v1/apps/default/devices?before=1", 400, "query 'before'"},
        {"/api/v1/apps/nosuch/devices", 404, "nosuch"},
        {"/api/v1/apps/nosuch/events", 404, "nosuch"},
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        lp_apiresp r;
        assert_int_equal(lp_apitest_call(w->t, "GET", q[i].path, w->read, NULL, NULL, NULL, 0, &r),
                         0);
        if (r.status != q[i].status || !strstr(lp_apiresp_message(&r), q[i].needle))
            fail_msg("%s: HTTP %ld: %s", q[i].path, r.status, r.body ? r.body : "");
        lp_apiresp_free(&r);
    }
}

/* --device-auth token: the device route wants a download token. */
static void test_device_auth_token(void **state)
{
    world *w = *state;
    lp_apiresp r;
    assert_int_equal(post(w, EVENTS, NULL, BATCH, &r), 401);
    assert_string_equal(r.www_auth, "Bearer realm=\"livepush\"");
    lp_apiresp_free(&r);
    char wrong[LP_TOKEN_TEXT_SIZE];
    memcpy(wrong, w->download, sizeof wrong);
    wrong[LP_TOKEN_TEXT_LEN - 1] = wrong[LP_TOKEN_TEXT_LEN - 1] == 'A' ? 'B' : 'A';
    assert_int_equal(post(w, EVENTS, wrong, BATCH, &r), 401);
    lp_apiresp_free(&r);
    assert_int_equal(post(w, EVENTS, w->read, BATCH, &r), 403);
    assert_non_null(strstr(lp_apiresp_message(&r), "'download'"));
    lp_apiresp_free(&r);
    json_t *j = get(w, "/api/v1/apps/default/events");
    assert_int_equal(json_array_size(json_object_get(j, "events")), 0); /* none stored */
    json_decref(j);
    send_ok(w, w->download, BATCH, 3, 0);
    send_ok(w, w->t->admin, BATCH, 0, 3); /* admin implies every scope */
    /* a device's token still cannot read the management API */
    assert_int_equal(lp_apitest_call(w->t, "GET", "/api/v1/apps/default/events", w->download,
                                     NULL, NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 403);
    lp_apiresp_free(&r);
}

/* Without the option devices need nothing, and a token is not looked at. */
static void test_device_auth_none(void **state)
{
    world *w = *state;
    send_ok(w, NULL, BATCH, 3, 0);
    send_ok(w, w->read, BATCH, 0, 3);
}

static void test_config_option(void **state)
{
    (void)state;
    lp_server_config cfg;
    lp_error err;
    assert_int_equal(lp_server_config_load(&cfg, NULL, 0, NULL, &err), LP_OK);
    assert_false(cfg.device_auth_token);
    lp_server_setting flag[] = {{"device-auth", "token"}};
    assert_int_equal(lp_server_config_load(&cfg, flag, 1, NULL, &err), LP_OK);
    assert_true(cfg.device_auth_token);
    char *env[] = {"LIVEPUSH_DEVICE_AUTH=token", NULL};
    assert_int_equal(lp_server_config_load(&cfg, NULL, 0, env, &err), LP_OK);
    assert_true(cfg.device_auth_token);
    lp_server_setting none[] = {{"device-auth", "none"}};
    assert_int_equal(lp_server_config_load(&cfg, none, 1, env, &err), LP_OK); /* flag wins */
    assert_false(cfg.device_auth_token);
    lp_server_setting bad[] = {{"device-auth", "maybe"}};
    assert_int_equal(lp_server_config_load(&cfg, bad, 1, NULL, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "--device-auth: 'maybe'"));

    char *dir = lp_test_tmpdir("cfg");
    char *file = lp_test_join(dir, "serve.json");
    assert_int_equal(lp_test_write_str(file, "{\"device_auth\":\"token\"}"), 0);
    lp_server_setting cf[] = {{"config", file}};
    assert_int_equal(lp_server_config_load(&cfg, cf, 1, NULL, &err), LP_OK);
    assert_true(cfg.device_auth_token);
    assert_int_equal(lp_test_write_str(file, "{\"device_auth\":true}"), 0);
    assert_int_equal(lp_server_config_load(&cfg, cf, 1, NULL, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "'device_auth'"));
    lp_test_rmtree(dir);
    free(file);
    free(dir);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accept_and_read_back, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_device_auth_none, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_device_auth_token, setup_token, teardown),
        cmocka_unit_test(test_config_option),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
