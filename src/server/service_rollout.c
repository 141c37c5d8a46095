/*
 * service_rollout.c — the rollout role: the server's online key that
 * publishes each channel's rollout policy, and the repository side of every
 * rollout change (docs/rollouts.md).
 *
 * Trust.  The app's targets role (the release keys) delegates the paths
 * "rollout/" + star to one key the server holds, <keys>/<app>/rollout.pem.
 * Under that delegation the server lists one target per channel that has a
 * policy, "rollout/<channel>.json", whose custom part (and content) is the
 * policy: per release, the share of devices in basis points, the state
 * (active, paused, halted) and an A/B weight; the channel's cohort salt and
 * its maintenance window.  Devices apply it only to narrow what the release
 * keys signed (src/agent/rollout.c), so the online key can pause, halt or
 * narrow a rollout and nothing more.
 *
 * Who adds the delegation.  For an app whose keys the server holds, the
 * server does, at creation or at the next sync of an older app.  For an
 * app whose publisher signs, the delegation is an edit of the targets role
 * like a release: it is made in the targets role prepared for the next
 * release, so the publisher's signature over that role is what authorises
 * the rollout key.  Until then the app's rollouts are recorded but not
 * enforced (lp_service_rollout_enforced says so).
 *
 * The database is the source of truth, as for releases: a change is made
 * in one transaction (rollout row, audit entry) during which the rollout
 * role, the snapshot and the timestamp are re-signed with the online keys
 * only; a failure before the commit re-syncs the repository from the
 * database, and every start brings the role in line again.
 *
 * Cohort salt.  Each channel's salt is derived from the app and channel
 * names (SHA-256("livepush-rollout:" app ":" channel), first 16 bytes in
 * hex): stable for the life of the channel, different across channels, and
 * recomputable by anyone who wants to know which devices a rollout reaches.
 */
#include "server/service_priv.h"

#include "core/file.h"
#include "livepush/hash.h"
#include "livepush/tuf_sign.h"
#include "tuf/json.h"
#include "tuf/repo_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROLLOUT_ROLE "rollout"
#define POLICY_PREFIX "rollout/"

static lp_status oom(lp_error *err) { return lp_error_set(err, LP_ERR_NOMEM, "out of memory"); }

/* ---- the key and the delegation ---------------------------------------- */

lp_status lp_service_rollout_key(lp_service *s, const char *app, bool create, lp_key **out,
                                 lp_error *err)
{
    *out = NULL;
    char path[4400];
    snprintf(path, sizeof path, "%s/%s/" ROLLOUT_ROLE ".pem", s->keys_dir, app);
    if (lp_file_exists(path))
        return lp_key_load_private_file(out, path, err);
    if (!create)
        return LP_OK;
    lp_status st = lp_key_generate(out, LP_KEY_ED25519, err);
    if (!st)
        st = lp_key_save_private_file(*out, path, err);
    if (st) {
        lp_key_free(*out);
        *out = NULL;
        return lp_error_prefix(err, st, "app %s: rollout key", app);
    }
    return LP_OK;
}

/* The "rollout" role of a repository description, or NULL. */
static json_t *rollout_role(json_t *desc)
{
    json_t *role;
    size_t i;
    json_array_foreach(json_object_get(desc, "roles"), i, role)
        if (strcmp(json_string_value(json_object_get(role, "name")), ROLLOUT_ROLE) == 0)
            return role;
    return NULL;
}

bool lp_service_rollout_enforced(lp_tuf_repo *r)
{
    json_t *desc = NULL;
    if (lp_tuf_repo_describe(r, &desc, NULL))
        return false;
    json_t *role = rollout_role(desc);
    bool ok = role && lp_tuf_repo_version(r, ROLLOUT_ROLE) > 0;
    json_decref(desc);
    return ok;
}

