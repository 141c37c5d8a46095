/*
 * db_sqlite.c — the SQLite back end: connection, settings, migrations,
 * transactions, statement cache, error mapping (see db_sqlite.h).
 *
 * Settings, applied on every open:
 *   busy_timeout 5 s     a writer waits for another writer instead of
 *                        failing at once with SQLITE_BUSY;
 *   foreign_keys ON      references are enforced (SQLite's default is off);
 *   journal_mode WAL     readers never block the writer nor wait for it;
 *   synchronous FULL     each commit is fsync'd to the WAL before COMMIT
 *                        returns, so a release the server has acknowledged
 *                        survives a power cut (NORMAL would stay consistent
 *                        but could lose the last commits);
 *   extended result codes, so a constraint failure says which kind it was.
 *
 * Write transactions start with BEGIN IMMEDIATE: the write lock is taken at
 * the start, so the read-check-write sequence inside (e.g. "version_code
 * must exceed the current maximum") cannot interleave with another writer,
 * and a transaction never has to upgrade a read lock (which in SQLite fails
 * with SQLITE_BUSY without waiting).  Waiting writers are handled by the
 * busy timeout; only a wait longer than that is reported (LP_ERR_STATE).
 *
 * Migrations: at open, each pending migration runs in its own BEGIN
 * IMMEDIATE transaction that re-reads schema_version first, so several
 * processes opening one database at once apply each migration exactly
 * once.  A database whose version is newer than LP_DB_SCHEMA_VERSION is
 * refused before anything is written (checked before the journal mode is
 * set, and again inside each migration transaction).
 *
 * Every statement with values is prepared and bound (no SQL is built from
 * values); statements are cached per connection and reset after each use so
 * that no read transaction stays open between calls.
 */
#include "store/db_sqlite.h"

#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

lp_status sq_fail(sq_db *d, int rc, lp_error *err, const char *fmt, ...)
{
    lp_status st;
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
            st = LP_ERR_EXISTS;
        else if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
            st = LP_ERR_NOT_FOUND;
        else
            st = LP_ERR_INVALID_ARG;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        st = LP_ERR_STATE;
        break;
    case SQLITE_NOMEM:
        st = LP_ERR_NOMEM;
        break;
    default:
        st = LP_ERR_IO;
        break;
    }
    char ctx[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    const char *what = st == LP_ERR_EXISTS      ? "already exists"
                       : st == LP_ERR_NOT_FOUND ? "refers to a row that does not exist"
                       : st == LP_ERR_STATE     ? "database is busy"
                                                : "database error";
    return lp_error_set(err, st, "%s: %s (%s)", ctx, what,
                        d && d->h ? sqlite3_errmsg(d->h) : sqlite3_errstr(rc));
}

