/*
 * livepush/token.h — API tokens and their scopes.
 *
 * A token is what a publisher or an operator presents to the server's
 * management API, in an "Authorization: Bearer <token>" header.  Its text is
 *
 *     lp_<id>_<secret>                                    59 characters
 *
 *   id      12 characters of lower-case base32 (a-z, 2-7; 60 random bits).
 *           Not secret: it names the token in lists, logs and the database,
 *           and is how the server finds the stored record.
 *   secret  32 random bytes as unpadded base64url (43 characters of A-Z a-z
 *           0-9 - _).  Shown once, when the token is created; never stored.
 *
 * The server stores an lp_token_record: the id, the scopes, a 16-byte random
 * salt and HMAC-SHA256(key = salt, message = id || secret bytes), both as
 * lower-case hex.  Because the secret is 256 bits of randomness a single
 * keyed hash is enough: a slow password hash only helps secrets that can be
 * guessed, and nobody can enumerate 2^256 candidates (docs/tokens.md).  The
 * id is inside the hash, so a stored hash only ever matches the token it was
 * made for.
 *
 * Verification (lp_token_verify) recomputes the hash and compares it with
 * lp_mem_equal (constant time), so the time taken does not depend on where a
 * wrong secret differs.  When the presented id is unknown (or revoked) the
 * caller passes a NULL record: the same work is done against a built-in dummy
 * record and the same status and message come back, so neither timing nor
 * the answer tells an id that exists from one that does not.
 *
 * Scopes are a bit set (lp_scopes) with lower-case names, written as a
 * comma-separated list in canonical order:
 *
 *     admin     everything, including managing tokens; implies every scope
 *     upload    publish releases, rollbacks included (and `read`)
 *     download  fetch repository metadata and files of private apps
 *     read      read-only management API: apps, releases, channels
 *     approve   approve a release for rollout (and `read`)
 *     rollout   change channels, start and halt rollouts (and `read`)
 *
 * `download` is deliberately not implied by anything but `admin`, and implies
 * nothing: it is the scope for devices and mirrors, which must not read the
 * management API, and a publisher's token need not fetch private content.
 *
 * Messages never contain a presented secret (nor any part of a malformed
 * token or Authorization value): they name the part and the offset that is
 * wrong.  Only the id of a well-formed token is ever named.
 *
 * Everything here is pure computation on caller-owned, fixed-size values: no
 * allocation, no global state; every function may be called from any thread.
 * Random bytes come from OpenSSL's RAND_bytes.
 */
#ifndef LIVEPUSH_TOKEN_H
#define LIVEPUSH_TOKEN_H

#include "livepush/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LP_TOKEN_PREFIX "lp_"
#define LP_TOKEN_PREFIX_LEN 3
#define LP_TOKEN_ID_LEN 12     /* characters of base32 */
#define LP_TOKEN_SECRET_LEN 32 /* random bytes */
#define LP_TOKEN_SECRET_B64_LEN 43
#define LP_TOKEN_SALT_LEN 16
#define LP_TOKEN_HASH_LEN 32 /* HMAC-SHA256 */
/* Characters in a token's text: "lp_" + id + "_" + secret = 59. */
#define LP_TOKEN_TEXT_LEN (LP_TOKEN_PREFIX_LEN + LP_TOKEN_ID_LEN + 1 + LP_TOKEN_SECRET_B64_LEN)
/* Size of a buffer for a token's text with its NUL. */
#define LP_TOKEN_TEXT_SIZE (LP_TOKEN_TEXT_LEN + 1)
/* Longest Authorization header value lp_token_parse_bearer looks at. */
#define LP_TOKEN_HEADER_MAX 1024

typedef uint32_t lp_scopes;

#define LP_SCOPE_ADMIN ((lp_scopes)1u << 0)
#define LP_SCOPE_UPLOAD ((lp_scopes)1u << 1)
#define LP_SCOPE_DOWNLOAD ((lp_scopes)1u << 2)
#define LP_SCOPE_READ ((lp_scopes)1u << 3)
#define LP_SCOPE_APPROVE ((lp_scopes)1u << 4)
#define LP_SCOPE_ROLLOUT ((lp_scopes)1u << 5)
/* Every scope this version knows. */
#define LP_SCOPE_ALL                                                                            \
    (LP_SCOPE_ADMIN | LP_SCOPE_UPLOAD | LP_SCOPE_DOWNLOAD | LP_SCOPE_READ | LP_SCOPE_APPROVE | \
     LP_SCOPE_ROLLOUT)
/* Size of a buffer that holds any formatted scope list with its NUL. */
#define LP_SCOPES_TEXT_SIZE 64

/* What the server stores for a token (all text NUL-terminated). */
typedef struct lp_token_record {
    char id[LP_TOKEN_ID_LEN + 1];
    char salt_hex[2 * LP_TOKEN_SALT_LEN + 1]; /* 32 lower-case hex digits */
    char hash_hex[2 * LP_TOKEN_HASH_LEN + 1]; /* 64 lower-case hex digits */
    lp_scopes scopes;
} lp_token_record;

/* A presented token, taken apart by lp_token_parse.  `secret` is sensitive:
 * wipe the struct with lp_token_wipe when done with it. */
typedef struct lp_token_parsed {
    char id[LP_TOKEN_ID_LEN + 1];
    uint8_t secret[LP_TOKEN_SECRET_LEN];
} lp_token_parsed;

