/*
 * service_sync.c — making an app's TUF repository list exactly the app's
 * published releases, and recovery at start.
 *
 * The database says which releases are published; the repository must
 * list, in its top-level targets role, one target per published release:
 * "releases/<version_code>.json", whose content is the release's tree
 * manifest (a blob) and whose custom field carries the release fields.
 * lp_service_sync_app compares the two and edits the repository only where
 * they differ (a missing or different target is added, a target the
 * database does not publish is removed), then publishes once with the
 * app's keys.  When they agree nothing is written, so running it at every
 * start is free.
 *
 * Targets outside "releases/" are left alone: they are not the service's.
 *
 * Apps whose publisher signs the targets role (service_signed.c) cannot be
 * brought in line here: the server has no key for that.  Their recovery is
 * lp_service_signed_recover_app, and lp_service_sync_app only checks them.
 */
#include "server/service_priv.h"

#include "core/file.h"
#include "livepush/tuf_repo.h"
#include "tuf/json.h"
#include "tuf/repo_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RELEASE_PREFIX "releases/"

void lp_service_target_name(int64_t version_code, char out[48])
{
    snprintf(out, 48, RELEASE_PREFIX "%lld.json", (long long)version_code);
}

/* The custom field of a release's target: the release fields, nulls left
 * out, and the targeting rules as stored (canonical JSON, read back
 * strictly: rules that cannot be read fail the target rather than being
 * left out, which would widen who installs).  This is the only place the
 * custom field is made, for apps the server signs and for those whose
 * publisher signs (service_signed.c prepares through lp_service_reconcile).
 * *out is a new reference. */
