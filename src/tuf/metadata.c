/*
 * metadata.c — parsing and signature checking of TUF metadata (see metadata.h).
 *
 * The document is parsed once with the strict JSON parser; the canonical
 * bytes of `signed` are computed from the parsed tree (so a pretty-printed
 * file verifies as long as its content is what was signed).  Typed views
 * (roles, key IDs, meta entries, delegations) are built next to the tree; the
 * tree itself is kept so unknown fields are never lost and target entries
 * can be handed to callers as they were signed.
 */
#include "tuf/metadata.h"

#include "livepush/tuf_repo.h"
#include "core/timeutil.h"
#include "tuf/json.h"
#include "tuf/tufkey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHERE_MAX 512

static const char *const type_names[] = {"root", "timestamp", "snapshot", "targets"};

const char *lp_md_type_name(lp_md_type t)
{
    return t <= LP_MD_TARGETS ? type_names[t] : "unknown";
}

static lp_status oom(lp_error *err)
{
    return lp_error_set(err, LP_ERR_NOMEM, "out of memory parsing metadata");
}

static void role_clear(lp_md_role *r)
{
    free(r->name);
    for (size_t i = 0; i < r->nkeyids; i++)
        free(r->keyids[i]);
    free(r->keyids);
    for (size_t i = 0; i < r->npaths; i++)
        free(r->paths[i]);
    free(r->paths);
    for (size_t i = 0; i < r->nprefixes; i++)
        free(r->hash_prefixes[i]);
    free(r->hash_prefixes);
    memset(r, 0, sizeof *r);
}

void lp_md_free(lp_md *md)
{
    if (!md)
        return;
    json_decref(md->doc);
    free(md->canonical);
    for (size_t i = 0; i < md->nsigs; i++) {
        free(md->sigs[i].keyid);
        free(md->sigs[i].sig);
    }
    free(md->sigs);
    for (size_t i = 0; i < md->nkeys; i++) {
        lp_key_free(md->keys[i].key);
        free(md->keys[i].public_value);
    }
    free(md->keys);
    for (int i = 0; i < 4; i++)
        role_clear(&md->roles[i]);
    for (size_t i = 0; i < md->nmeta; i++)
        free(md->meta[i].name);
    free(md->meta);
    for (size_t i = 0; i < md->ndelegations; i++)
        role_clear(&md->delegations[i]);
    free(md->delegations);
    free(md);
}

/* Reads an array of unique strings.  `what` is used in messages. */
static lp_status parse_string_array(const json_t *arr, const char *where, bool unique,
                                    char ***out, size_t *n, lp_error *err)
{
    size_t cnt = json_array_size(arr);
    char **v = calloc(cnt ? cnt : 1, sizeof *v);
    if (!v)
        return oom(err);
    for (size_t i = 0; i < cnt; i++) {
        const json_t *e = json_array_get(arr, i);
        if (!json_is_string(e)) {
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return lp_error_set(err, LP_ERR_MALFORMED, "%s[%zu]: expected a string", where, i);
        }
        for (size_t j = 0; unique && j < i; j++) {
            if (!strcmp(v[j], json_string_value(e))) {
                lp_status st = lp_error_set(err, LP_ERR_MALFORMED, "%s: \"%.80s\" is listed twice",
                                            where, v[j]);
                for (size_t k = 0; k < i; k++)
                    free(v[k]);
                free(v);
                return st;
            }
        }
        v[i] = strdup(json_string_value(e));
        if (!v[i]) {
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return oom(err);
        }
    }
    *out = v;
    *n = cnt;
    return LP_OK;
}

/* keyids + threshold, shared by root roles and delegated roles. */
static lp_status parse_role_keys(const json_t *obj, const char *where, lp_md_role *r,
                                 lp_error *err)
{
    json_t *keyids;
    int64_t threshold;
    lp_status st;
    char w[WHERE_MAX];
    if ((st = lp_json_get_array(obj, where, "keyids", &keyids, err)) ||
        (st = lp_json_get_int(obj, where, "threshold", 1, INT64_MAX, &threshold, err)))
        return st;
    snprintf(w, sizeof w, "%s.keyids", where);
    if ((st = parse_string_array(keyids, w, true, &r->keyids, &r->nkeyids, err)))
        return st;
    r->threshold = (uint64_t)threshold;
    return LP_OK;
}

