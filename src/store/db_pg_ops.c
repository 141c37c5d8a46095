/*
 * db_pg_ops.c — the PostgreSQL back end's queries of apps, channels,
 * releases, tokens and uploads (see db_backend.h; the SQLite twin is
 * db_sqlite_ops.c).
 *
 * One prepared statement per query (slots below), values always bound as
 * parameters ($1, $2, ...), never written into SQL text.  A statement's
 * result is read whole and cleared before the function returns; lists ask
 * for one row more than they may return, so a list that is too long is
 * refused (LP_ERR_TOO_LARGE) without reading more.  Rows are copied into
 * result structs with malloc'd strings; a failure part-way frees what was
 * copied and leaves the struct zeroed.
 *
 * A release's channels come with its row (string_agg of the names, which
 * never hold a comma), so reading a list of releases is one statement, not
 * one per release.
 *
 * db.c has already validated inputs and opened the write transaction for
 * write operations, so these functions only translate: "no row" becomes
 * LP_ERR_NOT_FOUND, constraint failures become LP_ERR_EXISTS /
 * LP_ERR_NOT_FOUND naming the field (pg_fail).
 */
#include "store/db_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    S_APP_INSERT,
    S_APP_BY_ID,
    S_APP_BY_NAME,
    S_APP_LIST,
    S_CHANNEL_INSERT,
    S_CHANNEL_UPSERT,
    S_CHANNEL_ID,
    S_CHANNEL_LIST,
    S_RELEASE_INSERT,
    S_RELEASE_LINK,
    S_RELEASE_BY_ID,
    S_RELEASE_BY_VERSION,
    S_RELEASE_BY_ORIGINAL_VERSION,
    S_RELEASE_LATEST,
    S_RELEASE_LIST,
    S_RELEASE_MAX_CODE,
    S_RELEASE_SET_STATE,
    S_TOKEN_INSERT,
    S_TOKEN_BY_ID,
    S_TOKEN_LIST,
    S_TOKEN_REVOKE,
    S_TOKEN_TOUCH,
    S_UPLOAD_INSERT,
    S_UPLOAD_BY_ID,
    S_UPLOAD_SET_RECEIVED,
    S_UPLOAD_DELETE,
    S_UPLOAD_STALE,
    S_COUNT
};

_Static_assert(S_COUNT <= PG_SLOTS_DEVICES, "too many cached statements");

#define RELEASE_COLS                                                                        \
    "SELECT r.id, r.app_id, r.version, r.version_code, r.manifest_sha256, "               \
    "r.manifest_size, r.runtime_version, r.platform, r.arch, r.mandatory, r.notes, "       \
    "r.created_by, r.state, r.rollback_of, r.created_at, r.targeting, "                    \
    "(SELECT string_agg(c.name, ',' ORDER BY c.name) FROM release_channels rc "            \
    "JOIN channels c ON c.id = rc.channel_id WHERE rc.release_id = r.id) FROM releases r "

/* "release r is on channel $2 (or $2 is NULL)" */
#define ON_CHANNEL                                                                        \
    "($2 IS NULL OR EXISTS (SELECT 1 FROM release_channels rc JOIN channels c "           \
    "ON c.id = rc.channel_id WHERE rc.release_id = r.id AND c.name = $2)) "

#define TOKEN_COLS \
    "SELECT id, name, salt, hash, scopes, created_at, revoked_at, last_used_at FROM tokens "

#define UPLOAD_COLS                                                                       \
    "SELECT id, app_id, token_id, path, expected_size, expected_sha256, received, "       \
    "created_at, updated_at FROM uploads "

static pg_db *D(lp_db *db)
{
    return (pg_db *)db;
}

static lp_status nomem(lp_error *err)
{
    return lp_error_set(err, LP_ERR_NOMEM, "out of memory reading a row");
}

/* Allocates `count` zeroed elements of `size` bytes for a list (NULL and
 * LP_OK for none). */
static void *alloc_items(size_t count, size_t size, lp_status *st, lp_error *err)
{
    *st = LP_OK;
    if (count == 0)
        return NULL;
    void *p = calloc(count, size);
    if (!p)
        *st = lp_error_set(err, LP_ERR_NOMEM, "out of memory listing rows");
    return p;
}

