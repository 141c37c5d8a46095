/*
 * server.c — the example service: a small TCP server built on both of
 * livepush's ways of replacing running code (docs/swap.md, docs/run.md):
 *
 *   - its request handling lives in a module (handler.c, interface
 *     handler.h) loaded into a slot of a live-swap host; when the agent
 *     switches the install to a release whose module changed, the host
 *     loads the new module and swaps it in, in this same process, with no
 *     request lost; a new module that crashes, fails or slows down in its
 *     probation is swapped back at once and the release is reported to the
 *     agent, which rolls the install back and marks it bad;
 *   - when the server binary itself changes, `livepush run` restarts it into
 *     the new release without dropping a connection (the supervisor hands
 *     the listening sockets over; this process drains and exits).
 *
 *   server [--port N] [--reuseport] [--module PATH] [--follow ROOT]
 *          [--no-follow] [--probation-ms N] [--agent-socket PATH]
 *
 * What it shows, in about as little code as it takes:
 *
 *   - sockets from the supervisor: when LISTEN_PID is this process and
 *     LISTEN_FDS is N, fds 3..3+N-1 are listening sockets it must use (and
 *     not close at exec: they are marked close-on-exec here).  Without them
 *     it binds 127.0.0.1:PORT itself (default 8080), to run on its own;
 *     --reuseport sets SO_REUSEPORT on that socket, so that two can run on
 *     one port at once (each with its own queue: how restarts are done
 *     without a supervisor, compared in bench/swap);
 *   - the module: at start, before the server says it is ready, the slot
 *     "handler" gets its first version: with an install root to follow
 *     (--follow, default $LIVEPUSH_INSTALL_ROOT, which `livepush run` sets;
 *     --no-follow: none), `<root>/current/lib/handler.so`; without one (or
 *     if that release has no module), the module at --module (default
 *     lib/handler.so in the working folder; without it, and with no
 *     --module given, the built-in answers below are used).  A module that
 *     is refused makes the start fail (exit 1).  Following, the slot loads
 *     the module of each release `current` switches to, with a probation of
 *     --probation-ms (default 10000);
 *     a rollback is reported to the agent at --agent-socket (default
 *     <root>/.livepush/control.sock).  A call that crashed in a module on
 *     probation is made once more, on the version the slot went back to,
 *     so the client gets its answer.  Every swap event is one line on
 *     stderr: "server <version> (pid <pid>): swap <kind>: <message>";
 *   - readiness: once it can serve, it sends "READY=1" (and a STATUS=) to
 *     the datagram socket named in NOTIFY_SOCKET, and takes its first
 *     connection only after that;
 *   - draining: on SIGTERM (or SIGINT) it sends "STOPPING=1", closes its
 *     listening sockets (the connections still queued stay in the kernel's
 *     queue for the new process, which holds the same sockets), finishes
 *     every connection it has — it answers what was asked and waits for the
 *     client to close — and exits 0 when none is left.
 *
 * The server's version is read at start from the file VERSION in the
 * working folder (the release folder under `livepush run`); a release
 * without it cannot start (exit 1), which is also how the tests make a
 * release that fails.  Two ways to talk to it, told apart by the first line
 * a client sends:
 *
 *   - HTTP: "GET /path HTTP/1.x" and headers up to an empty line; the answer
 *     is 200 with the body "<answer>\n", then the connection closes;
 *   - lines: any other line L gets "<answer>\n" back, for as long as the
 *     client keeps the connection (a long-lived session);
 *
 * where <answer> is the module's ("<version>+<module version> <path or
 * line>", handler.c), or without a module "<version> <path or line>".  A
 * module that fails gets HTTP 500 or the line "<version> error".
 *
 * One thread serves, in one poll(2) loop; the signal handler only writes a
 * byte into a pipe the loop watches.  The swap host has a thread of its own
 * (its tick: following the install root, probation, reports) which never
 * holds up a request.  Lines are at most 4 KiB, requests 8 KiB; at most
 * MAX_CONNS connections at once (the listening sockets are not polled while
 * it is full).  This is an example: no TLS, no HTTP beyond this.
 */
#include "handler.h"

#include "livepush/swap.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_LISTEN 16
#define MAX_CONNS 4096
#define IN_MAX 8192
#define OUT_MAX 16384
#define LINE_MAX_BYTES 4096

typedef enum mode { MODE_UNKNOWN, MODE_HTTP, MODE_LINES } mode;

