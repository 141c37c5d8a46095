/*
 * device_config.c — options of `livepush agent` and `livepush device` from
 * defaults, a JSON file, the environment and flags (see device_config.h).
 *
 * One table drives everything, as in src/server/config.c: each row names
 * the flag, environment variable, file key, default and help of an option,
 * how its text is checked and where it is stored.  Flags, environment values
 * and file values all end up as text passed to set(), so every source is
 * checked by the same code; file values keep their JSON types (a number
 * option wants a JSON integer, a switch true or false, the rest strings).
 * The device's attributes are the one option with several values: a flag
 * gives one KEY=VALUE, the file and LIVEPUSH_ATTRIBUTES an object of them,
 * and each layer replaces only the names it gives (set_attribute).
 */
#include "cli/device_config.h"

#include "cli/cli.h"
#include "core/file.h"
#include "tuf/json.h"

#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_FILE_MAX (64u * 1024)

enum kind { K_CONFIG, K_URL, K_APP, K_CHANNEL, K_PATH, K_TEXT, K_UINT, K_U64, K_POLICY, K_BOOL,
            K_FORMAT, K_LEVEL, K_ATTRIBUTE };

/* Where a value comes from (the layers, in the order they apply). */
enum layer { L_DEFAULT, L_FILE, L_ENV, L_FLAG };

typedef struct row {
    const char *flag, *env, *arg, *deflt, *help;
    enum kind kind;
    size_t offset, size;
    uint64_t min, max;
} row;

#define F(f) offsetof(lp_devcfg, f), sizeof(((lp_devcfg *)0)->f)

