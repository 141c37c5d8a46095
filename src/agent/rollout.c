/*
 * rollout.c — the rollout policy on the device: staged percentages,
 * pause and halt, A/B splits and maintenance windows (docs/rollouts.md).
 *
 * The policy of a channel is the custom part of the TUF target
 * "rollout/<channel>.json", which the app's targets role delegates (the
 * path pattern rollout/ followed by a star) to the server's online rollout
 * key.  It can only narrow what
 * the release keys signed: check.c applies it after a release passed every
 * rule of its own signed data, and releases are only ever taken from the
 * top-level targets role, so a policy can neither add a release nor lower
 * the version code (a rollout target outside "rollout/" is not even
 * reachable through the delegation).
 *
 *     {"channel": "stable", "salt": "<32 hex>",
 *      "releases": [{"version_code": 7, "percent_bp": 1000, "state": "active"},
 *                   {"version_code": 9, "percent_bp": 10000, "state": "active",
 *                    "weight": 50}, ...],
 *      "window": {"start": 120, "end": 240}}
 *
 * Cohorts are computed here, from signed data only, so a static copy of the
 * repository rolls out exactly as the server would:
 *
 *     bucket(device, code) = u64be(SHA-256(salt ":" device_id ":" code)[0..8]) mod 10000
 *
 * and the device is inside a rollout at p basis points when bucket < p; the
 * bucket does not depend on p, so a device inside at 10% stays inside at
 * 20%.  The arm of an A/B split is chosen the same way from
 * SHA-256(salt ":split:" device_id) modulo the sum of the arms' weights,
 * walking the arms by version code: it depends only on the device and the
 * weights, so a device stays in its arm for as long as the split lasts.
 *
 * A release the policy does not list is offered to everyone (100%, active).
 * A policy that is present but malformed, or a device without an id facing
 * a staged rollout, offers nothing: a restriction the device cannot
 * evaluate must never widen who installs.
 */
#include "agent/net.h"

#include "livepush/hash.h"
#include "tuf/json.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLICY_PREFIX "rollout/"

static bool is_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static uint64_t hash_u64(const char *text)
{
    uint8_t d[LP_HASH_MAX_LEN];
    if (lp_hash_buf(LP_HASH_SHA256, text, strlen(text), d, NULL) != LP_OK)
        return UINT64_MAX;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | d[i];
    return v;
}

uint32_t lp_rollout_bucket(const char *salt, const char *device_id, uint64_t version_code)
{
    char text[256];
    snprintf(text, sizeof text, "%s:%s:%llu", salt ? salt : "", device_id ? device_id : "",
             (unsigned long long)version_code);
    return (uint32_t)(hash_u64(text) % 10000u);
}

uint64_t lp_rollout_split_point(const char *salt, const char *device_id, uint64_t total_weight)
{
    if (!total_weight)
        return 0;
    char text[256];
    snprintf(text, sizeof text, "%s:split:%s", salt ? salt : "", device_id ? device_id : "");
    return hash_u64(text) % total_weight;
}

void lp_rollout_policy_free(lp_rollout_policy *p)
{
    if (!p)
        return;
    free(p->entries);
    memset(p, 0, sizeof *p);
    p->window_start = p->window_end = -1;
}

/* An integer member in [lo, hi]. */
static bool int_member(const json_t *o, const char *name, int64_t lo, int64_t hi, int64_t *out)
{
    const json_t *v = json_object_get(o, name);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return false;
    *out = json_integer_value(v);
    return true;
}

static bool only_members(const json_t *o, const char *const *names, size_t n, const char **bad)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        bool known = false;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(k, names[i]) == 0;
        if (!known) {
            *bad = k;
            return false;
        }
    }
    return true;
}

static int state_of(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "active"))
        return LP_ROLLOUT_ACTIVE;
    if (!strcmp(s, "paused"))
        return LP_ROLLOUT_PAUSED;
    if (!strcmp(s, "halted"))
        return LP_ROLLOUT_HALTED;
    return -1;
}

lp_status lp_rollout_policy_parse(const json_t *c, const char *channel, lp_rollout_policy *p,
                                  lp_error *err)
{
    lp_rollout_policy_free(p);
    static const char *const top[] = {"channel", "salt", "releases", "window"};
    static const char *const entry[] = {"version_code", "percent_bp", "state", "weight"};
    const char *bad = NULL;
    if (!json_is_object(c))
        return lp_error_set(err, LP_ERR_MALFORMED, "rollout policy: expected an object");
    if (!only_members(c, top, 4, &bad))
        return lp_error_set(err, LP_ERR_MALFORMED, "rollout policy: unknown member '%.64s'",
                            bad);
    const char *ch = json_string_value(json_object_get(c, "channel"));
    if (!ch || strcmp(ch, channel) != 0)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "rollout policy: it is for channel '%.64s', not '%s'",
                            ch ? ch : "(none)", channel);
    const char *salt = json_string_value(json_object_get(c, "salt"));
    if (!salt || !is_hex(salt, 32))
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "rollout policy: salt: expected 32 lower-case hex digits");
    memcpy(p->salt, salt, 33);
    const json_t *rel = json_object_get(c, "releases");
    size_t n = json_array_size(rel);
    if (!json_is_array(rel) || n > LP_ROLLOUT_MAX_ENTRIES)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "rollout policy: releases: expected an array of at most %u entries",
                            LP_ROLLOUT_MAX_ENTRIES);
    if (n && !(p->entries = calloc(n, sizeof *p->entries)))
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(rel, i);
        lp_rollout_entry *x = &p->entries[i];
        int64_t code, bp, weight = 0;
        if (!json_is_object(e) || !only_members(e, entry, 4, &bad) ||
            !int_member(e, "version_code", 1, INT64_MAX, &code) ||
            !int_member(e, "percent_bp", 0, 10000, &bp) ||
            (x->state = state_of(json_string_value(json_object_get(e, "state")))) < 0 ||
            (json_object_get(e, "weight") && !int_member(e, "weight", 1, 10000, &weight)) ||
            (i && (uint64_t)code <= p->entries[i - 1].version_code)) {
            lp_rollout_policy_free(p);
            return lp_error_set(err, LP_ERR_MALFORMED,
                                "rollout policy: releases[%zu]: expected {version_code >= 1 "
                                "(increasing), percent_bp 0..10000, state active|paused|halted"
                                "[, weight 1..10000]}",
                                i);
        }
        x->version_code = (uint64_t)code;
        x->percent_bp = (int)bp;
        x->weight = (int)weight;
        p->count++;
    }
    const json_t *w = json_object_get(c, "window");
    if (w) {
        static const char *const win[] = {"start", "end"};
        int64_t a, b;
        if (!json_is_object(w) || !only_members(w, win, 2, &bad) ||
            !int_member(w, "start", 0, 1439, &a) || !int_member(w, "end", 0, 1439, &b) ||
            a == b) {
            lp_rollout_policy_free(p);
            return lp_error_set(err, LP_ERR_MALFORMED,
                                "rollout policy: window: expected {start, end}, different "
                                "minutes 0..1439 after midnight UTC");
        }
        p->window_start = (int)a;
        p->window_end = (int)b;
    }
    p->present = true;
    return LP_OK;
}

