/*
 * bench_agent.c — one update of a device, timed phase by phase, for
 * bench/agent/run.
 *
 *   bench_agent --server URL --app APP --root DIR [--trusted-root FILE]
 *               [--channel NAME] [--verify]
 *   bench_agent --root DIR --verify-release ID
 *
 * Does exactly what an agent does for one update, with the public calls of
 * livepush/updater.h and nothing else:
 *
 *   open      lp_updater_open on the install root DIR, the trusted root
 *             installed into DIR/.livepush/metadata (first run only),
 *             lp_net_open, lp_net_open_tuf
 *   check     lp_check_for_update (TUF refresh, release chosen, its
 *             manifest downloaded through TUF and parsed)
 *   stage     lp_updater_stage with lp_net_fetch_blob_unsynced as the blob source
 *             (unchanged files hard-linked from installed releases)
 *   verify    only with --verify: lp_updater_verify (reads the whole release)
 *   activate  lp_updater_activate (the atomic switch of `current`)
 *
 * and prints one JSON object on stdout: the release installed, the
 * milliseconds of each phase (monotonic clock), the staging counts (files
 * linked, copied, fetched; bytes fetched), the blob requests made, and the
 * process's peak resident memory after each phase (getrusage ru_maxrss, KiB),
 * which tells in which phase the peak is reached.  Exit 0 after an update,
 * 3 when the server offers nothing newer, 1 on any failure (the message on
 * stderr), 2 on a usage error.
 *
 * --verify-release ID only runs lp_updater_verify on installed release ID
 * (every file read and hashed) and prints {"ms":{"verify":...},...}: the cost
 * of the check of the whole release that an orchestrated update adds before
 * activating, measured apart from the update itself.
 *
 * It is a benchmark driver, built by bench/agent/run against the static
 * library; it is not part of the product or of the tests.
 */
#include "livepush/tuf.h"
#include "livepush/updater.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PATH_BUF 4096

typedef struct counting_fetch {
    lp_net *net;
    uint64_t requests;
    uint64_t bytes;
} counting_fetch;

/* lp_net_fetch_blob_unsynced (staging fsyncs each file once), counted. */
static lp_status fetch_blob(void *ctx, const char *sha256, uint64_t size, const char *dest,
                            lp_error *err)
{
    counting_fetch *c = ctx;
    c->requests++;
    lp_status st = lp_net_fetch_blob_unsynced(c->net, sha256, size, dest, err);
    if (!st)
        c->bytes += size;
    return st;
}

/* dst = a + b; false when it does not fit. */
static bool fits(char *dst, size_t cap, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la + lb + 1 > cap)
        return false;
    memcpy(dst, a, la);
    memcpy(dst + la, b, lb + 1);
    return true;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* A version label as a JSON string (labels are printable, but may hold a
 * quote or a backslash). */
static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int usage(const char *why)
{
    fprintf(stderr,
            "bench_agent: %s\n"
            "usage: bench_agent --server URL --app APP --root DIR [--trusted-root FILE]\n"
            "                   [--channel NAME] [--verify]\n"
            "       bench_agent --root DIR --verify-release ID\n",
            why);
    return 2;
}

static int fail(const char *what, const lp_error *err)
{
    fprintf(stderr, "bench_agent: %s: %s (%s)\n", what, err->msg, lp_status_name(err->code));
    return 1;
}

/* --verify-release: lp_updater_verify alone, timed: first as the agent runs
 * it (files whose content is known from staging are not read), then with
 * verify_all (every file read). */
