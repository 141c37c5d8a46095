/*
 * update.c — the network steps of the device client and the whole update
 * cycle (see device.h and the device section of livepush/updater.h).
 *
 * Each step wraps one call of the lower layers and adds what a device needs
 * around it: the time it took, an event ("checked", "downloaded", "staged",
 * "verified", "activated", or "failed" with the message), and the record in
 * state.json (last_check, last_error).  The steps never change the install
 * root beyond what the wrapped call does, so their crash safety is the
 * updater's: staging builds next to `current`, activation is one rename.
 *
 * lp_device_update chains them: report rollbacks, finish an activation a
 * crash interrupted (when state.json says post-update hooks are still due,
 * activating the current release again runs them and prunes; otherwise it
 * is not called, so a release staged by a dry run is not pruned before it
 * is activated), check the probation window, prune what a crash left
 * beyond `keep`, check for a release, apply the
 * policy, download and stage (an installed release is not fetched again;
 * the blob source tries a delta from the installed release first and falls
 * back to the full blob, device_delta.c),
 * verify the whole release, activate.  A stop request (should_stop) is
 * honoured between steps and before each blob: the step in progress
 * finishes, nothing half-done is kept except resumable partial downloads.
 */
#include "agent/device.h"

#include "agent/agent.h"
#include "core/file.h"
#include "core/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Opens the connection, and with `tuf` the TUF client over it (which needs
 * the trusted root). */
static lp_status ensure_net(lp_device *d, bool tuf, lp_error *err)
{
    if (d->tuf || (d->net && !tuf))
        return LP_OK;
    if (!d->server_url || !*d->server_url)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "no server configured (the URL of the server or static mirror)");
    lp_status st = LP_OK;
    d->net_cfg.state_dir = d->state_dir;
    if (!d->net && (st = lp_net_open(&d->net_cfg, &d->net, err)))
        return st;
    if (!tuf)
        return LP_OK;
    char *root = lp_path_join(d->state_dir, "metadata/root.json");
    if (!root)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (!lp_file_exists(root))
        st = lp_error_set(err, LP_ERR_NOT_FOUND,
                          "no trusted root in %s: give the app's root.json once (--trusted-root)",
                          root);
    free(root);
    if (!st)
        st = lp_net_open_tuf(d->net, &d->tuf, err);
    return st;
}

/* Records a failed step as last_error and a "failed" event. */
static void failed(lp_device *d, const lp_error *err, const char *version, uint64_t code,
                   uint64_t from, int64_t t0)
{
    lp_error ignored;
    lp_updater_record_error(d->u, err->msg[0] ? err->msg : lp_status_name(err->code), &ignored);
    lp_device_event(d, LP_EVENT_FAILED, version, code, from,
                    err->msg[0] ? err->msg : lp_status_name(err->code), lp_device_mono_ms() - t0);
}

static uint64_t current_of(lp_device *d, bool *on_probation)
{
    lp_updater_status s;
    lp_error ignored;
    if (lp_updater_status_get(d->u, &s, &ignored))
        return 0;
    uint64_t cur = s.current;
    if (on_probation)
        *on_probation = s.on_probation;
    lp_updater_status_free(&s);
    return cur;
}

/* ---- check ---------------------------------------------------------------- */

