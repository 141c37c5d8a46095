/*
 * livepush/swap.h — live module swap inside a running process.
 *
 * ===========================================================================
 * Introduction
 * ===========================================================================
 *
 * A host process declares *slots*.  A slot has a name and an *interface*: a
 * table of function pointers (a C struct) identified by a name, an ABI
 * version and its size.  A *module* is a shared object that provides one
 * implementation of an interface; it exports one entry symbol that returns
 * an lp_swap_module description (table, version label, optional self-test,
 * optional state export and import).
 *
 * The host calls through the slot; the library replaces the module behind
 * it while calls go on:
 *
 *   load      the new module file is copied to a private file with a unique
 *             name (so the dynamic loader can never hand back a handle it
 *             already has), opened with dlopen(RTLD_NOW | RTLD_LOCAL) and
 *             unlinked at once; its entry's interface name, ABI version and
 *             table size must equal the slot's, every table entry must be
 *             set, and its self-test must pass.  Any failure refuses the
 *             module with an error that names the file and what failed; the
 *             running version is left alone.  The table is copied into the
 *             library's object for the version, right after the word calls
 *             check, so a call reaches the function in two dependent loads
 *             (the slot's pointer, then the table copy).
 *   hand-over the running version's state is exported and imported by the
 *             new one (if the running version exports state); a failed
 *             import refuses the new module.
 *   swap      one atomic pointer store.  A call reads the slot's pointer
 *             once when it enters, so it runs entirely on one version: a
 *             call that started on the old version finishes on it, and no
 *             call ever sees a mix of two tables.  Callers never block and
 *             never wait for a swap.
 *   probation for a window after the swap the previous version stays
 *             loaded.  A crash inside the new module's code during a call
 *             through the slot, or its error rate or latency passing limits
 *             set against the previous version's, swaps back at once and is
 *             reported.  When the window passes, the new version is kept.
 *   unload    a version that is no longer live is unloaded (dlclose) only
 *             after every call that had entered it has left: a grace period,
 *             as in read-copy-update.
 *   follow    optionally, the host follows an install root of the livepush
 *             agent: when the agent switches `<root>/current` to a new
 *             release, the slot loads `<root>/current/<module_path>` and
 *             swaps to it (with probation).
 *   report    a version loaded that way and rolled back by its probation
 *             (crash, error rate, latency) is reported to the agent through
 *             its control socket, which rolls the install back and marks the
 *             release bad, so that it does not come back (see "Reporting to
 *             the agent" below).
 *
 * A minimal host (error handling shortened):
 *
 *     struct calc_api { int (*add)(int, int); };            // the interface
 *
 *     lp_swap_host *h;
 *     lp_swap_host_config hc = {0};                          // defaults
 *     lp_swap_host_open(&hc, &h, &err);
 *     lp_swap_slot_config sc = {.name = "calc", .interface = "calc",
 *                               .abi_version = 1,
 *                               .table_size = sizeof(struct calc_api)};
 *     lp_swap_slot *slot;
 *     lp_swap_slot_declare(h, &sc, &slot, &err);
 *     lp_swap_update(slot, "/opt/app/lib/calc.so", &err);   // first version
 *
 *     // on each calling thread, once:
 *     lp_swap_thread *me;
 *     lp_swap_thread_register(h, &me, &err);
 *
 *     // each call:
 *     lp_swap_call c;
 *     LP_SWAP_ENTER(slot, me, &c);
 *     if (c.outcome != LP_SWAP_ENTERED)
 *         return -1;                   // slot empty, or the call crashed
 *     const struct calc_api *api = c.table;
 *     int r = api->add(2, 3);
 *     lp_swap_leave(&c);               // lp_swap_leave_error(&c) if it failed
 *
 *     // later, a new version (the agent's install root can do this by itself):
 *     lp_swap_update(slot, "/opt/app/lib/calc-2.so", &err);
 *
 * and a module:
 *
 *     static int add(int a, int b) { return a + b; }
 *     static const struct calc_api table = {add};
 *     static const lp_swap_module module = {
 *         .magic = LP_SWAP_MODULE_MAGIC, .struct_size = sizeof(lp_swap_module),
 *         .interface = "calc", .abi_version = 1,
 *         .table = &table, .table_size = sizeof table, .version = "2.0.1",
 *     };
 *     LP_SWAP_MODULE_EXPORT(module)
 *
 * built with `cc -shared -fPIC`; it needs this header only, not the library.
 *
 * ===========================================================================
 * Design decisions
 * ===========================================================================
 *
 * Read side.  The cost of a call through a slot must stay within a couple of
 * nanoseconds of a direct call through a function pointer, so no lock is
 * taken.  Each calling thread has a record (lp_swap_thread) holding the
 * host's epoch number at the moment the thread entered its outermost call
 * (0 when it is in none).  Entering an outermost call is: copy the epoch, a
 * compiler barrier, load the slot's pointer; leaving it is a release store
 * of 0; a nested call only loads the pointer.  No store depends on the
 * value of an earlier one, so back-to-back calls form no dependency chain
 * through memory.  The writer pays instead: after replacing a pointer it
 * advances the epoch and calls membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED),
 * which makes every running thread of the process execute a full memory
 * barrier; a retired version may be unloaded once no thread is inside a
 * call that entered before that epoch.  (Where membarrier is unavailable the
 * reader executes a full fence instead, which costs about 10 ns more.)  The
 * inline enter and leave are in this header; a call's record is explicit, so
 * the fast path has no thread-local variable lookup.
 *
 * Measured (bench/swap/module/run, docs/benchmarks.md; x86-64, gcc -O2, a
 * busy 2-core machine): a call through a slot written in the caller's loop
 * costs 1.6-1.7 ns more than a direct call through a function pointer;
 * liburcu's urcu-memb flavour, inlined (which needs _LGPL_SOURCE and
 * liburcu's headers in the host's own code), 1.1-1.5 ns in the same runs.
 * Not inlined, urcu-memb costs 12.7 ns and urcu-bp 15.6 ns; urcu-qsbr costs
 * nothing, but every thread must then report quiescent states and a thread
 * that forgets stalls every swap.  liburcu 0.13 also offers only a blocking
 * grace period or a callback thread, where this design polls one from its
 * tick.  So the epoch scheme above is implemented here: inline, nothing in
 * the host but this header, a grace period that can be polled, and the
 * thread record giving each caller its own statistics shard.
 *
 * Calls on a version under probation (and on the running version while its
 * baseline is measured) take a slower path, out of line: the call is pushed
 * on the thread's chain of guarded calls, its entry point is saved with
 * setjmp (which saves no signal mask on glibc and musl: no system call; the
 * library unblocks the crash's signal itself), it is counted, and the
 * clock is read at both ends when latency is judged.  That is a few tens of
 * nanoseconds per call plus two clock_gettime calls (20-100 ns each,
 * depending on the machine; LP_SWAP_PROBATION_NO_LATENCY avoids them),
 * during probation only.
 *
 * Crash attribution.  When the host is opened with the crash guard on (the
 * default), handlers for SIGSEGV, SIGBUS, SIGFPE and SIGILL are installed
 * (sigaction, SA_SIGINFO | SA_ONSTACK) and each registered thread without an
 * alternate signal stack gets one (64 KiB), so a stack overflow can be
 * handled too.  On a fault raised by the kernel (not one sent with kill),
 * the handler looks at the innermost guarded call of the faulting thread: if
 * the faulting instruction (the PC in the ucontext) lies inside an
 * executable segment of the module that call entered (found with
 * dl_iterate_phdr when the module was loaded), the crash is claimed: the
 * module is marked failed, the slot's pointer is swapped back to the
 * previous version (an atomic store; async-signal-safe), and the thread
 * jumps back (longjmp) to the call's entry point, where LP_SWAP_ENTER
 * completes with outcome LP_SWAP_CRASHED.  Otherwise the crash is not
 * claimed: the handler that was installed before is called, or, if it was
 * the default action, the default is restored and the fault recurs (a
 * signal sent with kill is raised again), so the process dies as it would
 * have without livepush.
 *
 * What a claimed crash leaves behind — read this before relying on it:
 *   - The crashed call is abandoned half-way.  Anything it changed outside
 *     its own stack frames (the host's data passed by pointer, the module's
 *     own globals) may be half-written.  Locks it held stay held: a lock of
 *     the module's own (other calls in flight on the failed version may then
 *     wait on it for ever; their threads are stuck, nothing else is), or a
 *     lock of the host or of a library that the module's code was called
 *     back from (e.g. a comparator called by qsort is fine; a callback
 *     called with a library lock held leaves that lock held).  Memory the
 *     call allocated leaks.
 *   - Only a fault whose PC is inside the module on probation is claimed.  A
 *     fault inside a library function the module called (memcpy on a bad
 *     pointer) is outside the module and is not claimed; neither is abort()
 *     or a failed assert (SIGABRT is not handled), nor a crash in the
 *     module's own threads or in a call that did not go through the slot.
 *   - A crash in a constructor of the module (during dlopen) is never
 *     claimed: jumping out of the dynamic loader would leave its lock held.
 *   - A module that crashed (in a call, its entry, self-test or state hooks)
 *     is never unloaded: its destructors could run on the state the crash
 *     left.  Its pages stay mapped until the process exits (its private copy
 *     was already unlinked); it is never called again.
 *   - Only the innermost guarded call of the thread is considered.  Nested
 *     calls into slots of *other* hosts that the crash unwinds are not
 *     left properly: do not nest slots of different hosts in module code.
 *
 * The crash guard is the only process-wide state of this API: the signal
 * handlers (installed while at least one host with the guard is open, the
 * handlers found before are restored when the last one closes, if nobody
 * replaced ours meanwhile) and two thread-local variables (the thread's
 * innermost guarded call and the last claimed signal).  Everything else
 * lives in the lp_swap_host object.
 *
 * Private copies.  Each load copies the module into a private folder (mode
 * 0700, owned by the process's user; default $XDG_RUNTIME_DIR/livepush-swap,
 * else $TMPDIR/livepush-swap-<uid>, else /tmp/livepush-swap-<uid>), named
 * p<pid>.<sequence>.<random>.<slot>.so, created with O_EXCL and unlinked
 * right after dlopen, so nothing is left behind; a copy left by a process
 * that died between those two steps is removed when a host is next opened.
 * The folder must allow mapping executable code (not mounted noexec).  The
 * copy is hashed (SHA-256) as it is written, so the hash reported for a
 * version is that of the exact bytes that were loaded.
 *
 * Probation measurement.  A caller reports a call's failure by leaving with
 * lp_swap_leave_error (a failed call: whatever the interface means by
 * failure).  While measured, each call adds to per-version counters sharded
 * by thread (relaxed atomic adds; no shared cache line between threads that
 * land on different shards) and, when latency is judged, to a log-linear
 * histogram (4 buckets per power of two: +-12.5%).  The previous version's
 * figures are measured for baseline_ms just before the swap, under the same
 * load.  The new version is judged on every tick once it has served
 * min_calls calls: it is rolled back when
 *     error rate  >  baseline error rate * error_factor + error_slack
 *     p99 latency >  baseline p99 * latency_factor + latency_slack_ns
 * (the latency test needs a baseline of at least min_calls calls; without
 * one the error test uses a baseline rate of 0).  At the end of the window
 * the version is kept; a version that served fewer than min_calls calls in
 * its window is kept too (nothing to judge it on but the crash guard).
 *
 * Reporting to the agent.  A version the host loaded by following an install
 * root knows its release (`current` pointed to "releases/<id>").  When such a
 * version is rolled back by its probation (reason CRASH, ERROR_RATE or
 * LATENCY; not REQUESTED, which is the release going back already), the host
 * queues a report for the agent that installed it: an HTTP/1.0 request on
 * the agent's control socket (default <install_root>/.livepush/control.sock)
 *
 *     POST /v1/release-failed
 *     {"release":3,"reason":"live swap in process 4242: slot handler: version
 *      3.0 crashed on probation (SIGSEGV at offset 0x1139 ...) ..."}
 *
 * and the agent, if release 3 is still current, rolls the install back to
 * the previous release, marks 3 bad with that reason (it is never installed
 * or activated again on the device) and sends the `rolled_back` event to
 * the server (docs/agent.md, "The control API").  The host never waits for
 * the agent: the tick connects without blocking (a unix socket connects at
 * once or fails), writes the request (a few hundred bytes: the socket
 * buffer takes it whole) and then only polls for the answer on later ticks,
 * for at most report_timeout_ms.  An attempt that fails (no agent listening,
 * no answer in time, an answer 5xx) is reported as a REPORT_FAILED event
 * and tried again 1 s later, the wait doubling up to 60 s, until the agent
 * answers; an answer 2xx is a REPORTED event, a 4xx (the release is not
 * current any more, nothing to go back to) a final REPORT_FAILED.  Before
 * each attempt the link is read again: once `current` points elsewhere the
 * report is dropped (the agent, or someone, moved on).  The request is the
 * same each time and the agent's answer to a release already marked bad is
 * 200, so an attempt that timed out after the agent had acted does no harm
 * when repeated.  At most 16 reports wait at once (more are dropped, with a
 * REPORT_FAILED event); they are dropped when the host is closed.
 *
 * A module refused at load is not reported: a release may carry a module
 * for a newer host (an ABI change shipped with a new binary, which
 * `livepush run` starts next to this process), so a refusal says nothing
 * about the release.
 *
 * Time-based work (ending probation, judging, finishing a claimed crash,
 * reporting events, reports to the agent, unloading retired versions,
 * following the install root) runs in lp_swap_tick: by default the host
 * runs a thread that calls it every tick_ms and at once when a crash was
 * claimed (and when the agent's answer arrives); with manual_tick the host's
 * own code calls it.
 *
 * ===========================================================================
 * Threads and ownership
 * ===========================================================================
 *
 * Every calling thread registers once (lp_swap_thread_register, or
 * lp_swap_thread_self which does it on first use and unregisters at thread
 * exit) and passes its record to LP_SWAP_ENTER.  A record is used by its own
 * thread only.  The management functions (declare, update, commit, rollback,
 * tick, reclaim, check_release, get_info) may be called from any thread;
 * they are serialised per slot and never block callers.  Event callbacks
 * are called from the thread that runs the operation that caused them (the
 * host's tick thread for everything time-based), never from a signal
 * handler and never with a lock of the library held, so a callback may call
 * the management functions.
 *
 * Errors follow livepush/error.h; messages name the slot, the module file
 * and what failed ("slot calc: /opt/app/lib/calc-2.so: ABI version 2, the
 * slot needs 1").
 */
