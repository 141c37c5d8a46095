/*
 * httpd.c — static file server for tests on libmicrohttpd (see httpd.h).
 *
 * libmicrohttpd runs its own thread (MHD_USE_INTERNAL_POLLING_THREAD) bound
 * to 127.0.0.1 on an ephemeral port.  The access handler's first call for a
 * request only makes its context (a response queued that early makes
 * libmicrohttpd close the connection, and clients could not show
 * keep-alive); a request body is discarded; the answer is chosen once the
 * request is complete, in this order: POST paths, /status/NNN, fault
 * rules that answer an error status, endless paths, then a file under the
 * root (where a "cut" fault rule may stop the body part-way).  Files are handed
 * to libmicrohttpd as file descriptors at an offset
 * (MHD_create_response_from_fd_at_offset64), which is also how a single Range
 * is served.  libmicrohttpd has already decoded %XX in the path it passes.
 *
 * A cut body is served through a content-reader callback that reads the
 * file with pread and, once the limit is reached, tells libmicrohttpd to end
 * with an error, which closes the connection short of the Content-Length it
 * announced: what a client sees when a network drops mid-transfer.
 *
 * Counters: the request log (per path, with the last Range and
 * Authorization headers), the
 * endless list, the fault rules and the POST paths sit behind a mutex; the byte and connection counters are atomics.  A fixed-size body's
 * length travels in the request context and is added to the byte counter
 * when libmicrohttpd reports the request completed normally.
 */
#include "httpd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENDLESS_BLOCK (64 * 1024)

#define POST_BODY_MAX (1024u * 1024)

/* Per-request context. */
typedef struct request {
    uint64_t body_len; /* a fixed-size body to count when completed */
    char *upload;      /* a POST body received so far */
    size_t upload_len;
    bool upload_too_big;
} request;

typedef struct path_count {
    char *path;
    unsigned n;
    char range[128]; /* Range header of the last request */
    char auth[256];  /* Authorization header of the last request */
} path_count;

enum fault_kind {
    FAULT_STATUS,   /* answer `status` */
    FAULT_CUT,      /* drop the connection after `after` body bytes */
    FAULT_NO_RANGE, /* ignore the Range header (answer 200 with everything) */
    FAULT_SHORT,    /* answer a Range with at most `after` bytes (a complete 206) */
};

typedef struct fault {
    char *path;
    enum fault_kind kind;
    unsigned status;
    char *retry_after; /* may be NULL */
    uint64_t after;
    unsigned remaining;
} fault;

typedef struct post_path {
    char *path;
    unsigned status;
    char **bodies;
    size_t nbodies;
} post_path;

struct lp_test_httpd {
    struct MHD_Daemon *d;
    char *root;
    char url[64];
    atomic_uint_fast64_t bytes_sent;
    atomic_uint connections;
    pthread_mutex_t lock;
    /* guarded by lock */
    unsigned total;
    path_count *counts;
    size_t ncounts;
    char **endless;
    size_t nendless;
    fault *faults;
    size_t nfaults;
    post_path *posts;
    size_t nposts;
};

/* ---- bookkeeping ------------------------------------------------------- */

static void record_request(lp_test_httpd *h, const char *path, const char *range,
                           const char *auth)
{
    pthread_mutex_lock(&h->lock);
    h->total++;
    size_t i = 0;
    while (i < h->ncounts && strcmp(h->counts[i].path, path) != 0)
        i++;
    if (i < h->ncounts) {
        h->counts[i].n++;
        snprintf(h->counts[i].range, sizeof h->counts[i].range, "%s", range ? range : "");
        snprintf(h->counts[i].auth, sizeof h->counts[i].auth, "%s", auth ? auth : "");
    } else {
        path_count *grown = realloc(h->counts, (h->ncounts + 1) * sizeof *grown);
        char *copy = strdup(path);
        if (grown)
            h->counts = grown;
        if (grown && copy) {
            h->counts[h->ncounts] = (path_count){.path = copy, .n = 1};
            snprintf(h->counts[h->ncounts].range, sizeof h->counts[h->ncounts].range, "%s",
                     range ? range : "");
            snprintf(h->counts[h->ncounts].auth, sizeof h->counts[h->ncounts].auth, "%s",
                     auth ? auth : "");
            h->ncounts++;
        } else {
            free(copy);
            fprintf(stderr, "test httpd: out of memory recording a request\n");
        }
    }
    pthread_mutex_unlock(&h->lock);
}

