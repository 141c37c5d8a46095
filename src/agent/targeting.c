/*
 * targeting.c — the targeting rules of a release: the strict reader shared
 * by the server and the device, the canonical form the server stores and
 * signs, and the device's judgement (see include/livepush/targeting.h and
 * src/agent/targeting.h).
 *
 * The reader checks every member against the format and stops at the first
 * problem, naming the member by its path.  Nothing is copied: a read
 * borrows the JSON values, so the device can judge straight from the
 * parsed custom part.  Duplicates in a device list (up to 10000 ids) are
 * found by sorting pointers to the ids, not by comparing every pair.
 *
 * The canonical form is the canonical JSON of the object the reader
 * accepted: since every member is known and every string is printable
 * ASCII, it is also plain JSON, and equal rules given in any key order give
 * the same bytes.
 */
#include "agent/targeting.h"

#include "tuf/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KNOWN "known: attributes, devices, max_from_code, min_from_code"

/* ---- characters ---------------------------------------------------------- */

static bool key_ok(const char *s, size_t n)
{
    if (n == 0 || n > LP_TARGETING_MAX_KEY)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return false;
    }
    return true;
}

static bool value_ok(const char *s, size_t n)
{
    if (n == 0 || n > LP_TARGETING_MAX_VALUE)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

bool lp_targeting_device_id_ok(const char *s)
{
    size_t n = s ? strnlen(s, LP_TARGETING_DEVICE_ID_MAX + 1) : 0;
    if (n < LP_TARGETING_DEVICE_ID_MIN || n > LP_TARGETING_DEVICE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* A string value without NUL inside, or NULL. */
static const char *string_of(const json_t *v, size_t *n)
{
    if (!json_is_string(v))
        return NULL;
    *n = json_string_length(v);
    const char *s = json_string_value(v);
    return strlen(s) == *n ? s : NULL;
}

/* s (n bytes) for a message: at most 64 bytes, non-printable bytes as '?'. */
static void shown(const char *s, size_t n, char out[68])
{
    size_t k = n < 64 ? n : 64;
    for (size_t i = 0; i < k; i++)
        out[i] = (unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e ? '?' : s[i];
    out[k] = '\0';
    if (n > 64)
        strcpy(out + k, "...");
}

/* ---- reading ---------------------------------------------------------------- */

typedef struct sorted_id {
    const char *s;
    size_t i;
} sorted_id;

static int cmp_id(const void *a, const void *b)
{
    const sorted_id *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* The index of an entry that repeats an earlier one (the later of the
 * pair), or SIZE_MAX; *first gets the earlier.  `s` holds the strings. */
static size_t find_duplicate(const char *const *s, size_t n, size_t *first, bool *oom)
{
    *oom = false;
    if (n < 2)
        return SIZE_MAX;
    if (n <= 8) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (!strcmp(s[i], s[j])) {
                    *first = j;
                    return i;
                }
        return SIZE_MAX;
    }
    sorted_id *v = calloc(n, sizeof *v);
    if (!v) {
        *oom = true;
        return SIZE_MAX;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (sorted_id){s[i], i};
    qsort(v, n, sizeof *v, cmp_id);
    size_t dup = SIZE_MAX;
    for (size_t i = 1; i < n; i++)
        if (!strcmp(v[i].s, v[i - 1].s) && (dup == SIZE_MAX || v[i].i < dup)) {
            dup = v[i].i;
            *first = v[i - 1].i;
        }
    free(v);
    return dup;
}

/* A non-negative integer member. */
static bool read_code(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static bool fail(char *where, size_t wcap, const char *path, char *what, size_t cap,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static bool fail(char *where, size_t wcap, const char *path, char *what, size_t cap,
                 const char *fmt, ...)
{
    snprintf(where, wcap, "%s", path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, cap, fmt, ap);
    va_end(ap);
    return false;
}

#define VALUE_WANTED "1..128 bytes of printable ASCII"

static bool read_value_list(const json_t *list, const char *path, char *where, size_t wcap,
                            char *what, size_t cap)
{
    size_t n = json_array_size(list);
    if (n == 0 || n > LP_TARGETING_MAX_VALUES)
        return fail(where, wcap, path, what, cap,
                    "expected a string or a list of 1..%u strings, got a list of %zu",
                    LP_TARGETING_MAX_VALUES, n);
    const char *vals[LP_TARGETING_MAX_VALUES];
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *s = string_of(json_array_get(list, i), &len);
        if (!s || !value_ok(s, len)) {
            char p[160];
            snprintf(p, sizeof p, "%s[%zu]", path, i);
            return fail(where, wcap, p, what, cap, "expected a string of " VALUE_WANTED);
        }
        vals[i] = s;
    }
    size_t first = 0;
    bool oom;
    size_t dup = find_duplicate(vals, n, &first, &oom);
    if (dup != SIZE_MAX) {
        char p[160];
        snprintf(p, sizeof p, "%s[%zu]", path, dup);
        return fail(where, wcap, p, what, cap, "listed twice (as [%zu] too)", first);
    }
    return true;
}

static bool read_attributes(const json_t *a, char *where, size_t wcap, char *what, size_t cap)
{
    const char *path = "targeting.attributes";
    size_t n = json_object_size(a);
    if (!json_is_object(a))
        return fail(where, wcap, path, what, cap,
                    "expected an object of attribute name -> value or list of values");
    if (n == 0 || n > LP_TARGETING_MAX_ATTRIBUTES)
        return fail(where, wcap, path, what, cap, "expected 1..%u attributes, got %zu",
                    LP_TARGETING_MAX_ATTRIBUTES, n);
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)a, key, klen, v)
    {
        char k[68];
        shown(key, klen, k);
        if (!key_ok(key, klen))
            return fail(where, wcap, path, what, cap,
                        "attribute name '%s' is not 1..%u bytes of a-z 0-9 _ . -", k,
                        LP_TARGETING_MAX_KEY);
        char p[160];
        snprintf(p, sizeof p, "%s.%s", path, k);
        size_t len = 0;
        const char *s = string_of(v, &len);
        if (json_is_array(v)) {
            if (!read_value_list(v, p, where, wcap, what, cap))
                return false;
        } else if (!s || !value_ok(s, len)) {
            return fail(where, wcap, p, what, cap,
                        "expected a string of " VALUE_WANTED " or a list of 1..%u of them",
                        LP_TARGETING_MAX_VALUES);
        }
    }
    return true;
}

static bool read_devices(const json_t *d, char *where, size_t wcap, char *what, size_t cap)
{
    const char *path = "targeting.devices";
    size_t n = json_array_size(d);
    if (!json_is_array(d))
        return fail(where, wcap, path, what, cap, "expected a list of 1..%u device ids",
                    LP_TARGETING_MAX_DEVICES);
    if (n == 0 || n > LP_TARGETING_MAX_DEVICES)
        return fail(where, wcap, path, what, cap, "expected a list of 1..%u device ids, got %zu",
                    LP_TARGETING_MAX_DEVICES, n);
    const char **ids = calloc(n, sizeof *ids);
    if (!ids)
        return fail(where, wcap, path, what, cap, "out of memory");
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        size_t len = 0;
        ids[i] = string_of(json_array_get(d, i), &len);
        if (!ids[i] || len > LP_TARGETING_DEVICE_ID_MAX || !lp_targeting_device_id_ok(ids[i])) {
            char p[160];
            snprintf(p, sizeof p, "%s[%zu]", path, i);
            ok = fail(where, wcap, p, what, cap,
                      "expected a device id: %u..%u lower-case hex digits",
                      LP_TARGETING_DEVICE_ID_MIN, LP_TARGETING_DEVICE_ID_MAX);
        }
    }
    size_t first = 0;
    bool oom = false;
    size_t dup = ok ? find_duplicate(ids, n, &first, &oom) : SIZE_MAX;
    free(ids);
    if (oom)
        return fail(where, wcap, path, what, cap, "out of memory");
    if (dup != SIZE_MAX) {
        char p[160];
        snprintf(p, sizeof p, "%s[%zu]", path, dup);
        return fail(where, wcap, p, what, cap, "listed twice (as [%zu] too)", first);
    }
    return ok;
}

bool lp_targeting_read(const json_t *v, lp_targeting *t, char *where, size_t wcap, char *what,
                       size_t cap)
{
    memset(t, 0, sizeof *t);
    if (!json_is_object(v))
        return fail(where, wcap, "targeting", what, cap, "expected an object");
    const char *key;
    size_t klen;
    json_t *m;
    json_object_keylen_foreach((json_t *)v, key, klen, m)
    {
        char k[68], p[96];
        shown(key, klen, k);
        snprintf(p, sizeof p, "targeting.%s", k);
        bool is_min = klen == strlen(key) && !strcmp(key, "min_from_code");
        bool is_max = klen == strlen(key) && !strcmp(key, "max_from_code");
        if (is_min || is_max) {
            if (!read_code(m, is_min ? &t->min_from : &t->max_from))
                return fail(where, wcap, p, what, cap, "expected an integer >= 0");
            *(is_min ? &t->has_min : &t->has_max) = true;
        } else if (klen == strlen(key) && !strcmp(key, "attributes")) {
            if (!read_attributes(m, where, wcap, what, cap))
                return false;
            t->attributes = m;
        } else if (klen == strlen(key) && !strcmp(key, "devices")) {
            if (!read_devices(m, where, wcap, what, cap))
                return false;
            t->devices = m;
        } else {
            return fail(where, wcap, p, what, cap, "unknown member (" KNOWN ")");
        }
    }
    if (t->has_min && t->has_max && t->max_from < t->min_from)
        return fail(where, wcap, "targeting.max_from_code", what, cap,
                    "%llu is below min_from_code %llu", (unsigned long long)t->max_from,
                    (unsigned long long)t->min_from);
    return true;
}

lp_status lp_targeting_canonical(const char *json, size_t len, char **out, lp_error *err)
{
    if (out)
        *out = NULL;
    if (!json || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "targeting: no text or no output");
    if (len > LP_TARGETING_MAX_JSON)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "targeting: %zu bytes, at most %u", len,
                            LP_TARGETING_MAX_JSON);
    lp_json_limits lim = {.max_bytes = LP_TARGETING_MAX_JSON, .max_depth = 8};
    json_t *doc = NULL;
    lp_status st = lp_json_parse(json, len, &lim, &doc, err);
    if (st)
        return lp_error_prefix(err, st, "targeting");
    lp_targeting t;
    char where[160], what[256];
    if (!lp_targeting_read(doc, &t, where, sizeof where, what, sizeof what))
        st = lp_error_set(err, strcmp(what, "out of memory") ? LP_ERR_INVALID_ARG : LP_ERR_NOMEM,
                          "%s: %s", where, what);
    else if (json_object_size(doc) > 0) {
        size_t out_len = 0;
        st = lp_cjson_dumps(doc, out, &out_len, err);
    }
    json_decref(doc);
    return st;
}

lp_status lp_device_attributes_check(const lp_device_attribute *attrs, size_t n, lp_error *err)
{
    if (n > LP_TARGETING_MAX_ATTRIBUTES)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "device attributes: %zu given, at most %u",
                            n, LP_TARGETING_MAX_ATTRIBUTES);
    if (n && !attrs)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "device attributes: a count without a list");
    for (size_t i = 0; i < n; i++) {
        const char *k = attrs[i].key, *v = attrs[i].value;
        char shk[68], shv[68];
        size_t kn = k ? strnlen(k, LP_TARGETING_MAX_KEY + 1) : 0;
        size_t vn = v ? strnlen(v, LP_TARGETING_MAX_VALUE + 1) : 0;
        shown(k ? k : "", kn, shk);
        shown(v ? v : "", vn, shv);
        if (!k || !key_ok(k, kn))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "device attribute '%s': the name is not 1..%u bytes of a-z 0-9 "
                                "_ . -",
                                shk, LP_TARGETING_MAX_KEY);
        if (!v || !value_ok(v, vn))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "device attribute %s: the value '%s' is not " VALUE_WANTED, shk,
                                shv);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(attrs[j].key, k))
                return lp_error_set(err, LP_ERR_INVALID_ARG,
                                    "device attribute %s: given twice", shk);
    }
    return LP_OK;
}

