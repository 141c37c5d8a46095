/*
 * livepush/db.h — the server's metadata database.
 *
 * The database holds what the server knows about apps, channels, releases,
 * access tokens, resumable uploads, the devices that run the apps with
 * the events they report (telemetry), and the hash-chained audit log of
 * what was done to all of it.  Content (bundles, blobs, TUF files)
 * lives in the blob store and the TUF repositories; the database refers to
 * it by SHA-256.
 *
 * Back ends: a database is opened from a URL-like string:
 *     "sqlite:/var/lib/livepush/livepush.db"   embedded SQLite (default)
 *     "postgresql://..." / "postgres://..."    PostgreSQL through libpq (the
 *                                              URL is libpq's connection
 *                                              URI); several servers may
 *                                              share one database
 * Every function below validates its input (names, lengths, character sets,
 * ranges) once, the same way for every back end, and then calls the back
 * end.  The schema is versioned; lp_db_open applies pending migrations and
 * refuses (LP_ERR_UNSUPPORTED) a database whose schema is newer than this
 * code knows.  docs/database.md describes the tables.
 *
 * Threads: an lp_db is one connection.  Use it from one thread at a time
 * (the server keeps one per worker thread or a small pool); any number of
 * lp_db handles, in one process or several, may share a database: writes
 * are serialised by the back end (SQLite: BEGIN IMMEDIATE with a 5 s busy
 * timeout; PostgreSQL: a transaction-scoped advisory lock taken at the
 * start of every write transaction, with a 5 s lock_timeout), reads never
 * wait for writes.  A writer that waits longer fails with LP_ERR_STATE.
 *
 * Transactions: every write function is atomic on its own.  lp_db_begin /
 * lp_db_commit / lp_db_rollback group several calls into one write
 * transaction (e.g. a publish: release + channels + whatever else must
 * appear together); inside it the calls see each other's effects and a
 * crash before lp_db_commit leaves no trace of any of them.  Reads inside a
 * transaction see its writes.  Transactions do not nest (LP_ERR_STATE).
 * After any failed call inside a transaction the caller should roll back;
 * if the back end already ended the transaction because of the error (a
 * full disk, an I/O error), further calls in it and lp_db_commit fail with
 * LP_ERR_STATE instead of running outside it.
 *
 * Errors (besides LP_ERR_INVALID_ARG / LP_ERR_TOO_LARGE for bad input,
 * always naming the field):
 *     LP_ERR_EXISTS     a unique name or ID is taken (the message names it)
 *     LP_ERR_NOT_FOUND  the row asked for, or one an input refers to, does
 *                       not exist
 *     LP_ERR_ROLLBACK   a release's version_code is not greater than every
 *                       version_code the app already has
 *     LP_ERR_STATE      transaction misuse; the database is busy for longer
 *                       than the busy timeout
 *     LP_ERR_IO         the back end failed (disk, corruption, ...)
 *     LP_ERR_NETWORK    PostgreSQL: the connection failed or was lost (a
 *                       handle reconnects by itself at its next call
 *                       outside a transaction)
 *
 * Ownership: result structs (lp_db_app, lp_db_release, ...) are filled by
 * the library; their strings and arrays are malloc'd and released with the
 * matching _free function, which also zeroes the struct (and accepts a
 * zeroed one).  On failure a result struct is left zeroed.  Input strings
 * are borrowed for the duration of the call.
 *
 * Times are int64 seconds since the Unix epoch; an input time of 0 means
 * "now".  An output time of 0 means "never" (revoked_at, last_used_at).
 */
#ifndef LIVEPUSH_DB_H
#define LIVEPUSH_DB_H

#include "livepush/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Schema version this code writes and understands. */
#define LP_DB_SCHEMA_VERSION 7

/* Bounds on inputs (bytes, without the NUL). */
#define LP_DB_NAME_MAX 64        /* app and channel names */
#define LP_DB_VERSION_MAX 64     /* release version, runtime version */
#define LP_DB_PLATFORM_MAX 32    /* platform, arch */
#define LP_DB_NOTES_MAX 16384    /* release notes */
#define LP_DB_ID_MAX 64          /* token and upload IDs */
#define LP_DB_TOKEN_NAME_MAX 128 /* human-readable token name */
#define LP_DB_SALT_MIN 8
#define LP_DB_SALT_MAX 64
#define LP_DB_HASH_MIN 16
#define LP_DB_HASH_MAX 64
#define LP_DB_SCOPES_MAX 256     /* canonical scope list */
#define LP_DB_SCOPE_MAX 32       /* one scope */
#define LP_DB_PATH_MAX 4095      /* upload partial-file path */
#define LP_DB_CHANNELS_MAX 16    /* channels per release */
#define LP_DB_LIST_MAX 10000     /* rows one list call returns */
#define LP_DB_URL_MAX 4096
#define LP_DB_DEVICE_ID_MIN 16   /* device IDs: lower-case hex digits */
#define LP_DB_DEVICE_ID_MAX 64
#define LP_DB_EVENT_TYPE_MAX 16  /* longest event type name */
#define LP_DB_REASON_MAX 1024    /* an event's reason text */
#define LP_DB_EVENT_BATCH_MAX 1000            /* events one insert call takes */
#define LP_DB_DURATION_MS_MAX 2592000000LL    /* 30 days, in milliseconds */
#define LP_DB_TIME_MAX 253402300799LL         /* 9999-12-31 23:59:59 UTC */

typedef struct lp_db lp_db;

/* ---- opening ---------------------------------------------------------- */

/* Opens (creating if needed) the database named by `url` and brings its
 * schema up to LP_DB_SCHEMA_VERSION.  SQLite: the file is created with mode
 * 0600; its folder must exist.  PostgreSQL: connects (LP_ERR_NETWORK when
 * it cannot) and keeps the tables in the connection's current schema (the
 * first of search_path that exists; LP_ERR_NOT_FOUND when none does).  The
 * caller owns *out (lp_db_close). */
