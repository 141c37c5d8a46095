/*
 * service_deltas.c — deltas between releases: planning the pairs, making
 * the deltas of one pair, and the summary in the release JSON (see
 * service.h; docs/server.md explains the choices for operators).
 *
 * Planning.  When a release R is published, the last K published releases
 * of each channel R is on (K = lp_service_delta_options.releases) become
 * pairs (P -> R) in the database, inside the publish transaction, so a
 * release is never published without its planned work being recorded and
 * a restart resumes whatever was not finished.  Nothing else happens in the
 * publish: the delta worker (delta_worker.c) does the work afterwards.
 *
 * One pair.  For each file f of R whose content P does not have anywhere
 * (content P has costs a device nothing), a base in P is chosen by the
 * library's tree plan (lp_delta_tree_plan_make, include/livepush/delta.h),
 * which `livepush delta tree` shares:
 *   1. the file at the same path in P (its content differs, or f would have
 *      been skipped);
 *   2. else a file of P with the same base name (last path component)
 *      elsewhere, the closest in size;
 *   3. else a file of P with the same extension (a file without one counts
 *      as extension "") and the closest size, within a factor of 2;
 *   4. else none: the device fetches f whole.
 * Files smaller than min_size, and bases or results larger than
 * LP_DELTA_MAX_SIZE, get no delta.  Content that appears at several paths
 * of R is dealt with once, with the best base any of its paths found.
 *
 * Storage is content-addressed by the pair of digests:
 * <data>/deltas/<base>/<result>, so a delta needed by several pairs (or
 * apps) is made once.  It is made into "<result>.tmp" next to its final
 * name (the bytes route only serves names of 64 hex digits), and renamed
 * into place and the folder fsync'd only when it is kept: at most
 * max_ratio x the file's size.  A delta not kept is recorded "too_large",
 * which is remembered for that (base, result), so it is not made again.
 *
 * Outcomes are written to the database file by file (each its own short
 * transaction, with a pooled connection held only for the call), so the
 * index a device reads lists deltas as they appear, and a pair interrupted
 * by a shutdown resumes after the files it recorded.  No lock is held while
 * a delta is made; the worker is the only writer of <data>/deltas/.
 */
#include "server/service_priv.h"

#include "core/file.h"
#include "livepush/delta.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const lp_service_delta_options *lp_service_deltas(const lp_service *s) { return &s->deltas; }
const char *lp_service_deltas_dir(const lp_service *s) { return s->deltas_dir; }

void lp_service_set_release_hook(lp_service *s, void (*fn)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&s->hook_mu);
    s->release_hook = fn;
    s->release_hook_ctx = ctx;
    pthread_mutex_unlock(&s->hook_mu);
}

void lp_service_notify_release(lp_service *s)
{
    pthread_mutex_lock(&s->hook_mu);
    if (s->release_hook)
        s->release_hook(s->release_hook_ctx);
    pthread_mutex_unlock(&s->hook_mu);
}

void lp_service_delta_plan(lp_service *s, lp_db *db, const char *app, int64_t release_id)
{
    if (!s->deltas.releases)
        return;
    lp_error err;
    lp_error_clear(&err);
    size_t added = 0;
    lp_status st = lp_db_delta_plan(db, release_id, s->deltas.releases, 0, &added, &err);
    if (!s->log)
        return;
    if (st)
        lp_log_event(s->log, LP_LOG_ERROR, "deltas not planned",
                     json_pack("{s:s,s:I,s:s}", "app", app, "release_id",
                               (json_int_t)release_id, "error", err.msg));
    else
        lp_log_event(s->log, LP_LOG_DEBUG, "deltas planned",
                     json_pack("{s:s,s:I,s:I}", "app", app, "release_id",
                               (json_int_t)release_id, "pairs", (json_int_t)added));
}

