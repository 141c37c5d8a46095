/*
 * cmd_upload.c — `livepush upload`: publishes a bundle as a new release.
 *
 *   livepush upload --bundle PATH --version V [--version-code N] [--channel C]...
 *                   [--runtime-version R] [--platform P] [--arch A] [--mandatory]
 *                   [--min-from-code N] [--max-from-code N] [--attribute KEY=VALUE]...
 *                   [--device ID]... [--devices-file FILE]
 *                   [--notes TEXT | --notes-file F] [--file-name NAME]
 *                   [--kind auto|archive|file] [--limit-rate RATE]
 *                   [--sign-key KEY.pem]... [--root ROOT.json] [client options]
 *
 * Steps:
 *   1. The bundle becomes one file: an archive or a single file is used as
 *      it is; a folder is packed into a deterministic tar (pack.h) in an
 *      unlinked temporary file, so nothing is left behind however the
 *      command ends.  Its SHA-256 and size are computed.
 *   2. An upload is created (POST /api/v1/apps/<app>/uploads {size, sha256})
 *      or, when a state file says an earlier run of the same bundle to the
 *      same server and app was interrupted, resumed: GET /api/v1/uploads/<id>
 *      gives the offset the server holds ("resuming at byte N" on stderr);
 *      if the server no longer knows the upload, a new one is made.
 *   3. The bytes go in chunks (4 MiB; env LIVEPUSH_UPLOAD_CHUNK sets another
 *      size, e.g. 64K, from 1 byte to 64 MiB) with PUT and
 *      "Content-Range: bytes START-END/TOTAL".  A 409 "offset_mismatch"
 *      carries the server's offset, and sending continues from there (a few
 *      times in a row at most, so two clients fighting over one upload end).
 *   4. The release is created (POST /api/v1/apps/<app>/releases), which
 *      consumes the upload; the state file is then removed.  A bundle the
 *      server refuses (422) would be refused again: its upload is deleted
 *      on the server and its state file removed.
 *
 * An app whose publisher signs answers step 4 with 202: the release is
 * pending and the answer holds the bytes to sign.  With --sign-key the
 * command computes the bundle's tree manifest itself before uploading
 * (signer.h: ingest into a temporary blob store), learns what devices trust
 * now (a TUF refresh from the root file given with --root), then checks
 * the prepared bytes (the new entry is this bundle's manifest with the
 * fields asked for, everything else as published), signs them with each
 * key and sends the signatures (signer.h).  Without --sign-key the release
 * is left waiting and the command says so (exit 5).  --sign-key for an app
 * the server signs is refused before anything is uploaded.
 *
 * The state file is $XDG_CACHE_HOME/livepush/uploads/<key>.json (default
 * ~/.cache/...), <key> being the SHA-256 of "<bundle sha256>\n<server>\n<app>",
 * written atomically (core/file.h) as
 *     {"upload":ID,"server":URL,"app":APP,"sha256":HEX,"size":N,"bundle":PATH}
 * A state file that cannot be read or does not match is ignored; when no
 * cache folder can be found the upload simply cannot be resumed.
 *
 * Progress: when stderr is a terminal, a bar with bytes sent of the total,
 * percent and rate is redrawn on stderr (at most ten times a second);
 * otherwise nothing is printed while sending.  The result goes to stdout: a
 * summary of the release, or with --json the server's answer.
 *
 * Targeting rules (livepush/targeting.h) are built from their options into
 * the body's "targeting" object: --attribute with a name given again
 * makes that attribute's value a list (any of them), in the order given;
 * the device ids are those of --device, then the lines of --devices-file.
 * They are checked with the library's own reader before anything is
 * uploaded, and for an app whose publisher signs they are part of the
 * release fields the prepared bytes must carry.
 *
 * Exit codes: api_client.h (a bundle refused by the server is 4; 5 the
 * release waits for more signatures; 1 when the checks refuse to sign).
 */
#include "cli/api_client.h"
#include "cli/api_print.h"
#include "cli/cli.h"
#include "cli/pack.h"
#include "cli/signer.h"
#include "core/file.h"
#include "livepush/hash.h"
#include "livepush/targeting.h"
#include "tuf/json.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CHUNK (4u * 1024 * 1024)
#define MAX_CHUNK (64u * 1024 * 1024)
#define MAX_CHANNELS 32
#define NOTES_MAX (64u * 1024)
#define STATE_MAX (64u * 1024)
#define MAX_RESYNC 5
#define UPLOAD_ID_MAX 128

