/*
 * events.c — the device's telemetry queue (see the network section of
 * include/livepush/updater.h and docs/agent.md, "Telemetry").
 *
 * The queue is a folder (normally <root>/.livepush/events/):
 *     queue.json                 {"dropped":D,"next_seq":N,"reported":R}
 *     00000000000000000042.json  one event, named by its sequence number
 *     lock                       flock(2) lock serialising the processes
 * Every file is written atomically (temporary file, fsync, rename, fsync of
 * the folder).  An event is added by first writing queue.json with the next
 * sequence number taken, and only then the event file, so a crash between
 * the two loses one number, never reuses one: the server accepts events
 * idempotently by (device_id, seq), and a reused number would be taken for
 * a duplicate and lost.  For the same reason a damaged queue.json is an
 * error, not something to start again from 1.
 *
 * Names are zero-padded to 20 digits, so name order is sequence order and
 * the oldest event is the first name.  The queue is bounded: when it holds
 * max_events, adding drops the oldest first and adds one to `dropped`, the
 * running total of events this queue ever discarded.  Every batch reports
 * that total (the server keeps the largest value it has seen, so reporting
 * it twice is harmless); `reported` is the total the server last
 * acknowledged, so a grown total with no event left to carry it is reported
 * by a batch without events.  An event file that cannot be read back
 * (damaged, or not what the server would accept) is deleted and counted as
 * dropped too.
 *
 * An event file holds the eight members every event has; an event with
 * the figures of a download (lp_event_figures) has five more ("bytes",
 * "files_fetched", "files_delta", "bytes_delta_saved", "delta_fallbacks").
 * Reading back accepts an event with or without them, so a queue written
 * before the figures existed is sent as it is (the server reads a missing
 * figure as null), and events without figures stay acceptable to servers
 * that do not know them.
 *
 * What the server accepts is decided when the event is added: a version
 * that is not a release version string becomes null, a reason loses its
 * control characters and is cut, a duration is capped.  A batch the server
 * still refuses for its content (400, 413, 422) would be refused forever
 * and hold back every later event, so it is deleted and counted as
 * dropped; any other failure keeps it for the next try.
 *
 * Sending reads a batch under the lock, releases it for the POST (another
 * process adding an event never waits for the network), and takes it again
 * to delete exactly the files the server acknowledged.  Nothing is deleted
 * without a 2xx answer; a batch sent twice (an answer lost on the way) is
 * harmless because the server deduplicates by sequence number.
 *
 * A POST answered 403, 404, 405 or 501 may come from a static mirror (an
 * export served by a plain web server, docs/export.md), which takes no
 * events at all: the mirror's marker file is asked for (mirror.c) and, when
 * it says so, sending ends with LP_ERR_UNSUPPORTED and the events stay in
 * the queue, which stays bounded by dropping its oldest events as usual,
 * so a device pointed at a server later still reports what it can.
 *
 * Nothing is kept in memory between calls: the folder is the queue, so any
 * number of handles in any number of processes see the same one.
 */
#include "agent/net.h"

#include "core/file.h"
#include "core/timeutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define SEQ_DIGITS 20
#define EVENT_FILE_MAX (16u * 1024)
#define STATE_FILE_MAX 4096u
#define BATCH_LIMIT 1000u
#define ANSWER_MAX 600
/* What the server's device API accepts (include/livepush/db.h). */
#define DEVICE_ID_MIN 16u
#define DEVICE_ID_MAX 64u
#define VERSION_MAX 64u
#define DURATION_MS_MAX 2592000000LL /* 30 days */
#define TIME_MAX 253402300799LL      /* 9999-12-31 23:59:59 UTC */

struct lp_events {
    char *dir;
    char *state_path;
    char *lock_path;
    uint32_t max;
};

typedef struct queue_state {
    uint64_t next_seq;
    uint64_t dropped;  /* running total */
    uint64_t reported; /* the total the server last acknowledged */
} queue_state;

typedef struct seq_list {
    uint64_t *v;
    size_t n, cap;
} seq_list;

static const char *const type_names[] = {"checked", "downloaded", "verified", "staged",
                                         "activated", "healthy", "failed", "rolled_back"};
#define TYPE_COUNT (sizeof type_names / sizeof type_names[0])

const char *lp_event_type_name(lp_event_type t)
{
    return (unsigned)t < TYPE_COUNT ? type_names[t] : "unknown";
}

