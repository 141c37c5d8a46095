/*
 * cmd_device_run.c — `livepush device launch`, `check` and `apply` (see
 * cmd_device.c for the family).
 *
 * launch is the app's starter: it counts one launch of the current release
 * (lp_device_launch: past the probation limits it rolls back first, and the
 * rollback is queued as an event), then replaces itself with the app, run
 * from the folder of the release that is current now — the real
 * releases/<id> folder, not the `current` symlink, so the app keeps its
 * files even if `current` switches while it runs.  A command with a '/'
 * (./bin/app) is relative to that folder; one without is looked up in PATH.
 * The app gets LIVEPUSH_INSTALL_ROOT, LIVEPUSH_RELEASE_DIR, LIVEPUSH_RELEASE_ID
 * and LIVEPUSH_RELEASE_VERSION, so it can confirm itself with
 * `livepush device mark-healthy --id $LIVEPUSH_RELEASE_ID`.
 *
 * check and apply talk to the server; afterwards they send the queued
 * events (best effort: a failure to send is a warning, the events stay
 * queued for the agent).
 */
#include "cli/cmd_device.h"

#include "cli/api_client.h"
#include "cli/cli.h"
#include "cli/device_config.h"
#include "core/timeutil.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct run_opts {
    const char *usage_text;
    bool json, verbose, dry_run;
} run_opts;

static void run_usage(FILE *f, void *ctx)
{
    const run_opts *o = ctx;
    fputs(o->usage_text, f);
    lp_device_cmd_common_help(f);
}

static int on_run(void *ctx, int code, const char *arg)
{
    (void)arg;
    run_opts *o = ctx;
    if (code == 'j')
        o->json = true;
    else if (code == 'v')
        o->verbose = true;
    else if (code == 'n')
        o->dry_run = true;
    else
        return LP_EXIT_USAGE;
    return -1;
}

static const struct option run_options[] = {{"json", no_argument, NULL, 'j'},
                                            {"verbose", no_argument, NULL, 'v'},
                                            {"dry-run", no_argument, NULL, 'n'},
                                            {NULL, 0, NULL, 0}};

static void send_quietly(lp_device *d, const char *cmd)
{
    lp_error err;
    size_t sent;
    lp_status st = lp_device_send_events(d, &sent, &err);
    if (st == LP_ERR_UNSUPPORTED) /* a static mirror: said, not a failure */
        fprintf(stderr, "livepush %s: no telemetry: %s\n", cmd, err.msg);
    else if (st)
        fprintf(stderr, "livepush %s: warning: events stay queued: %s\n", cmd, err.msg);
}

/* ---- launch ---------------------------------------------------------------- */

