/*
 * agent.h — internals of the updater (src/agent/), shared by its files.
 *
 * The updater keeps nothing about releases in memory between calls: the
 * truth is on disk (the `current` symlink, releases/, state.json).  Every
 * operation is a session: lp_agent_begin takes the root's lock, reads
 * state.json and brings it in line with the symlink and release folders
 * (the light part of recovery), the operation changes the state value and
 * writes it with lp_agent_state_write (atomically), and lp_agent_end frees it
 * and releases the lock.  Hooks and long work (fetching blobs) run outside
 * sessions so another process (the app reporting a launch) never waits
 * long.
 *
 * Pieces:
 *   layout.c   open/close, paths, locks, device id, folder helpers
 *   state.c    state.json: the value, strict parsing, writing, status
 *   recover.c  reconciliation of state.json with the file system
 *   stage.c    building a release under staging/ and moving it in
 *   activate.c the switch, activation, probation, rollback, pruning
 *   hooks.c    C and executable hooks
 *   checked.c  the record of files whose content has been checked
 *   verify.c   checking a release on disk against its manifest
 *   crash.c    the table of crash points for fault-injection tests
 */
#ifndef LP_AGENT_AGENT_H
#define LP_AGENT_AGENT_H

#include "livepush/updater.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

/* Bounds on state.json. */
#define LP_AGENT_STATE_MAX_BYTES (1u << 20)
#define LP_AGENT_MAX_RELEASES 1024u
#define LP_AGENT_MAX_BAD 256u
#define LP_AGENT_MAX_REASON 512u
#define LP_AGENT_MAX_ERROR 1024u
/* Largest id (version code) accepted. */
#define LP_AGENT_MAX_ID ((uint64_t)INT64_MAX)

struct lp_updater {
    char *root;      /* absolute install root */
    char *dir;       /* <root>/.livepush */
    char *hooks_dir;
    unsigned keep;
    int64_t window_s;
    uint32_t max_launches;
    uint32_t hook_timeout_ms;
    uint32_t hook_kill_grace_ms;
    size_t hook_output_max;
    uint64_t reserve_bytes;
    uint32_t lock_timeout_ms;
    bool verify_all;     /* lp_updater_verify reads every file */
    char *crash_at;      /* point name, NULL: none */
    unsigned crash_nth;  /* crash at the N-th time it is reached (>= 1) */
    unsigned crash_hits;
    int lock_fd;         /* .livepush/lock */
    int stage_lock_fd;   /* .livepush/stage.lock */
    bool locked;
    char device_id[33];
    struct {
        lp_hook_fn fn;
        void *ctx;
    } hooks[LP_HOOK_POINT_COUNT];
};

/* ---- state.json ------------------------------------------------------- */

typedef struct lp_agent_release {
    uint64_t id;
    char *version;
    int64_t installed_at;
} lp_agent_release;

typedef struct lp_agent_bad {
    uint64_t id;
    char *reason;
    int64_t at;
} lp_agent_bad;

typedef struct lp_agent_pending {
    uint64_t id;
    int64_t since;
    uint32_t launches;
    int64_t window_s;
    uint32_t max_launches;
} lp_agent_pending;

typedef enum lp_agent_switch_op {
    LP_SWITCH_NONE = 0,
    LP_SWITCH_UPDATE = 1,
    LP_SWITCH_ROLLBACK = 2,
} lp_agent_switch_op;

/* A switch of `current` that was decided and may be under way: written
 * before the symlink changes, cleared by the state write after it. */
typedef struct lp_agent_switch {
    lp_agent_switch_op op;
    uint64_t from; /* 0: nothing was current */
    uint64_t to;
    int64_t at;
    char *reason;  /* rollbacks */
} lp_agent_switch;

typedef struct lp_agent_state {
    uint64_t current;  /* 0: none */
    uint64_t previous; /* 0: none */
    bool has_pending;
    lp_agent_pending pending;
    lp_agent_switch sw;
    /* Release switched to whose post-update hooks have not succeeded yet
     * (0: none); activating it again runs them. */
    uint64_t post_update_due;
    lp_agent_release *releases; /* installed, in install order */
    size_t release_count;
    lp_agent_bad *bad;
    size_t bad_count;
    int64_t last_check; /* 0: never */
    char *last_error;   /* NULL: none */
    int64_t last_error_at;
} lp_agent_state;

