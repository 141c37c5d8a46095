/*
 * test_core.c — errors, buffers, atomic files and timestamps.
 */
#include "core/buf.h"
#include "core/file.h"
#include "core/timeutil.h"
#include "livepush/error.h"
#include "livepush/tuf_repo.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

static void test_error_messages(void **state)
{
    (void)state;
    lp_error err;
    lp_error_clear(&err);
    assert_int_equal(err.code, LP_OK);
    assert_int_equal(lp_error_set(&err, LP_ERR_IO, "open %s: %s", "x", "denied"), LP_ERR_IO);
    assert_string_equal(err.msg, "open x: denied");
    assert_int_equal(lp_error_prefix(&err, LP_ERR_IO, "loading %d", 3), LP_ERR_IO);
    assert_string_equal(err.msg, "loading 3: open x: denied");
    /* NULL error objects are allowed everywhere. */
    assert_int_equal(lp_error_set(NULL, LP_ERR_ROLLBACK, "x"), LP_ERR_ROLLBACK);
    assert_int_equal(lp_error_prefix(NULL, LP_ERR_EXPIRED, "x"), LP_ERR_EXPIRED);
    assert_string_equal(lp_status_name(LP_ERR_BAD_SIGNATURE), "bad_signature");
    assert_string_equal(lp_status_name((lp_status)999), "unknown");
    /* Long messages are truncated, never overflow. */
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    lp_error_set(&err, LP_ERR_IO, "%s", big);
    assert_int_equal(strlen(err.msg), LP_ERROR_MSG_MAX - 1);
    lp_error_prefix(&err, LP_ERR_IO, "%s", big);
    assert_int_equal(strlen(err.msg), LP_ERROR_MSG_MAX - 1);
}

static void test_buf_bounds(void **state)
{
    (void)state;
    lp_buf b;
    lp_buf_init(&b, 10);
    lp_error err;
    assert_int_equal(lp_buf_append(&b, "hello", 5, &err), LP_OK);
    assert_int_equal(lp_buf_printf(&b, &err, "%d", 1234), LP_OK);
    assert_string_equal((char *)b.data, "hello1234");
    assert_int_equal(lp_buf_append(&b, "xy", 2, &err), LP_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "limit of 10 bytes"));
    assert_int_equal(b.len, 9); /* unchanged on failure */
    size_t len;
    uint8_t *p = lp_buf_steal(&b, &len);
    assert_int_equal(len, 9);
    free(p);
    assert_null(b.data);
    lp_buf_free(&b);
}

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lp-core-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_file_atomic(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/a.json", tmpdir);
    lp_error err;
    assert_int_equal(lp_file_write_atomic(path, "first", 5, 0600, &err), LP_OK);
    assert_int_equal(lp_file_write_atomic(path, "second", 6, 0600, &err), LP_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(count_entries(tmpdir), 1); /* no temporary file left */
    uint8_t *data;
    size_t len;
    assert_int_equal(lp_file_read(path, 100, &data, &len, &err), LP_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(data, "second", 6);
    free(data);
    assert_int_equal(lp_file_read(path, 5, &data, &len, &err), LP_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "exceeds the limit"));
    char missing[128];
    snprintf(missing, sizeof missing, "%s/none", tmpdir);
    assert_int_equal(lp_file_read(missing, 5, &data, &len, &err), LP_ERR_NOT_FOUND);
    assert_int_equal(lp_file_read(tmpdir, 5, &data, &len, &err), LP_ERR_IO);
    /* Writing into a missing folder fails cleanly. */
    char bad[160];
    snprintf(bad, sizeof bad, "%s/no/such/x", tmpdir);
    assert_int_equal(lp_file_write_atomic(bad, "x", 1, 0644, &err), LP_ERR_IO);
    char deep[160];
    snprintf(deep, sizeof deep, "%s/d1/d2/d3", tmpdir);
    assert_int_equal(lp_file_mkdirs(deep, 0755, &err), LP_OK);
    assert_int_equal(lp_file_mkdirs(deep, 0755, &err), LP_OK);
    assert_int_equal(lp_file_mkdirs(path, 0755, &err), LP_ERR_IO);
    char *j = lp_path_join("a/", "/b");
    assert_string_equal(j, "a/b");
    free(j);
}

static void test_time(void **state)
{
    (void)state;
    int64_t t;
    lp_error err;
    assert_int_equal(lp_time_parse("1970-01-01T00:00:00Z", &t, &err), LP_OK);
    assert_int_equal(t, 0);
    assert_int_equal(lp_time_parse("2099-01-01T00:00:00Z", &t, &err), LP_OK);
    assert_int_equal(t, 4070908800LL);
    assert_int_equal(lp_time_parse("2000-02-29T12:34:56Z", &t, &err), LP_OK);
    char buf[21];
    lp_time_format(t, buf);
    assert_string_equal(buf, "2000-02-29T12:34:56Z");
    lp_time_format(4070908800LL, buf);
    assert_string_equal(buf, "2099-01-01T00:00:00Z");
    const char *bad[] = {"2001-02-29T00:00:00Z", "2001-13-01T00:00:00Z", "2001-01-01T24:00:00Z",
                         "2001-01-01T00:00:00",  "2001-01-01 00:00:00Z", "2001-01-01T00:00:00+01:00",
                         "2001-1-01T00:00:00Z",  "",                     "2001-01-01T00:00:00.5Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(lp_time_parse(bad[i], &t, &err), LP_ERR_MALFORMED);
        assert_non_null(strstr(err.msg, "timestamp"));
    }
}

static void test_path_match(void **state)
{
    (void)state;
    assert_true(lp_tuf_path_match("apps/*", "apps/tool"));
    assert_false(lp_tuf_path_match("apps/*", "apps/canary/tool"));
    assert_true(lp_tuf_path_match("apps/*/*", "apps/canary/tool"));
    assert_true(lp_tuf_path_match("*", "file.txt"));
    assert_false(lp_tuf_path_match("*", "dir/file.txt"));
    assert_true(lp_tuf_path_match("*.tar.gz", "app-1.tar.gz"));
    assert_false(lp_tuf_path_match("*.tar.gz", "app-1.zip"));
    assert_true(lp_tuf_path_match("file?.txt", "file1.txt"));
    assert_true(lp_tuf_path_match("file[0-9].txt", "file7.txt"));
    assert_false(lp_tuf_path_match("file[!0-9].txt", "file7.txt"));
    assert_false(lp_tuf_path_match("a/b", "a/b/"));
    assert_true(lp_tuf_path_match("a\\b", "a\\b"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_buf_bounds),
        cmocka_unit_test_setup_teardown(test_file_atomic, setup_dir, teardown_dir),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_path_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