/* ---- judging --------------------------------------------------------------------- */

static const char *device_value(const lp_device_attribute *attrs, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(attrs[i].key, key))
            return attrs[i].value;
    return NULL;
}

static bool value_matches(const json_t *want, const char *have)
{
    if (json_is_string(want))
        return !strcmp(json_string_value(want), have);
    for (size_t i = 0; i < json_array_size(want); i++)
        if (!strcmp(json_string_value(json_array_get(want, i)), have))
            return true;
    return false;
}

/* "region=eu" or "region to be one of eu, us" into out. */
static void describe_wanted(const char *key, const json_t *want, char *out, size_t cap)
{
    if (json_is_string(want)) {
        snprintf(out, cap, "%s=%s", key, json_string_value(want));
        return;
    }
    size_t n = (size_t)snprintf(out, cap, "%s to be one of ", key);
    for (size_t i = 0; i < json_array_size(want) && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? ", " : "",
                              json_string_value(json_array_get(want, i)));
}

void lp_targeting_judge(const lp_targeting *t, uint64_t current, const char *device_id,
                        const lp_device_attribute *attrs, size_t n, char *why, size_t cap)
{
    why[0] = '\0';
    unsigned long long cur = (unsigned long long)current;
    const char *none = current ? "" : " (no release)";
    if ((t->has_min && current < t->min_from) || (t->has_max && current > t->max_from)) {
        if (t->has_min && t->has_max)
            snprintf(why, cap, "for devices running version codes %llu..%llu, this device runs "
                               "%llu%s",
                     (unsigned long long)t->min_from, (unsigned long long)t->max_from, cur, none);
        else if (t->has_min)
            snprintf(why, cap, "for devices running version code %llu or higher, this device "
                               "runs %llu%s",
                     (unsigned long long)t->min_from, cur, none);
        else
            snprintf(why, cap, "for devices running version code %llu or lower, this device "
                               "runs %llu%s",
                     (unsigned long long)t->max_from, cur, none);
        return;
    }
    const char *key;
    json_t *want;
    json_object_foreach((json_t *)t->attributes, key, want)
    {
        const char *have = device_value(attrs, n, key);
        if (have && value_matches(want, have))
            continue;
        char wanted[512];
        describe_wanted(key, want, wanted, sizeof wanted);
        if (have)
            snprintf(why, cap, "needs attribute %s, this device has %s=%s", wanted, key, have);
        else
            snprintf(why, cap, "needs attribute %s, this device has no attribute %s", wanted,
                     key);
        return;
    }
    if (t->devices) {
        size_t count = json_array_size(t->devices);
        for (size_t i = 0; device_id && i < count; i++)
            if (!strcmp(json_string_value(json_array_get(t->devices, i)), device_id))
                return;
        snprintf(why, cap, "not in the release's list of %zu device%s%s", count,
                 count == 1 ? "" : "s", device_id ? "" : " (this device has no id)");
    }
}
