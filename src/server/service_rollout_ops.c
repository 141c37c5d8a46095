/*
 * service_rollout_ops.c — the rollout actions: raising, lowering, pausing,
 * resuming and halting a release's rollout on a channel, A/B weights,
 * promotion to a channel, maintenance windows, guardrail settings, and
 * the guardrail itself, which halts a rollout on its own (docs/rollouts.md).
 *
 * Every action runs the same way: under the app's lock and in one database
 * transaction it changes the rows, appends its audit entry, and re-signs
 * what devices read (the rollout role with the online keys; for a
 * promotion the targets role, which needs the server-held release key);
 * then it commits and anchors the audit entry.  A failure before the
 * commit rolls the database back and re-syncs the repository from it, so
 * what devices see and what the database says never stay apart.
 *
 * The guardrail (lp_service_guard_run, run by the server every
 * --guard-interval) reads, for each release that is rolling out on a
 * channel (a rollout row that is active or paused), how many distinct
 * devices tried it and how many failed it or rolled back from it
 * (lp_db_release_stats_get).  Once at least the app's minimum number of
 * devices tried it and the bad share is above the app's rate, it halts the
 * rollout, records why (the rollout's reason and an audit entry by
 * "server"), and logs it.  A halt is final: devices that have not updated
 * never will, unless a new release is published.
 */
#include "server/service_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What one action does inside its transaction. */
typedef lp_status (*action_fn)(lp_service *s, lp_db *db, const lp_db_app *app, void *ctx,
                               bool *targets_changed, lp_error *err);

/* Runs `fn` under the app's lock in one transaction with its audit entry,
 * re-signs the repository with the timestamp held (lp_service_txn), commits,
 * then writes the timestamp.  *enforced (may be NULL): whether the
 * repository delegates the rollout role (devices follow the policy). */
static lp_status run_action(lp_service *s, const char *app_name, action_fn fn, void *ctx,
                            const char *actor, const char *action, const char *subject,
                            json_t *details, bool *enforced, lp_error *err)
{
    int lock = -1;
    lp_db *db = NULL;
    lp_db_app app = {0};
    lp_db_audit_head head = {0};
    bool targets_changed = false, began = false;
    lp_status st = lp_service_lock_app(s, app_name, &lock, err);
    if (!st)
        st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_app_get_by_name(db, app_name, &app, err);
    if (!st && !(st = lp_db_begin(db, err)))
        began = true;
    if (!st)
        st = fn(s, db, &app, ctx, &targets_changed, err);
    if (!st)
        st = lp_service_audit_db(s, db, actor, action, app_name, subject, json_incref(details),
                                 &head, err);
    lp_service_txn tx = {0};
    if (!st && targets_changed)
        st = lp_service_sync_app(s, db, &app, NULL, &tx, err);
    if (!st)
        st = lp_service_rollout_sync(s, db, &app, enforced, &tx, err);
    if (!st) {
        lp_service_crash_point(s, "change:before-commit");
        st = lp_db_commit(db, err);
    }
    if (!st) {
        lp_service_audit_anchor(s, &head);
        lp_service_crash_point(s, "change:after-commit");
        st = lp_service_txn_finish(s, app_name, &tx, err);
    } else if (began && lp_db_in_transaction(db)) {
        lp_db_rollback(db, NULL); /* the timestamp was held: devices saw nothing */
    }
    lp_service_txn_free(&tx);
    json_decref(details);
    lp_db_app_free(&app);
    lp_service_db_release(s, db);
    lp_service_unlock(lock);
    return st;
}

/* ---- rollout changes -------------------------------------------------------- */

typedef struct change_ctx {
    const char *version;
    const lp_service_rollout_change *c;
    lp_db_rollout *out;
    int64_t code;        /* the release's version code, once found */
    int percent_bp;      /* the rollout as stored */
} change_ctx;

static lp_status do_change(lp_service *s, lp_db *db, const lp_db_app *app, void *vctx,
                           bool *targets_changed, lp_error *err)
{
    (void)s;
    (void)targets_changed;
    change_ctx *x = vctx;
    const lp_service_rollout_change *c = x->c;
    lp_db_release rel = {0};
    lp_db_rollout cur = {0};
    lp_status st = lp_db_release_get_by_version(db, app->id, x->version, &rel, err);
    if (!st && strcmp(rel.state, LP_DB_STATE_WITHDRAWN) == 0)
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "release %s was withdrawn", x->version);
    if (!st)
        st = lp_db_rollout_get(db, rel.id, c->channel, &cur, err);
    if (!st) {
        lp_db_rollout_new n = {
            .release_id = rel.id,
            .channel = c->channel,
            .percent_bp = c->percent_bp >= 0 ? c->percent_bp : cur.percent_bp,
            .state = c->state ? c->state : cur.state,
            .weight = c->weight >= 0 ? c->weight : cur.weight,
            .reason = c->reason ? c->reason : (c->state ? NULL : cur.reason),
        };
        st = lp_db_rollout_put(db, &n, err);
        x->code = rel.version_code;
        x->percent_bp = n.percent_bp;
    }
    if (!st && x->out)
        st = lp_db_rollout_get(db, rel.id, c->channel, x->out, err);
    lp_db_rollout_free(&cur);
    lp_db_release_free(&rel);
    return st;
}

