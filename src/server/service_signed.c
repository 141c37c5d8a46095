/*
 * service_signed.c — apps whose publisher signs their releases.
 *
 * Keys.  The publisher keeps the app's root keys offline and its release
 * keys (the targets role, any threshold) on its own machines.  The server
 * holds only the app's online keys, <keys>/<app>/snapshot.pem and
 * timestamp.pem; having no root.pem is what marks the app as signed by its
 * publisher (lp_service_app_publisher_signed).  The server can therefore
 * re-sign snapshot and timestamp, but never change which releases devices
 * may install.
 *
 * Creating such an app takes two calls.  lp_service_app_begin_signed makes
 * the online keys (or hands out the same ones again while the app is not
 * finished) and returns their public halves.  The publisher builds its
 * first root offline (its root and release keys, the server's online
 * keys), signs it and sends it; lp_service_app_set_root checks it (a valid
 * self-signed version 1 root whose snapshot and timestamp roles list
 * exactly the server's keys, whose targets role lists at least one key,
 * and whose root and targets roles list no server key), writes the
 * repository (root only) and then inserts the database row.  Until the row
 * exists the app does not exist: it is not listed and cannot publish; the
 * leftovers of an unfinished attempt are moved to <data>/trash/ by the
 * next one.
 *
 * Publishing takes two calls too.  lp_service_publish_prepare ingests the
 * bundle (the same code as lp_service_publish), then under the app's lock
 * and in one transaction inserts the release as "pending", edits a fresh
 * copy of the repository to list the published releases plus this one
 * (lp_service_reconcile: the same targets, names and custom fields as for
 * server-signed apps), fixes the targets expiry, prepares the targets role
 * and writes <repos>/<app>.pending.json (atomically) before the commit.
 * The pending file records the release, the expiry and the sha256 of the
 * prepared bytes; the bytes themselves are not stored, because the same
 * edits with the same expiry give the same bytes again.  An app has at
 * most one pending release, so nothing else changes its targets while the
 * publisher signs, and the server may restart in between.
 *
 * lp_service_publish_sign, under the app's lock, repeats the edits in a
 * fresh copy, prepares again and compares the sha256 with the pending file
 * (a difference is LP_ERR_STATE: cancel and prepare again), attaches the
 * signatures kept from earlier calls and the new ones (a bad one refuses
 * the call), and publishes with the online keys.  Below the targets
 * threshold the publish writes nothing; the valid signatures are kept in
 * the pending file, so the holders of a threshold of keys may sign one
 * after another.  Once published, the release is marked "published" in the
 * database and the pending file removed.
 *
 * Approvals (lp_service_release_approvals).  Each signature by a release
 * key is one approval of the release; the targets threshold is the quorum.
 * What the release objects show is read from what is already kept, without
 * the app's lock: the key IDs in the pending file for a pending release,
 * the signatures of the first targets metadata version that listed it for
 * a published one, and for both the key list and threshold of the targets
 * role in the current root.json.  Nothing is installable before the quorum
 * is met because nothing is written before it: the repository, and so
 * every device, sees the release only once the threshold of signatures is
 * attached.
 *
 * Crash safety.  The order is: repository written (timestamp.json last),
 * then the database state, then the pending file removed.  A crash or a
 * failure after the repository was written leaves a pending release that
 * the repository already lists with the same manifest; sign and cancel
 * notice that and mark it published, and so does the recovery at every
 * start (lp_service_signed_recover_app), which never signs anything.  A
 * published release the repository does not list cannot happen by this
 * order; recovery logs it (and a listed release the database does not
 * publish) as an error instead of failing the start: only the publisher
 * can repair it, by signing the next release.
 */
#include "server/service_priv.h"

#include "core/file.h"
#include "core/timeutil.h"
#include "livepush/hash.h"
#include "livepush/tuf.h"
#include "livepush/tuf_repo.h"
#include "livepush/tuf_sign.h"
#include "tuf/json.h"
#include "tuf/metadata.h"
#include "tuf/repo_priv.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RELEASE_PREFIX "releases/"
/* Most signatures one call or one pending release holds. */
#define SIGS_MAX 1024
/* Largest pending file read back (it holds at most SIGS_MAX signatures). */
#define PENDING_MAX (16u * 1024 * 1024)

enum { ON_SNAPSHOT, ON_TIMESTAMP, NONLINE };
static const char *const online_roles[NONLINE] = {"snapshot", "timestamp"};

static lp_status oom(lp_error *err) { return lp_error_set(err, LP_ERR_NOMEM, "out of memory"); }

/* ---- keys and mode --------------------------------------------------- */

static void key_path(const lp_service *s, const char *app, const char *role, char *out,
                     size_t cap)
{
    snprintf(out, cap, "%s/%s/%s.pem", s->keys_dir, app, role);
}

bool lp_service_app_publisher_signed(lp_service *s, const char *name)
{
    if (lp_service_check_app_name(name, NULL) != LP_OK)
        return false;
    char p[4400];
    key_path(s, name, "root", p, sizeof p);
    if (lp_file_exists(p))
        return false;
    key_path(s, name, "timestamp", p, sizeof p);
    return lp_file_exists(p) == 1;
}

const char *lp_service_app_signing(lp_service *s, const char *name)
{
    return lp_service_app_publisher_signed(s, name) ? "publisher" : "server";
}

static void free_online(lp_key *keys[NONLINE])
{
    for (int i = 0; i < NONLINE; i++) {
        lp_key_free(keys[i]);
        keys[i] = NULL;
    }
}

static lp_status load_online(lp_service *s, const char *app, lp_key *keys[NONLINE],
                             lp_error *err)
{
    for (int i = 0; i < NONLINE; i++)
        keys[i] = NULL;
    for (int i = 0; i < NONLINE; i++) {
        char path[4400];
        key_path(s, app, online_roles[i], path, sizeof path);
        lp_status st = lp_key_load_private_file(&keys[i], path, err);
        if (st) {
            free_online(keys);
            return lp_error_prefix(err, st, "app %s: %s key", app, online_roles[i]);
        }
    }
    return LP_OK;
}

static lp_status make_online(lp_service *s, const char *app, lp_key *keys[NONLINE],
                             lp_error *err)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", s->keys_dir, app);
    lp_status st = lp_file_mkdirs(dir, 0700, err);
    for (int i = 0; !st && i < NONLINE; i++) {
        char path[4400];
        key_path(s, app, online_roles[i], path, sizeof path);
        st = lp_key_generate(&keys[i], LP_KEY_ED25519, err);
        if (!st)
            st = lp_key_save_private_file(keys[i], path, err);
    }
    if (st)
        free_online(keys);
    return st;
}

