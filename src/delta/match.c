/*
 * match.c — from (old, new) to control entries: suffix-array matching with
 * approximate extensions.
 *
 * A suffix array of the base (libdivsufsort, O(n) space of 4 bytes per byte)
 * gives, for any position of the new file, the longest exact match in the
 * base by binary search.  The scan walks the new file and keeps a "current
 * alignment" (the offset between new and base of the last match): as long as
 * the bytes at that alignment keep agreeing with the new file about as well
 * as the best exact match would, it keeps going, because continuing an
 * alignment costs almost nothing (its differences are mostly zero bytes in
 * the diff stream, which compress away).  When an exact match is clearly
 * better than the current alignment (8 bytes more agreement), the previous
 * alignment is closed: it is extended forward from where it started and the
 * new one backward from where it starts, each as far as more than half of
 * the bytes agree, any overlap is split where it scores best, and what lies
 * between goes to the extra stream.  This is the approximate matching of
 * bsdiff, over a linear-time suffix sort.
 */
#include "delta/delta_priv.h"

#include <divsufsort.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *old, *nw;
    size_t on, nn;
    const saidx_t *sa;
} ctx;

static size_t common(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t n = an < bn ? an : bn, i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

/* Longest match of nw[at..] in the base; its base position in *pos. */
static size_t search(const ctx *c, size_t at, size_t *pos)
{
    const uint8_t *q = c->nw + at;
    size_t qn = c->nn - at, lo = 0, hi = c->on - 1;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2, p = (size_t)c->sa[mid];
        size_t n = c->on - p < qn ? c->on - p : qn;
        size_t k = common(c->old + p, n, q, n); /* not memcmp: sanitizers scan all n bytes */
        int r = k < n ? (c->old[p + k] < q[k] ? -1 : 1) : 0;
        if (r < 0 || (r == 0 && n < qn && n == c->on - p))
            lo = mid;
        else
            hi = mid;
    }
    size_t pl = (size_t)c->sa[lo], ph = (size_t)c->sa[hi];
    size_t ll = common(c->old + pl, c->on - pl, q, qn);
    size_t lh = common(c->old + ph, c->on - ph, q, qn);
    *pos = ll >= lh ? pl : ph;
    return ll >= lh ? ll : lh;
}

static lp_status push(lpd_ctrl_list *l, uint64_t add, uint64_t copy, int64_t seek, lp_error *err)
{
    if (add == 0 && copy == 0 && l->n > 0) { /* a bare seek: fold it into the last entry */
        l->v[l->n - 1].seek += seek;
        return LP_OK;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        lpd_ctrl *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory for control entries");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (lpd_ctrl){add, copy, seek};
    return LP_OK;
}

static int eq(const ctx *c, size_t npos, size_t opos)
{
    return opos < c->on && c->old[opos] == c->nw[npos];
}

/* Forward extension of the alignment (lastscan, lastpos) up to scan. */
static size_t extend_fwd(const ctx *c, size_t lastscan, size_t lastpos, size_t scan)
{
    long s = 0, best = 0;
    size_t len = 0;
    for (size_t i = 0; lastscan + i < scan && lastpos + i < c->on;) {
        if (c->old[lastpos + i] == c->nw[lastscan + i])
            s++;
        i++;
        if (s * 2 - (long)i > best * 2 - (long)len) {
            best = s;
            len = i;
        }
    }
    return len;
}

/* Backward extension of the match (scan, pos) down to lastscan. */
static size_t extend_back(const ctx *c, size_t lastscan, size_t scan, size_t pos)
{
    long s = 0, best = 0;
    size_t len = 0;
    for (size_t i = 1; scan >= lastscan + i && pos >= i; i++) {
        if (c->old[pos - i] == c->nw[scan - i])
            s++;
        if (s * 2 - (long)i > best * 2 - (long)len) {
            best = s;
            len = i;
        }
    }
    return len;
}

/* Splits an overlap of the two extensions where it scores best. */
static void split(const ctx *c, size_t lastscan, size_t lastpos, size_t scan, size_t pos,
                  size_t *lenf, size_t *lenb)
{
    if (lastscan + *lenf <= scan - *lenb)
        return;
    size_t overlap = (lastscan + *lenf) - (scan - *lenb), lens = 0;
    long s = 0, best = 0;
    for (size_t i = 0; i < overlap; i++) {
        if (c->nw[lastscan + *lenf - overlap + i] == c->old[lastpos + *lenf - overlap + i])
            s++;
        if (c->nw[scan - *lenb + i] == c->old[pos - *lenb + i])
            s--;
        if (s > best) {
            best = s;
            lens = i + 1;
        }
    }
    *lenf += lens - overlap;
    *lenb -= lens;
}

static lp_status scan_all(const ctx *c, lpd_ctrl_list *out, lp_error *err)
{
    size_t scan = 0, len = 0, pos = 0, lastscan = 0, lastpos = 0;
    int64_t lastoff = 0;
    while (scan < c->nn) {
        int64_t oldscore = 0;
        size_t scsc;
        for (scsc = scan += len; scan < c->nn; scan++) {
            len = search(c, scan, &pos);
            for (; scsc < scan + len; scsc++)
                if (eq(c, scsc, (size_t)((int64_t)scsc + lastoff)))
                    oldscore++;
            if (((int64_t)len == oldscore && len != 0) || (int64_t)len > oldscore + 8)
                break;
            if (eq(c, scan, (size_t)((int64_t)scan + lastoff)))
                oldscore--;
        }
        if ((int64_t)len == oldscore && scan != c->nn)
            continue;
        size_t lenf = extend_fwd(c, lastscan, lastpos, scan), lenb = 0;
        if (scan < c->nn)
            lenb = extend_back(c, lastscan, scan, pos);
        split(c, lastscan, lastpos, scan, pos, &lenf, &lenb);
        int64_t seek = (int64_t)(pos - lenb) - (int64_t)(lastpos + lenf);
        if (scan == c->nn)
            seek = 0;
        lp_status st = push(out, lenf, (scan - lenb) - (lastscan + lenf), seek, err);
        if (st)
            return st;
        lastscan = scan - lenb;
        lastpos = pos - lenb;
        lastoff = (int64_t)pos - (int64_t)scan;
    }
    return LP_OK;
}

lp_status lpd_match(const uint8_t *old, size_t old_len, const uint8_t *nw, size_t new_len,
                    lpd_ctrl_list *out, double *t_sort, double *t_match, lp_error *err)
{
    *t_sort = *t_match = 0;
    if (new_len == 0)
        return LP_OK;
    if (old_len == 0)
        return push(out, 0, new_len, 0, err);
    double t0 = lpd_now();
    saidx_t *sa = malloc(old_len * sizeof *sa);
    if (!sa)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory for the suffix array of %zu "
                            "bytes", old_len);
    if (divsufsort(old, sa, (saidx_t)old_len) != 0) {
        free(sa);
        return lp_error_set(err, LP_ERR_NOMEM, "suffix sort of %zu bytes failed", old_len);
    }
    double t1 = lpd_now();
    ctx c = {old, nw, old_len, new_len, sa};
    lp_status st = scan_all(&c, out, err);
    free(sa);
    *t_sort = t1 - t0;
    *t_match = lpd_now() - t1;
    return st;
}
