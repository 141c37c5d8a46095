/*
 * db_backend.h — what a metadata database back end implements (internal).
 *
 * An lp_db is a back end's own struct whose first member is `struct lp_db`,
 * so db.c can reach the operations table and the transaction flag and the
 * back end can cast back to its own type.
 *
 * db.c validates every input before calling an operation (names, lengths,
 * ranges, canonical scopes, "0 = now" times already replaced by real
 * times), and wraps each write operation in a write transaction when the
 * caller has none open: an operation may therefore assume its input is
 * valid and that it runs inside a transaction that serialises writers
 * (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock
 * taken at BEGIN, see db_pg.c).  A write call that joins a caller's
 * transaction is bracketed by the back end's savepoint hooks when it has
 * them (PostgreSQL, where a failed statement would otherwise doom the
 * whole transaction), so a failed call leaves the caller's transaction
 * usable, as SQLite does.
 *
 * Operations fill result structs that start zeroed; on failure they leave
 * them zeroed (db.c frees partial results).  Constraint failures map to
 * LP_ERR_EXISTS (unique), LP_ERR_NOT_FOUND (foreign key) with a message that
 * names the field; "no row" maps to LP_ERR_NOT_FOUND.
 */
#ifndef LP_STORE_DB_BACKEND_H
#define LP_STORE_DB_BACKEND_H

#include "livepush/db.h"

/* A stored audit entry as the back end read it, for the audit walk: text
 * columns are borrowed (valid during the callback only), with their byte
 * length, and NULL when the column is NULL.  Nothing is checked: the walk
 * shows a changed row as it is, for lp_db_audit_verify to judge. */
typedef struct lp_db_audit_text {
    const char *s;
    size_t len;
} lp_db_audit_text;

typedef struct lp_db_audit_row {
    int64_t seq;
    bool at_is_int;               /* false: the at column is not an integer */
    int64_t at;
    lp_db_audit_text actor, action, app, subject, details, prev_hash, hash;
} lp_db_audit_row;

typedef lp_status (*lp_db_audit_fn)(void *ctx, const lp_db_audit_row *row, bool *stop,
                                    lp_error *err);