static bool is_endless(lp_test_httpd *h, const char *path)
{
    pthread_mutex_lock(&h->lock);
    bool found = false;
    for (size_t i = 0; i < h->nendless && !found; i++)
        found = strcmp(h->endless[i], path) == 0;
    pthread_mutex_unlock(&h->lock);
    return found;
}

/* Takes one use of the first rule for `path` of the given kind that has uses
 * left; copies what the answer needs.  False when there is none. */
static bool take_fault(lp_test_httpd *h, const char *path, enum fault_kind kind, fault *out,
                       char *retry_after, size_t cap)
{
    pthread_mutex_lock(&h->lock);
    bool found = false;
    for (size_t i = 0; i < h->nfaults && !found; i++) {
        fault *f = &h->faults[i];
        if (f->kind != kind || f->remaining == 0 || strcmp(f->path, path) != 0)
            continue;
        f->remaining--;
        *out = *f;
        snprintf(retry_after, cap, "%s", f->retry_after ? f->retry_after : "");
        found = true;
    }
    pthread_mutex_unlock(&h->lock);
    return found;
}

/* ---- responses --------------------------------------------------------- */

/* Queues r with `status`; a fixed body of body_len bytes is counted when the
 * request completes (see on_completed).  Takes ownership of r. */
static enum MHD_Result send_response(struct MHD_Connection *conn, void **req_ctx, bool head,
                                     unsigned status, struct MHD_Response *r, uint64_t body_len)
{
    if (!r)
        return MHD_NO;
    request *rq = *req_ctx;
    rq->body_len = head ? 0 : body_len;
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_text(struct MHD_Connection *conn, void **req_ctx, bool head,
                                 unsigned status, const char *text)
{
    size_t n = strlen(text);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(n, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (r)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
    return send_response(conn, req_ctx, head, status, r, n);
}

/* ---- /status/NNN ------------------------------------------------------- */

static enum MHD_Result send_status(struct MHD_Connection *conn, void **req_ctx, bool head,
                                   const char *path, unsigned code)
{
    char text[64];
    snprintf(text, sizeof text, "status %u\n", code);
    size_t n = strlen(text);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
    if (code >= 300 && code <= 399) {
        const char *loc = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "location");
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, loc ? loc : path);
    }
    return send_response(conn, req_ctx, head, code, r, n);
}

