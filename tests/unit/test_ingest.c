/*
 * test_ingest.c — bundles into manifests and blobs, with real archives.
 *
 * The same tree is ingested as a folder and as tar, tar.gz, tar.xz and zip
 * archives made by the `tar` and `zip` commands, and must give the same
 * manifest bytes.  Hostile archives that those tools refuse to make
 * (absolute names, '..', device nodes, fifos, escaping symlinks, hard links
 * to outside, duplicates, a compression bomb, too many entries, oversized
 * files) are written with libarchive's writer; each must be refused with
 * the entry named and the blob store's listing unchanged.  Also: single
 * plain files, deduplication, hard links inside an archive, refusals in a
 * folder, and a 64 MiB file ingested in bounded memory.
 */
#include "livepush/blobstore.h"
#include "livepush/bundle.h"
#include "livepush/hash.h"
#include "testutil.h"

#include <archive.h>
#include <archive_entry.h>
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

typedef struct fixture {
    char *dir;
    char *root;
    lp_blobstore *bs;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = lp_test_tmpdir("ingest");
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

/* ---- helpers ------------------------------------------------------------ */

/* Collects "path size" lines (size -1 for folders) for everything below
 * dir; listing() sorts them, as readdir order is not stable. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_rec(const char *dir, const char *rel, char ***names, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *full = lp_test_join(dir, de->d_name);
        char *r = *rel ? lp_test_join(rel, de->d_name) : strdup(de->d_name);
        struct stat sb;
        lstat(full, &sb);
        char *line = malloc(strlen(r) + 32);
        sprintf(line, "%s %lld", r, S_ISDIR(sb.st_mode) ? -1LL : (long long)sb.st_size);
        *names = realloc(*names, (*n + 1) * sizeof **names);
        (*names)[(*n)++] = line;
        if (S_ISDIR(sb.st_mode))
            list_rec(full, r, names, n);
        free(full);
        free(r);
    }
    closedir(d);
}

/* The store's whole listing as one string. */
static char *listing(const fixture *f)
{
    char **names = NULL;
    size_t n = 0;
    list_rec(f->root, "", &names, &n);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(names[i]) + 1;
    char *s = calloc(1, total);
    for (size_t i = 0; i < n; i++) {
        strcat(s, names[i]);
        strcat(s, "\n");
        free(names[i]);
    }
    free(names);
    return s;
}

/* Number of blobs in the store: listing lines "xx/<64 hex> <size>". */
static int blob_count(const fixture *f)
{
    char *l = listing(f);
    int n = 0;
    for (char *p = l; *p; p = strchr(p, '\n') + 1) {
        char *sp = strchr(p, ' ');
        if (sp - p == 3 + LP_BLOB_ID_HEX && p[2] == '/') {
            char id[LP_BLOB_ID_SIZE];
            memcpy(id, p + 3, LP_BLOB_ID_HEX);
            id[LP_BLOB_ID_HEX] = 0;
            n += lp_blob_id_valid(id) && strncmp(p, id, 2) == 0;
        }
    }
    free(l);
    return n;
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* One entry for the libarchive writer. type: 'f' file, 'd' dir, 'l'
 * symlink, 'h' hard link, 'c' char device, 'p' fifo (tar cannot hold sockets). */
typedef struct spec {
    const char *name;
    char type;
    const char *data; /* file content, or link target */
} spec;

static void write_archive(const char *path, const spec *s, size_t n, int gzip)
{
    struct archive *a = archive_write_new();
    assert_non_null(a);
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    if (gzip)
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, s[i].name);
        archive_entry_set_perm(e, 0644);
        size_t len = 0;
        switch (s[i].type) {
        case 'f':
            len = strlen(s[i].data);
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)len);
            break;
        case 'd': archive_entry_set_filetype(e, AE_IFDIR); break;
        case 'l':
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, s[i].data);
            break;
        case 'h':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, s[i].data);
            archive_entry_set_size(e, 0);
            break;
        case 'c':
            archive_entry_set_filetype(e, AE_IFCHR);
            archive_entry_set_rdevmajor(e, 1);
            archive_entry_set_rdevminor(e, 3);
            break;
        case 'p': archive_entry_set_filetype(e, AE_IFIFO); break;
        }
        assert_true(archive_write_header(a, e) >= ARCHIVE_WARN);
        if (len)
            assert_int_equal(archive_write_data(a, s[i].data, len), (la_ssize_t)len);
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* Makes the reference tree under <dir>/tree. */
static char *make_tree(const fixture *f)
{
    char *t = lp_test_join(f->dir, "tree");
    assert_int_equal(run("mkdir -p '%s/bin' '%s/lib/sub' '%s/empty' && "
                         "printf '#!/bin/sh\\necho hi\\n' > '%s/bin/app' && chmod 0775 '%s/bin/app' && "
                         "printf 'read me\\n' > '%s/README' && chmod 0600 '%s/README' && "
                         "head -c 300000 /dev/urandom > '%s/lib/sub/data.bin' && "
                         "cp '%s/README' '%s/lib/copy' && "
                         "ln -s ../README '%s/lib/readme-link' && ln -s sub/data.bin '%s/lib/cur' && "
                         "ln '%s/bin/app' '%s/lib/hard-app'",
                         t, t, t, t, t, t, t, t, t, t, t, t, t, t),
                     0);
    return t;
}

