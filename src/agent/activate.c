/*
 * activate.c — switching `current`, probation, rollback and pruning.
 *
 * The switch protocol (a crash at any point leaves the old or the new
 * release current, and recover.c finds state.json consistent with it):
 *   1. state.json gets a "switch" record {op, from, to}   (intent)
 *   2. symlink "releases/<to>" is made as <root>/.current.new
 *   3. rename(2) of .current.new over <root>/current       (the switch)
 *   4. fsync of the root folder                           (durable)
 *   5. state.json gets the result and loses the record      (done)
 * Before 3 the symlink shows `from`: recovery drops the record.  From 3 on
 * it shows `to`: recovery applies the record with lp_agent_apply_switch,
 * the same function step 5 uses, so both paths give the same state.
 *
 * Each operation works in short sessions (agent.h): decide under the lock,
 * run hooks without it (a hook may restart the app, which reports its
 * launch through the same root), then take the lock again, check that
 * nothing changed meanwhile, and switch.  Probation decisions (window,
 * launch counter) are made inside one session together with the counter
 * update; the rollback they start records its reason as the last error.
 * lp_updater_remove deletes one release the way pruning does (used when a
 * staged release fails its verification).
 */
#include "agent/agent.h"

#include "core/timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the switch -------------------------------------------------------- */

