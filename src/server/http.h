/*
 * http.h — the HTTP core of `livepush serve` (internal): a libmicrohttpd
 * daemon, a router from (method, path pattern) to handler, request and
 * response helpers, and the serving of immutable files.
 *
 * Threads: libmicrohttpd runs a pool of worker threads (one per core by
 * default; it blocks SIGPIPE in them itself, so sendfile(2) is safe); every handler may run on any of them at once, so handlers only
 * touch state that is theirs or is locked.  Each request gets an id
 * ("<server prefix>-<counter>", hex) that is sent back as X-Request-Id and
 * appears on the request's log line.
 *
 * Routing: a pattern is a path of '/'-separated segments; a segment "*"
 * matches any one segment and a last segment "**" matches one or more
 * segments (the rest of the path).  Both are captured in order and read with
 * lp_http_param.  A "GET" route also answers HEAD (libmicrohttpd sends the
 * headers of the GET response and no body).  Before matching, the (already
 * percent-decoded) path is checked: it must start with '/', and have no
 * empty, "." or ".." segment and no control character or NUL (400
 * bad_request otherwise); except that a GET or HEAD of a path with one
 * trailing '/' ("/dashboard/") is answered 308 to the path without it when
 * that one passes the check and is plain (letters, digits, "-._~/").  No route for the path: 404; routes for the path
 * but not the method: 405 with an Allow header.  GET /healthz is built in.
 *
 * Errors all have one JSON shape:
 *     {"error":{"code":"not_found","message":"no route for GET /x"}}
 *
 * Request bodies are collected up to max_body_bytes (413 beyond, also when
 * Content-Length announces more) and handed to the handler whole
 * (lp_http_body).
 *
 * Shutdown (lp_http_server_shutdown): stop accepting, answer requests
 * already received with "Connection: close", wait up to a timeout for every
 * request in flight (including responses still being sent) to finish, then
 * stop the daemon, which closes idle connections.
 */
#ifndef LP_SERVER_HTTP_H
#define LP_SERVER_HTTP_H

#include "livepush/error.h"
#include "server/log.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#define LP_HTTP_MAX_PARAMS 8
#define LP_HTTP_MAX_PATH 4096

typedef struct lp_http_server lp_http_server;
typedef struct lp_http_request lp_http_request;

/* A handler answers with exactly one lp_http_respond* call; a handler that
 * answers nothing gets a 500. */
typedef void (*lp_http_handler)(lp_http_request *rq, void *user);

typedef struct lp_http_server_options {
    const char *listen;          /* "127.0.0.1:8080", "[::1]:0", ... (see lp_server_parse_listen) */
    unsigned threads;            /* 0: one per core */
    unsigned max_connections;    /* 0: 1024; libmicrohttpd shares it out among the threads */
    unsigned connection_timeout_s; /* 0: 30 */
    size_t max_header_bytes;     /* per-connection memory limit; 0: 32 KiB */
    uint64_t max_body_bytes;     /* 0: no body accepted beyond 0 bytes */
    const lp_log *log;           /* borrowed; may be NULL (no log) */
    struct lp_metrics *metrics;  /* borrowed; may be NULL: every finished request is
                                    counted there by method, route pattern and status */
} lp_http_server_options;

/* Makes a server (not yet listening).  The options are copied. */
lp_status lp_http_server_new(lp_http_server **out, const lp_http_server_options *opt, lp_error *err);

/* Adds a route.  method: "GET", "POST", ...; pattern as above (copied).
 * `user` is borrowed and must outlive the server.  Routes are added before
 * lp_http_server_start.  LP_ERR_INVALID_ARG for a bad pattern, too many
 * captures, or after start. */
lp_status lp_http_server_route(lp_http_server *s, const char *method, const char *pattern,
                               lp_http_handler handler, void *user, lp_error *err);

/* Binds and starts the worker threads.  LP_ERR_IO / LP_ERR_NETWORK when the
 * address cannot be bound. */
lp_status lp_http_server_start(lp_http_server *s, lp_error *err);

/* After start: the bound port, and "http://127.0.0.1:PORT" or
 * "http://[::1]:PORT" (the listen host, with the bound port). */
uint16_t lp_http_server_port(const lp_http_server *s);
const char *lp_http_server_url(const lp_http_server *s);

/* Worker threads in use (the option, with 0 resolved to the core count). */
unsigned lp_http_server_threads(const lp_http_server *s);

