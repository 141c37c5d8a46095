/*
 * test_supervise.c — the supervisor of `livepush run` (swap/supervise.h):
 * the parsers of --listen addresses and notify messages, the sockets it
 * opens, and whole runs of a real supervisor (in a forked process, as the
 * command runs it) over a real install root with small python3 apps:
 *
 *   - what a process gets: LISTEN_FDS, LISTEN_PID equal to its own pid,
 *     LISTEN_FDNAMES, the listening sockets as fds 3.. (bound to the
 *     addresses printed), no other descriptor of the supervisor, an empty
 *     signal mask, its own process group, the release folder as working
 *     folder, the LIVEPUSH_* variables, the command found in PATH; and its
 *     exit status on SIGTERM becomes the supervisor's;
 *   - a process that ignores SIGTERM is killed at the stop timeout (137);
 *   - READY=1 is believed from a process of the app's process group, and
 *     not from any other process;
 *   - a process that exits before it is ready, with nothing else serving,
 *     is started again after a back-off that doubles;
 *   - a new release whose command is missing is given up while the old
 *     process serves, and rolled back.
 *
 * The end-to-end test tests/e2e/run_restart.sh runs the command with the
 * example service under load.
 */
#include "agenttest.h"
#include "testutil.h"

#include "swap/supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

/* ---- parsers ---------------------------------------------------------------- */

static void check_listen(const char *spec, int family, const char *name, const char *shown)
{
    lp_sup_listen l;
    lp_error err;
    lp_error_clear(&err);
    assert_int_equal(lp_sup_listen_parse(spec, &l, &err), LP_OK);
    assert_int_equal(l.family, family);
    assert_string_equal(l.name, name);
    char out[256];
    lp_sup_address_format((const struct sockaddr *)&l.addr, l.addr_len, out, sizeof out);
    assert_string_equal(out, shown);
}

static void test_listen_parse(void **state)
{
    (void)state;
    check_listen("127.0.0.1:8080", AF_INET, "unknown", "127.0.0.1:8080");
    check_listen("web=0.0.0.0:0", AF_INET, "web", "0.0.0.0:0");
    check_listen("[::1]:443", AF_INET6, "unknown", "[::1]:443");
    check_listen("admin.v2=[::]:65535", AF_INET6, "admin.v2", "[::]:65535");
    check_listen("unix:/run/app.sock", AF_UNIX, "unknown", "unix:/run/app.sock");
    check_listen("/run/app.sock", AF_UNIX, "unknown", "unix:/run/app.sock");
    check_listen("api=/tmp/a=b.sock", AF_UNIX, "api", "unix:/tmp/a=b.sock");
    /* text before '=' that cannot be a name is part of the address */
    check_listen("/tmp/x=1", AF_UNIX, "unknown", "unix:/tmp/x=1");

    char longpath[200], longname[100];
    memset(longpath, 'p', sizeof longpath);
    memcpy(longpath, "unix:/", 6);
    longpath[sizeof longpath - 1] = '\0';
    memset(longname, 'n', 65);
    snprintf(longname + 65, sizeof longname - 65, "=127.0.0.1:1");
    const char *bad[] = {"",
                         "8080",
                         "localhost:80",
                         "127.0.0.1:",
                         "127.0.0.1:65536",
                         "127.0.0.1:-1",
                         "127.0.0.1:+1",
                         "127.0.0.1:8o",
                         "127.0.0.1:123456",
                         "::1:80",
                         "[::1]80",
                         "[]:80",
                         "[example]:80",
                         "[127.0.0.1]:80",
                         "unix:relative.sock",
                         "unix:",
                         "=127.0.0.1:80",
                         "a:b=127.0.0.1:80",
                         longpath,
                         longname};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lp_sup_listen l;
        lp_error err;
        lp_error_clear(&err);
        if (lp_sup_listen_parse(bad[i], &l, &err) != LP_ERR_INVALID_ARG)
            fail_msg("'%s' was accepted", bad[i]);
        assert_non_null(strstr(err.msg, "listen address"));
    }
}

