/*
 * metadata.h — TUF metadata documents, parsed and checked (internal).
 *
 * lp_md_parse turns the bytes of one metadata file into an lp_md: the JSON
 * document (kept whole, so unknown fields survive), the canonical bytes of
 * its `signed` part (what signatures cover), and typed views of the fields
 * the client uses.  Parsing is strict: every field the specification defines
 * is type- and range-checked and a bad one is refused with LP_ERR_MALFORMED
 * naming it ("timestamp.json: signed.meta.snapshot.json.version: expected an
 * integer").  Unknown fields are allowed anywhere, as the specification asks.
 *
 * lp_md_verify counts the signatures over the canonical bytes that were made
 * by distinct keys the delegating role authorises, and fails with
 * LP_ERR_BAD_SIGNATURE below the threshold.  A key counts once however many
 * signatures or key IDs it appears under.
 */
#ifndef LP_TUF_METADATA_H
#define LP_TUF_METADATA_H

#include "livepush/hash.h"
#include "livepush/key.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum lp_md_type {
    LP_MD_ROOT = 0,
    LP_MD_TIMESTAMP,
    LP_MD_SNAPSHOT,
    LP_MD_TARGETS,
} lp_md_type;

const char *lp_md_type_name(lp_md_type t);

/* Hashes listed for a file: the supported ones (sha256, sha512). */
typedef struct lp_md_hashes {
    bool has[2];                        /* indexed by lp_hash_alg */
    uint8_t digest[2][LP_HASH_MAX_LEN]; /* indexed by lp_hash_alg */
} lp_md_hashes;

/* A file that timestamp or snapshot metadata describes. */
typedef struct lp_md_metafile {
    char *name;        /* "snapshot.json", "targets.json", "<role>.json" */
    uint64_t version;
    bool has_length;
    uint64_t length;
    bool has_hashes;
    lp_md_hashes hashes;
} lp_md_metafile;

typedef struct lp_md_key {
    char keyid[65];
    lp_key *key;
    char *public_value; /* for counting a key once across key IDs */
} lp_md_key;

/* A role: the top-level roles in root, or a delegated role in targets. */
typedef struct lp_md_role {
    char *name;
    char **keyids;
    size_t nkeyids;
    uint64_t threshold;
    /* delegated roles only: */
    bool terminating;
    char **paths;         /* NULL when the role uses hash prefixes */
    size_t npaths;
    char **hash_prefixes; /* NULL when the role uses paths */
    size_t nprefixes;
} lp_md_role;

typedef struct lp_md {
    lp_md_type type;
    json_t *doc;           /* the whole document */
    uint8_t *canonical;    /* canonical JSON of doc.signed */
    size_t canonical_len;
    uint64_t version;
    int64_t expires;

    /* Signatures: key ID and raw signature bytes. */
    struct lp_md_sig {
        char *keyid;
        uint8_t *sig;
        size_t len;
    } *sigs;
    size_t nsigs;

    /* root: its keys; targets: the delegation keys. */
    lp_md_key *keys;
    size_t nkeys;

    /* root only: roles indexed by lp_md_type, and consistent_snapshot. */
    lp_md_role roles[4];
    bool consistent_snapshot;

    /* timestamp: meta[0] is snapshot.json; snapshot: one per targets role. */
    lp_md_metafile *meta;
    size_t nmeta;

    /* targets: the `targets` object (borrowed from doc, every entry checked)
     * and the delegated roles in priority order. */
    json_t *targets;
    lp_md_role *delegations;
    size_t ndelegations;
} lp_md;

/* Parses one metadata file that must be of type `type`; `where` names it in
 * messages (usually the file name).  LP_ERR_MALFORMED, LP_ERR_TOO_LARGE,
 * LP_ERR_UNSUPPORTED (unknown key type in a role's keys is allowed and
 * skipped, per the specification; an unsupported spec major version is not). */
lp_status lp_md_parse(const void *data, size_t len, lp_md_type type, const char *where,
                      lp_md **out, lp_error *err);

/* Verifies that `md` carries valid signatures by at least `role->threshold`
 * distinct keys of `role`, keys looked up in `keys`.  `what` names the
 * metadata in messages.  LP_ERR_BAD_SIGNATURE. */
lp_status lp_md_verify(const lp_md_key *keys, size_t nkeys, const lp_md_role *role,
                       const lp_md *md, const char *what, lp_error *err);

/* Looks up a metafile entry by name, NULL if absent. */
const lp_md_metafile *lp_md_find_meta(const lp_md *md, const char *name);

/* Checks `len` bytes at data against a metafile's length and hashes (each
 * only if listed).  LP_ERR_LENGTH_MISMATCH, LP_ERR_HASH_MISMATCH,
 * LP_ERR_UNSUPPORTED (hashes listed, none of a supported algorithm). */
lp_status lp_md_check_meta(const lp_md_metafile *mf, const void *data, size_t len,
                           lp_error *err);

/* Parses a `hashes` object (non-empty, every value a string): hex digests
 * of the supported algorithms are decoded and length-checked; other
 * algorithm names are ignored here (checking content against an entry with
 * no supported hash fails with LP_ERR_UNSUPPORTED).  LP_ERR_MALFORMED. */
lp_status lp_md_parse_hashes(const json_t *obj, const char *where, lp_md_hashes *out,
                             lp_error *err);

/* Whether two roles have the same key IDs and threshold. */
bool lp_md_role_same_keys(const lp_md_role *a, const lp_md_role *b);

/* True if a delegated role is responsible for target path `name`. */
bool lp_md_role_matches(const lp_md_role *role, const char *name);

void lp_md_free(lp_md *md);

#endif
