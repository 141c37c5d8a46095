/*
 * json.c — strict JSON input, canonical JSON and python-tuf's compact form
 * (see json.h).
 *
 * Input.  jansson does the parsing (json_loadb with JSON_REJECT_DUPLICATES,
 * JSON_DECODE_ANY and JSON_ALLOW_NUL); it already refuses invalid UTF-8
 * (including overlong forms and encoded surrogates), lone surrogate escapes,
 * trailing bytes and integers that do not fit in 64 bits, and it keeps
 * integers as long long, never as doubles.  Around it this file adds the two
 * bounds jansson lacks: the byte size is checked before parsing, and after
 * parsing one walk of the tree refuses nesting deeper than the limit (an
 * array or object is one level).  jansson's error position and text go into
 * the message.
 *
 * Output.  Both forms are written by small recursive encoders over the
 * jansson tree into an lp_buf, so the bytes do not depend on jansson's dump
 * options:
 *   - canonical JSON (securesystemslib encode_canonical): members sorted by
 *     the raw bytes of their keys, no whitespace, only '"' and '\\' escaped,
 *     every other byte copied as is (control bytes, DEL, NUL included);
 *   - compact form (Python json.dumps with sort_keys=True,
 *     separators=(",", ":") and the default ensure_ascii=True): the same
 *     order, with Python's escapes: \" \\ \n \r \t \b \f, \u00XX for other
 *     bytes below 0x20 and for DEL, \uXXXX (lower-case hex) for every
 *     non-ASCII code point, astral ones as a UTF-16 surrogate pair.  This
 *     needs the code points, so strings are decoded as UTF-8 and a string
 *     that is not valid UTF-8 is refused.
 * Both refuse real numbers (TUF metadata has none; canonical JSON cannot
 * represent them).  Sorting by key bytes equals sorting by code point for
 * UTF-8, which is the order Python's sort_keys gives.  The encoders refuse
 * trees nested deeper than LP_JSON_TREE_MAX_DEPTH, which bounds their
 * recursion (jansson's parser never builds deeper trees) and stops on a
 * tree that contains itself.
 *
 * Getters.  One helper looks a member up and checks its type; messages name
 * "<where>.<key>".  String getters refuse strings with a NUL byte, since the
 * value is handed out as a C string and would be silently cut short.
 */
#include "tuf/json.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* jansson's own parser limit (JSON_PARSER_MAX_DEPTH); no parsed tree is deeper. */
#define LP_JSON_TREE_MAX_DEPTH 2048u

/* ---------------------------------------------------------------- parsing */

/* Depth of v: 0 for a scalar, 1 + the deepest child for arrays and objects.
 * Stops descending once `limit` is exceeded, so the recursion is bounded by
 * limit + 1 whatever the tree. */
static unsigned depth_of(const json_t *v, unsigned limit)
{
    unsigned deepest = 0;
    if (limit == 0)
        return json_is_array(v) || json_is_object(v) ? 1 : 0;
    if (json_is_array(v)) {
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n && deepest < limit; i++) {
            unsigned d = depth_of(json_array_get(v, i), limit - 1);
            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    }
    if (json_is_object(v)) {
        for (void *it = json_object_iter((json_t *)v); it && deepest < limit;
             it = json_object_iter_next((json_t *)v, it)) {
            unsigned d = depth_of(json_object_iter_value(it), limit - 1);
            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    }
    return 0;
}

lp_status lp_json_parse(const void *data, size_t len, const lp_json_limits *lim, json_t **out,
                        lp_error *err)
{
    if (!out || (!data && len))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "lp_json_parse: NULL argument");
    *out = NULL;
    size_t max_bytes = lim && lim->max_bytes ? lim->max_bytes : LP_JSON_DEFAULT_MAX_BYTES;
    unsigned max_depth = lim && lim->max_depth ? lim->max_depth : LP_JSON_DEFAULT_MAX_DEPTH;

    if (len > max_bytes)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "JSON input of %zu bytes exceeds the limit of %zu bytes", len,
                            max_bytes);
    if (len == 0)
        return lp_error_set(err, LP_ERR_MALFORMED, "invalid JSON: empty input");

    json_error_t jerr;
    json_t *v = json_loadb((const char *)data, len,
                           JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v) {
        switch (json_error_code(&jerr)) {
        case json_error_stack_overflow: /* jansson's own bound, above ours by default */
            return lp_error_set(err, LP_ERR_MALFORMED,
                                "JSON nested deeper than %u levels (at line %d column %d)",
                                max_depth < LP_JSON_TREE_MAX_DEPTH ? max_depth
                                                                     : LP_JSON_TREE_MAX_DEPTH,
                                jerr.line, jerr.column);
        case json_error_out_of_memory:
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory parsing JSON");
        case json_error_numeric_overflow:
            return lp_error_set(err, LP_ERR_MALFORMED,
                                "invalid JSON at line %d column %d: %s (%s)", jerr.line,
                                jerr.column, jerr.text,
                                strstr(jerr.text, "integer")
                                    ? "integers must fit in 64 bits"
                                    : "real number outside the range of a double");
        default:
            return lp_error_set(err, LP_ERR_MALFORMED, "invalid JSON at line %d column %d: %s",
                                jerr.line, jerr.column, jerr.text);
        }
    }
    if (depth_of(v, max_depth) > max_depth) {
        json_decref(v);
        return lp_error_set(err, LP_ERR_MALFORMED, "JSON nested deeper than %u levels",
                            max_depth);
    }
    *out = v;
    return LP_OK;
}

