/*
 * device.h — internals of the device client (src/agent/device.c, update.c,
 * device_delta.c).
 *
 * An lp_device owns an lp_updater, the event queue, and — from the first
 * network call on — the lp_net and its TUF client.  The network settings are
 * copied at open (the caller's strings need not outlive the call) because
 * the connection is made lazily: an app that only reports launches and
 * health never needs a server, a trusted root or a network.
 *
 * device.c holds opening, the channel, the events and the local calls
 * (mark healthy, launch, probation, rollback, reporting rollbacks from the
 * bad list); update.c holds the network steps and the whole cycle;
 * device_delta.c the use of deltas while downloading.
 */
#ifndef LP_AGENT_DEVICE_H
#define LP_AGENT_DEVICE_H

#include "livepush/updater.h"

#include <stdbool.h>
#include <stdint.h>

struct lp_device {
    lp_updater *u;
    lp_events *events;
    char *state_dir;      /* <root>/.livepush */
    /* the network side, made at the first network call */
    lp_net_config net_cfg; /* its strings point at the copies below */
    char *server_url, *app, *user_agent, *device_token;
    char **allowed_hosts; /* NULL-terminated copy, or NULL */
    lp_net *net;
    lp_tuf_client *tuf;
    /* what the device is */
    char *channel;        /* the configured default */
    char *platform, *arch, *runtime_version;
    lp_device_attribute *attributes; /* copies (strings owned), for targeting */
    size_t attribute_count;
    /* callbacks */
    lp_stage_progress_fn progress;
    void *progress_ctx;
    lp_check_skip_fn on_skip;
    void *skip_ctx;
    lp_device_stop_fn should_stop;
    void *stop_ctx;
    /* the download in progress */
    bool stopped;         /* should_stop said so */
    int64_t fetch_ms;     /* time spent fetching blobs */
    /* deltas (device_delta.c) */
    bool no_deltas;       /* configured off: the index is never asked for */
    lp_delta_note_fn on_delta;
    void *delta_ctx;
    lp_device_event_fn on_event;
    void *event_ctx;
    lp_delta_index dindex;          /* of the download in progress (count 0: none) */
    struct lp_device_base *bases;   /* the bases it names, sorted, with installed files */
    size_t base_count;
    char *stage_prefix;             /* "<root>/.livepush/staging/<id>/" */
    uint64_t delta_from, delta_to;
    bool delta_due;                 /* the index is to be fetched at the first file */
    size_t delta_listed;            /* entries of the index read */
    uint64_t files_delta, bytes_delta, bytes_delta_saved, delta_fallbacks;
    char first_fallback[512];       /* "<path>: <reason>" of the first fallback */
    bool static_mirror;             /* the server said it is a static mirror: no events */
};

typedef struct lp_device_base lp_device_base;

/* Milliseconds of a monotonic clock. */
int64_t lp_device_mono_ms(void);

/* True (and d->stopped set) when should_stop asks to stop. */
bool lp_device_stop_requested(lp_device *d);

/* Queues an event; failures are ignored (an event that cannot be queued
 * is lost, the step's own result stands).  version may be NULL. */
/* Queues `e` for the server and tells on_event (a lost event does not fail
 * the caller: the error is returned for those that care). */
lp_status lp_device_queue(lp_device *d, const lp_event *e, lp_error *err);
void lp_device_event(lp_device *d, lp_event_type type, const char *version, uint64_t code,
                     uint64_t from, const char *reason, int64_t duration_ms);

/* lp_device_report, giving an "activated" event the duration
 * activate_ms; failures are ignored. */
void lp_device_report_activation(lp_device *d, int64_t activate_ms);

/* The version label of installed release `id` into buf ("" when unknown
 * or id is 0). */
const char *lp_device_version_of(lp_device *d, uint64_t id, char *buf, size_t cap);

/* ---- deltas (device_delta.c) ---- */

/* Prepares the download of release `to` (staged as `id`) over the current
 * release `from` (0: none): clears what an earlier download left.  Unless
 * deltas are off or there is no current release, the first
 * lp_device_delta_try fetches the index of the deltas from -> to and finds
 * the installed files of the bases it names.  Never fails: without an
 * index no delta is tried (the note callback says why).  d->net must be
 * open. */
void lp_device_deltas_begin(lp_device *d, uint64_t from, uint64_t to, uint64_t id);

/* Tries to make the file `sha256` of `size` bytes at `dest` from a delta.
 * True when it is there, checked (size and SHA-256); false when no delta
 * applies or it failed (then nothing is left at dest, the fallback is
 * counted and noted): the caller fetches the full blob. */
bool lp_device_delta_try(lp_device *d, const char *sha256, uint64_t size, const char *dest,
                         bool sync);

/* Copies the counters into the delta fields of *stats (may be NULL). */
void lp_device_deltas_end(lp_device *d, lp_stage_stats *stats);

/* "<path>: <reason>" of the first delta that fell back, for the reason of
 * the "downloaded" event; NULL when none did. */
const char *lp_device_deltas_first_fallback(const lp_device *d);

/* Frees the index and bases and zeroes the counters. */
void lp_device_deltas_clear(lp_device *d);

#endif
