/*
 * api_uploads.c — resumable uploads (docs/api.md):
 *
 *     POST   /api/v1/apps/<app>/uploads  upload   {"size":N,"sha256":hex?} -> 201
 *     GET    /api/v1/uploads/<id>        upload   where it stands (offset)
 *     PUT    /api/v1/uploads/<id>        upload   one chunk, Content-Range
 *     DELETE /api/v1/uploads/<id>        upload   abandon
 *
 * State: the database row (size, sha256, offset = bytes safely on disk)
 * and the partial file <data>/uploads/<id>.part (0600).  The id is 128
 * random bits in hex, so it cannot be guessed.
 *
 * A chunk is written in this order: truncate the file to the chunk's start
 * (dropping bytes a crash may have left past the recorded offset), write,
 * fsync, then record the new offset.  A crash at any point leaves an offset
 * that is never ahead of what is on disk, so a client that asks (GET) and
 * resends from there always ends with the right bytes.
 *
 * Concurrency: whoever works on an upload holds a non-blocking flock(2) on
 * its partial file and reads the row again under it.  A second request on
 * the same upload meanwhile (a retried chunk, a duplicate publish) gets
 * 409 conflict "busy" at once instead of tying up a worker thread; flock
 * works across threads and processes alike.  Publishing (api_releases.c)
 * holds the same lock through lp_api_upload_take / lp_api_upload_drop.
 */
#include "server/api.h"
#include "server/auth.h"

#include "core/file.h"
#include "livepush/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define ID_BYTES 16
#define PER_ENTRY_SLACK 2048u /* archive headers and padding per entry */

/* The largest upload the ingest limits could accept. */
static uint64_t max_upload(lp_service *svc)
{
    const lp_ingest_limits *l = lp_service_limits(svc);
    uint64_t total = l->max_total_bytes ? l->max_total_bytes : LP_INGEST_DEFAULT_MAX_TOTAL_BYTES;
    uint64_t entries = l->max_entries ? l->max_entries : LP_INGEST_DEFAULT_MAX_ENTRIES;
    uint64_t max = total + entries * PER_ENTRY_SLACK + (1u << 20);
    return max > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : max;
}

/* The row of upload `id` and its app's name (*app_name malloc'd); answers
 * 404 / the error and returns false when it cannot be had. */
static bool load(lp_http_request *rq, lp_service *svc, const char *id, lp_db_upload *up,
                 lp_db_app *app)
{
    lp_db *db = NULL;
    if (!lp_api_db(rq, svc, &db))
        return false;
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_db_upload_get(db, id, up, &err);
    if (!st)
        st = lp_db_app_get(db, up->app_id, app, &err);
    lp_service_db_release(svc, db);
    if (st == LP_ERR_NOT_FOUND || st == LP_ERR_INVALID_ARG)
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no upload '%.64s'", id);
    else if (st)
        lp_api_respond_status(rq, st, &err);
    if (st) {
        lp_db_upload_free(up);
        lp_db_app_free(app);
    }
    return st == LP_OK;
}

static void answer(lp_http_request *rq, unsigned status, const lp_db_upload *up,
                   const lp_db_app *app, bool with_url)
{
    json_t *doc = json_pack("{s:o}", "upload", lp_api_upload_json(up, app->name));
    if (doc && with_url) {
        char url[128];
        snprintf(url, sizeof url, "/api/v1/uploads/%s", up->id);
        json_object_set_new(doc, "url", json_string(url));
    }
    lp_api_respond(rq, status, doc);
}

/* Opens the partial file and takes its lock without waiting.  -1 when
 * answered (409 busy, or the file is gone). */
static int open_locked(lp_http_request *rq, const lp_db_upload *up, int flags)
{
    int fd = open(up->path, flags | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0 && errno == ENOENT) { /* deleted since the row was read */
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no upload '%s'", up->id);
        return -1;
    }
    if (fd < 0) {
        lp_http_respond_error(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                              "upload %s: partial file: %s", up->id, strerror(errno));
        return -1;
    }
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR)
            continue;
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            lp_http_respond_error(rq, MHD_HTTP_CONFLICT, "conflict",
                                  "upload %s is busy (a chunk is being written or it is being "
                                  "published); try again",
                                  up->id);
        else
            lp_http_respond_error(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                                  "upload %s: lock: %s", up->id, strerror(e));
        return -1;
    }
    return fd;
}

/* ---- POST /api/v1/apps/<app>/uploads ---------------------------------------- */

static const lp_api_field create_fields[] = {
    {"size", LP_API_INT, .required = true},
    {"sha256", LP_API_STRING, .nullable = true, .max_len = 64},
};

