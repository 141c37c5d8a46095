/*
 * test_json.c — strict JSON parsing, canonical JSON and the compact file form.
 *
 * The canonical encoder is checked byte for byte against the independent
 * vectors in $LP_TUF_VECTORS/canonical_json/canonical.json (written by
 * securesystemslib).  The compact form is checked by round trips of the
 * vectors' metadata files, which python-tuf wrote: parsing and dumping a
 * compact file must give back the same bytes.  The rest covers what strict
 * parsing refuses (each refusal must carry the right status and a message
 * naming the problem) and the typed getters' messages.
 */
#include "core/buf.h"
#include "core/file.h"
#include "tuf/json.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static const char *vectors(void)
{
    const char *v = getenv("LP_TUF_VECTORS");
    return v ? v : "../shared/tuf-vectors";
}

static uint8_t *read_vector(const char *rel, size_t *len)
{
    char *path = lp_path_join(vectors(), rel);
    assert_non_null(path);
    uint8_t *data = NULL;
    lp_error err;
    lp_status st = lp_file_read(path, 64u << 20, &data, len, &err);
    if (st)
        fail_msg("reading %s: %s", path, err.msg);
    free(path);
    return data;
}

static json_t *parse_ok(const char *text)
{
    json_t *v = NULL;
    lp_error err;
    lp_status st = lp_json_parse(text, strlen(text), NULL, &v, &err);
    if (st)
        fail_msg("parsing %s: %s", text, err.msg);
    return v;
}

/* Parses `len` bytes expecting failure with `code` and a message containing
 * `needle`. */
static void refuse_n(const char *text, size_t len, const lp_json_limits *lim, lp_status code,
                     const char *needle)
{
    json_t *v = (json_t *)&v; /* must be reset to NULL */
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_json_parse(text, len, lim, &v, &err);
    if (st != code || !strstr(err.msg, needle))
        fail_msg("input %.40s: got %s \"%s\", want %s with \"%s\"", text, lp_status_name(st),
                 err.msg, lp_status_name(code), needle);
    assert_int_equal(err.code, code);
    assert_null(v);
    /* The same refusal without an error object. */
    assert_int_equal(lp_json_parse(text, len, lim, &v, NULL), code);
}

static void refuse(const char *text, lp_status code, const char *needle)
{
    refuse_n(text, strlen(text), NULL, code, needle);
}

static char *canon(const json_t *v, size_t *len)
{
    char *out = NULL;
    lp_error err;
    lp_status st = lp_cjson_dumps(v, &out, len, &err);
    if (st)
        fail_msg("canonical encoding: %s", err.msg);
    return out;
}

static char *compact(const json_t *v, size_t *len)
{
    char *out = NULL;
    lp_error err;
    lp_status st = lp_json_dump_compact(v, &out, len, &err);
    if (st)
        fail_msg("compact encoding: %s", err.msg);
    return out;
}

static uint8_t *unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex);
    assert_int_equal(n % 2, 0);
    uint8_t *out = malloc(n / 2 + 1);
    assert_non_null(out);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned b;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &b), 1);
        out[i] = (uint8_t)b;
    }
    *len = n / 2;
    return out;
}

/* ------------------------------------------------------ canonical vectors */

