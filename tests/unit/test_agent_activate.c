/*
 * test_agent_activate.c — switching between real release folders: probation
 * (healthy, launch limit, window), rollback by hand to a kept release, the
 * bad list, keeping N releases (bad ones deleted first, never the current,
 * previous or probation one), two handles on one root seeing each other's
 * changes, and recovery adopting a `current` moved by hand or forgetting a
 * release folder deleted by hand.
 */
#include "agenttest.h"
#include "testutil.h"

#include "core/file.h"

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
#define RELEASES 4

typedef struct fixture {
    char *dir;
    char *root;
    lp_blobstore *bs;
    agt_source src;
    lp_manifest v[RELEASES + 1]; /* v[1..4] */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = lp_test_tmpdir("agent-activate");
    f->root = lp_test_join(f->dir, "root");
    char *blobs = lp_test_join(f->dir, "blobs");
    lp_error err;
    int rc = lp_blobstore_open(blobs, &f->bs, &err) == LP_OK ? 0 : -1;
    free(blobs);
    f->src.bs = f->bs;
    static const char *const app[RELEASES + 1] = {"", "app 1\n", "app 2\n", "app 3\n",
                                                  "app 4\n"};
    for (int i = 1; rc == 0 && i <= RELEASES; i++) {
        const agt_entry e[] = {
            {"bin/app", app[i], 0755, NULL},
            {"share/common", "common to all\n", 0644, NULL},
        };
        rc = agt_make_release(f->bs, e, N(e), &f->v[i]);
    }
    *state = f;
    return rc;
}

static int teardown(void **state)
{
    fixture *f = *state;
    for (int i = 1; i <= RELEASES; i++)
        lp_manifest_free(&f->v[i]);
    lp_blobstore_close(f->bs);
    lp_test_rmtree(f->dir);
    free(f->root);
    free(f->dir);
    free(f);
    return 0;
}

static void install(fixture *f, lp_updater *u, uint64_t id)
{
    char label[16];
    snprintf(label, sizeof label, "v%llu", (unsigned long long)id);
    assert_int_equal(agt_install(u, &f->v[id], id, label, &f->src), 0);
    assert_int_equal(agt_check_current(f->root, id, &f->v[id]), 0);
}

static void healthy(lp_updater *u)
{
    lp_error err;
    assert_int_equal(lp_updater_mark_healthy(u, 0, &err), LP_OK);
}

static lp_updater_status status(lp_updater *u)
{
    lp_updater_status s;
    lp_error err;
    assert_int_equal(lp_updater_status_get(u, &s, &err), LP_OK);
    return s;
}

static bool installed(const lp_updater_status *s, uint64_t id)
{
    for (size_t i = 0; i < s->release_count; i++)
        if (s->releases[i].id == id)
            return true;
    return false;
}

static const lp_bad_release *bad_entry(const lp_updater_status *s, uint64_t id)
{
    for (size_t i = 0; i < s->bad_count; i++)
        if (s->bad[i].id == id)
            return &s->bad[i];
    return NULL;
}

static void test_probation_and_healthy(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    install(f, u, 1);
    lp_updater_status s = status(u);
    assert_false(s.on_probation);
    lp_updater_status_free(&s);

    int64_t before = time(NULL);
    install(f, u, 2);
    s = status(u);
    assert_int_equal(s.current, 2);
    assert_int_equal(s.previous, 1);
    assert_true(s.on_probation);
    assert_int_equal(s.probation_launches, 0);
    assert_true(s.probation_since >= before);
    assert_int_equal(s.probation_window_s, LP_UPDATER_DEFAULT_PROBATION_WINDOW_S);
    assert_int_equal(s.probation_max_launches, LP_UPDATER_DEFAULT_PROBATION_MAX_LAUNCHES);
    lp_updater_status_free(&s);

    lp_error err;
    lp_probation_outcome out;
    assert_int_equal(lp_updater_launch(u, time(NULL), &out, &err), LP_OK);
    assert_int_equal(out, LP_PROBATION_PENDING);
    /* Another release may not be activated meanwhile. */
    assert_int_equal(lp_updater_stage(u, &f->v[3], 3, NULL, agt_fetch, &f->src, NULL, &err),
                     LP_OK);
    assert_int_equal(lp_updater_activate(u, 3, &err), LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "probation"));
    /* A late report from another release confirms nothing. */
    assert_int_equal(lp_updater_mark_healthy(u, 1, &err), LP_ERR_STATE);
    assert_int_equal(lp_updater_mark_healthy(u, 2, &err), LP_OK);
    assert_int_equal(lp_updater_mark_healthy(u, 2, &err), LP_OK); /* again: harmless */
    s = status(u);
    assert_false(s.on_probation);
    assert_int_equal(s.current, 2);
    lp_updater_status_free(&s);
    assert_int_equal(lp_updater_launch(u, time(NULL), &out, &err), LP_OK);
    assert_int_equal(out, LP_PROBATION_NONE);
    assert_int_equal(lp_updater_check_probation(u, time(NULL) + 100000, &out, &err), LP_OK);
    assert_int_equal(out, LP_PROBATION_NONE);
    assert_int_equal(agt_check_current(f->root, 2, &f->v[2]), 0);
    /* Activating the current release again does nothing. */
    assert_int_equal(lp_updater_activate(u, 2, &err), LP_OK);
    assert_int_equal(lp_updater_activate(u, 9, &err), LP_ERR_NOT_FOUND);
    lp_updater_close(u);
}

