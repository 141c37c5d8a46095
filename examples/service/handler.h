/*
 * handler.h — the interface between the example service (server.c, the
 * host) and its request handler (handler.c, a module swapped live: see
 * include/livepush/swap.h and docs/swap.md).
 *
 * The interface is a table of function pointers with a name, an ABI version
 * and its size; the server declares a slot with these, and refuses a module
 * whose description does not match them.  A change of a function's meaning
 * or signature, or of the table's layout, takes a new ABI version (and a new
 * server binary, which `livepush run` restarts into).
 */
#ifndef EXAMPLE_HANDLER_H
#define EXAMPLE_HANDLER_H

#include <stddef.h>

#define HANDLER_INTERFACE "example.handler"
#define HANDLER_ABI 1

/* Where the module lies inside a release (and, by default, inside the
 * server's working folder). */
#define HANDLER_PATH "lib/handler.so"

struct handler_api {
    /* Answers one request: `what` (what_len bytes, not NUL-terminated) is
     * the path of an HTTP GET or a line the client sent; `server` is the
     * server's version.  Writes the answer (one line, no newline,
     * NUL-terminated, at most cap bytes) into out and returns its length,
     * or -1 when it cannot answer (the server then answers with an error,
     * and the call counts as failed for the module's probation). */
    int (*answer)(const char *server, const char *what, size_t what_len, char *out, size_t cap);
    /* Requests answered so far: by this version and, carried from version to
     * version in its state, by the ones before it. */
    unsigned long long (*served)(void);
};

#endif