static bool type_known(const char *s)
{
    for (size_t i = 0; i < TYPE_COUNT; i++)
        if (strcmp(type_names[i], s) == 0)
            return true;
    return false;
}

/* ---- files ------------------------------------------------------------------ */

static char *event_path(const lp_events *q, uint64_t seq)
{
    char name[SEQ_DIGITS + 8];
    snprintf(name, sizeof name, "%0*llu.json", SEQ_DIGITS, (unsigned long long)seq);
    return lp_path_join(q->dir, name);
}

/* The sequence number of an event file name, false for any other name. */
static bool parse_event_name(const char *name, uint64_t *seq)
{
    if (strlen(name) != SEQ_DIGITS + 5 || strcmp(name + SEQ_DIGITS, ".json") != 0)
        return false;
    uint64_t x = 0;
    for (int i = 0; i < SEQ_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        unsigned d = (unsigned)(name[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *seq = x;
    return x > 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The queued sequence numbers, ascending.  Leftover temporary files of an
 * interrupted atomic write are removed on the way. */
static lp_status scan(const lp_events *q, seq_list *out, lp_error *err)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(q->dir);
    if (!d)
        return lp_error_set(err, LP_ERR_IO, "open folder %s: %s", q->dir, strerror(errno));
    lp_status st = LP_OK;
    struct dirent *e;
    errno = 0;
    while (!st && (e = readdir(d)) != NULL) {
        uint64_t seq;
        if (strstr(e->d_name, ".tmp-")) {
            unlinkat(dirfd(d), e->d_name, 0);
            continue;
        }
        if (!parse_event_name(e->d_name, &seq))
            continue;
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 64;
            uint64_t *grown = realloc(out->v, cap * sizeof *grown);
            if (!grown) {
                st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
                break;
            }
            out->v = grown;
            out->cap = cap;
        }
        out->v[out->n++] = seq;
    }
    closedir(d);
    if (st) {
        free(out->v);
        memset(out, 0, sizeof *out);
        return st;
    }
    if (out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, cmp_u64);
    return LP_OK;
}

static bool count_member(const json_t *j, const char *key, json_int_t min, uint64_t *out)
{
    const json_t *v = json_object_get(j, key);
    if (!json_is_integer(v) || json_integer_value(v) < min)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static lp_status state_read(const lp_events *q, queue_state *s, bool *exists, lp_error *err)
{
    uint8_t *data;
    size_t len;
    *s = (queue_state){.next_seq = 1};
    *exists = false;
    lp_status st = lp_file_read(q->state_path, STATE_FILE_MAX, &data, &len, err);
    if (st == LP_ERR_NOT_FOUND)
        return LP_OK;
    if (st)
        return st;
    *exists = true;
    json_t *j = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, NULL);
    free(data);
    bool ok = json_is_object(j) && json_object_size(j) == 3 &&
              count_member(j, "next_seq", 1, &s->next_seq) &&
              count_member(j, "dropped", 0, &s->dropped) &&
              count_member(j, "reported", 0, &s->reported) && s->reported <= s->dropped;
    json_decref(j);
    if (!ok)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "%s: expected {\"dropped\":D,\"next_seq\":N,\"reported\":R} with "
                            "N >= 1 and 0 <= R <= D",
                            q->state_path);
    return LP_OK;
}

static lp_status state_write(const lp_events *q, const queue_state *s, lp_error *err)
{
    char text[128];
    int n = snprintf(text, sizeof text, "{\"dropped\":%llu,\"next_seq\":%llu,\"reported\":%llu}\n",
                     (unsigned long long)s->dropped, (unsigned long long)s->next_seq,
                     (unsigned long long)s->reported);
    return lp_file_write_atomic(q->state_path, text, (size_t)n, 0600, err);
}

/* ---- the lock ----------------------------------------------------------------- */

static lp_status lock_queue(const lp_events *q, int *fd, lp_error *err)
{
    *fd = open(q->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (*fd < 0)
        return lp_error_set(err, LP_ERR_IO, "open %s: %s", q->lock_path, strerror(errno));
    while (flock(*fd, LOCK_EX) != 0) {
        if (errno == EINTR)
            continue;
        int e = errno;
        close(*fd);
        *fd = -1;
        return lp_error_set(err, LP_ERR_IO, "lock %s: %s", q->lock_path, strerror(e));
    }
    return LP_OK;
}

static void unlock_queue(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}

/* ---- open / close ------------------------------------------------------------- */

lp_status lp_events_open(const char *dir, uint32_t max_events, lp_events **out, lp_error *err)
{
    if (!out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "events: no output pointer");
    *out = NULL;
    if (!dir || !dir[0])
        return lp_error_set(err, LP_ERR_INVALID_ARG, "events: no queue folder");
    lp_events *q = calloc(1, sizeof *q);
    if (!q)
        return lp_error_set(err, LP_ERR_NOMEM, "events: out of memory");
    q->max = max_events ? max_events : LP_EVENTS_DEFAULT_MAX;
    q->dir = strdup(dir);
    q->state_path = lp_path_join(dir, "queue.json");
    q->lock_path = lp_path_join(dir, "lock");
    lp_status st = LP_OK;
    if (!q->dir || !q->state_path || !q->lock_path)
        st = lp_error_set(err, LP_ERR_NOMEM, "events: out of memory");
    if (!st)
        st = lp_file_mkdirs(dir, 0700, err);
    int fd = -1;
    if (!st)
        st = lock_queue(q, &fd, err);
    queue_state s = {0};
    bool exists = false;
    if (!st)
        st = state_read(q, &s, &exists, err);
    seq_list l = {0};
    if (!st && !exists)
        st = scan(q, &l, err);
    if (!st && !exists) {
        /* A new queue (or one whose state file never got written): numbers
         * start after any event already there. */
        s.next_seq = l.n ? l.v[l.n - 1] + 1 : 1;
        st = state_write(q, &s, err);
    }
    free(l.v);
    unlock_queue(fd);
    if (st) {
        lp_events_close(q);
        return lp_error_prefix(err, st, "events queue %s", dir);
    }
    *out = q;
    return LP_OK;
}

void lp_events_close(lp_events *q)
{
    if (!q)
        return;
    free(q->dir);
    free(q->state_path);
    free(q->lock_path);
    free(q);
}

/* ---- adding ----------------------------------------------------------------------- */

/* A release version string as the server accepts it: 1..VERSION_MAX of
 * [A-Za-z0-9._+~-]. */
static bool version_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > VERSION_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '+' || c == '~' || c == '-'))
            return false;
    }
    return true;
}

