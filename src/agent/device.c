/*
 * device.c — the device client: opening, the channel, events, and the local
 * calls with their events (see device.h; the network steps are update.c).
 *
 * Switches are reported from state.json rather than by the call that made
 * them, so each is reported whoever made it (this process, the app on its
 * own handle, recovery completing a switch after a crash).
 * <root>/.livepush/reported.json holds what was reported: the current
 * release, the release then on probation, and the (id, at) pairs of the bad
 * list.  Against it, state.json shows
 *   - a current release with a higher id: "activated" (ids only grow, and
 *     a switch to a lower one is a rollback);
 *   - the release that was on probation still current, no longer on
 *     probation: "healthy";
 *   - a bad-list entry not reported: "rolled_back" (every rollback marks
 *     the release it leaves bad, activate.c).
 * The comparison runs under the root's lock; the events are queued before
 * reported.json is written, so a crash between the two reports a switch
 * twice (the server keeps both), never zero times.
 *
 * The device's channel is the configured one unless `livepush device
 * channel` (lp_device_set_channel) stored another in <root>/.livepush/channel;
 * it is read at every check, so a switch takes effect at the next check.
 * Both files are small, written atomically and read strictly.
 */
#include "agent/device.h"

#include "agent/agent.h"
#include "core/file.h"
#include "tuf/json.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPORTED_MAX_BYTES (64u * 1024)
#define CHANNEL_FILE_MAX 256u

int64_t lp_device_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool lp_device_stop_requested(lp_device *d)
{
    if (!d->stopped && d->should_stop && d->should_stop(d->stop_ctx))
        d->stopped = true;
    return d->stopped;
}

lp_status lp_device_queue(lp_device *d, const lp_event *e, lp_error *err)
{
    lp_status st = lp_events_add(d->events, e, err);
    if (d->on_event) {
        char channel[LP_DEVICE_MAX_CHANNEL + 1];
        lp_error ignored;
        if (lp_device_channel(d, channel, NULL, &ignored))
            channel[0] = '\0';
        d->on_event(d->event_ctx, e, channel, lp_updater_device_id(d->u));
    }
    return st;
}

void lp_device_event(lp_device *d, lp_event_type type, const char *version, uint64_t code,
                     uint64_t from, const char *reason, int64_t duration_ms)
{
    lp_error ignored;
    lp_event e = {.type = type,
                  .version = version && *version ? version : NULL,
                  .version_code = code,
                  .from_version_code = from,
                  .reason = reason,
                  .duration_ms = duration_ms};
    lp_device_queue(d, &e, &ignored);
}

const char *lp_device_version_of(lp_device *d, uint64_t id, char *buf, size_t cap)
{
    buf[0] = '\0';
    lp_updater_status s;
    lp_error ignored;
    if (!id || lp_updater_status_get(d->u, &s, &ignored))
        return buf;
    for (size_t i = 0; i < s.release_count; i++)
        if (s.releases[i].id == id)
            snprintf(buf, cap, "%s", s.releases[i].version);
    lp_updater_status_free(&s);
    return buf;
}

/* ---- opening -------------------------------------------------------------- */

static char *dup_or_null(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *c = strdup(s);
    if (!c)
        *oom = true;
    return c;
}

static bool channel_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > LP_DEVICE_MAX_CHANNEL)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

