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
 * Roles signed elsewhere: the root and targets keys need not be given to
 * publish.  lp_tuf_repo_prepare hands out the canonical bytes of a role's
 * next `signed` portion, the key holders sign them on their own machines
 * (lp_tuf_sign_signed in livepush/tuf_sign.h, or any TUF signer), and
 * lp_tuf_repo_add_signature attaches each signature after checking it; the
 * next publish counts the attached signatures towards the role's threshold
 * and signs only what the keys given can sign (typically snapshot and
 * timestamp with the server's online keys).  A repository can start from a
 * root signed elsewhere (lp_tuf_repo_create_from_root); such a root is
 * made with a repository in a scratch folder, prepare, sign, attach and
 * lp_tuf_repo_assemble.  See docs/repository.md, "Publisher-held keys".
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

/* Loads the newest metadata found under <dir>/metadata for editing.  A
 * folder with a root but no timestamp.json and no N.snapshot.json (as
 * lp_tuf_repo_create_from_root leaves it) opens with timestamp, snapshot
 * and targets at version 0, to be written by the next publish.
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
 * additionally needs a threshold of the previous root's keys.
 *
 * A prepared role (lp_tuf_repo_prepare) is published with the expiry it was
 * prepared with, and its attached signatures count towards its thresholds
 * next to the keys given (each key once, however it signed); a key ID that
 * has an attached signature is not signed again.  If a prepared role with
 * attached signatures would now come out differently from the bytes
 * prepared (an edit since, or a set expiry), the publish fails with
 * LP_ERR_STATE naming the role, before anything is written.  Published
 * roles lose their prepared state; a refused publish keeps it, so more
 * signatures can be attached and the publish retried. */
lp_status lp_tuf_repo_publish(lp_tuf_repo *r, const lp_key *const *keys, size_t nkeys,
                              lp_error *err);

/* Holding the timestamp back.  With `hold` true, the following publishes
 * write every file but timestamp.json and keep the newly signed timestamp
 * in the repository instead (a later publish replaces the one kept).  Until
 * lp_tuf_repo_write_timestamp writes it, a reader starting from
 * timestamp.json sees exactly the state before those publishes: the new
 * files are versioned names that nothing it reads points to.  A caller that
 * must make the new state visible only once something else succeeded (a
 * database commit) publishes with the timestamp held, commits, then writes
 * it; if it gives up instead it frees the repository, and the unreferenced
 * files are skipped over by the next publish (a role's new version is
 * never one whose versioned file already exists, so no version ever names
 * two different files).  Turning `hold` off does not write the kept
 * timestamp. */
void lp_tuf_repo_hold_timestamp(lp_tuf_repo *r, bool hold);

/* True when a publish made with the timestamp held has not had its
 * timestamp written yet. */
bool lp_tuf_repo_timestamp_pending(const lp_tuf_repo *r);

/* Writes the kept timestamp as timestamp.json (atomically) and forgets it;
 * LP_OK with nothing to do when none is kept.  LP_ERR_IO when the write
 * fails (the timestamp stays kept, so it can be retried). */
lp_status lp_tuf_repo_write_timestamp(lp_tuf_repo *r, lp_error *err);

/* ---- roles signed elsewhere ------------------------------------------ */

/* Prepares `role` for signing away from this repository: renders the
 * canonical JSON of the role's next `signed` portion -- exactly the bytes
 * the next lp_tuf_repo_publish will write and whose signatures clients
 * check: version + 1, expiry as publish would set it (fixed now, so the
 * bytes do not change with the clock), contents with every pending edit --
 * and keeps them in the repository for lp_tuf_repo_add_signature.
 *
 * Preparing a role without pending edits marks it changed, as
 * lp_tuf_repo_touch does: it gets a new version.  Any role can be prepared;
 * the useful ones are root, targets and delegated roles (snapshot and
 * timestamp depend on every other role and are re-signed on each publish
 * by the online keys).  Preparing again returns the same bytes and keeps
 * the signatures attached when nothing changed; otherwise the attached
 * signatures are dropped and the role is prepared afresh (with the expiry
 * it would get now).  To prepare the same bytes in a new lp_tuf_repo (say,
 * after a restart), repeat the edits and set the role's expiry explicitly.
 *
 * *canonical_signed is malloc'd (caller frees), NUL-terminated, *len bytes
 * without the NUL.  It is canonical JSON: UTF-8, control characters inside
 * strings unescaped; send it as bytes.
 * Errors: LP_ERR_INVALID_ARG, LP_ERR_NOT_FOUND (no such role), LP_ERR_STATE
 * (an earlier publish failed while writing), LP_ERR_MALFORMED (a role lists
 * a key with no key object), LP_ERR_NOMEM.  On error the repository is
 * unchanged. */
lp_status lp_tuf_repo_prepare(lp_tuf_repo *r, const char *role, char **canonical_signed,
                              size_t *len, lp_error *err);

/* Attaches a signature made elsewhere over the bytes lp_tuf_repo_prepare
 * gave for `role`.  `keyid` must be a key ID the role lists (for root also
 * one the previous root's root role lists: rotating root keys needs both
 * thresholds); `sig_hex` is the signature in hex (either case) as TUF
 * stores it (see livepush/key.h).  The signature is verified with that key
 * now, and again at publish.  A key ID holds one signature: attaching
 * another for the same key ID replaces it.  Signatures by one key under
 * two key IDs count once at publish.
 * Errors: LP_ERR_STATE (role not prepared), LP_ERR_NOT_FOUND (no such
 * role), LP_ERR_INVALID_ARG (key ID missing or longer than 64 characters,
 * no signature), LP_ERR_MALFORMED (signature not hex, or longer than 8192
 * hex digits), LP_ERR_BAD_SIGNATURE (key not authorised for the role, or
 * signature does not verify; the message names the key ID),
 * LP_ERR_UNSUPPORTED (key of an unsupported type), LP_ERR_TOO_LARGE (more
 * than 1024 signatures), LP_ERR_NOMEM.  On error nothing is attached. */
lp_status lp_tuf_repo_add_signature(lp_tuf_repo *r, const char *role, const char *keyid,
                                    const char *sig_hex, lp_error *err);

/* The metadata file of a prepared role as publish would write it, signed
 * only by the attached signatures, without writing anything: the role's
 * prepared `signed` portion and its signatures, in the repository's file
 * form.  This is how a root is made for lp_tuf_repo_create_from_root: in a
 * scratch repository (lp_tuf_repo_create), add the public keys of every
 * role and set thresholds, prepare "root", sign, attach, assemble.
 * *bytes is malloc'd (caller frees), *len its length.
 * Errors: LP_ERR_STATE (not prepared, or the role changed since it was
 * prepared), LP_ERR_BAD_SIGNATURE (attached signatures below a threshold;
 * the message names the role and the keys it needs), LP_ERR_NOT_FOUND,
 * LP_ERR_INVALID_ARG, LP_ERR_NOMEM. */
lp_status lp_tuf_repo_assemble(lp_tuf_repo *r, const char *role, char **bytes, size_t *len,
                               lp_error *err);

/* Starts a repository under `dir` from a first root made and signed
 * elsewhere (`len` bytes at `root`, a complete metadata file).  The root is
 * checked as a client checks it and as this writer needs it: at most 512
 * KiB, parsed strictly, version 1, consistent_snapshot true, every key ID a
 * role lists has a key object, no threshold above the number of keys
 * listed, signed by a threshold of its own root keys, not expired (system
 * clock).  Then `dir` (created if missing) gets metadata/1.root.json and
 * metadata/root.json, both byte for byte as received, and an empty
 * targets/ folder.  The repository has no timestamp, snapshot or targets
 * yet: those roles are at version 0, marked changed, and the first publish
 * writes them (with the targets role signed by its keys or by attached
 * signatures, snapshot and timestamp by the online keys the root lists).
 * lp_tuf_repo_open opens such a folder the same way.
 * Errors: LP_ERR_INVALID_ARG, LP_ERR_TOO_LARGE, LP_ERR_MALFORMED,
 * LP_ERR_UNSUPPORTED (spec major version, consistent_snapshot false),
 * LP_ERR_VERSION_MISMATCH (version not 1), LP_ERR_BAD_SIGNATURE (not signed
 * by a threshold of its root keys), LP_ERR_EXPIRED, LP_ERR_EXISTS (`dir`
 * already holds metadata), LP_ERR_IO, LP_ERR_NOMEM.  Checks come first:
 * nothing is written for a refused root. */
lp_status lp_tuf_repo_create_from_root(lp_tuf_repo **out, const char *dir, const void *root,
                                       size_t len, lp_error *err);

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