static void test_launch_limit_rolls_back(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    cfg.probation_max_launches = 2;
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    install(f, u, 1);
    install(f, u, 2);
    lp_error err;
    lp_probation_outcome out;
    int64_t now = time(NULL);
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(lp_updater_launch(u, now, &out, &err), LP_OK);
        assert_int_equal(out, LP_PROBATION_PENDING);
        lp_updater_status s = status(u);
        assert_int_equal(s.probation_launches, (uint32_t)i);
        lp_updater_status_free(&s);
    }
    assert_int_equal(lp_updater_launch(u, now, &out, &err), LP_OK);
    assert_int_equal(out, LP_PROBATION_ROLLED_BACK);
    assert_int_equal(agt_check_current(f->root, 1, &f->v[1]), 0);
    lp_updater_status s = status(u);
    assert_int_equal(s.current, 1);
    assert_false(s.on_probation);
    const lp_bad_release *b = bad_entry(&s, 2);
    assert_non_null(b);
    assert_non_null(strstr(b->reason, "launched 3 times"));
    assert_non_null(s.last_error);
    assert_non_null(strstr(s.last_error, "release 2 rolled back to 1"));
    lp_updater_status_free(&s);

    /* A bad release is never activated or staged again on this device. */
    assert_int_equal(lp_updater_activate(u, 2, &err), LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "marked bad"));
    assert_int_equal(lp_updater_rollback(u, 2, NULL, &err), LP_ERR_STATE);
    lp_updater_close(u);

    /* After a restart too; and when its folder is gone, staging it again
     * is refused. */
    u = agt_open(&cfg);
    assert_non_null(u);
    assert_int_equal(lp_updater_activate(u, 2, &err), LP_ERR_STATE);
    char *r2 = lp_test_join(f->root, "releases/2");
    assert_int_equal(lp_test_rmtree(r2), 0);
    free(r2);
    assert_int_equal(lp_updater_stage(u, &f->v[2], 2, NULL, agt_fetch, &f->src, NULL, &err),
                     LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "launched 3 times"));
    lp_updater_close(u);
}

static void test_window_rolls_back(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    cfg.probation_window_s = 60;
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    install(f, u, 1);
    install(f, u, 2);
    lp_updater_status s = status(u);
    int64_t since = s.probation_since;
    lp_updater_status_free(&s);
    lp_error err;
    lp_probation_outcome out;
    assert_int_equal(lp_updater_check_probation(u, since + 60, &out, &err), LP_OK);
    assert_int_equal(out, LP_PROBATION_PENDING);
    assert_int_equal(agt_check_current(f->root, 2, &f->v[2]), 0);
    assert_int_equal(lp_updater_check_probation(u, since + 61, &out, &err), LP_OK);
    assert_int_equal(out, LP_PROBATION_ROLLED_BACK);
    assert_int_equal(agt_check_current(f->root, 1, &f->v[1]), 0);
    s = status(u);
    assert_non_null(bad_entry(&s, 2));
    assert_non_null(strstr(bad_entry(&s, 2)->reason, "within 60 s"));
    lp_updater_status_free(&s);

    /* The window also applies at launch. */
    lp_updater_close(u);
    lp_test_rmtree(f->root);
    u = agt_open(&cfg);
    install(f, u, 1);
    install(f, u, 3);
    s = status(u);
    since = s.probation_since;
    lp_updater_status_free(&s);
    assert_int_equal(lp_updater_launch(u, since + 3600, &out, &err), LP_OK);
    assert_int_equal(out, LP_PROBATION_ROLLED_BACK);
    assert_int_equal(agt_check_current(f->root, 1, &f->v[1]), 0);
    lp_updater_close(u);
}

