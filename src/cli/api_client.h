/*
 * api_client.h — the client side of the management API (internal to the
 * livepush command).
 *
 * The commands that talk to `livepush serve` (upload, inspect, releases,
 * rollback, app, channel, token) share one set of client options and one
 * client:
 *
 *   --server URL       env LIVEPUSH_SERVER, default http://127.0.0.1:8080
 *   --token T          the token text "lp_<id>_<secret>"
 *   --token-file F     a file holding it (first line; surrounding blanks dropped)
 *                      (neither given: env LIVEPUSH_TOKEN; none at all is allowed,
 *                      and the server then answers 401)
 *   --app NAME         env LIVEPUSH_APP, default "default"
 *   --timeout SECONDS  env LIVEPUSH_TIMEOUT, default 600: the limit of one JSON
 *                      request (connecting is limited to 10 s)
 *   --json             print the API's JSON object instead of a table
 *
 * A client (lp_client) owns one libcurl easy handle, so consecutive
 * requests reuse the connection.  Requests and answers are JSON objects
 * (jansson).  Every answer is bounded (LP_CLIENT_MAX_RESPONSE bytes), must be
 * JSON and, for a 2xx status, an object.  A status outside 2xx becomes an
 * lp_error whose message reads
 *
 *     POST /api/v1/apps/default/releases: HTTP 422 (unprocessable): <server's message>
 *
 * and the client remembers the HTTP status and the error code, from which
 * lp_client_exit_code derives the documented exit code:
 *
 *     0 success; 1 failure (network, 5xx, a malformed answer); 2 usage;
 *     3 auth refused (401, 403); 4 refused by the server (any other 4xx);
 *     and, for the commands that sign (signer.h), 5 a release waits for
 *     more signatures.
 *
 * Only http and https URLs are accepted; redirects are not followed (a
 * management server that redirects is misconfigured, and the token must not
 * travel elsewhere); https certificates and host names are verified
 * (libcurl's defaults, never turned off).  The token is checked to be
 * printable ASCII without spaces, so it cannot inject headers, and it never
 * appears in a message.
 *
 * State: the client is a plain value owned by the command that made it;
 * nothing is global apart from libcurl's own process-wide initialisation,
 * which lp_client_new asks for (curl_global_init is reference counted
 * and thread-safe in the libcurl versions livepush supports).
 */
#ifndef LP_CLI_API_CLIENT_H
#define LP_CLI_API_CLIENT_H

#include "livepush/error.h"

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes of the API commands beyond those of cli.h. */
#define LP_EXIT_AUTH 3
#define LP_EXIT_REFUSED 4
/* A release of an app whose publisher signs was prepared (and any
 * signatures given were accepted) but waits for more signatures. */
#define LP_EXIT_PENDING 5

#define LP_CLIENT_MAX_RESPONSE (16u * 1024 * 1024)
#define LP_CLIENT_DEFAULT_SERVER "http://127.0.0.1:8080"
#define LP_CLIENT_DEFAULT_APP "default"
#define LP_CLIENT_DEFAULT_TIMEOUT_S 600L
#define LP_CLIENT_TOKEN_MAX 512

/* The shared client options, as given on the command line (NULL: not given). */
typedef struct lp_client_opts {
    const char *server;
    const char *token;
    const char *token_file;
    const char *app;
    const char *timeout;
    bool json;
} lp_client_opts;

/* getopt_long codes of the shared options; a command's own codes stay below
 * LP_CLIENT_OPT_BASE. */
enum {
    LP_CLIENT_OPT_BASE = 1000,
    LP_CLIENT_OPT_SERVER = LP_CLIENT_OPT_BASE,
    LP_CLIENT_OPT_TOKEN,
    LP_CLIENT_OPT_TOKEN_FILE,
    LP_CLIENT_OPT_APP,
    LP_CLIENT_OPT_TIMEOUT,
    LP_CLIENT_OPT_JSON,
};

/* The entries of the shared options for a struct option table. */
#define LP_CLIENT_LONG_OPTIONS                                                                        \
    {"server", required_argument, NULL, LP_CLIENT_OPT_SERVER},                                        \
        {"token", required_argument, NULL, LP_CLIENT_OPT_TOKEN},                                      \
        {"token-file", required_argument, NULL, LP_CLIENT_OPT_TOKEN_FILE},                            \
        {"app", required_argument, NULL, LP_CLIENT_OPT_APP},                                          \
        {"timeout", required_argument, NULL, LP_CLIENT_OPT_TIMEOUT},                                  \
        {"json", no_argument, NULL, LP_CLIENT_OPT_JSON}

/* The --help lines of the shared options. */
#define LP_CLIENT_OPTIONS_HELP                                                                        \
    "Client options (every command):\n"                                                            \
    "  --server URL         server (env LIVEPUSH_SERVER, default " LP_CLIENT_DEFAULT_SERVER ")\n"    \
    "  --token TOKEN        API token (env LIVEPUSH_TOKEN)\n"                                      \
    "  --token-file FILE    read the API token from FILE\n"                                        \
    "  --app NAME           app (env LIVEPUSH_APP, default \"" LP_CLIENT_DEFAULT_APP "\")\n"             \
    "  --timeout SECONDS    limit of one request (env LIVEPUSH_TIMEOUT, default 600)\n"           \
    "  --json               print the server's JSON object instead of a summary\n"                 \
    "\n"                                                                                           \
    "Exit codes: 0 success, 1 failure (network, server error), 2 usage error,\n"                   \
    "3 refused for authentication (401/403), 4 refused by the server (other 4xx).\n"

/* Records a shared option; returns true when `code` was one. */
bool lp_client_opt(lp_client_opts *o, int code, const char *arg);

