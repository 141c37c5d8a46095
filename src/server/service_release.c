/*
 * service_release.c — publishing releases and rolling back.
 *
 * A publish runs in two halves.  Outside any lock: ingest the bundle into
 * the blob store and store the tree manifest as a blob (content-addressed:
 * a release that never appears leaves only unreferenced blobs).  Under the
 * app's lock, inside one database transaction: pick the version code,
 * insert the release and its audit entry (service_audit.c; the entry's
 * head goes to audit.head after the commit), make the TUF repository list
 * it (lp_service_sync_app, with timestamp.json held back: lp_service_txn),
 * commit, and only then write timestamp.json.  Devices and other servers
 * read the repository from timestamp.json, so they never see a release the
 * database does not have: a failure or a crash before the commit leaves
 * only versioned files nothing points to; a crash after it leaves the
 * database ahead, caught up by the next sync of the app (the next change,
 * the repair when the lock's holder died, lp_service_recover at start).
 *
 * A rollback is the same second half with the restored release's manifest:
 * nothing is ingested again.
 *
 * The second half is a parameter (lp_service_publish_with, _rollback_with):
 * apps whose publisher signs the targets role put the release in as
 * pending and prepare the metadata to sign instead (service_signed.c), so
 * both kinds of app share the ingest and the release fields.
 */
#include "server/service_priv.h"

#include "core/file.h"
#include "tuf/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const default_channels[] = {"stable"};

/* Inserts `rel` (version_code 0: next) and syncs the repository, all under
 * the app's lock and in one transaction.  *id_out gets the new release ID. */
static lp_status insert_and_sync(lp_service *s, const lp_db_app *app, lp_db_release_new *rel,
                                 int64_t *id_out, void *ctx, lp_error *err)
{
    (void)ctx;
    int lock = -1;
    lp_db *db = NULL;
    lp_db_audit_head audit = {0};
    lp_status st = lp_service_lock_app(s, app->name, &lock, err);
    if (!st)
        st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_begin(db, err);
    if (!st && rel->version_code == 0) {
        int64_t max = 0;
        st = lp_db_release_max_code(db, app->id, &max, err);
        rel->version_code = max + 1;
    }
    if (!st)
        st = lp_db_release_insert(db, rel, id_out, err);
    if (!st)
        st = lp_service_audit_insert(s, db, app, rel, &audit, err);
    lp_service_txn tx = {0};
    if (!st)
        st = lp_service_sync_app(s, db, app, NULL, &tx, err);
    if (!st)
        lp_service_delta_plan(s, db, app->name, *id_out);
    if (!st) {
        lp_service_crash_point(s, "change:before-commit");
        st = lp_db_commit(db, err);
    }
    if (st && db && lp_db_in_transaction(db))
        lp_db_rollback(db, NULL); /* the timestamp was held: devices saw nothing */
    if (!st) {
        lp_service_crash_point(s, "change:after-commit");
        st = lp_service_txn_finish(s, app->name, &tx, err);
    }
    lp_service_txn_free(&tx);
    lp_service_db_release(s, db);
    lp_service_unlock(lock);
    if (!st)
        lp_service_audit_anchor(s, &audit);
    if (!st)
        lp_service_notify_release(s);
    return st;
}

/* The app named `name`; with insert == NULL (the server signs) it must not
 * be an app whose publisher signs its releases. */
static lp_status find_app(lp_service *s, const char *name, lp_service_insert_fn insert,
                          lp_db_app *app, lp_error *err)
{
    lp_db *db = NULL;
    lp_status st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_app_get_by_name(db, name, app, err);
    lp_service_db_release(s, db);
    if (st == LP_ERR_NOT_FOUND)
        lp_error_set(err, st, "no app '%s'", name);
    if (!st && !insert && lp_service_app_publisher_signed(s, name)) {
        lp_db_app_free(app);
        st = lp_error_set(err, LP_ERR_STATE,
                          "app %s: its publisher signs its releases; they are published in "
                          "two steps (prepare, then sign)",
                          name);
    }
    return st;
}

