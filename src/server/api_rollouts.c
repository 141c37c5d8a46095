/*
 * api_rollouts.c — the rollout routes (docs/api.md, "Rollouts"):
 *
 *     GET  /api/v1/apps/<app>/rollouts?channel=          read     rollouts with figures
 *     PUT  /api/v1/apps/<app>/releases/<v>/rollout        rollout  percent, state, weight
 *     POST /api/v1/apps/<app>/releases/<v>/promote        rollout  add a channel
 *     PUT  /api/v1/apps/<app>/channels/<ch>/window        rollout  maintenance window
 *     PUT  /api/v1/apps/<app>/guardrail                   admin    rate and minimum devices
 *     GET  /api/v1/apps/<app>/releases/<v>/adoption?channel=&period=
 *                                                         read     installs, failures and
 *                                                                  rollbacks over time
 *
 * Each write is one service action (service_rollout_ops.c): database,
 * audit entry and signed metadata change together.  The rollout answer
 * says whether devices follow it yet ("enforced": false for an app whose
 * publisher has not signed the rollout delegation).  A halted rollout
 * cannot be changed again: 409 conflict.
 *
 * Percentages travel as basis points (percent_bp, 0..10000: 1000 = 10%),
 * so no floating-point value is ever signed; times of day as "HH:MM" UTC.
 */
#include "server/api.h"
#include "server/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *rollout_json(const lp_db_rollout *r, const lp_db_release_stats *f)
{
    json_t *o = json_pack("{s:s,s:I,s:s,s:i,s:s,s:o,s:o,s:o}", "version", r->version,
                          "version_code", (json_int_t)r->version_code, "channel", r->channel,
                          "percent_bp", r->percent_bp, "state", r->state, "weight",
                          r->weight ? json_integer(r->weight) : json_null(), "reason",
                          r->reason ? json_string(r->reason) : json_null(), "updated_at",
                          lp_api_time_or_null(r->updated_at));
    if (o && f)
        json_object_set_new(
            o, "devices",
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "offered", (json_int_t)f->offered,
                      "downloaded", (json_int_t)f->downloaded, "installed",
                      (json_int_t)f->installed, "healthy", (json_int_t)f->healthy, "failed",
                      (json_int_t)f->failed, "rolled_back", (json_int_t)f->rolled_back, "tried",
                      (json_int_t)f->tried, "bad", (json_int_t)f->bad));
    return o;
}

/* The channel's window as {"start":"HH:MM","end":"HH:MM"} or null. */
static json_t *window_json(int start, int end)
{
    if (start < 0)
        return json_null();
    char a[8], b[8];
    snprintf(a, sizeof a, "%02d:%02d", start / 60, start % 60);
    snprintf(b, sizeof b, "%02d:%02d", end / 60, end % 60);
    return json_pack("{s:s,s:s}", "start", a, "end", b);
}

