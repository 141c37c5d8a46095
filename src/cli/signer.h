/*
 * signer.h — the publisher's side of apps whose publisher signs (internal
 * to the livepush command; docs/signing.md): used by `upload`, `rollback`,
 * `sign`, `approve` and `app create`.
 *
 * The server prepares a release and hands out the canonical bytes of the
 * app's next targets metadata.  Before any key signs them, the command
 * checks them against what devices trust now and against what was asked:
 *
 *   1. What devices trust now (lp_signer_published_fetch): a TUF client in a
 *      temporary folder, initialised from the app's root file the publisher
 *      kept (--root FILE; without it the server's 1.root.json is trusted as
 *      it comes, and a warning says the root was not pinned), refreshes from
 *      the server.  Its verified targets metadata (none before the first
 *      release) and the targets role of its root (release key IDs and
 *      threshold) are kept; the folder is removed.
 *   2. The prepared bytes (lp_signer_check): canonical JSON of a targets
 *      `signed` object whose version is one more than the trusted one, whose
 *      expiry lies between one hour and 366 days ahead, whose other fields
 *      equal the trusted targets', and whose targets are exactly the trusted
 *      ones plus one new entry, releases/<code>.json for the release the
 *      server says it prepared: its custom "version" and "version_code" are
 *      the release's, the code is above every listed release's; its sha256
 *      and length are the local tree manifest's when the bundle is at hand;
 *      a rollback's entry restores exactly the content of the release it
 *      names (listed now); and its custom fields equal those asked for when
 *      the command knows them.
 *   3. Signing (lp_signer_finish): each --sign-key must be a release key of
 *      the trusted root; each signs the bytes as received
 *      (lp_tuf_sign_signed) and the signatures go in one POST.  The server
 *      publishes once the targets threshold is met (exit 0), or keeps them
 *      and says how many more are needed (exit LP_EXIT_PENDING, with the
 *      command another key holder runs).
 *
 * Approvals.  Each signature by a distinct release key is one approval of
 * the release, and the targets role's threshold (k of the n release keys)
 * is the quorum: no device installs the release before k have signed,
 * because the server writes nothing devices read before then.  `livepush
 * approve` is `livepush sign` worded so (lp_signer_finish_as with
 * LP_SIGNER_APPROVALS): the same checks, the same request, the same exit
 * codes; it reports how many approvals are present and missing from the
 * release's "approvals" object in the server's answer.
 *
 * Nothing here is global; every function says what it allocates.
 */
#ifndef LP_CLI_SIGNER_H
#define LP_CLI_SIGNER_H

#include "cli/api_client.h"
#include "livepush/bundle.h"
#include "livepush/error.h"
#include "livepush/key.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Most --sign-key (and --root-key, --release-key) options of one command. */
#define LP_SIGNER_KEYS_MAX 32

/* Loads a key file: a PKCS#8 PEM private key (as `livepush keygen` writes
 * it) or a public TUF key object (FILE.pub.json).  LP_ERR_NOT_FOUND,
 * LP_ERR_IO, LP_ERR_MALFORMED, LP_ERR_UNSUPPORTED; the message names the
 * file.  The caller owns *out. */
lp_status lp_cli_key_load(const char *path, lp_key **out, lp_error *err);

/* Keys given on the command line, with their TUF key IDs. */
typedef struct lp_signer_keys {
    lp_key *k[LP_SIGNER_KEYS_MAX];
    char id[LP_SIGNER_KEYS_MAX][65];
    const char *path[LP_SIGNER_KEYS_MAX]; /* borrowed from argv */
    size_t n;
} lp_signer_keys;

/* Loads `n` key files; with need_private each must hold a private key
 * (LP_ERR_INVALID_ARG naming the file otherwise).  On failure *ks is
 * emptied. */
lp_status lp_signer_keys_load(lp_signer_keys *ks, const char *const *paths, size_t n,
                              bool need_private, lp_error *err);
void lp_signer_keys_free(lp_signer_keys *ks);

/* What devices trust now (step 1 above). */
typedef struct lp_signer_published {
    json_t *targets;        /* the trusted targets `signed` object; NULL before the first release */
    uint64_t targets_version; /* 0 before the first release */
    json_t *release_keyids; /* the trusted root's targets key IDs (array of strings) */
    unsigned threshold;     /* the targets role's threshold */
    bool pinned;            /* the root came from --root */
} lp_signer_published;

/* Step 1 for `app` on the client's server; root_file NULL: the server's
 * 1.root.json (a warning on stderr, naming `cmd`).  Errors: the TUF
 * client's (a root that does not verify, metadata that does not),
 * LP_ERR_IO.  The caller frees *out (lp_signer_published_free). */
