/*
 * api_releases.c — releases of an app (docs/api.md):
 *
 *     GET  /api/v1/apps/<app>/releases?channel=&before=&limit=   read
 *     GET  /api/v1/apps/<app>/releases/<version>                 read
 *     POST /api/v1/apps/<app>/releases   {"upload":id,"version":..}  upload
 *     POST /api/v1/apps/<app>/rollback   {"target":v,"channels":[..]} upload
 *
 * Both POSTs take optional targeting rules ("targeting", an object; see
 * livepush/targeting.h): they are checked (lp_targeting_canonical) before
 * anything else is done, so a bad member is a 400 naming it
 * ("field 'targeting.colour': unknown member ...") and the upload is not
 * touched.  A rollback without them keeps the restored release's rules;
 * with {} it has none.
 *
 * For an app whose publisher signs, publish and rollback only prepare: the
 * release is inserted as pending and the answer is 202 with the bytes the
 * publisher signs (lp_api_answer_pending, api_signing.c); the signatures
 * follow on POST .../releases/<version>/signatures.
 *
 * Field lengths are bounded by the body's field table, so a "too large"
 * from the publish can only be the bundle (a limit): 422 like any other
 * refused bundle.
 *
 * Publishing consumes a complete upload: the upload is held (locked and
 * checked, api_uploads.c) while lp_service_publish ingests its partial file
 * and publishes; on success the upload is deleted, on any refusal it stays
 * so the client can fix the fields and publish it again without sending
 * the bytes twice.  Ingest messages name the bundle by its server path;
 * the answer names it "upload <id>" instead.
 *
 * Listing pages by version code: "before" is exclusive, and "next_before"
 * is the code to pass for the next page (null on the last one), found by
 * asking the database for one row more than the page holds.
 */
#include "server/api.h"
#include "server/auth.h"

#include "livepush/targeting.h"
#include "tuf/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_DEFAULT 50
#define PAGE_MAX 1000
#define DEFAULT_FILE_NAME "bundle"

/* ---- GET .../releases ----------------------------------------------------------- */

typedef struct query_check {
    const char *bad; /* first unknown argument */
} query_check;

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    (void)value;
    query_check *q = cls;
    if (strcmp(key, "channel") && strcmp(key, "before") && strcmp(key, "limit")) {
        q->bad = key;
        return MHD_NO;
    }
    return MHD_YES;
}

/* A decimal integer from 1 to max; false otherwise. */
static bool parse_count(const char *s, int64_t max, int64_t *out)
{
    if (!s || !*s || strlen(s) > 18)
        return false;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > max)
        return false;
    *out = v;
    return true;
}

/* The releases of `list` (up to n) as JSON objects; NULL with *st set. */
static json_t *releases_json(lp_service *svc, lp_db *db, const char *app,
                             const lp_db_release_list *list, size_t n, lp_status *st,
                             lp_error *err)
{
    json_t *arr = json_array();
    *st = arr ? LP_OK : lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !*st && i < n && i < list->count; i++) {
        json_t *r = NULL;
        *st = lp_service_release_json(svc, db, app, &list->items[i], &r, err);
        if (!*st)
            json_array_append_new(arr, r);
    }
    if (*st) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

static void list_releases(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    if (!lp_auth_require(rq, svc, LP_SCOPE_READ, &who))
        return;
    query_check q = {0};
    MHD_get_connection_values(lp_http_connection(rq), MHD_GET_ARGUMENT_KIND, check_arg, &q);
    const char *channel = lp_api_query(rq, "channel");
    const char *before_s = lp_api_query(rq, "before");
    const char *limit_s = lp_api_query(rq, "limit");
    int64_t before = 0, limit = PAGE_DEFAULT;
    if (q.bad) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "query '%.64s': unknown parameter (known: channel, before, limit)",
                              q.bad);
        return;
    }
    if (before_s && !parse_count(before_s, INT64_MAX / 10, &before)) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "query 'before': expected a version code of 1 or more");
        return;
    }
    if (limit_s && !parse_count(limit_s, PAGE_MAX, &limit)) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "query 'limit': expected a number from 1 to %d", PAGE_MAX);
        return;
    }
    lp_db *db = NULL;
    lp_db_app app = {0};
    if (!lp_api_db(rq, svc, &db))
        return;
    if (!lp_api_app(rq, db, 0, &app)) {
        lp_service_db_release(svc, db);
        return;
    }
    lp_error err;
    lp_error_clear(&err);
    lp_db_release_list list = {0};
    lp_status st = lp_db_release_list_by_app(db, app.id, channel && *channel ? channel : NULL,
                                             before, (size_t)limit + 1, &list, &err);
    if (st == LP_ERR_INVALID_ARG)
        lp_error_prefix(&err, st, "query 'channel'");
    json_t *arr = st ? NULL : releases_json(svc, db, app.name, &list, (size_t)limit, &st, &err);
    lp_service_db_release(svc, db);
    if (st) {
        lp_api_respond_status(rq, st, &err);
    } else {
        json_t *next = list.count > (size_t)limit
                           ? json_integer(list.items[limit - 1].version_code)
                           : json_null();
        lp_api_respond(rq, MHD_HTTP_OK,
                       json_pack("{s:o,s:o}", "releases", arr, "next_before", next));
    }
    lp_db_release_list_free(&list);
    lp_db_app_free(&app);
}

