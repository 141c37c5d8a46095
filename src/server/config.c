/*
 * config.c — options of `livepush serve` from defaults, a JSON file, the
 * environment and flags (see config.h).
 *
 * One table drives everything: each row names the flag, environment
 * variable, file key, default and help of an option, plus how its text is
 * parsed and where it is stored (a kind and an offset into
 * lp_server_config).  Flags, environment values and file values all end up
 * as text passed to lp_server_config_set, so every source is checked by the
 * same code.  File values keep their JSON types: a number option wants a
 * JSON integer and a text option a JSON string.
 */
#include "server/config.h"
#include "livepush/delta.h"

#include "core/file.h"
#include "tuf/json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind {
    K_CONFIG,
    K_TEXT_LISTEN,
    K_TEXT_PATH,
    K_TEXT_DB,   /* database URL; "" for the default */
    K_TEXT_APP,  /* app name; "" for none */
    K_UINT,
    K_SIZE,
    K_U64,
    K_FORMAT,
    K_LEVEL,
    K_DEVICE_AUTH, /* "none" or "token" */
    K_RATIO        /* a decimal number > 0 and <= 1 ("0.6") */
};

typedef struct row {
    lp_server_option opt;
    enum kind kind;
    size_t offset;
    uint64_t min, max; /* for numbers */
} row;

#define OFF(f) offsetof(lp_server_config, f)

