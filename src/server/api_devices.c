/*
 * api_devices.c — the device API for telemetry and the management routes
 * that read it back (docs/api.md):
 *
 *     POST /v1/apps/<app>/events                     device   a batch of events
 *     GET  /api/v1/apps/<app>/devices?after=&limit=  read     the app's devices
 *     GET  /api/v1/apps/<app>/events?device=&type=&since=&before=&limit=
 *                                                    read     events, newest first
 *     GET  /api/v1/apps/<app>/devices/<id>?events=   read     one device, the release
 *                                                             it is on its way to, and
 *                                                             its newest events
 *
 * The device route lives beside the TUF repository (/v1), not under
 * /api/v1: devices are not API clients.  By default they are anonymous;
 * with `serve --device-auth token` (lp_service_device_token) a request
 * needs a bearer token with the `download` scope, the devices' scope,
 * checked by lp_auth_require like any API route (401 / 403).
 *
 * A batch is bounded three times: the body size (EVENTS_BODY_MAX, before
 * parsing), the number of events (LP_DB_EVENT_BATCH_MAX) and each string
 * (field table); the body is parsed strictly, so an unknown or mistyped
 * member is a 400 naming it ("events[3].colour").  Values are checked by
 * lp_db_events_insert, whose messages name the event's place in the batch
 * ("events[3].type: 'exploded' is not one of ...").  The batch is stored in
 * one transaction and idempotently: a device that re-sends a batch (its
 * answer was lost) gets 200 with the events counted as duplicates.
 *
 * One device's "pending" release is derived from its newest events (the
 * `events` newest, default 20): the newest (highest seq) checked,
 * downloaded, verified or staged event that names a version code above the
 * one the device runs, unless an activated, healthy, failed or rolled_back
 * event came after it (the attempt ended).  It is null when there is none,
 * so a device that gave up on a release, or has not reported since the
 * step, shows none.
 *
 * Lists page with a cursor taken from the last item of a page ("next"):
 * devices by device_id (pass as after=), events by id (pass as before=).
 * One row more than the page is asked for to know whether a next page
 * exists.
 */
#include "server/api.h"
#include "server/auth.h"
#include "server/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVENTS_BODY_MAX (4u * 1024 * 1024)
#define PAGE_DEFAULT 50
#define PAGE_MAX 1000

/* ---- JSON objects ---------------------------------------------------------------- */

