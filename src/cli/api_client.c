/*
 * api_client.c — the management API client of the livepush command (see
 * api_client.h for the contract).
 *
 * One libcurl easy handle per client.  Options that never change (protocols,
 * TLS checks, connect timeout, user agent, error buffer) are set once; each
 * request resets what differs (method, URL, body, headers, timeouts, upload
 * callbacks).  The answer is collected in an lp_buf bounded at
 * LP_CLIENT_MAX_RESPONSE, so a server that sends more is cut off without the
 * excess being kept.  CURLOPT_FAILONERROR is off: the body of an error
 * answer is the message the user needs.
 */
#include "cli/api_client.h"

#include "cli/cli.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/timeutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_MS 10000L
#define PUT_LOW_SPEED_SECS 60L
#define TOKEN_FILE_MAX 4096u

struct lp_client {
    CURL *curl;
    char *base;        /* server URL without trailing '/' */
    char *auth_header; /* "Authorization: Bearer ..." or NULL */
    long timeout_ms;
    long last_status;
    char last_code[64];
    char errbuf[CURL_ERROR_SIZE];
};

/* ---- options ------------------------------------------------------------- */

bool lp_client_opt(lp_client_opts *o, int code, const char *arg)
{
    switch (code) {
    case LP_CLIENT_OPT_SERVER: o->server = arg; return true;
    case LP_CLIENT_OPT_TOKEN: o->token = arg; return true;
    case LP_CLIENT_OPT_TOKEN_FILE: o->token_file = arg; return true;
    case LP_CLIENT_OPT_APP: o->app = arg; return true;
    case LP_CLIENT_OPT_TIMEOUT: o->timeout = arg; return true;
    case LP_CLIENT_OPT_JSON: o->json = true; return true;
    default: return false;
    }
}

static const char *env_or(const char *given, const char *env, const char *def)
{
    if (given)
        return given;
    const char *v = getenv(env);
    return v && *v ? v : def;
}

const char *lp_client_app(const lp_client_opts *o)
{
    return env_or(o->app, "LIVEPUSH_APP", LP_CLIENT_DEFAULT_APP);
}

/* ---- small parsers ------------------------------------------------------- */

lp_status lp_client_parse_int(const char *s, const char *what, long long min, long long max,
                           long long *out, lp_error *err)
{
    if (!s || !*s)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: empty number", what);
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: \"%s\" is not a whole number from %lld to %lld",
                            what, s, min, max);
    *out = v;
    return LP_OK;
}

lp_status lp_client_parse_percent(const char *s, const char *what, int *bp, lp_error *err)
{
    long whole = 0, frac = 0;
    int digits = 0, fdigits = 0;
    const char *p = s ? s : "";
    for (; *p >= '0' && *p <= '9' && digits < 4; p++, digits++)
        whole = whole * 10 + (*p - '0');
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9' && fdigits < 2; p++, fdigits++)
            frac = frac * 10 + (*p - '0');
    if (fdigits == 1)
        frac *= 10;
    if (*p == '%')
        p++;
    long v = whole * 100 + frac;
    if (!digits || *p || v > 10000)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "%s: \"%s\" is not a percentage from 0 to 100 (at most two decimals)",
                            what, s ? s : "");
    *bp = (int)v;
    return LP_OK;
}

lp_status lp_client_parse_size(const char *s, const char *what, uint64_t *out, lp_error *err)
{
    if (!s || *s < '0' || *s > '9')
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: \"%s\" is not a byte count", what,
                            s ? s : "");
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (errno || *end || v > (UINT64_MAX >> 34))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "%s: \"%s\" is not a byte count (digits, optional K, M or G)", what, s);
    *out = (uint64_t)v << shift;
    return LP_OK;
}

/* ---- construction ------------------------------------------------------ */

/* A token must be printable ASCII without spaces: it goes into a header. */
static lp_status check_token(const char *t, const char *where, lp_error *err)
{
    size_t n = strlen(t);
    if (n == 0 || n > LP_CLIENT_TOKEN_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "token from %s: must be 1 to %d characters",
                            where, LP_CLIENT_TOKEN_MAX);
    for (size_t i = 0; i < n; i++)
        if (t[i] <= 0x20 || t[i] >= 0x7f)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "token from %s: character %zu is not printable ASCII", where, i + 1);
    return LP_OK;
}

