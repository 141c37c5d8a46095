/*
 * main.c — entry point of the livepush command: every subcommand, the
 * publisher's, the server's and the device's, in one table handed to
 * lp_cli_dispatch.  livepush-agent (main_agent.c) is the device's subset,
 * built without the server's libraries.  Everything the command does lives in
 * liblivepush; the cmd_*.c files only parse options and print.
 */
#include "cli/cli.h"

static const lp_cli_command commands[] = {
    {"demo", lp_cmd_demo, "run a local demonstration of the trust core"},
    {"keygen", lp_cmd_keygen, "generate a signing key (ed25519, ecdsa, rsa)"},
    {"repo", lp_cmd_repo, "write a TUF repository: create, keys, targets, delegations, publish"},
    {"serve", lp_cmd_serve, "run the livepush server (management API, TUF repositories)"},
    {"delta", lp_cmd_delta, "make, apply and inspect binary deltas between two files"},
    {"tuf", lp_cmd_tuf, "low-level TUF client: init, refresh, download"},
    {"upload", lp_cmd_upload, "upload a bundle to a server and publish it as a release"},
    {"inspect", lp_cmd_inspect, "show an app (channels, latest releases) or one release"},
    {"releases", lp_cmd_releases, "list an app's releases"},
    {"rollback", lp_cmd_rollback, "republish an earlier release as a new one"},
    {"rollout", lp_cmd_rollout, "staged rollouts: share, pause, halt, A/B split, windows, guardrail"},
    {"approve", lp_cmd_approve, "approve a release that waits for its quorum (k of n release keys)"},
    {"sign", lp_cmd_sign, "sign a release that waits for the publisher's signatures"},
    {"cancel", lp_cmd_cancel, "withdraw a release that waits for signatures"},
    {"app", lp_cmd_app, "list, create and show apps on a server"},
    {"channel", lp_cmd_channel, "list and create an app's channels"},
    {"token", lp_cmd_token, "create, list and revoke API tokens"},
    {"audit", lp_cmd_audit, "list the server's audit log; verify its hash chain"},
    {"export", lp_cmd_export, "write an app's repository as static files any web server can serve"},
    {"timestamp", lp_cmd_timestamp, "re-sign an app's timestamp.json (refresh), for exports too"},
    {"devices", lp_cmd_devices, "list the devices that report events for an app"},
    {"events", lp_cmd_events, "list the events devices sent (updates, failures, rollbacks)"},
    {"agent", lp_cmd_agent, "device: the update daemon (check, download, verify, switch, report)"},
    {"device", lp_cmd_device, "device: status, mark-healthy, launch, rollback, check, apply"},
    {"control", lp_cmd_control, "device: drive a running agent through its control socket"},
    {"status", lp_cmd_device_alias, "device: what is installed and running (= device status)"},
    {"mark-healthy", lp_cmd_device_alias, "device: confirm the current release (= device mark-healthy)"},
    {"launch", lp_cmd_device_alias, "device: count a launch and exec the app (= device launch)"},
    {"run", lp_cmd_run, "device: run the app; restart it into new releases, no connection dropped"},
};

int main(int argc, char **argv)
{
    return lp_cli_dispatch("livepush", commands, sizeof commands / sizeof commands[0], argc, argv);
}