/* ---- apps ------------------------------------------------------------- */

lp_status pg_app_create(lp_db *db, const char *name, int64_t created_at, int64_t *id_out,
                        lp_error *err)
{
    pg_params p = {0};
    pg_text(&p, name);
    pg_int(&p, created_at);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "app name '%s'", name);
    PGresult *r;
    lp_status st = pg_run(D(db), S_APP_INSERT,
                          "INSERT INTO apps (name, created_at) VALUES ($1, $2) RETURNING id", &p,
                          &r, err, ctx);
    if (!st && id_out)
        *id_out = pg_get_int(r, 0, 0);
    PQclear(r);
    return st;
}

static lp_status read_app(const PGresult *r, int row, lp_db_app *out, lp_error *err)
{
    out->id = pg_get_int(r, row, 0);
    out->created_at = pg_get_int(r, row, 2);
    if (!pg_get_dup(r, row, 1, &out->name))
        return nomem(err);
    return LP_OK;
}

lp_status pg_app_get(lp_db *db, int64_t id, const char *name, lp_db_app *out, lp_error *err)
{
    pg_params p = {0};
    PGresult *r;
    lp_status st;
    if (name) {
        pg_text(&p, name);
        st = pg_run(D(db), S_APP_BY_NAME, "SELECT id, name, created_at FROM apps WHERE name = $1",
                    &p, &r, err, "reading app");
    } else {
        pg_int(&p, id);
        st = pg_run(D(db), S_APP_BY_ID, "SELECT id, name, created_at FROM apps WHERE id = $1", &p,
                    &r, err, "reading app");
    }
    if (st)
        return st;
    if (PQntuples(r) > 0)
        st = read_app(r, 0, out, err);
    else if (name)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "app '%s' does not exist", name);
    else
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "app id %lld does not exist", (long long)id);
    PQclear(r);
    if (st)
        lp_db_app_free(out);
    return st;
}

lp_status pg_app_list(lp_db *db, lp_db_app_list *out, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, (int64_t)LP_DB_LIST_MAX + 1);
    PGresult *r;
    lp_status st = pg_run(D(db), S_APP_LIST,
                          "SELECT id, name, created_at FROM apps ORDER BY name LIMIT $1", &p, &r,
                          err, "listing apps");
    if (st)
        return st;
    st = pg_check_rows(r, LP_DB_LIST_MAX, "listing apps", err);
    size_t n = (size_t)PQntuples(r);
    if (!st)
        out->items = alloc_items(n, sizeof *out->items, &st, err);
    for (size_t i = 0; !st && i < n; i++) {
        out->count++;
        st = read_app(r, (int)i, &out->items[i], err);
    }
    PQclear(r);
    if (st)
        lp_db_app_list_free(out);
    return st;
}

/* ---- channels --------------------------------------------------------- */

lp_status pg_channel_create(lp_db *db, int64_t app_id, const char *name, int64_t created_at,
                            int64_t *id_out, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_text(&p, name);
    pg_int(&p, created_at);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "channel name '%s'", name);
    PGresult *r;
    lp_status st = pg_run(D(db), S_CHANNEL_INSERT,
                          "INSERT INTO channels (app_id, name, created_at) VALUES ($1, $2, $3) "
                          "RETURNING id",
                          &p, &r, err, ctx);
    if (st == LP_ERR_NOT_FOUND)
        return lp_error_prefix(err, st, "channel '%s': app id %lld", name, (long long)app_id);
    if (!st && id_out)
        *id_out = pg_get_int(r, 0, 0);
    PQclear(r);
    return st;
}

lp_status pg_channel_list(lp_db *db, int64_t app_id, lp_db_channel_list *out, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_int(&p, (int64_t)LP_DB_LIST_MAX + 1);
    PGresult *r;
    lp_status st = pg_run(D(db), S_CHANNEL_LIST,
                          "SELECT id, app_id, name, created_at FROM channels WHERE app_id = $1 "
                          "ORDER BY name LIMIT $2",
                          &p, &r, err, "listing channels");
    if (st)
        return st;
    st = pg_check_rows(r, LP_DB_LIST_MAX, "listing channels", err);
    size_t n = (size_t)PQntuples(r);
    if (!st)
        out->items = alloc_items(n, sizeof *out->items, &st, err);
    for (size_t i = 0; !st && i < n; i++) {
        lp_db_channel *c = &out->items[out->count++];
        c->id = pg_get_int(r, (int)i, 0);
        c->app_id = pg_get_int(r, (int)i, 1);
        c->created_at = pg_get_int(r, (int)i, 3);
        if (!pg_get_dup(r, (int)i, 2, &c->name))
            st = nomem(err);
    }
    PQclear(r);
    if (st)
        lp_db_channel_list_free(out);
    return st;
}

