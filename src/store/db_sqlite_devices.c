/*
 * db_sqlite_devices.c — the SQLite back end's queries for devices and
 * their events (see db_backend.h and include/livepush/db.h).
 *
 * Same rules as db_sqlite_ops.c: cached prepared statements (slots from
 * SQ_SLOTS_DEVICES), values always bound, every statement reset before
 * returning, result structs zeroed on failure.  db_events.c has checked the
 * input and opened the write transaction.
 *
 * Idempotence lives in the schema: events are inserted with ON CONFLICT
 * (app_id, device_id, seq) DO NOTHING, and sqlite3_changes tells a new
 * event from a duplicate.  The device row is an upsert that only moves
 * last_seen and dropped forward, and device_refresh recomputes the derived
 * columns from the stored events.
 *
 * The device's version_code is that of its newest (highest seq)
 * activated, healthy or rolled_back event.  Finding it among all of a
 * device's events would walk back over every "checked" event since that
 * one, which a device adds at each check-in for as long as it lives (one
 * every 5 minutes by default): a year-old device would make each of its
 * check-ins read 100,000 rows.  So device_refresh only looks at the events
 * after the device's newest one before this batch (seq > last_event_seq,
 * a range of the unique index): the newest of those that sets a release
 * wins, else version_code stays.  That equals the full recomputation as
 * long as the batch added no event older than last_event_seq; when
 * event_insert adds such an event (a batch that arrives late), it clears
 * last_event_seq in the same transaction, and device_refresh then looks at
 * all the device's events (so it does for a device's first events).
 *
 * Event lists use one of three statements so that each can use an index:
 * by device (the unique (app, device, seq) index), by type
 * (events_by_type), or the whole app (events_by_app), all newest first.
 */
#include "store/db_sqlite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    S_DEVICE_TOUCH = SQ_SLOTS_DEVICES,
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

_Static_assert(S_DEVICES_END <= SQ_SLOTS_DELTAS, "too many cached statements");

#define EVENT_FIELDS                                                                     \
    "e.id, e.device_id, e.seq, e.type, e.at, e.version, e.version_code, "                \
    "e.from_version_code, e.reason, e.duration_ms, e.received_at, e.bytes, "              \
    "e.files_fetched, e.files_delta, e.bytes_delta_saved, e.delta_fallbacks "

#define EVENT_COLS "SELECT " EVENT_FIELDS "FROM events e "

/* Optional filters ?4 since (0: none) and ?5 before id (0: none), then the
 * order and ?6 limit. */
#define EVENT_TAIL                                                                       \
    "AND (?4 = 0 OR e.at >= ?4) AND (?5 = 0 OR e.id < ?5) ORDER BY e.id DESC LIMIT ?6"

/* A device with its newest event (NULL columns when it has none). */
#define DEVICE_COLS                                                                      \
    "SELECT d.app_id, d.device_id, d.first_seen, d.last_seen, d.version_code, d.dropped, " \
    EVENT_FIELDS ", coalesce(d.channel, '') FROM devices d LEFT JOIN events e ON e.app_id = d.app_id AND "         \
    "e.device_id = d.device_id AND e.seq = d.last_event_seq "

static sq_db *D(lp_db *db)
{
    return (sq_db *)db;
}

static void bind_opt_int(sqlite3_stmt *s, int i, int64_t v, bool given)
{
    if (given)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

/* Copies text column i into a fixed buffer of cap bytes. */
static lp_status col_fixed(sqlite3_stmt *s, int i, char *out, size_t cap, const char *what,
                           lp_error *err)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    int n = sqlite3_column_bytes(s, i);
    if (!t || n <= 0 || (size_t)n >= cap)
        return lp_error_set(err, LP_ERR_MALFORMED, "stored %s: %d bytes, expected 1 to %zu",
                            what, n, cap - 1);
    memcpy(out, t, (size_t)n);
    out[n] = '\0';
    return LP_OK;
}

/* Reads the event whose columns start at column c (EVENT_FIELDS). */
static int64_t col_opt_int(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, i);
}