static int verify_only(const char *root, uint64_t id)
{
    double ms[2];
    lp_verify_stats vs[2];
    for (int all = 0; all < 2; all++) {
        lp_error err;
        lp_updater *u = NULL;
        if (lp_updater_open(&(lp_updater_config){.root = root, .verify_all = all}, &u, &err))
            return fail("opening the install root", &err);
        double t = now_ms();
        lp_status st = lp_updater_verify_stats(u, id, &vs[all], &err);
        ms[all] = now_ms() - t;
        lp_updater_close(u);
        if (st)
            return fail("verifying", &err);
    }
    printf("{\"release\":%" PRIu64 ",\"ms\":{\"verify\":%.3f,\"verify_all\":%.3f},"
           "\"files_read\":{\"verify\":%" PRIu64 ",\"verify_all\":%" PRIu64 "},"
           "\"files\":%" PRIu64 ",\"peak_rss_kib\":{\"verify\":%ld}}\n",
           id, ms[0], ms[1], vs[0].files_read, vs[1].files_read, vs[0].files, peak_rss_kib());
    return fflush(stdout) == 0 ? 0 : 1;
}

/* The phases, in order; a phase not run keeps -1. */
enum { PH_OPEN, PH_CHECK, PH_STAGE, PH_VERIFY, PH_ACTIVATE, PH_COUNT };
static const char *const phase_names[PH_COUNT] = {"open", "check", "stage", "verify",
                                                  "activate"};