static void test_notice_parse(void **state)
{
    (void)state;
    lp_sup_notice n;
    lp_error err;
    assert_int_equal(lp_sup_notice_parse("READY=1", 7, &n, &err), LP_OK);
    assert_true(n.ready);
    assert_false(n.stopping);
    assert_false(n.has_status);

    const char *m = "MAINPID=12\nREADY=1\n\nSTATUS=warming\tup \x01\xc3\xa9\nWATCHDOG=1\n";
    assert_int_equal(lp_sup_notice_parse(m, strlen(m), &n, &err), LP_OK);
    assert_true(n.ready);
    assert_true(n.has_status);
    assert_string_equal(n.status, "warming up    ");

    m = "READY=0\nSTOPPING=1";
    assert_int_equal(lp_sup_notice_parse(m, strlen(m), &n, &err), LP_OK);
    assert_false(n.ready);
    assert_true(n.stopping);
    m = "READY=11\nREADY";
    assert_int_equal(lp_sup_notice_parse(m, 8, &n, &err), LP_OK);
    assert_false(n.ready);

    char big[LP_SUP_MAX_NOTIFY + 1];
    memset(big, 'a', sizeof big);
    memcpy(big, "STATUS=", 7);
    assert_int_equal(lp_sup_notice_parse(big, LP_SUP_MAX_NOTIFY, &n, &err), LP_OK);
    assert_int_equal(strlen(n.status), LP_SUP_MAX_STATUS);
    assert_int_equal(lp_sup_notice_parse(big, sizeof big, &n, &err), LP_ERR_TOO_LARGE);

    assert_int_equal(lp_sup_notice_parse("", 0, &n, &err), LP_ERR_MALFORMED);
    assert_int_equal(lp_sup_notice_parse("READY", 5, &n, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "line 1"));
    assert_int_equal(lp_sup_notice_parse("READY=1\n=1", 10, &n, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "line 2"));
    assert_int_equal(lp_sup_notice_parse("READY=1\0", 8, &n, &err), LP_ERR_MALFORMED);
}

/* ---- an install root with releases of python3 apps ------------------------------- */

typedef struct fixture {
    char *dir, *root, *log, *report;
    pid_t sup; /* a supervisor still running (stopped by teardown after a failure) */
    lp_blobstore *bs;
    agt_source src;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = lp_test_tmpdir("supervise");
    f->root = lp_test_join(f->dir, "root");
    f->log = lp_test_join(f->dir, "run.log");
    f->report = lp_test_join(f->dir, "report.json");
    char *blobs = lp_test_join(f->dir, "blobs");
    lp_error err;
    int rc = f->dir && lp_blobstore_open(blobs, &f->bs, &err) == LP_OK ? 0 : -1;
    free(blobs);
    f->src.bs = f->bs;
    *state = f;
    return rc;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->sup > 0) {
        /* a test failed with its supervisor running: stop it (and so its
         * processes), killing it if it does not end */
        kill(f->sup, SIGTERM);
        int i = 0;
        while (waitpid(f->sup, NULL, WNOHANG) == 0 && i++ < 100) {
            struct timespec ts = {0, 50000000};
            nanosleep(&ts, NULL);
        }
        if (i > 100) {
            kill(f->sup, SIGKILL);
            waitpid(f->sup, NULL, 0);
        }
    }
    lp_blobstore_close(f->bs);
    lp_test_rmtree(f->dir);
    free(f->dir);
    free(f->root);
    free(f->log);
    free(f->report);
    free(f);
    return 0;
}

static lp_device *open_device(const fixture *f)
{
    lp_device_config dc = {.updater = agt_config(f->root)};
    lp_device *d = NULL;
    lp_error err;
    if (lp_device_open(&dc, &d, &err) != LP_OK)
        fail_msg("lp_device_open: %s", err.msg);
    return d;
}

/* Installs release `id` holding `app.py` (executable) with `script`; NULL
 * script: a release without it. */
