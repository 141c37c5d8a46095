/*
 * livepush/tuf_sign.h — signing TUF metadata away from the repository.
 *
 * The publisher's half of the two-step flow described in tuf_repo.h
 * ("Roles signed elsewhere"): a repository server that holds only the
 * online keys prepares a role (lp_tuf_repo_prepare) and sends its `signed`
 * portion to the publisher, who signs it here with a key that never leaves
 * the publisher's machine and sends back the key ID and the hex signature
 * for lp_tuf_repo_add_signature.
 *
 * What is signed is the canonical JSON (as securesystemslib encodes it) of
 * the `signed` object received, so the text may come in any JSON form: the
 * canonical bytes lp_tuf_repo_prepare gives, or an indented or compact
 * rendering of the same object.  Signing a differently formatted copy gives
 * the same signature input.
 *
 * Ownership: keys are borrowed for the call; strings returned through
 * `char **` are malloc'd and belong to the caller.
 */
#ifndef LIVEPUSH_TUF_SIGN_H
#define LIVEPUSH_TUF_SIGN_H

#include "livepush/error.h"
#include "livepush/key.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The TUF key ID of `key`'s public half: 64 lower-case hex digits and a NUL
 * in `keyid` -- the sha256 of the canonical JSON of the key object
 * {"keytype", "scheme", "keyval": {"public"}} that livepush writes into
 * metadata (lp_tuf_key_to_json gives the same ID along with the object).
 * A key object written by another tool with extra fields has another ID;
 * the ID that counts is the one the metadata lists.
 * LP_ERR_INVALID_ARG (NULL key), LP_ERR_NOMEM. */
lp_status lp_tuf_key_id(const lp_key *key, char keyid[65], lp_error *err);

/* Signs the `signed` portion of a TUF metadata file.
 *
 * `signed_json` (`len` bytes, no NUL needed, at most 64 MiB) is the JSON
 * text of the `signed` object.  It is parsed strictly (duplicate keys,
 * trailing bytes, invalid UTF-8, real numbers and nesting deeper than 64
 * levels are refused; raw control characters inside strings are accepted,
 * since canonical JSON writes them unescaped) and checked as TUF metadata
 * of the type its `_type` names ("root", "targets", "snapshot",
 * "timestamp"; a delegated role is "targets") by the same parser the
 * client uses, so a publisher never signs something no client would read.
 * Its canonical JSON is then signed with `key`.
 *
 * On success `keyid` holds the key's ID (as lp_tuf_key_id) and *sig_hex the
 * signature as lower-case hex (malloc'd, caller frees): exactly what
 * lp_tuf_repo_add_signature takes.
 *
 * Errors: LP_ERR_INVALID_ARG (NULL argument), LP_ERR_STATE (the key has no
 * private half), LP_ERR_TOO_LARGE, LP_ERR_MALFORMED (not JSON, not an
 * object, no valid `_type`, or a field of the metadata that is wrong, named
 * in the message), LP_ERR_UNSUPPORTED (spec_version with another major
 * version), LP_ERR_CRYPTO, LP_ERR_NOMEM.  Nothing is returned on error. */
lp_status lp_tuf_sign_signed(const lp_key *key, const char *signed_json, size_t len,
                             char keyid[65], char **sig_hex, lp_error *err);

/* Makes canonical JSON readable by any JSON parser.  Canonical JSON (the
 * bytes lp_tuf_repo_prepare hands out) writes control characters inside
 * strings raw, which JSON parsers refuse; this returns a copy of `text`
 * (`len` bytes, no NUL needed) in which each byte below 0x20 inside a
 * string literal, and only there, is written as a \u00XX escape.  The
 * result denotes the same JSON value, so a publisher can parse it (with
 * jansson or any parser) to check what it is asked to sign, while
 * lp_tuf_sign_signed still gets the bytes as received.  Nothing else is
 * checked: malformed text stays malformed for the parser to refuse.
 * *out is malloc'd and NUL-terminated (caller frees), *out_len (may be
 * NULL) its length without the NUL.  LP_ERR_INVALID_ARG (NULL argument),
 * LP_ERR_TOO_LARGE (more than 64 MiB), LP_ERR_NOMEM. */
lp_status lp_tuf_canonical_to_json(const char *text, size_t len, char **out, size_t *out_len,
                                   lp_error *err);

#ifdef __cplusplus
}
#endif
#endif
