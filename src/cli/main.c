/*
 * main.c — entry point of the livepush command: finds the subcommand by name
 * in one table and hands it argv.  Everything the command does lives in
 * liblivepush; the cmd_*.c files only parse options and print.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    lp_cli_fn run;
    const char *summary;
} commands[] = {
    {"demo", lp_cmd_demo, "run a local demonstration of the trust core"},
    {"keygen", lp_cmd_keygen, "generate a signing key (ed25519, ecdsa, rsa)"},
    {"repo", lp_cmd_repo, "write a TUF repository: create, keys, targets, delegations, publish"},
    {"serve", lp_cmd_serve, "run the livepush server (management API, TUF repositories)"},
    {"tuf", lp_cmd_tuf, "low-level TUF client: init, refresh, download"},
    {"upload", lp_cmd_upload, "upload a bundle to a server and publish it as a release"},
    {"inspect", lp_cmd_inspect, "show an app (channels, latest releases) or one release"},
    {"releases", lp_cmd_releases, "list an app's releases"},
    {"rollback", lp_cmd_rollback, "republish an earlier release as a new one"},
    {"sign", lp_cmd_sign, "sign a release that waits for the publisher's signatures"},
    {"cancel", lp_cmd_cancel, "withdraw a release that waits for signatures"},
    {"app", lp_cmd_app, "list, create and show apps on a server"},
    {"channel", lp_cmd_channel, "list and create an app's channels"},
    {"token", lp_cmd_token, "create, list and revoke API tokens"},
    {"devices", lp_cmd_devices, "list the devices that report events for an app"},
    {"events", lp_cmd_events, "list the events devices sent (updates, failures, rollbacks)"},
    {"agent", lp_cmd_agent, "device: the update daemon (check, download, verify, switch, report)"},
    {"device", lp_cmd_device, "device: status, mark-healthy, launch, rollback, check, apply"},
    {"control", lp_cmd_control, "device: drive a running agent through its control socket"},
    {"status", lp_cmd_device_alias, "device: what is installed and running (= device status)"},
    {"mark-healthy", lp_cmd_device_alias, "device: confirm the current release (= device mark-healthy)"},
    {"launch", lp_cmd_device_alias, "device: count a launch and exec the app (= device launch)"},
};

int lp_cli_fail(const lp_error *err, const char *context)
{
    fprintf(stderr, "livepush: %s: %s\n", context, err->msg[0] ? err->msg : lp_status_name(err->code));
    return LP_EXIT_FAIL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: livepush <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-13s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'livepush <command> --help' describes a command's options.\n"
               "Exit codes: 0 success, 1 failure (reason on stderr), 2 usage error;\n"
               "commands that talk to a server also: 3 authentication refused (HTTP 401/403),\n"
               "4 refused by the server (other 4xx), 5 a release waits for more signatures.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return LP_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return LP_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("livepush %s\n", LP_VERSION_STRING);
        return LP_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "livepush: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return LP_EXIT_USAGE;
}
