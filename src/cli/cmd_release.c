/*
 * cmd_release.c — the releases of an app: `livepush inspect`, `livepush
 * releases` and `livepush rollback`.
 *
 *   livepush inspect [--release V]
 *       without --release: GET /api/v1/apps/<app> (the app, its channels and
 *       latest release) and, for humans, its newest releases
 *       (GET /api/v1/apps/<app>/releases?limit=5); with --release:
 *       GET /api/v1/apps/<app>/releases/<V>
 *   livepush releases [--channel C] [--limit N] [--before CODE]
 *       GET /api/v1/apps/<app>/releases, newest first; a page of results
 *       ends with a hint naming the --before value of the next page
 *   livepush rollback --target V [--channel C]... [--sign-key KEY.pem]... [--root ROOT.json]
 *       POST /api/v1/apps/<app>/rollback: V's content becomes a new release
 *       with a higher version code.  For an app whose publisher signs the
 *       answer is 202 (prepared) and, with --sign-key, the prepared bytes
 *       are checked (the new entry restores V exactly; everything else as
 *       published) and signed as for an upload (signer.h).
 *
 * The app is --app (or LIVEPUSH_APP, or "default").  --json prints the
 * server's answer (for `inspect` without --release, the app's answer only).
 * Client options and exit codes: api_client.h.
 */
#include "cli/api_client.h"
#include "cli/api_print.h"
#include "cli/cli.h"
#include "cli/signer.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHANNELS 32
#define INSPECT_RECENT 5
#define LP_STR_(x) #x
#define LP_STR(x) LP_STR_(x)

static const char inspect_usage[] =
    "usage: livepush inspect [--release VERSION] [options]\n"
    "\n"
    "Without --release: the app (--app), its channels, latest release and newest\n"
    "releases.  With --release: everything about that release (the newest one\n"
    "with that version string).\n"
    "\n"
    "  --release VERSION   the release to show\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

static const char releases_usage[] =
    "usage: livepush releases [--channel C] [--limit N] [--before CODE] [options]\n"
    "\n"
    "Lists the app's releases, newest first.\n"
    "\n"
    "  --channel C     only releases on channel C\n"
    "  --limit N       at most N releases (1..1000; the server's default otherwise)\n"
    "  --before CODE   only releases with a version code below CODE (the next page)\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

static const char rollback_usage[] =
    "usage: livepush rollback --target VERSION [--channel C]... [options]\n"
    "\n"
    "Publishes the content of release VERSION again as a new release with the next\n"
    "version code (clients only move forward), marked as a rollback of VERSION.\n"
    "Nothing is uploaded.  Needs a token with the upload scope.\n"
    "\n"
    "  --target VERSION   the earlier release to return to\n"
    "  --channel C        publish on channel C (repeatable; default: the target's)\n"
    "\n"
    "Apps whose publisher signs (without --sign-key the rollback waits for\n"
    "signatures, exit 5):\n"
    "  --sign-key KEY.pem a release key (private) to sign with (repeatable)\n"
    "  --root ROOT.json   the app's root file, to verify what is published now\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

typedef struct ropts {
    lp_client_opts api;
    const char *release, *channel, *limit, *before, *target;
    const char *channels[MAX_CHANNELS];
    size_t nchannels;
    const char *root;
    const char *keys[LP_SIGNER_KEYS_MAX];
    size_t nkeys;
} ropts;

/* Parses argv; -1 to go on, else the exit code. */
static int parse(int argc, char **argv, const char *cmd, const char *usage, const char *allowed,
                 ropts *o)
{
    static const struct option lo[] = {LP_CLIENT_LONG_OPTIONS,
                                       {"release", required_argument, NULL, 'r'},
                                       {"channel", required_argument, NULL, 'c'},
                                       {"limit", required_argument, NULL, 'l'},
                                       {"before", required_argument, NULL, 'b'},
                                       {"target", required_argument, NULL, 't'},
                                       {"sign-key", required_argument, NULL, 'K'},
                                       {"root", required_argument, NULL, 'R'},
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
        if (ch == '?' || !strchr(allowed, ch)) {
            if (ch != '?')
                fprintf(stderr, "livepush %s: option %s is not valid here\n", cmd, argv[optind - 1]);
            fprintf(stderr, "(see 'livepush %s --help')\n", cmd);
            return LP_EXIT_USAGE;
        }
        switch (ch) {
        case 'r': o->release = optarg; break;
        case 'l': o->limit = optarg; break;
        case 'b': o->before = optarg; break;
        case 't': o->target = optarg; break;
        case 'R': o->root = optarg; break;
        case 'K':
            if (o->nkeys == LP_SIGNER_KEYS_MAX) {
                fprintf(stderr, "livepush %s: at most %d --sign-key options\n", cmd,
                        LP_SIGNER_KEYS_MAX);
                return LP_EXIT_USAGE;
            }
            o->keys[o->nkeys++] = optarg;
            break;
        case 'c':
            o->channel = optarg;
            if (o->nchannels == MAX_CHANNELS) {
                fprintf(stderr, "livepush %s: at most %d --channel options\n", cmd, MAX_CHANNELS);
                return LP_EXIT_USAGE;
            }
            o->channels[o->nchannels++] = optarg;
            break;
        default: break;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "livepush %s: unexpected argument '%s'\n(see 'livepush %s --help')\n", cmd,
                argv[optind], cmd);
        return LP_EXIT_USAGE;
    }
    return -1;
}