static void test_canonical_vectors(void **state)
{
    (void)state;
    size_t flen;
    uint8_t *file = read_vector("canonical_json/canonical.json", &flen);
    json_t *doc = NULL;
    lp_error err;
    assert_int_equal(lp_json_parse(file, flen, NULL, &doc, &err), LP_OK);
    free(file);

    json_t *vecs = NULL, *rejects = NULL;
    assert_int_equal(lp_json_get_array(doc, "canonical.json", "vectors", &vecs, &err), LP_OK);
    assert_int_equal(lp_json_get_array(doc, "canonical.json", "must_reject", &rejects, &err),
                     LP_OK);
    assert_true(json_array_size(vecs) >= 19);
    assert_true(json_array_size(rejects) >= 3);

    size_t matched = 0, skipped = 0;
    for (size_t i = 0; i < json_array_size(vecs); i++) {
        json_t *vec = json_array_get(vecs, i);
        const char *name, *input, *hex;
        int64_t want_len;
        bool optional = false, has_opt;
        assert_int_equal(lp_json_get_string(vec, "vector", "name", &name, &err), LP_OK);
        assert_int_equal(lp_json_get_string(vec, name, "input_json", &input, &err), LP_OK);
        assert_int_equal(lp_json_get_string(vec, name, "canonical_hex", &hex, &err), LP_OK);
        assert_int_equal(
            lp_json_get_int(vec, name, "canonical_length", 0, INT64_MAX, &want_len, &err), LP_OK);
        assert_int_equal(lp_json_get_bool_opt(vec, name, "optional", &optional, &has_opt, &err),
                         LP_OK);

        json_t *v = NULL;
        lp_error_clear(&err);
        lp_status st = lp_json_parse(input, strlen(input), NULL, &v, &err);
        char *out = NULL;
        size_t out_len = 0;
        if (!st)
            st = lp_cjson_dumps(v, &out, &out_len, &err);
        json_decref(v);
        if (st) {
            if (!optional)
                fail_msg("vector %s: %s", name, err.msg);
            /* An optional vector may be refused, but only cleanly. */
            assert_int_equal(st, LP_ERR_MALFORMED);
            assert_int_equal(err.code, LP_ERR_MALFORMED);
            assert_true(strlen(err.msg) > 0);
            print_message("canonical vector %s: skipped (refused: %s)\n", name, err.msg);
            skipped++;
            continue;
        }
        size_t want_n;
        uint8_t *want = unhex(hex, &want_n);
        assert_int_equal(want_n, (size_t)want_len);
        if (out_len != want_n || memcmp(out, want, want_n) != 0)
            fail_msg("vector %s: canonical bytes differ (got %zu bytes: %s)", name, out_len,
                     out);
        free(want);
        free(out);
        matched++;
    }
    print_message("canonical vectors: %zu matched, %zu optional skipped\n", matched, skipped);
    assert_true(matched >= json_array_size(vecs) - 2);

    for (size_t i = 0; i < json_array_size(rejects); i++) {
        json_t *rej = json_array_get(rejects, i);
        const char *name, *input;
        assert_int_equal(lp_json_get_string(rej, "must_reject", "name", &name, &err), LP_OK);
        assert_int_equal(lp_json_get_string(rej, name, "input_json", &input, &err), LP_OK);
        json_t *v = NULL;
        lp_status st = lp_json_parse(input, strlen(input), NULL, &v, &err);
        if (!st) {
            lp_buf b;
            lp_buf_init(&b, 0);
            st = lp_cjson_encode(v, &b, &err);
            assert_int_equal(st, LP_ERR_MALFORMED);
            assert_non_null(strstr(err.msg, "real number"));
            assert_non_null(strstr(err.msg, "canonical JSON"));
            lp_buf_free(&b);
            json_decref(v);
        }
        if (st != LP_ERR_MALFORMED)
            fail_msg("must_reject %s: got %s", name, lp_status_name(st));
    }
    json_decref(doc);
}

static void test_cjson_encode_appends(void **state)
{
    (void)state;
    lp_buf b;
    lp_buf_init(&b, 0);
    lp_error err;
    assert_int_equal(lp_buf_append_str(&b, "prefix:", &err), LP_OK);
    json_t *v = parse_ok("{\"b\":[1,\"x\\\"y\"],\"a\":null}");
    assert_int_equal(lp_cjson_encode(v, &b, &err), LP_OK);
    assert_string_equal((char *)b.data, "prefix:{\"a\":null,\"b\":[1,\"x\\\"y\"]}");
    json_decref(v);

    /* A failure leaves the buffer as it was. */
    size_t before = b.len;
    v = parse_ok("{\"a\":[1,2,{\"c\":0.5}]}");
    assert_int_equal(lp_cjson_encode(v, &b, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "real number (0.5)"));
    assert_int_equal(b.len, before);
    assert_string_equal((char *)b.data, "prefix:{\"a\":null,\"b\":[1,\"x\\\"y\"]}");
    json_decref(v);
    lp_buf_free(&b);

    /* The buffer's own bound applies. */
    lp_buf_init(&b, 8);
    v = parse_ok("[\"0123456789\"]");
    assert_int_equal(lp_cjson_encode(v, &b, &err), LP_ERR_TOO_LARGE);
    json_decref(v);
    lp_buf_free(&b);
}

