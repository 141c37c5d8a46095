/*
 * livepush/error.h — the one error model of liblivepush.
 *
 * Every fallible function returns an lp_status and, when the caller passes a
 * non-NULL lp_error, fills it with the same code and a message that says what
 * failed and why ("targets.json: signature threshold not met: 1 of 2 valid").
 * Each layer that passes an error up may prefix it with its own context, so
 * the final message reads from the outermost operation inward:
 *
 *     refresh: timestamp: version 1 is lower than trusted version 2
 *
 * lp_error is a plain value on the caller's stack: no allocation, no global
 * state, safe to use from any thread.  LP_OK is zero so `if (st)` reads as
 * "if it failed".
 */
#ifndef LIVEPUSH_ERROR_H
#define LIVEPUSH_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes.  Values are stable: they are part of the ABI and of the
 * command-line tool's JSON output (as names, see lp_status_name). */
typedef enum lp_status {
    LP_OK = 0,
    LP_ERR_INVALID_ARG = 1,      /* caller passed a bad argument */
    LP_ERR_NOMEM = 2,            /* allocation failed */
    LP_ERR_IO = 3,               /* file system call failed (errno in message) */
    LP_ERR_MALFORMED = 4,        /* input is not well formed (JSON, metadata, PEM…) */
    LP_ERR_TOO_LARGE = 5,        /* input exceeds a configured bound */
    LP_ERR_CRYPTO = 6,           /* the crypto library failed (not a bad signature) */
    LP_ERR_UNSUPPORTED = 7,      /* key type, scheme, hash or version not supported */
    LP_ERR_NOT_FOUND = 8,        /* named thing does not exist */
    LP_ERR_NETWORK = 9,          /* transfer failed (connection, HTTP status) */
    LP_ERR_BAD_SIGNATURE = 10,   /* signature invalid, or threshold not met */
    LP_ERR_ROLLBACK = 11,        /* version lower than the trusted one */
    LP_ERR_EXPIRED = 12,         /* metadata past its expiry (freeze attack) */
    LP_ERR_VERSION_MISMATCH = 13,/* version differs from the one referring metadata lists */
    LP_ERR_LENGTH_MISMATCH = 14, /* content length differs from the signed length */
    LP_ERR_HASH_MISMATCH = 15,   /* content hash differs from the signed hash */
    LP_ERR_STATE = 16,           /* operation not valid in the current state */
    LP_ERR_EXISTS = 17,          /* thing already exists */
} lp_status;

#define LP_ERROR_MSG_MAX 1024

/* An error: the status and a NUL-terminated human-readable message. */
typedef struct lp_error {
    lp_status code;
    char msg[LP_ERROR_MSG_MAX];
} lp_error;

/* Resets *err to LP_OK with an empty message.  err may be NULL. */
void lp_error_clear(lp_error *err);

/* Sets *err to `code` with a printf-style message and returns `code`, so a
 * function can `return lp_error_set(err, LP_ERR_IO, "open %s: %s", p, ...)`.
 * err may be NULL (then only the code is returned).  Messages longer than
 * LP_ERROR_MSG_MAX - 1 bytes are truncated. */
lp_status lp_error_set(lp_error *err, lp_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
lp_status lp_error_vset(lp_error *err, lp_status code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Passes an error up a level: prepends printf-style context and ": " to the
 * message already in *err and returns `code` (the status the callee
 * returned), so a caller writes
 *     if (st) return lp_error_prefix(err, st, "loading %s", path);
 * err may be NULL (then only `code` is returned). */
lp_status lp_error_prefix(lp_error *err, lp_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Static, lower-case name of a status ("ok", "rollback", "bad_signature", …).
 * Never NULL: unknown values give "unknown". */
const char *lp_status_name(lp_status code);

#ifdef __cplusplus
}
#endif
#endif
