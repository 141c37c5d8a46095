/*
 * hash.c — SHA-256 / SHA-512 digests, hex coding and constant-time compare
 * (see include/livepush/hash.h).
 *
 * Design:
 *   - Digests are Nettle's (GnuTLS's low-level crypto library): its SHA-256
 *     uses the CPU's SHA extensions where present, as fast as OpenSSL's, and
 *     a process that only hashes (the delta engine, livepush-delta) needs
 *     no OpenSSL at all: loading and initialising libcrypto costs about
 *     3 ms per process, more than applying a small delta.  Signatures and
 *     keys stay with OpenSSL (key.c).
 *   - The algorithm table below is the only place that maps lp_hash_alg to
 *     Nettle's functions, a TUF name and a length, so an out-of-range enum
 *     value is caught in one spot (lp_hash_len returns 0, lp_hash_alg_name
 *     "unknown", and the functions that hash refuse it with
 *     LP_ERR_INVALID_ARG).
 *   - A streaming context holds either algorithm's state and remembers
 *     whether it was finalised, so a misuse (update or final after final) is
 *     an LP_ERR_STATE error.
 *   - lp_hash_file reads through one 64 KiB heap buffer, so any file size is
 *     hashed in constant memory.  It opens with O_NONBLOCK and refuses
 *     anything that is not a regular file, so a FIFO or device given as a
 *     path cannot block or stream forever.
 *   - Hex decoding validates the whole input (length parity, capacity, every
 *     digit) before writing a byte; messages name the offending offset rather
 *     than echoing untrusted input.
 *   - lp_mem_equal is Nettle's memeql_sec, whose run time does not depend on
 *     where the inputs differ.
 */
#include "livepush/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/memops.h>
#include <nettle/sha2.h>

#define LP_HASH_FILE_CHUNK (64u * 1024u)

struct lp_hash_ctx {
    union {
        struct sha256_ctx s256;
        struct sha512_ctx s512;
    } u;
    lp_hash_alg alg;
    bool finished;
};

static const struct {
    const char *name;
    size_t len;
} hash_info[] = {
    [LP_HASH_SHA256] = {"sha256", LP_SHA256_LEN},
    [LP_HASH_SHA512] = {"sha512", LP_SHA512_LEN},
};

static bool alg_valid(lp_hash_alg alg)
{
    return (unsigned)alg < sizeof hash_info / sizeof hash_info[0];
}

size_t lp_hash_len(lp_hash_alg alg)
{
    return alg_valid(alg) ? hash_info[alg].len : 0;
}

const char *lp_hash_alg_name(lp_hash_alg alg)
{
    return alg_valid(alg) ? hash_info[alg].name : "unknown";
}

lp_status lp_hash_alg_from_name(const char *name, lp_hash_alg *alg, lp_error *err)
{
    if (!name)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "hash algorithm name missing");
    for (size_t i = 0; i < sizeof hash_info / sizeof hash_info[0]; i++) {
        if (!strcmp(name, hash_info[i].name)) {
            *alg = (lp_hash_alg)i;
            return LP_OK;
        }
    }
    return lp_error_set(err, LP_ERR_UNSUPPORTED,
                        "hash algorithm \"%.64s\" not supported (expected sha256 or sha512)", name);
}

lp_status lp_hash_new(lp_hash_ctx **out, lp_hash_alg alg, lp_error *err)
{
    *out = NULL;
    if (!alg_valid(alg))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "hash algorithm %d not supported", (int)alg);
    lp_hash_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory creating a %s context",
                            hash_info[alg].name);
    c->alg = alg;
    if (alg == LP_HASH_SHA256)
        sha256_init(&c->u.s256);
    else
        sha512_init(&c->u.s512);
    *out = c;
    return LP_OK;
}