static const row rows[] = {
    {{"config", "LIVEPUSH_CONFIG", NULL, "FILE", "(none)",
      "JSON config file; its keys are the option names with '_' for '-'"},
     K_CONFIG, 0, 0, 0},
    {{"listen", "LIVEPUSH_LISTEN", "listen", "ADDR:PORT", "127.0.0.1:8080",
      "address and port to listen on: A.B.C.D:PORT, [V6]:PORT or localhost:PORT; port 0 "
      "picks a free port"},
     K_TEXT_LISTEN, OFF(listen), 0, 0},
    {{"data-dir", "LIVEPUSH_DATA_DIR", "data_dir", "DIR", "./livepush-data",
      "data folder: database, blobs, DIR/repos/<app>/, keys, uploads, admin.token"},
     K_TEXT_PATH, OFF(data_dir), 0, 0},
    {{"db", "LIVEPUSH_DB", "db", "URL", "",
      "metadata database; empty means sqlite:DIR/livepush.db"},
     K_TEXT_DB, OFF(db_url), 0, 0},
    {{"db-connections", "LIVEPUSH_DB_CONNECTIONS", "db_connections", "N", "8",
      "database connections kept open (requests wait for a free one)"},
     K_UINT, OFF(db_connections), 1, 256},
    {{"default-app", "LIVEPUSH_DEFAULT_APP", "default_app", "NAME", "default",
      "app created at first start when there is none; empty for none"},
     K_TEXT_APP, OFF(default_app), 0, 0},
    {{"threads", "LIVEPUSH_THREADS", "threads", "N", "0",
      "worker threads; 0 means one per CPU core"},
     K_UINT, OFF(threads), 0, 1024},
    {{"max-connections", "LIVEPUSH_MAX_CONNECTIONS", "max_connections", "N", "1024",
      "connections open at once; further ones are closed at once"},
     K_UINT, OFF(max_connections), 1, 1000000},
    {{"connection-timeout", "LIVEPUSH_CONNECTION_TIMEOUT", "connection_timeout", "SECONDS", "30",
      "an idle connection is closed after this many seconds"},
     K_UINT, OFF(connection_timeout_s), 1, 86400},
    {{"max-header-bytes", "LIVEPUSH_MAX_HEADER_BYTES", "max_header_bytes", "BYTES", "32768",
      "memory per connection, which bounds the request line and headers"},
     K_SIZE, OFF(max_header_bytes), 4096, 16u * 1024 * 1024},
    {{"max-body-bytes", "LIVEPUSH_MAX_BODY_BYTES", "max_body_bytes", "BYTES", "8454144",
      "largest request body accepted (413 beyond); the default, 8 MiB + 64 KiB, takes an "
      "8 MiB upload chunk"},
     K_SIZE, OFF(max_body_bytes), 0, (uint64_t)1 << 40},
    {{"max-bundle-entries", "LIVEPUSH_MAX_BUNDLE_ENTRIES", "max_bundle_entries", "N", "100000",
      "most files, folders and links in one release bundle"},
     K_U64, OFF(max_bundle_entries), 1, 200000},
    {{"max-bundle-bytes", "LIVEPUSH_MAX_BUNDLE_BYTES", "max_bundle_bytes", "BYTES",
      "4294967296", "most bytes of all files of one release bundle together"},
     K_U64, OFF(max_bundle_bytes), 1, (uint64_t)1 << 50},
    {{"max-bundle-file-bytes", "LIVEPUSH_MAX_BUNDLE_FILE_BYTES", "max_bundle_file_bytes",
      "BYTES", "2147483648", "largest single file in a release bundle"},
     K_U64, OFF(max_bundle_file_bytes), 1, (uint64_t)1 << 50},
    {{"max-bundle-ratio", "LIVEPUSH_MAX_BUNDLE_RATIO", "max_bundle_ratio", "N", "200",
      "most unpacked bytes per archive byte (refuses decompression bombs)"},
     K_U64, OFF(max_bundle_ratio), 1, 1000000},
    {{"resign-interval", "LIVEPUSH_RESIGN_INTERVAL", "resign_interval", "SECONDS", "600",
      "how often to re-sign TUF metadata that has used half its lifetime"},
     K_UINT, OFF(resign_interval_s), 1, 86400},
    {{"guard-interval", "LIVEPUSH_GUARD_INTERVAL", "guard_interval", "MS", "10000",
      "how often to check the rollout guardrails (failure and rollback rates), in ms"},
     K_UINT, OFF(guard_interval_ms), 10, 86400000},
    {{"shutdown-timeout", "LIVEPUSH_SHUTDOWN_TIMEOUT", "shutdown_timeout", "SECONDS", "30",
      "on SIGTERM/SIGINT, how long to wait for requests in flight"},
     K_UINT, OFF(shutdown_timeout_s), 0, 86400},
    {{"device-auth", "LIVEPUSH_DEVICE_AUTH", "device_auth", "none|token", "none",
      "device API (POST /v1/apps/<app>/events): none = anonymous devices, token = a "
      "download-scope token"},
     K_DEVICE_AUTH, OFF(device_auth_token), 0, 0},
    {{"delta-releases", "LIVEPUSH_DELTA_RELEASES", "delta_releases", "K", "3",
      "make deltas to a new release from the last K releases of each of its channels, in "
      "the background; 0 disables deltas"},
     K_UINT, OFF(delta_releases), 0, 64},
    {{"delta-min-size", "LIVEPUSH_DELTA_MIN_SIZE", "delta_min_size", "BYTES", "1024",
      "files smaller than this get no delta (the device fetches them whole)"},
     K_U64, OFF(delta_min_size), 0, (uint64_t)1 << 30},
    {{"delta-max-ratio", "LIVEPUSH_DELTA_MAX_RATIO", "delta_max_ratio", "RATIO", "0.6",
      "a delta is kept only when its size is at most RATIO x the file's (0 < RATIO <= 1)"},
     K_RATIO, OFF(delta_max_ratio), 0, 0},
    {{"delta-dict-level", "LIVEPUSH_DELTA_DICT_LEVEL", "delta_dict_level", "N", "22",
      "zstd level of the dictionary frames the delta engine also tries when its matched "
      "coding is over 1/8 of a file (level 22 takes about 1.4 GB for a 50 MB file); 0 never "
      "tries them"},
     K_UINT, OFF(delta_dict_level), 0, 22},
    {{"delta-threads", "LIVEPUSH_DELTA_THREADS", "delta_threads", "N", "1",
      "threads that compress the dictionary frames of one delta (they share zstd's tables)"},
     K_UINT, OFF(delta_threads), 1, LP_DELTA_THREADS_MAX},
    {{"lifecycle-log", "LIVEPUSH_LIFECYCLE_LOG", "lifecycle_log", "FILE", "",
      "append the update life cycle (planned, canary started, rollout changes, halts, and "
      "what devices report) to FILE as JSON lines (docs/lifecycle.md); empty: none"},
     K_TEXT_PATH, OFF(lifecycle_log), 0, 0},
    {{"log-format", "LIVEPUSH_LOG_FORMAT", "log_format", "json|text", "json",
      "log line format on stderr"},
     K_FORMAT, OFF(log_format), 0, 0},
    {{"log-level", "LIVEPUSH_LOG_LEVEL", "log_level", "LEVEL", "info",
      "least severe level logged: debug, info, warn or error"},
     K_LEVEL, OFF(log_level), 0, 0},
};

#define NROWS (sizeof rows / sizeof rows[0])

const lp_server_option *lp_server_option_at(size_t i)
{
    return i < NROWS ? &rows[i].opt : NULL;
}