static lp_status switch_link(lp_updater *u, uint64_t id, lp_error *err)
{
    char target[40];
    snprintf(target, sizeof target, "releases/%llu", (unsigned long long)id);
    char *tmp = lp_agent_path(u, ".current.new");
    char *cur = lp_agent_path(u, "current");
    lp_status st = LP_OK;
    if (!tmp || !cur) {
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (unlink(tmp) != 0 && errno != ENOENT) {
        st = lp_error_set(err, LP_ERR_IO, "remove %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (symlink(target, tmp) != 0) {
        st = lp_error_set(err, LP_ERR_IO, "symlink %s: %s", tmp, strerror(errno));
        goto out;
    }
    lp_agent_crash_point(u, "switch:after-link");
    if (rename(tmp, cur) != 0) {
        st = lp_error_set(err, LP_ERR_IO, "rename %s to %s: %s", tmp, cur, strerror(errno));
        unlink(tmp);
        goto out;
    }
    lp_agent_crash_point(u, "switch:after-rename");
    st = lp_agent_sync_dir(u->root, err);
    if (!st)
        lp_agent_crash_point(u, "switch:after-sync");
out:
    free(tmp);
    free(cur);
    return st;
}

lp_status lp_agent_apply_switch(lp_updater *u, lp_agent_state *s, int64_t now, lp_error *err)
{
    lp_status st = LP_OK;
    uint64_t from = s->sw.from, to = s->sw.to;
    if (s->sw.op == LP_SWITCH_UPDATE) {
        s->current = to;
        s->previous = from;
        s->post_update_due = to;
        s->has_pending = from != 0;
        if (s->has_pending)
            s->pending = (lp_agent_pending){to, now, 0, u->window_s, u->max_launches};
    } else if (s->sw.op == LP_SWITCH_ROLLBACK) {
        s->current = to;
        s->previous = 0;
        s->post_update_due = 0;
        s->has_pending = false;
        if (from)
            st = lp_agent_state_add_bad(s, from, s->sw.reason, now, err);
    }
    s->sw.op = LP_SWITCH_NONE;
    free(s->sw.reason);
    s->sw.reason = NULL;
    return st;
}

/* Steps 1-5 inside a session; on a failure of the symlink steps the record
 * is resolved from what the symlink shows, as recovery would. */
static lp_status do_switch(lp_updater *u, lp_agent_state *s, lp_agent_switch_op op, uint64_t to,
                           const char *reason, const char *after_intent, lp_error *err)
{
    char *r = reason ? strdup(reason) : NULL;
    if (reason && !r)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    free(s->sw.reason);
    s->sw = (lp_agent_switch){op, s->current, to, lp_time_now(), r};
    lp_status st = lp_agent_state_write(u, s, err);
    if (st)
        return st;
    lp_agent_crash_point(u, after_intent);
    st = switch_link(u, to, err);
    if (st) {
        lp_error ignored;
        bool changed;
        if (!lp_agent_reconcile(u, s, false, &changed, &ignored))
            lp_agent_state_write(u, s, &ignored);
        return st;
    }
    st = lp_agent_apply_switch(u, s, lp_time_now(), err);
    if (!st)
        st = lp_agent_state_write(u, s, err);
    return st;
}

/* ---- shared pieces ------------------------------------------------------ */

/* Records msg as the last error (best effort: the operation that failed has
 * its own error to return). */
static void record_error(lp_updater *u, const char *msg)
{
    lp_agent_state s;
    lp_error e;
    if (lp_agent_begin(u, &s, &e))
        return;
    if (!lp_agent_state_set_error(&s, msg, lp_time_now(), &e))
        lp_agent_state_write(u, &s, &e);
    lp_agent_end(u, &s);
}

/* What hooks are told, with the strings it points to. */
typedef struct hook_ctx {
    lp_hook_info info;
    char old_version[LP_UPDATER_MAX_VERSION + 24];
    char new_version[LP_UPDATER_MAX_VERSION + 24];
    char *release_dir;
} hook_ctx;

static lp_status hook_ctx_make(lp_updater *u, const lp_agent_state *s, uint64_t from,
                               uint64_t to, const char *reason, hook_ctx *h, lp_error *err)
{
    memset(h, 0, sizeof *h);
    char buf[24];
    snprintf(h->old_version, sizeof h->old_version, "%s",
             lp_agent_version_of(s, from, buf, sizeof buf));
    snprintf(h->new_version, sizeof h->new_version, "%s",
             lp_agent_version_of(s, to, buf, sizeof buf));
    h->release_dir = lp_agent_path(u, "releases/%llu", (unsigned long long)to);
    if (!h->release_dir)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    h->info = (lp_hook_info){.install_root = u->root,
                             .release_dir = h->release_dir,
                             .old_id = from,
                             .new_id = to,
                             .old_version = h->old_version,
                             .new_version = h->new_version,
                             .reason = reason};
    return LP_OK;
}

static lp_status run_hook(lp_updater *u, hook_ctx *h, lp_hook_point point, lp_error *err)
{
    h->info.point = point;
    h->info.hook = lp_hook_point_name(point);
    return lp_agent_run_hooks(u, &h->info, err);
}

/* Prunes; a failure is recorded, not returned: the operation that calls it
 * has already done its work. */
static void prune_quietly(lp_updater *u)
{
    lp_error e;
    if (lp_updater_prune(u, &e)) {
        char msg[LP_ERROR_MSG_MAX + 32];
        snprintf(msg, sizeof msg, "pruning releases: %s", e.msg);
        record_error(u, msg);
    }
}

/* ---- rollback ------------------------------------------------------------ */

/* The release a rollback from s->current goes to when none is named. */
static uint64_t rollback_target(const lp_agent_state *s)
{
    if (s->previous && s->previous != s->current && lp_agent_state_release(s, s->previous) &&
        !lp_agent_state_bad(s, s->previous))
        return s->previous;
    for (size_t i = s->release_count; i-- > 0;) {
        uint64_t id = s->releases[i].id;
        if (id != s->current && !lp_agent_state_bad(s, id))
            return id;
    }
    return 0;
}

static lp_status check_target(const lp_agent_state *s, uint64_t to, lp_error *err)
{
    if (!s->current)
        return lp_error_set(err, LP_ERR_STATE, "no release is current");
    if (!to)
        return lp_error_set(err, LP_ERR_NOT_FOUND,
                            "no release to roll back to from release %llu",
                            (unsigned long long)s->current);
    if (to == s->current)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "release %llu is already current",
                            (unsigned long long)to);
    if (!lp_agent_state_release(s, to))
        return lp_error_set(err, LP_ERR_NOT_FOUND, "release %llu is not installed",
                            (unsigned long long)to);
    const lp_agent_bad *b = lp_agent_state_bad(s, to);
    if (b)
        return lp_error_set(err, LP_ERR_STATE, "release %llu is marked bad on this device: %s",
                            (unsigned long long)to, b->reason);
    return LP_OK;
}

/* Rolls back from the current release (which must still be current when
 * the switch is made; with `expect_from`, it must be that one from the
 * start) to `to` (0: the default target).  `automatic` records the reason
 * as the last error. */
static lp_status rollback(lp_updater *u, uint64_t expect_from, uint64_t to, const char *reason,
                          bool automatic, lp_error *err)
{
    if (!reason || !*reason)
        reason = "rolled back by request";
    lp_agent_state s;
    lp_status st = lp_agent_begin(u, &s, err);
    if (st)
        return st;
    uint64_t from = s.current;
    if (expect_from && from != expect_from) {
        st = lp_error_set(err, LP_ERR_STATE, "release %llu is not current (%llu is)",
                          (unsigned long long)expect_from, (unsigned long long)from);
        lp_agent_end(u, &s);
        return lp_error_prefix(err, st, "rollback");
    }
    if (!to)
        to = rollback_target(&s);
    hook_ctx h;
    st = check_target(&s, to, err);
    if (!st)
        st = hook_ctx_make(u, &s, from, to, reason, &h, err);
    lp_agent_end(u, &s);
    if (st)
        return lp_error_prefix(err, st, "rollback");

    lp_error herr;
    char msg[2 * LP_ERROR_MSG_MAX];
    if (run_hook(u, &h, LP_HOOK_PRE_ROLLBACK, &herr)) {
        snprintf(msg, sizeof msg, "rollback from release %llu to %llu: %s",
                 (unsigned long long)from, (unsigned long long)to, herr.msg);
        record_error(u, msg);
    }
    lp_agent_crash_point(u, "rollback:after-pre-hooks");

    if ((st = lp_agent_begin(u, &s, err)))
        goto out;
    if (s.current != from)
        st = lp_error_set(err, LP_ERR_STATE,
                          "release %llu is no longer current (another process switched to %llu)",
                          (unsigned long long)from, (unsigned long long)s.current);
    if (!st)
        st = check_target(&s, to, err);
    if (!st)
        st = do_switch(u, &s, LP_SWITCH_ROLLBACK, to, reason, "rollback:after-intent", err);
    if (!st && automatic) {
        snprintf(msg, sizeof msg, "release %llu rolled back to %llu: %s",
                 (unsigned long long)from, (unsigned long long)to, reason);
        st = lp_agent_state_set_error(&s, msg, lp_time_now(), err);
        if (!st)
            st = lp_agent_state_write(u, &s, err);
    }
    if (!st)
        lp_agent_crash_point(u, "rollback:after-state");
    lp_agent_end(u, &s);
    if (st)
        goto out;

    if (run_hook(u, &h, LP_HOOK_POST_ROLLBACK, &herr)) {
        snprintf(msg, sizeof msg, "rollback from release %llu to %llu: %s",
                 (unsigned long long)from, (unsigned long long)to, herr.msg);
        record_error(u, msg);
    }
    lp_agent_crash_point(u, "rollback:after-post-hooks");
    prune_quietly(u);
out:
    free(h.release_dir);
    if (st)
        return lp_error_prefix(err, st, "rollback from release %llu to %llu",
                               (unsigned long long)from, (unsigned long long)to);
    return LP_OK;
}

lp_status lp_updater_rollback(lp_updater *u, uint64_t to_id, const char *reason, lp_error *err)
{
    return rollback(u, 0, to_id, reason, false, err);
}

lp_status lp_updater_release_failed(lp_updater *u, uint64_t id, const char *reason,
                                    lp_error *err)
{
    if (!id)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "release failed: no release id");
    return rollback(u, id, 0, reason, true, err);
}

