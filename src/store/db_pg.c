/*
 * db_pg.c — the PostgreSQL back end: connection, session settings,
 * migrations, transactions, statement cache, error mapping (see db_pg.h).
 *
 * A handle is one libpq connection, opened from the postgres:// or
 * postgresql:// URL as given (libpq's connection URI: host, port, user,
 * password, database, and parameters such as sslmode or
 * options=-csearch_path=NAME).  The tables live in the connection's
 * current schema (the first schema of search_path that exists); a
 * search_path naming no existing schema is refused at open.
 *
 * Session settings, applied on every (re)connect:
 *   client_encoding UTF8   text is stored and read as the bytes given;
 *   lock_timeout 5 s       a statement waits at most this long for a lock
 *                          (the writers' lock below, a row another writer
 *                          holds), then fails with "database is busy"
 *                          (LP_ERR_STATE), like SQLite's busy timeout;
 *   bytea_output hex       the form the row helpers decode.
 * Durability is the server's: a COMMIT returns once the commit record is
 * flushed (synchronous_commit on, PostgreSQL's default), as SQLite's
 * synchronous FULL does.
 *
 * Serialising writers.  db.c's guarantees (version codes strictly
 * increasing per app, one audit chain without a fork, "a halted rollout
 * stays halted") rest on read-check-write sequences inside a write
 * transaction that no other writer may interleave with; SQLite gives that
 * with BEGIN IMMEDIATE (one writer at a time, readers never blocked).
 * Here every write transaction starts with
 *     BEGIN ISOLATION LEVEL READ COMMITTED;
 *     SELECT pg_advisory_xact_lock(<writers' key>);
 * so write transactions, from any connection of any server on the
 * database, run one at a time, exactly as with SQLite, and the lock is
 * released by COMMIT or ROLLBACK (or by the server when the connection
 * dies, so a killed process never leaves it held).  READ COMMITTED gives
 * each statement a snapshot taken when the statement starts, i.e. after
 * the lock was granted, and PostgreSQL releases a transaction's locks only
 * after its commit is visible, so every read inside a write transaction
 * sees every write committed before it: the same view BEGIN IMMEDIATE
 * gives.  (REPEATABLE READ would take its snapshot at the first statement,
 * before waiting for the lock, and read stale rows; SERIALIZABLE would
 * need the whole transaction retried, but a transaction here spans the
 * caller's work between calls — signing, writing files — which cannot be
 * replayed.)  Reads outside a transaction take no lock and never wait.  A
 * writer waiting longer than lock_timeout fails with LP_ERR_STATE.
 *
 * The key is a 64-bit number: a constant that names livepush's writers
 * lock in the high half, the OID of the schema holding the tables in the
 * low half, so databases in different schemas of one PostgreSQL database
 * (tests run in parallel that way) do not wait for each other.
 *
 * A statement that fails inside a PostgreSQL transaction dooms the whole
 * transaction, where SQLite undoes only the statement.  So a write call
 * that joins a caller's transaction runs inside a savepoint (call_begin /
 * call_end, used by db.c's write bracket): a failed call is undone alone
 * and the caller's transaction goes on, as with SQLite.  tx_active is
 * false when the transaction is doomed anyway (a failed read inside it,
 * a lost connection), so db.c refuses further calls and the commit.
 *
 * Migrations: at open, each pending migration (db_schema.c, the
 * PostgreSQL text) runs in its own write transaction, under the same
 * advisory lock, that first creates schema_version if needed and re-reads
 * it, so several servers starting together apply each migration exactly
 * once.  A database whose version is newer than LP_DB_SCHEMA_VERSION is
 * refused before anything is written.
 *
 * Statements: every statement with values is prepared once per connection
 * (named lp<slot>) and run with bound parameters; the only SQL sent as
 * plain text is constant (BEGIN, COMMIT, the migrations).  A connection
 * found broken outside a transaction is re-opened (and its statements
 * prepared again) before the next statement, so a server outlives a
 * database restart; inside a transaction the failure is reported
 * (LP_ERR_NETWORK) and the transaction is over.
 */
