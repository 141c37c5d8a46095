/*
 * fleet.c — a fleet of simulated devices checking in with `livepush serve`,
 * for bench/fleet/run and bench/scale/run.
 *
 *   fleet --url URL [--url URL2 ...] --app APP --mode MODE --devices N [options]
 *
 * A device that finds nothing new does two requests per check-in, the ones
 * the agent makes (docs/agent.md): it refreshes its TUF metadata, which
 * costs one GET of timestamp.json when nothing changed (here conditional,
 * If-None-Match: the server's ETag, answered 304), and then posts its
 * queued events (one "checked" event) to POST /v1/apps/<app>/events.  The
 * modes:
 *
 *   checkin   GET timestamp.json (304), then POST the "checked" event, one
 *             after the other on the same slot: one check-in
 *   get       the GET alone
 *   post      the POST alone
 *   register  one POST per device of the device's install history
 *             (checked, downloaded, activated, healthy of release 1 or 2),
 *             each device of [--first, --first + --count) exactly once:
 *             the pre-fill that registers devices
 *   history   --count "checked" events for each device of [--first,
 *             --first + --devices), posted in batches of 1000 (the most a
 *             batch may hold): the check-ins of a device that has been
 *             checking in for a long time, in a few seconds
 *
 * In checkin, get and post modes the device IDs cycle over devices
 * I..I+N-1 (I = --first, 0 by default; N = --devices, the registered set),
 * so every registered device checks in equally often; the run lasts
 * --warmup seconds (not counted), then --seconds (measured), and then stops
 * starting new check-ins.
 *
 * Device i's ID is 32 lower-case hex digits derived from i by a fixed
 * mixing function, spread over the key space as random IDs are (the agent
 * makes a random 128-bit one).  Even devices run release 2 (code 2, on a
 * rollout), odd ones release 1.  Each device's events carry increasing
 * sequence numbers across runs: seq = --seq-base + the number of times this
 * run has cycled past the device + 1 (register: + 1..4; history: + 1..count),
 * and --seq-base defaults to the wall-clock time in microseconds at start,
 * which grows faster than any run can use numbers.  So every event is new
 * to the server (accepted, not a duplicate), as a real device's are.
 *
 * Load: --concurrency slots, each with its own requests in flight one at a
 * time (a slot is a device that does its GET and then its POST), shared out
 * over --threads threads, each one libcurl multi handle.  Connections are
 * kept alive and reused by whichever slot of the thread needs one
 * (--new-connections: every check-in opens its own, the POST closing it).
 *
 * Several servers of one service (bench/scale): --url given more than once
 * (at most 8) spreads the slots over the URLs in turn (slot k talks to URL
 * k mod the number of URLs, as a load balancer that keeps each device on
 * one server would), so the same --concurrency is shared among them; each
 * URL may have its own --etag (given in the same order; one --etag serves
 * them all).  Device IDs still cycle over one fleet, so consecutive devices
 * go to different servers of the same database.
 *
 * Every answer is checked: 304 with no body for the GET, 200 with
 * {"accepted":K,"duplicates":0} (K the events sent) for a POST.  Anything
 * else (another status, another body, a transport error) is an error; a run
 * with errors prints the first few and exits 1.
 *
 * Output: one line on stdout,
 *
 *   RESULT mode=M devices=N concurrency=C threads=T done=D seconds=S
 *          rate=R p50_us=.. p90_us=.. p99_us=.. max_us=.. get_p50_us=..
 *          post_p50_us=.. get_p99_us=.. post_p99_us=.. errors=E
 *          client_cpu_us=.. server_cpu_us=.. server_wait_us=..
 *          client_wait_us=.. urls=U done_by_url=D1,D2,..
 *          db_cpu_us=.. db_wait_us=..
 *
 * done and rate count check-ins (register: registrations; history:
 * batches) completed in the measured window (register, history: the whole
 * run); latencies are of a whole check-in (first byte of the GET sent to
 * the POST's answer), with the two requests' own medians and 99th
 * percentiles beside; client_cpu_us is this process's user + system time in
 * the window, server_cpu_us that of --server-pid (from /proc; summed when
 * given more than once, at most 8), or -1; server_wait_us and
 * client_wait_us the time their threads were runnable but waited for a CPU
 * (/proc/<pid>/task/<tid>/schedstat, summed over the threads; the client's
 * only in the timed modes, whose threads are still running when the window
 * ends): the sign that other work on the machine took the cores.
 * done_by_url splits done by URL.  db_cpu_us and db_wait_us are the same
 * figures for a database server: --db-pid (PostgreSQL's postmaster) and
 * every child process it has at the window's start and end (a child that
 * exits inside the window is not counted), or -1 without --db-pid.
 *
 * It is a benchmark driver built by bench/fleet/run and bench/scale/run
 * (build/bench/fleet) with libcurl only; it is not part of the product or
 * of the tests.
 */