lp_status lp_db_open(const char *url, lp_db **out, lp_error *err);
/* Copies `url` into out (cap bytes, truncated) with the password of a
 * scheme://user:password@host URL replaced by ***, for messages and logs
 * (a password may also be given as ?password=..., which is not shown as
 * such: prefer the PGPASSWORD environment or ~/.pgpass). */
void lp_db_url_redact(const char *url, char *out, size_t cap);
/* Closes the connection, rolling back an open transaction.  NULL is fine. */
void lp_db_close(lp_db *db);
/* Name of the back end: "sqlite" or "postgresql". */
const char *lp_db_backend(const lp_db *db);
/* The schema version stored in the database. */
lp_status lp_db_schema_version(lp_db *db, int *version, lp_error *err);

/* ---- transactions ----------------------------------------------------- */

lp_status lp_db_begin(lp_db *db, lp_error *err);
lp_status lp_db_commit(lp_db *db, lp_error *err);
/* Rolls back; LP_ERR_STATE if no transaction is open. */
lp_status lp_db_rollback(lp_db *db, lp_error *err);
bool lp_db_in_transaction(const lp_db *db);

/* ---- apps -------------------------------------------------------------
 * Names (apps and channels): 1..LP_DB_NAME_MAX bytes of [a-z0-9._-], the
 * first one a letter or digit.  They appear in URLs. */

typedef struct lp_db_app {
    int64_t id;
    char *name;
    int64_t created_at;
} lp_db_app;

typedef struct lp_db_app_list {
    lp_db_app *items;
    size_t count;
} lp_db_app_list;

/* LP_ERR_EXISTS if the name is taken.  *id_out (may be NULL) gets the ID. */
lp_status lp_db_app_create(lp_db *db, const char *name, int64_t created_at, int64_t *id_out,
                           lp_error *err);
lp_status lp_db_app_get(lp_db *db, int64_t id, lp_db_app *out, lp_error *err);
lp_status lp_db_app_get_by_name(lp_db *db, const char *name, lp_db_app *out, lp_error *err);
/* All apps ordered by name. */
lp_status lp_db_app_list_all(lp_db *db, lp_db_app_list *out, lp_error *err);
void lp_db_app_free(lp_db_app *app);
void lp_db_app_list_free(lp_db_app_list *list);

/* ---- channels --------------------------------------------------------- */

typedef struct lp_db_channel {
    int64_t id;
    int64_t app_id;
    char *name;
    int64_t created_at;
} lp_db_channel;

typedef struct lp_db_channel_list {
    lp_db_channel *items;
    size_t count;
} lp_db_channel_list;

/* LP_ERR_EXISTS if the app already has that channel, LP_ERR_NOT_FOUND if
 * the app does not exist. */
lp_status lp_db_channel_create(lp_db *db, int64_t app_id, const char *name, int64_t created_at,
                               int64_t *id_out, lp_error *err);
/* The app's channels ordered by name. */
lp_status lp_db_channel_list_all(lp_db *db, int64_t app_id, lp_db_channel_list *out,
                                 lp_error *err);
void lp_db_channel_list_free(lp_db_channel_list *list);

/* ---- releases ---------------------------------------------------------
 * A release is one tree manifest (by SHA-256) published for an app with
 * its release fields.  Within an app:
 *   - version_code strictly increases: a new release's code must be greater
 *     than every existing one (LP_ERR_ROLLBACK otherwise), checked inside the
 *     write transaction so two publishers can never get the same code;
 *   - the version string is unique among releases that are not rollbacks
 *     (LP_ERR_EXISTS); a rollback republishes an earlier release's version
 *     and manifest under a new, higher version_code with rollback_of set to
 *     the release it restores (which must belong to the same app).
 * Channels named by a release are created for the app if missing. */

/* Release states. */
#define LP_DB_STATE_PENDING "pending"     /* stored, waiting for signatures */
#define LP_DB_STATE_PUBLISHED "published" /* visible to devices */
#define LP_DB_STATE_WITHDRAWN "withdrawn" /* pulled back by an operator */

typedef struct lp_db_release_new {
    int64_t app_id;
    const char *version;          /* [A-Za-z0-9._+~-], 1..LP_DB_VERSION_MAX */
    int64_t version_code;         /* >= 1 */
    const char *manifest_sha256;  /* 64 lower-case hex digits */
    uint64_t manifest_size;       /* bytes, <= INT64_MAX */
    const char *const *channels;  /* 1..LP_DB_CHANNELS_MAX names, no duplicates */
    size_t n_channels;
    const char *runtime_version;  /* NULL or as version */
    const char *platform;         /* NULL or [a-z0-9_-], 1..LP_DB_PLATFORM_MAX */
    const char *arch;             /* NULL or as platform */
    bool mandatory;
    const char *notes;            /* NULL or text up to LP_DB_NOTES_MAX bytes:
                                     no control characters but \t \n \r */
    const char *created_by;       /* NULL or the ID of an existing token */
    const char *state;            /* NULL (= published) or an LP_DB_STATE_* */
    int64_t rollback_of;          /* 0, or the release this one restores */
    int64_t created_at;           /* 0 = now */
    const char *targeting;        /* NULL or the JSON text of targeting rules
                                     (livepush/targeting.h): checked and stored
                                     in canonical form ({} stores NULL) */
    bool staged;                  /* start a staged rollout on every channel of the
                                     release (a row of `rollouts`, active) ... */
    int rollout_bp;               /* ... reaching this share, 0..LP_DB_BP_MAX */
} lp_db_release_new;

