/*
 * db_sqlite_ops.c — the SQLite back end's queries (see db_backend.h).
 *
 * One cached prepared statement per query (slots below); values are always
 * bound, never written into SQL text.  Each function resets its statements
 * before returning (the `done` label), so no read transaction outlives a
 * call.  Rows are copied into result structs with malloc'd strings; a
 * failure part-way frees what was copied and leaves the struct zeroed.
 *
 * The row helpers (sq_col_dup, sq_grow_array, sq_step_done,
 * sq_bind_opt_text) are shared with db_sqlite_devices.c via db_sqlite.h.
 *
 * db.c has already validated inputs and opened the write transaction for
 * write operations, so these functions only translate: "no row" becomes
 * LP_ERR_NOT_FOUND, constraint failures become LP_ERR_EXISTS /
 * LP_ERR_NOT_FOUND naming the field (sq_fail).
 */
#include "store/db_sqlite.h"

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
    S_RELEASE_CHANNELS,
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

_Static_assert(S_COUNT <= SQ_SLOTS_DEVICES, "too many cached statements");

#define RELEASE_COLS                                                                    \
    "SELECT r.id, r.app_id, r.version, r.version_code, r.manifest_sha256, "           \
    "r.manifest_size, r.runtime_version, r.platform, r.arch, r.mandatory, r.notes, "   \
    "r.created_by, r.state, r.rollback_of, r.created_at, r.targeting FROM releases r "

/* "release r is on channel ?2 (or ?2 is NULL)" */
#define ON_CHANNEL                                                                    \
    "(?2 IS NULL OR EXISTS (SELECT 1 FROM release_channels rc JOIN channels c "       \
    "ON c.id = rc.channel_id WHERE rc.release_id = r.id AND c.name = ?2)) "

#define TOKEN_COLS \
    "SELECT id, name, salt, hash, scopes, created_at, revoked_at, last_used_at FROM tokens "

#define UPLOAD_COLS                                                                   \
    "SELECT id, app_id, token_id, path, expected_size, expected_sha256, received, "   \
    "created_at, updated_at FROM uploads "

/* ---- helpers ---------------------------------------------------------- */

static sq_db *D(lp_db *db)
{
    return (sq_db *)db;
}

void sq_bind_opt_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

static void bind_opt_id(sqlite3_stmt *s, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

/* Copies text column i (NULL stays NULL).  False only when out of memory. */
bool sq_col_dup(sqlite3_stmt *s, int i, char **out)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    if (!t) {
        *out = NULL;
        return sqlite3_column_type(s, i) == SQLITE_NULL;
    }
    int n = sqlite3_column_bytes(s, i);
    *out = malloc((size_t)n + 1);
    if (!*out)
        return false;
    memcpy(*out, t, (size_t)n);
    (*out)[n] = '\0';
    return true;
}

void *sq_grow_array(void *items, size_t *cap, size_t count, size_t size, lp_status *st,
                    lp_error *err)
{
    if (count < *cap)
        return items;
    if (count >= LP_DB_LIST_MAX) {
        *st = lp_error_set(err, LP_ERR_TOO_LARGE, "more than %d rows", LP_DB_LIST_MAX);
        return NULL;
    }
    size_t ncap = *cap ? *cap * 2 : 16;
    char *p = realloc(items, ncap * size);
    if (!p) {
        *st = lp_error_set(err, LP_ERR_NOMEM, "out of memory listing rows");
        return NULL;
    }
    memset(p + *cap * size, 0, (ncap - *cap) * size);
    *cap = ncap;
    return p;
}

static lp_status nomem(lp_error *err)
{
    return lp_error_set(err, LP_ERR_NOMEM, "out of memory reading a row");
}

lp_status sq_step_done(sq_db *d, sqlite3_stmt *s, lp_error *err, const char *ctx)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return LP_OK;
    return sq_fail(d, rc, err, "%s", ctx);
}

/* ---- apps ------------------------------------------------------------- */

lp_status sq_app_create(lp_db *db, const char *name, int64_t created_at, int64_t *id_out,
                        lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_APP_INSERT,
                           "INSERT INTO apps (name, created_at) VALUES (?1, ?2)", &s, err);
    if (st)
        return st;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, created_at);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "app name '%s'", name);
    st = sq_step_done(d, s, err, ctx);
    if (!st && id_out)
        *id_out = sqlite3_last_insert_rowid(d->h);
    sqlite3_reset(s);
    return st;
}

