/*
 * service.h — what the server does, apart from HTTP (internal).
 *
 * An lp_service owns the server's state in one data folder:
 *
 *     <data>/livepush.db          metadata database (default back end: SQLite)
 *     <data>/blobs/               content-addressed blob store (lp_blobstore)
 *     <data>/repos/<app>/         the app's TUF repository (metadata/, targets/)
 *     <data>/keys/<app>/          the app's server-held private keys (0700/0600):
 *                                 all four roles, or only snapshot and
 *                                 timestamp when the publisher signs
 *     <data>/repos/<app>.pending.json  what was prepared for a release
 *                                 waiting for the publisher's signatures
 *     <data>/uploads/             partial files of resumable uploads
 *     <data>/deltas/<base>/<result>  binary deltas between files of releases
 *                                 (service_deltas.c), by SHA-256 of both
 *     <data>/admin.token          the first admin token (0600), made on first start
 *     <data>/audit.head           the newest audit entries' heads, one line each
 *                                 (next to the database file when it is elsewhere)
 *
 * The HTTP routes (api_*.c) and the CLI are thin layers over these calls.
 *
 * Publishing and crashes.  The database is the source of truth; each app's
 * TUF repository is derived from it.  A publish (1) ingests the bundle into
 * the blob store (content-addressed, so blobs of a release that never
 * appears are harmless), (2) stores the tree manifest as a blob, (3) under
 * the app's lock inserts the release in one database transaction and
 * commits, (4) writes the new TUF metadata (timestamp.json last).  A crash
 * before (3) commits leaves no release; a crash between (3) and (4) leaves a
 * release that the repository does not list yet, and lp_service_recover
 * (run at every start) republishes every app whose repository differs from
 * the database.  So after a restart a release is either wholly there
 * (database, API and signed metadata) or not at all.
 *
 * Locking.  Each app has a lock file <data>/repos/<app>.lock taken with
 * flock(2) around (3) and (4), so two publishers racing on one app, in one
 * process or several, are serialised and version codes stay strictly
 * increasing.
 *
 * Database connections come from a small pool (lp_service_db_acquire /
 * lp_service_db_release): one connection is used by one thread at a time.
 *
 * Threads: every function may be called from any thread at once.
 */
#ifndef LP_SERVER_SERVICE_H
#define LP_SERVER_SERVICE_H

#include "livepush/blobstore.h"
#include "livepush/bundle.h"
#include "livepush/db.h"
#include "livepush/error.h"
#include "server/log.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lp_service lp_service;

/* Deltas between releases (docs/server.md, service_deltas.c). */
typedef struct lp_service_delta_options {
    unsigned releases;                /* K: a new release gets deltas from the last K
                                         releases of each of its channels; 0: none */
    uint64_t min_size;                /* files smaller than this get no delta */
    double max_ratio;                 /* a delta is kept when its size is at most
                                         max_ratio x the file's; 0: 0.6 */
    bool no_dict;                     /* never try the engine's dictionary frames */
    int dict_level;                   /* their zstd level, 1..22; 0: 22 */
    int threads;                      /* threads that compress them; 0: 1 */
} lp_service_delta_options;

#define LP_SERVICE_DELTA_RATIO_DEFAULT 0.6

typedef struct lp_service_options {
    const char *data_dir;             /* created if missing (0700) */
    const char *db_url;               /* NULL: "sqlite:<data_dir>/livepush.db" */
    const lp_ingest_limits *limits;   /* NULL: defaults; copied */
    unsigned db_connections;          /* pool size; 0: 8 */
    const lp_log *log;                /* borrowed, may be NULL */
    bool device_token;                /* the device API needs a `download` token
                                         (serve --device-auth token); false: devices
                                         are anonymous */
    lp_service_delta_options deltas;  /* all zero: no deltas are planned */
    const lp_log *lifecycle;          /* borrowed, may be NULL: where the update life
                                         cycle goes as JSON lines (lp_service_lifecycle) */
    const char *crash_at;             /* fault injection for tests: the name of a crash
                                         point (lp_service_crash_point), NULL: none;
                                         copied */
} lp_service_options;

/* Opens the data folder and database (applying migrations), then runs
 * lp_service_recover.  The caller owns *out (lp_service_close). */
lp_status lp_service_open(lp_service **out, const lp_service_options *opt, lp_error *err);
void lp_service_close(lp_service *s);