static void list_rollouts(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    lp_db *db = NULL;
    lp_db_app app = {0};
    if (!lp_auth_require(rq, svc, LP_SCOPE_READ, &who) || !lp_api_db(rq, svc, &db))
        return;
    const char *channel = lp_api_query(rq, "channel");
    lp_db_rollout_list rows = {0};
    lp_db_channel_list chans = {0};
    lp_error err;
    lp_error_clear(&err);
    int rate = 0, min = 0;
    json_t *items = json_array(), *windows = json_object();
    lp_status st = LP_OK;
    if (!lp_api_app(rq, db, 0, &app))
        goto out;
    st = lp_db_rollout_list_app(db, app.id, channel && *channel ? channel : NULL, &rows, &err);
    if (!st)
        st = lp_db_app_guard_get(db, app.id, &rate, &min, &err);
    if (!st)
        st = lp_db_channel_list_all(db, app.id, &chans, &err);
    for (size_t i = 0; !st && i < chans.count; i++) {
        int ws, we;
        st = lp_db_channel_window_get(db, app.id, chans.items[i].name, &ws, &we, &err);
        if (!st)
            json_object_set_new(windows, chans.items[i].name, window_json(ws, we));
    }
    for (size_t i = 0; !st && i < rows.count; i++) {
        lp_db_release_stats f;
        st = lp_db_release_stats_get(db, app.id, rows.items[i].version_code,
                                     rows.items[i].channel, &f, &err);
        if (!st)
            json_array_append_new(items, rollout_json(&rows.items[i], &f));
    }
    if (st)
        lp_api_respond_status(rq, st, &err);
    else
        lp_api_respond(rq, MHD_HTTP_OK,
                       json_pack("{s:O,s:{s:i,s:i},s:O}", "rollouts", items, "guardrail",
                                 "rate_bp", rate, "min_devices", min, "windows", windows));
out:
    json_decref(items);
    json_decref(windows);
    lp_db_rollout_list_free(&rows);
    lp_db_channel_list_free(&chans);
    lp_db_app_free(&app);
    lp_service_db_release(svc, db);
}

/* The app named by capture 0 exists (404 answered otherwise). */
static bool app_exists(lp_http_request *rq, lp_service *svc)
{
    lp_db *db = NULL;
    lp_db_app app = {0};
    if (!lp_api_db(rq, svc, &db))
        return false;
    bool ok = lp_api_app(rq, db, 0, &app);
    lp_db_app_free(&app);
    lp_service_db_release(svc, db);
    return ok;
}

static const lp_api_field rollout_fields[] = {
    {"channel", LP_API_STRING, .required = true, .max_len = LP_DB_NAME_MAX},
    {"percent_bp", LP_API_INT, .nullable = true},
    {"state", LP_API_STRING, .nullable = true, .max_len = 16},
    {"weight", LP_API_INT, .nullable = true},
    {"reason", LP_API_STRING, .nullable = true, .max_len = LP_DB_ROLLOUT_REASON_MAX},
};

static int int_or(const json_t *body, const char *name, int dflt, bool *bad)
{
    const json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v))
        return dflt;
    json_int_t i = json_integer_value(v);
    if (i < 0 || i > LP_DB_BP_MAX) {
        *bad = true;
        return dflt;
    }
    return (int)i;
}

static void put_rollout(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    json_t *body = NULL;
    if (!lp_auth_require(rq, svc, LP_SCOPE_ROLLOUT, &who) ||
        !lp_api_parse_body(rq, rollout_fields, sizeof rollout_fields / sizeof rollout_fields[0],
                           &body))
        return;
    bool bad = false;
    lp_service_rollout_change c = {.channel = lp_api_str(body, "channel"),
                                   .percent_bp = int_or(body, "percent_bp", -1, &bad),
                                   .state = lp_api_str(body, "state"),
                                   .weight = int_or(body, "weight", -1, &bad),
                                   .reason = lp_api_str(body, "reason")};
    if (bad) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "fields 'percent_bp' and 'weight': expected 0..10000");
    } else if (c.percent_bp < 0 && !c.state && c.weight < 0) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "nothing to change: give percent_bp, state or weight");
    } else if (app_exists(rq, svc)) {
        char actor[LP_DB_AUDIT_ACTOR_MAX + 1];
        lp_service_audit_actor(who.token_id, actor);
        lp_db_rollout r = {0};
        bool enforced = false;
        lp_error err;
        lp_error_clear(&err);
        lp_status st = lp_service_rollout_change_apply(svc, lp_http_param(rq, 0),
                                                       lp_http_param(rq, 1), &c, actor, &r,
                                                       &enforced, &err);
        if (st) {
            lp_api_respond_signing_status(rq, st, &err);
        } else {
            json_t *o = rollout_json(&r, NULL);
            if (o)
                json_object_set_new(o, "enforced", json_boolean(enforced));
            lp_api_respond(rq, MHD_HTTP_OK, json_pack("{s:o}", "rollout", o));
        }
        lp_db_rollout_free(&r);
    }
    json_decref(body);
}

