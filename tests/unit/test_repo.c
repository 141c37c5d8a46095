/*
 * test_repo.c — the TUF repository writer.
 *
 * The strongest check comes first: from the keys and target contents of the
 * independent vectors ($LP_TUF_VECTORS: basic, delegations, root_rotation)
 * the writer must produce byte-identical metadata and target files, which
 * proves the JSON form, canonical signing input, key IDs, signature order
 * and ed25519 signatures all match python-tuf 5.1.0.
 *
 * Then the writer's semantics: which versions move on a publish, what a
 * publish with too few keys does (fails naming the role, and the folder is
 * byte-for-byte unchanged), refused names and custom JSON, removal,
 * thresholds, key and root rotation, reopening a folder.  Finally the
 * livepush client refreshes and downloads from writer output served over
 * real HTTP on loopback after every publish, rotations included.
 */
#include "core/buf.h"
#include "core/file.h"
#include "core/timeutil.h"
#include "httpd.h"
#include "livepush/hash.h"
#include "livepush/tuf.h"
#include "livepush/tuf_repo.h"
#include "tuf/json.h"

#include <dirent.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#define OK(call)                                                                                   \
    do {                                                                                           \
        lp_error_clear(&err);                                                                      \
        if ((call) != LP_OK)                                                                       \
            fail_msg("%s failed: %s", #call, err.msg);                                             \
    } while (0)

static const char *vectors(void)
{
    const char *v = getenv("LP_TUF_VECTORS");
    return v ? v : "../shared/tuf-vectors";
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

static char *tmpdir(void)
{
    char *d = strdup("/tmp/lp-repo-test-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *pathf(const char *fmt, ...)
{
    static char bufs[4][1024];
    static int n;
    char *p = bufs[n++ % 4];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, 1024, fmt, ap);
    va_end(ap);
    return p;
}

/* Whole file in a new buffer.  (Not inlined: gcc's dangling-pointer
 * analysis would otherwise take the buffer for the address of a local.) */
static __attribute__((noinline)) uint8_t *slurp(const char *path, size_t *len)
{
    uint8_t *d = NULL;
    lp_error err;
    if (lp_file_read(path, 64u << 20, &d, len, &err))
        fail_msg("read %s: %s", path, err.msg);
    return d;
}

static void assert_same_file(const char *want, const char *got)
{
    size_t lw, lg;
    uint8_t *w = slurp(want, &lw), *g = slurp(got, &lg);
    if (lw != lg || memcmp(w, g, lw))
        fail_msg("%s differs from %s\n--- expected:\n%.*s\n--- got:\n%.*s", got, want, (int)lw, w,
                 (int)lg, g);
    free(w);
    free(g);
}

/* Appends "relative-path size sha256\n" for every file under dir, sorted,
 * to out: a fingerprint of a whole folder. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void fingerprint_into(const char *dir, const char *rel, lp_buf *out)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[4096];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        assert_true(n < 4096);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char full[1024], r[1024];
        snprintf(full, sizeof full, "%s/%s", dir, names[i]);
        snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", names[i]);
        struct stat sb;
        assert_int_equal(lstat(full, &sb), 0);
        if (S_ISDIR(sb.st_mode)) {
            lp_buf_printf(out, NULL, "%s/\n", r);
            fingerprint_into(full, r, out);
        } else {
            uint8_t dg[LP_HASH_MAX_LEN];
            char hex[65];
            assert_int_equal(lp_hash_file(LP_HASH_SHA256, full, dg, NULL, NULL), LP_OK);
            lp_hex_encode(dg, 32, hex);
            lp_buf_printf(out, NULL, "%s %lld %s\n", r, (long long)sb.st_size, hex);
        }
        free(names[i]);
    }
}

static char *fingerprint(const char *dir)
{
    lp_buf b;
    lp_buf_init(&b, 0);
    lp_buf_append_str(&b, "", NULL);
    fingerprint_into(dir, "", &b);
    size_t n;
    return (char *)lp_buf_steal(&b, &n);
}

static lp_key *load_key(const char *file)
{
    lp_key *k;
    lp_error err;
    if (lp_key_load_private_file(&k, file, &err))
        fail_msg("load %s: %s", file, err.msg);
    return k;
}

static char *keyid_of(const lp_key *k)
{
    static char ids[4][65];
    static int n;
    char *id = ids[n++ % 4];
    char *json;
    assert_int_equal(lp_tuf_key_to_json(k, &json, id, NULL), LP_OK);
    free(json);
    return id;
}

static int64_t t2099(void)
{
    int64_t t;
    assert_int_equal(lp_time_parse("2099-01-01T00:00:00Z", &t, NULL), LP_OK);
    return t;
}

static void expire_all_2099(lp_tuf_repo *r, const char *const *roles, size_t n)
{
    lp_error err;
    for (size_t i = 0; i < n; i++)
        OK(lp_tuf_repo_set_expires(r, roles[i], t2099(), &err));
}

static const char *const TOP[] = {"root", "timestamp", "snapshot", "targets"};

/* Every file of the vector's metadata/ and targets/ is in out, identical. */
static void assert_reproduces(const char *vdir, const char *out, const char *const *skip)
{
    char *vm = pathf("%s/metadata", vdir);
    DIR *d = opendir(vm);
    assert_non_null(d);
    struct dirent *e;
    int compared = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        bool skipped = false;
        for (size_t i = 0; skip && skip[i]; i++)
            skipped = skipped || !strcmp(skip[i], e->d_name);
        if (skipped)
            continue;
        assert_same_file(pathf("%s/metadata/%s", vdir, e->d_name),
                         pathf("%s/metadata/%s", out, e->d_name));
        compared++;
    }
    closedir(d);
    assert_true(compared >= 3);
    char *want = fingerprint(pathf("%s/targets", vdir));
    char *got = fingerprint(pathf("%s/targets", out));
    assert_string_equal(got, want);
    free(want);
    free(got);
}

/* Adds to `role` every target the vector's <file> lists, with the content
 * the vector serves for it. */
static void add_vector_targets(lp_tuf_repo *r, const char *vdir, const char *file,
                               const char *role)
{
    size_t len;
    uint8_t *data = slurp(pathf("%s/metadata/%s", vdir, file), &len);
    json_t *doc;
    lp_error err;
    OK(lp_json_parse(data, len, NULL, &doc, &err));
    free(data);
    json_t *targets = json_object_get(json_object_get(doc, "signed"), "targets");
    const char *name;
    json_t *t;
    json_object_foreach(targets, name, t)
    {
        json_t *hashes = json_object_get(t, "hashes");
        const char *sha = json_string_value(json_object_get(hashes, "sha256"));
        const char *slash = strrchr(name, '/');
        char *content;
        if (slash)
            content = pathf("%s/targets/%.*s/%s.%s", vdir, (int)(slash - name), name, sha,
                            slash + 1);
        else
            content = pathf("%s/targets/%s.%s", vdir, sha, name);
        char *custom = NULL;
        json_t *cj = json_object_get(t, "custom");
        if (cj)
            assert_int_equal(lp_cjson_dumps(cj, &custom, &len, NULL), LP_OK);
        lp_tuf_hashes h = json_object_get(hashes, "sha512") ? LP_TUF_HASH_SHA256_SHA512
                                                             : LP_TUF_HASH_SHA256;
        OK(lp_tuf_repo_add_target_file(r, role, name, content, custom, h, &err));
        free(custom);
    }
    json_decref(doc);
}

/* ---- byte-for-byte reproduction of the independent vectors ----------- */

static void test_reproduce_basic(void **state)
{
    (void)state;
    char *dir = tmpdir();
    const char *v = pathf("%s/basic", vectors());
    char vdir[512];
    snprintf(vdir, sizeof vdir, "%s", v);
    lp_key *root = load_key(pathf("%s/keys/basic-root.pem", vdir));
    lp_key *targets = load_key(pathf("%s/keys/basic-targets.pem", vdir));
    lp_key *snapshot = load_key(pathf("%s/keys/basic-snapshot.pem", vdir));
    lp_key *timestamp = load_key(pathf("%s/keys/basic-timestamp.pem", vdir));
    lp_tuf_repo *r;
    lp_error err;
    OK(lp_tuf_repo_create(&r, dir, &err));
    OK(lp_tuf_repo_add_key(r, "root", root, &err));
    OK(lp_tuf_repo_add_key(r, "targets", targets, &err));
    OK(lp_tuf_repo_add_key(r, "snapshot", snapshot, &err));
    OK(lp_tuf_repo_add_key(r, "timestamp", timestamp, &err));
    /* The three targets, from their contents (both hashes). */
    static const struct {
        const char *name, *file;
    } files[] = {
        {"file1.txt", "9eb579dee533e16fcbbb45553885ba412ee4f358149204bbf68f837c86264a53.file1.txt"},
        {"empty.txt", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.empty.txt"},
        {"app/bin/tool",
         "app/bin/c8f5d0341d54d951a71b136e6e2afcb14d11ed8489a7ae126a8fee0df6ecf193.tool"},
    };
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        uint8_t *data = slurp(pathf("%s/targets/%s", vdir, files[i].file), &len);
        OK(lp_tuf_repo_add_target(r, "targets", files[i].name, data, len, NULL,
                                  LP_TUF_HASH_SHA256_SHA512, &err));
        free(data);
    }
    expire_all_2099(r, TOP, 4);
    const lp_key *keys[] = {root, targets, snapshot, timestamp};
    OK(lp_tuf_repo_publish(r, keys, 4, &err));
    assert_reproduces(vdir, dir, NULL);
    assert_same_file(pathf("%s/metadata/1.root.json", vdir), pathf("%s/metadata/root.json", dir));
    for (int i = 0; i < 4; i++)
        assert_int_equal(lp_tuf_repo_version(r, TOP[i]), 1);
    lp_tuf_repo_free(r);
    for (int i = 0; i < 4; i++)
        lp_key_free((lp_key *)keys[i]);
    sh("rm -rf '%s'", dir);
    free(dir);
}

static void test_reproduce_delegations(void **state)
{
    (void)state;
    char *dir = tmpdir();
    char vdir[512];
    snprintf(vdir, sizeof vdir, "%s/delegations", vectors());
    /* keys/keys.json: which key signs for which role. */
    size_t len;
    uint8_t *kj = slurp(pathf("%s/keys/keys.json", vdir), &len);
    json_t *keys_json;
    lp_error err;
    OK(lp_json_parse(kj, len, NULL, &keys_json, &err));
    free(kj);
    static const char *const roles[] = {"root",     "timestamp", "snapshot",       "targets",
                                        "releases", "fallback",  "releases-canary"};
    lp_key *k[7];
    for (int i = 0; i < 7; i++) {
        char label[64];
        snprintf(label, sizeof label, "delegations-%s", roles[i]);
        json_t *info = json_object_get(keys_json, label);
        assert_non_null(info);
        /* The label's used_for names the role we give it. */
        const char *used = json_string_value(json_array_get(json_object_get(info, "used_for"), 0));
        assert_non_null(strstr(used, roles[i]));
        k[i] = load_key(pathf("%s/keys/%s", vdir,
                              json_string_value(json_object_get(info, "private_key"))));
        assert_string_equal(keyid_of(k[i]), json_string_value(json_object_get(info, "keyid")));
    }
    json_decref(keys_json);
    lp_tuf_repo *r;
    OK(lp_tuf_repo_create(&r, dir, &err));
    for (int i = 0; i < 4; i++)
        OK(lp_tuf_repo_add_key(r, roles[i], k[i], &err));
    const char *rel_paths[] = {"apps/*", "apps/*/*"};
    const char *fb_paths[] = {"*", "*/*", "*/*/*"};
    const char *canary_paths[] = {"apps/canary/*"};
    OK(lp_tuf_repo_delegate(r, "targets", "releases", rel_paths, 2, true, 1, &err));
    OK(lp_tuf_repo_delegate(r, "targets", "fallback", fb_paths, 3, false, 1, &err));
    OK(lp_tuf_repo_delegate(r, "releases", "releases-canary", canary_paths, 1, false, 1, &err));
    for (int i = 4; i < 7; i++)
        OK(lp_tuf_repo_add_key(r, roles[i], k[i], &err));
    add_vector_targets(r, vdir, "1.targets.json", "targets");
    add_vector_targets(r, vdir, "1.releases.json", "releases");
    add_vector_targets(r, vdir, "1.fallback.json", "fallback");
    add_vector_targets(r, vdir, "1.releases-canary.json", "releases-canary");
    expire_all_2099(r, roles, 7);
    OK(lp_tuf_repo_publish(r, (const lp_key *const *)k, 7, &err));
    assert_reproduces(vdir, dir, NULL);
    lp_tuf_repo_free(r);

    /* Reopened, the same repository republishes identical role files. */
    OK(lp_tuf_repo_open(&r, dir, &err));
    for (int i = 4; i < 7; i++)
        assert_int_equal(lp_tuf_repo_version(r, roles[i]), 1);
    OK(lp_tuf_repo_touch(r, "releases-canary", &err));
    OK(lp_tuf_repo_publish(r, (const lp_key *const *)k, 7, &err));
    assert_int_equal(lp_tuf_repo_version(r, "releases-canary"), 2);
    assert_int_equal(lp_tuf_repo_version(r, "releases"), 1);
    assert_int_equal(lp_tuf_repo_version(r, "snapshot"), 2);
    assert_int_equal(lp_tuf_repo_version(r, "timestamp"), 2);
    /* 2.releases-canary.json is 1.releases-canary.json with version 2. */
    size_t l1, l2;
    char *a = (char *)slurp(pathf("%s/metadata/1.releases-canary.json", dir), &l1);
    char *b = (char *)slurp(pathf("%s/metadata/2.releases-canary.json", dir), &l2);
    const char *body_a = strstr(a, "\"signed\":"), *body_b = strstr(b, "\"signed\":");
    assert_non_null(strstr(body_b, "\"version\":2}}"));
    assert_int_equal(strlen(body_a), strlen(body_b));
    assert_memory_equal(body_a, body_b, strlen(body_a) - 4);
    free(a);
    free(b);
    lp_tuf_repo_free(r);
    for (int i = 0; i < 7; i++)
        lp_key_free(k[i]);
    sh("rm -rf '%s'", dir);
    free(dir);
}

static void test_reproduce_root_rotation(void **state)
{
    (void)state;
    char *dir = tmpdir();
    char vdir[512];
    snprintf(vdir, sizeof vdir, "%s/root_rotation", vectors());
    enum { R1, R2, R3, R4, S1, S2, T, TS1, TS2, N };
    static const char *const labels[] = {"root-1",     "root-2",     "root-3",
                                         "root-4",     "snapshot-1", "snapshot-2",
                                         "targets",    "timestamp-1", "timestamp-2"};
    lp_key *k[N];
    for (int i = 0; i < N; i++)
        k[i] = load_key(pathf("%s/keys/rotation-%s.pem", vdir, labels[i]));
    lp_tuf_repo *r;
    lp_error err;
    OK(lp_tuf_repo_create(&r, dir, &err));
    OK(lp_tuf_repo_add_key(r, "root", k[R1], &err));
    OK(lp_tuf_repo_add_key(r, "targets", k[T], &err));
    OK(lp_tuf_repo_add_key(r, "snapshot", k[S1], &err));
    OK(lp_tuf_repo_add_key(r, "timestamp", k[TS1], &err));
    add_vector_targets(r, vdir, "1.targets.json", "targets");
    expire_all_2099(r, TOP, 4);
    const lp_key *v1keys[] = {k[R1], k[T], k[S1], k[TS1]};
    OK(lp_tuf_repo_publish(r, v1keys, 4, &err));
    assert_same_file(pathf("%s/metadata/1.root.json", vdir), pathf("%s/metadata/1.root.json", dir));
    assert_same_file(pathf("%s/metadata/1.targets.json", vdir),
                     pathf("%s/metadata/1.targets.json", dir));

    /* Root v2: new timestamp and snapshot keys, signed by R1. */
    OK(lp_tuf_repo_remove_key(r, "timestamp", keyid_of(k[TS1]), &err));
    OK(lp_tuf_repo_add_key(r, "timestamp", k[TS2], &err));
    OK(lp_tuf_repo_remove_key(r, "snapshot", keyid_of(k[S1]), &err));
    OK(lp_tuf_repo_add_key(r, "snapshot", k[S2], &err));
    const lp_key *v2keys[] = {k[R1], k[S2], k[TS2]};
    OK(lp_tuf_repo_publish(r, v2keys, 3, &err));
    assert_int_equal(lp_tuf_repo_version(r, "root"), 2);
    assert_int_equal(lp_tuf_repo_version(r, "snapshot"), 2);
    assert_int_equal(lp_tuf_repo_version(r, "timestamp"), 2);
    assert_int_equal(lp_tuf_repo_version(r, "targets"), 1);
    assert_same_file(pathf("%s/metadata/2.root.json", vdir), pathf("%s/metadata/2.root.json", dir));
    assert_same_file(pathf("%s/metadata/2.snapshot.json", vdir),
                     pathf("%s/metadata/2.snapshot.json", dir));
    assert_same_file(pathf("%s/metadata/timestamp.json", vdir),
                     pathf("%s/metadata/timestamp.json", dir));

    /* Root v3: root keys R2, R3, R4 with threshold 2, signed by R1 (the
     * trusted v2 root) and R2, R3 (v3's own threshold).  The vector's
     * timestamp stays at v2 because its generator wrote root v3 alone; this
     * writer re-signs the timestamp on every publish, so only 3.root.json is
     * compared here. */
    OK(lp_tuf_repo_remove_key(r, "root", keyid_of(k[R1]), &err));
    OK(lp_tuf_repo_add_key(r, "root", k[R2], &err));
    OK(lp_tuf_repo_add_key(r, "root", k[R3], &err));
    OK(lp_tuf_repo_add_key(r, "root", k[R4], &err));
    OK(lp_tuf_repo_set_threshold(r, "root", 2, &err));
    const lp_key *v3keys[] = {k[R1], k[R2], k[R3], k[TS2]};
    OK(lp_tuf_repo_publish(r, v3keys, 4, &err));
    assert_same_file(pathf("%s/metadata/3.root.json", vdir), pathf("%s/metadata/3.root.json", dir));
    assert_same_file(pathf("%s/metadata/3.root.json", vdir), pathf("%s/metadata/root.json", dir));
    char *want = fingerprint(pathf("%s/targets", vdir));
    char *got = fingerprint(pathf("%s/targets", dir));
    assert_string_equal(got, want);
    free(want);
    free(got);
    lp_tuf_repo_free(r);
    for (int i = 0; i < N; i++)
        lp_key_free(k[i]);
    sh("rm -rf '%s'", dir);
    free(dir);
}

/* ---- a small repository for the semantic tests ------------------------ */

enum { K_ROOT, K_ROOT2, K_ROOT3, K_TARGETS, K_TARGETS2, K_SNAPSHOT, K_TIMESTAMP, K_TIMESTAMP2,
       K_DELEG, NKEYS };

typedef struct world {
    char *dir;
    char repo[256], meta[256];
    lp_key *k[NKEYS];
    lp_tuf_repo *r;
    lp_test_httpd *httpd;
    char murl[256], turl[256];
} world;

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    w->dir = tmpdir();
    snprintf(w->repo, sizeof w->repo, "%s/repo", w->dir);
    snprintf(w->meta, sizeof w->meta, "%s/client", w->dir);
    lp_error err;
    for (int i = 0; i < NKEYS; i++)
        OK(lp_key_generate(&w->k[i], LP_KEY_ED25519, &err));
    OK(lp_tuf_repo_create(&w->r, w->repo, &err));
    OK(lp_tuf_repo_add_key(w->r, "root", w->k[K_ROOT], &err));
    OK(lp_tuf_repo_add_key(w->r, "targets", w->k[K_TARGETS], &err));
    OK(lp_tuf_repo_add_key(w->r, "snapshot", w->k[K_SNAPSHOT], &err));
    OK(lp_tuf_repo_add_key(w->r, "timestamp", w->k[K_TIMESTAMP], &err));
    OK(lp_tuf_repo_add_target(w->r, "targets", "app/hello.txt", "hello v1\n", 9,
                              "{\"version\":\"1.0.0\"}", LP_TUF_HASH_SHA256, &err));
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    lp_test_httpd_stop(w->httpd);
    lp_tuf_repo_free(w->r);
    for (int i = 0; i < NKEYS; i++)
        lp_key_free(w->k[i]);
    sh("rm -rf '%s'", w->dir);
    free(w->dir);
    free(w);
    return 0;
}

static lp_status publish_with(world *w, lp_error *err, int n, ...)
{
    const lp_key *keys[NKEYS];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        keys[i] = w->k[va_arg(ap, int)];
    va_end(ap);
    lp_error_clear(err);
    return lp_tuf_repo_publish(w->r, keys, (size_t)n, err);
}

static void publish_all(world *w)
{
    lp_error err;
    if (lp_tuf_repo_publish(w->r, (const lp_key *const *)w->k, NKEYS, &err))
        fail_msg("publish: %s", err.msg);
}

static json_t *load_json(const char *path)
{
    size_t len;
    uint8_t *d = slurp(path, &len);
    json_t *doc;
    lp_error err;
    OK(lp_json_parse(d, len, NULL, &doc, &err));
    free(d);
    return doc;
}

static void expect_versions(world *w, uint64_t root, uint64_t ts, uint64_t snap, uint64_t tg)
{
    assert_int_equal(lp_tuf_repo_version(w->r, "root"), root);
    assert_int_equal(lp_tuf_repo_version(w->r, "timestamp"), ts);
    assert_int_equal(lp_tuf_repo_version(w->r, "snapshot"), snap);
    assert_int_equal(lp_tuf_repo_version(w->r, "targets"), tg);
}

/* Signatures of a metadata file: count, and that they are sorted. */
static size_t signature_count(const char *path)
{
    json_t *doc = load_json(path);
    json_t *sigs = json_object_get(doc, "signatures");
    size_t n = json_array_size(sigs);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(json_string_value(json_object_get(json_array_get(sigs, i - 1), "keyid")),
                           json_string_value(json_object_get(json_array_get(sigs, i), "keyid"))) <
                    0);
    json_decref(doc);
    return n;
}

