/*
 * control.h — the local control API of the agent (internal): an HTTP/JSON
 * server on a unix socket, and optionally on a loopback TCP address with a
 * bearer admin token, through which an operator drives the device the agent
 * runs (docs/agent.md, "The control API").
 *
 * Routes (every answer is JSON; errors have one shape
 * {"error":{"code":"...","message":"..."}}):
 *     GET  /v1/status                      what state.json says, and more
 *     POST /v1/check                       lp_device_check: the offer, if any
 *     GET  /v1/releases/<id>/manifest      the stored manifest of an
 *                                          installed release, byte for byte
 *     POST /v1/download                    lp_device_update as a dry run:
 *                                          download, stage, verify; no switch
 *     POST /v1/apply {"dry_run":bool}      lp_device_update (every release)
 *     GET  /v1/rollback-points             the installed releases
 *     POST /v1/rollback {"to":ID,"reason":"..."}
 *                                          lp_device_rollback (to 0 or no
 *                                          "to": the previous release)
 *     POST /v1/release-failed {"release":ID,"reason":"..."}
 *                                          the app says release ID fails
 *                                          (livepush/swap.h, "Reporting to
 *                                          the agent"): if ID is current,
 *                                          lp_device_release_failed (rolled
 *                                          back, marked bad with the reason)
 *                                          and, with send_events, the events
 *                                          sent once answered; "outcome"
 *                                          "rolled_back", or
 *                                          "already_rolled_back" when ID is
 *                                          bad and not current; 409 when it
 *                                          is neither current nor bad
 *
 * Concurrency: each listener is a libmicrohttpd daemon with one internal
 * polling thread (no pool), so requests on one listener are answered one
 * after the other; every handler takes the caller's mutex around its
 * lp_device calls, and the agent takes the same mutex around its own tick,
 * so the device is used by one thread at a time.  A request that arrives
 * during a tick waits for the tick to finish.
 *
 * The unix socket is created 0600 (umask-independent: bound under a 0077
 * umask and chmod'ed), in a folder that must exist; an existing socket file
 * (left by an agent that died) is replaced, any other existing file is
 * refused.  lp_control_stop removes it again.
 *
 * The TCP listener is refused on a non-loopback address unless
 * allow_remote, and always needs a token: requests without
 * "Authorization: Bearer <token>" get 401.  Tokens are compared in constant
 * time (their SHA-256 digests, with CRYPTO_memcmp).
 */
#ifndef LP_AGENT_CONTROL_H
#define LP_AGENT_CONTROL_H

#include "livepush/updater.h"
#include "server/log.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Longest admin token accepted (bytes). */
#define LP_CONTROL_MAX_TOKEN 512u
/* Largest request body accepted (bytes); beyond: 413. */
#define LP_CONTROL_MAX_BODY 8192u

typedef struct lp_control lp_control;

typedef struct lp_control_config {
    lp_device *dev;          /* borrowed; must outlive the control server */
    pthread_mutex_t *lock;   /* borrowed; held around every lp_device call */
    const char *socket_path; /* NULL or "": no unix socket */
    const char *http_listen; /* NULL or "": no TCP; "127.0.0.1:PORT", "[::1]:PORT" */
    bool allow_remote;       /* accept a non-loopback http_listen */
    const char *token;       /* required with http_listen (1..LP_CONTROL_MAX_TOKEN bytes) */
    const lp_log *log;       /* borrowed; may be NULL */
    bool send_events;        /* after a release-failed request rolled back, send the
                                queued events at once (false: at the next tick) */
} lp_control_config;

/* Binds the listeners and starts their threads.  Signals should be blocked
 * by the caller first (the threads inherit the mask).  The caller owns *out
 * (lp_control_stop).  Errors: LP_ERR_INVALID_ARG (nothing to listen on, a
 * path too long for a unix socket, a non-loopback address, no token),
 * LP_ERR_EXISTS (the socket path exists and is not a socket), LP_ERR_IO /
 * LP_ERR_NETWORK (cannot bind or start). */
lp_status lp_control_start(const lp_control_config *cfg, lp_control **out, lp_error *err);

/* The bound TCP port (0: no TCP listener). */
uint16_t lp_control_http_port(const lp_control *c);

/* Stops the listeners (waiting for the request in progress), removes the
 * socket file, frees.  NULL is fine. */
void lp_control_stop(lp_control *c);

#endif