const char *lp_service_data_dir(const lp_service *s);
lp_blobstore *lp_service_blobstore(lp_service *s);
const lp_ingest_limits *lp_service_limits(const lp_service *s);
const lp_log *lp_service_log(const lp_service *s);
/* The device_token option: whether device API routes need a token. */
bool lp_service_device_token(const lp_service *s);

/* One line of the update life cycle (service_lifecycle.c,
 * docs/lifecycle.md) on the lifecycle log, when there is one: `event` with
 * the ids of the app's release `code` (0: none) and, with `channel`, of its
 * rollout there, plus `fields` (a JSON object or NULL; the reference is
 * taken). */
void lp_service_lifecycle(lp_service *s, const char *event, const char *app, int64_t code,
                          const char *channel, json_t *fields);

/* The server's counters and histograms (server/metrics.h), owned by the
 * service. */
struct lp_metrics *lp_service_metrics(lp_service *s);

/* A database connection for the calling thread; waits while all are in use.
 * Give it back with lp_service_db_release (never close it). */
lp_status lp_service_db_acquire(lp_service *s, lp_db **db, lp_error *err);
void lp_service_db_release(lp_service *s, lp_db *db);

/* First start: when the database has no token at all, makes an admin token,
 * writes its text to <data>/admin.token (0600) and sets *created = true;
 * when `default_app` is not NULL or "" and no app exists, creates it
 * (server-held keys).  Idempotent. */
lp_status lp_service_bootstrap(lp_service *s, const char *default_app, bool *created,
                               lp_error *err);

/* ---- deltas between releases (service_deltas.c) ---------------------------
 * Publishing a release plans "pairs" (earlier release -> this one) in the
 * database, inside the publish transaction; the delta worker
 * (delta_worker.h) works them off in the background, one at a time, so a
 * publish never waits for a delta.  docs/server.md explains the choices. */

const lp_service_delta_options *lp_service_deltas(const lp_service *s);
/* <data>/deltas: holds <base sha256>/<result sha256>, one delta each. */
const char *lp_service_deltas_dir(const lp_service *s);

/* Sets the function called (from the publishing thread, no lock held)
 * after a release was published and its pairs planned; fn NULL removes
 * it.  One hook at a time (the delta worker's). */
void lp_service_set_release_hook(lp_service *s, void (*fn)(void *ctx), void *ctx);

/* Works on one planned pair until it is finished or should_stop(ctx)
 * (checked before each file; may be NULL) says to stop: for each file of
 * the `to` release that needs one, chooses a base in the `from` release,
 * makes the delta into <data>/deltas/<base>/<result> (unless it is there
 * or known to be too large), keeps it when small enough, and records the
 * outcome; then marks the pair done.  *stopped tells that it stopped
 * early (the pair stays pending, what was recorded stays).  Errors are
 * those of the database (the caller retries later); a file whose delta
 * fails is recorded as failed and logged, and a release whose manifest
 * cannot be read finishes the pair with nothing made (logged). */
lp_status lp_service_delta_run_pair(lp_service *s, const lp_db_delta_pair *pair,
                                    bool (*should_stop)(void *ctx), void *ctx, bool *stopped,
                                    lp_error *err);

/* The "deltas" object of the release JSON: {"made","bytes","pending",
 * "too_large","failed"} over the release's pairs (new reference). */
lp_status lp_service_delta_summary_json(lp_db *db, int64_t release_id, json_t **out,
                                        lp_error *err);

/* ---- apps ---------------------------------------------------------------- */

/* Creates an app whose keys the server holds: generates ed25519 keys for
 * root, targets, snapshot and timestamp under <data>/keys/<app>/, writes the
 * repository (root v1, empty targets v1, snapshot, timestamp) and inserts
 * the database row.  LP_ERR_EXISTS, LP_ERR_INVALID_ARG (name). */
lp_status lp_service_app_create(lp_service *s, const char *name, lp_error *err);

/* ---- releases ------------------------------------------------------------ */

typedef struct lp_release_fields {
    const char *version;              /* required */
    int64_t version_code;             /* 0: one more than the app's highest */
    const char *const *channels;      /* NULL/0: {"stable"} */
    size_t n_channels;
    const char *runtime_version;      /* optional (NULL) */
    const char *platform;
    const char *arch;
    bool mandatory;
    const char *notes;
    const char *created_by;           /* token ID or NULL */
    const char *targeting;            /* NULL or the JSON text of targeting rules
                                         (livepush/targeting.h; {} = none) */
    bool staged;                      /* start with a staged rollout on each of its
                                         channels at rollout_bp (0..10000) */
    int rollout_bp;
} lp_release_fields;