/* ---- activation --------------------------------------------------------- */

static lp_status check_activate(const lp_agent_state *s, uint64_t id, lp_error *err)
{
    if (!lp_agent_state_release(s, id))
        return lp_error_set(err, LP_ERR_NOT_FOUND, "release %llu is not installed",
                            (unsigned long long)id);
    const lp_agent_bad *b = lp_agent_state_bad(s, id);
    if (b)
        return lp_error_set(err, LP_ERR_STATE, "release %llu is marked bad on this device: %s",
                            (unsigned long long)id, b->reason);
    if (s->has_pending)
        return lp_error_set(err, LP_ERR_STATE,
                            "release %llu is on probation: mark it healthy or roll it back first",
                            (unsigned long long)s->pending.id);
    return LP_OK;
}

/* Post-update hooks of `id` (switched to from `from`), then the record that
 * they ran; a failure rolls back to `from`. */
static lp_status post_update(lp_updater *u, hook_ctx *h, uint64_t id, uint64_t from,
                             lp_error *err)
{
    lp_error herr;
    if (run_hook(u, h, LP_HOOK_POST_UPDATE, &herr)) {
        lp_status st;
        if (!from) {
            st = lp_error_set(err, herr.code,
                              "activating release %llu: %s (no earlier release to roll back to)",
                              (unsigned long long)id, herr.msg);
            record_error(u, err->msg);
            return st;
        }
        lp_error rerr;
        if (rollback(u, 0, from, herr.msg, true, &rerr))
            return lp_error_set(err, herr.code,
                                "activating release %llu: %s; rolling back failed: %s",
                                (unsigned long long)id, herr.msg, rerr.msg);
        return lp_error_set(err, herr.code,
                            "activating release %llu: %s; rolled back to release %llu",
                            (unsigned long long)id, herr.msg, (unsigned long long)from);
    }
    lp_agent_state s;
    lp_status st = lp_agent_begin(u, &s, err);
    if (st)
        return st;
    if (s.post_update_due == id) {
        s.post_update_due = 0;
        st = lp_agent_state_write(u, &s, err);
    }
    lp_agent_end(u, &s);
    if (st)
        return st;
    lp_agent_crash_point(u, "activate:after-post-hooks");
    prune_quietly(u);
    return LP_OK;
}

