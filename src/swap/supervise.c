/*
 * supervise.c — the process supervisor of `livepush run` (see supervise.h
 * and docs/run.md).
 *
 * Design.  Everything happens in one poll(2) loop over three descriptors: a
 * signalfd (SIGCHLD, SIGTERM, SIGINT, SIGHUP are blocked while the loop runs
 * and read from it: no handler, nothing done in signal context), the notify
 * socket (AF_UNIX datagrams carrying sd_notify assignments, with the
 * sender's credentials attached by the kernel because SO_PASSCRED is set)
 * and an inotify descriptor on the install root.  Each turn of the loop
 * handles what arrived, then the deadlines (a new process not ready in time,
 * a stopping one past its SIGKILL time, the back-off before a start, the
 * time to mark a release healthy), then `reconcile`, which compares the
 * release `current` points to (one readlink) with the one serving and
 * starts a new process when they differ.  So a missed inotify event costs
 * at most one poll interval: the loop never sleeps longer than that.
 *
 * The processes are a small table of slots, each in one role: STARTING (the
 * candidate: at most one, started, not ready yet), ACTIVE (at most one: the
 * process serving) and RETIRING (sent SIGTERM: finishing its connections,
 * SIGKILL at its deadline).  A candidate's READY=1 makes it ACTIVE and the
 * old ACTIVE RETIRING.  A candidate that exits or misses its deadline is
 * given up: with a process serving another release, that release stays and
 * the candidate's release is rolled back (only if `current` still points to
 * it: someone else may have moved on) and remembered as failed, so that a
 * failed rollback does not turn into a restart loop; with nothing serving,
 * the next start waits for the back-off.
 *
 * Starting a process: in the parent, the release and its folder are
 * resolved, the command is found (a '/' in the first word: relative to the
 * release folder; else the PATH given), and the whole environment is built,
 * with a LISTEN_PID entry whose digits the child writes: between fork and
 * execve the child only calls async-signal-safe functions (signal mask,
 * setpgid, prctl, dup2, close_range, chdir, execve, write, _exit).  The
 * listening sockets were moved above fd 3 + count at open, so dup2 onto
 * 3.. never overwrites a socket still to be copied; every other descriptor
 * is closed.  The child gets a process group of its own (which SIGKILL
 * targets, leftovers included) and SIGTERM when the supervisor dies
 * (PR_SET_PDEATHSIG).
 *
 * Releases the app swaps in itself (--swap): when `current` moves while a
 * process serves, the manifests the agent stored for the two releases
 * (<root>/.livepush/manifests/<id>.json) are compared entry by entry; if
 * they differ only in the swap paths (and folders holding them) the serving
 * process is simply told nothing and recorded as serving the new release
 * ("adopted"); anything else, or a manifest that cannot be read, starts a
 * new process as usual.  The serving release's manifest is kept in memory
 * from the moment it becomes the serving one, since the agent may prune it.
 *
 * Ownership: an lp_sup owns its sockets, its copy of the command, its swap
 * paths, the serving release's manifest and its notify folder; the
 * lp_device and the log are borrowed.
 */
#include "swap/supervise.h"

#include "core/file.h"
#include "livepush/bundle.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define SPEC_MAX 4096u
#define ARG_MAX_BYTES (256u * 1024u)
#define ENV_MAX_ENTRIES 4096u

/* ---- parsing ----------------------------------------------------------- */

static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

static lp_status parse_port(const char *p, const char *spec, uint16_t *out, lp_error *err)
{
    size_t n = strlen(p);
    unsigned long v = 0;
    if (n == 0 || n > 5)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "listen address '%s': the port must be 0..65535", spec);
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "listen address '%s': the port must be 0..65535", spec);
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v > 65535)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "listen address '%s': the port must be 0..65535", spec);
    *out = (uint16_t)v;
    return LP_OK;
}

lp_status lp_sup_listen_parse(const char *spec, lp_sup_listen *out, lp_error *err)
{
    memset(out, 0, sizeof *out);
    if (!spec || !spec[0])
        return lp_error_set(err, LP_ERR_INVALID_ARG, "listen address: empty");
    if (strnlen(spec, SPEC_MAX + 1) > SPEC_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "listen address: longer than %u bytes",
                            SPEC_MAX);
    const char *addr = spec;
    const char *eq = strchr(spec, '=');
    snprintf(out->name, sizeof out->name, "unknown");
    if (eq) {
        size_t n = (size_t)(eq - spec);
        bool is_name = n > 0;
        for (size_t i = 0; i < n && is_name; i++)
            is_name = name_char(spec[i]);
        if (is_name) {
            if (n > LP_SUP_MAX_NAME)
                return lp_error_set(err, LP_ERR_INVALID_ARG,
                                    "listen address '%s': the name is longer than %u bytes",
                                    spec, LP_SUP_MAX_NAME);
            memcpy(out->name, spec, n);
            out->name[n] = '\0';
            addr = eq + 1;
        }
    }
    if (!strncmp(addr, "unix:", 5) || addr[0] == '/') {
        const char *path = addr[0] == '/' ? addr : addr + 5;
        struct sockaddr_un *un = (struct sockaddr_un *)&out->addr;
        if (path[0] != '/')
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "listen address '%s': a unix socket path must be absolute", spec);
        size_t n = strlen(path);
        if (n >= sizeof un->sun_path)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "listen address '%s': a unix socket path has at most %zu bytes",
                                spec, sizeof un->sun_path - 1);
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, n + 1);
        out->family = AF_UNIX;
        out->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return LP_OK;
    }
    char host[INET6_ADDRSTRLEN + 1];
    const char *port;
    size_t hl;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "listen address '%s': expected [IPV6]:PORT", spec);
        hl = (size_t)(close - addr - 1);
        if (hl == 0 || hl >= sizeof host)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "listen address '%s': not an IPv6 address", spec);
        memcpy(host, addr + 1, hl);
        host[hl] = '\0';
        port = close + 2;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->addr;
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "listen address '%s': '%s' is not a numeric IPv6 address", spec,
                                host);
        uint16_t p;
        lp_status st = parse_port(port, spec, &p, err);
        if (st)
            return st;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(p);
        out->family = AF_INET6;
        out->addr_len = sizeof *in6;
        return LP_OK;
    }
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "listen address '%s': expected IPV4:PORT, [IPV6]:PORT, unix:PATH "
                            "or /PATH",
                            spec);
    hl = (size_t)(colon - addr);
    if (hl == 0 || hl >= sizeof host || memchr(addr, ':', hl))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "listen address '%s': expected IPV4:PORT (IPv6 goes in brackets)",
                            spec);
    memcpy(host, addr, hl);
    host[hl] = '\0';
    struct sockaddr_in *in4 = (struct sockaddr_in *)&out->addr;
    if (inet_pton(AF_INET, host, &in4->sin_addr) != 1)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "listen address '%s': '%s' is not a numeric IPv4 address", spec,
                            host);
    uint16_t p;
    lp_status st = parse_port(colon + 1, spec, &p, err);
    if (st)
        return st;
    in4->sin_family = AF_INET;
    in4->sin_port = htons(p);
    out->family = AF_INET;
    out->addr_len = sizeof *in4;
    return LP_OK;
}

void lp_sup_address_format(const struct sockaddr *sa, socklen_t len, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (!cap)
        return;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, (unsigned)ntohs(in4->sin_port));
    } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t max = len > offsetof(struct sockaddr_un, sun_path)
                         ? (size_t)len - offsetof(struct sockaddr_un, sun_path)
                         : 0;
        snprintf(out, cap, "unix:%.*s", (int)strnlen(un->sun_path, max), un->sun_path);
    } else {
        snprintf(out, cap, "address family %d", (int)sa->sa_family);
    }
}

