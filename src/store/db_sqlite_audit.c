/*
 * db_sqlite_audit.c — the SQLite back end's queries for the audit log (see
 * db_backend.h and include/livepush/db.h).
 *
 * Same rules as db_sqlite_ops.c: cached prepared statements (slots from
 * SQ_SLOTS_AUDIT), values always bound, every statement reset before
 * returning.  db_audit.c has checked, canonicalised and hashed the entry
 * and opened the write transaction, so an insert only writes the row; the
 * primary key on seq is a second guard against two entries with one
 * number.
 *
 * The walk reads with one statement, row by row, and hands each row's
 * columns to the caller as SQLite holds them (borrowed, with their byte
 * lengths, NULL kept apart from ""), so a row changed behind the server's
 * back reaches lp_db_audit_verify exactly as it now reads.  Only one row
 * is in memory at a time; the statement is one read transaction, so the
 * walk sees one consistent state of the log even while entries are
 * appended.
 */
#include "store/db_sqlite.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum {
    S_AUDIT_LAST = SQ_SLOTS_AUDIT,
    S_AUDIT_INSERT,
    S_AUDIT_WALK_ALL,
    S_AUDIT_WALK_APP,
    S_AUDIT_END
};

_Static_assert(S_AUDIT_END <= SQ_SLOTS_ROLLOUTS, "too many cached statements");

#define AUDIT_COLS \
    "SELECT seq, at, actor, action, app, subject, details, prev_hash, hash FROM audit "

static sq_db *D(lp_db *db)
{
    return (sq_db *)db;
}

lp_status sq_audit_last(lp_db *db, lp_db_audit_head *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    memset(out, 0, sizeof *out);
    lp_status st = sq_stmt(d, S_AUDIT_LAST,
                           "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &s, err);
    if (st)
        return st;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->seq = sqlite3_column_int64(s, 0);
        const unsigned char *h = sqlite3_column_text(s, 1);
        int n = sqlite3_column_bytes(s, 1);
        if (h && n > 0) {
            size_t k = (size_t)n < sizeof out->hash - 1 ? (size_t)n : sizeof out->hash - 1;
            memcpy(out->hash, h, k);
            out->hash[k] = '\0';
        }
    } else if (rc != SQLITE_DONE) {
        st = sq_fail(d, rc, err, "reading the newest audit entry");
    }
    sqlite3_reset(s);
    return st;
}

lp_status sq_audit_insert(lp_db *db, const lp_db_audit_entry *e, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_AUDIT_INSERT,
                           "INSERT INTO audit (seq, at, actor, action, app, subject, details, "
                           "prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, e->seq);
    sqlite3_bind_int64(s, 2, e->at);
    sqlite3_bind_text(s, 3, e->actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, e->action, -1, SQLITE_STATIC);
    sq_bind_opt_text(s, 5, e->app);
    sq_bind_opt_text(s, 6, e->subject);
    sqlite3_bind_text(s, 7, e->details, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, e->prev_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 9, e->hash, -1, SQLITE_STATIC);
    char ctx[64];
    snprintf(ctx, sizeof ctx, "audit entry %lld", (long long)e->seq);
    st = sq_step_done(d, s, err, ctx);
    sqlite3_reset(s);
    return st;
}

/* Column i as borrowed text with its length; NULL stays NULL. */
static lp_db_audit_text col_text(sqlite3_stmt *s, int i)
{
    lp_db_audit_text t = {0};
    if (sqlite3_column_type(s, i) == SQLITE_NULL)
        return t;
    t.s = (const char *)sqlite3_column_text(s, i);
    t.len = t.s ? (size_t)sqlite3_column_bytes(s, i) : 0;
    if (!t.s)
        t.s = ""; /* out of memory reads as empty: the entry will not verify */
    return t;
}

lp_status sq_audit_walk(lp_db *db, const char *app, int64_t after_seq, size_t limit,
                        lp_db_audit_fn fn, void *ctx, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = app ? sq_stmt(d, S_AUDIT_WALK_APP,
                                 AUDIT_COLS "WHERE app = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                                 &s, err)
                       : sq_stmt(d, S_AUDIT_WALK_ALL,
                                 AUDIT_COLS "WHERE ?1 IS NULL AND seq > ?2 ORDER BY seq LIMIT ?3",
                                 &s, err);
    if (st)
        return st;
    sq_bind_opt_text(s, 1, app);
    sqlite3_bind_int64(s, 2, after_seq);
    /* A negative LIMIT is no limit in SQLite. */
    sqlite3_bind_int64(s, 3, limit ? (sqlite3_int64)limit : -1);
    int rc = SQLITE_DONE;
    bool stop = false;
    while (!st && !stop && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        lp_db_audit_row row = {.seq = sqlite3_column_int64(s, 0)};
        row.at_is_int = sqlite3_column_type(s, 1) == SQLITE_INTEGER; /* before any conversion */
        row.at = sqlite3_column_int64(s, 1);
        row.actor = col_text(s, 2);
        row.action = col_text(s, 3);
        row.app = col_text(s, 4);
        row.subject = col_text(s, 5);
        row.details = col_text(s, 6);
        row.prev_hash = col_text(s, 7);
        row.hash = col_text(s, 8);
        st = fn(ctx, &row, &stop, err);
    }
    if (!st && !stop && rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "reading the audit log");
    sqlite3_reset(s);
    return st;
}