/* Creates a new token with `scopes`.  Writes its full text ("lp_<id>_<secret>",
 * NUL-terminated) to `text` — the only time the secret exists in readable
 * form; show it to the user once, then wipe it with lp_token_wipe — and the
 * record to store to *rec.  Both are caller-owned; nothing is allocated.
 * LP_ERR_INVALID_ARG when `scopes` is empty or has bits outside
 * LP_SCOPE_ALL, or text/rec is NULL; LP_ERR_CRYPTO when the random generator
 * or HMAC fails.  On failure `text` and *rec are zeroed. */
lp_status lp_token_generate(lp_scopes scopes, char text[LP_TOKEN_TEXT_SIZE], lp_token_record *rec,
                            lp_error *err);

/* Takes a presented token apart: exactly LP_TOKEN_TEXT_LEN bytes (`len`, no
 * NUL needed; a NUL inside counts as a bad character), the "lp_" prefix, 12
 * base32 characters, '_', and 43 base64url characters that are the canonical
 * encoding of 32 bytes.  Fills *out (caller-owned).
 * LP_ERR_MALFORMED for anything else, naming the part and offset that is
 * wrong but never quoting the input; LP_ERR_INVALID_ARG when text or out is
 * NULL.  On failure *out is zeroed. */
lp_status lp_token_parse(const char *text, size_t len, lp_token_parsed *out, lp_error *err);

/* Checks a presented token against its stored record: LP_OK when
 * HMAC-SHA256(salt, presented id || presented secret) equals the stored
 * hash (compared in constant time).  `rec` NULL means "no such token" (or a
 * revoked one): the same work is done against a dummy record and the answer
 * is a refusal.  A refusal — wrong secret, wrong id, no record — is always
 * LP_ERR_BAD_SIGNATURE with the message "token <id>: not valid".
 * LP_ERR_MALFORMED when the stored record's salt or hash is not hex of the
 * right length (a damaged database; the message names the record's id);
 * LP_ERR_INVALID_ARG when `presented` is NULL; LP_ERR_CRYPTO if HMAC fails.
 * Scopes are not looked at: check them with lp_token_scopes_allow. */
lp_status lp_token_verify(const lp_token_record *rec, const lp_token_parsed *presented,
                          lp_error *err);

/* Takes the token out of an Authorization header value ("Bearer <token>")
 * and parses it into *out.  The scheme is matched case-insensitively and
 * must be followed by one or more spaces (RFC 6750 section 2.1: "Bearer"
 * 1*SP b64token); nothing may follow the token.
 *   value NULL                                 LP_ERR_NOT_FOUND
 *   longer than LP_TOKEN_HEADER_MAX bytes      LP_ERR_TOO_LARGE
 *   empty, "Bearer" without a token, tabs or
 *   other characters where spaces belong       LP_ERR_MALFORMED
 *   another scheme ("Basic ...")               LP_ERR_UNSUPPORTED
 *   the token itself malformed                 LP_ERR_MALFORMED (as lp_token_parse)
 * Messages never quote the value.  On failure *out is zeroed. */
lp_status lp_token_parse_bearer(const char *value, lp_token_parsed *out, lp_error *err);

/* Overwrites `n` bytes at `p` with zeros in a way the compiler cannot drop
 * (OPENSSL_cleanse).  NULL is fine. */
void lp_token_wipe(void *p, size_t n);

/* Parses a comma-separated scope list ("upload,download") into *out.  Names
 * are lower-case and exact: no spaces, no empty items, no duplicates, at
 * least one name.  LP_ERR_INVALID_ARG naming the unknown or repeated scope
 * (or the position of a bad character or empty item); LP_ERR_TOO_LARGE for
 * a list longer than 256 bytes.  *out is 0 on failure. */
lp_status lp_token_scopes_parse(const char *text, lp_scopes *out, lp_error *err);

/* Writes the canonical list of the scopes set in `scopes` (in the order of
 * the table above, comma-separated, "" for none) to `out` of capacity `cap`
 * (LP_SCOPES_TEXT_SIZE is always enough).  Implied scopes are not added:
 * what is set is what is written.  LP_ERR_INVALID_ARG for bits outside
 * LP_SCOPE_ALL (out is then ""), LP_ERR_TOO_LARGE when cap is too small. */
lp_status lp_token_scopes_format(lp_scopes scopes, char *out, size_t cap, lp_error *err);

/* Name of one scope bit ("upload"), or NULL when `scope` is not exactly one
 * known bit. */
const char *lp_token_scope_name(lp_scopes scope);

/* The scopes a token holding `have` effectively has: `have` plus everything
 * it implies (admin: LP_SCOPE_ALL; upload, approve, rollout: read).  Bits
 * outside LP_SCOPE_ALL are dropped. */
lp_scopes lp_token_scopes_expand(lp_scopes have);

/* True when a token holding `have` may do something that needs every scope
 * in `need`: need ⊆ lp_token_scopes_expand(have).  Fails closed: a `need`
 * with bits outside LP_SCOPE_ALL is never allowed, not even to admin.  A
 * `need` of 0 (nothing required) is allowed. */
bool lp_token_scopes_allow(lp_scopes have, lp_scopes need);

#ifdef __cplusplus
}
#endif
#endif
