/*
 * control.c — the agent's local control API (see control.h).
 *
 * A small libmicrohttpd front of its own rather than the server's HTTP core
 * (server/http.h): that one binds a TCP address itself and runs a thread
 * pool, while here each listener is a socket made by this file (a unix
 * socket, or a loopback TCP socket) handed to a daemon with one internal
 * polling thread (MHD_OPTION_LISTEN_SOCKET), so requests are answered one at
 * a time per listener.  The routes are few and fixed; they are matched by
 * exact path, plus the one pattern /v1/releases/<id>/manifest.
 *
 * A request's body is collected up to LP_CONTROL_MAX_BODY bytes (413
 * beyond) and handled when it is complete.  Every handler holds the
 * caller's mutex around its lp_device calls, which is what keeps the
 * agent's tick and the operator's requests from using the device at once.
 *
 * A release-failed request that rolled a release back (an app reporting a
 * failure, e.g. a live swap host whose module crashed) has the queued
 * events sent once its answer is out (libmicrohttpd's completion callback),
 * with the same mutex held, so the server hears of it without waiting for
 * the next tick.
 */
#include "agent/control.h"

#include "core/file.h"
#include "server/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MANIFEST_MAX ((size_t)64 << 20)
#define REASON_MAX 1024u
#define DEFAULT_REASON "rollback requested through the control API"

typedef struct listener {
    struct lp_control *c;
    struct MHD_Daemon *d;
    bool tcp;
} listener;

struct lp_control {
    lp_device *dev;
    pthread_mutex_t *lock;
    const lp_log *log;
    bool send_events;
    listener unix_l, tcp_l;
    char *socket_path; /* NULL: no unix socket */
    uint16_t port;
    unsigned char token_digest[32];
};

typedef struct request {
    char *body;
    size_t len;
    bool too_large;
    bool rolled_back; /* release-failed switched back: send the events once answered */
} request;

/* ---- responses ---------------------------------------------------------- */

static enum MHD_Result send_buffer(struct MHD_Connection *conn, unsigned status, char *text,
                                   size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Sends j (reference taken); NULL j (out of memory) sends nothing. */
static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return MHD_NO;
    return send_buffer(conn, status, text, strlen(text));
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *code,
                                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *code,
                                  const char *fmt, ...)
{
    char msg[LP_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return send_json(conn, status,
                     json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg));
}

/* An lp_status as an HTTP status. */
static unsigned http_status_of(lp_status st)
{
    switch (st) {
    case LP_ERR_INVALID_ARG:
    case LP_ERR_MALFORMED:
        return 400;
    case LP_ERR_NOT_FOUND:
        return 404;
    case LP_ERR_STATE:
    case LP_ERR_EXISTS:
        return 409;
    case LP_ERR_TOO_LARGE:
        return 413;
    case LP_ERR_NETWORK:
        return 502;
    default:
        return 500;
    }
}

static enum MHD_Result send_lp_error(struct MHD_Connection *conn, const lp_error *err)
{
    return send_error(conn, http_status_of(err->code), lp_status_name(err->code), "%s",
                      err->msg[0] ? err->msg : lp_status_name(err->code));
}

/* ---- the routes (called with the lock held) ------------------------------ */

static json_t *id_or_null(uint64_t id)
{
    return id ? json_integer((json_int_t)id) : json_null();
}

static const char *version_of(const lp_updater_status *s, uint64_t id)
{
    for (size_t i = 0; i < s->release_count; i++)
        if (s->releases[i].id == id && s->releases[i].version)
            return s->releases[i].version;
    return "";
}

