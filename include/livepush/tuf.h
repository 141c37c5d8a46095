/*
 * livepush/tuf.h — The Update Framework: the client that decides what to trust.
 *
 * This is the client side of TUF specification 1.0 ("Detailed client
 * workflow").  A client keeps one folder of trusted metadata (root.json,
 * timestamp.json, snapshot.json, targets.json and delegated <role>.json, each
 * the exact bytes once received and verified) and refreshes it from a
 * repository:
 *
 *   1. root: fetch N+1.root.json, N+2… each verified by a threshold of the
 *      trusted root's keys AND of its own keys, version exactly N+1; then check
 *      the final root has not expired; on a rotated timestamp/snapshot key the
 *      cached timestamp/snapshot are dropped (fast-forward recovery).
 *   2. timestamp: threshold, no rollback of its own version or of the snapshot
 *      version it lists, expiry.
 *   3. snapshot: length/hashes if the timestamp lists them, threshold, version
 *      equal to the timestamp's, no targets role listed at a lower version nor
 *      dropped, expiry.
 *   4. targets (and delegated roles, on demand): length/hashes if listed,
 *      threshold, version equal to the snapshot's, expiry.
 * Target lookup walks delegations depth-first in pre-order, honouring
 * terminating delegations and a bound on roles visited; downloads are bounded
 * by the signed length and verified against every listed hash before the file
 * is moved into place.
 *
 * Ownership: lp_tuf_client and lp_tuf_target are owned by the caller and
 * freed with their _free functions.  A client is not thread-safe.
 */
#ifndef LIVEPUSH_TUF_H
#define LIVEPUSH_TUF_H

#include "livepush/error.h"
#include "livepush/fetch.h"
#include "livepush/key.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The step of the client workflow where a refresh failed. */
typedef enum lp_tuf_step {
    LP_TUF_STEP_NONE = 0,
    LP_TUF_STEP_ROOT,
    LP_TUF_STEP_TIMESTAMP,
    LP_TUF_STEP_SNAPSHOT,
    LP_TUF_STEP_TARGETS,
} lp_tuf_step;

/* "root", "timestamp", "snapshot", "targets", or "none". */
const char *lp_tuf_step_name(lp_tuf_step step);

/* Size bounds on what a client will download.  Zero fields take defaults. */
typedef struct lp_tuf_limits {
    uint64_t root_max_bytes;      /* default 512 KiB */
    uint64_t timestamp_max_bytes; /* default 16 KiB */
    uint64_t snapshot_max_bytes;  /* default 2 MiB (used when no length is signed) */
    uint64_t targets_max_bytes;   /* default 16 MiB (used when no length is signed) */
    uint32_t max_root_rotations;  /* default 32 */
    uint32_t max_delegations;     /* roles visited per lookup, default 32 */
} lp_tuf_limits;

typedef struct lp_tuf_client_config {
    const char *metadata_dir; /* trusted metadata folder (must hold root.json) */
    const char *metadata_url; /* base URL of the repository's metadata */
    const char *targets_url;  /* base URL of target files (may be NULL if unused) */
    lp_fetcher *fetcher;      /* borrowed; NULL: the client makes an HTTP fetcher */
    int64_t now;              /* seconds since epoch for expiry; 0: system clock */
    lp_tuf_limits limits;
} lp_tuf_client_config;

typedef struct lp_tuf_client lp_tuf_client;

/* Installs a trusted root: checks that `root_path` is a well-formed root
 * signed by a threshold of its own root keys, then writes it as
 * <metadata_dir>/root.json (creating the folder).  No network.  Existing
 * metadata in the folder is left alone unless it is older than this root.
 * LP_ERR_MALFORMED, LP_ERR_BAD_SIGNATURE, LP_ERR_IO. */
lp_status lp_tuf_init_trusted_root(const char *metadata_dir, const char *root_path,
                                   lp_error *err);

/* Opens a client: loads root.json (required) and any cached timestamp,
 * snapshot and targets, keeping those that still verify (as the spec says,
 * a cached file that fails to verify is ignored, not fatal).  No network.
 * The config's strings are copied.  LP_ERR_NOT_FOUND without root.json. */
lp_status lp_tuf_client_open(lp_tuf_client **out, const lp_tuf_client_config *cfg,
                             lp_error *err);

