/*
 * client.c — the TUF client workflow: where metadata comes from and where
 * it goes (see include/livepush/tuf.h).  Every trust decision is made by
 * the trusted set (trusted.c); this file sequences the steps, reads the
 * cache folder, fetches from the repository with size bounds, and persists
 * each file it accepted, atomically and byte for byte as received.
 *
 * Cached files are tried before the network for timestamp, snapshot and
 * targets roles, as the specification describes: a cached copy that no
 * longer verifies is simply not used.  Delegated roles are loaded on demand
 * by the target search, which walks the delegation graph depth-first in
 * pre-order, stops at terminating delegations, never visits a role twice
 * and visits at most limits.max_delegations roles.
 */
#include "livepush/tuf.h"

#include "core/buf.h"
#include "core/file.h"
#include "core/timeutil.h"
#include "livepush/hash.h"
#include "tuf/json.h"
#include "tuf/client_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *lp_tuf_step_name(lp_tuf_step step)
{
    switch (step) {
    case LP_TUF_STEP_ROOT: return "root";
    case LP_TUF_STEP_TIMESTAMP: return "timestamp";
    case LP_TUF_STEP_SNAPSHOT: return "snapshot";
    case LP_TUF_STEP_TARGETS: return "targets";
    case LP_TUF_STEP_NONE: break;
    }
    return "none";
}

static void apply_defaults(lp_tuf_limits *l)
{
    if (!l->root_max_bytes)
        l->root_max_bytes = 512 * 1024;
    if (!l->timestamp_max_bytes)
        l->timestamp_max_bytes = 16 * 1024;
    if (!l->snapshot_max_bytes)
        l->snapshot_max_bytes = 2 * 1024 * 1024;
    if (!l->targets_max_bytes)
        l->targets_max_bytes = 16 * 1024 * 1024;
    if (!l->max_root_rotations)
        l->max_root_rotations = 32;
    if (!l->max_delegations)
        l->max_delegations = 32;
}

/* Percent-encodes everything but unreserved characters (and '/' when
 * keep_slash), as python's urllib.parse.quote does for role and target names. */
char *lp_tuf_quote(const char *s, bool keep_slash)
{
    size_t n = strlen(s);
    char *r = malloc(3 * n + 1), *o = r;
    if (!r)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~' || (keep_slash && *p == '/'))
            *o++ = (char)*p;
        else
            o += sprintf(o, "%%%02X", *p);
    }
    *o = 0;
    return r;
}

static char *strip_slash_dup(const char *s)
{
    char *r = strdup(s);
    if (!r)
        return NULL;
    size_t n = strlen(r);
    while (n > 1 && r[n - 1] == '/')
        r[--n] = 0;
    return r;
}

static int64_t now_of(const lp_tuf_client *c)
{
    return c->fixed_now ? c->fixed_now : lp_time_now();
}

/* ---- cache folder ---------------------------------------------------- */

/* <metadata_dir>/<quoted role>.json, malloc'd; NULL on OOM. */
static char *cache_path(const lp_tuf_client *c, const char *role)
{
    char *q = lp_tuf_quote(role, false);
    if (!q)
        return NULL;
    size_t cap = strlen(c->metadata_dir) + strlen(q) + 8;
    char *path = malloc(cap);
    if (path)
        snprintf(path, cap, "%s/%s.json", c->metadata_dir, q);
    free(q);
    return path;
}

static lp_status cache_read(const lp_tuf_client *c, const char *role, uint64_t max, uint8_t **data,
                            size_t *len, lp_error *err)
{
    char *path = cache_path(c, role);
    if (!path)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_status st = lp_file_read(path, (size_t)max, data, len, err);
    free(path);
    return st;
}

static lp_status cache_write(const lp_tuf_client *c, const char *role, const void *data,
                             size_t len, lp_error *err)
{
    char *path = cache_path(c, role);
    if (!path)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_status st = lp_file_write_atomic(path, data, len, 0644, err);
    free(path);
    return st;
}

