/*
 * test_agent_hooks.c — hooks around real switches: executable hook files
 * (a failing pre-update hook leaves the old release, a failing post-update
 * hook rolls back and marks the release bad, the environment and working
 * folder a hook gets, the time limit with SIGTERM and then SIGKILL for a
 * hook that ignores SIGTERM, output kept bounded in the message, a hook
 * file that is not executable) and C callbacks (what they are told, a
 * failing one, rollback hooks whose failure does not stop a rollback).
 */
#include "agenttest.h"
#include "testutil.h"

#include "core/file.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

typedef struct fixture {
    char *dir;
    char *root;
    char *hooks;
    lp_blobstore *bs;
    agt_source src;
    lp_manifest v1, v2;
    lp_updater *u;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = lp_test_tmpdir("agent-hooks");
    f->root = lp_test_join(f->dir, "root");
    char *blobs = lp_test_join(f->dir, "blobs");
    lp_error err;
    int rc = lp_blobstore_open(blobs, &f->bs, &err) == LP_OK ? 0 : -1;
    free(blobs);
    f->src.bs = f->bs;
    const agt_entry e1[] = {{"app", "one\n", 0755, NULL}};
    const agt_entry e2[] = {{"app", "two\n", 0755, NULL}};
    if (rc == 0)
        rc = agt_make_release(f->bs, e1, N(e1), &f->v1);
    if (rc == 0)
        rc = agt_make_release(f->bs, e2, N(e2), &f->v2);
    lp_updater_config cfg = agt_config(f->root);
    cfg.hook_timeout_ms = 30000; /* generous: only test_time_limit waits for it */
    if (rc == 0 && !(f->u = agt_open(&cfg)))
        rc = -1;
    if (rc == 0)
        rc = agt_install(f->u, &f->v1, 1, "v1", &f->src);
    lp_stage_opts opts = {.version = "v2"};
    if (rc == 0 && lp_updater_stage(f->u, &f->v2, 2, &opts, agt_fetch, &f->src, NULL, &err))
        rc = -1;
    f->hooks = lp_test_join(f->root, "hooks");
    *state = f;
    return rc;
}

static int teardown(void **state)
{
    fixture *f = *state;
    lp_updater_close(f->u);
    lp_manifest_free(&f->v1);
    lp_manifest_free(&f->v2);
    lp_blobstore_close(f->bs);
    lp_test_rmtree(f->dir);
    free(f->hooks);
    free(f->root);
    free(f->dir);
    free(f);
    return 0;
}

static lp_updater_status status(fixture *f)
{
    lp_updater_status s;
    lp_error err;
    assert_int_equal(lp_updater_status_get(f->u, &s, &err), LP_OK);
    return s;
}

static void test_pre_update_failure_keeps_old(void **state)
{
    fixture *f = *state;
    assert_int_equal(agt_write_hook(f->hooks, "pre-update",
                                    "echo \"refusing: disk busy\" >&2\nexit 3"),
                     0);
    lp_error err;
    assert_int_equal(lp_updater_activate(f->u, 2, &err), LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "pre-update hook"));
    assert_non_null(strstr(err.msg, "exited with status 3"));
    assert_non_null(strstr(err.msg, "refusing: disk busy"));
    assert_non_null(strstr(err.msg, "nothing switched"));
    assert_int_equal(agt_check_current(f->root, 1, &f->v1), 0);
    lp_updater_status s = status(f);
    assert_int_equal(s.current, 1);
    assert_false(s.on_probation);
    assert_int_equal(s.bad_count, 0); /* not the release's fault */
    assert_non_null(s.last_error);
    assert_non_null(strstr(s.last_error, "refusing: disk busy"));
    lp_updater_status_free(&s);

    /* Once the hook agrees, the update goes through. */
    assert_int_equal(agt_write_hook(f->hooks, "pre-update", "exit 0"), 0);
    assert_int_equal(lp_updater_activate(f->u, 2, &err), LP_OK);
    assert_int_equal(agt_check_current(f->root, 2, &f->v2), 0);
}

