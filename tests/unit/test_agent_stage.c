/*
 * test_agent_stage.c — staging releases into a real install root from a
 * real blob store: a first install, unchanged files hard-linked (same
 * inode), equal contents inside one release fetched once, a mode change
 * copied rather than linked, tampered blobs refused and deleted, the
 * free-space check (with a reserve, and on a real 1 MiB tmpfs when mount
 * namespaces are available), no blob source, progress, and the staging
 * lock keeping recovery in another handle away from a staging in progress.
 */
#include "agenttest.h"
#include "testutil.h"

#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

static const agt_entry V1[] = {
    {"README", "readme\n", 0644, NULL},
    {"bin/app", "app v1\n", 0755, NULL},
    {"empty", NULL, 0, NULL},
    {"lib/data.txt", "data\n", 0644, NULL},
    {"lib/link", NULL, 0, "data.txt"},
};
static const agt_entry V2[] = {
    {"README", "readme\n", 0644, NULL},
    {"bin/app", "app v2\n", 0755, NULL},
    {"empty", NULL, 0, NULL},
    {"lib/data.txt", "data\n", 0644, NULL},
    {"lib/link", NULL, 0, "data.txt"},
};
#define N(a) (sizeof(a) / sizeof((a)[0]))

typedef struct fixture {
    char *dir;
    char *root;
    lp_blobstore *bs;
    agt_source src;
    lp_manifest v1, v2;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = lp_test_tmpdir("agent-stage");
    f->root = lp_test_join(f->dir, "root");
    char *blobs = lp_test_join(f->dir, "blobs");
    lp_error err;
    int rc = lp_blobstore_open(blobs, &f->bs, &err) == LP_OK ? 0 : -1;
    free(blobs);
    if (rc == 0)
        rc = agt_make_release(f->bs, V1, N(V1), &f->v1);
    if (rc == 0)
        rc = agt_make_release(f->bs, V2, N(V2), &f->v2);
    f->src.bs = f->bs;
    *state = f;
    return rc;
}

static int teardown(void **state)
{
    fixture *f = *state;
    lp_manifest_free(&f->v1);
    lp_manifest_free(&f->v2);
    lp_blobstore_close(f->bs);
    lp_test_rmtree(f->dir);
    free(f->root);
    free(f->dir);
    free(f);
    return 0;
}

static char *rpath(const fixture *f, const char *rel)
{
    return lp_test_join(f->root, rel);
}

static ino_t inode_of(const fixture *f, const char *rel)
{
    char *p = rpath(f, rel);
    struct stat sb;
    assert_int_equal(lstat(p, &sb), 0);
    free(p);
    return sb.st_ino;
}

static void assert_staging_empty(const fixture *f)
{
    char *p = rpath(f, ".livepush/staging");
    assert_int_equal(agt_count_entries(p), 0);
    free(p);
}

static void test_first_install(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    lp_error err;
    lp_stage_stats stats;
    lp_stage_opts opts = {.version = "v1"};
    assert_int_equal(lp_updater_stage(u, &f->v1, 1, &opts, agt_fetch, &f->src, &stats, &err),
                     LP_OK);
    assert_int_equal(stats.files, 3);
    assert_int_equal(stats.files_fetched, 3);
    assert_int_equal(stats.files_linked, 0);
    assert_int_equal(stats.bytes_fetched, lp_manifest_total_size(&f->v1));
    assert_true(stats.bytes_needed > stats.bytes_fetched);
    assert_int_equal(f->src.fetches, 3);

    char *rel = rpath(f, "releases/1");
    assert_int_equal(agt_check_tree(rel, &f->v1), 0);
    free(rel);
    char *cur = rpath(f, "current");
    assert_false(lp_file_exists(cur)); /* staging never switches */
    char *man = rpath(f, ".livepush/manifests/1.json");
    size_t len;
    char *json = (char *)lp_test_read_file(man, &len);
    assert_non_null(json);
    lp_manifest back;
    assert_int_equal(lp_manifest_from_json(json, len, &back, &err), LP_OK);
    assert_int_equal(back.count, f->v1.count);
    lp_manifest_free(&back);
    free(json);
    free(man);
    assert_staging_empty(f);

    lp_updater_status s;
    assert_int_equal(lp_updater_status_get(u, &s, &err), LP_OK);
    assert_int_equal(s.current, 0);
    assert_int_equal(s.release_count, 1);
    assert_int_equal(s.releases[0].id, 1);
    assert_string_equal(s.releases[0].version, "v1");
    lp_updater_status_free(&s);

    /* Staging it again is refused; nothing changes. */
    assert_int_equal(lp_updater_stage(u, &f->v1, 1, NULL, agt_fetch, &f->src, NULL, &err),
                     LP_ERR_EXISTS);
    assert_non_null(strstr(err.msg, "already installed"));

    assert_int_equal(lp_updater_activate(u, 1, &err), LP_OK);
    assert_int_equal(agt_check_current(f->root, 1, &f->v1), 0);
    assert_int_equal(lp_updater_status_get(u, &s, &err), LP_OK);
    assert_int_equal(s.current, 1);
    assert_false(s.on_probation); /* nothing to go back to */
    lp_updater_status_free(&s);
    free(cur);
    lp_updater_close(u);
}

