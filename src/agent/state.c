/*
 * state.c — state.json: the updater's record of what is installed, current,
 * on probation and bad (see agent.h for the value, docs/agent.md for the
 * format).
 *
 * The file is local, but a disk or a person may damage it, so it is read as
 * strictly as any outside input: bounded size, the strict JSON parser (no
 * duplicate keys, valid UTF-8), every member required with its exact type,
 * no unknown member, ranges and uniqueness checked.  A refusal names the file
 * and the field ("…/state.json: releases[1].version: expected a string");
 * nothing guesses a repair, because a wrong guess could run a release that
 * was marked bad.  What a crash can leave (a switch half done, a release
 * folder gone) is not damage: the file is always whole (atomic writes) and
 * recover.c reconciles its content with the file system.
 *
 * Written as indented JSON with sorted keys, through lp_agent_write_file
 * (temporary file, fsync, rename, fsync of the folder).  The network side
 * records the time of its last check and its failures here too
 * (lp_updater_record_check / lp_updater_record_error), so one status shows
 * everything.
 */
#include "agent/agent.h"

#include "core/file.h"
#include "core/timeutil.h"
#include "tuf/json.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_FORMAT 1
/* Times and windows are kept far from INT64_MAX so since + window cannot
 * overflow. */
#define TIME_MAX (INT64_MAX / 4)

void lp_agent_state_init(lp_agent_state *s)
{
    memset(s, 0, sizeof *s);
}

void lp_agent_state_free(lp_agent_state *s)
{
    for (size_t i = 0; i < s->release_count; i++)
        free(s->releases[i].version);
    free(s->releases);
    for (size_t i = 0; i < s->bad_count; i++)
        free(s->bad[i].reason);
    free(s->bad);
    free(s->sw.reason);
    free(s->last_error);
    lp_agent_state_init(s);
}

lp_agent_release *lp_agent_state_release(const lp_agent_state *s, uint64_t id)
{
    for (size_t i = 0; i < s->release_count; i++)
        if (s->releases[i].id == id)
            return &s->releases[i];
    return NULL;
}

const lp_agent_bad *lp_agent_state_bad(const lp_agent_state *s, uint64_t id)
{
    for (size_t i = 0; i < s->bad_count; i++)
        if (s->bad[i].id == id)
            return &s->bad[i];
    return NULL;
}

/* A copy of at most `max` bytes of msg, cut at a UTF-8 character start. */
static char *dup_cut(const char *msg, size_t max)
{
    size_t n = strlen(msg);
    if (n > max) {
        n = max;
        while (n && ((unsigned char)msg[n] & 0xC0) == 0x80)
            n--;
    }
    return strndup(msg, n);
}

lp_status lp_agent_state_add_release(lp_agent_state *s, uint64_t id, const char *version,
                                     int64_t at, lp_error *err)
{
    if (lp_agent_state_release(s, id))
        return LP_OK;
    if (s->release_count >= LP_AGENT_MAX_RELEASES)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "more than %u installed releases",
                            LP_AGENT_MAX_RELEASES);
    lp_agent_release *r = realloc(s->releases, (s->release_count + 1) * sizeof *r);
    if (!r)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    s->releases = r;
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%llu", (unsigned long long)id);
    char *v = strdup(version && *version ? version : idbuf);
    if (!v)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    r[s->release_count++] = (lp_agent_release){id, v, at};
    return LP_OK;
}

void lp_agent_state_remove_release(lp_agent_state *s, uint64_t id)
{
    for (size_t i = 0; i < s->release_count; i++) {
        if (s->releases[i].id != id)
            continue;
        free(s->releases[i].version);
        memmove(&s->releases[i], &s->releases[i + 1],
                (s->release_count - i - 1) * sizeof s->releases[0]);
        s->release_count--;
        return;
    }
}

lp_status lp_agent_state_add_bad(lp_agent_state *s, uint64_t id, const char *reason, int64_t at,
                                 lp_error *err)
{
    char *r = dup_cut(reason && *reason ? reason : "no reason given", LP_AGENT_MAX_REASON);
    if (!r)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->bad_count; i++) {
        if (s->bad[i].id == id) {
            free(s->bad[i].reason);
            s->bad[i].reason = r;
            s->bad[i].at = at;
            return LP_OK;
        }
    }
    if (s->bad_count >= LP_AGENT_MAX_BAD) {
        /* Drop the oldest: version codes only grow, so an old bad release
         * is not offered again anyway. */
        free(s->bad[0].reason);
        memmove(&s->bad[0], &s->bad[1], (s->bad_count - 1) * sizeof s->bad[0]);
        s->bad_count--;
    }
    lp_agent_bad *b = realloc(s->bad, (s->bad_count + 1) * sizeof *b);
    if (!b) {
        free(r);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    s->bad = b;
    b[s->bad_count++] = (lp_agent_bad){id, r, at};
    return LP_OK;
}

