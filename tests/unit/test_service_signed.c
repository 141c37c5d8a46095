/*
 * test_service_signed.c — apps whose publisher signs their releases, on a
 * real data folder with real keys.
 *
 * Two parties, kept apart as in production:
 *   - the publisher holds its root key and release keys (generated here,
 *     never given to the service); it builds the app's first root offline
 *     around the server's online public keys, and signs whatever `signed`
 *     portion the service hands it with lp_tuf_sign_signed after checking
 *     that it lists the release it uploaded;
 *   - the service (lp_service_*) holds only the app's snapshot and
 *     timestamp keys.
 * Every check that a release is out goes through a real TUF client
 * (file:// URLs) that trusts the publisher's root file, refreshes and
 * downloads releases/<code>.json.
 *
 * Covered: the whole flow, a threshold of two release keys (signatures
 * sent together, and one after another), wrong signatures refused naming
 * the key, one pending release at a time, cancel, rollback, roots the
 * server refuses (nothing written), a restart between prepare and sign,
 * the crash window (metadata written, database still pending) repaired at
 * the next start, and recovery that never signs.
 */
#include "livepush/db.h"
#include "livepush/hash.h"
#include "livepush/tuf.h"
#include "livepush/tuf_repo.h"
#include "livepush/tuf_sign.h"
#include "server/log.h"
#include "server/service.h"
#include "testdb.h"
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

/* The publisher's keys. */
enum { P_ROOT, P_REL1, P_REL2, P_OUTSIDER, NPUB };

typedef struct fx {
    char *dir;  /* temp folder */
    char *data; /* <dir>/data */
    lp_testdb *tdb; /* the PostgreSQL schema when LP_TEST_PG_URL is set (testdb.h) */
    char *logfile;
    FILE *logf;
    lp_log log;
    lp_service *svc;
    lp_key *pub[NPUB];
} fx;

/* The database of the service: <data>/livepush.db, or the test's schema. */
static const char *db_url(fx *f, char *buf, size_t cap)
{
    if (f->tdb)
        return f->tdb->url;
    snprintf(buf, cap, "sqlite:%s/livepush.db", f->data);
    return buf;
}

static void open_service(fx *f)
{
    lp_service_options o = {.data_dir = f->data, .db_connections = 4, .log = &f->log,
                            .db_url = f->tdb ? f->tdb->url : NULL};
    lp_error err;
    OK(lp_service_open(&f->svc, &o, &err));
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = lp_test_tmpdir("service-signed");
    f->data = lp_test_join(f->dir, "data");
    if (lp_testdb_is_pg())
        assert_non_null(f->tdb = lp_testdb_new(f->dir, "unused"));
    f->logfile = lp_test_join(f->dir, "server.log");
    f->logf = fopen(f->logfile, "w");
    assert_non_null(f->logf);
    setvbuf(f->logf, NULL, _IOLBF, 0);
    f->log = (lp_log){.out = f->logf, .format = LP_LOG_JSON, .min_level = LP_LOG_DEBUG};
    lp_error err;
    for (int i = 0; i < NPUB; i++)
        OK(lp_key_generate(&f->pub[i], i == P_REL2 ? LP_KEY_ECDSA_P256 : LP_KEY_ED25519, &err));
    open_service(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    lp_service_close(f->svc);
    for (int i = 0; i < NPUB; i++)
        lp_key_free(f->pub[i]);
    fclose(f->logf);
    lp_testdb_free(f->tdb);
    assert_int_equal(lp_test_rmtree(f->dir), 0);
    free(f->logfile);
    free(f->data);
    free(f->dir);
    free(f);
    return 0;
}

static void reopen(fx *f)
{
    lp_service_close(f->svc);
    f->svc = NULL;
    open_service(f);
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

/* ---- files ------------------------------------------------------------ */

static char *make_bundle(fx *f, const char *name, const char *text)
{
    char *b = lp_test_join(f->dir, name);
    char *file = lp_test_join(b, "app/main.txt");
    assert_int_equal(lp_test_write_str(file, text), 0);
    free(file);
    return b;
}

/* "path size sha256" lines for every file under dir, sorted by name. */
static void fingerprint_into(const char *dir, FILE *out)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        if (strcmp(nm, ".") != 0 && strcmp(nm, "..") != 0) {
            char *full = lp_test_join(dir, nm);
            struct stat sb;
            assert_int_equal(lstat(full, &sb), 0);
            if (S_ISDIR(sb.st_mode)) {
                fprintf(out, "%s/\n", full);
                fingerprint_into(full, out);
            } else {
                uint8_t dg[LP_HASH_MAX_LEN];
                char hex[65];
                assert_int_equal(lp_hash_file(LP_HASH_SHA256, full, dg, NULL, NULL), LP_OK);
                lp_hex_encode(dg, 32, hex);
                fprintf(out, "%s %lld %s\n", full, (long long)sb.st_size, hex);
            }
            free(full);
        }
        free(names[i]);
    }
    free(names);
}