lp_status lp_signer_published_fetch(const lp_client *c, const char *app, const char *root_file,
                                    const char *cmd, lp_signer_published *out, lp_error *err);
void lp_signer_published_free(lp_signer_published *p);

/* LP_ERR_INVALID_ARG naming the first key of `ks` that the trusted root
 * does not list as a release key. */
lp_status lp_signer_check_keys(const lp_signer_published *p, const lp_signer_keys *ks,
                               const char *app, lp_error *err);

/* What a command given --sign-key does before it changes anything: GET
 * the app, which must be one whose publisher signs (otherwise a message
 * and LP_EXIT_USAGE), then lp_signer_published_fetch and
 * lp_signer_check_keys.  -1 to go on (*pub filled; the caller frees it),
 * else the exit code, the reason printed. */
int lp_signer_setup(lp_client *c, const char *cmd, const char *app, const char *root_file,
                    const lp_signer_keys *ks, lp_signer_published *pub);

/* What the command knows the new entry must be (step 2 above). */
typedef struct lp_signer_expect {
    const char *manifest_sha256; /* the local tree manifest's, or NULL */
    uint64_t manifest_len;
    const json_t *custom;        /* the whole custom object expected, or NULL; its
                                    version_code is filled from the release */
    int64_t version_code;        /* asked for (--version-code), or 0 */
    /* A rollback to this version (or NULL): the entry must be the newest
     * published release with that version string, with its content and
     * release fields, its own version code, rollback_of the release it
     * restores, and `rollback_channels` (an array; NULL: the target's). */
    const char *rollback_target;
    const json_t *rollback_channels;
} lp_signer_expect;

/* The ingest options matching what `livepush upload` sends for `bundle`:
 * a folder is ingested as it is (the server gets it packed into a tar,
 * which gives the same manifest); a file with `kind` ("auto", "archive",
 * "file"; NULL: auto) and the entry name `file_name` (NULL: the file's own
 * name).  Default limits. */
void lp_signer_ingest_opts(const char *bundle, const char *kind, const char *file_name,
                           lp_ingest_opts *io);

/* The tree manifest of a bundle as the server will compute it: ingested
 * here into a temporary blob store (removed after) with the same options
 * the upload sends; *sha256 and *len are the canonical manifest JSON's. */
lp_status lp_signer_local_manifest(const char *bundle, const lp_ingest_opts *io,
                                   char sha256[65], uint64_t *len, lp_error *err);

/* How a signing command ends (step 3): the prepared answer `prepared`
 * ({"release":..,"sign":{"signed":..,"signatures":[..]}}, from POST
 * .../releases, .../rollback or GET .../pending) is checked against `pub`
 * and `expect`, signed with every key of `ks` (none: nothing is checked or
 * sent, and the release is reported as waiting), and the signatures sent.
 * Prints the outcome (or with `json` the server's last answer) and
 * returns the exit code: 0 published, LP_EXIT_PENDING waiting for more
 * signatures, 1 refused to sign (the reason on stderr; the release stays
 * pending), else lp_client_exit_code. */
int lp_signer_finish(lp_client *c, const char *cmd, const char *app, const json_t *prepared,
                     const lp_signer_published *pub, const lp_signer_expect *expect,
                     const lp_signer_keys *ks, bool json);

/* How a signing command speaks of what it sends. */
typedef enum lp_signer_words {
    LP_SIGNER_SIGNATURES = 0, /* upload, rollback, sign: "published ...", "waiting for N
                                 more signatures" */
    LP_SIGNER_APPROVALS,      /* approve: "approved release V (code C) of app A: P of K
                                 approvals, M missing" / "...: P of K approvals: published" */
} lp_signer_words;

/* lp_signer_finish with the outcome worded as `words` says (--json prints
 * the server's answer either way).  lp_signer_finish is this with
 * LP_SIGNER_SIGNATURES. */
int lp_signer_finish_as(lp_client *c, const char *cmd, lp_signer_words words, const char *app,
                        const json_t *prepared, const lp_signer_published *pub,
                        const lp_signer_expect *expect, const lp_signer_keys *ks, bool json);

/* `livepush app create NAME --signing publisher ...` (cmd_app.c hands it
 * over); returns the exit code. */
int lp_signer_app_create(lp_client *c, const char *name, const lp_signer_keys *root_keys,
                         unsigned root_threshold, const lp_signer_keys *release_keys,
                         unsigned release_threshold, const char *root_out, bool json);

#endif
