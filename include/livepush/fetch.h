/*
 * livepush/fetch.h — bounded downloads over HTTP(S) (and file:// URLs).
 *
 * A fetcher turns a URL into bytes delivered to a sink callback, never more
 * than a stated maximum: a server that sends more (the "endless data"
 * attack) is cut off with LP_ERR_TOO_LARGE as soon as the limit is passed,
 * without buffering the excess.  The TUF client takes the fetcher as an
 * interface (lp_fetcher) so that tests and embedders can supply their own;
 * lp_http_fetcher_new gives the libcurl implementation.  lp_http_send uses
 * that implementation for one fully described request (method, headers,
 * range, the response's status and headers), for callers that apply their
 * own policy to statuses and redirects.
 *
 * Thread-safety: one fetcher serves one thread at a time.
 */
#ifndef LIVEPUSH_FETCH_H
#define LIVEPUSH_FETCH_H

#include "livepush/error.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Receives the body as it arrives.  Return LP_OK to go on; any other status
 * (with *err set) aborts the transfer and is returned by fetch. */
typedef lp_status (*lp_fetch_sink)(void *sink_ctx, const void *data, size_t len, lp_error *err);

typedef struct lp_fetcher lp_fetcher;
struct lp_fetcher {
    /* Fetches `url`, passing at most `max_len` body bytes to `sink`.
     * Errors: LP_ERR_NOT_FOUND (HTTP 404/410, or a missing file),
     * LP_ERR_TOO_LARGE (body longer than max_len), LP_ERR_NETWORK (any other
     * transfer failure or HTTP status >= 400, message names the URL and the
     * status or curl's reason), or the sink's own status. */
    lp_status (*fetch)(lp_fetcher *self, const char *url, uint64_t max_len, lp_fetch_sink sink,
                       void *sink_ctx, lp_error *err);
    /* Releases the fetcher (may be NULL for fetchers the caller manages). */
    void (*destroy)(lp_fetcher *self);
};

typedef struct lp_http_options {
    long connect_timeout_ms; /* 0: 10 s */
    long total_timeout_ms;   /* 0: none (a low-speed limit applies instead) */
    long low_speed_bytes;    /* abort below this many bytes/s ... (0: 1)  */
    long low_speed_secs;     /* ... sustained this long (0: 30 s) */
    const char *user_agent;  /* NULL: "livepush/<version>" */
} lp_http_options;

/* Creates a libcurl fetcher; opts may be NULL for defaults.  HTTPS
 * certificates are always verified.  Free with fetcher->destroy(fetcher).
 * LP_ERR_NOMEM, LP_ERR_NETWORK (curl could not be initialised). */
lp_status lp_http_fetcher_new(lp_fetcher **out, const lp_http_options *opts, lp_error *err);

/* Convenience: fetches into a new malloc'd buffer (NUL-terminated; *len
 * excludes the NUL), at most max_len bytes. */
lp_status lp_fetch_to_buffer(lp_fetcher *f, const char *url, uint64_t max_len, uint8_t **data,
                             size_t *len, lp_error *err);

/* ---- one request, fully described --------------------------------------
 *
 * lp_http_send is for callers that need more than "GET these bytes": a
 * method and body (POST), extra request headers, a resumed range, and the
 * response's status and headers to decide for themselves (Content-Range,
 * Retry-After, a redirect's Location).  It uses the same libcurl handle,
 * connection and TLS policy as the fetcher's fetch, but:
 *   - redirects are not followed: a 3xx is returned with its Location, so
 *     the caller can apply its own policy to every hop;
 *   - any status is a successful exchange (LP_OK): the caller reads
 *     resp->status;
 *   - only a 2xx body reaches the sink (bounded by max_len, LP_ERR_TOO_LARGE
 *     past it); the start of any other body is kept in resp->error_body and
 *     the rest discarded (at most LP_HTTP_ERROR_BODY_MAX bytes are read);
 *   - only http:// and https:// URLs are accepted.
 * Before the sink's first call resp->status and the response headers are
 * already filled, so a sink can look at them (e.g. reject a 206 whose
 * Content-Range does not start where it asked). */

#define LP_HTTP_URL_MAX 4096
#define LP_HTTP_ERROR_BODY_MAX (64u * 1024)

typedef struct lp_http_request {
    const char *method;         /* "GET" (NULL means GET) or "POST" */
    const char *url;            /* http:// or https:// */
    const char *const *headers; /* extra "Name: value" lines, NULL-terminated, or NULL */
    const void *body;           /* POST body (NULL when body_len is 0) */
    size_t body_len;
    uint64_t range_from;        /* > 0: sends "Range: bytes=<range_from>-" */
    uint64_t max_len;           /* bound on the 2xx body handed to sink */
    lp_fetch_sink sink;         /* receives a 2xx body; NULL: the body is discarded */
    void *sink_ctx;
} lp_http_request;

typedef struct lp_http_response {
    long status;                    /* final HTTP status; 0 when none arrived */
    char content_range[128];        /* header values, "" when absent */
    char retry_after[128];
    char location[LP_HTTP_URL_MAX]; /* a 3xx's absolute target, "" otherwise */
    char error_body[256];           /* start of a non-2xx body, printable ASCII only */
    uint64_t body_bytes;            /* 2xx body bytes the sink accepted */
} lp_http_response;

/* Sends one request with a fetcher made by lp_http_fetcher_new and fills
 * *resp (zeroed first).  LP_OK when a whole response arrived, whatever its
 * status.  Errors: LP_ERR_INVALID_ARG (not a libcurl fetcher, a URL that is
 * not http(s), an unknown method), LP_ERR_NETWORK (connection, TLS, timeout,
 * a body cut short; resp holds what arrived before, so a caller can resume),
 * LP_ERR_TOO_LARGE (2xx body longer than max_len, or a redirect target
 * longer than LP_HTTP_URL_MAX), LP_ERR_NOMEM, or the sink's own status. */
lp_status lp_http_send(lp_fetcher *f, const lp_http_request *req, lp_http_response *resp,
                       lp_error *err);

#ifdef __cplusplus
}
#endif
#endif
