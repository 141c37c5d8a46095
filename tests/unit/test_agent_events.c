/*
 * test_agent_events.c — the on-disk telemetry queue and its batches.
 *
 * Against the test server (tests/support/httpd.c), which records POST
 * bodies and answers a chosen status: events survive a reopen, keep their
 * order, carry the agreed body, are removed only after a 2xx answer (a 503
 * or a refused connection keeps them), batches are bounded, sequence
 * numbers never repeat across reopen even after everything was sent (nor
 * after a crash between taking a number and writing the event), a full
 * queue drops the oldest and reports the running total (also in a batch
 * without events), values are normalised to what the server accepts, a
 * damaged event file is dropped and counted, the figures of a download are
 * sent as fields while an event file written before they existed is read
 * and sent unchanged, a batch the server refuses for
 * its content is dropped instead of blocking the queue, a static mirror
 * (a 404/405 and the export's mirror.json) is recognised and said once
 * while the events stay queued, and the device token is sent.
 *
 * Against the real server (tests/support/apitest.h): the batch is stored,
 * read back through the management API field by field (figures too), and a batch sent
 * again is counted as duplicates.
 */
#include "agent/net.h"
#include "apitest.h"
#include "core/file.h"
#include "httpd.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#define DEVICE "0123456789abcdef0123456789abcdef"
#define EVENTS_PATH "/v1/apps/demo/events"

typedef struct world {
    char *dir, *events;
    lp_test_httpd *httpd;
    unsigned posts; /* bodies consumed so far */
} world;

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    assert_non_null(w->dir = lp_test_tmpdir("agentevents"));
    w->events = lp_test_join(w->dir, "state/events");
    char *www = lp_test_join(w->dir, "www");
    assert_int_equal(lp_file_mkdirs(www, 0755, NULL), LP_OK);
    assert_non_null(w->httpd = lp_test_httpd_start(www));
    free(www);
    lp_test_httpd_set_post(w->httpd, EVENTS_PATH, 200);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    lp_test_httpd_stop(w->httpd);
    lp_test_rmtree(w->dir);
    free(w->dir);
    free(w->events);
    free(w);
    return 0;
}

static lp_net *open_net_at(world *w, const char *url, const char *token)
{
    char *st = lp_test_join(w->dir, "state");
    lp_net_config c = {.server_url = url, .app = "demo", .state_dir = st,
                       .attempts = 1, .device_token = token};
    c.http.connect_timeout_ms = 2000;
    lp_net *n = NULL;
    lp_error err;
    if (lp_net_open(&c, &n, &err))
        fail_msg("net: %s", err.msg);
    free(st);
    return n;
}

static lp_net *open_net(world *w)
{
    return open_net_at(w, lp_test_httpd_url(w->httpd), NULL);
}

static lp_events *open_queue(world *w, uint32_t max)
{
    lp_events *q = NULL;
    lp_error err;
    if (lp_events_open(w->events, max, &q, &err))
        fail_msg("open queue: %s", err.msg);
    return q;
}

static void add(lp_events *q, lp_event_type type, const char *version, uint64_t code,
                const char *reason)
{
    lp_event e = {.type = type, .version = version, .version_code = code, .reason = reason,
                  .duration_ms = -1, .at = 1700000000};
    lp_error err;
    if (lp_events_add(q, &e, &err))
        fail_msg("add: %s", err.msg);
}

static size_t pending(lp_events *q, uint64_t *dropped)
{
    size_t n = 0;
    uint64_t d = 0;
    lp_error err;
    if (lp_events_pending(q, &n, &d, &err))
        fail_msg("pending: %s", err.msg);
    if (dropped)
        *dropped = d;
    return n;
}

