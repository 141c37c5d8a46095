/*
 * test_db_events.c — devices and their events in the metadata database
 * (schema version 2, the download figures version 4), on a real database:
 * an SQLite file in a scratch folder, or a PostgreSQL schema when
 * LP_TEST_PG_URL is set (testdb.h).
 *
 * Covers: a batch is stored once (re-sent and overlapping batches count
 * duplicates; two connections racing with the same batch store it once),
 * the device row (first/last seen, version_code from the newest activating
 * event even when batches arrive out of order, newest event, dropped kept
 * at its largest), lists newest first with every filter and paging, device
 * lists with paging, every field's bounds (the bad one named, nothing of
 * the batch stored), a batch inside a caller's transaction that is rolled
 * back, and the migration of a version 1 database in place: the database
 * is made directly (SQLite's library, or libpq on PostgreSQL: testdb.h)
 * from the version 1 script (the first entry of the migration list, which
 * is never edited), holds an app, a token and a release, and keeps them
 * after lp_db_open brings it to the current version; and of a
 * version 3 database with an event, which gains the figures' columns
 * (the old event reads them as not given, a new one stores them).  The
 * figures round-trip, absent ones read back as not given, negative ones
 * are refused naming the field.
 */
#include "livepush/db.h"
#include "store/db_backend.h"
#include "testdb.h"
#include "testutil.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define DEV_A "0123456789abcdef0123456789abcdef"
#define DEV_B "fedcba9876543210"
#define DEV_C "00000000000000000000000000000000000000000000000000000000000000cc"

typedef struct fixture {
    char *dir;
    lp_testdb *tdb;
    const char *url;
    lp_db *db;
    int64_t app;
} fixture;

#define assert_ok(st, err)                                                  \
    do {                                                                    \
        lp_status st_ = (st);                                               \
        if (st_ != LP_OK)                                                   \
            fail_msg("%s: %s", lp_status_name(st_), (err).msg);             \
    } while (0)

