/*
 * db_deltas.c — the database front for deltas between releases (see
 * include/livepush/db.h).
 *
 * As for the other fronts: every input is checked here once, for every
 * back end, then the back end is called; the writes run through
 * lp_db_write_begin / lp_db_write_end, so each one is atomic on its own or
 * joins the caller's transaction (a publish plans its pairs inside the
 * transaction that inserts the release, so a release is never published
 * without its pairs being recorded).
 */
#include "store/db_backend.h"

#include "core/timeutil.h"

#include <stdlib.h>
#include <string.h>

static lp_status check_pair(int64_t from_id, int64_t to_id, lp_error *err)
{
    TRY(lp_db_check_positive("from release id", from_id, err));
    TRY(lp_db_check_positive("to release id", to_id, err));
    if (from_id == to_id)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "delta pair: from and to are one release");
    return LP_OK;
}

static bool delta_state_valid(const char *s)
{
    return s && (!strcmp(s, LP_DB_DELTA_MADE) || !strcmp(s, LP_DB_DELTA_TOO_LARGE) ||
                 !strcmp(s, LP_DB_DELTA_FAILED));
}

lp_status lp_db_delta_plan(lp_db *db, int64_t release_id, unsigned k, int64_t created_at,
                           size_t *added, lp_error *err)
{
    size_t dummy;
    if (!added)
        added = &dummy;
    *added = 0;
    NEED(db, added);
    TRY(lp_db_check_positive("release id", release_id, err));
    TRY(lp_db_check_time("created_at", created_at, err));
    if (k > LP_DB_DELTA_RELEASES_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "delta releases: %u, at most %d", k,
                            LP_DB_DELTA_RELEASES_MAX);
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->delta_plan(db, release_id, k,
                                       created_at ? created_at : lp_time_now(), added, err);
    st = lp_db_write_end(db, own, st, err);
    if (st)
        *added = 0;
    return st;
}

lp_status lp_db_delta_pair_next(lp_db *db, lp_db_delta_pair *out, lp_error *err)
{
    NEED(db, out);
    memset(out, 0, sizeof *out);
    return db->ops->delta_pair_next(db, out, err);
}

lp_status lp_db_delta_pair_get(lp_db *db, int64_t app_id, int64_t from_code, int64_t to_code,
                               lp_db_delta_pair *out, lp_error *err)
{
    NEED(db, out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("app id", app_id, err));
    TRY(lp_db_check_positive("from version code", from_code, err));
    TRY(lp_db_check_positive("to version code", to_code, err));
    return db->ops->delta_pair_get(db, app_id, from_code, to_code, out, err);
}

lp_status lp_db_delta_record(lp_db *db, int64_t from_id, int64_t to_id, const lp_db_delta *d,
                             lp_error *err)
{
    NEED(db, d);
    TRY(check_pair(from_id, to_id, err));
    TRY(lp_db_check_sha256("result_sha256", d->result_sha256, err));
    TRY(lp_db_check_sha256("base_sha256", d->base_sha256, err));
    TRY(lp_db_check_size("size", d->size, err));
    if (!delta_state_valid(d->state))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "delta state: '%.16s' is not made, too_large or failed", d->state);
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->delta_record(db, from_id, to_id, d, err);
    return lp_db_write_end(db, own, st, err);
}

lp_status lp_db_delta_pair_finish(lp_db *db, int64_t from_id, int64_t to_id, int64_t when,
                                  lp_error *err)
{
    if (!db)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle");
    TRY(check_pair(from_id, to_id, err));
    TRY(lp_db_check_time("finished_at", when, err));
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->delta_pair_finish(db, from_id, to_id, when ? when : lp_time_now(),
                                              err);
    return lp_db_write_end(db, own, st, err);
}

lp_status lp_db_delta_list_pair(lp_db *db, int64_t from_id, int64_t to_id, const char *state,
                           lp_db_delta_list *out, lp_error *err)
{
    NEED(db, out);
    memset(out, 0, sizeof *out);
    TRY(check_pair(from_id, to_id, err));
    if (state && !delta_state_valid(state))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "delta state: '%.16s' is not made, too_large or failed", state);
    return db->ops->delta_list(db, from_id, to_id, state, out, err);
}

lp_status lp_db_delta_find(lp_db *db, const char *base, const char *result, bool *found,
                           lp_db_delta *out, lp_error *err)
{
    NEED(db, out);
    if (!found)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no output");
    memset(out, 0, sizeof *out);
    *found = false;
    TRY(lp_db_check_sha256("base_sha256", base, err));
    TRY(lp_db_check_sha256("result_sha256", result, err));
    return db->ops->delta_find(db, base, result, found, out, err);
}

lp_status lp_db_delta_summary_get(lp_db *db, int64_t to_id, lp_db_delta_summary *out,
                                  lp_error *err)
{
    NEED(db, out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("release id", to_id, err));
    return db->ops->delta_summary(db, to_id, out, err);
}

void lp_db_delta_list_free(lp_db_delta_list *list)
{
    if (!list)
        return;
    free(list->items);
    memset(list, 0, sizeof *list);
}
