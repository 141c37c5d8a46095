/*
 * api_apps.c — apps and their channels (docs/api.md):
 *
 *     GET  /api/v1/apps                    read    list
 *     POST /api/v1/apps                    admin   create: server-held keys (201), or
 *                                                  "signing":"publisher": the first step
 *                                                  of an app whose publisher signs (202,
 *                                                  the server's online keys; the root
 *                                                  follows with PUT .../root, api_signing.c)
 *     GET  /api/v1/apps/<app>              read    app, channels, latest release
 *     GET  /api/v1/apps/<app>/channels     read    list
 *     POST /api/v1/apps/<app>/channels     admin   create
 *
 * Creating an app is the service's work (keys, repository, row); a handler
 * never holds a pooled connection while it calls the service, which takes
 * its own (holding one could starve the pool).  Its audit entry follows
 * the service's commit; a channel and its entry commit together.
 */
#include "server/api.h"
#include "server/auth.h"

#include <string.h>
#include <time.h>

static const lp_api_field name_fields[] = {
    {"name", LP_API_STRING, .required = true, .max_len = LP_DB_NAME_MAX},
};

static const lp_api_field create_fields[] = {
    {"name", LP_API_STRING, .required = true, .max_len = LP_DB_NAME_MAX},
    {"signing", LP_API_STRING, .nullable = true, .max_len = 16},
};

static void list_apps(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    lp_db *db = NULL;
    if (!lp_auth_require(rq, svc, LP_SCOPE_READ, &who) || !lp_api_db(rq, svc, &db))
        return;
    lp_error err;
    lp_db_app_list apps = {0};
    lp_status st = lp_db_app_list_all(db, &apps, &err);
    lp_service_db_release(svc, db);
    if (st) {
        lp_api_respond_status(rq, st, &err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < apps.count; i++) {
        const char *signing = lp_service_app_signing(svc, apps.items[i].name);
        json_array_append_new(arr, lp_api_app_json(&apps.items[i], signing));
    }
    lp_db_app_list_free(&apps);
    lp_api_respond(rq, MHD_HTTP_OK, json_pack("{s:o}", "apps", arr));
}

static void create_app(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    json_t *body = NULL;
    if (!lp_auth_require(rq, svc, LP_SCOPE_ADMIN, &who) ||
        !lp_api_parse_body(rq, create_fields, 2, &body))
        return;
    const char *name = lp_api_str(body, "name");
    const char *signing = lp_api_str(body, "signing");
    lp_error err;
    lp_error_clear(&err);
    if (signing && strcmp(signing, "server") && strcmp(signing, "publisher")) {
        json_decref(body);
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "field 'signing': expected \"server\" or \"publisher\"");
        return;
    }
    if (signing && !strcmp(signing, "publisher")) {
        json_t *online = NULL;
        lp_status st = lp_service_app_begin_signed(svc, name, &online, &err);
        if (!st) {
            char actor[LP_DB_AUDIT_ACTOR_MAX + 1];
            lp_service_audit_actor(who.token_id, actor);
            json_t *snap = json_object_get(json_object_get(online, "snapshot"), "keyid");
            json_t *ts = json_object_get(json_object_get(online, "timestamp"), "keyid");
            lp_service_audit(svc, actor, "app.begun", name, NULL,
                             json_pack("{s:s,s:{s:O?,s:O?}}", "signing", "publisher",
                                       "online_keys", "snapshot", snap, "timestamp", ts),
                             NULL);
        }
        if (st)
            lp_api_respond_status(rq, st, &err);
        else
            lp_api_respond(rq, MHD_HTTP_ACCEPTED,
                           json_pack("{s:{s:s,s:s,s:s},s:o}", "app", "name", name, "signing",
                                     "publisher", "state", "awaiting_root", "online_keys",
                                     online));
        json_decref(body);
        return;
    }
    lp_status st = lp_service_app_create(svc, name, &err);
    lp_db *db = NULL;
    lp_db_app app = {0};
    if (st) {
        json_decref(body);
        lp_api_respond_status(rq, st, &err);
        return;
    }
    char actor[LP_DB_AUDIT_ACTOR_MAX + 1];
    lp_service_audit_actor(who.token_id, actor);
    lp_service_audit(svc, actor, "app.created", name, NULL,
                     json_pack("{s:s}", "signing", "server"), NULL);
    if (!lp_api_db(rq, svc, &db)) {
        json_decref(body);
        return;
    }
    st = lp_db_app_get_by_name(db, name, &app, &err);
    lp_service_db_release(svc, db);
    json_decref(body);
    if (st) {
        lp_api_respond_status(rq, st, &err);
        return;
    }
    lp_api_respond(rq, MHD_HTTP_CREATED,
                   json_pack("{s:o}", "app", lp_api_app_json(&app, "server")));
    lp_db_app_free(&app);
}