#ifndef LIVEPUSH_SWAP_H
#define LIVEPUSH_SWAP_H

#include "livepush/error.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ===========================================================================
 * The module side
 * ======================================================================== */

/* lp_swap_module.magic: "LPSW". */
#define LP_SWAP_MODULE_MAGIC 0x4c505357u

/* Name of the entry symbol a module exports: a function taking no argument
 * and returning `const lp_swap_module *` (LP_SWAP_MODULE_EXPORT defines it).
 * The suffix versions the layout of lp_swap_module itself. */
#define LP_SWAP_ENTRY_NAME "livepush_swap_module_v1"

/* Longest interface name, slot name and version label (bytes). */
#define LP_SWAP_NAME_MAX 64u
#define LP_SWAP_VERSION_MAX 128u
/* Largest table a slot may declare (bytes). */
#define LP_SWAP_TABLE_MAX 65536u

/* What a module's entry returns.  Everything it points to must live as long
 * as the module is loaded (static storage).  Strings are copied by the
 * library when the module is loaded.
 *
 * Hooks report failure by returning non-zero and may write a one-line
 * reason (NUL-terminated, at most msg_cap bytes) into msg; the library puts
 * it in its error message.  Hooks run in the thread that calls
 * lp_swap_update (state_export of the previous version may also run in the
 * host's tick thread, when a version on probation is rolled back); calls
 * through the table may still be running on other threads meanwhile. */
