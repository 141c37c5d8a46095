/*
 * db.c — the metadata database front: URL dispatch, input checks,
 * transaction bookkeeping and the release rules (see include/livepush/db.h).
 *
 * Each public function checks its input with db_check.c (a release's
 * targeting rules with lp_targeting_canonical, which also gives the form
 * stored), replaces "0 = now" times, and calls the back end through its
 * operations table (db_backend.h).  Write functions run through `lp_db_write_begin` /
 * `lp_db_write_end`: when the caller has no transaction open they open one
 * around the single call, so every write is atomic and serialised with
 * other writers; inside the caller's transaction they join it (in a
 * savepoint when the back end needs one, so a failed call is undone alone).
 *
 * The rules that make a release insert safe live here, once for every back
 * end, and run inside that write transaction: the app exists, the
 * version_code is greater than the app's highest, an original release's
 * version is new, a rollback restores a release of the same app, and the
 * creating token exists.  Because writers are serialised, two publishers
 * racing on one app can never both pass the version_code check with the
 * same code (and the back end's unique index on (app, version_code) is a
 * second guard).
 */
#include "store/db_backend.h"

#include "core/timeutil.h"
#include "livepush/targeting.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- opening ---------------------------------------------------------- */

lp_status lp_db_open(const char *url, lp_db **out, lp_error *err)
{
    if (!out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no output handle");
    *out = NULL;
    if (!url)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database URL: missing");
    if (strnlen(url, LP_DB_URL_MAX + 1) > LP_DB_URL_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "database URL: longer than %d bytes",
                            LP_DB_URL_MAX);
    if (strncmp(url, "sqlite:", 7) == 0) {
        const char *path = url + 7;
        if (!*path)
            return lp_error_set(err, LP_ERR_INVALID_ARG, "database URL '%s': no file name",
                                url);
        lp_status st = lp_db_sqlite_open(path, out, err);
        if (st)
            return lp_error_prefix(err, st, "opening database %s", url);
        return LP_OK;
    }
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        lp_status st = lp_db_pg_open(url, out, err);
        if (st) {
            char shown[LP_DB_URL_MAX + 1];
            lp_db_url_redact(url, shown, sizeof shown);
            return lp_error_prefix(err, st, "opening database %.300s", shown);
        }
        return LP_OK;
    }
    return lp_error_set(err, LP_ERR_INVALID_ARG,
                        "database URL '%.200s': unknown scheme (expected sqlite:/path/to/file.db "
                        "or postgresql://...)",
                        url);
}

void lp_db_url_redact(const char *url, char *out, size_t cap)
{
    if (!cap)
        return;
    snprintf(out, cap, "%s", url ? url : "");
    /* scheme://user:password@host... -> scheme://user:***@host... */
    char *authority = strstr(out, "://");
    if (!authority)
        return;
    authority += 3;
    char *at = strchr(authority, '@');
    char *slash = strchr(authority, '/');
    if (!at || (slash && slash < at))
        return;
    char *colon = memchr(authority, ':', (size_t)(at - authority));
    if (!colon)
        return;
    char rest[LP_DB_URL_MAX + 1];
    snprintf(rest, sizeof rest, "%s", at);
    snprintf(colon, cap - (size_t)(colon - out), ":***%s", rest);
}

void lp_db_close(lp_db *db)
{
    if (!db)
        return;
    if (db->in_tx) {
        db->ops->rollback(db, NULL);
        db->in_tx = false;
    }
    db->ops->close(db);
}

const char *lp_db_backend(const lp_db *db)
{
    return db ? db->ops->name : "none";
}