void lp_agent_state_init(lp_agent_state *s);
void lp_agent_state_free(lp_agent_state *s);

/* Parses state.json bytes strictly; `where` (the file's path) starts every
 * message, followed by the field: "<path>: pending.launches: expected an
 * integer".  *s is initialised here and empty on failure. */
lp_status lp_agent_state_parse(const void *data, size_t len, const char *where,
                               lp_agent_state *s, lp_error *err);
/* The JSON text of *s (new malloc'd string, *len without the NUL). */
lp_status lp_agent_state_format(const lp_agent_state *s, char **out, size_t *len,
                                lp_error *err);

/* Reads <dir>/state.json; a missing file gives the empty state and
 * *existed = false (existed may be NULL). */
lp_status lp_agent_state_read(lp_updater *u, lp_agent_state *s, bool *existed, lp_error *err);
/* Writes it atomically (crash point "state:before-commit" sits between the
 * write of the temporary file and its rename). */
lp_status lp_agent_state_write(lp_updater *u, const lp_agent_state *s, lp_error *err);

lp_agent_release *lp_agent_state_release(const lp_agent_state *s, uint64_t id);
const lp_agent_bad *lp_agent_state_bad(const lp_agent_state *s, uint64_t id);
lp_status lp_agent_state_add_release(lp_agent_state *s, uint64_t id, const char *version,
                                     int64_t at, lp_error *err);
void lp_agent_state_remove_release(lp_agent_state *s, uint64_t id);
/* Adds id to the bad list (updating the reason if present); the oldest
 * entries go when the list is full. */
lp_status lp_agent_state_add_bad(lp_agent_state *s, uint64_t id, const char *reason, int64_t at,
                                 lp_error *err);
/* Sets last_error (msg NULL clears it); long messages are cut. */
lp_status lp_agent_state_set_error(lp_agent_state *s, const char *msg, int64_t at,
                                   lp_error *err);
/* The version label of release id ("" for 0; the id in decimal when the
 * release is unknown), in buf. */
const char *lp_agent_version_of(const lp_agent_state *s, uint64_t id, char *buf, size_t cap);

/* ---- sessions ---------------------------------------------------------- */

/* Locks the root, reads state.json and reconciles it with the file system
 * (light: the symlink, release folders), writing it back if that changed
 * anything.  On failure the lock is released and *s is empty. */
lp_status lp_agent_begin(lp_updater *u, lp_agent_state *s, lp_error *err);
/* Frees *s and releases the lock. */
void lp_agent_end(lp_updater *u, lp_agent_state *s);

/* The advisory locks (flock, waiting at most lock_timeout_ms). */
lp_status lp_agent_lock(lp_updater *u, lp_error *err);
void lp_agent_unlock(lp_updater *u);

/* ---- recovery (recover.c) -------------------------------------------------- */

/* Reconciles *s with the file system (see lp_updater_recover); `full` adds
 * the folder scans and leftover removal.  *changed says whether *s changed.
 * The lock must be held. */
lp_status lp_agent_reconcile(lp_updater *u, lp_agent_state *s, bool full, bool *changed,
                             lp_error *err);

/* ---- the switch (activate.c) -------------------------------------------------- */

/* The state after switch s->sw completed (the symlink points to s->sw.to);
 * clears s->sw.  `now` becomes the probation start. */
lp_status lp_agent_apply_switch(lp_updater *u, lp_agent_state *s, int64_t now, lp_error *err);

/* ---- layout (layout.c) ------------------------------------------------------ */

