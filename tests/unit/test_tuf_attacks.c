/*
 * test_tuf_attacks.c — the attacks the TUF specification names, each staged
 * against a repository written by livepush's own writer and served over
 * HTTP on loopback, each required to fail at the right step with the right
 * status and a message that says what was wrong.  (The independent vectors
 * in test_tuf_vectors.c cover the same ground from another writer.)
 */
#include "core/file.h"
#include "httpd.h"
#include "livepush/tuf.h"
#include "livepush/tuf_repo.h"
#include "tuf/json.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

enum { K_ROOT, K_TARGETS, K_TARGETS2, K_SNAPSHOT, K_TIMESTAMP, K_TIMESTAMP2, NKEYS };

typedef struct world {
    char dir[64];     /* scratch folder */
    char repo[128];   /* repository folder (served) */
    char meta[128];   /* client metadata folder */
    lp_key *keys[NKEYS];
    lp_tuf_repo *r;
    lp_test_httpd *httpd;
    char murl[200], turl[200];
} world;

__attribute__((format(printf, 1, 2))) static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

static void publish(world *w, const int *signers, size_t n)
{
    const lp_key *k[NKEYS];
    for (size_t i = 0; i < n; i++)
        k[i] = w->keys[signers[i]];
    lp_error err;
    if (lp_tuf_repo_publish(w->r, k, n, &err))
        fail_msg("publish: %s", err.msg);
}