/* {"snapshot": {"keyid", "key"}, "timestamp": {...}} for the online keys. */
static lp_status online_json(lp_key *keys[NONLINE], json_t **out, lp_error *err)
{
    json_t *o = json_object();
    if (!o)
        return oom(err);
    for (int i = 0; i < NONLINE; i++) {
        char *text = NULL, id[65];
        lp_status st = lp_tuf_key_to_json(keys[i], &text, id, err);
        if (st) {
            json_decref(o);
            return st;
        }
        json_t *key = json_loads(text, 0, NULL);
        free(text);
        json_t *e = key ? json_pack("{s:s,s:o}", "keyid", id, "key", key) : NULL;
        if (!e || json_object_set_new(o, online_roles[i], e) != 0) {
            json_decref(o);
            return oom(err);
        }
    }
    *out = o;
    return LP_OK;
}

/* ---- creating an app ------------------------------------------------- */

static lp_status app_absent(lp_db *db, const char *name, lp_error *err)
{
    lp_db_app existing = {0};
    lp_status st = lp_db_app_get_by_name(db, name, &existing, err);
    lp_db_app_free(&existing);
    if (st == LP_OK)
        return lp_error_set(err, LP_ERR_EXISTS, "app '%s' exists already", name);
    return st == LP_ERR_NOT_FOUND ? LP_OK : st;
}

lp_status lp_service_app_begin_signed(lp_service *s, const char *name, json_t **online_keys_out,
                                      lp_error *err)
{
    if (online_keys_out)
        *online_keys_out = NULL;
    if (!online_keys_out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "begin app: no place for the keys");
    lp_status st = lp_service_check_app_name(name, err);
    if (st)
        return st;
    int lock = -1;
    lp_db *db = NULL;
    lp_key *keys[NONLINE] = {0};
    bool made = false;
    st = lp_service_lock_app(s, name, &lock, err);
    if (!st)
        st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = app_absent(db, name, err);
    /* Keys of an earlier, unfinished begin are handed out again: the
     * publisher may already have built its root around them. */
    if (!st && (!lp_service_app_publisher_signed(s, name) || load_online(s, name, keys, NULL))) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", s->keys_dir, name);
        st = lp_service_trash(s, dir, name, err);
        if (!st)
            st = make_online(s, name, keys, err);
        made = !st;
    }
    if (!st)
        st = online_json(keys, online_keys_out, err);
    if (st && st != LP_ERR_EXISTS)
        lp_error_prefix(err, st, "begin app %s", name);
    if (!st && s->log)
        lp_log_event(s->log, LP_LOG_INFO,
                     made ? "app online keys made; waiting for the publisher's root"
                          : "app online keys handed out again; waiting for the publisher's root",
                     json_pack("{s:s}", "app", name));
    free_online(keys);
    lp_service_db_release(s, db);
    lp_service_unlock(lock);
    return st;
}

/* The server key (of `keys`) that md lists under `keyid` is, if any:
 * matched by key ID, or by public value under another key ID. */
static int server_key_of(const lp_md *md, const char *keyid, char ids[NONLINE][65],
                         char *pubs[NONLINE])
{
    for (int i = 0; i < NONLINE; i++)
        if (strcmp(keyid, ids[i]) == 0)
            return i;
    for (size_t k = 0; k < md->nkeys; k++) {
        if (strcmp(md->keys[k].keyid, keyid) != 0 || !md->keys[k].public_value)
            continue;
        for (int i = 0; i < NONLINE; i++)
            if (strcmp(md->keys[k].public_value, pubs[i]) == 0)
                return i;
    }
    return -1;
}

/* What the server requires of the publisher's root beyond its validity
 * (which lp_tuf_repo_create_from_root checks). */
static lp_status check_root_roles(const void *root, size_t len, lp_key *keys[NONLINE],
                                  lp_error *err)
{
    char ids[NONLINE][65];
    char *pubs[NONLINE] = {0};
    lp_md *md = NULL;
    lp_status st = lp_md_parse(root, len, LP_MD_ROOT, "root", &md, err);
    for (int i = 0; !st && i < NONLINE; i++) {
        st = lp_tuf_key_id(keys[i], ids[i], err);
        if (!st)
            st = lp_key_public_value(keys[i], &pubs[i], err);
    }
    static const lp_md_type online_types[NONLINE] = {LP_MD_SNAPSHOT, LP_MD_TIMESTAMP};
    for (int i = 0; !st && i < NONLINE; i++) {
        const lp_md_role *ro = &md->roles[online_types[i]];
        if (ro->nkeyids != 1 || strcmp(ro->keyids[0], ids[i]) != 0)
            st = lp_error_set(err, LP_ERR_INVALID_ARG,
                              "root: role %s must list exactly one key, the server's %s key "
                              "%s; it lists %zu key%s%s%.64s%s",
                              online_roles[i], online_roles[i], ids[i], ro->nkeyids,
                              ro->nkeyids == 1 ? "" : "s", ro->nkeyids ? ": " : "",
                              ro->nkeyids ? ro->keyids[0] : "", ro->nkeyids > 1 ? ", ..." : "");
    }
    if (!st && md->roles[LP_MD_TARGETS].nkeyids == 0)
        st = lp_error_set(err, LP_ERR_INVALID_ARG,
                          "root: role targets lists no key: it must list the publisher's "
                          "release keys");
    static const lp_md_type offline_types[] = {LP_MD_ROOT, LP_MD_TARGETS};
    for (size_t t = 0; !st && t < 2; t++) {
        const lp_md_role *ro = &md->roles[offline_types[t]];
        for (size_t k = 0; !st && k < ro->nkeyids; k++) {
            int i = server_key_of(md, ro->keyids[k], ids, pubs);
            if (i >= 0)
                st = lp_error_set(err, LP_ERR_INVALID_ARG,
                                  "root: role %s lists the server's %s key %.64s: only the "
                                  "publisher's keys may sign it",
                                  ro->name, online_roles[i], ro->keyids[k]);
        }
    }
    for (int i = 0; i < NONLINE; i++)
        free(pubs[i]);
    lp_md_free(md);
    return st;
}

