/*
 * auth.c — bearer tokens on the management API (see auth.h).
 *
 * The order of the work is fixed so that an attacker learns nothing from
 * the answer or its timing: parse; look the id up; verify against the
 * stored record, or against no record when the id is unknown, revoked or
 * its stored record is damaged (lp_token_verify then does the same HMAC
 * against a dummy record); only then look at scopes.  Every refusal of the
 * token itself is the same 401 with the same message shape.
 *
 * The presented secret lives only in an lp_token_parsed on this stack frame
 * and is wiped before returning; refusals are logged with the request id
 * and the token id (never the header value).
 *
 * last_used_at is written with the request's time, and only when it
 * differs from the stored one (one write per token and second), so a busy
 * client does not turn every read into a database write.
 */
#include "server/auth.h"

#include "livepush/db.h"
#include "livepush/hash.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define REALM "Bearer realm=\"livepush\""

static void log_refusal(lp_http_request *rq, unsigned status, const char *token_id,
                        const char *why)
{
    json_t *f = json_pack("{s:s,s:i,s:s}", "request_id", lp_http_request_id(rq), "status",
                          (int)status, "reason", why);
    if (f && token_id)
        json_object_set_new(f, "token_id", json_string(token_id));
    lp_log_event(lp_http_log(rq), LP_LOG_INFO, "auth refused", f);
}

/* 401 with the challenge header. */
static void refuse_401(lp_http_request *rq, const char *token_id, const char *why)
{
    log_refusal(rq, 401, token_id, why);
    size_t len = 0;
    struct MHD_Response *r = lp_http_error_response("unauthorized", why, &len);
    if (r)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, REALM);
    lp_http_respond(rq, MHD_HTTP_UNAUTHORIZED, r, len);
}

lp_scopes lp_auth_scopes_from_text(const char *text)
{
    lp_scopes all = 0;
    const char *p = text ? text : "";
    while (*p) {
        size_t n = strcspn(p, ",");
        char one[LP_DB_SCOPE_MAX + 1];
        lp_scopes bit = 0;
        if (n > 0 && n <= LP_DB_SCOPE_MAX) {
            memcpy(one, p, n);
            one[n] = '\0';
            if (lp_token_scopes_parse(one, &bit, NULL) == LP_OK)
                all |= bit;
        }
        p += n + (p[n] == ',');
    }
    return all;
}

/* The stored token as an lp_token_record; false when its salt or hash has
 * a length this version does not make (a damaged row). */
static bool record_of(const lp_db_token *t, lp_token_record *rec)
{
    memset(rec, 0, sizeof *rec);
    if (t->salt_len != LP_TOKEN_SALT_LEN || t->hash_len != LP_TOKEN_HASH_LEN ||
        strlen(t->id) != LP_TOKEN_ID_LEN)
        return false;
    memcpy(rec->id, t->id, LP_TOKEN_ID_LEN + 1);
    lp_hex_encode(t->salt, t->salt_len, rec->salt_hex);
    lp_hex_encode(t->hash, t->hash_len, rec->hash_hex);
    rec->scopes = lp_auth_scopes_from_text(t->scopes);
    return true;
}

/* The names of the scopes in `need` that `have` lacks, e.g. "upload". */
static void missing_scopes(lp_scopes have, lp_scopes need, char *out, size_t cap)
{
    lp_scopes lack = need & ~lp_token_scopes_expand(have);
    if (lp_token_scopes_format(lack ? lack : need, out, cap, NULL) != LP_OK || !*out)
        snprintf(out, cap, "(unknown)");
}

/* "upload or approve": the names of the scope bits in `any`. */
static void any_names(lp_scopes any, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (unsigned b = 0; b < 32; b++) {
        const char *name = (any >> b) & 1u ? lp_token_scope_name((lp_scopes)1u << b) : NULL;
        if (name && used < cap)
            used += (size_t)snprintf(out + used, cap - used, "%s'%s'", used ? " or " : "", name);
    }
    if (!out[0])
        snprintf(out, cap, "(unknown)");
}

/* Whether a token holding `have` holds one of the scopes in `any` (after
 * expansion); true when `any` is 0. */
static bool allows_any(lp_scopes have, lp_scopes any)
{
    if (!any)
        return true;
    for (unsigned b = 0; b < 32; b++)
        if ((any >> b) & 1u && lp_token_scopes_allow(have, (lp_scopes)1u << b))
            return true;
    return false;
}

