/*
 * cmd_rollout.c — `livepush rollout`: staged rollouts of an app's releases
 * (docs/rollouts.md).
 *
 *   rollout list                              GET  /api/v1/apps/<app>/rollouts
 *   rollout set VERSION PERCENT               PUT  .../releases/<v>/rollout  percent_bp
 *   rollout pause|resume|halt VERSION         PUT  .../releases/<v>/rollout  state
 *   rollout split VERSION WEIGHT              PUT  .../releases/<v>/rollout  weight
 *   rollout promote VERSION                   POST .../releases/<v>/promote
 *   rollout window CHANNEL START END | none   PUT  .../channels/<c>/window
 *   rollout guardrail PERCENT MIN_DEVICES     PUT  .../guardrail
 *
 * --channel names the channel (default stable); --reason is kept with the
 * rollout.  PERCENT is "0".."100" with up to two decimals ("12.5"), sent
 * as basis points.  Human output is one line or a table; --json prints the
 * server's answer.  Client options and exit codes: api_client.h.
 */
#include "cli/api_client.h"
#include "cli/api_print.h"
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: livepush rollout list [options]\n"
    "       livepush rollout set VERSION PERCENT [--channel C] [--reason TEXT] [options]\n"
    "       livepush rollout pause|resume|halt VERSION [--channel C] [--reason TEXT] [options]\n"
    "       livepush rollout split VERSION WEIGHT [--channel C] [options]\n"
    "       livepush rollout promote VERSION --channel C [options]\n"
    "       livepush rollout window CHANNEL START END [options]   (HH:MM UTC; or: none)\n"
    "       livepush rollout guardrail PERCENT MIN_DEVICES [options]\n"
    "\n"
    "list: every staged rollout of the app (--app) with what its devices reported.\n"
    "set: the share of the channel's devices offered the release (0..100, e.g. 12.5);\n"
    "raising it keeps every device already inside.  pause / resume: stop and restart new\n"
    "installs.  halt: stop new installs for good (devices that have it keep it).\n"
    "split: the release's weight in the channel's A/B split (0 ends it).\n"
    "promote: publish the release on another channel too (apps whose keys the server holds).\n"
    "window: non-mandatory releases install only between START and END (UTC).\n"
    "guardrail: halt a rollout by itself when more than PERCENT of the devices that tried it\n"
    "failed or rolled back, once at least MIN_DEVICES tried it (admin token).\n"
    "\n"
    "  --channel C         the channel (default stable)\n"
    "  --reason TEXT       why (kept with the rollout and in the audit log)\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

static int usage_error(const char *msg)
{
    fprintf(stderr, "livepush rollout: %s\n(see 'livepush rollout --help')\n", msg);
    return LP_EXIT_USAGE;
}

typedef struct sub {
    const char *name;
    int nargs;
} sub;

static const sub subs[] = {{"list", 0},  {"set", 2},     {"pause", 1},  {"resume", 1},
                           {"halt", 1},  {"split", 2},   {"promote", 1}, {"window", -1},
                           {"guardrail", 2}};

static void print_list(const json_t *ans)
{
    static const char *const titles[] = {"VERSION", "CODE", "CHANNEL", "SHARE",   "STATE",
                                         "WEIGHT",  "TRIED", "BAD",    "INSTALLED", "REASON"};
    lp_table t;
    lp_table_init(&t, 10, titles);
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(ans, "rollouts"), i, r)
    {
        const json_t *d = json_object_get(r, "devices");
        char code[24], share[16], weight[16], tried[24], bad[24], inst[24];
        long long bp = lp_client_int(r, "percent_bp", 0);
        snprintf(code, sizeof code, "%lld", lp_client_int(r, "version_code", 0));
        snprintf(share, sizeof share, "%lld.%02lld%%", bp / 100, bp % 100);
        long long w = lp_client_int(r, "weight", 0);
        snprintf(weight, sizeof weight, "%s", w ? "" : "-");
        if (w)
            snprintf(weight, sizeof weight, "%lld", w);
        snprintf(tried, sizeof tried, "%lld", lp_client_int(d, "tried", 0));
        snprintf(bad, sizeof bad, "%lld", lp_client_int(d, "bad", 0));
        snprintf(inst, sizeof inst, "%lld", lp_client_int(d, "installed", 0));
        const char *cells[] = {lp_client_str(r, "version"), code, lp_client_str(r, "channel"),
                               share, lp_client_str(r, "state"), weight, tried, bad, inst,
                               lp_client_str(r, "reason")};
        lp_table_add(&t, cells);
    }
    lp_table_print_free(&t, stdout);
    const json_t *g = json_object_get(ans, "guardrail");
    long long rate = lp_client_int(g, "rate_bp", 0);
    printf("guardrail: halt above %lld.%02lld%% failed or rolled back, from %lld devices\n",
           rate / 100, rate % 100, lp_client_int(g, "min_devices", 0));
    const char *ch;
    const json_t *w;
    json_object_foreach((json_t *)json_object_get(ans, "windows"), ch, w)
        if (json_is_object(w))
            printf("window of %s: %s-%s UTC\n", ch, lp_client_str(w, "start"),
                   lp_client_str(w, "end"));
}