static lp_status read_event(sqlite3_stmt *s, int c, lp_db_event *out, lp_error *err)
{
    out->id = sqlite3_column_int64(s, c);
    out->seq = sqlite3_column_int64(s, c + 2);
    out->at = sqlite3_column_int64(s, c + 4);
    out->version_code = sqlite3_column_int64(s, c + 6);          /* NULL reads as 0 */
    out->from_version_code = sqlite3_column_int64(s, c + 7);
    out->duration_ms = col_opt_int(s, c + 9);
    out->received_at = sqlite3_column_int64(s, c + 10);
    out->bytes = col_opt_int(s, c + 11);
    out->files_fetched = col_opt_int(s, c + 12);
    out->files_delta = col_opt_int(s, c + 13);
    out->bytes_delta_saved = col_opt_int(s, c + 14);
    out->delta_fallbacks = col_opt_int(s, c + 15);
    lp_status st = col_fixed(s, c + 1, out->device_id, sizeof out->device_id, "device_id", err);
    if (!st)
        st = col_fixed(s, c + 3, out->type, sizeof out->type, "event type", err);
    if (!st && (!sq_col_dup(s, c + 5, &out->version) || !sq_col_dup(s, c + 8, &out->reason)))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory reading an event");
    return st;
}

/* ---- writes --------------------------------------------------------------- */

lp_status sq_device_touch(lp_db *db, int64_t app_id, const char *device_id, int64_t when,
                          int64_t dropped, const char *channel, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_DEVICE_TOUCH,
                           "INSERT INTO devices (app_id, device_id, first_seen, last_seen, "
                           "dropped, channel) VALUES (?1, ?2, ?3, ?3, ?4, ?5) "
                           "ON CONFLICT (app_id, device_id) DO UPDATE SET "
                           "first_seen = min(first_seen, excluded.first_seen), "
                           "last_seen = max(last_seen, excluded.last_seen), "
                           "dropped = max(dropped, excluded.dropped), "
                           "channel = coalesce(excluded.channel, channel)",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_text(s, 2, device_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, when);
    sqlite3_bind_int64(s, 4, dropped);
    sq_bind_opt_text(s, 5, channel);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "device '%s' of app id %lld", device_id, (long long)app_id);
    sqlite3_reset(s);
    return st;
}

lp_status sq_event_insert(lp_db *db, int64_t app_id, const char *device_id,
                          const lp_db_event_new *ev, int64_t received_at, const char *channel,
                          bool *added, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    *added = false;
    lp_status st = sq_stmt(d, S_EVENT_INSERT,
                           "INSERT INTO events (app_id, device_id, seq, type, at, version, "
                           "version_code, from_version_code, reason, duration_ms, received_at, "
                           "bytes, files_fetched, files_delta, bytes_delta_saved, "
                           "delta_fallbacks, channel) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                           "?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) "
                           "ON CONFLICT (app_id, device_id, seq) DO NOTHING",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_text(s, 2, device_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, ev->seq);
    sqlite3_bind_text(s, 4, ev->type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, ev->at);
    sq_bind_opt_text(s, 6, ev->version);
    bind_opt_int(s, 7, ev->version_code, ev->version_code > 0);
    bind_opt_int(s, 8, ev->from_version_code, ev->from_version_code > 0);
    sq_bind_opt_text(s, 9, ev->reason);
    bind_opt_int(s, 10, ev->duration_ms, ev->duration_ms >= 0);
    sqlite3_bind_int64(s, 11, received_at);
    const int64_t figures[] = {ev->bytes, ev->files_fetched, ev->files_delta,
                               ev->bytes_delta_saved, ev->delta_fallbacks};
    for (int k = 0; k < 5; k++)
        bind_opt_int(s, 12 + k, figures[k], figures[k] >= 0);
    sq_bind_opt_text(s, 17, channel);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "event %lld of device '%s'", (long long)ev->seq, device_id);
    st = sq_step_done(d, s, err, ctx);
    if (!st)
        *added = sqlite3_changes(d->h) > 0;
    sqlite3_reset(s);
    if (st || !*added)
        return st;
    /* An event older than the device's newest makes device_refresh look at
     * all its events (see the top of this file). */
    st = sq_stmt(d, S_EVENT_LATE,
                 "UPDATE devices SET last_event_seq = NULL "
                 "WHERE app_id = ?1 AND device_id = ?2 AND last_event_seq > ?3",
                 &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_text(s, 2, device_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, ev->seq);
    st = sq_step_done(d, s, err, ctx);
    sqlite3_reset(s);
    return st;
}