#include "store/db_pg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Type OIDs of the parameters (PostgreSQL's catalog, stable). */
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25

/* High half of the writers' advisory lock key: "LP" and lock number 1. */
#define WRITE_LOCK_CLASS 0x4C500001u

/* Slots of db_pg.c's own statements. */
enum { S_LOCK = PG_SLOTS_INTERNAL, S_VERSION_WRITE, S_INTERNAL_END };
_Static_assert(S_INTERNAL_END <= PG_STMT_SLOTS, "too many cached statements");

/* ---- parameters ------------------------------------------------------------------ */

static int slot_of(pg_params *p, Oid type)
{
    int i = p->n < PG_PARAMS_MAX ? p->n++ : PG_PARAMS_MAX - 1; /* callers stay below */
    p->types[i] = type;
    p->values[i] = NULL;
    p->lengths[i] = 0;
    p->formats[i] = 0;
    return i;
}

void pg_int(pg_params *p, int64_t v)
{
    int i = slot_of(p, OID_INT8);
    snprintf(p->numbers[i], sizeof p->numbers[i], "%" PRId64, v);
    p->values[i] = p->numbers[i];
}

void pg_text(pg_params *p, const char *s)
{
    int i = slot_of(p, OID_TEXT);
    p->values[i] = s;
}

void pg_opt_int(pg_params *p, int64_t v, bool given)
{
    if (given)
        pg_int(p, v);
    else
        slot_of(p, OID_INT8);
}

void pg_bytea(pg_params *p, const void *b, size_t len)
{
    int i = slot_of(p, OID_BYTEA);
    p->values[i] = b ? (const char *)b : "";
    p->lengths[i] = (int)len;
    p->formats[i] = 1;
}

/* ---- errors ---------------------------------------------------------------------- */

static bool starts(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

lp_status pg_fail(pg_db *d, const PGresult *r, lp_error *err, const char *fmt, ...)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    bool broken = d && d->conn && PQstatus(d->conn) == CONNECTION_BAD;
    lp_status st;
    if (state && strcmp(state, "23505") == 0)
        st = LP_ERR_EXISTS;
    else if (state && strcmp(state, "23503") == 0)
        st = LP_ERR_NOT_FOUND;
    else if (starts(state, "23"))
        st = LP_ERR_INVALID_ARG;
    else if (state && (!strcmp(state, "40001") || !strcmp(state, "40P01") ||
                       !strcmp(state, "55P03") || !strcmp(state, "57014")))
        st = LP_ERR_STATE;
    else if (starts(state, "08") || starts(state, "57P0") || (!state && broken))
        st = LP_ERR_NETWORK;
    else if (state && strcmp(state, "53200") == 0)
        st = LP_ERR_NOMEM;
    else
        st = LP_ERR_IO;
    char ctx[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    char text[400];
    snprintf(text, sizeof text, "%s",
             msg ? msg : d && d->conn ? PQerrorMessage(d->conn) : "no connection");
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
        text[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (text[i] == '\n' || text[i] == '\t')
            text[i] = ' ';
    const char *what = st == LP_ERR_EXISTS      ? "already exists"
                       : st == LP_ERR_NOT_FOUND ? "refers to a row that does not exist"
                       : st == LP_ERR_STATE     ? "database is busy"
                       : st == LP_ERR_NETWORK   ? "lost the database connection"
                                                : "database error";
    return lp_error_set(err, st, "%s: %s (%s%s%s)", ctx, what, state ? state : "",
                        state ? ": " : "", text);
}

/* ---- the connection ---------------------------------------------------------------- */

/* Runs constant SQL (no values in it): settings, BEGIN, COMMIT, migrations. */
static lp_status pg_exec(pg_db *d, const char *sql, const char *what, lp_error *err)
{
    PGresult *r = PQexec(d->conn, sql);
    ExecStatusType es = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    lp_status st = LP_OK;
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK)
        st = pg_fail(d, r, err, "%s", what);
    PQclear(r);
    return st;
}

/* Session settings and the lock key, after every (re)connect. */
static lp_status setup_session(pg_db *d, lp_error *err)
{
    memset(d->prepared, 0, sizeof d->prepared);
    if (PQserverVersion(d->conn) < 110000)
        return lp_error_set(err, LP_ERR_UNSUPPORTED,
                            "PostgreSQL %d.%d is too old: livepush needs version 11 or later",
                            PQserverVersion(d->conn) / 10000,
                            PQserverVersion(d->conn) / 100 % 100);
    if (PQsetClientEncoding(d->conn, "UTF8") != 0)
        return pg_fail(d, NULL, err, "setting the client encoding");
    lp_status st = pg_exec(d, "SET lock_timeout = '" PG_LOCK_TIMEOUT "'", "setting lock_timeout",
                           err);
    if (!st)
        st = pg_exec(d, "SET bytea_output = 'hex'", "setting bytea_output", err);
    if (st)
        return st;
    PGresult *r = PQexec(d->conn, "SELECT oid FROM pg_namespace WHERE nspname = current_schema()");
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
        st = pg_fail(d, r, err, "finding the schema");
    } else if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
        st = lp_error_set(err, LP_ERR_NOT_FOUND,
                          "no schema to keep the tables in: none of search_path exists "
                          "(create the schema, or name one with options=-csearch_path=NAME)");
    } else {
        unsigned long oid = strtoul(PQgetvalue(r, 0, 0), NULL, 10);
        d->write_key = (int64_t)(((uint64_t)WRITE_LOCK_CLASS << 32) | (oid & 0xffffffffu));
    }
    PQclear(r);
    return st;
}

