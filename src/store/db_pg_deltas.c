/*
 * db_pg_deltas.c — the PostgreSQL back end's queries for deltas between
 * releases (see db_backend.h and include/livepush/db.h; the SQLite twin is
 * db_sqlite_deltas.c).
 *
 * Same rules as db_pg_ops.c: prepared statements (slots from
 * PG_SLOTS_DELTAS), values always bound, results cleared before returning,
 * result structs zeroed on failure.  db_deltas.c has checked the input and
 * opened the write transaction.
 *
 * Planning is one INSERT ... SELECT: for each channel of the new release,
 * the last k published releases of that channel below its version code
 * (a correlated subquery with LIMIT), deduplicated across channels, and
 * pairs planned already are left alone (ON CONFLICT DO NOTHING).
 */
#include "store/db_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    S_PLAN = PG_SLOTS_DELTAS,
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

_Static_assert(S_DELTAS_END <= PG_SLOTS_AUDIT, "too many cached statements");

/* A release has at most this many entries, so a pair at most this many deltas. */
#define DELTAS_PER_PAIR_MAX 200000

#define PAIR_COLS                                                                         \
    "SELECT p.app_id, p.from_release_id, p.to_release_id, f.version_code, t.version_code, " \
    "p.state, p.created_at, coalesce(p.finished_at, 0) FROM delta_pairs p "                 \
    "JOIN releases f ON f.id = p.from_release_id JOIN releases t ON t.id = p.to_release_id "

static pg_db *D(lp_db *db)
{
    return (pg_db *)db;
}

static void read_pair(const PGresult *r, lp_db_delta_pair *out)
{
    out->app_id = pg_get_int(r, 0, 0);
    out->from_release_id = pg_get_int(r, 0, 1);
    out->to_release_id = pg_get_int(r, 0, 2);
    out->from_code = pg_get_int(r, 0, 3);
    out->to_code = pg_get_int(r, 0, 4);
    out->done = strcmp(PQgetvalue(r, 0, 5), "done") == 0;
    out->created_at = pg_get_int(r, 0, 6);
    out->finished_at = pg_get_int(r, 0, 7);
}

/* Copies a text column of exactly `want` bytes (or 1..want when exact is
 * false) into out (want + 1 bytes). */
static lp_status col_text(const PGresult *r, int row, int col, char *out, size_t want,
                          bool exact, const char *what, lp_error *err)
{
    int n = PQgetlength(r, row, col);
    if (pg_is_null(r, row, col) || n <= 0 || (size_t)n > want || (exact && (size_t)n != want))
        return lp_error_set(err, LP_ERR_MALFORMED, "stored %s: %d bytes, expected %s%zu", what,
                            n, exact ? "" : "at most ", want);
    memcpy(out, PQgetvalue(r, row, col), (size_t)n);
    out[n] = '\0';
    return LP_OK;
}

static lp_status read_delta(const PGresult *r, int row, lp_db_delta *out, lp_error *err)
{
    lp_status st = col_text(r, row, 0, out->result_sha256, 64, true, "delta result", err);
    if (!st)
        st = col_text(r, row, 1, out->base_sha256, 64, true, "delta base", err);
    if (!st)
        st = col_text(r, row, 3, out->state, sizeof out->state - 1, false, "delta state", err);
    int64_t size = pg_get_int(r, row, 2);
    if (!st && size < 0)
        st = lp_error_set(err, LP_ERR_MALFORMED, "stored delta size: %lld", (long long)size);
    out->size = (uint64_t)size;
    return st;
}

/* ---- writes --------------------------------------------------------------- */

