/*
 * metrics.h — the server's counters and histograms, rendered in the
 * Prometheus text exposition format (version 0.0.4) at GET /metrics
 * (internal; docs/metrics.md lists every series).
 *
 * A registry holds a fixed list of families (lp_metric_family: name, help,
 * type, label names); each family holds the series seen so far, keyed by
 * their label values.  Label values come from bounded sets (route
 * patterns, not paths; app names; event types; status codes), so the
 * number of series stays bounded; a family refuses new series past
 * LP_METRICS_SERIES_MAX and counts them in
 * livepush_metrics_series_dropped_total instead.
 *
 * Every update takes the registry's mutex for the time of a small lookup
 * and an addition, so any thread may record at any time; rendering copies
 * nothing and holds the mutex while it writes the text.  The registry is
 * owned by the service (lp_service_metrics) and borrowed by the HTTP
 * server; there is no global instance.
 */
#ifndef LP_SERVER_METRICS_H
#define LP_SERVER_METRICS_H

#include "core/buf.h"
#include "livepush/error.h"

#include <stdint.h>

#define LP_METRICS_SERIES_MAX 2048

typedef enum lp_metric_family {
    LP_M_HTTP_REQUESTS,      /* counter {method, route, status} */
    LP_M_HTTP_DURATION,      /* histogram {route} seconds */
    LP_M_HTTP_BYTES,         /* counter {route}: response body bytes sent */
    LP_M_PUBLISHES,          /* counter {app} */
    LP_M_DELTAS,             /* counter {result}: made, too_large, failed */
    LP_M_CHECKINS,           /* counter {app}: event batches from devices */
    LP_M_DEVICE_EVENTS,      /* counter {app, type} */
    LP_M_GUARDRAIL_HALTS,    /* counter {app} */
    LP_M_DB_WAIT,            /* histogram {}: waiting for a pooled connection, seconds */
    LP_M_DB_HOLD,            /* histogram {}: a connection held by one piece of work, seconds */
    LP_M_DROPPED,            /* counter {family}: series refused past the bound */
    LP_M_FAMILIES
} lp_metric_family;

typedef struct lp_metrics lp_metrics;

lp_status lp_metrics_new(lp_metrics **out, lp_error *err);
void lp_metrics_free(lp_metrics *m);

/* Adds n to the counter of `family` with the given label values (as many
 * as the family has labels; NULL stands for "").  m may be NULL (nothing
 * recorded). */
void lp_metrics_add(lp_metrics *m, lp_metric_family family, const char *const *labels,
                    uint64_t n);
/* Records one observation (seconds) in a histogram family. */
void lp_metrics_observe(lp_metrics *m, lp_metric_family family, const char *const *labels,
                        double seconds);
/* One finished HTTP request: counts it, its duration and its body bytes.
 * route is the pattern that served it ("unmatched" when none did). */
void lp_metrics_request(lp_metrics *m, const char *method, const char *route, unsigned status,
                        double seconds, uint64_t bytes);

/* Appends the text exposition of every family to out.  LP_ERR_NOMEM. */
lp_status lp_metrics_render(lp_metrics *m, lp_buf *out, lp_error *err);

#endif