lp_status lp_sup_notice_parse(const char *msg, size_t len, lp_sup_notice *out, lp_error *err)
{
    memset(out, 0, sizeof *out);
    if (len == 0)
        return lp_error_set(err, LP_ERR_MALFORMED, "notify message: empty");
    if (len > LP_SUP_MAX_NOTIFY)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "notify message: %zu bytes, at most %u", len,
                            LP_SUP_MAX_NOTIFY);
    if (memchr(msg, '\0', len))
        return lp_error_set(err, LP_ERR_MALFORMED, "notify message: holds a NUL byte");
    size_t i = 0, line = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && msg[e] != '\n')
            e++;
        line++;
        const char *l = msg + i;
        size_t ll = e - i;
        if (ll) {
            const char *eq = memchr(l, '=', ll);
            if (!eq || eq == l)
                return lp_error_set(err, LP_ERR_MALFORMED,
                                    "notify message: line %zu is not KEY=VALUE", line);
            size_t kl = (size_t)(eq - l), vl = ll - kl - 1;
            const char *v = eq + 1;
            if (kl == 5 && !memcmp(l, "READY", 5) && vl == 1 && v[0] == '1')
                out->ready = true;
            else if (kl == 8 && !memcmp(l, "STOPPING", 8) && vl == 1 && v[0] == '1')
                out->stopping = true;
            else if (kl == 6 && !memcmp(l, "STATUS", 6)) {
                out->has_status = true;
                size_t n = vl < LP_SUP_MAX_STATUS ? vl : LP_SUP_MAX_STATUS;
                for (size_t k = 0; k < n; k++) {
                    unsigned char c = (unsigned char)v[k];
                    out->status[k] = c < 0x20 || c >= 0x7f ? ' ' : (char)c;
                }
                out->status[n] = '\0';
            }
        }
        i = e + 1;
    }
    return LP_OK;
}

/* ---- the supervisor ------------------------------------------------------ */

typedef enum role { ROLE_FREE = 0, ROLE_STARTING, ROLE_ACTIVE, ROLE_RETIRING } role;

typedef struct child {
    role role;
    pid_t pid;
    uint64_t release;
    char version[LP_UPDATER_MAX_VERSION + 1];
    const char *why;     /* why it was started (a string constant) */
    int64_t started_ms;  /* monotonic */
    int64_t ready_ms;    /* 0: not ready */
    int64_t term_ms;     /* when SIGTERM was sent; 0: not sent */
    int64_t deadline_ms; /* STARTING: ready by then; after SIGTERM: SIGKILL then */
    bool kill_sent;
} child;

struct lp_sup {
    lp_device *dev;
    const lp_log *log;
    char root[PATH_MAX];
    char **argv;
    char *path;
    int backlog;
    uint32_t ready_timeout_ms, stop_timeout_ms, poll_interval_ms;
    uint32_t restart_delay_ms, restart_delay_max_ms, healthy_after_ms;
    bool no_watch;
    /* sockets */
    size_t nlisten;
    int lfd[LP_SUP_MAX_LISTEN];
    lp_sup_listen spec[LP_SUP_MAX_LISTEN];
    char address[LP_SUP_MAX_LISTEN][PATH_MAX / 32 + sizeof(struct sockaddr_un)];
    bool unix_made[LP_SUP_MAX_LISTEN];
    dev_t unix_dev[LP_SUP_MAX_LISTEN];
    ino_t unix_ino[LP_SUP_MAX_LISTEN];
    char *fdnames; /* "LISTEN_FDNAMES=a:b" */
    int notify_fd;
    char notify_dir[PATH_MAX];
    char notify_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int max_fd; /* close everything below it in a child (close_range fallback) */
    /* while running */
    int sig_fd, ino_fd;
    sigset_t old_mask;
    child kids[LP_SUP_MAX_CHILDREN];
    int active, cand; /* slot indexes, -1: none */
    bool stopping, hup, ever_started, waiting_logged, bad_current_logged;
    pid_t stop_pid;           /* the process serving when the stop came */
    uint64_t failed_release;  /* given up while another release served */
    int64_t restart_at;       /* a start waits for this (back-off); 0: none */
    uint32_t backoff_ms;
    int64_t healthy_at;       /* mark the active release healthy then; 0: no */
    int exit_code;
    /* releases adopted without a restart (--swap) */
    char **swap;
    size_t nswap;
    lp_manifest serving;      /* the manifest of serving_id (when nswap) */
    uint64_t serving_id;      /* 0: none loaded */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static json_int_t jint(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v;
}

size_t lp_sup_listen_count(const lp_sup *s)
{
    return s->nlisten;
}

const char *lp_sup_listen_address(const lp_sup *s, size_t i)
{
    return i < s->nlisten ? s->address[i] : "";
}

const char *lp_sup_notify_path(const lp_sup *s)
{
    return s->notify_path;
}

/* Binds, listens and moves listener i above the fds the children get. */
static lp_status bind_one(lp_sup *s, size_t i, lp_error *err)
{
    const lp_sup_listen *l = &s->spec[i];
    char shown[sizeof s->address[0]];
    lp_sup_address_format((const struct sockaddr *)&l->addr, l->addr_len, shown, sizeof shown);
    int fd = socket(l->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return lp_error_set(err, LP_ERR_IO, "listen %s: socket: %s", shown, strerror(errno));
    if (l->family == AF_UNIX) {
        const char *path = ((const struct sockaddr_un *)&l->addr)->sun_path;
        struct stat st;
        if (lstat(path, &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                close(fd);
                return lp_error_set(err, LP_ERR_IO, "listen %s: %s exists and is not a socket",
                                    shown, path);
            }
            /* A socket file: in use if something answers, else left by a
             * process that is gone and replaced. */
            int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            bool live = probe >= 0 &&
                        connect(probe, (const struct sockaddr *)&l->addr, l->addr_len) == 0;
            if (probe >= 0)
                close(probe);
            if (live) {
                close(fd);
                return lp_error_set(err, LP_ERR_IO,
                                    "listen %s: another process listens on %s", shown, path);
            }
            if (unlink(path) != 0 && errno != ENOENT) {
                int e = errno;
                close(fd);
                return lp_error_set(err, LP_ERR_IO, "listen %s: removing the old socket: %s",
                                    shown, strerror(e));
            }
        }
    } else {
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
            int e = errno;
            close(fd);
            return lp_error_set(err, LP_ERR_IO, "listen %s: SO_REUSEADDR: %s", shown,
                                strerror(e));
        }
    }
    if (bind(fd, (const struct sockaddr *)&l->addr, l->addr_len) != 0 ||
        listen(fd, s->backlog) != 0) {
        int e = errno;
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "listen %s: %s", shown, strerror(e));
    }
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &bl) == 0)
        lp_sup_address_format((const struct sockaddr *)&bound, bl, s->address[i],
                              sizeof s->address[i]);
    else
        snprintf(s->address[i], sizeof s->address[i], "%s", shown);
    if (l->family == AF_UNIX) {
        struct stat st;
        if (stat(((const struct sockaddr_un *)&l->addr)->sun_path, &st) == 0) {
            s->unix_made[i] = true;
            s->unix_dev[i] = st.st_dev;
            s->unix_ino[i] = st.st_ino;
        }
    }
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 3 + (int)LP_SUP_MAX_LISTEN);
    if (high < 0) {
        int e = errno;
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "listen %s: moving the socket: %s", shown,
                            strerror(e));
    }
    close(fd);
    s->lfd[i] = high;
    return LP_OK;
}

