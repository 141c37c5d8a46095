/*
 * targeting.h — reading and judging a release's targeting rules (internal;
 * the format is in include/livepush/targeting.h).
 *
 * One reader serves the server, which refuses bad rules before storing and
 * signing them (lp_targeting_canonical), and the device, which skips a
 * release whose rules it cannot read (src/agent/check.c): both sides agree
 * on what is valid by construction.
 */
#ifndef LP_AGENT_TARGETING_H
#define LP_AGENT_TARGETING_H

#include "livepush/targeting.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Rules read from a targeting object; the JSON values are borrowed from it. */
typedef struct lp_targeting {
    bool has_min, has_max;
    uint64_t min_from, max_from;
    const json_t *attributes; /* object of key -> string or array; NULL: no rule */
    const json_t *devices;    /* array of device ids; NULL: no rule */
} lp_targeting;

/* Reads `v` strictly into *t.  False when it breaks the format: `where`
 * (wcap bytes) gets the member's path ("targeting.attributes.region[1]")
 * and `what` (cap bytes) what is wrong with it ("listed twice"). */
bool lp_targeting_read(const json_t *v, lp_targeting *t, char *where, size_t wcap, char *what,
                       size_t cap);

/* Why a device does not pass the rules, into why (cap bytes; "" when it
 * does): `current` is the version code it runs (0: none), device_id its id
 * (NULL: none), attrs its attributes (checked by the caller). */
void lp_targeting_judge(const lp_targeting *t, uint64_t current, const char *device_id,
                        const lp_device_attribute *attrs, size_t n, char *why, size_t cap);

/* True for 16..64 lower-case hex digits. */
bool lp_targeting_device_id_ok(const char *s);

#endif
