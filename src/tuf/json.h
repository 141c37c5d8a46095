/*
 * json.h — strict JSON input and the two JSON output forms TUF needs (internal).
 *
 * Parsing is jansson's, made strict: duplicate object keys, invalid UTF-8,
 * trailing bytes, nesting deeper than a limit and input larger than a limit
 * are refused with LP_ERR_MALFORMED / LP_ERR_TOO_LARGE and a message naming
 * the problem and its position.  Integers are kept as 64-bit integers (never
 * doubles), so values beyond 2^53 survive a round trip.
 *
 * Output:
 *   - lp_cjson_encode: OLPC canonical JSON exactly as securesystemslib's
 *     encode_canonical writes it (the bytes that signatures cover): object keys
 *     sorted by byte value, no whitespace, only '"' and '\\' escaped, all other
 *     characters raw UTF-8, integers in plain decimal; reals are refused.
 *   - lp_json_dump_compact: the file form python-tuf writes
 *     (json.dumps(sort_keys=True, separators=(",", ":")), ASCII-only with
 *     \uXXXX escapes).
 *
 * The typed getters read one member of an object and fail with a message of
 * the form "<where>.<key>: expected an integer" so metadata errors name the
 * exact field.
 */
#ifndef LP_TUF_JSON_H
#define LP_TUF_JSON_H

#include "core/buf.h"
#include "livepush/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define LP_JSON_DEFAULT_MAX_BYTES (16u * 1024 * 1024)
#define LP_JSON_DEFAULT_MAX_DEPTH 64u

typedef struct lp_json_limits {
    size_t max_bytes;   /* 0: LP_JSON_DEFAULT_MAX_BYTES */
    unsigned max_depth; /* 0: LP_JSON_DEFAULT_MAX_DEPTH */
} lp_json_limits;

/* Parses `len` bytes (no NUL needed) into a new value owned by the caller
 * (json_decref).  Any JSON value is accepted at the top level; strings may
 * contain NUL (\u0000).  lim may be NULL for the defaults. */
lp_status lp_json_parse(const void *data, size_t len, const lp_json_limits *lim, json_t **out,
                        lp_error *err);

/* Appends the canonical JSON of v to out.  LP_ERR_MALFORMED for a real
 * number (naming it).  */
lp_status lp_cjson_encode(const json_t *v, lp_buf *out, lp_error *err);

/* Parses canonical JSON text (NUL-terminated, at most lim's size) into a
 * new value: canonical JSON escapes only '"' and '\\' in strings, so a raw
 * control character there (a newline in release notes) is escaped as
 * \u00XX first, then the text is parsed strictly like lp_json_parse. */
lp_status lp_json_parse_canonical(const char *text, const lp_json_limits *lim, json_t **out,
                                  lp_error *err);

/* Canonical JSON of v into a new malloc'd, NUL-terminated string; *len
 * excludes the NUL. */
lp_status lp_cjson_dumps(const json_t *v, char **out, size_t *len, lp_error *err);

/* python-tuf's compact file form of v into a new malloc'd NUL-terminated
 * string; *len excludes the NUL.  LP_ERR_MALFORMED for reals. */
lp_status lp_json_dump_compact(const json_t *v, char **out, size_t *len, lp_error *err);

/* Typed member access.  `where` names the object for messages (e.g.
 * "timestamp.json signed.meta"); `key` the member.  The returned json_t is
 * borrowed from obj.  The _opt variants return LP_OK with *out NULL (or the
 * output untouched for scalars, *present = false) when the member is absent;
 * a present member of the wrong type is always an error.  Errors:
 * LP_ERR_MALFORMED "<where>.<key>: missing" / "...: expected <type>". */
lp_status lp_json_get_object(const json_t *obj, const char *where, const char *key, json_t **out,
                             lp_error *err);
lp_status lp_json_get_array(const json_t *obj, const char *where, const char *key, json_t **out,
                            lp_error *err);
lp_status lp_json_get_string(const json_t *obj, const char *where, const char *key,
                             const char **out, lp_error *err);
/* Integers only (not reals, not booleans), within [min, max]. */
lp_status lp_json_get_int(const json_t *obj, const char *where, const char *key, int64_t min,
                          int64_t max, int64_t *out, lp_error *err);
lp_status lp_json_get_bool(const json_t *obj, const char *where, const char *key, bool *out,
                           lp_error *err);
lp_status lp_json_get_object_opt(const json_t *obj, const char *where, const char *key,
                                 json_t **out, lp_error *err);
lp_status lp_json_get_array_opt(const json_t *obj, const char *where, const char *key,
                                json_t **out, lp_error *err);
lp_status lp_json_get_int_opt(const json_t *obj, const char *where, const char *key, int64_t min,
                              int64_t max, int64_t *out, bool *present, lp_error *err);
lp_status lp_json_get_bool_opt(const json_t *obj, const char *where, const char *key, bool *out,
                               bool *present, lp_error *err);

#endif
