/*
 * http.c — daemon, router and request/response helpers on libmicrohttpd
 * (see http.h).
 *
 * libmicrohttpd calls the access handler several times per request: first
 * when the headers are in (here the request context is made and the request
 * is counted as in flight; a Content-Length above the body limit is
 * answered 413 at once, before any body is read), then once per piece of
 * body (appended to a bounded buffer; past the limit the rest is read and
 * dropped), and a last time with no body left, when the router picks the
 * route and calls its handler.  Queuing the answer on the first call would make
 * libmicrohttpd close the connection, so even body-less requests are
 * answered on the last call, which keeps connections alive.
 *
 * When the request ends (completed or aborted) libmicrohttpd calls
 * on_completed: the request's log line is written there, with the status
 * and body size recorded when the answer was queued, and the in-flight
 * count drops.  The count sits behind a mutex with a condition variable so
 * a shutdown can wait for it to reach zero.  Everything that only the log
 * line needs (the client's address as text, the JSON fields) is made there
 * and only when the log level lets the line through, so a server with its
 * request log off does no per-request log work.
 *
 * Percent-decoding is libmicrohttpd's (MHD_http_unescape) through an
 * unescape callback that only turns a decoded NUL byte into DEL (0x7f), a
 * control character that the path check then refuses; otherwise a "%00"
 * would silently cut the path short.
 */
#include "server/http.h"

#include "core/buf.h"
#include "server/config.h"
#include "server/metrics.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SEGMENTS 32

typedef struct route {
    char *method;
    char *pattern; /* as given: the "route" label of the request metrics */
    char *segs[MAX_SEGMENTS];
    size_t nsegs;
    bool rest; /* last segment is "**" */
    lp_http_handler handler;
    void *user;
} route;

typedef struct adopted {
    void *ptr;
    void (*free_fn)(void *);
} adopted;

struct lp_http_server {
    lp_http_server_options opt;
    adopted *adopted;
    size_t nadopted;
    char listen[LP_SERVER_LISTEN_MAX];
    struct MHD_Daemon *d;
    route *routes;
    size_t nroutes;
    char url[LP_SERVER_LISTEN_MAX + 16];
    uint16_t port;
    char id_prefix[13];
    atomic_uint_fast64_t next_id;
    atomic_bool draining;
    pthread_mutex_t lock;
    pthread_cond_t idle; /* signalled when in_flight drops */
    unsigned in_flight;  /* guarded by lock */
};

struct lp_http_request {
    lp_http_server *srv;
    struct MHD_Connection *conn;
    char *method;
    char *path;
    char id[40];
    char remote[64];
    struct timespec start;
    const char *params[LP_HTTP_MAX_PARAMS];
    size_t nparams;
    char *param_buf; /* captured segments, NUL-separated */
    lp_buf body;
    bool too_large;
    bool responded;
    unsigned status;
    uint64_t bytes;
    const char *route; /* the pattern that matched the path (metrics), or NULL */
};

/* ---- JSON text that survives any input bytes ---------------------------- */

/* A JSON string of s; bytes that are not valid UTF-8 make it fall back to a
 * copy with every non-ASCII or control byte replaced by '?'. */
static json_t *safe_string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *copy = strdup(s);
    if (!copy)
        return json_string("?");
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

/* ---- responses ------------------------------------------------------------ */