/* The document of `livepush device status --json`. */
static enum MHD_Result on_status(lp_control *c, struct MHD_Connection *conn, request *rq)
{
    (void)rq;
    lp_error err;
    lp_error_clear(&err);
    lp_updater *u = lp_device_updater(c->dev);
    lp_updater_status s;
    char channel[LP_DEVICE_MAX_CHANNEL + 1] = "";
    bool stored = false;
    size_t queued = 0;
    uint64_t dropped = 0;
    if (lp_device_channel(c->dev, channel, &stored, &err) ||
        lp_events_pending(lp_device_events(c->dev), &queued, &dropped, &err) ||
        lp_updater_status_get(u, &s, &err))
        return send_lp_error(conn, &err);
    json_t *rel = json_array(), *bad = json_array();
    for (size_t i = 0; rel && i < s.release_count; i++)
        json_array_append_new(rel, json_pack("{s:I,s:s?,s:I}", "id", (json_int_t)s.releases[i].id,
                                             "version", s.releases[i].version, "installed_at",
                                             (json_int_t)s.releases[i].installed_at));
    for (size_t i = 0; bad && i < s.bad_count; i++)
        json_array_append_new(bad, json_pack("{s:I,s:s?,s:I}", "id", (json_int_t)s.bad[i].id,
                                             "reason", s.bad[i].reason, "at",
                                             (json_int_t)s.bad[i].at));
    json_t *cur = s.current ? json_pack("{s:I,s:s}", "id", (json_int_t)s.current, "version",
                                        version_of(&s, s.current))
                            : json_null();
    json_t *prev = s.previous ? json_pack("{s:I,s:s}", "id", (json_int_t)s.previous, "version",
                                          version_of(&s, s.previous))
                              : json_null();
    json_t *prob = s.on_probation
                       ? json_pack("{s:I,s:I,s:I,s:I,s:I}", "id", (json_int_t)s.current, "since",
                                   (json_int_t)s.probation_since, "launches",
                                   (json_int_t)s.probation_launches, "max_launches",
                                   (json_int_t)s.probation_max_launches, "window_s",
                                   (json_int_t)s.probation_window_s)
                       : json_null();
    json_t *lerr = s.last_error ? json_pack("{s:I,s:s}", "at", (json_int_t)s.last_error_at,
                                            "message", s.last_error)
                                : json_null();
    json_t *j = json_pack("{s:s,s:s,s:s,s:b,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:{s:I,s:I}}",
                          "device_id", lp_updater_device_id(u), "root", lp_updater_root(u),
                          "channel", channel, "channel_stored", stored, "current", cur,
                          "previous", prev, "probation", prob, "releases", rel, "bad", bad,
                          "last_check", s.last_check ? json_integer(s.last_check) : json_null(),
                          "last_error", lerr, "events", "queued", (json_int_t)queued, "dropped",
                          (json_int_t)dropped);
    lp_updater_status_free(&s);
    return send_json(conn, 200, j);
}

static enum MHD_Result on_check(lp_control *c, struct MHD_Connection *conn, request *rq)
{
    (void)rq;
    lp_error err;
    lp_error_clear(&err);
    lp_update_offer o;
    memset(&o, 0, sizeof o);
    bool available = false;
    if (lp_device_check(c->dev, &o, &available, &err))
        return send_lp_error(conn, &err);
    json_t *offer = available
        ? json_pack("{s:s,s:I,s:b,s:s?,s:o,s:s,s:s}", "version", o.version, "version_code",
                    (json_int_t)o.version_code, "mandatory", o.mandatory, "notes", o.notes,
                    "rollback_of", id_or_null(o.rollback_of), "target", o.target,
                    "manifest_sha256", o.manifest_sha256)
        : json_null();
    lp_update_offer_free(&o);
    return send_json(conn, 200, json_pack("{s:b,s:o}", "available", available, "offer", offer));
}

/* The decimal release id of a path segment (1..20 digits, no leading 0). */
static bool parse_id(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20 || s[0] == '0')
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static enum MHD_Result on_manifest(lp_control *c, struct MHD_Connection *conn, uint64_t id)
{
    lp_error err;
    lp_error_clear(&err);
    lp_updater *u = lp_device_updater(c->dev);
    lp_updater_status s;
    if (lp_updater_status_get(u, &s, &err))
        return send_lp_error(conn, &err);
    bool installed = false;
    for (size_t i = 0; i < s.release_count; i++)
        installed = installed || s.releases[i].id == id;
    lp_updater_status_free(&s);
    if (!installed)
        return send_error(conn, 404, "not_found", "release %llu is not installed",
                          (unsigned long long)id);
    char path[LP_ERROR_MSG_MAX];
    snprintf(path, sizeof path, "%s/.livepush/manifests/%llu.json", lp_updater_root(u),
             (unsigned long long)id);
    uint8_t *data = NULL;
    size_t len = 0;
    if (lp_file_read(path, MANIFEST_MAX, &data, &len, &err))
        return send_lp_error(conn, &err);
    return send_buffer(conn, 200, (char *)data, len);
}

