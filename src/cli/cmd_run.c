/*
 * cmd_run.c — `livepush run`: runs an app from its install root under a
 * supervisor that restarts it into each new release without dropping a
 * connection (swap/supervise.h; docs/run.md).
 *
 *   livepush run [--listen [NAME=]ADDR]... [options] -- COMMAND [ARGS...]
 *
 * This file parses the options (the supervisor's own, plus the device
 * options of device_config.h, of which --root, --app, the probation limits,
 * the hooks and the log settings matter here), opens the install root,
 * binds the sockets, prints one "listening on ADDRESS" line per socket on
 * stdout (a port 0 shows the port it got), and runs the supervisor until
 * SIGTERM or SIGINT.  --swap names files the app swaps in itself, so that
 * a release changing only those is adopted without a restart.  The
 * environment is read here, not in the library:
 * PATH for a command without '/', and the folder of the notify socket
 * (--runtime-dir, else XDG_RUNTIME_DIR, else TMPDIR, else /tmp).
 *
 * Exit code: the app's (128 + N when signal N ended it), or 1 when the
 * supervisor could not start or its loop failed, 2 for a usage error.
 */
#include "cli/cli.h"
#include "cli/device_config.h"
#include "livepush/bundle.h"
#include "swap/supervise.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SECONDS_MAX 86400u

typedef struct run_opts {
    const char *listen[LP_SUP_MAX_LISTEN];
    size_t listen_count;
    const char *swap[LP_SUP_MAX_SWAP];
    size_t swap_count;
    lp_sup_config sup;
    const char *runtime_dir;
    bool too_many;
} run_opts;

static void usage(FILE *f, void *ctx)
{
    (void)ctx;
    fprintf(f,
            "usage: livepush run [--listen [NAME=]ADDR]... [options] -- COMMAND [ARGS...]\n"
            "\n"
            "Runs COMMAND from the current release of the install root and keeps it\n"
            "running.  The listening sockets are opened here and passed to the app as fds\n"
            "3.. (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES); the app says it is ready by\n"
            "sending READY=1 to $NOTIFY_SOCKET.  When `current` switches to another\n"
            "release (or on SIGHUP), the new version is started with the same sockets;\n"
            "once it is ready the old one gets SIGTERM and finishes its connections.  If\n"
            "the new one exits or is not ready in time, the old one keeps serving and the\n"
            "release is rolled back.  A process that exits on its own is started again\n"
            "after a back-off.  SIGTERM or SIGINT stops the app and exits with its status.\n"
            "COMMAND with a '/' is relative to the release folder (its working folder).\n"
            "Prints \"listening on ADDRESS\" on stdout for each socket; logs go to stderr.\n"
            "\n"
            "  --listen [NAME=]ADDR           a socket to pass (repeatable, at most %u):\n"
            "                                 IPV4:PORT, [IPV6]:PORT, unix:PATH or /PATH;\n"
            "                                 port 0 takes a free one; NAME goes in\n"
            "                                 LISTEN_FDNAMES (default \"unknown\")\n"
            "  --backlog N                    listen backlog (default SOMAXCONN)\n"
            "  --ready-timeout SECONDS        time a new process has to say READY=1 (30)\n"
            "  --stop-timeout SECONDS         SIGKILL this long after SIGTERM (10)\n"
            "  --restart-delay SECONDS        wait before starting again after an exit (1),\n"
            "                                 doubling up to --restart-delay-max (30)\n"
            "  --restart-delay-max SECONDS\n"
            "  --swap PATH                    a file of the release that the app replaces\n"
            "                                 in place itself (a live-swapped module, e.g.\n"
            "                                 lib/handler.so; repeatable, at most %u): a\n"
            "                                 release that differs from the serving one only\n"
            "                                 in these is adopted by the process serving,\n"
            "                                 with no restart\n"
            "  --healthy-after SECONDS        mark a release on probation healthy once its\n"
            "                                 process has been ready this long (default:\n"
            "                                 never; the app or a health check does it)\n"
            "  --poll-interval SECONDS        read `current` at least this often (2)\n"
            "  --watch true|false             also watch the root with inotify (true)\n"
            "  --runtime-dir DIR              where the notify socket's folder is made\n"
            "                                 (default $XDG_RUNTIME_DIR, $TMPDIR or /tmp)\n"
            "  --help                         show this text\n"
            "SECONDS may have a fraction (0.5).\n"
            "\n"
            "Options of the install root (flags override environment variables, which\n"
            "override the config file; --root and --app say where the releases are):\n",
            LP_SUP_MAX_LISTEN, LP_SUP_MAX_SWAP);
    lp_devcfg_help(f);
    fprintf(f, "\nExit code: the app's (128+N when signal N ended it), 1 failure, 2 usage.\n");
}