static const row rows[] = {
    {"config", "LIVEPUSH_AGENT_CONFIG", "FILE", "", "JSON config file (keys: the option names "
     "with '_' for '-')", K_CONFIG, 0, 0, 0, 0},
    {"server", "LIVEPUSH_SERVER", "URL", "", "the server or static mirror (https, or http to "
     "loopback unless --allow-http)", K_URL, F(server), 0, 0},
    {"app", "LIVEPUSH_APP", "NAME", "default", "the app", K_APP, F(app), 0, 0},
    {"root", "LIVEPUSH_ROOT", "DIR", "", "install root (default " LP_DEVCFG_DEFAULT_ROOT_BASE
     "/<app>)", K_PATH, F(root), 0, 0},
    {"trusted-root", "LIVEPUSH_TRUSTED_ROOT", "FILE", "", "the app's root.json, trusted at "
     "first use (kept in <root>/.livepush/metadata)", K_PATH, F(trusted_root), 0, 0},
    {"channel", "LIVEPUSH_CHANNEL", "NAME", "stable", "channel (`device channel` overrides it "
     "on this device)", K_CHANNEL, F(channel), 0, 0},
    {"platform", "LIVEPUSH_PLATFORM", "P", "", "platform (default: the kernel's, e.g. linux)",
     K_TEXT, F(platform), 0, 0},
    {"arch", "LIVEPUSH_ARCH", "A", "", "architecture (default: the machine's, e.g. x86_64)",
     K_TEXT, F(arch), 0, 0},
    {"runtime-version", "LIVEPUSH_RUNTIME_VERSION", "R", "", "runtime version of this device "
     "(default none)", K_TEXT, F(runtime_version), 0, 0},
    {"attribute", "LIVEPUSH_ATTRIBUTES", "KEY=VALUE", "", "an attribute of this device for "
     "release targeting (repeatable; config file and env: a JSON object of name -> value)",
     K_ATTRIBUTE, 0, 0, 0, 0},
    {"interval", "LIVEPUSH_INTERVAL", "SECONDS", "300", "agent: time between checks", K_UINT,
     F(interval_s), 1, 7 * 86400},
    {"jitter", "LIVEPUSH_JITTER", "SECONDS", "30", "agent: a random 0..SECONDS is added to "
     "each wait", K_UINT, F(jitter_s), 0, 86400},
    {"auto-apply", "LIVEPUSH_AUTO_APPLY", "all|mandatory|none", "all", "agent: which offered "
     "releases it installs", K_POLICY, F(auto_apply), 0, 0},
    {"keep", "LIVEPUSH_KEEP", "N", "2", "releases kept installed", K_UINT, F(keep), 1, 100},
    {"probation-window", "LIVEPUSH_PROBATION_WINDOW", "SECONDS", "600", "time a new release has "
     "to be marked healthy", K_UINT, F(probation_window_s), 1, 365 * 86400},
    {"probation-launches", "LIVEPUSH_PROBATION_LAUNCHES", "N", "3", "launches allowed before it "
     "is marked healthy", K_UINT, F(probation_launches), 1, 1000000},
    {"hooks-dir", "LIVEPUSH_HOOKS_DIR", "DIR", "", "executable hooks (default <root>/hooks)",
     K_PATH, F(hooks_dir), 0, 0},
    {"hook-timeout", "LIVEPUSH_HOOK_TIMEOUT", "SECONDS", "60", "a hook running longer is "
     "stopped", K_UINT, F(hook_timeout_s), 1, 86400},
    {"reserve-bytes", "LIVEPUSH_RESERVE_BYTES", "BYTES", "1048576", "free space staging must "
     "leave", K_U64, F(reserve_bytes), 0, (uint64_t)1 << 50},
    {"verify-all", "LIVEPUSH_VERIFY_ALL", "true|false", "false", "read every file of a release "
     "before activating it, not only those written since their content was checked", K_BOOL,
     F(verify_all), 0, 0},
    {"device-token-file", "LIVEPUSH_DEVICE_TOKEN_FILE", "FILE", "", "a download-scope token "
     "sent with events (servers with --device-auth token)", K_PATH, F(device_token_file), 0, 0},
    {"allow-http", "LIVEPUSH_ALLOW_HTTP", "true|false", "false", "allow plain http to hosts "
     "other than loopback", K_BOOL, F(allow_http), 0, 0},
    {"report", "LIVEPUSH_REPORT", "true|false", "true", "send the device's events to the server "
     "(false: they stay queued, bounded; a static mirror is recognised anyway)", K_BOOL, F(report), 0, 0},
    {"deltas", "LIVEPUSH_DELTAS", "true|false", "true", "download changed files as deltas "
     "against the installed release when the server lists them (falling back to the full "
     "file)", K_BOOL, F(deltas), 0, 0},
    {"attempts", "LIVEPUSH_ATTEMPTS", "N", "5", "tries of one download", K_UINT, F(attempts), 1,
     100},
    {"connect-timeout", "LIVEPUSH_CONNECT_TIMEOUT", "SECONDS", "10", "limit of one connection "
     "attempt", K_UINT, F(connect_timeout_s), 1, 600},
    {"stall-timeout", "LIVEPUSH_STALL_TIMEOUT", "SECONDS", "30", "a transfer that moves no byte "
     "this long is cut (and retried)", K_UINT, F(stall_timeout_s), 1, 3600},
    {"lifecycle-log", "LIVEPUSH_LIFECYCLE_LOG", "FILE", "", "append each update event "
     "(fetched, verified, staged, activated, rolled back, failed, ...) to FILE as a JSON "
     "line with the release, rollout and device ids (docs/lifecycle.md)", K_PATH,
     F(lifecycle_log), 0, 0},
    {"max-events", "LIVEPUSH_MAX_EVENTS", "N", "1000", "events kept queued at most", K_UINT,
     F(max_events), 1, 100000},
    {"log-format", "LIVEPUSH_LOG_FORMAT", "json|text", "json", "agent: log line format on "
     "stderr", K_FORMAT, F(log_format), 0, 0},
    {"log-level", "LIVEPUSH_LOG_LEVEL", "LEVEL", "info", "agent: least severe level logged "
     "(debug, info, warn, error)", K_LEVEL, F(log_level), 0, 0},
};