static void test_canonical_raw_bytes(void **state)
{
    (void)state;
    /* NUL, control bytes and DEL are written raw, in keys too. */
    json_t *v = json_object();
    assert_int_equal(json_object_setn_new(v, "k\x01", 2, json_stringn("a\0\x1f\x7f\"\\", 6)), 0);
    assert_int_equal(json_object_setn_new(v, "k", 1, json_integer(-9223372036854775807LL - 1)),
                     0);
    size_t n;
    char *out = canon(v, &n);
    static const char want[] = "{\"k\":-9223372036854775808,\"k\x01\":\"a\0\x1f\x7f\\\"\\\\\"}";
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(out, want, n);
    assert_int_equal(out[n], 0);
    free(out);
    json_decref(v);
}

/* -------------------------------------------------------------- compact */

static void test_compact_escapes(void **state)
{
    (void)state;
    /* Expected bytes are Python's json.dumps(..., sort_keys=True,
     * separators=(",", ":")) of the same value. */
    json_t *v = parse_ok("\"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f \\\"\\\\/~\\u007f"
                         "\\u0080\\u00e9\\u2028\\uffff\\ud83d\\ude00\\udbff\\udfff\"");
    size_t n;
    char *out = compact(v, &n);
    assert_string_equal(out, "\"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f \\\"\\\\/~\\u007f"
                             "\\u0080\\u00e9\\u2028\\uffff\\ud83d\\ude00\\udbff\\udfff\"");
    assert_int_equal(n, strlen(out));
    free(out);
    json_decref(v);

    /* Keys sorted by code point (U+FF61 before U+1F600), nested values, no
     * whitespace, large integers exact. */
    v = parse_ok("{\"\\uff61\": 1, \"\\ud83d\\ude00\": [true, false, null], \"\\u00e9\": {},"
                 " \"e\": 9007199254740993, \"Z\": -5, \"\\u0100\": \"caf\xc3\xa9\"}");
    out = compact(v, &n);
    assert_string_equal(out, "{\"Z\":-5,\"e\":9007199254740993,\"\\u00e9\":{},\"\\u0100\":"
                             "\"caf\\u00e9\",\"\\uff61\":1,\"\\ud83d\\ude00\":[true,false,null]}");
    free(out);
    json_decref(v);

    /* Reals are refused, naming the form. */
    v = parse_ok("{\"a\":[1e3]}");
    char *o2 = (char *)&o2;
    lp_error err;
    assert_int_equal(lp_json_dump_compact(v, &o2, &n, &err), LP_ERR_MALFORMED);
    assert_null(o2);
    assert_non_null(strstr(err.msg, "real number (1000)"));
    json_decref(v);

    /* A string that is not UTF-8 (only possible in a tree built by hand) is
     * refused rather than escaped wrongly. */
    v = json_stringn_nocheck("ab\xc3(", 4);
    assert_int_equal(lp_json_dump_compact(v, &o2, &n, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "not valid UTF-8"));
    assert_non_null(strstr(err.msg, "0xc3 at offset 2"));
    json_decref(v);
    v = json_stringn_nocheck("\xed\xa0\x80", 3); /* encoded surrogate */
    assert_int_equal(lp_json_dump_compact(v, &o2, NULL, &err), LP_ERR_MALFORMED);
    json_decref(v);
    v = json_stringn_nocheck("\xf0\x9f\x98", 3); /* truncated sequence */
    assert_int_equal(lp_json_dump_compact(v, &o2, NULL, &err), LP_ERR_MALFORMED);
    json_decref(v);

    assert_int_equal(lp_json_dump_compact(NULL, &o2, NULL, &err), LP_ERR_INVALID_ARG);
}

