/*
 * host.c — the swap host: opening and closing, calling threads, grace
 * periods, retired versions, events and the tick thread.
 *
 * Grace periods (the writer's side of the scheme described in
 * include/livepush/swap.h): a version is retired only after every pointer
 * to it was replaced.  Retiring advances the host's epoch to E and runs
 * membarrier(PRIVATE_EXPEDITED) so that every thread's epoch store is
 * ordered against that replacement: a reader whose store we may have
 * missed loads the slot's pointer after the barrier and sees the new
 * version.  The version may be unloaded once every thread's epoch is 0
 * (outside calls) or at least E (entered after the replacement).  The check
 * is a scan of the thread records under host->mu; nothing here ever waits
 * for a caller except lp_swap_reclaim, which polls that check.
 *
 * The tick also moves reports to the agent on (report.c); the tick thread
 * polls the socket of the attempt in flight so that the answer wakes it.
 *
 * Events are queued under host->mu and delivered with no lock held; ev_mu
 * (taken with trylock) makes one thread at a time deliver, in order, and a
 * callback that causes more events gets them delivered by the same loop.
 */
#include "swap/swap_priv.h"

#include <dlfcn.h>
#include <errno.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EVENT_QUEUE_MAX 1024u
#define ALTSTACK_SIZE (64u * 1024u)
#define CLOSE_GRACE_MS 2000u

uint64_t lp_swap_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t lp_swap_now_ms(void)
{
    return (int64_t)(lp_swap_now_ns() / 1000000u);
}

static long membarrier_call(int cmd)
{
    return syscall(__NR_membarrier, cmd, 0, 0);
}

/* 0 if expedited private membarrier is available and registered. */
static int membarrier_setup(void)
{
    long q = membarrier_call(MEMBARRIER_CMD_QUERY);
    if (q < 0 || !(q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) ||
        !(q & MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
        return -1;
    return membarrier_call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 ? 0 : -1;
}

/* Starts a grace period: returns its epoch, or 0 if the barrier failed
 * (the caller tries again later). */
static uint64_t gp_start(lp_swap_host *h)
{
    uint64_t e = __atomic_add_fetch(&h->epoch, 1, __ATOMIC_SEQ_CST);
    /* Orders the pointer stores before against the epoch reads after (the
     * other half of the readers' fence when they use fences). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!h->fence && membarrier_call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0)
        return 0;
    return e;
}

void lp_swap_wake(lp_swap_host *h)
{
    uint64_t one = 1;
    if (h->wake_fd >= 0 && write(h->wake_fd, &one, sizeof one) < 0) {
        /* full or closed: the tick comes anyway */
    }
}

/* ---- versions ---------------------------------------------------------- */

void lp_swap_version_free(lp_swap_version *v)
{
    if (!v)
        return;
    if (v->handle && !v->keep_mapped) {
        dlclose(v->handle);
        if (v->slot)
            atomic_fetch_sub(&v->slot->loaded, 1);
    }
    free(v->stats);
    free(v->path);
    free(v);
}

void lp_swap_retire(lp_swap_host *h, lp_swap_version *v)
{
    int st = atomic_load(&v->state);
    if (st != LP_SWAP_V_CRASHED && st != LP_SWAP_V_ROLLED_BACK)
        atomic_store(&v->state, LP_SWAP_V_RETIRED);
    pthread_mutex_lock(&h->mu);
    v->retire_epoch = gp_start(h);
    v->next = h->retired;
    h->retired = v;
    pthread_mutex_unlock(&h->mu);
}

unsigned lp_swap_reclaim_pass(lp_swap_host *h)
{
    lp_swap_version *done = NULL;
    unsigned left = 0;
    pthread_mutex_lock(&h->mu);
    if (!h->retired) {
        pthread_mutex_unlock(&h->mu);
        return 0;
    }
    for (lp_swap_version *v = h->retired; v; v = v->next)
        if (v->retire_epoch == 0)
            v->retire_epoch = gp_start(h);
    uint64_t min_active = UINT64_MAX;
    for (lp_swap_thread *t = h->threads; t; t = t->next) {
        uint64_t e = __atomic_load_n(&t->r.epoch, __ATOMIC_ACQUIRE);
        if (e != 0 && e < min_active)
            min_active = e;
    }
    lp_swap_version **pp = &h->retired;
    while (*pp) {
        lp_swap_version *v = *pp;
        if (v->retire_epoch != 0 && v->retire_epoch <= min_active) {
            *pp = v->next;
            v->next = done;
            done = v;
        } else {
            pp = &v->next;
            left++;
        }
    }
    pthread_mutex_unlock(&h->mu);
    while (done) {
        lp_swap_version *v = done;
        done = v->next;
        if (!v->keep_mapped && v->slot) {
            lp_swap_event ev = {.kind = LP_SWAP_EV_UNLOADED, .slot = v->slot->name,
                                .version = v->label, .other = "", .path = v->path};
            char msg[LP_ERROR_MSG_MAX];
            snprintf(msg, sizeof msg, "slot %s: version %s unloaded (%s)", v->slot->name,
                     v->label, v->path);
            ev.message = msg;
            lp_swap_emit(h, &ev);
        }
        lp_swap_version_free(v);
    }
    return left;
}

lp_status lp_swap_reclaim(lp_swap_host *h, uint32_t timeout_ms, lp_error *err)
{
    if (!h)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "reclaim: no host");
    int64_t deadline = lp_swap_now_ms() + timeout_ms;
    unsigned pause_us = 10;
    for (;;) {
        unsigned left = lp_swap_reclaim_pass(h);
        lp_swap_deliver(h);
        if (left == 0)
            return LP_OK;
        if (lp_swap_now_ms() >= deadline) {
            pthread_mutex_lock(&h->mu);
            lp_swap_version *v = h->retired;
            lp_status st = lp_error_set(
                err, LP_ERR_STATE,
                "reclaim: slot %s: version %s%s still has callers inside after %u ms",
                v && v->slot ? v->slot->name : "?", v ? v->label : "?",
                left > 1 ? " (and other retired versions)" : "", timeout_ms);
            pthread_mutex_unlock(&h->mu);
            return st;
        }
        usleep(pause_us);
        if (pause_us < 1000)
            pause_us *= 2;
    }
}