static void cache_remove(const lp_tuf_client *c, const char *role)
{
    char *path = cache_path(c, role);
    if (path && unlink(path) == 0)
        lp_file_sync_parent(path, NULL);
    free(path);
}

/* ---- network ---------------------------------------------------------- */

static lp_status fetch_meta(lp_tuf_client *c, const char *role, uint64_t version, uint64_t max,
                            uint8_t **data, size_t *len, lp_error *err)
{
    char *q = lp_tuf_quote(role, false);
    if (!q)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    size_t cap = strlen(c->metadata_url) + strlen(q) + 32;
    char *url = malloc(cap);
    if (!url) {
        free(q);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    if (version)
        snprintf(url, cap, "%s/%llu.%s.json", c->metadata_url, (unsigned long long)version, q);
    else
        snprintf(url, cap, "%s/%s.json", c->metadata_url, q);
    free(q);
    lp_status st = lp_fetch_to_buffer(c->fetcher, url, max, data, len, err);
    free(url);
    return st;
}

/* ---- refresh ----------------------------------------------------------- */

static lp_status read_trusted_root(lp_tuf_client *c, uint8_t **data, size_t *len, lp_error *err)
{
    lp_status st = cache_read(c, "root", c->lim.root_max_bytes, data, len, err);
    if (st)
        return lp_error_prefix(err, st, "trusted root");
    return LP_OK;
}

static lp_status load_root(lp_tuf_client *c, lp_error *err)
{
    /* Keep the root trusted before the chain, to see afterwards which keys
     * rotated.  It is the cached root.json that start_set just verified. */
    uint8_t *data;
    size_t len;
    lp_md *initial;
    lp_status st = read_trusted_root(c, &data, &len, err);
    if (st)
        return st;
    st = lp_md_parse(data, len, LP_MD_ROOT, "root.json", &initial, err);
    free(data);
    if (st)
        return st;
    for (uint32_t i = 0; !st && i < c->lim.max_root_rotations; i++) {
        uint64_t next = c->ts.root->version + 1;
        lp_error e2;
        st = fetch_meta(c, "root", next, c->lim.root_max_bytes, &data, &len, &e2);
        if (st == LP_ERR_NOT_FOUND) {
            st = LP_OK;
            break;
        }
        if (st) {
            if (err)
                *err = e2;
            break;
        }
        st = lp_trusted_update_root(&c->ts, data, len, err);
        if (!st)
            st = cache_write(c, "root", data, len, err);
        free(data);
    }
    if (!st)
        st = lp_trusted_check_root(&c->ts, err);
    /* Fast-forward attack recovery (spec 5.3.11): when the timestamp or
     * snapshot keys rotated, the cached copies must not block new ones. */
    if (!st && c->ts.root->version != initial->version &&
        (!lp_md_role_same_keys(&initial->roles[LP_MD_TIMESTAMP],
                               &c->ts.root->roles[LP_MD_TIMESTAMP]) ||
         !lp_md_role_same_keys(&initial->roles[LP_MD_SNAPSHOT],
                               &c->ts.root->roles[LP_MD_SNAPSHOT]))) {
        cache_remove(c, "timestamp");
        cache_remove(c, "snapshot");
    }
    lp_md_free(initial);
    return st;
}

static lp_status load_timestamp(lp_tuf_client *c, lp_error *err)
{
    uint8_t *data;
    size_t len;
    if (cache_read(c, "timestamp", c->lim.timestamp_max_bytes, &data, &len, NULL) == LP_OK) {
        /* A cached copy that fails (even as expired) is not an error here. */
        lp_trusted_update_timestamp(&c->ts, data, len, NULL);
        free(data);
    }
    uint64_t before = c->ts.timestamp ? c->ts.timestamp->version : 0;
    lp_status st = fetch_meta(c, "timestamp", 0, c->lim.timestamp_max_bytes, &data, &len, err);
    if (st)
        return st;
    st = lp_trusted_update_timestamp(&c->ts, data, len, err);
    if (!st && c->ts.timestamp->version != before)
        st = cache_write(c, "timestamp", data, len, err);
    free(data);
    return st;
}

static lp_status load_snapshot(lp_tuf_client *c, lp_error *err)
{
    uint8_t *data;
    size_t len;
    const lp_md_metafile *mf = &c->ts.timestamp->meta[0];
    uint64_t max = mf->has_length ? mf->length : c->lim.snapshot_max_bytes;
    if (cache_read(c, "snapshot", max, &data, &len, NULL) == LP_OK) {
        lp_status st = lp_trusted_update_snapshot(&c->ts, data, len, true, NULL);
        free(data);
        if (!st)
            return LP_OK;
    }
    uint64_t version = c->ts.root->consistent_snapshot ? mf->version : 0;
    lp_status st = fetch_meta(c, "snapshot", version, max, &data, &len, err);
    if (st == LP_ERR_TOO_LARGE && mf->has_length)
        return lp_error_set(err, LP_ERR_LENGTH_MISMATCH,
                            "snapshot.json: longer than the %llu bytes timestamp lists",
                            (unsigned long long)mf->length);
    if (st)
        return st;
    st = lp_trusted_update_snapshot(&c->ts, data, len, false, err);
    if (!st)
        st = cache_write(c, "snapshot", data, len, err);
    free(data);
    return st;
}

/* Loads a targets role (cache first, then network) unless already trusted. */
lp_status lp_tuf_load_targets(lp_tuf_client *c, const char *role, const char *delegator,
                              lp_error *err)
{
    if (lp_trusted_get_targets(&c->ts, role))
        return LP_OK;
    char fname[300];
    snprintf(fname, sizeof fname, "%s.json", role);
    const lp_md_metafile *mf = lp_md_find_meta(c->ts.snapshot, fname);
    if (!mf)
        return lp_error_set(err, LP_ERR_NOT_FOUND, "snapshot.json does not list %s", fname);
    uint64_t max = mf->has_length ? mf->length : c->lim.targets_max_bytes;
    uint8_t *data;
    size_t len;
    if (cache_read(c, role, max, &data, &len, NULL) == LP_OK) {
        lp_status st = lp_trusted_update_targets(&c->ts, role, delegator, data, len, NULL);
        free(data);
        if (!st)
            return LP_OK;
    }
    uint64_t version = c->ts.root->consistent_snapshot ? mf->version : 0;
    lp_status st = fetch_meta(c, role, version, max, &data, &len, err);
    if (st == LP_ERR_TOO_LARGE && mf->has_length)
        return lp_error_set(err, LP_ERR_LENGTH_MISMATCH,
                            "%s: longer than the %llu bytes snapshot lists", fname,
                            (unsigned long long)mf->length);
    if (st)
        return st;
    st = lp_trusted_update_targets(&c->ts, role, delegator, data, len, err);
    if (!st)
        st = cache_write(c, role, data, len, err);
    free(data);
    return st;
}

static lp_status start_set(lp_tuf_client *c, lp_error *err)
{
    uint8_t *data;
    size_t len;
    lp_status st = read_trusted_root(c, &data, &len, err);
    if (st)
        return st;
    lp_trusted_free(&c->ts);
    st = lp_trusted_init(&c->ts, data, len, now_of(c), err);
    free(data);
    return st;
}

lp_status lp_tuf_client_refresh(lp_tuf_client *c, lp_tuf_step *failed_at, lp_error *err)
{
    lp_tuf_step step = LP_TUF_STEP_ROOT;
    c->refreshed = false;
    lp_status st = start_set(c, err);
    if (!st)
        st = load_root(c, err);
    if (!st) {
        step = LP_TUF_STEP_TIMESTAMP;
        st = load_timestamp(c, err);
    }
    if (!st) {
        step = LP_TUF_STEP_SNAPSHOT;
        st = load_snapshot(c, err);
    }
    if (!st) {
        step = LP_TUF_STEP_TARGETS;
        st = lp_tuf_load_targets(c, "targets", NULL, err);
    }
    if (failed_at)
        *failed_at = st ? step : LP_TUF_STEP_NONE;
    if (st)
        return lp_error_prefix(err, st, "refresh failed at the %s step", lp_tuf_step_name(step));
    c->refreshed = true;
    return LP_OK;
}

void lp_tuf_client_versions(const lp_tuf_client *c, lp_tuf_versions *out)
{
    out->root = c->ts.root ? c->ts.root->version : 0;
    out->timestamp = c->ts.timestamp ? c->ts.timestamp->version : 0;
    out->snapshot = c->ts.snapshot ? c->ts.snapshot->version : 0;
    out->targets = c->ts.targets ? c->ts.targets->version : 0;
}

/* ---- open / init ------------------------------------------------------ */

lp_status lp_tuf_init_trusted_root(const char *metadata_dir, const char *root_path, lp_error *err)
{
    uint8_t *data;
    size_t len;
    lp_status st = lp_file_read(root_path, 512 * 1024, &data, &len, err);
    if (st)
        return st;
    lp_trusted ts;
    if ((st = lp_trusted_init(&ts, data, len, lp_time_now(), err))) {
        free(data);
        return lp_error_prefix(err, st, "%s", root_path);
    }
    uint64_t version = ts.root->version;
    lp_trusted_free(&ts);
    if ((st = lp_file_mkdirs(metadata_dir, 0755, err))) {
        free(data);
        return st;
    }
    char *path = lp_path_join(metadata_dir, "root.json");
    if (!path) {
        free(data);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    /* Never replace a newer trusted root with an older one. */
    uint8_t *old;
    size_t oldlen;
    if (lp_file_read(path, 512 * 1024, &old, &oldlen, NULL) == LP_OK) {
        lp_md *md;
        if (lp_md_parse(old, oldlen, LP_MD_ROOT, "root.json", &md, NULL) == LP_OK) {
            bool newer = md->version > version;
            lp_md_free(md);
            if (newer) {
                free(old);
                free(data);
                free(path);
                return LP_OK;
            }
        }
        free(old);
    }
    st = lp_file_write_atomic(path, data, len, 0644, err);
    free(path);
    free(data);
    return st;
}

lp_status lp_tuf_client_open(lp_tuf_client **out, const lp_tuf_client_config *cfg, lp_error *err)
{
    *out = NULL;
    if (!cfg || !cfg->metadata_dir || !cfg->metadata_url)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "metadata_dir and metadata_url are required");
    lp_tuf_client *c = calloc(1, sizeof *c);
    if (!c)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    c->lim = cfg->limits;
    apply_defaults(&c->lim);
    c->fixed_now = cfg->now;
    c->metadata_dir = strdup(cfg->metadata_dir);
    c->metadata_url = strip_slash_dup(cfg->metadata_url);
    c->targets_url = cfg->targets_url ? strip_slash_dup(cfg->targets_url) : NULL;
    lp_status st = LP_OK;
    if (!c->metadata_dir || !c->metadata_url || (cfg->targets_url && !c->targets_url))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (!st) {
        if (cfg->fetcher) {
            c->fetcher = cfg->fetcher;
        } else {
            st = lp_http_fetcher_new(&c->fetcher, NULL, err);
            c->own_fetcher = !st;
        }
    }
    if (!st)
        st = start_set(c, err);
    if (st) {
        lp_tuf_client_free(c);
        return st;
    }
    *out = c;
    return LP_OK;
}

void lp_tuf_client_free(lp_tuf_client *c)
{
    if (!c)
        return;
    lp_trusted_free(&c->ts);
    if (c->own_fetcher && c->fetcher && c->fetcher->destroy)
        c->fetcher->destroy(c->fetcher);
    free(c->metadata_dir);
    free(c->metadata_url);
    free(c->targets_url);
    free(c);
}