typedef struct conn {
    int fd;
    mode mode;
    char in[IN_MAX];
    size_t in_len;
    char out[OUT_MAX];
    size_t out_len, out_off;
    bool close_after; /* close once out is sent (HTTP answered, or an error) */
    bool peer_done;   /* the client closed its side */
} conn;

typedef struct server {
    char version[65];
    /* the module (NULL host: built-in answers only) */
    lp_swap_host *host;
    lp_swap_slot *slot;
    lp_swap_thread *me;
    unsigned long crashed_calls, failed_calls;
    int lfd[MAX_LISTEN];
    size_t nlisten;
    bool from_supervisor;
    int sig_pipe[2];
    bool draining;
    conn *conns[MAX_CONNS];
    size_t nconns;
    unsigned long served;
} server;

/* A signal handler can reach nothing but globals: the write end of the
 * signal pipe is this program's only one, set before the handler is
 * installed. */
static int signal_write_fd = -1;

static void on_signal(int sig)
{
    int saved = errno;
    char c = (char)sig;
    if (write(signal_write_fd, &c, 1) < 0) {
        /* nothing to do: the pipe is full, so a byte is already waiting */
    }
    errno = saved;
}

/* sd_notify: one datagram to $NOTIFY_SOCKET ("@name" is an abstract one). */
static void notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    if (!path || !path[0] || strlen(path) >= sizeof un.sun_path)
        return;
    size_t n = strlen(path);
    memcpy(un.sun_path, path, n);
    if (un.sun_path[0] == '@')
        un.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (const struct sockaddr *)&un,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
        fprintf(stderr, "server: notify: %s\n", strerror(errno));
    close(fd);
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > max || s[0] == '-' || s[0] == '+')
        return false;
    *out = v;
    return true;
}

/* The sockets of socket activation, if they are meant for this process. */
static int take_listen_fds(server *sv)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    unsigned long p, n;
    if (!pid || !fds)
        return 0;
    if (!parse_uint(pid, 0x7fffffffUL, &p) || (pid_t)p != getpid())
        return 0; /* for another process (inherited by mistake) */
    if (!parse_uint(fds, MAX_LISTEN, &n) || n == 0) {
        fprintf(stderr, "server: LISTEN_FDS=%s: expected 1..%d\n", fds, MAX_LISTEN);
        return -1;
    }
    for (int fd = 3; fd < 3 + (int)n; fd++) {
        int acc = 0;
        socklen_t len = sizeof acc;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0 || !acc) {
            fprintf(stderr, "server: fd %d is not a listening socket\n", fd);
            return -1;
        }
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        sv->lfd[sv->nlisten++] = fd;
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    sv->from_supervisor = true;
    return 0;
}

static int bind_own(server *sv, unsigned port, bool reuseport)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, (const struct sockaddr *)&in, sizeof in) != 0 || listen(fd, SOMAXCONN) != 0) {
        fprintf(stderr, "server: listen 127.0.0.1:%u: %s\n", port, strerror(errno));
        return -1;
    }
    sv->lfd[sv->nlisten++] = fd;
    return 0;
}

static int read_version(server *sv)
{
    FILE *f = fopen("VERSION", "r");
    if (!f) {
        fprintf(stderr, "server: cannot read VERSION in the working folder: %s\n",
                strerror(errno));
        return -1;
    }
    char line[128];
    bool ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    size_t n = ok ? strcspn(line, "\r\n") : 0;
    line[n] = '\0';
    for (size_t i = 0; i < n; i++)
        ok = ok && line[i] > ' ' && line[i] < 0x7f;
    if (!ok || n == 0 || n >= sizeof sv->version) {
        fprintf(stderr, "server: VERSION: expected one word of 1..%zu printable characters\n",
                sizeof sv->version - 1);
        return -1;
    }
    memcpy(sv->version, line, n + 1);
    return 0;
}

static void queue_out(conn *c, const char *data, size_t n)
{
    if (c->out_len + n > OUT_MAX) {
        c->close_after = true; /* a client that does not read its answers */
        return;
    }
    memcpy(c->out + c->out_len, data, n);
    c->out_len += n;
}

typedef struct answer_call {
    const char *server, *what;
    size_t what_len;
    char *out;
    size_t cap;
} answer_call;

static int call_answer(const void *table, void *arg)
{
    const struct handler_api *api = table;
    answer_call *a = arg;
    return api->answer(a->server, a->what, a->what_len, a->out, a->cap);
}