void lp_http_respond(lp_http_request *rq, unsigned status, struct MHD_Response *r,
                     uint64_t body_len)
{
    if (rq->responded) {
        if (r)
            MHD_destroy_response(r);
        return;
    }
    if (!r) {
        static const char fallback[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        r = MHD_create_response_from_buffer(sizeof fallback - 1, (void *)fallback,
                                            MHD_RESPMEM_PERSISTENT);
        if (!r)
            return; /* nothing queued: libmicrohttpd closes the connection */
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        body_len = sizeof fallback - 1;
    }
    MHD_add_response_header(r, "X-Request-Id", rq->id);
    if (atomic_load(&rq->srv->draining))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    rq->responded = true;
    rq->status = status;
    rq->bytes = lp_http_is_head(rq) ? 0 : body_len;
    if (MHD_queue_response(rq->conn, status, r) != MHD_YES)
        rq->status = 0;
    MHD_destroy_response(r);
}

void lp_http_respond_json(lp_http_request *rq, unsigned status, const char *json_text)
{
    size_t n = strlen(json_text);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(n, (void *)json_text, MHD_RESPMEM_MUST_COPY);
    if (r)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    lp_http_respond(rq, status, r, n);
}

struct MHD_Response *lp_http_error_response(const char *code, const char *msg, size_t *len)
{
    json_t *doc = json_pack("{s:{s:s,s:o}}", "error", "code", code, "message", safe_string(msg));
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text)
        return NULL;
    *len = strlen(text);
    struct MHD_Response *r = MHD_create_response_from_buffer(*len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    return r;
}

void lp_http_respond_error(lp_http_request *rq, unsigned status, const char *code,
                           const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = 0;
    struct MHD_Response *r = lp_http_error_response(code, msg, &n);
    lp_http_respond(rq, status, r, n);
}

/* ---- request accessors ---------------------------------------------------- */

const char *lp_http_method(const lp_http_request *rq) { return rq->method; }
bool lp_http_is_head(const lp_http_request *rq) { return !strcmp(rq->method, "HEAD"); }
const char *lp_http_path(const lp_http_request *rq) { return rq->path; }
const char *lp_http_request_id(const lp_http_request *rq) { return rq->id; }
struct MHD_Connection *lp_http_connection(const lp_http_request *rq) { return rq->conn; }
const lp_log *lp_http_log(const lp_http_request *rq) { return rq->srv->opt.log; }

const char *lp_http_param(const lp_http_request *rq, size_t i)
{
    return i < rq->nparams ? rq->params[i] : NULL;
}

const char *lp_http_header(const lp_http_request *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

const uint8_t *lp_http_body(const lp_http_request *rq, size_t *len)
{
    *len = rq->body.len;
    return rq->body.len ? rq->body.data : NULL;
}

/* ---- routes --------------------------------------------------------------- */

/* Splits a path into segments in place (buf is modified).  Returns the count
 * or -1 when there are too many. */
static int split(char *buf, char **segs)
{
    int n = 0;
    char *p = buf + (buf[0] == '/');
    if (!*p)
        return 0;
    for (;;) {
        if (n == MAX_SEGMENTS)
            return -1;
        segs[n++] = p;
        char *slash = strchr(p, '/');
        if (!slash)
            return n;
        *slash = '\0';
        p = slash + 1;
    }
}

lp_status lp_http_server_route(lp_http_server *s, const char *method, const char *pattern,
                               lp_http_handler handler, void *user, lp_error *err)
{
    if (s->d)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "route %s: server already started", pattern);
    if (!method || !pattern || pattern[0] != '/' || !handler)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "route: bad method, pattern or handler");
    route rt = {.handler = handler, .user = user};
    char *copy = strdup(pattern);
    rt.method = strdup(method);
    rt.pattern = strdup(pattern);
    if (!copy || !rt.method || !rt.pattern) {
        free(copy);
        free(rt.method);
        free(rt.pattern);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    char *segs[MAX_SEGMENTS];
    int n = split(copy, segs);
    size_t captures = 0;
    lp_status st = n < 0 ? lp_error_set(err, LP_ERR_INVALID_ARG, "route %s: too many segments",
                                        pattern)
                         : LP_OK;
    for (int i = 0; !st && i < n; i++) {
        bool any = !strcmp(segs[i], "*"), rest = !strcmp(segs[i], "**");
        if (!*segs[i] || (rest && i != n - 1))
            st = lp_error_set(err, LP_ERR_INVALID_ARG,
                              "route %s: empty segment or '**' not last", pattern);
        if ((any || rest) && ++captures > LP_HTTP_MAX_PARAMS)
            st = lp_error_set(err, LP_ERR_INVALID_ARG, "route %s: too many captures", pattern);
        rt.rest = rest;
    }
    for (int i = 0; !st && i < n; i++)
        if (!(rt.segs[i] = strdup(segs[i])))
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    rt.nsegs = n < 0 ? 0 : (size_t)n;
    free(copy);
    route *grown = st ? NULL : realloc(s->routes, (s->nroutes + 1) * sizeof *grown);
    if (!st && !grown)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (st) {
        for (size_t i = 0; i < rt.nsegs; i++)
            free(rt.segs[i]);
        free(rt.method);
        free(rt.pattern);
        return st;
    }
    s->routes = grown;
    s->routes[s->nroutes++] = rt;
    return LP_OK;
}

/* Does route rt match the path's segments?  Fills the captures of rq
 * (pointing into the path copy `pathbuf`, whose '/'s split() replaced; for
 * "**" the rest of the path is rebuilt in rq->param_buf). */
static bool match(const route *rt, char **segs, size_t n, lp_http_request *rq)
{
    if (rt->rest ? n < rt->nsegs : n != rt->nsegs)
        return false;
    for (size_t i = 0; i < rt->nsegs; i++) {
        const char *p = rt->segs[i];
        if (strcmp(p, "*") && strcmp(p, "**") && strcmp(p, segs[i]))
            return false;
    }
    if (!rq)
        return true;
    rq->nparams = 0;
    for (size_t i = 0; i < rt->nsegs; i++) {
        if (!strcmp(rt->segs[i], "*")) {
            rq->params[rq->nparams++] = segs[i];
        } else if (!strcmp(rt->segs[i], "**")) {
            /* segs[i..n) are consecutive in pathbuf, separated by NULs:
             * put the '/'s back in a copy. */
            size_t total = 1;
            for (size_t j = i; j < n; j++)
                total += strlen(segs[j]) + 1;
            free(rq->param_buf);
            rq->param_buf = malloc(total);
            if (!rq->param_buf)
                return false;
            size_t used = 0;
            for (size_t j = i; j < n; j++) {
                size_t len = strlen(segs[j]);
                if (j > i)
                    rq->param_buf[used++] = '/';
                memcpy(rq->param_buf + used, segs[j], len);
                used += len;
            }
            rq->param_buf[used] = '\0';
            rq->params[rq->nparams++] = rq->param_buf;
        }
    }
    return true;
}

/* The path check of http.h: why it is refused, or NULL. */
static const char *bad_path(const char *path)
{
    if (path[0] != '/')
        return "the path must start with '/'";
    if (strlen(path) > LP_HTTP_MAX_PATH)
        return "the path is too long";
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return "the path holds a control character or NUL";
    if (!strcmp(path, "/"))
        return NULL;
    const char *seg = path + 1;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (len == 0)
            return "the path has an empty segment";
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return "the path has a '.' or '..' segment";
        if (!end)
            return NULL;
        seg = end + 1;
    }
}

