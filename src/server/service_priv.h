/*
 * service_priv.h — what the service_*.c files share (internal).
 *
 * service.c          the data folder, the database pool, app locks, first start
 * service_app.c      creating apps and their server-held keys
 * service_release.c  publish, rollback, the release JSON object
 * service_sync.c     making an app's TUF repository match the database
 * service_signed.c   apps whose publisher signs: creation, two-step publish
 * service_deltas.c   deltas between releases: planning, making, the summary
 * service_audit.c    the audit log: appending entries, the audit.head file
 */
#ifndef LP_SERVER_SERVICE_PRIV_H
#define LP_SERVER_SERVICE_PRIV_H

#include "livepush/key.h"
#include "livepush/tuf_repo.h"
#include "server/metrics.h"
#include "server/service.h"

#include <pthread.h>
#include <time.h>

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
    bool device_token; /* lp_service_options.device_token */
    lp_blobstore *bs;
    int lock_fd;       /* flock on <data>/lock: one server per data folder (SQLite) */
    char *db_url;      /* the database, for a connection of its own (lp_service_repair_app) */

    lp_service_delta_options deltas;
    char *deltas_dir;  /* <data>/deltas */
    pthread_mutex_t hook_mu; /* guards the release hook */
    void (*release_hook)(void *ctx);
    void *release_hook_ctx;

    char *audit_head;        /* audit.head (service_audit.c) */
    pthread_mutex_t audit_mu; /* orders the lines written to it */
    int64_t audit_anchored;  /* newest seq written to it by this server */

    pthread_mutex_t mu; /* guards the pool */
    pthread_cond_t cv;
    lp_db **pool;
    bool *busy;
    struct timespec *taken; /* when each busy connection was handed out */
    unsigned npool;
    struct lp_metrics *metrics; /* the server's counters (metrics.h) */
    const lp_log *lifecycle;    /* lp_service_options.lifecycle (may be NULL) */
    char *crash_at;             /* lp_service_options.crash_at (may be NULL) */
};

/* Fault injection: when the server was started with crash point `name`
 * (LIVEPUSH_CRASH_AT), kills the process with SIGKILL right here, leaving
 * things as a power cut would.  The points (service.c):
 *   change:before-commit  a change's repository files written, its
 *                         transaction not committed, timestamp held
 *   change:after-commit   the transaction committed, timestamp not written
 * A name not in that list aborts: a call site and the list cannot drift. */
void lp_service_crash_point(const lp_service *s, const char *name);

/* One change to an app made under its lock inside one database transaction
 * (a publish, a rollback, a rollout change): the syncs it runs share one
 * repository whose publishes hold the timestamp back, and the timestamp is
 * written only after the commit (lp_service_txn_finish).  Devices and other
 * servers, which read from timestamp.json, therefore never see a state the
 * database does not have: a server dying before the commit leaves only
 * unreferenced versioned files, and one dying between the commit and the
 * timestamp leaves the database ahead, which the next sync of the app (a
 * change, a repair after the lock's holder died, the next start) catches
 * up.  Zero-initialise; lp_service_txn_free when done. */
typedef struct lp_service_txn {
    lp_tuf_repo *repo;
} lp_service_txn;

/* ---- the rollout role (service_rollout.c) ---- */

/* Loads <keys>/<app>/rollout.pem; when it does not exist, makes it if
 * `create`, else *out = NULL and LP_OK. */
lp_status lp_service_rollout_key(lp_service *s, const char *app, bool create, lp_key **out,
                                 lp_error *err);
/* Makes the targets role delegate "rollout/" + star to the app's rollout key
 * (and only it); *changed is set when the repository was edited. */
lp_status lp_service_rollout_delegate(lp_service *s, const char *app, lp_tuf_repo *r,
                                      bool *changed, lp_error *err);
/* Whether the repository as published delegates the rollout role. */
bool lp_service_rollout_enforced(lp_tuf_repo *r);
/* Makes the rollout role list each channel's policy as the database has
 * it (nothing when the role is not delegated). */
lp_status lp_service_rollout_reconcile(lp_service *s, lp_db *db, const lp_db_app *app,
                                       lp_tuf_repo *r, bool *changed, lp_error *err);
/* lp_tuf_repo_publish with `keys` and the app's rollout key when it has one. */
lp_status lp_service_repo_publish(lp_service *s, const char *app, lp_tuf_repo *r,
                                  lp_key *const *keys, size_t n, lp_error *err);
/* Brings the rollout role in line with the database and publishes it with
 * the online keys when it changed; *enforced (may be NULL) tells whether
 * the repository delegates the role at all. */
lp_status lp_service_rollout_sync(lp_service *s, lp_db *db, const lp_db_app *app, bool *enforced,
                                  lp_service_txn *tx, lp_error *err);
/* The cohort salt of a channel (32 hex digits). */
void lp_service_channel_salt(const char *app, const char *channel, char out[33]);

/* Takes the app's lock (flock on <repos>/<app>.lock), waiting for it.
 * *fd_out is released with lp_service_unlock.  When the last holder died
 * holding it, the app is repaired first (lp_service_repair_app; see
 * service.c). */
lp_status lp_service_lock_app(lp_service *s, const char *app, int *fd_out, lp_error *err);
/* The same lock without a service, from the data folder's repos/ folder
 * (`livepush timestamp refresh` takes it next to a running server). */
