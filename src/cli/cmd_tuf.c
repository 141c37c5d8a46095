/*
 * cmd_tuf.c — `livepush tuf`: the low-level TUF client on the command line.
 *
 *   livepush tuf init     --metadata-dir DIR --root ROOT.json
 *   livepush tuf refresh  --metadata-dir DIR --metadata-url URL [--json]
 *   livepush tuf download --metadata-dir DIR --metadata-url URL --targets-url URL
 *                         --out DIR [--json] NAME...
 *
 * `init` needs no network.  `refresh` runs the whole client workflow and
 * prints the trusted versions.  `download` refreshes, then finds, downloads
 * and verifies each named target into --out (sub-folders created as the
 * target name says).  Exit 0 on success, 1 on any failure with the reason
 * on stderr, 2 on a usage error.  With --json a result object is printed on
 * stdout in both cases: {"refresh": {...}, "targets": {name: {...}}}.
 */
#include "cli/cli.h"
#include "core/file.h"
#include "livepush/tuf.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: livepush tuf init --metadata-dir DIR --root ROOT.json\n"
    "       livepush tuf refresh --metadata-dir DIR --metadata-url URL [--json]\n"
    "       livepush tuf download --metadata-dir DIR --metadata-url URL --targets-url URL\n"
    "                             --out DIR [--json] NAME...\n"
    "\n"
    "  --metadata-dir DIR   folder of trusted metadata (root.json, timestamp.json, ...)\n"
    "  --root FILE          trusted root metadata to start from (init)\n"
    "  --metadata-url URL   base URL of the repository's metadata\n"
    "  --targets-url URL    base URL of the repository's target files\n"
    "  --out DIR            where downloaded targets are written (download)\n"
    "  --json               print the outcome as JSON on stdout\n"
    "\n"
    "Exit codes: 0 success, 1 failure (reason on stderr), 2 usage error.\n";

typedef struct opts {
    const char *metadata_dir, *root, *metadata_url, *targets_url, *out;
    int json;
} opts;

static int parse(int argc, char **argv, opts *o)
{
    static const struct option lo[] = {
        {"metadata-dir", required_argument, NULL, 'm'}, {"root", required_argument, NULL, 'r'},
        {"metadata-url", required_argument, NULL, 'u'}, {"targets-url", required_argument, NULL, 't'},
        {"out", required_argument, NULL, 'o'},          {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},               {NULL, 0, NULL, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'm': o->metadata_dir = optarg; break;
        case 'r': o->root = optarg; break;
        case 'u': o->metadata_url = optarg; break;
        case 't': o->targets_url = optarg; break;
        case 'o': o->out = optarg; break;
        case 'j': o->json = 1; break;
        case 'h': fputs(usage_text, stdout); return LP_EXIT_OK;
        default: fputs(usage_text, stderr); return LP_EXIT_USAGE;
        }
    }
    return -1;
}

static int need(const char *v, const char *name)
{
    if (v)
        return 0;
    fprintf(stderr, "livepush tuf: %s is required\n\n%s", name, usage_text);
    return 1;
}

/* A target name must stay inside --out: relative, no empty, "." or ".." part. */
static int safe_name(const char *n)
{
    if (!*n || *n == '/')
        return 0;
    for (const char *p = n; *p;) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 0 || (l == 1 && p[0] == '.') || (l == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += l + (e ? 1 : 0);
        if (e && !*p)
            return 0;
    }
    return 1;
}

static void print_json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void print_refresh(const lp_tuf_client *c, lp_status st, lp_tuf_step step,
                          const lp_error *err)
{
    lp_tuf_versions v = {0};
    if (c)
        lp_tuf_client_versions(c, &v);
    if (st) {
        printf("{\"result\":\"failure\",\"failed_at\":\"%s\",\"failure\":\"%s\",\"trusted_root_version\":%llu,\"message\":",
               lp_tuf_step_name(step), lp_status_name(st), (unsigned long long)v.root);
        print_json_str(err->msg);
        putchar('}');
        return;
    }
    printf("{\"result\":\"success\",\"trusted_versions\":{\"root\":%llu,\"timestamp\":%llu,"
           "\"snapshot\":%llu,\"targets\":%llu}}",
           (unsigned long long)v.root, (unsigned long long)v.timestamp,
           (unsigned long long)v.snapshot, (unsigned long long)v.targets);
}

static int run_init(const opts *o)
{
    if (need(o->metadata_dir, "--metadata-dir") || need(o->root, "--root"))
        return LP_EXIT_USAGE;
    lp_error err;
    lp_error_clear(&err);
    if (lp_tuf_init_trusted_root(o->metadata_dir, o->root, &err))
        return lp_cli_fail(&err, "tuf init");
    if (!o->json)
        printf("trusted root installed in %s\n", o->metadata_dir);
    return LP_EXIT_OK;
}