/* Ingests the bundle at `bundle_path` (ingest options may be NULL: detect
 * the kind) and publishes it as a new release of `app` (see the top of this
 * file).  *out (may be NULL) gets the release.  Errors: LP_ERR_NOT_FOUND
 * (app), LP_ERR_MALFORMED / LP_ERR_TOO_LARGE (the bundle; nothing stored),
 * LP_ERR_ROLLBACK (version_code not above every earlier one),
 * LP_ERR_EXISTS (version string taken), LP_ERR_INVALID_ARG (a field). */
lp_status lp_service_publish(lp_service *s, const char *app, const char *bundle_path,
                             const lp_ingest_opts *ingest, const lp_release_fields *f,
                             lp_db_release *out, lp_error *err);

/* Republishes the tree of the app's release `target_version` as a new
 * release with the next version code, rollback_of set, the same version
 * string, `channels` (NULL/0: the target's channels) and `targeting` (the
 * JSON text of targeting rules, {} for none; NULL: the target's rules).
 * Nothing is uploaded or ingested again.  LP_ERR_NOT_FOUND,
 * LP_ERR_INVALID_ARG (bad targeting rules, naming the member). */
lp_status lp_service_rollback(lp_service *s, const char *app, const char *target_version,
                              const char *const *channels, size_t n_channels,
                              const char *targeting, const char *created_by,
                              lp_db_release *out, lp_error *err);

/* The TUF target name of a release: "releases/<version_code>.json". */
void lp_service_target_name(int64_t version_code, char out[48]);

/* The JSON object describing a release as the API returns it (see
 * docs/api.md): the database fields, "rollback_of" as {version,
 * version_code} (looked up with `db`), "files"/"bytes" counted from the
 * tree manifest in the blob store, and for an app whose publisher signs
 * "approvals" (lp_service_release_approvals without published_too: an
 * object for a pending release, null otherwise).  *out is a new
 * reference. */
lp_status lp_service_release_json(lp_service *s, lp_db *db, const char *app,
                                  const lp_db_release *rel, json_t **out, lp_error *err);

/* Re-signs, with the keys the server holds, every app's metadata that has
 * used up half of its lifetime (service_expiry.c), as of `now` (0: the
 * clock).  *refreshed (may be NULL) counts the apps re-signed.  An app that
 * fails is logged and skipped; the first failure is returned after the
 * others were tried. */
lp_status lp_service_refresh_expiring(lp_service *s, int64_t now, size_t *refreshed,
                                      lp_error *err);

/* Brings every app's repository in line with the database (see above).
 * Runs at open; safe to call again.  Apps whose publisher signs are never
 * signed here (see below). */
lp_status lp_service_recover(lp_service *s, lp_error *err);

/* ---- apps whose publisher signs (service_signed.c) -------------------------
 * The publisher keeps the root keys offline and the release keys (the
 * targets role, threshold possibly above 1) on its own machines; the
 * server holds only the app's snapshot and timestamp keys.  Such an app has
 * <data>/keys/<app>/snapshot.pem and timestamp.pem and no root.pem.  See
 * docs/signing.md for the whole flow and the top of service_signed.c for
 * crash safety. */

/* Whether the app's releases are signed by its publisher (its key folder
 * holds the online keys and no root key); false for server-signed apps and
 * for names that are not apps. */
bool lp_service_app_publisher_signed(lp_service *s, const char *name);

/* "publisher" or "server": the app object's "signing" field. */
const char *lp_service_app_signing(lp_service *s, const char *name);

/* Step 1 of creating an app whose publisher signs: makes (or, when a
 * previous call made them and the app was not finished, reuses) the app's
 * online snapshot and timestamp keys and returns their public halves as
 *     {"snapshot":  {"keyid": "<64 hex>", "key": <TUF key object>},
 *      "timestamp": {"keyid": "<64 hex>", "key": <TUF key object>}}
 * (*online_keys_out, a new reference).  The app does not exist yet (no
 * database row, no repository, not listed, cannot publish) until
 * lp_service_app_set_root.  LP_ERR_INVALID_ARG (name), LP_ERR_EXISTS (the
 * app exists). */