lp_status lp_updater_activate(lp_updater *u, uint64_t id, lp_error *err)
{
    lp_agent_state s;
    lp_status st = lp_agent_begin(u, &s, err);
    if (st)
        return lp_error_prefix(err, st, "activating release %llu", (unsigned long long)id);
    hook_ctx h = {0};
    if (s.current == id && id) {
        /* Already switched: finish what an interrupted activation left. */
        uint64_t from = s.previous;
        bool due = s.post_update_due == id;
        if (due)
            st = hook_ctx_make(u, &s, from, id, NULL, &h, err);
        lp_agent_end(u, &s);
        if (!st && due)
            st = post_update(u, &h, id, from, err);
        else if (!st)
            prune_quietly(u);
        free(h.release_dir);
        return st;
    }
    uint64_t from = s.current;
    st = check_activate(&s, id, err);
    if (!st)
        st = hook_ctx_make(u, &s, from, id, NULL, &h, err);
    lp_agent_end(u, &s);
    if (st)
        return lp_error_prefix(err, st, "activating release %llu", (unsigned long long)id);

    if ((st = run_hook(u, &h, LP_HOOK_PRE_UPDATE, err))) {
        lp_error_prefix(err, st, "activating release %llu: nothing switched",
                        (unsigned long long)id);
        record_error(u, err->msg);
        goto out;
    }
    lp_agent_crash_point(u, "activate:after-pre-hooks");

    if ((st = lp_agent_begin(u, &s, err)))
        goto out;
    if (s.current != from)
        st = lp_error_set(err, LP_ERR_STATE,
                          "the current release changed from %llu to %llu while the pre-update "
                          "hooks ran",
                          (unsigned long long)from, (unsigned long long)s.current);
    if (!st)
        st = check_activate(&s, id, err);
    if (!st)
        st = do_switch(u, &s, LP_SWITCH_UPDATE, id, NULL, "activate:after-intent", err);
    if (!st)
        lp_agent_crash_point(u, "activate:after-state");
    lp_agent_end(u, &s);
    if (st) {
        lp_error_prefix(err, st, "activating release %llu", (unsigned long long)id);
        goto out;
    }
    st = post_update(u, &h, id, from, err);
out:
    free(h.release_dir);
    return st;
}

/* ---- probation ------------------------------------------------------------ */

lp_status lp_updater_mark_healthy(lp_updater *u, uint64_t id, lp_error *err)
{
    lp_agent_state s;
    lp_status st = lp_agent_begin(u, &s, err);
    if (st)
        return st;
    if (!s.current)
        st = lp_error_set(err, LP_ERR_STATE, "marking healthy: no release is current");
    else if (id && id != s.current)
        st = lp_error_set(err, LP_ERR_STATE,
                          "marking release %llu healthy: it is not current (%llu is)",
                          (unsigned long long)id, (unsigned long long)s.current);
    else if (s.has_pending) {
        s.has_pending = false;
        st = lp_agent_state_write(u, &s, err);
    }
    lp_agent_end(u, &s);
    return st;
}

/* Decides, inside a session, whether the probation has failed; `launch`
 * counts one launch first.  *reason is set (in buf) when it has. */
static lp_status probation_step(lp_updater *u, int64_t now, bool launch,
                                lp_probation_outcome *out, char *buf, size_t cap,
                                const char **reason, lp_error *err)
{
    *reason = NULL;
    lp_probation_outcome dummy;
    if (!out)
        out = &dummy;
    *out = LP_PROBATION_NONE;
    lp_agent_state s;
    lp_status st = lp_agent_begin(u, &s, err);
    if (st)
        return st;
    if (s.has_pending) {
        const lp_agent_pending *p = &s.pending;
        *out = LP_PROBATION_PENDING;
        if (now > p->since + p->window_s) {
            snprintf(buf, cap, "not marked healthy within %lld s of its activation",
                     (long long)p->window_s);
            *reason = buf;
        } else if (launch) {
            s.pending.launches++;
            if (p->launches > p->max_launches) {
                snprintf(buf, cap, "launched %u times without being marked healthy (limit %u)",
                         p->launches, p->max_launches);
                *reason = buf;
            }
            st = lp_agent_state_write(u, &s, err);
        }
    }
    lp_agent_end(u, &s);
    return st;
}

