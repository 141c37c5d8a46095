/*
 * net.h — internals of the updater's network side (src/agent/fetch.c,
 * check.c, events.c), shared by those files and their tests.
 *
 * fetch.c owns the lp_net: the URL policy, the retry loop (full-jitter
 * back-off, Retry-After), the blob download with resume, the fetcher handed
 * to the TUF client, and the one POST the event queue needs.  The parsers of
 * the two response headers that drive resume and waiting are exposed here
 * so they can be tested on their own.
 */
#ifndef LP_AGENT_NET_H
#define LP_AGENT_NET_H

#include "livepush/updater.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Seconds to wait for a Retry-After value at time `now`: delta-seconds
 * ("120") or an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT", or the obsolete
 * RFC 850 and asctime forms); a date in the past gives 0.  -1 when the value
 * is empty or not one of those.  Huge values are capped at INT32_MAX. */
int64_t lp_net_retry_after_seconds(const char *value, int64_t now);

/* Parses a Content-Range value "bytes <first>-<last>/<total>" (total may be
 * "*", then *total is UINT64_MAX).  False when malformed or last < first. */
bool lp_net_parse_content_range(const char *value, uint64_t *first, uint64_t *last,
                                uint64_t *total);

/* The wait before try number `attempt` + 1 (attempt >= 1 failed tries so
 * far): a uniformly random value in [0, min(max, base * 2^(attempt-1))] ms. */
uint32_t lp_net_backoff_ms(lp_net *n, uint32_t attempt);

/* POSTs `len` bytes of JSON to <server>/v1/apps/<app>/<path> (one try, the
 * URL policy applied, no redirect followed, the device token sent when
 * configured).  LP_OK when the server answered, whatever the status:
 * *status gets it and `what` (cap bytes) "POST <url>: HTTP <status>: <start
 * of the answer>".  Otherwise the transfer's error. */
lp_status lp_net_post_app_json(lp_net *n, const char *path, const char *body, size_t len,
                               long *status, char *what, size_t cap, lp_error *err);

/* The fetcher lp_net_open_tuf hands to the TUF client (borrowed: valid
 * until lp_net_close): URL policy on every hop, retries while no byte has
 * reached the sink, 404/410 as LP_ERR_NOT_FOUND without retrying. */
lp_fetcher *lp_net_tuf_fetcher(lp_net *n);

/* Checks that `s` is 64 lower-case hex digits. */
bool lp_net_is_sha256_hex(const char *s);

#endif