lp_status lp_service_rollout_delegate(lp_service *s, const char *app, lp_tuf_repo *r,
                                      bool *changed, lp_error *err)
{
    lp_key *key = NULL;
    json_t *desc = NULL;
    char keyid[65];
    lp_status st = lp_service_rollout_key(s, app, true, &key, err);
    if (!st)
        st = lp_tuf_key_id(key, keyid, err);
    if (!st)
        st = lp_tuf_repo_describe(r, &desc, err);
    json_t *role = st ? NULL : rollout_role(desc);
    if (!st && role) {
        /* Delegated already: make sure it is to this key, and only it. */
        json_t *ids = json_object_get(role, "keyids"), *id;
        size_t i;
        bool have = false;
        json_array_foreach(ids, i, id) have |= strcmp(json_string_value(id), keyid) == 0;
        for (i = 0; !st && i < json_array_size(ids); i++) {
            const char *other = json_string_value(json_array_get(ids, i));
            if (strcmp(other, keyid) != 0) {
                st = lp_tuf_repo_remove_key(r, ROLLOUT_ROLE, other, err);
                *changed = true;
            }
        }
        if (!st && !have) {
            st = lp_tuf_repo_add_key(r, ROLLOUT_ROLE, key, err);
            *changed = true;
        }
    } else if (!st) {
        const char *paths[] = {POLICY_PREFIX "*"};
        st = lp_tuf_repo_delegate(r, "targets", ROLLOUT_ROLE, paths, 1, true, 1, err);
        if (!st)
            st = lp_tuf_repo_add_key(r, ROLLOUT_ROLE, key, err);
        *changed = true;
    }
    json_decref(desc);
    lp_key_free(key);
    return st ? lp_error_prefix(err, st, "app %s: delegating the rollout role", app) : LP_OK;
}

/* ---- the policies ---------------------------------------------------------- */

void lp_service_channel_salt(const char *app, const char *channel, char out[33])
{
    char text[256];
    snprintf(text, sizeof text, "livepush-rollout:%s:%s", app, channel);
    uint8_t d[LP_HASH_MAX_LEN];
    if (lp_hash_buf(LP_HASH_SHA256, text, strlen(text), d, NULL) != LP_OK)
        memset(d, 0, sizeof d);
    lp_hex_encode(d, 16, out);
}

static bool is_default(const lp_db_rollout *r)
{
    return r->percent_bp == LP_DB_BP_MAX && !strcmp(r->state, LP_DB_ROLLOUT_ACTIVE) &&
           r->weight == 0;
}

/* The policy object of one channel (new reference), or NULL with *none
 * when the channel needs no policy. */
static lp_status channel_policy(lp_db *db, const lp_db_app *app, const char *channel,
                                const lp_db_rollout_list *rows, json_t **out, lp_error *err)
{
    *out = NULL;
    int ws = -1, we = -1;
    lp_status st = lp_db_channel_window_get(db, app->id, channel, &ws, &we, err);
    if (st)
        return st;
    json_t *entries = json_array();
    if (!entries)
        return oom(err);
    for (size_t i = 0; i < rows->count; i++) {
        const lp_db_rollout *r = &rows->items[i];
        if (strcmp(r->channel, channel) != 0 || is_default(r))
            continue;
        json_t *e = json_pack("{s:I,s:i,s:s}", "version_code", (json_int_t)r->version_code,
                              "percent_bp", r->percent_bp, "state", r->state);
        if (e && r->weight > 0)
            json_object_set_new(e, "weight", json_integer(r->weight));
        if (!e || json_array_append_new(entries, e) != 0) {
            json_decref(entries);
            return oom(err);
        }
    }
    if (json_array_size(entries) == 0 && ws < 0) {
        json_decref(entries);
        return LP_OK;
    }
    char salt[33];
    lp_service_channel_salt(app->name, channel, salt);
    json_t *p = json_pack("{s:s,s:s,s:o}", "channel", channel, "salt", salt, "releases", entries);
    if (p && ws >= 0)
        json_object_set_new(p, "window", json_pack("{s:i,s:i}", "start", ws, "end", we));
    if (!p)
        return oom(err);
    *out = p;
    return LP_OK;
}