static const row *find_flag(const char *name)
{
    for (size_t i = 0; i < NROWS; i++)
        if (!strcmp(rows[i].opt.flag, name))
            return &rows[i];
    return NULL;
}

static const row *find_key(const char *key)
{
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].opt.key && !strcmp(rows[i].opt.key, key))
            return &rows[i];
    return NULL;
}

void lp_server_config_defaults(lp_server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].kind != K_CONFIG)
            lp_server_config_set(cfg, rows[i].opt.flag, rows[i].opt.deflt, "default", NULL);
}

/* An app name as the database accepts it: 1..64 of [a-z0-9._-], the first
 * a letter or digit. */
static bool app_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > LP_SERVER_APP_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

/* Decimal digits only, no sign, no overflow, within [min, max]. */
static bool parse_number(const char *s, uint64_t min, uint64_t max, uint64_t *out)
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
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* A decimal number: digits, optionally '.' and more digits (at most 24
 * characters), greater than 0 and at most 1. */
static bool parse_ratio(const char *s, double *out)
{
    size_t n = strlen(s), digits = 0, dots = 0;
    if (n == 0 || n > 24)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.')
            dots++;
        else if (s[i] >= '0' && s[i] <= '9')
            digits++;
        else
            return false;
    }
    if (!digits || dots > 1 || s[0] == '.' || s[n - 1] == '.')
        return false;
    double v = strtod(s, NULL);
    if (!(v > 0.0 && v <= 1.0))
        return false;
    *out = v;
    return true;
}

lp_status lp_server_config_set(lp_server_config *cfg, const char *name, const char *value,
                               const char *source, lp_error *err)
{
    const row *r = find_flag(name);
    if (!r)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "unknown option '%s'", name);
    if (!value)
        value = "";
    char *field = (char *)cfg + r->offset;
    uint64_t n;
    switch (r->kind) {
    case K_CONFIG:
        return LP_OK; /* handled by lp_server_config_load */
    case K_TEXT_LISTEN: {
        struct sockaddr_storage ss;
        socklen_t len;
        lp_status st = lp_server_parse_listen(value, &ss, &len, err);
        if (st)
            return lp_error_prefix(err, st, "%s", source);
        snprintf(field, LP_SERVER_LISTEN_MAX, "%s", value);
        return LP_OK;
    }
    case K_TEXT_PATH:
        if (!*value || strlen(value) >= LP_SERVER_PATH_MAX)
            return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: expected a path of 1 to %d bytes",
                                source, LP_SERVER_PATH_MAX - 1);
        snprintf(field, LP_SERVER_PATH_MAX, "%s", value);
        return LP_OK;
    case K_TEXT_DB:
        if (strlen(value) > LP_SERVER_DB_URL_MAX)
            return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: longer than %d bytes", source,
                                LP_SERVER_DB_URL_MAX);
        snprintf(field, LP_SERVER_DB_URL_MAX + 1, "%s", value);
        return LP_OK;
    case K_TEXT_APP:
        if (*value && !app_name_ok(value))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "%s: '%s' is not an app name (1 to %d of a-z 0-9 . _ -, "
                                "starting with a letter or digit)",
                                source, value, LP_SERVER_APP_NAME_MAX);
        snprintf(field, LP_SERVER_APP_NAME_MAX + 1, "%s", value);
        return LP_OK;
    case K_UINT:
    case K_SIZE:
    case K_U64:
        if (!parse_number(value, r->min, r->max, &n))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "%s: '%s' is not a whole number from %llu to %llu", source, value,
                                (unsigned long long)r->min, (unsigned long long)r->max);
        if (r->kind == K_UINT)
            *(unsigned *)(void *)field = (unsigned)n;
        else if (r->kind == K_U64)
            memcpy(field, &n, sizeof n);
        else if (r->offset == OFF(max_header_bytes))
            cfg->max_header_bytes = (size_t)n;
        else
            cfg->max_body_bytes = n;
        return LP_OK;
    case K_FORMAT: {
        lp_status st = lp_log_format_from_name(value, &cfg->log_format, err);
        return st ? lp_error_prefix(err, st, "%s", source) : LP_OK;
    }
    case K_LEVEL: {
        lp_status st = lp_log_level_from_name(value, &cfg->log_level, err);
        return st ? lp_error_prefix(err, st, "%s", source) : LP_OK;
    }
    case K_DEVICE_AUTH:
        if (strcmp(value, "none") && strcmp(value, "token"))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "%s: '%.64s' is not a device authentication mode (none or "
                                "token)",
                                source, value);
        cfg->device_auth_token = !strcmp(value, "token");
        return LP_OK;
    case K_RATIO:
        if (!parse_ratio(value, &cfg->delta_max_ratio))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "%s: '%.32s' is not a number greater than 0 and at most 1 "
                                "(e.g. 0.6)",
                                source, value);
        return LP_OK;
    }
    return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: unsupported option", source);
}