lp_status lp_service_app_set_root(lp_service *s, const char *name, const void *root, size_t len,
                                  lp_error *err)
{
    lp_status st = lp_service_check_app_name(name, err);
    if (st)
        return st;
    if (!root || !len)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "app %s: no root given", name);
    int lock = -1;
    lp_db *db = NULL;
    lp_key *keys[NONLINE] = {0};
    lp_tuf_repo *r = NULL;
    bool wrote = false;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", s->repos_dir, name);
    st = lp_service_lock_app(s, name, &lock, err);
    if (!st)
        st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = app_absent(db, name, err);
    if (!st && !lp_service_app_publisher_signed(s, name))
        st = lp_error_set(err, LP_ERR_STATE,
                          "no online keys are waiting for a root: begin the app first");
    if (!st)
        st = load_online(s, name, keys, err);
    if (!st)
        st = check_root_roles(root, len, keys, err);
    /* A repository without a row is what an unfinished attempt left. */
    if (!st)
        st = lp_service_trash(s, dir, name, err);
    if (!st) {
        st = lp_tuf_repo_create_from_root(&r, dir, root, len, err);
        wrote = !st;
    }
    if (!st)
        st = lp_db_app_create(db, name, 0, NULL, err);
    if (st && wrote) {
        lp_error e2;
        lp_service_trash(s, dir, name, &e2);
    }
    if (st && st != LP_ERR_EXISTS)
        lp_error_prefix(err, st, "app %s", name);
    if (!st && s->log)
        lp_log_event(s->log, LP_LOG_INFO, "app created; its publisher signs its releases",
                     json_pack("{s:s}", "app", name));
    lp_tuf_repo_free(r);
    free_online(keys);
    lp_service_db_release(s, db);
    lp_service_unlock(lock);
    return st;
}

/* ---- the pending file ------------------------------------------------ */

typedef struct pending {
    int64_t release_id;
    int64_t version_code;
    char manifest[65];
    int64_t expires;
    char signed_sha256[65];
    json_t *sigs; /* key ID -> hex signature, each verified when attached */
} pending;

static void pending_free(pending *p)
{
    json_decref(p->sigs);
    memset(p, 0, sizeof *p);
}

static void pending_path(const lp_service *s, const char *app, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s.pending.json", s->repos_dir, app);
}

static lp_status pending_write(lp_service *s, const char *app, const pending *p, lp_error *err)
{
    json_t *o = json_pack("{s:I,s:I,s:s,s:I,s:s,s:O}", "release_id", (json_int_t)p->release_id,
                          "version_code", (json_int_t)p->version_code, "manifest_sha256",
                          p->manifest, "expires", (json_int_t)p->expires, "signed_sha256",
                          p->signed_sha256, "signatures", p->sigs);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!text)
        return oom(err);
    char path[4300];
    pending_path(s, app, path, sizeof path);
    lp_status st = lp_file_write_atomic(path, text, strlen(text), 0600, err);
    free(text);
    return st;
}

static void pending_remove(lp_service *s, const char *app)
{
    char path[4300];
    pending_path(s, app, path, sizeof path);
    if (unlink(path) == 0)
        lp_file_sync_parent(path, NULL);
}