/* Requests received and not yet finished. */
unsigned lp_http_server_in_flight(lp_http_server *s);

/* Graceful stop (see above).  LP_OK when every request finished in time;
 * LP_ERR_STATE (naming how many were cut) when the timeout passed first.
 * The daemon is stopped either way; calling it twice is harmless. */
lp_status lp_http_server_shutdown(lp_http_server *s, unsigned timeout_ms, lp_error *err);

/* Stops (without waiting) if still running, and frees, including what the
 * server adopted (below).  NULL is fine. */
void lp_http_server_free(lp_http_server *s);

/* Hands ptr to the server: lp_http_server_free calls free_fn(ptr) after
 * the daemon stopped (so no handler still uses it), the last adopted
 * first.  For state that routes share, such as their `user` data.  On
 * LP_ERR_NOMEM free_fn(ptr) has already been called. */
lp_status lp_http_server_adopt(lp_http_server *s, void *ptr, void (*free_fn)(void *),
                               lp_error *err);

/* ---- requests (valid during the handler call) ---------------------------- */

const char *lp_http_method(const lp_http_request *rq);
bool lp_http_is_head(const lp_http_request *rq);
const char *lp_http_path(const lp_http_request *rq);     /* percent-decoded */
const char *lp_http_request_id(const lp_http_request *rq);
/* Capture i of the route pattern, or NULL. */
const char *lp_http_param(const lp_http_request *rq, size_t i);
/* A request header (case-insensitive name), or NULL. */
const char *lp_http_header(const lp_http_request *rq, const char *name);
/* The request body (NULL/0 when there is none). */
const uint8_t *lp_http_body(const lp_http_request *rq, size_t *len);
struct MHD_Connection *lp_http_connection(const lp_http_request *rq);
const lp_log *lp_http_log(const lp_http_request *rq);

/* ---- responses (each queues the answer; call one per request) ----------- */

/* Queues a libmicrohttpd response (ownership taken; NULL answers 500) with
 * `status`; body_len is the body size for the log.  Adds X-Request-Id. */
void lp_http_respond(lp_http_request *rq, unsigned status, struct MHD_Response *r,
                     uint64_t body_len);
/* A JSON body (copied) with Content-Type application/json. */
void lp_http_respond_json(lp_http_request *rq, unsigned status, const char *json_text);
/* The error shape {"error":{"code":code,"message":...}}. */
void lp_http_respond_error(lp_http_request *rq, unsigned status, const char *code,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* A response with the error shape (for adding headers before
 * lp_http_respond), or NULL when out of memory; *len gets the body size. */
struct MHD_Response *lp_http_error_response(const char *code, const char *message, size_t *len);

/* ---- immutable files (files.c) ------------------------------------------- */

/* How a file is served. */
typedef struct lp_http_file_info {
    const char *etag;          /* strong ETag with its quotes: "\"abc\"" */
    const char *cache_control; /* e.g. "public, max-age=31536000, immutable" */
    const char *content_type;
} lp_http_file_info;

/* Answers GET/HEAD for an open regular file (fd is taken and closed; sb its
 * fstat): If-None-Match → 304; one byte range → 206 with Content-Range (an
 * If-Range that differs from the ETag sends the whole file); a range that
 * starts past the end → 416 with a Content-Range that gives the size; several
 * ranges or a malformed Range → 200 with the whole file.  The body is sent
 * from the descriptor (sendfile where possible). */
void lp_http_send_file(lp_http_request *rq, int fd, const struct stat *sb,
                       const lp_http_file_info *info);

/* Strong ETag of an immutable file from its identity (device, inode, size,
 * modification time): "\"<32 hex>\"" into out. */
void lp_http_etag_from_stat(const struct stat *sb, char out[40]);

/* True for an app name: 1..64 bytes of letters, digits, '-', '_', '.'. */
bool lp_http_valid_app_name(const char *name);

/* Adds the TUF repository routes served from <data_dir>/repos/<app>/:
 *   GET /v1/apps/<app>/metadata/<file>   metadata/<file>
 *   GET /v1/apps/<app>/targets/<path>    targets/<path>
 * data_dir is borrowed and must outlive the server.  Small metadata files
 * are kept in a cache (server/meta_cache.h) that the server owns. */
lp_status lp_http_add_repo_routes(lp_http_server *s, const char *data_dir, lp_error *err);

#endif