/* ---- releases --------------------------------------------------------- */

/* Links release `rid` to channel `name` of app `app_id`, creating the
 * channel if the app does not have it yet. */
static lp_status link_channel(pg_db *d, int64_t rid, int64_t app_id, const char *name,
                              int64_t now, lp_error *err)
{
    char ctx[128];
    snprintf(ctx, sizeof ctx, "channel '%s'", name);
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_text(&p, name);
    pg_int(&p, now);
    PGresult *r;
    lp_status st = pg_run(d, S_CHANNEL_UPSERT,
                          "INSERT INTO channels (app_id, name, created_at) VALUES ($1, $2, $3) "
                          "ON CONFLICT (app_id, name) DO NOTHING",
                          &p, &r, err, ctx);
    PQclear(r);
    if (st)
        return st;

    pg_params q = {0};
    pg_int(&q, app_id);
    pg_text(&q, name);
    st = pg_run(d, S_CHANNEL_ID, "SELECT id FROM channels WHERE app_id = $1 AND name = $2", &q,
                &r, err, ctx);
    if (st)
        return st;
    int64_t cid = PQntuples(r) > 0 ? pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    if (!cid)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "%s: vanished", ctx);

    pg_params l = {0};
    pg_int(&l, rid);
    pg_int(&l, cid);
    st = pg_run(d, S_RELEASE_LINK,
                "INSERT INTO release_channels (release_id, channel_id) VALUES ($1, $2)", &l, &r,
                err, ctx);
    PQclear(r);
    return st;
}

lp_status pg_release_insert(lp_db *db, const lp_db_release_new *rel, int64_t *id_out,
                            lp_error *err)
{
    pg_db *d = D(db);
    pg_params p = {0};
    pg_int(&p, rel->app_id);
    pg_text(&p, rel->version);
    pg_int(&p, rel->version_code);
    pg_text(&p, rel->manifest_sha256);
    pg_int(&p, (int64_t)rel->manifest_size);
    pg_text(&p, rel->runtime_version);
    pg_text(&p, rel->platform);
    pg_text(&p, rel->arch);
    pg_int(&p, rel->mandatory ? 1 : 0);
    pg_text(&p, rel->notes);
    pg_int(&p, rel->created_at);
    pg_text(&p, rel->created_by);
    pg_text(&p, rel->state);
    pg_opt_int(&p, rel->rollback_of, rel->rollback_of != 0);
    pg_text(&p, rel->targeting);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "inserting release (app id %lld, version_code %lld)",
             (long long)rel->app_id, (long long)rel->version_code);
    PGresult *r;
    lp_status st = pg_run(d, S_RELEASE_INSERT,
                          "INSERT INTO releases (app_id, version, version_code, manifest_sha256, "
                          "manifest_size, runtime_version, platform, arch, mandatory, notes, "
                          "created_at, created_by, state, rollback_of, targeting) VALUES "
                          "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) "
                          "RETURNING id",
                          &p, &r, err, ctx);
    if (st)
        return st;
    int64_t rid = pg_get_int(r, 0, 0);
    PQclear(r);
    for (size_t i = 0; i < rel->n_channels && !st; i++)
        st = link_channel(d, rid, rel->app_id, rel->channels[i], rel->created_at, err);
    if (!st && id_out)
        *id_out = rid;
    return st;
}