static bool is_sha256_hex(const char *h)
{
    if (!h || strlen(h) != 64)
        return false;
    for (size_t i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return false;
    return true;
}

/* Reads the pending file and checks that it belongs to `rel`. */
static lp_status pending_read(lp_service *s, const char *app, const lp_db_release *rel,
                              pending *p, lp_error *err)
{
    memset(p, 0, sizeof *p);
    char path[4300];
    pending_path(s, app, path, sizeof path);
    uint8_t *data = NULL;
    size_t len = 0;
    json_t *doc = NULL;
    lp_status st = lp_file_read(path, PENDING_MAX, &data, &len, err);
    if (!st) {
        lp_json_limits lim = {.max_bytes = PENDING_MAX};
        st = lp_json_parse(data, len, &lim, &doc, err);
    }
    free(data);
    if (st == LP_ERR_NOT_FOUND)
        return lp_error_set(err, LP_ERR_STATE,
                            "release %s has no record of what was prepared for signing (%s is "
                            "missing): cancel it and prepare it again",
                            rel->version, path);
    if (st)
        return lp_error_prefix(err, st, "pending file %s", path);
    json_t *id = json_object_get(doc, "release_id"), *code = json_object_get(doc, "version_code"),
           *exp = json_object_get(doc, "expires"), *sigs = json_object_get(doc, "signatures");
    const char *man = json_string_value(json_object_get(doc, "manifest_sha256"));
    const char *sha = json_string_value(json_object_get(doc, "signed_sha256"));
    bool ok = json_is_integer(id) && json_is_integer(code) && json_is_integer(exp) &&
              json_is_object(sigs) && json_object_size(sigs) <= SIGS_MAX && is_sha256_hex(man) &&
              is_sha256_hex(sha);
    const char *k;
    json_t *v;
    json_object_foreach(sigs, k, v) ok = ok && json_is_string(v);
    if (!ok) {
        json_decref(doc);
        return lp_error_set(err, LP_ERR_MALFORMED, "pending file %s: fields missing or wrong",
                            path);
    }
    p->release_id = json_integer_value(id);
    p->version_code = json_integer_value(code);
    p->expires = json_integer_value(exp);
    memcpy(p->manifest, man, 65);
    memcpy(p->signed_sha256, sha, 65);
    p->sigs = json_incref(sigs);
    json_decref(doc);
    if (p->release_id != rel->id || p->version_code != rel->version_code ||
        strcmp(p->manifest, rel->manifest_sha256) != 0) {
        pending_free(p);
        return lp_error_set(err, LP_ERR_STATE,
                            "release %s (code %lld): %s was prepared for another release: "
                            "cancel it and prepare it again",
                            rel->version, (long long)rel->version_code, path);
    }
    return LP_OK;
}

/* ---- preparing the targets role -------------------------------------- */

/* Opens the app's repository, edits it to list the published releases and
 * release `also_id`, sets the targets expiry and prepares the targets role:
 * *canon / *len are the bytes to sign, *rout the repository (caller frees). */
static lp_status prepare_targets(lp_service *s, lp_db *db, const lp_db_app *app, int64_t also_id,
                                 int64_t expires, lp_tuf_repo **rout, char **canon, size_t *len,
                                 lp_error *err)
{
    *rout = NULL;
    *canon = NULL;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", s->repos_dir, app->name);
    lp_tuf_repo *r = NULL;
    bool changed = false;
    lp_status st = lp_tuf_repo_open(&r, dir, err);
    if (!st)
        st = lp_service_reconcile(s, db, app, r, also_id, &changed, err);
    if (!st)
        st = lp_service_rollout_delegate(s, app->name, r, &changed, err);
    if (!st)
        st = lp_service_rollout_reconcile(s, db, app, r, &changed, err);
    if (!st)
        st = lp_tuf_repo_set_expires(r, "targets", expires, err);
    if (!st)
        st = lp_tuf_repo_prepare(r, "targets", canon, len, err);
    if (st) {
        lp_tuf_repo_free(r);
        return lp_error_prefix(err, st, "app %s: repository", app->name);
    }
    *rout = r;
    return LP_OK;
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t d[LP_HASH_MAX_LEN];
    if (lp_hash_buf(LP_HASH_SHA256, data, len, d, NULL) != LP_OK) {
        out[0] = '\0';
        return;
    }
    lp_hex_encode(d, 32, out);
}

/* The app's pending release (the only one), or LP_ERR_NOT_FOUND. */
static lp_status find_pending(lp_db *db, int64_t app_id, lp_db_release *out, lp_error *err)
{
    int64_t before = 0;
    for (;;) {
        lp_db_release_list list = {0};
        lp_status st = lp_db_release_list_by_app(db, app_id, NULL, before, 0, &list, err);
        if (st)
            return st;
        for (size_t k = 0; k < list.count; k++) {
            before = list.items[k].version_code;
            if (strcmp(list.items[k].state, LP_DB_STATE_PENDING) == 0) {
                *out = list.items[k];
                memset(&list.items[k], 0, sizeof list.items[k]);
                lp_db_release_list_free(&list);
                return LP_OK;
            }
        }
        size_t n = list.count;
        lp_db_release_list_free(&list);
        if (n < LP_DB_LIST_MAX)
            return LP_ERR_NOT_FOUND;
    }
}

typedef struct prepared {
    char *canon;
    size_t len;
} prepared;

/* The second half of a publish or rollback of an app whose publisher signs
 * (lp_service_insert_fn): insert pending, prepare, record, commit. */
static lp_status insert_pending(lp_service *s, const lp_db_app *app, lp_db_release_new *rel,
                                int64_t *id_out, void *ctx, lp_error *err)
{
    prepared *out = ctx;
    int lock = -1;
    lp_db *db = NULL;
    lp_db_release other = {0};
    lp_tuf_repo *r = NULL;
    pending p = {0};
    bool recorded = false;
    lp_db_audit_head audit = {0};
    lp_status st = lp_service_lock_app(s, app->name, &lock, err);
    if (!st)
        st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_begin(db, err);
    if (!st) {
        st = find_pending(db, app->id, &other, err);
        if (st == LP_OK)
            st = lp_error_set(err, LP_ERR_STATE,
                              "app %s: release %s (code %lld) is waiting for signatures: sign "
                              "or cancel it first",
                              app->name, other.version, (long long)other.version_code);
        else if (st == LP_ERR_NOT_FOUND)
            st = LP_OK;
    }
    if (!st && rel->version_code == 0) {
        int64_t max = 0;
        st = lp_db_release_max_code(db, app->id, &max, err);
        rel->version_code = max + 1;
    }
    rel->state = LP_DB_STATE_PENDING;
    if (!st)
        st = lp_db_release_insert(db, rel, id_out, err);
    if (!st)
        st = lp_service_audit_insert(s, db, app, rel, &audit, err);
    if (!st) {
        p.release_id = *id_out;
        p.version_code = rel->version_code;
        snprintf(p.manifest, sizeof p.manifest, "%s", rel->manifest_sha256);
        p.expires = lp_time_now() + lp_repo_default_lifetime(LP_MD_TARGETS);
        if (!(p.sigs = json_object()))
            st = oom(err);
    }
    if (!st)
        st = prepare_targets(s, db, app, *id_out, p.expires, &r, &out->canon, &out->len, err);
    if (!st) {
        sha256_hex(out->canon, out->len, p.signed_sha256);
        st = pending_write(s, app->name, &p, err);
        recorded = !st;
    }
    if (!st)
        st = lp_db_commit(db, err);
    if (st) {
        if (db && lp_db_in_transaction(db))
            lp_db_rollback(db, NULL);
        if (recorded)
            pending_remove(s, app->name);
        free(out->canon);
        out->canon = NULL;
    }
    pending_free(&p);
    lp_tuf_repo_free(r);
    lp_db_release_free(&other);
    lp_service_db_release(s, db);
    lp_service_unlock(lock);
    if (!st)
        lp_service_audit_anchor(s, &audit);
    return st;
}

/* LP_OK for an app whose publisher signs; LP_ERR_STATE for a server-signed
 * one, LP_ERR_NOT_FOUND for no app. */
static lp_status require_publisher_app(lp_service *s, const char *name, lp_error *err)
{
    lp_status st = lp_service_check_app_name(name, err);
    if (st || lp_service_app_publisher_signed(s, name))
        return st;
    lp_db *db = NULL;
    lp_db_app app = {0};
    st = lp_service_db_acquire(s, &db, err);
    if (!st)
        st = lp_db_app_get_by_name(db, name, &app, err);
    lp_service_db_release(s, db);
    lp_db_app_free(&app);
    if (st == LP_ERR_NOT_FOUND)
        return lp_error_set(err, st, "no app '%s'", name);
    if (st)
        return st;
    return lp_error_set(err, LP_ERR_STATE,
                        "app %s: the server signs its releases; publish them in one step", name);
}

static void log_prepared(lp_service *s, const char *app, const lp_db_release *rel)
{
    if (s->log && rel)
        lp_log_event(s->log, LP_LOG_INFO, "release prepared; waiting for the publisher's "
                                          "signatures",
                     json_pack("{s:s,s:s,s:I,s:s}", "app", app, "version", rel->version,
                               "version_code", (json_int_t)rel->version_code, "manifest",
                               rel->manifest_sha256));
}

lp_status lp_service_publish_prepare(lp_service *s, const char *app, const char *bundle_path,
                                     const lp_ingest_opts *ingest, const lp_release_fields *f,
                                     lp_db_release *out, char **signed_json, size_t *signed_len,
                                     lp_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!signed_json)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "prepare: no place for the signed bytes");
    *signed_json = NULL;
    lp_status st = require_publisher_app(s, app, err);
    if (st)
        return st;
    prepared pr = {0};
    lp_db_release rel = {0};
    st = lp_service_publish_with(s, app, bundle_path, ingest, f, insert_pending, &pr, &rel, err);
    if (st) {
        free(pr.canon);
        return st;
    }
    log_prepared(s, app, &rel);
    if (out)
        *out = rel;
    else
        lp_db_release_free(&rel);
    *signed_json = pr.canon;
    if (signed_len)
        *signed_len = pr.len;
    return LP_OK;
}