static lp_status read_app(sqlite3_stmt *s, lp_db_app *out, lp_error *err)
{
    out->id = sqlite3_column_int64(s, 0);
    out->created_at = sqlite3_column_int64(s, 2);
    if (!sq_col_dup(s, 1, &out->name))
        return nomem(err);
    return LP_OK;
}

lp_status sq_app_get(lp_db *db, int64_t id, const char *name, lp_db_app *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st =
        name ? sq_stmt(d, S_APP_BY_NAME, "SELECT id, name, created_at FROM apps WHERE name = ?1",
                       &s, err)
             : sq_stmt(d, S_APP_BY_ID, "SELECT id, name, created_at FROM apps WHERE id = ?1", &s,
                       err);
    if (st)
        return st;
    if (name)
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        st = read_app(s, out, err);
    else if (rc == SQLITE_DONE && name)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "app '%s' does not exist", name);
    else if (rc == SQLITE_DONE)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "app id %lld does not exist", (long long)id);
    else
        st = sq_fail(d, rc, err, "reading app");
    sqlite3_reset(s);
    if (st)
        lp_db_app_free(out);
    return st;
}

lp_status sq_app_list(lp_db *db, lp_db_app_list *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_APP_LIST, "SELECT id, name, created_at FROM apps ORDER BY name",
                           &s, err);
    if (st)
        return st;
    size_t cap = 0;
    int rc = SQLITE_DONE;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        SQ_GROW(out->items, cap, out->count, st);
        if (!st)
            st = read_app(s, &out->items[out->count++], err);
    }
    if (!st && rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "listing apps");
    sqlite3_reset(s);
    if (st)
        lp_db_app_list_free(out);
    return st;
}

/* ---- channels --------------------------------------------------------- */

lp_status sq_channel_create(lp_db *db, int64_t app_id, const char *name, int64_t created_at,
                            int64_t *id_out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_CHANNEL_INSERT,
                           "INSERT INTO channels (app_id, name, created_at) VALUES (?1, ?2, ?3)",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, created_at);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        if (id_out)
            *id_out = sqlite3_last_insert_rowid(d->h);
    } else if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        st = sq_fail(d, rc, err, "channel '%s': app id %lld", name, (long long)app_id);
    } else {
        st = sq_fail(d, rc, err, "channel name '%s'", name);
    }
    sqlite3_reset(s);
    return st;
}

lp_status sq_channel_list(lp_db *db, int64_t app_id, lp_db_channel_list *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_CHANNEL_LIST,
                           "SELECT id, app_id, name, created_at FROM channels WHERE app_id = ?1 "
                           "ORDER BY name",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    size_t cap = 0;
    int rc = SQLITE_DONE;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        SQ_GROW(out->items, cap, out->count, st);
        if (st)
            break;
        lp_db_channel *c = &out->items[out->count++];
        c->id = sqlite3_column_int64(s, 0);
        c->app_id = sqlite3_column_int64(s, 1);
        c->created_at = sqlite3_column_int64(s, 3);
        if (!sq_col_dup(s, 2, &c->name))
            st = nomem(err);
    }
    if (!st && rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "listing channels");
    sqlite3_reset(s);
    if (st)
        lp_db_channel_list_free(out);
    return st;
}

/* ---- releases --------------------------------------------------------- */

/* Links release `rid` to channel `name` of app `app_id`, creating the
 * channel if the app does not have it yet. */
static lp_status link_channel(sq_db *d, int64_t rid, int64_t app_id, const char *name,
                              int64_t now, lp_error *err)
{
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_CHANNEL_UPSERT,
                           "INSERT INTO channels (app_id, name, created_at) VALUES (?1, ?2, ?3) "
                           "ON CONFLICT (app_id, name) DO NOTHING",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "channel '%s'", name);
    st = sq_step_done(d, s, err, ctx);
    sqlite3_reset(s);
    if (st)
        return st;

    st = sq_stmt(d, S_CHANNEL_ID, "SELECT id FROM channels WHERE app_id = ?1 AND name = ?2", &s,
                 err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int64_t cid = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    if (rc != SQLITE_ROW)
        st = rc == SQLITE_DONE ? lp_error_set(err, LP_ERR_NOT_FOUND, "%s: vanished", ctx)
                               : sq_fail(d, rc, err, "%s", ctx);
    sqlite3_reset(s);
    if (st)
        return st;

    st = sq_stmt(d, S_RELEASE_LINK,
                 "INSERT INTO release_channels (release_id, channel_id) VALUES (?1, ?2)", &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, rid);
    sqlite3_bind_int64(s, 2, cid);
    st = sq_step_done(d, s, err, ctx);
    sqlite3_reset(s);
    return st;
}

