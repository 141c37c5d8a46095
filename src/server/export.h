/*
 * export.h — a static copy of an app's repository that any web server or
 * CDN can serve (internal; `livepush export` and `livepush timestamp
 * refresh`, docs/export.md).
 *
 * An export is a folder laid out exactly as the server's URL paths, so a
 * device pointed at a web server that serves it (`--server http://host`)
 * makes the same requests and gets the same answers:
 *
 *     <out>/v1/apps/<app>/metadata/N.root.json, root.json, N.<role>.json,
 *                                  timestamp.json
 *     <out>/v1/apps/<app>/targets/<dir>/<sha256>.<name>   TUF targets
 *     <out>/v1/apps/<app>/deltas/<from>/<to>.json         delta indexes
 *     <out>/v1/apps/<app>/mirror.json                     "this is a static mirror"
 *     <out>/v1/blobs/<sha256>                             file contents
 *     <out>/v1/deltas/<base>/<result>                     deltas
 *
 * The export reads the server's data folder without writing anything there
 * (the server may be running): it starts from one timestamp.json and copies
 * exactly what that timestamp leads to (the snapshot it names, the targets
 * roles the snapshot names, their target files, the blobs of every release
 * manifest, the deltas of every finished pair of releases), every root
 * version, and writes timestamp.json last.  Versioned and content-addressed
 * files never change once written, so a publish that happens meanwhile
 * cannot tear the copy: the export is the repository as that timestamp
 * describes it.
 *
 * Each file is written atomically (temporary file, fsync, rename, fsync of
 * the folder; a folder made on the way is fsync'd into its parent) and only
 * when it is missing or different: content-addressed and versioned files
 * that exist with the right size are kept (checked byte for byte with
 * `verify`), the others (timestamp.json, root.json, mirror.json, delta
 * indexes) are compared with what they should hold.  So running the export
 * again writes only what is new.  Every byte copied is checked on the way:
 * targets against the length and SHA-256 the signed metadata gives, blobs
 * against their name and the manifest's size, deltas against the size the
 * database records.  A timestamp.json already in the export with a higher
 * version than the one being written is never replaced (devices would take
 * the lower one for a rollback attack).  Two exports into one folder at the
 * same time are serialised by a flock(2) on the folder itself.
 */
#ifndef LP_SERVER_EXPORT_H
#define LP_SERVER_EXPORT_H

#include "livepush/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Called for every file written, in the order written, with its path
 * relative to the export folder and its size. */
typedef void (*lp_export_file_fn)(void *ctx, const char *rel_path, uint64_t size);

typedef struct lp_export_opts {
    const char *data_dir;  /* the server's data folder (only read) */
    const char *db_url;    /* NULL: sqlite:<data_dir>/livepush.db, which must exist;
                              only opened for the deltas */
    const char *app;       /* the app's name */
    const char *out_dir;   /* the export folder (the web root); made if missing */
    bool no_deltas;        /* leave delta indexes and deltas out (no database needed) */
    bool verify;           /* compare files already in the export byte for byte with
                              what they should hold (else: kept when the size matches) */
    /* Start from these bytes instead of <repo>/metadata/timestamp.json (a
     * timestamp just signed, see lp_export_timestamp_refresh); NULL: read
     * the file. */
    const void *timestamp;
    size_t timestamp_len;
    lp_export_file_fn on_file; /* may be NULL */
    void *ctx;
} lp_export_opts;

typedef struct lp_export_result {
    uint64_t timestamp_version;  /* of the timestamp.json exported */
    uint64_t snapshot_version;
    int64_t timestamp_expires;   /* seconds since the epoch */
    size_t releases;             /* release manifests (targets releases/<code>.json) */
    size_t targets;              /* target files of every role */
    size_t blobs;                /* distinct file contents */
    size_t delta_pairs;          /* finished pairs exported (an index each) */
    size_t deltas;               /* deltas those indexes list */
    size_t delta_pairs_pending;  /* pairs the server is still making: left out */
    size_t deltas_missing;       /* deltas the database lists but the folder lacks */
    size_t files_written;
    size_t files_kept;           /* already there, as they should be */
    uint64_t bytes_written;
} lp_export_result;

/* Exports app `o->app` from `o->data_dir` into `o->out_dir` as described
 * at the top of this file; *r (may be NULL) gets the figures.
 * Errors: LP_ERR_INVALID_ARG (options, app name), LP_ERR_NOT_FOUND (no such
 * app, no published metadata yet, a file the metadata names is missing:
 * the message names it), LP_ERR_MALFORMED (metadata or a manifest that
 * cannot be read), LP_ERR_HASH_MISMATCH / LP_ERR_LENGTH_MISMATCH (a file
 * of the data folder is not what the signed metadata says), LP_ERR_ROLLBACK
 * (the export already holds a newer timestamp), LP_ERR_TOO_LARGE, LP_ERR_IO,
 * LP_ERR_NOMEM, and the database's errors.  A failed export leaves every
 * file it wrote complete and the previous timestamp.json in place, so the
 * folder still serves the previous state, and a new run goes on from there. */
lp_status lp_export_app(const lp_export_opts *o, lp_export_result *r, lp_error *err);

/* `livepush timestamp refresh`: re-signs the app's timestamp.json in
 * <data_dir>/repos/<app> with the server's online timestamp key
 * (<data_dir>/keys/<app>/timestamp.pem), as a publish does: version + 1,
 * the same snapshot, and expiry now + lifetime_s (lifetime_s 0: the
 * default, one day, never shortening the current expiry).  It takes the
 * app's lock (<data_dir>/repos/<app>.lock, as the server does), so it never
 * interleaves with a publish of a running server.  The new file's bytes go
 * to *timestamp (malloc'd, caller frees; may be NULL) and *len, its
 * version and expiry to *version and *expires (may be NULL).
 * Errors: LP_ERR_NOT_FOUND (no such app, no timestamp.json yet, or the
 * timestamp key is not on this machine: the message names its path),
 * LP_ERR_INVALID_ARG, the key's and the repository writer's errors. */
lp_status lp_export_timestamp_refresh(const char *data_dir, const char *app, int64_t lifetime_s,
                                      uint8_t **timestamp, size_t *len, uint64_t *version,
                                      int64_t *expires, lp_error *err);

#endif
