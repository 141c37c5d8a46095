/*
 * cmd_export.c — `livepush export` and `livepush timestamp refresh`: a
 * static copy of an app's repository that any web server or CDN can serve,
 * and keeping its timestamp fresh (docs/export.md).
 *
 *   livepush export APP --out DIR [--data-dir D] [--db URL] [--no-deltas]
 *                       [--verify] [--list | --json]
 *   livepush timestamp refresh APP [--data-dir D] [--expires DURATION]
 *                       [--out DIR [--db URL] [--no-deltas] [--verify]] [--list | --json]
 *
 * Both work on the server's data folder directly (only reading it, except
 * that `timestamp refresh` re-signs timestamp.json under the app's lock,
 * as the server does), so they run on the server's host, next to a running
 * server.  The work lives in src/server/export.c; this file parses options
 * and prints: a summary on stdout, with --list every file written first
 * (its path relative to DIR, in the order written: timestamp.json last),
 * with --json one object with the figures and the files written.
 *
 * Exit codes: 0 done, 1 failed (the reason on stderr), 2 usage error.
 */
#include "cli/cli.h"
#include "core/timeutil.h"
#include "server/export.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DATA_DIR "./livepush-data"
#define EXPIRES_MIN_S 60
#define EXPIRES_MAX_S (366LL * 86400)

static const char export_usage[] =
    "usage: livepush export APP --out DIR [options]\n"
    "\n"
    "Writes the app's repository (TUF metadata with consistent snapshots, targets,\n"
    "blobs, deltas) as plain files under DIR, laid out as the server's URLs, so a web\n"
    "server or CDN serving DIR is a mirror devices update from (--server\n"
    "http://host/): rollout cohorts, targeting and deltas work as with the server;\n"
    "telemetry does not.  It reads the server's data folder, which the server may be\n"
    "using meanwhile, and copies the repository as one timestamp.json describes it.\n"
    "Running it again writes only what is new; timestamp.json is written last, so\n"
    "a reader never sees a half-written state (docs/export.md).\n"
    "\n"
    "  --out DIR          the export folder (the web root); made if missing\n"
    "  --data-dir DIR     the server's data folder (default $LIVEPUSH_DATA_DIR, else\n"
    "                     " DEFAULT_DATA_DIR ")\n"
    "  --db URL           the server's database, for the deltas (default\n"
    "                     sqlite:<data-dir>/livepush.db)\n"
    "  --no-deltas        leave the deltas out (no database needed)\n"
    "  --verify           compare the files already in DIR byte for byte (default: a\n"
    "                     content-addressed file of the right size is kept)\n"
    "  --list             print every file written (relative to DIR), in order\n"
    "  --json             print the result as JSON\n"
    "  --help             show this text\n"
    "\n"
    "Exit codes: 0 done, 1 failed, 2 usage error.\n";

static const char timestamp_usage[] =
    "usage: livepush timestamp refresh APP [options]\n"
    "\n"
    "Re-signs the app's timestamp.json with the server's online timestamp key (in\n"
    "<data-dir>/keys/APP/timestamp.pem; refused when it is not on this machine): a\n"
    "new version naming the same snapshot, with a new expiry.  It takes the app's\n"
    "lock as the server does, so it is safe next to a running server.  With --out,\n"
    "the export in DIR is brought up to date with that timestamp (as `livepush\n"
    "export`).  Run it from cron to keep a short-lived timestamp fresh.\n"
    "\n"
    "  --data-dir DIR     the server's data folder (default $LIVEPUSH_DATA_DIR, else\n"
    "                     " DEFAULT_DATA_DIR ")\n"
    "  --expires DURATION the new timestamp's lifetime: N[s|m|h|d] (1 minute to 366\n"
    "                     days; default: one day, never shorter than it has left)\n"
    "  --out DIR          also update the export in DIR\n"
    "  --db URL, --no-deltas, --verify   as for `livepush export`\n"
    "  --list             print every file written to DIR, in order\n"
    "  --json             print the result as JSON\n"
    "  --help             show this text\n"
    "\n"
    "Exit codes: 0 done, 1 failed, 2 usage error.\n";

typedef struct export_cli {
    const char *cmd; /* "export" or "timestamp refresh" */
    const char *app, *out, *data_dir, *db, *expires;
    bool no_deltas, verify, list, json;
    json_t *written; /* with --json */
} export_cli;

static int usage_error(const export_cli *c, const char *msg)
{
    fprintf(stderr, "livepush %s: %s\n(see 'livepush %s --help')\n", c->cmd, msg,
            strcmp(c->cmd, "export") ? "timestamp refresh" : "export");
    return LP_EXIT_USAGE;
}

