/*
 * api_deltas.c — deltas between releases over HTTP (docs/api.md):
 *
 *     GET /v1/apps/<app>/deltas/<from>/<to>.json   the index of one pair
 *     GET /v1/deltas/<base>/<result>               the bytes of one delta
 *
 * Both are public like the TUF repository and the blobs: a delta names its
 * base and result by SHA-256 and applying it checks both, so what a device
 * installs is still only what the signed manifest names.  The paths are
 * plain file paths so that a static mirror can serve the same tree.
 *
 * The index is read from the database: 404 when the pair was not planned
 * (unknown app or release, a release that is not among the last K of a
 * channel of the other, deltas disabled); else the deltas made so far
 * ("made" only, sorted by result) and whether the pair is finished.
 * Both version codes and both digests are checked (digits, 64 lower-case
 * hex) before any lookup.  Delta bytes are served exactly like a blob
 * (lp_api_send_immutable: Range, ETag, sendfile), the ETag being
 * "<base>-<result>".
 */
#include "server/api.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A version code: 1..18 decimal digits, no sign or leading zero, ending at
 * `end` (or the NUL). */
static bool parse_code(const char *s, const char *end, int64_t *out)
{
    size_t n = end ? (size_t)(end - s) : strlen(s);
    if (n == 0 || n > 18 || s[0] == '0')
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static void get_index(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    const char *from_s = lp_http_param(rq, 1), *to_s = lp_http_param(rq, 2);
    const char *dot = to_s ? strrchr(to_s, '.') : NULL;
    int64_t from = 0, to = 0;
    if (!from_s || !dot || strcmp(dot, ".json") || !parse_code(from_s, NULL, &from) ||
        !parse_code(to_s, dot, &to)) {
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found",
                              "a delta index is /v1/apps/<app>/deltas/<from version code>/"
                              "<to version code>.json");
        return;
    }
    lp_db *db = NULL;
    if (!lp_api_db(rq, svc, &db))
        return;
    lp_db_app app = {0};
    if (!lp_api_app(rq, db, 0, &app)) {
        lp_service_db_release(svc, db);
        return;
    }
    lp_error err;
    lp_error_clear(&err);
    lp_db_delta_pair pair;
    lp_db_delta_list list = {0};
    lp_status st = lp_db_delta_pair_get(db, app.id, from, to, &pair, &err);
    if (!st)
        st = lp_db_delta_list_pair(db, pair.from_release_id, pair.to_release_id, LP_DB_DELTA_MADE,
                              &list, &err);
    lp_service_db_release(svc, db);
    if (st == LP_ERR_NOT_FOUND) {
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found",
                              "app %s has no deltas from release %lld to %lld", app.name,
                              (long long)from, (long long)to);
        lp_db_app_free(&app);
        return;
    }
    lp_db_app_free(&app);
    if (st) {
        lp_api_respond_status(rq, st, &err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < list.count; i++) {
        json_t *e = json_pack("{s:s,s:s,s:I}", "result", list.items[i].result_sha256, "base",
                              list.items[i].base_sha256, "size", (json_int_t)list.items[i].size);
        if (!e || json_array_append_new(arr, e)) {
            json_decref(arr);
            arr = NULL;
        }
    }
    lp_db_delta_list_free(&list);
    json_t *doc = arr ? json_pack("{s:I,s:I,s:b,s:o}", "from", (json_int_t)from, "to",
                                  (json_int_t)to, "complete", pair.done, "deltas", arr)
                      : NULL;
    lp_api_respond(rq, MHD_HTTP_OK, doc);
}

static void get_delta(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    const char *base = lp_http_param(rq, 0), *result = lp_http_param(rq, 1);
    if (!base || !result || !lp_blob_id_valid(base) || !lp_blob_id_valid(result)) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "a delta is named /v1/deltas/<base sha256>/<result sha256> (64 "
                              "lower-case hex digits each)");
        return;
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/%s/%s", lp_service_deltas_dir(svc), base, result);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) {
            lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no delta %.64s/%.64s",
                                  base, result);
        } else {
            lp_error err;
            lp_error_set(&err, LP_ERR_IO, "delta %.64s/%.64s: %s", base, result,
                         strerror(errno));
            lp_api_respond_status(rq, LP_ERR_IO, &err);
        }
        return;
    }
    char tag[140], what[160];
    snprintf(tag, sizeof tag, "%s-%s", base, result);
    snprintf(what, sizeof what, "delta %s/%s", base, result);
    lp_api_send_immutable(rq, fd, tag, what);
}

lp_status lp_api_add_delta_routes(lp_http_server *s, lp_service *svc, lp_error *err)
{
    lp_status st = lp_http_server_route(s, "GET", "/v1/apps/*/deltas/*/*", get_index, svc, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/v1/deltas/*/*", get_delta, svc, err);
    return st;
}