typedef struct lp_swap_module {
    uint32_t magic;          /* LP_SWAP_MODULE_MAGIC */
    uint32_t struct_size;    /* sizeof(lp_swap_module) as the module saw it; must be
                                at least this header's size (larger is fine: a newer
                                layout that only appended fields) */
    const char *interface;   /* interface name; must equal the slot's */
    uint32_t abi_version;    /* must equal the slot's */
    uint32_t reserved0;      /* 0 */
    size_t table_size;       /* sizeof the table; must equal the slot's */
    const void *table;       /* the table of function pointers; copied at load (calls
                                use the copy): it must not change afterwards */
    const char *version;     /* version label: 1..LP_SWAP_VERSION_MAX printable ASCII
                                characters, e.g. "2.0.1" */
    /* Optional: checks the module before it goes live (it may call its own
     * table).  0 = pass.  A crash inside it refuses the module. */
    int (*self_test)(const void *table, char *msg, size_t msg_cap);
    /* Optional: exports the module's state for the next version.  On success
     * sets *data to a buffer allocated with malloc() (the library frees it
     * with free()) and *len to its length (*data may stay NULL for no
     * bytes).  Called while the module still serves calls: the state is a
     * snapshot, and updates made by calls that finish on this version after
     * it are not carried over (keep such state in host memory instead). */
    int (*state_export)(void **data, size_t *len, char *msg, size_t msg_cap);
    /* Optional: takes the state the previous version exported.  `data` is
     * borrowed for the duration of the call; `from_version` is the label of
     * the version that exported it (a module decides which formats it
     * understands).  Non-zero refuses this module.  Called before the module
     * receives any call. */
    int (*state_import)(const void *data, size_t len, const char *from_version, char *msg,
                        size_t msg_cap);
} lp_swap_module;