static void install(fixture *f, uint64_t id, const char *script)
{
    char version[16];
    snprintf(version, sizeof version, "v%llu", (unsigned long long)id);
    agt_entry with[] = {{"app.py", script, 0755, NULL}, {"VERSION", version, 0644, NULL}};
    agt_entry without[] = {{"VERSION", version, 0644, NULL}};
    lp_manifest m;
    assert_int_equal(script ? agt_make_release(f->bs, with, 2, &m)
                            : agt_make_release(f->bs, without, 1, &m),
                     0);
    lp_device *d = open_device(f);
    assert_int_equal(agt_install(lp_device_updater(d), &m, id, version, &f->src), 0);
    lp_device_close(d);
    lp_manifest_free(&m);
}

static void mark_healthy(fixture *f)
{
    lp_device *d = open_device(f);
    lp_error err;
    assert_int_equal(lp_device_mark_healthy(d, 0, &err), LP_OK);
    lp_device_close(d);
}

/* The notify function every app starts with. */
#define PY_PRELUDE                                                                      \
    "#!/usr/bin/env python3\n"                                                          \
    "import json, os, signal, socket, sys, time\n"                                      \
    "def notify(m):\n"                                                                  \
    "    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"                        \
    "    s.sendto(m.encode(), os.environ['NOTIFY_SOCKET'])\n"                           \
    "    s.close()\n"                                                                   \
    "def report(d):\n"                                                                  \
    "    p = os.environ['LP_TEST_REPORT']\n"                                            \
    "    open(p + '.tmp', 'w').write(json.dumps(d))\n"                                  \
    "    os.rename(p + '.tmp', p)\n"

/* Runs a supervisor in a forked process (log in f->log); returns its pid. */
static pid_t start_supervisor(fixture *f, char *const *argv, const char *const *listen,
                              size_t nlisten, uint32_t stop_timeout_ms, uint32_t restart_ms)
{
    setenv("LP_TEST_REPORT", f->report, 1);
    unlink(f->report);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0)
        return f->sup = pid;
    FILE *out = fopen(f->log, "w");
    lp_log log = {.out = out, .format = LP_LOG_JSON, .min_level = LP_LOG_DEBUG};
    lp_device *d = open_device(f);
    lp_sup_config cfg = {.device = d,
                         .argv = argv,
                         .path = getenv("PATH"),
                         .listen = listen,
                         .listen_count = nlisten,
                         .runtime_dir = f->dir,
                         .ready_timeout_ms = 10000,
                         .stop_timeout_ms = stop_timeout_ms,
                         .poll_interval_ms = 200,
                         .restart_delay_ms = restart_ms,
                         .restart_delay_max_ms = 8 * restart_ms,
                         .log = &log};
    lp_sup *s = NULL;
    lp_error err;
    int code = 1;
    if (lp_sup_open(&cfg, &s, &err) == LP_OK) {
        if (lp_sup_run(s, &code, &err) != LP_OK)
            fprintf(out, "run failed: %s\n", err.msg);
    } else {
        fprintf(out, "open failed: %s\n", err.msg);
    }
    lp_sup_close(s);
    lp_device_close(d);
    fclose(out);
    _exit(code);
}

/* Lines of the supervisor's log with msg (and, if key is set, key == val). */
static json_t *log_lines(const fixture *f, const char *msg, const char *key, json_int_t val)
{
    json_t *out = json_array();
    FILE *in = fopen(f->log, "r");
    char line[8192];
    while (in && fgets(line, sizeof line, in)) {
        json_t *j = json_loads(line, 0, NULL);
        const char *m = j ? json_string_value(json_object_get(j, "msg")) : NULL;
        if (m && !strcmp(m, msg) &&
            (!key || json_integer_value(json_object_get(j, key)) == val))
            json_array_append(out, j);
        json_decref(j);
    }
    if (in)
        fclose(in);
    return out;
}

