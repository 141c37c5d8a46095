/*
 * bench_swap.c — the driver of bench/swap/module/run: what live module swap costs
 * the calls that go through a slot.
 *
 *   bench_swap V1.so V2.so PRIVATE_DIR [options]
 *     --rounds N       rounds of each overhead loop [7]
 *     --calls N        calls per overhead round [50000000]
 *     --seconds S      length of each latency phase [5]
 *     --callers N      calling threads in the latency phases [cores - 1, at least 1]
 *     --swap-ms M      one swap every M ms in the swapping phases [100]
 *     --work-ns W      length of one call in the latency phases [1000]
 *
 * Part 1, per-call overhead (one thread): the same call, add(x) of the
 * module, made N times in a loop
 *   direct          through a function pointer the compiler cannot see
 *                   through (the floor: what a host pays without a slot)
 *   slot-enter      LP_SWAP_ENTER / lp_swap_leave
 *   slot-invoke     lp_swap_invoke
 *   urcu-memb       liburcu's memory-barrier flavour, inlined (_LGPL_SOURCE):
 *                   rcu_read_lock, rcu_dereference of a table pointer,
 *                   rcu_read_unlock (only when built with LP_BENCH_URCU)
 *   rwlock          pthread_rwlock_rdlock / unlock around the call
 * each as a host's wrapper function around the call (its own frame), and
 * direct, slot-invoke and urcu-memb again written inline in the loop.
 * Each round's ns per call, in CPU time of the thread (time spent
 * descheduled on a busy machine is not counted); the report gives the
 * median and the spread.
 *
 * Part 2, call latency: `callers` threads call work(x) (calibrated to
 * about W ns) through lp_swap_invoke and time each call (CLOCK_MONOTONIC
 * around it; the same clock cost is in every phase).  Phases of S seconds:
 *   steady          no swap
 *   swapping        lp_swap_update every M ms (probation off), each followed
 *                   by lp_swap_reclaim (the grace period and the unload)
 *   probation       the same with probation on: each new version's calls
 *                   are guarded and measured for M/2 ms, then committed
 * Each phase: calls, failed calls (not entered, crashed, or a result that
 * is neither version's), p50, p99, p99.9, max; the swapping phases also
 * the time of each swap and of each grace period.
 *
 * Output: lines "key value..." that bench/swap/module/run turns into tables.
 */
#include "livepush/swap.h"

#include "bench_api.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef LP_BENCH_URCU
#define _LGPL_SOURCE
#include <urcu/urcu-memb.h>
#endif

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_swap: %s%s\n", what, detail);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of the calling thread: the overhead loops are timed with it, so
 * time the thread spends descheduled (a busy machine) is not counted. */
static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *name, double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    printf("overhead %s %.3f %.3f %.3f\n", name, v[n / 2], v[0], v[n - 1]);
}

/* ---- part 1 -------------------------------------------------------------- */

static lp_swap_host *host;
static lp_swap_slot *slot;

static int invoke_add(const void *table, void *arg)
{
    int *acc = arg;
    *acc = ((const struct bench_api *)table)->add(*acc);
    return 0;
}

#ifdef LP_BENCH_URCU
static const struct bench_api *urcu_table;
#endif
static const struct bench_api *rw_table;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;

/* Each way is a host's wrapper function around one call, as a host calls a
 * module: the same call and return on every side. */
__attribute__((noinline)) static int call_direct(int (*fn)(int), int a)
{
    return fn(a);
}

__attribute__((noinline)) static int call_enter(lp_swap_thread *t, int a)
{
    lp_swap_call c;
    LP_SWAP_ENTER(slot, t, &c);
    if (c.outcome != LP_SWAP_ENTERED)
        return -1;
    int r = ((const struct bench_api *)c.table)->add(a);
    lp_swap_leave(&c);
    return r;
}

__attribute__((noinline)) static int call_invoke(lp_swap_thread *t, int a)
{
    lp_swap_invoke(slot, t, invoke_add, &a, NULL);
    return a;
}

#ifdef LP_BENCH_URCU
__attribute__((noinline)) static int call_urcu(int a)
{
    urcu_memb_read_lock();
    const struct bench_api *t = rcu_dereference(urcu_table);
    int r = t->add(a);
    urcu_memb_read_unlock();
    return r;
}
#endif

__attribute__((noinline)) static int call_rwlock(int a)
{
    pthread_rwlock_rdlock(&rw);
    int r = rw_table->add(a);
    pthread_rwlock_unlock(&rw);
    return r;
}

