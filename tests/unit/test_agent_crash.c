/*
 * test_agent_crash.c — the updater killed with SIGKILL at every step.
 *
 * For every crash point in the table (lp_agent_crash_points) and every time
 * it is reached in a run ("point@1", "point@2", ... until a run finishes
 * without reaching it), a child process runs one operation with crash_at
 * set and dies by SIGKILL at that exact step.  The parent then reopens the
 * install root (recovery) and checks:
 *   - `current` is exactly the old or the new release, file by file against
 *     its manifest, and every release state.json lists matches its manifest;
 *   - state.json agrees with the symlink (current, probation, bad list);
 *   - nothing is left over: staging/, trash/, temporary files, the
 *     temporary symlink, manifests of releases not installed;
 *   - running the operation again finishes cleanly.
 * Two operations: an update (stage release 3 over 2 — reusing, copying and
 * fetching files — activate it, prune release 1) and a rollback (from 3 on
 * probation back to 2).  A point listed for an operation must be reached by
 * it (the first run must die); a point not listed must not be.
 */
#include "agenttest.h"
#include "testutil.h"

#include "agent/agent.h"
#include "core/file.h"

#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_OCCURRENCES 64

typedef struct fixture {
    char *dir;
    char *root;
    lp_blobstore *bs;
    agt_source src;
    lp_manifest rel[4]; /* rel[1..3] */
    unsigned runs, crashes;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = lp_test_tmpdir("agent-crash");
    f->root = lp_test_join(f->dir, "root");
    char *blobs = lp_test_join(f->dir, "blobs");
    lp_error err;
    int rc = lp_blobstore_open(blobs, &f->bs, &err) == LP_OK ? 0 : -1;
    free(blobs);
    f->src.bs = f->bs;
    const agt_entry r1[] = {
        {"app", "zero\n", 0755, NULL},
        {"lib/common", "shared\n", 0644, NULL},
    };
    const agt_entry r2[] = {
        {"app", "one\n", 0755, NULL},
        {"empty", NULL, 0, NULL},
        {"lib/common", "shared\n", 0644, NULL},
        {"lib/link", NULL, 0, "common"},
    };
    /* 3: app and data fetched, lib/common linked, tool copied (same
     * content as lib/common, another mode), a new folder and symlinks. */
    const agt_entry r3[] = {
        {"app", "two\n", 0755, NULL},
        {"data", "new data\n", 0644, NULL},
        {"empty", NULL, 0, NULL},
        {"lib/common", "shared\n", 0644, NULL},
        {"lib/link", NULL, 0, "common"},
        {"lib/more/link2", NULL, 0, "../common"},
        {"tool", "shared\n", 0755, NULL},
    };
    if (rc == 0)
        rc = agt_make_release(f->bs, r1, N(r1), &f->rel[1]);
    if (rc == 0)
        rc = agt_make_release(f->bs, r2, N(r2), &f->rel[2]);
    if (rc == 0)
        rc = agt_make_release(f->bs, r3, N(r3), &f->rel[3]);
    *state = f;
    return rc;
}

static int teardown(void **state)
{
    fixture *f = *state;
    for (int i = 1; i <= 3; i++)
        lp_manifest_free(&f->rel[i]);
    lp_blobstore_close(f->bs);
    lp_test_rmtree(f->dir);
    free(f->root);
    free(f->dir);
    free(f);
    return 0;
}

typedef enum scenario { UPDATE, ROLLBACK } scenario;

/* The state before the operation: 1 and 2 installed, 2 current and healthy
 * (update); or then 3 current on probation (rollback). */
static int prepare(fixture *f, scenario sc)
{
    if (lp_test_rmtree(f->root) != 0)
        return -1;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    if (!u)
        return -1;
    lp_error err;
    int rc = 0;
    for (uint64_t id = 1; rc == 0 && id <= (sc == UPDATE ? 2u : 3u); id++) {
        char label[8];
        snprintf(label, sizeof label, "v%llu", (unsigned long long)id);
        rc = agt_install(u, &f->rel[id], id, label, &f->src);
        if (rc == 0 && id < 3 && lp_updater_mark_healthy(u, id, &err))
            rc = -1;
    }
    lp_updater_close(u);
    return rc;
}