/* The next recorded POST body, parsed. */
static json_t *next_post(world *w)
{
    char *body = lp_test_httpd_post_body(w->httpd, EVENTS_PATH, w->posts);
    if (!body)
        fail_msg("no POST number %u", w->posts);
    w->posts++;
    json_error_t je;
    json_t *j = json_loads(body, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        fail_msg("POST body is not JSON: %s: %s", je.text, body);
    free(body);
    return j;
}

static int64_t seq_at(const json_t *batch, size_t i)
{
    return json_integer_value(json_object_get(json_array_get(json_object_get(batch, "events"), i),
                                              "seq"));
}

/* ---- the queue ------------------------------------------------------------------ */

static void test_body_order_ack(void **state)
{
    world *w = *state;
    lp_events *q = open_queue(w, 0);
    lp_event e = {.type = LP_EVENT_ACTIVATED, .version = "v2", .version_code = 2,
                  .from_version_code = 1, .duration_ms = 12, .at = 1700000123};
    lp_error err;
    assert_int_equal(lp_events_add(q, &e, &err), LP_OK);
    add(q, LP_EVENT_HEALTHY, "v2", 2, NULL);
    add(q, LP_EVENT_FAILED, NULL, 0, "post-update hook exited with 3");
    lp_events_close(q);

    /* survives a reopen; nothing sent yet */
    q = open_queue(w, 0);
    assert_int_equal(pending(q, NULL), 3);
    lp_net *n = open_net(w);
    size_t sent = 99;
    if (lp_events_send(q, n, DEVICE, 0, &sent, &err))
        fail_msg("send: %s", err.msg);
    assert_int_equal(sent, 3);
    assert_int_equal(pending(q, NULL), 0);
    json_t *b = next_post(w);
    /* exactly the agreed shape */
    char *text = json_dumps(json_array_get(json_object_get(b, "events"), 0),
                            JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text, "{\"seq\":1,\"type\":\"activated\",\"at\":1700000123,\"version\":"
                              "\"v2\",\"version_code\":2,\"from_version_code\":1,\"reason\":null,"
                              "\"duration_ms\":12}");
    free(text);
    assert_string_equal(json_string_value(json_object_get(b, "device_id")), DEVICE);
    assert_int_equal(json_integer_value(json_object_get(b, "dropped")), 0);
    assert_int_equal(json_object_size(b), 3);
    assert_int_equal(json_array_size(json_object_get(b, "events")), 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(seq_at(b, i), (int64_t)i + 1);
    json_t *third = json_array_get(json_object_get(b, "events"), 2);
    assert_string_equal(json_string_value(json_object_get(third, "type")), "failed");
    assert_string_equal(json_string_value(json_object_get(third, "reason")),
                        "post-update hook exited with 3");
    assert_true(json_is_null(json_object_get(third, "version")));
    assert_true(json_is_null(json_object_get(third, "version_code")));
    assert_true(json_is_null(json_object_get(third, "duration_ms")));
    json_decref(b);

    /* nothing left: no request at all */
    unsigned before = lp_test_httpd_requests(w->httpd, EVENTS_PATH);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_OK);
    assert_int_equal(sent, 0);
    assert_int_equal(lp_test_httpd_requests(w->httpd, EVENTS_PATH), before);

    /* numbers never repeat, even with an empty queue after a reopen */
    lp_events_close(q);
    q = open_queue(w, 0);
    add(q, LP_EVENT_CHECKED, NULL, 0, NULL);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_OK);
    b = next_post(w);
    assert_int_equal(seq_at(b, 0), 4);
    json_decref(b);
    lp_net_close(n);
    lp_events_close(q);
}

static void test_failures_keep_events(void **state)
{
    world *w = *state;
    lp_events *q = open_queue(w, 0);
    add(q, LP_EVENT_DOWNLOADED, "v3", 3, NULL);
    add(q, LP_EVENT_VERIFIED, "v3", 3, NULL);
    lp_net *n = open_net(w);
    lp_error err;
    size_t sent = 99;
    lp_test_httpd_set_post(w->httpd, EVENTS_PATH, 503);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_ERR_NETWORK);
    assert_int_equal(sent, 0);
    if (!strstr(err.msg, "HTTP 503") || !strstr(err.msg, "2 events stay queued"))
        fail_msg("message: %s", err.msg);
    assert_int_equal(pending(q, NULL), 2);
    json_decref(next_post(w));
    lp_net_close(n);

    /* nothing listening */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    close(s);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    n = open_net_at(w, url, NULL);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_ERR_NETWORK);
    assert_int_equal(pending(q, NULL), 2);
    lp_net_close(n);

    /* back: the same events, in order, then gone */
    lp_test_httpd_set_post(w->httpd, EVENTS_PATH, 202);
    n = open_net(w);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_OK);
    assert_int_equal(sent, 2);
    assert_int_equal(pending(q, NULL), 0);
    json_t *b = next_post(w);
    assert_int_equal(json_array_size(json_object_get(b, "events")), 2);
    assert_true(seq_at(b, 0) < seq_at(b, 1));
    json_decref(b);
    lp_test_httpd_set_post(w->httpd, EVENTS_PATH, 200);
    /* bad device ids never reach the network */
    assert_int_equal(lp_events_send(q, n, "short", 0, &sent, &err), LP_ERR_INVALID_ARG);
    assert_int_equal(lp_events_send(q, n, "0123456789ABCDEF", 0, &sent, &err),
                     LP_ERR_INVALID_ARG);
    lp_net_close(n);
    lp_events_close(q);
}

