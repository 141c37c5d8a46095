/*
 * cmd_device.c — `livepush device`: the device's own commands, for the
 * people and scripts that run a device (the daemon is `livepush agent`).
 *
 *   livepush device status [--json]          what is installed, current, on probation, bad
 *   livepush device mark-healthy [--id N]    end the probation of the current release
 *   livepush device launch -- CMD [ARGS...]  count a launch, then exec the app
 *   livepush device rollback [--to N] [--reason TEXT]
 *   livepush device check [--json] [--verbose]
 *   livepush device apply [--dry-run] [--json]
 *   livepush device channel [NAME | --reset]
 *   livepush device crash-points             the fault-injection points (tests)
 *
 * Every subcommand takes the options of `livepush agent` (device_config.h:
 * --root, --app, --server, ...), so one config file serves both.  This
 * file holds the dispatch and the local subcommands; launch, check and
 * apply are in cmd_device_run.c.  `livepush rollback` (the publisher's,
 * which republishes an old release on the server) is a different thing:
 * `device rollback` switches this device back to a release it has kept.
 *
 * Exit codes: 0 success, 1 failure (reason on stderr), 2 usage error.
 */
#include "cli/cmd_device.h"

#include "agent/agent.h"
#include "cli/api_client.h"
#include "cli/cli.h"
#include "cli/device_config.h"
#include "core/timeutil.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void lp_device_cmd_common_help(FILE *f)
{
    fprintf(f, "\nDevice options (as `livepush agent`; flags override environment variables,\n"
               "which override the config file):\n");
    lp_devcfg_help(f);
    fprintf(f, "\nExit codes: 0 success, 1 failure, 2 usage error.\n");
}

/* Options of the local subcommands. */
typedef struct local_opts {
    const char *usage_text;
    bool json, reset;
    const char *id, *to, *reason;
} local_opts;

static void local_usage(FILE *f, void *ctx)
{
    const local_opts *o = ctx;
    fputs(o->usage_text, f);
    lp_device_cmd_common_help(f);
}

static int on_local(void *ctx, int code, const char *arg)
{
    local_opts *o = ctx;
    switch (code) {
    case 'j': o->json = true; break;
    case 'r': o->reset = true; break;
    case 'i': o->id = arg; break;
    case 't': o->to = arg; break;
    case 'R': o->reason = arg; break;
    default: return LP_EXIT_USAGE;
    }
    return -1;
}

/* Parses and opens the device; -1 when it is open. */
static int open_local(int argc, char **argv, const char *cmd, local_opts *o, lp_devcfg *cfg,
                      int *first, lp_device **dev)
{
    static const struct option own[] = {
        {"json", no_argument, NULL, 'j'},          {"reset", no_argument, NULL, 'r'},
        {"id", required_argument, NULL, 'i'},      {"to", required_argument, NULL, 't'},
        {"reason", required_argument, NULL, 'R'},  {NULL, 0, NULL, 0}};
    int rc = lp_devcfg_parse(argc, argv, cmd, "h", own, on_local, o, local_usage, cfg, first);
    if (rc >= 0)
        return rc;
    return lp_devcfg_open(cfg, cmd, NULL, dev);
}

static bool parse_id(const char *s, const char *what, const char *cmd, uint64_t *id)
{
    if (!s || lp_agent_parse_id(s, id))
        return true;
    fprintf(stderr, "livepush %s: %s '%s' is not a release id (a version code)\n", cmd, what, s);
    return false;
}

/* ---- status ---------------------------------------------------------------- */

static const char *version_of(const lp_updater_status *s, uint64_t id)
{
    for (size_t i = 0; i < s->release_count; i++)
        if (s->releases[i].id == id)
            return s->releases[i].version;
    return "";
}

