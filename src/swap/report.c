/*
 * report.c — telling the agent that a release failed in this process (see
 * "Reporting to the agent" in include/livepush/swap.h).
 *
 * When a version that the host loaded from a release of the followed
 * install root is rolled back by its probation, slot.c queues a report: the
 * release id, the `current` target that must still show it, and the whole
 * HTTP/1.0 request, built once (the same bytes at every attempt).  The tick
 * works on the oldest report only, and never waits:
 *
 *   idle       before an attempt (not before next_ms): `current` is read; if
 *              it points elsewhere the report is dropped; else a non-blocking
 *              unix socket connects to the agent's control socket (at once,
 *              or it fails: no agent, a full backlog) and the request is
 *              written (what the socket buffer does not take is written at
 *              later ticks);
 *   in flight  later ticks read what has arrived; the agent closes the
 *              connection after its answer (HTTP/1.0), so the end of the
 *              stream ends the answer; at the deadline the attempt fails.
 *
 * A failed attempt is a REPORT_FAILED event and the next one waits 1 s, then
 * twice as long each time up to 60 s; a 2xx answer is a REPORTED event and a
 * 4xx a final REPORT_FAILED (the agent will not act on it: the release is
 * not current any more, there is nothing to go back to); both end the
 * report.  The socket of the attempt in flight is published in report_fd so
 * that the tick thread's poll wakes on the answer.
 *
 * Locks: the list and report_fd under host->mu (queueing appends, and may
 * happen in any thread with a slot's op_mu held); the pass holds report_mu
 * (trylock: one thread at a time, a second one leaves at once), and only the
 * pass changes a report's own fields or removes it.
 */
#include "swap/swap_priv.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define REASON_MAX 1000u
#define BACKOFF_FIRST_MS 1000u
#define BACKOFF_MAX_MS 60000u

/* Printable ASCII only (the agent takes at most 1024 bytes of text). */
static void clean_text(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    for (; src && *src && n + 1 < cap; src++)
        dst[n++] = (unsigned char)*src >= 0x20 && (unsigned char)*src < 0x7f ? *src : '?';
    dst[n] = '\0';
}