typedef struct lp_db_release {
    int64_t id;
    int64_t app_id;
    char *version;
    int64_t version_code;
    char manifest_sha256[65];
    uint64_t manifest_size;
    char **channels;              /* sorted by name */
    size_t n_channels;
    char *runtime_version;        /* NULL when not set */
    char *platform;               /* NULL when not set */
    char *arch;                   /* NULL when not set */
    bool mandatory;
    char *notes;                  /* NULL when not set */
    char *created_by;             /* NULL when not set */
    char *state;
    int64_t rollback_of;          /* 0 when not a rollback */
    int64_t created_at;
    char *targeting;              /* canonical JSON of the targeting rules;
                                     NULL when the release has none */
} lp_db_release;

typedef struct lp_db_release_list {
    lp_db_release *items;
    size_t count;
} lp_db_release_list;

/* Inserts a release and its channel links atomically.  *id_out may be NULL. */
lp_status lp_db_release_insert(lp_db *db, const lp_db_release_new *rel, int64_t *id_out,
                               lp_error *err);
lp_status lp_db_release_get(lp_db *db, int64_t id, lp_db_release *out, lp_error *err);
/* The newest (highest version_code) release of the app with that version
 * string (an original or a rollback to it).  LP_ERR_NOT_FOUND. */
lp_status lp_db_release_get_by_version(lp_db *db, int64_t app_id, const char *version,
                                       lp_db_release *out, lp_error *err);
/* The published release with the highest version_code, on `channel` when
 * it is not NULL.  LP_ERR_NOT_FOUND when there is none. */
lp_status lp_db_release_latest(lp_db *db, int64_t app_id, const char *channel,
                               lp_db_release *out, lp_error *err);
/* Releases of the app (any state), by version_code descending, on `channel`
 * when not NULL, with version_code < before_code when before_code > 0 (for
 * paging), at most `limit` (1..LP_DB_LIST_MAX; 0 = LP_DB_LIST_MAX). */
lp_status lp_db_release_list_by_app(lp_db *db, int64_t app_id, const char *channel,
                                    int64_t before_code, size_t limit, lp_db_release_list *out,
                                    lp_error *err);
/* The app's highest version_code, 0 when it has no release.  Inside a
 * transaction this is stable until commit (nobody else can insert). */
lp_status lp_db_release_max_code(lp_db *db, int64_t app_id, int64_t *code, lp_error *err);
/* Sets a release's state (an LP_DB_STATE_*).  LP_ERR_NOT_FOUND. */
lp_status lp_db_release_set_state(lp_db *db, int64_t id, const char *state, lp_error *err);
void lp_db_release_free(lp_db_release *rel);
void lp_db_release_list_free(lp_db_release_list *list);

/* ---- tokens -----------------------------------------------------------
 * The database stores what authenticates a token (a salt and a salted
 * hash, opaque bytes chosen by the caller) and what it may do.  Scopes are
 * stored as canonical text: scope names ([a-z][a-z0-9_:-], 1..LP_DB_SCOPE_MAX
 * bytes) sorted, without duplicates, joined by ','.  Input scope lists may
 * be in any order and repeat a scope; they are canonicalised. */

typedef struct lp_db_token_new {
    const char *id;               /* [A-Za-z0-9_-], 1..LP_DB_ID_MAX: public part */
    const char *name;             /* printable text, 1..LP_DB_TOKEN_NAME_MAX */
    const uint8_t *salt;          /* LP_DB_SALT_MIN..LP_DB_SALT_MAX bytes */
    size_t salt_len;
    const uint8_t *hash;          /* LP_DB_HASH_MIN..LP_DB_HASH_MAX bytes */
    size_t hash_len;
    const char *scopes;           /* "upload,download", at least one scope */
    int64_t created_at;           /* 0 = now */
} lp_db_token_new;

typedef struct lp_db_token {
    char *id;
    char *name;
    uint8_t salt[LP_DB_SALT_MAX];
    size_t salt_len;
    uint8_t hash[LP_DB_HASH_MAX];
    size_t hash_len;
    char *scopes;                 /* canonical */
    int64_t created_at;
    int64_t revoked_at;           /* 0 = active */
    int64_t last_used_at;         /* 0 = never */
} lp_db_token;

typedef struct lp_db_token_list {
    lp_db_token *items;
    size_t count;
} lp_db_token_list;

/* Canonicalises a scope list into out (at least LP_DB_SCOPES_MAX + 1
 * bytes).  LP_ERR_INVALID_ARG naming the bad scope. */
lp_status lp_db_scopes_canonical(const char *scopes, char *out, size_t out_cap, lp_error *err);
/* True if the canonical list `scopes` contains `scope`. */
bool lp_db_scopes_has(const char *scopes, const char *scope);

/* LP_ERR_EXISTS if the ID is taken. */
lp_status lp_db_token_insert(lp_db *db, const lp_db_token_new *tok, lp_error *err);
/* Revoked tokens are found too (check revoked_at).  LP_ERR_NOT_FOUND. */
lp_status lp_db_token_find_by_id(lp_db *db, const char *id, lp_db_token *out, lp_error *err);
/* All tokens ordered by created_at, then ID. */
lp_status lp_db_token_list_all(lp_db *db, lp_db_token_list *out, lp_error *err);
/* Marks a token revoked at `when` (0 = now).  Revoking a revoked token keeps
 * the first time and succeeds.  LP_ERR_NOT_FOUND. */
lp_status lp_db_token_revoke(lp_db *db, const char *id, int64_t when, lp_error *err);
/* Records a use at `when` (0 = now).  LP_ERR_NOT_FOUND. */
lp_status lp_db_token_touch(lp_db *db, const char *id, int64_t when, lp_error *err);
void lp_db_token_free(lp_db_token *tok);
void lp_db_token_list_free(lp_db_token_list *list);

