/*
 * cmd_agent.c — `livepush agent`: the update daemon of a device.
 *
 *   livepush agent [--once] [options]
 *
 * Each tick: check the probation of the current release (the window passed:
 * roll back, report), run one update cycle (lp_device_update: check,
 * download, verify, activate as --auto-apply says), send the queued events
 * (unless --report false; a static mirror, which takes no events, is
 * recognised and said once).
 * Between ticks it waits --interval seconds plus a random 0..--jitter (so a
 * fleet started together does not check together), or less when the
 * probation window of the current release ends sooner.  --once runs one
 * tick and exits (for tests and cron).
 *
 * Options come from flags, LIVEPUSH_* environment variables and a JSON
 * config file (device_config.h).  The channel is read at every check, so
 * `livepush device channel NAME` switches it at the next tick.
 *
 * Signals: as `livepush serve`, SIGTERM and SIGINT are blocked and waited
 * for with sigtimedwait(2) between ticks: no handler, no global state.
 * During a tick they stay pending; the update asks for them between its
 * steps and before each blob (lp_device_config.should_stop), so the step in
 * progress finishes and the agent exits 0 after it.
 *
 * The control API (agent/control.h): unless --control-socket "" it listens
 * on a unix socket (default <root>/.livepush/control.sock), and with
 * --control-http on a loopback TCP address too, guarded by the admin token
 * of --control-token-file.  Its handlers and the tick both hold one mutex
 * around every lp_device call, so the device is used by one thread at a
 * time; on SIGTERM the listeners are stopped (the request in progress is
 * answered first) and the socket file is removed.  With --once there is no
 * control API.
 *
 * Logs are structured lines on stderr (server/log.h): "agent started",
 * "tick" (what the update did, with its timings and delta figures), "rolled
 * back", "events", "delta fell back" (a delta that failed, with the file,
 * the blob and the reason), "no telemetry: static mirror" (once, when the
 * server turns out to be a static export that takes no events), and
 * warnings for failures.
 *
 * Exit codes: 0 stopped by a signal, or --once with a tick that succeeded;
 * 1 the install root cannot be opened, or --once with a tick that failed;
 * 2 usage or configuration error.
 */
#include "agent/control.h"
#include "cli/cli.h"
#include "cli/device_config.h"
#include "core/file.h"
#include "core/timeutil.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static void usage(FILE *f, void *ctx)
{
    (void)ctx;
    fprintf(f, "usage: livepush agent [--once] [options]\n"
               "\n"
               "The update daemon of a device.  Every --interval seconds (plus a random\n"
               "jitter) it checks the probation of the current release (rolling back when\n"
               "its window passed), checks the server for a release on the device's channel,\n"
               "downloads only what the device lacks, verifies it, switches to it atomically\n"
               "(hooks before and after) as --auto-apply says, and sends the device's events.\n"
               "SIGTERM or SIGINT: finish the step in progress, exit 0.  Logs go to stderr.\n"
               "\n"
               "  --once                         run one tick and exit (1 if it failed)\n"
               "  --control-socket PATH          the control API's unix socket (default\n"
               "                                 <root>/.livepush/control.sock; \"\" turns it off)\n"
               "  --control-http ADDR:PORT       the control API on TCP too (loopback only;\n"
               "                                 requests need the admin token)\n"
               "  --control-token-file FILE      the admin token of --control-http\n"
               "  --control-allow-remote         let --control-http bind a non-loopback address\n"
               "  --help                         show this text\n"
               "\n"
               "Options (flags override environment variables, which override the config "
               "file):\n");
    lp_devcfg_help(f);
    fprintf(f, "\nExit codes: 0 stopped by a signal or --once succeeded, 1 failure, "
               "2 usage or configuration error.\n");
}