static lp_status make_notify(lp_sup *s, const char *runtime_dir, lp_error *err)
{
    int n = snprintf(s->notify_dir, sizeof s->notify_dir, "%s/livepush-run.XXXXXX",
                     runtime_dir && runtime_dir[0] ? runtime_dir : "/tmp");
    if (n < 0 || (size_t)n >= sizeof s->notify_dir)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "runtime folder %s: path too long",
                            runtime_dir);
    if (!mkdtemp(s->notify_dir)) {
        int e = errno;
        s->notify_dir[0] = '\0';
        return lp_error_set(err, LP_ERR_IO, "making the notify folder in %s: %s",
                            runtime_dir && runtime_dir[0] ? runtime_dir : "/tmp", strerror(e));
    }
    n = snprintf(s->notify_path, sizeof s->notify_path, "%s/notify", s->notify_dir);
    if (n < 0 || (size_t)n >= sizeof s->notify_path)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "notify socket %s/notify: longer than a unix socket path may be "
                            "(give a shorter runtime folder)",
                            s->notify_dir);
    s->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->notify_fd < 0)
        return lp_error_set(err, LP_ERR_IO, "notify socket: %s", strerror(errno));
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, s->notify_path, strlen(s->notify_path) + 1);
    int one = 1;
    if (bind(s->notify_fd, (const struct sockaddr *)&un, sizeof un) != 0 ||
        setsockopt(s->notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0)
        return lp_error_set(err, LP_ERR_IO, "notify socket %s: %s", s->notify_path,
                            strerror(errno));
    return LP_OK;
}

lp_status lp_sup_open(const lp_sup_config *cfg, lp_sup **out, lp_error *err)
{
    *out = NULL;
    if (!cfg || !cfg->device || !cfg->argv || !cfg->argv[0] || !cfg->argv[0][0])
        return lp_error_set(err, LP_ERR_INVALID_ARG, "supervisor: %s",
                            !cfg || !cfg->device ? "no install root" : "no command");
    if (cfg->listen_count > LP_SUP_MAX_LISTEN)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "supervisor: %zu listen addresses, at most %u", cfg->listen_count,
                            LP_SUP_MAX_LISTEN);
    size_t argc = 0, bytes = 0;
    while (cfg->argv[argc]) {
        bytes += strlen(cfg->argv[argc]) + 1;
        if (++argc > LP_SUP_MAX_ARGS || bytes > ARG_MAX_BYTES)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "supervisor: the command has more than %u words or %u bytes",
                                LP_SUP_MAX_ARGS, ARG_MAX_BYTES);
    }
    lp_sup *s = calloc(1, sizeof *s);
    if (!s)
        return lp_error_set(err, LP_ERR_NOMEM, "supervisor: out of memory");
    s->dev = cfg->device;
    s->log = cfg->log;
    s->notify_fd = s->sig_fd = s->ino_fd = -1;
    s->active = s->cand = -1;
    for (size_t i = 0; i < LP_SUP_MAX_LISTEN; i++)
        s->lfd[i] = -1;
    s->backlog = cfg->backlog > 0 ? cfg->backlog : SOMAXCONN;
#define DEF(f, d) s->f = cfg->f ? cfg->f : (d)
    DEF(ready_timeout_ms, LP_SUP_DEFAULT_READY_TIMEOUT_MS);
    DEF(stop_timeout_ms, LP_SUP_DEFAULT_STOP_TIMEOUT_MS);
    DEF(poll_interval_ms, LP_SUP_DEFAULT_POLL_INTERVAL_MS);
    DEF(restart_delay_ms, LP_SUP_DEFAULT_RESTART_DELAY_MS);
    DEF(restart_delay_max_ms, LP_SUP_DEFAULT_RESTART_DELAY_MAX_MS);
#undef DEF
    if (s->restart_delay_max_ms < s->restart_delay_ms)
        s->restart_delay_max_ms = s->restart_delay_ms;
    s->backoff_ms = s->restart_delay_ms;
    s->healthy_after_ms = cfg->healthy_after_ms;
    s->no_watch = cfg->no_watch;
    snprintf(s->root, sizeof s->root, "%s", lp_updater_root(lp_device_updater(cfg->device)));
    lp_status st = LP_OK;
    s->argv = calloc(argc + 1, sizeof *s->argv);
    s->path = strdup(cfg->path ? cfg->path : "/usr/bin:/bin");
    if (!s->argv || !s->path)
        st = lp_error_set(err, LP_ERR_NOMEM, "supervisor: out of memory");
    for (size_t i = 0; !st && i < argc; i++)
        if (!(s->argv[i] = strdup(cfg->argv[i])))
            st = lp_error_set(err, LP_ERR_NOMEM, "supervisor: out of memory");
    size_t names_len = sizeof "LISTEN_FDNAMES=";
    for (size_t i = 0; !st && i < cfg->listen_count; i++) {
        st = lp_sup_listen_parse(cfg->listen[i], &s->spec[i], err);
        for (size_t j = 0; !st && j < i; j++)
            if (s->spec[j].addr_len == s->spec[i].addr_len &&
                !memcmp(&s->spec[j].addr, &s->spec[i].addr, s->spec[i].addr_len))
                st = lp_error_set(err, LP_ERR_INVALID_ARG, "listen address '%s' is given twice",
                                  cfg->listen[i]);
        names_len += strlen(s->spec[i].name) + 1;
    }
    for (size_t i = 0; !st && i < cfg->listen_count; i++) {
        st = bind_one(s, i, err);
        if (!st)
            s->nlisten = i + 1;
    }
    if (!st && cfg->swap_count > LP_SUP_MAX_SWAP)
        st = lp_error_set(err, LP_ERR_INVALID_ARG, "supervisor: %zu swap paths, at most %u",
                          cfg->swap_count, LP_SUP_MAX_SWAP);
    if (!st && cfg->swap_count && !(s->swap = calloc(cfg->swap_count, sizeof *s->swap)))
        st = lp_error_set(err, LP_ERR_NOMEM, "supervisor: out of memory");
    for (size_t i = 0; !st && i < cfg->swap_count; i++) {
        lp_error pe;
        if (!cfg->swap[i] || lp_manifest_check_path(cfg->swap[i], 0, &pe))
            st = lp_error_set(err, LP_ERR_INVALID_ARG, "swap path: %s",
                              cfg->swap[i] ? pe.msg : "missing");
        else if (!(s->swap[i] = strdup(cfg->swap[i])))
            st = lp_error_set(err, LP_ERR_NOMEM, "supervisor: out of memory");
        else
            s->nswap = i + 1;
    }
    if (!st && !(s->fdnames = malloc(names_len)))
        st = lp_error_set(err, LP_ERR_NOMEM, "supervisor: out of memory");
    if (!st) {
        size_t at = (size_t)snprintf(s->fdnames, names_len, "LISTEN_FDNAMES=");
        for (size_t i = 0; i < s->nlisten; i++)
            at += (size_t)snprintf(s->fdnames + at, names_len - at, "%s%s", i ? ":" : "",
                                   s->spec[i].name);
    }
    if (!st)
        st = make_notify(s, cfg->runtime_dir, err);
    if (!st) {
        struct rlimit rl;
        s->max_fd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                            rl.rlim_cur < 65536
                        ? (int)rl.rlim_cur
                        : 65536;
    }
    if (st) {
        lp_sup_close(s);
        return st;
    }
    *out = s;
    return LP_OK;
}

void lp_sup_close(lp_sup *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < LP_SUP_MAX_CHILDREN; i++) {
        child *c = &s->kids[i];
        if (c->role == ROLE_FREE)
            continue;
        kill(-c->pid, SIGKILL);
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        c->role = ROLE_FREE;
    }
    for (size_t i = 0; i < s->nlisten; i++) {
        if (s->lfd[i] >= 0)
            close(s->lfd[i]);
        if (s->unix_made[i]) {
            const char *path = ((const struct sockaddr_un *)&s->spec[i].addr)->sun_path;
            struct stat st;
            if (lstat(path, &st) == 0 && st.st_dev == s->unix_dev[i] &&
                st.st_ino == s->unix_ino[i])
                unlink(path);
        }
    }
    if (s->notify_fd >= 0)
        close(s->notify_fd);
    if (s->notify_path[0])
        unlink(s->notify_path);
    if (s->notify_dir[0])
        rmdir(s->notify_dir);
    if (s->sig_fd >= 0)
        close(s->sig_fd);
    if (s->ino_fd >= 0)
        close(s->ino_fd);
    for (size_t i = 0; s->argv && s->argv[i]; i++)
        free(s->argv[i]);
    free(s->argv);
    for (size_t i = 0; i < s->nswap; i++)
        free(s->swap[i]);
    free(s->swap);
    lp_manifest_free(&s->serving);
    free(s->path);
    free(s->fdnames);
    free(s);
}