lp_status lp_service_lock_app_in(const char *repos_dir, const char *app, int *fd_out,
                                 lp_error *err);
void lp_service_unlock(int fd);
/* Brings the app's repository in line with the database (what
 * lp_service_recover does for every app at start), with a connection of
 * its own; call with the app locked.  Failures are logged, not returned. */
void lp_service_repair_app(lp_service *s, const char *app);

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
                              lp_service_txn *tx, lp_error *err);

/* The app's repository for a sync: with `tx`, the one the change already
 * opened, or a new one kept in it with the timestamp held; without, a new
 * one the caller frees (lp_service_repo_done). */
lp_status lp_service_repo_for(lp_service *s, const char *app, lp_service_txn *tx,
                              lp_tuf_repo **r, lp_error *err);
/* Frees `r` unless it belongs to `tx`. */
void lp_service_repo_done(lp_service_txn *tx, lp_tuf_repo *r);
/* After the change's commit: writes the timestamp the change's publishes
 * held, making them visible.  LP_OK when there is none.  A failure is
 * logged and returned with a message saying the change is stored and shows
 * after the app's next sync. */
lp_status lp_service_txn_finish(lp_service *s, const char *app, lp_service_txn *tx,
                                lp_error *err);
/* Drops the change's repository (and a timestamp not written: the files it
 * would have pointed to stay unreferenced, see lp_tuf_repo_hold_timestamp). */
void lp_service_txn_free(lp_service_txn *tx);

/* "<dir>/<name>" (new malloc'd string) or NULL with LP_ERR_NOMEM set. */
char *lp_service_path(const char *dir, const char *name, lp_error *err);

/* LP_ERR_INVALID_ARG (naming the character) unless `name` is a valid app
 * name: 1..LP_DB_NAME_MAX of a-z 0-9 . _ -, the first a letter or digit. */
lp_status lp_service_check_app_name(const char *name, lp_error *err);

/* Moves `path` (if it exists) to <data>/trash/<name>-<time>-<pid>. */
lp_status lp_service_trash(lp_service *s, const char *path, const char *name, lp_error *err);

/* Edits `r` to list exactly the app's published releases, plus the release
 * with ID `also_id` (0: none) whatever its state; *changed when it edited.
 * lp_service_sync_app is this plus a publish with the server's keys. */
lp_status lp_service_reconcile(lp_service *s, lp_db *db, const lp_db_app *app, lp_tuf_repo *r,
                               int64_t also_id, bool *changed, lp_error *err);

/* The second half of a publish or rollback: puts the filled-in release
 * (version_code 0: the next one) into the database and the app's
 * repository, under the app's lock; *id_out gets its ID.  `ctx` is the
 * caller's.  NULL means the server-signed way (inserted published, the
 * repository synced and signed in the same transaction). */
typedef lp_status (*lp_service_insert_fn)(lp_service *s, const lp_db_app *app,
                                          lp_db_release_new *rel, int64_t *id_out, void *ctx,
                                          lp_error *err);

/* lp_service_publish and lp_service_rollback with another second half
 * (service_signed.c: inserted pending, targets prepared for signing).  With
 * insert == NULL an app whose publisher signs is refused (LP_ERR_STATE). */
lp_status lp_service_publish_with(lp_service *s, const char *app, const char *bundle_path,
                                  const lp_ingest_opts *ingest, const lp_release_fields *f,
                                  lp_service_insert_fn insert, void *ctx, lp_db_release *out,
                                  lp_error *err);
lp_status lp_service_rollback_with(lp_service *s, const char *app, const char *target_version,
                                   const char *const *channels, size_t n_channels,
                                   const char *targeting, const char *created_by,
                                   lp_service_insert_fn insert, void *ctx, lp_db_release *out,
                                   lp_error *err);

/* Recovery of an app whose publisher signs (service_signed.c): never signs
 * anything; marks a pending release published when the repository already
 * lists it, and logs what it cannot repair.  Call with the app locked. */
lp_status lp_service_signed_recover_app(lp_service *s, lp_db *db, const lp_db_app *app,
                                        lp_error *err);

/* Plans the delta pairs of the published release `release_id` of `app`
 * (lp_db_delta_plan with the service's K), in db's transaction when one is
 * open.  A failure is logged, never returned: deltas are an optimisation
 * and must not fail a publish. */
void lp_service_delta_plan(lp_service *s, lp_db *db, const char *app, int64_t release_id);

/* Calls the release hook (lp_service_set_release_hook), if any. */
void lp_service_notify_release(lp_service *s);

/* The audit log at open (service_audit.c): sets the head file's path from
 * the database URL and the data folder, and logs an error when the file's
 * last line names an entry the database does not hold.  Needs the pool. */
lp_status lp_service_audit_open(lp_service *s, const char *db_url, lp_error *err);

/* Appends the entry for release `rel` just inserted by a publish or
 * rollback (in db's transaction): action release.published,
 * rollback.published, release.prepared or rollback.prepared by its state
 * and rollback_of; actor the token rel->created_by, else "server"; details
 * its version, code, channels and, for a rollback, the release restored.
 * *pending as lp_service_audit_db. */
lp_status lp_service_audit_insert(lp_service *s, lp_db *db, const lp_db_app *app,
                                  const lp_db_release_new *rel, lp_db_audit_head *pending,
                                  lp_error *err);

#endif