/* ---- resumable uploads ------------------------------------------------
 * State of an upload in progress: the partial file it is written to, the
 * size (and optionally the SHA-256) the finished upload must have, and how
 * many bytes are safely on disk.  The row is deleted when the upload is
 * finished or abandoned. */

typedef struct lp_db_upload_new {
    const char *id;               /* [A-Za-z0-9_-], 1..LP_DB_ID_MAX (unguessable) */
    int64_t app_id;
    const char *token_id;         /* NULL or the token that started it */
    const char *path;             /* partial file, 1..LP_DB_PATH_MAX bytes */
    uint64_t expected_size;       /* <= INT64_MAX */
    const char *expected_sha256;  /* NULL or 64 lower-case hex digits */
    int64_t created_at;           /* 0 = now */
} lp_db_upload_new;

typedef struct lp_db_upload {
    char *id;
    int64_t app_id;
    char *token_id;               /* NULL when not set */
    char *path;
    uint64_t expected_size;
    char *expected_sha256;        /* NULL when not set */
    uint64_t received;
    int64_t created_at;
    int64_t updated_at;
} lp_db_upload;

typedef struct lp_db_upload_list {
    lp_db_upload *items;
    size_t count;
} lp_db_upload_list;

/* LP_ERR_EXISTS for a taken ID, LP_ERR_NOT_FOUND for a missing app or token. */
lp_status lp_db_upload_create(lp_db *db, const lp_db_upload_new *up, lp_error *err);
lp_status lp_db_upload_get(lp_db *db, const char *id, lp_db_upload *out, lp_error *err);
/* Records that `received` bytes are on disk (<= expected_size, else
 * LP_ERR_TOO_LARGE) at `when` (0 = now).  LP_ERR_NOT_FOUND. */
lp_status lp_db_upload_set_received(lp_db *db, const char *id, uint64_t received, int64_t when,
                                    lp_error *err);
/* LP_ERR_NOT_FOUND. */
lp_status lp_db_upload_delete(lp_db *db, const char *id, lp_error *err);
/* Uploads last updated before `updated_before`, oldest first (for cleaning
 * up abandoned ones). */
lp_status lp_db_upload_list_stale(lp_db *db, int64_t updated_before, lp_db_upload_list *out,
                                  lp_error *err);
void lp_db_upload_free(lp_db_upload *up);
void lp_db_upload_list_free(lp_db_upload_list *list);

/* ---- devices and their events (telemetry) -------------------------------
 * A device running an app reports what its updater did as events, each
 * numbered by the device (seq: 1, 2, 3, ... in the order they happened).
 * A batch of events is stored in one transaction; (app, device, seq) is
 * unique, so a batch the device sends again (its answer was lost) adds
 * nothing: an event whose seq is stored already counts as a duplicate and
 * is skipped, whatever its other fields say.  Each device of an app has one
 * row, created by its first batch: when it was first and last heard from,
 * the release it runs, its newest event, and how many events it reported
 * having discarded.
 *
 * Event fields:
 *   seq                1..INT64_MAX, the device's number for the event
 *   type               one of LP_DB_EVENT_TYPES (below)
 *   at                 when it happened, by the device's clock (seconds,
 *                      1..LP_DB_TIME_MAX; not compared with the server's)
 *   version            NULL or a release version string (as releases)
 *   version_code       0 (not given) or >= 1: the release the event is
 *                      about; after activated / rolled_back / healthy, the
 *                      release the device runs
 *   from_version_code  0 (not given) or >= 1: the release the device ran
 *                      before (activated, rolled_back)
 *   reason             NULL or text of 1..LP_DB_REASON_MAX bytes, no
 *                      control characters but \t \n \r (why it failed)
 *   duration_ms        -1 (not given) or 0..LP_DB_DURATION_MS_MAX: how long
 *                      the step took
 *   bytes, files_fetched, files_delta, bytes_delta_saved, delta_fallbacks
 *                      -1 (not given) or 0..INT64_MAX: the figures of a
 *                      download ("downloaded" events; any type may carry
 *                      them): bytes received for the release (whole files
 *                      and deltas), files fetched, of those made from a
 *                      delta, file bytes the deltas spared, deltas that
 *                      failed (the whole file was fetched instead)
 *   received_at        when the server stored it (server's clock)
 * A device's "version_code" is that of its newest (highest seq) event of
 * type activated, rolled_back or healthy that names one (0 before any). */

/* The event types, in the order an update goes through them, as one
 * string for messages. */
#define LP_DB_EVENT_TYPES \
    "checked, downloaded, verified, staged, activated, healthy, failed, rolled_back"

/* True when `type` is one of LP_DB_EVENT_TYPES. */
bool lp_db_event_type_valid(const char *type);

typedef struct lp_db_event_new {
    int64_t seq;
    const char *type;
    int64_t at;
    const char *version;          /* NULL: not given */
    int64_t version_code;         /* 0: not given */
    int64_t from_version_code;    /* 0: not given */
    const char *reason;           /* NULL: not given */
    int64_t duration_ms;          /* -1: not given */
    int64_t bytes;                /* download figures (above): -1: not given */
    int64_t files_fetched;
    int64_t files_delta;
    int64_t bytes_delta_saved;
    int64_t delta_fallbacks;
} lp_db_event_new;

/* One batch from one device. */
typedef struct lp_db_event_batch {
    int64_t app_id;
    const char *device_id;        /* LP_DB_DEVICE_ID_MIN..MAX lower-case hex digits */
    const lp_db_event_new *events;
    size_t n_events;              /* 0..LP_DB_EVENT_BATCH_MAX (0: only a check-in) */
    int64_t dropped;              /* >= 0: events the device has discarded so far
                                     (a running total); the device row keeps the
                                     largest value reported */
    int64_t received_at;          /* 0 = now */
    const char *channel;          /* NULL, or the channel the device follows (a name):
                                     stored with each event and on the device row */
    bool *stored;                 /* NULL, or n_events flags set on success to whether
                                     each event was new (false: a duplicate) */
} lp_db_event_batch;

