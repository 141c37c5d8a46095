/*
 * cmd_devices.c — what the devices of an app report: `livepush devices`
 * and `livepush events`.
 *
 *   livepush devices [--after ID] [--limit N]
 *       GET /api/v1/apps/<app>/devices: each device, the release it runs,
 *       when it was last heard from and its newest event; ordered by
 *       device ID, a page ending with the --after value of the next one
 *   livepush events [--device ID] [--type T] [--since TIME] [--before ID] [--limit N]
 *       GET /api/v1/apps/<app>/events: the events devices sent, newest
 *       first (a download's figures in the FETCHED column), a page ending
 *       with the --before value of the next one
 *
 * The app is --app (or LIVEPUSH_APP, or "default"); a `read` token is
 * needed.  --json prints the server's answer.  Client options and exit
 * codes: api_client.h.  Values are checked here only as far as the query
 * needs (numbers); the server checks the rest and its 400 names the
 * argument.
 */
#include "cli/api_client.h"
#include "cli/api_print.h"
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char devices_usage[] =
    "usage: livepush devices [--after ID] [--limit N] [options]\n"
    "\n"
    "Lists the devices that reported events for the app: the release each runs\n"
    "(its newest activated, healthy or rolled_back event), when it was first and\n"
    "last heard from, its newest event and how many events it had to discard.\n"
    "\n"
    "  --after ID      only devices whose ID sorts after ID (the next page)\n"
    "  --limit N       at most N devices (1..1000, default 50)\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

static const char events_usage[] =
    "usage: livepush events [--device ID] [--type T] [--since TIME] [--before ID]\n"
    "                       [--limit N] [options]\n"
    "\n"
    "Lists the events devices sent for the app, newest first.\n"
    "\n"
    "  --device ID     only this device's events\n"
    "  --type T        only events of type T: checked, downloaded, verified, staged,\n"
    "                  activated, healthy, failed, rolled_back\n"
    "  --since TIME    only events that happened at or after TIME (Unix seconds)\n"
    "  --before ID     only events stored before event ID (the next page)\n"
    "  --limit N       at most N events (1..1000, default 50)\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

/* The command's own options, by name; NULL when not given. */
typedef struct dopts {
    lp_client_opts api;
    const char *after, *limit, *device, *type, *since, *before;
} dopts;

/* Parses argv; -1 when the command goes on, else the exit code.  `own`
 * lists the option letters the command takes (a after, l limit, d device,
 * t type, s since, b before). */