static char *fingerprint(fx *f, const char *app)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/repos/%s", f->data, app);
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    fingerprint_into(dir, m);
    fclose(m);
    return text;
}

static bool log_mentions(fx *f, const char *text)
{
    fflush(f->logf);
    char *all = (char *)lp_test_read_file(f->logfile, NULL);
    assert_non_null(all);
    bool yes = strstr(all, text) != NULL;
    free(all);
    return yes;
}

/* ---- the publisher ---------------------------------------------------- */

/* A public key from {"keyid", "key": <TUF key object>} as the service
 * hands it out; the key ID must be the key's. */
static lp_key *key_from_entry(json_t *entry)
{
    lp_error err;
    json_t *k = json_object_get(entry, "key");
    lp_key_type type;
    OK(lp_key_type_from_names(json_string_value(json_object_get(k, "keytype")),
                              json_string_value(json_object_get(k, "scheme")), &type, &err));
    lp_key *key = NULL;
    OK(lp_key_from_public(&key, type,
                          json_string_value(json_object_get(json_object_get(k, "keyval"),
                                                            "public")),
                          &err));
    assert_string_equal(keyid(key), json_string_value(json_object_get(entry, "keyid")));
    return key;
}

/* How the publisher builds its first root. */
typedef struct root_plan {
    int nrel;            /* release keys: P_REL1 (and P_REL2 when 2) */
    unsigned threshold;  /* of the targets role */
    const lp_key *snapshot_key;  /* NULL: the server's */
    const lp_key *timestamp_key; /* NULL: the server's */
    const lp_key *extra_targets; /* also listed for targets, or NULL */
    int signer;          /* key that signs the root (P_ROOT) */
} root_plan;

/* Builds and signs the root offline in a scratch repository.  Returns the
 * root file (caller frees) and writes it to <dir>/<app>-root.json, the
 * file devices are set up with. */
static char *publisher_makes_root(fx *f, const char *app, json_t *online, const root_plan *plan,
                                  size_t *len)
{
    lp_error err;
    char scratch[4096], rootfile[4096];
    snprintf(scratch, sizeof scratch, "%s/scratch-%s", f->dir, app);
    snprintf(rootfile, sizeof rootfile, "%s/%s-root.json", f->dir, app);
    assert_int_equal(lp_test_rmtree(scratch), 0);
    lp_tuf_repo *p = NULL;
    OK(lp_tuf_repo_create(&p, scratch, &err));
    lp_key *snap = key_from_entry(json_object_get(online, "snapshot"));
    lp_key *ts = key_from_entry(json_object_get(online, "timestamp"));
    OK(lp_tuf_repo_add_key(p, "root", f->pub[P_ROOT], &err));
    OK(lp_tuf_repo_add_key(p, "targets", f->pub[P_REL1], &err));
    if (plan->nrel > 1)
        OK(lp_tuf_repo_add_key(p, "targets", f->pub[P_REL2], &err));
    if (plan->extra_targets)
        OK(lp_tuf_repo_add_key(p, "targets", plan->extra_targets, &err));
    OK(lp_tuf_repo_set_threshold(p, "targets", plan->threshold, &err));
    OK(lp_tuf_repo_add_key(p, "snapshot", plan->snapshot_key ? plan->snapshot_key : snap, &err));
    OK(lp_tuf_repo_add_key(p, "timestamp", plan->timestamp_key ? plan->timestamp_key : ts,
                           &err));
    lp_key_free(snap);
    lp_key_free(ts);
    char *canon = NULL, *bytes = NULL, kid[65], *sig = NULL;
    size_t clen = 0;
    OK(lp_tuf_repo_prepare(p, "root", &canon, &clen, &err));
    OK(lp_tuf_sign_signed(f->pub[plan->signer], canon, clen, kid, &sig, &err));
    if (plan->signer == P_ROOT) {
        OK(lp_tuf_repo_add_signature(p, "root", kid, sig, &err));
        OK(lp_tuf_repo_assemble(p, "root", &bytes, len, &err));
    } else {
        /* A root signed by a key its root role does not list: the writer
         * will not assemble it, so the publisher's mistake is made by hand. */
        json_t *sgn = NULL;
        OK(lp_json_parse(canon, clen, NULL, &sgn, &err));
        json_t *doc = json_pack("{s:o,s:[{s:s,s:s}]}", "signed", sgn, "signatures", "keyid", kid,
                                "sig", sig);
        bytes = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
        *len = strlen(bytes);
        json_decref(doc);
    }
    free(sig);
    free(canon);
    lp_tuf_repo_free(p);
    assert_int_equal(lp_test_write_file(rootfile, bytes, *len), 0);
    return bytes;
}

/* Creates app `app` whose publisher signs, with `nrel` release keys and a
 * targets threshold. */
