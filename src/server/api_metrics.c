/*
 * api_metrics.c — GET /metrics: the server's counters and histograms in the
 * Prometheus text exposition format, version 0.0.4 (docs/metrics.md).
 *
 * The route needs a token with the `read` scope, like the rest of the
 * management API: a Prometheus scrape job sends it as a bearer token
 * (`authorization: {credentials_file: ...}`).  The answer is never cached.
 */
#include "server/api.h"
#include "server/auth.h"
#include "server/metrics.h"

#include <microhttpd.h>

static void metrics(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    if (!lp_auth_require(rq, svc, LP_SCOPE_READ, &who))
        return;
    lp_buf b;
    lp_buf_init(&b, 0);
    lp_error err;
    lp_status st = lp_metrics_render(lp_service_metrics(svc), &b, &err);
    struct MHD_Response *r =
        st ? NULL : MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_COPY);
    if (r) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    }
    lp_http_respond(rq, MHD_HTTP_OK, r, b.len);
    lp_buf_free(&b);
}

lp_status lp_api_add_metrics_routes(lp_http_server *s, lp_service *svc, lp_error *err)
{
    return lp_http_server_route(s, "GET", "/metrics", metrics, svc, err);
}