static lp_status copy_config(lp_device *d, const lp_device_config *cfg, lp_error *err)
{
    bool oom = false;
    d->net_cfg = cfg->net;
    d->server_url = dup_or_null(cfg->net.server_url, &oom);
    d->app = dup_or_null(cfg->net.app, &oom);
    d->user_agent = dup_or_null(cfg->net.http.user_agent, &oom);
    d->device_token = dup_or_null(cfg->net.device_token, &oom);
    if (cfg->net.allowed_hosts) {
        size_t n = 0;
        while (cfg->net.allowed_hosts[n])
            n++;
        if (!(d->allowed_hosts = calloc(n + 1, sizeof *d->allowed_hosts)))
            oom = true;
        for (size_t i = 0; d->allowed_hosts && i < n; i++)
            d->allowed_hosts[i] = dup_or_null(cfg->net.allowed_hosts[i], &oom);
    }
    d->net_cfg.server_url = d->server_url;
    d->net_cfg.app = d->app;
    d->net_cfg.http.user_agent = d->user_agent;
    d->net_cfg.device_token = d->device_token;
    d->net_cfg.allowed_hosts = (const char *const *)d->allowed_hosts;
    d->channel = dup_or_null(cfg->channel ? cfg->channel : LP_DEVICE_DEFAULT_CHANNEL, &oom);
    d->platform = dup_or_null(cfg->platform, &oom);
    d->arch = dup_or_null(cfg->arch, &oom);
    d->runtime_version = dup_or_null(cfg->runtime_version, &oom);
    lp_status st = lp_device_attributes_check(cfg->attributes, cfg->attribute_count, err);
    if (st)
        return st;
    if (cfg->attribute_count &&
        !(d->attributes = calloc(cfg->attribute_count, sizeof *d->attributes)))
        oom = true;
    for (size_t i = 0; d->attributes && i < cfg->attribute_count; i++) {
        d->attributes[i].key = dup_or_null(cfg->attributes[i].key, &oom);
        d->attributes[i].value = dup_or_null(cfg->attributes[i].value, &oom);
        d->attribute_count = i + 1;
    }
    d->progress = cfg->progress;
    d->progress_ctx = cfg->progress_ctx;
    d->on_skip = cfg->on_skip;
    d->skip_ctx = cfg->skip_ctx;
    d->should_stop = cfg->should_stop;
    d->stop_ctx = cfg->stop_ctx;
    d->no_deltas = cfg->no_deltas;
    d->on_delta = cfg->on_delta;
    d->on_event = cfg->on_event;
    d->event_ctx = cfg->event_ctx;
    d->delta_ctx = cfg->delta_ctx;
    if (oom)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (!channel_ok(d->channel))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "channel '%.80s' is not 1..%u characters of A-Z a-z 0-9 . _ - "
                            "(the first a letter or digit)",
                            d->channel, LP_DEVICE_MAX_CHANNEL);
    return LP_OK;
}

lp_status lp_device_open(const lp_device_config *cfg, lp_device **out, lp_error *err)
{
    *out = NULL;
    if (!cfg)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "device: no configuration");
    lp_device *d = calloc(1, sizeof *d);
    if (!d)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_status st = copy_config(d, cfg, err);
    if (!st)
        st = lp_updater_open(&cfg->updater, &d->u, err);
    if (!st && !(d->state_dir = lp_agent_path(d->u, ".livepush")))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    char *events = st ? NULL : lp_path_join(d->state_dir, "events");
    char *meta = st ? NULL : lp_path_join(d->state_dir, "metadata");
    if (!st && (!events || !meta))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (!st)
        st = lp_events_open(events, cfg->max_events, &d->events, err);
    if (!st && cfg->trusted_root && (st = lp_tuf_init_trusted_root(meta, cfg->trusted_root, err)))
        lp_error_prefix(err, st, "installing the trusted root %s", cfg->trusted_root);
    free(events);
    free(meta);
    if (st) {
        lp_device_close(d);
        return st;
    }
    *out = d;
    return LP_OK;
}

void lp_device_close(lp_device *d)
{
    if (!d)
        return;
    lp_device_deltas_clear(d);
    lp_tuf_client_free(d->tuf);
    lp_net_close(d->net);
    lp_events_close(d->events);
    lp_updater_close(d->u);
    free(d->state_dir);
    free(d->server_url);
    free(d->app);
    free(d->user_agent);
    free(d->device_token);
    for (char **h = d->allowed_hosts; h && *h; h++)
        free(*h);
    free(d->allowed_hosts);
    free(d->channel);
    free(d->platform);
    free(d->arch);
    free(d->runtime_version);
    for (size_t i = 0; i < d->attribute_count; i++) {
        free((char *)d->attributes[i].key);
        free((char *)d->attributes[i].value);
    }
    free(d->attributes);
    free(d);
}

lp_updater *lp_device_updater(lp_device *d)
{
    return d->u;
}

lp_events *lp_device_events(lp_device *d)
{
    return d->events;
}

/* ---- the channel ------------------------------------------------------------ */

lp_status lp_device_channel(lp_device *d, char *out, bool *stored,
                            lp_error *err)
{
    if (stored)
        *stored = false;
    snprintf(out, LP_DEVICE_MAX_CHANNEL + 1, "%s", d->channel);
    char *path = lp_path_join(d->state_dir, "channel");
    if (!path)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_file_read(path, CHANNEL_FILE_MAX, &data, &len, err);
    if (st == LP_ERR_NOT_FOUND) {
        st = LP_OK;
    } else if (!st) {
        if (len && data[len - 1] == '\n')
            data[--len] = '\0';
        if (strlen((char *)data) != len || !channel_ok((char *)data)) {
            st = lp_error_set(err, LP_ERR_MALFORMED,
                              "%s: not a channel name (1..%u characters of A-Z a-z 0-9 . _ -); "
                              "set the channel again or remove the file",
                              path, LP_DEVICE_MAX_CHANNEL);
        } else {
            snprintf(out, LP_DEVICE_MAX_CHANNEL + 1, "%s", (char *)data);
            if (stored)
                *stored = true;
        }
    } else {
        lp_error_prefix(err, st, "reading the device's channel");
    }
    free(data);
    free(path);
    return st;
}

