/*
 * httpd.h — a static file server on loopback for tests (libmicrohttpd).
 *
 * lp_test_httpd_start(root) serves the files under `root` at
 * http://127.0.0.1:PORT (an ephemeral port), the way a plain static web
 * server or CDN would, so tests exercise the real HTTP client over a real
 * socket:
 *
 *   GET/HEAD /a/b.json   the file root/a/b.json (regular files only), with
 *                        Content-Length and Accept-Ranges: bytes; 404 if it
 *                        does not exist; %XX in the path is decoded; a path
 *                        with a ".." segment is refused with 403.
 *   Range: bytes=a-b, bytes=a-, bytes=-n
 *                        one range: 206 with Content-Range, or 416 (with a
 *                        Content-Range that gives the size) when it starts
 *                        past the end; several ranges or a malformed header
 *                        are ignored (full 200), as HTTP allows.
 *   /status/NNN[/...]    answers status NNN (100..599) with a short text
 *                        body; for 3xx the Location is the query argument
 *                        "location", or /status/NNN itself (a redirect loop)
 *                        when absent.
 *   endless paths        see lp_test_httpd_set_endless.
 *   fault rules          see lp_test_httpd_fail, lp_test_httpd_cut,
 *                        lp_test_httpd_ignore_range and
 *                        lp_test_httpd_short_range: a path answers an error
 *                        status (with Retry-After), drops the connection
 *                        part-way, ignores Range, or answers a shorter range,
 *                        the next K times.
 *   POST                 405, unless the path was set up with
 *                        lp_test_httpd_set_post: then the body is recorded
 *                        and answered with the configured status.
 *   other methods        405.
 *
 * All functions are safe to call while the server is answering requests.
 */
#ifndef LP_TEST_HTTPD_H
#define LP_TEST_HTTPD_H

#include <stddef.h>
#include <stdint.h>

typedef struct lp_test_httpd lp_test_httpd;

/* Starts serving root_dir; NULL on failure (message on stderr). */
lp_test_httpd *lp_test_httpd_start(const char *root_dir);

/* "http://127.0.0.1:PORT", no trailing slash; valid until stop. */
const char *lp_test_httpd_url(const lp_test_httpd *h);

/* Body bytes sent so far: an endless body counts every byte it produced; a
 * file or status body counts in full once it was completely sent (a transfer
 * the client aborted early adds nothing).  HEAD sends no body. */
uint64_t lp_test_httpd_bytes_sent(const lp_test_httpd *h);

/* Requests received for the (decoded) URL path `path`, or for all paths when
 * path is NULL. */
unsigned lp_test_httpd_requests(const lp_test_httpd *h, const char *path_or_null);

/* TCP connections accepted so far (shows whether clients keep connections
 * alive). */
unsigned lp_test_httpd_connections(const lp_test_httpd *h);

/* From now on GET url_path streams an endless body (repeating bytes, chunked,
 * no Content-Length), to test defences against endless data. */
void lp_test_httpd_set_endless(lp_test_httpd *h, const char *url_path);

/* The next `times` GET/HEAD requests for url_path answer `status` with a
 * short text body and, when retry_after is not NULL, a "Retry-After:
 * <retry_after>" header (seconds or an HTTP-date, sent as given).  Rules for
 * one path are used in the order they were added. */
void lp_test_httpd_fail(lp_test_httpd *h, const char *url_path, unsigned status,
                        const char *retry_after, unsigned times);

/* The next `times` GET requests for url_path that find a file start the
 * normal answer (200 or 206, full Content-Length) but send only the first
 * `after` body bytes and then drop the connection.  The bytes sent count in
 * lp_test_httpd_bytes_sent. */
void lp_test_httpd_cut(lp_test_httpd *h, const char *url_path, uint64_t after, unsigned times);

/* The next `times` GET requests for url_path that carry a Range header
 * ignore it: 200 with the whole file, as a server without range support. */
void lp_test_httpd_ignore_range(lp_test_httpd *h, const char *url_path, unsigned times);

/* The next `times` GET requests for url_path whose Range the server
 * honours get at most n bytes of it: a complete 206 whose Content-Range
 * ends early, as a server that sends ranges in pieces. */
void lp_test_httpd_short_range(lp_test_httpd *h, const char *url_path, uint64_t n,
                               unsigned times);

/* The Range header of the last request for url_path ("" when it had none
 * or the path was never requested), copied into out (cap bytes). */
void lp_test_httpd_last_range(const lp_test_httpd *h, const char *url_path, char *out,
                              size_t cap);

/* The Authorization header of the last request for url_path ("" when it
 * had none), copied into out (cap bytes). */
void lp_test_httpd_last_auth(const lp_test_httpd *h, const char *url_path, char *out,
                             size_t cap);

/* From now on POST url_path records the request body (at most 1 MiB) and
 * answers `status` with the body "{}" (may be called again to change the
 * status). */
void lp_test_httpd_set_post(lp_test_httpd *h, const char *url_path, unsigned status);

/* The body of the n-th (from 0) POST received for url_path, as a new
 * malloc'd NUL-terminated string, or NULL when there is no such POST. */
char *lp_test_httpd_post_body(const lp_test_httpd *h, const char *url_path, unsigned n);

/* Stops the server, closes its connections and frees it (NULL is fine). */
void lp_test_httpd_stop(lp_test_httpd *h);

#endif