lp_status sq_release_insert(lp_db *db, const lp_db_release_new *r, int64_t *id_out,
                            lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_RELEASE_INSERT,
                           "INSERT INTO releases (app_id, version, version_code, manifest_sha256, "
                           "manifest_size, runtime_version, platform, arch, mandatory, notes, "
                           "created_at, created_by, state, rollback_of, targeting) VALUES "
                           "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, r->app_id);
    sqlite3_bind_text(s, 2, r->version, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, r->version_code);
    sqlite3_bind_text(s, 4, r->manifest_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)r->manifest_size);
    sq_bind_opt_text(s, 6, r->runtime_version);
    sq_bind_opt_text(s, 7, r->platform);
    sq_bind_opt_text(s, 8, r->arch);
    sqlite3_bind_int(s, 9, r->mandatory ? 1 : 0);
    sq_bind_opt_text(s, 10, r->notes);
    sqlite3_bind_int64(s, 11, r->created_at);
    sq_bind_opt_text(s, 12, r->created_by);
    sqlite3_bind_text(s, 13, r->state, -1, SQLITE_STATIC);
    bind_opt_id(s, 14, r->rollback_of);
    sq_bind_opt_text(s, 15, r->targeting);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "inserting release (app id %lld, version_code %lld)",
                     (long long)r->app_id, (long long)r->version_code);
    sqlite3_reset(s);
    if (st)
        return st;
    int64_t rid = sqlite3_last_insert_rowid(d->h);
    for (size_t i = 0; i < r->n_channels && !st; i++)
        st = link_channel(d, rid, r->app_id, r->channels[i], r->created_at, err);
    if (!st && id_out)
        *id_out = rid;
    return st;
}

static lp_status load_channels(sq_db *d, lp_db_release *out, lp_error *err)
{
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_RELEASE_CHANNELS,
                           "SELECT c.name FROM release_channels rc JOIN channels c "
                           "ON c.id = rc.channel_id WHERE rc.release_id = ?1 ORDER BY c.name",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, out->id);
    size_t cap = 0;
    int rc = SQLITE_DONE;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        SQ_GROW(out->channels, cap, out->n_channels, st);
        if (!st && !sq_col_dup(s, 0, &out->channels[out->n_channels++]))
            st = nomem(err);
    }
    if (!st && rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "reading release channels");
    sqlite3_reset(s);
    return st;
}

/* Reads a row of RELEASE_COLS, then its channels. */
static lp_status read_release(sq_db *d, sqlite3_stmt *s, lp_db_release *out, lp_error *err)
{
    out->id = sqlite3_column_int64(s, 0);
    out->app_id = sqlite3_column_int64(s, 1);
    out->version_code = sqlite3_column_int64(s, 3);
    const unsigned char *sha = sqlite3_column_text(s, 4);
    if (!sha || sqlite3_column_bytes(s, 4) != 64)
        return lp_error_set(err, LP_ERR_MALFORMED, "release %lld: bad manifest_sha256",
                            (long long)out->id);
    memcpy(out->manifest_sha256, sha, 65);
    sqlite3_int64 size = sqlite3_column_int64(s, 5);
    out->manifest_size = size < 0 ? 0 : (uint64_t)size;
    out->mandatory = sqlite3_column_int(s, 9) != 0;
    out->rollback_of = sqlite3_column_int64(s, 13);
    out->created_at = sqlite3_column_int64(s, 14);
    if (!sq_col_dup(s, 2, &out->version) || !sq_col_dup(s, 6, &out->runtime_version) ||
        !sq_col_dup(s, 7, &out->platform) || !sq_col_dup(s, 8, &out->arch) ||
        !sq_col_dup(s, 10, &out->notes) || !sq_col_dup(s, 11, &out->created_by) ||
        !sq_col_dup(s, 12, &out->state) || !sq_col_dup(s, 15, &out->targeting))
        return nomem(err);
    return load_channels(d, out, err);
}

