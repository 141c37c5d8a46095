/*
 * livepush/fetch.h — bounded downloads over HTTP(S) (and file:// URLs).
 *
 * A fetcher turns a URL into bytes delivered to a sink callback, never more
 * than a stated maximum: a server that sends more (the "endless data"
 * attack) is cut off with LP_ERR_TOO_LARGE as soon as the limit is passed,
 * without buffering the excess.  The TUF client takes the fetcher as an
 * interface (lp_fetcher) so that tests and embedders can supply their own;
 * lp_http_fetcher_new gives the libcurl implementation.
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

#ifdef __cplusplus
}
#endif
#endif
