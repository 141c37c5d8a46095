/*
 * db_events.c — the database front for devices and their events
 * (telemetry; see include/livepush/db.h).
 *
 * Every field of a batch is checked before anything is written, and a
 * refusal names the event by its place in the batch ("events[3].type"), so
 * a device API answer can point at the field.  A batch is then one write
 * transaction (joined when the caller has one open): the device row is
 * created or touched first (the events refer to it), each event is stored
 * unless its (app, device, seq) is stored already, and finally the
 * device's version_code and newest event are recomputed from its stored
 * events — from the stored rows rather than from the batch, so batches that
 * arrive out of order (a re-sent old one after a new one) still leave the
 * device row right.
 */
#include "store/db_backend.h"

#include "core/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const event_types[] = {"checked", "downloaded", "verified", "staged",
                                          "activated", "healthy", "failed", "rolled_back"};

bool lp_db_event_type_valid(const char *type)
{
    if (!type)
        return false;
    for (size_t i = 0; i < sizeof event_types / sizeof event_types[0]; i++)
        if (!strcmp(type, event_types[i]))
            return true;
    return false;
}

static lp_status check_type(const char *field, const char *type, lp_error *err)
{
    if (!type)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: missing", field);
    if (!lp_db_event_type_valid(type))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: '%.32s' is not one of " LP_DB_EVENT_TYPES,
                            field, type);
    return LP_OK;
}

static lp_status check_range(const char *field, int64_t v, int64_t min, int64_t max,
                             lp_error *err)
{
    if (v < min || v > max)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: %lld is not from %lld to %lld", field,
                            (long long)v, (long long)min, (long long)max);
    return LP_OK;
}

/* Checks event i of a batch; messages name "events[i].<field>". */
static lp_status check_event(size_t i, const lp_db_event_new *e, lp_error *err)
{
    char f[48];
#define FIELD(name) (snprintf(f, sizeof f, "events[%zu]." name, i), f)
    TRY(check_range(FIELD("seq"), e->seq, 1, INT64_MAX, err));
    TRY(check_type(FIELD("type"), e->type, err));
    TRY(check_range(FIELD("at"), e->at, 1, LP_DB_TIME_MAX, err));
    if (e->version)
        TRY(lp_db_check_version(FIELD("version"), e->version, err));
    if (e->version_code)
        TRY(check_range(FIELD("version_code"), e->version_code, 1, INT64_MAX, err));
    if (e->from_version_code)
        TRY(check_range(FIELD("from_version_code"), e->from_version_code, 1, INT64_MAX, err));
    if (e->reason)
        TRY(lp_db_check_text(FIELD("reason"), e->reason, LP_DB_REASON_MAX, err));
    if (e->duration_ms != -1)
        TRY(check_range(FIELD("duration_ms"), e->duration_ms, 0, LP_DB_DURATION_MS_MAX, err));
    /* The download figures: -1 (not given) or not negative. */
    const struct {
        const char *name;
        int64_t v;
    } figures[] = {{"bytes", e->bytes},
                   {"files_fetched", e->files_fetched},
                   {"files_delta", e->files_delta},
                   {"bytes_delta_saved", e->bytes_delta_saved},
                   {"delta_fallbacks", e->delta_fallbacks}};
    for (size_t k = 0; k < sizeof figures / sizeof figures[0]; k++) {
        snprintf(f, sizeof f, "events[%zu].%s", i, figures[k].name);
        if (figures[k].v != -1)
            TRY(check_range(f, figures[k].v, 0, INT64_MAX, err));
    }
#undef FIELD
    return LP_OK;
}

static lp_status check_batch(const lp_db_event_batch *b, lp_error *err)
{
    TRY(lp_db_check_positive("app id", b->app_id, err));
    TRY(lp_db_check_hex("device_id", b->device_id, LP_DB_DEVICE_ID_MIN, LP_DB_DEVICE_ID_MAX, err));
    if (b->n_events > LP_DB_EVENT_BATCH_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "events: %zu in one batch, at most %d",
                            b->n_events, LP_DB_EVENT_BATCH_MAX);
    if (b->n_events && !b->events)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "events: missing");
    TRY(check_range("dropped", b->dropped, 0, INT64_MAX, err));
    TRY(lp_db_check_time("received_at", b->received_at, err));
    if (b->channel)
        TRY(lp_db_check_name("channel", b->channel, err));
    for (size_t i = 0; i < b->n_events; i++)
        TRY(check_event(i, &b->events[i], err));
    return LP_OK;
}

