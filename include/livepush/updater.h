/*
 * livepush/updater.h — the device side: installing releases next to each
 * other, switching between them atomically, probation, rollback and hooks.
 *
 * An updater owns one install root (default /var/lib/livepush/<app>):
 *
 *     <root>/releases/<id>/        one folder per installed release; <id> is
 *                                  the release's version code in decimal
 *     <root>/current               symlink "releases/<id>", switched by
 *                                  rename(2) of a new symlink over it
 *     <root>/hooks/                executable hooks (configurable)
 *     <root>/.livepush/            the updater's own state (0700):
 *         state.json               current, previous, probation, installed
 *                                  and bad releases, last check, last error
 *         device-id                random 128-bit hex, made once
 *         manifests/<id>.json      the verified tree manifest of a release
 *         staging/<id>/            a release being built
 *         trash/                   releases being deleted
 *         lock, stage.lock         advisory locks (flock)
 *
 * A release goes through: stage (build it under staging/, reusing unchanged
 * files of installed releases as hard links, fetching the others through a
 * caller-supplied blob source, then rename it into releases/) -> activate
 * (pre-update hooks, atomic switch of `current`, post-update hooks) ->
 * probation (the app confirms it healthy within a window and a number of
 * launches, or the updater switches back and marks it bad) -> kept (the last
 * N releases stay installed for rollback; older ones are deleted).
 *
 * Crash safety: every step that changes files leaves, if the process dies at
 * any instant, either the old or the new release current, and state.json
 * consistent with the `current` symlink once the root is opened again
 * (lp_updater_open repairs what a crash left; docs/agent.md gives the
 * argument step by step).  Nothing is ever written in place.
 *
 * Several processes may open the same root (typically the agent, which
 * stages and activates, and the app, which reports launches and health):
 * every operation reads state.json afresh under an exclusive lock and writes
 * it back before releasing the lock, so no update is lost.  One lp_updater
 * handle must be used by one thread at a time.
 *
 * Everything is blocking and bounded: locks are waited for at most
 * lock_timeout_ms, hooks are killed after hook_timeout_ms, copies stream
 * through a fixed buffer.  There is no global state.
 *
 * Errors follow livepush/error.h; every message names the file, release or
 * hook concerned.
 *
 * The last two sections add the network side (checking for a release,
 * resumable blob downloads, the event queue) and the device client
 * (lp_device), which runs the whole cycle — check, download, verify,
 * activate, probation, reporting — over one install root.
 */
#ifndef LIVEPUSH_UPDATER_H
#define LIVEPUSH_UPDATER_H

#include "livepush/bundle.h"
#include "livepush/error.h"
#include "livepush/fetch.h"
#include "livepush/targeting.h"
#include "livepush/tuf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lp_updater lp_updater;

/* ---- configuration ---------------------------------------------------- */

#define LP_UPDATER_DEFAULT_KEEP 2u
#define LP_UPDATER_DEFAULT_PROBATION_WINDOW_S 600
#define LP_UPDATER_DEFAULT_PROBATION_MAX_LAUNCHES 3u
#define LP_UPDATER_DEFAULT_HOOK_TIMEOUT_MS 60000u
#define LP_UPDATER_DEFAULT_HOOK_KILL_GRACE_MS 5000u
#define LP_UPDATER_DEFAULT_HOOK_OUTPUT_MAX 512u
#define LP_UPDATER_MAX_HOOK_OUTPUT 4096u
#define LP_UPDATER_DEFAULT_RESERVE_BYTES (1u << 20)
#define LP_UPDATER_DEFAULT_LOCK_TIMEOUT_MS 10000u
/* Longest version label (bytes) recorded for a release. */
#define LP_UPDATER_MAX_VERSION 128u

/* Settings of an updater.  Zero fields take the defaults above; only root is
 * required.  Strings are copied by lp_updater_open. */
typedef struct lp_updater_config {
    const char *root;                /* install root; created if missing */
    unsigned keep;                   /* releases kept installed (>= 1) */
    int64_t probation_window_s;      /* seconds a new release has to be marked healthy */
    uint32_t probation_max_launches; /* launches allowed before it is marked healthy */
    const char *hooks_dir;           /* NULL: <root>/hooks */
    uint32_t hook_timeout_ms;        /* a hook running longer gets SIGTERM ... */
    uint32_t hook_kill_grace_ms;     /* ... and SIGKILL this much later */
    size_t hook_output_max;          /* bytes of a hook's output kept for messages
                                        (the last ones; at most LP_UPDATER_MAX_HOOK_OUTPUT) */
    uint64_t reserve_bytes;          /* free space that staging must leave on the file system */
    uint32_t lock_timeout_ms;        /* how long to wait for another process's lock */
    bool verify_all;                 /* lp_updater_verify reads every file, even those whose
                                        content was checked and not written since */
    /* Fault injection for crash tests: "point" or "point@N" kills the process
     * with SIGKILL the first (N-th) time it reaches that crash point (the
     * names are listed in docs/agent.md).  NULL in normal use. */
    const char *crash_at;
} lp_updater_config;

/* ---- opening ------------------------------------------------------------ */

/* Opens (creating it if needed) the install root cfg->root and repairs what
 * an interrupted operation left (see lp_updater_recover).  On the first open
 * the device id is made.  The caller owns *out (lp_updater_close).
 * Errors: LP_ERR_INVALID_ARG (no root, bad setting, unknown crash point),
 * LP_ERR_IO, LP_ERR_MALFORMED (damaged state.json or device-id: the message
 * names the file and the field), LP_ERR_STATE (`current` points somewhere
 * that is not an installed release, or the root is locked past
 * lock_timeout_ms). */
lp_status lp_updater_open(const lp_updater_config *cfg, lp_updater **out, lp_error *err);

/* Closes the handle; NULL is fine.  Nothing on disk changes. */
void lp_updater_close(lp_updater *u);

/* The absolute install root (borrowed, valid until close). */
const char *lp_updater_root(const lp_updater *u);

/* The device id: 32 lower-case hex digits (borrowed, valid until close). */
const char *lp_updater_device_id(const lp_updater *u);

/* Brings state.json in line with the file system: finishes or abandons a
 * switch that was interrupted (whichever the `current` symlink shows),
 * adopts a `current` that state.json does not know (on probation when there
 * is a release to go back to), forgets releases whose folder is gone, adopts
 * release folders it does not list, and removes leftovers (staging folders
 * of a staging that is not running, trash, temporary files).
 * lp_updater_open calls it; every other operation does the light part (the
 * symlink and the release list) by itself.  Errors as lp_updater_open. */
lp_status lp_updater_recover(lp_updater *u, lp_error *err);

/* ---- hooks -------------------------------------------------------------- */

typedef enum lp_hook_point {
    LP_HOOK_PRE_UPDATE = 0,    /* before the switch; failing aborts the update */
    LP_HOOK_POST_UPDATE = 1,   /* after the switch; failing rolls back */
    LP_HOOK_PRE_ROLLBACK = 2,  /* before switching back; failure is recorded only */
    LP_HOOK_POST_ROLLBACK = 3, /* after switching back; failure is recorded only */
} lp_hook_point;
#define LP_HOOK_POINT_COUNT 4

/* "pre-update", "post-update", "pre-rollback", "post-rollback" (also the
 * file names of the executable hooks); "unknown" otherwise. */
const char *lp_hook_point_name(lp_hook_point point);

/* What a hook is told.  Versions are the labels given at staging (the id in
 * decimal when none was given); "" and 0 when there is no old release. */