static void healthz(lp_http_request *rq, void *user)
{
    (void)user;
    lp_http_respond_json(rq, MHD_HTTP_OK, "{\"status\":\"ok\"}");
}

static bool method_is(const route *rt, const char *method)
{
    return !strcmp(rt->method, method) ||
           (!strcmp(method, "HEAD") && !strcmp(rt->method, "GET"));
}

/* GET or HEAD of "/a/b/" (a path other than "/" with one trailing '/'):
 * answers 308 to "/a/b" and returns true when that path passes the check
 * and holds only letters, digits and "-._~/" (so the Location header needs
 * no escaping); false otherwise (the path check then refuses it). */
static bool redirect_trailing_slash(lp_http_request *rq)
{
    size_t n = strlen(rq->path);
    if (n < 2 || rq->path[n - 1] != '/' || rq->path[n - 2] == '/' ||
        (strcmp(rq->method, "GET") && strcmp(rq->method, "HEAD")))
        return false;
    char *to = strndup(rq->path, n - 1);
    if (!to || bad_path(to) || to[strspn(to, "abcdefghijklmnopqrstuvwxyz"
                                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/")]) {
        free(to);
        return false;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (r)
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, to);
    free(to);
    lp_http_respond(rq, MHD_HTTP_PERMANENT_REDIRECT, r, 0);
    return true;
}

static void dispatch(lp_http_request *rq)
{
    if (redirect_trailing_slash(rq))
        return;
    const char *why = bad_path(rq->path);
    if (why) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request", "%s", why);
        return;
    }
    char *pathbuf = strdup(rq->path);
    char *segs[MAX_SEGMENTS];
    int n = pathbuf ? split(pathbuf, segs) : -1;
    if (n < 0) {
        free(pathbuf);
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no route for %s %s",
                              rq->method, rq->path);
        return;
    }
    const route *hit = NULL;
    char allow[128] = "";
    for (size_t i = 0; i < rq->srv->nroutes && !hit; i++) {
        const route *rt = &rq->srv->routes[i];
        if (!match(rt, segs, (size_t)n, NULL))
            continue;
        rq->route = rt->pattern;
        if (method_is(rt, rq->method)) {
            hit = rt;
        } else if (!strstr(allow, rt->method)) {
            size_t used = strlen(allow);
            snprintf(allow + used, sizeof allow - used, "%s%s%s", used ? ", " : "", rt->method,
                     !strcmp(rt->method, "GET") ? ", HEAD" : "");
        }
    }
    if (hit && match(hit, segs, (size_t)n, rq)) {
        hit->handler(rq, hit->user);
        if (!rq->responded)
            lp_http_respond_error(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                                  "the handler for %s gave no answer", rq->path);
    } else if (hit) {
        lp_http_respond(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, 0);
    } else if (allow[0]) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s is not allowed on %s (allowed: %s)", rq->method, rq->path,
                 allow);
        size_t len = 0;
        struct MHD_Response *r = lp_http_error_response("method_not_allowed", msg, &len);
        if (r)
            MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
        lp_http_respond(rq, MHD_HTTP_METHOD_NOT_ALLOWED, r, len);
    } else {
        lp_http_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no route for %s %s",
                              rq->method, rq->path);
    }
    free(pathbuf);
}

