/*
 * layout.c — the install root: opening it, paths, locks, the device id and
 * the folder helpers the other agent files share (see agent.h).
 *
 * Opening creates what is missing (root, releases/, .livepush/ with
 * manifests/, staging/, trash/), resolves the root to an absolute path (hooks
 * and the `current` symlink's readers get a stable name), opens the two lock
 * files, makes the device id on the first open and runs the full recovery.
 *
 * Locks are flock(2) locks on files under .livepush/: the kernel drops them
 * when a process dies, so a crash never leaves a root locked.  Waiting is a
 * poll of LOCK_NB every 10 ms up to lock_timeout_ms, so no call blocks
 * without bound.  `lock` guards state.json and the `current` symlink;
 * `stage.lock` is held by a staging for its whole run, so recovery in
 * another process can tell a staging folder in use from a leftover.
 */
#include "agent/agent.h"

#include "core/file.h"
#include "livepush/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *lp_agent_path(const lp_updater *u, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    size_t rl = strlen(u->root);
    char *p = malloc(rl + 1 + (size_t)n + 1);
    if (!p)
        return NULL;
    memcpy(p, u->root, rl);
    p[rl] = '/';
    va_start(ap, fmt);
    vsnprintf(p + rl + 1, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

bool lp_agent_parse_id(const char *s, uint64_t *id)
{
    if (!s || !*s || *s == '0' || strlen(s) > 19)
        return false;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v > LP_AGENT_MAX_ID)
        return false;
    *id = v;
    return true;
}

bool lp_agent_release_exists(lp_updater *u, uint64_t id)
{
    char *p = lp_agent_path(u, "releases/%llu", (unsigned long long)id);
    struct stat sb;
    bool ok = p && lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
    free(p);
    return ok;
}

lp_status lp_agent_read_current(lp_updater *u, uint64_t *id, lp_error *err)
{
    *id = 0;
    char *p = lp_agent_path(u, "current");
    if (!p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    char buf[64];
    ssize_t n = readlink(p, buf, sizeof buf - 1);
    if (n < 0) {
        int e = errno;
        lp_status st = LP_OK;
        if (e == EINVAL)
            st = lp_error_set(err, LP_ERR_STATE, "%s: not a symlink", p);
        else if (e != ENOENT)
            st = lp_error_set(err, LP_ERR_IO, "readlink %s: %s", p, strerror(e));
        free(p);
        return st;
    }
    buf[n] = '\0';
    if ((size_t)n == sizeof buf - 1 || strncmp(buf, "releases/", 9) != 0 ||
        !lp_agent_parse_id(buf + 9, id)) {
        lp_status st = lp_error_set(err, LP_ERR_STATE,
                                    "%s: points to \"%.60s\", not to releases/<id>", p, buf);
        free(p);
        return st;
    }
    free(p);
    return LP_OK;
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        return errno ? errno : EIO;
    return 0;
}

lp_status lp_agent_rmtree(const char *path, lp_error *err)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT)
            return LP_OK;
        return lp_error_set(err, LP_ERR_IO, "stat %s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode)) {
        if (unlink(path) != 0 && errno != ENOENT)
            return lp_error_set(err, LP_ERR_IO, "remove %s: %s", path, strerror(errno));
        return LP_OK;
    }
    int r = nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (r != 0)
        return lp_error_set(err, LP_ERR_IO, "remove %s: %s", path,
                            strerror(r > 0 ? r : errno));
    return LP_OK;
}

lp_status lp_agent_sync_dir(const char *path, lp_error *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return lp_error_set(err, LP_ERR_IO, "open folder %s: %s", path, strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "fsync folder %s: %s", path, strerror(e));
    }
    close(fd);
    return LP_OK;
}

lp_status lp_agent_write_file(lp_updater *u, const char *path, const void *data, size_t len,
                              mode_t mode, const char *point, lp_error *err)
{
    size_t cap = strlen(path) + 32;
    char *tmp = malloc(cap);
    if (!tmp)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    int fd;
    lp_status st = lp_file_open_tmp(path, mode, tmp, cap, &fd, err);
    if (st) {
        free(tmp);
        return st;
    }
    if ((st = lp_file_write_all(fd, data, len, path, err))) {
        close(fd);
        unlink(tmp);
        free(tmp);
        return st;
    }
    lp_agent_crash_point(u, point);
    st = lp_file_commit_tmp(fd, tmp, path, err);
    free(tmp);
    return st;
}