/* Waits (10 s at most) for n log lines with msg; returns the last one. */
static json_t *wait_log(const fixture *f, size_t n, const char *msg)
{
    for (int i = 0; i < 200; i++) {
        json_t *a = log_lines(f, msg, NULL, 0);
        if (json_array_size(a) >= n) {
            json_t *last = json_incref(json_array_get(a, json_array_size(a) - 1));
            json_decref(a);
            return last;
        }
        json_decref(a);
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    char *text = (char *)lp_test_read_file(f->log, NULL);
    fail_msg("no %zu '%s' lines in the log:\n%s", n, msg, text ? text : "(none)");
    return NULL;
}

static json_t *wait_report(const fixture *f)
{
    for (int i = 0; i < 200; i++) {
        json_t *j = json_load_file(f->report, 0, NULL);
        if (j)
            return j;
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    fail_msg("the app wrote no report");
    return NULL;
}

static int wait_exit(fixture *f, int max_s)
{
    pid_t pid = f->sup;
    for (int i = 0; i < max_s * 20; i++) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            f->sup = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    fail_msg("the supervisor did not exit within %d s", max_s);
    return -1;
}

/* ---- sockets -------------------------------------------------------------------- */

static void test_open_sockets(void **state)
{
    fixture *f = *state;
    install(f, 1, PY_PRELUDE);
    lp_device *d = open_device(f);
    char *const argv[] = {"./app.py", NULL};
    char *sock = lp_test_join(f->dir, "s.sock"), unix_spec[300];
    snprintf(unix_spec, sizeof unix_spec, "admin=unix:%s", sock);
    const char *listen[] = {"127.0.0.1:0", unix_spec};
    lp_log log = {0};
    lp_sup_config cfg = {.device = d, .argv = argv, .listen = listen, .listen_count = 2,
                         .runtime_dir = f->dir, .log = &log};
    lp_sup *s;
    lp_error err;

    /* a socket file left by a process that is gone is replaced */
    int old = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", sock);
    assert_int_equal(bind(old, (struct sockaddr *)&un, sizeof un), 0);
    close(old);
    assert_int_equal(lp_sup_open(&cfg, &s, &err), LP_OK);
    assert_int_equal(lp_sup_listen_count(s), 2);
    const char *a0 = lp_sup_listen_address(s, 0);
    assert_true(!strncmp(a0, "127.0.0.1:", 10) && strcmp(a0, "127.0.0.1:0") != 0);
    char shown[320];
    snprintf(shown, sizeof shown, "unix:%s", sock);
    assert_string_equal(lp_sup_listen_address(s, 1), shown);
    /* both accept connections (into their queue: nothing runs yet) */
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)atoi(a0 + 10))};
    int c = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&in, sizeof in), 0);
    close(c);
    c = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&un, sizeof un), 0);
    close(c);
    /* the notify socket, in a folder of its own only we can enter */
    struct stat st;
    assert_int_equal(stat(lp_sup_notify_path(s), &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    char *nd = strdup(lp_sup_notify_path(s));
    *strrchr(nd, '/') = '\0';
    assert_int_equal(stat(nd, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    /* a socket that answers is not taken over */
    lp_sup *s2;
    const char *listen_unix[] = {unix_spec};
    lp_sup_config c2 = cfg;
    c2.listen = listen_unix;
    c2.listen_count = 1;
    assert_int_equal(lp_sup_open(&c2, &s2, &err), LP_ERR_IO);
    assert_non_null(strstr(err.msg, "another process listens"));
    /* nor a port in use */
    const char *listen_same[] = {a0};
    c2.listen = listen_same;
    assert_int_equal(lp_sup_open(&c2, &s2, &err), LP_ERR_IO);
    assert_non_null(strstr(err.msg, a0));

    /* closing removes the socket file and the notify folder */
    lp_sup_close(s);
    assert_int_not_equal(lstat(sock, &st), 0);
    assert_int_not_equal(stat(nd, &st), 0);
    free(nd);

    /* a path that is not a socket; an address given twice; too many; no
     * command; a runtime folder too long for a socket path */
    assert_int_equal(lp_test_write_str(sock, "not a socket"), 0);
    c2.listen = listen_unix;
    assert_int_equal(lp_sup_open(&c2, &s2, &err), LP_ERR_IO);
    assert_non_null(strstr(err.msg, "exists and is not a socket"));
    const char *twice[] = {"127.0.0.1:0", "127.0.0.1:0"};
    c2.listen = twice;
    c2.listen_count = 2;
    assert_int_equal(lp_sup_open(&c2, &s2, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "given twice"));
    c2.listen_count = LP_SUP_MAX_LISTEN + 1;
    assert_int_equal(lp_sup_open(&c2, &s2, &err), LP_ERR_INVALID_ARG);
    c2.listen_count = 0;
    char *const none[] = {NULL};
    c2.argv = none;
    assert_int_equal(lp_sup_open(&c2, &s2, &err), LP_ERR_INVALID_ARG);
    c2.argv = argv;
    char deep[200];
    memset(deep, 'd', sizeof deep);
    deep[0] = '/';
    deep[sizeof deep - 1] = '\0';
    c2.runtime_dir = deep;
    assert_int_not_equal(lp_sup_open(&c2, &s2, &err), LP_OK);
    free(sock);
    lp_device_close(d);
}

/* ---- runs ---------------------------------------------------------------------------- */

static void test_run_environment(void **state)
{
    fixture *f = *state;
    install(f, 1, PY_PRELUDE
            "n = int(os.environ['LISTEN_FDS'])\n"
            "socks = []\n"
            "for fd in range(3, 3 + n):\n"
            "    s = socket.socket(fileno=fd)\n"
            "    socks.append([str(s.getsockname()),\n"
            "                  s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)])\n"
            "    s.detach()\n"
            "extra = []\n"
            "for x in os.listdir('/proc/self/fd'):\n"
            "    if int(x) >= 3 + n:\n"
            "        try: extra.append(os.readlink('/proc/self/fd/' + x))\n"
            "        except OSError: pass\n"
            "st = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines()\n"
            "          if ':\\t' in l)\n"
            "def on_term(sig, frame):\n"
            "    sys.exit(7)\n"
            "signal.signal(signal.SIGTERM, on_term)\n"
            "report({'pid': os.getpid(), 'listen_pid': os.environ.get('LISTEN_PID'),\n"
            "        'fds': n, 'names': os.environ.get('LISTEN_FDNAMES'), 'socks': socks,\n"
            "        'extra': extra, 'cwd': os.getcwd(), 'pgid': os.getpgid(0),\n"
            "        'sigblk': st['SigBlk'].strip(), 'sigign': st['SigIgn'].strip(),\n"
            "        'release': os.environ.get('LIVEPUSH_RELEASE_ID'),\n"
            "        'version': os.environ.get('LIVEPUSH_RELEASE_VERSION'),\n"
            "        'root': os.environ.get('LIVEPUSH_INSTALL_ROOT')})\n"
            "notify('READY=1\\nSTATUS=up')\n"
            "while True: time.sleep(1)\n");
    char *sock = lp_test_join(f->dir, "e.sock"), unix_spec[300];
    snprintf(unix_spec, sizeof unix_spec, "admin=%s", sock);
    const char *listen[] = {"web=127.0.0.1:0", unix_spec};
    /* the command found through PATH, its script relative to the release */
    char *const argv[] = {"python3", "app.py", NULL};
    pid_t sup = start_supervisor(f, argv, listen, 2, 5000, 1000);
    json_t *r = wait_report(f);
    json_t *ready = wait_log(f, 1, "ready");
    json_t *started = wait_log(f, 1, "supervisor started");
    json_int_t pid = json_integer_value(json_object_get(r, "pid"));
    assert_int_equal(json_integer_value(json_object_get(ready, "pid")), pid);
    char pids[32];
    snprintf(pids, sizeof pids, "%lld", (long long)pid);
    assert_string_equal(json_string_value(json_object_get(r, "listen_pid")), pids);
    assert_int_equal(json_integer_value(json_object_get(r, "fds")), 2);
    assert_string_equal(json_string_value(json_object_get(r, "names")), "web:admin");
    assert_int_equal(json_integer_value(json_object_get(r, "pgid")), pid);
    assert_string_equal(json_string_value(json_object_get(r, "sigblk")), "0000000000000000");
    assert_int_equal(json_array_size(json_object_get(r, "extra")), 0);
    char *rel = lp_test_join(f->root, "releases/1");
    char real[4096];
    assert_non_null(realpath(rel, real));
    assert_string_equal(json_string_value(json_object_get(r, "cwd")), real);
    assert_string_equal(json_string_value(json_object_get(r, "release")), "1");
    assert_string_equal(json_string_value(json_object_get(r, "version")), "v1");
    /* fd 3 is bound where the log says, fd 4 is the unix socket; both listen */
    json_t *socks = json_object_get(r, "socks");
    const char *addr = json_string_value(json_object_get(
        json_array_get(json_object_get(started, "listen"), 0), "address"));
    char want[64];
    snprintf(want, sizeof want, "('127.0.0.1', %s)", strchr(addr, ':') + 1);
    assert_string_equal(json_string_value(json_array_get(json_array_get(socks, 0), 0)), want);
    assert_string_equal(json_string_value(json_array_get(json_array_get(socks, 1), 0)), sock);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(socks, 0), 1)), 1);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(socks, 1), 1)), 1);
    /* its exit status on SIGTERM is the supervisor's */
    kill(sup, SIGTERM);
    assert_int_equal(wait_exit(f, 10), 7);
    json_t *stopped = wait_log(f, 1, "stopped");
    assert_string_equal(json_string_value(json_object_get(stopped, "how")),
                        "exited with status 7");
    json_decref(stopped);
    json_decref(r);
    json_decref(ready);
    json_decref(started);
    free(rel);
    free(sock);
}

