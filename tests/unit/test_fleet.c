/*
 * test_fleet.c — a fleet of 1,000 simulated devices against the real
 * server (service, HTTP on loopback, SQLite file).
 *
 * A simulated device is light: an id, the version code it runs, its
 * attributes and a sequence number for its events.  It checks for an
 * update with the library's own check (lp_check_for_update, over HTTP,
 * through TUF; the devices share one metadata cache, as they would share a
 * CDN), and "installs" an offer by reporting what a real agent reports
 * (downloaded, activated, then healthy or rolled_back) to the server's
 * device route with its channel.  No bytes of the release are fetched:
 * what is under test is who is offered what, and what the server does with
 * the reports.
 *
 * The run:
 *   1. release 2.0 published at 10%: about 10% of the fleet is offered it
 *      and installs (within 3 points);
 *   2. raised to 50%: every device of the first 10% is still inside (it is
 *      checked as if it still ran 1), about 40% more install;
 *   3. release 3.0 targeted (attribute region=eu, from code 2 up): for
 *      every device, offered exactly when both rules hold;
 *   4. release 4.0 at 100% that makes 30% of its devices roll back, the
 *      fleet checking 25 devices per guardrail interval: the server halts
 *      it by itself, with its reason, before more than the minimum sample
 *      (20) plus one interval of devices installed it; every device that
 *      had not installed it is never offered it again.
 * The guardrail runs are driven by the test between groups of devices (one
 * "interval" = 25 device check-ins), so the bound is exact and the test
 * does not depend on the machine's speed; that the server also runs them
 * on its own is shown by tests/e2e/guardrail.sh.
 */
#include "agent/net.h"
#include "apitest.h"
#include "core/file.h"
#include "livepush/hash.h"
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define FLEET 1000
#define PER_INTERVAL 25
#define MIN_DEVICES 20

typedef struct sim_device {
    char id[33];
    uint64_t current;
    uint64_t seq;
    bool eu;
} sim_device;

typedef struct fleet {
    lp_apitest *t;
    char *dir, *state, *work;
    lp_net *net;
    lp_tuf_client *tuf;
    sim_device dev[FLEET];
} fleet;

static uint64_t h64(const char *s)
{
    uint8_t d[LP_HASH_MAX_LEN];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, s, strlen(s), d, NULL), LP_OK);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | d[i];
    return v;
}

static void publish(fleet *f, const char *content, const char *version, const char *extra)
{
    char id[64], req[1024];
    assert_int_equal(lp_apitest_upload(f->t, f->t->admin, "fleet", content, strlen(content),
                                       strlen(content), 1, id),
                     0);
    snprintf(req, sizeof req,
             "{\"upload\":\"%s\",\"version\":\"%s\",\"kind\":\"file\",\"file_name\":\"app\"%s}",
             id, version, extra);
    json_t *j = lp_apitest_json(f->t, "POST", "/api/v1/apps/fleet/releases", f->t->admin, req,
                                201);
    assert_non_null(j);
    json_decref(j);
}

/* The version code device d would be offered if it ran `current`. */
static uint64_t check(fleet *f, const sim_device *d, uint64_t current)
{
    lp_device_attribute attr = {.key = "region", .value = d->eu ? "eu" : "us"};
    lp_check_opts o = {.channel = "stable", .platform = "linux", .arch = "x86_64",
                       .current_id = current, .device_id = d->id, .attributes = &attr,
                       .attribute_count = 1, .work_dir = f->work};
    lp_update_offer offer;
    bool available = false;
    lp_error err;
    if (lp_check_for_update(f->tuf, &o, &offer, &available, &err))
        fail_msg("device %s: check: %s", d->id, err.msg);
    uint64_t code = available ? offer.version_code : 0;
    lp_update_offer_free(&offer);
    return code;
}

/* Reports events as the agent does: {"device_id","channel","events":[...]}. */
static void report(fleet *f, sim_device *d, const char *const *types, size_t n, uint64_t code,
                   uint64_t from)
{
    char body[2048];
    int off = snprintf(body, sizeof body, "{\"device_id\":\"%s\",\"channel\":\"stable\","
                                          "\"events\":[",
                       d->id);
    for (size_t i = 0; i < n; i++) {
        /* after a rollback the device runs `from` again, having left `code` */
        bool back = !strcmp(types[i], "rolled_back");
        uint64_t now_on = back ? from : code, left = back ? code : from;
        off += snprintf(body + off, sizeof body - (size_t)off,
                        "%s{\"seq\":%llu,\"type\":\"%s\",\"at\":1796000000,"
                        "\"version_code\":%llu",
                        i ? "," : "", (unsigned long long)++d->seq, types[i],
                        (unsigned long long)now_on);
        if (left)
            off += snprintf(body + off, sizeof body - (size_t)off, ",\"from_version_code\":%llu",
                            (unsigned long long)left);
        off += snprintf(body + off, sizeof body - (size_t)off, "}");
    }
    snprintf(body + off, sizeof body - (size_t)off, "]}");
    lp_apiresp r;
    assert_int_equal(lp_apitest_call(f->t, "POST", "/v1/apps/fleet/events", NULL, NULL, NULL,
                                     body, strlen(body), &r),
                     0);
    if (r.status != 200)
        fail_msg("events of %s: HTTP %ld: %s", d->id, r.status, r.body ? r.body : "");
    lp_apiresp_free(&r);
}