/* Ends a command: prints the answer or the failure, frees. */
static int finish(lp_client *c, lp_status st, const lp_error *err, const char *cmd, json_t *ans)
{
    int rc = st ? lp_client_fail(c, st, err, cmd) : LP_EXIT_OK;
    json_decref(ans);
    lp_client_free(c);
    return rc;
}

int lp_cmd_inspect(int argc, char **argv)
{
    ropts o = {0};
    int rc = parse(argc, argv, "inspect", inspect_usage, "r", &o);
    if (rc >= 0)
        return rc;
    lp_client *c = NULL;
    if ((rc = lp_client_open(&o.api, "inspect", &c)) >= 0)
        return rc;
    lp_error err;
    lp_error_clear(&err);
    json_t *ans = NULL;
    lp_status st;
    const char *app = lp_client_app(&o.api);
    char *path = o.release ? lp_client_path("/api/v1/apps/%s/releases/%s", app, o.release)
                           : lp_client_path("/api/v1/apps/%s", app);
    st = path ? lp_client_request(c, "GET", path, NULL, &ans, &err)
              : lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    free(path);
    if (st)
        return finish(c, st, &err, "inspect", ans);
    if (o.api.json) {
        lp_client_print_json(ans);
    } else if (o.release) {
        lp_print_release(json_object_get(ans, "release"), stdout);
    } else {
        lp_print_app(ans, lp_client_server(c), stdout);
        json_t *list = NULL;
        char *lpath = lp_client_path("/api/v1/apps/%s/releases?limit=" LP_STR(INSPECT_RECENT), app);
        st = lpath ? lp_client_request(c, "GET", lpath, NULL, &list, &err)
                   : lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
        free(lpath);
        const json_t *rels = json_object_get(list, "releases");
        if (!st && json_array_size(rels) > 0) {
            printf("\nnewest releases:\n");
            lp_print_release_table(rels, stdout);
        }
        json_decref(list);
    }
    return finish(c, st, &err, "inspect", ans);
}

int lp_cmd_releases(int argc, char **argv)
{
    ropts o = {0};
    int rc = parse(argc, argv, "releases", releases_usage, "clb", &o);
    if (rc >= 0)
        return rc;
    if (o.nchannels > 1) {
        fprintf(stderr, "livepush releases: give --channel once\n");
        return LP_EXIT_USAGE;
    }
    lp_error err;
    lp_error_clear(&err);
    long long limit = 0, before = 0;
    if ((o.limit && lp_client_parse_int(o.limit, "--limit", 1, 1000, &limit, &err)) ||
        (o.before && lp_client_parse_int(o.before, "--before", 1, INT64_MAX, &before, &err))) {
        fprintf(stderr, "livepush releases: %s\n", err.msg);
        return LP_EXIT_USAGE;
    }
    lp_client *c = NULL;
    if ((rc = lp_client_open(&o.api, "releases", &c)) >= 0)
        return rc;
    char query[64] = "";
    size_t q = 0;
    if (limit)
        q += (size_t)snprintf(query + q, sizeof query - q, "%slimit=%lld", q ? "&" : "?", limit);
    if (before)
        q += (size_t)snprintf(query + q, sizeof query - q, "%sbefore=%lld", q ? "&" : "?", before);
    /* the query string is assembled here so '?', '&' and '=' stay literal;
     * only the values are escaped */
    char *base = lp_client_path("/api/v1/apps/%s/releases", lp_client_app(&o.api));
    char *chan = o.channel ? lp_client_escape(o.channel) : NULL;
    json_t *ans = NULL;
    lp_status st;
    if (!base || (o.channel && !chan)) {
        st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    } else {
        size_t n = strlen(base) + strlen(query) + (chan ? strlen(chan) + 10 : 0) + 1;
        char *full = malloc(n);
        if (!full) {
            st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
        } else {
            snprintf(full, n, "%s%s%s%s", base, query, chan ? (q ? "&channel=" : "?channel=") : "",
                     chan ? chan : "");
            st = lp_client_request(c, "GET", full, NULL, &ans, &err);
            free(full);
        }
    }
    free(base);
    free(chan);
    if (!st) {
        if (o.api.json) {
            lp_client_print_json(ans);
        } else {
            const json_t *rels = json_object_get(ans, "releases");
            if (json_array_size(rels) == 0)
                printf("no releases%s%s\n", o.channel ? " on channel " : "",
                       o.channel ? o.channel : "");
            else
                lp_print_release_table(rels, stdout);
            long long next = lp_client_int(ans, "next_before", 0);
            if (next > 0)
                printf("(more: --before %lld)\n", next);
        }
    }
    return finish(c, st, &err, "releases", ans);
}