/* "<root>/<formatted>" as a new malloc'd string, NULL when out of memory. */
char *lp_agent_path(const lp_updater *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The release `current` points to: 0 when there is no symlink.
 * LP_ERR_STATE when it is not a symlink to "releases/<id>". */
lp_status lp_agent_read_current(lp_updater *u, uint64_t *id, lp_error *err);

/* Parses a decimal id (1..LP_AGENT_MAX_ID, no sign, no leading zero). */
bool lp_agent_parse_id(const char *s, uint64_t *id);

/* True if <root>/releases/<id> is a folder. */
bool lp_agent_release_exists(lp_updater *u, uint64_t id);

/* Removes `path` and everything below it without following symlinks
 * (ENOENT is fine). */
lp_status lp_agent_rmtree(const char *path, lp_error *err);

/* Writes a file atomically like lp_file_write_atomic, with crash point
 * `point` between the write of the temporary file and its rename. */
lp_status lp_agent_write_file(lp_updater *u, const char *path, const void *data, size_t len,
                              mode_t mode, const char *point, lp_error *err);

/* fsyncs the folder `path`. */
lp_status lp_agent_sync_dir(const char *path, lp_error *err);

/* Takes (nonblocking) or releases the staging lock; *got says whether it
 * was free. */
lp_status lp_agent_stage_lock(lp_updater *u, bool *got, lp_error *err);
void lp_agent_stage_unlock(lp_updater *u);

/* ---- hooks (hooks.c) ----------------------------------------------------------- */

/* Runs the C hook then the executable hook of info->point.  LP_ERR_STATE
 * (with the hook's name, exit status and output) when one fails. */
lp_status lp_agent_run_hooks(lp_updater *u, const lp_hook_info *info, lp_error *err);

/* ---- crash points (crash.c) ------------------------------------------------------ */

/* Which test scenario reaches a point (see tests/unit/test_agent_crash.c). */
#define LP_CRASH_IN_UPDATE 1u   /* staging and activating a release over another */
#define LP_CRASH_IN_ROLLBACK 2u /* rolling back from a release on probation */

typedef struct lp_crash_point_info {
    const char *name;
    unsigned scenarios; /* LP_CRASH_IN_* */
    const char *where;  /* what has happened when it is reached */
} lp_crash_point_info;

/* The table of every crash point. */
const lp_crash_point_info *lp_agent_crash_points(size_t *count);
/* True if `name` is in the table. */
bool lp_agent_crash_point_known(const char *name);
/* Kills the process with SIGKILL if u->crash_at names this point and this
 * is the N-th time it is reached.  Every call site names a table entry. */
void lp_agent_crash_point(lp_updater *u, const char *name);

/* ---- the record of checked files (checked.c) ------------------------------ */

/* A file's identity when its content was checked: any write changes it. */
typedef struct lp_agent_fileid {
    uint64_t ino;
    uint64_t size;
    int64_t mtime_s;
    int64_t mtime_ns;
    bool known; /* false: not checked */
} lp_agent_fileid;

void lp_agent_fileid_of(const struct stat *sb, lp_agent_fileid *out);
/* The clock file timestamps come from (coarse real time). */
void lp_agent_clock_now(struct timespec *now);
/* True when the file was last modified before `checked_at` (a time from
 * lp_agent_clock_now taken before its content was checked): only then may
 * its identity be noted, since a later write is sure to change it. */
bool lp_agent_fileid_settled(const struct stat *sb, const struct timespec *checked_at);
/* True when `noted` is known and `sb` still has that identity. */
bool lp_agent_fileid_same(const lp_agent_fileid *noted, const struct stat *sb);

/* Reads the record of release `id`, whose manifest has `files` file
 * entries, into a new array of that many identities (*out, caller frees;
 * NULL when files is 0).  No record, or a damaged one or one of another
 * length, gives all unknown: only LP_ERR_NOMEM fails. */
lp_status lp_agent_checked_load(const lp_updater *u, uint64_t id, size_t files,
                                lp_agent_fileid **out, lp_error *err);
/* Replaces the record of release `id` atomically. */
lp_status lp_agent_checked_write(const lp_updater *u, uint64_t id, const lp_agent_fileid *ids,
                                 size_t files, lp_error *err);
/* Deletes the record of release `id` (none is fine). */
void lp_agent_checked_remove(const lp_updater *u, uint64_t id);

#endif