static const char usage_text[] =
    "usage: livepush upload --bundle PATH --version V [options]\n"
    "\n"
    "Uploads a bundle (a folder, an archive such as .tar.gz or .zip, or a single\n"
    "file) and publishes it as a new release of the app.  An interrupted upload\n"
    "resumes where it stopped when the same command is run again.\n"
    "\n"
    "  --bundle PATH          the bundle; a folder is packed into a tar first\n"
    "  --version V            the release's version string (required)\n"
    "  --version-code N       its version code (default: one above the highest)\n"
    "  --channel C            publish on channel C (repeatable; default stable)\n"
    "  --runtime-version R    runtime the release needs\n"
    "  --platform P           platform it is for\n"
    "  --arch A               architecture it is for\n"
    "  --mandatory            clients must install it\n"
    "  --rollout PERCENT      start a staged rollout: offered to PERCENT of the devices of\n"
    "                         each channel (0..100, e.g. 10 or 12.5); raise it with\n"
    "                         'livepush rollout set'\n"
    "  --min-from-code N      only for devices running version code N or higher\n"
    "                         (a device with no release runs 0)\n"
    "  --max-from-code N      only for devices running version code N or lower\n"
    "  --attribute KEY=VALUE  only for devices with that attribute (repeatable;\n"
    "                         the same KEY again means any of the values)\n"
    "  --device ID            only for the devices listed (repeatable)\n"
    "  --devices-file FILE    device ids for the list, one per line (empty lines\n"
    "                         and lines starting with # are skipped)\n"
    "  --notes TEXT           release notes\n"
    "  --notes-file FILE      release notes from FILE (at most 64 KiB)\n"
    "  --file-name NAME       a single-file bundle's name in the release\n"
    "                         (default: the file's own name)\n"
    "  --kind KIND            auto (default), archive or file: how the server\n"
    "                         reads a file bundle\n"
    "  --limit-rate RATE      send at most RATE bytes per second (K, M, G suffixes)\n"
    "\n"
    "Apps whose publisher signs (the server prepares the release, the publisher\n"
    "signs it; without --sign-key it waits for signatures, exit 5):\n"
    "  --sign-key KEY.pem     a release key (private) to sign with (repeatable)\n"
    "  --root ROOT.json       the app's root file, to verify what is published now\n"
    "                         (without it the server's first root is trusted)\n"
    "\n"
    "Environment: LIVEPUSH_UPLOAD_CHUNK sets the chunk size (default 4M).\n"
    "A progress bar is shown on stderr when it is a terminal.\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

/* The targeting options: lp_cmd_upload owns the JSON values, so every
 * way out of the command releases them. */
typedef struct targeting_opts {
    const char *min_from, *max_from, *devices_file;
    json_t *attrs;     /* name -> array of values, in the order given */
    json_t *devices;   /* ids of --device */
    json_t *targeting; /* built by build_targeting; NULL: none */
} targeting_opts;

typedef struct uopts {
    lp_client_opts api;
    const char *bundle, *version, *version_code, *runtime_version, *platform, *arch;
    const char *notes, *notes_file, *file_name, *kind, *limit_rate;
    const char *channels[MAX_CHANNELS];
    size_t nchannels;
    bool mandatory;
    const char *rollout; /* --rollout PERCENT: a staged start */
    const char *root;
    const char *keys[LP_SIGNER_KEYS_MAX];
    size_t nkeys;
    struct targeting_opts *tg;
} uopts;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    fputs("livepush upload: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(see 'livepush upload --help')\n", stderr);
    return LP_EXIT_USAGE;
}

