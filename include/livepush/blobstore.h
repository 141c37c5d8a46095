/*
 * livepush/blobstore.h — a content-addressed store of immutable blobs.
 *
 * A store lives in one folder:
 *     <root>/<first 2 hex>/<64 hex sha256>   one file per distinct content
 *     <root>/tmp/                           temporary files and staging areas
 * A blob's name is the lower-case hex SHA-256 of its bytes, so identical
 * content is stored once and a blob never changes after it is written.
 *
 * Writes are crash-safe: the bytes go to a temporary file under tmp/ while
 * they are hashed, are fsync'd, and are renamed into place (then the folder is
 * fsync'd).  If the blob already exists the temporary file is discarded.  A
 * crash at any instant leaves at most stray files under tmp/;
 * lp_blobstore_open removes them, so one process should own a store (open it
 * once and share the handle between threads; every operation is safe to call
 * from several threads at once).
 *
 * Blob IDs passed in are checked (exactly 64 lower-case hex digits) before
 * any file system call, so an ID can never name a path outside the store.
 *
 * Staging: an lp_blob_stage is a private folder under tmp/ that collects
 * blobs which are not yet part of the store (e.g. while a whole bundle is
 * being checked).  lp_blob_stage_commit moves them all into the store;
 * lp_blob_stage_discard removes them.  Until commit nothing is visible
 * through lp_blobstore_has or lp_blobstore_path_of.
 */
#ifndef LIVEPUSH_BLOBSTORE_H
#define LIVEPUSH_BLOBSTORE_H

#include "livepush/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Hex digits in a blob ID, and the size of a buffer holding one with its NUL. */
#define LP_BLOB_ID_HEX 64
#define LP_BLOB_ID_SIZE 65

typedef struct lp_blobstore lp_blobstore;
typedef struct lp_blob_writer lp_blob_writer;
typedef struct lp_blob_stage lp_blob_stage;

/* True if `id` is exactly 64 lower-case hex digits. */
bool lp_blob_id_valid(const char *id);

/* Opens (creating if needed) the store in folder `root` and empties its
 * tmp/ folder.  The caller owns *out (lp_blobstore_close).  LP_ERR_IO. */
lp_status lp_blobstore_open(const char *root, lp_blobstore **out, lp_error *err);

/* Seconds after which lp_blobstore_open_shared takes a file or staging
 * folder under tmp/ for one left by a crash. */
#define LP_BLOBSTORE_TMP_MAX_AGE (24 * 3600)

/* lp_blobstore_open for a store that several processes use at the same time
 * (servers sharing one folder): tmp/ is not emptied, since another process
 * may be writing there; only entries unchanged for LP_BLOBSTORE_TMP_MAX_AGE
 * seconds are removed.  Writes stay safe across processes: temporary names
 * are unique (mkostemp) and a blob appears by rename(2). */
lp_status lp_blobstore_open_shared(const char *root, lp_blobstore **out, lp_error *err);
/* Closes a store; NULL is fine. */
void lp_blobstore_close(lp_blobstore *bs);
/* The root folder the store was opened on (borrowed). */
const char *lp_blobstore_root(const lp_blobstore *bs);

/* Stores `len` bytes.  `expect` (may be NULL) is the SHA-256 hex the content
 * must have: a mismatch gives LP_ERR_HASH_MISMATCH and nothing is stored
 * (also LP_ERR_INVALID_ARG for a malformed `expect`).  The blob's ID goes to
 * id_out (LP_BLOB_ID_SIZE bytes; may be NULL). */
lp_status lp_blobstore_put_mem(lp_blobstore *bs, const void *data, size_t len,
                               const char *expect, char *id_out, lp_error *err);
/* Stores everything read from `fd` until end of file, streaming (constant
 * memory).  max_bytes > 0 bounds the size (LP_ERR_TOO_LARGE, nothing
 * stored).  The size goes to *size_out when non-NULL.  fd is not closed. */
lp_status lp_blobstore_put_fd(lp_blobstore *bs, int fd, uint64_t max_bytes, const char *expect,
                              char *id_out, uint64_t *size_out, lp_error *err);
/* The same for the file at `path` (LP_ERR_NOT_FOUND if absent). */
lp_status lp_blobstore_put_file(lp_blobstore *bs, const char *path, uint64_t max_bytes,
                                const char *expect, char *id_out, uint64_t *size_out,
                                lp_error *err);

/* True if blob `id` is in the store (false for an invalid ID). */
bool lp_blobstore_has(lp_blobstore *bs, const char *id);
/* The file that holds blob `id` as a new malloc'd string (caller frees), for
 * zero-copy serving.  LP_ERR_INVALID_ARG for a bad ID, LP_ERR_NOT_FOUND. */
lp_status lp_blobstore_path_of(lp_blobstore *bs, const char *id, char **path_out, lp_error *err);
/* Opens blob `id` read-only; the caller closes *fd_out.  Its size goes to
 * *size_out when non-NULL.  LP_ERR_INVALID_ARG, LP_ERR_NOT_FOUND, LP_ERR_IO. */
lp_status lp_blobstore_open_blob(lp_blobstore *bs, const char *id, int *fd_out,
                                 uint64_t *size_out, lp_error *err);
/* Size in bytes of blob `id`.  LP_ERR_INVALID_ARG, LP_ERR_NOT_FOUND. */
lp_status lp_blobstore_size(lp_blobstore *bs, const char *id, uint64_t *size_out,
                            lp_error *err);
/* Removes blob `id` (for garbage collection).  LP_ERR_NOT_FOUND if absent. */
lp_status lp_blobstore_remove(lp_blobstore *bs, const char *id, lp_error *err);

/* Streaming writes.  A writer is a temporary file that is hashed as it is
 * written; it ends with exactly one of lp_blob_writer_commit or
 * lp_blob_writer_abort, which free it. */
lp_status lp_blobstore_writer(lp_blobstore *bs, lp_blob_writer **out, lp_error *err);
lp_status lp_blob_writer_write(lp_blob_writer *w, const void *data, size_t len, lp_error *err);
/* Bytes written so far. */
uint64_t lp_blob_writer_size(const lp_blob_writer *w);
/* fsyncs and moves the content into the store (or into its stage, for a
 * writer from lp_blob_stage_writer), discarding it if that blob is already
 * there.  `expect` as for lp_blobstore_put_mem.  Frees w in every case. */
lp_status lp_blob_writer_commit(lp_blob_writer *w, const char *expect, char *id_out,
                                uint64_t *size_out, lp_error *err);
/* Removes the temporary file and frees w; NULL is fine. */
void lp_blob_writer_abort(lp_blob_writer *w);

/* A new private staging area under the store's tmp/ folder. */
lp_status lp_blob_stage_open(lp_blobstore *bs, lp_blob_stage **out, lp_error *err);
/* A writer whose commit puts the blob into the stage, not the store. */
lp_status lp_blob_stage_writer(lp_blob_stage *stage, lp_blob_writer **out, lp_error *err);
/* Number of distinct blobs staged so far. */
size_t lp_blob_stage_count(const lp_blob_stage *stage);
/* Moves every staged blob into the store (blobs already there are kept and
 * the staged copy dropped), removes the staging folder and frees stage.  If
 * it fails part way (LP_ERR_IO), the blobs already moved stay: each is
 * complete, and garbage collection removes blobs no release refers to. */
lp_status lp_blob_stage_commit(lp_blob_stage *stage, lp_error *err);
/* Removes the staging folder with everything in it and frees stage; NULL
 * is fine. */
void lp_blob_stage_discard(lp_blob_stage *stage);

#ifdef __cplusplus
}
#endif
#endif
