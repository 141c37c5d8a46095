/*
 * apitest.h — a real `livepush serve` in-process for API tests: the service
 * on a scratch data folder (real SQLite file, blob store, server-held keys;
 * with LP_TEST_PG_URL set, a PostgreSQL schema of its own instead of the
 * SQLite file: testdb.h),
 * bootstrapped like a first start (admin token, app "default"), behind the
 * real HTTP server on an ephemeral loopback port with the API and
 * repository routes; and a libcurl client to talk to it.
 *
 * Functions return 0 / a value on success and -1 / NULL on failure with a
 * message on stderr, so tests assert on them.  Responses are owned by the
 * caller (lp_apiresp_free).
 */
#ifndef LP_APITEST_H
#define LP_APITEST_H

#include "livepush/token.h"
#include "server/http.h"
#include "server/service.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct lp_delta_worker;
struct lp_testdb;

typedef struct lp_apitest {
    char *dir;                        /* data folder */
    struct lp_testdb *tdb;            /* the PostgreSQL schema (NULL: SQLite in dir) */
    lp_service *svc;
    lp_http_server *srv;
    struct lp_delta_worker *worker;   /* the delta worker, when the options start it */
    char base[128];                   /* http://127.0.0.1:PORT */
    char admin[LP_TOKEN_TEXT_SIZE];   /* the bootstrap admin token */
    FILE *log_file;                   /* the server's log (JSON lines, debug level) */
    lp_log log;
} lp_apitest;

typedef struct lp_apiresp {
    long status;
    char *body;        /* NUL-terminated */
    size_t len;
    json_t *json;      /* the body parsed, or NULL when it is not JSON */
    char www_auth[128], etag[160], cache[128], content_range[128], ctype[64];
    char location[256], csp[512], nosniff[64], referrer[64]; /* Location, Content-Security-Policy,
                                                                X-Content-Type-Options,
                                                                Referrer-Policy */
} lp_apiresp;

/* Starts service and server; max_body is the server's body limit (0: 8 MiB
 * + 64 KiB, the serve default). */
lp_apitest *lp_apitest_start(uint64_t max_body);

/* Server options of lp_apitest_start_with. */
typedef struct lp_apitest_opts {
    uint64_t max_body;  /* 0: as lp_apitest_start(0) */
    bool device_token;  /* serve --device-auth token (lp_service_options.device_token) */
    lp_service_delta_options deltas; /* lp_service_options.deltas (all 0: none planned) */
    bool delta_worker;  /* start the delta worker as serve does */
} lp_apitest_opts;

/* lp_apitest_start with more options (o may be NULL: the defaults). */
lp_apitest *lp_apitest_start_with(const lp_apitest_opts *o);
void lp_apitest_stop(lp_apitest *t);

/* Stops the server (delta worker, HTTP, service) as a shutdown would and
 * starts it again on the same data folder with options `o` (may be NULL:
 * the defaults): a restart.  The admin token stays; the port changes
 * (t->base is updated).  0, or -1 with a message on stderr. */
int lp_apitest_restart(lp_apitest *t, const lp_apitest_opts *o);

/* Everything the server logged so far (new malloc'd string). */
char *lp_apitest_log_text(lp_apitest *t);

/* One request.  token: the bearer token text, or NULL for no
 * Authorization header; auth_raw, when not NULL, is sent as the whole
 * Authorization value instead.  extra: NULL-terminated list of header
 * lines, or NULL.  body/len: request body (NULL: none).  The body is sent
 * at once (no "Expect: 100-continue") unless extra has an Expect header:
 * a test of a refusal before the body uses "Expect: 100-continue", so the
 * client waits for the answer instead of racing the server's close. */
int lp_apitest_call(lp_apitest *t, const char *method, const char *path, const char *token,
                    const char *auth_raw, const char *const *extra, const void *body, size_t len,
                    lp_apiresp *r);
void lp_apiresp_free(lp_apiresp *r);

/* The JSON request `json_text` (may be NULL) with `token`; returns the
 * parsed answer (new reference) when the status is `expect`, else NULL
 * (the status and body go to stderr). */
json_t *lp_apitest_json(lp_apitest *t, const char *method, const char *path, const char *token,
                        const char *json_text, long expect);

/* The error code of an error answer ("" when it has none). */
const char *lp_apiresp_code(const lp_apiresp *r);
const char *lp_apiresp_message(const lp_apiresp *r);

/* Makes a token with the comma-separated `scopes` through the API (as
 * admin); its text goes to `out`, its id to `id_out` (may be NULL). */
int lp_apitest_token(lp_apitest *t, const char *name, const char *scopes,
                     char out[LP_TOKEN_TEXT_SIZE], char id_out[LP_TOKEN_ID_LEN + 1]);

/* Creates an upload of `len` bytes for `app` (sha256 declared when
 * with_sha), sends it in chunks of `chunk` bytes (0: none sent), and writes
 * its id to id_out (64 bytes).  Uses `token`. */
int lp_apitest_upload(lp_apitest *t, const char *token, const char *app, const void *data,
                      size_t len, size_t chunk, int with_sha, char *id_out);

/* Sends bytes [start, start+n) of `data` (total `total`) to upload `id`
 * and returns the HTTP status (the answer in *r when r is not NULL). */
long lp_apitest_put(lp_apitest *t, const char *token, const char *id, const uint8_t *data,
                    size_t start, size_t n, size_t total, lp_apiresp *r);

#endif
