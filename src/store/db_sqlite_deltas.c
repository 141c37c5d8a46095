/*
 * db_sqlite_deltas.c — the SQLite back end's queries for deltas between
 * releases (see db_backend.h and include/livepush/db.h).
 *
 * Same rules as db_sqlite_ops.c: cached prepared statements (slots from
 * SQ_SLOTS_DELTAS), values always bound, every statement reset before
 * returning, result structs zeroed on failure.  db_deltas.c has checked the
 * input and opened the write transaction.
 *
 * Planning is one INSERT ... SELECT: for each channel of the new release,
 * the last k published releases of that channel below its version code
 * (a correlated subquery with LIMIT), deduplicated across channels, and
 * pairs planned already are left alone (ON CONFLICT DO NOTHING).
 */
#include "store/db_sqlite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    S_PLAN = SQ_SLOTS_DELTAS,
    S_PAIR_NEXT,
    S_PAIR_GET,
    S_RECORD,
    S_PAIR_FINISH,
    S_LIST,
    S_FIND,
    S_SUMMARY_ROWS,
    S_SUMMARY_PAIRS,
    S_RELEASE_EXISTS,
    S_DELTAS_END
};

_Static_assert(S_DELTAS_END <= SQ_STMT_SLOTS, "too many cached statements");

#define PAIR_COLS                                                                        \
    "SELECT p.app_id, p.from_release_id, p.to_release_id, f.version_code, t.version_code, " \
    "p.state, p.created_at, coalesce(p.finished_at, 0) FROM delta_pairs p "                 \
    "JOIN releases f ON f.id = p.from_release_id JOIN releases t ON t.id = p.to_release_id "

static sq_db *D(lp_db *db)
{
    return (sq_db *)db;
}

static void read_pair(sqlite3_stmt *s, lp_db_delta_pair *out)
{
    out->app_id = sqlite3_column_int64(s, 0);
    out->from_release_id = sqlite3_column_int64(s, 1);
    out->to_release_id = sqlite3_column_int64(s, 2);
    out->from_code = sqlite3_column_int64(s, 3);
    out->to_code = sqlite3_column_int64(s, 4);
    const char *state = (const char *)sqlite3_column_text(s, 5);
    out->done = state && !strcmp(state, "done");
    out->created_at = sqlite3_column_int64(s, 6);
    out->finished_at = sqlite3_column_int64(s, 7);
}

/* Copies a text column of exactly `want` bytes (or 1..want when exact is
 * false) into out (want + 1 bytes). */
static lp_status col_text(sqlite3_stmt *s, int i, char *out, size_t want, bool exact,
                          const char *what, lp_error *err)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    int n = sqlite3_column_bytes(s, i);
    if (!t || n <= 0 || (size_t)n > want || (exact && (size_t)n != want))
        return lp_error_set(err, LP_ERR_MALFORMED, "stored %s: %d bytes, expected %s%zu", what,
                            n, exact ? "" : "at most ", want);
    memcpy(out, t, (size_t)n);
    out[n] = '\0';
    return LP_OK;
}

static lp_status read_delta(sqlite3_stmt *s, int c, lp_db_delta *out, lp_error *err)
{
    lp_status st = col_text(s, c, out->result_sha256, 64, true, "delta result", err);
    if (!st)
        st = col_text(s, c + 1, out->base_sha256, 64, true, "delta base", err);
    if (!st)
        st = col_text(s, c + 3, out->state, sizeof out->state - 1, false, "delta state", err);
    int64_t size = sqlite3_column_int64(s, c + 2);
    if (!st && size < 0)
        st = lp_error_set(err, LP_ERR_MALFORMED, "stored delta size: %lld", (long long)size);
    out->size = (uint64_t)size;
    return st;
}

/* ---- writes --------------------------------------------------------------- */

