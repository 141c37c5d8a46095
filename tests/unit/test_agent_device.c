/*
 * test_agent_device.c — the device client's local side on real install
 * roots: lp_updater_verify finding each kind of damage in an installed
 * release (content, size, mode, extra entry, missing entry, symlink
 * target); the record of checked files letting it skip what staging
 * checked or linked from a checked, unwritten file (and not skipping a file
 * written since, a linked file whose source was written, a damaged record,
 * or anything with verify_all); lp_updater_remove; last_check / last_error records; events
 * derived from state.json by lp_device_report — "activated", "healthy" and
 * "rolled_back" queued once each, also for switches made through another
 * handle, and reported.json refused when damaged; the device's channel
 * (configured, stored, reset, damaged file, bad names); and the network
 * calls failing cleanly without a server or a trusted root (recorded, with
 * a "failed" event).  The network cycle itself runs against the real
 * server in tests/e2e/agent_*.sh.
 */
#include "agenttest.h"
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

typedef struct fixture {
    char *dir, *root;
    lp_blobstore *bs;
    agt_source src;
    lp_manifest v[4]; /* v[1..3] */
    char events[2048];  /* take_events' answer */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = lp_test_tmpdir("agent-device");
    f->root = lp_test_join(f->dir, "root");
    char *blobs = lp_test_join(f->dir, "blobs");
    lp_error err;
    int rc = lp_blobstore_open(blobs, &f->bs, &err) == LP_OK ? 0 : -1;
    free(blobs);
    f->src.bs = f->bs;
    static const char *const app[] = {"", "app 1\n", "app 2\n", "app 3\n"};
    for (int i = 1; rc == 0 && i <= 3; i++) {
        const agt_entry e[] = {
            {"bin/app", app[i], 0755, NULL},
            {"share/common", "common to all\n", 0644, NULL},
            {"share/link", NULL, 0, "common"},
        };
        rc = agt_make_release(f->bs, e, N(e), &f->v[i]);
    }
    *state = f;
    return rc;
}

static int teardown(void **state)
{
    fixture *f = *state;
    for (int i = 1; i <= 3; i++)
        lp_manifest_free(&f->v[i]);
    lp_blobstore_close(f->bs);
    lp_test_rmtree(f->dir);
    free(f->root);
    free(f->dir);
    free(f);
    return 0;
}

/* <root>/releases/1/<name> */
static char *rel_path(fixture *f, const char *name)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s/releases/1/%s", f->root, name);
    return strdup(buf);
}

/* Asserts that verifying release 1 fails with `code` and a message naming
 * `what`. */
static void verify_fails(lp_updater *u, lp_status code, const char *what)
{
    lp_error err;
    assert_int_equal(lp_updater_verify(u, 1, &err), code);
    if (!strstr(err.msg, what))
        fail_msg("message '%s' does not name '%s'", err.msg, what);
}

