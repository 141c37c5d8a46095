/*
 * api.h — the management API under /api/v1 and the public blob route
 * (internal).  docs/api.md is the reference of every route.
 *
 * One file per noun registers and answers its routes:
 *     api_apps.c      apps and channels
 *     api_releases.c  releases: list, show, publish (from an upload), rollback
 *     api_uploads.c   resumable uploads
 *     api_tokens.c    tokens and whoami
 *     api_signing.c   apps whose publisher signs: the root, the pending
 *                     release, its signatures (docs/signing.md)
 *     api_blobs.c     GET /v1/blobs/<sha256> (public, immutable)
 *     api_deltas.c    GET /v1/apps/<app>/deltas/<from>/<to>.json (the index of
 *                     a pair of releases) and GET /v1/deltas/<base>/<result>
 *                     (public, served like blobs)
 *     api_devices.c   POST /v1/apps/<app>/events (the device API) and the
 *                     devices and events lists
 *     api_audit.c     GET /api/v1/audit: the audit log (docs/audit.md)
 *     api_dashboard.c GET /dashboard and its files: the web dashboard, served
 *                     from memory (public; it reads /api/v1 with the
 *                     operator's token; docs/dashboard.md)
 * and shares the helpers below:
 *     api_body.c      strict JSON request bodies (a field table per route)
 *     api_common.c    answers, lp_status to HTTP, lookups, JSON objects,
 *                     lp_api_add_routes
 *
 * Every handler's `user` is the lp_service.  A management handler first
 * calls lp_auth_require with the scope its route needs, then parses its
 * body, then does the work through the service and the database (a pooled
 * connection held only for the calls that need it), and answers once.
 */
#ifndef LP_SERVER_API_H
#define LP_SERVER_API_H

#include "livepush/db.h"
#include "server/http.h"
#include "server/service.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Registers every route of docs/api.md, and the dashboard's, on `s`.
 * `svc` is borrowed and must outlive the server. */
lp_status lp_api_add_routes(lp_http_server *s, lp_service *svc, lp_error *err);

lp_status lp_api_add_app_routes(lp_http_server *s, lp_service *svc, lp_error *err);
lp_status lp_api_add_release_routes(lp_http_server *s, lp_service *svc, lp_error *err);
lp_status lp_api_add_upload_routes(lp_http_server *s, lp_service *svc, lp_error *err);
lp_status lp_api_add_token_routes(lp_http_server *s, lp_service *svc, lp_error *err);
lp_status lp_api_add_signing_routes(lp_http_server *s, lp_service *svc, lp_error *err);
lp_status lp_api_add_blob_routes(lp_http_server *s, lp_service *svc, lp_error *err);
lp_status lp_api_add_device_routes(lp_http_server *s, lp_service *svc, lp_error *err);
lp_status lp_api_add_delta_routes(lp_http_server *s, lp_service *svc, lp_error *err);
lp_status lp_api_add_audit_routes(lp_http_server *s, lp_service *svc, lp_error *err);
lp_status lp_api_add_rollout_routes(lp_http_server *s, lp_service *svc, lp_error *err);
lp_status lp_api_add_metrics_routes(lp_http_server *s, lp_service *svc, lp_error *err);
/* GET / (302 to /dashboard), GET /dashboard and GET /dashboard/<file>
 * (api_dashboard.c). */
lp_status lp_api_add_dashboard_routes(lp_http_server *s, lp_error *err);

/* Answers GET/HEAD with an immutable, content-addressed file (api_blobs.c;
 * blobs and deltas): fd is taken (closed here), `tag` is the name that
 * fixes its content (the strong ETag is "\"<tag>\""), cached for a year,
 * application/octet-stream, with Range, If-None-Match and If-Range as
 * lp_http_send_file; `what` names it in errors ("blob X").  A file that is
 * not a regular file is 404. */
void lp_api_send_immutable(lp_http_request *rq, int fd, const char *tag, const char *what);

/* ---- request bodies (api_body.c) ------------------------------------------ */

typedef enum lp_api_type {
    LP_API_STRING,       /* a JSON string without NUL */
    LP_API_INT,          /* a JSON integer (not a real, not a boolean) */
    LP_API_BOOL,
    LP_API_STRING_ARRAY, /* an array of strings */
    LP_API_OBJECT_ARRAY, /* an array of objects, each checked against `items` */
    LP_API_OBJECT,       /* an object, checked by the code that uses it */
} lp_api_type;

/* One field a body may have. */
typedef struct lp_api_field {
    const char *name;
    lp_api_type type;
    bool required;
    bool nullable;    /* null is accepted and means "absent" */
    size_t max_len;   /* strings (and array items): most bytes; 0: no bound here */
    size_t max_items; /* arrays: most items; 0: no bound here */
    const struct lp_api_field *items; /* LP_API_OBJECT_ARRAY: the members of an item */
    size_t nitems;
} lp_api_field;