/* ---- events ------------------------------------------------------------- */

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

void lp_swap_emit(lp_swap_host *h, const lp_swap_event *ev)
{
    if (!h->on_event)
        return;
    lp_swap_event_node *n = calloc(1, sizeof *n);
    if (!n) {
        pthread_mutex_lock(&h->mu);
        h->ev_dropped++;
        pthread_mutex_unlock(&h->mu);
        return;
    }
    n->ev = *ev;
    copy_str(n->slot, sizeof n->slot, ev->slot);
    copy_str(n->version, sizeof n->version, ev->version);
    copy_str(n->other, sizeof n->other, ev->other);
    copy_str(n->message, sizeof n->message, ev->message);
    n->path = strdup(ev->path ? ev->path : "");
    n->ev.slot = n->slot;
    n->ev.version = n->version;
    n->ev.other = n->other;
    n->ev.message = n->message;
    n->ev.path = n->path ? n->path : "";
    pthread_mutex_lock(&h->mu);
    if (h->ev_count >= EVENT_QUEUE_MAX) {
        h->ev_dropped++;
        pthread_mutex_unlock(&h->mu);
        free(n->path);
        free(n);
        return;
    }
    if (h->ev_tail)
        h->ev_tail->next = n;
    else
        h->ev_head = n;
    h->ev_tail = n;
    h->ev_count++;
    pthread_mutex_unlock(&h->mu);
}

void lp_swap_deliver(lp_swap_host *h)
{
    if (!h->on_event)
        return;
    for (;;) {
        if (pthread_mutex_trylock(&h->ev_mu) != 0)
            return; /* another thread (or an outer frame of ours) delivers */
        for (;;) {
            pthread_mutex_lock(&h->mu);
            lp_swap_event_node *list = h->ev_head;
            h->ev_head = h->ev_tail = NULL;
            h->ev_count = 0;
            pthread_mutex_unlock(&h->mu);
            if (!list)
                break;
            while (list) {
                lp_swap_event_node *n = list;
                list = n->next;
                h->on_event(h->on_event_ctx, &n->ev);
                free(n->path);
                free(n);
            }
        }
        pthread_mutex_unlock(&h->ev_mu);
        pthread_mutex_lock(&h->mu);
        bool more = h->ev_head != NULL;
        pthread_mutex_unlock(&h->mu);
        if (!more)
            return;
    }
}