/* "12", "0.5", "1.250" -> milliseconds, 0..SECONDS_MAX s. */
static bool parse_seconds(const char *s, uint32_t *ms)
{
    uint64_t whole = 0, frac = 0;
    size_t i = 0, nd = 0, nf = 0;
    while (s[i] >= '0' && s[i] <= '9' && nd < 6)
        whole = whole * 10 + (uint64_t)(s[i++] - '0'), nd++;
    if (!nd)
        return false;
    if (s[i] == '.') {
        i++;
        while (s[i] >= '0' && s[i] <= '9' && nf < 3)
            frac = frac * 10 + (uint64_t)(s[i++] - '0'), nf++;
        if (!nf)
            return false;
        for (size_t k = nf; k < 3; k++)
            frac *= 10;
    }
    if (s[i] || whole > SECONDS_MAX)
        return false;
    *ms = (uint32_t)(whole * 1000 + frac);
    return true;
}

enum {
    OPT_LISTEN = 1,
    OPT_BACKLOG,
    OPT_READY,
    OPT_STOP,
    OPT_RESTART,
    OPT_RESTART_MAX,
    OPT_HEALTHY,
    OPT_POLL,
    OPT_WATCH,
    OPT_RUNTIME,
    OPT_SWAP,
};

static const struct option own_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"backlog", required_argument, NULL, OPT_BACKLOG},
    {"ready-timeout", required_argument, NULL, OPT_READY},
    {"stop-timeout", required_argument, NULL, OPT_STOP},
    {"restart-delay", required_argument, NULL, OPT_RESTART},
    {"restart-delay-max", required_argument, NULL, OPT_RESTART_MAX},
    {"healthy-after", required_argument, NULL, OPT_HEALTHY},
    {"poll-interval", required_argument, NULL, OPT_POLL},
    {"watch", required_argument, NULL, OPT_WATCH},
    {"runtime-dir", required_argument, NULL, OPT_RUNTIME},
    {"swap", required_argument, NULL, OPT_SWAP},
    {NULL, 0, NULL, 0}};

static int bad(const char *opt, const char *arg, const char *want)
{
    fprintf(stderr, "livepush run: %s '%s': %s\n", opt, arg, want);
    return LP_EXIT_USAGE;
}