lp_status lp_service_app_begin_signed(lp_service *s, const char *name, json_t **online_keys_out,
                                      lp_error *err);

/* Step 2: the publisher's first root (`len` bytes at `root`, a complete
 * signed root.json, built and signed offline).  It must be a valid
 * self-signed version 1 root (lp_tuf_repo_create_from_root's checks), its
 * snapshot and timestamp roles must list exactly the server's online key
 * for the role, its targets role at least one key, and neither the root
 * nor the targets role may list a server key.  Then the repository is
 * written (root only: targets, snapshot and timestamp come with the first
 * signed release) and the app's database row is made.
 * LP_ERR_INVALID_ARG (naming the role that is wrong), LP_ERR_STATE (no
 * lp_service_app_begin_signed before, or the app is server-signed),
 * LP_ERR_EXISTS, and the root's own errors (LP_ERR_MALFORMED,
 * LP_ERR_BAD_SIGNATURE, LP_ERR_VERSION_MISMATCH, LP_ERR_EXPIRED, ...).
 * Nothing is written for a refused root. */
lp_status lp_service_app_set_root(lp_service *s, const char *name, const void *root, size_t len,
                                  lp_error *err);

/* Publish step 1: ingests the bundle exactly as lp_service_publish does,
 * inserts the release in state "pending" (LP_ERR_STATE "release X is
 * waiting for signatures" while the app has another pending release) and
 * prepares the app's next targets metadata: the published releases plus
 * this one.  *signed_json (malloc'd, NUL-terminated, *signed_len bytes
 * without the NUL; signed_len may be NULL) is the canonical JSON of its
 * `signed` portion, the exact bytes the release keys sign
 * (lp_tuf_sign_signed).  *out (may be NULL) gets the release.  The same
 * errors as lp_service_publish, and LP_ERR_STATE for a server-signed app. */
lp_status lp_service_publish_prepare(lp_service *s, const char *app, const char *bundle_path,
                                     const lp_ingest_opts *ingest, const lp_release_fields *f,
                                     lp_db_release *out, char **signed_json, size_t *signed_len,
                                     lp_error *err);

/* Rollback step 1: as lp_service_rollback, but the new release is pending
 * and the targets metadata to sign is returned as by
 * lp_service_publish_prepare. */
lp_status lp_service_rollback_prepare(lp_service *s, const char *app, const char *target_version,
                                      const char *const *channels, size_t n_channels,
                                      const char *targeting, const char *created_by,
                                      lp_db_release *out, char **signed_json,
                                      size_t *signed_len, lp_error *err);

/* The app's pending release (*out, may be NULL), the `signed` bytes to sign
 * for it (same bytes as prepare gave; may be NULL) and *signed_by (may be
 * NULL; a new JSON array) the key IDs whose signatures the server holds
 * already.  For a second signer, or after a lost answer.  LP_ERR_NOT_FOUND
 * when nothing is pending. */
lp_status lp_service_publish_pending(lp_service *s, const char *app, lp_db_release *out,
                                     char **signed_json, size_t *signed_len, json_t **signed_by,
                                     lp_error *err);

/* Step 2: publishes the pending release `version` with the publisher's
 * signatures over the prepared bytes: n key IDs (64 hex) and hex
 * signatures (n may be 0).  Each is checked now; a wrong one is
 * LP_ERR_BAD_SIGNATURE naming its key and nothing of this call is kept.
 * Valid signatures are kept with the pending release, so the signers of a
 * threshold may call one after another: while they fall short of the
 * targets threshold the call is LP_ERR_BAD_SIGNATURE naming the role and
 * the release stays pending, the repository untouched.  Once the threshold
 * is met, the targets metadata is written, snapshot and timestamp signed
 * with the online keys, and the release becomes "published" (*out, may be
 * NULL).  LP_ERR_NOT_FOUND (app, release), LP_ERR_STATE (not pending; the
 * repository changed since prepare: cancel and prepare again),
 * LP_ERR_TOO_LARGE (more than 1024 signatures), LP_ERR_INVALID_ARG. */
lp_status lp_service_publish_sign(lp_service *s, const char *app, const char *version,
                                  const char *const *keyids, const char *const *sigs, size_t n,
                                  lp_db_release *out, lp_error *err);

