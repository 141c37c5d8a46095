/*
 * http.c — the libcurl fetcher (see include/livepush/fetch.h).
 *
 * One fetcher owns one curl easy handle for its whole life, so consecutive
 * fetches from the same server reuse the connection (HTTP keep-alive).  The
 * options that never change (protocols, redirects, timeouts, TLS checks) are
 * set once when the fetcher is made; each fetch sets only the URL, the size
 * limit and the per-transfer state its write callback uses.
 *
 * Process-wide initialisation: libcurl wants curl_global_init called once
 * before any handle exists.  lp_http_fetcher_new calls
 * curl_global_init(CURL_GLOBAL_DEFAULT) under pthread_once, so it runs exactly
 * once however many threads make fetchers, and curl_global_cleanup is never
 * called, so an application that also uses libcurl is not disturbed (libcurl's
 * own init is reference counted; ours is simply never released).
 *
 * Policy:
 *   - protocols http, https and file; redirects (at most 5) only to http and
 *     https, so a server can never point the client at a local file;
 *   - TLS peer and host name are always verified;
 *   - no Accept-Encoding is sent, so the bytes counted are the bytes that
 *     arrive (a compressed "bomb" cannot expand past the limit);
 *   - an HTTP status outside 2xx fails: 404 and 410 as LP_ERR_NOT_FOUND, any
 *     other as LP_ERR_NETWORK "GET <url>: HTTP <code>"; no error body ever
 *     reaches the sink;
 *   - the body is bounded: a Content-Length above the limit fails before any
 *     byte is read (CURLOPT_MAXFILESIZE_LARGE), and the write callback counts
 *     bytes and stops the transfer as soon as the next chunk would pass the
 *     limit, without handing that chunk to the sink (LP_ERR_TOO_LARGE);
 *   - a sink's error stops the transfer and is returned unchanged, with the
 *     message the sink wrote.
 *
 * Timeout defaults (lp_http_options fields left 0): connect 10 s, no total
 * limit, and a transfer slower than 1 byte/s for 30 s is abandoned.
 *
 * lp_http_send (one request with method, headers, range and the response's
 * status and headers) borrows the same handle: it changes only per-transfer
 * options (redirects off, no fail-on-error, its own write and header
 * callbacks, headers, range, POST body) and puts every one of them back to
 * the fetcher's settings before it returns, so a later fetch sees the handle
 * exactly as configured.  Its header callback keeps only the last response's
 * headers (a "100 Continue" or a redirect's headers are dropped when the next
 * status line arrives).
 */
#include "livepush/fetch.h"

#include "core/buf.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_LOW_SPEED_BYTES 1L
#define DEFAULT_LOW_SPEED_SECS 30L
#define MAX_REDIRECTS 5L

typedef struct http_fetcher {
    lp_fetcher base; /* first member: lp_fetcher* and http_fetcher* convert */
    CURL *curl;
    char *user_agent;
    char errbuf[CURL_ERROR_SIZE];
} http_fetcher;

/* State of one transfer, seen by the write callback. */
typedef struct transfer {
    CURL *curl;
    uint64_t max;
    uint64_t got;
    lp_fetch_sink sink;
    void *sink_ctx;
    lp_error *err;         /* the caller's; the sink writes its error here */
    lp_status sink_status; /* non-zero once the sink failed */
    bool too_large;        /* the body passed max */
    bool status_checked;   /* the HTTP status was looked at */
    long bad_status;       /* a non-2xx final status seen before the body */
} transfer;

/* ---- process-wide libcurl initialisation ------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- the transfer ------------------------------------------------------ */

/* True for an HTTP(S) status that is not a success.  file:// has no status
 * (curl reports 0). */
static bool status_is_failure(long code)
{
    return code != 0 && (code < 200 || code > 299);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    transfer *t = userdata;
    size_t n = size * nmemb; /* curl documents size as always 1 */
    if (!t->status_checked) {
        t->status_checked = true;
        long code = 0;
        curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
        if (status_is_failure(code)) {
            t->bad_status = code;
            return n ? 0 : 1; /* any value other than n stops the transfer */
        }
    }
    if (n == 0)
        return 0;
    if (n > t->max - t->got) {
        t->too_large = true;
        return 0;
    }
    lp_status st = t->sink(t->sink_ctx, data, n, t->err);
    if (st) {
        t->sink_status = st;
        return 0;
    }
    t->got += n;
    return n;
}

static lp_status status_error(const char *url, long code, lp_error *err)
{
    lp_status st = (code == 404 || code == 410) ? LP_ERR_NOT_FOUND : LP_ERR_NETWORK;
    return lp_error_set(err, st, "GET %s: HTTP %ld", url, code);
}