static char *ingest_json(fixture *f, const char *path, lp_ingest_kind want_kind)
{
    lp_manifest m;
    lp_error err;
    lp_ingest_kind kind;
    lp_status st = lp_ingest_path(f->bs, path, NULL, &m, &kind, &err);
    if (st)
        fail_msg("%s: %s", path, err.msg);
    assert_int_equal(kind, want_kind);
    char *json;
    size_t len;
    assert_int_equal(lp_manifest_to_json(&m, &json, &len, &err), LP_OK);
    /* Every file's blob is in the store with the listed size. */
    for (size_t i = 0; i < m.count; i++) {
        if (m.entries[i].type != LP_ENTRY_FILE)
            continue;
        uint64_t size;
        assert_int_equal(lp_blobstore_size(f->bs, m.entries[i].sha256, &size, &err), LP_OK);
        assert_int_equal(size, m.entries[i].size);
    }
    lp_manifest_free(&m);
    return json;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_formats_same_manifest(void **state)
{
    fixture *f = *state;
    char *t = make_tree(f);
    char *ref = ingest_json(f, t, LP_INGEST_DIR);
    /* 5 distinct contents: app, README (= lib/copy), data.bin. */
    assert_int_equal(blob_count(f), 3);
    assert_non_null(strstr(ref, "{\"mode\":\"0755\",\"path\":\"bin/app\""));
    assert_non_null(strstr(ref, "{\"mode\":\"0644\",\"path\":\"README\""));
    assert_non_null(strstr(ref, "{\"path\":\"empty\",\"type\":\"dir\"}"));
    assert_non_null(
        strstr(ref, "{\"path\":\"lib/readme-link\",\"target\":\"../README\",\"type\":\"symlink\"}"));
    char *before = listing(f);

    const char *formats[] = {"b.tar", "b.tar.gz", "b.tar.xz", "b-names.tar.bz2", "b.zip"};
    for (size_t i = 0; i < sizeof formats / sizeof *formats; i++) {
        const char *d = f->dir, *name = formats[i];
        int rc = 0;
        switch (i) {
        case 0: rc = run("tar -cf '%s/%s' -C '%s' .", d, name, t); break;
        case 1: rc = run("tar -czf '%s/%s' -C '%s' .", d, name, t); break;
        case 2:
            if (run("command -v xz >/dev/null") != 0)
                continue;
            rc = run("tar -cJf '%s/%s' -C '%s' .", d, name, t);
            break;
        case 3: rc = run("tar -cjf '%s/%s' -C '%s' README bin empty lib", d, name, t); break;
        case 4: rc = run("cd '%s' && zip -qry '%s/%s' .", t, d, name); break;
        }
        assert_int_equal(rc, 0);
        char *p = lp_test_join(d, name);
        char *json = ingest_json(f, p, LP_INGEST_ARCHIVE);
        if (strcmp(json, ref) != 0)
            fail_msg("%s gives a different manifest:\n%s\nwant:\n%s", name, json, ref);
        free(json);
        free(p);
    }
    /* tar stored lib/hard-app as a hard link; it reads as a copy of bin/app. */
    assert_non_null(strstr(ref, "{\"mode\":\"0755\",\"path\":\"lib/hard-app\""));

    /* A damaged archive is refused, not taken for a plain file. */
    char *gz = lp_test_join(f->dir, "b.tar.gz");
    struct stat sb;
    assert_int_equal(stat(gz, &sb), 0);
    assert_int_equal(truncate(gz, sb.st_size / 2), 0);
    lp_manifest m;
    lp_error err;
    assert_int_equal(lp_ingest_path(f->bs, gz, NULL, &m, NULL, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "b.tar.gz"));
    free(gz);

    /* Same content: nothing new in the store. */
    char *after = listing(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(ref);
    free(t);
}

static void test_single_file(void **state)
{
    fixture *f = *state;
    lp_error err;
    char *p = lp_test_join(f->dir, "notes.txt");
    assert_int_equal(lp_test_write_str(p, "just some text\nnot an archive\n"), 0);
    char *json = ingest_json(f, p, LP_INGEST_FILE);
    assert_non_null(strstr(json, "\"path\":\"notes.txt\""));
    assert_non_null(strstr(json, "\"size\":30"));
    free(json);

    /* A given name; an empty file. */
    lp_ingest_opts o = {.kind = LP_INGEST_AUTO, .file_name = "renamed.bin", .limits = NULL};
    lp_manifest m;
    lp_ingest_kind kind;
    assert_int_equal(lp_ingest_path(f->bs, p, &o, &m, &kind, &err), LP_OK);
    assert_int_equal(m.count, 1);
    assert_string_equal(m.entries[0].path, "renamed.bin");
    lp_manifest_free(&m);
    char *empty = lp_test_join(f->dir, "empty.dat");
    assert_int_equal(lp_test_write_str(empty, ""), 0);
    json = ingest_json(f, empty, LP_INGEST_FILE);
    assert_non_null(strstr(json, "\"size\":0"));
    free(json);

    /* A tar forced to be a plain file is stored as one blob. */
    char *tar = lp_test_join(f->dir, "x.tar");
    assert_int_equal(run("tar -cf '%s' -C '%s' notes.txt", tar, f->dir), 0);
    o.kind = LP_INGEST_FILE;
    o.file_name = NULL;
    assert_int_equal(lp_ingest_path(f->bs, tar, &o, &m, &kind, &err), LP_OK);
    assert_string_equal(m.entries[0].path, "x.tar");
    assert_int_equal(m.entries[0].size, 10240);
    lp_manifest_free(&m);

    /* Plain text that must be an archive is refused; so is a file as a folder. */
    char *before = listing(f);
    o.kind = LP_INGEST_ARCHIVE;
    assert_int_equal(lp_ingest_path(f->bs, p, &o, &m, &kind, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "not an archive"));
    o.kind = LP_INGEST_DIR;
    assert_int_equal(lp_ingest_path(f->bs, p, &o, &m, &kind, &err), LP_ERR_INVALID_ARG);
    o.kind = LP_INGEST_FILE;
    o.file_name = "a/b";
    assert_int_equal(lp_ingest_path(f->bs, p, &o, &m, &kind, &err), LP_ERR_INVALID_ARG);
    char *missing = lp_test_join(f->dir, "missing");
    assert_int_equal(lp_ingest_path(f->bs, missing, NULL, &m, &kind, &err), LP_ERR_NOT_FOUND);
    char *after = listing(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(missing);
    free(tar);
    free(empty);
    free(p);
}

static void test_hard_links_inside(void **state)
{
    fixture *f = *state;
    lp_error err;
    char *p = lp_test_join(f->dir, "links.tar");
    const spec s[] = {
        {"./a", 'f', "shared content"},
        {"b", 'h', "a"},
        {"d", 'd', NULL},
        {"d/c", 'h', "./a"},
    };
    write_archive(p, s, 4, 0);
    lp_manifest m;
    assert_int_equal(lp_ingest_path(f->bs, p, NULL, &m, NULL, &err), LP_OK);
    assert_int_equal(m.count, 4);
    const lp_manifest_entry *a = lp_manifest_find(&m, "a"), *b = lp_manifest_find(&m, "b"),
                            *c = lp_manifest_find(&m, "d/c");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_string_equal(a->sha256, b->sha256);
    assert_string_equal(a->sha256, c->sha256);
    assert_int_equal(b->size, 14);
    assert_int_equal(blob_count(f), 1);
    lp_manifest_free(&m);
    free(p);
}

typedef struct refusal {
    const char *what;
    spec entries[4];
    size_t n;
    lp_status st;
    const char *msg;
} refusal;

static void test_hostile_archives(void **state)
{
    fixture *f = *state;
    /* Something already in the store, to see that it stays. */
    lp_error err;
    assert_int_equal(lp_blobstore_put_mem(f->bs, "old", 3, NULL, NULL, &err), LP_OK);
    const refusal cases[] = {
        {"absolute", {{"ok", 'f', "fine"}, {"/etc/passwd", 'f', "x"}}, 2, LP_ERR_MALFORMED,
         "entry \"/etc/passwd\": absolute path"},
        {"dotdot", {{"ok", 'f', "fine"}, {"a/../../x", 'f', "x"}}, 2, LP_ERR_MALFORMED,
         "entry \"a/../../x\": '..' in path"},
        {"device", {{"ok", 'f', "fine"}, {"dev/null2", 'c', NULL}}, 2, LP_ERR_MALFORMED,
         "entry \"dev/null2\": device node"},
        {"fifo", {{"ok", 'f', "fine"}, {"pipe", 'p', NULL}}, 2, LP_ERR_MALFORMED,
         "entry \"pipe\": fifo"},
        {"symlink-escape", {{"ok", 'f', "fine"}, {"d/l", 'l', "../../etc/passwd"}}, 2,
         LP_ERR_MALFORMED, "symlink \"d/l\": target \"../../etc/passwd\" leaves the bundle"},
        {"symlink-absolute", {{"ok", 'f', "fine"}, {"l", 'l', "/etc/passwd"}}, 2,
         LP_ERR_MALFORMED, "symlink \"l\": absolute target"},
        {"symlink-chain",
         {{"ok", 'f', "fine"}, {"s", 'l', "d"}, {"d/x", 'l', ".."}, {"l", 'l', "s/x/.."}},
         4, LP_ERR_MALFORMED, "symlink \"l\""},
        {"through-symlink", {{"ok", 'f', "fine"}, {"l", 'l', "."}, {"l/x", 'f', "x"}}, 3,
         LP_ERR_MALFORMED, "entry \"l/x\": \"l\" above it is a symlink"},
        {"hardlink-outside", {{"ok", 'f', "fine"}, {"h", 'h', "/etc/passwd"}}, 2,
         LP_ERR_MALFORMED, "hard link \"h\": entry \"/etc/passwd\": absolute path"},
        {"hardlink-missing", {{"ok", 'f', "fine"}, {"h", 'h', "nothere"}}, 2, LP_ERR_MALFORMED,
         "entry \"h\": hard link to \"nothere\", which is not an earlier file"},
        {"hardlink-dir", {{"d", 'd', NULL}, {"h", 'h', "d"}}, 2, LP_ERR_MALFORMED,
         "entry \"h\": hard link to \"d\""},
        {"duplicate", {{"a", 'f', "one"}, {"./a", 'f', "two"}}, 2, LP_ERR_MALFORMED,
         "duplicate path \"a\""},
        {"duplicate-dir", {{"a", 'd', NULL}, {"./a/", 'd', NULL}}, 2, LP_ERR_MALFORMED,
         "duplicate path \"a\""},
        {"control-char", {{"a\nb", 'f', "x"}}, 1, LP_ERR_MALFORMED, "control character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.tar", cases[i].what);
        char *p = lp_test_join(f->dir, name);
        write_archive(p, cases[i].entries, cases[i].n, (int)(i % 2));
        char *before = listing(f);
        lp_manifest m;
        lp_status st = lp_ingest_path(f->bs, p, NULL, &m, NULL, &err);
        if (st != cases[i].st || !strstr(err.msg, cases[i].msg))
            fail_msg("%s: got %s \"%s\", want %s \"%s\"", cases[i].what, lp_status_name(st),
                     err.msg, lp_status_name(cases[i].st), cases[i].msg);
        assert_int_equal(m.count, 0);
        char *after = listing(f);
        assert_string_equal(before, after);
        assert_int_equal(blob_count(f), 1);
        free(before);
        free(after);
        free(p);
    }
}

static void test_limits(void **state)
{
    fixture *f = *state;
    lp_error err;
    lp_manifest m;
    char *before = listing(f);

    /* Too many entries. */
    char *p = lp_test_join(f->dir, "many.tar");
    spec many[12];
    char names[12][8];
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof names[i], "f%02d", i);
        many[i] = (spec){names[i], 'f', names[i]};
    }
    write_archive(p, many, 12, 0);
    lp_ingest_limits lim = {.max_entries = 10};
    lp_ingest_opts o = {.kind = LP_INGEST_AUTO, .file_name = NULL, .limits = &lim};
    assert_int_equal(lp_ingest_path(f->bs, p, &o, &m, NULL, &err), LP_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "entry \"f10\": more than 10 entries"));
    lim.max_entries = 12;
    assert_int_equal(lp_ingest_path(f->bs, p, &o, &m, NULL, &err), LP_OK);
    lp_manifest_free(&m);
    free(before);
    before = listing(f);

    /* One file too large; the bundle too large. */
    lim = (lp_ingest_limits){.max_file_bytes = 2};
    assert_int_equal(lp_ingest_path(f->bs, p, &o, &m, NULL, &err), LP_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "entry \"f00\": file larger than the limit of 2 bytes"));
    lim = (lp_ingest_limits){.max_total_bytes = 20};
    assert_int_equal(lp_ingest_path(f->bs, p, &o, &m, NULL, &err), LP_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "entry \"f06\": bundle content exceeds the limit of 20"));
    /* Implied folders count too. */
    lim = (lp_ingest_limits){.max_entries = 2};
    const spec deep[] = {{"a/b/c/file", 'f', "x"}};
    char *dp = lp_test_join(f->dir, "deep.tar");
    write_archive(dp, deep, 1, 0);
    assert_int_equal(lp_ingest_path(f->bs, dp, &o, &m, NULL, &err), LP_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "implied folders"));
    /* Long names and targets. */
    lim = (lp_ingest_limits){.max_path_len = 3, .max_target_len = 4};
    assert_int_equal(lp_ingest_path(f->bs, dp, &o, &m, NULL, &err), LP_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "a/b/c/file"));
    const spec lt[] = {{"l", 'l', "abcde"}};
    write_archive(dp, lt, 1, 0);
    assert_int_equal(lp_ingest_path(f->bs, dp, &o, &m, NULL, &err), LP_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "symlink \"l\": target of 5 bytes exceeds the limit of 4"));
    char *after = listing(f);
    assert_string_equal(before, after);
    free(after);
    free(dp);
    free(p);

    /* A compression bomb: 200 MB of zeros in a small tar.gz. */
    p = lp_test_join(f->dir, "bomb.tar.gz");
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_gzip(a);
    assert_int_equal(archive_write_open_filename(a, p), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "zeros");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    const size_t chunk = 1 << 20, total = 200u << 20;
    archive_entry_set_size(e, (la_int64_t)total);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    char *zeros = calloc(1, chunk);
    for (size_t done = 0; done < total; done += chunk)
        assert_int_equal(archive_write_data(a, zeros, chunk), (la_ssize_t)chunk);
    free(zeros);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_true(sb.st_size < 1024 * 1024);
    assert_int_equal(lp_ingest_path(f->bs, p, NULL, &m, NULL, &err), LP_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "entry \"zeros\""));
    assert_non_null(strstr(err.msg, "compression ratio limit of 200"));
    after = listing(f);
    assert_string_equal(before, after);
    free(after);
    free(before);
    free(p);
}