#include <curl/curl.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define URL_MAX 1024
#define BODY_MAX 2048            /* one check-in's or registration's body */
#define HISTORY_BATCH 1000       /* events per batch of --mode history (the server's most) */
#define HISTORY_EVENT_MAX 200    /* bytes of one "checked" event at most */
#define ANSWER_MAX 512
#define ETAG_MAX 256
#define ERRORS_SHOWN 5
#define MAX_CONCURRENCY 4096
#define MAX_THREADS 2
#define MAX_URLS 8               /* --url given more than once */
#define MAX_PIDS 8               /* --server-pid given more than once */
#define MAX_DB_PROCS 1024        /* a database server's processes counted */

typedef enum { MODE_CHECKIN, MODE_GET, MODE_POST, MODE_REGISTER, MODE_HISTORY } fleet_mode;
static const char *const mode_names[] = {"checkin", "get", "post", "register", "history"};

/* Phases of a timed run, set by the main thread. */
enum { PHASE_WARMUP, PHASE_MEASURE, PHASE_DRAIN };

typedef struct fleet_opts {
    const char *urls[MAX_URLS];
    unsigned nurls;
    const char *app;
    const char *channel;
    const char *etags[MAX_URLS];
    unsigned netags;
    fleet_mode mode;
    uint64_t devices;
    uint64_t first;
    uint64_t count;
    unsigned concurrency;
    unsigned threads;
    double seconds;
    double warmup;
    long server_pids[MAX_PIDS];
    unsigned npids;
    long db_pid;
    int64_t seq_base;
    bool new_connections;
} fleet_opts;

/* Latencies in microseconds, growing. */
typedef struct lat_list {
    uint32_t *v;
    size_t n, cap;
} lat_list;

/* What all threads share: the options, the next device number, the phase,
 * the error count with the first messages. */
typedef struct fleet_shared {
    const fleet_opts *o;
    char get_url[MAX_URLS][URL_MAX];
    char post_url[MAX_URLS][URL_MAX];
    char etag_header[MAX_URLS][ETAG_MAX + 32];
    _Atomic uint64_t next;  /* next work item: device counter, batch number */
    _Atomic int phase;
    _Atomic uint64_t errors;
    pthread_mutex_t err_lock;
    char shown[ERRORS_SHOWN][400];
    unsigned nshown;
} fleet_shared;

/* One simulated device at a time: its two requests and their answers. */
typedef struct slot {
    CURL *get;
    CURL *post;
    struct curl_slist *get_headers;
    struct curl_slist *post_headers;
    unsigned url;        /* which --url it talks to */
    uint64_t index;      /* the device's number */
    unsigned events;     /* events in the POST body */
    double t_start;      /* when the check-in began */
    double t_post;       /* when its POST began */
    bool busy;
    char *body;
    size_t body_cap, body_len;
    bool body_over;
    char answer[ANSWER_MAX];
    size_t answer_len;
    bool answer_overflow;
} slot;

typedef struct worker {
    fleet_shared *sh;
    unsigned nslots;
    slot *slots;
    CURLM *multi;
    lat_list total, get, post;
    uint64_t done; /* completed in the measured window */
    uint64_t done_by_url[MAX_URLS];
} worker;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Device i's ID: 32 hex digits. */
static void device_id(uint64_t i, char out[33])
{
    snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, mix64(2 * i + 0x666c656574ull),
             mix64(2 * i + 1 + 0x666c656574ull));
}

static unsigned release_of(uint64_t i)
{
    return i % 2 ? 1 : 2;
}

static bool lat_add(lat_list *l, double seconds)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 65536;
        uint32_t *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return false;
        l->v = v;
        l->cap = cap;
    }
    double us = seconds * 1e6;
    l->v[l->n++] = us < 0 ? 0 : us > 4e9 ? 4000000000u : (uint32_t)us;
    return true;
}

static void record_error(fleet_shared *sh, const char *msg)
{
    atomic_fetch_add(&sh->errors, 1);
    pthread_mutex_lock(&sh->err_lock);
    if (sh->nshown < ERRORS_SHOWN)
        snprintf(sh->shown[sh->nshown++], sizeof sh->shown[0], "%s", msg);
    pthread_mutex_unlock(&sh->err_lock);
}

