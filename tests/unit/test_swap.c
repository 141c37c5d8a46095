/*
 * test_swap.c — live module swap (include/livepush/swap.h) with real shared
 * objects: the variants of tests/modules/testmod.c that CMake builds into
 * $LP_TEST_MODULES, loaded with dlopen into slots of a real host, called
 * from real threads, crashing with real signals.
 *
 *   - loading, calling, the private copy left nowhere, the hash reported;
 *   - every kind of bad module refused with a message naming the file and
 *     what failed, the running version untouched and still serving;
 *   - swaps under calls from 4 threads, with membarrier and with fences: no
 *     call fails, no call mixes two versions; grace-period times printed;
 *   - a call in progress finishes on the old version, which is unloaded only
 *     after it left;
 *   - a module crashing on its first calls (SIGSEGV, SIGILL, stack overflow)
 *     rolled back at once, failed calls no more than the calls in flight;
 *     crashes outside the module, or after probation, not claimed (forked
 *     children die as they would without livepush);
 *   - error rate and latency over the limits rolled back; a good version
 *     passes probation; commit and rollback on request;
 *   - state carried across swaps (and handed back on a rollback), a failed
 *     import refused;
 *   - 1,000 swap cycles: no growth in mappings, under 1 MB of resident
 *     memory;
 *   - following an install root: the agent's `current` switch picked up,
 *     hard-linked unchanged modules not reloaded, a bad release refused, a
 *     release rolled back by the agent rolls the module back (and is not
 *     reported to it);
 *   - reporting a rollback to the agent's control socket: with no agent the
 *     tick does not wait and tries again later; a peer that never answers
 *     costs the tick nothing and the attempt ends at its timeout; the
 *     request an agent receives (route, release, reason) and its answer
 *     ending the report; a version loaded by path not reported; a report
 *     dropped once `current` moved;
 *   - the per-call overhead of a slot against a direct call, printed.
 */
#include "testutil.h"
#include "testmod.h"

#include "core/file.h"
#include "livepush/hash.h"
#include "livepush/swap.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#define NTHREADS 4

/* ---- events ------------------------------------------------------------- */

typedef struct rec_event {
    lp_swap_event_kind kind;
    lp_swap_reason reason;
    char slot[80], version[140], other[140], message[LP_ERROR_MSG_MAX];
    int signal;
    uint64_t crashed_calls, fault_offset;
    lp_swap_stats stats, baseline;
    uint64_t release;
    int will_retry;
} rec_event;

typedef struct events {
    pthread_mutex_t mu;
    unsigned n;
    rec_event ev[512];
} events;

static void on_event(void *ctx, const lp_swap_event *ev)
{
    events *e = ctx;
    pthread_mutex_lock(&e->mu);
    if (e->n < sizeof e->ev / sizeof e->ev[0]) {
        rec_event *r = &e->ev[e->n++];
        r->kind = ev->kind;
        r->reason = ev->reason;
        snprintf(r->slot, sizeof r->slot, "%s", ev->slot);
        snprintf(r->version, sizeof r->version, "%s", ev->version);
        snprintf(r->other, sizeof r->other, "%s", ev->other);
        snprintf(r->message, sizeof r->message, "%s", ev->message);
        r->signal = ev->signal;
        r->crashed_calls = ev->crashed_calls;
        r->fault_offset = ev->fault_offset;
        r->stats = ev->stats;
        r->baseline = ev->baseline;
        r->release = ev->release;
        r->will_retry = ev->will_retry;
    }
    pthread_mutex_unlock(&e->mu);
}

/* Index of the first event of `kind` at or after `from`, waiting up to
 * timeout_ms (ticking `h` by hand if given); -1 if none came. */
static int wait_event(events *e, lp_swap_event_kind kind, unsigned from, int timeout_ms,
                      lp_swap_host *tick)
{
    for (int waited = 0;; waited += 2) {
        if (tick)
            lp_swap_tick(tick, NULL);
        pthread_mutex_lock(&e->mu);
        for (unsigned i = from; i < e->n; i++) {
            if (e->ev[i].kind == kind) {
                pthread_mutex_unlock(&e->mu);
                return (int)i;
            }
        }
        pthread_mutex_unlock(&e->mu);
        if (waited >= timeout_ms)
            return -1;
        usleep(2000);
    }
}

static unsigned count_events(events *e, lp_swap_event_kind kind)
{
    unsigned n = 0;
    pthread_mutex_lock(&e->mu);
    for (unsigned i = 0; i < e->n; i++)
        n += e->ev[i].kind == kind;
    pthread_mutex_unlock(&e->mu);
    return n;
}

/* ---- fixture ------------------------------------------------------------- */

typedef struct fixture {
    char *dir;      /* scratch */
    char *priv;     /* the host's private folder */
    const char *mods;
    events ev;
    lp_swap_host *h;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = lp_test_tmpdir("swap");
    f->priv = lp_test_join(f->dir, "private");
    pthread_mutex_init(&f->ev.mu, NULL);
    *state = f;
    return f->dir ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    lp_swap_host_close(f->h);
    lp_test_rmtree(f->dir);
    pthread_mutex_destroy(&f->ev.mu);
    free(f->dir);
    free(f->priv);
    free(f);
    return 0;
}

static char *mod(fixture *f, const char *variant)
{
    if (!f->mods)
        f->mods = lp_test_getenv_or_skip("LP_TEST_MODULES");
    char name[128];
    snprintf(name, sizeof name, "%s.so", variant);
    return lp_test_join(f->mods, name);
}

static lp_swap_host *open_host(fixture *f, bool manual_tick, bool fences, const char *root)
{
    lp_swap_host_config hc = {.private_dir = f->priv, .manual_tick = manual_tick,
                              .no_membarrier = fences, .install_root = root, .tick_ms = 20,
                              .on_event = on_event, .on_event_ctx = &f->ev};
    lp_error err;
    lp_status st = lp_swap_host_open(&hc, &f->h, &err);
    if (st)
        fail_msg("host open: %s", err.msg);
    return f->h;
}

static lp_swap_slot *declare(lp_swap_host *h, const char *name, const lp_swap_probation *p,
                             const char *module_path)
{
    lp_swap_slot_config sc = {.name = name, .interface = TESTMOD_INTERFACE,
                              .abi_version = TESTMOD_ABI,
                              .table_size = sizeof(struct testmod_api),
                              .module_path = module_path};
    if (p)
        sc.probation = *p;
    lp_swap_slot *s = NULL;
    lp_error err;
    if (lp_swap_slot_declare(h, &sc, &s, &err))
        fail_msg("declare: %s", err.msg);
    return s;
}

static void update_ok(fixture *f, lp_swap_slot *s, const char *variant)
{
    char *p = mod(f, variant);
    lp_error err;
    lp_status st = lp_swap_update(s, p, &err);
    if (st)
        fail_msg("update %s: %s", variant, err.msg);
    free(p);
}

/* One call: the tag of the version that served it (0 when not entered),
 * checking that compute agrees with tag() through the same table. */
static int call_tag(lp_swap_slot *s, lp_swap_thread *t, int x)
{
    lp_swap_call c;
    LP_SWAP_ENTER(s, t, &c);
    if (c.outcome != LP_SWAP_ENTERED)
        return 0;
    const struct testmod_api *api = c.table;
    int tag = api->tag(), out = 0;
    int rc = api->compute(x, &out);
    lp_swap_leave(&c);
    if (rc != 0 || out != x + tag)
        return -1;
    return tag;
}

static long call_count(lp_swap_slot *s, lp_swap_thread *t)
{
    lp_swap_call c;
    LP_SWAP_ENTER(s, t, &c);
    if (c.outcome != LP_SWAP_ENTERED)
        return -1;
    long n = ((const struct testmod_api *)c.table)->count();
    lp_swap_leave(&c);
    return n;
}

