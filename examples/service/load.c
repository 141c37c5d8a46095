/*
 * load.c — a load client for the example service (server.c): it opens many
 * short connections and some long ones against one address and counts every
 * connection or answer that fails, so that a restart can be shown to drop
 * nothing (tests/e2e/run_restart.sh, bench/swap/run).
 *
 *   load --connect ADDR [--short N] [--long N] [--duration SECONDS]
 *        [--requests N] [--lines N] [--line-interval MS] [--timeout MS]
 *
 *   --short N        threads each doing HTTP requests one after the other,
 *                    one connection per request: connect, "GET /<n>
 *                    HTTP/1.0", read the whole answer, check it is a 200
 *                    whose body is "<version> /<n>" (default 8)
 *   --long N         threads each holding a session: connect, send --lines
 *                    lines ("ping <k>", --line-interval ms apart), check each
 *                    answer is "<version> ping <k>", close, start again
 *                    (default 2)
 *   --duration S     stop after S seconds (default 10; 0: only on SIGINT or
 *                    SIGTERM, or when --requests are done)
 *   --requests N     each short thread stops after N requests (default: no
 *                    limit)
 *   --lines N        lines per session (default 20)
 *   --line-interval  milliseconds between the lines of a session (default 50)
 *   --timeout MS     a connect, send or receive taking longer fails (5000)
 *
 * On SIGINT or SIGTERM, or at the end of the duration, every thread
 * finishes what it is doing (a session is cut short after its current line)
 * and one line of JSON goes to stdout:
 *
 *   {"seconds":10.0,"requests":51234,"ok":51234,"failed":0,
 *    "sessions":40,"mixed_sessions":0,"versions":{"v1":30000,"v2":21234},
 *    "latency_ms":{"p50":0.21,"p99":1.9,"max":14.2},"errors":[]}
 *
 * requests counts short requests and session lines; versions counts the
 * answers by the version they carry; mixed_sessions counts sessions whose
 * answers came from two versions (a connection stays with the process
 * that accepted it, so it must be 0); errors holds the first few failures'
 * messages.  Exit status 0 when nothing failed, 1 otherwise, 2 usage.
 *
 * Threads share nothing while they run: each has its own counters and
 * latencies, merged once they are joined; the stop flag is an atomic in
 * the shared settings.  Signals are blocked in every thread and taken by
 * the main thread with sigtimedwait.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 512
#define MAX_VERSIONS 16
#define MAX_ERRORS 4
#define MAX_LATENCIES (4u << 20)

typedef struct settings {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    unsigned long requests, lines, line_interval_ms, timeout_ms;
    atomic_bool stop;
} settings;

typedef struct version_count {
    char name[65];
    unsigned long count;
} version_count;

typedef struct worker {
    const settings *set;
    bool is_long;
    int id;
    pthread_t thread;
    atomic_bool done;
    unsigned long requests, ok, failed, sessions, mixed;
    version_count versions[MAX_VERSIONS];
    size_t nversions;
    uint32_t *lat_us; /* one per successful request or line */
    size_t nlat, cap_lat;
    char errors[MAX_ERRORS][160];
    size_t nerrors;
} worker;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(worker *w, const char *what, int e)
{
    w->failed++;
    if (w->nerrors < MAX_ERRORS)
        snprintf(w->errors[w->nerrors++], sizeof w->errors[0], "%s %d: %s%s%s",
                 w->is_long ? "session thread" : "request thread", w->id, what, e ? ": " : "",
                 e ? strerror(e) : "");
}

static void count_version(worker *w, const char *v, size_t n)
{
    if (n > 64)
        n = 64;
    for (size_t i = 0; i < w->nversions; i++)
        if (strlen(w->versions[i].name) == n && !memcmp(w->versions[i].name, v, n)) {
            w->versions[i].count++;
            return;
        }
    if (w->nversions < MAX_VERSIONS) {
        memcpy(w->versions[w->nversions].name, v, n);
        w->versions[w->nversions].name[n] = '\0';
        w->versions[w->nversions++].count = 1;
    }
}

