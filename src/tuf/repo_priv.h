/*
 * repo_priv.h — the TUF repository writer's in-memory model (internal).
 *
 * The writer is split by concern: repo.c (the model and every edit),
 * repo_names.c (role and target name rules, string lists), repo_targets.c
 * (target entries and their content-addressed files), repo_load.c (reading
 * a repository folder back), repo_publish.c (versions, `signed` objects,
 * writing), repo_sign.c (who signs, thresholds, the file bytes) and
 * repo_offline.c (roles signed elsewhere: prepared `signed` bytes, attached
 * signatures, repositories created from a root made elsewhere).  They share
 * the model below.
 *
 * Model: one array of roles.  Slots 0..3 are the top-level roles in
 * lp_md_type order (root, timestamp, snapshot, targets); delegated roles
 * follow, each naming the index of the role that delegates to it, and a
 * delegator's roles appear in the array in its priority order.  Role names
 * are unique across the repository (they name the files N.<role>.json).
 *
 * Key objects are kept per scope, exactly as metadata scopes them: the root
 * scope (keys of the four top-level roles) and, for every targets role that
 * delegates, the scope of its `delegations.keys`.  A scope only grows; the
 * metadata written lists just the keys that some role in the scope uses.
 */
#ifndef LP_TUF_REPO_PRIV_H
#define LP_TUF_REPO_PRIV_H

#include "livepush/tuf_repo.h"
#include "tuf/metadata.h"

#include <jansson.h>

#define LP_REPO_SPEC_VERSION "1.0.31"
#define LP_REPO_ROLE_NAME_MAX 64
#define LP_REPO_TARGET_NAME_MAX 1024
/* "<64 hex>.<basename>" must fit a file name of 255 bytes. */
#define LP_REPO_TARGET_PART_MAX 190
#define LP_REPO_PATTERN_MAX 1024
/* Bounds on what is read back from a repository folder. */
#define LP_REPO_METADATA_MAX_BYTES (64u * 1024 * 1024)
#define LP_REPO_MAX_ROLES 100000
/* Bounds on signatures attached from outside: hex digits of one signature
 * (an rsa-3072 signature is 768) and signatures attached to one role. */
#define LP_REPO_SIG_HEX_MAX 8192
#define LP_REPO_MAX_ATTACHED 1024

/* A signature made elsewhere over a prepared role, checked when attached. */
typedef struct repo_sig {
    char *keyid;
    char *hex;     /* lower-case hex of sig */
    uint8_t *sig;
    size_t len;
} repo_sig;

typedef struct repo_role {
    char *name;
    lp_md_type type;  /* delegated roles are LP_MD_TARGETS */
    int delegator;    /* index of the delegating role, -1 for top-level roles */

    /* Who may sign it (listed in root or in the delegator's delegations). */
    char **keyids;    /* sorted */
    size_t nkeyids;
    uint32_t threshold;
    /* Delegated roles: the delegation entry. */
    bool terminating;
    char **paths;     /* NULL when the delegation uses hash prefixes */
    size_t npaths;
    char **prefixes;
    size_t nprefixes;

    /* Its own metadata. */
    uint64_t version;     /* 0 before the first publish */
    int64_t expires;      /* 0: not set yet (now + default at publish) */
    bool expires_set;     /* set explicitly since the last publish */
    bool changed;         /* needs a new version at the next publish */
    json_t *base;         /* `signed` as loaded (unknown fields survive), or NULL */
    json_t *targets;      /* targets roles: name -> entry */
    json_t *dkeys;        /* targets roles: key scope of its delegations */
    bool had_delegations; /* loaded with a `delegations` object */

    /* Offline signing (repo_offline.c): the canonical `signed` bytes that
     * lp_tuf_repo_prepare handed out for the next version, the version and
     * expiry they carry, and the signatures attached over them.  Publish
     * uses the prepared expiry (unless one was set since), so the role
     * comes out byte-identical to what was signed as long as nothing else
     * about it changed. */
    bool prepared;
    uint64_t prep_version;
    int64_t prep_expires;
    char *prep_canon;
    size_t prep_len;
    repo_sig *att;
    size_t natt;
} repo_role;

