/*
 * publisher.c — the publisher's side for API tests (see publisher.h).
 *
 * The root is made exactly as a publisher makes it with the library: a
 * scratch repository (lp_tuf_repo_create) with the public keys of every
 * role, the root prepared, signed with lp_tuf_sign_signed, attached and
 * assembled.  The server's online keys are taken from the JSON the server
 * handed out, and their key IDs checked against the keys themselves.
 */
#include "publisher.h"

#include "livepush/tuf_repo.h"
#include "livepush/tuf_sign.h"
#include "tuf/tufkey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, const lp_error *err)
{
    fprintf(stderr, "publisher: %s: %s\n", what, err ? err->msg : "failed");
    return -1;
}

/* A public key from {"keyid", "key"}; NULL when it is not one, or the key
 * ID is not the key's. */
static lp_key *online_key(const json_t *online, const char *role)
{
    const json_t *e = json_object_get(online, role);
    lp_error err;
    lp_key *k = NULL;
    char id[65];
    if (lp_tuf_key_from_json(json_object_get(e, "key"), role, &k, &err) ||
        lp_tuf_key_id(k, id, &err)) {
        fail(role, &err);
        lp_key_free(k);
        return NULL;
    }
    const char *want = json_string_value(json_object_get(e, "keyid"));
    if (!want || strcmp(want, id) != 0) {
        fprintf(stderr, "publisher: %s key: key ID %s is not the key's (%s)\n", role,
                want ? want : "(none)", id);
        lp_key_free(k);
        return NULL;
    }
    return k;
}

char *lp_testpub_make_root(const char *scratch, const json_t *online, lp_key *const *root_keys,
                           size_t nroot, unsigned root_threshold, lp_key *const *rel_keys,
                           size_t nrel, unsigned rel_threshold, size_t *len)
{
    lp_error err;
    lp_tuf_repo *r = NULL;
    lp_key *snap = online_key(online, "snapshot"), *ts = online_key(online, "timestamp");
    char *canon = NULL, *bytes = NULL;
    size_t clen = 0;
    lp_status st = snap && ts ? lp_tuf_repo_create(&r, scratch, &err)
                              : lp_error_set(&err, LP_ERR_MALFORMED, "online keys");
    for (size_t i = 0; !st && i < nroot; i++)
        st = lp_tuf_repo_add_key(r, "root", root_keys[i], &err);
    for (size_t i = 0; !st && i < nrel; i++)
        st = lp_tuf_repo_add_key(r, "targets", rel_keys[i], &err);
    if (!st)
        st = lp_tuf_repo_set_threshold(r, "root", root_threshold, &err);
    if (!st)
        st = lp_tuf_repo_set_threshold(r, "targets", rel_threshold, &err);
    if (!st)
        st = lp_tuf_repo_add_key(r, "snapshot", snap, &err);
    if (!st)
        st = lp_tuf_repo_add_key(r, "timestamp", ts, &err);
    if (!st)
        st = lp_tuf_repo_prepare(r, "root", &canon, &clen, &err);
    for (size_t i = 0; !st && i < nroot; i++) {
        char kid[65], *sig = NULL;
        st = lp_tuf_sign_signed(root_keys[i], canon, clen, kid, &sig, &err);
        if (!st)
            st = lp_tuf_repo_add_signature(r, "root", kid, sig, &err);
        free(sig);
    }
    if (!st)
        st = lp_tuf_repo_assemble(r, "root", &bytes, len, &err);
    if (st)
        fail("making the root", &err);
    free(canon);
    lp_tuf_repo_free(r);
    lp_key_free(snap);
    lp_key_free(ts);
    return bytes;
}

char *lp_testpub_signatures(lp_key *const *keys, size_t n, const char *canon, size_t len)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        lp_error err;
        char kid[65], *sig = NULL;
        if (lp_tuf_sign_signed(keys[i], canon, len, kid, &sig, &err)) {
            fail("signing", &err);
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, json_pack("{s:s,s:s}", "keyid", kid, "sig", sig));
        free(sig);
    }
    json_t *body = json_pack("{s:o}", "signatures", arr);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return text;
}

char *lp_testpub_root_body(const char *root, size_t len)
{
    json_t *body = json_pack("{s:s%}", "root", root, len);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return text;
}

int lp_apitest_publisher_app(lp_apitest *t, const char *app, lp_key *root_key,
                             lp_key *const *rel_keys, size_t nrel, unsigned rel_threshold,
                             char **root_out, size_t *root_len)
{
    char req[256], scratch[4096], path[256];
    snprintf(req, sizeof req, "{\"name\":\"%s\",\"signing\":\"publisher\"}", app);
    snprintf(scratch, sizeof scratch, "%s/publisher-%s", t->dir, app);
    snprintf(path, sizeof path, "/api/v1/apps/%s/root", app);
    json_t *begun = lp_apitest_json(t, "POST", "/api/v1/apps", t->admin, req, 202);
    size_t len = 0;
    char *root = begun ? lp_testpub_make_root(scratch, json_object_get(begun, "online_keys"),
                                              &root_key, 1, 1, rel_keys, nrel, rel_threshold,
                                              &len)
                       : NULL;
    json_decref(begun);
    char *body = root ? lp_testpub_root_body(root, len) : NULL;
    json_t *made = body ? lp_apitest_json(t, "PUT", path, t->admin, body, 201) : NULL;
    free(body);
    int rc = made ? 0 : -1;
    json_decref(made);
    if (!rc && root_out) {
        *root_out = root;
        if (root_len)
            *root_len = len;
    } else {
        free(root);
    }
    return rc;
}
