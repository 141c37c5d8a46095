/*
 * fetch.c — the updater's connection to the update server: URL policy,
 * retries, resumable blob downloads, the fetcher the TUF client uses, and
 * the POST of the event queue (see the network section of
 * include/livepush/updater.h and docs/agent.md, "Downloads").
 *
 * One lp_net holds one libcurl fetcher (one handle, so consecutive requests
 * reuse the connection) and sends every request with lp_http_send, which
 * never follows redirects by itself: each hop's URL goes through the URL
 * policy here first (scheme, loopback, allow-list), so a redirect cannot
 * lead the device to plain http or to a host it was not allowed to talk to.
 *
 * Retries: one loop (retry_wait) decides between tries.  A transfer that
 * failed in the network, or answered 408, 425, 429 or 5xx, is tried again
 * after a random wait in [0, min(max, base * 2^(n-1))] ms ("full jitter":
 * devices that failed together do not come back together), or exactly the
 * Retry-After the server sent with 429/503.  Other answers (404, 403, ...)
 * end at once: trying again would not change them.
 *
 * Resumable downloads (lp_net_download): one job is "a URL, an exact size,
 * a partial file, and the content's SHA-256 when it is known in advance".
 * Blobs (lp_net_fetch_blob) know their hash; deltas (delta.c) do not: their
 * own header and the result's hash are checked when they are applied.  The
 * bytes go to the partial file (<state>/downloads/<sha256>.part for a
 * blob), opened without truncation.  A try first hashes what the partial
 * file already holds (through the fixed buffer of the lp_net, so memory does
 * not grow with the file; without a known hash it only takes its size), then
 * asks for the rest with "Range: bytes=<have>-".  Before the first body byte is written the answer
 * is checked: a 206 must start exactly at <have> (Content-Range), a 200
 * means the server sends everything, so the file and the hash start over.
 * Each chunk is hashed and written as it arrives; no more than the stated
 * size is ever accepted.  When the size is reached the digest is compared:
 * for a blob, a match is fsync'd and renamed to the destination (copied
 * through a temporary file there when the two are on different file
 * systems); a mismatch deletes the partial file.  A mismatch in content that was partly
 * resumed from an earlier run may come from that run (a crash can leave a
 * damaged tail), so the blob is then fetched once more from byte 0 before
 * the mismatch is reported.
 *
 * The jitter's random numbers come from a per-connection xorshift generator
 * seeded from getrandom(2): no global state, and no need for
 * cryptographic quality.
 */
#include "agent/net.h"

#include "core/buf.h"
#include "core/file.h"
#include "livepush/hash.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define IO_BUF_SIZE (64u * 1024)
#define MAX_REDIRECTS 5
#define CAUSE_MAX 600
#define POST_ANSWER_MAX (64u * 1024)

typedef struct tuf_fetcher {
    lp_fetcher base; /* first member: lp_fetcher* and tuf_fetcher* convert */
    lp_net *net;
} tuf_fetcher;

struct lp_net {
    char *server;        /* no trailing slash */
    char *app;
    char *state_dir;
    char *downloads_dir; /* <state>/downloads */
    bool allow_http;
    char **allowed;      /* NULL-terminated copy, or NULL */
    uint32_t attempts;
    uint32_t base_ms;
    uint32_t max_ms;
    uint32_t retry_after_max_s;
    lp_net_progress_fn progress;
    void *progress_ctx;
    char *auth_header;   /* "Authorization: Bearer <token>", or NULL */
    lp_fetcher *http;
    tuf_fetcher tuf;
    uint64_t rng;
    uint8_t buf[IO_BUF_SIZE];
};

/* ---- small helpers ------------------------------------------------------- */

bool lp_net_is_sha256_hex(const char *s)
{
    if (!s)
        return false;
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= 64 || !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == 64;
}

static bool app_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > LP_NET_MAX_APP || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t next_random(lp_net *n)
{
    /* xorshift64* */
    uint64_t x = n->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    n->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

uint32_t lp_net_backoff_ms(lp_net *n, uint32_t attempt)
{
    uint64_t cap = n->base_ms;
    for (uint32_t i = 1; i < attempt && cap < n->max_ms; i++)
        cap *= 2;
    if (cap > n->max_ms)
        cap = n->max_ms;
    return (uint32_t)(next_random(n) % (cap + 1));
}

/* ---- header parsing ----------------------------------------------------- */

int64_t lp_net_retry_after_seconds(const char *value, int64_t now)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (!*value)
        return -1;
    if (isdigit((unsigned char)*value)) {
        int64_t s = 0;
        const char *p = value;
        for (; isdigit((unsigned char)*p); p++)
            if ((s = s * 10 + (*p - '0')) > INT32_MAX)
                s = INT32_MAX;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            return s;
        /* digits followed by more: only a date can start so (asctime does not) */
    }
    bool letters = false;
    for (const char *p = value; *p; p++)
        letters = letters || isalpha((unsigned char)*p);
    if (!letters)
        return -1;
    time_t t = curl_getdate(value, NULL);
    if (t == (time_t)-1)
        return -1;
    int64_t d = (int64_t)t - now;
    return d < 0 ? 0 : (d > INT32_MAX ? INT32_MAX : d);
}

