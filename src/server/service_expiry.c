/*
 * service_expiry.c — keeping every app's TUF metadata from expiring.
 *
 * TUF metadata expires on purpose (a device that sees expired metadata
 * assumes a freeze attack and refuses it): timestamp after a day, snapshot
 * after a week, targets after 90 days, root after a year.  A repository
 * where nobody publishes would therefore go dark by itself, so the server
 * re-signs, with the keys it holds, every role that has used up half of its
 * lifetime:
 *
 *     server-signed app     timestamp, snapshot, targets, root
 *     publisher-signed app  timestamp, snapshot (the only keys it holds);
 *                           targets and root nearing expiry are logged as
 *                           warnings, since only the publisher can re-sign
 *
 * A re-sign is an ordinary publish (new version, expiry now + the role's
 * default lifetime), done under the app's lock so it never interleaves
 * with a release being published.  An app whose publisher has not signed a
 * first release yet has only a root and nothing to refresh.
 */
#include "server/service_priv.h"

#include "core/timeutil.h"
#include "livepush/tuf_repo.h"
#include "tuf/repo_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Loads those of the app's four keys that the server holds. */
static lp_status load_held_keys(lp_service *s, const char *app, lp_key *keys[LP_SERVICE_NROLES],
                                bool held[LP_SERVICE_NROLES], lp_error *err)
{
    for (size_t i = 0; i < LP_SERVICE_NROLES; i++) {
        keys[i] = NULL;
        held[i] = false;
    }
    for (size_t i = 0; i < LP_SERVICE_NROLES; i++) {
        char path[4400];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s/%s.pem", s->keys_dir, app, lp_service_roles[i]);
        if (stat(path, &sb) != 0) {
            if (errno == ENOENT)
                continue;
            lp_service_keys_free(keys);
            return lp_error_set(err, LP_ERR_IO, "stat %s: %s", path, strerror(errno));
        }
        lp_status st = lp_key_load_private_file(&keys[i], path, err);
        if (st) {
            lp_service_keys_free(keys);
            return lp_error_prefix(err, st, "app %s: %s key", app, lp_service_roles[i]);
        }
        held[i] = true;
    }
    return LP_OK;
}

/* Version and expiry of a top-level role from the repository description. */
static void role_state(json_t *desc, const char *role, uint64_t *version, int64_t *expires)
{
    json_t *r;
    size_t i;
    *version = 0;
    *expires = 0;
    json_array_foreach(json_object_get(desc, "roles"), i, r) {
        if (strcmp(json_string_value(json_object_get(r, "name")), role) != 0)
            continue;
        *version = (uint64_t)json_integer_value(json_object_get(r, "version"));
        const char *text = json_string_value(json_object_get(r, "expires"));
        if (!text || lp_time_parse(text, expires, NULL) != LP_OK)
            *expires = 0; /* unknown: treat as due, so it gets a valid expiry */
    }
}

static lp_status refresh_app(lp_service *s, const char *app, int64_t now, bool *did,
                             lp_error *err)
{
    *did = false;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", s->repos_dir, app);
    lp_tuf_repo *r = NULL;
    json_t *desc = NULL;
    lp_key *keys[LP_SERVICE_NROLES] = {0};
    bool held[LP_SERVICE_NROLES];
    lp_status st = load_held_keys(s, app, keys, held, err);
    if (!st)
        st = lp_tuf_repo_open(&r, dir, err);
    if (!st) {
        lp_tuf_repo_set_now(r, now);
        st = lp_tuf_repo_describe(r, &desc, err);
    }
    for (size_t i = 0; !st && i < LP_SERVICE_NROLES; i++) {
        const char *role = lp_service_roles[i];
        uint64_t version;
        int64_t expires;
        role_state(desc, role, &version, &expires);
        lp_md_type type = i == 0 ? LP_MD_ROOT
                          : i == 1 ? LP_MD_TARGETS
                          : i == 2 ? LP_MD_SNAPSHOT
                                   : LP_MD_TIMESTAMP;
        int64_t half = lp_repo_default_lifetime(type) / 2;
        if (version == 0 || expires - now >= half)
            continue;
        if (!held[i]) {
            if (s->log)
                lp_log_event(s->log, LP_LOG_WARN,
                             "metadata nears expiry and only the publisher can re-sign it",
                             json_pack("{s:s,s:s,s:I}", "app", app, "role", role,
                                       "seconds_left", (json_int_t)(expires - now)));
            continue;
        }
        st = lp_tuf_repo_touch(r, role, err);
        *did = true;
    }
    if (!st) {
        /* The rollout role (delegated, signed by the server's online key). */
        uint64_t version;
        int64_t expires;
        role_state(desc, "rollout", &version, &expires);
        lp_key *rk = NULL;
        if (version && expires - now < lp_repo_default_lifetime(LP_MD_TARGETS) / 2 &&
            !(st = lp_service_rollout_key(s, app, false, &rk, err)) && rk) {
            st = lp_tuf_repo_touch(r, "rollout", err);
            *did = true;
        }
        lp_key_free(rk);
    }
    if (!st && *did)
        st = lp_service_repo_publish(s, app, r, keys, LP_SERVICE_NROLES, err);
    if (st)
        lp_error_prefix(err, st, "app %s: re-signing metadata", app);
    json_decref(desc);
    lp_tuf_repo_free(r);
    lp_service_keys_free(keys);
    return st;
}

lp_status lp_service_refresh_expiring(lp_service *s, int64_t now, size_t *refreshed,
                                      lp_error *err)
{
    if (refreshed)
        *refreshed = 0;
    if (now == 0)
        now = (int64_t)time(NULL);
    lp_db *db = NULL;
    lp_db_app_list apps = {0};
    lp_status st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_app_list_all(db, &apps, err);
    lp_service_db_release(s, db);
    lp_status first = LP_OK;
    for (size_t i = 0; !st && i < apps.count; i++) {
        int lock = -1;
        bool did = false;
        lp_error e;
        lp_error_clear(&e);
        lp_status ast = lp_service_lock_app(s, apps.items[i].name, &lock, &e);
        if (!ast)
            ast = refresh_app(s, apps.items[i].name, now, &did, &e);
        lp_service_unlock(lock);
        if (ast) {
            /* One app's trouble must not stop the others' refresh. */
            if (s->log)
                lp_log_event(s->log, LP_LOG_ERROR, "metadata re-signing failed",
                             json_pack("{s:s,s:s}", "app", apps.items[i].name, "error", e.msg));
            if (!first) {
                first = ast;
                if (err)
                    *err = e;
            }
            continue;
        }
        if (did && refreshed)
            (*refreshed)++;
        if (did && s->log)
            lp_log_event(s->log, LP_LOG_INFO, "metadata re-signed before expiry",
                         json_pack("{s:s}", "app", apps.items[i].name));
    }
    lp_db_app_list_free(&apps);
    return st ? st : first;
}
