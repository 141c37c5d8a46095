/*
 * signer.c — the publisher's side of apps whose publisher signs (see
 * signer.h for the checks made before anything is signed).
 *
 * Temporary folders (the TUF client's metadata, the blob store of a local
 * manifest, the scratch repository of a new root) are made with mkdtemp
 * under $TMPDIR (default /tmp) and removed, with everything in them, before
 * the function that made them returns, whatever the outcome.
 *
 * The bytes to sign are canonical JSON; they are made readable with
 * lp_tuf_canonical_to_json and parsed strictly (duplicate keys, trailing
 * bytes refused; 64-bit integers) only to be checked.  What is signed is
 * always the bytes as received, which lp_tuf_sign_signed parses again with
 * the client's own metadata parser.
 */
#include "cli/signer.h"

#include "cli/api_print.h"
#include "cli/cli.h"
#include "core/file.h"
#include "core/timeutil.h"
#include "livepush/blobstore.h"
#include "livepush/hash.h"
#include "livepush/tuf.h"
#include "livepush/tuf_repo.h"
#include "livepush/tuf_sign.h"
#include "tuf/json.h"
#include "tuf/tufkey.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_FILE_MAX (64u * 1024)
#define ROOT_MAX (512u * 1024)
#define SIGNED_MAX (64u * 1024 * 1024)
#define META_MAX (64u * 1024 * 1024)
#define RELEASE_PREFIX "releases/"
/* The expiry of the targets metadata to sign must lie in this window. */
#define EXPIRES_MIN_AHEAD 3600
#define EXPIRES_MAX_AHEAD (366 * 86400)

static lp_status oom(lp_error *err) { return lp_error_set(err, LP_ERR_NOMEM, "out of memory"); }

/* ---- keys -------------------------------------------------------------------------- */

lp_status lp_cli_key_load(const char *path, lp_key **out, lp_error *err)
{
    *out = NULL;
    uint8_t *data;
    size_t len;
    lp_status st = lp_file_read(path, KEY_FILE_MAX, &data, &len, err);
    if (st)
        return lp_error_prefix(err, st, "key file %s", path);
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t'))
        i++;
    if (i < len && data[i] == '{') {
        json_t *obj;
        if (!(st = lp_json_parse(data, len, NULL, &obj, err))) {
            st = lp_tuf_key_from_json(obj, path, out, err);
            json_decref(obj);
        }
    } else {
        st = lp_key_from_private_pem(out, (const char *)data, len, err);
    }
    free(data);
    return st ? lp_error_prefix(err, st, "key file %s", path) : LP_OK;
}

void lp_signer_keys_free(lp_signer_keys *ks)
{
    for (size_t i = 0; i < ks->n; i++)
        lp_key_free(ks->k[i]);
    memset(ks, 0, sizeof *ks);
}

lp_status lp_signer_keys_load(lp_signer_keys *ks, const char *const *paths, size_t n,
                              bool need_private, lp_error *err)
{
    memset(ks, 0, sizeof *ks);
    if (n > LP_SIGNER_KEYS_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "at most %d keys", LP_SIGNER_KEYS_MAX);
    lp_status st = LP_OK;
    for (size_t i = 0; !st && i < n; i++) {
        st = lp_cli_key_load(paths[i], &ks->k[i], err);
        if (st)
            break;
        ks->path[i] = paths[i];
        ks->n = i + 1;
        if (need_private && !lp_key_has_private(ks->k[i]))
            st = lp_error_set(err, LP_ERR_INVALID_ARG,
                              "key file %s holds a public key only; signing needs the private key",
                              paths[i]);
        if (!st)
            st = lp_tuf_key_id(ks->k[i], ks->id[i], err);
        for (size_t j = 0; !st && j < i; j++)
            if (!strcmp(ks->id[j], ks->id[i]))
                st = lp_error_set(err, LP_ERR_INVALID_ARG, "key files %s and %s hold the same key",
                                  paths[j], paths[i]);
    }
    if (st)
        lp_signer_keys_free(ks);
    return st;
}

/* ---- temporary folders --------------------------------------------------------------- */