lp_status lp_hash_update(lp_hash_ctx *ctx, const void *data, size_t len, lp_error *err)
{
    if (!ctx)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "hash context missing");
    if (ctx->finished)
        return lp_error_set(err, LP_ERR_STATE, "%s: update after the digest was finalised",
                            hash_info[ctx->alg].name);
    if (len == 0)
        return LP_OK;
    if (ctx->alg == LP_HASH_SHA256)
        sha256_update(&ctx->u.s256, len, data);
    else
        sha512_update(&ctx->u.s512, len, data);
    return LP_OK;
}

lp_status lp_hash_final(lp_hash_ctx *ctx, uint8_t out[LP_HASH_MAX_LEN], lp_error *err)
{
    if (!ctx)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "hash context missing");
    if (ctx->finished)
        return lp_error_set(err, LP_ERR_STATE, "%s: digest already finalised",
                            hash_info[ctx->alg].name);
    ctx->finished = true;
    if (ctx->alg == LP_HASH_SHA256)
        sha256_digest(&ctx->u.s256, SHA256_DIGEST_SIZE, out);
    else
        sha512_digest(&ctx->u.s512, SHA512_DIGEST_SIZE, out);
    return LP_OK;
}

void lp_hash_free(lp_hash_ctx *ctx)
{
    free(ctx);
}

lp_status lp_hash_buf(lp_hash_alg alg, const void *data, size_t len, uint8_t out[LP_HASH_MAX_LEN],
                      lp_error *err)
{
    lp_hash_ctx *c;
    lp_status st = lp_hash_new(&c, alg, err);
    if (st)
        return st;
    st = lp_hash_update(c, data, len, err);
    if (!st)
        st = lp_hash_final(c, out, err);
    lp_hash_free(c);
    return st;
}

lp_status lp_hash_file(lp_hash_alg alg, const char *path, uint8_t out[LP_HASH_MAX_LEN],
                       uint64_t *size, lp_error *err)
{
    if (!path)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "file path missing");
    if (!alg_valid(alg))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "hash algorithm %d not supported", (int)alg);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "open %s: %s",
                            path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "%s: not a regular file", path);
    }
    uint8_t *chunk = malloc(LP_HASH_FILE_CHUNK);
    if (!chunk) {
        close(fd);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory hashing %s", path);
    }
    lp_hash_ctx *c;
    lp_status st = lp_hash_new(&c, alg, err);
    uint64_t total = 0;
    while (!st) {
        ssize_t r = read(fd, chunk, LP_HASH_FILE_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st = lp_error_set(err, LP_ERR_IO, "read %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        total += (uint64_t)r;
        st = lp_hash_update(c, chunk, (size_t)r, err);
    }
    if (!st)
        st = lp_hash_final(c, out, err);
    lp_hash_free(c);
    free(chunk);
    close(fd);
    if (st)
        return lp_error_prefix(err, st, "hashing %s", path);
    if (size)
        *size = total;
    return LP_OK;
}

void lp_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

lp_status lp_hex_decode(const char *hex, uint8_t *out, size_t cap, size_t *outlen, lp_error *err)
{
    *outlen = 0;
    if (!hex)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "hex string missing");
    size_t n = strlen(hex);
    if (n % 2 != 0)
        return lp_error_set(err, LP_ERR_MALFORMED, "hex string has odd length %zu", n);
    for (size_t i = 0; i < n; i++) {
        if (hex_value((unsigned char)hex[i]) < 0)
            return lp_error_set(err, LP_ERR_MALFORMED,
                                "hex string: byte 0x%02x at offset %zu is not a hex digit",
                                (unsigned)(unsigned char)hex[i], i);
    }
    if (n / 2 > cap)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "hex string decodes to %zu bytes, more than the %zu allowed", n / 2,
                            cap);
    for (size_t i = 0; i < n / 2; i++)
        out[i] = (uint8_t)(hex_value((unsigned char)hex[2 * i]) << 4 |
                           hex_value((unsigned char)hex[2 * i + 1]));
    *outlen = n / 2;
    return LP_OK;
}

int lp_mem_equal(const void *a, const void *b, size_t n)
{
    if (n == 0)
        return 1;
    return memeql_sec(a, b, n) != 0;
}