static void info(lp_swap_slot *s, lp_swap_slot_info *out)
{
    lp_error err;
    if (lp_swap_slot_get_info(s, out, &err))
        fail_msg("info: %s", err.msg);
}

static unsigned files_in(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    unsigned n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Reads a /proc file (their size is 0 to stat) into a new string. */
static char *read_proc(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    size_t n;
    while (b && (n = fread(b + len, 1, cap - len - 1, fp)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    fclose(fp);
    if (b)
        b[len] = '\0';
    return b;
}

static unsigned maps_count(void)
{
    char *m = read_proc("/proc/self/maps");
    assert_non_null(m);
    unsigned n = 0;
    for (char *p = m; *p; p++)
        n += *p == '\n';
    free(m);
    return n;
}

static long rss_kib(void)
{
    char *m = read_proc("/proc/self/statm");
    assert_non_null(m);
    long size = 0, resident = 0;
    assert_int_equal(sscanf(m, "%ld %ld", &size, &resident), 2);
    free(m);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- calling threads --------------------------------------------------------- */

typedef struct compute_arg {
    int x;
    int tag;
    int out;
} compute_arg;

/* For lp_swap_invoke: compute and tag through one table. */
static int invoke_compute(const void *table, void *arg)
{
    const struct testmod_api *api = table;
    compute_arg *a = arg;
    a->tag = api->tag();
    return api->compute(a->x, &a->out);
}

typedef struct worker {
    lp_swap_host *h;
    lp_swap_slot *slot;
    atomic_bool *stop;
    bool use_invoke;    /* lp_swap_invoke instead of LP_SWAP_ENTER */
    bool use_self;      /* lp_swap_thread_self, never unregistered by hand */
    atomic_bool started;
    atomic_ulong calls; /* entered and left */
    unsigned long by_tag[16], crashed, empty, mismatched, errors, after_mark[16];
    atomic_bool mark;   /* set by the test: count tags in after_mark from now on */
    pthread_t tid;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    lp_swap_thread *t = NULL;
    if (w->use_self)
        t = lp_swap_thread_self(w->h);
    else if (lp_swap_thread_register(w->h, &t, NULL) != LP_OK)
        t = NULL;
    if (!t)
        return NULL;
    atomic_store(&w->started, true);
    int x = 0;
    while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
        x = (x + 1) & 0xffff;
        int tag = 0, out = 0, rc = 0;
        if (w->use_invoke) {
            compute_arg a = {.x = x};
            int outcome = lp_swap_invoke(w->slot, t, invoke_compute, &a, &rc);
            if (outcome == LP_SWAP_CRASHED) {
                w->crashed++;
                continue;
            }
            if (outcome == LP_SWAP_EMPTY) {
                w->empty++;
                continue;
            }
            tag = a.tag;
            out = a.out;
        } else {
            lp_swap_call c;
            LP_SWAP_ENTER(w->slot, t, &c);
            if (c.outcome == LP_SWAP_CRASHED) {
                w->crashed++;
                continue;
            }
            if (c.outcome == LP_SWAP_EMPTY) {
                w->empty++;
                continue;
            }
            const struct testmod_api *api = c.table;
            tag = api->tag();
            rc = api->compute(x, &out);
            if (rc != 0)
                lp_swap_leave_error(&c);
            else
                lp_swap_leave(&c);
        }
        if (rc != 0)
            w->errors++;
        else if (out != x + tag)
            w->mismatched++;
        w->by_tag[tag & 15]++;
        if (atomic_load_explicit(&w->mark, memory_order_relaxed))
            w->after_mark[tag & 15]++;
        atomic_fetch_add_explicit(&w->calls, 1, memory_order_relaxed);
    }
    if (!w->use_self)
        lp_swap_thread_unregister(t);
    return NULL;
}

static void start_workers(worker *w, unsigned n, lp_swap_host *h, lp_swap_slot *s,
                          atomic_bool *stop)
{
    atomic_store(stop, false);
    for (unsigned i = 0; i < n; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].h = h;
        w[i].slot = s;
        w[i].stop = stop;
        w[i].use_invoke = i % 2 == 1;
        w[i].use_self = i == 2;
        assert_int_equal(pthread_create(&w[i].tid, NULL, worker_main, &w[i]), 0);
    }
    for (unsigned i = 0; i < n; i++)
        while (!atomic_load(&w[i].started) || atomic_load(&w[i].calls) < 10)
            usleep(200);
}

static void stop_workers(worker *w, unsigned n, atomic_bool *stop)
{
    atomic_store(stop, true);
    for (unsigned i = 0; i < n; i++)
        pthread_join(w[i].tid, NULL);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_load_and_call(void **state)
{
    fixture *f = *state;
    lp_swap_host *h = open_host(f, true, false, NULL);
    lp_swap_slot *s = declare(h, "calc", NULL, NULL);
    lp_swap_thread *t;
    assert_int_equal(lp_swap_thread_register(h, &t, NULL), LP_OK);

    lp_swap_call c;
    LP_SWAP_ENTER(s, t, &c);
    assert_int_equal(c.outcome, LP_SWAP_EMPTY);
    assert_null(c.table);
    lp_swap_leave(&c); /* harmless */
    int r = 0;
    compute_arg a = {.x = 1};
    assert_int_equal(lp_swap_invoke(s, t, invoke_compute, &a, &r), LP_SWAP_EMPTY);

    update_ok(f, s, "v1");
    assert_int_equal(call_tag(s, t, 41), 1);
    assert_int_equal(lp_swap_invoke(s, t, invoke_compute, &a, &r), LP_SWAP_ENTERED);
    assert_int_equal(r, 0);
    assert_int_equal(a.out, 2);

    lp_swap_slot_info in;
    info(s, &in);
    assert_int_equal(in.state, LP_SWAP_SLOT_IS_STABLE);
    assert_string_equal(in.version, "1.v1");
    assert_int_equal(in.loaded, 1);
    assert_int_equal(in.swaps, 1);
    char *p = mod(f, "v1");
    assert_string_equal(in.path, p);
    uint8_t d[LP_HASH_MAX_LEN];
    char hex[65];
    assert_int_equal(lp_hash_file(LP_HASH_SHA256, p, d, NULL, NULL), LP_OK);
    lp_hex_encode(d, LP_SHA256_LEN, hex);
    assert_string_equal(in.sha256, hex);
    free(p);
    /* The private copy was unlinked right after dlopen; the folder is 0700. */
    assert_int_equal(files_in(f->priv), 0);
    struct stat sb;
    assert_int_equal(stat(f->priv, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    /* The mapping is of the deleted private copy, not of the module file. */
    char *maps = read_proc("/proc/self/maps");
    assert_non_null(maps);
    assert_non_null(strstr(maps, f->priv));
    assert_null(strstr(maps, "tests/modules/v1.so"));
    free(maps);

    /* A stale copy left by a dead process is removed at the next open. */
    char *stale = lp_test_join(f->priv, "p999999999.1.0000000000000000.calc.so");
    assert_int_equal(lp_test_write_str(stale, "x"), 0);
    lp_swap_thread_unregister(t);
    lp_swap_host_close(f->h);
    f->h = NULL;
    open_host(f, true, false, NULL);
    assert_int_equal(files_in(f->priv), 0);
    free(stale);
}

static void test_declare_checks(void **state)
{
    fixture *f = *state;
    lp_swap_host *h = open_host(f, true, false, NULL);
    lp_error err;
    lp_swap_slot *s;
    lp_swap_slot_config sc = {.name = "a b", .interface = "x", .abi_version = 1,
                              .table_size = 8};
    assert_int_equal(lp_swap_slot_declare(h, &sc, &s, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "name"));
    sc.name = "ok";
    sc.table_size = 12;
    assert_int_equal(lp_swap_slot_declare(h, &sc, &s, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "function pointers"));
    sc.table_size = 8;
    sc.module_path = "lib/x.so";
    assert_int_equal(lp_swap_slot_declare(h, &sc, &s, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "no install root"));
    sc.module_path = NULL;
    sc.probation.error_factor = -1;
    assert_int_equal(lp_swap_slot_declare(h, &sc, &s, &err), LP_ERR_INVALID_ARG);
    sc.probation.error_factor = 0;
    assert_int_equal(lp_swap_slot_declare(h, &sc, &s, &err), LP_OK);
    assert_int_equal(lp_swap_slot_declare(h, &sc, &s, &err), LP_ERR_EXISTS);
    lp_swap_host_close(f->h);
    f->h = NULL;
    char *root = lp_test_join(f->dir, "root");
    lp_swap_host_config hc = {.private_dir = f->priv, .manual_tick = true, .install_root = root};
    assert_int_equal(lp_swap_host_open(&hc, &f->h, &err), LP_OK);
    sc.name = "w";
    sc.module_path = "lib/../x.so";
    assert_int_equal(lp_swap_slot_declare(f->h, &sc, &s, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "module_path"));
    sc.module_path = "lib/x.so";
    assert_int_equal(lp_swap_slot_declare(f->h, &sc, &s, &err), LP_OK);
    free(root);
    /* A private folder open to others is refused. */
    lp_swap_host_close(f->h);
    f->h = NULL;
    assert_int_equal(chmod(f->priv, 0755), 0);
    hc.install_root = NULL;
    lp_swap_host *h2 = NULL;
    assert_int_equal(lp_swap_host_open(&hc, &h2, &err), LP_ERR_IO);
    assert_non_null(strstr(err.msg, "0755"));
    assert_null(h2);
}

typedef struct refusal {
    const char *variant;
    lp_status code;
    const char *text;
} refusal;

static void test_refusals(void **state)
{
    fixture *f = *state;
    lp_swap_host *h = open_host(f, true, false, NULL);
    lp_swap_slot *s = declare(h, "calc", NULL, NULL);
    lp_swap_thread *t;
    assert_int_equal(lp_swap_thread_register(h, &t, NULL), LP_OK);
    update_ok(f, s, "v1");
    for (int i = 0; i < 5; i++)
        assert_int_equal(call_tag(s, t, i), 1);

    char *garbage = lp_test_join(f->dir, "garbage.so");
    assert_int_equal(lp_test_write_str(garbage, "this is not an ELF file\n"), 0);
    char *missing = lp_test_join(f->dir, "missing.so");
    const refusal cases[] = {
        {"bad_abi", LP_ERR_UNSUPPORTED, "ABI version 4, the slot needs 3"},
        {"bad_size", LP_ERR_UNSUPPORTED, "table size 48 bytes, the slot needs 40"},
        {"bad_iface", LP_ERR_UNSUPPORTED, "interface \"lp-other\", the slot needs \"lp-test\""},
        {"no_entry", LP_ERR_NOT_FOUND, "no entry symbol livepush_swap_module_v1"},
        {"entry_null", LP_ERR_MALFORMED, "returned NULL"},
        {"null_fn", LP_ERR_MALFORMED, "table entry 4 is NULL"},
        {"selftest_fails", LP_ERR_STATE,
         "the self-test failed (1): tag 1 is not what the tests expect"},
        {"selftest_crashes", LP_ERR_STATE, "the self-test crashed: SIGSEGV at offset 0x"},
        {"import_fails", LP_ERR_STATE,
         "the state import (from version 1.v1) failed (2): cannot read the state of version "
         "1.v1"},
        {"nostate", LP_ERR_UNSUPPORTED,
         "version 1.v1 exports its state and version 8.nostate has no state_import"},
    };
    unsigned n_cases = sizeof cases / sizeof cases[0];
    for (unsigned i = 0; i < n_cases + 2; i++) {
        char *p;
        lp_status want;
        const char *text;
        if (i < n_cases) {
            p = mod(f, cases[i].variant);
            want = cases[i].code;
            text = cases[i].text;
        } else if (i == n_cases) {
            p = strdup(garbage);
            want = LP_ERR_MALFORMED;
            text = "dlopen: ";
        } else {
            p = strdup(missing);
            want = LP_ERR_NOT_FOUND;
            text = "No such file";
        }
        lp_error err;
        lp_status st = lp_swap_update(s, p, &err);
        print_message("refused: %s\n", err.msg);
        assert_int_equal(st, want);
        assert_non_null(strstr(err.msg, "slot calc: "));
        assert_non_null(strstr(err.msg, p));
        if (!strstr(err.msg, text))
            fail_msg("\"%s\" does not say \"%s\"", err.msg, text);
        /* The running version is untouched and still serves. */
        assert_int_equal(call_tag(s, t, (int)i), 1);
        free(p);
    }
    lp_swap_slot_info in;
    info(s, &in);
    assert_string_equal(in.version, "1.v1");
    assert_int_equal(in.refusals, n_cases + 2);
    assert_int_equal(in.swaps, 1);
    /* The module whose self-test crashed stays mapped; the others are gone. */
    assert_int_equal(in.loaded, 2);
    assert_int_equal(count_events(&f->ev, LP_SWAP_EV_REFUSED), n_cases + 2);
    assert_int_equal(files_in(f->priv), 0);
    /* v1's state is intact: 5 + n_cases + 2 calls. */
    assert_int_equal(call_count(s, t), (long)(5 + n_cases + 2));
    lp_swap_thread_unregister(t);
    free(garbage);
    free(missing);
}

static void swap_under_load(fixture *f, bool fences)
{
    lp_swap_host *h = open_host(f, true, fences, NULL);
    lp_swap_probation off = {.flags = LP_SWAP_PROBATION_OFF};
    lp_swap_slot *s = declare(h, "calc", &off, NULL);
    update_ok(f, s, "v1");
    worker w[NTHREADS];
    atomic_bool stop;
    start_workers(w, NTHREADS, h, s, &stop);
    char *p1 = mod(f, "v1"), *p2 = mod(f, "v2");
    const unsigned swaps = 200;
    double gp_sum = 0, gp_max = 0, sw_sum = 0;
    double t0 = now_s();
    for (unsigned i = 0; i < swaps; i++) {
        lp_error err;
        double a = now_s();
        if (lp_swap_update(s, i % 2 == 0 ? p2 : p1, &err))
            fail_msg("swap %u: %s", i, err.msg);
        double b = now_s();
        if (lp_swap_reclaim(h, 5000, &err))
            fail_msg("reclaim %u: %s", i, err.msg);
        double c = now_s();
        sw_sum += b - a;
        gp_sum += c - b;
        if (c - b > gp_max)
            gp_max = c - b;
    }
    double t1 = now_s();
    stop_workers(w, NTHREADS, &stop);
    unsigned long calls = 0, t1n = 0, t2n = 0;
    for (unsigned i = 0; i < NTHREADS; i++) {
        assert_int_equal(w[i].crashed, 0);
        assert_int_equal(w[i].empty, 0);
        assert_int_equal(w[i].mismatched, 0);
        assert_int_equal(w[i].errors, 0);
        assert_true(w[i].by_tag[1] > 0 && w[i].by_tag[2] > 0);
        calls += atomic_load(&w[i].calls);
        t1n += w[i].by_tag[1];
        t2n += w[i].by_tag[2];
    }
    print_message("%s: %u swaps under %d calling threads in %.2f s: %lu calls (%lu on v1, %lu on "
                  "v2), 0 failed, 0 mixed; swap (copy, load, self-test, hand-over, store) %.0f us "
                  "on average; grace period + unload %.0f us on average, %.0f us at most\n",
                  fences ? "fences" : "membarrier", swaps, NTHREADS, t1 - t0, calls, t1n, t2n,
                  sw_sum / swaps * 1e6, gp_sum / swaps * 1e6, gp_max * 1e6);
    lp_swap_slot_info in;
    info(s, &in);
    assert_int_equal(in.swaps, swaps + 1);
    assert_int_equal(in.loaded, 1);
    assert_int_equal(count_events(&f->ev, LP_SWAP_EV_UNLOADED), swaps);
    free(p1);
    free(p2);
}

static void test_swap_concurrent_membarrier(void **state)
{
    swap_under_load(*state, false);
}

static void test_swap_concurrent_fences(void **state)
{
    swap_under_load(*state, true);
}

typedef struct napper {
    lp_swap_host *h;
    lp_swap_slot *s;
    atomic_bool inside;
    int tag;
} napper;

static void *napper_main(void *arg)
{
    napper *n = arg;
    lp_swap_thread *t;
    if (lp_swap_thread_register(n->h, &t, NULL) != LP_OK)
        return NULL;
    lp_swap_call c;
    LP_SWAP_ENTER(n->s, t, &c);
    if (c.outcome == LP_SWAP_ENTERED) {
        atomic_store(&n->inside, true);
        n->tag = ((const struct testmod_api *)c.table)->nap(300);
        lp_swap_leave(&c);
    }
    lp_swap_thread_unregister(t);
    return NULL;
}

static void test_call_finishes_on_old(void **state)
{
    fixture *f = *state;
    lp_swap_host *h = open_host(f, true, false, NULL);
    lp_swap_probation off = {.flags = LP_SWAP_PROBATION_OFF};
    lp_swap_slot *s = declare(h, "calc", &off, NULL);
    update_ok(f, s, "v1");
    napper n = {.h = h, .s = s};
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, napper_main, &n), 0);
    while (!atomic_load(&n.inside))
        usleep(100);
    update_ok(f, s, "v2");
    lp_swap_thread *t;
    assert_int_equal(lp_swap_thread_register(h, &t, NULL), LP_OK);
    assert_int_equal(call_tag(s, t, 5), 2); /* new calls: the new version */
    lp_error err;
    assert_int_equal(lp_swap_reclaim(h, 50, &err), LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "version 1.v1"));
    assert_non_null(strstr(err.msg, "still has callers inside"));
    lp_swap_slot_info in;
    info(s, &in);
    assert_int_equal(in.loaded, 2);
    double a = now_s();
    assert_int_equal(lp_swap_reclaim(h, 5000, &err), LP_OK);
    double waited = now_s() - a;
    pthread_join(tid, NULL);
    assert_int_equal(n.tag, 1); /* the call that started on v1 finished on it */
    info(s, &in);
    assert_int_equal(in.loaded, 1);
    int u = wait_event(&f->ev, LP_SWAP_EV_UNLOADED, 0, 0, NULL);
    assert_true(u >= 0);
    assert_string_equal(f->ev.ev[u].version, "1.v1");
    print_message("v1 unloaded %.0f ms after the swap, when its last call left\n",
                  waited * 1000 + 50);
    lp_swap_thread_unregister(t);
}

static lp_swap_probation probation_for_crash(void)
{
    lp_swap_probation p = {.window_ms = 30000, .baseline_ms = 100, .min_calls = 1000000};
    return p;
}

static void test_crash_rolled_back(void **state)
{
    fixture *f = *state;
    lp_swap_host *h = open_host(f, false, false, NULL); /* the tick thread finishes it */
    lp_swap_probation p = probation_for_crash();
    lp_swap_slot *s = declare(h, "calc", &p, NULL);
    update_ok(f, s, "v1");
    worker w[NTHREADS];
    atomic_bool stop;
    start_workers(w, NTHREADS, h, s, &stop);
    unsigned from = f->ev.n;
    update_ok(f, s, "crash_first");
    int i = wait_event(&f->ev, LP_SWAP_EV_ROLLED_BACK, from, 10000, NULL);
    assert_true(i >= 0);
    for (unsigned k = 0; k < NTHREADS; k++)
        atomic_store(&w[k].mark, true);
    usleep(100000);
    stop_workers(w, NTHREADS, &stop);
    rec_event *e = &f->ev.ev[i];
    print_message("%s\n", e->message);
    assert_int_equal(e->reason, LP_SWAP_REASON_CRASH);
    assert_int_equal(e->signal, SIGSEGV);
    assert_string_equal(e->version, "5.crash_first");
    assert_string_equal(e->other, "1.v1");
    assert_true(e->fault_offset > 0);
    unsigned long failed = 0, on_bad = 0, after = 0, after_bad = 0;
    for (unsigned k = 0; k < NTHREADS; k++) {
        failed += w[k].crashed;
        on_bad += w[k].by_tag[5];
        after += w[k].after_mark[1];
        after_bad += w[k].after_mark[5];
        assert_int_equal(w[k].mismatched, 0);
        assert_int_equal(w[k].empty, 0);
    }
    print_message("crash_first: %lu call(s) crashed and were abandoned (at most %d were in "
                  "flight), %lu completed on it, %lu calls on v1 after the rollback\n",
                  failed, NTHREADS, on_bad, after);
    assert_true(failed >= 1);
    assert_true(failed <= NTHREADS);
    assert_true(e->crashed_calls >= 1 && e->crashed_calls <= failed);
    assert_int_equal(after_bad, 0);
    assert_true(after > 0);
    lp_swap_slot_info in;
    info(s, &in);
    assert_int_equal(in.state, LP_SWAP_SLOT_IS_STABLE);
    assert_string_equal(in.version, "1.v1");
    assert_int_equal(in.rollbacks, 1);
    /* The crashed module is never unloaded. */
    assert_int_equal(lp_swap_reclaim(h, 5000, NULL), LP_OK);
    info(s, &in);
    assert_int_equal(in.loaded, 2);
    /* The slot is free for the next update. */
    update_ok(f, s, "v2");
    assert_int_equal(lp_swap_rollback(s, NULL), LP_OK);
}

static void crash_kind(fixture *f, const char *variant, int want_sig)
{
    lp_swap_host *h = open_host(f, true, false, NULL);
    lp_swap_probation p = probation_for_crash();
    p.flags = LP_SWAP_PROBATION_NO_BASELINE;
    lp_swap_slot *s = declare(h, "calc", &p, NULL);
    update_ok(f, s, "v1");
    update_ok(f, s, variant);
    lp_swap_thread *t;
    assert_int_equal(lp_swap_thread_register(h, &t, NULL), LP_OK);
    lp_swap_call c;
    LP_SWAP_ENTER(s, t, &c);
    if (c.outcome == LP_SWAP_ENTERED) {
        int out;
        ((const struct testmod_api *)c.table)->compute(1, &out);
        lp_swap_leave(&c);
        fail_msg("%s did not crash", variant);
    }
    assert_int_equal(c.outcome, LP_SWAP_CRASHED);
    assert_int_equal(c.signal, want_sig);
    /* Already back on v1, before any tick. */
    assert_int_equal(call_tag(s, t, 3), 1);
    int i = wait_event(&f->ev, LP_SWAP_EV_ROLLED_BACK, 0, 2000, h);
    assert_true(i >= 0);
    assert_int_equal(f->ev.ev[i].signal, want_sig);
    assert_int_equal(f->ev.ev[i].crashed_calls, 1);
    print_message("%s\n", f->ev.ev[i].message);
    /* The thread still works, crash guard included: a second crash. */
    update_ok(f, s, variant);
    compute_arg a = {.x = 1};
    assert_int_equal(lp_swap_invoke(s, t, invoke_compute, &a, NULL), LP_SWAP_CRASHED);
    assert_int_equal(call_tag(s, t, 4), 1);
    lp_swap_thread_unregister(t);
}

static void test_crash_sigill(void **state)
{
    crash_kind(*state, "crash_ill", SIGILL);
}

static void test_crash_stack_overflow(void **state)
{
    crash_kind(*state, "crash_overflow", SIGSEGV);
}

static int *volatile host_bad_pointer = (int *)(uintptr_t)16;

static int host_crashes(int x)
{
    return *host_bad_pointer + x;
}

/* In a child: a crash the guard must not claim.  Exits 42 if it was. */
static void child_unclaimed(fixture *f, int which)
{
    lp_swap_host *h = open_host(f, true, false, NULL);
    lp_swap_probation p = probation_for_crash();
    p.flags = LP_SWAP_PROBATION_NO_BASELINE;
    if (which == 1)
        p.flags |= LP_SWAP_PROBATION_OFF;
    lp_swap_slot *s = declare(h, "calc", &p, NULL);
    update_ok(f, s, "v1");
    update_ok(f, s, which == 0 ? "v2" : "crash_first");
    lp_swap_thread *t;
    if (lp_swap_thread_register(h, &t, NULL))
        _exit(3);
    lp_swap_call c;
    LP_SWAP_ENTER(s, t, &c);
    if (c.outcome == LP_SWAP_CRASHED)
        _exit(42);
    if (c.outcome != LP_SWAP_ENTERED)
        _exit(4);
    const struct testmod_api *api = c.table;
    int out = 0;
    if (which == 0)
        out = api->call_host(host_crashes, 1); /* the host's code crashes */
    else
        api->compute(1, &out); /* the module crashes, but it is not on probation */
    lp_swap_leave(&c);
    _exit(out == 12345 ? 5 : 6);
}

static void test_crash_not_claimed(void **state)
{
    fixture *f = *state;
    f->mods = lp_test_getenv_or_skip("LP_TEST_MODULES");
    for (int which = 0; which < 2; which++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* The handlers the child's crash must reach are those of a plain
             * process: cmocka's own (which would carry on with the next test
             * in the child) and AddressSanitizer's are taken away. */
            struct sigaction dfl;
            memset(&dfl, 0, sizeof dfl);
            dfl.sa_handler = SIG_DFL;
            sigemptyset(&dfl.sa_mask);
            sigaction(SIGSEGV, &dfl, NULL);
            sigaction(SIGBUS, &dfl, NULL);
            child_unclaimed(f, which);
            _exit(7);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("unclaimed crash %d: the child was not killed: exit status %d", which,
                     WEXITSTATUS(status));
        print_message("unclaimed crash %d (%s): the child died of signal %d\n", which,
                      which == 0 ? "in the host's code called back from a module on probation"
                                 : "in a module not on probation",
                      WTERMSIG(status));
        assert_int_equal(WTERMSIG(status), SIGSEGV);
    }
}

static void test_error_rate_rolled_back(void **state)
{
    fixture *f = *state;
    lp_swap_host *h = open_host(f, true, false, NULL);
    lp_swap_probation p = {.window_ms = 30000, .baseline_ms = 300, .min_calls = 200,
                           .flags = LP_SWAP_PROBATION_NO_LATENCY};
    lp_swap_slot *s = declare(h, "calc", &p, NULL);
    update_ok(f, s, "v1");
    worker w[NTHREADS];
    atomic_bool stop;
    start_workers(w, NTHREADS, h, s, &stop);
    update_ok(f, s, "errors");
    int i = wait_event(&f->ev, LP_SWAP_EV_ROLLED_BACK, 0, 10000, h);
    stop_workers(w, NTHREADS, &stop);
    assert_true(i >= 0);
    rec_event *e = &f->ev.ev[i];
    print_message("%s\n", e->message);
    assert_int_equal(e->reason, LP_SWAP_REASON_ERROR_RATE);
    assert_non_null(strstr(e->message, "error rate"));
    assert_true(e->stats.calls >= 200);
    assert_true(e->stats.errors >= e->stats.calls / 3);
    assert_true(e->baseline.calls >= 200);
    assert_int_equal(e->baseline.errors, 0);
    unsigned long errors = 0;
    for (unsigned k = 0; k < NTHREADS; k++) {
        errors += w[k].errors;
        assert_int_equal(w[k].crashed, 0);
    }
    assert_true(errors > 0);
    lp_swap_slot_info in;
    info(s, &in);
    assert_string_equal(in.version, "1.v1");
    assert_true(in.baseline.calls >= 200);
}

static void test_latency_rolled_back(void **state)
{
    fixture *f = *state;
    lp_swap_host *h = open_host(f, true, false, NULL);
    lp_swap_probation p = {.window_ms = 30000, .baseline_ms = 300, .min_calls = 100,
                           .latency_slack_ns = 20000};
    lp_swap_slot *s = declare(h, "calc", &p, NULL);
    update_ok(f, s, "v1");
    worker w[NTHREADS];
    atomic_bool stop;
    start_workers(w, NTHREADS, h, s, &stop);
    update_ok(f, s, "slow");
    int i = wait_event(&f->ev, LP_SWAP_EV_ROLLED_BACK, 0, 10000, h);
    stop_workers(w, NTHREADS, &stop);
    assert_true(i >= 0);
    rec_event *e = &f->ev.ev[i];
    print_message("%s\n", e->message);
    print_message("p50/p99/p99.9: v1 %llu/%llu/%llu ns, slow %llu/%llu/%llu ns\n",
                  (unsigned long long)e->baseline.p50_ns, (unsigned long long)e->baseline.p99_ns,
                  (unsigned long long)e->baseline.p999_ns, (unsigned long long)e->stats.p50_ns,
                  (unsigned long long)e->stats.p99_ns, (unsigned long long)e->stats.p999_ns);
    assert_int_equal(e->reason, LP_SWAP_REASON_LATENCY);
    assert_true(e->stats.p99_ns >= 300000);
    assert_true(e->baseline.p99_ns > 0 && e->baseline.p99_ns < e->stats.p99_ns);
    assert_int_equal(e->stats.errors, 0);
}

static void test_probation_passes(void **state)
{
    fixture *f = *state;
    lp_swap_host *h = open_host(f, true, false, NULL);
    lp_swap_probation p = {.window_ms = 300, .baseline_ms = 200, .min_calls = 100};
    lp_swap_slot *s = declare(h, "calc", &p, NULL);
    update_ok(f, s, "v1");
    worker w[NTHREADS];
    atomic_bool stop;
    start_workers(w, NTHREADS, h, s, &stop);
    update_ok(f, s, "v2");
    lp_swap_slot_info in;
    info(s, &in);
    assert_int_equal(in.state, LP_SWAP_SLOT_ON_PROBATION);
    assert_string_equal(in.previous, "1.v1");
    assert_true(in.probation_left_ms > 0 && in.probation_left_ms <= 300);
    assert_int_equal(in.loaded, 2); /* the previous version stays loaded */
    lp_error err;
    char *p1 = mod(f, "v1");
    assert_int_equal(lp_swap_update(s, p1, &err), LP_ERR_STATE);
    assert_non_null(strstr(err.msg, "on probation"));
    int i = wait_event(&f->ev, LP_SWAP_EV_COMMITTED, 0, 5000, h);
    assert_true(i >= 0);
    rec_event *e = &f->ev.ev[i];
    print_message("%s\n", e->message);
    assert_string_equal(e->version, "2.v2");
    assert_string_equal(e->other, "1.v1");
    assert_true(e->stats.calls > 0);
    assert_int_equal(e->stats.errors, 0);
    assert_int_equal(lp_swap_reclaim(h, 5000, &err), LP_OK);
    info(s, &in);
    assert_int_equal(in.state, LP_SWAP_SLOT_IS_STABLE);
    assert_int_equal(in.loaded, 1);
    assert_int_equal(in.commits, 1);

    /* Commit on request, before the window ends. */
    assert_int_equal(lp_swap_update(s, p1, &err), LP_OK);
    assert_int_equal(lp_swap_commit(s, &err), LP_OK);
    assert_int_equal(lp_swap_commit(s, &err), LP_ERR_STATE);
    stop_workers(w, NTHREADS, &stop);
    for (unsigned k = 0; k < NTHREADS; k++) {
        assert_int_equal(w[k].crashed + w[k].mismatched + w[k].errors + w[k].empty, 0);
        assert_true(w[k].by_tag[2] > 0);
    }
    i = wait_event(&f->ev, LP_SWAP_EV_COMMITTED, (unsigned)i + 1, 0, NULL);
    assert_true(i >= 0);
    assert_non_null(strstr(f->ev.ev[i].message, "kept on request"));
    free(p1);
}

static void test_state_handover(void **state)
{
    fixture *f = *state;
    lp_swap_host *h = open_host(f, true, false, NULL);
    lp_swap_probation p = {.window_ms = 60000, .flags = LP_SWAP_PROBATION_NO_BASELINE};
    lp_swap_slot *s = declare(h, "calc", &p, NULL);
    lp_swap_thread *t;
    assert_int_equal(lp_swap_thread_register(h, &t, NULL), LP_OK);
    update_ok(f, s, "v1");
    for (int i = 0; i < 10; i++)
        assert_int_equal(call_tag(s, t, i), 1);
    update_ok(f, s, "v2");
    assert_int_equal(call_count(s, t), 10); /* carried over */
    for (int i = 0; i < 5; i++)
        assert_int_equal(call_tag(s, t, i), 2);
    assert_int_equal(lp_swap_commit(s, NULL), LP_OK);
    /* A version whose import fails is refused; the state stays where it is. */
    char *pf = mod(f, "import_fails");
    lp_error err;
    assert_int_equal(lp_swap_update(s, pf, &err), LP_ERR_STATE);
    free(pf);
    assert_int_equal(call_count(s, t), 15);
    /* Forward to v1 on probation, one call, then rolled back on request:
     * the state goes back with it. */
    update_ok(f, s, "v1");
    assert_int_equal(call_count(s, t), 15);
    assert_int_equal(call_tag(s, t, 1), 1);
    assert_int_equal(lp_swap_rollback(s, &err), LP_OK);
    assert_int_equal(call_count(s, t), 16);
    assert_int_equal(call_tag(s, t, 1), 2);
    int i = wait_event(&f->ev, LP_SWAP_EV_ROLLED_BACK, 0, 0, NULL);
    assert_true(i >= 0);
    assert_int_equal(f->ev.ev[i].reason, LP_SWAP_REASON_REQUESTED);
    assert_non_null(strstr(f->ev.ev[i].message, "its state was handed back"));
    print_message("%s\n", f->ev.ev[i].message);
    assert_int_equal(lp_swap_rollback(s, &err), LP_ERR_STATE);
    lp_swap_thread_unregister(t);
}

static void test_cycles_memory(void **state)
{
    fixture *f = *state;
    lp_swap_host *h = open_host(f, true, false, NULL);
    lp_swap_probation off = {.flags = LP_SWAP_PROBATION_OFF};
    lp_swap_slot *s = declare(h, "calc", &off, NULL);
    update_ok(f, s, "v1");
    worker w[2];
    atomic_bool stop;
    start_workers(w, 2, h, s, &stop);
    char *p1 = mod(f, "v1"), *p2 = mod(f, "v2");
    lp_error err;
    unsigned maps0 = 0;
    long rss0 = 0;
    /* The allocators (glibc's, or AddressSanitizer's, whose size classes
     * fill more slowly) settle within the first few hundred cycles; the
     * 1,000 measured cycles follow them. */
    const unsigned warmup = 300, cycles = 1000;
    double t0 = 0;
    for (unsigned i = 0; i < warmup + cycles; i++) {
        if (i == warmup) {
            maps0 = maps_count();
            rss0 = rss_kib();
            t0 = now_s();
        }
        if (lp_swap_update(s, i % 2 == 0 ? p2 : p1, &err) ||
            lp_swap_reclaim(h, 5000, &err))
            fail_msg("cycle %u: %s", i, err.msg);
    }
    double took = now_s() - t0;
    unsigned maps1 = maps_count();
    long rss1 = rss_kib();
    stop_workers(w, 2, &stop);
    print_message("%u swap cycles (load, swap, grace period, unload) in %.2f s under 2 calling "
                  "threads: mappings %u -> %u, resident %ld -> %ld KiB (%+ld KiB)\n",
                  cycles, took, maps0, maps1, rss0, rss1, rss1 - rss0);
    for (unsigned k = 0; k < 2; k++)
        assert_int_equal(w[k].crashed + w[k].mismatched + w[k].errors + w[k].empty, 0);
    assert_true(maps1 <= maps0);
    assert_true(rss1 - rss0 < 1024);
    lp_swap_slot_info in;
    info(s, &in);
    assert_int_equal(in.loaded, 1);
    assert_int_equal(files_in(f->priv), 0);
    free(p1);
    free(p2);
}

/* ---- following an install root ------------------------------------------------- */

static void copy_file(const char *from, const char *to)
{
    size_t len;
    uint8_t *b = lp_test_read_file(from, &len);
    assert_non_null(b);
    assert_int_equal(lp_test_write_file(to, b, len), 0);
    free(b);
}

static void mkdir_parent(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    assert_non_null(slash);
    *slash = '\0';
    assert_int_equal(lp_file_mkdirs(dir, 0755, NULL), LP_OK);
}

/* Switches <root>/current to releases/<id> the way the agent does. */
static void switch_current(const char *root, const char *id)
{
    char tmp[4096], cur[4096], target[64];
    snprintf(tmp, sizeof tmp, "%s/.current.tmp", root);
    snprintf(cur, sizeof cur, "%s/current", root);
    snprintf(target, sizeof target, "releases/%s", id);
    unlink(tmp);
    assert_int_equal(symlink(target, tmp), 0);
    assert_int_equal(rename(tmp, cur), 0);
}

static char *release_module(const char *root, const char *id)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/releases/%s/lib/calc.so", root, id);
    return strdup(p);
}