static int parse(int argc, char **argv, uopts *o)
{
    static const struct option lo[] = {LP_CLIENT_LONG_OPTIONS,
                                       {"bundle", required_argument, NULL, 'b'},
                                       {"version", required_argument, NULL, 'v'},
                                       {"version-code", required_argument, NULL, 'V'},
                                       {"channel", required_argument, NULL, 'c'},
                                       {"runtime-version", required_argument, NULL, 'r'},
                                       {"platform", required_argument, NULL, 'p'},
                                       {"arch", required_argument, NULL, 'a'},
                                       {"mandatory", no_argument, NULL, 'm'},
                                       {"rollout", required_argument, NULL, 'o'},
                                       {"notes", required_argument, NULL, 'n'},
                                       {"notes-file", required_argument, NULL, 'N'},
                                       {"file-name", required_argument, NULL, 'f'},
                                       {"kind", required_argument, NULL, 'k'},
                                       {"limit-rate", required_argument, NULL, 'l'},
                                       {"sign-key", required_argument, NULL, 'K'},
                                       {"root", required_argument, NULL, 'R'},
                                       {"min-from-code", required_argument, NULL, 'i'},
                                       {"max-from-code", required_argument, NULL, 'x'},
                                       {"attribute", required_argument, NULL, 'A'},
                                       {"device", required_argument, NULL, 'D'},
                                       {"devices-file", required_argument, NULL, 'F'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'h': fputs(usage_text, stdout); return LP_EXIT_OK;
        case 'i': o->tg->min_from = optarg; break;
        case 'x': o->tg->max_from = optarg; break;
        case 'F': o->tg->devices_file = optarg; break;
        case 'A': {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg)
                return usage_error("--attribute %s: expected KEY=VALUE", optarg);
            char key[LP_TARGETING_MAX_KEY + 2];
            snprintf(key, sizeof key, "%.*s", (int)(eq - optarg), optarg);
            if ((!o->tg->attrs && !(o->tg->attrs = json_object())))
                return usage_error("out of memory");
            json_t *vals = json_object_get(o->tg->attrs, key);
            if (!vals && json_object_set_new(o->tg->attrs, key, vals = json_array()))
                return usage_error("out of memory");
            json_t *v = json_string(eq + 1);
            if (!v)
                return usage_error("--attribute %s: not valid UTF-8", optarg);
            json_array_append_new(vals, v);
            break;
        }
        case 'D': {
            json_t *v = json_string(optarg);
            if (!v)
                return usage_error("--device %s: not valid UTF-8", optarg);
            if ((!o->tg->devices && !(o->tg->devices = json_array())) ||
                json_array_append_new(o->tg->devices, v))
                return usage_error("out of memory");
            break;
        }
        case 'b': o->bundle = optarg; break;
        case 'v': o->version = optarg; break;
        case 'V': o->version_code = optarg; break;
        case 'c':
            if (o->nchannels == MAX_CHANNELS)
                return usage_error("at most 32 --channel options");
            o->channels[o->nchannels++] = optarg;
            break;
        case 'r': o->runtime_version = optarg; break;
        case 'p': o->platform = optarg; break;
        case 'a': o->arch = optarg; break;
        case 'm': o->mandatory = true; break;
        case 'o': {
            int bp;
            lp_error e;
            if (lp_client_parse_percent(optarg, "--rollout", &bp, &e))
                return usage_error("%s", e.msg);
            o->rollout = optarg;
            break;
        }
        case 'n': o->notes = optarg; break;
        case 'N': o->notes_file = optarg; break;
        case 'f': o->file_name = optarg; break;
        case 'k': o->kind = optarg; break;
        case 'l': o->limit_rate = optarg; break;
        case 'R': o->root = optarg; break;
        case 'K':
            if (o->nkeys == LP_SIGNER_KEYS_MAX)
                return usage_error("at most %d --sign-key options", LP_SIGNER_KEYS_MAX);
            o->keys[o->nkeys++] = optarg;
            break;
        default:
            if (!lp_client_opt(&o->api, ch, optarg)) {
                fputs("(see 'livepush upload --help')\n", stderr);
                return LP_EXIT_USAGE;
            }
        }
    }
    if (optind != argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->bundle || !*o->bundle)
        return usage_error("--bundle is required");
    if (!o->version || !*o->version)
        return usage_error("--version is required");
    if (o->notes && o->notes_file)
        return usage_error("give --notes or --notes-file, not both");
    if (o->kind && strcmp(o->kind, "auto") && strcmp(o->kind, "archive") && strcmp(o->kind, "file"))
        return usage_error("--kind %s: must be auto, archive or file", o->kind);
    return -1;
}

/* ---- the bundle as one file ------------------------------------------------ */

typedef struct bundle {
    int fd;
    bool packed; /* a folder packed into a temporary tar */
    uint64_t size;
    char sha256[LP_SHA256_LEN * 2 + 1];
} bundle;

static lp_status open_packed(const char *dir, int *fd_out, lp_error *err)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    char *tmpl = lp_path_join(tmp, "livepush-pack-XXXXXX");
    if (!tmpl)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    int fd = mkostemp(tmpl, O_CLOEXEC);
    if (fd < 0) {
        lp_status st = lp_error_set(err, LP_ERR_IO, "temporary file in %s: %s", tmp, strerror(errno));
        free(tmpl);
        return st;
    }
    unlink(tmpl); /* gone from the folder at once; the descriptor keeps it */
    free(tmpl);
    lp_status st = lp_pack_dir(dir, fd, err);
    if (st) {
        close(fd);
        return st;
    }
    *fd_out = fd;
    return LP_OK;
}

static lp_status hash_fd(int fd, uint64_t size, char hex[LP_SHA256_LEN * 2 + 1], lp_error *err)
{
    lp_hash_ctx *h = NULL;
    lp_status st = lp_hash_new(&h, LP_HASH_SHA256, err);
    size_t bufsize = 1u << 20;
    uint8_t *buf = st ? NULL : malloc(bufsize);
    if (!st && !buf)
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    uint64_t off = 0;
    while (!st && off < size) {
        size_t want = size - off < bufsize ? (size_t)(size - off) : bufsize;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            st = lp_error_set(err, LP_ERR_IO, "reading at byte %llu: %s", (unsigned long long)off,
                              r < 0 ? strerror(errno) : "the file is shorter than its size");
            break;
        }
        st = lp_hash_update(h, buf, (size_t)r, err);
        off += (uint64_t)r;
    }
    uint8_t md[LP_HASH_MAX_LEN];
    if (!st)
        st = lp_hash_final(h, md, err);
    if (!st)
        lp_hex_encode(md, LP_SHA256_LEN, hex);
    free(buf);
    lp_hash_free(h);
    return st;
}

static lp_status bundle_open(const char *path, bundle *b, lp_error *err)
{
    struct stat sb;
    b->fd = -1;
    if (stat(path, &sb) != 0)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "bundle %s: %s",
                            path, strerror(errno));
    lp_status st = LP_OK;
    if (S_ISDIR(sb.st_mode)) {
        b->packed = true;
        st = open_packed(path, &b->fd, err);
    } else if (S_ISREG(sb.st_mode)) {
        b->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (b->fd < 0)
            st = lp_error_set(err, LP_ERR_IO, "bundle %s: %s", path, strerror(errno));
    } else {
        st = lp_error_set(err, LP_ERR_UNSUPPORTED,
                          "bundle %s: not a folder or a regular file", path);
    }
    if (!st && fstat(b->fd, &sb) != 0)
        st = lp_error_set(err, LP_ERR_IO, "bundle %s: %s", path, strerror(errno));
    if (!st) {
        b->size = (uint64_t)sb.st_size;
        st = hash_fd(b->fd, b->size, b->sha256, err);
        if (st)
            lp_error_prefix(err, st, "bundle %s", path);
    }
    if (st && b->fd >= 0) {
        close(b->fd);
        b->fd = -1;
    }
    return st;
}

