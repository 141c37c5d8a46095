/*
 * db_check.c — input checks shared by every database back end, and the
 * canonical form of scope lists (see include/livepush/db.h).
 *
 * Every string that reaches a back end has passed one of these checks: a
 * length bound (measured with strnlen, so an unterminated or huge input is
 * never scanned past the bound) and a character set.  Names that end up in
 * URLs or file names are restricted to a small ASCII alphabet; free text
 * (notes, token names) only refuses control characters.  Messages name the
 * field and say what is wrong with it.
 */
#include "store/db_backend.h"

#include <stdlib.h>
#include <string.h>

/* Length of s, or an error if NULL, empty or longer than max. */
static lp_status check_len(const char *field, const char *s, size_t max, size_t *len,
                           lp_error *err)
{
    if (!s)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: missing", field);
    size_t n = strnlen(s, max + 1);
    if (n == 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: empty", field);
    if (n > max)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "%s: longer than %zu bytes", field, max);
    *len = n;
    return LP_OK;
}

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* Checks s against a set of allowed characters given by a predicate. */
static lp_status check_chars(const char *field, const char *s, size_t len, bool (*ok)(char),
                             const char *allowed, lp_error *err)
{
    for (size_t i = 0; i < len; i++)
        if (!ok(s[i]))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "%s: character %zu (0x%02x) is not allowed (allowed: %s)", field,
                                i + 1, (unsigned char)s[i], allowed);
    return LP_OK;
}

static bool name_char(char c)
{
    return is_lower_alnum(c) || c == '.' || c == '_' || c == '-';
}

lp_status lp_db_check_name(const char *field, const char *s, lp_error *err)
{
    size_t n;
    lp_status st = check_len(field, s, LP_DB_NAME_MAX, &n, err);
    if (st)
        return st;
    if (!is_lower_alnum(s[0]))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "%s: must start with a lower-case letter or a digit", field);
    return check_chars(field, s, n, name_char, "a-z 0-9 . _ -", err);
}

static bool version_char(char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '+' || c == '~' || c == '-';
}

lp_status lp_db_check_version(const char *field, const char *s, lp_error *err)
{
    size_t n;
    lp_status st = check_len(field, s, LP_DB_VERSION_MAX, &n, err);
    if (st)
        return st;
    return check_chars(field, s, n, version_char, "A-Z a-z 0-9 . _ + ~ -", err);
}

static bool platform_char(char c)
{
    return is_lower_alnum(c) || c == '_' || c == '-';
}

lp_status lp_db_check_platform(const char *field, const char *s, lp_error *err)
{
    size_t n;
    lp_status st = check_len(field, s, LP_DB_PLATFORM_MAX, &n, err);
    if (st)
        return st;
    return check_chars(field, s, n, platform_char, "a-z 0-9 _ -", err);
}

static bool text_char(char c)
{
    unsigned char u = (unsigned char)c;
    return u >= 0x20 ? u != 0x7f : (c == '\t' || c == '\n' || c == '\r');
}

lp_status lp_db_check_notes(const char *field, const char *s, lp_error *err)
{
    size_t n;
    lp_status st = check_len(field, s, LP_DB_NOTES_MAX, &n, err);
    if (st)
        return st;
    return check_chars(field, s, n, text_char, "text without control characters", err);
}

lp_status lp_db_check_text(const char *field, const char *s, size_t max, lp_error *err)
{
    size_t n;
    lp_status st = check_len(field, s, max, &n, err);
    if (st)
        return st;
    return check_chars(field, s, n, text_char, "text without control characters", err);
}

static bool id_char(char c)
{
    return is_alnum(c) || c == '_' || c == '-';
}

lp_status lp_db_check_id(const char *field, const char *s, lp_error *err)
{
    size_t n;
    lp_status st = check_len(field, s, LP_DB_ID_MAX, &n, err);
    if (st)
        return st;
    return check_chars(field, s, n, id_char, "A-Z a-z 0-9 _ -", err);
}

static bool printable_char(char c)
{
    unsigned char u = (unsigned char)c;
    return u >= 0x20 && u != 0x7f;
}

lp_status lp_db_check_token_name(const char *field, const char *s, lp_error *err)
{
    size_t n;
    lp_status st = check_len(field, s, LP_DB_TOKEN_NAME_MAX, &n, err);
    if (st)
        return st;
    return check_chars(field, s, n, printable_char, "text without control characters", err);
}

static bool hex_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

