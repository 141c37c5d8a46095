/*
 * livepush/bundle.h — release bundles: tree manifests and ingest.
 *
 * A tree manifest is the normalised form of a release: one entry per path,
 *     path    relative, '/'-separated, no empty, "." or ".." parts, no
 *             control characters, valid UTF-8 (compared as bytes; no Unicode
 *             normalisation), at most LP_MANIFEST_MAX_PATH bytes
 *     type    file, symlink or dir
 *     mode    files: 0755 if any executable bit was set, else 0644;
 *             folders 0755; symbolic links 0777 (not serialised)
 *     size    files: byte count
 *     sha256  files: lower-case hex SHA-256 of the content (the blob ID)
 *     target  symlinks: a relative target that stays inside the tree
 * sorted by path bytes, with unique paths.  Every folder that contains an
 * entry is itself listed as a dir entry (lp_manifest_finish adds missing
 * ones), so the same tree gives the same manifest whatever it came from.
 *
 * The manifest's canonical JSON (lp_manifest_to_json) is stable, so its
 * SHA-256 identifies the release content; lp_manifest_from_json parses it
 * back strictly (it is untrusted input).  docs/bundles.md documents the
 * format.
 *
 * Ingest turns a folder, an archive (tar with any compression, zip, 7z, cpio,
 * ... — whatever libarchive reads except formats that name files outside the
 * archive) or a single plain file into a manifest plus one blob per distinct
 * file content in an lp_blobstore.  Unsafe or oversized bundles are refused
 * with LP_ERR_MALFORMED or LP_ERR_TOO_LARGE and a message naming the entry;
 * nothing of a refused bundle is stored.
 */
#ifndef LIVEPUSH_BUNDLE_H
#define LIVEPUSH_BUNDLE_H

#include "livepush/blobstore.h"
#include "livepush/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Absolute bounds of any manifest (ingest limits may be lower). */
#define LP_MANIFEST_MAX_PATH 1024
#define LP_MANIFEST_MAX_TARGET 1024
#define LP_MANIFEST_MAX_ENTRIES 200000
#define LP_MANIFEST_MAX_JSON_BYTES (64u * 1024 * 1024)
/* The "manifest_version" this code writes and reads. */
#define LP_MANIFEST_VERSION 1

typedef enum lp_entry_type {
    LP_ENTRY_FILE = 0,
    LP_ENTRY_SYMLINK = 1,
    LP_ENTRY_DIR = 2,
} lp_entry_type;

typedef struct lp_manifest_entry {
    char *path;
    lp_entry_type type;
    uint32_t mode;
    uint64_t size;                 /* files; 0 otherwise */
    char sha256[LP_BLOB_ID_SIZE];  /* files; "" otherwise */
    char *target;                  /* symlinks; NULL otherwise */
} lp_manifest_entry;

typedef struct lp_manifest {
    lp_manifest_entry *entries;
    size_t count;
    size_t cap;
    bool finished; /* sorted and validated by lp_manifest_finish */
} lp_manifest;

/* "file", "symlink", "dir". */
const char *lp_entry_type_name(lp_entry_type t);

/* The normalised mode for `type` given any st_mode-like value. */
uint32_t lp_manifest_mode(lp_entry_type type, uint32_t mode);

/* Checks an entry path against the rules above (max_len 0 means
 * LP_MANIFEST_MAX_PATH).  LP_ERR_MALFORMED / LP_ERR_TOO_LARGE with a message
 * naming the path. */
lp_status lp_manifest_check_path(const char *path, size_t max_len, lp_error *err);
/* Checks a symlink target for the link at `path`: not empty, not absolute,
 * no NUL or control characters, and resolved lexically from the link's
 * folder it never leaves the tree (max_len 0: LP_MANIFEST_MAX_TARGET). */
lp_status lp_manifest_check_target(const char *path, const char *target, size_t max_len,
                                   lp_error *err);

/* An empty manifest (equivalent to zero-initialising it). */
void lp_manifest_init(lp_manifest *m);
void lp_manifest_free(lp_manifest *m);

/* Add entries (copies the strings; checks path and fields; the mode is
 * normalised).  Order does not matter; lp_manifest_finish sorts. */
lp_status lp_manifest_add_file(lp_manifest *m, const char *path, uint32_t mode, uint64_t size,
                               const char *sha256, lp_error *err);
lp_status lp_manifest_add_symlink(lp_manifest *m, const char *path, const char *target,
                                  lp_error *err);
lp_status lp_manifest_add_dir(lp_manifest *m, const char *path, lp_error *err);