int lp_device_cmd_launch(int argc, char **argv)
{
    run_opts o = {.usage_text =
                      "usage: livepush device launch [options] -- CMD [ARGS...]\n\n"
                      "Counts one launch of the current release, then runs CMD in its place\n"
                      "(exec), in the folder of the release that is current.  While a release\n"
                      "is on probation, the launch past --probation-launches (or after the\n"
                      "window) rolls back first, and the release rolled back to is started.\n"
                      "CMD with a '/' is relative to the release folder; without, PATH is\n"
                      "searched.  The app's environment gets LIVEPUSH_INSTALL_ROOT,\n"
                      "LIVEPUSH_RELEASE_DIR, LIVEPUSH_RELEASE_ID and LIVEPUSH_RELEASE_VERSION.\n"
                      "Once it works, it (or a health check) runs\n"
                      "`livepush device mark-healthy --id $LIVEPUSH_RELEASE_ID`.\n"
                      "Exit code: the app's; before it starts: 1 failure, 2 usage, 126 CMD\n"
                      "cannot be run, 127 CMD not found.\n"};
    lp_devcfg cfg;
    int first;
    int rc = lp_devcfg_parse(argc, argv, "device launch", "+h", NULL, NULL, &o, run_usage, &cfg,
                             &first);
    if (rc >= 0)
        return rc;
    if (first >= argc) {
        fprintf(stderr, "livepush device launch: give the app to start: "
                        "livepush device launch -- CMD [ARGS...]\n");
        return LP_EXIT_USAGE;
    }
    lp_device *d;
    if ((rc = lp_devcfg_open(&cfg, "device launch", NULL, &d)) >= 0)
        return rc;
    lp_error err;
    lp_probation_outcome po = LP_PROBATION_NONE;
    lp_updater_status s;
    memset(&s, 0, sizeof s);
    lp_status st = lp_device_launch(d, lp_time_now(), &po, &err);
    if (!st)
        st = lp_updater_status_get(lp_device_updater(d), &s, &err);
    if (!st && !s.current)
        st = lp_error_set(&err, LP_ERR_STATE, "no release is installed in %s",
                          lp_updater_root(lp_device_updater(d)));
    char dir[LP_DEVCFG_PATH_MAX + 64], id[24], version[LP_UPDATER_MAX_VERSION + 1] = "";
    snprintf(dir, sizeof dir, "%s/releases/%llu", lp_updater_root(lp_device_updater(d)),
             (unsigned long long)s.current);
    snprintf(id, sizeof id, "%llu", (unsigned long long)s.current);
    for (size_t i = 0; i < s.release_count; i++)
        if (s.releases[i].id == s.current)
            snprintf(version, sizeof version, "%s", s.releases[i].version);
    if (!st && po == LP_PROBATION_ROLLED_BACK)
        fprintf(stderr, "livepush device launch: rolled back to release %s (%s): %s\n", id,
                version, s.bad_count ? s.bad[s.bad_count - 1].reason : "");
    if (!st && (setenv("LIVEPUSH_INSTALL_ROOT", lp_updater_root(lp_device_updater(d)), 1) ||
                setenv("LIVEPUSH_RELEASE_DIR", dir, 1) || setenv("LIVEPUSH_RELEASE_ID", id, 1) ||
                setenv("LIVEPUSH_RELEASE_VERSION", version, 1)))
        st = lp_error_set(&err, LP_ERR_NOMEM, "setting the environment: %s", strerror(errno));
    lp_updater_status_free(&s);
    lp_device_close(d);
    if (st)
        return lp_cli_fail(&err, "device launch");
    if (chdir(dir) != 0) {
        fprintf(stderr, "livepush device launch: cd %s: %s\n", dir, strerror(errno));
        return LP_EXIT_FAIL;
    }
    fflush(NULL);
    execvp(argv[first], argv + first);
    int e = errno;
    fprintf(stderr, "livepush device launch: cannot run %s in %s: %s\n", argv[first], dir,
            strerror(e));
    return e == ENOENT ? 127 : 126;
}

/* ---- check ------------------------------------------------------------------- */

static void print_skip(void *ctx, const char *target, const char *reason)
{
    (void)ctx;
    fprintf(stderr, "skipped %s: %s\n", target, reason);
}

