/*
 * test_db.c — the metadata database on a real database: an SQLite file in
 * a scratch folder, or a PostgreSQL schema of its own when LP_TEST_PG_URL
 * is set (testdb.h): migrations, reopening, refusing a newer schema, every
 * entity's operations, the release rules (version_code strictly increasing,
 * unique versions, rollbacks), unique and foreign-key refusals, transaction
 * rollback, two writers racing on one app from two threads, a process killed
 * in the middle of a transaction, and input bounds.
 *
 * Where a test needs to look under the API (schema_version, journal mode,
 * raw inserts the database itself must refuse) it runs SQL on the database
 * directly (lp_testdb_query / lp_testdb_exec).
 */
#include "livepush/db.h"
#include "testdb.h"
#include "testutil.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

static const char SHA_A[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char SHA_B[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
static const uint8_t SALT[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t HASH[32] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28};

typedef struct fixture {
    char *dir;
    lp_testdb *tdb;
    const char *file; /* SQLite: the file (NULL on PostgreSQL) */
    const char *url;
    lp_db *db;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->dir = lp_test_tmpdir("db");
    if (!f->dir)
        return -1;
    f->tdb = lp_testdb_new(f->dir, "meta.db");
    if (!f->tdb)
        return -1;
    f->file = f->tdb->file;
    f->url = f->tdb->url;
    lp_error err;
    if (lp_db_open(f->url, &f->db, &err) != LP_OK) {
        fprintf(stderr, "open: %s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    lp_db_close(f->db);
    lp_testdb_free(f->tdb);
    int rc = lp_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return rc;
}

/* Asserts that st is `want` and that the message contains `needle`. */
#define assert_fail(st, want, err, needle)                              \
    do {                                                                \
        lp_status st_ = (st);                                           \
        if (st_ != (want) || !strstr((err).msg, (needle)))              \
            fail_msg("got %s '%s', wanted %s containing '%s'",          \
                     lp_status_name(st_), (err).msg, lp_status_name(want), (needle)); \
    } while (0)

#define assert_ok(st, err)                                                   \
    do {                                                                     \
        lp_status st_ = (st);                                                \
        if (st_ != LP_OK)                                                    \
            fail_msg("%s: %s", lp_status_name(st_), (err).msg);              \
    } while (0)

static int64_t make_app(lp_db *db, const char *name)
{
    lp_error err;
    int64_t id = 0;
    assert_ok(lp_db_app_create(db, name, 1000, &id, &err), err);
    assert_true(id > 0);
    return id;
}

static void add_token(lp_db *db, const char *id, const char *scopes)
{
    lp_error err;
    lp_db_token_new t = {.id = id, .name = "ci publisher", .salt = SALT, .salt_len = sizeof SALT,
                         .hash = HASH, .hash_len = sizeof HASH, .scopes = scopes,
                         .created_at = 2000};
    assert_ok(lp_db_token_insert(db, &t, &err), err);
}

static const char *const STABLE[] = {"stable"};
static const char *const BOTH[] = {"stable", "beta"};
static const char *const BETA[] = {"beta"};

static lp_db_release_new rel(int64_t app, const char *version, int64_t code)
{
    lp_db_release_new r = {.app_id = app, .version = version, .version_code = code,
                           .manifest_sha256 = SHA_A, .manifest_size = 1234,
                           .channels = STABLE, .n_channels = 1, .created_at = 3000};
    return r;
}

/* Runs one SQL statement on the database directly and returns its first
 * column as an integer (0: no row, -1: it failed). */
#define raw_query(tdb, sql) lp_testdb_query((tdb), (sql))

/* ---- opening and migrations ------------------------------------------- */

static void test_migrate_from_empty(void **state)
{
    fixture *f = *state;
    lp_error err;
    int v = -1;
    assert_ok(lp_db_schema_version(f->db, &v, &err), err);
    assert_int_equal(v, LP_DB_SCHEMA_VERSION);
    assert_int_equal(raw_query(f->tdb, "SELECT version FROM schema_version"),
                     LP_DB_SCHEMA_VERSION);
    if (f->tdb->pg) {
        assert_string_equal(lp_db_backend(f->db), "postgresql");
        /* The tables are in the connection's schema. */
        assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM information_schema.tables "
                                           "WHERE table_schema = current_schema() AND "
                                           "table_name IN ('apps', 'channels', 'releases', "
                                           "'release_channels', 'tokens', 'uploads', "
                                           "'schema_version')"),
                         7);
        return;
    }
    assert_string_equal(lp_db_backend(f->db), "sqlite");
    /* The settings that make it durable and concurrent are in place. */
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM pragma_journal_mode "
                                        "WHERE journal_mode = 'wal'"),
                     1);
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                        "AND name IN ('apps', 'channels', 'releases', "
                                        "'release_channels', 'tokens', 'uploads', "
                                        "'schema_version')"),
                     7);
    struct stat sb;
    assert_int_equal(stat(f->file, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

static void test_reopen_keeps_data(void **state)
{
    fixture *f = *state;
    lp_error err;
    int64_t app = make_app(f->db, "shop");
    lp_db_release_new r = rel(app, "1.0.0", 10);
    assert_ok(lp_db_release_insert(f->db, &r, NULL, &err), err);
    lp_db_close(f->db);
    f->db = NULL;
    assert_ok(lp_db_open(f->url, &f->db, &err), err);
    lp_db_app a;
    assert_ok(lp_db_app_get_by_name(f->db, "shop", &a, &err), err);
    assert_int_equal(a.id, app);
    lp_db_app_free(&a);
    lp_db_release got;
    assert_ok(lp_db_release_latest(f->db, app, NULL, &got, &err), err);
    assert_string_equal(got.version, "1.0.0");
    lp_db_release_free(&got);
    /* Reopening an up-to-date database applies nothing and keeps the version. */
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM schema_version"), 1);
}

static void test_future_schema_refused(void **state)
{
    fixture *f = *state;
    lp_error err;
    make_app(f->db, "keep");
    lp_db_close(f->db);
    f->db = NULL;
    assert_int_equal(raw_query(f->tdb, "UPDATE schema_version SET version = 99"), 0);
    assert_fail(lp_db_open(f->url, &f->db, &err), LP_ERR_UNSUPPORTED, err,
                "schema version 99");
    assert_null(f->db);
    /* Nothing was changed by the refused open. */
    assert_int_equal(raw_query(f->tdb, "SELECT version FROM schema_version"), 99);
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM apps"), 1);
}

static void test_open_errors(void **state)
{
    fixture *f = *state;
    lp_error err;
    lp_db *db = NULL;
    /* Nothing listens on port 1 of the loopback: the connection fails, and
     * the message does not show the password. */
    assert_fail(lp_db_open("postgresql://u:secret@127.0.0.1:1/x?connect_timeout=5", &db, &err),
                LP_ERR_NETWORK, err, "connecting");
    assert_null(strstr(err.msg, "secret"));
    assert_non_null(strstr(err.msg, "u:***@127.0.0.1"));
    assert_null(db);
    assert_fail(lp_db_open("mysql://x", &db, &err), LP_ERR_INVALID_ARG, err, "unknown scheme");
    assert_fail(lp_db_open("sqlite:", &db, &err), LP_ERR_INVALID_ARG, err, "no file name");
    assert_fail(lp_db_open(NULL, &db, &err), LP_ERR_INVALID_ARG, err, "missing");
    char url[600];
    snprintf(url, sizeof url, "sqlite:%s/no/such/folder/x.db", f->dir);
    assert_fail(lp_db_open(url, &db, &err), LP_ERR_NOT_FOUND, err, "no/such/folder");
    /* A file that is not a database is refused, not overwritten. */
    char *junk = lp_test_join(f->dir, "junk.db");
    assert_int_equal(lp_test_write_str(junk, "this is not an SQLite database, just text......."
                                             "................................................"),
                     0);
    snprintf(url, sizeof url, "sqlite:%s", junk);
    assert_fail(lp_db_open(url, &db, &err), LP_ERR_IO, err, "not a database");
    assert_null(db);
    free(junk);
}

/* ---- apps and channels ------------------------------------------------ */

static void test_apps_and_channels(void **state)
{
    fixture *f = *state;
    lp_error err;
    int64_t zoo = make_app(f->db, "zoo");
    int64_t ant = make_app(f->db, "ant-app.v2");
    assert_fail(lp_db_app_create(f->db, "zoo", 0, NULL, &err), LP_ERR_EXISTS, err,
                "app name 'zoo'");

    lp_db_app a;
    assert_ok(lp_db_app_get(f->db, zoo, &a, &err), err);
    assert_string_equal(a.name, "zoo");
    assert_int_equal(a.created_at, 1000);
    lp_db_app_free(&a);
    assert_null(a.name);
    assert_fail(lp_db_app_get(f->db, 9999, &a, &err), LP_ERR_NOT_FOUND, err, "9999");
    assert_fail(lp_db_app_get_by_name(f->db, "nope", &a, &err), LP_ERR_NOT_FOUND, err, "'nope'");

    lp_db_app_list list;
    assert_ok(lp_db_app_list_all(f->db, &list, &err), err);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].name, "ant-app.v2");
    assert_int_equal(list.items[0].id, ant);
    assert_string_equal(list.items[1].name, "zoo");
    lp_db_app_list_free(&list);

    int64_t ch = 0;
    assert_ok(lp_db_channel_create(f->db, zoo, "stable", 0, &ch, &err), err);
    assert_true(ch > 0);
    assert_ok(lp_db_channel_create(f->db, zoo, "beta", 0, NULL, &err), err);
    /* The same channel name is fine for another app, not twice for one. */
    assert_ok(lp_db_channel_create(f->db, ant, "stable", 0, NULL, &err), err);
    assert_fail(lp_db_channel_create(f->db, zoo, "stable", 0, NULL, &err), LP_ERR_EXISTS, err,
                "channel name 'stable'");
    /* Foreign key: a channel of an app that does not exist. */
    assert_fail(lp_db_channel_create(f->db, 4242, "stable", 0, NULL, &err), LP_ERR_NOT_FOUND,
                err, "app id 4242");
    lp_db_channel_list cl;
    assert_ok(lp_db_channel_list_all(f->db, zoo, &cl, &err), err);
    assert_int_equal(cl.count, 2);
    assert_string_equal(cl.items[0].name, "beta");
    assert_string_equal(cl.items[1].name, "stable");
    assert_int_equal(cl.items[1].id, ch);
    lp_db_channel_list_free(&cl);
}

