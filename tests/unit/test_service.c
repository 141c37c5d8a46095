/*
 * test_service.c — the server's service layer on a real data folder: first
 * start, app creation, publish, refusal, rollback, racing publishers,
 * recovery after the database and the TUF repository disagree, and the
 * re-signing that keeps metadata from expiring.
 *
 * Every check on the repository goes through the real TUF client reading
 * the repository over file:// URLs, so "listed" means "a device would see
 * and verify it".
 */
#include "livepush/db.h"
#include "livepush/tuf.h"
#include "livepush/tuf_repo.h"
#include "server/service.h"
#include "testdb.h"
#include "testutil.h"

#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct fx {
    char *dir;  /* temp folder */
    char *data; /* <dir>/data */
    lp_testdb *tdb; /* the PostgreSQL schema when LP_TEST_PG_URL is set (testdb.h) */
    lp_service *svc;
} fx;

/* The database of the service: <data>/livepush.db, or the test's schema. */
static const char *db_url(fx *f, char *buf, size_t cap)
{
    if (f->tdb)
        return f->tdb->url;
    snprintf(buf, cap, "sqlite:%s/livepush.db", f->data);
    return buf;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = lp_test_tmpdir("service");
    f->data = lp_test_join(f->dir, "data");
    if (lp_testdb_is_pg())
        assert_non_null(f->tdb = lp_testdb_new(f->dir, "unused"));
    lp_service_options o = {.data_dir = f->data, .db_connections = 4,
                            .db_url = f->tdb ? f->tdb->url : NULL};
    lp_error err;
    lp_error_clear(&err);
    if (lp_service_open(&f->svc, &o, &err)) {
        fprintf(stderr, "open: %s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    lp_service_close(f->svc);
    lp_testdb_free(f->tdb);
    lp_test_rmtree(f->dir);
    free(f->data);
    free(f->dir);
    free(f);
    return 0;
}

static void reopen(fx *f)
{
    lp_service_close(f->svc);
    f->svc = NULL;
    lp_service_options o = {.data_dir = f->data, .db_url = f->tdb ? f->tdb->url : NULL};
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_service_open(&f->svc, &o, &err);
    if (st)
        fail_msg("reopen: %s", err.msg);
}

/* A folder bundle with one file whose content is `text`. */
static char *make_bundle(fx *f, const char *name, const char *text)
{
    char *b = lp_test_join(f->dir, name);
    char *file = lp_test_join(b, "app/main.txt");
    assert_int_equal(lp_test_write_str(file, text), 0);
    free(file);
    return b;
}

static lp_status publish(fx *f, const char *app, const char *bundle, const char *version,
                         int64_t code, lp_db_release *out, lp_error *err)
{
    lp_release_fields rf = {.version = version, .version_code = code};
    return lp_service_publish(f->svc, app, bundle, NULL, &rf, out, err);
}

/* Refreshes a fresh TUF client from the app's repository (file:// URLs) and
 * returns how many of targets "releases/1.json".."releases/<max>.json" it
 * finds; *custom gets the custom JSON of releases/<want>.json (if found). */
static int count_listed(fx *f, const char *app, int max, int want, char **custom)
{
    char meta[4096], targets[4096], root[4096], cdir[4096];
    snprintf(meta, sizeof meta, "file://%s/repos/%s/metadata", f->data, app);
    snprintf(targets, sizeof targets, "file://%s/repos/%s/targets", f->data, app);
    snprintf(root, sizeof root, "%s/repos/%s/metadata/1.root.json", f->data, app);
    snprintf(cdir, sizeof cdir, "%s/client-%d", f->dir, rand());
    lp_error err;
    lp_error_clear(&err);
    assert_int_equal(lp_tuf_init_trusted_root(cdir, root, &err), LP_OK);
    lp_tuf_client_config cfg = {.metadata_dir = cdir, .metadata_url = meta,
                                .targets_url = targets};
    lp_tuf_client *c = NULL;
    assert_int_equal(lp_tuf_client_open(&c, &cfg, &err), LP_OK);
    lp_status st = lp_tuf_client_refresh(c, NULL, &err);
    if (st)
        fail_msg("refresh: %s", err.msg);
    int n = 0;
    for (int code = 1; code <= max; code++) {
        char name[64];
        snprintf(name, sizeof name, "releases/%d.json", code);
        lp_tuf_target *t = NULL;
        if (lp_tuf_client_find_target(c, name, &t, &err) != LP_OK)
            continue;
        n++;
        char dest[4200];
        snprintf(dest, sizeof dest, "%s/%d.json", cdir, code);
        st = lp_tuf_client_download_target(c, t, dest, &err);
        if (st)
            fail_msg("download %s: %s", name, err.msg);
        if (code == want && custom)
            *custom = strdup(lp_tuf_target_custom_json(t));
        lp_tuf_target_free(t);
    }
    lp_tuf_client_free(c);
    return n;
}

static void test_bootstrap(void **state)
{
    fx *f = *state;
    lp_error err;
    lp_error_clear(&err);
    bool created = false;
    assert_int_equal(lp_service_bootstrap(f->svc, "default", &created, &err), LP_OK);
    assert_true(created);
    char *tok = lp_test_join(f->data, "admin.token");
    struct stat sb;
    assert_int_equal(stat(tok, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    size_t len = 0;
    char *text = (char *)lp_test_read_file(tok, &len);
    assert_non_null(text);
    assert_int_equal(strncmp(text, "lp_", 3), 0);
    /* Second start: nothing new, the token file is unchanged. */
    assert_int_equal(lp_service_bootstrap(f->svc, "default", &created, &err), LP_OK);
    assert_false(created);
    char *again = (char *)lp_test_read_file(tok, &len);
    assert_string_equal(text, again);
    free(again);
    free(text);
    free(tok);
    assert_int_equal(count_listed(f, "default", 3, 0, NULL), 0);
    assert_int_equal(lp_service_app_create(f->svc, "default", &err), LP_ERR_EXISTS);
    assert_int_equal(lp_service_app_create(f->svc, "Bad/Name", &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "Bad/Name"));
}

static void test_publish_refuse_rollback(void **state)
{
    fx *f = *state;
    lp_error err;
    lp_error_clear(&err);
    assert_int_equal(lp_service_app_create(f->svc, "shop", &err), LP_OK);
    char *b1 = make_bundle(f, "b1", "one\n"), *b2 = make_bundle(f, "b2", "two\n");

    lp_db_release r = {0};
    assert_int_equal(publish(f, "shop", b1, "v1", 0, &r, &err), LP_OK);
    assert_int_equal(r.version_code, 1);
    char sha1[65];
    memcpy(sha1, r.manifest_sha256, 65);
    lp_db_release_free(&r);
    lp_release_fields rf = {.version = "v2", .version_code = 10, .platform = "linux",
                            .mandatory = true, .notes = "second"};
    assert_int_equal(lp_service_publish(f->svc, "shop", b2, NULL, &rf, &r, &err), LP_OK);
    assert_int_equal(r.version_code, 10);
    lp_db_release_free(&r);

    char *custom = NULL;
    assert_int_equal(count_listed(f, "shop", 12, 10, &custom), 2);
    json_t *c = json_loads(custom, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(c, "version")), "v2");
    assert_int_equal(json_integer_value(json_object_get(c, "version_code")), 10);
    assert_string_equal(json_string_value(json_object_get(c, "platform")), "linux");
    assert_true(json_is_true(json_object_get(c, "mandatory")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "channels"), 0)),
                        "stable");
    json_decref(c);
    free(custom);

    /* A lower code, a taken version string, an unknown app: refused, and
     * the repository still lists the same two releases. */
    assert_int_equal(publish(f, "shop", b2, "v3", 5, NULL, &err), LP_ERR_ROLLBACK);
    assert_int_equal(publish(f, "shop", b2, "v2", 0, NULL, &err), LP_ERR_EXISTS);
    assert_int_equal(publish(f, "nosuch", b2, "v9", 0, NULL, &err), LP_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "nosuch"));

    /* A bundle that escapes its root through a symlink is refused, naming it. */
    char *bad = lp_test_join(f->dir, "bad");
    char *inner = lp_test_join(bad, "x");
    assert_int_equal(lp_test_write_str(inner, "x"), 0);
    char *link = lp_test_join(bad, "escape");
    assert_int_equal(symlink("../../etc/passwd", link), 0);
    assert_int_equal(publish(f, "shop", bad, "v4", 0, NULL, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "escape"));
    assert_int_equal(count_listed(f, "shop", 12, 0, NULL), 2);

    /* Rollback to v1: a new, higher code with v1's tree. */
    assert_int_equal(lp_service_rollback(f->svc, "shop", "v1", NULL, 0, NULL, NULL, &r, &err),
                     LP_OK);
    assert_int_equal(r.version_code, 11);
    assert_string_equal(r.version, "v1");
    assert_string_equal(r.manifest_sha256, sha1);
    assert_true(r.rollback_of > 0);
    lp_db *db = NULL;
    json_t *j = NULL;
    assert_int_equal(lp_service_db_acquire(f->svc, &db, &err), LP_OK);
    assert_int_equal(lp_service_release_json(f->svc, db, "shop", &r, &j, &err), LP_OK);
    lp_service_db_release(f->svc, db);
    assert_int_equal(json_integer_value(json_object_get(j, "files")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 4);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "rollback_of"), "version_code")),
        1);
    json_decref(j);
    lp_db_release_free(&r);
    assert_int_equal(lp_service_rollback(f->svc, "shop", "v7", NULL, 0, NULL, NULL, &r, &err),
                     LP_ERR_NOT_FOUND);
    custom = NULL;
    assert_int_equal(count_listed(f, "shop", 12, 11, &custom), 3);
    assert_non_null(strstr(custom, "\"rollback_of\":1"));
    free(custom);
    free(link);
    free(inner);
    free(bad);
    free(b1);
    free(b2);
}