/* Reads the token file: its first line, blanks around it dropped. */
static lp_status read_token_file(const char *path, char **out, lp_error *err)
{
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_file_read(path, TOKEN_FILE_MAX, &data, &len, err);
    if (st)
        return lp_error_prefix(err, st, "token file %s", path);
    char *s = (char *)data;
    s[strcspn(s, "\r\n")] = 0;
    char *b = s;
    while (*b == ' ' || *b == '\t')
        b++;
    size_t n = strlen(b);
    while (n && (b[n - 1] == ' ' || b[n - 1] == '\t'))
        b[--n] = 0;
    memmove(s, b, n + 1);
    *out = s;
    return LP_OK;
}

static lp_status check_url(const char *url, lp_error *err)
{
    size_t n = strlen(url);
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "server URL \"%s\": must start with http:// or https://", url);
    if (n > 2048)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "server URL: longer than 2048 characters");
    /* messages name the URL, so it must hold no secret */
    if (strchr(url, '@'))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "server URL: user names and passwords in it are not supported "
                            "(the API token goes in --token)");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f || url[i] == '?' || url[i] == '#')
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "server URL \"%s\": no spaces, control characters, query or fragment",
                                url);
    return LP_OK;
}

static CURLcode configure(lp_client *c)
{
    CURL *h = c->curl;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(h, opt, val);                                                    \
    } while (0)
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    SET(CURLOPT_USERAGENT, "livepush/" LP_VERSION_STRING);
    SET(CURLOPT_ERRORBUFFER, c->errbuf);
#undef SET
    return rc;
}

lp_status lp_client_new(lp_client **out, const lp_client_opts *o, lp_error *err)
{
    *out = NULL;
    const char *server = env_or(o->server, "LIVEPUSH_SERVER", LP_CLIENT_DEFAULT_SERVER);
    lp_status st = check_url(server, err);
    if (st)
        return st;
    long long timeout_s = LP_CLIENT_DEFAULT_TIMEOUT_S;
    const char *timeout = env_or(o->timeout, "LIVEPUSH_TIMEOUT", NULL);
    if (timeout && (st = lp_client_parse_int(timeout, "--timeout", 1, 86400, &timeout_s, err)))
        return st;

    char *token = NULL;
    const char *token_from = NULL;
    if (o->token && o->token_file)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "give --token or --token-file, not both");
    if (o->token) {
        token = strdup(o->token);
        token_from = "--token";
    } else if (o->token_file) {
        if ((st = read_token_file(o->token_file, &token, err)))
            return st;
        token_from = o->token_file;
    } else if (getenv("LIVEPUSH_TOKEN") && *getenv("LIVEPUSH_TOKEN")) {
        token = strdup(getenv("LIVEPUSH_TOKEN"));
        token_from = "LIVEPUSH_TOKEN";
    }
    if (token_from && !token)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (token && (st = check_token(token, token_from, err))) {
        free(token);
        return st;
    }

    CURLcode grc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (grc != CURLE_OK) {
        free(token);
        return lp_error_set(err, LP_ERR_NETWORK, "curl_global_init: %s", curl_easy_strerror(grc));
    }
    lp_client *c = calloc(1, sizeof *c);
    if (!c) {
        free(token);
        curl_global_cleanup();
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    c->timeout_ms = (long)timeout_s * 1000L;
    size_t n = strlen(server);
    while (n > 0 && server[n - 1] == '/')
        n--;
    c->base = strndup(server, n);
    if (token) {
        size_t hl = strlen(token) + sizeof "Authorization: Bearer ";
        c->auth_header = malloc(hl);
        if (c->auth_header)
            snprintf(c->auth_header, hl, "Authorization: Bearer %s", token);
        /* wipe the copy: the header is the one place the secret is kept */
        memset(token, 0, strlen(token));
        free(token);
    }
    if (!c->base || (token_from && !c->auth_header)) {
        lp_client_free(c);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    c->curl = curl_easy_init();
    if (!c->curl) {
        lp_client_free(c);
        return lp_error_set(err, LP_ERR_NETWORK, "curl_easy_init failed");
    }
    CURLcode rc = configure(c);
    if (rc != CURLE_OK) {
        lp_client_free(c);
        return lp_error_set(err, LP_ERR_NETWORK, "setting up curl: %s", curl_easy_strerror(rc));
    }
    *out = c;
    return LP_OK;
}

void lp_client_free(lp_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    if (c->auth_header) {
        memset(c->auth_header, 0, strlen(c->auth_header));
        free(c->auth_header);
    }
    free(c->base);
    free(c);
    curl_global_cleanup();
}

const char *lp_client_server(const lp_client *c)
{
    return c->base;
}

long lp_client_last_http_status(const lp_client *c)
{
    return c ? c->last_status : 0;
}

const char *lp_client_last_error_code(const lp_client *c)
{
    return c ? c->last_code : "";
}

/* ---- one request ------------------------------------------------------- */

typedef struct sink {
    lp_buf buf;
    bool too_large;
} sink;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    sink *s = ud;
    size_t n = size * nmemb;
    if (lp_buf_append(&s->buf, data, n, NULL)) {
        s->too_large = true;
        return 0; /* stops the transfer */
    }
    return n;
}