static void test_manual_rollback(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    cfg.keep = 3;
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    install(f, u, 1);
    healthy(u);
    install(f, u, 2);
    healthy(u);
    install(f, u, 3);
    healthy(u);
    lp_error err;
    assert_int_equal(lp_updater_rollback(u, 3, NULL, &err), LP_ERR_INVALID_ARG);
    assert_int_equal(lp_updater_rollback(u, 4, NULL, &err), LP_ERR_NOT_FOUND);
    /* Back two releases, to a kept one that is not `previous`. */
    assert_int_equal(lp_updater_rollback(u, 1, "operator: v3 breaks the printer", &err), LP_OK);
    assert_int_equal(agt_check_current(f->root, 1, &f->v[1]), 0);
    lp_updater_status s = status(u);
    assert_int_equal(s.current, 1);
    assert_int_equal(s.previous, 0);
    assert_false(s.on_probation);
    assert_string_equal(bad_entry(&s, 3)->reason, "operator: v3 breaks the printer");
    assert_null(s.last_error); /* asked for: not an error */
    lp_updater_status_free(&s);
    /* No previous: the newest installed release that is not bad. */
    assert_int_equal(lp_updater_rollback(u, 0, NULL, &err), LP_OK);
    assert_int_equal(agt_check_current(f->root, 2, &f->v[2]), 0);
    s = status(u);
    assert_string_equal(bad_entry(&s, 1)->reason, "rolled back by request");
    lp_updater_status_free(&s);
    /* Nothing left that is not bad. */
    assert_int_equal(lp_updater_rollback(u, 0, NULL, &err), LP_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "no release to roll back to"));
    lp_updater_close(u);
}

static void test_keep_n(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg); /* keep: default 2 */
    assert_non_null(u);
    for (uint64_t id = 1; id <= 3; id++) {
        install(f, u, id);
        healthy(u);
    }
    lp_updater_status s = status(u);
    assert_int_equal(s.release_count, 2);
    assert_true(installed(&s, 2) && installed(&s, 3));
    lp_updater_status_free(&s);
    char *r1 = lp_test_join(f->root, "releases/1");
    char *m1 = lp_test_join(f->root, ".livepush/manifests/1.json");
    char *trash = lp_test_join(f->root, ".livepush/trash");
    assert_false(lp_file_exists(r1));
    assert_false(lp_file_exists(m1));
    assert_int_equal(agt_count_entries(trash), 0);
    /* The kept one still works as a hard-link source and rollback target. */
    char *r2 = lp_test_join(f->root, "releases/2");
    assert_int_equal(agt_check_tree(r2, &f->v[2]), 0);

    /* 4 rolled back (bad), then 4 is deleted before any good release. */
    install(f, u, 4);
    lp_error err;
    assert_int_equal(lp_updater_rollback(u, 0, "broken", &err), LP_OK);
    s = status(u);
    assert_int_equal(s.current, 3);
    assert_true(installed(&s, 4)); /* 2 was deleted when 4 came: 3 was previous */
    lp_updater_status_free(&s);
    lp_updater_close(u);

    /* keep 1: never the current or previous one. */
    lp_test_rmtree(f->root);
    cfg.keep = 1;
    u = agt_open(&cfg);
    install(f, u, 1);
    install(f, u, 2);
    s = status(u);
    assert_int_equal(s.release_count, 2); /* 2 on probation, 1 previous */
    lp_updater_status_free(&s);
    healthy(u);
    assert_int_equal(lp_updater_prune(u, &err), LP_OK);
    s = status(u);
    assert_int_equal(s.release_count, 2); /* 1 is still previous */
    lp_updater_status_free(&s);
    install(f, u, 3);
    healthy(u);
    s = status(u);
    assert_int_equal(s.release_count, 2);
    assert_true(installed(&s, 2) && installed(&s, 3));
    lp_updater_status_free(&s);
    free(r1);
    free(r2);
    free(m1);
    free(trash);
    lp_updater_close(u);
}

