/*
 * metrics.c — the registry behind GET /metrics (see metrics.h).
 *
 * Each family keeps its series in an array in first-seen order, each
 * keyed by its rendered label set ('method="GET",route="/x",status="200"'),
 * so a lookup is a string comparison over at most a few hundred entries and
 * the rendering needs no formatting of labels.  Histograms use one bucket
 * layout for every family (seconds, 1 ms to 10 s), cumulative as the format
 * wants them when rendered.
 */
#include "server/metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 512

static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                0.25,  0.5,    1,     2.5,  5,     10};
#define NBOUNDS (sizeof bounds / sizeof bounds[0])

typedef enum kind { COUNTER, HISTOGRAM } kind;

typedef struct family_def {
    const char *name, *help;
    kind kind;
    const char *labels[3];
    int nlabels;
} family_def;

static const family_def defs[LP_M_FAMILIES] = {
    [LP_M_HTTP_REQUESTS] = {"livepush_http_requests_total",
                            "HTTP requests answered, by method, route pattern and status",
                            COUNTER, {"method", "route", "status"}, 3},
    [LP_M_HTTP_DURATION] = {"livepush_http_request_duration_seconds",
                            "Time from the request's arrival to its completion, by route",
                            HISTOGRAM, {"route"}, 1},
    [LP_M_HTTP_BYTES] = {"livepush_http_response_bytes_total",
                         "Response body bytes sent, by route", COUNTER, {"route"}, 1},
    [LP_M_PUBLISHES] = {"livepush_publishes_total", "Releases published, by app", COUNTER,
                        {"app"}, 1},
    [LP_M_DELTAS] = {"livepush_deltas_total",
                     "Deltas the server tried to make, by result (made, too_large, failed)",
                     COUNTER, {"result"}, 1},
    [LP_M_CHECKINS] = {"livepush_checkins_total",
                       "Device check-ins (event batches accepted), by app", COUNTER, {"app"}, 1},
    [LP_M_DEVICE_EVENTS] = {"livepush_device_events_total",
                            "Device events stored (duplicates not counted), by app and type",
                            COUNTER, {"app", "type"}, 2},
    [LP_M_GUARDRAIL_HALTS] = {"livepush_guardrail_halts_total",
                              "Rollouts halted by the guardrail, by app", COUNTER, {"app"}, 1},
    [LP_M_DB_WAIT] = {"livepush_db_wait_seconds",
                      "Time spent waiting for a pooled database connection", HISTOGRAM, {0}, 0},
    [LP_M_DB_HOLD] = {"livepush_db_hold_seconds",
                      "Time a database connection was held by one piece of work", HISTOGRAM,
                      {0}, 0},
    [LP_M_DROPPED] = {"livepush_metrics_series_dropped_total",
                      "Updates to series refused because a family reached its bound",
                      COUNTER, {"family"}, 1},
};

typedef struct series {
    char *key;
    uint64_t count;            /* counter value, or histogram count */
    double sum;                /* histogram */
    uint64_t buckets[NBOUNDS]; /* histogram, not cumulative */
} series;

typedef struct family_series {
    series *items;
    size_t count, cap;
} family_series;

struct lp_metrics {
    pthread_mutex_t mu;
    family_series fam[LP_M_FAMILIES];
};

lp_status lp_metrics_new(lp_metrics **out, lp_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&(*out)->mu, NULL);
    return LP_OK;
}