static const lp_api_field channel_fields[] = {
    {"channel", LP_API_STRING, .required = true, .max_len = LP_DB_NAME_MAX},
};

static void promote(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    json_t *body = NULL;
    if (!lp_auth_require(rq, svc, LP_SCOPE_ROLLOUT, &who) ||
        !lp_api_parse_body(rq, channel_fields, 1, &body))
        return;
    if (app_exists(rq, svc)) {
        char actor[LP_DB_AUDIT_ACTOR_MAX + 1];
        lp_service_audit_actor(who.token_id, actor);
        lp_error err;
        lp_error_clear(&err);
        lp_status st = lp_service_promote(svc, lp_http_param(rq, 0), lp_http_param(rq, 1),
                                          lp_api_str(body, "channel"), actor, &err);
        if (st)
            lp_api_respond_signing_status(rq, st, &err);
        else
            lp_api_respond(rq, MHD_HTTP_OK,
                           json_pack("{s:s,s:s}", "version", lp_http_param(rq, 1), "channel",
                                     lp_api_str(body, "channel")));
    }
    json_decref(body);
}

/* "HH:MM" (00:00..23:59) into minutes; -1 when malformed. */
static int minutes_of(const char *s)
{
    if (!s || strlen(s) != 5 || s[2] != ':')
        return -1;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s[i] < '0' || s[i] > '9'))
            return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    return h < 24 && m < 60 ? h * 60 + m : -1;
}

static const lp_api_field window_fields[] = {
    {"start", LP_API_STRING, .nullable = true, .max_len = 5},
    {"end", LP_API_STRING, .nullable = true, .max_len = 5},
};

static void put_window(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    json_t *body = NULL;
    if (!lp_auth_require(rq, svc, LP_SCOPE_ROLLOUT, &who) ||
        !lp_api_parse_body(rq, window_fields, 2, &body))
        return;
    const char *a = lp_api_str(body, "start"), *b = lp_api_str(body, "end");
    int start = a ? minutes_of(a) : -1, end = b ? minutes_of(b) : -1;
    if ((a && start < 0) || (b && end < 0) || (!a != !b)) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "fields 'start' and 'end': expected both as \"HH:MM\" (UTC), or "
                              "both null to remove the window");
    } else if (app_exists(rq, svc)) {
        char actor[LP_DB_AUDIT_ACTOR_MAX + 1];
        lp_service_audit_actor(who.token_id, actor);
        lp_error err;
        lp_error_clear(&err);
        lp_status st = lp_service_channel_window(svc, lp_http_param(rq, 0), lp_http_param(rq, 1),
                                                 start, end, actor, &err);
        if (st)
            lp_api_respond_status(rq, st, &err);
        else
            lp_api_respond(rq, MHD_HTTP_OK,
                           json_pack("{s:s,s:o}", "channel", lp_http_param(rq, 1), "window",
                                     window_json(start, end)));
    }
    json_decref(body);
}

static const lp_api_field guard_fields[] = {
    {"rate_bp", LP_API_INT, .required = true},
    {"min_devices", LP_API_INT, .required = true},
};

