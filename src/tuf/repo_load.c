/*
 * repo_load.c — reading a repository folder back into the writer's model
 * (lp_tuf_repo_open, see livepush/tuf_repo.h).
 *
 * What is loaded is what a client would see: the highest N.root.json, the
 * timestamp.json, the snapshot version the timestamp lists, and the targets
 * versions that snapshot lists, following delegations from the top-level
 * targets role down.  Files left behind by an interrupted publish (written,
 * but never referenced by a timestamp) are therefore ignored and simply
 * overwritten by the next publish; the one exception is root, whose
 * versions clients probe directly, so the newest root file always wins.
 *
 * Every file goes through the strict metadata parser (metadata.c), bounded
 * in size, and must carry the version its name or its referrer says.  The
 * folder is the owner's working copy, so signatures are not re-verified
 * here: a repository interrupted between writing a rotated root and the
 * timestamp signed by the new key must still open, to be repaired by the
 * next publish.  Unknown fields of each `signed` object are kept and
 * written back.
 *
 * A folder with a root but no timestamp.json has never been published
 * beyond its root (lp_tuf_repo_create_from_root, or a first publish
 * interrupted before it wrote the timestamp): it opens with timestamp,
 * snapshot and targets at version 0 and marked changed, so the next publish
 * writes their first versions.  Any N.snapshot.json or N.targets.json left
 * by the interrupted publish is overwritten then; no client can have
 * trusted it, because a client reaches snapshot and targets only through a
 * timestamp that lists them, and none was ever written.
 */
#include "tuf/repo_priv.h"

#include "core/file.h"
#include "tuf/json.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lp_status oom(lp_error *err)
{
    return lp_error_set(err, LP_ERR_NOMEM, "out of memory loading repository");
}

/* Highest N of the N.root.json files in metadir (0 if none). */
static lp_status newest_root(const char *metadir, uint64_t *out, lp_error *err)
{
    *out = 0;
    DIR *d = opendir(metadir);
    if (!d)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO,
                            "open folder %s: %s", metadir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        uint64_t v = 0;
        size_t k = 0;
        while (n[k] >= '0' && n[k] <= '9' && k < 18)
            v = v * 10 + (uint64_t)(n[k++] - '0');
        if (k == 0 || n[0] == '0' || strcmp(n + k, ".root.json"))
            continue;
        if (v > *out)
            *out = v;
    }
    closedir(d);
    if (*out == 0)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "%s holds no N.root.json file", metadir);
    return LP_OK;
}

/* Reads and parses metadir/<file> as metadata of `type`. */
static lp_status load_md(const lp_tuf_repo *r, const char *file, lp_md_type type, lp_md **out,
                         lp_error *err)
{
    char *path = lp_path_join(r->metadir, file);
    if (!path)
        return oom(err);
    uint8_t *data;
    size_t len;
    lp_status st = lp_file_read(path, LP_REPO_METADATA_MAX_BYTES, &data, &len, err);
    free(path);
    if (st)
        return st;
    st = lp_md_parse(data, len, type, file, out, err);
    free(data);
    return st;
}

/* Fills a role's own part (version, expiry, unknown fields) from md. */
static lp_status take_common(repo_role *ro, const lp_md *md, const char *file, uint64_t want,
                             lp_error *err)
{
    if (want && md->version != want)
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: holds version %llu, expected %llu", file,
                            (unsigned long long)md->version, (unsigned long long)want);
    ro->version = md->version;
    ro->expires = md->expires;
    if (!(ro->base = json_deep_copy(json_object_get(md->doc, "signed"))))
        return oom(err);
    return LP_OK;
}

