/*
 * targets.c — finding a target in the delegation graph and downloading it
 * (see include/livepush/tuf.h).
 *
 * Lookup is the specification's pre-order depth-first search: a role's own
 * targets first, then the roles it delegates to whose paths match, in the
 * order listed; a matching terminating delegation cuts off every role not
 * yet visited.  A role is visited at most once and at most max_delegations
 * roles are visited.
 *
 * Download streams into a temporary file next to the destination while
 * hashing; the fetch is bounded by the signed length, and the file is renamed
 * into place only when the length and every listed hash match.
 */
#include "core/file.h"
#include "tuf/client_priv.h"
#include "tuf/json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *lp_tuf_target_name(const lp_tuf_target *t) { return t->name; }
uint64_t lp_tuf_target_length(const lp_tuf_target *t) { return t->length; }
const char *lp_tuf_target_sha256(const lp_tuf_target *t)
{
    return t->hashes.has[LP_HASH_SHA256] ? t->sha256_hex : NULL;
}
const char *lp_tuf_target_custom_json(const lp_tuf_target *t) { return t->custom; }
const char *lp_tuf_target_role(const lp_tuf_target *t) { return t->role; }

void lp_tuf_target_free(lp_tuf_target *t)
{
    if (!t)
        return;
    free(t->name);
    free(t->role);
    free(t->custom);
    free(t);
}

lp_status lp_tuf_target_make(const char *name, const char *role, const json_t *entry,
                             lp_tuf_target **out, lp_error *err)
{
    lp_tuf_target *t = calloc(1, sizeof *t);
    if (!t)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    t->name = strdup(name);
    t->role = strdup(role);
    /* The entry was fully checked when its metadata was parsed. */
    t->length = (uint64_t)json_integer_value(json_object_get(entry, "length"));
    lp_status st = lp_md_parse_hashes(json_object_get(entry, "hashes"), name, &t->hashes, err);
    const json_t *custom = json_object_get(entry, "custom");
    if (!st && custom) {
        size_t len;
        st = lp_cjson_dumps(custom, &t->custom, &len, err);
    }
    if (!st && (!t->name || !t->role))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (st) {
        lp_tuf_target_free(t);
        return st;
    }
    if (t->hashes.has[LP_HASH_SHA256])
        lp_hex_encode(t->hashes.digest[LP_HASH_SHA256], LP_SHA256_LEN, t->sha256_hex);
    *out = t;
    return LP_OK;
}

typedef struct visit {
    const char *role;      /* borrowed from trusted metadata */
    const char *delegator; /* NULL for top-level targets */
} visit;

