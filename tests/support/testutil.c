/*
 * testutil.c — helpers for tests (see testutil.h).
 *
 * Reads and writes go through the library's own bounded read and atomic
 * write (core/file.h), so test fixtures are made the same way the product
 * makes files.  Recursive removal walks the tree depth-first with nftw
 * without following symbolic links, so a link inside a scratch folder can
 * never lead the removal outside it.
 */
#include "testutil.h"

#include "core/file.h"

#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#define READ_MAX (256u * 1024 * 1024)

char *lp_test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    size_t n = strlen(base) + strlen(tag) + 16;
    char *path = malloc(n);
    if (!path)
        return NULL;
    snprintf(path, n, "%s/lp-%s-XXXXXX", base, tag);
    if (!mkdtemp(path)) {
        fprintf(stderr, "mkdtemp %s: %s\n", path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    if (remove(path) != 0) {
        fprintf(stderr, "remove %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int lp_test_rmtree(const char *path)
{
    if (!path || !*path || strcmp(path, "/") == 0)
        return -1;
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? 0 : -1;
    return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

uint8_t *lp_test_read_file(const char *path, size_t *len)
{
    uint8_t *data;
    size_t n;
    lp_error err;
    if (lp_file_read(path, READ_MAX, &data, &n, &err) != LP_OK)
        return NULL;
    if (len)
        *len = n;
    return data;
}

int lp_test_write_file(const char *path, const void *data, size_t len)
{
    lp_error err;
    char *parent = strdup(path);
    if (!parent)
        return -1;
    char *slash = strrchr(parent, '/');
    lp_status st = LP_OK;
    if (slash && slash != parent) {
        *slash = '\0';
        st = lp_file_mkdirs(parent, 0755, &err);
    }
    free(parent);
    if (!st)
        st = lp_file_write_atomic(path, data, len, 0644, &err);
    if (st) {
        fprintf(stderr, "writing %s: %s\n", path, err.msg);
        return -1;
    }
    return 0;
}

int lp_test_write_str(const char *path, const char *text)
{
    return lp_test_write_file(path, text, strlen(text));
}

char *lp_test_join(const char *a, const char *b)
{
    return lp_path_join(a, b);
}

const char *lp_test_getenv_or_skip(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "%s is not set: skipping\n", name);
        skip();
    }
    return v;
}

const char *lp_test_vectors_dir(void)
{
    const char *dir = lp_test_getenv_or_skip("LP_TUF_VECTORS");
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "LP_TUF_VECTORS=%s is not a folder: skipping\n", dir);
        skip();
    }
    return dir;
}
