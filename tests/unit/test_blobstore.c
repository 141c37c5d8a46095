/*
 * test_blobstore.c — the content-addressed blob store on a real folder:
 * put/has/path/size/open/remove, deduplication, expected-hash refusal,
 * size limits, ID validation, staging, cleanup of tmp/ on open, and
 * streaming a large file in constant memory.
 */
#include "livepush/blobstore.h"
#include "livepush/hash.h"
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

/* sha256("hello") */
#define HELLO_ID "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

typedef struct fixture {
    char *dir;
    char *root;
    lp_blobstore *bs;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = lp_test_tmpdir("blob");
    f->root = lp_test_join(f->dir, "store");
    lp_error err;
    if (lp_blobstore_open(f->root, &f->bs, &err) != LP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    lp_blobstore_close(f->bs);
    lp_test_rmtree(f->dir);
    free(f->root);
    free(f->dir);
    free(f);
    return 0;
}

/* Number of entries in a folder (without . and ..), -1 if it cannot be read. */
static int count_in(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static int tmp_count(const fixture *f)
{
    char *t = lp_test_join(f->root, "tmp");
    int n = count_in(t);
    free(t);
    return n;
}

static void test_put_and_read(void **state)
{
    fixture *f = *state;
    lp_error err;
    char id[LP_BLOB_ID_SIZE];
    assert_int_equal(lp_blobstore_put_mem(f->bs, "hello", 5, NULL, id, &err), LP_OK);
    assert_string_equal(id, HELLO_ID);
    assert_true(lp_blobstore_has(f->bs, HELLO_ID));

    char *path = NULL;
    assert_int_equal(lp_blobstore_path_of(f->bs, HELLO_ID, &path, &err), LP_OK);
    char *expect = malloc(strlen(f->root) + 80);
    sprintf(expect, "%s/2c/%s", f->root, HELLO_ID);
    assert_string_equal(path, expect);
    size_t len;
    uint8_t *data = lp_test_read_file(path, &len);
    assert_non_null(data);
    assert_int_equal(len, 5);
    assert_memory_equal(data, "hello", 5);
    free(data);
    free(path);
    free(expect);

    uint64_t size = 0;
    assert_int_equal(lp_blobstore_size(f->bs, HELLO_ID, &size, &err), LP_OK);
    assert_int_equal(size, 5);
    int fd = -1;
    assert_int_equal(lp_blobstore_open_blob(f->bs, HELLO_ID, &fd, &size, &err), LP_OK);
    char buf[8] = {0};
    assert_int_equal(read(fd, buf, sizeof buf), 5);
    assert_string_equal(buf, "hello");
    close(fd);

    /* The same content again: same ID, stored once, no temporary left. */
    assert_int_equal(lp_blobstore_put_mem(f->bs, "hello", 5, HELLO_ID, id, &err), LP_OK);
    char *pre = lp_test_join(f->root, "2c");
    assert_int_equal(count_in(pre), 1);
    free(pre);
    assert_int_equal(tmp_count(f), 0);

    /* An unknown blob. */
    const char *other = "0000000000000000000000000000000000000000000000000000000000000000";
    assert_false(lp_blobstore_has(f->bs, other));
    assert_int_equal(lp_blobstore_path_of(f->bs, other, &path, &err), LP_ERR_NOT_FOUND);
    assert_int_equal(lp_blobstore_open_blob(f->bs, other, &fd, NULL, &err), LP_ERR_NOT_FOUND);
    assert_int_equal(fd, -1);

    /* Empty content is a blob too. */
    assert_int_equal(lp_blobstore_put_mem(f->bs, "", 0, NULL, id, &err), LP_OK);
    assert_string_equal(id, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    /* Remove, then it is gone; removing again is NOT_FOUND. */
    assert_int_equal(lp_blobstore_remove(f->bs, HELLO_ID, &err), LP_OK);
    assert_false(lp_blobstore_has(f->bs, HELLO_ID));
    assert_int_equal(lp_blobstore_remove(f->bs, HELLO_ID, &err), LP_ERR_NOT_FOUND);
}

static void test_hash_mismatch(void **state)
{
    fixture *f = *state;
    lp_error err;
    char id[LP_BLOB_ID_SIZE];
    const char *wrong = "1111111111111111111111111111111111111111111111111111111111111111";
    assert_int_equal(lp_blobstore_put_mem(f->bs, "hello", 5, wrong, id, &err),
                     LP_ERR_HASH_MISMATCH);
    assert_non_null(strstr(err.msg, HELLO_ID));
    assert_non_null(strstr(err.msg, wrong));
    assert_false(lp_blobstore_has(f->bs, HELLO_ID));
    assert_false(lp_blobstore_has(f->bs, wrong));
    assert_int_equal(tmp_count(f), 0);
    assert_int_equal(count_in(f->root), 1); /* only tmp/ */

    /* A malformed expected hash is an argument error, also nothing stored. */
    assert_int_equal(lp_blobstore_put_mem(f->bs, "hello", 5, "2CF24DBA", id, &err),
                     LP_ERR_INVALID_ARG);
    assert_false(lp_blobstore_has(f->bs, HELLO_ID));

    /* Streaming from a file with the wrong hash. */
    char *p = lp_test_join(f->dir, "in.txt");
    assert_int_equal(lp_test_write_str(p, "hello"), 0);
    assert_int_equal(lp_blobstore_put_file(f->bs, p, 0, wrong, id, NULL, &err),
                     LP_ERR_HASH_MISMATCH);
    assert_false(lp_blobstore_has(f->bs, HELLO_ID));
    uint64_t size = 0;
    assert_int_equal(lp_blobstore_put_file(f->bs, p, 0, HELLO_ID, id, &size, &err), LP_OK);
    assert_int_equal(size, 5);
    assert_true(lp_blobstore_has(f->bs, HELLO_ID));
    assert_int_equal(tmp_count(f), 0);
    free(p);
}

static void test_ids_validated(void **state)
{
    fixture *f = *state;
    lp_error err;
    char *path = NULL;
    const char *bad[] = {
        "",
        "../../../../etc/passwd",
        "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824", /* upper case */
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b982",  /* 63 */
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b98244", /* 65 */
        "2c/24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b982g",
    };
    assert_int_equal(lp_blobstore_put_mem(f->bs, "hello", 5, NULL, NULL, &err), LP_OK);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_false(lp_blob_id_valid(bad[i]));
        assert_false(lp_blobstore_has(f->bs, bad[i]));
        assert_int_equal(lp_blobstore_path_of(f->bs, bad[i], &path, &err), LP_ERR_INVALID_ARG);
        assert_int_equal(lp_blobstore_remove(f->bs, bad[i], &err), LP_ERR_INVALID_ARG);
        int fd;
        assert_int_equal(lp_blobstore_open_blob(f->bs, bad[i], &fd, NULL, &err),
                         LP_ERR_INVALID_ARG);
    }
    assert_false(lp_blob_id_valid(NULL));
    assert_true(lp_blob_id_valid(HELLO_ID));
    assert_true(lp_blobstore_has(f->bs, HELLO_ID));
}

static void test_size_limit(void **state)
{
    fixture *f = *state;
    lp_error err;
    char *p = lp_test_join(f->dir, "big.bin");
    char data[5000];
    memset(data, 'x', sizeof data);
    assert_int_equal(lp_test_write_file(p, data, sizeof data), 0);
    char id[LP_BLOB_ID_SIZE];
    assert_int_equal(lp_blobstore_put_file(f->bs, p, 4999, NULL, id, NULL, &err),
                     LP_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "4999"));
    assert_int_equal(count_in(f->root), 1);
    assert_int_equal(tmp_count(f), 0);
    assert_int_equal(lp_blobstore_put_file(f->bs, p, 5000, NULL, id, NULL, &err), LP_OK);
    assert_true(lp_blobstore_has(f->bs, id));
    char *missing = lp_test_join(f->dir, "missing");
    assert_int_equal(lp_blobstore_put_file(f->bs, missing, 0, NULL, id, NULL, &err),
                     LP_ERR_NOT_FOUND);
    free(missing);
    free(p);
}

static void test_open_cleans_tmp(void **state)
{
    fixture *f = *state;
    lp_error err;
    /* What a crash leaves: a half-written blob and a half-filled stage. */
    lp_blob_writer *w;
    assert_int_equal(lp_blobstore_writer(f->bs, &w, &err), LP_OK);
    assert_int_equal(lp_blob_writer_write(w, "partial", 7, &err), LP_OK);
    lp_blob_stage *stage;
    assert_int_equal(lp_blob_stage_open(f->bs, &stage, &err), LP_OK);
    lp_blob_writer *sw;
    assert_int_equal(lp_blob_stage_writer(stage, &sw, &err), LP_OK);
    assert_int_equal(lp_blob_writer_write(sw, "hello", 5, &err), LP_OK);
    assert_int_equal(lp_blob_writer_commit(sw, NULL, NULL, NULL, &err), LP_OK);
    char *stray = lp_test_join(f->root, "tmp/part-leftover");
    assert_int_equal(lp_test_write_str(stray, "x"), 0);
    assert_int_equal(tmp_count(f), 3);
    assert_int_equal(lp_blobstore_put_mem(f->bs, "kept", 4, NULL, NULL, &err), LP_OK);

    /* "Restart": a second open of the same folder empties tmp/. */
    lp_blobstore *again;
    assert_int_equal(lp_blobstore_open(f->root, &again, &err), LP_OK);
    assert_int_equal(tmp_count(f), 0);
    assert_false(lp_blobstore_has(again, HELLO_ID));
    char id[LP_BLOB_ID_SIZE];
    assert_int_equal(lp_blobstore_put_mem(again, "kept", 4, NULL, id, &err), LP_OK);
    assert_true(lp_blobstore_has(again, id));
    lp_blobstore_close(again);
    /* The handles of the crashed run are only freed. */
    lp_blob_writer_abort(w);
    lp_blob_stage_discard(stage);
    free(stray);
}

static void test_stage(void **state)
{
    fixture *f = *state;
    lp_error err;
    lp_blob_stage *stage;
    char id[LP_BLOB_ID_SIZE];
    assert_int_equal(lp_blob_stage_open(f->bs, &stage, &err), LP_OK);
    for (int i = 0; i < 3; i++) {
        lp_blob_writer *w;
        assert_int_equal(lp_blob_stage_writer(stage, &w, &err), LP_OK);
        assert_int_equal(lp_blob_writer_write(w, "hel", 3, &err), LP_OK);
        assert_int_equal(lp_blob_writer_write(w, "lo", 2, &err), LP_OK);
        assert_int_equal(lp_blob_writer_size(w), 5);
        assert_int_equal(lp_blob_writer_commit(w, NULL, id, NULL, &err), LP_OK);
        assert_string_equal(id, HELLO_ID);
    }
    lp_blob_writer *w;
    assert_int_equal(lp_blob_stage_writer(stage, &w, &err), LP_OK);
    assert_int_equal(lp_blob_writer_write(w, "other", 5, &err), LP_OK);
    assert_int_equal(lp_blob_writer_commit(w, NULL, id, NULL, &err), LP_OK);
    assert_int_equal(lp_blob_stage_count(stage), 2);
    /* Staged blobs are not in the store yet. */
    assert_false(lp_blobstore_has(f->bs, HELLO_ID));
    assert_false(lp_blobstore_has(f->bs, id));
    assert_int_equal(lp_blob_stage_commit(stage, &err), LP_OK);
    assert_true(lp_blobstore_has(f->bs, HELLO_ID));
    assert_true(lp_blobstore_has(f->bs, id));
    assert_int_equal(tmp_count(f), 0);

    /* A discarded stage leaves nothing. */
    assert_int_equal(lp_blob_stage_open(f->bs, &stage, &err), LP_OK);
    assert_int_equal(lp_blob_stage_writer(stage, &w, &err), LP_OK);
    assert_int_equal(lp_blob_writer_write(w, "never", 5, &err), LP_OK);
    assert_int_equal(lp_blob_writer_commit(w, NULL, id, NULL, &err), LP_OK);
    lp_blob_stage_discard(stage);
    assert_false(lp_blobstore_has(f->bs, id));
    assert_int_equal(tmp_count(f), 0);

    /* An aborted writer leaves nothing either. */
    assert_int_equal(lp_blobstore_writer(f->bs, &w, &err), LP_OK);
    assert_int_equal(lp_blob_writer_write(w, "never", 5, &err), LP_OK);
    assert_int_equal(tmp_count(f), 1);
    lp_blob_writer_abort(w);
    assert_int_equal(tmp_count(f), 0);
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_big_file_streamed(void **state)
{
    fixture *f = *state;
    lp_error err;
    char *p = lp_test_join(f->dir, "sparse.bin");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "end", 3, 64l * 1024 * 1024 - 3), 3);
    close(fd);
    uint8_t digest[LP_HASH_MAX_LEN];
    uint64_t fsize = 0;
    assert_int_equal(lp_hash_file(LP_HASH_SHA256, p, digest, &fsize, &err), LP_OK);
    char expect[LP_BLOB_ID_SIZE];
    lp_hex_encode(digest, LP_SHA256_LEN, expect);

    long before = maxrss_kb();
    char id[LP_BLOB_ID_SIZE];
    uint64_t size = 0;
    assert_int_equal(lp_blobstore_put_file(f->bs, p, 0, expect, id, &size, &err), LP_OK);
    long grew = maxrss_kb() - before;
    assert_int_equal(size, 64ull * 1024 * 1024);
    assert_string_equal(id, expect);
    assert_true(grew < 16 * 1024);
    uint64_t stored = 0;
    assert_int_equal(lp_blobstore_size(f->bs, id, &stored, &err), LP_OK);
    assert_int_equal(stored, size);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_and_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_validated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_cleans_tmp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_file_streamed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