/* Parses a request body: an object with only the keys allowed (a body of
 * no bytes is {}).  NULL with *why set when it is not. */
static json_t *parse_body(const request *rq, const char *const *keys, char *why, size_t cap)
{
    if (!rq->len)
        return json_object();
    json_error_t je;
    json_t *j = json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j)) {
        snprintf(why, cap, "the body is not a JSON object%s%s", j ? "" : ": ", j ? "" : je.text);
        json_decref(j);
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        bool known = false;
        for (size_t i = 0; keys[i]; i++)
            known = known || !strcmp(keys[i], k);
        if (!known) {
            snprintf(why, cap, "unknown key \"%.64s\" in the body", k);
            json_decref(j);
            return NULL;
        }
    }
    return j;
}

static enum MHD_Result run_update(lp_control *c, struct MHD_Connection *conn, bool dry_run)
{
    lp_error err;
    lp_error_clear(&err);
    lp_update_opts o = {.policy = LP_APPLY_ALL, .dry_run = dry_run};
    lp_update_result r;
    memset(&r, 0, sizeof r);
    if (lp_device_update(c->dev, &o, &r, &err))
        return send_lp_error(conn, &err);
    lp_updater_status s;
    uint64_t current = r.from;
    if (!lp_updater_status_get(lp_device_updater(c->dev), &s, &err)) {
        current = s.current;
        lp_updater_status_free(&s);
    }
    json_t *j = json_pack("{s:s,s:b,s:o,s:o}", "outcome", lp_update_outcome_name(r.outcome),
                          "dry_run", dry_run, "from", id_or_null(r.from), "current",
                          id_or_null(current));
    if (j && r.version_code) {
        json_object_set_new(j, "version", json_string(r.version));
        json_object_set_new(j, "version_code", json_integer((json_int_t)r.version_code));
        json_object_set_new(j, "mandatory", json_boolean(r.mandatory));
    }
    if (j && (r.outcome == LP_UPDATE_STAGED || r.outcome == LP_UPDATE_ACTIVATED)) {
        json_object_set_new(j, "already_installed", json_boolean(r.already_installed));
        json_object_set_new(
            j, "stats",
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "files",
                      (json_int_t)r.stats.files, "files_linked",
                      (json_int_t)r.stats.files_linked, "files_copied",
                      (json_int_t)r.stats.files_copied, "files_fetched",
                      (json_int_t)r.stats.files_fetched, "bytes_fetched",
                      (json_int_t)r.stats.bytes_fetched, "files_delta",
                      (json_int_t)r.stats.files_delta, "bytes_delta",
                      (json_int_t)r.stats.bytes_delta, "bytes_delta_saved",
                      (json_int_t)r.stats.bytes_delta_saved, "delta_fallbacks",
                      (json_int_t)r.stats.delta_fallbacks));
        json_object_set_new(j, "timings_ms",
                            json_pack("{s:I,s:I,s:I,s:I}", "check", (json_int_t)r.check_ms,
                                      "download", (json_int_t)r.download_ms, "verify",
                                      (json_int_t)r.verify_ms, "activate",
                                      (json_int_t)r.activate_ms));
    }
    return send_json(conn, 200, j);
}

static enum MHD_Result on_download(lp_control *c, struct MHD_Connection *conn, request *rq)
{
    static const char *const keys[] = {NULL};
    char why[256];
    json_t *b = parse_body(rq, keys, why, sizeof why);
    if (!b)
        return send_error(conn, 400, "bad_request", "%s", why);
    json_decref(b);
    return run_update(c, conn, true);
}

static enum MHD_Result on_apply(lp_control *c, struct MHD_Connection *conn, request *rq)
{
    static const char *const keys[] = {"dry_run", NULL};
    char why[256];
    json_t *b = parse_body(rq, keys, why, sizeof why);
    if (!b)
        return send_error(conn, 400, "bad_request", "%s", why);
    json_t *dr = json_object_get(b, "dry_run");
    if (dr && !json_is_boolean(dr)) {
        json_decref(b);
        return send_error(conn, 400, "bad_request", "\"dry_run\" must be true or false");
    }
    bool dry_run = dr && json_is_true(dr);
    json_decref(b);
    return run_update(c, conn, dry_run);
}

