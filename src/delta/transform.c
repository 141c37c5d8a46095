/*
 * transform.c — the x86-64 branch transform, and when to use it.
 *
 * Machine code is full of CALL rel32 (E8) and JMP rel32 (E9) instructions
 * whose operand is the distance to the target.  When code is inserted, every
 * call that crosses the insertion changes its operand although the callee did
 * not change, and a byte-wise delta pays for each one.  Rewriting the operand
 * as an absolute target (operand + position of the next instruction) makes
 * all calls to an unmoved function identical again in both files.
 *
 * The displacements of common RIP-relative instructions (mov, lea, ALU and
 * SSE operations on [rip + disp32]), which is how x86-64 code reaches its
 * data, are rewritten the same way.  Only operands that look like near
 * targets are rewritten: those whose top 8 bits are all equal (a
 * distance within +-16 MiB).  The new value is kept in the same set by
 * working modulo 2^25 and sign-extending bit 24.  Whether or not an operand is
 * rewritten, the scan resumes after it, so an operand's bytes are never read
 * as an opcode nor changed by another branch: decoding sees the same opcodes
 * and the same near/far operands as encoding, and the transform is a
 * bijection on any bytes, code or not: decode(encode(x)) == x always.
 *
 * The file is cut into LP_DELTA_BLOCK blocks transformed independently (an
 * instruction that would cross a block end is left alone), so apply can undo
 * or redo any block on its own: bounded memory, random access into the base.
 */
#include "delta/delta_priv.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static int near(uint32_t v)
{
    uint32_t top = v >> 24;
    return top == 0 || top == 0xFF;
}

