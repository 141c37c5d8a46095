/*
 * delta_worker.h — the server's background delta maker (internal).
 *
 * One thread, started and stopped with the server like the maintainer
 * (maintain.h), that works off the delta pairs the database says are
 * pending (lp_service_delta_run_pair), oldest first, one at a time.  It
 * runs at start (so a restart resumes unfinished pairs), whenever a release
 * is published (the service's release hook wakes it), and every
 * LP_DELTA_WORKER_POLL_S seconds in case it missed something.  After a
 * database error it waits LP_DELTA_WORKER_RETRY_S seconds before trying
 * again.  lp_delta_worker_stop wakes it and joins it; a delta being made
 * is finished first (one file's work), the rest of the pair stays pending.
 */
#ifndef LP_SERVER_DELTA_WORKER_H
#define LP_SERVER_DELTA_WORKER_H

#include "livepush/error.h"
#include "server/service.h"

#define LP_DELTA_WORKER_POLL_S 60
#define LP_DELTA_WORKER_RETRY_S 5

typedef struct lp_delta_worker lp_delta_worker;

/* Starts the thread and registers the service's release hook; `svc` is
 * borrowed and must outlive lp_delta_worker_stop.  When the service plans
 * no deltas (lp_service_deltas(svc)->releases == 0) the thread still
 * finishes pairs planned earlier.  LP_ERR_NOMEM, LP_ERR_STATE (the thread
 * could not start). */
lp_status lp_delta_worker_start(lp_service *svc, lp_delta_worker **out, lp_error *err);
/* Removes the hook, stops and joins the thread and frees w.  NULL is fine. */
void lp_delta_worker_stop(lp_delta_worker *w);

#endif