static void test_verify(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    assert_int_equal(agt_install(u, &f->v[1], 1, "v1", &f->src), 0);
    lp_error err;
    assert_int_equal(lp_updater_verify(u, 1, &err), LP_OK);

    char *common = rel_path(f, "share/common");
    assert_int_equal(lp_test_write_str(common, "common to alL\n"), 0); /* same size */
    verify_fails(u, LP_ERR_HASH_MISMATCH, "release 1: share/common: content has SHA-256");
    assert_int_equal(lp_test_write_str(common, "common\n"), 0);
    verify_fails(u, LP_ERR_LENGTH_MISMATCH, "share/common: 7 bytes, the manifest says 14");
    assert_int_equal(lp_test_write_str(common, "common to all\n"), 0);
    assert_int_equal(lp_updater_verify(u, 1, &err), LP_OK);

    char *extra = rel_path(f, "bin/extra");
    assert_int_equal(lp_test_write_str(extra, "x"), 0);
    verify_fails(u, LP_ERR_STATE, "bin/extra: not in the manifest");
    unlink(extra);

    char *app = rel_path(f, "bin/app");
    assert_int_equal(chmod(app, 0644), 0);
    verify_fails(u, LP_ERR_STATE, "bin/app: mode 0644, the manifest says 0755");
    assert_int_equal(chmod(app, 0755), 0);

    char *link = rel_path(f, "share/link");
    assert_int_equal(unlink(link), 0);
    assert_int_equal(symlink("../bin/app", link), 0);
    verify_fails(u, LP_ERR_STATE, "share/link: symlink points elsewhere");
    assert_int_equal(unlink(link), 0);
    verify_fails(u, LP_ERR_NOT_FOUND, "share/link");
    assert_int_equal(symlink("common", link), 0);
    assert_int_equal(lp_updater_verify(u, 1, &err), LP_OK);

    assert_int_equal(lp_updater_verify(u, 7, &err), LP_ERR_NOT_FOUND);
    assert_int_equal(lp_updater_verify(u, 0, &err), LP_ERR_INVALID_ARG);
    free(common);
    free(extra);
    free(app);
    free(link);
    lp_updater_close(u);
}

/* Waits until the file-timestamp clock has moved on by some ticks, so that
 * what was written before counts as settled. */
