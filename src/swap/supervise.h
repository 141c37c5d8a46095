/*
 * supervise.h — the process supervisor of `livepush run` (internal).
 *
 * A supervisor runs one app from an install root (livepush/updater.h) and
 * replaces its process with a new one without refusing or dropping a
 * connection:
 *
 *   - it opens the listening sockets itself (TCP with SO_REUSEADDR, or unix
 *     stream sockets) and keeps them open for its whole life; every process
 *     of the app gets them as fds 3.. with LISTEN_FDS, LISTEN_PID and
 *     LISTEN_FDNAMES (systemd's socket-activation convention);
 *   - each process says it is ready by sending "READY=1" to the datagram
 *     socket named in NOTIFY_SOCKET (sd_notify's protocol); only its own
 *     process (or one of its process group) is believed, by the sender's
 *     credentials (SO_PASSCRED);
 *   - a restart starts the new process while the old one serves, waits for
 *     its READY=1, then sends the old one SIGTERM (it stops accepting and
 *     finishes what it started) and SIGKILL after the stop timeout.  Both
 *     hold the same sockets, whose accept queue the kernel keeps, so a
 *     connection is taken by one or the other, never refused;
 *   - a restart happens when `current` of the install root points to
 *     another release (inotify on the root, and a readlink at least every
 *     poll interval), or on SIGHUP (the same release again);
 *   - with swap paths (--swap), a release whose stored manifest differs
 *     from the serving release's only in those files (and the folders that
 *     hold them) is adopted instead: no new process, the one serving now
 *     serves that release (it swaps the files in itself, following
 *     `current`), and --healthy-after counts from then;
 *   - a new release whose process exits or is not ready in time is given
 *     up: the old process keeps serving, and the release is rolled back
 *     (lp_device_rollback: `current` back to the release serving, the new
 *     one marked bad, the rollback queued as an event);
 *   - a process that exits on its own is started again from the current
 *     release after a back-off (doubling from restart_delay_ms up to
 *     restart_delay_max_ms); each such start counts as a launch of the
 *     release (lp_device_launch), so a release on probation that keeps
 *     crashing is rolled back by its launch limit, as with
 *     `livepush device launch`;
 *   - SIGTERM or SIGINT stops every process (SIGTERM, SIGKILL after the
 *     stop timeout; a second signal kills at once) and ends the run.
 *
 * One thread, one poll(2) loop over a signalfd (SIGCHLD, SIGTERM, SIGINT,
 * SIGHUP, blocked while the loop runs), the notify socket and the inotify
 * descriptor; no signal handler, no global state.  The loop stops for the
 * calls into the device (launch, rollback, mark healthy), which take the
 * install root's lock and may run rollback hooks; messages and exits
 * arriving meanwhile wait in their queues.
 *
 * The process must have one thread while lp_sup_run runs (the signals it
 * waits for are blocked in the calling thread only).  Docs: docs/run.md.
 */
#ifndef LP_SWAP_SUPERVISE_H
#define LP_SWAP_SUPERVISE_H

#include "livepush/error.h"
#include "livepush/updater.h"
#include "server/log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#define LP_SUP_MAX_LISTEN 64u              /* --listen addresses at most */
#define LP_SUP_MAX_NAME 64u                /* bytes of a socket's name */
#define LP_SUP_MAX_ARGS 256u               /* words of the command */
#define LP_SUP_MAX_STATUS 256u             /* bytes of a STATUS= text kept */
#define LP_SUP_MAX_NOTIFY 4096u            /* bytes of one notify datagram */
#define LP_SUP_MAX_CHILDREN 16u            /* processes alive at once */
#define LP_SUP_MAX_SWAP 64u                /* --swap paths at most */
#define LP_SUP_DEFAULT_READY_TIMEOUT_MS 30000u
#define LP_SUP_DEFAULT_STOP_TIMEOUT_MS 10000u
#define LP_SUP_DEFAULT_POLL_INTERVAL_MS 2000u
#define LP_SUP_DEFAULT_RESTART_DELAY_MS 1000u
#define LP_SUP_DEFAULT_RESTART_DELAY_MAX_MS 30000u

/* One --listen address, parsed. */
typedef struct lp_sup_listen {
    char name[LP_SUP_MAX_NAME + 1]; /* its LISTEN_FDNAMES entry ("unknown" by default) */
    int family;                     /* AF_INET, AF_INET6 or AF_UNIX */
    struct sockaddr_storage addr;   /* the address to bind */
    socklen_t addr_len;
} lp_sup_listen;

/* Parses "[NAME=]ADDRESS" where ADDRESS is IPV4:PORT, [IPV6]:PORT,
 * unix:PATH or an absolute PATH (a unix stream socket); addresses are
 * numeric (no name lookup), PORT 0..65535 (0: any free port), PATH shorter
 * than sun_path.  NAME is 1..LP_SUP_MAX_NAME of [A-Za-z0-9_.-].
 * Errors: LP_ERR_INVALID_ARG naming the part that is wrong. */
