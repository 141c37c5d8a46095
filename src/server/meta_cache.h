/*
 * meta_cache.h — small files held in memory, keyed by path and file
 * identity (internal; used by the repository routes for metadata).
 *
 * Devices poll timestamp.json (and fetch the other metadata) far more
 * often than it changes.  The cache keeps the content and the ETag of
 * recently served small files so that a request for an unchanged file
 * costs one lstat(2) and no open, read or hash.
 *
 * Validity: an entry is used only while the file at its path has the same
 * identity as the version whose bytes it holds: device, inode, size,
 * modification time and status-change time (both to the nanosecond).  The
 * repository writer replaces files by rename, which gives a new inode, so a
 * new version is never answered with the old bytes.  A write in place
 * changes the times (and usually the size), so it is seen too, unless it
 * keeps the size and lands within the same tick of the file system's clock
 * as the version cached; nothing in livepush writes metadata in place.  The
 * bytes of an entry always come from one descriptor whose fstat gave its
 * identity, so an entry is one whole version of the file.
 *
 * Bounds: `slots` entries at most, each of at most `max_bytes` bytes of
 * content.  A path maps to one slot (by a hash of the path); a new entry
 * replaces whatever the slot held, so the cache never grows past
 * slots * max_bytes and needs no eviction pass.
 *
 * Threads: every function may be called from any thread at once.  Each
 * slot has its own lock, held only to look an entry up or swap it.
 * Entries are reference-counted: an entry handed out stays valid (and
 * unchanged) until its holder releases it, even if the cache replaced or
 * dropped it meanwhile, so a response can be sent straight from it.
 */
#ifndef LP_SERVER_META_CACHE_H
#define LP_SERVER_META_CACHE_H

#include "livepush/error.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#define LP_META_ETAG_MAX 72

typedef struct lp_meta_cache lp_meta_cache;

/* One cached version of one file.  data, len and etag are read-only for
 * holders of a reference. */
typedef struct lp_meta_entry {
    const uint8_t *data;        /* len bytes (not NUL-terminated) */
    size_t len;
    char etag[LP_META_ETAG_MAX]; /* strong ETag with its quotes */
    /* private */
    atomic_uint refs;
    struct stat id;
    char *path;
} lp_meta_entry;

/* Makes a cache of `slots` entries (1..65536) of at most max_bytes each.
 * LP_ERR_INVALID_ARG for a bad size, LP_ERR_NOMEM. */
lp_status lp_meta_cache_new(lp_meta_cache **out, size_t slots, size_t max_bytes, lp_error *err);

/* Drops the cache's references and frees it.  Entries still held elsewhere
 * live on until released.  NULL is fine. */
void lp_meta_cache_free(lp_meta_cache *c);

/* Largest content the cache stores. */
size_t lp_meta_cache_max_bytes(const lp_meta_cache *c);

/* The entry for `path` if the cache holds the version whose identity is sb
 * (an lstat or fstat of the file now): a new reference, released with
 * lp_meta_entry_release.  NULL when it holds none. */
lp_meta_entry *lp_meta_cache_get(lp_meta_cache *c, const char *path, const struct stat *sb);

/* Makes an entry for `path` from content read through a descriptor whose
 * fstat is sb: data (len bytes, malloc'd) is taken over, etag copied.
 * When len <= max_bytes the entry is also stored, replacing its slot's.
 * Returns a reference for the caller, or NULL when out of memory (data is
 * freed then). */
lp_meta_entry *lp_meta_cache_put(lp_meta_cache *c, const char *path, const struct stat *sb,
                                 uint8_t *data, size_t len, const char *etag);

/* Releases one reference (the entry is freed with the last).  Takes a
 * void * so that it can serve as a libmicrohttpd free callback.  NULL is
 * fine. */
void lp_meta_entry_release(void *entry);

#endif
