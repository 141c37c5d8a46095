/*
 * crash.c — named crash points for fault-injection tests.
 *
 * Every step of staging and switching that changes something on disk is
 * followed by a call to lp_agent_crash_point with a name from the table
 * below.  When the updater's crash_at setting names that point (optionally
 * "@N" for the N-th time it is reached) the process kills itself with
 * SIGKILL right there: no cleanup, no atexit, no buffered write, exactly as
 * a power cut or the OOM killer would leave things.  The crash test loops
 * over every entry and every occurrence and checks that the install root
 * always reopens into the old or the new release.
 *
 * The table is the one list of points: a call site with a name missing from
 * it aborts (a programming error caught by any test run), so the table and
 * the code cannot drift apart silently.
 */
#include "agent/agent.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U LP_CRASH_IN_UPDATE
#define R LP_CRASH_IN_ROLLBACK

static const lp_crash_point_info points[] = {
    {"stage:begin", U, "checks and free-space check done, nothing written yet"},
    {"stage:after-dir", U, "a folder made in staging/<id>"},
    {"stage:after-symlink", U, "a symlink made in staging/<id>"},
    {"stage:after-link", U, "a file hard-linked from an installed release"},
    {"stage:after-copy", U, "a file copied from an installed release"},
    {"stage:after-fetch", U, "a fetched file checked, its mode set and fsync'd"},
    {"stage:after-sync", U, "every file and folder of staging/<id> fsync'd"},
    {"stage:manifest-before-commit", U, "manifests/<id>.json written under a temporary name"},
    {"stage:after-manifest", U, "manifests/<id>.json in place"},
    {"stage:after-state", U, "state.json lists the release (its folder is still in staging/)"},
    {"stage:after-rename", U, "staging/<id> renamed to releases/<id>"},
    {"stage:done", U, "releases/ fsync'd"},
    {"state:before-commit", U | R, "state.json written under a temporary name, not renamed"},
    {"activate:after-pre-hooks", U, "pre-update hooks ran"},
    {"activate:after-intent", U, "state.json records the switch about to happen"},
    {"switch:after-link", U | R, "the new symlink exists under a temporary name"},
    {"switch:after-rename", U | R, "the new symlink renamed over `current`"},
    {"switch:after-sync", U | R, "the root folder fsync'd"},
    {"activate:after-state", U, "state.json: new current, previous, probation"},
    {"activate:after-post-hooks", U, "post-update hooks ran, state.json says so"},
    {"prune:after-trash", U, "an old release renamed into trash/"},
    {"prune:after-state", U, "state.json no longer lists it"},
    {"prune:after-remove", U, "its files and manifest removed"},
    {"rollback:after-pre-hooks", R, "pre-rollback hooks ran"},
    {"rollback:after-intent", R, "state.json records the switch back"},
    {"rollback:after-state", R, "state.json: switched back, abandoned release marked bad"},
    {"rollback:after-post-hooks", R, "post-rollback hooks ran"},
};

#undef U
#undef R

const lp_crash_point_info *lp_agent_crash_points(size_t *count)
{
    *count = sizeof points / sizeof points[0];
    return points;
}

bool lp_agent_crash_point_known(const char *name)
{
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++)
        if (strcmp(points[i].name, name) == 0)
            return true;
    return false;
}

void lp_agent_crash_point(lp_updater *u, const char *name)
{
    if (!lp_agent_crash_point_known(name)) {
        fprintf(stderr, "livepush: crash point \"%s\" is not in the table\n", name);
        abort();
    }
    if (!u->crash_at || strcmp(u->crash_at, name) != 0)
        return;
    if (++u->crash_hits < u->crash_nth)
        return;
    raise(SIGKILL);
}