typedef struct lp_db_ops {
    const char *name;
    void (*close)(lp_db *db);
    lp_status (*schema_version)(lp_db *db, int *version, lp_error *err);

    /* begin opens a write transaction; commit / rollback end it. */
    lp_status (*begin)(lp_db *db, lp_error *err);
    lp_status (*commit)(lp_db *db, lp_error *err);
    lp_status (*rollback)(lp_db *db, lp_error *err);
    /* False if the back end ended the transaction on its own (some errors,
     * e.g. a full disk, make SQLite roll back the whole transaction). */
    bool (*tx_active)(lp_db *db);
    /* Optional (NULL: not needed).  A write call inside a caller's
     * transaction runs between call_begin and call_end; call_end with
     * ok == false undoes the call's statements only, leaving the
     * transaction open. */
    lp_status (*call_begin)(lp_db *db, lp_error *err);
    lp_status (*call_end)(lp_db *db, bool ok, lp_error *err);

    lp_status (*app_create)(lp_db *db, const char *name, int64_t created_at, int64_t *id_out,
                            lp_error *err);
    /* By name when name is not NULL, else by id. */
    lp_status (*app_get)(lp_db *db, int64_t id, const char *name, lp_db_app *out, lp_error *err);
    lp_status (*app_list)(lp_db *db, lp_db_app_list *out, lp_error *err);

    lp_status (*channel_create)(lp_db *db, int64_t app_id, const char *name, int64_t created_at,
                                int64_t *id_out, lp_error *err);
    lp_status (*channel_list)(lp_db *db, int64_t app_id, lp_db_channel_list *out, lp_error *err);

    /* Inserts the row and links its channels, creating missing channels.
     * The version_code / version / rollback_of / created_by checks are done
     * by db.c beforehand in the same transaction. */
    lp_status (*release_insert)(lp_db *db, const lp_db_release_new *rel, int64_t *id_out,
                                lp_error *err);
    lp_status (*release_get)(lp_db *db, int64_t id, lp_db_release *out, lp_error *err);
    /* Newest release with that version; original_only restricts to
     * releases that are not rollbacks. */
    lp_status (*release_get_by_version)(lp_db *db, int64_t app_id, const char *version,
                                        bool original_only, lp_db_release *out, lp_error *err);
    lp_status (*release_latest)(lp_db *db, int64_t app_id, const char *channel,
                                lp_db_release *out, lp_error *err);
    lp_status (*release_list)(lp_db *db, int64_t app_id, const char *channel, int64_t before_code,
                              size_t limit, lp_db_release_list *out, lp_error *err);
    lp_status (*release_max_code)(lp_db *db, int64_t app_id, int64_t *code, lp_error *err);
    lp_status (*release_set_state)(lp_db *db, int64_t id, const char *state, lp_error *err);

    lp_status (*token_insert)(lp_db *db, const lp_db_token_new *tok, lp_error *err);
    lp_status (*token_get)(lp_db *db, const char *id, lp_db_token *out, lp_error *err);
    lp_status (*token_list)(lp_db *db, lp_db_token_list *out, lp_error *err);
    lp_status (*token_revoke)(lp_db *db, const char *id, int64_t when, lp_error *err);
    lp_status (*token_touch)(lp_db *db, const char *id, int64_t when, lp_error *err);

    lp_status (*upload_create)(lp_db *db, const lp_db_upload_new *up, lp_error *err);
    lp_status (*upload_get)(lp_db *db, const char *id, lp_db_upload *out, lp_error *err);
    lp_status (*upload_set_received)(lp_db *db, const char *id, uint64_t received, int64_t when,
                                     lp_error *err);
    lp_status (*upload_delete)(lp_db *db, const char *id, lp_error *err);
    lp_status (*upload_list_stale)(lp_db *db, int64_t updated_before, lp_db_upload_list *out,
                                   lp_error *err);

    /* Devices and events (db_events.c runs a batch as: device_touch, then
     * event_insert for each event, then device_refresh).  device_touch
     * creates the device row (first_seen = last_seen = when) or sets
     * last_seen and dropped to the larger of stored and given. */
    lp_status (*device_touch)(lp_db *db, int64_t app_id, const char *device_id, int64_t when,
                              int64_t dropped, const char *channel, lp_error *err);
    /* Stores one event unless the device's seq is stored already; *added
     * tells which. */
    lp_status (*event_insert)(lp_db *db, int64_t app_id, const char *device_id,
                              const lp_db_event_new *ev, int64_t received_at,
                              const char *channel, bool *added, lp_error *err);
    /* Sets the device's version_code and newest event from its events. */
    lp_status (*device_refresh)(lp_db *db, int64_t app_id, const char *device_id, lp_error *err);
    lp_status (*event_list)(lp_db *db, int64_t app_id, const lp_db_event_query *q,
                            lp_db_event_list *out, lp_error *err);
    lp_status (*device_get)(lp_db *db, int64_t app_id, const char *device_id, lp_db_device *out,
                            lp_error *err);
    lp_status (*device_list)(lp_db *db, int64_t app_id, const char *after, size_t limit,
                             lp_db_device_list *out, lp_error *err);

    /* Deltas between releases (db_deltas.c checks the input; the writes
     * run inside its write transaction). */
    lp_status (*delta_plan)(lp_db *db, int64_t release_id, unsigned k, int64_t created_at,
                            size_t *added, lp_error *err);
    lp_status (*delta_pair_next)(lp_db *db, lp_db_delta_pair *out, lp_error *err);
    lp_status (*delta_pair_get)(lp_db *db, int64_t app_id, int64_t from_code, int64_t to_code,
                                lp_db_delta_pair *out, lp_error *err);
    lp_status (*delta_record)(lp_db *db, int64_t from_id, int64_t to_id, const lp_db_delta *d,
                              lp_error *err);
    lp_status (*delta_pair_finish)(lp_db *db, int64_t from_id, int64_t to_id, int64_t when,
                                   lp_error *err);
    lp_status (*delta_list)(lp_db *db, int64_t from_id, int64_t to_id, const char *state,
                            lp_db_delta_list *out, lp_error *err);
    lp_status (*delta_find)(lp_db *db, const char *base, const char *result, bool *found,
                            lp_db_delta *out, lp_error *err);
    lp_status (*delta_summary)(lp_db *db, int64_t to_id, lp_db_delta_summary *out,
                               lp_error *err);
    /* Rollouts (db_rollouts.c checks the input; the writes run inside its
     * write transaction).  rollout_get fills the defaults when no row. */
    lp_status (*rollout_put)(lp_db *db, const lp_db_rollout_new *r, int64_t at, lp_error *err);
    lp_status (*rollout_get)(lp_db *db, int64_t release_id, const char *channel,
                             lp_db_rollout *out, lp_error *err);
    lp_status (*rollout_list)(lp_db *db, int64_t app_id, const char *channel,
                              lp_db_rollout_list *out, lp_error *err);
    lp_status (*release_add_channel)(lp_db *db, int64_t release_id, const char *channel,
                                     int64_t at, lp_error *err);
    lp_status (*channel_window)(lp_db *db, int64_t app_id, const char *channel, bool set,
                                int *start, int *end, lp_error *err);
    lp_status (*app_guard)(lp_db *db, int64_t app_id, bool set, int *rate_bp, int *min_devices,
                           lp_error *err);
    lp_status (*release_stats)(lp_db *db, int64_t app_id, int64_t version_code,
                               const char *channel, lp_db_release_stats *out, lp_error *err);
    lp_status (*release_adoption)(lp_db *db, int64_t app_id, int64_t version_code,
                                  const char *channel, int64_t bucket_s, lp_db_adoption *out,
                                  lp_error *err);
    /* The audit log (db_audit.c checks, canonicalises and hashes; an
     * append runs audit_last then audit_insert inside its write
     * transaction).  audit_last: the newest entry's seq and hash as stored
     * (seq 0, hash "" when empty).  audit_walk: calls fn for each entry
     * with seq > after_seq (only app's when app is not NULL) in seq order,
     * at most `limit` (0: all), with the columns as stored; fn returns an
     * error to stop with it, or sets *stop to stop early with LP_OK. */
    lp_status (*audit_last)(lp_db *db, lp_db_audit_head *out, lp_error *err);
    lp_status (*audit_insert)(lp_db *db, const lp_db_audit_entry *e, lp_error *err);
    lp_status (*audit_walk)(lp_db *db, const char *app, int64_t after_seq, size_t limit,
                            lp_db_audit_fn fn, void *ctx, lp_error *err);
} lp_db_ops;