static void test_unchanged_files_are_hardlinked(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    assert_int_equal(agt_install(u, &f->v1, 1, "v1", &f->src), 0);
    f->src.fetches = 0;
    lp_error err;
    lp_stage_stats stats;
    assert_int_equal(lp_updater_stage(u, &f->v2, 2, NULL, agt_fetch, &f->src, &stats, &err),
                     LP_OK);
    assert_int_equal(stats.files_fetched, 1);
    assert_int_equal(stats.files_linked, 2);
    assert_int_equal(stats.files_copied, 0);
    assert_int_equal(f->src.fetches, 1);
    assert_int_equal(inode_of(f, "releases/1/README"), inode_of(f, "releases/2/README"));
    assert_int_equal(inode_of(f, "releases/1/lib/data.txt"),
                     inode_of(f, "releases/2/lib/data.txt"));
    assert_int_not_equal(inode_of(f, "releases/1/bin/app"), inode_of(f, "releases/2/bin/app"));
    char *r1 = rpath(f, "releases/1"), *r2 = rpath(f, "releases/2");
    assert_int_equal(agt_check_tree(r1, &f->v1), 0);
    assert_int_equal(agt_check_tree(r2, &f->v2), 0);
    free(r1);
    free(r2);
    lp_updater_status s;
    assert_int_equal(lp_updater_status_get(u, &s, &err), LP_OK);
    assert_int_equal(s.release_count, 2);
    assert_string_equal(s.releases[1].version, "2"); /* no label given: the id */
    lp_updater_status_free(&s);
    lp_updater_close(u);
}

static void test_equal_contents_and_modes(void **state)
{
    fixture *f = *state;
    /* Three files with one content in a first release: fetched once. */
    static const agt_entry A[] = {
        {"a", "same\n", 0644, NULL},
        {"b", "same\n", 0644, NULL},
        {"x", "same\n", 0755, NULL},
    };
    /* The next release: the content again under 0644 (linked) and 0755
     * (linked from x), plus under a new name with 0755 only from 0644 files
     * in a release without x: copied. */
    static const agt_entry B[] = {
        {"c", "same\n", 0644, NULL},
        {"d", "same\n", 0755, NULL},
    };
    static const agt_entry C[] = {
        {"e", "same\n", 0755, NULL},
    };
    lp_manifest a, b, c;
    assert_int_equal(agt_make_release(f->bs, A, N(A), &a), 0);
    assert_int_equal(agt_make_release(f->bs, B, N(B), &b), 0);
    assert_int_equal(agt_make_release(f->bs, C, N(C), &c), 0);
    lp_updater_config cfg = agt_config(f->root);
    cfg.keep = 5;
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    lp_error err;
    lp_stage_stats st;
    assert_int_equal(lp_updater_stage(u, &a, 1, NULL, agt_fetch, &f->src, &st, &err), LP_OK);
    assert_int_equal(st.files_fetched, 1);
    assert_int_equal(st.files_linked, 1); /* b from a */
    assert_int_equal(st.files_copied, 1); /* x: another mode */
    assert_int_equal(inode_of(f, "releases/1/a"), inode_of(f, "releases/1/b"));
    assert_int_not_equal(inode_of(f, "releases/1/a"), inode_of(f, "releases/1/x"));

    assert_int_equal(lp_updater_stage(u, &b, 2, NULL, agt_fetch, &f->src, &st, &err), LP_OK);
    assert_int_equal(st.files_fetched, 0);
    assert_int_equal(st.files_linked, 2);
    assert_int_equal(inode_of(f, "releases/2/d"), inode_of(f, "releases/1/x"));

    /* Without any blob source: everything comes from installed releases. */
    assert_int_equal(lp_updater_stage(u, &c, 3, NULL, NULL, NULL, &st, &err), LP_OK);
    assert_int_equal(st.files_linked, 1);
    char *r = rpath(f, "releases/1");
    assert_int_equal(agt_check_tree(r, &a), 0); /* modes of shared inodes intact */
    free(r);
    r = rpath(f, "releases/2");
    assert_int_equal(agt_check_tree(r, &b), 0);
    free(r);

    /* A content nobody has, and no blob source. */
    assert_int_equal(lp_updater_stage(u, &f->v1, 4, NULL, NULL, NULL, &st, &err),
                     LP_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "no blob source"));
    char *r4 = rpath(f, "releases/4");
    assert_false(lp_file_exists(r4));
    free(r4);
    assert_staging_empty(f);
    lp_updater_close(u);
    lp_manifest_free(&a);
    lp_manifest_free(&b);
    lp_manifest_free(&c);
}