lp_status lp_service_rollback_prepare(lp_service *s, const char *app, const char *target_version,
                                      const char *const *channels, size_t n_channels,
                                      const char *targeting, const char *created_by,
                                      lp_db_release *out, char **signed_json,
                                      size_t *signed_len, lp_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!signed_json)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "prepare: no place for the signed bytes");
    *signed_json = NULL;
    lp_status st = require_publisher_app(s, app, err);
    if (st)
        return st;
    prepared pr = {0};
    lp_db_release rel = {0};
    st = lp_service_rollback_with(s, app, target_version, channels, n_channels, targeting,
                                  created_by, insert_pending, &pr, &rel, err);
    if (st) {
        free(pr.canon);
        return st;
    }
    log_prepared(s, app, &rel);
    if (out)
        *out = rel;
    else
        lp_db_release_free(&rel);
    *signed_json = pr.canon;
    if (signed_len)
        *signed_len = pr.len;
    return LP_OK;
}

/* ---- operations on the pending release ------------------------------- */

/* What sign, cancel and the pending query hold: the app's lock, a database
 * connection, the app, a release. */
typedef struct op {
    int lock;
    lp_db *db;
    lp_db_app app;
    lp_db_release rel;
} op;

static lp_status op_begin(lp_service *s, const char *name, op *o, lp_error *err)
{
    memset(o, 0, sizeof *o);
    o->lock = -1;
    lp_status st = require_publisher_app(s, name, err);
    if (!st)
        st = lp_service_lock_app(s, name, &o->lock, err);
    if (!st)
        st = lp_service_db_acquire(s, &o->db, err);
    if (!st) {
        st = lp_db_app_get_by_name(o->db, name, &o->app, err);
        if (st == LP_ERR_NOT_FOUND)
            lp_error_set(err, st, "no app '%s'", name);
    }
    return st;
}

static void op_end(lp_service *s, op *o)
{
    lp_db_release_free(&o->rel);
    lp_db_app_free(&o->app);
    lp_service_db_release(s, o->db);
    lp_service_unlock(o->lock);
}

/* o->rel = the newest release with that version string, which must be
 * pending. */
static lp_status op_get_pending(op *o, const char *version, lp_error *err)
{
    lp_status st = lp_db_release_get_by_version(o->db, o->app.id, version, &o->rel, err);
    if (st == LP_ERR_NOT_FOUND)
        return lp_error_set(err, st, "app %s has no release '%s'", o->app.name, version);
    if (st)
        return st;
    if (strcmp(o->rel.state, LP_DB_STATE_PENDING) != 0)
        return lp_error_set(err, LP_ERR_STATE,
                            "release %s (code %lld) of app %s is %s, not waiting for signatures",
                            o->rel.version, (long long)o->rel.version_code, o->app.name,
                            o->rel.state);
    return LP_OK;
}

/* The `targets` object the repository's targets role lists (borrowed from
 * *desc, which the caller releases). */
static lp_status listing(lp_tuf_repo *r, json_t **desc, json_t **targets, lp_error *err)
{
    *targets = NULL;
    lp_status st = lp_tuf_repo_describe(r, desc, err);
    if (st)
        return st;
    json_t *role;
    size_t i;
    json_array_foreach(json_object_get(*desc, "roles"), i, role)
        if (strcmp(json_string_value(json_object_get(role, "name")), "targets") == 0)
            *targets = json_object_get(role, "targets");
    return LP_OK;
}

static const char *listed_sha256(json_t *targets, const char *name)
{
    json_t *e = json_object_get(targets, name);
    return json_string_value(json_object_get(json_object_get(e, "hashes"), "sha256"));
}

/* Whether the repository on disk lists release `rel` with its manifest. */
static lp_status repo_lists(lp_service *s, const char *app, const lp_db_release *rel, bool *yes,
                            lp_error *err)
{
    *yes = false;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", s->repos_dir, app);
    lp_tuf_repo *r = NULL;
    json_t *desc = NULL, *targets = NULL;
    lp_status st = lp_tuf_repo_open(&r, dir, err);
    if (!st)
        st = listing(r, &desc, &targets, err);
    if (!st) {
        char name[48];
        lp_service_target_name(rel->version_code, name);
        const char *have = listed_sha256(targets, name);
        *yes = have && strcmp(have, rel->manifest_sha256) == 0;
    }
    json_decref(desc);
    lp_tuf_repo_free(r);
    return st ? lp_error_prefix(err, st, "app %s: repository", app) : LP_OK;
}

/* The audit entry of a pending release that the server marked published
 * on its own, finding its signed metadata written (a crash came between
 * the two).  `db` is outside a transaction; a failure is logged. */
static void audit_repaired(lp_service *s, lp_db *db, const char *app, const lp_db_release *rel)
{
    lp_error e;
    lp_error_clear(&e);
    json_t *d = lp_service_audit_release(rel);
    if (d)
        json_object_set_new(d, "reason", json_string("its signed metadata was written before"));
    if (lp_service_audit_db(s, db, "server", "release.published", app, rel->version, d, NULL,
                            &e) != LP_OK &&
        s->log)
        lp_log_event(s->log, LP_LOG_ERROR, "audit entry not written",
                     json_pack("{s:s,s:s,s:s}", "action", "release.published", "app", app,
                               "error", e.msg));
}

/* Marks o->rel published (its metadata is written) and drops the pending
 * file. */
static lp_status mark_published(lp_service *s, op *o, const char *how, lp_error *err)
{
    lp_status st = lp_db_release_set_state(o->db, o->rel.id, LP_DB_STATE_PUBLISHED, err);
    if (st)
        return lp_error_prefix(err, st,
                               "release %s: its signed metadata is written but the database "
                               "still says pending (repaired by the next sign, cancel or start)",
                               o->rel.version);
    pending_remove(s, o->app.name);
    lp_service_delta_plan(s, o->db, o->app.name, o->rel.id);
    lp_metrics_add(s->metrics, LP_M_PUBLISHES, (const char *[]){o->app.name}, 1);
    lp_service_lifecycle(s, "approved", o->app.name, o->rel.version_code, NULL,
                         json_pack("{s:s}", "version", o->rel.version));
    if (s->log)
        lp_log_event(s->log, LP_LOG_INFO, how,
                     json_pack("{s:s,s:s,s:I,s:s}", "app", o->app.name, "version",
                               o->rel.version, "version_code", (json_int_t)o->rel.version_code,
                               "manifest", o->rel.manifest_sha256));
    return LP_OK;
}