/* N[s|m|h|d] into seconds, within [EXPIRES_MIN_S, EXPIRES_MAX_S]. */
static bool parse_duration(const char *s, int64_t *out)
{
    int64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
        if (v > EXPIRES_MAX_S)
            return false;
    }
    if (p == s)
        return false;
    int64_t unit = 1;
    if (*p == 'm')
        unit = 60;
    else if (*p == 'h')
        unit = 3600;
    else if (*p == 'd')
        unit = 86400;
    else if (*p != 's' && *p != '\0')
        return false;
    if (*p && p[1])
        return false;
    if (v > EXPIRES_MAX_S / unit)
        return false;
    v *= unit;
    if (v < EXPIRES_MIN_S)
        return false;
    *out = v;
    return true;
}

static void on_file(void *ctx, const char *rel, uint64_t size)
{
    export_cli *c = ctx;
    if (c->json)
        json_array_append_new(c->written,
                              json_pack("{s:s,s:I}", "path", rel, "size", (json_int_t)size));
    else if (c->list)
        printf("%s\n", rel);
}

static void print_summary(const export_cli *c, const lp_export_result *r)
{
    char exp[21];
    lp_time_format(r->timestamp_expires, exp);
    printf("exported app %s into %s: timestamp version %llu (expires %s), snapshot version "
           "%llu\n",
           c->app, c->out, (unsigned long long)r->timestamp_version, exp,
           (unsigned long long)r->snapshot_version);
    printf("  %zu releases, %zu targets, %zu blobs", r->releases, r->targets, r->blobs);
    if (c->no_deltas)
        printf(", deltas left out\n");
    else
        printf(", %zu delta pairs with %zu deltas\n", r->delta_pairs, r->deltas);
    if (r->delta_pairs_pending)
        printf("  %zu delta pairs are still being made by the server: run the export again "
               "later to add them\n",
               r->delta_pairs_pending);
    if (r->deltas_missing)
        printf("  %zu deltas the database lists are missing from the data folder: left out "
               "(devices fetch those files whole)\n",
               r->deltas_missing);
    printf("  %zu files written (%llu bytes), %zu already there\n", r->files_written,
           (unsigned long long)r->bytes_written, r->files_kept);
}

static json_t *result_json(const export_cli *c, const lp_export_result *r)
{
    char exp[21];
    lp_time_format(r->timestamp_expires, exp);
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:O}",
                          "app", c->app, "out", c->out, "timestamp_version",
                          (json_int_t)r->timestamp_version, "timestamp_expires", exp,
                          "snapshot_version", (json_int_t)r->snapshot_version, "releases",
                          (json_int_t)r->releases, "targets", (json_int_t)r->targets, "blobs",
                          (json_int_t)r->blobs, "delta_pairs", (json_int_t)r->delta_pairs,
                          "deltas", (json_int_t)r->deltas, "delta_pairs_pending",
                          (json_int_t)r->delta_pairs_pending, "deltas_missing",
                          (json_int_t)r->deltas_missing, "files_written",
                          (json_int_t)r->files_written, "files_kept", (json_int_t)r->files_kept,
                          "bytes_written", (json_int_t)r->bytes_written, "written", c->written);
    return o;
}

static void print_json(json_t *o)
{
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (text)
        printf("%s\n", text);
    free(text);
}

/* Parses the options shared by both commands; `timestamp` allows --expires
 * and makes --out optional.  -1 to go on, else the exit code. */