/* ---- releases --------------------------------------------------------- */

static void test_release_crud(void **state)
{
    fixture *f = *state;
    lp_error err;
    int64_t app = make_app(f->db, "shop");
    add_token(f->db, "tok_pub", "upload");

    lp_db_release_new r = rel(app, "1.0.0", 100);
    r.channels = BOTH;
    r.n_channels = 2;
    r.runtime_version = "rt-3";
    r.platform = "linux";
    r.arch = "x86_64";
    r.mandatory = true;
    r.notes = "First release.\nFixes:\t- everything";
    r.created_by = "tok_pub";
    int64_t id1 = 0;
    assert_ok(lp_db_release_insert(f->db, &r, &id1, &err), err);

    lp_db_release got;
    assert_ok(lp_db_release_get(f->db, id1, &got, &err), err);
    assert_int_equal(got.app_id, app);
    assert_string_equal(got.version, "1.0.0");
    assert_int_equal(got.version_code, 100);
    assert_string_equal(got.manifest_sha256, SHA_A);
    assert_int_equal(got.manifest_size, 1234);
    assert_int_equal(got.n_channels, 2);
    assert_string_equal(got.channels[0], "beta"); /* sorted */
    assert_string_equal(got.channels[1], "stable");
    assert_string_equal(got.runtime_version, "rt-3");
    assert_string_equal(got.platform, "linux");
    assert_string_equal(got.arch, "x86_64");
    assert_true(got.mandatory);
    assert_string_equal(got.notes, r.notes);
    assert_string_equal(got.created_by, "tok_pub");
    assert_string_equal(got.state, "published");
    assert_int_equal(got.rollback_of, 0);
    assert_int_equal(got.created_at, 3000);
    lp_db_release_free(&got);

    /* Optional fields stay NULL; channels named by a release are created. */
    lp_db_release_new r2 = rel(app, "1.1.0", 200);
    r2.manifest_sha256 = SHA_B;
    r2.channels = BETA;
    int64_t id2 = 0;
    assert_ok(lp_db_release_insert(f->db, &r2, &id2, &err), err);
    assert_ok(lp_db_release_get(f->db, id2, &got, &err), err);
    assert_null(got.runtime_version);
    assert_null(got.platform);
    assert_null(got.notes);
    assert_null(got.created_by);
    assert_false(got.mandatory);
    lp_db_release_free(&got);
    lp_db_channel_list cl;
    assert_ok(lp_db_channel_list_all(f->db, app, &cl, &err), err);
    assert_int_equal(cl.count, 2);
    lp_db_channel_list_free(&cl);

    /* Latest: overall, per channel, and only published releases. */
    assert_ok(lp_db_release_latest(f->db, app, NULL, &got, &err), err);
    assert_int_equal(got.id, id2);
    lp_db_release_free(&got);
    assert_ok(lp_db_release_latest(f->db, app, "stable", &got, &err), err);
    assert_int_equal(got.id, id1);
    lp_db_release_free(&got);
    assert_fail(lp_db_release_latest(f->db, app, "nightly", &got, &err), LP_ERR_NOT_FOUND, err,
                "nightly");
    assert_ok(lp_db_release_set_state(f->db, id2, LP_DB_STATE_WITHDRAWN, &err), err);
    assert_ok(lp_db_release_latest(f->db, app, "beta", &got, &err), err);
    assert_int_equal(got.id, id1);
    lp_db_release_free(&got);
    assert_fail(lp_db_release_set_state(f->db, 777, LP_DB_STATE_PUBLISHED, &err),
                LP_ERR_NOT_FOUND, err, "777");
    assert_fail(lp_db_release_set_state(f->db, id2, "gone", &err), LP_ERR_INVALID_ARG, err,
                "state");

    /* Listing: newest first, channel filter, paging. */
    lp_db_release_new r3 = rel(app, "1.2.0", 300);
    assert_ok(lp_db_release_insert(f->db, &r3, NULL, &err), err);
    lp_db_release_list list;
    assert_ok(lp_db_release_list_by_app(f->db, app, NULL, 0, 0, &list, &err), err);
    assert_int_equal(list.count, 3);
    assert_int_equal(list.items[0].version_code, 300);
    assert_int_equal(list.items[1].version_code, 200);
    assert_int_equal(list.items[2].version_code, 100);
    assert_string_equal(list.items[1].state, "withdrawn");
    lp_db_release_list_free(&list);
    assert_ok(lp_db_release_list_by_app(f->db, app, "stable", 0, 0, &list, &err), err);
    assert_int_equal(list.count, 2);
    assert_int_equal(list.items[0].version_code, 300);
    assert_int_equal(list.items[1].version_code, 100);
    lp_db_release_list_free(&list);
    assert_ok(lp_db_release_list_by_app(f->db, app, NULL, 300, 1, &list, &err), err);
    assert_int_equal(list.count, 1);
    assert_int_equal(list.items[0].version_code, 200);
    lp_db_release_list_free(&list);

    assert_ok(lp_db_release_get_by_version(f->db, app, "1.1.0", &got, &err), err);
    assert_int_equal(got.id, id2);
    lp_db_release_free(&got);
    assert_fail(lp_db_release_get_by_version(f->db, app, "9.9", &got, &err), LP_ERR_NOT_FOUND,
                err, "'9.9'");
    int64_t max = 0;
    assert_ok(lp_db_release_max_code(f->db, app, &max, &err), err);
    assert_int_equal(max, 300);
    int64_t other = make_app(f->db, "other");
    assert_ok(lp_db_release_max_code(f->db, other, &max, &err), err);
    assert_int_equal(max, 0);
}