static void test_batches_and_bound(void **state)
{
    world *w = *state;
    lp_events *q = open_queue(w, 5);
    for (int i = 0; i < 8; i++)
        add(q, LP_EVENT_CHECKED, NULL, 0, NULL);
    uint64_t dropped = 0;
    assert_int_equal(pending(q, &dropped), 5);
    assert_int_equal(dropped, 3);
    lp_net *n = open_net(w);
    lp_error err;
    size_t sent = 0;
    assert_int_equal(lp_events_send(q, n, DEVICE, 2, &sent, &err), LP_OK);
    assert_int_equal(sent, 5);
    /* 2 + 2 + 1, oldest kept ones first, each reporting the running total */
    json_t *b1 = next_post(w), *b2 = next_post(w), *b3 = next_post(w);
    assert_int_equal(json_array_size(json_object_get(b1, "events")), 2);
    assert_int_equal(json_array_size(json_object_get(b2, "events")), 2);
    assert_int_equal(json_array_size(json_object_get(b3, "events")), 1);
    int64_t first = seq_at(b1, 0);
    assert_int_equal(seq_at(b3, 0), first + 4);
    assert_int_equal(json_integer_value(json_object_get(b1, "dropped")), 3);
    assert_int_equal(json_integer_value(json_object_get(b3, "dropped")), 3);
    json_decref(b1);
    json_decref(b2);
    json_decref(b3);
    /* acknowledged: an empty queue sends nothing */
    unsigned before = lp_test_httpd_requests(w->httpd, EVENTS_PATH);
    assert_int_equal(lp_events_send(q, n, DEVICE, 2, &sent, &err), LP_OK);
    assert_int_equal(lp_test_httpd_requests(w->httpd, EVENTS_PATH), before);

    /* drops that happen while nothing else is queued are still reported */
    for (int i = 0; i < 6; i++)
        add(q, LP_EVENT_CHECKED, NULL, 0, NULL);
    assert_int_equal(pending(q, &dropped), 5);
    assert_int_equal(dropped, 4);
    /* a damaged event file is dropped and counted */
    char name[64];
    snprintf(name, sizeof name, "%020lld.json", (long long)(first + 6));
    char *victim = lp_test_join(w->events, name);
    assert_int_equal(lp_file_exists(victim), 1);
    assert_int_equal(lp_test_write_str(victim, "{\"seq\":1"), 0);
    free(victim);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_OK);
    assert_int_equal(sent, 4);
    json_t *b = next_post(w);
    assert_int_equal(json_array_size(json_object_get(b, "events")), 4);
    assert_int_equal(json_integer_value(json_object_get(b, "dropped")), 5);
    json_decref(b);
    assert_int_equal(pending(q, &dropped), 0);
    assert_int_equal(dropped, 5);
    lp_events_close(q);
    lp_net_close(n);
}