/* Parses the request body as one JSON object, strictly (malformed JSON,
 * duplicate keys, trailing bytes, deep nesting: 400), and checks every
 * member against `fields`: an unknown field, a wrong type, a missing
 * required field, a string or array over its bound is answered 400 with a
 * message naming the field ("field 'xyz': unknown field").  True with *out (new reference) when the
 * body is good; false when the refusal has been answered. */
bool lp_api_parse_body(lp_http_request *rq, const lp_api_field *fields, size_t nfields,
                       json_t **out);

/* A member's string value, or NULL when absent or null. */
const char *lp_api_str(const json_t *obj, const char *name);

/* The strings of an array member into a new malloc'd array of borrowed
 * pointers (*n gets the count; NULL/0 when absent, null or empty).  False
 * only when out of memory. */
bool lp_api_str_array(const json_t *obj, const char *name, const char ***out, size_t *n);

/* ---- holding an upload for publishing (api_uploads.c) --------------------- */

typedef struct lp_api_upload_hold {
    lp_db_upload up; /* the row, read under the lock */
    int fd;          /* the partial file, locked (flock) */
} lp_api_upload_hold;

/* Locks upload `id` of app `app_id` for publishing and checks it: complete
 * (409 conflict otherwise), content sha256 equal to the declared one when
 * one was declared (422 unprocessable otherwise), not busy (409).  True with
 * *h filled; false when the refusal has been answered. */
bool lp_api_upload_take(lp_http_request *rq, lp_service *svc, const char *id, int64_t app_id,
                        lp_api_upload_hold *h);

/* Ends a hold.  consumed: the upload became a release, so its row and
 * partial file are deleted; otherwise it stays as it was (the client may
 * publish it again, e.g. with another version).  Unlocks in both cases. */
void lp_api_upload_drop(lp_service *svc, lp_api_upload_hold *h, bool consumed);

/* ---- apps whose publisher signs (api_signing.c) ---------------------------- */

/* Answers `status` with {"release": rel, "sign": {"role": "targets",
 * "signed": <the `len` canonical bytes at `signed_json` as a JSON string>,
 * "signatures": [key IDs held]}} for a release waiting for the publisher's
 * signatures.  signed_by (borrowed; NULL: none held) is a JSON array of key
 * IDs. */
void lp_api_answer_pending(lp_http_request *rq, lp_service *svc, const char *app,
                           const lp_db_release *rel, const char *signed_json, size_t len,
                           const json_t *signed_by, unsigned status);

/* Answers an lp_status of the two-step calls (prepare, sign, cancel,
 * root): as lp_api_respond_status, except that LP_ERR_STATE is 409
 * conflict (another release is pending, the release is not pending, the
 * app is signed the other way) unless the database was busy (503), and
 * LP_ERR_BAD_SIGNATURE is 422 bad_signature. */
void lp_api_respond_signing_status(lp_http_request *rq, lp_status st, const lp_error *err);

/* ---- answers (api_common.c) ----------------------------------------------- */

/* Answers `status` with `doc` as compact JSON (the reference is taken; NULL
 * answers 500) and Cache-Control: no-store. */
void lp_api_respond(lp_http_request *rq, unsigned status, json_t *doc);

/* Answers an lp_status as docs/api.md maps it:
 *     INVALID_ARG / TOO_LARGE 400 bad_request (a field out of bounds),
 *     NOT_FOUND 404 not_found, EXISTS 409 conflict, ROLLBACK 409 rollback,
 *     MALFORMED / HASH_MISMATCH / LENGTH_MISMATCH 422 unprocessable,
 *     STATE 503 unavailable (database busy), anything else 500 internal;
 * with err's message.  Internal errors are logged with the request id. */
void lp_api_respond_status(lp_http_request *rq, lp_status st, const lp_error *err);

/* A pooled database connection; false (503 answered) when none can be had. */
bool lp_api_db(lp_http_request *rq, lp_service *svc, lp_db **db);

/* Looks up the app named by route capture `param`; false (answered: 404
 * "no app 'x'", or the database error) when it does not exist. */
bool lp_api_app(lp_http_request *rq, lp_db *db, size_t param, lp_db_app *app);

/* The query argument `name` of the request, or NULL. */
const char *lp_api_query(lp_http_request *rq, const char *name);

/* JSON objects of docs/api.md (new references; NULL when out of memory).
 * `signing` is the app's "signing" field (lp_service_app_signing). */
json_t *lp_api_app_json(const lp_db_app *app, const char *signing);
json_t *lp_api_channel_json(const lp_db_channel *ch);
json_t *lp_api_token_json(const lp_db_token *tok);
json_t *lp_api_upload_json(const lp_db_upload *up, const char *app_name);

/* A JSON integer for a time, or null for 0 ("never"). */
json_t *lp_api_time_or_null(int64_t t);

#endif
