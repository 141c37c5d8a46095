/*
 * cmd_control.c — `livepush control`: the client of a running agent's
 * control API (agent/control.h, docs/agent.md "The control API").
 *
 *   livepush control [--socket PATH | --root DIR | --url URL --token-file F]
 *                    status | check | manifest ID | download |
 *                    apply [--dry-run] | rollback-points |
 *                    rollback [--to ID] [--reason TEXT]
 *
 * Each subcommand is one request to one route, over the agent's unix socket
 * (libcurl's CURLOPT_UNIX_SOCKET_PATH) or, with --url, its loopback HTTP
 * listener with the admin token as a bearer token.  The answer's JSON is
 * printed as is on stdout (a manifest: its exact bytes); an error answer's
 * message goes to stderr.  The socket is --socket, else
 * <root>/.livepush/control.sock with root --root, LIVEPUSH_ROOT or
 * /var/lib/livepush/<LIVEPUSH_APP or "default">.
 *
 * Exit codes: 0 a 2xx answer; 1 no answer (agent not running, socket
 * missing) or a 5xx; 2 usage; 3 HTTP 401/403; 4 any other 4xx.
 */
#include "cli/cli.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_CAP 4096
#define ANSWER_MAX ((size_t)64 << 20)
#define TOKEN_MAX 512

static void usage(FILE *f)
{
    fprintf(f,
            "usage: livepush control [connection] COMMAND\n"
            "\n"
            "Drives a running `livepush agent` through its control API.\n"
            "\n"
            "Commands:\n"
            "  status                      the device: current, previous, probation, releases\n"
            "  check                       ask the server for a release (nothing installed)\n"
            "  manifest ID                 the stored manifest of installed release ID\n"
            "  download                    download, stage and verify the offered release;\n"
            "                              no switch (a dry run of apply)\n"
            "  apply [--dry-run]           install the offered release and switch to it\n"
            "  rollback-points             the installed releases one can go back to\n"
            "  rollback [--to ID] [--reason TEXT]\n"
            "                              switch back (default: to the previous release)\n"
            "\n"
            "Connection:\n"
            "  --socket PATH               the agent's control socket\n"
            "  --root DIR                  use DIR/.livepush/control.sock (default: LIVEPUSH_ROOT,\n"
            "                              else /var/lib/livepush/<LIVEPUSH_APP or default>)\n"
            "  --url URL                   the agent's --control-http listener instead,\n"
            "                              e.g. http://127.0.0.1:7070\n"
            "  --token-file FILE           the admin token for --url\n"
            "\n"
            "The answer (JSON) is printed on stdout.  Exit codes: 0 success, 1 no answer or\n"
            "a server error, 2 usage error, 3 HTTP 401/403, 4 other 4xx (message on stderr).\n");
}

typedef struct answer {
    char *data;
    size_t len;
    bool too_large;
} answer;

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
    answer *a = ctx;
    size_t k = size * n;
    if (k > ANSWER_MAX - a->len) {
        a->too_large = true;
        return 0;
    }
    char *nd = realloc(a->data, a->len + k + 1);
    if (!nd)
        return 0;
    memcpy(nd + a->len, p, k);
    a->data = nd;
    a->len += k;
    a->data[a->len] = '\0';
    return k;
}

/* The token: the first line of the file, without its line end. */
static bool read_token(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = fgets(out, (int)cap, f) != NULL;
    fclose(f);
    if (!ok)
        return false;
    out[strcspn(out, "\r\n")] = '\0';
    return out[0] != '\0';
}

/* Parses a decimal release id (1..20 digits). */
static bool id_arg(const char *s, unsigned long long *out)
{
    if (!*s || strlen(s) > 20 || strspn(s, "0123456789") != strlen(s))
        return false;
    char *end = NULL;
    *out = strtoull(s, &end, 10);
    return *end == '\0' && *out > 0;
}

