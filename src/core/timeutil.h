/*
 * timeutil.h — UTC timestamps as TUF writes them (internal).
 *
 * TUF `expires` values are "YYYY-MM-DDTHH:MM:SSZ" (RFC 3339, UTC, no
 * fractional seconds).  Times are int64 seconds since the Unix epoch so that
 * dates past 2038 work everywhere.
 */
#ifndef LP_CORE_TIMEUTIL_H
#define LP_CORE_TIMEUTIL_H

#include "livepush/error.h"

#include <stdint.h>

/* Parses "YYYY-MM-DDTHH:MM:SSZ" strictly (every field range-checked).
 * LP_ERR_MALFORMED names the bad text. */
lp_status lp_time_parse(const char *s, int64_t *out, lp_error *err);
/* Formats into out (at least 21 bytes). */
void lp_time_format(int64_t t, char out[21]);
/* Current time in seconds since the epoch. */
int64_t lp_time_now(void);

#endif
