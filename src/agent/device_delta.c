/*
 * device_delta.c — how the device client uses deltas while it downloads a
 * release (see device.h, update.c and docs/agent.md, "Deltas").
 *
 * lp_device_download calls lp_device_deltas_begin before staging release R
 * over the current release P.  When staging asks for the first file to
 * fetch (so not at all when every file is already installed), unless deltas
 * are turned off, the index of the deltas for P -> R is fetched (delta.c).  A 404, a failure or a
 * malformed index means "no deltas": it is reported through the note
 * callback, never an error of the update.  Then the bases the index names
 * are looked up in the installed releases: their stored manifests
 * (.livepush/manifests/<id>.json; the current release first, then the
 * others newest first) give, for each base SHA-256, a file that has it;
 * only a regular file of the manifest's size is kept.  Memory is bounded
 * by the index (at most LP_DELTA_INDEX_MAX_BYTES of JSON) and one manifest
 * at a time.
 *
 * Staging then calls the device's blob source for each file to fetch;
 * lp_device_delta_try goes first: when the file's SHA-256 is a result in
 * the index, a base for it is installed, and the delta is smaller than the
 * file, the delta is fetched and applied into the staging path
 * (lp_net_fetch_delta).  If that fails for any reason the partial delta and
 * the output are gone, the failure is counted and reported once ("delta
 * fell back", with the file, the blob and the reason) and the caller fetches
 * the full blob.  The counters go into lp_stage_stats at the end
 * (lp_device_deltas_end), and from there into the figures of the
 * "downloaded" event (update.c); the first fallback's file and reason
 * become that event's reason (lp_device_deltas_first_fallback).
 */
#include "agent/device.h"

#include "agent/agent.h"
#include "agent/net.h"
#include "core/file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct lp_device_base {
    char sha[LP_BLOB_ID_SIZE];
    char *path; /* absolute path of an installed file with that content; NULL: none */
};

static void note(lp_device *d, const lp_delta_note *n)
{
    if (d->on_delta)
        d->on_delta(d->delta_ctx, n);
}

static int cmp_base(const void *a, const void *b)
{
    return strcmp(((const lp_device_base *)a)->sha, ((const lp_device_base *)b)->sha);
}

static lp_device_base *find_base(lp_device *d, const char *sha)
{
    lp_device_base key;
    snprintf(key.sha, sizeof key.sha, "%s", sha);
    return d->base_count
               ? bsearch(&key, d->bases, d->base_count, sizeof *d->bases, cmp_base)
               : NULL;
}

/* The bases the index names, each with an installed file when there is
 * one.  Failures only leave bases without a file. */
static void find_bases(lp_device *d, uint64_t current)
{
    const lp_delta_index *ix = &d->dindex;
    if (!ix->count || !(d->bases = calloc(ix->count, sizeof *d->bases)))
        return;
    for (size_t i = 0; i < ix->count; i++)
        memcpy(d->bases[d->base_count++].sha, ix->deltas[i].base, LP_BLOB_ID_SIZE);
    qsort(d->bases, d->base_count, sizeof *d->bases, cmp_base);
    size_t n = 0;
    for (size_t i = 0; i < d->base_count; i++)
        if (!n || strcmp(d->bases[n - 1].sha, d->bases[i].sha) != 0)
            d->bases[n++] = d->bases[i];
    d->base_count = n;

    lp_updater_status s;
    lp_error ignored;
    if (lp_updater_status_get(d->u, &s, &ignored))
        return;
    /* The current release first, then the others newest first. */
    size_t left = n;
    for (size_t k = 0; left && k <= s.release_count; k++) {
        uint64_t id = k == 0 ? current : s.releases[s.release_count - k].id;
        if (!id || (k > 0 && id == current))
            continue;
        char *mpath = lp_agent_path(d->u, ".livepush/manifests/%llu.json",
                                    (unsigned long long)id);
        uint8_t *data = NULL;
        size_t len = 0;
        lp_manifest m;
        lp_manifest_init(&m);
        if (mpath && !lp_file_read(mpath, LP_MANIFEST_MAX_JSON_BYTES, &data, &len, &ignored) &&
            !lp_manifest_from_json(data, len, &m, &ignored)) {
            for (size_t e = 0; left && e < m.count; e++) {
                const lp_manifest_entry *me = &m.entries[e];
                lp_device_base *b = me->type == LP_ENTRY_FILE ? find_base(d, me->sha256) : NULL;
                if (!b || b->path)
                    continue;
                char *p = lp_agent_path(d->u, "releases/%llu/%s", (unsigned long long)id,
                                        me->path);
                struct stat sb;
                if (p && lstat(p, &sb) == 0 && S_ISREG(sb.st_mode) &&
                    (uint64_t)sb.st_size == me->size) {
                    b->path = p;
                    left--;
                } else {
                    free(p);
                }
            }
        }
        lp_manifest_free(&m);
        free(data);
        free(mpath);
    }
    lp_updater_status_free(&s);
}

