/*
 * buf.c — growable byte buffer (see buf.h).  Capacity doubles; the byte after
 * the used part is kept NUL so text buffers are valid C strings.
 */
#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lp_buf_init(lp_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

static lp_status reserve(lp_buf *b, size_t extra, lp_error *err)
{
    if (extra > SIZE_MAX - b->len - 1)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "buffer size overflow");
    size_t need = b->len + extra;
    if (b->max && need > b->max)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "data exceeds the limit of %zu bytes", b->max);
    if (need + 1 <= b->cap)
        return LP_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need + 1)
        cap = cap > SIZE_MAX / 2 ? need + 1 : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory growing buffer to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return LP_OK;
}

lp_status lp_buf_append(lp_buf *b, const void *p, size_t n, lp_error *err)
{
    lp_status st = reserve(b, n, err);
    if (st)
        return st;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return LP_OK;
}

lp_status lp_buf_append_str(lp_buf *b, const char *s, lp_error *err)
{
    return lp_buf_append(b, s, strlen(s), err);
}

char *lp_str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

lp_status lp_buf_printf(lp_buf *b, lp_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "bad format string");
    lp_status st = reserve(b, (size_t)n, err);
    if (st)
        return st;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return LP_OK;
}

uint8_t *lp_buf_steal(lp_buf *b, size_t *len)
{
    uint8_t *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void lp_buf_reset(lp_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

void lp_buf_free(lp_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