static bool wait_version(lp_swap_slot *s, const char *want, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
        lp_swap_slot_info in;
        lp_swap_slot_get_info(s, &in, NULL);
        if (strcmp(in.version, want) == 0)
            return true;
        usleep(5000);
    }
    return false;
}

static void test_follow_install_root(void **state)
{
    fixture *f = *state;
    char *root = lp_test_join(f->dir, "root");
    char *m1 = mod(f, "v1"), *m2 = mod(f, "v2"), *mbad = mod(f, "bad_abi");
    char *r1 = release_module(root, "1"), *r2 = release_module(root, "2"),
         *r3 = release_module(root, "3"), *r4 = release_module(root, "4"),
         *r5 = release_module(root, "5");
    copy_file(m1, r1);
    switch_current(root, "1");
    lp_swap_host *h = open_host(f, false, false, root);
    lp_swap_probation p = {.window_ms = 400, .flags = LP_SWAP_PROBATION_NO_BASELINE};
    lp_swap_slot *s = declare(h, "calc", &p, "lib/calc.so");
    assert_true(wait_version(s, "1.v1", 5000));

    double t0 = now_s();
    copy_file(m2, r2);
    switch_current(root, "2");
    assert_true(wait_version(s, "2.v2", 5000));
    print_message("release 2 picked up %.0f ms after the switch\n", (now_s() - t0) * 1000);
    assert_true(wait_event(&f->ev, LP_SWAP_EV_COMMITTED, 0, 5000, NULL) >= 0);

    /* Release 3 has the same module, hard-linked: nothing is reloaded. */
    lp_swap_slot_info in;
    info(s, &in);
    uint64_t swaps = in.swaps;
    mkdir_parent(r3);
    assert_int_equal(link(r2, r3), 0);
    switch_current(root, "3");
    usleep(300000);
    info(s, &in);
    assert_int_equal(in.swaps, swaps);
    assert_string_equal(in.version, "2.v2");

    /* Release 4's module is refused (reported once); release 3's stays. */
    unsigned refused0 = count_events(&f->ev, LP_SWAP_EV_REFUSED);
    copy_file(mbad, r4);
    switch_current(root, "4");
    assert_true(wait_event(&f->ev, LP_SWAP_EV_REFUSED, 0, 5000, NULL) >= 0);
    usleep(200000);
    assert_int_equal(count_events(&f->ev, LP_SWAP_EV_REFUSED), refused0 + 1);
    info(s, &in);
    assert_string_equal(in.version, "2.v2");

    /* Release 5 goes live on probation; the agent rolls the release back to
     * 3 (the previous module's file): the module is rolled back too. */
    p.window_ms = 60000;
    lp_swap_host_close(f->h);
    f->h = NULL;
    switch_current(root, "3");
    h = open_host(f, false, false, root);
    s = declare(h, "calc", &p, "lib/calc.so");
    assert_true(wait_version(s, "2.v2", 5000));
    copy_file(m1, r5);
    switch_current(root, "5");
    assert_true(wait_version(s, "1.v1", 5000));
    info(s, &in);
    assert_int_equal(in.state, LP_SWAP_SLOT_ON_PROBATION);
    unsigned from = f->ev.n;
    switch_current(root, "3");
    int i = wait_event(&f->ev, LP_SWAP_EV_ROLLED_BACK, from, 5000, NULL);
    assert_true(i >= 0);
    print_message("%s\n", f->ev.ev[i].message);
    assert_int_equal(f->ev.ev[i].reason, LP_SWAP_REASON_REQUESTED);
    assert_non_null(strstr(f->ev.ev[i].message, "went back to releases/3"));
    assert_true(wait_version(s, "2.v2", 1000));
    /* A rollback because the release went back is not reported. */
    assert_int_equal(count_events(&f->ev, LP_SWAP_EV_REPORTED) +
                         count_events(&f->ev, LP_SWAP_EV_REPORT_FAILED),
                     0);
    free(root);
    free(m1);
    free(m2);
    free(mbad);
    free(r1);
    free(r2);
    free(r3);
    free(r4);
    free(r5);
}