int lp_cmd_rollout(int argc, char **argv)
{
    static const struct option lo[] = {LP_CLIENT_LONG_OPTIONS,
                                       {"channel", required_argument, NULL, 'c'},
                                       {"reason", required_argument, NULL, 'r'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    lp_client_opts o = {0};
    const char *channel = NULL, *reason = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (ch == 'h') {
            fputs(usage_text, stdout);
            return LP_EXIT_OK;
        }
        if (ch == 'c')
            channel = optarg;
        else if (ch == 'r')
            reason = optarg;
        else if (!lp_client_opt(&o, ch, optarg)) {
            fputs(usage_text, stderr);
            return LP_EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return usage_error("name a subcommand: list, set, pause, resume, halt, split, promote, "
                           "window or guardrail");
    const char *name = argv[optind];
    const sub *s = NULL;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (!strcmp(subs[i].name, name))
            s = &subs[i];
    if (!s) {
        fprintf(stderr, "livepush rollout: unknown subcommand '%s'\n(see 'livepush rollout "
                        "--help')\n",
                name);
        return LP_EXIT_USAGE;
    }
    char **a = argv + optind + 1;
    int npos = argc - optind - 1;
    if (!strcmp(name, "window")) {
        if (!(npos == 2 && !strcmp(a[1], "none")) && npos != 3)
            return usage_error("window takes CHANNEL START END (HH:MM UTC), or CHANNEL none");
    } else if (npos != s->nargs) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s takes %d argument%s", name, s->nargs,
                 s->nargs == 1 ? "" : "s");
        return usage_error(msg);
    }
    if (!strcmp(name, "promote") && !channel)
        return usage_error("promote needs --channel: the channel to publish the release on");
    if (!channel)
        channel = "stable";

    lp_error err;
    lp_error_clear(&err);
    lp_status st = LP_OK;
    json_t *body = NULL;
    const char *method = "PUT";
    char *path = NULL;
    const char *app = lp_client_app(&o);
    int bp = 0;
    long long n = 0;
    if (!strcmp(name, "list")) {
        method = "GET";
        path = lp_client_path("/api/v1/apps/%s/rollouts", app);
    } else if (!strcmp(name, "window")) {
        path = lp_client_path("/api/v1/apps/%s/channels/%s/window", app, a[0]);
        body = npos == 2 ? json_pack("{s:n,s:n}", "start", "end")
                         : json_pack("{s:s,s:s}", "start", a[1], "end", a[2]);
    } else if (!strcmp(name, "guardrail")) {
        path = lp_client_path("/api/v1/apps/%s/guardrail", app);
        st = lp_client_parse_percent(a[0], "PERCENT", &bp, &err);
        if (!st)
            st = lp_client_parse_int(a[1], "MIN_DEVICES", 1, 1000000000, &n, &err);
        if (!st && bp < 1)
            st = lp_error_set(&err, LP_ERR_INVALID_ARG, "PERCENT: must be above 0");
        body = json_pack("{s:i,s:I}", "rate_bp", bp, "min_devices", (json_int_t)n);
    } else if (!strcmp(name, "promote")) {
        method = "POST";
        path = lp_client_path("/api/v1/apps/%s/releases/%s/promote", app, a[0]);
        body = json_pack("{s:s}", "channel", channel);
    } else {
        path = lp_client_path("/api/v1/apps/%s/releases/%s/rollout", app, a[0]);
        body = json_pack("{s:s}", "channel", channel);
        if (body && !strcmp(name, "set")) {
            st = lp_client_parse_percent(a[1], "PERCENT", &bp, &err);
            json_object_set_new(body, "percent_bp", json_integer(bp));
        } else if (body && !strcmp(name, "split")) {
            st = lp_client_parse_int(a[1], "WEIGHT", 0, 10000, &n, &err);
            json_object_set_new(body, "weight", json_integer(n));
        } else if (body) {
            const char *state = !strcmp(name, "pause")   ? "paused"
                                : !strcmp(name, "halt") ? "halted"
                                                        : "active";
            json_object_set_new(body, "state", json_string(state));
        }
        if (body && reason)
            json_object_set_new(body, "reason", json_string(reason));
    }
    if (st) {
        json_decref(body);
        free(path);
        fprintf(stderr, "livepush rollout: %s\n", err.msg);
        return LP_EXIT_USAGE;
    }
    if (!path || (strcmp(method, "GET") && !body)) {
        json_decref(body);
        free(path);
        fprintf(stderr, "livepush rollout: an argument is not valid UTF-8\n");
        return LP_EXIT_USAGE;
    }

    lp_client *c = NULL;
    int rc = lp_client_open(&o, "rollout", &c);
    if (rc >= 0) {
        json_decref(body);
        free(path);
        return rc;
    }
    json_t *ans = NULL;
    st = lp_client_request(c, method, path, body, &ans, &err);
    if (!st && o.json) {
        lp_client_print_json(ans);
    } else if (!st && !strcmp(name, "list")) {
        print_list(ans);
    } else if (!st && json_object_get(ans, "rollout")) {
        const json_t *r = json_object_get(ans, "rollout");
        long long p = lp_client_int(r, "percent_bp", 0);
        printf("rollout of %s on %s: %lld.%02lld%%, %s%s\n", lp_client_str(r, "version"),
               lp_client_str(r, "channel"), p / 100, p % 100, lp_client_str(r, "state"),
               json_is_true(json_object_get(r, "enforced"))
                   ? ""
                   : " (recorded; devices follow it once the publisher signs the next release)");
    } else if (!st && !strcmp(name, "promote")) {
        printf("%s published on %s too\n", a[0], channel);
    } else if (!st && !strcmp(name, "window")) {
        if (npos == 2)
            printf("channel %s: no maintenance window\n", a[0]);
        else
            printf("channel %s: non-mandatory releases install between %s and %s UTC\n", a[0],
                   a[1], a[2]);
    } else if (!st) {
        printf("guardrail of %s: halt above %d.%02d%%, from %lld devices\n", app, bp / 100,
               bp % 100, n);
    }
    char what[64];
    snprintf(what, sizeof what, "rollout %s", name);
    rc = st ? lp_client_fail(c, st, &err, what) : LP_EXIT_OK;
    free(path);
    json_decref(body);
    json_decref(ans);
    lp_client_free(c);
    return rc;
}