/* A fresh TUF client's refresh of the app's repository with its clock at
 * `now`. */
static lp_status refresh_at(fx *f, const char *app, int64_t now)
{
    char meta[4096], root[4096], cdir[4096];
    snprintf(meta, sizeof meta, "file://%s/repos/%s/metadata", f->data, app);
    snprintf(root, sizeof root, "%s/repos/%s/metadata/1.root.json", f->data, app);
    snprintf(cdir, sizeof cdir, "%s/client-%d", f->dir, rand());
    lp_error err;
    lp_error_clear(&err);
    assert_int_equal(lp_tuf_init_trusted_root(cdir, root, &err), LP_OK);
    lp_tuf_client_config cfg = {.metadata_dir = cdir, .metadata_url = meta, .now = now};
    lp_tuf_client *c = NULL;
    assert_int_equal(lp_tuf_client_open(&c, &cfg, &err), LP_OK);
    lp_status st = lp_tuf_client_refresh(c, NULL, &err);
    lp_tuf_client_free(c);
    return st;
}

static void test_resign_before_expiry(void **state)
{
    fx *f = *state;
    lp_error err;
    lp_error_clear(&err);
    assert_int_equal(lp_service_app_create(f->svc, "exp", &err), LP_OK);
    char *b = make_bundle(f, "eb", "expiry\n");
    assert_int_equal(publish(f, "exp", b, "v1", 0, NULL, &err), LP_OK);
    int64_t now = (int64_t)time(NULL), hour = 3600, day = 24 * hour;
    size_t n = 99;
    /* Fresh metadata: nothing to do. */
    assert_int_equal(lp_service_refresh_expiring(f->svc, now, &n, &err), LP_OK);
    assert_int_equal(n, 0);
    /* Left alone, a device a day and a half later sees expired metadata. */
    assert_int_equal(refresh_at(f, "exp", now + 36 * hour), LP_ERR_EXPIRED);
    /* 13 hours on, the timestamp has used half its life and is re-signed. */
    assert_int_equal(lp_service_refresh_expiring(f->svc, now + 13 * hour, &n, &err), LP_OK);
    assert_int_equal(n, 1);
    assert_int_equal(refresh_at(f, "exp", now + 36 * hour), LP_OK);
    /* 100 days on, targets and snapshot too; the release is still listed. */
    assert_int_equal(lp_service_refresh_expiring(f->svc, now + 100 * day, &n, &err), LP_OK);
    assert_int_equal(n, 1);
    assert_int_equal(refresh_at(f, "exp", now + 100 * day + hour), LP_OK);
    assert_int_equal(count_listed(f, "exp", 2, 0, NULL), 1);
    free(b);
}