/* ---- the install root ------------------------------------------------------ */

/* The release `current` points to ("releases/<id>"); 0 when there is no
 * `current`.  LP_ERR_MALFORMED when it points anywhere else. */
static lp_status read_current(const lp_sup *s, uint64_t *id, lp_error *err)
{
    char link[PATH_MAX + 16], buf[64];
    *id = 0;
    snprintf(link, sizeof link, "%s/current", s->root);
    ssize_t n = readlink(link, buf, sizeof buf - 1);
    if (n < 0) {
        if (errno == ENOENT)
            return LP_OK;
        return lp_error_set(err, LP_ERR_IO, "readlink %s: %s", link, strerror(errno));
    }
    buf[n] = '\0';
    const char *d = buf + 9;
    size_t nd = strlen(d);
    uint64_t v = 0;
    bool ok = !strncmp(buf, "releases/", 9) && nd >= 1 && nd <= 20 && d[0] != '0';
    for (size_t i = 0; ok && i < nd; i++) {
        ok = d[i] >= '0' && d[i] <= '9' && v <= (UINT64_MAX - (uint64_t)(d[i] - '0')) / 10;
        v = v * 10 + (uint64_t)(d[i] - '0');
    }
    if (!ok)
        return lp_error_set(err, LP_ERR_MALFORMED, "%s points to '%s', not releases/<id>", link,
                            buf);
    *id = v;
    return LP_OK;
}

/* The current release and its version label, from state.json (falling back
 * to the symlink when state.json cannot be read). */
static void current_release(lp_sup *s, uint64_t *id, char *version, size_t cap, bool *probation)
{
    lp_updater_status st;
    lp_error e;
    version[0] = '\0';
    *probation = false;
    if (lp_updater_status_get(lp_device_updater(s->dev), &st, &e) == LP_OK) {
        *id = st.current;
        *probation = st.on_probation;
        for (size_t i = 0; i < st.release_count; i++)
            if (st.releases[i].id == st.current)
                snprintf(version, cap, "%s", st.releases[i].version);
        lp_updater_status_free(&st);
        return;
    }
    lp_log_event(s->log, LP_LOG_WARN, "status unreadable", json_pack("{s:s}", "error", e.msg));
    if (read_current(s, id, &e))
        *id = 0;
}

/* Rolls `failed` back to `serving`, if `current` still points to it. */
static void roll_back(lp_sup *s, uint64_t failed, uint64_t serving, const char *reason)
{
    uint64_t cur;
    char version[LP_UPDATER_MAX_VERSION + 1];
    bool probation;
    current_release(s, &cur, version, sizeof version, &probation);
    if (cur != failed) {
        lp_log_event(s->log, LP_LOG_INFO, "not rolled back",
                     json_pack("{s:I,s:I,s:s}", "release", jint(failed), "current", jint(cur),
                               "why", "current points to another release now"));
        return;
    }
    char why[LP_ERROR_MSG_MAX];
    snprintf(why, sizeof why, "livepush run: %s; release %" PRIu64 " kept serving", reason,
             serving);
    lp_error e;
    if (lp_device_rollback(s->dev, serving, why, &e))
        lp_log_event(s->log, LP_LOG_ERROR, "rollback failed",
                     json_pack("{s:I,s:I,s:s}", "from", jint(failed), "to", jint(serving),
                               "error", e.msg));
    else
        lp_log_event(s->log, LP_LOG_WARN, "rolled back",
                     json_pack("{s:I,s:I,s:s}", "from", jint(failed), "to", jint(serving),
                               "reason", why));
}

/* ---- releases adopted without a restart (--swap) ------------------------------ */

/* The stored manifest of release `id` (what the agent verified it against). */
static lp_status load_manifest(const lp_sup *s, uint64_t id, lp_manifest *m, lp_error *err)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/.livepush/manifests/%" PRIu64 ".json", s->root, id);
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_file_read(path, LP_MANIFEST_MAX_JSON_BYTES, &data, &len, err);
    if (!st)
        st = lp_manifest_from_json(data, len, m, err);
    free(data);
    if (st)
        return lp_error_prefix(err, st, "manifest of release %" PRIu64, id);
    return LP_OK;
}

/* A path the app swaps itself, or a folder holding one. */
static bool swapped(const lp_sup *s, const lp_manifest_entry *e)
{
    size_t n = strlen(e->path);
    for (size_t i = 0; i < s->nswap; i++) {
        if (!strcmp(s->swap[i], e->path))
            return true;
        if (e->type == LP_ENTRY_DIR && !strncmp(s->swap[i], e->path, n) && s->swap[i][n] == '/')
            return true;
    }
    return false;
}

static bool same_entry(const lp_manifest_entry *a, const lp_manifest_entry *b)
{
    return a->type == b->type && a->mode == b->mode && a->size == b->size &&
           !strcmp(a->sha256, b->sha256) &&
           ((!a->target && !b->target) || (a->target && b->target && !strcmp(a->target, b->target)));
}

/* True when a and b (sorted by path) differ only in swapped paths; else
 * `why` names the first other difference. */
static bool swap_only(const lp_sup *s, const lp_manifest *a, const lp_manifest *b, char *why,
                      size_t cap)
{
    size_t i = 0, j = 0;
    while (i < a->count || j < b->count) {
        const lp_manifest_entry *x = i < a->count ? &a->entries[i] : NULL;
        const lp_manifest_entry *y = j < b->count ? &b->entries[j] : NULL;
        int c = !x ? 1 : !y ? -1 : strcmp(x->path, y->path);
        if (c < 0) {
            if (!swapped(s, x)) {
                snprintf(why, cap, "%s is gone", x->path);
                return false;
            }
            i++;
        } else if (c > 0) {
            if (!swapped(s, y)) {
                snprintf(why, cap, "%s is new", y->path);
                return false;
            }
            j++;
        } else {
            if (!swapped(s, x) && !same_entry(x, y)) {
                snprintf(why, cap, "%s changed", x->path);
                return false;
            }
            i++, j++;
        }
    }
    return true;
}

/* Keeps the manifest of the release serving (it may be pruned later). */
static void remember_serving(lp_sup *s, uint64_t id)
{
    if (!s->nswap || s->serving_id == id)
        return;
    lp_manifest_free(&s->serving);
    lp_manifest_init(&s->serving);
    s->serving_id = 0;
    lp_error e;
    if (load_manifest(s, id, &s->serving, &e))
        lp_log_event(s->log, LP_LOG_WARN, "manifest unreadable",
                     json_pack("{s:I,s:s}", "release", jint(id), "error", e.msg));
    else
        s->serving_id = id;
}

/* With swap paths: makes the process serving serve release `cur` when only
 * swapped files differ; false when a new process is needed. */
