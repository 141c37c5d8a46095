/*
 * testmod.h — the interface that tests/unit/test_swap.c declares in its slots
 * and that every variant of tests/modules/testmod.c implements.
 *
 * A result tells which module produced it: compute(x) gives x + tag, and a
 * call that reads tag() and compute() through one table must see the same
 * tag in both (no call ever mixes two versions).
 */
#ifndef LP_TESTMOD_H
#define LP_TESTMOD_H

#define TESTMOD_INTERFACE "lp-test"
#define TESTMOD_ABI 3u

struct testmod_api {
    /* *out = x + tag; 0, or -1 for a failed call (the erroring variant). */
    int (*compute)(int x, int *out);
    /* The module's tag (1 for v1, 2 for v2, ...). */
    int (*tag)(void);
    /* The module's state: how many times compute ran, including the count
     * imported from the previous version. */
    long (*count)(void);
    /* Sleeps `ms` milliseconds, then returns the tag. */
    int (*nap)(int ms);
    /* Returns fn(x): calls back into the host. */
    int (*call_host)(int (*fn)(int), int x);
};

#endif