typedef struct lp_hook_info {
    lp_hook_point point;
    const char *hook;         /* lp_hook_point_name(point) */
    const char *install_root; /* absolute */
    const char *release_dir;  /* the release switched to: <root>/releases/<new_id> */
    uint64_t old_id;          /* the release switched away from */
    uint64_t new_id;          /* the release switched to */
    const char *old_version;
    const char *new_version;
    const char *reason;       /* rollbacks: why; NULL for updates */
} lp_hook_info;

/* A hook in C: return LP_OK, or fail with *err set (its message becomes part
 * of the operation's error).  Runs in the calling thread, without the
 * install root's lock held (it may call into another handle of the root). */
typedef lp_status (*lp_hook_fn)(void *ctx, const lp_hook_info *info, lp_error *err);

/* Sets (fn non-NULL) or clears (fn NULL) the C hook for `point`; one per
 * point, replacing any earlier one.  ctx is passed back as is.
 *
 * At each point the C hook runs first, then the executable
 * <hooks_dir>/<point name> if that file exists: run with fork/exec, no
 * arguments, stdin /dev/null, working folder the new release, in its own
 * process group, with the environment of the caller (less any LIVEPUSH_*
 * variables of its own) plus
 *     LIVEPUSH_HOOK, LIVEPUSH_INSTALL_ROOT, LIVEPUSH_RELEASE_DIR,
 *     LIVEPUSH_OLD_VERSION, LIVEPUSH_NEW_VERSION, LIVEPUSH_OLD_ID,
 *     LIVEPUSH_NEW_ID, and LIVEPUSH_REASON for rollbacks.
 * It succeeds by exiting 0.  Past hook_timeout_ms its process group gets
 * SIGTERM, hook_kill_grace_ms later SIGKILL; the last hook_output_max bytes
 * of its stdout and stderr go into the error message.  A hook file that
 * exists but is not an executable regular file is a failure.
 * LP_ERR_INVALID_ARG for an unknown point. */
lp_status lp_updater_set_hook(lp_updater *u, lp_hook_point point, lp_hook_fn fn, void *ctx,
                              lp_error *err);

/* ---- staging ------------------------------------------------------------ */

/* A blob source.  Must leave at dest_path (a path that does not exist yet; a
 * new file created 0600) a file of exactly `size` bytes whose SHA-256 is
 * `sha256` (64 lower-case hex digits), or fail with *err set and leave
 * nothing at dest_path.  Staging checks the size (and, unless
 * opts->fetch_checks says the source hashes what it writes, the hash) again,
 * refuses (and deletes) what does not match, and fsyncs the file. */
typedef lp_status (*lp_blob_fetch_fn)(void *ctx, const char *sha256, uint64_t size,
                                      const char *dest_path, lp_error *err);

/* Progress: bytes of file content in place so far, out of the release's
 * total (files reused from installed releases count as soon as linked). */
typedef void (*lp_stage_progress_fn)(void *ctx, uint64_t done_bytes, uint64_t total_bytes);

typedef struct lp_stage_opts {
    const char *version;           /* label recorded for the release (NULL: the id);
                                      printable, at most LP_UPDATER_MAX_VERSION bytes */
    lp_stage_progress_fn progress; /* may be NULL */
    void *progress_ctx;
    bool fetch_checks;             /* the blob source checks size and SHA-256 while it
                                      writes (lp_net_fetch_blob and _unsynced do): a
                                      fetched file's size is checked, its content is not
                                      read again */
} lp_stage_opts;

/* What staging did, file by file. */
typedef struct lp_stage_stats {
    uint64_t files;         /* file entries in the manifest */
    uint64_t files_linked;  /* hard-linked from an installed release (or the same release) */
    uint64_t files_copied;  /* copied from an installed release (link(2) failed, or another mode) */
    uint64_t files_fetched; /* fetched through the blob source */
    uint64_t bytes_fetched;
    uint64_t bytes_copied;
    uint64_t bytes_needed;  /* free space the check asked for */
    /* Deltas: filled by the device client (lp_device_download), 0 from
     * lp_updater_stage itself.  files_fetched and bytes_fetched count every
     * file the blob source delivered, whole or made from a delta; the bytes
     * downloaded for file contents are bytes_fetched - bytes_delta_saved. */
    uint64_t files_delta;       /* of files_fetched, made from a delta */
    uint64_t bytes_delta;       /* bytes of those deltas (downloaded instead of the files) */
    uint64_t bytes_delta_saved; /* their files' sizes minus bytes_delta: not downloaded */
    uint64_t delta_fallbacks;   /* deltas that failed (download, apply or check): the
                                   full blob was fetched instead */
} lp_stage_stats;

/* Installs release `id` (> 0) described by the finished, verified manifest
 * `m` as <root>/releases/<id>/, without touching `current`.  Folders and
 * symlinks are made as listed; each file is hard-linked from an installed
 * release whose manifest has the same SHA-256 and mode (its size checked),
 * else copied from one (content hashed while copying), else fetched through
 * `fetch` (may be NULL when nothing needs fetching) and checked.  Modes are
 * set (0644/0755), every file and folder is fsync'd, the manifest is stored
 * as .livepush/manifests/<id>.json with the record of the files whose
 * content is known (.livepush/manifests/<id>.checked, which lets
 * lp_updater_verify skip them), and the folder is renamed into releases/.
 * Free space is checked first: the bytes to fetch or copy plus 4 KiB per
 * entry plus reserve_bytes.  Only one staging runs per root at a time.  On
 * any failure the staging folder is removed and nothing else changed.
 * opts and stats may be NULL.
 * Errors: LP_ERR_INVALID_ARG (id 0, unfinished manifest, bad version label),
 * LP_ERR_EXISTS (already installed), LP_ERR_STATE (marked bad on this
 * device, or another staging is running), LP_ERR_TOO_LARGE ("needs N bytes,
 * M free on the file system of <root>"), LP_ERR_NOT_FOUND (a blob is needed
 * but fetch is NULL), LP_ERR_LENGTH_MISMATCH / LP_ERR_HASH_MISMATCH (the
 * source delivered other content; message names the entry), LP_ERR_IO, or
 * whatever the blob source returned, prefixed with the entry. */
lp_status lp_updater_stage(lp_updater *u, const lp_manifest *m, uint64_t id,
                           const lp_stage_opts *opts, lp_blob_fetch_fn fetch, void *fetch_ctx,
                           lp_stage_stats *stats, lp_error *err);

/* Checks installed release `id` against its stored manifest: every entry on
 * disk with its type and mode, every file with its size and SHA-256, every
 * symlink with its target, and nothing that is not listed.  This is the
 * check of the whole before activation.
 *
 * A file is read in full unless its content was already checked and the
 * file has not been written since: staging checks what it fetches and
 * copies, and a file it hard-links from an installed release counts as
 * checked when it still has the inode, size and modification time noted
 * when that release's copy was checked (.livepush/manifests/<id>.checked;
 * see docs/agent.md, "Verifying").  So applying a release that changes one
 * file reads that file, not the tree.  With verify_all set in the config,
 * every file is read.  After a successful check the record covers every
 * file.  Takes no lock (release folders never change); stats may be NULL.
 * Errors: LP_ERR_INVALID_ARG (id 0), LP_ERR_NOT_FOUND (not installed, or an
 * entry missing), LP_ERR_HASH_MISMATCH / LP_ERR_LENGTH_MISMATCH (a file's
 * content), LP_ERR_STATE (another type, mode or symlink target; an entry not
 * in the manifest), LP_ERR_MALFORMED (the stored manifest), LP_ERR_IO; the
 * message names the release and the path. */