/* ---- locks --------------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

lp_status lp_agent_lock(lp_updater *u, lp_error *err)
{
    if (u->locked)
        return lp_error_set(err, LP_ERR_STATE, "%s: lock taken twice by one handle", u->root);
    uint32_t waited = 0;
    for (;;) {
        if (flock(u->lock_fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK)
            return lp_error_set(err, LP_ERR_IO, "lock %s/lock: %s", u->dir, strerror(errno));
        if (waited >= u->lock_timeout_ms)
            return lp_error_set(err, LP_ERR_STATE,
                                "%s: locked by another process for more than %u ms", u->root,
                                u->lock_timeout_ms);
        sleep_ms(10);
        waited += 10;
    }
    u->locked = true;
    return LP_OK;
}

void lp_agent_unlock(lp_updater *u)
{
    if (!u->locked)
        return;
    flock(u->lock_fd, LOCK_UN);
    u->locked = false;
}

lp_status lp_agent_stage_lock(lp_updater *u, bool *got, lp_error *err)
{
    *got = false;
    for (;;) {
        if (flock(u->stage_lock_fd, LOCK_EX | LOCK_NB) == 0) {
            *got = true;
            return LP_OK;
        }
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            return LP_OK;
        return lp_error_set(err, LP_ERR_IO, "lock %s/stage.lock: %s", u->dir, strerror(errno));
    }
}

void lp_agent_stage_unlock(lp_updater *u)
{
    flock(u->stage_lock_fd, LOCK_UN);
}

/* ---- sessions --------------------------------------------------------------- */

lp_status lp_agent_begin(lp_updater *u, lp_agent_state *s, lp_error *err)
{
    lp_agent_state_init(s);
    lp_status st = lp_agent_lock(u, err);
    if (st)
        return st;
    bool existed = false, changed = false;
    st = lp_agent_state_read(u, s, &existed, err);
    if (!st)
        st = lp_agent_reconcile(u, s, false, &changed, err);
    if (!st && (changed || !existed))
        st = lp_agent_state_write(u, s, err);
    if (st)
        lp_agent_end(u, s);
    return st;
}

void lp_agent_end(lp_updater *u, lp_agent_state *s)
{
    lp_agent_state_free(s);
    lp_agent_unlock(u);
}

/* ---- opening ----------------------------------------------------------------- */

static lp_status open_lock_file(lp_updater *u, const char *name, int *fd, lp_error *err)
{
    char *p = lp_agent_path(u, ".livepush/%s", name);
    if (!p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    *fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    lp_status st = LP_OK;
    if (*fd < 0)
        st = lp_error_set(err, LP_ERR_IO, "open %s: %s", p, strerror(errno));
    free(p);
    return st;
}

static bool is_device_id(const char *s, size_t len)
{
    if (len == 33 && s[32] == '\n')
        len = 32;
    if (len != 32)
        return false;
    for (size_t i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* Reads the device id, or makes it when the file does not exist.  The lock
 * must be held.  A damaged file is an error, never replaced: the id is the
 * device's identity towards the server. */
static lp_status load_device_id(lp_updater *u, lp_error *err)
{
    char *p = lp_agent_path(u, ".livepush/device-id");
    if (!p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_file_read(p, 64, &data, &len, err);
    if (st == LP_ERR_NOT_FOUND) {
        uint8_t rnd[16];
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
            st = lp_error_set(err, LP_ERR_IO, "getrandom: %s", strerror(errno));
        } else {
            char line[34];
            lp_hex_encode(rnd, sizeof rnd, line);
            memcpy(u->device_id, line, 33);
            line[32] = '\n';
            line[33] = '\0';
            st = lp_file_write_atomic(p, line, 33, 0644, err);
        }
    } else if (st == LP_ERR_TOO_LARGE) {
        st = lp_error_set(err, LP_ERR_MALFORMED, "%s: expected 32 lower-case hex digits", p);
    } else if (!st) {
        if (!is_device_id((const char *)data, len))
            st = lp_error_set(err, LP_ERR_MALFORMED, "%s: expected 32 lower-case hex digits",
                              p);
        else {
            memcpy(u->device_id, data, 32);
            u->device_id[32] = '\0';
        }
    }
    free(data);
    free(p);
    return st;
}

static lp_status make_dirs(lp_updater *u, lp_error *err)
{
    static const struct {
        const char *name;
        mode_t mode;
    } dirs[] = {
        {"releases", 0755},           {".livepush", 0700},         {".livepush/manifests", 0700},
        {".livepush/staging", 0700}, {".livepush/trash", 0700},
    };
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char *p = lp_agent_path(u, "%s", dirs[i].name);
        if (!p)
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        lp_status st = lp_file_mkdirs(p, dirs[i].mode, err);
        free(p);
        if (st)
            return st;
    }
    return LP_OK;
}

static lp_status parse_crash_at(lp_updater *u, const char *spec, lp_error *err)
{
    const char *at = strchr(spec, '@');
    size_t n = at ? (size_t)(at - spec) : strlen(spec);
    u->crash_at = strndup(spec, n);
    if (!u->crash_at)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    u->crash_nth = 1;
    if (at) {
        uint64_t k;
        if (!lp_agent_parse_id(at + 1, &k) || k > 1000000)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "crash_at \"%s\": expected <point> or <point>@<count>", spec);
        u->crash_nth = (unsigned)k;
    }
    if (!lp_agent_crash_point_known(u->crash_at))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "crash_at \"%s\": no such crash point",
                            spec);
    return LP_OK;
}