static bool try_adopt(lp_sup *s, uint64_t cur)
{
    child *a = &s->kids[s->active];
    remember_serving(s, a->release);
    if (s->serving_id != a->release)
        return false; /* logged: a restart is the safe way */
    lp_manifest m;
    lp_manifest_init(&m);
    lp_error e;
    if (load_manifest(s, cur, &m, &e)) {
        lp_log_event(s->log, LP_LOG_WARN, "manifest unreadable",
                     json_pack("{s:I,s:s}", "release", jint(cur), "error", e.msg));
        return false;
    }
    char why[LP_MANIFEST_MAX_PATH + 32];
    if (!swap_only(s, &s->serving, &m, why, sizeof why)) {
        lp_log_event(s->log, LP_LOG_INFO, "restart needed",
                     json_pack("{s:I,s:I,s:s}", "release", jint(cur), "serving",
                               jint(a->release), "differs", why));
        lp_manifest_free(&m);
        return false;
    }
    uint64_t id;
    char version[LP_UPDATER_MAX_VERSION + 1];
    bool probation;
    current_release(s, &id, version, sizeof version, &probation);
    lp_log_event(s->log, LP_LOG_INFO, "adopted",
                 json_pack("{s:i,s:I,s:s,s:I,s:s}", "pid", (int)a->pid, "release", jint(cur),
                           "version", id == cur ? version : "", "from", jint(a->release), "why",
                           "only files the app swaps in place differ"));
    a->release = cur;
    snprintf(a->version, sizeof a->version, "%s", id == cur ? version : "");
    lp_manifest_free(&s->serving);
    s->serving = m;
    s->serving_id = cur;
    if (s->failed_release == cur)
        s->failed_release = 0;
    s->healthy_at = s->healthy_after_ms ? mono_ms() + s->healthy_after_ms : 0;
    return true;
}

/* ---- processes ------------------------------------------------------------- */

static int exit_code_of(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

static void describe_exit(int status, char *out, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(out, cap, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, cap, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(out, cap, "ended (wait status %d)", status);
}

static void schedule_restart(lp_sup *s)
{
    s->restart_at = mono_ms() + s->backoff_ms;
    lp_log_event(s->log, LP_LOG_INFO, "restart scheduled",
                 json_pack("{s:I}", "delay_ms", (json_int_t)s->backoff_ms));
    s->backoff_ms = s->backoff_ms > s->restart_delay_max_ms / 2 ? s->restart_delay_max_ms
                                                                : s->backoff_ms * 2;
}

/* SIGTERM now, SIGKILL at the stop timeout. */
static void retire(lp_sup *s, child *c)
{
    c->role = ROLE_RETIRING;
    if (c->term_ms)
        return;
    c->term_ms = mono_ms();
    c->deadline_ms = c->term_ms + s->stop_timeout_ms;
    kill(c->pid, SIGTERM);
}

/* A start of `release` failed (the process exited or was not ready in time,
 * or could not be started): keep what serves and roll the release back, or
 * with nothing serving, try again after the back-off. */
static void give_up(lp_sup *s, uint64_t release, const char *version, const char *reason)
{
    lp_log_event(s->log, LP_LOG_WARN, "start failed",
                 json_pack("{s:I,s:s,s:s}", "release", jint(release), "version", version,
                           "reason", reason));
    if (s->active < 0) {
        schedule_restart(s);
        return;
    }
    const child *a = &s->kids[s->active];
    lp_log_event(s->log, LP_LOG_INFO, "still serving",
                 json_pack("{s:i,s:I,s:s}", "pid", (int)a->pid, "release", jint(a->release),
                           "version", a->version));
    if (release != a->release) {
        s->failed_release = release;
        roll_back(s, release, a->release, reason);
    }
}

static void cand_failed(lp_sup *s, const char *reason)
{
    child *c = &s->kids[s->cand];
    s->cand = -1;
    retire(s, c);
    give_up(s, c->release, c->version, reason);
}

/* Finds the command for release folder `dir`. */
static lp_status resolve_command(const lp_sup *s, const char *dir, char *out, size_t cap,
                                 lp_error *err)
{
    const char *cmd = s->argv[0];
    if (strchr(cmd, '/')) {
        if (cmd[0] == '/')
            snprintf(out, cap, "%s", cmd);
        else
            snprintf(out, cap, "%s/%s", dir, cmd);
        struct stat st;
        if (stat(out, &st) != 0)
            return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO,
                                "cannot run %s: %s", out, strerror(errno));
        if (!S_ISREG(st.st_mode) || access(out, X_OK) != 0)
            return lp_error_set(err, LP_ERR_IO, "cannot run %s: not an executable file", out);
        return LP_OK;
    }
    const char *p = s->path;
    while (*p || p == s->path) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        if (n == 0)
            snprintf(out, cap, "%s/%s", dir, cmd);
        else if (p[0] == '/')
            snprintf(out, cap, "%.*s/%s", (int)n, p, cmd);
        else
            snprintf(out, cap, "%s/%.*s/%s", dir, (int)n, p, cmd);
        struct stat st;
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
            return LP_OK;
        if (!colon)
            break;
        p = colon + 1;
    }
    return lp_error_set(err, LP_ERR_NOT_FOUND, "cannot run %s: not found in PATH %s", cmd,
                        s->path);
}

static bool env_replaced(const char *e)
{
    static const char *const names[] = {"LISTEN_FDS=",           "LISTEN_PID=",
                                        "LISTEN_FDNAMES=",       "NOTIFY_SOCKET=",
                                        "LIVEPUSH_INSTALL_ROOT=", "LIVEPUSH_RELEASE_DIR=",
                                        "LIVEPUSH_RELEASE_ID=",  "LIVEPUSH_RELEASE_VERSION="};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strncmp(e, names[i], strlen(names[i])))
            return true;
    return false;
}

/* The environment of a child: ours less what we set, plus what we set.  The
 * strings we add are in `own` (freed by the caller); *pid_slot is where the
 * child writes its pid. */
#define OWN_ENV 8
static char **child_env(const lp_sup *s, const char *dir, uint64_t id, const char *version,
                        char *own[OWN_ENV], char **pid_slot)
{
    size_t n = 0;
    while (environ && environ[n] && n < ENV_MAX_ENTRIES)
        n++;
    char **env = calloc(n + OWN_ENV + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!env_replaced(environ[i]))
            env[k++] = environ[i];
    memset(own, 0, OWN_ENV * sizeof *own);
    size_t o = 0;
    bool ok = true;
    if (s->nlisten) {
        ok = ok && asprintf(&own[o++], "LISTEN_FDS=%zu", s->nlisten) >= 0;
        ok = ok && asprintf(&own[o++], "LISTEN_PID=%20s", "") >= 0;
        if (ok)
            *pid_slot = own[o - 1] + strlen("LISTEN_PID=");
        ok = ok && (own[o++] = strdup(s->fdnames)) != NULL;
    } else {
        *pid_slot = NULL;
    }
    ok = ok && asprintf(&own[o++], "NOTIFY_SOCKET=%s", s->notify_path) >= 0;
    ok = ok && asprintf(&own[o++], "LIVEPUSH_INSTALL_ROOT=%s", s->root) >= 0;
    ok = ok && asprintf(&own[o++], "LIVEPUSH_RELEASE_DIR=%s", dir) >= 0;
    ok = ok && asprintf(&own[o++], "LIVEPUSH_RELEASE_ID=%" PRIu64, id) >= 0;
    ok = ok && asprintf(&own[o++], "LIVEPUSH_RELEASE_VERSION=%s", version) >= 0;
    if (!ok) {
        for (size_t i = 0; i < OWN_ENV; i++)
            free(own[i]);
        memset(own, 0, OWN_ENV * sizeof *own);
        free(env);
        return NULL;
    }
    for (size_t i = 0; i < o; i++)
        env[k++] = own[i];
    env[k] = NULL;
    return env;
}

static void child_write(const char *a, const char *b, const char *c)
{
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(parts[i]);
        while (n) {
            ssize_t w = write(2, parts[i], n);
            if (w <= 0)
                return;
            parts[i] += w;
            n -= (size_t)w;
        }
    }
}

