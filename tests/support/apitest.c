/*
 * apitest.c — an in-process server and a libcurl client for API tests (see
 * apitest.h).
 *
 * The server is assembled exactly as `livepush serve` assembles it
 * (service, bootstrap, repository routes, API routes) so the tests go
 * through the same code; the admin token is read back from the file the
 * bootstrap wrote.  Each request uses a fresh curl handle: simple, and a
 * connection the server closed (413 before the body) cannot leak into the
 * next request.
 */
#include "apitest.h"

#include "livepush/hash.h"
#include "server/api.h"
#include "server/delta_worker.h"
#include "testdb.h"
#include "testutil.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_BODY (8u * 1024 * 1024 + 64u * 1024)

lp_apitest *lp_apitest_start(uint64_t max_body)
{
    lp_apitest_opts o = {.max_body = max_body};
    return lp_apitest_start_with(&o);
}

/* Opens the service on t->dir and starts the server with options `o`;
 * the first start reads the admin token the bootstrap wrote. */
static int open_server(lp_apitest *t, const lp_apitest_opts *o, bool first)
{
    uint64_t max_body = o->max_body;
    lp_error err;
    lp_error_clear(&err);
    lp_service_options so = {.data_dir = t->dir, .db_connections = 4, .log = &t->log,
                             .device_token = o->device_token, .deltas = o->deltas,
                             .db_url = t->tdb ? t->tdb->url : NULL};
    lp_http_server_options ho = {.listen = "127.0.0.1:0",
                                 .threads = 2,
                                 .connection_timeout_s = 10,
                                 .max_body_bytes = max_body ? max_body : DEFAULT_MAX_BODY,
                                 .log = &t->log};
    bool made = false;
    lp_status st = lp_service_open(&t->svc, &so, &err);
    if (!st)
        ho.metrics = lp_service_metrics(t->svc);
    if (!st)
        st = lp_service_bootstrap(t->svc, "default", &made, &err);
    if (!st)
        st = lp_http_server_new(&t->srv, &ho, &err);
    if (!st)
        st = lp_http_add_repo_routes(t->srv, t->dir, &err);
    if (!st)
        st = lp_api_add_routes(t->srv, t->svc, &err);
    if (!st)
        st = lp_http_server_start(t->srv, &err);
    if (!st && o->delta_worker)
        st = lp_delta_worker_start(t->svc, &t->worker, &err);
    if (st) {
        fprintf(stderr, "apitest: start: %s\n", err.msg);
        return -1;
    }
    snprintf(t->base, sizeof t->base, "%s", lp_http_server_url(t->srv));
    if (!first)
        return 0;
    char *path = lp_test_join(t->dir, "admin.token");
    uint8_t *text = path ? lp_test_read_file(path, NULL) : NULL;
    free(path);
    if (!made || !text || strlen((char *)text) < LP_TOKEN_TEXT_LEN) {
        fprintf(stderr, "apitest: start: no admin token written\n");
        free(text);
        return -1;
    }
    memcpy(t->admin, text, LP_TOKEN_TEXT_LEN);
    t->admin[LP_TOKEN_TEXT_LEN] = '\0';
    free(text);
    return 0;
}

/* Stops what open_server started, keeping the data folder. */
static void close_server(lp_apitest *t)
{
    lp_delta_worker_stop(t->worker);
    t->worker = NULL;
    if (t->srv)
        lp_http_server_shutdown(t->srv, 5000, NULL);
    lp_http_server_free(t->srv);
    t->srv = NULL;
    lp_service_close(t->svc);
    t->svc = NULL;
}

lp_apitest *lp_apitest_start_with(const lp_apitest_opts *o)
{
    lp_apitest_opts none = {0};
    if (!o)
        o = &none;
    lp_apitest *t = calloc(1, sizeof *t);
    if (!t || !(t->dir = lp_test_tmpdir("api"))) {
        free(t);
        return NULL;
    }
    if (lp_testdb_is_pg() && !(t->tdb = lp_testdb_new(t->dir, "livepush.db"))) {
        lp_apitest_stop(t);
        return NULL;
    }
    if (!(t->log_file = tmpfile())) {
        lp_apitest_stop(t);
        return NULL;
    }
    t->log = (lp_log){.out = t->log_file, .format = LP_LOG_JSON, .min_level = LP_LOG_DEBUG};
    if (open_server(t, o, true) != 0) {
        lp_apitest_stop(t);
        return NULL;
    }
    return t;
}

