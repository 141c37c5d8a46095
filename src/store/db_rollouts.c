/*
 * db_rollouts.c — the database front for rollouts: staged percentages,
 * states and A/B weights per release and channel, promotion to a channel,
 * maintenance windows, the app's guardrail settings and the per-release
 * figures the guardrail reads (see include/livepush/db.h and
 * docs/rollouts.md).
 *
 * As for the other fronts: every input is checked here once, for every
 * back end, then the back end is called; writes run through
 * lp_db_write_begin / lp_db_write_end, so each is atomic on its own or joins
 * the caller's transaction (a rollout change and its audit entry commit
 * together).  The one rule that needs the stored row, "a halted rollout
 * stays halted", is checked here inside that transaction.
 */
#include "store/db_backend.h"

#include "core/timeutil.h"

#include <stdlib.h>
#include <string.h>

static bool rollout_state_valid(const char *s)
{
    return s && (!strcmp(s, LP_DB_ROLLOUT_ACTIVE) || !strcmp(s, LP_DB_ROLLOUT_PAUSED) ||
                 !strcmp(s, LP_DB_ROLLOUT_HALTED));
}

lp_status lp_db_rollout_put(lp_db *db, const lp_db_rollout_new *r, lp_error *err)
{
    NEED(db, r);
    TRY(lp_db_check_positive("release id", r->release_id, err));
    TRY(lp_db_check_name("channel name", r->channel, err));
    if (r->percent_bp < 0 || r->percent_bp > LP_DB_BP_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "rollout percent_bp: %d, expected 0..%d basis points", r->percent_bp,
                            LP_DB_BP_MAX);
    if (!rollout_state_valid(r->state))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "rollout state: '%s' is not one of active, paused, halted",
                            r->state ? r->state : "(none)");
    if (r->weight < 0 || r->weight > LP_DB_BP_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "rollout weight: %d, expected 0..%d",
                            r->weight, LP_DB_BP_MAX);
    if (r->reason)
        TRY(lp_db_check_text("rollout reason", r->reason, LP_DB_ROLLOUT_REASON_MAX, err));
    TRY(lp_db_check_time("rollout time", r->at, err));
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_db_rollout old = {0};
    lp_status st = db->ops->rollout_get(db, r->release_id, r->channel, &old, err);
    if (!st && old.stored && !strcmp(old.state, LP_DB_ROLLOUT_HALTED) &&
        strcmp(r->state, LP_DB_ROLLOUT_HALTED) != 0)
        st = lp_error_set(err, LP_ERR_STATE,
                          "the rollout of %s on channel %s is halted, and a halt is final "
                          "(publish a new release instead)",
                          old.version, r->channel);
    lp_db_rollout_free(&old);
    if (!st)
        st = db->ops->rollout_put(db, r, r->at ? r->at : lp_time_now(), err);
    return lp_db_write_end(db, own, st, err);
}

lp_status lp_db_rollout_get(lp_db *db, int64_t release_id, const char *channel,
                            lp_db_rollout *out, lp_error *err)
{
    NEED(db, out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("release id", release_id, err));
    TRY(lp_db_check_name("channel name", channel, err));
    lp_status st = db->ops->rollout_get(db, release_id, channel, out, err);
    if (st)
        lp_db_rollout_free(out);
    return st;
}

lp_status lp_db_rollout_list_app(lp_db *db, int64_t app_id, const char *channel,
                                 lp_db_rollout_list *out, lp_error *err)
{
    NEED(db, out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("app id", app_id, err));
    if (channel)
        TRY(lp_db_check_name("channel name", channel, err));
    lp_status st = db->ops->rollout_list(db, app_id, channel, out, err);
    if (st)
        lp_db_rollout_list_free(out);
    return st;
}

void lp_db_rollout_free(lp_db_rollout *r)
{
    if (!r)
        return;
    free(r->version);
    free(r->channel);
    free(r->reason);
    memset(r, 0, sizeof *r);
}