static size_t on_answer(char *data, size_t size, size_t n, void *user)
{
    slot *s = user;
    size_t len = size * n;
    if (s->answer_len + len >= sizeof s->answer) {
        s->answer_overflow = true;
        return len;
    }
    memcpy(s->answer + s->answer_len, data, len);
    s->answer_len += len;
    s->answer[s->answer_len] = '\0';
    return len;
}

/* ---- request bodies ------------------------------------------------------------ */

/* Appends to the slot's body; a body that does not fit is marked. */
__attribute__((format(printf, 2, 3))) static void put(slot *s, const char *fmt, ...)
{
    if (s->body_over)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->body + s->body_len, s->body_cap - s->body_len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= s->body_cap - s->body_len)
        s->body_over = true;
    else
        s->body_len += (size_t)n;
}

/* One event as the agent's lp_events_send posts it (its members in that
 * order; 0 codes are null). */
static void put_event(slot *s, int64_t seq, const char *type, int64_t at, unsigned version_code,
                      unsigned from_code, unsigned duration_ms, bool figures)
{
    put(s, "{\"seq\":%" PRId64 ",\"type\":\"%s\",\"at\":%" PRId64 ",", seq, type, at);
    if (version_code)
        put(s, "\"version\":\"%u.0\",\"version_code\":%u,", version_code, version_code);
    else
        put(s, "\"version\":null,\"version_code\":null,");
    if (from_code)
        put(s, "\"from_version_code\":%u,", from_code);
    else
        put(s, "\"from_version_code\":null,");
    put(s, "\"reason\":null,\"duration_ms\":%u", duration_ms);
    if (figures)
        put(s, ",\"bytes\":100000,\"files_fetched\":2,\"files_delta\":0,"
               "\"bytes_delta_saved\":0,\"delta_fallbacks\":0");
    put(s, "}");
}

/* The POST body for device `index`: its install history (register), a
 * batch of `n` "checked" events numbered from seq (history), or the one
 * "checked" event of a check-in.  False when it does not fit. */
static bool make_body(const fleet_opts *o, slot *s, uint64_t index, int64_t seq, unsigned n)
{
    char id[33];
    device_id(index, id);
    int64_t at = (int64_t)time(NULL);
    unsigned rel = release_of(index);
    s->body_len = 0;
    s->body_over = false;
    put(s, "{\"device_id\":\"%s\",\"events\":[", id);
    if (o->mode == MODE_REGISTER) {
        /* a fresh device installs its release: four events */
        put_event(s, seq, "checked", at, rel, 0, 40, false);
        put(s, ",");
        put_event(s, seq + 1, "downloaded", at, rel, 0, 300, true);
        put(s, ",");
        put_event(s, seq + 2, "activated", at, rel, 0, 5, false);
        put(s, ",");
        put_event(s, seq + 3, "healthy", at, rel, 0, 0, false);
        s->events = 4;
    } else {
        /* nothing new: "checked" with no offer, from the release it runs */
        for (unsigned k = 0; k < n; k++) {
            if (k)
                put(s, ",");
            put_event(s, seq + k, "checked", at, 0, rel, 15, false);
        }
        s->events = n;
    }
    put(s, "],\"dropped\":0,\"channel\":\"%s\"}", o->channel);
    return !s->body_over;
}

/* ---- one slot's requests ----------------------------------------------------- */

static bool setup_handle(CURL **h, slot *s, const char *url, struct curl_slist *hdr)
{
    *h = curl_easy_init();
    if (!*h)
        return false;
    CURL *e = *h;
    bool ok = curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_USERAGENT, "livepush-bench-fleet") == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_answer) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEDATA, s) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_PRIVATE, s) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L) == CURLE_OK;
    return ok;
}

static bool start_request(worker *w, slot *s, CURL *h)
{
    s->answer_len = 0;
    s->answer[0] = '\0';
    s->answer_overflow = false;
    if (h == s->post) {
        if (curl_easy_setopt(h, CURLOPT_POSTFIELDS, s->body) != CURLE_OK ||
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)s->body_len) != CURLE_OK)
            return false;
    }
    return curl_multi_add_handle(w->multi, h) == CURLM_OK;
}

/* Takes the next device for an idle slot and starts its first request;
 * false when there is nothing more to start. */
