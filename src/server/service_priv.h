/*
 * service_priv.h — what the service_*.c files share (internal).
 *
 * service.c          the data folder, the database pool, app locks, first start
 * service_app.c      creating apps and their server-held keys
 * service_release.c  publish, rollback, the release JSON object
 * service_sync.c     making an app's TUF repository match the database
 */
#ifndef LP_SERVER_SERVICE_PRIV_H
#define LP_SERVER_SERVICE_PRIV_H

#include "livepush/key.h"
#include "server/service.h"

#include <pthread.h>

/* Top-level roles, in the order their keys are kept. */
#define LP_SERVICE_NROLES 4
extern const char *const lp_service_roles[LP_SERVICE_NROLES];

struct lp_service {
    char *data_dir;
    char *repos_dir;   /* <data>/repos */
    char *keys_dir;    /* <data>/keys */
    char *uploads_dir; /* <data>/uploads */
    lp_ingest_limits limits;
    const lp_log *log;
    lp_blobstore *bs;

    pthread_mutex_t mu; /* guards the pool */
    pthread_cond_t cv;
    lp_db **pool;
    bool *busy;
    unsigned npool;
};

/* Takes the app's lock (flock on <repos>/<app>.lock), waiting for it.
 * *fd_out is released with lp_service_unlock. */
lp_status lp_service_lock_app(lp_service *s, const char *app, int *fd_out, lp_error *err);
void lp_service_unlock(int fd);

/* Loads the app's four server-held keys (keys[i] for lp_service_roles[i]).
 * Free them with lp_service_keys_free. */
lp_status lp_service_keys_load(lp_service *s, const char *app, lp_key *keys[LP_SERVICE_NROLES],
                               lp_error *err);
void lp_service_keys_free(lp_key *keys[LP_SERVICE_NROLES]);

/* Makes <repos>/<app> list exactly the app's published releases (see
 * service_sync.c).  Call with the app locked; `db` may be inside a
 * transaction, whose writes then count.  *changed (may be NULL) tells
 * whether new metadata was written. */
lp_status lp_service_sync_app(lp_service *s, lp_db *db, const lp_db_app *app, bool *changed,
                              lp_error *err);

/* "<dir>/<name>" (new malloc'd string) or NULL with LP_ERR_NOMEM set. */
char *lp_service_path(const char *dir, const char *name, lp_error *err);

#endif