static void create_app(fx *f, const char *app, int nrel, unsigned threshold)
{
    lp_error err;
    json_t *online = NULL;
    OK(lp_service_app_begin_signed(f->svc, app, &online, &err));
    root_plan plan = {.nrel = nrel, .threshold = threshold, .signer = P_ROOT};
    size_t len = 0;
    char *root = publisher_makes_root(f, app, online, &plan, &len);
    OK(lp_service_app_set_root(f->svc, app, root, len, &err));
    assert_true(lp_service_app_publisher_signed(f->svc, app));
    assert_string_equal(lp_service_app_signing(f->svc, app), "publisher");
    free(root);
    json_decref(online);
}

/* Canonical JSON keeps control characters inside strings raw, which JSON
 * parsers refuse: the publisher escapes them (inside strings only) before
 * parsing.  Returns a new string. */
static char *escape_controls(const char *text, size_t len)
{
    char *out = malloc(len * 6 + 1), *o = out;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (in_string && c < 0x20) {
            o += sprintf(o, "\\u%04x", c);
            continue;
        }
        *o++ = (char)c;
        if (in_string && c == '\\' && i + 1 < len)
            *o++ = text[++i];
        else if (c == '"')
            in_string = !in_string;
    }
    *o = '\0';
    return out;
}

/* The publisher checks that the `signed` bytes list target
 * releases/<code>.json with the manifest it uploaded, and returns the
 * number of release targets listed. */
static size_t publisher_checks(const char *canon, size_t len, const lp_db_release *rel)
{
    lp_error err;
    json_t *sgn = NULL;
    char *text = escape_controls(canon, len);
    OK(lp_json_parse(text, strlen(text), NULL, &sgn, &err));
    free(text);
    assert_string_equal(json_string_value(json_object_get(sgn, "_type")), "targets");
    json_t *targets = json_object_get(sgn, "targets");
    char name[64];
    snprintf(name, sizeof name, "releases/%lld.json", (long long)rel->version_code);
    json_t *t = json_object_get(targets, name);
    assert_non_null(t);
    assert_string_equal(json_string_value(json_object_get(json_object_get(t, "hashes"),
                                                          "sha256")),
                        rel->manifest_sha256);
    json_t *custom = json_object_get(t, "custom");
    assert_string_equal(json_string_value(json_object_get(custom, "version")), rel->version);
    assert_int_equal(json_integer_value(json_object_get(custom, "version_code")),
                     rel->version_code);
    assert_string_equal(json_string_value(json_object_get(custom, "notes")),
                        "first line\nsecond line");
    size_t n = json_object_size(targets);
    json_decref(sgn);
    return n;
}

/* The publisher signs with key `who`: *kid (65 bytes) and *sig (caller
 * frees). */
static void publisher_signs(fx *f, int who, const char *canon, size_t len, char kid[65],
                            char **sig)
{
    lp_error err;
    OK(lp_tuf_sign_signed(f->pub[who], canon, len, kid, sig, &err));
}

/* Signs with the given keys and calls publish_sign with all the signatures. */
static lp_status sign_and_send(fx *f, const char *app, const char *version, const char *canon,
                               size_t len, const int *who, size_t n, lp_db_release *out,
                               lp_error *err)
{
    char kids[4][65], *sigs[4] = {0};
    const char *kp[4], *sp[4];
    for (size_t i = 0; i < n; i++) {
        publisher_signs(f, who[i], canon, len, kids[i], &sigs[i]);
        kp[i] = kids[i];
        sp[i] = sigs[i];
    }
    lp_error_clear(err);
    lp_status st = lp_service_publish_sign(f->svc, app, version, kp, sp, n, out, err);
    for (size_t i = 0; i < n; i++)
        free(sigs[i]);
    return st;
}

static lp_status prepare(fx *f, const char *app, const char *bundle, const char *version,
                         lp_db_release *out, char **canon, size_t *len, lp_error *err)
{
    lp_release_fields rf = {.version = version, .notes = "first line\nsecond line"};
    lp_error_clear(err);
    return lp_service_publish_prepare(f->svc, app, bundle, NULL, &rf, out, canon, len, err);
}

/* ---- the device ------------------------------------------------------- */

/* Refreshes a fresh TUF client (trusting the publisher's root file) from
 * the app's repository and returns how many of releases/1..<max>.json it
 * finds and downloads; *custom gets the custom JSON of releases/<want>.json. */
static int count_listed(fx *f, const char *app, int max, int want, char **custom)
{
    char meta[4096], targets[4096], root[4096], cdir[4096];
    snprintf(meta, sizeof meta, "file://%s/repos/%s/metadata", f->data, app);
    snprintf(targets, sizeof targets, "file://%s/repos/%s/targets", f->data, app);
    snprintf(root, sizeof root, "%s/%s-root.json", f->dir, app);
    snprintf(cdir, sizeof cdir, "%s/client-%d", f->dir, rand());
    lp_error err;
    OK(lp_tuf_init_trusted_root(cdir, root, &err));
    lp_tuf_client_config cfg = {.metadata_dir = cdir, .metadata_url = meta,
                                .targets_url = targets};
    lp_tuf_client *c = NULL;
    OK(lp_tuf_client_open(&c, &cfg, &err));
    OK(lp_tuf_client_refresh(c, NULL, &err));
    int n = 0;
    for (int code = 1; code <= max; code++) {
        char name[64];
        snprintf(name, sizeof name, "releases/%d.json", code);
        lp_tuf_target *t = NULL;
        if (lp_tuf_client_find_target(c, name, &t, &err) != LP_OK)
            continue;
        n++;
        char dest[4200];
        snprintf(dest, sizeof dest, "%s/%d.json", cdir, code);
        OK(lp_tuf_client_download_target(c, t, dest, &err));
        if (code == want && custom)
            *custom = strdup(lp_tuf_target_custom_json(t));
        lp_tuf_target_free(t);
    }
    lp_tuf_client_free(c);
    return n;
}