static void test_versions_move_with_changes(void **state)
{
    world *w = *state;
    lp_error err;
    expect_versions(w, 0, 0, 0, 0);
    publish_all(w);
    expect_versions(w, 1, 1, 1, 1);
    /* Nothing changed: only the timestamp is re-signed. */
    publish_all(w);
    expect_versions(w, 1, 2, 1, 1);
    assert_false(lp_file_exists(pathf("%s/metadata/2.snapshot.json", w->repo)));
    /* Reopen from disk, edit, publish. */
    lp_tuf_repo_free(w->r);
    OK(lp_tuf_repo_open(&w->r, w->repo, &err));
    expect_versions(w, 1, 2, 1, 1);
    OK(lp_tuf_repo_add_target(w->r, "targets", "app/hello.txt", "hello v2\n", 9, NULL,
                              LP_TUF_HASH_SHA256, &err));
    publish_all(w);
    expect_versions(w, 1, 3, 2, 2);
    json_t *snap = load_json(pathf("%s/metadata/2.snapshot.json", w->repo));
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(json_object_get(snap, "signed"), "meta"),
                                         "targets.json"),
                         "version")),
                     2);
    json_decref(snap);
    json_t *ts = load_json(pathf("%s/metadata/timestamp.json", w->repo));
    json_t *tss = json_object_get(ts, "signed");
    assert_int_equal(json_integer_value(json_object_get(tss, "version")), 3);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(tss, "meta"), "snapshot.json"), "version")),
                     2);
    json_decref(ts);
    /* An identical re-add changes nothing. */
    OK(lp_tuf_repo_add_target(w->r, "targets", "app/hello.txt", "hello v2\n", 9, NULL,
                              LP_TUF_HASH_SHA256, &err));
    publish_all(w);
    expect_versions(w, 1, 4, 2, 2);
    /* Expiry of snapshot alone: snapshot moves, targets does not. */
    OK(lp_tuf_repo_set_expires(w->r, "snapshot", lp_time_now() + 3600, &err));
    publish_all(w);
    expect_versions(w, 1, 5, 3, 2);
    /* A root edit (expiry) moves root only (and the timestamp). */
    OK(lp_tuf_repo_set_expires(w->r, "root", t2099(), &err));
    publish_all(w);
    expect_versions(w, 2, 6, 3, 2);
    assert_same_file(pathf("%s/metadata/2.root.json", w->repo),
                     pathf("%s/metadata/root.json", w->repo));
    /* Both root versions stay. */
    assert_true(lp_file_exists(pathf("%s/metadata/1.root.json", w->repo)));
    /* Versions 1 files of targets stay for clients that hold them. */
    assert_true(lp_file_exists(pathf("%s/metadata/1.targets.json", w->repo)));
    /* The targets' custom field survived the first version. */
    json_t *t1 = load_json(pathf("%s/metadata/1.targets.json", w->repo));
    json_t *e = json_object_get(json_object_get(json_object_get(t1, "signed"), "targets"),
                                "app/hello.txt");
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "custom"), "version")),
                        "1.0.0");
    json_decref(t1);
}

