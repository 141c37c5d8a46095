/*
 * db_sqlite_rollouts.c — the SQLite back end's queries for rollouts,
 * promotion, maintenance windows, guardrail settings and per-release
 * figures (see db_backend.h and include/livepush/db.h).
 *
 * Same rules as db_sqlite_ops.c: cached prepared statements (slots from
 * SQ_SLOTS_ROLLOUTS), values always bound, every statement reset before
 * returning, result structs zeroed on failure.  db_rollouts.c has checked
 * the input and opened the write transaction.
 *
 * A rollout row is reached through the release's channel link, so a
 * rollout can only exist for a channel the release is published on: the
 * upsert is an INSERT ... SELECT over that link and changes no row when
 * there is none.  The figures are counted from the events in one pass over
 * the release's events (events_by_release) and one over the rollbacks from
 * it (events_rolled_back).
 */
#include "store/db_sqlite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    S_GET = SQ_SLOTS_ROLLOUTS,
    S_PUT,
    S_LIST_ALL,
    S_LIST_CHANNEL,
    S_RELEASE_APP,
    S_CHANNEL_UPSERT,
    S_LINK,
    S_COUNT_CHANNELS,
    S_WINDOW_GET,
    S_WINDOW_SET,
    S_GUARD_GET,
    S_GUARD_SET,
    S_STATS,
    S_ADOPTION,
    S_ROLLOUTS_END
};

_Static_assert(S_ROLLOUTS_END <= SQ_STMT_SLOTS, "too many cached statements");

#define ROLLOUT_COLS                                                                       \
    "SELECT r.id, r.version_code, r.version, c.name, coalesce(ro.percent_bp, 10000), "   \
    "coalesce(ro.state, 'active'), coalesce(ro.weight, 0), ro.reason, "                    \
    "coalesce(ro.updated_at, 0), ro.release_id IS NOT NULL "

static sq_db *D(lp_db *db)
{
    return (sq_db *)db;
}

static lp_status nomem(lp_error *err)
{
    return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
}

static lp_status read_rollout(sqlite3_stmt *s, lp_db_rollout *out, lp_error *err)
{
    out->release_id = sqlite3_column_int64(s, 0);
    out->version_code = sqlite3_column_int64(s, 1);
    out->percent_bp = sqlite3_column_int(s, 4);
    const char *state = (const char *)sqlite3_column_text(s, 5);
    snprintf(out->state, sizeof out->state, "%s", state ? state : "");
    out->weight = sqlite3_column_int(s, 6);
    out->updated_at = sqlite3_column_int64(s, 8);
    out->stored = sqlite3_column_int(s, 9) != 0;
    if (!sq_col_dup(s, 2, &out->version) || !sq_col_dup(s, 3, &out->channel) ||
        !sq_col_dup(s, 7, &out->reason))
        return nomem(err);
    return LP_OK;
}

lp_status sq_rollout_get(lp_db *db, int64_t release_id, const char *channel,
                         lp_db_rollout *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_GET,
                           ROLLOUT_COLS
                           "FROM releases r JOIN release_channels rc ON rc.release_id = r.id "
                           "JOIN channels c ON c.id = rc.channel_id AND c.name = ?2 "
                           "LEFT JOIN rollouts ro ON ro.release_id = r.id AND ro.channel_id = c.id "
                           "WHERE r.id = ?1",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, release_id);
    sqlite3_bind_text(s, 2, channel, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        st = read_rollout(s, out, err);
    else if (rc == SQLITE_DONE)
        st = lp_error_set(err, LP_ERR_NOT_FOUND,
                          "release id %lld does not exist or is not published on channel %s",
                          (long long)release_id, channel);
    else
        st = sq_fail(d, rc, err, "reading the rollout of release id %lld on channel %s",
                     (long long)release_id, channel);
    sqlite3_reset(s);
    return st;
}