typedef struct agent {
    lp_devcfg cfg;
    lp_device *dev;
    lp_log log;
    sigset_t signals;
    bool once;
    /* the control API */
    pthread_mutex_t lock; /* held around every lp_device call */
    bool socket_given;    /* --control-socket was given (maybe "") */
    char socket_path[LP_DEVCFG_PATH_MAX];
    char http_listen[256];
    char token_file[LP_DEVCFG_PATH_MAX];
    bool allow_remote;
    atomic_bool stopping; /* a stop signal was taken by the main thread */
} agent;

static int on_own(void *ctx, int code, const char *arg)
{
    agent *a = ctx;
    char *dst = NULL;
    size_t cap = 0;
    const char *what = NULL;
    switch (code) {
    case 'o':
        a->once = true;
        return -1;
    case 'r':
        a->allow_remote = true;
        return -1;
    case 's':
        a->socket_given = true;
        dst = a->socket_path, cap = sizeof a->socket_path, what = "--control-socket";
        break;
    case 'H':
        dst = a->http_listen, cap = sizeof a->http_listen, what = "--control-http";
        break;
    case 'T':
        dst = a->token_file, cap = sizeof a->token_file, what = "--control-token-file";
        break;
    default:
        return -1;
    }
    if (strlen(arg) >= cap) {
        fprintf(stderr, "livepush agent: %s: at most %zu bytes\n", what, cap - 1);
        return LP_EXIT_USAGE;
    }
    snprintf(dst, cap, "%s", arg);
    return -1;
}

static bool stop_pending(void *ctx)
{
    agent *a = ctx;
    if (atomic_load(&a->stopping))
        return true;
    sigset_t pending;
    if (sigpending(&pending) != 0)
        return false;
    return sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1;
}

static void on_skip(void *ctx, const char *target, const char *reason)
{
    agent *a = ctx;
    lp_log_event(&a->log, LP_LOG_DEBUG, "skipped",
                 json_pack("{s:s,s:s}", "target", target, "reason", reason));
}

/* Deltas: the index and each file made from one at debug level; a
 * missing index at debug, an index that failed and each fallback as a
 * warning ("delta fell back", with the file, the blob and the reason). */
static void on_delta(void *ctx, const lp_delta_note *n)
{
    agent *a = ctx;
    json_t *f = json_pack("{s:I,s:I}", "from", (json_int_t)n->from, "to", (json_int_t)n->to);
    const char *msg = "delta";
    lp_log_level level = LP_LOG_DEBUG;
    switch (n->kind) {
    case LP_DELTA_NOTE_INDEX:
        msg = "delta index";
        json_object_set_new(f, "listed", json_integer((json_int_t)n->listed));
        json_object_set_new(f, "complete", json_boolean(n->complete));
        break;
    case LP_DELTA_NOTE_NO_INDEX:
        msg = "no delta index";
        break;
    case LP_DELTA_NOTE_INDEX_FAILED:
        msg = "delta index unusable";
        level = LP_LOG_WARN;
        break;
    case LP_DELTA_NOTE_APPLIED:
        msg = "delta applied";
        break;
    case LP_DELTA_NOTE_FALLBACK:
        msg = "delta fell back";
        level = LP_LOG_WARN;
        break;
    }
    if (f && n->path) {
        json_object_set_new(f, "file", json_string(n->path));
        json_object_set_new(f, "blob", json_string(n->blob));
        json_object_set_new(f, "base", json_string(n->base));
        json_object_set_new(f, "delta_size", json_integer((json_int_t)n->delta_size));
        json_object_set_new(f, "file_size", json_integer((json_int_t)n->file_size));
    }
    if (f && n->reason)
        json_object_set_new(f, "reason", json_string(n->reason));
    lp_log_event(&a->log, level, msg, f);
}

static void log_error(agent *a, lp_log_level level, const char *msg, const lp_error *err)
{
    lp_log_event(&a->log, level, msg,
                 json_pack("{s:s,s:s}", "error", err->msg[0] ? err->msg : lp_status_name(err->code),
                           "code", lp_status_name(err->code)));
}

