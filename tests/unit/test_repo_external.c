/*
 * test_repo_external.c — a repository kept by a server that never holds
 * the root or targets private keys.
 *
 * Two parties, kept apart in the test as they are in production:
 *   - the publisher holds the root and targets key pairs; it builds the
 *     first root in a scratch repository (public keys of every role,
 *     prepare, sign, attach, assemble) and signs whatever `signed` portion
 *     the server hands it with lp_tuf_sign_signed;
 *   - the server holds only its online snapshot and timestamp key pairs
 *     and the publisher's public keys (as the root lists them); it starts
 *     from the publisher's root (lp_tuf_repo_create_from_root), adds
 *     targets, prepares the targets role, attaches the signatures the
 *     publisher sends back and publishes with its online keys alone.
 * A real lp_tuf_client then refreshes from the served folder (real HTTP on
 * loopback) and downloads the target.
 *
 * Refusals: a corrupted signature, a signature over other bytes, a key the
 * role does not list, too few signatures for a threshold of 2 (and one key
 * counted once), edits after prepare, a root not signed by its own keys, a
 * tampered root, a root of version 2, malformed input.  Each is refused
 * with its status and a message naming the problem, and the repository
 * folder is byte-for-byte unchanged (fingerprinted before and after).
 */
#include "core/buf.h"
#include "core/file.h"
#include "httpd.h"
#include "livepush/hash.h"
#include "livepush/tuf.h"
#include "livepush/tuf_repo.h"
#include "livepush/tuf_sign.h"
#include "testutil.h"
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

/* Expects `call` to fail with `code` and a message containing `text`. */
#define REFUSED(call, code, text)                                                                  \
    do {                                                                                           \
        lp_error_clear(&err);                                                                      \
        lp_status st_ = (call);                                                                    \
        if (st_ != (code))                                                                         \
            fail_msg("%s: expected %s, got %s: %s", #call, lp_status_name(code),                   \
                     lp_status_name(st_), err.msg);                                                \
        if (!strstr(err.msg, (text)))                                                              \
            fail_msg("%s: message \"%s\" does not mention \"%s\"", #call, err.msg, (text));        \
        printf("  refused (%s): %s\n", lp_status_name(st_), err.msg);                              \
    } while (0)

/* ---- files ------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "relative-path size sha256" lines for every file under dir, sorted. */
static void fingerprint_into(const char *dir, const char *rel, lp_buf *out)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[1024];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        assert_true(n < 1024);
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

static char *file_text(const char *dir, const char *name, size_t *len)
{
    char *p = lp_test_join(dir, name);
    char *t = (char *)lp_test_read_file(p, len);
    if (!t)
        fail_msg("cannot read %s", p);
    free(p);
    return t;
}

/* ---- the two parties -------------------------------------------------- */

enum { P_ROOT, P_ROOT2, P_TARGETS, P_TARGETS2, P_OUTSIDER, NPUB };
enum { S_SNAPSHOT, S_TIMESTAMP, NONLINE };

typedef struct world {
    char *dir;
    char scratch[256], repo[256], client[256], rootfile[256];
    /* The publisher's machine: private keys that never reach the server. */
    lp_key *pub[NPUB];
    /* The server: its online key pairs, and its repository. */
    lp_key *online[NONLINE];
    lp_tuf_repo *srv;
    lp_test_httpd *httpd;
    char murl[300], turl[300];
} world;

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    w->dir = lp_test_tmpdir("repo-external");
    assert_non_null(w->dir);
    snprintf(w->scratch, sizeof w->scratch, "%s/publisher-scratch", w->dir);
    snprintf(w->repo, sizeof w->repo, "%s/server-repo", w->dir);
    snprintf(w->client, sizeof w->client, "%s/client", w->dir);
    snprintf(w->rootfile, sizeof w->rootfile, "%s/root-v1.json", w->dir);
    lp_error err;
    for (int i = 0; i < NPUB; i++)
        OK(lp_key_generate(&w->pub[i], i == P_TARGETS2 ? LP_KEY_ECDSA_P256 : LP_KEY_ED25519,
                           &err));
    for (int i = 0; i < NONLINE; i++)
        OK(lp_key_generate(&w->online[i], LP_KEY_ED25519, &err));
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    lp_test_httpd_stop(w->httpd);
    lp_tuf_repo_free(w->srv);
    for (int i = 0; i < NPUB; i++)
        lp_key_free(w->pub[i]);
    for (int i = 0; i < NONLINE; i++)
        lp_key_free(w->online[i]);
    assert_int_equal(lp_test_rmtree(w->dir), 0);
    free(w->dir);
    free(w);
    return 0;
}

/* The public half only, as the other party receives it. */
static lp_key *public_only(const lp_key *k)
{
    lp_error err;
    char *v;
    lp_key *p;
    OK(lp_key_public_value(k, &v, &err));
    OK(lp_key_from_public(&p, lp_key_get_type(k), v, &err));
    free(v);
    assert_false(lp_key_has_private(p));
    return p;
}

static const char *keyid(const lp_key *k)
{
    static char ids[4][65];
    static int n;
    char *id = ids[n++ % 4];
    lp_error err;
    OK(lp_tuf_key_id(k, id, &err));
    return id;
}