static void roundtrip_dir(const char *rel, size_t *count)
{
    char *dir = lp_path_join(vectors(), rel);
    assert_non_null(dir);
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s", dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 5, ".json"))
            continue;
        char *relpath = lp_path_join(rel, e->d_name);
        assert_non_null(relpath);
        size_t len;
        uint8_t *data = read_vector(relpath, &len);
        json_t *v = NULL;
        lp_error err;
        if (lp_json_parse(data, len, NULL, &v, &err))
            fail_msg("%s: %s", relpath, err.msg);
        size_t n;
        char *out = compact(v, &n);
        if (n != len || memcmp(out, data, len))
            fail_msg("%s: compact dump differs from the file (%zu vs %zu bytes)", relpath, n,
                     len);
        free(out);
        free(data);
        free(relpath);
        json_decref(v);
        (*count)++;
    }
    closedir(d);
    free(dir);
}

static void test_roundtrip_compact_files(void **state)
{
    (void)state;
    size_t count = 0;
    roundtrip_dir("basic/metadata", &count);
    size_t basic = count;
    roundtrip_dir("delegations/metadata", &count);
    size_t deleg = count - basic;
    roundtrip_dir("keytypes/metadata", &count); /* PEM keys: "\n" escapes */
    assert_true(basic >= 4);
    assert_true(deleg >= 7);
    print_message("compact round trip: %zu files byte-identical\n", count);
}

static void test_roundtrip_pretty_files(void **state)
{
    (void)state;
    static const char *const files[] = {
        "attacks/unknown_fields/metadata/2.root.json",
        "attacks/unknown_fields/metadata/2.snapshot.json",
        "attacks/unknown_fields/metadata/2.targets.json",
        "attacks/unknown_fields/metadata/timestamp.json",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        size_t len;
        uint8_t *data = read_vector(files[i], &len);
        assert_non_null(memchr(data, '\n', len)); /* really pretty-printed */
        json_t *orig = NULL, *again = NULL;
        lp_error err;
        if (lp_json_parse(data, len, NULL, &orig, &err))
            fail_msg("%s: %s", files[i], err.msg);
        size_t n;
        char *out = compact(orig, &n);
        assert_null(memchr(out, '\n', n));
        assert_true(n < len);
        if (lp_json_parse(out, n, NULL, &again, &err))
            fail_msg("%s: reparsing the compact form: %s", files[i], err.msg);
        size_t c1n, c2n;
        char *c1 = canon(orig, &c1n), *c2 = canon(again, &c2n);
        assert_int_equal(c1n, c2n);
        assert_memory_equal(c1, c2, c1n);
        /* Dumping again gives the same compact bytes. */
        size_t n2;
        char *out2 = compact(again, &n2);
        assert_int_equal(n, n2);
        assert_memory_equal(out, out2, n);
        free(out2);
        free(c1);
        free(c2);
        free(out);
        free(data);
        json_decref(orig);
        json_decref(again);
    }
}

/* ----------------------------------------------------------- strictness */