static lp_status probation(lp_updater *u, int64_t now, bool launch, lp_probation_outcome *out,
                           lp_error *err)
{
    char buf[160];
    const char *reason;
    lp_status st = probation_step(u, now, launch, out, buf, sizeof buf, &reason, err);
    if (st || !reason)
        return st;
    st = rollback(u, 0, 0, reason, true, err);
    if (!st && out)
        *out = LP_PROBATION_ROLLED_BACK;
    return st;
}

lp_status lp_updater_check_probation(lp_updater *u, int64_t now, lp_probation_outcome *out,
                                     lp_error *err)
{
    return probation(u, now, false, out, err);
}

lp_status lp_updater_launch(lp_updater *u, int64_t now, lp_probation_outcome *out,
                            lp_error *err)
{
    return probation(u, now, true, out, err);
}

/* ---- pruning ---------------------------------------------------------------- */

static bool is_protected(const lp_agent_state *s, uint64_t id)
{
    return id == s->current || id == s->previous || (s->has_pending && id == s->pending.id);
}

/* The next release to delete: bad ones first, then the oldest installed. */
static uint64_t prune_victim(const lp_agent_state *s)
{
    for (size_t i = 0; i < s->release_count; i++)
        if (!is_protected(s, s->releases[i].id) && lp_agent_state_bad(s, s->releases[i].id))
            return s->releases[i].id;
    for (size_t i = 0; i < s->release_count; i++)
        if (!is_protected(s, s->releases[i].id))
            return s->releases[i].id;
    return 0;
}

static lp_status prune_one(lp_updater *u, lp_agent_state *s, uint64_t id, lp_error *err)
{
    unsigned long long v = (unsigned long long)id;
    char *dir = lp_agent_path(u, "releases/%llu", v);
    char *trash = lp_agent_path(u, ".livepush/trash/%llu", v);
    char *releases = lp_agent_path(u, "releases");
    char *trash_dir = lp_agent_path(u, ".livepush/trash");
    char *manifest = lp_agent_path(u, ".livepush/manifests/%llu.json", v);
    lp_status st = LP_OK;
    if (!dir || !trash || !releases || !trash_dir || !manifest) {
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = lp_agent_rmtree(trash, err)))
        goto out;
    if (rename(dir, trash) != 0) {
        st = lp_error_set(err, LP_ERR_IO, "rename %s to %s: %s", dir, trash, strerror(errno));
        goto out;
    }
    if ((st = lp_agent_sync_dir(releases, err)) || (st = lp_agent_sync_dir(trash_dir, err)))
        goto out;
    lp_agent_crash_point(u, "prune:after-trash");
    lp_agent_state_remove_release(s, id);
    if ((st = lp_agent_state_write(u, s, err)))
        goto out;
    lp_agent_crash_point(u, "prune:after-state");
    if (unlink(manifest) != 0 && errno != ENOENT) {
        st = lp_error_set(err, LP_ERR_IO, "remove %s: %s", manifest, strerror(errno));
        goto out;
    }
    lp_agent_checked_remove(u, id);
    if ((st = lp_agent_rmtree(trash, err)))
        goto out;
    lp_agent_crash_point(u, "prune:after-remove");
out:
    free(dir);
    free(trash);
    free(releases);
    free(trash_dir);
    free(manifest);
    return st;
}

lp_status lp_updater_prune(lp_updater *u, lp_error *err)
{
    lp_agent_state s;
    lp_status st = lp_agent_begin(u, &s, err);
    if (st)
        return st;
    while (!st && s.release_count > u->keep) {
        uint64_t victim = prune_victim(&s);
        if (!victim)
            break;
        st = prune_one(u, &s, victim, err);
        if (st)
            lp_error_prefix(err, st, "deleting release %llu", (unsigned long long)victim);
    }
    lp_agent_end(u, &s);
    return st;
}

lp_status lp_updater_remove(lp_updater *u, uint64_t id, lp_error *err)
{
    lp_agent_state s;
    lp_status st = lp_agent_begin(u, &s, err);
    if (st)
        return st;
    if (!lp_agent_state_release(&s, id))
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "release %llu is not installed",
                          (unsigned long long)id);
    else if (is_protected(&s, id))
        st = lp_error_set(err, LP_ERR_STATE, "release %llu is %s", (unsigned long long)id,
                          id == s.current ? "current" : "the way back from the current release");
    else
        st = prune_one(u, &s, id, err);
    lp_agent_end(u, &s);
    if (st)
        return lp_error_prefix(err, st, "removing release %llu", (unsigned long long)id);
    return LP_OK;
}