lp_status lp_service_delta_summary_json(lp_db *db, int64_t release_id, json_t **out,
                                        lp_error *err)
{
    *out = NULL;
    lp_db_delta_summary sum;
    lp_status st = lp_db_delta_summary_get(db, release_id, &sum, err);
    if (st)
        return st;
    *out = json_pack("{s:I,s:I,s:I,s:I,s:I}", "made", (json_int_t)sum.made, "bytes",
                     (json_int_t)sum.bytes, "pending", (json_int_t)sum.pending, "too_large",
                     (json_int_t)sum.too_large, "failed", (json_int_t)sum.failed);
    return *out ? LP_OK : lp_error_set(err, LP_ERR_NOMEM, "out of memory");
}

/* ---- manifests ------------------------------------------- */

static lp_status load_manifest(lp_service *s, const char *id, lp_manifest *m, lp_error *err)
{
    char *path = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_blobstore_path_of(s->bs, id, &path, err);
    if (!st)
        st = lp_file_read(path, LP_MANIFEST_MAX_JSON_BYTES, &data, &len, err);
    if (!st)
        st = lp_manifest_from_json(data, len, m, err);
    free(data);
    free(path);
    return st ? lp_error_prefix(err, st, "tree manifest %s", id) : LP_OK;
}

/* ---- one pair ------------------------------------------------------------ */

/* What one pair's run counts, for its log line. */
typedef struct pair_counts {
    size_t made, reused, too_large, failed, skipped;
    uint64_t bytes;
} pair_counts;

static lp_status record(lp_service *s, const lp_db_delta_pair *pair, const char *result,
                        const char *base, uint64_t size, const char *state, lp_error *err)
{
    lp_db_delta d = {.size = size};
    snprintf(d.result_sha256, sizeof d.result_sha256, "%s", result);
    snprintf(d.base_sha256, sizeof d.base_sha256, "%s", base);
    snprintf(d.state, sizeof d.state, "%s", state);
    lp_db *db = NULL;
    lp_status st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_delta_record(db, pair->from_release_id, pair->to_release_id, &d, err);
    lp_service_db_release(s, db);
    return st;
}

/* Makes the delta from blob `base` to blob `result` (`size` bytes) into
 * <deltas>/<base>/<result> unless it is there or known; *state and *dsize
 * get the outcome.  Only database errors are returned. */