int lp_cmd_control(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},  {"root", required_argument, NULL, 'R'},
        {"url", required_argument, NULL, 'u'},     {"token-file", required_argument, NULL, 't'},
        {"dry-run", no_argument, NULL, 'd'},       {"to", required_argument, NULL, 'o'},
        {"reason", required_argument, NULL, 'r'},  {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *sock = NULL, *root = NULL, *url = NULL, *token_file = NULL, *to = NULL,
               *reason = NULL;
    bool dry_run = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's': sock = optarg; break;
        case 'R': root = optarg; break;
        case 'u': url = optarg; break;
        case 't': token_file = optarg; break;
        case 'd': dry_run = true; break;
        case 'o': to = optarg; break;
        case 'r': reason = optarg; break;
        case 'h': usage(stdout); return LP_EXIT_OK;
        default: usage(stderr); return LP_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "livepush control: no command\n\n");
        usage(stderr);
        return LP_EXIT_USAGE;
    }
    const char *cmd = argv[optind++];
    const char *method = "GET";
    char path[128];
    json_t *body = NULL;
    int want_args = 0;
    unsigned long long id = 0;
    if (!strcmp(cmd, "status")) {
        snprintf(path, sizeof path, "/v1/status");
    } else if (!strcmp(cmd, "check")) {
        method = "POST";
        snprintf(path, sizeof path, "/v1/check");
    } else if (!strcmp(cmd, "manifest")) {
        want_args = 1;
        if (optind >= argc || !id_arg(argv[optind], &id)) {
            fprintf(stderr, "livepush control manifest: give a release id (a positive number)\n");
            return LP_EXIT_USAGE;
        }
        snprintf(path, sizeof path, "/v1/releases/%llu/manifest", id);
    } else if (!strcmp(cmd, "download")) {
        method = "POST";
        snprintf(path, sizeof path, "/v1/download");
    } else if (!strcmp(cmd, "apply")) {
        method = "POST";
        snprintf(path, sizeof path, "/v1/apply");
        body = json_pack("{s:b}", "dry_run", dry_run);
    } else if (!strcmp(cmd, "rollback-points")) {
        snprintf(path, sizeof path, "/v1/rollback-points");
    } else if (!strcmp(cmd, "rollback")) {
        method = "POST";
        snprintf(path, sizeof path, "/v1/rollback");
        if (to && !id_arg(to, &id)) {
            fprintf(stderr, "livepush control rollback: --to wants a release id\n");
            return LP_EXIT_USAGE;
        }
        body = json_object();
        if (body && to)
            json_object_set_new(body, "to", json_integer((json_int_t)id));
        if (body && reason)
            json_object_set_new(body, "reason", json_string(reason));
    } else {
        fprintf(stderr, "livepush control: unknown command '%s'\n\n", cmd);
        usage(stderr);
        return LP_EXIT_USAGE;
    }
    if (argc - optind != want_args) {
        fprintf(stderr, "livepush control %s: unexpected argument '%s'\n", cmd,
                argv[optind + want_args]);
        json_decref(body);
        return LP_EXIT_USAGE;
    }
    if ((dry_run && strcmp(cmd, "apply")) || ((to || reason) && strcmp(cmd, "rollback"))) {
        fprintf(stderr, "livepush control %s: --dry-run is for apply, --to and --reason for "
                        "rollback\n", cmd);
        json_decref(body);
        return LP_EXIT_USAGE;
    }
    if (url && (sock || root)) {
        fprintf(stderr, "livepush control: --url and --socket/--root exclude each other\n");
        json_decref(body);
        return LP_EXIT_USAGE;
    }
    char token[TOKEN_MAX + 2] = "";
    if (url && (!token_file || !read_token(token_file, token, sizeof token))) {
        fprintf(stderr, "livepush control: --url needs --token-file with the admin token\n");
        json_decref(body);
        return LP_EXIT_USAGE;
    }
    char sock_buf[PATH_CAP];
    if (!url && !sock) {
        const char *env_root = getenv("LIVEPUSH_ROOT"), *app = getenv("LIVEPUSH_APP");
        if (root)
            snprintf(sock_buf, sizeof sock_buf, "%s/.livepush/control.sock", root);
        else if (env_root && *env_root)
            snprintf(sock_buf, sizeof sock_buf, "%s/.livepush/control.sock", env_root);
        else
            snprintf(sock_buf, sizeof sock_buf, "/var/lib/livepush/%s/.livepush/control.sock",
                     app && *app ? app : "default");
        sock = sock_buf;
    }
    char full[PATH_CAP + 256];
    if (url)
        snprintf(full, sizeof full, "%s%s", url, path);
    else
        snprintf(full, sizeof full, "http://localhost%s", path);
    char *body_text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);

    CURL *h = curl_easy_init();
    if (!h) {
        free(body_text);
        fprintf(stderr, "livepush control: cannot start libcurl\n");
        return LP_EXIT_FAIL;
    }
    answer a = {0};
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[TOKEN_MAX + 32];
    if (url) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, full);
    if (!url)
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, sock);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "POST")) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body_text ? body_text : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(body_text ? strlen(body_text) : 0));
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    free(body_text);
    int rc;
    if (cc != CURLE_OK) {
        fprintf(stderr, "livepush control: %s %s via %s: %s%s\n", method, path,
                url ? url : sock, a.too_large ? "answer too large" : curl_easy_strerror(cc),
                url ? "" : " (is the agent running?)");
        rc = LP_EXIT_FAIL;
    } else if (status >= 200 && status < 300) {
        if (a.len)
            fwrite(a.data, 1, a.len, stdout);
        if (strcmp(cmd, "manifest") != 0)
            fputc('\n', stdout);
        rc = LP_EXIT_OK;
    } else {
        json_t *j = a.data ? json_loads(a.data, 0, NULL) : NULL;
        const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        fprintf(stderr, "livepush control: %s %s: HTTP %ld: %s\n", method, path, status,
                msg ? msg : "no error message");
        json_decref(j);
        rc = status == 401 || status == 403 ? 3 : status >= 400 && status < 500 ? 4 : LP_EXIT_FAIL;
    }
    free(a.data);
    return rc;
}