lp_status lp_md_parse_hashes(const json_t *obj, const char *where, lp_md_hashes *out,
                             lp_error *err)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(obj) || json_object_size(obj) == 0)
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: expected a non-empty object of hashes",
                            where);
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)obj, name, v)
    {
        if (!json_is_string(v))
            return lp_error_set(err, LP_ERR_MALFORMED, "%s.%s: expected a hex string", where,
                                name);
        lp_hash_alg alg;
        if (lp_hash_alg_from_name(name, &alg, NULL) != LP_OK)
            continue;
        size_t got;
        lp_status st = lp_hex_decode(json_string_value(v), out->digest[alg], LP_HASH_MAX_LEN,
                                     &got, err);
        if (st || got != lp_hash_len(alg))
            return lp_error_set(err, LP_ERR_MALFORMED, "%s.%s: not a %zu-byte hex digest", where,
                                name, lp_hash_len(alg));
        out->has[alg] = true;
    }
    return LP_OK;
}

static lp_status parse_metafile(const json_t *obj, const char *where, const char *name,
                                lp_md_metafile *mf, lp_error *err)
{
    char w[WHERE_MAX];
    snprintf(w, sizeof w, "%s.%s", where, name);
    if (!json_is_object(obj))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: expected an object", w);
    int64_t version, length = 0;
    bool has_len = false;
    json_t *hashes;
    lp_status st;
    if ((st = lp_json_get_int(obj, w, "version", 1, INT64_MAX, &version, err)) ||
        (st = lp_json_get_int_opt(obj, w, "length", 1, INT64_MAX, &length, &has_len, err)) ||
        (st = lp_json_get_object_opt(obj, w, "hashes", &hashes, err)))
        return st;
    mf->name = strdup(name);
    if (!mf->name)
        return oom(err);
    mf->version = (uint64_t)version;
    mf->has_length = has_len;
    mf->length = (uint64_t)length;
    if (hashes) {
        char hw[WHERE_MAX];
        snprintf(hw, sizeof hw, "%s.hashes", w);
        if ((st = lp_md_parse_hashes(hashes, hw, &mf->hashes, err)))
            return st;
        mf->has_hashes = true;
    }
    return LP_OK;
}

/* A `keys` object: key ID -> key.  Keys of unsupported types are skipped
 * (they can never count towards a threshold); malformed ones are refused. */
static lp_status parse_keys(const json_t *keys, const char *where, lp_md *md, lp_error *err)
{
    size_t n = json_object_size(keys);
    md->keys = calloc(n ? n : 1, sizeof *md->keys);
    if (!md->keys)
        return oom(err);
    const char *keyid;
    json_t *kobj;
    json_object_foreach((json_t *)keys, keyid, kobj)
    {
        char w[WHERE_MAX];
        snprintf(w, sizeof w, "%s.%.80s", where, keyid);
        lp_key *key = NULL;
        lp_error e2;
        lp_status st = lp_tuf_key_from_json(kobj, w, &key, &e2);
        if (st == LP_ERR_UNSUPPORTED)
            continue;
        if (st) {
            if (err)
                *err = e2;
            return st;
        }
        lp_md_key *k = &md->keys[md->nkeys];
        if (strlen(keyid) >= sizeof k->keyid) {
            lp_key_free(key);
            return lp_error_set(err, LP_ERR_MALFORMED, "%s: key ID longer than 64 characters",
                                w);
        }
        snprintf(k->keyid, sizeof k->keyid, "%s", keyid);
        k->key = key;
        md->nkeys++;
        if ((st = lp_key_public_value(key, &k->public_value, err)))
            return st;
    }
    return LP_OK;
}

