/*
 * token.c — API tokens: generation, strict parsing, constant-time
 * verification, scopes and the Bearer header (see include/livepush/token.h).
 *
 * Design:
 *   - A token is "lp_" + 12-character base32 id + "_" + 43-character base64url
 *     secret: every part has a fixed length and its own alphabet, so parsing
 *     is a length check and one pass over the characters; no part has to be
 *     searched for (the secret's alphabet contains '_', the separator's
 *     position is fixed).
 *   - Random bytes come from RAND_bytes.  An id character is a random byte
 *     masked to 5 bits (32 symbols, so uniform).  The secret's base64 is
 *     OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock with '+' '/' swapped for '-'
 *     '_' and the '=' padding dropped; decoding re-encodes the result and
 *     requires the same text, so exactly one spelling of each secret exists.
 *   - Stored form: salt (16 random bytes) and HMAC-SHA256(key = salt,
 *     message = id || secret), via EVP_Q_mac.  One keyed hash suffices for a
 *     256-bit random secret (no one can guess it, so slowing guesses down
 *     buys nothing); the salt makes equal secrets store differently and the
 *     id in the message ties a hash to its token.
 *   - Verification always does the same steps — decode the stored (or, for
 *     an unknown id, a built-in dummy) salt and hash, compute the HMAC,
 *     compare with lp_mem_equal (constant time) — and only then decides, so
 *     its time does not depend on the secret nor on whether the id exists.
 *     Every refusal has the same status and message.
 *   - Error messages name a part and a 1-based character position; they never
 *     quote the presented text, because any of it may be a secret (a Basic
 *     header's credentials, a token pasted into the wrong field).
 *   - Scopes are a table of (bit, name) in canonical order; parsing, naming
 *     and formatting all read that one table.  Implication lives in
 *     lp_token_scopes_expand alone.
 *   - Secrets on the stack are wiped with OPENSSL_cleanse before returning.
 */
#include "livepush/token.h"

#include "livepush/hash.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define ID_OFF LP_TOKEN_PREFIX_LEN         /* 3 */
#define SEP_OFF (ID_OFF + LP_TOKEN_ID_LEN) /* 15 */
#define SECRET_OFF (SEP_OFF + 1)           /* 16 */
#define B64_PADDED_LEN 44                  /* 32 bytes in standard base64 */
#define SCOPES_TEXT_MAX 256

static const char b32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

static const struct {
    lp_scopes bit;
    const char *name;
} scope_table[] = {
    {LP_SCOPE_ADMIN, "admin"},     {LP_SCOPE_UPLOAD, "upload"},   {LP_SCOPE_DOWNLOAD, "download"},
    {LP_SCOPE_READ, "read"},       {LP_SCOPE_APPROVE, "approve"}, {LP_SCOPE_ROLLOUT, "rollout"},
};
#define NSCOPES (sizeof scope_table / sizeof scope_table[0])

/* The record verified against when the id is unknown.  No secret matches it
 * in practice, and verify refuses regardless of the comparison's result. */
static const char dummy_salt_hex[] = "6c702d746f6b656e2d64756d6d792d73";
static const char dummy_hash_hex[] =
    "0000000000000000000000000000000000000000000000000000000000000000";

void lp_token_wipe(void *p, size_t n)
{
    if (p && n)
        OPENSSL_cleanse(p, n);
}

static bool is_b32(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7');
}

static bool is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static bool id_valid(const char *id)
{
    for (size_t i = 0; i < LP_TOKEN_ID_LEN; i++)
        if (!is_b32(id[i]))
            return false;
    return id[LP_TOKEN_ID_LEN] == '\0';
}