static lp_status get_release(lp_service *s, int64_t id, lp_db_release *out, lp_error *err)
{
    lp_db *db = NULL;
    lp_status st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_release_get(db, id, out, err);
    lp_service_db_release(s, db);
    return st;
}

/* The life cycle's first lines of a release: "planned" (published, or
 * waiting for the publisher's approvals), then "canary_started" on each
 * channel where it starts as a staged rollout below 100%. */
static void lifecycle_planned(lp_service *s, const char *app, const lp_db_release_new *rel,
                              bool pending)
{
    json_t *chans = json_array();
    for (size_t i = 0; chans && i < rel->n_channels; i++)
        json_array_append_new(chans, json_string(rel->channels[i]));
    json_t *f = json_pack("{s:s,s:o,s:s}", "version", rel->version, "channels", chans, "state",
                          pending ? "pending_approval" : "published");
    if (f && rel->rollback_of)
        json_object_set_new(f, "rollback", json_true());
    lp_service_lifecycle(s, "planned", app, rel->version_code, NULL, f);
    for (size_t i = 0; rel->staged && rel->rollout_bp < LP_DB_BP_MAX && i < rel->n_channels; i++)
        lp_service_lifecycle(s, "canary_started", app, rel->version_code, rel->channels[i],
                             json_pack("{s:s,s:i}", "version", rel->version, "percent_bp",
                                       rel->rollout_bp));
}

lp_status lp_service_publish(lp_service *s, const char *app_name, const char *bundle_path,
                             const lp_ingest_opts *ingest, const lp_release_fields *f,
                             lp_db_release *out, lp_error *err)
{
    return lp_service_publish_with(s, app_name, bundle_path, ingest, f, NULL, NULL, out, err);
}

lp_status lp_service_publish_with(lp_service *s, const char *app_name, const char *bundle_path,
                                  const lp_ingest_opts *ingest, const lp_release_fields *f,
                                  lp_service_insert_fn insert, void *ctx, lp_db_release *out,
                                  lp_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!f || !f->version || !*f->version)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "field 'version': required");
    if (f->version_code < 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "field 'version_code': must be >= 1");
    lp_db_app app = {0};
    lp_status st = find_app(s, app_name, insert, &app, err);
    if (st)
        return st;

    lp_ingest_opts io = ingest ? *ingest : (lp_ingest_opts){0};
    io.limits = &s->limits;
    lp_manifest m = {0};
    char *json = NULL;
    size_t json_len = 0;
    char manifest_id[LP_BLOB_ID_SIZE];
    st = lp_ingest_path(s->bs, bundle_path, &io, &m, NULL, err);
    if (!st)
        st = lp_manifest_to_json(&m, &json, &json_len, err);
    if (!st)
        st = lp_blobstore_put_mem(s->bs, json, json_len, NULL, manifest_id, err);
    lp_manifest_free(&m);
    free(json);
    if (st) {
        lp_db_app_free(&app);
        return st;
    }

    lp_db_release_new rel = {
        .app_id = app.id,
        .version = f->version,
        .version_code = f->version_code,
        .manifest_sha256 = manifest_id,
        .manifest_size = json_len,
        .channels = f->n_channels ? f->channels : default_channels,
        .n_channels = f->n_channels ? f->n_channels : 1,
        .runtime_version = f->runtime_version,
        .platform = f->platform,
        .arch = f->arch,
        .mandatory = f->mandatory,
        .notes = f->notes,
        .created_by = f->created_by,
        .targeting = f->targeting,
        .staged = f->staged,
        .rollout_bp = f->rollout_bp,
    };
    int64_t id = 0;
    st = (insert ? insert : insert_and_sync)(s, &app, &rel, &id, ctx, err);
    if (!st && out)
        st = get_release(s, id, out, err);
    if (!st && !insert)
        lp_metrics_add(s->metrics, LP_M_PUBLISHES, (const char *[]){app.name}, 1);
    if (!st)
        lifecycle_planned(s, app.name, &rel, insert != NULL);
    if (!st && s->log && !insert)
        lp_log_event(s->log, LP_LOG_INFO, "release published",
                     json_pack("{s:s,s:s,s:I,s:s}", "app", app.name, "version", f->version,
                               "version_code", (json_int_t)rel.version_code, "manifest",
                               manifest_id));
    lp_db_app_free(&app);
    return st;
}