static void test_default_expiry(void **state)
{
    world *w = *state;
    lp_error err;
    int64_t now = 1700000000;
    lp_tuf_repo_set_now(w->r, now);
    publish_all(w);
    static const struct {
        const char *file;
        int64_t days;
    } want[] = {{"1.root.json", 365}, {"timestamp.json", 1}, {"1.snapshot.json", 7},
                {"1.targets.json", 90}};
    for (int i = 0; i < 4; i++) {
        json_t *doc = load_json(pathf("%s/metadata/%s", w->repo, want[i].file));
        int64_t t;
        OK(lp_time_parse(
            json_string_value(json_object_get(json_object_get(doc, "signed"), "expires")), &t,
            &err));
        assert_int_equal(t, now + want[i].days * 86400);
        json_decref(doc);
    }
    /* Re-signing later extends the timestamp; a longer chosen expiry stays. */
    OK(lp_tuf_repo_set_expires(w->r, "targets", t2099(), &err));
    publish_all(w);
    lp_tuf_repo_set_now(w->r, now + 3600);
    OK(lp_tuf_repo_touch(w->r, "targets", &err));
    publish_all(w);
    json_t *doc = load_json(pathf("%s/metadata/timestamp.json", w->repo));
    char exp[21];
    lp_time_format(now + 3600 + 86400, exp);
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "signed"),
                                                          "expires")),
                        exp);
    json_decref(doc);
    doc = load_json(pathf("%s/metadata/3.targets.json", w->repo));
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "signed"),
                                                          "expires")),
                        "2099-01-01T00:00:00Z");
    json_decref(doc);
}