static json_t *status_json(lp_device *d, const lp_updater_status *s, const char *channel,
                           bool stored, size_t queued, uint64_t dropped)
{
    lp_updater *u = lp_device_updater(d);
    json_t *rel = json_array(), *bad = json_array();
    for (size_t i = 0; i < s->release_count; i++)
        json_array_append_new(rel, json_pack("{s:I,s:s,s:I}", "id", (json_int_t)s->releases[i].id,
                                             "version", s->releases[i].version, "installed_at",
                                             (json_int_t)s->releases[i].installed_at));
    for (size_t i = 0; i < s->bad_count; i++)
        json_array_append_new(bad, json_pack("{s:I,s:s,s:I}", "id", (json_int_t)s->bad[i].id,
                                             "reason", s->bad[i].reason, "at",
                                             (json_int_t)s->bad[i].at));
    json_t *cur = s->current ? json_pack("{s:I,s:s}", "id", (json_int_t)s->current, "version",
                                         version_of(s, s->current))
                             : json_null();
    json_t *prev = s->previous ? json_pack("{s:I,s:s}", "id", (json_int_t)s->previous,
                                           "version", version_of(s, s->previous))
                               : json_null();
    json_t *prob = s->on_probation
                       ? json_pack("{s:I,s:I,s:I,s:I,s:I}", "id", (json_int_t)s->current,
                                   "since", (json_int_t)s->probation_since, "launches",
                                   (json_int_t)s->probation_launches, "max_launches",
                                   (json_int_t)s->probation_max_launches, "window_s",
                                   (json_int_t)s->probation_window_s)
                       : json_null();
    json_t *lerr = s->last_error ? json_pack("{s:I,s:s}", "at", (json_int_t)s->last_error_at,
                                             "message", s->last_error)
                                 : json_null();
    return json_pack("{s:s,s:s,s:s,s:b,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:{s:I,s:I}}", "device_id",
                     lp_updater_device_id(u), "root", lp_updater_root(u), "channel", channel,
                     "channel_stored", stored, "current", cur, "previous", prev, "probation",
                     prob, "releases", rel, "bad", bad, "last_check",
                     s->last_check ? json_integer(s->last_check) : json_null(), "last_error",
                     lerr, "events", "queued", (json_int_t)queued, "dropped",
                     (json_int_t)dropped);
}

static void status_text(lp_device *d, const lp_updater_status *s, const char *channel,
                        bool stored, size_t queued, uint64_t dropped)
{
    lp_updater *u = lp_device_updater(d);
    char t[24];
    printf("device      %s\nroot        %s\nchannel     %s%s\n", lp_updater_device_id(u),
           lp_updater_root(u), channel, stored ? " (set on this device)" : "");
    if (s->current)
        printf("current     %llu (%s)\n", (unsigned long long)s->current,
               version_of(s, s->current));
    else
        printf("current     none\n");
    if (s->previous)
        printf("previous    %llu (%s)\n", (unsigned long long)s->previous,
               version_of(s, s->previous));
    if (s->on_probation) {
        lp_client_format_time(s->probation_since + s->probation_window_s, t);
        printf("probation   %u of %u launches, to be marked healthy by %s\n",
               s->probation_launches, s->probation_max_launches, t);
    } else {
        printf("probation   none\n");
    }
    for (size_t i = 0; i < s->release_count; i++) {
        lp_client_format_time(s->releases[i].installed_at, t);
        printf("%-11s %llu (%s), installed %s%s\n", i ? "" : "releases",
               (unsigned long long)s->releases[i].id, s->releases[i].version, t,
               s->releases[i].id == s->current ? ", current" : "");
    }
    for (size_t i = 0; i < s->bad_count; i++) {
        lp_client_format_time(s->bad[i].at, t);
        printf("%-11s %llu at %s: %s\n", i ? "" : "bad", (unsigned long long)s->bad[i].id, t,
               s->bad[i].reason);
    }
    lp_client_format_time(s->last_check, t);
    printf("last check  %s\n", t);
    if (s->last_error) {
        lp_client_format_time(s->last_error_at, t);
        printf("last error  %s: %s\n", t, s->last_error);
    }
    printf("events      %zu queued, %llu dropped\n", queued, (unsigned long long)dropped);
}