lp_status lp_sup_listen_parse(const char *spec, lp_sup_listen *out, lp_error *err);

/* Formats an address as lp_sup_listen_parse reads it ("127.0.0.1:8080",
 * "[::1]:8080", "unix:/run/app.sock") into out (cap bytes, cut if short). */
void lp_sup_address_format(const struct sockaddr *sa, socklen_t len, char *out, size_t cap);

/* What one notify datagram says. */
typedef struct lp_sup_notice {
    bool ready;                          /* READY=1 */
    bool stopping;                       /* STOPPING=1 */
    bool has_status;                     /* STATUS=... was given */
    char status[LP_SUP_MAX_STATUS + 1];  /* its text, control characters made spaces, cut */
} lp_sup_notice;

/* Parses a notify datagram: newline-separated KEY=VALUE assignments, of
 * which READY=1, STOPPING=1 and STATUS= are read and any other well-formed
 * one is ignored (as sd_notify's receivers do).  At most
 * LP_SUP_MAX_NOTIFY bytes; a NUL byte, an empty message or a line without
 * '=' make it malformed.  Errors: LP_ERR_MALFORMED, LP_ERR_TOO_LARGE. */
lp_status lp_sup_notice_parse(const char *msg, size_t len, lp_sup_notice *out, lp_error *err);

/* Settings of a supervisor.  Zero numbers take the defaults above. */
typedef struct lp_sup_config {
    lp_device *device;              /* borrowed, required: the install root, its
                                       launches, rollbacks and health */
    char *const *argv;              /* the command (NULL-terminated, copied): a first
                                       word with a '/' is relative to the release folder,
                                       one without is looked up in `path` */
    const char *path;               /* the PATH to search (NULL: "/usr/bin:/bin") */
    const char *const *listen;      /* listen_count --listen texts (lp_sup_listen_parse) */
    size_t listen_count;
    int backlog;                    /* listen(2) backlog; 0: SOMAXCONN */
    const char *runtime_dir;        /* where the private folder of the notify socket is
                                       made (NULL: /tmp) */
    uint32_t ready_timeout_ms;      /* a new process must say READY=1 within this */
    uint32_t stop_timeout_ms;       /* after SIGTERM, SIGKILL this much later */
    uint32_t poll_interval_ms;      /* `current` is read at least this often */
    uint32_t restart_delay_ms;      /* first wait before starting again after an exit */
    uint32_t restart_delay_max_ms;  /* the wait doubles up to this */
    uint32_t healthy_after_ms;      /* a release on probation whose process has been
                                       ready this long is marked healthy; 0: never */
    bool no_watch;                  /* no inotify: `current` is only polled */
    const lp_log *log;              /* may be NULL: no log */
    const char *const *swap;        /* swap_count paths inside a release (checked as
                                       manifest paths, copied) of files the app replaces
                                       in place itself (live module swap: livepush/swap.h) */
    size_t swap_count;
} lp_sup_config;

typedef struct lp_sup lp_sup;

/* Checks the configuration, binds and listens on every address (a unix
 * socket file left by a process that is gone is replaced; one that answers
 * or a path that is not a socket is refused), moves the sockets above the
 * fds the processes get them as, and makes the notify socket in a new 0700
 * folder under runtime_dir.  Nothing is started yet.  The caller owns *out
 * (lp_sup_close).  Errors: LP_ERR_INVALID_ARG (no device or command, a bad
 * or duplicate address, too many; a swap path that is not a relative path
 * of a release, or more than LP_SUP_MAX_SWAP), LP_ERR_IO (socket, bind, listen, the
 * folder: the message names the address or path), LP_ERR_NOMEM. */
lp_status lp_sup_open(const lp_sup_config *cfg, lp_sup **out, lp_error *err);

/* The number of listening sockets, and the address socket i is bound to
 * (a port 0 resolved), as lp_sup_address_format writes it; borrowed. */
size_t lp_sup_listen_count(const lp_sup *s);
const char *lp_sup_listen_address(const lp_sup *s, size_t i);

/* The path of the notify socket (borrowed). */
const char *lp_sup_notify_path(const lp_sup *s);

/* Runs the supervisor until SIGTERM or SIGINT and every process has
 * ended.  Waits for a release when none is installed yet.  *exit_code (may
 * be NULL) gets the exit status of the process that was serving when the
 * stop came (128 + the signal when a signal ended it), or of the last one
 * that ended, or 0 when none ever ran.  Errors (the loop itself failing:
 * signalfd, poll) end the run after every process is stopped:
 * LP_ERR_IO. */
lp_status lp_sup_run(lp_sup *s, int *exit_code, lp_error *err);

/* Closes the sockets, removes the notify socket's folder and a unix socket
 * file this supervisor made; NULL is fine.  Processes still running (after
 * a failed run) get SIGKILL. */
void lp_sup_close(lp_sup *s);

#endif