lp_status pg_delta_plan(lp_db *db, int64_t release_id, unsigned k, int64_t created_at,
                        size_t *added, lp_error *err)
{
    pg_db *d = D(db);
    pg_params p = {0};
    pg_int(&p, release_id);
    PGresult *r;
    lp_status st = pg_run(d, S_RELEASE_EXISTS, "SELECT 1 FROM releases WHERE id = $1", &p, &r,
                          err, "planning deltas: reading the release");
    if (st)
        return st;
    bool exists = PQntuples(r) > 0;
    PQclear(r);
    if (!exists)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "no release with id %lld",
                            (long long)release_id);
    if (k == 0)
        return LP_OK;
    pg_params q = {0};
    pg_int(&q, release_id);
    pg_int(&q, (int64_t)k);
    pg_int(&q, created_at);
    st = pg_run(d, S_PLAN,
                "INSERT INTO delta_pairs (app_id, from_release_id, to_release_id, state, "
                "created_at) "
                "SELECT DISTINCT r.app_id, p.id, r.id, 'pending', $3 FROM releases r "
                "JOIN release_channels rc ON rc.release_id = r.id "
                "JOIN releases p ON p.id IN ("
                "  SELECT p2.id FROM release_channels pc2 "
                "  JOIN releases p2 ON p2.id = pc2.release_id "
                "  WHERE pc2.channel_id = rc.channel_id AND p2.app_id = r.app_id "
                "  AND p2.state = 'published' AND p2.version_code < r.version_code "
                "  ORDER BY p2.version_code DESC LIMIT $2) "
                "WHERE r.id = $1 "
                "ON CONFLICT (from_release_id, to_release_id) DO NOTHING",
                &q, &r, err, "planning deltas");
    if (!st)
        *added = (size_t)pg_changes(r);
    PQclear(r);
    return st;
}

lp_status pg_delta_record(lp_db *db, int64_t from_id, int64_t to_id, const lp_db_delta *dl,
                          lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, from_id);
    pg_int(&p, to_id);
    pg_text(&p, dl->result_sha256);
    pg_text(&p, dl->base_sha256);
    pg_int(&p, (int64_t)dl->size);
    pg_text(&p, dl->state);
    PGresult *r;
    lp_status st = pg_run(D(db), S_RECORD,
                          "INSERT INTO deltas (app_id, from_release_id, to_release_id, "
                          "result_sha256, base_sha256, size, state) "
                          "SELECT app_id, from_release_id, to_release_id, $3, $4, $5, $6 "
                          "FROM delta_pairs WHERE from_release_id = $1 AND to_release_id = $2 "
                          "ON CONFLICT (from_release_id, to_release_id, result_sha256) DO "
                          "UPDATE SET base_sha256 = excluded.base_sha256, size = excluded.size, "
                          "state = excluded.state",
                          &p, &r, err, "recording a delta");
    if (!st && pg_changes(r) == 0)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "no delta pair %lld -> %lld",
                          (long long)from_id, (long long)to_id);
    PQclear(r);
    return st;
}

lp_status pg_delta_pair_finish(lp_db *db, int64_t from_id, int64_t to_id, int64_t when,
                               lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, from_id);
    pg_int(&p, to_id);
    pg_int(&p, when);
    PGresult *r;
    lp_status st = pg_run(D(db), S_PAIR_FINISH,
                          "UPDATE delta_pairs SET state = 'done', finished_at = $3 "
                          "WHERE from_release_id = $1 AND to_release_id = $2",
                          &p, &r, err, "finishing a delta pair");
    if (!st && pg_changes(r) == 0)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "no delta pair %lld -> %lld",
                          (long long)from_id, (long long)to_id);
    PQclear(r);
    return st;
}

/* ---- reads ---------------------------------------------------------------- */

/* Reads a statement's result that holds at most one pair. */
static lp_status one_pair(PGresult *r, lp_db_delta_pair *out, const char *what, lp_error *err)
{
    lp_status st = LP_OK;
    if (PQntuples(r) > 0)
        read_pair(r, out);
    else
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "%s", what);
    PQclear(r);
    if (st)
        memset(out, 0, sizeof *out);
    return st;
}

lp_status pg_delta_pair_next(lp_db *db, lp_db_delta_pair *out, lp_error *err)
{
    pg_params p = {0};
    PGresult *r;
    lp_status st = pg_run(D(db), S_PAIR_NEXT,
                          PAIR_COLS "WHERE p.state = 'pending' ORDER BY p.created_at, "
                                    "p.to_release_id, p.from_release_id LIMIT 1",
                          &p, &r, err, "reading delta pairs");
    return st ? st : one_pair(r, out, "no delta pair is pending", err);
}