/* ---- GET .../releases/<version> ----------------------------------------------- */

/* Answers {"release": ...} for release `id` (201/200).  A published
 * release of an app whose publisher signs also gets its approvals (the
 * releases list leaves them null: each costs a few metadata reads). */
static void answer_release(lp_http_request *rq, lp_service *svc, const char *app,
                           const lp_db_release *rel, unsigned status)
{
    lp_db *db = NULL;
    if (!lp_api_db(rq, svc, &db))
        return;
    lp_error err;
    json_t *r = NULL, *appr = NULL;
    lp_status st = lp_service_release_json(svc, db, app, rel, &r, &err);
    lp_service_db_release(svc, db);
    if (!st && (st = lp_service_release_approvals(svc, app, rel, true, &appr, &err)))
        json_decref(r);
    if (!st && appr)
        json_object_set_new(r, "approvals", appr);
    if (st)
        lp_api_respond_status(rq, st, &err);
    else
        lp_api_respond(rq, status, json_pack("{s:o}", "release", r));
}

static void show_release(lp_http_request *rq, void *user)
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
    const char *version = lp_http_param(rq, 1);
    lp_error err;
    lp_db_release rel = {0};
    lp_status st = lp_db_release_get_by_version(db, app.id, version, &rel, &err);
    lp_service_db_release(svc, db);
    if (st == LP_ERR_NOT_FOUND || st == LP_ERR_INVALID_ARG)
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found",
                              "app '%s' has no release '%.64s'", app.name, version);
    else if (st)
        lp_api_respond_status(rq, st, &err);
    else
        answer_release(rq, svc, app.name, &rel, MHD_HTTP_OK);
    lp_db_release_free(&rel);
    lp_db_app_free(&app);
}

/* ---- POST .../releases ------------------------------------------------------------ */

static const lp_api_field publish_fields[] = {
    {"upload", LP_API_STRING, .required = true, .max_len = LP_DB_ID_MAX},
    {"version", LP_API_STRING, .required = true, .max_len = LP_DB_VERSION_MAX},
    {"version_code", LP_API_INT, .nullable = true},
    {"channels", LP_API_STRING_ARRAY, .nullable = true, .max_len = LP_DB_NAME_MAX,
     .max_items = LP_DB_CHANNELS_MAX},
    {"runtime_version", LP_API_STRING, .nullable = true, .max_len = LP_DB_VERSION_MAX},
    {"platform", LP_API_STRING, .nullable = true, .max_len = LP_DB_PLATFORM_MAX},
    {"arch", LP_API_STRING, .nullable = true, .max_len = LP_DB_PLATFORM_MAX},
    {"mandatory", LP_API_BOOL, .nullable = true},
    {"notes", LP_API_STRING, .nullable = true, .max_len = LP_DB_NOTES_MAX},
    {"kind", LP_API_STRING, .nullable = true, .max_len = 16},
    {"file_name", LP_API_STRING, .nullable = true, .max_len = LP_MANIFEST_MAX_PATH},
    {"targeting", LP_API_OBJECT, .nullable = true},
    {"rollout_percent_bp", LP_API_INT, .nullable = true},
};

/* The body's "targeting" object: *given when it is there (not null), and
 * *out its canonical text (NULL when it is {}).  False when it is refused
 * (answered: 400 naming the member). */