int lp_device_cmd_check(int argc, char **argv)
{
    run_opts o = {.usage_text = "usage: livepush device check [--json] [--verbose] [options]\n\n"
                                "Asks the server which release this device should run (TUF "
                                "metadata refreshed\nand verified, the release's manifest "
                                "downloaded and checked) and prints it,\nor that there is "
                                "none.  Installs nothing.  --verbose lists on stderr every\n"
                                "release not chosen and why.\n"};
    lp_devcfg cfg;
    int first;
    int rc = lp_devcfg_parse(argc, argv, "device check", "h", run_options, on_run, &o, run_usage,
                             &cfg, &first);
    if (rc >= 0)
        return rc;
    if (first != argc) {
        fprintf(stderr, "livepush device check: unexpected argument '%s'\n", argv[first]);
        return LP_EXIT_USAGE;
    }
    lp_device *d;
    lp_device_config extra = {.on_skip = o.verbose ? print_skip : NULL};
    if ((rc = lp_devcfg_open(&cfg, "device check", &extra, &d)) >= 0)
        return rc;
    lp_error err;
    lp_update_offer offer;
    bool available = false;
    char channel[LP_DEVICE_MAX_CHANNEL + 1] = "";
    lp_status st = lp_device_channel(d, channel, NULL, &err);
    if (!st)
        st = lp_device_check(d, &offer, &available, &err);
    if (cfg.server[0] && cfg.report)
        send_quietly(d, "device check");
    lp_device_close(d);
    if (st)
        return lp_cli_fail(&err, "device check");
    if (o.json) {
        json_t *j = json_pack("{s:b,s:s,s:I,s:I}", "available", available, "channel", channel,
                              "considered", (json_int_t)offer.considered, "malformed",
                              (json_int_t)offer.malformed);
        if (j && available) {
            json_object_set_new(j, "version", json_string(offer.version));
            json_object_set_new(j, "version_code", json_integer((json_int_t)offer.version_code));
            json_object_set_new(j, "mandatory", json_boolean(offer.mandatory));
            json_object_set_new(j, "notes", offer.notes ? json_string(offer.notes) : json_null());
            json_object_set_new(j, "rollback_of", offer.rollback_of
                                                      ? json_integer((json_int_t)offer.rollback_of)
                                                      : json_null());
            json_object_set_new(j, "files", json_integer((json_int_t)offer.manifest.count));
            json_object_set_new(j, "bytes", json_integer((json_int_t)lp_manifest_total_size(
                                                &offer.manifest)));
        }
        lp_client_print_json(j);
        json_decref(j);
    } else if (available) {
        char size[16];
        lp_client_format_bytes(lp_manifest_total_size(&offer.manifest), size);
        printf("update available on channel %s: %s (code %llu)%s, %zu entries, %s\n", channel,
               offer.version, (unsigned long long)offer.version_code,
               offer.mandatory ? ", mandatory" : "", offer.manifest.count, size);
        if (offer.notes)
            printf("notes: %s\n", offer.notes);
    } else {
        printf("no update on channel %s\n", channel);
    }
    lp_update_offer_free(&offer);
    return LP_EXIT_OK;
}

/* ---- apply ---------------------------------------------------------------------- */

/* A delta that failed is said on stderr; the update goes on with the full
 * file. */
static void print_fallback(void *ctx, const lp_delta_note *n)
{
    (void)ctx;
    if (n->kind == LP_DELTA_NOTE_FALLBACK)
        fprintf(stderr, "livepush device apply: delta fell back for %s (blob %s): %s\n",
                n->path, n->blob, n->reason);
    else if (n->kind == LP_DELTA_NOTE_INDEX_FAILED)
        fprintf(stderr, "livepush device apply: no deltas: %s\n", n->reason);
}

static void progress_bar(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    char a[16], b[16];
    lp_client_format_bytes(done, a);
    lp_client_format_bytes(total, b);
    fprintf(stderr, "\r%s of %s in place   ", a, b);
}