lp_status sq_rollout_put(lp_db *db, const lp_db_rollout_new *r, int64_t at, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(
        d, S_PUT,
        "INSERT INTO rollouts (release_id, channel_id, percent_bp, state, weight, reason, "
        "updated_at) SELECT rc.release_id, c.id, ?3, ?4, ?5, ?6, ?7 FROM release_channels rc "
        "JOIN channels c ON c.id = rc.channel_id WHERE rc.release_id = ?1 AND c.name = ?2 "
        "ON CONFLICT (release_id, channel_id) DO UPDATE SET percent_bp = excluded.percent_bp, "
        "state = excluded.state, weight = excluded.weight, reason = excluded.reason, "
        "updated_at = excluded.updated_at",
        &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, r->release_id);
    sqlite3_bind_text(s, 2, r->channel, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, r->percent_bp);
    sqlite3_bind_text(s, 4, r->state, -1, SQLITE_STATIC);
    if (r->weight > 0)
        sqlite3_bind_int(s, 5, r->weight);
    else
        sqlite3_bind_null(s, 5);
    sq_bind_opt_text(s, 6, r->reason);
    sqlite3_bind_int64(s, 7, at);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "rollout of release id %lld on channel %s",
             (long long)r->release_id, r->channel);
    st = sq_step_done(d, s, err, ctx);
    sqlite3_reset(s);
    if (!st && sqlite3_changes(d->h) != 1)
        st = lp_error_set(err, LP_ERR_NOT_FOUND,
                          "release id %lld does not exist or is not published on channel %s",
                          (long long)r->release_id, r->channel);
    return st;
}

lp_status sq_rollout_list(lp_db *db, int64_t app_id, const char *channel,
                          lp_db_rollout_list *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st =
        channel ? sq_stmt(d, S_LIST_CHANNEL,
                          ROLLOUT_COLS "FROM rollouts ro JOIN releases r ON r.id = ro.release_id "
                                       "JOIN channels c ON c.id = ro.channel_id "
                                       "WHERE r.app_id = ?1 AND r.state <> 'withdrawn' AND "
                                       "c.name = ?2 ORDER BY c.name, r.version_code LIMIT ?3",
                          &s, err)
                : sq_stmt(d, S_LIST_ALL,
                          ROLLOUT_COLS "FROM rollouts ro JOIN releases r ON r.id = ro.release_id "
                                       "JOIN channels c ON c.id = ro.channel_id "
                                       "WHERE r.app_id = ?1 AND r.state <> 'withdrawn' "
                                       "ORDER BY c.name, r.version_code LIMIT ?3",
                          &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    if (channel)
        sqlite3_bind_text(s, 2, channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (int64_t)LP_DB_ROLLOUTS_MAX + 1);
    size_t cap = 0;
    int rc = SQLITE_DONE;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (out->count == LP_DB_ROLLOUTS_MAX) {
            st = lp_error_set(err, LP_ERR_TOO_LARGE, "rollouts: more than %d rows",
                              LP_DB_ROLLOUTS_MAX);
            break;
        }
        if (out->count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            lp_db_rollout *n = realloc(out->items, ncap * sizeof *n);
            if (!n) {
                st = nomem(err);
                break;
            }
            out->items = n;
            cap = ncap;
        }
        lp_db_rollout *r = &out->items[out->count++];
        memset(r, 0, sizeof *r);
        st = read_rollout(s, r, err);
    }
    if (!st && rc != SQLITE_DONE && rc != SQLITE_ROW)
        st = sq_fail(d, rc, err, "listing rollouts");
    sqlite3_reset(s);
    return st;
}