lp_status lp_device_check(lp_device *d, lp_update_offer *out, bool *available, lp_error *err)
{
    memset(out, 0, sizeof *out);
    *available = false;
    int64_t t0 = lp_device_mono_ms(), now = lp_time_now();
    char channel[LP_DEVICE_MAX_CHANNEL + 1];
    uint64_t *bad = NULL;
    char *work = lp_path_join(d->state_dir, "downloads");
    lp_updater_status s;
    memset(&s, 0, sizeof s);
    lp_status st = work ? LP_OK : lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (!st)
        st = lp_file_mkdirs(work, 0700, err);
    if (!st)
        st = lp_device_channel(d, channel, NULL, err);
    if (!st)
        st = lp_updater_status_get(d->u, &s, err);
    if (!st && s.bad_count && !(bad = calloc(s.bad_count, sizeof *bad)))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < s.bad_count; i++)
        bad[i] = s.bad[i].id;
    if (!st)
        st = ensure_net(d, true, err);
    if (!st) {
        lp_check_opts o = {.channel = channel,
                           .platform = d->platform,
                           .arch = d->arch,
                           .runtime_version = d->runtime_version,
                           .current_id = s.current,
                           .bad_ids = bad,
                           .bad_count = s.bad_count,
                           .work_dir = work,
                           .on_skip = d->on_skip,
                           .skip_ctx = d->skip_ctx,
                           .device_id = lp_updater_device_id(d->u),
                           .attributes = d->attributes,
                           .attribute_count = d->attribute_count};
        st = lp_check_for_update(d->tuf, &o, out, available, err);
    }
    lp_error rerr;
    lp_updater_record_check(d->u, now, st ? err->msg : NULL, &rerr);
    if (st)
        lp_device_event(d, LP_EVENT_FAILED, NULL, 0, s.current, err->msg,
                        lp_device_mono_ms() - t0);
    else
        lp_device_event(d, LP_EVENT_CHECKED, *available ? out->version : NULL,
                        *available ? out->version_code : 0, s.current, NULL,
                        lp_device_mono_ms() - t0);
    lp_updater_status_free(&s);
    free(bad);
    free(work);
    return st;
}

/* ---- download and stage -------------------------------------------------------- */

static lp_status fetch_blob(void *ctx, const char *sha256, uint64_t size, const char *dest,
                            lp_error *err)
{
    lp_device *d = ctx;
    if (lp_device_stop_requested(d))
        return lp_error_set(err, LP_ERR_STATE, "stopped by request");
    int64_t t0 = lp_device_mono_ms();
    /* Staging checks the size, sets the mode and fsyncs (fetch_checks).  A
     * delta is tried first; when it fails nothing is left at dest. */
    lp_status st = LP_OK;
    if (!lp_device_delta_try(d, sha256, size, dest, false))
        st = lp_net_fetch_blob_unsynced(d->net, sha256, size, dest, err);
    d->fetch_ms += lp_device_mono_ms() - t0;
    return st;
}

lp_status lp_device_download(lp_device *d, const lp_update_offer *offer, lp_stage_stats *stats,
                             bool *already, lp_error *err)
{
    lp_stage_stats local;
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    bool dummy;
    if (!already)
        already = &dummy;
    *already = false;
    if (!offer || !offer->version_code)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "download: no offer");
    d->stopped = false;
    d->fetch_ms = 0;
    int64_t t0 = lp_device_mono_ms();
    uint64_t from = current_of(d, NULL);
    lp_status st = ensure_net(d, true, err);
    if (!st && lp_device_stop_requested(d))
        return lp_error_set(err, LP_ERR_STATE, "stopped by request before downloading");
    lp_stage_opts so = {.version = offer->version,
                        .progress = d->progress,
                        .progress_ctx = d->progress_ctx,
                        .fetch_checks = true};
    if (!st)
        lp_device_deltas_begin(d, from, offer->version_code, offer->version_code);
    if (!st)
        st = lp_updater_stage(d->u, &offer->manifest, offer->version_code, &so, fetch_blob, d,
                              stats, err);
    lp_device_deltas_end(d, stats);
    char fallback[sizeof d->first_fallback];
    const char *first = lp_device_deltas_first_fallback(d);
    snprintf(fallback, sizeof fallback, "%s", first ? first : "");
    lp_device_deltas_clear(d);
    if (st == LP_ERR_EXISTS) {
        *already = true;
        return LP_OK;
    }
    if (st) {
        lp_error_prefix(err, st, "downloading release %s", offer->version);
        if (!d->stopped)
            failed(d, err, offer->version, offer->version_code, from, t0);
        return st;
    }
    /* The figures as fields of the event; whole files and applied deltas
     * are what was received (bytes_fetched counts a file made from a delta
     * at its full size). */
    lp_event_figures fig = {.bytes = stats->bytes_fetched > stats->bytes_delta_saved
                                         ? stats->bytes_fetched - stats->bytes_delta_saved
                                         : 0,
                            .files_fetched = stats->files_fetched,
                            .files_delta = stats->files_delta,
                            .bytes_delta_saved = stats->bytes_delta_saved,
                            .delta_fallbacks = stats->delta_fallbacks};
    lp_event ev = {.type = LP_EVENT_DOWNLOADED,
                   .version = offer->version && *offer->version ? offer->version : NULL,
                   .version_code = offer->version_code,
                   .from_version_code = from,
                   .reason = fallback[0] ? fallback : NULL,
                   .duration_ms = d->fetch_ms,
                   .figures = &fig};
    lp_error ignored;
    lp_device_queue(d, &ev, &ignored); /* a lost event does not fail the step */
    lp_device_event(d, LP_EVENT_STAGED, offer->version, offer->version_code, from, NULL,
                    lp_device_mono_ms() - t0);
    return LP_OK;
}