/* Installs `code` on d: downloaded, activated, healthy. */
static void install(fleet *f, sim_device *d, uint64_t code)
{
    static const char *const ok[] = {"downloaded", "activated", "healthy"};
    report(f, d, ok, 3, code, d->current);
    d->current = code;
}

static void put_rollout(fleet *f, const char *version, const char *body)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/apps/fleet/releases/%s/rollout", version);
    json_decref(lp_apitest_json(f->t, "PUT", path, f->t->admin, body, 200));
}

static void fleet_setup(fleet *f)
{
    memset(f, 0, sizeof *f);
    assert_non_null(f->t = lp_apitest_start(0));
    json_decref(lp_apitest_json(f->t, "POST", "/api/v1/apps", f->t->admin,
                                "{\"name\":\"fleet\"}", 201));
    json_decref(lp_apitest_json(f->t, "PUT", "/api/v1/apps/fleet/guardrail", f->t->admin,
                                "{\"rate_bp\":500,\"min_devices\":20}", 200));
    publish(f, "v1\n", "1.0", "");
    lp_error err;
    f->dir = lp_test_tmpdir("fleet");
    f->state = lp_test_join(f->dir, "devices");
    f->work = lp_test_join(f->state, "downloads");
    char *meta = lp_test_join(f->state, "metadata");
    char *root = lp_test_join(f->t->dir, "repos/fleet/metadata/1.root.json");
    assert_int_equal(lp_tuf_init_trusted_root(meta, root, &err), LP_OK);
    free(meta);
    free(root);
    lp_net_config c = {.server_url = f->t->base, .app = "fleet", .state_dir = f->state,
                       .attempts = 2, .backoff_base_ms = 5, .backoff_max_ms = 10};
    assert_int_equal(lp_net_open(&c, &f->net, &err), LP_OK);
    assert_int_equal(lp_net_open_tuf(f->net, &f->tuf, &err), LP_OK);
    for (unsigned i = 0; i < FLEET; i++) {
        sim_device *d = &f->dev[i];
        char seed[32];
        snprintf(seed, sizeof seed, "device %u", i);
        snprintf(d->id, sizeof d->id, "%016llx%016llx", (unsigned long long)h64(seed),
                 (unsigned long long)i);
        d->eu = i % 3 == 0;
        d->current = 0;
        /* everyone starts on 1.0 */
        if (check(f, d, 0) != 1)
            fail_msg("device %u is not offered 1.0", i);
        install(f, d, 1);
    }
}

static void fleet_teardown(fleet *f)
{
    lp_tuf_client_free(f->tuf);
    lp_net_close(f->net);
    lp_test_rmtree(f->dir);
    free(f->dir);
    free(f->state);
    free(f->work);
    lp_apitest_stop(f->t);
}

