/*
 * maintain.c — the background upkeep thread (see maintain.h).
 *
 * The thread's whole state is its lp_maintainer: a mutex, a condition
 * variable and a stop flag.  Waits use CLOCK_MONOTONIC so a change of the
 * wall clock neither skips nor repeats a run.
 */
#include "server/maintain.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct lp_maintainer {
    lp_service *svc;
    unsigned interval_ms;
    lp_maintainer_task task;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
};

static void *run(void *arg)
{
    lp_maintainer *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        pthread_mutex_unlock(&m->mu);
        m->task(m->svc);
        pthread_mutex_lock(&m->mu);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += m->interval_ms / 1000;
        until.tv_nsec += (long)(m->interval_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

lp_status lp_maintainer_start(lp_service *svc, unsigned interval_ms, lp_maintainer_task task,
                              lp_maintainer **out, lp_error *err)
{
    *out = NULL;
    if (interval_ms < 10 || !task)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "maintenance: a task and an interval of at least 10 ms are needed");
    lp_maintainer *m = calloc(1, sizeof *m);
    if (!m)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    m->svc = svc;
    m->interval_ms = interval_ms;
    m->task = task;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&m->mu, NULL);
    if (pthread_create(&m->thread, NULL, run, m) != 0) {
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->mu);
        free(m);
        return lp_error_set(err, LP_ERR_STATE, "cannot start the maintenance thread");
    }
    *out = m;
    return LP_OK;
}

void lp_maintainer_stop(lp_maintainer *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