/* ---- verify and activate ---------------------------------------------------------- */

lp_status lp_device_verify(lp_device *d, uint64_t id, lp_error *err)
{
    int64_t t0 = lp_device_mono_ms();
    char v[LP_UPDATER_MAX_VERSION + 1];
    lp_device_version_of(d, id, v, sizeof v);
    uint64_t from = current_of(d, NULL);
    lp_status st = lp_updater_verify(d->u, id, err);
    if (!st) {
        lp_device_event(d, LP_EVENT_VERIFIED, v, id, from, NULL, lp_device_mono_ms() - t0);
        return LP_OK;
    }
    lp_error rerr;
    if (id != from && lp_updater_remove(d->u, id, &rerr) == LP_OK)
        lp_error_prefix(err, st, "release %llu deleted, it failed its verification",
                        (unsigned long long)id);
    failed(d, err, v, id, from, t0);
    return st;
}

lp_status lp_device_apply(lp_device *d, uint64_t id, lp_error *err)
{
    int64_t t0 = lp_device_mono_ms();
    uint64_t from = current_of(d, NULL);
    char v[LP_UPDATER_MAX_VERSION + 1];
    lp_device_version_of(d, id, v, sizeof v);
    lp_status st = lp_updater_activate(d->u, id, err);
    if (st)
        failed(d, err, v, id, from, t0);
    lp_device_report_activation(d, lp_device_mono_ms() - t0);
    return st;
}

/* ---- the whole cycle ------------------------------------------------------------- */

/* Deletes releases beyond `keep` (lp_updater_prune), unless a release
 * newer than the current one waits to be activated (staged by a dry run or
 * before a pre-update hook failed): pruning would take it first, and its
 * activation prunes anyway.  Activation and rollback prune by themselves;
 * this covers a crash between an activation and its pruning. */
static void tidy(lp_device *d)
{
    lp_agent_state s;
    lp_error e;
    if (lp_agent_begin(d->u, &s, &e))
        return;
    bool waiting = false;
    for (size_t i = 0; i < s.release_count; i++)
        if (s.releases[i].id > s.current && !lp_agent_state_bad(&s, s.releases[i].id))
            waiting = true;
    lp_agent_end(d->u, &s);
    if (!waiting && lp_updater_prune(d->u, &e)) {
        lp_error ignored;
        lp_error_prefix(&e, e.code, "pruning releases");
        lp_updater_record_error(d->u, e.msg, &ignored);
    }
}

/* The current release when a crash interrupted its activation (its
 * post-update hooks are still due), else 0. */
static uint64_t interrupted_activation(lp_device *d)
{
    lp_agent_state s;
    lp_error ignored;
    if (lp_agent_begin(d->u, &s, &ignored))
        return 0;
    uint64_t id = s.post_update_due && s.post_update_due == s.current ? s.current : 0;
    lp_agent_end(d->u, &s);
    return id;
}

static bool wants(lp_apply_policy p, bool mandatory)
{
    return p == LP_APPLY_ALL || (p == LP_APPLY_MANDATORY && mandatory);
}

