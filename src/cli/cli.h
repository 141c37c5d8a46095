/*
 * cli.h — the livepush command: shared declarations of its subcommands.
 *
 * Each subcommand lives in its own cmd_<name>.c and has the signature of
 * lp_cli_fn: it gets argv starting at its own name (so getopt_long works as
 * in a main) and returns the process exit code.
 *
 * Exit codes (documented in docs/cli.md):
 *   0  success
 *   1  the operation failed (reason on stderr)
 *   2  usage error (bad or missing arguments)
 * and, for the commands that talk to a server's management API (upload,
 * inspect, releases, rollback, app, channel, token, sign, cancel; see
 * api_client.h):
 *   3  refused for authentication (HTTP 401 or 403)
 *   4  refused by the server (any other 4xx: not found, conflict, bad bundle)
 *   5  a release of an app whose publisher signs waits for more signatures
 */
#ifndef LP_CLI_H
#define LP_CLI_H

#include "livepush/error.h"

#include <stddef.h>

#define LP_EXIT_OK 0
#define LP_EXIT_FAIL 1
#define LP_EXIT_USAGE 2

typedef int (*lp_cli_fn)(int argc, char **argv);

int lp_cmd_keygen(int argc, char **argv);
int lp_cmd_tuf(int argc, char **argv);
int lp_cmd_repo(int argc, char **argv);
int lp_cmd_demo(int argc, char **argv);
int lp_cmd_serve(int argc, char **argv);
int lp_cmd_upload(int argc, char **argv);
int lp_cmd_inspect(int argc, char **argv);
int lp_cmd_releases(int argc, char **argv);
int lp_cmd_rollback(int argc, char **argv);
int lp_cmd_app(int argc, char **argv);
int lp_cmd_channel(int argc, char **argv);
int lp_cmd_rollout(int argc, char **argv);
int lp_cmd_token(int argc, char **argv);
/* `livepush audit list|verify` (cmd_audit.c). */
int lp_cmd_audit(int argc, char **argv);
/* `livepush export` and `livepush timestamp refresh` (cmd_export.c). */
int lp_cmd_export(int argc, char **argv);
int lp_cmd_timestamp(int argc, char **argv);
int lp_cmd_devices(int argc, char **argv);
int lp_cmd_events(int argc, char **argv);
int lp_cmd_sign(int argc, char **argv);
/* `livepush approve`: `sign` worded as a quorum's approval (cmd_sign.c). */
int lp_cmd_approve(int argc, char **argv);
int lp_cmd_cancel(int argc, char **argv);
int lp_cmd_agent(int argc, char **argv);
int lp_cmd_device(int argc, char **argv);
int lp_cmd_control(int argc, char **argv);
/* `livepush delta make|apply|info` (cmd_delta.c). */
int lp_cmd_delta(int argc, char **argv);
/* `livepush delta tree ...` (cmd_delta_tree.c); argv starts at "tree". */
int lp_cmd_delta_tree(int argc, char **argv);
/* Value of `--sync on|off` of the delta apply commands into *sync (1 on, 0
 * off); returns 0 when v is neither. */
int lp_cli_delta_sync_arg(const char *v, int *sync);
/* `livepush status|mark-healthy|launch`: shorthands for `livepush device ...`. */
int lp_cmd_device_alias(int argc, char **argv);
/* `livepush run -- COMMAND`: the app under a supervisor that restarts it into
 * each new release without dropping a connection (cmd_run.c). */
int lp_cmd_run(int argc, char **argv);

/* One entry of a command table: the name typed, the function run, one line
 * for the usage text. */
typedef struct {
    const char *name;
    lp_cli_fn run;
    const char *summary;
} lp_cli_command;

/*
 * The whole of a main: `PROG --help|--version`, or runs the command of
 * `table` named by argv[1] with argv starting at that name.  Prints the
 * usage (to stderr, exit 2) when there is no command or an unknown one.
 */
int lp_cli_dispatch(const char *prog, const lp_cli_command *table, size_t n, int argc,
                    char **argv);

/* Prints "livepush: <context>: <message>" to stderr and returns LP_EXIT_FAIL. */
int lp_cli_fail(const lp_error *err, const char *context);

#endif