/* The release's state as the database has it now. */
static char *state_of(fx *f, const char *app, const char *version)
{
    lp_error err;
    lp_db *db = NULL;
    lp_db_app a = {0};
    lp_db_release r = {0};
    OK(lp_service_db_acquire(f->svc, &db, &err));
    OK(lp_db_app_get_by_name(db, app, &a, &err));
    OK(lp_db_release_get_by_version(db, a.id, version, &r, &err));
    lp_service_db_release(f->svc, db);
    char *state = strdup(r.state);
    lp_db_release_free(&r);
    lp_db_app_free(&a);
    return state;
}

static void assert_state(fx *f, const char *app, const char *version, const char *want)
{
    char *st = state_of(f, app, version);
    assert_string_equal(st, want);
    free(st);
}

/* ---- tests ------------------------------------------------------------ */

static void test_whole_flow(void **state)
{
    fx *f = *state;
    lp_error err;
    create_app(f, "shop", 1, 1);
    char *b1 = make_bundle(f, "b1", "one\n"), *b2 = make_bundle(f, "b2", "two\n");

    /* The server cannot publish in one step for this app. */
    lp_release_fields rf = {.version = "v0"};
    REFUSED(lp_service_publish(f->svc, "shop", b1, NULL, &rf, NULL, &err), LP_ERR_STATE,
            "publisher signs");

    lp_db_release r = {0};
    char *canon = NULL;
    size_t clen = 0;
    OK(prepare(f, "shop", b1, "v1", &r, &canon, &clen, &err));
    assert_int_equal(r.version_code, 1);
    assert_string_equal(r.state, LP_DB_STATE_PENDING);
    assert_int_equal(strlen(canon), clen);
    assert_int_equal(publisher_checks(canon, clen, &r), 1);
    /* The canonical bytes keep the newline of the notes raw. */
    assert_non_null(memchr(canon, '\n', clen));

    /* The pending query gives the same bytes, and no signature yet. */
    lp_db_release pr = {0};
    char *again = NULL;
    size_t alen = 0;
    json_t *signed_by = NULL;
    OK(lp_service_publish_pending(f->svc, "shop", &pr, &again, &alen, &signed_by, &err));
    assert_string_equal(pr.version, "v1");
    assert_int_equal(alen, clen);
    assert_memory_equal(again, canon, clen);
    assert_int_equal(json_array_size(signed_by), 0);
    json_decref(signed_by);
    free(again);
    lp_db_release_free(&pr);

    const int k1[] = {P_REL1};
    lp_db_release done = {0};
    OK(sign_and_send(f, "shop", "v1", canon, clen, k1, 1, &done, &err));
    assert_string_equal(done.state, LP_DB_STATE_PUBLISHED);
    assert_int_equal(done.version_code, 1);
    lp_db_release_free(&done);
    free(canon);
    lp_db_release_free(&r);
    assert_int_equal(count_listed(f, "shop", 5, 0, NULL), 1);
    REFUSED(lp_service_publish_pending(f->svc, "shop", NULL, NULL, NULL, NULL, &err),
            LP_ERR_NOT_FOUND, "no release waiting");
    /* Signing what is published already. */
    REFUSED(lp_service_publish_sign(f->svc, "shop", "v1", NULL, NULL, 0, NULL, &err),
            LP_ERR_STATE, "not waiting for signatures");
    REFUSED(lp_service_publish_sign(f->svc, "shop", "v9", NULL, NULL, 0, NULL, &err),
            LP_ERR_NOT_FOUND, "v9");

    /* A second release: the targets list both. */
    OK(prepare(f, "shop", b2, "v2", &r, &canon, &clen, &err));
    assert_int_equal(r.version_code, 2);
    assert_int_equal(publisher_checks(canon, clen, &r), 2);
    OK(sign_and_send(f, "shop", "v2", canon, clen, k1, 1, NULL, &err));
    free(canon);
    lp_db_release_free(&r);
    assert_int_equal(count_listed(f, "shop", 5, 0, NULL), 2);

    /* Rollback to v1: pending, then signed. */
    REFUSED(lp_service_rollback(f->svc, "shop", "v1", NULL, 0, NULL, NULL, NULL, &err),
            LP_ERR_STATE, "publisher signs");
    OK(lp_service_rollback_prepare(f->svc, "shop", "v1", NULL, 0, NULL, NULL, &r, &canon, &clen,
                                   &err));
    assert_int_equal(r.version_code, 3);
    assert_true(r.rollback_of > 0);
    assert_string_equal(r.state, LP_DB_STATE_PENDING);
    assert_int_equal(publisher_checks(canon, clen, &r), 3);
    assert_int_equal(count_listed(f, "shop", 5, 0, NULL), 2);
    OK(sign_and_send(f, "shop", "v1", canon, clen, k1, 1, NULL, &err));
    free(canon);
    lp_db_release_free(&r);
    char *custom = NULL;
    assert_int_equal(count_listed(f, "shop", 5, 3, &custom), 3);
    assert_non_null(strstr(custom, "\"rollback_of\":1"));
    free(custom);

    /* A server-signed app refuses the two-step calls. */
    OK(lp_service_app_create(f->svc, "plain", &err));
    assert_false(lp_service_app_publisher_signed(f->svc, "plain"));
    assert_string_equal(lp_service_app_signing(f->svc, "plain"), "server");
    REFUSED(prepare(f, "plain", b1, "v1", NULL, &canon, &clen, &err), LP_ERR_STATE,
            "server signs");
    REFUSED(prepare(f, "nosuch", b1, "v1", NULL, &canon, &clen, &err), LP_ERR_NOT_FOUND,
            "nosuch");
    REFUSED(lp_service_app_begin_signed(f->svc, "plain", &signed_by, &err), LP_ERR_EXISTS,
            "plain");
    free(b1);
    free(b2);
}

