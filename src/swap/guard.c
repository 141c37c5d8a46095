/*
 * guard.c — crash attribution for modules on probation (see "Crash
 * attribution" in include/livepush/swap.h).
 *
 * This file holds the only process-wide state of live swap, because signal
 * dispositions are process-wide: the handlers that were installed before
 * ours (restored when the last host leaves the guard), a count of hosts
 * using the guard, and two thread-local variables: the innermost guarded
 * call of the thread (a chain through lp_swap_call.prev_) and the signal of
 * the last crash claimed on the thread.  Both are initial-exec TLS so the
 * handler reads them without any allocation.
 *
 * The handler only reads the guarded call and the version it entered,
 * changes the version's state and the slot's pointer with atomic operations,
 * writes to an eventfd, and jumps: everything it does is async-signal-safe.
 * The rest of a claimed crash (reporting, retiring) is done by the tick.
 */
#include "swap/swap_priv.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

static _Thread_local lp_swap_call *tls_guard __attribute__((tls_model("initial-exec")));
static _Thread_local int tls_last_signal __attribute__((tls_model("initial-exec")));

#define GUARD_NSIG 4
static const int guard_signals[GUARD_NSIG] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
static pthread_mutex_t guard_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned guard_users;
static struct sigaction guard_saved[GUARD_NSIG];

const char *lp_swap_signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    default: return "signal";
    }
}

static uintptr_t fault_pc(const void *ucv)
{
    const ucontext_t *uc = ucv;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__i386__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_EIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#elif defined(__arm__)
    return (uintptr_t)uc->uc_mcontext.arm_pc;
#elif defined(__riscv)
    return (uintptr_t)uc->uc_mcontext.__gregs[REG_PC];
#else
    (void)uc;
    return 0;
#endif
}

bool lp_swap_guard_supported(void)
{
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__arm__) ||   \
    defined(__riscv)
    return true;
#else
    return false;
#endif
}

void lp_swap_guard_push(lp_swap_call *c)
{
    c->prev_ = tls_guard;
    tls_guard = c;
}

void lp_swap_guard_pop(lp_swap_call *c)
{
    tls_guard = c->prev_;
}

int lp_swap_guard_last_signal(void)
{
    return tls_last_signal;
}

void lp_swap_guard_unblock(int sig)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

static bool pc_in(const lp_swap_version *v, uintptr_t pc)
{
    for (int i = 0; i < v->ntext; i++)
        if (pc >= v->text_lo[i] && pc < v->text_hi[i])
            return true;
    return false;
}

static void record_crash(lp_swap_version *v, int sig, const siginfo_t *si, uintptr_t pc)
{
    atomic_store(&v->crash_pc, pc);
    atomic_store(&v->crash_addr, (uintptr_t)si->si_addr);
    atomic_store(&v->crash_sig, sig);
}

/* Decides whether the crash belongs to the guarded call `c`, and if so does
 * the async-signal-safe part of the rollback. */
static bool claim(lp_swap_call *c, int sig, const siginfo_t *si, uintptr_t pc)
{
    lp_swap_version *v = lp_swap_version_of(c->version_);
    if (!v || !pc_in(v, pc))
        return false;
    if (c->flags_ & LP_SWAP_CF_LOADING) {
        if (atomic_load(&v->crash_sig) == 0)
            record_crash(v, sig, si, pc);
        return true;
    }
    if (!(c->flags_ & LP_SWAP_VF_GUARD))
        return false;
    int st = atomic_load(&v->state);
    for (;;) {
        if (st == LP_SWAP_V_PROBATION) {
            if (atomic_compare_exchange_weak(&v->state, &st, LP_SWAP_V_CRASHED)) {
                record_crash(v, sig, si, pc);
                atomic_fetch_add(&v->crash_calls, 1);
                /* The previous version stays loaded while v is on probation,
                 * and only the tick retires it after winning the same CAS. */
                __atomic_store_n(&v->slot->head.cur, &v->prev->head, __ATOMIC_RELEASE);
                lp_swap_wake(v->slot->host);
                return true;
            }
            continue;
        }
        if (st == LP_SWAP_V_CRASHED || st == LP_SWAP_V_ROLLED_BACK) {
            /* Already swapped out: a call that was in flight on it. */
            atomic_fetch_add(&v->crash_calls, 1);
            return true;
        }
        return false; /* committed (or retired after): probation is over, not claimed */
    }
}