lp_status lp_service_rollback(lp_service *s, const char *app_name, const char *target_version,
                              const char *const *channels, size_t n_channels,
                              const char *targeting, const char *created_by,
                              lp_db_release *out, lp_error *err)
{
    return lp_service_rollback_with(s, app_name, target_version, channels, n_channels,
                                    targeting, created_by, NULL, NULL, out, err);
}

lp_status lp_service_rollback_with(lp_service *s, const char *app_name,
                                   const char *target_version, const char *const *channels,
                                   size_t n_channels, const char *targeting,
                                   const char *created_by, lp_service_insert_fn insert,
                                   void *ctx, lp_db_release *out, lp_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!target_version || !*target_version)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "field 'target': required");
    lp_db_app app = {0};
    lp_db_release old = {0}, orig = {0};
    lp_db *db = NULL;
    lp_status st = find_app(s, app_name, insert, &app, err);
    if (!st)
        st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_release_get_by_version(db, app.id, target_version, &old, err);
    /* Only what devices were once given can be restored (not a release
     * still waiting for signatures, nor one withdrawn). */
    if (!st)
        st = lp_db_release_get(db, old.rollback_of ? old.rollback_of : old.id, &orig, err);
    lp_service_db_release(s, db);
    if (st == LP_ERR_NOT_FOUND && app.id)
        lp_error_set(err, st, "app %s has no release '%s'", app_name, target_version);
    if (!st && strcmp(orig.state, LP_DB_STATE_PUBLISHED) != 0)
        st = lp_error_set(err, LP_ERR_STATE, "release %s is %s: only a published release can "
                                             "be restored",
                          orig.version, orig.state);
    lp_db_release_free(&orig);
    int64_t id = 0;
    lp_db_release_new rel = {0};
    if (!st) {
        /* Restore the original, not a rollback of it. */
        int64_t restores = old.rollback_of ? old.rollback_of : old.id;
        rel = (lp_db_release_new){
            .app_id = app.id,
            .version = old.version,
            .manifest_sha256 = old.manifest_sha256,
            .manifest_size = old.manifest_size,
            .channels = n_channels ? channels : (const char *const *)old.channels,
            .n_channels = n_channels ? n_channels : old.n_channels,
            .runtime_version = old.runtime_version,
            .platform = old.platform,
            .arch = old.arch,
            .mandatory = old.mandatory,
            .notes = old.notes,
            .created_by = created_by,
            .rollback_of = restores,
            .targeting = targeting ? targeting : old.targeting,
        };
        if (!lp_blobstore_has(s->bs, old.manifest_sha256))
            st = lp_error_set(err, LP_ERR_NOT_FOUND,
                              "release %s: its tree manifest %s is missing from the blob store",
                              old.version, old.manifest_sha256);
    }
    if (!st)
        st = (insert ? insert : insert_and_sync)(s, &app, &rel, &id, ctx, err);
    if (!st && out)
        st = get_release(s, id, out, err);
    if (!st && !insert)
        lp_metrics_add(s->metrics, LP_M_PUBLISHES, (const char *[]){app.name}, 1);
    if (!st)
        lifecycle_planned(s, app.name, &rel, insert != NULL);
    if (!st && s->log && !insert)
        lp_log_event(s->log, LP_LOG_WARN, "rollback published",
                     json_pack("{s:s,s:s,s:I}", "app", app.name, "version", old.version,
                               "version_code", (json_int_t)rel.version_code));
    lp_db_release_free(&old);
    lp_db_app_free(&app);
    return st;
}

