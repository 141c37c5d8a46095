/*
 * repo_publish.c — turning the writer's edits into signed files
 * (lp_tuf_repo_publish, see livepush/tuf_repo.h).
 *
 * A publish runs in two phases so that a refusal leaves the folder exactly
 * as it was:
 *   1. plan and sign, in memory: which roles get a new version (every
 *      changed role; snapshot when it or any targets role changed;
 *      timestamp always), their new versions and expiries, the `signed`
 *      objects, and their signatures (repo_sign.c).  Any role whose
 *      authorised keys among those given fall short of its threshold stops
 *      the publish here with LP_ERR_BAD_SIGNATURE naming the role.  A new
 *      root needs a threshold of its own root keys and of the previous
 *      root's root keys.
 *   2. write, each file atomically: targets roles, snapshot, root (N.root.json
 *      and the root.json copy), and timestamp.json last, so a reader that
 *      starts from the timestamp only ever finds files that already exist.
 * Only after every write succeeded does the model take the new versions.
 * If a write fails half-way the model no longer matches the folder and the
 * repository refuses further publishes until it is reopened.
 *
 * Roles signed elsewhere (repo_offline.c): a prepared role keeps the expiry
 * it was prepared with, so its `signed` object is rebuilt here byte for
 * byte as it was handed out; when signatures are attached to it, phase 1
 * first checks that the rebuilt canonical bytes are the prepared ones and
 * refuses the publish (LP_ERR_STATE) when an edit made since changed them,
 * so no signature that does not verify is ever written.  The attached
 * signatures then count towards the role's threshold next to the keys
 * given.  The planning and building half of phase 1 is shared with
 * lp_tuf_repo_prepare (lp_repo_next_signed), which is what makes the
 * prepared bytes those publish writes.
 *
 * Expiry: a role whose expiry was set since the last publish gets exactly
 * that; any other role that is re-signed gets max(current expiry, now + its
 * default lifetime), so re-signing extends a role's life and never shortens
 * an expiry its owner chose.
 *
 * The `signed` objects hold exactly python-tuf's fields (spec_version
 * "1.0.31", consistent_snapshot true, meta entries with versions only,
 * delegations only when a role delegates), so with the same content, keys
 * and dates the files are byte-for-byte what python-tuf writes.  Fields of
 * a loaded `signed` object that this writer does not know are kept.
 */
#include "tuf/repo_priv.h"

#include "core/file.h"
#include "core/timeutil.h"
#include "tuf/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static lp_status oom(lp_error *err)
{
    return lp_error_set(err, LP_ERR_NOMEM, "out of memory publishing");
}

/* What publish does with one role. */
typedef struct plan {
    bool write;
    uint64_t version;
    int64_t expires;
    json_t *signed_obj;
    char *bytes;
    size_t len;
} plan;

typedef struct pub_ctx {
    lp_tuf_repo *r;
    lp_repo_signer *signers;
    size_t nsigners;
    plan *plans;
} pub_ctx;

/* ---- building `signed` ----------------------------------------------- */

/* Copy of the loaded `signed` (unknown fields kept) or a new object, with
 * the fields every role has. */
static json_t *signed_common(const repo_role *ro, const plan *p)
{
    json_t *s = ro->base ? json_deep_copy(ro->base) : json_object();
    char exp[21];
    lp_time_format(p->expires, exp);
    if (!s || json_object_set_new(s, "_type", json_string(lp_md_type_name(ro->type))) ||
        json_object_set_new(s, "spec_version", json_string(LP_REPO_SPEC_VERSION)) ||
        json_object_set_new(s, "version", json_integer((json_int_t)p->version)) ||
        json_object_set_new(s, "expires", json_string(exp))) {
        json_decref(s);
        return NULL;
    }
    return s;
}