/* Between fork and execve: async-signal-safe calls only. */
static _Noreturn void child_exec(const lp_sup *s, pid_t parent, const char *path,
                                 const char *dir, char **env, char *pid_slot)
{
    sigprocmask(SIG_SETMASK, &s->old_mask, NULL);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(1);
    for (size_t i = 0; i < s->nlisten; i++)
        if (dup2(s->lfd[i], 3 + (int)i) < 0) {
            child_write("livepush run: dup2: ", strerror(errno), "\n");
            _exit(126);
        }
    int first = 3 + (int)s->nlisten;
    if (close_range((unsigned)first, ~0u, 0) != 0)
        for (int fd = first; fd < s->max_fd; fd++)
            close(fd);
    if (pid_slot) {
        char digits[24];
        int n = 0;
        for (pid_t p = getpid(); p > 0 && n < 20; p /= 10)
            digits[n++] = (char)('0' + p % 10);
        for (int i = 0; i < n; i++)
            pid_slot[i] = digits[n - 1 - i];
        pid_slot[n] = '\0';
    }
    if (chdir(dir) != 0) {
        child_write("livepush run: cd ", dir, ": failed\n");
        _exit(126);
    }
    execve(path, s->argv, env);
    int e = errno;
    child_write("livepush run: cannot run ", path, e == ENOENT ? ": not found\n" : ": exec failed\n");
    _exit(e == ENOENT ? 127 : 126);
}

static int free_slot(const lp_sup *s)
{
    for (int i = 0; i < (int)LP_SUP_MAX_CHILDREN; i++)
        if (s->kids[i].role == ROLE_FREE)
            return i;
    return -1;
}

