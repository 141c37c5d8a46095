/*
 * net.h — internals of the updater's network side (src/agent/fetch.c,
 * check.c, events.c, delta.c), shared by those files and their tests.
 *
 * fetch.c owns the lp_net: the URL policy, the retry loop (full-jitter
 * back-off, Retry-After), resumable downloads (blobs, and the deltas of
 * delta.c), the fetcher handed to the TUF client, and the one POST the
 * event queue needs.  The parsers of
 * the two response headers that drive resume and waiting are exposed here
 * so they can be tested on their own.
 */
#ifndef LP_AGENT_NET_H
#define LP_AGENT_NET_H

#include "livepush/updater.h"

#include <jansson.h>
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

/* ---- the rollout policy (rollout.c) ---- */

#define LP_ROLLOUT_MAX_ENTRIES 4096u
enum { LP_ROLLOUT_ACTIVE = 0, LP_ROLLOUT_PAUSED = 1, LP_ROLLOUT_HALTED = 2 };

typedef struct lp_rollout_entry {
    uint64_t version_code;
    int percent_bp; /* 0..10000 */
    int state;      /* LP_ROLLOUT_* */
    int weight;     /* 0: not an arm of the split */
} lp_rollout_entry;

/* A channel's policy; present = false when the repository has none (every
 * release offered to every device, at any time). */
typedef struct lp_rollout_policy {
    bool present;
    char salt[33];
    lp_rollout_entry *entries; /* increasing version codes */
    size_t count;
    int window_start, window_end; /* minutes after midnight UTC; -1: none */
} lp_rollout_policy;

/* Reads the policy of `channel` from target "rollout/<channel>.json" (found
 * through the delegations, verified by TUF).  No such target: LP_OK with
 * present = false.  LP_ERR_MALFORMED naming the member for a policy this
 * version cannot read; errors of the lookup otherwise.  *p is freed with
 * lp_rollout_policy_free. */
lp_status lp_rollout_policy_load(lp_tuf_client *tuf, const char *channel, lp_rollout_policy *p,
                                 lp_error *err);
/* Checks a parsed custom part (unknown members refused). */
lp_status lp_rollout_policy_parse(const json_t *custom, const char *channel,
                                  lp_rollout_policy *p, lp_error *err);
void lp_rollout_policy_free(lp_rollout_policy *p);
/* Whether the policy lets `device_id` take version code `code`; when not,
 * `why` says why (paused, halted, outside the cohort, in another arm). */
bool lp_rollout_allows(const lp_rollout_policy *p, const char *channel, const char *device_id,
                       uint64_t code, char *why, size_t cap);
/* Whether `now` (Unix seconds) is inside the channel's maintenance window
 * (always, when it has none). */
bool lp_rollout_in_window(const lp_rollout_policy *p, int64_t now);

/* Checks that `s` is 64 lower-case hex digits. */
bool lp_net_is_sha256_hex(const char *s);

/* One resumable download (lp_net_download). */
typedef struct lp_net_dl {
    const char *url;         /* checked against the URL policy (and every redirect) */
    const char *what;        /* starts every message: "blob <sha256>", "delta <b>-<r>" */
    const char *size_from;   /* who stated the size, for messages: "the manifest" */
    const char *sha256;      /* the content's SHA-256 (hex), or NULL: not known */
    const char *progress_id; /* passed to the lp_net's progress callback */
    uint64_t size;           /* exact size of the content: no byte more is accepted */
    const char *part;        /* the partial file, kept between tries and runs */
    bool sync;               /* fsync the complete partial file */
} lp_net_dl;

/* Downloads d->url into d->part: resumes from the partial file's size with
 * a Range request (a 206 must continue exactly there, a 200 starts over),
 * retries with back-off and Retry-After, refuses more than d->size bytes.
 * LP_OK when d->part holds exactly d->size bytes (and, with d->sha256, that
 * content: a mismatch after resuming an earlier run starts over once).
 * The partial file stays for a later call when the tries ran out; it is
 * deleted when the content is wrong.  Errors: LP_ERR_INVALID_ARG (URL
 * policy), LP_ERR_NOT_FOUND (404/410), LP_ERR_LENGTH_MISMATCH,
 * LP_ERR_HASH_MISMATCH, LP_ERR_NETWORK ("<what>: gave up after N attempts:
 * <cause>", or another status), LP_ERR_IO, LP_ERR_NOMEM. */
lp_status lp_net_download(lp_net *n, const lp_net_dl *d, lp_error *err);

/* <state_dir>/downloads (borrowed; may not exist yet). */
const char *lp_net_downloads_dir(const lp_net *n);

/* The app's name (borrowed). */
const char *lp_net_app(const lp_net *n);

/* Whether the server is a static mirror (mirror.c): GETs
 * <server>/v1/apps/<app>/mirror.json (at most 4 KiB) and sets *mirror when
 * it is a JSON object with "static": true and "app" naming this app.  The
 * URL asked goes to url_out (cap bytes).  A 404 is LP_OK with *mirror
 * false; other failures are the fetch's errors (*mirror false). */
lp_status lp_net_static_mirror(lp_net *n, bool *mirror, char *url_out, size_t cap,
                               lp_error *err);

/* A new malloc'd URL: <server>/v1/apps/<app>/<path> (in_app) or
 * <server>/v1/<path>; NULL when out of memory. */
char *lp_net_url(const lp_net *n, bool in_app, const char *path);

#endif
