/*
 * file.h — bounded reads and crash-safe writes (internal).
 *
 * Every write in livepush goes through lp_file_write_atomic: the bytes go to a
 * unique temporary file in the same folder, are fsync'd, renamed over the
 * final name, and the folder is fsync'd.  A crash at any instant leaves either
 * the old file or the new one, never a mix.
 */
#ifndef LP_CORE_FILE_H
#define LP_CORE_FILE_H

#include "livepush/error.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Reads a whole regular file of at most `max` bytes into a new malloc'd
 * buffer (NUL-terminated, *len excludes the NUL).  LP_ERR_NOT_FOUND if it does
 * not exist, LP_ERR_TOO_LARGE past max, LP_ERR_IO otherwise. */
lp_status lp_file_read(const char *path, size_t max, uint8_t **data, size_t *len, lp_error *err);

/* Writes all `len` bytes to fd (short writes and EINTR retried).  `what`
 * names the file in the message.  LP_ERR_IO. */
lp_status lp_file_write_all(int fd, const void *data, size_t len, const char *what,
                            lp_error *err);

/* Atomically replaces `path` with `len` bytes at `data`, created with `mode`
 * (e.g. 0644, 0600).  The folder must exist. */
lp_status lp_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                               lp_error *err);

/* Opens a new unique temporary file next to `final_path` for writing with
 * `mode`; its name is written to tmp_path (size at least strlen(final)+16).
 * Pair with lp_file_commit_tmp or unlink(tmp_path). */
lp_status lp_file_open_tmp(const char *final_path, mode_t mode, char *tmp_path, size_t tmp_cap,
                           int *fd, lp_error *err);
/* fsyncs and closes fd, renames tmp_path to final_path, fsyncs the folder.
 * On failure the temporary file is removed. */
lp_status lp_file_commit_tmp(int fd, const char *tmp_path, const char *final_path, lp_error *err);
/* The same without either fsync: closes fd and renames tmp_path to
 * final_path.  Readers and a crash of the process still see the old file or
 * the new one whole, but after a power loss the new file may be empty or
 * absent: for callers that sync later themselves or need no durability. */
lp_status lp_file_rename_tmp(int fd, const char *tmp_path, const char *final_path,
                             lp_error *err);

/* fsyncs the folder that contains `path` (or `path` itself if is_dir). */
lp_status lp_file_sync_parent(const char *path, lp_error *err);

/* Creates a folder and any missing parents with `mode`; existing ones are fine. */
lp_status lp_file_mkdirs(const char *path, mode_t mode, lp_error *err);

/* Joins two path parts with one '/' into a new malloc'd string (NULL on OOM). */
char *lp_path_join(const char *a, const char *b);

/* 1 if path exists (any type), 0 otherwise. */
int lp_file_exists(const char *path);

#endif
