/*
 * test_agent_delta.c — the device's use of deltas, against a real static
 * HTTP server on loopback (tests/support/httpd.h) that serves a TUF
 * repository written by the TUF writer, the blobs, the deltas and their
 * index at the paths of the server contract (docs/agent.md, "Deltas").
 *
 * Each test starts from a device that installed v1 through the whole cycle
 * (lp_device_update) and then finds v2 published: a real executable (a copy
 * of an ELF from /usr/bin) patched as a code change would patch it, a text
 * file with a few lines changed, a file left as it was and a new one.  The
 * deltas are made by the engine (lp_delta_make_file) from the real blobs.
 *
 * Shown: v1 -> v2 takes the deltas (the changed files' blobs are never
 * asked for; the bytes served for v2 are about the deltas' sizes; the
 * counters, the notes and the "downloaded" event's figures say so; the
 * installed tree is exactly v2); a delta with a bit flipped, a truncated
 * one (with the index telling its new size, and without), a missing one (404), and one
 * made from another base each fall back to the full blob on their own with
 * the reason counted and noted, and v2 is installed correctly; an index
 * that is missing, malformed or answered 503 for a while never fails the
 * update; a delta download cut part-way resumes with a Range request, as
 * does a partial delta left by an earlier run; with deltas turned off the
 * index is never asked for.  Plus the index parser on good and bad input.
 */
#include "agent/net.h"
#include "agenttest.h"
#include "core/file.h"
#include "httpd.h"
#include "livepush/delta.h"
#include "livepush/hash.h"
#include "livepush/tuf_repo.h"
#include "testutil.h"

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

#define NFILES 4

/* A file of a release: its path, bytes and digest. */
typedef struct file {
    const char *path;
    uint8_t *data;
    size_t len;
    char sha[65];
} file;

typedef struct notes {
    unsigned index, no_index, index_failed, applied, fallback;
    char text[8192]; /* one line per note: "<kind> <path>: <reason>" */
} notes;

typedef struct fixture {
    char *dir, *www, *appdir, *root1;
    lp_key *k;
    lp_tuf_repo *r;
    lp_test_httpd *httpd;
    file v1[NFILES], v2[NFILES];
    lp_manifest m1, m2;
    uint64_t dsize[2];      /* deltas of bin/tool and share/notes.txt */
    char dpath[2][256];     /* their URL paths */
    char dfile[2][1024];    /* their files on the server */
    char index_file[1024];  /* www/v1/apps/demo/deltas/1/2.json */
    char index_path[128];   /* its URL path */
    unsigned roots;         /* roots made by fresh_root */
    notes n;
} fixture;

/* ---- data ------------------------------------------------------------------- */

static void sha_of(const void *data, size_t len, char out[65])
{
    uint8_t md[LP_HASH_MAX_LEN];
    assert_int_equal(lp_hash_buf(LP_HASH_SHA256, data, len, md, NULL), LP_OK);
    lp_hex_encode(md, LP_SHA256_LEN, out);
}

static uint8_t *dup_bytes(const void *p, size_t len)
{
    uint8_t *c = malloc(len ? len : 1);
    assert_non_null(c);
    memcpy(c, p, len);
    return c;
}

/* A real executable of about 100..600 KiB. */
static uint8_t *real_elf(size_t *len)
{
    static const char *const candidates[] = {"/usr/bin/ls", "/usr/bin/cp", "/usr/bin/sort",
                                             "/usr/bin/tar", "/proc/self/exe"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        uint8_t *d = lp_test_read_file(candidates[i], len);
        if (d && *len > 64 * 1024 && memcmp(d, "\177ELF", 4) == 0)
            return d;
        free(d);
    }
    fail_msg("no executable found to test with");
    return NULL;
}

/* The executable as a code change would leave it: 96 bytes inserted at 40%
 * (everything after moves), a few bytes changed here and there. */
static uint8_t *patched_elf(const uint8_t *old, size_t len, size_t *out_len)
{
    size_t at = len * 2 / 5, ins = 96;
    uint8_t *n = malloc(len + ins);
    assert_non_null(n);
    memcpy(n, old, at);
    for (size_t i = 0; i < ins; i++)
        n[at + i] = (uint8_t)(0x90 + i % 7);
    memcpy(n + at + ins, old + at, len - at);
    for (size_t k = 1; k < 8; k++)
        n[(len + ins) * k / 9] ^= 0x5a;
    *out_len = len + ins;
    return n;
}

/* About 110 KiB of text; `changed` rewrites a few lines and adds some. */
static uint8_t *text(bool changed, size_t *len)
{
    size_t cap = 200 * 1024, n = 0;
    char *t = malloc(cap);
    assert_non_null(t);
    for (int i = 0; i < 2000; i++) {
        bool edit = changed && (i == 100 || i == 901 || i == 1500);
        n += (size_t)snprintf(t + n, cap - n, "%05d %s jumps over the lazy dog, %d times\n", i,
                              edit ? "the slow red cat" : "the quick brown fox", i * 7 % 13);
    }
    for (int i = 0; changed && i < 20; i++)
        n += (size_t)snprintf(t + n, cap - n, "appended line %d\n", i);
    *len = n;
    return (uint8_t *)t;
}