lp_status lp_db_events_insert(lp_db *db, const lp_db_event_batch *b, size_t *inserted,
                              lp_error *err)
{
    if (inserted)
        *inserted = 0;
    if (!db)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle");
    if (!b)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "events: no batch");
    TRY(check_batch(b, err));
    int64_t now = b->received_at ? b->received_at : lp_time_now();
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->device_touch(db, b->app_id, b->device_id, now, b->dropped, b->channel,
                                          err);
    size_t added = 0;
    for (size_t i = 0; !st && i < b->n_events; i++) {
        bool one = false;
        st = db->ops->event_insert(db, b->app_id, b->device_id, &b->events[i], now, b->channel,
                                   &one, err);
        added += one;
        if (b->stored)
            b->stored[i] = one;
    }
    if (!st && added)
        st = db->ops->device_refresh(db, b->app_id, b->device_id, err);
    st = lp_db_write_end(db, own, st, err);
    if (!st && inserted)
        *inserted = added;
    return st;
}

lp_status lp_db_event_list_by_app(lp_db *db, int64_t app_id, const lp_db_event_query *q,
                                  lp_db_event_list *out, lp_error *err)
{
    if (!db || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle or output");
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("app id", app_id, err));
    lp_db_event_query all = {0};
    lp_db_event_query query = q ? *q : all;
    if (query.device_id)
        TRY(lp_db_check_hex("device", query.device_id, LP_DB_DEVICE_ID_MIN, LP_DB_DEVICE_ID_MAX,
                            err));
    if (query.type)
        TRY(check_type("type", query.type, err));
    TRY(lp_db_check_time("since", query.since, err));
    if (query.before_id < 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "before: %lld is not an event id",
                            (long long)query.before_id);
    if (query.limit > LP_DB_LIST_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "limit: %zu, at most %d", query.limit,
                            LP_DB_LIST_MAX);
    if (!query.limit)
        query.limit = LP_DB_LIST_MAX;
    return db->ops->event_list(db, app_id, &query, out, err);
}

lp_status lp_db_device_get(lp_db *db, int64_t app_id, const char *device_id, lp_db_device *out,
                           lp_error *err)
{
    if (!db || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle or output");
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("app id", app_id, err));
    TRY(lp_db_check_hex("device_id", device_id, LP_DB_DEVICE_ID_MIN, LP_DB_DEVICE_ID_MAX, err));
    return db->ops->device_get(db, app_id, device_id, out, err);
}

lp_status lp_db_device_list_by_app(lp_db *db, int64_t app_id, const char *after, size_t limit,
                                   lp_db_device_list *out, lp_error *err)
{
    if (!db || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle or output");
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("app id", app_id, err));
    if (after)
        TRY(lp_db_check_hex("after", after, LP_DB_DEVICE_ID_MIN, LP_DB_DEVICE_ID_MAX, err));
    if (limit > LP_DB_LIST_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "limit: %zu, at most %d", limit,
                            LP_DB_LIST_MAX);
    return db->ops->device_list(db, app_id, after, limit ? limit : LP_DB_LIST_MAX, out, err);
}

void lp_db_event_free(lp_db_event *ev)
{
    if (!ev)
        return;
    free(ev->version);
    free(ev->reason);
    memset(ev, 0, sizeof *ev);
}

void lp_db_event_list_free(lp_db_event_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        lp_db_event_free(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

void lp_db_device_free(lp_db_device *dev)
{
    if (!dev)
        return;
    lp_db_event_free(&dev->last_event);
    memset(dev, 0, sizeof *dev);
}

void lp_db_device_list_free(lp_db_device_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        lp_db_device_free(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}
