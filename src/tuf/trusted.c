/*
 * trusted.c — the checks of the TUF client workflow, step by step
 * (see trusted.h).  Each function parses the candidate, runs the checks in
 * the order the specification gives them (signatures before versions, so an
 * unsigned file can never cause a state change; expiry last, so expired data
 * still guards against rollback), and swaps it in.
 */
#include "tuf/trusted.h"

#include "core/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lp_md_role *root_role(const lp_md *root, lp_md_type t)
{
    return (lp_md_role *)&root->roles[t];
}

static lp_status verify_by_root(const lp_md *root, lp_md_type role, const lp_md *md,
                                const char *what, lp_error *err)
{
    return lp_md_verify(root->keys, root->nkeys, root_role(root, role), md, what, err);
}

static lp_status expired(const lp_md *md, int64_t now, const char *what, lp_error *err)
{
    if (md->expires > now)
        return LP_OK;
    char buf[32];
    lp_time_format(md->expires, buf);
    return lp_error_set(err, LP_ERR_EXPIRED, "%s version %llu expired at %s", what,
                        (unsigned long long)md->version, buf);
}

lp_status lp_trusted_init(lp_trusted *t, const void *root, size_t len, int64_t now, lp_error *err)
{
    memset(t, 0, sizeof *t);
    t->now = now;
    lp_md *md;
    lp_status st = lp_md_parse(root, len, LP_MD_ROOT, "root.json", &md, err);
    if (st)
        return st;
    if ((st = verify_by_root(md, LP_MD_ROOT, md, "trusted root.json", err))) {
        lp_md_free(md);
        return st;
    }
    t->root = md;
    return LP_OK;
}

lp_status lp_trusted_update_root(lp_trusted *t, const void *data, size_t len, lp_error *err)
{
    if (t->timestamp)
        return lp_error_set(err, LP_ERR_STATE, "root cannot change after timestamp was loaded");
    char what[64];
    snprintf(what, sizeof what, "%llu.root.json", (unsigned long long)t->root->version + 1);
    lp_md *md;
    lp_status st = lp_md_parse(data, len, LP_MD_ROOT, what, &md, err);
    if (st)
        return st;
    /* Signed by the old threshold of old keys and the new threshold of new keys. */
    char by_old[128], by_new[128];
    snprintf(by_old, sizeof by_old, "%s (keys of trusted root version %llu)", what,
             (unsigned long long)t->root->version);
    snprintf(by_new, sizeof by_new, "%s (its own keys)", what);
    if ((st = verify_by_root(t->root, LP_MD_ROOT, md, by_old, err)) ||
        (st = verify_by_root(md, LP_MD_ROOT, md, by_new, err))) {
        lp_md_free(md);
        return st;
    }
    if (md->version != t->root->version + 1) {
        st = lp_error_set(err, LP_ERR_VERSION_MISMATCH, "%s: contains version %llu, expected %llu",
                          what, (unsigned long long)md->version,
                          (unsigned long long)t->root->version + 1);
        lp_md_free(md);
        return st;
    }
    lp_md_free(t->root);
    t->root = md;
    return LP_OK;
}

lp_status lp_trusted_check_root(const lp_trusted *t, lp_error *err)
{
    return expired(t->root, t->now, "root.json", err);
}

lp_status lp_trusted_update_timestamp(lp_trusted *t, const void *data, size_t len, lp_error *err)
{
    if (t->snapshot)
        return lp_error_set(err, LP_ERR_STATE, "timestamp cannot change after snapshot was loaded");
    lp_status st = expired(t->root, t->now, "root.json", err);
    if (st)
        return st;
    lp_md *md;
    if ((st = lp_md_parse(data, len, LP_MD_TIMESTAMP, "timestamp.json", &md, err)))
        return st;
    if ((st = verify_by_root(t->root, LP_MD_TIMESTAMP, md, "timestamp.json", err))) {
        lp_md_free(md);
        return st;
    }
    if (t->timestamp) {
        const lp_md *old = t->timestamp;
        if (md->version < old->version) {
            st = lp_error_set(err, LP_ERR_ROLLBACK,
                              "timestamp.json: version %llu is lower than trusted version %llu",
                              (unsigned long long)md->version, (unsigned long long)old->version);
            lp_md_free(md);
            return st;
        }
        if (md->version == old->version) {
            /* Nothing new: keep the trusted copy, which must still be valid. */
            lp_md_free(md);
            return expired(old, t->now, "timestamp.json", err);
        }
        if (md->meta[0].version < old->meta[0].version) {
            st = lp_error_set(err, LP_ERR_ROLLBACK,
                              "timestamp.json: lists snapshot version %llu, lower than trusted "
                              "version %llu",
                              (unsigned long long)md->meta[0].version,
                              (unsigned long long)old->meta[0].version);
            lp_md_free(md);
            return st;
        }
    }
    lp_md_free(t->timestamp);
    t->timestamp = md;
    return expired(md, t->now, "timestamp.json", err);
}

static lp_status check_final_timestamp(const lp_trusted *t, lp_error *err)
{
    if (!t->timestamp)
        return lp_error_set(err, LP_ERR_STATE, "no trusted timestamp");
    return expired(t->timestamp, t->now, "timestamp.json", err);
}

static lp_status check_final_snapshot(const lp_trusted *t, lp_error *err)
{
    lp_status st = expired(t->snapshot, t->now, "snapshot.json", err);
    if (st)
        return st;
    if (t->snapshot->version != t->timestamp->meta[0].version)
        return lp_error_set(err, LP_ERR_VERSION_MISMATCH,
                            "snapshot.json: contains version %llu, timestamp lists %llu",
                            (unsigned long long)t->snapshot->version,
                            (unsigned long long)t->timestamp->meta[0].version);
    return LP_OK;
}