/* Source of a PUT body: a range of a file. */
typedef struct source {
    int fd;
    uint64_t pos, end;
    bool short_read;
    int read_errno;
    lp_client_progress_fn progress;
    void *progress_ctx;
} source;

static size_t on_read(char *dst, size_t size, size_t nitems, void *ud)
{
    source *s = ud;
    size_t want = size * nitems;
    if (want > s->end - s->pos)
        want = (size_t)(s->end - s->pos);
    if (want == 0)
        return 0;
    ssize_t r;
    do
        r = pread(s->fd, dst, want, (off_t)s->pos);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        s->short_read = true;
        s->read_errno = r < 0 ? errno : 0;
        return CURL_READFUNC_ABORT;
    }
    s->pos += (uint64_t)r;
    return (size_t)r;
}

static int on_xfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                   curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal;
    source *s = ud;
    if (s->progress && ulnow >= 0)
        s->progress(s->progress_ctx, (uint64_t)ulnow);
    return 0;
}

static const char *status_text(long code)
{
    switch (code) {
    case 400: return "bad request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not found";
    case 405: return "method not allowed";
    case 409: return "conflict";
    case 413: return "too large";
    case 422: return "unprocessable";
    case 500: return "internal error";
    case 502: return "bad gateway";
    case 503: return "unavailable";
    default: return "error";
    }
}

static lp_status status_for_http(long code, const char *ecode)
{
    switch (code) {
    case 400: return LP_ERR_INVALID_ARG;
    case 404: return LP_ERR_NOT_FOUND;
    case 409: return !strcmp(ecode, "rollback") ? LP_ERR_ROLLBACK : LP_ERR_EXISTS;
    case 413: return LP_ERR_TOO_LARGE;
    case 422: return LP_ERR_MALFORMED;
    default: return LP_ERR_NETWORK;
    }
}

/* Performs the prepared transfer and interprets the answer. */
static lp_status perform(lp_client *c, const char *method, const char *path,
                         struct curl_slist *headers, source *src, json_t **out, lp_error *err)
{
    if (out)
        *out = NULL;
    c->last_status = 0;
    c->last_code[0] = 0;
    c->errbuf[0] = 0;
    size_t ul = strlen(c->base) + strlen(path) + 1;
    char *url = malloc(ul);
    if (!url)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    snprintf(url, ul, "%s%s", c->base, path);

    sink s;
    lp_buf_init(&s.buf, LP_CLIENT_MAX_RESPONSE);
    s.too_large = false;
    CURL *h = c->curl;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(h, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, &s);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)LP_CLIENT_MAX_RESPONSE);
#undef SET
    if (rc == CURLE_OK)
        rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    /* nothing may keep pointing at this frame */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);

    lp_status st = LP_OK;
    if (src && src->short_read) {
        st = lp_error_set(err, LP_ERR_IO, "%s %s: reading the file at byte %llu: %s", method,
                          path, (unsigned long long)src->pos,
                          src->read_errno ? strerror(src->read_errno) : "file is shorter than expected");
    } else if (s.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        st = lp_error_set(err, LP_ERR_TOO_LARGE, "%s %s: answer larger than %u bytes", method, path,
                          LP_CLIENT_MAX_RESPONSE);
    } else if (rc != CURLE_OK) {
        st = lp_error_set(err, rc == CURLE_OUT_OF_MEMORY ? LP_ERR_NOMEM : LP_ERR_NETWORK,
                          "%s %s: %s", method, url, c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
    }
    free(url);
    if (st) {
        lp_buf_free(&s.buf);
        return st;
    }
    c->last_status = code;

    json_t *doc = NULL;
    json_error_t je;
    if (s.buf.len > 0) {
        doc = json_loadb((const char *)s.buf.data, s.buf.len, JSON_REJECT_DUPLICATES, &je);
        if (doc && !json_is_object(doc)) {
            json_decref(doc);
            doc = NULL;
            snprintf(je.text, sizeof je.text, "not a JSON object");
        }
    } else {
        snprintf(je.text, sizeof je.text, "empty body");
    }
    bool ok = code >= 200 && code <= 299;
    if (!ok) {
        const json_t *e = doc ? json_object_get(doc, "error") : NULL;
        const char *ecode = lp_client_str(e, "code");
        const char *emsg = lp_client_str(e, "message");
        snprintf(c->last_code, sizeof c->last_code, "%s", ecode);
        if (*emsg)
            st = lp_error_set(err, status_for_http(code, ecode), "%s %s: HTTP %ld (%s): %s", method,
                              path, code, *ecode ? ecode : status_text(code), emsg);
        else
            st = lp_error_set(err, status_for_http(code, ecode), "%s %s: HTTP %ld (%s)", method,
                              path, code, status_text(code));
        lp_buf_free(&s.buf);
        if (out)
            *out = doc;
        else
            json_decref(doc);
        return st;
    }
    if (!doc) {
        st = lp_error_set(err, LP_ERR_MALFORMED, "%s %s: HTTP %ld: the answer is not JSON: %s",
                          method, path, code, je.text);
        lp_buf_free(&s.buf);
        return st;
    }
    lp_buf_free(&s.buf);
    if (out)
        *out = doc;
    else
        json_decref(doc);
    return LP_OK;
}