#define NROWS (sizeof rows / sizeof rows[0])

static const row *find(const char *name, bool by_key)
{
    for (size_t i = 0; i < NROWS; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s", rows[i].flag);
        for (char *p = key; by_key && *p; p++)
            if (*p == '-')
                *p = '_';
        if (!strcmp(key, name) && (!by_key || rows[i].kind != K_CONFIG))
            return &rows[i];
    }
    return NULL;
}

static bool number(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!*s || strlen(s) > 20)
        return false;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return v >= min && v <= max;
}

/* 1..max printable ASCII bytes without spaces (or empty when allowed). */
static bool text_ok(const char *s, size_t max, bool empty_ok)
{
    size_t n = strlen(s);
    if ((!n && !empty_ok) || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return false;
    return true;
}

static bool name_ok(const char *s, size_t max, bool upper)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     (upper && c >= 'A' && c <= 'Z');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

/* Sets attribute key = value from `layer`: a value from a later layer
 * replaces an earlier one, the same name twice in one layer is refused. */
static lp_status set_attribute(lp_devcfg *cfg, const char *key, const char *value, int layer,
                               const char *source, lp_error *err)
{
    lp_device_attribute a = {key, value};
    lp_status st = lp_device_attributes_check(&a, 1, err);
    if (st)
        return lp_error_prefix(err, st, "%s", source);
    size_t i = 0;
    while (i < cfg->attribute_count && strcmp(cfg->attr_key[i], key))
        i++;
    if (i < cfg->attribute_count && cfg->attr_layer[i] == layer)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: attribute %s given twice", source, key);
    if (i == LP_TARGETING_MAX_ATTRIBUTES)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: more than %u attributes", source,
                            LP_TARGETING_MAX_ATTRIBUTES);
    snprintf(cfg->attr_key[i], sizeof cfg->attr_key[i], "%s", key);
    snprintf(cfg->attr_value[i], sizeof cfg->attr_value[i], "%s", value);
    cfg->attr_layer[i] = layer;
    if (i == cfg->attribute_count)
        cfg->attribute_count++;
    return LP_OK;
}

/* The attributes of a JSON object of name -> string. */
static lp_status set_attribute_object(lp_devcfg *cfg, const json_t *o, int layer,
                                      const char *source, lp_error *err)
{
    if (!json_is_object(o))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "%s: expected a JSON object of attribute name -> value", source);
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)o, key, klen, v)
    {
        if (klen != strlen(key) || !json_is_string(v) ||
            json_string_length(v) != strlen(json_string_value(v)))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "%s: attribute '%.64s': expected a string without NUL", source,
                                key);
        lp_status st = set_attribute(cfg, key, json_string_value(v), layer, source, err);
        if (st)
            return st;
    }
    return LP_OK;
}