static int run_refresh(const opts *o, int nnames, char **names, int download)
{
    if (need(o->metadata_dir, "--metadata-dir") || need(o->metadata_url, "--metadata-url") ||
        (download && (need(o->targets_url, "--targets-url") || need(o->out, "--out"))))
        return LP_EXIT_USAGE;
    if (download && nnames == 0) {
        fprintf(stderr, "livepush tuf download: name at least one target\n\n%s", usage_text);
        return LP_EXIT_USAGE;
    }
    lp_error err;
    lp_error_clear(&err);
    lp_tuf_client_config cfg = {.metadata_dir = o->metadata_dir,
                                .metadata_url = o->metadata_url,
                                .targets_url = o->targets_url};
    lp_tuf_client *c = NULL;
    lp_tuf_step step = LP_TUF_STEP_ROOT;
    lp_status st = lp_tuf_client_open(&c, &cfg, &err);
    if (!st)
        st = lp_tuf_client_refresh(c, &step, &err);
    int rc = LP_EXIT_OK;
    if (o->json) {
        printf("{\"refresh\":");
        print_refresh(c, st, step, &err);
    }
    if (st) {
        if (o->json)
            printf(",\"targets\":{}}\n");
        lp_cli_fail(&err, "tuf refresh");
        lp_tuf_client_free(c);
        return LP_EXIT_FAIL;
    }
    if (!o->json) {
        lp_tuf_versions v;
        lp_tuf_client_versions(c, &v);
        printf("refreshed: root %llu, timestamp %llu, snapshot %llu, targets %llu\n",
               (unsigned long long)v.root, (unsigned long long)v.timestamp,
               (unsigned long long)v.snapshot, (unsigned long long)v.targets);
    }
    if (o->json)
        printf(",\"targets\":{");
    for (int i = 0; i < nnames; i++) {
        lp_error_clear(&err);
        lp_tuf_target *t = NULL;
        char *dest = NULL;
        if (!safe_name(names[i]))
            st = lp_error_set(&err, LP_ERR_INVALID_ARG, "target name \"%s\" would leave --out",
                              names[i]);
        else
            st = lp_tuf_client_find_target(c, names[i], &t, &err);
        if (!st && !(dest = lp_path_join(o->out, names[i])))
            st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
        if (!st) {
            char *slash = strrchr(dest, '/');
            *slash = 0;
            st = lp_file_mkdirs(dest, 0755, &err);
            *slash = '/';
        }
        if (!st)
            st = lp_tuf_client_download_target(c, t, dest, &err);
        if (o->json) {
            printf("%s", i ? "," : "");
            print_json_str(names[i]);
            if (st)
                printf(":{\"result\":\"%s\",\"failure\":\"%s\",\"message\":",
                       st == LP_ERR_NOT_FOUND ? "not_found" : "failure", lp_status_name(st));
            else
                printf(":{\"result\":\"found\",\"found_in_role\":\"%s\",\"length\":%llu,"
                       "\"sha256\":\"%s\",\"message\":",
                       lp_tuf_target_role(t), (unsigned long long)lp_tuf_target_length(t),
                       lp_tuf_target_sha256(t) ? lp_tuf_target_sha256(t) : "");
            print_json_str(st ? err.msg : "verified");
            putchar('}');
        } else if (!st) {
            printf("%s: %llu bytes, sha256 %s, from role %s -> %s\n", names[i],
                   (unsigned long long)lp_tuf_target_length(t),
                   lp_tuf_target_sha256(t) ? lp_tuf_target_sha256(t) : "-", lp_tuf_target_role(t),
                   dest);
        }
        if (st) {
            lp_cli_fail(&err, "tuf download");
            rc = LP_EXIT_FAIL;
        }
        free(dest);
        lp_tuf_target_free(t);
    }
    if (o->json)
        printf("}}\n");
    lp_tuf_client_free(c);
    return rc;
}

int lp_cmd_tuf(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_text, stderr);
        return LP_EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
        fputs(usage_text, stdout);
        return LP_EXIT_OK;
    }
    opts o = {0};
    int rc = parse(argc - 1, argv + 1, &o);
    if (rc >= 0)
        return rc;
    int nnames = argc - 1 - optind;
    char **names = argv + 1 + optind;
    if (!strcmp(sub, "init"))
        return run_init(&o);
    if (!strcmp(sub, "refresh"))
        return run_refresh(&o, 0, NULL, 0);
    if (!strcmp(sub, "download"))
        return run_refresh(&o, nnames, names, 1);
    fprintf(stderr, "livepush tuf: unknown subcommand '%s'\n\n%s", sub, usage_text);
    return LP_EXIT_USAGE;
}