/* ---- threads ------------------------------------------------------------ */

lp_status lp_swap_thread_register(lp_swap_host *h, lp_swap_thread **out, lp_error *err)
{
    if (!h || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "thread register: no host or output");
    *out = NULL;
    size_t size = (sizeof(lp_swap_thread) + 63u) & ~(size_t)63u;
    lp_swap_thread *t = aligned_alloc(64, size);
    if (!t)
        return lp_error_set(err, LP_ERR_NOMEM, "thread register: out of memory");
    memset(t, 0, size);
    t->r.gp = &h->epoch;
    t->r.fence = h->fence ? 1u : 0u;
    t->host = h;
    t->owner = pthread_self();
    if (h->guard) {
        stack_t cur;
        if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
            size_t sz = ALTSTACK_SIZE;
            long min = sysconf(_SC_MINSIGSTKSZ);
            if (min > 0)
                sz += (size_t)min;
            void *mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (mem == MAP_FAILED) {
                free(t);
                return lp_error_set(err, LP_ERR_IO, "thread register: signal stack: %s",
                                    strerror(errno));
            }
            stack_t ss = {.ss_sp = mem, .ss_size = sz, .ss_flags = 0};
            if (sigaltstack(&ss, NULL) != 0) {
                int e = errno;
                munmap(mem, sz);
                free(t);
                return lp_error_set(err, LP_ERR_IO, "thread register: sigaltstack: %s",
                                    strerror(e));
            }
            t->altstack = mem;
            t->altstack_size = sz;
        }
    }
    pthread_mutex_lock(&h->mu);
    t->index = h->next_index++;
    t->next = h->threads;
    h->threads = t;
    pthread_mutex_unlock(&h->mu);
    *out = t;
    return LP_OK;
}

/* Removes the signal stack we installed, if it is still the thread's. */
static void drop_altstack(lp_swap_thread *t)
{
    if (!t->altstack)
        return;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == t->altstack && !(cur.ss_flags & SS_ONSTACK)) {
        stack_t off = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
        if (sigaltstack(&off, NULL) == 0)
            munmap(t->altstack, t->altstack_size);
    }
    t->altstack = NULL;
}

static void unlink_thread(lp_swap_host *h, lp_swap_thread *t)
{
    pthread_mutex_lock(&h->mu);
    for (lp_swap_thread **pp = &h->threads; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    pthread_mutex_unlock(&h->mu);
}

void lp_swap_thread_unregister(lp_swap_thread *t)
{
    if (!t)
        return;
    lp_swap_host *h = t->host;
    unlink_thread(h, t);
    if (t->self && h->have_key)
        pthread_setspecific(h->self_key, NULL);
    drop_altstack(t);
    free(t);
}

static void self_destructor(void *p)
{
    lp_swap_thread_unregister(p);
}

lp_swap_thread *lp_swap_thread_self(lp_swap_host *h)
{
    if (!h || !h->have_key)
        return NULL;
    lp_swap_thread *t = pthread_getspecific(h->self_key);
    if (t)
        return t;
    if (lp_swap_thread_register(h, &t, NULL) != LP_OK)
        return NULL;
    t->self = true;
    if (pthread_setspecific(h->self_key, t) != 0) {
        lp_swap_thread_unregister(t);
        return NULL;
    }
    return t;
}

/* ---- tick ------------------------------------------------------------- */

lp_status lp_swap_tick(lp_swap_host *h, lp_error *err)
{
    if (!h)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "tick: no host");
    lp_status st = LP_OK;
    if (h->install_root)
        st = lp_swap_check_release(h, err);
    int64_t now = lp_swap_now_ms();
    pthread_mutex_lock(&h->mu);
    lp_swap_slot *s = h->slots;
    pthread_mutex_unlock(&h->mu);
    while (s) {
        if (pthread_mutex_trylock(&s->op_mu) == 0) {
            lp_swap_settle(s, now);
            pthread_mutex_unlock(&s->op_mu);
        }
        pthread_mutex_lock(&h->mu);
        s = s->next;
        pthread_mutex_unlock(&h->mu);
    }
    lp_swap_reclaim_pass(h);
    lp_swap_report_pass(h);
    lp_swap_deliver(h);
    return st;
}

