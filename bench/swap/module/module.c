/*
 * module.c — the module bench/swap/module/run builds twice (-DTAG=1, -DTAG=2) and
 * swaps under load: add(x) = x + TAG (the per-call overhead loops), and
 * work(x, iters), which spins `iters` rounds of arithmetic and returns
 * x + TAG (the latency loops, a call of about a microsecond).
 */
#include "livepush/swap.h"

#include "bench_api.h"

#ifndef TAG
#define TAG 1
#endif
#define STR2(x) #x
#define STR(x) STR2(x)

static int add(int x)
{
    return x + TAG;
}

static int work(int x, int iters)
{
    unsigned v = (unsigned)x;
    for (int i = 0; i < iters; i++)
        __asm__ volatile("" : "+r"(v)); /* one round the compiler keeps */
    return (int)v + TAG;
}

static int tag(void)
{
    return TAG;
}

static const struct bench_api table = {add, work, tag};

static const lp_swap_module module = {
    .magic = LP_SWAP_MODULE_MAGIC,
    .struct_size = sizeof(lp_swap_module),
    .interface = BENCH_INTERFACE,
    .abi_version = BENCH_ABI,
    .table_size = sizeof table,
    .table = &table,
    .version = "bench-" STR(TAG),
};
LP_SWAP_MODULE_EXPORT(module)
