/*
 * test_db_targeting.c — a release's targeting rules in the metadata
 * database (a real database: an SQLite file in a scratch folder, or a
 * PostgreSQL schema when LP_TEST_PG_URL is set, testdb.h): the schema
 * has the column; the rules are checked on insert (the message names the
 * member, nothing is stored) and stored in canonical form whatever form
 * they were given in; {} and none store NULL; every read (by id, by
 * version, latest, list) gives them back.
 */
#include "livepush/db.h"
#include "testdb.h"
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static const char SHA[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

typedef struct fixture {
    char *dir;
    lp_testdb *tdb;
    lp_db *db;
    int64_t app;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_non_null(f->dir = lp_test_tmpdir("dbtargeting"));
    assert_non_null(f->tdb = lp_testdb_new(f->dir, "meta.db"));
    lp_error err;
    if (lp_db_open(f->tdb->url, &f->db, &err) || lp_db_app_create(f->db, "shop", 0, &f->app, &err))
        fail_msg("open: %s", err.msg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    lp_db_close(f->db);
    lp_testdb_free(f->tdb);
    lp_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static const char *const STABLE[] = {"stable"};

static lp_status insert(fixture *f, const char *version, int64_t code, const char *targeting,
                        lp_error *err)
{
    lp_db_release_new r = {.app_id = f->app, .version = version, .version_code = code,
                           .manifest_sha256 = SHA, .manifest_size = 10, .channels = STABLE,
                           .n_channels = 1, .targeting = targeting};
    return lp_db_release_insert(f->db, &r, NULL, err);
}

static void expect_stored(fixture *f, const char *version, const char *want)
{
    lp_db_release r = {0};
    lp_error err;
    if (lp_db_release_get_by_version(f->db, f->app, version, &r, &err))
        fail_msg("get %s: %s", version, err.msg);
    if (!want)
        assert_null(r.targeting);
    else if (!r.targeting || strcmp(r.targeting, want))
        fail_msg("%s: stored %s, expected %s", version, r.targeting ? r.targeting : "NULL", want);
    lp_db_release_free(&r);
}

static void test_schema_column(void **state)
{
    fixture *f = *state;
    assert_int_equal(lp_testdb_exec(f->tdb, "SELECT targeting FROM releases", NULL, 0), 0);
}

static void test_canonical_on_insert(void **state)
{
    fixture *f = *state;
    lp_error err;
    assert_int_equal(insert(f, "1.0", 1, NULL, &err), LP_OK);
    assert_int_equal(insert(f, "2.0", 2, " {\"min_from_code\" : 3, \"attributes\": {\"z\": \"1\","
                                         " \"a\": [\"y\", \"x\"]}} ",
                            &err),
                     LP_OK);
    assert_int_equal(insert(f, "3.0", 3, "{}", &err), LP_OK);
    expect_stored(f, "1.0", NULL);
    expect_stored(f, "2.0",
                  "{\"attributes\":{\"a\":[\"y\",\"x\"],\"z\":\"1\"},\"min_from_code\":3}");
    expect_stored(f, "3.0", NULL);
    /* every read gives them */
    lp_db_release r = {0};
    assert_int_equal(lp_db_release_get(f->db, 2, &r, &err), LP_OK);
    assert_non_null(r.targeting);
    lp_db_release_free(&r);
    lp_db_release_list list = {0};
    assert_int_equal(lp_db_release_list_by_app(f->db, f->app, "stable", 0, 0, &list, &err),
                     LP_OK);
    assert_int_equal(list.count, 3);
    assert_null(list.items[0].targeting);
    assert_non_null(list.items[1].targeting);
    lp_db_release_list_free(&list);
    assert_int_equal(insert(f, "4.0", 4, "{\"devices\":[\"0123456789abcdef\"]}", &err), LP_OK);
    assert_int_equal(lp_db_release_latest(f->db, f->app, NULL, &r, &err), LP_OK);
    assert_string_equal(r.targeting, "{\"devices\":[\"0123456789abcdef\"]}");
    lp_db_release_free(&r);
}

static void test_refused(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *text, *part;
        lp_status code;
    } bad[] = {
        {"{\"colour\":1}", "release: targeting.colour: unknown member", LP_ERR_INVALID_ARG},
        {"{\"devices\":[\"0123456789ABCDEF\"]}", "targeting.devices[0]", LP_ERR_INVALID_ARG},
        {"{\"max_from_code\":1,\"min_from_code\":2}", "targeting.max_from_code",
         LP_ERR_INVALID_ARG},
        {"[]", "targeting: expected an object", LP_ERR_INVALID_ARG},
        {"{\"min_from_code\":", "targeting", LP_ERR_MALFORMED},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lp_error err;
        lp_status st = insert(f, "1.0", 1, bad[i].text, &err);
        if (st != bad[i].code || !strstr(err.msg, bad[i].part))
            fail_msg("%s: %s '%s', expected %s '%s'", bad[i].text, lp_status_name(st), err.msg,
                     lp_status_name(bad[i].code), bad[i].part);
    }
    lp_db_release_list list = {0};
    lp_error err;
    assert_int_equal(lp_db_release_list_by_app(f->db, f->app, NULL, 0, 0, &list, &err), LP_OK);
    assert_int_equal(list.count, 0);
    lp_db_release_list_free(&list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_column, setup, teardown),
        cmocka_unit_test_setup_teardown(test_canonical_on_insert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