/* Status code of a /status/NNN[/...] path, or 0 for any other path. */
static unsigned status_path(const char *path)
{
    static const char prefix[] = "/status/";
    if (strncmp(path, prefix, sizeof prefix - 1) != 0)
        return 0;
    const char *p = path + sizeof prefix - 1;
    for (int i = 0; i < 3; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    if (p[3] != '\0' && p[3] != '/')
        return 0;
    unsigned code = (unsigned)((p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0'));
    return code >= 100 && code <= 599 ? code : 0;
}

/* ---- fault rules and POST --------------------------------------------- */

static enum MHD_Result send_fault(struct MHD_Connection *conn, void **req_ctx, bool head,
                                  unsigned status, const char *retry_after)
{
    char text[64];
    snprintf(text, sizeof text, "fault %u\n", status);
    size_t n = strlen(text);
    struct MHD_Response *r = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
    if (retry_after[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    return send_response(conn, req_ctx, head, status, r, n);
}

/* Records a POST body for a configured path; 0 when the path is not one. */
static unsigned record_post(lp_test_httpd *h, const char *path, const request *rq)
{
    pthread_mutex_lock(&h->lock);
    unsigned status = 0;
    for (size_t i = 0; i < h->nposts && !status; i++) {
        post_path *p = &h->posts[i];
        if (strcmp(p->path, path) != 0)
            continue;
        status = rq->upload_too_big ? MHD_HTTP_CONTENT_TOO_LARGE : p->status;
        char *copy = malloc(rq->upload_len + 1);
        char **grown = copy ? realloc(p->bodies, (p->nbodies + 1) * sizeof *grown) : NULL;
        if (grown) {
            if (rq->upload_len)
                memcpy(copy, rq->upload, rq->upload_len);
            copy[rq->upload_len] = '\0';
            p->bodies = grown;
            p->bodies[p->nbodies++] = copy;
        } else {
            free(copy);
            fprintf(stderr, "test httpd: out of memory recording a POST body\n");
        }
    }
    pthread_mutex_unlock(&h->lock);
    return status;
}

/* ---- endless bodies ---------------------------------------------------- */

static ssize_t endless_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    lp_test_httpd *h = cls;
    (void)pos;
    memset(buf, 'x', max);
    atomic_fetch_add(&h->bytes_sent, (uint_fast64_t)max);
    return (ssize_t)max;
}

static enum MHD_Result send_endless(lp_test_httpd *h, struct MHD_Connection *conn, void **req_ctx,
                                    bool head)
{
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, ENDLESS_BLOCK, endless_read, h, NULL);
    return send_response(conn, req_ctx, head, MHD_HTTP_OK, r, 0);
}

/* ---- files and ranges -------------------------------------------------- */

/* Parses the decimal digits in [s, end) into *v: at least one digit, nothing
 * else, no overflow. */
static bool parse_u64(const char *s, const char *end, uint64_t *v)
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

enum range_kind { RANGE_NONE, RANGE_OK, RANGE_UNSATISFIABLE };

/* Reads a Range header value against a file of `size` bytes.  Only one range
 * in bytes is honoured; anything else is ignored (RANGE_NONE). */
static enum range_kind parse_range(const char *v, uint64_t size, uint64_t *from, uint64_t *to)
{
    static const char unit[] = "bytes=";
    if (!v || strncmp(v, unit, sizeof unit - 1) != 0)
        return RANGE_NONE;
    v += sizeof unit - 1;
    const char *end = v + strlen(v);
    const char *dash = strchr(v, '-');
    if (!dash || strchr(v, ','))
        return RANGE_NONE;
    uint64_t a, b;
    if (dash == v) { /* bytes=-n: the last n bytes */
        if (!parse_u64(dash + 1, end, &b))
            return RANGE_NONE;
        if (b == 0 || size == 0)
            return RANGE_UNSATISFIABLE;
        *from = b >= size ? 0 : size - b;
        *to = size - 1;
        return RANGE_OK;
    }
    if (!parse_u64(v, dash, &a))
        return RANGE_NONE;
    if (dash + 1 == end)
        b = UINT64_MAX; /* bytes=a- : to the end */
    else if (!parse_u64(dash + 1, end, &b) || b < a)
        return RANGE_NONE;
    if (a >= size)
        return RANGE_UNSATISFIABLE;
    *from = a;
    *to = b >= size ? size - 1 : b;
    return RANGE_OK;
}

/* True if the path has a ".." segment. */
static bool has_dotdot(const char *path)
{
    for (const char *p = path; (p = strstr(p, "..")) != NULL; p += 2) {
        bool starts = p == path || p[-1] == '/';
        bool ends = p[2] == '\0' || p[2] == '/';
        if (starts && ends)
            return true;
    }
    return false;
}

/* A body that stops after `limit` bytes of [from, from+len) of a file. */
typedef struct cut_body {
    lp_test_httpd *h;
    int fd;
    uint64_t from, limit;
} cut_body;

static ssize_t cut_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    cut_body *cb = cls;
    if (pos >= cb->limit)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = cb->limit - pos < max ? (size_t)(cb->limit - pos) : max;
    ssize_t r = pread(cb->fd, buf, n, (off_t)(cb->from + pos));
    if (r <= 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    atomic_fetch_add(&cb->h->bytes_sent, (uint_fast64_t)r);
    return r;
}

static void cut_free(void *cls)
{
    cut_body *cb = cls;
    close(cb->fd);
    free(cb);
}

static enum MHD_Result send_file(lp_test_httpd *h, struct MHD_Connection *conn, void **req_ctx,
                                 bool head, const char *path)
{
    if (has_dotdot(path))
        return send_text(conn, req_ctx, head, MHD_HTTP_FORBIDDEN, "forbidden\n");
    size_t n = strlen(h->root) + strlen(path) + 2;
    char *full = malloc(n);
    if (!full)
        return MHD_NO;
    snprintf(full, n, "%s/%s", h->root, path[0] == '/' ? path + 1 : path);
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    free(full);
    struct stat sb;
    if (fd >= 0 && (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        return send_text(conn, req_ctx, head, MHD_HTTP_NOT_FOUND, "not found\n");

    uint64_t size = (uint64_t)sb.st_size, from = 0, to = 0;
    const char *hdr = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    fault ignored;
    char none[8];
    if (hdr && take_fault(h, path, FAULT_NO_RANGE, &ignored, none, sizeof none))
        hdr = NULL;
    enum range_kind rk = parse_range(hdr, size, &from, &to);
    fault shorter;
    if (rk == RANGE_OK && take_fault(h, path, FAULT_SHORT, &shorter, none, sizeof none) &&
        shorter.after > 0 && to - from + 1 > shorter.after)
        to = from + shorter.after - 1;
    char content_range[96];
    if (rk == RANGE_UNSATISFIABLE) {
        close(fd);
        snprintf(content_range, sizeof content_range, "bytes */%llu", (unsigned long long)size);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (r)
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
        return send_response(conn, req_ctx, head, MHD_HTTP_RANGE_NOT_SATISFIABLE, r, 0);
    }
    uint64_t len = rk == RANGE_OK ? to - from + 1 : size;
    struct MHD_Response *r;
    fault cut;
    char unused[8];
    bool cutting =
        !head && len > 0 && take_fault(h, path, FAULT_CUT, &cut, unused, sizeof unused);
    cut_body *cb = cutting ? malloc(sizeof *cb) : NULL;
    if (cb) {
        *cb = (cut_body){.h = h, .fd = fd, .from = from, .limit = cut.after < len ? cut.after : len};
        r = MHD_create_response_from_callback(len, 4096, cut_read, cb, cut_free);
        if (!r)
            cut_free(cb);
        len = 0; /* counted as it is read */
    } else if (len == 0) { /* an empty file: no descriptor needed */
        close(fd);
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_fd_at_offset64(len, fd, from);
        if (!r)
            close(fd);
    }
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (rk == RANGE_OK) {
        snprintf(content_range, sizeof content_range, "bytes %llu-%llu/%llu",
                 (unsigned long long)from, (unsigned long long)to, (unsigned long long)size);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
    }
    unsigned status = rk == RANGE_OK ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK;
    return send_response(conn, req_ctx, head, status, r, len);
}

/* ---- libmicrohttpd callbacks ------------------------------------------- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_ctx)
{
    lp_test_httpd *h = cls;
    (void)version;
    if (!*req_ctx) { /* headers are in: make the context, answer later */
        request *rq = calloc(1, sizeof *rq);
        if (!rq)
            return MHD_NO;
        *req_ctx = rq;
        record_request(
            h, url, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE),
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION));
        return MHD_YES;
    }
    request *rq = *req_ctx;
    if (*upload_data_size) { /* a request body: kept (bounded) for POST paths */
        size_t n = *upload_data_size;
        if (rq->upload_len + n > POST_BODY_MAX) {
            rq->upload_too_big = true;
        } else {
            char *grown = realloc(rq->upload, rq->upload_len + n);
            if (!grown)
                return MHD_NO;
            memcpy(grown + rq->upload_len, upload_data, n);
            rq->upload = grown;
            rq->upload_len += n;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
        unsigned status = record_post(h, url, rq);
        if (status)
            return send_text(conn, req_ctx, false, status, "{}");
    }
    bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    if (!head && strcmp(method, MHD_HTTP_METHOD_GET) != 0)
        return send_text(conn, req_ctx, false, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    unsigned code = status_path(url);
    if (code)
        return send_status(conn, req_ctx, head, url, code);
    fault f;
    char retry_after[128];
    if (take_fault(h, url, FAULT_STATUS, &f, retry_after, sizeof retry_after))
        return send_fault(conn, req_ctx, head, f.status, retry_after);
    if (is_endless(h, url))
        return send_endless(h, conn, req_ctx, head);
    return send_file(h, conn, req_ctx, head, url);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_ctx,
                         enum MHD_RequestTerminationCode toe)
{
    lp_test_httpd *h = cls;
    (void)conn;
    request *rq = *req_ctx;
    if (rq && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        atomic_fetch_add(&h->bytes_sent, (uint_fast64_t)rq->body_len);
    if (rq)
        free(rq->upload);
    free(rq);
    *req_ctx = NULL;
}

__attribute__((format(printf, 2, 0))) static void on_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    fputs("test httpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode toe)
{
    lp_test_httpd *h = cls;
    (void)conn;
    (void)socket_ctx;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&h->connections, 1u);
}

/* ---- public API -------------------------------------------------------- */

lp_test_httpd *lp_test_httpd_start(const char *root_dir)
{
    lp_test_httpd *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->root = strdup(root_dir);
    if (!h->root || pthread_mutex_init(&h->lock, NULL) != 0) {
        free(h->root);
        free(h);
        return NULL;
    }
    atomic_init(&h->bytes_sent, 0);
    atomic_init(&h->connections, 0u);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                            on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_log, NULL,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                            MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    const union MHD_DaemonInfo *info =
        h->d ? MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    if (!info || info->port == 0) {
        fprintf(stderr, "test httpd: could not start on 127.0.0.1 for %s\n", root_dir);
        lp_test_httpd_stop(h);
        return NULL;
    }
    snprintf(h->url, sizeof h->url, "http://127.0.0.1:%u", (unsigned)info->port);
    return h;
}

const char *lp_test_httpd_url(const lp_test_httpd *h)
{
    return h->url;
}

uint64_t lp_test_httpd_bytes_sent(const lp_test_httpd *h)
{
    return atomic_load(&((lp_test_httpd *)h)->bytes_sent);
}

unsigned lp_test_httpd_requests(const lp_test_httpd *h, const char *path_or_null)
{
    lp_test_httpd *m = (lp_test_httpd *)h; /* the lock is not part of the value */
    pthread_mutex_lock(&m->lock);
    unsigned n = path_or_null ? 0 : m->total;
    for (size_t i = 0; path_or_null && i < m->ncounts; i++)
        if (strcmp(m->counts[i].path, path_or_null) == 0)
            n = m->counts[i].n;
    pthread_mutex_unlock(&m->lock);
    return n;
}

unsigned lp_test_httpd_connections(const lp_test_httpd *h)
{
    return atomic_load(&((lp_test_httpd *)h)->connections);
}

void lp_test_httpd_set_endless(lp_test_httpd *h, const char *url_path)
{
    char *copy = strdup(url_path);
    pthread_mutex_lock(&h->lock);
    char **grown = copy ? realloc(h->endless, (h->nendless + 1) * sizeof *grown) : NULL;
    if (grown) {
        h->endless = grown;
        h->endless[h->nendless++] = copy;
    } else {
        free(copy);
        fprintf(stderr, "test httpd: out of memory adding endless path %s\n", url_path);
    }
    pthread_mutex_unlock(&h->lock);
}

void lp_test_httpd_fail(lp_test_httpd *h, const char *url_path, unsigned status,
                        const char *retry_after, unsigned times)
{
    fault f = {.path = strdup(url_path), .kind = FAULT_STATUS, .status = status,
               .remaining = times,
               .retry_after = retry_after ? strdup(retry_after) : NULL};
    pthread_mutex_lock(&h->lock);
    fault *grown = f.path && (f.retry_after || !retry_after)
                       ? realloc(h->faults, (h->nfaults + 1) * sizeof *grown)
                       : NULL;
    if (grown) {
        h->faults = grown;
        h->faults[h->nfaults++] = f;
    } else {
        free(f.path);
        free(f.retry_after);
        fprintf(stderr, "test httpd: out of memory adding a fault for %s\n", url_path);
    }
    pthread_mutex_unlock(&h->lock);
}

static void add_fault(lp_test_httpd *h, fault f, const char *url_path)
{
    pthread_mutex_lock(&h->lock);
    fault *grown = f.path ? realloc(h->faults, (h->nfaults + 1) * sizeof *grown) : NULL;
    if (grown) {
        h->faults = grown;
        h->faults[h->nfaults++] = f;
    } else {
        free(f.path);
        fprintf(stderr, "test httpd: out of memory adding a rule for %s\n", url_path);
    }
    pthread_mutex_unlock(&h->lock);
}

void lp_test_httpd_cut(lp_test_httpd *h, const char *url_path, uint64_t after, unsigned times)
{
    fault f = {.path = strdup(url_path), .kind = FAULT_CUT, .after = after, .remaining = times};
    add_fault(h, f, url_path);
}

void lp_test_httpd_short_range(lp_test_httpd *h, const char *url_path, uint64_t n,
                               unsigned times)
{
    fault f = {.path = strdup(url_path), .kind = FAULT_SHORT, .after = n, .remaining = times};
    add_fault(h, f, url_path);
}

void lp_test_httpd_ignore_range(lp_test_httpd *h, const char *url_path, unsigned times)
{
    fault f = {.path = strdup(url_path), .kind = FAULT_NO_RANGE, .remaining = times};
    add_fault(h, f, url_path);
}

void lp_test_httpd_last_range(const lp_test_httpd *h, const char *url_path, char *out,
                              size_t cap)
{
    lp_test_httpd *m = (lp_test_httpd *)h;
    pthread_mutex_lock(&m->lock);
    if (cap)
        out[0] = '\0';
    for (size_t i = 0; i < m->ncounts; i++)
        if (strcmp(m->counts[i].path, url_path) == 0)
            snprintf(out, cap, "%s", m->counts[i].range);
    pthread_mutex_unlock(&m->lock);
}

void lp_test_httpd_last_auth(const lp_test_httpd *h, const char *url_path, char *out,
                             size_t cap)
{
    lp_test_httpd *m = (lp_test_httpd *)h;
    pthread_mutex_lock(&m->lock);
    if (cap)
        out[0] = '\0';
    for (size_t i = 0; i < m->ncounts; i++)
        if (strcmp(m->counts[i].path, url_path) == 0)
            snprintf(out, cap, "%s", m->counts[i].auth);
    pthread_mutex_unlock(&m->lock);
}

void lp_test_httpd_set_post(lp_test_httpd *h, const char *url_path, unsigned status)
{
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->nposts; i++) {
        if (strcmp(h->posts[i].path, url_path) == 0) {
            h->posts[i].status = status;
            pthread_mutex_unlock(&h->lock);
            return;
        }
    }
    char *copy = strdup(url_path);
    post_path *grown = copy ? realloc(h->posts, (h->nposts + 1) * sizeof *grown) : NULL;
    if (grown) {
        h->posts = grown;
        h->posts[h->nposts++] = (post_path){.path = copy, .status = status};
    } else {
        free(copy);
        fprintf(stderr, "test httpd: out of memory adding POST path %s\n", url_path);
    }
    pthread_mutex_unlock(&h->lock);
}

char *lp_test_httpd_post_body(const lp_test_httpd *h, const char *url_path, unsigned n)
{
    lp_test_httpd *m = (lp_test_httpd *)h;
    char *copy = NULL;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nposts; i++)
        if (strcmp(m->posts[i].path, url_path) == 0 && n < m->posts[i].nbodies)
            copy = strdup(m->posts[i].bodies[n]);
    pthread_mutex_unlock(&m->lock);
    return copy;
}

void lp_test_httpd_stop(lp_test_httpd *h)
{
    if (!h)
        return;
    if (h->d)
        MHD_stop_daemon(h->d);
    for (size_t i = 0; i < h->ncounts; i++)
        free(h->counts[i].path);
    free(h->counts);
    for (size_t i = 0; i < h->nendless; i++)
        free(h->endless[i]);
    free(h->endless);
    for (size_t i = 0; i < h->nfaults; i++) {
        free(h->faults[i].path);
        free(h->faults[i].retry_after);
    }
    free(h->faults);
    for (size_t i = 0; i < h->nposts; i++) {
        for (size_t k = 0; k < h->posts[i].nbodies; k++)
            free(h->posts[i].bodies[k]);
        free(h->posts[i].bodies);
        free(h->posts[i].path);
    }
    free(h->posts);
    pthread_mutex_destroy(&h->lock);
    free(h->root);
    free(h);
}