static lp_status parse_root(lp_md *md, const json_t *sig, const char *where, lp_error *err)
{
    json_t *keys, *roles;
    bool cs = false, has_cs;
    lp_status st;
    if ((st = lp_json_get_object(sig, where, "keys", &keys, err)) ||
        (st = lp_json_get_object(sig, where, "roles", &roles, err)) ||
        (st = lp_json_get_bool_opt(sig, where, "consistent_snapshot", &cs, &has_cs, err)))
        return st;
    md->consistent_snapshot = cs;
    char w[WHERE_MAX];
    snprintf(w, sizeof w, "%s.keys", where);
    if ((st = parse_keys(keys, w, md, err)))
        return st;
    snprintf(w, sizeof w, "%s.roles", where);
    for (int i = 0; i < 4; i++) {
        json_t *r;
        if ((st = lp_json_get_object(roles, w, type_names[i], &r, err)))
            return st;
        char rw[WHERE_MAX];
        snprintf(rw, sizeof rw, "%s.%s", w, type_names[i]);
        if ((st = parse_role_keys(r, rw, &md->roles[i], err)))
            return st;
        if (!(md->roles[i].name = strdup(type_names[i])))
            return oom(err);
    }
    if (json_object_size(roles) != 4)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "%s: must list exactly root, timestamp, snapshot and targets", w);
    return LP_OK;
}

static lp_status parse_meta(lp_md *md, const json_t *sig, const char *where, lp_error *err)
{
    json_t *meta;
    lp_status st = lp_json_get_object(sig, where, "meta", &meta, err);
    if (st)
        return st;
    char w[WHERE_MAX];
    snprintf(w, sizeof w, "%s.meta", where);
    if (md->type == LP_MD_TIMESTAMP) {
        json_t *snap = json_object_get(meta, "snapshot.json");
        if (!snap)
            return lp_error_set(err, LP_ERR_MALFORMED, "%s: no entry for snapshot.json", w);
        if (!(md->meta = calloc(1, sizeof *md->meta)))
            return oom(err);
        md->nmeta = 1;
        return parse_metafile(snap, w, "snapshot.json", &md->meta[0], err);
    }
    size_t n = json_object_size(meta);
    if (!(md->meta = calloc(n ? n : 1, sizeof *md->meta)))
        return oom(err);
    const char *name;
    json_t *v;
    json_object_foreach(meta, name, v)
    {
        if ((st = parse_metafile(v, w, name, &md->meta[md->nmeta], err)))
            return st;
        md->nmeta++;
    }
    return LP_OK;
}

static bool is_top_level_name(const char *n)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(n, type_names[i]))
            return true;
    return false;
}

static lp_status parse_delegated_role(const json_t *r, const char *where, lp_md_role *role,
                                      lp_error *err)
{
    const char *name;
    json_t *paths, *prefixes;
    lp_status st;
    if (!json_is_object(r))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: expected an object", where);
    if ((st = lp_json_get_string(r, where, "name", &name, err)) ||
        (st = lp_json_get_bool(r, where, "terminating", &role->terminating, err)) ||
        (st = lp_json_get_array_opt(r, where, "paths", &paths, err)) ||
        (st = lp_json_get_array_opt(r, where, "path_hash_prefixes", &prefixes, err)))
        return st;
    if (!(role->name = strdup(name)))
        return oom(err);
    if (!*name || is_top_level_name(name))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s.name: \"%.80s\" is not a valid delegated "
                            "role name", where, name);
    if ((st = parse_role_keys(r, where, role, err)))
        return st;
    if ((paths != NULL) == (prefixes != NULL))
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "%s: exactly one of paths and path_hash_prefixes must be set", where);
    char w[WHERE_MAX];
    if (paths) {
        snprintf(w, sizeof w, "%s.paths", where);
        return parse_string_array(paths, w, false, &role->paths, &role->npaths, err);
    }
    snprintf(w, sizeof w, "%s.path_hash_prefixes", where);
    return parse_string_array(prefixes, w, false, &role->hash_prefixes, &role->nprefixes, err);
}