static void test_dropped_only_batch(void **state)
{
    world *w = *state;
    lp_events *q = open_queue(w, 1);
    add(q, LP_EVENT_CHECKED, NULL, 0, NULL);
    lp_net *n = open_net(w);
    lp_error err;
    size_t sent = 0;
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_OK);
    json_decref(next_post(w));
    uint64_t d0 = 0;
    pending(q, &d0);
    /* the queue holds one: adding two drops one, then sending it acknowledges */
    add(q, LP_EVENT_CHECKED, NULL, 0, NULL);
    add(q, LP_EVENT_CHECKED, NULL, 0, NULL);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_OK);
    json_t *b = next_post(w);
    assert_int_equal(json_integer_value(json_object_get(b, "dropped")), (json_int_t)d0 + 1);
    json_decref(b);
    /* a drop with nothing queued afterwards: a batch without events reports it */
    lp_events_close(q);
    char *state_file = lp_test_join(w->events, "queue.json");
    char *text = (char *)lp_test_read_file(state_file, NULL);
    json_t *qs = json_loads(text, 0, NULL);
    free(text);
    json_int_t next = json_integer_value(json_object_get(qs, "next_seq"));
    json_int_t dropped = json_integer_value(json_object_get(qs, "dropped"));
    json_decref(qs);
    char buf[128];
    snprintf(buf, sizeof buf, "{\"dropped\":%lld,\"next_seq\":%lld,\"reported\":%lld}",
             (long long)dropped + 2, (long long)next, (long long)dropped);
    assert_int_equal(lp_test_write_str(state_file, buf), 0);
    q = open_queue(w, 1);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_OK);
    assert_int_equal(sent, 0);
    b = next_post(w);
    assert_int_equal(json_array_size(json_object_get(b, "events")), 0);
    assert_int_equal(json_integer_value(json_object_get(b, "dropped")), dropped + 2);
    json_decref(b);
    unsigned before = lp_test_httpd_requests(w->httpd, EVENTS_PATH);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_OK);
    assert_int_equal(lp_test_httpd_requests(w->httpd, EVENTS_PATH), before);

    /* a damaged state file is an error, never a restart from 1 */
    lp_events_close(q);
    assert_int_equal(lp_test_write_str(state_file, "{\"next_seq\":0}"), 0);
    assert_int_equal(lp_events_open(w->events, 0, &q, &err), LP_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "queue.json"));
    snprintf(buf, sizeof buf, "{\"dropped\":0,\"next_seq\":%lld,\"reported\":0}",
             (long long)next);
    assert_int_equal(lp_test_write_str(state_file, buf), 0);
    free(state_file);
    lp_net_close(n);
}

static void test_crash_gap_and_values(void **state)
{
    world *w = *state;
    lp_events *q = open_queue(w, 0);
    add(q, LP_EVENT_CHECKED, NULL, 0, NULL);
    /* a crash after a number was taken but before its event was written:
     * the number is lost, never reused */
    char *state_file = lp_test_join(w->events, "queue.json");
    char *text = (char *)lp_test_read_file(state_file, NULL);
    json_t *qs = json_loads(text, 0, NULL);
    free(text);
    json_int_t next = json_integer_value(json_object_get(qs, "next_seq"));
    json_object_set_new(qs, "next_seq", json_integer(next + 1));
    text = json_dumps(qs, JSON_COMPACT);
    assert_int_equal(lp_test_write_str(state_file, text), 0);
    free(text);
    json_decref(qs);
    free(state_file);
    /* a leftover temporary file of an interrupted write goes away */
    char *tmp = lp_test_join(w->events, "00000000000000000099.json.tmp-abcdef");
    assert_int_equal(lp_test_write_str(tmp, "partial"), 0);

    char long_reason[3000];
    memset(long_reason, 'r', sizeof long_reason - 1);
    long_reason[sizeof long_reason - 1] = '\0';
    memcpy(long_reason, "bad\x01\x1b[31m\tline\nnext\xff\xfe", 21);
    lp_event e = {.type = LP_EVENT_ROLLED_BACK, .version = "1.0 beta", .version_code = 9,
                  .from_version_code = 10, .reason = long_reason,
                  .duration_ms = 99999999999LL, .at = 0};
    lp_error err;
    assert_int_equal(lp_events_add(q, &e, &err), LP_OK);
    lp_event e2 = {.type = LP_EVENT_STAGED, .version = "2.0.1+build~7", .reason = "",
                   .duration_ms = 5, .at = 1};
    assert_int_equal(lp_events_add(q, &e2, &err), LP_OK);
    lp_event bad = {.type = (lp_event_type)42};
    assert_int_equal(lp_events_add(q, &bad, &err), LP_ERR_INVALID_ARG);
    lp_event big = {.type = LP_EVENT_CHECKED, .version_code = UINT64_MAX};
    assert_int_equal(lp_events_add(q, &big, &err), LP_ERR_INVALID_ARG);
    assert_int_equal(pending(q, NULL), 3);
    assert_int_equal(lp_file_exists(tmp), 0);
    free(tmp);

    lp_net *n = open_net(w);
    size_t sent = 0;
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_OK);
    json_t *b = next_post(w);
    json_t *ev = json_object_get(b, "events");
    assert_int_equal(json_array_size(ev), 3);
    assert_int_equal(seq_at(b, 1), seq_at(b, 0) + 2); /* the gap */
    json_t *rb = json_array_get(ev, 1);
    assert_string_equal(json_string_value(json_object_get(rb, "type")), "rolled_back");
    assert_true(json_is_null(json_object_get(rb, "version"))); /* not a version string */
    const char *r = json_string_value(json_object_get(rb, "reason"));
    assert_non_null(r);
    assert_int_equal(strlen(r), LP_EVENT_MAX_REASON);
    assert_int_equal(strncmp(r, "bad  [31m\tline\nnext??", 21), 0);
    assert_int_equal(json_integer_value(json_object_get(rb, "duration_ms")), 2592000000LL);
    assert_true(json_integer_value(json_object_get(rb, "at")) > 1700000000);
    json_t *st = json_array_get(ev, 2);
    assert_string_equal(json_string_value(json_object_get(st, "version")), "2.0.1+build~7");
    assert_true(json_is_null(json_object_get(st, "reason")));
    assert_int_equal(json_integer_value(json_object_get(st, "at")), 1);
    json_decref(b);
    lp_net_close(n);
    lp_events_close(q);
}