static void test_threshold_two(void **state)
{
    fx *f = *state;
    lp_error err;
    create_app(f, "quorum", 2, 2);
    char *b1 = make_bundle(f, "q1", "q one\n"), *b2 = make_bundle(f, "q2", "q two\n");

    lp_db_release r = {0};
    char *canon = NULL;
    size_t clen = 0;
    OK(prepare(f, "quorum", b1, "1.0", &r, &canon, &clen, &err));
    char *before = fingerprint(f, "quorum");
    const int one[] = {P_REL1}, both[] = {P_REL1, P_REL2}, two[] = {P_REL2};
    REFUSED(sign_and_send(f, "quorum", "1.0", canon, clen, one, 1, NULL, &err),
            LP_ERR_BAD_SIGNATURE, "targets");
    assert_non_null(strstr(err.msg, "stays pending"));
    assert_state(f, "quorum", "1.0", LP_DB_STATE_PENDING);
    char *after = fingerprint(f, "quorum");
    assert_string_equal(after, before);
    free(after);
    free(before);
    OK(sign_and_send(f, "quorum", "1.0", canon, clen, both, 2, NULL, &err));
    assert_state(f, "quorum", "1.0", LP_DB_STATE_PUBLISHED);
    assert_int_equal(count_listed(f, "quorum", 3, 0, NULL), 1);
    free(canon);
    lp_db_release_free(&r);

    /* The two signers one after the other: the first signature is kept,
     * and the progress says so (a refused signature is not "short"). */
    OK(prepare(f, "quorum", b2, "2.0", &r, &canon, &clen, &err));
    {
        char kid[65], *sig = NULL;
        publisher_signs(f, P_OUTSIDER, canon, clen, kid, &sig);
        const char *kp[] = {kid}, *sp[] = {sig};
        lp_sign_progress pr = {.short_of_threshold = true};
        REFUSED(lp_service_publish_sign_ex(f->svc, "quorum", "2.0", kp, sp, 1, &pr, NULL, &err),
                LP_ERR_BAD_SIGNATURE, kid);
        assert_false(pr.short_of_threshold);
        free(sig);
        publisher_signs(f, P_REL2, canon, clen, kid, &sig);
        sp[0] = sig;
        REFUSED(lp_service_publish_sign_ex(f->svc, "quorum", "2.0", kp, sp, 1, &pr, NULL, &err),
                LP_ERR_BAD_SIGNATURE, "1 signature held");
        free(sig);
        assert_true(pr.short_of_threshold);
        assert_int_equal(pr.held, 1);
        assert_int_equal(pr.threshold, 2);
    }
    json_t *signed_by = NULL;
    OK(lp_service_publish_pending(f->svc, "quorum", NULL, NULL, NULL, &signed_by, &err));
    assert_int_equal(json_array_size(signed_by), 1);
    assert_string_equal(json_string_value(json_array_get(signed_by, 0)), keyid(f->pub[P_REL2]));
    json_decref(signed_by);
    assert_int_equal(count_listed(f, "quorum", 3, 0, NULL), 1);
    /* The same key again does not make two. */
    REFUSED(sign_and_send(f, "quorum", "2.0", canon, clen, two, 1, NULL, &err),
            LP_ERR_BAD_SIGNATURE, "targets");
    OK(sign_and_send(f, "quorum", "2.0", canon, clen, one, 1, NULL, &err));
    assert_state(f, "quorum", "2.0", LP_DB_STATE_PUBLISHED);
    assert_int_equal(count_listed(f, "quorum", 3, 0, NULL), 2);
    free(canon);
    lp_db_release_free(&r);
    free(b1);
    free(b2);
}