/* Reason text as the server accepts it: control characters other than tab,
 * newline and carriage return become spaces, it is cut at
 * LP_EVENT_MAX_REASON bytes on a character boundary, bytes that are not
 * valid UTF-8 become '?'.  NULL for an empty reason.  New reference (or
 * NULL with *oom set). */
static json_t *reason_json(const char *s, bool *oom)
{
    size_t n = strlen(s);
    if (n > LP_EVENT_MAX_REASON) {
        n = LP_EVENT_MAX_REASON;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    if (n == 0)
        return NULL;
    char *copy = malloc(n + 1);
    if (!copy) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        copy[i] = (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f ? ' ' : (char)c;
    }
    copy[n] = '\0';
    json_t *v = json_stringn(copy, n);
    if (!v) { /* not valid UTF-8 */
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)copy[i] >= 0x80)
                copy[i] = '?';
        v = json_stringn(copy, n);
    }
    free(copy);
    *oom = v == NULL;
    return v;
}

static json_t *code_or_null(uint64_t code)
{
    return code ? json_integer((json_int_t)code) : json_null();
}

/* The optional members of an event, in the order they are written. */
static const char *const figure_keys[] = {"bytes", "files_fetched", "files_delta",
                                          "bytes_delta_saved", "delta_fallbacks"};
#define FIGURE_COUNT (sizeof figure_keys / sizeof figure_keys[0])
#define EVENT_MEMBERS 8u /* the members every event has */

/* Adds the figures to o, each capped at INT64_MAX; false when out of memory. */
static bool add_figures(json_t *o, const lp_event_figures *f)
{
    const uint64_t v[FIGURE_COUNT] = {f->bytes, f->files_fetched, f->files_delta,
                                      f->bytes_delta_saved, f->delta_fallbacks};
    for (size_t i = 0; i < FIGURE_COUNT; i++) {
        json_int_t x = v[i] > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v[i];
        if (json_object_set_new(o, figure_keys[i], json_integer(x)) != 0)
            return false;
    }
    return true;
}