lp_status sq_delta_plan(lp_db *db, int64_t release_id, unsigned k, int64_t created_at,
                        size_t *added, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_RELEASE_EXISTS, "SELECT 1 FROM releases WHERE id = ?1", &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, release_id);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "no release with id %lld",
                            (long long)release_id);
    if (rc != SQLITE_ROW)
        return sq_fail(d, rc, err, "planning deltas: reading the release");
    if (k == 0)
        return LP_OK;
    st = sq_stmt(d, S_PLAN,
                 "INSERT INTO delta_pairs (app_id, from_release_id, to_release_id, state, "
                 "created_at) "
                 "SELECT DISTINCT r.app_id, p.id, r.id, 'pending', ?3 FROM releases r "
                 "JOIN release_channels rc ON rc.release_id = r.id "
                 "JOIN releases p ON p.id IN ("
                 "  SELECT p2.id FROM release_channels pc2 "
                 "  JOIN releases p2 ON p2.id = pc2.release_id "
                 "  WHERE pc2.channel_id = rc.channel_id AND p2.app_id = r.app_id "
                 "  AND p2.state = 'published' AND p2.version_code < r.version_code "
                 "  ORDER BY p2.version_code DESC LIMIT ?2) "
                 "WHERE r.id = ?1 "
                 "ON CONFLICT (from_release_id, to_release_id) DO NOTHING",
                 &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, release_id);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)k);
    sqlite3_bind_int64(s, 3, created_at);
    st = sq_step_done(d, s, err, "planning deltas");
    if (!st)
        *added = (size_t)sqlite3_changes(d->h);
    return st;
}

lp_status sq_delta_record(lp_db *db, int64_t from_id, int64_t to_id, const lp_db_delta *dl,
                          lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_RECORD,
                           "INSERT INTO deltas (app_id, from_release_id, to_release_id, "
                           "result_sha256, base_sha256, size, state) "
                           "SELECT app_id, from_release_id, to_release_id, ?3, ?4, ?5, ?6 "
                           "FROM delta_pairs WHERE from_release_id = ?1 AND to_release_id = ?2 "
                           "ON CONFLICT (from_release_id, to_release_id, result_sha256) DO "
                           "UPDATE SET base_sha256 = excluded.base_sha256, size = excluded.size, "
                           "state = excluded.state",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, from_id);
    sqlite3_bind_int64(s, 2, to_id);
    sqlite3_bind_text(s, 3, dl->result_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, dl->base_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)dl->size);
    sqlite3_bind_text(s, 6, dl->state, -1, SQLITE_STATIC);
    st = sq_step_done(d, s, err, "recording a delta");
    if (!st && sqlite3_changes(d->h) == 0)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "no delta pair %lld -> %lld",
                          (long long)from_id, (long long)to_id);
    return st;
}

lp_status sq_delta_pair_finish(lp_db *db, int64_t from_id, int64_t to_id, int64_t when,
                               lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_PAIR_FINISH,
                           "UPDATE delta_pairs SET state = 'done', finished_at = ?3 "
                           "WHERE from_release_id = ?1 AND to_release_id = ?2",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, from_id);
    sqlite3_bind_int64(s, 2, to_id);
    sqlite3_bind_int64(s, 3, when);
    st = sq_step_done(d, s, err, "finishing a delta pair");
    if (!st && sqlite3_changes(d->h) == 0)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "no delta pair %lld -> %lld",
                          (long long)from_id, (long long)to_id);
    return st;
}

/* ---- reads ---------------------------------------------------------------- */

/* Steps a statement that yields at most one pair. */
static lp_status one_pair(sq_db *d, sqlite3_stmt *s, lp_db_delta_pair *out, const char *what,
                          lp_error *err)
{
    int rc = sqlite3_step(s);
    lp_status st = LP_OK;
    if (rc == SQLITE_ROW)
        read_pair(s, out);
    else if (rc == SQLITE_DONE)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "%s", what);
    else
        st = sq_fail(d, rc, err, "reading delta pairs");
    sqlite3_reset(s);
    if (st)
        memset(out, 0, sizeof *out);
    return st;
}

lp_status sq_delta_pair_next(lp_db *db, lp_db_delta_pair *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_PAIR_NEXT,
                           PAIR_COLS "WHERE p.state = 'pending' ORDER BY p.created_at, "
                                     "p.to_release_id, p.from_release_id LIMIT 1",
                           &s, err);
    if (st)
        return st;
    return one_pair(d, s, out, "no delta pair is pending", err);
}

