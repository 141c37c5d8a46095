/*
 * device.h — internals of the device client (src/agent/device.c, update.c).
 *
 * An lp_device owns an lp_updater, the event queue, and — from the first
 * network call on — the lp_net and its TUF client.  The network settings are
 * copied at open (the caller's strings need not outlive the call) because
 * the connection is made lazily: an app that only reports launches and
 * health never needs a server, a trusted root or a network.
 *
 * device.c holds opening, the channel, the events and the local calls
 * (mark healthy, launch, probation, rollback, reporting rollbacks from the
 * bad list); update.c holds the network steps and the whole cycle.
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
};

/* Milliseconds of a monotonic clock. */
int64_t lp_device_mono_ms(void);

/* True (and d->stopped set) when should_stop asks to stop. */
bool lp_device_stop_requested(lp_device *d);

/* Queues an event; failures are ignored (an event that cannot be queued
 * is lost, the step's own result stands).  version may be NULL. */
void lp_device_event(lp_device *d, lp_event_type type, const char *version, uint64_t code,
                     uint64_t from, const char *reason, int64_t duration_ms);

/* lp_device_report, giving an "activated" event the duration
 * activate_ms; failures are ignored. */
void lp_device_report_activation(lp_device *d, int64_t activate_ms);

/* The version label of installed release `id` into buf ("" when unknown
 * or id is 0). */
const char *lp_device_version_of(lp_device *d, uint64_t id, char *buf, size_t cap);

#endif