static void next_ticks(void)
{
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* Writes `text` into the existing file `path` in place (same inode, so
 * every release sharing it sees the write), as an app writing into its
 * release folder would. */
static void overwrite(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
}

static lp_verify_stats verify_ok(lp_updater *u, uint64_t id)
{
    lp_error err;
    lp_verify_stats vs;
    if (lp_updater_verify_stats(u, id, &vs, &err) != LP_OK)
        fail_msg("verify %llu: %s", (unsigned long long)id, err.msg);
    assert_int_equal(vs.files, 2);
    return vs;
}

static void test_verify_skips_checked(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    assert_int_equal(agt_install(u, &f->v[1], 1, "v1", &f->src), 0);
    next_ticks();
    verify_ok(u, 1); /* reads what was written in staging's last tick, if any */
    assert_int_equal(verify_ok(u, 1).files_read, 0);

    /* v2 shares share/common with v1: linked from a file checked and not
     * written since, it is not read; bin/app was fetched and checked. */
    lp_error err;
    lp_stage_stats ss;
    assert_int_equal(lp_updater_stage(u, &f->v[2], 2, NULL, agt_fetch, &f->src, &ss, &err), LP_OK);
    assert_int_equal(ss.files_linked, 1);
    next_ticks();
    lp_verify_stats vs = verify_ok(u, 2);
    assert_true(vs.files_read <= 1);
    assert_true(vs.bytes_read <= strlen("app 2\n"));
    assert_int_equal(verify_ok(u, 2).files_read, 0);

    /* Written since (same size): read again, and the damage is found in
     * both releases that share the file. */
    char *common = rel_path(f, "share/common");
    overwrite(common, "common to alL\n");
    assert_int_equal(lp_updater_verify(u, 2, &err), LP_ERR_HASH_MISMATCH);
    assert_non_null(strstr(err.msg, "share/common"));
    verify_fails(u, LP_ERR_HASH_MISMATCH, "share/common: content has SHA-256");

    /* Staging v3 links the damaged file (its size and mode are right), but
     * does not vouch for it: verifying v3 reads it and refuses it. */
    assert_int_equal(lp_updater_stage(u, &f->v[3], 3, NULL, agt_fetch, &f->src, &ss, &err), LP_OK);
    assert_int_equal(ss.files_linked, 1);
    assert_int_equal(lp_updater_verify(u, 3, &err), LP_ERR_HASH_MISMATCH);
    assert_non_null(strstr(err.msg, "release 3: share/common"));

    /* Repaired: read once more, then known again. */
    overwrite(common, "common to all\n");
    next_ticks();
    vs = verify_ok(u, 3);
    assert_true(vs.files_read >= 1 && vs.bytes_read >= strlen("common to all\n"));
    assert_int_equal(verify_ok(u, 3).files_read, 0);

    /* A damaged record or a missing one means reading everything. */
    char rec[512];
    snprintf(rec, sizeof rec, "%s/.livepush/manifests/3.checked", f->root);
    assert_int_equal(lp_test_write_str(rec, "livepush-checked 1 2\n1 2 3\n-\n"), 0);
    assert_int_equal(verify_ok(u, 3).files_read, 2);
    assert_int_equal(verify_ok(u, 3).files_read, 0);
    assert_int_equal(unlink(rec), 0);
    assert_int_equal(verify_ok(u, 3).files_read, 2);
    assert_int_equal(verify_ok(u, 3).files_read, 0);
    lp_updater_close(u);

    /* verify_all reads every file every time. */
    cfg.verify_all = true;
    u = agt_open(&cfg);
    assert_non_null(u);
    vs = verify_ok(u, 3);
    assert_int_equal(vs.files_read, 2);
    assert_int_equal(vs.bytes_read, strlen("common to all\n") + strlen("app 3\n"));
    assert_int_equal(verify_ok(u, 3).files_read, 2);
    free(common);
    lp_updater_close(u);
}

static void test_remove_and_record(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    assert_int_equal(agt_install(u, &f->v[1], 1, "v1", &f->src), 0);
    assert_int_equal(agt_install(u, &f->v[2], 2, "v2", &f->src), 0);
    lp_error err;
    assert_int_equal(lp_updater_stage(u, &f->v[3], 3, NULL, agt_fetch, &f->src, NULL, &err), LP_OK);
    assert_int_equal(lp_updater_remove(u, 2, &err), LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "release 2 is current"));
    assert_int_equal(lp_updater_remove(u, 1, &err), LP_ERR_STATE);
    assert_int_equal(lp_updater_remove(u, 9, &err), LP_ERR_NOT_FOUND);
    assert_int_equal(lp_updater_remove(u, 3, &err), LP_OK);
    lp_updater_status s;
    assert_int_equal(lp_updater_status_get(u, &s, &err), LP_OK);
    assert_int_equal(s.release_count, 2);
    assert_int_equal(s.bad_count, 0); /* removed, not bad: it may come again */
    assert_int_equal(s.last_check, 0);
    lp_updater_status_free(&s);
    assert_int_equal(lp_updater_stage(u, &f->v[3], 3, NULL, agt_fetch, &f->src, NULL, &err), LP_OK);

    assert_int_equal(lp_updater_record_check(u, 1700000000, NULL, &err), LP_OK);
    assert_int_equal(lp_updater_status_get(u, &s, &err), LP_OK);
    assert_true(s.last_check == 1700000000 && s.last_error == NULL);
    lp_updater_status_free(&s);
    assert_int_equal(lp_updater_record_check(u, 1700000100, "check: refused", &err), LP_OK);
    assert_int_equal(lp_updater_record_check(u, 1700000200, NULL, &err), LP_OK);
    assert_int_equal(lp_updater_status_get(u, &s, &err), LP_OK);
    assert_int_equal(s.last_check, 1700000200);
    assert_string_equal(s.last_error, "check: refused"); /* kept: its time says it is older */
    assert_int_equal(s.last_error_at, 1700000100);
    lp_updater_status_free(&s);
    assert_int_equal(lp_updater_record_error(u, "download: gone", &err), LP_OK);
    assert_int_equal(lp_updater_status_get(u, &s, &err), LP_OK);
    assert_string_equal(s.last_error, "download: gone");
    lp_updater_status_free(&s);
    assert_int_equal(lp_updater_record_check(u, 0, NULL, &err), LP_ERR_INVALID_ARG);
    assert_int_equal(lp_updater_record_error(u, "", &err), LP_ERR_INVALID_ARG);
    lp_updater_close(u);
}