static uint32_t wrap25(uint32_t v)
{
    v &= 0x01FFFFFFu;
    return (v & 0x01000000u) ? (v | 0xFE000000u) : v;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* What each byte value can be in an instruction the transform recognises,
 * as bits of one table (a constant: computed by the compiler from the
 * definitions below, so that the scan costs one load per byte looked at). */
enum {
    C_HOT = 1,   /* can end an instruction's recognition window (see hot) */
    C_START = 2, /* can start a recognised instruction */
    C_OP1 = 4,   /* one-byte opcode with a ModRM operand and no immediate */
    C_OP2 = 8,   /* second byte of such a two-byte opcode 0F xx */
    C_PFX = 16,  /* 66, F2 or F3 prefix */
};

/* Opcodes (after an optional REX prefix) that take a ModRM operand and no
 * immediate: with ModRM mod=00 rm=101 their operand is [rip + disp32]. */
#define OP1(x)                                                                               \
    ((x) == 0x01 || (x) == 0x03 || (x) == 0x09 || (x) == 0x0B || (x) == 0x11 || (x) == 0x13 || \
     (x) == 0x19 || (x) == 0x1B || (x) == 0x21 || (x) == 0x23 || (x) == 0x29 || (x) == 0x2B || \
     (x) == 0x31 || (x) == 0x33 || (x) == 0x39 || (x) == 0x3B || ((x) >= 0x84 && (x) <= 0x8B) || \
     (x) == 0x8D || (x) == 0xFF)
/* The same for two-byte opcodes 0F xx (SSE moves and arithmetic, movzx...). */
#define OP2(x)                                                                               \
    ((x) == 0x10 || (x) == 0x11 || (x) == 0x28 || (x) == 0x29 || (x) == 0x2E || (x) == 0x2F || \
     (x) == 0x54 || (x) == 0x57 || (x) == 0x58 || (x) == 0x59 || (x) == 0x5C || (x) == 0x5E || \
     (x) == 0x6F || (x) == 0x7F || (x) == 0xAF || (x) == 0xB6 || (x) == 0xB7 || (x) == 0xBE || \
     (x) == 0xBF)
#define PFX(x) ((x) == 0x66 || (x) == 0xF2 || (x) == 0xF3)
/* E8/E9 (a branch's first byte) or a ModRM byte with mod=00 rm=101 (the
 * second to fifth byte of a RIP-relative instruction) */
#define HOT(x) (((x) & 0xC7) == 0x05 || ((x) & 0xFE) == 0xE8)
/* E8/E9, a prefix, REX, 0F or a one-byte opcode of OP1 (a filter only:
 * branch() decides) */
#define START(x) (((x) & 0xFE) == 0xE8 || PFX(x) || ((x) & 0xF0) == 0x40 || (x) == 0x0F || OP1(x))
#define CLS(x)                                                                               \
    (uint8_t)((HOT(x) ? C_HOT : 0) | (START(x) ? C_START : 0) | (OP1(x) ? C_OP1 : 0) |          \
              (OP2(x) ? C_OP2 : 0) | (PFX(x) ? C_PFX : 0))
#define CLS4(x) CLS(x), CLS((x) + 1), CLS((x) + 2), CLS((x) + 3)
#define CLS16(x) CLS4(x), CLS4((x) + 4), CLS4((x) + 8), CLS4((x) + 12)
#define CLS64(x) CLS16(x), CLS16((x) + 16), CLS16((x) + 32), CLS16((x) + 48)
static const uint8_t cls[256] = {CLS64(0), CLS64(64), CLS64(128), CLS64(192)};

/* Length of the rel32 branch (5 for E8/E9) or RIP-relative instruction
 * starting at b[0] whose last four bytes are its operand, or 0.  (Jcc rel32,
 * 0F 8x, is left alone: measured on real executables its false positives
 * cost more than it gains.) */
static size_t branch(const uint8_t *b, size_t left)
{
    if (left >= 5 && (b[0] & 0xFE) == 0xE8)
        return 5;
    size_t i = 0;
    if (left > 0 && (cls[b[0]] & C_PFX))
        i++;
    if (i < left && (b[i] & 0xF0) == 0x40)
        i++;
    if (i + 1 < left && (cls[b[i]] & C_OP1))
        i += 1;
    else if (i + 2 < left && b[i] == 0x0F && (cls[b[i + 1]] & C_OP2))
        i += 2;
    else
        return 0;
    if ((b[i] & 0xC7) != 0x05 || left - i - 1 < 4)
        return 0;
    return i + 5;
}

/* Position of the first hot byte at or after i, n if none: sixteen bytes at
 * a time where the processor has SSE2 (every x86-64 one), else one table
 * load per byte. */
static size_t next_hot(const uint8_t *b, size_t n, size_t i)
{
#ifdef __SSE2__
    const __m128i m1 = _mm_set1_epi8((char)0xC7), v1 = _mm_set1_epi8(0x05);
    const __m128i m2 = _mm_set1_epi8((char)0xFE), v2 = _mm_set1_epi8((char)0xE8);
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(b + i));
        __m128i h = _mm_or_si128(_mm_cmpeq_epi8(_mm_and_si128(x, m1), v1),
                                 _mm_cmpeq_epi8(_mm_and_si128(x, m2), v2));
        unsigned mask = (unsigned)_mm_movemask_epi8(h);
        if (mask)
            return i + (size_t)__builtin_ctz(mask);
    }
#endif
    while (i < n && !(cls[b[i]] & C_HOT))
        i++;
    return i;
}

/* Start of the next recognised instruction at or after i (n if none), its
 * length in *len.  An instruction starting at s is recognised only if
 * b[s..s+4] holds a hot byte, so the scan jumps from hot byte to hot byte
 * and tries, in order, the few starts whose window reaches it: the same
 * instructions as trying every position, found without looking at most
 * bytes. */
static size_t next_op(const uint8_t *b, size_t n, size_t i, size_t *len)
{
    while (i < n) {
        size_t k = next_hot(b, n, i);
        if (k == n)
            return n;
        for (size_t s = k >= i + 4 ? k - 4 : i; s <= k; s++)
            if ((cls[b[s]] & C_START) && (*len = branch(b + s, n - s)))
                return s;
        i = k + 1;
    }
    return n;
}

static void block(uint8_t *b, size_t n, uint64_t pos, int enc)
{
    size_t len = 0;
    for (size_t s = next_op(b, n, 0, &len); s < n; s = next_op(b, n, s + len, &len)) {
        uint8_t *op = b + s + len - 4;
        uint32_t v = rd32(op);
        if (near(v)) {
            uint32_t next = (uint32_t)(pos + s + len);
            wr32(op, wrap25(enc ? v + next : v - next));
        }
        /* converted or not, the operand is never looked at again */
    }
}