void lp_device_deltas_begin(lp_device *d, uint64_t from, uint64_t to, uint64_t id)
{
    lp_device_deltas_clear(d);
    d->delta_from = from;
    d->delta_to = to;
    d->stage_prefix = lp_agent_path(d->u, ".livepush/staging/%llu/", (unsigned long long)id);
    d->delta_due = !d->no_deltas && from && to && from != to && d->net;
}

/* Fetches the index and finds the bases (at the first file to fetch). */
static void load_index(lp_device *d)
{
    d->delta_due = false;
    uint64_t from = d->delta_from, to = d->delta_to;
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_net_fetch_delta_index(d->net, from, to, &d->dindex, &err);
    lp_delta_note n = {.from = from, .to = to};
    if (st == LP_ERR_NOT_FOUND) {
        n.kind = LP_DELTA_NOTE_NO_INDEX;
        n.reason = err.msg;
    } else if (st) {
        n.kind = LP_DELTA_NOTE_INDEX_FAILED;
        n.reason = err.msg[0] ? err.msg : lp_status_name(st);
    } else {
        n.kind = LP_DELTA_NOTE_INDEX;
        n.listed = d->dindex.count;
        n.complete = d->dindex.complete;
        d->delta_listed = d->dindex.count;
    }
    note(d, &n);
    if (!st)
        find_bases(d, from);
}

/* The file's path in the release, from its staging path. */
static const char *file_of(const lp_device *d, const char *dest)
{
    size_t n = d->stage_prefix ? strlen(d->stage_prefix) : 0;
    return n && strncmp(dest, d->stage_prefix, n) == 0 ? dest + n : dest;
}

bool lp_device_delta_try(lp_device *d, const char *sha256, uint64_t size, const char *dest,
                         bool sync)
{
    if (d->delta_due)
        load_index(d);
    size_t count = 0;
    const lp_delta_ref *refs = lp_delta_index_find(&d->dindex, sha256, &count);
    const lp_delta_ref *ref = NULL;
    const lp_device_base *base = NULL;
    for (size_t i = 0; i < count && !ref; i++) {
        const lp_device_base *b = find_base(d, refs[i].base);
        if (b && b->path && refs[i].size < size) {
            ref = &refs[i];
            base = b;
        }
    }
    if (!ref)
        return false;
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_net_fetch_delta(d->net, ref, base->path, size, dest, sync, &err);
    lp_delta_note n = {.from = d->delta_from, .to = d->delta_to, .path = file_of(d, dest),
                       .blob = sha256, .base = ref->base, .delta_size = ref->size,
                       .file_size = size};
    if (!st) {
        d->files_delta++;
        d->bytes_delta += ref->size;
        d->bytes_delta_saved += size - ref->size;
        n.kind = LP_DELTA_NOTE_APPLIED;
        note(d, &n);
        return true;
    }
    d->delta_fallbacks++;
    n.kind = LP_DELTA_NOTE_FALLBACK;
    n.reason = err.msg[0] ? err.msg : lp_status_name(st);
    if (!d->first_fallback[0])
        snprintf(d->first_fallback, sizeof d->first_fallback, "%s: %s", n.path, n.reason);
    note(d, &n);
    return false;
}

void lp_device_deltas_end(lp_device *d, lp_stage_stats *stats)
{
    if (stats) {
        stats->files_delta = d->files_delta;
        stats->bytes_delta = d->bytes_delta;
        stats->bytes_delta_saved = d->bytes_delta_saved;
        stats->delta_fallbacks = d->delta_fallbacks;
    }
}

const char *lp_device_deltas_first_fallback(const lp_device *d)
{
    return d->first_fallback[0] ? d->first_fallback : NULL;
}

void lp_device_deltas_clear(lp_device *d)
{
    lp_delta_index_free(&d->dindex);
    for (size_t i = 0; i < d->base_count; i++)
        free(d->bases[i].path);
    free(d->bases);
    d->bases = NULL;
    d->base_count = 0;
    free(d->stage_prefix);
    d->stage_prefix = NULL;
    d->delta_from = d->delta_to = 0;
    d->delta_due = false;
    d->delta_listed = 0;
    d->files_delta = d->bytes_delta = d->bytes_delta_saved = d->delta_fallbacks = 0;
    d->first_fallback[0] = '\0';
}

const char *lp_delta_note_kind_name(lp_delta_note_kind kind)
{
    static const char *const names[] = {"index", "no_index", "index_failed", "applied",
                                        "fallback"};
    return (unsigned)kind < sizeof names / sizeof names[0] ? names[kind] : "unknown";
}
