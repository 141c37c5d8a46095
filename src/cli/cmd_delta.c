/*
 * cmd_delta.c — `livepush delta`: make, apply and inspect binary deltas.
 *
 *   livepush delta make OLD NEW DELTA [--level N] [--x86 auto|on|off]
 *                       [--dict auto|on|off|only] [--dict-level N] [--threads N] [--json]
 *   livepush delta apply OLD DELTA OUT [--sync on|off] [--expect SHA256]
 *   livepush delta info DELTA [--json]
 *   livepush delta tree make|apply ...   (cmd_delta_tree.c: whole folders)
 *
 * A thin front to include/livepush/delta.h: make prints what the engine
 * reports (sizes, matched bytes, time per phase), apply writes OUT only when
 * the result's digest is verified, info prints the checked header.
 */
#include "cli/cli.h"
#include "livepush/delta.h"
#include "livepush/hash.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: livepush delta make OLD NEW DELTA [--level N] [--x86 auto|on|off]\n"
    "                           [--dict auto|on|off|only] [--dict-level N] [--threads N]\n"
    "                           [--lzma auto|on|off] [--json]\n"
    "       livepush delta apply OLD DELTA OUT [--sync on|off] [--expect SHA256]\n"
    "       livepush delta info DELTA [--json]\n"
    "       livepush delta tree make OLD_DIR NEW_DIR OUT_DIR [--level N] [--json]\n"
    "       livepush delta tree apply OLD_DIR IN_DIR OUT_DIR [--sync on|off]\n"
    "\n"
    "make   writes DELTA (atomically), which turns OLD into NEW, and prints its\n"
    "       statistics.  --level is the zstd level of its streams (1..22, default\n"
    "       19); --x86 controls the x86-64 branch transform (default: auto, used\n"
    "       when both files are x86-64 executables); --dict controls the\n"
    "       dictionary-frames coding (the new file as zstd frames with OLD as\n"
    "       dictionary, kept when smaller; auto: tried when the matched coding is\n"
    "       over 1/8 of NEW; only: that coding alone, no matching), --dict-level\n"
    "       its zstd level (default 22), --threads the threads that compress its\n"
    "       frames (default: the processors online, at most 4); --lzma codes its\n"
    "       raw parts as LZMA instead of zstd (auto: parts of at least 4 MiB;\n"
    "       smaller deltas of executables, slower to apply).\n"
    "apply  writes OUT from OLD and DELTA; OUT is replaced only when the result's\n"
    "       digest matches the one DELTA names (its XXH3-128: proof against damage\n"
    "       and a wrong OLD, as trustworthy as DELTA itself).  --expect gives the\n"
    "       SHA-256 you trust (from signed metadata): DELTA must name it and the\n"
    "       result is checked by SHA-256.  --sync off skips the fsync of OUT and\n"
    "       its folder (the replace stays atomic, but a power loss may lose OUT;\n"
    "       default on).\n"
    "info   prints DELTA's header: version, flags, sizes, digests, stream sizes.\n"
    "tree   the same for whole folders, in one process (`livepush delta tree\n"
    "       --help`).\n"
    "\n"
    "Exit codes: 0 success, 1 failure (reason on stderr), 2 usage error.\n";

/* The value of the word v among names (NULL-terminated) into *out; 0 when
 * v is none of them. */
static int choose(const char *v, const char *const names[], const int values[], int *out)
{
    for (size_t i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0) {
            *out = values[i];
            return 1;
        }
    return 0;
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("livepush delta: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n%s", usage_text);
    return LP_EXIT_USAGE;
}

static void print_stats(const lp_delta_stats *s, int json)
{
    if (json) {
        printf("{\"old_size\":%llu,\"new_size\":%llu,\"delta_size\":%llu,\"matched\":%llu,"
               "\"matched_equal\":%llu,\"literal\":%llu,\"entries\":%llu,\"control_len\":%llu,"
               "\"diff_len\":%llu,\"extra_len\":%llu,\"x86\":%s,\"dict_tried\":%s,"
               "\"dict_kept\":%s,\"dict_size\":%llu,\"seconds\":{\"hash\":%.6f,"
               "\"transform\":%.6f,\"sort\":%.6f,\"match\":%.6f,\"compress\":%.6f,"
               "\"dict\":%.6f,\"total\":%.6f}}\n",
               (unsigned long long)s->old_size, (unsigned long long)s->new_size,
               (unsigned long long)s->delta_size, (unsigned long long)s->matched,
               (unsigned long long)s->matched_equal, (unsigned long long)s->literal,
               (unsigned long long)s->entries, (unsigned long long)s->control_len,
               (unsigned long long)s->diff_len, (unsigned long long)s->extra_len,
               s->x86 ? "true" : "false", s->dict_tried ? "true" : "false",
               s->dict_kept ? "true" : "false", (unsigned long long)s->dict_size, s->t_hash,
               s->t_transform, s->t_sort, s->t_match, s->t_compress, s->t_dict, s->t_total);
        return;
    }
    printf("old %llu bytes, new %llu bytes, delta %llu bytes (%.2f%% of new)\n",
           (unsigned long long)s->old_size, (unsigned long long)s->new_size,
           (unsigned long long)s->delta_size,
           s->new_size ? 100.0 * (double)s->delta_size / (double)s->new_size : 0.0);
    printf("matched %llu bytes (%llu equal), literal %llu bytes, %llu entries, x86 %s\n",
           (unsigned long long)s->matched, (unsigned long long)s->matched_equal,
           (unsigned long long)s->literal, (unsigned long long)s->entries,
           s->x86 ? "on" : "off");
    printf("streams: control %llu, diff %llu, extra %llu bytes\n",
           (unsigned long long)s->control_len, (unsigned long long)s->diff_len,
           (unsigned long long)s->extra_len);
    if (s->dict_tried)
        printf("dictionary frames: %llu bytes, %s\n", (unsigned long long)s->dict_size,
               s->dict_kept ? "kept (the streams line is this coding's)"
                            : "not kept (larger)");
    printf("time: hash %.3fs, transform %.3fs, sort %.3fs, match %.3fs, compress %.3fs, "
           "dictionary %.3fs, total %.3fs\n", s->t_hash, s->t_transform, s->t_sort, s->t_match,
           s->t_compress, s->t_dict, s->t_total);
}

