/*
 * pack.h — packing a folder bundle into a tar for upload (internal to the
 * livepush command).
 *
 * The server receives a release as one stream of bytes, so `livepush upload`
 * of a folder first packs it into a tar, which the server unpacks exactly
 * as it ingests any tar.  The tar is deterministic: entries in byte order
 * of their names, folders before what they hold, no times (mtime 0), no
 * owners, no extended attributes or ACLs — so packing the same folder again
 * gives the same bytes and the same SHA-256, which is what lets an
 * interrupted upload of a folder resume.  Regular files, folders and
 * symbolic links (recorded, never followed) are packed; anything else
 * (device, FIFO, socket) is refused naming the path.  Whether the content
 * is acceptable (paths, link targets, limits) is for the server to decide.
 */
#ifndef LP_CLI_PACK_H
#define LP_CLI_PACK_H

#include "livepush/error.h"

/* Packs the folder `dir` into the open, empty, writable file `fd` as a pax
 * tar (the descriptor stays open; its position ends past the tar).
 * LP_ERR_IO (a read or write failed, or a file changed size while being
 * packed), LP_ERR_UNSUPPORTED (a special file), LP_ERR_TOO_LARGE (nesting
 * deeper than 128 folders, a path longer than 4096 bytes), LP_ERR_NOMEM;
 * each message names the path. */
lp_status lp_pack_dir(const char *dir, int fd, lp_error *err);

#endif