int lp_apitest_restart(lp_apitest *t, const lp_apitest_opts *o)
{
    lp_apitest_opts none = {0};
    close_server(t);
    return open_server(t, o ? o : &none, false);
}

void lp_apitest_stop(lp_apitest *t)
{
    if (!t)
        return;
    close_server(t);
    if (t->log_file)
        fclose(t->log_file);
    lp_testdb_free(t->tdb);
    if (t->dir)
        lp_test_rmtree(t->dir);
    free(t->dir);
    free(t);
}

char *lp_apitest_log_text(lp_apitest *t)
{
    fflush(t->log_file);
    long end = ftell(t->log_file);
    char *text = end >= 0 ? malloc((size_t)end + 1) : NULL;
    if (!text)
        return NULL;
    rewind(t->log_file);
    size_t n = fread(text, 1, (size_t)end, t->log_file);
    text[n] = '\0';
    fseek(t->log_file, 0, SEEK_END);
    return text;
}

/* ---- requests ---------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    lp_apiresp *r = ud;
    size_t add = size * n;
    char *grown = realloc(r->body, r->len + add + 1);
    if (!grown)
        return 0;
    memcpy(grown + r->len, p, add);
    r->body = grown;
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static void copy_header(const char *line, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (len <= nl + 1 || strncasecmp(line, name, nl) || line[nl] != ':')
        return;
    const char *v = line + nl + 1;
    size_t vl = len - nl - 1;
    while (vl && *v == ' ')
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
        vl--;
    snprintf(out, cap, "%.*s", (int)vl, v);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    lp_apiresp *r = ud;
    size_t len = size * n;
    copy_header(p, len, "WWW-Authenticate", r->www_auth, sizeof r->www_auth);
    copy_header(p, len, "ETag", r->etag, sizeof r->etag);
    copy_header(p, len, "Cache-Control", r->cache, sizeof r->cache);
    copy_header(p, len, "Content-Range", r->content_range, sizeof r->content_range);
    copy_header(p, len, "Content-Type", r->ctype, sizeof r->ctype);
    copy_header(p, len, "Location", r->location, sizeof r->location);
    copy_header(p, len, "Content-Security-Policy", r->csp, sizeof r->csp);
    copy_header(p, len, "X-Content-Type-Options", r->nosniff, sizeof r->nosniff);
    copy_header(p, len, "Referrer-Policy", r->referrer, sizeof r->referrer);
    return len;
}

int lp_apitest_call(lp_apitest *t, const char *method, const char *path, const char *token,
                    const char *auth_raw, const char *const *extra, const void *body, size_t len,
                    lp_apiresp *r)
{
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char url[1024], auth[1200];
    snprintf(url, sizeof url, "%s%s", t->base, path);
    /* no "Expect: 100-continue" unless the test asks for it */
    bool expect = false;
    for (size_t i = 0; extra && extra[i]; i++)
        expect |= !strncasecmp(extra[i], "Expect:", 7);
    struct curl_slist *hdrs = expect ? NULL : curl_slist_append(NULL, "Expect:");
    if (auth_raw || token) {
        snprintf(auth, sizeof auth, "Authorization: %s%s", auth_raw ? "" : "Bearer ",
                 auth_raw ? auth_raw : token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    for (size_t i = 0; extra && extra[i]; i++)
        hdrs = curl_slist_append(hdrs, extra[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        fprintf(stderr, "apitest: %s %s: %s\n", method, path, curl_easy_strerror(rc));
        return -1;
    }
    if (r->body)
        r->json = json_loadb(r->body, r->len, 0, NULL);
    return 0;
}

void lp_apiresp_free(lp_apiresp *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

const char *lp_apiresp_code(const lp_apiresp *r)
{
    const char *s = json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
    return s ? s : "";
}

const char *lp_apiresp_message(const lp_apiresp *r)
{
    const char *s =
        json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
    return s ? s : "";
}

json_t *lp_apitest_json(lp_apitest *t, const char *method, const char *path, const char *token,
                        const char *json_text, long expect)
{
    lp_apiresp r;
    static const char *const ct[] = {"Content-Type: application/json", NULL};
    if (lp_apitest_call(t, method, path, token, NULL, ct, json_text,
                        json_text ? strlen(json_text) : 0, &r))
        return NULL;
    if (r.status != expect || !r.json) {
        fprintf(stderr, "apitest: %s %s: HTTP %ld (expected %ld): %s\n", method, path, r.status,
                expect, r.body ? r.body : "");
        lp_apiresp_free(&r);
        return NULL;
    }
    json_t *j = json_incref(r.json);
    lp_apiresp_free(&r);
    return j;
}

int lp_apitest_token(lp_apitest *t, const char *name, const char *scopes,
                     char out[LP_TOKEN_TEXT_SIZE], char id_out[LP_TOKEN_ID_LEN + 1])
{
    json_t *arr = json_array();
    char *copy = strdup(scopes);
    for (char *save = NULL, *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save))
        json_array_append_new(arr, json_string(s));
    free(copy);
    json_t *req = json_pack("{s:s,s:o}", "name", name, "scopes", arr);
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    json_t *res = lp_apitest_json(t, "POST", "/api/v1/tokens", t->admin, text, 201);
    free(text);
    const char *secret = json_string_value(json_object_get(res, "secret"));
    const char *id = json_string_value(json_object_get(json_object_get(res, "token"), "id"));
    int rc = -1;
    if (secret && id && strlen(secret) == LP_TOKEN_TEXT_LEN && strlen(id) == LP_TOKEN_ID_LEN) {
        memcpy(out, secret, LP_TOKEN_TEXT_SIZE);
        if (id_out)
            memcpy(id_out, id, LP_TOKEN_ID_LEN + 1);
        rc = 0;
    }
    json_decref(res);
    return rc;
}

long lp_apitest_put(lp_apitest *t, const char *token, const char *id, const uint8_t *data,
                    size_t start, size_t n, size_t total, lp_apiresp *r)
{
    char path[128], range[128];
    snprintf(path, sizeof path, "/api/v1/uploads/%s", id);
    snprintf(range, sizeof range, "Content-Range: bytes %zu-%zu/%zu", start, start + n - 1,
             total);
    const char *const hdrs[] = {range, "Content-Type: application/octet-stream", NULL};
    lp_apiresp tmp;
    lp_apiresp *rr = r ? r : &tmp;
    if (lp_apitest_call(t, "PUT", path, token, NULL, hdrs, data + start, n, rr))
        return -1;
    long status = rr->status;
    if (!r)
        lp_apiresp_free(&tmp);
    return status;
}

int lp_apitest_upload(lp_apitest *t, const char *token, const char *app, const void *data,
                      size_t len, size_t chunk, int with_sha, char *id_out)
{
    char path[256], req[256], hex[2 * LP_SHA256_LEN + 1] = "";
    uint8_t md[LP_HASH_MAX_LEN];
    if (with_sha) {
        if (lp_hash_buf(LP_HASH_SHA256, data, len, md, NULL))
            return -1;
        lp_hex_encode(md, LP_SHA256_LEN, hex);
        snprintf(req, sizeof req, "{\"size\":%zu,\"sha256\":\"%s\"}", len, hex);
    } else {
        snprintf(req, sizeof req, "{\"size\":%zu}", len);
    }
    snprintf(path, sizeof path, "/api/v1/apps/%s/uploads", app);
    json_t *res = lp_apitest_json(t, "POST", path, token, req, 201);
    const char *id = json_string_value(json_object_get(json_object_get(res, "upload"), "id"));
    if (!id) {
        json_decref(res);
        return -1;
    }
    snprintf(id_out, 64, "%s", id);
    json_decref(res);
    for (size_t off = 0; chunk && off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        long st = lp_apitest_put(t, token, id_out, data, off, n, len, NULL);
        if (st != 200) {
            fprintf(stderr, "apitest: PUT chunk at %zu: HTTP %ld\n", off, st);
            return -1;
        }
    }
    return 0;
}
