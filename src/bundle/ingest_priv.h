/*
 * ingest_priv.h — the state shared by the ingest front ends (internal).
 *
 * lp_ingest_path (ingest.c) sets up an lp_ingest_ctx: the limits, a fresh
 * manifest and a private stage in the blob store.  The folder walker
 * (ingest_dir.c) and the archive reader (ingest_archive.c) report each entry
 * through the functions below, which normalise and check names, count
 * entries and bytes against the limits and stream file content into the
 * stage.  Only when the whole bundle passed is the stage committed.
 */
#ifndef LP_BUNDLE_INGEST_PRIV_H
#define LP_BUNDLE_INGEST_PRIV_H

#include "livepush/blobstore.h"
#include "livepush/bundle.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct lp_ingest_ctx {
    lp_blob_stage *stage;
    lp_manifest *m;
    lp_ingest_limits lim;
    uint64_t entries;       /* entries seen */
    uint64_t total;         /* file bytes seen */
    uint64_t archive_bytes; /* size of the archive; 0: no ratio check */
} lp_ingest_ctx;

/* Normalises an entry name from a bundle: refuses absolute names and ".."
 * components, drops "." and empty components and trailing '/', and checks
 * the result (length limit, characters).  *out is a new string, or NULL when
 * the name is the bundle's root itself ("./", "."). */
lp_status lp_ingest_norm_path(lp_ingest_ctx *c, const char *raw, char **out, lp_error *err);

/* Counts one more entry against max_entries (`name` for the message). */
lp_status lp_ingest_count(lp_ingest_ctx *c, const char *name, lp_error *err);

/* File content: begin a blob, feed chunks (checked against the per-file,
 * total and ratio limits as they arrive), end (adds the manifest entry). */
lp_status lp_ingest_file_begin(lp_ingest_ctx *c, lp_blob_writer **w, lp_error *err);
lp_status lp_ingest_file_data(lp_ingest_ctx *c, lp_blob_writer *w, const char *name,
                              const void *data, size_t len, lp_error *err);
lp_status lp_ingest_file_end(lp_ingest_ctx *c, lp_blob_writer *w, const char *name,
                             uint32_t mode, lp_error *err);
/* Streams everything from fd as the content of file `name`. */
lp_status lp_ingest_file_fd(lp_ingest_ctx *c, int fd, const char *name, uint32_t mode,
                            lp_error *err);

lp_status lp_ingest_symlink(lp_ingest_ctx *c, const char *name, const char *target,
                            lp_error *err);

/* Front ends. */
lp_status lp_ingest_dir(lp_ingest_ctx *c, const char *path, lp_error *err);
/* Reads the archive open on fd.  When fd holds no archive libarchive
 * recognises, sets *not_archive and returns LP_ERR_MALFORMED having added
 * nothing. */
lp_status lp_ingest_archive(lp_ingest_ctx *c, int fd, const char *label, bool *not_archive,
                            lp_error *err);

#endif