static int cmd_status(int argc, char **argv)
{
    local_opts o = {.usage_text = "usage: livepush device status [--json] [options]\n\n"
                                  "Shows the device: its id, channel, current and previous "
                                  "release, the probation,\nthe installed and bad releases, "
                                  "the last check and error, queued events.\n"};
    lp_devcfg cfg;
    lp_device *d;
    int first;
    int rc = open_local(argc, argv, "device status", &o, &cfg, &first, &d);
    if (rc >= 0)
        return rc;
    lp_error err;
    lp_updater_status s;
    char channel[LP_DEVICE_MAX_CHANNEL + 1];
    bool stored;
    size_t queued = 0;
    uint64_t dropped = 0;
    if (lp_device_channel(d, channel, &stored, &err) ||
        lp_events_pending(lp_device_events(d), &queued, &dropped, &err) ||
        lp_updater_status_get(lp_device_updater(d), &s, &err)) {
        lp_device_close(d);
        return lp_cli_fail(&err, "device status");
    }
    if (o.json) {
        json_t *j = status_json(d, &s, channel, stored, queued, dropped);
        lp_client_print_json(j);
        json_decref(j);
    } else {
        status_text(d, &s, channel, stored, queued, dropped);
    }
    lp_updater_status_free(&s);
    lp_device_close(d);
    return LP_EXIT_OK;
}

/* ---- mark-healthy, rollback, channel ----------------------------------------------- */

static int cmd_mark_healthy(int argc, char **argv)
{
    local_opts o = {.usage_text = "usage: livepush device mark-healthy [--id N] [options]\n\n"
                                  "Confirms that the current release works: ends its "
                                  "probation, so it is kept.\nWith --id, only if release N is "
                                  "the current one (a late report from a release\nthat was "
                                  "rolled back confirms nothing).\n"};
    lp_devcfg cfg;
    lp_device *d;
    int first;
    int rc = open_local(argc, argv, "device mark-healthy", &o, &cfg, &first, &d);
    if (rc >= 0)
        return rc;
    uint64_t id = 0;
    lp_error err;
    if (!parse_id(o.id, "--id", "device mark-healthy", &id)) {
        lp_device_close(d);
        return LP_EXIT_USAGE;
    }
    lp_updater_status s;
    bool pending = false;
    if (!lp_updater_status_get(lp_device_updater(d), &s, &err)) {
        pending = s.on_probation;
        lp_updater_status_free(&s);
    }
    if (lp_device_mark_healthy(d, id, &err)) {
        lp_device_close(d);
        return lp_cli_fail(&err, "device mark-healthy");
    }
    printf(pending ? "the current release is marked healthy\n"
                   : "the current release was not on probation\n");
    lp_device_close(d);
    return LP_EXIT_OK;
}

static int cmd_rollback(int argc, char **argv)
{
    local_opts o = {.usage_text = "usage: livepush device rollback [--to N] [--reason TEXT] "
                                  "[options]\n\n"
                                  "Switches this device back to release N (a release it has "
                                  "kept; default: the\nprevious one) and marks the current "
                                  "release bad here, so it is not installed\nagain.  (To "
                                  "publish an older release for every device, the publisher "
                                  "runs\n`livepush rollback --target V`.)\n"};
    lp_devcfg cfg;
    lp_device *d;
    int first;
    int rc = open_local(argc, argv, "device rollback", &o, &cfg, &first, &d);
    if (rc >= 0)
        return rc;
    uint64_t to = 0;
    lp_error err;
    if (!parse_id(o.to, "--to", "device rollback", &to)) {
        lp_device_close(d);
        return LP_EXIT_USAGE;
    }
    if (lp_device_rollback(d, to, o.reason, &err)) {
        lp_device_close(d);
        return lp_cli_fail(&err, "device rollback");
    }
    lp_updater_status s;
    if (!lp_updater_status_get(lp_device_updater(d), &s, &err)) {
        printf("rolled back: release %llu (%s) is current\n", (unsigned long long)s.current,
               version_of(&s, s.current));
        lp_updater_status_free(&s);
    }
    size_t sent;
    if (cfg.server[0] && cfg.report)
        lp_device_send_events(d, &sent, &err);
    lp_device_close(d);
    return LP_EXIT_OK;
}

