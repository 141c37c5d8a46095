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

/* Opcodes (after an optional REX prefix) that take a ModRM operand and no
 * immediate: with ModRM mod=00 rm=101 their operand is [rip + disp32]. */
static int modrm_op1(uint8_t op)
{
    switch (op) {
    case 0x01: case 0x03: case 0x09: case 0x0B: case 0x11: case 0x13: case 0x19: case 0x1B:
    case 0x21: case 0x23: case 0x29: case 0x2B: case 0x31: case 0x33: case 0x39: case 0x3B:
    case 0x84: case 0x85: case 0x86: case 0x87: case 0x88: case 0x89: case 0x8A: case 0x8B:
    case 0x8D: case 0xFF: return 1;
    default: return 0;
    }
}

/* The same for two-byte opcodes 0F xx (SSE moves and arithmetic, movzx...). */
static int modrm_op2(uint8_t op)
{
    switch (op) {
    case 0x10: case 0x11: case 0x28: case 0x29: case 0x2E: case 0x2F: case 0x54: case 0x57:
    case 0x58: case 0x59: case 0x5C: case 0x5E: case 0x6F: case 0x7F: case 0xAF: case 0xB6:
    case 0xB7: case 0xBE: case 0xBF: return 1;
    default: return 0;
    }
}

/* Length of a RIP-relative instruction starting at b[0] whose last four bytes
 * are its displacement, or 0. */
static size_t riprel(const uint8_t *b, size_t left)
{
    size_t i = 0;
    if (left > 0 && (b[0] == 0x66 || b[0] == 0xF2 || b[0] == 0xF3))
        i++;
    if (i < left && (b[i] & 0xF0) == 0x40)
        i++;
    if (i + 1 < left && modrm_op1(b[i]))
        i += 1;
    else if (i + 2 < left && b[i] == 0x0F && modrm_op2(b[i + 1]))
        i += 2;
    else
        return 0;
    if ((b[i] & 0xC7) != 0x05 || left - i - 1 < 4)
        return 0;
    return i + 5;
}

/* Length of the rel32 branch (5 for E8/E9) or RIP-relative instruction
 * starting at b[0], or 0.  (Jcc rel32, 0F 8x, is left alone: measured on
 * real executables its false positives cost more than it gains.) */
static size_t branch(const uint8_t *b, size_t left)
{
    if (left >= 5 && (b[0] & 0xFE) == 0xE8)
        return 5;
    return riprel(b, left);
}

/* Bytes that can end the recognition window of an instruction: E8/E9 (its
 * first byte) or a ModRM byte with mod=00 rm=101 (its second to fifth byte). */
static int hot(uint8_t x)
{
    return (x & 0xC7) == 0x05 || (x & 0xFE) == 0xE8;
}

/* Bytes a recognised instruction can start with: E8/E9, a 66/F2/F3 or REX
 * prefix, 0F, or a one-byte opcode of modrm_op1.  (A filter only: branch()
 * decides.) */
static int can_start(uint8_t x)
{
    return (x & 0xFE) == 0xE8 || x == 0x66 || x == 0xF2 || x == 0xF3 || (x & 0xF0) == 0x40 ||
           x == 0x0F || modrm_op1(x);
}

/* Eight bytes at a time: nonzero if any of p[0..8) is hot.  A byte is hot
 * when (x & C7) ^ 05 or (x & FE) ^ E8 is zero; the classic test for a zero
 * byte in a word, (v - 0x01..) & ~v & 0x80.., has no false negatives, and a
 * false positive only sends the caller to the byte-by-byte test. */
static int any_hot8(const uint8_t *p)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t w;
    memcpy(&w, p, 8);
    uint64_t a = (w & 0xC7C7C7C7C7C7C7C7ull) ^ 0x0505050505050505ull;
    uint64_t b = (w & 0xFEFEFEFEFEFEFEFEull) ^ 0xE8E8E8E8E8E8E8E8ull;
    return (((a - ones) & ~a) | ((b - ones) & ~b)) & highs ? 1 : 0;
}

/* Start of the next recognised instruction at or after i (n if none), its
 * length in *len.  An instruction starting at s is recognised only if
 * b[s..s+4] holds a hot byte, so the scan jumps from hot byte to hot byte
 * (skipping eight bytes at a time where none is) and tries, in order, the
 * few starts whose window reaches it: the same instructions as trying every
 * position, found without looking at most bytes. */
static size_t next_op(const uint8_t *b, size_t n, size_t i, size_t *len)
{
    while (i < n) {
        size_t k = i;
        while (k + 8 <= n && !any_hot8(b + k))
            k += 8;
        while (k < n && !hot(b[k]))
            k++;
        if (k == n)
            return n;
        for (size_t s = k >= i + 4 ? k - 4 : i; s <= k; s++)
            if (can_start(b[s]) && (*len = branch(b + s, n - s)))
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