lp_status lp_agent_state_set_error(lp_agent_state *s, const char *msg, int64_t at, lp_error *err)
{
    free(s->last_error);
    s->last_error = NULL;
    s->last_error_at = 0;
    if (!msg)
        return LP_OK;
    if (!(s->last_error = dup_cut(msg, LP_AGENT_MAX_ERROR)))
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    s->last_error_at = at;
    return LP_OK;
}

const char *lp_agent_version_of(const lp_agent_state *s, uint64_t id, char *buf, size_t cap)
{
    if (!id)
        return "";
    const lp_agent_release *r = lp_agent_state_release(s, id);
    if (r)
        return r->version;
    snprintf(buf, cap, "%llu", (unsigned long long)id);
    return buf;
}

/* ---- parsing ------------------------------------------------------------ */

typedef struct reader {
    const char *file;
    lp_error *err;
} reader;

static lp_status bad_field(reader *rd, const char *field, const char *what)
{
    return lp_error_set(rd->err, LP_ERR_MALFORMED, "%s: %s: %s", rd->file, field, what);
}

/* "prefix.key" (or "key") into buf. */
static const char *field_name(char *buf, size_t cap, const char *prefix, const char *key)
{
    if (prefix && *prefix)
        snprintf(buf, cap, "%s.%s", prefix, key);
    else
        snprintf(buf, cap, "%s", key);
    return buf;
}

static lp_status check_keys(reader *rd, const json_t *o, const char *prefix,
                            const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v)
    {
        (void)v;
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, key) == 0)
                ok = true;
        if (!ok) {
            char f[128];
            return bad_field(rd, field_name(f, sizeof f, prefix, key), "unknown field");
        }
    }
    return LP_OK;
}

/* A member that must be present; *out NULL when it is JSON null and
 * nullable. */
static lp_status member(reader *rd, const json_t *o, const char *prefix, const char *key,
                        bool nullable, json_t **out)
{
    char f[128];
    *out = json_object_get(o, key);
    if (!*out)
        return bad_field(rd, field_name(f, sizeof f, prefix, key), "missing");
    if (json_is_null(*out)) {
        *out = NULL;
        if (!nullable)
            return bad_field(rd, field_name(f, sizeof f, prefix, key), "must not be null");
    }
    return LP_OK;
}

static lp_status get_int(reader *rd, const json_t *o, const char *prefix, const char *key,
                         bool nullable, int64_t min, int64_t max, int64_t *out)
{
    json_t *v;
    lp_status st = member(rd, o, prefix, key, nullable, &v);
    if (st)
        return st;
    *out = 0;
    if (!v)
        return LP_OK;
    char f[128];
    field_name(f, sizeof f, prefix, key);
    if (!json_is_integer(v))
        return bad_field(rd, f, "expected an integer");
    json_int_t x = json_integer_value(v);
    if (x < min || x > max) {
        char what[96];
        snprintf(what, sizeof what, "%lld is out of range [%lld, %lld]", (long long)x,
                 (long long)min, (long long)max);
        return bad_field(rd, f, what);
    }
    *out = x;
    return LP_OK;
}

static lp_status get_id(reader *rd, const json_t *o, const char *prefix, const char *key,
                        bool nullable, uint64_t *out)
{
    int64_t v;
    lp_status st = get_int(rd, o, prefix, key, nullable, 1, INT64_MAX, &v);
    *out = (uint64_t)v;
    return st;
}

/* A string of at most max bytes, without control characters; *out borrowed,
 * NULL for null. */
static lp_status get_str(reader *rd, const json_t *o, const char *prefix, const char *key,
                         bool nullable, size_t max, const char **out)
{
    json_t *v;
    lp_status st = member(rd, o, prefix, key, nullable, &v);
    *out = NULL;
    if (st || !v)
        return st;
    char f[128];
    field_name(f, sizeof f, prefix, key);
    if (!json_is_string(v))
        return bad_field(rd, f, "expected a string");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n > max) {
        char what[64];
        snprintf(what, sizeof what, "longer than %zu bytes", max);
        return bad_field(rd, f, what);
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 && s[i] != '\n' && s[i] != '\t')
            return bad_field(rd, f, "contains a control character");
    *out = s;
    return LP_OK;
}

