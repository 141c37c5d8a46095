/*
 * service.c — the service's data folder, database pool, app locks and first
 * start.
 *
 * The pool is a fixed array of connections opened at start (the first open
 * applies migrations, the others find the schema current).  A thread takes
 * a free one or waits on a condition variable; nothing else is shared.
 *
 * With SQLite, one server owns a data folder: lp_service_open takes a
 * non-blocking exclusive flock on <data>/lock and refuses a folder another
 * process holds (the blob store's tmp/ folder is emptied at open, which
 * would break a running server's publishes).  With PostgreSQL, several
 * servers share the database and the data folder, so each takes a shared
 * flock on <data>/lock (which still keeps an SQLite server out, and them
 * out of an SQLite server's folder) and opens the blob store shared (tmp/
 * is only cleared of day-old leftovers).  Uploads untouched for
 * LP_SERVICE_UPLOAD_TTL seconds are removed at open.
 *
 * App locks are flock(2) locks on <repos>/<app>.lock.  flock locks belong to
 * an open file description, so two threads of one process that each open
 * the file exclude each other exactly as two processes do, and so do
 * processes on one machine; servers on several machines need a shared
 * filesystem whose flock works between its clients (NFSv4 and most
 * cluster filesystems).  The holder writes its pid into the lock file and
 * empties it again when it lets go: a lock file found non-empty was left by
 * a server that died holding the lock, maybe between writing the app's
 * repository and committing the database (a publish writes the metadata
 * first), so the new holder first brings the repository back in line with
 * the database (lp_service_repair_app) before it does anything else.  The
 * server's periodic re-signing takes every app's lock, so a dead holder's
 * leftovers are repaired within one re-sign interval even when nobody
 * touches the app.
 */
#include "server/service_priv.h"

#include "core/file.h"
#include "livepush/hash.h"
#include "livepush/token.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_POOL 8
#define MAX_POOL 256
#define LP_SERVICE_UPLOAD_TTL (7 * 24 * 3600)

const char *const lp_service_roles[LP_SERVICE_NROLES] = {"root", "targets", "snapshot",
                                                         "timestamp"};

char *lp_service_path(const char *dir, const char *name, lp_error *err)
{
    char *p = lp_path_join(dir, name);
    if (!p)
        lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    return p;
}

static lp_status make_dirs(lp_service *s, lp_error *err)
{
    lp_status st;
    if ((st = lp_file_mkdirs(s->data_dir, 0700, err)))
        return lp_error_prefix(err, st, "data folder %s", s->data_dir);
    if (!(s->repos_dir = lp_service_path(s->data_dir, "repos", err)) ||
        !(s->keys_dir = lp_service_path(s->data_dir, "keys", err)) ||
        !(s->uploads_dir = lp_service_path(s->data_dir, "uploads", err)) ||
        !(s->deltas_dir = lp_service_path(s->data_dir, "deltas", err)))
        return LP_ERR_NOMEM;
    const char *dirs[] = {s->repos_dir, s->keys_dir, s->uploads_dir};
    for (size_t i = 0; i < 3; i++)
        if ((st = lp_file_mkdirs(dirs[i], 0700, err)))
            return st;
    return LP_OK;
}

/* The data folder's lock: exclusive for a server on SQLite, shared by the
 * servers of one PostgreSQL database (see the top of this file). */