static int on_own(void *ctx, int code, const char *arg)
{
    run_opts *o = ctx;
    uint32_t *ms = NULL;
    const char *name = NULL;
    bool positive = true;
    switch (code) {
    case OPT_LISTEN: {
        if (o->listen_count >= LP_SUP_MAX_LISTEN) {
            fprintf(stderr, "livepush run: more than %u --listen addresses\n",
                    LP_SUP_MAX_LISTEN);
            return LP_EXIT_USAGE;
        }
        lp_sup_listen l;
        lp_error err;
        if (lp_sup_listen_parse(arg, &l, &err)) {
            fprintf(stderr, "livepush run: --listen: %s\n", err.msg);
            return LP_EXIT_USAGE;
        }
        o->listen[o->listen_count++] = arg;
        return -1;
    }
    case OPT_BACKLOG: {
        char *end;
        errno = 0;
        long v = strtol(arg, &end, 10);
        if (errno || *end || end == arg || v < 1 || v > 65535)
            return bad("--backlog", arg, "expected 1..65535");
        o->sup.backlog = (int)v;
        return -1;
    }
    case OPT_WATCH:
        if (!strcmp(arg, "true"))
            o->sup.no_watch = false;
        else if (!strcmp(arg, "false"))
            o->sup.no_watch = true;
        else
            return bad("--watch", arg, "expected true or false");
        return -1;
    case OPT_RUNTIME:
        o->runtime_dir = arg;
        return -1;
    case OPT_SWAP: {
        if (o->swap_count >= LP_SUP_MAX_SWAP) {
            fprintf(stderr, "livepush run: more than %u --swap paths\n", LP_SUP_MAX_SWAP);
            return LP_EXIT_USAGE;
        }
        lp_error err;
        if (lp_manifest_check_path(arg, 0, &err)) {
            fprintf(stderr, "livepush run: --swap: %s\n", err.msg);
            return LP_EXIT_USAGE;
        }
        o->swap[o->swap_count++] = arg;
        return -1;
    }
    case OPT_READY:
        ms = &o->sup.ready_timeout_ms, name = "--ready-timeout";
        break;
    case OPT_STOP:
        ms = &o->sup.stop_timeout_ms, name = "--stop-timeout";
        break;
    case OPT_RESTART:
        ms = &o->sup.restart_delay_ms, name = "--restart-delay";
        break;
    case OPT_RESTART_MAX:
        ms = &o->sup.restart_delay_max_ms, name = "--restart-delay-max";
        break;
    case OPT_HEALTHY:
        ms = &o->sup.healthy_after_ms, name = "--healthy-after", positive = false;
        break;
    case OPT_POLL:
        ms = &o->sup.poll_interval_ms, name = "--poll-interval";
        break;
    default:
        return LP_EXIT_USAGE;
    }
    if (!parse_seconds(arg, ms) || (positive && *ms == 0))
        return bad(name, arg,
                   positive ? "expected seconds, more than 0 and at most 86400 (0.5 is fine)"
                            : "expected seconds, 0 to 86400 (0.5 is fine)");
    return -1;
}

static const char *runtime_dir(const char *given)
{
    if (given && given[0])
        return given;
    const char *names[] = {"XDG_RUNTIME_DIR", "TMPDIR"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = getenv(names[i]);
        struct stat st;
        if (v && v[0] == '/' && stat(v, &st) == 0 && S_ISDIR(st.st_mode))
            return v;
    }
    return "/tmp";
}

int lp_cmd_run(int argc, char **argv)
{
    run_opts *o = calloc(1, sizeof *o);
    lp_devcfg *cfg = calloc(1, sizeof *cfg);
    if (!o || !cfg) {
        free(o);
        free(cfg);
        fprintf(stderr, "livepush run: out of memory\n");
        return LP_EXIT_FAIL;
    }
    int first;
    int rc = lp_devcfg_parse(argc, argv, "run", "+h", own_options, on_own, o, usage, cfg,
                             &first);
    if (rc < 0 && first >= argc) {
        fprintf(stderr, "livepush run: give the app to run: livepush run [options] -- COMMAND "
                        "[ARGS...]\n");
        rc = LP_EXIT_USAGE;
    }
    lp_device *d = NULL;
    if (rc < 0)
        rc = lp_devcfg_open(cfg, "run", NULL, &d);
    if (rc >= 0) {
        free(o);
        free(cfg);
        return rc;
    }
    lp_log log = {.out = stderr, .format = cfg->log_format, .min_level = cfg->log_level};
    o->sup.device = d;
    o->sup.argv = argv + first;
    o->sup.path = getenv("PATH");
    o->sup.listen = o->listen;
    o->sup.listen_count = o->listen_count;
    o->sup.swap = o->swap;
    o->sup.swap_count = o->swap_count;
    o->sup.runtime_dir = runtime_dir(o->runtime_dir);
    o->sup.log = &log;
    lp_sup *s = NULL;
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_sup_open(&o->sup, &s, &err);
    if (st) {
        rc = lp_cli_fail(&err, "run");
    } else {
        for (size_t i = 0; i < lp_sup_listen_count(s); i++)
            printf("listening on %s\n", lp_sup_listen_address(s, i));
        fflush(stdout);
        int code = 0;
        if (lp_sup_run(s, &code, &err))
            rc = lp_cli_fail(&err, "run");
        else
            rc = code;
    }
    lp_sup_close(s);
    lp_device_close(d);
    free(o);
    free(cfg);
    return rc;
}