typedef struct lp_db_event {
    int64_t id;                   /* increases in the order events were stored */
    char device_id[LP_DB_DEVICE_ID_MAX + 1];
    int64_t seq;
    char type[LP_DB_EVENT_TYPE_MAX + 1];
    int64_t at;
    char *version;                /* NULL when not given */
    int64_t version_code;         /* 0 when not given */
    int64_t from_version_code;    /* 0 when not given */
    char *reason;                 /* NULL when not given */
    int64_t duration_ms;          /* -1 when not given */
    int64_t bytes;                /* download figures (above): -1 when not given */
    int64_t files_fetched;
    int64_t files_delta;
    int64_t bytes_delta_saved;
    int64_t delta_fallbacks;
    int64_t received_at;
} lp_db_event;

typedef struct lp_db_event_list {
    lp_db_event *items;
    size_t count;
} lp_db_event_list;

/* Which events lp_db_event_list_by_app returns. */
typedef struct lp_db_event_query {
    const char *device_id;        /* NULL: every device */
    const char *type;             /* NULL: every type */
    int64_t since;                /* 0: no bound; else only events with at >= since */
    int64_t before_id;            /* 0: from the newest; else only ids < before_id (paging) */
    size_t limit;                 /* 1..LP_DB_LIST_MAX; 0 = LP_DB_LIST_MAX */
} lp_db_event_query;

typedef struct lp_db_device {
    int64_t app_id;
    char device_id[LP_DB_DEVICE_ID_MAX + 1];
    int64_t first_seen;           /* server's clock, first batch */
    int64_t last_seen;            /* server's clock, latest batch */
    int64_t version_code;         /* 0: not known yet (see above) */
    int64_t dropped;              /* largest running total of discarded events reported */
    char channel[LP_DB_NAME_MAX + 1]; /* the channel last reported; "" when never */
    bool has_last_event;
    lp_db_event last_event;       /* the event with the highest seq, when has_last_event */
} lp_db_device;

typedef struct lp_db_device_list {
    lp_db_device *items;
    size_t count;
} lp_db_device_list;

/* Checks every field of the batch (the first bad one is named, e.g.
 * "events[3].type: 'exploded' is not one of ..."), then, in one write
 * transaction: creates or updates the device row (last_seen, dropped),
 * stores the events whose seq the device has not sent before, and updates
 * the device's version_code and newest event.  *inserted (may be NULL) gets
 * the number of events stored by this call (n_events minus duplicates).
 * Nothing is stored when any field is bad.  LP_ERR_NOT_FOUND when the app
 * does not exist; LP_ERR_TOO_LARGE for more than LP_DB_EVENT_BATCH_MAX. */
lp_status lp_db_events_insert(lp_db *db, const lp_db_event_batch *batch, size_t *inserted,
                              lp_error *err);
/* The app's events matching *q (q may be NULL: the newest), newest stored
 * first (id descending). */
lp_status lp_db_event_list_by_app(lp_db *db, int64_t app_id, const lp_db_event_query *q,
                                  lp_db_event_list *out, lp_error *err);
/* One device of an app.  LP_ERR_NOT_FOUND. */
lp_status lp_db_device_get(lp_db *db, int64_t app_id, const char *device_id, lp_db_device *out,
                           lp_error *err);
/* The app's devices ordered by device_id, only those after `after` when it
 * is not NULL (paging), at most `limit` (1..LP_DB_LIST_MAX; 0 =
 * LP_DB_LIST_MAX). */
lp_status lp_db_device_list_by_app(lp_db *db, int64_t app_id, const char *after, size_t limit,
                                   lp_db_device_list *out, lp_error *err);
void lp_db_event_free(lp_db_event *ev);
void lp_db_event_list_free(lp_db_event_list *list);
void lp_db_device_free(lp_db_device *dev);
void lp_db_device_list_free(lp_db_device_list *list);

/* ---- deltas between releases --------------------------------------------
 * The server makes binary deltas from the files of earlier releases to
 * those of a new one in the background (docs/server.md).  The work is
 * recorded per pair of releases (from, to) of one app: the pair is planned
 * ("pending") when `to` is published, and "done" when every file of `to`
 * that needed a delta was dealt with.  Each file dealt with has one row per
 * pair and result: the result's SHA-256, the base file's SHA-256 the delta
 * starts from, its size and what became of it:
 *   made       the delta is kept in the server's delta store
 *   too_large  it was made but was larger than the size threshold, and
 *              thrown away ("not worth it": not made again for that base
 *              and result)
 *   failed     making it failed (logged by the server)
 * Rows are written while the pair is worked on, so after a restart the
 * work resumes where it stopped. */

#define LP_DB_DELTA_MADE "made"
#define LP_DB_DELTA_TOO_LARGE "too_large"
#define LP_DB_DELTA_FAILED "failed"
#define LP_DB_DELTA_RELEASES_MAX 64 /* most earlier releases a release is paired with */

typedef struct lp_db_delta_pair {
    int64_t app_id;
    int64_t from_release_id;
    int64_t to_release_id;
    int64_t from_code;            /* the releases' version codes */
    int64_t to_code;
    bool done;                    /* every file of the pair was dealt with */
    int64_t created_at;
    int64_t finished_at;          /* 0 while pending */
} lp_db_delta_pair;

typedef struct lp_db_delta {
    char result_sha256[65];
    char base_sha256[65];
    uint64_t size;                /* bytes of the delta (0 when it failed) */
    char state[16];               /* an LP_DB_DELTA_* */
} lp_db_delta;