/* Passes a fault we do not claim to whoever would have had it. */
static void pass_on(int sig, siginfo_t *si, void *ucv)
{
    int i = 0;
    while (i < GUARD_NSIG && guard_signals[i] != sig)
        i++;
    if (i < GUARD_NSIG) {
        const struct sigaction *old = &guard_saved[i];
        if (old->sa_flags & SA_SIGINFO) {
            if (old->sa_sigaction) {
                old->sa_sigaction(sig, si, ucv);
                return;
            }
        } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
            old->sa_handler(sig);
            return;
        }
    }
    /* Default action: restore it; a fault recurs when we return, a signal
     * that was sent is sent again (it is delivered once we return). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (!si || si->si_code <= 0)
        raise(sig);
}

static void on_fault(int sig, siginfo_t *si, void *ucv)
{
    int saved_errno = errno;
    lp_swap_call *c = tls_guard;
    /* Only faults raised by the kernel (si_code > 0), never kill(2). */
    if (c && si && si->si_code > 0 && ucv) {
        uintptr_t pc = fault_pc(ucv);
        if (pc && claim(c, sig, si, pc)) {
            tls_guard = c->prev_;
            tls_last_signal = sig;
            longjmp(c->jb_, sig); /* glibc: the same as siglongjmp; no mask was saved */
        }
    }
    errno = saved_errno;
    pass_on(sig, si, ucv);
}

lp_status lp_swap_guard_install(lp_error *err)
{
    if (!lp_swap_guard_supported())
        return lp_error_set(err, LP_ERR_UNSUPPORTED,
                            "crash guard: this processor is not supported");
    pthread_mutex_lock(&guard_mu);
    if (guard_users == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        for (int i = 0; i < GUARD_NSIG; i++) {
            if (sigaction(guard_signals[i], &sa, &guard_saved[i]) != 0) {
                int e = errno;
                while (i-- > 0)
                    sigaction(guard_signals[i], &guard_saved[i], NULL);
                pthread_mutex_unlock(&guard_mu);
                return lp_error_set(err, LP_ERR_IO, "crash guard: sigaction(%s): %s",
                                    lp_swap_signal_name(guard_signals[i + 1]), strerror(e));
            }
        }
    }
    guard_users++;
    pthread_mutex_unlock(&guard_mu);
    return LP_OK;
}

void lp_swap_guard_uninstall(void)
{
    pthread_mutex_lock(&guard_mu);
    if (guard_users > 0 && --guard_users == 0) {
        for (int i = 0; i < GUARD_NSIG; i++) {
            struct sigaction cur;
            if (sigaction(guard_signals[i], NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
                cur.sa_sigaction == on_fault)
                sigaction(guard_signals[i], &guard_saved[i], NULL);
        }
    }
    pthread_mutex_unlock(&guard_mu);
}

/* ---- the call path's slow parts -------------------------------------------- */

void lp_swap_recovered_(lp_swap_call *c)
{
    int sig = tls_last_signal;
    lp_swap_guard_unblock(sig);
    lp_swap_read_leave_(&c->thread_->r, c->outer_);
    c->table = NULL;
    c->outcome = LP_SWAP_CRASHED;
    c->signal = sig;
    c->flags_ = LP_SWAP_CF_DONE;
}

static int invoke_guarded(lp_swap_call *c, lp_swap_invoke_fn fn, void *arg, int *result)
{
    /* The entry point lives in this frame: nothing of the caller's is
     * changed between here and a jump back. */
    switch (setjmp(c->jb_)) {
    case 0:
        break;
    default:
        lp_swap_recovered_(c);
        return LP_SWAP_CRASHED;
    }
    int r = fn(c->table, arg);
    if (result)
        *result = r;
    lp_swap_leave_slow_(c, r < 0);
    return LP_SWAP_ENTERED;
}

int lp_swap_invoke_slow_(lp_swap_thread *thread, struct lp_swap_vhead_ *version, uint32_t outer,
                         lp_swap_invoke_fn fn, void *arg, int *result)
{
    lp_swap_call c;
    c.thread_ = thread;
    c.version_ = version;
    c.outer_ = outer;
    int e = lp_swap_enter_slow_(&c);
    if (e < 0)
        return c.outcome;
    if (e > 0)
        return invoke_guarded(&c, fn, arg, result);
    int r = fn(c.table, arg);
    if (result)
        *result = r;
    if (r < 0)
        lp_swap_leave_error(&c);
    else
        lp_swap_leave(&c);
    return LP_SWAP_ENTERED;
}