lp_status sq_stmt(sq_db *d, int slot, const char *sql, sqlite3_stmt **out, lp_error *err)
{
    if (slot < 0 || slot >= SQ_STMT_SLOTS)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "statement slot %d out of range", slot);
    sqlite3_stmt *s = d->stmts[slot];
    if (!s) {
        int rc = sqlite3_prepare_v3(d->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
        if (rc != SQLITE_OK)
            return sq_fail(d, rc, err, "preparing a statement");
        d->stmts[slot] = s;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    *out = s;
    return LP_OK;
}

/* Runs a constant SQL script (no values in it). */
static lp_status sq_exec(sq_db *d, const char *sql, const char *what, lp_error *err)
{
    int rc = sqlite3_exec(d->h, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return sq_fail(d, sqlite3_extended_errcode(d->h), err, "%s", what);
    return LP_OK;
}

static lp_status sq_begin(lp_db *db, lp_error *err)
{
    return sq_exec((sq_db *)db, "BEGIN IMMEDIATE", "begin transaction", err);
}

static lp_status sq_commit(lp_db *db, lp_error *err)
{
    return sq_exec((sq_db *)db, "COMMIT", "commit", err);
}

static lp_status sq_rollback(lp_db *db, lp_error *err)
{
    sq_db *d = (sq_db *)db;
    /* A failed statement may already have ended the transaction. */
    if (sqlite3_get_autocommit(d->h))
        return LP_OK;
    return sq_exec(d, "ROLLBACK", "rollback", err);
}

static bool sq_tx_active(lp_db *db)
{
    return !sqlite3_get_autocommit(((sq_db *)db)->h);
}

static lp_status read_version(sq_db *d, int *version, lp_error *err)
{
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(d->h, "SELECT max(version) FROM schema_version", -1, &s, NULL);
    if (rc != SQLITE_OK)
        return sq_fail(d, rc, err, "reading schema_version");
    rc = sqlite3_step(s);
    lp_status st = LP_OK;
    if (rc == SQLITE_ROW) {
        sqlite3_int64 v = sqlite3_column_int64(s, 0); /* NULL (empty table) reads as 0 */
        if (v < 0 || v > 1000000)
            st = lp_error_set(err, LP_ERR_MALFORMED, "schema_version: %lld is not valid",
                              (long long)v);
        else
            *version = (int)v;
    } else {
        st = sq_fail(d, rc, err, "reading schema_version");
    }
    sqlite3_finalize(s);
    return st;
}

static lp_status sq_schema_version(lp_db *db, int *version, lp_error *err)
{
    return read_version((sq_db *)db, version, err);
}

static lp_status write_version(sq_db *d, int version, lp_error *err)
{
    lp_status st = sq_exec(d, "DELETE FROM schema_version", "updating schema_version", err);
    if (st)
        return st;
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(d->h, "INSERT INTO schema_version (version) VALUES (?1)", -1, &s,
                                NULL);
    if (rc != SQLITE_OK)
        return sq_fail(d, rc, err, "updating schema_version");
    sqlite3_bind_int(s, 1, version);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return sq_fail(d, sqlite3_extended_errcode(d->h), err, "updating schema_version");
    return LP_OK;
}

/* Applies the migrations the database lacks, one transaction each. */
static lp_status migrate(sq_db *d, lp_error *err)
{
    for (;;) {
        lp_status st = sq_begin(&d->base, err);
        if (st)
            return lp_error_prefix(err, st, "migrating");
        st = sq_exec(d, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
                     "creating schema_version", err);
        int version = 0;
        if (!st)
            st = read_version(d, &version, err);
        if (!st && version > LP_DB_SCHEMA_VERSION)
            st = lp_error_set(err, LP_ERR_UNSUPPORTED,
                              "the database has schema version %d but this livepush knows "
                              "versions up to %d: use a newer livepush",
                              version, LP_DB_SCHEMA_VERSION);
        if (!st && version == LP_DB_SCHEMA_VERSION) {
            /* Up to date: nothing to write (an empty first transaction
             * still commits the schema_version table). */
            return sq_commit(&d->base, err);
        }
        if (!st) {
            st = sq_exec(d, lp_db_migrations[version].sqlite, "applying a migration", err);
            if (st)
                lp_error_prefix(err, st, "migration %d -> %d", version, version + 1);
        }
        if (!st)
            st = write_version(d, version + 1, err);
        if (!st)
            st = sq_commit(&d->base, err);
        if (st) {
            sq_rollback(&d->base, NULL);
            return st;
        }
    }
}

/* Refuses a database written by a newer livepush before anything (even
 * the journal mode) is changed.  A file without schema_version is new. */
static lp_status refuse_newer(sq_db *d, lp_error *err)
{
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(d->h, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                "name = 'schema_version'", -1, &s, NULL);
    if (rc != SQLITE_OK)
        return sq_fail(d, rc, err, "reading the schema");
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc == SQLITE_DONE)
        return LP_OK;
    if (rc != SQLITE_ROW)
        return sq_fail(d, rc, err, "reading the schema");
    int version = 0;
    lp_status st = read_version(d, &version, err);
    if (!st && version > LP_DB_SCHEMA_VERSION)
        st = lp_error_set(err, LP_ERR_UNSUPPORTED,
                          "the database has schema version %d but this livepush knows versions "
                          "up to %d: use a newer livepush",
                          version, LP_DB_SCHEMA_VERSION);
    return st;
}

/* Reads one-row pragma output as text and compares it. */
static lp_status pragma_expect(sq_db *d, const char *sql, const char *want, lp_error *err)
{
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(d->h, sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return sq_fail(d, rc, err, "%s", sql);
    rc = sqlite3_step(s);
    lp_status st = LP_OK;
    if (rc == SQLITE_ROW) {
        const char *got = (const char *)sqlite3_column_text(s, 0);
        if (want && (!got || strcmp(got, want) != 0))
            st = lp_error_set(err, LP_ERR_IO, "%s: got '%s', expected '%s'", sql,
                              got ? got : "(null)", want);
    } else if (rc != SQLITE_DONE) {
        st = sq_fail(d, sqlite3_extended_errcode(d->h), err, "%s", sql);
    }
    sqlite3_finalize(s);
    return st;
}

static void sq_close(lp_db *db)
{
    sq_db *d = (sq_db *)db;
    for (int i = 0; i < SQ_STMT_SLOTS; i++)
        sqlite3_finalize(d->stmts[i]);
    sqlite3_close_v2(d->h);
    free(d);
}

lp_status lp_db_sqlite_open(const char *path, lp_db **out, lp_error *err)
{
    *out = NULL;
    /* Create the file ourselves so that it (and the -wal and -shm files,
     * which SQLite gives the same permissions) is private to the owner. */
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    bool created = fd >= 0;
    if (fd < 0 && errno != EEXIST)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO,
                            "creating %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    if (created) {
        lp_status st = lp_file_sync_parent(path, err);
        if (st)
            return st;
    }

    sq_db *d = calloc(1, sizeof *d);
    if (!d)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    d->base.ops = &lp_db_sqlite_ops;
    int rc = sqlite3_open_v2(path, &d->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    lp_status st = LP_OK;
    if (rc != SQLITE_OK) {
        st = sq_fail(d, rc, err, "opening %s", path);
        goto fail;
    }
    sqlite3_extended_result_codes(d->h, 1);
    sqlite3_busy_timeout(d->h, SQ_BUSY_TIMEOUT_MS);
    if ((st = sq_exec(d, "PRAGMA foreign_keys = ON", "enabling foreign keys", err)) ||
        (st = pragma_expect(d, "PRAGMA foreign_keys", "1", err)) ||
        (st = refuse_newer(d, err)) ||
        (st = pragma_expect(d, "PRAGMA journal_mode = WAL", "wal", err)) ||
        (st = sq_exec(d, "PRAGMA synchronous = FULL", "setting synchronous", err)))
        goto fail;
    if ((st = migrate(d, err)))
        goto fail;
    *out = &d->base;
    return LP_OK;
fail:
    sq_close(&d->base);
    return st;
}

const lp_db_ops lp_db_sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .schema_version = sq_schema_version,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .tx_active = sq_tx_active,
    .app_create = sq_app_create,
    .app_get = sq_app_get,
    .app_list = sq_app_list,
    .channel_create = sq_channel_create,
    .channel_list = sq_channel_list,
    .release_insert = sq_release_insert,
    .release_get = sq_release_get,
    .release_get_by_version = sq_release_get_by_version,
    .release_latest = sq_release_latest,
    .release_list = sq_release_list,
    .release_max_code = sq_release_max_code,
    .release_set_state = sq_release_set_state,
    .token_insert = sq_token_insert,
    .token_get = sq_token_get,
    .token_list = sq_token_list,
    .token_revoke = sq_token_revoke,
    .token_touch = sq_token_touch,
    .upload_create = sq_upload_create,
    .upload_get = sq_upload_get,
    .upload_set_received = sq_upload_set_received,
    .upload_delete = sq_upload_delete,
    .upload_list_stale = sq_upload_list_stale,
    .device_touch = sq_device_touch,
    .event_insert = sq_event_insert,
    .device_refresh = sq_device_refresh,
    .event_list = sq_event_list,
    .device_get = sq_device_get,
    .device_list = sq_device_list,
    .delta_plan = sq_delta_plan,
    .delta_pair_next = sq_delta_pair_next,
    .delta_pair_get = sq_delta_pair_get,
    .delta_record = sq_delta_record,
    .delta_pair_finish = sq_delta_pair_finish,
    .delta_list = sq_delta_list,
    .delta_find = sq_delta_find,
    .delta_summary = sq_delta_summary,
    .audit_last = sq_audit_last,
    .audit_insert = sq_audit_insert,
    .audit_walk = sq_audit_walk,
    .rollout_put = sq_rollout_put,
    .rollout_get = sq_rollout_get,
    .rollout_list = sq_rollout_list,
    .release_add_channel = sq_release_add_channel,
    .channel_window = sq_channel_window,
    .app_guard = sq_app_guard,
    .release_stats = sq_release_stats,
    .release_adoption = sq_release_adoption,
};
