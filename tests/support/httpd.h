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
 *   other methods        405.
 *
 * All functions are safe to call while the server is answering requests.
 */
#ifndef LP_TEST_HTTPD_H
#define LP_TEST_HTTPD_H

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

/* Stops the server, closes its connections and frees it (NULL is fine). */
void lp_test_httpd_stop(lp_test_httpd *h);

#endif