/* The answer to one request (no newline) into out; -1: the module failed. */
static int answer(server *sv, const char *what, size_t n, char *out, size_t cap)
{
    if (sv->slot) {
        answer_call a = {sv->version, what, n, out, cap};
        /* A crash inside a module on probation is claimed and the slot is
         * back on the previous version: one more try goes there. */
        for (int attempt = 0; attempt < 2; attempt++) {
            int rc = -1;
            int outcome = lp_swap_invoke(sv->slot, sv->me, call_answer, &a, &rc);
            if (outcome == LP_SWAP_ENTERED) {
                if (rc < 0)
                    sv->failed_calls++;
                return rc;
            }
            if (outcome != LP_SWAP_CRASHED)
                break; /* empty slot: built-in answer */
            sv->crashed_calls++;
        }
    }
    int len = snprintf(out, cap, "%s %.*s", sv->version, (int)n, what);
    return len < 0 || (size_t)len >= cap ? -1 : len;
}

/* Answers what the input holds so far. */
static void handle_input(server *sv, conn *c)
{
    char reply[LINE_MAX_BYTES + 400];
    for (;;) {
        if (c->close_after)
            return;
        char *nl = memchr(c->in, '\n', c->in_len);
        if (c->mode == MODE_UNKNOWN) {
            if (!nl) {
                if (c->in_len >= LINE_MAX_BYTES)
                    c->close_after = true;
                return;
            }
            size_t ll = (size_t)(nl - c->in);
            /* "GET <path> HTTP/1.x", ending in CRLF or LF */
            bool http = ll >= 14 && !memcmp(c->in, "GET ", 4) &&
                        ((nl[-1] == '\r' && ll >= 15 && !memcmp(nl - 10, " HTTP/1.", 8)) ||
                         !memcmp(nl - 9, " HTTP/1.", 8));
            c->mode = http ? MODE_HTTP : MODE_LINES;
        }
        if (c->mode == MODE_HTTP) {
            char *end = NULL;
            for (size_t i = 0; i + 1 < c->in_len && !end; i++)
                if (c->in[i] == '\n' &&
                    (c->in[i + 1] == '\n' ||
                     (i + 2 < c->in_len && c->in[i + 1] == '\r' && c->in[i + 2] == '\n')))
                    end = c->in + i;
            if (!end) {
                if (c->in_len >= IN_MAX)
                    c->close_after = true;
                return;
            }
            const char *path = c->in + 4;
            size_t pl = strcspn(path, " \r\n");
            if (pl > 512)
                pl = 512;
            char body[800];
            int bl = answer(sv, path, pl, body, sizeof body - 1);
            const char *status = "200 OK";
            if (bl < 0) {
                status = "500 Internal Server Error";
                bl = snprintf(body, sizeof body, "error");
            }
            body[bl++] = '\n';
            body[bl] = '\0';
            int n = snprintf(reply, sizeof reply,
                             "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: "
                             "%d\r\nConnection: close\r\n\r\n%s",
                             status, bl, body);
            queue_out(c, reply, (size_t)n);
            c->close_after = true;
            return;
        }
        if (!nl) {
            if (c->in_len >= LINE_MAX_BYTES)
                c->close_after = true;
            return;
        }
        size_t ll = (size_t)(nl - c->in);
        size_t shown = ll && c->in[ll - 1] == '\r' ? ll - 1 : ll;
        int n = answer(sv, c->in, shown, reply, sizeof reply - 1);
        if (n < 0)
            n = snprintf(reply, sizeof reply, "%s error", sv->version);
        reply[n++] = '\n';
        queue_out(c, reply, (size_t)n);
        memmove(c->in, nl + 1, c->in_len - ll - 1);
        c->in_len -= ll + 1;
    }
}

static void close_conn(server *sv, size_t i)
{
    close(sv->conns[i]->fd);
    free(sv->conns[i]);
    sv->conns[i] = sv->conns[--sv->nconns];
    sv->served++;
}

static void accept_some(server *sv, int lfd)
{
    for (int k = 0; k < 64 && sv->nconns < MAX_CONNS; k++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                fprintf(stderr, "server: accept: %s\n", strerror(errno));
            return;
        }
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            return;
        }
        c->fd = fd;
        sv->conns[sv->nconns++] = c;
    }
}

/* Reads, answers and writes for connection i; false when it is finished. */
static bool serve_conn(server *sv, conn *c, short revents)
{
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        while (!c->peer_done && c->in_len < IN_MAX) {
            ssize_t n = read(c->fd, c->in + c->in_len, IN_MAX - c->in_len);
            if (n > 0) {
                c->in_len += (size_t)n;
                handle_input(sv, c);
            } else if (n == 0) {
                c->peer_done = true;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            } else if (errno != EINTR) {
                return false; /* reset by the client */
            }
        }
    }
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return false;
        }
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->close_after || c->peer_done)
            return false;
    }
    return true;
}