static bool start_next(worker *w, slot *s)
{
    fleet_shared *sh = w->sh;
    const fleet_opts *o = sh->o;
    uint64_t index;
    int64_t seq = o->seq_base + 1;
    unsigned n = 1;
    if (o->mode == MODE_REGISTER) {
        uint64_t k = atomic_fetch_add(&sh->next, 1);
        if (k >= o->count)
            return false;
        index = o->first + k;
    } else if (o->mode == MODE_HISTORY) {
        /* batch b of device first + k % devices: events b*1000+1.. */
        uint64_t batches = (o->count + HISTORY_BATCH - 1) / HISTORY_BATCH;
        uint64_t k = atomic_fetch_add(&sh->next, 1);
        if (k >= batches * o->devices)
            return false;
        index = o->first + k % o->devices;
        uint64_t b = k / o->devices;
        seq += (int64_t)(b * HISTORY_BATCH);
        n = (unsigned)(o->count - b * HISTORY_BATCH < HISTORY_BATCH ? o->count - b * HISTORY_BATCH
                                                                    : HISTORY_BATCH);
    } else {
        if (atomic_load(&sh->phase) == PHASE_DRAIN)
            return false;
        uint64_t k = atomic_fetch_add(&sh->next, 1);
        index = o->first + k % o->devices;
        seq += (int64_t)(k / o->devices); /* the times this run passed the device */
    }
    s->index = index;
    s->busy = true;
    s->t_start = now_s();
    if (o->mode != MODE_GET && !make_body(o, s, index, seq, n)) {
        record_error(sh, "request body too large");
        s->busy = false;
        return false;
    }
    s->t_post = s->t_start;
    CURL *first = o->mode == MODE_CHECKIN || o->mode == MODE_GET ? s->get : s->post;
    if (!start_request(w, s, first)) {
        record_error(sh, "could not start a request (libcurl)");
        s->busy = false;
        return false;
    }
    return true;
}

/* True when the answer of `h` is the expected one; else records why. */
static bool check_answer(worker *w, slot *s, CURL *h, CURLcode rc)
{
    char msg[400];
    long status = 0;
    const char *what = h == s->get ? "GET timestamp.json" : "POST events";
    if (rc != CURLE_OK) {
        snprintf(msg, sizeof msg, "%s: %s", what, curl_easy_strerror(rc));
        record_error(w->sh, msg);
        return false;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (h == s->get) {
        if (status == 304 && s->answer_len == 0)
            return true;
        snprintf(msg, sizeof msg, "%s: HTTP %ld (expected 304) %.120s", what, status, s->answer);
        record_error(w->sh, msg);
        return false;
    }
    char want[64];
    snprintf(want, sizeof want, "{\"accepted\":%u,\"duplicates\":0}", s->events);
    if (status == 200 && !s->answer_overflow && !strcmp(s->answer, want))
        return true;
    snprintf(msg, sizeof msg, "%s: HTTP %ld %.160s (expected 200 %s)", what, status,
             s->answer_overflow ? "(long answer)" : s->answer, want);
    record_error(w->sh, msg);
    return false;
}

/* A request of slot s ended: starts the POST after the GET of a check-in,
 * or records the check-in and frees the slot. */
static void finished(worker *w, slot *s, CURL *h, CURLcode rc)
{
    const fleet_opts *o = w->sh->o;
    curl_multi_remove_handle(w->multi, h);
    double t = now_s();
    bool ok = check_answer(w, s, h, rc);
    if (ok && h == s->get && o->mode == MODE_CHECKIN) {
        s->t_post = t;
        if (start_request(w, s, s->post))
            return;
        record_error(w->sh, "could not start a request (libcurl)");
        ok = false;
    }
    s->busy = false;
    if (!ok)
        return;
    bool counted = atomic_load(&w->sh->phase) == PHASE_MEASURE;
    if (!counted)
        return;
    w->done++;
    w->done_by_url[s->url]++;
    bool mem = lat_add(&w->total, t - s->t_start);
    if (o->mode == MODE_CHECKIN)
        mem = mem && lat_add(&w->get, s->t_post - s->t_start) && lat_add(&w->post, t - s->t_post);
    if (!mem)
        record_error(w->sh, "out of memory");
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    fleet_shared *sh = w->sh;
    bool more = true;
    for (;;) {
        unsigned busy = 0;
        for (unsigned i = 0; i < w->nslots; i++) {
            if (!w->slots[i].busy && more && atomic_load(&sh->errors) == 0)
                more = start_next(w, &w->slots[i]);
            busy += w->slots[i].busy;
        }
        if (!busy)
            break;
        int running = 0;
        if (curl_multi_perform(w->multi, &running) != CURLM_OK) {
            record_error(sh, "curl_multi_perform failed");
            break;
        }
        CURLMsg *m;
        int left;
        bool any = false;
        while ((m = curl_multi_info_read(w->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            slot *s = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            finished(w, s, m->easy_handle, m->data.result);
            any = true;
        }
        if (!any && curl_multi_poll(w->multi, NULL, 0, 50, NULL) != CURLM_OK) {
            record_error(sh, "curl_multi_poll failed");
            break;
        }
    }
    return NULL;
}

/* ---- measures ---------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile (nearest rank) of l, sorted in place; 0 when empty. */
static uint32_t percentile(lat_list *l, double p, bool sorted)
{
    if (!l->n)
        return 0;
    if (!sorted)
        qsort(l->v, l->n, sizeof *l->v, cmp_u32);
    size_t rank = (size_t)(p / 100.0 * (double)l->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > l->n)
        rank = l->n;
    return l->v[rank - 1];
}

static bool merge(lat_list *dst, const lat_list *src)
{
    for (size_t i = 0; i < src->n; i++) {
        if (dst->n == dst->cap) {
            size_t cap = dst->cap ? 2 * dst->cap : 65536;
            uint32_t *v = realloc(dst->v, cap * sizeof *v);
            if (!v)
                return false;
            dst->v = v;
            dst->cap = cap;
        }
        dst->v[dst->n++] = src->v[i];
    }
    return true;
}

static int64_t self_cpu_us(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru))
        return -1;
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

/* User + system time of process pid in microseconds (/proc), or -1; its
 * parent's pid into *ppid when ppid is not NULL. */
static int64_t proc_cpu_us(long pid, long *ppid)
{
    if (pid <= 0)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after the command name, which ends at the last ')' */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    long parent = 0;
    if (sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &parent, &ut,
               &st) != 3)
        return -1;
    if (ppid)
        *ppid = parent;
    long tck = sysconf(_SC_CLK_TCK);
    return tck > 0 ? (int64_t)((ut + st) * 1000000ull / (unsigned long long)tck) : -1;
}

/* Time process pid's threads ran on a CPU and waited for one (runnable but
 * not running: the machine busy with other work), in microseconds, summed
 * over /proc/PID/task/<tid>/schedstat; false when unreadable. */
static bool proc_sched_us(long pid, int64_t *run_us, int64_t *wait_us)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return false;
    unsigned long long run = 0, wait = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char f[128];
        snprintf(f, sizeof f, "/proc/%ld/task/%.32s/schedstat", pid, e->d_name);
        FILE *fp = fopen(f, "r");
        unsigned long long r = 0, w = 0;
        if (fp && fscanf(fp, "%llu %llu", &r, &w) == 2) {
            run += r;
            wait += w;
        }
        if (fp)
            fclose(fp);
    }
    closedir(d);
    *run_us = (int64_t)(run / 1000);
    *wait_us = (int64_t)(wait / 1000);
    return true;
}