lp_status lp_device_update(lp_device *d, const lp_update_opts *opts, lp_update_result *out,
                           lp_error *err)
{
    lp_update_result local;
    if (!out)
        out = &local;
    memset(out, 0, sizeof *out);
    lp_apply_policy policy = opts ? opts->policy : LP_APPLY_ALL;
    bool dry = opts && opts->dry_run;
    if (policy != LP_APPLY_ALL && policy != LP_APPLY_MANDATORY && policy != LP_APPLY_NONE)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "update: unknown policy %d", (int)policy);
    d->stopped = false;
    lp_error ignored;
    lp_device_report(d, NULL, &ignored);

    /* An activation a crash interrupted: activating the current release
     * again runs its post-update hooks if they are still due. */
    uint64_t due = interrupted_activation(d);
    lp_status st = LP_OK;
    if (due && (st = lp_device_apply(d, due, err)))
        return lp_error_prefix(err, st, "finishing the activation of release %llu",
                               (unsigned long long)due);
    if ((st = lp_device_check_probation(d, lp_time_now(), NULL, err)))
        return st;
    tidy(d);
    out->from = current_of(d, NULL);
    if (lp_device_stop_requested(d)) {
        out->outcome = LP_UPDATE_STOPPED;
        return LP_OK;
    }

    int64_t t0 = lp_device_mono_ms();
    lp_update_offer offer;
    bool available;
    st = lp_device_check(d, &offer, &available, err);
    out->check_ms = lp_device_mono_ms() - t0;
    if (st || !available)
        return st;
    out->version_code = offer.version_code;
    snprintf(out->version, sizeof out->version, "%s", offer.version);
    out->mandatory = offer.mandatory;
    bool on_probation = false;
    current_of(d, &on_probation);
    if (!wants(policy, offer.mandatory))
        out->outcome = LP_UPDATE_AVAILABLE;
    else if (!offer.mandatory && !lp_update_offer_in_window(&offer, lp_time_now()))
        out->outcome = LP_UPDATE_WAITING;
    else if (on_probation && !dry)
        out->outcome = LP_UPDATE_DEFERRED;
    else if (lp_device_stop_requested(d))
        out->outcome = LP_UPDATE_STOPPED;
    if (out->outcome != LP_UPDATE_NONE) {
        lp_update_offer_free(&offer);
        return LP_OK;
    }

    t0 = lp_device_mono_ms();
    st = lp_device_download(d, &offer, &out->stats, &out->already_installed, err);
    out->download_ms = lp_device_mono_ms() - t0;
    lp_update_offer_free(&offer);
    if (st && d->stopped) {
        out->outcome = LP_UPDATE_STOPPED;
        return LP_OK;
    }
    if (st)
        return st;
    t0 = lp_device_mono_ms();
    st = lp_device_verify(d, out->version_code, err);
    out->verify_ms = lp_device_mono_ms() - t0;
    if (st)
        return st;
    out->outcome = dry ? LP_UPDATE_STAGED : LP_UPDATE_STOPPED;
    if (dry || lp_device_stop_requested(d))
        return LP_OK;
    t0 = lp_device_mono_ms();
    st = lp_device_apply(d, out->version_code, err);
    out->activate_ms = lp_device_mono_ms() - t0;
    if (!st)
        out->outcome = LP_UPDATE_ACTIVATED;
    return st;
}

/* ---- sending events ------------------------------------------------------------ */

lp_status lp_device_send_events(lp_device *d, size_t *sent, lp_error *err)
{
    if (sent)
        *sent = 0;
    char channel[LP_DEVICE_MAX_CHANNEL + 1];
    lp_error ignored;
    bool have_channel = lp_device_channel(d, channel, NULL, &ignored) == LP_OK;
    if (d->static_mirror)
        return LP_OK; /* said once; the events stay queued (bounded) */
    lp_status st = ensure_net(d, false, err);
    if (!st)
        st = lp_events_send_on(d->events, d->net, lp_updater_device_id(d->u),
                               have_channel ? channel : NULL, 0, sent, err);
    if (st == LP_ERR_UNSUPPORTED)
        d->static_mirror = true;
    return st;
}

bool lp_device_static_mirror(const lp_device *d)
{
    return d && d->static_mirror;
}

const char *lp_update_outcome_name(lp_update_outcome o)
{
    static const char *const names[] = {"none",      "available", "deferred", "staged",
                                        "activated", "stopped",   "waiting"};
    return (unsigned)o < sizeof names / sizeof names[0] ? names[o] : "unknown";
}
