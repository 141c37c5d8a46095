/*
 * cmd_serve.c — `livepush serve`: the livepush server.
 *
 *   livepush serve [--config FILE] [--listen ADDR:PORT] [--data-dir DIR] ...
 *
 * It opens the service on the data folder (server/service.h: database,
 * blobs, repositories, keys, uploads), runs the first-start bootstrap (an
 * admin token in <data-dir>/admin.token, the default app), and serves:
 * the management API under /api/v1 (server/api.h, docs/api.md), blobs
 * under /v1/blobs/, each app's TUF repository (GET
 * /v1/apps/<app>/metadata/<file> and /v1/apps/<app>/targets/<path>), the
 * device API (POST /v1/apps/<app>/events, anonymous or with a `download`
 * token as --device-auth says), the deltas between releases (GET
 * /v1/apps/<app>/deltas/<from>/<to>.json and /v1/deltas/<base>/<result>,
 * made in the background by the delta worker, server/delta_worker.h), the
 * web dashboard (GET /dashboard, built into the binary, server/api.h) and
 * GET /healthz.  Options come from flags,
 * LIVEPUSH_* environment variables and a JSON config file (flags win; see
 * server/config.h); the --help text is generated from the same option
 * table.
 *
 * When the bootstrap made the admin token it prints "admin token written
 * to <path>" on stdout (never the token itself).  Once listening it prints
 * "listening on http://HOST:PORT" on stdout (so scripts can find an
 * ephemeral port) and logs to stderr.
 *
 * Signals: SIGTERM and SIGINT are blocked in every thread before the
 * server's threads start (they inherit the mask), and the main thread
 * waits for them with sigwait(2).  No signal handler runs, so no work
 * happens in signal context and there is no global state at all.  On a
 * signal the server stops accepting, lets requests in flight finish (up to
 * --shutdown-timeout), and the command exits 0 (1 if requests had to be cut
 * off).
 *
 * Exit codes: 0 clean shutdown, 1 failure (cannot listen, requests cut off
 * at shutdown), 2 usage or configuration error (bad flag, bad value, bad
 * config file, unknown config key).
 */
#include "cli/cli.h"
#include "server/api.h"
#include "server/config.h"
#include "server/delta_worker.h"
#include "server/http.h"
#include "server/maintain.h"
#include "server/log.h"
#include "server/service.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>

extern char **environ;

static void usage(FILE *f)
{
    fprintf(f, "usage: livepush serve [options]\n"
               "\n"
               "The livepush server.  Keeps its state in the data folder DIR (database,\n"
               "blobs, keys, uploads) and serves over HTTP:\n"
               "  /api/v1/...                          management API (bearer tokens; "
               "docs/api.md)\n"
               "  GET /v1/apps/<app>/metadata/<file>   GET /v1/apps/<app>/targets/<path>\n"
               "  GET /v1/blobs/<sha256>               GET /healthz\n"
               "  GET /v1/apps/<app>/deltas/<from>/<to>.json   GET /v1/deltas/<base>/<result>\n"
               "  POST /v1/apps/<app>/events           device events (see --device-auth)\n"
               "  GET /dashboard                       the web dashboard (/ leads there)\n"
               "On first start it writes an admin token to DIR/admin.token (0600) and\n"
               "creates the default app.  Prints \"listening on http://HOST:PORT\" once\n"
               "ready; logs to stderr.\n"
               "SIGTERM or SIGINT: stop accepting, finish requests in flight, exit 0.\n"
               "\n"
               "Options (flags override environment variables, which override the config "
               "file):\n");
    for (size_t i = 0; lp_server_option_at(i); i++) {
        const lp_server_option *o = lp_server_option_at(i);
        char flag[64];
        snprintf(flag, sizeof flag, "--%s %s", o->flag, o->arg);
        fprintf(f, "  %-30s %s\n  %-30s env %s, default %s\n", flag, o->help, "", o->env,
                *o->deflt ? o->deflt : "\"\"");
    }
    fprintf(f, "  %-30s show this text\n"
               "\n"
               "Exit codes: 0 clean shutdown, 1 failure, 2 usage or configuration error.\n",
            "--help");
}