/* The app name to use: --app, else LIVEPUSH_APP, else "default". */
const char *lp_client_app(const lp_client_opts *o);

typedef struct lp_client lp_client;

/* Makes a client from the options (environment variables fill what the
 * options leave out).  Reads --token-file.  The caller owns *out
 * (lp_client_free).  LP_ERR_INVALID_ARG for a bad URL, token or
 * timeout (the command treats it as a usage error), LP_ERR_IO /
 * LP_ERR_NOT_FOUND for an unreadable token file, LP_ERR_NETWORK when libcurl
 * cannot start, LP_ERR_NOMEM. */
lp_status lp_client_new(lp_client **out, const lp_client_opts *o, lp_error *err);
void lp_client_free(lp_client *c);

/* The server's base URL (no trailing '/'). */
const char *lp_client_server(const lp_client *c);

/* Sends METHOD base+path (path starts with '/', already escaped) with the
 * JSON `body` (borrowed; NULL: no body) and parses the answer.
 * On a 2xx answer: LP_OK and *out (may be NULL) gets the object (caller
 * decrefs).  Otherwise the error described at the top of this file; *out
 * then gets the answer's object when there was one (the 409 of an upload
 * carries the upload), else NULL.  Errors mapped from the status: 400
 * LP_ERR_INVALID_ARG, 404 LP_ERR_NOT_FOUND, 409 LP_ERR_EXISTS (code
 * "rollback": LP_ERR_ROLLBACK), 413 LP_ERR_TOO_LARGE, 422 LP_ERR_MALFORMED,
 * any other status and transport failures LP_ERR_NETWORK; LP_ERR_MALFORMED or
 * LP_ERR_TOO_LARGE for an answer that is not JSON or too big. */
lp_status lp_client_request(lp_client *c, const char *method, const char *path,
                         const json_t *body, json_t **out, lp_error *err);

/* Progress of a chunk upload: `sent` bytes of this chunk have gone. */
typedef void (*lp_client_progress_fn)(void *ctx, uint64_t sent);

/* PUTs bytes [offset, offset+len) of the open file `fd` to path as
 * application/octet-stream with "Content-Range: bytes offset-(offset+len-1)/total",
 * then handles the answer as lp_client_request does.  max_send_rate (bytes per
 * second, 0: unlimited) slows the sending down.  `progress` (may be NULL) is
 * called as bytes go out.  A transfer that makes no progress for 60 s is
 * abandoned (LP_ERR_NETWORK); there is no overall time limit.  A file
 * shorter than offset+len: LP_ERR_IO. */
lp_status lp_client_put_file_range(lp_client *c, const char *path, int fd, uint64_t offset,
                                uint64_t len, uint64_t total, uint64_t max_send_rate,
                                lp_client_progress_fn progress, void *progress_ctx, json_t **out,
                                lp_error *err);

/* The HTTP status of the last request (0: no answer arrived). */
long lp_client_last_http_status(const lp_client *c);
/* The "error.code" of the last answer, or "" when there was none. */
const char *lp_client_last_error_code(const lp_client *c);

/* The exit code for a command that ended with status `st` (see the top);
 * LP_ERR_INVALID_ARG before any answer arrived is a usage error (2). */
int lp_client_exit_code(const lp_client *c, lp_status st);

/* lp_client_new for a command: -1 when *c is ready; otherwise the
 * reason is printed ("livepush <cmd>: ...") and the exit code returned (2
 * for a bad option value, 1 otherwise). */
int lp_client_open(const lp_client_opts *o, const char *cmd, lp_client **c);

/* Prints "livepush <cmd>: <message>" on stderr and returns the exit code
 * for `st` (c may be NULL: before any request). */
int lp_client_fail(const lp_client *c, lp_status st, const lp_error *err, const char *cmd);

/* A path segment percent-escaped for a URL (new malloc'd string; NULL when
 * out of memory).  Everything but A-Z a-z 0-9 - . _ ~ is escaped. */
char *lp_client_escape(const char *segment);

/* A request path from `fmt`, whose only conversion is %s: each argument is
 * escaped with lp_client_escape ("/api/v1/apps/%s/releases/%s").  New malloc'd
 * string; NULL when out of memory. */
char *lp_client_path(const char *fmt, ...);

/* Prints `v` as indented JSON and a newline on stdout. */
void lp_client_print_json(const json_t *v);

/* Reads a string field of an object ("" when missing or not a string). */
const char *lp_client_str(const json_t *obj, const char *key);
/* Reads an integer field of an object (def when missing or not an integer). */
long long lp_client_int(const json_t *obj, const char *key, long long def);

/* Formats a Unix time as "YYYY-MM-DD HH:MM:SS" UTC (out >= 24 bytes); "-"
 * for 0 or a missing time. */
void lp_client_format_time(long long t, char out[24]);
/* Formats a byte count as "123 B", "4.5 KiB", "12.0 MiB", ... (out >= 16). */
void lp_client_format_bytes(uint64_t n, char out[16]);

/* Parses a byte count: digits with an optional K, M or G suffix (powers of
 * 1024).  LP_ERR_INVALID_ARG naming `what`. */
lp_status lp_client_parse_size(const char *s, const char *what, uint64_t *out, lp_error *err);
/* Parses a decimal integer in [min, max].  LP_ERR_INVALID_ARG naming `what`. */
lp_status lp_client_parse_int(const char *s, const char *what, long long min, long long max,
                           long long *out, lp_error *err);
/* Parses a percentage "0".."100" with at most two decimals and an optional
 * '%' ("12.5", "0.25%") into basis points (1250, 25).  LP_ERR_INVALID_ARG
 * naming `what`. */
lp_status lp_client_parse_percent(const char *s, const char *what, int *bp, lp_error *err);

#endif