/* One process of the database server at one moment. */
typedef struct db_proc {
    long pid;
    int64_t cpu, wait;
} db_proc;

/* CPU and run-queue figures of this process, the servers and the database
 * server's processes at one moment. */
typedef struct sample {
    int64_t client_cpu, server_cpu, server_run, server_wait, client_run, client_wait;
    bool server_sched, client_sched;
    db_proc db[MAX_DB_PROCS];
    size_t ndb;
} sample;

/* Adds process pid's CPU and wait to s->db, when there is room. */
static void add_db_proc(sample *s, long pid, int64_t cpu)
{
    int64_t run = 0, wait = 0;
    if (s->ndb < MAX_DB_PROCS && proc_sched_us(pid, &run, &wait))
        s->db[s->ndb++] = (db_proc){pid, cpu, wait};
}

/* The database server's processes: db_pid and its children (a scan of
 * /proc for the processes whose parent it is). */
static void sample_db(sample *s, long db_pid)
{
    int64_t cpu = proc_cpu_us(db_pid, NULL);
    if (cpu < 0)
        return;
    add_db_proc(s, db_pid, cpu);
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end = NULL;
        long pid = strtol(e->d_name, &end, 10);
        long parent = 0;
        if (pid <= 0 || *end || pid == db_pid)
            continue;
        cpu = proc_cpu_us(pid, &parent);
        if (cpu >= 0 && parent == db_pid)
            add_db_proc(s, pid, cpu);
    }
    closedir(d);
}

static void take_sample(const fleet_opts *o, sample *s)
{
    memset(s, 0, sizeof *s);
    s->client_cpu = self_cpu_us();
    s->server_cpu = o->npids ? 0 : -1;
    s->server_sched = o->npids > 0;
    for (unsigned i = 0; i < o->npids; i++) {
        int64_t cpu = proc_cpu_us(o->server_pids[i], NULL), run = 0, wait = 0;
        if (cpu < 0 || s->server_cpu < 0)
            s->server_cpu = -1;
        else
            s->server_cpu += cpu;
        if (s->server_sched && proc_sched_us(o->server_pids[i], &run, &wait)) {
            s->server_run += run;
            s->server_wait += wait;
        } else {
            s->server_sched = false;
        }
    }
    s->client_sched = proc_sched_us((long)getpid(), &s->client_run, &s->client_wait);
    if (o->db_pid > 0)
        sample_db(s, o->db_pid);
}

