/*
 * maintain.h — the server's background upkeep (internal).
 *
 * A thread that runs one task at start and then every `interval_ms`
 * milliseconds: re-signing metadata nearing expiry
 * (lp_service_refresh_expiring), checking the rollout guardrails
 * (lp_service_guard_run).  It sleeps on a condition variable, so
 * lp_maintainer_stop wakes it at once and joins it; a run in progress
 * finishes first (it holds app locks and writes files).
 */
#ifndef LP_SERVER_MAINTAIN_H
#define LP_SERVER_MAINTAIN_H

#include "livepush/error.h"
#include "server/service.h"

typedef struct lp_maintainer lp_maintainer;

/* One run of the task; failures are the task's to log. */
typedef void (*lp_maintainer_task)(lp_service *svc);

/* Starts the thread; `svc` is borrowed and must outlive lp_maintainer_stop.
 * interval_ms >= 10.  LP_ERR_NOMEM, LP_ERR_STATE (the thread could not
 * start). */
lp_status lp_maintainer_start(lp_service *svc, unsigned interval_ms, lp_maintainer_task task,
                              lp_maintainer **out, lp_error *err);
/* Stops and joins the thread and frees m.  NULL is fine. */
void lp_maintainer_stop(lp_maintainer *m);

#endif