/* Re-opens a broken connection (outside a transaction only). */
static lp_status ensure_conn(pg_db *d, lp_error *err)
{
    if (PQstatus(d->conn) == CONNECTION_OK)
        return LP_OK;
    if (PQtransactionStatus(d->conn) != PQTRANS_IDLE && PQtransactionStatus(d->conn) != PQTRANS_UNKNOWN)
        return pg_fail(d, NULL, err, "the database connection");
    PQreset(d->conn);
    if (PQstatus(d->conn) != CONNECTION_OK)
        return pg_fail(d, NULL, err, "reconnecting to the database");
    return setup_session(d, err);
}

/* Prepares the statement of `slot` on this connection if it is not. */
static lp_status prepare(pg_db *d, int slot, const char *sql, const pg_params *p, lp_error *err)
{
    if (slot < 0 || slot >= PG_STMT_SLOTS)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "statement slot %d out of range", slot);
    if (d->prepared[slot])
        return LP_OK;
    char name[16];
    snprintf(name, sizeof name, "lp%d", slot);
    PGresult *r = PQprepare(d->conn, name, sql, p->n, p->types);
    lp_status st = LP_OK;
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
        st = pg_fail(d, r, err, "preparing a statement");
    else
        d->prepared[slot] = true;
    PQclear(r);
    return st;
}

lp_status pg_run(pg_db *d, int slot, const char *sql, const pg_params *p, PGresult **out,
                 lp_error *err, const char *ctx)
{
    *out = NULL;
    lp_status st = ensure_conn(d, err);
    if (!st)
        st = prepare(d, slot, sql, p, err);
    if (st)
        return lp_error_prefix(err, st, "%s", ctx);
    char name[16];
    snprintf(name, sizeof name, "lp%d", slot);
    PGresult *r = PQexecPrepared(d->conn, name, p->n, p->values, p->lengths, p->formats, 0);
    ExecStatusType es = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (es != PGRES_TUPLES_OK && es != PGRES_COMMAND_OK) {
        st = pg_fail(d, r, err, "%s", ctx);
        PQclear(r);
        return st;
    }
    *out = r;
    return LP_OK;
}

