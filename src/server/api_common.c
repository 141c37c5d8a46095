/*
 * api_common.c — what every management route shares (see api.h): JSON
 * answers, the one mapping from lp_status to HTTP, database and app
 * lookups, the JSON form of each object, and the registration of all
 * routes.
 *
 * API answers carry Cache-Control: no-store: they describe state that
 * changes (and a token's secret), so no cache may keep them.  Errors the
 * caller cannot fix (500) are logged with the request id and the full
 * message; the answer carries the message too, since it names only
 * server-side things (a file, a database step), never a secret.
 */
#include "server/api.h"

#include "server/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lp_api_respond(lp_http_request *rq, unsigned status, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        lp_http_respond(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, 0);
        return;
    }
    size_t len = strlen(text);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        lp_http_respond(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, 0);
        return;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    lp_http_respond(rq, status, r, len);
}

void lp_api_respond_status(lp_http_request *rq, lp_status st, const lp_error *err)
{
    unsigned status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    const char *code = "internal";
    if (st == LP_ERR_INVALID_ARG || st == LP_ERR_TOO_LARGE) {
        status = MHD_HTTP_BAD_REQUEST;
        code = "bad_request";
    } else if (st == LP_ERR_NOT_FOUND) {
        status = MHD_HTTP_NOT_FOUND;
        code = "not_found";
    } else if (st == LP_ERR_EXISTS) {
        status = MHD_HTTP_CONFLICT;
        code = "conflict";
    } else if (st == LP_ERR_ROLLBACK) {
        status = MHD_HTTP_CONFLICT;
        code = "rollback";
    } else if (st == LP_ERR_MALFORMED || st == LP_ERR_HASH_MISMATCH ||
               st == LP_ERR_LENGTH_MISMATCH) {
        status = MHD_HTTP_UNPROCESSABLE_CONTENT;
        code = "unprocessable";
    } else if (st == LP_ERR_STATE) {
        status = MHD_HTTP_SERVICE_UNAVAILABLE;
        code = "unavailable";
    }
    const char *msg = err && err->msg[0] ? err->msg : lp_status_name(st);
    if (status >= 500)
        lp_log_event(lp_http_log(rq), LP_LOG_ERROR, "request failed",
                     json_pack("{s:s,s:s,s:s}", "request_id", lp_http_request_id(rq), "status",
                               lp_status_name(st), "error", msg));
    lp_http_respond_error(rq, status, code, "%s", msg);
}

bool lp_api_db(lp_http_request *rq, lp_service *svc, lp_db **db)
{
    lp_error err;
    lp_error_clear(&err);
    if (lp_service_db_acquire(svc, db, &err) == LP_OK)
        return true;
    lp_http_respond_error(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                          "database unavailable: %s", err.msg);
    return false;
}

bool lp_api_app(lp_http_request *rq, lp_db *db, size_t param, lp_db_app *app)
{
    const char *name = lp_http_param(rq, param);
    lp_error err;
    lp_error_clear(&err);
    lp_status st = name ? lp_db_app_get_by_name(db, name, app, &err) : LP_ERR_NOT_FOUND;
    if (st == LP_ERR_NOT_FOUND || st == LP_ERR_INVALID_ARG) {
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no app '%.64s'",
                              name ? name : "");
        return false;
    }
    if (st) {
        lp_api_respond_status(rq, st, &err);
        return false;
    }
    return true;
}

const char *lp_api_query(lp_http_request *rq, const char *name)
{
    return MHD_lookup_connection_value(lp_http_connection(rq), MHD_GET_ARGUMENT_KIND, name);
}

json_t *lp_api_time_or_null(int64_t t) { return t ? json_integer(t) : json_null(); }

json_t *lp_api_app_json(const lp_db_app *app, const char *signing)
{
    char meta[128], targets[128];
    snprintf(meta, sizeof meta, "/v1/apps/%s/metadata", app->name);
    snprintf(targets, sizeof targets, "/v1/apps/%s/targets", app->name);
    return json_pack("{s:s,s:I,s:s,s:s,s:s}", "name", app->name, "created_at",
                     (json_int_t)app->created_at, "signing", signing, "metadata_url", meta,
                     "targets_url", targets);
}

json_t *lp_api_channel_json(const lp_db_channel *ch)
{
    return json_pack("{s:s,s:I}", "name", ch->name, "created_at", (json_int_t)ch->created_at);
}

json_t *lp_api_token_json(const lp_db_token *tok)
{
    json_t *scopes = json_array();
    const char *p = tok->scopes ? tok->scopes : "";
    while (scopes && *p) {
        size_t n = strcspn(p, ",");
        if (n)
            json_array_append_new(scopes, json_stringn(p, n));
        p += n + (p[n] == ',');
    }
    return json_pack("{s:s,s:s,s:o,s:I,s:o,s:o}", "id", tok->id, "name", tok->name, "scopes",
                     scopes, "created_at", (json_int_t)tok->created_at, "revoked_at",
                     lp_api_time_or_null(tok->revoked_at), "last_used_at",
                     lp_api_time_or_null(tok->last_used_at));
}

json_t *lp_api_upload_json(const lp_db_upload *up, const char *app_name)
{
    return json_pack("{s:s,s:s,s:I,s:I,s:o,s:I,s:I}", "id", up->id, "app", app_name, "size",
                     (json_int_t)up->expected_size, "offset", (json_int_t)up->received,
                     "sha256", up->expected_sha256 ? json_string(up->expected_sha256) : json_null(),
                     "created_at", (json_int_t)up->created_at, "updated_at",
                     (json_int_t)up->updated_at);
}

lp_status lp_api_add_routes(lp_http_server *s, lp_service *svc, lp_error *err)
{
    lp_status st = lp_api_add_app_routes(s, svc, err);
    if (!st)
        st = lp_api_add_release_routes(s, svc, err);
    if (!st)
        st = lp_api_add_upload_routes(s, svc, err);
    if (!st)
        st = lp_api_add_token_routes(s, svc, err);
    if (!st)
        st = lp_api_add_signing_routes(s, svc, err);
    if (!st)
        st = lp_api_add_blob_routes(s, svc, err);
    if (!st)
        st = lp_api_add_device_routes(s, svc, err);
    if (!st)
        st = lp_api_add_delta_routes(s, svc, err);
    if (!st)
        st = lp_api_add_audit_routes(s, svc, err);
    if (!st)
        st = lp_api_add_rollout_routes(s, svc, err);
    if (!st)
        st = lp_api_add_metrics_routes(s, svc, err);
    if (!st)
        st = lp_api_add_dashboard_routes(s, err);
    return st;
}