typedef struct lp_verify_stats {
    uint64_t files;      /* file entries */
    uint64_t files_read; /* read and hashed (the others were known to be unchanged) */
    uint64_t bytes_read;
} lp_verify_stats;
lp_status lp_updater_verify_stats(lp_updater *u, uint64_t id, lp_verify_stats *stats,
                                  lp_error *err);

/* lp_updater_verify_stats without the figures. */
lp_status lp_updater_verify(lp_updater *u, uint64_t id, lp_error *err);

/* Deletes installed release `id` as pruning does (renamed into the trash,
 * forgotten in state.json, removed); it stays out of the bad list, so it may
 * be staged again.  Never the current release, the previous one or the one
 * on probation.  Errors: LP_ERR_NOT_FOUND (not installed), LP_ERR_STATE (one
 * of those three), LP_ERR_IO. */
lp_status lp_updater_remove(lp_updater *u, uint64_t id, lp_error *err);

/* ---- switching, probation, rollback --------------------------------------- */

/* Makes installed release `id` current: pre-update hooks (a failure aborts,
 * nothing switched), the atomic switch of `current`, state.json updated
 * (previous = the old current; the new one on probation when there is an
 * old one to go back to), post-update hooks (a failure rolls back to the old
 * release, marks `id` bad and is returned, prefixed with what was done), and
 * then releases beyond `keep` deleted.  If `id` is already current, this
 * finishes an activation that was interrupted: its post-update hooks run if
 * they have not succeeded yet (with the same failure handling), and old
 * releases are pruned; so after a crash, running the update again completes
 * it.
 * Errors: LP_ERR_NOT_FOUND (not installed), LP_ERR_STATE (marked bad; the
 * current release is still on probation; an executable hook failed; the
 * state changed while the pre-update hooks ran), the status a failing C hook
 * returned, LP_ERR_IO. */
lp_status lp_updater_activate(lp_updater *u, uint64_t id, lp_error *err);

/* Confirms that the current release works: ends its probation, so it is
 * kept.  id 0 means "whatever is current"; otherwise id must be current (so
 * a late report from a release that was already rolled back confirms
 * nothing).  Calling it again is harmless.
 * Errors: LP_ERR_STATE (nothing installed, or id is not current), LP_ERR_IO. */
lp_status lp_updater_mark_healthy(lp_updater *u, uint64_t id, lp_error *err);

typedef enum lp_probation_outcome {
    LP_PROBATION_NONE = 0,        /* the current release is not on probation */
    LP_PROBATION_PENDING = 1,     /* on probation, within its limits */
    LP_PROBATION_ROLLED_BACK = 2, /* its limits passed: rolled back, marked bad */
} lp_probation_outcome;

/* Checks the probation window: if the current release is on probation and
 * `now` (seconds since the epoch, normally time(NULL)) is past since +
 * window, rolls back to the previous release and marks it bad.  *out (may
 * be NULL) says what happened.  Errors: those of lp_updater_rollback. */
lp_status lp_updater_check_probation(lp_updater *u, int64_t now, lp_probation_outcome *out,
                                     lp_error *err);

/* Records one launch of the app (call it at every start).  On probation:
 * the window is checked as above, then the launch counter goes up, and the
 * launch that passes max_launches rolls back.  Not on probation: nothing is
 * written.  After LP_PROBATION_ROLLED_BACK the app should start the release
 * that is now current.  Errors: those of lp_updater_rollback, LP_ERR_IO. */
lp_status lp_updater_launch(lp_updater *u, int64_t now, lp_probation_outcome *out,
                            lp_error *err);

/* Switches back from the current release to `to_id` (0: the previous
 * release, or else the newest installed release that is not bad) and marks
 * the abandoned release bad with `reason` (NULL: "rolled back by request"),
 * so it is never staged or activated again on this device.  Pre- and
 * post-rollback hook failures do not stop a rollback: they are recorded as
 * the last error (see lp_updater_status).  The release switched to is not
 * put on probation.
 * Errors: LP_ERR_STATE (nothing installed, target is bad), LP_ERR_NOT_FOUND
 * (no such installed release, or nothing to go back to), LP_ERR_INVALID_ARG
 * (to_id is current), LP_ERR_IO. */
lp_status lp_updater_rollback(lp_updater *u, uint64_t to_id, const char *reason,
                              lp_error *err);

/* The app reports that release `id` fails (a module of it crashed inside the
 * process and was swapped back by its probation, say: livepush/swap.h):
 * if `id` is still current, rolls back from it as lp_updater_rollback does
 * to the default target (the previous release, or else the newest good
 * one), marks it bad with `reason` and records the reason as the last
 * error, as the probation's own rollbacks do.  The check that `id` is
 * current and the switch are made under the root's lock, so a report that
 * arrives late never rolls back another release.
 * Errors: LP_ERR_INVALID_ARG (id 0), LP_ERR_STATE (`id` is not current:
 * nothing changed; "release 3 is not current (4 is)"), and those of
 * lp_updater_rollback. */
lp_status lp_updater_release_failed(lp_updater *u, uint64_t id, const char *reason,
                                    lp_error *err);

/* Deletes installed releases beyond `keep`: never the current, previous or
 * probation release; bad releases first, then the oldest installed.  Each
 * is renamed into the trash, forgotten in state.json, then removed.
 * lp_updater_activate and lp_updater_rollback call it.  Errors: LP_ERR_IO. */
lp_status lp_updater_prune(lp_updater *u, lp_error *err);

/* ---- status ---------------------------------------------------------------- */

typedef struct lp_release_info {
    uint64_t id;
    char *version;
    int64_t installed_at;
} lp_release_info;

typedef struct lp_bad_release {
    uint64_t id;
    char *reason;
    int64_t at;
} lp_bad_release;

typedef struct lp_updater_status {
    uint64_t current;  /* 0: none */
    uint64_t previous; /* 0: none */
    bool on_probation; /* the fields below describe the probation */
    int64_t probation_since;
    uint32_t probation_launches;
    int64_t probation_window_s;
    uint32_t probation_max_launches;
    lp_release_info *releases; /* installed, oldest first */
    size_t release_count;
    lp_bad_release *bad;       /* oldest first */
    size_t bad_count;
    int64_t last_check;        /* 0: never */
    char *last_error;          /* NULL: none */
    int64_t last_error_at;
} lp_updater_status;

/* Fills *out (owned by the caller: lp_updater_status_free) from state.json.
 * Errors: LP_ERR_IO, LP_ERR_MALFORMED (damaged state.json). */
lp_status lp_updater_status_get(lp_updater *u, lp_updater_status *out, lp_error *err);

/* Frees what a status holds and zeroes it; NULL is fine. */
void lp_updater_status_free(lp_updater_status *s);

/* Records an update check made at `now` (> 0) as last_check, and, when
 * `error` is not NULL, its failure as last_error (at `now`).  A check that
 * succeeds leaves an earlier last_error as it was (its time tells it is
 * older).  Errors: LP_ERR_INVALID_ARG (no time), LP_ERR_IO. */
lp_status lp_updater_record_check(lp_updater *u, int64_t now, const char *error, lp_error *err);

/* Records `msg` (cut at 1024 bytes) as last_error, now.  Errors:
 * LP_ERR_INVALID_ARG (empty message), LP_ERR_IO. */
lp_status lp_updater_record_error(lp_updater *u, const char *msg, lp_error *err);