lp_status pg_each_row(pg_db *d, int slot, const char *sql, const pg_params *p, pg_row_fn fn,
                      void *ctx, lp_error *err, const char *what)
{
    lp_status st = ensure_conn(d, err);
    if (!st)
        st = prepare(d, slot, sql, p, err);
    if (st)
        return lp_error_prefix(err, st, "%s", what);
    char name[16];
    snprintf(name, sizeof name, "lp%d", slot);
    if (!PQsendQueryPrepared(d->conn, name, p->n, p->values, p->lengths, p->formats, 0))
        return pg_fail(d, NULL, err, "%s", what);
    /* One row at a time; if single-row mode cannot be set, the rows come
     * in one result and are handed out one by one all the same. */
    PQsetSingleRowMode(d->conn);
    bool stop = false;
    PGresult *r;
    while ((r = PQgetResult(d->conn)) != NULL) {
        ExecStatusType es = PQresultStatus(r);
        if (es == PGRES_SINGLE_TUPLE || es == PGRES_TUPLES_OK) {
            for (int i = 0; i < PQntuples(r) && !st && !stop; i++)
                st = fn(ctx, r, i, &stop, err);
        } else if (!st && !stop) {
            st = pg_fail(d, r, err, "%s", what);
        }
        PQclear(r); /* after a stop, the remaining rows are read and dropped */
    }
    return st;
}

/* ---- row helpers ---------------------------------------------------------------- */

int64_t pg_get_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

int64_t pg_get_opt_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? -1 : pg_get_int(r, row, col);
}

bool pg_is_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) != 0;
}

bool pg_get_bool(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

bool pg_get_dup(const PGresult *r, int row, int col, char **out)
{
    *out = NULL;
    if (PQgetisnull(r, row, col))
        return true;
    size_t n = (size_t)PQgetlength(r, row, col);
    *out = malloc(n + 1);
    if (!*out)
        return false;
    memcpy(*out, PQgetvalue(r, row, col), n);
    (*out)[n] = '\0';
    return true;
}

int64_t pg_changes(const PGresult *r)
{
    const char *t = PQcmdTuples((PGresult *)r);
    return t && *t ? strtoll(t, NULL, 10) : 0;
}

lp_status pg_check_rows(const PGresult *r, size_t max, const char *what, lp_error *err)
{
    if ((size_t)PQntuples(r) > max)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "%s: more than %zu rows", what, max);
    return LP_OK;
}

/* ---- transactions ----------------------------------------------------------------- */

static pg_db *D(lp_db *db)
{
    return (pg_db *)db;
}

static lp_status pg_rollback(lp_db *db, lp_error *err)
{
    pg_db *d = D(db);
    PGTransactionStatusType ts = PQtransactionStatus(d->conn);
    if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR)
        return LP_OK; /* nothing open, or the connection (and with it the transaction) is gone */
    return pg_exec(d, "ROLLBACK", "rollback", err);
}

static lp_status pg_begin(lp_db *db, lp_error *err)
{
    pg_db *d = D(db);
    lp_status st = ensure_conn(d, err);
    if (st)
        return st;
    /* PostgreSQL only warns about a BEGIN inside a transaction (and a later
     * COMMIT would end the outer one): refuse it, as SQLite does. */
    if (PQtransactionStatus(d->conn) != PQTRANS_IDLE)
        return lp_error_set(err, LP_ERR_STATE,
                            "begin transaction: a transaction is already open on this connection");
    st = pg_exec(d, "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE", "begin transaction", err);
    if (st)
        return st;
    pg_params p = {0};
    pg_int(&p, d->write_key);
    PGresult *r = NULL;
    st = pg_run(d, S_LOCK, "SELECT pg_advisory_xact_lock($1)", &p, &r, err,
                "begin transaction: waiting for the other writers");
    PQclear(r);
    if (st)
        pg_rollback(db, NULL);
    return st;
}

static lp_status pg_commit(lp_db *db, lp_error *err)
{
    pg_db *d = D(db);
    PGresult *r = PQexec(d->conn, "COMMIT");
    lp_status st = LP_OK;
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
        st = pg_fail(d, r, err, "commit");
    else if (strcmp(PQcmdStatus(r), "COMMIT") != 0)
        /* COMMIT of a doomed transaction answers ROLLBACK. */
        st = lp_error_set(err, LP_ERR_STATE, "commit: the database rolled the transaction back");
    PQclear(r);
    return st;
}

