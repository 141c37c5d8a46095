/*
 * livepush/targeting.h — the targeting rules of a release: which devices a
 * release is offered to, beyond its channels, platform, arch and runtime
 * version (docs/rollouts.md, "Targeting").
 *
 * The rules are a JSON object signed with the release: the server stores it
 * (releases.targeting, in the canonical form below) and writes it into the
 * release's TUF target as custom field "targeting"; the device reads it
 * from there and judges itself (lp_check_for_update), so a static mirror
 * serves the same rules.  Every member is optional and all of them must
 * hold:
 *
 *     "min_from_code": N   the device's current version code is >= N
 *     "max_from_code": N   ... and <= N (N integers >= 0, min <= max; a
 *                          device with no release runs 0)
 *     "attributes": {"region": "eu", "model": ["a1", "a2"]}
 *                          the device has each key, with that value or one
 *                          of the listed values
 *     "devices": ["<id>", ...]  the device's id is in the list (canaries)
 *
 * The format is read strictly on both sides, by one reader: a member this
 * version does not know, a wrong type or a value out of bounds is refused
 * by the server (naming the member) and makes the device skip the release
 * as malformed, so a rule a device cannot evaluate never widens who installs.
 *
 * Bounds: at most LP_TARGETING_MAX_ATTRIBUTES attribute keys of
 * [a-z0-9_.-], 1..LP_TARGETING_MAX_KEY bytes; a value is 1..
 * LP_TARGETING_MAX_VALUE bytes of printable ASCII (space to '~'); an any-of
 * list holds 1..LP_TARGETING_MAX_VALUES values, none twice; a device list
 * holds 1..LP_TARGETING_MAX_DEVICES ids of LP_TARGETING_DEVICE_ID_MIN..
 * LP_TARGETING_DEVICE_ID_MAX lower-case hex digits, none twice; the
 * object's JSON text is at most LP_TARGETING_MAX_JSON bytes.  Device
 * attributes (lp_device_attribute) follow the same key and value bounds.
 */
#ifndef LIVEPUSH_TARGETING_H
#define LIVEPUSH_TARGETING_H

#include "livepush/error.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LP_TARGETING_MAX_ATTRIBUTES 32u
#define LP_TARGETING_MAX_KEY 64u
#define LP_TARGETING_MAX_VALUE 128u
#define LP_TARGETING_MAX_VALUES 32u
#define LP_TARGETING_MAX_DEVICES 10000u
#define LP_TARGETING_DEVICE_ID_MIN 16u
#define LP_TARGETING_DEVICE_ID_MAX 64u
#define LP_TARGETING_MAX_JSON (1024u * 1024u)

/* One attribute of a device ("region" = "eu"). */
typedef struct lp_device_attribute {
    const char *key;   /* [a-z0-9_.-], 1..LP_TARGETING_MAX_KEY bytes */
    const char *value; /* printable ASCII, 1..LP_TARGETING_MAX_VALUE bytes */
} lp_device_attribute;

/* Checks `len` bytes of JSON text (no NUL needed) as targeting rules and
 * gives their canonical form in *out (a new malloc'd string owned by the
 * caller): canonical JSON (keys sorted, no whitespace), arrays in the
 * order given.  An object with no member ({}) means no rules: *out is
 * NULL.  Errors: LP_ERR_MALFORMED (not JSON: the message says where),
 * LP_ERR_INVALID_ARG (the message names the member and what is wrong,
 * "targeting.attributes.region[1]: listed twice", "targeting.colour:
 * unknown member ..."; a bound passed too), LP_ERR_TOO_LARGE (more than
 * LP_TARGETING_MAX_JSON bytes of text), LP_ERR_NOMEM. */
lp_status lp_targeting_canonical(const char *json, size_t len, char **out, lp_error *err);

/* Checks a device's attributes: at most LP_TARGETING_MAX_ATTRIBUTES, keys
 * and values within the bounds above, no key twice (a NULL array is fine
 * when n is 0).  LP_ERR_INVALID_ARG naming the attribute and what is wrong. */
lp_status lp_device_attributes_check(const lp_device_attribute *attrs, size_t n, lp_error *err);

#ifdef __cplusplus
}
#endif
#endif