lp_status lp_device_set_channel(lp_device *d, const char *channel, lp_error *err)
{
    if (channel && !channel_ok(channel))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "channel '%.80s' is not 1..%u characters of A-Z a-z 0-9 . _ - "
                            "(the first a letter or digit)",
                            channel, LP_DEVICE_MAX_CHANNEL);
    char *path = lp_path_join(d->state_dir, "channel");
    if (!path)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_status st = LP_OK;
    if (channel) {
        char text[LP_DEVICE_MAX_CHANNEL + 2];
        int n = snprintf(text, sizeof text, "%s\n", channel);
        st = lp_file_write_atomic(path, text, (size_t)n, 0600, err);
    } else if (lp_file_exists(path)) {
        if (remove(path) != 0)
            st = lp_error_set(err, LP_ERR_IO, "remove %s: %s", path, strerror(errno));
        else
            st = lp_file_sync_parent(path, err);
    }
    free(path);
    return st;
}

/* ---- reporting switches ------------------------------------------------------- */

/* What reported.json says was reported: the current release and its
 * probation at the last report, and the bad-list entries reported. */
typedef struct reported {
    uint64_t current, pending;
    struct bad_seen {
        uint64_t id;
        int64_t at;
    } *bad;
    size_t bad_count;
} reported;

static bool get_id_or_null(json_t *v, uint64_t *out)
{
    *out = 0;
    if (json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Reads reported.json; a missing file reports nothing yet. */
static lp_status reported_read(const char *path, reported *r, lp_error *err)
{
    memset(r, 0, sizeof *r);
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_file_read(path, REPORTED_MAX_BYTES, &data, &len, err);
    if (st == LP_ERR_NOT_FOUND)
        return LP_OK;
    json_t *doc = NULL;
    lp_json_limits lim = {REPORTED_MAX_BYTES, 4};
    if (!st)
        st = lp_json_parse(data, len, &lim, &doc, err);
    free(data);
    if (st)
        return lp_error_prefix(err, st, "%s", path);
    json_t *list = json_object_get(doc, "rolled_back"), *format = json_object_get(doc, "format");
    bool ok = json_is_object(doc) && json_object_size(doc) == 4 && json_is_integer(format) &&
              json_integer_value(format) == 1 &&
              get_id_or_null(json_object_get(doc, "current"), &r->current) &&
              get_id_or_null(json_object_get(doc, "pending"), &r->pending) &&
              json_object_get(doc, "current") && json_object_get(doc, "pending") &&
              json_is_array(list) && json_array_size(list) <= LP_AGENT_MAX_BAD;
    if (ok && json_array_size(list) && !(r->bad = calloc(json_array_size(list), sizeof *r->bad)))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; ok && !st && i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i), *id = json_object_get(e, "id"),
               *at = json_object_get(e, "at");
        ok = json_is_object(e) && json_object_size(e) == 2 && json_is_integer(id) &&
             json_integer_value(id) > 0 && json_is_integer(at) && json_integer_value(at) >= 0;
        if (ok)
            r->bad[r->bad_count++] = (struct bad_seen){(uint64_t)json_integer_value(id),
                                                       json_integer_value(at)};
    }
    json_decref(doc);
    if (!st && !ok)
        st = lp_error_set(err, LP_ERR_MALFORMED,
                          "%s: expected {\"current\":N|null,\"format\":1,\"pending\":N|null,"
                          "\"rolled_back\":[{\"at\":T,\"id\":N}...]} with at most %u entries; "
                          "remove the file to report the current release and every rollback in "
                          "the bad list again",
                          path, LP_AGENT_MAX_BAD);
    if (st) {
        free(r->bad);
        memset(r, 0, sizeof *r);
    }
    return st;
}

static json_t *id_json(uint64_t id)
{
    return id ? json_integer((json_int_t)id) : json_null();
}