/* Steps a release query expected to give at most one row. */
static lp_status one_release(sq_db *d, sqlite3_stmt *s, lp_db_release *out, lp_error *err,
                             const char *what)
{
    int rc = sqlite3_step(s);
    lp_status st;
    if (rc == SQLITE_ROW)
        st = read_release(d, s, out, err);
    else if (rc == SQLITE_DONE)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "%s does not exist", what);
    else
        st = sq_fail(d, rc, err, "reading %s", what);
    sqlite3_reset(s);
    if (st)
        lp_db_release_free(out);
    return st;
}

lp_status sq_release_get(lp_db *db, int64_t id, lp_db_release *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_RELEASE_BY_ID, RELEASE_COLS "WHERE r.id = ?1", &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, id);
    char what[64];
    snprintf(what, sizeof what, "release %lld", (long long)id);
    return one_release(d, s, out, err, what);
}

lp_status sq_release_get_by_version(lp_db *db, int64_t app_id, const char *version,
                                    bool original_only, lp_db_release *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st =
        original_only
            ? sq_stmt(d, S_RELEASE_BY_ORIGINAL_VERSION,
                      RELEASE_COLS "WHERE r.app_id = ?1 AND r.version = ?2 AND "
                                   "r.rollback_of IS NULL",
                      &s, err)
            : sq_stmt(d, S_RELEASE_BY_VERSION,
                      RELEASE_COLS "WHERE r.app_id = ?1 AND r.version = ?2 "
                                   "ORDER BY r.version_code DESC LIMIT 1",
                      &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sqlite3_bind_text(s, 2, version, -1, SQLITE_STATIC);
    char what[128];
    snprintf(what, sizeof what, "release '%s' of app id %lld", version, (long long)app_id);
    return one_release(d, s, out, err, what);
}

lp_status sq_release_latest(lp_db *db, int64_t app_id, const char *channel, lp_db_release *out,
                            lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_RELEASE_LATEST,
                           RELEASE_COLS "WHERE r.app_id = ?1 AND r.state = 'published' AND "
                                        ON_CHANNEL "ORDER BY r.version_code DESC LIMIT 1",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sq_bind_opt_text(s, 2, channel);
    char what[128];
    snprintf(what, sizeof what, "a published release of app id %lld%s%s", (long long)app_id,
             channel ? " on channel " : "", channel ? channel : "");
    return one_release(d, s, out, err, what);
}

lp_status sq_release_list(lp_db *db, int64_t app_id, const char *channel, int64_t before_code,
                          size_t limit, lp_db_release_list *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_RELEASE_LIST,
                           RELEASE_COLS "WHERE r.app_id = ?1 AND " ON_CHANNEL
                                        "AND (?3 = 0 OR r.version_code < ?3) "
                                        "ORDER BY r.version_code DESC LIMIT ?4",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    sq_bind_opt_text(s, 2, channel);
    sqlite3_bind_int64(s, 3, before_code);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)limit);
    size_t cap = 0;
    int rc = SQLITE_DONE;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        SQ_GROW(out->items, cap, out->count, st);
        if (!st)
            st = read_release(d, s, &out->items[out->count++], err);
    }
    if (!st && rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "listing releases");
    sqlite3_reset(s);
    if (st)
        lp_db_release_list_free(out);
    return st;
}

lp_status sq_release_max_code(lp_db *db, int64_t app_id, int64_t *code, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_RELEASE_MAX_CODE,
                           "SELECT coalesce(max(version_code), 0) FROM releases WHERE app_id = ?1",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, app_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *code = sqlite3_column_int64(s, 0);
    else
        st = sq_fail(d, rc, err, "reading the highest version_code");
    sqlite3_reset(s);
    return st;
}

lp_status sq_release_set_state(lp_db *db, int64_t id, const char *state, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st =
        sq_stmt(d, S_RELEASE_SET_STATE, "UPDATE releases SET state = ?2 WHERE id = ?1", &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, state, -1, SQLITE_STATIC);
    st = sq_step_done(d, s, err, "release state");
    if (!st && sqlite3_changes(d->h) == 0)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "release %lld does not exist", (long long)id);
    sqlite3_reset(s);
    return st;
}

