/*
 * db_pg_audit.c — the PostgreSQL back end's queries for the audit log (see
 * db_backend.h and include/livepush/db.h; the SQLite twin is
 * db_sqlite_audit.c).
 *
 * Same rules as db_pg_ops.c: prepared statements (slots from
 * PG_SLOTS_AUDIT), values always bound.  db_audit.c has checked,
 * canonicalised and hashed the entry and opened the write transaction,
 * whose advisory lock (db_pg.c) makes appenders take turns, so the seq and
 * prev_hash read by audit_last cannot be taken by another server in
 * between; the primary key on seq is a second guard against two entries
 * with one number.
 *
 * The walk is one statement read in single-row mode: one row in memory at
 * a time, and one snapshot, so the walk sees one consistent state of the
 * log even while entries are appended.  Each row's columns go to the
 * caller as PostgreSQL returns them (borrowed, with their byte lengths,
 * NULL kept apart from ""), so a row changed behind the server's back
 * reaches lp_db_audit_verify exactly as it now reads.  The at column is a
 * BIGINT, so it is always an integer here (SQLite can store text in it).
 */
#include "store/db_pg.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum {
    S_AUDIT_LAST = PG_SLOTS_AUDIT,
    S_AUDIT_INSERT,
    S_AUDIT_WALK_ALL,
    S_AUDIT_WALK_APP,
    S_AUDIT_END
};

_Static_assert(S_AUDIT_END <= PG_SLOTS_ROLLOUTS, "too many cached statements");

#define AUDIT_COLS \
    "SELECT seq, at, actor, action, app, subject, details, prev_hash, hash FROM audit "

static pg_db *D(lp_db *db)
{
    return (pg_db *)db;
}

lp_status pg_audit_last(lp_db *db, lp_db_audit_head *out, lp_error *err)
{
    memset(out, 0, sizeof *out);
    pg_params p = {0};
    PGresult *r;
    lp_status st = pg_run(D(db), S_AUDIT_LAST,
                          "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &p, &r, err,
                          "reading the newest audit entry");
    if (st)
        return st;
    if (PQntuples(r) > 0) {
        out->seq = pg_get_int(r, 0, 0);
        size_t n = pg_is_null(r, 0, 1) ? 0 : (size_t)PQgetlength(r, 0, 1);
        size_t k = n < sizeof out->hash - 1 ? n : sizeof out->hash - 1;
        memcpy(out->hash, PQgetvalue(r, 0, 1), k);
        out->hash[k] = '\0';
    }
    PQclear(r);
    return st;
}

lp_status pg_audit_insert(lp_db *db, const lp_db_audit_entry *e, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, e->seq);
    pg_int(&p, e->at);
    pg_text(&p, e->actor);
    pg_text(&p, e->action);
    pg_text(&p, e->app);
    pg_text(&p, e->subject);
    pg_text(&p, e->details);
    pg_text(&p, e->prev_hash);
    pg_text(&p, e->hash);
    char ctx[64];
    snprintf(ctx, sizeof ctx, "audit entry %lld", (long long)e->seq);
    PGresult *r;
    lp_status st = pg_run(D(db), S_AUDIT_INSERT,
                          "INSERT INTO audit (seq, at, actor, action, app, subject, details, "
                          "prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                          &p, &r, err, ctx);
    PQclear(r);
    return st;
}

/* Column col as borrowed text with its length; NULL stays NULL. */
static lp_db_audit_text col_text(const PGresult *r, int row, int col)
{
    lp_db_audit_text t = {0};
    if (pg_is_null(r, row, col))
        return t;
    t.s = PQgetvalue(r, row, col);
    t.len = (size_t)PQgetlength(r, row, col);
    return t;
}

typedef struct walk_ctx {
    lp_db_audit_fn fn;
    void *ctx;
} walk_ctx;

static lp_status walk_row(void *arg, const PGresult *r, int row, bool *stop, lp_error *err)
{
    walk_ctx *w = arg;
    lp_db_audit_row a = {.seq = pg_get_int(r, row, 0)};
    a.at_is_int = !pg_is_null(r, row, 1);
    a.at = pg_get_int(r, row, 1);
    a.actor = col_text(r, row, 2);
    a.action = col_text(r, row, 3);
    a.app = col_text(r, row, 4);
    a.subject = col_text(r, row, 5);
    a.details = col_text(r, row, 6);
    a.prev_hash = col_text(r, row, 7);
    a.hash = col_text(r, row, 8);
    return w->fn(w->ctx, &a, stop, err);
}

lp_status pg_audit_walk(lp_db *db, const char *app, int64_t after_seq, size_t limit,
                        lp_db_audit_fn fn, void *ctx, lp_error *err)
{
    walk_ctx w = {.fn = fn, .ctx = ctx};
    pg_params p = {0};
    pg_int(&p, after_seq);
    pg_opt_int(&p, (int64_t)limit, limit > 0); /* LIMIT NULL: no limit */
    if (app) {
        pg_text(&p, app);
        return pg_each_row(D(db), S_AUDIT_WALK_APP,
                           AUDIT_COLS "WHERE app = $3 AND seq > $1 ORDER BY seq LIMIT $2", &p,
                           walk_row, &w, err, "reading the audit log");
    }
    return pg_each_row(D(db), S_AUDIT_WALK_ALL, AUDIT_COLS "WHERE seq > $1 ORDER BY seq LIMIT $2",
                       &p, walk_row, &w, err, "reading the audit log");
}
