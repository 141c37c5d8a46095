/*
 * cmd_app.c — `livepush app`: the apps of a server.
 *
 *   livepush app list          [client options]      GET  /api/v1/apps
 *   livepush app create NAME   [client options]      POST /api/v1/apps  (admin)
 *   livepush app show [NAME]   [client options]      GET  /api/v1/apps/<name>
 *
 * `show` without NAME shows --app (or LIVEPUSH_APP, or "default").  Human
 * output is a summary or a table on stdout; --json prints the server's
 * answer instead.  The client options and exit codes are those of
 * api_client.h.
 */
#include "cli/api_client.h"
#include "cli/api_print.h"
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: livepush app list [options]\n"
    "       livepush app create NAME [options]\n"
    "       livepush app show [NAME] [options]\n"
    "\n"
    "list: the server's apps.  create: a new app whose signing keys the server\n"
    "holds (needs an admin token).  show: one app (NAME, else --app), its channels\n"
    "and latest release.\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

static int usage_error(const char *msg)
{
    fprintf(stderr, "livepush app: %s\n(see 'livepush app --help')\n", msg);
    return LP_EXIT_USAGE;
}

int lp_cmd_app(int argc, char **argv)
{
    static const struct option lo[] = {LP_CLIENT_LONG_OPTIONS,
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    lp_client_opts o = {0};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (ch == 'h') {
            fputs(usage_text, stdout);
            return LP_EXIT_OK;
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
