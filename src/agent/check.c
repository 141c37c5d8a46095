/*
 * check.c — choosing the release for this device (see the network section
 * of include/livepush/updater.h and docs/agent.md, "Checking for an
 * update").
 *
 * The server lists every published release in the top-level TUF targets
 * role as "releases/<version_code>.json" (the release's tree manifest) with
 * the release fields in the target's custom part (src/server/service_sync.c
 * writes them).  A check refreshes the metadata, lists those targets, reads
 * each custom part strictly, applies the device's rules and keeps the
 * highest version code that passes; only that one manifest is downloaded
 * (through TUF, so its signed length and hash are checked) and parsed.
 *
 * The custom part arrives as canonical JSON text, which escapes only '"' and
 * '\\': a control character inside a string (a newline in release notes) is
 * raw there and would not be valid JSON, so such bytes are escaped as
 * \u00XX first and the result is parsed strictly (duplicate keys, invalid
 * UTF-8, depth and size limits refused).
 *
 * Each target is judged on its own: a custom part that is malformed (a
 * missing or mistyped field, a value out of bounds, a name that does not
 * match its version code) makes that target skipped with a reason given to
 * the caller, never the whole check failed, so one bad entry cannot stop a
 * fleet from updating.  Fields this version does not know are ignored, so a
 * newer server can add some without older devices skipping everything.
 * The targeting rules are the exception: they narrow who installs, so they
 * are read strictly (src/agent/targeting.c, the same reader the server
 * uses) and fail closed: a member this version does not know or a
 * malformed value makes the release skipped as malformed, never taken.
 *
 * Rules, in the order reasons are reported: newer than the current release
 * (a rollback by the server arrives as a higher code, so the device never
 * moves backwards), not marked bad on this device, published on the
 * device's channel, platform, arch and runtime_version equal to the
 * device's when the release sets them, then the targeting rules: the
 * current version code within the release's range, the attributes it
 * names, the device list.
 */
#include "agent/net.h"
#include "agent/targeting.h"

#include "core/buf.h"
#include "core/file.h"
#include "tuf/json.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#define RELEASE_PREFIX "releases/"
/* Bounds on the release fields (as the server enforces them). */
#define MAX_CHANNELS 16u
#define MAX_NAME 64u
#define MAX_RUNTIME 64u
#define MAX_PLATFORM 32u
#define MAX_NOTES 16384u

/* The release fields of one target. */
typedef struct release_fields {
    const char *version;
    uint64_t code;
    bool mandatory;
    const char *notes;
    uint64_t rollback_of;
    const char *runtime_version, *platform, *arch;
    json_t *channels;
    bool has_targeting;
    lp_targeting targeting; /* borrows from the parsed custom part */
} release_fields;

/* ---- the custom part --------------------------------------------------- */

/* A printable string of 1..max bytes (tabs and newlines allowed when
 * `text`); NULL when not. */
static const char *bounded_string(const json_t *v, size_t max, bool text)
{
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > max || strlen(s) != n)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && !(text && (c == '\n' || c == '\t' || c == '\r')))
            return NULL;
        if (c == 0x7f)
            return NULL;
    }
    return s;
}