lp_status sq_release_add_channel(lp_db *db, int64_t release_id, const char *channel, int64_t at,
                                 lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_RELEASE_APP, "SELECT app_id FROM releases WHERE id = ?1", &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, release_id);
    int rc = sqlite3_step(s);
    int64_t app_id = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "release id %lld does not exist",
                            (long long)release_id);
    if (rc != SQLITE_ROW)
        return sq_fail(d, rc, err, "reading release id %lld", (long long)release_id);

    if ((st = sq_stmt(d, S_COUNT_CHANNELS,
                      "SELECT count(*) FROM release_channels WHERE release_id = ?1", &s, err)))
        return st;
    sqlite3_bind_int64(s, 1, release_id);
    rc = sqlite3_step(s);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return sq_fail(d, rc, err, "counting the channels of release id %lld",
                       (long long)release_id);
    if (n >= LP_DB_CHANNELS_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "release id %lld is on %lld channels already, at most %d allowed",
                            (long long)release_id, (long long)n, LP_DB_CHANNELS_MAX);

    if ((st = sq_stmt(d, S_CHANNEL_UPSERT,
                      "INSERT INTO channels (app_id, name, created_at) VALUES (?1, ?2, ?3) "
                      "ON CONFLICT (app_id, name) DO NOTHING",
                      &s, err)))
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_text(s, 2, channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, at);
    st = sq_step_done(d, s, err, "creating the channel");
    sqlite3_reset(s);
    if (st)
        return st;

    if ((st = sq_stmt(d, S_LINK,
                      "INSERT INTO release_channels (release_id, channel_id) SELECT ?1, id "
                      "FROM channels WHERE app_id = ?2 AND name = ?3",
                      &s, err)))
        return st;
    sqlite3_bind_int64(s, 1, release_id);
    sqlite3_bind_int64(s, 2, app_id);
    sqlite3_bind_text(s, 3, channel, -1, SQLITE_STATIC);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "release id %lld on channel %s", (long long)release_id, channel);
    st = sq_step_done(d, s, err, ctx);
    sqlite3_reset(s);
    return st;
}