/* ---- the state file ------------------------------------------------------- */

/* The state folder, or NULL (no cache folder known; or out of memory). */
static char *state_dir(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    char *base;
    if (xdg && xdg[0] == '/') {
        base = strdup(xdg);
    } else {
        const char *home = getenv("HOME");
        if (!home || home[0] != '/')
            return NULL;
        base = lp_path_join(home, ".cache");
    }
    char *dir = base ? lp_path_join(base, "livepush/uploads") : NULL;
    free(base);
    return dir;
}

/* The state file's path for this bundle, server and app, or NULL. */
static char *state_path(const bundle *b, const char *server, const char *app)
{
    char *dir = state_dir();
    if (!dir)
        return NULL;
    size_t n = strlen(b->sha256) + strlen(server) + strlen(app) + 4;
    char *key = malloc(n);
    char *path = NULL;
    uint8_t md[LP_HASH_MAX_LEN];
    if (key) {
        snprintf(key, n, "%s\n%s\n%s", b->sha256, server, app);
        if (!lp_hash_buf(LP_HASH_SHA256, key, strlen(key), md, NULL)) {
            char name[LP_SHA256_LEN * 2 + 8];
            lp_hex_encode(md, LP_SHA256_LEN, name);
            strcat(name, ".json");
            path = lp_path_join(dir, name);
        }
    }
    free(key);
    free(dir);
    return path;
}

static bool valid_upload_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > UPLOAD_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return false;
    }
    return true;
}

/* The upload id kept for this bundle, server and app (new malloc'd string),
 * or NULL when there is none that matches. */
static char *state_load(const char *path, const bundle *b, const char *server, const char *app)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (lp_file_read(path, STATE_MAX, &data, &len, NULL))
        return NULL;
    json_t *doc = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, NULL);
    free(data);
    char *id = NULL;
    const char *sid = lp_client_str(doc, "upload");
    if (json_is_object(doc) && valid_upload_id(sid) && !strcmp(lp_client_str(doc, "server"), server) &&
        !strcmp(lp_client_str(doc, "app"), app) && !strcmp(lp_client_str(doc, "sha256"), b->sha256) &&
        lp_client_int(doc, "size", -1) == (long long)b->size)
        id = strdup(sid);
    json_decref(doc);
    return id;
}

static lp_status state_save(const char *path, const char *id, const bundle *b, const char *server,
                            const char *app, const char *bundle_path, lp_error *err)
{
    char *dir = state_dir();
    lp_status st = dir ? lp_file_mkdirs(dir, 0700, err)
                       : lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    free(dir);
    if (st)
        return st;
    json_t *doc = json_pack("{s:s,s:s,s:s,s:s,s:I,s:s?}", "upload", id, "server", server, "app",
                            app, "sha256", b->sha256, "size", (json_int_t)b->size, "bundle",
                            bundle_path);
    if (!doc) /* a path that is not UTF-8: keep the rest */
        doc = json_pack("{s:s,s:s,s:s,s:s,s:I}", "upload", id, "server", server, "app", app,
                        "sha256", b->sha256, "size", (json_int_t)b->size);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps's NUL becomes the newline; length n+1 */
    st = lp_file_write_atomic(path, text, n + 1, 0600, err);
    free(text);
    return st;
}

/* ---- progress ------------------------------------------------------------- */

