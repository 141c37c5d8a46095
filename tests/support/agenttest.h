/*
 * agenttest.h — fixtures for the updater's tests: releases described as a
 * small table of entries, stored as real blobs in a real blob store (the
 * "server side" of a test) with their real tree manifest; a blob source
 * that copies from that store into the staging path (and can be told to
 * deliver tampered content); and a check that an installed release folder
 * holds exactly what its manifest lists (types, modes, sizes, SHA-256,
 * symlink targets, no extra entries).
 *
 * Functions return 0 / a value on success and -1 / NULL on failure with a
 * message on stderr, so tests assert on them.
 */
#ifndef LP_AGENTTEST_H
#define LP_AGENTTEST_H

#include "livepush/blobstore.h"
#include "livepush/bundle.h"
#include "livepush/updater.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One entry of a release: a file (content set), a symlink (target set) or a
 * folder (neither).  mode: 0755 or 0644 for files (0 means 0644). */
typedef struct agt_entry {
    const char *path;
    const char *content;
    unsigned mode;
    const char *target;
} agt_entry;

typedef enum agt_tamper {
    AGT_TAMPER_NONE = 0,
    AGT_TAMPER_FLIP = 1,   /* same size, one byte changed */
    AGT_TAMPER_APPEND = 2, /* one byte more */
} agt_tamper;

/* The blob source of the tests (ctx of agt_fetch). */
typedef struct agt_source {
    lp_blobstore *bs;
    unsigned fetches;                /* blobs delivered so far */
    char tamper_sha[LP_BLOB_ID_SIZE]; /* blob to tamper with ("" none) */
    agt_tamper tamper;
} agt_source;

/* Puts the entries' contents into bs and builds the finished manifest *m
 * (initialised here).  0 or -1. */
int agt_make_release(lp_blobstore *bs, const agt_entry *entries, size_t n, lp_manifest *m);

/* An lp_blob_fetch_fn over an agt_source: copies blob `sha256` from the
 * store to dest_path (created 0600 with O_EXCL, fsync'd), tampering with it
 * when told to.  It does not check the size or hash itself. */
lp_status agt_fetch(void *ctx, const char *sha256, uint64_t size, const char *dest_path,
                    lp_error *err);

/* 0 if folder `dir` holds exactly the entries of m, with their modes and
 * content; -1 with the first difference on stderr. */
int agt_check_tree(const char *dir, const lp_manifest *m);

/* 0 if <root>/current points to releases/<id> and that folder matches m. */
int agt_check_current(const char *root, uint64_t id, const lp_manifest *m);

/* Number of entries in folder `dir` (not counting . and ..), -1 on error. */
int agt_count_entries(const char *dir);

/* An updater config for `root` with short hook limits for tests. */
lp_updater_config agt_config(const char *root);

/* Opens an updater on cfg, printing the error on failure (NULL). */
lp_updater *agt_open(const lp_updater_config *cfg);

/* Stages release `id` from m with the source and activates it: 0 / -1. */
int agt_install(lp_updater *u, const lp_manifest *m, uint64_t id, const char *version,
                agt_source *src);

/* Writes an executable shell script `name` in folder `dir`: 0 / -1. */
int agt_write_hook(const char *dir, const char *name, const char *body);

#endif
