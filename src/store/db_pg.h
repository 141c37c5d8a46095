/*
 * db_pg.h — the PostgreSQL back end's shared parts (internal).
 *
 * db_pg.c owns the connection: opening, session settings, migrations,
 * transactions and their advisory lock, the prepared-statement cache, the
 * parameter and row helpers, and the mapping of SQLSTATE codes to
 * lp_status.  db_pg_ops.c holds the queries of apps, channels, releases,
 * tokens and uploads; db_pg_devices.c those of devices and events,
 * db_pg_deltas.c of deltas, db_pg_audit.c of the audit log and
 * db_pg_rollouts.c of rollouts.  The files mirror db_sqlite*.c one for one.
 */
#ifndef LP_STORE_DB_PG_H
#define LP_STORE_DB_PG_H

#include "store/db_backend.h"

#include <libpq-fe.h>

/* Prepared statements are per connection, named "lp<slot>", with the same
 * slot ranges as the SQLite back end: db_pg_ops.c below PG_SLOTS_DEVICES,
 * db_pg_devices.c up to PG_SLOTS_DELTAS, db_pg_deltas.c up to
 * PG_SLOTS_AUDIT, db_pg_audit.c up to PG_SLOTS_ROLLOUTS, db_pg_rollouts.c
 * up to PG_SLOTS_INTERNAL, db_pg.c the rest. */
#define PG_STMT_SLOTS 100
#define PG_SLOTS_DEVICES 36
#define PG_SLOTS_DELTAS 48
#define PG_SLOTS_AUDIT 64
#define PG_SLOTS_ROLLOUTS 80
#define PG_SLOTS_INTERNAL 96

/* How long a statement waits for a lock (the writers' advisory lock, a
 * row another transaction holds) before failing with "database is busy"
 * (LP_ERR_STATE): the same 5 s as SQLite's busy timeout. */
#define PG_LOCK_TIMEOUT "5s"

typedef struct pg_db {
    lp_db base;
    PGconn *conn;
    char *url;                       /* for reconnecting */
    bool prepared[PG_STMT_SLOTS];    /* slot is prepared on this connection */
    int64_t write_key;               /* advisory lock of the writers (db_pg.c) */
} pg_db;

/* Parameters of one statement, always bound (never written into SQL):
 * integers and text are sent as text, byte strings as binary.  Each
 * parameter carries its type, given to the server when the statement is
 * prepared, so a NULL parameter still has one. */
#define PG_PARAMS_MAX 20

typedef struct pg_params {
    int n;
    Oid types[PG_PARAMS_MAX];
    const char *values[PG_PARAMS_MAX];
    int lengths[PG_PARAMS_MAX];
    int formats[PG_PARAMS_MAX];
    char numbers[PG_PARAMS_MAX][24];
} pg_params;

void pg_int(pg_params *p, int64_t v);
/* Text, or NULL when s is NULL. */
void pg_text(pg_params *p, const char *s);
/* An integer, or NULL when !given. */
void pg_opt_int(pg_params *p, int64_t v, bool given);
/* Bytes (borrowed until the statement ran). */
void pg_bytea(pg_params *p, const void *b, size_t len);

/* Runs the statement of `slot` (prepared on first use on this connection,
 * with the parameters' types) with parameters p.  On success *out is the
 * result (rows or a command's count) for the caller to PQclear; on
 * failure *out is NULL and err says `ctx` followed by what failed
 * (pg_fail).  Outside a transaction a broken connection is re-opened
 * first. */
lp_status pg_run(pg_db *d, int slot, const char *sql, const pg_params *p, PGresult **out,
                 lp_error *err, const char *ctx);

/* Rows of a statement handed one at a time (the audit walk): fn gets a
 * result and the row in it, valid during the call.  fn returns
 * an error to stop with it, or sets *stop to stop with LP_OK; the rows
 * not read are drained, so the connection stays usable. */
typedef lp_status (*pg_row_fn)(void *ctx, const PGresult *r, int row, bool *stop,
                                lp_error *err);
lp_status pg_each_row(pg_db *d, int slot, const char *sql, const pg_params *p, pg_row_fn fn,
                      void *ctx, lp_error *err, const char *what);

