/*
 * repo_sign.c — signing one role's metadata for the repository writer.
 *
 * Where a role's signatures come from: signatures attached from outside
 * (lp_tuf_repo_add_signature, over the bytes lp_tuf_repo_prepare handed
 * out) and the keys given to publish.  A key given to publish signs a role
 * when its public key is one the role lists (looked up in the role's key
 * scope and compared by key type and public value, so a key object written
 * by another tool with extra fields, and hence another key ID, is still
 * recognised).  An attached signature counts when the role lists its key ID
 * and it verifies, checked again here over the exact bytes being signed.
 * The threshold counts distinct keys (by public value), as clients do.  A
 * new root is also signed by the keys of the previous root's root role
 * that were given or attached, and must meet that role's threshold too:
 * clients accept root N+1 only when a threshold of root N's keys and of its
 * own keys signed it.
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
    bool attached;       /* attached signatures are in use (for messages) */
    const repo_sig *att; /* attached signatures, or NULL */
    size_t natt;
    const char *canon;   /* the bytes signed */
    size_t clen;
    char **counted;      /* public values of the keys counted so far */
    size_t ncounted;
} sign_ctx;

/* One signature of the envelope: attached, or made by a signer. */
typedef struct sigent {
    const char *keyid;
    int signer;          /* index into signers when att is NULL */
    const repo_sig *att;
} sigent;

static int sigent_cmp(const void *a, const void *b)
{
    return strcmp(((const sigent *)a)->keyid, ((const sigent *)b)->keyid);
}

/* Finds a source of a valid signature by the key `scope[keyid]`: an
 * attached signature that verifies over the signed bytes, else a signer
 * holding the same public key.  Returns false when there is none (or the
 * key object cannot be read); otherwise fills *e and *pub (malloc'd public
 * value, for counting each key once). */
static bool find_source(const sign_ctx *c, const json_t *scope, const char *keyid, sigent *e,
                        char **pub)
{
    const json_t *obj = json_object_get(scope, keyid);
    lp_key *k;
    *pub = NULL;
    if (!obj || lp_tuf_key_from_json(obj, keyid, &k, NULL) != LP_OK)
        return false;
    bool found = false;
    if (lp_key_public_value(k, pub, NULL) != LP_OK) {
        lp_key_free(k);
        return false;
    }
    for (size_t a = 0; a < c->natt && !found; a++) {
        const repo_sig *s = &c->att[a];
        if (!strcmp(s->keyid, keyid) &&
            lp_key_verify(k, c->canon, c->clen, s->sig, s->len, NULL) == LP_OK) {
            *e = (sigent){keyid, -1, s};
            found = true;
        }
    }
    for (size_t s = 0; s < c->nsigners && !found; s++) {
        if (c->signers[s].type == lp_key_get_type(k) && !strcmp(c->signers[s].pub, *pub)) {
            *e = (sigent){keyid, (int)s, NULL};
            found = true;
        }
    }
    lp_key_free(k);
    if (!found) {
        free(*pub);
        *pub = NULL;
    }
    return found;
}

/* Adds the signatures for `keyids` to sigs (each key ID once) and checks
 * the threshold: the number of distinct keys among them.  `what` names the
 * metadata, `whose` the keys ("its keys", "the root keys of ..."). */
