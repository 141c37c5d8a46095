/*
 * main_agent.c — entry point of livepush-agent, the command installed on
 * devices: the update daemon and the device's own commands, and nothing of
 * the publisher or the server.  It is linked with --as-needed, so it does not
 * load libarchive, SQLite or their dependencies: a device pays in memory only
 * for what it runs (docs/agent.md, "Memory").
 *
 * Every command here is also in `livepush` (main.c) under the same name and
 * with the same options.
 */
#include "cli/cli.h"

static const lp_cli_command commands[] = {
    {"agent", lp_cmd_agent, "the update daemon (check, download, verify, switch, report)"},
    {"device", lp_cmd_device, "status, mark-healthy, launch, rollback, check, apply"},
    {"control", lp_cmd_control, "drive a running agent through its control socket"},
    {"status", lp_cmd_device_alias, "what is installed and running (= device status)"},
    {"mark-healthy", lp_cmd_device_alias, "confirm the current release (= device mark-healthy)"},
    {"launch", lp_cmd_device_alias, "count a launch and exec the app (= device launch)"},
    {"run", lp_cmd_run, "run the app; restart it into new releases, no connection dropped"},
};

int main(int argc, char **argv)
{
    return lp_cli_dispatch("livepush-agent", commands, sizeof commands / sizeof commands[0],
                           argc, argv);
}
