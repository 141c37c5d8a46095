/*
 * db_pg_devices.c — the PostgreSQL back end's queries for devices and
 * their events (see db_backend.h and include/livepush/db.h; the SQLite
 * twin is db_sqlite_devices.c, whose design notes apply here too).
 *
 * Same rules as db_pg_ops.c: prepared statements (slots from
 * PG_SLOTS_DEVICES), values always bound, results cleared before
 * returning, result structs zeroed on failure.  db_events.c has checked
 * the input and opened the write transaction.
 *
 * Idempotence lives in the schema: events are inserted with ON CONFLICT
 * (app_id, device_id, seq) DO NOTHING, and the command's row count tells a
 * new event from a duplicate.  The device row is an upsert that only moves
 * last_seen and dropped forward, and device_refresh recomputes the derived
 * columns from the stored events: the newest activated, healthy or
 * rolled_back event after the device's newest event before this batch
 * (last_event_seq; an event that arrives late clears it, and the refresh
 * then looks at all the device's events).  In PostgreSQL, as in SQLite,
 * every SET expression of an UPDATE reads the row as it was.
 *
 * Event lists use one of three statements so that each can use an index:
 * by device (the unique (app, device, seq) index), by type
 * (events_by_type), or the whole app (events_by_app), all newest first.
 */
#include "store/db_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    S_DEVICE_TOUCH = PG_SLOTS_DEVICES,
    S_EVENT_INSERT,
    S_EVENT_LATE,
    S_DEVICE_REFRESH,
    S_EVENTS_BY_DEVICE,
    S_EVENTS_BY_TYPE,
    S_EVENTS_BY_APP,
    S_DEVICE_GET,
    S_DEVICE_LIST,
    S_DEVICES_END
};

_Static_assert(S_DEVICES_END <= PG_SLOTS_DELTAS, "too many cached statements");

#define EVENT_FIELDS                                                                     \
    "e.id, e.device_id, e.seq, e.type, e.at, e.version, e.version_code, "                \
    "e.from_version_code, e.reason, e.duration_ms, e.received_at, e.bytes, "              \
    "e.files_fetched, e.files_delta, e.bytes_delta_saved, e.delta_fallbacks "

#define EVENT_COLS "SELECT " EVENT_FIELDS "FROM events e "

/* Optional filters $4 since (0: none) and $5 before id (0: none), then the
 * order and $6 limit. */
#define EVENT_TAIL                                                                       \
    "AND ($4 = 0 OR e.at >= $4) AND ($5 = 0 OR e.id < $5) ORDER BY e.id DESC LIMIT $6"

/* A device with its newest event (NULL columns when it has none). */
#define DEVICE_COLS                                                                       \
    "SELECT d.app_id, d.device_id, d.first_seen, d.last_seen, d.version_code, d.dropped, " \
    EVENT_FIELDS ", coalesce(d.channel, '') FROM devices d LEFT JOIN events e ON "        \
    "e.app_id = d.app_id AND e.device_id = d.device_id AND e.seq = d.last_event_seq "

static pg_db *D(lp_db *db)
{
    return (pg_db *)db;
}

/* Copies text column col into a fixed buffer of cap bytes. */
static lp_status col_fixed(const PGresult *r, int row, int col, char *out, size_t cap,
                           const char *what, lp_error *err)
{
    int n = PQgetlength(r, row, col);
    if (pg_is_null(r, row, col) || n <= 0 || (size_t)n >= cap)
        return lp_error_set(err, LP_ERR_MALFORMED, "stored %s: %d bytes, expected 1 to %zu",
                            what, n, cap - 1);
    memcpy(out, PQgetvalue(r, row, col), (size_t)n);
    out[n] = '\0';
    return LP_OK;
}

/* Reads the event whose columns start at column c (EVENT_FIELDS). */
static lp_status read_event(const PGresult *r, int row, int c, lp_db_event *out, lp_error *err)
{
    out->id = pg_get_int(r, row, c);
    out->seq = pg_get_int(r, row, c + 2);
    out->at = pg_get_int(r, row, c + 4);
    out->version_code = pg_get_int(r, row, c + 6); /* NULL reads as 0 */
    out->from_version_code = pg_get_int(r, row, c + 7);
    out->duration_ms = pg_get_opt_int(r, row, c + 9);
    out->received_at = pg_get_int(r, row, c + 10);
    out->bytes = pg_get_opt_int(r, row, c + 11);
    out->files_fetched = pg_get_opt_int(r, row, c + 12);
    out->files_delta = pg_get_opt_int(r, row, c + 13);
    out->bytes_delta_saved = pg_get_opt_int(r, row, c + 14);
    out->delta_fallbacks = pg_get_opt_int(r, row, c + 15);
    lp_status st =
        col_fixed(r, row, c + 1, out->device_id, sizeof out->device_id, "device_id", err);
    if (!st)
        st = col_fixed(r, row, c + 3, out->type, sizeof out->type, "event type", err);
    if (!st &&
        (!pg_get_dup(r, row, c + 5, &out->version) || !pg_get_dup(r, row, c + 8, &out->reason)))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory reading an event");
    return st;
}