static void test_version_code_monotonic(void **state)
{
    fixture *f = *state;
    lp_error err;
    int64_t app = make_app(f->db, "shop");
    int64_t other = make_app(f->db, "other");
    lp_db_release_new r = rel(app, "2.0", 20);
    assert_ok(lp_db_release_insert(f->db, &r, NULL, &err), err);
    /* Equal and lower codes are refused, naming the field and the latest. */
    r = rel(app, "2.1", 20);
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_ROLLBACK, err,
                "version_code: 20 is not greater than the app's latest version_code 20");
    r = rel(app, "1.9", 5);
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_ROLLBACK, err,
                "version_code: 5");
    /* Codes are per app. */
    r = rel(other, "0.1", 1);
    assert_ok(lp_db_release_insert(f->db, &r, NULL, &err), err);
    /* The same version string twice is refused even with a higher code. */
    r = rel(app, "2.0", 30);
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_EXISTS, err,
                "version: '2.0' already exists");
    /* Nothing of the refused releases was stored. */
    lp_db_release_list list;
    assert_ok(lp_db_release_list_by_app(f->db, app, NULL, 0, 0, &list, &err), err);
    assert_int_equal(list.count, 1);
    lp_db_release_list_free(&list);
    /* The database itself refuses a duplicate code (second guard). */
    assert_int_equal(raw_query(f->tdb, "INSERT INTO releases (app_id, version, version_code, "
                                        "manifest_sha256, manifest_size, created_at, state) "
                                        "SELECT app_id, 'x', version_code, manifest_sha256, 1, 1, "
                                        "'published' FROM releases WHERE version = '2.0'"),
                     -1);
}