/* Runs steps 1-4 above.  On failure *failed_at (if non-NULL) names the step
 * and the error says why: LP_ERR_BAD_SIGNATURE (threshold not met),
 * LP_ERR_ROLLBACK, LP_ERR_EXPIRED, LP_ERR_VERSION_MISMATCH,
 * LP_ERR_LENGTH_MISMATCH, LP_ERR_HASH_MISMATCH, LP_ERR_MALFORMED,
 * LP_ERR_TOO_LARGE, LP_ERR_NETWORK, LP_ERR_IO.  Metadata verified before the
 * failing step stays trusted and persisted. */
lp_status lp_tuf_client_refresh(lp_tuf_client *c, lp_tuf_step *failed_at, lp_error *err);

/* Versions of the trusted roles (0 when none is trusted). */
typedef struct lp_tuf_versions {
    uint64_t root, timestamp, snapshot, targets;
} lp_tuf_versions;
void lp_tuf_client_versions(const lp_tuf_client *c, lp_tuf_versions *out);

/* A target as signed: name, length, hashes, custom JSON and the role whose
 * entry won the search. */
typedef struct lp_tuf_target lp_tuf_target;
const char *lp_tuf_target_name(const lp_tuf_target *t);
uint64_t lp_tuf_target_length(const lp_tuf_target *t);
/* Lower-case hex sha256 of the target, or NULL if the entry lists none. */
const char *lp_tuf_target_sha256(const lp_tuf_target *t);
/* The entry's `custom` object as canonical JSON text, or NULL if absent. */
const char *lp_tuf_target_custom_json(const lp_tuf_target *t);
const char *lp_tuf_target_role(const lp_tuf_target *t);
void lp_tuf_target_free(lp_tuf_target *t);

/* Looks a target up after a successful refresh, loading delegated roles as
 * needed (each verified like targets).  LP_ERR_NOT_FOUND when no role on the
 * search path lists it (message says why), LP_ERR_STATE before a refresh,
 * or any refresh error from loading a delegated role. */
lp_status lp_tuf_client_find_target(lp_tuf_client *c, const char *name, lp_tuf_target **out,
                                    lp_error *err);

/* The targets one role lists, sorted by name (byte order). */
typedef struct lp_tuf_target_list {
    lp_tuf_target **items; /* owned; each also freed by lp_tuf_target_list_free */
    size_t count;
} lp_tuf_target_list;

/* Default bound on the entries lp_tuf_client_list_targets returns. */
#define LP_TUF_LIST_DEFAULT_MAX 100000

/* Lists, after a successful refresh, the targets of the top-level targets
 * role whose names begin with `prefix` (NULL or "": every target), each
 * with its name, signed length, hashes and custom JSON exactly as
 * lp_tuf_client_find_target would give them (role "targets").  Delegated
 * roles are not consulted: the listing is what the top-level role itself
 * signed.  The targets metadata is already bounded in size
 * (limits.targets_max_bytes or the length snapshot lists); `max` (0:
 * LP_TUF_LIST_DEFAULT_MAX) also bounds the number of entries returned.
 * *out is initialised here and owned by the caller (lp_tuf_target_list_free),
 * empty on failure.  LP_ERR_STATE before a refresh, LP_ERR_TOO_LARGE when
 * more than `max` targets match, LP_ERR_NOMEM. */
lp_status lp_tuf_client_list_targets(lp_tuf_client *c, const char *prefix, size_t max,
                                     lp_tuf_target_list *out, lp_error *err);

/* Frees the entries and the array; the list is left empty.  NULL is fine. */
void lp_tuf_target_list_free(lp_tuf_target_list *l);

/* Downloads a target to `dest_path`: at most its signed length is read,
 * every listed hash is checked, and only then is the file renamed into place
 * (atomically).  With consistent snapshots the URL is
 * <targets_url>/<dir>/<sha256>.<basename>.  LP_ERR_LENGTH_MISMATCH,
 * LP_ERR_HASH_MISMATCH, LP_ERR_NETWORK, LP_ERR_IO. */
lp_status lp_tuf_client_download_target(lp_tuf_client *c, const lp_tuf_target *t,
                                        const char *dest_path, lp_error *err);

void lp_tuf_client_free(lp_tuf_client *c);

/* Key ID of a TUF key object given as JSON text: the lower-case hex sha256 of
 * its canonical JSON (all fields included).  out must hold 65 bytes. */
lp_status lp_tuf_keyid_of_json(const char *key_json, size_t len, char out[65], lp_error *err);

/* The TUF key object (JSON text, keys sorted) of the public half of `key`,
 * and its key ID.  *json is malloc'd, caller frees; keyid_out may be NULL. */
lp_status lp_tuf_key_to_json(const lp_key *key, char **json, char keyid_out[65], lp_error *err);

#ifdef __cplusplus
}
#endif
#endif