/* ---- writes --------------------------------------------------------------- */

lp_status pg_device_touch(lp_db *db, int64_t app_id, const char *device_id, int64_t when,
                          int64_t dropped, const char *channel, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_text(&p, device_id);
    pg_int(&p, when);
    pg_int(&p, dropped);
    pg_text(&p, channel);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "device '%s' of app id %lld", device_id, (long long)app_id);
    PGresult *r;
    lp_status st = pg_run(D(db), S_DEVICE_TOUCH,
                          "INSERT INTO devices (app_id, device_id, first_seen, last_seen, "
                          "dropped, channel) VALUES ($1, $2, $3, $3, $4, $5) "
                          "ON CONFLICT (app_id, device_id) DO UPDATE SET "
                          "first_seen = least(devices.first_seen, excluded.first_seen), "
                          "last_seen = greatest(devices.last_seen, excluded.last_seen), "
                          "dropped = greatest(devices.dropped, excluded.dropped), "
                          "channel = coalesce(excluded.channel, devices.channel)",
                          &p, &r, err, ctx);
    PQclear(r);
    return st;
}

lp_status pg_event_insert(lp_db *db, int64_t app_id, const char *device_id,
                          const lp_db_event_new *ev, int64_t received_at, const char *channel,
                          bool *added, lp_error *err)
{
    *added = false;
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_text(&p, device_id);
    pg_int(&p, ev->seq);
    pg_text(&p, ev->type);
    pg_int(&p, ev->at);
    pg_text(&p, ev->version);
    pg_opt_int(&p, ev->version_code, ev->version_code > 0);
    pg_opt_int(&p, ev->from_version_code, ev->from_version_code > 0);
    pg_text(&p, ev->reason);
    pg_opt_int(&p, ev->duration_ms, ev->duration_ms >= 0);
    pg_int(&p, received_at);
    const int64_t figures[] = {ev->bytes, ev->files_fetched, ev->files_delta,
                               ev->bytes_delta_saved, ev->delta_fallbacks};
    for (int k = 0; k < 5; k++)
        pg_opt_int(&p, figures[k], figures[k] >= 0);
    pg_text(&p, channel);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "event %lld of device '%s'", (long long)ev->seq, device_id);
    PGresult *r;
    lp_status st = pg_run(D(db), S_EVENT_INSERT,
                          "INSERT INTO events (app_id, device_id, seq, type, at, version, "
                          "version_code, from_version_code, reason, duration_ms, received_at, "
                          "bytes, files_fetched, files_delta, bytes_delta_saved, "
                          "delta_fallbacks, channel) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
                          "$9, $10, $11, $12, $13, $14, $15, $16, $17) "
                          "ON CONFLICT (app_id, device_id, seq) DO NOTHING",
                          &p, &r, err, ctx);
    if (!st)
        *added = pg_changes(r) > 0;
    PQclear(r);
    if (st || !*added)
        return st;
    /* An event older than the device's newest makes device_refresh look at
     * all its events (see db_sqlite_devices.c). */
    pg_params q = {0};
    pg_int(&q, app_id);
    pg_text(&q, device_id);
    pg_int(&q, ev->seq);
    st = pg_run(D(db), S_EVENT_LATE,
                "UPDATE devices SET last_event_seq = NULL "
                "WHERE app_id = $1 AND device_id = $2 AND last_event_seq > $3",
                &q, &r, err, ctx);
    PQclear(r);
    return st;
}

lp_status pg_device_refresh(lp_db *db, int64_t app_id, const char *device_id, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_text(&p, device_id);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "device '%s'", device_id);
    PGresult *r;
    lp_status st = pg_run(
        D(db), S_DEVICE_REFRESH,
        "UPDATE devices SET "
        "last_event_seq = (SELECT max(seq) FROM events WHERE app_id = $1 AND device_id = $2), "
        "version_code = coalesce((SELECT version_code FROM events WHERE app_id = $1 AND "
        "device_id = $2 AND seq > coalesce(devices.last_event_seq, 0) AND "
        "type IN ('activated', 'rolled_back', 'healthy') AND "
        "version_code IS NOT NULL ORDER BY seq DESC LIMIT 1), version_code) "
        "WHERE app_id = $1 AND device_id = $2",
        &p, &r, err, ctx);
    PQclear(r);
    return st;
}