static void test_run_stop_timeout(void **state)
{
    fixture *f = *state;
    install(f, 1, PY_PRELUDE "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                             "notify('READY=1')\n"
                             "while True: time.sleep(1)\n");
    const char *listen[] = {"127.0.0.1:0"};
    char *const argv[] = {"./app.py", NULL};
    pid_t sup = start_supervisor(f, argv, listen, 1, 500, 1000);
    json_decref(wait_log(f, 1, "ready"));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kill(sup, SIGTERM);
    assert_int_equal(wait_exit(f, 10), 128 + SIGKILL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(s >= 0.45 && s < 5.0);
    json_decref(wait_log(f, 1, "killed"));
}

static void test_run_ready_from_group(void **state)
{
    fixture *f = *state;
    /* the app is ready only after 1 s, and says so from a child process
     * (which stays a while: a sender already gone cannot be placed) */
    install(f, 1, PY_PRELUDE "time.sleep(1.0)\n"
                             "if os.fork() == 0:\n"
                             "    notify('READY=1')\n"
                             "    time.sleep(2)\n"
                             "    os._exit(0)\n"
                             "report({'pid': os.getpid()})\n"
                             "signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))\n"
                             "while True: time.sleep(1)\n");
    const char *listen[] = {"127.0.0.1:0"};
    char *const argv[] = {"./app.py", NULL};
    pid_t sup = start_supervisor(f, argv, listen, 1, 5000, 1000);
    json_t *started = wait_log(f, 1, "supervisor started");
    json_decref(wait_log(f, 1, "starting"));
    /* READY=1 from a process that is not the app's: not believed */
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s",
             json_string_value(json_object_get(started, "notify_socket")));
    assert_int_equal(sendto(fd, "READY=1", 7, 0, (struct sockaddr *)&un, sizeof un), 7);
    close(fd);
    json_t *dropped = wait_log(f, 1, "notify dropped");
    assert_int_equal(json_integer_value(json_object_get(dropped, "sender")), getpid());
    json_t *ready = wait_log(f, 1, "ready");
    assert_true(json_integer_value(json_object_get(ready, "ready_ms")) >= 900);
    json_t *r = wait_report(f);
    assert_int_equal(json_integer_value(json_object_get(ready, "pid")),
                     json_integer_value(json_object_get(r, "pid")));
    kill(sup, SIGTERM);
    assert_int_equal(wait_exit(f, 10), 0);
    json_decref(started);
    json_decref(dropped);
    json_decref(ready);
    json_decref(r);
}