static json_t *channels_json(const lp_db_channel_list *l)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < l->count; i++)
        json_array_append_new(arr, lp_api_channel_json(&l->items[i]));
    return arr;
}

static void show_app(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    lp_db *db = NULL;
    lp_db_app app = {0};
    if (!lp_auth_require(rq, svc, LP_SCOPE_READ, &who) || !lp_api_db(rq, svc, &db))
        return;
    if (!lp_api_app(rq, db, 0, &app)) {
        lp_service_db_release(svc, db);
        return;
    }
    lp_error err;
    lp_db_channel_list chans = {0};
    lp_db_release latest = {0};
    json_t *latest_json = NULL;
    lp_status st = lp_db_channel_list_all(db, app.id, &chans, &err);
    if (!st) {
        st = lp_db_release_latest(db, app.id, NULL, &latest, &err);
        if (st == LP_ERR_NOT_FOUND) {
            st = LP_OK;
            latest_json = json_null();
        } else if (!st) {
            st = lp_service_release_json(svc, db, app.name, &latest, &latest_json, &err);
        }
    }
    lp_service_db_release(svc, db);
    if (st)
        lp_api_respond_status(rq, st, &err);
    else
        lp_api_respond(rq, MHD_HTTP_OK,
                       json_pack("{s:o,s:o,s:o}", "app",
                                 lp_api_app_json(&app, lp_service_app_signing(svc, app.name)),
                                 "channels",
                                 channels_json(&chans), "latest", latest_json));
    lp_db_release_free(&latest);
    lp_db_channel_list_free(&chans);
    lp_db_app_free(&app);
}

static void list_channels(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    lp_db *db = NULL;
    lp_db_app app = {0};
    if (!lp_auth_require(rq, svc, LP_SCOPE_READ, &who) || !lp_api_db(rq, svc, &db))
        return;
    if (!lp_api_app(rq, db, 0, &app)) {
        lp_service_db_release(svc, db);
        return;
    }
    lp_error err;
    lp_db_channel_list chans = {0};
    lp_status st = lp_db_channel_list_all(db, app.id, &chans, &err);
    lp_service_db_release(svc, db);
    if (st)
        lp_api_respond_status(rq, st, &err);
    else
        lp_api_respond(rq, MHD_HTTP_OK, json_pack("{s:o}", "channels", channels_json(&chans)));
    lp_db_channel_list_free(&chans);
    lp_db_app_free(&app);
}

static void create_channel(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    json_t *body = NULL;
    lp_db *db = NULL;
    lp_db_app app = {0};
    if (!lp_auth_require(rq, svc, LP_SCOPE_ADMIN, &who) ||
        !lp_api_parse_body(rq, name_fields, 1, &body))
        return;
    if (!lp_api_db(rq, svc, &db)) {
        json_decref(body);
        return;
    }
    if (!lp_api_app(rq, db, 0, &app)) {
        lp_service_db_release(svc, db);
        json_decref(body);
        return;
    }
    lp_error err;
    lp_db_channel ch = {.app_id = app.id,
                        .name = (char *)lp_api_str(body, "name"),
                        .created_at = (int64_t)time(NULL)};
    /* The channel and its audit entry commit together. */
    char actor[LP_DB_AUDIT_ACTOR_MAX + 1];
    lp_service_audit_actor(who.token_id, actor);
    lp_db_audit_head audit = {0};
    lp_status st = lp_db_begin(db, &err);
    if (!st)
        st = lp_db_channel_create(db, app.id, ch.name, ch.created_at, &ch.id, &err);
    if (!st)
        st = lp_service_audit_db(svc, db, actor, "channel.created", app.name, ch.name, NULL,
                                 &audit, &err);
    if (!st)
        st = lp_db_commit(db, &err);
    if (st && lp_db_in_transaction(db))
        lp_db_rollback(db, NULL);
    lp_service_db_release(svc, db);
    if (!st)
        lp_service_audit_anchor(svc, &audit);
    if (st)
        lp_api_respond_status(rq, st, &err);
    else
        lp_api_respond(rq, MHD_HTTP_CREATED, json_pack("{s:o}", "channel",
                                                       lp_api_channel_json(&ch)));
    json_decref(body);
    lp_db_app_free(&app);
}

lp_status lp_api_add_app_routes(lp_http_server *s, lp_service *svc, lp_error *err)
{
    lp_status st = lp_http_server_route(s, "GET", "/api/v1/apps", list_apps, svc, err);
    if (!st)
        st = lp_http_server_route(s, "POST", "/api/v1/apps", create_app, svc, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/api/v1/apps/*", show_app, svc, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/api/v1/apps/*/channels", list_channels, svc, err);
    if (!st)
        st = lp_http_server_route(s, "POST", "/api/v1/apps/*/channels", create_channel, svc,
                                  err);
    return st;
}
