/*
 * filter.c — segments of a version 2 dictionary-frames delta: the filters
 * that make the tables of an executable compress, the segment table, and the
 * plan that finds those tables in ELF files.
 *
 * A rebuilt executable shifts almost every address it holds, and its tables
 * of addresses then differ from the old ones throughout: zstd finds nothing
 * to copy from the base.  Two filters rewrite such tables, in place and
 * reversibly on any bytes, into what stays the same when code moves:
 *   TABLE    fixed-size records from a start offset; chosen words of each
 *            record become their difference from the same word of the record
 *            before (an ascending list of addresses becomes the sizes of what
 *            lies between them): .eh_frame_hdr's search table (pairs of 4-byte
 *            offsets), .rela.dyn's relocations (offset and info of 24-byte
 *            records; the addends stay);
 *   EHFRAME  .eh_frame's records: in each FDE the CIE pointer (relative to
 *            itself) becomes the CIE's offset in the section, the 4-byte
 *            PC-relative start address becomes absolute and then the
 *            difference from the FDE before's, and a 4-byte LSDA pointer
 *            (augmentation data of 4 bytes) becomes absolute.  Record lengths
 *            are left as they are, so the decoder walks the records as the
 *            encoder did; it stops at a zero, 64-bit or overlong length.
 * Every rewritten field is a function of the field and of bytes that come
 * before it and are left as they are (or already undone), with arithmetic
 * modulo 2^32 or 2^64: decoding is exact for any input, and a filter applied
 * to the wrong kind of bytes costs size, never correctness.
 *
 * The dictionary of a filtered segment is the same section of the base
 * filtered the same way (decode.c builds it; at most LPD_FILTER_MAX bytes),
 * so that the parts of the table that did not change compare equal.
 */
#include "delta/delta_priv.h"

#include <string.h>

static uint64_t get_le(const uint8_t *p, unsigned w)
{
    uint64_t v = 0;
    for (unsigned i = w; i-- > 0;)
        v = (v << 8) | p[i];
    return v;
}

static void put_le(uint8_t *p, unsigned w, uint64_t v)
{
    for (unsigned i = 0; i < w; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)get_le(p, 4);
}

static void put32(uint8_t *p, uint32_t v)
{
    put_le(p, 4, v);
}

/* ---- TABLE ---- */

static void table(const lpd_seg *s, uint8_t *buf, size_t n, int enc)
{
    unsigned w = (unsigned)s->width;
    if (s->start >= n || s->rec == 0 || (w != 4 && w != 8))
        return;
    size_t recs = (size_t)((n - s->start) / s->rec), words = (size_t)(s->rec / w);
    uint64_t wmask = w == 8 ? UINT64_MAX : 0xFFFFFFFFu;
    if (recs < 2)
        return;
    /* encoding runs backwards so that the record before is still original;
     * decoding forwards so that it already is */
    for (size_t k = 0; k + 1 < recs; k++) {
        size_t i = enc ? recs - 1 - k : k + 1;
        uint8_t *r = buf + s->start + i * s->rec, *p = r - s->rec;
        for (size_t j = 0; j < words; j++) {
            if (!((s->mask >> j) & 1))
                continue;
            uint64_t a = get_le(r + j * w, w), b = get_le(p + j * w, w);
            put_le(r + j * w, w, (enc ? a - b : a + b) & wmask);
        }
    }
}

/* ---- EHFRAME ---- */

static void ehframe(uint64_t va, uint8_t *buf, size_t n, int enc)
{
    uint32_t prev = 0, base = (uint32_t)va;
    for (size_t i = 0; n - i >= 8;) {
        uint32_t len = get32(buf + i);
        if (len < 8 || len == UINT32_MAX || len > n - i - 4)
            return;
        /* the id (0 in a CIE, else the distance back to the FDE's CIE)
         * becomes the CIE's offset, in every record: self-inverse */
        uint32_t here = (uint32_t)(i + 4), stored = get32(buf + i + 4);
        uint32_t id = enc ? stored : here - stored;
        put32(buf + i + 4, here - stored);
        if (id != 0) {
            uint32_t at = base + (uint32_t)(i + 8), v = get32(buf + i + 8);
            uint32_t abs = enc ? at + v : v + prev;
            put32(buf + i + 8, enc ? abs - prev : abs - at);
            prev = abs;
            /* augmentation data of 4 bytes: the LSDA pointer */
            if (len >= 17 && buf[i + 16] == 4) {
                at = base + (uint32_t)(i + 17);
                v = get32(buf + i + 17);
                put32(buf + i + 17, enc ? at + v : v - at);
            }
        }
        i += 4 + (size_t)len;
    }
}

void lpd_filter_encode(const lpd_seg *s, uint64_t va, uint8_t *buf, size_t n)
{
    if (s->kind == LPD_SEG_TABLE)
        table(s, buf, n, 1);
    else if (s->kind == LPD_SEG_EHFRAME)
        ehframe(va, buf, n, 1);
}