static lp_status make_tmpdir(const char *what, char **out, lp_error *err)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    char name[64];
    snprintf(name, sizeof name, "livepush-%s-XXXXXX", what);
    char *tmpl = lp_path_join(tmp, name);
    if (!tmpl)
        return oom(err);
    if (!mkdtemp(tmpl)) {
        lp_status st = lp_error_set(err, LP_ERR_IO, "temporary folder in %s: %s", tmp,
                                    strerror(errno));
        free(tmpl);
        return st;
    }
    *out = tmpl;
    return LP_OK;
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (type == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

/* Removes a temporary folder and everything in it (links are not
 * followed), then frees the path. */
static void remove_tmpdir(char *dir)
{
    if (dir)
        nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* ---- what devices trust now ---------------------------------------------------------- */

void lp_signer_published_free(lp_signer_published *p)
{
    json_decref(p->targets);
    json_decref(p->release_keyids);
    memset(p, 0, sizeof *p);
}

/* The `signed` object of a metadata file (new reference). */
static lp_status read_signed(const char *path, json_t **out, lp_error *err)
{
    uint8_t *data = NULL;
    size_t len = 0;
    json_t *doc = NULL;
    lp_status st = lp_file_read(path, META_MAX, &data, &len, err);
    if (!st) {
        lp_json_limits lim = {.max_bytes = META_MAX};
        st = lp_json_parse(data, len, &lim, &doc, err);
    }
    free(data);
    json_t *sg = json_object_get(doc, "signed");
    if (!st && !json_is_object(sg))
        st = lp_error_set(err, LP_ERR_MALFORMED, "%s: no signed object", path);
    if (!st)
        *out = json_incref(sg);
    json_decref(doc);
    return st;
}

/* Fetches the server's 1.root.json into dir/1.root.json. */
static lp_status fetch_first_root(const char *meta_url, const char *dir, char **path_out,
                                  lp_error *err)
{
    lp_fetcher *f = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    char url[4200];
    snprintf(url, sizeof url, "%s/1.root.json", meta_url);
    lp_status st = lp_http_fetcher_new(&f, NULL, err);
    if (!st)
        st = lp_fetch_to_buffer(f, url, ROOT_MAX, &data, &len, err);
    if (f)
        f->destroy(f);
    char *path = st ? NULL : lp_path_join(dir, "1.root.json");
    if (!st && !path)
        st = oom(err);
    if (!st)
        st = lp_file_write_atomic(path, data, len, 0600, err);
    free(data);
    if (st) {
        free(path);
        return st;
    }
    *path_out = path;
    return LP_OK;
}

lp_status lp_signer_published_fetch(const lp_client *c, const char *app, const char *root_file,
                                    const char *cmd, lp_signer_published *out, lp_error *err)
{
    memset(out, 0, sizeof *out);
    char *esc = lp_client_escape(app);
    if (!esc)
        return oom(err);
    char meta_url[4200];
    snprintf(meta_url, sizeof meta_url, "%s/v1/apps/%s/metadata", lp_client_server(c), esc);
    free(esc);
    char *tmp = NULL, *fetched = NULL, *mdir = NULL, *p = NULL;
    lp_tuf_client *tc = NULL;
    json_t *root = NULL;
    lp_status st = make_tmpdir("tuf", &tmp, err);
    if (!st && !(mdir = lp_path_join(tmp, "metadata")))
        st = oom(err);
    if (!st && !root_file) {
        st = fetch_first_root(meta_url, tmp, &fetched, err);
        if (st)
            lp_error_prefix(err, st, "the app's first root");
        else
            fprintf(stderr,
                    "livepush %s: warning: no --root given: the app's root was not pinned; "
                    "trusting the server's %s/1.root.json as it comes\n",
                    cmd, meta_url);
    }
    if (!st) {
        st = lp_tuf_init_trusted_root(mdir, root_file ? root_file : fetched, err);
        if (st)
            lp_error_prefix(err, st, "root %s", root_file ? root_file : "from the server");
    }
    /* Metadata past its expiry is still what devices were last given: a
     * publisher that has not released for a while (the targets metadata
     * lives 90 days) must be able to sign the next release, so a refresh
     * that fails only on expiry is repeated with expiry not enforced (every
     * signature and version is still checked), with a warning. */
    lp_tuf_step at = LP_TUF_STEP_NONE;
    lp_error e2;
    lp_error_clear(&e2);
    for (int attempt = 0; !st && attempt < 2; attempt++) {
        lp_tuf_client_config cfg = {.metadata_dir = mdir, .metadata_url = meta_url,
                                    .now = attempt ? 1 : 0};
        lp_tuf_client_free(tc);
        tc = NULL;
        st = lp_tuf_client_open(&tc, &cfg, err);
        if (st)
            break;
        lp_error_clear(&e2);
        st = lp_tuf_client_refresh(tc, &at, &e2);
        if (st != LP_ERR_EXPIRED || attempt)
            break;
        fprintf(stderr,
                "livepush %s: warning: %s; comparing with it anyway (the release signed now "
                "renews it)\n",
                cmd, e2.msg);
        st = LP_OK;
    }
    if (tc) { /* (without a client, err says why it could not be opened) */
        if (st == LP_ERR_NOT_FOUND && at == LP_TUF_STEP_TIMESTAMP) {
            st = LP_OK; /* no release was ever signed: nothing is published */
        } else if (st) {
            if (err)
                *err = e2;
            lp_error_prefix(err, st, "what devices trust now (TUF refresh from %s)", meta_url);
        } else {
            lp_tuf_versions v;
            lp_tuf_client_versions(tc, &v);
            out->targets_version = v.targets;
        }
    }
    if (!st && !(p = lp_path_join(mdir, "root.json")))
        st = oom(err);
    if (!st)
        st = read_signed(p, &root, err);
    free(p);
    p = NULL;
    if (!st) {
        json_t *role = json_object_get(json_object_get(root, "roles"), "targets");
        json_t *ids = json_object_get(role, "keyids");
        json_int_t thr = json_integer_value(json_object_get(role, "threshold"));
        if (!json_is_array(ids) || thr < 1 || thr > 1024)
            st = lp_error_set(err, LP_ERR_MALFORMED, "the trusted root has no targets role");
        else {
            out->release_keyids = json_incref(ids);
            out->threshold = (unsigned)thr;
        }
    }
    if (!st && out->targets_version > 0) {
        if (!(p = lp_path_join(mdir, "targets.json")))
            st = oom(err);
        else
            st = read_signed(p, &out->targets, err);
    }
    out->pinned = root_file != NULL;
    free(p);
    json_decref(root);
    lp_tuf_client_free(tc);
    free(fetched);
    free(mdir);
    remove_tmpdir(tmp);
    if (st)
        lp_signer_published_free(out);
    return st;
}

static bool is_release_key(const lp_signer_published *p, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(p->release_keyids, i, v)
    {
        if (json_is_string(v) && !strcmp(json_string_value(v), id))
            return true;
    }
    return false;
}

lp_status lp_signer_check_keys(const lp_signer_published *p, const lp_signer_keys *ks,
                               const char *app, lp_error *err)
{
    for (size_t i = 0; i < ks->n; i++)
        if (!is_release_key(p, ks->id[i]))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "key %s (key ID %s) is not a release key of app %s: the app's "
                                "root lists %zu release key%s for the targets role",
                                ks->path[i], ks->id[i], app, json_array_size(p->release_keyids),
                                json_array_size(p->release_keyids) == 1 ? "" : "s");
    return LP_OK;
}

int lp_signer_setup(lp_client *c, const char *cmd, const char *app, const char *root_file,
                    const lp_signer_keys *ks, lp_signer_published *pub)
{
    lp_error err;
    lp_error_clear(&err);
    json_t *ans = NULL;
    char *path = lp_client_path("/api/v1/apps/%s", app);
    lp_status st = path ? lp_client_request(c, "GET", path, NULL, &ans, &err)
                        : lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
    free(path);
    const char *signing = lp_client_str(json_object_get(ans, "app"), "signing");
    int rc = -1;
    if (st) {
        rc = lp_client_fail(c, st, &err, cmd);
    } else if (strcmp(signing, "publisher") != 0) {
        fprintf(stderr,
                "livepush %s: app %s is signed by the server (\"signing\":\"%s\"): "
                "--sign-key is for apps whose publisher signs; run the command without it\n",
                cmd, app, signing);
        rc = LP_EXIT_USAGE;
    } else if ((st = lp_signer_published_fetch(c, app, root_file, cmd, pub, &err)) ||
               (st = lp_signer_check_keys(pub, ks, app, &err))) {
        rc = lp_client_fail(c, st, &err, cmd);
    }
    json_decref(ans);
    return rc;
}

/* ---- the local manifest ------------------------------------------------------------- */

void lp_signer_ingest_opts(const char *bundle, const char *kind, const char *file_name,
                           lp_ingest_opts *io)
{
    memset(io, 0, sizeof *io);
    struct stat sb;
    if (stat(bundle, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        io->kind = LP_INGEST_DIR;
        return;
    }
    io->kind = !kind || !strcmp(kind, "auto") ? LP_INGEST_AUTO
               : !strcmp(kind, "archive")     ? LP_INGEST_ARCHIVE
                                              : LP_INGEST_FILE;
    if (!file_name) {
        const char *slash = strrchr(bundle, '/');
        file_name = slash ? slash + 1 : bundle;
    }
    io->file_name = file_name;
}

lp_status lp_signer_local_manifest(const char *bundle, const lp_ingest_opts *io,
                                   char sha256[65], uint64_t *len, lp_error *err)
{
    char *tmp = NULL, *json = NULL;
    size_t jlen = 0;
    lp_blobstore *bs = NULL;
    lp_manifest m = {0};
    lp_status st = make_tmpdir("manifest", &tmp, err);
    if (!st)
        st = lp_blobstore_open(tmp, &bs, err);
    if (!st)
        st = lp_ingest_path(bs, bundle, io, &m, NULL, err);
    if (!st)
        st = lp_manifest_to_json(&m, &json, &jlen, err);
    uint8_t md[LP_HASH_MAX_LEN];
    if (!st)
        st = lp_hash_buf(LP_HASH_SHA256, json, jlen, md, err);
    if (!st) {
        lp_hex_encode(md, LP_SHA256_LEN, sha256);
        *len = jlen;
    }
    free(json);
    lp_manifest_free(&m);
    lp_blobstore_close(bs);
    remove_tmpdir(tmp);
    return st ? lp_error_prefix(err, st, "the bundle's tree manifest") : LP_OK;
}

/* ---- checking the prepared bytes ------------------------------------------------------ */

/* The code of a release target's custom part, or 0. */
static int64_t custom_code(const json_t *entry)
{
    json_t *v = json_object_get(json_object_get(entry, "custom"), "version_code");
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

static const char *entry_sha256(const json_t *entry)
{
    return json_string_value(json_object_get(json_object_get(entry, "hashes"), "sha256"));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* A copy of custom with "channels" sorted (so the order given does not
 * matter); NULL when out of memory. */
static json_t *normalised(const json_t *custom)
{
    json_t *c = json_deep_copy(custom);
    json_t *ch = json_object_get(c, "channels");
    size_t n = json_array_size(ch);
    if (!c || n < 2)
        return c;
    json_t **items = calloc(n, sizeof *items);
    if (!items) {
        json_decref(c);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        items[i] = json_array_get(ch, i);
        if (!json_is_string(items[i])) {
            free(items);
            return c;
        }
    }
    qsort(items, n, sizeof *items, cmp_str);
    json_t *sorted = json_array();
    for (size_t i = 0; sorted && i < n; i++)
        json_array_append(sorted, items[i]);
    free(items);
    if (!sorted || json_object_set_new(c, "channels", sorted)) {
        json_decref(c);
        return NULL;
    }
    return c;
}

/* The bytes to sign as a JSON object (new reference). */
static lp_status parse_signed(const char *bytes, size_t len, json_t **out, lp_error *err)
{
    char *text = NULL;
    size_t tlen = 0;
    lp_status st = lp_tuf_canonical_to_json(bytes, len, &text, &tlen, err);
    if (!st) {
        lp_json_limits lim = {.max_bytes = tlen ? tlen : 1};
        st = lp_json_parse(text, tlen, &lim, out, err);
    }
    free(text);
    if (!st && !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        st = lp_error_set(err, LP_ERR_MALFORMED, "not a JSON object");
    }
    return st;
}

static lp_status refuse(lp_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static lp_status refuse(lp_error *err, const char *fmt, ...)
{
    char msg[LP_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lp_error_set(err, LP_ERR_STATE, "%s", msg);
}

/* The only delegation the server may add to the targets role: "rollout/"
 * + star to one key, threshold 1, terminating, role "rollout" (the online
 * key that publishes rollout policies, which devices use only to narrow
 * what the release keys signed; docs/rollouts.md). */
static lp_status check_delegations(const json_t *d, lp_error *err)
{
    const json_t *keys = json_object_get(d, "keys"), *roles = json_object_get(d, "roles");
    const json_t *r = json_array_get(roles, 0);
    const json_t *ids = json_object_get(r, "keyids"), *paths = json_object_get(r, "paths");
    const char *id = json_string_value(json_array_get(ids, 0));
    bool ok = json_is_object(d) && json_object_size(d) == 2 && json_is_object(keys) &&
              json_object_size(keys) == 1 && json_is_array(roles) && json_array_size(roles) == 1 &&
              json_is_object(r) && json_object_size(r) == 5 &&
              !strcmp(lp_client_str(r, "name"), "rollout") &&
              json_is_true(json_object_get(r, "terminating")) &&
              json_integer_value(json_object_get(r, "threshold")) == 1 &&
              json_array_size(ids) == 1 && id && json_object_get(keys, id) &&
              json_array_size(paths) == 1 &&
              !strcmp(json_string_value(json_array_get(paths, 0)) ? json_string_value(
                                                                        json_array_get(paths, 0))
                                                                  : "",
                      "rollout/*");
    if (!ok)
        return refuse(err, "field 'delegations' is not the rollout delegation (role rollout, "
                           "paths rollout/*, one key, threshold 1, terminating)");
    return LP_OK;
}

/* The fields other than version, expires and targets must not change;
 * delegations may only be the rollout delegation. */
static lp_status check_frame(const lp_signer_published *p, const json_t *sg, lp_error *err)
{
    static const char *const first[] = {"_type", "spec_version", "version", "expires", "targets"};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)sg, key, v)
    {
        if (!strcmp(key, "version") || !strcmp(key, "expires") || !strcmp(key, "targets"))
            continue;
        if (!strcmp(key, "delegations")) {
            lp_status st = check_delegations(v, err);
            if (st)
                return st;
            continue;
        }
        if (p->targets) {
            if (!json_equal(v, json_object_get(p->targets, key)))
                return refuse(err, "field '%s' differs from the targets metadata devices trust now",
                              key);
            continue;
        }
        bool known = false;
        for (size_t i = 0; i < sizeof first / sizeof first[0]; i++)
            known = known || !strcmp(key, first[i]);
        if (!known)
            return refuse(err, "field '%s' in the first targets metadata of the app", key);
    }
    json_object_foreach(p->targets, key, v)
    {
        if (strcmp(key, "version") && strcmp(key, "expires") && strcmp(key, "targets") &&
            !json_object_get(sg, key))
            return refuse(err, "field '%s' of the targets metadata devices trust now is gone", key);
    }
    return LP_OK;
}

/* The custom part a rollback to `target` must have (new reference;
 * version_code is set by the caller), from the newest published release
 * with that version string; NULL with a refusal when there is none. */
static json_t *rollback_custom(const json_t *old, const lp_signer_expect *e, lp_error *err)
{
    const char *k;
    json_t *v;
    const json_t *best = NULL;
    int64_t best_code = 0, best_name_code = 0;
    json_object_foreach((json_t *)old, k, v)
    {
        if (strncmp(k, RELEASE_PREFIX, strlen(RELEASE_PREFIX)) != 0 ||
            strcmp(lp_client_str(json_object_get(v, "custom"), "version"), e->rollback_target))
            continue;
        if (custom_code(v) > best_code) {
            best = v;
            best_code = custom_code(v);
            best_name_code = strtoll(k + strlen(RELEASE_PREFIX), NULL, 10);
        }
    }
    if (!best) {
        refuse(err, "no published release has version %s", e->rollback_target);
        return NULL;
    }
    json_t *c = json_deep_copy(json_object_get(best, "custom"));
    json_t *rb = json_object_get(c, "rollback_of");
    if (c && !rb)
        json_object_set_new(c, "rollback_of", json_integer(best_name_code));
    if (c && e->rollback_channels)
        json_object_set_new(c, "channels", json_deep_copy(e->rollback_channels));
    if (!c)
        oom(err);
    return c;
}

/* Checks the bytes of the answer `prepared` (see signer.h); *entry_out
 * (borrowed from *sg_out, a new reference) is the new entry. */
static lp_status check_prepared(const lp_signer_published *p, const json_t *prepared,
                                const lp_signer_expect *e, json_t **sg_out,
                                const json_t **entry_out, lp_error *err)
{
    const json_t *rel = json_object_get(prepared, "release");
    const json_t *sgn = json_object_get(json_object_get(prepared, "sign"), "signed");
    const char *version = lp_client_str(rel, "version");
    long long code = lp_client_int(rel, "version_code", 0);
    if (!json_is_string(sgn) || !*version || code < 1)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "the server's answer has no release or no bytes to sign");
    json_t *sg = NULL;
    lp_status st = parse_signed(json_string_value(sgn), json_string_length(sgn), &sg, err);
    if (st)
        return lp_error_prefix(err, st, "the bytes to sign");
    *sg_out = sg;
    char name[64];
    snprintf(name, sizeof name, RELEASE_PREFIX "%lld.json", code);
    const json_t *tg = json_object_get(sg, "targets");
    const json_t *old = p->targets ? json_object_get(p->targets, "targets") : NULL;
    json_t *ver = json_object_get(sg, "version");
    const char *exp = json_string_value(json_object_get(sg, "expires"));
    int64_t expires = 0, now = lp_time_now();
    if (strcmp(lp_client_str(sg, "_type"), "targets") != 0)
        return refuse(err, "they are not targets metadata");
    if (!json_is_integer(ver) || (uint64_t)json_integer_value(ver) != p->targets_version + 1)
        return refuse(err, "their version is %lld, but devices trust version %llu now, so the "
                           "next must be %llu",
                      (long long)json_integer_value(ver), (unsigned long long)p->targets_version,
                      (unsigned long long)p->targets_version + 1);
    if (!exp || lp_time_parse(exp, &expires, NULL) != LP_OK || expires < now + EXPIRES_MIN_AHEAD ||
        expires > now + EXPIRES_MAX_AHEAD)
        return refuse(err, "their expiry %s is not between one hour and 366 days from now",
                      exp ? exp : "(none)");
    if ((st = check_frame(p, sg, err)))
        return st;
    if (!json_is_object(tg))
        return refuse(err, "they list no targets");
    const char *k;
    json_t *v;
    int64_t highest = 0;
    json_object_foreach((json_t *)old, k, v)
    {
        if (!json_equal(v, json_object_get(tg, k)))
            return refuse(err, "target %s, published now, is %s", k,
                          json_object_get(tg, k) ? "changed" : "removed");
        if (!strncmp(k, RELEASE_PREFIX, strlen(RELEASE_PREFIX)) && custom_code(v) > highest)
            highest = custom_code(v);
    }
    json_object_foreach((json_t *)tg, k, v)
    {
        if (strcmp(k, name) && !json_object_get(old, k))
            return refuse(err, "they add target %s besides %s", k, name);
    }
    const json_t *entry = json_object_get(tg, name);
    if (!entry || json_object_get(old, name))
        return refuse(err, "they do not add %s, the target of release %s", name, version);
    const json_t *custom = json_object_get(entry, "custom");
    const char *sha = entry_sha256(entry);
    json_int_t length = json_integer_value(json_object_get(entry, "length"));
    if (strcmp(lp_client_str(custom, "version"), version) || custom_code(entry) != code)
        return refuse(err, "%s is not release %s (code %lld)", name, version, code);
    if (code <= highest)
        return refuse(err, "version code %lld is not above %lld, the highest published", code,
                      (long long)highest);
    if (e->version_code && e->version_code != code)
        return refuse(err, "the release has version code %lld, %lld was asked for", code,
                      (long long)e->version_code);
    if (!sha || strcmp(sha, lp_client_str(json_object_get(rel, "manifest"), "sha256")))
        return refuse(err, "%s does not list the tree manifest the server reports", name);
    if (e->manifest_sha256 &&
        (strcmp(sha, e->manifest_sha256) || (uint64_t)length != e->manifest_len))
        return refuse(err,
                      "%s lists a tree manifest (sha256 %s, %lld bytes) that is not the bundle's "
                      "(sha256 %s, %llu bytes)",
                      name, sha, (long long)length, e->manifest_sha256,
                      (unsigned long long)e->manifest_len);
    json_t *rb = json_object_get(custom, "rollback_of");
    bool server_says_rollback = !json_is_null(json_object_get(rel, "rollback_of")) &&
                                json_object_get(rel, "rollback_of");
    if ((rb != NULL) != server_says_rollback)
        return refuse(err, "%s and the server disagree on whether release %s is a rollback",
                      name, version);
    if (rb) {
        char oname[64];
        snprintf(oname, sizeof oname, RELEASE_PREFIX "%lld",
                 (long long)(json_is_integer(rb) ? json_integer_value(rb) : -1));
        strcat(oname, ".json");
        const json_t *orig = json_object_get(old, oname);
        if (!orig)
            return refuse(err, "%s is a rollback to %s, which is not published", name, oname);
        if (!json_equal(json_object_get(orig, "hashes"), json_object_get(entry, "hashes")) ||
            !json_equal(json_object_get(orig, "length"), json_object_get(entry, "length")))
            return refuse(err, "%s is a rollback to %s but its content differs from it", name,
                          oname);
    }
    json_t *rbc = NULL;
    if (e->rollback_target && !(rbc = rollback_custom(old, e, err)))
        return LP_ERR_STATE;
    const json_t *expected = rbc ? rbc : e->custom;
    if (expected) {
        json_t *want = normalised(expected), *got = normalised(custom);
        json_decref(rbc);
        bool same = want && got &&
                    !json_object_set_new(want, "version_code", json_integer(code)) &&
                    json_equal(want, got);
        char *wt = same ? NULL : json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
        char *gt = same ? NULL : json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(want);
        json_decref(got);
        if (!same) {
            st = refuse(err, "the release fields of %s are %.300s, not %.300s as asked", name,
                        gt ? gt : "?", wt ? wt : "?");
            free(wt);
            free(gt);
            return st;
        }
    }
    *entry_out = entry;
    return LP_OK;
}

/* ---- signing and sending --------------------------------------------------------------- */

/* threshold 0: not known here. */
static void print_waiting(const char *app, const char *version, long long code, size_t held,
                          unsigned threshold, long long needed)
{
    if (threshold)
        printf("release %s (version code %lld) of app %s is waiting for %lld more signature%s "
               "(%zu of %u held)\n",
               version, code, app, needed, needed == 1 ? "" : "s", held, threshold);
    else
        printf("release %s (version code %lld) of app %s is waiting for the signatures of its "
               "release keys (%zu held)\n",
               version, code, app, held);
    printf("a holder of a release key signs it with:\n"
           "  livepush sign --app %s --version %s --sign-key KEY.pem --root ROOT.json\n"
           "(`livepush approve` with the same options does the same, worded as approvals)\n",
           app, version);
}

/* The outcome of `approve`: "approved release V (code C) of app A: P of K
 * approvals, M missing" (with the keys that have not approved yet and the
 * command another approver runs) or "...: P of K approvals: published".
 * The counts are the release's "approvals" object when the server sends
 * one, else `held` of `threshold`. */
static void print_approved(const char *app, const json_t *rel, bool published, size_t held,
                           unsigned threshold)
{
    const json_t *a = json_object_get(rel, "approvals");
    bool known = json_is_object(a);
    long long present = known ? lp_client_int(a, "present", 0) : (long long)held;
    long long required = known ? lp_client_int(a, "required", 0) : (long long)threshold;
    long long missing = known ? lp_client_int(a, "missing", 0)
                              : (required > present ? required - present : 0);
    const char *version = lp_client_str(rel, "version");
    printf("approved release %s (code %lld) of app %s: %lld of %lld approval%s", version,
           lp_client_int(rel, "version_code", 0), app, present, required,
           required == 1 ? "" : "s");
    if (published) {
        printf(": published\n");
        return;
    }
    printf(", %lld missing\n", missing);
    size_t i;
    const json_t *k;
    bool any = false;
    json_array_foreach(json_object_get(a, "keys"), i, k)
    {
        if (json_is_true(json_object_get(k, "approved")))
            continue;
        printf("%s%s", any ? ", " : "not approved yet by the release keys ",
               lp_client_str(k, "keyid"));
        any = true;
    }
    if (any)
        printf("\n");
    printf("another approver (a holder of a release key) approves it with:\n"
           "  livepush approve --app %s --version %s --sign-key KEY.pem --root ROOT.json\n",
           app, version);
}

int lp_signer_finish(lp_client *c, const char *cmd, const char *app, const json_t *prepared,
                     const lp_signer_published *pub, const lp_signer_expect *expect,
                     const lp_signer_keys *ks, bool json)
{
    return lp_signer_finish_as(c, cmd, LP_SIGNER_SIGNATURES, app, prepared, pub, expect, ks,
                               json);
}

int lp_signer_finish_as(lp_client *c, const char *cmd, lp_signer_words words, const char *app,
                        const json_t *prepared, const lp_signer_published *pub,
                        const lp_signer_expect *expect, const lp_signer_keys *ks, bool json)
{
    const json_t *rel = json_object_get(prepared, "release");
    const json_t *sign = json_object_get(prepared, "sign");
    const char *version = lp_client_str(rel, "version");
    long long code = lp_client_int(rel, "version_code", 0);
    size_t held = json_array_size(json_object_get(sign, "signatures"));
    lp_error err;
    lp_error_clear(&err);
    if (!ks || ks->n == 0) {
        /* the threshold: the trusted root's, else the release's approvals */
        unsigned thr = pub ? pub->threshold : 0;
        const json_t *appr = json_object_get(rel, "approvals");
        long long req = lp_client_int(appr, "required", 0);
        if (!thr && req > 0 && req <= 1024)
            thr = (unsigned)req;
        if (json)
            lp_client_print_json(prepared);
        else
            print_waiting(app, version, code, held, thr,
                          thr > held ? (long long)(thr - held) : 1);
        return LP_EXIT_PENDING;
    }
    json_t *sg = NULL, *body = NULL, *arr = NULL, *ans = NULL;
    const json_t *entry = NULL;
    lp_status st = check_prepared(pub, prepared, expect, &sg, &entry, &err);
    if (st) {
        fprintf(stderr,
                "livepush %s: refusing to %s release %s (code %lld) of app %s: %s\n"
                "livepush %s: nothing was signed; the release stays pending (withdraw it with "
                "'livepush cancel --app %s --version %s')\n",
                cmd, words == LP_SIGNER_APPROVALS ? "approve" : "sign", version, code, app,
                err.msg, cmd, app, version);
        json_decref(sg);
        return LP_EXIT_FAIL;
    }
    if (!expect->manifest_sha256 && !json_object_get(json_object_get(entry, "custom"),
                                                     "rollback_of"))
        fprintf(stderr,
                "livepush %s: warning: the content of release %s (tree manifest %s) was not "
                "compared with a bundle here (give --bundle to do so)\n",
                cmd, version, entry_sha256(entry));
    const json_t *sgn = json_object_get(sign, "signed");
    arr = json_array();
    body = arr ? json_pack("{s:O}", "signatures", arr) : NULL;
    if (!body)
        st = oom(&err);
    json_decref(arr);
    arr = json_object_get(body, "signatures");
    for (size_t i = 0; !st && i < ks->n; i++) {
        char kid[65], *sig = NULL;
        st = lp_tuf_sign_signed(ks->k[i], json_string_value(sgn), json_string_length(sgn), kid,
                                &sig, &err);
        if (st)
            lp_error_prefix(&err, st, "key %s", ks->path[i]);
        else if (json_array_append_new(arr, json_pack("{s:s,s:s}", "keyid", kid, "sig", sig)))
            st = oom(&err);
        free(sig);
    }
    char *path = st ? NULL : lp_client_path("/api/v1/apps/%s/releases/%s/signatures", app,
                                            version);
    if (!st && !path)
        st = oom(&err);
    if (!st)
        st = lp_client_request(c, "POST", path, body, &ans, &err);
    free(path);
    json_decref(body);
    json_decref(sg);
    int rc;
    if (!st) {
        if (json) {
            lp_client_print_json(ans);
        } else if (words == LP_SIGNER_APPROVALS) {
            print_approved(app, json_object_get(ans, "release"), true,
                           held + ks->n, pub ? pub->threshold : 0);
        } else {
            const json_t *r = json_object_get(ans, "release");
            char ch[256];
            lp_print_join(json_object_get(r, "channels"), ch, sizeof ch);
            printf("published %s (version code %lld) of app %s on %s (signed here with %zu "
                   "key%s)\n",
                   lp_client_str(r, "version"), lp_client_int(r, "version_code", 0), app, ch,
                   ks->n, ks->n == 1 ? "" : "s");
        }
        rc = LP_EXIT_OK;
    } else if (lp_client_last_http_status(c) == 409 &&
               !strcmp(lp_client_last_error_code(c), "threshold")) {
        const json_t *s = json_object_get(ans, "sign");
        if (json)
            lp_client_print_json(ans);
        else if (words == LP_SIGNER_APPROVALS)
            print_approved(app, json_object_get(ans, "release"), false,
                           json_array_size(json_object_get(s, "signatures")),
                           (unsigned)lp_client_int(s, "threshold", 0));
        else
            print_waiting(app, version, code, json_array_size(json_object_get(s, "signatures")),
                          (unsigned)lp_client_int(s, "threshold", 0),
                          lp_client_int(s, "needed", 1));
        rc = LP_EXIT_PENDING;
    } else {
        rc = lp_client_fail(c, st, &err, cmd);
    }
    json_decref(ans);
    return rc;
}

/* ---- a new app whose publisher signs ------------------------------------------------- */

/* The public key of {"keyid", "key"}, checked against its key ID. */
static lp_status online_key(const json_t *online, const char *role, lp_key **out, lp_error *err)
{
    const json_t *e = json_object_get(online, role);
    char id[65];
    lp_status st = lp_tuf_key_from_json(json_object_get(e, "key"), role, out, err);
    if (!st)
        st = lp_tuf_key_id(*out, id, err);
    if (!st && strcmp(lp_client_str(e, "keyid"), id) != 0)
        st = lp_error_set(err, LP_ERR_MALFORMED,
                          "the server's %s key: key ID %s is not the key's (%s)", role,
                          lp_client_str(e, "keyid"), id);
    if (st) {
        lp_key_free(*out);
        *out = NULL;
    }
    return st;
}

/* Builds and signs the first root in a scratch repository (removed after);
 * *bytes / *len the root file. */
static lp_status build_root(const json_t *online, const lp_signer_keys *root_keys,
                            unsigned root_threshold, const lp_signer_keys *rel_keys,
                            unsigned rel_threshold, char **bytes, size_t *len, lp_error *err)
{
    char *tmp = NULL, *dir = NULL, *canon = NULL;
    size_t clen = 0;
    lp_tuf_repo *r = NULL;
    lp_key *snap = NULL, *ts = NULL;
    lp_status st = online_key(online, "snapshot", &snap, err);
    if (!st)
        st = online_key(online, "timestamp", &ts, err);
    if (!st)
        st = make_tmpdir("root", &tmp, err);
    if (!st && !(dir = lp_path_join(tmp, "repo")))
        st = oom(err);
    if (!st)
        st = lp_tuf_repo_create(&r, dir, err);
    for (size_t i = 0; !st && i < root_keys->n; i++)
        st = lp_tuf_repo_add_key(r, "root", root_keys->k[i], err);
    for (size_t i = 0; !st && i < rel_keys->n; i++)
        st = lp_tuf_repo_add_key(r, "targets", rel_keys->k[i], err);
    if (!st)
        st = lp_tuf_repo_set_threshold(r, "root", root_threshold, err);
    if (!st)
        st = lp_tuf_repo_set_threshold(r, "targets", rel_threshold, err);
    if (!st)
        st = lp_tuf_repo_add_key(r, "snapshot", snap, err);
    if (!st)
        st = lp_tuf_repo_add_key(r, "timestamp", ts, err);
    if (!st)
        st = lp_tuf_repo_prepare(r, "root", &canon, &clen, err);
    for (size_t i = 0; !st && i < root_keys->n; i++) {
        char kid[65], *sig = NULL;
        st = lp_tuf_sign_signed(root_keys->k[i], canon, clen, kid, &sig, err);
        if (!st)
            st = lp_tuf_repo_add_signature(r, "root", kid, sig, err);
        free(sig);
        if (st)
            lp_error_prefix(err, st, "root key %s", root_keys->path[i]);
    }
    if (!st)
        st = lp_tuf_repo_assemble(r, "root", bytes, len, err);
    free(canon);
    lp_tuf_repo_free(r);
    lp_key_free(snap);
    lp_key_free(ts);
    free(dir);
    remove_tmpdir(tmp);
    return st ? lp_error_prefix(err, st, "building the root") : LP_OK;
}

static void print_ids(const char *what, const lp_signer_keys *ks, unsigned threshold)
{
    printf("  %-13s threshold %u of %zu:", what, threshold, ks->n);
    for (size_t i = 0; i < ks->n; i++)
        printf(" %s", ks->id[i]);
    printf("\n");
}

int lp_signer_app_create(lp_client *c, const char *name, const lp_signer_keys *root_keys,
                         unsigned root_threshold, const lp_signer_keys *release_keys,
                         unsigned release_threshold, const char *root_out, bool json)
{
    lp_error err;
    lp_error_clear(&err);
    json_t *body = json_pack("{s:s,s:s}", "name", name, "signing", "publisher");
    json_t *begun = NULL, *made = NULL;
    char *root = NULL, *rpath = NULL;
    size_t rlen = 0;
    bool written = false;
    lp_status st = body ? lp_client_request(c, "POST", "/api/v1/apps", body, &begun, &err)
                        : lp_error_set(&err, LP_ERR_INVALID_ARG, "app name is not valid UTF-8");
    json_decref(body);
    body = NULL;
    if (!st)
        st = build_root(json_object_get(begun, "online_keys"), root_keys, root_threshold,
                        release_keys, release_threshold, &root, &rlen, &err);
    /* The root file is kept before the server has it, so it can never be
     * lost; a root the server refuses is removed again. */
    if (!st) {
        st = lp_file_write_atomic(root_out, root, rlen, 0644, &err);
        written = !st;
    }
    if (!st && !(body = json_pack("{s:s%}", "root", root, rlen)))
        st = oom(&err);
    if (!st && !(rpath = lp_client_path("/api/v1/apps/%s/root", name)))
        st = oom(&err);
    if (!st)
        st = lp_client_request(c, "PUT", rpath, body, &made, &err);
    long status = lp_client_last_http_status(c);
    if (st && written && status >= 400 && status < 500) {
        unlink(root_out);
        written = false;
    }
    int rc;
    if (st) {
        rc = lp_client_fail(c, st, &err, "app create");
        if (written)
            fprintf(stderr,
                    "livepush app create: the root was written to %s; whether the server "
                    "took it is unknown (see 'livepush app show %s')\n",
                    root_out, name);
    } else {
        if (json) {
            lp_client_print_json(made);
        } else {
            printf("app %s created; its publisher signs its releases\n", name);
            printf("root written to %s: keep it, devices are set up with this file\n",
                   root_out);
            print_ids("root keys", root_keys, root_threshold);
            print_ids("release keys", release_keys, release_threshold);
            const json_t *on = json_object_get(begun, "online_keys");
            printf("  %-13s %s (held by the server)\n", "snapshot key",
                   lp_client_str(json_object_get(on, "snapshot"), "keyid"));
            printf("  %-13s %s (held by the server)\n", "timestamp key",
                   lp_client_str(json_object_get(on, "timestamp"), "keyid"));
        }
        rc = LP_EXIT_OK;
    }
    free(rpath);
    free(root);
    json_decref(body);
    json_decref(begun);
    json_decref(made);
    return rc;
}