static lp_status set(lp_devcfg *cfg, const row *r, const char *v, int layer, const char *source,
                     lp_error *err)
{
    char *field = (char *)cfg + r->offset;
    uint64_t n;
    switch (r->kind) {
    case K_CONFIG:
        return LP_OK;
    case K_ATTRIBUTE: {
        if (layer == L_DEFAULT)
            return LP_OK;
        if (layer == L_FLAG) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v)
                return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: '%.80s' is not KEY=VALUE",
                                    source, v);
            char key[LP_TARGETING_MAX_KEY + 2];
            snprintf(key, sizeof key, "%.*s", (int)(eq - v), v);
            return set_attribute(cfg, key, eq + 1, layer, source, err);
        }
        json_t *doc = NULL;
        lp_status st = lp_json_parse(v, strlen(v), NULL, &doc, err);
        if (st)
            return lp_error_prefix(err, LP_ERR_INVALID_ARG, "%s", source);
        st = set_attribute_object(cfg, doc, layer, source, err);
        json_decref(doc);
        return st;
    }
    case K_URL:
    case K_PATH:
    case K_TEXT: {
        size_t max = r->kind == K_TEXT ? (size_t)LP_DEVCFG_TEXT_MAX : r->size - 1;
        bool ok = r->kind == K_PATH ? strlen(v) <= max : text_ok(v, max, true);
        for (const char *p = v; ok && r->kind == K_PATH && *p; p++)
            ok = (unsigned char)*p >= 0x20 && *p != 0x7f;
        if (!ok)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "%s: '%.80s' is not %s of at most %zu bytes", source, v,
                                r->kind == K_PATH ? "a path without control characters"
                                                  : "printable text without spaces",
                                max);
        snprintf(field, r->size, "%s", v);
        return LP_OK;
    }
    case K_APP:
    case K_CHANNEL:
        if (!name_ok(v, r->size - 1, r->kind == K_CHANNEL))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "%s: '%.80s' is not a name (1 to %zu of %s0-9 . _ -, starting "
                                "with a letter or digit)",
                                source, v, r->size - 1, r->kind == K_CHANNEL ? "A-Z a-z " : "a-z ");
        snprintf(field, r->size, "%s", v);
        return LP_OK;
    case K_UINT:
    case K_U64:
        if (!number(v, r->min, r->max, &n))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "%s: '%.40s' is not a whole number from %llu to %llu", source, v,
                                (unsigned long long)r->min, (unsigned long long)r->max);
        if (r->kind == K_UINT)
            *(unsigned *)(void *)field = (unsigned)n;
        else
            memcpy(field, &n, sizeof n);
        return LP_OK;
    case K_POLICY:
        if (!strcmp(v, "all"))
            cfg->auto_apply = LP_APPLY_ALL;
        else if (!strcmp(v, "mandatory"))
            cfg->auto_apply = LP_APPLY_MANDATORY;
        else if (!strcmp(v, "none"))
            cfg->auto_apply = LP_APPLY_NONE;
        else
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "%s: '%.40s' is not all, mandatory or none", source, v);
        return LP_OK;
    case K_BOOL:
        if (strcmp(v, "true") && strcmp(v, "false"))
            return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: '%.40s' is not true or false",
                                source, v);
        *(bool *)(void *)field = !strcmp(v, "true");
        return LP_OK;
    case K_FORMAT: {
        lp_status st = lp_log_format_from_name(v, &cfg->log_format, err);
        return st ? lp_error_prefix(err, st, "%s", source) : LP_OK;
    }
    case K_LEVEL: {
        lp_status st = lp_log_level_from_name(v, &cfg->log_level, err);
        return st ? lp_error_prefix(err, st, "%s", source) : LP_OK;
    }
    }
    return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: unsupported option", source);
}

static lp_status apply_file(lp_devcfg *cfg, const char *path, lp_error *err)
{
    uint8_t *data = NULL;
    size_t len = 0;
    json_t *doc = NULL;
    lp_status st = lp_file_read(path, CONFIG_FILE_MAX, &data, &len, err);
    if (!st)
        st = lp_json_parse(data, len, NULL, &doc, err);
    free(data);
    if (st)
        return lp_error_prefix(err, st, "config file %s", path);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return lp_error_set(err, LP_ERR_MALFORMED, "config file %s: expected a JSON object", path);
    }
    const char *key;
    json_t *v;
    json_object_foreach(doc, key, v)
    {
        const row *r = find(key, true);
        if (!r) {
            st = lp_error_set(err, LP_ERR_MALFORMED, "config file %s: unknown key '%.64s'", path,
                              key);
            break;
        }
        char source[LP_DEVCFG_PATH_MAX + 96], text[32];
        snprintf(source, sizeof source, "config file %s: key '%s'", path, key);
        if (r->kind == K_ATTRIBUTE) {
            if ((st = set_attribute_object(cfg, v, L_FILE, source, err))) {
                st = err ? (err->code = LP_ERR_MALFORMED) : LP_ERR_MALFORMED;
                break;
            }
            continue;
        }
        bool numeric = r->kind == K_UINT || r->kind == K_U64;
        const char *value = NULL;
        if (numeric && json_is_integer(v) && json_integer_value(v) >= 0) {
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
            value = text;
        } else if (r->kind == K_BOOL && json_is_boolean(v)) {
            value = json_is_true(v) ? "true" : "false";
        } else if (!numeric && r->kind != K_BOOL && json_is_string(v)) {
            value = json_string_value(v);
        }
        if (!value) {
            st = lp_error_set(err, LP_ERR_MALFORMED, "%s: expected %s", source,
                              numeric ? "a non-negative integer"
                              : r->kind == K_BOOL ? "true or false" : "a string");
            break;
        }
        if ((st = set(cfg, r, value, L_FILE, source, err))) {
            st = err ? (err->code = LP_ERR_MALFORMED) : LP_ERR_MALFORMED;
            break;
        }
    }
    json_decref(doc);
    return st;
}

