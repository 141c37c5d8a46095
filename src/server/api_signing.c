/*
 * api_signing.c — apps whose publisher signs its releases (docs/signing.md,
 * docs/api.md):
 *
 *     PUT    /api/v1/apps/<app>/root                        admin   the first root, made offline
 *     GET    /api/v1/apps/<app>/pending                     read    the release waiting for
 *                                                                   signatures, and its bytes
 *     DELETE /api/v1/apps/<app>/pending[?version=V]         upload  cancel it
 *     POST   /api/v1/apps/<app>/releases/<v>/signatures     upload  signatures (approvals);
 *                                                           or      published once they
 *                                                           approve reach the threshold
 *
 * The app is begun with POST /api/v1/apps {"signing":"publisher"}
 * (api_apps.c), and a release is prepared by the usual POST .../releases
 * and POST .../rollback (api_releases.c), which answer 202 with the bytes
 * to sign (lp_api_answer_pending, here) for such an app.
 *
 * Release objects of such an app carry "approvals" (how many of the
 * targets role's keys have signed, how many the threshold requires, and
 * which; lp_service_release_approvals): in every answer for a pending
 * release, and here for the release just published too.
 *
 * The bytes to sign travel as one JSON string ("signed"): the canonical
 * JSON exactly as the server will publish it, which the client turns back
 * into bytes (a JSON string carries any UTF-8, control characters
 * included) and signs as they are.
 *
 * Statuses.  The service says LP_ERR_STATE both for "not now" (another
 * release is pending, this one is not, the app is signed the other way),
 * which is a 409 here, and for a busy database (503); the two are told
 * apart by the database's message.  LP_ERR_BAD_SIGNATURE is a signature
 * refused (422 bad_signature, naming the key ID) unless the service says
 * the signatures were all valid and kept but are fewer than the targets
 * threshold (lp_sign_progress): then 409 "threshold", with what is held
 * and how many more are needed, so the next key holder can sign.
 *
 * Audit entries (service.h): the root installed, signatures kept (with or
 * without reaching the threshold) and the release they published, and a
 * pending release withdrawn, each right after the service committed it;
 * a prepared release's entry is the service's own.
 */
#include "server/api.h"
#include "server/auth.h"

#include "livepush/hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROOT_MAX (512u * 1024)
#define SIGS_MAX 1024
#define KEYID_MAX 64
#define SIG_HEX_MAX 8192

/* ---- shared answers ---------------------------------------------------------------- */

void lp_api_respond_signing_status(lp_http_request *rq, lp_status st, const lp_error *err)
{
    const char *msg = err && err->msg[0] ? err->msg : lp_status_name(st);
    if (st == LP_ERR_STATE && !strstr(msg, "database is busy"))
        lp_http_respond_error(rq, MHD_HTTP_CONFLICT, "conflict", "%s", msg);
    else if (st == LP_ERR_BAD_SIGNATURE)
        lp_http_respond_error(rq, MHD_HTTP_UNPROCESSABLE_CONTENT, "bad_signature", "%s", msg);
    else
        lp_api_respond_status(rq, st, err);
}

/* {"role":"targets","signed":..,"signatures":[..]} or NULL (out of memory,
 * or bytes that are not UTF-8). */
static json_t *sign_json(const char *signed_json, size_t len, const json_t *signed_by)
{
    json_t *text = json_stringn(signed_json, len);
    json_t *ids = signed_by ? json_deep_copy(signed_by) : json_array();
    if (!text || !ids) {
        json_decref(text);
        json_decref(ids);
        return NULL;
    }
    return json_pack("{s:s,s:o,s:o}", "role", "targets", "signed", text, "signatures", ids);
}

/* The release as JSON with its approvals (a published one's too), or NULL
 * with the failure answered. */
static json_t *release_json(lp_http_request *rq, lp_service *svc, const char *app,
                            const lp_db_release *rel)
{
    lp_db *db = NULL;
    if (!lp_api_db(rq, svc, &db))
        return NULL;
    lp_error err;
    lp_error_clear(&err);
    json_t *r = NULL, *appr = NULL;
    lp_status st = lp_service_release_json(svc, db, app, rel, &r, &err);
    lp_service_db_release(svc, db);
    if (!st && (st = lp_service_release_approvals(svc, app, rel, true, &appr, &err))) {
        json_decref(r);
        r = NULL;
    }
    if (!st && appr)
        json_object_set_new(r, "approvals", appr);
    if (st) {
        lp_api_respond_status(rq, st, &err);
        return NULL;
    }
    return r;
}