/* ns per call of `way` over n calls.  The calls are independent (call i
 * adds to i, the results are summed), as a host's calls usually are: no
 * call waits for the previous one's result. */
static double loop(int way, int (*fn)(int), lp_swap_thread *t, long n, int *acc)
{
    int a = *acc;
    uint64_t t0 = cpu_ns();
    switch (way) {
    case 0:
        for (long i = 0; i < n; i++)
            a += call_direct(fn, (int)i);
        break;
    case 1:
        for (long i = 0; i < n; i++)
            a += call_enter(t, (int)i);
        break;
    case 2:
        for (long i = 0; i < n; i++)
            a += call_invoke(t, (int)i);
        break;
#ifdef LP_BENCH_URCU
    case 3:
        for (long i = 0; i < n; i++)
            a += call_urcu((int)i);
        break;
#endif
    case 4:
        for (long i = 0; i < n; i++)
            a += call_rwlock((int)i);
        break;
    /* The same calls written inline in the caller's loop (no wrapper). */
    case 5:
        for (long i = 0; i < n; i++)
            a += fn((int)i);
        break;
    case 6:
        for (long i = 0; i < n; i++) {
            int x = (int)i;
            lp_swap_invoke(slot, t, invoke_add, &x, NULL);
            a += x;
        }
        break;
#ifdef LP_BENCH_URCU
    case 7:
        for (long i = 0; i < n; i++) {
            urcu_memb_read_lock();
            a += rcu_dereference(urcu_table)->add((int)i);
            urcu_memb_read_unlock();
        }
        break;
#endif
    default:
        break;
    }
    uint64_t t1 = cpu_ns();
    *acc = a;
    return (double)(t1 - t0) / (double)n;
}

/* ---- part 2 ---------------------------------------------------------------- */

#define SUB 64 /* histogram: 64 linear buckets per power of two (+-0.8%) */
#define POW 40
typedef struct hist {
    uint64_t b[POW * SUB];
} hist;

static unsigned bucket(uint64_t ns)
{
    if (ns < SUB)
        return (unsigned)ns;
    unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
    unsigned sub = (unsigned)(ns >> (msb - 6)) & (SUB - 1);
    unsigned b = (msb - 5) * SUB + sub;
    return b < POW * SUB ? b : POW * SUB - 1;
}

static uint64_t bucket_mid(unsigned b)
{
    if (b < SUB)
        return b;
    unsigned msb = b / SUB + 5, sub = b % SUB;
    uint64_t lo = (uint64_t)(SUB + sub) << (msb - 6);
    return lo + ((1ull << (msb - 6)) >> 1);
}

static uint64_t pct(const hist *h, uint64_t n, double q)
{
    uint64_t rank = (uint64_t)ceil(q * (double)n), acc = 0;
    for (unsigned b = 0; b < POW * SUB; b++) {
        acc += h->b[b];
        if (acc >= rank && acc > 0)
            return bucket_mid(b);
    }
    return 0;
}

typedef struct caller {
    pthread_t tid;
    int iters;
    atomic_int *phase;  /* -1 stop, 0 idle, 1.. measuring phase p */
    hist h[3];
    uint64_t calls[3], failed[3], max[3];
} caller;

typedef struct work_arg {
    int x, iters, r, tag;
} work_arg;

static int invoke_work(const void *table, void *arg)
{
    const struct bench_api *api = table;
    work_arg *w = arg;
    w->tag = api->tag();
    w->r = api->work(w->x, w->iters);
    return 0;
}

static void *caller_main(void *arg)
{
    caller *c = arg;
    lp_swap_thread *t;
    if (lp_swap_thread_register(host, &t, NULL) != LP_OK)
        die("", "cannot register a calling thread");
    int x = 0;
    for (;;) {
        int p = atomic_load_explicit(c->phase, memory_order_relaxed);
        if (p < 0)
            break;
        x = (x + 1) & 0xffff;
        work_arg w = {.x = x, .iters = c->iters};
        uint64_t t0 = now_ns();
        int outcome = lp_swap_invoke(slot, t, invoke_work, &w, NULL);
        uint64_t d = now_ns() - t0;
        if (p == 0)
            continue;
        p--;
        c->calls[p]++;
        if (outcome != LP_SWAP_ENTERED || w.r != x + w.tag || (w.tag != 1 && w.tag != 2))
            c->failed[p]++;
        c->h[p].b[bucket(d)]++;
        if (d > c->max[p])
            c->max[p] = d;
    }
    lp_swap_thread_unregister(t);
    return NULL;
}