static void record_latency(worker *w, double seconds)
{
    if (w->nlat == w->cap_lat) {
        size_t cap = w->cap_lat ? w->cap_lat * 2 : 4096;
        if (cap > MAX_LATENCIES)
            return;
        uint32_t *p = realloc(w->lat_us, cap * sizeof *p);
        if (!p)
            return;
        w->lat_us = p, w->cap_lat = cap;
    }
    double us = seconds * 1e6;
    w->lat_us[w->nlat++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

static int dial(const settings *set, int *err)
{
    int fd = socket(set->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    struct timeval tv = {.tv_sec = (time_t)(set->timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(set->timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)&set->addr, set->addr_len) != 0) {
        *err = errno;
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *p, size_t n, int *err)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            *err = w < 0 ? errno : EPIPE;
            return false;
        }
        p += w, n -= (size_t)w;
    }
    return true;
}

static void one_request(worker *w, unsigned long n)
{
    const settings *set = w->set;
    double t0 = now_s();
    int e = 0;
    int fd = dial(set, &e);
    if (fd < 0) {
        fail(w, "connect", e);
        return;
    }
    char req[96], path[48], buf[1024];
    snprintf(path, sizeof path, "/%d-%lu", w->id, n);
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", path);
    size_t len = 0;
    if (!send_all(fd, req, (size_t)rl, &e)) {
        close(fd);
        fail(w, "send", e);
        return;
    }
    for (;;) {
        ssize_t r = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            e = errno;
            close(fd);
            fail(w, e == EAGAIN ? "answer timed out" : "recv", e == EAGAIN ? 0 : e);
            return;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == sizeof buf - 1)
            break;
    }
    close(fd);
    buf[len] = '\0';
    const char *body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0 || !body) {
        fail(w, len ? "not a 200 answer" : "connection closed without an answer", 0);
        return;
    }
    body += 4;
    const char *sp = strchr(body, ' ');
    size_t pl = strlen(path);
    if (!sp || strncmp(sp + 1, path, pl) != 0 || sp[1 + pl] != '\n') {
        fail(w, "answer for another request", 0);
        return;
    }
    w->ok++;
    count_version(w, body, (size_t)(sp - body));
    record_latency(w, now_s() - t0);
}

static void one_session(worker *w)
{
    const settings *set = w->set;
    int e = 0;
    int fd = dial(set, &e);
    if (fd < 0) {
        w->requests++;
        fail(w, "connect", e);
        return;
    }
    w->sessions++;
    char first[65] = "", in[512];
    size_t have = 0;
    bool mixed = false;
    for (unsigned long k = 1; k <= set->lines && !atomic_load(&w->set->stop); k++) {
        char line[64];
        int ll = snprintf(line, sizeof line, "ping %lu\n", k);
        double t0 = now_s();
        w->requests++;
        if (!send_all(fd, line, (size_t)ll, &e)) {
            fail(w, "session send", e);
            break;
        }
        char *nl = NULL;
        while (!(nl = memchr(in, '\n', have))) {
            ssize_t r = recv(fd, in + have, sizeof in - have, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0 || have + (size_t)r >= sizeof in) {
                e = r < 0 ? errno : 0;
                break;
            }
            have += (size_t)r;
        }
        if (!nl) {
            fail(w, e == EAGAIN ? "session answer timed out"
                    : e       ? "session recv"
                              : "session closed by the server",
                 e == EAGAIN ? 0 : e);
            break;
        }
        *nl = '\0';
        const char *sp = strchr(in, ' ');
        if (!sp || strncmp(sp + 1, line, (size_t)ll - 1) != 0 || sp[ll] != '\0') {
            fail(w, "session answer for another line", 0);
            break;
        }
        size_t vl = (size_t)(sp - in);
        if (!first[0] && vl < sizeof first) {
            memcpy(first, in, vl);
            first[vl] = '\0';
        } else if (strlen(first) != vl || memcmp(first, in, vl) != 0) {
            mixed = true;
        }
        w->ok++;
        count_version(w, in, vl);
        record_latency(w, now_s() - t0);
        size_t used = (size_t)(nl - in) + 1;
        memmove(in, in + used, have - used);
        have -= used;
        if (k < set->lines && set->line_interval_ms) {
            struct timespec ts = {.tv_sec = (time_t)(set->line_interval_ms / 1000),
                                  .tv_nsec = (long)(set->line_interval_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    close(fd);
    if (mixed)
        w->mixed++;
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    unsigned long n = 0;
    while (!atomic_load(&w->set->stop)) {
        if (w->is_long) {
            one_session(w);
        } else {
            if (w->set->requests && n >= w->set->requests)
                break;
            w->requests++;
            one_request(w, ++n);
        }
    }
    atomic_store(&w->done, true);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static bool parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > max || s[0] == '-' || s[0] == '+')
        return false;
    *out = v;
    return true;
}

static bool parse_addr(const char *s, settings *set)
{
    char host[64];
    const char *port;
    memset(&set->addr, 0, sizeof set->addr);
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
            return false;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host)
            return false;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    unsigned long p;
    if (!parse_ulong(port, 65535, &p) || p == 0)
        return false;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&set->addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&set->addr;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)p);
        set->addr_len = sizeof *in4;
        return true;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)p);
        set->addr_len = sizeof *in6;
        return true;
    }
    return false;
}

static int usage(void)
{
    fprintf(stderr, "usage: load --connect ADDR [--short N] [--long N] [--duration SECONDS]\n"
                    "            [--requests N] [--lines N] [--line-interval MS] [--timeout MS]\n"
                    "(see the comment at the top of examples/service/load.c)\n");
    return 2;
}

