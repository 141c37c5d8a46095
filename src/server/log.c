/*
 * log.c — structured log lines (see log.h).
 *
 * The event is assembled as a jansson object (ts, level, msg first, then the
 * caller's fields in insertion order), dumped compactly into one string and
 * written with a single fputs, which stdio locks as a whole: concurrent
 * threads each get whole lines.  The text form walks the same object and
 * prints key=value pairs, quoting values that hold spaces.  Timestamps are
 * UTC with milliseconds from CLOCK_REALTIME.
 */
#include "server/log.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

lp_status lp_log_format_from_name(const char *name, lp_log_format *out, lp_error *err)
{
    if (name && !strcmp(name, "json"))
        *out = LP_LOG_JSON;
    else if (name && !strcmp(name, "text"))
        *out = LP_LOG_TEXT;
    else
        return lp_error_set(err, LP_ERR_INVALID_ARG, "log format '%s': expected json or text",
                            name ? name : "");
    return LP_OK;
}

lp_status lp_log_level_from_name(const char *name, lp_log_level *out, lp_error *err)
{
    for (int i = 0; name && i < 4; i++) {
        if (!strcmp(name, level_names[i])) {
            *out = (lp_log_level)i;
            return LP_OK;
        }
    }
    return lp_error_set(err, LP_ERR_INVALID_ARG,
                        "log level '%s': expected debug, info, warn or error", name ? name : "");
}

const char *lp_log_format_name(lp_log_format f)
{
    return f == LP_LOG_TEXT ? "text" : "json";
}

const char *lp_log_level_name(lp_log_level l)
{
    return (unsigned)l < 4 ? level_names[l] : "info";
}

static void now_rfc3339(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* The text form: "<ts> <level> <msg> k=v k=v". */
static char *text_line(const json_t *ev)
{
    size_t cap = 256, len = 0;
    char *line = malloc(cap);
    if (!line)
        return NULL;
    line[0] = '\0';
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)ev, key, v) {
        char *val = NULL;
        if (json_is_string(v))
            val = strdup(json_string_value(v));
        else
            val = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!val)
            continue;
        bool fixed = !strcmp(key, "ts") || !strcmp(key, "level") || !strcmp(key, "msg");
        bool quote = !fixed && (strchr(val, ' ') || !*val);
        size_t need = len + strlen(key) + strlen(val) + 8;
        if (need > cap) {
            size_t ncap = need * 2;
            char *grown = realloc(line, ncap);
            if (!grown) {
                free(val);
                break;
            }
            line = grown;
            cap = ncap;
        }
        int n = fixed ? snprintf(line + len, cap - len, "%s%s", len ? " " : "", val)
                      : snprintf(line + len, cap - len, " %s=%s%s%s", key, quote ? "\"" : "", val,
                                 quote ? "\"" : "");
        if (n > 0)
            len += (size_t)n;
        free(val);
    }
    return line;
}

void lp_log_event(const lp_log *log, lp_log_level level, const char *msg, json_t *fields)
{
    if (!log || !log->out || level < log->min_level) {
        json_decref(fields);
        return;
    }
    char ts[32];
    now_rfc3339(ts);
    json_t *ev = json_object();
    if (!ev) {
        json_decref(fields);
        return;
    }
    json_object_set_new(ev, "ts", json_string(ts));
    json_object_set_new(ev, "level", json_string(lp_log_level_name(level)));
    json_object_set_new(ev, "msg", json_string(msg ? msg : ""));
    if (json_is_object(fields))
        json_object_update(ev, fields);
    json_decref(fields);
    char *line = log->format == LP_LOG_TEXT ? text_line(ev)
                                            : json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(ev);
    if (!line)
        return;
    size_t n = strlen(line);
    char *withnl = realloc(line, n + 2);
    if (withnl) {
        withnl[n] = '\n';
        withnl[n + 1] = '\0';
        fputs(withnl, log->out);
        fflush(log->out);
        free(withnl);
    } else {
        free(line);
    }
}