static lp_status get_array(reader *rd, const json_t *o, const char *key, size_t max,
                           json_t **out)
{
    lp_status st = member(rd, o, NULL, key, false, out);
    if (st)
        return st;
    if (!json_is_array(*out))
        return bad_field(rd, key, "expected an array");
    if (json_array_size(*out) > max) {
        char what[64];
        snprintf(what, sizeof what, "more than %zu entries", max);
        return bad_field(rd, key, what);
    }
    return LP_OK;
}

static lp_status get_object(reader *rd, const json_t *o, const char *prefix, const char *key,
                            bool nullable, json_t **out)
{
    lp_status st = member(rd, o, prefix, key, nullable, out);
    if (st || !*out)
        return st;
    char f[128];
    if (!json_is_object(*out))
        return bad_field(rd, field_name(f, sizeof f, prefix, key), "expected an object");
    return LP_OK;
}

static lp_status parse_pending(reader *rd, const json_t *o, lp_agent_state *s)
{
    static const char *const keys[] = {"id", "since", "launches", "window_s", "max_launches",
                                       NULL};
    lp_status st = check_keys(rd, o, "pending", keys);
    int64_t v;
    if (!st)
        st = get_id(rd, o, "pending", "id", false, &s->pending.id);
    if (!st)
        st = get_int(rd, o, "pending", "since", false, 0, TIME_MAX, &s->pending.since);
    if (!st && !(st = get_int(rd, o, "pending", "launches", false, 0, UINT32_MAX, &v)))
        s->pending.launches = (uint32_t)v;
    if (!st)
        st = get_int(rd, o, "pending", "window_s", false, 1, TIME_MAX, &s->pending.window_s);
    if (!st && !(st = get_int(rd, o, "pending", "max_launches", false, 1, UINT32_MAX, &v)))
        s->pending.max_launches = (uint32_t)v;
    s->has_pending = !st;
    return st;
}

static lp_status parse_switch(reader *rd, const json_t *o, lp_agent_state *s)
{
    static const char *const keys[] = {"op", "from", "to", "at", "reason", NULL};
    lp_status st = check_keys(rd, o, "switch", keys);
    const char *op = NULL, *reason = NULL;
    if (!st)
        st = get_str(rd, o, "switch", "op", false, 16, &op);
    if (!st) {
        if (strcmp(op, "update") == 0)
            s->sw.op = LP_SWITCH_UPDATE;
        else if (strcmp(op, "rollback") == 0)
            s->sw.op = LP_SWITCH_ROLLBACK;
        else
            st = bad_field(rd, "switch.op", "expected \"update\" or \"rollback\"");
    }
    if (!st)
        st = get_id(rd, o, "switch", "from", true, &s->sw.from);
    if (!st)
        st = get_id(rd, o, "switch", "to", false, &s->sw.to);
    if (!st)
        st = get_int(rd, o, "switch", "at", false, 0, INT64_MAX, &s->sw.at);
    if (!st)
        st = get_str(rd, o, "switch", "reason", true, LP_AGENT_MAX_REASON, &reason);
    if (!st && reason && !(s->sw.reason = strdup(reason)))
        st = lp_error_set(rd->err, LP_ERR_NOMEM, "out of memory");
    if (!st && s->sw.from == s->sw.to)
        st = bad_field(rd, "switch.to", "equals switch.from");
    if (st)
        s->sw.op = LP_SWITCH_NONE;
    return st;
}