/* A publish that lacks a key fails naming the role and writes nothing. */
static void expect_refused(world *w, const char *role_text, int n, ...)
{
    char *before = fingerprint(w->repo);
    const lp_key *keys[NKEYS];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        keys[i] = w->k[va_arg(ap, int)];
    va_end(ap);
    lp_error err;
    lp_error_clear(&err);
    uint64_t ts = lp_tuf_repo_version(w->r, "timestamp");
    assert_int_equal(lp_tuf_repo_publish(w->r, keys, (size_t)n, &err), LP_ERR_BAD_SIGNATURE);
    if (!strstr(err.msg, role_text))
        fail_msg("\"%s\" does not name %s", err.msg, role_text);
    printf("  refused: %s\n", err.msg);
    char *after = fingerprint(w->repo);
    assert_string_equal(after, before);
    assert_int_equal(lp_tuf_repo_version(w->r, "timestamp"), ts);
    free(before);
    free(after);
}

static void test_insufficient_keys_write_nothing(void **state)
{
    world *w = *state;
    lp_error err;
    /* First publish: every role must be signed. */
    expect_refused(w, "role targets", 3, K_ROOT, K_SNAPSHOT, K_TIMESTAMP);
    expect_refused(w, "role root", 3, K_TARGETS, K_SNAPSHOT, K_TIMESTAMP);
    expect_refused(w, "role timestamp", 3, K_ROOT, K_TARGETS, K_SNAPSHOT);
    expect_refused(w, "role snapshot", 3, K_ROOT, K_TARGETS, K_TIMESTAMP);
    /* Keys of the wrong roles do not count. */
    expect_refused(w, "role targets", 4, K_ROOT, K_TARGETS2, K_SNAPSHOT, K_TIMESTAMP);
    publish_all(w);
    /* A new target needs targets, snapshot and timestamp keys. */
    OK(lp_tuf_repo_add_target(w->r, "targets", "b.txt", "b", 1, NULL, LP_TUF_HASH_SHA256, &err));
    expect_refused(w, "role targets", 2, K_SNAPSHOT, K_TIMESTAMP);
    expect_refused(w, "role snapshot", 2, K_TARGETS, K_TIMESTAMP);
    /* A private key is needed: the public half alone does not sign. */
    char *pubval;
    lp_key *pubonly;
    OK(lp_key_public_value(w->k[K_TARGETS], &pubval, &err));
    OK(lp_key_from_public(&pubonly, LP_KEY_ED25519, pubval, &err));
    free(pubval);
    const lp_key *with_pub[] = {pubonly, w->k[K_SNAPSHOT], w->k[K_TIMESTAMP]};
    assert_int_equal(lp_tuf_repo_publish(w->r, with_pub, 3, &err), LP_ERR_BAD_SIGNATURE);
    assert_non_null(strstr(err.msg, "role targets"));
    lp_key_free(pubonly);
    assert_int_equal(publish_with(w, &err, 3, K_TARGETS, K_SNAPSHOT, K_TIMESTAMP), LP_OK);
    /* A delegated role. */
    const char *paths[] = {"deleg/*"};
    OK(lp_tuf_repo_delegate(w->r, "targets", "team", paths, 1, false, 1, &err));
    OK(lp_tuf_repo_add_key(w->r, "team", w->k[K_DELEG], &err));
    OK(lp_tuf_repo_add_target(w->r, "team", "deleg/x", "x", 1, NULL, LP_TUF_HASH_SHA256, &err));
    expect_refused(w, "role team", 3, K_TARGETS, K_SNAPSHOT, K_TIMESTAMP);
    assert_int_equal(publish_with(w, &err, 4, K_TARGETS, K_DELEG, K_SNAPSHOT, K_TIMESTAMP), LP_OK);
    assert_int_equal(lp_tuf_repo_version(w->r, "team"), 1);
}