/* Publisher: signs the `signed` bytes received and attaches the signature
 * to the server's role (the network in between is a copy of two strings). */
static void publisher_signs(world *w, lp_tuf_repo *r, const char *role, const char *canon,
                            size_t len, int key)
{
    lp_error err;
    char kid[65], *sig;
    OK(lp_tuf_sign_signed(w->pub[key], canon, len, kid, &sig, &err));
    assert_string_equal(kid, keyid(w->pub[key]));
    OK(lp_tuf_repo_add_signature(r, role, kid, sig, &err));
    free(sig);
}

/* Publisher: builds and signs the first root in a scratch repository:
 * root and targets keys are its own (targets threshold `tthreshold` over
 * P_TARGETS and, for 2, P_TARGETS2), snapshot and timestamp keys the
 * server's public keys.  Returns the root file (caller frees). */
static char *publisher_makes_root(world *w, uint32_t tthreshold, size_t *len)
{
    lp_error err;
    lp_tuf_repo *p;
    assert_int_equal(lp_test_rmtree(w->scratch), 0);
    OK(lp_tuf_repo_create(&p, w->scratch, &err));
    lp_key *snap = public_only(w->online[S_SNAPSHOT]);
    lp_key *ts = public_only(w->online[S_TIMESTAMP]);
    OK(lp_tuf_repo_add_key(p, "root", w->pub[P_ROOT], &err));
    OK(lp_tuf_repo_add_key(p, "targets", w->pub[P_TARGETS], &err));
    if (tthreshold > 1)
        OK(lp_tuf_repo_add_key(p, "targets", w->pub[P_TARGETS2], &err));
    OK(lp_tuf_repo_set_threshold(p, "targets", tthreshold, &err));
    OK(lp_tuf_repo_add_key(p, "snapshot", snap, &err));
    OK(lp_tuf_repo_add_key(p, "timestamp", ts, &err));
    lp_key_free(snap);
    lp_key_free(ts);
    char *canon, *bytes;
    size_t clen;
    OK(lp_tuf_repo_prepare(p, "root", &canon, &clen, &err));
    /* Not signed yet: nothing to assemble. */
    REFUSED(lp_tuf_repo_assemble(p, "root", &bytes, len, &err), LP_ERR_BAD_SIGNATURE, "role root");
    publisher_signs(w, p, "root", canon, clen, P_ROOT);
    OK(lp_tuf_repo_assemble(p, "root", &bytes, len, &err));
    /* The file's `signed` portion is exactly the prepared bytes. */
    json_t *doc;
    OK(lp_json_parse(bytes, *len, NULL, &doc, &err));
    char *again;
    size_t alen;
    OK(lp_cjson_dumps(json_object_get(doc, "signed"), &again, &alen, &err));
    assert_int_equal(alen, clen);
    assert_memory_equal(again, canon, clen);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "signed"),
                                                        "version")),
                     1);
    free(again);
    json_decref(doc);
    free(canon);
    lp_tuf_repo_free(p);
    assert_int_equal(lp_test_write_file(w->rootfile, bytes, *len), 0);
    return bytes;
}

/* Server: a new repository from the root the publisher sent. */
static void server_starts(world *w, const char *root, size_t len)
{
    lp_error err;
    OK(lp_tuf_repo_create_from_root(&w->srv, w->repo, root, len, &err));
    size_t l1, l2;
    char *f1 = file_text(w->repo, "metadata/1.root.json", &l1);
    char *f2 = file_text(w->repo, "metadata/root.json", &l2);
    assert_int_equal(l1, len);
    assert_int_equal(l2, len);
    assert_memory_equal(f1, root, len);
    assert_memory_equal(f2, root, len);
    free(f1);
    free(f2);
    assert_int_equal(lp_tuf_repo_version(w->srv, "root"), 1);
    assert_int_equal(lp_tuf_repo_version(w->srv, "targets"), 0);
    assert_int_equal(lp_tuf_repo_version(w->srv, "timestamp"), 0);
}

static lp_status server_publishes(world *w, lp_error *err)
{
    const lp_key *keys[] = {w->online[S_SNAPSHOT], w->online[S_TIMESTAMP]};
    lp_error_clear(err);
    return lp_tuf_repo_publish(w->srv, keys, 2, err);
}

/* A publish the server cannot complete: refused, and nothing written. */
static void publish_refused(world *w, lp_status code, const char *text)
{
    lp_error err;
    char *before = fingerprint(w->repo);
    uint64_t ts = lp_tuf_repo_version(w->srv, "timestamp");
    REFUSED(server_publishes(w, &err), code, text);
    char *after = fingerprint(w->repo);
    assert_string_equal(after, before);
    assert_int_equal(lp_tuf_repo_version(w->srv, "timestamp"), ts);
    free(before);
    free(after);
}

/* Server prepares targets; returns the canonical bytes (caller frees). */
static char *server_prepares(world *w, const char *role, size_t *len)
{
    lp_error err;
    char *canon;
    OK(lp_tuf_repo_prepare(w->srv, role, &canon, len, &err));
    assert_int_equal(strlen(canon), *len);
    return canon;
}