static json_t *int_or_null(int64_t v, bool given)
{
    return given ? json_integer(v) : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* The download figures of an event (docs/api.md), in this order. */
static const char *const figure_names[] = {"bytes", "files_fetched", "files_delta",
                                           "bytes_delta_saved", "delta_fallbacks"};
#define FIGURES (sizeof figure_names / sizeof figure_names[0])

static int64_t *figure_new(lp_db_event_new *e, size_t k)
{
    int64_t *const v[FIGURES] = {&e->bytes, &e->files_fetched, &e->files_delta,
                                 &e->bytes_delta_saved, &e->delta_fallbacks};
    return v[k];
}

static json_t *event_json(const lp_db_event *e)
{
    json_t *o = json_pack("{s:I,s:s,s:I,s:s,s:I,s:o,s:o,s:o,s:o,s:o}", "id", (json_int_t)e->id,
                          "device_id", e->device_id, "seq", (json_int_t)e->seq, "type", e->type,
                          "at", (json_int_t)e->at, "version", str_or_null(e->version),
                          "version_code", int_or_null(e->version_code, e->version_code > 0),
                          "from_version_code",
                          int_or_null(e->from_version_code, e->from_version_code > 0), "reason",
                          str_or_null(e->reason), "duration_ms",
                          int_or_null(e->duration_ms, e->duration_ms >= 0));
    const int64_t figures[FIGURES] = {e->bytes, e->files_fetched, e->files_delta,
                                      e->bytes_delta_saved, e->delta_fallbacks};
    for (size_t k = 0; o && k < FIGURES; k++)
        json_object_set_new(o, figure_names[k], int_or_null(figures[k], figures[k] >= 0));
    if (o)
        json_object_set_new(o, "received_at", json_integer((json_int_t)e->received_at));
    return o;
}

static json_t *device_json(const lp_db_device *d)
{
    return json_pack("{s:s,s:o,s:I,s:I,s:o,s:I,s:o}", "device_id", d->device_id, "channel",
                     d->channel[0] ? json_string(d->channel) : json_null(), "first_seen",
                     (json_int_t)d->first_seen, "last_seen", (json_int_t)d->last_seen,
                     "version_code", int_or_null(d->version_code, d->version_code > 0),
                     "dropped", (json_int_t)d->dropped, "last_event",
                     d->has_last_event ? event_json(&d->last_event) : json_null());
}

/* ---- POST /v1/apps/<app>/events ---------------------------------------------------- */

static const lp_api_field event_fields[] = {
    {"seq", LP_API_INT, .required = true},
    {"type", LP_API_STRING, .required = true, .max_len = LP_DB_EVENT_TYPE_MAX},
    {"at", LP_API_INT, .required = true},
    {"version", LP_API_STRING, .nullable = true, .max_len = LP_DB_VERSION_MAX},
    {"version_code", LP_API_INT, .nullable = true},
    {"from_version_code", LP_API_INT, .nullable = true},
    {"reason", LP_API_STRING, .nullable = true, .max_len = LP_DB_REASON_MAX},
    {"duration_ms", LP_API_INT, .nullable = true},
    {"bytes", LP_API_INT, .nullable = true},
    {"files_fetched", LP_API_INT, .nullable = true},
    {"files_delta", LP_API_INT, .nullable = true},
    {"bytes_delta_saved", LP_API_INT, .nullable = true},
    {"delta_fallbacks", LP_API_INT, .nullable = true},
};

static const lp_api_field batch_fields[] = {
    {"device_id", LP_API_STRING, .required = true, .max_len = LP_DB_DEVICE_ID_MAX},
    {"events", LP_API_OBJECT_ARRAY, .required = true, .max_items = LP_DB_EVENT_BATCH_MAX,
     .items = event_fields, .nitems = sizeof event_fields / sizeof event_fields[0]},
    {"dropped", LP_API_INT, .nullable = true},
    {"channel", LP_API_STRING, .nullable = true, .max_len = LP_DB_NAME_MAX},
};

/* An integer member, *given telling whether it is there (not null). */
static int64_t member_int(const json_t *obj, const char *name, bool *given)
{
    json_t *v = json_object_get(obj, name);
    *given = json_is_integer(v);
    return *given ? (int64_t)json_integer_value(v) : 0;
}

/* Fills e[0..n) from the parsed events; false with the 400 answered for a
 * value that would read as "not given" (0 for a code, a negative duration
 * or figure). */
static bool events_from_json(lp_http_request *rq, const json_t *arr, lp_db_event_new *e)
{
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        bool g;
        e[i].seq = member_int(o, "seq", &g);
        e[i].type = lp_api_str(o, "type");
        e[i].at = member_int(o, "at", &g);
        e[i].version = lp_api_str(o, "version");
        e[i].reason = lp_api_str(o, "reason");
        static const char *const codes[] = {"version_code", "from_version_code"};
        for (size_t k = 0; k < 2; k++) {
            int64_t v = member_int(o, codes[k], &g);
            if (g && v < 1) {
                lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                                      "field 'events[%zu].%s': must be 1 or more", i, codes[k]);
                return false;
            }
            *(k ? &e[i].from_version_code : &e[i].version_code) = v;
        }
        int64_t ms = member_int(o, "duration_ms", &g);
        if (g && ms < 0) {
            lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                                  "field 'events[%zu].duration_ms': must be 0 or more", i);
            return false;
        }
        e[i].duration_ms = g ? ms : -1;
        for (size_t k = 0; k < FIGURES; k++) {
            int64_t v = member_int(o, figure_names[k], &g);
            if (g && v < 0) {
                lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                                      "field 'events[%zu].%s': must be 0 or more", i,
                                      figure_names[k]);
                return false;
            }
            *figure_new(&e[i], k) = g ? v : -1;
        }
    }
    return true;
}

/* A stored device event on the lifecycle log (lp_service_lifecycle): its
 * name as the life cycle calls it ("downloaded" is "fetched", an offer
 * "offered"), the device, and the release it is about (for a rollback, the
 * release left). */
