/*
 * api_tokens.c — access tokens (docs/api.md, docs/tokens.md):
 *
 *     GET    /api/v1/whoami          any valid token   the caller's token
 *     GET    /api/v1/tokens          admin             list
 *     POST   /api/v1/tokens          admin             create; the secret is in
 *                                                      this one answer only
 *     DELETE /api/v1/tokens/<id>     admin             revoke
 *
 * A new token's text exists only on this handler's stack and in the answer
 * body; the stack copy is wiped once the answer is queued.  The database
 * keeps the salt and HMAC (token.h).  Scopes arrive as a JSON array of
 * names, are parsed by lp_token_scopes_parse (unknown or repeated names are
 * a 400 naming the field) and stored in canonical order.  Creating and
 * revoking commit together with their audit entry, which names the token
 * by its id (and, for a new one, its name and scopes), never its secret.
 */
#include "server/api.h"
#include "server/auth.h"

#include "livepush/hash.h"

#include <stdio.h>
#include <string.h>

static void answer_token(lp_http_request *rq, lp_service *svc, const char *id, unsigned status)
{
    lp_db *db = NULL;
    if (!lp_api_db(rq, svc, &db))
        return;
    lp_error err;
    lp_db_token tok = {0};
    lp_status st = lp_db_token_find_by_id(db, id, &tok, &err);
    lp_service_db_release(svc, db);
    if (st)
        lp_api_respond_status(rq, st, &err);
    else
        lp_api_respond(rq, status, json_pack("{s:o}", "token", lp_api_token_json(&tok)));
    lp_db_token_free(&tok);
}

static void whoami(lp_http_request *rq, void *user)
{
    lp_auth who;
    if (lp_auth_require(rq, user, 0, &who))
        answer_token(rq, user, who.token_id, MHD_HTTP_OK);
}

static void list_tokens(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    lp_db *db = NULL;
    if (!lp_auth_require(rq, svc, LP_SCOPE_ADMIN, &who) || !lp_api_db(rq, svc, &db))
        return;
    lp_error err;
    lp_db_token_list toks = {0};
    lp_status st = lp_db_token_list_all(db, &toks, &err);
    lp_service_db_release(svc, db);
    if (st) {
        lp_api_respond_status(rq, st, &err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < toks.count; i++)
        json_array_append_new(arr, lp_api_token_json(&toks.items[i]));
    lp_db_token_list_free(&toks);
    lp_api_respond(rq, MHD_HTTP_OK, json_pack("{s:o}", "tokens", arr));
}

/* The scopes array as a bit set; false with the 400 answered. */
static bool parse_scopes(lp_http_request *rq, const json_t *arr, lp_scopes *out)
{
    char list[LP_DB_SCOPES_MAX + 1] = "";
    size_t used = 0, i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *name = json_string_value(v);
        size_t n = strlen(name);
        if (!n || strchr(name, ',') || used + n + 1 >= sizeof list) {
            lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                                  "field 'scopes': item %zu is not a scope name", i);
            return false;
        }
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? "," : "", name);
    }
    lp_error err;
    if (lp_token_scopes_parse(list, out, &err)) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request", "field 'scopes': %s",
                              err.msg);
        return false;
    }
    return true;
}

static const lp_api_field create_fields[] = {
    {"name", LP_API_STRING, .required = true, .max_len = LP_DB_TOKEN_NAME_MAX},
    {"scopes", LP_API_STRING_ARRAY, .required = true, .max_len = LP_DB_SCOPE_MAX,
     .max_items = 16},
};