lp_status pg_delta_pair_get(lp_db *db, int64_t app_id, int64_t from_code, int64_t to_code,
                            lp_db_delta_pair *out, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_int(&p, from_code);
    pg_int(&p, to_code);
    PGresult *r;
    lp_status st = pg_run(D(db), S_PAIR_GET,
                          PAIR_COLS "WHERE f.app_id = $1 AND f.version_code = $2 AND "
                                    "t.app_id = $1 AND t.version_code = $3",
                          &p, &r, err, "reading delta pairs");
    if (st)
        return st;
    char what[128];
    snprintf(what, sizeof what, "no deltas from release %lld to %lld", (long long)from_code,
             (long long)to_code);
    return one_pair(r, out, what, err);
}

lp_status pg_delta_list(lp_db *db, int64_t from_id, int64_t to_id, const char *state,
                        lp_db_delta_list *out, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, from_id);
    pg_int(&p, to_id);
    pg_text(&p, state);
    pg_int(&p, DELTAS_PER_PAIR_MAX);
    PGresult *r;
    lp_status st = pg_run(D(db), S_LIST,
                          "SELECT result_sha256, base_sha256, size, state FROM deltas "
                          "WHERE from_release_id = $1 AND to_release_id = $2 "
                          "AND ($3 IS NULL OR state = $3) ORDER BY result_sha256 LIMIT $4",
                          &p, &r, err, "listing deltas");
    if (st)
        return st;
    size_t n = (size_t)PQntuples(r);
    if (n && !(out->items = calloc(n, sizeof *out->items)))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory listing deltas");
    for (size_t i = 0; !st && i < n; i++) {
        out->count++;
        st = read_delta(r, (int)i, &out->items[i], err);
    }
    PQclear(r);
    if (st)
        lp_db_delta_list_free(out);
    return st;
}

lp_status pg_delta_find(lp_db *db, const char *base, const char *result, bool *found,
                        lp_db_delta *out, lp_error *err)
{
    pg_params p = {0};
    pg_text(&p, base);
    pg_text(&p, result);
    PGresult *r;
    lp_status st = pg_run(D(db), S_FIND,
                          "SELECT result_sha256, base_sha256, size, state FROM deltas "
                          "WHERE base_sha256 = $1 AND result_sha256 = $2 "
                          "ORDER BY CASE state WHEN 'made' THEN 0 WHEN 'too_large' THEN 1 "
                          "ELSE 2 END LIMIT 1",
                          &p, &r, err, "finding a delta");
    if (st)
        return st;
    if (PQntuples(r) > 0) {
        st = read_delta(r, 0, out, err);
        *found = !st;
    }
    PQclear(r);
    if (st)
        memset(out, 0, sizeof *out);
    return st;
}

lp_status pg_delta_summary(lp_db *db, int64_t to_id, lp_db_delta_summary *out, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, to_id);
    PGresult *r;
    lp_status st = pg_run(D(db), S_SUMMARY_ROWS,
                          "SELECT count(*) FILTER (WHERE state = 'made'), "
                          "coalesce(sum(size) FILTER (WHERE state = 'made'), 0), "
                          "count(*) FILTER (WHERE state = 'too_large'), "
                          "count(*) FILTER (WHERE state = 'failed') "
                          "FROM deltas WHERE to_release_id = $1",
                          &p, &r, err, "summing deltas");
    if (!st) {
        out->made = pg_get_int(r, 0, 0);
        out->bytes = pg_get_int(r, 0, 1);
        out->too_large = pg_get_int(r, 0, 2);
        out->failed = pg_get_int(r, 0, 3);
        PQclear(r);
        st = pg_run(D(db), S_SUMMARY_PAIRS,
                    "SELECT count(*), count(*) FILTER (WHERE state = 'pending') FROM delta_pairs "
                    "WHERE to_release_id = $1",
                    &p, &r, err, "counting delta pairs");
    }
    if (!st) {
        out->pairs = pg_get_int(r, 0, 0);
        out->pending = pg_get_int(r, 0, 1);
        PQclear(r);
    }
    if (st)
        memset(out, 0, sizeof *out);
    return st;
}