static lp_status release_custom(const lp_db_release *rel, const lp_db_release *restored,
                                json_t **out, lp_error *err)
{
    *out = NULL;
    json_t *targeting = NULL;
    if (rel->targeting) {
        lp_status st = lp_json_parse(rel->targeting, strlen(rel->targeting), NULL, &targeting,
                                     err);
        if (st)
            return lp_error_prefix(err, st, "stored targeting");
    }
    json_t *chans = json_array();
    for (size_t i = 0; chans && i < rel->n_channels; i++)
        json_array_append_new(chans, json_string(rel->channels[i]));
    json_t *c = json_pack("{s:s,s:I,s:o,s:b}", "version", rel->version, "version_code",
                          (json_int_t)rel->version_code, "channels", chans, "mandatory",
                          rel->mandatory);
    if (!c) {
        json_decref(targeting);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    if (targeting)
        json_object_set_new(c, "targeting", targeting);
    if (rel->runtime_version)
        json_object_set_new(c, "runtime_version", json_string(rel->runtime_version));
    if (rel->platform)
        json_object_set_new(c, "platform", json_string(rel->platform));
    if (rel->arch)
        json_object_set_new(c, "arch", json_string(rel->arch));
    if (rel->notes)
        json_object_set_new(c, "notes", json_string(rel->notes));
    if (restored)
        json_object_set_new(c, "rollback_of", json_integer(restored->version_code));
    *out = c;
    return LP_OK;
}

/* Adds the target of `rel` to the repository from its manifest blob. */
static lp_status add_release_target(lp_service *s, lp_db *db, lp_tuf_repo *r,
                                    const lp_db_release *rel, lp_error *err)
{
    lp_db_release restored = {0};
    lp_status st = LP_OK;
    if (rel->rollback_of && (st = lp_db_release_get(db, rel->rollback_of, &restored, err)))
        return st;
    char *path = NULL, *custom_text = NULL;
    json_t *custom = NULL;
    st = release_custom(rel, rel->rollback_of ? &restored : NULL, &custom, err);
    if (!st && !(custom_text = json_dumps(custom, JSON_COMPACT | JSON_SORT_KEYS)))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (!st)
        st = lp_blobstore_path_of(s->bs, rel->manifest_sha256, &path, err);
    char name[48];
    lp_service_target_name(rel->version_code, name);
    if (!st)
        st = lp_tuf_repo_add_target_file(r, "targets", name, path, custom_text,
                                         LP_TUF_HASH_SHA256, err);
    if (st)
        lp_error_prefix(err, st, "release %s (code %lld)", rel->version,
                        (long long)rel->version_code);
    json_decref(custom);
    free(custom_text);
    free(path);
    lp_db_release_free(&restored);
    return st;
}

/* The sha256 the repository lists for target `name`, or NULL. */
static const char *listed_sha256(json_t *targets, const char *name)
{
    json_t *e = json_object_get(targets, name);
    return json_string_value(json_object_get(json_object_get(e, "hashes"), "sha256"));
}

lp_status lp_service_reconcile(lp_service *s, lp_db *db, const lp_db_app *app, lp_tuf_repo *r,
                               int64_t also_id, bool *changed, lp_error *err)
{
    json_t *desc = NULL;
    lp_status st = lp_tuf_repo_describe(r, &desc, err);
    if (st)
        return st;
    json_t *targets = NULL, *role;
    size_t i;
    json_array_foreach(json_object_get(desc, "roles"), i, role)
        if (strcmp(json_string_value(json_object_get(role, "name")), "targets") == 0)
            targets = json_object_get(role, "targets");
    json_t *wanted = json_object();
    if (!wanted)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");

    int64_t before = 0;
    while (!st) {
        lp_db_release_list list = {0};
        st = lp_db_release_list_by_app(db, app->id, NULL, before, 0, &list, err);
        for (size_t k = 0; !st && k < list.count; k++) {
            const lp_db_release *rel = &list.items[k];
            before = rel->version_code;
            if (strcmp(rel->state, LP_DB_STATE_PUBLISHED) != 0 && rel->id != also_id)
                continue;
            char name[48];
            lp_service_target_name(rel->version_code, name);
            json_object_set_new(wanted, name, json_true());
            const char *have = listed_sha256(targets, name);
            if (have && strcmp(have, rel->manifest_sha256) == 0)
                continue;
            st = add_release_target(s, db, r, rel, err);
            *changed = true;
        }
        size_t n = list.count;
        lp_db_release_list_free(&list);
        if (n < LP_DB_LIST_MAX)
            break;
    }
    const char *name;
    json_t *v;
    json_object_foreach(targets, name, v) {
        if (st)
            break;
        if (strncmp(name, RELEASE_PREFIX, strlen(RELEASE_PREFIX)) != 0 ||
            json_object_get(wanted, name))
            continue;
        st = lp_tuf_repo_remove_target(r, "targets", name, err);
        *changed = true;
    }
    json_decref(wanted);
    json_decref(desc);
    return st;
}

lp_status lp_service_repo_for(lp_service *s, const char *app, lp_service_txn *tx,
                              lp_tuf_repo **r, lp_error *err)
{
    *r = NULL;
    if (tx && tx->repo) {
        *r = tx->repo;
        return LP_OK;
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", s->repos_dir, app);
    lp_status st = lp_tuf_repo_open(r, dir, err);
    if (!st && tx) {
        lp_tuf_repo_hold_timestamp(*r, true);
        tx->repo = *r;
    }
    return st;
}

void lp_service_repo_done(lp_service_txn *tx, lp_tuf_repo *r)
{
    if (!tx || tx->repo != r)
        lp_tuf_repo_free(r);
}

lp_status lp_service_txn_finish(lp_service *s, const char *app, lp_service_txn *tx,
                                lp_error *err)
{
    if (!tx->repo)
        return LP_OK;
    lp_status st = lp_tuf_repo_write_timestamp(tx->repo, err);
    if (!st)
        return LP_OK;
    lp_error_prefix(err, st,
                    "app %s: the change is stored, but devices do not see it until the app's "
                    "repository is next brought in line (next change or server start)",
                    app);
    if (s->log)
        lp_log_event(s->log, LP_LOG_ERROR, "database ahead of the repository",
                     json_pack("{s:s,s:s}", "app", app, "error", err->msg));
    return st;
}

void lp_service_txn_free(lp_service_txn *tx)
{
    lp_tuf_repo_free(tx->repo);
    tx->repo = NULL;
}

lp_status lp_service_sync_app(lp_service *s, lp_db *db, const lp_db_app *app, bool *changed,
                              lp_service_txn *tx, lp_error *err)
{
    bool dummy;
    if (!changed)
        changed = &dummy;
    *changed = false;
    lp_tuf_repo *r = NULL;
    lp_key *keys[LP_SERVICE_NROLES] = {0};
    bool signed_elsewhere = lp_service_app_publisher_signed(s, app->name);
    lp_status st = lp_service_repo_for(s, app->name, tx, &r, err);
    if (!st && !signed_elsewhere)
        st = lp_service_rollout_delegate(s, app->name, r, changed, err);
    if (!st)
        st = lp_service_reconcile(s, db, app, r, 0, changed, err);
    if (!st && !signed_elsewhere)
        st = lp_service_rollout_reconcile(s, db, app, r, changed, err);
    if (!st && *changed && signed_elsewhere)
        st = lp_error_set(err, LP_ERR_STATE,
                          "its targets are signed by the publisher, and the published releases "
                          "differ from what was signed");
    if (!st && *changed)
        st = lp_service_keys_load(s, app->name, keys, err);
    if (!st && *changed)
        st = lp_service_repo_publish(s, app->name, r, keys, LP_SERVICE_NROLES, err);
    if (st)
        lp_error_prefix(err, st, "app %s: repository", app->name);
    lp_service_keys_free(keys);
    lp_service_repo_done(tx, r);
    return st;
}

/* Brings one app's repository in line with the database (the app locked). */
static lp_status recover_app(lp_service *s, lp_db *db, const lp_db_app *app, bool *changed,
                             lp_error *err)
{
    lp_status st;
    if (lp_service_app_publisher_signed(s, app->name))
        st = lp_service_signed_recover_app(s, db, app, err);
    else
        st = lp_service_sync_app(s, db, app, changed, NULL, err);
    if (!st)
        st = lp_service_rollout_sync(s, db, app, NULL, NULL, err);
    return st;
}

void lp_service_repair_app(lp_service *s, const char *name)
{
    lp_error err;
    lp_error_clear(&err);
    lp_db *db = NULL;
    lp_db_app app = {0};
    bool changed = false;
    /* A connection of its own: the caller may hold the pool's last one. */
    lp_status st = lp_db_open(s->db_url, &db, &err);
    if (!st)
        st = lp_db_app_get_by_name(db, name, &app, &err);
    if (st == LP_ERR_NOT_FOUND)
        st = LP_OK; /* an app being created: nothing to repair yet */
    else if (!st)
        st = recover_app(s, db, &app, &changed, &err);
    lp_db_app_free(&app);
    lp_db_close(db);
    if (s->log && (st || changed))
        lp_log_event(s->log, st ? LP_LOG_ERROR : LP_LOG_WARN,
                     st ? "repair after a server died holding the app's lock failed"
                        : "repository brought in line with the database after a server died "
                          "holding the app's lock",
                     json_pack("{s:s,s:s?}", "app", name, "error", st ? err.msg : NULL));
}

lp_status lp_service_recover(lp_service *s, lp_error *err)
{
    lp_db *db = NULL;
    lp_db_app_list apps = {0};
    lp_status st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_app_list_all(db, &apps, err);
    for (size_t i = 0; !st && i < apps.count; i++) {
        int lock = -1;
        bool changed = false;
        st = lp_service_lock_app(s, apps.items[i].name, &lock, err);
        if (!st)
            st = recover_app(s, db, &apps.items[i], &changed, err);
        lp_service_unlock(lock);
        if (!st && changed && s->log)
            lp_log_event(s->log, LP_LOG_WARN, "recovery: repository brought in line with the "
                                              "database",
                         json_pack("{s:s}", "app", apps.items[i].name));
    }
    lp_db_app_list_free(&apps);
    lp_service_db_release(s, db);
    return st;
}
