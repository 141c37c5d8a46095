/*
 * config.h — configuration of `livepush serve` (internal).
 *
 * Every option has one entry in a table (config.c) that gives its
 * command-line flag, its environment variable, its key in the JSON config
 * file, its default and its help text, so the four can never disagree.
 * Values are applied in layers, each overriding the one before:
 *
 *     defaults  <  config file  <  environment  <  command-line flags
 *
 * The config file is the one named by --config, else by LIVEPUSH_CONFIG,
 * else none.  It is a JSON object parsed strictly (src/tuf/json.h); an
 * unknown key, a value of the wrong type or out of range is refused with a
 * message naming the key.
 */
#ifndef LP_SERVER_CONFIG_H
#define LP_SERVER_CONFIG_H

#include "livepush/error.h"
#include "server/log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define LP_SERVER_LISTEN_MAX 256
#define LP_SERVER_PATH_MAX 4096
#define LP_SERVER_CONFIG_FILE_MAX (64u * 1024)
#define LP_SERVER_APP_NAME_MAX 64
#define LP_SERVER_DB_URL_MAX 4096

typedef struct lp_server_config {
    char listen[LP_SERVER_LISTEN_MAX];  /* "HOST:PORT" or "[V6]:PORT"; port 0: any free port */
    char data_dir[LP_SERVER_PATH_MAX];  /* the service's data folder (server/service.h) */
    char lifecycle_log[LP_SERVER_PATH_MAX]; /* "": none */
    char db_url[LP_SERVER_DB_URL_MAX + 1]; /* "" : sqlite:<data_dir>/livepush.db */
    unsigned db_connections;            /* database connection pool size */
    char default_app[LP_SERVER_APP_NAME_MAX + 1]; /* app made at first start; "": none */
    unsigned threads;                   /* worker threads; 0: one per core */
    unsigned max_connections;           /* open connections at once */
    unsigned connection_timeout_s;      /* idle connection timeout */
    size_t max_header_bytes;            /* per-connection memory: bounds request headers */
    uint64_t max_body_bytes;            /* largest request body a route may receive */
    uint64_t max_bundle_entries;        /* ingest limits of one release bundle */
    uint64_t max_bundle_bytes;          /* (lp_ingest_limits) */
    uint64_t max_bundle_file_bytes;
    uint64_t max_bundle_ratio;
    unsigned resign_interval_s;         /* period of the metadata re-signing check */
    unsigned guard_interval_ms;         /* period of the rollout guardrail check */
    unsigned shutdown_timeout_s;        /* how long a shutdown waits for requests in flight */
    bool device_auth_token;             /* --device-auth token: the device API needs a
                                           `download` token; false ("none"): anonymous */
    unsigned delta_releases;            /* deltas from the last N releases of a channel; 0: none */
    uint64_t delta_min_size;            /* files smaller than this get no delta */
    double delta_max_ratio;             /* a delta is kept when at most this x the file */
    unsigned delta_dict_level;          /* level of the dictionary frames; 0: not tried */
    unsigned delta_threads;             /* threads that compress them */
    lp_log_format log_format;
    lp_log_level log_level;
} lp_server_config;

/* One option as given on the command line: name without "--" ("listen")
 * and its value. */
typedef struct lp_server_setting {
    const char *name;
    const char *value;
} lp_server_setting;

/* One row of the option table (for --help and for building getopt tables). */
typedef struct lp_server_option {
    const char *flag;    /* "listen" (used as --listen) */
    const char *env;     /* "LIVEPUSH_LISTEN" */
    const char *key;     /* "listen" (config file key); NULL for --config itself */
    const char *arg;     /* "ADDR:PORT" — the value's shape in help text */
    const char *deflt;   /* default as text */
    const char *help;
} lp_server_option;

/* Row i of the option table (0 is --config), or NULL past the end. */
const lp_server_option *lp_server_option_at(size_t i);

/* Fills cfg with the defaults. */
void lp_server_config_defaults(lp_server_config *cfg);

/* Sets one option (by flag name, e.g. "max-connections") from text, as a
 * flag or environment variable gives it.  `source` names where the value
 * came from for messages ("--threads", "LIVEPUSH_THREADS").
 * LP_ERR_INVALID_ARG names the option and the bad value; LP_ERR_NOT_FOUND
 * for an unknown option name. */
lp_status lp_server_config_set(lp_server_config *cfg, const char *name, const char *value,
                               const char *source, lp_error *err);

/* Applies a JSON config file.  LP_ERR_MALFORMED names the key at fault. */
lp_status lp_server_config_apply_file(lp_server_config *cfg, const char *path, lp_error *err);

/* Resolves the whole configuration: defaults, then the config file (the
 * "config" setting among `flags`, else LIVEPUSH_CONFIG from envp), then
 * every LIVEPUSH_* variable of envp (a NULL-terminated "NAME=value" array;
 * may be NULL), then `flags` in order. */
lp_status lp_server_config_load(lp_server_config *cfg, const lp_server_setting *flags,
                                size_t nflags, char *const *envp, lp_error *err);

/* Parses a listen address: "A.B.C.D:PORT", "[IPV6]:PORT" or
 * "localhost:PORT" (port 0..65535; 0 picks a free port) into a socket
 * address.  LP_ERR_INVALID_ARG says what is wrong. */
lp_status lp_server_parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len,
                                 lp_error *err);

#endif