static void test_post_update_failure_rolls_back(void **state)
{
    fixture *f = *state;
    char *marker = lp_test_join(f->dir, "post-rollback-ran");
    char body[1024];
    assert_int_equal(agt_write_hook(f->hooks, "post-update", "echo health check failed\nexit 1"),
                     0);
    snprintf(body, sizeof body, "echo \"$LIVEPUSH_OLD_ID->$LIVEPUSH_NEW_ID $LIVEPUSH_REASON\" > %s",
             marker);
    assert_int_equal(agt_write_hook(f->hooks, "post-rollback", body), 0);
    lp_error err;
    assert_int_equal(lp_updater_activate(f->u, 2, &err), LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "post-update hook"));
    assert_non_null(strstr(err.msg, "health check failed"));
    assert_non_null(strstr(err.msg, "rolled back to release 1"));
    assert_int_equal(agt_check_current(f->root, 1, &f->v1), 0);
    lp_updater_status s = status(f);
    assert_int_equal(s.current, 1);
    assert_int_equal(s.bad_count, 1);
    assert_int_equal(s.bad[0].id, 2);
    assert_non_null(strstr(s.bad[0].reason, "health check failed"));
    lp_updater_status_free(&s);
    char *text = (char *)lp_test_read_file(marker, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "2->1 post-update hook"));
    free(text);
    free(marker);
}

static void test_environment(void **state)
{
    fixture *f = *state;
    char *out = lp_test_join(f->dir, "env.txt");
    char body[1024];
    snprintf(body, sizeof body,
             "{ echo \"hook=$LIVEPUSH_HOOK\"; echo \"root=$LIVEPUSH_INSTALL_ROOT\";"
             " echo \"dir=$LIVEPUSH_RELEASE_DIR\"; echo \"old=$LIVEPUSH_OLD_VERSION\";"
             " echo \"new=$LIVEPUSH_NEW_VERSION\"; echo \"oldid=$LIVEPUSH_OLD_ID\";"
             " echo \"newid=$LIVEPUSH_NEW_ID\"; echo \"pwd=$(pwd -P)\";"
             " echo \"reason=${LIVEPUSH_REASON-unset}\"; } > %s",
             out);
    assert_int_equal(agt_write_hook(f->hooks, "post-update", body), 0);
    setenv("LIVEPUSH_NEW_ID", "forged", 1); /* the caller's own LIVEPUSH_* never leak in */
    lp_error err;
    assert_int_equal(lp_updater_activate(f->u, 2, &err), LP_OK);
    unsetenv("LIVEPUSH_NEW_ID");
    char real[PATH_MAX];
    assert_non_null(realpath(f->root, real));
    char expect[8192];
    snprintf(expect, sizeof expect,
             "hook=post-update\nroot=%s\ndir=%s/releases/2\nold=v1\nnew=v2\noldid=1\nnewid=2\n"
             "pwd=%s/releases/2\nreason=unset\n",
             real, real, real);
    char *text = (char *)lp_test_read_file(out, NULL);
    assert_non_null(text);
    assert_string_equal(text, expect);
    free(text);
    free(out);
}

static void test_time_limit(void **state)
{
    fixture *f = *state;
    /* A second handle on the root with short limits. */
    lp_updater_config cfg = agt_config(f->root);
    cfg.hook_timeout_ms = 400;
    cfg.hook_kill_grace_ms = 400;
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    assert_int_equal(agt_write_hook(f->hooks, "pre-update", "echo waiting\nsleep 30"), 0);
    lp_error err;
    time_t t0 = time(NULL);
    assert_int_equal(lp_updater_activate(u, 2, &err), LP_ERR_STATE);
    assert_true(time(NULL) - t0 < 10);
    assert_non_null(strstr(err.msg, "time limit of 400 ms"));
    assert_non_null(strstr(err.msg, "SIGTERM"));
    assert_non_null(strstr(err.msg, "waiting"));
    assert_int_equal(agt_check_current(f->root, 1, &f->v1), 0);

    /* A hook that ignores SIGTERM (and so does its sleep) gets SIGKILL. */
    assert_int_equal(
        agt_write_hook(f->hooks, "pre-update", "trap '' TERM\necho stubborn\nsleep 30"), 0);
    t0 = time(NULL);
    assert_int_equal(lp_updater_activate(u, 2, &err), LP_ERR_STATE);
    assert_true(time(NULL) - t0 < 10);
    assert_non_null(strstr(err.msg, "SIGKILL"));
    assert_non_null(strstr(err.msg, "stubborn"));
    assert_int_equal(agt_check_current(f->root, 1, &f->v1), 0);
    lp_updater_close(u);
}

static void test_output_bounded(void **state)
{
    fixture *f = *state;
    /* 200 KB of output, then the line that matters. */
    assert_int_equal(agt_write_hook(f->hooks, "pre-update",
                                    "i=0\nwhile [ $i -lt 2000 ]; do\n"
                                    "echo 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'\n"
                                    "i=$((i+1))\ndone\necho FINAL-LINE >&2\nexit 9"),
                     0);
    lp_error err;
    assert_int_equal(lp_updater_activate(f->u, 2, &err), LP_ERR_STATE);
    if (!strstr(err.msg, "exited with status 9") || !strstr(err.msg, "...") ||
        !strstr(err.msg, "FINAL-LINE"))
        fail_msg("unexpected message: %s", err.msg);
    assert_true(strlen(err.msg) < LP_ERROR_MSG_MAX);
}