/* Client: refresh over HTTP, download `name`, compare with `want`. */
static void client_gets(world *w, const char *name, const char *want, uint64_t root_version)
{
    lp_error err;
    if (!w->httpd) {
        w->httpd = lp_test_httpd_start(w->repo);
        assert_non_null(w->httpd);
        snprintf(w->murl, sizeof w->murl, "%s/metadata", lp_test_httpd_url(w->httpd));
        snprintf(w->turl, sizeof w->turl, "%s/targets", lp_test_httpd_url(w->httpd));
        /* The device trusts the root the publisher made, not the server. */
        OK(lp_tuf_init_trusted_root(w->client, w->rootfile, &err));
    }
    lp_tuf_client_config cfg = {.metadata_dir = w->client, .metadata_url = w->murl,
                                .targets_url = w->turl};
    lp_tuf_client *c;
    OK(lp_tuf_client_open(&c, &cfg, &err));
    lp_tuf_step step = LP_TUF_STEP_NONE;
    lp_error_clear(&err);
    if (lp_tuf_client_refresh(c, &step, &err))
        fail_msg("refresh failed at %s: %s", lp_tuf_step_name(step), err.msg);
    lp_tuf_versions v;
    lp_tuf_client_versions(c, &v);
    assert_int_equal(v.root, root_version);
    assert_int_equal(v.targets, lp_tuf_repo_version(w->srv, "targets"));
    assert_int_equal(v.timestamp, lp_tuf_repo_version(w->srv, "timestamp"));
    lp_tuf_target *t;
    OK(lp_tuf_client_find_target(c, name, &t, &err));
    char *dest = lp_test_join(w->dir, "download.bin");
    OK(lp_tuf_client_download_target(c, t, dest, &err));
    size_t len;
    uint8_t *got = lp_test_read_file(dest, &len);
    assert_non_null(got);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
    free(got);
    unlink(dest);
    free(dest);
    lp_tuf_target_free(t);
    lp_tuf_client_free(c);
}

/* ---- the whole flow --------------------------------------------------- */

static void test_publisher_signs_server_publishes(void **state)
{
    world *w = *state;
    lp_error err;
    size_t rlen;
    char *root = publisher_makes_root(w, 1, &rlen);
    server_starts(w, root, rlen);
    free(root);

    /* The folder reopens as it was left: root only, the rest to come. */
    lp_tuf_repo_free(w->srv);
    OK(lp_tuf_repo_open(&w->srv, w->repo, &err));
    assert_int_equal(lp_tuf_repo_version(w->srv, "root"), 1);
    assert_int_equal(lp_tuf_repo_version(w->srv, "snapshot"), 0);

    /* A release notes field with a newline: canonical JSON keeps it raw. */
    OK(lp_tuf_repo_add_target(w->srv, "targets", "app/hello.txt", "hello v1\n", 9,
                              "{\"notes\":\"first\\nrelease\",\"version\":\"1.0.0\"}",
                              LP_TUF_HASH_SHA256, &err));
    /* Without the publisher the server cannot sign targets. */
    publish_refused(w, LP_ERR_BAD_SIGNATURE, "role targets");

    size_t clen;
    char *canon = server_prepares(w, "targets", &clen);
    assert_non_null(memchr(canon, '\n', clen));
    /* Prepare is repeatable: same bytes. */
    size_t clen2;
    char *canon2 = server_prepares(w, "targets", &clen2);
    assert_int_equal(clen2, clen);
    assert_memory_equal(canon2, canon, clen);
    free(canon2);

    publisher_signs(w, w->srv, "targets", canon, clen, P_TARGETS);
    OK(server_publishes(w, &err));
    assert_int_equal(lp_tuf_repo_version(w->srv, "targets"), 1);
    assert_int_equal(lp_tuf_repo_version(w->srv, "snapshot"), 1);
    assert_int_equal(lp_tuf_repo_version(w->srv, "timestamp"), 1);
    assert_int_equal(lp_tuf_repo_version(w->srv, "root"), 1);

    /* What was written is what was prepared and signed. */
    size_t flen;
    char *file = file_text(w->repo, "metadata/1.targets.json", &flen);
    json_t *doc;
    OK(lp_json_parse(file, flen, NULL, &doc, &err));
    free(file);
    json_t *sgn = json_object_get(doc, "signed");
    char *written;
    size_t wlen;
    OK(lp_cjson_dumps(sgn, &written, &wlen, &err));
    assert_int_equal(wlen, clen);
    assert_memory_equal(written, canon, clen);
    free(written);
    json_t *sigs = json_object_get(doc, "signatures");
    assert_int_equal(json_array_size(sigs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(sigs, 0), "keyid")),
                        keyid(w->pub[P_TARGETS]));
    /* Another JSON layout of the same `signed` object is the same signing
     * input: the (deterministic) ed25519 signature is the one in the file. */
    char *pretty = json_dumps(sgn, JSON_INDENT(3) | JSON_ENSURE_ASCII);
    assert_non_null(pretty);
    char kid[65], *sig;
    OK(lp_tuf_sign_signed(w->pub[P_TARGETS], pretty, strlen(pretty), kid, &sig, &err));
    assert_string_equal(sig,
                        json_string_value(json_object_get(json_array_get(sigs, 0), "sig")));
    free(sig);
    free(pretty);
    json_decref(doc);
    free(canon);

    client_gets(w, "app/hello.txt", "hello v1\n", 1);

    /* A second release, with the server restarting while the publisher
     * signs: the server records the edit and an explicit expiry, prepares,
     * and drops the repository. */
    lp_tuf_repo_free(w->srv);
    OK(lp_tuf_repo_open(&w->srv, w->repo, &err));
    int64_t expiry = 4102444800; /* 2100-01-01 */
    OK(lp_tuf_repo_add_target(w->srv, "targets", "app/hello.txt", "hello v2\n", 9, NULL,
                              LP_TUF_HASH_SHA256_SHA512, &err));
    OK(lp_tuf_repo_set_expires(w->srv, "targets", expiry, &err));
    canon = server_prepares(w, "targets", &clen);
    lp_tuf_repo_free(w->srv);
    /* Meanwhile the timestamp is refreshed from a fresh copy: online
     * keys only, no publisher needed. */
    OK(lp_tuf_repo_open(&w->srv, w->repo, &err));
    OK(server_publishes(w, &err));
    assert_int_equal(lp_tuf_repo_version(w->srv, "timestamp"), 2);
    client_gets(w, "app/hello.txt", "hello v1\n", 1);
    lp_tuf_repo_free(w->srv);
    /* The publisher signs what it was sent. */
    char kid2[65], *sig2;
    OK(lp_tuf_sign_signed(w->pub[P_TARGETS], canon, clen, kid2, &sig2, &err));
    /* The server repeats the edit, prepares the same bytes again and
     * attaches the signature. */
    OK(lp_tuf_repo_open(&w->srv, w->repo, &err));
    OK(lp_tuf_repo_add_target(w->srv, "targets", "app/hello.txt", "hello v2\n", 9, NULL,
                              LP_TUF_HASH_SHA256_SHA512, &err));
    OK(lp_tuf_repo_set_expires(w->srv, "targets", expiry, &err));
    canon2 = server_prepares(w, "targets", &clen2);
    assert_int_equal(clen2, clen);
    assert_memory_equal(canon2, canon, clen);
    free(canon2);
    free(canon);
    OK(lp_tuf_repo_add_signature(w->srv, "targets", kid2, sig2, &err));
    free(sig2);
    OK(server_publishes(w, &err));
    client_gets(w, "app/hello.txt", "hello v2\n", 1);
    assert_int_equal(lp_tuf_repo_version(w->srv, "targets"), 2);
    assert_int_equal(lp_tuf_repo_version(w->srv, "snapshot"), 2);
    assert_int_equal(lp_tuf_repo_version(w->srv, "timestamp"), 3);
}