lp_status sq_device_refresh(lp_db *db, int64_t app_id, const char *device_id, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    /* Both SET expressions read the row as it was: the subquery's
     * last_event_seq is the newest seq before this batch (NULL: look at all). */
    lp_status st = sq_stmt(
        d, S_DEVICE_REFRESH,
        "UPDATE devices SET "
        "last_event_seq = (SELECT max(seq) FROM events WHERE app_id = ?1 AND device_id = ?2), "
        "version_code = coalesce((SELECT version_code FROM events WHERE app_id = ?1 AND "
        "device_id = ?2 AND seq > coalesce(devices.last_event_seq, 0) AND "
        "type IN ('activated', 'rolled_back', 'healthy') AND "
        "version_code IS NOT NULL ORDER BY seq DESC LIMIT 1), version_code) "
        "WHERE app_id = ?1 AND device_id = ?2",
        &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_text(s, 2, device_id, -1, SQLITE_STATIC);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "device '%s'", device_id);
    st = sq_step_done(d, s, err, ctx);
    sqlite3_reset(s);
    return st;
}

/* ---- reads ------------------------------------------------------------------ */

lp_status sq_event_list(lp_db *db, int64_t app_id, const lp_db_event_query *q,
                        lp_db_event_list *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st;
    if (q->device_id)
        st = sq_stmt(d, S_EVENTS_BY_DEVICE,
                     EVENT_COLS "WHERE e.app_id = ?1 AND e.device_id = ?2 AND "
                                "(?3 IS NULL OR e.type = ?3) " EVENT_TAIL,
                     &s, err);
    else if (q->type)
        st = sq_stmt(d, S_EVENTS_BY_TYPE,
                     EVENT_COLS "WHERE e.app_id = ?1 AND ?2 IS NULL AND e.type = ?3 " EVENT_TAIL,
                     &s, err);
    else
        st = sq_stmt(d, S_EVENTS_BY_APP,
                     EVENT_COLS "WHERE e.app_id = ?1 AND ?2 IS NULL AND ?3 IS NULL " EVENT_TAIL,
                     &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sq_bind_opt_text(s, 2, q->device_id);
    sq_bind_opt_text(s, 3, q->type);
    sqlite3_bind_int64(s, 4, q->since);
    sqlite3_bind_int64(s, 5, q->before_id);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)q->limit);
    size_t cap = 0;
    int rc = SQLITE_DONE;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        SQ_GROW(out->items, cap, out->count, st);
        if (!st)
            st = read_event(s, 0, &out->items[out->count++], err);
    }
    if (!st && rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "listing events");
    sqlite3_reset(s);
    if (st)
        lp_db_event_list_free(out);
    return st;
}

/* Reads a row of DEVICE_COLS. */
static lp_status read_device(sqlite3_stmt *s, lp_db_device *out, lp_error *err)
{
    out->app_id = sqlite3_column_int64(s, 0);
    out->first_seen = sqlite3_column_int64(s, 2);
    out->last_seen = sqlite3_column_int64(s, 3);
    out->version_code = sqlite3_column_int64(s, 4);
    out->dropped = sqlite3_column_int64(s, 5);
    lp_status st = col_fixed(s, 1, out->device_id, sizeof out->device_id, "device_id", err);
    const unsigned char *ch = sqlite3_column_text(s, 22);
    snprintf(out->channel, sizeof out->channel, "%s", ch ? (const char *)ch : "");
    out->has_last_event = sqlite3_column_type(s, 6) != SQLITE_NULL;
    if (!st && out->has_last_event)
        st = read_event(s, 6, &out->last_event, err);
    return st;
}

lp_status sq_device_get(lp_db *db, int64_t app_id, const char *device_id, lp_db_device *out,
                        lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_DEVICE_GET,
                           DEVICE_COLS "WHERE d.app_id = ?1 AND d.device_id = ?2", &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_text(s, 2, device_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        st = read_device(s, out, err);
    else if (rc == SQLITE_DONE)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "device '%s' of app id %lld does not exist",
                          device_id, (long long)app_id);
    else
        st = sq_fail(d, rc, err, "reading device '%s'", device_id);
    sqlite3_reset(s);
    if (st)
        lp_db_device_free(out);
    return st;
}

lp_status sq_device_list(lp_db *db, int64_t app_id, const char *after, size_t limit,
                         lp_db_device_list *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_DEVICE_LIST,
                           DEVICE_COLS "WHERE d.app_id = ?1 AND (?2 IS NULL OR d.device_id > ?2) "
                                       "ORDER BY d.device_id LIMIT ?3",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sq_bind_opt_text(s, 2, after);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)limit);
    size_t cap = 0;
    int rc = SQLITE_DONE;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        SQ_GROW(out->items, cap, out->count, st);
        if (!st)
            st = read_device(s, &out->items[out->count++], err);
    }
    if (!st && rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "listing devices");
    sqlite3_reset(s);
    if (st)
        lp_db_device_list_free(out);
    return st;
}
