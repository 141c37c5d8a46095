/*
 * swap_priv.h — internals of live module swap (see include/livepush/swap.h).
 *
 * Objects:
 *   lp_swap_host     owns slots, thread records, the retired list, the event
 *                    queue, the tick thread; its epoch is the grace-period
 *                    clock.  `mu` guards its lists and the event queue.
 *   lp_swap_slot     one slot; `op_mu` serialises its management operations
 *                    (update, commit, rollback, settle); the pointer callers
 *                    read is head.cur.
 *   lp_swap_version  one loaded module; head (flags, then the copy of the
 *                    module's table) is what callers read.  `state` is the one field the signal handler
 *                    changes (by compare-and-swap), which is how a claimed
 *                    crash and the tick's commit or rollback agree on who
 *                    ended a probation.
 *   lp_swap_thread   a caller's record; reader (epoch, nesting) first.
 *
 * Lock order: slot->op_mu, then host->mu.  Neither is ever taken by a
 * caller's call path nor by the signal handler.  Event callbacks run with
 * no lock held (host->ev_mu only serialises their delivery).
 */
#ifndef LP_SWAP_PRIV_H
#define LP_SWAP_PRIV_H

#include "livepush/swap.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Version flags (vhead.flags, copied into lp_swap_call.flags_). */
#define LP_SWAP_VF_GUARD 1u   /* crashes in the module are claimed */
#define LP_SWAP_VF_MEASURE 2u /* calls are counted */
#define LP_SWAP_VF_TIMED 4u   /* calls are timed */
/* Call-only flags. */
#define LP_SWAP_CF_SLOW 8u       /* entered on the slow path (flags_ stays non-zero) */
#define LP_SWAP_CF_LOADING 16u   /* a hook run by the loader, not a call through the slot */
#define LP_SWAP_CF_DONE 0x80000000u /* not entered, or left */

/* Version states. */
enum {
    LP_SWAP_V_LOADED = 0,    /* loaded, not live yet */
    LP_SWAP_V_STABLE = 1,    /* live (or kept as previous) with no probation */
    LP_SWAP_V_PROBATION = 2, /* live, on probation */
    LP_SWAP_V_CRASHED = 3,   /* a crash was claimed during probation (signal handler) */
    LP_SWAP_V_ROLLED_BACK = 4, /* rolled back by the tick or on request */
    LP_SWAP_V_RETIRED = 5,   /* waiting for its grace period */
};

/* Histogram of latencies: 4 linear sub-buckets per power of two. */
#define LP_SWAP_HIST_BUCKETS 160
#define LP_SWAP_SHARDS 16
#define LP_SWAP_TEXT_MAX 4

typedef struct lp_swap_shard {
    _Alignas(64) _Atomic uint64_t calls;
    _Atomic uint64_t errors;
    _Atomic uint64_t hist[LP_SWAP_HIST_BUCKETS];
} lp_swap_shard;

/* Sum of a version's shards at one moment. */
typedef struct lp_swap_sum {
    uint64_t calls, errors;
    uint64_t hist[LP_SWAP_HIST_BUCKETS];
} lp_swap_sum;

typedef struct lp_swap_version lp_swap_version;
struct lp_swap_version {
    lp_swap_slot *slot;
    void *handle;
    const lp_swap_module *mod;
    char label[LP_SWAP_VERSION_MAX + 1];
    char *path;                 /* the file it was loaded from */
    char sha256[65];
    dev_t dev;                  /* identity of that file when loaded */
    ino_t ino;
    uint64_t release;           /* the install root's release it came from (0: by path) */
    uintptr_t base;             /* load address (link map l_addr) */
    uintptr_t text_lo[LP_SWAP_TEXT_MAX], text_hi[LP_SWAP_TEXT_MAX];
    int ntext;
    _Atomic int state;
    lp_swap_version *prev;      /* on probation: the version to go back to */
    int64_t probation_end_ms;
    /* The first claimed crash (written by the signal handler). */
    _Atomic int crash_sig;
    _Atomic uintptr_t crash_pc;
    _Atomic uintptr_t crash_addr;
    _Atomic uint64_t crash_calls;
    bool keep_mapped;           /* crashed once: never dlclose */
    lp_swap_shard *stats;       /* allocated before MEASURE is first set; freed with the version */
    uint64_t retire_epoch;
    lp_swap_version *next;      /* host's retired list */
    /* Last: what callers read (flags), then the copy of the module's table
     * (slot->table_size bytes, allocated with the version). */
    struct lp_swap_vhead_ head;
};

/* The version a caller's head belongs to. */
static inline lp_swap_version *lp_swap_version_of(struct lp_swap_vhead_ *h)
{
    return h ? (lp_swap_version *)h->u_.owner_ : NULL;
}

/* The version's table copy. */
static inline void *lp_swap_version_table(lp_swap_version *v)
{
    return (char *)&v->head + sizeof v->head;
}

