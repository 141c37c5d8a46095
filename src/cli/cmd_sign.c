/*
 * cmd_sign.c — `livepush sign`, `livepush approve` and `livepush cancel`:
 * the release of an app whose publisher signs that waits for signatures
 * (docs/signing.md).
 *
 *   livepush sign --version V --sign-key KEY.pem [--sign-key ...] [--root ROOT.json]
 *                 [--bundle PATH [--kind K] [--file-name N]] [client options]
 *       GET /api/v1/apps/<app>/pending, the checks of signer.h (with
 *       --bundle also against the bundle's own tree manifest), then the
 *       signatures: POST /api/v1/apps/<app>/releases/<V>/signatures.  For
 *       the holder of a release key who did not upload, or to finish a
 *       release whose uploader's keys fell short of the threshold.
 *   livepush approve (the same options)
 *       The same command for the approvers of a quorum (k of n release
 *       keys): one run, one approval per key given.  It prints how many
 *       approvals the release has and how many are missing (the release's
 *       "approvals" in the server's answer), or that it is published.
 *   livepush cancel [--version V] [client options]
 *       DELETE /api/v1/apps/<app>/pending[?version=V]: the pending release
 *       is withdrawn (never published; its version string and code stay
 *       taken).
 *
 * `sign` and `approve` are one flow (sign_pending), told apart only by a
 * `verb`: its name, usage text and wording.  When nothing is pending, the
 * release named is looked up so the refusal says why (published already,
 * withdrawn) instead of only "nothing waits".
 *
 * Exit codes: api_client.h; `sign` and `approve` also 5 when the release
 * still waits for more signatures, and 1 when the checks refuse to sign.
 */
#include "cli/api_client.h"
#include "cli/api_print.h"
#include "cli/cli.h"
#include "cli/signer.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SIGN_OPTIONS_HELP                                                                       \
    "  --version V          the pending release's version (required)\n"                         \
    "  --sign-key KEY.pem   a release key (private) to sign with (repeatable)\n"                \
    "  --root ROOT.json     the app's root file (as `app create` wrote it): what the\n"         \
    "                       published state is verified with; without it the\n"                \
    "                       server's first root is trusted (a warning says so)\n"              \
    "  --bundle PATH        also check that the release's content is this bundle's\n"          \
    "  --kind KIND          auto (default), archive or file: as given to upload\n"             \
    "  --file-name NAME     a single-file bundle's name, as given to upload\n"

static const char sign_usage[] =
    "usage: livepush sign --version V --sign-key KEY.pem [--sign-key KEY.pem]...\n"
    "                     [--root ROOT.json] [--bundle PATH [--kind K] [--file-name N]]\n"
    "                     [options]\n"
    "\n"
    "Signs the release of an app whose publisher signs that waits for signatures\n"
    "(after an upload or rollback whose keys fell short of the threshold).  Before\n"
    "signing, the metadata the server prepared is checked against what devices\n"
    "trust now: only the new release's entry may be new, everything else exactly\n"
    "as published.  Needs a token with the upload or the approve scope.\n"
    "(`livepush approve` is this command worded as a quorum's approval.)\n"
    "\n" SIGN_OPTIONS_HELP
    "\n"
    "Exit codes: 5 the release still waits for more signatures; 1 also when the\n"
    "checks refuse to sign.\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

static const char approve_usage[] =
    "usage: livepush approve --version V --sign-key KEY.pem [--sign-key KEY.pem]...\n"
    "                        [--root ROOT.json] [--bundle PATH [--kind K] [--file-name N]]\n"
    "                        [options]\n"
    "\n"
    "Approves the release of an app whose publisher signs that waits for its\n"
    "quorum.  A release needs k of the n release keys (the threshold of the\n"
    "targets role in the app's root) to approve it before any device can install\n"
    "it; each approval is a signature by one release key over the release's\n"
    "metadata.  Before approving, that metadata is checked against what devices\n"
    "trust now, exactly as `livepush sign` does: only the new release's entry may\n"
    "be new, everything else exactly as published (give --bundle to compare its\n"
    "content with the bundle too).  Prints how many approvals the release has\n"
    "and how many are missing, or that it is published.  `livepush inspect\n"
    "--release V` shows which keys approved.  Needs a token with the approve (or\n"
    "the upload) scope.\n"
    "\n" SIGN_OPTIONS_HELP
    "\n"
    "Exit codes: 0 the quorum is met and the release is published; 5 it still\n"
    "waits for more approvals; 1 the checks refuse to approve (nothing is sent);\n"
    "4 also when nothing waits for approval (the release is published already,\n"
    "or withdrawn).\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

static const char cancel_usage[] =
    "usage: livepush cancel [--version V] [options]\n"
    "\n"
    "Withdraws the release of an app whose publisher signs that waits for\n"
    "signatures: it is never published, and its version string and code stay\n"
    "taken.  --version makes sure it is that release.  Needs the upload scope.\n"
    "\n"
    "  --version V   the pending release's version\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

