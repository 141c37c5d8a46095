/*
 * db_pg_rollouts.c — the PostgreSQL back end's queries for rollouts,
 * promotion, maintenance windows, guardrail settings and per-release
 * figures (see db_backend.h and include/livepush/db.h; the SQLite twin is
 * db_sqlite_rollouts.c).
 *
 * Same rules as db_pg_ops.c: prepared statements (slots from
 * PG_SLOTS_ROLLOUTS), values always bound, results cleared before
 * returning, result structs zeroed on failure.  db_rollouts.c has checked
 * the input and opened the write transaction (whose advisory lock makes
 * its "a halted rollout stays halted" check and the write one step for
 * every server on the database).
 *
 * A rollout row is reached through the release's channel link, so a
 * rollout can only exist for a channel the release is published on: the
 * upsert is an INSERT ... SELECT over that link and changes no row when
 * there is none.  The figures are counted from the events in one pass over
 * the release's events (events_by_release) and one over the rollbacks from
 * it (events_rolled_back).
 */
#include "store/db_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    S_GET = PG_SLOTS_ROLLOUTS,
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

_Static_assert(S_ROLLOUTS_END <= PG_SLOTS_INTERNAL, "too many cached statements");

#define ROLLOUT_COLS                                                                       \
    "SELECT r.id, r.version_code, r.version, c.name, coalesce(ro.percent_bp, 10000), "   \
    "coalesce(ro.state, 'active'), coalesce(ro.weight, 0), ro.reason, "                    \
    "coalesce(ro.updated_at, 0), ro.release_id IS NOT NULL "

static pg_db *D(lp_db *db)
{
    return (pg_db *)db;
}

static lp_status nomem(lp_error *err)
{
    return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
}

static lp_status read_rollout(const PGresult *r, int row, lp_db_rollout *out, lp_error *err)
{
    out->release_id = pg_get_int(r, row, 0);
    out->version_code = pg_get_int(r, row, 1);
    out->percent_bp = (int)pg_get_int(r, row, 4);
    snprintf(out->state, sizeof out->state, "%s", PQgetvalue(r, row, 5));
    out->weight = (int)pg_get_int(r, row, 6);
    out->updated_at = pg_get_int(r, row, 8);
    out->stored = pg_get_bool(r, row, 9);
    if (!pg_get_dup(r, row, 2, &out->version) || !pg_get_dup(r, row, 3, &out->channel) ||
        !pg_get_dup(r, row, 7, &out->reason))
        return nomem(err);
    return LP_OK;
}

lp_status pg_rollout_get(lp_db *db, int64_t release_id, const char *channel,
                         lp_db_rollout *out, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, release_id);
    pg_text(&p, channel);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "reading the rollout of release id %lld on channel %s",
             (long long)release_id, channel);
    PGresult *r;
    lp_status st = pg_run(D(db), S_GET,
                          ROLLOUT_COLS
                          "FROM releases r JOIN release_channels rc ON rc.release_id = r.id "
                          "JOIN channels c ON c.id = rc.channel_id AND c.name = $2 "
                          "LEFT JOIN rollouts ro ON ro.release_id = r.id AND ro.channel_id = c.id "
                          "WHERE r.id = $1",
                          &p, &r, err, ctx);
    if (st)
        return st;
    if (PQntuples(r) > 0)
        st = read_rollout(r, 0, out, err);
    else
        st = lp_error_set(err, LP_ERR_NOT_FOUND,
                          "release id %lld does not exist or is not published on channel %s",
                          (long long)release_id, channel);
    PQclear(r);
    return st;
}

lp_status pg_rollout_put(lp_db *db, const lp_db_rollout_new *ro, int64_t at, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, ro->release_id);
    pg_text(&p, ro->channel);
    pg_int(&p, ro->percent_bp);
    pg_text(&p, ro->state);
    pg_opt_int(&p, ro->weight, ro->weight > 0);
    pg_text(&p, ro->reason);
    pg_int(&p, at);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "rollout of release id %lld on channel %s",
             (long long)ro->release_id, ro->channel);
    PGresult *r;
    lp_status st = pg_run(
        D(db), S_PUT,
        "INSERT INTO rollouts (release_id, channel_id, percent_bp, state, weight, reason, "
        "updated_at) SELECT rc.release_id, c.id, $3, $4, $5, $6, $7 FROM release_channels rc "
        "JOIN channels c ON c.id = rc.channel_id WHERE rc.release_id = $1 AND c.name = $2 "
        "ON CONFLICT (release_id, channel_id) DO UPDATE SET percent_bp = excluded.percent_bp, "
        "state = excluded.state, weight = excluded.weight, reason = excluded.reason, "
        "updated_at = excluded.updated_at",
        &p, &r, err, ctx);
    if (!st && pg_changes(r) != 1)
        st = lp_error_set(err, LP_ERR_NOT_FOUND,
                          "release id %lld does not exist or is not published on channel %s",
                          (long long)ro->release_id, ro->channel);
    PQclear(r);
    return st;
}

