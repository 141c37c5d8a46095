/*
 * test_token.c — API tokens: format, storage hash, verification, scopes and
 * the Authorization header.
 *
 * Checked against outside references, not only against itself:
 *   - a fixed token whose base64url secret and HMAC-SHA256 record were
 *     computed with Python's base64 and hmac modules;
 *   - every generated record is recomputed here with OpenSSL's one-shot
 *     HMAC(), a different interface from the one the library uses.
 * Every refusal (wrong secret, wrong id, unknown id, truncated, overlong,
 * bad alphabet, wrong prefix, non-canonical secret, bad headers) must give
 * its documented status, leave the output zeroed, and produce a message that
 * contains no part of the secret.  10,000 generated tokens must have
 * distinct ids and distinct secrets.  Scope parsing, formatting and the
 * implication rules are checked against explicit tables.
 */
#include "livepush/hash.h"
#include "livepush/token.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* Python: base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=") and
 * hmac.new(bytes(range(0xa0, 0xb0)), b"abcdefgh2345" + bytes(range(32)),
 * hashlib.sha256).hexdigest(). */
#define REF_ID "abcdefgh2345"
#define REF_SECRET_TEXT "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
#define REF_TOKEN "lp_" REF_ID "_" REF_SECRET_TEXT
#define REF_SALT "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
#define REF_HASH "f095b76889c2721372802aef5242d962551aa876b788d1fbfc4bd6029897d70d"