/* ---- reporting to the agent --------------------------------------------------- */

/* The agent's end of a report: accepts one connection on `path`, reads the
 * request (headers and a Content-Length body), answers `answer`, closes. */
typedef struct agent_end {
    int lfd;
    const char *answer;
    char request[8192];
    size_t len;
    atomic_bool done;
    pthread_t tid;
} agent_end;

static int listen_unix(const char *path)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof un), 0);
    assert_int_equal(listen(fd, 4), 0);
    return fd;
}

static void *agent_main(void *arg)
{
    agent_end *a = arg;
    int c = accept(a->lfd, NULL, NULL);
    if (c >= 0) {
        size_t want = 0;
        while (a->len < sizeof a->request - 1) {
            ssize_t n = read(c, a->request + a->len, sizeof a->request - 1 - a->len);
            if (n <= 0)
                break;
            a->len += (size_t)n;
            a->request[a->len] = '\0';
            char *end = strstr(a->request, "\r\n\r\n");
            char *cl = strstr(a->request, "Content-Length: ");
            if (end && cl && !want)
                want = (size_t)(end + 4 - a->request) + strtoul(cl + 16, NULL, 10);
            if (want && a->len >= want)
                break;
        }
        ssize_t w = write(c, a->answer, strlen(a->answer));
        (void)w;
        close(c);
    }
    atomic_store(&a->done, true);
    return NULL;
}

