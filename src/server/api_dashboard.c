/*
 * api_dashboard.c — the web dashboard, served from memory (docs/dashboard.md):
 *
 *     GET /                    302 to /dashboard
 *     GET /dashboard           the page (index.html)
 *     GET /dashboard/<file>    its scripts, styles and uPlot (public)
 *
 * ("/dashboard/" itself is answered 308 to /dashboard by the HTTP core.)
 * The files are compiled into the binary (server/dashboard_assets.h), so
 * what a server serves is what it was built with, and nothing is read from
 * disk.  They are public like /healthz: they hold no data; everything the
 * page shows it reads from /api/v1 with the token the operator signs in
 * with, so what a user sees and may do is what the token's scopes allow.
 *
 * Every answer of these routes carries a strict Content-Security-Policy
 * (LP_DASHBOARD_CSP: the page may load scripts, styles, images and data
 * only from this server, may not be framed, and runs no inline script or
 * style), X-Content-Type-Options: nosniff and Referrer-Policy: no-referrer.
 * Files have a strong ETag (from their content) and Cache-Control:
 * no-cache, so a browser revalidates (If-None-Match: 304) and a new binary's
 * files are picked up at once.
 */
#include "server/api.h"
#include "server/dashboard_assets.h"

#include <stdio.h>
#include <string.h>

#define LP_DASHBOARD_CSP                                                                   \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "      \
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/* The headers every dashboard answer has. */
static void add_policy_headers(struct MHD_Response *r)
{
    MHD_add_response_header(r, "Content-Security-Policy", LP_DASHBOARD_CSP);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
}

static const lp_dashboard_asset *find_asset(const char *name)
{
    for (size_t i = 0; name && i < lp_dashboard_asset_count; i++)
        if (!strcmp(lp_dashboard_assets[i].name, name))
            return &lp_dashboard_assets[i];
    return NULL;
}

/* True when the If-None-Match header lists `etag` (or is "*"). */
static bool etag_matches(const char *header, const char *etag)
{
    if (!header)
        return false;
    size_t n = strlen(etag);
    for (const char *p = header; *p;) {
        p += strspn(p, " \t,");
        if (!strncmp(p, "W/", 2))
            p += 2;
        size_t len = strcspn(p, ",");
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if ((len == n && !memcmp(p, etag, n)) || (len == 1 && *p == '*'))
            return true;
        p += strcspn(p, ",");
    }
    return false;
}

static void send_asset(lp_http_request *rq, const lp_dashboard_asset *a)
{
    bool fresh = etag_matches(lp_http_header(rq, "If-None-Match"), a->etag);
    struct MHD_Response *r =
        fresh ? MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT)
              : MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (r) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, a->etag);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        if (!fresh)
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, a->content_type);
        add_policy_headers(r);
    }
    lp_http_respond(rq, fresh ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, r, fresh ? 0 : a->len);
}

static void not_found(lp_http_request *rq, const char *what)
{
    size_t len = 0;
    char msg[160];
    snprintf(msg, sizeof msg, "the dashboard has no file '%.64s'", what);
    struct MHD_Response *r = lp_http_error_response("not_found", msg, &len);
    if (r)
        add_policy_headers(r);
    lp_http_respond(rq, MHD_HTTP_NOT_FOUND, r, len);
}

static void on_root(lp_http_request *rq, void *user)
{
    (void)user;
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (r) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, "/dashboard");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        add_policy_headers(r);
    }
    lp_http_respond(rq, MHD_HTTP_FOUND, r, 0);
}

static void on_page(lp_http_request *rq, void *user)
{
    (void)user;
    const lp_dashboard_asset *a = find_asset("index.html");
    if (a)
        send_asset(rq, a);
    else
        not_found(rq, "index.html");
}

static void on_file(lp_http_request *rq, void *user)
{
    (void)user;
    const char *name = lp_http_param(rq, 0);
    const lp_dashboard_asset *a = find_asset(name);
    if (a)
        send_asset(rq, a);
    else
        not_found(rq, name ? name : "");
}

lp_status lp_api_add_dashboard_routes(lp_http_server *s, lp_error *err)
{
    lp_status st = lp_http_server_route(s, "GET", "/", on_root, NULL, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/dashboard", on_page, NULL, err);
    if (!st)
        st = lp_http_server_route(s, "GET", "/dashboard/*", on_file, NULL, err);
    return st;
}