typedef struct racer {
    fx *f;
    int id;
    int ok;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    char name[32], text[32];
    snprintf(name, sizeof name, "race%d", r->id);
    char *b = make_bundle(r->f, name, name);
    for (int i = 0; i < 5; i++) {
        char version[32];
        snprintf(version, sizeof version, "r%d.%d", r->id, i);
        snprintf(text, sizeof text, "%d", i);
        lp_error err;
        lp_error_clear(&err);
        if (publish(r->f, "race", b, version, 0, NULL, &err) == LP_OK)
            r->ok++;
        else
            fprintf(stderr, "publisher %d: %s\n", r->id, err.msg);
    }
    free(b);
    return NULL;
}

static void test_racing_publishers(void **state)
{
    fx *f = *state;
    lp_error err;
    lp_error_clear(&err);
    assert_int_equal(lp_service_app_create(f->svc, "race", &err), LP_OK);
    pthread_t th[4];
    racer rs[4];
    for (int i = 0; i < 4; i++) {
        rs[i] = (racer){.f = f, .id = i};
        pthread_create(&th[i], NULL, race, &rs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(rs[i].ok, 5);
    }
    /* Codes 1..20, each once, all listed. */
    assert_int_equal(count_listed(f, "race", 21, 0, NULL), 20);
}

static void test_recover(void **state)
{
    fx *f = *state;
    lp_error err;
    lp_error_clear(&err);
    assert_int_equal(lp_service_app_create(f->svc, "rec", &err), LP_OK);
    char *b1 = make_bundle(f, "rb1", "recover me\n");
    lp_db_release r = {0};
    assert_int_equal(publish(f, "rec", b1, "v1", 0, &r, &err), LP_OK);

    /* The database gains a release the repository never heard of (a crash
     * after the commit, before the metadata was written). */
    char url[4200];
    lp_db *db = NULL;
    assert_int_equal(lp_db_open(db_url(f, url, sizeof url), &db, &err), LP_OK);
    const char *chans[] = {"beta"};
    lp_db_release_new nr = {.app_id = r.app_id, .version = "v2", .version_code = 2,
                            .manifest_sha256 = r.manifest_sha256,
                            .manifest_size = r.manifest_size, .channels = chans,
                            .n_channels = 1};
    assert_int_equal(lp_db_release_insert(db, &nr, NULL, &err), LP_OK);
    lp_db_close(db);
    assert_int_equal(count_listed(f, "rec", 3, 0, NULL), 1);
    reopen(f);
    assert_int_equal(count_listed(f, "rec", 3, 0, NULL), 2);

    /* The repository gains a release the database does not have (a crash
     * after the metadata was written, before the commit). */
    char repo[4200], key[4200];
    snprintf(repo, sizeof repo, "%s/repos/rec", f->data);
    lp_tuf_repo *tr = NULL;
    assert_int_equal(lp_tuf_repo_open(&tr, repo, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_add_target(tr, "targets", "releases/3.json", "{}", 2, NULL,
                                            LP_TUF_HASH_SHA256, &err),
                     LP_OK);
    lp_key *keys[4];
    const char *roles[] = {"root", "targets", "snapshot", "timestamp"};
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "%s/keys/rec/%s.pem", f->data, roles[i]);
        assert_int_equal(lp_key_load_private_file(&keys[i], key, &err), LP_OK);
    }
    assert_int_equal(lp_tuf_repo_publish(tr, (const lp_key *const *)keys, 4, &err), LP_OK);
    for (int i = 0; i < 4; i++)
        lp_key_free(keys[i]);
    lp_tuf_repo_free(tr);
    assert_int_equal(count_listed(f, "rec", 3, 0, NULL), 3);
    reopen(f);
    assert_int_equal(count_listed(f, "rec", 3, 0, NULL), 2);
    lp_db_release_free(&r);
    free(b1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bootstrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_refuse_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_racing_publishers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resign_before_expiry, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