static void test_refusals(void **state)
{
    (void)state;
    refuse("{\"a\": 1, \"a\": 2}", LP_ERR_MALFORMED, "duplicate object key");
    refuse("{\"x\": {\"k\": 1, \"k\": 1}}", LP_ERR_MALFORMED, "duplicate object key");
    refuse("\"\xc3\x28\"", LP_ERR_MALFORMED, "unable to decode byte 0xc3");
    refuse("\"\xc0\xaf\"", LP_ERR_MALFORMED, "unable to decode byte 0xc0"); /* overlong '/' */
    refuse("\"\xed\xa0\x80\"", LP_ERR_MALFORMED, "unable to decode byte 0xed"); /* surrogate */
    refuse("\"\xf4\x90\x80\x80\"", LP_ERR_MALFORMED, "unable to decode"); /* > U+10FFFF */
    refuse("\"\xff\"", LP_ERR_MALFORMED, "unable to decode byte 0xff");
    refuse("\"\\ud800\"", LP_ERR_MALFORMED, "invalid Unicode");
    refuse("\"\\ud800x\"", LP_ERR_MALFORMED, "invalid Unicode");
    refuse("\"\\udc00\"", LP_ERR_MALFORMED, "invalid Unicode");
    refuse("{\"a\": 1} x", LP_ERR_MALFORMED, "end of file expected");
    refuse("{\"a\": 1}{}", LP_ERR_MALFORMED, "end of file expected");
    refuse("1 2", LP_ERR_MALFORMED, "end of file expected");
    refuse("", LP_ERR_MALFORMED, "empty input");
    refuse(" \n\t", LP_ERR_MALFORMED, "invalid JSON at line 2");
    refuse("{\"a\":}", LP_ERR_MALFORMED, "invalid JSON at line 1 column 6");
    refuse("[1,]", LP_ERR_MALFORMED, "invalid JSON");
    refuse("{'a': 1}", LP_ERR_MALFORMED, "invalid JSON");
    refuse("\"a\nb\"", LP_ERR_MALFORMED, "unexpected newline");
    refuse("\"a\x01b\"", LP_ERR_MALFORMED, "control character 0x1");
    refuse("[NaN]", LP_ERR_MALFORMED, "invalid JSON");
    refuse("18446744073709551616", LP_ERR_MALFORMED, "too big integer");
    refuse("[9223372036854775808]", LP_ERR_MALFORMED, "integers must fit in 64 bits");
    refuse("-9223372036854775809", LP_ERR_MALFORMED, "too big negative integer");
    refuse("1e400", LP_ERR_MALFORMED, "real number overflow");
    /* An object key with U+0000 cannot be held by jansson: refused clearly. */
    refuse("{\"a\\u0000b\": 1}", LP_ERR_MALFORMED, "NUL byte in object key");
    /* A raw NUL byte is not JSON, inside or outside strings. */
    refuse_n("\"a\0b\"", 5, NULL, LP_ERR_MALFORMED, "invalid JSON");
    refuse_n("{}\0", 3, NULL, LP_ERR_MALFORMED, "invalid JSON");

    json_t *v = NULL;
    assert_int_equal(lp_json_parse(NULL, 1, NULL, &v, NULL), LP_ERR_INVALID_ARG);
    assert_int_equal(lp_json_parse("1", 1, NULL, NULL, NULL), LP_ERR_INVALID_ARG);
}