static int parse(int argc, char **argv, const char *cmd, const char *usage, const char *own,
                 dopts *o)
{
    static const struct option lo[] = {
        LP_CLIENT_LONG_OPTIONS,         {"after", required_argument, NULL, 'a'},
        {"limit", required_argument, NULL, 'l'}, {"device", required_argument, NULL, 'd'},
        {"type", required_argument, NULL, 't'},  {"since", required_argument, NULL, 's'},
        {"before", required_argument, NULL, 'b'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (ch == 'h') {
            fputs(usage, stdout);
            return LP_EXIT_OK;
        }
        if (lp_client_opt(&o->api, ch, optarg))
            continue;
        const char **slot = ch == 'a'   ? &o->after
                            : ch == 'l' ? &o->limit
                            : ch == 'd' ? &o->device
                            : ch == 't' ? &o->type
                            : ch == 's' ? &o->since
                            : ch == 'b' ? &o->before
                                        : NULL;
        if (!slot || ch > 127 || !strchr(own, ch)) {
            fputs(usage, stderr);
            return LP_EXIT_USAGE;
        }
        *slot = optarg;
    }
    if (optind != argc) {
        fprintf(stderr, "livepush %s: unexpected argument '%s'\n(see 'livepush %s --help')\n",
                cmd, argv[optind], cmd);
        return LP_EXIT_USAGE;
    }
    lp_error err;
    long long v;
    if ((o->limit && lp_client_parse_int(o->limit, "--limit", 1, 1000, &v, &err)) ||
        (o->since && lp_client_parse_int(o->since, "--since", 0, 253402300799LL, &v, &err)) ||
        (o->before && lp_client_parse_int(o->before, "--before", 1, INT64_MAX / 10, &v, &err))) {
        fprintf(stderr, "livepush %s: %s\n", cmd, err.msg);
        return LP_EXIT_USAGE;
    }
    return -1;
}

/* base + "?name=value&..." for the given (non-NULL) values, each escaped.
 * New malloc'd string, NULL when out of memory. */
static char *with_query(const char *base, const char *const *names, const char *const *values,
                        size_t n)
{
    size_t cap = strlen(base) + 1, used;
    char *esc[8] = {0};
    bool ok = n <= 8;
    for (size_t i = 0; ok && i < n; i++)
        if (values[i]) {
            ok = (esc[i] = lp_client_escape(values[i])) != NULL;
            cap += ok ? strlen(names[i]) + strlen(esc[i]) + 2 : 0;
        }
    char *out = ok ? malloc(cap) : NULL;
    if (out) {
        used = (size_t)snprintf(out, cap, "%s", base);
        for (size_t i = 0; i < n; i++)
            if (esc[i])
                used += (size_t)snprintf(out + used, cap - used, "%c%s=%s",
                                         strchr(out, '?') ? '&' : '?', names[i], esc[i]);
    }
    for (size_t i = 0; i < n && i < 8; i++)
        free(esc[i]);
    return out;
}

/* GET of the app's `what` list with the query; the answer in *ans. */
static lp_status get_list(lp_client *c, const dopts *o, const char *what,
                          const char *const *names, const char *const *values, size_t n,
                          json_t **ans, lp_error *err)
{
    char fmt[64];
    snprintf(fmt, sizeof fmt, "/api/v1/apps/%%s/%s", what);
    char *base = lp_client_path(fmt, lp_client_app(&o->api));
    char *path = base ? with_query(base, names, values, n) : NULL;
    lp_status st = path ? lp_client_request(c, "GET", path, NULL, ans, err)
                        : lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    free(path);
    free(base);
    return st;
}

static int finish(lp_client *c, lp_status st, const lp_error *err, const char *cmd, json_t *ans)
{
    int rc = st ? lp_client_fail(c, st, err, cmd) : LP_EXIT_OK;
    json_decref(ans);
    lp_client_free(c);
    return rc;
}

/* "v2 (2)", "2", or "-" for an event's or device's release. */
static void release_cell(const json_t *obj, char *out, size_t cap)
{
    long long code = lp_client_int(obj, "version_code", 0);
    const char *v = lp_client_str(obj, "version");
    if (code > 0 && *v)
        snprintf(out, cap, "%s (%lld)", v, code);
    else if (code > 0)
        snprintf(out, cap, "%lld", code);
    else
        snprintf(out, cap, "%s", *v ? v : "-");
}

/* A reason on one line of a table: control characters become spaces and
 * a long one is cut with "...". */
static void one_line(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; s[n] && n + 1 < cap; n++)
        out[n] = (unsigned char)s[n] < 0x20 || s[n] == 0x7f ? ' ' : s[n];
    out[n] = '\0';
    if (s[n] && cap >= 4)
        memcpy(out + cap - 4, "...", 4);
}

int lp_cmd_devices(int argc, char **argv)
{
    dopts o = {0};
    int rc = parse(argc, argv, "devices", devices_usage, "al", &o);
    lp_client *c = NULL;
    if (rc >= 0 || (rc = lp_client_open(&o.api, "devices", &c)) >= 0)
        return rc;
    static const char *const names[] = {"after", "limit"};
    const char *values[] = {o.after, o.limit};
    lp_error err;
    lp_error_clear(&err);
    json_t *ans = NULL;
    lp_status st = get_list(c, &o, "devices", names, values, 2, &ans, &err);
    if (!st && o.api.json) {
        lp_client_print_json(ans);
    } else if (!st) {
        const json_t *devs = json_object_get(ans, "devices");
        static const char *const titles[] = {"DEVICE", "RELEASE", "FIRST SEEN", "LAST SEEN",
                                             "LAST EVENT", "DROPPED"};
        lp_table t = {0};
        if (json_array_size(devs))
            lp_table_init(&t, 6, titles);
        size_t i;
        const json_t *d;
        json_array_foreach(devs, i, d)
        {
            char rel[96], first[24], last[24], ev[128], dropped[24];
            release_cell(d, rel, sizeof rel);
            lp_client_format_time(lp_client_int(d, "first_seen", 0), first);
            lp_client_format_time(lp_client_int(d, "last_seen", 0), last);
            const json_t *le = json_object_get(d, "last_event");
            if (json_is_object(le))
                snprintf(ev, sizeof ev, "#%lld %s", lp_client_int(le, "seq", 0),
                         lp_client_str(le, "type"));
            else
                snprintf(ev, sizeof ev, "-");
            snprintf(dropped, sizeof dropped, "%lld", lp_client_int(d, "dropped", 0));
            const char *cells[] = {lp_client_str(d, "device_id"), rel, first, last, ev, dropped};
            lp_table_add(&t, cells);
        }
        if (json_array_size(devs) == 0)
            printf("no devices have reported for app %s\n", lp_client_app(&o.api));
        else
            lp_table_print_free(&t, stdout);
        const char *next = lp_client_str(ans, "next");
        if (*next)
            printf("(more: --after %s)\n", next);
    }
    return finish(c, st, &err, "devices", ans);
}