/* Ticks h once; returns how long the tick took in ms. */
static double tick_ms(lp_swap_host *h)
{
    double t0 = now_s();
    lp_swap_tick(h, NULL);
    return (now_s() - t0) * 1000;
}

static int crash_once(lp_swap_slot *s, lp_swap_thread *t)
{
    compute_arg a = {.x = 1};
    return lp_swap_invoke(s, t, invoke_compute, &a, NULL);
}

static void test_report_to_agent(void **state)
{
    fixture *f = *state;
    char *root = lp_test_join(f->dir, "root");
    char *sock = lp_test_join(f->dir, "agent.sock");
    char *m1 = mod(f, "v1"), *mc = mod(f, "crash_first");
    char *r1 = release_module(root, "1"), *r2 = release_module(root, "2"),
         *r3 = release_module(root, "3");
    copy_file(m1, r1);
    copy_file(mc, r2);
    copy_file(mc, r3);
    switch_current(root, "1");
    lp_swap_host_config hc = {.private_dir = f->priv, .manual_tick = true, .install_root = root,
                              .agent_socket = sock, .report_timeout_ms = 300,
                              .on_event = on_event, .on_event_ctx = &f->ev};
    lp_error err;
    if (lp_swap_host_open(&hc, &f->h, &err))
        fail_msg("host open: %s", err.msg);
    lp_swap_host *h = f->h;
    lp_swap_probation p = probation_for_crash();
    p.flags = LP_SWAP_PROBATION_NO_BASELINE;
    lp_swap_slot *s = declare(h, "calc", &p, "lib/calc.so");
    assert_int_equal(lp_swap_check_release(h, NULL), LP_OK);
    lp_swap_slot_info in;
    info(s, &in);
    assert_string_equal(in.version, "1.v1");
    assert_int_equal(in.release, 1);
    switch_current(root, "2");
    assert_int_equal(lp_swap_check_release(h, NULL), LP_OK);
    info(s, &in);
    assert_int_equal(in.state, LP_SWAP_SLOT_ON_PROBATION);
    assert_int_equal(in.release, 2);
    lp_swap_thread *t;
    assert_int_equal(lp_swap_thread_register(h, &t, NULL), LP_OK);

    /* No agent: the first attempt fails at once, the tick does not wait. */
    unsigned from = f->ev.n;
    assert_int_equal(crash_once(s, t), LP_SWAP_CRASHED);
    double ms = tick_ms(h);
    int rb = wait_event(&f->ev, LP_SWAP_EV_ROLLED_BACK, from, 0, NULL);
    int rf = wait_event(&f->ev, LP_SWAP_EV_REPORT_FAILED, from, 0, NULL);
    assert_true(rb >= 0 && rf >= 0);
    assert_int_equal(f->ev.ev[rb].release, 2);
    assert_int_equal(f->ev.ev[rf].release, 2);
    assert_int_equal(f->ev.ev[rf].will_retry, 1);
    assert_non_null(strstr(f->ev.ev[rf].message, "cannot connect"));
    assert_non_null(strstr(f->ev.ev[rf].message, "trying again in 1000 ms"));
    print_message("no agent (tick: %.2f ms): %s\n", ms, f->ev.ev[rf].message);
    assert_true(ms < 200);
    /* Before the back-off nothing is tried. */
    from = f->ev.n;
    lp_swap_tick(h, NULL);
    assert_int_equal(f->ev.n, from);
    assert_int_equal(call_tag(s, t, 5), 1);

    /* A peer that takes the connection and never answers. */
    int silent = listen_unix(sock);
    usleep(1050000);
    ms = tick_ms(h);
    double worst = ms;
    assert_int_equal(wait_event(&f->ev, LP_SWAP_EV_REPORT_FAILED, from, 0, NULL), -1);
    for (int i = 0; i < 40; i++) {
        usleep(10000);
        double m = tick_ms(h);
        worst = m > worst ? m : worst;
        assert_int_equal(call_tag(s, t, 6), 1);
    }
    rf = wait_event(&f->ev, LP_SWAP_EV_REPORT_FAILED, from, 0, NULL);
    assert_true(rf >= 0);
    assert_non_null(strstr(f->ev.ev[rf].message, "no answer within 300 ms"));
    assert_non_null(strstr(f->ev.ev[rf].message, "trying again in 2000 ms"));
    print_message("silent peer (slowest tick %.2f ms): %s\n", worst, f->ev.ev[rf].message);
    assert_true(worst < 200);
    close(silent);

    /* The agent takes it: the request, and the answer ending the report. */
    agent_end *a = calloc(1, sizeof *a);
    a->lfd = listen_unix(sock);
    a->answer = "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
                "{\"outcome\":\"rolled_back\",\"release\":2,\"current\":1,\"previous\":null}";
    assert_int_equal(pthread_create(&a->tid, NULL, agent_main, a), 0);
    from = f->ev.n;
    usleep(2000000);
    int rep = wait_event(&f->ev, LP_SWAP_EV_REPORTED, from, 3000, h);
    assert_true(rep >= 0);
    pthread_join(a->tid, NULL);
    close(a->lfd);
    print_message("%s\n", f->ev.ev[rep].message);
    assert_non_null(strstr(f->ev.ev[rep].message, "rolled_back (current release: 1)"));
    assert_int_equal(f->ev.ev[rep].release, 2);
    assert_true(strncmp(a->request, "POST /v1/release-failed HTTP/1.0\r\n", 34) == 0);
    const char *body = strstr(a->request, "\r\n\r\n");
    assert_non_null(body);
    json_t *j = json_loads(body + 4, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "release")), 2);
    char want[128];
    snprintf(want, sizeof want,
             "live swap in process %d: slot calc: version 5.crash_first crashed on probation "
             "(SIGSEGV",
             (int)getpid());
    const char *reason = json_string_value(json_object_get(j, "reason"));
    assert_non_null(reason);
    assert_true(strncmp(reason, want, strlen(want)) == 0);
    json_decref(j);
    free(a);
    /* Done: nothing more is tried. */
    from = f->ev.n;
    usleep(50000);
    lp_swap_tick(h, NULL);
    assert_int_equal(count_events(&f->ev, LP_SWAP_EV_REPORT_FAILED), 2);

    /* A version loaded by path has no release: its rollback is not reported. */
    update_ok(f, s, "crash_first");
    assert_int_equal(crash_once(s, t), LP_SWAP_CRASHED);
    from = f->ev.n;
    rb = wait_event(&f->ev, LP_SWAP_EV_ROLLED_BACK, from, 2000, h);
    assert_true(rb >= 0);
    assert_int_equal(f->ev.ev[rb].release, 0);
    lp_swap_tick(h, NULL);
    assert_int_equal(count_events(&f->ev, LP_SWAP_EV_REPORT_FAILED), 2);
    assert_int_equal(count_events(&f->ev, LP_SWAP_EV_REPORTED), 1);

    /* Release 3 crashes; `current` moves on before the agent is reached:
     * the report is dropped. */
    switch_current(root, "3");
    assert_int_equal(lp_swap_check_release(h, NULL), LP_OK);
    info(s, &in);
    assert_int_equal(in.release, 3);
    assert_int_equal(crash_once(s, t), LP_SWAP_CRASHED);
    from = f->ev.n;
    lp_swap_tick(h, NULL); /* rolled back; the first attempt fails (no agent) */
    assert_true(wait_event(&f->ev, LP_SWAP_EV_REPORT_FAILED, from, 0, NULL) >= 0);
    switch_current(root, "1");
    usleep(1050000);
    from = f->ev.n;
    lp_swap_tick(h, NULL);
    rf = wait_event(&f->ev, LP_SWAP_EV_REPORT_FAILED, from, 0, NULL);
    assert_true(rf >= 0);
    print_message("%s\n", f->ev.ev[rf].message);
    assert_int_equal(f->ev.ev[rf].will_retry, 0);
    assert_non_null(strstr(f->ev.ev[rf].message, "current release is releases/1 now"));
    usleep(2100000);
    from = f->ev.n;
    lp_swap_tick(h, NULL);
    assert_int_equal(wait_event(&f->ev, LP_SWAP_EV_REPORT_FAILED, from, 0, NULL), -1);
    info(s, &in);
    assert_string_equal(in.version, "1.v1");

    lp_swap_thread_unregister(t);
    free(root);
    free(sock);
    free(m1);
    free(mc);
    free(r1);
    free(r2);
    free(r3);
}