static void test_run_restart_backoff(void **state)
{
    fixture *f = *state;
    install(f, 1, PY_PRELUDE "sys.exit(3)\n");
    const char *listen[] = {"127.0.0.1:0"};
    char *const argv[] = {"./app.py", NULL};
    pid_t sup = start_supervisor(f, argv, listen, 1, 5000, 200);
    json_decref(wait_log(f, 4, "starting"));
    kill(sup, SIGTERM);
    /* the last process's status: 3, or SIGTERM's if one was starting */
    int code = wait_exit(f, 10);
    assert_true(code == 3 || code == 128 + SIGTERM);
    /* the waits double: 200, 400, 800 ms */
    json_t *sched = log_lines(f, "restart scheduled", NULL, 0);
    assert_true(json_array_size(sched) >= 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(sched, i), "delay_ms")),
                         200 << i);
    json_t *failed = log_lines(f, "start failed", NULL, 0);
    assert_true(json_array_size(failed) >= 3);
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(failed, 0), "reason")),
                           "exited with status 3 before it was ready"));
    json_t *starts = log_lines(f, "starting", NULL, 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(starts, 0), "why")),
                        "start");
    assert_string_equal(json_string_value(json_object_get(json_array_get(starts, 1), "why")),
                        "restart after exit");
    json_decref(sched);
    json_decref(failed);
    json_decref(starts);
}