static void test_refused_batch(void **state)
{
    world *w = *state;
    lp_events *q = open_queue(w, 0);
    add(q, LP_EVENT_CHECKED, NULL, 0, NULL);
    add(q, LP_EVENT_CHECKED, NULL, 0, NULL);
    uint64_t d0 = 0;
    pending(q, &d0);
    lp_net *n = open_net(w);
    lp_error err;
    size_t sent = 0;
    lp_test_httpd_set_post(w->httpd, EVENTS_PATH, 400);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_ERR_NETWORK);
    if (!strstr(err.msg, "HTTP 400") || !strstr(err.msg, "its 2 events"))
        fail_msg("message: %s", err.msg);
    json_decref(next_post(w));
    uint64_t d1 = 0;
    assert_int_equal(pending(q, &d1), 0);
    assert_int_equal(d1, d0 + 2);
    /* the next batch goes through and reports the drop */
    lp_test_httpd_set_post(w->httpd, EVENTS_PATH, 200);
    add(q, LP_EVENT_CHECKED, NULL, 0, NULL);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_OK);
    assert_int_equal(sent, 1);
    json_t *b = next_post(w);
    assert_int_equal(json_integer_value(json_object_get(b, "dropped")), (json_int_t)d1);
    json_decref(b);
    lp_net_close(n);
    lp_events_close(q);
}

/* A static mirror (docs/export.md): a POST answered 403, 404, 405 or 501
 * makes the queue ask for <server>/v1/apps/<app>/mirror.json; only the
 * export's marker for this app makes it a mirror (LP_ERR_UNSUPPORTED, the
 * events kept); a server that takes events is never asked for it; and an
 * lp_device says it once, then sends nothing. */
