/*
 * cmd_device.h — the subcommands of `livepush device` (internal): each gets
 * argv starting at its own name and returns the exit code.  cmd_device.c
 * holds the local ones and the dispatch, cmd_device_run.c the ones that
 * start an app or talk to the server.
 */
#ifndef LP_CLI_CMD_DEVICE_H
#define LP_CLI_CMD_DEVICE_H

#include <stdio.h>

int lp_device_cmd_launch(int argc, char **argv);
int lp_device_cmd_check(int argc, char **argv);
int lp_device_cmd_apply(int argc, char **argv);

/* The options every subcommand takes, for its --help. */
void lp_device_cmd_common_help(FILE *f);

#endif