/* Where a pending release stands after lp_service_publish_sign_ex. */
typedef struct lp_sign_progress {
    /* True when the call was refused only because the valid signatures held
     * (kept, with those sent) fall short of the targets threshold: the
     * release stays pending.  False for a refused signature (nothing of the
     * call kept) and for every other outcome. */
    bool short_of_threshold;
    size_t held;        /* valid signatures held for the release (0 if unknown) */
    unsigned threshold; /* signatures the app's targets role needs (0 if unknown) */
} lp_sign_progress;

/* lp_service_publish_sign, also filling *progress (may be NULL), so a
 * caller can tell "fewer signatures than the threshold, kept" from "a
 * signature refused" (both LP_ERR_BAD_SIGNATURE) and say how many more are
 * needed.  held and threshold are 0 when the call stopped before it
 * knew them (say, the release is not pending). */
lp_status lp_service_publish_sign_ex(lp_service *s, const char *app, const char *version,
                                     const char *const *keyids, const char *const *sigs,
                                     size_t n, lp_sign_progress *progress, lp_db_release *out,
                                     lp_error *err);

/* Withdraws the pending release `version` (state "withdrawn"; its version
 * string and code stay taken).  LP_ERR_NOT_FOUND, LP_ERR_STATE (not
 * pending, or its signed metadata was written already: it is then marked
 * published). */
lp_status lp_service_publish_cancel(lp_service *s, const char *app, const char *version,
                                    lp_error *err);

/* The approvals of release `rel` of app `app` (docs/signing.md, "Quorum
 * approval"): a new object in *out,
 *     {"present": n, "required": k, "missing": max(k - n, 0),
 *      "keys": [{"keyid": "<64 hex>", "approved": true|false}, ...]}
 * listing every key of the targets role of the app's current root, in the
 * root's order, k its threshold.  For a pending release a key approved when
 * the server holds its signature over the prepared bytes; for a published
 * release (only with published_too) when it signed the first targets
 * metadata version that listed the release (a binary search over the kept
 * versions: a few file reads).  *out is NULL (LP_OK) when there is nothing
 * to show: a server-signed app, a withdrawn release, a published one
 * without published_too, a pending record gone meanwhile (signed or
 * cancelled since `rel` was read), or old metadata no longer kept.  Takes
 * no lock.  Errors: the root or a metadata file unreadable (LP_ERR_IO,
 * LP_ERR_MALFORMED), LP_ERR_NOMEM. */
lp_status lp_service_release_approvals(lp_service *s, const char *app, const lp_db_release *rel,
                                       bool published_too, json_t **out, lp_error *err);

/* ---- the audit log (service_audit.c, docs/audit.md) ------------------------
 * Every management action and every automatic decision is appended to the
 * database's hash-chained audit log (livepush/db.h), in the transaction
 * that makes the change where there is one, else right after it commits.
 * After each committed entry the server also appends its head as one line
 *     {"seq":N,"hash":"<64 hex>"}
 * to the file audit.head (opened O_APPEND, fsync'd): next to the database
 * file for a sqlite: database, in the data folder otherwise.  It anchors
 * the chain against removal of its newest entries (livepush audit verify
 * compares the log with the file's last line).  If the file cannot be
 * written the action still stands (it is committed); the server logs an
 * error.  At start the server logs an error when the database no longer
 * holds the entry the file's last line names.
 *
 * Actors: "token:<id>" for an API token (lp_service_audit_actor), "server"
 * for the server's own decisions (first start, recovery, automatic halts),
 * "cli" for local commands. */

/* The head file's name, in the folder given above. */
#define LP_SERVICE_AUDIT_HEAD "audit.head"

/* "token:<token_id>" into out. */
void lp_service_audit_actor(const char *token_id, char out[LP_DB_AUDIT_ACTOR_MAX + 1]);

/* Appends one entry in its own transaction (a pooled connection) and
 * records its head in audit.head.  details: a JSON object or NULL ({});
 * the reference is taken (released here, whatever happens), so a caller
 * may pass json_pack(...) directly.  On failure the error is returned and
 * also logged (callers that record an action already done may ignore it).
 * The checks and errors of lp_db_audit_append. */
lp_status lp_service_audit(lp_service *s, const char *actor, const char *action,
                           const char *app, const char *subject, json_t *details,
                           lp_error *err);

/* The same with the caller's connection `db`.  Inside its transaction the
 * entry commits (or rolls back) with the caller's changes, and *pending
 * gets the entry's head: pass it to lp_service_audit_anchor after the
 * commit (never after a rollback).  Outside a transaction the entry is
 * committed and anchored at once (*pending zeroed).  pending may be NULL
 * only outside a transaction (LP_ERR_INVALID_ARG otherwise).  Errors are
 * returned, not logged. */