static bool targeting_arg(lp_http_request *rq, const json_t *body, bool *given, char **out)
{
    *out = NULL;
    const json_t *t = json_object_get(body, "targeting");
    *given = json_is_object(t);
    if (!*given)
        return true;
    char *text = NULL;
    size_t len = 0;
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_json_dump_compact(t, &text, &len, &err);
    if (!st)
        st = lp_targeting_canonical(text, len, out, &err);
    free(text);
    if (!st)
        return true;
    /* The message is "<member>: <what is wrong>". */
    char *sep = strstr(err.msg, ": ");
    if ((st == LP_ERR_INVALID_ARG || st == LP_ERR_TOO_LARGE) && sep &&
        !strncmp(err.msg, "targeting", 9)) {
        *sep = '\0';
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request", "field '%s': %s", err.msg,
                              sep + 2);
    } else {
        lp_api_respond_status(rq, st, &err);
    }
    return false;
}

/* Replaces the first `from` in err's message with `to`. */
static void rename_in_message(lp_error *err, const char *from, const char *to)
{
    char *hit = strstr(err->msg, from);
    if (!hit)
        return;
    char rest[LP_ERROR_MSG_MAX];
    snprintf(rest, sizeof rest, "%s", hit + strlen(from));
    snprintf(hit, sizeof err->msg - (size_t)(hit - err->msg), "%s%s", to, rest);
}

/* Reads the body into fields/opts (f->targeting is the caller's to free);
 * false with the 400 answered. */
static bool publish_args(lp_http_request *rq, const json_t *body, lp_release_fields *f,
                         lp_ingest_opts *io)
{
    bool given;
    char *targeting = NULL;
    if (!targeting_arg(rq, body, &given, &targeting))
        return false;
    f->targeting = targeting;
    const char *kind = lp_api_str(body, "kind");
    json_t *code = json_object_get(body, "version_code");
    f->version = lp_api_str(body, "version");
    f->version_code = json_is_integer(code) ? json_integer_value(code) : 0;
    f->runtime_version = lp_api_str(body, "runtime_version");
    f->platform = lp_api_str(body, "platform");
    f->arch = lp_api_str(body, "arch");
    f->mandatory = json_is_true(json_object_get(body, "mandatory"));
    f->notes = lp_api_str(body, "notes");
    io->file_name = lp_api_str(body, "file_name");
    if (!io->file_name)
        io->file_name = DEFAULT_FILE_NAME;
    json_t *bp = json_object_get(body, "rollout_percent_bp");
    f->staged = json_is_integer(bp);
    f->rollout_bp = f->staged ? (int)json_integer_value(bp) : 0;
    if (f->staged && (json_integer_value(bp) < 0 || json_integer_value(bp) > LP_DB_BP_MAX)) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "field 'rollout_percent_bp': expected 0..10000 basis points");
        free(targeting);
        f->targeting = NULL;
        return false;
    }
    if (json_is_integer(code) && f->version_code < 1) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "field 'version_code': must be 1 or more");
        free(targeting);
        f->targeting = NULL;
        return false;
    }
    if (!kind || !strcmp(kind, "auto"))
        io->kind = LP_INGEST_AUTO;
    else if (!strcmp(kind, "archive"))
        io->kind = LP_INGEST_ARCHIVE;
    else if (!strcmp(kind, "file"))
        io->kind = LP_INGEST_FILE;
    else {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "field 'kind': expected \"auto\", \"archive\" or \"file\"");
        free(targeting);
        f->targeting = NULL;
        return false;
    }
    return true;
}

