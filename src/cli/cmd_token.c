/*
 * cmd_token.c — `livepush token`: API tokens (every subcommand needs an
 * admin token).
 *
 *   livepush token create --name N --scope S [--scope S]...   POST   /api/v1/tokens
 *   livepush token list                                       GET    /api/v1/tokens
 *   livepush token revoke ID                                  DELETE /api/v1/tokens/<id>
 *
 * `create` prints the new token's text alone on stdout (the only time the
 * server reveals it), so a script can keep it, and a description on
 * stderr; with --json the server's answer, which holds it as "secret".
 * Client options and exit codes: api_client.h.
 */
#include "cli/api_client.h"
#include "cli/api_print.h"
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SCOPES 16

static const char usage_text[] =
    "usage: livepush token create --name NAME --scope SCOPE [--scope SCOPE]... [options]\n"
    "       livepush token list [options]\n"
    "       livepush token revoke ID [options]\n"
    "\n"
    "create: a new token; its text is printed once, on stdout.  Scopes: admin,\n"
    "upload, read, download, approve, rollout (see docs/tokens.md).\n"
    "list: every token (never their secrets).  revoke: the token stops working.\n"
    "All three need an admin token.\n"
    "\n"
    "  --name NAME      what the token is for (create)\n"
    "  --scope SCOPE    a scope to grant; repeat for several (create)\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

static int usage_error(const char *msg)
{
    fprintf(stderr, "livepush token: %s\n(see 'livepush token --help')\n", msg);
    return LP_EXIT_USAGE;
}

int lp_cmd_token(int argc, char **argv)
{
    static const struct option lo[] = {LP_CLIENT_LONG_OPTIONS,
                                       {"name", required_argument, NULL, 'n'},
                                       {"scope", required_argument, NULL, 's'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    lp_client_opts o = {0};
    const char *name = NULL, *scopes[MAX_SCOPES];
    size_t nscopes = 0;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'h': fputs(usage_text, stdout); return LP_EXIT_OK;
        case 'n': name = optarg; break;
        case 's':
            if (nscopes == MAX_SCOPES)
                return usage_error("too many --scope options");
            scopes[nscopes++] = optarg;
            break;
        default:
            if (!lp_client_opt(&o, ch, optarg)) {
                fputs(usage_text, stderr);
                return LP_EXIT_USAGE;
            }
        }
    }
    if (optind >= argc)
        return usage_error("name a subcommand: create, list or revoke");
    const char *sub = argv[optind];
    int npos = argc - optind - 1;
    const char *id = NULL;
    bool create = false;
    if (!strcmp(sub, "create")) {
        if (npos != 0)
            return usage_error("create takes no argument (use --name and --scope)");
        if (!name || !*name)
            return usage_error("create needs --name");
        if (nscopes == 0)
            return usage_error("create needs at least one --scope");
        create = true;
    } else if (!strcmp(sub, "list")) {
        if (npos != 0)
            return usage_error("list takes no argument");
    } else if (!strcmp(sub, "revoke")) {
        if (npos != 1)
            return usage_error("revoke takes one argument, the token's id");
        id = argv[optind + 1];
    } else {
        fprintf(stderr, "livepush token: unknown subcommand '%s'\n(see 'livepush token --help')\n",
                sub);
        return LP_EXIT_USAGE;
    }
    if (!create && (name || nscopes))
        return usage_error("--name and --scope belong to create");

    lp_client *c = NULL;
    int rc = lp_client_open(&o, "token", &c);
    if (rc >= 0)
        return rc;
    lp_error err;
    lp_error_clear(&err);
    json_t *ans = NULL, *body = NULL;
    lp_status st = LP_OK;
    char ctx[32];
    snprintf(ctx, sizeof ctx, "token %s", sub);
    if (create) {
        json_t *arr = json_array();
        body = json_pack("{s:s?,s:o}", "name", name, "scopes", arr);
        for (size_t i = 0; body && i < nscopes && !st; i++)
            if (json_array_append_new(arr, json_string(scopes[i])))
                st = lp_error_set(&err, LP_ERR_INVALID_ARG, "--scope %s: not valid UTF-8",
                                  scopes[i]);
        if (!body || !json_object_get(body, "name"))
            st = lp_error_set(&err, LP_ERR_INVALID_ARG, "--name: not valid UTF-8");
        if (!st)
            st = lp_client_request(c, "POST", "/api/v1/tokens", body, &ans, &err);
        if (!st && !o.json) {
            const char *secret = lp_client_str(ans, "secret");
            if (!*secret) {
                st = lp_error_set(&err, LP_ERR_MALFORMED,
                                  "POST /api/v1/tokens: the answer holds no \"secret\"");
            } else {
                const json_t *tok = json_object_get(ans, "token");
                char sc[256];
                lp_print_join(json_object_get(tok, "scopes"), sc, sizeof sc);
                printf("%s\n", secret);
                fprintf(stderr,
                        "livepush token create: token %s (\"%s\", scopes %s) created; its text, "
                        "above, is shown this once\n",
                        lp_client_str(tok, "id"), lp_client_str(tok, "name"), sc);
            }
        }
    } else if (!id) {
        st = lp_client_request(c, "GET", "/api/v1/tokens", NULL, &ans, &err);
        if (!st && !o.json)
            lp_print_token_table(json_object_get(ans, "tokens"), stdout);
    } else {
        char *path = lp_client_path("/api/v1/tokens/%s", id);
        st = path ? lp_client_request(c, "DELETE", path, NULL, &ans, &err)
                  : lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
        free(path);
        if (!st && !o.json)
            printf("token %s revoked\n", lp_client_str(json_object_get(ans, "token"), "id"));
    }
    if (!st && o.json)
        lp_client_print_json(ans);
    rc = st ? lp_client_fail(c, st, &err, ctx) : LP_EXIT_OK;
    json_decref(body);
    json_decref(ans);
    lp_client_free(c);
    return rc;
}
