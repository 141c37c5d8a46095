/*
 * repo_offline.c — roles signed away from the repository (see
 * livepush/tuf_repo.h, "Roles signed elsewhere").
 *
 * The repository can live on a server that holds only the online keys
 * (snapshot, timestamp) while root and targets are signed on the
 * publisher's machine.  Two steps:
 *   1. lp_tuf_repo_prepare renders the role's next `signed` object exactly
 *      as publish will (lp_repo_next_signed shares publish's planning and
 *      building) and keeps its canonical bytes, version and expiry in the
 *      role;
 *   2. lp_tuf_repo_add_signature checks each signature made elsewhere over
 *      those bytes with the key the role lists under that key ID, and keeps
 *      it.  Publish (repo_publish.c) rebuilds the role, refuses if the
 *      bytes differ from the prepared ones, and counts the attached
 *      signatures with those of the keys it was given (repo_sign.c).
 * A prepared role keeps its expiry from the prepare, so the bytes do not
 * drift with the clock between the two steps; only an edit changes them.
 * Preparing again gives the same bytes (and keeps the signatures) unless
 * something changed, in which case the old signatures are dropped and the
 * role is prepared afresh.
 *
 * lp_tuf_repo_assemble gives the file of a prepared role without
 * publishing: this is how a root is made on the publisher's machine, and
 * lp_tuf_repo_create_from_root starts a server's repository from that file.
 * Everything that can be refused is checked before anything is written.
 */
#include "tuf/repo_priv.h"

#include "core/file.h"
#include "core/timeutil.h"
#include "livepush/hash.h"
#include "tuf/json.h"
#include "tuf/tufkey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a client accepts for a root by default (lp_tuf_limits). */
#define ROOT_MAX_BYTES (512u * 1024)

static lp_status oom(lp_error *err)
{
    return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
}

static void sig_clear(repo_sig *s)
{
    free(s->keyid);
    free(s->hex);
    free(s->sig);
    memset(s, 0, sizeof *s);
}

void lp_repo_unprepare(repo_role *ro)
{
    for (size_t k = 0; k < ro->natt; k++)
        sig_clear(&ro->att[k]);
    free(ro->att);
    free(ro->prep_canon);
    ro->att = NULL;
    ro->natt = 0;
    ro->prep_canon = NULL;
    ro->prep_len = 0;
    ro->prep_version = 0;
    ro->prep_expires = 0;
    ro->prepared = false;
}

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

/* ---- prepare --------------------------------------------------------- */

/* Canonical bytes of role i's next `signed` object. */
static lp_status next_canonical(lp_tuf_repo *r, int i, char **canon, size_t *len,
                                uint64_t *version, int64_t *expires, lp_error *err)
{
    json_t *obj;
    lp_status st = lp_repo_next_signed(r, i, &obj, version, expires, err);
    if (st)
        return st;
    st = lp_cjson_dumps(obj, canon, len, err);
    json_decref(obj);
    return st;
}

lp_status lp_tuf_repo_prepare(lp_tuf_repo *r, const char *role, char **canonical_signed,
                              size_t *len, lp_error *err)
{
    if (canonical_signed)
        *canonical_signed = NULL;
    if (len)
        *len = 0;
    if (!r || !canonical_signed || !len)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "prepare: NULL argument");
    int i = -1;
    lp_status st = find_role(r, role, &i, err);
    if (st)
        return lp_error_prefix(err, st, "prepare");
    if (r->broken)
        return lp_error_set(err, LP_ERR_STATE,
                            "prepare %s: an earlier publish failed while writing; reopen the "
                            "repository with lp_tuf_repo_open", role);
    repo_role *ro = &r->roles[i];
    bool was_changed = ro->changed;
    ro->changed = true;
    char *canon = NULL;
    size_t clen = 0;
    uint64_t version = 0;
    int64_t expires = 0;
    st = next_canonical(r, i, &canon, &clen, &version, &expires, err);
    if (!st && ro->prepared &&
        (version != ro->prep_version || clen != ro->prep_len ||
         memcmp(canon, ro->prep_canon, clen))) {
        /* Something changed since the last prepare: start afresh, with the
         * expiry the role would get now. */
        free(canon);
        canon = NULL;
        ro->prepared = false;
        st = next_canonical(r, i, &canon, &clen, &version, &expires, err);
        ro->prepared = true;
        if (!st)
            lp_repo_unprepare(ro);
    }
    char *copy = NULL;
    if (!st && !(copy = malloc(clen + 1)))
        st = oom(err);
    if (st) {
        free(canon);
        ro->changed = was_changed;
        return lp_error_prefix(err, st, "prepare %s", role);
    }
    memcpy(copy, canon, clen + 1);
    if (!ro->prepared) {
        ro->prepared = true;
        ro->prep_canon = canon;
        ro->prep_len = clen;
        ro->prep_version = version;
        ro->prep_expires = expires;
    } else {
        free(canon);
    }
    *canonical_signed = copy;
    *len = clen;
    return LP_OK;
}

/* ---- attaching signatures -------------------------------------------- */