#define NEED_DB(db)                                                                       \
    do {                                                                                  \
        if (!(db))                                                                        \
            return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle");          \
    } while (0)

#define NEED_OUT(p)                                                                       \
    do {                                                                                  \
        if (!(p))                                                                         \
            return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no output argument"); \
    } while (0)

lp_status lp_db_schema_version(lp_db *db, int *version, lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(version);
    return db->ops->schema_version(db, version, err);
}

/* ---- transactions ----------------------------------------------------- */

lp_status lp_db_begin(lp_db *db, lp_error *err)
{
    NEED_DB(db);
    if (db->in_tx)
        return lp_error_set(err, LP_ERR_STATE, "begin: a transaction is already open");
    TRY(db->ops->begin(db, err));
    db->in_tx = true;
    return LP_OK;
}

lp_status lp_db_commit(lp_db *db, lp_error *err)
{
    NEED_DB(db);
    if (!db->in_tx)
        return lp_error_set(err, LP_ERR_STATE, "commit: no transaction is open");
    lp_status st = db->ops->tx_active(db)
                       ? db->ops->commit(db, err)
                       : lp_error_set(err, LP_ERR_STATE,
                                      "the transaction was ended by an earlier error");
    if (st) {
        db->ops->rollback(db, NULL);
        db->in_tx = false;
        return lp_error_prefix(err, st, "commit (the transaction was rolled back)");
    }
    db->in_tx = false;
    return LP_OK;
}

lp_status lp_db_rollback(lp_db *db, lp_error *err)
{
    NEED_DB(db);
    if (!db->in_tx)
        return lp_error_set(err, LP_ERR_STATE, "rollback: no transaction is open");
    db->in_tx = false;
    return db->ops->rollback(db, err);
}

bool lp_db_in_transaction(const lp_db *db)
{
    return db && db->in_tx;
}

/* Opens a transaction for one write call unless the caller has one open;
 * *own tells lp_db_write_end whether to finish it (db_backend.h). */
lp_status lp_db_write_begin(lp_db *db, bool *own, lp_error *err)
{
    *own = !db->in_tx;
    if (*own)
        return db->ops->begin(db, err);
    if (!db->ops->tx_active(db))
        return lp_error_set(err, LP_ERR_STATE,
                            "the transaction was ended by an earlier error: roll back");
    return db->ops->call_begin ? db->ops->call_begin(db, err) : LP_OK;
}

/* Ends a write call: commits its own transaction on success, rolls it back
 * on failure.  Returns the final status. */
lp_status lp_db_write_end(lp_db *db, bool own, lp_status st, lp_error *err)
{
    if (!own) {
        /* Inside the caller's transaction: end the call's savepoint, if the
         * back end uses one (a failed call is undone alone). */
        if (db->ops->call_end) {
            lp_status end = db->ops->call_end(db, st == LP_OK, st ? NULL : err);
            if (!st)
                st = end;
        }
        return st;
    }
    if (st) {
        db->ops->rollback(db, NULL);
        return st;
    }
    st = db->ops->commit(db, err);
    if (st)
        db->ops->rollback(db, NULL);
    return st;
}

static int64_t now_or(int64_t t)
{
    return t ? t : lp_time_now();
}

/* ---- apps ------------------------------------------------------------- */

lp_status lp_db_app_create(lp_db *db, const char *name, int64_t created_at, int64_t *id_out,
                           lp_error *err)
{
    NEED_DB(db);
    TRY(lp_db_check_name("app name", name, err));
    TRY(lp_db_check_time("created_at", created_at, err));
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->app_create(db, name, now_or(created_at), id_out, err);
    return lp_db_write_end(db, own, st, err);
}

lp_status lp_db_app_get(lp_db *db, int64_t id, lp_db_app *out, lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("app id", id, err));
    return db->ops->app_get(db, id, NULL, out, err);
}

lp_status lp_db_app_get_by_name(lp_db *db, const char *name, lp_db_app *out, lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_name("app name", name, err));
    return db->ops->app_get(db, 0, name, out, err);
}

lp_status lp_db_app_list_all(lp_db *db, lp_db_app_list *out, lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(out);
    memset(out, 0, sizeof *out);
    return db->ops->app_list(db, out, err);
}

/* ---- channels --------------------------------------------------------- */

lp_status lp_db_channel_create(lp_db *db, int64_t app_id, const char *name, int64_t created_at,
                               int64_t *id_out, lp_error *err)
{
    NEED_DB(db);
    TRY(lp_db_check_positive("app id", app_id, err));
    TRY(lp_db_check_name("channel name", name, err));
    TRY(lp_db_check_time("created_at", created_at, err));
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->channel_create(db, app_id, name, now_or(created_at), id_out, err);
    return lp_db_write_end(db, own, st, err);
}

lp_status lp_db_channel_list_all(lp_db *db, int64_t app_id, lp_db_channel_list *out,
                                 lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("app id", app_id, err));
    return db->ops->channel_list(db, app_id, out, err);
}

/* ---- releases --------------------------------------------------------- */

