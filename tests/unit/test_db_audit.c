/*
 * test_db_audit.c — the audit log of the metadata database on a real
 * database (an SQLite file in a scratch folder, or a PostgreSQL schema when
 * LP_TEST_PG_URL is set: testdb.h): appending, listing and verifying the
 * hash chain; input bounds; tampering done on the database directly (with
 * SQLite's library or libpq; the protecting trigger dropped first, as only
 * someone with the file, or the table owner's rights, could):
 * a changed entry, a changed entry whose hash was recomputed, details that
 * are not canonical, entries removed in the middle and at the start, and
 * the newest entries removed, which only a head recorded earlier reveals;
 * the triggers refusing UPDATE and DELETE; an entry in a transaction that
 * rolls back; and two connections appending from two threads at once,
 * which must still make one chain.
 *
 * The hash of the first entry is also computed here from a canonical JSON
 * text written out by hand, so the test pins the hash definition that
 * docs/audit.md gives, not just the code's agreement with itself.
 */
#include "livepush/db.h"
#include "livepush/hash.h"
#include "testdb.h"
#include "testutil.h"
#include "tuf/json.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static const char ZERO[] = "0000000000000000000000000000000000000000000000000000000000000000";

typedef struct fixture {
    char *dir;
    lp_testdb *tdb;
    const char *url;
    lp_db *db;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = lp_test_tmpdir("db-audit")))
        return -1;
    if (!(f->tdb = lp_testdb_new(f->dir, "meta.db")))
        return -1;
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

#define assert_ok(st, err)                                                   \
    do {                                                                     \
        lp_status st_ = (st);                                                \
        if (st_ != LP_OK)                                                    \
            fail_msg("%s: %s", lp_status_name(st_), (err).msg);              \
    } while (0)

#define assert_fail(st, want, err, needle)                              \
    do {                                                                \
        lp_status st_ = (st);                                           \
        if (st_ != (want) || !strstr((err).msg, (needle)))              \
            fail_msg("got %s '%s', wanted %s containing '%s'",          \
                     lp_status_name(st_), (err).msg, lp_status_name(want), (needle)); \
    } while (0)

/* Appends one entry; returns its head. */
static lp_db_audit_head append(lp_db *db, const char *actor, const char *action, const char *app,
                               const char *subject, const char *details, int64_t at)
{
    lp_db_audit_new e = {.at = at, .actor = actor, .action = action, .app = app,
                         .subject = subject, .details = details};
    lp_db_audit_head h;
    lp_error err;
    assert_ok(lp_db_audit_append(db, &e, &h, &err), err);
    assert_true(h.seq > 0);
    assert_int_equal(strlen(h.hash), 64);
    return h;
}

/* Appends n entries "release.published" of app "a" with subject "vN". */
static void append_n(lp_db *db, int n)
{
    for (int i = 0; i < n; i++) {
        char subject[32], details[64];
        snprintf(subject, sizeof subject, "v%d", i + 1);
        snprintf(details, sizeof details, "{\"version_code\": %d}", i + 1);
        append(db, "token:abc", "release.published", "a", subject, details, 1700000000 + i);
    }
}

static int64_t count_entries(lp_db *db)
{
    lp_db_audit_list l = {0};
    lp_error err;
    assert_ok(lp_db_audit_list_entries(db, NULL, 0, 0, &l, &err), err);
    int64_t n = (int64_t)l.count;
    lp_db_audit_list_free(&l);
    return n;
}

static lp_db_audit_report verify(lp_db *db, const lp_db_audit_head *expected)
{
    lp_db_audit_report r;
    lp_error err;
    assert_ok(lp_db_audit_verify(db, expected, &r, &err), err);
    return r;
}

#define assert_report(r, want_problem, want_seq, needle)                                    \
    do {                                                                                    \
        if ((r).problem != (want_problem) || (r).seq != (want_seq) ||                       \
            !strstr((r).message, (needle)))                                                 \
            fail_msg("report: problem %d seq %lld '%s'; wanted %d seq %lld with '%s'",      \
                     (int)(r).problem, (long long)(r).seq, (r).message, (int)(want_problem), \
                     (long long)(want_seq), (needle));                                      \
    } while (0)