static void create_token(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    json_t *body = NULL;
    lp_scopes scopes = 0;
    if (!lp_auth_require(rq, svc, LP_SCOPE_ADMIN, &who) ||
        !lp_api_parse_body(rq, create_fields, 2, &body))
        return;
    if (!parse_scopes(rq, json_object_get(body, "scopes"), &scopes)) {
        json_decref(body);
        return;
    }
    lp_error err;
    lp_error_clear(&err);
    char text[LP_TOKEN_TEXT_SIZE], scope_text[LP_SCOPES_TEXT_SIZE];
    lp_token_record rec;
    uint8_t salt[LP_TOKEN_SALT_LEN], hash[LP_TOKEN_HASH_LEN];
    size_t nsalt = 0, nhash = 0;
    lp_status st = lp_token_generate(scopes, text, &rec, &err);
    if (!st)
        st = lp_token_scopes_format(scopes, scope_text, sizeof scope_text, &err);
    if (!st)
        st = lp_hex_decode(rec.salt_hex, salt, sizeof salt, &nsalt, &err);
    if (!st)
        st = lp_hex_decode(rec.hash_hex, hash, sizeof hash, &nhash, &err);
    lp_db *db = NULL;
    if (!st && !lp_api_db(rq, svc, &db)) {
        lp_token_wipe(text, sizeof text);
        json_decref(body);
        return;
    }
    lp_db_token tok = {0};
    lp_db_audit_head audit = {0};
    if (!st) {
        lp_db_token_new t = {.id = rec.id, .name = lp_api_str(body, "name"), .salt = salt,
                             .salt_len = nsalt, .hash = hash, .hash_len = nhash,
                             .scopes = scope_text};
        /* The token and its audit entry commit together. */
        char actor[LP_DB_AUDIT_ACTOR_MAX + 1];
        lp_service_audit_actor(who.token_id, actor);
        st = lp_db_begin(db, &err);
        if (!st)
            st = lp_db_token_insert(db, &t, &err);
        if (!st)
            st = lp_service_audit_db(svc, db, actor, "token.created", NULL, rec.id,
                                     json_pack("{s:s,s:O}", "name", t.name, "scopes",
                                               json_object_get(body, "scopes")),
                                     &audit, &err);
        if (!st)
            st = lp_db_commit(db, &err);
        if (st && lp_db_in_transaction(db))
            lp_db_rollback(db, NULL);
        if (!st)
            st = lp_db_token_find_by_id(db, rec.id, &tok, &err);
    }
    lp_service_db_release(svc, db);
    lp_service_audit_anchor(svc, &audit);
    json_decref(body);
    if (st) {
        lp_token_wipe(text, sizeof text);
        lp_api_respond_status(rq, st, &err);
        return;
    }
    lp_log_event(lp_http_log(rq), LP_LOG_INFO, "token created",
                 json_pack("{s:s,s:s,s:s}", "token_id", tok.id, "scopes", tok.scopes, "by",
                           who.token_id));
    lp_api_respond(rq, MHD_HTTP_CREATED,
                   json_pack("{s:o,s:s}", "token", lp_api_token_json(&tok), "secret", text));
    lp_token_wipe(text, sizeof text);
    lp_db_token_free(&tok);
}

static void revoke_token(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    lp_db *db = NULL;
    if (!lp_auth_require(rq, svc, LP_SCOPE_ADMIN, &who) || !lp_api_db(rq, svc, &db))
        return;
    const char *id = lp_http_param(rq, 0);
    lp_error err;
    /* The revocation and its audit entry commit together. */
    char actor[LP_DB_AUDIT_ACTOR_MAX + 1];
    lp_service_audit_actor(who.token_id, actor);
    lp_db_audit_head audit = {0};
    lp_status st = lp_db_begin(db, &err);
    if (!st)
        st = lp_db_token_revoke(db, id, 0, &err);
    if (!st)
        st = lp_service_audit_db(svc, db, actor, "token.revoked", NULL, id, NULL, &audit, &err);
    if (!st)
        st = lp_db_commit(db, &err);
    if (st && lp_db_in_transaction(db))
        lp_db_rollback(db, NULL);
    lp_service_db_release(svc, db);
    if (!st)
        lp_service_audit_anchor(svc, &audit);
    if (st == LP_ERR_NOT_FOUND || st == LP_ERR_INVALID_ARG) {
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no token '%.64s'", id);
        return;
    }
    if (st) {
        lp_api_respond_status(rq, st, &err);
        return;
    }
    lp_log_event(lp_http_log(rq), LP_LOG_INFO, "token revoked",
                 json_pack("{s:s,s:s}", "token_id", id, "by", who.token_id));
    answer_token(rq, svc, id, MHD_HTTP_OK);
}

lp_status lp_api_add_token_routes(lp_http_server *s, lp_service *svc, lp_error *err)
{
    lp_status st = lp_http_server_route(s, "GET", "/api/v1/whoami", whoami, svc, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/api/v1/tokens", list_tokens, svc, err);
    if (!st)
        st = lp_http_server_route(s, "POST", "/api/v1/tokens", create_token, svc, err);
    if (!st)
        st = lp_http_server_route(s, "DELETE", "/api/v1/tokens/*", revoke_token, svc, err);
    return st;
}
