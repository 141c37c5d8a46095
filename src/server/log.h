/*
 * log.h — the server's structured log (internal).
 *
 * One line per event on a stream (stderr for `livepush serve`).  In JSON
 * form every line is one compact JSON object with at least
 *     {"ts":"2026-01-02T03:04:05.678Z","level":"info","msg":"..."}
 * plus the event's own fields (a request adds request_id, method, path,
 * status, bytes, duration_ms, remote).  In text form the same event reads
 *     2026-01-02T03:04:05.678Z info request method=GET path=/healthz ...
 *
 * A line is formatted in memory and written with one stdio call, so lines
 * from concurrent threads never interleave.  An lp_log holds no other state
 * and may be shared by every thread.
 */
#ifndef LP_SERVER_LOG_H
#define LP_SERVER_LOG_H

#include "livepush/error.h"

#include <jansson.h>
#include <stdio.h>

typedef enum lp_log_format { LP_LOG_JSON = 0, LP_LOG_TEXT = 1 } lp_log_format;

typedef enum lp_log_level {
    LP_LOG_DEBUG = 0,
    LP_LOG_INFO = 1,
    LP_LOG_WARN = 2,
    LP_LOG_ERROR = 3,
} lp_log_level;

typedef struct lp_log {
    FILE *out;            /* borrowed; never closed by the log */
    lp_log_format format;
    lp_log_level min_level; /* events below it are dropped */
} lp_log;

/* "json"/"text" and "debug"/"info"/"warn"/"error" to values; LP_ERR_INVALID_ARG
 * names the bad text. */
lp_status lp_log_format_from_name(const char *name, lp_log_format *out, lp_error *err);
lp_status lp_log_level_from_name(const char *name, lp_log_level *out, lp_error *err);
const char *lp_log_format_name(lp_log_format f);
const char *lp_log_level_name(lp_log_level l);

/* Writes one event.  `fields` (may be NULL) is a JSON object of extra
 * fields; the log takes ownership of it (it is always released).  A NULL
 * log, or a level below the minimum, writes nothing. */
void lp_log_event(const lp_log *log, lp_log_level level, const char *msg, json_t *fields);

#endif