static lp_status check_release(const lp_db_release_new *r, lp_error *err)
{
    TRY(lp_db_check_positive("app id", r->app_id, err));
    TRY(lp_db_check_version("version", r->version, err));
    TRY(lp_db_check_positive("version_code", r->version_code, err));
    TRY(lp_db_check_sha256("manifest_sha256", r->manifest_sha256, err));
    TRY(lp_db_check_size("manifest_size", r->manifest_size, err));
    if (r->n_channels == 0 || !r->channels)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "channels: a release needs at least one");
    if (r->n_channels > LP_DB_CHANNELS_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "channels: %zu given, at most %d allowed",
                            r->n_channels, LP_DB_CHANNELS_MAX);
    for (size_t i = 0; i < r->n_channels; i++) {
        TRY(lp_db_check_name("channel name", r->channels[i], err));
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->channels[i], r->channels[j]) == 0)
                return lp_error_set(err, LP_ERR_INVALID_ARG, "channels: '%s' is listed twice",
                                    r->channels[i]);
    }
    if (r->runtime_version)
        TRY(lp_db_check_version("runtime_version", r->runtime_version, err));
    if (r->platform)
        TRY(lp_db_check_platform("platform", r->platform, err));
    if (r->arch)
        TRY(lp_db_check_platform("arch", r->arch, err));
    if (r->notes)
        TRY(lp_db_check_notes("notes", r->notes, err));
    if (r->created_by)
        TRY(lp_db_check_id("created_by", r->created_by, err));
    if (r->state)
        TRY(lp_db_check_state("state", r->state, err));
    if (r->rollback_of < 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "rollback_of: %lld is not a release id",
                            (long long)r->rollback_of);
    TRY(lp_db_check_time("created_at", r->created_at, err));
    if (r->staged && (r->rollout_bp < 0 || r->rollout_bp > LP_DB_BP_MAX))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "rollout_bp: %d, expected 0..%d basis points", r->rollout_bp,
                            LP_DB_BP_MAX);
    return LP_OK;
}

/* The release rules, inside the write transaction. */
static lp_status release_rules(lp_db *db, const lp_db_release_new *r, lp_error *err)
{
    lp_db_app app = {0};
    lp_status st = db->ops->app_get(db, r->app_id, NULL, &app, err);
    lp_db_app_free(&app);
    if (st)
        return st;

    int64_t max = 0;
    TRY(db->ops->release_max_code(db, r->app_id, &max, err));
    if (r->version_code <= max)
        return lp_error_set(err, LP_ERR_ROLLBACK,
                            "version_code: %lld is not greater than the app's latest "
                            "version_code %lld",
                            (long long)r->version_code, (long long)max);

    lp_db_release other = {0};
    if (r->rollback_of) {
        st = db->ops->release_get(db, r->rollback_of, &other, err);
        if (st == LP_OK && other.app_id != r->app_id)
            st = lp_error_set(err, LP_ERR_INVALID_ARG, "belongs to app id %lld, not %lld",
                              (long long)other.app_id, (long long)r->app_id);
        if (st == LP_OK && strcmp(other.version, r->version) != 0)
            st = lp_error_set(err, LP_ERR_INVALID_ARG,
                              "has version '%s' but the rollback is named '%s'", other.version,
                              r->version);
        lp_db_release_free(&other);
        if (st)
            return lp_error_prefix(err, st, "rollback_of: release %lld",
                                   (long long)r->rollback_of);
    } else {
        st = db->ops->release_get_by_version(db, r->app_id, r->version, true, &other, err);
        lp_db_release_free(&other);
        if (st == LP_OK)
            return lp_error_set(err, LP_ERR_EXISTS,
                                "version: '%s' already exists for this app (a rollback to it "
                                "sets rollback_of)",
                                r->version);
        if (st != LP_ERR_NOT_FOUND)
            return st;
    }

    if (r->created_by) {
        lp_db_token tok = {0};
        st = db->ops->token_get(db, r->created_by, &tok, err);
        lp_db_token_free(&tok);
        if (st)
            return lp_error_prefix(err, st, "created_by");
    }
    return LP_OK;
}

lp_status lp_db_release_insert(lp_db *db, const lp_db_release_new *rel, int64_t *id_out,
                               lp_error *err)
{
    NEED_DB(db);
    if (!rel)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "release: missing");
    lp_status st = check_release(rel, err);
    if (st)
        return lp_error_prefix(err, st, "release");
    /* Targeting rules are stored in canonical form: the server signs what
     * it stores, and equal rules give equal bytes. */
    char *targeting = NULL;
    if (rel->targeting &&
        (st = lp_targeting_canonical(rel->targeting, strlen(rel->targeting), &targeting, err)))
        return lp_error_prefix(err, st, "release");
    lp_db_release_new r = *rel;
    r.targeting = targeting;
    r.created_at = now_or(r.created_at);
    if (!r.state)
        r.state = LP_DB_STATE_PUBLISHED;
    bool own;
    st = lp_db_write_begin(db, &own, err);
    if (st) {
        free(targeting);
        return st;
    }
    st = release_rules(db, &r, err);
    int64_t id = 0;
    if (!st)
        st = db->ops->release_insert(db, &r, &id, err);
    for (size_t i = 0; !st && r.staged && i < r.n_channels; i++) {
        lp_db_rollout_new ro = {.release_id = id,
                                .channel = r.channels[i],
                                .percent_bp = r.rollout_bp,
                                .state = LP_DB_ROLLOUT_ACTIVE,
                                .at = r.created_at};
        st = lp_db_rollout_put(db, &ro, err);
    }
    if (!st && id_out)
        *id_out = id;
    if (st)
        lp_error_prefix(err, st, "release %s", r.version);
    free(targeting);
    return lp_db_write_end(db, own, st, err);
}