static void test_rollback_release(void **state)
{
    fixture *f = *state;
    lp_error err;
    int64_t app = make_app(f->db, "shop");
    int64_t other = make_app(f->db, "other");
    int64_t v1 = 0, v2 = 0, back = 0, foreign = 0;
    lp_db_release_new r = rel(app, "v1", 1);
    assert_ok(lp_db_release_insert(f->db, &r, &v1, &err), err);
    r = rel(app, "v2", 2);
    r.manifest_sha256 = SHA_B;
    assert_ok(lp_db_release_insert(f->db, &r, &v2, &err), err);
    r = rel(other, "o1", 1);
    assert_ok(lp_db_release_insert(f->db, &r, &foreign, &err), err);

    /* Roll back to v1: same version and manifest, higher code. */
    r = rel(app, "v1", 3);
    r.rollback_of = v1;
    assert_ok(lp_db_release_insert(f->db, &r, &back, &err), err);
    lp_db_release got;
    assert_ok(lp_db_release_latest(f->db, app, "stable", &got, &err), err);
    assert_int_equal(got.id, back);
    assert_int_equal(got.rollback_of, v1);
    assert_string_equal(got.manifest_sha256, SHA_A);
    lp_db_release_free(&got);
    assert_ok(lp_db_release_get_by_version(f->db, app, "v1", &got, &err), err);
    assert_int_equal(got.id, back); /* the newest release named v1 */
    lp_db_release_free(&got);

    /* A rollback must restore an existing release of the same app, with its
     * version, and still raise the code. */
    r = rel(app, "o1", 4);
    r.rollback_of = foreign;
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_INVALID_ARG, err,
                "rollback_of");
    r = rel(app, "v9", 4);
    r.rollback_of = 999;
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_NOT_FOUND, err,
                "rollback_of: release 999");
    r = rel(app, "v2", 4);
    r.rollback_of = v1;
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_INVALID_ARG, err,
                "has version 'v1'");
    r = rel(app, "v1", 2);
    r.rollback_of = v1;
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_ROLLBACK, err,
                "version_code");
    (void)v2;
}

static void test_release_refs_refused(void **state)
{
    fixture *f = *state;
    lp_error err;
    int64_t app = make_app(f->db, "shop");
    lp_db_release_new r = rel(4242, "1", 1);
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_NOT_FOUND, err,
                "app id 4242");
    r = rel(app, "1", 1);
    r.created_by = "tok_missing";
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_NOT_FOUND, err,
                "created_by: token 'tok_missing'");
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM releases"), 0);
    /* Foreign keys are enforced by the database too (not only by the
     * library's checks): a raw insert through a connection with
     * foreign_keys ON is refused. */
    char msg[256];
    assert_int_equal(lp_testdb_exec(f->tdb,
                                    f->tdb->pg ? "INSERT INTO channels (app_id, name, created_at) "
                                                 "VALUES (777, 'x', 1)"
                                               : "PRAGMA foreign_keys = ON; "
                                                 "INSERT INTO channels (app_id, name, created_at) "
                                                 "VALUES (777, 'x', 1)",
                                    msg, sizeof msg),
                     -1);
    assert_non_null(strstr(msg, f->tdb->pg ? "foreign key" : "FOREIGN KEY"));
}

/* ---- tokens ----------------------------------------------------------- */

static void test_tokens(void **state)
{
    fixture *f = *state;
    lp_error err;
    char canon[LP_DB_SCOPES_MAX + 1];
    assert_ok(lp_db_scopes_canonical("upload,admin,upload,download", canon, sizeof canon, &err),
              err);
    assert_string_equal(canon, "admin,download,upload");
    assert_true(lp_db_scopes_has(canon, "admin"));
    assert_true(lp_db_scopes_has(canon, "upload"));
    assert_false(lp_db_scopes_has(canon, "up"));
    assert_false(lp_db_scopes_has(canon, "load"));
    assert_fail(lp_db_scopes_canonical("upload,,admin", canon, sizeof canon, &err),
                LP_ERR_INVALID_ARG, err, "empty scope");
    assert_fail(lp_db_scopes_canonical("Upload", canon, sizeof canon, &err), LP_ERR_INVALID_ARG,
                err, "'Upload'");
    assert_fail(lp_db_scopes_canonical("up load", canon, sizeof canon, &err), LP_ERR_INVALID_ARG,
                err, "'up load'");

    add_token(f->db, "tok_a", "upload,download,upload");
    add_token(f->db, "tok_b", "admin");
    lp_db_token_new dup = {.id = "tok_a", .name = "again", .salt = SALT, .salt_len = 8,
                           .hash = HASH, .hash_len = 16, .scopes = "admin"};
    assert_fail(lp_db_token_insert(f->db, &dup, &err), LP_ERR_EXISTS, err, "token id 'tok_a'");

    lp_db_token t;
    assert_ok(lp_db_token_find_by_id(f->db, "tok_a", &t, &err), err);
    assert_string_equal(t.id, "tok_a");
    assert_string_equal(t.name, "ci publisher");
    assert_string_equal(t.scopes, "download,upload");
    assert_int_equal(t.salt_len, sizeof SALT);
    assert_memory_equal(t.salt, SALT, sizeof SALT);
    assert_int_equal(t.hash_len, sizeof HASH);
    assert_memory_equal(t.hash, HASH, sizeof HASH);
    assert_int_equal(t.created_at, 2000);
    assert_int_equal(t.revoked_at, 0);
    assert_int_equal(t.last_used_at, 0);
    lp_db_token_free(&t);

    assert_ok(lp_db_token_touch(f->db, "tok_a", 5000, &err), err);
    assert_ok(lp_db_token_revoke(f->db, "tok_a", 6000, &err), err);
    assert_ok(lp_db_token_revoke(f->db, "tok_a", 7000, &err), err); /* keeps the first */
    assert_ok(lp_db_token_find_by_id(f->db, "tok_a", &t, &err), err);
    assert_int_equal(t.last_used_at, 5000);
    assert_int_equal(t.revoked_at, 6000);
    lp_db_token_free(&t);
    assert_fail(lp_db_token_revoke(f->db, "tok_zz", 0, &err), LP_ERR_NOT_FOUND, err, "'tok_zz'");
    assert_fail(lp_db_token_touch(f->db, "tok_zz", 0, &err), LP_ERR_NOT_FOUND, err, "'tok_zz'");
    assert_fail(lp_db_token_find_by_id(f->db, "tok_zz", &t, &err), LP_ERR_NOT_FOUND, err,
                "'tok_zz'");

    lp_db_token_list list;
    assert_ok(lp_db_token_list_all(f->db, &list, &err), err);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].id, "tok_a");
    assert_string_equal(list.items[1].id, "tok_b");
    assert_int_equal(list.items[1].revoked_at, 0);
    lp_db_token_list_free(&list);
}