struct lp_db {
    const lp_db_ops *ops;
    bool in_tx; /* a transaction opened by lp_db_begin is open */
};

/* Shared input checks (db_check.c).  Each returns LP_OK or
 * LP_ERR_INVALID_ARG / LP_ERR_TOO_LARGE with a message naming `field`. */
lp_status lp_db_check_name(const char *field, const char *s, lp_error *err);
lp_status lp_db_check_version(const char *field, const char *s, lp_error *err);
lp_status lp_db_check_platform(const char *field, const char *s, lp_error *err);
lp_status lp_db_check_notes(const char *field, const char *s, lp_error *err);
lp_status lp_db_check_id(const char *field, const char *s, lp_error *err);
lp_status lp_db_check_token_name(const char *field, const char *s, lp_error *err);
lp_status lp_db_check_sha256(const char *field, const char *s, lp_error *err);
lp_status lp_db_check_path(const char *field, const char *s, lp_error *err);
lp_status lp_db_check_state(const char *field, const char *s, lp_error *err);
lp_status lp_db_check_positive(const char *field, int64_t v, lp_error *err);
lp_status lp_db_check_time(const char *field, int64_t v, lp_error *err);
lp_status lp_db_check_size(const char *field, uint64_t v, lp_error *err);
/* Text of 1..max bytes without control characters but \t \n \r. */
lp_status lp_db_check_text(const char *field, const char *s, size_t max, lp_error *err);
/* min..max lower-case hex digits. */
lp_status lp_db_check_hex(const char *field, const char *s, size_t min, size_t max,
                          lp_error *err);

/* The write-call bracket of db.c: lp_db_write_begin opens a transaction
 * for one write call unless the caller has one open (*own says whether it
 * did); lp_db_write_end commits it on success and rolls it back on failure
 * (only when *own), returning the final status. */
lp_status lp_db_write_begin(lp_db *db, bool *own, lp_error *err);
lp_status lp_db_write_end(lp_db *db, bool own, lp_status st, lp_error *err);

/* Shorthands of the front files (db.c, db_*.c without a back end's name):
 * TRY returns the status of a failed call; NEED refuses a missing handle or
 * output argument (the function's lp_error is named `err`). */
#define TRY(expr)                   \
    do {                            \
        lp_status try_st_ = (expr); \
        if (try_st_)                \
            return try_st_;         \
    } while (0)

#define NEED(db, out)                                                                      \
    do {                                                                                   \
        if (!(db) || !(out))                                                               \
            return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle or output"); \
    } while (0)

/* SQLite back end: `path` is the file name after "sqlite:". */
lp_status lp_db_sqlite_open(const char *path, lp_db **out, lp_error *err);
/* PostgreSQL back end: `url` is the whole postgres:// or postgresql:// URL
 * (libpq's connection URI). */
lp_status lp_db_pg_open(const char *url, lp_db **out, lp_error *err);

/* The schema, as one ordered list of migrations for every back end
 * (db_schema.c): lp_db_migrations[i] takes a database from version i to
 * i + 1.  Each entry holds the same change in each back end's dialect:
 * same tables, columns, constraints and indexes. */
typedef struct lp_db_migration {
    const char *sqlite;
    const char *postgresql;
} lp_db_migration;
extern const lp_db_migration lp_db_migrations[LP_DB_SCHEMA_VERSION];

#endif
