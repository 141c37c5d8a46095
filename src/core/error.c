/*
 * error.c — status codes and messages (see include/livepush/error.h).
 *
 * Messages are formatted into the caller's fixed buffer; prefixing builds the
 * new text in a scratch buffer first so the old message can be its source.
 */
#include "livepush/error.h"

#include <stdio.h>
#include <string.h>

void lp_error_clear(lp_error *err)
{
    if (!err)
        return;
    err->code = LP_OK;
    err->msg[0] = '\0';
}

lp_status lp_error_vset(lp_error *err, lp_status code, const char *fmt, va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    return code;
}

lp_status lp_error_set(lp_error *err, lp_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lp_error_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

lp_status lp_error_prefix(lp_error *err, lp_status code, const char *fmt, ...)
{
    if (!err)
        return code;
    /* Build "<context>: <old message>" in a scratch buffer, truncating at
     * the message size, then copy it back. */
    char tmp[LP_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    size_t used = n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1;
    const char *old = err->msg[0] ? err->msg : lp_status_name(code);
    const char *parts[2] = {": ", old};
    for (int i = 0; i < 2; i++) {
        size_t len = strlen(parts[i]), room = sizeof tmp - 1 - used;
        if (len > room)
            len = room;
        memcpy(tmp + used, parts[i], len);
        used += len;
    }
    tmp[used] = '\0';
    memcpy(err->msg, tmp, used + 1);
    err->code = code;
    return code;
}

const char *lp_status_name(lp_status code)
{
    switch (code) {
    case LP_OK: return "ok";
    case LP_ERR_INVALID_ARG: return "invalid_argument";
    case LP_ERR_NOMEM: return "out_of_memory";
    case LP_ERR_IO: return "io";
    case LP_ERR_MALFORMED: return "malformed";
    case LP_ERR_TOO_LARGE: return "too_large";
    case LP_ERR_CRYPTO: return "crypto";
    case LP_ERR_UNSUPPORTED: return "unsupported";
    case LP_ERR_NOT_FOUND: return "not_found";
    case LP_ERR_NETWORK: return "network";
    case LP_ERR_BAD_SIGNATURE: return "bad_signature";
    case LP_ERR_ROLLBACK: return "rollback";
    case LP_ERR_EXPIRED: return "expired";
    case LP_ERR_VERSION_MISMATCH: return "version_mismatch";
    case LP_ERR_LENGTH_MISMATCH: return "length_mismatch";
    case LP_ERR_HASH_MISMATCH: return "hash_mismatch";
    case LP_ERR_STATE: return "bad_state";
    case LP_ERR_EXISTS: return "exists";
    }
    return "unknown";
}
