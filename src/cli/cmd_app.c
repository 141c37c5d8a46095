/*
 * cmd_app.c — `livepush app`: the apps of a server.
 *
 *   livepush app list          [client options]      GET  /api/v1/apps
 *   livepush app create NAME   [client options]      POST /api/v1/apps  (admin)
 *   livepush app create NAME --signing publisher --root-key ROOT.pem [--root-key ..]
 *                   [--root-threshold N] --release-key REL [--release-key ..]
 *                   [--release-threshold N] [--root-out FILE]
 *                                                    POST /api/v1/apps, PUT .../root
 *   livepush app show [NAME]   [client options]      GET  /api/v1/apps/<name>
 *
 * `create --signing publisher` makes an app whose publisher signs
 * (signer.h): the server makes its online keys, the root is built and
 * signed here with the root keys (private) around the release keys (public
 * .pub.json files or private keys) and the server's keys, written to
 * --root-out (default ./NAME.root.json; an existing file is never
 * replaced) and sent.  Devices are set up with that file.
 *
 * `show` without NAME shows --app (or LIVEPUSH_APP, or "default").  Human
 * output is a summary or a table on stdout; --json prints the server's
 * answer instead.  The client options and exit codes are those of
 * api_client.h.
 */
#include "cli/api_client.h"
#include "cli/api_print.h"
#include "cli/cli.h"
#include "cli/signer.h"

#include "core/file.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: livepush app list [options]\n"
    "       livepush app create NAME [options]\n"
    "       livepush app create NAME --signing publisher --root-key ROOT.pem\n"
    "                           --release-key REL.pub.json [options]\n"
    "       livepush app show [NAME] [options]\n"
    "\n"
    "list: the server's apps.  create: a new app (needs an admin token) whose\n"
    "signing keys the server holds, or with --signing publisher one whose\n"
    "publisher signs: the root is built and signed here, offline keys never leave\n"
    "this machine, and the server holds only its snapshot and timestamp keys.\n"
    "show: one app (NAME, else --app), its channels and latest release.\n"
    "\n"
    "  --signing MODE          server (default) or publisher\n"
    "  --root-key FILE         a root key, private (repeatable; publisher)\n"
    "  --root-threshold N      root signatures needed (default 1)\n"
    "  --release-key FILE      a release key: FILE.pub.json from `livepush keygen`\n"
    "                          or a private key (repeatable; publisher)\n"
    "  --release-threshold N   release signatures a release needs (default 1)\n"
    "  --root-out FILE         where the root is written (default ./NAME.root.json);\n"
    "                          devices are set up with it\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

typedef struct aopts {
    const char *signing, *root_threshold, *release_threshold, *root_out;
    const char *root_keys[LP_SIGNER_KEYS_MAX], *release_keys[LP_SIGNER_KEYS_MAX];
    size_t nroot, nrelease;
} aopts;

static int usage_error(const char *msg)
{
    fprintf(stderr, "livepush app: %s\n(see 'livepush app --help')\n", msg);
    return LP_EXIT_USAGE;
}

/* `app create NAME --signing publisher ...`. */
static int create_publisher(const lp_client_opts *o, const char *name, const aopts *a)
{
    if (!a->nroot || !a->nrelease)
        return usage_error("--signing publisher needs at least one --root-key and one "
                           "--release-key");
    lp_error err;
    lp_error_clear(&err);
    long long rt = 1, kt = 1;
    if ((a->root_threshold && lp_client_parse_int(a->root_threshold, "--root-threshold", 1,
                                                  (long long)a->nroot, &rt, &err)) ||
        (a->release_threshold && lp_client_parse_int(a->release_threshold,
                                                     "--release-threshold", 1,
                                                     (long long)a->nrelease, &kt, &err))) {
        fprintf(stderr, "livepush app: %s (at most the number of keys given)\n", err.msg);
        return LP_EXIT_USAGE;
    }
    char def[256];
    snprintf(def, sizeof def, "%s.root.json", name);
    const char *out = a->root_out ? a->root_out : def;
    if (lp_file_exists(out)) {
        fprintf(stderr, "livepush app: %s exists already: it may be the root of another app; "
                        "give another --root-out\n",
                out);
        return LP_EXIT_USAGE;
    }
    lp_signer_keys rk, kk;
    if (lp_signer_keys_load(&rk, a->root_keys, a->nroot, true, &err)) {
        fprintf(stderr, "livepush app: --root-key: %s\n", err.msg);
        return LP_EXIT_USAGE;
    }
    if (lp_signer_keys_load(&kk, a->release_keys, a->nrelease, false, &err)) {
        lp_signer_keys_free(&rk);
        fprintf(stderr, "livepush app: --release-key: %s\n", err.msg);
        return LP_EXIT_USAGE;
    }
    for (size_t i = 0; i < rk.n; i++)
        for (size_t j = 0; j < kk.n; j++)
            if (!strcmp(rk.id[i], kk.id[j])) {
                fprintf(stderr, "livepush app: %s and %s hold the same key: a root key must not "
                                "be a release key\n",
                        rk.path[i], kk.path[j]);
                lp_signer_keys_free(&rk);
                lp_signer_keys_free(&kk);
                return LP_EXIT_USAGE;
            }
    lp_client *c = NULL;
    int rc = lp_client_open(o, "app", &c);
    if (rc < 0)
        rc = lp_signer_app_create(c, name, &rk, (unsigned)rt, &kk, (unsigned)kt, out, o->json);
    lp_client_free(c);
    lp_signer_keys_free(&rk);
    lp_signer_keys_free(&kk);
    return rc;
}