/* ---- libmicrohttpd callbacks ---------------------------------------------- */

static void format_remote(struct MHD_Connection *conn, char *out, size_t cap)
{
    snprintf(out, cap, "-");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo(sa, len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return;
    if (sa->sa_family == AF_INET6)
        snprintf(out, cap, "[%s]:%s", host, serv);
    else
        snprintf(out, cap, "%s:%s", host, serv);
}

static lp_http_request *request_new(lp_http_server *s, struct MHD_Connection *conn,
                                    const char *method, const char *url)
{
    lp_http_request *rq = calloc(1, sizeof *rq);
    if (!rq)
        return NULL;
    rq->srv = s;
    rq->conn = conn;
    rq->method = strdup(method);
    rq->path = strdup(url);
    if (!rq->method || !rq->path) {
        free(rq->method);
        free(rq->path);
        free(rq);
        return NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &rq->start);
    uint64_t n = atomic_fetch_add(&s->next_id, 1);
    snprintf(rq->id, sizeof rq->id, "%s-%08llx", s->id_prefix, (unsigned long long)n);
    lp_buf_init(&rq->body, s->opt.max_body_bytes ? (size_t)s->opt.max_body_bytes : 1);
    pthread_mutex_lock(&s->lock);
    s->in_flight++;
    pthread_mutex_unlock(&s->lock);
    return rq;
}

static void request_free(lp_http_request *rq)
{
    lp_http_server *s = rq->srv;
    lp_buf_free(&rq->body);
    free(rq->param_buf);
    free(rq->method);
    free(rq->path);
    free(rq);
    pthread_mutex_lock(&s->lock);
    s->in_flight--;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->lock);
}

