/*
 * api_blobs.c — GET /v1/blobs/<sha256>: the blob store over HTTP, public;
 * and lp_api_send_immutable, the answer for every content-addressed file
 * (blobs here, deltas in api_deltas.c).
 *
 * A blob's name is the SHA-256 of its bytes and it never changes, so the
 * name itself is the strong ETag ("\"<sha256>\"") and the answer may be
 * cached forever (Cache-Control: public, max-age=31536000, immutable);
 * lp_http_send_file adds If-None-Match (304), Range (206/416) and HEAD.
 * Anyone may fetch a blob: its content is only useful with the signed tree
 * manifest that names it, and names cannot be guessed from outside.  The
 * name is checked (64 lower-case hex digits) before any file system call.
 */
#include "server/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void lp_api_send_immutable(lp_http_request *rq, int fd, const char *tag, const char *what)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        lp_error err;
        lp_error_set(&err, LP_ERR_IO, "%s: fstat failed", what);
        lp_api_respond_status(rq, LP_ERR_IO, &err);
        return;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no %s", what);
        return;
    }
    size_t n = strlen(tag);
    char *etag = malloc(n + 3);
    if (!etag) {
        close(fd);
        lp_http_respond(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, 0);
        return;
    }
    snprintf(etag, n + 3, "\"%s\"", tag);
    lp_http_file_info info = {.etag = etag,
                              .cache_control = "public, max-age=31536000, immutable",
                              .content_type = "application/octet-stream"};
    lp_http_send_file(rq, fd, &sb, &info);
    free(etag);
}

static void get_blob(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    const char *id = lp_http_param(rq, 0);
    if (!id || !lp_blob_id_valid(id)) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "a blob name is 64 lower-case hex digits (its sha256)");
        return;
    }
    int fd = -1;
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_blobstore_open_blob(lp_service_blobstore(svc), id, &fd, NULL, &err);
    if (st == LP_ERR_NOT_FOUND) {
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no blob %s", id);
        return;
    }
    if (st) {
        lp_api_respond_status(rq, st, &err);
        return;
    }
    char what[80];
    snprintf(what, sizeof what, "blob %s", id);
    lp_api_send_immutable(rq, fd, id, what);
}

lp_status lp_api_add_blob_routes(lp_http_server *s, lp_service *svc, lp_error *err)
{
    return lp_http_server_route(s, "GET", "/v1/blobs/*", get_blob, svc, err);
}