lp_status lp_server_config_apply_file(lp_server_config *cfg, const char *path, lp_error *err)
{
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_file_read(path, LP_SERVER_CONFIG_FILE_MAX, &data, &len, err);
    if (st)
        return lp_error_prefix(err, st, "config file %s", path);
    json_t *doc = NULL;
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
    json_object_foreach(doc, key, v) {
        const row *r = find_key(key);
        char source[128], text[32];
        snprintf(source, sizeof source, "config file %s: key '%s'", path, key);
        if (!r) {
            st = lp_error_set(err, LP_ERR_MALFORMED, "config file %s: unknown key '%s'", path, key);
            break;
        }
        bool numeric = r->kind == K_UINT || r->kind == K_SIZE || r->kind == K_U64;
        const char *value;
        if (r->kind == K_RATIO && json_is_number(v)) {
            /* 17 significant digits give the JSON number back exactly */
            snprintf(text, sizeof text, "%.17g", json_number_value(v));
            value = text;
        } else if (r->kind == K_RATIO) {
            st = lp_error_set(err, LP_ERR_MALFORMED, "%s: expected a number", source);
            break;
        } else if (numeric && json_is_integer(v) && json_integer_value(v) >= 0) {
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
            value = text;
        } else if (!numeric && json_is_string(v)) {
            value = json_string_value(v);
        } else {
            st = lp_error_set(err, LP_ERR_MALFORMED, "%s: expected %s", source,
                              numeric ? "a non-negative integer" : "a string");
            break;
        }
        st = lp_server_config_set(cfg, r->opt.flag, value, source, err);
        if (st) {
            st = LP_ERR_MALFORMED;
            if (err)
                err->code = st;
            break;
        }
    }
    json_decref(doc);
    return st;
}

static const char *env_value(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; envp && envp[i]; i++)
        if (!strncmp(envp[i], name, n) && envp[i][n] == '=')
            return envp[i] + n + 1;
    return NULL;
}

lp_status lp_server_config_load(lp_server_config *cfg, const lp_server_setting *flags,
                                size_t nflags, char *const *envp, lp_error *err)
{
    lp_server_config_defaults(cfg);
    const char *file = env_value(envp, "LIVEPUSH_CONFIG");
    for (size_t i = 0; i < nflags; i++)
        if (!strcmp(flags[i].name, "config"))
            file = flags[i].value;
    if (file && *file) {
        lp_status st = lp_server_config_apply_file(cfg, file, err);
        if (st)
            return st;
    }
    for (size_t i = 0; i < NROWS; i++) {
        const char *v = rows[i].kind == K_CONFIG ? NULL : env_value(envp, rows[i].opt.env);
        if (!v)
            continue;
        lp_status st = lp_server_config_set(cfg, rows[i].opt.flag, v, rows[i].opt.env, err);
        if (st)
            return st;
    }
    for (size_t i = 0; i < nflags; i++) {
        char source[64];
        snprintf(source, sizeof source, "--%s", flags[i].name);
        lp_status st = lp_server_config_set(cfg, flags[i].name, flags[i].value, source, err);
        if (st)
            return st;
    }
    return LP_OK;
}

lp_status lp_server_parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len,
                                 lp_error *err)
{
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon || colon == listen)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "listen address '%s': expected HOST:PORT", listen ? listen : "");
    uint64_t port;
    if (!parse_number(colon + 1, 0, 65535, &port))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "listen address '%s': port must be a number from 0 to 65535", listen);
    char host[LP_SERVER_LISTEN_MAX];
    size_t hl = (size_t)(colon - listen);
    if (hl >= sizeof host)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "listen address '%s': too long", listen);
    memcpy(host, listen, hl);
    host[hl] = '\0';
    memset(ss, 0, sizeof *ss);
    if (host[0] == '[') {
        if (hl < 3 || host[hl - 1] != ']')
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "listen address '%s': unclosed '[' around an IPv6 address", listen);
        host[hl - 1] = '\0';
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "listen address '%s': '%s' is not an IPv6 address", listen, host + 1);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *len = sizeof *s6;
        return LP_OK;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    if (!strcmp(host, "localhost"))
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "listen address '%s': '%s' is not an IPv4 address (IPv6 goes in "
                            "brackets: [::1]:8080)",
                            listen, host);
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *len = sizeof *s4;
    return LP_OK;
}