static int calibrate(lp_swap_thread *t, uint64_t target_ns)
{
    int iters = 1000;
    for (int round = 0; round < 8; round++) {
        uint64_t best = UINT64_MAX;
        for (int k = 0; k < 200; k++) {
            work_arg w = {.x = 1, .iters = iters};
            uint64_t t0 = now_ns();
            lp_swap_invoke(slot, t, invoke_work, &w, NULL);
            uint64_t d = now_ns() - t0;
            if (d < best)
                best = d;
        }
        double f = (double)target_ns / (double)(best ? best : 1);
        iters = (int)(iters * f);
        if (iters < 1)
            iters = 1;
        if (f > 0.97 && f < 1.03)
            break;
    }
    return iters;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int main(int argc, char **argv)
{
    if (argc < 4)
        die("", "usage: bench_swap V1.so V2.so PRIVATE_DIR [options]");
    const char *mods[2] = {argv[1], argv[2]};
    long rounds = 7, calls = 50000000, seconds = 5, swap_ms = 100, work_ns = 1000;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    long callers = ncpu > 1 ? ncpu - 1 : 1;
    for (int i = 4; i + 1 < argc; i += 2) {
        long v = atol(argv[i + 1]);
        if (v <= 0)
            die("bad value for ", argv[i]);
        if (!strcmp(argv[i], "--rounds"))
            rounds = v;
        else if (!strcmp(argv[i], "--calls"))
            calls = v;
        else if (!strcmp(argv[i], "--seconds"))
            seconds = v;
        else if (!strcmp(argv[i], "--callers"))
            callers = v;
        else if (!strcmp(argv[i], "--swap-ms"))
            swap_ms = v;
        else if (!strcmp(argv[i], "--work-ns"))
            work_ns = v;
        else
            die("unknown option ", argv[i]);
    }
    if (rounds > 101 || callers > 64)
        die("", "at most 101 rounds and 64 callers");

    lp_error err;
    lp_swap_host_config hc = {.private_dir = argv[3], .manual_tick = true};
    if (lp_swap_host_open(&hc, &host, &err))
        die("", err.msg);
    lp_swap_slot_config sc = {.name = "bench", .interface = BENCH_INTERFACE,
                              .abi_version = BENCH_ABI, .table_size = sizeof(struct bench_api),
                              .probation = {.flags = LP_SWAP_PROBATION_OFF}};
    lp_swap_slot_config sp = sc;
    sp.name = "bench-probation";
    sp.probation = (lp_swap_probation){.window_ms = (uint32_t)(swap_ms / 2),
                                       .flags = LP_SWAP_PROBATION_NO_BASELINE,
                                       .min_calls = 1000000000u};
    lp_swap_slot *plain, *prob;
    if (lp_swap_slot_declare(host, &sc, &plain, &err) ||
        lp_swap_slot_declare(host, &sp, &prob, &err) || lp_swap_update(plain, mods[0], &err) ||
        lp_swap_update(prob, mods[0], &err))
        die("", err.msg);
    slot = plain;
    lp_swap_thread *me;
    if (lp_swap_thread_register(host, &me, &err))
        die("", err.msg);

    /* ---- part 1 ---- */
    lp_swap_call c;
    LP_SWAP_ENTER(slot, me, &c);
    if (c.outcome != LP_SWAP_ENTERED)
        die("", "the slot is empty");
    const struct bench_api *api = c.table;
    int (*volatile direct)(int) = api->add;
    lp_swap_leave(&c);
    rw_table = api;
#ifdef LP_BENCH_URCU
    urcu_memb_register_thread();
    rcu_assign_pointer(urcu_table, api);
#endif
    double v[8][101];
    int acc = 0;
    for (long r = 0; r < rounds; r++) {
        for (int way = 0; way < 8; way++) {
#ifndef LP_BENCH_URCU
            if (way == 3 || way == 7)
                continue;
#endif
            v[way][r] = loop(way, direct, me, calls, &acc);
        }
    }
    report("direct", v[0], (int)rounds);
    report("slot-enter", v[1], (int)rounds);
    report("slot-invoke", v[2], (int)rounds);
#ifdef LP_BENCH_URCU
    report("urcu-memb", v[3], (int)rounds);
#endif
    report("rwlock", v[4], (int)rounds);
    report("inline-direct", v[5], (int)rounds);
    report("inline-slot-invoke", v[6], (int)rounds);
#ifdef LP_BENCH_URCU
    report("inline-urcu-memb", v[7], (int)rounds);
    urcu_memb_unregister_thread();
#endif
    if (acc == 42)
        printf("# %d\n", acc); /* keeps acc alive */

    /* ---- part 2 ---- */
    int iters = calibrate(me, (uint64_t)work_ns);
    printf("work iters %d\n", iters);
    atomic_int phase = 0;
    caller *cs = calloc((size_t)callers, sizeof *cs);
    if (!cs)
        die("", "out of memory");
    for (long i = 0; i < callers; i++) {
        cs[i].iters = iters;
        cs[i].phase = &phase;
        if (pthread_create(&cs[i].tid, NULL, caller_main, &cs[i]) != 0)
            die("", "cannot start a calling thread");
    }
    sleep_ms(500); /* warm up */
    static const char *names[3] = {"steady", "swapping", "probation"};
    double *swap_t = calloc(100000, sizeof *swap_t), *gp_t = calloc(100000, sizeof *gp_t);
    for (int p = 0; p < 3; p++) {
        slot = p == 2 ? prob : plain;
        sleep_ms(100);
        atomic_store(&phase, p + 1);
        uint64_t end = now_ns() + (uint64_t)seconds * 1000000000u;
        int n = 0;
        while (now_ns() < end) {
            if (p == 0) {
                sleep_ms(50);
                continue;
            }
            uint64_t t0 = now_ns();
            if (lp_swap_update(slot, mods[(n + 1) % 2], &err))
                die("", err.msg);
            uint64_t t1 = now_ns(), t2 = t1;
            if (p == 2) {
                sleep_ms((unsigned)(swap_ms / 2));
                lp_swap_tick(host, NULL); /* the window has passed: committed */
                t2 = now_ns();
            }
            if (lp_swap_reclaim(host, 10000, &err))
                die("", err.msg);
            uint64_t t3 = now_ns();
            if (n < 100000) {
                swap_t[n] = (double)(t1 - t0) / 1e3; /* lp_swap_update */
                gp_t[n] = (double)(t3 - t2) / 1e3;   /* retired version's grace + unload */
            }
            n++;
            uint64_t spent = (now_ns() - t0) / 1000000u;
            if ((long)spent < swap_ms)
                sleep_ms((unsigned)(swap_ms - (long)spent));
        }
        atomic_store(&phase, 0);
        sleep_ms(50);
        hist *all = calloc(1, sizeof *all);
        uint64_t tot = 0, failed = 0, mx = 0;
        for (long i = 0; i < callers; i++) {
            for (unsigned b = 0; b < POW * SUB; b++)
                all->b[b] += cs[i].h[p].b[b];
            tot += cs[i].calls[p];
            failed += cs[i].failed[p];
            if (cs[i].max[p] > mx)
                mx = cs[i].max[p];
        }
        printf("latency %s calls %llu failed %llu p50 %llu p99 %llu p999 %llu max %llu swaps %d\n",
               names[p], (unsigned long long)tot, (unsigned long long)failed,
               (unsigned long long)pct(all, tot, 0.5), (unsigned long long)pct(all, tot, 0.99),
               (unsigned long long)pct(all, tot, 0.999), (unsigned long long)mx, n);
        free(all);
        if (n > 0) {
            int m = n < 100000 ? n : 100000;
            qsort(swap_t, (size_t)m, sizeof *swap_t, cmp_double);
            qsort(gp_t, (size_t)m, sizeof *gp_t, cmp_double);
            printf("swap %s median_us %.1f p99_us %.1f max_us %.1f\n", names[p], swap_t[m / 2],
                   swap_t[(int)(m * 0.99)], swap_t[m - 1]);
            printf("grace %s median_us %.1f p99_us %.1f max_us %.1f\n", names[p], gp_t[m / 2],
                   gp_t[(int)(m * 0.99)], gp_t[m - 1]);
        }
    }
    atomic_store(&phase, -1);
    for (long i = 0; i < callers; i++)
        pthread_join(cs[i].tid, NULL);
    printf("callers %ld\n", callers);
    free(cs);
    free(swap_t);
    free(gp_t);
    lp_swap_thread_unregister(me);
    lp_swap_host_close(host);
    return 0;
}
