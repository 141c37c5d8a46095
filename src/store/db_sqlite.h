/*
 * db_sqlite.h — the SQLite back end's shared parts (internal).
 *
 * db_sqlite.c owns the connection: opening, settings, migrations,
 * transactions, the statement cache and the mapping of SQLite result codes
 * to lp_status.  db_sqlite_ops.c holds the queries and fills result structs
 * (and the row helpers below); db_sqlite_devices.c those of devices and
 * events.  The migrations are db_schema.c's lp_db_migrations[i].sqlite.
 */
#ifndef LP_STORE_DB_SQLITE_H
#define LP_STORE_DB_SQLITE_H

#include "store/db_backend.h"

#include <sqlite3.h>

/* Prepared statements are cached per connection, by slot number:
 * db_sqlite_ops.c uses the slots below SQ_SLOTS_DEVICES, db_sqlite_devices.c
 * those from it up to SQ_SLOTS_DELTAS, db_sqlite_deltas.c those from
 * SQ_SLOTS_DELTAS up to SQ_SLOTS_AUDIT, db_sqlite_audit.c those from
 * SQ_SLOTS_AUDIT up to SQ_SLOTS_ROLLOUTS, db_sqlite_rollouts.c the rest. */
#define SQ_STMT_SLOTS 96
#define SQ_SLOTS_DEVICES 36
#define SQ_SLOTS_DELTAS 48
#define SQ_SLOTS_AUDIT 64
#define SQ_SLOTS_ROLLOUTS 80

typedef struct sq_db {
    lp_db base;
    sqlite3 *h;
    sqlite3_stmt *stmts[SQ_STMT_SLOTS];
} sq_db;

/* Busy timeout: how long a writer waits for another writer's transaction. */
#define SQ_BUSY_TIMEOUT_MS 5000

/* The operations table (db_sqlite_ops.c fills the query parts). */
extern const lp_db_ops lp_db_sqlite_ops;

/* Maps a SQLite result code to an lp_status and sets err to the printf-style
 * context followed by SQLite's own message:
 *   unique / primary key  -> LP_ERR_EXISTS
 *   foreign key           -> LP_ERR_NOT_FOUND
 *   other constraints     -> LP_ERR_INVALID_ARG
 *   busy / locked         -> LP_ERR_STATE
 *   out of memory         -> LP_ERR_NOMEM
 *   anything else         -> LP_ERR_IO */