/* What tells `sign` and `approve` apart. */
typedef struct verb {
    const char *cmd;       /* "sign", "approve" */
    const char *usage;
    lp_signer_words words;
    const char *awaited;   /* what a pending release waits for: "signatures", "approval" */
} verb;

static const verb SIGN = {"sign", sign_usage, LP_SIGNER_SIGNATURES, "signatures"};
static const verb APPROVE = {"approve", approve_usage, LP_SIGNER_APPROVALS, "approval"};

typedef struct sopts {
    lp_client_opts api;
    const char *version, *root, *bundle, *kind, *file_name;
    const char *keys[LP_SIGNER_KEYS_MAX];
    size_t nkeys;
} sopts;

static int usage_error(const char *cmd, const char *msg)
{
    fprintf(stderr, "livepush %s: %s\n(see 'livepush %s --help')\n", cmd, msg, cmd);
    return LP_EXIT_USAGE;
}

static int parse(int argc, char **argv, const char *cmd, const char *usage, bool sign, sopts *o)
{
    static const struct option lo[] = {LP_CLIENT_LONG_OPTIONS,
                                       {"version", required_argument, NULL, 'v'},
                                       {"sign-key", required_argument, NULL, 'K'},
                                       {"root", required_argument, NULL, 'R'},
                                       {"bundle", required_argument, NULL, 'b'},
                                       {"kind", required_argument, NULL, 'k'},
                                       {"file-name", required_argument, NULL, 'f'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (ch == 'h') {
            fputs(usage, stdout);
            return LP_EXIT_OK;
        }
        if (lp_client_opt(&o->api, ch, optarg))
            continue;
        if (ch == '?' || (!sign && ch != 'v')) {
            if (ch != '?')
                fprintf(stderr, "livepush %s: option %s is not valid here\n", cmd,
                        argv[optind - 1]);
            fprintf(stderr, "(see 'livepush %s --help')\n", cmd);
            return LP_EXIT_USAGE;
        }
        switch (ch) {
        case 'v': o->version = optarg; break;
        case 'R': o->root = optarg; break;
        case 'b': o->bundle = optarg; break;
        case 'k': o->kind = optarg; break;
        case 'f': o->file_name = optarg; break;
        case 'K':
            if (o->nkeys == LP_SIGNER_KEYS_MAX)
                return usage_error(cmd, "at most 32 --sign-key options");
            o->keys[o->nkeys++] = optarg;
            break;
        default: break;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "livepush %s: unexpected argument '%s'\n(see 'livepush %s --help')\n",
                cmd, argv[optind], cmd);
        return LP_EXIT_USAGE;
    }
    if (!sign)
        return -1;
    if (!o->version || !*o->version)
        return usage_error(cmd, "--version is required");
    if (!o->nkeys)
        return usage_error(cmd, "give at least one --sign-key");
    if ((o->kind || o->file_name) && !o->bundle)
        return usage_error(cmd, "--kind and --file-name go with --bundle");
    if (o->kind && strcmp(o->kind, "auto") && strcmp(o->kind, "archive") &&
        strcmp(o->kind, "file"))
        return usage_error(cmd, "--kind: must be auto, archive or file");
    return -1;
}

/* Why nothing waits for `v->awaited` when GET .../pending said 404: the
 * release `version` is looked up and, when it is published or withdrawn,
 * that is printed and LP_EXIT_REFUSED returned; -1 when it cannot be told
 * (the caller reports the server's answer). */
static int explain_nothing_pending(lp_client *c, const verb *v, const char *app,
                                   const char *version)
{
    lp_error err;
    lp_error_clear(&err);
    json_t *ans = NULL;
    char *path = lp_client_path("/api/v1/apps/%s/releases/%s", app, version);
    lp_status st = path ? lp_client_request(c, "GET", path, NULL, &ans, &err) : LP_ERR_NOMEM;
    free(path);
    const json_t *rel = json_object_get(ans, "release");
    const char *state = lp_client_str(rel, "state");
    int rc = -1;
    if (!st && !strcmp(state, "published")) {
        const json_t *a = json_object_get(rel, "approvals");
        char counts[96] = "";
        if (json_is_object(a))
            snprintf(counts, sizeof counts, " (%lld of %lld approvals)",
                     lp_client_int(a, "present", 0), lp_client_int(a, "required", 0));
        fprintf(stderr,
                "livepush %s: release %s (code %lld) of app %s is published already%s: nothing "
                "waits for %s; nothing was signed\n",
                v->cmd, version, lp_client_int(rel, "version_code", 0), app, counts, v->awaited);
        rc = LP_EXIT_REFUSED;
    } else if (!st && !strcmp(state, "withdrawn")) {
        fprintf(stderr,
                "livepush %s: release %s (code %lld) of app %s was withdrawn: it will never be "
                "published; nothing was signed\n",
                v->cmd, version, lp_client_int(rel, "version_code", 0), app);
        rc = LP_EXIT_REFUSED;
    }
    json_decref(ans);
    return rc;
}

/* `sign` and `approve`: the checks of signer.h on the pending release
 * `--version`, then one signature per key. */
static int sign_pending(const verb *v, int argc, char **argv)
{
    sopts o = {0};
    int rc = parse(argc, argv, v->cmd, v->usage, true, &o);
    if (rc >= 0)
        return rc;
    lp_error err;
    lp_error_clear(&err);
    lp_signer_keys ks;
    if (lp_signer_keys_load(&ks, o.keys, o.nkeys, true, &err)) {
        fprintf(stderr, "livepush %s: %s\n", v->cmd, err.msg);
        return LP_EXIT_USAGE;
    }
    char sha[65];
    uint64_t mlen = 0;
    lp_signer_expect ex = {0};
    if (o.bundle) {
        lp_ingest_opts io;
        lp_signer_ingest_opts(o.bundle, o.kind, o.file_name, &io);
        if (lp_signer_local_manifest(o.bundle, &io, sha, &mlen, &err)) {
            lp_signer_keys_free(&ks);
            return lp_cli_fail(&err, v->cmd);
        }
        ex.manifest_sha256 = sha;
        ex.manifest_len = mlen;
    }
    lp_client *c = NULL;
    if ((rc = lp_client_open(&o.api, v->cmd, &c)) >= 0) {
        lp_signer_keys_free(&ks);
        return rc;
    }
    const char *app = lp_client_app(&o.api);
    lp_signer_published pub = {0};
    json_t *ans = NULL;
    char *path = lp_client_path("/api/v1/apps/%s/pending", app);
    lp_status st = path ? lp_client_request(c, "GET", path, NULL, &ans, &err)
                        : lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    free(path);
    const char *pv = lp_client_str(json_object_get(ans, "release"), "version");
    if (st && lp_client_last_http_status(c) == 404) {
        /* nothing pending (or no such app): say why when the release is known */
        if ((rc = explain_nothing_pending(c, v, app, o.version)) < 0) {
            fprintf(stderr, "livepush %s: %s\n", v->cmd, err.msg);
            rc = LP_EXIT_REFUSED;
        }
    } else if (!st && strcmp(pv, o.version) != 0) {
        fprintf(stderr, "livepush %s: release %s of app %s is not the one waiting for %s (%s is)\n",
                v->cmd, o.version, app, v->awaited, pv);
        rc = LP_EXIT_REFUSED;
    } else {
        if (!st)
            st = lp_signer_published_fetch(c, app, o.root, v->cmd, &pub, &err);
        if (!st)
            st = lp_signer_check_keys(&pub, &ks, app, &err);
        rc = st ? lp_client_fail(c, st, &err, v->cmd)
                : lp_signer_finish_as(c, v->cmd, v->words, app, ans, &pub, &ex, &ks,
                                      o.api.json);
    }
    lp_signer_published_free(&pub);
    json_decref(ans);
    lp_signer_keys_free(&ks);
    lp_client_free(c);
    return rc;
}

int lp_cmd_sign(int argc, char **argv) { return sign_pending(&SIGN, argc, argv); }

int lp_cmd_approve(int argc, char **argv) { return sign_pending(&APPROVE, argc, argv); }

int lp_cmd_cancel(int argc, char **argv)
{
    sopts o = {0};
    int rc = parse(argc, argv, "cancel", cancel_usage, false, &o);
    if (rc >= 0)
        return rc;
    lp_client *c = NULL;
    if ((rc = lp_client_open(&o.api, "cancel", &c)) >= 0)
        return rc;
    lp_error err;
    lp_error_clear(&err);
    const char *app = lp_client_app(&o.api);
    char *base = lp_client_path("/api/v1/apps/%s/pending", app);
    char *v = o.version ? lp_client_escape(o.version) : NULL;
    char *path = NULL;
    if (base && (!o.version || v) && (path = malloc(strlen(base) + (v ? strlen(v) : 0) + 10)))
        sprintf(path, "%s%s%s", base, v ? "?version=" : "", v ? v : "");
    json_t *ans = NULL;
    lp_status st = path ? lp_client_request(c, "DELETE", path, NULL, &ans, &err)
                        : lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    free(path);
    free(base);
    free(v);
    if (!st) {
        if (o.api.json) {
            lp_client_print_json(ans);
        } else {
            const json_t *rel = json_object_get(ans, "release");
            printf("release %s (version code %lld) of app %s withdrawn: it will not be "
                   "published\n",
                   lp_client_str(rel, "version"), lp_client_int(rel, "version_code", 0), app);
        }
    }
    rc = st ? lp_client_fail(c, st, &err, "cancel") : LP_EXIT_OK;
    json_decref(ans);
    lp_client_free(c);
    return rc;
}