/* ---- refused signatures ------------------------------------------------ */

static void test_bad_signatures_refused(void **state)
{
    world *w = *state;
    lp_error err;
    size_t rlen;
    char *root = publisher_makes_root(w, 1, &rlen);
    server_starts(w, root, rlen);
    OK(lp_tuf_repo_add_target(w->srv, "targets", "a.txt", "a", 1, NULL, LP_TUF_HASH_SHA256,
                              &err));
    char kid[65], *sig;
    /* Not prepared yet. */
    REFUSED(lp_tuf_repo_add_signature(w->srv, "targets", keyid(w->pub[P_TARGETS]), "00", &err),
            LP_ERR_STATE, "not been prepared");
    size_t clen;
    char *canon = server_prepares(w, "targets", &clen);

    /* A corrupted signature by the right key. */
    OK(lp_tuf_sign_signed(w->pub[P_TARGETS], canon, clen, kid, &sig, &err));
    sig[10] = sig[10] == '0' ? '1' : '0';
    REFUSED(lp_tuf_repo_add_signature(w->srv, "targets", kid, sig, &err), LP_ERR_BAD_SIGNATURE,
            kid);
    assert_non_null(strstr(err.msg, "does not verify"));
    free(sig);
    /* The right key over other bytes (the root it signed earlier). */
    /* (A whole metadata file is not a `signed` portion.) */
    REFUSED(lp_tuf_sign_signed(w->pub[P_TARGETS], root, rlen, kid, &sig, &err), LP_ERR_MALFORMED,
            "_type");
    json_t *rdoc;
    OK(lp_json_parse(root, rlen, NULL, &rdoc, &err));
    char *rsigned = json_dumps(json_object_get(rdoc, "signed"), JSON_COMPACT);
    OK(lp_tuf_sign_signed(w->pub[P_TARGETS], rsigned, strlen(rsigned), kid, &sig, &err));
    REFUSED(lp_tuf_repo_add_signature(w->srv, "targets", kid, sig, &err), LP_ERR_BAD_SIGNATURE,
            kid);
    free(sig);
    free(rsigned);
    json_decref(rdoc);
    /* Keys the targets role does not list: the root key, an outsider, a
     * second publisher key; then an online key and a key ID nobody has. */
    static const int others[] = {P_ROOT, P_OUTSIDER, P_TARGETS2};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        OK(lp_tuf_sign_signed(w->pub[others[i]], canon, clen, kid, &sig, &err));
        REFUSED(lp_tuf_repo_add_signature(w->srv, "targets", kid, sig, &err),
                LP_ERR_BAD_SIGNATURE, "not authorised to sign role targets");
        assert_non_null(strstr(err.msg, kid));
        free(sig);
    }
    REFUSED(lp_tuf_repo_add_signature(w->srv, "targets", keyid(w->online[S_SNAPSHOT]), "00",
                                      &err),
            LP_ERR_BAD_SIGNATURE, "not authorised");
    REFUSED(lp_tuf_repo_add_signature(w->srv, "targets", "0123abcd", "00", &err),
            LP_ERR_BAD_SIGNATURE, "key 0123abcd is not authorised");
    REFUSED(lp_tuf_repo_add_signature(w->srv, "targets", "", "00", &err), LP_ERR_INVALID_ARG,
            "key ID");
    REFUSED(lp_tuf_repo_add_signature(w->srv, "targets", keyid(w->pub[P_TARGETS]), "xyz", &err),
            LP_ERR_MALFORMED, "hex");
    REFUSED(lp_tuf_repo_add_signature(w->srv, "nobody", keyid(w->pub[P_TARGETS]), "00", &err),
            LP_ERR_NOT_FOUND, "nobody");
    /* None of that counts: the publish is refused, nothing written. */
    publish_refused(w, LP_ERR_BAD_SIGNATURE, "role targets");
    /* The good signature goes through. */
    publisher_signs(w, w->srv, "targets", canon, clen, P_TARGETS);
    OK(server_publishes(w, &err));
    client_gets(w, "a.txt", "a", 1);
    free(canon);
    free(root);
}