lp_status lp_service_audit_db(lp_service *s, lp_db *db, const char *actor, const char *action,
                              const char *app, const char *subject, json_t *details,
                              lp_db_audit_head *pending, lp_error *err);

/* Appends `head` to audit.head (nothing when head is NULL or its seq is 0
 * or not newer than a head already written by this server); a failure is
 * logged. */
void lp_service_audit_anchor(lp_service *s, const lp_db_audit_head *head);

/* The path of audit.head. */
const char *lp_service_audit_head_path(const lp_service *s);

/* The details of a release for an entry: {"version","version_code",
 * "channels":[...]} (new reference; NULL when out of memory). */
json_t *lp_service_audit_release(const lp_db_release *rel);

/* Reads the last complete line of a head file at `path` into *out.  *found
 * is false when the file does not exist or holds no complete line (a line
 * torn by a crash is not one).  LP_ERR_MALFORMED naming the file for a
 * last line that is not {"seq":N,"hash":"<64 hex>"}, LP_ERR_IO. */
lp_status lp_service_audit_head_read(const char *path, lp_db_audit_head *out, bool *found,
                                     lp_error *err);

/* Parses "SEQ:HASH" (an operator's note of a head; HASH 64 hex digits,
 * either case).  LP_ERR_INVALID_ARG. */
lp_status lp_service_audit_head_parse(const char *text, lp_db_audit_head *out, lp_error *err);

/* ---- rollouts (service_rollout.c, service_rollout_ops.c; docs/rollouts.md) ----
 * Each action takes the app's lock, changes the database in one
 * transaction with its audit entry (`actor` as for lp_service_audit),
 * re-signs what devices read, and commits.  *enforced (may be NULL) tells
 * whether the app's targets role delegates the rollout role yet (an app
 * whose publisher signs gets the delegation with its next signed
 * release; until then rollouts are recorded, not followed). */

/* What to change in the rollout of a release on a channel; -1 / NULL:
 * unchanged. */
typedef struct lp_service_rollout_change {
    const char *channel;  /* required: a channel the release is on */
    int percent_bp;       /* 0..10000 */
    const char *state;    /* LP_DB_ROLLOUT_ACTIVE / PAUSED / HALTED */
    int weight;           /* 0..10000 (0: not an arm of the channel's A/B split) */
    const char *reason;   /* why, kept with the rollout (a new state without one clears it) */
} lp_service_rollout_change;

/* Applies `c` to release `version` of `app`; *out (may be NULL) gets the
 * rollout as stored.  Errors: LP_ERR_NOT_FOUND (app, release, or the
 * release is not on that channel), LP_ERR_STATE (the rollout is halted: a
 * halt is final), LP_ERR_INVALID_ARG (a value out of range), and those of
 * the database and the repository. */
lp_status lp_service_rollout_change_apply(lp_service *s, const char *app, const char *version,
                                          const lp_service_rollout_change *c, const char *actor,
                                          lp_db_rollout *out, bool *enforced, lp_error *err);
/* Adds channel `channel` to published release `version` (re-signing its
 * targets entry, so only for apps whose keys the server holds:
 * LP_ERR_STATE otherwise).  LP_ERR_EXISTS when it is on it already. */
lp_status lp_service_promote(lp_service *s, const char *app, const char *version,
                             const char *channel, const char *actor, lp_error *err);
/* Sets a channel's maintenance window (minutes after midnight UTC, see
 * lp_db_channel_window_set; -1, -1 removes it). */
lp_status lp_service_channel_window(lp_service *s, const char *app, const char *channel,
                                    int start, int end, const char *actor, lp_error *err);
/* Sets the app's guardrail (see lp_db_app_guard_set). */
lp_status lp_service_guard_set(lp_service *s, const char *app, int rate_bp, int min_devices,
                               const char *actor, lp_error *err);
/* One guardrail check over every app: halts each rolling-out release whose
 * failure-or-rollback share passed its app's rate once at least its
 * minimum of devices tried it (audit actor "server", reason recorded and
 * logged).  *halted (may be NULL) counts the halts.  An app whose check
 * fails is logged and the others are still checked; the first error is
 * returned. */
lp_status lp_service_guard_run(lp_service *s, size_t *halted, lp_error *err);

#endif