/* Starts a process of the current release as the candidate. */
static void spawn(lp_sup *s, const char *why)
{
    int slot = free_slot(s);
    if (slot < 0) {
        lp_log_event(s->log, LP_LOG_WARN, "start deferred",
                     json_pack("{s:s,s:i}", "why", "too many processes still stopping", "max",
                               (int)LP_SUP_MAX_CHILDREN));
        return;
    }
    lp_error e;
    uint64_t serving = s->active >= 0 ? s->kids[s->active].release : 0, cur = 0;
    if (read_current(s, &cur, &e))
        cur = 0;
    /* Every start counts as a launch (a crash loop on probation rolls back
     * by its launch limit), except a restart of the release that serves. */
    if (!(serving && cur == serving)) {
        lp_probation_outcome po = LP_PROBATION_NONE;
        if (lp_device_launch(s->dev, (int64_t)time(NULL), &po, &e))
            lp_log_event(s->log, LP_LOG_WARN, "launch not counted",
                         json_pack("{s:s}", "error", e.msg));
        else if (po == LP_PROBATION_ROLLED_BACK)
            lp_log_event(s->log, LP_LOG_WARN, "rolled back at launch",
                         json_pack("{s:I,s:s}", "release", jint(cur), "reason",
                                   "past its probation limits"));
    }
    uint64_t id;
    char version[LP_UPDATER_MAX_VERSION + 1];
    bool probation;
    current_release(s, &id, version, sizeof version, &probation);
    if (!id)
        return;
    if (serving && id == serving && strcmp(why, "SIGHUP") != 0)
        return; /* rolled back at launch to what serves: nothing to start */
    char dir[PATH_MAX + 32], path[2 * PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/releases/%" PRIu64, s->root, id);
    s->ever_started = true;
    struct stat st;
    lp_status rs = LP_OK;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        rs = lp_error_set(&e, LP_ERR_NOT_FOUND, "release folder %s is missing", dir);
    if (!rs)
        rs = resolve_command(s, dir, path, sizeof path, &e);
    char *own[OWN_ENV], *pid_slot = NULL, **env = NULL;
    if (!rs && !(env = child_env(s, dir, id, version, own, &pid_slot)))
        rs = lp_error_set(&e, LP_ERR_NOMEM, "out of memory");
    pid_t pid = -1, me = getpid();
    int64_t t0 = mono_ms();
    if (!rs) {
        fflush(NULL);
        t0 = mono_ms();
        pid = fork();
        if (pid == 0)
            child_exec(s, me, path, dir, env, pid_slot);
        if (pid < 0)
            rs = lp_error_set(&e, LP_ERR_IO, "fork: %s", strerror(errno));
    }
    if (env) {
        for (size_t i = 0; i < OWN_ENV; i++)
            free(own[i]);
        free(env);
    }
    if (rs) {
        char reason[LP_ERROR_MSG_MAX + 64];
        snprintf(reason, sizeof reason, "release %" PRIu64 " could not be started: %s", id,
                 e.msg);
        give_up(s, id, version, reason);
        return;
    }
    setpgid(pid, pid); /* also done by the child: whichever runs first */
    child *c = &s->kids[slot];
    memset(c, 0, sizeof *c);
    c->role = ROLE_STARTING;
    c->pid = pid;
    c->release = id;
    snprintf(c->version, sizeof c->version, "%s", version);
    c->why = why;
    c->started_ms = t0;
    c->deadline_ms = c->started_ms + s->ready_timeout_ms;
    s->cand = slot;
    lp_log_event(s->log, LP_LOG_INFO, "starting",
                 json_pack("{s:i,s:I,s:s,s:s,s:s}", "pid", (int)pid, "release", jint(id),
                           "version", version, "why", why, "command", path));
}

/* The candidate said READY=1. */
static void cand_ready(lp_sup *s)
{
    child *c = &s->kids[s->cand];
    int64_t now = mono_ms();
    c->ready_ms = now;
    lp_log_event(s->log, LP_LOG_INFO, "ready",
                 json_pack("{s:i,s:I,s:s,s:I,s:s}", "pid", (int)c->pid, "release",
                           jint(c->release), "version", c->version, "ready_ms",
                           (json_int_t)(now - c->started_ms), "why", c->why));
    if (s->active >= 0) {
        lp_error e;
        uint64_t cur;
        if (!read_current(s, &cur, &e) && cur && cur != c->release) {
            lp_log_event(s->log, LP_LOG_WARN, "stale start",
                         json_pack("{s:i,s:I,s:I,s:s}", "pid", (int)c->pid, "release",
                                   jint(c->release), "current", jint(cur), "why",
                                   "current switched again while it started: retired"));
            s->cand = -1;
            retire(s, c);
            return;
        }
        child *old = &s->kids[s->active];
        retire(s, old);
        lp_log_event(s->log, LP_LOG_INFO, "retiring",
                     json_pack("{s:i,s:I,s:s,s:i}", "pid", (int)old->pid, "release",
                               jint(old->release), "version", old->version, "replaced_by",
                               (int)c->pid));
    }
    c->role = ROLE_ACTIVE;
    s->active = s->cand;
    s->cand = -1;
    if (c->release == s->failed_release)
        s->failed_release = 0;
    s->healthy_at = s->healthy_after_ms ? now + s->healthy_after_ms : 0;
    remember_serving(s, c->release);
}

static void child_exited(lp_sup *s, int i, int status)
{
    child *c = &s->kids[i];
    kill(-c->pid, SIGKILL); /* whatever is left of its process group */
    int64_t now = mono_ms();
    char how[128];
    describe_exit(status, how, sizeof how);
    int code = exit_code_of(status);
    child gone = *c;
    c->role = ROLE_FREE;
    if (gone.pid == s->stop_pid)
        s->exit_code = code;
    if (i == s->active) {
        s->active = -1;
        s->healthy_at = 0;
        s->exit_code = s->stopping ? s->exit_code : code;
        lp_log_event(s->log, s->stopping ? LP_LOG_INFO : LP_LOG_WARN,
                     s->stopping ? "stopped" : "exited",
                     json_pack("{s:i,s:I,s:s,s:s,s:I}", "pid", (int)gone.pid, "release",
                               jint(gone.release), "version", gone.version, "how", how,
                               "uptime_ms", (json_int_t)(now - gone.started_ms)));
        if (!s->stopping) {
            if (gone.ready_ms && now - gone.ready_ms >= (int64_t)s->restart_delay_max_ms)
                s->backoff_ms = s->restart_delay_ms;
            if (s->cand < 0)
                schedule_restart(s);
        }
    } else if (i == s->cand) {
        s->cand = -1;
        if (!s->stopping) {
            s->exit_code = code;
            char reason[512];
            snprintf(reason, sizeof reason,
                     "process %d of release %" PRIu64 " %s before it was ready", (int)gone.pid,
                     gone.release, how);
            give_up(s, gone.release, gone.version, reason);
        } else {
            lp_log_event(s->log, LP_LOG_INFO, "stopped",
                         json_pack("{s:i,s:I,s:s}", "pid", (int)gone.pid, "release",
                                   jint(gone.release), "how", how));
        }
    } else {
        lp_log_event(s->log, LP_LOG_INFO, "retired",
                     json_pack("{s:i,s:I,s:s,s:s,s:I}", "pid", (int)gone.pid, "release",
                               jint(gone.release), "version", gone.version, "how", how,
                               "drain_ms",
                               (json_int_t)(gone.term_ms ? now - gone.term_ms : 0)));
    }
}

static void reap(lp_sup *s)
{
    for (int i = 0; i < (int)LP_SUP_MAX_CHILDREN; i++) {
        if (s->kids[i].role == ROLE_FREE)
            continue;
        int status;
        pid_t r = waitpid(s->kids[i].pid, &status, WNOHANG);
        if (r == s->kids[i].pid)
            child_exited(s, i, status);
        else if (r < 0 && errno == ECHILD)
            child_exited(s, i, 0xff00); /* reaped elsewhere: "exited with status 255" */
    }
}

static void begin_stop(lp_sup *s, int sig)
{
    int64_t now = mono_ms();
    if (s->stopping) {
        lp_log_event(s->log, LP_LOG_WARN, "killing",
                     json_pack("{s:s}", "why", "second stop signal"));
        for (size_t i = 0; i < LP_SUP_MAX_CHILDREN; i++)
            if (s->kids[i].role != ROLE_FREE) {
                kill(-s->kids[i].pid, SIGKILL);
                kill(s->kids[i].pid, SIGKILL);
                s->kids[i].kill_sent = true;
            }
        return;
    }
    s->stopping = true;
    s->stop_pid = s->active >= 0 ? s->kids[s->active].pid
                                 : s->cand >= 0 ? s->kids[s->cand].pid : 0;
    lp_log_event(s->log, LP_LOG_INFO, "stopping",
                 json_pack("{s:s}", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM"));
    for (size_t i = 0; i < LP_SUP_MAX_CHILDREN; i++) {
        child *c = &s->kids[i];
        if (c->role == ROLE_FREE || c->term_ms)
            continue;
        c->term_ms = now;
        c->deadline_ms = now + s->stop_timeout_ms;
        kill(c->pid, SIGTERM);
    }
}

/* ---- the loop ------------------------------------------------------------------ */

static void read_signals(lp_sup *s)
{
    struct signalfd_siginfo si;
    bool chld = false;
    while (read(s->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGCHLD)
            chld = true;
        else if (si.ssi_signo == SIGHUP && !s->stopping) {
            s->hup = true;
            lp_log_event(s->log, LP_LOG_INFO, "restart requested",
                         json_pack("{s:s}", "signal", "SIGHUP"));
        } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            begin_stop(s, (int)si.ssi_signo);
    }
    if (chld)
        reap(s);
}

static int child_of(const lp_sup *s, pid_t sender)
{
    for (int i = 0; i < (int)LP_SUP_MAX_CHILDREN; i++)
        if (s->kids[i].role != ROLE_FREE && s->kids[i].pid == sender)
            return i;
    pid_t g = getpgid(sender);
    for (int i = 0; g > 0 && i < (int)LP_SUP_MAX_CHILDREN; i++)
        if (s->kids[i].role != ROLE_FREE && s->kids[i].pid == g)
            return i;
    return -1;
}

static void read_notify(lp_sup *s)
{
    for (;;) {
        char buf[LP_SUP_MAX_NOTIFY + 1];
        union {
            struct cmsghdr h;
            char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 16)];
        } ctl;
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                            .msg_controllen = sizeof ctl.b};
        ssize_t n = recvmsg(s->notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                lp_log_event(s->log, LP_LOG_WARN, "notify socket",
                             json_pack("{s:s}", "error", strerror(errno)));
            return;
        }
        bool have_cred = false;
        struct ucred cred;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET)
                continue;
            if (cm->cmsg_type == SCM_CREDENTIALS && cm->cmsg_len == CMSG_LEN(sizeof cred)) {
                memcpy(&cred, CMSG_DATA(cm), sizeof cred);
                have_cred = true;
            } else if (cm->cmsg_type == SCM_RIGHTS) {
                size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t k = 0; k < nfd; k++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof fd);
                    close(fd); /* descriptors are not kept (no fd store) */
                }
            }
        }
        if (!have_cred) {
            lp_log_event(s->log, LP_LOG_WARN, "notify dropped",
                         json_pack("{s:s}", "why", "no sender credentials"));
            continue;
        }
        if ((size_t)n > LP_SUP_MAX_NOTIFY || (mh.msg_flags & MSG_TRUNC)) {
            lp_log_event(s->log, LP_LOG_WARN, "notify dropped",
                         json_pack("{s:i,s:s}", "sender", (int)cred.pid, "why", "too long"));
            continue;
        }
        int who = child_of(s, cred.pid);
        if (who < 0) {
            lp_log_event(s->log, LP_LOG_WARN, "notify dropped",
                         json_pack("{s:i,s:s}", "sender", (int)cred.pid, "why",
                                   "not a process of the app"));
            continue;
        }
        lp_sup_notice nt;
        lp_error e;
        if (lp_sup_notice_parse(buf, (size_t)n, &nt, &e)) {
            lp_log_event(s->log, LP_LOG_WARN, "notify dropped",
                         json_pack("{s:i,s:s}", "sender", (int)cred.pid, "why", e.msg));
            continue;
        }
        child *c = &s->kids[who];
        if (nt.has_status)
            lp_log_event(s->log, LP_LOG_DEBUG, "status",
                         json_pack("{s:i,s:I,s:s}", "pid", (int)c->pid, "release",
                                   jint(c->release), "status", nt.status));
        if (nt.stopping)
            lp_log_event(s->log, LP_LOG_DEBUG, "process stopping",
                         json_pack("{s:i,s:I}", "pid", (int)c->pid, "release",
                                   jint(c->release)));
        if (nt.ready && who == s->cand && c->role == ROLE_STARTING && !c->term_ms &&
            !s->stopping)
            cand_ready(s);
    }
}

static void drain_inotify(lp_sup *s)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(s->ino_fd, buf, sizeof buf);
        if (n <= 0)
            return;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
                lp_log_event(s->log, LP_LOG_WARN, "watch lost",
                             json_pack("{s:s,s:s}", "root", s->root, "why",
                                       "the install root was moved or removed; polling"));
                close(s->ino_fd);
                s->ino_fd = -1;
                return;
            }
            p += sizeof *ev + ev->len;
        }
    }
}

static void mark_healthy(lp_sup *s)
{
    s->healthy_at = 0;
    if (s->active < 0)
        return;
    const child *a = &s->kids[s->active];
    uint64_t cur;
    char version[LP_UPDATER_MAX_VERSION + 1];
    bool probation;
    current_release(s, &cur, version, sizeof version, &probation);
    if (!probation || cur != a->release)
        return;
    lp_error e;
    if (lp_device_mark_healthy(s->dev, a->release, &e))
        lp_log_event(s->log, LP_LOG_WARN, "not marked healthy",
                     json_pack("{s:I,s:s}", "release", jint(a->release), "error", e.msg));
    else
        lp_log_event(s->log, LP_LOG_INFO, "marked healthy",
                     json_pack("{s:I,s:s,s:I}", "release", jint(a->release), "version",
                               a->version, "after_ms", (json_int_t)s->healthy_after_ms));
}