/* ---- uploads ---------------------------------------------------------- */

static void test_uploads(void **state)
{
    fixture *f = *state;
    lp_error err;
    int64_t app = make_app(f->db, "shop");
    add_token(f->db, "tok_up", "upload");
    lp_db_upload_new u = {.id = "up_1", .app_id = app, .token_id = "tok_up",
                          .path = "/var/lib/livepush/uploads/up_1.part", .expected_size = 1000,
                          .expected_sha256 = SHA_B, .created_at = 100};
    assert_ok(lp_db_upload_create(f->db, &u, &err), err);
    assert_fail(lp_db_upload_create(f->db, &u, &err), LP_ERR_EXISTS, err, "upload id 'up_1'");
    lp_db_upload_new u2 = {.id = "up_2", .app_id = app, .path = "/tmp/up_2", .expected_size = 5,
                           .created_at = 500};
    assert_ok(lp_db_upload_create(f->db, &u2, &err), err);
    /* Foreign keys: unknown app, unknown token. */
    lp_db_upload_new bad = u2;
    bad.id = "up_3";
    bad.app_id = 4242;
    assert_fail(lp_db_upload_create(f->db, &bad, &err), LP_ERR_NOT_FOUND, err, "app id 4242");
    bad.app_id = app;
    bad.token_id = "tok_nobody";
    assert_fail(lp_db_upload_create(f->db, &bad, &err), LP_ERR_NOT_FOUND, err, "tok_nobody");

    lp_db_upload got;
    assert_ok(lp_db_upload_get(f->db, "up_1", &got, &err), err);
    assert_int_equal(got.app_id, app);
    assert_string_equal(got.token_id, "tok_up");
    assert_string_equal(got.path, u.path);
    assert_int_equal(got.expected_size, 1000);
    assert_string_equal(got.expected_sha256, SHA_B);
    assert_int_equal(got.received, 0);
    assert_int_equal(got.created_at, 100);
    assert_int_equal(got.updated_at, 100);
    lp_db_upload_free(&got);

    assert_ok(lp_db_upload_set_received(f->db, "up_1", 600, 200, &err), err);
    assert_fail(lp_db_upload_set_received(f->db, "up_1", 1001, 300, &err), LP_ERR_TOO_LARGE, err,
                "more than the expected 1000");
    assert_fail(lp_db_upload_set_received(f->db, "up_x", 1, 300, &err), LP_ERR_NOT_FOUND, err,
                "'up_x'");
    assert_ok(lp_db_upload_get(f->db, "up_1", &got, &err), err);
    assert_int_equal(got.received, 600);
    assert_int_equal(got.updated_at, 200);
    lp_db_upload_free(&got);
    assert_ok(lp_db_upload_get(f->db, "up_2", &got, &err), err);
    assert_null(got.token_id);
    assert_null(got.expected_sha256);
    lp_db_upload_free(&got);

    lp_db_upload_list stale;
    assert_ok(lp_db_upload_list_stale(f->db, 400, &stale, &err), err);
    assert_int_equal(stale.count, 1);
    assert_string_equal(stale.items[0].id, "up_1");
    lp_db_upload_list_free(&stale);
    assert_ok(lp_db_upload_list_stale(f->db, 1000, &stale, &err), err);
    assert_int_equal(stale.count, 2);
    lp_db_upload_list_free(&stale);

    assert_ok(lp_db_upload_delete(f->db, "up_1", &err), err);
    assert_fail(lp_db_upload_delete(f->db, "up_1", &err), LP_ERR_NOT_FOUND, err, "'up_1'");
    assert_fail(lp_db_upload_get(f->db, "up_1", &got, &err), LP_ERR_NOT_FOUND, err, "'up_1'");
}

/* ---- transactions ----------------------------------------------------- */

/* PostgreSQL's side of test_transactions: a failing statement inside a
 * transaction (here a trigger that raises an error) undoes only its own
 * call, so the transaction goes on; the transaction ends on its own when
 * the connection is lost (the server ends it), and then later calls and
 * the commit are refused, and the next call outside it reconnects. */
static void test_transactions_pg(fixture *f)
{
    lp_error err;
    lp_db_app a;
    char msg[256];
    assert_int_equal(lp_testdb_exec(f->tdb,
                                    "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
                                    "$$ BEGIN IF NEW.name = 'boom' THEN RAISE EXCEPTION 'boom'; "
                                    "END IF; RETURN NEW; END $$; "
                                    "CREATE TRIGGER boom BEFORE INSERT ON tokens "
                                    "FOR EACH ROW EXECUTE FUNCTION boom()",
                                    msg, sizeof msg),
                     0);
    assert_ok(lp_db_begin(f->db, &err), err);
    make_app(f->db, "kept");
    lp_db_token_new t = {.id = "tok_boom", .name = "boom", .salt = SALT, .salt_len = sizeof SALT,
                         .hash = HASH, .hash_len = sizeof HASH, .scopes = "admin"};
    assert_fail(lp_db_token_insert(f->db, &t, &err), LP_ERR_IO, err, "boom");
    make_app(f->db, "late");
    assert_ok(lp_db_commit(f->db, &err), err);
    assert_ok(lp_db_app_get_by_name(f->db, "kept", &a, &err), err);
    lp_db_app_free(&a);
    assert_ok(lp_db_app_get_by_name(f->db, "late", &a, &err), err);
    lp_db_app_free(&a);
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM tokens WHERE id = 'tok_boom'"), 0);

    assert_ok(lp_db_begin(f->db, &err), err);
    make_app(f->db, "cut");
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (SELECT pid FROM pg_stat_activity WHERE "
             "application_name = '%s' AND state = 'idle in transaction' AND "
             "pid <> pg_backend_pid() OFFSET 0) AS t WHERE pg_terminate_backend(pid, 5000)",
             f->tdb->schema);
    assert_int_equal(raw_query(f->tdb, sql), 1);
    assert_fail(lp_db_app_create(f->db, "lost", 0, NULL, &err), LP_ERR_NETWORK, err,
                "lost the database connection");
    assert_fail(lp_db_app_create(f->db, "later", 0, NULL, &err), LP_ERR_STATE, err,
                "ended by an earlier error");
    assert_fail(lp_db_commit(f->db, &err), LP_ERR_STATE, err, "ended by an earlier error");
    assert_false(lp_db_in_transaction(f->db));
    /* Outside the transaction the handle connects again. */
    assert_fail(lp_db_app_get_by_name(f->db, "cut", &a, &err), LP_ERR_NOT_FOUND, err, "cut");
    make_app(f->db, "after-reconnect");
}