static lp_status parse_releases(reader *rd, const json_t *arr, lp_agent_state *s)
{
    static const char *const keys[] = {"id", "version", "installed_at", NULL};
    size_t n = json_array_size(arr);
    if (n && !(s->releases = calloc(n, sizeof *s->releases)))
        return lp_error_set(rd->err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "releases[%zu]", i);
        const json_t *o = json_array_get(arr, i);
        if (!json_is_object(o))
            return bad_field(rd, prefix, "expected an object");
        lp_agent_release r = {0};
        const char *version;
        lp_status st = check_keys(rd, o, prefix, keys);
        if (!st)
            st = get_id(rd, o, prefix, "id", false, &r.id);
        if (!st)
            st = get_str(rd, o, prefix, "version", false, LP_UPDATER_MAX_VERSION, &version);
        if (!st && !*version)
            st = bad_field(rd, prefix, "empty version");
        if (!st)
            st = get_int(rd, o, prefix, "installed_at", false, 0, INT64_MAX, &r.installed_at);
        if (!st && lp_agent_state_release(s, r.id)) {
            char f[48];
            st = bad_field(rd, field_name(f, sizeof f, prefix, "id"), "duplicate id");
        }
        if (st)
            return st;
        if (!(r.version = strdup(version)))
            return lp_error_set(rd->err, LP_ERR_NOMEM, "out of memory");
        s->releases[s->release_count++] = r;
    }
    return LP_OK;
}

static lp_status parse_bad(reader *rd, const json_t *arr, lp_agent_state *s)
{
    static const char *const keys[] = {"id", "reason", "at", NULL};
    size_t n = json_array_size(arr);
    if (n && !(s->bad = calloc(n, sizeof *s->bad)))
        return lp_error_set(rd->err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "bad[%zu]", i);
        const json_t *o = json_array_get(arr, i);
        if (!json_is_object(o))
            return bad_field(rd, prefix, "expected an object");
        lp_agent_bad b = {0};
        const char *reason;
        lp_status st = check_keys(rd, o, prefix, keys);
        if (!st)
            st = get_id(rd, o, prefix, "id", false, &b.id);
        if (!st)
            st = get_str(rd, o, prefix, "reason", false, LP_AGENT_MAX_REASON, &reason);
        if (!st)
            st = get_int(rd, o, prefix, "at", false, 0, INT64_MAX, &b.at);
        if (!st && lp_agent_state_bad(s, b.id)) {
            char f[48];
            st = bad_field(rd, field_name(f, sizeof f, prefix, "id"), "duplicate id");
        }
        if (st)
            return st;
        if (!(b.reason = strdup(reason)))
            return lp_error_set(rd->err, LP_ERR_NOMEM, "out of memory");
        s->bad[s->bad_count++] = b;
    }
    return LP_OK;
}

static lp_status parse_doc(reader *rd, const json_t *doc, lp_agent_state *s)
{
    static const char *const keys[] = {"format",   "current", "previous",   "pending",
                                       "switch",   "post_update_due",       "releases",
                                       "bad",      "last_check", "last_error", NULL};
    if (!json_is_object(doc))
        return lp_error_set(rd->err, LP_ERR_MALFORMED, "%s: expected a JSON object", rd->file);
    lp_status st = check_keys(rd, doc, NULL, keys);
    int64_t format;
    if (!st)
        st = get_int(rd, doc, NULL, "format", false, 0, INT64_MAX, &format);
    if (!st && format != STATE_FORMAT)
        return lp_error_set(rd->err, LP_ERR_UNSUPPORTED,
                            "%s: format: %lld is not supported (%d is)", rd->file,
                            (long long)format, STATE_FORMAT);
    if (!st)
        st = get_id(rd, doc, NULL, "current", true, &s->current);
    if (!st)
        st = get_id(rd, doc, NULL, "previous", true, &s->previous);
    json_t *o;
    if (!st && !(st = get_object(rd, doc, NULL, "pending", true, &o)) && o)
        st = parse_pending(rd, o, s);
    if (!st && !(st = get_object(rd, doc, NULL, "switch", true, &o)) && o)
        st = parse_switch(rd, o, s);
    if (!st)
        st = get_id(rd, doc, NULL, "post_update_due", true, &s->post_update_due);
    if (!st && !(st = get_array(rd, doc, "releases", LP_AGENT_MAX_RELEASES, &o)))
        st = parse_releases(rd, o, s);
    if (!st && !(st = get_array(rd, doc, "bad", LP_AGENT_MAX_BAD, &o)))
        st = parse_bad(rd, o, s);
    if (!st)
        st = get_int(rd, doc, NULL, "last_check", true, 0, INT64_MAX, &s->last_check);
    if (!st && !(st = get_object(rd, doc, NULL, "last_error", true, &o)) && o) {
        static const char *const ekeys[] = {"at", "message", NULL};
        const char *msg;
        st = check_keys(rd, o, "last_error", ekeys);
        if (!st)
            st = get_int(rd, o, "last_error", "at", false, 0, INT64_MAX, &s->last_error_at);
        if (!st)
            st = get_str(rd, o, "last_error", "message", false, LP_AGENT_MAX_ERROR, &msg);
        if (!st && !(s->last_error = strdup(msg)))
            st = lp_error_set(rd->err, LP_ERR_NOMEM, "out of memory");
    }
    return st;
}