static bool parse_u64_span(const char *s, const char *end, uint64_t *v)
{
    if (s == end)
        return false;
    uint64_t x = 0;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

bool lp_net_parse_content_range(const char *value, uint64_t *first, uint64_t *last,
                                uint64_t *total)
{
    if (!value || strncasecmp(value, "bytes ", 6) != 0)
        return false;
    const char *p = value + 6;
    while (*p == ' ')
        p++;
    const char *dash = strchr(p, '-'), *slash = strchr(p, '/');
    if (!dash || !slash || slash < dash)
        return false;
    if (!parse_u64_span(p, dash, first) || !parse_u64_span(dash + 1, slash, last) ||
        *last < *first)
        return false;
    const char *t = slash + 1;
    if (strcmp(t, "*") == 0) {
        *total = UINT64_MAX;
        return true;
    }
    return parse_u64_span(t, t + strlen(t), total) && *last < *total;
}

/* ---- URL policy -------------------------------------------------------- */

static bool host_is_loopback(const char *host)
{
    if (strcasecmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    return inet_pton(AF_INET6, host, &a6) == 1 && memcmp(&a6, &in6addr_loopback, sizeof a6) == 0;
}

lp_status lp_net_check_url(const lp_net *n, const char *url, lp_error *err)
{
    if (!n || !url)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "URL policy: no URL");
    CURLU *u = curl_url();
    if (!u)
        return lp_error_set(err, LP_ERR_NOMEM, "URL policy: out of memory");
    char *scheme = NULL, *host = NULL;
    lp_status st = LP_OK;
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0])
        st = lp_error_set(err, LP_ERR_INVALID_ARG, "URL %s refused: not a valid absolute URL",
                          url);
    bool https = !st && strcasecmp(scheme, "https") == 0;
    bool http = !st && strcasecmp(scheme, "http") == 0;
    if (!st && !https && !http)
        st = lp_error_set(err, LP_ERR_INVALID_ARG,
                          "URL %s refused: only http and https are allowed", url);
    /* IPv6 hosts come back in brackets. */
    char bare[256] = "";
    if (!st) {
        size_t hl = strlen(host);
        if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']')
            snprintf(bare, sizeof bare, "%.*s", (int)(hl - 2), host + 1);
        else
            snprintf(bare, sizeof bare, "%s", host);
        char *pct = strchr(bare, '%'); /* an IPv6 zone id */
        if (pct)
            *pct = '\0';
    }
    if (!st && n->allowed) {
        bool listed = false;
        for (char **h = n->allowed; *h && !listed; h++)
            listed = strcasecmp(*h, bare) == 0;
        if (!listed)
            st = lp_error_set(err, LP_ERR_INVALID_ARG,
                              "URL %s refused: host %s is not in the allowed hosts", url, bare);
    }
    if (!st && http && !n->allow_http && !host_is_loopback(bare))
        st = lp_error_set(err, LP_ERR_INVALID_ARG,
                          "URL %s refused: plain http to a non-loopback host (%s); use https, "
                          "or allow http explicitly",
                          url, bare);
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return st;
}

/* ---- the retry loop ------------------------------------------------------ */

static bool status_retryable(long code)
{
    return code == 408 || code == 425 || code == 429 || (code >= 500 && code <= 599);
}

/* Called after failed try number `attempt` with `cause`; retry_after_s is
 * the server's Retry-After (-1: none).  LP_OK after waiting when another
 * try is due; otherwise the give-up error naming `what`. */
static lp_status retry_wait(lp_net *n, uint32_t attempt, int64_t retry_after_s,
                            const char *what, const char *cause, lp_error *err)
{
    if (attempt >= n->attempts)
        return lp_error_set(err, LP_ERR_NETWORK, "%s: gave up after %u attempts: %s", what,
                            attempt, cause);
    if (retry_after_s > (int64_t)n->retry_after_max_s)
        return lp_error_set(err, LP_ERR_NETWORK,
                            "%s: gave up after %u attempts: the server asks to retry after %lld "
                            "s, more than the %u s allowed: %s",
                            what, attempt, (long long)retry_after_s, n->retry_after_max_s, cause);
    uint64_t ms = retry_after_s >= 0 ? (uint64_t)retry_after_s * 1000u
                                     : lp_net_backoff_ms(n, attempt);
    sleep_ms(ms);
    return LP_OK;
}

