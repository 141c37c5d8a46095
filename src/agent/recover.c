/*
 * recover.c — bringing state.json in line with the file system after a
 * crash (or a change made by hand).
 *
 * The rule: the `current` symlink is the truth about what runs; state.json
 * follows it.  The switch protocol (activate.c) writes its intent — a
 * "switch" record {op, from, to} — to state.json before it touches the
 * symlink and clears it in the same write that records the result, so at
 * any instant one of these holds:
 *   - no switch record, symlink = state.current: nothing to do;
 *   - a switch record and symlink = to: the switch happened but its result
 *     was not recorded: record it now (lp_agent_apply_switch, the same code
 *     the normal path runs);
 *   - a switch record and symlink = from: the switch never happened: drop
 *     the record (an update is abandoned; a rollback is abandoned too, and the
 *     probation that asked for it will ask again);
 *   - no switch record and symlink != state.current: someone else moved the
 *     symlink: adopt it, on probation when there is a release to go back to.
 * Then the release list: a listed release whose folder is gone is
 * forgotten (a staging that wrote state.json but died before its rename, or
 * a prune that died after its rename); `previous` and the probation follow.
 *
 * The full pass (at open) also adopts release folders that state.json does
 * not list and removes what interrupted work left: staging folders (only
 * when no staging holds stage.lock), trash, temporary files of state.json,
 * device-id and manifests, manifests of releases that are not installed and
 * the temporary symlink of the switch.
 */
#include "agent/agent.h"

#include "core/timeutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Calls fn for every entry of folder <root>/<rel> except "." and "..". */
typedef lp_status (*entry_fn)(lp_updater *u, lp_agent_state *s, const char *folder,
                              const char *name, bool *changed, lp_error *err);

static lp_status for_each_entry(lp_updater *u, lp_agent_state *s, const char *rel, entry_fn fn,
                                bool *changed, lp_error *err)
{
    char *folder = lp_agent_path(u, "%s", rel);
    if (!folder)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    DIR *d = opendir(folder);
    if (!d) {
        lp_status st = errno == ENOENT
                           ? LP_OK
                           : lp_error_set(err, LP_ERR_IO, "open folder %s: %s", folder,
                                          strerror(errno));
        free(folder);
        return st;
    }
    lp_status st = LP_OK;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                st = lp_error_set(err, LP_ERR_IO, "read folder %s: %s", folder, strerror(errno));
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if ((st = fn(u, s, folder, de->d_name, changed, err)))
            break;
    }
    closedir(d);
    free(folder);
    return st;
}