static void lifecycle_reported(lp_service *svc, const char *app, const lp_db_event_batch *b,
                               const lp_db_event_new *e)
{
    bool back = !strcmp(e->type, "rolled_back");
    int64_t code = back ? e->from_version_code : e->version_code;
    if (code <= 0)
        return; /* a check that found nothing, a failure about no release */
    const char *event = !strcmp(e->type, "downloaded") ? "fetched"
                        : !strcmp(e->type, "checked")  ? "offered"
                                                       : e->type;
    json_t *f = json_pack("{s:s,s:I}", "device", b->device_id, "seq", (json_int_t)e->seq);
    if (f && e->version)
        json_object_set_new(f, "version", json_string(e->version));
    if (f && e->reason)
        json_object_set_new(f, "reason", json_string(e->reason));
    char other[200];
    int64_t rel = back ? e->version_code : e->from_version_code;
    if (f && rel > 0) {
        snprintf(other, sizeof other, "%s/%lld", app, (long long)rel);
        json_object_set_new(f, back ? "to_release" : "from_release", json_string(other));
    }
    lp_service_lifecycle(svc, event, app, code, b->channel, f);
}

static void post_events(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    if (lp_service_device_token(svc) && !lp_auth_require(rq, svc, LP_SCOPE_DOWNLOAD, &who))
        return;
    size_t len = 0;
    lp_http_body(rq, &len);
    if (len > EVENTS_BODY_MAX) {
        lp_http_respond_error(rq, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
                              "a batch of events may be at most %u bytes, this one has %zu",
                              EVENTS_BODY_MAX, len);
        return;
    }
    json_t *body = NULL;
    if (!lp_api_parse_body(rq, batch_fields, sizeof batch_fields / sizeof batch_fields[0], &body))
        return;
    const json_t *arr = json_object_get(body, "events");
    size_t n = json_array_size(arr);
    lp_db_event_new *events = calloc(n ? n : 1, sizeof *events);
    bool *stored = calloc(n ? n : 1, sizeof *stored);
    lp_db *db = NULL;
    lp_db_app app = {0};
    if (!events || !stored) {
        lp_http_respond_error(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    } else if (events_from_json(rq, arr, events) && lp_api_db(rq, svc, &db)) {
        if (lp_api_app(rq, db, 0, &app)) {
            bool g;
            lp_db_event_batch b = {.app_id = app.id,
                                   .device_id = lp_api_str(body, "device_id"),
                                   .events = events,
                                   .n_events = n,
                                   .dropped = member_int(body, "dropped", &g),
                                   .channel = lp_api_str(body, "channel"),
                                   .stored = stored};
            lp_error err;
            lp_error_clear(&err);
            size_t added = 0;
            lp_status st = lp_db_events_insert(db, &b, &added, &err);
            if (!st) {
                lp_metrics *m = lp_service_metrics(svc);
                lp_metrics_add(m, LP_M_CHECKINS, (const char *[]){app.name}, 1);
                for (size_t i = 0; i < n; i++)
                    if (stored[i]) {
                        lp_metrics_add(m, LP_M_DEVICE_EVENTS,
                                       (const char *[]){app.name, events[i].type}, 1);
                        lifecycle_reported(svc, app.name, &b, &events[i]);
                    }
            }
            if (st)
                lp_api_respond_status(rq, st, &err);
            else
                lp_api_respond(rq, MHD_HTTP_OK,
                               json_pack("{s:I,s:I}", "accepted", (json_int_t)added,
                                         "duplicates", (json_int_t)(n - added)));
        }
        lp_service_db_release(svc, db);
    }
    lp_db_app_free(&app);
    free(events);
    free(stored);
    json_decref(body);
}

/* ---- query arguments ---------------------------------------------------------------- */

typedef struct query_check {
    const char *const *known;
    const char *bad; /* first unknown argument */
} query_check;

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    (void)value;
    query_check *q = cls;
    for (size_t i = 0; q->known[i]; i++)
        if (!strcmp(key, q->known[i]))
            return MHD_YES;
    q->bad = key;
    return MHD_NO;
}

/* False with the 400 answered when the query has an argument not in
 * `known` (NULL-terminated; `list` names them for the message). */