#define assert_fail(st, want, err, needle)                                  \
    do {                                                                    \
        lp_status st_ = (st);                                               \
        if (st_ != (want) || !strstr((err).msg, (needle)))                  \
            fail_msg("got %s '%s', wanted %s containing '%s'",              \
                     lp_status_name(st_), (err).msg, lp_status_name(want), (needle)); \
    } while (0)

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = lp_test_tmpdir("dbev")))
        return -1;
    if (!(f->tdb = lp_testdb_new(f->dir, "meta.db")))
        return -1;
    f->url = f->tdb->url;
    lp_error err;
    if (lp_db_open(f->url, &f->db, &err) || lp_db_app_create(f->db, "shop", 100, &f->app, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
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

static lp_db_event_new ev(int64_t seq, const char *type, int64_t code)
{
    return (lp_db_event_new){.seq = seq, .type = type, .at = 1700000000 + seq,
                             .version_code = code, .duration_ms = -1, .bytes = -1,
                             .files_fetched = -1, .files_delta = -1, .bytes_delta_saved = -1,
                             .delta_fallbacks = -1};
}

/* Inserts events into app/device and returns how many were new. */
static size_t put(lp_db *db, int64_t app, const char *dev, const lp_db_event_new *e, size_t n,
                  int64_t dropped, int64_t when)
{
    lp_error err;
    size_t added = 99;
    lp_db_event_batch b = {.app_id = app, .device_id = dev, .events = e, .n_events = n,
                           .dropped = dropped, .received_at = when};
    assert_ok(lp_db_events_insert(db, &b, &added, &err), err);
    return added;
}

static long long count_events(fixture *f)
{
    lp_db_event_list l;
    lp_error err;
    assert_ok(lp_db_event_list_by_app(f->db, f->app, NULL, &l, &err), err);
    long long n = (long long)l.count;
    lp_db_event_list_free(&l);
    return n;
}

static void test_batch_once(void **state)
{
    fixture *f = *state;
    lp_db_event_new e[4] = {ev(1, "checked", 0), ev(2, "downloaded", 2), ev(3, "staged", 2),
                            ev(4, "activated", 2)};
    e[3].from_version_code = 1;
    e[3].version = "v2";
    e[3].duration_ms = 12;
    e[2].reason = "took long\n(second line)";
    e[1].bytes = 5311; /* the download's figures */
    e[1].files_fetched = 3;
    e[1].files_delta = 2;
    e[1].bytes_delta_saved = INT64_MAX;
    e[1].delta_fallbacks = 0;
    assert_int_equal(put(f->db, f->app, DEV_A, e, 3, 0, 5000), 3);
    assert_int_equal(put(f->db, f->app, DEV_A, e, 3, 0, 5001), 0);  /* re-sent */
    assert_int_equal(put(f->db, f->app, DEV_A, e + 2, 2, 4, 5002), 1); /* overlapping */
    assert_int_equal(put(f->db, f->app, DEV_A, NULL, 0, 2, 5003), 0);  /* check-in */
    assert_int_equal(count_events(f), 4);

    lp_error err;
    lp_db_device d;
    assert_ok(lp_db_device_get(f->db, f->app, DEV_A, &d, &err), err);
    assert_string_equal(d.device_id, DEV_A);
    assert_int_equal(d.first_seen, 5000);
    assert_int_equal(d.last_seen, 5003);
    assert_int_equal(d.dropped, 4); /* the largest reported, not the last */
    assert_int_equal(d.version_code, 2);
    assert_true(d.has_last_event);
    assert_int_equal(d.last_event.seq, 4);
    assert_string_equal(d.last_event.type, "activated");
    assert_string_equal(d.last_event.version, "v2");
    assert_int_equal(d.last_event.from_version_code, 1);
    assert_int_equal(d.last_event.duration_ms, 12);
    assert_int_equal(d.last_event.at, 1700000004);
    assert_int_equal(d.last_event.received_at, 5002);
    assert_null(d.last_event.reason);
    lp_db_device_free(&d);

    /* fields come back as stored; absent ones as absent */
    lp_db_event_query q = {.device_id = DEV_A, .type = "staged"};
    lp_db_event_list l;
    assert_ok(lp_db_event_list_by_app(f->db, f->app, &q, &l, &err), err);
    assert_int_equal(l.count, 1);
    assert_string_equal(l.items[0].reason, "took long\n(second line)");
    assert_null(l.items[0].version);
    assert_int_equal(l.items[0].duration_ms, -1);
    assert_int_equal(l.items[0].from_version_code, 0);
    assert_int_equal(l.items[0].bytes, -1);
    assert_int_equal(l.items[0].files_fetched, -1);
    assert_int_equal(l.items[0].files_delta, -1);
    assert_int_equal(l.items[0].bytes_delta_saved, -1);
    assert_int_equal(l.items[0].delta_fallbacks, -1);
    lp_db_event_list_free(&l);
    q.type = "downloaded";
    assert_ok(lp_db_event_list_by_app(f->db, f->app, &q, &l, &err), err);
    assert_int_equal(l.count, 1);
    assert_int_equal(l.items[0].bytes, 5311);
    assert_int_equal(l.items[0].files_fetched, 3);
    assert_int_equal(l.items[0].files_delta, 2);
    assert_int_equal(l.items[0].bytes_delta_saved, INT64_MAX);
    assert_int_equal(l.items[0].delta_fallbacks, 0);
    lp_db_event_list_free(&l);

    /* a device that only checked in has a row and no event */
    assert_int_equal(put(f->db, f->app, DEV_B, NULL, 0, 0, 6000), 0);
    assert_ok(lp_db_device_get(f->db, f->app, DEV_B, &d, &err), err);
    assert_false(d.has_last_event);
    assert_int_equal(d.version_code, 0);
    lp_db_device_free(&d);
    assert_fail(lp_db_device_get(f->db, f->app, DEV_C, &d, &err), LP_ERR_NOT_FOUND, err, DEV_C);
}

/* The device's release follows its newest activating event, whatever order
 * the batches arrive in; failures do not change it. */
static void test_device_version(void **state)
{
    fixture *f = *state;
    lp_db_event_new later[2] = {ev(5, "activated", 5), ev(6, "failed", 6)};
    lp_db_event_new older[2] = {ev(2, "activated", 2), ev(3, "healthy", 2)};
    assert_int_equal(put(f->db, f->app, DEV_A, later, 2, 0, 0), 2);
    assert_int_equal(put(f->db, f->app, DEV_A, older, 2, 0, 0), 2);
    lp_error err;
    lp_db_device d;
    assert_ok(lp_db_device_get(f->db, f->app, DEV_A, &d, &err), err);
    assert_int_equal(d.version_code, 5);
    assert_int_equal(d.last_event.seq, 6);
    assert_true(d.last_seen >= d.first_seen && d.first_seen > 1700000000); /* 0 = now */
    lp_db_device_free(&d);
    lp_db_event_new back[1] = {ev(7, "rolled_back", 2)};
    back[0].from_version_code = 6;
    assert_int_equal(put(f->db, f->app, DEV_A, back, 1, 0, 0), 1);
    assert_ok(lp_db_device_get(f->db, f->app, DEV_A, &d, &err), err);
    assert_int_equal(d.version_code, 2);
    lp_db_device_free(&d);

    /* A batch that arrives after a newer one, with an activation newer than
     * the one the row knows (seq 12 between 10 and 14): the row follows it;
     * later check-ins ("checked", no release) leave it. */
    lp_db_event_new first[2] = {ev(10, "activated", 7), ev(14, "checked", 0)};
    lp_db_event_new late[1] = {ev(12, "activated", 8)};
    lp_db_event_new checks[2] = {ev(15, "checked", 0), ev(16, "checked", 0)};
    int64_t want[3] = {7, 8, 8};
    const lp_db_event_new *batch[3] = {first, late, checks};
    size_t n[3] = {2, 1, 2};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(put(f->db, f->app, DEV_B, batch[i], n[i], 0, 0), n[i]);
        assert_ok(lp_db_device_get(f->db, f->app, DEV_B, &d, &err), err);
        assert_int_equal(d.version_code, want[i]);
        assert_int_equal(d.last_event.seq, i < 2 ? 14 : 16);
        lp_db_device_free(&d);
    }
}

static void test_list_and_paging(void **state)
{
    fixture *f = *state;
    static const char *const types[] = {"checked", "downloaded", "activated"};
    const char *devs[] = {DEV_A, DEV_B, DEV_C};
    for (int64_t seq = 1; seq <= 10; seq++)
        for (size_t d = 0; d < 3; d++) {
            lp_db_event_new e = ev(seq, types[seq % 3], seq);
            assert_int_equal(put(f->db, f->app, devs[d], &e, 1, 0, 0), 1);
        }
    lp_error err;
    lp_db_event_list l;
    /* all 30, newest stored first, in pages of 7 */
    int64_t before = 0, last_id = INT64_MAX;
    size_t seen = 0, pages = 0;
    do {
        lp_db_event_query q = {.before_id = before, .limit = 7};
        assert_ok(lp_db_event_list_by_app(f->db, f->app, &q, &l, &err), err);
        for (size_t i = 0; i < l.count; i++) {
            assert_true(l.items[i].id < last_id);
            last_id = l.items[i].id;
        }
        seen += l.count;
        pages++;
        before = l.count ? l.items[l.count - 1].id : 0;
        size_t n = l.count;
        lp_db_event_list_free(&l);
        if (n < 7)
            break;
    } while (1);
    assert_int_equal(seen, 30);
    assert_int_equal(pages, 5);

    /* filters: device, type, both, since */
    lp_db_event_query q = {.device_id = DEV_B};
    assert_ok(lp_db_event_list_by_app(f->db, f->app, &q, &l, &err), err);
    assert_int_equal(l.count, 10);
    assert_int_equal(l.items[0].seq, 10);
    assert_string_equal(l.items[9].device_id, DEV_B);
    lp_db_event_list_free(&l);
    q = (lp_db_event_query){.type = "activated"}; /* seq 2, 5, 8 on each device */
    assert_ok(lp_db_event_list_by_app(f->db, f->app, &q, &l, &err), err);
    assert_int_equal(l.count, 9);
    lp_db_event_list_free(&l);
    q = (lp_db_event_query){.type = "activated", .device_id = DEV_C, .since = 1700000005};
    assert_ok(lp_db_event_list_by_app(f->db, f->app, &q, &l, &err), err);
    assert_int_equal(l.count, 2);
    assert_int_equal(l.items[0].seq, 8);
    assert_int_equal(l.items[1].seq, 5);
    lp_db_event_list_free(&l);

    /* another app sees none of them */
    int64_t other;
    assert_ok(lp_db_app_create(f->db, "other", 0, &other, &err), err);
    assert_ok(lp_db_event_list_by_app(f->db, other, NULL, &l, &err), err);
    assert_int_equal(l.count, 0);
    lp_db_event_list_free(&l);

    /* devices, ordered by ID, paged */
    lp_db_device_list dl;
    assert_ok(lp_db_device_list_by_app(f->db, f->app, NULL, 2, &dl, &err), err);
    assert_int_equal(dl.count, 2);
    assert_string_equal(dl.items[0].device_id, DEV_C);
    assert_string_equal(dl.items[1].device_id, DEV_A);
    assert_int_equal(dl.items[1].version_code, 8);
    assert_int_equal(dl.items[1].last_event.seq, 10);
    char after[LP_DB_DEVICE_ID_MAX + 1];
    strcpy(after, dl.items[1].device_id);
    lp_db_device_list_free(&dl);
    assert_ok(lp_db_device_list_by_app(f->db, f->app, after, 2, &dl, &err), err);
    assert_int_equal(dl.count, 1);
    assert_string_equal(dl.items[0].device_id, DEV_B);
    lp_db_device_list_free(&dl);
}

/* Every bound, with the field named and nothing of the batch stored. */
static void test_validation(void **state)
{
    fixture *f = *state;
    lp_error err;
    char long_reason[LP_DB_REASON_MAX + 2];
    memset(long_reason, 'r', sizeof long_reason - 1);
    long_reason[sizeof long_reason - 1] = '\0';
    struct {
        lp_db_event_new e;
        const char *needle;
    } bad[] = {
        {{.seq = 0, .type = "checked", .at = 1, .duration_ms = -1}, "events[2].seq"},
        {{.seq = 3, .type = "exploded", .at = 1, .duration_ms = -1}, "events[2].type: 'exploded'"},
        {{.seq = 3, .type = NULL, .at = 1, .duration_ms = -1}, "events[2].type: missing"},
        {{.seq = 3, .type = "failed", .at = 0, .duration_ms = -1}, "events[2].at"},
        {{.seq = 3, .type = "failed", .at = LP_DB_TIME_MAX + 1, .duration_ms = -1}, "events[2].at"},
        {{.seq = 3, .type = "failed", .at = 1, .version = "v 2", .duration_ms = -1},
         "events[2].version"},
        {{.seq = 3, .type = "failed", .at = 1, .version_code = -2, .duration_ms = -1},
         "events[2].version_code"},
        {{.seq = 3, .type = "failed", .at = 1, .from_version_code = -1, .duration_ms = -1},
         "events[2].from_version_code"},
        {{.seq = 3, .type = "failed", .at = 1, .reason = "bell\a", .duration_ms = -1},
         "events[2].reason"},
        {{.seq = 3, .type = "failed", .at = 1, .reason = long_reason, .duration_ms = -1},
         "events[2].reason: longer than 1024"},
        {{.seq = 3, .type = "failed", .at = 1, .reason = "", .duration_ms = -1},
         "events[2].reason: empty"},
        {{.seq = 3, .type = "failed", .at = 1, .duration_ms = -2}, "events[2].duration_ms"},
        {{.seq = 3, .type = "failed", .at = 1, .duration_ms = LP_DB_DURATION_MS_MAX + 1},
         "events[2].duration_ms"},
        {{.seq = 3, .type = "downloaded", .at = 1, .duration_ms = -1, .bytes = -2},
         "events[2].bytes: -2"},
        {{.seq = 3, .type = "downloaded", .at = 1, .duration_ms = -1, .files_fetched = -5},
         "events[2].files_fetched"},
        {{.seq = 3, .type = "downloaded", .at = 1, .duration_ms = -1, .files_delta = INT64_MIN},
         "events[2].files_delta"},
        {{.seq = 3, .type = "downloaded", .at = 1, .duration_ms = -1, .bytes_delta_saved = -2},
         "events[2].bytes_delta_saved"},
        {{.seq = 3, .type = "downloaded", .at = 1, .duration_ms = -1, .delta_fallbacks = -3},
         "events[2].delta_fallbacks"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lp_db_event_new e[3] = {ev(1, "checked", 0), ev(2, "checked", 0), bad[i].e};
        lp_db_event_batch b = {.app_id = f->app, .device_id = DEV_A, .events = e, .n_events = 3};
        size_t added = 7;
        lp_status st = lp_db_events_insert(f->db, &b, &added, &err);
        if (st == LP_OK || !strstr(err.msg, bad[i].needle))
            fail_msg("case %zu: %s '%s', wanted '%s'", i, lp_status_name(st), err.msg,
                     bad[i].needle);
        assert_int_equal(added, 0);
    }
    assert_int_equal(count_events(f), 0);
    lp_db_device d;
    assert_fail(lp_db_device_get(f->db, f->app, DEV_A, &d, &err), LP_ERR_NOT_FOUND, err, DEV_A);

    const char *bad_ids[] = {"0123456789abcde", "0123456789ABCDEF", "0123456789abcdeg", "",
                             DEV_C "0", NULL};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        lp_db_event_batch b = {.app_id = f->app, .device_id = bad_ids[i]};
        assert_fail(lp_db_events_insert(f->db, &b, NULL, &err),
                    i == 4 ? LP_ERR_TOO_LARGE : LP_ERR_INVALID_ARG, err, "device_id");
    }
    lp_db_event_batch b = {.app_id = f->app, .device_id = DEV_A, .dropped = -1};
    assert_fail(lp_db_events_insert(f->db, &b, NULL, &err), LP_ERR_INVALID_ARG, err, "dropped");
    lp_db_event_new *many = calloc(LP_DB_EVENT_BATCH_MAX + 1, sizeof *many);
    assert_non_null(many);
    for (size_t i = 0; i <= LP_DB_EVENT_BATCH_MAX; i++)
        many[i] = ev((int64_t)i + 1, "checked", 0);
    b = (lp_db_event_batch){.app_id = f->app, .device_id = DEV_A, .events = many,
                            .n_events = LP_DB_EVENT_BATCH_MAX + 1};
    assert_fail(lp_db_events_insert(f->db, &b, NULL, &err), LP_ERR_TOO_LARGE, err, "at most 1000");
    b.n_events = LP_DB_EVENT_BATCH_MAX; /* the largest batch is fine */
    size_t added = 0;
    assert_ok(lp_db_events_insert(f->db, &b, &added, &err), err);
    assert_int_equal(added, LP_DB_EVENT_BATCH_MAX);
    free(many);
    b = (lp_db_event_batch){.app_id = 4242, .device_id = DEV_B};
    assert_fail(lp_db_events_insert(f->db, &b, NULL, &err), LP_ERR_NOT_FOUND, err, "app id 4242");

    lp_db_event_list l;
    lp_db_event_query q = {.type = "boom"};
    assert_fail(lp_db_event_list_by_app(f->db, f->app, &q, &l, &err), LP_ERR_INVALID_ARG, err,
                "type: 'boom'");
    q = (lp_db_event_query){.device_id = "xyz"};
    assert_fail(lp_db_event_list_by_app(f->db, f->app, &q, &l, &err), LP_ERR_INVALID_ARG, err,
                "device");
    q = (lp_db_event_query){.limit = LP_DB_LIST_MAX + 1};
    assert_fail(lp_db_event_list_by_app(f->db, f->app, &q, &l, &err), LP_ERR_TOO_LARGE, err,
                "limit");
    lp_db_device_list dl;
    assert_fail(lp_db_device_list_by_app(f->db, f->app, "nothex", 0, &dl, &err),
                LP_ERR_INVALID_ARG, err, "after");
}

/* A batch joins the caller's transaction and goes away with its rollback. */
static void test_in_transaction(void **state)
{
    fixture *f = *state;
    lp_error err;
    lp_db_event_new e[2] = {ev(1, "checked", 0), ev(2, "activated", 3)};
    assert_ok(lp_db_begin(f->db, &err), err);
    assert_int_equal(put(f->db, f->app, DEV_A, e, 2, 0, 0), 2);
    assert_int_equal(count_events(f), 2); /* seen inside */
    assert_ok(lp_db_rollback(f->db, &err), err);
    assert_int_equal(count_events(f), 0);
    lp_db_device d;
    assert_fail(lp_db_device_get(f->db, f->app, DEV_A, &d, &err), LP_ERR_NOT_FOUND, err, "device");
}

/* Two connections send the same batch at once: it is stored once. */
typedef struct racer {
    const char *url;
    int64_t app;
    size_t added;
    lp_status st;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    lp_db *db = NULL;
    lp_error err;
    lp_db_event_new e[200];
    for (int64_t i = 0; i < 200; i++)
        e[i] = ev(i + 1, "downloaded", 0);
    r->st = lp_db_open(r->url, &db, &err);
    for (size_t k = 0; !r->st && k < 200; k += 20) {
        size_t n = 0;
        lp_db_event_batch b = {.app_id = r->app, .device_id = DEV_A, .events = e + k,
                               .n_events = 20};
        r->st = lp_db_events_insert(db, &b, &n, &err);
        r->added += n;
    }
    if (r->st)
        fprintf(stderr, "racer: %s\n", err.msg);
    lp_db_close(db);
    return NULL;
}

static void test_race(void **state)
{
    fixture *f = *state;
    racer r[2] = {{.url = f->url, .app = f->app}, {.url = f->url, .app = f->app}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(r[0].st, LP_OK);
    assert_int_equal(r[1].st, LP_OK);
    assert_int_equal(r[0].added + r[1].added, 200);
    assert_int_equal(count_events(f), 200);
}

/* ---- migration ------------------------------------------------------------- */

/* Runs a script on `old` directly: the first `n` migrations as released,
 * schema_version n, then `rows` (SQL in both dialects). */
static void make_old(lp_testdb *old, int n, const char *rows)
{
    size_t cap = 65536, len = 0;
    char *sql = malloc(cap);
    assert_non_null(sql);
    len += (size_t)snprintf(sql + len, cap - len, "%sBEGIN; "
                            "CREATE TABLE schema_version (version INTEGER NOT NULL); ",
                            old->pg ? "" : "PRAGMA journal_mode = WAL; ");
    for (int i = 0; i < n; i++) {
        const char *m = old->pg ? lp_db_migrations[i].postgresql : lp_db_migrations[i].sqlite;
        len += (size_t)snprintf(sql + len, cap - len, "%s; ", m);
    }
    len += (size_t)snprintf(sql + len, cap - len,
                            "INSERT INTO schema_version (version) VALUES (%d); %s; COMMIT", n,
                            rows);
    assert_true(len < cap);
    char msg[512];
    if (lp_testdb_exec(old, sql, msg, sizeof msg) != 0)
        fail_msg("making a version %d database: %s", n, msg);
    free(sql);
}

static void test_migrate_v1(void **state)
{
    fixture *f = *state;
    lp_testdb *old = lp_testdb_new(f->dir, "v1.db");
    assert_non_null(old);
    const char *url = old->url;
    char rows[1024];
    /* the version 1 schema, as released, with an app, a token and a release */
    snprintf(rows, sizeof rows,
             "INSERT INTO apps (id, name, created_at) VALUES (7, 'legacy', 10); "
             "INSERT INTO tokens (id, name, salt, hash, scopes, created_at) VALUES "
             "('tok1', 'old', %s, %s, 'upload', 11); "
             "INSERT INTO releases (app_id, version, version_code, manifest_sha256, "
             "manifest_size, created_at, created_by, state) VALUES (7, 'v1', 1, "
             "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 5, 12, "
             "'tok1', 'published')",
             old->pg ? "'\\x0102030405060708'::bytea" : "x'0102030405060708'",
             old->pg ? "'\\x0102030405060708090a0b0c0d0e0f10'::bytea"
                     : "x'0102030405060708090a0b0c0d0e0f10'");
    make_old(old, 1, rows);

    lp_db *db = NULL;
    lp_error err;
    assert_ok(lp_db_open(url, &db, &err), err);
    int v = 0;
    assert_ok(lp_db_schema_version(db, &v, &err), err);
    assert_int_equal(v, LP_DB_SCHEMA_VERSION);
    lp_db_app app;
    assert_ok(lp_db_app_get_by_name(db, "legacy", &app, &err), err);
    assert_int_equal(app.id, 7);
    lp_db_app_free(&app);
    lp_db_release rel;
    assert_ok(lp_db_release_get_by_version(db, 7, "v1", &rel, &err), err);
    assert_string_equal(rel.created_by, "tok1");
    lp_db_release_free(&rel);
    lp_db_token tok;
    assert_ok(lp_db_token_find_by_id(db, "tok1", &tok, &err), err);
    lp_db_token_free(&tok);
    lp_db_event_new e = ev(1, "activated", 1);
    assert_int_equal(put(db, 7, DEV_A, &e, 1, 0, 0), 1);
    lp_db_close(db);

    /* reopening finds it current and keeps the event */
    assert_ok(lp_db_open(url, &db, &err), err);
    lp_db_device d;
    assert_ok(lp_db_device_get(db, 7, DEV_A, &d, &err), err);
    assert_int_equal(d.version_code, 1);
    lp_db_device_free(&d);
    lp_db_close(db);
    lp_testdb_free(old);
}

/* A version 3 database (made from the first three scripts, never edited)
 * with an event gains the figures' columns: the old event reads them as
 * not given, a new one stores them. */
static void test_migrate_v3(void **state)
{
    fixture *f = *state;
    lp_testdb *old = lp_testdb_new(f->dir, "v3.db");
    assert_non_null(old);
    const char *url = old->url;
    make_old(old, 3,
             "INSERT INTO apps (id, name, created_at) VALUES (7, 'legacy', 10); "
             "INSERT INTO devices (app_id, device_id, first_seen, last_seen, last_event_seq) "
             "VALUES (7, '" DEV_A "', 5, 5, 1); "
             "INSERT INTO events (app_id, device_id, seq, type, at, version_code, reason, "
             "received_at) VALUES (7, '" DEV_A "', 1, 'downloaded', 4, 2, "
             "'files_delta=2 bytes_delta=10 bytes_delta_saved=90 delta_fallbacks=0', 5)");

    lp_db *db = NULL;
    lp_error err;
    assert_ok(lp_db_open(url, &db, &err), err);
    int v = 0;
    assert_ok(lp_db_schema_version(db, &v, &err), err);
    assert_int_equal(v, LP_DB_SCHEMA_VERSION);
    lp_db_event_new e = ev(2, "downloaded", 3);
    e.bytes = 100;
    e.files_fetched = 1;
    e.files_delta = 0;
    e.bytes_delta_saved = 0;
    e.delta_fallbacks = 1;
    assert_int_equal(put(db, 7, DEV_A, &e, 1, 0, 0), 1);
    lp_db_event_list l;
    assert_ok(lp_db_event_list_by_app(db, 7, NULL, &l, &err), err);
    assert_int_equal(l.count, 2);
    assert_int_equal(l.items[0].seq, 2);
    assert_int_equal(l.items[0].bytes, 100);
    assert_int_equal(l.items[0].delta_fallbacks, 1);
    assert_int_equal(l.items[0].files_delta, 0);
    assert_int_equal(l.items[1].seq, 1);
    assert_int_equal(l.items[1].bytes, -1);
    assert_int_equal(l.items[1].files_fetched, -1);
    assert_int_equal(l.items[1].delta_fallbacks, -1);
    assert_non_null(strstr(l.items[1].reason, "files_delta=2"));
    lp_db_event_list_free(&l);
    lp_db_close(db);
    /* the columns refuse negative figures by themselves too */
    assert_int_equal(lp_testdb_exec(old, "UPDATE events SET bytes = -1", NULL, 0), -1);
    lp_testdb_free(old);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batch_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_and_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v3, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
