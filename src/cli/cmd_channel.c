/*
 * cmd_channel.c — `livepush channel`: the channels of an app.
 *
 *   livepush channel list          [client options]   GET  /api/v1/apps/<app>/channels
 *   livepush channel create NAME   [client options]   POST /api/v1/apps/<app>/channels (admin)
 *
 * The app is --app (or LIVEPUSH_APP, or "default").  Human output is a
 * table or one line on stdout; --json prints the server's answer.  Client
 * options and exit codes: api_client.h.
 */
#include "cli/api_client.h"
#include "cli/api_print.h"
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: livepush channel list [options]\n"
    "       livepush channel create NAME [options]\n"
    "\n"
    "list: the channels of the app (--app).  create: a new channel (admin token).\n"
    "Releases name the channels they are published on (upload --channel).\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

static int usage_error(const char *msg)
{
    fprintf(stderr, "livepush channel: %s\n(see 'livepush channel --help')\n", msg);
    return LP_EXIT_USAGE;
}

int lp_cmd_channel(int argc, char **argv)
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
        return usage_error("name a subcommand: list or create");
    const char *sub = argv[optind];
    int npos = argc - optind - 1;
    const char *name = NULL;
    if (!strcmp(sub, "list")) {
        if (npos != 0)
            return usage_error("list takes no argument");
    } else if (!strcmp(sub, "create")) {
        if (npos != 1)
            return usage_error("create takes one argument, the channel's name");
        name = argv[optind + 1];
    } else {
        fprintf(stderr, "livepush channel: unknown subcommand '%s'\n(see 'livepush channel --help')\n",
                sub);
        return LP_EXIT_USAGE;
    }

    lp_client *c = NULL;
    int rc = lp_client_open(&o, "channel", &c);
    if (rc >= 0)
        return rc;
    lp_error err;
    lp_error_clear(&err);
    json_t *ans = NULL, *body = NULL;
    lp_status st;
    char *path = lp_client_path("/api/v1/apps/%s/channels", lp_client_app(&o));
    if (!path) {
        st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    } else if (!name) {
        st = lp_client_request(c, "GET", path, NULL, &ans, &err);
        if (!st && !o.json) {
            static const char *const titles[] = {"NAME", "CREATED"};
            lp_table t;
            lp_table_init(&t, 2, titles);
            size_t i;
            const json_t *chan;
            json_array_foreach(json_object_get(ans, "channels"), i, chan)
            {
                char created[24];
                lp_client_format_time(lp_client_int(chan, "created_at", 0), created);
                const char *cells[] = {lp_client_str(chan, "name"), created};
                lp_table_add(&t, cells);
            }
            lp_table_print_free(&t, stdout);
        }
    } else if (!(body = json_pack("{s:s}", "name", name))) {
        st = lp_error_set(&err, LP_ERR_INVALID_ARG, "channel name is not valid UTF-8");
    } else {
        st = lp_client_request(c, "POST", path, body, &ans, &err);
        if (!st && !o.json)
            printf("channel %s created in app %s\n",
                   lp_client_str(json_object_get(ans, "channel"), "name"), lp_client_app(&o));
    }
    if (!st && o.json)
        lp_client_print_json(ans);
    rc = st ? lp_client_fail(c, st, &err, name ? "channel create" : "channel list") : LP_EXIT_OK;
    free(path);
    json_decref(body);
    json_decref(ans);
    lp_client_free(c);
    return rc;
}
