/*
 * livepush/tuf_repo.h — writing a TUF repository.
 *
 * A repository lives in one folder:
 *     <dir>/metadata/   N.root.json (every version), timestamp.json,
 *                       N.snapshot.json, N.targets.json, N.<role>.json,
 *                       and, for convenience, root.json (= latest root)
 *     <dir>/targets/    target files as <dir-of-name>/<sha256>.<basename>
 * i.e. consistent snapshots, exactly the layout a static web server can
 * serve to lp_tuf_client (metadata_url = .../metadata, targets_url =
 * .../targets).
 *
 * An lp_tuf_repo is an editable in-memory copy of the newest metadata.
 * Edits (keys, thresholds, targets, delegations, expiry) mark roles changed;
 * lp_tuf_repo_publish then bumps the version of every changed role, signs
 * each with the keys given that are authorised for it, re-signs snapshot and
 * timestamp, and writes the new files atomically (each file written to a
 * temporary name, fsync'd and renamed; timestamp.json last, so a reader sees
 * the old repository or the new one).  Root changes are signed by a
 * threshold of the previous root's keys and of the new root's keys, as the
 * client requires; rotating any role's keys is an edit of root.
 *
 * Files are written in python-tuf's compact form (sorted keys, no spaces,
 * ASCII) and signatures are sorted by key ID, so a repository built with the
 * same keys, contents, versions and dates as another TUF writer is
 * byte-identical to it (ed25519 signatures are deterministic).
 *
 * Role names: "root", "targets", "snapshot", "timestamp", or a delegated
 * role name (letters, digits, '-', '_', '.'; at most 64 bytes).
 *
 * Ownership: the repo is the caller's (lp_tuf_repo_free).  Keys passed in are
 * borrowed for the duration of the call; public values are copied.
 */
#ifndef LIVEPUSH_TUF_REPO_H
#define LIVEPUSH_TUF_REPO_H

#include "livepush/error.h"
#include "livepush/key.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lp_tuf_repo lp_tuf_repo;

/* Starts a new, empty repository to be written under `dir` (created if
 * missing; LP_ERR_EXISTS if it already holds metadata).  Every top-level
 * role starts with no keys, threshold 1, version 0 (the first publish makes
 * version 1) and expiry `now` + the defaults (root 365 days, targets 90,
 * snapshot 7, timestamp 1). */
lp_status lp_tuf_repo_create(lp_tuf_repo **out, const char *dir, lp_error *err);

/* Loads the newest metadata found under <dir>/metadata for editing.
 * LP_ERR_NOT_FOUND, LP_ERR_MALFORMED. */
lp_status lp_tuf_repo_open(lp_tuf_repo **out, const char *dir, lp_error *err);

/* Sets the clock used for default expiries (seconds since epoch; 0: system). */
void lp_tuf_repo_set_now(lp_tuf_repo *r, int64_t now);

/* Adds `key` (its public half) to `role`'s authorised keys.  For top-level
 * roles this edits root; for a delegated role it edits the delegating role.
 * Adding a key that is already there is a no-op.  LP_ERR_NOT_FOUND for an
 * unknown role. */
lp_status lp_tuf_repo_add_key(lp_tuf_repo *r, const char *role, const lp_key *key, lp_error *err);
/* Removes a key (by key ID) from a role.  LP_ERR_NOT_FOUND. */
lp_status lp_tuf_repo_remove_key(lp_tuf_repo *r, const char *role, const char *keyid,
                                 lp_error *err);
/* Sets a role's signature threshold (>= 1).  LP_ERR_INVALID_ARG. */
lp_status lp_tuf_repo_set_threshold(lp_tuf_repo *r, const char *role, uint32_t threshold,
                                    lp_error *err);
/* Sets a role's expiry (seconds since epoch). */
lp_status lp_tuf_repo_set_expires(lp_tuf_repo *r, const char *role, int64_t expires,
                                  lp_error *err);
/* Marks a role changed so the next publish bumps its version and re-signs it
 * even without another edit. */
lp_status lp_tuf_repo_touch(lp_tuf_repo *r, const char *role, lp_error *err);

/* Which hashes target entries list. */
typedef enum lp_tuf_hashes {
    LP_TUF_HASH_SHA256 = 1,
    LP_TUF_HASH_SHA256_SHA512 = 3,
} lp_tuf_hashes;

/* Adds (or replaces) target `name` in `role` ("targets" or a delegated
 * role) with the `len` bytes at `data`, written to the targets folder under
 * its consistent name.  custom_json is a JSON object text or NULL.  The name
 * is a relative path of '/'-separated parts, none empty, "." or "..".
 * LP_ERR_INVALID_ARG (bad name), LP_ERR_MALFORMED (bad custom JSON), LP_ERR_IO. */
lp_status lp_tuf_repo_add_target(lp_tuf_repo *r, const char *role, const char *name,
                                 const void *data, size_t len, const char *custom_json,
                                 lp_tuf_hashes hashes, lp_error *err);
/* Same, streaming the contents from a file (constant memory). */
lp_status lp_tuf_repo_add_target_file(lp_tuf_repo *r, const char *role, const char *name,
                                      const char *path, const char *custom_json,
                                      lp_tuf_hashes hashes, lp_error *err);
/* Removes a target entry (the file under targets/ stays for clients that
 * still hold older metadata).  LP_ERR_NOT_FOUND. */
lp_status lp_tuf_repo_remove_target(lp_tuf_repo *r, const char *role, const char *name,
                                    lp_error *err);

/* Delegates `paths` (glob patterns, see lp_tuf_path_match) from `delegator`
 * to a new role `name` with a threshold and terminating flag; the role
 * starts empty with no keys (add them with lp_tuf_repo_add_key).
 * LP_ERR_EXISTS if the delegator already delegates to that name. */
lp_status lp_tuf_repo_delegate(lp_tuf_repo *r, const char *delegator, const char *name,
                               const char *const *paths, size_t npaths, bool terminating,
                               uint32_t threshold, lp_error *err);

/* Publishes every change: bumps versions, signs each changed role with
 * every key in `keys` that the role authorises, re-signs snapshot and
 * timestamp, writes the files.  A role whose authorised keys among `keys`
 * fall short of its threshold makes the whole publish fail with
 * LP_ERR_BAD_SIGNATURE naming the role (nothing is written).  A new root
 * additionally needs a threshold of the previous root's keys. */
lp_status lp_tuf_repo_publish(lp_tuf_repo *r, const lp_key *const *keys, size_t nkeys,
                              lp_error *err);

/* Current version of a role (0 before its first publish). */
uint64_t lp_tuf_repo_version(const lp_tuf_repo *r, const char *role);

void lp_tuf_repo_free(lp_tuf_repo *r);

/* TUF delegation path pattern match: pattern and target are split at '/'
 * and must have the same number of parts; each part matches with shell
 * wildcards ('*', '?', '[...]'; no backslash escapes).  So '*' never matches
 * a '/', as the specification and python-tuf require.  Returns true when
 * `target` matches `pattern`. */
bool lp_tuf_path_match(const char *pattern, const char *target);

#ifdef __cplusplus
}
#endif
#endif