/* ---- thresholds ------------------------------------------------------- */

static void test_threshold_two(void **state)
{
    world *w = *state;
    lp_error err;
    size_t rlen;
    char *root = publisher_makes_root(w, 2, &rlen);
    server_starts(w, root, rlen);
    free(root);
    OK(lp_tuf_repo_add_target(w->srv, "targets", "two.txt", "two", 3, NULL, LP_TUF_HASH_SHA256,
                              &err));
    size_t clen;
    char *canon = server_prepares(w, "targets", &clen);
    publisher_signs(w, w->srv, "targets", canon, clen, P_TARGETS);
    static const char *const below =
        "role targets (version 1): threshold not met: needs 2 signatures by its keys";
    publish_refused(w, LP_ERR_BAD_SIGNATURE, below);
    /* The same key again is still one key. */
    publisher_signs(w, w->srv, "targets", canon, clen, P_TARGETS);
    publish_refused(w, LP_ERR_BAD_SIGNATURE, below);
    /* The second key (ecdsa: a new signature each time, both valid). */
    publisher_signs(w, w->srv, "targets", canon, clen, P_TARGETS2);
    OK(server_publishes(w, &err));
    size_t flen;
    char *file = file_text(w->repo, "metadata/1.targets.json", &flen);
    json_t *doc;
    OK(lp_json_parse(file, flen, NULL, &doc, &err));
    assert_int_equal(json_array_size(json_object_get(doc, "signatures")), 2);
    json_decref(doc);
    free(file);
    free(canon);
    client_gets(w, "two.txt", "two", 1);
}

/* ---- edits after prepare --------------------------------------------- */

static void test_edit_after_prepare(void **state)
{
    world *w = *state;
    lp_error err;
    size_t rlen;
    char *root = publisher_makes_root(w, 1, &rlen);
    server_starts(w, root, rlen);
    free(root);
    OK(lp_tuf_repo_add_target(w->srv, "targets", "one.txt", "1", 1, NULL, LP_TUF_HASH_SHA256,
                              &err));
    size_t clen;
    char *canon = server_prepares(w, "targets", &clen);
    /* An edit after prepare: the signature still verifies over the bytes
     * prepared, but those are no longer what would be published. */
    OK(lp_tuf_repo_add_target(w->srv, "targets", "sneaky.txt", "x", 1, NULL, LP_TUF_HASH_SHA256,
                              &err));
    publisher_signs(w, w->srv, "targets", canon, clen, P_TARGETS);
    publish_refused(w, LP_ERR_STATE, "changed after it was prepared");
    char *bytes;
    size_t blen;
    REFUSED(lp_tuf_repo_assemble(w->srv, "targets", &bytes, &blen, &err), LP_ERR_STATE,
            "changed after it was prepared");
    /* Removing the edit makes the bytes match again. */
    OK(lp_tuf_repo_remove_target(w->srv, "targets", "sneaky.txt", &err));
    OK(lp_tuf_repo_set_expires(w->srv, "targets", 4102444800 /* 2100-01-01 */, &err));
    /* ... but a new expiry is an edit too. */
    publish_refused(w, LP_ERR_STATE, "role targets");
    /* Preparing again gives new bytes and drops the old signature. */
    free(canon);
    canon = server_prepares(w, "targets", &clen);
    publish_refused(w, LP_ERR_BAD_SIGNATURE, "role targets");
    publisher_signs(w, w->srv, "targets", canon, clen, P_TARGETS);
    OK(server_publishes(w, &err));
    client_gets(w, "one.txt", "1", 1);
    free(canon);
    /* A prepared role that was published is no longer prepared. */
    REFUSED(lp_tuf_repo_add_signature(w->srv, "targets", keyid(w->pub[P_TARGETS]), "00", &err),
            LP_ERR_STATE, "not been prepared");
}