/* Runs SQL on the database directly (testdb.h); fails the test if it fails. */
static void raw_ok(fixture *f, const char *sql)
{
    char msg[256];
    if (lp_testdb_exec(f->tdb, sql, msg, sizeof msg) != 0)
        fail_msg("%s: %s", sql, msg);
}

/* Drops one of the audit table's protecting triggers. */
static void drop_trigger(fixture *f, const char *name)
{
    char sql[128];
    snprintf(sql, sizeof sql, "DROP TRIGGER %s%s", name, f->tdb->pg ? " ON audit" : "");
    raw_ok(f, sql);
}

/* The hash an entry must have, computed from a JSON object put together
 * here and the canonical encoder (not db_audit.c's code). */
static void hash_of(int64_t seq, int64_t at, const char *actor, const char *action,
                    const char *app, const char *subject, const char *details,
                    const char *prev, char out[65])
{
    json_t *d = json_loads(details, 0, NULL);
    assert_non_null(d);
    json_t *o = json_pack("{s:I,s:I,s:s,s:s,s:s?,s:s?,s:o,s:s}", "seq", (json_int_t)seq, "at",
                          (json_int_t)at, "actor", actor, "action", action, "app", app,
                          "subject", subject, "details", d, "prev_hash", prev);
    assert_non_null(o);
    char *canon = NULL;
    size_t len = 0;
    lp_error err;
    assert_ok(lp_cjson_dumps(o, &canon, &len, &err), err);
    uint8_t dig[LP_HASH_MAX_LEN];
    assert_ok(lp_hash_buf(LP_HASH_SHA256, canon, len, dig, &err), err);
    lp_hex_encode(dig, 32, out);
    free(canon);
    json_decref(o);
}

/* ---- appending, listing, verifying ------------------------------------ */

