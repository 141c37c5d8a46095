/*
 * handler.c — the request handler of the example service, as a module that
 * the server (server.c) swaps live: a shared object exporting one entry
 * symbol that describes the interface it implements (handler.h), its table,
 * a version label, a self-test and the export and import of its state.
 *
 * What it does: the answer to a request is "<server>+<label> <what>": the
 * server's version, this module's version label, and the path or line
 * asked for, so a client sees which module answered.  The path "/stats"
 * (or the line "stats") gets "<server>+<label> /stats served <N> pid <P>":
 * the requests answered so far and the process.
 *
 * State: the count of requests answered.  A new version imports it from the
 * one it replaces (8 bytes, little-endian), so the count goes on across
 * swaps.  The export is a snapshot taken while this version still answers,
 * so the requests answered between the snapshot and the swap are not in the
 * new version's count (see "State" in docs/swap.md): the count is a figure
 * to show, not an account.
 *
 * Build definitions (examples/CMakeLists.txt builds three variants):
 *   HANDLER_VERSION="2.0"   the version label (default "1.0")
 *   HANDLER_CRASH           every answer dereferences a bad pointer (SIGSEGV
 *                           inside this module): a version that passes its
 *                           self-test and crashes on its first request, for
 *                           the tests of the crash guard and of the report
 *                           to the agent
 *
 * Built with -fvisibility=hidden: the entry is the only symbol exported.
 * It needs livepush/swap.h only, not the library.
 */
#include "handler.h"

#include "livepush/swap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef HANDLER_VERSION
#define HANDLER_VERSION "1.0"
#endif

static unsigned long long served_count; /* atomic builtins: the export runs in another thread */

#ifdef HANDLER_CRASH
static int *volatile bad_pointer = (int *)(uintptr_t)8;
#endif

/* The answer itself (also what the self-test checks). */
static int format(const char *server, const char *what, size_t what_len, char *out, size_t cap,
                  unsigned long long served)
{
    if (what_len > 4096)
        return -1;
    int n;
    if ((what_len == 6 && !memcmp(what, "/stats", 6)) || (what_len == 5 && !memcmp(what, "stats", 5)))
        n = snprintf(out, cap, "%s+%s %.*s served %llu pid %d", server, HANDLER_VERSION,
                     (int)what_len, what, served, (int)getpid());
    else
        n = snprintf(out, cap, "%s+%s %.*s", server, HANDLER_VERSION, (int)what_len, what);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static int answer(const char *server, const char *what, size_t what_len, char *out, size_t cap)
{
#ifdef HANDLER_CRASH
    *bad_pointer = 1;
#endif
    unsigned long long n = __atomic_add_fetch(&served_count, 1, __ATOMIC_RELAXED);
    return format(server, what, what_len, out, cap, n);
}

static unsigned long long served(void)
{
    return __atomic_load_n(&served_count, __ATOMIC_RELAXED);
}

static const struct handler_api table = {answer, served};

static int self_test(const void *t, char *msg, size_t cap)
{
    (void)t;
    char out[64];
    int n = format("s", "/x", 2, out, sizeof out, 0);
    const char *want = "s+" HANDLER_VERSION " /x";
    if (n < 0 || strcmp(out, want) != 0) {
        snprintf(msg, cap, "the answer to /x is \"%s\", not \"%s\"", n < 0 ? "" : out, want);
        return 1;
    }
    return 0;
}

static int state_export(void **data, size_t *len, char *msg, size_t cap)
{
    unsigned char *b = malloc(8);
    if (!b) {
        snprintf(msg, cap, "out of memory");
        return 1;
    }
    unsigned long long v = __atomic_load_n(&served_count, __ATOMIC_RELAXED);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    *data = b;
    *len = 8;
    return 0;
}

static int state_import(const void *data, size_t len, const char *from, char *msg, size_t cap)
{
    if (len != 8) {
        snprintf(msg, cap, "version %s exported %zu bytes of state, expected 8", from, len);
        return 1;
    }
    const unsigned char *b = data;
    unsigned long long v = 0;
    for (int i = 0; i < 8; i++)
        v |= (unsigned long long)b[i] << (8 * i);
    __atomic_store_n(&served_count, v, __ATOMIC_RELAXED);
    return 0;
}

static const lp_swap_module module = {
    .magic = LP_SWAP_MODULE_MAGIC,
    .struct_size = sizeof(lp_swap_module),
    .interface = HANDLER_INTERFACE,
    .abi_version = HANDLER_ABI,
    .table = &table,
    .table_size = sizeof table,
    .version = HANDLER_VERSION,
    .self_test = self_test,
    .state_export = state_export,
    .state_import = state_import,
};
LP_SWAP_MODULE_EXPORT(module)
