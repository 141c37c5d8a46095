/*
 * dispatch.c — what the two mains share: looking a subcommand up in a
 * table, the usage text, --help and --version, and the one way a command
 * reports a failure (lp_cli_fail).
 */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

int lp_cli_fail(const lp_error *err, const char *context)
{
    fprintf(stderr, "livepush: %s: %s\n", context, err->msg[0] ? err->msg : lp_status_name(err->code));
    return LP_EXIT_FAIL;
}

static void usage(FILE *f, const char *prog, const lp_cli_command *table, size_t n)
{
    fprintf(f, "usage: %s <command> [options]\n\ncommands:\n", prog);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  %-13s %s\n", table[i].name, table[i].summary);
    fprintf(f, "\n'%s <command> --help' describes a command's options.\n"
               "Exit codes: 0 success, 1 failure (reason on stderr), 2 usage error;\n"
               "commands that talk to a server also: 3 authentication refused (HTTP 401/403),\n"
               "4 refused by the server (other 4xx), 5 a release waits for more signatures.\n",
            prog);
}

int lp_cli_dispatch(const char *prog, const lp_cli_command *table, size_t n, int argc,
                    char **argv)
{
    if (argc < 2) {
        usage(stderr, prog, table, n);
        return LP_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout, prog, table, n);
        return LP_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("%s %s\n", prog, LP_VERSION_STRING);
        return LP_EXIT_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (!strcmp(argv[1], table[i].name))
            return table[i].run(argc - 1, argv + 1);
    fprintf(stderr, "%s: unknown command '%s'\n\n", prog, argv[1]);
    usage(stderr, prog, table, n);
    return LP_EXIT_USAGE;
}