/* The entry's type. */
typedef const lp_swap_module *(*lp_swap_entry_fn)(void);

/* Defines the entry symbol of a module, returning &module_var.  Use once,
 * at file scope, in the module. */
#define LP_SWAP_MODULE_EXPORT(module_var)                                         \
    __attribute__((visibility("default"))) const lp_swap_module                    \
        *livepush_swap_module_v1(void);                                            \
    const lp_swap_module *livepush_swap_module_v1(void) { return &(module_var); }

/* Rules for module code (the library cannot check them):
 *   - no threads, timers, atexit handlers, pthread key destructors or
 *     callbacks registered elsewhere that outlive a call: the module is
 *     unmapped after its grace period;
 *   - no C++ objects with unique symbols (they make dlclose a no-op, so
 *     memory would grow with every swap);
 *   - symbols are resolved locally (RTLD_LOCAL): a module does not see
 *     another module's symbols, and several versions of one module can be
 *     loaded at once without clashing;
 *   - a module calling through a slot of the same host uses the caller's
 *     lp_swap_thread (nesting is allowed). */

/* ===========================================================================
 * The host
 * ======================================================================== */

typedef struct lp_swap_host lp_swap_host;
typedef struct lp_swap_slot lp_swap_slot;
typedef struct lp_swap_thread lp_swap_thread;
typedef struct lp_swap_event lp_swap_event;

/* An event callback (see "Events" below).  `ev` and its strings are valid
 * during the call only. */
typedef void (*lp_swap_event_fn)(void *ctx, const lp_swap_event *ev);

#define LP_SWAP_DEFAULT_TICK_MS 100u
#define LP_SWAP_DEFAULT_MAX_MODULE_SIZE (256u << 20)

/* Settings of a host.  Zero fields take the defaults; strings are copied. */
typedef struct lp_swap_host_config {
    const char *private_dir;   /* folder for private copies (created 0700 if missing; must
                                  be owned by the process's user and not accessible to
                                  others); NULL: see "Private copies" above */
    const char *install_root;  /* an install root of the livepush agent to follow (see
                                  lp_swap_slot_config.module_path); NULL: none */
    uint32_t tick_ms;          /* period of the tick thread (1..60000; 0: 100) */
    bool manual_tick;          /* no tick thread: the host calls lp_swap_tick itself */
    bool no_crash_guard;       /* install no signal handlers: crashes are never claimed */
    bool no_membarrier;        /* readers use full fences instead of membarrier (also the
                                  automatic fallback when the kernel lacks it) */
    size_t max_module_size;    /* largest module file accepted (0: 256 MiB) */
    lp_swap_event_fn on_event; /* NULL: events are not reported */
    void *on_event_ctx;
    /* Reporting rollbacks to the agent (see "Reporting to the agent"); only
     * with install_root. */
    const char *agent_socket;   /* the agent's control socket (a unix socket path of at
                                   most 107 bytes); NULL: <install_root>/.livepush/
                                   control.sock */
    bool no_report;             /* never report to the agent */
    uint32_t report_timeout_ms; /* one attempt waits this long for the answer
                                   (1..600000; 0: 10000) */
} lp_swap_host_config;

/* Opens a host: checks (creating it if needed) the private folder and
 * removes copies that dead processes left there, sets up membarrier,
 * installs the crash guard and starts the tick thread (unless turned off).
 * The caller owns *out (lp_swap_host_close).
 * Errors: LP_ERR_INVALID_ARG (a setting out of range, an agent_socket too
 * long), LP_ERR_IO (the private folder cannot be made, is not a folder, is
 * not owned by this user or is open to others; the thread or an eventfd
 * cannot be made), LP_ERR_NOMEM. */
lp_status lp_swap_host_open(const lp_swap_host_config *cfg, lp_swap_host **out, lp_error *err);

/* Closes a host: stops the tick thread, delivers pending events, drops the
 * reports to the agent not made yet (an attempt in flight is abandoned: the
 * agent may still act on it), unloads
 * every version of every slot after its grace period and frees everything.
 * No call may be in progress through any of its slots, and no thread may
 * call them afterwards.  If a thread is nevertheless still inside a call
 * after 2 seconds, the versions it may use are left loaded (leaked) rather
 * than unmapped under it.  Thread records not unregistered are freed; the
 * alternate signal stacks the library gave to threads other than the
 * calling one stay allocated (they may still be installed in those
 * threads).  NULL is fine. */