lp_status lp_tuf_client_find_target(lp_tuf_client *c, const char *name, lp_tuf_target **out,
                                    lp_error *err)
{
    *out = NULL;
    if (!c->refreshed)
        return lp_error_set(err, LP_ERR_STATE, "find target %s: the client has not refreshed",
                            name);
    size_t cap = c->lim.max_delegations + 1;
    visit *stack = calloc(cap, sizeof *stack);
    const char **seen = calloc(cap, sizeof *seen);
    if (!stack || !seen) {
        free(stack);
        free(seen);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    size_t depth = 0, nseen = 0;
    stack[depth++] = (visit){"targets", NULL};
    lp_status st = LP_ERR_NOT_FOUND;
    const char *why = "no role on the search path lists it";
    while (depth > 0) {
        visit v = stack[--depth];
        bool dup = false;
        for (size_t i = 0; i < nseen; i++)
            dup = dup || !strcmp(seen[i], v.role);
        if (dup)
            continue;
        if (nseen == c->lim.max_delegations) {
            why = "the search visited the maximum number of roles";
            break;
        }
        lp_status ls = lp_tuf_load_targets(c, v.role, v.delegator, err);
        if (ls) {
            st = lp_error_prefix(err, ls, "find target %s: loading role %s", name, v.role);
            goto out;
        }
        lp_md *md = lp_trusted_get_targets(&c->ts, v.role);
        const json_t *entry = json_object_get(md->targets, name);
        if (entry) {
            st = lp_tuf_target_make(name, v.role, entry, out, err);
            goto out;
        }
        seen[nseen++] = md == c->ts.targets ? "targets" : v.role;
        /* Children in listed order; pushed reversed so the first pops first. */
        size_t first = depth;
        for (size_t i = 0; i < md->ndelegations; i++) {
            const lp_md_role *r = &md->delegations[i];
            if (!lp_md_role_matches(r, name))
                continue;
            if (depth < cap)
                stack[depth++] = (visit){r->name, seen[nseen - 1]};
            if (r->terminating) {
                /* Drop everything that was waiting before these children. */
                memmove(stack, stack + first, (depth - first) * sizeof *stack);
                depth -= first;
                first = 0;
                break;
            }
        }
        for (size_t a = first, b = depth; b > a + 1; a++, b--) {
            visit tmp = stack[a];
            stack[a] = stack[b - 1];
            stack[b - 1] = tmp;
        }
    }
    lp_error_set(err, LP_ERR_NOT_FOUND, "target %s not found: %s", name, why);
out:
    free(stack);
    free(seen);
    return st;
}

/* ---- download ----------------------------------------------------------- */

typedef struct sink_state {
    int fd;
    uint64_t got;
    lp_hash_ctx *h[2];
} sink_state;

static lp_status write_sink(void *ctx, const void *data, size_t len, lp_error *err)
{
    sink_state *s = ctx;
    for (int a = 0; a < 2; a++)
        if (s->h[a] && lp_hash_update(s->h[a], data, len, err))
            return LP_ERR_CRYPTO;
    const char *p = data;
    while (len) {
        ssize_t w = write(s->fd, p, len);
        if (w < 0)
            return lp_error_set(err, LP_ERR_IO, "write: %s", strerror(errno));
        p += w;
        len -= (size_t)w;
        s->got += (uint64_t)w;
    }
    return LP_OK;
}

static char *target_url(const lp_tuf_client *c, const lp_tuf_target *t)
{
    char *q = lp_tuf_quote(t->name, true);
    if (!q)
        return NULL;
    size_t cap = strlen(c->targets_url) + strlen(q) + 2 * LP_HASH_MAX_LEN + 8;
    char *url = malloc(cap);
    if (url && !c->ts.root->consistent_snapshot) {
        snprintf(url, cap, "%s/%s", c->targets_url, q);
    } else if (url) {
        /* <dir>/<hash>.<basename>, sha256 preferred. */
        char hex[2 * LP_HASH_MAX_LEN + 1];
        lp_hash_alg a = t->hashes.has[LP_HASH_SHA256] ? LP_HASH_SHA256 : LP_HASH_SHA512;
        lp_hex_encode(t->hashes.digest[a], lp_hash_len(a), hex);
        const char *slash = strrchr(q, '/');
        if (slash)
            snprintf(url, cap, "%s/%.*s/%s.%s", c->targets_url, (int)(slash - q), q, hex,
                     slash + 1);
        else
            snprintf(url, cap, "%s/%s.%s", c->targets_url, hex, q);
    }
    free(q);
    return url;
}

lp_status lp_tuf_client_download_target(lp_tuf_client *c, const lp_tuf_target *t,
                                        const char *dest_path, lp_error *err)
{
    if (!c->targets_url)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "no targets URL configured");
    if (!t->hashes.has[LP_HASH_SHA256] && !t->hashes.has[LP_HASH_SHA512])
        return lp_error_set(err, LP_ERR_UNSUPPORTED, "target %s: none of its hashes is supported",
                            t->name);
    char *url = target_url(c, t);
    size_t tcap = strlen(dest_path) + 32;
    char *tmp = malloc(tcap);
    if (!url || !tmp) {
        free(url);
        free(tmp);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    sink_state s = {.fd = -1};
    lp_status st = lp_file_open_tmp(dest_path, 0644, tmp, tcap, &s.fd, err);
    for (int a = 0; !st && a < 2; a++)
        if (t->hashes.has[a])
            st = lp_hash_new(&s.h[a], (lp_hash_alg)a, err);
    if (!st) {
        st = c->fetcher->fetch(c->fetcher, url, t->length, write_sink, &s, err);
        if (st == LP_ERR_TOO_LARGE)
            st = lp_error_set(err, LP_ERR_LENGTH_MISMATCH,
                              "target %s: server sent more than the %llu signed bytes", t->name,
                              (unsigned long long)t->length);
        else if (st)
            lp_error_prefix(err, st, "target %s", t->name);
    }
    if (!st && s.got != t->length)
        st = lp_error_set(err, LP_ERR_LENGTH_MISMATCH,
                          "target %s: received %llu bytes, signed length is %llu", t->name,
                          (unsigned long long)s.got, (unsigned long long)t->length);
    for (int a = 0; !st && a < 2; a++) {
        if (!s.h[a])
            continue;
        uint8_t d[LP_HASH_MAX_LEN];
        st = lp_hash_final(s.h[a], d, err);
        if (!st && !lp_mem_equal(d, t->hashes.digest[a], lp_hash_len((lp_hash_alg)a)))
            st = lp_error_set(err, LP_ERR_HASH_MISMATCH, "target %s: %s hash does not match",
                              t->name, lp_hash_alg_name((lp_hash_alg)a));
    }
    for (int a = 0; a < 2; a++)
        lp_hash_free(s.h[a]);
    if (!st) {
        st = lp_file_commit_tmp(s.fd, tmp, dest_path, err);
    } else if (s.fd >= 0) {
        close(s.fd);
        unlink(tmp);
    }
    free(tmp);
    free(url);
    return st;
}