static int cmd_make(int argc, char **argv)
{
    static const struct option lo[] = {{"level", required_argument, NULL, 'l'},
                                       {"x86", required_argument, NULL, 'x'},
                                       {"dict", required_argument, NULL, 'd'},
                                       {"dict-level", required_argument, NULL, 'L'},
                                       {"threads", required_argument, NULL, 'T'},
                                       {"lzma", required_argument, NULL, 'z'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    lp_delta_options opt = {.threads = online < 1 ? 1 : online > 4 ? 4 : (int)online};
    int json = 0, ch, v;
    char *end;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'l':
            opt.level = (int)strtol(optarg, &end, 10);
            if (*end || opt.level < 1 || opt.level > 22)
                return usage_error("--level must be a number from 1 to 22");
            break;
        case 'x':
            if (!choose(optarg, (const char *[]){"auto", "on", "off", NULL},
                        (const int[]){LP_DELTA_X86_AUTO, LP_DELTA_X86_ON, LP_DELTA_X86_OFF},
                        &v))
                return usage_error("--x86 must be auto, on or off");
            opt.x86 = (lp_delta_x86)v;
            break;
        case 'd':
            if (!choose(optarg, (const char *[]){"auto", "on", "off", "only", NULL},
                        (const int[]){LP_DELTA_DICT_AUTO, LP_DELTA_DICT_ON, LP_DELTA_DICT_OFF,
                                      LP_DELTA_DICT_ONLY},
                        &v))
                return usage_error("--dict must be auto, on, off or only");
            opt.dict = (lp_delta_dict)v;
            break;
        case 'L':
            opt.dict_level = (int)strtol(optarg, &end, 10);
            if (*end || opt.dict_level < 1 || opt.dict_level > 22)
                return usage_error("--dict-level must be a number from 1 to 22");
            break;
        case 'T':
            opt.threads = (int)strtol(optarg, &end, 10);
            if (*end || opt.threads < 1 || opt.threads > LP_DELTA_THREADS_MAX)
                return usage_error("--threads must be a number from 1 to 16");
            break;
        case 'z':
            if (!choose(optarg, (const char *[]){"auto", "on", "off", NULL},
                        (const int[]){LP_DELTA_LZMA_AUTO, LP_DELTA_LZMA_ON, LP_DELTA_LZMA_OFF},
                        &v))
                return usage_error("--lzma must be auto, on or off");
            opt.lzma = (lp_delta_lzma)v;
            break;
        case 'j': json = 1; break;
        case 'h': fputs(usage_text, stdout); return LP_EXIT_OK;
        default: fputs(usage_text, stderr); return LP_EXIT_USAGE;
        }
    }
    if (argc - optind != 3)
        return usage_error("make needs OLD NEW DELTA");
    lp_error err;
    lp_error_clear(&err);
    lp_delta_stats s;
    if (lp_delta_make_file(argv[optind], argv[optind + 1], argv[optind + 2], &opt, &s, &err))
        return lp_cli_fail(&err, "delta");
    print_stats(&s, json);
    return LP_EXIT_OK;
}

int lp_cli_delta_sync_arg(const char *v, int *sync)
{
    return choose(v, (const char *[]){"on", "off", NULL}, (const int[]){1, 0}, sync);
}