/* Creates the empty partial file durably. */
static lp_status make_part(const char *path, lp_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return lp_error_set(err, LP_ERR_IO, "create %s: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0) {
        unlink(path);
        return lp_error_set(err, LP_ERR_IO, "fsync %s: %s", path, strerror(e));
    }
    return lp_file_sync_parent(path, err);
}

static void create_upload(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    json_t *body = NULL;
    if (!lp_auth_require(rq, svc, LP_SCOPE_UPLOAD, &who) ||
        !lp_api_parse_body(rq, create_fields, 2, &body))
        return;
    json_int_t size = json_integer_value(json_object_get(body, "size"));
    const char *sha = lp_api_str(body, "sha256");
    uint64_t max = max_upload(svc);
    if (size < 1 || (uint64_t)size > max) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "field 'size': must be from 1 to %llu bytes",
                              (unsigned long long)max);
        json_decref(body);
        return;
    }
    if (sha && !lp_blob_id_valid(sha)) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "field 'sha256': expected 64 lower-case hex digits");
        json_decref(body);
        return;
    }
    lp_db *db = NULL;
    lp_db_app app = {0};
    if (!lp_api_db(rq, svc, &db)) {
        json_decref(body);
        return;
    }
    if (!lp_api_app(rq, db, 0, &app)) {
        lp_service_db_release(svc, db);
        json_decref(body);
        return;
    }
    lp_service_db_release(svc, db);

    lp_error err;
    lp_error_clear(&err);
    uint8_t rnd[ID_BYTES];
    char id[2 * ID_BYTES + 1];
    lp_status st = getrandom(rnd, sizeof rnd, 0) == (ssize_t)sizeof rnd
                       ? LP_OK
                       : lp_error_set(&err, LP_ERR_IO, "getrandom: %s", strerror(errno));
    lp_hex_encode(rnd, sizeof rnd, id);
    char *dir = lp_path_join(lp_service_data_dir(svc), "uploads");
    size_t cap = (dir ? strlen(dir) : 0) + sizeof id + 8;
    char *path = dir ? malloc(cap) : NULL;
    if (!st && !path)
        st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    if (!st)
        st = lp_file_mkdirs(dir, 0700, &err);
    if (!st) {
        snprintf(path, cap, "%s/%s.part", dir, id);
        st = make_part(path, &err);
    }
    lp_db_upload up = {0};
    if (!st && lp_api_db(rq, svc, &db)) {
        lp_db_upload_new nu = {.id = id, .app_id = app.id, .token_id = who.token_id,
                               .path = path, .expected_size = (uint64_t)size,
                               .expected_sha256 = sha};
        st = lp_db_upload_create(db, &nu, &err);
        if (!st)
            st = lp_db_upload_get(db, id, &up, &err);
        lp_service_db_release(svc, db);
        if (st) {
            unlink(path);
            lp_api_respond_status(rq, st, &err);
        } else {
            answer(rq, MHD_HTTP_CREATED, &up, &app, true);
        }
    } else if (!st) {
        unlink(path); /* 503 answered */
    } else {
        lp_api_respond_status(rq, st, &err);
    }
    lp_db_upload_free(&up);
    lp_db_app_free(&app);
    free(path);
    free(dir);
    json_decref(body);
}

/* ---- GET, DELETE /api/v1/uploads/<id> ------------------------------------------ */

static void show_upload(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    lp_db_upload up = {0};
    lp_db_app app = {0};
    if (!lp_auth_require(rq, svc, LP_SCOPE_UPLOAD, &who) ||
        !load(rq, svc, lp_http_param(rq, 0), &up, &app))
        return;
    answer(rq, MHD_HTTP_OK, &up, &app, false);
    lp_db_upload_free(&up);
    lp_db_app_free(&app);
}

static void delete_upload(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    lp_db_upload up = {0};
    lp_db_app app = {0};
    if (!lp_auth_require(rq, svc, LP_SCOPE_UPLOAD, &who) ||
        !load(rq, svc, lp_http_param(rq, 0), &up, &app))
        return;
    int fd = open_locked(rq, &up, O_RDONLY);
    lp_db *db = NULL;
    if (fd >= 0 && lp_api_db(rq, svc, &db)) {
        lp_error err;
        lp_status st = lp_db_upload_delete(db, up.id, &err);
        lp_service_db_release(svc, db);
        if (st == LP_ERR_NOT_FOUND) {
            lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no upload '%s'", up.id);
        } else if (st) {
            lp_api_respond_status(rq, st, &err);
        } else {
            /* row first: a crash now leaves only a stray file */
            unlink(up.path);
            lp_file_sync_parent(up.path, NULL);
            lp_api_respond(rq, MHD_HTTP_OK, json_pack("{s:s}", "deleted", up.id));
        }
    }
    if (fd >= 0)
        close(fd);
    lp_db_upload_free(&up);
    lp_db_app_free(&app);
}