/* ---- root rotation through attached signatures ------------------------- */

static void test_root_rotation(void **state)
{
    world *w = *state;
    lp_error err;
    size_t rlen;
    char *root = publisher_makes_root(w, 1, &rlen);
    server_starts(w, root, rlen);
    free(root);
    OK(lp_tuf_repo_add_target(w->srv, "targets", "r.txt", "r", 1, NULL, LP_TUF_HASH_SHA256,
                              &err));
    size_t clen;
    char *canon = server_prepares(w, "targets", &clen);
    publisher_signs(w, w->srv, "targets", canon, clen, P_TARGETS);
    free(canon);
    OK(server_publishes(w, &err));
    client_gets(w, "r.txt", "r", 1);

    /* Root key P_ROOT -> P_ROOT2 (the server only ever sees public keys). */
    lp_key *newroot = public_only(w->pub[P_ROOT2]);
    OK(lp_tuf_repo_remove_key(w->srv, "root", keyid(w->pub[P_ROOT]), &err));
    OK(lp_tuf_repo_add_key(w->srv, "root", newroot, &err));
    lp_key_free(newroot);
    publish_refused(w, LP_ERR_BAD_SIGNATURE, "role root");
    canon = server_prepares(w, "root", &clen);
    /* Outsiders are refused; the old root key is accepted. */
    char kid[65], *sig;
    OK(lp_tuf_sign_signed(w->pub[P_OUTSIDER], canon, clen, kid, &sig, &err));
    REFUSED(lp_tuf_repo_add_signature(w->srv, "root", kid, sig, &err), LP_ERR_BAD_SIGNATURE,
            "neither the new root nor the previous root");
    free(sig);
    publisher_signs(w, w->srv, "root", canon, clen, P_ROOT);
    /* The new root's own threshold is not met yet. */
    publish_refused(w, LP_ERR_BAD_SIGNATURE, "role root (version 2)");
    publisher_signs(w, w->srv, "root", canon, clen, P_ROOT2);
    free(canon);
    OK(server_publishes(w, &err));
    assert_int_equal(lp_tuf_repo_version(w->srv, "root"), 2);
    client_gets(w, "r.txt", "r", 2);
    /* Only the new key now: the old one is not authorised any more. */
    OK(lp_tuf_repo_touch(w->srv, "root", &err));
    canon = server_prepares(w, "root", &clen);
    OK(lp_tuf_sign_signed(w->pub[P_ROOT], canon, clen, kid, &sig, &err));
    REFUSED(lp_tuf_repo_add_signature(w->srv, "root", kid, sig, &err), LP_ERR_BAD_SIGNATURE,
            "not authorised");
    free(sig);
    publisher_signs(w, w->srv, "root", canon, clen, P_ROOT2);
    free(canon);
    OK(server_publishes(w, &err));
    client_gets(w, "r.txt", "r", 3);
}

/* ---- refused roots ----------------------------------------------------- */

/* create_from_root refuses and leaves the parent folder as it was. */
static void root_refused(world *w, const void *root, size_t len, lp_status code,
                         const char *text)
{
    lp_error err;
    char *before = fingerprint(w->dir);
    lp_tuf_repo *r = (lp_tuf_repo *)1;
    REFUSED(lp_tuf_repo_create_from_root(&r, w->repo, root, len, &err), code, text);
    assert_null(r);
    char *after = fingerprint(w->dir);
    assert_string_equal(after, before);
    free(before);
    free(after);
}

/* The root file re-rendered after `edit` changed its document. */
static char *edited_root(const char *root, size_t len, void (*edit)(json_t *doc, world *w),
                         world *w, size_t *out_len)
{
    lp_error err;
    json_t *doc;
    OK(lp_json_parse(root, len, NULL, &doc, &err));
    edit(doc, w);
    char *bytes;
    OK(lp_json_dump_compact(doc, &bytes, out_len, &err));
    json_decref(doc);
    return bytes;
}

static void no_signatures(json_t *doc, world *w)
{
    (void)w;
    json_array_clear(json_object_get(doc, "signatures"));
}

static void later_expiry(json_t *doc, world *w)
{
    (void)w;
    json_object_set_new(json_object_get(doc, "signed"), "expires",
                        json_string("2999-01-01T00:00:00Z"));
}

/* Signed, but by the targets key, which the root role does not list. */
static void signed_by_targets_key(json_t *doc, world *w)
{
    lp_error err;
    char *s = json_dumps(json_object_get(doc, "signed"), JSON_COMPACT);
    char kid[65], *sig;
    OK(lp_tuf_sign_signed(w->pub[P_TARGETS], s, strlen(s), kid, &sig, &err));
    json_t *sigs = json_object_get(doc, "signatures");
    json_array_clear(sigs);
    json_array_append_new(sigs, json_pack("{s:s, s:s}", "keyid", kid, "sig", sig));
    free(sig);
    free(s);
}

static void no_consistent_snapshot(json_t *doc, world *w)
{
    (void)w;
    json_object_set_new(json_object_get(doc, "signed"), "consistent_snapshot", json_false());
}