static void tampered(void **state, agt_tamper how, lp_status expect)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    assert_int_equal(agt_install(u, &f->v1, 1, "v1", &f->src), 0);
    const lp_manifest_entry *app = lp_manifest_find(&f->v2, "bin/app");
    memcpy(f->src.tamper_sha, app->sha256, LP_BLOB_ID_SIZE);
    f->src.tamper = how;
    lp_error err;
    assert_int_equal(lp_updater_stage(u, &f->v2, 2, NULL, agt_fetch, &f->src, NULL, &err),
                     expect);
    assert_non_null(strstr(err.msg, "bin/app"));
    assert_non_null(strstr(err.msg, app->sha256));
    assert_non_null(strstr(err.msg, "staging release 2"));
    char *r2 = rpath(f, "releases/2");
    assert_false(lp_file_exists(r2));
    free(r2);
    assert_staging_empty(f);
    assert_int_equal(agt_check_current(f->root, 1, &f->v1), 0);
    lp_updater_status s;
    assert_int_equal(lp_updater_status_get(u, &s, &err), LP_OK);
    assert_int_equal(s.release_count, 1);
    lp_updater_status_free(&s);
    char *m2 = rpath(f, ".livepush/manifests/2.json");
    assert_false(lp_file_exists(m2));
    free(m2);

    /* The honest source afterwards: it installs. */
    f->src.tamper = AGT_TAMPER_NONE;
    assert_int_equal(lp_updater_stage(u, &f->v2, 2, NULL, agt_fetch, &f->src, NULL, &err),
                     LP_OK);
    lp_updater_close(u);
}

static void test_tampered_content(void **state)
{
    tampered(state, AGT_TAMPER_FLIP, LP_ERR_HASH_MISMATCH);
}

static void test_tampered_length(void **state)
{
    tampered(state, AGT_TAMPER_APPEND, LP_ERR_LENGTH_MISMATCH);
}

static void test_free_space_reserve(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    cfg.reserve_bytes = 1ull << 62; /* more than any disk has */
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    lp_error err;
    assert_int_equal(lp_updater_stage(u, &f->v1, 1, NULL, agt_fetch, &f->src, NULL, &err),
                     LP_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "needs "));
    assert_non_null(strstr(err.msg, " free on the file system of "));
    assert_non_null(strstr(err.msg, f->root));
    assert_int_equal(f->src.fetches, 0);
    assert_staging_empty(f);
    char *r1 = rpath(f, "releases/1");
    assert_false(lp_file_exists(r1));
    free(r1);
    lp_updater_close(u);
}

/* In a child with its own mount namespace: a 1 MiB tmpfs as the install
 * root.  Exit 0: as expected; 77: no mount namespace here; else failure. */