/* --------------------------------------------------------- shared encoding */

typedef struct member {
    const char *key;
    size_t key_len;
    json_t *value;
} member;

static int member_cmp(const void *a, const void *b)
{
    const member *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* The members of object v sorted by key bytes, in a new array of *n entries
 * (NULL when the object is empty). */
static lp_status sorted_members(const json_t *v, member **out, size_t *n, lp_error *err)
{
    size_t count = json_object_size(v);
    *out = NULL;
    *n = 0;
    if (count == 0)
        return LP_OK;
    member *m = calloc(count, sizeof *m);
    if (!m)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory sorting %zu JSON members", count);
    size_t i = 0;
    for (void *it = json_object_iter((json_t *)v); it && i < count;
         it = json_object_iter_next((json_t *)v, it), i++) {
        m[i].key = json_object_iter_key(it);
        m[i].key_len = json_object_iter_key_len(it);
        m[i].value = json_object_iter_value(it);
    }
    qsort(m, i, sizeof *m, member_cmp);
    *out = m;
    *n = i;
    return LP_OK;
}

/* One output form: its name (for messages) and how it writes a string. */
typedef struct form {
    const char *name;
    lp_status (*string)(lp_buf *out, const char *s, size_t len, lp_error *err);
} form;

/* Writes v in form f: the structure (sorted objects, no whitespace, integers
 * in decimal) is the same in both output forms. */
static lp_status encode(const json_t *v, const form *f, unsigned depth, lp_buf *out,
                        lp_error *err)
{
    lp_status st;
    switch (json_typeof(v)) {
    case JSON_NULL: return lp_buf_append(out, "null", 4, err);
    case JSON_TRUE: return lp_buf_append(out, "true", 4, err);
    case JSON_FALSE: return lp_buf_append(out, "false", 5, err);
    case JSON_INTEGER:
        return lp_buf_printf(out, err, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    case JSON_REAL:
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "a real number (%.17g) is not allowed in %s; only integers are",
                            json_real_value(v), f->name);
    case JSON_STRING: return f->string(out, json_string_value(v), json_string_length(v), err);
    case JSON_ARRAY:
    case JSON_OBJECT: break;
    }
    if (depth >= LP_JSON_TREE_MAX_DEPTH)
        return lp_error_set(err, LP_ERR_MALFORMED, "JSON nested deeper than %u levels",
                            LP_JSON_TREE_MAX_DEPTH);

    if (json_is_array(v)) {
        if ((st = lp_buf_append(out, "[", 1, err)))
            return st;
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            if (i && (st = lp_buf_append(out, ",", 1, err)))
                return st;
            if ((st = encode(json_array_get(v, i), f, depth + 1, out, err)))
                return st;
        }
        return lp_buf_append(out, "]", 1, err);
    }

    member *m;
    size_t n;
    if ((st = sorted_members(v, &m, &n, err)))
        return st;
    st = lp_buf_append(out, "{", 1, err);
    for (size_t i = 0; i < n && !st; i++) {
        if (i)
            st = lp_buf_append(out, ",", 1, err);
        if (!st)
            st = f->string(out, m[i].key, m[i].key_len, err);
        if (!st)
            st = lp_buf_append(out, ":", 1, err);
        if (!st)
            st = encode(m[i].value, f, depth + 1, out, err);
    }
    free(m);
    return st ? st : lp_buf_append(out, "}", 1, err);
}