static void test_static_mirror(void **state)
{
    world *w = *state;
    static const char mpath[] = "/v1/apps/demo/mirror.json";
    lp_events *q = open_queue(w, 0);
    add(q, LP_EVENT_CHECKED, NULL, 0, NULL);
    add(q, LP_EVENT_DOWNLOADED, "v2", 2, NULL);
    lp_net *n = open_net(w);
    lp_error err;
    size_t sent = 9;
    char *marker = lp_test_join(w->dir, "www/v1/apps/demo/mirror.json");

    /* 404 and no marker: a refusal like any other */
    lp_test_httpd_set_post(w->httpd, EVENTS_PATH, 404);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_ERR_NETWORK);
    if (!strstr(err.msg, "HTTP 404") || !strstr(err.msg, "2 events stay queued"))
        fail_msg("message: %s", err.msg);
    assert_int_equal(lp_test_httpd_requests(w->httpd, mpath), 1);
    /* a marker of another app, or one that does not say static */
    assert_int_equal(lp_test_write_str(marker, "{\"app\":\"other\",\"static\":true}"), 0);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_ERR_NETWORK);
    assert_int_equal(lp_test_write_str(marker, "{\"app\":\"demo\",\"static\":false}"), 0);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_ERR_NETWORK);
    assert_int_equal(lp_test_write_str(marker, "not json"), 0);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_ERR_NETWORK);
    /* the export's marker: a static mirror; the events stay */
    assert_int_equal(
        lp_test_write_str(marker,
                          "{\"app\":\"demo\",\"format\":1,\"static\":true,\"telemetry\":false}"),
        0);
    for (unsigned status = 403; status <= 501; status++) {
        if (status != 403 && status != 404 && status != 405 && status != 501)
            continue;
        lp_test_httpd_set_post(w->httpd, EVENTS_PATH, status);
        sent = 9;
        assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_ERR_UNSUPPORTED);
        if (!strstr(err.msg, "static mirror") || !strstr(err.msg, "no telemetry") ||
            !strstr(err.msg, mpath))
            fail_msg("message: %s", err.msg);
        assert_int_equal(sent, 0);
        assert_int_equal(pending(q, NULL), 2);
    }
    /* other refusals do not look for the marker */
    unsigned asked = lp_test_httpd_requests(w->httpd, mpath);
    lp_test_httpd_set_post(w->httpd, EVENTS_PATH, 401);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_ERR_NETWORK);
    /* a server that takes the events is never asked for it */
    lp_test_httpd_set_post(w->httpd, EVENTS_PATH, 200);
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_OK);
    assert_int_equal(sent, 2);
    assert_int_equal(lp_test_httpd_requests(w->httpd, mpath), asked);
    lp_net_close(n);
    lp_events_close(q);

    /* the device client: said once, then nothing is sent */
    lp_test_httpd_set_post(w->httpd, EVENTS_PATH, 404);
    char *root = lp_test_join(w->dir, "device");
    lp_device_config dc = {.updater = {.root = root},
                           .net = {.server_url = lp_test_httpd_url(w->httpd), .app = "demo",
                                   .attempts = 1}};
    lp_device *d = NULL;
    assert_int_equal(lp_device_open(&dc, &d, &err), LP_OK);
    lp_event e = {.type = LP_EVENT_CHECKED, .duration_ms = -1};
    assert_int_equal(lp_events_add(lp_device_events(d), &e, &err), LP_OK);
    assert_false(lp_device_static_mirror(d));
    unsigned posts = lp_test_httpd_requests(w->httpd, EVENTS_PATH);
    assert_int_equal(lp_device_send_events(d, &sent, &err), LP_ERR_UNSUPPORTED);
    assert_true(lp_device_static_mirror(d));
    assert_int_equal(lp_test_httpd_requests(w->httpd, EVENTS_PATH), posts + 1);
    sent = 9;
    assert_int_equal(lp_device_send_events(d, &sent, &err), LP_OK);
    assert_int_equal(sent, 0);
    assert_int_equal(lp_test_httpd_requests(w->httpd, EVENTS_PATH), posts + 1);
    size_t queued = 0;
    assert_int_equal(lp_events_pending(lp_device_events(d), &queued, NULL, &err), LP_OK);
    assert_true(queued >= 1);
    lp_device_close(d);
    free(root);
    free(marker);
}

static void test_device_token(void **state)
{
    world *w = *state;
    lp_events *q = open_queue(w, 0);
    add(q, LP_EVENT_CHECKED, NULL, 0, NULL);
    lp_net *n = open_net_at(w, lp_test_httpd_url(w->httpd), "lpt_secret-123");
    lp_error err;
    size_t sent = 0;
    assert_int_equal(lp_events_send(q, n, DEVICE, 0, &sent, &err), LP_OK);
    char auth[256];
    lp_test_httpd_last_auth(w->httpd, EVENTS_PATH, auth, sizeof auth);
    assert_string_equal(auth, "Bearer lpt_secret-123");
    json_decref(next_post(w));
    /* never with blob or metadata requests */
    char path[128];
    snprintf(path, sizeof path, "/v1/blobs/%064d", 0);
    char dest[512];
    snprintf(dest, sizeof dest, "%s/x", w->dir);
    assert_int_equal(lp_net_fetch_blob(n, path + 10, 1, dest, &err), LP_ERR_NOT_FOUND);
    lp_test_httpd_last_auth(w->httpd, path, auth, sizeof auth);
    assert_string_equal(auth, "");
    lp_net_close(n);
    lp_events_close(q);

    char *st = lp_test_join(w->dir, "state");
    lp_net_config c = {.server_url = lp_test_httpd_url(w->httpd), .app = "demo",
                       .state_dir = st, .device_token = "has space"};
    assert_int_equal(lp_net_open(&c, &n, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "device token"));
    free(st);
}