/* The event as sent: {"seq","type","at","version","version_code",
 * "from_version_code","reason","duration_ms"} in that order, then the
 * figures when it has them. */
static lp_status event_json(const lp_event *e, uint64_t seq, char **text, size_t *len,
                            lp_error *err)
{
    int64_t at = e->at > 0 ? e->at : lp_time_now();
    if (at > TIME_MAX)
        at = TIME_MAX;
    int64_t ms = e->duration_ms > DURATION_MS_MAX ? DURATION_MS_MAX : e->duration_ms;
    bool oom = false;
    json_t *reason = e->reason ? reason_json(e->reason, &oom) : NULL;
    json_t *o = json_object();
    json_t *vals[] = {
        json_integer((json_int_t)seq),
        json_string(lp_event_type_name(e->type)),
        json_integer((json_int_t)at),
        e->version && version_ok(e->version) ? json_string(e->version) : json_null(),
        code_or_null(e->version_code),
        code_or_null(e->from_version_code),
        reason ? reason : json_null(),
        ms >= 0 ? json_integer((json_int_t)ms) : json_null(),
    };
    static const char *const keys[] = {"seq",          "type",   "at",         "version",
                                       "version_code", "from_version_code", "reason",
                                       "duration_ms"};
    bool ok = o != NULL && !oom;
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        if (ok && vals[i]) {
            ok = json_object_set_new(o, keys[i], vals[i]) == 0; /* steals the value */
        } else {
            json_decref(vals[i]);
            ok = false;
        }
    }
    if (ok && e->figures)
        ok = add_figures(o, e->figures);
    *text = ok ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!*text)
        return lp_error_set(err, LP_ERR_NOMEM, "events: out of memory");
    *len = strlen(*text);
    return LP_OK;
}

lp_status lp_events_add(lp_events *q, const lp_event *e, lp_error *err)
{
    if (!q || !e)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "events: no queue or event");
    if ((unsigned)e->type >= TYPE_COUNT)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "events: unknown event type %d",
                            (int)e->type);
    if (e->version_code > (uint64_t)INT64_MAX || e->from_version_code > (uint64_t)INT64_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "events: version code out of range");
    int fd = -1;
    lp_status st = lock_queue(q, &fd, err);
    queue_state s = {0};
    bool exists;
    seq_list l = {0};
    if (!st)
        st = state_read(q, &s, &exists, err);
    if (!st)
        st = scan(q, &l, err);
    size_t drop = 0;
    if (!st && l.n >= q->max)
        drop = l.n - q->max + 1;
    uint64_t seq = s.next_seq;
    if (!st) {
        s.next_seq++;
        s.dropped += drop;
        st = state_write(q, &s, err); /* the number is taken before it is used */
    }
    for (size_t i = 0; !st && i < drop; i++) {
        char *p = event_path(q, l.v[i]);
        if (!p)
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        else if (unlink(p) != 0 && errno != ENOENT)
            st = lp_error_set(err, LP_ERR_IO, "remove %s: %s", p, strerror(errno));
        free(p);
    }
    char *text = NULL, *path = NULL;
    size_t len = 0;
    if (!st)
        st = event_json(e, seq, &text, &len, err);
    if (!st && !(path = event_path(q, seq)))
        st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    if (!st)
        st = lp_file_write_atomic(path, text, len, 0600, err);
    free(text);
    free(path);
    free(l.v);
    unlock_queue(fd);
    if (st)
        return lp_error_prefix(err, st, "events: adding a %s event", lp_event_type_name(e->type));
    return LP_OK;
}

/* ---- reading back ---------------------------------------------------------------- */

static bool int_or_null(const json_t *v, json_int_t min, json_int_t max)
{
    return json_is_null(v) ||
           (json_is_integer(v) && json_integer_value(v) >= min && json_integer_value(v) <= max);
}

static bool version_or_null(const json_t *v)
{
    return json_is_null(v) || (json_is_string(v) && version_ok(json_string_value(v)));
}

static bool reason_or_null(const json_t *v)
{
    if (json_is_null(v))
        return true;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > LP_EVENT_MAX_REASON)
        return false;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
            return false;
    }
    return true;
}

/* The number of figures o has, each null or 0..INT64_MAX; -1 when one is
 * something else. */