/* One setting from the command line. */
typedef struct flag {
    const row *r;
    const char *value;
} flag;

static lp_status load(lp_devcfg *cfg, const flag *flags, size_t nflags, lp_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    lp_status st = LP_OK;
    for (size_t i = 0; !st && i < NROWS; i++)
        st = set(cfg, &rows[i], rows[i].deflt, L_DEFAULT, "default", err);
    const char *file = getenv("LIVEPUSH_AGENT_CONFIG");
    for (size_t i = 0; i < nflags; i++)
        if (flags[i].r->kind == K_CONFIG)
            file = flags[i].value;
    if (!st && file && *file)
        st = apply_file(cfg, file, err);
    for (size_t i = 0; !st && i < NROWS; i++) {
        const char *v = rows[i].kind == K_CONFIG ? NULL : getenv(rows[i].env);
        if (v)
            st = set(cfg, &rows[i], v, L_ENV, rows[i].env, err);
    }
    for (size_t i = 0; !st && i < nflags; i++) {
        char source[80];
        snprintf(source, sizeof source, "--%s", flags[i].r->flag);
        st = set(cfg, flags[i].r, flags[i].value, L_FLAG, source, err);
    }
    return st;
}

void lp_devcfg_help(FILE *f)
{
    for (size_t i = 0; i < NROWS; i++) {
        char opt[64];
        snprintf(opt, sizeof opt, "--%s %s", rows[i].flag, rows[i].arg);
        fprintf(f, "  %-30s %s\n  %-30s env %s%s%s\n", opt, rows[i].help, "", rows[i].env,
                *rows[i].deflt ? ", default " : "", rows[i].deflt);
    }
}

int lp_devcfg_parse(int argc, char **argv, const char *cmd, const char *shortopts,
                    const struct option *own, int (*on_own)(void *ctx, int code, const char *arg),
                    void *ctx, void (*usage)(FILE *f, void *ctx), lp_devcfg *cfg, int *first_arg)
{
    size_t nown = 0;
    while (own && own[nown].name)
        nown++;
    struct option *lo = calloc(NROWS + nown + 2, sizeof *lo);
    flag *flags = calloc((size_t)argc + 1, sizeof *flags);
    if (!lo || !flags) {
        free(lo);
        free(flags);
        fprintf(stderr, "livepush %s: out of memory\n", cmd);
        return LP_EXIT_FAIL;
    }
    for (size_t i = 0; i < NROWS; i++)
        lo[i] = (struct option){rows[i].flag, required_argument, NULL,
                                LP_DEVCFG_OPT_BASE + (int)i};
    for (size_t i = 0; i < nown; i++)
        lo[NROWS + i] = own[i];
    lo[NROWS + nown] = (struct option){"help", no_argument, NULL, 'h'};
    size_t nflags = 0;
    int ch, rc = -1;
    optind = 1;
    opterr = 1;
    while (rc < 0 && (ch = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout, ctx);
            rc = LP_EXIT_OK;
        } else if (ch >= LP_DEVCFG_OPT_BASE && ch < LP_DEVCFG_OPT_BASE + (int)NROWS) {
            flags[nflags++] = (flag){&rows[ch - LP_DEVCFG_OPT_BASE], optarg};
        } else if (ch == '?' || ch == ':' || !on_own) {
            fputc('\n', stderr);
            usage(stderr, ctx);
            rc = LP_EXIT_USAGE;
        } else {
            rc = on_own(ctx, ch, optarg);
        }
    }
    *first_arg = optind;
    if (rc < 0) {
        lp_error err;
        lp_error_clear(&err);
        if (load(cfg, flags, nflags, &err)) {
            fprintf(stderr, "livepush %s: %s\n", cmd, err.msg);
            rc = LP_EXIT_USAGE;
        }
    }
    free(lo);
    free(flags);
    return rc;
}