static void publish(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    json_t *body = NULL;
    if (!lp_auth_require(rq, svc, LP_SCOPE_UPLOAD, &who) ||
        !lp_api_parse_body(rq, publish_fields, sizeof publish_fields / sizeof publish_fields[0],
                           &body))
        return;
    lp_release_fields f = {.created_by = who.token_id};
    lp_ingest_opts io = {.limits = lp_service_limits(svc)};
    const char **chans = NULL;
    lp_db *db = NULL;
    lp_db_app app = {0};
    if (!publish_args(rq, body, &f, &io)) {
        json_decref(body);
        return;
    }
    char *targeting = (char *)f.targeting;
    if (!lp_api_db(rq, svc, &db)) {
        free(targeting);
        json_decref(body);
        return;
    }
    bool have_app = lp_api_app(rq, db, 0, &app);
    lp_service_db_release(svc, db);
    lp_api_upload_hold hold;
    if (!have_app || !lp_api_upload_take(rq, svc, lp_api_str(body, "upload"), app.id, &hold)) {
        free(targeting);
        lp_db_app_free(&app);
        json_decref(body);
        return;
    }
    lp_error err;
    lp_error_clear(&err);
    lp_db_release rel = {0};
    lp_status st = lp_api_str_array(body, "channels", &chans, &f.n_channels)
                       ? LP_OK
                       : lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    f.channels = chans;
    bool two_step = lp_service_app_publisher_signed(svc, app.name);
    char *canon = NULL;
    size_t canon_len = 0;
    if (!st && two_step)
        st = lp_service_publish_prepare(svc, app.name, hold.up.path, &io, &f, &rel, &canon,
                                        &canon_len, &err);
    else if (!st)
        st = lp_service_publish(svc, app.name, hold.up.path, &io, &f, &rel, &err);
    if (st) {
        char name[96], bundle[LP_DB_PATH_MAX + 16];
        snprintf(name, sizeof name, "upload %s", hold.up.id);
        snprintf(bundle, sizeof bundle, "bundle %s", hold.up.path);
        rename_in_message(&err, bundle, name);
        rename_in_message(&err, hold.up.path, name);
    }
    lp_api_upload_drop(svc, &hold, st == LP_OK);
    if (st == LP_ERR_TOO_LARGE) /* the fields were bounded above: the bundle is */
        lp_http_respond_error(rq, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable", "%s",
                              err.msg);
    else if (st && two_step)
        lp_api_respond_signing_status(rq, st, &err);
    else if (st)
        lp_api_respond_status(rq, st, &err);
    else if (two_step)
        lp_api_answer_pending(rq, svc, app.name, &rel, canon, canon_len, NULL,
                              MHD_HTTP_ACCEPTED);
    else
        answer_release(rq, svc, app.name, &rel, MHD_HTTP_CREATED);
    free(canon);
    free(targeting);
    lp_db_release_free(&rel);
    free(chans);
    lp_db_app_free(&app);
    json_decref(body);
}

/* ---- POST .../rollback -------------------------------------------------------------- */

static const lp_api_field rollback_fields[] = {
    {"target", LP_API_STRING, .required = true, .max_len = LP_DB_VERSION_MAX},
    {"channels", LP_API_STRING_ARRAY, .nullable = true, .max_len = LP_DB_NAME_MAX,
     .max_items = LP_DB_CHANNELS_MAX},
    {"targeting", LP_API_OBJECT, .nullable = true},
};

static void rollback(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    json_t *body = NULL;
    bool given = false;
    char *targeting = NULL;
    if (!lp_auth_require(rq, svc, LP_SCOPE_UPLOAD, &who) ||
        !lp_api_parse_body(rq, rollback_fields,
                           sizeof rollback_fields / sizeof rollback_fields[0], &body))
        return;
    if (!targeting_arg(rq, body, &given, &targeting)) {
        json_decref(body);
        return;
    }
    /* given as {}: no rules; not given: the restored release's */
    const char *rules = targeting ? targeting : given ? "{}" : NULL;
    const char *app = lp_http_param(rq, 0);
    const char **chans = NULL;
    size_t n = 0;
    lp_error err;
    lp_error_clear(&err);
    lp_db_release rel = {0};
    lp_status st = LP_OK;
    if (!lp_api_str_array(body, "channels", &chans, &n))
        st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    bool two_step = lp_service_app_publisher_signed(svc, app);
    char *canon = NULL;
    size_t canon_len = 0;
    if (!st && two_step)
        st = lp_service_rollback_prepare(svc, app, lp_api_str(body, "target"), chans, n, rules,
                                         who.token_id, &rel, &canon, &canon_len, &err);
    else if (!st)
        st = lp_service_rollback(svc, app, lp_api_str(body, "target"), chans, n, rules,
                                 who.token_id, &rel, &err);
    if (st && two_step)
        lp_api_respond_signing_status(rq, st, &err);
    else if (st)
        lp_api_respond_status(rq, st, &err);
    else if (two_step)
        lp_api_answer_pending(rq, svc, app, &rel, canon, canon_len, NULL, MHD_HTTP_ACCEPTED);
    else
        answer_release(rq, svc, app, &rel, MHD_HTTP_CREATED);
    free(canon);
    free(targeting);
    lp_db_release_free(&rel);
    free(chans);
    json_decref(body);
}

lp_status lp_api_add_release_routes(lp_http_server *s, lp_service *svc, lp_error *err)
{
    lp_status st =
        lp_http_server_route(s, "GET", "/api/v1/apps/*/releases", list_releases, svc, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/api/v1/apps/*/releases/*", show_release, svc, err);
    if (!st)
        st = lp_http_server_route(s, "POST", "/api/v1/apps/*/releases", publish, svc, err);
    if (!st)
        st = lp_http_server_route(s, "POST", "/api/v1/apps/*/rollback", rollback, svc, err);
    return st;
}