lp_status lp_rollout_policy_load(lp_tuf_client *tuf, const char *channel, lp_rollout_policy *p,
                                 lp_error *err)
{
    memset(p, 0, sizeof *p);
    p->window_start = p->window_end = -1;
    char name[128];
    snprintf(name, sizeof name, POLICY_PREFIX "%s.json", channel);
    lp_tuf_target *t = NULL;
    lp_status st = lp_tuf_client_find_target(tuf, name, &t, err);
    if (st == LP_ERR_NOT_FOUND)
        return LP_OK;
    if (st)
        return lp_error_prefix(err, st, "rollout policy of channel %s", channel);
    const char *custom = lp_tuf_target_custom_json(t);
    json_t *doc = NULL;
    if (!custom)
        st = lp_error_set(err, LP_ERR_MALFORMED, "rollout policy: no custom part");
    if (!st)
        st = lp_json_parse_canonical(custom, NULL, &doc, err);
    if (!st)
        st = lp_rollout_policy_parse(doc, channel, p, err);
    json_decref(doc);
    lp_tuf_target_free(t);
    if (st)
        lp_error_prefix(err, st, "%s", name);
    return st;
}

static const lp_rollout_entry *entry_of(const lp_rollout_policy *p, uint64_t code)
{
    for (size_t i = 0; i < p->count; i++)
        if (p->entries[i].version_code == code)
            return &p->entries[i];
    return NULL;
}

bool lp_rollout_allows(const lp_rollout_policy *p, const char *channel, const char *device_id,
                       uint64_t code, char *why, size_t cap)
{
    why[0] = '\0';
    if (!p->present)
        return true;
    const lp_rollout_entry *e = entry_of(p, code);
    if (!e)
        return true;
    if (e->state != LP_ROLLOUT_ACTIVE) {
        snprintf(why, cap, "the rollout of version code %llu on channel %s is %s",
                 (unsigned long long)code, channel,
                 e->state == LP_ROLLOUT_PAUSED ? "paused" : "halted");
        return false;
    }
    bool needs_id = e->percent_bp < 10000 || e->weight > 0;
    if (needs_id && (!device_id || !*device_id)) {
        snprintf(why, cap, "version code %llu is rolled out to a share of devices, and this "
                           "device has no id",
                 (unsigned long long)code);
        return false;
    }
    if (e->percent_bp < 10000) {
        uint32_t b = lp_rollout_bucket(p->salt, device_id, code);
        if (b >= (uint32_t)e->percent_bp) {
            snprintf(why, cap, "outside the staged rollout of version code %llu: this device's "
                               "bucket is %u of 10000, the rollout reaches %d",
                     (unsigned long long)code, b, e->percent_bp);
            return false;
        }
    }
    if (e->weight > 0) {
        uint64_t total = 0;
        for (size_t i = 0; i < p->count; i++)
            total += (uint64_t)p->entries[i].weight;
        uint64_t point = lp_rollout_split_point(p->salt, device_id, total), acc = 0;
        const lp_rollout_entry *arm = NULL;
        for (size_t i = 0; i < p->count && !arm; i++) {
            acc += (uint64_t)p->entries[i].weight;
            if (p->entries[i].weight > 0 && point < acc)
                arm = &p->entries[i];
        }
        if (arm && arm != e) {
            snprintf(why, cap, "A/B split on channel %s: this device is in the arm of version "
                               "code %llu",
                     channel, (unsigned long long)arm->version_code);
            return false;
        }
    }
    return true;
}

bool lp_rollout_in_window(const lp_rollout_policy *p, int64_t now)
{
    if (!p->present || p->window_start < 0)
        return true;
    int minute = (int)((now % 86400 + 86400) % 86400 / 60);
    if (p->window_start < p->window_end)
        return minute >= p->window_start && minute < p->window_end;
    return minute >= p->window_start || minute < p->window_end;
}

bool lp_update_offer_in_window(const lp_update_offer *o, int64_t now)
{
    lp_rollout_policy p = {.present = true,
                           .window_start = o->window_start,
                           .window_end = o->window_end};
    if (o->window_start < 0 || o->window_end < 0 || o->window_start == o->window_end)
        return true;
    return lp_rollout_in_window(&p, now);
}