static lp_status dump_with(const json_t *v, const form *f, char **out, size_t *len,
                           lp_error *err)
{
    if (!v || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "JSON encoder: NULL argument");
    *out = NULL;
    if (len)
        *len = 0;
    lp_buf b;
    lp_buf_init(&b, 0);
    lp_status st = encode(v, f, 0, &b, err);
    if (st) {
        lp_buf_free(&b);
        return st;
    }
    size_t n;
    *out = (char *)lp_buf_steal(&b, &n);
    if (len)
        *len = n;
    return LP_OK;
}

/* ---------------------------------------------------------- canonical form */

/* A string in canonical JSON: only '"' and '\\' escaped, all else raw. */
static lp_status canonical_string(lp_buf *out, const char *s, size_t len, lp_error *err)
{
    lp_status st = lp_buf_append(out, "\"", 1, err);
    size_t run = 0; /* start of the bytes not yet written */
    for (size_t i = 0; i < len && !st; i++) {
        if (s[i] != '"' && s[i] != '\\')
            continue;
        if ((st = lp_buf_append(out, s + run, i - run, err)))
            break;
        st = lp_buf_append(out, s[i] == '"' ? "\\\"" : "\\\\", 2, err);
        run = i + 1;
    }
    if (!st)
        st = lp_buf_append(out, s + run, len - run, err);
    return st ? st : lp_buf_append(out, "\"", 1, err);
}

static const form canonical_form = {"canonical JSON", canonical_string};

lp_status lp_cjson_encode(const json_t *v, lp_buf *out, lp_error *err)
{
    if (!v || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "lp_cjson_encode: NULL argument");
    size_t start = out->len;
    lp_status st = encode(v, &canonical_form, 0, out, err);
    if (st && out->data) { /* leave the buffer as it was */
        out->len = start;
        out->data[start] = 0;
    }
    return st;
}

lp_status lp_cjson_dumps(const json_t *v, char **out, size_t *len, lp_error *err)
{
    return dump_with(v, &canonical_form, out, len, err);
}

/* ------------------------------------------------------------ compact form */

/* Decodes one UTF-8 sequence at s[0..len); returns its length (1-4) and the
 * code point, or 0 when the bytes are not valid UTF-8 (overlong forms,
 * surrogates and values past U+10FFFF included). */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

/* A string as Python's json.dumps(ensure_ascii=True) writes it. */
static lp_status compact_string(lp_buf *out, const char *str, size_t len, lp_error *err)
{
    const unsigned char *s = (const unsigned char *)str;
    lp_status st = lp_buf_append(out, "\"", 1, err);
    size_t run = 0; /* start of the printable ASCII bytes not yet written */
    size_t i = 0;
    while (i < len && !st) {
        unsigned char c = s[i];
        if (c >= 0x20 && c <= 0x7E && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if ((st = lp_buf_append(out, s + run, i - run, err)))
            break;
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: break;
        }
        size_t n = 1;
        if (esc) {
            st = lp_buf_append(out, esc, 2, err);
        } else {
            uint32_t cp;
            n = utf8_decode(s + i, len - i, &cp);
            if (n == 0)
                return lp_error_set(err, LP_ERR_MALFORMED,
                                    "string is not valid UTF-8 (byte 0x%02x at offset %zu)", c,
                                    i);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                st = lp_buf_printf(out, err, "\\u%04" PRIx32 "\\u%04" PRIx32,
                                   0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else {
                st = lp_buf_printf(out, err, "\\u%04" PRIx32, cp);
            }
        }
        i += n;
        run = i;
    }
    if (!st)
        st = lp_buf_append(out, s + run, len - run, err);
    return st ? st : lp_buf_append(out, "\"", 1, err);
}

static const form compact_form = {"TUF metadata JSON", compact_string};

lp_status lp_json_dump_compact(const json_t *v, char **out, size_t *len, lp_error *err)
{
    return dump_with(v, &compact_form, out, len, err);
}

/* ----------------------------------------------------------------- getters */

static const char *type_name(json_type t)
{
    switch (t) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

/* Looks up obj[key].  *out is NULL when absent (an error unless optional);
 * a present member of another type than `want` is an error.  `want` is
 * JSON_TRUE for "either boolean". */
static lp_status member_of(const json_t *obj, const char *where, const char *key,
                           json_type want, bool optional, json_t **out, lp_error *err)
{
    *out = NULL;
    if (!where)
        where = "JSON";
    if (!key)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: NULL member name", where);
    if (!obj || !json_is_object(obj))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: expected an object, not %s", where,
                            obj ? type_name(json_typeof(obj)) : "nothing");
    json_t *m = json_object_get(obj, key);
    if (!m) {
        if (optional)
            return LP_OK;
        return lp_error_set(err, LP_ERR_MALFORMED, "%s.%s: missing", where, key);
    }
    json_type t = json_typeof(m);
    if (t == JSON_FALSE)
        t = JSON_TRUE;
    if (t != want)
        return lp_error_set(err, LP_ERR_MALFORMED, "%s.%s: expected %s", where, key,
                            type_name(want));
    *out = m;
    return LP_OK;
}

lp_status lp_json_get_object(const json_t *obj, const char *where, const char *key, json_t **out,
                             lp_error *err)
{
    return member_of(obj, where, key, JSON_OBJECT, false, out, err);
}

lp_status lp_json_get_array(const json_t *obj, const char *where, const char *key, json_t **out,
                            lp_error *err)
{
    return member_of(obj, where, key, JSON_ARRAY, false, out, err);
}

lp_status lp_json_get_object_opt(const json_t *obj, const char *where, const char *key,
                                 json_t **out, lp_error *err)
{
    return member_of(obj, where, key, JSON_OBJECT, true, out, err);
}

lp_status lp_json_get_array_opt(const json_t *obj, const char *where, const char *key,
                                json_t **out, lp_error *err)
{
    return member_of(obj, where, key, JSON_ARRAY, true, out, err);
}

lp_status lp_json_get_string(const json_t *obj, const char *where, const char *key,
                             const char **out, lp_error *err)
{
    json_t *m;
    lp_status st = member_of(obj, where, key, JSON_STRING, false, &m, err);
    if (st)
        return st;
    if (memchr(json_string_value(m), '\0', json_string_length(m)))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s.%s: string contains a NUL character",
                            where ? where : "JSON", key);
    *out = json_string_value(m);
    return LP_OK;
}