struct lp_swap_slot {
    struct lp_swap_slot_head_ head; /* first: callers read head.cur */
    lp_swap_host *host;
    char name[LP_SWAP_NAME_MAX + 1];
    char interface[LP_SWAP_NAME_MAX + 1];
    uint32_t abi_version;
    size_t table_size;
    unsigned flags;
    char *module_path;
    size_t state_max;
    lp_swap_probation prob;     /* defaults applied */
    pthread_mutex_t op_mu;
    lp_swap_version *active;    /* the live version (op_mu) */
    lp_swap_version *probation; /* the version on probation, or NULL (op_mu) */
    lp_swap_stats baseline;     /* the last baseline measured */
    lp_swap_sum *baseline_sum;  /* its sums, for judging (NULL when none) */
    _Atomic unsigned loaded;
    _Atomic uint64_t swaps, commits, rollbacks, refusals;
    /* following the install root (op_mu) */
    char *seen_target;          /* the `current` target this slot last considered */
    bool watch_pending;         /* a release waits for the probation to end */
    bool tried_valid;           /* identity of the last file that was refused */
    dev_t tried_dev;
    ino_t tried_ino;
    int64_t tried_mtime_ns;
    off_t tried_size;
    lp_swap_slot *next;
};

struct lp_swap_thread {
    struct lp_swap_reader_ r;   /* first: callers see a thread as its reader */
    lp_swap_host *host;
    uint32_t index;
    bool self;                  /* made by lp_swap_thread_self */
    pthread_t owner;            /* the thread that registered it */
    void *altstack;             /* the signal stack installed for it, or NULL */
    size_t altstack_size;
    lp_swap_thread *next;
};

/* A rollback to report to the agent (report.c). */
typedef struct lp_swap_report {
    uint64_t release;
    char target[48];            /* "releases/<id>": what `current` must still show */
    char slot[LP_SWAP_NAME_MAX + 1];
    char version[LP_SWAP_VERSION_MAX + 1];
    char *request;              /* the whole HTTP request */
    size_t request_len, sent;
    int fd;                     /* the attempt in flight, or -1 */
    char answer[4096];
    size_t answer_len;
    int64_t deadline_ms;        /* of the attempt in flight */
    int64_t next_ms;            /* the next attempt, not before */
    uint32_t backoff_ms;
    unsigned attempts;
    struct lp_swap_report *next;
} lp_swap_report;

typedef struct lp_swap_event_node {
    lp_swap_event ev;
    struct lp_swap_event_node *next;
    char slot[LP_SWAP_NAME_MAX + 1];
    char version[LP_SWAP_VERSION_MAX + 1];
    char other[LP_SWAP_VERSION_MAX + 1];
    char *path;
    char message[LP_ERROR_MSG_MAX];
} lp_swap_event_node;

struct lp_swap_host {
    _Alignas(64) uint64_t epoch; /* grace-period clock; readers copy it (atomic builtins) */
    _Alignas(64) int fence;      /* readers use full fences (no membarrier) */
    bool guard;                  /* crash guard installed */
    pthread_mutex_t mu;
    pthread_mutex_t ev_mu;
    lp_swap_slot *slots;
    lp_swap_thread *threads;
    uint32_t next_index;
    lp_swap_version *retired;
    lp_swap_event_node *ev_head, *ev_tail;
    unsigned ev_count;
    uint64_t ev_dropped;
    lp_swap_event_fn on_event;
    void *on_event_ctx;
    char *private_dir;
    int private_fd;
    uint64_t file_seq;
    char *install_root;
    size_t max_module_size;
    uint32_t tick_ms;
    pthread_key_t self_key;
    bool have_key;
    /* tick thread */
    pthread_t tick_thread;
    bool tick_running;
    _Atomic bool stop;
    int wake_fd;                 /* eventfd: wakes the tick thread (signal-safe) */
    int inotify_fd;
    int inotify_wd;
    /* reports to the agent (report.c): the list and report_fd under `mu`;
     * report_mu (trylock) makes one thread at a time work on them */
    char *agent_socket;          /* NULL: nothing is reported */
    uint32_t report_timeout_ms;
    pthread_mutex_t report_mu;
    lp_swap_report *reports;
    unsigned nreports;
    int report_fd;               /* the attempt in flight (the tick thread polls it), or -1 */
};

/* ---- host.c --------------------------------------------------------------- */

/* Monotonic clock in ns and ms. */
uint64_t lp_swap_now_ns(void);
int64_t lp_swap_now_ms(void);

/* Puts a live-no-more version on the host's retired list (after the caller
 * replaced every pointer to it); unloaded once its grace period passed. */
void lp_swap_retire(lp_swap_host *h, lp_swap_version *v);
/* Unloads retired versions whose grace period passed; never waits.
 * Returns how many are still waiting. */