/* The FETCHED cell of an event with download figures: "2.1 KB, 3 files"
 * then " (2 by delta, 1 fell back)" as they apply; "-" without figures. */
static void fetched_cell(const json_t *e, char *out, size_t cap)
{
    long long bytes = lp_client_int(e, "bytes", -1), files = lp_client_int(e, "files_fetched", -1);
    long long delta = lp_client_int(e, "files_delta", -1);
    long long fell = lp_client_int(e, "delta_fallbacks", -1);
    if (bytes < 0 && files < 0) {
        snprintf(out, cap, "-");
        return;
    }
    char size[16] = "?";
    if (bytes >= 0)
        lp_client_format_bytes((uint64_t)bytes, size);
    int k = snprintf(out, cap, "%s, %lld file%s", size, files < 0 ? 0 : files,
                     files == 1 ? "" : "s");
    if (k > 0 && (size_t)k < cap && fell > 0)
        snprintf(out + k, cap - (size_t)k, " (%lld by delta, %lld fell back)",
                 delta > 0 ? delta : 0, fell);
    else if (k > 0 && (size_t)k < cap && delta > 0)
        snprintf(out + k, cap - (size_t)k, " (%lld by delta)", delta);
}

int lp_cmd_events(int argc, char **argv)
{
    dopts o = {0};
    int rc = parse(argc, argv, "events", events_usage, "dtsbl", &o);
    lp_client *c = NULL;
    if (rc >= 0 || (rc = lp_client_open(&o.api, "events", &c)) >= 0)
        return rc;
    static const char *const names[] = {"device", "type", "since", "before", "limit"};
    const char *values[] = {o.device, o.type, o.since, o.before, o.limit};
    lp_error err;
    lp_error_clear(&err);
    json_t *ans = NULL;
    lp_status st = get_list(c, &o, "events", names, values, 5, &ans, &err);
    if (!st && o.api.json) {
        lp_client_print_json(ans);
    } else if (!st) {
        const json_t *evs = json_object_get(ans, "events");
        static const char *const titles[] = {"ID",   "AT",   "DEVICE", "SEQ",    "TYPE",
                                             "RELEASE", "FROM", "MS",   "FETCHED", "REASON"};
        lp_table t = {0};
        if (json_array_size(evs))
            lp_table_init(&t, 10, titles);
        size_t i;
        const json_t *e;
        json_array_foreach(evs, i, e)
        {
            char id[24], at[24], seq[24], rel[96], from[24] = "-", ms[24] = "-", why[128],
                got[96];
            snprintf(id, sizeof id, "%lld", lp_client_int(e, "id", 0));
            lp_client_format_time(lp_client_int(e, "at", 0), at);
            snprintf(seq, sizeof seq, "%lld", lp_client_int(e, "seq", 0));
            release_cell(e, rel, sizeof rel);
            long long f = lp_client_int(e, "from_version_code", 0);
            long long d = lp_client_int(e, "duration_ms", -1);
            if (f > 0)
                snprintf(from, sizeof from, "%lld", f);
            if (d >= 0)
                snprintf(ms, sizeof ms, "%lld", d);
            one_line(lp_client_str(e, "reason"), why, sizeof why);
            fetched_cell(e, got, sizeof got);
            const char *cells[] = {id, at, lp_client_str(e, "device_id"), seq,
                                   lp_client_str(e, "type"), rel, from, ms, got, why};
            lp_table_add(&t, cells);
        }
        if (json_array_size(evs) == 0)
            printf("no events\n");
        else
            lp_table_print_free(&t, stdout);
        long long next = lp_client_int(ans, "next", 0);
        if (next > 0)
            printf("(more: --before %lld)\n", next);
    }
    return finish(c, st, &err, "events", ans);
}