void lp_api_answer_pending(lp_http_request *rq, lp_service *svc, const char *app,
                           const lp_db_release *rel, const char *signed_json, size_t len,
                           const json_t *signed_by, unsigned status)
{
    json_t *r = release_json(rq, svc, app, rel);
    if (!r)
        return;
    json_t *sign = sign_json(signed_json, len, signed_by);
    if (!sign) {
        json_decref(r);
        lp_http_respond_error(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                              "release %s: the bytes to sign could not be sent", rel->version);
        return;
    }
    lp_api_respond(rq, status, json_pack("{s:o,s:o}", "release", r, "sign", sign));
}

/* ---- PUT .../root ------------------------------------------------------------------- */

static const lp_api_field root_fields[] = {
    {"root", LP_API_STRING, .required = true, .max_len = ROOT_MAX},
};

static void put_root(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    json_t *body = NULL;
    if (!lp_auth_require(rq, svc, LP_SCOPE_ADMIN, &who) ||
        !lp_api_parse_body(rq, root_fields, 1, &body))
        return;
    const char *name = lp_http_param(rq, 0);
    json_t *root = json_object_get(body, "root");
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_service_app_set_root(svc, name, json_string_value(root),
                                           json_string_length(root), &err);
    if (!st) {
        uint8_t d[LP_HASH_MAX_LEN];
        char hex[65] = "", actor[LP_DB_AUDIT_ACTOR_MAX + 1];
        if (lp_hash_buf(LP_HASH_SHA256, json_string_value(root), json_string_length(root), d,
                        NULL) == LP_OK)
            lp_hex_encode(d, LP_SHA256_LEN, hex);
        lp_service_audit_actor(who.token_id, actor);
        lp_service_audit(svc, actor, "app.root_installed", name, NULL,
                         json_pack("{s:s,s:s}", "signing", "publisher", "root_sha256", hex),
                         NULL);
    }
    json_decref(body);
    if (st == LP_ERR_INVALID_ARG || st == LP_ERR_MALFORMED || st == LP_ERR_BAD_SIGNATURE ||
        st == LP_ERR_VERSION_MISMATCH || st == LP_ERR_EXPIRED || st == LP_ERR_UNSUPPORTED ||
        st == LP_ERR_TOO_LARGE) {
        /* the root (or the name) is refused; nothing was written */
        lp_http_respond_error(rq, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable", "%s", err.msg);
        return;
    }
    if (st) {
        lp_api_respond_signing_status(rq, st, &err);
        return;
    }
    lp_db *db = NULL;
    lp_db_app app = {0};
    if (!lp_api_db(rq, svc, &db))
        return;
    bool found = lp_api_app(rq, db, 0, &app);
    lp_service_db_release(svc, db);
    if (found)
        lp_api_respond(rq, MHD_HTTP_CREATED,
                       json_pack("{s:o}", "app", lp_api_app_json(&app, "publisher")));
    lp_db_app_free(&app);
}

/* ---- GET .../pending ------------------------------------------------------------------ */

static void get_pending(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    if (!lp_auth_require(rq, svc, LP_SCOPE_READ, &who))
        return;
    const char *app = lp_http_param(rq, 0);
    lp_error err;
    lp_error_clear(&err);
    lp_db_release rel = {0};
    char *canon = NULL;
    size_t len = 0;
    json_t *signed_by = NULL;
    lp_status st = lp_service_publish_pending(svc, app, &rel, &canon, &len, &signed_by, &err);
    if (st)
        lp_api_respond_signing_status(rq, st, &err);
    else
        lp_api_answer_pending(rq, svc, app, &rel, canon, len, signed_by, MHD_HTTP_OK);
    json_decref(signed_by);
    free(canon);
    lp_db_release_free(&rel);
}

/* ---- DELETE .../pending ----------------------------------------------------------------- */

typedef struct query_check {
    const char *bad; /* first unknown argument */
} query_check;

static enum MHD_Result only_version(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    (void)value;
    query_check *q = cls;
    if (strcmp(key, "version") != 0) {
        q->bad = key;
        return MHD_NO;
    }
    return MHD_YES;
}

static void cancel_pending(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    if (!lp_auth_require(rq, svc, LP_SCOPE_UPLOAD, &who))
        return;
    query_check q = {0};
    MHD_get_connection_values(lp_http_connection(rq), MHD_GET_ARGUMENT_KIND, only_version, &q);
    if (q.bad) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "query '%.64s': unknown parameter (known: version)", q.bad);
        return;
    }
    const char *app = lp_http_param(rq, 0);
    const char *version = lp_api_query(rq, "version");
    lp_error err;
    lp_error_clear(&err);
    lp_db_release pend = {0};
    lp_status st = LP_OK;
    if (!version || !*version) {
        /* the one pending release, whichever it is */
        st = lp_service_publish_pending(svc, app, &pend, NULL, NULL, NULL, &err);
        version = pend.version;
    }
    char *v = !st ? strdup(version) : NULL;
    if (!st && !v)
        st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    lp_db_release_free(&pend);
    if (!st)
        st = lp_service_publish_cancel(svc, app, v, &err);
    if (st) {
        free(v);
        lp_api_respond_signing_status(rq, st, &err);
        return;
    }
    char actor[LP_DB_AUDIT_ACTOR_MAX + 1];
    lp_service_audit_actor(who.token_id, actor);
    lp_service_audit(svc, actor, "release.withdrawn", app, v,
                     json_pack("{s:s,s:s}", "version", v, "was", "pending"), NULL);
    lp_db *db = NULL;
    lp_db_app a = {0};
    lp_db_release rel = {0};
    json_t *r = NULL;
    if (lp_api_db(rq, svc, &db)) {
        if (lp_api_app(rq, db, 0, &a)) {
            st = lp_db_release_get_by_version(db, a.id, v, &rel, &err);
            if (!st)
                st = lp_service_release_json(svc, db, a.name, &rel, &r, &err);
            if (st)
                lp_api_respond_status(rq, st, &err);
            else
                lp_api_respond(rq, MHD_HTTP_OK, json_pack("{s:o}", "release", r));
        }
        lp_service_db_release(svc, db);
    }
    lp_db_release_free(&rel);
    lp_db_app_free(&a);
    free(v);
}