static enum MHD_Result on_rollback_points(lp_control *c, struct MHD_Connection *conn,
                                          request *rq)
{
    (void)rq;
    lp_error err;
    lp_error_clear(&err);
    lp_updater_status s;
    if (lp_updater_status_get(lp_device_updater(c->dev), &s, &err))
        return send_lp_error(conn, &err);
    json_t *rels = json_array();
    for (size_t i = 0; rels && i < s.release_count; i++)
        json_array_append_new(
            rels, json_pack("{s:I,s:s?,s:I,s:b,s:b}", "id", (json_int_t)s.releases[i].id,
                            "version", s.releases[i].version, "installed_at",
                            (json_int_t)s.releases[i].installed_at, "current",
                            s.releases[i].id == s.current, "previous",
                            s.releases[i].id == s.previous));
    json_t *j = json_pack("{s:o,s:o,s:o}", "current", id_or_null(s.current), "previous",
                          id_or_null(s.previous), "releases", rels ? rels : json_null());
    lp_updater_status_free(&s);
    return send_json(conn, 200, j);
}

static enum MHD_Result on_rollback(lp_control *c, struct MHD_Connection *conn, request *rq)
{
    static const char *const keys[] = {"to", "reason", NULL};
    char why[256];
    json_t *b = parse_body(rq, keys, why, sizeof why);
    if (!b)
        return send_error(conn, 400, "bad_request", "%s", why);
    json_t *to = json_object_get(b, "to"), *reason = json_object_get(b, "reason");
    if (to && (!json_is_integer(to) || json_integer_value(to) < 0)) {
        json_decref(b);
        return send_error(conn, 400, "bad_request", "\"to\" must be a release id (0: previous)");
    }
    if (reason && (!json_is_string(reason) || json_string_length(reason) == 0 ||
                   json_string_length(reason) > REASON_MAX)) {
        json_decref(b);
        return send_error(conn, 400, "bad_request", "\"reason\" must be 1..%u bytes of text",
                          REASON_MAX);
    }
    uint64_t to_id = to ? (uint64_t)json_integer_value(to) : 0;
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_device_rollback(c->dev, to_id, reason ? json_string_value(reason)
                                                            : DEFAULT_REASON, &err);
    json_decref(b);
    if (st)
        return send_lp_error(conn, &err);
    lp_updater_status s;
    if (lp_updater_status_get(lp_device_updater(c->dev), &s, &err))
        return send_lp_error(conn, &err);
    json_t *j = json_pack("{s:o,s:o}", "current", id_or_null(s.current), "previous",
                          id_or_null(s.previous));
    lp_updater_status_free(&s);
    return send_json(conn, 200, j);
}

/* POST /v1/release-failed {"release":ID,"reason":"..."}: the app reports that
 * release ID fails (a live swap host whose module of that release was
 * swapped back by its probation, say).  If ID is current: rolled back and
 * marked bad (lp_device_release_failed), 200 "rolled_back"; if it is marked
 * bad already (a report repeated after a lost answer): 200
 * "already_rolled_back", nothing done; if it is not current: 409. */