static void *tick_main(void *arg)
{
    lp_swap_host *h = arg;
    sigset_t all;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* the host's signals go to its own threads */
    while (!atomic_load(&h->stop)) {
        struct pollfd fds[3];
        nfds_t n = 0;
        fds[n++] = (struct pollfd){.fd = h->wake_fd, .events = POLLIN};
        pthread_mutex_lock(&h->mu);
        int ifd = h->inotify_fd, rfd = h->report_fd;
        pthread_mutex_unlock(&h->mu);
        if (ifd >= 0)
            fds[n++] = (struct pollfd){.fd = ifd, .events = POLLIN};
        /* the agent's answer to a report in flight (read by the tick) */
        if (rfd >= 0)
            fds[n++] = (struct pollfd){.fd = rfd, .events = POLLIN};
        int r = poll(fds, n, (int)h->tick_ms);
        if (r > 0) {
            uint64_t cnt;
            if (fds[0].revents & POLLIN && read(h->wake_fd, &cnt, sizeof cnt) < 0) {
                /* nothing to drain */
            }
            if (ifd >= 0 && (fds[1].revents & POLLIN)) {
                /* The events only wake us (`current` is read afresh), except
                 * IN_IGNORED: the root went away, watch it again later. */
                char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
                ssize_t got;
                while ((got = read(ifd, buf, sizeof buf)) > 0) {
                    for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= got;) {
                        const struct inotify_event *ie = (const void *)(buf + off);
                        if (ie->mask & IN_IGNORED) {
                            pthread_mutex_lock(&h->mu);
                            h->inotify_wd = -1;
                            pthread_mutex_unlock(&h->mu);
                        }
                        off += (ssize_t)(sizeof *ie + ie->len);
                    }
                }
            }
        }
        if (atomic_load(&h->stop))
            break;
        lp_swap_tick(h, NULL);
    }
    return NULL;
}

/* ---- open / close ------------------------------------------------------- */

lp_status lp_swap_host_open(const lp_swap_host_config *cfg, lp_swap_host **out, lp_error *err)
{
    if (!cfg || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "swap host: no configuration or output");
    *out = NULL;
    if (cfg->tick_ms > 60000u)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "swap host: tick_ms %u is out of range (1..60000)", cfg->tick_ms);
    if (cfg->install_root && (!cfg->install_root[0] || strlen(cfg->install_root) > 2048))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "swap host: install_root is empty or longer than 2048 bytes");
    if (cfg->agent_socket && (!cfg->agent_socket[0] || strlen(cfg->agent_socket) > 107))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "swap host: agent_socket is empty or longer than a unix socket path "
                            "may be (107 bytes)");
    if (cfg->report_timeout_ms > 600000u)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "swap host: report_timeout_ms %u is out of range (1..600000)",
                            cfg->report_timeout_ms);
    lp_swap_host *h = aligned_alloc(64, (sizeof *h + 63u) & ~(size_t)63u);
    if (!h)
        return lp_error_set(err, LP_ERR_NOMEM, "swap host: out of memory");
    memset(h, 0, sizeof *h);
    h->epoch = 1;
    h->private_fd = -1;
    h->wake_fd = -1;
    h->inotify_fd = -1;
    h->inotify_wd = -1;
    h->report_fd = -1;
    h->report_timeout_ms =
        cfg->report_timeout_ms ? cfg->report_timeout_ms : LP_SWAP_DEFAULT_REPORT_TIMEOUT_MS;
    h->tick_ms = cfg->tick_ms ? cfg->tick_ms : LP_SWAP_DEFAULT_TICK_MS;
    h->max_module_size = cfg->max_module_size ? cfg->max_module_size
                                              : (size_t)LP_SWAP_DEFAULT_MAX_MODULE_SIZE;
    h->on_event = cfg->on_event;
    h->on_event_ctx = cfg->on_event_ctx;
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->ev_mu, NULL);
    pthread_mutex_init(&h->report_mu, NULL);

    lp_status st = lp_swap_private_dir_open(h, cfg->private_dir, err);
    if (st)
        goto fail;
    if (cfg->install_root && !(h->install_root = strdup(cfg->install_root))) {
        st = lp_error_set(err, LP_ERR_NOMEM, "swap host: out of memory");
        goto fail;
    }
    if (h->install_root && !cfg->no_report) {
        if (cfg->agent_socket)
            h->agent_socket = strdup(cfg->agent_socket);
        else if (asprintf(&h->agent_socket, "%s/.livepush/control.sock", h->install_root) < 0)
            h->agent_socket = NULL;
        if (!h->agent_socket) {
            st = lp_error_set(err, LP_ERR_NOMEM, "swap host: out of memory");
            goto fail;
        }
    }
    h->fence = cfg->no_membarrier || membarrier_setup() != 0;
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (h->wake_fd < 0) {
        st = lp_error_set(err, LP_ERR_IO, "swap host: eventfd: %s", strerror(errno));
        goto fail;
    }
    if (pthread_key_create(&h->self_key, self_destructor) != 0) {
        st = lp_error_set(err, LP_ERR_NOMEM, "swap host: pthread_key_create failed");
        goto fail;
    }
    h->have_key = true;
    if (!cfg->no_crash_guard && lp_swap_guard_supported()) {
        st = lp_swap_guard_install(err);
        if (st)
            goto fail;
        h->guard = true;
    }
    if (h->install_root)
        lp_swap_watch_setup(h);
    if (!cfg->manual_tick) {
        int e = pthread_create(&h->tick_thread, NULL, tick_main, h);
        if (e != 0) {
            st = lp_error_set(err, LP_ERR_IO, "swap host: starting the tick thread: %s",
                              strerror(e));
            goto fail;
        }
        h->tick_running = true;
    }
    *out = h;
    return LP_OK;