/* ---- network operations ------------------------------------------------------
 * Checking for a release (TUF refresh, choosing a release), downloading it
 * (an lp_blob_fetch_fn over HTTP with resume and retries) and reporting
 * events are declared in this section.
 *
 * Server URLs (a static export mirrors the same paths):
 *     <server>/v1/apps/<app>/metadata/<file>   TUF metadata
 *     <server>/v1/apps/<app>/targets/<path>    TUF targets (release manifests)
 *     <server>/v1/blobs/<sha256>               file contents (Range supported)
 *     <server>/v1/apps/<app>/deltas/<from>/<to>.json   deltas of a pair of releases
 *     <server>/v1/deltas/<base>/<result>       one delta (Range supported)
 *     <server>/v1/apps/<app>/events            device events (POST)
 *
 * The pieces do not depend on an lp_updater: the caller (the agent) passes
 * what they need from it (lp_updater_status_get gives the current release
 * and the bad list, lp_updater_device_id the device id, and the state folder
 * is <root>/.livepush).  A typical cycle:
 *     lp_net_open        (once)            -> lp_net
 *     lp_net_open_tuf    (once)            -> lp_tuf_client over the lp_net
 *     lp_check_for_update                  -> lp_update_offer (manifest verified)
 *     lp_updater_stage(u, &offer.manifest, offer.version_code, ...,
 *                      lp_net_fetch_blob, net, ...)
 *     lp_updater_activate
 *     lp_events_add / lp_events_send       at every step / at the end
 */

/* -- the connection to the update server (docs/agent.md, "Downloads") -- */

typedef struct lp_net lp_net;

/* Progress of one blob: bytes in its partial file so far, out of its size.
 * For a delta (lp_net_fetch_delta), sha256 is the result's and the figures
 * are the delta's bytes. */
typedef void (*lp_net_progress_fn)(void *ctx, const char *sha256, uint64_t done_bytes,
                                   uint64_t total_bytes);

#define LP_NET_DEFAULT_ATTEMPTS 5u
#define LP_NET_DEFAULT_BACKOFF_BASE_MS 500u
#define LP_NET_DEFAULT_BACKOFF_MAX_MS 30000u
#define LP_NET_DEFAULT_RETRY_AFTER_MAX_S 300u
/* App names: 1..LP_NET_MAX_APP bytes of [a-z0-9._-], first a letter or digit. */
#define LP_NET_MAX_APP 64u

/* Settings of an lp_net.  Strings are copied by lp_net_open; zero numbers
 * take the defaults above. */
typedef struct lp_net_config {
    const char *server_url;   /* base URL of the server or static mirror */
    const char *app;          /* the app's name on the server */
    const char *state_dir;    /* the updater's state folder (<root>/.livepush): partial
                                 downloads go to downloads/, TUF metadata to metadata/ */
    /* URL policy, applied to every URL before any connection is made,
     * including each redirect: the scheme must be https (certificates and
     * host names are always verified) unless the host is loopback
     * (127.0.0.0/8, ::1, localhost) or allow_http is set; with an allow-list,
     * the host must be in it (compared without case). */
    bool allow_http;
    const char *const *allowed_hosts; /* NULL-terminated list, or NULL: any host */
    /* Retries of one transfer: a connection failure, a transfer cut short,
     * HTTP 408, 425, 429 and 5xx are tried again, `attempts` tries in all;
     * between tries the wait is a random time in [0, min(max, base * 2^(n-1))]
     * ("full jitter"), or, on 429 and 503 with Retry-After (seconds or an
     * HTTP-date), exactly the time the server asks for.  A Retry-After longer
     * than retry_after_max_s gives up at once. */
    uint32_t attempts;
    uint32_t backoff_base_ms;
    uint32_t backoff_max_ms;
    uint32_t retry_after_max_s;
    lp_http_options http;        /* timeouts and user agent of the connection */
    const char *device_token;    /* NULL: none; else sent as "Authorization: Bearer <token>"
                                    with event batches only (servers run with device
                                    authentication want a download-scope token) */
    lp_net_progress_fn progress; /* may be NULL */
    void *progress_ctx;
} lp_net_config;

/* Checks the configuration and the server URL against the URL policy (no
 * connection is made) and creates the connection.  The caller owns *out
 * (lp_net_close); one thread at a time may use it (and the TUF client made
 * over it).  Errors: LP_ERR_INVALID_ARG (a missing or bad field, or a
 * server URL the policy refuses: the message says which rule),
 * LP_ERR_NOMEM, LP_ERR_NETWORK (libcurl could not be initialised). */
lp_status lp_net_open(const lp_net_config *cfg, lp_net **out, lp_error *err);

/* Closes the connection; NULL is fine.  Partial downloads stay on disk. */
void lp_net_close(lp_net *n);

/* Checks `url` against the URL policy.  LP_ERR_INVALID_ARG naming the URL
 * and the rule it breaks ("plain http to a non-loopback host", "host ... is
 * not in the allowed hosts", "only http and https"). */
lp_status lp_net_check_url(const lp_net *n, const char *url, lp_error *err);

/* Opens a TUF client for the app: trusted metadata in <state_dir>/metadata
 * (which must hold the trusted root.json, see lp_tuf_init_trusted_root),
 * fetching from <server>/v1/apps/<app>/metadata and .../targets through this
 * connection (URL policy and retries applied; a 404 is never retried).  The
 * client borrows the lp_net: close the client first.  Errors: those of
 * lp_tuf_client_open. */
lp_status lp_net_open_tuf(lp_net *n, lp_tuf_client **out, lp_error *err);

/* An lp_blob_fetch_fn: pass it to lp_updater_stage with the lp_net as ctx.
 * GETs <server>/v1/blobs/<sha256> into <state_dir>/downloads/<sha256>.part,
 * resuming from the partial file's size with a Range request (a 206 must
 * start exactly there; a 200 starts the file over), hashing while writing
 * through a fixed buffer; then checks size and SHA-256 and moves the file to
 * dest_path (created 0600, fsync'd).  Retries as configured above; a
 * partial file survives between calls and restarts.  On a content mismatch
 * the partial file is deleted (when the content was resumed from an earlier
 * run, the blob is fetched once more from the start first).
 * Errors: LP_ERR_INVALID_ARG (bad sha256, URL refused by the policy),
 * LP_ERR_HASH_MISMATCH / LP_ERR_LENGTH_MISMATCH (the server delivered other
 * content; message names the blob), LP_ERR_NOT_FOUND (HTTP 404/410),
 * LP_ERR_NETWORK ("blob <sha256>: gave up after N attempts: <last cause>",
 * or another HTTP error), LP_ERR_IO.  Nothing is left at dest_path on
 * failure. */
lp_status lp_net_fetch_blob(void *net, const char *sha256, uint64_t size, const char *dest_path,
                            lp_error *err);

/* lp_net_fetch_blob without the fsyncs: the file's data and the entry at
 * dest_path are not flushed to disk.  For lp_updater_stage with
 * opts->fetch_checks set, which sets each file's mode and fsyncs it once and
 * fsyncs the folders at the end, so a fetched file costs one fsync, not
 * three.  Same checks (size and SHA-256 while writing), errors and
 * ownership as lp_net_fetch_blob. */
lp_status lp_net_fetch_blob_unsynced(void *net, const char *sha256, uint64_t size,
                                     const char *dest_path, lp_error *err);

/* -- deltas between releases (docs/agent.md, "Deltas") --
 *
 * For a pair of releases (the device's current one -> the one offered) the
 * server may list binary deltas (livepush/delta.h) that turn files of the
 * first into files of the second:
 *     <server>/v1/apps/<app>/deltas/<from>/<to>.json   the index (404: none)
 *     <server>/v1/deltas/<base_sha256>/<result_sha256> one delta (Range supported)
 * A delta is not signed: it names its base and result by SHA-256, applying
 * it checks both, and the result must have the SHA-256 the signed manifest
 * gives.  The device client (lp_device_download) uses these calls by itself;
 * they are public for other clients and tests. */

/* Largest index accepted, in bytes of JSON. */
#define LP_DELTA_INDEX_MAX_BYTES (8u << 20)