lp_status lp_service_rollout_reconcile(lp_service *s, lp_db *db, const lp_db_app *app,
                                       lp_tuf_repo *r, bool *changed, lp_error *err)
{
    (void)s;
    json_t *desc = NULL, *wanted = json_object();
    lp_db_rollout_list rows = {0};
    lp_db_channel_list chans = {0};
    lp_status st = wanted ? lp_tuf_repo_describe(r, &desc, err) : oom(err);
    json_t *role = st ? NULL : rollout_role(desc);
    if (!role)
        goto done;
    json_t *have = json_object_get(role, "targets");
    if (!st)
        st = lp_db_rollout_list_app(db, app->id, NULL, &rows, err);
    if (!st)
        st = lp_db_channel_list_all(db, app->id, &chans, err);
    for (size_t i = 0; !st && i < chans.count; i++) {
        json_t *policy = NULL;
        char *text = NULL, *old_text = NULL;
        size_t len = 0, old_len = 0;
        st = channel_policy(db, app, chans.items[i].name, &rows, &policy, err);
        if (st || !policy)
            continue;
        char name[128];
        snprintf(name, sizeof name, POLICY_PREFIX "%s.json", chans.items[i].name);
        json_object_set_new(wanted, name, json_true());
        st = lp_cjson_dumps(policy, &text, &len, err);
        json_t *old = json_object_get(json_object_get(have, name), "custom");
        if (!st && old)
            st = lp_cjson_dumps(old, &old_text, &old_len, err);
        if (!st && (!old_text || strcmp(old_text, text) != 0)) {
            st = lp_tuf_repo_add_target(r, ROLLOUT_ROLE, name, text, len, text,
                                        LP_TUF_HASH_SHA256, err);
            *changed = true;
        }
        free(text);
        free(old_text);
        json_decref(policy);
    }
    const char *name;
    json_t *v;
    json_object_foreach(have, name, v) {
        if (st)
            break;
        if (json_object_get(wanted, name))
            continue;
        st = lp_tuf_repo_remove_target(r, ROLLOUT_ROLE, name, err);
        *changed = true;
    }
done:
    lp_db_rollout_list_free(&rows);
    lp_db_channel_list_free(&chans);
    json_decref(wanted);
    json_decref(desc);
    return st ? lp_error_prefix(err, st, "app %s: rollout policies", app->name) : LP_OK;
}

/* ---- publishing with the online keys ------------------------------------- */

lp_status lp_service_repo_publish(lp_service *s, const char *app, lp_tuf_repo *r,
                                  lp_key *const *keys, size_t n, lp_error *err)
{
    lp_key *rk = NULL;
    const lp_key **all = calloc(n + 1, sizeof *all);
    if (!all)
        return oom(err);
    lp_status st = lp_service_rollout_key(s, app, false, &rk, err);
    for (size_t i = 0; i < n; i++)
        all[i] = keys[i];
    if (rk)
        all[n] = rk;
    if (!st)
        st = lp_tuf_repo_publish(r, all, n + (rk != NULL), err);
    free(all);
    lp_key_free(rk);
    return st;
}

lp_status lp_service_rollout_sync(lp_service *s, lp_db *db, const lp_db_app *app, bool *enforced,
                                  lp_service_txn *tx, lp_error *err)
{
    bool dummy;
    if (!enforced)
        enforced = &dummy;
    *enforced = false;
    lp_tuf_repo *r = NULL;
    lp_key *keys[2] = {0};
    static const char *const online[2] = {"snapshot", "timestamp"};
    bool changed = false;
    lp_status st = lp_service_repo_for(s, app->name, tx, &r, err);
    if (!st && !lp_service_rollout_enforced(r))
        goto done;
    *enforced = true;
    if (!st)
        st = lp_service_rollout_reconcile(s, db, app, r, &changed, err);
    for (int i = 0; !st && changed && i < 2; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s/%s.pem", s->keys_dir, app->name, online[i]);
        st = lp_key_load_private_file(&keys[i], path, err);
    }
    if (!st && changed)
        st = lp_service_repo_publish(s, app->name, r, keys, 2, err);
done:
    lp_key_free(keys[0]);
    lp_key_free(keys[1]);
    lp_service_repo_done(tx, r);
    return st ? lp_error_prefix(err, st, "app %s: repository", app->name) : LP_OK;
}
