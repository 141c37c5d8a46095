/*
 * testutil.h — small helpers shared by the tests: scratch folders, whole-file
 * reads and writes, path joining, and skipping a test when an environment
 * variable it needs is not set.
 *
 * Functions that return a string or buffer return a new malloc'd one (the
 * test frees it), or NULL on failure, so a test can assert on the result.
 */
#ifndef LP_TESTUTIL_H
#define LP_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Creates a new empty folder "$TMPDIR/lp-<tag>-XXXXXX" ($TMPDIR unset or
 * empty: /tmp).  Returns its path, or NULL. */
char *lp_test_tmpdir(const char *tag);

/* Removes `path` and everything below it; symbolic links are removed, never
 * followed.  0 on success (also when path does not exist), -1 otherwise.
 * Refuses an empty path and "/". */
int lp_test_rmtree(const char *path);

/* Reads a whole file (at most 256 MiB) into a NUL-terminated buffer; *len
 * (may be NULL) gets its length without the NUL.  NULL on failure. */
uint8_t *lp_test_read_file(const char *path, size_t *len);

/* Writes `len` bytes to `path` atomically (mode 0644), creating missing
 * parent folders.  0 on success, -1 (message on stderr) otherwise. */
int lp_test_write_file(const char *path, const void *data, size_t len);
/* The same for a C string (without its NUL). */
int lp_test_write_str(const char *path, const char *text);

/* "a/b" with exactly one '/' between the parts. */
char *lp_test_join(const char *a, const char *b);

/* The value of environment variable `name`; if it is unset or empty the
 * calling cmocka test is skipped (cmocka's skip(), which does not return). */
const char *lp_test_getenv_or_skip(const char *name);

/* LP_TUF_VECTORS (the folder of independent TUF test vectors), or skips the
 * calling test when it is not set or not a folder. */
const char *lp_test_vectors_dir(void);

#endif