/* The database processes' CPU (cpu true) or wait between samples a and b:
 * each process of b less what it had in a (all of it when it started
 * between them); -1 when b found none. */
static int64_t db_delta(const sample *a, const sample *b, bool cpu)
{
    if (!b->ndb)
        return -1;
    int64_t total = 0;
    for (size_t i = 0; i < b->ndb; i++) {
        int64_t v = cpu ? b->db[i].cpu : b->db[i].wait;
        for (size_t j = 0; j < a->ndb; j++)
            if (a->db[j].pid == b->db[i].pid) {
                v -= cpu ? a->db[j].cpu : a->db[j].wait;
                break;
            }
        total += v > 0 ? v : 0;
    }
    return total;
}

static void sleep_until(double t)
{
    for (double d; (d = t - now_s()) > 0;) {
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* ---- options ------------------------------------------------------------------ */

static int usage(const char *why)
{
    fprintf(stderr,
            "fleet: %s\n"
            "usage: fleet --url URL --app APP --mode checkin|get|post|register|history\n"
            "             --devices N [--first I] [--count N (register, history)]\n"
            "             [--concurrency C] [--threads T] [--seconds S] [--warmup S]\n"
            "             [--etag ETAG] [--channel NAME] [--server-pid PID]\n"
            "             [--db-pid PID] [--seq-base N] [--new-connections]\n"
            "  checkin, get: --etag is the ETag of timestamp.json (If-None-Match)\n"
            "  --url, --etag and --server-pid may be given up to 8 times (several\n"
            "  servers: the slots are spread over the URLs in turn)\n",
            why);
    return 2;
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !*s || *end || *s == '-' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_seconds(const char *s, double min, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !*s || *end || !(v >= min) || v > 86400)
        return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, fleet_opts *o)
{
    const char *mode = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--new-connections")) {
            o->new_connections = true;
            continue;
        }
        if (i + 1 >= argc)
            return usage("an option without its value, or an unknown argument");
        const char *v = argv[++i];
        uint64_t n = 0;
        bool ok = true;
        if (!strcmp(a, "--url")) {
            if (o->nurls == MAX_URLS)
                return usage("--url given more than 8 times");
            o->urls[o->nurls++] = v;
        }
        else if (!strcmp(a, "--app"))
            o->app = v;
        else if (!strcmp(a, "--channel"))
            o->channel = v;
        else if (!strcmp(a, "--etag")) {
            if (o->netags == MAX_URLS)
                return usage("--etag given more than 8 times");
            o->etags[o->netags++] = v;
        }
        else if (!strcmp(a, "--mode"))
            mode = v;
        else if (!strcmp(a, "--devices"))
            ok = parse_u64(v, 1, UINT32_MAX, &o->devices);
        else if (!strcmp(a, "--first"))
            ok = parse_u64(v, 0, UINT32_MAX, &o->first);
        else if (!strcmp(a, "--count"))
            ok = parse_u64(v, 1, UINT32_MAX, &o->count);
        else if (!strcmp(a, "--concurrency"))
            ok = parse_u64(v, 1, MAX_CONCURRENCY, &n) && (o->concurrency = (unsigned)n);
        else if (!strcmp(a, "--threads"))
            ok = parse_u64(v, 1, MAX_THREADS, &n) && (o->threads = (unsigned)n);
        else if (!strcmp(a, "--seconds"))
            ok = parse_seconds(v, 0.1, &o->seconds);
        else if (!strcmp(a, "--warmup"))
            ok = parse_seconds(v, 0, &o->warmup);
        else if (!strcmp(a, "--server-pid")) {
            if (o->npids == MAX_PIDS)
                return usage("--server-pid given more than 8 times");
            ok = parse_u64(v, 1, INT32_MAX, &n) && (o->server_pids[o->npids++] = (long)n);
        } else if (!strcmp(a, "--db-pid"))
            ok = parse_u64(v, 1, INT32_MAX, &n) && (o->db_pid = (long)n);
        else if (!strcmp(a, "--seq-base"))
            ok = parse_u64(v, 0, INT64_MAX / 2, &n) && ((o->seq_base = (int64_t)n), true);
        else
            return usage("unknown option");
        if (!ok)
            return usage("an option's value is not a number in its range");
    }
    if (!mode)
        return usage("--mode is required");
    size_t m = 0;
    while (m < sizeof mode_names / sizeof mode_names[0] && strcmp(mode, mode_names[m]))
        m++;
    if (m == sizeof mode_names / sizeof mode_names[0])
        return usage("--mode must be checkin, get, post, register or history");
    o->mode = (fleet_mode)m;
    if (!o->nurls || !o->app)
        return usage("--url and --app are required");
    for (unsigned i = 0; i < o->nurls; i++)
        if (!*o->urls[i])
            return usage("--url is empty");
    if ((o->mode == MODE_REGISTER || o->mode == MODE_HISTORY) && !o->count)
        return usage("register and history need --count");
    if (o->mode != MODE_REGISTER && !o->devices)
        return usage("--devices is required");
    if ((o->mode == MODE_CHECKIN || o->mode == MODE_GET) && !o->netags)
        return usage("checkin and get need --etag");
    if (o->netags > 1 && o->netags != o->nurls)
        return usage("--etag is given once, or once for each --url");
    for (unsigned i = 0; i < o->netags; i++)
        if (!*o->etags[i] || strlen(o->etags[i]) >= ETAG_MAX)
            return usage("--etag is empty or too long");
    if (o->concurrency < o->threads)
        return usage("--concurrency must be at least --threads");
    return 0;
}