static int figures_present(const json_t *o)
{
    int n = 0;
    for (size_t i = 0; i < FIGURE_COUNT; i++) {
        const json_t *v = json_object_get(o, figure_keys[i]);
        if (!v)
            continue;
        if (!int_or_null(v, 0, INT64_MAX))
            return -1;
        n++;
    }
    return n;
}

/* The event of file seq, checked against what the server accepts (the
 * eight members every event has, any of the figures, nothing else); NULL
 * when it is damaged. */
static json_t *event_load(const lp_events *q, uint64_t seq)
{
    char *path = event_path(q, seq);
    uint8_t *data = NULL;
    size_t len = 0;
    if (!path || lp_file_read(path, EVENT_FILE_MAX, &data, &len, NULL) != LP_OK) {
        free(path);
        return NULL;
    }
    free(path);
    json_t *o = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, NULL);
    free(data);
    const json_t *t = json_object_get(o, "type"), *sq = json_object_get(o, "seq");
    int figures = json_is_object(o) ? figures_present(o) : -1;
    bool ok = figures >= 0 && json_object_size(o) == EVENT_MEMBERS + (size_t)figures &&
              json_is_integer(sq) &&
              (uint64_t)json_integer_value(sq) == seq && json_is_string(t) &&
              type_known(json_string_value(t)) &&
              int_or_null(json_object_get(o, "at"), 1, TIME_MAX) &&
              !json_is_null(json_object_get(o, "at")) &&
              version_or_null(json_object_get(o, "version")) &&
              int_or_null(json_object_get(o, "version_code"), 1, INT64_MAX) &&
              int_or_null(json_object_get(o, "from_version_code"), 1, INT64_MAX) &&
              reason_or_null(json_object_get(o, "reason")) &&
              int_or_null(json_object_get(o, "duration_ms"), 0, DURATION_MS_MAX);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static void remove_events(const lp_events *q, const uint64_t *seqs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *p = event_path(q, seqs[i]);
        if (p)
            unlink(p);
        free(p);
    }
    if (n)
        lp_file_sync_parent(q->state_path, NULL);
}

/* Under the lock: the next batch (events, their numbers, the drops to
 * report).  Damaged files are deleted and counted as dropped. */
static lp_status take_batch(lp_events *q, size_t batch_max, json_t *events, seq_list *seqs,
                            queue_state *qs, lp_error *err)
{
    int fd = -1;
    lp_status st = lock_queue(q, &fd, err);
    queue_state s = {0};
    bool exists;
    seq_list l = {0};
    if (!st)
        st = state_read(q, &s, &exists, err);
    if (!st)
        st = scan(q, &l, err);
    uint64_t damaged = 0;
    for (size_t i = 0; !st && i < l.n && seqs->n < batch_max; i++) {
        json_t *ev = event_load(q, l.v[i]);
        if (!ev) {
            remove_events(q, &l.v[i], 1);
            damaged++;
            continue;
        }
        if (json_array_append_new(events, ev) != 0)
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        else
            seqs->v[seqs->n++] = l.v[i];
    }
    if (!st && damaged) {
        s.dropped += damaged;
        st = state_write(q, &s, err);
    }
    *qs = s;
    free(l.v);
    unlock_queue(fd);
    return st;
}

/* Under the lock: deletes the batch's events; `refused` counts them as
 * dropped, otherwise the server acknowledged `dropped_sent`. */
static lp_status finish_batch(lp_events *q, const seq_list *seqs, bool refused,
                              uint64_t dropped_sent, lp_error *err)
{
    int fd = -1;
    lp_status st = lock_queue(q, &fd, err);
    queue_state s = {0};
    bool exists;
    if (!st)
        st = state_read(q, &s, &exists, err);
    if (!st) {
        remove_events(q, seqs->v, seqs->n);
        queue_state before = s;
        if (refused)
            s.dropped += seqs->n;
        else if (dropped_sent > s.reported)
            s.reported = dropped_sent <= s.dropped ? dropped_sent : s.dropped;
        if (memcmp(&before, &s, sizeof s) != 0)
            st = state_write(q, &s, err);
    }
    unlock_queue(fd);
    return st;
}

static bool device_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < DEVICE_ID_MIN || n > DEVICE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

lp_status lp_events_send(lp_events *q, lp_net *net, const char *device_id, size_t batch_max,
                         size_t *sent, lp_error *err)
{
    return lp_events_send_on(q, net, device_id, NULL, batch_max, sent, err);
}

static bool channel_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
              s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