static void respond_too_large(lp_http_request *rq)
{
    lp_http_respond_error(rq, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
                          "the request body is larger than %llu bytes",
                          (unsigned long long)rq->srv->opt.max_body_bytes);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_ctx)
{
    lp_http_server *s = cls;
    (void)version;
    lp_http_request *rq = *req_ctx;
    if (!rq) {
        rq = request_new(s, conn, method, url);
        if (!rq)
            return MHD_NO;
        *req_ctx = rq;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->opt.max_body_bytes) {
            /* refused before any body is read; answering this early makes
             * libmicrohttpd close the connection afterwards */
            rq->too_large = true;
            respond_too_large(rq);
            return rq->status ? MHD_YES : MHD_NO;
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        /* past the limit the rest of the body is read and dropped, and the
         * answer waits for its end */
        if (!rq->too_large && !rq->responded &&
            (s->opt.max_body_bytes == 0 ||
             lp_buf_append(&rq->body, upload_data, *upload_data_size, NULL)))
            rq->too_large = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rq->responded)
        return rq->status ? MHD_YES : MHD_NO;
    if (rq->too_large)
        respond_too_large(rq);
    else
        dispatch(rq);
    return rq->responded && rq->status ? MHD_YES : MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_ctx,
                         enum MHD_RequestTerminationCode toe)
{
    lp_http_server *s = cls;
    lp_http_request *rq = *req_ctx;
    if (!rq)
        return;
    *req_ctx = NULL;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms = (double)(now.tv_sec - rq->start.tv_sec) * 1e3 +
                (double)(now.tv_nsec - rq->start.tv_nsec) / 1e6;
    bool ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    lp_metrics_request(s->opt.metrics, rq->method, rq->route ? rq->route : "unmatched",
                       rq->status, ms / 1e3, ok ? rq->bytes : 0);
    if (s->opt.log && s->opt.log->min_level <= LP_LOG_INFO) {
        format_remote(conn, rq->remote, sizeof rq->remote);
        json_t *f = json_object();
        if (f) {
            json_object_set_new(f, "request_id", json_string(rq->id));
            json_object_set_new(f, "method", safe_string(rq->method));
            json_object_set_new(f, "path", safe_string(rq->path));
            json_object_set_new(f, "status", json_integer(rq->status));
            json_object_set_new(f, "bytes", json_integer(ok ? (json_int_t)rq->bytes : 0));
            json_object_set_new(f, "duration_ms", json_real(ms));
            json_object_set_new(f, "remote", json_string(rq->remote));
            if (!ok)
                json_object_set_new(f, "aborted", json_true());
        }
        lp_log_event(s->opt.log, LP_LOG_INFO, "request", f);
    }
    request_free(rq);
}

/* Percent-decoding by libmicrohttpd; a decoded NUL becomes DEL (see top). */
static size_t on_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    size_t n = MHD_http_unescape(s);
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0')
            s[i] = 0x7f;
    return n;
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt,
                                                             va_list ap)
{
    const lp_log *log = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    json_t *f = json_pack("{s:o}", "detail", safe_string(msg));
    lp_log_event(log, LP_LOG_WARN, "httpd", f);
}

/* ---- lifecycle ------------------------------------------------------------ */

lp_status lp_http_server_new(lp_http_server **out, const lp_http_server_options *opt, lp_error *err)
{
    *out = NULL;
    lp_http_server *s = calloc(1, sizeof *s);
    if (!s)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    s->opt = *opt;
    snprintf(s->listen, sizeof s->listen, "%s", opt->listen ? opt->listen : "127.0.0.1:8080");
    s->opt.listen = s->listen;
    if (!s->opt.threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        s->opt.threads = n < 1 ? 1 : n > 256 ? 256 : (unsigned)n;
    }
    if (!s->opt.max_connections)
        s->opt.max_connections = 1024;
    if (!s->opt.connection_timeout_s)
        s->opt.connection_timeout_s = 30;
    if (!s->opt.max_header_bytes)
        s->opt.max_header_bytes = 32 * 1024;
    uint8_t rnd[6];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        free(s);
        return lp_error_set(err, LP_ERR_IO, "getrandom: %s", strerror(errno));
    }
    for (int i = 0; i < 6; i++)
        snprintf(s->id_prefix + 2 * i, 3, "%02x", rnd[i]);
    atomic_init(&s->next_id, 1);
    atomic_init(&s->draining, false);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_mutex_init(&s->lock, NULL);
    if (!rc && (rc = pthread_cond_init(&s->idle, &ca)) != 0)
        pthread_mutex_destroy(&s->lock);
    pthread_condattr_destroy(&ca);
    if (rc) {
        free(s);
        return lp_error_set(err, LP_ERR_NOMEM, "http server: cannot make a lock: %s",
                            strerror(rc));
    }
    lp_status st = lp_http_server_route(s, "GET", "/healthz", healthz, NULL, err);
    if (st) {
        lp_http_server_free(s);
        return st;
    }
    *out = s;
    return LP_OK;
}