/* 32 bytes -> 43 base64url characters (no NUL written). */
static void b64url_encode(const uint8_t in[LP_TOKEN_SECRET_LEN], char out[LP_TOKEN_SECRET_B64_LEN])
{
    unsigned char buf[B64_PADDED_LEN + 1];
    EVP_EncodeBlock(buf, in, LP_TOKEN_SECRET_LEN);
    for (size_t i = 0; i < LP_TOKEN_SECRET_B64_LEN; i++) {
        char c = (char)buf[i];
        out[i] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    OPENSSL_cleanse(buf, sizeof buf);
}

/* 43 base64url characters (alphabet already checked) -> 32 bytes.  False
 * when the text is not the canonical encoding (the unused low bits of the
 * last character are not zero). */
static bool b64url_decode(const char *in, uint8_t out[LP_TOKEN_SECRET_LEN])
{
    unsigned char std[B64_PADDED_LEN];
    unsigned char dec[B64_PADDED_LEN / 4 * 3];
    char again[LP_TOKEN_SECRET_B64_LEN];
    for (size_t i = 0; i < LP_TOKEN_SECRET_B64_LEN; i++)
        std[i] = (unsigned char)(in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i]);
    std[LP_TOKEN_SECRET_B64_LEN] = '=';
    int n = EVP_DecodeBlock(dec, std, B64_PADDED_LEN);
    bool ok = n == (int)sizeof dec;
    if (ok) {
        memcpy(out, dec, LP_TOKEN_SECRET_LEN);
        b64url_encode(out, again);
        ok = lp_mem_equal(again, in, LP_TOKEN_SECRET_B64_LEN);
    }
    OPENSSL_cleanse(std, sizeof std);
    OPENSSL_cleanse(dec, sizeof dec);
    OPENSSL_cleanse(again, sizeof again);
    if (!ok)
        OPENSSL_cleanse(out, LP_TOKEN_SECRET_LEN);
    return ok;
}

/* HMAC-SHA256(key = salt, message = id || secret). */
static lp_status token_mac(const uint8_t salt[LP_TOKEN_SALT_LEN], const char *id,
                           const uint8_t secret[LP_TOKEN_SECRET_LEN],
                           uint8_t mac[LP_TOKEN_HASH_LEN], lp_error *err)
{
    uint8_t msg[LP_TOKEN_ID_LEN + LP_TOKEN_SECRET_LEN];
    memcpy(msg, id, LP_TOKEN_ID_LEN);
    memcpy(msg + LP_TOKEN_ID_LEN, secret, LP_TOKEN_SECRET_LEN);
    size_t outlen = 0;
    unsigned char *r = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, salt, LP_TOKEN_SALT_LEN, msg,
                                 sizeof msg, mac, LP_TOKEN_HASH_LEN, &outlen);
    OPENSSL_cleanse(msg, sizeof msg);
    if (!r || outlen != LP_TOKEN_HASH_LEN) {
        ERR_clear_error();
        return lp_error_set(err, LP_ERR_CRYPTO, "HMAC-SHA256 failed");
    }
    return LP_OK;
}

static lp_status random_bytes(uint8_t *p, size_t n, lp_error *err)
{
    if (RAND_bytes(p, (int)n) != 1) {
        ERR_clear_error();
        return lp_error_set(err, LP_ERR_CRYPTO, "the random generator failed");
    }
    return LP_OK;
}

lp_status lp_token_generate(lp_scopes scopes, char text[LP_TOKEN_TEXT_SIZE], lp_token_record *rec,
                            lp_error *err)
{
    if (!text || !rec)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "token: no output buffer");
    memset(text, 0, LP_TOKEN_TEXT_SIZE);
    memset(rec, 0, sizeof *rec);
    if (scopes == 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "token: no scope given");
    if (scopes & ~LP_SCOPE_ALL)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "token: unknown scope bits 0x%x",
                            (unsigned)(scopes & ~LP_SCOPE_ALL));

    uint8_t idr[LP_TOKEN_ID_LEN], secret[LP_TOKEN_SECRET_LEN], salt[LP_TOKEN_SALT_LEN];
    uint8_t mac[LP_TOKEN_HASH_LEN];
    lp_status st = random_bytes(idr, sizeof idr, err);
    if (!st)
        st = random_bytes(secret, sizeof secret, err);
    if (!st)
        st = random_bytes(salt, sizeof salt, err);
    if (!st) {
        for (size_t i = 0; i < LP_TOKEN_ID_LEN; i++)
            rec->id[i] = b32_alphabet[idr[i] & 31u];
        st = token_mac(salt, rec->id, secret, mac, err);
    }
    if (!st) {
        memcpy(text, LP_TOKEN_PREFIX, LP_TOKEN_PREFIX_LEN);
        memcpy(text + ID_OFF, rec->id, LP_TOKEN_ID_LEN);
        text[SEP_OFF] = '_';
        b64url_encode(secret, text + SECRET_OFF);
        text[LP_TOKEN_TEXT_LEN] = '\0';
        lp_hex_encode(salt, sizeof salt, rec->salt_hex);
        lp_hex_encode(mac, sizeof mac, rec->hash_hex);
        rec->scopes = scopes;
    } else {
        memset(rec, 0, sizeof *rec);
    }
    OPENSSL_cleanse(idr, sizeof idr);
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(mac, sizeof mac);
    return st ? lp_error_prefix(err, st, "generating a token") : LP_OK;
}