static char *nested(unsigned levels, char open, char close)
{
    char *s = malloc(2 * levels + 1);
    assert_non_null(s);
    memset(s, open, levels);
    memset(s + levels, close, levels);
    s[2 * levels] = 0;
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    char *s = nested(64, '[', ']');
    json_t *v = parse_ok(s);
    size_t n;
    char *out = canon(v, &n);
    assert_string_equal(out, s);
    free(out);
    json_decref(v);
    free(s);

    s = nested(65, '[', ']');
    refuse(s, LP_ERR_MALFORMED, "JSON nested deeper than 64 levels");
    free(s);

    /* Far past jansson's own limit: the same kind of refusal. */
    s = nested(5000, '[', ']');
    refuse(s, LP_ERR_MALFORMED, "JSON nested deeper than 64 levels");
    free(s);

    /* A custom limit; objects count as levels like arrays, scalars do not. */
    lp_json_limits lim = {.max_depth = 3};
    const char *ok3 = "{\"a\":[{\"b\":1}],\"c\":[[2]]}";
    assert_int_equal(lp_json_parse(ok3, strlen(ok3), &lim, &v, NULL), LP_OK);
    json_decref(v);
    const char *deep4 = "{\"a\":[{\"b\":{}}]}";
    refuse_n(deep4, strlen(deep4), &lim, LP_ERR_MALFORMED, "JSON nested deeper than 3 levels");
    deep4 = "[1,[2],[[3]],[[[4]]]]";
    refuse_n(deep4, strlen(deep4), &lim, LP_ERR_MALFORMED, "deeper than 3 levels");
    lim.max_depth = 1;
    assert_int_equal(lp_json_parse("[1,{}]", 6, &lim, &v, NULL), LP_ERR_MALFORMED);
    assert_int_equal(lp_json_parse("[1,2]", 5, &lim, &v, NULL), LP_OK);
    json_decref(v);
    assert_int_equal(lp_json_parse("7", 1, &lim, &v, NULL), LP_OK);
    json_decref(v);

    /* Encoders bound their recursion on trees built by hand. */
    json_t *deep = json_array();
    json_t *cur = deep;
    for (int i = 0; i < 3000; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    char *o;
    lp_error err;
    assert_int_equal(lp_cjson_dumps(deep, &o, &n, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "nested deeper than"));
    assert_int_equal(lp_json_dump_compact(deep, &o, &n, &err), LP_ERR_MALFORMED);
    json_decref(deep);
}

static void test_size_limit(void **state)
{
    (void)state;
    lp_json_limits lim = {.max_bytes = 10};
    json_t *v = NULL;
    lp_error err;
    assert_int_equal(lp_json_parse("[1,2,3,45]", 10, &lim, &v, &err), LP_OK);
    json_decref(v);
    refuse_n("[1,2,3,456]", 11, &lim, LP_ERR_TOO_LARGE,
             "JSON input of 11 bytes exceeds the limit of 10 bytes");
    /* The size is checked before parsing: garbage past the limit is
     * reported as too large, not as malformed. */
    refuse_n("xxxxxxxxxxxxxxxxxxxx", 20, &lim, LP_ERR_TOO_LARGE, "limit of 10 bytes");
}

static void test_big_integers_and_scalars(void **state)
{
    (void)state;
    json_t *v = parse_ok("[9007199254740993, -9007199254740993, 9223372036854775807, -0]");
    assert_int_equal(json_integer_value(json_array_get(v, 0)), 9007199254740993LL);
    size_t n;
    char *out = canon(v, &n);
    assert_string_equal(out, "[9007199254740993,-9007199254740993,9223372036854775807,0]");
    free(out);
    out = compact(v, &n);
    assert_string_equal(out, "[9007199254740993,-9007199254740993,9223372036854775807,0]");
    free(out);
    json_decref(v);

    /* Any value at the top level, and NUL inside strings. */
    v = parse_ok("  \"a\\u0000b\"  ");
    assert_int_equal(json_string_length(v), 3);
    out = canon(v, &n);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "\"a\0b\"", 5);
    free(out);
    out = compact(v, &n);
    assert_string_equal(out, "\"a\\u0000b\"");
    free(out);
    json_decref(v);
    v = parse_ok("false");
    out = canon(v, &n);
    assert_string_equal(out, "false");
    free(out);
    json_decref(v);
}

/* -------------------------------------------------------------- getters */

static const char getter_doc[] =
    "{\"o\": {\"x\": 1}, \"a\": [1], \"s\": \"text\", \"i\": 5, \"t\": true, \"f\": false,"
    " \"r\": 5.0, \"n\": null, \"z\": \"a\\u0000b\", \"neg\": -9223372036854775808}";

#define EXPECT_ERR(call, code, text)                                                          \
    do {                                                                                      \
        lp_error_clear(&err);                                                                 \
        assert_int_equal((call), (code));                                                     \
        assert_string_equal(err.msg, (text));                                                 \
    } while (0)