/* The figures of a download are written as five more members; an event
 * file written before they existed (eight members) is still read and sent
 * as it is; a figure of the wrong type makes the file damaged. */
static void test_figures_and_old_queue(void **state)
{
    world *w = *state;
    lp_events *q = open_queue(w, 0);
    lp_event_figures fig = {.bytes = 5311, .files_fetched = 3, .files_delta = 2,
                            .bytes_delta_saved = UINT64_MAX, .delta_fallbacks = 1};
    lp_event e = {.type = LP_EVENT_DOWNLOADED, .version = "v2", .version_code = 2,
                  .from_version_code = 1, .reason = "bin/tool: delta x: corrupted",
                  .duration_ms = 40, .at = 1700000300, .figures = &fig};
    lp_error err;
    assert_int_equal(lp_events_add(q, &e, &err), LP_OK);
    add(q, LP_EVENT_CHECKED, NULL, 0, NULL); /* seq 2: replaced below */
    add(q, LP_EVENT_CHECKED, NULL, 0, NULL); /* seq 3: damaged below */
    /* seq 2 as the previous version wrote it: eight members, figures in the
     * reason */
    const char *old_text = "{\"seq\":2,\"type\":\"downloaded\",\"at\":1700000000,"
                           "\"version\":\"v1\",\"version_code\":1,\"from_version_code\":null,"
                           "\"reason\":\"files_delta=0 bytes_delta=0 bytes_delta_saved=0 "
                           "delta_fallbacks=0\",\"duration_ms\":7}\n";
    char *p2 = lp_test_join(w->events, "00000000000000000002.json");
    assert_int_equal(lp_test_write_str(p2, old_text), 0);
    free(p2);
    char *p3 = lp_test_join(w->events, "00000000000000000003.json");
    assert_int_equal(lp_test_write_str(p3, "{\"seq\":3,\"type\":\"checked\",\"at\":1,"
                                           "\"version\":null,\"version_code\":null,"
                                           "\"from_version_code\":null,\"reason\":null,"
                                           "\"duration_ms\":null,\"bytes\":\"12\"}"),
                     0);
    free(p3);
    lp_events_close(q);

    q = open_queue(w, 0);
    lp_net *n = open_net(w);
    size_t sent = 0;
    if (lp_events_send(q, n, DEVICE, 0, &sent, &err))
        fail_msg("send: %s", err.msg);
    assert_int_equal(sent, 2);
    json_t *b = next_post(w);
    json_t *evs = json_object_get(b, "events");
    assert_int_equal(json_array_size(evs), 2);
    char *text = json_dumps(json_array_get(evs, 0), JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text, "{\"seq\":1,\"type\":\"downloaded\",\"at\":1700000300,"
                              "\"version\":\"v2\",\"version_code\":2,\"from_version_code\":1,"
                              "\"reason\":\"bin/tool: delta x: corrupted\",\"duration_ms\":40,"
                              "\"bytes\":5311,\"files_fetched\":3,\"files_delta\":2,"
                              "\"bytes_delta_saved\":9223372036854775807,"
                              "\"delta_fallbacks\":1}");
    free(text);
    /* the old event, exactly as it was: no figures */
    text = json_dumps(json_array_get(evs, 1), JSON_COMPACT | JSON_PRESERVE_ORDER);
    char *want = strndup(old_text, strlen(old_text) - 1);
    assert_string_equal(text, want);
    free(want);
    free(text);
    assert_int_equal(json_integer_value(json_object_get(b, "dropped")), 1); /* seq 3 */
    json_decref(b);
    lp_net_close(n);
    lp_events_close(q);
}

/* ---- the real server ------------------------------------------------------------- */