void lp_metrics_free(lp_metrics *m)
{
    if (!m)
        return;
    for (int f = 0; f < LP_M_FAMILIES; f++) {
        for (size_t i = 0; i < m->fam[f].count; i++)
            free(m->fam[f].items[i].key);
        free(m->fam[f].items);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* The label set of `labels` for family f, escaped as the format wants
 * (backslash, double quote, newline). */
static void make_key(lp_metric_family f, const char *const *labels, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < defs[f].nlabels && o + 4 < cap; i++) {
        int w = snprintf(out + o, cap - o, "%s%s=\"", i ? "," : "", defs[f].labels[i]);
        if (w < 0 || (size_t)w >= cap - o)
            break;
        o += (size_t)w;
        for (const char *p = labels && labels[i] ? labels[i] : ""; *p && o + 3 < cap; p++) {
            if (*p == '\\' || *p == '"' || *p == '\n') {
                out[o++] = '\\';
                out[o++] = *p == '\n' ? 'n' : *p;
            } else {
                out[o++] = *p;
            }
        }
        if (o + 1 < cap)
            out[o++] = '"';
        out[o] = '\0';
    }
}

/* The series of family f for `key`, made when new; NULL past the bound or
 * when out of memory (called with the mutex held). */
static series *find(lp_metrics *m, lp_metric_family f, const char *key)
{
    family_series *fa = &m->fam[f];
    for (size_t i = 0; i < fa->count; i++)
        if (!strcmp(fa->items[i].key, key))
            return &fa->items[i];
    if (fa->count >= LP_METRICS_SERIES_MAX)
        return NULL;
    if (fa->count == fa->cap) {
        size_t ncap = fa->cap ? fa->cap * 2 : 16;
        series *n = realloc(fa->items, ncap * sizeof *n);
        if (!n)
            return NULL;
        fa->items = n;
        fa->cap = ncap;
    }
    series *s = &fa->items[fa->count];
    memset(s, 0, sizeof *s);
    if (!(s->key = strdup(key)))
        return NULL;
    fa->count++;
    return s;
}

static void dropped(lp_metrics *m, lp_metric_family f)
{
    char key[KEY_MAX];
    const char *l[] = {defs[f].name};
    make_key(LP_M_DROPPED, l, key, sizeof key);
    series *s = find(m, LP_M_DROPPED, key);
    if (s)
        s->count++;
}

void lp_metrics_add(lp_metrics *m, lp_metric_family family, const char *const *labels,
                    uint64_t n)
{
    if (!m || family >= LP_M_FAMILIES || defs[family].kind != COUNTER)
        return;
    char key[KEY_MAX];
    make_key(family, labels, key, sizeof key);
    pthread_mutex_lock(&m->mu);
    series *s = find(m, family, key);
    if (s)
        s->count += n;
    else
        dropped(m, family);
    pthread_mutex_unlock(&m->mu);
}

void lp_metrics_observe(lp_metrics *m, lp_metric_family family, const char *const *labels,
                        double seconds)
{
    if (!m || family >= LP_M_FAMILIES || defs[family].kind != HISTOGRAM)
        return;
    if (!(seconds >= 0))
        seconds = 0;
    char key[KEY_MAX];
    make_key(family, labels, key, sizeof key);
    pthread_mutex_lock(&m->mu);
    series *s = find(m, family, key);
    if (s) {
        s->count++;
        s->sum += seconds;
        for (size_t b = 0; b < NBOUNDS; b++)
            if (seconds <= bounds[b]) {
                s->buckets[b]++;
                break;
            }
    } else {
        dropped(m, family);
    }
    pthread_mutex_unlock(&m->mu);
}

void lp_metrics_request(lp_metrics *m, const char *method, const char *route, unsigned status,
                        double seconds, uint64_t bytes)
{
    if (!m)
        return;
    char code[8];
    snprintf(code, sizeof code, "%u", status);
    /* Methods are the client's text: only the known ones name a series. */
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                        "OPTIONS"};
    const char *meth = "other";
    for (size_t i = 0; method && i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(method, known[i]))
            meth = known[i];
    const char *req[] = {meth, route, code};
    lp_metrics_add(m, LP_M_HTTP_REQUESTS, req, 1);
    lp_metrics_observe(m, LP_M_HTTP_DURATION, &route, seconds);
    lp_metrics_add(m, LP_M_HTTP_BYTES, &route, bytes);
}

/* name{key[,extra]} — braces left out when both are empty. */
static lp_status series_name(lp_buf *out, const char *name, const char *suffix, const char *key,
                             const char *extra, lp_error *err)
{
    bool any = key[0] || extra[0];
    return lp_buf_printf(out, err, "%s%s%s%s%s%s%s", name, suffix, any ? "{" : "", key,
                         key[0] && extra[0] ? "," : "", extra, any ? "}" : "");
}

lp_status lp_metrics_render(lp_metrics *m, lp_buf *out, lp_error *err)
{
    lp_status st = LP_OK;
    pthread_mutex_lock(&m->mu);
    for (int f = 0; !st && f < LP_M_FAMILIES; f++) {
        const family_def *d = &defs[f];
        const family_series *fa = &m->fam[f];
        st = lp_buf_printf(out, err, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name,
                           d->kind == COUNTER ? "counter" : "histogram");
        for (size_t i = 0; !st && i < fa->count; i++) {
            const series *s = &fa->items[i];
            if (d->kind == COUNTER) {
                st = series_name(out, d->name, "", s->key, "", err);
                if (!st)
                    st = lp_buf_printf(out, err, " %llu\n", (unsigned long long)s->count);
                continue;
            }
            uint64_t cum = 0;
            for (size_t b = 0; !st && b <= NBOUNDS; b++) {
                char le[32];
                if (b < NBOUNDS) {
                    cum += s->buckets[b];
                    snprintf(le, sizeof le, "le=\"%g\"", bounds[b]);
                } else {
                    snprintf(le, sizeof le, "le=\"+Inf\"");
                }
                st = series_name(out, d->name, "_bucket", s->key, le, err);
                if (!st)
                    st = lp_buf_printf(out, err, " %llu\n",
                                       (unsigned long long)(b < NBOUNDS ? cum : s->count));
            }
            if (!st)
                st = series_name(out, d->name, "_sum", s->key, "", err);
            if (!st)
                st = lp_buf_printf(out, err, " %.9g\n", s->sum);
            if (!st)
                st = series_name(out, d->name, "_count", s->key, "", err);
            if (!st)
                st = lp_buf_printf(out, err, " %llu\n", (unsigned long long)s->count);
        }
    }
    pthread_mutex_unlock(&m->mu);
    return st;
}