static void test_append_list_verify(void **state)
{
    fixture *f = *state;
    lp_error err;
    lp_db_audit_report r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_INTACT, 0, "intact: 0 entries");
    lp_db_audit_head h0;
    assert_ok(lp_db_audit_head_get(f->db, &h0, &err), err);
    assert_int_equal(h0.seq, 0);

    /* Details in any spelling are stored canonically (sorted, no spaces). */
    lp_db_audit_head h1 = append(f->db, "token:abc", "app.created", "foo", NULL,
                                 "{ \"signing\" : \"server\", \"a\": [1, 2] }", 1700000000);
    lp_db_audit_head h2 = append(f->db, "server", "token.revoked", NULL, "tok_1", NULL, 0);
    lp_db_audit_head h3 = append(f->db, "cli", "channel.created", "bar", "beta",
                                 "{\"note\":\"caf\xc3\xa9\"}", 1700000100);
    assert_int_equal(h1.seq, 1);
    assert_int_equal(h2.seq, 2);
    assert_int_equal(h3.seq, 3);

    /* Entry 1's hash from the canonical text written out by hand. */
    char text[512], want[65];
    snprintf(text, sizeof text,
             "{\"action\":\"app.created\",\"actor\":\"token:abc\",\"app\":\"foo\","
             "\"at\":1700000000,\"details\":{\"a\":[1,2],\"signing\":\"server\"},"
             "\"prev_hash\":\"%s\",\"seq\":1,\"subject\":null}",
             ZERO);
    uint8_t dig[LP_HASH_MAX_LEN];
    assert_ok(lp_hash_buf(LP_HASH_SHA256, text, strlen(text), dig, &err), err);
    lp_hex_encode(dig, 32, want);
    assert_string_equal(h1.hash, want);

    lp_db_audit_list l = {0};
    assert_ok(lp_db_audit_list_entries(f->db, NULL, 0, 0, &l, &err), err);
    assert_int_equal(l.count, 3);
    assert_int_equal(l.items[0].seq, 1);
    assert_int_equal(l.items[0].at, 1700000000);
    assert_string_equal(l.items[0].actor, "token:abc");
    assert_string_equal(l.items[0].action, "app.created");
    assert_string_equal(l.items[0].app, "foo");
    assert_null(l.items[0].subject);
    assert_string_equal(l.items[0].details, "{\"a\":[1,2],\"signing\":\"server\"}");
    assert_string_equal(l.items[0].prev_hash, ZERO);
    assert_string_equal(l.items[0].hash, h1.hash);
    assert_null(l.items[1].app);
    assert_string_equal(l.items[1].subject, "tok_1");
    assert_string_equal(l.items[1].details, "{}");
    assert_true(l.items[1].at > 1700000000); /* 0 = now */
    assert_string_equal(l.items[1].prev_hash, h1.hash);
    assert_string_equal(l.items[2].prev_hash, h2.hash);
    /* Each stored hash is the one the definition gives. */
    for (size_t i = 0; i < l.count; i++) {
        char h[65];
        hash_of(l.items[i].seq, l.items[i].at, l.items[i].actor, l.items[i].action,
                l.items[i].app, l.items[i].subject, l.items[i].details, l.items[i].prev_hash, h);
        assert_string_equal(l.items[i].hash, h);
    }
    lp_db_audit_list_free(&l);

    /* Filters and paging. */
    assert_ok(lp_db_audit_list_entries(f->db, "bar", 0, 0, &l, &err), err);
    assert_int_equal(l.count, 1);
    assert_int_equal(l.items[0].seq, 3);
    lp_db_audit_list_free(&l);
    assert_ok(lp_db_audit_list_entries(f->db, NULL, 1, 1, &l, &err), err);
    assert_int_equal(l.count, 1);
    assert_int_equal(l.items[0].seq, 2);
    lp_db_audit_list_free(&l);
    assert_ok(lp_db_audit_list_entries(f->db, NULL, 3, 0, &l, &err), err);
    assert_int_equal(l.count, 0);
    lp_db_audit_list_free(&l);
    assert_fail(lp_db_audit_list_entries(f->db, "Bad App", 0, 0, &l, &err), LP_ERR_INVALID_ARG,
                err, "app");
    assert_fail(lp_db_audit_list_entries(f->db, NULL, -1, 0, &l, &err), LP_ERR_INVALID_ARG, err,
                "after");
    assert_fail(lp_db_audit_list_entries(f->db, NULL, 0, LP_DB_LIST_MAX + 1, &l, &err),
                LP_ERR_TOO_LARGE, err, "limit");

    lp_db_audit_head head;
    assert_ok(lp_db_audit_head_get(f->db, &head, &err), err);
    assert_int_equal(head.seq, 3);
    assert_string_equal(head.hash, h3.hash);

    r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_INTACT, 0, "audit log intact: 3 entries, head 3 ");
    assert_int_equal(r.entries, 3);
    assert_int_equal(r.head.seq, 3);
    assert_string_equal(r.head.hash, h3.hash);
    assert_non_null(strstr(r.message, h3.hash));
    /* A head recorded at any point of the log is found in it. */
    r = verify(f->db, &h2);
    assert_report(r, LP_DB_AUDIT_INTACT, 0, "intact");
    r = verify(f->db, &h3);
    assert_report(r, LP_DB_AUDIT_INTACT, 0, "intact");
    /* A made-up head is not. */
    lp_db_audit_head bogus = h2;
    bogus.hash[0] = bogus.hash[0] == 'a' ? 'b' : 'a';
    r = verify(f->db, &bogus);
    assert_report(r, LP_DB_AUDIT_HEAD_DIFFERS, 2, "audit entry 2 differs from the expected head");
    bogus.seq = 9;
    memcpy(bogus.hash, h3.hash, 65);
    r = verify(f->db, &bogus);
    assert_report(r, LP_DB_AUDIT_SHORT, 9, "audit log ends at entry 3 but the expected head is "
                                           "entry 9");
    /* A malformed expected head is refused, not judged. */
    lp_db_audit_head odd = {.seq = 1};
    snprintf(odd.hash, sizeof odd.hash, "xyz");
    assert_fail(lp_db_audit_verify(f->db, &odd, &r, &err), LP_ERR_INVALID_ARG, err,
                "expected audit head");
}