/* Splits the comma-joined channel names of column `col`. */
static lp_status read_channels(const PGresult *r, int row, int col, lp_db_release *out,
                               lp_error *err)
{
    if (pg_is_null(r, row, col))
        return LP_OK;
    const char *s = PQgetvalue(r, row, col);
    size_t n = 1;
    for (const char *c = s; *c; c++)
        n += *c == ',';
    out->channels = calloc(n, sizeof *out->channels);
    if (!out->channels)
        return nomem(err);
    while (out->n_channels < n) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        char *name = strndup(s, len);
        if (!name)
            return nomem(err);
        out->channels[out->n_channels++] = name;
        s += len + (comma ? 1 : 0);
    }
    return LP_OK;
}

/* Reads a row of RELEASE_COLS. */
static lp_status read_release(const PGresult *r, int row, lp_db_release *out, lp_error *err)
{
    out->id = pg_get_int(r, row, 0);
    out->app_id = pg_get_int(r, row, 1);
    out->version_code = pg_get_int(r, row, 3);
    if (pg_is_null(r, row, 4) || PQgetlength(r, row, 4) != 64)
        return lp_error_set(err, LP_ERR_MALFORMED, "release %lld: bad manifest_sha256",
                            (long long)out->id);
    memcpy(out->manifest_sha256, PQgetvalue(r, row, 4), 65);
    int64_t size = pg_get_int(r, row, 5);
    out->manifest_size = size < 0 ? 0 : (uint64_t)size;
    out->mandatory = pg_get_int(r, row, 9) != 0;
    out->rollback_of = pg_get_int(r, row, 13);
    out->created_at = pg_get_int(r, row, 14);
    if (!pg_get_dup(r, row, 2, &out->version) || !pg_get_dup(r, row, 6, &out->runtime_version) ||
        !pg_get_dup(r, row, 7, &out->platform) || !pg_get_dup(r, row, 8, &out->arch) ||
        !pg_get_dup(r, row, 10, &out->notes) || !pg_get_dup(r, row, 11, &out->created_by) ||
        !pg_get_dup(r, row, 12, &out->state) || !pg_get_dup(r, row, 15, &out->targeting))
        return nomem(err);
    return read_channels(r, row, 16, out, err);
}

/* Reads the first row of a release query expected to give at most one. */
static lp_status one_release(PGresult *r, lp_db_release *out, lp_error *err, const char *what)
{
    lp_status st = PQntuples(r) > 0
                       ? read_release(r, 0, out, err)
                       : lp_error_set(err, LP_ERR_NOT_FOUND, "%s does not exist", what);
    PQclear(r);
    if (st)
        lp_db_release_free(out);
    return st;
}

lp_status pg_release_get(lp_db *db, int64_t id, lp_db_release *out, lp_error *err)
{
    char what[64];
    snprintf(what, sizeof what, "release %lld", (long long)id);
    pg_params p = {0};
    pg_int(&p, id);
    PGresult *r;
    lp_status st = pg_run(D(db), S_RELEASE_BY_ID, RELEASE_COLS "WHERE r.id = $1", &p, &r, err,
                          "reading a release");
    return st ? st : one_release(r, out, err, what);
}

lp_status pg_release_get_by_version(lp_db *db, int64_t app_id, const char *version,
                                    bool original_only, lp_db_release *out, lp_error *err)
{
    char what[128];
    snprintf(what, sizeof what, "release '%s' of app id %lld", version, (long long)app_id);
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_text(&p, version);
    PGresult *r;
    lp_status st =
        original_only
            ? pg_run(D(db), S_RELEASE_BY_ORIGINAL_VERSION,
                     RELEASE_COLS "WHERE r.app_id = $1 AND r.version = $2 AND "
                                  "r.rollback_of IS NULL",
                     &p, &r, err, "reading a release")
            : pg_run(D(db), S_RELEASE_BY_VERSION,
                     RELEASE_COLS "WHERE r.app_id = $1 AND r.version = $2 "
                                  "ORDER BY r.version_code DESC LIMIT 1",
                     &p, &r, err, "reading a release");
    return st ? st : one_release(r, out, err, what);
}

lp_status pg_release_latest(lp_db *db, int64_t app_id, const char *channel, lp_db_release *out,
                            lp_error *err)
{
    char what[128];
    snprintf(what, sizeof what, "a published release of app id %lld%s%s", (long long)app_id,
             channel ? " on channel " : "", channel ? channel : "");
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_text(&p, channel);
    PGresult *r;
    lp_status st = pg_run(D(db), S_RELEASE_LATEST,
                          RELEASE_COLS "WHERE r.app_id = $1 AND r.state = 'published' AND "
                                       ON_CHANNEL "ORDER BY r.version_code DESC LIMIT 1",
                          &p, &r, err, "reading the latest release");
    return st ? st : one_release(r, out, err, what);
}