int lp_cmd_app(int argc, char **argv)
{
    static const struct option lo[] = {LP_CLIENT_LONG_OPTIONS,
                                       {"signing", required_argument, NULL, 's'},
                                       {"root-key", required_argument, NULL, 'r'},
                                       {"root-threshold", required_argument, NULL, 'R'},
                                       {"release-key", required_argument, NULL, 'k'},
                                       {"release-threshold", required_argument, NULL, 'K'},
                                       {"root-out", required_argument, NULL, 'o'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    lp_client_opts o = {0};
    aopts a = {0};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'h': fputs(usage_text, stdout); return LP_EXIT_OK;
        case 's': a.signing = optarg; continue;
        case 'R': a.root_threshold = optarg; continue;
        case 'K': a.release_threshold = optarg; continue;
        case 'o': a.root_out = optarg; continue;
        case 'r':
        case 'k': {
            size_t *n = ch == 'r' ? &a.nroot : &a.nrelease;
            if (*n == LP_SIGNER_KEYS_MAX)
                return usage_error("at most 32 keys of each kind");
            (ch == 'r' ? a.root_keys : a.release_keys)[(*n)++] = optarg;
            continue;
        }
        default: break;
        }
        if (!lp_client_opt(&o, ch, optarg)) {
            fputs(usage_text, stderr);
            return LP_EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return usage_error("name a subcommand: list, create or show");
    const char *sub = argv[optind];
    int npos = argc - optind - 1;
    char **pos = argv + optind + 1;
    const char *name = NULL;
    if (!strcmp(sub, "list")) {
        if (npos != 0)
            return usage_error("list takes no argument");
    } else if (!strcmp(sub, "create")) {
        if (npos != 1)
            return usage_error("create takes one argument, the app's name");
        name = pos[0];
    } else if (!strcmp(sub, "show")) {
        if (npos > 1)
            return usage_error("show takes at most one argument, the app's name");
        name = npos ? pos[0] : lp_client_app(&o);
    } else {
        fprintf(stderr, "livepush app: unknown subcommand '%s'\n(see 'livepush app --help')\n", sub);
        return LP_EXIT_USAGE;
    }
    bool publisher = a.signing && !strcmp(a.signing, "publisher");
    if (a.signing && !publisher && strcmp(a.signing, "server"))
        return usage_error("--signing: must be server or publisher");
    if (!publisher && (a.nroot || a.nrelease || a.root_threshold || a.release_threshold ||
                       a.root_out))
        return usage_error("--root-key, --release-key, their thresholds and --root-out go with "
                           "create --signing publisher");
    if (publisher && strcmp(sub, "create"))
        return usage_error("--signing goes with create");
    if (publisher)
        return create_publisher(&o, name, &a);

    lp_client *c = NULL;
    int rc = lp_client_open(&o, "app", &c);
    if (rc >= 0)
        return rc;
    lp_error err;
    lp_error_clear(&err);
    json_t *ans = NULL;
    lp_status st;
    char ctx[32];
    snprintf(ctx, sizeof ctx, "app %s", sub);
    if (!strcmp(sub, "list")) {
        st = lp_client_request(c, "GET", "/api/v1/apps", NULL, &ans, &err);
        if (!st && !o.json) {
            static const char *const titles[] = {"NAME", "CREATED", "SIGNING"};
            lp_table t;
            lp_table_init(&t, 3, titles);
            size_t i;
            const json_t *app;
            json_array_foreach(json_object_get(ans, "apps"), i, app)
            {
                char created[24];
                lp_client_format_time(lp_client_int(app, "created_at", 0), created);
                const char *cells[] = {lp_client_str(app, "name"), created, lp_client_str(app, "signing")};
                lp_table_add(&t, cells);
            }
            lp_table_print_free(&t, stdout);
        }
    } else if (!strcmp(sub, "create")) {
        json_t *body = json_pack("{s:s}", "name", name);
        st = body ? lp_client_request(c, "POST", "/api/v1/apps", body, &ans, &err)
                  : lp_error_set(&err, LP_ERR_INVALID_ARG, "app name is not valid UTF-8");
        json_decref(body);
        if (!st && !o.json)
            printf("app %s created\n", lp_client_str(json_object_get(ans, "app"), "name"));
    } else {
        char *path = lp_client_path("/api/v1/apps/%s", name);
        st = path ? lp_client_request(c, "GET", path, NULL, &ans, &err)
                  : lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
        free(path);
        if (!st && !o.json)
            lp_print_app(ans, lp_client_server(c), stdout);
    }
    if (!st && o.json)
        lp_client_print_json(ans);
    rc = st ? lp_client_fail(c, st, &err, ctx) : LP_EXIT_OK;
    json_decref(ans);
    lp_client_free(c);
    return rc;
}