static lp_status gather(sign_ctx *c, const json_t *scope, char *const *keyids, size_t n,
                        uint32_t threshold, sigent *sigs, size_t *nsigs, const char *what,
                        const char *whose, lp_error *err)
{
    uint32_t distinct = 0;
    /* Keys counted by an earlier gather (the other root) start afresh. */
    for (size_t k = 0; k < c->ncounted; k++)
        free(c->counted[k]);
    c->ncounted = 0;
    for (size_t k = 0; k < n; k++) {
        sigent e;
        char *pub;
        if (!find_source(c, scope, keyids[k], &e, &pub))
            continue;
        bool seen = false;
        for (size_t j = 0; j < c->ncounted && !seen; j++)
            seen = !strcmp(c->counted[j], pub);
        if (seen) {
            free(pub);
        } else {
            c->counted[c->ncounted++] = pub;
            distinct++;
        }
        bool dup = false;
        for (size_t j = 0; j < *nsigs && !dup; j++)
            dup = !strcmp(sigs[j].keyid, keyids[k]);
        if (!dup)
            sigs[(*nsigs)++] = e;
    }
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
    const char *from = !c->attached       ? "the keys given include"
                       : c->nsigners == 0 ? "the signatures attached provide"
                                          : "the keys given and the signatures attached provide";
    return lp_error_set(err, LP_ERR_BAD_SIGNATURE,
                        "%s: threshold not met: needs %u signature%s by %s (%s%s), %s %u", what,
                        threshold, threshold == 1 ? "" : "s", whose, n ? ids : "none listed",
                        n > 4 ? ", ..." : "", from, distinct);
}

/* The envelope's signatures array: attached signatures as they are, the
 * others made by their signer over the canonical bytes. */
static lp_status make_signatures(const sign_ctx *c, sigent *sigs, size_t nsigs, json_t **out,
                                 lp_error *err)
{
    json_t *arr = json_array();
    if (!arr)
        return oom(err);
    qsort(sigs, nsigs, sizeof *sigs, sigent_cmp);
    lp_status st = LP_OK;
    for (size_t k = 0; k < nsigs && !st; k++) {
        char *hex = NULL;
        if (sigs[k].att) {
            hex = strdup(sigs[k].att->hex);
        } else {
            uint8_t *sig;
            size_t slen;
            if ((st = lp_key_sign(c->signers[sigs[k].signer].key, c->canon, c->clen, &sig, &slen,
                                  err)))
                break;
            if ((hex = malloc(2 * slen + 1)))
                lp_hex_encode(sig, slen, hex);
            free(sig);
        }
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
                            const lp_repo_signer *signers, size_t nsigners, bool attached,
                            char **bytes, size_t *len, lp_error *err)
{
    const repo_role *ro = &r->roles[i];
    sign_ctx c = {signers, nsigners, attached, NULL, 0, NULL, 0, NULL, 0};
    if (attached && ro->natt) {
        c.att = ro->att;
        c.natt = ro->natt;
    }
    size_t cap = ro->nkeyids + (i == LP_MD_ROOT ? r->nprev : 0);
    sigent *sigs = calloc(cap ? cap : 1, sizeof *sigs);
    c.counted = calloc(cap ? cap : 1, sizeof *c.counted);
    char *canon = NULL;
    size_t clen = 0;
    lp_status st = sigs && c.counted ? lp_cjson_dumps(signed_obj, &canon, &clen, err) : oom(err);
    c.canon = canon;
    c.clen = clen;
    size_t nsigs = 0;
    char what[LP_REPO_ROLE_NAME_MAX + 48];
    snprintf(what, sizeof what, "role %s (version %llu)", ro->name, (unsigned long long)version);
    if (!st)
        st = gather(&c, lp_repo_scope(r, i), ro->keyids, ro->nkeyids, ro->threshold, sigs, &nsigs,
                    what, "its keys", err);
    if (!st && i == LP_MD_ROOT && r->has_prev_root) {
        char whose[80];
        snprintf(whose, sizeof whose, "the root keys of the previous root (version %llu)",
                 (unsigned long long)ro->version);
        st = gather(&c, r->root_keys, r->prev_keyids, r->nprev, r->prev_threshold, sigs, &nsigs,
                    what, whose, err);
    }
    json_t *arr = NULL, *env = NULL;
    if (!st)
        st = make_signatures(&c, sigs, nsigs, &arr, err);
    if (!st && !(env = json_pack("{s:o, s:O}", "signatures", arr, "signed", signed_obj)))
        st = oom(err);
    if (!st)
        st = lp_json_dump_compact(env, bytes, len, err);
    json_decref(env);
    for (size_t k = 0; k < c.ncounted; k++)
        free(c.counted[k]);
    free(c.counted);
    free(canon);
    free(sigs);
    return st;
}