static bool query_known(lp_http_request *rq, const char *const *known, const char *list)
{
    query_check q = {.known = known};
    MHD_get_connection_values(lp_http_connection(rq), MHD_GET_ARGUMENT_KIND, check_arg, &q);
    if (!q.bad)
        return true;
    lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "query '%.64s': unknown parameter (known: %s)", q.bad, list);
    return false;
}

/* Query argument `name` as a decimal integer in [min, max] into *out (left
 * alone when absent); false with the 400 answered when it is not one. */
static bool query_int(lp_http_request *rq, const char *name, int64_t min, int64_t max,
                      int64_t *out)
{
    const char *s = lp_api_query(rq, name);
    if (!s)
        return true;
    int64_t v = 0;
    bool ok = *s && strlen(s) <= 18;
    for (const char *p = s; ok && *p; p++) {
        ok = *p >= '0' && *p <= '9';
        v = v * 10 + (*p - '0');
    }
    if (!ok || v < min || v > max) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "query '%s': expected a number from %lld to %lld", name,
                              (long long)min, (long long)max);
        return false;
    }
    *out = v;
    return true;
}

/* Answers a failed list call; a refused argument is named as a query's. */
static void answer_query_error(lp_http_request *rq, lp_status st, lp_error *err)
{
    if (st == LP_ERR_INVALID_ARG || st == LP_ERR_TOO_LARGE)
        lp_error_prefix(err, st, "query");
    lp_api_respond_status(rq, st, err);
}

/* Authenticates (read), looks the app up and holds a connection; false
 * when answered. */
static bool read_app(lp_http_request *rq, lp_service *svc, lp_db **db, lp_db_app *app)
{
    lp_auth who;
    if (!lp_auth_require(rq, svc, LP_SCOPE_READ, &who) || !lp_api_db(rq, svc, db))
        return false;
    if (lp_api_app(rq, *db, 0, app))
        return true;
    lp_service_db_release(svc, *db);
    return false;
}

/* ---- GET /api/v1/apps/<app>/devices ------------------------------------------------- */

static void list_devices(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    static const char *const known[] = {"after", "limit", NULL};
    lp_db *db = NULL;
    lp_db_app app = {0};
    int64_t limit = PAGE_DEFAULT;
    if (!read_app(rq, svc, &db, &app))
        return;
    lp_db_device_list list = {0};
    if (query_known(rq, known, "after, limit") && query_int(rq, "limit", 1, PAGE_MAX, &limit)) {
        lp_error err;
        lp_error_clear(&err);
        const char *after = lp_api_query(rq, "after");
        lp_status st = lp_db_device_list_by_app(db, app.id, after && *after ? after : NULL,
                                                (size_t)limit + 1, &list, &err);
        json_t *arr = st ? NULL : json_array();
        for (size_t i = 0; arr && i < list.count && i < (size_t)limit; i++)
            json_array_append_new(arr, device_json(&list.items[i]));
        if (st)
            answer_query_error(rq, st, &err);
        else
            lp_api_respond(rq, MHD_HTTP_OK,
                           json_pack("{s:o,s:o}", "devices", arr, "next",
                                     list.count > (size_t)limit
                                         ? json_string(list.items[limit - 1].device_id)
                                         : json_null()));
    }
    lp_service_db_release(svc, db);
    lp_db_device_list_free(&list);
    lp_db_app_free(&app);
}

/* ---- GET /api/v1/apps/<app>/events -------------------------------------------------- */

static void list_events(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    static const char *const known[] = {"device", "type", "since", "before", "limit", NULL};
    lp_db *db = NULL;
    lp_db_app app = {0};
    int64_t limit = PAGE_DEFAULT, since = 0, before = 0;
    if (!read_app(rq, svc, &db, &app))
        return;
    lp_db_event_list list = {0};
    if (query_known(rq, known, "device, type, since, before, limit") &&
        query_int(rq, "limit", 1, PAGE_MAX, &limit) &&
        query_int(rq, "since", 0, LP_DB_TIME_MAX, &since) &&
        query_int(rq, "before", 1, INT64_MAX / 10, &before)) {
        const char *device = lp_api_query(rq, "device");
        const char *type = lp_api_query(rq, "type");
        lp_db_event_query q = {.device_id = device && *device ? device : NULL,
                               .type = type && *type ? type : NULL,
                               .since = since,
                               .before_id = before,
                               .limit = (size_t)limit + 1};
        lp_error err;
        lp_error_clear(&err);
        lp_status st = lp_db_event_list_by_app(db, app.id, &q, &list, &err);
        json_t *arr = st ? NULL : json_array();
        for (size_t i = 0; arr && i < list.count && i < (size_t)limit; i++)
            json_array_append_new(arr, event_json(&list.items[i]));
        if (st)
            answer_query_error(rq, st, &err);
        else
            lp_api_respond(rq, MHD_HTTP_OK,
                           json_pack("{s:o,s:o}", "events", arr, "next",
                                     list.count > (size_t)limit
                                         ? json_integer(list.items[limit - 1].id)
                                         : json_null()));
    }
    lp_service_db_release(svc, db);
    lp_db_event_list_free(&list);
    lp_db_app_free(&app);
}

