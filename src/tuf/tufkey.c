/*
 * tufkey.c — TUF key objects <-> lp_key, and key IDs (see tufkey.h).
 */
#include "tuf/tufkey.h"

#include "livepush/hash.h"
#include "livepush/tuf.h"
#include "tuf/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

lp_status lp_tuf_keyid(const json_t *keyobj, char out[65], lp_error *err)
{
    char *canon;
    size_t len;
    lp_status st = lp_cjson_dumps(keyobj, &canon, &len, err);
    if (st)
        return lp_error_prefix(err, st, "key ID");
    uint8_t d[LP_HASH_MAX_LEN];
    st = lp_hash_buf(LP_HASH_SHA256, canon, len, d, err);
    free(canon);
    if (st)
        return st;
    lp_hex_encode(d, LP_SHA256_LEN, out);
    return LP_OK;
}

lp_status lp_tuf_key_json_new(const lp_key *key, json_t **out, lp_error *err)
{
    char *pub;
    lp_status st = lp_key_public_value(key, &pub, err);
    if (st)
        return st;
    lp_key_type t = lp_key_get_type(key);
    json_t *o = json_pack("{s:s, s:s, s:{s:s}}", "keytype", lp_key_type_name(t), "scheme",
                          lp_key_scheme_name(t), "keyval", "public", pub);
    free(pub);
    if (!o)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory building key object");
    *out = o;
    return LP_OK;
}

lp_status lp_tuf_key_from_json(const json_t *keyobj, const char *where, lp_key **out,
                               lp_error *err)
{
    if (!json_is_object(keyobj))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: expected a key object", where);
    const char *keytype, *scheme, *pub;
    json_t *keyval;
    lp_status st;
    if ((st = lp_json_get_string(keyobj, where, "keytype", &keytype, err)) ||
        (st = lp_json_get_string(keyobj, where, "scheme", &scheme, err)) ||
        (st = lp_json_get_object(keyobj, where, "keyval", &keyval, err)))
        return st;
    char kv_where[256];
    snprintf(kv_where, sizeof kv_where, "%s.keyval", where);
    if ((st = lp_json_get_string(keyval, kv_where, "public", &pub, err)))
        return st;
    lp_key_type type;
    if ((st = lp_key_type_from_names(keytype, scheme, &type, err)))
        return lp_error_prefix(err, st, "%s", where);
    if ((st = lp_key_from_public(out, type, pub, err)))
        return lp_error_prefix(err, st, "%s.keyval.public", where);
    return LP_OK;
}

lp_status lp_tuf_keyid_of_json(const char *key_json, size_t len, char out[65], lp_error *err)
{
    json_t *v;
    lp_status st = lp_json_parse(key_json, len, NULL, &v, err);
    if (st)
        return lp_error_prefix(err, st, "key object");
    if (!json_is_object(v)) {
        json_decref(v);
        return lp_error_set(err, LP_ERR_MALFORMED, "key object: expected a JSON object");
    }
    st = lp_tuf_keyid(v, out, err);
    json_decref(v);
    return st;
}

lp_status lp_tuf_key_to_json(const lp_key *key, char **json, char keyid_out[65], lp_error *err)
{
    json_t *o;
    lp_status st = lp_tuf_key_json_new(key, &o, err);
    if (st)
        return st;
    if (keyid_out && (st = lp_tuf_keyid(o, keyid_out, err))) {
        json_decref(o);
        return st;
    }
    size_t len;
    st = lp_json_dump_compact(o, json, &len, err);
    json_decref(o);
    return st;
}
