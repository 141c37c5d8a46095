/*
 * device_config.h — configuration of `livepush agent` and `livepush device`
 * (internal to the livepush command).
 *
 * As for the server (server/config.h), one table gives every option its
 * flag, environment variable, config-file key, default and help, and the
 * layers apply in order, each overriding the one before:
 *
 *     defaults  <  config file  <  environment  <  command-line flags
 *
 * The config file is --config FILE, else LIVEPUSH_AGENT_CONFIG, else none:
 * a JSON object read strictly (unknown keys, wrong types and bad values
 * are refused, naming the key).  Keys are the flag names with '_' for '-'.
 *
 * One option gathers several values: the device's attributes (release
 * targeting, livepush/targeting.h), given as --attribute KEY=VALUE
 * (repeatable), in the file as "attribute": {"region": "eu", ...}, and in
 * LIVEPUSH_ATTRIBUTES as the same object in JSON.  Each layer sets the
 * attributes it names and replaces earlier layers' values of those names;
 * a name given twice in one layer is refused.
 *
 * lp_devcfg_device turns the result into an lp_device_config.  The only
 * other input is the environment variable LIVEPUSH_CRASH_AT, read here and
 * nowhere else: it is the updater's crash_at fault injection, for tests.
 */
#ifndef LP_CLI_DEVICE_CONFIG_H
#define LP_CLI_DEVICE_CONFIG_H

#include "livepush/updater.h"
#include "server/log.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define LP_DEVCFG_PATH_MAX 4096
#define LP_DEVCFG_URL_MAX 2048
#define LP_DEVCFG_TEXT_MAX 64
#define LP_DEVCFG_TOKEN_MAX 512
#define LP_DEVCFG_DEFAULT_ROOT_BASE "/var/lib/livepush"

typedef struct lp_devcfg {
    char server[LP_DEVCFG_URL_MAX + 1];        /* "": none */
    char app[LP_NET_MAX_APP + 1];
    char root[LP_DEVCFG_PATH_MAX];             /* "": /var/lib/livepush/<app> */
    char trusted_root[LP_DEVCFG_PATH_MAX];     /* "": none given */
    char channel[LP_DEVICE_MAX_CHANNEL + 1];
    char platform[LP_DEVCFG_TEXT_MAX + 1];     /* "": the kernel's */
    char arch[LP_DEVCFG_TEXT_MAX + 1];
    char runtime_version[LP_DEVCFG_TEXT_MAX + 1];
    unsigned interval_s;
    unsigned jitter_s;
    lp_apply_policy auto_apply;
    unsigned keep;
    unsigned probation_window_s;
    unsigned probation_launches;
    char hooks_dir[LP_DEVCFG_PATH_MAX];        /* "": <root>/hooks */
    unsigned hook_timeout_s;
    uint64_t reserve_bytes;
    bool verify_all;
    char device_token_file[LP_DEVCFG_PATH_MAX];
    bool allow_http;
    bool report;                               /* send events */
    bool deltas;                               /* use deltas (lp_device_config.no_deltas) */
    unsigned attempts;
    unsigned connect_timeout_s;
    unsigned stall_timeout_s;
    unsigned max_events;
    char lifecycle_log[LP_DEVCFG_PATH_MAX];    /* "": none (docs/lifecycle.md) */
    lp_log_format log_format;
    lp_log_level log_level;
    /* device attributes (targeting): names, values, and the layer that set
     * each (1 file, 2 environment, 3 flags) */
    char attr_key[LP_TARGETING_MAX_ATTRIBUTES][LP_TARGETING_MAX_KEY + 1];
    char attr_value[LP_TARGETING_MAX_ATTRIBUTES][LP_TARGETING_MAX_VALUE + 1];
    int attr_layer[LP_TARGETING_MAX_ATTRIBUTES];
    size_t attribute_count;
    /* filled by lp_devcfg_device */
    lp_device_attribute attributes[LP_TARGETING_MAX_ATTRIBUTES];
    char root_buf[LP_DEVCFG_PATH_MAX];
    char token[LP_DEVCFG_TOKEN_MAX + 1];
} lp_devcfg;

/* getopt_long codes of the table's options start here; a command's own
 * options use codes below it. */
#define LP_DEVCFG_OPT_BASE 2000

/* Parses argv with the table's options plus the command's `own` (a
 * NULL-terminated struct option list, may be NULL; `shortopts` its short
 * options, e.g. "+h" to stop at the first argument) and loads the
 * configuration into *cfg.  own options go to on_own(ctx, code, optarg),
 * which returns -1 to go on or an exit code; usage(f, ctx) prints the
 * command's help.  *first_arg gets the index of
 * the first argument.  Returns -1 when the command goes on, else the exit
 * code (usage errors print the message and `usage` on stderr: 2; --help
 * prints usage on stdout: 0). */
int lp_devcfg_parse(int argc, char **argv, const char *cmd, const char *shortopts,
                    const struct option *own, int (*on_own)(void *ctx, int code, const char *arg),
                    void *ctx, void (*usage)(FILE *f, void *ctx), lp_devcfg *cfg, int *first_arg);

/* Prints the table's options (for --help). */
void lp_devcfg_help(FILE *f);

/* Fills *out from cfg (pointers into cfg; the device token file is read
 * here).  Errors: LP_ERR_IO / LP_ERR_NOT_FOUND / LP_ERR_INVALID_ARG for the
 * token file. */
lp_status lp_devcfg_device(lp_devcfg *cfg, lp_device_config *out, lp_error *err);

/* lp_devcfg_device and lp_device_open, with the callbacks of `extra` (may
 * be NULL).  Returns -1 when *out is open, else the exit code after printing
 * "livepush <cmd>: <why>" (2 for a configuration error, 1 otherwise). */
int lp_devcfg_open(lp_devcfg *cfg, const char *cmd, const lp_device_config *extra,
                   lp_device **out);

#endif