int main(int argc, char **argv)
{
    fleet_opts o = {.channel = "stable", .concurrency = 32, .threads = 1, .seconds = 10};
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    if (!o.seq_base) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        o.seq_base = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "fleet: curl_global_init failed\n");
        return 1;
    }

    static fleet_shared sh;
    sh.o = &o;
    atomic_init(&sh.next, 0);
    /* register and history do a fixed amount of work, all of it measured */
    bool fixed = o.mode == MODE_REGISTER || o.mode == MODE_HISTORY;
    atomic_init(&sh.phase, fixed ? PHASE_MEASURE : PHASE_WARMUP);
    atomic_init(&sh.errors, 0);
    pthread_mutex_init(&sh.err_lock, NULL);
    for (unsigned u = 0; u < o.nurls; u++) {
        const char *url = o.urls[u];
        const char *slash = url[strlen(url) - 1] == '/' ? "" : "/";
        int n1 = snprintf(sh.get_url[u], sizeof sh.get_url[u],
                          "%s%sv1/apps/%s/metadata/timestamp.json", url, slash, o.app);
        int n2 = snprintf(sh.post_url[u], sizeof sh.post_url[u], "%s%sv1/apps/%s/events", url,
                          slash, o.app);
        if (n1 < 0 || (size_t)n1 >= sizeof sh.get_url[u] || n2 < 0 ||
            (size_t)n2 >= sizeof sh.post_url[u])
            return usage("--url is too long");
        const char *etag = o.netags ? o.etags[o.netags > 1 ? u : 0] : "";
        snprintf(sh.etag_header[u], sizeof sh.etag_header[u], "If-None-Match: %s", etag);
    }

    worker w[MAX_THREADS];
    memset(w, 0, sizeof w);
    bool ok = true;
    unsigned next_url = 0; /* slots take the URLs in turn, across threads */
    for (unsigned t = 0; t < o.threads && ok; t++) {
        worker *k = &w[t];
        k->sh = &sh;
        k->nslots = o.concurrency / o.threads + (t < o.concurrency % o.threads);
        k->slots = calloc(k->nslots, sizeof *k->slots);
        k->multi = curl_multi_init();
        ok = k->slots && k->multi;
        /* connections stay open for the slots to reuse */
        ok = ok && curl_multi_setopt(k->multi, CURLMOPT_MAXCONNECTS, (long)(2 * k->nslots)) ==
                       CURLM_OK;
        for (unsigned i = 0; ok && i < k->nslots; i++) {
            slot *s = &k->slots[i];
            s->url = next_url++ % o.nurls;
            s->body_cap =
                o.mode == MODE_HISTORY ? HISTORY_BATCH * HISTORY_EVENT_MAX + 256 : BODY_MAX;
            s->body = malloc(s->body_cap);
            s->get_headers = curl_slist_append(NULL, sh.etag_header[s->url]);
            s->post_headers = curl_slist_append(NULL, "Content-Type: application/json");
            if (s->post_headers)
                s->post_headers = curl_slist_append(s->post_headers, "Expect:");
            ok = s->body && s->get_headers && s->post_headers &&
                 setup_handle(&s->get, s, sh.get_url[s->url], s->get_headers) &&
                 setup_handle(&s->post, s, sh.post_url[s->url], s->post_headers) &&
                 curl_easy_setopt(s->post, CURLOPT_POST, 1L) == CURLE_OK &&
                 (!o.new_connections ||
                  curl_easy_setopt(s->post, CURLOPT_FORBID_REUSE, 1L) == CURLE_OK);
        }
    }
    if (!ok) {
        fprintf(stderr, "fleet: could not set up libcurl handles\n");
        return 1;
    }

    double t0 = now_s();
    static sample a, b; /* large: the database's processes */
    take_sample(&o, &a);
    pthread_t tid[MAX_THREADS];
    unsigned started = 0;
    for (; started < o.threads; started++)
        if (pthread_create(&tid[started], NULL, run_worker, &w[started])) {
            record_error(&sh, "could not start a thread");
            atomic_store(&sh.phase, PHASE_DRAIN);
            break;
        }
    double t_measure = t0, t_end = 0;
    if (!fixed) {
        t_measure = t0 + o.warmup;
        sleep_until(t_measure);
        take_sample(&o, &a);
        atomic_store(&sh.phase, PHASE_MEASURE);
        t_measure = now_s();
        sleep_until(t_measure + o.seconds);
        atomic_store(&sh.phase, PHASE_DRAIN);
        t_end = now_s();
        take_sample(&o, &b);
    }
    for (unsigned t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    if (fixed) {
        t_end = now_s();
        take_sample(&o, &b);
    }

    lat_list total = {0}, get = {0}, post = {0};
    uint64_t done = 0, done_by_url[MAX_URLS] = {0};
    for (unsigned t = 0; t < o.threads; t++) {
        done += w[t].done;
        for (unsigned u = 0; u < o.nurls; u++)
            done_by_url[u] += w[t].done_by_url[u];
        if (!merge(&total, &w[t].total) || !merge(&get, &w[t].get) || !merge(&post, &w[t].post)) {
            fprintf(stderr, "fleet: out of memory\n");
            return 1;
        }
    }
    double secs = t_end - t_measure;
    uint64_t errors = atomic_load(&sh.errors);
    uint32_t p50 = percentile(&total, 50, false), p90 = percentile(&total, 90, true),
             p99 = percentile(&total, 99, true), pmax = percentile(&total, 100, true);
    uint32_t g50 = percentile(&get, 50, false), g99 = percentile(&get, 99, true);
    uint32_t q50 = percentile(&post, 50, false), q99 = percentile(&post, 99, true);
    printf("RESULT mode=%s devices=%" PRIu64 " concurrency=%u threads=%u done=%" PRIu64
           " seconds=%.3f rate=%.1f p50_us=%u p90_us=%u p99_us=%u max_us=%u get_p50_us=%u"
           " post_p50_us=%u get_p99_us=%u post_p99_us=%u errors=%" PRIu64
           " client_cpu_us=%" PRId64 " server_cpu_us=%" PRId64 " server_wait_us=%" PRId64
           " client_wait_us=%" PRId64 " urls=%u done_by_url=",
           mode_names[o.mode], o.mode == MODE_REGISTER ? o.first + o.count : o.devices,
           o.concurrency, o.threads, done, secs, secs > 0 ? (double)done / secs : 0.0, p50, p90,
           p99, pmax, g50, q50, g99, q99, errors, b.client_cpu - a.client_cpu,
           a.server_cpu >= 0 && b.server_cpu >= 0 ? b.server_cpu - a.server_cpu : -1,
           a.server_sched && b.server_sched ? b.server_wait - a.server_wait : -1,
           a.client_sched && b.client_sched ? b.client_wait - a.client_wait : -1, o.nurls);
    for (unsigned u = 0; u < o.nurls; u++)
        printf("%s%" PRIu64, u ? "," : "", done_by_url[u]);
    printf(" db_cpu_us=%" PRId64 " db_wait_us=%" PRId64 "\n", db_delta(&a, &b, true),
           db_delta(&a, &b, false));
    for (unsigned i = 0; i < sh.nshown; i++)
        fprintf(stderr, "fleet: error: %s\n", sh.shown[i]);
    if (errors > sh.nshown)
        fprintf(stderr, "fleet: ... %" PRIu64 " errors in all\n", errors);

    for (unsigned t = 0; t < o.threads; t++) {
        for (unsigned i = 0; i < w[t].nslots; i++) {
            curl_easy_cleanup(w[t].slots[i].get);
            curl_easy_cleanup(w[t].slots[i].post);
            curl_slist_free_all(w[t].slots[i].get_headers);
            curl_slist_free_all(w[t].slots[i].post_headers);
            free(w[t].slots[i].body);
        }
        curl_multi_cleanup(w[t].multi);
        free(w[t].slots);
        free(w[t].total.v);
        free(w[t].get.v);
        free(w[t].post.v);
    }
    free(total.v);
    free(get.v);
    free(post.v);
    curl_global_cleanup();
    return errors || fflush(stdout) ? 1 : 0;
}