static void test_transactions(void **state)
{
    fixture *f = *state;
    lp_error err;
    assert_fail(lp_db_commit(f->db, &err), LP_ERR_STATE, err, "no transaction");
    assert_fail(lp_db_rollback(f->db, &err), LP_ERR_STATE, err, "no transaction");

    /* Rolled back: nothing of it remains. */
    assert_ok(lp_db_begin(f->db, &err), err);
    assert_true(lp_db_in_transaction(f->db));
    assert_fail(lp_db_begin(f->db, &err), LP_ERR_STATE, err, "already open");
    int64_t app = make_app(f->db, "ghost");
    lp_db_release_new r = rel(app, "1", 1);
    assert_ok(lp_db_release_insert(f->db, &r, NULL, &err), err);
    add_token(f->db, "tok_ghost", "admin");
    /* Reads inside the transaction see its writes. */
    lp_db_release got;
    assert_ok(lp_db_release_latest(f->db, app, NULL, &got, &err), err);
    lp_db_release_free(&got);
    assert_ok(lp_db_rollback(f->db, &err), err);
    assert_false(lp_db_in_transaction(f->db));
    lp_db_app a;
    assert_fail(lp_db_app_get_by_name(f->db, "ghost", &a, &err), LP_ERR_NOT_FOUND, err, "ghost");
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM releases"), 0);
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM channels"), 0);
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM tokens"), 0);

    /* A failed call inside a transaction leaves the transaction to the
     * caller; committing keeps the successful calls. */
    assert_ok(lp_db_begin(f->db, &err), err);
    app = make_app(f->db, "real");
    assert_fail(lp_db_app_create(f->db, "real", 0, NULL, &err), LP_ERR_EXISTS, err, "real");
    r = rel(app, "1", 1);
    assert_ok(lp_db_release_insert(f->db, &r, NULL, &err), err);
    assert_ok(lp_db_commit(f->db, &err), err);
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM releases"), 1);

    if (f->tdb->pg) {
        test_transactions_pg(f);
    } else {
        /* When the database ends a transaction on its own after an error
         * (here a trigger that raises ROLLBACK, as a full disk would), later
         * calls do not silently run outside it: they and the commit are
         * refused. */
        assert_int_equal(raw_query(f->tdb, "CREATE TRIGGER boom BEFORE INSERT ON tokens "
                                           "WHEN NEW.name = 'boom' "
                                           "BEGIN SELECT RAISE(ROLLBACK, 'boom'); END"),
                         0);
        lp_db_close(f->db); /* reconnect so the new schema is seen at once */
        f->db = NULL;
        assert_ok(lp_db_open(f->url, &f->db, &err), err);
        assert_ok(lp_db_begin(f->db, &err), err);
        make_app(f->db, "doomed");
        lp_db_token_new t = {.id = "tok_boom", .name = "boom", .salt = SALT,
                             .salt_len = sizeof SALT, .hash = HASH, .hash_len = sizeof HASH,
                             .scopes = "admin"};
        assert_int_not_equal(lp_db_token_insert(f->db, &t, &err), LP_OK);
        assert_fail(lp_db_app_create(f->db, "late", 0, NULL, &err), LP_ERR_STATE, err,
                    "ended by an earlier error");
        assert_fail(lp_db_commit(f->db, &err), LP_ERR_STATE, err, "ended by an earlier error");
        assert_false(lp_db_in_transaction(f->db));
        assert_fail(lp_db_app_get_by_name(f->db, "doomed", &a, &err), LP_ERR_NOT_FOUND, err,
                    "doomed");
        assert_fail(lp_db_app_get_by_name(f->db, "late", &a, &err), LP_ERR_NOT_FOUND, err,
                    "late");
    }

    /* Closing with a transaction open rolls it back. */
    assert_ok(lp_db_begin(f->db, &err), err);
    make_app(f->db, "unfinished");
    lp_db_close(f->db);
    f->db = NULL;
    assert_ok(lp_db_open(f->url, &f->db, &err), err);
    assert_fail(lp_db_app_get_by_name(f->db, "unfinished", &a, &err), LP_ERR_NOT_FOUND, err,
                "unfinished");
}

/* ---- two publishers racing -------------------------------------------- */

#define RACE_ROUNDS 40

typedef struct racer {
    const char *url;
    int64_t app;
    int tag;
    bool explicit_tx; /* read max + insert in one transaction, else without */
    int ok, refused, failed;
    char last_error[LP_ERROR_MSG_MAX];
} racer;

static void *race(void *arg)
{
    racer *rc = arg;
    lp_error err;
    lp_db *db = NULL;
    if (lp_db_open(rc->url, &db, &err) != LP_OK) {
        rc->failed = RACE_ROUNDS;
        snprintf(rc->last_error, sizeof rc->last_error, "%s", err.msg);
        return NULL;
    }
    for (int i = 0; i < RACE_ROUNDS; i++) {
        char version[32];
        snprintf(version, sizeof version, "t%d-%d-%d", rc->tag, rc->explicit_tx, i);
        lp_db_release_new r = rel(rc->app, version, 0);
        lp_status st = LP_OK;
        if (rc->explicit_tx)
            st = lp_db_begin(db, &err);
        if (!st)
            st = lp_db_release_max_code(db, rc->app, &r.version_code, &err);
        r.version_code += 1;
        if (!st)
            st = lp_db_release_insert(db, &r, NULL, &err);
        if (rc->explicit_tx) {
            if (!st)
                st = lp_db_commit(db, &err);
            else
                lp_db_rollback(db, NULL);
        }
        if (st == LP_OK) {
            rc->ok++;
        } else if (st == LP_ERR_ROLLBACK && !rc->explicit_tx) {
            rc->refused++; /* another writer took the code between read and insert */
        } else {
            rc->failed++;
            snprintf(rc->last_error, sizeof rc->last_error, "%s: %s", lp_status_name(st),
                     err.msg);
        }
    }
    lp_db_close(db);
    return NULL;
}