/* keyids (sorted) and threshold of a parsed role. */
static lp_status take_keys(repo_role *ro, const lp_md_role *src, const char *where,
                           lp_error *err)
{
    if (src->threshold > UINT32_MAX)
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: threshold %llu is too large", where,
                            (unsigned long long)src->threshold);
    ro->threshold = (uint32_t)src->threshold;
    for (size_t k = 0; k < src->nkeyids; k++)
        if (!lp_repo_strlist_add(&ro->keyids, &ro->nkeyids, src->keyids[k]))
            return oom(err);
    return LP_OK;
}

/* The version the snapshot lists for role `name` (0 if it lists none). */
static uint64_t listed_version(const lp_md *snap, const char *name)
{
    char file[LP_REPO_ROLE_NAME_MAX + 8];
    snprintf(file, sizeof file, "%s.json", name);
    const lp_md_metafile *mf = lp_md_find_meta(snap, file);
    return mf ? mf->version : 0;
}

/* Loads targets role i at the version the snapshot lists, and appends the
 * roles it delegates to. */
static lp_status load_targets(lp_tuf_repo *r, int i, const lp_md *snap, lp_error *err)
{
    const char *name = r->roles[i].name;
    uint64_t v = listed_version(snap, name);
    char file[LP_REPO_ROLE_NAME_MAX + 32];
    if (v == 0)
        return lp_error_set(err, LP_ERR_MALFORMED, "snapshot version %llu does not list role %s",
                            (unsigned long long)snap->version, name);
    snprintf(file, sizeof file, "%llu.%s.json", (unsigned long long)v, name);
    lp_md *md;
    lp_status st = load_md(r, file, LP_MD_TARGETS, &md, err);
    if (st)
        return st;
    repo_role *ro = &r->roles[i];
    json_decref(ro->targets);
    ro->targets = json_deep_copy(md->targets);
    if (!ro->targets) {
        lp_md_free(md);
        return oom(err);
    }
    if ((st = take_common(ro, md, file, v, err))) {
        lp_md_free(md);
        return st;
    }
    json_t *deleg = json_object_get(json_object_get(md->doc, "signed"), "delegations");
    if (deleg) {
        ro->had_delegations = true;
        if (!(ro->dkeys = json_deep_copy(json_object_get(deleg, "keys")))) {
            lp_md_free(md);
            return oom(err);
        }
    }
    for (size_t k = 0; k < md->ndelegations && !st; k++) {
        const lp_md_role *d = &md->delegations[k];
        if (!lp_repo_role_name_ok(d->name))
            st = lp_error_set(err, LP_ERR_MALFORMED,
                              "%s: delegated role name \"%.80s\" is not one this writer can "
                              "store (letters, digits, '-', '_', '.'; at most %d bytes)",
                              file, d->name, LP_REPO_ROLE_NAME_MAX);
        else if (lp_repo_find(r, d->name) >= 0)
            st = lp_error_set(err, LP_ERR_MALFORMED, "%s: role %s is delegated more than once",
                              file, d->name);
        else if (r->nroles >= LP_REPO_MAX_ROLES)
            st = lp_error_set(err, LP_ERR_TOO_LARGE, "more than %d delegated roles",
                              LP_REPO_MAX_ROLES);
        if (st)
            break;
        int c = lp_repo_add_role(r, d->name, LP_MD_TARGETS, i);
        if (c < 0) {
            st = oom(err);
            break;
        }
        repo_role *cr = &r->roles[c];
        cr->terminating = d->terminating;
        if ((st = take_keys(cr, d, file, err)))
            break;
        if ((d->paths && !lp_repo_strlist_copy(&cr->paths, &cr->npaths, d->paths, d->npaths)) ||
            (d->hash_prefixes && !lp_repo_strlist_copy(&cr->prefixes, &cr->nprefixes,
                                                       d->hash_prefixes, d->nprefixes)))
            st = oom(err);
    }
    lp_md_free(md);
    return st;
}

/* Snapshot entries that name no role of the tree are carried forward, so
 * no role ever disappears from the snapshot (clients treat that as a
 * rollback). */