/* An empty log checked against a head: everything was removed. */
static void test_empty_log_with_head(void **state)
{
    fixture *f = *state;
    lp_db_audit_head h = {.seq = 4};
    memcpy(h.hash, ZERO, 65);
    lp_db_audit_report r = verify(f->db, &h);
    assert_report(r, LP_DB_AUDIT_SHORT, 4, "audit log is empty but the expected head is entry 4");
}

/* ---- input checks -------------------------------------------------------- */

static void test_input_checks(void **state)
{
    fixture *f = *state;
    lp_error err;
    char big[LP_DB_AUDIT_DETAILS_MAX + 64];
    struct {
        lp_db_audit_new e;
        lp_status want;
        const char *needle;
    } cases[] = {
        {{.actor = NULL, .action = "a"}, LP_ERR_INVALID_ARG, "audit actor: missing"},
        {{.actor = "", .action = "a"}, LP_ERR_INVALID_ARG, "audit actor: empty"},
        {{.actor = "token:\x01", .action = "a"}, LP_ERR_INVALID_ARG, "audit actor: character 7"},
        {{.actor = "tok\xff", .action = "a"}, LP_ERR_INVALID_ARG, "audit actor: not valid UTF-8"},
        {{.actor = "x", .action = NULL}, LP_ERR_INVALID_ARG, "audit action: missing"},
        {{.actor = "x", .action = "App.created"}, LP_ERR_INVALID_ARG, "audit action: must start"},
        {{.actor = "x", .action = ".x"}, LP_ERR_INVALID_ARG, "audit action: must start"},
        {{.actor = "x", .action = "app-created"}, LP_ERR_INVALID_ARG,
         "audit action: character 4 (0x2d)"},
        {{.actor = "x", .action = "a", .app = "Foo"}, LP_ERR_INVALID_ARG, "audit app"},
        {{.actor = "x", .action = "a", .subject = ""}, LP_ERR_INVALID_ARG, "audit subject: empty"},
        {{.actor = "x", .action = "a", .at = -1}, LP_ERR_INVALID_ARG, "audit at"},
        {{.actor = "x", .action = "a", .details = "[1,2]"}, LP_ERR_INVALID_ARG,
         "audit details: not a JSON object"},
        {{.actor = "x", .action = "a", .details = "{\"a\":"}, LP_ERR_MALFORMED,
         "audit details: invalid JSON"},
        {{.actor = "x", .action = "a", .details = "{\"a\":1.5}"}, LP_ERR_MALFORMED,
         "audit details: a real number"},
        {{.actor = "x", .action = "a", .details = "{\"a\":\"two\\nlines\"}"},
         LP_ERR_INVALID_ARG, "audit details: a string holds a control character"},
        {{.actor = "x", .action = "a", .details = "{\"a\":1,\"a\":2}"}, LP_ERR_MALFORMED,
         "audit details"},
        {{.actor = "x", .action = "a",
          .details = "{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{}}}}}}}}}"},
         LP_ERR_MALFORMED, "audit details: JSON nested deeper than 8"},
        {{.actor = "x", .action = "a", .details = big}, LP_ERR_TOO_LARGE,
         "audit details: longer than 16384 bytes"},
    };
    /* {"k":"xxxx..."} over the bound */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "{\"k\":\"", 6);
    memcpy(big + sizeof big - 3, "\"}", 3);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lp_error_clear(&err);
        lp_status st = lp_db_audit_append(f->db, &cases[i].e, NULL, &err);
        if (st != cases[i].want || !strstr(err.msg, cases[i].needle))
            fail_msg("case %zu: got %s '%s', wanted %s with '%s'", i, lp_status_name(st),
                     err.msg, lp_status_name(cases[i].want), cases[i].needle);
    }
    /* Lengths at and past the bounds. */
    char action[LP_DB_AUDIT_ACTION_MAX + 2], actor[LP_DB_AUDIT_ACTOR_MAX + 2],
        subject[LP_DB_AUDIT_SUBJECT_MAX + 2];
    memset(action, 'a', sizeof action - 1);
    action[sizeof action - 1] = '\0';
    memset(actor, 'w', sizeof actor - 1);
    actor[sizeof actor - 1] = '\0';
    memset(subject, 's', sizeof subject - 1);
    subject[sizeof subject - 1] = '\0';
    lp_db_audit_new e = {.actor = actor, .action = "x"};
    assert_fail(lp_db_audit_append(f->db, &e, NULL, &err), LP_ERR_TOO_LARGE, err,
                "audit actor: longer than 128");
    e = (lp_db_audit_new){.actor = "x", .action = action};
    assert_fail(lp_db_audit_append(f->db, &e, NULL, &err), LP_ERR_TOO_LARGE, err,
                "audit action: longer than 64");
    e = (lp_db_audit_new){.actor = "x", .action = "x", .subject = subject};
    assert_fail(lp_db_audit_append(f->db, &e, NULL, &err), LP_ERR_TOO_LARGE, err,
                "audit subject: longer than 256");
    assert_fail(lp_db_audit_append(f->db, NULL, NULL, &err), LP_ERR_INVALID_ARG, err, "missing");
    assert_int_equal(count_entries(f->db), 0);

    /* Exactly at the bounds is fine. */
    action[LP_DB_AUDIT_ACTION_MAX] = '\0';
    actor[LP_DB_AUDIT_ACTOR_MAX] = '\0';
    subject[LP_DB_AUDIT_SUBJECT_MAX] = '\0';
    append(f->db, actor, action, NULL, subject, "{\"nested\":{\"b\":{\"c\":{\"d\":{}}}}}", 0);
    assert_int_equal(count_entries(f->db), 1);
    assert_int_equal(verify(f->db, NULL).problem, LP_DB_AUDIT_INTACT);
}