static void test_bad_pruned_first(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    install(f, u, 1);
    healthy(u);
    install(f, u, 2);
    lp_error err;
    assert_int_equal(lp_updater_rollback(u, 0, "crashes", &err), LP_OK);
    assert_int_equal(lp_updater_stage(u, &f->v[3], 3, NULL, agt_fetch, &f->src, NULL, &err),
                     LP_OK);
    assert_int_equal(lp_updater_activate(u, 3, &err), LP_OK);
    lp_updater_status s = status(u);
    assert_int_equal(s.release_count, 2);
    assert_true(installed(&s, 1) && installed(&s, 3));
    assert_non_null(bad_entry(&s, 2)); /* remembered after its folder is gone */
    lp_updater_status_free(&s);
    lp_updater_close(u);
}

static void test_two_handles(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *agent = agt_open(&cfg);
    lp_updater *app = agt_open(&cfg);
    assert_non_null(agent);
    assert_non_null(app);
    assert_string_equal(lp_updater_device_id(agent), lp_updater_device_id(app));
    install(f, agent, 1);
    install(f, agent, 2);
    lp_error err;
    lp_probation_outcome out;
    assert_int_equal(lp_updater_launch(app, time(NULL), &out, &err), LP_OK);
    assert_int_equal(out, LP_PROBATION_PENDING);
    lp_updater_status s = status(agent);
    assert_int_equal(s.probation_launches, 1);
    lp_updater_status_free(&s);
    assert_int_equal(lp_updater_mark_healthy(app, 2, &err), LP_OK);
    s = status(agent);
    assert_false(s.on_probation);
    lp_updater_status_free(&s);
    lp_updater_close(app);
    lp_updater_close(agent);
}

static void test_recover_from_hand_changes(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    cfg.keep = 3;
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    install(f, u, 1);
    healthy(u);
    install(f, u, 2);
    healthy(u);
    install(f, u, 3);
    healthy(u);
    lp_updater_close(u);

    /* Someone points `current` at release 1 and deletes release 2. */
    char *tmp = lp_test_join(f->root, "tmp-link");
    char *cur = lp_test_join(f->root, "current");
    char *r2 = lp_test_join(f->root, "releases/2");
    assert_int_equal(symlink("releases/1", tmp), 0);
    assert_int_equal(rename(tmp, cur), 0);
    assert_int_equal(lp_test_rmtree(r2), 0);
    u = agt_open(&cfg);
    assert_non_null(u);
    lp_updater_status s = status(u);
    assert_int_equal(s.current, 1);
    assert_int_equal(s.previous, 3);
    assert_true(s.on_probation); /* adopted, with a way back */
    assert_false(installed(&s, 2));
    assert_int_equal(s.release_count, 2);
    lp_updater_status_free(&s);

    /* A release folder nobody listed is adopted (and then kept or pruned). */
    char *r4 = lp_test_join(f->root, "releases/4");
    assert_int_equal(lp_file_mkdirs(r4, 0755, NULL), LP_OK);
    lp_updater_close(u);
    u = agt_open(&cfg);
    s = status(u);
    assert_true(installed(&s, 4));
    assert_string_equal(s.releases[s.release_count - 1].version, "4");
    lp_updater_status_free(&s);

    /* `current` pointing outside releases/ is refused at open. */
    lp_updater_close(u);
    assert_int_equal(symlink("/etc", tmp), 0);
    assert_int_equal(rename(tmp, cur), 0);
    lp_error err;
    assert_int_equal(lp_updater_open(&cfg, &u, &err), LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "not to releases/<id>"));
    assert_int_equal(symlink("releases/9", tmp), 0);
    assert_int_equal(rename(tmp, cur), 0);
    assert_int_equal(lp_updater_open(&cfg, &u, &err), LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "releases/9, which does not exist"));
    free(tmp);
    free(cur);
    free(r2);
    free(r4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_probation_and_healthy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_launch_limit_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manual_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_n, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_pruned_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_handles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_from_hand_changes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