lp_status sq_channel_window(lp_db *db, int64_t app_id, const char *channel, bool set, int *start,
                            int *end, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st =
        set ? sq_stmt(d, S_WINDOW_SET,
                      "UPDATE channels SET window_start = ?3, window_end = ?4 "
                      "WHERE app_id = ?1 AND name = ?2",
                      &s, err)
            : sq_stmt(d, S_WINDOW_GET,
                      "SELECT coalesce(window_start, -1), coalesce(window_end, -1) FROM channels "
                      "WHERE app_id = ?1 AND name = ?2",
                      &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_text(s, 2, channel, -1, SQLITE_STATIC);
    if (set && *start >= 0) {
        sqlite3_bind_int(s, 3, *start);
        sqlite3_bind_int(s, 4, *end);
    } else if (set) {
        sqlite3_bind_null(s, 3);
        sqlite3_bind_null(s, 4);
    }
    int rc = sqlite3_step(s);
    bool found;
    if (set) {
        found = rc == SQLITE_DONE && sqlite3_changes(d->h) == 1;
    } else {
        found = rc == SQLITE_ROW;
        if (found) {
            *start = sqlite3_column_int(s, 0);
            *end = sqlite3_column_int(s, 1);
        }
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        st = sq_fail(d, rc, err, "maintenance window of channel %s", channel);
    else if (!found)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "channel %s: the app has no such channel",
                          channel);
    sqlite3_reset(s);
    return st;
}

lp_status sq_app_guard(lp_db *db, int64_t app_id, bool set, int *rate_bp, int *min_devices,
                       lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st =
        set ? sq_stmt(d, S_GUARD_SET,
                      "UPDATE apps SET guard_rate_bp = ?2, guard_min_devices = ?3 WHERE id = ?1",
                      &s, err)
            : sq_stmt(d, S_GUARD_GET,
                      "SELECT guard_rate_bp, guard_min_devices FROM apps WHERE id = ?1", &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    if (set) {
        sqlite3_bind_int(s, 2, *rate_bp);
        sqlite3_bind_int(s, 3, *min_devices);
    }
    int rc = sqlite3_step(s);
    bool found;
    if (set) {
        found = rc == SQLITE_DONE && sqlite3_changes(d->h) == 1;
    } else {
        found = rc == SQLITE_ROW;
        if (found) {
            *rate_bp = sqlite3_column_int(s, 0);
            *min_devices = sqlite3_column_int(s, 1);
        }
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        st = sq_fail(d, rc, err, "guardrail of app id %lld", (long long)app_id);
    else if (!found)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "app id %lld does not exist",
                          (long long)app_id);
    sqlite3_reset(s);
    return st;
}

lp_status sq_release_stats(lp_db *db, int64_t app_id, int64_t version_code, const char *channel,
                           lp_db_release_stats *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(
        d, S_STATS,
        "SELECT count(DISTINCT CASE WHEN k = 'checked' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'downloaded' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'activated' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'healthy' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'failed' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'rolled_back' THEN device_id END), "
        "count(DISTINCT CASE WHEN k IN ('downloaded', 'staged', 'activated', 'failed', "
        "  'rolled_back') THEN device_id END), "
        "count(DISTINCT CASE WHEN k IN ('failed', 'rolled_back') THEN device_id END) "
        "FROM (SELECT device_id, type AS k FROM events WHERE app_id = ?1 AND version_code = ?2 "
        "      AND type <> 'rolled_back' AND (?3 IS NULL OR channel IS NULL OR channel = ?3) "
        "      UNION ALL "
        "      SELECT device_id, 'rolled_back' FROM events WHERE app_id = ?1 AND "
        "      from_version_code = ?2 AND type = 'rolled_back' "
        "      AND (?3 IS NULL OR channel IS NULL OR channel = ?3))",
        &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_int64(s, 2, version_code);
    sq_bind_opt_text(s, 3, channel);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        int64_t *f[] = {&out->offered, &out->downloaded, &out->installed,  &out->healthy,
                        &out->failed,  &out->rolled_back, &out->tried, &out->bad};
        for (int i = 0; i < 8; i++)
            *f[i] = sqlite3_column_int64(s, i);
    } else {
        st = sq_fail(d, rc, err, "figures of version code %lld", (long long)version_code);
    }
    sqlite3_reset(s);
    return st;
}

lp_status sq_release_adoption(lp_db *db, int64_t app_id, int64_t version_code,
                              const char *channel, int64_t bucket_s, lp_db_adoption *out,
                              lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(
        d, S_ADOPTION,
        "SELECT t, count(DISTINCT CASE WHEN k = 'activated' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'failed' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'rolled_back' THEN device_id END) "
        "FROM (SELECT received_at / ?4 * ?4 AS t, device_id, type AS k FROM events "
        "      WHERE app_id = ?1 AND version_code = ?2 AND type IN ('activated', 'failed') "
        "      AND (?3 IS NULL OR channel IS NULL OR channel = ?3) "
        "      UNION ALL "
        "      SELECT received_at / ?4 * ?4, device_id, 'rolled_back' FROM events "
        "      WHERE app_id = ?1 AND from_version_code = ?2 AND type = 'rolled_back' "
        "      AND (?3 IS NULL OR channel IS NULL OR channel = ?3)) "
        "GROUP BY t ORDER BY t DESC LIMIT ?5",
        &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_int64(s, 2, version_code);
    sq_bind_opt_text(s, 3, channel);
    sqlite3_bind_int64(s, 4, bucket_s);
    sqlite3_bind_int(s, 5, LP_DB_ADOPTION_MAX);
    size_t cap = 0;
    int rc = SQLITE_DONE;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (out->count == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            lp_db_adoption_point *n = realloc(out->points, ncap * sizeof *n);
            if (!n) {
                st = nomem(err);
                break;
            }
            out->points = n;
            cap = ncap;
        }
        lp_db_adoption_point *p = &out->points[out->count++];
        p->at = sqlite3_column_int64(s, 0);
        p->installed = sqlite3_column_int64(s, 1);
        p->failed = sqlite3_column_int64(s, 2);
        p->rolled_back = sqlite3_column_int64(s, 3);
    }
    if (!st && rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "adoption of version code %lld", (long long)version_code);
    sqlite3_reset(s);
    /* newest first from the query; oldest first for the caller */
    for (size_t i = 0; !st && i < out->count / 2; i++) {
        lp_db_adoption_point tmp = out->points[i];
        out->points[i] = out->points[out->count - 1 - i];
        out->points[out->count - 1 - i] = tmp;
    }
    return st;
}