/* Writes what the state shows as reported. */
static lp_status reported_write(const char *path, const lp_agent_state *s, lp_error *err)
{
    json_t *list = json_array();
    json_t *doc = json_pack("{s:i,s:o,s:o,s:o}", "format", 1, "current", id_json(s->current),
                            "pending", id_json(s->has_pending ? s->pending.id : 0),
                            "rolled_back", list);
    bool ok = doc != NULL;
    for (size_t i = 0; ok && i < s->bad_count; i++)
        ok = !json_array_append_new(list, json_pack("{s:I,s:I}", "id", (json_int_t)s->bad[i].id,
                                                     "at", (json_int_t)s->bad[i].at));
    char *text = ok ? json_dumps(doc, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_status st = lp_file_write_atomic(path, text, strlen(text), 0600, err);
    free(text);
    return st;
}

static bool was_reported(const reported *r, const lp_agent_bad *b)
{
    for (size_t i = 0; i < r->bad_count; i++)
        if (r->bad[i].id == b->id && r->bad[i].at == b->at)
            return true;
    return false;
}

/* Queues the events for what changed since the last report (see the top
 * of the file).  `activate_ms` (< 0: unknown) is the duration given to an
 * "activated" event. */
static lp_status report(lp_device *d, int64_t activate_ms, size_t *queued, lp_error *err)
{
    if (queued)
        *queued = 0;
    char *path = lp_path_join(d->state_dir, "reported.json");
    if (!path)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_agent_state s;
    lp_status st = lp_agent_begin(d->u, &s, err);
    if (st) {
        free(path);
        return st;
    }
    reported r;
    st = reported_read(path, &r, err);
    char vbuf[24];
    const char *version = lp_agent_version_of(&s, s.current, vbuf, sizeof vbuf);
    bool on_probation = s.has_pending && s.pending.id == s.current;
    lp_event ev[2 + LP_AGENT_MAX_BAD];
    size_t n = 0;
    if (!st && s.current && s.current > r.current)
        ev[n++] = (lp_event){.type = LP_EVENT_ACTIVATED,
                             .version = version,
                             .version_code = s.current,
                             .from_version_code = s.previous,
                             .duration_ms = activate_ms,
                             .at = on_probation ? s.pending.since : 0};
    else if (!st && r.pending && r.pending == s.current && !on_probation)
        ev[n++] = (lp_event){.type = LP_EVENT_HEALTHY,
                             .version = version,
                             .version_code = s.current,
                             .duration_ms = -1};
    for (size_t i = 0; !st && i < s.bad_count; i++)
        if (!was_reported(&r, &s.bad[i]))
            ev[n++] = (lp_event){.type = LP_EVENT_ROLLED_BACK,
                                 .version = version,
                                 .version_code = s.current,
                                 .from_version_code = s.bad[i].id,
                                 .reason = s.bad[i].reason,
                                 .duration_ms = -1,
                                 .at = s.bad[i].at};
    size_t added = 0;
    for (; !st && added < n; added++) {
        if (!*version)
            ev[added].version = NULL;
        st = lp_device_queue(d, &ev[added], err);
        if (st)
            break;
    }
    /* Recorded only when every event is queued: a failure reports them all
     * again next time rather than losing one. */
    bool changed = r.current != s.current ||
                   r.pending != (s.has_pending ? s.pending.id : 0) || r.bad_count != s.bad_count;
    for (size_t i = 0; !changed && i < s.bad_count; i++)
        changed = !was_reported(&r, &s.bad[i]);
    if (!st && changed)
        st = reported_write(path, &s, err);
    lp_agent_end(d->u, &s);
    free(r.bad);
    free(path);
    if (queued)
        *queued = added;
    return st ? lp_error_prefix(err, st, "reporting switches") : LP_OK;
}

lp_status lp_device_report(lp_device *d, size_t *queued, lp_error *err)
{
    return report(d, -1, queued, err);
}

void lp_device_report_activation(lp_device *d, int64_t activate_ms)
{
    lp_error ignored;
    report(d, activate_ms, NULL, &ignored);
}

/* ---- local calls -------------------------------------------------------------- */

lp_status lp_device_mark_healthy(lp_device *d, uint64_t id, lp_error *err)
{
    lp_error ignored;
    lp_device_report(d, NULL, &ignored); /* the probation, if not seen yet */
    lp_status st = lp_updater_mark_healthy(d->u, id, err);
    lp_device_report(d, NULL, &ignored);
    return st;
}

lp_status lp_device_launch(lp_device *d, int64_t now, lp_probation_outcome *out, lp_error *err)
{
    lp_status st = lp_updater_launch(d->u, now, out, err);
    lp_error ignored;
    lp_device_report(d, NULL, &ignored);
    return st;
}

lp_status lp_device_check_probation(lp_device *d, int64_t now, lp_probation_outcome *out,
                                    lp_error *err)
{
    lp_status st = lp_updater_check_probation(d->u, now, out, err);
    lp_error ignored;
    lp_device_report(d, NULL, &ignored);
    return st;
}

lp_status lp_device_rollback(lp_device *d, uint64_t to_id, const char *reason, lp_error *err)
{
    lp_status st = lp_updater_rollback(d->u, to_id, reason, err);
    lp_error ignored;
    lp_device_report(d, NULL, &ignored);
    return st;
}

lp_status lp_device_release_failed(lp_device *d, uint64_t id, const char *reason, lp_error *err)
{
    lp_status st = lp_updater_release_failed(d->u, id, reason, err);
    lp_error ignored;
    lp_device_report(d, NULL, &ignored);
    return st;
}