void lp_swap_host_close(lp_swap_host *h);

/* ---- slots ---------------------------------------------------------------- */

/* Probation settings.  Zero fields take the defaults given. */
typedef struct lp_swap_probation {
    unsigned flags;            /* LP_SWAP_PROBATION_* below */
    uint32_t window_ms;        /* how long a new version is on probation (0: 10000) */
    uint32_t baseline_ms;      /* how long the running version is measured just before the
                                  swap (0: 1000); lp_swap_update waits this long */
    uint32_t min_calls;        /* calls a version must have served before its rates are
                                  judged, for the new and the baseline alike (0: 100) */
    double error_factor;       /* error rate limit = baseline rate * factor + slack */
    double error_slack;        /*   (0: 2.0 and 0.01, i.e. one point of percentage) */
    double latency_factor;     /* p99 limit = baseline p99 * factor + slack_ns */
    uint64_t latency_slack_ns; /*   (0: 2.0 and 10000 ns) */
} lp_swap_probation;

#define LP_SWAP_PROBATION_OFF 1u        /* swap with no probation: the previous version is
                                           retired at once */
#define LP_SWAP_PROBATION_NO_ERRORS 2u  /* do not judge the error rate */
#define LP_SWAP_PROBATION_NO_LATENCY 4u /* do not judge latency (no clock reads per call) */
#define LP_SWAP_PROBATION_NO_BASELINE 8u /* do not measure the previous version (no wait in
                                            lp_swap_update; latency then is not judged) */

/* lp_swap_slot_config.flags */
#define LP_SWAP_SLOT_TABLE_MIXED 1u /* the table holds more than function pointers: do not
                                       require every pointer-sized entry to be non-NULL */

#define LP_SWAP_DEFAULT_STATE_MAX (64u << 20)

/* A slot's declaration.  Strings are copied. */
typedef struct lp_swap_slot_config {
    const char *name;          /* 1..64 characters of [A-Za-z0-9._-]; unique in the host */
    const char *interface;     /* 1..64 printable ASCII characters */
    uint32_t abi_version;
    size_t table_size;         /* sizeof the interface's table (1..LP_SWAP_TABLE_MAX) */
    unsigned flags;            /* LP_SWAP_SLOT_* */
    const char *module_path;   /* path of the module inside a release of the followed
                                  install root ("lib/calc.so": relative, no "..");
                                  NULL: this slot does not follow the install root */
    size_t state_max;          /* largest exported state accepted (0: 64 MiB) */
    lp_swap_probation probation;
} lp_swap_slot_config;

/* Declares a slot in `h`; it starts empty (calls complete with outcome
 * LP_SWAP_EMPTY until a version is loaded).  The slot belongs to the host
 * (freed by lp_swap_host_close); *out is borrowed.  If the host follows an
 * install root and module_path is set, the next tick loads the module of
 * the current release.
 * Errors: LP_ERR_INVALID_ARG (a field out of range, named in the message),
 * LP_ERR_EXISTS (a slot of that name exists), LP_ERR_NOMEM. */
lp_status lp_swap_slot_declare(lp_swap_host *h, const lp_swap_slot_config *cfg,
                               lp_swap_slot **out, lp_error *err);

/* ---- threads -------------------------------------------------------------- */

/* Registers the calling thread as a caller of h's slots.  The caller owns
 * *out and must unregister it from the same thread (or leave it to
 * lp_swap_host_close).  If the crash guard is on and the thread has no
 * alternate signal stack, one is installed.
 * Errors: LP_ERR_NOMEM, LP_ERR_IO (the signal stack). */
lp_status lp_swap_thread_register(lp_swap_host *h, lp_swap_thread **out, lp_error *err);

/* Unregisters the calling thread's record (and removes the signal stack
 * lp_swap_thread_register installed).  Must be called from the thread that
 * registered it, outside any call.  NULL is fine. */
void lp_swap_thread_unregister(lp_swap_thread *t);

/* The calling thread's record, registered on first use and unregistered
 * when the thread exits (a pthread key of the host).  Costs a
 * pthread_getspecific per use: a thread making many calls should keep the
 * pointer.  NULL if registration failed (out of memory). */
lp_swap_thread *lp_swap_thread_self(lp_swap_host *h);

/* ---- calls ---------------------------------------------------------------- */

/* lp_swap_call.outcome */
#define LP_SWAP_ENTERED 0 /* inside a call: use .table, then leave */
#define LP_SWAP_EMPTY 1   /* the slot has no version: not entered, do not leave */
#define LP_SWAP_CRASHED 2 /* the call crashed inside a module on probation and was
                             abandoned; the slot is back on the previous version.
                             Not entered: do not leave. */

/* Internal parts the inline call path reads (their layout is part of the
 * ABI of this header's version; do not use them directly). */
struct lp_swap_vhead_ {
    unsigned flags;
    unsigned reserved_;
    union {
        void *owner_;
        uint64_t align_;
    } u_;
    /* the version's copy of the module's table follows */
};
#define LP_SWAP_VTABLE_(v) ((const void *)((const char *)(v) + sizeof(struct lp_swap_vhead_)))
struct lp_swap_slot_head_ {
    struct lp_swap_vhead_ *cur;
};
struct lp_swap_reader_ {
    uint64_t epoch;      /* 0 outside calls; else the host's epoch at the outermost entry */
    uint32_t fence;
    uint32_t reserved_;
    const uint64_t *gp;
};