/* Whether role i may be signed by key ID `keyid`: it lists it (a new root
 * also accepts the previous root's root keys). */
static bool authorised(const lp_tuf_repo *r, int i, const char *keyid)
{
    const repo_role *ro = &r->roles[i];
    if (lp_repo_strlist_has(ro->keyids, ro->nkeyids, keyid))
        return true;
    return i == LP_MD_ROOT && r->has_prev_root &&
           lp_repo_strlist_has(r->prev_keyids, r->nprev, keyid);
}

lp_status lp_tuf_repo_add_signature(lp_tuf_repo *r, const char *role, const char *keyid,
                                    const char *sig_hex, lp_error *err)
{
    if (!r)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "add signature: no repository");
    int i = -1;
    lp_status st = find_role(r, role, &i, err);
    if (st)
        return lp_error_prefix(err, st, "add signature");
    repo_role *ro = &r->roles[i];
    if (!ro->prepared)
        return lp_error_set(err, LP_ERR_STATE,
                            "add signature to %s: the role has not been prepared for signing "
                            "(lp_tuf_repo_prepare)", role);
    if (!keyid || !*keyid || strlen(keyid) > 64)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "add signature to %s: key ID missing or longer than 64 characters",
                            role);
    if (!sig_hex)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "add signature to %s: no signature given",
                            role);
    size_t hl = strlen(sig_hex);
    if (hl == 0 || hl > LP_REPO_SIG_HEX_MAX)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "add signature to %s by key %s: signature of %zu hex digits (1 to "
                            "%d allowed)", role, keyid, hl, LP_REPO_SIG_HEX_MAX);
    if (!authorised(r, i, keyid))
        return lp_error_set(err, LP_ERR_BAD_SIGNATURE,
                            "add signature to %s: key %s is not authorised to sign role %s%s",
                            role, keyid, role,
                            i == LP_MD_ROOT && r->has_prev_root
                                ? " (neither the new root nor the previous root lists it)"
                                : "");
    repo_sig s = {0};
    lp_key *key = NULL;
    if (!(s.sig = malloc(hl / 2 + 1)) || !(s.keyid = strdup(keyid)) ||
        !(s.hex = malloc(hl + 1))) {
        sig_clear(&s);
        return oom(err);
    }
    if ((st = lp_hex_decode(sig_hex, s.sig, hl / 2 + 1, &s.len, err))) {
        sig_clear(&s);
        return lp_error_prefix(err, LP_ERR_MALFORMED, "add signature to %s by key %s", role,
                               keyid);
    }
    lp_hex_encode(s.sig, s.len, s.hex);
    const json_t *obj = json_object_get(lp_repo_scope(r, i), keyid);
    if (!obj) {
        sig_clear(&s);
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "add signature to %s: role lists key ID %s but no key object for it",
                            role, keyid);
    }
    if ((st = lp_tuf_key_from_json(obj, keyid, &key, err))) {
        sig_clear(&s);
        return lp_error_prefix(err, st, "add signature to %s", role);
    }
    st = lp_key_verify(key, ro->prep_canon, ro->prep_len, s.sig, s.len, err);
    lp_key_free(key);
    if (st == LP_ERR_BAD_SIGNATURE)
        st = lp_error_set(err, LP_ERR_BAD_SIGNATURE,
                          "add signature to %s: the signature by key %s does not verify over "
                          "role %s version %llu as prepared",
                          role, keyid, role, (unsigned long long)ro->prep_version);
    if (st) {
        sig_clear(&s);
        return st;
    }
    /* A key ID holds one signature: a new one replaces the old. */
    for (size_t k = 0; k < ro->natt; k++) {
        if (!strcmp(ro->att[k].keyid, keyid)) {
            sig_clear(&ro->att[k]);
            ro->att[k] = s;
            return LP_OK;
        }
    }
    if (ro->natt >= LP_REPO_MAX_ATTACHED) {
        sig_clear(&s);
        return lp_error_set(err, LP_ERR_TOO_LARGE, "add signature to %s: more than %d signatures",
                            role, LP_REPO_MAX_ATTACHED);
    }
    repo_sig *na = realloc(ro->att, (ro->natt + 1) * sizeof *na);
    if (!na) {
        sig_clear(&s);
        return oom(err);
    }
    ro->att = na;
    ro->att[ro->natt++] = s;
    return LP_OK;
}

/* ---- assembling a prepared role's file ------------------------------- */