fail:
    lp_swap_host_close(h);
    return st;
}

void lp_swap_host_close(lp_swap_host *h)
{
    if (!h)
        return;
    if (h->tick_running) {
        atomic_store(&h->stop, true);
        lp_swap_wake(h);
        pthread_join(h->tick_thread, NULL);
        h->tick_running = false;
    }
    /* Retire every version still reachable, then wait for their grace. */
    for (lp_swap_slot *s = h->slots; s; s = s->next) {
        pthread_mutex_lock(&s->op_mu);
        lp_swap_version *v = s->active;
        lp_swap_version *prev = v ? v->prev : NULL;
        if (v && v->state == LP_SWAP_V_CRASHED)
            v->keep_mapped = true;
        __atomic_store_n(&s->head.cur, (struct lp_swap_vhead_ *)NULL, __ATOMIC_RELEASE);
        s->active = s->probation = NULL;
        if (v) {
            v->prev = NULL;
            lp_swap_retire(h, v);
        }
        if (prev && prev != v)
            lp_swap_retire(h, prev);
        pthread_mutex_unlock(&s->op_mu);
    }
    if (lp_swap_reclaim(h, CLOSE_GRACE_MS, NULL) != LP_OK) {
        /* Callers are still inside: leave what they may use loaded. */
        h->retired = NULL;
    }
    lp_swap_deliver(h);
    lp_swap_report_drop_all(h);
    while (h->slots) {
        lp_swap_slot *s = h->slots;
        h->slots = s->next;
        pthread_mutex_destroy(&s->op_mu);
        free(s->module_path);
        free(s->seen_target);
        free(s->baseline_sum);
        free(s);
    }
    lp_swap_thread *mine = h->have_key ? pthread_getspecific(h->self_key) : NULL;
    while (h->threads) {
        lp_swap_thread *t = h->threads;
        h->threads = t->next;
        if (pthread_equal(t->owner, pthread_self()))
            drop_altstack(t);
        free(t);
    }
    if (h->have_key) {
        if (mine)
            pthread_setspecific(h->self_key, NULL);
        pthread_key_delete(h->self_key);
    }
    while (h->ev_head) {
        lp_swap_event_node *n = h->ev_head;
        h->ev_head = n->next;
        free(n->path);
        free(n);
    }
    if (h->guard)
        lp_swap_guard_uninstall();
    if (h->wake_fd >= 0)
        close(h->wake_fd);
    if (h->inotify_fd >= 0)
        close(h->inotify_fd);
    if (h->private_fd >= 0)
        close(h->private_fd);
    free(h->private_dir);
    free(h->install_root);
    free(h->agent_socket);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->ev_mu);
    pthread_mutex_destroy(&h->report_mu);
    free(h);
}