lp_status lp_http_server_start(lp_http_server *s, lp_error *err)
{
    if (s->d)
        return lp_error_set(err, LP_ERR_STATE, "http server already started");
    struct sockaddr_storage ss;
    socklen_t sslen;
    lp_status st = lp_server_parse_listen(s->listen, &ss, &sslen, err);
    if (st)
        return st;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES)
        flags |= MHD_USE_EPOLL;
    if (ss.ss_family == AF_INET6) {
        /* "[::]" takes IPv4 connections too; a specific address only its own */
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
        flags |= IN6_IS_ADDR_UNSPECIFIED(a6) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    }
    unsigned pool = s->opt.threads > 1 ? s->opt.threads : 0;
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
        (void *)s->opt.log, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_THREAD_POOL_SIZE, pool, MHD_OPTION_CONNECTION_LIMIT, s->opt.max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, s->opt.connection_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, s->opt.max_header_bytes,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_UNESCAPE_CALLBACK, on_unescape,
        s,
        MHD_OPTION_END);
    if (!s->d)
        return lp_error_set(err, LP_ERR_NETWORK,
                            "cannot listen on %s (address in use, not local, or not permitted)",
                            s->listen);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    char host[LP_SERVER_LISTEN_MAX];
    snprintf(host, sizeof host, "%s", s->listen);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    if (!strcmp(host, "localhost"))
        snprintf(host, sizeof host, "127.0.0.1");
    snprintf(s->url, sizeof s->url, "http://%s:%u", host, (unsigned)s->port);
    return LP_OK;
}

uint16_t lp_http_server_port(const lp_http_server *s) { return s->port; }
const char *lp_http_server_url(const lp_http_server *s) { return s->url; }

unsigned lp_http_server_threads(const lp_http_server *s) { return s->opt.threads; }

unsigned lp_http_server_in_flight(lp_http_server *s)
{
    pthread_mutex_lock(&s->lock);
    unsigned n = s->in_flight;
    pthread_mutex_unlock(&s->lock);
    return n;
}

lp_status lp_http_server_shutdown(lp_http_server *s, unsigned timeout_ms, lp_error *err)
{
    if (!s->d)
        return LP_OK;
    atomic_store(&s->draining, true);
    MHD_socket lfd = MHD_quiesce_daemon(s->d);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    while (s->in_flight > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&s->idle, &s->lock, &deadline);
    unsigned left = s->in_flight;
    pthread_mutex_unlock(&s->lock);
    MHD_stop_daemon(s->d);
    s->d = NULL;
    if (left)
        return lp_error_set(err, LP_ERR_STATE,
                            "%u request(s) still in flight after %u ms were cut off", left,
                            timeout_ms);
    return LP_OK;
}

lp_status lp_http_server_adopt(lp_http_server *s, void *ptr, void (*free_fn)(void *),
                               lp_error *err)
{
    adopted *grown = realloc(s->adopted, (s->nadopted + 1) * sizeof *grown);
    if (!grown) {
        free_fn(ptr);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    s->adopted = grown;
    s->adopted[s->nadopted++] = (adopted){ptr, free_fn};
    return LP_OK;
}

void lp_http_server_free(lp_http_server *s)
{
    if (!s)
        return;
    if (s->d)
        MHD_stop_daemon(s->d);
    while (s->nadopted--)
        s->adopted[s->nadopted].free_fn(s->adopted[s->nadopted].ptr);
    free(s->adopted);
    for (size_t i = 0; i < s->nroutes; i++) {
        for (size_t j = 0; j < s->routes[i].nsegs; j++)
            free(s->routes[i].segs[j]);
        free(s->routes[i].pattern);
        free(s->routes[i].method);
    }
    free(s->routes);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
