/*
 * service_app.c — creating apps whose keys the server holds.
 *
 * An app is three things: its keys (<keys>/<app>/<role>.pem, 0600), its
 * TUF repository (<repos>/<app>/) and its database row.  They are made in
 * that order under the app's lock, and the row comes last: until it exists
 * the app does not exist, and a new attempt after a crash first moves the
 * leftovers of the failed one out of the way (<data>/trash/).
 */
#include "server/service_priv.h"

#include "core/file.h"
#include "livepush/tuf_repo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

lp_status lp_service_keys_load(lp_service *s, const char *app, lp_key *keys[LP_SERVICE_NROLES],
                               lp_error *err)
{
    for (size_t i = 0; i < LP_SERVICE_NROLES; i++)
        keys[i] = NULL;
    for (size_t i = 0; i < LP_SERVICE_NROLES; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s/%s.pem", s->keys_dir, app, lp_service_roles[i]);
        lp_status st = lp_key_load_private_file(&keys[i], path, err);
        if (st) {
            lp_service_keys_free(keys);
            return lp_error_prefix(err, st, "app %s: %s key", app, lp_service_roles[i]);
        }
    }
    return LP_OK;
}

void lp_service_keys_free(lp_key *keys[LP_SERVICE_NROLES])
{
    for (size_t i = 0; i < LP_SERVICE_NROLES; i++) {
        lp_key_free(keys[i]);
        keys[i] = NULL;
    }
}

lp_status lp_service_trash(lp_service *s, const char *path, const char *name, lp_error *err)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? LP_OK
                               : lp_error_set(err, LP_ERR_IO, "stat %s: %s", path,
                                              strerror(errno));
    char trash[4200], dest[4400];
    snprintf(trash, sizeof trash, "%s/trash", s->data_dir);
    lp_status st = lp_file_mkdirs(trash, 0700, err);
    if (st)
        return st;
    /* A name already in the trash (a repository and a key folder moved in
     * the same second) gets the next number. */
    for (int n = 0;; n++) {
        snprintf(dest, sizeof dest, "%s/%s-%lld-%ld-%d", trash, name, (long long)time(NULL),
                 (long)getpid(), n);
        if (rename(path, dest) == 0)
            break;
        if ((errno != EEXIST && errno != ENOTEMPTY) || n >= 1000)
            return lp_error_set(err, LP_ERR_IO, "move %s to %s: %s", path, dest,
                                strerror(errno));
    }
    return lp_file_sync_parent(path, err);
}

static lp_status make_keys(lp_service *s, const char *app, lp_key *keys[LP_SERVICE_NROLES],
                           lp_error *err)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", s->keys_dir, app);
    lp_status st = lp_file_mkdirs(dir, 0700, err);
    for (size_t i = 0; !st && i < LP_SERVICE_NROLES; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s.pem", dir, lp_service_roles[i]);
        st = lp_key_generate(&keys[i], LP_KEY_ED25519, err);
        if (!st)
            st = lp_key_save_private_file(keys[i], path, err);
    }
    return st;
}

static lp_status make_repo(lp_service *s, const char *app, lp_key *keys[LP_SERVICE_NROLES],
                           lp_error *err)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", s->repos_dir, app);
    lp_tuf_repo *r = NULL;
    bool changed = false;
    lp_status st = lp_tuf_repo_create(&r, dir, err);
    for (size_t i = 0; !st && i < LP_SERVICE_NROLES; i++)
        st = lp_tuf_repo_add_key(r, lp_service_roles[i], keys[i], err);
    if (!st)
        st = lp_tuf_repo_touch(r, "targets", err);
    if (!st)
        st = lp_service_rollout_delegate(s, app, r, &changed, err);
    if (!st)
        st = lp_service_repo_publish(s, app, r, keys, LP_SERVICE_NROLES, err);
    lp_tuf_repo_free(r);
    return st;
}

lp_status lp_service_check_app_name(const char *name, lp_error *err)
{
    if (!name || !*name || strlen(name) > LP_DB_NAME_MAX ||
        !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "app name '%s': 1..%d characters of a-z 0-9 . _ -, the first a "
                            "letter or digit",
                            name ? name : "", LP_DB_NAME_MAX);
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '.' ||
              *c == '_' || *c == '-'))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "app name '%s': character '%c' not allowed (a-z 0-9 . _ -)",
                                name, *c);
    return LP_OK;
}

lp_status lp_service_app_create(lp_service *s, const char *name, lp_error *err)
{
    lp_status st = lp_service_check_app_name(name, err);
    if (st)
        return st;
    int lock = -1;
    lp_db *db = NULL;
    lp_key *keys[LP_SERVICE_NROLES] = {0};
    lp_db_app existing = {0};
    st = lp_service_lock_app(s, name, &lock, err);
    if (!st)
        st = lp_service_db_acquire(s, &db, err);
    if (!st) {
        st = lp_db_app_get_by_name(db, name, &existing, err);
        if (st == LP_OK)
            st = lp_error_set(err, LP_ERR_EXISTS, "app '%s' exists already", name);
        else if (st == LP_ERR_NOT_FOUND)
            st = LP_OK;
    }
    char path[4200];
    if (!st) {
        snprintf(path, sizeof path, "%s/%s", s->repos_dir, name);
        st = lp_service_trash(s, path, name, err);
    }
    if (!st) {
        snprintf(path, sizeof path, "%s/%s", s->keys_dir, name);
        st = lp_service_trash(s, path, name, err);
    }
    if (!st)
        st = make_keys(s, name, keys, err);
    if (!st)
        st = make_repo(s, name, keys, err);
    if (!st)
        st = lp_db_app_create(db, name, 0, NULL, err);
    if (st && st != LP_ERR_EXISTS)
        lp_error_prefix(err, st, "create app %s", name);
    lp_service_keys_free(keys);
    lp_db_app_free(&existing);
    lp_service_db_release(s, db);
    lp_service_unlock(lock);
    return st;
}
