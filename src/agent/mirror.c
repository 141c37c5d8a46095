/*
 * mirror.c — telling a static mirror from a livepush server (see
 * lp_net_static_mirror in net.h and docs/export.md, "Telemetry").
 *
 * A static export (`livepush export`) serves the repository, the blobs and
 * the deltas at the server's paths, but nothing takes the device's events:
 * their POST gets a 404 (nginx, for a path with no file), a 405 or 403
 * (object stores, CDNs that allow GET only) or a 501.  Those answers also
 * come from a real server for other reasons (an unknown app, a refused
 * token), so they prove nothing alone.  The export therefore writes a
 * marker, <server>/v1/apps/<app>/mirror.json, {"app":...,"static":true,...};
 * a server never has it.  It is asked for only after such a refusal, so a
 * device talking to a server never makes the extra request.
 *
 * The marker is read through the lp_net's fetcher (URL policy, retries,
 * at most MIRROR_MAX bytes) and parsed strictly enough: a JSON object whose
 * "static" is true and whose "app" is this app.  Anything else (404, not
 * JSON, another app) means "not known to be a mirror", and the caller
 * reports the POST's refusal as it would have.  The marker is not signed
 * and needs no signature: all it changes is that the device stops sending
 * events to a place that does not take them.
 */
#include "agent/net.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIRROR_MAX 4096u

lp_status lp_net_static_mirror(lp_net *n, bool *mirror, char *url_out, size_t cap,
                               lp_error *err)
{
    const char *app = lp_net_app(n);
    *mirror = false;
    if (cap)
        url_out[0] = '\0';
    char *url = lp_net_url(n, true, "mirror.json");
    if (!url)
        return lp_error_set(err, LP_ERR_NOMEM, "static mirror check: out of memory");
    if (cap)
        snprintf(url_out, cap, "%s", url);
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_fetch_to_buffer(lp_net_tuf_fetcher(n), url, MIRROR_MAX, &data, &len, err);
    if (st == LP_ERR_NOT_FOUND) {
        st = LP_OK; /* a server, or a mirror without the marker */
    } else if (!st) {
        json_t *doc = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, NULL);
        const char *named = json_string_value(json_object_get(doc, "app"));
        *mirror = json_is_object(doc) && json_is_true(json_object_get(doc, "static")) && named &&
                  app && strcmp(named, app) == 0;
        json_decref(doc);
    }
    free(data);
    free(url);
    return st;
}