static int cmd_channel(int argc, char **argv)
{
    local_opts o = {.usage_text = "usage: livepush device channel [NAME | --reset] [options]\n\n"
                                  "Shows the device's channel, or sets it to NAME on this "
                                  "device (it overrides\n--channel and takes effect at the "
                                  "next check), or with --reset goes back to\nthe configured "
                                  "channel.  The device never moves to a lower version code:\n"
                                  "after a switch it waits for a higher release on the new "
                                  "channel.\n"};
    lp_devcfg cfg;
    lp_device *d;
    int first;
    int rc = open_local(argc, argv, "device channel", &o, &cfg, &first, &d);
    if (rc >= 0)
        return rc;
    lp_error err;
    lp_error_clear(&err);
    const char *name = first < argc ? argv[first] : NULL;
    if (argc - first > 1 || (name && o.reset)) {
        fprintf(stderr, "livepush device channel: give one NAME or --reset\n");
        lp_device_close(d);
        return LP_EXIT_USAGE;
    }
    lp_status st = LP_OK;
    if (name || o.reset)
        st = lp_device_set_channel(d, name, &err);
    char channel[LP_DEVICE_MAX_CHANNEL + 1];
    bool stored = false;
    if (!st)
        st = lp_device_channel(d, channel, &stored, &err);
    lp_device_close(d);
    if (st == LP_ERR_INVALID_ARG) {
        fprintf(stderr, "livepush device channel: %s\n", err.msg);
        return LP_EXIT_USAGE;
    }
    if (st)
        return lp_cli_fail(&err, "device channel");
    printf("%s%s\n", channel, stored ? " (set on this device)" : " (configured)");
    return LP_EXIT_OK;
}

/* ---- crash points ------------------------------------------------------------------ */

static int cmd_crash_points(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: livepush device crash-points\n\n"
               "Lists the crash points of the updater, one per line: name, the operations that\n"
               "reach it (update, rollback), what has happened when it is reached.  With\n"
               "LIVEPUSH_CRASH_AT=<point>[@N] in the environment of `livepush agent` or\n"
               "`livepush device ...`, the process kills itself with SIGKILL there (the N-th\n"
               "time): a fault-injection facility for tests, never for production.\n");
        return LP_EXIT_OK;
    }
    if (argc > 1) {
        fprintf(stderr, "livepush device crash-points: takes no arguments\n");
        return LP_EXIT_USAGE;
    }
    size_t n;
    const lp_crash_point_info *p = lp_agent_crash_points(&n);
    for (size_t i = 0; i < n; i++)
        printf("%s\t%s\t%s\n", p[i].name,
               p[i].scenarios == (LP_CRASH_IN_UPDATE | LP_CRASH_IN_ROLLBACK) ? "update,rollback"
               : p[i].scenarios == LP_CRASH_IN_ROLLBACK                        ? "rollback"
                                                                               : "update",
               p[i].where);
    return LP_EXIT_OK;
}

/* ---- dispatch ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    lp_cli_fn run;
    const char *summary;
} subs[] = {
    {"status", cmd_status, "what is installed, current, on probation, bad; last check"},
    {"mark-healthy", cmd_mark_healthy, "confirm the current release: end its probation"},
    {"launch", lp_device_cmd_launch, "count a launch (rolls back past the limit), exec the app"},
    {"rollback", cmd_rollback, "switch back to a kept release; mark the current one bad"},
    {"check", lp_device_cmd_check, "ask the server for a release for this device"},
    {"apply", lp_device_cmd_apply, "download, verify and activate it now (--dry-run: stage)"},
    {"channel", cmd_channel, "show or set the device's channel"},
    {"crash-points", cmd_crash_points, "list the fault-injection points (for tests)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: livepush device <command> [options]\n\n"
               "The device's own commands (the daemon is `livepush agent`):\n");
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        fprintf(f, "  %-13s %s\n", subs[i].name, subs[i].summary);
    fprintf(f, "\n'livepush device <command> --help' describes a command's options.\n"
               "Exit codes: 0 success, 1 failure, 2 usage error.\n");
}

int lp_cmd_device(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return LP_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return LP_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (!strcmp(argv[1], subs[i].name))
            return subs[i].run(argc - 1, argv + 1);
    fprintf(stderr, "livepush device: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return LP_EXIT_USAGE;
}

/* `livepush status`, `livepush mark-healthy` and `livepush launch` are the
 * same as `livepush device <name>`: the commands an app's own scripts call
 * most, kept short.  argv[0] is the name either way. */
int lp_cmd_device_alias(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (!strcmp(argv[0], subs[i].name))
            return subs[i].run(argc, argv);
    fprintf(stderr, "livepush: '%s' is not a device command\n", argv[0]);
    return LP_EXIT_USAGE;
}