static lp_status lock_data_dir(lp_service *s, bool shared, lp_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/lock", s->data_dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0)
        return lp_error_set(err, LP_ERR_IO, "open %s: %s", path, strerror(errno));
    if (flock(s->lock_fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0)
        return lp_error_set(err, errno == EWOULDBLOCK ? LP_ERR_STATE : LP_ERR_IO,
                            "data folder %s is in use by another livepush server%s (%s)",
                            s->data_dir,
                            shared ? " that does not share it (one on SQLite)" : "",
                            strerror(errno));
    return LP_OK;
}

/* True for a database URL whose servers share their data folder. */
static bool shared_db(const char *url)
{
    return url && (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0);
}

/* Removes uploads nobody has touched for LP_SERVICE_UPLOAD_TTL seconds:
 * the partial file first, then the row. */
static lp_status sweep_uploads(lp_service *s, lp_error *err)
{
    lp_db *db = NULL;
    lp_db_upload_list list = {0};
    lp_status st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_upload_list_stale(db, time(NULL) - LP_SERVICE_UPLOAD_TTL, &list, err);
    for (size_t i = 0; !st && i < list.count; i++) {
        if (unlink(list.items[i].path) != 0 && errno != ENOENT)
            st = lp_error_set(err, LP_ERR_IO, "remove %s: %s", list.items[i].path,
                              strerror(errno));
        if (!st)
            st = lp_db_upload_delete(db, list.items[i].id, err);
    }
    if (!st && list.count && s->log)
        lp_log_event(s->log, LP_LOG_INFO, "abandoned uploads removed",
                     json_pack("{s:I}", "count", (json_int_t)list.count));
    lp_db_upload_list_free(&list);
    lp_service_db_release(s, db);
    return st;
}

static lp_status open_pool(lp_service *s, const char *url, unsigned n, lp_error *err)
{
    s->pool = calloc(n, sizeof *s->pool);
    s->busy = calloc(n, sizeof *s->busy);
    s->taken = calloc(n, sizeof *s->taken);
    if (!s->pool || !s->busy || !s->taken)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    for (unsigned i = 0; i < n; i++) {
        lp_status st = lp_db_open(url, &s->pool[i], err);
        if (st) {
            char shown[LP_DB_URL_MAX + 1];
            lp_db_url_redact(url, shown, sizeof shown);
            return lp_error_prefix(err, st, "database %.300s", shown);
        }
        s->npool = i + 1;
    }
    return LP_OK;
}

lp_status lp_service_open(lp_service **out, const lp_service_options *opt, lp_error *err)
{
    *out = NULL;
    if (!opt || !opt->data_dir || !*opt->data_dir)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "service: no data folder given");
    unsigned n = opt->db_connections ? opt->db_connections : DEFAULT_POOL;
    if (n > MAX_POOL)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "service: %u database connections asked, at most %d", n, MAX_POOL);
    lp_service *s = calloc(1, sizeof *s);
    if (!s || !(s->data_dir = strdup(opt->data_dir))) {
        free(s);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    s->lock_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->log = opt->log;
    s->lifecycle = opt->lifecycle;
    if (opt->crash_at && *opt->crash_at && !(s->crash_at = strdup(opt->crash_at))) {
        free(s->data_dir);
        free(s);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    s->device_token = opt->device_token;
    s->deltas = opt->deltas;
    if (s->deltas.max_ratio <= 0)
        s->deltas.max_ratio = LP_SERVICE_DELTA_RATIO_DEFAULT;
    if (s->deltas.releases > LP_DB_DELTA_RELEASES_MAX)
        s->deltas.releases = LP_DB_DELTA_RELEASES_MAX;
    pthread_mutex_init(&s->hook_mu, NULL);
    pthread_mutex_init(&s->audit_mu, NULL);
    if (opt->limits)
        s->limits = *opt->limits;
    else
        lp_ingest_limits_default(&s->limits);

    lp_status st = lp_metrics_new(&s->metrics, err);
    if (!st)
        st = make_dirs(s, err);
    bool shared = shared_db(opt->db_url);
    if (!st)
        st = lock_data_dir(s, shared, err);
    char *blobs = NULL, *url = NULL;
    if (!st && !(blobs = lp_service_path(s->data_dir, "blobs", err)))
        st = LP_ERR_NOMEM;
    if (!st && (st = shared ? lp_blobstore_open_shared(blobs, &s->bs, err)
                            : lp_blobstore_open(blobs, &s->bs, err)))
        lp_error_prefix(err, st, "blob store");
    if (!st) {
        if (opt->db_url && *opt->db_url) {
            url = strdup(opt->db_url);
        } else {
            size_t len = strlen(s->data_dir) + 32;
            if ((url = malloc(len)))
                snprintf(url, len, "sqlite:%s/livepush.db", s->data_dir);
        }
        if (!url)
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    if (!st) {
        s->db_url = url;
        url = NULL;
        st = open_pool(s, s->db_url, n, err);
    }
    if (!st)
        st = lp_service_audit_open(s, s->db_url, err);
    if (!st)
        st = lp_service_recover(s, err);
    if (!st)
        st = sweep_uploads(s, err);
    free(blobs);
    free(url);
    if (st) {
        lp_service_close(s);
        return st;
    }
    *out = s;
    return LP_OK;
}

void lp_service_close(lp_service *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < s->npool; i++)
        lp_db_close(s->pool[i]);
    free(s->pool);
    free(s->busy);
    free(s->taken);
    lp_metrics_free(s->metrics);
    lp_blobstore_close(s->bs);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->hook_mu);
    pthread_mutex_destroy(&s->audit_mu);
    free(s->audit_head);
    free(s->db_url);
    free(s->crash_at);
    free(s->deltas_dir);
    free(s->data_dir);
    free(s->repos_dir);
    free(s->keys_dir);
    free(s->uploads_dir);
    free(s);
}