typedef struct progress {
    bool on;
    uint64_t total;
    uint64_t run_start;  /* offset when this run started sending */
    uint64_t chunk_base; /* offset of the chunk in flight */
    double t0, last;
} progress;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress_draw(progress *p, uint64_t done, bool final)
{
    double t = now_s();
    if (!final && t - p->last < 0.1)
        return;
    p->last = t;
    char a[16], b[16], r[16];
    lp_client_format_bytes(done, a);
    lp_client_format_bytes(p->total, b);
    double el = t - p->t0;
    double rate = el > 0 ? (double)(done - p->run_start) / el : 0;
    lp_client_format_bytes((uint64_t)rate, r);
    unsigned pct = p->total ? (unsigned)(done * 100 / p->total) : 100;
    char bar[31];
    size_t fill = p->total ? (size_t)(done * 30 / p->total) : 30;
    for (size_t i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[30] = 0;
    fprintf(stderr, "\r[%s] %s / %s %3u%% %s/s   ", bar, a, b, pct, r);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

static void on_progress(void *ctx, uint64_t sent)
{
    progress *p = ctx;
    progress_draw(p, p->chunk_base + sent, false);
}

/* ---- the steps -------------------------------------------------------------- */

/* GET the kept upload: its offset to *offset; *gone when the server no
 * longer has it (or it does not match the bundle). */
static lp_status upload_status(lp_client *c, const char *id, const bundle *b,
                               uint64_t *offset, bool *gone, lp_error *err)
{
    *gone = false;
    char *path = lp_client_path("/api/v1/uploads/%s", id);
    if (!path)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    json_t *ans = NULL;
    lp_status st = lp_client_request(c, "GET", path, NULL, &ans, err);
    free(path);
    if (st == LP_ERR_NOT_FOUND) {
        *gone = true;
        json_decref(ans);
        return LP_OK;
    }
    if (!st) {
        const json_t *u = json_object_get(ans, "upload");
        long long size = lp_client_int(u, "size", -1), off = lp_client_int(u, "offset", -1);
        const char *sha = lp_client_str(u, "sha256");
        if (size != (long long)b->size || (*sha && strcmp(sha, b->sha256)) || off < 0 || off > size)
            *gone = true;
        else
            *offset = (uint64_t)off;
    }
    json_decref(ans);
    return st;
}

static lp_status upload_create(lp_client *c, const char *app, const bundle *b, char **id,
                               uint64_t *offset, lp_error *err)
{
    char *path = lp_client_path("/api/v1/apps/%s/uploads", app);
    json_t *body = json_pack("{s:I,s:s}", "size", (json_int_t)b->size, "sha256", b->sha256);
    json_t *ans = NULL;
    lp_status st = path && body ? lp_client_request(c, "POST", path, body, &ans, err)
                                : lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    free(path);
    json_decref(body);
    if (!st) {
        const json_t *u = json_object_get(ans, "upload");
        const char *sid = lp_client_str(u, "id");
        long long off = lp_client_int(u, "offset", 0);
        if (!valid_upload_id(sid) || off < 0 || (uint64_t)off > b->size)
            st = lp_error_set(err, LP_ERR_MALFORMED,
                              "POST /api/v1/apps/%s/uploads: the answer has no valid upload id "
                              "and offset",
                              app);
        else if (!(*id = strdup(sid)))
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        else
            *offset = (uint64_t)off;
    }
    json_decref(ans);
    return st;
}

/* Sends bytes [offset, size) in chunks. */
static lp_status upload_send(lp_client *c, const char *id, const bundle *b, uint64_t offset,
                             uint64_t chunk, uint64_t rate, progress *pg, lp_error *err)
{
    char *path = lp_client_path("/api/v1/uploads/%s", id);
    if (!path)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    pg->run_start = offset;
    pg->t0 = pg->last = now_s();
    lp_status st = LP_OK;
    int stalls = 0;
    while (!st && offset < b->size) {
        uint64_t len = b->size - offset < chunk ? b->size - offset : chunk;
        json_t *ans = NULL;
        pg->chunk_base = offset;
        if (pg->on)
            progress_draw(pg, offset, false);
        st = lp_client_put_file_range(c, path, b->fd, offset, len, b->size, rate,
                                   pg->on ? on_progress : NULL, pg, &ans, err);
        const json_t *u = NULL;
        if (!st) {
            u = json_object_get(ans, "upload");
        } else if (st == LP_ERR_EXISTS && lp_client_last_http_status(c) == 409 &&
                   !strcmp(lp_client_last_error_code(c), "offset_mismatch")) {
            u = json_object_get(ans, "upload");
            if (pg->on)
                fputc('\n', stderr);
            fprintf(stderr, "livepush upload: the server holds %lld bytes; continuing from there\n",
                    lp_client_int(u, "offset", -1));
            st = LP_OK;
            lp_error_clear(err);
        }
        if (!st) {
            long long off = lp_client_int(u, "offset", -1);
            if (off < 0 || (uint64_t)off > b->size) {
                st = lp_error_set(err, LP_ERR_MALFORMED,
                                  "PUT %s: the answer has no valid upload offset", path);
            } else {
                stalls = (uint64_t)off > offset ? 0 : stalls + 1;
                offset = (uint64_t)off;
                if (stalls > MAX_RESYNC)
                    st = lp_error_set(err, LP_ERR_STATE,
                                      "PUT %s: no progress after %d attempts at byte %llu (is "
                                      "another client sending the same upload?)",
                                      path, MAX_RESYNC, (unsigned long long)offset);
            }
        }
        json_decref(ans);
    }
    if (pg->on && !st)
        progress_draw(pg, offset, true);
    else if (pg->on)
        fputc('\n', stderr);
    free(path);
    return st;
}

static lp_status add_str(json_t *o, const char *key, const char *v, lp_error *err)
{
    if (!v)
        return LP_OK;
    json_t *s = json_string(v);
    if (!s)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: not valid UTF-8", key);
    if (json_object_set_new(o, key, s))
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    return LP_OK;
}

/* Deletes a refused bundle's upload on the server, so its bytes do not wait
 * there for the stale-upload sweep.  Best effort: the refusal is what the
 * user needs to hear about. */
static void discard_upload(lp_client *c, const char *id)
{
    char *path = lp_client_path("/api/v1/uploads/%s", id);
    json_t *ans = NULL;
    lp_error e;
    lp_error_clear(&e);
    if (path)
        (void)lp_client_request(c, "DELETE", path, NULL, &ans, &e);
    json_decref(ans);
    free(path);
}

/* Appends the ids of the devices file to arr (one a line; empty lines and
 * lines starting with '#' skipped, spaces around an id dropped). */
static lp_status read_devices_file(const char *path, json_t *arr, lp_error *err)
{
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_file_read(path, LP_TARGETING_MAX_JSON, &data, &len, err);
    if (st)
        return lp_error_prefix(err, st, "--devices-file %s", path);
    if (memchr(data, 0, len)) {
        free(data);
        return lp_error_set(err, LP_ERR_INVALID_ARG, "--devices-file %s: holds a NUL byte", path);
    }
    char *text = (char *)data;
    size_t line = 0;
    for (char *p = text, *next; !st && p && *p; p = next) {
        line++;
        char *nl = strchr(p, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strlen(p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'))
            p[--n] = '\0';
        if (!n || *p == '#')
            continue;
        json_t *v = json_string(p);
        if (!v)
            st = lp_error_set(err, LP_ERR_INVALID_ARG, "--devices-file %s: line %zu: not valid "
                                                       "UTF-8", path, line);
        else if (json_array_append_new(arr, v))
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    free(data);
    return st;
}

/* o->targeting from the targeting options (NULL when none is given),
 * checked by the library's reader (lp_targeting_canonical). */
static lp_status build_targeting(targeting_opts *o, lp_error *err)
{
    o->targeting = NULL;
    if (!o->min_from && !o->max_from && !o->attrs && !o->devices && !o->devices_file)
        return LP_OK;
    json_t *t = json_object();
    if (!t)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_status st = LP_OK;
    const char *codes[][2] = {{"min_from_code", o->min_from}, {"max_from_code", o->max_from}};
    for (size_t i = 0; !st && i < 2; i++) {
        long long v = 0;
        char what[32];
        snprintf(what, sizeof what, "--%.3s-from-code", codes[i][0]);
        if (!codes[i][1])
            continue;
        st = lp_client_parse_int(codes[i][1], what, 0, INT64_MAX, &v, err);
        if (!st && json_object_set_new(t, codes[i][0], json_integer(v)))
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    if (!st && o->attrs) {
        json_t *attrs = json_object();
        const char *k;
        json_t *vals;
        if (!attrs)
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        json_object_foreach(o->attrs, k, vals)
        {
            json_t *v = json_array_size(vals) == 1 ? json_array_get(vals, 0) : vals;
            if (!st && json_object_set(attrs, k, v))
                st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        }
        if (st)
            json_decref(attrs);
        else if (json_object_set_new(t, "attributes", attrs))
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    if (!st && (o->devices || o->devices_file)) {
        json_t *ids = o->devices ? json_copy(o->devices) : json_array();
        if (!ids)
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        if (!st && o->devices_file)
            st = read_devices_file(o->devices_file, ids, err);
        if (!st && json_object_set_new(t, "devices", ids))
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        else if (st)
            json_decref(ids);
    }
    char *text = NULL, *canon = NULL;
    size_t len = 0;
    if (!st)
        st = lp_json_dump_compact(t, &text, &len, err);
    if (!st)
        st = lp_targeting_canonical(text, len, &canon, err);
    free(text);
    free(canon);
    if (st) {
        json_decref(t);
        return st;
    }
    o->targeting = t;
    return LP_OK;
}

/* The body of POST .../releases. */
static lp_status release_body(const uopts *o, const char *id, const bundle *b, const char *notes,
                              json_t **out, lp_error *err)
{
    json_t *body = json_object();
    if (!body)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_status st = add_str(body, "upload", id, err);
    if (!st)
        st = add_str(body, "version", o->version, err);
    if (!st && o->version_code) {
        long long code = 0;
        st = lp_client_parse_int(o->version_code, "--version-code", 1, INT64_MAX, &code, err);
        if (!st && json_object_set_new(body, "version_code", json_integer(code)))
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    if (!st && o->nchannels) {
        json_t *arr = json_array();
        if (!arr || json_object_set_new(body, "channels", arr))
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        for (size_t i = 0; !st && i < o->nchannels; i++)
            if (json_array_append_new(arr, json_string(o->channels[i])))
                st = lp_error_set(err, LP_ERR_INVALID_ARG, "--channel %s: not valid UTF-8",
                                  o->channels[i]);
    }
    if (!st)
        st = add_str(body, "runtime_version", o->runtime_version, err);
    if (!st)
        st = add_str(body, "platform", o->platform, err);
    if (!st)
        st = add_str(body, "arch", o->arch, err);
    if (!st && o->mandatory && json_object_set_new(body, "mandatory", json_true()))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    int bp = 0;
    if (!st && o->rollout && !(st = lp_client_parse_percent(o->rollout, "--rollout", &bp, err)) &&
        json_object_set_new(body, "rollout_percent_bp", json_integer(bp)))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (!st)
        st = add_str(body, "notes", notes, err);
    if (!st && o->tg->targeting && json_object_set(body, "targeting", o->tg->targeting))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (!st)
        st = add_str(body, "kind", b->packed ? "archive" : o->kind, err);
    /* a single file needs a name: the server only sees bytes */
    if (!st && !b->packed && !(o->kind && !strcmp(o->kind, "archive"))) {
        const char *name = o->file_name;
        if (!name) {
            const char *slash = strrchr(o->bundle, '/');
            name = slash ? slash + 1 : o->bundle;
        }
        st = add_str(body, "file_name", name, err);
    }
    if (st) {
        json_decref(body);
        return st;
    }
    *out = body;
    return LP_OK;
}

/* The release fields a publisher-signed release's target must carry
 * (service_sync.c writes them): what was asked, with the server's
 * defaults; version_code is filled in by the check. */
static json_t *expected_custom(const uopts *o, const char *notes)
{
    json_t *ch = json_array();
    for (size_t i = 0; ch && i < o->nchannels; i++)
        json_array_append_new(ch, json_string(o->channels[i]));
    if (ch && !o->nchannels)
        json_array_append_new(ch, json_string("stable"));
    json_t *c = ch ? json_pack("{s:s,s:o,s:b}", "version", o->version, "channels", ch,
                               "mandatory", o->mandatory)
                   : NULL;
    const char *opt[][2] = {{"runtime_version", o->runtime_version},
                            {"platform", o->platform},
                            {"arch", o->arch},
                            {"notes", notes}};
    for (size_t i = 0; c && i < sizeof opt / sizeof opt[0]; i++)
        if (opt[i][1] && json_object_set_new(c, opt[i][0], json_string(opt[i][1]))) {
            json_decref(c);
            c = NULL;
        }
    if (c && o->tg->targeting &&
        json_object_set_new(c, "targeting", json_deep_copy(o->tg->targeting))) {
        json_decref(c);
        c = NULL;
    }
    return c;
}

static int upload(int argc, char **argv, targeting_opts *tg)
{
    uopts o = {.tg = tg};
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    lp_error err;
    lp_error_clear(&err);
    if (build_targeting(tg, &err)) {
        fprintf(stderr, "livepush upload: %s\n", err.msg);
        return err.code == LP_ERR_INVALID_ARG || err.code == LP_ERR_TOO_LARGE ||
                       err.code == LP_ERR_NOT_FOUND
                   ? LP_EXIT_USAGE
                   : LP_EXIT_FAIL;
    }
    uint64_t chunk = DEFAULT_CHUNK, rate = 0;
    const char *env_chunk = getenv("LIVEPUSH_UPLOAD_CHUNK");
    if ((env_chunk && *env_chunk &&
         lp_client_parse_size(env_chunk, "LIVEPUSH_UPLOAD_CHUNK", &chunk, &err)) ||
        (o.limit_rate && lp_client_parse_size(o.limit_rate, "--limit-rate", &rate, &err))) {
        fprintf(stderr, "livepush upload: %s\n", err.msg);
        return LP_EXIT_USAGE;
    }
    if (chunk == 0 || chunk > MAX_CHUNK) {
        fprintf(stderr, "livepush upload: LIVEPUSH_UPLOAD_CHUNK: from 1 byte to 64M\n");
        return LP_EXIT_USAGE;
    }
    if (o.version_code) {
        long long code;
        if (lp_client_parse_int(o.version_code, "--version-code", 1, INT64_MAX, &code, &err)) {
            fprintf(stderr, "livepush upload: %s\n", err.msg);
            return LP_EXIT_USAGE;
        }
    }
    struct stat sb;
    if (stat(o.bundle, &sb) == 0 && S_ISDIR(sb.st_mode) &&
        ((o.kind && strcmp(o.kind, "auto")) || o.file_name))
        return usage_error("%s is a folder: --kind and --file-name are for file bundles", o.bundle);

    char *notes = NULL;
    if (o.notes_file) {
        uint8_t *data = NULL;
        size_t len = 0;
        lp_status st = lp_file_read(o.notes_file, NOTES_MAX, &data, &len, &err);
        if (st) {
            fprintf(stderr, "livepush upload: --notes-file %s: %s\n", o.notes_file, err.msg);
            return st == LP_ERR_TOO_LARGE || st == LP_ERR_NOT_FOUND ? LP_EXIT_USAGE : LP_EXIT_FAIL;
        }
        if (memchr(data, 0, len)) {
            free(data);
            fprintf(stderr, "livepush upload: --notes-file %s: holds a NUL byte\n", o.notes_file);
            return LP_EXIT_USAGE;
        }
        notes = (char *)data;
    }

    /* signing: the keys and the bundle's own tree manifest, before any
     * request */
    lp_signer_keys ks = {0};
    lp_signer_published pub = {0};
    char msha[65];
    uint64_t mlen = 0;
    if (o.nkeys && lp_signer_keys_load(&ks, o.keys, o.nkeys, true, &err)) {
        free(notes);
        fprintf(stderr, "livepush upload: %s\n", err.msg);
        return LP_EXIT_USAGE;
    }
    if (o.nkeys) {
        lp_ingest_opts io;
        lp_signer_ingest_opts(o.bundle, o.kind, o.file_name, &io);
        if (lp_signer_local_manifest(o.bundle, &io, msha, &mlen, &err)) {
            free(notes);
            lp_signer_keys_free(&ks);
            return lp_cli_fail(&err, "upload");
        }
    }

    lp_client *c = NULL;
    if ((rc = lp_client_open(&o.api, "upload", &c)) >= 0) {
        free(notes);
        lp_signer_keys_free(&ks);
        return rc;
    }
    const char *app = lp_client_app(&o.api);
    const char *server = lp_client_server(c);
    bundle b = {.fd = -1};
    json_t *body = NULL, *ans = NULL, *custom = NULL;
    char *id = NULL, *spath = NULL;
    uint64_t offset = 0;
    progress pg = {.on = isatty(STDERR_FILENO) == 1};
    lp_status st = LP_OK;
    if (o.nkeys && (rc = lp_signer_setup(c, "upload", app, o.root, &ks, &pub)) >= 0)
        goto out;
    st = bundle_open(o.bundle, &b, &err);
    if (st)
        goto done;
    pg.total = b.size;
    /* checked before anything goes to the server */
    if ((st = release_body(&o, "-", &b, notes ? notes : o.notes, &body, &err)))
        goto done;
    json_decref(body);
    body = NULL;

    spath = state_path(&b, server, app);
    if (!spath)
        fprintf(stderr, "livepush upload: no cache folder (set HOME or XDG_CACHE_HOME): an "
                        "interrupted upload will not resume\n");
    if (spath && (id = state_load(spath, &b, server, app))) {
        bool gone = false;
        if ((st = upload_status(c, id, &b, &offset, &gone, &err)))
            goto done;
        if (gone) {
            fprintf(stderr, "livepush upload: the server no longer has upload %s; starting again\n",
                    id);
            free(id);
            id = NULL;
            offset = 0;
        } else {
            fprintf(stderr, "livepush upload: resuming upload %s at byte %llu of %llu\n", id,
                    (unsigned long long)offset, (unsigned long long)b.size);
        }
    }
    if (!id) {
        if ((st = upload_create(c, app, &b, &id, &offset, &err)))
            goto done;
        lp_error serr;
        lp_error_clear(&serr);
        if (spath && state_save(spath, id, &b, server, app, o.bundle, &serr))
            fprintf(stderr, "livepush upload: %s: an interrupted upload will not resume\n",
                    serr.msg);
    }
    if ((st = upload_send(c, id, &b, offset, chunk, rate, &pg, &err)))
        goto done;

    char *rpath = lp_client_path("/api/v1/apps/%s/releases", app);
    st = rpath ? release_body(&o, id, &b, notes ? notes : o.notes, &body, &err)
               : lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    if (!st)
        st = lp_client_request(c, "POST", rpath, body, &ans, &err);
    free(rpath);
    /* the upload is consumed by a release, and a refused bundle would be
     * refused again: either way the state has served its purpose */
    if (spath && (!st || lp_client_last_http_status(c) == 422))
        unlink(spath);
    if (st && lp_client_last_http_status(c) == 422) {
        rc = lp_client_fail(c, st, &err, "upload"); /* before another request */
        discard_upload(c, id);
        goto out;
    }
    if (st)
        goto done;
    if (lp_client_last_http_status(c) == 202) {
        /* an app whose publisher signs: the release is prepared */
        custom = expected_custom(&o, notes ? notes : o.notes);
        long long code = 0;
        if (o.version_code)
            lp_client_parse_int(o.version_code, "--version-code", 1, INT64_MAX, &code, NULL);
        lp_signer_expect ex = {.manifest_sha256 = o.nkeys ? msha : NULL,
                               .manifest_len = mlen,
                               .custom = custom,
                               .version_code = code};
        if (!custom) {
            st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
            goto done;
        }
        rc = lp_signer_finish(c, "upload", app, ans, o.nkeys ? &pub : NULL, &ex, &ks,
                              o.api.json);
        goto out;
    }
    if (o.api.json) {
        lp_client_print_json(ans);
    } else {
        const json_t *rel = json_object_get(ans, "release");
        char ch[256], size[16];
        lp_print_join(json_object_get(rel, "channels"), ch, sizeof ch);
        lp_client_format_bytes((uint64_t)lp_client_int(rel, "bytes", 0), size);
        long long files = lp_client_int(rel, "files", 0);
        printf("published %s (version code %lld) of app %s on %s: %lld file%s, %s\n",
               lp_client_str(rel, "version"), lp_client_int(rel, "version_code", 0),
               lp_client_str(rel, "app"), ch, files, files == 1 ? "" : "s", size);
    }

done:
    rc = st ? lp_client_fail(c, st, &err, "upload") : LP_EXIT_OK;
out:
    json_decref(custom);
    lp_signer_published_free(&pub);
    lp_signer_keys_free(&ks);
    if (b.fd >= 0)
        close(b.fd);
    json_decref(body);
    json_decref(ans);
    free(id);
    free(spath);
    free(notes);
    lp_client_free(c);
    return rc;
}

int lp_cmd_upload(int argc, char **argv)
{
    targeting_opts tg = {0};
    int rc = upload(argc, argv, &tg);
    json_decref(tg.attrs);
    json_decref(tg.devices);
    json_decref(tg.targeting);
    return rc;
}