static bool positive_code(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Reads the custom part; false with a reason when malformed. */
static bool parse_fields(json_t *c, release_fields *f, char *why, size_t cap)
{
    memset(f, 0, sizeof *f);
    if (!json_is_object(c)) {
        snprintf(why, cap, "malformed custom part: expected an object");
        return false;
    }
    const json_t *v;
    if (!(f->version = bounded_string(json_object_get(c, "version"), LP_UPDATER_MAX_VERSION,
                                      false))) {
        snprintf(why, cap, "malformed custom field version: expected a string of 1..%u "
                           "printable bytes",
                 LP_UPDATER_MAX_VERSION);
        return false;
    }
    if (!positive_code(json_object_get(c, "version_code"), &f->code)) {
        snprintf(why, cap, "malformed custom field version_code: expected a positive integer");
        return false;
    }
    f->channels = json_object_get(c, "channels");
    size_t nch = json_array_size(f->channels);
    bool ok = json_is_array(f->channels) && nch >= 1 && nch <= MAX_CHANNELS;
    for (size_t i = 0; ok && i < nch; i++)
        ok = bounded_string(json_array_get(f->channels, i), MAX_NAME, false) != NULL;
    if (!ok) {
        snprintf(why, cap, "malformed custom field channels: expected an array of 1..%u "
                           "names of 1..%u bytes",
                 MAX_CHANNELS, MAX_NAME);
        return false;
    }
    v = json_object_get(c, "mandatory");
    if (!json_is_boolean(v)) {
        snprintf(why, cap, "malformed custom field mandatory: expected true or false");
        return false;
    }
    f->mandatory = json_is_true(v);
    static const struct {
        const char *name;
        size_t max;
        bool text;
    } optional[] = {{"runtime_version", MAX_RUNTIME, false},
                    {"platform", MAX_PLATFORM, false},
                    {"arch", MAX_PLATFORM, false},
                    {"notes", MAX_NOTES, true}};
    const char **dest[] = {&f->runtime_version, &f->platform, &f->arch, &f->notes};
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++) {
        v = json_object_get(c, optional[i].name);
        if (!v)
            continue;
        if (!(*dest[i] = bounded_string(v, optional[i].max, optional[i].text))) {
            snprintf(why, cap, "malformed custom field %s: expected a string of 1..%zu bytes",
                     optional[i].name, optional[i].max);
            return false;
        }
    }
    v = json_object_get(c, "rollback_of");
    if (v && !positive_code(v, &f->rollback_of)) {
        snprintf(why, cap, "malformed custom field rollback_of: expected a positive integer");
        return false;
    }
    v = json_object_get(c, "targeting");
    char where[160], what[256];
    if (v && !lp_targeting_read(v, &f->targeting, where, sizeof where, what, sizeof what)) {
        snprintf(why, cap, "malformed custom field %s: %s", where, what);
        return false;
    }
    f->has_targeting = v != NULL;
    return true;
}

/* Standard JSON text of canonical JSON text: control characters inside
 * strings escaped.  Appends to out. */
static lp_status canonical_to_json(const char *text, lp_buf *out, lp_error *err)
{
    bool in_string = false, escaped = false;
    lp_status st = LP_OK;
    for (const unsigned char *p = (const unsigned char *)text; !st && *p; p++) {
        if (in_string && !escaped && *p < 0x20) {
            st = lp_buf_printf(out, err, "\\u%04x", *p);
            continue;
        }
        if (in_string && escaped)
            escaped = false;
        else if (in_string && *p == '\\')
            escaped = true;
        else if (*p == '"')
            in_string = !in_string;
        st = lp_buf_append(out, p, 1, err);
    }
    return st;
}

/* ---- the device ---------------------------------------------------------- */

typedef struct device {
    const lp_check_opts *o;
    char platform[MAX_PLATFORM * 2 + 1];
    char arch[MAX_PLATFORM * 2 + 1];
} device;