static void test_getters_required(void **state)
{
    (void)state;
    json_t *d = parse_ok(getter_doc);
    lp_error err;
    json_t *j = NULL;
    const char *s = NULL;
    int64_t i = 0;
    bool b = false;

    assert_int_equal(lp_json_get_object(d, "doc", "o", &j, &err), LP_OK);
    assert_true(json_is_object(j) && json_object_size(j) == 1);
    assert_int_equal(lp_json_get_array(d, "doc", "a", &j, &err), LP_OK);
    assert_int_equal(json_array_size(j), 1);
    assert_int_equal(lp_json_get_string(d, "doc", "s", &s, &err), LP_OK);
    assert_string_equal(s, "text");
    assert_int_equal(lp_json_get_int(d, "doc", "i", 1, 5, &i, &err), LP_OK);
    assert_int_equal(i, 5);
    assert_int_equal(lp_json_get_int(d, "doc", "neg", INT64_MIN, 0, &i, &err), LP_OK);
    assert_true(i == INT64_MIN);
    assert_int_equal(lp_json_get_bool(d, "doc", "t", &b, &err), LP_OK);
    assert_true(b);
    assert_int_equal(lp_json_get_bool(d, "doc", "f", &b, &err), LP_OK);
    assert_false(b);

    /* Missing members. */
    EXPECT_ERR(lp_json_get_object(d, "doc", "q", &j, &err), LP_ERR_MALFORMED, "doc.q: missing");
    assert_null(j);
    EXPECT_ERR(lp_json_get_array(d, "doc", "q", &j, &err), LP_ERR_MALFORMED, "doc.q: missing");
    EXPECT_ERR(lp_json_get_string(d, "doc", "q", &s, &err), LP_ERR_MALFORMED, "doc.q: missing");
    EXPECT_ERR(lp_json_get_int(d, "doc", "q", 0, 9, &i, &err), LP_ERR_MALFORMED,
               "doc.q: missing");
    EXPECT_ERR(lp_json_get_bool(d, "doc", "q", &b, &err), LP_ERR_MALFORMED, "doc.q: missing");

    /* Type mismatches, one per getter and kind of wrong value. */
    EXPECT_ERR(lp_json_get_object(d, "doc", "a", &j, &err), LP_ERR_MALFORMED,
               "doc.a: expected an object");
    EXPECT_ERR(lp_json_get_object(d, "doc", "n", &j, &err), LP_ERR_MALFORMED,
               "doc.n: expected an object");
    EXPECT_ERR(lp_json_get_array(d, "doc", "o", &j, &err), LP_ERR_MALFORMED,
               "doc.o: expected an array");
    EXPECT_ERR(lp_json_get_array(d, "doc", "s", &j, &err), LP_ERR_MALFORMED,
               "doc.s: expected an array");
    EXPECT_ERR(lp_json_get_string(d, "doc", "i", &s, &err), LP_ERR_MALFORMED,
               "doc.i: expected a string");
    EXPECT_ERR(lp_json_get_string(d, "doc", "n", &s, &err), LP_ERR_MALFORMED,
               "doc.n: expected a string");
    EXPECT_ERR(lp_json_get_int(d, "doc", "t", 0, 9, &i, &err), LP_ERR_MALFORMED,
               "doc.t: expected an integer");
    EXPECT_ERR(lp_json_get_int(d, "doc", "r", 0, 9, &i, &err), LP_ERR_MALFORMED,
               "doc.r: expected an integer");
    EXPECT_ERR(lp_json_get_int(d, "doc", "s", 0, 9, &i, &err), LP_ERR_MALFORMED,
               "doc.s: expected an integer");
    EXPECT_ERR(lp_json_get_bool(d, "doc", "i", &b, &err), LP_ERR_MALFORMED,
               "doc.i: expected a boolean");
    EXPECT_ERR(lp_json_get_bool(d, "doc", "n", &b, &err), LP_ERR_MALFORMED,
               "doc.n: expected a boolean");

    /* Ranges. */
    EXPECT_ERR(lp_json_get_int(d, "doc", "i", 1, 3, &i, &err), LP_ERR_MALFORMED,
               "doc.i: 5 is out of range [1, 3]");
    EXPECT_ERR(lp_json_get_int(d, "doc", "i", 6, INT64_MAX, &i, &err), LP_ERR_MALFORMED,
               "doc.i: 5 is out of range [6, 9223372036854775807]");
    EXPECT_ERR(lp_json_get_int(d, "doc", "neg", -1, 1, &i, &err), LP_ERR_MALFORMED,
               "doc.neg: -9223372036854775808 is out of range [-1, 1]");

    /* A string with NUL cannot be handed out as a C string. */
    EXPECT_ERR(lp_json_get_string(d, "doc", "z", &s, &err), LP_ERR_MALFORMED,
               "doc.z: string contains a NUL character");

    /* The container itself must be an object. */
    json_t *arr = parse_ok("[1]");
    EXPECT_ERR(lp_json_get_int(arr, "list", "i", 0, 9, &i, &err), LP_ERR_MALFORMED,
               "list: expected an object, not an array");
    EXPECT_ERR(lp_json_get_string(NULL, "none", "s", &s, &err), LP_ERR_MALFORMED,
               "none: expected an object, not nothing");
    json_decref(arr);

    /* The borrowed member lives as long as the document. */
    assert_int_equal(lp_json_get_object(d, "timestamp.json signed", "o", &j, &err), LP_OK);
    assert_int_equal(lp_json_get_int(j, "timestamp.json signed.o", "x", 0, 0, &i, &err),
                     LP_ERR_MALFORMED);
    assert_string_equal(err.msg, "timestamp.json signed.o.x: 1 is out of range [0, 0]");
    json_decref(d);
}

