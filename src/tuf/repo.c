/*
 * repo.c — the TUF repository writer: its model and every edit (see
 * livepush/tuf_repo.h; the model is described in repo_priv.h).
 *
 * Edits only change memory and mark roles changed; nothing reaches the
 * repository's metadata until lp_tuf_repo_publish (repo_publish.c).  The
 * marking rules are what makes a publish complete:
 *   - editing a role's keys or threshold changes the metadata that lists
 *     them (root for top-level roles, the delegator for delegated roles) and
 *     the role itself, whose old signatures may no longer meet the new
 *     requirement, so it is re-signed under a new version;
 *   - editing a role's expiry or contents changes that role only;
 *   - snapshot and timestamp follow at publish time (snapshot whenever a
 *     targets role changed, timestamp always).
 * Names are checked (repo_names.c) before they enter the model, so every
 * file name later built from them is safe.
 */
#include "tuf/repo_priv.h"

#include "core/file.h"
#include "core/timeutil.h"
#include "tuf/json.h"
#include "tuf/tufkey.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static lp_status oom(lp_error *err)
{
    return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
}

int64_t lp_repo_now(const lp_tuf_repo *r)
{
    return r->now ? r->now : lp_time_now();
}

int64_t lp_repo_default_lifetime(lp_md_type t)
{
    switch (t) {
    case LP_MD_ROOT: return 365LL * 86400;
    case LP_MD_TIMESTAMP: return 86400;
    case LP_MD_SNAPSHOT: return 7LL * 86400;
    case LP_MD_TARGETS: return 90LL * 86400;
    }
    return 86400;
}

static const char *const top_names[] = {"root", "timestamp", "snapshot", "targets"};

/* ---- roles ----------------------------------------------------------- */

int lp_repo_find(const lp_tuf_repo *r, const char *name)
{
    for (size_t i = 0; i < r->nroles; i++)
        if (!strcmp(r->roles[i].name, name))
            return (int)i;
    return -1;
}

int lp_repo_add_role(lp_tuf_repo *r, const char *name, lp_md_type type, int delegator)
{
    if (r->nroles == r->cap) {
        size_t nc = r->cap ? 2 * r->cap : 8;
        repo_role *nr = realloc(r->roles, nc * sizeof *nr);
        if (!nr)
            return -1;
        r->roles = nr;
        r->cap = nc;
    }
    repo_role *role = &r->roles[r->nroles];
    memset(role, 0, sizeof *role);
    role->name = strdup(name);
    role->type = type;
    role->delegator = delegator;
    role->threshold = 1;
    if (!role->name)
        return -1;
    if (type == LP_MD_TARGETS && !(role->targets = json_object())) {
        free(role->name);
        return -1;
    }
    return (int)r->nroles++;
}

json_t *lp_repo_scope(const lp_tuf_repo *r, int i)
{
    int d = r->roles[i].delegator;
    return d < 0 ? r->root_keys : r->roles[d].dkeys;
}

void lp_repo_mark_changed(lp_tuf_repo *r, int i)
{
    r->roles[i].changed = true;
}

/* A role's keys or threshold changed: the listing metadata and the role. */
static void keys_changed(lp_tuf_repo *r, int i)
{
    int d = r->roles[i].delegator;
    r->roles[d < 0 ? 0 : d].changed = true;
    r->roles[i].changed = true;
}

static void role_free(repo_role *role)
{
    free(role->name);
    lp_repo_strlist_free(role->keyids, role->nkeyids);
    lp_repo_strlist_free(role->paths, role->npaths);
    lp_repo_strlist_free(role->prefixes, role->nprefixes);
    json_decref(role->base);
    json_decref(role->targets);
    json_decref(role->dkeys);
    lp_repo_unprepare(role);
}

void lp_tuf_repo_free(lp_tuf_repo *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nroles; i++)
        role_free(&r->roles[i]);
    free(r->roles);
    json_decref(r->root_keys);
    json_decref(r->orphan_meta);
    lp_repo_strlist_free(r->prev_keyids, r->nprev);
    free(r->dir);
    free(r->metadir);
    free(r->targetsdir);
    free(r->held_ts);
    free(r);
}

/* Looks a role up by name with the header's error. */
static lp_status find_role(const lp_tuf_repo *r, const char *role, int *out, lp_error *err)
{
    if (!role)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "no role named");
    int i = lp_repo_find(r, role);
    if (i < 0)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "role \"%.80s\" does not exist", role);
    *out = i;
    return LP_OK;
}

/* ---- create ---------------------------------------------------------- */

lp_status lp_repo_alloc(lp_tuf_repo **out, const char *dir, lp_error *err)
{
    *out = NULL;
    if (!dir || !*dir)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "repository folder not given");
    lp_tuf_repo *r = calloc(1, sizeof *r);
    if (!r)
        return oom(err);
    r->dir = strdup(dir);
    r->metadir = lp_path_join(dir, "metadata");
    r->targetsdir = lp_path_join(dir, "targets");
    r->root_keys = json_object();
    r->orphan_meta = json_object();
    if (!r->dir || !r->metadir || !r->targetsdir || !r->root_keys || !r->orphan_meta) {
        lp_tuf_repo_free(r);
        return oom(err);
    }
    for (int t = 0; t < 4; t++) {
        if (lp_repo_add_role(r, top_names[t], (lp_md_type)t, -1) < 0) {
            lp_tuf_repo_free(r);
            return oom(err);
        }
    }
    *out = r;
    return LP_OK;
}