lp_status lp_token_parse(const char *text, size_t len, lp_token_parsed *out, lp_error *err)
{
    if (!text || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "token: no input or output");
    memset(out, 0, sizeof *out);
    if (len != LP_TOKEN_TEXT_LEN)
        return lp_error_set(err, LP_ERR_MALFORMED, "token: %s (%zu characters, expected %d)",
                            len < LP_TOKEN_TEXT_LEN ? "too short" : "too long", len,
                            LP_TOKEN_TEXT_LEN);
    if (memcmp(text, LP_TOKEN_PREFIX, LP_TOKEN_PREFIX_LEN) != 0)
        return lp_error_set(err, LP_ERR_MALFORMED, "token: does not start with \"%s\"",
                            LP_TOKEN_PREFIX);
    for (size_t i = ID_OFF; i < SEP_OFF; i++)
        if (!is_b32(text[i]))
            return lp_error_set(err, LP_ERR_MALFORMED,
                                "token: character %zu is not lower-case base32 (a-z, 2-7) "
                                "as the id needs",
                                i + 1);
    if (text[SEP_OFF] != '_')
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "token: character %d is not the '_' that ends the id", SEP_OFF + 1);
    for (size_t i = SECRET_OFF; i < LP_TOKEN_TEXT_LEN; i++)
        if (!is_b64url(text[i]))
            return lp_error_set(err, LP_ERR_MALFORMED,
                                "token: character %zu is not base64url (A-Z a-z 0-9 - _) "
                                "as the secret needs",
                                i + 1);
    if (!b64url_decode(text + SECRET_OFF, out->secret))
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "token: the secret is not the canonical encoding of %d bytes "
                            "(low bits of the last character set)",
                            LP_TOKEN_SECRET_LEN);
    memcpy(out->id, text + ID_OFF, LP_TOKEN_ID_LEN);
    out->id[LP_TOKEN_ID_LEN] = '\0';
    return LP_OK;
}

/* Decodes exactly `n` bytes from hex of exactly 2n characters. */
static bool hex_exact(const char *hex, uint8_t *out, size_t n)
{
    size_t got = 0;
    if (strnlen(hex, 2 * n + 1) != 2 * n)
        return false;
    if (lp_hex_decode(hex, out, n, &got, NULL) != LP_OK)
        return false;
    return got == n;
}

lp_status lp_token_verify(const lp_token_record *rec, const lp_token_parsed *presented,
                          lp_error *err)
{
    if (!presented)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "token: nothing presented");
    if (!id_valid(presented->id))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "token: presented id is not a parsed id");

    uint8_t salt[LP_TOKEN_SALT_LEN], stored[LP_TOKEN_HASH_LEN], mac[LP_TOKEN_HASH_LEN];
    const char *salt_hex = rec ? rec->salt_hex : dummy_salt_hex;
    const char *hash_hex = rec ? rec->hash_hex : dummy_hash_hex;
    if (!hex_exact(salt_hex, salt, sizeof salt))
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "token %s: stored salt is not %d hex digits", presented->id,
                            2 * LP_TOKEN_SALT_LEN);
    if (!hex_exact(hash_hex, stored, sizeof stored))
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "token %s: stored hash is not %d hex digits", presented->id,
                            2 * LP_TOKEN_HASH_LEN);
    lp_status st = token_mac(salt, presented->id, presented->secret, mac, err);
    if (st)
        return lp_error_prefix(err, st, "token %s", presented->id);
    /* The only comparison of secret-derived bytes: constant time. */
    int equal = lp_mem_equal(mac, stored, LP_TOKEN_HASH_LEN);
    OPENSSL_cleanse(mac, sizeof mac);
    if (!equal || !rec)
        return lp_error_set(err, LP_ERR_BAD_SIGNATURE, "token %s: not valid", presented->id);
    return LP_OK;
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