static lp_status too_large_error(const char *url, uint64_t max, lp_error *err)
{
    return lp_error_set(err, LP_ERR_TOO_LARGE, "GET %s: response exceeds the limit of %llu bytes",
                        url, (unsigned long long)max);
}

static lp_status http_fetch(lp_fetcher *self, const char *url, uint64_t max_len,
                            lp_fetch_sink sink, void *sink_ctx, lp_error *err)
{
    http_fetcher *f = (http_fetcher *)self;
    if (!f || !url || !*url || !sink)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "fetch: missing fetcher, URL or sink");

    transfer t = {.curl = f->curl, .max = max_len, .sink = sink, .sink_ctx = sink_ctx, .err = err};
    /* 0 means "no limit" to curl; the write callback enforces every limit,
     * including 0 and values curl_off_t cannot hold. */
    curl_off_t early = max_len > 0 && max_len <= (uint64_t)INT64_MAX ? (curl_off_t)max_len : 0;
    f->errbuf[0] = '\0';
    if (curl_easy_setopt(f->curl, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(f->curl, CURLOPT_WRITEDATA, &t) != CURLE_OK ||
        curl_easy_setopt(f->curl, CURLOPT_MAXFILESIZE_LARGE, early) != CURLE_OK)
        return lp_error_set(err, LP_ERR_NOMEM, "GET %s: could not set up the transfer", url);

    CURLcode rc = curl_easy_perform(f->curl);
    curl_easy_setopt(f->curl, CURLOPT_WRITEDATA, NULL); /* t goes out of scope */

    if (t.sink_status)
        return t.sink_status;
    if (t.too_large || rc == CURLE_FILESIZE_EXCEEDED)
        return too_large_error(url, max_len, err);
    if (t.bad_status)
        return status_error(url, t.bad_status, err);
    long code = 0;
    curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &code);
    switch (rc) {
    case CURLE_OK:
        if (status_is_failure(code)) /* a failure status with an empty body */
            return status_error(url, code, err);
        return LP_OK;
    case CURLE_HTTP_RETURNED_ERROR:
        return status_error(url, code, err);
    case CURLE_FILE_COULDNT_READ_FILE:
        return lp_error_set(err, LP_ERR_NOT_FOUND, "GET %s: %s", url,
                            f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc));
    case CURLE_OUT_OF_MEMORY:
        return lp_error_set(err, LP_ERR_NOMEM, "GET %s: out of memory", url);
    default:
        return lp_error_set(err, LP_ERR_NETWORK, "GET %s: %s", url,
                            f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc));
    }
}

static void http_destroy(lp_fetcher *self)
{
    http_fetcher *f = (http_fetcher *)self;
    if (!f)
        return;
    curl_easy_cleanup(f->curl);
    free(f->user_agent);
    free(f);
}

/* ---- construction ------------------------------------------------------ */

static long or_default(long v, long def)
{
    return v ? v : def;
}

static CURLcode set_protocols(CURL *c)
{
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 */
    CURLcode rc = curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file");
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    CURLcode rc = curl_easy_setopt(c, CURLOPT_PROTOCOLS,
                                   (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS | CURLPROTO_FILE));
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    return rc;
}

static CURLcode configure(http_fetcher *f, const lp_http_options *o)
{
    CURL *c = f->curl;
    CURLcode rc = set_protocols(c);
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, MAX_REDIRECTS);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_FAILONERROR, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, or_default(o->connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT_MS));
    SET(CURLOPT_TIMEOUT_MS, o->total_timeout_ms);
    SET(CURLOPT_LOW_SPEED_LIMIT, or_default(o->low_speed_bytes, DEFAULT_LOW_SPEED_BYTES));
    SET(CURLOPT_LOW_SPEED_TIME, or_default(o->low_speed_secs, DEFAULT_LOW_SPEED_SECS));
    SET(CURLOPT_USERAGENT, f->user_agent);
    SET(CURLOPT_ERRORBUFFER, f->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
#undef SET
    return rc;
}