static enum MHD_Result on_release_failed(lp_control *c, struct MHD_Connection *conn,
                                         request *rq)
{
    static const char *const keys[] = {"release", "reason", NULL};
    char why[256];
    json_t *b = parse_body(rq, keys, why, sizeof why);
    if (!b)
        return send_error(conn, 400, "bad_request", "%s", why);
    json_t *rel = json_object_get(b, "release"), *reason = json_object_get(b, "reason");
    if (!rel || !json_is_integer(rel) || json_integer_value(rel) <= 0) {
        json_decref(b);
        return send_error(conn, 400, "bad_request", "\"release\" must be a release id");
    }
    if (!reason || !json_is_string(reason) || json_string_length(reason) == 0 ||
        json_string_length(reason) > REASON_MAX) {
        json_decref(b);
        return send_error(conn, 400, "bad_request", "\"reason\" must be 1..%u bytes of text",
                          REASON_MAX);
    }
    uint64_t id = (uint64_t)json_integer_value(rel);
    char text[REASON_MAX + 1];
    snprintf(text, sizeof text, "%s", json_string_value(reason));
    json_decref(b);
    lp_error err;
    lp_error_clear(&err);
    lp_updater_status s;
    if (lp_updater_status_get(lp_device_updater(c->dev), &s, &err))
        return send_lp_error(conn, &err);
    bool bad = false;
    for (size_t i = 0; i < s.bad_count; i++)
        bad = bad || s.bad[i].id == id;
    bool current = s.current == id;
    lp_updater_status_free(&s);
    const char *outcome = "already_rolled_back";
    if (!bad || current) {
        if (lp_device_release_failed(c->dev, id, text, &err)) {
            if (c->log)
                lp_log_event(c->log, LP_LOG_WARN, "release failed: not rolled back",
                             json_pack("{s:I,s:s,s:s}", "release", (json_int_t)id, "reason",
                                       text, "error", err.msg));
            return send_lp_error(conn, &err);
        }
        outcome = "rolled_back";
        rq->rolled_back = true;
    }
    if (lp_updater_status_get(lp_device_updater(c->dev), &s, &err))
        return send_lp_error(conn, &err);
    json_t *j = json_pack("{s:s,s:I,s:o,s:o}", "outcome", outcome, "release", (json_int_t)id,
                          "current", id_or_null(s.current), "previous", id_or_null(s.previous));
    lp_updater_status_free(&s);
    if (c->log)
        lp_log_event(c->log, LP_LOG_WARN, "release failed",
                     json_pack("{s:I,s:s,s:s}", "release", (json_int_t)id, "outcome", outcome,
                               "reason", text));
    return send_json(conn, 200, j);
}

/* ---- dispatch ------------------------------------------------------------- */

typedef enum MHD_Result (*route_fn)(lp_control *c, struct MHD_Connection *conn,
                                    request *rq);

static const struct {
    const char *method, *path;
    route_fn fn;
} routes[] = {
    {"GET", "/v1/status", on_status},
    {"POST", "/v1/check", on_check},
    {"POST", "/v1/download", on_download},
    {"POST", "/v1/apply", on_apply},
    {"GET", "/v1/rollback-points", on_rollback_points},
    {"POST", "/v1/rollback", on_rollback},
    {"POST", "/v1/release-failed", on_release_failed},
};

/* True when the request carries the admin token. */
static bool authorized(const lp_control *c, struct MHD_Connection *conn)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    const char *tok = h + 7;
    size_t n = strlen(tok);
    if (n == 0 || n > LP_CONTROL_MAX_TOKEN)
        return false;
    unsigned char d[32];
    unsigned int dlen = 0;
    if (!EVP_Digest(tok, n, d, &dlen, EVP_sha256(), NULL) || dlen != sizeof d)
        return false;
    return CRYPTO_memcmp(d, c->token_digest, sizeof d) == 0;
}