static struct curl_slist *add_header(struct curl_slist *l, const char *h, bool *oom)
{
    struct curl_slist *n = curl_slist_append(l, h);
    if (!n) {
        *oom = true;
        return l;
    }
    return n;
}

lp_status lp_client_request(lp_client *c, const char *method, const char *path,
                         const json_t *body, json_t **out, lp_error *err)
{
    if (out)
        *out = NULL;
    char *text = NULL;
    if (body && !(text = json_dumps(body, JSON_COMPACT)))
        return lp_error_set(err, LP_ERR_NOMEM, "%s %s: could not encode the request", method, path);
    bool oom = false;
    struct curl_slist *hl = NULL;
    hl = add_header(hl, "Accept: application/json", &oom);
    if (text)
        hl = add_header(hl, "Content-Type: application/json", &oom);
    hl = add_header(hl, "Expect:", &oom);
    if (c->auth_header)
        hl = add_header(hl, c->auth_header, &oom);
    CURL *h = c->curl;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(h, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_UPLOAD, 0L);
    SET(CURLOPT_READFUNCTION, NULL);
    SET(CURLOPT_READDATA, NULL);
    SET(CURLOPT_NOPROGRESS, 1L);
    SET(CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)0);
    SET(CURLOPT_TIMEOUT_MS, c->timeout_ms);
    SET(CURLOPT_LOW_SPEED_LIMIT, 0L);
    SET(CURLOPT_LOW_SPEED_TIME, 0L);
    if (!text) {
        /* no body: a GET, or the method's name on a GET-shaped request */
        SET(CURLOPT_HTTPGET, 1L);
        SET(CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") ? method : NULL);
    } else {
        /* POSTFIELDS with a custom method sends the body with any verb */
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(text ? strlen(text) : 0));
        SET(CURLOPT_COPYPOSTFIELDS, text ? text : "");
        SET(CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") ? method : NULL);
    }
#undef SET
    free(text);
    lp_status st;
    if (oom)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    else if (rc != CURLE_OK)
        st = lp_error_set(err, LP_ERR_NETWORK, "%s %s: setting up curl: %s", method, path,
                          curl_easy_strerror(rc));
    else
        st = perform(c, method, path, hl, NULL, out, err);
    curl_slist_free_all(hl);
    return st;
}

lp_status lp_client_put_file_range(lp_client *c, const char *path, int fd, uint64_t offset,
                                uint64_t len, uint64_t total, uint64_t max_send_rate,
                                lp_client_progress_fn progress, void *progress_ctx, json_t **out,
                                lp_error *err)
{
    if (out)
        *out = NULL;
    if (len == 0 || offset + len > total)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "PUT %s: empty or out-of-range chunk", path);
    char range[96];
    snprintf(range, sizeof range, "Content-Range: bytes %llu-%llu/%llu",
             (unsigned long long)offset, (unsigned long long)(offset + len - 1),
             (unsigned long long)total);
    bool oom = false;
    struct curl_slist *hl = NULL;
    hl = add_header(hl, "Accept: application/json", &oom);
    hl = add_header(hl, "Content-Type: application/octet-stream", &oom);
    hl = add_header(hl, range, &oom);
    hl = add_header(hl, "Expect:", &oom);
    if (c->auth_header)
        hl = add_header(hl, c->auth_header, &oom);
    source src = {.fd = fd, .pos = offset, .end = offset + len, .progress = progress,
                  .progress_ctx = progress_ctx};
    CURL *h = c->curl;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(h, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_CUSTOMREQUEST, NULL);
    SET(CURLOPT_UPLOAD, 1L); /* PUT */
    SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
    SET(CURLOPT_READFUNCTION, on_read);
    SET(CURLOPT_READDATA, &src);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_XFERINFOFUNCTION, on_xfer);
    SET(CURLOPT_XFERINFODATA, &src);
    SET(CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)max_send_rate);
    SET(CURLOPT_TIMEOUT_MS, 0L);
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, PUT_LOW_SPEED_SECS);
#undef SET
    lp_status st;
    if (oom)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    else if (rc != CURLE_OK)
        st = lp_error_set(err, LP_ERR_NETWORK, "PUT %s: setting up curl: %s", path,
                          curl_easy_strerror(rc));
    else
        st = perform(c, "PUT", path, hl, &src, out, err);
    curl_easy_setopt(h, CURLOPT_READDATA, NULL);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, NULL);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 1L);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 0L);
    curl_slist_free_all(hl);
    return st;
}