lp_status lp_http_fetcher_new(lp_fetcher **out, const lp_http_options *opts, lp_error *err)
{
    if (!out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "http fetcher: no output pointer");
    *out = NULL;
    const lp_http_options none = {0};
    const lp_http_options *o = opts ? opts : &none;
    if (o->connect_timeout_ms < 0 || o->total_timeout_ms < 0 || o->low_speed_bytes < 0 ||
        o->low_speed_secs < 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "http fetcher: negative timeout or speed");

    pthread_once(&curl_once, curl_init_once);
    if (curl_init_result != CURLE_OK)
        return lp_error_set(err, LP_ERR_NETWORK, "http fetcher: curl_global_init failed: %s",
                            curl_easy_strerror(curl_init_result));

    http_fetcher *f = calloc(1, sizeof *f);
    if (!f)
        return lp_error_set(err, LP_ERR_NOMEM, "http fetcher: out of memory");
    f->base.fetch = http_fetch;
    f->base.destroy = http_destroy;
    f->user_agent = strdup(o->user_agent ? o->user_agent : "livepush/" LP_VERSION_STRING);
    if (!f->user_agent) {
        free(f);
        return lp_error_set(err, LP_ERR_NOMEM, "http fetcher: out of memory");
    }
    f->curl = curl_easy_init();
    if (!f->curl) {
        http_destroy(&f->base);
        return lp_error_set(err, LP_ERR_NETWORK, "http fetcher: curl_easy_init failed");
    }
    CURLcode rc = configure(f, o);
    if (rc != CURLE_OK) {
        http_destroy(&f->base);
        return lp_error_set(err, rc == CURLE_OUT_OF_MEMORY ? LP_ERR_NOMEM : LP_ERR_NETWORK,
                            "http fetcher: setting up curl: %s", curl_easy_strerror(rc));
    }
    *out = &f->base;
    return LP_OK;
}

/* ---- fetch into memory ------------------------------------------------- */

static lp_status buf_sink(void *ctx, const void *data, size_t len, lp_error *err)
{
    return lp_buf_append(ctx, data, len, err);
}

lp_status lp_fetch_to_buffer(lp_fetcher *f, const char *url, uint64_t max_len, uint8_t **data,
                             size_t *len, lp_error *err)
{
    if (!f || !f->fetch || !data || !len)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "fetch: missing fetcher or output");
    *data = NULL;
    *len = 0;
    /* The fetcher enforces max_len; the buffer bound is a second guard
     * (0 would mean unbounded to lp_buf, which the fetcher's limit covers). */
    lp_buf b;
    lp_buf_init(&b, max_len < SIZE_MAX ? (size_t)max_len : 0);
    lp_status st = f->fetch(f, url, max_len, buf_sink, &b, err);
    if (st) {
        lp_buf_free(&b);
        return st;
    }
    if (!b.data) { /* empty body: still hand back a NUL-terminated buffer */
        b.data = calloc(1, 1);
        if (!b.data)
            return lp_error_set(err, LP_ERR_NOMEM, "GET %s: out of memory", url);
    }
    *data = lp_buf_steal(&b, len);
    return LP_OK;
}

/* ---- one request, fully described (lp_http_send) ----------------------- */

typedef struct exchange {
    CURL *curl;
    const lp_http_request *req;
    lp_http_response *resp;
    lp_error *err;
    bool status_known;
    bool too_large;
    bool error_body_full;  /* stopped reading a long error body on purpose */
    uint64_t error_bytes;  /* non-2xx body bytes read */
    size_t error_len;      /* bytes kept in resp->error_body */
    lp_status sink_status;
} exchange;

static bool is_success(long code)
{
    return code >= 200 && code <= 299;
}

/* Copies a header value (trimmed) into out when `line` is header `name`. */
static void take_header(const char *line, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return;
    const char *v = line + nl + 1;
    size_t vl = len - nl - 1;
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ' ||
                  v[vl - 1] == '\t'))
        vl--;
    if (vl >= cap)
        vl = cap - 1;
    memcpy(out, v, vl);
    out[vl] = '\0';
}

static size_t on_xheader(char *data, size_t size, size_t nmemb, void *userdata)
{
    exchange *x = userdata;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) { /* a new response begins */
        x->resp->content_range[0] = '\0';
        x->resp->retry_after[0] = '\0';
        return n;
    }
    take_header(data, n, "Content-Range", x->resp->content_range,
                sizeof x->resp->content_range);
    take_header(data, n, "Retry-After", x->resp->retry_after, sizeof x->resp->retry_after);
    return n;
}