static void put_guardrail(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    json_t *body = NULL;
    if (!lp_auth_require(rq, svc, LP_SCOPE_ADMIN, &who) ||
        !lp_api_parse_body(rq, guard_fields, 2, &body))
        return;
    json_int_t rate = json_integer_value(json_object_get(body, "rate_bp"));
    json_int_t min = json_integer_value(json_object_get(body, "min_devices"));
    if (rate < 1 || rate > LP_DB_BP_MAX || min < 1 || min > 1000000000) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "field 'rate_bp': expected 1..10000; field 'min_devices': "
                              "expected 1..1000000000");
    } else if (app_exists(rq, svc)) {
        char actor[LP_DB_AUDIT_ACTOR_MAX + 1];
        lp_service_audit_actor(who.token_id, actor);
        lp_error err;
        lp_error_clear(&err);
        lp_status st = lp_service_guard_set(svc, lp_http_param(rq, 0), (int)rate, (int)min,
                                            actor, &err);
        if (st)
            lp_api_respond_status(rq, st, &err);
        else
            lp_api_respond(rq, MHD_HTTP_OK,
                           json_pack("{s:{s:i,s:i}}", "guardrail", "rate_bp", (int)rate,
                                     "min_devices", (int)min));
    }
    json_decref(body);
}

static void adoption(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    lp_db *db = NULL;
    lp_db_app app = {0};
    lp_db_release rel = {0};
    lp_db_adoption a = {0};
    if (!lp_auth_require(rq, svc, LP_SCOPE_READ, &who) || !lp_api_db(rq, svc, &db))
        return;
    const char *channel = lp_api_query(rq, "channel");
    const char *period = lp_api_query(rq, "period");
    long long bucket = 3600;
    char *end = NULL;
    if (period)
        bucket = strtoll(period, &end, 10);
    lp_error err;
    lp_error_clear(&err);
    if (period && (!*period || *end || bucket < 60 || bucket > 31 * 86400)) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "query 'period': expected seconds from 60 to 2678400");
    } else if (lp_api_app(rq, db, 0, &app)) {
        lp_status st = lp_db_release_get_by_version(db, app.id, lp_http_param(rq, 1), &rel, &err);
        if (!st)
            st = lp_db_release_adoption(db, app.id, rel.version_code,
                                        channel && *channel ? channel : NULL, bucket, &a, &err);
        json_t *points = json_array();
        int64_t total = 0;
        for (size_t i = 0; !st && points && i < a.count; i++) {
            total += a.points[i].installed;
            json_array_append_new(
                points, json_pack("{s:I,s:I,s:I,s:I,s:I}", "at", (json_int_t)a.points[i].at,
                                  "installed", (json_int_t)a.points[i].installed,
                                  "installed_total", (json_int_t)total, "failed",
                                  (json_int_t)a.points[i].failed, "rolled_back",
                                  (json_int_t)a.points[i].rolled_back));
        }
        if (st)
            lp_api_respond_status(rq, st, &err);
        else
            lp_api_respond(rq, MHD_HTTP_OK,
                           json_pack("{s:s,s:I,s:o,s:I,s:O}", "version", rel.version,
                                     "version_code", (json_int_t)rel.version_code, "channel",
                                     channel && *channel ? json_string(channel) : json_null(),
                                     "period", (json_int_t)bucket, "points", points));
        json_decref(points);
    }
    lp_db_adoption_free(&a);
    lp_db_release_free(&rel);
    lp_db_app_free(&app);
    lp_service_db_release(svc, db);
}

lp_status lp_api_add_rollout_routes(lp_http_server *s, lp_service *svc, lp_error *err)
{
    lp_status st = lp_http_server_route(s, "GET", "/api/v1/apps/*/rollouts", list_rollouts, svc,
                                        err);
    if (!st)
        st = lp_http_server_route(s, "PUT", "/api/v1/apps/*/releases/*/rollout", put_rollout,
                                  svc, err);
    if (!st)
        st = lp_http_server_route(s, "POST", "/api/v1/apps/*/releases/*/promote", promote, svc,
                                  err);
    if (!st)
        st = lp_http_server_route(s, "PUT", "/api/v1/apps/*/channels/*/window", put_window, svc,
                                  err);
    if (!st)
        st = lp_http_server_route(s, "PUT", "/api/v1/apps/*/guardrail", put_guardrail, svc,
                                  err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/api/v1/apps/*/releases/*/adoption", adoption, svc,
                                  err);
    return st;
}