/* ---- the module ------------------------------------------------------------- */

static const char *const kind_names[] = {"", "swapped", "committed", "rolled_back", "refused",
                                         "unloaded", "reported", "report_failed"};

/* Swap events: one line each on stderr (from the host's tick thread). */
static void on_swap_event(void *ctx, const lp_swap_event *ev)
{
    const server *sv = ctx;
    unsigned k = (unsigned)ev->kind;
    fprintf(stderr, "server %s (pid %d): swap %s: %s\n", sv->version, (int)getpid(),
            k < sizeof kind_names / sizeof kind_names[0] ? kind_names[k] : "event",
            ev->message);
}

typedef struct module_opts {
    const char *path;         /* --module; NULL: HANDLER_PATH if it exists */
    const char *follow;       /* install root, or NULL */
    const char *agent_socket; /* NULL: the library's default */
    unsigned long probation_ms;
} module_opts;

/* Opens the swap host, declares the slot and loads the first module. */
static int module_start(server *sv, const module_opts *mo)
{
    const char *path = mo->path ? mo->path : HANDLER_PATH;
    bool have = access(path, F_OK) == 0;
    if (!have && mo->path) {
        fprintf(stderr, "server: --module %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!have && !mo->follow)
        return 0; /* built-in answers only */
    lp_error err;
    lp_swap_host_config hc = {.install_root = mo->follow, .agent_socket = mo->agent_socket,
                              .on_event = on_swap_event, .on_event_ctx = sv};
    lp_swap_slot_config sc = {
        .name = "handler",
        .interface = HANDLER_INTERFACE,
        .abi_version = HANDLER_ABI,
        .table_size = sizeof(struct handler_api),
        .module_path = mo->follow ? HANDLER_PATH : NULL,
        /* A request takes about a microsecond: judge latency on gross
         * regressions only (p99 more than twice the old one plus 1 ms), not
         * on a thread descheduled once in a hundred calls. */
        .probation = {.window_ms = (uint32_t)mo->probation_ms, .latency_slack_ns = 1000000},
    };
    if (lp_swap_host_open(&hc, &sv->host, &err) ||
        lp_swap_slot_declare(sv->host, &sc, &sv->slot, &err) ||
        lp_swap_thread_register(sv->host, &sv->me, &err) ||
        (mo->follow && lp_swap_check_release(sv->host, &err))) {
        fprintf(stderr, "server: module: %s\n", err.msg);
        return -1;
    }
    /* Following: the current release's module is live now (normally the
     * one in the working folder, under `livepush run`); else, or if the
     * release has none, the one at --module. */
    lp_swap_slot_info in;
    if (have && (lp_swap_slot_get_info(sv->slot, &in, &err) ||
                 (in.state == LP_SWAP_SLOT_IS_EMPTY && lp_swap_update(sv->slot, path, &err)))) {
        fprintf(stderr, "server: module: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void module_stop(server *sv)
{
    if (!sv->host)
        return;
    lp_swap_slot_info in;
    lp_error err;
    if (lp_swap_slot_get_info(sv->slot, &in, &err) == LP_OK)
        fprintf(stderr,
                "server %s (pid %d): module %s: %llu swaps, %llu rollbacks, %lu calls crashed "
                "(each made again), %lu failed\n",
                sv->version, (int)getpid(), in.version[0] ? in.version : "(none)",
                (unsigned long long)in.swaps, (unsigned long long)in.rollbacks,
                sv->crashed_calls, sv->failed_calls);
    lp_swap_thread_unregister(sv->me);
    lp_swap_host_close(sv->host);
    sv->host = NULL;
    sv->slot = NULL;
    sv->me = NULL;
}

static void start_drain(server *sv)
{
    if (sv->draining)
        return;
    sv->draining = true;
    notify("STOPPING=1");
    for (size_t i = 0; i < sv->nlisten; i++)
        close(sv->lfd[i]);
    sv->nlisten = 0;
    fprintf(stderr, "server %s (pid %d): draining %zu connections\n", sv->version, (int)getpid(),
            sv->nconns);
}

int main(int argc, char **argv)
{
    unsigned long port = 8080;
    bool reuseport = false, no_follow = false;
    module_opts mo = {.follow = getenv("LIVEPUSH_INSTALL_ROOT"), .probation_ms = 10000};
    int arg = 1;
    while (arg < argc) {
        const char *a = argv[arg], *v = arg + 1 < argc ? argv[arg + 1] : NULL;
        if (!strcmp(a, "--reuseport")) {
            reuseport = true;
            arg += 1;
        } else if (!strcmp(a, "--no-follow")) {
            no_follow = true;
            arg += 1;
        } else if (!strcmp(a, "--port") && v && parse_uint(v, 65535, &port)) {
            arg += 2;
        } else if (!strcmp(a, "--probation-ms") && v &&
                   parse_uint(v, 86400000, &mo.probation_ms) && mo.probation_ms > 0) {
            arg += 2;
        } else if (!strcmp(a, "--module") && v && v[0]) {
            mo.path = v;
            arg += 2;
        } else if (!strcmp(a, "--follow") && v && v[0]) {
            mo.follow = v;
            arg += 2;
        } else if (!strcmp(a, "--agent-socket") && v && v[0]) {
            mo.agent_socket = v;
            arg += 2;
        } else {
            fprintf(stderr,
                    "usage: server [--port N] [--reuseport] [--module PATH] [--follow ROOT]\n"
                    "              [--no-follow] [--probation-ms N] [--agent-socket PATH]\n"
                    "A TCP service of the livepush examples: HTTP GET or lines, answered by\n"
                    "its module (lib/handler.so, swapped live) with the version in ./VERSION\n"
                    "(examples/service/README.md).\n");
            return 2;
        }
    }
    if (no_follow || (mo.follow && !mo.follow[0]))
        mo.follow = NULL;
    server *sv = calloc(1, sizeof *sv);
    if (!sv)
        return 1;
    if (read_version(sv) != 0 || take_listen_fds(sv) != 0)
        return 1;
    if (!sv->from_supervisor && bind_own(sv, (unsigned)port, reuseport) != 0)
        return 1;
    if (pipe2(sv->sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        fprintf(stderr, "server: pipe: %s\n", strerror(errno));
        return 1;
    }
    signal_write_fd = sv->sig_pipe[1];
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (module_start(sv, &mo) != 0)
        return 1;
    lp_swap_slot_info in = {0};
    if (sv->slot)
        lp_swap_slot_get_info(sv->slot, &in, NULL);

    char status[300];
    snprintf(status, sizeof status, "READY=1\nSTATUS=serving %s, module %s", sv->version,
             in.version[0] ? in.version : "(built in)");
    notify(status);
    fprintf(stderr, "server %s (pid %d): ready, %zu listening sockets%s, module %s%s%s\n",
            sv->version, (int)getpid(), sv->nlisten,
            sv->from_supervisor ? " from the supervisor" : "",
            in.version[0] ? in.version : "(built in)", mo.follow ? ", following " : "",
            mo.follow ? mo.follow : "");

    struct pollfd *pf = calloc(MAX_LISTEN + MAX_CONNS + 1, sizeof *pf);
    if (!pf)
        return 1;
    while (!sv->draining || sv->nconns > 0) {
        size_t n = 0;
        pf[n++] = (struct pollfd){.fd = sv->sig_pipe[0], .events = POLLIN};
        size_t first_listen = n;
        if (sv->nconns < MAX_CONNS)
            for (size_t i = 0; i < sv->nlisten; i++)
                pf[n++] = (struct pollfd){.fd = sv->lfd[i], .events = POLLIN};
        size_t first_conn = n;
        for (size_t i = 0; i < sv->nconns; i++)
            pf[n++] = (struct pollfd){
                .fd = sv->conns[i]->fd,
                .events = (short)(POLLIN | (sv->conns[i]->out_len ? POLLOUT : 0))};
        if (poll(pf, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "server: poll: %s\n", strerror(errno));
            return 1;
        }
        if (pf[0].revents) {
            char buf[16];
            while (read(sv->sig_pipe[0], buf, sizeof buf) > 0) {
            }
            start_drain(sv);
        }
        /* connections first: closing one moves another into its slot, so
         * walk from the end, matching the pollfd order */
        size_t nc = n - first_conn;
        for (size_t i = nc; i-- > 0;) {
            if (!pf[first_conn + i].revents)
                continue;
            if (!serve_conn(sv, sv->conns[i], pf[first_conn + i].revents))
                close_conn(sv, i);
        }
        if (!sv->draining)
            for (size_t i = first_listen; i < first_conn; i++)
                if (pf[i].revents & POLLIN)
                    accept_some(sv, pf[i].fd);
    }
    fprintf(stderr, "server %s (pid %d): drained, %lu connections served, exiting\n",
            sv->version, (int)getpid(), sv->served);
    module_stop(sv);
    free(pf);
    free(sv);
    return 0;
}