static void check_codes(lp_db *db, int64_t app, size_t want)
{
    lp_error err;
    lp_db_release_list list;
    assert_ok(lp_db_release_list_by_app(db, app, NULL, 0, 0, &list, &err), err);
    assert_int_equal(list.count, want);
    for (size_t i = 1; i < list.count; i++)
        assert_true(list.items[i - 1].version_code > list.items[i].version_code);
    lp_db_release_list_free(&list);
}

static void run_race(fixture *f, int64_t app, bool explicit_tx)
{
    racer r[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        r[i] = (racer){.url = f->url, .app = app, .tag = i, .explicit_tx = explicit_tx};
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 2; i++)
        if (r[i].failed)
            fail_msg("racer %d: %d failures, last: %s", i, r[i].failed, r[i].last_error);
    int ok = r[0].ok + r[1].ok;
    if (explicit_tx)
        assert_int_equal(ok, 2 * RACE_ROUNDS);
    else
        assert_int_equal(ok + r[0].refused + r[1].refused, 2 * RACE_ROUNDS);
    check_codes(f->db, app, (size_t)ok);
}

static void test_two_publishers_race(void **state)
{
    fixture *f = *state;
    /* In one transaction each: all succeed, codes 1..80 without a gap. */
    int64_t app = make_app(f->db, "raced");
    run_race(f, app, true);
    lp_error err;
    int64_t max = 0;
    assert_ok(lp_db_release_max_code(f->db, app, &max, &err), err);
    assert_int_equal(max, 2 * RACE_ROUNDS);
    /* Reading the maximum outside a transaction: some inserts lose the
     * race and are refused cleanly (LP_ERR_ROLLBACK), none is duplicated. */
    int64_t app2 = make_app(f->db, "raced-loose");
    run_race(f, app2, false);
}

/* ---- crash in the middle of a publish --------------------------------- */

#define CRASH_SPILL_RELEASES 200

/* In a child process: opens the database, starts a publish (app, token,
 * release with channels), commits it or not, then dies by SIGKILL. */
static void crash_child(const char *url, const char *app_name, bool commit)
{
    lp_error err;
    lp_db *db;
    if (lp_db_open(url, &db, &err) || lp_db_begin(db, &err))
        _exit(2);
    int64_t app = 0;
    if (lp_db_app_create(db, app_name, 0, &app, &err))
        _exit(3);
    lp_db_release_new r = rel(app, "1.0", 1);
    r.channels = BOTH;
    r.n_channels = 2;
    if (lp_db_release_insert(db, &r, NULL, &err))
        _exit(4);
    /* More releases with big notes than SQLite's page cache holds, so
     * uncommitted pages spill into the write-ahead log before the kill and
     * recovery has to ignore them. */
    static char notes[LP_DB_NOTES_MAX + 1];
    memset(notes, 'n', LP_DB_NOTES_MAX);
    for (int i = 0; i < CRASH_SPILL_RELEASES; i++) {
        char version[32];
        snprintf(version, sizeof version, "spill-%d", i);
        lp_db_release_new big = rel(app, version, 2 + i);
        big.notes = notes;
        if (lp_db_release_insert(db, &big, NULL, &err))
            _exit(7);
    }
    if (commit && lp_db_commit(db, &err))
        _exit(5);
    raise(SIGKILL);
    _exit(6);
}

static void run_crash(fixture *f, const char *app_name, bool commit)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        crash_child(f->url, app_name, commit);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("child did not die by SIGKILL (status 0x%x)", status);
}

static void test_crash_mid_publish(void **state)
{
    fixture *f = *state;
    lp_error err;
    lp_db_close(f->db);
    f->db = NULL;

    run_crash(f, "crashed", false);
    if (!f->tdb->pg) {
        /* The killed transaction did reach the write-ahead log. */
        char wal[600];
        snprintf(wal, sizeof wal, "%s-wal", f->file);
        struct stat sb;
        assert_int_equal(stat(wal, &sb), 0);
        assert_true(sb.st_size > 1024 * 1024);
    }
    assert_ok(lp_db_open(f->url, &f->db, &err), err);
    lp_db_app a;
    assert_fail(lp_db_app_get_by_name(f->db, "crashed", &a, &err), LP_ERR_NOT_FOUND, err,
                "crashed");
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM releases"), 0);
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM channels"), 0);
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM release_channels"), 0);
    /* The database works normally after the crash. */
    make_app(f->db, "after");
    lp_db_close(f->db);
    f->db = NULL;

    /* Control: the same child committing first leaves the whole release. */
    run_crash(f, "committed", true);
    assert_ok(lp_db_open(f->url, &f->db, &err), err);
    assert_ok(lp_db_app_get_by_name(f->db, "committed", &a, &err), err);
    lp_db_release got;
    assert_ok(lp_db_release_latest(f->db, a.id, "beta", &got, &err), err);
    assert_int_equal(got.n_channels, 2);
    assert_int_equal(got.version_code, 1);
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM releases"),
                     1 + CRASH_SPILL_RELEASES);
    lp_db_release_free(&got);
    lp_db_app_free(&a);
}

/* ---- input bounds ----------------------------------------------------- */