typedef struct lp_db_delta_list {
    lp_db_delta *items;
    size_t count;
} lp_db_delta_list;

/* Counts over the pairs whose `to` is one release. */
typedef struct lp_db_delta_summary {
    int64_t made;                 /* deltas kept */
    int64_t bytes;                /* their total size */
    int64_t pending;              /* pairs not finished yet */
    int64_t too_large;
    int64_t failed;
    int64_t pairs;                /* pairs planned */
} lp_db_delta_summary;

/* Plans the pairs of release `release_id` (which should be published): for
 * each channel it is on, the last `k` (0..LP_DB_DELTA_RELEASES_MAX)
 * published releases of that channel with a lower version code become
 * pending pairs (from them to it), unless planned already.  *added (may be
 * NULL) counts the new pairs.  k = 0 plans nothing.  LP_ERR_NOT_FOUND when
 * the release does not exist. */
lp_status lp_db_delta_plan(lp_db *db, int64_t release_id, unsigned k, int64_t created_at,
                           size_t *added, lp_error *err);
/* The pending pair planned first (oldest created_at, then lowest ids).
 * LP_ERR_NOT_FOUND when no pair is pending. */
lp_status lp_db_delta_pair_next(lp_db *db, lp_db_delta_pair *out, lp_error *err);
/* The pair of app `app_id` from the release with version code from_code to
 * the one with to_code.  LP_ERR_NOT_FOUND when it was not planned (or a
 * release does not exist). */
lp_status lp_db_delta_pair_get(lp_db *db, int64_t app_id, int64_t from_code, int64_t to_code,
                               lp_db_delta_pair *out, lp_error *err);
/* Records (or replaces) the outcome for `d->result_sha256` in pair (from,
 * to).  d->state must be an LP_DB_DELTA_*, both digests 64 lower-case hex.
 * LP_ERR_NOT_FOUND when the pair was not planned. */
lp_status lp_db_delta_record(lp_db *db, int64_t from_release_id, int64_t to_release_id,
                             const lp_db_delta *d, lp_error *err);
/* Marks the pair done at `when` (0 = now).  LP_ERR_NOT_FOUND. */
lp_status lp_db_delta_pair_finish(lp_db *db, int64_t from_release_id, int64_t to_release_id,
                                  int64_t when, lp_error *err);
/* The pair's rows sorted by result, only those in `state` when it is not
 * NULL. */
lp_status lp_db_delta_list_pair(lp_db *db, int64_t from_release_id, int64_t to_release_id,
                                const char *state, lp_db_delta_list *out, lp_error *err);
/* What any pair recorded for the delta from `base` to `result`: *found is
 * false when nothing; otherwise *out is one such row, a "made" one first,
 * then "too_large", then "failed". */
lp_status lp_db_delta_find(lp_db *db, const char *base_sha256, const char *result_sha256,
                           bool *found, lp_db_delta *out, lp_error *err);
/* The counts over release `to_release_id`'s pairs (all zero when none). */
lp_status lp_db_delta_summary_get(lp_db *db, int64_t to_release_id, lp_db_delta_summary *out,
                                  lp_error *err);
void lp_db_delta_list_free(lp_db_delta_list *list);

/* ---- rollouts ------------------------------------------------------------
 * The staged rollout of a release on one of its channels (docs/rollouts.md):
 * the share of devices offered it in basis points (0..10000, 10000 = all),
 * a state, and a weight when the release is an arm of the channel's A/B
 * split.  A release on a channel without a row is offered to every device
 * (10000, active, no weight): lp_db_rollout_get reports that as
 * `stored = false`.  States: LP_DB_ROLLOUT_*.  "halted" is final: a halted
 * rollout cannot become active or paused again (LP_ERR_STATE). */

#define LP_DB_ROLLOUT_ACTIVE "active"
#define LP_DB_ROLLOUT_PAUSED "paused"
#define LP_DB_ROLLOUT_HALTED "halted"
#define LP_DB_BP_MAX 10000
#define LP_DB_ROLLOUT_REASON_MAX 1024
/* Most rollout rows listed for one app. */
#define LP_DB_ROLLOUTS_MAX 100000

typedef struct lp_db_rollout {
    int64_t release_id;
    int64_t version_code;
    char *version;
    char *channel;
    int percent_bp;       /* 0..10000 */
    char state[8];        /* an LP_DB_ROLLOUT_* */
    int weight;           /* 1..10000 for an arm of the channel's split; 0: not an arm */
    char *reason;         /* NULL when none */
    int64_t updated_at;   /* 0 when not stored */
    bool stored;          /* false: no row, the defaults above */
} lp_db_rollout;

typedef struct lp_db_rollout_list {
    lp_db_rollout *items;
    size_t count;
} lp_db_rollout_list;

/* What lp_db_rollout_put writes. */
typedef struct lp_db_rollout_new {
    int64_t release_id;
    const char *channel;  /* a channel the release is published on */
    int percent_bp;       /* 0..10000 */
    const char *state;    /* an LP_DB_ROLLOUT_* */
    int weight;           /* 0..10000; 0: not an arm */
    const char *reason;   /* NULL or 1..LP_DB_ROLLOUT_REASON_MAX bytes of text */
    int64_t at;           /* 0 = now */
} lp_db_rollout_new;

/* Creates or replaces the rollout row of (release, channel).  Errors:
 * LP_ERR_INVALID_ARG naming a bad field, LP_ERR_NOT_FOUND when the release
 * does not exist or is not on that channel, LP_ERR_STATE when the stored
 * rollout is halted and the new state is not. */
lp_status lp_db_rollout_put(lp_db *db, const lp_db_rollout_new *r, lp_error *err);
/* The rollout of (release, channel): the stored row, else the defaults
 * (stored = false).  *out is owned by the caller (lp_db_rollout_free).
 * LP_ERR_NOT_FOUND when the release does not exist or is not on that
 * channel. */