/* ---- tokens ----------------------------------------------------------- */

lp_status sq_token_insert(lp_db *db, const lp_db_token_new *t, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_TOKEN_INSERT,
                           "INSERT INTO tokens (id, name, salt, hash, scopes, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_text(s, 1, t->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, t->salt, (int)t->salt_len, SQLITE_STATIC);
    sqlite3_bind_blob(s, 4, t->hash, (int)t->hash_len, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, t->scopes, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, t->created_at);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "token id '%s'", t->id);
    st = sq_step_done(d, s, err, ctx);
    sqlite3_reset(s);
    return st;
}

static lp_status copy_blob(sqlite3_stmt *s, int i, uint8_t *dst, size_t cap, size_t *len,
                           const char *what, lp_error *err)
{
    const void *p = sqlite3_column_blob(s, i);
    int n = sqlite3_column_bytes(s, i);
    if (n < 0 || (size_t)n > cap || (n > 0 && !p))
        return lp_error_set(err, LP_ERR_MALFORMED, "token %s: %d bytes stored, at most %zu",
                            what, n, cap);
    if (n > 0)
        memcpy(dst, p, (size_t)n);
    *len = (size_t)n;
    return LP_OK;
}

static lp_status read_token(sqlite3_stmt *s, lp_db_token *out, lp_error *err)
{
    out->created_at = sqlite3_column_int64(s, 5);
    out->revoked_at = sqlite3_column_int64(s, 6);
    out->last_used_at = sqlite3_column_int64(s, 7);
    if (!sq_col_dup(s, 0, &out->id) || !sq_col_dup(s, 1, &out->name) || !sq_col_dup(s, 4, &out->scopes))
        return nomem(err);
    lp_status st = copy_blob(s, 2, out->salt, sizeof out->salt, &out->salt_len, "salt", err);
    if (!st)
        st = copy_blob(s, 3, out->hash, sizeof out->hash, &out->hash_len, "hash", err);
    return st;
}

lp_status sq_token_get(lp_db *db, const char *id, lp_db_token *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_TOKEN_BY_ID, TOKEN_COLS "WHERE id = ?1", &s, err);
    if (st)
        return st;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        st = read_token(s, out, err);
    else if (rc == SQLITE_DONE)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "token '%s' does not exist", id);
    else
        st = sq_fail(d, rc, err, "reading token '%s'", id);
    sqlite3_reset(s);
    if (st)
        lp_db_token_free(out);
    return st;
}

lp_status sq_token_list(lp_db *db, lp_db_token_list *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_TOKEN_LIST, TOKEN_COLS "ORDER BY created_at, id", &s, err);
    if (st)
        return st;
    size_t cap = 0;
    int rc = SQLITE_DONE;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        SQ_GROW(out->items, cap, out->count, st);
        if (!st)
            st = read_token(s, &out->items[out->count++], err);
    }
    if (!st && rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "listing tokens");
    sqlite3_reset(s);
    if (st)
        lp_db_token_list_free(out);
    return st;
}

/* Runs an UPDATE of one token; LP_ERR_NOT_FOUND when no row matched. */
static lp_status token_update(sq_db *d, int slot, const char *sql, const char *id, int64_t when,
                              lp_error *err)
{
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, slot, sql, &s, err);
    if (st)
        return st;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, when);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "token '%s'", id);
    st = sq_step_done(d, s, err, ctx);
    if (!st && sqlite3_changes(d->h) == 0)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "token '%s' does not exist", id);
    sqlite3_reset(s);
    return st;
}

lp_status sq_token_revoke(lp_db *db, const char *id, int64_t when, lp_error *err)
{
    return token_update(D(db), S_TOKEN_REVOKE,
                        "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
                        id, when, err);
}

lp_status sq_token_touch(lp_db *db, const char *id, int64_t when, lp_error *err)
{
    return token_update(D(db), S_TOKEN_TOUCH,
                        "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1", id, when, err);
}

/* ---- uploads ---------------------------------------------------------- */

