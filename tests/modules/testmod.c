/*
 * testmod.c — the modules that tests/unit/test_swap.c swaps: one source,
 * built by CMake once per variant with different definitions (see the
 * "swap test modules" block of CMakeLists.txt):
 *
 *   TAG=n            compute(x) = x + n; the version label is "<n>.<VARIANT>"
 *   VARIANT=name     the variant's name (in the label)
 *   BAD_ABI          declares ABI version TESTMOD_ABI + 1
 *   BAD_SIZE         its table is one pointer larger than the interface's
 *   BAD_IFACE        declares interface "lp-other"
 *   NO_ENTRY         exports no entry symbol
 *   ENTRY_NULL       the entry returns NULL
 *   NULL_FN          one table entry is NULL
 *   SELFTEST_FAIL    the self-test fails with a message
 *   SELFTEST_CRASH   the self-test dereferences a bad pointer (SIGSEGV)
 *   CRASH_FIRST=n    the first n calls to compute crash: SIGSEGV, or with
 *   CRASH_ILL          a trap instruction (SIGILL), or with
 *   CRASH_OVERFLOW     unbounded recursion (stack overflow, SIGSEGV)
 *   ERRORS           every other call to compute fails (returns -1)
 *   SLOW_US=n        compute spins n microseconds
 *   NO_STATE         no state export or import
 *   IMPORT_FAIL      the state import fails
 *
 * The state is the number of compute calls, carried from version to version
 * by export and import.
 */
#include "livepush/swap.h"
#include "testmod.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef TAG
#define TAG 1
#endif
#ifndef VARIANT
#define VARIANT good
#endif
#define STR2(x) #x
#define STR(x) STR2(x)

static long count;
static long crashes_left
#ifdef CRASH_FIRST
    = CRASH_FIRST
#endif
    ;
static int *volatile bad_pointer = (int *)(uintptr_t)16;

#ifdef CRASH_OVERFLOW
static volatile int never;
static int deep(int n)
{
    volatile char pad[512];
    if (never)
        return 0;
    pad[0] = (char)n;
    return deep(n + 1) + pad[0];
}
#endif

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int compute(int x, int *out)
{
    long n = __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
    (void)bad_pointer;
    if (__atomic_load_n(&crashes_left, __ATOMIC_RELAXED) > 0) {
        __atomic_sub_fetch(&crashes_left, 1, __ATOMIC_RELAXED);
#if defined(CRASH_ILL)
        __builtin_trap();
#elif defined(CRASH_OVERFLOW)
        x += deep(x);
#else
        *bad_pointer = x;
#endif
    }
#ifdef SLOW_US
    uint64_t until = now_us() + SLOW_US;
    while (now_us() < until) {
    }
#endif
#ifdef ERRORS
    if (n % 2 == 0)
        return -1;
#endif
    (void)n;
    *out = x + TAG;
    return 0;
}

static int tag(void)
{
    return TAG;
}

static long get_count(void)
{
    return __atomic_load_n(&count, __ATOMIC_RELAXED);
}

static int nap(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    (void)now_us;
    return TAG;
}

__attribute__((unused)) static int call_host(int (*fn)(int), int x)
{
    return fn(x);
}

#ifdef BAD_SIZE
static const struct {
    struct testmod_api api;
    void (*extra)(void);
} table = {{compute, tag, get_count, nap, call_host}, NULL};
#else
static const struct testmod_api table = {
    compute, tag, get_count, nap,
#ifdef NULL_FN
    NULL,
#else
    call_host,
#endif
};
#endif

static int self_test(const void *t, char *msg, size_t cap)
{
    const struct testmod_api *api = t;
#ifdef SELFTEST_FAIL
    snprintf(msg, cap, "tag %d is not what the tests expect", api->tag());
    return 1;
#elif defined(SELFTEST_CRASH)
    (void)msg;
    (void)cap;
    return *bad_pointer + api->tag();
#else
    if (api->tag() != TAG) {
        snprintf(msg, cap, "tag() gave %d", api->tag());
        return 1;
    }
    return 0;
#endif
}

#ifndef NO_STATE
static int state_export(void **data, size_t *len, char *msg, size_t cap)
{
    long *p = malloc(sizeof *p);
    if (!p) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    *p = __atomic_load_n(&count, __ATOMIC_RELAXED);
    *data = p;
    *len = sizeof *p;
    return 0;
}

static int state_import(const void *data, size_t len, const char *from, char *msg, size_t cap)
{
#ifdef IMPORT_FAIL
    (void)data;
    (void)len;
    snprintf(msg, cap, "cannot read the state of version %s", from);
    return 2;
#else
    if (len != sizeof(long)) {
        snprintf(msg, cap, "%zu bytes of state from %s, expected %zu", len, from, sizeof(long));
        return 1;
    }
    long c;
    memcpy(&c, data, sizeof c);
    __atomic_store_n(&count, c, __ATOMIC_RELAXED);
    return 0;
#endif
}
#endif

static const lp_swap_module module = {
    .magic = LP_SWAP_MODULE_MAGIC,
    .struct_size = sizeof(lp_swap_module),
#ifdef BAD_IFACE
    .interface = "lp-other",
#else
    .interface = TESTMOD_INTERFACE,
#endif
#ifdef BAD_ABI
    .abi_version = TESTMOD_ABI + 1,
#else
    .abi_version = TESTMOD_ABI,
#endif
    .table_size = sizeof table,
    .table = &table,
    .version = STR(TAG) "." STR(VARIANT),
    .self_test = self_test,
#ifndef NO_STATE
    .state_export = state_export,
    .state_import = state_import,
#endif
};

#if defined(ENTRY_NULL)
__attribute__((visibility("default"))) const lp_swap_module *livepush_swap_module_v1(void);
const lp_swap_module *livepush_swap_module_v1(void)
{
    (void)module;
    return NULL;
}
#elif !defined(NO_ENTRY)
LP_SWAP_MODULE_EXPORT(module)
#else
/* Keeps the description referenced so the compiler does not warn. */
__attribute__((visibility("default"))) const void *testmod_unused(void);
const void *testmod_unused(void)
{
    return &module;
}
#endif