int main(int argc, char **argv)
{
    const char *server = NULL, *app = NULL, *root = NULL, *trusted = NULL, *channel = "stable";
    const char *verify_release = NULL;
    bool verify = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "--server"))
            slot = &server;
        else if (!strcmp(a, "--app"))
            slot = &app;
        else if (!strcmp(a, "--root"))
            slot = &root;
        else if (!strcmp(a, "--trusted-root"))
            slot = &trusted;
        else if (!strcmp(a, "--channel"))
            slot = &channel;
        else if (!strcmp(a, "--verify-release"))
            slot = &verify_release;
        else if (!strcmp(a, "--verify")) {
            verify = true;
            continue;
        } else
            return usage("unknown argument");
        if (i + 1 >= argc)
            return usage("option without its value");
        *slot = argv[++i];
    }
    if (verify_release) {
        char *end = NULL;
        errno = 0;
        unsigned long long id = strtoull(verify_release, &end, 10);
        if (!root || errno || !*verify_release || *end || id == 0)
            return usage("--verify-release needs --root and a release id >= 1");
        return verify_only(root, (uint64_t)id);
    }
    if (!server || !app || !root)
        return usage("--server, --app and --root are required");

    double ms[PH_COUNT], rss[PH_COUNT];
    for (int p = 0; p < PH_COUNT; p++)
        ms[p] = rss[p] = -1;
    lp_error err;
    lp_updater *u = NULL;
    lp_net *net = NULL;
    lp_tuf_client *tuf = NULL;
    lp_updater_status status = {0};
    lp_update_offer offer = {0};
    counting_fetch cf = {0};
    lp_stage_stats stats = {0};
    uint64_t *bad = NULL;
    bool available = false;
    lp_status st;
    int rc = 1;
    char state[PATH_BUF], meta[PATH_BUF], work[PATH_BUF];

    /* ---- open ---- */
    double start = now_ms(), t = start;
    if (lp_updater_open(&(lp_updater_config){.root = root}, &u, &err)) {
        rc = fail("opening the install root", &err);
        goto out;
    }
    /* the state folder and its two subfolders, each checked for length */
    if (!fits(state, sizeof state, lp_updater_root(u), "/.livepush") ||
        !fits(meta, sizeof meta, state, "/metadata") ||
        !fits(work, sizeof work, state, "/downloads")) {
        fprintf(stderr, "bench_agent: install root path too long: %s\n", lp_updater_root(u));
        goto out;
    }
    if (trusted && lp_tuf_init_trusted_root(meta, trusted, &err)) {
        rc = fail("installing the trusted root", &err);
        goto out;
    }
    if (mkdir(work, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "bench_agent: mkdir %s: %s\n", work, strerror(errno));
        goto out;
    }
    if (lp_net_open(&(lp_net_config){.server_url = server, .app = app, .state_dir = state}, &net,
                    &err)) {
        rc = fail("opening the connection", &err);
        goto out;
    }
    if (lp_net_open_tuf(net, &tuf, &err)) {
        rc = fail("opening the TUF client", &err);
        goto out;
    }
    if (lp_updater_status_get(u, &status, &err)) {
        rc = fail("reading the device's state", &err);
        goto out;
    }
    ms[PH_OPEN] = now_ms() - t;
    rss[PH_OPEN] = (double)peak_rss_kib();

    /* ---- check ---- */
    t = now_ms();
    if (status.bad_count) {
        bad = calloc(status.bad_count, sizeof *bad);
        if (!bad) {
            fprintf(stderr, "bench_agent: out of memory\n");
            goto out;
        }
        for (size_t i = 0; i < status.bad_count; i++)
            bad[i] = status.bad[i].id;
    }
    st = lp_check_for_update(tuf,
                                       &(lp_check_opts){.channel = channel,
                                                        .current_id = status.current,
                                                        .bad_ids = bad,
                                                        .bad_count = status.bad_count,
                                                        .work_dir = work},
                                       &offer, &available, &err);
    free(bad);
    bad = NULL;
    if (st) {
        rc = fail("checking for an update", &err);
        goto out;
    }
    ms[PH_CHECK] = now_ms() - t;
    rss[PH_CHECK] = (double)peak_rss_kib();
    if (!available) {
        fprintf(stderr, "bench_agent: no release newer than %" PRIu64 " is offered\n",
                status.current);
        rc = 3;
        goto out;
    }

    /* ---- stage ---- */
    t = now_ms();
    cf.net = net;
    if (lp_updater_stage(u, &offer.manifest, offer.version_code,
                         &(lp_stage_opts){.version = offer.version, .fetch_checks = true}, fetch_blob, &cf, &stats,
                         &err)) {
        rc = fail("staging", &err);
        goto out;
    }
    ms[PH_STAGE] = now_ms() - t;
    rss[PH_STAGE] = (double)peak_rss_kib();

    /* ---- verify (optional) ---- */
    if (verify) {
        t = now_ms();
        if (lp_updater_verify(u, offer.version_code, &err)) {
            rc = fail("verifying", &err);
            goto out;
        }
        ms[PH_VERIFY] = now_ms() - t;
        rss[PH_VERIFY] = (double)peak_rss_kib();
    }

    /* ---- activate ---- */
    t = now_ms();
    if (lp_updater_activate(u, offer.version_code, &err)) {
        rc = fail("activating", &err);
        goto out;
    }
    ms[PH_ACTIVATE] = now_ms() - t;
    rss[PH_ACTIVATE] = (double)peak_rss_kib();
    double total = now_ms() - start;

    printf("{\"from\":%" PRIu64 ",\"to\":%" PRIu64 ",\"version\":", status.current,
           offer.version_code);
    print_json_string(offer.version);
    printf(",\"entries\":%zu,\"ms\":{", offer.manifest.count);
    for (int p = 0; p < PH_COUNT; p++)
        if (ms[p] >= 0)
            printf("\"%s\":%.3f,", phase_names[p], ms[p]);
    printf("\"total\":%.3f},\"peak_rss_kib\":{", total);
    bool first = true;
    for (int p = 0; p < PH_COUNT; p++)
        if (rss[p] >= 0) {
            printf("%s\"%s\":%.0f", first ? "" : ",", phase_names[p], rss[p]);
            first = false;
        }
    printf("},\"stage\":{\"files\":%" PRIu64 ",\"linked\":%" PRIu64 ",\"copied\":%" PRIu64
           ",\"fetched\":%" PRIu64 ",\"bytes_fetched\":%" PRIu64 ",\"bytes_copied\":%" PRIu64
           "},\"blob_requests\":%" PRIu64 ",\"blob_bytes\":%" PRIu64 "}\n",
           stats.files, stats.files_linked, stats.files_copied, stats.files_fetched,
           stats.bytes_fetched, stats.bytes_copied, cf.requests, cf.bytes);
    rc = fflush(stdout) == 0 ? 0 : 1;

out:
    free(bad);
    lp_update_offer_free(&offer);
    lp_updater_status_free(&status);
    lp_tuf_client_free(tuf);
    lp_net_close(net);
    lp_updater_close(u);
    return rc;
}