lp_status lp_db_check_sha256(const char *field, const char *s, lp_error *err)
{
    size_t n;
    lp_status st = check_len(field, s, 64, &n, err);
    if (st)
        return st;
    if (n != 64)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: %zu characters, expected 64 hex digits",
                            field, n);
    return check_chars(field, s, n, hex_char, "0-9 a-f", err);
}

lp_status lp_db_check_hex(const char *field, const char *s, size_t min, size_t max,
                          lp_error *err)
{
    size_t n;
    lp_status st = check_len(field, s, max, &n, err);
    if (st)
        return st;
    if (n < min)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: %zu characters, expected %zu to %zu hex "
                            "digits", field, n, min, max);
    return check_chars(field, s, n, hex_char, "0-9 a-f", err);
}

lp_status lp_db_check_path(const char *field, const char *s, lp_error *err)
{
    size_t n;
    lp_status st = check_len(field, s, LP_DB_PATH_MAX, &n, err);
    if (st)
        return st;
    return check_chars(field, s, n, printable_char, "text without control characters", err);
}

lp_status lp_db_check_state(const char *field, const char *s, lp_error *err)
{
    if (!s)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: missing", field);
    if (strcmp(s, LP_DB_STATE_PENDING) && strcmp(s, LP_DB_STATE_PUBLISHED) &&
        strcmp(s, LP_DB_STATE_WITHDRAWN))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "%s: '%.64s' is not one of pending, published, withdrawn", field, s);
    return LP_OK;
}

lp_status lp_db_check_positive(const char *field, int64_t v, lp_error *err)
{
    if (v <= 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: %lld is not a positive number", field,
                            (long long)v);
    return LP_OK;
}

lp_status lp_db_check_time(const char *field, int64_t v, lp_error *err)
{
    if (v < 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: %lld is before 1970", field,
                            (long long)v);
    return LP_OK;
}

lp_status lp_db_check_size(const char *field, uint64_t v, lp_error *err)
{
    if (v > (uint64_t)INT64_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "%s: %llu is larger than %lld", field,
                            (unsigned long long)v, (long long)INT64_MAX);
    return LP_OK;
}

/* ---- scopes ----------------------------------------------------------- */

static bool scope_char(char c)
{
    return is_lower_alnum(c) || c == '_' || c == ':' || c == '-';
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

lp_status lp_db_scopes_canonical(const char *scopes, char *out, size_t out_cap, lp_error *err)
{
    size_t n;
    lp_status st = check_len("scopes", scopes, LP_DB_SCOPES_MAX, &n, err);
    if (st)
        return st;
    if (!out || out_cap <= n)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "scopes: output buffer too small");
    /* Split a private copy at ',' into at most n/2+1 scopes. */
    char copy[LP_DB_SCOPES_MAX + 1];
    memcpy(copy, scopes, n + 1);
    const char *parts[LP_DB_SCOPES_MAX / 2 + 1];
    size_t count = 0;
    char *p = copy;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        size_t len = strlen(p);
        if (len == 0)
            return lp_error_set(err, LP_ERR_INVALID_ARG, "scopes: empty scope in '%s'", scopes);
        if (len > LP_DB_SCOPE_MAX)
            return lp_error_set(err, LP_ERR_TOO_LARGE, "scopes: '%s' is longer than %d bytes", p,
                                LP_DB_SCOPE_MAX);
        if (!(p[0] >= 'a' && p[0] <= 'z'))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "scopes: '%s' must start with a lower-case letter", p);
        for (size_t i = 0; i < len; i++)
            if (!scope_char(p[i]))
                return lp_error_set(err, LP_ERR_INVALID_ARG,
                                    "scopes: '%s' has a character that is not allowed "
                                    "(allowed: a-z 0-9 _ : -)",
                                    p);
        parts[count++] = p;
        if (!comma)
            break;
        p = comma + 1;
    }
    qsort(parts, count, sizeof parts[0], cmp_str);
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        if (i > 0 && strcmp(parts[i], parts[i - 1]) == 0)
            continue;
        size_t len = strlen(parts[i]);
        if (used > 0)
            out[used++] = ',';
        memcpy(out + used, parts[i], len);
        used += len;
    }
    out[used] = '\0';
    return LP_OK;
}

bool lp_db_scopes_has(const char *scopes, const char *scope)
{
    if (!scopes || !scope || !*scope)
        return false;
    size_t n = strlen(scope);
    for (const char *p = scopes; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, scope, n) == 0)
            return true;
        if (!end)
            break;
        p = end + 1;
    }
    return false;
}