int lp_cmd_rollback(int argc, char **argv)
{
    ropts o = {0};
    int rc = parse(argc, argv, "rollback", rollback_usage, "tcKR", &o);
    if (rc >= 0)
        return rc;
    if (!o.target || !*o.target) {
        fprintf(stderr, "livepush rollback: --target is required\n(see 'livepush rollback --help')\n");
        return LP_EXIT_USAGE;
    }
    lp_error err;
    lp_error_clear(&err);
    lp_signer_keys ks = {0};
    lp_signer_published pub = {0};
    if (o.nkeys && lp_signer_keys_load(&ks, o.keys, o.nkeys, true, &err)) {
        fprintf(stderr, "livepush rollback: %s\n", err.msg);
        return LP_EXIT_USAGE;
    }
    lp_client *c = NULL;
    if ((rc = lp_client_open(&o.api, "rollback", &c)) >= 0) {
        lp_signer_keys_free(&ks);
        return rc;
    }
    const char *app = lp_client_app(&o.api);
    if (o.nkeys && (rc = lp_signer_setup(c, "rollback", app, o.root, &ks, &pub)) >= 0) {
        lp_signer_keys_free(&ks);
        lp_client_free(c);
        return rc;
    }
    lp_status st = LP_OK;
    json_t *body = json_pack("{s:s}", "target", o.target), *ans = NULL;
    if (!body)
        st = lp_error_set(&err, LP_ERR_INVALID_ARG, "--target: not valid UTF-8");
    if (!st && o.nchannels) {
        json_t *arr = json_array();
        if (!arr || json_object_set_new(body, "channels", arr))
            st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
        for (size_t i = 0; !st && i < o.nchannels; i++)
            if (json_array_append_new(arr, json_string(o.channels[i])))
                st = lp_error_set(&err, LP_ERR_INVALID_ARG, "--channel %s: not valid UTF-8",
                                  o.channels[i]);
    }
    char *path = lp_client_path("/api/v1/apps/%s/rollback", app);
    if (!st && !path)
        st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    if (!st)
        st = lp_client_request(c, "POST", path, body, &ans, &err);
    free(path);
    if (!st && lp_client_last_http_status(c) == 202) {
        /* an app whose publisher signs: the rollback is prepared */
        lp_signer_expect ex = {.rollback_target = o.target,
                               .rollback_channels = json_object_get(body, "channels")};
        rc = lp_signer_finish(c, "rollback", app, ans, o.nkeys ? &pub : NULL, &ex, &ks,
                              o.api.json);
        json_decref(body);
        json_decref(ans);
        lp_signer_published_free(&pub);
        lp_signer_keys_free(&ks);
        lp_client_free(c);
        return rc;
    }
    json_decref(body);
    lp_signer_published_free(&pub);
    lp_signer_keys_free(&ks);
    if (!st) {
        if (o.api.json) {
            lp_client_print_json(ans);
        } else {
            const json_t *rel = json_object_get(ans, "release");
            char ch[256];
            lp_print_join(json_object_get(rel, "channels"), ch, sizeof ch);
            printf("rolled back to %s: new release %s (version code %lld) on %s\n", o.target,
                   lp_client_str(rel, "version"), lp_client_int(rel, "version_code", 0), ch);
        }
    }
    return finish(c, st, &err, "rollback", ans);
}
