/*
 * client_list.c — listing the targets of the top-level targets role by name
 * prefix (see include/livepush/tuf.h).
 *
 * An updater asks "which releases exist?" rather than "where is this one
 * target?": the listing walks the `targets` object of the trusted top-level
 * targets metadata (already verified and bounded in size by the refresh),
 * keeps the names that begin with the prefix, and builds each entry with the
 * same code as a lookup, so a listed target and a found one are identical.
 * Delegated roles are deliberately left out: their entries are only
 * meaningful through the search order of a lookup.  The result is sorted by
 * name so that callers see the same order whatever order the metadata used.
 */
#include "tuf/client_priv.h"

#include <stdlib.h>
#include <string.h>

static int by_name(const void *a, const void *b)
{
    const lp_tuf_target *const *x = a, *const *y = b;
    return strcmp(lp_tuf_target_name(*x), lp_tuf_target_name(*y));
}

void lp_tuf_target_list_free(lp_tuf_target_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++)
        lp_tuf_target_free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

lp_status lp_tuf_client_list_targets(lp_tuf_client *c, const char *prefix, size_t max,
                                     lp_tuf_target_list *out, lp_error *err)
{
    if (!out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "list targets: no output list");
    out->items = NULL;
    out->count = 0;
    if (!c)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "list targets: no client");
    if (!prefix)
        prefix = "";
    if (!max)
        max = LP_TUF_LIST_DEFAULT_MAX;
    if (!c->refreshed || !c->ts.targets)
        return lp_error_set(err, LP_ERR_STATE, "list targets '%s': the client has not refreshed",
                            prefix);
    const json_t *targets = c->ts.targets->targets;
    size_t plen = strlen(prefix), n = 0;
    const char *name;
    json_t *entry;
    json_object_foreach((json_t *)targets, name, entry)
        if (strncmp(name, prefix, plen) == 0)
            n++;
    if (n > max)
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "list targets '%s': %zu targets match, more than the limit of %zu",
                            prefix, n, max);
    if (n == 0)
        return LP_OK;
    lp_tuf_target **items = calloc(n, sizeof *items);
    if (!items)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_tuf_target_list l = {.items = items, .count = 0};
    lp_status st = LP_OK;
    json_object_foreach((json_t *)targets, name, entry) {
        if (strncmp(name, prefix, plen) != 0)
            continue;
        if ((st = lp_tuf_target_make(name, "targets", entry, &l.items[l.count], err)))
            break;
        l.count++;
    }
    if (st) {
        lp_tuf_target_list_free(&l);
        return lp_error_prefix(err, st, "list targets '%s'", prefix);
    }
    qsort(l.items, l.count, sizeof *l.items, by_name);
    *out = l;
    return LP_OK;
}