lp_status lp_agent_state_parse(const void *data, size_t len, const char *where,
                               lp_agent_state *s, lp_error *err)
{
    lp_agent_state_init(s);
    lp_json_limits lim = {LP_AGENT_STATE_MAX_BYTES, 8};
    json_t *doc = NULL;
    lp_status st = lp_json_parse(data, len, &lim, &doc, err);
    if (st)
        return lp_error_prefix(err, st, "%s", where);
    reader rd = {where, err};
    st = parse_doc(&rd, doc, s);
    json_decref(doc);
    if (st)
        lp_agent_state_free(s);
    return st;
}

/* ---- writing ------------------------------------------------------------- */

static json_t *id_or_null(uint64_t id)
{
    return id ? json_integer((json_int_t)id) : json_null();
}

lp_status lp_agent_state_format(const lp_agent_state *s, char **out, size_t *len, lp_error *err)
{
    *out = NULL;
    json_t *doc = json_object();
    json_t *rel = json_array(), *bad = json_array();
    bool ok = doc && rel && bad;
    ok = ok && !json_object_set_new(doc, "format", json_integer(STATE_FORMAT));
    ok = ok && !json_object_set_new(doc, "current", id_or_null(s->current));
    ok = ok && !json_object_set_new(doc, "previous", id_or_null(s->previous));
    ok = ok && !json_object_set_new(
                   doc, "pending",
                   s->has_pending
                       ? json_pack("{s:I,s:I,s:I,s:I,s:I}", "id", (json_int_t)s->pending.id,
                                   "since", (json_int_t)s->pending.since, "launches",
                                   (json_int_t)s->pending.launches, "window_s",
                                   (json_int_t)s->pending.window_s, "max_launches",
                                   (json_int_t)s->pending.max_launches)
                       : json_null());
    ok = ok && !json_object_set_new(
                   doc, "switch",
                   s->sw.op != LP_SWITCH_NONE
                       ? json_pack("{s:s,s:o,s:I,s:I,s:o}", "op",
                                   s->sw.op == LP_SWITCH_UPDATE ? "update" : "rollback", "from",
                                   id_or_null(s->sw.from), "to", (json_int_t)s->sw.to, "at",
                                   (json_int_t)s->sw.at, "reason",
                                   s->sw.reason ? json_string(s->sw.reason) : json_null())
                       : json_null());
    ok = ok && !json_object_set_new(doc, "post_update_due", id_or_null(s->post_update_due));
    for (size_t i = 0; ok && i < s->release_count; i++)
        ok = !json_array_append_new(
            rel, json_pack("{s:I,s:s,s:I}", "id", (json_int_t)s->releases[i].id, "version",
                           s->releases[i].version, "installed_at",
                           (json_int_t)s->releases[i].installed_at));
    for (size_t i = 0; ok && i < s->bad_count; i++)
        ok = !json_array_append_new(bad, json_pack("{s:I,s:s,s:I}", "id",
                                                   (json_int_t)s->bad[i].id, "reason",
                                                   s->bad[i].reason, "at",
                                                   (json_int_t)s->bad[i].at));
    ok = ok && !json_object_set(doc, "releases", rel);
    ok = ok && !json_object_set(doc, "bad", bad);
    ok = ok && !json_object_set_new(doc, "last_check",
                                    s->last_check ? json_integer(s->last_check) : json_null());
    ok = ok && !json_object_set_new(doc, "last_error",
                                    s->last_error
                                        ? json_pack("{s:I,s:s}", "at",
                                                    (json_int_t)s->last_error_at, "message",
                                                    s->last_error)
                                        : json_null());
    char *text = ok ? json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(rel);
    json_decref(bad);
    json_decref(doc);
    if (!text)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory formatting state.json");
    /* End with a newline, as a text file does. */
    size_t n = strlen(text);
    char *t = realloc(text, n + 2);
    if (!t) {
        free(text);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory formatting state.json");
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    *out = t;
    *len = n + 1;
    return LP_OK;
}

lp_status lp_agent_state_read(lp_updater *u, lp_agent_state *s, bool *existed, lp_error *err)
{
    lp_agent_state_init(s);
    if (existed)
        *existed = false;
    char *path = lp_agent_path(u, ".livepush/state.json");
    if (!path)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_file_read(path, LP_AGENT_STATE_MAX_BYTES, &data, &len, err);
    if (st == LP_ERR_NOT_FOUND) {
        free(path);
        return LP_OK;
    }
    if (!st) {
        if (existed)
            *existed = true;
        st = lp_agent_state_parse(data, len, path, s, err);
    }
    free(data);
    free(path);
    return st;
}

lp_status lp_agent_state_write(lp_updater *u, const lp_agent_state *s, lp_error *err)
{
    char *text;
    size_t len;
    lp_status st = lp_agent_state_format(s, &text, &len, err);
    if (st)
        return st;
    char *path = lp_agent_path(u, ".livepush/state.json");
    if (!path)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    else
        st = lp_agent_write_file(u, path, text, len, 0600, "state:before-commit", err);
    free(path);
    free(text);
    return st;
}

/* ---- status --------------------------------------------------------------- */

lp_status lp_updater_status_get(lp_updater *u, lp_updater_status *out, lp_error *err)
{
    memset(out, 0, sizeof *out);
    lp_agent_state s;
    lp_status st = lp_agent_begin(u, &s, err);
    if (st)
        return st;
    out->current = s.current;
    out->previous = s.previous;
    out->on_probation = s.has_pending;
    if (s.has_pending) {
        out->probation_since = s.pending.since;
        out->probation_launches = s.pending.launches;
        out->probation_window_s = s.pending.window_s;
        out->probation_max_launches = s.pending.max_launches;
    }
    out->last_check = s.last_check;
    out->last_error_at = s.last_error_at;
    bool ok = true;
    if (s.release_count) {
        out->releases = calloc(s.release_count, sizeof *out->releases);
        ok = out->releases != NULL;
        for (size_t i = 0; ok && i < s.release_count; i++) {
            out->releases[i] = (lp_release_info){s.releases[i].id, strdup(s.releases[i].version),
                                                 s.releases[i].installed_at};
            out->release_count++;
            ok = out->releases[i].version != NULL;
        }
    }
    if (ok && s.bad_count) {
        out->bad = calloc(s.bad_count, sizeof *out->bad);
        ok = out->bad != NULL;
        for (size_t i = 0; ok && i < s.bad_count; i++) {
            out->bad[i] = (lp_bad_release){s.bad[i].id, strdup(s.bad[i].reason), s.bad[i].at};
            out->bad_count++;
            ok = out->bad[i].reason != NULL;
        }
    }
    if (ok && s.last_error)
        ok = (out->last_error = strdup(s.last_error)) != NULL;
    lp_agent_end(u, &s);
    if (!ok) {
        lp_updater_status_free(out);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    return LP_OK;
}

void lp_updater_status_free(lp_updater_status *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->release_count; i++)
        free(s->releases[i].version);
    free(s->releases);
    for (size_t i = 0; i < s->bad_count; i++)
        free(s->bad[i].reason);
    free(s->bad);
    free(s->last_error);
    memset(s, 0, sizeof *s);
}

/* ---- what the network side records ------------------------------------------ */

/* One session that sets last_check (when check_at > 0) and last_error (when
 * msg is not NULL). */
static lp_status record(lp_updater *u, int64_t check_at, const char *msg, lp_error *err)
{
    if (check_at < 0 || check_at > TIME_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "recording a check: time %lld is out of range",
                            (long long)check_at);
    lp_agent_state s;
    lp_status st = lp_agent_begin(u, &s, err);
    if (st)
        return st;
    int64_t now = lp_time_now();
    if (check_at > 0)
        s.last_check = check_at;
    if (msg)
        st = lp_agent_state_set_error(&s, msg, check_at > 0 ? check_at : now, err);
    if (!st)
        st = lp_agent_state_write(u, &s, err);
    lp_agent_end(u, &s);
    return st;
}

lp_status lp_updater_record_check(lp_updater *u, int64_t now, const char *error, lp_error *err)
{
    if (now <= 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "recording a check: no time given");
    return record(u, now, error, err);
}

lp_status lp_updater_record_error(lp_updater *u, const char *msg, lp_error *err)
{
    if (!msg || !*msg)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "recording an error: no message");
    return record(u, 0, msg, err);
}
