/*
 * trusted.h — the set of metadata a TUF client currently trusts (internal).
 *
 * This is the decision core of the client workflow, free of any I/O: each
 * update_* call takes the bytes of a candidate file, applies every check the
 * specification lists for that step, and only when they all pass replaces
 * the trusted copy.  The workflow (client.c) decides where bytes come from
 * (cache folder or network) and persists what was accepted.
 *
 * Order matters and is enforced: root (any number of times), then
 * timestamp, snapshot, targets, then delegated roles.  Updating a role drops
 * nothing; the caller starts a new set for a new refresh.
 *
 * Expiry: like python-tuf, an expired timestamp or snapshot is still stored
 * (so that it protects against rollback) but the update reports
 * LP_ERR_EXPIRED; later steps refuse to run on expired data.
 */
#ifndef LP_TUF_TRUSTED_H
#define LP_TUF_TRUSTED_H

#include "tuf/metadata.h"

typedef struct lp_trusted_role {
    char *name;
    lp_md *md;
} lp_trusted_role;

typedef struct lp_trusted {
    int64_t now;
    lp_md *root, *timestamp, *snapshot, *targets;
    lp_trusted_role *delegated;
    size_t ndelegated, cap;
} lp_trusted;

/* Starts a set from trusted root bytes (verified with its own keys; expiry
 * is not checked here: an old root is fine as a starting point). */
lp_status lp_trusted_init(lp_trusted *t, const void *root, size_t len, int64_t now,
                          lp_error *err);

/* Step 1: accepts root version N+1 signed by a threshold of the trusted
 * root's keys and of its own.  LP_ERR_BAD_SIGNATURE, LP_ERR_VERSION_MISMATCH
 * (version not N+1), LP_ERR_MALFORMED. */
lp_status lp_trusted_update_root(lp_trusted *t, const void *data, size_t len, lp_error *err);

/* After the root chain: LP_ERR_EXPIRED if the final root has expired. */
lp_status lp_trusted_check_root(const lp_trusted *t, lp_error *err);

/* Step 2.  LP_ERR_BAD_SIGNATURE, LP_ERR_ROLLBACK (timestamp or listed
 * snapshot version lower than trusted), LP_ERR_EXPIRED.  An equal version
 * keeps the trusted copy (LP_OK, or LP_ERR_EXPIRED if it has expired). */
lp_status lp_trusted_update_timestamp(lp_trusted *t, const void *data, size_t len,
                                      lp_error *err);

/* Step 3.  `from_cache` skips the length/hash check against the timestamp
 * (a cached copy was checked when it was received).  LP_ERR_LENGTH_MISMATCH,
 * LP_ERR_HASH_MISMATCH, LP_ERR_BAD_SIGNATURE, LP_ERR_ROLLBACK (a targets role
 * listed at a lower version or dropped), LP_ERR_EXPIRED,
 * LP_ERR_VERSION_MISMATCH (not the version the timestamp lists). */
lp_status lp_trusted_update_snapshot(lp_trusted *t, const void *data, size_t len, bool from_cache,
                                     lp_error *err);

/* Step 4: top-level targets (delegator NULL) or a delegated role of an
 * already trusted delegator.  LP_ERR_NOT_FOUND (snapshot does not list it),
 * LP_ERR_LENGTH_MISMATCH, LP_ERR_HASH_MISMATCH, LP_ERR_BAD_SIGNATURE,
 * LP_ERR_VERSION_MISMATCH, LP_ERR_EXPIRED. */
lp_status lp_trusted_update_targets(lp_trusted *t, const char *role, const char *delegator,
                                    const void *data, size_t len, lp_error *err);

/* The trusted metadata of a targets role ("targets" or delegated), or NULL. */
lp_md *lp_trusted_get_targets(const lp_trusted *t, const char *role);

void lp_trusted_free(lp_trusted *t);

#endif