struct lp_tuf_repo {
    char *dir, *metadir, *targetsdir;
    int64_t now;
    repo_role *roles;
    size_t nroles, cap;
    json_t *root_keys; /* key scope of root */
    /* The root role of the newest published root: its threshold of keys
     * must also sign the next root version. */
    bool has_prev_root;
    char **prev_keyids;
    size_t nprev;
    uint32_t prev_threshold;
    json_t *orphan_meta; /* snapshot entries of roles outside the tree */
    bool broken;         /* a publish failed half-way through writing */
    bool hold_ts;        /* lp_tuf_repo_hold_timestamp */
    char *held_ts;       /* the signed timestamp a held publish kept, or NULL */
    size_t held_ts_len;
};

/* A repository model for `dir` with the four top-level roles and nothing
 * else (no keys, version 0, unchanged).  LP_ERR_INVALID_ARG, LP_ERR_NOMEM. */
lp_status lp_repo_alloc(lp_tuf_repo **out, const char *dir, lp_error *err);

/* Loads the newest metadata under r->metadir into a model fresh from
 * lp_repo_alloc whose root_keys is NULL (repo_load.c). */
lp_status lp_repo_load(lp_tuf_repo *r, lp_error *err);
/* True if the metadata folder already holds a root or a timestamp. */
bool lp_repo_has_metadata(const char *metadir);
/* Drops a role's prepared bytes and attached signatures. */
void lp_repo_unprepare(repo_role *ro);

/* Current time for expiry defaults. */
int64_t lp_repo_now(const lp_tuf_repo *r);
/* Default lifetime in seconds of a role of type t. */
int64_t lp_repo_default_lifetime(lp_md_type t);

/* Index of a role by name, -1 if none. */
int lp_repo_find(const lp_tuf_repo *r, const char *name);
/* Appends a role (name copied); returns its index or -1 on OOM. */
int lp_repo_add_role(lp_tuf_repo *r, const char *name, lp_md_type type, int delegator);
/* Key scope that holds the key objects for role i's keys. */
json_t *lp_repo_scope(const lp_tuf_repo *r, int i);
/* Marks role i changed (snapshot and timestamp follow at publish). */
void lp_repo_mark_changed(lp_tuf_repo *r, int i);

/* Validity of a delegated role name and of a target name. */
bool lp_repo_role_name_ok(const char *name);
lp_status lp_repo_check_target_name(const char *name, lp_error *err);

/* Sorted insert of a copy of s into a unique string list; false on OOM. */
bool lp_repo_strlist_add(char ***list, size_t *n, const char *s);
bool lp_repo_strlist_has(char *const *list, size_t n, const char *s);
void lp_repo_strlist_free(char **list, size_t n);
/* Copies a list; false on OOM. */
bool lp_repo_strlist_copy(char ***out, size_t *nout, char *const *list, size_t n);

/* A key given to publish that can sign, with its public value. */
typedef struct lp_repo_signer {
    const lp_key *key;
    lp_key_type type;
    char *pub;
} lp_repo_signer;

/* Signs role i's `signed_obj` (the role's next version, `version`) with
 * every signer the role authorises -- for root also those the previous
 * root's root role authorises -- and renders the file bytes (*bytes
 * malloc'd).  With `attached`, the role's attached signatures are used too
 * (each verified again over the canonical bytes of signed_obj, which the
 * caller has checked are the prepared ones); a key ID with an attached
 * signature is not signed again.  LP_ERR_BAD_SIGNATURE, naming the role,
 * when a threshold is not met. */
lp_status lp_repo_sign_role(const lp_tuf_repo *r, int i, json_t *signed_obj, uint64_t version,
                            const lp_repo_signer *signers, size_t nsigners, bool attached,
                            char **bytes, size_t *len, lp_error *err);

/* The `signed` object role i gets at the next publish, with its version and
 * expiry, built exactly as lp_tuf_repo_publish builds it (a prepared role
 * keeps its prepared expiry unless one was set since).  *signed_obj is the
 * caller's.  LP_ERR_STATE if the next publish would not write role i. */
lp_status lp_repo_next_signed(lp_tuf_repo *r, int i, json_t **signed_obj, uint64_t *version,
                              int64_t *expires, lp_error *err);

/* A description of the repository for display: {"dir", "roles": [{name,
 * type, delegator, version, expires, keyids, threshold, terminating, paths,
 * targets: {name: {length, hashes, custom?}}}]}.  Caller owns *out. */
lp_status lp_tuf_repo_describe(const lp_tuf_repo *r, json_t **out, lp_error *err);

#endif