static void test_bad_names_and_custom(void **state)
{
    world *w = *state;
    lp_error err;
    char *before = fingerprint(w->repo);
    static const char *const bad[] = {"../x", "/abs", "a//b", "a/./b", "", "a/", "a/..", ".",
                                      "..",   "x/../y", "a\\b", "tab\there"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lp_error_clear(&err);
        assert_int_equal(lp_tuf_repo_add_target(w->r, "targets", bad[i], "x", 1, NULL,
                                                LP_TUF_HASH_SHA256, &err),
                         LP_ERR_INVALID_ARG);
        assert_true(err.msg[0]);
        assert_int_equal(lp_tuf_repo_add_target_file(w->r, "targets", bad[i], "/etc/hostname",
                                                     NULL, LP_TUF_HASH_SHA256, &err),
                         LP_ERR_INVALID_ARG);
    }
    static const char *const bad_custom[] = {"[1]", "{", "{\"a\":1.5}", "{\"a\":1,\"a\":2}", "7",
                                             "{} {}", "\"s\""};
    for (size_t i = 0; i < sizeof bad_custom / sizeof bad_custom[0]; i++) {
        lp_error_clear(&err);
        assert_int_equal(lp_tuf_repo_add_target(w->r, "targets", "ok.txt", "x", 1, bad_custom[i],
                                                LP_TUF_HASH_SHA256, &err),
                         LP_ERR_MALFORMED);
        assert_non_null(strstr(err.msg, "custom"));
    }
    /* Roles that do not list targets, unknown roles, bad hash choices. */
    assert_int_equal(lp_tuf_repo_add_target(w->r, "snapshot", "ok.txt", "x", 1, NULL,
                                            LP_TUF_HASH_SHA256, &err),
                     LP_ERR_INVALID_ARG);
    assert_int_equal(lp_tuf_repo_add_target(w->r, "nobody", "ok.txt", "x", 1, NULL,
                                            LP_TUF_HASH_SHA256, &err),
                     LP_ERR_NOT_FOUND);
    assert_int_equal(lp_tuf_repo_add_target(w->r, "targets", "ok.txt", "x", 1, NULL,
                                            (lp_tuf_hashes)2, &err),
                     LP_ERR_INVALID_ARG);
    /* Nothing refused left a file behind. */
    char *after = fingerprint(w->repo);
    assert_string_equal(after, before);
    free(before);
    free(after);
    /* Delegated role names. */
    const char *p[] = {"x/*"};
    static const char *const bad_roles[] = {"", "a/b", "root", "targets", "../x", "a b",
                                            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"};
    for (size_t i = 0; i < sizeof bad_roles / sizeof bad_roles[0]; i++)
        assert_int_equal(lp_tuf_repo_delegate(w->r, "targets", bad_roles[i], p, 1, false, 1, &err),
                         LP_ERR_INVALID_ARG);
    OK(lp_tuf_repo_delegate(w->r, "targets", "team", p, 1, false, 1, &err));
    assert_int_equal(lp_tuf_repo_delegate(w->r, "targets", "team", p, 1, false, 1, &err),
                     LP_ERR_EXISTS);
    assert_int_equal(lp_tuf_repo_delegate(w->r, "team", "team", p, 1, false, 1, &err),
                     LP_ERR_EXISTS);
    assert_int_equal(lp_tuf_repo_delegate(w->r, "nobody", "x", p, 1, false, 1, &err),
                     LP_ERR_NOT_FOUND);
    assert_int_equal(lp_tuf_repo_delegate(w->r, "root", "x", p, 1, false, 1, &err),
                     LP_ERR_INVALID_ARG);
    assert_int_equal(lp_tuf_repo_delegate(w->r, "targets", "y", p, 0, false, 1, &err),
                     LP_ERR_INVALID_ARG);
    assert_int_equal(lp_tuf_repo_set_threshold(w->r, "targets", 0, &err), LP_ERR_INVALID_ARG);
    assert_int_equal(lp_tuf_repo_remove_key(w->r, "targets", "00", &err), LP_ERR_NOT_FOUND);
    assert_int_equal(lp_tuf_repo_add_key(w->r, "nobody", w->k[K_ROOT], &err), LP_ERR_NOT_FOUND);
    /* A folder that already holds metadata cannot be created again. */
    OK(lp_tuf_repo_add_key(w->r, "team", w->k[K_DELEG], &err));
    publish_all(w);
    lp_tuf_repo *r2;
    assert_int_equal(lp_tuf_repo_create(&r2, w->repo, &err), LP_ERR_EXISTS);
    assert_int_equal(lp_tuf_repo_open(&r2, pathf("%s/none", w->dir), &err), LP_ERR_NOT_FOUND);
}

static void test_remove_target(void **state)
{
    world *w = *state;
    lp_error err;
    OK(lp_tuf_repo_add_target(w->r, "targets", "gone.txt", "bye", 3, NULL, LP_TUF_HASH_SHA256,
                              &err));
    publish_all(w);
    OK(lp_tuf_repo_remove_target(w->r, "targets", "gone.txt", &err));
    assert_int_equal(lp_tuf_repo_remove_target(w->r, "targets", "gone.txt", &err),
                     LP_ERR_NOT_FOUND);
    assert_int_equal(lp_tuf_repo_remove_target(w->r, "targets", "never", &err), LP_ERR_NOT_FOUND);
    publish_all(w);
    expect_versions(w, 1, 2, 2, 2);
    json_t *doc = load_json(pathf("%s/metadata/2.targets.json", w->repo));
    json_t *t = json_object_get(json_object_get(doc, "signed"), "targets");
    assert_null(json_object_get(t, "gone.txt"));
    assert_non_null(json_object_get(t, "app/hello.txt"));
    json_decref(doc);
    /* The content file stays for clients holding version 1. */
    uint8_t d[LP_HASH_MAX_LEN];
    char hex[65];
    OK(lp_hash_buf(LP_HASH_SHA256, "bye", 3, d, &err));
    lp_hex_encode(d, 32, hex);
    assert_true(lp_file_exists(pathf("%s/targets/%s.gone.txt", w->repo, hex)));
}

static void test_threshold_two(void **state)
{
    world *w = *state;
    lp_error err;
    OK(lp_tuf_repo_add_key(w->r, "targets", w->k[K_TARGETS2], &err));
    OK(lp_tuf_repo_set_threshold(w->r, "targets", 2, &err));
    expect_refused(w, "role targets", 4, K_ROOT, K_TARGETS, K_SNAPSHOT, K_TIMESTAMP);
    expect_refused(w, "role targets", 4, K_ROOT, K_TARGETS2, K_SNAPSHOT, K_TIMESTAMP);
    /* The same key twice is still one key. */
    expect_refused(w, "role targets", 5, K_ROOT, K_TARGETS, K_TARGETS, K_SNAPSHOT, K_TIMESTAMP);
    assert_int_equal(publish_with(w, &err, 5, K_ROOT, K_TARGETS, K_TARGETS2, K_SNAPSHOT,
                                  K_TIMESTAMP),
                     LP_OK);
    assert_int_equal(signature_count(pathf("%s/metadata/1.targets.json", w->repo)), 2);
    assert_int_equal(signature_count(pathf("%s/metadata/1.root.json", w->repo)), 1);
    json_t *root = load_json(pathf("%s/metadata/1.root.json", w->repo));
    json_t *tr = json_object_get(json_object_get(json_object_get(root, "signed"), "roles"),
                                 "targets");
    assert_int_equal(json_integer_value(json_object_get(tr, "threshold")), 2);
    assert_int_equal(json_array_size(json_object_get(tr, "keyids")), 2);
    json_decref(root);
    /* Threshold back to 1 is a root change and re-signs targets. */
    OK(lp_tuf_repo_set_threshold(w->r, "targets", 1, &err));
    assert_int_equal(publish_with(w, &err, 4, K_ROOT, K_TARGETS2, K_SNAPSHOT, K_TIMESTAMP), LP_OK);
    expect_versions(w, 2, 2, 2, 2);
    assert_int_equal(signature_count(pathf("%s/metadata/2.targets.json", w->repo)), 1);
}

/* ---- the client reads what the writer wrote, over HTTP ----------------- */

static void serve(world *w)
{
    lp_error err;
    w->httpd = lp_test_httpd_start(w->repo);
    assert_non_null(w->httpd);
    snprintf(w->murl, sizeof w->murl, "%s/metadata", lp_test_httpd_url(w->httpd));
    snprintf(w->turl, sizeof w->turl, "%s/targets", lp_test_httpd_url(w->httpd));
    OK(lp_tuf_init_trusted_root(w->meta, pathf("%s/metadata/1.root.json", w->repo), &err));
}

/* Refreshes, checks the trusted versions equal the writer's, downloads
 * `name` and compares it with `want`. */
static void client_check(world *w, const char *name, const char *want)
{
    lp_error err;
    lp_tuf_client_config cfg = {.metadata_dir = w->meta, .metadata_url = w->murl,
                                .targets_url = w->turl};
    lp_tuf_client *c;
    OK(lp_tuf_client_open(&c, &cfg, &err));
    lp_tuf_step step = LP_TUF_STEP_NONE;
    lp_error_clear(&err);
    if (lp_tuf_client_refresh(c, &step, &err))
        fail_msg("refresh failed at %s: %s", lp_tuf_step_name(step), err.msg);
    lp_tuf_versions v;
    lp_tuf_client_versions(c, &v);
    assert_int_equal(v.root, lp_tuf_repo_version(w->r, "root"));
    assert_int_equal(v.timestamp, lp_tuf_repo_version(w->r, "timestamp"));
    assert_int_equal(v.snapshot, lp_tuf_repo_version(w->r, "snapshot"));
    assert_int_equal(v.targets, lp_tuf_repo_version(w->r, "targets"));
    lp_tuf_target *t;
    OK(lp_tuf_client_find_target(c, name, &t, &err));
    char *dest = pathf("%s/download.bin", w->dir);
    OK(lp_tuf_client_download_target(c, t, dest, &err));
    size_t len;
    uint8_t *got = slurp(dest, &len);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
    free(got);
    unlink(dest);
    lp_tuf_target_free(t);
    lp_tuf_client_free(c);
}

static void test_client_follows_publishes(void **state)
{
    world *w = *state;
    lp_error err;
    publish_all(w);
    serve(w);
    client_check(w, "app/hello.txt", "hello v1\n");
    /* New content. */
    OK(lp_tuf_repo_add_target(w->r, "targets", "app/hello.txt", "hello v2\n", 9, NULL,
                              LP_TUF_HASH_SHA256_SHA512, &err));
    publish_all(w);
    client_check(w, "app/hello.txt", "hello v2\n");
    /* Timestamp-only publish. */
    publish_all(w);
    client_check(w, "app/hello.txt", "hello v2\n");
    /* A delegation, served through the delegated role. */
    const char *paths[] = {"plugins/*"};
    OK(lp_tuf_repo_delegate(w->r, "targets", "plugins", paths, 1, true, 1, &err));
    OK(lp_tuf_repo_add_key(w->r, "plugins", w->k[K_DELEG], &err));
    OK(lp_tuf_repo_add_target(w->r, "plugins", "plugins/a.so", "plugin A", 8, NULL,
                              LP_TUF_HASH_SHA256, &err));
    publish_all(w);
    client_check(w, "plugins/a.so", "plugin A");
    /* Removing a target: the client no longer finds it. */
    OK(lp_tuf_repo_remove_target(w->r, "plugins", "plugins/a.so", &err));
    publish_all(w);
    client_check(w, "app/hello.txt", "hello v2\n");
    lp_tuf_client_config cfg = {.metadata_dir = w->meta, .metadata_url = w->murl,
                                .targets_url = w->turl};
    lp_tuf_client *c;
    OK(lp_tuf_client_open(&c, &cfg, &err));
    OK(lp_tuf_client_refresh(c, NULL, &err));
    lp_tuf_target *t;
    assert_int_equal(lp_tuf_client_find_target(c, "plugins/a.so", &t, &err), LP_ERR_NOT_FOUND);
    lp_tuf_client_free(c);
}

/* A first publish interrupted after its snapshot and targets files but
 * before timestamp.json: the folder opens as root-only; the next publish
 * leaves the leftovers alone (a version never names two different files)
 * and writes the next free versions, and a client follows. */
static void test_interrupted_first_publish(void **state)
{
    world *w = *state;
    lp_error err;
    publish_all(w);
    /* The crash: no timestamp, and a leftover snapshot that differs from
     * what the next publish writes. */
    OK(unlink(pathf("%s/metadata/timestamp.json", w->repo)) == 0 ? LP_OK : LP_ERR_IO);
    size_t snap_len, tg_len;
    uint8_t *snap1 = slurp(pathf("%s/metadata/1.snapshot.json", w->repo), &snap_len);
    uint8_t *tg1 = slurp(pathf("%s/metadata/1.targets.json", w->repo), &tg_len);
    lp_tuf_repo_free(w->r);
    w->r = NULL;
    OK(lp_tuf_repo_open(&w->r, w->repo, &err));
    expect_versions(w, 1, 0, 0, 0);
    OK(lp_tuf_repo_add_target(w->r, "targets", "app/hello.txt", "hello again\n", 12, NULL,
                              LP_TUF_HASH_SHA256, &err));
    publish_all(w);
    expect_versions(w, 1, 1, 2, 2);
    size_t len;
    uint8_t *now = slurp(pathf("%s/metadata/1.snapshot.json", w->repo), &len);
    assert_int_equal(len, snap_len);
    assert_memory_equal(now, snap1, len);
    free(now);
    now = slurp(pathf("%s/metadata/1.targets.json", w->repo), &len);
    assert_int_equal(len, tg_len);
    assert_memory_equal(now, tg1, len);
    free(now);
    free(snap1);
    free(tg1);
    serve(w);
    client_check(w, "app/hello.txt", "hello again\n");
}

/* What a client that refreshes now finds as `name` (NULL: not listed). */
static char *client_sees(world *w, const char *name)
{
    lp_error err;
    lp_tuf_client_config cfg = {.metadata_dir = w->meta, .metadata_url = w->murl,
                                .targets_url = w->turl};
    lp_tuf_client *c;
    OK(lp_tuf_client_open(&c, &cfg, &err));
    OK(lp_tuf_client_refresh(c, NULL, &err));
    lp_tuf_target *t = NULL;
    char *got = NULL;
    if (lp_tuf_client_find_target(c, name, &t, &err) == LP_OK) {
        char *dest = pathf("%s/seen.bin", w->dir);
        OK(lp_tuf_client_download_target(c, t, dest, &err));
        size_t len;
        uint8_t *d = slurp(dest, &len);
        got = calloc(1, len + 1);
        memcpy(got, d, len);
        free(d);
        unlink(dest);
    }
    lp_tuf_target_free(t);
    lp_tuf_client_free(c);
    return got;
}

static void expect_seen(world *w, const char *name, const char *want)
{
    char *got = client_sees(w, name);
    if (!want)
        assert_null(got);
    else
        assert_string_equal(got ? got : "(not listed)", want);
    free(got);
}

/* Publishing with the timestamp held: nothing a client reads changes until
 * the timestamp is written; a held publish given up leaves files nothing
 * points to, and the next publish takes the next free versions instead of
 * writing different content under theirs. */
static void test_held_timestamp(void **state)
{
    world *w = *state;
    lp_error err;
    publish_all(w);
    serve(w);
    expect_seen(w, "app/hello.txt", "hello v1\n");
    size_t ts_len;
    uint8_t *ts1 = slurp(pathf("%s/metadata/timestamp.json", w->repo), &ts_len);

    lp_tuf_repo_hold_timestamp(w->r, true);
    assert_false(lp_tuf_repo_timestamp_pending(w->r));
    OK(lp_tuf_repo_add_target(w->r, "targets", "app/hello.txt", "hello v2\n", 9, NULL,
                              LP_TUF_HASH_SHA256, &err));
    OK(lp_tuf_repo_add_target(w->r, "targets", "app/new.txt", "new\n", 4, NULL,
                              LP_TUF_HASH_SHA256, &err));
    publish_all(w);
    assert_true(lp_tuf_repo_timestamp_pending(w->r));
    expect_versions(w, 1, 2, 2, 2);
    assert_int_equal(access(pathf("%s/metadata/2.targets.json", w->repo), F_OK), 0);
    size_t len;
    uint8_t *ts = slurp(pathf("%s/metadata/timestamp.json", w->repo), &len);
    assert_int_equal(len, ts_len);
    assert_memory_equal(ts, ts1, len);
    free(ts);
    free(ts1);
    expect_seen(w, "app/hello.txt", "hello v1\n");
    expect_seen(w, "app/new.txt", NULL);
    /* A second held publish replaces the kept timestamp. */
    OK(lp_tuf_repo_remove_target(w->r, "targets", "app/new.txt", &err));
    publish_all(w);
    expect_versions(w, 1, 3, 3, 3);
    expect_seen(w, "app/hello.txt", "hello v1\n");
    OK(lp_tuf_repo_write_timestamp(w->r, &err));
    assert_false(lp_tuf_repo_timestamp_pending(w->r));
    client_check(w, "app/hello.txt", "hello v2\n");
    expect_seen(w, "app/new.txt", NULL);
    OK(lp_tuf_repo_write_timestamp(w->r, &err)); /* nothing kept: nothing to do */

    /* Given up: a held publish whose timestamp is never written. */
    OK(lp_tuf_repo_add_target(w->r, "targets", "app/hello.txt", "hello v3\n", 9, NULL,
                              LP_TUF_HASH_SHA256, &err));
    publish_all(w);
    size_t orphan_len;
    uint8_t *orphan = slurp(pathf("%s/metadata/4.targets.json", w->repo), &orphan_len);
    lp_tuf_repo_free(w->r);
    w->r = NULL;
    OK(lp_tuf_repo_open(&w->r, w->repo, &err));
    expect_versions(w, 1, 3, 3, 3);
    expect_seen(w, "app/hello.txt", "hello v2\n");
    OK(lp_tuf_repo_add_target(w->r, "targets", "app/hello.txt", "hello v4\n", 9, NULL,
                              LP_TUF_HASH_SHA256, &err));
    publish_all(w); /* not held: written at once */
    expect_versions(w, 1, 4, 5, 5);
    uint8_t *still = slurp(pathf("%s/metadata/4.targets.json", w->repo), &len);
    assert_int_equal(len, orphan_len);
    assert_memory_equal(still, orphan, len);
    free(still);
    free(orphan);
    client_check(w, "app/hello.txt", "hello v4\n");
}

static void test_timestamp_key_rotation(void **state)
{
    world *w = *state;
    lp_error err;
    publish_all(w);
    serve(w);
    client_check(w, "app/hello.txt", "hello v1\n");
    OK(lp_tuf_repo_remove_key(w->r, "timestamp", keyid_of(w->k[K_TIMESTAMP]), &err));
    OK(lp_tuf_repo_add_key(w->r, "timestamp", w->k[K_TIMESTAMP2], &err));
    /* The old timestamp key no longer signs. */
    expect_refused(w, "role timestamp", 2, K_ROOT, K_TIMESTAMP);
    assert_int_equal(publish_with(w, &err, 2, K_ROOT, K_TIMESTAMP2), LP_OK);
    expect_versions(w, 2, 2, 1, 1);
    /* Root v2 is signed by the root key (old and new root alike), the
     * timestamp by the new key alone; the old key is gone from root. */
    assert_int_equal(signature_count(pathf("%s/metadata/2.root.json", w->repo)), 1);
    json_t *root = load_json(pathf("%s/metadata/2.root.json", w->repo));
    json_t *keys = json_object_get(json_object_get(root, "signed"), "keys");
    assert_null(json_object_get(keys, keyid_of(w->k[K_TIMESTAMP])));
    assert_non_null(json_object_get(keys, keyid_of(w->k[K_TIMESTAMP2])));
    json_decref(root);
    json_t *ts = load_json(pathf("%s/metadata/timestamp.json", w->repo));
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(ts, "signatures"), 0), "keyid")),
                        keyid_of(w->k[K_TIMESTAMP2]));
    json_decref(ts);
    client_check(w, "app/hello.txt", "hello v1\n");
    /* And reopened from disk, the new key is the one that signs. */
    lp_tuf_repo_free(w->r);
    OK(lp_tuf_repo_open(&w->r, w->repo, &err));
    expect_refused(w, "role timestamp", 1, K_TIMESTAMP);
    assert_int_equal(publish_with(w, &err, 1, K_TIMESTAMP2), LP_OK);
    client_check(w, "app/hello.txt", "hello v1\n");
}