static int tmpfs_child(fixture *f)
{
    if (unshare(CLONE_NEWNS) != 0) {
        uid_t uid = getuid();
        gid_t gid = getgid();
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
            return 77;
        char map[64];
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        if (lp_test_write_str("/proc/self/setgroups", "deny") != 0)
            return 77;
        int fd = open("/proc/self/uid_map", O_WRONLY);
        if (fd < 0 || write(fd, map, strlen(map)) < 0)
            return 77;
        close(fd);
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        fd = open("/proc/self/gid_map", O_WRONLY);
        if (fd < 0 || write(fd, map, strlen(map)) < 0)
            return 77;
        close(fd);
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return 77;
    if (mkdir(f->root, 0755) != 0 || mount("tmpfs", f->root, "tmpfs", 0, "size=1m") != 0)
        return 77;

    char *big = malloc(2u << 20);
    memset(big, 'x', 2u << 20);
    big[(2u << 20) - 1] = 0;
    const agt_entry BIG[] = {{"big", big, 0644, NULL}};
    lp_manifest m;
    if (agt_make_release(f->bs, BIG, 1, &m) != 0)
        return 2;
    lp_updater_config cfg = agt_config(f->root);
    cfg.reserve_bytes = 4096;
    lp_updater *u = agt_open(&cfg);
    if (!u)
        return 3;
    lp_error err;
    lp_status st = lp_updater_stage(u, &m, 1, NULL, agt_fetch, &f->src, NULL, &err);
    fprintf(stderr, "tmpfs: %s\n", err.msg);
    int rc = 0;
    if (st != LP_ERR_TOO_LARGE || !strstr(err.msg, "free on the file system of") ||
        f->src.fetches != 0)
        rc = 4;
    /* A release that fits is staged on the same file system. */
    if (rc == 0 && lp_updater_stage(u, &f->v1, 2, NULL, agt_fetch, &f->src, NULL, &err)) {
        fprintf(stderr, "small release: %s\n", err.msg);
        rc = 5;
    }
    lp_updater_close(u);
    lp_manifest_free(&m);
    free(big);
    umount(f->root);
    return rc;
}

static void test_free_space_tmpfs(void **state)
{
    fixture *f = *state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(tmpfs_child(f));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        fprintf(stderr, "no mount namespace for a small tmpfs: skipping (the reserve test "
                        "covers the check)\n");
        skip();
    }
    assert_int_equal(WEXITSTATUS(status), 0);
}

typedef struct progress_log {
    unsigned calls;
    uint64_t last_done, total;
    bool monotonic;
} progress_log;

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    progress_log *p = ctx;
    if (done < p->last_done || done > total)
        p->monotonic = false;
    p->calls++;
    p->last_done = done;
    p->total = total;
}

static void test_progress(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    progress_log p = {.monotonic = true};
    lp_stage_opts opts = {.progress = on_progress, .progress_ctx = &p};
    lp_error err;
    assert_int_equal(lp_updater_stage(u, &f->v1, 1, &opts, agt_fetch, &f->src, NULL, &err),
                     LP_OK);
    assert_int_equal(p.calls, 3);
    assert_true(p.monotonic);
    assert_int_equal(p.last_done, lp_manifest_total_size(&f->v1));
    assert_int_equal(p.total, lp_manifest_total_size(&f->v1));

    /* Bad arguments. */
    lp_stage_opts bad = {.version = "v\n2"};
    assert_int_equal(lp_updater_stage(u, &f->v2, 2, &bad, agt_fetch, &f->src, NULL, &err),
                     LP_ERR_INVALID_ARG);
    assert_int_equal(lp_updater_stage(u, &f->v2, 0, NULL, agt_fetch, &f->src, NULL, &err),
                     LP_ERR_INVALID_ARG);
    lp_manifest unfinished;
    lp_manifest_init(&unfinished);
    assert_int_equal(lp_updater_stage(u, &unfinished, 3, NULL, agt_fetch, &f->src, NULL, &err),
                     LP_ERR_INVALID_ARG);
    lp_updater_close(u);
}

static void test_staging_lock(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    /* Another process's staging: its lock and its folder. */
    char *lock = rpath(f, ".livepush/stage.lock");
    int fd = open(lock, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
    char *busy = rpath(f, ".livepush/staging/7/file");
    assert_int_equal(lp_test_write_str(busy, "in progress"), 0);

    lp_error err;
    assert_int_equal(lp_updater_stage(u, &f->v1, 1, NULL, agt_fetch, &f->src, NULL, &err),
                     LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "another staging"));
    lp_updater *u2 = agt_open(&cfg); /* recovery leaves the busy folder alone */
    assert_non_null(u2);
    lp_updater_close(u2);
    assert_true(lp_file_exists(busy));

    flock(fd, LOCK_UN);
    close(fd);
    u2 = agt_open(&cfg); /* now it is a leftover */
    assert_non_null(u2);
    lp_updater_close(u2);
    assert_false(lp_file_exists(busy));
    assert_staging_empty(f);
    assert_int_equal(lp_updater_stage(u, &f->v1, 1, NULL, agt_fetch, &f->src, NULL, &err),
                     LP_OK);
    free(busy);
    free(lock);
    lp_updater_close(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_install, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unchanged_files_are_hardlinked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_equal_contents_and_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_space_reserve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_space_tmpfs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staging_lock, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