static lp_status make_one(lp_service *s, const char *app, const char *base, const char *result,
                          uint64_t size, const char **state, uint64_t *dsize, bool *made,
                          lp_error *err)
{
    *made = false;
    *dsize = 0;
    lp_db_delta known;
    bool found = false;
    lp_db *db = NULL;
    lp_status st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_delta_find(db, base, result, &found, &known, err);
    lp_service_db_release(s, db);
    if (st)
        return st;

    char dir[4200], final[4300], tmp[4310];
    snprintf(dir, sizeof dir, "%s/%s", s->deltas_dir, base);
    snprintf(final, sizeof final, "%s/%s", dir, result);
    snprintf(tmp, sizeof tmp, "%s.tmp", final);
    struct stat sb;
    if (found && !strcmp(known.state, LP_DB_DELTA_TOO_LARGE)) {
        *state = LP_DB_DELTA_TOO_LARGE;
        *dsize = known.size;
        return LP_OK;
    }
    if (stat(final, &sb) == 0 && S_ISREG(sb.st_mode)) {
        *state = LP_DB_DELTA_MADE;
        *dsize = (uint64_t)sb.st_size;
        return LP_OK;
    }

    lp_error e2;
    lp_error_clear(&e2);
    char *old_path = NULL, *new_path = NULL;
    lp_delta_stats stats = {0};
    lp_status mk = lp_blobstore_path_of(s->bs, base, &old_path, &e2);
    if (!mk)
        mk = lp_blobstore_path_of(s->bs, result, &new_path, &e2);
    if (!mk)
        mk = lp_file_mkdirs(dir, 0755, &e2);
    if (!mk) {
        double t0 = mono_seconds();
        lp_delta_options opt = {.dict = s->deltas.no_dict ? LP_DELTA_DICT_OFF
                                                          : LP_DELTA_DICT_AUTO,
                                .dict_level = s->deltas.dict_level,
                                .threads = s->deltas.threads};
        mk = lp_delta_make_file(old_path, new_path, tmp, &opt, &stats, &e2);
        stats.t_total = mono_seconds() - t0;
    }
    free(old_path);
    free(new_path);
    if (mk) {
        unlink(tmp);
        *state = LP_DB_DELTA_FAILED;
        lp_metrics_add(s->metrics, LP_M_DELTAS, (const char *[]){"failed"}, 1);
        if (s->log)
            lp_log_event(s->log, LP_LOG_WARN, "delta failed",
                         json_pack("{s:s,s:s,s:s,s:s}", "app", app, "base", base, "result",
                                   result, "error", e2.msg));
        return LP_OK;
    }
    *dsize = stats.delta_size;
    if ((double)stats.delta_size > s->deltas.max_ratio * (double)size) {
        unlink(tmp);
        *state = LP_DB_DELTA_TOO_LARGE;
        lp_metrics_add(s->metrics, LP_M_DELTAS, (const char *[]){"too_large"}, 1);
        return LP_OK;
    }
    if (rename(tmp, final) != 0) {
        int e = errno;
        unlink(tmp);
        *state = LP_DB_DELTA_FAILED;
        lp_metrics_add(s->metrics, LP_M_DELTAS, (const char *[]){"failed"}, 1);
        *dsize = 0;
        if (s->log)
            lp_log_event(s->log, LP_LOG_WARN, "delta failed",
                         json_pack("{s:s,s:s,s:s,s:s}", "app", app, "base", base, "result",
                                   result, "error", strerror(e)));
        return LP_OK;
    }
    if (lp_file_sync_parent(final, &e2) && s->log)
        lp_log_event(s->log, LP_LOG_WARN, "delta folder not synced",
                     json_pack("{s:s,s:s}", "path", dir, "error", e2.msg));
    *state = LP_DB_DELTA_MADE;
    *made = true;
    lp_metrics_add(s->metrics, LP_M_DELTAS, (const char *[]){"made"}, 1);
    if (s->log)
        lp_log_event(s->log, LP_LOG_DEBUG, "delta made",
                     json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:f}", "app", app, "base", base,
                               "result", result, "size", (json_int_t)size, "delta",
                               (json_int_t)stats.delta_size, "coding",
                               stats.dict_kept ? "dictionary frames" : "matched",
                               "seconds", stats.t_total));
    return LP_OK;
}

static int sha_cmp(const void *a, const void *b)
{
    const lp_manifest_entry *x = (*(const lp_delta_tree_item *const *)a)->file;
    const lp_manifest_entry *y = (*(const lp_delta_tree_item *const *)b)->file;
    int c = strcmp(x->sha256, y->sha256);
    return c ? c : strcmp(x->path, y->path);
}