static void test_refusals(void **state)
{
    fx *f = *state;
    lp_error err;
    create_app(f, "strict", 1, 1);
    char *b1 = make_bundle(f, "s1", "s one\n"), *b2 = make_bundle(f, "s2", "s two\n");
    lp_db_release r = {0};
    char *canon = NULL, *canon2 = NULL;
    size_t clen = 0, clen2 = 0;
    OK(prepare(f, "strict", b1, "v1", &r, &canon, &clen, &err));
    char *before = fingerprint(f, "strict");

    /* A key the targets role does not list. */
    const int outsider[] = {P_OUTSIDER};
    REFUSED(sign_and_send(f, "strict", "v1", canon, clen, outsider, 1, NULL, &err),
            LP_ERR_BAD_SIGNATURE, keyid(f->pub[P_OUTSIDER]));
    /* The right key over other bytes. */
    char kid[65], *sig = NULL;
    char *other = strdup(canon);
    char *at = strstr(other, "\"version_code\":1");
    assert_non_null(at);
    at[strlen("\"version_code\":")] = '9';
    publisher_signs(f, P_REL1, other, clen, kid, &sig);
    const char *kp[] = {kid}, *sp[] = {sig};
    REFUSED(lp_service_publish_sign(f->svc, "strict", "v1", kp, sp, 1, NULL, &err),
            LP_ERR_BAD_SIGNATURE, keyid(f->pub[P_REL1]));
    free(sig);
    free(other);
    /* A good signature with a bad one in the same call: nothing kept. */
    publisher_signs(f, P_REL1, canon, clen, kid, &sig);
    char bad[] = "00ff";
    const char *kp2[] = {kid, keyid(f->pub[P_OUTSIDER])}, *sp2[] = {sig, bad};
    REFUSED(lp_service_publish_sign(f->svc, "strict", "v1", kp2, sp2, 2, NULL, &err),
            LP_ERR_BAD_SIGNATURE, keyid(f->pub[P_OUTSIDER]));
    free(sig);
    json_t *signed_by = NULL;
    OK(lp_service_publish_pending(f->svc, "strict", NULL, NULL, NULL, &signed_by, &err));
    assert_int_equal(json_array_size(signed_by), 0);
    json_decref(signed_by);
    const char *nokey[] = {NULL};
    REFUSED(lp_service_publish_sign(f->svc, "strict", "v1", nokey, sp, 1, NULL, &err),
            LP_ERR_INVALID_ARG, "signature 1");
    assert_state(f, "strict", "v1", LP_DB_STATE_PENDING);
    char *after = fingerprint(f, "strict");
    assert_string_equal(after, before);
    free(after);
    free(before);

    /* One pending release at a time, rollbacks included. */
    REFUSED(prepare(f, "strict", b2, "v2", NULL, &canon2, &clen2, &err), LP_ERR_STATE,
            "release v1 (code 1) is waiting for signatures");
    assert_null(canon2);

    /* Cancelled: withdrawn, never listed; its version string stays taken. */
    OK(lp_service_publish_cancel(f->svc, "strict", "v1", &err));
    assert_state(f, "strict", "v1", LP_DB_STATE_WITHDRAWN);
    REFUSED(lp_service_publish_cancel(f->svc, "strict", "v1", &err), LP_ERR_STATE, "withdrawn");
    REFUSED(sign_and_send(f, "strict", "v1", canon, clen, (const int[]){P_REL1}, 1, NULL, &err),
            LP_ERR_STATE, "withdrawn");
    REFUSED(lp_service_rollback_prepare(f->svc, "strict", "v1", NULL, 0, NULL, NULL, NULL, &canon2,
                                        &clen2, &err),
            LP_ERR_STATE, "only a published release");
    free(canon);
    lp_db_release_free(&r);
    OK(prepare(f, "strict", b2, "v2", &r, &canon, &clen, &err));
    assert_int_equal(r.version_code, 2); /* the refused prepare took no code */
    assert_int_equal(publisher_checks(canon, clen, &r), 1);
    OK(sign_and_send(f, "strict", "v2", canon, clen, (const int[]){P_REL1}, 1, NULL, &err));
    assert_int_equal(count_listed(f, "strict", 4, 0, NULL), 1);
    REFUSED(lp_service_rollback_prepare(f->svc, "strict", "v2", NULL, 0, NULL, NULL, NULL, NULL,
                                        NULL, &err),
            LP_ERR_INVALID_ARG, "signed bytes");
    free(canon);
    lp_db_release_free(&r);
    free(b1);
    free(b2);
}

/* A root the server refuses: the status, a message naming the problem, and
 * nothing written (no repository folder, no app). */