static int parse(export_cli *c, int argc, char **argv, bool timestamp)
{
    static const struct option opts[] = {
        {"out", required_argument, NULL, 'o'},   {"data-dir", required_argument, NULL, 'd'},
        {"db", required_argument, NULL, 'b'},    {"no-deltas", no_argument, NULL, 'n'},
        {"verify", no_argument, NULL, 'v'},      {"list", no_argument, NULL, 'l'},
        {"json", no_argument, NULL, 'j'},        {"expires", required_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case 'o': c->out = optarg; break;
        case 'd': c->data_dir = optarg; break;
        case 'b': c->db = optarg; break;
        case 'n': c->no_deltas = true; break;
        case 'v': c->verify = true; break;
        case 'l': c->list = true; break;
        case 'j': c->json = true; break;
        case 'e':
            if (!timestamp)
                return usage_error(c, "--expires belongs to `livepush timestamp refresh`");
            c->expires = optarg;
            break;
        case 'h':
            fputs(timestamp ? timestamp_usage : export_usage, stdout);
            return LP_EXIT_OK;
        case ':':
            return usage_error(c, "an option is missing its value");
        default:
            return usage_error(c, "unknown option");
        }
    }
    if (optind >= argc)
        return usage_error(c, "name the app");
    if (argc - optind > 1)
        return usage_error(c, "one app at a time");
    c->app = argv[optind];
    if (!timestamp && (!c->out || !c->out[0]))
        return usage_error(c, "--out DIR is needed");
    if (c->out && !c->out[0])
        return usage_error(c, "--out needs a folder");
    if (timestamp && !c->out && (c->db || c->no_deltas || c->verify))
        return usage_error(c, "--db, --no-deltas and --verify go with --out");
    if (c->list && c->json)
        return usage_error(c, "--list or --json, not both");
    if (!c->data_dir) {
        const char *env = getenv("LIVEPUSH_DATA_DIR");
        c->data_dir = env && env[0] ? env : DEFAULT_DATA_DIR;
    }
    if (c->json && !(c->written = json_array())) {
        fprintf(stderr, "livepush %s: out of memory\n", c->cmd);
        return LP_EXIT_FAIL;
    }
    return -1;
}

static lp_status run_export(export_cli *c, const uint8_t *ts, size_t ts_len, lp_export_result *r,
                            lp_error *err)
{
    lp_export_opts o = {.data_dir = c->data_dir, .db_url = c->db, .app = c->app,
                        .out_dir = c->out, .no_deltas = c->no_deltas, .verify = c->verify,
                        .timestamp = ts, .timestamp_len = ts_len, .on_file = on_file, .ctx = c};
    return lp_export_app(&o, r, err);
}

int lp_cmd_export(int argc, char **argv)
{
    export_cli c = {.cmd = "export"};
    int rc = parse(&c, argc, argv, false);
    if (rc >= 0)
        return rc;
    lp_error err;
    lp_error_clear(&err);
    lp_export_result r;
    lp_status st = run_export(&c, NULL, 0, &r, &err);
    if (!st && c.json) {
        json_t *o = result_json(&c, &r);
        print_json(o);
        json_decref(o);
    } else if (!st) {
        print_summary(&c, &r);
    }
    json_decref(c.written);
    fflush(stdout);
    return st ? lp_cli_fail(&err, "export") : LP_EXIT_OK;
}

int lp_cmd_timestamp(int argc, char **argv)
{
    export_cli c = {.cmd = "timestamp refresh"};
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(timestamp_usage, stdout);
        return LP_EXIT_OK;
    }
    if (argc < 2 || strcmp(argv[1], "refresh") != 0) {
        fprintf(stderr, "livepush timestamp: %s\n(see 'livepush timestamp refresh --help')\n",
                argc < 2 ? "name a subcommand: refresh" : "unknown subcommand (only refresh)");
        return LP_EXIT_USAGE;
    }
    int rc = parse(&c, argc - 1, argv + 1, true);
    if (rc >= 0)
        return rc;
    int64_t lifetime = 0;
    if (c.expires && !parse_duration(c.expires, &lifetime)) {
        json_decref(c.written);
        return usage_error(&c, "--expires: N followed by s, m, h or d, from 1 minute to 366 days");
    }
    lp_error err;
    lp_error_clear(&err);
    uint8_t *ts = NULL;
    size_t ts_len = 0;
    uint64_t version = 0;
    int64_t expires = 0;
    lp_status st = lp_export_timestamp_refresh(c.data_dir, c.app, lifetime, &ts, &ts_len,
                                               &version, &expires, &err);
    char exp[21];
    lp_time_format(expires, exp);
    if (!st && !c.json)
        printf("app %s: timestamp.json version %llu, expires %s\n", c.app,
               (unsigned long long)version, exp);
    lp_export_result r;
    memset(&r, 0, sizeof r);
    if (!st && c.out)
        st = run_export(&c, ts, ts_len, &r, &err);
    if (!st && c.json) {
        json_t *o = json_pack("{s:s,s:I,s:s}", "app", c.app, "timestamp_version",
                              (json_int_t)version, "timestamp_expires", exp);
        if (o && c.out)
            json_object_set_new(o, "export", result_json(&c, &r));
        print_json(o);
        json_decref(o);
    } else if (!st && c.out) {
        print_summary(&c, &r);
    }
    free(ts);
    json_decref(c.written);
    fflush(stdout);
    return st ? lp_cli_fail(&err, "timestamp refresh") : LP_EXIT_OK;
}
