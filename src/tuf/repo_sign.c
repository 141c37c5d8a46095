/*
 * repo_sign.c — signing one role's metadata for the repository writer.
 *
 * Which of the keys given to publish sign a role: those whose public key is
 * one the role lists (looked up in the role's key scope and compared by key
 * type and public value, so a key object written by another tool with extra
 * fields, and hence another key ID, is still recognised).  The threshold
 * counts distinct keys, as clients do.  A new root is also signed by the
 * keys of the previous root's root role that were given, and must meet that
 * role's threshold too: clients accept root N+1 only when a threshold of
 * root N's keys and of its own keys signed it.
 *
 * The signatures cover the canonical JSON of `signed`; the envelope is
 * written in python-tuf's compact form with signatures sorted by key ID.
 */
#include "tuf/repo_priv.h"

#include "livepush/hash.h"
#include "tuf/json.h"
#include "tuf/tufkey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lp_status oom(lp_error *err)
{
    return lp_error_set(err, LP_ERR_NOMEM, "out of memory signing metadata");
}

typedef struct sign_ctx {
    const lp_repo_signer *signers;
    size_t nsigners;
} sign_ctx;

/* Index of the signer holding the key `scope[keyid]`, or -1. */
static int find_signer(const sign_ctx *c, const json_t *scope, const char *keyid)
{
    const json_t *obj = json_object_get(scope, keyid);
    lp_key *k;
    if (!obj || lp_tuf_key_from_json(obj, keyid, &k, NULL) != LP_OK)
        return -1;
    char *pub = NULL;
    int found = -1;
    if (lp_key_public_value(k, &pub, NULL) == LP_OK)
        for (size_t s = 0; s < c->nsigners && found < 0; s++)
            if (c->signers[s].type == lp_key_get_type(k) && !strcmp(c->signers[s].pub, pub))
                found = (int)s;
    free(pub);
    lp_key_free(k);
    return found;
}

typedef struct sigent {
    const char *keyid;
    int signer;
} sigent;

static int sigent_cmp(const void *a, const void *b)
{
    return strcmp(((const sigent *)a)->keyid, ((const sigent *)b)->keyid);
}

/* Adds the signers for `keyids` to sigs (each key ID once) and checks the
 * threshold: the number of distinct signing keys among them.  `what` names
 * the metadata, `whose` the keys ("its keys", "the root keys of ..."). */
static lp_status gather(const sign_ctx *c, const json_t *scope, char *const *keyids, size_t n,
                        uint32_t threshold, sigent *sigs, size_t *nsigs, const char *what,
                        const char *whose, lp_error *err)
{
    bool *used = calloc(c->nsigners ? c->nsigners : 1, sizeof *used);
    if (!used)
        return oom(err);
    uint32_t distinct = 0;
    for (size_t k = 0; k < n; k++) {
        int s = find_signer(c, scope, keyids[k]);
        if (s < 0)
            continue;
        if (!used[s]) {
            used[s] = true;
            distinct++;
        }
        bool dup = false;
        for (size_t j = 0; j < *nsigs && !dup; j++)
            dup = !strcmp(sigs[j].keyid, keyids[k]);
        if (!dup)
            sigs[(*nsigs)++] = (sigent){keyids[k], s};
    }
    free(used);
    if (distinct >= threshold)
        return LP_OK;
    char ids[128] = "";
    size_t off = 0;
    for (size_t k = 0; k < n && k < 4; k++) {
        int w = snprintf(ids + off, sizeof ids - off, "%s%.8s...", k ? ", " : "", keyids[k]);
        if (w < 0 || (size_t)w >= sizeof ids - off)
            break;
        off += (size_t)w;
    }
    return lp_error_set(err, LP_ERR_BAD_SIGNATURE,
                        "%s: threshold not met: needs %u signature%s by %s (%s%s), the keys "
                        "given include %u",
                        what, threshold, threshold == 1 ? "" : "s", whose,
                        n ? ids : "none listed", n > 4 ? ", ..." : "", distinct);
}

/* The envelope's signatures array: each entry's key signs `canon`. */
static lp_status make_signatures(const sign_ctx *c, sigent *sigs, size_t nsigs, const char *canon,
                                 size_t clen, json_t **out, lp_error *err)
{
    json_t *arr = json_array();
    if (!arr)
        return oom(err);
    qsort(sigs, nsigs, sizeof *sigs, sigent_cmp);
    lp_status st = LP_OK;
    for (size_t k = 0; k < nsigs && !st; k++) {
        uint8_t *sig;
        size_t slen;
        if ((st = lp_key_sign(c->signers[sigs[k].signer].key, canon, clen, &sig, &slen, err)))
            break;
        char *hex = malloc(2 * slen + 1);
        if (hex)
            lp_hex_encode(sig, slen, hex);
        free(sig);
        json_t *o = hex ? json_pack("{s:s, s:s}", "keyid", sigs[k].keyid, "sig", hex) : NULL;
        free(hex);
        if (!o || json_array_append_new(arr, o))
            st = oom(err);
    }
    if (st) {
        json_decref(arr);
        return st;
    }
    *out = arr;
    return LP_OK;
}

lp_status lp_repo_sign_role(const lp_tuf_repo *r, int i, json_t *signed_obj, uint64_t version,
                            const lp_repo_signer *signers, size_t nsigners, char **bytes,
                            size_t *len, lp_error *err)
{
    const repo_role *ro = &r->roles[i];
    sign_ctx c = {signers, nsigners};
    size_t cap = ro->nkeyids + (i == LP_MD_ROOT ? r->nprev : 0);
    sigent *sigs = calloc(cap ? cap : 1, sizeof *sigs);
    if (!sigs)
        return oom(err);
    size_t nsigs = 0;
    char what[LP_REPO_ROLE_NAME_MAX + 48];
    snprintf(what, sizeof what, "role %s (version %llu)", ro->name, (unsigned long long)version);
    lp_status st = gather(&c, lp_repo_scope(r, i), ro->keyids, ro->nkeyids, ro->threshold, sigs,
                          &nsigs, what, "its keys", err);
    if (!st && i == LP_MD_ROOT && r->has_prev_root) {
        char whose[80];
        snprintf(whose, sizeof whose, "the root keys of the previous root (version %llu)",
                 (unsigned long long)ro->version);
        st = gather(&c, r->root_keys, r->prev_keyids, r->nprev, r->prev_threshold, sigs, &nsigs,
                    what, whose, err);
    }
    char *canon = NULL;
    size_t clen = 0;
    json_t *arr = NULL, *env = NULL;
    if (!st)
        st = lp_cjson_dumps(signed_obj, &canon, &clen, err);
    if (!st)
        st = make_signatures(&c, sigs, nsigs, canon, clen, &arr, err);
    if (!st && !(env = json_pack("{s:o, s:O}", "signatures", arr, "signed", signed_obj)))
        st = oom(err);
    if (!st)
        st = lp_json_dump_compact(env, bytes, len, err);
    json_decref(env);
    free(canon);
    free(sigs);
    return st;
}