bool lp_repo_has_metadata(const char *metadir)
{
    DIR *d = opendir(metadir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        found = !strcmp(e->d_name, "timestamp.json") ||
                (n >= 9 && !strcmp(e->d_name + n - 9, "root.json"));
    }
    closedir(d);
    return found;
}

lp_status lp_tuf_repo_create(lp_tuf_repo **out, const char *dir, lp_error *err)
{
    lp_tuf_repo *r;
    lp_status st = lp_repo_alloc(&r, dir, err);
    if (st)
        return st;
    if (lp_repo_has_metadata(r->metadir)) {
        st = lp_error_set(err, LP_ERR_EXISTS, "%s already holds TUF metadata", r->metadir);
        lp_tuf_repo_free(r);
        return st;
    }
    if ((st = lp_file_mkdirs(r->metadir, 0755, err)) ||
        (st = lp_file_mkdirs(r->targetsdir, 0755, err))) {
        lp_tuf_repo_free(r);
        return lp_error_prefix(err, st, "creating repository %s", dir);
    }
    for (int t = 0; t < 4; t++)
        r->roles[t].changed = true;
    *out = r;
    return LP_OK;
}

void lp_tuf_repo_set_now(lp_tuf_repo *r, int64_t now)
{
    r->now = now;
}

uint64_t lp_tuf_repo_version(const lp_tuf_repo *r, const char *role)
{
    int i = role ? lp_repo_find(r, role) : -1;
    return i < 0 ? 0 : r->roles[i].version;
}

/* ---- keys, thresholds, expiry ---------------------------------------- */

lp_status lp_tuf_repo_add_key(lp_tuf_repo *r, const char *role, const lp_key *key, lp_error *err)
{
    int i = -1;
    lp_status st = find_role(r, role, &i, err);
    if (st)
        return lp_error_prefix(err, st, "add key");
    if (!key)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "add key to %s: no key given", role);
    json_t *obj;
    char keyid[65];
    if ((st = lp_tuf_key_json_new(key, &obj, err)))
        return lp_error_prefix(err, st, "add key to %s", role);
    if ((st = lp_tuf_keyid(obj, keyid, err))) {
        json_decref(obj);
        return lp_error_prefix(err, st, "add key to %s", role);
    }
    repo_role *ro = &r->roles[i];
    if (lp_repo_strlist_has(ro->keyids, ro->nkeyids, keyid)) {
        json_decref(obj);
        return LP_OK;
    }
    json_t *scope = lp_repo_scope(r, i);
    if (!json_object_get(scope, keyid) && json_object_set(scope, keyid, obj) != 0) {
        json_decref(obj);
        return oom(err);
    }
    json_decref(obj);
    if (!lp_repo_strlist_add(&ro->keyids, &ro->nkeyids, keyid))
        return oom(err);
    keys_changed(r, i);
    return LP_OK;
}

lp_status lp_tuf_repo_remove_key(lp_tuf_repo *r, const char *role, const char *keyid,
                                 lp_error *err)
{
    int i = -1;
    lp_status st = find_role(r, role, &i, err);
    if (st)
        return lp_error_prefix(err, st, "remove key");
    repo_role *ro = &r->roles[i];
    for (size_t k = 0; keyid && k < ro->nkeyids; k++) {
        if (strcmp(ro->keyids[k], keyid))
            continue;
        free(ro->keyids[k]);
        memmove(&ro->keyids[k], &ro->keyids[k + 1], (ro->nkeyids - k - 1) * sizeof *ro->keyids);
        ro->nkeyids--;
        keys_changed(r, i);
        return LP_OK;
    }
    return lp_error_set(err, LP_ERR_NOT_FOUND, "remove key: role %s has no key %.80s", role,
                        keyid ? keyid : "(none)");
}

lp_status lp_tuf_repo_set_threshold(lp_tuf_repo *r, const char *role, uint32_t threshold,
                                    lp_error *err)
{
    int i = -1;
    lp_status st = find_role(r, role, &i, err);
    if (st)
        return lp_error_prefix(err, st, "set threshold");
    if (threshold < 1)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "threshold of %s must be at least 1", role);
    if (r->roles[i].threshold != threshold) {
        r->roles[i].threshold = threshold;
        keys_changed(r, i);
    }
    return LP_OK;
}

lp_status lp_tuf_repo_set_expires(lp_tuf_repo *r, const char *role, int64_t expires,
                                  lp_error *err)
{
    int i = -1;
    lp_status st = find_role(r, role, &i, err);
    if (st)
        return lp_error_prefix(err, st, "set expiry");
    /* The written form has four year digits. */
    if (expires < 0 || expires > 253402300799LL)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "expiry of %s must be between 1970 and 9999", role);
    r->roles[i].expires = expires;
    r->roles[i].expires_set = true;
    r->roles[i].changed = true;
    return LP_OK;
}