/* The Retry-After of a 429 or 503 answer, in seconds; -1 otherwise. */
static int64_t retry_after_of(const lp_http_response *r)
{
    if (r->status != 429 && r->status != 503)
        return -1;
    return lp_net_retry_after_seconds(r->retry_after, (int64_t)time(NULL));
}

static void describe_status(char *out, size_t cap, const char *url, const lp_http_response *r)
{
    if (r->error_body[0])
        snprintf(out, cap, "GET %s: HTTP %ld: %s", url, r->status, r->error_body);
    else
        snprintf(out, cap, "GET %s: HTTP %ld", url, r->status);
}

/* ---- the fetcher for the TUF client ------------------------------------- */

typedef struct counting_sink {
    lp_fetch_sink sink;
    void *ctx;
    uint64_t delivered;
} counting_sink;

static lp_status count_sink(void *ctx, const void *data, size_t len, lp_error *err)
{
    counting_sink *c = ctx;
    lp_status st = c->sink(c->ctx, data, len, err);
    if (!st)
        c->delivered += len;
    return st;
}

/* One GET of `url` following redirects through the URL policy.  *final_url
 * (cap LP_HTTP_URL_MAX) gets the URL answered last. */
static lp_status get_following(lp_net *n, const char *url, lp_http_request *req,
                               lp_http_response *resp, char *final_url, lp_error *err)
{
    snprintf(final_url, LP_HTTP_URL_MAX, "%s", url);
    for (int hop = 0;; hop++) {
        lp_status st = lp_net_check_url(n, final_url, err);
        if (st)
            return st;
        req->url = final_url;
        st = lp_http_send(n->http, req, resp, err);
        if (st || resp->status < 300 || resp->status > 399 || !resp->location[0])
            return st;
        if (hop == MAX_REDIRECTS)
            return lp_error_set(err, LP_ERR_NETWORK, "GET %s: more than %d redirects", url,
                                MAX_REDIRECTS);
        snprintf(final_url, LP_HTTP_URL_MAX, "%s", resp->location);
    }
}

static lp_status tuf_fetch(lp_fetcher *self, const char *url, uint64_t max_len,
                           lp_fetch_sink sink, void *sink_ctx, lp_error *err)
{
    lp_net *n = ((tuf_fetcher *)self)->net;
    char *final_url = malloc(LP_HTTP_URL_MAX);
    lp_http_response *resp = malloc(sizeof *resp);
    if (!final_url || !resp) {
        free(final_url);
        free(resp);
        return lp_error_set(err, LP_ERR_NOMEM, "GET %s: out of memory", url);
    }
    counting_sink cs = {.sink = sink, .ctx = sink_ctx};
    lp_status st = LP_OK;
    char cause[CAUSE_MAX];
    for (uint32_t attempt = 1;; attempt++) {
        lp_http_request req = {.max_len = max_len, .sink = count_sink, .sink_ctx = &cs};
        st = get_following(n, url, &req, resp, final_url, err);
        int64_t retry_after = -1;
        if (st == LP_ERR_NETWORK && cs.delivered == 0) {
            snprintf(cause, sizeof cause, "%s", err ? err->msg : "network error");
        } else if (st) {
            break; /* policy, size, sink, or a body cut after bytes reached the sink */
        } else if (resp->status >= 200 && resp->status <= 299) {
            break;
        } else if (resp->status == 404 || resp->status == 410) {
            st = lp_error_set(err, LP_ERR_NOT_FOUND, "GET %s: HTTP %ld", final_url,
                              resp->status);
            break;
        } else if (status_retryable(resp->status) && cs.delivered == 0) {
            describe_status(cause, sizeof cause, final_url, resp);
            retry_after = retry_after_of(resp);
        } else {
            describe_status(cause, sizeof cause, final_url, resp);
            st = lp_error_set(err, LP_ERR_NETWORK, "%s", cause);
            break;
        }
        char what[LP_HTTP_URL_MAX + 8];
        snprintf(what, sizeof what, "GET %s", url);
        if ((st = retry_wait(n, attempt, retry_after, what, cause, err)))
            break;
    }
    free(final_url);
    free(resp);
    return st;
}

/* ---- opening -------------------------------------------------------------- */

static char *strip_slashes(const char *s)
{
    char *r = strdup(s);
    if (!r)
        return NULL;
    size_t n = strlen(r);
    while (n > 0 && r[n - 1] == '/')
        r[--n] = '\0';
    return r;
}