lp_status sq_upload_create(lp_db *db, const lp_db_upload_new *u, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_UPLOAD_INSERT,
                           "INSERT INTO uploads (id, app_id, token_id, path, expected_size, "
                           "expected_sha256, received, created_at, updated_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7)",
                           &s, err);
    if (st)
        return st;
    sqlite3_bind_text(s, 1, u->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, u->app_id);
    sq_bind_opt_text(s, 3, u->token_id);
    sqlite3_bind_text(s, 4, u->path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)u->expected_size);
    sq_bind_opt_text(s, 6, u->expected_sha256);
    sqlite3_bind_int64(s, 7, u->created_at);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        st = sq_fail(d, rc, err, "upload '%s': app id %lld or token '%s'", u->id,
                     (long long)u->app_id, u->token_id ? u->token_id : "");
    else if (rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "upload id '%s'", u->id);
    sqlite3_reset(s);
    return st;
}

static lp_status read_upload(sqlite3_stmt *s, lp_db_upload *out, lp_error *err)
{
    out->app_id = sqlite3_column_int64(s, 1);
    sqlite3_int64 v = sqlite3_column_int64(s, 4);
    out->expected_size = v < 0 ? 0 : (uint64_t)v;
    v = sqlite3_column_int64(s, 6);
    out->received = v < 0 ? 0 : (uint64_t)v;
    out->created_at = sqlite3_column_int64(s, 7);
    out->updated_at = sqlite3_column_int64(s, 8);
    if (!sq_col_dup(s, 0, &out->id) || !sq_col_dup(s, 2, &out->token_id) ||
        !sq_col_dup(s, 3, &out->path) || !sq_col_dup(s, 5, &out->expected_sha256))
        return nomem(err);
    return LP_OK;
}

lp_status sq_upload_get(lp_db *db, const char *id, lp_db_upload *out, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_UPLOAD_BY_ID, UPLOAD_COLS "WHERE id = ?1", &s, err);
    if (st)
        return st;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        st = read_upload(s, out, err);
    else if (rc == SQLITE_DONE)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "upload '%s' does not exist", id);
    else
        st = sq_fail(d, rc, err, "reading upload '%s'", id);
    sqlite3_reset(s);
    if (st)
        lp_db_upload_free(out);
    return st;
}

lp_status sq_upload_set_received(lp_db *db, const char *id, uint64_t received, int64_t when,
                                 lp_error *err)
{
    sq_db *d = D(db);
    lp_db_upload cur = {0};
    lp_status st = sq_upload_get(db, id, &cur, err);
    if (st)
        return st;
    uint64_t expected = cur.expected_size;
    lp_db_upload_free(&cur);
    if (received > expected)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "upload '%s': received %llu bytes, more than the expected %llu", id,
                            (unsigned long long)received, (unsigned long long)expected);
    sqlite3_stmt *s;
    st = sq_stmt(d, S_UPLOAD_SET_RECEIVED,
                 "UPDATE uploads SET received = ?2, updated_at = ?3 WHERE id = ?1", &s, err);
    if (st)
        return st;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)received);
    sqlite3_bind_int64(s, 3, when);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "upload '%s'", id);
    st = sq_step_done(d, s, err, ctx);
    sqlite3_reset(s);
    return st;
}

lp_status sq_upload_delete(lp_db *db, const char *id, lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_UPLOAD_DELETE, "DELETE FROM uploads WHERE id = ?1", &s, err);
    if (st)
        return st;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "upload '%s'", id);
    st = sq_step_done(d, s, err, ctx);
    if (!st && sqlite3_changes(d->h) == 0)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "upload '%s' does not exist", id);
    sqlite3_reset(s);
    return st;
}

lp_status sq_upload_list_stale(lp_db *db, int64_t updated_before, lp_db_upload_list *out,
                               lp_error *err)
{
    sq_db *d = D(db);
    sqlite3_stmt *s;
    lp_status st = sq_stmt(d, S_UPLOAD_STALE,
                           UPLOAD_COLS "WHERE updated_at < ?1 ORDER BY updated_at, id", &s, err);
    if (st)
        return st;
    sqlite3_bind_int64(s, 1, updated_before);
    size_t cap = 0;
    int rc = SQLITE_DONE;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        SQ_GROW(out->items, cap, out->count, st);
        if (!st)
            st = read_upload(s, &out->items[out->count++], err);
    }
    if (!st && rc != SQLITE_DONE)
        st = sq_fail(d, rc, err, "listing uploads");
    sqlite3_reset(s);
    if (st)
        lp_db_upload_list_free(out);
    return st;
}