static bool pg_tx_active(lp_db *db)
{
    return PQtransactionStatus(D(db)->conn) == PQTRANS_INTRANS;
}

static lp_status pg_call_begin(lp_db *db, lp_error *err)
{
    return pg_exec(D(db), "SAVEPOINT lp_call", "starting a call inside the transaction", err);
}

static lp_status pg_call_end(lp_db *db, bool ok, lp_error *err)
{
    pg_db *d = D(db);
    if (ok)
        return pg_exec(d, "RELEASE SAVEPOINT lp_call", "ending a call inside the transaction",
                       err);
    if (PQtransactionStatus(d->conn) != PQTRANS_INTRANS &&
        PQtransactionStatus(d->conn) != PQTRANS_INERROR)
        return LP_OK;
    lp_status st = pg_exec(d, "ROLLBACK TO SAVEPOINT lp_call",
                           "undoing a failed call inside the transaction", err);
    if (!st)
        st = pg_exec(d, "RELEASE SAVEPOINT lp_call", "undoing a failed call inside the transaction",
                     err);
    return st;
}

/* ---- schema version and migrations ------------------------------------------------------- */

static lp_status read_version(pg_db *d, int *version, lp_error *err)
{
    PGresult *r = PQexec(d->conn, "SELECT coalesce(max(version), 0) FROM schema_version");
    lp_status st = LP_OK;
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        st = pg_fail(d, r, err, "reading schema_version");
    } else {
        int64_t v = pg_get_int(r, 0, 0);
        if (v < 0 || v > 1000000)
            st = lp_error_set(err, LP_ERR_MALFORMED, "schema_version: %lld is not valid",
                              (long long)v);
        else
            *version = (int)v;
    }
    PQclear(r);
    return st;
}

static lp_status pg_schema_version(lp_db *db, int *version, lp_error *err)
{
    lp_status st = ensure_conn(D(db), err);
    return st ? st : read_version(D(db), version, err);
}

static lp_status newer_error(int version, lp_error *err)
{
    return lp_error_set(err, LP_ERR_UNSUPPORTED,
                        "the database has schema version %d but this livepush knows versions "
                        "up to %d: use a newer livepush",
                        version, LP_DB_SCHEMA_VERSION);
}

/* Refuses a database written by a newer livepush before anything is
 * written.  A schema without schema_version is new. */
static lp_status refuse_newer(pg_db *d, lp_error *err)
{
    PGresult *r = PQexec(d->conn, "SELECT to_regclass('schema_version') IS NOT NULL");
    lp_status st = LP_OK;
    bool exists = false;
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        st = pg_fail(d, r, err, "reading the schema");
    else
        exists = pg_get_bool(r, 0, 0);
    PQclear(r);
    int version = 0;
    if (!st && exists)
        st = read_version(d, &version, err);
    if (!st && version > LP_DB_SCHEMA_VERSION)
        st = newer_error(version, err);
    return st;
}

static lp_status write_version(pg_db *d, int version, lp_error *err)
{
    lp_status st = pg_exec(d, "DELETE FROM schema_version", "updating schema_version", err);
    if (st)
        return st;
    pg_params p = {0};
    pg_int(&p, version);
    PGresult *r = NULL;
    st = pg_run(d, S_VERSION_WRITE, "INSERT INTO schema_version (version) VALUES ($1)", &p, &r,
                err, "updating schema_version");
    PQclear(r);
    return st;
}

/* Applies the migrations the database lacks, one transaction each. */
static lp_status migrate(pg_db *d, lp_error *err)
{
    for (;;) {
        lp_status st = pg_begin(&d->base, err);
        if (st)
            return lp_error_prefix(err, st, "migrating");
        st = pg_exec(d, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
                     "creating schema_version", err);
        int version = 0;
        if (!st)
            st = read_version(d, &version, err);
        if (!st && version > LP_DB_SCHEMA_VERSION)
            st = newer_error(version, err);
        if (!st && version == LP_DB_SCHEMA_VERSION)
            return pg_commit(&d->base, err);
        if (!st) {
            st = pg_exec(d, lp_db_migrations[version].postgresql, "applying a migration", err);
            if (st)
                lp_error_prefix(err, st, "migration %d -> %d", version, version + 1);
        }
        if (!st)
            st = write_version(d, version + 1, err);
        if (!st)
            st = pg_commit(&d->base, err);
        if (st) {
            pg_rollback(&d->base, NULL);
            return st;
        }
    }
}