lp_status pg_release_list(lp_db *db, int64_t app_id, const char *channel, int64_t before_code,
                          size_t limit, lp_db_release_list *out, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    pg_text(&p, channel);
    pg_int(&p, before_code);
    pg_int(&p, (int64_t)limit);
    PGresult *r;
    lp_status st = pg_run(D(db), S_RELEASE_LIST,
                          RELEASE_COLS "WHERE r.app_id = $1 AND " ON_CHANNEL
                                       "AND ($3 = 0 OR r.version_code < $3) "
                                       "ORDER BY r.version_code DESC LIMIT $4",
                          &p, &r, err, "listing releases");
    if (st)
        return st;
    st = pg_check_rows(r, LP_DB_LIST_MAX, "listing releases", err);
    size_t n = (size_t)PQntuples(r);
    if (!st)
        out->items = alloc_items(n, sizeof *out->items, &st, err);
    for (size_t i = 0; !st && i < n; i++) {
        out->count++;
        st = read_release(r, (int)i, &out->items[i], err);
    }
    PQclear(r);
    if (st)
        lp_db_release_list_free(out);
    return st;
}

lp_status pg_release_max_code(lp_db *db, int64_t app_id, int64_t *code, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, app_id);
    PGresult *r;
    lp_status st = pg_run(D(db), S_RELEASE_MAX_CODE,
                          "SELECT coalesce(max(version_code), 0) FROM releases WHERE app_id = $1",
                          &p, &r, err, "reading the highest version_code");
    if (!st)
        *code = pg_get_int(r, 0, 0);
    PQclear(r);
    return st;
}

lp_status pg_release_set_state(lp_db *db, int64_t id, const char *state, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, id);
    pg_text(&p, state);
    PGresult *r;
    lp_status st = pg_run(D(db), S_RELEASE_SET_STATE,
                          "UPDATE releases SET state = $2 WHERE id = $1", &p, &r, err,
                          "release state");
    if (!st && pg_changes(r) == 0)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "release %lld does not exist", (long long)id);
    PQclear(r);
    return st;
}

/* ---- tokens ----------------------------------------------------------- */

lp_status pg_token_insert(lp_db *db, const lp_db_token_new *t, lp_error *err)
{
    pg_params p = {0};
    pg_text(&p, t->id);
    pg_text(&p, t->name);
    pg_bytea(&p, t->salt, t->salt_len);
    pg_bytea(&p, t->hash, t->hash_len);
    pg_text(&p, t->scopes);
    pg_int(&p, t->created_at);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "token id '%s'", t->id);
    PGresult *r;
    lp_status st = pg_run(D(db), S_TOKEN_INSERT,
                          "INSERT INTO tokens (id, name, salt, hash, scopes, created_at) "
                          "VALUES ($1, $2, $3, $4, $5, $6)",
                          &p, &r, err, ctx);
    PQclear(r);
    return st;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes a bytea column (hex output, "\x..."), at most cap bytes. */