static lp_status keep_orphans(lp_tuf_repo *r, const lp_md *snap, lp_error *err)
{
    json_t *meta = json_object_get(json_object_get(snap->doc, "signed"), "meta");
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v)
    {
        size_t n = strlen(key);
        bool known = false;
        for (size_t i = 3; i < r->nroles && !known; i++)
            known = n == strlen(r->roles[i].name) + 5 && !strncmp(key, r->roles[i].name, n - 5) &&
                    !strcmp(key + n - 5, ".json");
        if (!known && json_object_set_new(r->orphan_meta, key, json_deep_copy(v)) != 0)
            return oom(err);
    }
    return LP_OK;
}

/* Only a root was ever published: the other top-level roles start empty. */
static bool root_only(const lp_tuf_repo *r)
{
    char *ts = lp_path_join(r->metadir, "timestamp.json");
    bool only = ts && !lp_file_exists(ts);
    free(ts);
    return only;
}

lp_status lp_repo_load(lp_tuf_repo *r, lp_error *err)
{
    uint64_t n;
    lp_status st = newest_root(r->metadir, &n, err);
    if (st)
        return st;
    char file[64];
    snprintf(file, sizeof file, "%llu.root.json", (unsigned long long)n);
    lp_md *root, *ts = NULL, *snap = NULL;
    if ((st = load_md(r, file, LP_MD_ROOT, &root, err)))
        return st;
    if (!(r->root_keys = json_deep_copy(json_object_get(json_object_get(root->doc, "signed"),
                                                        "keys"))))
        st = oom(err);
    for (int t = 0; t < 4 && !st; t++)
        st = take_keys(&r->roles[t], &root->roles[t], file, err);
    if (!st)
        st = take_common(&r->roles[LP_MD_ROOT], root, file, n, err);
    if (!st) {
        r->has_prev_root = true;
        r->prev_threshold = r->roles[LP_MD_ROOT].threshold;
        if (!lp_repo_strlist_copy(&r->prev_keyids, &r->nprev, r->roles[LP_MD_ROOT].keyids,
                                  r->roles[LP_MD_ROOT].nkeyids))
            st = oom(err);
    }
    lp_md_free(root);
    if (st)
        return st;
    if (root_only(r)) {
        for (int t = LP_MD_TIMESTAMP; t <= LP_MD_TARGETS; t++)
            r->roles[t].changed = true;
        return LP_OK;
    }

    if ((st = load_md(r, "timestamp.json", LP_MD_TIMESTAMP, &ts, err)) ||
        (st = take_common(&r->roles[LP_MD_TIMESTAMP], ts, "timestamp.json", 0, err))) {
        lp_md_free(ts);
        return st;
    }
    uint64_t sv = ts->meta[0].version;
    lp_md_free(ts);
    snprintf(file, sizeof file, "%llu.snapshot.json", (unsigned long long)sv);
    if ((st = load_md(r, file, LP_MD_SNAPSHOT, &snap, err)) ||
        (st = take_common(&r->roles[LP_MD_SNAPSHOT], snap, file, sv, err))) {
        lp_md_free(snap);
        return st;
    }
    /* Roles are appended as their delegators are loaded: breadth first. */
    for (size_t i = LP_MD_TARGETS; i < r->nroles && !st; i++)
        st = load_targets(r, (int)i, snap, err);
    if (!st)
        st = keep_orphans(r, snap, err);
    lp_md_free(snap);
    return st;
}

lp_status lp_tuf_repo_open(lp_tuf_repo **out, const char *dir, lp_error *err)
{
    *out = NULL;
    lp_tuf_repo *r;
    lp_status st = lp_repo_alloc(&r, dir, err);
    if (st)
        return st;
    json_decref(r->root_keys);
    r->root_keys = NULL;
    if ((st = lp_repo_load(r, err))) {
        lp_tuf_repo_free(r);
        return lp_error_prefix(err, st, "opening repository %s", dir);
    }
    *out = r;
    return LP_OK;
}