/* lp_auth_require and lp_auth_require_any: every scope of `need` and, when
 * `any` is not 0, one of the scopes of `any`. */
static bool require(lp_http_request *rq, lp_service *svc, lp_scopes need, lp_scopes any,
                    lp_auth *out)
{
    memset(out, 0, sizeof *out);
    lp_error err;
    lp_error_clear(&err);
    lp_token_parsed tp;
    lp_status st = lp_token_parse_bearer(lp_http_header(rq, "Authorization"), &tp, &err);
    if (st) {
        refuse_401(rq, NULL, st == LP_ERR_NOT_FOUND
                                 ? "no Authorization header (expected \"Bearer <token>\")"
                                 : err.msg);
        return false;
    }
    lp_db *db = NULL;
    if (lp_service_db_acquire(svc, &db, &err)) {
        lp_token_wipe(&tp, sizeof tp);
        lp_http_respond_error(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                              "database unavailable: %s", err.msg);
        return false;
    }
    lp_db_token tok = {0};
    lp_token_record rec = {0};
    const lp_token_record *recp = NULL;
    st = lp_db_token_find_by_id(db, tp.id, &tok, &err);
    if (st && st != LP_ERR_NOT_FOUND) {
        lp_service_db_release(svc, db);
        lp_token_wipe(&tp, sizeof tp);
        lp_log_event(lp_http_log(rq), LP_LOG_ERROR, "token lookup failed",
                     json_pack("{s:s,s:s}", "request_id", lp_http_request_id(rq), "error",
                               err.msg));
        lp_http_respond_error(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                              "token lookup failed");
        return false;
    }
    if (!st && tok.revoked_at == 0) {
        if (record_of(&tok, &rec))
            recp = &rec;
        else
            lp_log_event(lp_http_log(rq), LP_LOG_ERROR, "damaged token record",
                         json_pack("{s:s}", "token_id", tok.id));
    }
    lp_error_clear(&err);
    st = lp_token_verify(recp, &tp, &err);
    char id[LP_TOKEN_ID_LEN + 1];
    memcpy(id, tp.id, sizeof id);
    lp_token_wipe(&tp, sizeof tp);
    if (st) {
        lp_service_db_release(svc, db);
        lp_db_token_free(&tok);
        if (st == LP_ERR_BAD_SIGNATURE)
            refuse_401(rq, id, err.msg);
        else
            lp_http_respond_error(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                                  "token %s: cannot be verified", id);
        return false;
    }
    int64_t now = (int64_t)time(NULL);
    if (tok.last_used_at != now && lp_db_token_touch(db, id, now, &err))
        lp_log_event(lp_http_log(rq), LP_LOG_WARN, "token last_used_at not recorded",
                     json_pack("{s:s,s:s}", "token_id", id, "error", err.msg));
    lp_service_db_release(svc, db);
    lp_db_token_free(&tok);
    if (!lp_token_scopes_allow(rec.scopes, need)) {
        char lack[LP_SCOPES_TEXT_SIZE];
        missing_scopes(rec.scopes, need, lack, sizeof lack);
        char msg[256];
        snprintf(msg, sizeof msg, "token %s lacks the scope '%s' that %s %s needs", id, lack,
                 lp_http_method(rq), lp_http_path(rq));
        log_refusal(rq, 403, id, msg);
        lp_http_respond_error(rq, MHD_HTTP_FORBIDDEN, "forbidden", "%s", msg);
        return false;
    }
    if (!allows_any(rec.scopes, any)) {
        char names[LP_SCOPES_TEXT_SIZE + 64];
        any_names(any, names, sizeof names);
        char msg[384];
        snprintf(msg, sizeof msg, "token %s lacks the scope %s that %s %s needs", id, names,
                 lp_http_method(rq), lp_http_path(rq));
        log_refusal(rq, 403, id, msg);
        lp_http_respond_error(rq, MHD_HTTP_FORBIDDEN, "forbidden", "%s", msg);
        return false;
    }
    memcpy(out->token_id, id, sizeof out->token_id);
    out->scopes = rec.scopes;
    return true;
}

bool lp_auth_require(lp_http_request *rq, lp_service *svc, lp_scopes need, lp_auth *out)
{
    return require(rq, svc, need, 0, out);
}

bool lp_auth_require_any(lp_http_request *rq, lp_service *svc, lp_scopes any, lp_auth *out)
{
    return require(rq, svc, 0, any, out);
}
