/*
 * cmd_sign.c — `livepush sign` and `livepush cancel`: the release of an app
 * whose publisher signs that waits for signatures (docs/signing.md).
 *
 *   livepush sign --version V --sign-key KEY.pem [--sign-key ...] [--root ROOT.json]
 *                 [--bundle PATH [--kind K] [--file-name N]] [client options]
 *       GET /api/v1/apps/<app>/pending, the checks of signer.h (with
 *       --bundle also against the bundle's own tree manifest), then the
 *       signatures: POST /api/v1/apps/<app>/releases/<V>/signatures.  For
 *       the holder of a release key who did not upload, or to finish a
 *       release whose uploader's keys fell short of the threshold.
 *   livepush cancel [--version V] [client options]
 *       DELETE /api/v1/apps/<app>/pending[?version=V]: the pending release
 *       is withdrawn (never published; its version string and code stay
 *       taken).
 *
 * Exit codes: api_client.h; `sign` also 5 when the release still waits for
 * more signatures, and 1 when the checks refuse to sign.
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

static const char sign_usage[] =
    "usage: livepush sign --version V --sign-key KEY.pem [--sign-key KEY.pem]...\n"
    "                     [--root ROOT.json] [--bundle PATH [--kind K] [--file-name N]]\n"
    "                     [options]\n"
    "\n"
    "Signs the release of an app whose publisher signs that waits for signatures\n"
    "(after an upload or rollback whose keys fell short of the threshold).  Before\n"
    "signing, the metadata the server prepared is checked against what devices\n"
    "trust now: only the new release's entry may be new, everything else exactly\n"
    "as published.  Needs a token with the upload scope.\n"
    "\n"
    "  --version V          the pending release's version (required)\n"
    "  --sign-key KEY.pem   a release key (private) to sign with (repeatable)\n"
    "  --root ROOT.json     the app's root file (as `app create` wrote it): what the\n"
    "                       published state is verified with; without it the\n"
    "                       server's first root is trusted (a warning says so)\n"
    "  --bundle PATH        also check that the release's content is this bundle's\n"
    "  --kind KIND          auto (default), archive or file: as given to upload\n"
    "  --file-name NAME     a single-file bundle's name, as given to upload\n"
    "\n"
    "Exit codes: 5 the release still waits for more signatures; 1 also when the\n"
    "checks refuse to sign.\n"
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

int lp_cmd_sign(int argc, char **argv)
{
    sopts o = {0};
    int rc = parse(argc, argv, "sign", sign_usage, true, &o);
    if (rc >= 0)
        return rc;
    lp_error err;
    lp_error_clear(&err);
    lp_signer_keys ks;
    if (lp_signer_keys_load(&ks, o.keys, o.nkeys, true, &err)) {
        fprintf(stderr, "livepush sign: %s\n", err.msg);
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
            return lp_cli_fail(&err, "sign");
        }
        ex.manifest_sha256 = sha;
        ex.manifest_len = mlen;
    }
    lp_client *c = NULL;
    if ((rc = lp_client_open(&o.api, "sign", &c)) >= 0) {
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
    if (!st && strcmp(pv, o.version) != 0) {
        fprintf(stderr, "livepush sign: release %s of app %s is not the one waiting for "
                        "signatures (%s is)\n",
                o.version, app, pv);
        rc = LP_EXIT_REFUSED;
    } else {
        if (!st)
            st = lp_signer_published_fetch(c, app, o.root, "sign", &pub, &err);
        if (!st)
            st = lp_signer_check_keys(&pub, &ks, app, &err);
        rc = st ? lp_client_fail(c, st, &err, "sign")
                : lp_signer_finish(c, "sign", app, ans, &pub, &ex, &ks, o.api.json);
    }
    lp_signer_published_free(&pub);
    json_decref(ans);
    lp_signer_keys_free(&ks);
    lp_client_free(c);
    return rc;
}

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