static void test_root_key_rotation(void **state)
{
    world *w = *state;
    lp_error err;
    publish_all(w);
    serve(w);
    client_check(w, "app/hello.txt", "hello v1\n");
    /* Root keys R1 -> {R2, R3}, threshold 2. */
    OK(lp_tuf_repo_remove_key(w->r, "root", keyid_of(w->k[K_ROOT]), &err));
    OK(lp_tuf_repo_add_key(w->r, "root", w->k[K_ROOT2], &err));
    OK(lp_tuf_repo_add_key(w->r, "root", w->k[K_ROOT3], &err));
    OK(lp_tuf_repo_set_threshold(w->r, "root", 2, &err));
    /* The previous root's key is required, and so is the new threshold. */
    expect_refused(w, "previous root (version 1)", 3, K_ROOT2, K_ROOT3, K_TIMESTAMP);
    expect_refused(w, "role root", 3, K_ROOT, K_ROOT2, K_TIMESTAMP);
    assert_int_equal(publish_with(w, &err, 4, K_ROOT, K_ROOT2, K_ROOT3, K_TIMESTAMP), LP_OK);
    assert_int_equal(signature_count(pathf("%s/metadata/2.root.json", w->repo)), 3);
    client_check(w, "app/hello.txt", "hello v1\n");
    /* The next root needs the new keys only: R1 is out. */
    OK(lp_tuf_repo_set_expires(w->r, "root", t2099(), &err));
    expect_refused(w, "role root", 3, K_ROOT, K_ROOT2, K_TIMESTAMP);
    assert_int_equal(publish_with(w, &err, 3, K_ROOT2, K_ROOT3, K_TIMESTAMP), LP_OK);
    assert_int_equal(signature_count(pathf("%s/metadata/3.root.json", w->repo)), 2);
    client_check(w, "app/hello.txt", "hello v1\n");
    /* Reopened: the previous-root requirement comes from 3.root.json. */
    lp_tuf_repo_free(w->r);
    OK(lp_tuf_repo_open(&w->r, w->repo, &err));
    OK(lp_tuf_repo_add_key(w->r, "targets", w->k[K_TARGETS2], &err));
    expect_refused(w, "role root (version 4)", 5, K_ROOT, K_ROOT2, K_TARGETS, K_SNAPSHOT,
                   K_TIMESTAMP);
    assert_int_equal(publish_with(w, &err, 5, K_ROOT2, K_ROOT3, K_TARGETS, K_SNAPSHOT,
                                  K_TIMESTAMP),
                     LP_OK);
    expect_versions(w, 4, 4, 2, 2);
    client_check(w, "app/hello.txt", "hello v1\n");
}