/* ---- POST .../releases/<version>/signatures --------------------------------------------- */

static const lp_api_field signature_item_fields[] = {
    {"keyid", LP_API_STRING, .required = true, .max_len = KEYID_MAX},
    {"sig", LP_API_STRING, .required = true, .max_len = SIG_HEX_MAX},
};

static const lp_api_field signatures_fields[] = {
    {"signatures", LP_API_OBJECT_ARRAY, .required = true, .max_items = SIGS_MAX,
     .items = signature_item_fields, .nitems = 2},
};

/* 409 "threshold": the signatures sent were kept; more are needed. */
static void answer_short(lp_http_request *rq, lp_service *svc, const char *app,
                         const char *version, const lp_sign_progress *pr)
{
    lp_error err;
    lp_error_clear(&err);
    lp_db_release rel = {0};
    json_t *held = NULL;
    lp_status st = lp_service_publish_pending(svc, app, &rel, NULL, NULL, &held, &err);
    json_t *r = st ? NULL : release_json(rq, svc, app, &rel);
    if (st)
        lp_api_respond_signing_status(rq, st, &err);
    if (r) {
        size_t n = json_array_size(held);
        unsigned needed = pr->threshold > n ? pr->threshold - (unsigned)n : 1;
        char msg[512];
        snprintf(msg, sizeof msg,
                 "release %s stays pending: role targets needs %u signature%s by its release "
                 "keys and %zu %s held: %u more needed",
                 version, pr->threshold, pr->threshold == 1 ? "" : "s", n,
                 n == 1 ? "is" : "are", needed);
        lp_api_respond(rq, MHD_HTTP_CONFLICT,
                       json_pack("{s:{s:s,s:s},s:o,s:{s:s,s:I,s:I,s:O}}", "error", "code",
                                 "threshold", "message", msg, "release", r, "sign", "role",
                                 "targets", "threshold", (json_int_t)pr->threshold, "needed",
                                 (json_int_t)needed, "signatures", held));
    }
    json_decref(held);
    lp_db_release_free(&rel);
}