static lp_status parse_targets(lp_md *md, const json_t *sig, const char *where, lp_error *err)
{
    json_t *targets, *deleg;
    lp_status st;
    if ((st = lp_json_get_object(sig, where, "targets", &targets, err)) ||
        (st = lp_json_get_object_opt(sig, where, "delegations", &deleg, err)))
        return st;
    char w[WHERE_MAX];
    const char *name;
    json_t *t;
    json_object_foreach(targets, name, t)
    {
        snprintf(w, sizeof w, "%s.targets.%.200s", where, name);
        if (!json_is_object(t))
            return lp_error_set(err, LP_ERR_MALFORMED, "%s: expected an object", w);
        int64_t length;
        json_t *hashes, *custom;
        lp_md_hashes h;
        if ((st = lp_json_get_int(t, w, "length", 0, INT64_MAX, &length, err)) ||
            (st = lp_json_get_object(t, w, "hashes", &hashes, err)) ||
            (st = lp_json_get_object_opt(t, w, "custom", &custom, err)))
            return st;
        char hw[WHERE_MAX];
        snprintf(hw, sizeof hw, "%s.hashes", w);
        if ((st = lp_md_parse_hashes(hashes, hw, &h, err)))
            return st;
    }
    md->targets = targets;
    if (!deleg)
        return LP_OK;
    snprintf(w, sizeof w, "%s.delegations", where);
    json_t *keys, *roles;
    if ((st = lp_json_get_object(deleg, w, "keys", &keys, err)) ||
        (st = lp_json_get_array(deleg, w, "roles", &roles, err)))
        return st;
    char kw[WHERE_MAX];
    snprintf(kw, sizeof kw, "%s.keys", w);
    if ((st = parse_keys(keys, kw, md, err)))
        return st;
    size_t n = json_array_size(roles);
    if (!(md->delegations = calloc(n ? n : 1, sizeof *md->delegations)))
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        char rw[WHERE_MAX];
        snprintf(rw, sizeof rw, "%s.roles[%zu]", w, i);
        md->ndelegations++;
        if ((st = parse_delegated_role(json_array_get(roles, i), rw, &md->delegations[i], err)))
            return st;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(md->delegations[j].name, md->delegations[i].name))
                return lp_error_set(err, LP_ERR_MALFORMED, "%s: role \"%.80s\" is delegated twice",
                                    w, md->delegations[i].name);
    }
    return LP_OK;
}

static lp_status parse_signatures(lp_md *md, const json_t *sigs, const char *where, lp_error *err)
{
    size_t n = json_array_size(sigs);
    if (!(md->sigs = calloc(n ? n : 1, sizeof *md->sigs)))
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        char w[WHERE_MAX];
        snprintf(w, sizeof w, "%s.signatures[%zu]", where, i);
        const json_t *s = json_array_get(sigs, i);
        if (!json_is_object(s))
            return lp_error_set(err, LP_ERR_MALFORMED, "%s: expected an object", w);
        const char *keyid, *sighex;
        lp_status st;
        if ((st = lp_json_get_string(s, w, "keyid", &keyid, err)) ||
            (st = lp_json_get_string(s, w, "sig", &sighex, err)))
            return st;
        struct lp_md_sig *d = &md->sigs[md->nsigs++];
        if (!(d->keyid = strdup(keyid)))
            return oom(err);
        /* A signature that is not valid hex can never verify: keep it empty
         * so it simply does not count, as any other bad signature. */
        size_t hl = strlen(sighex);
        if (hl > 8192)
            continue;
        if (!(d->sig = malloc(hl / 2 + 1)))
            return oom(err);
        if (lp_hex_decode(sighex, d->sig, hl / 2 + 1, &d->len, NULL) != LP_OK)
            d->len = 0;
    }
    return LP_OK;
}