/* The queued events as "type:code:from" words, oldest first, and removes
 * them (as a send would). */
static char *take_events(fixture *f)
{
    char *dir = lp_test_join(f->root, ".livepush/events");
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    assert_true(n >= 0);
    char *out = f->events;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (strlen(name) == 25 && strcmp(name + 20, ".json") == 0) {
            char *p = lp_test_join(dir, name);
            json_t *e = json_load_file(p, 0, NULL);
            assert_non_null(e);
            char w[128];
            snprintf(w, sizeof w, "%s%s:%lld:%lld", out[0] ? " " : "",
                     json_string_value(json_object_get(e, "type")),
                     (long long)json_integer_value(json_object_get(e, "version_code")),
                     (long long)json_integer_value(json_object_get(e, "from_version_code")));
            strncat(out, w, sizeof f->events - strlen(out) - 1);
            json_decref(e);
            unlink(p);
            free(p);
        }
        free(names[i]);
    }
    free(names);
    free(dir);
    return out;
}

static lp_device *open_device(fixture *f, const char *channel, uint32_t max_launches)
{
    lp_device_config dc = {.updater = agt_config(f->root), .channel = channel};
    dc.updater.probation_max_launches = max_launches;
    lp_device *d = NULL;
    lp_error err;
    if (lp_device_open(&dc, &d, &err))
        fprintf(stderr, "device open: %s\n", err.msg);
    return d;
}

static void test_report(void **state)
{
    fixture *f = *state;
    lp_device *d = open_device(f, NULL, 1);
    assert_non_null(d);
    lp_updater *u = lp_device_updater(d);
    lp_updater_config cfg = agt_config(f->root);
    cfg.probation_max_launches = 1;
    lp_updater *app = agt_open(&cfg); /* the app, on its own handle */
    assert_non_null(app);
    lp_error err;
    size_t queued;

    assert_int_equal(agt_install(u, &f->v[1], 1, "v1", &f->src), 0);
    assert_int_equal(lp_device_report(d, &queued, &err), LP_OK);
    assert_string_equal(take_events(f), "activated:1:0");
    assert_int_equal(agt_install(app, &f->v[2], 2, "v2", &f->src), 0);
    assert_int_equal(lp_device_report(d, &queued, &err), LP_OK);
    assert_string_equal(take_events(f), "activated:2:1");
    assert_int_equal(lp_updater_mark_healthy(app, 2, &err), LP_OK);
    assert_int_equal(lp_device_report(d, &queued, &err), LP_OK);
    assert_string_equal(take_events(f), "healthy:2:0");
    assert_int_equal(lp_device_report(d, &queued, &err), LP_OK);
    assert_int_equal(queued, 0);
    assert_string_equal(take_events(f), "");

    /* Through the device: activation, then the launch limit (1) passed on
     * the app's handle rolls back. */
    assert_int_equal(lp_updater_stage(u, &f->v[3], 3, NULL, agt_fetch, &f->src, NULL, &err), LP_OK);
    assert_int_equal(lp_device_apply(d, 3, &err), LP_OK);
    assert_string_equal(take_events(f), "activated:3:2");
    lp_probation_outcome out;
    assert_int_equal(lp_updater_launch(app, time(NULL), &out, &err), LP_OK);
    assert_int_equal(lp_updater_launch(app, time(NULL), &out, &err), LP_OK);
    assert_int_equal(out, LP_PROBATION_ROLLED_BACK);
    assert_int_equal(lp_device_report(d, &queued, &err), LP_OK);
    assert_int_equal(queued, 1);
    assert_string_equal(take_events(f), "rolled_back:2:3");
    assert_int_equal(lp_device_report(d, &queued, &err), LP_OK);
    assert_string_equal(take_events(f), "");

    char *rep = lp_test_join(f->root, ".livepush/reported.json");
    assert_int_equal(lp_test_write_str(rep, "{\"format\":1,\"current\":2}"), 0);
    assert_int_equal(lp_device_report(d, &queued, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, rep));
    unlink(rep);
    /* Without the record, everything in state.json is reported again. */
    assert_int_equal(lp_device_report(d, &queued, &err), LP_OK);
    assert_string_equal(take_events(f), "activated:2:0 rolled_back:2:3");
    free(rep);
    lp_updater_close(app);
    lp_device_close(d);
}

