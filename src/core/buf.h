/*
 * buf.h — a growable byte buffer (internal).
 *
 * lp_buf owns `data` (malloc'd); `len` bytes are used and data[len] is always
 * a NUL byte when data is non-NULL, so text can be used as a C string.  An
 * optional `max` bounds growth: appending past it fails with LP_ERR_TOO_LARGE,
 * which is how downloads and file reads enforce their limits.
 */
#ifndef LP_CORE_BUF_H
#define LP_CORE_BUF_H

#include "livepush/error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct lp_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /* 0 = no bound */
} lp_buf;

/* Zero-initialised buffer with growth bounded by `max` bytes (0: unbounded). */
void lp_buf_init(lp_buf *b, size_t max);
/* Appends n bytes.  LP_ERR_TOO_LARGE past max, LP_ERR_NOMEM. */
lp_status lp_buf_append(lp_buf *b, const void *p, size_t n, lp_error *err);
lp_status lp_buf_append_str(lp_buf *b, const char *s, lp_error *err);
lp_status lp_buf_printf(lp_buf *b, lp_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* printf into a new malloc'd string (the caller frees it); NULL when out of
 * memory or the format fails. */
char *lp_str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Takes ownership of the data (caller frees); leaves b empty. */
uint8_t *lp_buf_steal(lp_buf *b, size_t *len);
void lp_buf_reset(lp_buf *b);
void lp_buf_free(lp_buf *b);

#endif