static lp_status get_int(const json_t *obj, const char *where, const char *key, int64_t min,
                         int64_t max, bool optional, int64_t *out, bool *present, lp_error *err)
{
    json_t *m;
    if (present)
        *present = false;
    lp_status st = member_of(obj, where, key, JSON_INTEGER, optional, &m, err);
    if (st || !m)
        return st;
    json_int_t v = json_integer_value(m);
    if (v < min || v > max)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "%s.%s: %" JSON_INTEGER_FORMAT " is out of range [%" PRId64
                            ", %" PRId64 "]",
                            where ? where : "JSON", key, v, min, max);
    *out = (int64_t)v;
    if (present)
        *present = true;
    return LP_OK;
}

lp_status lp_json_get_int(const json_t *obj, const char *where, const char *key, int64_t min,
                          int64_t max, int64_t *out, lp_error *err)
{
    return get_int(obj, where, key, min, max, false, out, NULL, err);
}

lp_status lp_json_get_int_opt(const json_t *obj, const char *where, const char *key, int64_t min,
                              int64_t max, int64_t *out, bool *present, lp_error *err)
{
    return get_int(obj, where, key, min, max, true, out, present, err);
}

static lp_status get_bool(const json_t *obj, const char *where, const char *key, bool optional,
                          bool *out, bool *present, lp_error *err)
{
    json_t *m;
    if (present)
        *present = false;
    lp_status st = member_of(obj, where, key, JSON_TRUE, optional, &m, err);
    if (st || !m)
        return st;
    *out = json_is_true(m);
    if (present)
        *present = true;
    return LP_OK;
}

lp_status lp_json_get_bool(const json_t *obj, const char *where, const char *key, bool *out,
                           lp_error *err)
{
    return get_bool(obj, where, key, false, out, NULL, err);
}

lp_status lp_json_get_bool_opt(const json_t *obj, const char *where, const char *key, bool *out,
                               bool *present, lp_error *err)
{
    return get_bool(obj, where, key, true, out, present, err);
}

lp_status lp_json_parse_canonical(const char *text, const lp_json_limits *lim, json_t **out,
                                  lp_error *err)
{
    *out = NULL;
    lp_buf b;
    lp_buf_init(&b, 0);
    bool in_string = false, escaped = false;
    lp_status st = LP_OK;
    for (const unsigned char *p = (const unsigned char *)text; !st && *p; p++) {
        if (in_string && !escaped && *p < 0x20) {
            st = lp_buf_printf(&b, err, "\\u%04x", *p);
            continue;
        }
        if (in_string && escaped)
            escaped = false;
        else if (in_string && *p == '\\')
            escaped = true;
        else if (*p == '"')
            in_string = !in_string;
        st = lp_buf_append(&b, p, 1, err);
    }
    if (!st)
        st = lp_json_parse(b.data, b.len, lim, out, err);
    lp_buf_free(&b);
    return st;
}