static void unreachable_threshold(json_t *doc, world *w)
{
    (void)w;
    json_t *roles = json_object_get(json_object_get(doc, "signed"), "roles");
    json_object_set_new(json_object_get(roles, "timestamp"), "threshold", json_integer(2));
}

static void test_bad_roots_refused(void **state)
{
    world *w = *state;
    lp_error err;
    size_t rlen, len;
    char *root = publisher_makes_root(w, 1, &rlen);
    char *bad;

    bad = edited_root(root, rlen, no_signatures, w, &len);
    root_refused(w, bad, len, LP_ERR_BAD_SIGNATURE, "not signed by a threshold of its own root");
    free(bad);
    bad = edited_root(root, rlen, signed_by_targets_key, w, &len);
    root_refused(w, bad, len, LP_ERR_BAD_SIGNATURE, "0 of 1");
    free(bad);
    bad = edited_root(root, rlen, later_expiry, w, &len);
    root_refused(w, bad, len, LP_ERR_BAD_SIGNATURE, "root version 1");
    free(bad);
    bad = edited_root(root, rlen, no_consistent_snapshot, w, &len);
    root_refused(w, bad, len, LP_ERR_UNSUPPORTED, "consistent_snapshot");
    free(bad);
    bad = edited_root(root, rlen, unreachable_threshold, w, &len);
    root_refused(w, bad, len, LP_ERR_INVALID_ARG, "role timestamp needs 2 signatures");
    free(bad);
    /* Properly signed, but expired. */
    {
        lp_tuf_repo *p;
        char *dir = lp_test_join(w->dir, "expired-scratch");
        OK(lp_tuf_repo_create(&p, dir, &err));
        OK(lp_tuf_repo_add_key(p, "root", w->pub[P_ROOT], &err));
        OK(lp_tuf_repo_add_key(p, "targets", w->pub[P_TARGETS], &err));
        OK(lp_tuf_repo_add_key(p, "snapshot", w->online[S_SNAPSHOT], &err));
        OK(lp_tuf_repo_add_key(p, "timestamp", w->online[S_TIMESTAMP], &err));
        OK(lp_tuf_repo_set_expires(p, "root", 946684800 /* 2000-01-01 */, &err));
        char *canon;
        size_t clen;
        OK(lp_tuf_repo_prepare(p, "root", &canon, &clen, &err));
        publisher_signs(w, p, "root", canon, clen, P_ROOT);
        OK(lp_tuf_repo_assemble(p, "root", &bad, &len, &err));
        lp_tuf_repo_free(p);
        free(canon);
        free(dir);
        root_refused(w, bad, len, LP_ERR_EXPIRED, "expired at 2000-01-01T00:00:00Z");
        free(bad);
    }
    static const char *const cut = "{\"signed\":";
    static const char *const not_root = "{\"signatures\":[],\"signed\":{\"_type\":\"targets\"}}";
    root_refused(w, cut, strlen(cut), LP_ERR_MALFORMED, "invalid JSON");
    root_refused(w, not_root, strlen(not_root), LP_ERR_MALFORMED, "_type");
    root_refused(w, root, 0, LP_ERR_MALFORMED, "empty");

    /* A real, self-signed root of version 2: the publisher's own full
     * repository (all keys at hand) rotated once. */
    lp_tuf_repo *p;
    char *full = lp_test_join(w->dir, "full");
    OK(lp_tuf_repo_create(&p, full, &err));
    OK(lp_tuf_repo_add_key(p, "root", w->pub[P_ROOT], &err));
    OK(lp_tuf_repo_add_key(p, "targets", w->pub[P_TARGETS], &err));
    OK(lp_tuf_repo_add_key(p, "snapshot", w->online[S_SNAPSHOT], &err));
    OK(lp_tuf_repo_add_key(p, "timestamp", w->online[S_TIMESTAMP], &err));
    const lp_key *all[] = {w->pub[P_ROOT], w->pub[P_TARGETS], w->online[S_SNAPSHOT],
                           w->online[S_TIMESTAMP]};
    OK(lp_tuf_repo_publish(p, all, 4, &err));
    OK(lp_tuf_repo_touch(p, "root", &err));
    OK(lp_tuf_repo_publish(p, all, 4, &err));
    lp_tuf_repo_free(p);
    char *v2path = lp_test_join(full, "metadata/2.root.json");
    size_t v2len;
    char *v2 = (char *)lp_test_read_file(v2path, &v2len);
    assert_non_null(v2);
    root_refused(w, v2, v2len, LP_ERR_VERSION_MISMATCH, "version 2");
    free(v2);
    free(v2path);
    /* The same repository's version 1 is fine as a start. */
    char *v1path = lp_test_join(full, "metadata/1.root.json");
    size_t v1len;
    char *v1 = (char *)lp_test_read_file(v1path, &v1len);
    OK(lp_tuf_repo_create_from_root(&w->srv, w->repo, v1, v1len, &err));
    /* ... once: the folder now holds metadata. */
    lp_tuf_repo *again = NULL;
    char *before = fingerprint(w->repo);
    REFUSED(lp_tuf_repo_create_from_root(&again, w->repo, root, rlen, &err), LP_ERR_EXISTS,
            "already holds TUF metadata");
    char *after = fingerprint(w->repo);
    assert_string_equal(after, before);
    free(before);
    free(after);
    free(v1);
    free(v1path);
    free(full);
    free(root);
}