static void test_fleet(void **state)
{
    (void)state;
    fleet *f = calloc(1, sizeof *f);
    assert_non_null(f);
    fleet_setup(f);

    /* 1. 2.0 at 10% */
    publish(f, "v2\n", "2.0", ",\"rollout_percent_bp\":1000");
    static bool first[FLEET];
    unsigned n10 = 0;
    for (unsigned i = 0; i < FLEET; i++) {
        uint64_t c = check(f, &f->dev[i], f->dev[i].current);
        assert_true(c == 0 || c == 2);
        if ((first[i] = c == 2)) {
            install(f, &f->dev[i], 2);
            n10++;
        }
    }
    print_message("fleet: %u of %d devices updated at 10%%\n", n10, FLEET);
    assert_in_range(n10, 70, 130);

    /* 2. raised to 50%: the first 10% stay inside, about 40% more */
    put_rollout(f, "2.0", "{\"channel\":\"stable\",\"percent_bp\":5000}");
    unsigned added = 0;
    for (unsigned i = 0; i < FLEET; i++) {
        sim_device *d = &f->dev[i];
        if (first[i]) {
            if (check(f, d, 1) != 2)
                fail_msg("device %u was inside at 10%% and is outside at 50%%", i);
            continue;
        }
        if (check(f, d, d->current) == 2) {
            install(f, d, 2);
            added++;
        }
    }
    print_message("fleet: %u more at 50%% (%u in all)\n", added, n10 + added);
    assert_in_range(n10 + added, 470, 530);
    assert_in_range(added, 370, 430);
    /* adoption over time: every install of 2.0 counted once */
    json_t *ad = lp_apitest_json(f->t, "GET",
                                 "/api/v1/apps/fleet/releases/2.0/adoption?channel=stable&period=60",
                                 f->t->admin, NULL, 200);
    json_t *pts = json_object_get(ad, "points");
    assert_true(json_array_size(pts) >= 1);
    json_t *last = json_array_get(pts, json_array_size(pts) - 1);
    assert_int_equal(json_integer_value(json_object_get(last, "installed_total")), n10 + added);
    json_decref(ad);
    json_decref(lp_apitest_json(f->t, "GET", "/api/v1/apps/fleet/releases/2.0/adoption?period=5",
                                f->t->admin, NULL, 400));

    /* 3. targeting: 3.0 for region=eu devices that run 2 or later */
    publish(f, "v3\n", "3.0",
            ",\"targeting\":{\"attributes\":{\"region\":\"eu\"},\"min_from_code\":2}");
    unsigned n3 = 0;
    for (unsigned i = 0; i < FLEET; i++) {
        sim_device *d = &f->dev[i];
        bool want = d->eu && d->current >= 2;
        uint64_t c = check(f, d, d->current);
        if ((c == 3) != want)
            fail_msg("device %u (region %s, on %llu): offered %llu", i, d->eu ? "eu" : "us",
                     (unsigned long long)d->current, (unsigned long long)c);
        n3 += c == 3;
    }
    print_message("fleet: 3.0 offered to %u devices, each region=eu and on 2\n", n3);
    assert_true(n3 > 100);

    /* 4. a bad release: 30% of its devices roll back; the guardrail runs
     * once per PER_INTERVAL check-ins */
    publish(f, "v4\n", "4.0", ",\"rollout_percent_bp\":10000");
    unsigned installed = 0, halted_at = 0, after_halt = 0;
    size_t halted = 0;
    lp_error err;
    for (unsigned i = 0; i < FLEET; i++) {
        sim_device *d = &f->dev[i];
        uint64_t c = check(f, d, d->current);
        if (c == 4) {
            if (halted)
                after_halt++;
            installed++;
            static const char *const bad[] = {"downloaded", "activated", "rolled_back"};
            char seed[64];
            snprintf(seed, sizeof seed, "bad %s", d->id);
            if (h64(seed) % 10 < 3)
                report(f, d, bad, 3, 4, d->current); /* stays on its release */
            else
                install(f, d, 4);
        }
        if ((i + 1) % PER_INTERVAL == 0 && !halted) {
            assert_int_equal(lp_service_guard_run(f->t->svc, &halted, &err), LP_OK);
            if (halted)
                halted_at = i + 1;
        }
    }
    print_message("fleet: 4.0 halted by the guardrail after %u check-ins; %u devices had "
                  "installed it (bound %d + %d)\n",
                  halted_at, installed, MIN_DEVICES, PER_INTERVAL);
    assert_int_equal(halted, 1);
    assert_int_equal(after_halt, 0);
    assert_true(installed <= MIN_DEVICES + PER_INTERVAL);
    assert_true(installed >= MIN_DEVICES);

    /* the halt is recorded with its reason, and nobody else ever gets it */
    json_t *list = lp_apitest_json(f->t, "GET", "/api/v1/apps/fleet/rollouts?channel=stable",
                                   f->t->admin, NULL, 200);
    json_t *rows = json_object_get(list, "rollouts"), *row, *r4 = NULL;
    size_t k;
    json_array_foreach(rows, k, row) if (json_integer_value(json_object_get(row, "version_code")) ==
                                         4) r4 = row;
    assert_non_null(r4);
    assert_string_equal(json_string_value(json_object_get(r4, "state")), "halted");
    assert_non_null(strstr(json_string_value(json_object_get(r4, "reason")), "guardrail:"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r4, "devices"), "tried")),
                     installed);
    json_decref(list);
    json_t *audit = lp_apitest_json(f->t, "GET", "/api/v1/audit?app=fleet", f->t->admin, NULL,
                                    200);
    char *text = json_dumps(audit, 0);
    assert_non_null(strstr(text, "\"rollout.halted\""));
    assert_non_null(strstr(text, "\"server\""));
    free(text);
    json_decref(audit);
    for (unsigned i = 0; i < FLEET; i++)
        if (f->dev[i].current < 4 && check(f, &f->dev[i], f->dev[i].current) == 4)
            fail_msg("device %u is offered the halted release", i);

    fleet_teardown(f);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fleet)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
