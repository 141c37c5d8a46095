/*
 * bench_api.h — the interface of bench/swap/module's module (module.c) and driver
 * (bench_swap.c).
 */
#ifndef LP_BENCH_API_H
#define LP_BENCH_API_H

#define BENCH_INTERFACE "lp-bench"
#define BENCH_ABI 1u

struct bench_api {
    int (*add)(int x);             /* x + tag */
    int (*work)(int x, int iters); /* spins `iters` rounds, then x + tag */
    int (*tag)(void);
};

#endif