static void test_getters_optional(void **state)
{
    (void)state;
    json_t *d = parse_ok(getter_doc);
    lp_error err;
    json_t *j = (json_t *)&j;
    int64_t i = 42;
    bool b = true, present = true;

    /* Absent: LP_OK, NULL / untouched, present = false. */
    assert_int_equal(lp_json_get_object_opt(d, "doc", "q", &j, &err), LP_OK);
    assert_null(j);
    j = (json_t *)&j;
    assert_int_equal(lp_json_get_array_opt(d, "doc", "q", &j, &err), LP_OK);
    assert_null(j);
    assert_int_equal(lp_json_get_int_opt(d, "doc", "q", 0, 9, &i, &present, &err), LP_OK);
    assert_false(present);
    assert_int_equal(i, 42);
    present = true;
    assert_int_equal(lp_json_get_bool_opt(d, "doc", "q", &b, &present, &err), LP_OK);
    assert_false(present);
    assert_true(b);

    /* Present with the right type. */
    assert_int_equal(lp_json_get_object_opt(d, "doc", "o", &j, &err), LP_OK);
    assert_true(json_is_object(j));
    assert_int_equal(lp_json_get_array_opt(d, "doc", "a", &j, &err), LP_OK);
    assert_true(json_is_array(j));
    assert_int_equal(lp_json_get_int_opt(d, "doc", "i", 0, 9, &i, &present, &err), LP_OK);
    assert_true(present);
    assert_int_equal(i, 5);
    assert_int_equal(lp_json_get_bool_opt(d, "doc", "f", &b, &present, &err), LP_OK);
    assert_true(present);
    assert_false(b);

    /* Present with the wrong type (null included) or out of range: errors. */
    EXPECT_ERR(lp_json_get_object_opt(d, "doc", "n", &j, &err), LP_ERR_MALFORMED,
               "doc.n: expected an object");
    assert_null(j);
    EXPECT_ERR(lp_json_get_array_opt(d, "doc", "o", &j, &err), LP_ERR_MALFORMED,
               "doc.o: expected an array");
    i = 42;
    EXPECT_ERR(lp_json_get_int_opt(d, "doc", "t", 0, 9, &i, &present, &err), LP_ERR_MALFORMED,
               "doc.t: expected an integer");
    assert_false(present);
    assert_int_equal(i, 42);
    EXPECT_ERR(lp_json_get_int_opt(d, "doc", "r", 0, 9, &i, &present, &err), LP_ERR_MALFORMED,
               "doc.r: expected an integer");
    EXPECT_ERR(lp_json_get_int_opt(d, "doc", "i", 6, 9, &i, &present, &err), LP_ERR_MALFORMED,
               "doc.i: 5 is out of range [6, 9]");
    assert_false(present);
    assert_int_equal(i, 42);
    EXPECT_ERR(lp_json_get_bool_opt(d, "doc", "s", &b, &present, &err), LP_ERR_MALFORMED,
               "doc.s: expected a boolean");
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_vectors),
        cmocka_unit_test(test_cjson_encode_appends),
        cmocka_unit_test(test_canonical_raw_bytes),
        cmocka_unit_test(test_compact_escapes),
        cmocka_unit_test(test_roundtrip_compact_files),
        cmocka_unit_test(test_roundtrip_pretty_files),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_big_integers_and_scalars),
        cmocka_unit_test(test_getters_required),
        cmocka_unit_test(test_getters_optional),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