/* ---- tampering ------------------------------------------------------------- */

static void test_changed_entry_found(void **state)
{
    fixture *f = *state;
    append_n(f->db, 6);
    drop_trigger(f, "audit_no_update");

    /* A field changed, the hash left: entry 3 no longer matches it. */
    raw_ok(f, "UPDATE audit SET actor = 'token:someone-else' WHERE seq = 3");
    lp_db_audit_report r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_CHANGED, 3,
                  "audit entry 3 was changed: its hash does not match its contents");
    assert_int_equal(r.entries, 2);
    assert_int_equal(r.head.seq, 2);
}

static void test_changed_and_rehashed_found(void **state)
{
    fixture *f = *state;
    append_n(f->db, 5);
    drop_trigger(f, "audit_no_update");
    /* Entry 3's details changed and its hash recomputed to match: entry 3
     * looks whole, but entry 4 was chained to the old hash. */
    lp_db_audit_list l = {0};
    lp_error err;
    assert_ok(lp_db_audit_list_entries(f->db, NULL, 2, 1, &l, &err), err);
    char h[65], sql[512];
    hash_of(3, l.items[0].at, l.items[0].actor, l.items[0].action, l.items[0].app,
            l.items[0].subject, "{\"version_code\":99}", l.items[0].prev_hash, h);
    lp_db_audit_list_free(&l);
    snprintf(sql, sizeof sql,
             "UPDATE audit SET details = '{\"version_code\":99}', hash = '%s' WHERE seq = 3", h);
    raw_ok(f, sql);
    lp_db_audit_report r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_UNLINKED, 4,
                  "audit entry 4 does not follow entry 3: its prev_hash is not the hash of "
                  "entry 3");

    /* Details that mean the same but are not canonical: changed too. */
    raw_ok(f, "UPDATE audit SET details = '{ \"version_code\": 2 }' WHERE seq = 2");
    r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_CHANGED, 2, "its details are not in canonical form");
    /* Details that are not JSON at all, a NULL, a time that is text. */
    raw_ok(f, "UPDATE audit SET details = 'nonsense' WHERE seq = 2");
    r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_CHANGED, 2, "its details are not a JSON object");
    if (f->tdb->pg) {
        /* The column is a BIGINT: no text fits, but a NULL does once the
         * constraint is gone.  (Text that is not UTF-8 cannot be stored in
         * a UTF8 database at all.) */
        raw_ok(f, "ALTER TABLE audit ALTER COLUMN at DROP NOT NULL; "
                  "UPDATE audit SET at = NULL WHERE seq = 1");
        r = verify(f->db, NULL);
        assert_report(r, LP_DB_AUDIT_CHANGED, 1, "its time is not an integer");
        return;
    }
    raw_ok(f, "UPDATE audit SET at = 'yesterday' WHERE seq = 1");
    r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_CHANGED, 1, "its time is not an integer");
    raw_ok(f, "UPDATE audit SET at = 1, app = CAST(x'ff' AS TEXT) WHERE seq = 1");
    r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_CHANGED, 1, "its app is not valid UTF-8");
}