/* ---- PUT /api/v1/uploads/<id> ------------------------------------------------------ */

/* Decimal digits from *p up to a byte not a digit; false on none/overflow. */
static bool digits(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9') {
        if (s - *p >= 19)
            return false;
        v = v * 10 + (uint64_t)(*s++ - '0');
    }
    if (s == *p)
        return false;
    *p = s;
    *out = v;
    return true;
}

/* "bytes START-END/TOTAL" with START <= END < TOTAL. */
static bool parse_content_range(const char *v, uint64_t *start, uint64_t *end, uint64_t *total)
{
    if (!v || strncmp(v, "bytes ", 6))
        return false;
    const char *p = v + 6;
    return digits(&p, start) && *p++ == '-' && digits(&p, end) && *p++ == '/' &&
           digits(&p, total) && !*p && *start <= *end && *end < *total;
}

static lp_status write_all(int fd, const uint8_t *data, size_t len, uint64_t off, lp_error *err)
{
    while (len) {
        ssize_t n = pwrite(fd, data, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return lp_error_set(err, LP_ERR_IO, "write: %s",
                                n < 0 ? strerror(errno) : "no progress");
        data += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return LP_OK;
}

/* Writes the chunk at `start` under the lock and records it.  Answers. */
static void put_locked(lp_http_request *rq, lp_service *svc, int fd, lp_db_upload *up,
                       const lp_db_app *app, uint64_t start, const uint8_t *data, size_t len)
{
    if (start != up->received) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "upload %s: the chunk starts at byte %llu but the upload's offset is %llu", up->id,
                 (unsigned long long)start, (unsigned long long)up->received);
        json_t *doc = json_pack("{s:{s:s,s:s},s:o}", "error", "code", "offset_mismatch",
                                "message", msg, "upload", lp_api_upload_json(up, app->name));
        lp_api_respond(rq, MHD_HTTP_CONFLICT, doc);
        return;
    }
    lp_error err;
    lp_error_clear(&err);
    struct stat sb;
    lp_status st = LP_OK;
    if (fstat(fd, &sb) != 0)
        st = lp_error_set(&err, LP_ERR_IO, "fstat: %s", strerror(errno));
    else if ((uint64_t)sb.st_size < up->received)
        st = lp_error_set(&err, LP_ERR_IO, "the partial file has %lld bytes, %llu recorded",
                          (long long)sb.st_size, (unsigned long long)up->received);
    else if ((uint64_t)sb.st_size > start && ftruncate(fd, (off_t)start) != 0)
        st = lp_error_set(&err, LP_ERR_IO, "truncate: %s", strerror(errno));
    if (!st)
        st = write_all(fd, data, len, start, &err);
    if (!st && fsync(fd) != 0)
        st = lp_error_set(&err, LP_ERR_IO, "fsync: %s", strerror(errno));
    lp_db *db = NULL;
    if (st) {
        lp_error_prefix(&err, st, "upload %s", up->id);
        lp_api_respond_status(rq, st, &err);
        return;
    }
    if (!lp_api_db(rq, svc, &db))
        return;
    st = lp_db_upload_set_received(db, up->id, start + len, 0, &err);
    lp_db_upload fresh = {0};
    if (!st)
        st = lp_db_upload_get(db, up->id, &fresh, &err);
    lp_service_db_release(svc, db);
    if (st)
        lp_api_respond_status(rq, st, &err);
    else
        answer(rq, MHD_HTTP_OK, &fresh, app, false);
    lp_db_upload_free(&fresh);
}

static void put_chunk(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    lp_db_upload up = {0};
    lp_db_app app = {0};
    if (!lp_auth_require(rq, svc, LP_SCOPE_UPLOAD, &who) ||
        !load(rq, svc, lp_http_param(rq, 0), &up, &app))
        return;
    size_t len = 0;
    const uint8_t *data = lp_http_body(rq, &len);
    uint64_t start = 0, end = 0, total = 0;
    int fd = -1;
    if (!parse_content_range(lp_http_header(rq, "Content-Range"), &start, &end, &total)) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "Content-Range: expected \"bytes START-END/TOTAL\" "
                              "(START <= END < TOTAL)");
    } else if (total != up.expected_size) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "Content-Range: total %llu differs from the upload's size %llu",
                              (unsigned long long)total, (unsigned long long)up.expected_size);
    } else if (!data || end - start + 1 != (uint64_t)len) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "Content-Range: %llu-%llu is %llu bytes but the body has %zu",
                              (unsigned long long)start, (unsigned long long)end,
                              (unsigned long long)(end - start + 1), len);
    } else if ((fd = open_locked(rq, &up, O_WRONLY)) >= 0) {
        /* the row again, under the lock: it is the truth now */
        lp_db_upload_free(&up);
        lp_db_app_free(&app);
        if (load(rq, svc, lp_http_param(rq, 0), &up, &app))
            put_locked(rq, svc, fd, &up, &app, start, data, len);
        close(fd);
    }
    lp_db_upload_free(&up);
    lp_db_app_free(&app);
}

