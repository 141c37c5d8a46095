/*
 * meta_cache.c — small files in memory, keyed by path and identity (see
 * meta_cache.h).
 *
 * A fixed array of slots, each a mutex and at most one entry; a path goes
 * to slot FNV-1a(path) mod slots.  The cache holds one reference to each
 * entry it stores; lookups hand out another under the slot's lock.  The
 * reference count is atomic, so a holder releases its reference without
 * any lock, from whatever thread finishes with it (for the server: the
 * thread that destroys the response sent from it).
 */
#include "server/meta_cache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    pthread_mutex_t lock;
    lp_meta_entry *entry; /* guarded by lock */
} slot;

struct lp_meta_cache {
    size_t nslots;
    size_t max_bytes;
    slot *slots;
};

static size_t slot_of(const lp_meta_cache *c, const char *path)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return (size_t)(h % c->nslots);
}

static bool same_identity(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

lp_status lp_meta_cache_new(lp_meta_cache **out, size_t slots, size_t max_bytes, lp_error *err)
{
    *out = NULL;
    if (slots < 1 || slots > 65536)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "metadata cache: %zu slots (1 to 65536)",
                            slots);
    lp_meta_cache *c = calloc(1, sizeof *c);
    if (c)
        c->slots = calloc(slots, sizeof *c->slots);
    if (!c || !c->slots) {
        free(c);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < slots; i++) {
        int rc = pthread_mutex_init(&c->slots[i].lock, NULL);
        if (rc) {
            while (i--)
                pthread_mutex_destroy(&c->slots[i].lock);
            free(c->slots);
            free(c);
            return lp_error_set(err, LP_ERR_NOMEM, "metadata cache: cannot make a lock");
        }
    }
    c->nslots = slots;
    c->max_bytes = max_bytes;
    *out = c;
    return LP_OK;
}

void lp_meta_cache_free(lp_meta_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nslots; i++) {
        lp_meta_entry_release(c->slots[i].entry);
        pthread_mutex_destroy(&c->slots[i].lock);
    }
    free(c->slots);
    free(c);
}

size_t lp_meta_cache_max_bytes(const lp_meta_cache *c) { return c->max_bytes; }

lp_meta_entry *lp_meta_cache_get(lp_meta_cache *c, const char *path, const struct stat *sb)
{
    slot *s = &c->slots[slot_of(c, path)];
    pthread_mutex_lock(&s->lock);
    lp_meta_entry *e = s->entry;
    if (e && same_identity(&e->id, sb) && !strcmp(e->path, path))
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    else
        e = NULL;
    pthread_mutex_unlock(&s->lock);
    return e;
}

lp_meta_entry *lp_meta_cache_put(lp_meta_cache *c, const char *path, const struct stat *sb,
                                 uint8_t *data, size_t len, const char *etag)
{
    lp_meta_entry *e = calloc(1, sizeof *e);
    char *path_copy = e ? strdup(path) : NULL;
    if (!path_copy) {
        free(e);
        free(data);
        return NULL;
    }
    e->data = data;
    e->len = len;
    size_t n = strlen(etag);
    if (n >= sizeof e->etag)
        n = sizeof e->etag - 1;
    memcpy(e->etag, etag, n);
    e->etag[n] = '\0';
    e->id = *sb;
    e->path = path_copy;
    atomic_init(&e->refs, 1);
    if (len > c->max_bytes)
        return e;
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed); /* the cache's */
    slot *s = &c->slots[slot_of(c, path)];
    pthread_mutex_lock(&s->lock);
    lp_meta_entry *old = s->entry;
    s->entry = e;
    pthread_mutex_unlock(&s->lock);
    lp_meta_entry_release(old);
    return e;
}

void lp_meta_entry_release(void *entry)
{
    lp_meta_entry *e = entry;
    if (!e || atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
        return;
    free((void *)e->data);
    free(e->path);
    free(e);
}