static void test_channel(void **state)
{
    fixture *f = *state;
    lp_device *d = open_device(f, "beta", 0);
    assert_non_null(d);
    char ch[LP_DEVICE_MAX_CHANNEL + 1];
    bool stored;
    lp_error err;
    assert_int_equal(lp_device_channel(d, ch, &stored, &err), LP_OK);
    assert_true(!strcmp(ch, "beta") && !stored);
    assert_int_equal(lp_device_set_channel(d, "Canary-2", &err), LP_OK);
    assert_int_equal(lp_device_channel(d, ch, &stored, &err), LP_OK);
    assert_true(!strcmp(ch, "Canary-2") && stored);
    assert_int_equal(lp_device_set_channel(d, "no spaces", &err), LP_ERR_INVALID_ARG);
    assert_int_equal(lp_device_set_channel(d, "-x", &err), LP_ERR_INVALID_ARG);
    char *file = lp_test_join(f->root, ".livepush/channel");
    assert_int_equal(lp_test_write_str(file, "two\nlines\n"), 0);
    assert_int_equal(lp_device_channel(d, ch, &stored, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, file));
    assert_int_equal(lp_device_set_channel(d, NULL, &err), LP_OK);
    assert_int_equal(lp_device_channel(d, ch, &stored, &err), LP_OK);
    assert_true(!strcmp(ch, "beta") && !stored);
    assert_int_equal(lp_device_set_channel(d, NULL, &err), LP_OK); /* nothing to remove */
    free(file);
    lp_device_close(d);
    lp_device_config dc = {.updater = agt_config(f->root), .channel = "a b"};
    lp_device *bad = NULL;
    assert_int_equal(lp_device_open(&dc, &bad, &err), LP_ERR_INVALID_ARG);
    assert_null(bad);
}

static void test_no_server(void **state)
{
    fixture *f = *state;
    lp_device *d = open_device(f, NULL, 0);
    assert_non_null(d);
    lp_update_offer offer;
    bool available = true;
    lp_error err;
    assert_int_equal(lp_device_check(d, &offer, &available, &err), LP_ERR_INVALID_ARG);
    assert_false(available);
    assert_non_null(strstr(err.msg, "no server configured"));
    lp_updater_status s;
    assert_int_equal(lp_updater_status_get(lp_device_updater(d), &s, &err), LP_OK);
    assert_true(s.last_check > 0 && s.last_error && strstr(s.last_error, "no server"));
    lp_updater_status_free(&s);
    assert_string_equal(take_events(f), "failed:0:0");
    lp_device_close(d);

    /* A server, but no trusted root installed. */
    lp_device_config dc = {.updater = agt_config(f->root),
                           .net = {.server_url = "http://127.0.0.1:9", .app = "shop"}};
    assert_int_equal(lp_device_open(&dc, &d, &err), LP_OK);
    lp_update_result r;
    assert_int_equal(lp_device_update(d, NULL, &r, &err), LP_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "no trusted root"));
    assert_int_equal(r.outcome, LP_UPDATE_NONE);
    assert_string_equal(take_events(f), "failed:0:0");
    lp_device_close(d);
    /* A root.json that is not one is refused at open. */
    char *junk = lp_test_join(f->dir, "root.json");
    assert_int_equal(lp_test_write_str(junk, "{}"), 0);
    dc.trusted_root = junk;
    assert_int_not_equal(lp_device_open(&dc, &d, &err), LP_OK);
    assert_non_null(strstr(err.msg, "trusted root"));
    free(junk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_skips_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_and_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_channel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_server, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