static void root_refused(fx *f, const char *app, json_t *online, const root_plan *plan,
                         lp_status code, const char *text)
{
    lp_error err;
    size_t len = 0;
    char *root = publisher_makes_root(f, app, online, plan, &len);
    REFUSED(lp_service_app_set_root(f->svc, app, root, len, &err), code, text);
    free(root);
    char repo[4096];
    snprintf(repo, sizeof repo, "%s/repos/%s", f->data, app);
    struct stat sb;
    assert_int_not_equal(stat(repo, &sb), 0);
    lp_db *db = NULL;
    lp_db_app a = {0};
    OK(lp_service_db_acquire(f->svc, &db, &err));
    assert_int_equal(lp_db_app_get_by_name(db, app, &a, &err), LP_ERR_NOT_FOUND);
    lp_service_db_release(f->svc, db);
}

static void test_roots_refused(void **state)
{
    fx *f = *state;
    lp_error err;
    json_t *online = NULL, *again = NULL;
    REFUSED(lp_service_app_set_root(f->svc, "late", "{}", 2, &err), LP_ERR_STATE,
            "begin the app first");
    OK(lp_service_app_begin_signed(f->svc, "late", &online, &err));
    /* Until its root is set the app does not exist. */
    char *b = make_bundle(f, "l1", "late\n");
    char *canon = NULL;
    size_t clen = 0;
    REFUSED(prepare(f, "late", b, "v1", NULL, &canon, &clen, &err), LP_ERR_NOT_FOUND, "late");
    /* Beginning again hands out the same keys. */
    OK(lp_service_app_begin_signed(f->svc, "late", &again, &err));
    assert_true(json_equal(online, again));
    json_decref(again);
    REFUSED(lp_service_app_begin_signed(f->svc, "Bad/Name", &again, &err), LP_ERR_INVALID_ARG,
            "Bad/Name");

    lp_key *stranger = NULL;
    OK(lp_key_generate(&stranger, LP_KEY_ED25519, &err));
    root_plan plan = {.nrel = 1, .threshold = 1, .signer = P_ROOT, .timestamp_key = stranger};
    root_refused(f, "late", online, &plan, LP_ERR_INVALID_ARG, "role timestamp");
    plan = (root_plan){.nrel = 1, .threshold = 1, .signer = P_ROOT, .snapshot_key = stranger};
    root_refused(f, "late", online, &plan, LP_ERR_INVALID_ARG, "role snapshot");
    /* The server's own key among the release keys: it could sign alone. */
    lp_key *server_snap = NULL;
    {
        json_t *e = json_object_get(online, "snapshot");
        lp_key_type type;
        json_t *k = json_object_get(e, "key");
        OK(lp_key_type_from_names(json_string_value(json_object_get(k, "keytype")),
                                  json_string_value(json_object_get(k, "scheme")), &type, &err));
        OK(lp_key_from_public(&server_snap, type,
                              json_string_value(
                                  json_object_get(json_object_get(k, "keyval"), "public")),
                              &err));
    }
    plan = (root_plan){.nrel = 1, .threshold = 1, .signer = P_ROOT, .extra_targets = server_snap};
    root_refused(f, "late", online, &plan, LP_ERR_INVALID_ARG, "role targets lists the server");
    /* Not signed by its own root key. */
    plan = (root_plan){.nrel = 1, .threshold = 1, .signer = P_REL1};
    root_refused(f, "late", online, &plan, LP_ERR_BAD_SIGNATURE, "root");
    /* Not a root at all. */
    REFUSED(lp_service_app_set_root(f->svc, "late", "{\"signed\":{}}", 13, &err),
            LP_ERR_MALFORMED, "root");

    /* The right root: the app exists, and a second root is refused. */
    plan = (root_plan){.nrel = 1, .threshold = 1, .signer = P_ROOT};
    size_t len = 0;
    char *root = publisher_makes_root(f, "late", online, &plan, &len);
    OK(lp_service_app_set_root(f->svc, "late", root, len, &err));
    REFUSED(lp_service_app_set_root(f->svc, "late", root, len, &err), LP_ERR_EXISTS, "late");
    REFUSED(lp_service_app_begin_signed(f->svc, "late", &again, &err), LP_ERR_EXISTS, "late");
    free(root);
    lp_db_release r = {0};
    OK(prepare(f, "late", b, "v1", &r, &canon, &clen, &err));
    OK(sign_and_send(f, "late", "v1", canon, clen, (const int[]){P_REL1}, 1, NULL, &err));
    assert_int_equal(count_listed(f, "late", 2, 0, NULL), 1);
    free(canon);
    lp_db_release_free(&r);
    lp_key_free(server_snap);
    lp_key_free(stranger);
    json_decref(online);
    free(b);
}

static void test_restart_between_prepare_and_sign(void **state)
{
    fx *f = *state;
    lp_error err;
    create_app(f, "slow", 1, 1);
    char *b = make_bundle(f, "w1", "slow\n");
    lp_db_release r = {0};
    char *canon = NULL, *again = NULL;
    size_t clen = 0, alen = 0;
    OK(prepare(f, "slow", b, "v1", &r, &canon, &clen, &err));
    /* The publisher signs while the server restarts. */
    char kid[65], *sig = NULL;
    publisher_signs(f, P_REL1, canon, clen, kid, &sig);
    reopen(f);
    assert_state(f, "slow", "v1", LP_DB_STATE_PENDING);
    OK(lp_service_publish_pending(f->svc, "slow", NULL, &again, &alen, NULL, &err));
    assert_int_equal(alen, clen);
    assert_memory_equal(again, canon, clen);
    free(again);
    const char *kp[] = {kid}, *sp[] = {sig};
    OK(lp_service_publish_sign(f->svc, "slow", "v1", kp, sp, 1, NULL, &err));
    free(sig);
    assert_int_equal(count_listed(f, "slow", 2, 0, NULL), 1);
    free(canon);
    lp_db_release_free(&r);
    free(b);
}