/* ---- exit codes and messages ---------------------------------------------- */

int lp_client_exit_code(const lp_client *c, lp_status st)
{
    if (st == LP_OK)
        return LP_EXIT_OK;
    long code = lp_client_last_http_status(c);
    if (code == 0 && st == LP_ERR_INVALID_ARG)
        return LP_EXIT_USAGE; /* refused here, before any request */
    if (code == 401 || code == 403)
        return LP_EXIT_AUTH;
    if (code >= 400 && code <= 499)
        return LP_EXIT_REFUSED;
    return LP_EXIT_FAIL;
}

int lp_client_open(const lp_client_opts *o, const char *cmd, lp_client **c)
{
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_client_new(c, o, &err);
    if (!st)
        return -1;
    fprintf(stderr, "livepush %s: %s\n", cmd, err.msg);
    return st == LP_ERR_INVALID_ARG ? LP_EXIT_USAGE : LP_EXIT_FAIL;
}

int lp_client_fail(const lp_client *c, lp_status st, const lp_error *err, const char *cmd)
{
    fprintf(stderr, "livepush %s: %s\n", cmd, err->msg[0] ? err->msg : lp_status_name(st));
    return lp_client_exit_code(c, st);
}

/* ---- formatting helpers --------------------------------------------------- */

char *lp_client_escape(const char *segment)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(segment);
    char *out = malloc(3 * n + 1);
    if (!out)
        return NULL;
    char *p = out;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)segment[i];
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p = 0;
    return out;
}

char *lp_client_path(const char *fmt, ...)
{
    lp_buf b;
    lp_buf_init(&b, 0);
    va_list ap;
    va_start(ap, fmt);
    lp_status st = LP_OK;
    for (const char *p = fmt; *p && !st; p++) {
        if (p[0] == '%' && p[1] == 's') {
            char *e = lp_client_escape(va_arg(ap, const char *));
            st = e ? lp_buf_append_str(&b, e, NULL) : LP_ERR_NOMEM;
            free(e);
            p++;
        } else {
            st = lp_buf_append(&b, p, 1, NULL);
        }
    }
    va_end(ap);
    if (!st && !b.data)
        st = lp_buf_append_str(&b, "", NULL);
    if (st) {
        lp_buf_free(&b);
        return NULL;
    }
    size_t len;
    return (char *)lp_buf_steal(&b, &len);
}

void lp_client_print_json(const json_t *v)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (text) {
        fputs(text, stdout);
        fputc('\n', stdout);
        free(text);
    }
}

const char *lp_client_str(const json_t *obj, const char *key)
{
    const json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : "";
}

long long lp_client_int(const json_t *obj, const char *key, long long def)
{
    const json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_integer(v) ? (long long)json_integer_value(v) : def;
}

void lp_client_format_time(long long t, char out[24])
{
    if (t <= 0) {
        snprintf(out, 24, "-");
        return;
    }
    char iso[21];
    lp_time_format((int64_t)t, iso);
    /* "YYYY-MM-DDTHH:MM:SSZ" -> "YYYY-MM-DD HH:MM:SS" */
    iso[10] = ' ';
    iso[19] = 0;
    snprintf(out, 24, "%s", iso);
}

void lp_client_format_bytes(uint64_t n, char out[16])
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n < 1024) {
        snprintf(out, 16, "%llu B", (unsigned long long)n);
        return;
    }
    double v = (double)n / 1024.0;
    size_t u = 0;
    while (v >= 1024.0 && u < 3) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, 16, "%.1f %s", v, units[u]);
}
