/*
 * client_priv.h — state shared by the TUF client's two halves (internal):
 * client.c (open, refresh), targets.c (lookup, download) and client_list.c
 * (listing the top-level targets).
 */
#ifndef LP_TUF_CLIENT_PRIV_H
#define LP_TUF_CLIENT_PRIV_H

#include "livepush/tuf.h"
#include "tuf/trusted.h"

struct lp_tuf_client {
    char *metadata_dir;
    char *metadata_url;
    char *targets_url;
    lp_fetcher *fetcher;
    bool own_fetcher;
    int64_t fixed_now;
    lp_tuf_limits lim;
    lp_trusted ts;
    bool refreshed;
};

struct lp_tuf_target {
    char *name;
    char *role;
    uint64_t length;
    lp_md_hashes hashes;
    char sha256_hex[2 * LP_SHA256_LEN + 1];
    char *custom;
};

/* Percent-encodes all but unreserved characters (and '/' if keep_slash);
 * malloc'd, NULL on OOM. */
char *lp_tuf_quote(const char *s, bool keep_slash);

/* A new target from a checked `targets` entry of role `role` (the entry was
 * validated when its metadata was parsed).  LP_ERR_NOMEM, LP_ERR_MALFORMED. */
lp_status lp_tuf_target_make(const char *name, const char *role, const json_t *entry,
                             lp_tuf_target **out, lp_error *err);

/* Loads a targets role from the cache folder or the repository unless it is
 * already trusted; delegator NULL for the top-level targets role. */
lp_status lp_tuf_load_targets(lp_tuf_client *c, const char *role, const char *delegator,
                              lp_error *err);

#endif