lp_status pg_rollout_list(lp_db *db, int64_t app_id, const char *channel,
                          lp_db_rollout_list *out, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_int(&p, (int64_t)LP_DB_ROLLOUTS_MAX + 1);
    PGresult *r;
    lp_status st;
    if (channel) {
        pg_text(&p, channel);
        st = pg_run(D(db), S_LIST_CHANNEL,
                    ROLLOUT_COLS "FROM rollouts ro JOIN releases r ON r.id = ro.release_id "
                                 "JOIN channels c ON c.id = ro.channel_id "
                                 "WHERE r.app_id = $1 AND r.state <> 'withdrawn' AND "
                                 "c.name = $3 ORDER BY c.name, r.version_code LIMIT $2",
                    &p, &r, err, "listing rollouts");
    } else {
        st = pg_run(D(db), S_LIST_ALL,
                    ROLLOUT_COLS "FROM rollouts ro JOIN releases r ON r.id = ro.release_id "
                                 "JOIN channels c ON c.id = ro.channel_id "
                                 "WHERE r.app_id = $1 AND r.state <> 'withdrawn' "
                                 "ORDER BY c.name, r.version_code LIMIT $2",
                    &p, &r, err, "listing rollouts");
    }
    if (st)
        return st;
    size_t n = (size_t)PQntuples(r);
    if (n > LP_DB_ROLLOUTS_MAX)
        st = lp_error_set(err, LP_ERR_TOO_LARGE, "rollouts: more than %d rows",
                          LP_DB_ROLLOUTS_MAX);
    if (!st && n && !(out->items = calloc(n, sizeof *out->items)))
        st = nomem(err);
    for (size_t i = 0; !st && i < n; i++) {
        out->count++;
        st = read_rollout(r, (int)i, &out->items[i], err);
    }
    PQclear(r);
    return st;
}

lp_status pg_release_add_channel(lp_db *db, int64_t release_id, const char *channel, int64_t at,
                                 lp_error *err)
{
    pg_db *d = D(db);
    pg_params p = {0};
    pg_int(&p, release_id);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "reading release id %lld", (long long)release_id);
    PGresult *r;
    lp_status st =
        pg_run(d, S_RELEASE_APP, "SELECT app_id FROM releases WHERE id = $1", &p, &r, err, ctx);
    if (st)
        return st;
    bool found = PQntuples(r) > 0;
    int64_t app_id = found ? pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    if (!found)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "release id %lld does not exist",
                            (long long)release_id);

    snprintf(ctx, sizeof ctx, "counting the channels of release id %lld", (long long)release_id);
    if ((st = pg_run(d, S_COUNT_CHANNELS,
                     "SELECT count(*) FROM release_channels WHERE release_id = $1", &p, &r, err,
                     ctx)))
        return st;
    int64_t n = pg_get_int(r, 0, 0);
    PQclear(r);
    if (n >= LP_DB_CHANNELS_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "release id %lld is on %lld channels already, at most %d allowed",
                            (long long)release_id, (long long)n, LP_DB_CHANNELS_MAX);

    pg_params c = {0};
    pg_int(&c, app_id);
    pg_text(&c, channel);
    pg_int(&c, at);
    if ((st = pg_run(d, S_CHANNEL_UPSERT,
                     "INSERT INTO channels (app_id, name, created_at) VALUES ($1, $2, $3) "
                     "ON CONFLICT (app_id, name) DO NOTHING",
                     &c, &r, err, "creating the channel")))
        return st;
    PQclear(r);

    pg_params l = {0};
    pg_int(&l, release_id);
    pg_int(&l, app_id);
    pg_text(&l, channel);
    snprintf(ctx, sizeof ctx, "release id %lld on channel %s", (long long)release_id, channel);
    st = pg_run(d, S_LINK,
                "INSERT INTO release_channels (release_id, channel_id) SELECT $1, id "
                "FROM channels WHERE app_id = $2 AND name = $3",
                &l, &r, err, ctx);
    PQclear(r);
    return st;
}

lp_status pg_channel_window(lp_db *db, int64_t app_id, const char *channel, bool set, int *start,
                            int *end, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_text(&p, channel);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "maintenance window of channel %s", channel);
    PGresult *r;
    lp_status st;
    bool found;
    if (set) {
        pg_opt_int(&p, *start, *start >= 0);
        pg_opt_int(&p, *end, *start >= 0);
        st = pg_run(D(db), S_WINDOW_SET,
                    "UPDATE channels SET window_start = $3, window_end = $4 "
                    "WHERE app_id = $1 AND name = $2",
                    &p, &r, err, ctx);
        if (st)
            return st;
        found = pg_changes(r) == 1;
    } else {
        st = pg_run(D(db), S_WINDOW_GET,
                    "SELECT coalesce(window_start, -1), coalesce(window_end, -1) FROM channels "
                    "WHERE app_id = $1 AND name = $2",
                    &p, &r, err, ctx);
        if (st)
            return st;
        found = PQntuples(r) > 0;
        if (found) {
            *start = (int)pg_get_int(r, 0, 0);
            *end = (int)pg_get_int(r, 0, 1);
        }
    }
    PQclear(r);
    if (!found)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "channel %s: the app has no such channel",
                          channel);
    return st;
}