int lp_device_cmd_apply(int argc, char **argv)
{
    run_opts o = {.usage_text =
                      "usage: livepush device apply [--dry-run] [--json] [options]\n\n"
                      "Runs one update now, whatever --auto-apply says: checks, downloads what\n"
                      "the device lacks, verifies the whole release, and activates it (hooks,\n"
                      "atomic switch, probation).  --dry-run stops before the switch: the\n"
                      "release stays installed next to the current one (shown by `device\n"
                      "status`), and the next apply or agent tick activates it without\n"
                      "downloading it again.  Fails (exit 1) while the current release is on\n"
                      "probation: mark it healthy or roll it back first.\n"};
    lp_devcfg cfg;
    int first;
    int rc = lp_devcfg_parse(argc, argv, "device apply", "h", run_options, on_run, &o, run_usage,
                             &cfg, &first);
    if (rc >= 0)
        return rc;
    if (first != argc) {
        fprintf(stderr, "livepush device apply: unexpected argument '%s'\n", argv[first]);
        return LP_EXIT_USAGE;
    }
    lp_device *d;
    lp_device_config extra = {.progress = isatty(2) && !o.json ? progress_bar : NULL,
                              .on_delta = print_fallback};
    if ((rc = lp_devcfg_open(&cfg, "device apply", &extra, &d)) >= 0)
        return rc;
    lp_error err;
    lp_update_result r;
    lp_update_opts uo = {.policy = LP_APPLY_ALL, .dry_run = o.dry_run};
    lp_status st = lp_device_update(d, &uo, &r, &err);
    if (extra.progress)
        fputc('\n', stderr);
    if (cfg.server[0] && cfg.report)
        send_quietly(d, "device apply");
    lp_device_close(d);
    if (st)
        return lp_cli_fail(&err, "device apply");
    if (o.json) {
        json_t *j = json_pack("{s:s,s:I,s:I,s:s,s:b,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
                              "s:I,s:I}",
                              "outcome", lp_update_outcome_name(r.outcome), "from",
                              (json_int_t)r.from, "version_code", (json_int_t)r.version_code,
                              "version", r.version, "mandatory", r.mandatory,
                              "already_installed", r.already_installed, "files_fetched",
                              (json_int_t)r.stats.files_fetched, "bytes_fetched",
                              (json_int_t)r.stats.bytes_fetched, "files_linked",
                              (json_int_t)r.stats.files_linked, "files_copied",
                              (json_int_t)r.stats.files_copied, "files_delta",
                              (json_int_t)r.stats.files_delta, "bytes_delta",
                              (json_int_t)r.stats.bytes_delta, "bytes_delta_saved",
                              (json_int_t)r.stats.bytes_delta_saved, "delta_fallbacks",
                              (json_int_t)r.stats.delta_fallbacks, "check_ms",
                              (json_int_t)r.check_ms, "download_ms", (json_int_t)r.download_ms,
                              "verify_ms", (json_int_t)r.verify_ms, "activate_ms",
                              (json_int_t)r.activate_ms);
        lp_client_print_json(j);
        json_decref(j);
    } else if (r.outcome == LP_UPDATE_NONE) {
        printf("no update: release %llu stays current\n", (unsigned long long)r.from);
    } else if (r.outcome == LP_UPDATE_WAITING) {
        printf("%s (code %llu) is available; it installs in the channel's maintenance window\n",
               r.version, (unsigned long long)r.version_code);
    } else if (r.outcome == LP_UPDATE_ACTIVATED || r.outcome == LP_UPDATE_STAGED) {
        char size[16];
        lp_client_format_bytes(r.stats.bytes_fetched, size);
        printf("%s %s (code %llu): %llu files fetched (%s), %llu linked, %llu copied%s\n",
               r.outcome == LP_UPDATE_ACTIVATED ? "activated" : "staged (dry run)", r.version,
               (unsigned long long)r.version_code, (unsigned long long)r.stats.files_fetched, size,
               (unsigned long long)r.stats.files_linked, (unsigned long long)r.stats.files_copied,
               r.already_installed ? " (installed before)" : "");
        if (r.stats.files_delta || r.stats.delta_fallbacks) {
            char got[16], saved[16];
            lp_client_format_bytes(r.stats.bytes_delta, got);
            lp_client_format_bytes(r.stats.bytes_delta_saved, saved);
            printf("  of which %llu as deltas (%s downloaded, %s saved), %llu delta "
                   "fallbacks\n",
                   (unsigned long long)r.stats.files_delta, got, saved,
                   (unsigned long long)r.stats.delta_fallbacks);
        }
    }
    if (r.outcome == LP_UPDATE_DEFERRED) {
        fprintf(stderr, "livepush device apply: %s (code %llu) is available, but release %llu is "
                        "on probation: mark it healthy or roll it back first\n",
                r.version, (unsigned long long)r.version_code, (unsigned long long)r.from);
        return LP_EXIT_FAIL;
    }
    return LP_EXIT_OK;
}