static lp_status read_token(lp_devcfg *cfg, lp_error *err)
{
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_file_read(cfg->device_token_file, 4096, &data, &len, err);
    if (st)
        return lp_error_prefix(err, st, "device token file");
    char *s = (char *)data;
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
        s[--len] = '\0';
    if (!text_ok(s, LP_DEVCFG_TOKEN_MAX, false) || strlen(s) != len)
        st = lp_error_set(err, LP_ERR_INVALID_ARG,
                          "device token file %s: expected one line of 1..%d printable characters",
                          cfg->device_token_file, LP_DEVCFG_TOKEN_MAX);
    else
        snprintf(cfg->token, sizeof cfg->token, "%s", s);
    free(data);
    return st;
}

static void lifecycle_line(void *ctx, const lp_event *e, const char *channel,
                           const char *device_id);

lp_status lp_devcfg_device(lp_devcfg *cfg, lp_device_config *out, lp_error *err)
{
    memset(out, 0, sizeof *out);
    if (cfg->root[0])
        snprintf(cfg->root_buf, sizeof cfg->root_buf, "%s", cfg->root);
    else
        snprintf(cfg->root_buf, sizeof cfg->root_buf, "%s/%s", LP_DEVCFG_DEFAULT_ROOT_BASE,
                 cfg->app);
    cfg->token[0] = '\0';
    if (cfg->device_token_file[0]) {
        lp_status st = read_token(cfg, err);
        if (st)
            return st;
    }
    const char *crash_at = getenv("LIVEPUSH_CRASH_AT");
    out->updater = (lp_updater_config){
        .root = cfg->root_buf,
        .keep = cfg->keep,
        .probation_window_s = cfg->probation_window_s,
        .probation_max_launches = cfg->probation_launches,
        .hooks_dir = cfg->hooks_dir[0] ? cfg->hooks_dir : NULL,
        .hook_timeout_ms = cfg->hook_timeout_s * 1000u,
        /* 0 means the default; a reserve of 0 is asked for as 1 byte. */
        .reserve_bytes = cfg->reserve_bytes ? cfg->reserve_bytes : 1,
        .verify_all = cfg->verify_all,
        .crash_at = crash_at && *crash_at ? crash_at : NULL,
    };
    out->net = (lp_net_config){
        .server_url = cfg->server[0] ? cfg->server : NULL,
        .app = cfg->app,
        .allow_http = cfg->allow_http,
        .attempts = cfg->attempts,
        .http = {.connect_timeout_ms = (long)cfg->connect_timeout_s * 1000L,
                 .low_speed_bytes = 1,
                 .low_speed_secs = (long)cfg->stall_timeout_s},
        .device_token = cfg->token[0] ? cfg->token : NULL,
    };
    out->channel = cfg->channel;
    out->platform = cfg->platform[0] ? cfg->platform : NULL;
    out->arch = cfg->arch[0] ? cfg->arch : NULL;
    out->runtime_version = cfg->runtime_version[0] ? cfg->runtime_version : NULL;
    for (size_t i = 0; i < cfg->attribute_count; i++)
        cfg->attributes[i] = (lp_device_attribute){cfg->attr_key[i], cfg->attr_value[i]};
    out->attributes = cfg->attribute_count ? cfg->attributes : NULL;
    out->attribute_count = cfg->attribute_count;
    out->trusted_root = cfg->trusted_root[0] ? cfg->trusted_root : NULL;
    out->max_events = cfg->max_events;
    out->no_deltas = !cfg->deltas;
    if (cfg->lifecycle_log[0]) {
        out->on_event = lifecycle_line;
        out->event_ctx = cfg;
    }
    return LP_OK;
}

