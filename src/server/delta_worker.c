/*
 * delta_worker.c — the background delta maker (see delta_worker.h).
 *
 * The thread's whole state is its lp_delta_worker: a mutex, a condition
 * variable (CLOCK_MONOTONIC waits), a stop flag and a "kicked" flag set by
 * the release hook, so a publish that happens while a pair is being worked
 * on is not missed: the loop looks for pending pairs again before it
 * sleeps.  The hook only sets the flag and signals: it runs in the
 * publishing request's thread and must not make it wait.
 */
#include "server/delta_worker.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct lp_delta_worker {
    lp_service *svc;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    bool kicked;
};

static void kick(void *ctx)
{
    lp_delta_worker *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->kicked = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static bool should_stop(void *ctx)
{
    lp_delta_worker *w = ctx;
    pthread_mutex_lock(&w->mu);
    bool stop = w->stop;
    pthread_mutex_unlock(&w->mu);
    return stop;
}

/* Works off pending pairs until none is left; false after an error. */
static bool work(lp_delta_worker *w)
{
    while (!should_stop(w)) {
        lp_error err;
        lp_error_clear(&err);
        lp_db *db = NULL;
        lp_db_delta_pair pair;
        lp_status st = lp_service_db_acquire(w->svc, &db, &err);
        if (!st)
            st = lp_db_delta_pair_next(db, &pair, &err);
        lp_service_db_release(w->svc, db);
        if (st == LP_ERR_NOT_FOUND)
            return true;
        bool stopped = false;
        if (!st)
            st = lp_service_delta_run_pair(w->svc, &pair, should_stop, w, &stopped, &err);
        if (st) {
            const lp_log *log = lp_service_log(w->svc);
            if (log)
                lp_log_event(log, LP_LOG_ERROR, "delta worker: will try again",
                             json_pack("{s:s,s:i}", "error", err.msg, "retry_in_s",
                                       LP_DELTA_WORKER_RETRY_S));
            return false;
        }
    }
    return true;
}

static void *run(void *arg)
{
    lp_delta_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        w->kicked = false;
        pthread_mutex_unlock(&w->mu);
        bool ok = work(w);
        pthread_mutex_lock(&w->mu);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += ok ? LP_DELTA_WORKER_POLL_S : LP_DELTA_WORKER_RETRY_S;
        while (!w->stop && (!ok || !w->kicked) &&
               pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

lp_status lp_delta_worker_start(lp_service *svc, lp_delta_worker **out, lp_error *err)
{
    *out = NULL;
    lp_delta_worker *w = calloc(1, sizeof *w);
    if (!w)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    w->svc = svc;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    if (pthread_create(&w->thread, NULL, run, w) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return lp_error_set(err, LP_ERR_STATE, "cannot start the delta worker thread");
    }
    lp_service_set_release_hook(svc, kick, w);
    *out = w;
    return LP_OK;
}

void lp_delta_worker_stop(lp_delta_worker *w)
{
    if (!w)
        return;
    lp_service_set_release_hook(w->svc, NULL, NULL);
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