static void json_string_out(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

int main(int argc, char **argv)
{
    settings *set = calloc(1, sizeof *set);
    if (!set)
        return 1;
    unsigned long nshort = 8, nlong = 2, duration = 10;
    set->lines = 20, set->line_interval_ms = 50, set->timeout_ms = 5000;
    bool have_addr = false;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = v != NULL;
        if (!strcmp(a, "--connect"))
            ok = ok && (have_addr = parse_addr(v, set));
        else if (!strcmp(a, "--short"))
            ok = ok && parse_ulong(v, MAX_THREADS / 2, &nshort);
        else if (!strcmp(a, "--long"))
            ok = ok && parse_ulong(v, MAX_THREADS / 2, &nlong);
        else if (!strcmp(a, "--duration"))
            ok = ok && parse_ulong(v, 86400, &duration);
        else if (!strcmp(a, "--requests"))
            ok = ok && parse_ulong(v, 100000000, &set->requests);
        else if (!strcmp(a, "--lines"))
            ok = ok && parse_ulong(v, 1000000, &set->lines) && set->lines > 0;
        else if (!strcmp(a, "--line-interval"))
            ok = ok && parse_ulong(v, 60000, &set->line_interval_ms);
        else if (!strcmp(a, "--timeout"))
            ok = ok && parse_ulong(v, 600000, &set->timeout_ms) && set->timeout_ms > 0;
        else
            ok = false;
        if (!ok)
            return usage();
    }
    if (!have_addr || nshort + nlong == 0)
        return usage();
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    atomic_init(&set->stop, false);
    size_t n = nshort + nlong;
    worker *ws = calloc(n, sizeof *ws);
    if (!ws)
        return 1;
    double t0 = now_s();
    size_t started = 0;
    for (size_t i = 0; i < n; i++) {
        ws[i].set = set;
        atomic_init(&ws[i].done, false);
        ws[i].is_long = i >= nshort;
        ws[i].id = (int)i;
        if (pthread_create(&ws[i].thread, NULL, run_worker, &ws[i]) != 0) {
            fprintf(stderr, "load: cannot start thread %zu\n", i);
            atomic_store(&set->stop, true);
            break;
        }
        started++;
    }
    /* Wait for a signal, the end of the duration, or (with --requests and
     * no session threads) the request threads to finish. */
    for (;;) {
        if (atomic_load(&set->stop))
            break;
        if (duration && now_s() - t0 >= (double)duration)
            break;
        if (set->requests && nlong == 0) {
            bool all = true;
            for (size_t i = 0; i < started; i++)
                all = all && atomic_load(&ws[i].done);
            if (all)
                break;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 50000000L};
        if (sigtimedwait(&sigs, NULL, &ts) >= 0)
            break;
    }
    atomic_store(&set->stop, true);
    worker total = {0};
    size_t nlat = 0;
    for (size_t i = 0; i < started; i++) {
        pthread_join(ws[i].thread, NULL);
        nlat += ws[i].nlat;
    }
    double seconds = now_s() - t0;
    uint32_t *lat = malloc((nlat ? nlat : 1) * sizeof *lat);
    size_t at = 0;
    for (size_t i = 0; i < started; i++) {
        worker *w = &ws[i];
        total.requests += w->requests, total.ok += w->ok, total.failed += w->failed;
        total.sessions += w->sessions, total.mixed += w->mixed;
        for (size_t k = 0; k < w->nversions; k++) {
            size_t j = 0;
            while (j < total.nversions && strcmp(total.versions[j].name, w->versions[k].name))
                j++;
            if (j == total.nversions && j < MAX_VERSIONS)
                total.versions[total.nversions++] = (version_count){.count = 0};
            if (j < MAX_VERSIONS) {
                snprintf(total.versions[j].name, sizeof total.versions[j].name, "%s",
                         w->versions[k].name);
                total.versions[j].count += w->versions[k].count;
            }
        }
        for (size_t k = 0; k < w->nerrors && total.nerrors < MAX_ERRORS; k++)
            memcpy(total.errors[total.nerrors++], w->errors[k], sizeof w->errors[k]);
        if (lat)
            memcpy(lat + at, w->lat_us, w->nlat * sizeof *lat);
        at += w->nlat;
        free(w->lat_us);
    }
    double p50 = 0, p99 = 0, max = 0;
    if (lat && nlat) {
        qsort(lat, nlat, sizeof *lat, cmp_u32);
        p50 = lat[nlat / 2] / 1000.0;
        p99 = lat[(nlat * 99) / 100 < nlat ? (nlat * 99) / 100 : nlat - 1] / 1000.0;
        max = lat[nlat - 1] / 1000.0;
    }
    printf("{\"seconds\":%.3f,\"requests\":%lu,\"ok\":%lu,\"failed\":%lu,\"sessions\":%lu,"
           "\"mixed_sessions\":%lu,\"versions\":{",
           seconds, total.requests, total.ok, total.failed, total.sessions, total.mixed);
    for (size_t j = 0; j < total.nversions; j++) {
        printf("%s", j ? "," : "");
        json_string_out(total.versions[j].name);
        printf(":%lu", total.versions[j].count);
    }
    printf("},\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},\"errors\":[", p50, p99,
           max);
    for (size_t j = 0; j < total.nerrors; j++) {
        printf("%s", j ? "," : "");
        json_string_out(total.errors[j]);
    }
    printf("]}\n");
    free(lat);
    free(ws);
    free(set);
    return total.failed ? 1 : 0;
}