lp_status lp_events_send_on(lp_events *q, lp_net *net, const char *device_id,
                            const char *channel, size_t batch_max, size_t *sent, lp_error *err)
{
    if (sent)
        *sent = 0;
    if (!q || !net)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "events: no queue or connection");
    if (!device_id_ok(device_id))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "events: device id '%.80s' is not %u..%u lower-case hex digits",
                            device_id ? device_id : "", DEVICE_ID_MIN, DEVICE_ID_MAX);
    if (channel && !channel_ok(channel))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "events: channel '%.80s' is not 1..64 bytes of a-z 0-9 . _ -",
                            channel);
    if (!batch_max)
        batch_max = LP_EVENTS_DEFAULT_BATCH;
    if (batch_max > BATCH_LIMIT)
        batch_max = BATCH_LIMIT;
    seq_list seqs = {.v = calloc(batch_max, sizeof(uint64_t)), .cap = batch_max};
    if (!seqs.v)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_status st = LP_OK;
    /* Bounded even if another process keeps adding meanwhile. */
    size_t rounds = q->max / batch_max + 2;
    for (size_t r = 0; !st && r < rounds; r++) {
        json_t *events = json_array();
        queue_state qs = {0};
        seqs.n = 0;
        if (!events)
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        if (!st)
            st = take_batch(q, batch_max, events, &seqs, &qs, err);
        if (!st && seqs.n == 0 && qs.dropped == qs.reported) {
            json_decref(events);
            break;
        }
        json_t *body = st ? NULL
                          : json_pack("{s:s,s:O,s:I}", "device_id", device_id, "events", events,
                                      "dropped", (json_int_t)qs.dropped);
        if (body && channel)
            json_object_set_new(body, "channel", json_string(channel));
        char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (!st && !text)
            st = lp_error_set(err, LP_ERR_NOMEM, "out of memory");
        long status = 0;
        char what[ANSWER_MAX];
        if (!st && (st = lp_net_post_app_json(net, "events", text, strlen(text), &status, what,
                                              sizeof what, err)))
            lp_error_prefix(err, st, "events: sending %zu events", seqs.n);
        bool ok = !st && status >= 200 && status <= 299;
        bool refused = !st && (status == 400 || status == 413 || status == 422);
        if (!st && (status == 403 || status == 404 || status == 405 || status == 501)) {
            /* Perhaps a static mirror, which takes no events (mirror.c). */
            bool mirror = false;
            char murl[512];
            lp_error ignored;
            if (lp_net_static_mirror(net, &mirror, murl, sizeof murl, &ignored) == LP_OK &&
                mirror)
                st = lp_error_set(err, LP_ERR_UNSUPPORTED,
                                  "events: the server is a static mirror (%s says so): it takes "
                                  "no telemetry, so no events are sent; they stay queued (at "
                                  "most %u, the oldest dropped first)",
                                  murl, q->max);
        }
        if (ok || refused)
            st = finish_batch(q, &seqs, refused, qs.dropped, err);
        if (!st && ok && sent)
            *sent += seqs.n;
        if (!st && refused)
            st = lp_error_set(err, LP_ERR_NETWORK,
                              "events: %s; the server refuses the batch's content, so its %zu "
                              "events (seq %llu..%llu) were dropped",
                              what, seqs.n, seqs.n ? (unsigned long long)seqs.v[0] : 0ULL,
                              seqs.n ? (unsigned long long)seqs.v[seqs.n - 1] : 0ULL);
        else if (!st && !ok)
            st = lp_error_set(err, LP_ERR_NETWORK, "events: %s; %zu events stay queued", what,
                              seqs.n);
        free(text);
        json_decref(body);
        json_decref(events);
        if (!st && seqs.n < batch_max)
            break;
    }
    free(seqs.v);
    return st;
}

lp_status lp_events_pending(lp_events *q, size_t *count, uint64_t *dropped, lp_error *err)
{
    if (!q)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "events: no queue");
    int fd = -1;
    lp_status st = lock_queue(q, &fd, err);
    queue_state s = {0};
    bool exists;
    seq_list l = {0};
    if (!st)
        st = state_read(q, &s, &exists, err);
    if (!st)
        st = scan(q, &l, err);
    if (!st && count)
        *count = l.n;
    if (!st && dropped)
        *dropped = s.dropped;
    free(l.v);
    unlock_queue(fd);
    return st;
}