/* One call through a slot, on the caller's stack.  Only .table, .outcome and
 * .signal are for the caller; the rest is private. */
typedef struct lp_swap_call {
    const void *table;  /* LP_SWAP_ENTERED: the entered version's table, valid until
                           the call is left; NULL otherwise */
    int outcome;        /* LP_SWAP_ENTERED, LP_SWAP_EMPTY or LP_SWAP_CRASHED */
    int signal;         /* LP_SWAP_CRASHED: the signal (SIGSEGV, SIGBUS, ...) */
    lp_swap_thread *thread_;
    struct lp_swap_vhead_ *version_;
    unsigned flags_;
    uint32_t outer_;    /* this call is the thread's outermost */
    uint64_t start_ns_;
    struct lp_swap_call *prev_;
    jmp_buf jb_;
} lp_swap_call;

/* Enters a call through `slot` on the calling thread's record `thread`,
 * filling *call (an lp_swap_call *).  A statement, not an expression; then
 * look at call->outcome:
 *   LP_SWAP_ENTERED  call through call->table (cast to the interface's
 *                    struct), then leave with lp_swap_leave or
 *                    lp_swap_leave_error, exactly once, from this function
 *                    (the call's entry point is saved in this function's
 *                    frame: do not return from it before leaving);
 *   LP_SWAP_EMPTY    nothing was entered;
 *   LP_SWAP_CRASHED  the call crashed inside a module on probation; control
 *                    came back here (a second time, like setjmp).  Local
 *                    variables of this function changed after LP_SWAP_ENTER
 *                    have indeterminate values unless they are volatile
 *                    (gcc's -Wclobbered may point some out; lp_swap_invoke
 *                    has no such rule).
 * In steady state it costs a couple of nanoseconds more than a direct call
 * (measured in the design notes); the function that uses it needs a stack
 * frame, since setjmp may be called in it.  See the design notes for calls
 * during probation. */
#define LP_SWAP_ENTER(slot, thread, call)                                         \
    do {                                                                           \
        if (lp_swap_enter_((slot), (thread), (call)) > 0) {                        \
            if (setjmp((call)->jb_) != 0)                                          \
                lp_swap_recovered_(call);                                          \
        }                                                                          \
    } while (0)

/* Leaves a call that was entered (outcome LP_SWAP_ENTERED) and reports it
 * as successful.  Harmless on a call that was not entered, or left already. */
static inline void lp_swap_leave(lp_swap_call *call);

/* Leaves a call that was entered and reports it as failed: during probation
 * failed calls make the error rate the new version is judged on. */
static inline void lp_swap_leave_error(lp_swap_call *call);

/* The same as a function call: enters `slot`, runs fn(table, arg) on the
 * live version, leaves (as failed when fn returned a negative value) and
 * returns the outcome: LP_SWAP_ENTERED (fn ran; *result, if result is not
 * NULL, is what it returned), LP_SWAP_EMPTY (fn did not run) or
 * LP_SWAP_CRASHED (fn crashed inside a module on probation and was
 * abandoned).  The entry point of a guarded call is saved in a frame of the
 * library, not the caller's, so none of LP_SWAP_ENTER's rules about local
 * variables apply; in steady state fn is called directly from this inline
 * function (a static fn is usually inlined into it). */
typedef int (*lp_swap_invoke_fn)(const void *table, void *arg);
static inline int lp_swap_invoke(lp_swap_slot *slot, lp_swap_thread *thread, lp_swap_invoke_fn fn,
                                 void *arg, int *result);

/* ---- updating ------------------------------------------------------------- */

/* Loads the module at `path` into `slot` and makes it live: copy, load,
 * checks and self-test (see the introduction), baseline measurement of the
 * running version (waits probation.baseline_ms unless off), state hand-over,
 * the swap, and probation against the previous version (unless off, or the
 * slot was empty).  Returns once the new version is live; probation then
 * goes on in ticks.  On failure nothing changes for callers and a REFUSED
 * event is reported.
 * Errors: LP_ERR_INVALID_ARG; LP_ERR_STATE (a version of this slot is on
 * probation: commit or roll it back first); LP_ERR_NOT_FOUND (no such file,
 * or no entry symbol); LP_ERR_TOO_LARGE (the file, or the exported state);
 * LP_ERR_IO (copying); LP_ERR_MALFORMED (dlopen refused the file; the entry
 * returned NULL or a bad description); LP_ERR_UNSUPPORTED (interface name,
 * ABI version or table size differ from the slot's; the running version
 * exports state and this one cannot import it); LP_ERR_STATE (the
 * self-test failed or crashed; the state export or import failed or
 * crashed). */
lp_status lp_swap_update(lp_swap_slot *slot, const char *path, lp_error *err);

/* Ends the probation of the slot's new version now and keeps it (the
 * previous version is retired).  Errors: LP_ERR_STATE (nothing is on
 * probation, or it was just rolled back). */
lp_status lp_swap_commit(lp_swap_slot *slot, lp_error *err);

/* Ends the probation of the slot's new version now and goes back to the
 * previous one (reason LP_SWAP_REASON_REQUESTED; the new version's state is
 * handed back when it exports state and the previous one imports it).
 * Errors: LP_ERR_STATE (nothing is on probation, or it ended already). */
lp_status lp_swap_rollback(lp_swap_slot *slot, lp_error *err);