/* Opening a repository written by another writer, and keeping what it
 * does not know. */
static void test_open_foreign_repository(void **state)
{
    world *w = *state;
    lp_error err;
    sh("cp -r '%s/basic' '%s/basic'", vectors(), w->dir);
    /* An unknown field in targets' `signed` survives a republish. */
    char *tpath = pathf("%s/basic/metadata/1.targets.json", w->dir);
    json_t *doc = load_json(tpath);
    json_object_set_new(json_object_get(doc, "signed"), "x-extra", json_string("kept"));
    char *out;
    size_t len;
    OK(lp_json_dump_compact(doc, &out, &len, &err));
    OK(lp_file_write_atomic(tpath, out, len, 0644, &err));
    free(out);
    json_decref(doc);
    lp_tuf_repo *r;
    OK(lp_tuf_repo_open(&r, pathf("%s/basic", w->dir), &err));
    for (int i = 0; i < 4; i++)
        assert_int_equal(lp_tuf_repo_version(r, TOP[i]), 1);
    char vdir[512];
    snprintf(vdir, sizeof vdir, "%s/basic", vectors());
    lp_key *keys[4];
    static const char *const names[] = {"root", "targets", "snapshot", "timestamp"};
    for (int i = 0; i < 4; i++)
        keys[i] = load_key(pathf("%s/keys/basic-%s.pem", vdir, names[i]));
    OK(lp_tuf_repo_add_target(r, "targets", "new.txt", "new", 3, "{\"n\":1}",
                              LP_TUF_HASH_SHA256, &err));
    OK(lp_tuf_repo_publish(r, (const lp_key *const *)keys, 4, &err));
    doc = load_json(pathf("%s/basic/metadata/2.targets.json", w->dir));
    json_t *s = json_object_get(doc, "signed");
    assert_string_equal(json_string_value(json_object_get(s, "x-extra")), "kept");
    assert_non_null(json_object_get(json_object_get(s, "targets"), "file1.txt"));
    assert_non_null(json_object_get(json_object_get(s, "targets"), "new.txt"));
    json_decref(doc);
    /* Untouched files are untouched. */
    assert_same_file(pathf("%s/metadata/1.root.json", vdir),
                     pathf("%s/basic/metadata/1.root.json", w->dir));
    lp_tuf_repo_free(r);
    for (int i = 0; i < 4; i++)
        lp_key_free(keys[i]);
    /* A folder with a corrupt timestamp does not open. */
    sh("printf '{\"signed\":' > '%s/basic/metadata/timestamp.json'", w->dir);
    assert_int_equal(lp_tuf_repo_open(&r, pathf("%s/basic", w->dir), &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "timestamp.json"));
}