static void seed_random(lp_net *n)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)n;
    n->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
}

lp_status lp_net_open(const lp_net_config *cfg, lp_net **out, lp_error *err)
{
    if (!out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "network: no output pointer");
    *out = NULL;
    if (!cfg || !cfg->server_url || !cfg->server_url[0] || !cfg->state_dir ||
        !cfg->state_dir[0])
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "network: server_url and state_dir are required");
    if (!app_name_ok(cfg->app))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "network: app name '%s' is not 1..%u characters of a-z 0-9 . _ -",
                            cfg->app ? cfg->app : "", LP_NET_MAX_APP);
    if (strlen(cfg->server_url) > LP_HTTP_URL_MAX - 256)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "network: server URL longer than %d bytes",
                            LP_HTTP_URL_MAX - 256);
    lp_net *n = calloc(1, sizeof *n);
    if (!n)
        return lp_error_set(err, LP_ERR_NOMEM, "network: out of memory");
    n->server = strip_slashes(cfg->server_url);
    n->app = strdup(cfg->app);
    n->state_dir = strdup(cfg->state_dir);
    n->downloads_dir = lp_path_join(cfg->state_dir, "downloads");
    lp_status st = LP_OK;
    if (!n->server || !n->app || !n->state_dir || !n->downloads_dir)
        st = lp_error_set(err, LP_ERR_NOMEM, "network: out of memory");
    size_t nh = 0;
    for (const char *const *h = cfg->allowed_hosts; h && *h; h++)
        nh++;
    if (!st && cfg->allowed_hosts) {
        n->allowed = calloc(nh + 1, sizeof *n->allowed);
        for (size_t i = 0; n->allowed && i < nh; i++)
            if (!(n->allowed[i] = strdup(cfg->allowed_hosts[i])))
                st = lp_error_set(err, LP_ERR_NOMEM, "network: out of memory");
        if (!n->allowed)
            st = lp_error_set(err, LP_ERR_NOMEM, "network: out of memory");
    }
    n->allow_http = cfg->allow_http;
    n->attempts = cfg->attempts ? cfg->attempts : LP_NET_DEFAULT_ATTEMPTS;
    n->base_ms = cfg->backoff_base_ms ? cfg->backoff_base_ms : LP_NET_DEFAULT_BACKOFF_BASE_MS;
    n->max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : LP_NET_DEFAULT_BACKOFF_MAX_MS;
    if (n->max_ms < n->base_ms)
        n->max_ms = n->base_ms;
    n->retry_after_max_s =
        cfg->retry_after_max_s ? cfg->retry_after_max_s : LP_NET_DEFAULT_RETRY_AFTER_MAX_S;
    n->progress = cfg->progress;
    n->progress_ctx = cfg->progress_ctx;
    if (!st && cfg->device_token) {
        bool ok = cfg->device_token[0] != '\0' && strlen(cfg->device_token) <= 512;
        for (const char *p = cfg->device_token; ok && *p; p++)
            ok = *p > 0x20 && *p < 0x7f;
        if (!ok)
            st = lp_error_set(err, LP_ERR_INVALID_ARG,
                              "network: the device token must be 1..512 printable characters "
                              "without spaces");
        else if (!(n->auth_header = lp_str_printf("Authorization: Bearer %s", cfg->device_token)))
            st = lp_error_set(err, LP_ERR_NOMEM, "network: out of memory");
    }
    seed_random(n);
    if (!st)
        st = lp_http_fetcher_new(&n->http, &cfg->http, err);
    if (!st && (st = lp_net_check_url(n, n->server, err)))
        lp_error_prefix(err, st, "network: server URL");
    if (st) {
        lp_net_close(n);
        return st;
    }
    n->tuf.base.fetch = tuf_fetch;
    n->tuf.base.destroy = NULL; /* owned by the lp_net */
    n->tuf.net = n;
    *out = n;
    return LP_OK;
}

void lp_net_close(lp_net *n)
{
    if (!n)
        return;
    if (n->http)
        n->http->destroy(n->http);
    for (char **h = n->allowed; h && *h; h++)
        free(*h);
    free(n->allowed);
    free(n->server);
    free(n->app);
    free(n->state_dir);
    free(n->downloads_dir);
    free(n->auth_header);
    free(n);
}

lp_fetcher *lp_net_tuf_fetcher(lp_net *n)
{
    return &n->tuf.base;
}