static lp_status copy_bytea(const PGresult *r, int row, int col, uint8_t *dst, size_t cap,
                            size_t *len, const char *what, lp_error *err)
{
    const char *s = PQgetvalue(r, row, col);
    size_t n = (size_t)PQgetlength(r, row, col);
    if (pg_is_null(r, row, col) || n < 2 || s[0] != '\\' || s[1] != 'x' || n % 2 != 0 ||
        (n - 2) / 2 > cap)
        return lp_error_set(err, LP_ERR_MALFORMED, "token %s: %zu bytes stored, at most %zu",
                            what, n >= 2 ? (n - 2) / 2 : 0, cap);
    for (size_t i = 0; i < (n - 2) / 2; i++) {
        int hi = hexval(s[2 + 2 * i]), lo = hexval(s[3 + 2 * i]);
        if (hi < 0 || lo < 0)
            return lp_error_set(err, LP_ERR_MALFORMED, "token %s: not hex", what);
        dst[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = (n - 2) / 2;
    return LP_OK;
}

static lp_status read_token(const PGresult *r, int row, lp_db_token *out, lp_error *err)
{
    out->created_at = pg_get_int(r, row, 5);
    out->revoked_at = pg_get_int(r, row, 6);
    out->last_used_at = pg_get_int(r, row, 7);
    if (!pg_get_dup(r, row, 0, &out->id) || !pg_get_dup(r, row, 1, &out->name) ||
        !pg_get_dup(r, row, 4, &out->scopes))
        return nomem(err);
    lp_status st =
        copy_bytea(r, row, 2, out->salt, sizeof out->salt, &out->salt_len, "salt", err);
    if (!st)
        st = copy_bytea(r, row, 3, out->hash, sizeof out->hash, &out->hash_len, "hash", err);
    return st;
}

lp_status pg_token_get(lp_db *db, const char *id, lp_db_token *out, lp_error *err)
{
    pg_params p = {0};
    pg_text(&p, id);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "reading token '%s'", id);
    PGresult *r;
    lp_status st = pg_run(D(db), S_TOKEN_BY_ID, TOKEN_COLS "WHERE id = $1", &p, &r, err, ctx);
    if (st)
        return st;
    if (PQntuples(r) > 0)
        st = read_token(r, 0, out, err);
    else
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "token '%s' does not exist", id);
    PQclear(r);
    if (st)
        lp_db_token_free(out);
    return st;
}

lp_status pg_token_list(lp_db *db, lp_db_token_list *out, lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, (int64_t)LP_DB_LIST_MAX + 1);
    PGresult *r;
    lp_status st = pg_run(D(db), S_TOKEN_LIST, TOKEN_COLS "ORDER BY created_at, id LIMIT $1", &p,
                          &r, err, "listing tokens");
    if (st)
        return st;
    st = pg_check_rows(r, LP_DB_LIST_MAX, "listing tokens", err);
    size_t n = (size_t)PQntuples(r);
    if (!st)
        out->items = alloc_items(n, sizeof *out->items, &st, err);
    for (size_t i = 0; !st && i < n; i++) {
        out->count++;
        st = read_token(r, (int)i, &out->items[i], err);
    }
    PQclear(r);
    if (st)
        lp_db_token_list_free(out);
    return st;
}

/* Runs an UPDATE of one token; LP_ERR_NOT_FOUND when no row matched. */
static lp_status token_update(pg_db *d, int slot, const char *sql, const char *id, int64_t when,
                              lp_error *err)
{
    pg_params p = {0};
    pg_text(&p, id);
    pg_int(&p, when);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "token '%s'", id);
    PGresult *r;
    lp_status st = pg_run(d, slot, sql, &p, &r, err, ctx);
    if (!st && pg_changes(r) == 0)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "token '%s' does not exist", id);
    PQclear(r);
    return st;
}

lp_status pg_token_revoke(lp_db *db, const char *id, int64_t when, lp_error *err)
{
    return token_update(D(db), S_TOKEN_REVOKE,
                        "UPDATE tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1",
                        id, when, err);
}

lp_status pg_token_touch(lp_db *db, const char *id, int64_t when, lp_error *err)
{
    return token_update(D(db), S_TOKEN_TOUCH, "UPDATE tokens SET last_used_at = $2 WHERE id = $1",
                        id, when, err);
}

/* ---- uploads ---------------------------------------------------------- */

lp_status pg_upload_create(lp_db *db, const lp_db_upload_new *u, lp_error *err)
{
    pg_params p = {0};
    pg_text(&p, u->id);
    pg_int(&p, u->app_id);
    pg_text(&p, u->token_id);
    pg_text(&p, u->path);
    pg_int(&p, (int64_t)u->expected_size);
    pg_text(&p, u->expected_sha256);
    pg_int(&p, u->created_at);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "upload id '%s'", u->id);
    PGresult *r;
    lp_status st = pg_run(D(db), S_UPLOAD_INSERT,
                          "INSERT INTO uploads (id, app_id, token_id, path, expected_size, "
                          "expected_sha256, received, created_at, updated_at) "
                          "VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7)",
                          &p, &r, err, ctx);
    PQclear(r);
    if (st == LP_ERR_NOT_FOUND)
        return lp_error_prefix(err, st, "upload '%s': app id %lld or token '%s'", u->id,
                               (long long)u->app_id, u->token_id ? u->token_id : "");
    return st;
}