/* Repeats the prepare of release o->rel with the recorded expiry and checks
 * the bytes are the ones recorded.  *rout / *canon are the caller's. */
static lp_status reprepare(lp_service *s, op *o, const pending *p, lp_tuf_repo **rout,
                           char **canon, size_t *len, lp_error *err)
{
    lp_status st = prepare_targets(s, o->db, &o->app, o->rel.id, p->expires, rout, canon, len,
                                   err);
    if (st)
        return st;
    char sha[65];
    sha256_hex(*canon, *len, sha);
    if (strcmp(sha, p->signed_sha256) != 0)
        return lp_error_set(err, LP_ERR_STATE,
                            "release %s: the app's targets metadata changed since it was "
                            "prepared for signing: cancel it and prepare it again",
                            o->rel.version);
    return LP_OK;
}

/* The threshold of the targets role in r (0 when it cannot be read). */
static unsigned targets_threshold(lp_tuf_repo *r)
{
    json_t *desc = NULL, *role;
    size_t i;
    unsigned t = 0;
    if (lp_tuf_repo_describe(r, &desc, NULL) != LP_OK)
        return 0;
    json_array_foreach(json_object_get(desc, "roles"), i, role)
        if (strcmp(json_string_value(json_object_get(role, "name")), "targets") == 0) {
            json_int_t v = json_integer_value(json_object_get(role, "threshold"));
            t = v > 0 && v <= UINT32_MAX ? (unsigned)v : 0;
        }
    json_decref(desc);
    return t;
}

lp_status lp_service_publish_sign(lp_service *s, const char *app, const char *version,
                                  const char *const *keyids, const char *const *sigs, size_t n,
                                  lp_db_release *out, lp_error *err)
{
    return lp_service_publish_sign_ex(s, app, version, keyids, sigs, n, NULL, out, err);
}

lp_status lp_service_publish_sign_ex(lp_service *s, const char *app, const char *version,
                                     const char *const *keyids, const char *const *sigs,
                                     size_t n, lp_sign_progress *progress, lp_db_release *out,
                                     lp_error *err)
{
    lp_sign_progress unused;
    if (!progress)
        progress = &unused;
    memset(progress, 0, sizeof *progress);
    if (out)
        memset(out, 0, sizeof *out);
    if (!version || !*version)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "field 'version': required");
    if (n > SIGS_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "%zu signatures given, at most %d", n,
                            SIGS_MAX);
    for (size_t i = 0; i < n; i++)
        if (!keyids || !sigs || !keyids[i] || !*keyids[i] || !sigs[i] || !*sigs[i])
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "signature %zu: a key ID and a signature are required", i + 1);
    op o;
    pending p = {0};
    lp_tuf_repo *r = NULL;
    lp_key *keys[NONLINE] = {0};
    char *canon = NULL;
    size_t len = 0;
    json_t *kept = NULL;
    bool written = false;
    lp_status st = op_begin(s, app, &o, err);
    if (!st)
        st = op_get_pending(&o, version, err);
    if (!st)
        st = repo_lists(s, o.app.name, &o.rel, &written, err);
    if (!st && written) {
        /* An earlier sign wrote the metadata and stopped short of the
         * database: finish it. */
        st = mark_published(s, &o, "release published (its signed metadata was written before)",
                            err);
        if (!st)
            audit_repaired(s, o.db, o.app.name, &o.rel);
        goto done;
    }
    if (!st)
        st = pending_read(s, o.app.name, &o.rel, &p, err);
    if (!st && p.expires <= lp_time_now())
        st = lp_error_set(err, LP_ERR_STATE,
                          "release %s: the targets metadata prepared for it has expired: cancel "
                          "it and prepare it again",
                          o.rel.version);
    if (!st)
        st = reprepare(s, &o, &p, &r, &canon, &len, err);
    if (!st && !(kept = json_object()))
        st = oom(err);
    if (!st) {
        progress->threshold = targets_threshold(r);
        const char *kid;
        json_t *v;
        json_object_foreach(p.sigs, kid, v) {
            if (lp_tuf_repo_add_signature(r, "targets", kid, json_string_value(v), NULL) == LP_OK)
                json_object_set(kept, kid, v);
        }
        progress->held = json_object_size(kept);
    }
    for (size_t i = 0; !st && i < n; i++) {
        st = lp_tuf_repo_add_signature(r, "targets", keyids[i], sigs[i], err);
        if (st)
            lp_error_prefix(err, st, "release %s", o.rel.version);
        else if (json_object_set_new(kept, keyids[i], json_string(sigs[i])) != 0)
            st = oom(err);
    }
    if (!st)
        st = load_online(s, o.app.name, keys, err);
    if (!st) {
        st = lp_service_repo_publish(s, o.app.name, r, keys, NONLINE, err);
        if (st == LP_ERR_BAD_SIGNATURE) {
            /* Below the threshold: nothing was written; keep what verified. */
            progress->short_of_threshold = true;
            progress->held = json_object_size(kept);
            lp_error e2;
            json_decref(p.sigs);
            p.sigs = json_incref(kept);
            if (pending_write(s, o.app.name, &p, &e2) != LP_OK && s->log)
                lp_log_event(s->log, LP_LOG_ERROR, "signatures received could not be kept",
                             json_pack("{s:s,s:s}", "app", o.app.name, "error", e2.msg));
            lp_error_prefix(err, st, "release %s stays pending (%zu signature%s held)",
                            o.rel.version, json_object_size(kept),
                            json_object_size(kept) == 1 ? "" : "s");
        }
    }
    if (!st) {
        progress->held = json_object_size(kept);
        st = mark_published(s, &o, "release published with the publisher's signatures", err);
    }
done:
    if (!st && out) {
        st = lp_db_release_get(o.db, o.rel.id, out, err);
    }
    json_decref(kept);
    free(canon);
    free_online(keys);
    lp_tuf_repo_free(r);
    pending_free(&p);
    op_end(s, &o);
    if (!st)
        lp_service_notify_release(s);
    return st;
}

