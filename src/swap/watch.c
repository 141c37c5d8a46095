/*
 * watch.c — following an install root of the livepush agent.
 *
 * The agent switches releases by renaming a new symlink over
 * `<root>/current`.  The host reads the link on every tick (polling works
 * everywhere) and, where inotify is available, is woken at once by the
 * rename (IN_MOVED_TO / IN_CREATE on the root folder).  The link's target
 * is resolved once per check, so a slot loads `<root>/<target>/<module_path>`
 * of one release even if `current` moves again meanwhile.
 *
 * Per slot: the target last considered, whether a release waits for the
 * running probation to end, and the identity (device, inode, size, mtime)
 * of the last file refused, which is not tried again until `current`
 * changes.  A file that is the live version's file (the same inode: the
 * agent hard-links unchanged files between releases; or the same SHA-256)
 * is not loaded again.  If, during a probation, `current` goes back to the
 * release of the previous version's file, the new version is rolled back:
 * the agent rolled the release back.  A version loaded from a target of the
 * agent's form "releases/<id>" remembers the id: a rollback by its
 * probation is reported to the agent for that release (report.c).
 */
#include "swap/swap_priv.h"

#include "livepush/hash.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

void lp_swap_watch_setup(lp_swap_host *h)
{
    pthread_mutex_lock(&h->mu);
    if (h->inotify_fd < 0)
        h->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (h->inotify_fd >= 0 && h->inotify_wd < 0)
        h->inotify_wd = inotify_add_watch(h->inotify_fd, h->install_root,
                                          IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ONLYDIR);
    pthread_mutex_unlock(&h->mu);
}

enum action { ACT_NONE, ACT_UPDATE };

uint64_t lp_swap_release_of(const char *target)
{
    static const char pre[] = "releases/";
    if (strncmp(target, pre, sizeof pre - 1) != 0)
        return 0;
    const char *d = target + sizeof pre - 1;
    size_t n = strlen(d);
    if (n == 0 || n > 20 || d[0] == '0')
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (d[i] < '0' || d[i] > '9' || v > (UINT64_MAX - (uint64_t)(d[i] - '0')) / 10)
            return 0;
        v = v * 10 + (uint64_t)(d[i] - '0');
    }
    return v;
}

static bool same_file(const struct stat *sb, const lp_swap_version *v)
{
    return v && sb->st_dev == v->dev && sb->st_ino == v->ino;
}

static void set_seen(lp_swap_slot *s, const char *target)
{
    char *t = strdup(target);
    if (t) {
        free(s->seen_target);
        s->seen_target = t;
    }
}

/* Decides what to do for one slot (op_mu held). */
static enum action consider(lp_swap_slot *s, const char *target, const char *full)
{
    lp_swap_host *h = s->host;
    bool changed = !s->seen_target || strcmp(s->seen_target, target) != 0;
    if (!changed && !s->watch_pending)
        return ACT_NONE;
    set_seen(s, target);
    s->watch_pending = false;
    struct stat sb;
    if (stat(full, &sb) != 0) {
        if (changed) {
            char msg[LP_ERROR_MSG_MAX];
            snprintf(msg, sizeof msg, "slot %s: release %s has no module %s: %s", s->name,
                     target, s->module_path, strerror(errno));
            lp_swap_event ev = {.kind = LP_SWAP_EV_REFUSED, .slot = s->name, .version = "",
                                .other = "", .path = full, .message = msg};
            lp_swap_emit(h, &ev);
            atomic_fetch_add(&s->refusals, 1);
        }
        return ACT_NONE;
    }
    lp_swap_version *live = s->active;
    lp_swap_version *prev = s->probation ? s->probation->prev : NULL;
    if (same_file(&sb, live))
        return ACT_NONE;
    bool back = same_file(&sb, prev);
    if (!back && s->tried_valid && sb.st_dev == s->tried_dev && sb.st_ino == s->tried_ino &&
        sb.st_size == s->tried_size &&
        (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec == s->tried_mtime_ns)
        return ACT_NONE;
    if (!back && (live || prev)) {
        uint8_t d[LP_HASH_MAX_LEN];
        char hex[65];
        if (lp_hash_file(LP_HASH_SHA256, full, d, NULL, NULL) == LP_OK) {
            lp_hex_encode(d, LP_SHA256_LEN, hex);
            if (live && strcmp(hex, live->sha256) == 0)
                return ACT_NONE;
            back = prev && strcmp(hex, prev->sha256) == 0;
        }
    }
    if (back) {
        char why[LP_ERROR_MSG_MAX / 2];
        snprintf(why, sizeof why, "the install's current release went back to %s", target);
        lp_swap_end_rollback(s, s->probation, LP_SWAP_REASON_REQUESTED, why, NULL);
        return ACT_NONE;
    }
    if (s->probation) {
        s->watch_pending = true; /* after the probation */
        return ACT_NONE;
    }
    s->tried_valid = true;
    s->tried_dev = sb.st_dev;
    s->tried_ino = sb.st_ino;
    s->tried_size = sb.st_size;
    s->tried_mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    return ACT_UPDATE;
}

lp_status lp_swap_check_release(lp_swap_host *h, lp_error *err)
{
    if (!h)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "check release: no host");
    if (!h->install_root)
        return LP_OK;
    lp_swap_watch_setup(h);
    char link[LP_SWAP_PATH_MAX], target[LP_SWAP_PATH_MAX];
    snprintf(link, sizeof link, "%s/current", h->install_root);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0) {
        if (errno == ENOENT)
            return LP_OK; /* nothing installed yet */
        return lp_error_set(err, LP_ERR_IO, "install root: readlink %s: %s", link,
                            strerror(errno));
    }
    if ((size_t)n >= sizeof target - 1)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "install root: %s points to a path too long",
                            link);
    target[n] = '\0';
    lp_status st = LP_OK;
    pthread_mutex_lock(&h->mu);
    lp_swap_slot *s = h->slots;
    pthread_mutex_unlock(&h->mu);
    for (; s; ) {
        if (s->module_path) {
            char full[LP_SWAP_PATH_MAX];
            int len = target[0] == '/'
                          ? snprintf(full, sizeof full, "%s/%s", target, s->module_path)
                          : snprintf(full, sizeof full, "%s/%s/%s", h->install_root, target,
                                     s->module_path);
            if (len < 0 || (size_t)len >= sizeof full) {
                st = lp_error_set(err, LP_ERR_TOO_LARGE, "slot %s: module path in %s too long",
                                  s->name, target);
            } else {
                /* The load happens under the same hold of op_mu as the
                 * decision, so a second caller (the tick thread and the
                 * host at start, say) waits for it and then finds the
                 * release taken: when this returns, the module of the
                 * current release is live or was refused. */
                pthread_mutex_lock(&s->op_mu);
                lp_swap_settle(s, lp_swap_now_ms());
                if (consider(s, target, full) == ACT_UPDATE) /* a refusal is an event */
                    lp_swap_update_locked(s, full, lp_swap_release_of(target), NULL);
                pthread_mutex_unlock(&s->op_mu);
            }
        }
        pthread_mutex_lock(&h->mu);
        s = s->next;
        pthread_mutex_unlock(&h->mu);
    }
    lp_swap_reclaim_pass(h);
    lp_swap_deliver(h);
    return st;
}