static void test_run_missing_command_rolled_back(void **state)
{
    fixture *f = *state;
    const char *app = PY_PRELUDE "notify('READY=1')\n"
                                 "signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))\n"
                                 "while True: time.sleep(1)\n";
    install(f, 1, app);
    const char *listen[] = {"127.0.0.1:0"};
    char *const argv[] = {"./app.py", NULL};
    pid_t sup = start_supervisor(f, argv, listen, 1, 5000, 1000);
    json_t *first = wait_log(f, 1, "ready");
    /* release 2 has no app.py: given up at once, rolled back to 1 */
    install(f, 2, NULL);
    json_t *rb = wait_log(f, 1, "rolled back");
    assert_int_equal(json_integer_value(json_object_get(rb, "from")), 2);
    assert_int_equal(json_integer_value(json_object_get(rb, "to")), 1);
    assert_non_null(strstr(json_string_value(json_object_get(rb, "reason")),
                           "release 2 could not be started: cannot run"));
    lp_device *d = open_device(f);
    lp_updater_status st;
    lp_error err;
    assert_int_equal(lp_updater_status_get(lp_device_updater(d), &st, &err), LP_OK);
    assert_int_equal(st.current, 1);
    assert_int_equal(st.bad_count, 1);
    assert_int_equal(st.bad[0].id, 2);
    lp_updater_status_free(&st);
    lp_device_close(d);
    /* the first process still serves: one "ready" only, nothing retired */
    json_t *readies = log_lines(f, "ready", NULL, 0);
    assert_int_equal(json_array_size(readies), 1);
    json_t *retired = log_lines(f, "retired", NULL, 0);
    assert_int_equal(json_array_size(retired), 0);
    /* release 3 works: it replaces release 1's process */
    mark_healthy(f);
    install(f, 3, app);
    json_t *ready3 = wait_log(f, 2, "ready");
    assert_int_equal(json_integer_value(json_object_get(ready3, "release")), 3);
    json_t *gone = wait_log(f, 1, "retired");
    assert_int_equal(json_integer_value(json_object_get(gone, "pid")),
                     json_integer_value(json_object_get(first, "pid")));
    kill(sup, SIGTERM);
    assert_int_equal(wait_exit(f, 10), 0);
    json_decref(first);
    json_decref(rb);
    json_decref(readies);
    json_decref(retired);
    json_decref(ready3);
    json_decref(gone);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_parse),
        cmocka_unit_test(test_notice_parse),
        cmocka_unit_test_setup_teardown(test_open_sockets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_stop_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_ready_from_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_restart_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_missing_command_rolled_back, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
