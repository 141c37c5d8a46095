/*
 * hooks.c — running the hooks of an update or a rollback.
 *
 * At each point the C callback (lp_updater_set_hook) runs first, then the
 * executable <hooks_dir>/<point name> when it exists.  The executable runs
 * in a child made with fork/exec:
 *   - everything it needs (argv, the environment with the LIVEPUSH_*
 *     variables, the file descriptors) is prepared before fork, so the child
 *     only calls async-signal-safe functions between fork and exec (the
 *     caller may be multi-threaded);
 *   - it leads its own process group, so a time-out reaches whatever it
 *     started: SIGTERM to the group at hook_timeout_ms, SIGKILL after
 *     hook_kill_grace_ms more;
 *   - stdin is /dev/null; stdout and stderr share one pipe of which the last
 *     hook_output_max bytes are kept for the error message (a ring, so
 *     memory is bounded whatever the hook prints);
 *   - our own descriptors are all close-on-exec, so the hook inherits none
 *     (in particular not the install root's lock).
 * The parent polls the pipe in short slices and reaps the child with
 * waitpid(WNOHANG); once the child is gone, whatever is left in the pipe is
 * read without blocking (a background process that keeps the pipe open
 * cannot stall the updater).
 */
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *const hook_names[LP_HOOK_POINT_COUNT] = {
    "pre-update",
    "post-update",
    "pre-rollback",
    "post-rollback",
};

const char *lp_hook_point_name(lp_hook_point point)
{
    if ((unsigned)point >= LP_HOOK_POINT_COUNT)
        return "unknown";
    return hook_names[point];
}

lp_status lp_updater_set_hook(lp_updater *u, lp_hook_point point, lp_hook_fn fn, void *ctx,
                              lp_error *err)
{
    if ((unsigned)point >= LP_HOOK_POINT_COUNT)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "no hook point %d", (int)point);
    u->hooks[point].fn = fn;
    u->hooks[point].ctx = fn ? ctx : NULL;
    return LP_OK;
}

/* ---- output capture ------------------------------------------------------ */

typedef struct tail {
    char *buf;
    size_t cap, len;
    bool cut; /* earlier output was dropped */
} tail;

static void tail_add(tail *t, const char *p, size_t n)
{
    if (!t->cap)
        return;
    if (n >= t->cap) {
        t->cut = t->cut || t->len || n > t->cap;
        memcpy(t->buf, p + n - t->cap, t->cap);
        t->len = t->cap;
        return;
    }
    if (t->len + n > t->cap) {
        size_t drop = t->len + n - t->cap;
        memmove(t->buf, t->buf + drop, t->len - drop);
        t->len -= drop;
        t->cut = true;
    }
    memcpy(t->buf + t->len, p, n);
    t->len += n;
}

/* The kept output as one line of text: control characters become spaces,
 * runs of spaces one, and trailing space goes. */
static void tail_text(const tail *t, char *out, size_t cap)
{
    size_t o = 0;
    if (t->cut && cap > 4) {
        memcpy(out, "...", 3);
        o = 3;
    }
    for (size_t i = 0; i < t->len && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)t->buf[i];
        if (c < 0x20 || c == 0x7f)
            c = ' ';
        if (c == ' ' && (o == 0 || out[o - 1] == ' '))
            continue;
        out[o++] = (char)c;
    }
    while (o && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

/* ---- running an executable ------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The environment of the hook: ours without LIVEPUSH_* plus the hook's. */
typedef struct hook_env {
    char **envp;
    size_t count;
    char *own[9];
} hook_env;

static void env_free(hook_env *e)
{
    free(e->envp);
    for (size_t i = 0; i < sizeof e->own / sizeof e->own[0]; i++)
        free(e->own[i]);
}

static char *env_var(const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s=%s", name, value);
    return s;
}

static lp_status env_make(const lp_hook_info *info, hook_env *e, lp_error *err)
{
    memset(e, 0, sizeof *e);
    char old_id[24], new_id[24];
    snprintf(old_id, sizeof old_id, "%llu", (unsigned long long)info->old_id);
    snprintf(new_id, sizeof new_id, "%llu", (unsigned long long)info->new_id);
    size_t k = 0;
    e->own[k++] = env_var("LIVEPUSH_HOOK", info->hook);
    e->own[k++] = env_var("LIVEPUSH_INSTALL_ROOT", info->install_root);
    e->own[k++] = env_var("LIVEPUSH_RELEASE_DIR", info->release_dir);
    e->own[k++] = env_var("LIVEPUSH_OLD_VERSION", info->old_version);
    e->own[k++] = env_var("LIVEPUSH_NEW_VERSION", info->new_version);
    e->own[k++] = env_var("LIVEPUSH_OLD_ID", info->old_id ? old_id : "");
    e->own[k++] = env_var("LIVEPUSH_NEW_ID", new_id);
    if (info->reason)
        e->own[k++] = env_var("LIVEPUSH_REASON", info->reason);
    for (size_t i = 0; i < k; i++)
        if (!e->own[i]) {
            env_free(e);
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        }
    size_t n = 0;
    for (char **p = environ; p && *p; p++)
        n++;
    e->envp = calloc(n + k + 1, sizeof *e->envp);
    if (!e->envp) {
        env_free(e);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    for (char **p = environ; p && *p; p++)
        if (strncmp(*p, "LIVEPUSH_", 9) != 0)
            e->envp[e->count++] = *p;
    for (size_t i = 0; i < k; i++)
        e->envp[e->count++] = e->own[i];
    return LP_OK;
}

/* In the child: only async-signal-safe calls. */
static void child(const char *path, const char *cwd, char **envp, int devnull, int out_fd)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &dfl, NULL);
    sigaction(SIGTERM, &dfl, NULL);
    sigaction(SIGINT, &dfl, NULL);
    setpgid(0, 0);
    if (dup2(devnull, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
        _exit(126);
    if (chdir(cwd) != 0) {
        static const char m[] = "cannot enter the release folder\n";
        (void)!write(2, m, sizeof m - 1);
        _exit(126);
    }
    char *argv[] = {(char *)path, NULL};
    execve(path, argv, envp);
    static const char m[] = "exec failed\n";
    (void)!write(2, m, sizeof m - 1);
    _exit(127);
}

static void read_some(int fd, tail *t, bool *open_)
{
    char buf[4096];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) {
            tail_add(t, buf, (size_t)r);
            continue;
        }
        if (r == 0)
            *open_ = false;
        else if (errno == EINTR)
            continue;
        return; /* EAGAIN: nothing more for now */
    }
}