lp_status lp_service_rollout_change_apply(lp_service *s, const char *app, const char *version,
                                          const lp_service_rollout_change *c, const char *actor,
                                          lp_db_rollout *out, bool *enforced, lp_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!c || !c->channel || !version)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "rollout: a release and a channel are needed");
    change_ctx x = {.version = version, .c = c, .out = out};
    json_t *d = json_pack("{s:s,s:s}", "version", version, "channel", c->channel);
    if (d && c->percent_bp >= 0)
        json_object_set_new(d, "percent_bp", json_integer(c->percent_bp));
    if (d && c->state)
        json_object_set_new(d, "state", json_string(c->state));
    if (d && c->weight >= 0)
        json_object_set_new(d, "weight", json_integer(c->weight));
    if (d && c->reason)
        json_object_set_new(d, "reason", json_string(c->reason));
    const char *action = !c->state                                  ? "rollout.changed"
                         : !strcmp(c->state, LP_DB_ROLLOUT_HALTED) ? "rollout.halted"
                         : !strcmp(c->state, LP_DB_ROLLOUT_PAUSED) ? "rollout.paused"
                                                                   : "rollout.resumed";
    char subject[160];
    snprintf(subject, sizeof subject, "%s@%s", version, c->channel);
    lp_status st = run_action(s, app, do_change, &x, actor, action, subject, d, enforced, err);
    if (st && out)
        lp_db_rollout_free(out);
    if (!st) {
        const char *event = strchr(action, '.') + 1;
        json_t *f = json_pack("{s:s,s:i,s:s}", "version", version, "percent_bp", x.percent_bp,
                              "actor", actor ? actor : "");
        if (f && c->reason)
            json_object_set_new(f, "reason", json_string(c->reason));
        lp_service_lifecycle(s, !strcmp(event, "changed") ? "rollout_changed" : event, app,
                             x.code, c->channel, f);
    }
    return st ? lp_error_prefix(err, st, "rollout of %s on %s", version, c->channel) : LP_OK;
}

/* ---- promotion -------------------------------------------------------------------- */

typedef struct promote_ctx {
    const char *version, *channel;
} promote_ctx;

static lp_status do_promote(lp_service *s, lp_db *db, const lp_db_app *app, void *vctx,
                            bool *targets_changed, lp_error *err)
{
    promote_ctx *x = vctx;
    if (lp_service_app_publisher_signed(s, app->name))
        return lp_error_set(err, LP_ERR_STATE,
                            "the channels of a release are signed by the release keys, and this "
                            "app's publisher holds them: publish the release to the channel with "
                            "their signatures instead");
    lp_db_release rel = {0};
    lp_status st = lp_db_release_get_by_version(db, app->id, x->version, &rel, err);
    if (!st && strcmp(rel.state, LP_DB_STATE_PUBLISHED) != 0)
        st = lp_error_set(err, LP_ERR_STATE, "release %s is %s, not published", x->version,
                          rel.state);
    if (!st)
        st = lp_db_release_add_channel(db, rel.id, x->channel, 0, err);
    *targets_changed = !st;
    lp_db_release_free(&rel);
    return st;
}

lp_status lp_service_promote(lp_service *s, const char *app, const char *version,
                             const char *channel, const char *actor, lp_error *err)
{
    promote_ctx x = {.version = version, .channel = channel};
    lp_status st = run_action(s, app, do_promote, &x, actor, "release.promoted", version,
                              json_pack("{s:s,s:s}", "version", version, "channel", channel),
                              NULL, err);
    return st ? lp_error_prefix(err, st, "promote %s to %s", version, channel) : LP_OK;
}

/* ---- maintenance windows and guardrail settings --------------------------------------- */

typedef struct window_ctx {
    const char *channel;
    int start, end;
} window_ctx;

static lp_status do_window(lp_service *s, lp_db *db, const lp_db_app *app, void *vctx,
                           bool *targets_changed, lp_error *err)
{
    (void)s;
    (void)targets_changed;
    window_ctx *x = vctx;
    return lp_db_channel_window_set(db, app->id, x->channel, x->start, x->end, err);
}

lp_status lp_service_channel_window(lp_service *s, const char *app, const char *channel,
                                    int start, int end, const char *actor, lp_error *err)
{
    window_ctx x = {.channel = channel, .start = start, .end = end};
    json_t *d = start < 0 ? json_pack("{s:s,s:n}", "channel", channel, "window")
                          : json_pack("{s:s,s:{s:i,s:i}}", "channel", channel, "window", "start",
                                      start, "end", end);
    return run_action(s, app, do_window, &x, actor, "channel.window_set", channel, d, NULL, err);
}