lp_status lp_db_rollout_get(lp_db *db, int64_t release_id, const char *channel,
                            lp_db_rollout *out, lp_error *err);
/* The stored rows of an app's published releases, on `channel` only when it
 * is not NULL, ordered by channel then version code.  LP_ERR_TOO_LARGE past
 * LP_DB_ROLLOUTS_MAX rows. */
lp_status lp_db_rollout_list_app(lp_db *db, int64_t app_id, const char *channel,
                                 lp_db_rollout_list *out, lp_error *err);
void lp_db_rollout_free(lp_db_rollout *r);
void lp_db_rollout_list_free(lp_db_rollout_list *list);

/* Adds published channel `channel` to release `release_id` (creating the
 * channel for the app when it has none of that name): a promotion.
 * LP_ERR_EXISTS when the release is already on it, LP_ERR_NOT_FOUND when
 * the release does not exist, LP_ERR_TOO_LARGE past LP_DB_CHANNELS_MAX. */
lp_status lp_db_release_add_channel(lp_db *db, int64_t release_id, const char *channel,
                                    int64_t at, lp_error *err);

/* A channel's maintenance window: minutes after midnight UTC, start
 * inclusive, end exclusive, crossing midnight when end < start; -1 and -1
 * when the channel has none.  LP_ERR_NOT_FOUND when the app has no such
 * channel; set refuses start = end or a value outside 0..1439 (and one of
 * the two -1 without the other) with LP_ERR_INVALID_ARG. */
lp_status lp_db_channel_window_get(lp_db *db, int64_t app_id, const char *channel, int *start,
                                   int *end, lp_error *err);
lp_status lp_db_channel_window_set(lp_db *db, int64_t app_id, const char *channel, int start,
                                   int end, lp_error *err);

/* An app's guardrail: the failure-or-rollback rate in basis points
 * (1..10000; default 500 = 5%) above which a staged rollout is halted, and
 * the least number of devices that tried the release before the rate
 * counts (>= 1; default 20).  LP_ERR_NOT_FOUND for an unknown app. */
lp_status lp_db_app_guard_get(lp_db *db, int64_t app_id, int *rate_bp, int *min_devices,
                              lp_error *err);
lp_status lp_db_app_guard_set(lp_db *db, int64_t app_id, int rate_bp, int min_devices,
                              lp_error *err);

/* What the devices reported about one release on one channel: distinct
 * devices per kind of event (a device counts once per kind however many
 * times it reported).  `tried` is the devices that downloaded, staged,
 * activated or failed it; `bad` those that failed it or rolled back from
 * it (both kinds at once count once).  Events without a channel count for
 * every channel. */
typedef struct lp_db_release_stats {
    int64_t offered;      /* "checked" naming it */
    int64_t downloaded;
    int64_t installed;    /* "activated" */
    int64_t healthy;
    int64_t failed;
    int64_t rolled_back;  /* "rolled_back" from it */
    int64_t tried;
    int64_t bad;
} lp_db_release_stats;

lp_status lp_db_release_stats_get(lp_db *db, int64_t app_id, int64_t version_code,
                                  const char *channel, lp_db_release_stats *out, lp_error *err);

/* Adoption over time: per period of `bucket_s` seconds (server time the
 * events were received, periods aligned to multiples of bucket_s), the
 * distinct devices that installed the release ("activated"), failed it
 * and rolled back from it in that period.  Periods without any such
 * event are left out; at most LP_DB_ADOPTION_MAX periods, the newest. */
#define LP_DB_ADOPTION_MAX 1000
typedef struct lp_db_adoption_point {
    int64_t at;           /* start of the period */
    int64_t installed, failed, rolled_back;
} lp_db_adoption_point;

typedef struct lp_db_adoption {
    lp_db_adoption_point *points; /* oldest first */
    size_t count;
} lp_db_adoption;

/* bucket_s 60..31 days; channel NULL: every channel.  Free with
 * lp_db_adoption_free. */
lp_status lp_db_release_adoption(lp_db *db, int64_t app_id, int64_t version_code,
                                 const char *channel, int64_t bucket_s, lp_db_adoption *out,
                                 lp_error *err);
void lp_db_adoption_free(lp_db_adoption *a);

/* ---- audit log ------------------------------------------------------------
 * An append-only record of every management action and every automatic
 * decision of the server (docs/audit.md).  Entries are numbered 1, 2, 3, ...
 * without gaps (seq) and hash-chained: an entry's hash is the lower-case
 * hex SHA-256 of the canonical JSON (securesystemslib's form: members
 * sorted by key, no whitespace, only '"' and '\\' escaped) of
 *     {"action": A, "actor": W, "app": APP or null, "at": T,
 *      "details": {...}, "prev_hash": P, "seq": N, "subject": S or null}
 * where P is the hash of entry N - 1 (64 '0' for entry 1).  So a changed
 * entry no longer matches its hash, and a removed one leaves a gap in seq
 * or a link that does not match.  Removing the newest entries leaves a
 * shorter chain that is whole: only a head (seq, hash) recorded elsewhere
 * finds that (lp_db_audit_verify's `expected`; the server keeps one in a
 * file, docs/audit.md).  The database refuses UPDATE and DELETE of entries.
 *
 * Entry fields:
 *   seq      1, 2, 3, ... (given by the database)
 *   at       seconds since the epoch (0 on input = now)
 *   actor    who acted: "token:<id>" (an API token), "server" (an automatic
 *            decision), "cli" (a local command); 1..LP_DB_AUDIT_ACTOR_MAX
 *            bytes of UTF-8 without control characters
 *   action   what was done, e.g. "release.published": 1..LP_DB_AUDIT_ACTION_MAX
 *            bytes of a-z _ . starting with a letter
 *   app      NULL or the app's name (as app names; the app need not exist)
 *   subject  NULL or what the action was about (a version, a token ID):
 *            1..LP_DB_AUDIT_SUBJECT_MAX bytes, as actor
 *   details  a JSON object (input NULL = {}) of at most
 *            LP_DB_AUDIT_DETAILS_MAX bytes in canonical form, nested at most
 *            LP_DB_AUDIT_DETAILS_DEPTH deep, integers only (no real
 *            numbers), no control characters in its strings; stored in
 *            canonical form, so that the stored text is the one hashed
 *   prev_hash, hash  as above */