static enum MHD_Result dispatch(listener *l, struct MHD_Connection *conn, const char *url,
                                const char *method, request *rq)
{
    lp_control *c = l->c;
    if (l->tcp && !authorized(c, conn)) {
        json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", "unauthorized", "message",
                              "this listener needs \"Authorization: Bearer <admin token>\"");
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        struct MHD_Response *r =
            text ? MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE)
                 : NULL;
        if (!r) {
            free(text);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "application/json");
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
        enum MHD_Result ret = MHD_queue_response(conn, 401, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (rq->too_large)
        return send_error(conn, 413, "too_large", "the request body is larger than %u bytes",
                          LP_CONTROL_MAX_BODY);
    route_fn fn = NULL;
    bool path_known = false;
    const char *allow = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(routes[i].path, url) != 0)
            continue;
        path_known = true;
        allow = routes[i].method;
        if (!strcmp(routes[i].method, method))
            fn = routes[i].fn;
    }
    uint64_t manifest_id = 0;
    static const char pre[] = "/v1/releases/", post[] = "/manifest";
    size_t ul = strlen(url);
    if (!path_known && ul > sizeof pre - 1 + sizeof post - 1 && !strncmp(url, pre, sizeof pre - 1) &&
        !strcmp(url + ul - (sizeof post - 1), post)) {
        const char *id = url + sizeof pre - 1;
        size_t idn = ul - (sizeof pre - 1) - (sizeof post - 1);
        if (!parse_id(id, idn, &manifest_id))
            return send_error(conn, 400, "bad_request", "not a release id: %.*s",
                              (int)(idn > 32 ? 32 : idn), id);
        path_known = true;
        allow = "GET";
    }
    if (!path_known)
        return send_error(conn, 404, "not_found", "no route for %s %.200s", method, url);
    if (!fn && !(manifest_id && !strcmp(method, "GET")))
        return send_error(conn, 405, "method_not_allowed", "%s %.200s: use %s", method, url,
                          allow);
    pthread_mutex_lock(c->lock);
    enum MHD_Result ret = fn ? fn(c, conn, rq) : on_manifest(c, conn, manifest_id);
    pthread_mutex_unlock(c->lock);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    listener *l = cls;
    request *rq = *con_cls;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq)
            return MHD_NO;
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->too_large)
            return MHD_YES;
        if (n > LP_CONTROL_MAX_BODY - rq->len) {
            rq->too_large = true;
            free(rq->body);
            rq->body = NULL;
            rq->len = 0;
            return MHD_YES;
        }
        char *nb = realloc(rq->body, rq->len + n);
        if (!nb)
            return MHD_NO;
        memcpy(nb + rq->len, upload_data, n);
        rq->body = nb;
        rq->len += n;
        return MHD_YES;
    }
    enum MHD_Result ret = dispatch(l, conn, url, method, rq);
    if (l->c->log)
        lp_log_event(l->c->log, LP_LOG_INFO, "control request",
                     json_pack("{s:s,s:s,s:s}", "method", method, "path", url, "listener",
                               l->tcp ? "http" : "unix"));
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    listener *l = cls;
    request *rq = *con_cls;
    if (rq && rq->rolled_back && l->c->send_events) {
        /* A failure reported by the app reaches the server now, not at the
         * next tick: the caller has its answer already. */
        lp_control *c = l->c;
        lp_error err;
        lp_error_clear(&err);
        size_t sent = 0;
        pthread_mutex_lock(c->lock);
        lp_status st = lp_device_send_events(c->dev, &sent, &err);
        pthread_mutex_unlock(c->lock);
        if (c->log && st && st != LP_ERR_UNSUPPORTED)
            lp_log_event(c->log, LP_LOG_WARN, "sending events failed",
                         json_pack("{s:s}", "error", err.msg));
        else if (c->log && !st)
            lp_log_event(c->log, LP_LOG_INFO, "events", json_pack("{s:I}", "sent", (json_int_t)sent));
    }
    if (rq) {
        free(rq->body);
        free(rq);
        *con_cls = NULL;
    }
}

/* ---- listeners -------------------------------------------------------------- */

static lp_status start_daemon(listener *l, int fd, lp_error *err)
{
    l->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL, NULL, on_request, l,
                            MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, 16u,
                            MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, l, MHD_OPTION_END);
    if (!l->d) {
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "control API: cannot start the %s listener",
                            l->tcp ? "HTTP" : "unix socket");
    }
    return LP_OK;
}

static lp_status open_unix(const char *path, int *out, lp_error *err)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (!*path || strlen(path) >= sizeof sa.sun_path)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "control socket %s: a unix socket path has 1..%zu bytes", path,
                            sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path));
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        if (!S_ISSOCK(sb.st_mode))
            return lp_error_set(err, LP_ERR_EXISTS,
                                "control socket %s: the path exists and is not a socket", path);
        if (unlink(path) != 0)
            return lp_error_set(err, LP_ERR_IO, "control socket %s: removing the old socket: %s",
                                path, strerror(errno));
    } else if (errno != ENOENT) {
        return lp_error_set(err, LP_ERR_IO, "control socket %s: %s", path, strerror(errno));
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return lp_error_set(err, LP_ERR_IO, "control socket %s: socket: %s", path,
                            strerror(errno));
    /* No other thread runs yet: the umask change is seen by this bind only. */
    mode_t old = umask(0077);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    umask(old);
    if (rc != 0) {
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "control socket %s: bind: %s", path, strerror(e));
    }
    if (chmod(path, 0600) != 0 || listen(fd, 16) != 0) {
        e = errno;
        close(fd);
        unlink(path);
        return lp_error_set(err, LP_ERR_IO, "control socket %s: %s", path, strerror(e));
    }
    *out = fd;
    return LP_OK;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