/* The operation, as the child runs it: 0 done, else failed. */
static int operate(fixture *f, scenario sc, const char *crash_at)
{
    lp_updater_config cfg = agt_config(f->root);
    cfg.crash_at = crash_at;
    lp_updater *u = agt_open(&cfg);
    if (!u)
        return 1;
    lp_error err;
    lp_status st = LP_OK;
    if (sc == UPDATE) {
        lp_stage_opts opts = {.version = "v3"};
        st = lp_updater_stage(u, &f->rel[3], 3, &opts, agt_fetch, &f->src, NULL, &err);
        if (st == LP_ERR_EXISTS)
            st = LP_OK;
        if (!st)
            st = lp_updater_activate(u, 3, &err);
    } else {
        lp_updater_status s;
        st = lp_updater_status_get(u, &s, &err);
        if (!st && s.current == 3)
            st = lp_updater_rollback(u, 0, "crash test", &err);
        lp_updater_status_free(&s);
    }
    if (st)
        fprintf(stderr, "operation (crash_at %s): %s\n", crash_at ? crash_at : "-", err.msg);
    lp_updater_close(u);
    return st ? 1 : 0;
}

static bool listed(const lp_updater_status *s, uint64_t id)
{
    for (size_t i = 0; i < s->release_count; i++)
        if (s->releases[i].id == id)
            return true;
    return false;
}

static bool is_bad(const lp_updater_status *s, uint64_t id)
{
    for (size_t i = 0; i < s->bad_count; i++)
        if (s->bad[i].id == id)
            return true;
    return false;
}

/* Nothing left over by the interrupted operation. */
static void check_clean(fixture *f, const lp_updater_status *s, const char *label)
{
    char *p;
    p = lp_test_join(f->root, ".livepush/staging");
    if (agt_count_entries(p) != 0)
        fail_msg("%s: staging/ not empty after recovery", label);
    free(p);
    p = lp_test_join(f->root, ".livepush/trash");
    if (agt_count_entries(p) != 0)
        fail_msg("%s: trash/ not empty after recovery", label);
    free(p);
    p = lp_test_join(f->root, ".current.new");
    if (lp_file_exists(p))
        fail_msg("%s: temporary symlink left", label);
    free(p);
    p = lp_test_join(f->root, ".livepush");
    DIR *d = opendir(p);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp-"))
            fail_msg("%s: temporary file .livepush/%s left", label, de->d_name);
    closedir(d);
    free(p);
    p = lp_test_join(f->root, ".livepush/manifests");
    /* Each installed release has its manifest and its record of checked
     * files (<id>.json, <id>.checked), and nothing else is left. */
    if (agt_count_entries(p) != 2 * (int)s->release_count)
        fail_msg("%s: %d manifests and records for %zu installed releases", label,
                 agt_count_entries(p), s->release_count);
    free(p);
    p = lp_test_join(f->root, "releases");
    if (agt_count_entries(p) != (int)s->release_count)
        fail_msg("%s: %d release folders for %zu listed releases", label, agt_count_entries(p),
                 s->release_count);
    free(p);
}