static int cmd_apply(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        fputs(usage_text, stdout);
        return LP_EXIT_OK;
    }
    int sync = 1;
    uint8_t want[32];
    const uint8_t *expect = NULL;
    if (argc < 4)
        return usage_error("apply needs OLD DELTA OUT [--sync on|off] [--expect SHA256]");
    for (int i = 4; i < argc; i += 2) {
        if (i + 1 >= argc)
            return usage_error("apply: %s needs a value", argv[i]);
        if (strcmp(argv[i], "--sync") == 0) {
            if (!lp_cli_delta_sync_arg(argv[i + 1], &sync))
                return usage_error("--sync must be on or off");
        } else if (strcmp(argv[i], "--expect") == 0) {
            size_t n = 0;
            lp_error herr;
            if (strlen(argv[i + 1]) != 64 ||
                lp_hex_decode(argv[i + 1], want, sizeof want, &n, &herr) || n != 32)
                return usage_error("--expect must be a SHA-256 of 64 hex digits");
            expect = want;
        } else {
            return usage_error("apply: unknown option %s", argv[i]);
        }
    }
    lp_error err;
    lp_error_clear(&err);
    lp_status st = sync ? lp_delta_apply_file(argv[1], argv[2], argv[3], expect, &err)
                        : lp_delta_apply_file_unsynced(argv[1], argv[2], argv[3], expect, &err);
    if (st)
        return lp_cli_fail(&err, "delta");
    return LP_EXIT_OK;
}

static void print_header(const lp_delta_header *h, int json)
{
    char o[65], n[65], ox[33] = "", nx[33] = "";
    lp_hex_encode(h->old_sha256, 32, o);
    lp_hex_encode(h->new_sha256, 32, n);
    int xx = h->version >= LP_DELTA_VERSION_3;
    if (xx) {
        lp_hex_encode(h->old_xxh128, 16, ox);
        lp_hex_encode(h->new_xxh128, 16, nx);
    }
    int x86 = (h->flags & LP_DELTA_FLAG_X86) != 0;
    int pre = (h->flags & LP_DELTA_FLAG_EXTRA_PREFIX) != 0;
    int frames = (h->flags & LP_DELTA_FLAG_DICT_FRAMES) != 0;
    unsigned long long v[8] = {h->old_size,    h->new_size,  h->control_len, h->diff_len,
                               h->extra_len,   h->control_raw, h->diff_raw,  h->extra_raw};
    if (json) {
        char xj[96] = "";
        if (xx)
            snprintf(xj, sizeof xj, "\"old_xxh128\":\"%s\",\"new_xxh128\":\"%s\",", ox, nx);
        printf("{\"version\":%u,\"flags\":%u,\"x86\":%s,\"extra_prefix\":%s,"
               "\"dict_frames\":%s,"
               "\"old_size\":%llu,\"new_size\":%llu,\"old_sha256\":\"%s\","
               "\"new_sha256\":\"%s\",%s\"control_len\":%llu,\"diff_len\":%llu,"
               "\"extra_len\":%llu,\"control_raw\":%llu,\"diff_raw\":%llu,"
               "\"extra_raw\":%llu}\n",
               h->version, h->flags, x86 ? "true" : "false", pre ? "true" : "false",
               frames ? "true" : "false", v[0], v[1], o, n, xj, v[2], v[3], v[4], v[5], v[6],
               v[7]);
        return;
    }
    printf("version       %u\nflags         0x%x (x86 %s, extra prefix %s, dictionary frames %s)\n"
           "old size      %llu\nnew size      %llu\nold sha256    %s\nnew sha256    %s\n",
           h->version, h->flags, x86 ? "on" : "off", pre ? "on" : "off", frames ? "on" : "off",
           v[0], v[1], o, n);
    if (xx)
        printf("old xxh128    %s\nnew xxh128    %s\n", ox, nx);
    printf("streams       control %llu, diff %llu, extra %llu bytes\n"
           "decoded       control %llu, diff %llu, extra %llu bytes\n",
           v[2], v[3], v[4], v[5], v[6], v[7]);
}

static int cmd_info(int argc, char **argv)
{
    int json = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--help") == 0)
            return fputs(usage_text, stdout), LP_EXIT_OK;
        else if (argv[i][0] == '-' || path)
            return usage_error("info needs DELTA [--json]");
        else
            path = argv[i];
    }
    if (!path)
        return usage_error("info needs DELTA [--json]");
    lp_error err;
    lp_error_clear(&err);
    lp_delta_header h;
    if (lp_delta_read_header_file(path, &h, &err))
        return lp_cli_fail(&err, "delta");
    print_header(&h, json);
    return LP_EXIT_OK;
}

int lp_cmd_delta(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("missing subcommand (make, apply, info or tree)");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, stdout);
        return LP_EXIT_OK;
    }
    if (strcmp(argv[1], "make") == 0)
        return cmd_make(argc - 1, argv + 1);
    if (strcmp(argv[1], "apply") == 0)
        return cmd_apply(argc - 1, argv + 1);
    if (strcmp(argv[1], "info") == 0)
        return cmd_info(argc - 1, argv + 1);
    if (strcmp(argv[1], "tree") == 0)
        return lp_cmd_delta_tree(argc - 1, argv + 1);
    return usage_error("unknown subcommand (make, apply, info or tree)");
}