lp_status lp_net_open_tuf(lp_net *n, lp_tuf_client **out, lp_error *err)
{
    if (!n || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "open TUF client: no connection or output");
    *out = NULL;
    char *meta_dir = lp_path_join(n->state_dir, "metadata");
    char *meta = lp_str_printf("%s/v1/apps/%s/metadata", n->server, n->app);
    char *targets = lp_str_printf("%s/v1/apps/%s/targets", n->server, n->app);
    lp_status st = LP_OK;
    if (!meta_dir || !meta || !targets)
        st = lp_error_set(err, LP_ERR_NOMEM, "open TUF client: out of memory");
    if (!st) {
        lp_tuf_client_config cfg = {.metadata_dir = meta_dir,
                                    .metadata_url = meta,
                                    .targets_url = targets,
                                    .fetcher = &n->tuf.base};
        st = lp_tuf_client_open(out, &cfg, err);
    }
    free(meta_dir);
    free(meta);
    free(targets);
    return st;
}

/* ---- POST (event batches) ---------------------------------------------- */

lp_status lp_net_post_app_json(lp_net *n, const char *path, const char *body, size_t len,
                               long *status, char *what, size_t cap, lp_error *err)
{
    *status = 0;
    if (cap)
        what[0] = '\0';
    char *url = lp_str_printf("%s/v1/apps/%s/%s", n->server, n->app, path);
    lp_http_response *resp = malloc(sizeof *resp);
    lp_status st = LP_OK;
    if (!url || !resp)
        st = lp_error_set(err, LP_ERR_NOMEM, "POST: out of memory");
    if (!st)
        st = lp_net_check_url(n, url, err);
    if (!st) {
        const char *headers[] = {"Content-Type: application/json", "Expect:", n->auth_header,
                                 NULL};
        lp_http_request req = {.method = "POST", .url = url, .headers = headers, .body = body,
                               .body_len = len, .max_len = POST_ANSWER_MAX};
        st = lp_http_send(n->http, &req, resp, err);
    }
    if (!st) {
        *status = resp->status;
        if (resp->error_body[0])
            snprintf(what, cap, "POST %s: HTTP %ld: %s", url, resp->status, resp->error_body);
        else
            snprintf(what, cap, "POST %s: HTTP %ld", url, resp->status);
    }
    free(url);
    free(resp);
    return st;
}

/* ---- resumable downloads (blobs and deltas) ------------------------------------- */

typedef enum try_outcome { TRY_DONE, TRY_RETRY, TRY_FATAL } try_outcome;

typedef enum sink_failure { SINK_OK = 0, SINK_BAD_RANGE, SINK_TOO_LONG, SINK_IO } sink_failure;

/* One download: a URL, an exact size, a partial file, and the content's
 * SHA-256 when it is known in advance (blobs; NULL for deltas). */
typedef struct dl_job {
    lp_net *n;
    const lp_net_dl *d;
    const char *what;      /* d->what: starts every message */
    uint64_t size;
    const char *part;
    int fd;
    lp_hash_ctx *h;        /* NULL when no hash is known in advance */
    uint64_t have;         /* bytes in the partial file (all hashed, when hashing) */
    uint64_t resumed;      /* of which came from before this try */
    bool restarted;        /* a fresh download was already forced after a mismatch */
    bool restart_now;      /* ... and is due now (not counted as an attempt) */
    lp_status fatal;       /* the status of a TRY_FATAL outcome */
    const lp_http_response *resp;
    uint64_t asked_from;   /* the Range start of the request (0: none) */
    bool decided;          /* the answer's status was looked at */
    sink_failure failure;
    char cause[CAUSE_MAX];
    int64_t retry_after;
} dl_job;

static lp_status job_reset_hash(dl_job *j, lp_error *err)
{
    lp_hash_free(j->h);
    j->h = NULL;
    return j->d->sha256 ? lp_hash_new(&j->h, LP_HASH_SHA256, err) : LP_OK;
}

/* Empties the partial file and the hash. */
static lp_status job_truncate(dl_job *j, lp_error *err)
{
    if (ftruncate(j->fd, 0) != 0 || lseek(j->fd, 0, SEEK_SET) != 0)
        return lp_error_set(err, LP_ERR_IO, "truncate %s: %s", j->part, strerror(errno));
    j->have = 0;
    j->resumed = 0;
    return job_reset_hash(j, err);
}