/* ---- reads ------------------------------------------------------------------ */

lp_status pg_event_list(lp_db *db, int64_t app_id, const lp_db_event_query *q,
                        lp_db_event_list *out, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_text(&p, q->device_id);
    pg_text(&p, q->type);
    pg_int(&p, q->since);
    pg_int(&p, q->before_id);
    pg_int(&p, (int64_t)q->limit);
    PGresult *r;
    lp_status st;
    if (q->device_id)
        st = pg_run(D(db), S_EVENTS_BY_DEVICE,
                    EVENT_COLS "WHERE e.app_id = $1 AND e.device_id = $2 AND "
                               "($3 IS NULL OR e.type = $3) " EVENT_TAIL,
                    &p, &r, err, "listing events");
    else if (q->type)
        st = pg_run(D(db), S_EVENTS_BY_TYPE,
                    EVENT_COLS "WHERE e.app_id = $1 AND $2 IS NULL AND e.type = $3 " EVENT_TAIL,
                    &p, &r, err, "listing events");
    else
        st = pg_run(D(db), S_EVENTS_BY_APP,
                    EVENT_COLS "WHERE e.app_id = $1 AND $2 IS NULL AND $3 IS NULL " EVENT_TAIL,
                    &p, &r, err, "listing events");
    if (st)
        return st;
    st = pg_check_rows(r, LP_DB_LIST_MAX, "listing events", err);
    size_t n = (size_t)PQntuples(r);
    if (!st && n && !(out->items = calloc(n, sizeof *out->items)))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory listing events");
    for (size_t i = 0; !st && i < n; i++) {
        out->count++;
        st = read_event(r, (int)i, 0, &out->items[i], err);
    }
    PQclear(r);
    if (st)
        lp_db_event_list_free(out);
    return st;
}

/* Reads a row of DEVICE_COLS. */
static lp_status read_device(const PGresult *r, int row, lp_db_device *out, lp_error *err)
{
    out->app_id = pg_get_int(r, row, 0);
    out->first_seen = pg_get_int(r, row, 2);
    out->last_seen = pg_get_int(r, row, 3);
    out->version_code = pg_get_int(r, row, 4);
    out->dropped = pg_get_int(r, row, 5);
    lp_status st = col_fixed(r, row, 1, out->device_id, sizeof out->device_id, "device_id", err);
    snprintf(out->channel, sizeof out->channel, "%s", PQgetvalue(r, row, 22));
    out->has_last_event = !pg_is_null(r, row, 6);
    if (!st && out->has_last_event)
        st = read_event(r, row, 6, &out->last_event, err);
    return st;
}

lp_status pg_device_get(lp_db *db, int64_t app_id, const char *device_id, lp_db_device *out,
                        lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_text(&p, device_id);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "reading device '%s'", device_id);
    PGresult *r;
    lp_status st = pg_run(D(db), S_DEVICE_GET,
                          DEVICE_COLS "WHERE d.app_id = $1 AND d.device_id = $2", &p, &r, err,
                          ctx);
    if (st)
        return st;
    if (PQntuples(r) > 0)
        st = read_device(r, 0, out, err);
    else
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "device '%s' of app id %lld does not exist",
                          device_id, (long long)app_id);
    PQclear(r);
    if (st)
        lp_db_device_free(out);
    return st;
}

lp_status pg_device_list(lp_db *db, int64_t app_id, const char *after, size_t limit,
                         lp_db_device_list *out, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_text(&p, after);
    pg_int(&p, (int64_t)limit);
    PGresult *r;
    lp_status st = pg_run(D(db), S_DEVICE_LIST,
                          DEVICE_COLS "WHERE d.app_id = $1 AND ($2 IS NULL OR d.device_id > $2) "
                                      "ORDER BY d.device_id LIMIT $3",
                          &p, &r, err, "listing devices");
    if (st)
        return st;
    st = pg_check_rows(r, LP_DB_LIST_MAX, "listing devices", err);
    size_t n = (size_t)PQntuples(r);
    if (!st && n && !(out->items = calloc(n, sizeof *out->items)))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory listing devices");
    for (size_t i = 0; !st && i < n; i++) {
        out->count++;
        st = read_device(r, (int)i, &out->items[i], err);
    }
    PQclear(r);
    if (st)
        lp_db_device_list_free(out);
    return st;
}