static lp_status run_exec(lp_updater *u, const char *path, const lp_hook_info *info,
                          lp_error *err)
{
    hook_env env;
    lp_status st = env_make(info, &env, err);
    if (st)
        return st;
    tail t = {malloc(u->hook_output_max), u->hook_output_max, 0, false};
    int fds[2] = {-1, -1};
    int devnull = -1;
    pid_t pid = -1;
    if (!t.buf) {
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        goto out;
    }
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* Only our end is non-blocking: the hook's writes must wait for us. */
    if (devnull < 0 || pipe2(fds, O_CLOEXEC) != 0 || fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) {
        st = lp_error_set(err, LP_ERR_IO, "%s hook: %s: %s", info->hook,
                          devnull < 0 ? "open /dev/null" : "pipe", strerror(errno));
        goto out;
    }
    pid = fork();
    if (pid < 0) {
        st = lp_error_set(err, LP_ERR_IO, "%s hook: fork: %s", info->hook, strerror(errno));
        goto out;
    }
    if (pid == 0)
        child(path, info->release_dir, env.envp, devnull, fds[1]);
    setpgid(pid, pid); /* also in the parent: no race with an early kill */
    close(fds[1]);
    fds[1] = -1;

    int64_t start = now_ms();
    int64_t term_at = start + u->hook_timeout_ms, kill_at = 0;
    bool pipe_open = true, exited = false;
    int status = 0, sent = 0;
    while (!exited) {
        int64_t now = now_ms();
        if (!sent && now >= term_at) {
            kill(-pid, SIGTERM);
            sent = SIGTERM;
            kill_at = now + u->hook_kill_grace_ms;
        } else if (sent == SIGTERM && now >= kill_at) {
            kill(-pid, SIGKILL);
            sent = SIGKILL;
        }
        if (pipe_open) {
            struct pollfd pfd = {fds[0], POLLIN, 0};
            int r = poll(&pfd, 1, 20);
            if (r > 0)
                read_some(fds[0], &t, &pipe_open);
        } else {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            exited = true;
        else if (w < 0 && errno != EINTR) {
            st = lp_error_set(err, LP_ERR_IO, "%s hook: waitpid: %s", info->hook,
                              strerror(errno));
            goto out;
        }
    }
    if (sent)
        kill(-pid, SIGKILL); /* what the hook started and left behind */
    pid = -1;
    if (pipe_open)
        read_some(fds[0], &t, &pipe_open);

    char what[96];
    if (sent)
        snprintf(what, sizeof what, "ran past its time limit of %u ms and was stopped with %s",
                 u->hook_timeout_ms, sent == SIGKILL ? "SIGKILL" : "SIGTERM");
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        goto out;
    else if (WIFEXITED(status))
        snprintf(what, sizeof what, "exited with status %d", WEXITSTATUS(status));
    else
        snprintf(what, sizeof what, "was killed by signal %d", WTERMSIG(status));
    char text[LP_UPDATER_MAX_HOOK_OUTPUT + 8];
    tail_text(&t, text, sizeof text);
    st = lp_error_set(err, LP_ERR_STATE, "%s hook %s %s%s%s", info->hook, path, what,
                      *text ? ": " : "", text);
out:
    if (pid > 0) {
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    if (devnull >= 0)
        close(devnull);
    free(t.buf);
    env_free(&env);
    return st;
}

lp_status lp_agent_run_hooks(lp_updater *u, const lp_hook_info *info, lp_error *err)
{
    lp_hook_point point = info->point;
    if ((unsigned)point >= LP_HOOK_POINT_COUNT)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "no hook point %d", (int)point);
    const char *name = hook_names[point];
    if (u->hooks[point].fn) {
        lp_error e;
        lp_error_clear(&e);
        lp_status st = u->hooks[point].fn(u->hooks[point].ctx, info, &e);
        if (st)
            return lp_error_set(err, st, "%s hook (callback) failed: %s", name,
                                e.msg[0] ? e.msg : lp_status_name(st));
    }
    size_t n = strlen(u->hooks_dir) + strlen(name) + 2;
    char *path = malloc(n);
    if (!path)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    snprintf(path, n, "%s/%s", u->hooks_dir, name);
    struct stat sb;
    lp_status st = LP_OK;
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT)
            st = lp_error_set(err, LP_ERR_IO, "%s hook: stat %s: %s", name, path,
                              strerror(errno));
    } else if (!S_ISREG(sb.st_mode) || access(path, X_OK) != 0) {
        st = lp_error_set(err, LP_ERR_STATE, "%s hook %s is not an executable file", name, path);
    } else {
        st = run_exec(u, path, info, err);
    }
    free(path);
    return st;
}