static bool recorded(const lp_db_delta_list *done, const char *sha)
{
    size_t lo = 0, hi = done->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(done->items[mid].result_sha256, sha);
        if (!c)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static lp_status finish(lp_service *s, const lp_db_delta_pair *pair, lp_error *err)
{
    lp_db *db = NULL;
    lp_status st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_delta_pair_finish(db, pair->from_release_id, pair->to_release_id, 0, err);
    lp_service_db_release(s, db);
    return st;
}

lp_status lp_service_delta_run_pair(lp_service *s, const lp_db_delta_pair *pair,
                                    bool (*should_stop)(void *ctx), void *ctx, bool *stopped,
                                    lp_error *err)
{
    *stopped = false;
    lp_db_release from = {0}, to = {0};
    lp_db_app app = {0};
    lp_db_delta_list done = {0};
    lp_db *db = NULL;
    lp_status st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_release_get(db, pair->from_release_id, &from, err);
    if (!st)
        st = lp_db_release_get(db, pair->to_release_id, &to, err);
    if (!st)
        st = lp_db_app_get(db, pair->app_id, &app, err);
    if (!st)
        st = lp_db_delta_list_pair(db, pair->from_release_id, pair->to_release_id, NULL, &done, err);
    lp_service_db_release(s, db);
    if (st) {
        lp_db_release_free(&from);
        lp_db_release_free(&to);
        lp_db_app_free(&app);
        return st;
    }

    lp_manifest pm = {0}, rm = {0};
    lp_delta_tree_plan plan = {0};
    const lp_delta_tree_item **files = NULL;
    size_t nfiles = 0;
    pair_counts n = {0};
    lp_error e2;
    lp_error_clear(&e2);
    lp_status mst = load_manifest(s, from.manifest_sha256, &pm, &e2);
    if (!mst)
        mst = load_manifest(s, to.manifest_sha256, &rm, &e2);
    if (!mst)
        mst = lp_delta_tree_plan_make(&pm, &rm, &plan, &e2);
    if (!mst && !(files = calloc(plan.count ? plan.count : 1, sizeof *files)))
        mst = lp_error_set(&e2, LP_ERR_NOMEM, "out of memory");
    if (mst) {
        /* Nothing can be made for this pair: finish it (logged) rather
         * than trying again for ever. */
        if (s->log)
            lp_log_event(s->log, LP_LOG_ERROR, "deltas not made",
                         json_pack("{s:s,s:I,s:I,s:s}", "app", app.name, "from",
                                   (json_int_t)from.version_code, "to",
                                   (json_int_t)to.version_code, "error", e2.msg));
        st = finish(s, pair, err);
        goto out;
    }
    for (size_t i = 0; i < plan.count; i++)
        files[nfiles++] = &plan.items[i];
    qsort(files, nfiles, sizeof *files, sha_cmp);

    double t0 = mono_seconds();
    for (size_t i = 0; !st && i < nfiles;) {
        /* One content: files[i..j) share it. */
        size_t j = i + 1;
        while (j < nfiles && !strcmp(files[j]->file->sha256, files[i]->file->sha256))
            j++;
        const lp_manifest_entry *f = files[i]->file;
        const lp_manifest_entry *base = NULL;
        int best = 4;
        bool wanted = files[i]->kind != LP_DELTA_TREE_SAME && !recorded(&done, f->sha256) &&
                      f->size >= s->deltas.min_size && f->size > 0 &&
                      f->size <= LP_DELTA_MAX_SIZE;
        for (size_t k = i; wanted && k < j; k++) {
            if (files[k]->kind == LP_DELTA_TREE_DELTA && files[k]->rule < best) {
                best = files[k]->rule;
                base = files[k]->base;
            }
        }
        i = j;
        if (!base) {
            n.skipped += wanted;
            continue;
        }
        if (should_stop && should_stop(ctx)) {
            *stopped = true;
            break;
        }
        const char *state = NULL;
        uint64_t dsize = 0;
        bool made = false;
        st = make_one(s, app.name, base->sha256, f->sha256, f->size, &state, &dsize, &made, err);
        if (!st)
            st = record(s, pair, f->sha256, base->sha256, dsize, state, err);
        if (st)
            break;
        if (!strcmp(state, LP_DB_DELTA_MADE)) {
            n.made += made;
            n.reused += !made;
            n.bytes += dsize;
        } else if (!strcmp(state, LP_DB_DELTA_TOO_LARGE)) {
            n.too_large++;
        } else {
            n.failed++;
        }
    }
    if (!st && !*stopped)
        st = finish(s, pair, err);
    if (!st && s->log)
        lp_log_event(s->log, LP_LOG_INFO, *stopped ? "deltas interrupted" : "deltas done",
                     json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "app", app.name,
                               "from", (json_int_t)from.version_code, "to",
                               (json_int_t)to.version_code, "made", (json_int_t)n.made,
                               "reused", (json_int_t)n.reused, "too_large",
                               (json_int_t)n.too_large, "failed", (json_int_t)n.failed,
                               "no_base", (json_int_t)n.skipped, "bytes", (json_int_t)n.bytes,
                               "seconds", mono_seconds() - t0));
out:
    free(files);
    lp_delta_tree_plan_free(&plan);
    lp_manifest_free(&pm);
    lp_manifest_free(&rm);
    lp_db_delta_list_free(&done);
    lp_db_release_free(&from);
    lp_db_release_free(&to);
    lp_db_app_free(&app);
    return st;
}