lp_status sq_fail(sq_db *d, int rc, lp_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The cached statement in `slot` for `sql` (prepared on first use), reset
 * and with its bindings cleared.  The caller resets it when done
 * (sqlite3_reset) so no read stays open. */
lp_status sq_stmt(sq_db *d, int slot, const char *sql, sqlite3_stmt **out, lp_error *err);

/* Row helpers (db_sqlite_ops.c). */
/* Binds text, or NULL when v is NULL. */
void sq_bind_opt_text(sqlite3_stmt *s, int i, const char *v);
/* Copies text column i into a new malloc'd string (NULL stays NULL).
 * False only when out of memory. */
bool sq_col_dup(sqlite3_stmt *s, int i, char **out);
/* Makes room in an array of `size`-byte elements for one more than
 * `count` (at most LP_DB_LIST_MAX): returns the (maybe moved) array, or
 * NULL with *st set. */
void *sq_grow_array(void *items, size_t *cap, size_t count, size_t size, lp_status *st,
                    lp_error *err);
/* SQ_GROW(array, cap, count, st): st is set when there is no room (needs
 * `err` in scope). */
#define SQ_GROW(arr, cap, count, st)                                                    \
    do {                                                                                \
        void *grown_ = sq_grow_array((arr), &(cap), (count), sizeof *(arr), &(st), err); \
        if (grown_)                                                                     \
            (arr) = grown_;                                                             \
    } while (0)
/* Steps a write statement to completion; sq_fail with `ctx` otherwise. */
lp_status sq_step_done(sq_db *d, sqlite3_stmt *s, lp_error *err, const char *ctx);

/* Query parts of the operations (db_sqlite_ops.c). */
lp_status sq_app_create(lp_db *db, const char *name, int64_t created_at, int64_t *id_out,
                        lp_error *err);
lp_status sq_app_get(lp_db *db, int64_t id, const char *name, lp_db_app *out, lp_error *err);
lp_status sq_app_list(lp_db *db, lp_db_app_list *out, lp_error *err);
lp_status sq_channel_create(lp_db *db, int64_t app_id, const char *name, int64_t created_at,
                            int64_t *id_out, lp_error *err);
lp_status sq_channel_list(lp_db *db, int64_t app_id, lp_db_channel_list *out, lp_error *err);
lp_status sq_release_insert(lp_db *db, const lp_db_release_new *rel, int64_t *id_out,
                            lp_error *err);
lp_status sq_release_get(lp_db *db, int64_t id, lp_db_release *out, lp_error *err);
lp_status sq_release_get_by_version(lp_db *db, int64_t app_id, const char *version,
                                    bool original_only, lp_db_release *out, lp_error *err);
lp_status sq_release_latest(lp_db *db, int64_t app_id, const char *channel, lp_db_release *out,
                            lp_error *err);
lp_status sq_release_list(lp_db *db, int64_t app_id, const char *channel, int64_t before_code,
                          size_t limit, lp_db_release_list *out, lp_error *err);
lp_status sq_release_max_code(lp_db *db, int64_t app_id, int64_t *code, lp_error *err);
lp_status sq_release_set_state(lp_db *db, int64_t id, const char *state, lp_error *err);
lp_status sq_token_insert(lp_db *db, const lp_db_token_new *tok, lp_error *err);
lp_status sq_token_get(lp_db *db, const char *id, lp_db_token *out, lp_error *err);
lp_status sq_token_list(lp_db *db, lp_db_token_list *out, lp_error *err);
lp_status sq_token_revoke(lp_db *db, const char *id, int64_t when, lp_error *err);
lp_status sq_token_touch(lp_db *db, const char *id, int64_t when, lp_error *err);
lp_status sq_upload_create(lp_db *db, const lp_db_upload_new *up, lp_error *err);
lp_status sq_upload_get(lp_db *db, const char *id, lp_db_upload *out, lp_error *err);
lp_status sq_upload_set_received(lp_db *db, const char *id, uint64_t received, int64_t when,
                                 lp_error *err);
lp_status sq_upload_delete(lp_db *db, const char *id, lp_error *err);
lp_status sq_upload_list_stale(lp_db *db, int64_t updated_before, lp_db_upload_list *out,
                               lp_error *err);

/* Devices and events (db_sqlite_devices.c). */
lp_status sq_device_touch(lp_db *db, int64_t app_id, const char *device_id, int64_t when,
                          int64_t dropped, const char *channel, lp_error *err);
lp_status sq_event_insert(lp_db *db, int64_t app_id, const char *device_id,
                          const lp_db_event_new *ev, int64_t received_at, const char *channel,
                          bool *added, lp_error *err);
lp_status sq_device_refresh(lp_db *db, int64_t app_id, const char *device_id, lp_error *err);
lp_status sq_event_list(lp_db *db, int64_t app_id, const lp_db_event_query *q,
                        lp_db_event_list *out, lp_error *err);
lp_status sq_device_get(lp_db *db, int64_t app_id, const char *device_id, lp_db_device *out,
                        lp_error *err);
lp_status sq_device_list(lp_db *db, int64_t app_id, const char *after, size_t limit,
                         lp_db_device_list *out, lp_error *err);

/* Deltas between releases (db_sqlite_deltas.c). */
lp_status sq_delta_plan(lp_db *db, int64_t release_id, unsigned k, int64_t created_at,
                        size_t *added, lp_error *err);
lp_status sq_delta_pair_next(lp_db *db, lp_db_delta_pair *out, lp_error *err);
lp_status sq_delta_pair_get(lp_db *db, int64_t app_id, int64_t from_code, int64_t to_code,
                            lp_db_delta_pair *out, lp_error *err);
lp_status sq_delta_record(lp_db *db, int64_t from_id, int64_t to_id, const lp_db_delta *d,
                          lp_error *err);
lp_status sq_delta_pair_finish(lp_db *db, int64_t from_id, int64_t to_id, int64_t when,
                               lp_error *err);
lp_status sq_delta_list(lp_db *db, int64_t from_id, int64_t to_id, const char *state,
                        lp_db_delta_list *out, lp_error *err);
lp_status sq_delta_find(lp_db *db, const char *base, const char *result, bool *found,
                        lp_db_delta *out, lp_error *err);
lp_status sq_delta_summary(lp_db *db, int64_t to_id, lp_db_delta_summary *out, lp_error *err);

/* The audit log (db_sqlite_audit.c). */
lp_status sq_audit_last(lp_db *db, lp_db_audit_head *out, lp_error *err);
lp_status sq_audit_insert(lp_db *db, const lp_db_audit_entry *e, lp_error *err);
lp_status sq_audit_walk(lp_db *db, const char *app, int64_t after_seq, size_t limit,
                        lp_db_audit_fn fn, void *ctx, lp_error *err);

/* Rollouts (db_sqlite_rollouts.c). */
lp_status sq_rollout_put(lp_db *db, const lp_db_rollout_new *r, int64_t at, lp_error *err);
lp_status sq_rollout_get(lp_db *db, int64_t release_id, const char *channel,
                         lp_db_rollout *out, lp_error *err);
lp_status sq_rollout_list(lp_db *db, int64_t app_id, const char *channel,
                          lp_db_rollout_list *out, lp_error *err);
lp_status sq_release_add_channel(lp_db *db, int64_t release_id, const char *channel, int64_t at,
                                 lp_error *err);
lp_status sq_channel_window(lp_db *db, int64_t app_id, const char *channel, bool set, int *start,
                            int *end, lp_error *err);
lp_status sq_app_guard(lp_db *db, int64_t app_id, bool set, int *rate_bp, int *min_devices,
                       lp_error *err);
lp_status sq_release_stats(lp_db *db, int64_t app_id, int64_t version_code, const char *channel,
                           lp_db_release_stats *out, lp_error *err);
lp_status sq_release_adoption(lp_db *db, int64_t app_id, int64_t version_code,
                              const char *channel, int64_t bucket_s, lp_db_adoption *out,
                              lp_error *err);

#endif