/* The background tasks; failures are logged per app by the service. */
static void resign_task(lp_service *svc)
{
    lp_error err;
    lp_error_clear(&err);
    (void)lp_service_refresh_expiring(svc, 0, NULL, &err);
}

static void guard_task(lp_service *svc)
{
    lp_error err;
    lp_error_clear(&err);
    (void)lp_service_guard_run(svc, NULL, &err);
}

int lp_cmd_serve(int argc, char **argv)
{
    struct option lo[32];
    size_t nopt = 0;
    for (; lp_server_option_at(nopt) && nopt < 30; nopt++)
        lo[nopt] = (struct option){lp_server_option_at(nopt)->flag, required_argument, NULL,
                                   256 + (int)nopt};
    lo[nopt] = (struct option){"help", no_argument, NULL, 'h'};
    lo[nopt + 1] = (struct option){NULL, 0, NULL, 0};

    lp_server_setting *flags = calloc((size_t)argc + 1, sizeof *flags);
    if (!flags) {
        fprintf(stderr, "livepush serve: out of memory\n");
        return LP_EXIT_FAIL;
    }
    size_t nflags = 0;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            free(flags);
            return LP_EXIT_OK;
        }
        if (ch < 256 || ch >= 256 + (int)nopt) {
            usage(stderr);
            free(flags);
            return LP_EXIT_USAGE;
        }
        flags[nflags++] = (lp_server_setting){lp_server_option_at((size_t)(ch - 256))->flag,
                                              optarg};
    }
    if (optind != argc) {
        fprintf(stderr, "livepush serve: unexpected argument '%s'\n\n", argv[optind]);
        usage(stderr);
        free(flags);
        return LP_EXIT_USAGE;
    }
    lp_error err;
    lp_error_clear(&err);
    lp_server_config cfg;
    lp_status st = lp_server_config_load(&cfg, flags, nflags, environ, &err);
    free(flags);
    if (st) {
        fprintf(stderr, "livepush serve: %s\n", err.msg);
        return LP_EXIT_USAGE;
    }

    lp_log log = {.out = stderr, .format = cfg.log_format, .min_level = cfg.log_level};

    /* Block the shutdown signals (and SIGPIPE) before any thread starts. */
    sigset_t wait_set, block_set;
    sigemptyset(&wait_set);
    sigaddset(&wait_set, SIGTERM);
    sigaddset(&wait_set, SIGINT);
    block_set = wait_set;
    sigaddset(&block_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block_set, NULL);

    lp_ingest_limits limits;
    lp_ingest_limits_default(&limits);
    limits.max_entries = cfg.max_bundle_entries;
    limits.max_total_bytes = cfg.max_bundle_bytes;
    limits.max_file_bytes = cfg.max_bundle_file_bytes;
    limits.max_ratio = cfg.max_bundle_ratio;
    /* The update life cycle, as JSON lines, appended to its own file. */
    FILE *lf = NULL;
    lp_log lifecycle = {.format = LP_LOG_JSON, .min_level = LP_LOG_INFO};
    if (cfg.lifecycle_log[0]) {
        if (!(lf = fopen(cfg.lifecycle_log, "ae"))) {
            fprintf(stderr, "livepush serve: lifecycle log %s: %s\n", cfg.lifecycle_log,
                    strerror(errno));
            return LP_EXIT_FAIL;
        }
        setvbuf(lf, NULL, _IOLBF, 0);
        lifecycle.out = lf;
    }
    lp_service_options so = {.data_dir = cfg.data_dir,
                             .db_url = cfg.db_url[0] ? cfg.db_url : NULL,
                             .limits = &limits,
                             .db_connections = cfg.db_connections,
                             .log = &log,
                             .device_token = cfg.device_auth_token,
                             .lifecycle = lf ? &lifecycle : NULL,
                             /* fault injection for tests (docs/testing.md) */
                             .crash_at = getenv("LIVEPUSH_CRASH_AT"),
                             .deltas = {.releases = cfg.delta_releases,
                                        .min_size = cfg.delta_min_size,
                                        .max_ratio = cfg.delta_max_ratio,
                                        .no_dict = cfg.delta_dict_level == 0,
                                        .dict_level = (int)cfg.delta_dict_level,
                                        .threads = (int)cfg.delta_threads}};
    lp_service *svc = NULL;
    bool made_token = false;
    st = lp_service_open(&svc, &so, &err);
    if (!st)
        st = lp_service_bootstrap(svc, cfg.default_app[0] ? cfg.default_app : NULL, &made_token,
                                  &err);
    if (st) {
        lp_service_close(svc);
        if (lf)
            fclose(lf);
        return lp_cli_fail(&err, "serve");
    }
    if (made_token) {
        printf("admin token written to %s/admin.token\n", cfg.data_dir);
        fflush(stdout);
    }

    lp_http_server_options opt = {
        .listen = cfg.listen,
        .threads = cfg.threads,
        .max_connections = cfg.max_connections,
        .connection_timeout_s = cfg.connection_timeout_s,
        .max_header_bytes = cfg.max_header_bytes,
        .max_body_bytes = cfg.max_body_bytes,
        .log = &log,
        .metrics = lp_service_metrics(svc),
    };
    lp_http_server *srv = NULL;
    st = lp_http_server_new(&srv, &opt, &err);
    if (!st)
        st = lp_http_add_repo_routes(srv, cfg.data_dir, &err);
    if (!st)
        st = lp_api_add_routes(srv, svc, &err);
    if (!st)
        st = lp_http_server_start(srv, &err);
    lp_maintainer *upkeep = NULL, *guard = NULL;
    lp_delta_worker *deltas = NULL;
    if (!st)
        st = lp_maintainer_start(svc, cfg.resign_interval_s * 1000u, resign_task, &upkeep, &err);
    if (!st)
        st = lp_maintainer_start(svc, cfg.guard_interval_ms, guard_task, &guard, &err);
    if (!st)
        st = lp_delta_worker_start(svc, &deltas, &err);
    if (st) {
        lp_maintainer_stop(guard);
        lp_maintainer_stop(upkeep);
        lp_http_server_free(srv);
        lp_service_close(svc);
        if (lf)
            fclose(lf);
        return lp_cli_fail(&err, "serve");
    }
    printf("listening on %s\n", lp_http_server_url(srv));
    fflush(stdout);
    json_t *f = json_pack("{s:s,s:s,s:i,s:i}", "url", lp_http_server_url(srv), "data_dir",
                          cfg.data_dir, "threads", (int)lp_http_server_threads(srv), "max_connections",
                          (int)cfg.max_connections);
    lp_log_event(&log, LP_LOG_INFO, "listening", f);

    int sig = 0;
    while (sigwait(&wait_set, &sig) != 0)
        ;
    lp_log_event(&log, LP_LOG_INFO, "shutting down",
                 json_pack("{s:s,s:i}", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                           "in_flight", (int)lp_http_server_in_flight(srv)));
    st = lp_http_server_shutdown(srv, cfg.shutdown_timeout_s * 1000u, &err);
    lp_delta_worker_stop(deltas);
    lp_maintainer_stop(guard);
    lp_maintainer_stop(upkeep);
    lp_http_server_free(srv);
    lp_service_close(svc);
    if (lf)
        fclose(lf);
    if (st) {
        lp_log_event(&log, LP_LOG_ERROR, "shutdown", json_pack("{s:s}", "error", err.msg));
        return LP_EXIT_FAIL;
    }
    lp_log_event(&log, LP_LOG_INFO, "stopped", NULL);
    return LP_EXIT_OK;
}