/* Files and bytes of a release, from its manifest blob. */
static lp_status manifest_stats(lp_service *s, const char *id, json_int_t *files,
                                json_int_t *bytes, lp_error *err)
{
    char *path = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    lp_manifest m = {0};
    lp_status st = lp_blobstore_path_of(s->bs, id, &path, err);
    if (!st)
        st = lp_file_read(path, LP_MANIFEST_MAX_JSON_BYTES, &data, &len, err);
    if (!st)
        st = lp_manifest_from_json(data, len, &m, err);
    if (!st) {
        *files = 0;
        for (size_t i = 0; i < m.count; i++)
            *files += m.entries[i].type == LP_ENTRY_FILE;
        *bytes = (json_int_t)lp_manifest_total_size(&m);
    }
    lp_manifest_free(&m);
    free(data);
    free(path);
    return st;
}

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

lp_status lp_service_release_json(lp_service *s, lp_db *db, const char *app,
                                  const lp_db_release *rel, json_t **out, lp_error *err)
{
    *out = NULL;
    json_int_t files = 0, bytes = 0;
    lp_status st = manifest_stats(s, rel->manifest_sha256, &files, &bytes, err);
    if (st)
        return lp_error_prefix(err, st, "release %s", rel->version);
    json_t *restored = json_null();
    if (rel->rollback_of) {
        lp_db_release r0 = {0};
        if ((st = lp_db_release_get(db, rel->rollback_of, &r0, err)))
            return st;
        restored = json_pack("{s:s,s:I}", "version", r0.version, "version_code",
                             (json_int_t)r0.version_code);
        lp_db_release_free(&r0);
    }
    json_t *chans = json_array();
    for (size_t i = 0; chans && i < rel->n_channels; i++)
        json_array_append_new(chans, json_string(rel->channels[i]));
    char target[48];
    lp_service_target_name(rel->version_code, target);
    json_t *o = json_pack(
        "{s:s,s:s,s:I,s:o,s:o,s:o,s:o,s:b,s:o,s:s,s:o,s:I,s:o,s:{s:s,s:I,s:s},s:I,s:I}", "app",
        app, "version", rel->version, "version_code", (json_int_t)rel->version_code,
        "channels", chans, "runtime_version", str_or_null(rel->runtime_version), "platform",
        str_or_null(rel->platform), "arch", str_or_null(rel->arch), "mandatory",
        rel->mandatory, "notes", str_or_null(rel->notes), "state", rel->state, "rollback_of",
        restored ? restored : json_null(), "created_at", (json_int_t)rel->created_at,
        "created_by", str_or_null(rel->created_by), "manifest", "sha256",
        rel->manifest_sha256, "size", (json_int_t)rel->manifest_size, "target", target,
        "files", files, "bytes", bytes);
    if (!o)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    json_t *targeting = json_null();
    if (rel->targeting &&
        (st = lp_json_parse(rel->targeting, strlen(rel->targeting), NULL, &targeting, err))) {
        json_decref(o);
        return lp_error_prefix(err, st, "release %s: stored targeting", rel->version);
    }
    json_object_set_new(o, "targeting", targeting);
    json_t *deltas = NULL;
    if ((st = lp_service_delta_summary_json(db, rel->id, &deltas, err))) {
        json_decref(o);
        return lp_error_prefix(err, st, "release %s", rel->version);
    }
    json_object_set_new(o, "deltas", deltas);
    if (lp_service_app_publisher_signed(s, app)) {
        /* a pending release's approvals; null otherwise (a published
         * one's are added by the single-release answers) */
        json_t *appr = NULL;
        if ((st = lp_service_release_approvals(s, app, rel, false, &appr, err))) {
            json_decref(o);
            return st;
        }
        json_object_set_new(o, "approvals", appr ? appr : json_null());
    }
    *out = o;
    return LP_OK;
}