/* The audit entries of a signatures call that was kept: the signatures
 * attached (their key IDs, how many the release holds and needs), and the
 * release published when they reached the threshold (rel not NULL). */
static void audit_signed(lp_service *svc, const lp_auth *who, const char *app,
                         const char *version, const char *const *keyids, size_t n,
                         const lp_sign_progress *pr, const lp_db_release *rel)
{
    char actor[LP_DB_AUDIT_ACTOR_MAX + 1];
    lp_service_audit_actor(who->token_id, actor);
    json_t *ids = json_array();
    for (size_t i = 0; ids && i < n; i++)
        json_array_append_new(ids, json_string(keyids[i]));
    lp_service_audit(svc, actor, "release.signatures_added", app, version,
                     json_pack("{s:o*,s:I,s:I,s:b}", "keyids", ids, "held",
                               (json_int_t)pr->held, "threshold", (json_int_t)pr->threshold,
                               "published", rel != NULL),
                     NULL);
    if (!rel)
        return;
    json_t *d = lp_service_audit_release(rel);
    if (d)
        json_object_set_new(d, "signatures", json_integer((json_int_t)pr->held));
    lp_service_audit(svc, actor, "release.published", app, version, d, NULL);
}

static void post_signatures(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    json_t *body = NULL;
    /* the uploader's token, or an approver's that may do nothing else */
    if (!lp_auth_require_any(rq, svc, LP_SCOPE_UPLOAD | LP_SCOPE_APPROVE, &who) ||
        !lp_api_parse_body(rq, signatures_fields, 1, &body))
        return;
    const char *app = lp_http_param(rq, 0);
    const char *version = lp_http_param(rq, 1);
    json_t *arr = json_object_get(body, "signatures");
    size_t n = json_array_size(arr);
    const char **keyids = calloc(n ? n : 1, sizeof *keyids);
    const char **sigs = calloc(n ? n : 1, sizeof *sigs);
    lp_error err;
    lp_error_clear(&err);
    lp_status st = keyids && sigs ? LP_OK : lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < n; i++) {
        keyids[i] = lp_api_str(json_array_get(arr, i), "keyid");
        sigs[i] = lp_api_str(json_array_get(arr, i), "sig");
    }
    lp_sign_progress pr = {0};
    lp_db_release rel = {0};
    if (!st)
        st = lp_service_publish_sign_ex(svc, app, version, keyids, sigs, n, &pr, &rel, &err);
    if (!st || (st == LP_ERR_BAD_SIGNATURE && pr.short_of_threshold))
        audit_signed(svc, &who, app, version, keyids, n, &pr, st ? NULL : &rel);
    if (st == LP_ERR_BAD_SIGNATURE && pr.short_of_threshold) {
        answer_short(rq, svc, app, version, &pr);
    } else if (st) {
        lp_api_respond_signing_status(rq, st, &err);
    } else {
        json_t *r = release_json(rq, svc, app, &rel);
        if (r)
            lp_api_respond(rq, MHD_HTTP_CREATED, json_pack("{s:o}", "release", r));
    }
    lp_db_release_free(&rel);
    free(keyids);
    free(sigs);
    json_decref(body);
}

lp_status lp_api_add_signing_routes(lp_http_server *s, lp_service *svc, lp_error *err)
{
    lp_status st = lp_http_server_route(s, "PUT", "/api/v1/apps/*/root", put_root, svc, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/api/v1/apps/*/pending", get_pending, svc, err);
    if (!st)
        st = lp_http_server_route(s, "DELETE", "/api/v1/apps/*/pending", cancel_pending, svc,
                                  err);
    if (!st)
        st = lp_http_server_route(s, "POST", "/api/v1/apps/*/releases/*/signatures",
                                  post_signatures, svc, err);
    return st;
}