/* One delta of an index. */
typedef struct lp_delta_ref {
    char result[LP_BLOB_ID_SIZE]; /* SHA-256 (hex) of the file it makes */
    char base[LP_BLOB_ID_SIZE];   /* SHA-256 (hex) of the file it applies to */
    uint64_t size;                /* bytes of the delta */
} lp_delta_ref;

/* The deltas the server made for a pair of releases. */
typedef struct lp_delta_index {
    uint64_t from, to;     /* version codes of the pair */
    bool complete;         /* false: the server is still making some */
    lp_delta_ref *deltas;  /* sorted by result, then base; owned */
    size_t count;
} lp_delta_index;

/* Parses an index strictly: one JSON object (no duplicate keys) with
 *     {"from":F,"to":T,"complete":true,"deltas":[{"result":"<sha256>",
 *      "base":"<sha256>","size":N},...]}
 * where F and T must be `from` and `to`, result and base 64 lower-case hex
 * digits and different, N from LP_DELTA_HEADER_SIZE to LP_DELTA_MAX_SIZE +
 * 1 MiB, and no (result, base) pair listed twice.  Members not named here
 * are ignored.  *out is zeroed first and owned by the caller
 * (lp_delta_index_free) on success.  Errors: LP_ERR_MALFORMED (naming the
 * field, or the entry by its position), LP_ERR_TOO_LARGE (over
 * LP_DELTA_INDEX_MAX_BYTES), LP_ERR_NOMEM, LP_ERR_INVALID_ARG. */
lp_status lp_delta_index_parse(const void *json, size_t len, uint64_t from, uint64_t to,
                               lp_delta_index *out, lp_error *err);

/* Frees what an index holds and zeroes it; NULL is fine. */
void lp_delta_index_free(lp_delta_index *ix);

/* The entries whose result is `result` (*count of them, consecutive), or
 * NULL with *count 0.  Borrowed from ix. */
const lp_delta_ref *lp_delta_index_find(const lp_delta_index *ix, const char *result,
                                        size_t *count);

/* GETs <server>/v1/apps/<app>/deltas/<from>/<to>.json through the
 * connection (URL policy, retries; at most LP_DELTA_INDEX_MAX_BYTES) and
 * parses it (lp_delta_index_parse).  Errors: LP_ERR_NOT_FOUND (HTTP 404 or
 * 410: the server has no deltas for the pair), LP_ERR_NETWORK, those of the
 * parser; messages start "delta index <from> -> <to>". */
lp_status lp_net_fetch_delta_index(lp_net *n, uint64_t from, uint64_t to, lp_delta_index *out,
                                   lp_error *err);

/* Makes the file ref->result at dest_path (a new file, created 0600) from a
 * delta: GETs <server>/v1/deltas/<base>/<result> into
 * <state_dir>/downloads/<base>-<result>.delta.part with the resume, Range and
 * retry machinery of lp_net_fetch_blob (never more than ref->size bytes;
 * exactly that many are needed), then applies it (lp_delta_apply_fd) to the
 * file base_path, mapped read-only (it must have the SHA-256 ref->base),
 * writing the result into dest_path; the result must have SHA-256
 * ref->result and `result_size` bytes.  With `sync` the result is fsync'd.
 * The delta is deleted afterwards, whatever happened; on failure nothing is
 * left at dest_path.  Errors: LP_ERR_INVALID_ARG, LP_ERR_NOT_FOUND (the
 * server has no such delta, or base_path is missing), LP_ERR_NETWORK,
 * LP_ERR_LENGTH_MISMATCH (the server sent another size), the engine's
 * LP_ERR_MALFORMED / LP_ERR_UNSUPPORTED / LP_ERR_HASH_MISMATCH /
 * LP_ERR_TOO_LARGE (a corrupted or truncated delta, another base), LP_ERR_IO;
 * messages start "delta <base>-<result>". */
lp_status lp_net_fetch_delta(lp_net *n, const lp_delta_ref *ref, const char *base_path,
                             uint64_t result_size, const char *dest_path, bool sync,
                             lp_error *err);

/* What the device client did with deltas, for logs (lp_device_config.on_delta). */
typedef enum lp_delta_note_kind {
    LP_DELTA_NOTE_INDEX = 0,        /* the index was read (listed, complete) */
    LP_DELTA_NOTE_NO_INDEX = 1,     /* the server has none for the pair (404): no deltas */
    LP_DELTA_NOTE_INDEX_FAILED = 2, /* it could not be fetched or is malformed (reason):
                                       no deltas; the update goes on with full blobs */
    LP_DELTA_NOTE_APPLIED = 3,      /* a file was made from a delta */
    LP_DELTA_NOTE_FALLBACK = 4,     /* a delta failed (reason); the full blob is fetched */
} lp_delta_note_kind;

typedef struct lp_delta_note {
    lp_delta_note_kind kind;
    uint64_t from, to;    /* the pair of releases */
    const char *path;     /* APPLIED, FALLBACK: the file's path in the release */
    const char *blob;     /* ... its SHA-256 (the delta's result) */
    const char *base;     /* ... the base's SHA-256 */
    uint64_t delta_size;  /* ... bytes of the delta */
    uint64_t file_size;   /* ... bytes of the file */
    size_t listed;        /* INDEX: entries listed */
    bool complete;        /* INDEX: the server has made all it planned */
    const char *reason;   /* NO_INDEX, INDEX_FAILED, FALLBACK: why */
} lp_delta_note;

/* Receives each note; the strings are valid during the call only. */
typedef void (*lp_delta_note_fn)(void *ctx, const lp_delta_note *note);

/* "index", "no_index", "index_failed", "applied", "fallback"; "unknown"
 * otherwise. */
const char *lp_delta_note_kind_name(lp_delta_note_kind kind);

/* -- checking for an update (docs/agent.md, "Checking for an update") -- */

/* Called for each release target that is not chosen, with the reason
 * ("malformed custom field channels: expected an array of strings",
 * "channel beta not listed", "marked bad on this device", ...). */
typedef void (*lp_check_skip_fn)(void *ctx, const char *target, const char *reason);

/* What the device is and has. */
typedef struct lp_check_opts {
    const char *channel;         /* required */
    const char *platform;        /* NULL: the kernel's name in lower case ("linux") */
    const char *arch;            /* NULL: the machine name from uname ("x86_64") */
    const char *runtime_version; /* NULL: none (releases that name one are skipped) */
    uint64_t current_id;         /* version code of the current release; 0: none */
    const uint64_t *bad_ids;     /* releases marked bad on this device */
    size_t bad_count;
    const char *work_dir;        /* folder for the manifest download (a temporary file) */
    lp_check_skip_fn on_skip;    /* may be NULL */
    void *skip_ctx;
    /* The device's id (lp_updater_device_id): 16..64 lower-case hex digits,
     * matched against a release's device list.  NULL: none (releases with
     * a device list are skipped). */
    const char *device_id;
    /* The device's attributes, matched against a release's attribute rules:
     * at most LP_TARGETING_MAX_ATTRIBUTES, keys of [a-z0-9_.-] (1..64
     * bytes), values of printable ASCII (1..128 bytes), each key once
     * (livepush/targeting.h).  NULL / 0: none. */
    const lp_device_attribute *attributes;
    size_t attribute_count;
} lp_check_opts;