lp_status lp_tuf_repo_touch(lp_tuf_repo *r, const char *role, lp_error *err)
{
    int i = -1;
    lp_status st = find_role(r, role, &i, err);
    if (st)
        return lp_error_prefix(err, st, "touch");
    r->roles[i].changed = true;
    return LP_OK;
}

/* ---- delegations ----------------------------------------------------- */

lp_status lp_tuf_repo_delegate(lp_tuf_repo *r, const char *delegator, const char *name,
                               const char *const *paths, size_t npaths, bool terminating,
                               uint32_t threshold, lp_error *err)
{
    int d = -1;
    lp_status st = find_role(r, delegator, &d, err);
    if (st)
        return lp_error_prefix(err, st, "delegate");
    if (r->roles[d].type != LP_MD_TARGETS)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "delegate: only targets roles delegate, not %s", delegator);
    if (!name || !lp_repo_role_name_ok(name))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "delegate: \"%.80s\" is not a valid role name (letters, digits, '-', "
                            "'_', '.'; at most %d bytes)",
                            name ? name : "", LP_REPO_ROLE_NAME_MAX);
    for (int t = 0; t < 4; t++)
        if (!strcmp(name, top_names[t]))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "delegate: \"%s\" is a top-level role name", name);
    int existing = lp_repo_find(r, name);
    if (existing >= 0)
        return lp_error_set(err, LP_ERR_EXISTS, "delegate: role \"%s\" already exists%s%s", name,
                            r->roles[existing].delegator == d ? ", delegated by " : "",
                            r->roles[existing].delegator == d ? delegator : "");
    if (threshold < 1)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "delegate %s: threshold must be at least 1",
                            name);
    if (!paths || npaths == 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "delegate %s: no path pattern given", name);
    for (size_t k = 0; k < npaths; k++)
        if (!paths[k] || !*paths[k] || strlen(paths[k]) > LP_REPO_PATTERN_MAX)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "delegate %s: path pattern %zu is empty or too long", name, k);
    if (!r->roles[d].dkeys && !(r->roles[d].dkeys = json_object()))
        return oom(err);
    int i = lp_repo_add_role(r, name, LP_MD_TARGETS, d);
    if (i < 0)
        return oom(err);
    repo_role *ro = &r->roles[i];
    ro->threshold = threshold;
    ro->terminating = terminating;
    if (!(ro->paths = calloc(npaths, sizeof *ro->paths)))
        return oom(err);
    for (size_t k = 0; k < npaths; k++) {
        if (!(ro->paths[k] = strdup(paths[k])))
            return oom(err);
        ro->npaths++;
    }
    ro->changed = true;
    r->roles[d].changed = true;
    return LP_OK;
}

/* ---- description ----------------------------------------------------- */

static json_t *strlist_json(char *const *list, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(list[i]));
    return a;
}

lp_status lp_tuf_repo_describe(const lp_tuf_repo *r, json_t **out, lp_error *err)
{
    json_t *roles = json_array();
    json_t *doc = json_pack("{s:s, s:o}", "dir", r->dir, "roles", roles);
    if (!doc)
        return oom(err);
    for (size_t i = 0; i < r->nroles; i++) {
        const repo_role *ro = &r->roles[i];
        char exp[21] = "";
        if (ro->expires)
            lp_time_format(ro->expires, exp);
        json_t *o = json_pack("{s:s, s:s, s:I, s:s?, s:o, s:I, s:b}", "name", ro->name,
                              "type", lp_md_type_name(ro->type), "version",
                              (json_int_t)ro->version, "expires", exp[0] ? exp : NULL, "keyids",
                              strlist_json(ro->keyids, ro->nkeyids), "threshold",
                              (json_int_t)ro->threshold, "unpublished_changes", ro->changed);
        if (!o || json_array_append_new(roles, o) != 0) {
            json_decref(doc);
            return oom(err);
        }
        if (ro->delegator >= 0) {
            json_object_set_new(o, "delegated_by", json_string(r->roles[ro->delegator].name));
            json_object_set_new(o, "terminating", json_boolean(ro->terminating));
            if (ro->paths)
                json_object_set_new(o, "paths", strlist_json(ro->paths, ro->npaths));
            else
                json_object_set_new(o, "path_hash_prefixes",
                                    strlist_json(ro->prefixes, ro->nprefixes));
        }
        if (ro->prepared) {
            json_t *ids = json_array();
            for (size_t k = 0; ids && k < ro->natt; k++)
                json_array_append_new(ids, json_string(ro->att[k].keyid));
            json_t *p = json_pack("{s:I, s:o}", "version", (json_int_t)ro->prep_version,
                                  "signed_by", ids);
            if (!p || json_object_set_new(o, "prepared", p) != 0) {
                json_decref(doc);
                return oom(err);
            }
        }
        if (ro->targets && json_object_set_new(o, "targets", json_deep_copy(ro->targets)) != 0) {
            json_decref(doc);
            return oom(err);
        }
    }
    *out = doc;
    return LP_OK;
}