static void log_result(agent *a, const lp_update_result *r, const char *channel)
{
    json_t *f = json_pack("{s:s,s:s,s:I}", "outcome", lp_update_outcome_name(r->outcome),
                          "channel", channel, "current", (json_int_t)r->from);
    if (f && r->version_code) {
        json_object_set_new(f, "version", json_string(r->version));
        json_object_set_new(f, "version_code", json_integer((json_int_t)r->version_code));
        json_object_set_new(f, "mandatory", json_boolean(r->mandatory));
        json_object_set_new(f, "check_ms", json_integer(r->check_ms));
    }
    if (f && (r->outcome == LP_UPDATE_ACTIVATED || r->outcome == LP_UPDATE_STAGED)) {
        json_object_set_new(f, "already_installed", json_boolean(r->already_installed));
        json_object_set_new(f, "files_fetched", json_integer((json_int_t)r->stats.files_fetched));
        json_object_set_new(f, "bytes_fetched", json_integer((json_int_t)r->stats.bytes_fetched));
        json_object_set_new(f, "files_linked", json_integer((json_int_t)r->stats.files_linked));
        json_object_set_new(f, "files_copied", json_integer((json_int_t)r->stats.files_copied));
        json_object_set_new(f, "files_delta", json_integer((json_int_t)r->stats.files_delta));
        json_object_set_new(f, "bytes_delta", json_integer((json_int_t)r->stats.bytes_delta));
        json_object_set_new(f, "bytes_delta_saved",
                            json_integer((json_int_t)r->stats.bytes_delta_saved));
        json_object_set_new(f, "delta_fallbacks",
                            json_integer((json_int_t)r->stats.delta_fallbacks));
        json_object_set_new(f, "download_ms", json_integer(r->download_ms));
        json_object_set_new(f, "verify_ms", json_integer(r->verify_ms));
        json_object_set_new(f, "activate_ms", json_integer(r->activate_ms));
    }
    lp_log_event(&a->log, LP_LOG_INFO, "tick", f);
}

/* One tick; 0 when it succeeded.  *wait_s gets the time to the end of the
 * current probation window (0: none). */
static int tick(agent *a, int64_t *wait_s)
{
    lp_error err;
    lp_error_clear(&err);
    int rc = 0;
    lp_probation_outcome po = LP_PROBATION_NONE;
    lp_updater *u = lp_device_updater(a->dev);
    if (lp_device_check_probation(a->dev, lp_time_now(), &po, &err)) {
        log_error(a, LP_LOG_ERROR, "probation check failed", &err);
        rc = 1;
    } else if (po == LP_PROBATION_ROLLED_BACK) {
        lp_updater_status s;
        if (!lp_updater_status_get(u, &s, &err)) {
            lp_log_event(&a->log, LP_LOG_WARN, "rolled back",
                         json_pack("{s:I,s:s?}", "current", (json_int_t)s.current, "reason",
                                   s.bad_count ? s.bad[s.bad_count - 1].reason : NULL));
            lp_updater_status_free(&s);
        }
    }
    char channel[LP_DEVICE_MAX_CHANNEL + 1] = "";
    lp_update_result r;
    lp_update_opts o = {.policy = a->cfg.auto_apply};
    if (lp_device_channel(a->dev, channel, NULL, &err) ||
        lp_device_update(a->dev, &o, &r, &err)) {
        log_error(a, LP_LOG_ERROR, "update failed", &err);
        rc = 1;
    } else {
        log_result(a, &r, channel);
    }
    size_t sent = 0;
    /* --report false, or a static mirror (said once, when found; not a
     * failure of the tick): the events stay queued, bounded. */
    lp_status est = a->cfg.report ? lp_device_send_events(a->dev, &sent, &err) : LP_OK;
    if (est == LP_ERR_UNSUPPORTED)
        lp_log_event(&a->log, LP_LOG_INFO, "no telemetry: static mirror",
                     json_pack("{s:s,s:s}", "server", a->cfg.server, "detail", err.msg));
    else if (est)
        log_error(a, LP_LOG_WARN, "sending events failed", &err);
    else if (sent)
        lp_log_event(&a->log, LP_LOG_INFO, "events", json_pack("{s:I}", "sent", (json_int_t)sent));
    *wait_s = 0;
    lp_updater_status s;
    if (!lp_updater_status_get(u, &s, &err)) {
        if (s.on_probation) {
            int64_t left = s.probation_since + s.probation_window_s + 1 - lp_time_now();
            *wait_s = left > 0 ? left : 1;
        }
        lp_updater_status_free(&s);
    }
    return rc;
}