static lp_status parse_common(lp_md *md, const json_t *sig, const char *where, lp_error *err)
{
    const char *type, *spec, *expires;
    int64_t version;
    lp_status st;
    if ((st = lp_json_get_string(sig, where, "_type", &type, err)))
        return st;
    if (strcmp(type, lp_md_type_name(md->type)))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s._type: expected \"%s\", got \"%.40s\"",
                            where, lp_md_type_name(md->type), type);
    if ((st = lp_json_get_string(sig, where, "spec_version", &spec, err)) ||
        (st = lp_json_get_int(sig, where, "version", 1, INT64_MAX, &version, err)) ||
        (st = lp_json_get_string(sig, where, "expires", &expires, err)))
        return st;
    /* Same major version, at most three dot-separated numbers. */
    unsigned a, b, c;
    char tail;
    int k = sscanf(spec, "%u.%u.%u%c", &a, &b, &c, &tail);
    if (k < 2 || k > 3 || (k == 2 && sscanf(spec, "%u.%u%c", &a, &b, &tail) != 2))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s.spec_version: \"%.40s\" is not a version",
                            where, spec);
    if (a != 1)
        return lp_error_set(err, LP_ERR_UNSUPPORTED,
                            "%s.spec_version: %.40s is not supported (major version 1 only)",
                            where, spec);
    md->version = (uint64_t)version;
    char w[WHERE_MAX];
    snprintf(w, sizeof w, "%s.expires", where);
    if ((st = lp_time_parse(expires, &md->expires, err)))
        return lp_error_prefix(err, st, "%s", w);
    return LP_OK;
}

lp_status lp_md_parse(const void *data, size_t len, lp_md_type type, const char *where,
                      lp_md **out, lp_error *err)
{
    *out = NULL;
    lp_md *md = calloc(1, sizeof *md);
    if (!md)
        return oom(err);
    md->type = type;
    lp_json_limits lim = {.max_bytes = len + 1, .max_depth = LP_JSON_DEFAULT_MAX_DEPTH};
    lp_status st = lp_json_parse(data, len, &lim, &md->doc, err);
    if (st) {
        lp_md_free(md);
        return lp_error_prefix(err, st, "%s", where);
    }
    json_t *sig, *sigs;
    if (!json_is_object(md->doc)) {
        lp_md_free(md);
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: expected a JSON object", where);
    }
    if ((st = lp_json_get_object(md->doc, where, "signed", &sig, err)) ||
        (st = lp_json_get_array(md->doc, where, "signatures", &sigs, err))) {
        lp_md_free(md);
        return st;
    }
    char w[WHERE_MAX];
    snprintf(w, sizeof w, "%s: signed", where);
    size_t clen;
    char *canon;
    if ((st = lp_cjson_dumps(sig, &canon, &clen, err))) {
        lp_md_free(md);
        return lp_error_prefix(err, st, "%s", w);
    }
    md->canonical = (uint8_t *)canon;
    md->canonical_len = clen;
    if ((st = parse_signatures(md, sigs, where, err)) || (st = parse_common(md, sig, w, err))) {
        lp_md_free(md);
        return st;
    }
    switch (type) {
    case LP_MD_ROOT: st = parse_root(md, sig, w, err); break;
    case LP_MD_TIMESTAMP:
    case LP_MD_SNAPSHOT: st = parse_meta(md, sig, w, err); break;
    case LP_MD_TARGETS: st = parse_targets(md, sig, w, err); break;
    }
    if (st) {
        lp_md_free(md);
        return st;
    }
    *out = md;
    return LP_OK;
}

static const lp_md_key *find_key(const lp_md_key *keys, size_t nkeys, const char *keyid)
{
    for (size_t i = 0; i < nkeys; i++)
        if (!strcmp(keys[i].keyid, keyid))
            return &keys[i];
    return NULL;
}