/* Does the time-based work that is due: follows the install root (as
 * lp_swap_check_release), finishes crashes claimed since the last tick,
 * judges, commits or rolls back versions on probation, unloads retired
 * versions whose grace period has passed (without waiting), moves reports
 * to the agent on (connect, write, read what has arrived: never waiting),
 * and delivers events.  Never waits for callers.  A host with a tick thread need not
 * call it.  Errors: those of lp_swap_check_release (the other work is
 * done anyway). */
lp_status lp_swap_tick(lp_swap_host *h, lp_error *err);

/* Waits until every retired version has been unloaded (their grace periods
 * passed), for at most timeout_ms (0: check once).  Errors: LP_ERR_STATE
 * when some callers were still inside them at the deadline (the message
 * names slot and version). */
lp_status lp_swap_reclaim(lp_swap_host *h, uint32_t timeout_ms, lp_error *err);

/* Looks at the followed install root now: if `<root>/current` points to a
 * release that a slot with a module_path has not seen yet, the slot loads
 * `<root>/current/<module_path>` (lp_swap_update) unless the file is the
 * one it runs (same file, or same SHA-256).  If the slot's new version is
 * on probation the load waits for a later tick; if the release went back to
 * the one whose module the slot runs as its previous version, the new one
 * is rolled back.  It returns once the module of the release `current`
 * shows is live or was refused (a call made while another thread, the tick
 * thread say, loads that module waits for it): a host that follows an
 * install root calls it once at start to serve with the current module
 * from its first request.  A version loaded here remembers the release
 * ("releases/<id>" of the agent's layout) for a report to the agent.  A
 * host told of a release through a channel of its own
 * (e.g. a control socket) calls this; the tick thread calls it every tick
 * and when inotify reports a change of `current`.
 * Errors: LP_ERR_IO (reading the link); failed loads are reported as
 * REFUSED events and tried again only when `current` changes. */
lp_status lp_swap_check_release(lp_swap_host *h, lp_error *err);

/* ---- events --------------------------------------------------------------- */

typedef enum lp_swap_event_kind {
    LP_SWAP_EV_SWAPPED = 1,     /* a new version went live (on probation unless off) */
    LP_SWAP_EV_COMMITTED = 2,   /* a version passed probation; its previous one is retired */
    LP_SWAP_EV_ROLLED_BACK = 3, /* a version on probation was swapped out; the previous
                                   one is live again */
    LP_SWAP_EV_REFUSED = 4,     /* a module was refused at load; nothing changed */
    LP_SWAP_EV_UNLOADED = 5,    /* a retired version was unloaded after its grace period */
    LP_SWAP_EV_REPORTED = 6,    /* the agent took the report of a rolled back release
                                   (message: what it did) */
    LP_SWAP_EV_REPORT_FAILED = 7, /* an attempt to report failed (message: why, and
                                     whether and when it is tried again) */
} lp_swap_event_kind;

typedef enum lp_swap_reason {
    LP_SWAP_REASON_NONE = 0,
    LP_SWAP_REASON_CRASH = 1,      /* a crash inside the module was claimed */
    LP_SWAP_REASON_ERROR_RATE = 2, /* its error rate passed the limit */
    LP_SWAP_REASON_LATENCY = 3,    /* its p99 latency passed the limit */
    LP_SWAP_REASON_REQUESTED = 4,  /* lp_swap_rollback, or the release went back */
} lp_swap_reason;

/* Call figures of one version over a period. */
typedef struct lp_swap_stats {
    uint64_t calls;   /* calls left (with lp_swap_leave or lp_swap_leave_error) */
    uint64_t errors;  /* calls left with lp_swap_leave_error */
    uint64_t p50_ns;  /* latency percentiles (upper bounds of histogram buckets);
                         0 when latency was not measured */
    uint64_t p99_ns;
    uint64_t p999_ns;
} lp_swap_stats;

struct lp_swap_event {
    lp_swap_event_kind kind;
    lp_swap_reason reason;    /* ROLLED_BACK: why */
    const char *slot;         /* slot name */
    const char *version;      /* the version concerned ("" if a refused module's label
                                 could not be read) */
    const char *other;        /* SWAPPED: the version replaced; COMMITTED: the previous
                                 version retired; ROLLED_BACK: the version live again;
                                 "" when none */
    const char *path;         /* the module file the version was loaded from */
    const char *message;      /* one line: what happened and why */
    int signal;               /* CRASH: the signal */
    uint64_t fault_offset;    /* CRASH: faulting PC minus the module's load address
                                 (what addr2line -e <module> expects) */
    uint64_t fault_address;   /* CRASH: the address that faulted (siginfo si_addr) */
    uint64_t crashed_calls;   /* CRASH: calls abandoned so far */
    lp_swap_stats stats;      /* COMMITTED, ROLLED_BACK: the new version's figures */
    lp_swap_stats baseline;   /* the previous version's figures before the swap */
    uint64_t release;         /* the release of the followed install root the version
                                 was loaded from (0: loaded by path, with
                                 lp_swap_update); REPORTED, REPORT_FAILED: the release
                                 reported */
    int will_retry;           /* REPORT_FAILED: 1 when it is tried again */
};

/* ---- information -------------------------------------------------------- */

#define LP_SWAP_SLOT_IS_EMPTY 0
#define LP_SWAP_SLOT_IS_STABLE 1
#define LP_SWAP_SLOT_ON_PROBATION 2

#define LP_SWAP_PATH_MAX 4096u