static lp_status apply_config(lp_updater *u, const lp_updater_config *cfg, lp_error *err)
{
    if (!cfg || !cfg->root || !*cfg->root)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "updater: no install root given");
    if (cfg->probation_window_s < 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "updater: negative probation window");
    if (cfg->hook_output_max > LP_UPDATER_MAX_HOOK_OUTPUT)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "updater: hook_output_max %zu exceeds %u", cfg->hook_output_max,
                            LP_UPDATER_MAX_HOOK_OUTPUT);
    u->keep = cfg->keep ? cfg->keep : LP_UPDATER_DEFAULT_KEEP;
    u->window_s = cfg->probation_window_s ? cfg->probation_window_s
                                          : LP_UPDATER_DEFAULT_PROBATION_WINDOW_S;
    u->max_launches = cfg->probation_max_launches ? cfg->probation_max_launches
                                                  : LP_UPDATER_DEFAULT_PROBATION_MAX_LAUNCHES;
    u->hook_timeout_ms = cfg->hook_timeout_ms ? cfg->hook_timeout_ms
                                              : LP_UPDATER_DEFAULT_HOOK_TIMEOUT_MS;
    u->hook_kill_grace_ms = cfg->hook_kill_grace_ms ? cfg->hook_kill_grace_ms
                                                    : LP_UPDATER_DEFAULT_HOOK_KILL_GRACE_MS;
    u->hook_output_max = cfg->hook_output_max ? cfg->hook_output_max
                                              : LP_UPDATER_DEFAULT_HOOK_OUTPUT_MAX;
    u->verify_all = cfg->verify_all;
    u->reserve_bytes = cfg->reserve_bytes ? cfg->reserve_bytes : LP_UPDATER_DEFAULT_RESERVE_BYTES;
    u->lock_timeout_ms = cfg->lock_timeout_ms ? cfg->lock_timeout_ms
                                              : LP_UPDATER_DEFAULT_LOCK_TIMEOUT_MS;
    if (cfg->crash_at && *cfg->crash_at)
        return parse_crash_at(u, cfg->crash_at, err);
    return LP_OK;
}

lp_status lp_updater_open(const lp_updater_config *cfg, lp_updater **out, lp_error *err)
{
    *out = NULL;
    lp_updater *u = calloc(1, sizeof *u);
    if (!u)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    u->lock_fd = -1;
    u->stage_lock_fd = -1;
    lp_status st = apply_config(u, cfg, err);
    if (!st)
        st = lp_file_mkdirs(cfg->root, 0755, err);
    if (!st) {
        char real[PATH_MAX];
        if (!realpath(cfg->root, real))
            st = lp_error_set(err, LP_ERR_IO, "resolve %s: %s", cfg->root, strerror(errno));
        else if (!(u->root = strdup(real)))
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    if (!st) {
        u->dir = lp_agent_path(u, ".livepush");
        u->hooks_dir = cfg->hooks_dir ? strdup(cfg->hooks_dir) : lp_agent_path(u, "hooks");
        if (!u->dir || !u->hooks_dir)
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    if (!st)
        st = make_dirs(u, err);
    if (!st)
        st = open_lock_file(u, "lock", &u->lock_fd, err);
    if (!st)
        st = open_lock_file(u, "stage.lock", &u->stage_lock_fd, err);
    if (!st) {
        st = lp_agent_lock(u, err);
        if (!st) {
            st = load_device_id(u, err);
            lp_agent_unlock(u);
        }
    }
    if (!st)
        st = lp_updater_recover(u, err);
    if (st) {
        lp_updater_close(u);
        return lp_error_prefix(err, st, "opening install root %s",
                               cfg && cfg->root ? cfg->root : "");
    }
    *out = u;
    return LP_OK;
}

void lp_updater_close(lp_updater *u)
{
    if (!u)
        return;
    lp_agent_unlock(u);
    if (u->lock_fd >= 0)
        close(u->lock_fd);
    if (u->stage_lock_fd >= 0)
        close(u->stage_lock_fd);
    free(u->root);
    free(u->dir);
    free(u->hooks_dir);
    free(u->crash_at);
    free(u);
}

const char *lp_updater_root(const lp_updater *u)
{
    return u->root;
}

const char *lp_updater_device_id(const lp_updater *u)
{
    return u->device_id;
}