size_t lpd_x86_operands(const uint8_t *b, size_t n, uint16_t *out)
{
    size_t len = 0, k = 0;
    for (size_t s = next_op(b, n, 0, &len); s < n; s = next_op(b, n, s + len, &len))
        if (near(rd32(b + s + len - 4)))
            out[k++] = (uint16_t)(s + len - 4);
    return k;
}

void lpd_x86_patch(const uint8_t *block_bytes, uint64_t block_pos, const uint16_t *ops,
                   size_t nops, uint32_t *cursor, size_t from, uint8_t *dst, size_t n)
{
    /* First operand whose bytes reach `from` (ops are ascending).  Reads
     * mostly move forward through a block, so start at the cursor and step;
     * search when the cursor is behind by more than a few operands or ahead. */
    size_t lo = *cursor <= nops ? *cursor : nops;
    int search = lo > 0 && (size_t)ops[lo - 1] + 4 > from;
    for (int steps = 0; !search && lo < nops && (size_t)ops[lo] + 4 <= from; steps++, lo++)
        search = steps == 8;
    if (search) {
        size_t l = 0, hi = nops;
        while (l < hi) {
            size_t mid = l + (hi - l) / 2;
            if ((size_t)ops[mid] + 4 <= from)
                l = mid + 1;
            else
                hi = mid;
        }
        lo = l;
    }
    size_t i = lo;
    for (; i < nops && ops[i] < from + n; i++) {
        uint8_t t[4];
        uint32_t next = (uint32_t)(block_pos + ops[i] + 4);
        wr32(t, wrap25(rd32(block_bytes + ops[i]) + next));
        if ((size_t)ops[i] >= from && (size_t)ops[i] + 4 <= from + n) {
            memcpy(dst + (ops[i] - from), t, 4);
            continue;
        }
        for (size_t j = 0; j < 4; j++) {
            size_t q = (size_t)ops[i] + j;
            if (q >= from && q < from + n)
                dst[q - from] = t[j];
        }
    }
    /* the last operand may reach past this read: the next one starts there */
    *cursor = (uint32_t)(i > lo && (size_t)ops[i - 1] + 4 > from + n ? i - 1 : i);
}

static void run(uint8_t *buf, size_t len, uint64_t base, int enc)
{
    for (size_t off = 0; off < len; off += LP_DELTA_BLOCK) {
        size_t n = len - off < LP_DELTA_BLOCK ? len - off : LP_DELTA_BLOCK;
        block(buf + off, n, base + off, enc);
    }
}

void lpd_x86_encode(uint8_t *buf, size_t len, uint64_t base)
{
    run(buf, len, base, 1);
}

void lpd_x86_decode(uint8_t *buf, size_t len, uint64_t base)
{
    run(buf, len, base, 0);
}

int lpd_x86_detect(const uint8_t *p, size_t len)
{
    /* ELF, 64-bit, little-endian, e_machine EM_X86_64 (62). */
    if (len >= 20 && p[0] == 0x7F && p[1] == 'E' && p[2] == 'L' && p[3] == 'F')
        return p[4] == 2 && p[5] == 1 && p[18] == 62 && p[19] == 0;
    /* Mach-O 64-bit, CPU_TYPE_X86_64 (0x01000007). */
    if (len >= 8 && rd32(p) == 0xFEEDFACFu)
        return rd32(p + 4) == 0x01000007u;
    /* PE: "MZ", e_lfanew at 0x3C, "PE\0\0", machine AMD64 (0x8664). */
    if (len >= 0x40 && p[0] == 'M' && p[1] == 'Z') {
        uint32_t pe = rd32(p + 0x3C);
        if (pe > len || len - pe < 6)
            return 0;
        return p[pe] == 'P' && p[pe + 1] == 'E' && p[pe + 2] == 0 && p[pe + 3] == 0 &&
               p[pe + 4] == 0x64 && p[pe + 5] == 0x86;
    }
    return 0;
}