static void device_init(device *d, const lp_check_opts *o)
{
    d->o = o;
    struct utsname u;
    bool have_uname = uname(&u) == 0;
    if (o->platform)
        snprintf(d->platform, sizeof d->platform, "%s", o->platform);
    else if (have_uname)
        snprintf(d->platform, sizeof d->platform, "%s", u.sysname);
    else
        d->platform[0] = '\0';
    if (!o->platform)
        for (char *p = d->platform; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    if (o->arch)
        snprintf(d->arch, sizeof d->arch, "%s", o->arch);
    else if (have_uname)
        snprintf(d->arch, sizeof d->arch, "%s", u.machine);
    else
        d->arch[0] = '\0';
}

static bool in_channel(const release_fields *f, const char *channel)
{
    for (size_t i = 0; i < json_array_size(f->channels); i++)
        if (strcmp(json_string_value(json_array_get(f->channels, i)), channel) == 0)
            return true;
    return false;
}

static bool is_bad(const lp_check_opts *o, uint64_t code)
{
    for (size_t i = 0; i < o->bad_count; i++)
        if (o->bad_ids[i] == code)
            return true;
    return false;
}

/* Why the device does not take this release ("" when it does). */
static void judge(const device *d, const release_fields *f, char *why, size_t cap)
{
    const lp_check_opts *o = d->o;
    why[0] = '\0';
    if (f->code <= o->current_id)
        snprintf(why, cap, "version code %llu is not newer than the current %llu",
                 (unsigned long long)f->code, (unsigned long long)o->current_id);
    else if (is_bad(o, f->code))
        snprintf(why, cap, "version code %llu is marked bad on this device",
                 (unsigned long long)f->code);
    else if (!in_channel(f, o->channel))
        snprintf(why, cap, "not published on channel %s", o->channel);
    else if (f->platform && strcmp(f->platform, d->platform) != 0)
        snprintf(why, cap, "for platform %s, this device is %s", f->platform,
                 d->platform[0] ? d->platform : "(unknown)");
    else if (f->arch && strcmp(f->arch, d->arch) != 0)
        snprintf(why, cap, "for arch %s, this device is %s", f->arch,
                 d->arch[0] ? d->arch : "(unknown)");
    else if (f->runtime_version &&
             (!o->runtime_version || strcmp(f->runtime_version, o->runtime_version) != 0))
        snprintf(why, cap, "needs runtime %s, this device has %s", f->runtime_version,
                 o->runtime_version ? o->runtime_version : "none");
    else if (f->has_targeting)
        lp_targeting_judge(&f->targeting, o->current_id, o->device_id, o->attributes,
                           o->attribute_count, why, cap);
}

/* ---- one target ------------------------------------------------------------- */

typedef enum verdict { TAKE, SKIP, MALFORMED } verdict;

/* Judges one listed target; on TAKE *f is valid while *doc lives. */
static verdict consider(const device *d, const lp_tuf_target *t, json_t **doc,
                        release_fields *f, char *why, size_t cap)
{
    *doc = NULL;
    const char *custom = lp_tuf_target_custom_json(t);
    if (!custom) {
        snprintf(why, cap, "malformed: no custom part");
        return MALFORMED;
    }
    lp_buf b;
    lp_buf_init(&b, 0);
    lp_error e;
    lp_status st = canonical_to_json(custom, &b, &e);
    if (!st)
        st = lp_json_parse(b.data, b.len, NULL, doc, &e);
    lp_buf_free(&b);
    if (st) {
        *doc = NULL;
        snprintf(why, cap, "malformed custom part: %s", e.msg);
        return MALFORMED;
    }
    if (!parse_fields(*doc, f, why, cap))
        return MALFORMED;
    char want[48];
    snprintf(want, sizeof want, RELEASE_PREFIX "%llu.json", (unsigned long long)f->code);
    if (strcmp(lp_tuf_target_name(t), want) != 0) {
        snprintf(why, cap, "malformed: the name does not match version_code %llu (expected %s)",
                 (unsigned long long)f->code, want);
        return MALFORMED;
    }
    if (!lp_tuf_target_sha256(t)) {
        snprintf(why, cap, "malformed: the target lists no sha256 hash");
        return MALFORMED;
    }
    if (lp_tuf_target_length(t) > LP_MANIFEST_MAX_JSON_BYTES) {
        snprintf(why, cap, "malformed: the manifest is %llu bytes, more than the %u allowed",
                 (unsigned long long)lp_tuf_target_length(t), LP_MANIFEST_MAX_JSON_BYTES);
        return MALFORMED;
    }
    judge(d, f, why, cap);
    return why[0] ? SKIP : TAKE;
}

/* ---- the manifest ----------------------------------------------------------- */

static lp_status fetch_manifest(lp_tuf_client *tuf, const lp_tuf_target *t, const char *dir,
                                uint64_t code, lp_manifest *m, lp_error *err)
{
    char name[64];
    snprintf(name, sizeof name, ".manifest-%llu.json", (unsigned long long)code);
    char *path = lp_path_join(dir, name);
    if (!path)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_file_mkdirs(dir, 0700, err);
    if (!st)
        st = lp_tuf_client_download_target(tuf, t, path, err);
    if (!st)
        st = lp_file_read(path, (size_t)lp_tuf_target_length(t), &data, &len, err);
    if (!st && (st = lp_manifest_from_json(data, len, m, err)))
        lp_error_prefix(err, st, "manifest %s", lp_tuf_target_name(t));
    free(data);
    if (unlink(path) == 0)
        lp_file_sync_parent(path, NULL);
    free(path);
    return st;
}

/* ---- the check ----------------------------------------------------------------- */

void lp_update_offer_free(lp_update_offer *o)
{
    if (!o)
        return;
    free(o->version);
    free(o->notes);
    lp_manifest_free(&o->manifest);
    memset(o, 0, sizeof *o);
}

static void report(const lp_check_opts *o, const lp_tuf_target *t, const char *why)
{
    if (o->on_skip)
        o->on_skip(o->skip_ctx, lp_tuf_target_name(t), why);
}

lp_status lp_check_for_update(lp_tuf_client *tuf, const lp_check_opts *opts,
                              lp_update_offer *out, bool *available, lp_error *err)
{
    if (out) {
        memset(out, 0, sizeof *out);
        out->window_start = out->window_end = -1;
    }
    if (available)
        *available = false;
    if (!tuf || !opts || !out || !available)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "check: missing client, options or output");
    if (!opts->channel || !opts->channel[0] || !opts->work_dir || !opts->work_dir[0])
        return lp_error_set(err, LP_ERR_INVALID_ARG, "check: a channel and a work_dir are needed");
    if (opts->bad_count && !opts->bad_ids)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "check: bad_count without bad_ids");
    if (opts->device_id && !lp_targeting_device_id_ok(opts->device_id))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "check: the device id is not %u..%u lower-case hex digits",
                            LP_TARGETING_DEVICE_ID_MIN, LP_TARGETING_DEVICE_ID_MAX);
    lp_status ast = lp_device_attributes_check(opts->attributes, opts->attribute_count, err);
    if (ast)
        return lp_error_prefix(err, ast, "check");
    lp_status st = lp_tuf_client_refresh(tuf, NULL, err);
    if (st)
        return lp_error_prefix(err, st, "check");
    lp_tuf_target_list list;
    if ((st = lp_tuf_client_list_targets(tuf, RELEASE_PREFIX, 0, &list, err)))
        return lp_error_prefix(err, st, "check");
    /* The channel's rollout policy narrows what passed the release's own
     * rules (rollout.c); one the device cannot read offers nothing. */
    lp_rollout_policy policy;
    if ((st = lp_rollout_policy_load(tuf, opts->channel, &policy, err))) {
        lp_tuf_target_list_free(&list);
        return lp_error_prefix(err, st, "check");
    }
    device d;
    device_init(&d, opts);
    size_t best = SIZE_MAX;
    json_t *best_doc = NULL;
    release_fields best_f = {0};
    char why[512];
    for (size_t i = 0; i < list.count; i++) {
        json_t *doc;
        release_fields f;
        verdict v = consider(&d, list.items[i], &doc, &f, why, sizeof why);
        out->considered++;
        if (v == MALFORMED)
            out->malformed++;
        if (v == TAKE &&
            !lp_rollout_allows(&policy, opts->channel, opts->device_id, f.code, why, sizeof why))
            v = SKIP;
        if (v != TAKE) {
            report(opts, list.items[i], why);
            json_decref(doc);
            continue;
        }
        if (best != SIZE_MAX && f.code <= best_f.code) {
            snprintf(why, sizeof why, "version code %llu is lower than %llu, also offered",
                     (unsigned long long)f.code, (unsigned long long)best_f.code);
            report(opts, list.items[i], why);
            json_decref(doc);
            continue;
        }
        if (best != SIZE_MAX) {
            snprintf(why, sizeof why, "version code %llu is lower than %llu, also offered",
                     (unsigned long long)best_f.code, (unsigned long long)f.code);
            report(opts, list.items[best], why);
        }
        json_decref(best_doc);
        best = i;
        best_doc = doc;
        best_f = f;
    }
    if (best != SIZE_MAX) {
        const lp_tuf_target *t = list.items[best];
        out->version = strdup(best_f.version);
        out->notes = best_f.notes ? strdup(best_f.notes) : NULL;
        out->version_code = best_f.code;
        out->mandatory = best_f.mandatory;
        out->rollback_of = best_f.rollback_of;
        out->window_start = policy.window_start;
        out->window_end = policy.window_end;
        snprintf(out->target, sizeof out->target, "%s", lp_tuf_target_name(t));
        snprintf(out->manifest_sha256, sizeof out->manifest_sha256, "%s",
                 lp_tuf_target_sha256(t));
        if (!out->version || (best_f.notes && !out->notes))
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        if (!st && (st = fetch_manifest(tuf, t, opts->work_dir, best_f.code, &out->manifest,
                                        err)))
            lp_error_prefix(err, st, "check: release %s (code %llu)", best_f.version,
                            (unsigned long long)best_f.code);
        if (st) {
            size_t considered = out->considered, malformed = out->malformed;
            lp_update_offer_free(out);
            out->considered = considered;
            out->malformed = malformed;
        } else {
            *available = true;
        }
    }
    json_decref(best_doc);
    lp_tuf_target_list_free(&list);
    lp_rollout_policy_free(&policy);
    return st;
}