/* Maps a failed result (or, when r is NULL, the connection's error) to an
 * lp_status and sets err to the printf-style context, what kind of failure
 * it is, and PostgreSQL's own message:
 *   23505 unique_violation            -> LP_ERR_EXISTS
 *   23503 foreign_key_violation       -> LP_ERR_NOT_FOUND
 *   other class 23 (check, not null)  -> LP_ERR_INVALID_ARG
 *   40001 serialization_failure, 40P01 deadlock_detected,
 *   55P03 lock_not_available, 57014 query_canceled
 *                                     -> LP_ERR_STATE ("database is busy")
 *   class 08, 57P01-57P03 (connection lost, server shutting down),
 *   a broken connection               -> LP_ERR_NETWORK
 *   53200 out_of_memory               -> LP_ERR_NOMEM
 *   anything else                     -> LP_ERR_IO */
lp_status pg_fail(pg_db *d, const PGresult *r, lp_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Row helpers.  Values come as text; NULL reads as 0 / -1 / NULL. */
int64_t pg_get_int(const PGresult *r, int row, int col);
/* -1 when NULL. */
int64_t pg_get_opt_int(const PGresult *r, int row, int col);
bool pg_is_null(const PGresult *r, int row, int col);
/* A boolean column ("t"). */
bool pg_get_bool(const PGresult *r, int row, int col);
/* Copies a text column into a new malloc'd string (NULL stays NULL).
 * False only when out of memory. */
bool pg_get_dup(const PGresult *r, int row, int col, char **out);
/* Rows a command changed (INSERT / UPDATE / DELETE). */
int64_t pg_changes(const PGresult *r);
/* LP_ERR_TOO_LARGE when a list query gave more than max rows (the lists
 * ask for one more than they may return). */
lp_status pg_check_rows(const PGresult *r, size_t max, const char *what, lp_error *err);

/* The operations table (db_pg.c). */
extern const lp_db_ops lp_db_pg_ops;

/* Query parts of the operations (db_pg_ops.c). */
lp_status pg_app_create(lp_db *db, const char *name, int64_t created_at, int64_t *id_out,
                        lp_error *err);
lp_status pg_app_get(lp_db *db, int64_t id, const char *name, lp_db_app *out, lp_error *err);
lp_status pg_app_list(lp_db *db, lp_db_app_list *out, lp_error *err);
lp_status pg_channel_create(lp_db *db, int64_t app_id, const char *name, int64_t created_at,
                            int64_t *id_out, lp_error *err);
lp_status pg_channel_list(lp_db *db, int64_t app_id, lp_db_channel_list *out, lp_error *err);
lp_status pg_release_insert(lp_db *db, const lp_db_release_new *rel, int64_t *id_out,
                            lp_error *err);
lp_status pg_release_get(lp_db *db, int64_t id, lp_db_release *out, lp_error *err);
lp_status pg_release_get_by_version(lp_db *db, int64_t app_id, const char *version,
                                    bool original_only, lp_db_release *out, lp_error *err);
lp_status pg_release_latest(lp_db *db, int64_t app_id, const char *channel, lp_db_release *out,
                            lp_error *err);
lp_status pg_release_list(lp_db *db, int64_t app_id, const char *channel, int64_t before_code,
                          size_t limit, lp_db_release_list *out, lp_error *err);
lp_status pg_release_max_code(lp_db *db, int64_t app_id, int64_t *code, lp_error *err);
lp_status pg_release_set_state(lp_db *db, int64_t id, const char *state, lp_error *err);
lp_status pg_token_insert(lp_db *db, const lp_db_token_new *tok, lp_error *err);
lp_status pg_token_get(lp_db *db, const char *id, lp_db_token *out, lp_error *err);
lp_status pg_token_list(lp_db *db, lp_db_token_list *out, lp_error *err);
lp_status pg_token_revoke(lp_db *db, const char *id, int64_t when, lp_error *err);
lp_status pg_token_touch(lp_db *db, const char *id, int64_t when, lp_error *err);
lp_status pg_upload_create(lp_db *db, const lp_db_upload_new *up, lp_error *err);
lp_status pg_upload_get(lp_db *db, const char *id, lp_db_upload *out, lp_error *err);
lp_status pg_upload_set_received(lp_db *db, const char *id, uint64_t received, int64_t when,
                                 lp_error *err);
lp_status pg_upload_delete(lp_db *db, const char *id, lp_error *err);
lp_status pg_upload_list_stale(lp_db *db, int64_t updated_before, lp_db_upload_list *out,
                               lp_error *err);

/* Devices and events (db_pg_devices.c). */
lp_status pg_device_touch(lp_db *db, int64_t app_id, const char *device_id, int64_t when,
                          int64_t dropped, const char *channel, lp_error *err);
lp_status pg_event_insert(lp_db *db, int64_t app_id, const char *device_id,
                          const lp_db_event_new *ev, int64_t received_at, const char *channel,
                          bool *added, lp_error *err);
lp_status pg_device_refresh(lp_db *db, int64_t app_id, const char *device_id, lp_error *err);
lp_status pg_event_list(lp_db *db, int64_t app_id, const lp_db_event_query *q,
                        lp_db_event_list *out, lp_error *err);
lp_status pg_device_get(lp_db *db, int64_t app_id, const char *device_id, lp_db_device *out,
                        lp_error *err);
lp_status pg_device_list(lp_db *db, int64_t app_id, const char *after, size_t limit,
                         lp_db_device_list *out, lp_error *err);

/* Deltas between releases (db_pg_deltas.c). */
lp_status pg_delta_plan(lp_db *db, int64_t release_id, unsigned k, int64_t created_at,
                        size_t *added, lp_error *err);
lp_status pg_delta_pair_next(lp_db *db, lp_db_delta_pair *out, lp_error *err);
lp_status pg_delta_pair_get(lp_db *db, int64_t app_id, int64_t from_code, int64_t to_code,
                            lp_db_delta_pair *out, lp_error *err);
lp_status pg_delta_record(lp_db *db, int64_t from_id, int64_t to_id, const lp_db_delta *d,
                          lp_error *err);
lp_status pg_delta_pair_finish(lp_db *db, int64_t from_id, int64_t to_id, int64_t when,
                               lp_error *err);
lp_status pg_delta_list(lp_db *db, int64_t from_id, int64_t to_id, const char *state,
                        lp_db_delta_list *out, lp_error *err);
lp_status pg_delta_find(lp_db *db, const char *base, const char *result, bool *found,
                        lp_db_delta *out, lp_error *err);
lp_status pg_delta_summary(lp_db *db, int64_t to_id, lp_db_delta_summary *out, lp_error *err);

/* The audit log (db_pg_audit.c). */
lp_status pg_audit_last(lp_db *db, lp_db_audit_head *out, lp_error *err);
lp_status pg_audit_insert(lp_db *db, const lp_db_audit_entry *e, lp_error *err);
lp_status pg_audit_walk(lp_db *db, const char *app, int64_t after_seq, size_t limit,
                        lp_db_audit_fn fn, void *ctx, lp_error *err);

/* Rollouts (db_pg_rollouts.c). */
lp_status pg_rollout_put(lp_db *db, const lp_db_rollout_new *r, int64_t at, lp_error *err);
lp_status pg_rollout_get(lp_db *db, int64_t release_id, const char *channel,
                         lp_db_rollout *out, lp_error *err);
lp_status pg_rollout_list(lp_db *db, int64_t app_id, const char *channel,
                          lp_db_rollout_list *out, lp_error *err);
lp_status pg_release_add_channel(lp_db *db, int64_t release_id, const char *channel, int64_t at,
                                 lp_error *err);
lp_status pg_channel_window(lp_db *db, int64_t app_id, const char *channel, bool set, int *start,
                            int *end, lp_error *err);
lp_status pg_app_guard(lp_db *db, int64_t app_id, bool set, int *rate_bp, int *min_devices,
                       lp_error *err);
lp_status pg_release_stats(lp_db *db, int64_t app_id, int64_t version_code, const char *channel,
                           lp_db_release_stats *out, lp_error *err);
lp_status pg_release_adoption(lp_db *db, int64_t app_id, int64_t version_code,
                              const char *channel, int64_t bucket_s, lp_db_adoption *out,
                              lp_error *err);

#endif