/* ---- GET /api/v1/apps/<app>/devices/<id> ------------------------------------------- */

#define DEVICE_EVENTS_DEFAULT 20

static bool is_step(const char *type)
{
    return !strcmp(type, "checked") || !strcmp(type, "downloaded") ||
           !strcmp(type, "verified") || !strcmp(type, "staged");
}

/* The pending release of a device (see the top of this file), or null. */
static json_t *pending_json(const lp_db_device *d, const lp_db_event_list *events)
{
    const lp_db_event *step = NULL;
    int64_t settled = 0; /* highest seq of an event that ends an attempt */
    for (size_t i = 0; i < events->count; i++) {
        const lp_db_event *e = &events->items[i];
        if (is_step(e->type)) {
            if (e->version_code > d->version_code && (!step || e->seq > step->seq))
                step = e;
        } else if (e->seq > settled) {
            settled = e->seq;
        }
    }
    if (!step || settled > step->seq)
        return json_null();
    return json_pack("{s:o,s:I,s:s,s:I,s:I}", "version", str_or_null(step->version),
                     "version_code", (json_int_t)step->version_code, "step", step->type, "at",
                     (json_int_t)step->at, "received_at", (json_int_t)step->received_at);
}

static void get_device(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    static const char *const known[] = {"events", NULL};
    lp_db *db = NULL;
    lp_db_app app = {0};
    int64_t limit = DEVICE_EVENTS_DEFAULT;
    if (!read_app(rq, svc, &db, &app))
        return;
    lp_db_device dev = {0};
    lp_db_event_list list = {0};
    const char *id = lp_http_param(rq, 1);
    if (query_known(rq, known, "events") && query_int(rq, "events", 1, PAGE_MAX, &limit)) {
        lp_error err;
        lp_error_clear(&err);
        lp_status st = lp_db_device_get(db, app.id, id, &dev, &err);
        if (st == LP_ERR_NOT_FOUND || st == LP_ERR_INVALID_ARG) {
            lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found",
                                  "no device '%.64s' in app '%s'", id ? id : "", app.name);
        } else if (st) {
            lp_api_respond_status(rq, st, &err);
        } else {
            lp_db_event_query q = {.device_id = dev.device_id, .limit = (size_t)limit};
            st = lp_db_event_list_by_app(db, app.id, &q, &list, &err);
            json_t *arr = st ? NULL : json_array();
            for (size_t i = 0; arr && i < list.count; i++)
                json_array_append_new(arr, event_json(&list.items[i]));
            if (st)
                lp_api_respond_status(rq, st, &err);
            else
                lp_api_respond(rq, MHD_HTTP_OK,
                               json_pack("{s:o,s:o,s:o}", "device", device_json(&dev),
                                         "pending", pending_json(&dev, &list), "events", arr));
        }
    }
    lp_service_db_release(svc, db);
    lp_db_event_list_free(&list);
    lp_db_device_free(&dev);
    lp_db_app_free(&app);
}

lp_status lp_api_add_device_routes(lp_http_server *s, lp_service *svc, lp_error *err)
{
    lp_status st = lp_http_server_route(s, "POST", "/v1/apps/*/events", post_events, svc, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/api/v1/apps/*/devices", list_devices, svc, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/api/v1/apps/*/devices/*", get_device, svc, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/api/v1/apps/*/events", list_events, svc, err);
    return st;
}