static void test_removed_entries_found(void **state)
{
    fixture *f = *state;
    append_n(f->db, 8);
    drop_trigger(f, "audit_no_delete");

    raw_ok(f, "DELETE FROM audit WHERE seq = 5");
    lp_db_audit_report r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_MISSING, 5,
                  "audit entry 5 is missing (entries go from 4 to 6)");
    assert_int_equal(r.seq_end, 5);

    raw_ok(f, "DELETE FROM audit WHERE seq = 6");
    r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_MISSING, 5,
                  "audit entries 5 to 6 are missing (entries go from 4 to 7)");
    assert_int_equal(r.seq_end, 6);

    raw_ok(f, "DELETE FROM audit WHERE seq = 1");
    r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_MISSING, 1,
                  "audit entry 1 is missing (the log starts at entry 2)");

    /* Renumbering to close the gap breaks the hashes (seq is hashed). */
    drop_trigger(f, "audit_no_update");
    raw_ok(f, "UPDATE audit SET seq = seq - 1");
    r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_CHANGED, 1, "audit entry 1 was changed");
}

static void test_tail_removed_needs_head(void **state)
{
    fixture *f = *state;
    append_n(f->db, 5);
    lp_error err;
    lp_db_audit_head head;
    assert_ok(lp_db_audit_head_get(f->db, &head, &err), err);
    assert_int_equal(head.seq, 5);
    drop_trigger(f, "audit_no_delete");
    raw_ok(f, "DELETE FROM audit WHERE seq >= 4");

    /* Without a head the shorter chain is whole: nothing to see. */
    lp_db_audit_report r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_INTACT, 0, "audit log intact: 3 entries, head 3 ");
    /* With the head recorded before, the removal shows. */
    r = verify(f->db, &head);
    assert_report(r, LP_DB_AUDIT_SHORT, 5,
                  "audit log ends at entry 3 but the expected head is entry 5");
    assert_int_equal(r.head.seq, 3);

    /* Appending again after the cut reuses the numbers: the chain is whole
     * again, but entry 5 is not the one the head recorded. */
    append_n(f->db, 2);
    r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_INTACT, 0, "audit log intact: 5 entries");
    r = verify(f->db, &head);
    assert_report(r, LP_DB_AUDIT_HEAD_DIFFERS, 5, "audit entry 5 differs from the expected head");
}

static void test_triggers_refuse(void **state)
{
    fixture *f = *state;
    append_n(f->db, 2);
    char msg[256];
    assert_int_equal(
        lp_testdb_exec(f->tdb, "UPDATE audit SET actor = 'x' WHERE seq = 1", msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "audit entries cannot be changed"));
    assert_int_equal(lp_testdb_exec(f->tdb, "DELETE FROM audit WHERE seq = 2", msg, sizeof msg),
                     -1);
    assert_non_null(strstr(msg, "audit entries cannot be removed"));
    assert_int_equal(lp_testdb_exec(f->tdb, "DELETE FROM audit", msg, sizeof msg), -1);
    if (f->tdb->pg) {
        /* TRUNCATE, which skips DELETE triggers, is refused too. */
        assert_int_equal(lp_testdb_exec(f->tdb, "TRUNCATE audit", msg, sizeof msg), -1);
        assert_non_null(strstr(msg, "audit entries cannot be removed"));
    }
    assert_int_equal(count_entries(f->db), 2);
    assert_int_equal(verify(f->db, NULL).problem, LP_DB_AUDIT_INTACT);
}

/* ---- transactions and concurrency --------------------------------------- */