static const int ALL[] = {K_ROOT, K_TARGETS, K_TARGETS2, K_SNAPSHOT, K_TIMESTAMP, K_TIMESTAMP2};

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    snprintf(w->dir, sizeof w->dir, "/tmp/lp-attack-XXXXXX");
    assert_non_null(mkdtemp(w->dir));
    snprintf(w->repo, sizeof w->repo, "%s/repo", w->dir);
    snprintf(w->meta, sizeof w->meta, "%s/client", w->dir);
    lp_error err;
    for (int i = 0; i < NKEYS; i++)
        assert_int_equal(lp_key_generate(&w->keys[i], LP_KEY_ED25519, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_create(&w->r, w->repo, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_add_key(w->r, "root", w->keys[K_ROOT], &err), LP_OK);
    assert_int_equal(lp_tuf_repo_add_key(w->r, "targets", w->keys[K_TARGETS], &err), LP_OK);
    assert_int_equal(lp_tuf_repo_add_key(w->r, "snapshot", w->keys[K_SNAPSHOT], &err), LP_OK);
    assert_int_equal(lp_tuf_repo_add_key(w->r, "timestamp", w->keys[K_TIMESTAMP], &err), LP_OK);
    assert_int_equal(lp_tuf_repo_add_target(w->r, "targets", "app/hello.txt", "hello, world\n",
                                            13, NULL, LP_TUF_HASH_SHA256, &err),
                     LP_OK);
    publish(w, ALL, NKEYS);
    w->httpd = lp_test_httpd_start(w->repo);
    assert_non_null(w->httpd);
    snprintf(w->murl, sizeof w->murl, "%s/metadata", lp_test_httpd_url(w->httpd));
    snprintf(w->turl, sizeof w->turl, "%s/targets", lp_test_httpd_url(w->httpd));
    char root[200];
    snprintf(root, sizeof root, "%s/metadata/1.root.json", w->repo);
    assert_int_equal(lp_tuf_init_trusted_root(w->meta, root, &err), LP_OK);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    lp_test_httpd_stop(w->httpd);
    lp_tuf_repo_free(w->r);
    for (int i = 0; i < NKEYS; i++)
        lp_key_free(w->keys[i]);
    sh("rm -rf '%s'", w->dir);
    free(w);
    return 0;
}

/* Refreshes a client; returns the status, the failing step and message. */
static lp_status refresh(world *w, int64_t now, lp_tuf_step *step, lp_error *err)
{
    lp_tuf_client_config cfg = {.metadata_dir = w->meta, .metadata_url = w->murl,
                                .targets_url = w->turl, .now = now};
    lp_tuf_client *c;
    lp_status st = lp_tuf_client_open(&c, &cfg, err);
    if (st)
        return st;
    st = lp_tuf_client_refresh(c, step, err);
    lp_tuf_client_free(c);
    return st;
}

static void expect_ok(world *w)
{
    lp_error err;
    lp_tuf_step step;
    if (refresh(w, 0, &step, &err))
        fail_msg("refresh should succeed: %s", err.msg);
}

static void expect_fail(world *w, int64_t now, lp_tuf_step want_step, lp_status want,
                        const char *want_text)
{
    lp_error err;
    lp_error_clear(&err);
    lp_tuf_step step = LP_TUF_STEP_NONE;
    lp_status st = refresh(w, now, &step, &err);
    if (st != want || step != want_step)
        fail_msg("expected %s at %s, got %s at %s: %s", lp_status_name(want),
                 lp_tuf_step_name(want_step), lp_status_name(st), lp_tuf_step_name(step), err.msg);
    if (want_text && !strstr(err.msg, want_text))
        fail_msg("message \"%s\" does not mention \"%s\"", err.msg, want_text);
    printf("  refused: %s\n", err.msg);
}

static char *path_in(world *w, const char *rel)
{
    static char p[300];
    snprintf(p, sizeof p, "%s/%s", w->repo, rel);
    return p;
}

/* Rewrites a served metadata file through a JSON edit callback. */
static void edit_json(const char *path, void (*fn)(json_t *doc))
{
    uint8_t *data;
    size_t len;
    assert_int_equal(lp_file_read(path, 1 << 20, &data, &len, NULL), LP_OK);
    json_t *doc;
    assert_int_equal(lp_json_parse(data, len, NULL, &doc, NULL), LP_OK);
    free(data);
    fn(doc);
    char *out;
    assert_int_equal(lp_json_dump_compact(doc, &out, &len, NULL), LP_OK);
    assert_int_equal(lp_file_write_atomic(path, out, len, 0644, NULL), LP_OK);
    free(out);
    json_decref(doc);
}

static void change_target_length(json_t *doc)
{
    json_t *t = json_object_get(json_object_get(json_object_get(doc, "signed"), "targets"),
                                "app/hello.txt");
    json_object_set_new(t, "length", json_integer(14));
}

/* Arbitrary software: altered targets metadata no longer verifies. */
static void test_arbitrary_software_metadata(void **state)
{
    world *w = *state;
    edit_json(path_in(w, "metadata/1.targets.json"), change_target_length);
    expect_fail(w, 0, LP_TUF_STEP_TARGETS, LP_ERR_BAD_SIGNATURE, "signature threshold not met");
}

/* Arbitrary software: altered target bytes are refused and never written. */
static void test_arbitrary_software_content(void **state)
{
    world *w = *state;
    lp_tuf_client_config cfg = {.metadata_dir = w->meta, .metadata_url = w->murl,
                                .targets_url = w->turl};
    lp_tuf_client *c;
    lp_error err;
    assert_int_equal(lp_tuf_client_open(&c, &cfg, &err), LP_OK);
    assert_int_equal(lp_tuf_client_refresh(c, NULL, &err), LP_OK);
    lp_tuf_target *t;
    assert_int_equal(lp_tuf_client_find_target(c, "app/hello.txt", &t, &err), LP_OK);
    char served[300];
    snprintf(served, sizeof served, "%s/targets/app/%s.hello.txt", w->repo,
             lp_tuf_target_sha256(t));
    assert_int_equal(lp_file_write_atomic(served, "HELLO, world\n", 13, 0644, NULL), LP_OK);
    char dest[200];
    snprintf(dest, sizeof dest, "%s/out.txt", w->dir);
    assert_int_equal(lp_tuf_client_download_target(c, t, dest, &err), LP_ERR_HASH_MISMATCH);
    assert_non_null(strstr(err.msg, "sha256 hash does not match"));
    assert_false(lp_file_exists(dest));
    /* A target that is not signed at all is not found. */
    lp_tuf_target *t2;
    assert_int_equal(lp_tuf_client_find_target(c, "app/evil.txt", &t2, &err), LP_ERR_NOT_FOUND);
    lp_tuf_target_free(t);
    lp_tuf_client_free(c);
}

/* Rollback: an older, validly signed timestamp after a newer one. */
static void test_rollback_timestamp(void **state)
{
    world *w = *state;
    expect_ok(w);
    sh("cp '%s' '%s/ts1.json'", path_in(w, "metadata/timestamp.json"), w->dir);
    lp_error err;
    assert_int_equal(lp_tuf_repo_touch(w->r, "targets", &err), LP_OK);
    publish(w, ALL, NKEYS);
    expect_ok(w);
    sh("cp '%s/ts1.json' '%s'", w->dir, path_in(w, "metadata/timestamp.json"));
    expect_fail(w, 0, LP_TUF_STEP_TIMESTAMP, LP_ERR_ROLLBACK, "lower than trusted version");
}

/* Indefinite freeze: every role checked against the clock. */
static void test_freeze(void **state)
{
    world *w = *state;
    expect_ok(w);
    lp_error err;
    /* Root expires in 365 days by default: a clock past it fails at root. */
    int64_t later = time(NULL) + 400LL * 86400;
    expect_fail(w, later, LP_TUF_STEP_ROOT, LP_ERR_EXPIRED, "root.json version 1 expired");
    /* An expired timestamp, served fresh. */
    assert_int_equal(lp_tuf_repo_set_expires(w->r, "timestamp", time(NULL) - 60, &err), LP_OK);
    publish(w, ALL, NKEYS);
    expect_fail(w, 0, LP_TUF_STEP_TIMESTAMP, LP_ERR_EXPIRED, "timestamp.json version");
    /* Fresh timestamp, expired snapshot. */
    assert_int_equal(lp_tuf_repo_set_expires(w->r, "timestamp", time(NULL) + 3600, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_set_expires(w->r, "snapshot", time(NULL) - 60, &err), LP_OK);
    publish(w, ALL, NKEYS);
    expect_fail(w, 0, LP_TUF_STEP_SNAPSHOT, LP_ERR_EXPIRED, "snapshot.json version");
    /* Expired targets. */
    assert_int_equal(lp_tuf_repo_set_expires(w->r, "snapshot", time(NULL) + 3600, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_set_expires(w->r, "targets", time(NULL) - 60, &err), LP_OK);
    publish(w, ALL, NKEYS);
    expect_fail(w, 0, LP_TUF_STEP_TARGETS, LP_ERR_EXPIRED, "targets.json version");
}

/* Endless data: metadata streamed without end is cut off at its bound. */
static void test_endless_metadata(void **state)
{
    world *w = *state;
    lp_test_httpd_set_endless(w->httpd, "/metadata/timestamp.json");
    expect_fail(w, 0, LP_TUF_STEP_TIMESTAMP, LP_ERR_TOO_LARGE, "limit");
    lp_test_httpd_set_endless(w->httpd, "/metadata/2.root.json");
    expect_fail(w, 0, LP_TUF_STEP_ROOT, LP_ERR_TOO_LARGE, "limit");
}

static void drop_last_signature(json_t *doc)
{
    json_t *sigs = json_object_get(doc, "signatures");
    json_array_remove(sigs, json_array_size(sigs) - 1);
}

/* Key compromise below the threshold: one of two targets keys is not enough,
 * and the same key's signature twice is still one. */
static void test_threshold(void **state)
{
    world *w = *state;
    lp_error err;
    assert_int_equal(lp_tuf_repo_add_key(w->r, "targets", w->keys[K_TARGETS2], &err), LP_OK);
    assert_int_equal(lp_tuf_repo_set_threshold(w->r, "targets", 2, &err), LP_OK);
    publish(w, ALL, NKEYS);
    expect_ok(w);
    assert_int_equal(lp_tuf_repo_touch(w->r, "targets", &err), LP_OK);
    publish(w, ALL, NKEYS);
    char p[64];
    snprintf(p, sizeof p, "metadata/%llu.targets.json",
             (unsigned long long)lp_tuf_repo_version(w->r, "targets"));
    sh("cp '%s' '%s/full.json'", path_in(w, p), w->dir);
    edit_json(path_in(w, p), drop_last_signature);
    expect_fail(w, 0, LP_TUF_STEP_TARGETS, LP_ERR_BAD_SIGNATURE, "1 of 2");
    /* Put the remaining signature in twice: still one key. */
    uint8_t *data;
    size_t len;
    assert_int_equal(lp_file_read(path_in(w, p), 1 << 20, &data, &len, NULL), LP_OK);
    json_t *doc;
    assert_int_equal(lp_json_parse(data, len, NULL, &doc, NULL), LP_OK);
    free(data);
    json_t *sigs = json_object_get(doc, "signatures");
    json_array_append(sigs, json_array_get(sigs, 0));
    char *out;
    assert_int_equal(lp_json_dump_compact(doc, &out, &len, NULL), LP_OK);
    assert_int_equal(lp_file_write_atomic(path_in(w, p), out, len, 0644, NULL), LP_OK);
    free(out);
    json_decref(doc);
    expect_fail(w, 0, LP_TUF_STEP_TARGETS, LP_ERR_BAD_SIGNATURE, "1 of 2");
    /* The genuine file with both signatures is accepted. */
    sh("cp '%s/full.json' '%s'", w->dir, path_in(w, p));
    expect_ok(w);
}

/* Fast-forward: a stolen timestamp key pushed the client to a high
 * timestamp version; after the owners rotate the timestamp key the client
 * must recover (spec 5.3.11) instead of refusing every new timestamp. */
static void test_fast_forward_recovery(void **state)
{
    world *w = *state;
    expect_ok(w);
    /* The attacker's copy of the repository, signed with the stolen key. */
    char evil[200];
    snprintf(evil, sizeof evil, "%s/evil", w->dir);
    sh("cp -a '%s' '%s'", w->repo, evil);
    lp_tuf_repo *er;
    lp_error err;
    assert_int_equal(lp_tuf_repo_open(&er, evil, &err), LP_OK);
    const lp_key *stolen[] = {w->keys[K_TIMESTAMP]};
    for (int i = 0; i < 5; i++)
        assert_int_equal(lp_tuf_repo_publish(er, stolen, 1, &err), LP_OK);
    lp_test_httpd *eh = lp_test_httpd_start(evil);
    char good_murl[200];
    snprintf(good_murl, sizeof good_murl, "%s", w->murl);
    snprintf(w->murl, sizeof w->murl, "%s/metadata", lp_test_httpd_url(eh));
    expect_ok(w); /* the client now trusts the attacker's high timestamp version */
    snprintf(w->murl, sizeof w->murl, "%s", good_murl);
    /* Without a key rotation the genuine repository looks like a rollback. */
    publish(w, ALL, NKEYS);
    expect_fail(w, 0, LP_TUF_STEP_TIMESTAMP, LP_ERR_ROLLBACK, "lower than trusted version");
    /* The owners rotate the timestamp key: the client recovers. */
    char *json;
    char keyid[65];
    assert_int_equal(lp_tuf_key_to_json(w->keys[K_TIMESTAMP], &json, keyid, &err), LP_OK);
    free(json);
    assert_int_equal(lp_tuf_repo_remove_key(w->r, "timestamp", keyid, &err), LP_OK);
    assert_int_equal(lp_tuf_repo_add_key(w->r, "timestamp", w->keys[K_TIMESTAMP2], &err), LP_OK);
    publish(w, ALL, NKEYS);
    expect_ok(w);
    lp_test_httpd_stop(eh);
    lp_tuf_repo_free(er);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_arbitrary_software_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arbitrary_software_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_timestamp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freeze, setup, teardown),
        cmocka_unit_test_setup_teardown(test_endless_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threshold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fast_forward_recovery, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