static void test_report_config(void **state)
{
    fixture *f = *state;
    char *root = lp_test_join(f->dir, "root");
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    lp_swap_host_config hc = {.private_dir = f->priv, .manual_tick = true, .install_root = root,
                              .agent_socket = longp};
    lp_error err;
    lp_swap_host *h = NULL;
    assert_int_equal(lp_swap_host_open(&hc, &h, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "agent_socket"));
    hc.agent_socket = NULL;
    hc.report_timeout_ms = 600001;
    assert_int_equal(lp_swap_host_open(&hc, &h, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "report_timeout_ms"));
    assert_null(h);
    free(root);
}

/* ---- overhead -------------------------------------------------------------- */

/* One call each way, in functions of their own (the same call and return
 * cost on both sides; LP_SWAP_ENTER's entry point then lives in a frame
 * with nothing else in it). */
__attribute__((noinline)) static void one_direct(int (*fn)(int, int *), int *acc)
{
    fn(*acc, acc);
}

__attribute__((noinline)) static void one_entered(lp_swap_slot *s, lp_swap_thread *t, int *acc)
{
    lp_swap_call k;
    LP_SWAP_ENTER(s, t, &k);
    if (k.outcome == LP_SWAP_ENTERED) {
        ((const struct testmod_api *)k.table)->compute(*acc, acc);
        lp_swap_leave(&k);
    }
}