static void test_joins_transaction(void **state)
{
    fixture *f = *state;
    lp_error err;
    /* Rolled back with the action it records. */
    assert_ok(lp_db_begin(f->db, &err), err);
    assert_ok(lp_db_app_create(f->db, "gone", 0, NULL, &err), err);
    lp_db_audit_head h = append(f->db, "x", "app.created", "gone", NULL, NULL, 0);
    assert_int_equal(h.seq, 1);
    /* A second entry in the same transaction chains onto the first. */
    lp_db_audit_head h2 = append(f->db, "x", "channel.created", "gone", "beta", NULL, 0);
    assert_int_equal(h2.seq, 2);
    assert_ok(lp_db_rollback(f->db, &err), err);
    assert_int_equal(count_entries(f->db), 0);
    lp_db_app app = {0};
    assert_int_equal(lp_db_app_get_by_name(f->db, "gone", &app, &err), LP_ERR_NOT_FOUND);

    /* Committed with it. */
    assert_ok(lp_db_begin(f->db, &err), err);
    assert_ok(lp_db_app_create(f->db, "kept", 0, NULL, &err), err);
    h = append(f->db, "x", "app.created", "kept", NULL, NULL, 0);
    assert_int_equal(h.seq, 1);
    assert_ok(lp_db_commit(f->db, &err), err);
    assert_int_equal(count_entries(f->db), 1);
    assert_ok(lp_db_app_get_by_name(f->db, "kept", &app, &err), err);
    lp_db_app_free(&app);
    assert_int_equal(verify(f->db, &h).problem, LP_DB_AUDIT_INTACT);
}

#define RACE_ROUNDS 60

typedef struct racer {
    const char *url;
    const char *actor;
    int ok;
    char msg[LP_ERROR_MSG_MAX];
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    lp_error err;
    lp_db *db = NULL;
    if (lp_db_open(r->url, &db, &err) != LP_OK) {
        snprintf(r->msg, sizeof r->msg, "open: %s", err.msg);
        return NULL;
    }
    for (int i = 0; i < RACE_ROUNDS; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "%d", i);
        lp_db_audit_new e = {.actor = r->actor, .action = "race.step", .subject = subject};
        if (lp_db_audit_append(db, &e, NULL, &err) != LP_OK) {
            snprintf(r->msg, sizeof r->msg, "append %d: %s", i, err.msg);
            break;
        }
        r->ok++;
    }
    lp_db_close(db);
    return NULL;
}

static void test_two_appenders_one_chain(void **state)
{
    fixture *f = *state;
    racer a = {.url = f->url, .actor = "racer-a"}, b = {.url = f->url, .actor = "racer-b"};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, race, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, race, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    if (a.ok != RACE_ROUNDS || b.ok != RACE_ROUNDS)
        fail_msg("a: %d (%s), b: %d (%s)", a.ok, a.msg, b.ok, b.msg);

    lp_db_audit_list l = {0};
    lp_error err;
    assert_ok(lp_db_audit_list_entries(f->db, NULL, 0, 0, &l, &err), err);
    assert_int_equal(l.count, 2 * RACE_ROUNDS);
    int seen_a = 0, seen_b = 0;
    for (size_t i = 0; i < l.count; i++) {
        assert_int_equal(l.items[i].seq, (int64_t)i + 1);
        /* one chain: every entry links to the entry before it, none twice */
        assert_string_equal(l.items[i].prev_hash, i ? l.items[i - 1].hash : ZERO);
        seen_a += !strcmp(l.items[i].actor, "racer-a");
        seen_b += !strcmp(l.items[i].actor, "racer-b");
    }
    assert_int_equal(seen_a, RACE_ROUNDS);
    assert_int_equal(seen_b, RACE_ROUNDS);
    lp_db_audit_list_free(&l);
    lp_db_audit_report r = verify(f->db, NULL);
    assert_report(r, LP_DB_AUDIT_INTACT, 0, "audit log intact: 120 entries");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_list_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_log_with_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_entry_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_and_rehashed_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removed_entries_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail_removed_needs_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_triggers_refuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_joins_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_appenders_one_chain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