static void test_real_server(void **state)
{
    world *w = *state;
    lp_apitest *t = lp_apitest_start(0);
    assert_non_null(t);
    json_t *j = lp_apitest_json(t, "POST", "/api/v1/apps", t->admin, "{\"name\":\"demo\"}", 201);
    assert_non_null(j);
    json_decref(j);
    char *dir = lp_test_join(w->dir, "real-events");
    lp_events *q = NULL;
    lp_error err;
    assert_int_equal(lp_events_open(dir, 3, &q, &err), LP_OK);
    lp_event e = {.type = LP_EVENT_ACTIVATED, .version = "v2", .version_code = 2,
                  .from_version_code = 1, .duration_ms = 12, .at = 1700000123};
    assert_int_equal(lp_events_add(q, &e, &err), LP_OK);
    lp_event f = {.type = LP_EVENT_FAILED, .version = "v3", .version_code = 3,
                  .reason = "hash\nmismatch", .duration_ms = -1, .at = 1700000200};
    for (int i = 0; i < 2; i++)
        assert_int_equal(lp_events_add(q, &f, &err), LP_OK); /* one dropped */
    lp_event_figures fig = {.bytes = 5311, .files_fetched = 3, .files_delta = 2,
                            .bytes_delta_saved = 256467, .delta_fallbacks = 0};
    lp_event g = f;
    g.figures = &fig; /* any type may carry them */
    assert_int_equal(lp_events_add(q, &g, &err), LP_OK);
    lp_net *n = open_net_at(w, t->base, NULL);
    size_t sent = 0;
    if (lp_events_send(q, n, DEVICE, 2, &sent, &err))
        fail_msg("send: %s", err.msg);
    assert_int_equal(sent, 3);
    j = lp_apitest_json(t, "GET", "/api/v1/apps/demo/events?device=" DEVICE, t->admin, NULL,
                        200);
    assert_non_null(j);
    json_t *list = json_object_get(j, "events");
    assert_int_equal(json_array_size(list), 3); /* the activated one was dropped */
    json_t *last = json_array_get(list, 0); /* newest first */
    assert_string_equal(json_string_value(json_object_get(last, "type")), "failed");
    assert_int_equal(json_integer_value(json_object_get(last, "seq")), 4);
    assert_string_equal(json_string_value(json_object_get(last, "reason")), "hash\nmismatch");
    assert_int_equal(json_integer_value(json_object_get(last, "version_code")), 3);
    assert_true(json_is_null(json_object_get(last, "duration_ms")));
    assert_int_equal(json_integer_value(json_object_get(last, "bytes")), 5311);
    assert_int_equal(json_integer_value(json_object_get(last, "files_fetched")), 3);
    assert_int_equal(json_integer_value(json_object_get(last, "files_delta")), 2);
    assert_int_equal(json_integer_value(json_object_get(last, "bytes_delta_saved")), 256467);
    assert_int_equal(json_integer_value(json_object_get(last, "delta_fallbacks")), 0);
    json_t *before = json_array_get(list, 1); /* no figures: null */
    assert_true(json_is_null(json_object_get(before, "bytes")));
    assert_true(json_is_null(json_object_get(before, "delta_fallbacks")));
    json_decref(j);
    j = lp_apitest_json(t, "GET", "/api/v1/apps/demo/devices", t->admin, NULL, 200);
    assert_non_null(j);
    json_t *dev = json_array_get(json_object_get(j, "devices"), 0);
    assert_string_equal(json_string_value(json_object_get(dev, "device_id")), DEVICE);
    assert_int_equal(json_integer_value(json_object_get(dev, "dropped")), 1);
    json_decref(j);

    /* a batch sent again (its answer lost) is taken as duplicates */
    const char *again = "{\"device_id\":\"" DEVICE "\",\"events\":[{\"seq\":4,\"type\":\"failed\","
                        "\"at\":1700000200,\"version\":\"v3\",\"version_code\":3,"
                        "\"from_version_code\":null,\"reason\":\"hash\\nmismatch\","
                        "\"duration_ms\":null}],\"dropped\":1}";
    j = lp_apitest_json(t, "POST", "/v1/apps/demo/events", NULL, again, 200);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "duplicates")), 1);
    json_decref(j);
    lp_net_close(n);
    lp_events_close(q);
    free(dir);
    lp_apitest_stop(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_body_order_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_figures_and_old_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures_keep_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches_and_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dropped_only_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_gap_and_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_mirror, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_server, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