lp_status lp_service_publish_cancel(lp_service *s, const char *app, const char *version,
                                    lp_error *err)
{
    if (!version || !*version)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "field 'version': required");
    op o;
    bool written = false;
    lp_status st = op_begin(s, app, &o, err);
    if (!st)
        st = op_get_pending(&o, version, err);
    if (!st)
        st = repo_lists(s, o.app.name, &o.rel, &written, err);
    if (!st && written) {
        st = mark_published(s, &o, "release published (its signed metadata was written before)",
                            err);
        if (!st)
            audit_repaired(s, o.db, o.app.name, &o.rel);
        if (!st)
            st = lp_error_set(err, LP_ERR_STATE,
                              "release %s cannot be cancelled: its signed metadata was written "
                              "already, so it is published",
                              o.rel.version);
    } else if (!st) {
        st = lp_db_release_set_state(o.db, o.rel.id, LP_DB_STATE_WITHDRAWN, err);
        if (!st) {
            pending_remove(s, o.app.name);
            if (s->log)
                lp_log_event(s->log, LP_LOG_WARN, "pending release cancelled",
                             json_pack("{s:s,s:s,s:I}", "app", o.app.name, "version",
                                       o.rel.version, "version_code",
                                       (json_int_t)o.rel.version_code));
        }
    }
    op_end(s, &o);
    return st;
}

lp_status lp_service_publish_pending(lp_service *s, const char *app, lp_db_release *out,
                                     char **signed_json, size_t *signed_len, json_t **signed_by,
                                     lp_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (signed_json)
        *signed_json = NULL;
    if (signed_by)
        *signed_by = NULL;
    op o;
    pending p = {0};
    lp_tuf_repo *r = NULL;
    char *canon = NULL;
    size_t len = 0;
    bool written = false;
    lp_status st = op_begin(s, app, &o, err);
    if (!st) {
        st = find_pending(o.db, o.app.id, &o.rel, err);
        if (st == LP_ERR_NOT_FOUND)
            lp_error_set(err, st, "app %s has no release waiting for signatures", o.app.name);
    }
    if (!st)
        st = repo_lists(s, o.app.name, &o.rel, &written, err);
    if (!st && written) {
        st = mark_published(s, &o, "release published (its signed metadata was written before)",
                            err);
        if (!st)
            audit_repaired(s, o.db, o.app.name, &o.rel);
        if (!st)
            st = lp_error_set(err, LP_ERR_NOT_FOUND,
                              "app %s has no release waiting for signatures (%s is published)",
                              o.app.name, o.rel.version);
    }
    if (!st)
        st = pending_read(s, o.app.name, &o.rel, &p, err);
    if (!st && signed_json)
        st = reprepare(s, &o, &p, &r, &canon, &len, err);
    if (!st && signed_by) {
        json_t *ids = json_array();
        const char *kid;
        json_t *v;
        json_object_foreach(p.sigs, kid, v) {
            if (!ids || json_array_append_new(ids, json_string(kid)) != 0) {
                st = oom(err);
                break;
            }
        }
        if (!ids)
            st = oom(err);
        if (st)
            json_decref(ids);
        else
            *signed_by = ids;
    }
    if (!st) {
        if (signed_json) {
            *signed_json = canon;
            canon = NULL;
            if (signed_len)
                *signed_len = len;
        }
        if (out) {
            *out = o.rel;
            memset(&o.rel, 0, sizeof o.rel);
        }
    }
    free(canon);
    lp_tuf_repo_free(r);
    pending_free(&p);
    op_end(s, &o);
    return st;
}

/* ---- approvals ------------------------------------------------------- */

/* The app's current root, parsed (its targets role: the release keys and
 * their threshold).  The caller frees *out. */
static lp_status current_root(lp_service *s, const char *app, lp_md **out, lp_error *err)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/%s/metadata/root.json", s->repos_dir, app);
    uint8_t *data = NULL;
    size_t len = 0;
    lp_status st = lp_file_read(path, LP_REPO_METADATA_MAX_BYTES, &data, &len, err);
    if (!st)
        st = lp_md_parse(data, len, LP_MD_ROOT, path, out, err);
    free(data);
    return st;
}

/* The approvals object for the targets role `role`: each of its keys,
 * approved when `held` (an object keyed by key ID) has it.  NULL when out
 * of memory. */
static json_t *approvals_json(const lp_md_role *role, const json_t *held)
{
    json_t *keys = json_array();
    json_int_t present = 0;
    for (size_t i = 0; keys && i < role->nkeyids; i++) {
        bool yes = json_object_get(held, role->keyids[i]) != NULL;
        present += yes;
        if (json_array_append_new(keys, json_pack("{s:s,s:b}", "keyid", role->keyids[i],
                                                  "approved", yes)) != 0) {
            json_decref(keys);
            keys = NULL;
        }
    }
    if (!keys)
        return NULL;
    json_int_t k = (json_int_t)role->threshold;
    return json_pack("{s:I,s:I,s:I,s:o}", "present", present, "required", k, "missing",
                     present >= k ? (json_int_t)0 : k - present, "keys", keys);
}

/* The highest N of the app's <N>.targets.json files (0: none yet). */
static lp_status newest_targets_version(lp_service *s, const char *app, uint64_t *out,
                                        lp_error *err)
{
    *out = 0;
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/%s/metadata", s->repos_dir, app);
    DIR *dh = opendir(dir);
    if (!dh)
        return lp_error_set(err, LP_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        const char *n = e->d_name;
        if (n[0] < '1' || n[0] > '9')
            continue;
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(n, &end, 10);
        if (errno == 0 && end && strcmp(end, ".targets.json") == 0 && v > *out)
            *out = v;
    }
    closedir(dh);
    return LP_OK;
}

/* Whether version `v` of the app's targets metadata lists target `name`
 * with sha256 `sha`; when it does and `held` is not NULL, *held gets the
 * key IDs of its signatures (an object, key ID -> true).  LP_ERR_NOT_FOUND
 * when that version's file does not exist. */
static lp_status targets_version_lists(lp_service *s, const char *app, uint64_t v,
                                       const char *name, const char *sha, bool *yes,
                                       json_t **held, lp_error *err)
{
    *yes = false;
    char path[4400];
    snprintf(path, sizeof path, "%s/%s/metadata/%llu.targets.json", s->repos_dir, app,
             (unsigned long long)v);
    uint8_t *data = NULL;
    size_t len = 0;
    json_t *doc = NULL;
    lp_status st = lp_file_read(path, LP_REPO_METADATA_MAX_BYTES, &data, &len, err);
    if (!st) {
        lp_json_limits lim = {.max_bytes = LP_REPO_METADATA_MAX_BYTES};
        st = lp_json_parse(data, len, &lim, &doc, err);
    }
    free(data);
    if (st)
        return st == LP_ERR_NOT_FOUND ? st : lp_error_prefix(err, st, "%s", path);
    const json_t *targets = json_object_get(json_object_get(doc, "signed"), "targets");
    const char *have = listed_sha256((json_t *)targets, name);
    *yes = have && strcmp(have, sha) == 0;
    if (*yes && held) {
        json_t *ids = json_object();
        const json_t *sig;
        size_t i;
        json_array_foreach(json_object_get(doc, "signatures"), i, sig)
        {
            const char *kid = json_string_value(json_object_get(sig, "keyid"));
            if (ids && kid && json_object_set_new(ids, kid, json_true()) != 0) {
                json_decref(ids);
                ids = NULL;
            }
        }
        if (!ids)
            st = oom(err);
        *held = ids;
    }
    json_decref(doc);
    return st;
}