lp_status lp_db_release_get(lp_db *db, int64_t id, lp_db_release *out, lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("release id", id, err));
    return db->ops->release_get(db, id, out, err);
}

lp_status lp_db_release_get_by_version(lp_db *db, int64_t app_id, const char *version,
                                       lp_db_release *out, lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("app id", app_id, err));
    TRY(lp_db_check_version("version", version, err));
    return db->ops->release_get_by_version(db, app_id, version, false, out, err);
}

lp_status lp_db_release_latest(lp_db *db, int64_t app_id, const char *channel,
                               lp_db_release *out, lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("app id", app_id, err));
    if (channel)
        TRY(lp_db_check_name("channel name", channel, err));
    return db->ops->release_latest(db, app_id, channel, out, err);
}

lp_status lp_db_release_list_by_app(lp_db *db, int64_t app_id, const char *channel,
                                    int64_t before_code, size_t limit, lp_db_release_list *out,
                                    lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_positive("app id", app_id, err));
    if (channel)
        TRY(lp_db_check_name("channel name", channel, err));
    if (before_code < 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "before_code: %lld is negative",
                            (long long)before_code);
    if (limit > LP_DB_LIST_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "limit: %zu is more than %d", limit,
                            LP_DB_LIST_MAX);
    if (limit == 0)
        limit = LP_DB_LIST_MAX;
    return db->ops->release_list(db, app_id, channel, before_code, limit, out, err);
}

lp_status lp_db_release_max_code(lp_db *db, int64_t app_id, int64_t *code, lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(code);
    *code = 0;
    TRY(lp_db_check_positive("app id", app_id, err));
    return db->ops->release_max_code(db, app_id, code, err);
}

lp_status lp_db_release_set_state(lp_db *db, int64_t id, const char *state, lp_error *err)
{
    NEED_DB(db);
    TRY(lp_db_check_positive("release id", id, err));
    TRY(lp_db_check_state("state", state, err));
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->release_set_state(db, id, state, err);
    return lp_db_write_end(db, own, st, err);
}

/* ---- tokens ----------------------------------------------------------- */

lp_status lp_db_token_insert(lp_db *db, const lp_db_token_new *tok, lp_error *err)
{
    NEED_DB(db);
    if (!tok)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "token: missing");
    TRY(lp_db_check_id("token id", tok->id, err));
    TRY(lp_db_check_token_name("token name", tok->name, err));
    if (!tok->salt || tok->salt_len < LP_DB_SALT_MIN || tok->salt_len > LP_DB_SALT_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "token salt: %zu bytes, expected %d to %d",
                            tok->salt ? tok->salt_len : 0, LP_DB_SALT_MIN, LP_DB_SALT_MAX);
    if (!tok->hash || tok->hash_len < LP_DB_HASH_MIN || tok->hash_len > LP_DB_HASH_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "token hash: %zu bytes, expected %d to %d",
                            tok->hash ? tok->hash_len : 0, LP_DB_HASH_MIN, LP_DB_HASH_MAX);
    char scopes[LP_DB_SCOPES_MAX + 1];
    TRY(lp_db_scopes_canonical(tok->scopes, scopes, sizeof scopes, err));
    TRY(lp_db_check_time("created_at", tok->created_at, err));
    lp_db_token_new t = *tok;
    t.scopes = scopes;
    t.created_at = now_or(t.created_at);
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->token_insert(db, &t, err);
    return lp_db_write_end(db, own, st, err);
}

lp_status lp_db_token_find_by_id(lp_db *db, const char *id, lp_db_token *out, lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_id("token id", id, err));
    return db->ops->token_get(db, id, out, err);
}

lp_status lp_db_token_list_all(lp_db *db, lp_db_token_list *out, lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(out);
    memset(out, 0, sizeof *out);
    return db->ops->token_list(db, out, err);
}