static lp_status job_sink(void *ctx, const void *data, size_t len, lp_error *err)
{
    dl_job *j = ctx;
    if (!j->decided) {
        j->decided = true;
        long code = j->resp->status;
        if (code == 206) {
            uint64_t first, last, total;
            if (!lp_net_parse_content_range(j->resp->content_range, &first, &last, &total) ||
                first != j->asked_from || j->asked_from != j->have ||
                (total != UINT64_MAX && total != j->size) || last >= j->size) {
                j->failure = SINK_BAD_RANGE;
                return lp_error_set(err, LP_ERR_NETWORK,
                                    "%s: 206 answer with Content-Range '%s' does not "
                                    "continue at byte %llu of %llu",
                                    j->what, j->resp->content_range,
                                    (unsigned long long)j->have, (unsigned long long)j->size);
            }
        } else if (j->have > 0) {
            /* A 200: the server sends the whole file, so start over. */
            lp_status st = job_truncate(j, err);
            if (st) {
                j->failure = SINK_IO;
                return st;
            }
        }
    }
    if (len > j->size - j->have) {
        j->failure = SINK_TOO_LONG;
        return lp_error_set(err, LP_ERR_LENGTH_MISMATCH,
                            "%s: the server sends more than the %llu bytes %s lists", j->what,
                            (unsigned long long)j->size, j->d->size_from);
    }
    lp_status st = j->h ? lp_hash_update(j->h, data, len, err) : LP_OK;
    if (st) {
        j->failure = SINK_IO;
        return st;
    }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(j->fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            j->failure = SINK_IO;
            return lp_error_set(err, LP_ERR_IO, "write %s: %s", j->part,
                                w < 0 ? strerror(errno) : "nothing written");
        }
        p += w;
        left -= (size_t)w;
    }
    j->have += len;
    if (j->n->progress)
        j->n->progress(j->n->progress_ctx, j->d->progress_id, j->have, j->size);
    return LP_OK;
}