lp_status lp_tuf_repo_assemble(lp_tuf_repo *r, const char *role, char **bytes, size_t *len,
                               lp_error *err)
{
    if (bytes)
        *bytes = NULL;
    if (len)
        *len = 0;
    if (!r || !bytes || !len)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "assemble: NULL argument");
    int i = -1;
    lp_status st = find_role(r, role, &i, err);
    if (st)
        return lp_error_prefix(err, st, "assemble");
    repo_role *ro = &r->roles[i];
    if (!ro->prepared)
        return lp_error_set(err, LP_ERR_STATE,
                            "assemble %s: the role has not been prepared for signing", role);
    json_t *obj = NULL;
    uint64_t version = 0;
    int64_t expires = 0;
    char *canon = NULL;
    size_t clen = 0;
    st = lp_repo_next_signed(r, i, &obj, &version, &expires, err);
    if (!st)
        st = lp_cjson_dumps(obj, &canon, &clen, err);
    if (!st && (version != ro->prep_version || clen != ro->prep_len ||
                memcmp(canon, ro->prep_canon, clen)))
        st = lp_error_set(err, LP_ERR_STATE,
                          "role %s changed after it was prepared for signing (version %llu); "
                          "prepare it again and collect new signatures",
                          role, (unsigned long long)ro->prep_version);
    free(canon);
    if (!st)
        st = lp_repo_sign_role(r, i, obj, version, NULL, 0, true, bytes, len, err);
    json_decref(obj);
    return st ? lp_error_prefix(err, st, "assemble %s", role) : LP_OK;
}

/* ---- a repository from a root made elsewhere ------------------------- */

/* Checks a first root received from outside, as a client would, and what
 * the writer needs of it. */
static lp_status check_first_root(const lp_md *md, lp_error *err)
{
    if (md->version != 1)
        return lp_error_set(err, LP_ERR_VERSION_MISMATCH,
                            "root has version %llu; a new repository starts from version 1",
                            (unsigned long long)md->version);
    if (!md->consistent_snapshot)
        return lp_error_set(err, LP_ERR_UNSUPPORTED,
                            "root does not set consistent_snapshot: this writer keeps consistent "
                            "snapshots only");
    const json_t *keys = json_object_get(json_object_get(md->doc, "signed"), "keys");
    for (int t = 0; t < 4; t++) {
        const lp_md_role *ro = &md->roles[t];
        for (size_t k = 0; k < ro->nkeyids; k++)
            if (!json_object_get(keys, ro->keyids[k]))
                return lp_error_set(err, LP_ERR_MALFORMED,
                                    "root: role %s lists key ID %.64s but signed.keys has no "
                                    "key object for it",
                                    ro->name, ro->keyids[k]);
        if (ro->threshold > ro->nkeyids)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "root: role %s needs %llu signature%s but lists %zu key%s: it "
                                "could never be signed",
                                ro->name, (unsigned long long)ro->threshold,
                                ro->threshold == 1 ? "" : "s", ro->nkeyids,
                                ro->nkeyids == 1 ? "" : "s");
        if (ro->threshold > UINT32_MAX)
            return lp_error_set(err, LP_ERR_MALFORMED, "root: role %s: threshold too large",
                                ro->name);
    }
    lp_status st = lp_md_verify(md->keys, md->nkeys, &md->roles[LP_MD_ROOT], md,
                                "root version 1 (not signed by a threshold of its own root keys)",
                                err);
    if (st)
        return st;
    int64_t now = lp_time_now();
    if (md->expires <= now) {
        char exp[21];
        lp_time_format(md->expires, exp);
        return lp_error_set(err, LP_ERR_EXPIRED, "root expired at %s", exp);
    }
    return LP_OK;
}

static lp_status write_root(const lp_tuf_repo *r, const char *file, const void *data, size_t len,
                            lp_error *err)
{
    char *path = lp_path_join(r->metadir, file);
    if (!path)
        return oom(err);
    lp_status st = lp_file_write_atomic(path, data, len, 0644, err);
    free(path);
    return st;
}

lp_status lp_tuf_repo_create_from_root(lp_tuf_repo **out, const char *dir, const void *root,
                                       size_t len, lp_error *err)
{
    if (out)
        *out = NULL;
    if (!out || !dir || !*dir || !root)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "create from root: missing argument");
    if (len > ROOT_MAX_BYTES)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "create from root: root of %zu bytes is larger than the %u bytes "
                            "clients accept",
                            len, ROOT_MAX_BYTES);
    lp_md *md = NULL;
    lp_status st = lp_md_parse(root, len, LP_MD_ROOT, "root", &md, err);
    if (!st)
        st = check_first_root(md, err);
    lp_md_free(md);
    if (st)
        return lp_error_prefix(err, st, "create from root");
    lp_tuf_repo *r;
    if ((st = lp_repo_alloc(&r, dir, err)))
        return st;
    if (lp_repo_has_metadata(r->metadir)) {
        st = lp_error_set(err, LP_ERR_EXISTS, "create from root: %s already holds TUF metadata",
                          r->metadir);
        lp_tuf_repo_free(r);
        return st;
    }
    json_decref(r->root_keys);
    r->root_keys = NULL;
    if ((st = lp_file_mkdirs(r->metadir, 0755, err)) ||
        (st = lp_file_mkdirs(r->targetsdir, 0755, err)) ||
        (st = write_root(r, "1.root.json", root, len, err)) ||
        (st = write_root(r, "root.json", root, len, err)) || (st = lp_repo_load(r, err))) {
        lp_tuf_repo_free(r);
        return lp_error_prefix(err, st, "create from root in %s", dir);
    }
    *out = r;
    return LP_OK;
}