lp_status pg_app_guard(lp_db *db, int64_t app_id, bool set, int *rate_bp, int *min_devices,
                       lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "guardrail of app id %lld", (long long)app_id);
    PGresult *r;
    lp_status st;
    bool found;
    if (set) {
        pg_int(&p, *rate_bp);
        pg_int(&p, *min_devices);
        st = pg_run(D(db), S_GUARD_SET,
                    "UPDATE apps SET guard_rate_bp = $2, guard_min_devices = $3 WHERE id = $1", &p,
                    &r, err, ctx);
        if (st)
            return st;
        found = pg_changes(r) == 1;
    } else {
        st = pg_run(D(db), S_GUARD_GET,
                    "SELECT guard_rate_bp, guard_min_devices FROM apps WHERE id = $1", &p, &r, err,
                    ctx);
        if (st)
            return st;
        found = PQntuples(r) > 0;
        if (found) {
            *rate_bp = (int)pg_get_int(r, 0, 0);
            *min_devices = (int)pg_get_int(r, 0, 1);
        }
    }
    PQclear(r);
    if (!found)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "app id %lld does not exist",
                          (long long)app_id);
    return st;
}

lp_status pg_release_stats(lp_db *db, int64_t app_id, int64_t version_code, const char *channel,
                           lp_db_release_stats *out, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_int(&p, version_code);
    pg_text(&p, channel);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "figures of version code %lld", (long long)version_code);
    PGresult *r;
    lp_status st = pg_run(
        D(db), S_STATS,
        "SELECT count(DISTINCT CASE WHEN k = 'checked' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'downloaded' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'activated' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'healthy' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'failed' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'rolled_back' THEN device_id END), "
        "count(DISTINCT CASE WHEN k IN ('downloaded', 'staged', 'activated', 'failed', "
        "  'rolled_back') THEN device_id END), "
        "count(DISTINCT CASE WHEN k IN ('failed', 'rolled_back') THEN device_id END) "
        "FROM (SELECT device_id, type AS k FROM events WHERE app_id = $1 AND version_code = $2 "
        "      AND type <> 'rolled_back' AND ($3 IS NULL OR channel IS NULL OR channel = $3) "
        "      UNION ALL "
        "      SELECT device_id, 'rolled_back' FROM events WHERE app_id = $1 AND "
        "      from_version_code = $2 AND type = 'rolled_back' "
        "      AND ($3 IS NULL OR channel IS NULL OR channel = $3)) AS ev",
        &p, &r, err, ctx);
    if (st)
        return st;
    int64_t *f[] = {&out->offered, &out->downloaded, &out->installed,  &out->healthy,
                    &out->failed,  &out->rolled_back, &out->tried, &out->bad};
    for (int i = 0; i < 8; i++)
        *f[i] = pg_get_int(r, 0, i);
    PQclear(r);
    return st;
}

lp_status pg_release_adoption(lp_db *db, int64_t app_id, int64_t version_code,
                              const char *channel, int64_t bucket_s, lp_db_adoption *out,
                              lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_int(&p, version_code);
    pg_text(&p, channel);
    pg_int(&p, bucket_s);
    pg_int(&p, LP_DB_ADOPTION_MAX);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "adoption of version code %lld", (long long)version_code);
    PGresult *r;
    lp_status st = pg_run(
        D(db), S_ADOPTION,
        "SELECT t, count(DISTINCT CASE WHEN k = 'activated' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'failed' THEN device_id END), "
        "count(DISTINCT CASE WHEN k = 'rolled_back' THEN device_id END) "
        "FROM (SELECT received_at / $4 * $4 AS t, device_id, type AS k FROM events "
        "      WHERE app_id = $1 AND version_code = $2 AND type IN ('activated', 'failed') "
        "      AND ($3 IS NULL OR channel IS NULL OR channel = $3) "
        "      UNION ALL "
        "      SELECT received_at / $4 * $4, device_id, 'rolled_back' FROM events "
        "      WHERE app_id = $1 AND from_version_code = $2 AND type = 'rolled_back' "
        "      AND ($3 IS NULL OR channel IS NULL OR channel = $3)) AS ev "
        "GROUP BY t ORDER BY t DESC LIMIT $5",
        &p, &r, err, ctx);
    if (st)
        return st;
    size_t n = (size_t)PQntuples(r);
    if (n && !(out->points = calloc(n, sizeof *out->points)))
        st = nomem(err);
    /* newest first from the query; oldest first for the caller */
    for (size_t i = 0; !st && i < n; i++) {
        lp_db_adoption_point *pt = &out->points[n - 1 - i];
        pt->at = pg_get_int(r, (int)i, 0);
        pt->installed = pg_get_int(r, (int)i, 1);
        pt->failed = pg_get_int(r, (int)i, 2);
        pt->rolled_back = pg_get_int(r, (int)i, 3);
    }
    if (!st)
        out->count = n;
    PQclear(r);
    return st;
}
