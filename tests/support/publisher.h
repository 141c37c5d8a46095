/*
 * publisher.h — the publisher's side of an app whose publisher signs, for
 * API tests: its first root built and signed offline around the server's
 * online keys, and signatures over the bytes the server prepared, made
 * with real keys that the server never sees.
 *
 * Functions return 0 / a value on success and -1 / NULL on failure with a
 * message on stderr, so tests assert on them.
 */
#ifndef LP_TEST_PUBLISHER_H
#define LP_TEST_PUBLISHER_H

#include "apitest.h"
#include "livepush/key.h"

#include <jansson.h>
#include <stddef.h>

/* The first root of an app: root role `root_keys` (threshold
 * root_threshold), targets role `rel_keys` (threshold rel_threshold),
 * snapshot and timestamp the server's keys from `online` (the
 * {"snapshot":{"keyid","key"},"timestamp":{...}} object the server hands
 * out), signed by every root key.  Built in the scratch folder `scratch`
 * (must not hold metadata; left behind).  Returns the root file's bytes
 * (malloc'd, NUL-terminated; *len its length). */
char *lp_testpub_make_root(const char *scratch, const json_t *online, lp_key *const *root_keys,
                           size_t nroot, unsigned root_threshold, lp_key *const *rel_keys,
                           size_t nrel, unsigned rel_threshold, size_t *len);

/* The body {"signatures":[{"keyid":..,"sig":..},...]} of `n` signatures by
 * `keys` over the `len` prepared bytes at `canon` (malloc'd). */
char *lp_testpub_signatures(lp_key *const *keys, size_t n, const char *canon, size_t len);

/* Creates app `app` whose publisher signs, through the API as admin: POST
 * /api/v1/apps (202), the root made here (under t->dir), PUT .../root
 * (201).  The root's bytes go to *root_out (may be NULL; malloc'd). */
int lp_apitest_publisher_app(lp_apitest *t, const char *app, lp_key *root_key,
                             lp_key *const *rel_keys, size_t nrel, unsigned rel_threshold,
                             char **root_out, size_t *root_len);

/* The body {"root": <root as a JSON string>} (malloc'd). */
char *lp_testpub_root_body(const char *root, size_t len);

#endif