/* Sets a release's state behind the service's back, as a crash between
 * writing the metadata and the database update leaves it. */
static void set_state_directly(fx *f, const char *app, const char *version, const char *state)
{
    lp_error err;
    char url[4200];
    lp_db *db = NULL;
    lp_db_app a = {0};
    lp_db_release r = {0};
    OK(lp_db_open(db_url(f, url, sizeof url), &db, &err));
    OK(lp_db_app_get_by_name(db, app, &a, &err));
    OK(lp_db_release_get_by_version(db, a.id, version, &r, &err));
    OK(lp_db_release_set_state(db, r.id, state, &err));
    lp_db_release_free(&r);
    lp_db_app_free(&a);
    lp_db_close(db);
}

static void test_crash_window_and_recovery(void **state)
{
    fx *f = *state;
    lp_error err;
    create_app(f, "crash", 1, 1);
    char *b1 = make_bundle(f, "c1", "c one\n"), *b2 = make_bundle(f, "c2", "c two\n");
    lp_db_release r = {0};
    char *canon = NULL;
    size_t clen = 0;

    /* Metadata written, database still pending, then a crash: the next
     * start finds the release in the repository and marks it published. */
    OK(prepare(f, "crash", b1, "v1", &r, &canon, &clen, &err));
    OK(sign_and_send(f, "crash", "v1", canon, clen, (const int[]){P_REL1}, 1, NULL, &err));
    free(canon);
    lp_service_close(f->svc);
    f->svc = NULL;
    set_state_directly(f, "crash", "v1", LP_DB_STATE_PENDING);
    open_service(f);
    assert_state(f, "crash", "v1", LP_DB_STATE_PUBLISHED);
    assert_true(log_mentions(f, "pending release marked published"));
    assert_int_equal(count_listed(f, "crash", 4, 0, NULL), 1);

    /* The same window without a restart: cancel notices and refuses. */
    set_state_directly(f, "crash", "v1", LP_DB_STATE_PENDING);
    REFUSED(lp_service_publish_cancel(f->svc, "crash", "v1", &err), LP_ERR_STATE,
            "published");
    assert_state(f, "crash", "v1", LP_DB_STATE_PUBLISHED);
    /* ... and so does sign, which completes it without signatures. */
    set_state_directly(f, "crash", "v1", LP_DB_STATE_PENDING);
    OK(lp_service_publish_sign(f->svc, "crash", "v1", NULL, NULL, 0, NULL, &err));
    assert_state(f, "crash", "v1", LP_DB_STATE_PUBLISHED);

    /* A published release the repository does not list: the start does
     * not try to sign (it has no key to), logs it and goes on. */
    lp_db *db = NULL;
    OK(lp_service_db_acquire(f->svc, &db, &err));
    const char *chans[] = {"stable"};
    lp_db_release_new nr = {.app_id = r.app_id, .version = "ghost", .version_code = 7,
                            .manifest_sha256 = r.manifest_sha256,
                            .manifest_size = r.manifest_size, .channels = chans,
                            .n_channels = 1};
    OK(lp_db_release_insert(db, &nr, NULL, &err));
    lp_service_db_release(f->svc, db);
    reopen(f);
    assert_true(log_mentions(f, "a published release is not in the repository as signed"));
    assert_int_equal(count_listed(f, "crash", 8, 0, NULL), 1);
    /* A server-signed app next to it: the next start recovers both kinds,
     * and the server-signed one still publishes in one step. */
    OK(lp_service_app_create(f->svc, "server", &err));
    lp_release_fields rf = {.version = "s1"};
    OK(lp_service_publish(f->svc, "server", b1, NULL, &rf, NULL, &err));

    /* A pending release, a restart: still pending, then signed. */
    lp_db_release_free(&r);
    OK(prepare(f, "crash", b2, "v2", &r, &canon, &clen, &err));
    assert_int_equal(r.version_code, 8);
    assert_int_equal(publisher_checks(canon, clen, &r), 3);
    reopen(f);
    assert_state(f, "crash", "v2", LP_DB_STATE_PENDING);
    OK(sign_and_send(f, "crash", "v2", canon, clen, (const int[]){P_REL1}, 1, NULL, &err));
    assert_int_equal(count_listed(f, "crash", 8, 0, NULL), 3);
    free(canon);
    lp_db_release_free(&r);
    free(b1);
    free(b2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_whole_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threshold_two, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roots_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_between_prepare_and_sign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_window_and_recovery, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