static void test_folder_refusals(void **state)
{
    fixture *f = *state;
    lp_error err;
    lp_manifest m;
    char *t = lp_test_join(f->dir, "bad");
    assert_int_equal(run("mkdir -p '%s/sub' && echo x > '%s/sub/ok' && mkfifo '%s/sub/pipe'", t,
                         t, t),
                     0);
    char *before = listing(f);
    assert_int_equal(lp_ingest_path(f->bs, t, NULL, &m, NULL, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "entry \"sub/pipe\": fifo"));
    assert_int_equal(run("rm '%s/sub/pipe' && ln -s /etc/passwd '%s/sub/abs'", t, t), 0);
    assert_int_equal(lp_ingest_path(f->bs, t, NULL, &m, NULL, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "symlink \"sub/abs\": absolute target"));
    assert_int_equal(run("rm '%s/sub/abs' && python3 -c 'import socket,sys; "
                         "socket.socket(socket.AF_UNIX).bind(sys.argv[1])' '%s/sock'",
                         t, t),
                     0);
    assert_int_equal(lp_ingest_path(f->bs, t, NULL, &m, NULL, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "entry \"sock\": socket"));
    assert_int_equal(run("rm '%s/sock' && ln -s ../../x '%s/sub/up'", t, t), 0);
    assert_int_equal(lp_ingest_path(f->bs, t, NULL, &m, NULL, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "symlink \"sub/up\": target \"../../x\" leaves"));
    char *after = listing(f);
    assert_string_equal(before, after);
    /* Fixed, it goes in; a symlink to a folder is recorded, not followed. */
    assert_int_equal(run("rm '%s/sub/up' && ln -s sub '%s/alias'", t, t), 0);
    assert_int_equal(lp_ingest_path(f->bs, t, NULL, &m, NULL, &err), LP_OK);
    assert_int_equal(m.count, 3);
    assert_int_equal(lp_manifest_find(&m, "alias")->type, LP_ENTRY_SYMLINK);
    lp_manifest_free(&m);
    free(after);
    free(before);
    free(t);
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
    char *t = lp_test_join(f->dir, "big");
    assert_int_equal(mkdir(t, 0755), 0);
    char *p = lp_test_join(t, "sparse.img");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    const off_t size = 64l * 1024 * 1024;
    assert_int_equal(pwrite(fd, "tail", 4, size - 4), 4);
    close(fd);
    uint8_t digest[LP_HASH_MAX_LEN];
    char expect[LP_BLOB_ID_SIZE];
    assert_int_equal(lp_hash_file(LP_HASH_SHA256, p, digest, NULL, &err), LP_OK);
    lp_hex_encode(digest, LP_SHA256_LEN, expect);

    long before = maxrss_kb();
    lp_manifest m;
    assert_int_equal(lp_ingest_path(f->bs, t, NULL, &m, NULL, &err), LP_OK);
    /* And as a tar.gz, streamed through libarchive. */
    char *tgz = lp_test_join(f->dir, "big.tar.gz");
    assert_int_equal(run("tar -czf '%s' -C '%s' .", tgz, t), 0);
    lp_manifest m2;
    lp_ingest_limits lim = {.max_ratio = 1000000};
    lp_ingest_opts o = {.kind = LP_INGEST_ARCHIVE, .file_name = NULL, .limits = &lim};
    assert_int_equal(lp_ingest_path(f->bs, tgz, &o, &m2, NULL, &err), LP_OK);
    long grew = maxrss_kb() - before;
    if (grew >= 16 * 1024)
        fail_msg("memory grew by %ld KiB", grew);
    const lp_manifest_entry *e = lp_manifest_find(&m, "sparse.img");
    assert_non_null(e);
    assert_int_equal(e->size, (uint64_t)size);
    assert_string_equal(e->sha256, expect);
    assert_string_equal(lp_manifest_find(&m2, "sparse.img")->sha256, expect);
    assert_true(lp_blobstore_has(f->bs, expect));
    lp_manifest_free(&m);
    lp_manifest_free(&m2);
    free(tgz);
    free(p);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_formats_same_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hard_links_inside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_archives, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_file_streamed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