lp_status lp_db_token_revoke(lp_db *db, const char *id, int64_t when, lp_error *err)
{
    NEED_DB(db);
    TRY(lp_db_check_id("token id", id, err));
    TRY(lp_db_check_time("revoked_at", when, err));
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->token_revoke(db, id, now_or(when), err);
    return lp_db_write_end(db, own, st, err);
}

lp_status lp_db_token_touch(lp_db *db, const char *id, int64_t when, lp_error *err)
{
    NEED_DB(db);
    TRY(lp_db_check_id("token id", id, err));
    TRY(lp_db_check_time("last_used_at", when, err));
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->token_touch(db, id, now_or(when), err);
    return lp_db_write_end(db, own, st, err);
}

/* ---- uploads ---------------------------------------------------------- */

lp_status lp_db_upload_create(lp_db *db, const lp_db_upload_new *up, lp_error *err)
{
    NEED_DB(db);
    if (!up)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "upload: missing");
    TRY(lp_db_check_id("upload id", up->id, err));
    TRY(lp_db_check_positive("app id", up->app_id, err));
    if (up->token_id)
        TRY(lp_db_check_id("upload token_id", up->token_id, err));
    TRY(lp_db_check_path("upload path", up->path, err));
    TRY(lp_db_check_size("upload expected_size", up->expected_size, err));
    if (up->expected_sha256)
        TRY(lp_db_check_sha256("upload expected_sha256", up->expected_sha256, err));
    TRY(lp_db_check_time("created_at", up->created_at, err));
    lp_db_upload_new u = *up;
    u.created_at = now_or(u.created_at);
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->upload_create(db, &u, err);
    return lp_db_write_end(db, own, st, err);
}

lp_status lp_db_upload_get(lp_db *db, const char *id, lp_db_upload *out, lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_id("upload id", id, err));
    return db->ops->upload_get(db, id, out, err);
}

lp_status lp_db_upload_set_received(lp_db *db, const char *id, uint64_t received, int64_t when,
                                    lp_error *err)
{
    NEED_DB(db);
    TRY(lp_db_check_id("upload id", id, err));
    TRY(lp_db_check_size("upload received", received, err));
    TRY(lp_db_check_time("updated_at", when, err));
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->upload_set_received(db, id, received, now_or(when), err);
    return lp_db_write_end(db, own, st, err);
}

lp_status lp_db_upload_delete(lp_db *db, const char *id, lp_error *err)
{
    NEED_DB(db);
    TRY(lp_db_check_id("upload id", id, err));
    bool own;
    TRY(lp_db_write_begin(db, &own, err));
    lp_status st = db->ops->upload_delete(db, id, err);
    return lp_db_write_end(db, own, st, err);
}

lp_status lp_db_upload_list_stale(lp_db *db, int64_t updated_before, lp_db_upload_list *out,
                                  lp_error *err)
{
    NEED_DB(db);
    NEED_OUT(out);
    memset(out, 0, sizeof *out);
    TRY(lp_db_check_time("updated_before", updated_before, err));
    return db->ops->upload_list_stale(db, updated_before, out, err);
}

/* ---- freeing results -------------------------------------------------- */

void lp_db_app_free(lp_db_app *app)
{
    if (!app)
        return;
    free(app->name);
    memset(app, 0, sizeof *app);
}

void lp_db_app_list_free(lp_db_app_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        lp_db_app_free(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

void lp_db_channel_list_free(lp_db_channel_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i].name);
    free(list->items);
    memset(list, 0, sizeof *list);
}

void lp_db_release_free(lp_db_release *rel)
{
    if (!rel)
        return;
    free(rel->version);
    for (size_t i = 0; i < rel->n_channels; i++)
        free(rel->channels[i]);
    free(rel->channels);
    free(rel->runtime_version);
    free(rel->platform);
    free(rel->arch);
    free(rel->notes);
    free(rel->created_by);
    free(rel->state);
    free(rel->targeting);
    memset(rel, 0, sizeof *rel);
}

void lp_db_release_list_free(lp_db_release_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        lp_db_release_free(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

void lp_db_token_free(lp_db_token *tok)
{
    if (!tok)
        return;
    free(tok->id);
    free(tok->name);
    free(tok->scopes);
    memset(tok, 0, sizeof *tok);
}

void lp_db_token_list_free(lp_db_token_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        lp_db_token_free(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

void lp_db_upload_free(lp_db_upload *up)
{
    if (!up)
        return;
    free(up->id);
    free(up->token_id);
    free(up->path);
    free(up->expected_sha256);
    memset(up, 0, sizeof *up);
}

void lp_db_upload_list_free(lp_db_upload_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        lp_db_upload_free(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}