static lp_status open_tcp(const char *listen_addr, bool allow_remote, int *out, uint16_t *port,
                          lp_error *err)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    lp_status st = lp_server_parse_listen(listen_addr, &ss, &sslen, err);
    if (st)
        return lp_error_prefix(err, st, "control HTTP address");
    if (!allow_remote && !is_loopback(&ss))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "control HTTP address %s is not loopback (allow it explicitly with "
                            "--control-allow-remote)",
                            listen_addr);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return lp_error_set(err, LP_ERR_NETWORK, "control HTTP %s: socket: %s", listen_addr,
                            strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, 16) != 0) {
        int e = errno;
        close(fd);
        return lp_error_set(err, LP_ERR_NETWORK, "control HTTP %s: cannot listen: %s",
                            listen_addr, strerror(e));
    }
    struct sockaddr_storage b;
    socklen_t blen = sizeof b;
    *port = 0;
    if (getsockname(fd, (struct sockaddr *)&b, &blen) == 0)
        *port = ntohs(b.ss_family == AF_INET ? ((struct sockaddr_in *)&b)->sin_port
                                             : ((struct sockaddr_in6 *)&b)->sin6_port);
    *out = fd;
    return LP_OK;
}

lp_status lp_control_start(const lp_control_config *cfg, lp_control **out, lp_error *err)
{
    *out = NULL;
    bool want_unix = cfg->socket_path && cfg->socket_path[0];
    bool want_tcp = cfg->http_listen && cfg->http_listen[0];
    if (!cfg->dev || !cfg->lock || (!want_unix && !want_tcp))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "control API: nothing to listen on");
    size_t tlen = cfg->token ? strlen(cfg->token) : 0;
    if (want_tcp && (tlen == 0 || tlen > LP_CONTROL_MAX_TOKEN))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "control HTTP %s needs an admin token of 1..%u bytes",
                            cfg->http_listen, LP_CONTROL_MAX_TOKEN);
    lp_control *c = calloc(1, sizeof *c);
    if (!c)
        return lp_error_set(err, LP_ERR_NOMEM, "control API: out of memory");
    c->dev = cfg->dev;
    c->lock = cfg->lock;
    c->log = cfg->log;
    c->send_events = cfg->send_events;
    c->unix_l = (listener){.c = c, .tcp = false};
    c->tcp_l = (listener){.c = c, .tcp = true};
    if (want_tcp) {
        unsigned int dlen = 0;
        if (!EVP_Digest(cfg->token, tlen, c->token_digest, &dlen, EVP_sha256(), NULL)) {
            free(c);
            return lp_error_set(err, LP_ERR_CRYPTO, "control API: hashing the token failed");
        }
    }
    lp_status st = LP_OK;
    int fd = -1;
    if (want_unix) {
        st = open_unix(cfg->socket_path, &fd, err);
        if (!st && !(c->socket_path = strdup(cfg->socket_path))) {
            close(fd);
            unlink(cfg->socket_path);
            st = lp_error_set(err, LP_ERR_NOMEM, "control API: out of memory");
        }
        if (!st)
            st = start_daemon(&c->unix_l, fd, err);
    }
    if (!st && want_tcp) {
        st = open_tcp(cfg->http_listen, cfg->allow_remote, &fd, &c->port, err);
        if (!st)
            st = start_daemon(&c->tcp_l, fd, err);
    }
    if (st) {
        lp_control_stop(c);
        return st;
    }
    *out = c;
    return LP_OK;
}

uint16_t lp_control_http_port(const lp_control *c)
{
    return c && c->tcp_l.d ? c->port : 0;
}

void lp_control_stop(lp_control *c)
{
    if (!c)
        return;
    if (c->unix_l.d)
        MHD_stop_daemon(c->unix_l.d);
    if (c->tcp_l.d)
        MHD_stop_daemon(c->tcp_l.d);
    if (c->socket_path) {
        struct stat sb;
        if (lstat(c->socket_path, &sb) == 0 && S_ISSOCK(sb.st_mode))
            unlink(c->socket_path);
        free(c->socket_path);
    }
    free(c);
}