/* ---- the server side ----------------------------------------------------------- */

static char *www_path(fixture *f, const char *rel)
{
    return lp_test_join(f->www, rel);
}

static void put_blob(fixture *f, const file *x)
{
    char rel[128];
    snprintf(rel, sizeof rel, "v1/blobs/%s", x->sha);
    char *p = www_path(f, rel);
    assert_int_equal(lp_test_write_file(p, x->data, x->len), 0);
    free(p);
}

static void publish(fixture *f, const file *files, lp_manifest *m, unsigned code)
{
    lp_error err;
    lp_manifest_init(m);
    for (int i = 0; i < NFILES; i++) {
        if (!files[i].path)
            continue;
        put_blob(f, &files[i]);
        unsigned mode = strncmp(files[i].path, "bin/", 4) == 0 ? 0755 : 0644;
        assert_int_equal(lp_manifest_add_file(m, files[i].path, mode, files[i].len,
                                              files[i].sha, &err),
                         LP_OK);
    }
    assert_int_equal(lp_manifest_finish(m, &err), LP_OK);
    char *json;
    size_t len;
    assert_int_equal(lp_manifest_to_json(m, &json, &len, &err), LP_OK);
    char name[64], custom[256];
    snprintf(name, sizeof name, "releases/%u.json", code);
    snprintf(custom, sizeof custom,
             "{\"channels\":[\"stable\"],\"mandatory\":false,\"version\":\"v%u\","
             "\"version_code\":%u}",
             code, code);
    if (lp_tuf_repo_add_target(f->r, "targets", name, json, len, custom, LP_TUF_HASH_SHA256,
                               &err))
        fail_msg("add %s: %s", name, err.msg);
    free(json);
    const lp_key *keys[] = {f->k};
    if (lp_tuf_repo_publish(f->r, keys, 1, &err))
        fail_msg("publish: %s", err.msg);
}

/* Makes the delta from `base` to `result` at the contract's place for the
 * pair (or, with other_base, from that file's content). */