lp_status lp_trusted_update_snapshot(lp_trusted *t, const void *data, size_t len, bool from_cache,
                                     lp_error *err)
{
    if (t->targets)
        return lp_error_set(err, LP_ERR_STATE, "snapshot cannot change after targets was loaded");
    lp_status st = check_final_timestamp(t, err);
    if (st)
        return st;
    if (!from_cache && (st = lp_md_check_meta(&t->timestamp->meta[0], data, len, err)))
        return st;
    lp_md *md;
    if ((st = lp_md_parse(data, len, LP_MD_SNAPSHOT, "snapshot.json", &md, err)))
        return st;
    if ((st = verify_by_root(t->root, LP_MD_SNAPSHOT, md, "snapshot.json", err))) {
        lp_md_free(md);
        return st;
    }
    if (t->snapshot) {
        for (size_t i = 0; i < t->snapshot->nmeta; i++) {
            const lp_md_metafile *o = &t->snapshot->meta[i];
            const lp_md_metafile *n = lp_md_find_meta(md, o->name);
            if (!n) {
                st = lp_error_set(err, LP_ERR_ROLLBACK,
                                  "snapshot.json: %s is no longer listed (trusted snapshot lists "
                                  "version %llu)",
                                  o->name, (unsigned long long)o->version);
                lp_md_free(md);
                return st;
            }
            if (n->version < o->version) {
                st = lp_error_set(err, LP_ERR_ROLLBACK,
                                  "snapshot.json: lists %s version %llu, lower than trusted "
                                  "version %llu",
                                  o->name, (unsigned long long)n->version,
                                  (unsigned long long)o->version);
                lp_md_free(md);
                return st;
            }
        }
    }
    lp_md_free(t->snapshot);
    t->snapshot = md;
    return check_final_snapshot(t, err);
}

lp_md *lp_trusted_get_targets(const lp_trusted *t, const char *role)
{
    if (!strcmp(role, "targets"))
        return t->targets;
    for (size_t i = 0; i < t->ndelegated; i++)
        if (!strcmp(t->delegated[i].name, role))
            return t->delegated[i].md;
    return NULL;
}

lp_status lp_trusted_update_targets(lp_trusted *t, const char *role, const char *delegator,
                                    const void *data, size_t len, lp_error *err)
{
    if (!t->snapshot)
        return lp_error_set(err, LP_ERR_STATE, "no trusted snapshot");
    lp_status st = check_final_snapshot(t, err);
    if (st)
        return st;
    const lp_md_key *keys;
    size_t nkeys;
    const lp_md_role *r = NULL;
    if (!delegator) {
        keys = t->root->keys;
        nkeys = t->root->nkeys;
        r = root_role(t->root, LP_MD_TARGETS);
    } else {
        lp_md *parent = lp_trusted_get_targets(t, delegator);
        if (!parent)
            return lp_error_set(err, LP_ERR_STATE, "delegator %s is not loaded", delegator);
        keys = parent->keys;
        nkeys = parent->nkeys;
        for (size_t i = 0; i < parent->ndelegations && !r; i++)
            if (!strcmp(parent->delegations[i].name, role))
                r = &parent->delegations[i];
        if (!r)
            return lp_error_set(err, LP_ERR_NOT_FOUND, "%s does not delegate to %s", delegator,
                                role);
    }
    char fname[300];
    snprintf(fname, sizeof fname, "%s.json", role);
    const lp_md_metafile *mf = lp_md_find_meta(t->snapshot, fname);
    if (!mf)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "snapshot.json does not list %s", fname);
    if ((st = lp_md_check_meta(mf, data, len, err)))
        return st;
    lp_md *md;
    if ((st = lp_md_parse(data, len, LP_MD_TARGETS, fname, &md, err)))
        return st;
    if ((st = lp_md_verify(keys, nkeys, r, md, fname, err))) {
        lp_md_free(md);
        return st;
    }
    if (md->version != mf->version) {
        st = lp_error_set(err, LP_ERR_VERSION_MISMATCH,
                          "%s: contains version %llu, snapshot lists %llu", fname,
                          (unsigned long long)md->version, (unsigned long long)mf->version);
        lp_md_free(md);
        return st;
    }
    if ((st = expired(md, t->now, fname, err))) {
        lp_md_free(md);
        return st;
    }
    if (!delegator) {
        lp_md_free(t->targets);
        t->targets = md;
        return LP_OK;
    }
    if (t->ndelegated == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        lp_trusted_role *p = realloc(t->delegated, cap * sizeof *p);
        if (!p) {
            lp_md_free(md);
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        }
        t->delegated = p;
        t->cap = cap;
    }
    char *name = strdup(role);
    if (!name) {
        lp_md_free(md);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    t->delegated[t->ndelegated].name = name;
    t->delegated[t->ndelegated].md = md;
    t->ndelegated++;
    return LP_OK;
}

void lp_trusted_free(lp_trusted *t)
{
    lp_md_free(t->root);
    lp_md_free(t->timestamp);
    lp_md_free(t->snapshot);
    lp_md_free(t->targets);
    for (size_t i = 0; i < t->ndelegated; i++) {
        free(t->delegated[i].name);
        lp_md_free(t->delegated[i].md);
    }
    free(t->delegated);
    memset(t, 0, sizeof *t);
}