static size_t on_xbody(char *data, size_t size, size_t nmemb, void *userdata)
{
    exchange *x = userdata;
    size_t n = size * nmemb;
    if (!x->status_known) {
        x->status_known = true;
        long code = 0;
        curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &code);
        x->resp->status = code;
    }
    if (n == 0)
        return 0;
    if (!is_success(x->resp->status)) {
        /* Keep the start (printable only), read at most a bounded amount. */
        for (size_t i = 0; i < n && x->error_len + 1 < sizeof x->resp->error_body; i++) {
            unsigned char ch = (unsigned char)data[i];
            x->resp->error_body[x->error_len++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : ' ';
        }
        x->resp->error_body[x->error_len] = '\0';
        x->error_bytes += n;
        if (x->error_bytes > LP_HTTP_ERROR_BODY_MAX) {
            x->error_body_full = true;
            return 0;
        }
        return n;
    }
    if (n > x->req->max_len - x->resp->body_bytes) {
        x->too_large = true;
        return 0;
    }
    if (x->req->sink) {
        lp_status st = x->req->sink(x->req->sink_ctx, data, n, x->err);
        if (st) {
            x->sink_status = st;
            return 0;
        }
    }
    x->resp->body_bytes += n;
    return n;
}

static bool scheme_is_http(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* Puts the per-transfer options lp_http_send changed back to the fetcher's
 * settings (see configure). */
static void restore_options(CURL *c)
{
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(c, CURLOPT_RANGE, NULL);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, NULL);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
}

lp_status lp_http_send(lp_fetcher *f, const lp_http_request *req, lp_http_response *resp,
                       lp_error *err)
{
    if (resp)
        memset(resp, 0, sizeof *resp);
    if (!f || f->fetch != http_fetch || !req || !req->url || !resp)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "http request: needs a libcurl fetcher, a request and a response");
    const char *method = req->method ? req->method : "GET";
    bool post = strcmp(method, "POST") == 0;
    if (!post && strcmp(method, "GET") != 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s %s: unsupported method", method,
                            req->url);
    if (!scheme_is_http(req->url))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s %s: only http and https URLs", method,
                            req->url);
    if (post && req->body_len > (size_t)INT64_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "POST %s: body too large", req->url);
    http_fetcher *hf = (http_fetcher *)f;
    CURL *c = hf->curl;
    exchange x = {.curl = c, .req = req, .resp = resp, .err = err};
    struct curl_slist *hdrs = NULL;
    for (const char *const *h = req->headers; h && *h; h++) {
        struct curl_slist *grown = curl_slist_append(hdrs, *h);
        if (!grown) {
            curl_slist_free_all(hdrs);
            return lp_error_set(err, LP_ERR_NOMEM, "%s %s: out of memory", method, req->url);
        }
        hdrs = grown;
    }
    char range[48] = "";
    if (req->range_from)
        snprintf(range, sizeof range, "%llu-", (unsigned long long)req->range_from);

    hf->errbuf[0] = '\0';
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_FAILONERROR, 0L);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)0);
    SET(CURLOPT_WRITEFUNCTION, on_xbody);
    SET(CURLOPT_WRITEDATA, &x);
    SET(CURLOPT_HEADERFUNCTION, on_xheader);
    SET(CURLOPT_HEADERDATA, &x);
    SET(CURLOPT_HTTPHEADER, hdrs);
    SET(CURLOPT_RANGE, range[0] ? range : NULL);
    if (post) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        SET(CURLOPT_POSTFIELDS, req->body_len ? req->body : "");
    } else {
        SET(CURLOPT_HTTPGET, 1L);
    }
#undef SET
    lp_status setup = LP_OK;
    if (rc == CURLE_OK)
        rc = curl_easy_perform(c);
    else
        setup = lp_error_set(err, rc == CURLE_OUT_OF_MEMORY ? LP_ERR_NOMEM : LP_ERR_NETWORK,
                             "%s %s: could not set up the transfer: %s", method, req->url,
                             curl_easy_strerror(rc));
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (!resp->status)
        resp->status = code;
    bool location_too_long = false;
    const char *redirect = NULL;
    if (!setup && resp->status >= 300 && resp->status <= 399 &&
        curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &redirect) == CURLE_OK && redirect) {
        if (strlen(redirect) < sizeof resp->location)
            strcpy(resp->location, redirect);
        else
            location_too_long = true;
    }
    restore_options(c);
    curl_slist_free_all(hdrs);

    if (setup)
        return setup;
    if (x.sink_status)
        return x.sink_status;
    if (x.too_large)
        return too_large_error(req->url, req->max_len, err);
    if (rc == CURLE_OUT_OF_MEMORY)
        return lp_error_set(err, LP_ERR_NOMEM, "%s %s: out of memory", method, req->url);
    if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && x.error_body_full))
        return lp_error_set(err, LP_ERR_NETWORK, "%s %s: %s", method, req->url,
                            hf->errbuf[0] ? hf->errbuf : curl_easy_strerror(rc));
    if (location_too_long)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "%s %s: redirect target longer than %d bytes",
                            method, req->url, LP_HTTP_URL_MAX);
    return LP_OK;
}