/* ---- holding an upload for publishing ---------------------------------------------- */

static lp_status hash_fd(int fd, char hex[65], lp_error *err)
{
    lp_hash_ctx *h = NULL;
    uint8_t buf[1 << 16], md[LP_HASH_MAX_LEN];
    lp_status st = lp_hash_new(&h, LP_HASH_SHA256, err);
    for (off_t pos = 0; !st;) {
        ssize_t n = pread(fd, buf, sizeof buf, pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            st = lp_error_set(err, LP_ERR_IO, "read: %s", strerror(errno));
        else if (n == 0)
            break;
        else if (!(st = lp_hash_update(h, buf, (size_t)n, err)))
            pos += n;
    }
    if (!st)
        st = lp_hash_final(h, md, err);
    lp_hash_free(h);
    if (!st)
        lp_hex_encode(md, LP_SHA256_LEN, hex);
    return st;
}

bool lp_api_upload_take(lp_http_request *rq, lp_service *svc, const char *id, int64_t app_id,
                        lp_api_upload_hold *h)
{
    memset(h, 0, sizeof *h);
    h->fd = -1;
    lp_db_app app = {0};
    if (!load(rq, svc, id, &h->up, &app))
        return false;
    lp_db_app_free(&app);
    if (h->up.app_id != app_id) {
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found",
                              "field 'upload': no upload '%.64s' for this app", id);
        lp_api_upload_drop(svc, h, false);
        return false;
    }
    if ((h->fd = open_locked(rq, &h->up, O_RDONLY)) < 0) {
        lp_api_upload_drop(svc, h, false);
        return false;
    }
    lp_db_upload_free(&h->up);
    if (!load(rq, svc, id, &h->up, &app)) {
        lp_api_upload_drop(svc, h, false);
        return false;
    }
    lp_db_app_free(&app);
    lp_error err;
    lp_error_clear(&err);
    char got[65];
    if (h->up.received != h->up.expected_size) {
        lp_http_respond_error(rq, MHD_HTTP_CONFLICT, "conflict",
                              "upload %s is incomplete: %llu of %llu bytes received", id,
                              (unsigned long long)h->up.received,
                              (unsigned long long)h->up.expected_size);
    } else if (h->up.expected_sha256 && hash_fd(h->fd, got, &err)) {
        lp_error_prefix(&err, err.code, "upload %s", id);
        lp_api_respond_status(rq, err.code, &err);
    } else if (h->up.expected_sha256 && strcmp(got, h->up.expected_sha256)) {
        lp_http_respond_error(rq, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable",
                              "upload %s: its content has sha256 %s, not the declared %s", id,
                              got, h->up.expected_sha256);
    } else {
        return true;
    }
    lp_api_upload_drop(svc, h, false);
    return false;
}

void lp_api_upload_drop(lp_service *svc, lp_api_upload_hold *h, bool consumed)
{
    if (consumed && h->up.id) {
        lp_db *db = NULL;
        lp_error err;
        lp_error_clear(&err);
        lp_status st = lp_service_db_acquire(svc, &db, &err);
        if (!st)
            st = lp_db_upload_delete(db, h->up.id, &err);
        lp_service_db_release(svc, db);
        if (!st) {
            unlink(h->up.path);
            lp_file_sync_parent(h->up.path, NULL);
        } else {
            lp_log_event(lp_service_log(svc), LP_LOG_WARN, "published upload not removed",
                         json_pack("{s:s,s:s}", "upload", h->up.id, "error", err.msg));
        }
    }
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
    lp_db_upload_free(&h->up);
}

lp_status lp_api_add_upload_routes(lp_http_server *s, lp_service *svc, lp_error *err)
{
    lp_status st = lp_http_server_route(s, "POST", "/api/v1/apps/*/uploads", create_upload, svc,
                                        err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/api/v1/uploads/*", show_upload, svc, err);
    if (!st)
        st = lp_http_server_route(s, "PUT", "/api/v1/uploads/*", put_chunk, svc, err);
    if (!st)
        st = lp_http_server_route(s, "DELETE", "/api/v1/uploads/*", delete_upload, svc, err);
    return st;
}