lp_status sq_delta_pair_get(lp_db *db, int64_t app_id, int64_t from_code, int64_t to_code,
                            lp_db_delta_pair *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_PAIR_GET,
                           PAIR_COLS "WHERE f.app_id = ?1 AND f.version_code = ?2 AND "
                                     "t.app_id = ?1 AND t.version_code = ?3",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_int64(s, 2, from_code);
    sqlite3_bind_int64(s, 3, to_code);
    char what[128];
    snprintf(what, sizeof what, "no deltas from release %lld to %lld", (long long)from_code,
             (long long)to_code);
    return one_pair(d, s, out, what, err);
}

lp_status sq_delta_list(lp_db *db, int64_t from_id, int64_t to_id, const char *state,
                        lp_db_delta_list *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_LIST,
                           "SELECT result_sha256, base_sha256, size, state FROM deltas "
                           "WHERE from_release_id = ?1 AND to_release_id = ?2 "
                           "AND (?3 IS NULL OR state = ?3) ORDER BY result_sha256 LIMIT ?4",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, from_id);
    sqlite3_bind_int64(s, 2, to_id);
    sq_bind_opt_text(s, 3, state);
    sqlite3_bind_int64(s, 4, 200000); /* a release has at most 200000 entries */
    size_t cap = 0;
    int rc = SQLITE_DONE;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (out->count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            lp_db_delta *grown = realloc(out->items, ncap * sizeof *grown);
            if (!grown) {
                st = lp_error_set(err, LP_ERR_NOMEM, "out of memory listing deltas");
                break;
            }
            out->items = grown;
            cap = ncap;
        }
        memset(&out->items[out->count], 0, sizeof out->items[0]);
        st = read_delta(s, 0, &out->items[out->count++], err);
    }
    if (!st && rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "listing deltas");
    sqlite3_reset(s);
    if (st)
        lp_db_delta_list_free(out);
    return st;
}

lp_status sq_delta_find(lp_db *db, const char *base, const char *result, bool *found,
                        lp_db_delta *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_FIND,
                           "SELECT result_sha256, base_sha256, size, state FROM deltas "
                           "WHERE base_sha256 = ?1 AND result_sha256 = ?2 "
                           "ORDER BY CASE state WHEN 'made' THEN 0 WHEN 'too_large' THEN 1 "
                           "ELSE 2 END LIMIT 1",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_text(s, 1, base, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, result, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        st = read_delta(s, 0, out, err);
        *found = !st;
    } else if (rc != SQLITE_DONE) {
        st = sq_fail(d, rc, err, "finding a delta");
    }
    sqlite3_reset(s);
    if (st)
        memset(out, 0, sizeof *out);
    return st;
}

lp_status sq_delta_summary(lp_db *db, int64_t to_id, lp_db_delta_summary *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_SUMMARY_ROWS,
                           "SELECT coalesce(sum(state = 'made'), 0), "
                           "coalesce(sum(CASE WHEN state = 'made' THEN size ELSE 0 END), 0), "
                           "coalesce(sum(state = 'too_large'), 0), "
                           "coalesce(sum(state = 'failed'), 0) "
                           "FROM deltas WHERE to_release_id = ?1",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, to_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->made = sqlite3_column_int64(s, 0);
        out->bytes = sqlite3_column_int64(s, 1);
        out->too_large = sqlite3_column_int64(s, 2);
        out->failed = sqlite3_column_int64(s, 3);
    } else {
        st = sq_fail(d, rc, err, "summing deltas");
    }
    sqlite3_reset(s);
    if (!st)
        st = sq_stmt(d, S_SUMMARY_PAIRS,
                     "SELECT count(*), coalesce(sum(state = 'pending'), 0) FROM delta_pairs "
                     "WHERE to_release_id = ?1",
                     &s, err);
    if (!st) {
        sqlite3_bind_int64(s, 1, to_id);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            out->pairs = sqlite3_column_int64(s, 0);
            out->pending = sqlite3_column_int64(s, 1);
        } else {
            st = sq_fail(d, rc, err, "counting delta pairs");
        }
        sqlite3_reset(s);
    }
    if (st)
        memset(out, 0, sizeof *out);
    return st;
}