static lp_token_record ref_record(void)
{
    lp_token_record r;
    memset(&r, 0, sizeof r);
    strcpy(r.id, REF_ID);
    strcpy(r.salt_hex, REF_SALT);
    strcpy(r.hash_hex, REF_HASH);
    r.scopes = LP_SCOPE_UPLOAD;
    return r;
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* No run of 6 or more characters of `secret` appears in `msg`. */
static void assert_no_secret(const char *msg, const char *secret)
{
    size_t n = strlen(secret);
    char win[7];
    for (size_t i = 0; i + 6 <= n; i++) {
        memcpy(win, secret + i, 6);
        win[6] = '\0';
        if (strstr(msg, win)) {
            fprintf(stderr, "message quotes the secret: %s\n", msg);
            fail();
        }
    }
}

static bool is_lower_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static void test_reference_vector(void **state)
{
    (void)state;
    lp_token_parsed t;
    lp_error err;
    assert_int_equal(strlen(REF_TOKEN), LP_TOKEN_TEXT_LEN);
    assert_int_equal(lp_token_parse(REF_TOKEN, strlen(REF_TOKEN), &t, &err), LP_OK);
    assert_string_equal(t.id, REF_ID);
    for (int i = 0; i < LP_TOKEN_SECRET_LEN; i++)
        assert_int_equal(t.secret[i], i);

    lp_token_record r = ref_record();
    assert_int_equal(lp_token_verify(&r, &t, &err), LP_OK);

    /* One bit of the stored hash, or of the salt, changed: refused. */
    r.hash_hex[63] = r.hash_hex[63] == 'd' ? 'c' : 'd';
    assert_int_equal(lp_token_verify(&r, &t, &err), LP_ERR_BAD_SIGNATURE);
    r = ref_record();
    r.salt_hex[0] = 'b';
    assert_int_equal(lp_token_verify(&r, &t, &err), LP_ERR_BAD_SIGNATURE);
    assert_int_equal(ERR_peek_error(), 0);
}

/* The record of `text` recomputed with OpenSSL's HMAC(). */
static void assert_record_matches(const char *text, const lp_token_record *rec)
{
    lp_token_parsed t;
    assert_int_equal(lp_token_parse(text, strlen(text), &t, NULL), LP_OK);
    uint8_t salt[LP_TOKEN_SALT_LEN], msg[LP_TOKEN_ID_LEN + LP_TOKEN_SECRET_LEN];
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    size_t got = 0;
    assert_int_equal(lp_hex_decode(rec->salt_hex, salt, sizeof salt, &got, NULL), LP_OK);
    assert_int_equal(got, sizeof salt);
    memcpy(msg, t.id, LP_TOKEN_ID_LEN);
    memcpy(msg + LP_TOKEN_ID_LEN, t.secret, LP_TOKEN_SECRET_LEN);
    assert_non_null(HMAC(EVP_sha256(), salt, sizeof salt, msg, sizeof msg, mac, &maclen));
    assert_int_equal(maclen, LP_TOKEN_HASH_LEN);
    char hex[2 * LP_TOKEN_HASH_LEN + 1];
    lp_hex_encode(mac, maclen, hex);
    assert_string_equal(hex, rec->hash_hex);
}

static void test_round_trip(void **state)
{
    (void)state;
    const lp_scopes sets[] = {LP_SCOPE_ADMIN, LP_SCOPE_UPLOAD,
                              LP_SCOPE_UPLOAD | LP_SCOPE_DOWNLOAD, LP_SCOPE_ALL};
    for (size_t k = 0; k < sizeof sets / sizeof sets[0]; k++) {
        char text[LP_TOKEN_TEXT_SIZE];
        lp_token_record rec;
        lp_error err;
        assert_int_equal(lp_token_generate(sets[k], text, &rec, &err), LP_OK);
        assert_int_equal(strlen(text), LP_TOKEN_TEXT_LEN);
        assert_memory_equal(text, "lp_", 3);
        assert_int_equal(text[15], '_');
        assert_memory_equal(text + 3, rec.id, LP_TOKEN_ID_LEN);
        assert_int_equal(strlen(rec.id), LP_TOKEN_ID_LEN);
        assert_true(is_lower_hex(rec.salt_hex, 32));
        assert_true(is_lower_hex(rec.hash_hex, 64));
        assert_int_equal(rec.scopes, sets[k]);
        /* The secret is nowhere in the record. */
        assert_null(strstr(rec.hash_hex, text + 16));
        assert_record_matches(text, &rec);

        lp_token_parsed t;
        assert_int_equal(lp_token_parse(text, strlen(text), &t, &err), LP_OK);
        assert_string_equal(t.id, rec.id);
        assert_int_equal(lp_token_verify(&rec, &t, &err), LP_OK);

        /* Through the header too, in any case of the scheme. */
        char header[128];
        snprintf(header, sizeof header, "Bearer %s", text);
        assert_int_equal(lp_token_parse_bearer(header, &t, &err), LP_OK);
        assert_int_equal(lp_token_verify(&rec, &t, &err), LP_OK);
        lp_token_wipe(&t, sizeof t);
        assert_true(all_zero(&t, sizeof t));
        lp_token_wipe(text, sizeof text);
        assert_true(all_zero(text, sizeof text));
    }
    lp_token_wipe(NULL, 10);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_refusals(void **state)
{
    (void)state;
    char a_text[LP_TOKEN_TEXT_SIZE], b_text[LP_TOKEN_TEXT_SIZE];
    lp_token_record a, b;
    assert_int_equal(lp_token_generate(LP_SCOPE_UPLOAD, a_text, &a, NULL), LP_OK);
    assert_int_equal(lp_token_generate(LP_SCOPE_UPLOAD, b_text, &b, NULL), LP_OK);
    lp_token_parsed ta, tb;
    assert_int_equal(lp_token_parse(a_text, LP_TOKEN_TEXT_LEN, &ta, NULL), LP_OK);
    assert_int_equal(lp_token_parse(b_text, LP_TOKEN_TEXT_LEN, &tb, NULL), LP_OK);
    char expect[64];
    snprintf(expect, sizeof expect, "token %s: not valid", ta.id);
    lp_error err;

    /* Wrong secret: each byte position changed in turn. */
    for (int i = 0; i < LP_TOKEN_SECRET_LEN; i++) {
        lp_token_parsed w = ta;
        w.secret[i] ^= 0x01;
        assert_int_equal(lp_token_verify(&a, &w, &err), LP_ERR_BAD_SIGNATURE);
        assert_string_equal(err.msg, expect);
    }
    /* Another token's record (the server looked up the wrong row). */
    assert_int_equal(lp_token_verify(&b, &ta, &err), LP_ERR_BAD_SIGNATURE);
    assert_string_equal(err.msg, expect);
    /* A's secret under B's id against A's record: the id is in the hash. */
    lp_token_parsed swapped = ta;
    memcpy(swapped.id, tb.id, sizeof swapped.id);
    assert_int_equal(lp_token_verify(&a, &swapped, &err), LP_ERR_BAD_SIGNATURE);
    /* The record of A relabelled with B's id still only matches A's secret. */
    lp_token_record relabelled = a;
    memcpy(relabelled.id, b.id, sizeof relabelled.id);
    assert_int_equal(lp_token_verify(&relabelled, &tb, &err), LP_ERR_BAD_SIGNATURE);
    /* Unknown id: same status, same message as a wrong secret. */
    assert_int_equal(lp_token_verify(NULL, &ta, &err), LP_ERR_BAD_SIGNATURE);
    assert_string_equal(err.msg, expect);
    assert_no_secret(err.msg, a_text + 16);
    assert_int_equal(lp_token_verify(&a, &ta, &err), LP_OK);

    /* Damaged stored records are told apart (they are not the caller's fault). */
    lp_token_record bad = a;
    bad.salt_hex[5] = 'x';
    assert_int_equal(lp_token_verify(&bad, &ta, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "salt"));
    bad = a;
    bad.hash_hex[63] = '\0';
    assert_int_equal(lp_token_verify(&bad, &ta, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "hash"));

    /* Caller mistakes. */
    assert_int_equal(lp_token_verify(&a, NULL, &err), LP_ERR_INVALID_ARG);
    lp_token_parsed junk;
    memset(&junk, 'A', sizeof junk);
    assert_int_equal(lp_token_verify(&a, &junk, &err), LP_ERR_INVALID_ARG);
    assert_int_equal(ERR_peek_error(), 0);
}

struct bad_token {
    const char *what;
    const char *text;
    size_t len; /* 0: strlen(text) */
    const char *msg_part;
};

static void test_malformed(void **state)
{
    (void)state;
    const struct bad_token cases[] = {
        {"empty", "", 0, "too short"},
        {"truncated by one", REF_TOKEN, LP_TOKEN_TEXT_LEN - 1, "too short"},
        {"prefix only", "lp_", 0, "too short"},
        {"overlong by one", REF_TOKEN "A", 0, "too long"},
        {"overlong", REF_TOKEN REF_TOKEN REF_TOKEN, 0, "too long"},
        {"trailing space", REF_TOKEN " ", 0, "too long"},
        {"prefix upper case", "LP_" REF_ID "_" REF_SECRET_TEXT, 0, "lp_"},
        {"prefix other", "lq_" REF_ID "_" REF_SECRET_TEXT, 0, "lp_"},
        {"prefix dash", "lp-" REF_ID "_" REF_SECRET_TEXT, 0, "lp_"},
        {"id upper case", "lp_Abcdefgh2345_" REF_SECRET_TEXT, 0, "character 4 "},
        {"id digit 1", "lp_abcdefgh2341_" REF_SECRET_TEXT, 0, "character 15 "},
        {"id digit 0", "lp_0bcdefgh2345_" REF_SECRET_TEXT, 0, "character 4 "},
        {"id underscore", "lp_abcdefgh_345_" REF_SECRET_TEXT, 0, "character 12 "},
        {"separator", "lp_" REF_ID "-" REF_SECRET_TEXT, 0, "character 16 "},
        {"id one short", "lp_abcdefgh234_A" REF_SECRET_TEXT, 0, "character 15 "},
        {"secret plus", "lp_" REF_ID "_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd+h8", 0,
         "character 57 "},
        {"secret slash", "lp_" REF_ID "_/AECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", 0,
         "character 17 "},
        {"secret padding", "lp_" REF_ID "_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh=", 0,
         "character 59 "},
        {"secret space", "lp_" REF_ID "_AAECAwQFBgcICQoLDA0 DxAREhMUFRYXGBkaGxwdHh8", 0,
         "character 36 "},
        {"secret dot", "lp_" REF_ID "_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh.", 0,
         "character 59 "},
        {"secret high byte", "lp_" REF_ID "_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh\xc3", 0,
         "character 59 "},
        {"secret NUL inside", "lp_" REF_ID "_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\0h8",
         LP_TOKEN_TEXT_LEN, "character 57 "},
        {"secret non-canonical", "lp_" REF_ID "_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9", 0,
         "canonical"},
        {"secret non-canonical 2", "lp_" REF_ID "_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh_",
         0, "canonical"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct bad_token *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->text);
        lp_token_parsed t;
        memset(&t, 0x5a, sizeof t);
        lp_error err;
        lp_status st = lp_token_parse(c->text, len, &t, &err);
        if (st != LP_ERR_MALFORMED || !strstr(err.msg, c->msg_part)) {
            fprintf(stderr, "case \"%s\": status %s, message \"%s\"\n", c->what,
                    lp_status_name(st), err.msg);
            fail();
        }
        assert_true(all_zero(&t, sizeof t));
        assert_no_secret(err.msg, REF_SECRET_TEXT);
        assert_int_equal(strncmp(err.msg, "token: ", 7), 0);
    }
    /* The canonical last character for these 32 bytes is accepted. */
    lp_token_parsed t;
    assert_int_equal(lp_token_parse(REF_TOKEN, LP_TOKEN_TEXT_LEN, &t, NULL), LP_OK);
    /* 32 bytes of 0xff: the only valid last character is '8'. */
    const char *ff = "lp_" REF_ID "_" "__________________________________________8";
    assert_int_equal(lp_token_parse(ff, strlen(ff), &t, NULL), LP_OK);
    for (int i = 0; i < LP_TOKEN_SECRET_LEN; i++)
        assert_int_equal(t.secret[i], 0xff);
    assert_int_equal(lp_token_parse(NULL, 59, &t, NULL), LP_ERR_INVALID_ARG);
    assert_int_equal(lp_token_parse(REF_TOKEN, 59, NULL, NULL), LP_ERR_INVALID_ARG);
    assert_int_equal(ERR_peek_error(), 0);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_no_collisions(void **state)
{
    (void)state;
    enum { N = 10000 };
    char **ids = calloc(N, sizeof *ids);
    char **secrets = calloc(N, sizeof *secrets);
    char *store = calloc(N, 2 * LP_TOKEN_TEXT_SIZE);
    assert_non_null(ids);
    assert_non_null(secrets);
    assert_non_null(store);
    for (int i = 0; i < N; i++) {
        char *text = store + (size_t)i * 2 * LP_TOKEN_TEXT_SIZE;
        lp_token_record rec;
        assert_int_equal(lp_token_generate(LP_SCOPE_DOWNLOAD, text, &rec, NULL), LP_OK);
        /* Split into "lp_<id>" and "<secret>" in place. */
        char *id = text + LP_TOKEN_TEXT_SIZE;
        memcpy(id, rec.id, sizeof rec.id);
        ids[i] = id;
        secrets[i] = text + 16;
    }
    qsort(ids, N, sizeof *ids, cmp_str);
    qsort(secrets, N, sizeof *secrets, cmp_str);
    for (int i = 1; i < N; i++) {
        assert_string_not_equal(ids[i - 1], ids[i]);
        assert_string_not_equal(secrets[i - 1], secrets[i]);
    }
    lp_token_wipe(store, (size_t)N * 2 * LP_TOKEN_TEXT_SIZE);
    free(store);
    free(ids);
    free(secrets);
}

static void test_generate_args(void **state)
{
    (void)state;
    char text[LP_TOKEN_TEXT_SIZE];
    lp_token_record rec;
    lp_error err;
    assert_int_equal(lp_token_generate(0, text, &rec, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "no scope"));
    assert_true(all_zero(text, sizeof text));
    assert_true(all_zero(&rec, sizeof rec));
    assert_int_equal(lp_token_generate(LP_SCOPE_UPLOAD | (1u << 20), text, &rec, &err),
                     LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "0x100000"));
    assert_int_equal(lp_token_generate(LP_SCOPE_UPLOAD, NULL, &rec, &err), LP_ERR_INVALID_ARG);
    assert_int_equal(lp_token_generate(LP_SCOPE_UPLOAD, text, NULL, &err), LP_ERR_INVALID_ARG);
}

static void test_scopes_parse(void **state)
{
    (void)state;
    const struct {
        const char *text;
        lp_scopes want;
    } good[] = {
        {"admin", LP_SCOPE_ADMIN},
        {"upload", LP_SCOPE_UPLOAD},
        {"download", LP_SCOPE_DOWNLOAD},
        {"read", LP_SCOPE_READ},
        {"approve", LP_SCOPE_APPROVE},
        {"rollout", LP_SCOPE_ROLLOUT},
        {"upload,download", LP_SCOPE_UPLOAD | LP_SCOPE_DOWNLOAD},
        {"download,upload", LP_SCOPE_UPLOAD | LP_SCOPE_DOWNLOAD},
        {"rollout,approve,read,download,upload,admin", LP_SCOPE_ALL},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        lp_scopes s = 0;
        lp_error err;
        if (lp_token_scopes_parse(good[i].text, &s, &err) != LP_OK) {
            fprintf(stderr, "\"%s\": %s\n", good[i].text, err.msg);
            fail();
        }
        assert_int_equal(s, good[i].want);
    }

    const struct {
        const char *text;
        lp_status st;
        const char *msg_part;
    } bad[] = {
        {"", LP_ERR_INVALID_ARG, "no scope"},
        {"deploy", LP_ERR_INVALID_ARG, "unknown scope \"deploy\""},
        {"upload,deploy", LP_ERR_INVALID_ARG, "unknown scope \"deploy\""},
        {"uploads", LP_ERR_INVALID_ARG, "unknown scope \"uploads\""},
        {"up", LP_ERR_INVALID_ARG, "unknown scope \"up\""},
        {"Upload", LP_ERR_INVALID_ARG, "character 1 "},
        {"upload, download", LP_ERR_INVALID_ARG, "character 8 "},
        {" upload", LP_ERR_INVALID_ARG, "character 1 "},
        {"upload ", LP_ERR_INVALID_ARG, "character 7 "},
        {"upload;read", LP_ERR_INVALID_ARG, "character 7 "},
        {"upload,", LP_ERR_INVALID_ARG, "empty name at character 8"},
        {",upload", LP_ERR_INVALID_ARG, "empty name at character 1"},
        {"upload,,read", LP_ERR_INVALID_ARG, "empty name at character 8"},
        {",", LP_ERR_INVALID_ARG, "empty name at character 1"},
        {"upload,upload", LP_ERR_INVALID_ARG, "\"upload\" is listed twice"},
        {"admin,read,admin", LP_ERR_INVALID_ARG, "\"admin\" is listed twice"},
        {"abcdefghijklmnopqrstuvwxyzabcdefghijklmnop", LP_ERR_INVALID_ARG,
         "\"abcdefghijklmnopqrstuvwxyzabcdef...\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lp_scopes s = 77;
        lp_error err;
        lp_status st = lp_token_scopes_parse(bad[i].text, &s, &err);
        if (st != bad[i].st || !strstr(err.msg, bad[i].msg_part)) {
            fprintf(stderr, "\"%s\": status %s, message \"%s\"\n", bad[i].text,
                    lp_status_name(st), err.msg);
            fail();
        }
        assert_int_equal(s, 0);
    }
    char longlist[400];
    memset(longlist, 0, sizeof longlist);
    for (size_t n = 0; n + 5 < sizeof longlist - 1; n += 5)
        memcpy(longlist + n, "read,", 5);
    lp_scopes s = 0;
    assert_int_equal(lp_token_scopes_parse(longlist, &s, NULL), LP_ERR_TOO_LARGE);
    assert_int_equal(lp_token_scopes_parse(NULL, &s, NULL), LP_ERR_INVALID_ARG);
    assert_int_equal(lp_token_scopes_parse("read", NULL, NULL), LP_ERR_INVALID_ARG);
}

static void test_scopes_format(void **state)
{
    (void)state;
    char out[LP_SCOPES_TEXT_SIZE];
    lp_error err;
    assert_int_equal(lp_token_scopes_format(LP_SCOPE_ALL, out, sizeof out, &err), LP_OK);
    assert_string_equal(out, "admin,upload,download,read,approve,rollout");
    assert_int_equal(lp_token_scopes_format(0, out, sizeof out, &err), LP_OK);
    assert_string_equal(out, "");
    assert_int_equal(lp_token_scopes_format(LP_SCOPE_READ | LP_SCOPE_ADMIN, out, sizeof out, &err),
                     LP_OK);
    assert_string_equal(out, "admin,read");

    /* Every non-empty combination formats canonically and parses back. */
    for (lp_scopes s = 1; s <= LP_SCOPE_ALL; s++) {
        assert_int_equal(lp_token_scopes_format(s, out, sizeof out, &err), LP_OK);
        lp_scopes back = 0;
        assert_int_equal(lp_token_scopes_parse(out, &back, &err), LP_OK);
        assert_int_equal(back, s);
    }
    /* Single bits and their names. */
    const char *names[] = {"admin", "upload", "download", "read", "approve", "rollout"};
    for (unsigned i = 0; i < 6; i++) {
        assert_string_equal(lp_token_scope_name((lp_scopes)1u << i), names[i]);
        assert_int_equal(lp_token_scopes_format((lp_scopes)1u << i, out, sizeof out, &err), LP_OK);
        assert_string_equal(out, names[i]);
    }
    assert_null(lp_token_scope_name(0));
    assert_null(lp_token_scope_name(LP_SCOPE_UPLOAD | LP_SCOPE_READ));
    assert_null(lp_token_scope_name((lp_scopes)1u << 6));

    assert_int_equal(lp_token_scopes_format((lp_scopes)1u << 9, out, sizeof out, &err),
                     LP_ERR_INVALID_ARG);
    assert_string_equal(out, "");
    char small[12];
    assert_int_equal(lp_token_scopes_format(LP_SCOPE_UPLOAD | LP_SCOPE_DOWNLOAD, small,
                                            sizeof small, &err),
                     LP_ERR_TOO_LARGE);
    assert_string_equal(small, "");
    /* Exactly enough room: "upload,read" is 11 characters plus NUL. */
    assert_int_equal(lp_token_scopes_format(LP_SCOPE_UPLOAD | LP_SCOPE_READ, small, sizeof small,
                                            &err),
                     LP_OK);
    assert_string_equal(small, "upload,read");
    assert_int_equal(lp_token_scopes_format(LP_SCOPE_READ, out, 0, &err), LP_ERR_INVALID_ARG);
}

static void test_scopes_allow(void **state)
{
    (void)state;
    const lp_scopes A = LP_SCOPE_ADMIN, U = LP_SCOPE_UPLOAD, D = LP_SCOPE_DOWNLOAD,
                    R = LP_SCOPE_READ, P = LP_SCOPE_APPROVE, O = LP_SCOPE_ROLLOUT;
    const struct {
        lp_scopes have, need;
        bool allow;
    } rows[] = {
        /* admin implies everything known. */
        {A, A, true}, {A, U, true}, {A, D, true}, {A, R, true}, {A, P, true}, {A, O, true},
        {A, LP_SCOPE_ALL, true},
        /* upload: publish, and read the management API; nothing else. */
        {U, U, true}, {U, R, true}, {U, U | R, true}, {U, D, false}, {U, A, false},
        {U, P, false}, {U, O, false},
        /* approve and rollout imply read. */
        {P, P, true}, {P, R, true}, {P, O, false}, {O, O, true}, {O, R, true}, {O, U, false},
        /* download implies nothing and is implied only by admin. */
        {D, D, true}, {D, R, false}, {D, U, false}, {R, D, false}, {U | P | O | R, D, false},
        /* read is read only. */
        {R, R, true}, {R, U, false}, {R, A, false},
        /* several needed: all must be held. */
        {U | D, U | D, true}, {U, U | D, false}, {D, U | D, false},
        /* nothing needed; nothing held. */
        {0, 0, true}, {0, R, false}, {U, 0, true},
        /* unknown bits: ignored when held, never granted when needed. */
        {(lp_scopes)1u << 12, R, false}, {A, (lp_scopes)1u << 12, false},
        {U | ((lp_scopes)1u << 12), U, true},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (lp_token_scopes_allow(rows[i].have, rows[i].need) != rows[i].allow) {
            fprintf(stderr, "row %zu: have 0x%x need 0x%x\n", i, rows[i].have, rows[i].need);
            fail();
        }
    }
    assert_int_equal(lp_token_scopes_expand(A), LP_SCOPE_ALL);
    assert_int_equal(lp_token_scopes_expand(U), U | R);
    assert_int_equal(lp_token_scopes_expand(D), D);
    assert_int_equal(lp_token_scopes_expand(D | ((lp_scopes)1u << 20)), D);
}

static void test_bearer(void **state)
{
    (void)state;
    lp_token_parsed t;
    lp_error err;
    const char *ok[] = {"Bearer " REF_TOKEN, "bearer " REF_TOKEN, "BEARER " REF_TOKEN,
                        "bEaReR " REF_TOKEN,
                        /* RFC 6750 2.1: "Bearer" 1*SP b64token */
                        "Bearer  " REF_TOKEN, "Bearer     " REF_TOKEN};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (lp_token_parse_bearer(ok[i], &t, &err) != LP_OK) {
            fprintf(stderr, "\"%s\": %s\n", ok[i], err.msg);
            fail();
        }
        assert_string_equal(t.id, REF_ID);
        lp_token_record r = ref_record();
        assert_int_equal(lp_token_verify(&r, &t, &err), LP_OK);
    }

    char huge[LP_TOKEN_HEADER_MAX + 2];
    memset(huge, 'A', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    memcpy(huge, "Bearer ", 7);
    const struct {
        const char *value;
        lp_status st;
        const char *msg_part;
    } bad[] = {
        {NULL, LP_ERR_NOT_FOUND, "no Authorization header"},
        {"", LP_ERR_MALFORMED, "empty"},
        {"bearer x", LP_ERR_MALFORMED, "too short"},
        {"Bearer x", LP_ERR_MALFORMED, "too short"},
        {"Bearer  x", LP_ERR_MALFORMED, "too short"},
        {"Basic x", LP_ERR_UNSUPPORTED, "not Bearer"},
        {"Basic " REF_TOKEN, LP_ERR_UNSUPPORTED, "not Bearer"},
        {"Basic dXNlcjpwYXNzd29yZA==", LP_ERR_UNSUPPORTED, "not Bearer"},
        {"Bearer:" REF_TOKEN, LP_ERR_UNSUPPORTED, "not Bearer"},
        {"Bearerx " REF_TOKEN, LP_ERR_UNSUPPORTED, "not Bearer"},
        {"Beare " REF_TOKEN, LP_ERR_UNSUPPORTED, "not Bearer"},
        {REF_TOKEN, LP_ERR_UNSUPPORTED, "not Bearer"},
        {"Bearer", LP_ERR_MALFORMED, "without a token"},
        {"Bearer ", LP_ERR_MALFORMED, "without a token"},
        {"Bearer    ", LP_ERR_MALFORMED, "without a token"},
        {"Bearer\t" REF_TOKEN, LP_ERR_MALFORMED, "not a space"},
        {"Bearer \t" REF_TOKEN, LP_ERR_MALFORMED, "too long"},
        {" Bearer " REF_TOKEN, LP_ERR_MALFORMED, "white space"},
        {"\tBearer " REF_TOKEN, LP_ERR_MALFORMED, "white space"},
        {"Bearer " REF_TOKEN " ", LP_ERR_MALFORMED, "too long"},
        {"Bearer " REF_TOKEN ",x", LP_ERR_MALFORMED, "too long"},
        {"Bearer " REF_TOKEN " " REF_TOKEN, LP_ERR_MALFORMED, "too long"},
        {"Bearer lq_" REF_ID "_" REF_SECRET_TEXT, LP_ERR_MALFORMED, "lp_"},
        {huge, LP_ERR_TOO_LARGE, "longer than 1024"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&t, 0x5a, sizeof t);
        lp_status st = lp_token_parse_bearer(bad[i].value, &t, &err);
        if (st != bad[i].st || !strstr(err.msg, bad[i].msg_part)) {
            fprintf(stderr, "case %zu: status %s, message \"%s\"\n", i, lp_status_name(st),
                    err.msg);
            fail();
        }
        assert_true(all_zero(&t, sizeof t));
        assert_no_secret(err.msg, REF_SECRET_TEXT);
        assert_null(strstr(err.msg, "dXNlcjpw"));
    }
    /* Exactly at the size limit is still looked at (and is then too long a token). */
    huge[LP_TOKEN_HEADER_MAX] = '\0';
    assert_int_equal(lp_token_parse_bearer(huge, &t, &err), LP_ERR_MALFORMED);
    assert_int_equal(lp_token_parse_bearer("Bearer " REF_TOKEN, NULL, &err), LP_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vector), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refusals),         cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_no_collisions),    cmocka_unit_test(test_generate_args),
        cmocka_unit_test(test_scopes_parse),     cmocka_unit_test(test_scopes_format),
        cmocka_unit_test(test_scopes_allow),     cmocka_unit_test(test_bearer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