unsigned lp_swap_reclaim_pass(lp_swap_host *h);
/* Frees a version that no caller can reach (dlclose unless keep_mapped). */
void lp_swap_version_free(lp_swap_version *v);

/* Queues an event (copied) for delivery; no-op without a callback. */
void lp_swap_emit(lp_swap_host *h, const lp_swap_event *ev);
/* Delivers queued events from the calling thread (no lock held). */
void lp_swap_deliver(lp_swap_host *h);
/* Wakes the tick thread (async-signal-safe). */
void lp_swap_wake(lp_swap_host *h);

/* ---- load.c --------------------------------------------------------------- */

/* Copies, loads and checks the module at `path` for slot `s`, runs its
 * self-test; *out is a version in state LOADED.  Errors as lp_swap_update;
 * the message starts with the path. */
lp_status lp_swap_load(lp_swap_slot *s, const char *path, lp_swap_version **out, lp_error *err);
/* Hands the state of `from` (may be NULL) to `to`: export, bounded by the
 * slot's state_max, then import (guarded).  `guard_export` also guards the
 * export (when `from` is on probation).  Messages name both versions. */
lp_status lp_swap_handover(lp_swap_slot *s, lp_swap_version *from, lp_swap_version *to,
                           bool guard_export, lp_error *err);
/* Runs fn(arg) with crashes inside v's code claimed: returns fn's result, or
 * -1 with *crash_sig set (and v->keep_mapped) if it crashed. */
int lp_swap_run_guarded(lp_swap_version *v, int (*fn)(void *), void *arg, int *crash_sig);
/* Creates the private folder (0700, ours) and removes stale copies. */
lp_status lp_swap_private_dir_open(lp_swap_host *h, const char *dir, lp_error *err);

/* ---- guard.c -------------------------------------------------------------- */

/* Installs (first host) or counts the crash guard. */
lp_status lp_swap_guard_install(lp_error *err);
/* Uninstalls the crash guard when the last host leaves it. */
void lp_swap_guard_uninstall(void);
/* Pushes a guarded call on the thread's chain / pops it. */
void lp_swap_guard_push(lp_swap_call *c);
void lp_swap_guard_pop(lp_swap_call *c);
/* The signal that the last claimed crash on this thread raised. */
int lp_swap_guard_last_signal(void);
/* Unblocks `sig` on the calling thread (after a claimed crash). */
void lp_swap_guard_unblock(int sig);
/* True when the platform can attribute crashes (PC from ucontext). */
bool lp_swap_guard_supported(void);
/* "SIGSEGV" etc. */
const char *lp_swap_signal_name(int sig);

/* ---- slot.c --------------------------------------------------------------- */

/* Ends what is due for the slot (op_mu held): a claimed crash, a judgment,
 * the end of a window.  `now_ms` is the current time. */
void lp_swap_settle(lp_swap_slot *s, int64_t now_ms);
/* Rolls the probation of `v` back with `reason` (op_mu held). */
lp_status lp_swap_end_rollback(lp_swap_slot *s, lp_swap_version *v, lp_swap_reason reason,
                               const char *why, lp_error *err);
/* Sums a version's shards. */
void lp_swap_sum_stats(const lp_swap_version *v, lp_swap_sum *out);
/* Percentiles and counts of a sum. */
void lp_swap_stats_of(const lp_swap_sum *sum, bool timed, lp_swap_stats *out);

/* Update as lp_swap_update, the version coming from release `release` of the
 * followed install root (0: none). */
lp_status lp_swap_update_from(lp_swap_slot *s, const char *path, uint64_t release,
                              lp_error *err);
/* The same with the slot's op_mu held (and still held on return); events
 * are queued, not delivered. */
lp_status lp_swap_update_locked(lp_swap_slot *s, const char *path, uint64_t release,
                                lp_error *err);

/* ---- report.c ------------------------------------------------------------- */

#define LP_SWAP_REPORTS_MAX 16u
#define LP_SWAP_DEFAULT_REPORT_TIMEOUT_MS 10000u

/* Queues a report of the rollback of `v` (of slot `s`) with `message` to the
 * agent, if the host reports and v came from a release.  Any thread, op_mu
 * may be held. */
void lp_swap_report_queue(lp_swap_host *h, const lp_swap_slot *s, const lp_swap_version *v,
                          const char *message);
/* Works on the queued reports without waiting (called by the tick). */
void lp_swap_report_pass(lp_swap_host *h);
/* Drops every report (closing the host). */
void lp_swap_report_drop_all(lp_swap_host *h);

/* ---- watch.c -------------------------------------------------------------- */

/* Starts inotify on the install root (if possible; polling works without). */
void lp_swap_watch_setup(lp_swap_host *h);
/* The release id of a `current` target "releases/<id>" (0: another form). */
uint64_t lp_swap_release_of(const char *target);

#endif