void lpd_filter_decode(const lpd_seg *s, uint64_t va, uint8_t *buf, size_t n)
{
    if (s->kind == LPD_SEG_TABLE)
        table(s, buf, n, 0);
    else if (s->kind == LPD_SEG_EHFRAME)
        ehframe(va, buf, n, 0);
}

/* ---- the segment table ---- */

size_t lpd_segs_encode(const lpd_seg *s, size_t n, uint8_t *out)
{
    size_t o = lpd_put_varint(out, n);
    for (size_t i = 0; i < n; i++) {
        o += lpd_put_varint(out + o, s[i].len);
        o += lpd_put_varint(out + o, s[i].kind);
        if (s[i].kind == LPD_SEG_RAW)
            continue;
        if (s[i].kind == LPD_SEG_LZMA) {
            o += lpd_put_varint(out + o, s[i].dict);
            o += lpd_put_varint(out + o, s[i].clen);
        } else if (s[i].kind == LPD_SEG_TABLE) {
            o += lpd_put_varint(out + o, s[i].start);
            o += lpd_put_varint(out + o, s[i].rec);
            o += lpd_put_varint(out + o, s[i].width);
            o += lpd_put_varint(out + o, s[i].mask);
        } else {
            o += lpd_put_varint(out + o, s[i].va);
            o += lpd_put_varint(out + o, s[i].old_va);
        }
        o += lpd_put_varint(out + o, s[i].old_off);
        o += lpd_put_varint(out + o, s[i].old_len);
    }
    return o;
}