static json_t *strlist_json(char *const *list, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(list[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* Adds the key objects of `keyids` from `scope` to `keys`. */
static lp_status collect_keys(json_t *keys, const json_t *scope, char *const *keyids, size_t n,
                              const char *role, lp_error *err)
{
    for (size_t k = 0; k < n; k++) {
        json_t *obj = json_object_get(scope, keyids[k]);
        if (!obj)
            return lp_error_set(err, LP_ERR_MALFORMED,
                                "role %s lists key ID %.64s but no key object for it", role,
                                keyids[k]);
        if (json_object_set(keys, keyids[k], obj))
            return oom(err);
    }
    return LP_OK;
}

static lp_status build_root(pub_ctx *c, lp_error *err)
{
    lp_tuf_repo *r = c->r;
    json_t *s = signed_common(&r->roles[LP_MD_ROOT], &c->plans[LP_MD_ROOT]);
    if (!s)
        return oom(err);
    c->plans[LP_MD_ROOT].signed_obj = s;
    /* Each json_object_set_new takes its value, even when it fails. */
    json_t *keys = json_object();
    if (json_object_set_new(s, "consistent_snapshot", json_true()) ||
        json_object_set_new(s, "keys", keys))
        return oom(err);
    json_t *roles = json_object();
    if (json_object_set_new(s, "roles", roles))
        return oom(err);
    for (int t = 0; t < 4; t++) {
        const repo_role *ro = &r->roles[t];
        lp_status st = collect_keys(keys, r->root_keys, ro->keyids, ro->nkeyids, ro->name, err);
        if (st)
            return st;
        json_t *e = json_pack("{s:o, s:I}", "keyids", strlist_json(ro->keyids, ro->nkeyids),
                              "threshold", (json_int_t)ro->threshold);
        if (json_object_set_new(roles, ro->name, e))
            return oom(err);
    }
    return LP_OK;
}

/* Timestamp or snapshot with its `meta` object (taken). */
static lp_status build_meta(pub_ctx *c, int t, json_t *meta, lp_error *err)
{
    json_t *s = signed_common(&c->r->roles[t], &c->plans[t]);
    if (!s) {
        json_decref(meta);
        return oom(err);
    }
    c->plans[t].signed_obj = s;
    return json_object_set_new(s, "meta", meta) ? oom(err) : LP_OK;
}

static uint64_t planned_version(const pub_ctx *c, size_t i)
{
    return c->plans[i].write ? c->plans[i].version : c->r->roles[i].version;
}

static lp_status build_snapshot(pub_ctx *c, lp_error *err)
{
    lp_tuf_repo *r = c->r;
    json_t *meta = json_deep_copy(r->orphan_meta);
    if (!meta)
        return oom(err);
    for (size_t i = LP_MD_TARGETS; i < r->nroles; i++) {
        char file[LP_REPO_ROLE_NAME_MAX + 8];
        snprintf(file, sizeof file, "%s.json", r->roles[i].name);
        if (json_object_set_new(meta, file,
                                json_pack("{s:I}", "version", (json_int_t)planned_version(c, i)))) {
            json_decref(meta);
            return oom(err);
        }
    }
    return build_meta(c, LP_MD_SNAPSHOT, meta, err);
}

static lp_status build_timestamp(pub_ctx *c, lp_error *err)
{
    json_t *meta = json_pack("{s:{s:I}}", "snapshot.json", "version",
                             (json_int_t)planned_version(c, LP_MD_SNAPSHOT));
    return build_meta(c, LP_MD_TIMESTAMP, meta, err);
}

/* The delegation entry of role i. */
static json_t *delegation_entry(const repo_role *ro)
{
    json_t *e = json_pack("{s:o, s:s, s:b, s:I}", "keyids", strlist_json(ro->keyids, ro->nkeyids),
                          "name", ro->name, "terminating", ro->terminating, "threshold",
                          (json_int_t)ro->threshold);
    if (e && json_object_set_new(e, ro->paths ? "paths" : "path_hash_prefixes",
                                 ro->paths ? strlist_json(ro->paths, ro->npaths)
                                           : strlist_json(ro->prefixes, ro->nprefixes))) {
        json_decref(e);
        return NULL;
    }
    return e;
}

static lp_status build_targets(pub_ctx *c, int i, lp_error *err)
{
    lp_tuf_repo *r = c->r;
    const repo_role *ro = &r->roles[i];
    json_t *s = signed_common(ro, &c->plans[i]);
    if (!s || json_object_set_new(s, "targets", json_deep_copy(ro->targets))) {
        json_decref(s);
        return oom(err);
    }
    c->plans[i].signed_obj = s;
    json_t *keys = json_object(), *roles = json_array();
    if (!keys || !roles) {
        json_decref(keys);
        json_decref(roles);
        return oom(err);
    }
    for (size_t k = LP_MD_TARGETS + 1; k < r->nroles; k++) {
        const repo_role *d = &r->roles[k];
        if (d->delegator != i)
            continue;
        lp_status st = collect_keys(keys, ro->dkeys, d->keyids, d->nkeyids, d->name, err);
        json_t *e = st ? NULL : delegation_entry(d);
        if (st || !e || json_array_append_new(roles, e)) {
            json_decref(keys);
            json_decref(roles);
            return st ? st : oom(err);
        }
    }
    if (json_array_size(roles) == 0 && !ro->had_delegations) {
        json_decref(keys);
        json_decref(roles);
        json_object_del(s, "delegations");
        return LP_OK;
    }
    json_t *deleg = json_pack("{s:o, s:o}", "keys", keys, "roles", roles);
    if (!deleg || json_object_set_new(s, "delegations", deleg))
        return oom(err);
    return LP_OK;
}

/* ---- writing --------------------------------------------------------- */

static lp_status write_meta(const lp_tuf_repo *r, const char *file, const plan *p, lp_error *err)
{
    char *path = lp_path_join(r->metadir, file);
    if (!path)
        return oom(err);
    lp_status st = lp_file_write_atomic(path, p->bytes, p->len, 0644, err);
    free(path);
    return st;
}

static lp_status write_all(pub_ctx *c, lp_error *err)
{
    lp_tuf_repo *r = c->r;
    char file[LP_REPO_ROLE_NAME_MAX + 32];
    lp_status st = LP_OK;
    for (size_t i = LP_MD_TARGETS; i < r->nroles && !st; i++) {
        if (!c->plans[i].write)
            continue;
        snprintf(file, sizeof file, "%llu.%s.json", (unsigned long long)c->plans[i].version,
                 r->roles[i].name);
        st = write_meta(r, file, &c->plans[i], err);
    }
    if (!st && c->plans[LP_MD_SNAPSHOT].write) {
        snprintf(file, sizeof file, "%llu.snapshot.json",
                 (unsigned long long)c->plans[LP_MD_SNAPSHOT].version);
        st = write_meta(r, file, &c->plans[LP_MD_SNAPSHOT], err);
    }
    if (!st && c->plans[LP_MD_ROOT].write) {
        snprintf(file, sizeof file, "%llu.root.json",
                 (unsigned long long)c->plans[LP_MD_ROOT].version);
        if (!(st = write_meta(r, file, &c->plans[LP_MD_ROOT], err)))
            st = write_meta(r, "root.json", &c->plans[LP_MD_ROOT], err);
    }
    if (!st && r->hold_ts) {
        /* Kept for lp_tuf_repo_write_timestamp: the plan's bytes change hands. */
        free(r->held_ts);
        r->held_ts = c->plans[LP_MD_TIMESTAMP].bytes;
        r->held_ts_len = c->plans[LP_MD_TIMESTAMP].len;
        c->plans[LP_MD_TIMESTAMP].bytes = NULL;
        c->plans[LP_MD_TIMESTAMP].len = 0;
    } else if (!st) {
        st = write_meta(r, "timestamp.json", &c->plans[LP_MD_TIMESTAMP], err);
    }
    return st;
}

void lp_tuf_repo_hold_timestamp(lp_tuf_repo *r, bool hold)
{
    r->hold_ts = hold;
}

bool lp_tuf_repo_timestamp_pending(const lp_tuf_repo *r)
{
    return r->held_ts != NULL;
}

lp_status lp_tuf_repo_write_timestamp(lp_tuf_repo *r, lp_error *err)
{
    if (!r->held_ts)
        return LP_OK;
    char *path = lp_path_join(r->metadir, "timestamp.json");
    if (!path)
        return oom(err);
    lp_status st = lp_file_write_atomic(path, r->held_ts, r->held_ts_len, 0644, err);
    free(path);
    if (st)
        return lp_error_prefix(err, st, "timestamp.json");
    free(r->held_ts);
    r->held_ts = NULL;
    r->held_ts_len = 0;
    return LP_OK;
}

/* Whether <metadir>/<version>.<role>.json exists: a file an unfinished
 * publish (its timestamp held and never written) left behind. */
static bool version_file_exists(const lp_tuf_repo *r, const char *role, uint64_t version)
{
    char file[LP_REPO_ROLE_NAME_MAX + 32];
    snprintf(file, sizeof file, "%llu.%s.json", (unsigned long long)version, role);
    char *path = lp_path_join(r->metadir, file);
    bool exists = path && access(path, F_OK) == 0;
    free(path);
    return exists;
}

/* The model takes the published state. */
static lp_status commit(pub_ctx *c, lp_error *err)
{
    lp_tuf_repo *r = c->r;
    for (size_t i = 0; i < r->nroles; i++) {
        plan *p = &c->plans[i];
        if (!p->write)
            continue;
        repo_role *ro = &r->roles[i];
        ro->version = p->version;
        ro->expires = p->expires;
        ro->expires_set = false;
        ro->changed = false;
        lp_repo_unprepare(ro);
        json_decref(ro->base);
        ro->base = p->signed_obj;
        p->signed_obj = NULL;
    }
    if (c->plans[LP_MD_ROOT].write) {
        const repo_role *root = &r->roles[LP_MD_ROOT];
        lp_repo_strlist_free(r->prev_keyids, r->nprev);
        r->prev_keyids = NULL;
        r->nprev = 0;
        r->has_prev_root = true;
        r->prev_threshold = root->threshold;
        if (!lp_repo_strlist_copy(&r->prev_keyids, &r->nprev, root->keyids, root->nkeyids)) {
            r->broken = true;
            return oom(err);
        }
    }
    return LP_OK;
}

/* ---- the whole publish ----------------------------------------------- */

static lp_status make_plans(pub_ctx *c, lp_error *err)
{
    lp_tuf_repo *r = c->r;
    int64_t now = lp_repo_now(r);
    bool any_targets = false;
    for (size_t i = 0; i < r->nroles; i++) {
        const repo_role *ro = &r->roles[i];
        plan *p = &c->plans[i];
        p->write = ro->changed || i == LP_MD_TIMESTAMP;
        if (ro->type == LP_MD_TARGETS && p->write)
            any_targets = true;
    }
    if (any_targets)
        c->plans[LP_MD_SNAPSHOT].write = true;
    for (size_t i = 0; i < r->nroles; i++) {
        const repo_role *ro = &r->roles[i];
        plan *p = &c->plans[i];
        if (!p->write)
            continue;
        p->version = ro->version + 1;
        /* A versioned file left by an unfinished publish keeps its version:
         * the new content takes the next free one.  Not for root (clients
         * walk root versions one by one; root is never published held).  A
         * prepared role keeps the version it was prepared with (chosen the
         * same way), which its signatures cover. */
        if (ro->prepared && ro->prep_version > ro->version)
            p->version = ro->prep_version;
        else if (i != LP_MD_ROOT && i != LP_MD_TIMESTAMP)
            while (p->version < UINT64_MAX / 2 && version_file_exists(r, ro->name, p->version))
                p->version++;
        int64_t dflt = now + lp_repo_default_lifetime(ro->type);
        p->expires = ro->expires_set ? ro->expires : (ro->expires > dflt ? ro->expires : dflt);
        if (ro->prepared && !ro->expires_set)
            p->expires = ro->prep_expires;
        if (p->expires > 253402300799LL)
            return lp_error_set(err, LP_ERR_INVALID_ARG, "expiry of %s is past the year 9999",
                                ro->name);
    }
    return LP_OK;
}

/* Builds the `signed` object of every role the plans write. */
static lp_status build_all(pub_ctx *c, lp_error *err)
{
    lp_tuf_repo *r = c->r;
    lp_status st = LP_OK;
    for (size_t i = LP_MD_TARGETS; i < r->nroles && !st; i++)
        if (c->plans[i].write)
            st = build_targets(c, (int)i, err);
    if (!st && c->plans[LP_MD_SNAPSHOT].write)
        st = build_snapshot(c, err);
    if (!st)
        st = build_timestamp(c, err);
    if (!st && c->plans[LP_MD_ROOT].write)
        st = build_root(c, err);
    return st;
}

/* Role i carries attached signatures: its `signed` bytes must be the ones
 * they were made over. */
static lp_status check_prepared(pub_ctx *c, size_t i, lp_error *err)
{
    const repo_role *ro = &c->r->roles[i];
    char *canon;
    size_t len;
    lp_status st = lp_cjson_dumps(c->plans[i].signed_obj, &canon, &len, err);
    if (st)
        return st;
    bool same = c->plans[i].version == ro->prep_version && len == ro->prep_len &&
                !memcmp(canon, ro->prep_canon, len);
    free(canon);
    if (same)
        return LP_OK;
    return lp_error_set(err, LP_ERR_STATE,
                        "role %s changed after it was prepared for signing (version %llu): the "
                        "%zu signature%s attached no longer cover%s what would be published; "
                        "prepare it again and collect new signatures",
                        ro->name, (unsigned long long)ro->prep_version, ro->natt,
                        ro->natt == 1 ? "" : "s", ro->natt == 1 ? "s" : "");
}

static lp_status build_and_sign(pub_ctx *c, lp_error *err)
{
    lp_tuf_repo *r = c->r;
    lp_status st = build_all(c, err);
    for (size_t i = 0; i < r->nroles && !st; i++)
        if (c->plans[i].write && r->roles[i].prepared && r->roles[i].natt)
            st = check_prepared(c, i, err);
    /* Root first, so a key change is reported against root. */
    for (size_t i = 0; i < r->nroles && !st; i++)
        if (c->plans[i].write)
            st = lp_repo_sign_role(r, (int)i, c->plans[i].signed_obj, c->plans[i].version,
                                   c->signers, c->nsigners, r->roles[i].prepared,
                                   &c->plans[i].bytes, &c->plans[i].len, err);
    return st;
}

static void free_plans(const lp_tuf_repo *r, plan *plans)
{
    for (size_t i = 0; plans && i < r->nroles; i++) {
        json_decref(plans[i].signed_obj);
        free(plans[i].bytes);
    }
    free(plans);
}

lp_status lp_repo_next_signed(lp_tuf_repo *r, int i, json_t **signed_obj, uint64_t *version,
                              int64_t *expires, lp_error *err)
{
    pub_ctx c = {.r = r};
    if (!(c.plans = calloc(r->nroles, sizeof *c.plans)))
        return oom(err);
    lp_status st = make_plans(&c, err);
    if (!st)
        st = build_all(&c, err);
    if (!st && !c.plans[i].write)
        st = lp_error_set(err, LP_ERR_STATE, "role %s has no change to publish",
                          r->roles[i].name);
    if (!st) {
        *signed_obj = c.plans[i].signed_obj;
        c.plans[i].signed_obj = NULL;
        *version = c.plans[i].version;
        *expires = c.plans[i].expires;
    }
    free_plans(r, c.plans);
    return st;
}

lp_status lp_tuf_repo_publish(lp_tuf_repo *r, const lp_key *const *keys, size_t nkeys,
                              lp_error *err)
{
    if (r->broken)
        return lp_error_set(err, LP_ERR_STATE,
                            "publish: an earlier publish failed while writing; reopen the "
                            "repository with lp_tuf_repo_open");
    if (nkeys && !keys)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "publish: no key array");
    pub_ctx c = {.r = r};
    lp_status st = LP_OK;
    c.signers = calloc(nkeys ? nkeys : 1, sizeof *c.signers);
    c.plans = calloc(r->nroles, sizeof *c.plans);
    if (!c.signers || !c.plans)
        st = oom(err);
    for (size_t k = 0; k < nkeys && !st; k++) {
        if (!keys[k] || !lp_key_has_private(keys[k]))
            continue;
        lp_repo_signer *s = &c.signers[c.nsigners];
        s->key = keys[k];
        s->type = lp_key_get_type(keys[k]);
        if (!(st = lp_key_public_value(keys[k], &s->pub, err)))
            c.nsigners++;
    }
    if (!st)
        st = make_plans(&c, err);
    if (!st)
        st = build_and_sign(&c, err);
    if (!st && (st = write_all(&c, err)))
        r->broken = true;
    if (!st)
        st = commit(&c, err);
    for (size_t k = 0; k < c.nsigners; k++)
        free(c.signers[k].pub);
    free(c.signers);
    free_plans(r, c.plans);
    return st ? lp_error_prefix(err, st, "publish") : LP_OK;
}