void lp_db_rollout_list_free(lp_db_rollout_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        lp_db_rollout_free(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

lp_status lp_db_release_add_channel(lp_db *db, int64_t release_id, const char *channel,
                                    int64_t at, lp_error *err)
{
    if (!db)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle");
    TRY(lp_db_check_positive("release id", release_id, err));
    TRY(lp_db_check_name("channel name", channel, err));
    TRY(lp_db_check_time("time", at, err));
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->release_add_channel(db, release_id, channel, at ? at : lp_time_now(),
                                                err);
    return lp_db_write_end(db, own, st, err);
}

static lp_status check_window(int start, int end, lp_error *err)
{
    if (start == -1 && end == -1)
        return LP_OK;
    if (start < 0 || start > 1439 || end < 0 || end > 1439)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "maintenance window: %d..%d, expected minutes 0..1439 after midnight "
                            "UTC (or none)",
                            start, end);
    if (start == end)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "maintenance window: start and end are both minute %d", start);
    return LP_OK;
}

lp_status lp_db_channel_window_get(lp_db *db, int64_t app_id, const char *channel, int *start,
                                   int *end, lp_error *err)
{
    NEED(db, start);
    NEED(db, end);
    *start = *end = -1;
    TRY(lp_db_check_positive("app id", app_id, err));
    TRY(lp_db_check_name("channel name", channel, err));
    return db->ops->channel_window(db, app_id, channel, false, start, end, err);
}

lp_status lp_db_channel_window_set(lp_db *db, int64_t app_id, const char *channel, int start,
                                   int end, lp_error *err)
{
    if (!db)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle");
    TRY(lp_db_check_positive("app id", app_id, err));
    TRY(lp_db_check_name("channel name", channel, err));
    TRY(check_window(start, end, err));
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->channel_window(db, app_id, channel, true, &start, &end, err);
    return lp_db_write_end(db, own, st, err);
}

lp_status lp_db_app_guard_get(lp_db *db, int64_t app_id, int *rate_bp, int *min_devices,
                              lp_error *err)
{
    NEED(db, rate_bp);
    NEED(db, min_devices);
    TRY(lp_db_check_positive("app id", app_id, err));
    return db->ops->app_guard(db, app_id, false, rate_bp, min_devices, err);
}

lp_status lp_db_app_guard_set(lp_db *db, int64_t app_id, int rate_bp, int min_devices,
                              lp_error *err)
{
    if (!db)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle");
    TRY(lp_db_check_positive("app id", app_id, err));
    if (rate_bp < 1 || rate_bp > LP_DB_BP_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "guardrail rate: %d basis points, expected 1..%d", rate_bp,
                            LP_DB_BP_MAX);
    if (min_devices < 1)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "guardrail minimum devices: %d, expected at least 1", min_devices);
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->app_guard(db, app_id, true, &rate_bp, &min_devices, err);
    return lp_db_write_end(db, own, st, err);
}

lp_status lp_db_release_stats_get(lp_db *db, int64_t app_id, int64_t version_code,
                                  const char *channel, lp_db_release_stats *out, lp_error *err)
{
    NEED(db, out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("app id", app_id, err));
    TRY(lp_db_check_positive("version code", version_code, err));
    if (channel)
        TRY(lp_db_check_name("channel name", channel, err));
    return db->ops->release_stats(db, app_id, version_code, channel, out, err);
}

lp_status lp_db_release_adoption(lp_db *db, int64_t app_id, int64_t version_code,
                                 const char *channel, int64_t bucket_s, lp_db_adoption *out,
                                 lp_error *err)
{
    NEED(db, out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("app id", app_id, err));
    TRY(lp_db_check_positive("version code", version_code, err));
    if (channel)
        TRY(lp_db_check_name("channel name", channel, err));
    if (bucket_s < 60 || bucket_s > 31 * 86400)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "adoption period: %lld seconds, expected 60 to 31 days",
                            (long long)bucket_s);
    lp_status st = db->ops->release_adoption(db, app_id, version_code, channel, bucket_s, out,
                                             err);
    if (st)
        lp_db_adoption_free(out);
    return st;
}

void lp_db_adoption_free(lp_db_adoption *a)
{
    if (!a)
        return;
    free(a->points);
    memset(a, 0, sizeof *a);
}