/* The admin token: the first line of `path` (at most LP_CONTROL_MAX_TOKEN
 * printable bytes, no spaces). */
static lp_status read_token(const char *path, char out[LP_CONTROL_MAX_TOKEN + 1], lp_error *err)
{
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_file_read(path, LP_CONTROL_MAX_TOKEN + 2, &data, &len, err);
    if (st)
        return lp_error_prefix(err, st, "--control-token-file");
    while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    bool ok = len > 0 && len <= LP_CONTROL_MAX_TOKEN;
    for (size_t i = 0; ok && i < len; i++)
        ok = data[i] > 0x20 && data[i] < 0x7f;
    if (ok) {
        memcpy(out, data, len);
        out[len] = '\0';
    }
    free(data);
    if (!ok)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "--control-token-file %s: want one line of 1..%u printable bytes",
                            path, LP_CONTROL_MAX_TOKEN);
    return LP_OK;
}

static uint32_t random_below(uint32_t n)
{
    uint32_t x = 0;
    if (n == 0 || getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x)
        return 0;
    return x % n;
}

int lp_cmd_agent(int argc, char **argv)
{
    static const struct option own[] = {{"once", no_argument, NULL, 'o'},
                                        {"control-socket", required_argument, NULL, 's'},
                                        {"control-http", required_argument, NULL, 'H'},
                                        {"control-token-file", required_argument, NULL, 'T'},
                                        {"control-allow-remote", no_argument, NULL, 'r'},
                                        {NULL, 0, NULL, 0}};
    agent *a = calloc(1, sizeof *a);
    if (!a) {
        fprintf(stderr, "livepush agent: out of memory\n");
        return LP_EXIT_FAIL;
    }
    atomic_init(&a->stopping, false);
    int first;
    int rc = lp_devcfg_parse(argc, argv, "agent", "h", own, on_own, a, usage, &a->cfg, &first);
    if (rc < 0 && first != argc) {
        fprintf(stderr, "livepush agent: unexpected argument '%s'\n\n", argv[first]);
        usage(stderr, NULL);
        rc = LP_EXIT_USAGE;
    }
    lp_device_config dc;
    lp_error err;
    lp_error_clear(&err);
    if (rc < 0 && lp_devcfg_device(&a->cfg, &dc, &err)) {
        fprintf(stderr, "livepush agent: %s\n", err.msg);
        rc = LP_EXIT_USAGE;
    }
    if (rc < 0 && !a->cfg.server[0]) {
        fprintf(stderr, "livepush agent: no server: give --server URL (or LIVEPUSH_SERVER)\n");
        rc = LP_EXIT_USAGE;
    }
    char token[LP_CONTROL_MAX_TOKEN + 1] = "";
    if (rc < 0 && a->http_listen[0] && !a->token_file[0]) {
        fprintf(stderr, "livepush agent: --control-http needs --control-token-file\n");
        rc = LP_EXIT_USAGE;
    }
    if (rc < 0 && a->token_file[0] && read_token(a->token_file, token, &err)) {
        fprintf(stderr, "livepush agent: %s\n", err.msg);
        rc = LP_EXIT_USAGE;
    }
    if (rc >= 0) {
        free(a);
        return rc;
    }
    a->log = (lp_log){.out = stderr, .format = a->cfg.log_format, .min_level = a->cfg.log_level};
    sigemptyset(&a->signals);
    sigaddset(&a->signals, SIGTERM);
    sigaddset(&a->signals, SIGINT);
    sigset_t block = a->signals;
    sigaddset(&block, SIGPIPE);
    sigprocmask(SIG_BLOCK, &block, NULL);

    dc.should_stop = stop_pending;
    dc.stop_ctx = a;
    dc.on_skip = on_skip;
    dc.skip_ctx = a;
    dc.on_delta = on_delta;
    dc.delta_ctx = a;
    if (lp_device_open(&dc, &a->dev, &err)) {
        rc = lp_cli_fail(&err, "agent");
        free(a);
        return rc;
    }
    pthread_mutex_init(&a->lock, NULL);
    lp_control *ctl = NULL;
    if (!a->once) {
        if (!a->socket_given)
            snprintf(a->socket_path, sizeof a->socket_path, "%s/.livepush/control.sock",
                     lp_updater_root(lp_device_updater(a->dev)));
        lp_control_config cc = {.dev = a->dev, .lock = &a->lock, .socket_path = a->socket_path,
                                .http_listen = a->http_listen, .allow_remote = a->allow_remote,
                                .token = token, .log = &a->log,
                                .send_events = a->cfg.report};
        if ((a->socket_path[0] || a->http_listen[0]) && lp_control_start(&cc, &ctl, &err)) {
            rc = lp_cli_fail(&err, "agent");
            lp_device_close(a->dev);
            pthread_mutex_destroy(&a->lock);
            free(a);
            return rc;
        }
    }
    char channel[LP_DEVICE_MAX_CHANNEL + 1] = "";
    lp_device_channel(a->dev, channel, NULL, &err);
    lp_log_event(&a->log, LP_LOG_INFO, "agent started",
                 json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:b}", "device_id",
                           lp_updater_device_id(lp_device_updater(a->dev)), "root",
                           lp_updater_root(lp_device_updater(a->dev)), "server", a->cfg.server,
                           "app", a->cfg.app, "channel", channel, "interval",
                           (int)a->cfg.interval_s, "once", a->once));
    if (ctl)
        lp_log_event(&a->log, LP_LOG_INFO, "control listening",
                     json_pack("{s:s?,s:i}", "socket", a->socket_path[0] ? a->socket_path : NULL,
                               "http_port", (int)lp_control_http_port(ctl)));
    for (;;) {
        int64_t probation_s = 0;
        pthread_mutex_lock(&a->lock);
        int trc = tick(a, &probation_s);
        pthread_mutex_unlock(&a->lock);
        if (a->once) {
            rc = trc ? LP_EXIT_FAIL : LP_EXIT_OK;
            break;
        }
        int64_t wait = (int64_t)a->cfg.interval_s + random_below(a->cfg.jitter_s + 1);
        if (probation_s > 0 && probation_s < wait)
            wait = probation_s;
        /* Wait until the deadline; another signal's interruption (EINTR)
         * goes on waiting for what is left. */
        struct timespec end, now;
        clock_gettime(CLOCK_MONOTONIC, &end);
        end.tv_sec += (time_t)wait;
        int sig;
        for (;;) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            int64_t left_ms = ((int64_t)end.tv_sec - now.tv_sec) * 1000 +
                              (end.tv_nsec - now.tv_nsec) / 1000000;
            if (left_ms < 0)
                left_ms = 0;
            struct timespec ts = {.tv_sec = (time_t)(left_ms / 1000),
                                  .tv_nsec = (long)(left_ms % 1000) * 1000000L};
            sig = sigtimedwait(&a->signals, NULL, &ts);
            if (sig >= 0 || errno != EINTR)
                break;
        }
        if (sig == SIGTERM || sig == SIGINT) {
            /* An operation of the control API in progress stops between its
             * steps, as a tick would. */
            atomic_store(&a->stopping, true);
            lp_log_event(&a->log, LP_LOG_INFO, "stopping",
                         json_pack("{s:s}", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
            rc = LP_EXIT_OK;
            break;
        }
    }
    lp_control_stop(ctl);
    lp_device_close(a->dev);
    pthread_mutex_destroy(&a->lock);
    free(a);
    return rc;
}