static int varint(const uint8_t *p, size_t len, size_t *at, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < 10 && *at < len; i++) {
        uint8_t b = p[(*at)++];
        if (i == 9 && b > 1)
            return 0;
        x |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

static lp_status bad_seg(lp_error *err, size_t i, const char *what)
{
    return lp_error_set(err, LP_ERR_MALFORMED, "control stream: segment %zu: %s", i, what);
}

lp_status lpd_segs_decode(const uint8_t *p, size_t len, uint64_t old_len, uint64_t new_len,
                          lpd_seg *out, size_t *n, lp_error *err)
{
    size_t at = 0;
    uint64_t cnt, sum = 0;
    *n = 0;
    if (!varint(p, len, &at, &cnt) || cnt == 0 || cnt > LPD_SEG_MAX)
        return lp_error_set(err, LP_ERR_MALFORMED, "control stream: segment count not in "
                            "1..%d", LPD_SEG_MAX);
    for (size_t i = 0; i < cnt; i++) {
        lpd_seg *s = &out[i];
        uint64_t kind;
        memset(s, 0, sizeof *s);
        if (!varint(p, len, &at, &s->len) || !varint(p, len, &at, &kind))
            return bad_seg(err, i, "truncated");
        if (s->len == 0 || s->len > new_len - sum)
            return bad_seg(err, i, "empty or beyond the result");
        sum += s->len;
        if (kind > LPD_SEG_LZMA)
            return bad_seg(err, i, "unknown kind");
        s->kind = (unsigned)kind;
        if (kind == LPD_SEG_RAW)
            continue;
        int ok = 1;
        if (kind == LPD_SEG_LZMA)
            ok = varint(p, len, &at, &s->dict) && varint(p, len, &at, &s->clen);
        else if (kind == LPD_SEG_TABLE)
            ok = varint(p, len, &at, &s->start) && varint(p, len, &at, &s->rec) &&
                 varint(p, len, &at, &s->width) && varint(p, len, &at, &s->mask);
        else
            ok = varint(p, len, &at, &s->va) && varint(p, len, &at, &s->old_va);
        if (!ok || !varint(p, len, &at, &s->old_off) || !varint(p, len, &at, &s->old_len))
            return bad_seg(err, i, "truncated");
        if (kind == LPD_SEG_LZMA &&
            (s->dict < LPD_LZMA_DICT_MIN || s->dict > LPD_LZMA_DICT_MAX || s->old_len > s->dict))
            return bad_seg(err, i, "LZMA dictionary size out of bounds or smaller than its region");
        if (kind == LPD_SEG_LZMA && s->clen == 0)
            return bad_seg(err, i, "empty LZMA stream");
        if (kind != LPD_SEG_LZMA && (s->len > LPD_FILTER_MAX || s->old_len > LPD_FILTER_MAX))
            return bad_seg(err, i, "filtered segment or its dictionary over the limit");
        if (s->old_off > old_len || s->old_len > old_len - s->old_off)
            return bad_seg(err, i, "dictionary outside the base");
        if (kind == LPD_SEG_TABLE &&
            ((s->width != 4 && s->width != 8) || s->rec == 0 || s->rec % s->width != 0 ||
             s->rec / s->width > 16 || s->mask >= (uint64_t)1 << (s->rec / s->width) ||
             s->start > s->len))
            return bad_seg(err, i, "bad table layout");
    }
    if (sum != new_len)
        return lp_error_set(err, LP_ERR_MALFORMED, "control stream: segments make %llu bytes, "
                            "the result is %llu", (unsigned long long)sum,
                            (unsigned long long)new_len);
    if (at != len)
        return lp_error_set(err, LP_ERR_MALFORMED, "control stream: trailing bytes after the "
                            "segments");
    *n = (size_t)cnt;
    return LP_OK;
}

/* ---- the plan: ELF64 little-endian sections ---- */

typedef struct {
    uint64_t off, size, addr;
} elf_sec;

/* Finds the section called name; 1 if found within the file. */
static int elf_find(const uint8_t *p, size_t n, const char *name, elf_sec *out)
{
    if (n < 64 || memcmp(p, "\177ELF", 4) != 0 || p[4] != 2 || p[5] != 1)
        return 0;
    uint64_t shoff = get_le(p + 0x28, 8);
    unsigned shentsize = (unsigned)get_le(p + 0x3A, 2), shnum = (unsigned)get_le(p + 0x3C, 2),
             shstrndx = (unsigned)get_le(p + 0x3E, 2);
    if (shentsize < 64 || shstrndx >= shnum || shoff > n ||
        (uint64_t)shnum * shentsize > n - shoff)
        return 0;
    const uint8_t *str = p + shoff + (uint64_t)shstrndx * shentsize;
    uint64_t stroff = get_le(str + 24, 8), strsize = get_le(str + 32, 8);
    if (stroff > n || strsize > n - stroff)
        return 0;
    size_t nl = strlen(name);
    for (unsigned i = 0; i < shnum; i++) {
        const uint8_t *sh = p + shoff + (uint64_t)i * shentsize;
        uint32_t nm = get32(sh), type = get32(sh + 4);
        if (nm >= strsize || strsize - nm < nl + 1 || memcmp(p + stroff + nm, name, nl + 1))
            continue;
        elf_sec s = {get_le(sh + 24, 8), get_le(sh + 32, 8), get_le(sh + 16, 8)};
        if (type == 8 /* SHT_NOBITS */ || s.off > n || s.size > n - s.off || s.size == 0)
            return 0;
        *out = s;
        return 1;
    }
    return 0;
}

size_t lpd_segs_plan(const uint8_t *old, size_t old_len, const uint8_t *nw, size_t new_len,
                     lpd_seg *out)
{
    static const struct {
        const char *name;
        lpd_seg proto;
    } known[] = {
        {".eh_frame_hdr", {.kind = LPD_SEG_TABLE, .start = 12, .rec = 8, .width = 4, .mask = 3}},
        {".eh_frame", {.kind = LPD_SEG_EHFRAME}},
        {".rela.dyn", {.kind = LPD_SEG_TABLE, .start = 0, .rec = 24, .width = 8, .mask = 3}},
    };
    struct {
        lpd_seg s;
        uint64_t pos; /* offset of the section in the result */
    } f[sizeof known / sizeof known[0]];
    size_t nf = 0;
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        elf_sec ns, os;
        if (!elf_find(nw, new_len, known[k].name, &ns) || ns.size > LPD_FILTER_MAX)
            continue;
        lpd_seg s = known[k].proto;
        s.len = ns.size;
        s.start = s.start < s.len ? s.start : s.len;
        s.va = ns.addr;
        if (elf_find(old, old_len, known[k].name, &os) && os.size <= LPD_FILTER_MAX) {
            s.old_va = os.addr;
            s.old_off = os.off;
            s.old_len = os.size;
        }
        if (s.kind == LPD_SEG_TABLE) /* addresses are not part of a table's coding */
            s.va = s.old_va = 0;
        f[nf].s = s;
        f[nf++].pos = ns.off;
    }
    /* by position in the result; overlapping ones are dropped */
    for (size_t i = 1; i < nf; i++)
        for (size_t j = i; j > 0 && f[j].pos < f[j - 1].pos; j--) {
            lpd_seg t = f[j].s;
            uint64_t tp = f[j].pos;
            f[j] = f[j - 1];
            f[j - 1].s = t;
            f[j - 1].pos = tp;
        }
    size_t n = 0;
    uint64_t at = 0;
    for (size_t i = 0; i < nf; i++) {
        if (f[i].pos < at)
            continue;
        if (f[i].pos > at)
            out[n++] = (lpd_seg){.len = f[i].pos - at, .kind = LPD_SEG_RAW};
        out[n++] = f[i].s;
        at = f[i].pos + f[i].s.len;
    }
    if (at < new_len || n == 0)
        out[n++] = (lpd_seg){.len = new_len - at, .kind = LPD_SEG_RAW};
    return n;
}