/* The release chosen for this device, with its verified tree manifest. */
typedef struct lp_update_offer {
    char *version;            /* the release's version label */
    uint64_t version_code;    /* the release id for lp_updater_stage */
    bool mandatory;
    char *notes;              /* NULL when the release has none */
    uint64_t rollback_of;     /* a server rollback: the code it restores; 0 otherwise */
    char target[48];          /* "releases/<version_code>.json" */
    char manifest_sha256[65]; /* of the manifest JSON, as TUF signed it */
    lp_manifest manifest;     /* finished, parsed strictly */
    size_t considered;        /* release targets looked at */
    size_t malformed;         /* of which skipped as malformed */
    int window_start;         /* the channel's maintenance window, minutes after */
    int window_end;           /*   midnight UTC (end exclusive); both -1: none */
} lp_update_offer;

/* Refreshes the TUF metadata (lp_tuf_client_refresh), lists the targets
 * under "releases/" and chooses the highest version code that is: greater
 * than current_id (never backwards: a server rollback arrives as a higher
 * code), not in the bad list, published on opts->channel, whose platform,
 * arch and runtime_version match when the release sets them, and whose
 * targeting rules (custom field "targeting", livepush/targeting.h) the
 * device passes: current_id within min_from_code..max_from_code, every
 * attribute the release names present among opts->attributes with that
 * value (or one of the listed values), device_id in the release's device
 * list.  A target with a malformed custom field (or whose name is not
 * "releases/<version_code>.json") is skipped and reported through on_skip;
 * it never stops the others.  Targeting is read strictly and fails closed:
 * rules with a member this version does not know, or malformed ones, make
 * the release skipped as malformed, never taken.  The chosen target is
 * downloaded through TUF (signed length and hashes checked) and parsed
 * with lp_manifest_from_json.  *available says whether an offer was made;
 * *out is zeroed first and owned by the caller (lp_update_offer_free) when
 * it was.  Errors: those of the refresh (prefixed "refresh failed at the
 * <step> step"), of the download, LP_ERR_MALFORMED / LP_ERR_TOO_LARGE (the
 * chosen manifest), LP_ERR_IO, LP_ERR_INVALID_ARG (no channel, no
 * work_dir, a device id or attribute out of its bounds). */
lp_status lp_check_for_update(lp_tuf_client *tuf, const lp_check_opts *opts,
                              lp_update_offer *out, bool *available, lp_error *err);

/* The cohort bucket of a device for a release, 0..9999: the first 8 bytes
 * of SHA-256(salt ":" device_id ":" version_code), the code in decimal, as
 * a big-endian integer modulo 10000.  A staged rollout at p basis points
 * reaches the devices whose bucket is below p, so raising p only adds
 * devices.  `salt` is the channel's, from its signed rollout policy
 * (docs/rollouts.md); anyone can recompute which devices a rollout reaches. */
uint32_t lp_rollout_bucket(const char *salt, const char *device_id, uint64_t version_code);
/* The point of a device in an A/B split whose arms' weights sum to
 * total_weight: SHA-256(salt ":split:" device_id) as above, modulo
 * total_weight (0 when it is 0).  The device is in the arm whose share of
 * [0, total) holds the point, arms taken by increasing version code. */
uint64_t lp_rollout_split_point(const char *salt, const char *device_id, uint64_t total_weight);

/* Frees what an offer holds and zeroes it; NULL is fine. */
void lp_update_offer_free(lp_update_offer *o);

/* -- telemetry (docs/agent.md, "Telemetry") -- */

typedef enum lp_event_type {
    LP_EVENT_CHECKED = 0,
    LP_EVENT_DOWNLOADED = 1,
    LP_EVENT_VERIFIED = 2,
    LP_EVENT_STAGED = 3,
    LP_EVENT_ACTIVATED = 4,
    LP_EVENT_HEALTHY = 5,
    LP_EVENT_FAILED = 6,
    LP_EVENT_ROLLED_BACK = 7,
} lp_event_type;

/* "checked", "downloaded", "verified", "staged", "activated", "healthy",
 * "failed", "rolled_back"; "unknown" otherwise. */
const char *lp_event_type_name(lp_event_type t);

#define LP_EVENT_MAX_REASON 1024u  /* longer reasons are cut */
#define LP_EVENTS_DEFAULT_MAX 1000u
#define LP_EVENTS_DEFAULT_BATCH 100u

/* The figures of a download, carried by a "downloaded" event. */
typedef struct lp_event_figures {
    uint64_t bytes;             /* bytes received for the release: the whole files
                                   fetched plus the deltas applied */
    uint64_t files_fetched;     /* files the release needed from the server */
    uint64_t files_delta;       /* of those, made from a delta */
    uint64_t bytes_delta_saved; /* file bytes the deltas spared */
    uint64_t delta_fallbacks;   /* deltas that failed: the whole file was fetched */
} lp_event_figures;

/* An event.  Values are stored as the server accepts them, so that a
 * queued event can never make a batch unacceptable: a version that is not
 * 1..64 characters of [A-Za-z0-9._+~-] is recorded as null, a reason has its
 * control characters other than tab, newline and carriage return replaced
 * by spaces and is cut at LP_EVENT_MAX_REASON bytes (an empty one is null),
 * a duration is capped at 30 days, a figure at INT64_MAX. */
typedef struct lp_event {
    lp_event_type type;
    const char *version;        /* NULL: unknown */
    uint64_t version_code;      /* 0: none */
    uint64_t from_version_code; /* 0: none */
    const char *reason;         /* NULL: none */
    int64_t duration_ms;        /* < 0: not measured */
    int64_t at;                 /* seconds since the epoch; 0: now */
    const lp_event_figures *figures; /* NULL: none (the event has no such fields) */
} lp_event;

/* An on-disk queue of events (one file per event, see docs/agent.md). */
typedef struct lp_events lp_events;

/* Opens (creating it) the queue folder `dir` (normally <state_dir>/events)
 * holding at most max_events events (0: LP_EVENTS_DEFAULT_MAX).  Events
 * queued before survive; their sequence numbers never repeat.  Errors:
 * LP_ERR_INVALID_ARG, LP_ERR_IO, LP_ERR_MALFORMED (damaged queue state file). */
lp_status lp_events_open(const char *dir, uint32_t max_events, lp_events **out, lp_error *err);

/* Closes the queue; NULL is fine.  Nothing on disk changes. */
void lp_events_close(lp_events *q);

/* Appends an event with the next sequence number (written atomically).  A
 * full queue drops its oldest event first and counts the drop.  Several
 * processes may add to the same folder (a lock file serialises them).
 * Errors: LP_ERR_INVALID_ARG (unknown type, code above INT64_MAX), LP_ERR_IO. */
lp_status lp_events_add(lp_events *q, const lp_event *e, lp_error *err);

/* Sends the queued events, oldest first, in batches of at most batch_max
 * (0: LP_EVENTS_DEFAULT_BATCH, at most 1000) to POST
 * <server>/v1/apps/<app>/events as
 *     {"device_id":"<hex>","events":[{"seq":1,"type":"activated","at":...,
 *      "version":"v2","version_code":2,"from_version_code":1,"reason":null,
 *      "duration_ms":12}],"dropped":0}
 * (an event with figures has "bytes", "files_fetched", "files_delta",
 * "bytes_delta_saved" and "delta_fallbacks" too; one without has none of
 * them, and so do events queued by earlier versions)
 * and deletes each batch only after a 2xx answer (the server accepts a
 * batch again without storing it twice).  `dropped` is the running total of
 * events this queue ever discarded; when there is no event to send but that
 * total grew since the server last acknowledged it, a batch with no events
 * reports it.  *sent (may be NULL) gets the number of events acknowledged.
 * Any other answer leaves the events queued for the next call, except a
 * refusal of the batch's content (400, 413, 422), which would never
 * change: that batch is deleted and counted as dropped, so one bad event
 * cannot stop every later one.  A static mirror (an export served by a
 * plain web server, docs/export.md) takes no events: when a POST is answered
 * 403, 404, 405 or 501 and <server>/v1/apps/<app>/mirror.json says the
 * server is a static mirror of this app, sending stops with
 * LP_ERR_UNSUPPORTED (the message says so) and the events stay queued,
 * bounded as always.  Errors: LP_ERR_UNSUPPORTED (a static mirror),
 * LP_ERR_NETWORK (message names the status and the server's answer, and
 * what was dropped), LP_ERR_INVALID_ARG (device id not 16..64 lower-case
 * hex digits), LP_ERR_IO. */