#define LP_DB_AUDIT_ACTION_MAX 64
#define LP_DB_AUDIT_ACTOR_MAX 128
#define LP_DB_AUDIT_SUBJECT_MAX 256
#define LP_DB_AUDIT_DETAILS_MAX 16384
#define LP_DB_AUDIT_DETAILS_DEPTH 8

typedef struct lp_db_audit_new {
    int64_t at;                   /* 0 = now */
    const char *actor;
    const char *action;
    const char *app;              /* NULL: none */
    const char *subject;          /* NULL: none */
    const char *details;          /* JSON object text; NULL = {} */
} lp_db_audit_new;

typedef struct lp_db_audit_entry {
    int64_t seq;
    int64_t at;
    char *actor;
    char *action;
    char *app;                    /* NULL when none */
    char *subject;                /* NULL when none */
    char *details;                /* canonical JSON object text */
    char prev_hash[65];
    char hash[65];
} lp_db_audit_entry;

typedef struct lp_db_audit_list {
    lp_db_audit_entry *items;
    size_t count;
} lp_db_audit_list;

/* An entry's place in the chain: its seq and hash (64 lower-case hex).
 * The head of a log is its newest entry; seq 0 (hash "") is an empty log. */
typedef struct lp_db_audit_head {
    int64_t seq;
    char hash[65];
} lp_db_audit_head;

/* Checks and canonicalises the entry, then appends it: seq is one more than
 * the newest entry's, prev_hash that entry's hash.  Inside a transaction
 * (lp_db_begin) the entry is part of it and appears only with its commit,
 * so an action and its entry are stored together or not at all; otherwise
 * the call is its own write transaction.  Either way writers are
 * serialised, so two appenders never chain onto the same entry.  *head_out
 * (may be NULL) gets the new entry's seq and hash (to record as a head once
 * committed).  LP_ERR_INVALID_ARG / LP_ERR_TOO_LARGE naming the field
 * ("audit details: ..."), LP_ERR_MALFORMED when the newest stored entry's
 * hash is not 64 hex digits. */
lp_status lp_db_audit_append(lp_db *db, const lp_db_audit_new *e, lp_db_audit_head *head_out,
                             lp_error *err);
/* Entries with seq > after_seq (>= 0), oldest first, of app `app` only
 * when it is not NULL, at most `limit` (1..LP_DB_LIST_MAX; 0 =
 * LP_DB_LIST_MAX).  Entries are returned as stored (a changed entry is
 * listed as it now reads; lp_db_audit_verify judges it). */
lp_status lp_db_audit_list_entries(lp_db *db, const char *app, int64_t after_seq, size_t limit,
                                   lp_db_audit_list *out, lp_error *err);
/* The newest entry's seq and hash (seq 0 and hash "" for an empty log). */
lp_status lp_db_audit_head_get(lp_db *db, lp_db_audit_head *out, lp_error *err);
void lp_db_audit_entry_free(lp_db_audit_entry *e);
void lp_db_audit_list_free(lp_db_audit_list *list);

/* What lp_db_audit_verify found: the first problem in chain order. */
typedef enum lp_db_audit_problem {
    LP_DB_AUDIT_INTACT = 0,       /* no problem */
    LP_DB_AUDIT_MISSING,          /* entries seq..seq_end are not there: removed */
    LP_DB_AUDIT_CHANGED,          /* entry seq does not match its hash (or its
                                     stored fields are not what an append writes) */
    LP_DB_AUDIT_UNLINKED,         /* entry seq's prev_hash is not entry seq-1's hash:
                                     one of the two was replaced */
    LP_DB_AUDIT_SHORT,            /* the log ends (at head.seq) before the expected
                                     head's entry seq: the newest entries were removed */
    LP_DB_AUDIT_HEAD_DIFFERS,     /* entry seq has another hash than the expected
                                     head: the entries up to it were rewritten */
} lp_db_audit_problem;

typedef struct lp_db_audit_report {
    lp_db_audit_problem problem;
    int64_t entries;              /* entries read that were in order (all when intact) */
    lp_db_audit_head head;        /* the last entry read in order (seq 0: none) */
    int64_t seq;                  /* the first bad entry (0 when intact) */
    int64_t seq_end;              /* LP_DB_AUDIT_MISSING: the last missing entry */
    char message[512];            /* one line naming the entry, e.g. "audit entry
                                     17 was changed: its hash does not match its
                                     contents"; "audit log intact: ..." when intact */
} lp_db_audit_report;

/* Walks the whole log in seq order, one entry at a time (memory does not
 * grow with the log), recomputing each entry's hash and link, and fills
 * *out with the first problem (LP_DB_AUDIT_INTACT when none).  `expected`
 * (may be NULL) is a head recorded earlier: the log must still hold an
 * entry with that seq and hash.  The return value is about the walk, not
 * the log: LP_OK whenever the walk was done (read out->problem), an error
 * only when the database could not be read. */
lp_status lp_db_audit_verify(lp_db *db, const lp_db_audit_head *expected,
                             lp_db_audit_report *out, lp_error *err);

#ifdef __cplusplus
}
#endif
#endif