static uint64_t make_delta(fixture *f, int slot, const file *base, const file *result,
                           const file *other_base)
{
    char url_path[256];
    snprintf(url_path, sizeof url_path, "/v1/deltas/%s/%s", base->sha, result->sha);
    memcpy(f->dpath[slot], url_path, sizeof url_path);
    snprintf(f->dfile[slot], sizeof f->dfile[slot], "%s%s", f->www, url_path);
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/v1/deltas/%s", f->www, base->sha);
    lp_error err;
    assert_int_equal(lp_file_mkdirs(dir, 0755, &err), LP_OK);
    char from[1100], to[1100];
    snprintf(from, sizeof from, "%s/v1/blobs/%s", f->www,
             (other_base ? other_base : base)->sha);
    snprintf(to, sizeof to, "%s/v1/blobs/%s", f->www, result->sha);
    lp_delta_stats ds;
    if (lp_delta_make_file(from, to, f->dfile[slot], NULL, &ds, &err))
        fail_msg("delta: %s", err.msg);
    struct stat sb;
    assert_int_equal(stat(f->dfile[slot], &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, ds.delta_size);
    return ds.delta_size;
}

/* Writes the index of the two deltas with the sizes given. */
static void write_index(fixture *f, uint64_t size0, uint64_t size1)
{
    char body[1024];
    snprintf(body, sizeof body,
             "{\"from\":1,\"to\":2,\"complete\":true,\"deltas\":["
             "{\"result\":\"%s\",\"base\":\"%s\",\"size\":%llu},"
             "{\"result\":\"%s\",\"base\":\"%s\",\"size\":%llu}]}",
             f->v2[0].sha, f->v1[0].sha, (unsigned long long)size0, f->v2[1].sha, f->v1[1].sha,
             (unsigned long long)size1);
    assert_int_equal(lp_test_write_str(f->index_file, body), 0);
}

/* ---- the device --------------------------------------------------------------- */

static void on_delta(void *ctx, const lp_delta_note *n)
{
    notes *s = ctx;
    unsigned *c[] = {&s->index, &s->no_index, &s->index_failed, &s->applied, &s->fallback};
    if ((unsigned)n->kind < 5)
        (*c[n->kind])++;
    size_t k = strlen(s->text);
    snprintf(s->text + k, sizeof s->text - k, "%s %s: %s\n", lp_delta_note_kind_name(n->kind),
             n->path ? n->path : "-", n->reason ? n->reason : "-");
}

static lp_device *open_device(fixture *f, const char *root, bool no_deltas)
{
    char *trusted = lp_test_join(f->appdir, "metadata/1.root.json");
    lp_device_config c = {.updater = agt_config(root),
                          .net = {.server_url = lp_test_httpd_url(f->httpd),
                                  .app = "demo",
                                  .attempts = 3,
                                  .backoff_base_ms = 5,
                                  .backoff_max_ms = 20},
                          .trusted_root = trusted,
                          .no_deltas = no_deltas,
                          .on_delta = on_delta,
                          .delta_ctx = &f->n};
    lp_device *d = NULL;
    lp_error err;
    if (lp_device_open(&c, &d, &err))
        fail_msg("device open: %s", err.msg);
    free(trusted);
    return d;
}

static lp_update_result update(lp_device *d)
{
    lp_update_result r;
    lp_error err;
    if (lp_device_update(d, NULL, &r, &err))
        fail_msg("update: %s", err.msg);
    return r;
}

/* A new install root holding what root1 holds (v1 installed and current). */
static char *fresh_root(fixture *f)
{
    char name[64], cmd[4096];
    snprintf(name, sizeof name, "root%u", ++f->roots + 1);
    char *root = lp_test_join(f->dir, name);
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", f->root1, root);
    assert_int_equal(system(cmd), 0);
    return root;
}

/* The newest "downloaded" event queued in root (new reference; NULL when
 * there is none). */
static json_t *downloaded_event(const char *root)
{
    char *dir = lp_test_join(root, ".livepush/events");
    DIR *dh = opendir(dir);
    assert_non_null(dh);
    char best[64] = "";
    struct dirent *de;
    json_t *found = NULL;
    while ((de = readdir(dh))) {
        size_t n = strlen(de->d_name);
        if (n != 25 || strcmp(de->d_name + 20, ".json") != 0 || strcmp(de->d_name, best) < 0)
            continue;
        char *p = lp_test_join(dir, de->d_name);
        size_t len;
        char *text = (char *)lp_test_read_file(p, &len);
        free(p);
        json_t *j = text ? json_loadb(text, len, 0, NULL) : NULL;
        free(text);
        if (j && json_is_string(json_object_get(j, "type")) &&
            strcmp(json_string_value(json_object_get(j, "type")), "downloaded") == 0) {
            snprintf(best, sizeof best, "%s", de->d_name);
            json_decref(found);
            found = j;
        } else {
            json_decref(j);
        }
    }
    closedir(dh);
    free(dir);
    return found;
}

/* Integer member `key` of an event; -1 when it is missing or not one. */
static long long event_int(const json_t *ev, const char *key)
{
    const json_t *v = json_object_get(ev, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

/* Number of entries in <root>/.livepush/downloads. */
static int downloads_left(const char *root)
{
    char *dir = lp_test_join(root, ".livepush/downloads");
    int n = agt_count_entries(dir);
    free(dir);
    return n < 0 ? 0 : n;
}

static unsigned blob_requests(fixture *f, const file *x)
{
    char p[128];
    snprintf(p, sizeof p, "/v1/blobs/%s", x->sha);
    return lp_test_httpd_requests(f->httpd, p);
}

/* v2 is current in root and exactly what its manifest lists. */
static void expect_v2(fixture *f, const char *root)
{
    assert_int_equal(agt_check_current(root, 2, &f->m2), 0);
    assert_int_equal(downloads_left(root), 0);
    char *staging = lp_test_join(root, ".livepush/staging");
    assert_int_equal(agt_count_entries(staging), 0);
    free(staging);
}

/* ---- fixture --------------------------------------------------------------------- */

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    *state = f;
    f->dir = lp_test_tmpdir("agent-delta");
    f->www = lp_test_join(f->dir, "www");
    f->appdir = lp_test_join(f->www, "v1/apps/demo");
    f->root1 = lp_test_join(f->dir, "root1");
    lp_error err;
    char *blobs = lp_test_join(f->www, "v1/blobs");
    assert_int_equal(lp_file_mkdirs(blobs, 0755, &err), LP_OK);
    free(blobs);
    assert_int_equal(lp_key_generate(&f->k, LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_create(&f->r, f->appdir, &err), LP_OK);
    const char *roles[] = {"root", "targets", "snapshot", "timestamp"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(lp_tuf_repo_add_key(f->r, roles[i], f->k, &err), LP_OK);

    /* v1 and v2 */
    size_t len;
    uint8_t *elf = real_elf(&len);
    f->v1[0] = (file){"bin/tool", elf, len, ""};
    f->v2[0] = (file){"bin/tool", patched_elf(elf, len, &len), len, ""};
    f->v1[0 + 1].path = f->v2[1].path = "share/notes.txt";
    f->v1[1].data = text(false, &f->v1[1].len);
    f->v2[1].data = text(true, &f->v2[1].len);
    static const char same[] = "the same in both releases\n";
    f->v1[2] = (file){"share/same.txt", dup_bytes(same, sizeof same - 1), sizeof same - 1, ""};
    f->v2[2] = (file){"share/same.txt", dup_bytes(same, sizeof same - 1), sizeof same - 1, ""};
    static const char fresh[] = "a file new in v2\n";
    f->v2[3] = (file){"share/new.txt", dup_bytes(fresh, sizeof fresh - 1), sizeof fresh - 1, ""};
    for (int i = 0; i < NFILES; i++) {
        if (f->v1[i].path)
            sha_of(f->v1[i].data, f->v1[i].len, f->v1[i].sha);
        if (f->v2[i].path)
            sha_of(f->v2[i].data, f->v2[i].len, f->v2[i].sha);
    }
    publish(f, f->v1, &f->m1, 1);
    assert_non_null(f->httpd = lp_test_httpd_start(f->www));
    snprintf(f->index_path, sizeof f->index_path, "/v1/apps/demo/deltas/1/2.json");
    snprintf(f->index_file, sizeof f->index_file, "%s%s", f->www, f->index_path);

    /* the device installs v1: nothing is current, so no index is asked for */
    lp_device *d = open_device(f, f->root1, false);
    lp_update_result r = update(d);
    lp_device_close(d);
    assert_int_equal(r.outcome, LP_UPDATE_ACTIVATED);
    assert_int_equal(r.version_code, 1);
    assert_int_equal(r.stats.files_delta, 0);
    assert_int_equal(lp_test_httpd_requests(f->httpd, "/v1/apps/demo/deltas/0/1.json"), 0);
    assert_int_equal(f->n.index + f->n.no_index + f->n.index_failed, 0);
    assert_int_equal(agt_check_current(f->root1, 1, &f->m1), 0);

    /* v2 with its deltas and their index */
    publish(f, f->v2, &f->m2, 2);
    f->dsize[0] = make_delta(f, 0, &f->v1[0], &f->v2[0], NULL);
    f->dsize[1] = make_delta(f, 1, &f->v1[1], &f->v2[1], NULL);
    char *idir = lp_test_join(f->appdir, "deltas/1");
    assert_int_equal(lp_file_mkdirs(idir, 0755, &err), LP_OK);
    free(idir);
    write_index(f, f->dsize[0], f->dsize[1]);
    /* the deltas pay: each well under a fifth of its file */
    assert_true(f->dsize[0] * 5 < f->v2[0].len);
    assert_true(f->dsize[1] * 5 < f->v2[1].len);
    memset(&f->n, 0, sizeof f->n);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    lp_test_httpd_stop(f->httpd);
    lp_tuf_repo_free(f->r);
    lp_key_free(f->k);
    for (int i = 0; i < NFILES; i++) {
        free(f->v1[i].data);
        free(f->v2[i].data);
    }
    lp_manifest_free(&f->m1);
    lp_manifest_free(&f->m2);
    lp_test_rmtree(f->dir);
    free(f->dir);
    free(f->www);
    free(f->appdir);
    free(f->root1);
    free(f);
    return 0;
}

/* Size of every file under `dir` (an upper bound of what the TUF client can
 * fetch from the repository in one update). */
static uint64_t tree_bytes(const char *dir)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return 0;
    uint64_t total = 0;
    struct dirent *de;
    while ((de = readdir(dh))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *p = lp_test_join(dir, de->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0)
            total += S_ISDIR(sb.st_mode) ? tree_bytes(p) : (uint64_t)sb.st_size;
        free(p);
    }
    closedir(dh);
    return total;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_update_by_deltas(void **state)
{
    fixture *f = *state;
    uint64_t sent0 = lp_test_httpd_bytes_sent(f->httpd);
    lp_device *d = open_device(f, f->root1, false);
    lp_update_result r = update(d);
    lp_device_close(d);
    uint64_t sent = lp_test_httpd_bytes_sent(f->httpd) - sent0;

    assert_int_equal(r.outcome, LP_UPDATE_ACTIVATED);
    assert_int_equal(r.version_code, 2);
    expect_v2(f, f->root1);
    /* two files made from deltas, the new one fetched, the same one linked */
    assert_int_equal(r.stats.files_fetched, 3);
    assert_int_equal(r.stats.files_linked, 1);
    assert_int_equal(r.stats.files_delta, 2);
    assert_int_equal(r.stats.bytes_delta, f->dsize[0] + f->dsize[1]);
    assert_int_equal(r.stats.bytes_delta_saved,
                     f->v2[0].len + f->v2[1].len - f->dsize[0] - f->dsize[1]);
    assert_int_equal(r.stats.delta_fallbacks, 0);
    /* the changed files' blobs were never asked for; each delta once */
    assert_int_equal(blob_requests(f, &f->v2[0]), 0);
    assert_int_equal(blob_requests(f, &f->v2[1]), 0);
    assert_int_equal(blob_requests(f, &f->v2[3]), 1);
    assert_int_equal(lp_test_httpd_requests(f->httpd, f->dpath[0]), 1);
    assert_int_equal(lp_test_httpd_requests(f->httpd, f->dpath[1]), 1);
    assert_int_equal(lp_test_httpd_requests(f->httpd, f->index_path), 1);
    /* bytes served: the deltas and the new file, plus at most the whole
     * repository's metadata, manifests and the index */
    uint64_t payload = f->dsize[0] + f->dsize[1] + f->v2[3].len;
    uint64_t bound = payload + tree_bytes(f->appdir);
    if (sent < payload || sent > bound)
        fail_msg("served %llu bytes, expected %llu..%llu", (unsigned long long)sent,
                 (unsigned long long)payload, (unsigned long long)bound);
    assert_true(sent < (f->v2[0].len + f->v2[1].len) / 2);
    /* the notes and the event */
    assert_int_equal(f->n.index, 1);
    assert_int_equal(f->n.applied, 2);
    assert_int_equal(f->n.fallback, 0);
    assert_non_null(strstr(f->n.text, "applied bin/tool"));
    assert_non_null(strstr(f->n.text, "applied share/notes.txt"));
    /* the event carries the figures as fields, and no reason */
    json_t *ev = downloaded_event(f->root1);
    assert_non_null(ev);
    assert_true(json_is_null(json_object_get(ev, "reason")));
    assert_int_equal(event_int(ev, "bytes"), f->dsize[0] + f->dsize[1] + f->v2[3].len);
    assert_int_equal(event_int(ev, "files_fetched"), 3);
    assert_int_equal(event_int(ev, "files_delta"), 2);
    assert_int_equal(event_int(ev, "bytes_delta_saved"), r.stats.bytes_delta_saved);
    assert_int_equal(event_int(ev, "delta_fallbacks"), 0);
    json_decref(ev);
}

/* Runs v1 -> v2 on a fresh root; expects `fallbacks` fallbacks (one per
 * file of `failing`, named in the notes with `why`) and `deltas` files from
 * deltas. */
static void expect_fallbacks(fixture *f, unsigned deltas, unsigned fallbacks,
                             const char *const *failing, const char *const *why)
{
    char *root = fresh_root(f);
    memset(&f->n, 0, sizeof f->n);
    unsigned before[2] = {blob_requests(f, &f->v2[0]), blob_requests(f, &f->v2[1])};
    lp_device *d = open_device(f, root, false);
    lp_update_result r = update(d);
    lp_device_close(d);
    assert_int_equal(r.outcome, LP_UPDATE_ACTIVATED);
    expect_v2(f, root);
    assert_int_equal(r.stats.files_fetched, 3);
    assert_int_equal(r.stats.files_delta, deltas);
    assert_int_equal(r.stats.delta_fallbacks, fallbacks);
    assert_int_equal(f->n.fallback, fallbacks);
    assert_int_equal(f->n.applied, deltas);
    unsigned fetched = blob_requests(f, &f->v2[0]) - before[0] +
                       blob_requests(f, &f->v2[1]) - before[1];
    assert_int_equal(fetched, fallbacks);
    for (unsigned i = 0; i < fallbacks; i++) {
        char line[128];
        snprintf(line, sizeof line, "fallback %s: ", failing[i]);
        const char *at = strstr(f->n.text, line);
        if (!at)
            fail_msg("no fallback noted for %s:\n%s", failing[i], f->n.text);
        const char *end = strchr(at, '\n');
        char buf[1024];
        snprintf(buf, sizeof buf, "%.*s", (int)(end - at), at);
        if (!strstr(buf, why[i]))
            fail_msg("fallback of %s: expected '%s' in '%s'", failing[i], why[i], buf);
    }
    /* the figures as fields; the reason names the first fallback's file */
    json_t *ev = downloaded_event(root);
    assert_non_null(ev);
    assert_int_equal(event_int(ev, "files_fetched"), 3);
    assert_int_equal(event_int(ev, "files_delta"), deltas);
    assert_int_equal(event_int(ev, "delta_fallbacks"), fallbacks);
    assert_int_equal(event_int(ev, "bytes_delta_saved"), r.stats.bytes_delta_saved);
    assert_int_equal(event_int(ev, "bytes"), r.stats.bytes_fetched - r.stats.bytes_delta_saved);
    const char *reason = json_string_value(json_object_get(ev, "reason"));
    if (fallbacks) { /* whichever file staging fetched first */
        bool named = false;
        for (unsigned i = 0; i < fallbacks && !named; i++) {
            char want[128];
            snprintf(want, sizeof want, "%s: ", failing[i]);
            named = reason && strncmp(reason, want, strlen(want)) == 0 && strstr(reason, why[i]);
        }
        if (!named)
            fail_msg("event reason '%s' names no failing file with its reason",
                     reason ? reason : "(null)");
    } else {
        assert_null(reason);
    }
    json_decref(ev);
    lp_test_rmtree(root);
    free(root);
}

static void flip_bit(const char *path, size_t at)
{
    size_t len;
    uint8_t *d = lp_test_read_file(path, &len);
    assert_non_null(d);
    assert_true(at < len);
    d[at] ^= 0x10;
    assert_int_equal(lp_test_write_file(path, d, len), 0);
    free(d);
}

static void truncate_to(const char *path, size_t len)
{
    assert_int_equal(truncate(path, (off_t)len), 0);
}

static void test_corrupted(void **state)
{
    fixture *f = *state;
    /* a bit flipped in the streams of the executable's delta */
    flip_bit(f->dfile[0], (size_t)f->dsize[0] / 2);
    const char *failing[] = {"bin/tool"}, *why[] = {"delta "};
    expect_fallbacks(f, 1, 1, failing, why);
    /* ... and in its header */
    make_delta(f, 0, &f->v1[0], &f->v2[0], NULL);
    flip_bit(f->dfile[0], 20);
    const char *why2[] = {"corrupted"};
    expect_fallbacks(f, 1, 1, failing, why2);
}

static void test_truncated(void **state)
{
    fixture *f = *state;
    /* the index tells the truncated sizes: the engine refuses them; the
     * executable's delta cut inside its header, the text's in its streams */
    truncate_to(f->dfile[0], 100);
    truncate_to(f->dfile[1], (size_t)f->dsize[1] - 10);
    write_index(f, LP_DELTA_HEADER_SIZE, f->dsize[1] - 10);
    const char *failing[] = {"bin/tool", "share/notes.txt"};
    char why0[80];
    snprintf(why0, sizeof why0, "the server sent 100 bytes, the delta index lists %u",
             LP_DELTA_HEADER_SIZE);
    const char *why[] = {why0, "truncated"};
    expect_fallbacks(f, 0, 2, failing, why);
    /* the index still tells the full size: the download comes up short */
    write_index(f, f->dsize[0], f->dsize[1]);
    const char *why2[] = {"the server sent 100 bytes, the delta index lists",
                          "the delta index lists"};
    expect_fallbacks(f, 0, 2, failing, why2);
}

static void test_missing_delta(void **state)
{
    fixture *f = *state;
    assert_int_equal(unlink(f->dfile[1]), 0);
    const char *failing[] = {"share/notes.txt"}, *why[] = {"not on the server"};
    expect_fallbacks(f, 1, 1, failing, why);
    /* the server answers 500 every time: the tries run out */
    lp_test_httpd_fail(f->httpd, f->dpath[0], 500, NULL, 3);
    const char *failing2[] = {"bin/tool", "share/notes.txt"};
    const char *why2[] = {"gave up after 3 attempts", "not on the server"};
    expect_fallbacks(f, 0, 2, failing2, why2);
}

static void test_wrong_base(void **state)
{
    fixture *f = *state;
    /* served for notes.txt v1 -> v2, but made from the executable */
    make_delta(f, 1, &f->v1[1], &f->v2[1], &f->v1[0]);
    struct stat sb;
    assert_int_equal(stat(f->dfile[1], &sb), 0);
    write_index(f, f->dsize[0], (uint64_t)sb.st_size);
    const char *failing[] = {"share/notes.txt"}, *why[] = {"base"};
    expect_fallbacks(f, 1, 1, failing, why);
    /* served for the executable, made from the right base but to another
     * result (the text file v2) */
    make_delta(f, 1, &f->v1[1], &f->v2[1], NULL);
    char from[1100], to[1100];
    snprintf(from, sizeof from, "%s/v1/blobs/%s", f->www, f->v1[0].sha);
    snprintf(to, sizeof to, "%s/v1/blobs/%s", f->www, f->v2[1].sha);
    lp_delta_stats ds;
    lp_error err;
    assert_int_equal(lp_delta_make_file(from, to, f->dfile[0], NULL, &ds, &err), LP_OK);
    write_index(f, ds.delta_size, f->dsize[1]);
    const char *failing2[] = {"bin/tool"}, *why2[] = {"another result"};
    expect_fallbacks(f, 1, 1, failing2, why2);
}

/* v1 -> v2 on a fresh root without any delta used or failed. */
static lp_update_result full_update(fixture *f, bool no_deltas)
{
    char *root = fresh_root(f);
    memset(&f->n, 0, sizeof f->n);
    lp_device *d = open_device(f, root, no_deltas);
    lp_update_result r = update(d);
    lp_device_close(d);
    assert_int_equal(r.outcome, LP_UPDATE_ACTIVATED);
    expect_v2(f, root);
    assert_int_equal(r.stats.files_fetched, 3);
    assert_int_equal(r.stats.files_delta, 0);
    assert_int_equal(r.stats.delta_fallbacks, 0);
    assert_int_equal(f->n.applied + f->n.fallback, 0);
    /* the figures of a download of whole files, no reason */
    json_t *ev = downloaded_event(root);
    assert_non_null(ev);
    assert_true(json_is_null(json_object_get(ev, "reason")));
    assert_int_equal(event_int(ev, "files_fetched"), 3);
    assert_int_equal(event_int(ev, "bytes"), r.stats.bytes_fetched);
    assert_int_equal(event_int(ev, "files_delta"), 0);
    assert_int_equal(event_int(ev, "bytes_delta_saved"), 0);
    assert_int_equal(event_int(ev, "delta_fallbacks"), 0);
    json_decref(ev);
    lp_test_rmtree(root);
    free(root);
    return r;
}

static void test_index_problems(void **state)
{
    fixture *f = *state;
    /* none on the server */
    assert_int_equal(unlink(f->index_file), 0);
    full_update(f, false);
    assert_int_equal(f->n.no_index, 1);
    assert_non_null(strstr(f->n.text, "HTTP 404"));
    /* malformed: a wrong type, another pair, not JSON, an entry not valid */
    static const char *const bad[] = {
        "{\"from\":1,\"to\":2,\"complete\":\"yes\",\"deltas\":[]}",
        "{\"from\":1,\"to\":3,\"complete\":true,\"deltas\":[]}",
        "{\"from\":1,\"to\":2,\"complete\":true,\"deltas\":[",
        "{\"from\":1,\"to\":2,\"complete\":true,\"deltas\":[{\"result\":\"x\"}]}",
    };
    static const char *const why[] = {"'complete'", "describes 1 -> 3", "not valid JSON",
                                      "deltas[0]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(lp_test_write_str(f->index_file, bad[i]), 0);
        full_update(f, false);
        assert_int_equal(f->n.index_failed, 1);
        if (!strstr(f->n.text, why[i]))
            fail_msg("expected '%s' in the note: %s", why[i], f->n.text);
    }
    /* an endless index is cut at its bound */
    lp_test_httpd_set_endless(f->httpd, f->index_path);
    full_update(f, false);
    assert_int_equal(f->n.index_failed, 1);
}

static void test_index_retried(void **state)
{
    fixture *f = *state;
    /* 503 with Retry-After: 0 twice, then the index: the deltas are used */
    lp_test_httpd_fail(f->httpd, f->index_path, 503, "0", 2);
    char *root = fresh_root(f);
    lp_device *d = open_device(f, root, false);
    lp_update_result r = update(d);
    lp_device_close(d);
    assert_int_equal(r.outcome, LP_UPDATE_ACTIVATED);
    expect_v2(f, root);
    assert_int_equal(lp_test_httpd_requests(f->httpd, f->index_path), 3);
    assert_int_equal(r.stats.files_delta, 2);
    lp_test_rmtree(root);
    free(root);
}

static void test_resume(void **state)
{
    fixture *f = *state;
    /* cut part-way: the next try asks for the rest */
    uint64_t half = f->dsize[0] / 2;
    lp_test_httpd_cut(f->httpd, f->dpath[0], half, 1);
    char *root = fresh_root(f);
    lp_device *d = open_device(f, root, false);
    lp_update_result r = update(d);
    lp_device_close(d);
    assert_int_equal(r.outcome, LP_UPDATE_ACTIVATED);
    expect_v2(f, root);
    assert_int_equal(r.stats.files_delta, 2);
    assert_int_equal(r.stats.delta_fallbacks, 0);
    assert_int_equal(lp_test_httpd_requests(f->httpd, f->dpath[0]), 2);
    char range[64], want[64];
    lp_test_httpd_last_range(f->httpd, f->dpath[0], range, sizeof range);
    snprintf(want, sizeof want, "bytes=%llu-", (unsigned long long)half);
    assert_string_equal(range, want);
    lp_test_rmtree(root);
    free(root);

    /* a partial delta left by an earlier run is resumed */
    root = fresh_root(f);
    char rel[256];
    snprintf(rel, sizeof rel, ".livepush/downloads/%s-%s.delta.part", f->v1[1].sha,
             f->v2[1].sha);
    char *part = lp_test_join(root, rel);
    char *dl = lp_test_join(root, ".livepush/downloads");
    lp_error err;
    assert_int_equal(lp_file_mkdirs(dl, 0700, &err), LP_OK);
    size_t len;
    uint8_t *delta = lp_test_read_file(f->dfile[1], &len);
    size_t kept = len / 3;
    assert_int_equal(lp_test_write_file(part, delta, kept), 0);
    free(delta);
    uint64_t sent0 = lp_test_httpd_bytes_sent(f->httpd);
    d = open_device(f, root, false);
    r = update(d);
    lp_device_close(d);
    assert_int_equal(r.outcome, LP_UPDATE_ACTIVATED);
    expect_v2(f, root);
    assert_int_equal(r.stats.files_delta, 2);
    lp_test_httpd_last_range(f->httpd, f->dpath[1], range, sizeof range);
    snprintf(want, sizeof want, "bytes=%zu-", kept);
    assert_string_equal(range, want);
    /* the bytes kept were not sent again */
    uint64_t sent = lp_test_httpd_bytes_sent(f->httpd) - sent0;
    assert_true(sent < f->dsize[0] + f->dsize[1] - kept + f->v2[3].len + tree_bytes(f->appdir));
    assert_int_equal(lp_file_exists(part), 0);
    free(part);
    free(dl);
    lp_test_rmtree(root);
    free(root);
}

static void test_disabled(void **state)
{
    fixture *f = *state;
    full_update(f, true);
    assert_int_equal(lp_test_httpd_requests(f->httpd, f->index_path), 0);
    assert_int_equal(lp_test_httpd_requests(f->httpd, f->dpath[0]), 0);
    assert_int_equal(lp_test_httpd_requests(f->httpd, f->dpath[1]), 0);
    assert_int_equal(f->n.index + f->n.no_index + f->n.index_failed, 0);
    assert_int_equal(blob_requests(f, &f->v2[0]), 1);
    assert_int_equal(blob_requests(f, &f->v2[1]), 1);
}

/* ---- the index parser ---------------------------------------------------------------- */

#define A64 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define B64 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define C64 "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static void parse_fails(const char *json, lp_status code, const char *what)
{
    lp_delta_index ix;
    lp_error err;
    assert_int_equal(lp_delta_index_parse(json, strlen(json), 4, 7, &ix, &err), code);
    assert_null(ix.deltas);
    assert_int_equal(ix.count, 0);
    if (!strstr(err.msg, what))
        fail_msg("'%s': expected '%s' in '%s'", json, what, err.msg);
    if (!strstr(err.msg, "delta index 4 -> 7"))
        fail_msg("message does not name the pair: %s", err.msg);
}

static void test_index_parse(void **state)
{
    (void)state;
    const char *good = "{\"to\":7,\"from\":4,\"complete\":false,\"later\":{\"x\":1},\"deltas\":["
                       "{\"result\":\"" B64 "\",\"base\":\"" C64 "\",\"size\":900},"
                       "{\"result\":\"" A64 "\",\"base\":\"" B64 "\",\"size\":152,\"z\":0},"
                       "{\"result\":\"" B64 "\",\"base\":\"" A64 "\",\"size\":1000}]}";
    lp_delta_index ix;
    lp_error err;
    assert_int_equal(lp_delta_index_parse(good, strlen(good), 4, 7, &ix, &err), LP_OK);
    assert_int_equal(ix.from, 4);
    assert_int_equal(ix.to, 7);
    assert_false(ix.complete);
    assert_int_equal(ix.count, 3);
    assert_string_equal(ix.deltas[0].result, A64);
    size_t n;
    const lp_delta_ref *r = lp_delta_index_find(&ix, B64, &n);
    assert_non_null(r);
    assert_int_equal(n, 2);
    assert_string_equal(r[0].base, A64);
    assert_int_equal(r[0].size, 1000);
    assert_string_equal(r[1].base, C64);
    assert_null(lp_delta_index_find(&ix, C64, &n));
    assert_int_equal(n, 0);
    lp_delta_index_free(&ix);
    lp_delta_index_free(&ix);
    lp_delta_index_free(NULL);

    const char *empty = "{\"from\":4,\"to\":7,\"complete\":true,\"deltas\":[]}";
    assert_int_equal(lp_delta_index_parse(empty, strlen(empty), 4, 7, &ix, &err), LP_OK);
    assert_true(ix.complete);
    assert_int_equal(ix.count, 0);
    lp_delta_index_free(&ix);

#define ONE(e) "{\"from\":4,\"to\":7,\"complete\":true,\"deltas\":[" e "]}"
    parse_fails("", LP_ERR_MALFORMED, "not valid JSON");
    parse_fails("[]", LP_ERR_MALFORMED, "not a JSON object");
    parse_fails("{\"from\":4,\"to\":7,\"complete\":true,\"deltas\":[]} x", LP_ERR_MALFORMED,
                "not valid JSON");
    parse_fails("{\"from\":4,\"from\":4,\"to\":7,\"complete\":true,\"deltas\":[]}",
                LP_ERR_MALFORMED, "not valid JSON");
    parse_fails("{\"from\":5,\"to\":7,\"complete\":true,\"deltas\":[]}", LP_ERR_MALFORMED,
                "describes 5 -> 7");
    parse_fails("{\"from\":\"4\",\"to\":7,\"complete\":true,\"deltas\":[]}", LP_ERR_MALFORMED,
                "'from'");
    parse_fails("{\"from\":4,\"to\":7,\"deltas\":[]}", LP_ERR_MALFORMED, "'complete'");
    parse_fails("{\"from\":4,\"to\":7,\"complete\":true,\"deltas\":{}}", LP_ERR_MALFORMED,
                "'deltas'");
    parse_fails(ONE("7"), LP_ERR_MALFORMED, "deltas[0]");
    parse_fails(ONE("{\"result\":\"" A64 "\",\"base\":\"" B64 "\"}"), LP_ERR_MALFORMED,
                "deltas[0]");
    parse_fails(ONE("{\"result\":\"" A64 "\",\"base\":\"" A64 "\",\"size\":500}"),
                LP_ERR_MALFORMED, "deltas[0]");
    parse_fails(ONE("{\"result\":\"" A64 "\",\"base\":\"" B64 "\",\"size\":88}"),
                LP_ERR_MALFORMED, "deltas[0]");
    parse_fails(ONE("{\"result\":\"" A64 "\",\"base\":\"" B64 "\",\"size\":-1}"),
                LP_ERR_MALFORMED, "deltas[0]");
    parse_fails(ONE("{\"result\":\"" A64 "\",\"base\":\"" B64 "\",\"size\":500.0}"),
                LP_ERR_MALFORMED, "deltas[0]");
    parse_fails(ONE("{\"result\":\"" A64 "\",\"base\":\"" B64 "\",\"size\":1e400}"),
                LP_ERR_MALFORMED, "not valid JSON");
    parse_fails(ONE("{\"result\":\"" A64 "\",\"base\":\"" B64 "\",\"size\":1152921504606846976}"),
                LP_ERR_MALFORMED, "deltas[0]");
    parse_fails(ONE("{\"result\":\"" A64 "\",\"base\":\"BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
                    "BBBBBBBBBBBBBBBBBBBBBBBB\",\"size\":500}"),
                LP_ERR_MALFORMED, "deltas[0]");
    parse_fails(ONE("{\"result\":\"" A64 "\",\"base\":\"" B64 "\",\"size\":500},"
                    "{\"result\":\"" C64 "\",\"base\":\"" B64 "\",\"size\":500},"
                    "{\"result\":\"" A64 "\",\"base\":\"" B64 "\",\"size\":600}"),
                LP_ERR_MALFORMED, "listed twice");
    /* over the bound */
    size_t big = LP_DELTA_INDEX_MAX_BYTES + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, ' ', big);
    assert_int_equal(lp_delta_index_parse(huge, big, 4, 7, &ix, &err), LP_ERR_TOO_LARGE);
    free(huge);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_parse),
        cmocka_unit_test_setup_teardown(test_update_by_deltas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_delta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_base, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_problems, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disabled, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