/* After recovery: old or new, consistent, clean.  Returns the current id. */
static uint64_t check_recovered(fixture *f, scenario sc, const char *label)
{
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    if (!u)
        fail_msg("%s: reopening failed", label);
    lp_updater_status s;
    lp_error err;
    assert_int_equal(lp_updater_status_get(u, &s, &err), LP_OK);
    lp_updater_close(u);
    uint64_t old = sc == UPDATE ? 2 : 3, new = sc == UPDATE ? 3 : 2;
    if (s.current != old && s.current != new)
        fail_msg("%s: current is %llu, neither %llu nor %llu", label,
                 (unsigned long long)s.current, (unsigned long long)old,
                 (unsigned long long)new);
    if (agt_check_current(f->root, s.current, &f->rel[s.current]) != 0)
        fail_msg("%s: current release %llu does not match its manifest", label,
                 (unsigned long long)s.current);
    for (size_t i = 0; i < s.release_count; i++) {
        uint64_t id = s.releases[i].id;
        char rel[32];
        snprintf(rel, sizeof rel, "releases/%llu", (unsigned long long)id);
        char *p = lp_test_join(f->root, rel);
        if (id < 1 || id > 3 || agt_check_tree(p, &f->rel[id]) != 0)
            fail_msg("%s: installed release %llu does not match its manifest", label,
                     (unsigned long long)id);
        free(p);
    }
    if (sc == UPDATE) {
        if (is_bad(&s, 3) || s.bad_count)
            fail_msg("%s: a release was marked bad", label);
        if (s.current == 3 && !(s.on_probation && s.previous == 2))
            fail_msg("%s: 3 current but not on probation after 2", label);
        if (s.current == 2 && (s.on_probation || s.previous != 1))
            fail_msg("%s: 2 current but state changed (probation %d, previous %llu)", label,
                     s.on_probation, (unsigned long long)s.previous);
        if (!listed(&s, 2) || (s.current == 3 && !listed(&s, 3)))
            fail_msg("%s: a release in use is not listed", label);
    } else {
        if (s.current == 3 && (!s.on_probation || is_bad(&s, 3)))
            fail_msg("%s: 3 still current but its probation or bad mark changed", label);
        if (s.current == 2 && (s.on_probation || !is_bad(&s, 3) || s.previous != 0))
            fail_msg("%s: rolled back to 2 but state incomplete", label);
        if (!listed(&s, 2) || !listed(&s, 3))
            fail_msg("%s: a release was lost", label);
    }
    check_clean(f, &s, label);
    uint64_t cur = s.current;
    lp_updater_status_free(&s);
    return cur;
}

/* Runs the operation again without crashing and checks the end state. */
static void finish_again(fixture *f, scenario sc, const char *label)
{
    if (operate(f, sc, NULL) != 0)
        fail_msg("%s: running the operation again failed", label);
    uint64_t want = sc == UPDATE ? 3 : 2;
    if (check_recovered(f, sc, label) != want)
        fail_msg("%s: the operation run again did not end on release %llu", label,
                 (unsigned long long)want);
    if (sc == UPDATE) {
        char *r1 = lp_test_join(f->root, "releases/1");
        if (lp_file_exists(r1))
            fail_msg("%s: release 1 not pruned", label);
        free(r1);
    }
}

/* One run with crash_at; true if the child died at the point. */
static bool crash_run(fixture *f, scenario sc, const char *crash_at)
{
    if (prepare(f, sc) != 0)
        fail_msg("%s: preparing the install root failed", crash_at);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(operate(f, sc, crash_at));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    f->runs++;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
        f->crashes++;
        return true;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s: the operation failed without crashing (status 0x%x)", crash_at, status);
    return false;
}

static void every_point(fixture *f, scenario sc)
{
    size_t n;
    const lp_crash_point_info *pts = lp_agent_crash_points(&n);
    unsigned flag = sc == UPDATE ? LP_CRASH_IN_UPDATE : LP_CRASH_IN_ROLLBACK;
    for (size_t i = 0; i < n; i++) {
        bool expected = (pts[i].scenarios & flag) != 0;
        unsigned k;
        for (k = 1; k <= MAX_OCCURRENCES; k++) {
            char label[128];
            snprintf(label, sizeof label, "%s@%u", pts[i].name, k);
            bool crashed = crash_run(f, sc, label);
            if (k == 1 && crashed != expected)
                fail_msg("%s: %s in the %s run", pts[i].name,
                         crashed ? "reached but not listed" : "listed but not reached",
                         sc == UPDATE ? "update" : "rollback");
            check_recovered(f, sc, label);
            if (!crashed)
                break; /* the run finished: every occurrence is covered */
            finish_again(f, sc, label);
        }
        if (k > MAX_OCCURRENCES)
            fail_msg("%s: reached more than %d times", pts[i].name, MAX_OCCURRENCES);
    }
    fprintf(stderr, "%s: %u runs, %u killed at a crash point\n",
            sc == UPDATE ? "update" : "rollback", f->runs, f->crashes);
}

static void test_crash_during_update(void **state)
{
    every_point(*state, UPDATE);
}

static void test_crash_during_rollback(void **state)
{
    every_point(*state, ROLLBACK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_crash_during_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_during_rollback, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