static void test_not_executable(void **state)
{
    fixture *f = *state;
    char *p = lp_test_join(f->hooks, "pre-update");
    assert_int_equal(lp_test_write_str(p, "#!/bin/sh\nexit 0\n"), 0); /* mode 0644 */
    lp_error err;
    assert_int_equal(lp_updater_activate(f->u, 2, &err), LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "is not an executable file"));
    assert_int_equal(agt_check_current(f->root, 1, &f->v1), 0);
    free(p);
}

typedef struct calls {
    int n[LP_HOOK_POINT_COUNT];
    lp_hook_info last[LP_HOOK_POINT_COUNT];
    char old_version[LP_HOOK_POINT_COUNT][32];
    char new_version[LP_HOOK_POINT_COUNT][32];
    lp_hook_point fail_at;
    bool fail;
} calls;

static lp_status on_hook(void *ctx, const lp_hook_info *info, lp_error *err)
{
    calls *c = ctx;
    c->n[info->point]++;
    c->last[info->point] = *info;
    snprintf(c->old_version[info->point], 32, "%s", info->old_version);
    snprintf(c->new_version[info->point], 32, "%s", info->new_version);
    if (c->fail && c->fail_at == info->point)
        return lp_error_set(err, LP_ERR_STATE, "callback says no at %s", info->hook);
    return LP_OK;
}

static void test_callbacks(void **state)
{
    fixture *f = *state;
    calls c = {.fail = true, .fail_at = LP_HOOK_PRE_UPDATE};
    lp_error err;
    for (int p = 0; p < LP_HOOK_POINT_COUNT; p++)
        assert_int_equal(lp_updater_set_hook(f->u, (lp_hook_point)p, on_hook, &c, &err), LP_OK);
    assert_int_equal(lp_updater_set_hook(f->u, (lp_hook_point)7, on_hook, &c, &err),
                     LP_ERR_INVALID_ARG);
    assert_int_equal(lp_updater_activate(f->u, 2, &err), LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "callback says no at pre-update"));
    assert_int_equal(c.n[LP_HOOK_PRE_UPDATE], 1);
    assert_int_equal(c.n[LP_HOOK_POST_UPDATE], 0);
    assert_int_equal(agt_check_current(f->root, 1, &f->v1), 0);

    c.fail = false;
    assert_int_equal(lp_updater_activate(f->u, 2, &err), LP_OK);
    assert_int_equal(c.n[LP_HOOK_PRE_UPDATE], 2);
    assert_int_equal(c.n[LP_HOOK_POST_UPDATE], 1);
    const lp_hook_info *i = &c.last[LP_HOOK_POST_UPDATE];
    assert_int_equal(i->old_id, 1);
    assert_int_equal(i->new_id, 2);
    assert_string_equal(c.old_version[LP_HOOK_POST_UPDATE], "v1");
    assert_string_equal(c.new_version[LP_HOOK_POST_UPDATE], "v2");
    assert_null(i->reason);

    /* Rollback hooks: a failing pre-rollback hook does not stop it, and is
     * recorded. */
    c.fail = true;
    c.fail_at = LP_HOOK_PRE_ROLLBACK;
    assert_int_equal(lp_updater_rollback(f->u, 0, "test says so", &err), LP_OK);
    assert_int_equal(agt_check_current(f->root, 1, &f->v1), 0);
    assert_int_equal(c.n[LP_HOOK_PRE_ROLLBACK], 1);
    assert_int_equal(c.n[LP_HOOK_POST_ROLLBACK], 1);
    assert_int_equal(c.last[LP_HOOK_POST_ROLLBACK].old_id, 2);
    assert_int_equal(c.last[LP_HOOK_POST_ROLLBACK].new_id, 1);
    lp_updater_status s = status(f);
    assert_non_null(s.last_error);
    assert_non_null(strstr(s.last_error, "callback says no at pre-rollback"));
    lp_updater_status_free(&s);

    /* Cleared hooks are not called. */
    for (int p = 0; p < LP_HOOK_POINT_COUNT; p++)
        assert_int_equal(lp_updater_set_hook(f->u, (lp_hook_point)p, NULL, NULL, &err), LP_OK);
    assert_string_equal(lp_hook_point_name(LP_HOOK_POST_ROLLBACK), "post-rollback");
    assert_string_equal(lp_hook_point_name((lp_hook_point)9), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pre_update_failure_keeps_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_update_failure_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_time_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_executable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callbacks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