/* One line of the update life cycle (docs/lifecycle.md): the device's side,
 * with the same names and ids as the server's lifecycle log.  The file is
 * opened, appended to and closed per event (they are few), so nothing stays
 * open between them. */
static void lifecycle_line(void *ctx, const lp_event *e, const char *channel,
                           const char *device_id)
{
    const lp_devcfg *cfg = ctx;
    bool back = e->type == LP_EVENT_ROLLED_BACK;
    uint64_t code = back ? e->from_version_code : e->version_code;
    const char *name = e->type == LP_EVENT_DOWNLOADED ? "fetched"
                       : e->type == LP_EVENT_CHECKED  ? (code ? "offered" : "checked")
                                                      : lp_event_type_name(e->type);
    json_t *f = json_pack("{s:s,s:s,s:s,s:s}", "side", "device", "event", name, "app", cfg->app,
                          "device", device_id ? device_id : "");
    char id[200];
    if (f && code) {
        snprintf(id, sizeof id, "%s/%llu", cfg->app, (unsigned long long)code);
        json_object_set_new(f, "release", json_string(id));
        if (channel && *channel) {
            snprintf(id, sizeof id, "%s/%llu@%s", cfg->app, (unsigned long long)code, channel);
            json_object_set_new(f, "rollout", json_string(id));
        }
    }
    uint64_t other = back ? e->version_code : e->from_version_code;
    if (f && other) {
        snprintf(id, sizeof id, "%s/%llu", cfg->app, (unsigned long long)other);
        json_object_set_new(f, back ? "to_release" : "from_release", json_string(id));
    }
    if (f && e->version)
        json_object_set_new(f, "version", json_string(e->version));
    if (f && e->reason)
        json_object_set_new(f, "reason", json_string(e->reason));
    if (f && e->duration_ms >= 0)
        json_object_set_new(f, "duration_ms", json_integer(e->duration_ms));
    FILE *out = fopen(cfg->lifecycle_log, "ae");
    lp_log log = {.out = out, .format = LP_LOG_JSON, .min_level = LP_LOG_INFO};
    if (out) {
        lp_log_event(&log, LP_LOG_INFO, "lifecycle", f);
        fclose(out);
    } else {
        json_decref(f);
    }
}

int lp_devcfg_open(lp_devcfg *cfg, const char *cmd, const lp_device_config *extra,
                   lp_device **out)
{
    *out = NULL;
    lp_device_config dc;
    lp_error err;
    lp_error_clear(&err);
    if (lp_devcfg_device(cfg, &dc, &err)) {
        fprintf(stderr, "livepush %s: %s\n", cmd, err.msg);
        return LP_EXIT_USAGE;
    }
    if (extra) {
        dc.progress = extra->progress;
        dc.progress_ctx = extra->progress_ctx;
        dc.on_skip = extra->on_skip;
        dc.skip_ctx = extra->skip_ctx;
        dc.should_stop = extra->should_stop;
        dc.stop_ctx = extra->stop_ctx;
        dc.on_delta = extra->on_delta;
        dc.delta_ctx = extra->delta_ctx;
    }

    if (lp_device_open(&dc, out, &err))
        return lp_cli_fail(&err, cmd);
    return -1;
}