/* ---- opening and closing ----------------------------------------------------------------- */

static void pg_close(lp_db *db)
{
    pg_db *d = D(db);
    PQfinish(d->conn);
    free(d->url);
    free(d);
}

/* libpq prints notices (e.g. "relation already exists, skipping") to
 * stderr by default; the server's log is not the place for them. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

lp_status lp_db_pg_open(const char *url, lp_db **out, lp_error *err)
{
    *out = NULL;
    pg_db *d = calloc(1, sizeof *d);
    if (!d || !(d->url = strdup(url))) {
        free(d);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    d->base.ops = &lp_db_pg_ops;
    lp_status st = LP_OK;
    d->conn = PQconnectdb(url);
    if (!d->conn) {
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory connecting to the database");
        goto fail;
    }
    if (PQstatus(d->conn) != CONNECTION_OK) {
        st = pg_fail(d, NULL, err, "connecting");
        goto fail;
    }
    PQsetNoticeProcessor(d->conn, ignore_notice, NULL);
    if ((st = setup_session(d, err)) || (st = refuse_newer(d, err)) || (st = migrate(d, err)))
        goto fail;
    *out = &d->base;
    return LP_OK;
fail:
    pg_close(&d->base);
    return st;
}

const lp_db_ops lp_db_pg_ops = {
    .name = "postgresql",
    .close = pg_close,
    .schema_version = pg_schema_version,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .tx_active = pg_tx_active,
    .call_begin = pg_call_begin,
    .call_end = pg_call_end,
    .app_create = pg_app_create,
    .app_get = pg_app_get,
    .app_list = pg_app_list,
    .channel_create = pg_channel_create,
    .channel_list = pg_channel_list,
    .release_insert = pg_release_insert,
    .release_get = pg_release_get,
    .release_get_by_version = pg_release_get_by_version,
    .release_latest = pg_release_latest,
    .release_list = pg_release_list,
    .release_max_code = pg_release_max_code,
    .release_set_state = pg_release_set_state,
    .token_insert = pg_token_insert,
    .token_get = pg_token_get,
    .token_list = pg_token_list,
    .token_revoke = pg_token_revoke,
    .token_touch = pg_token_touch,
    .upload_create = pg_upload_create,
    .upload_get = pg_upload_get,
    .upload_set_received = pg_upload_set_received,
    .upload_delete = pg_upload_delete,
    .upload_list_stale = pg_upload_list_stale,
    .device_touch = pg_device_touch,
    .event_insert = pg_event_insert,
    .device_refresh = pg_device_refresh,
    .event_list = pg_event_list,
    .device_get = pg_device_get,
    .device_list = pg_device_list,
    .delta_plan = pg_delta_plan,
    .delta_pair_next = pg_delta_pair_next,
    .delta_pair_get = pg_delta_pair_get,
    .delta_record = pg_delta_record,
    .delta_pair_finish = pg_delta_pair_finish,
    .delta_list = pg_delta_list,
    .delta_find = pg_delta_find,
    .delta_summary = pg_delta_summary,
    .audit_last = pg_audit_last,
    .audit_insert = pg_audit_insert,
    .audit_walk = pg_audit_walk,
    .rollout_put = pg_rollout_put,
    .rollout_get = pg_rollout_get,
    .rollout_list = pg_rollout_list,
    .release_add_channel = pg_release_add_channel,
    .channel_window = pg_channel_window,
    .app_guard = pg_app_guard,
    .release_stats = pg_release_stats,
    .release_adoption = pg_release_adoption,
};