/* Acts on the deadlines that passed. */
static void timers(lp_sup *s, int64_t now)
{
    if (s->cand >= 0 && !s->stopping && now >= s->kids[s->cand].deadline_ms) {
        const child *c = &s->kids[s->cand];
        char reason[512];
        snprintf(reason, sizeof reason,
                 "process %d of release %" PRIu64 " was not ready within %u ms", (int)c->pid,
                 c->release, (unsigned)s->ready_timeout_ms);
        cand_failed(s, reason);
    }
    for (size_t i = 0; i < LP_SUP_MAX_CHILDREN; i++) {
        child *c = &s->kids[i];
        if (c->role == ROLE_FREE || !c->term_ms || c->kill_sent || now < c->deadline_ms)
            continue;
        kill(-c->pid, SIGKILL);
        kill(c->pid, SIGKILL);
        c->kill_sent = true;
        lp_log_event(s->log, LP_LOG_WARN, "killed",
                     json_pack("{s:i,s:I,s:s,s:I}", "pid", (int)c->pid, "release",
                               jint(c->release), "why", "still running after the stop timeout",
                               "stop_timeout_ms", (json_int_t)s->stop_timeout_ms));
    }
    if (!s->stopping && s->healthy_at && now >= s->healthy_at)
        mark_healthy(s);
}

/* The next deadline that timers() or reconcile() acts on (INT64_MAX: none). */
static int64_t next_deadline(const lp_sup *s, int64_t now)
{
    int64_t next = INT64_MAX;
    if (s->cand >= 0 && !s->stopping)
        next = s->kids[s->cand].deadline_ms;
    for (size_t i = 0; i < LP_SUP_MAX_CHILDREN; i++) {
        const child *c = &s->kids[i];
        if (c->role != ROLE_FREE && c->term_ms && !c->kill_sent && c->deadline_ms < next)
            next = c->deadline_ms;
    }
    if (!s->stopping && s->healthy_at && s->healthy_at < next)
        next = s->healthy_at;
    /* a back-off that ran out while nothing could be started (no release
     * yet) is looked at again at the next poll, not in a busy loop */
    if (!s->stopping && s->restart_at > now && s->active < 0 && s->cand < 0 &&
        s->restart_at < next)
        next = s->restart_at;
    return next;
}

/* Starts what should run: the current release when nothing serves (after
 * the back-off), a new process when `current` moved or on SIGHUP. */
static void reconcile(lp_sup *s)
{
    if (s->stopping || s->cand >= 0)
        return;
    uint64_t cur;
    lp_error e;
    if (read_current(s, &cur, &e)) {
        if (!s->bad_current_logged)
            lp_log_event(s->log, LP_LOG_ERROR, "current unreadable",
                         json_pack("{s:s}", "error", e.msg));
        s->bad_current_logged = true;
        return;
    }
    s->bad_current_logged = false;
    if (s->active < 0) {
        if (!cur) {
            if (!s->waiting_logged)
                lp_log_event(s->log, LP_LOG_WARN, "waiting for a release",
                             json_pack("{s:s}", "root", s->root));
            s->waiting_logged = true;
            return;
        }
        if (s->restart_at && mono_ms() < s->restart_at)
            return;
        s->restart_at = 0;
        s->hup = false;
        spawn(s, s->ever_started ? "restart after exit" : "start");
        return;
    }
    if (s->hup) {
        s->hup = false;
        s->failed_release = 0;
        spawn(s, "SIGHUP");
        return;
    }
    if (!cur || cur == s->kids[s->active].release || cur == s->failed_release)
        return;
    if (s->nswap && try_adopt(s, cur))
        return;
    spawn(s, "release switched");
}

static bool any_child(const lp_sup *s)
{
    for (size_t i = 0; i < LP_SUP_MAX_CHILDREN; i++)
        if (s->kids[i].role != ROLE_FREE)
            return true;
    return false;
}

lp_status lp_sup_run(lp_sup *s, int *exit_code, lp_error *err)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, &s->old_mask) != 0)
        return lp_error_set(err, LP_ERR_IO, "supervisor: sigprocmask: %s", strerror(errno));
    lp_status st = LP_OK;
    s->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->sig_fd < 0)
        st = lp_error_set(err, LP_ERR_IO, "supervisor: signalfd: %s", strerror(errno));
    if (!st && !s->no_watch) {
        s->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (s->ino_fd < 0 ||
            inotify_add_watch(s->ino_fd, s->root,
                              IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
            lp_log_event(s->log, LP_LOG_WARN, "no watch",
                         json_pack("{s:s,s:s}", "root", s->root, "error", strerror(errno)));
            if (s->ino_fd >= 0)
                close(s->ino_fd);
            s->ino_fd = -1;
        }
    }
    if (!st) {
        json_t *addrs = json_array();
        for (size_t i = 0; i < s->nlisten; i++)
            json_array_append_new(addrs, json_pack("{s:s,s:s,s:i}", "name", s->spec[i].name,
                                                   "address", s->address[i], "fd", 3 + (int)i));
        lp_log_event(s->log, LP_LOG_INFO, "supervisor started",
                     json_pack("{s:s,s:s,s:o,s:s,s:b,s:I,s:I}", "root", s->root, "command",
                               s->argv[0], "listen", addrs, "notify_socket", s->notify_path,
                               "watch", s->ino_fd >= 0, "ready_timeout_ms",
                               (json_int_t)s->ready_timeout_ms, "stop_timeout_ms",
                               (json_int_t)s->stop_timeout_ms));
    }
    while (!st) {
        timers(s, mono_ms());
        reconcile(s);
        if (s->stopping && !any_child(s))
            break;
        int64_t now = mono_ms(), next = next_deadline(s, now);
        int64_t wait = s->stopping ? INT64_MAX : (int64_t)s->poll_interval_ms;
        if (next != INT64_MAX && next - now < wait)
            wait = next - now;
        if (wait < 0)
            wait = 0;
        if (wait > 60000)
            wait = 60000;
        struct pollfd pf[3] = {{.fd = s->sig_fd, .events = POLLIN},
                               {.fd = s->notify_fd, .events = POLLIN},
                               {.fd = s->ino_fd, .events = POLLIN}};
        int np = poll(pf, s->ino_fd >= 0 ? 3 : 2, (int)wait);
        if (np < 0) {
            if (errno == EINTR)
                continue;
            st = lp_error_set(err, LP_ERR_IO, "supervisor: poll: %s", strerror(errno));
            break;
        }
        if (pf[1].revents)
            read_notify(s);
        if (pf[0].revents)
            read_signals(s);
        if (s->ino_fd >= 0 && pf[2].revents)
            drain_inotify(s);
    }
    if (st) {
        /* The loop itself failed: nothing can watch the processes any more. */
        for (size_t i = 0; i < LP_SUP_MAX_CHILDREN; i++)
            if (s->kids[i].role != ROLE_FREE) {
                kill(-s->kids[i].pid, SIGKILL);
                kill(s->kids[i].pid, SIGKILL);
                waitpid(s->kids[i].pid, NULL, 0);
                s->kids[i].role = ROLE_FREE;
            }
    } else {
        lp_log_event(s->log, LP_LOG_INFO, "supervisor stopped",
                     json_pack("{s:i}", "exit_code", s->exit_code));
    }
    if (s->sig_fd >= 0)
        close(s->sig_fd);
    if (s->ino_fd >= 0)
        close(s->ino_fd);
    s->sig_fd = s->ino_fd = -1;
    sigprocmask(SIG_SETMASK, &s->old_mask, NULL);
    if (exit_code)
        *exit_code = st ? 1 : s->exit_code;
    return st;
}
