/*
 * api_body.c — strict JSON request bodies (see api.h).
 *
 * The body is parsed by the project's strict parser (src/tuf/json.h):
 * duplicate keys, invalid UTF-8, trailing bytes and deep nesting are all
 * refused, and integers stay 64-bit.  Then each member is checked against
 * the route's field table.  A client that misspells a field gets a 400
 * naming it instead of a silently ignored option; a field of the wrong type
 * gets a 400 naming the field and the type wanted.  An array of objects is
 * checked item by item against its own field table, and a refusal names the
 * member ("signatures[1].sig").  Values (ranges, character sets) are
 * checked later by the code that uses them, which names the field in its
 * own message.
 */
#include "server/api.h"

#include "tuf/json.h"

#include <stdlib.h>
#include <string.h>

#define BODY_MAX_DEPTH 8

static const char *type_name(lp_api_type t)
{
    switch (t) {
    case LP_API_STRING:
        return "a string";
    case LP_API_INT:
        return "an integer";
    case LP_API_BOOL:
        return "true or false";
    case LP_API_STRING_ARRAY:
        return "an array of strings";
    case LP_API_OBJECT_ARRAY:
        return "an array of objects";
    case LP_API_OBJECT:
        return "an object";
    }
    return "?";
}

static bool type_ok(const json_t *v, lp_api_type t)
{
    switch (t) {
    case LP_API_STRING:
        return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
    case LP_API_INT:
        return json_is_integer(v);
    case LP_API_BOOL:
        return json_is_boolean(v);
    case LP_API_STRING_ARRAY: {
        if (!json_is_array(v))
            return false;
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            if (!type_ok(e, LP_API_STRING))
                return false;
        }
        return true;
    }
    case LP_API_OBJECT_ARRAY: {
        if (!json_is_array(v))
            return false;
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            if (!json_is_object(e))
                return false;
        }
        return true;
    }
    case LP_API_OBJECT:
        return json_is_object(v);
    }
    return false;
}

/* The length of a string, or of the longest string in an array. */
static size_t longest(const json_t *v)
{
    if (json_is_string(v))
        return json_string_length(v);
    size_t max = 0, i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (json_string_length(e) > max)
            max = json_string_length(e);
    }
    return max;
}

static void bad(lp_http_request *rq, const char *field, const char *what)
{
    lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request", "field '%.160s': %s", field,
                          what);
}

/* Checks the members of `obj` against `fields` (see api.h).  False with
 * the field's name (`prefix` + name, e.g. "signatures[0].keyid") in
 * name[160] and what is wrong in what[96]. */
static bool check_object(const json_t *obj, const lp_api_field *fields, size_t nfields,
                         const char *prefix, char name[160], char what[96])
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        const lp_api_field *f = NULL;
        for (size_t i = 0; i < nfields && !f; i++)
            if (!strcmp(fields[i].name, key))
                f = &fields[i];
        snprintf(name, 160, "%s%.64s", prefix, key);
        if (!f) {
            snprintf(what, 96, "unknown field");
            return false;
        }
        if (json_is_null(v) && f->nullable)
            continue;
        what[0] = '\0';
        if (!type_ok(v, f->type))
            snprintf(what, 96, "expected %s", type_name(f->type));
        else if (f->max_items && json_array_size(v) > f->max_items)
            snprintf(what, 96, "more than %zu items", f->max_items);
        else if (f->type != LP_API_OBJECT_ARRAY && f->type != LP_API_OBJECT && f->max_len &&
                 longest(v) > f->max_len)
            snprintf(what, 96, "longer than %zu bytes", f->max_len);
        if (what[0])
            return false;
        if (f->type == LP_API_OBJECT_ARRAY) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e)
            {
                char sub[96];
                snprintf(sub, sizeof sub, "%s%.64s[%zu].", prefix, key, i);
                if (!check_object(e, f->items, f->nitems, sub, name, what))
                    return false;
            }
        }
    }
    for (size_t i = 0; i < nfields; i++) {
        json_t *m = json_object_get(obj, fields[i].name);
        if (fields[i].required && (!m || json_is_null(m))) {
            snprintf(name, 160, "%s%s", prefix, fields[i].name);
            snprintf(what, 96, "missing");
            return false;
        }
    }
    return true;
}

bool lp_api_parse_body(lp_http_request *rq, const lp_api_field *fields, size_t nfields,
                       json_t **out)
{
    *out = NULL;
    size_t len = 0;
    const uint8_t *data = lp_http_body(rq, &len);
    if (!data || !len) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "the request body must be a JSON object");
        return false;
    }
    lp_json_limits lim = {.max_bytes = len, .max_depth = BODY_MAX_DEPTH};
    lp_error err;
    json_t *doc = NULL;
    if (lp_json_parse(data, len, &lim, &doc, &err)) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request", "request body: %s",
                              err.msg);
        return false;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "the request body must be a JSON object");
        return false;
    }
    char name[160], what[96];
    if (!check_object(doc, fields, nfields, "", name, what)) {
        bad(rq, name, what);
        json_decref(doc);
        return false;
    }
    *out = doc;
    return true;
}

const char *lp_api_str(const json_t *obj, const char *name)
{
    return json_string_value(json_object_get(obj, name));
}

bool lp_api_str_array(const json_t *obj, const char *name, const char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    json_t *a = json_object_get(obj, name);
    size_t count = json_is_array(a) ? json_array_size(a) : 0;
    if (!count)
        return true;
    const char **v = calloc(count, sizeof *v);
    if (!v)
        return false;
    for (size_t i = 0; i < count; i++)
        v[i] = json_string_value(json_array_get(a, i));
    *out = v;
    *n = count;
    return true;
}