/* ---- the signing helper on its own ------------------------------------- */

static void test_sign_helper(void **state)
{
    world *w = *state;
    lp_error err;
    char kid[65], *sig = (char *)1;
    const char *ok_signed = "{\"_type\":\"timestamp\",\"expires\":\"2099-01-01T00:00:00Z\","
                            "\"meta\":{\"snapshot.json\":{\"version\":1}},"
                            "\"spec_version\":\"1.0.31\",\"version\":1}";
    OK(lp_tuf_sign_signed(w->online[S_TIMESTAMP], ok_signed, strlen(ok_signed), kid, &sig,
                          &err));
    assert_string_equal(kid, keyid(w->online[S_TIMESTAMP]));
    assert_int_equal(strlen(sig), 128);
    free(sig);
    /* Key IDs agree with the key object livepush writes. */
    char *json, id2[65];
    OK(lp_tuf_key_to_json(w->pub[P_TARGETS2], &json, id2, &err));
    assert_string_equal(id2, keyid(w->pub[P_TARGETS2]));
    free(json);
    static const struct {
        const char *text;
        lp_status code;
        const char *says;
    } bad[] = {
        {"not json", LP_ERR_MALFORMED, "invalid JSON"},
        {"[1,2]", LP_ERR_MALFORMED, "_type"},
        {"{\"_type\":\"mirror\"}", LP_ERR_MALFORMED, "_type"},
        {"{\"_type\":\"timestamp\",\"_type\":\"timestamp\"}", LP_ERR_MALFORMED, "duplicate"},
        {"{\"_type\":\"timestamp\",\"expires\":\"2099-01-01T00:00:00Z\",\"meta\":{},"
         "\"spec_version\":\"1.0.31\",\"version\":1}",
         LP_ERR_MALFORMED, "snapshot.json"},
        {"{\"_type\":\"timestamp\",\"expires\":\"2099-01-01T00:00:00Z\",\"meta\":{\"snapshot."
         "json\":{\"version\":1}},\"spec_version\":\"1.0.31\",\"version\":\"1\"}",
         LP_ERR_MALFORMED, "version"},
        {"{\"_type\":\"timestamp\",\"expires\":\"2099-01-01T00:00:00Z\",\"meta\":{\"snapshot."
         "json\":{\"version\":1}},\"spec_version\":\"2.0.0\",\"version\":1}",
         LP_ERR_UNSUPPORTED, "spec_version"},
        {"{\"_type\":\"timestamp\",\"expires\":\"2099-01-01T00:00:00Z\",\"meta\":{\"snapshot."
         "json\":{\"version\":1}},\"spec_version\":\"1.0.31\",\"version\":1,\"x\":1.5}",
         LP_ERR_MALFORMED, "real number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        REFUSED(lp_tuf_sign_signed(w->pub[P_ROOT], bad[i].text, strlen(bad[i].text), kid, &sig,
                                   &err),
                bad[i].code, bad[i].says);
        assert_null(sig);
    }
    /* Trailing bytes after the object. */
    size_t n = strlen(ok_signed);
    char *trail = malloc(n + 3);
    memcpy(trail, ok_signed, n);
    memcpy(trail + n, " {}", 3);
    REFUSED(lp_tuf_sign_signed(w->pub[P_ROOT], trail, n + 3, kid, &sig, &err), LP_ERR_MALFORMED,
            "invalid JSON");
    free(trail);
    /* A public key cannot sign. */
    lp_key *pubonly = public_only(w->pub[P_ROOT]);
    REFUSED(lp_tuf_sign_signed(pubonly, ok_signed, strlen(ok_signed), kid, &sig, &err),
            LP_ERR_STATE, "private");
    lp_key_free(pubonly);

    /* Canonical JSON made readable: raw control bytes inside strings (and
     * only there) become \u00XX; an escaped quote or backslash does not end
     * the string early. */
    static const char canon[] = "{\"a\":\"x\ny\\\"\t\\\\\",\"b\":[1,\"\x01\"]}";
    char *text = NULL;
    size_t tlen = 0;
    OK(lp_tuf_canonical_to_json(canon, sizeof canon - 1, &text, &tlen, &err));
    assert_string_equal(text, "{\"a\":\"x\\u000ay\\\"\\u0009\\\\\",\"b\":[1,\"\\u0001\"]}");
    assert_int_equal(tlen, strlen(text));
    json_t *v = json_loadb(text, tlen, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "a")), "x\ny\"\t\\");
    json_decref(v);
    free(text);
    /* Outside strings nothing changes (the parser refuses it then). */
    OK(lp_tuf_canonical_to_json("{\n}", 3, &text, NULL, &err));
    assert_string_equal(text, "{\n}");
    free(text);
    REFUSED(lp_tuf_canonical_to_json(NULL, 0, &text, NULL, &err), LP_ERR_INVALID_ARG, "NULL");
    assert_null(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publisher_signs_server_publishes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_signatures_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threshold_two, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edit_after_prepare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_roots_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_helper, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