static lp_status remove_any(lp_updater *u, lp_agent_state *s, const char *folder,
                            const char *name, bool *changed, lp_error *err)
{
    (void)u;
    (void)s;
    (void)changed;
    size_t n = strlen(folder) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    snprintf(p, n, "%s/%s", folder, name);
    lp_status st = lp_agent_rmtree(p, err);
    free(p);
    return st;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* .livepush/: temporary files of the files written under the lock. */
static lp_status remove_dir_tmp(lp_updater *u, lp_agent_state *s, const char *folder,
                                const char *name, bool *changed, lp_error *err)
{
    if (!starts_with(name, "state.json.tmp-") && !starts_with(name, "device-id.tmp-"))
        return LP_OK;
    return remove_any(u, s, folder, name, changed, err);
}

/* manifests/: temporary files, and the manifests and records of checked
 * files (<id>.json, <id>.checked) of releases not installed. */
static lp_status check_manifest(lp_updater *u, lp_agent_state *s, const char *folder,
                                const char *name, bool *changed, lp_error *err)
{
    const char *dot = strchr(name, '.');
    if (dot && (strcmp(dot, ".json") == 0 || strcmp(dot, ".checked") == 0)) {
        char idtext[24];
        size_t n = (size_t)(dot - name);
        uint64_t id;
        if (n < sizeof idtext) {
            memcpy(idtext, name, n);
            idtext[n] = '\0';
            if (lp_agent_parse_id(idtext, &id) && lp_agent_state_release(s, id))
                return LP_OK;
        }
        return remove_any(u, s, folder, name, changed, err);
    }
    if (strstr(name, ".json.tmp-") || strstr(name, ".checked.tmp-"))
        return remove_any(u, s, folder, name, changed, err);
    return LP_OK;
}

/* releases/: adopt folders state.json does not list. */
static lp_status adopt_release(lp_updater *u, lp_agent_state *s, const char *folder,
                               const char *name, bool *changed, lp_error *err)
{
    (void)folder;
    uint64_t id;
    if (!lp_agent_parse_id(name, &id) || lp_agent_state_release(s, id) ||
        !lp_agent_release_exists(u, id))
        return LP_OK;
    lp_status st = lp_agent_state_add_release(s, id, NULL, lp_time_now(), err);
    if (!st)
        *changed = true;
    return st;
}

static lp_status full_pass(lp_updater *u, lp_agent_state *s, bool *changed, lp_error *err)
{
    char *tmp_link = lp_agent_path(u, ".current.new");
    if (!tmp_link)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_status st = LP_OK;
    if (unlink(tmp_link) != 0 && errno != ENOENT)
        st = lp_error_set(err, LP_ERR_IO, "remove %s: %s", tmp_link, strerror(errno));
    free(tmp_link);
    if (!st)
        st = for_each_entry(u, s, "releases", adopt_release, changed, err);
    if (!st)
        st = for_each_entry(u, s, ".livepush", remove_dir_tmp, changed, err);
    if (!st)
        st = for_each_entry(u, s, ".livepush/manifests", check_manifest, changed, err);
    if (!st)
        st = for_each_entry(u, s, ".livepush/trash", remove_any, changed, err);
    bool got = false;
    if (!st)
        st = lp_agent_stage_lock(u, &got, err);
    if (!st && got) {
        st = for_each_entry(u, s, ".livepush/staging", remove_any, changed, err);
        lp_agent_stage_unlock(u);
    }
    return st;
}

lp_status lp_agent_reconcile(lp_updater *u, lp_agent_state *s, bool full, bool *changed,
                             lp_error *err)
{
    *changed = false;
    uint64_t link;
    lp_status st = lp_agent_read_current(u, &link, err);
    if (st)
        return st;
    int64_t now = lp_time_now();

    if (s->sw.op != LP_SWITCH_NONE) {
        *changed = true;
        if (link == s->sw.to) {
            if ((st = lp_agent_apply_switch(u, s, now, err)))
                return st;
        } else {
            s->sw.op = LP_SWITCH_NONE;
            free(s->sw.reason);
            s->sw.reason = NULL;
        }
    }
    if (link != s->current) {
        /* Moved by someone else: adopt what the symlink says. */
        *changed = true;
        uint64_t old = s->current;
        s->current = link;
        s->previous = old && lp_agent_release_exists(u, old) ? old : 0;
        s->has_pending = false;
        if (link && s->previous) {
            s->has_pending = true;
            s->pending = (lp_agent_pending){link, now, 0, u->window_s, u->max_launches};
        }
    }
    if (link) {
        if (!lp_agent_release_exists(u, link))
            return lp_error_set(err, LP_ERR_STATE,
                                "%s/current points to releases/%llu, which does not exist",
                                u->root, (unsigned long long)link);
        if (!lp_agent_state_release(s, link)) {
            if ((st = lp_agent_state_add_release(s, link, NULL, now, err)))
                return st;
            *changed = true;
        }
    }
    for (size_t i = 0; i < s->release_count;) {
        if (lp_agent_release_exists(u, s->releases[i].id)) {
            i++;
            continue;
        }
        lp_agent_state_remove_release(s, s->releases[i].id);
        *changed = true;
    }
    if (s->previous && (s->previous == s->current || !lp_agent_state_release(s, s->previous))) {
        s->previous = 0;
        *changed = true;
    }
    if (s->has_pending && s->pending.id != s->current) {
        s->has_pending = false;
        *changed = true;
    }
    if (s->post_update_due && s->post_update_due != s->current) {
        s->post_update_due = 0;
        *changed = true;
    }
    if (full)
        st = full_pass(u, s, changed, err);
    return st;
}

lp_status lp_updater_recover(lp_updater *u, lp_error *err)
{
    lp_status st = lp_agent_lock(u, err);
    if (st)
        return st;
    lp_agent_state s;
    bool existed = false, changed = false;
    st = lp_agent_state_read(u, &s, &existed, err);
    if (!st)
        st = lp_agent_reconcile(u, &s, true, &changed, err);
    if (!st && (changed || !existed))
        st = lp_agent_state_write(u, &s, err);
    lp_agent_end(u, &s);
    return st;
}