lp_status lp_md_verify(const lp_md_key *keys, size_t nkeys, const lp_md_role *role,
                       const lp_md *md, const char *what, lp_error *err)
{
    /* Walk the role's key IDs, not the signatures: only authorised keys
     * count, each once, and a key listed under two IDs still counts once
     * (compared by its public value). */
    const char **counted = calloc(role->nkeyids ? role->nkeyids : 1, sizeof *counted);
    if (!counted)
        return oom(err);
    uint64_t valid = 0;
    for (size_t i = 0; i < role->nkeyids; i++) {
        const lp_md_key *k = find_key(keys, nkeys, role->keyids[i]);
        if (!k)
            continue;
        bool seen = false;
        for (uint64_t j = 0; j < valid; j++)
            if (!strcmp(counted[j], k->public_value))
                seen = true;
        if (seen)
            continue;
        for (size_t s = 0; s < md->nsigs; s++) {
            if (strcmp(md->sigs[s].keyid, k->keyid) || !md->sigs[s].len)
                continue;
            if (lp_key_verify(k->key, md->canonical, md->canonical_len, md->sigs[s].sig,
                              md->sigs[s].len, NULL) == LP_OK) {
                counted[valid++] = k->public_value;
                break;
            }
        }
    }
    free(counted);
    if (valid >= role->threshold)
        return LP_OK;
    return lp_error_set(err, LP_ERR_BAD_SIGNATURE,
                        "%s: signature threshold not met for role %s: %llu of %llu required "
                        "valid signatures by authorised keys",
                        what, role->name ? role->name : "?", (unsigned long long)valid,
                        (unsigned long long)role->threshold);
}

const lp_md_metafile *lp_md_find_meta(const lp_md *md, const char *name)
{
    for (size_t i = 0; i < md->nmeta; i++)
        if (!strcmp(md->meta[i].name, name))
            return &md->meta[i];
    return NULL;
}

lp_status lp_md_check_meta(const lp_md_metafile *mf, const void *data, size_t len, lp_error *err)
{
    if (mf->has_length && mf->length != len)
        return lp_error_set(err, LP_ERR_LENGTH_MISMATCH, "%s: length %zu, expected %llu",
                            mf->name, len, (unsigned long long)mf->length);
    if (!mf->has_hashes)
        return LP_OK;
    bool any = false;
    for (int a = 0; a < 2; a++) {
        if (!mf->hashes.has[a])
            continue;
        any = true;
        uint8_t d[LP_HASH_MAX_LEN];
        lp_status st = lp_hash_buf((lp_hash_alg)a, data, len, d, err);
        if (st)
            return st;
        if (!lp_mem_equal(d, mf->hashes.digest[a], lp_hash_len((lp_hash_alg)a)))
            return lp_error_set(err, LP_ERR_HASH_MISMATCH, "%s: %s hash does not match",
                                mf->name, lp_hash_alg_name((lp_hash_alg)a));
    }
    if (!any)
        return lp_error_set(err, LP_ERR_UNSUPPORTED, "%s: none of the listed hashes is supported",
                            mf->name);
    return LP_OK;
}

bool lp_md_role_same_keys(const lp_md_role *a, const lp_md_role *b)
{
    if (a->threshold != b->threshold || a->nkeyids != b->nkeyids)
        return false;
    for (size_t i = 0; i < a->nkeyids; i++) {
        bool found = false;
        for (size_t j = 0; j < b->nkeyids && !found; j++)
            found = !strcmp(a->keyids[i], b->keyids[j]);
        if (!found)
            return false;
    }
    return true;
}

bool lp_md_role_matches(const lp_md_role *role, const char *name)
{
    for (size_t i = 0; i < role->npaths; i++)
        if (lp_tuf_path_match(role->paths[i], name))
            return true;
    if (!role->nprefixes)
        return false;
    uint8_t d[LP_HASH_MAX_LEN];
    char hex[2 * LP_SHA256_LEN + 1];
    if (lp_hash_buf(LP_HASH_SHA256, name, strlen(name), d, NULL) != LP_OK)
        return false;
    lp_hex_encode(d, LP_SHA256_LEN, hex);
    for (size_t i = 0; i < role->nprefixes; i++)
        if (!strncmp(hex, role->hash_prefixes[i], strlen(role->hash_prefixes[i])))
            return true;
    return false;
}