lp_status lp_events_send(lp_events *q, lp_net *net, const char *device_id, size_t batch_max,
                         size_t *sent, lp_error *err);
/* lp_events_send with the channel the device follows as "channel" in each
 * batch (NULL: none), so the server can count events per release and
 * channel.  The channel must be a name of 1..64 bytes of a-z 0-9 . _ -
 * (LP_ERR_INVALID_ARG otherwise). */
lp_status lp_events_send_on(lp_events *q, lp_net *net, const char *device_id,
                            const char *channel, size_t batch_max, size_t *sent, lp_error *err);

/* Events queued now, and the running total of events dropped. */
lp_status lp_events_pending(lp_events *q, size_t *count, uint64_t *dropped, lp_error *err);

/* ---- the device client: the whole cycle (docs/agent.md, "The device client") ----
 *
 * An lp_device puts the pieces above together for a device: the updater of
 * its install root, the connection to the server (opened at the first
 * network call, so an app that only reports its launches and health needs no
 * server) and the event queue <root>/.livepush/events.  Each step adds its
 * event and its record in state.json:
 *     lp_device_check       "checked" (or "failed"); last_check, last_error
 *     lp_device_download    "downloaded" and "staged" (or "failed")
 *     lp_device_verify      "verified" (or "failed": the release is deleted)
 *     lp_device_apply       (or "failed"; last_error)
 *     lp_device_update      the cycle, as an lp_apply_policy says
 * "activated", "healthy" and "rolled_back" come from state.json
 * (lp_device_report, which every call runs): each switch is reported once,
 * whoever made it — this device object, an app calling lp_updater_launch or
 * lp_updater_mark_healthy on its own handle, a failing post-update hook,
 * recovery completing a switch a crash interrupted.  Events are sent by
 * lp_device_send_events.
 *
 * Every call blocks, bounded by the configured timeouts and retries.  A
 * failing call leaves the install root as the updater leaves it: the old
 * release current, or the new one, never a mix.  One thread at a time uses
 * an lp_device; the agent and the app may each open one on the same root.
 */

typedef struct lp_device lp_device;

#define LP_DEVICE_MAX_CHANNEL 64u
#define LP_DEVICE_DEFAULT_CHANNEL "stable"

/* Asked between the steps of an update and before each blob download;
 * true stops the update there (the step in progress finishes). */
typedef bool (*lp_device_stop_fn)(void *ctx);

/* Told of each event a device queues: the event (valid during the call), the
 * channel the device follows, its device id. */
typedef void (*lp_device_event_fn)(void *ctx, const lp_event *e, const char *channel,
                                   const char *device_id);

/* Settings of a device.  Strings are copied by lp_device_open. */
typedef struct lp_device_config {
    lp_updater_config updater;   /* the install root (required) and its settings */
    /* The server: net.server_url (a livepush server or a static mirror) and
     * net.app are needed by the network calls only; net.state_dir is set
     * by the device (<root>/.livepush).  net.progress reports each blob. */
    lp_net_config net;
    const char *channel;         /* NULL: "stable"; a channel stored with
                                    lp_device_set_channel takes precedence */
    const char *platform;        /* NULL: as lp_check_opts */
    const char *arch;
    const char *runtime_version;
    /* The device's attributes for release targeting (as lp_check_opts;
     * copied at open).  The check also gets the updater's device id. */
    const lp_device_attribute *attributes;
    size_t attribute_count;
    /* A root.json to trust: installed into <root>/.livepush/metadata at open
     * (lp_tuf_init_trusted_root: a newer trusted root is kept).  NULL: the
     * one installed before is used; checking fails without one. */
    const char *trusted_root;
    uint32_t max_events;         /* bound of the event queue; 0: LP_EVENTS_DEFAULT_MAX */
    lp_stage_progress_fn progress; /* bytes of the release in place so far */
    void *progress_ctx;
    lp_check_skip_fn on_skip;    /* releases not chosen, with the reason */
    void *skip_ctx;
    lp_device_stop_fn should_stop; /* NULL: never stop early */
    void *stop_ctx;
    /* Deltas (docs/agent.md, "Deltas"): by default a download over a current
     * release asks the server for the index of deltas of that pair and makes
     * the files it lists from deltas, falling back to the full blob when one
     * fails.  no_deltas: never ask, fetch full blobs only. */
    bool no_deltas;
    lp_delta_note_fn on_delta;   /* what happened with deltas; may be NULL */
    void *delta_ctx;
    /* Every event the device queues for the server, as it is queued, with
     * the channel the device follows and its id (the update life cycle on
     * the device's side, docs/lifecycle.md); may be NULL. */
    lp_device_event_fn on_event;
    void *event_ctx;
} lp_device_config;

/* Opens the install root (lp_updater_open: recovery runs, the device id is
 * made on the first open), the event queue, and installs the trusted root
 * when one is given.  No network.  The caller owns *out (lp_device_close).
 * Errors: those of lp_updater_open, lp_events_open and
 * lp_tuf_init_trusted_root; LP_ERR_INVALID_ARG (a bad channel name, a
 * device attribute out of its bounds: lp_device_attributes_check). */
lp_status lp_device_open(const lp_device_config *cfg, lp_device **out, lp_error *err);

/* Closes everything; NULL is fine.  Nothing on disk changes. */
void lp_device_close(lp_device *d);

/* The device's updater (borrowed, valid until close), for the local calls
 * and lp_updater_status_get / lp_updater_device_id. */
lp_updater *lp_device_updater(lp_device *d);

/* The device's event queue (borrowed, valid until close), e.g. for
 * lp_events_pending. */
lp_events *lp_device_events(lp_device *d);

/* The channel the next check uses: the one stored with lp_device_set_channel
 * (*stored true), else the configured one.  out holds at least
 * LP_DEVICE_MAX_CHANNEL + 1 bytes.  Errors: LP_ERR_MALFORMED (the stored
 * file is damaged: the message names it), LP_ERR_IO. */
lp_status lp_device_channel(lp_device *d, char *out, bool *stored, lp_error *err);

/* Stores `channel` (1..64 of A-Z a-z 0-9 . _ -, first a letter or digit)
 * as the device's channel in <root>/.livepush/channel (atomically), or with
 * NULL removes it so the configured channel applies again.  It takes effect
 * at the next check; a device never moves to a lower version code, so after
 * a switch it waits until the new channel has a higher release.  Errors:
 * LP_ERR_INVALID_ARG, LP_ERR_IO. */
lp_status lp_device_set_channel(lp_device *d, const char *channel, lp_error *err);

/* Checks for a release (lp_check_for_update with the device's channel,
 * platform, current release, bad list, device id and attributes), records the check in state.json
 * and queues "checked" (version and code of the offer, if any) or "failed".
 * *out and *available as lp_check_for_update.  Errors: those of
 * lp_check_for_update and lp_net_open; LP_ERR_INVALID_ARG (no server
 * configured), LP_ERR_NOT_FOUND (no trusted root installed). */
lp_status lp_device_check(lp_device *d, lp_update_offer *out, bool *available, lp_error *err);

