/*
 * tufkey.h — keys in TUF's JSON form and their key IDs (internal).
 *
 * A TUF key object is {"keytype": …, "scheme": …, "keyval": {"public": …}}
 * plus any fields a newer writer added.  Its key ID is the sha256 of the
 * canonical JSON of the whole object, unknown fields included, so the ID is
 * always computed from the object as received, never rebuilt.
 */
#ifndef LP_TUF_TUFKEY_H
#define LP_TUF_TUFKEY_H

#include "livepush/key.h"

#include <jansson.h>

/* Key ID (64 lower-case hex + NUL) of a key object. */
lp_status lp_tuf_keyid(const json_t *keyobj, char out[65], lp_error *err);

/* New key object (caller owns, json_decref) for the public half of key. */
lp_status lp_tuf_key_json_new(const lp_key *key, json_t **out, lp_error *err);

/* Parses a key object into a public key; `where` names it for messages.
 * Unknown key types or schemes give LP_ERR_UNSUPPORTED, bad values
 * LP_ERR_MALFORMED. */
lp_status lp_tuf_key_from_json(const json_t *keyobj, const char *where, lp_key **out,
                               lp_error *err);

#endif
