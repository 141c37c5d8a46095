/*
 * service_lifecycle.c — the update life cycle as JSON lines (docs/lifecycle.md).
 *
 * `serve --lifecycle-log FILE` gives the service a second log, in JSON
 * form, that holds only the life cycle of releases: the server's own steps
 * (planned, approved, canary_started, rollout_changed, paused, resumed,
 * halted) and what devices report (fetched, verified, staged, activated,
 * healthy, rolled_back, failed), one line each.  Every line carries the ids
 * that tie it together:
 *
 *     release  "<app>/<version code>"             the release
 *     rollout  "<app>/<version code>@<channel>"   its rollout on one channel
 *     device   the device's id (device lines)
 *
 * and the device's own log (the agent's --lifecycle-log) uses the same
 * names and ids, so the two sides can be joined.  Without the option
 * nothing is written.
 */
#include "server/service_priv.h"

#include <stdio.h>

void lp_service_lifecycle(lp_service *s, const char *event, const char *app, int64_t code,
                          const char *channel, json_t *fields)
{
    if (!s->lifecycle || !event || !app) {
        json_decref(fields);
        return;
    }
    json_t *f = fields ? fields : json_object();
    if (!f)
        return;
    char id[200];
    json_object_set_new(f, "side", json_string("server"));
    json_object_set_new(f, "event", json_string(event));
    json_object_set_new(f, "app", json_string(app));
    if (code > 0) {
        snprintf(id, sizeof id, "%s/%lld", app, (long long)code);
        json_object_set_new(f, "release", json_string(id));
        if (channel) {
            snprintf(id, sizeof id, "%s/%lld@%s", app, (long long)code, channel);
            json_object_set_new(f, "rollout", json_string(id));
        }
    }
    lp_log_event(s->lifecycle, LP_LOG_INFO, "lifecycle", f);
}