static void test_bounds(void **state)
{
    fixture *f = *state;
    lp_error err;
    char big[LP_DB_NOTES_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';

    char name65[LP_DB_NAME_MAX + 2];
    memset(name65, 'a', LP_DB_NAME_MAX + 1);
    name65[LP_DB_NAME_MAX + 1] = '\0';
    assert_fail(lp_db_app_create(f->db, name65, 0, NULL, &err), LP_ERR_TOO_LARGE, err,
                "app name: longer than 64 bytes");
    name65[LP_DB_NAME_MAX] = '\0'; /* exactly the maximum is fine */
    assert_ok(lp_db_app_create(f->db, name65, 0, NULL, &err), err);
    assert_fail(lp_db_app_create(f->db, "", 0, NULL, &err), LP_ERR_INVALID_ARG, err,
                "app name: empty");
    assert_fail(lp_db_app_create(f->db, NULL, 0, NULL, &err), LP_ERR_INVALID_ARG, err,
                "app name: missing");
    assert_fail(lp_db_app_create(f->db, "my app", 0, NULL, &err), LP_ERR_INVALID_ARG, err,
                "app name: character 3 (0x20)");
    assert_fail(lp_db_app_create(f->db, "-app", 0, NULL, &err), LP_ERR_INVALID_ARG, err,
                "must start with");
    assert_fail(lp_db_app_create(f->db, "a/../b", 0, NULL, &err), LP_ERR_INVALID_ARG, err,
                "character 2");
    assert_fail(lp_db_app_create(f->db, "ok", -5, NULL, &err), LP_ERR_INVALID_ARG, err,
                "created_at");

    int64_t app = make_app(f->db, "shop");
    lp_db_release_new r = rel(app, "1", 1);
    r.notes = big;
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_TOO_LARGE, err,
                "notes: longer than 16384 bytes");
    r.notes = "bell\a";
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_INVALID_ARG, err,
                "notes: character 5 (0x07)");
    r = rel(app, "1 0", 1);
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_INVALID_ARG, err,
                "version: character 2");
    r = rel(app, "1", 0);
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_INVALID_ARG, err,
                "version_code: 0");
    r = rel(app, "1", 1);
    r.manifest_sha256 = "abc";
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_INVALID_ARG, err,
                "manifest_sha256: 3 characters");
    r.manifest_sha256 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_INVALID_ARG, err,
                "manifest_sha256: character 1");
    r = rel(app, "1", 1);
    r.manifest_size = (uint64_t)INT64_MAX + 1;
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_TOO_LARGE, err,
                "manifest_size");
    r = rel(app, "1", 1);
    r.n_channels = 0;
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_INVALID_ARG, err,
                "at least one");
    const char *many[LP_DB_CHANNELS_MAX + 1];
    for (size_t i = 0; i <= LP_DB_CHANNELS_MAX; i++)
        many[i] = "c";
    r.channels = many;
    r.n_channels = LP_DB_CHANNELS_MAX + 1;
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_TOO_LARGE, err,
                "channels: 17 given");
    const char *const twice[] = {"beta", "beta"};
    r.channels = twice;
    r.n_channels = 2;
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_INVALID_ARG, err,
                "'beta' is listed twice");
    const char *const badch[] = {"Beta"};
    r.channels = badch;
    r.n_channels = 1;
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_INVALID_ARG, err,
                "channel name");
    r = rel(app, "1", 1);
    r.platform = "Linux";
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_INVALID_ARG, err,
                "platform");
    r.platform = NULL;
    r.arch = "x86_64_with_a_very_long_architecture_name";
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_TOO_LARGE, err, "arch");
    r.arch = NULL;
    r.state = "live";
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_INVALID_ARG, err, "state");
    r.state = NULL;
    r.runtime_version = "";
    assert_fail(lp_db_release_insert(f->db, &r, NULL, &err), LP_ERR_INVALID_ARG, err,
                "runtime_version: empty");
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM releases"), 0);

    lp_db_release_list list;
    assert_fail(lp_db_release_list_by_app(f->db, app, NULL, 0, LP_DB_LIST_MAX + 1, &list, &err),
                LP_ERR_TOO_LARGE, err, "limit");

    lp_db_token_new t = {.id = "tok id", .name = "n", .salt = SALT, .salt_len = sizeof SALT,
                         .hash = HASH, .hash_len = sizeof HASH, .scopes = "admin"};
    assert_fail(lp_db_token_insert(f->db, &t, &err), LP_ERR_INVALID_ARG, err,
                "token id: character 4");
    t.id = "tok";
    t.salt_len = 4;
    assert_fail(lp_db_token_insert(f->db, &t, &err), LP_ERR_INVALID_ARG, err, "token salt: 4");
    t.salt_len = sizeof SALT;
    t.hash_len = LP_DB_HASH_MAX + 1;
    assert_fail(lp_db_token_insert(f->db, &t, &err), LP_ERR_INVALID_ARG, err, "token hash: 65");
    t.hash_len = sizeof HASH;
    t.name = "line\nbreak";
    assert_fail(lp_db_token_insert(f->db, &t, &err), LP_ERR_INVALID_ARG, err, "token name");
    t.name = "n";
    t.scopes = "";
    assert_fail(lp_db_token_insert(f->db, &t, &err), LP_ERR_INVALID_ARG, err, "scopes: empty");
    t.scopes = big;
    assert_fail(lp_db_token_insert(f->db, &t, &err), LP_ERR_TOO_LARGE, err, "scopes: longer");
    assert_int_equal(raw_query(f->tdb, "SELECT count(*) FROM tokens"), 0);

    char path[LP_DB_PATH_MAX + 2];
    memset(path, 'p', sizeof path - 1);
    path[sizeof path - 1] = '\0';
    lp_db_upload_new u = {.id = "u1", .app_id = app, .path = path, .expected_size = 1};
    assert_fail(lp_db_upload_create(f->db, &u, &err), LP_ERR_TOO_LARGE, err, "upload path");
    u.path = "/x";
    u.expected_sha256 = "zz";
    assert_fail(lp_db_upload_create(f->db, &u, &err), LP_ERR_INVALID_ARG, err,
                "upload expected_sha256");
    u.expected_sha256 = NULL;
    u.expected_size = UINT64_MAX;
    assert_fail(lp_db_upload_create(f->db, &u, &err), LP_ERR_TOO_LARGE, err,
                "upload expected_size");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrate_from_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_future_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apps_and_channels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_code_monotonic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_refs_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uploads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_publishers_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_mid_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