/* The signers of the first targets version that lists published release
 * `rel` (*held, key ID -> true), or *held NULL when that cannot be told
 * (the newest version does not list it, or a version's file is gone).  A
 * published release stays listed from the version that first listed it to
 * the newest, so a binary search over the versions finds it in a few
 * reads. */
static lp_status first_listing(lp_service *s, const char *app, const lp_db_release *rel,
                               json_t **held, lp_error *err)
{
    *held = NULL;
    char name[48];
    lp_service_target_name(rel->version_code, name);
    uint64_t lo = 1, hi = 0;
    bool yes = false;
    lp_status st = newest_targets_version(s, app, &hi, err);
    if (!st && hi > 0)
        st = targets_version_lists(s, app, hi, name, rel->manifest_sha256, &yes, NULL, err);
    if (st || !yes)
        return st == LP_ERR_NOT_FOUND ? LP_OK : st;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        st = targets_version_lists(s, app, mid, name, rel->manifest_sha256, &yes, NULL, err);
        if (st)
            return st == LP_ERR_NOT_FOUND ? LP_OK : st;
        if (yes)
            hi = mid;
        else
            lo = mid + 1;
    }
    st = targets_version_lists(s, app, hi, name, rel->manifest_sha256, &yes, held, err);
    return st == LP_ERR_NOT_FOUND ? LP_OK : st;
}

lp_status lp_service_release_approvals(lp_service *s, const char *app, const lp_db_release *rel,
                                       bool published_too, json_t **out, lp_error *err)
{
    *out = NULL;
    if (!rel || !lp_service_app_publisher_signed(s, app))
        return LP_OK;
    const char *state = rel->state ? rel->state : LP_DB_STATE_PUBLISHED;
    bool is_pending = strcmp(state, LP_DB_STATE_PENDING) == 0;
    if (!is_pending && !(published_too && strcmp(state, LP_DB_STATE_PUBLISHED) == 0))
        return LP_OK;
    json_t *held = NULL;
    lp_md *root = NULL;
    lp_status st = LP_OK;
    if (is_pending) {
        /* Read without the app's lock (the file is replaced atomically):
         * a record that is gone or names another release means the
         * release was signed or cancelled meanwhile: nothing to show. */
        pending p = {0};
        st = pending_read(s, app, rel, &p, err);
        if (!st)
            held = json_incref(p.sigs);
        else if (st == LP_ERR_STATE)
            st = LP_OK;
        pending_free(&p);
    } else {
        st = first_listing(s, app, rel, &held, err);
    }
    if (!st && held)
        st = current_root(s, app, &root, err);
    if (!st && held && !(*out = approvals_json(&root->roles[LP_MD_TARGETS], held)))
        st = oom(err);
    json_decref(held);
    lp_md_free(root);
    return st ? lp_error_prefix(err, st, "app %s: approvals of release %s", app, rel->version)
              : LP_OK;
}

/* ---- recovery -------------------------------------------------------- */

static void log_error(lp_service *s, const char *msg, const char *app, const char *target,
                      const char *detail)
{
    if (s->log)
        lp_log_event(s->log, LP_LOG_ERROR, msg,
                     json_pack("{s:s,s:s,s:s}", "app", app, "target", target, "detail", detail));
}

lp_status lp_service_signed_recover_app(lp_service *s, lp_db *db, const lp_db_app *app,
                                        lp_error *err)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", s->repos_dir, app->name);
    lp_tuf_repo *r = NULL;
    json_t *desc = NULL, *targets = NULL, *known = json_object();
    lp_status st = known ? lp_tuf_repo_open(&r, dir, err) : oom(err);
    if (!st)
        st = listing(r, &desc, &targets, err);
    int64_t before = 0;
    while (!st) {
        lp_db_release_list list = {0};
        st = lp_db_release_list_by_app(db, app->id, NULL, before, 0, &list, err);
        for (size_t k = 0; !st && k < list.count; k++) {
            const lp_db_release *rel = &list.items[k];
            before = rel->version_code;
            char name[48];
            lp_service_target_name(rel->version_code, name);
            const char *have = listed_sha256(targets, name);
            bool same = have && strcmp(have, rel->manifest_sha256) == 0;
            bool published = strcmp(rel->state, LP_DB_STATE_PUBLISHED) == 0;
            if (!published && same && strcmp(rel->state, LP_DB_STATE_PENDING) == 0) {
                /* Signed and written, the database not told yet. */
                st = lp_db_release_set_state(db, rel->id, LP_DB_STATE_PUBLISHED, err);
                if (st)
                    break;
                pending_remove(s, app->name);
                lp_service_delta_plan(s, db, app->name, rel->id);
                audit_repaired(s, db, app->name, rel);
                published = true;
                if (s->log)
                    lp_log_event(s->log, LP_LOG_WARN,
                                 "recovery: pending release marked published: the repository "
                                 "lists it as signed",
                                 json_pack("{s:s,s:s,s:I}", "app", app->name, "version",
                                           rel->version, "version_code",
                                           (json_int_t)rel->version_code));
            }
            if (!published)
                continue;
            json_object_set_new(known, name, json_true());
            if (!same)
                log_error(s, "recovery: a published release is not in the repository as "
                             "signed; only the publisher can repair it, by signing the next "
                             "release",
                          app->name, name, have ? "listed with another manifest" : "not listed");
        }
        size_t n = list.count;
        lp_db_release_list_free(&list);
        if (n < LP_DB_LIST_MAX)
            break;
    }
    const char *name;
    json_t *v;
    json_object_foreach(targets, name, v) {
        if (st)
            break;
        if (strncmp(name, RELEASE_PREFIX, strlen(RELEASE_PREFIX)) == 0 &&
            !json_object_get(known, name))
            log_error(s, "recovery: the repository lists a release the database does not "
                         "publish; only the publisher can remove it, by signing the next "
                         "release",
                      app->name, name, "listed, not published");
    }
    json_decref(known);
    json_decref(desc);
    lp_tuf_repo_free(r);
    return st ? lp_error_prefix(err, st, "app %s: recovery", app->name) : LP_OK;
}