/* Downloads and stages the offered release (lp_updater_stage with
 * lp_net_fetch_blob: only blobs no installed release has, resumed where an
 * earlier try stopped), queues "downloaded" (time spent fetching) and
 * "staged" (time of the whole step).  Unless cfg.no_deltas, when there is a
 * current release and a file must be fetched, the index of deltas from the
 * current release to the offered one is fetched first
 * (lp_net_fetch_delta_index; a 404, a failure or a malformed index means no
 * deltas, never an error); each file to fetch that it lists, whose base is
 * an installed file and whose delta is smaller than the file, is made with
 * lp_net_fetch_delta, and when that fails the full blob is fetched instead
 * (counted in stats->delta_fallbacks and noted through cfg.on_delta).  The
 * delta figures go into *stats; the "downloaded" event carries the figures
 * of the download (lp_event_figures: bytes = bytes_fetched -
 * bytes_delta_saved, files_fetched, files_delta, bytes_delta_saved,
 * delta_fallbacks) and, as its reason, the first fallback's "<path>:
 * <reason>" (none without a fallback).  A release already installed is not
 * fetched again: LP_OK with *already true (already and stats may be NULL).
 * On failure the staging is removed, `current` is untouched, the error is
 * recorded as last_error and queued as "failed" (except a stop request).
 * Errors: those of lp_updater_stage and lp_net_fetch_blob (a tampered blob:
 * LP_ERR_HASH_MISMATCH naming it, its download deleted), LP_ERR_STATE
 * ("stopped by request"). */
lp_status lp_device_download(lp_device *d, const lp_update_offer *offer, lp_stage_stats *stats,
                             bool *already, lp_error *err);

/* lp_updater_verify of release `id` with a "verified" event.  A release that
 * fails (and is not current) is deleted (lp_updater_remove) so the next
 * update fetches it again; the failure is recorded and queued as "failed".
 * Errors: those of lp_updater_verify. */
lp_status lp_device_verify(lp_device *d, uint64_t id, lp_error *err);

/* lp_updater_activate, then lp_device_report ("activated", with the
 * duration of the activation, or "rolled_back" when a post-update hook
 * failed); a failure is also recorded as last_error and a "failed" event.
 * Activating the current release finishes an interrupted activation.
 * Errors: those of lp_updater_activate. */
lp_status lp_device_apply(lp_device *d, uint64_t id, lp_error *err);

/* Which offered releases lp_device_update installs. */
typedef enum lp_apply_policy {
    LP_APPLY_ALL = 0,       /* every release offered */
    LP_APPLY_MANDATORY = 1, /* only releases marked mandatory; others are reported */
    LP_APPLY_NONE = 2,      /* none: check and report only */
} lp_apply_policy;

typedef struct lp_update_opts {
    lp_apply_policy policy;
    bool dry_run; /* download, stage and verify, but do not activate: the
                     release stays installed next to current, and a later
                     update activates it without downloading it again */
} lp_update_opts;

typedef enum lp_update_outcome {
    LP_UPDATE_NONE = 0,      /* no release for this device */
    LP_UPDATE_AVAILABLE = 1, /* one is offered; the policy leaves it alone */
    LP_UPDATE_DEFERRED = 2,  /* one is offered; the current release is still on probation */
    LP_UPDATE_STAGED = 3,    /* installed and verified, not activated (dry run) */
    LP_UPDATE_ACTIVATED = 4, /* it is current now, on probation */
    LP_UPDATE_STOPPED = 5,   /* a stop request ended the cycle between steps */
    LP_UPDATE_WAITING = 6,   /* one is offered, not mandatory, and the channel's
                                maintenance window is closed now */
} lp_update_outcome;

/* Whether `now` (Unix seconds) falls in the offer's maintenance window
 * (always when it has none). */
bool lp_update_offer_in_window(const lp_update_offer *o, int64_t now);

/* "none", "available", "deferred", "staged", "activated", "stopped",
 * "waiting". */
const char *lp_update_outcome_name(lp_update_outcome o);

typedef struct lp_update_result {
    lp_update_outcome outcome;
    uint64_t from;                            /* current release before the update */
    uint64_t version_code;                    /* the release offered; 0: none */
    char version[LP_UPDATER_MAX_VERSION + 1];
    bool mandatory;
    bool already_installed;                   /* staged before: nothing downloaded */
    lp_stage_stats stats;                     /* of the staging */
    int64_t check_ms, download_ms, verify_ms, activate_ms;
} lp_update_result;

/* One update cycle: reports switches, finishes an activation a crash
 * interrupted (post-update hooks still due), checks the probation window
 * (lp_device_check_probation), prunes releases beyond `keep` unless a newer
 * one waits to be activated, checks for a release, and — as opts->policy says, unless the current
 * release is on probation — downloads, stages, verifies and activates it
 * (pre-update hooks, atomic switch, post-update hooks).  opts NULL:
 * LP_APPLY_ALL.  *out (may be NULL) says what happened.  A stop request
 * ends the cycle between steps with LP_UPDATE_STOPPED and LP_OK.
 * Errors: those of the steps, prefixed with the step. */
lp_status lp_device_update(lp_device *d, const lp_update_opts *opts, lp_update_result *out,
                           lp_error *err);

/* lp_updater_mark_healthy, then lp_device_report ("healthy" when it ended
 * a probation). */
lp_status lp_device_mark_healthy(lp_device *d, uint64_t id, lp_error *err);

/* lp_updater_launch, lp_updater_check_probation and lp_updater_rollback,
 * then lp_device_report (so a rollback they made is queued as
 * "rolled_back").  Errors: those of the wrapped calls. */
lp_status lp_device_launch(lp_device *d, int64_t now, lp_probation_outcome *out, lp_error *err);
lp_status lp_device_check_probation(lp_device *d, int64_t now, lp_probation_outcome *out,
                                    lp_error *err);
lp_status lp_device_rollback(lp_device *d, uint64_t to_id, const char *reason, lp_error *err);
/* lp_updater_release_failed, then lp_device_report (the rollback is queued
 * as "rolled_back" with the reason).  Errors: those of the wrapped call. */
lp_status lp_device_release_failed(lp_device *d, uint64_t id, const char *reason, lp_error *err);

/* Queues the events of the switches state.json shows that were not
 * reported yet, and records them in <root>/.livepush/reported.json:
 * "activated" for a current release with a higher id than the one reported
 * (from_version_code: the previous release), "healthy" when the release
 * that was on probation is current and no longer on probation, and
 * "rolled_back" for each entry of the bad list not reported
 * (version_code: the release current now; from_version_code: the release
 * abandoned; reason and time from the bad list).  So every switch is
 * reported once whoever made it; a crash between queueing and recording
 * may report one twice, never lose it.  *queued (may be NULL) counts the
 * events.  The other calls run it; an app that switches through its own
 * lp_updater may call it too.  Errors: LP_ERR_MALFORMED (reported.json
 * damaged: the message names it), LP_ERR_IO, those of lp_events_add. */
lp_status lp_device_report(lp_device *d, size_t *queued, lp_error *err);

/* lp_events_send of the queue to the server, with the device id.  Errors:
 * those of lp_events_send and lp_net_open.  When the server turns out to be
 * a static mirror, this call returns LP_ERR_UNSUPPORTED saying so, and every
 * later call on this lp_device returns LP_OK at once, sending nothing (the
 * events stay queued, bounded): a caller reports it once. */
lp_status lp_device_send_events(lp_device *d, size_t *sent, lp_error *err);
/* Whether lp_device_send_events found the server to be a static mirror. */
bool lp_device_static_mirror(const lp_device *d);

#ifdef __cplusplus
}
#endif
#endif