typedef struct guard_ctx {
    int rate_bp, min_devices;
} guard_ctx;

static lp_status do_guard(lp_service *s, lp_db *db, const lp_db_app *app, void *vctx,
                          bool *targets_changed, lp_error *err)
{
    (void)s;
    (void)targets_changed;
    guard_ctx *x = vctx;
    return lp_db_app_guard_set(db, app->id, x->rate_bp, x->min_devices, err);
}

lp_status lp_service_guard_set(lp_service *s, const char *app, int rate_bp, int min_devices,
                               const char *actor, lp_error *err)
{
    guard_ctx x = {.rate_bp = rate_bp, .min_devices = min_devices};
    return run_action(s, app, do_guard, &x, actor, "app.guardrail_set", app,
                      json_pack("{s:i,s:i}", "rate_bp", rate_bp, "min_devices", min_devices),
                      NULL, err);
}

/* ---- the guardrail ------------------------------------------------------------------ */

/* Checks the rollouts of one app; *halted counts what it halted. */
static lp_status guard_app(lp_service *s, const lp_db_app *app, size_t *halted, lp_error *err)
{
    lp_db *db = NULL;
    lp_db_rollout_list rows = {0};
    int rate_bp = 0, min_devices = 0;
    lp_status st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_app_guard_get(db, app->id, &rate_bp, &min_devices, err);
    if (!st)
        st = lp_db_rollout_list_app(db, app->id, NULL, &rows, err);
    /* Decide with the connection, act without holding it (an action takes
     * its own). */
    typedef struct verdict {
        size_t row;
        char reason[256];
        lp_db_release_stats f;
    } verdict;
    verdict *v = rows.count ? calloc(rows.count, sizeof *v) : NULL;
    size_t nv = 0;
    if (!st && rows.count && !v)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < rows.count; i++) {
        const lp_db_rollout *r = &rows.items[i];
        if (!strcmp(r->state, LP_DB_ROLLOUT_HALTED))
            continue;
        lp_db_release_stats f;
        st = lp_db_release_stats_get(db, app->id, r->version_code, r->channel, &f, err);
        if (st || f.tried < min_devices || f.bad * 10000 <= (int64_t)rate_bp * f.tried)
            continue;
        v[nv].row = i;
        v[nv].f = f;
        snprintf(v[nv].reason, sizeof v[nv].reason,
                 "guardrail: %lld of %lld devices failed or rolled back (%.1f%%), above %.1f%% "
                 "(at least %d devices)",
                 (long long)f.bad, (long long)f.tried, 100.0 * (double)f.bad / (double)f.tried,
                 rate_bp / 100.0, min_devices);
        nv++;
    }
    lp_service_db_release(s, db);
    for (size_t k = 0; !st && k < nv; k++) {
        const lp_db_rollout *r = &rows.items[v[k].row];
        lp_service_rollout_change c = {.channel = r->channel,
                                       .percent_bp = -1,
                                       .state = LP_DB_ROLLOUT_HALTED,
                                       .weight = -1,
                                       .reason = v[k].reason};
        lp_error e;
        lp_error_clear(&e);
        lp_status hs = lp_service_rollout_change_apply(s, app->name, r->version, &c, "server",
                                                       NULL, NULL, &e);
        if (hs == LP_ERR_STATE)
            continue; /* halted meanwhile by someone else */
        if (hs) {
            st = hs;
            *err = e;
            break;
        }
        (*halted)++;
        lp_metrics_add(s->metrics, LP_M_GUARDRAIL_HALTS, (const char *[]){app->name}, 1);
        if (s->log)
            lp_log_event(s->log, LP_LOG_WARN, "rollout halted by the guardrail",
                         json_pack("{s:s,s:s,s:I,s:s,s:I,s:I,s:s}", "app", app->name, "version",
                                   r->version, "version_code", (json_int_t)r->version_code,
                                   "channel", r->channel, "tried", (json_int_t)v[k].f.tried,
                                   "bad", (json_int_t)v[k].f.bad, "reason", v[k].reason));
    }
    free(v);
    lp_db_rollout_list_free(&rows);
    return st;
}

lp_status lp_service_guard_run(lp_service *s, size_t *halted, lp_error *err)
{
    size_t dummy;
    if (!halted)
        halted = &dummy;
    *halted = 0;
    lp_db *db = NULL;
    lp_db_app_list apps = {0};
    lp_status st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_app_list_all(db, &apps, err);
    lp_service_db_release(s, db);
    lp_status first = st;
    for (size_t i = 0; !st && i < apps.count; i++) {
        lp_error e;
        lp_error_clear(&e);
        lp_status a = guard_app(s, &apps.items[i], halted, &e);
        if (a && s->log)
            lp_log_event(s->log, LP_LOG_ERROR, "guardrail check failed",
                         json_pack("{s:s,s:s}", "app", apps.items[i].name, "error", e.msg));
        if (a && !first) {
            first = a;
            *err = e;
        }
    }
    lp_db_app_list_free(&apps);
    return first;
}
