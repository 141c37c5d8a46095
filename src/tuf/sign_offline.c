/*
 * sign_offline.c — the publisher's side of offline signing (see
 * livepush/tuf_sign.h).
 *
 * The text received is turned back into a JSON tree and re-encoded, so the
 * signature input is always the canonical JSON of the tree, whatever the
 * text's formatting.  Canonical JSON writes control characters inside
 * strings raw, which JSON parsers refuse; before parsing, such bytes inside
 * string literals (and only there) are rewritten as \u00XX escapes, which
 * denote the same string (lp_tuf_canonical_to_json, public so a publisher
 * can read the bytes it checks the same way), so the canonical bytes
 * lp_tuf_repo_prepare hands out can be signed as they are.  Outside
 * strings nothing is rewritten and the strict parser (tuf/json.c) sees the
 * text as it came.
 *
 * The tree is then wrapped in an envelope with no signatures and run
 * through the metadata parser the client uses (tuf/metadata.c), which
 * checks every field of the type `_type` names; the canonical bytes it
 * computes are what is signed.
 */
#include "livepush/tuf_sign.h"

#include "livepush/hash.h"
#include "tuf/json.h"
#include "tuf/metadata.h"
#include "tuf/tufkey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIGNED_MAX_BYTES (64u * 1024 * 1024)

static lp_status oom(lp_error *err)
{
    return lp_error_set(err, LP_ERR_NOMEM, "out of memory signing metadata");
}

lp_status lp_tuf_key_id(const lp_key *key, char keyid[65], lp_error *err)
{
    if (!key || !keyid)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "key ID: NULL argument");
    json_t *obj;
    lp_status st = lp_tuf_key_json_new(key, &obj, err);
    if (st)
        return lp_error_prefix(err, st, "key ID");
    st = lp_tuf_keyid(obj, keyid, err);
    json_decref(obj);
    return st;
}

lp_status lp_tuf_canonical_to_json(const char *text, size_t len, char **out, size_t *outlen,
                                   lp_error *err)
{
    if (out)
        *out = NULL;
    if (!text || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "canonical JSON: NULL argument");
    if (len > SIGNED_MAX_BYTES)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "canonical JSON of %zu bytes exceeds the limit of %u bytes", len,
                            SIGNED_MAX_BYTES);
    size_t extra = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (!in_str) {
            in_str = c == '"';
        } else if (esc) {
            esc = false;
        } else if (c == '\\') {
            esc = true;
        } else if (c == '"') {
            in_str = false;
        } else if (c < 0x20) {
            extra += 5;
        }
    }
    char *o = malloc(len + extra + 1);
    if (!o)
        return oom(err);
    size_t n = 0;
    in_str = esc = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (in_str && !esc && c < 0x20) {
            snprintf(o + n, 7, "\\u%04x", c);
            n += 6;
            continue;
        }
        o[n++] = (char)c;
        if (!in_str)
            in_str = c == '"';
        else if (esc)
            esc = false;
        else if (c == '\\')
            esc = true;
        else if (c == '"')
            in_str = false;
    }
    o[n] = 0;
    *out = o;
    if (outlen)
        *outlen = n;
    return LP_OK;
}

/* Parses the text and checks it as metadata: *md holds the canonical bytes. */
static lp_status parse_signed(const char *text, size_t len, lp_md **md, lp_error *err)
{
    if (len > SIGNED_MAX_BYTES)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "signed portion of %zu bytes exceeds the limit of %u bytes", len,
                            SIGNED_MAX_BYTES);
    char *esc = NULL;
    size_t elen = 0;
    lp_status st = lp_tuf_canonical_to_json(text, len, &esc, &elen, err);
    if (st)
        return st;
    lp_json_limits lim = {.max_bytes = elen ? elen : 1, .max_depth = LP_JSON_DEFAULT_MAX_DEPTH};
    json_t *v = NULL;
    st = lp_json_parse(esc, elen, &lim, &v, err);
    free(esc);
    if (st)
        return lp_error_prefix(err, st, "signed portion");
    const char *type = json_string_value(json_object_get(v, "_type"));
    lp_md_type t = LP_MD_ROOT;
    bool known = false;
    for (int k = LP_MD_ROOT; k <= LP_MD_TARGETS && type && !known; k++)
        if (!strcmp(type, lp_md_type_name((lp_md_type)k))) {
            t = (lp_md_type)k;
            known = true;
        }
    if (!json_is_object(v) || !known) {
        json_decref(v);
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "signed portion: expected an object whose _type is \"root\", "
                            "\"targets\", \"snapshot\" or \"timestamp\"");
    }
    json_t *env = json_pack("{s:[], s:o}", "signatures", "signed", v);
    char *bytes = NULL;
    size_t blen = 0;
    st = env ? lp_json_dump_compact(env, &bytes, &blen, err) : oom(err);
    json_decref(env);
    if (st)
        return lp_error_prefix(err, st, "signed portion");
    st = lp_md_parse(bytes, blen, t, "metadata to sign", md, err);
    free(bytes);
    return st;
}

lp_status lp_tuf_sign_signed(const lp_key *key, const char *signed_json, size_t len,
                             char keyid[65], char **sig_hex, lp_error *err)
{
    if (sig_hex)
        *sig_hex = NULL;
    if (!key || !signed_json || !keyid || !sig_hex)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "sign: NULL argument");
    if (!lp_key_has_private(key))
        return lp_error_set(err, LP_ERR_STATE, "sign: the key has no private half");
    char id[65];
    lp_md *md = NULL;
    lp_status st = lp_tuf_key_id(key, id, err);
    if (!st)
        st = parse_signed(signed_json, len, &md, err);
    if (st)
        return lp_error_prefix(err, st, "sign");
    uint8_t *sig = NULL;
    size_t slen = 0;
    st = lp_key_sign(key, md->canonical, md->canonical_len, &sig, &slen, err);
    lp_md_free(md);
    if (st)
        return lp_error_prefix(err, st, "sign");
    char *hex = malloc(2 * slen + 1);
    if (!hex) {
        free(sig);
        return oom(err);
    }
    lp_hex_encode(sig, slen, hex);
    free(sig);
    memcpy(keyid, id, sizeof id);
    *sig_hex = hex;
    return LP_OK;
}