/* Opens the partial file and, when a hash is known, hashes what it holds. */
static lp_status job_open(dl_job *j, lp_error *err)
{
    j->fd = open(j->part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (j->fd < 0)
        return lp_error_set(err, LP_ERR_IO, "open %s: %s", j->part, strerror(errno));
    struct stat sb;
    if (fstat(j->fd, &sb) != 0)
        return lp_error_set(err, LP_ERR_IO, "stat %s: %s", j->part, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return lp_error_set(err, LP_ERR_IO, "%s: not a regular file", j->part);
    lp_status st = job_reset_hash(j, err);
    if (st)
        return st;
    j->have = 0;
    j->resumed = 0;
    if ((uint64_t)sb.st_size > j->size)
        return job_truncate(j, err);
    uint64_t left = (uint64_t)sb.st_size;
    if (!j->h) {
        if (lseek(j->fd, 0, SEEK_END) < 0)
            return lp_error_set(err, LP_ERR_IO, "seek %s: %s", j->part, strerror(errno));
        j->have = j->resumed = left;
        return LP_OK;
    }
    while (left) {
        size_t want = left < IO_BUF_SIZE ? (size_t)left : IO_BUF_SIZE;
        ssize_t r = read(j->fd, j->n->buf, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return lp_error_set(err, LP_ERR_IO, "read %s: %s", j->part,
                                r < 0 ? strerror(errno) : "file shrank while being read");
        if ((st = lp_hash_update(j->h, j->n->buf, (size_t)r, err)))
            return st;
        left -= (uint64_t)r;
        j->have += (uint64_t)r;
    }
    j->resumed = j->have;
    return LP_OK;
}

static void job_close(dl_job *j)
{
    if (j->fd >= 0)
        close(j->fd);
    j->fd = -1;
    lp_hash_free(j->h);
    j->h = NULL;
}

/* Removes the partial file (the content is wrong). */
static void job_discard(dl_job *j)
{
    job_close(j);
    if (unlink(j->part) == 0)
        lp_file_sync_parent(j->part, NULL);
}

/* Requests what is missing; classifies the answer. */
static try_outcome job_request(dl_job *j, lp_error *err)
{
    lp_net *n = j->n;
    char *final_url = malloc(LP_HTTP_URL_MAX);
    lp_http_response *resp = malloc(sizeof *resp);
    if (!final_url || !resp) {
        free(final_url);
        free(resp);
        j->fatal = lp_error_set(err, LP_ERR_NOMEM, "%s: out of memory", j->what);
        return TRY_FATAL;
    }
    j->resp = resp;
    j->decided = false;
    j->failure = SINK_OK;
    j->asked_from = j->have;
    lp_http_request req = {.range_from = j->have, .max_len = j->size, .sink = job_sink,
                           .sink_ctx = j};
    lp_error e;
    lp_error_clear(&e);
    lp_status st = get_following(n, j->d->url, &req, resp, final_url, &e);
    try_outcome out = TRY_DONE;
    if (st && j->failure == SINK_BAD_RANGE) {
        snprintf(j->cause, sizeof j->cause, "%s", e.msg);
        lp_error_clear(&e);
        out = job_truncate(j, &e) ? TRY_FATAL : TRY_RETRY;
    } else if (st && (j->failure == SINK_TOO_LONG || st == LP_ERR_TOO_LARGE)) {
        job_discard(j);
        lp_error_set(&e, LP_ERR_LENGTH_MISMATCH,
                     "%s: the server sends more than the %llu bytes %s lists; the partial "
                     "download was deleted",
                     j->what, (unsigned long long)j->size, j->d->size_from);
        out = TRY_FATAL;
    } else if (st == LP_ERR_NETWORK && j->failure == SINK_OK) {
        snprintf(j->cause, sizeof j->cause, "%s", e.msg);
        out = TRY_RETRY; /* what arrived stays in the partial file */
    } else if (st) {
        out = TRY_FATAL; /* policy, I/O, memory */
    } else if (resp->status == 206 && j->have < j->size) {
        /* A whole answer that covers less than asked: go on from there. */
        snprintf(j->cause, sizeof j->cause,
                 "GET %s: HTTP 206 ended at byte %llu of %llu (Content-Range '%s')", final_url,
                 (unsigned long long)j->have, (unsigned long long)j->size, resp->content_range);
        out = TRY_RETRY;
    } else if (resp->status >= 200 && resp->status <= 299) {
        out = TRY_DONE;
    } else if (resp->status == 416) {
        snprintf(j->cause, sizeof j->cause,
                 "GET %s: HTTP 416: the server has no bytes from %llu on", final_url,
                 (unsigned long long)j->have);
        out = job_truncate(j, &e) ? TRY_FATAL : TRY_RETRY;
    } else if (resp->status == 404 || resp->status == 410) {
        lp_error_set(&e, LP_ERR_NOT_FOUND, "%s: not on the server (GET %s: HTTP %ld)", j->what,
                     final_url, resp->status);
        out = TRY_FATAL;
    } else if (status_retryable(resp->status)) {
        describe_status(j->cause, sizeof j->cause, final_url, resp);
        j->retry_after = retry_after_of(resp);
        out = TRY_RETRY;
    } else {
        char cause[CAUSE_MAX];
        describe_status(cause, sizeof cause, final_url, resp);
        lp_error_set(&e, LP_ERR_NETWORK, "%s: %s", j->what, cause);
        out = TRY_FATAL;
    }
    if (out == TRY_FATAL) {
        j->fatal = e.code ? e.code : LP_ERR_NETWORK;
        if (err)
            *err = e;
    }
    j->resp = NULL;
    free(final_url);
    free(resp);
    return out;
}

/* Checks the complete partial file (size, and the hash when known);
 * TRY_DONE leaves it fsync'd when d->sync. */
static try_outcome job_verify(dl_job *j, lp_error *err)
{
    if (j->have != j->size) {
        uint64_t got = j->have;
        job_discard(j);
        j->fatal = lp_error_set(err, LP_ERR_LENGTH_MISMATCH,
                                "%s: the server sent %llu bytes, %s lists %llu; the partial "
                                "download was deleted",
                                j->what, (unsigned long long)got, j->d->size_from,
                                (unsigned long long)j->size);
        return TRY_FATAL;
    }
    if (j->h) {
        uint8_t md[LP_HASH_MAX_LEN];
        char hex[2 * LP_SHA256_LEN + 1];
        if ((j->fatal = lp_hash_final(j->h, md, err)))
            return TRY_FATAL;
        lp_hex_encode(md, LP_SHA256_LEN, hex);
        if (strcmp(hex, j->d->sha256) != 0) {
            uint64_t resumed = j->resumed;
            job_discard(j);
            if (resumed > 0 && !j->restarted) {
                j->restarted = true;
                j->restart_now = true;
                snprintf(j->cause, sizeof j->cause,
                         "%s: content hash %s does not match after resuming at byte %llu; "
                         "starting over",
                         j->what, hex, (unsigned long long)resumed);
                return TRY_RETRY;
            }
            j->fatal = lp_error_set(err, LP_ERR_HASH_MISMATCH,
                                    "%s: the downloaded content has SHA-256 %s; the partial "
                                    "download was deleted",
                                    j->what, hex);
            return TRY_FATAL;
        }
    }
    if (j->d->sync && fsync(j->fd) != 0) {
        j->fatal = lp_error_set(err, LP_ERR_IO, "fsync %s: %s", j->part, strerror(errno));
        return TRY_FATAL;
    }
    return TRY_DONE;
}

lp_status lp_net_download(lp_net *n, const lp_net_dl *d, lp_error *err)
{
    if (!n || !d || !d->url || !d->what || !d->size_from || !d->part)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "download: missing argument");
    lp_status st = lp_net_check_url(n, d->url, err);
    if (!st)
        st = lp_file_mkdirs(n->downloads_dir, 0700, err);
    dl_job j = {.n = n, .d = d, .what = d->what, .size = d->size, .part = d->part, .fd = -1};
    for (uint32_t attempt = 1; !st; attempt++) {
        j.retry_after = -1;
        try_outcome out = TRY_FATAL;
        if ((st = job_open(&j, err)))
            break;
        out = j.have < j.size ? job_request(&j, err) : TRY_DONE;
        if (out == TRY_DONE)
            out = job_verify(&j, err);
        job_close(&j);
        if (out == TRY_DONE)
            break;
        if (out == TRY_FATAL) {
            st = j.fatal ? j.fatal : LP_ERR_NETWORK;
            break;
        }
        if (j.restart_now) { /* content resumed from an earlier run was wrong */
            j.restart_now = false;
            attempt--;
            continue;
        }
        st = retry_wait(n, attempt, j.retry_after, d->what, j.cause, err);
    }
    job_close(&j);
    return st;
}

const char *lp_net_downloads_dir(const lp_net *n)
{
    return n->downloads_dir;
}

const char *lp_net_app(const lp_net *n)
{
    return n->app;
}

char *lp_net_url(const lp_net *n, bool in_app, const char *path)
{
    return in_app ? lp_str_printf("%s/v1/apps/%s/%s", n->server, n->app, path)
                  : lp_str_printf("%s/v1/%s", n->server, path);
}

/* Moves the verified partial file to dest (copying across file systems);
 * with `sync`, the folder of dest is fsync'd. */
static lp_status move_into_place(lp_net *n, const char *part, const char *dest, bool sync,
                                 lp_error *err)
{
    if (rename(part, dest) == 0)
        return sync ? lp_file_sync_parent(dest, err) : LP_OK;
    if (errno != EXDEV)
        return lp_error_set(err, LP_ERR_IO, "rename %s to %s: %s", part, dest, strerror(errno));
    size_t cap = strlen(dest) + 32;
    char *tmp = malloc(cap);
    if (!tmp)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    int out = -1, in = open(part, O_RDONLY | O_CLOEXEC);
    lp_status st = in < 0 ? lp_error_set(err, LP_ERR_IO, "open %s: %s", part, strerror(errno))
                          : lp_file_open_tmp(dest, 0600, tmp, cap, &out, err);
    while (!st) {
        ssize_t r = read(in, n->buf, IO_BUF_SIZE);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            st = lp_error_set(err, LP_ERR_IO, "read %s: %s", part, strerror(errno));
        if (r <= 0)
            break;
        st = lp_file_write_all(out, n->buf, (size_t)r, tmp, err);
    }
    if (in >= 0)
        close(in);
    if (!st) {
        st = lp_file_commit_tmp(out, tmp, dest, err);
    } else if (out >= 0) {
        close(out);
        unlink(tmp);
    }
    if (!st && unlink(part) == 0)
        lp_file_sync_parent(part, NULL);
    free(tmp);
    return st;
}

static lp_status fetch_blob(void *net, const char *sha256, uint64_t size, const char *dest_path,
                            bool sync, lp_error *err)
{
    lp_net *n = net;
    if (!n || !dest_path || !dest_path[0])
        return lp_error_set(err, LP_ERR_INVALID_ARG, "fetch blob: no connection or destination");
    if (!lp_net_is_sha256_hex(sha256))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "fetch blob: '%.80s' is not 64 lower-case hex digits",
                            sha256 ? sha256 : "");
    char *url = lp_str_printf("%s/v1/blobs/%s", n->server, sha256);
    char *part = lp_str_printf("%s/%s.part", n->downloads_dir, sha256);
    char what[80];
    snprintf(what, sizeof what, "blob %s", sha256);
    lp_status st = LP_OK;
    if (!url || !part)
        st = lp_error_set(err, LP_ERR_NOMEM, "fetch blob %s: out of memory", sha256);
    if (!st) {
        lp_net_dl d = {.url = url, .what = what, .size_from = "the manifest",
                             .sha256 = sha256, .progress_id = sha256, .size = size,
                             .part = part, .sync = sync};
        st = lp_net_download(n, &d, err);
    }
    if (!st)
        st = move_into_place(n, part, dest_path, sync, err);
    free(url);
    free(part);
    return st;
}

lp_status lp_net_fetch_blob(void *net, const char *sha256, uint64_t size, const char *dest_path,
                            lp_error *err)
{
    return fetch_blob(net, sha256, size, dest_path, true, err);
}

lp_status lp_net_fetch_blob_unsynced(void *net, const char *sha256, uint64_t size,
                                     const char *dest_path, lp_error *err)
{
    return fetch_blob(net, sha256, size, dest_path, false, err);
}