/* A slot's state, copied out. */
typedef struct lp_swap_slot_info {
    int state;                              /* LP_SWAP_SLOT_* */
    char version[LP_SWAP_VERSION_MAX + 1];  /* live version's label ("" when empty) */
    char previous[LP_SWAP_VERSION_MAX + 1]; /* ON_PROBATION: the version kept to go back to */
    char sha256[65];                        /* live version: hex SHA-256 of the loaded bytes */
    char path[LP_SWAP_PATH_MAX];            /* live version: the file it was loaded from */
    uint64_t release;                       /* live version: the release of the followed
                                               install root it came from (0: loaded by
                                               path) */
    int64_t probation_left_ms;              /* ON_PROBATION: time left in the window */
    uint64_t swaps, commits, rollbacks, refusals; /* counts since the slot was declared */
    unsigned loaded;                        /* versions of this slot currently loaded: live,
                                               previous, retired not yet unloaded, and
                                               crashed ones (kept mapped) */
    lp_swap_stats probation_stats;          /* ON_PROBATION: the new version so far */
    lp_swap_stats baseline;                 /* the last baseline measured */
} lp_swap_slot_info;

/* Copies the slot's state into *out.  Errors: LP_ERR_INVALID_ARG. */
lp_status lp_swap_slot_get_info(lp_swap_slot *slot, lp_swap_slot_info *out, lp_error *err);

/* ===========================================================================
 * Inline call path (implementation; see LP_SWAP_ENTER)
 * ======================================================================== */

/* Out of line parts of the call path. */
int lp_swap_enter_slow_(lp_swap_call *call);
void lp_swap_leave_slow_(lp_swap_call *call, int failed);
void lp_swap_recovered_(lp_swap_call *call);
int lp_swap_invoke_slow_(lp_swap_thread *thread, struct lp_swap_vhead_ *version, uint32_t outer,
                         lp_swap_invoke_fn fn, void *arg, int *result);

/* Enters the read side and fetches the version.  0: entered on the fast
 * path, or entered/not entered on the slow path with nothing more to do; 1:
 * a guarded call whose entry point the macro must save; -1: not entered. */
/* Enters the read side: the outermost call of a thread publishes the
 * host's epoch; a nested call finds it set and changes nothing.  Every
 * store is of a value that does not depend on the previous call's, so
 * calls in a row form no chain through memory.  1 if this is the
 * outermost call. */
static inline uint32_t lp_swap_read_enter_(struct lp_swap_reader_ *r)
{
    if (__builtin_expect(__atomic_load_n(&r->epoch, __ATOMIC_RELAXED) != 0, 0))
        return 0;
    __atomic_store_n(&r->epoch, __atomic_load_n(r->gp, __ATOMIC_ACQUIRE), __ATOMIC_RELAXED);
    if (__builtin_expect(r->fence != 0, 0))
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    else
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return 1;
}

static inline void lp_swap_read_leave_(struct lp_swap_reader_ *r, uint32_t outer)
{
    if (outer)
        __atomic_store_n(&r->epoch, (uint64_t)0, __ATOMIC_RELEASE);
}

static inline int lp_swap_enter_(lp_swap_slot *slot, lp_swap_thread *thread, lp_swap_call *call)
{
    struct lp_swap_reader_ *r = (struct lp_swap_reader_ *)(void *)thread;
    uint32_t outer = lp_swap_read_enter_(r);
    struct lp_swap_vhead_ *v =
        __atomic_load_n(&((struct lp_swap_slot_head_ *)(void *)slot)->cur, __ATOMIC_ACQUIRE);
    call->thread_ = thread;
    call->version_ = v;
    call->outer_ = outer;
    if (__builtin_expect(v == NULL || __atomic_load_n(&v->flags, __ATOMIC_RELAXED) != 0, 0))
        return lp_swap_enter_slow_(call);
    call->table = LP_SWAP_VTABLE_(v);
    call->outcome = LP_SWAP_ENTERED;
    call->flags_ = 0;
    return 0;
}

static inline void lp_swap_leave(lp_swap_call *call)
{
    if (__builtin_expect(call->flags_ != 0, 0)) {
        lp_swap_leave_slow_(call, 0);
        return;
    }
    lp_swap_read_leave_((struct lp_swap_reader_ *)(void *)call->thread_, call->outer_);
    call->flags_ = 0x80000000u; /* left: a second leave does nothing */
}

static inline void lp_swap_leave_error(lp_swap_call *call)
{
    if (__builtin_expect(call->flags_ != 0, 0)) {
        lp_swap_leave_slow_(call, 1);
        return;
    }
    lp_swap_read_leave_((struct lp_swap_reader_ *)(void *)call->thread_, call->outer_);
    call->flags_ = 0x80000000u;
}

static inline int lp_swap_invoke(lp_swap_slot *slot, lp_swap_thread *thread, lp_swap_invoke_fn fn,
                                 void *arg, int *result)
{
    /* The fast path keeps no lp_swap_call: nothing goes through memory
     * but the thread's record. */
    struct lp_swap_reader_ *r = (struct lp_swap_reader_ *)(void *)thread;
    uint32_t outer = lp_swap_read_enter_(r);
    struct lp_swap_vhead_ *v =
        __atomic_load_n(&((struct lp_swap_slot_head_ *)(void *)slot)->cur, __ATOMIC_ACQUIRE);
    if (__builtin_expect(v == NULL || __atomic_load_n(&v->flags, __ATOMIC_RELAXED) != 0, 0))
        return lp_swap_invoke_slow_(thread, v, outer, fn, arg, result);
    int rv = fn(LP_SWAP_VTABLE_(v), arg);
    if (result)
        *result = rv;
    lp_swap_read_leave_(r, outer);
    return LP_SWAP_ENTERED;
}

#ifdef __cplusplus
}
#endif
#endif