static int invoke_one(const void *table, void *arg)
{
    int *acc = arg;
    return ((const struct testmod_api *)table)->compute(*acc, acc);
}

__attribute__((noinline)) static void one_invoked(lp_swap_slot *s, lp_swap_thread *t, int *acc)
{
    lp_swap_invoke(s, t, invoke_one, acc, NULL);
}

static void test_call_overhead(void **state)
{
    fixture *f = *state;
    lp_swap_host *h = open_host(f, true, false, NULL);
    lp_swap_probation off = {.flags = LP_SWAP_PROBATION_OFF};
    lp_swap_slot *s = declare(h, "calc", &off, NULL);
    update_ok(f, s, "v1");
    lp_swap_thread *t;
    assert_int_equal(lp_swap_thread_register(h, &t, NULL), LP_OK);
    lp_swap_call c;
    LP_SWAP_ENTER(s, t, &c);
    assert_int_equal(c.outcome, LP_SWAP_ENTERED);
    int (*direct)(int, int *) = ((const struct testmod_api *)c.table)->compute;
    lp_swap_leave(&c);
    const long n = 20000000;
    double best[3] = {1e9, 1e9, 1e9};
    int acc = 0;
    for (int rep = 0; rep < 3; rep++) {
        for (int way = 0; way < 3; way++) {
            double a = now_s();
            for (long i = 0; i < n; i++) {
                if (way == 0)
                    one_direct(direct, &acc);
                else if (way == 1)
                    one_entered(s, t, &acc);
                else
                    one_invoked(s, t, &acc);
            }
            double d = (now_s() - a) / (double)n * 1e9;
            if (d < best[way])
                best[way] = d;
        }
    }
    print_message("direct call %.2f ns; through a slot with LP_SWAP_ENTER %.2f ns (overhead "
                  "%.2f ns), with lp_swap_invoke %.2f ns (overhead %.2f ns)\n",
                  best[0], best[1], best[1] - best[0], best[2], best[2] - best[0]);
    /* Printed only: timing is bench/swap's job (bench/swap/module/run, with
     * the direct call measured side by side), never a test's. */
    assert_true(acc != 0);
    lp_swap_thread_unregister(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_and_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_declare_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swap_concurrent_membarrier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swap_concurrent_fences, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_finishes_on_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_rolled_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_sigill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_stack_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_not_claimed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_rate_rolled_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latency_rolled_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probation_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_handover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cycles_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follow_install_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_to_agent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_overhead, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