static lp_status read_upload(const PGresult *r, int row, lp_db_upload *out, lp_error *err)
{
    out->app_id = pg_get_int(r, row, 1);
    int64_t v = pg_get_int(r, row, 4);
    out->expected_size = v < 0 ? 0 : (uint64_t)v;
    v = pg_get_int(r, row, 6);
    out->received = v < 0 ? 0 : (uint64_t)v;
    out->created_at = pg_get_int(r, row, 7);
    out->updated_at = pg_get_int(r, row, 8);
    if (!pg_get_dup(r, row, 0, &out->id) || !pg_get_dup(r, row, 2, &out->token_id) ||
        !pg_get_dup(r, row, 3, &out->path) || !pg_get_dup(r, row, 5, &out->expected_sha256))
        return nomem(err);
    return LP_OK;
}

lp_status pg_upload_get(lp_db *db, const char *id, lp_db_upload *out, lp_error *err)
{
    pg_params p = {0};
    pg_text(&p, id);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "reading upload '%s'", id);
    PGresult *r;
    lp_status st = pg_run(D(db), S_UPLOAD_BY_ID, UPLOAD_COLS "WHERE id = $1", &p, &r, err, ctx);
    if (st)
        return st;
    if (PQntuples(r) > 0)
        st = read_upload(r, 0, out, err);
    else
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "upload '%s' does not exist", id);
    PQclear(r);
    if (st)
        lp_db_upload_free(out);
    return st;
}

lp_status pg_upload_set_received(lp_db *db, const char *id, uint64_t received, int64_t when,
                                 lp_error *err)
{
    lp_db_upload cur = {0};
    lp_status st = pg_upload_get(db, id, &cur, err);
    if (st)
        return st;
    uint64_t expected = cur.expected_size;
    lp_db_upload_free(&cur);
    if (received > expected)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "upload '%s': received %llu bytes, more than the expected %llu", id,
                            (unsigned long long)received, (unsigned long long)expected);
    pg_params p = {0};
    pg_text(&p, id);
    pg_int(&p, (int64_t)received);
    pg_int(&p, when);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "upload '%s'", id);
    PGresult *r;
    st = pg_run(D(db), S_UPLOAD_SET_RECEIVED,
                "UPDATE uploads SET received = $2, updated_at = $3 WHERE id = $1", &p, &r, err,
                ctx);
    PQclear(r);
    return st;
}

lp_status pg_upload_delete(lp_db *db, const char *id, lp_error *err)
{
    pg_params p = {0};
    pg_text(&p, id);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "upload '%s'", id);
    PGresult *r;
    lp_status st =
        pg_run(D(db), S_UPLOAD_DELETE, "DELETE FROM uploads WHERE id = $1", &p, &r, err, ctx);
    if (!st && pg_changes(r) == 0)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "upload '%s' does not exist", id);
    PQclear(r);
    return st;
}

lp_status pg_upload_list_stale(lp_db *db, int64_t updated_before, lp_db_upload_list *out,
                               lp_error *err)
{
    pg_params p = {0};
    pg_int(&p, updated_before);
    pg_int(&p, (int64_t)LP_DB_LIST_MAX + 1);
    PGresult *r;
    lp_status st = pg_run(D(db), S_UPLOAD_STALE,
                          UPLOAD_COLS "WHERE updated_at < $1 ORDER BY updated_at, id LIMIT $2",
                          &p, &r, err, "listing uploads");
    if (st)
        return st;
    st = pg_check_rows(r, LP_DB_LIST_MAX, "listing uploads", err);
    size_t n = (size_t)PQntuples(r);
    if (!st)
        out->items = alloc_items(n, sizeof *out->items, &st, err);
    for (size_t i = 0; !st && i < n; i++) {
        out->count++;
        st = read_upload(r, (int)i, &out->items[i], err);
    }
    PQclear(r);
    if (st)
        lp_db_upload_list_free(out);
    return st;
}