void lp_swap_report_queue(lp_swap_host *h, const lp_swap_slot *s, const lp_swap_version *v,
                          const char *message)
{
    if (!h->agent_socket || !v->release)
        return;
    lp_swap_report *r = calloc(1, sizeof *r);
    char reason[REASON_MAX + 1], raw[REASON_MAX + 64];
    snprintf(raw, sizeof raw, "live swap in process %d: %s", (int)getpid(), message);
    clean_text(reason, sizeof reason, raw);
    json_t *j = json_pack("{s:I,s:s}", "release", (json_int_t)v->release, "reason", reason);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    char *req = NULL;
    int n = -1;
    if (r && body)
        n = asprintf(&req,
                     "POST /v1/release-failed HTTP/1.0\r\nHost: localhost\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     strlen(body), body);
    free(body);
    if (n < 0) {
        free(r);
        lp_swap_event ev = {.kind = LP_SWAP_EV_REPORT_FAILED, .slot = s->name,
                            .version = v->label, .other = "", .path = "",
                            .release = v->release,
                            .message = "the report to the agent was dropped: out of memory"};
        lp_swap_emit(h, &ev);
        return;
    }
    r->release = v->release;
    snprintf(r->target, sizeof r->target, "releases/%llu", (unsigned long long)v->release);
    snprintf(r->slot, sizeof r->slot, "%s", s->name);
    snprintf(r->version, sizeof r->version, "%s", v->label);
    r->request = req;
    r->request_len = (size_t)n;
    r->fd = -1;
    r->backoff_ms = BACKOFF_FIRST_MS;
    pthread_mutex_lock(&h->mu);
    bool full = h->nreports >= LP_SWAP_REPORTS_MAX;
    if (!full) {
        lp_swap_report **pp = &h->reports;
        while (*pp)
            pp = &(*pp)->next;
        *pp = r;
        h->nreports++;
    }
    pthread_mutex_unlock(&h->mu);
    if (full) {
        char msg[LP_ERROR_MSG_MAX];
        snprintf(msg, sizeof msg,
                 "the report of release %llu to the agent was dropped: %u reports are waiting "
                 "already",
                 (unsigned long long)v->release, LP_SWAP_REPORTS_MAX);
        lp_swap_event ev = {.kind = LP_SWAP_EV_REPORT_FAILED, .slot = s->name,
                            .version = v->label, .other = "", .path = "",
                            .release = v->release, .message = msg};
        lp_swap_emit(h, &ev);
        free(req);
        free(r);
        return;
    }
    lp_swap_wake(h);
}

static void report_event(lp_swap_host *h, const lp_swap_report *r, lp_swap_event_kind kind,
                         bool retry, const char *msg)
{
    lp_swap_event ev = {.kind = kind, .slot = r->slot, .version = r->version, .other = "",
                        .path = "", .release = r->release, .message = msg,
                        .will_retry = retry ? 1 : 0};
    lp_swap_emit(h, &ev);
}

static void close_attempt(lp_swap_host *h, lp_swap_report *r)
{
    if (r->fd < 0)
        return;
    pthread_mutex_lock(&h->mu);
    if (h->report_fd == r->fd)
        h->report_fd = -1;
    pthread_mutex_unlock(&h->mu);
    close(r->fd);
    r->fd = -1;
    r->sent = 0;
    r->answer_len = 0;
}

/* Ends the report (it is the list's head). */
static void finish(lp_swap_host *h, lp_swap_report *r)
{
    close_attempt(h, r);
    pthread_mutex_lock(&h->mu);
    for (lp_swap_report **pp = &h->reports; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            h->nreports--;
            break;
        }
    pthread_mutex_unlock(&h->mu);
    free(r->request);
    free(r);
}

/* An attempt failed: event, back-off. */
static void attempt_failed(lp_swap_host *h, lp_swap_report *r, int64_t now, const char *why)
{
    close_attempt(h, r);
    r->attempts++;
    r->next_ms = now + r->backoff_ms;
    char msg[LP_ERROR_MSG_MAX];
    snprintf(msg, sizeof msg,
             "slot %s: reporting release %llu (version %s rolled back) to the agent at %s: %s; "
             "trying again in %u ms (attempt %u)",
             r->slot, (unsigned long long)r->release, r->version, h->agent_socket, why,
             r->backoff_ms, r->attempts);
    report_event(h, r, LP_SWAP_EV_REPORT_FAILED, true, msg);
    r->backoff_ms = r->backoff_ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* The report ends without reaching the agent. */
static void give_up(lp_swap_host *h, lp_swap_report *r, const char *why)
{
    char msg[LP_ERROR_MSG_MAX];
    snprintf(msg, sizeof msg, "slot %s: release %llu (version %s rolled back) not reported to "
                              "the agent at %s: %s",
             r->slot, (unsigned long long)r->release, r->version, h->agent_socket, why);
    report_event(h, r, LP_SWAP_EV_REPORT_FAILED, false, msg);
    finish(h, r);
}

/* Starts an attempt; false when it failed (already handled). */
static bool start_attempt(lp_swap_host *h, lp_swap_report *r, int64_t now)
{
    char link[LP_SWAP_PATH_MAX], target[LP_SWAP_PATH_MAX];
    snprintf(link, sizeof link, "%s/current", h->install_root);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n >= 0) {
        target[n] = '\0';
        if (strcmp(target, r->target) != 0) {
            char why[LP_ERROR_MSG_MAX / 2];
            snprintf(why, sizeof why, "the install's current release is %.200s now, not %s",
                     target, r->target);
            give_up(h, r, why);
            return false;
        }
    }
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    size_t plen = strlen(h->agent_socket);
    if (plen >= sizeof un.sun_path) {
        give_up(h, r, "the socket path is longer than a unix socket path may be");
        return false;
    }
    memcpy(un.sun_path, h->agent_socket, plen + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        char why[128];
        snprintf(why, sizeof why, "socket: %s", strerror(errno));
        attempt_failed(h, r, now, why);
        return false;
    }
    if (connect(fd, (const struct sockaddr *)&un, sizeof un) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        char why[160];
        snprintf(why, sizeof why, "cannot connect: %s%s", strerror(e),
                 e == ENOENT || e == ECONNREFUSED ? " (is the agent running?)" : "");
        attempt_failed(h, r, now, why);
        return false;
    }
    r->fd = fd;
    r->sent = 0;
    r->answer_len = 0;
    r->deadline_ms = now + (int64_t)h->report_timeout_ms;
    pthread_mutex_lock(&h->mu);
    h->report_fd = fd;
    pthread_mutex_unlock(&h->mu);
    return true;
}

/* The answer as a message for the event; *status gets the HTTP status
 * (0: not an HTTP answer). */
static void read_answer(lp_swap_report *r, int *status, char *out, size_t cap)
{
    r->answer[r->answer_len < sizeof r->answer ? r->answer_len : sizeof r->answer - 1] = '\0';
    *status = 0;
    int st = 0;
    if (sscanf(r->answer, "HTTP/1.%*1[01] %3d", &st) == 1 && st >= 100 && st <= 599)
        *status = st;
    const char *body = strstr(r->answer, "\r\n\r\n");
    body = body ? body + 4 : "";
    json_t *j = json_loads(body, 0, NULL);
    const char *outcome = json_string_value(json_object_get(j, "outcome"));
    const char *emsg =
        json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    json_t *cur = json_object_get(j, "current");
    char text[LP_ERROR_MSG_MAX / 2];
    if (outcome && json_is_integer(cur))
        snprintf(text, sizeof text, "%s (current release: %lld)", outcome,
                 (long long)json_integer_value(cur));
    else if (outcome)
        snprintf(text, sizeof text, "%s", outcome);
    else if (emsg)
        snprintf(text, sizeof text, "%s", emsg);
    else
        snprintf(text, sizeof text, "%.200s", body);
    json_decref(j);
    clean_text(out, cap, text);
}

/* Moves the attempt in flight on; true when the report is finished or
 * failed (the pass may look at the next one). */
static bool progress(lp_swap_host *h, lp_swap_report *r, int64_t now)
{
    while (r->sent < r->request_len) {
        ssize_t w = send(r->fd, r->request + r->sent, r->request_len - r->sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            r->sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        char why[128];
        snprintf(why, sizeof why, "sending the report: %s", strerror(w < 0 ? errno : EPIPE));
        attempt_failed(h, r, now, why);
        return true;
    }
    bool eof = false;
    while (r->sent == r->request_len) {
        if (r->answer_len >= sizeof r->answer - 1) {
            eof = true; /* enough to read the status and a message */
            break;
        }
        ssize_t n = recv(r->fd, r->answer + r->answer_len, sizeof r->answer - 1 - r->answer_len,
                         MSG_DONTWAIT);
        if (n > 0) {
            r->answer_len += (size_t)n;
            continue;
        }
        if (n == 0) {
            eof = true;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        char why[128];
        snprintf(why, sizeof why, "reading the answer: %s", strerror(errno));
        attempt_failed(h, r, now, why);
        return true;
    }
    if (!eof) {
        if (now < r->deadline_ms)
            return false;
        char why[128];
        snprintf(why, sizeof why, "no answer within %u ms", h->report_timeout_ms);
        attempt_failed(h, r, now, why);
        return true;
    }
    int status;
    char text[LP_ERROR_MSG_MAX / 2];
    read_answer(r, &status, text, sizeof text);
    char msg[LP_ERROR_MSG_MAX];
    if (status >= 200 && status < 300) {
        snprintf(msg, sizeof msg,
                 "slot %s: release %llu (version %s rolled back) reported to the agent at %s: "
                 "%s",
                 r->slot, (unsigned long long)r->release, r->version, h->agent_socket, text);
        report_event(h, r, LP_SWAP_EV_REPORTED, false, msg);
        finish(h, r);
    } else if (status >= 400 && status < 500) {
        char why[LP_ERROR_MSG_MAX / 2 + 32];
        snprintf(why, sizeof why, "the agent answered %d: %s", status, text);
        give_up(h, r, why);
    } else {
        char why[LP_ERROR_MSG_MAX / 2 + 32];
        if (status)
            snprintf(why, sizeof why, "the agent answered %d: %s", status, text);
        else
            snprintf(why, sizeof why, "not an HTTP answer: %s", text);
        attempt_failed(h, r, now, why);
    }
    return true;
}

void lp_swap_report_pass(lp_swap_host *h)
{
    if (!h->agent_socket || pthread_mutex_trylock(&h->report_mu) != 0)
        return;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        lp_swap_report *r = h->reports;
        pthread_mutex_unlock(&h->mu);
        if (!r)
            break;
        int64_t now = lp_swap_now_ms();
        if (r->fd < 0) {
            if (now < r->next_ms)
                break;
            if (!start_attempt(h, r, now))
                continue; /* dropped (look at the next) or failed (waits) */
        }
        /* A failed attempt leaves the report at the head with a later
         * next_ms: the loop stops there at its next turn. */
        if (!progress(h, r, now))
            break;
    }
    pthread_mutex_unlock(&h->report_mu);
}

void lp_swap_report_drop_all(lp_swap_host *h)
{
    pthread_mutex_lock(&h->mu);
    lp_swap_report *r = h->reports;
    h->reports = NULL;
    h->nreports = 0;
    h->report_fd = -1;
    pthread_mutex_unlock(&h->mu);
    while (r) {
        lp_swap_report *next = r->next;
        if (r->fd >= 0)
            close(r->fd);
        free(r->request);
        free(r);
        r = next;
    }
}