/* Adds missing parent folders, sorts by path bytes and validates the whole:
 * unique paths ("duplicate path"), no entry below a file or symlink, no
 * symlink target that leaves the tree through another symlink.  Must be
 * called before to_json/find. */
lp_status lp_manifest_finish(lp_manifest *m, lp_error *err);

/* Canonical JSON of a finished manifest (new malloc'd NUL-terminated string;
 * *len excludes the NUL):
 *   {"entries":[{"mode":"0644","path":"a","sha256":"…","size":3,"type":"file"},
 *               {"path":"d","type":"dir"},
 *               {"path":"l","target":"a","type":"symlink"}],
 *    "manifest_version":1}                                                  */
lp_status lp_manifest_to_json(const lp_manifest *m, char **out, size_t *len, lp_error *err);
/* Parses JSON of that form strictly into *m (initialised here; freed on
 * failure): unknown or missing fields, wrong types, bad values, unsorted or
 * duplicate paths and anything the add functions refuse are errors
 * (LP_ERR_MALFORMED / LP_ERR_TOO_LARGE) naming the entry.  The input must be
 * in canonical order (sorted) but need not be canonical bytes. */
lp_status lp_manifest_from_json(const void *data, size_t len, lp_manifest *m, lp_error *err);

/* Sum of the sizes of the file entries. */
uint64_t lp_manifest_total_size(const lp_manifest *m);
/* The entry for `path` in a finished manifest, or NULL. */
const lp_manifest_entry *lp_manifest_find(const lp_manifest *m, const char *path);

/* ---- ingest ---------------------------------------------------------- */

/* Limits on one bundle.  A zero field means its default. */
typedef struct lp_ingest_limits {
    uint64_t max_entries;      /* entries of any type (default 100000) */
    uint64_t max_total_bytes;  /* sum of file sizes (default 4 GiB) */
    uint64_t max_file_bytes;   /* one file (default 2 GiB) */
    uint64_t max_ratio;        /* uncompressed bytes / archive bytes (default 200) */
    uint64_t ratio_min_bytes;  /* ratio checked past this many bytes (default 1 MiB) */
    size_t max_path_len;       /* bytes (default 1024) */
    size_t max_target_len;     /* bytes (default 1024) */
} lp_ingest_limits;

#define LP_INGEST_DEFAULT_MAX_ENTRIES 100000u
#define LP_INGEST_DEFAULT_MAX_TOTAL_BYTES (4ull << 30)
#define LP_INGEST_DEFAULT_MAX_FILE_BYTES (2ull << 30)
#define LP_INGEST_DEFAULT_MAX_RATIO 200u
#define LP_INGEST_DEFAULT_RATIO_MIN_BYTES (1ull << 20)
#define LP_INGEST_DEFAULT_MAX_PATH 1024u
#define LP_INGEST_DEFAULT_MAX_TARGET 1024u
/* Folder nesting below the root of a folder bundle. */
#define LP_INGEST_MAX_DEPTH 128

/* Fills *lim with the defaults. */
void lp_ingest_limits_default(lp_ingest_limits *lim);

typedef enum lp_ingest_kind {
    LP_INGEST_AUTO = 0,  /* folder, archive, or else a plain file */
    LP_INGEST_DIR = 1,
    LP_INGEST_ARCHIVE = 2,
    LP_INGEST_FILE = 3,
} lp_ingest_kind;

typedef struct lp_ingest_opts {
    lp_ingest_kind kind;            /* what `path` must be (AUTO: detect) */
    const char *file_name;          /* single file: entry name (NULL: basename) */
    const lp_ingest_limits *limits; /* NULL: defaults */
} lp_ingest_opts;

/* Ingests the bundle at `path` into `bs`: on success *m (initialised here)
 * holds the finished manifest, every file content is in the store and
 * *kind_out (may be NULL) says what `path` was.  On failure *m is empty and
 * the store is unchanged.  opts may be NULL (auto-detect, defaults).
 * Errors: LP_ERR_MALFORMED (an unsafe entry, a damaged archive, or a file
 * that is not an archive when kind is LP_INGEST_ARCHIVE), LP_ERR_TOO_LARGE
 * (a limit), LP_ERR_INVALID_ARG (path is not the kind asked for),
 * LP_ERR_NOT_FOUND, LP_ERR_IO; each message names the entry. */
lp_status lp_ingest_path(lp_blobstore *bs, const char *path, const lp_ingest_opts *opts,
                         lp_manifest *m, lp_ingest_kind *kind_out, lp_error *err);

#ifdef __cplusplus
}
#endif
#endif