lp_status lp_token_parse_bearer(const char *value, lp_token_parsed *out, lp_error *err)
{
    if (!out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "Authorization header: no output");
    memset(out, 0, sizeof *out);
    if (!value)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "no Authorization header");
    size_t n = strnlen(value, LP_TOKEN_HEADER_MAX + 1);
    if (n > LP_TOKEN_HEADER_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "Authorization header: longer than %d bytes",
                            LP_TOKEN_HEADER_MAX);
    if (n == 0)
        return lp_error_set(err, LP_ERR_MALFORMED, "Authorization header: empty");

    size_t k = 0;
    while (k < n && value[k] != ' ' && value[k] != '\t')
        k++;
    if (k == 0)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "Authorization header: starts with white space, not a scheme");
    static const char bearer[] = "bearer";
    bool is_bearer = k == sizeof bearer - 1;
    for (size_t i = 0; is_bearer && i < k; i++)
        is_bearer = ascii_lower(value[i]) == bearer[i];
    if (!is_bearer)
        return lp_error_set(err, LP_ERR_UNSUPPORTED,
                            "Authorization header: the scheme is not Bearer");
    if (k == n)
        return lp_error_set(err, LP_ERR_MALFORMED, "Authorization header: Bearer without a token");
    if (value[k] != ' ')
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "Authorization header: character %zu after Bearer is not a space",
                            k + 1);
    size_t p = k;
    while (p < n && value[p] == ' ')
        p++;
    if (p == n)
        return lp_error_set(err, LP_ERR_MALFORMED, "Authorization header: Bearer without a token");
    lp_status st = lp_token_parse(value + p, n - p, out, err);
    if (st)
        return lp_error_prefix(err, st, "Authorization header");
    return LP_OK;
}

lp_status lp_token_scopes_parse(const char *text, lp_scopes *out, lp_error *err)
{
    if (!text || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "scopes: no input or output");
    *out = 0;
    size_t n = strnlen(text, SCOPES_TEXT_MAX + 1);
    if (n > SCOPES_TEXT_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "scopes: list longer than %d bytes",
                            SCOPES_TEXT_MAX);
    if (n == 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "scopes: no scope given");

    lp_scopes got = 0;
    size_t start = 0;
    while (start <= n) {
        size_t end = start;
        while (end < n && text[end] != ',')
            end++;
        size_t len = end - start;
        if (len == 0)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "scopes: empty name at character %zu (stray comma)", start + 1);
        for (size_t i = start; i < end; i++)
            if (text[i] < 'a' || text[i] > 'z')
                return lp_error_set(err, LP_ERR_INVALID_ARG,
                                    "scopes: character %zu is not a lower-case letter (a-z)",
                                    i + 1);
        lp_scopes bit = 0;
        for (size_t s = 0; s < NSCOPES; s++)
            if (strlen(scope_table[s].name) == len &&
                memcmp(scope_table[s].name, text + start, len) == 0)
                bit = scope_table[s].bit;
        if (!bit)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "scopes: unknown scope \"%.*s%s\" (known: admin, upload, "
                                "download, read, approve, rollout)",
                                (int)(len > 32 ? 32 : len), text + start, len > 32 ? "..." : "");
        if (got & bit)
            return lp_error_set(err, LP_ERR_INVALID_ARG, "scopes: \"%s\" is listed twice",
                                lp_token_scope_name(bit));
        got |= bit;
        start = end + 1;
    }
    *out = got;
    return LP_OK;
}

lp_status lp_token_scopes_format(lp_scopes scopes, char *out, size_t cap, lp_error *err)
{
    if (!out || cap == 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "scopes: no output buffer");
    out[0] = '\0';
    if (scopes & ~LP_SCOPE_ALL)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "scopes: unknown scope bits 0x%x",
                            (unsigned)(scopes & ~LP_SCOPE_ALL));
    size_t used = 0;
    for (size_t s = 0; s < NSCOPES; s++) {
        if (!(scopes & scope_table[s].bit))
            continue;
        size_t len = strlen(scope_table[s].name);
        size_t need = used + (used ? 1 : 0) + len;
        if (need + 1 > cap) {
            out[0] = '\0';
            return lp_error_set(err, LP_ERR_TOO_LARGE,
                                "scopes: %zu bytes do not hold the list", cap);
        }
        if (used)
            out[used++] = ',';
        memcpy(out + used, scope_table[s].name, len);
        used += len;
        out[used] = '\0';
    }
    return LP_OK;
}

const char *lp_token_scope_name(lp_scopes scope)
{
    for (size_t s = 0; s < NSCOPES; s++)
        if (scope_table[s].bit == scope)
            return scope_table[s].name;
    return NULL;
}

lp_scopes lp_token_scopes_expand(lp_scopes have)
{
    if (have & LP_SCOPE_ADMIN)
        return LP_SCOPE_ALL;
    lp_scopes r = have & LP_SCOPE_ALL;
    if (r & (LP_SCOPE_UPLOAD | LP_SCOPE_APPROVE | LP_SCOPE_ROLLOUT))
        r |= LP_SCOPE_READ;
    return r;
}

bool lp_token_scopes_allow(lp_scopes have, lp_scopes need)
{
    if (need & ~LP_SCOPE_ALL)
        return false;
    return (need & ~lp_token_scopes_expand(have)) == 0;
}