/* Streaming a file gives the same entry and content file as a buffer. */
static void test_add_target_file_matches_buffer(void **state)
{
    world *w = *state;
    lp_error err;
    size_t n = 300 * 1024 + 7;
    uint8_t *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 131 + (i >> 9));
    char *src = pathf("%s/big.bin", w->dir);
    OK(lp_file_write_atomic(src, data, n, 0644, &err));
    OK(lp_tuf_repo_add_target(w->r, "targets", "a/big.bin", data, n, "{\"k\":[1,2]}",
                              LP_TUF_HASH_SHA256_SHA512, &err));
    OK(lp_tuf_repo_add_target_file(w->r, "targets", "b/big.bin", src, "{\"k\":[1,2]}",
                                   LP_TUF_HASH_SHA256_SHA512, &err));
    assert_int_equal(lp_tuf_repo_add_target_file(w->r, "targets", "c/none", "/nonexistent/file",
                                                 NULL, LP_TUF_HASH_SHA256, &err),
                     LP_ERR_NOT_FOUND);
    publish_all(w);
    json_t *doc = load_json(pathf("%s/metadata/1.targets.json", w->repo));
    json_t *t = json_object_get(json_object_get(doc, "signed"), "targets");
    json_t *a = json_object_get(t, "a/big.bin"), *b = json_object_get(t, "b/big.bin");
    assert_true(json_equal(a, b));
    assert_int_equal(json_integer_value(json_object_get(a, "length")), n);
    const char *sha = json_string_value(json_object_get(json_object_get(a, "hashes"), "sha256"));
    assert_non_null(json_object_get(json_object_get(a, "hashes"), "sha512"));
    assert_same_file(src, pathf("%s/targets/a/%s.big.bin", w->repo, sha));
    assert_same_file(src, pathf("%s/targets/b/%s.big.bin", w->repo, sha));
    /* No temporary file is left next to them. */
    char *fp = fingerprint(pathf("%s/targets/b", w->repo));
    assert_int_equal(strchr(fp, '\n') - fp + 1, (long)strlen(fp));
    free(fp);
    assert_false(lp_file_exists(pathf("%s/targets/c", w->repo)));
    json_decref(doc);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reproduce_basic),
        cmocka_unit_test(test_reproduce_delegations),
        cmocka_unit_test(test_reproduce_root_rotation),
        cmocka_unit_test_setup_teardown(test_versions_move_with_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insufficient_keys_write_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_names_and_custom, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threshold_two, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_follows_publishes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupted_first_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_timestamp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timestamp_key_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_key_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_foreign_repository, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_target_file_matches_buffer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