const char *lp_service_data_dir(const lp_service *s) { return s->data_dir; }
lp_blobstore *lp_service_blobstore(lp_service *s) { return s->bs; }
const lp_ingest_limits *lp_service_limits(const lp_service *s) { return &s->limits; }
const lp_log *lp_service_log(const lp_service *s) { return s->log; }
bool lp_service_device_token(const lp_service *s) { return s->device_token; }
lp_metrics *lp_service_metrics(lp_service *s) { return s->metrics; }

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

lp_status lp_service_db_acquire(lp_service *s, lp_db **db, lp_error *err)
{
    (void)err;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (unsigned i = 0; i < s->npool; i++) {
            if (!s->busy[i]) {
                s->busy[i] = true;
                *db = s->pool[i];
                clock_gettime(CLOCK_MONOTONIC, &s->taken[i]);
                pthread_mutex_unlock(&s->mu);
                lp_metrics_observe(s->metrics, LP_M_DB_WAIT, NULL, seconds_since(&t0));
                return LP_OK;
            }
        }
        pthread_cond_wait(&s->cv, &s->mu);
    }
}

void lp_service_db_release(lp_service *s, lp_db *db)
{
    if (!db)
        return;
    pthread_mutex_lock(&s->mu);
    for (unsigned i = 0; i < s->npool; i++) {
        if (s->pool[i] == db) {
            if (lp_db_in_transaction(db))
                lp_db_rollback(db, NULL);
            s->busy[i] = false;
            lp_metrics_observe(s->metrics, LP_M_DB_HOLD, NULL, seconds_since(&s->taken[i]));
            pthread_cond_signal(&s->cv);
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

lp_status lp_service_lock_app(lp_service *s, const char *app, int *fd_out, lp_error *err)
{
    lp_status st = lp_service_lock_app_in(s->repos_dir, app, fd_out, err);
    if (st)
        return st;
    /* A non-empty lock file: its last holder died holding it (see the top
     * of this file).  Repaired before anything else; a failure there is
     * logged and the caller goes on (its own sync repairs as well). */
    struct stat sb;
    if (fstat(*fd_out, &sb) == 0 && sb.st_size > 0)
        lp_service_repair_app(s, app);
    char mark[32];
    int n = snprintf(mark, sizeof mark, "%ld\n", (long)getpid());
    if (ftruncate(*fd_out, 0) != 0 || pwrite(*fd_out, mark, (size_t)n, 0) != n) {
        int e = errno;
        lp_service_unlock(*fd_out);
        *fd_out = -1;
        return lp_error_set(err, LP_ERR_IO, "lock of app %s: writing the holder: %s", app,
                            strerror(e));
    }
    return LP_OK;
}

lp_status lp_service_lock_app_in(const char *repos_dir, const char *app, int *fd_out,
                                 lp_error *err)
{
    char path[4200];
    if (snprintf(path, sizeof path, "%s/%s.lock", repos_dir, app) >= (int)sizeof path)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "app name too long");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return lp_error_set(err, LP_ERR_IO, "open %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return lp_error_set(err, LP_ERR_IO, "lock %s: %s", path, strerror(e));
        }
    }
    *fd_out = fd;
    return LP_OK;
}

void lp_service_unlock(int fd)
{
    if (fd < 0)
        return;
    /* Emptied while still held: a clean release (see the top of this file).
     * Only this process's own mark is removed: a holder that took the lock
     * without marking it (lp_service_lock_app_in) leaves a dead server's
     * mark for the next server to see. */
    char mark[32], have[32];
    int n = snprintf(mark, sizeof mark, "%ld\n", (long)getpid());
    ssize_t got = pread(fd, have, sizeof have, 0);
    if (got == n && memcmp(have, mark, (size_t)n) == 0 && ftruncate(fd, 0) != 0) {
        /* left marked: the next holder repairs, which is harmless */
    }
    close(fd); /* closing the only descriptor releases the flock */
}

/* Makes the first admin token unless a token exists: the file is written
 * before the database row, so a crash in between only means a new token at
 * the next start.  The check and the write are one write transaction, so
 * of several servers starting together on one database exactly one makes
 * it (*made tells whether this one did). */
static lp_status make_admin_token(lp_service *s, lp_db *db, bool *made, lp_error *err)
{
    *made = false;
    lp_db_token_list toks = {0};
    lp_status st = lp_db_begin(db, err);
    if (!st)
        st = lp_db_token_list_all(db, &toks, err);
    bool exists = toks.count > 0;
    lp_db_token_list_free(&toks);
    if (st || exists) {
        if (lp_db_in_transaction(db))
            lp_db_rollback(db, NULL);
        return st;
    }
    char text[LP_TOKEN_TEXT_SIZE];
    lp_token_record rec;
    st = lp_token_generate(LP_SCOPE_ADMIN, text, &rec, err);
    if (st) {
        lp_db_rollback(db, NULL);
        return st;
    }
    uint8_t salt[LP_TOKEN_SALT_LEN], hash[LP_TOKEN_HASH_LEN];
    size_t nsalt = 0, nhash = 0;
    char line[LP_TOKEN_TEXT_SIZE + 1];
    snprintf(line, sizeof line, "%s\n", text);
    char *path = lp_service_path(s->data_dir, "admin.token", err);
    if (!path)
        st = LP_ERR_NOMEM;
    if (!st)
        st = lp_file_write_atomic(path, line, strlen(line), 0600, err);
    if (!st)
        st = lp_hex_decode(rec.salt_hex, salt, sizeof salt, &nsalt, err);
    if (!st)
        st = lp_hex_decode(rec.hash_hex, hash, sizeof hash, &nhash, err);
    if (!st) {
        lp_db_token_new t = {.id = rec.id, .name = "admin (made at first start)", .salt = salt,
                             .salt_len = nsalt, .hash = hash, .hash_len = nhash,
                             .scopes = "admin"};
        lp_db_audit_head audit = {0};
        st = lp_db_token_insert(db, &t, err);
        if (!st)
            st = lp_service_audit_db(s, db, "server", "token.created", NULL, rec.id,
                                     json_pack("{s:s,s:[s],s:s}", "name", t.name, "scopes",
                                               "admin", "reason", "first start"),
                                     &audit, err);
        if (!st)
            st = lp_db_commit(db, err);
        if (st && lp_db_in_transaction(db))
            lp_db_rollback(db, NULL);
        if (!st)
            lp_service_audit_anchor(s, &audit);
    }
    if (st && lp_db_in_transaction(db))
        lp_db_rollback(db, NULL);
    *made = !st;
    if (!st && s->log)
        lp_log_event(s->log, LP_LOG_WARN, "first start: admin token made",
                     json_pack("{s:s,s:s}", "token_id", rec.id, "file", path));
    lp_token_wipe(text, sizeof text);
    lp_token_wipe(line, sizeof line);
    free(path);
    return st;
}

lp_status lp_service_bootstrap(lp_service *s, const char *default_app, bool *created,
                               lp_error *err)
{
    if (created)
        *created = false;
    lp_db *db = NULL;
    lp_status st = lp_service_db_acquire(s, &db, err);
    if (st)
        return st;
    lp_db_app_list apps = {0};
    bool made = false;
    st = make_admin_token(s, db, &made, err);
    if (!st && made && created)
        *created = true;
    if (!st && default_app && *default_app)
        st = lp_db_app_list_all(db, &apps, err);
    bool need_app = !st && default_app && *default_app && apps.count == 0;
    lp_db_app_list_free(&apps);
    lp_service_db_release(s, db);
    if (need_app) {
        st = lp_service_app_create(s, default_app, err);
        if (st == LP_ERR_EXISTS) {
            /* Another server on the same database made it first. */
            lp_error_clear(err);
            return LP_OK;
        }
        if (!st)
            lp_service_audit(s, "server", "app.created", default_app, NULL,
                             json_pack("{s:s,s:s}", "signing", "server", "reason", "first start"),
                             NULL);
        if (!st && s->log)
            lp_log_event(s->log, LP_LOG_INFO, "first start: app created",
                         json_pack("{s:s}", "app", default_app));
    }
    return st;
}

/* ---- crash points ----------------------------------------------------------- */

static const char *const crash_points[] = {"change:before-commit", "change:after-commit"};

void lp_service_crash_point(const lp_service *s, const char *name)
{
    bool known = false;
    for (size_t i = 0; i < sizeof crash_points / sizeof *crash_points; i++)
        known = known || !strcmp(crash_points[i], name);
    if (!known)
        abort(); /* a call site whose point is not in the list */
    if (s->crash_at && !strcmp(s->crash_at, name))
        kill(getpid(), SIGKILL);
}
