/*
 * service_audit.c — the server's side of the audit log (see service.h and
 * docs/audit.md): appending entries for the service and the routes, and
 * the head file audit.head.
 *
 * The entries themselves live in the database (lp_db_audit_append), which
 * checks, canonicalises, numbers and chains them inside the caller's
 * transaction or its own.  What the database cannot protect is its own
 * newest entries: whoever can delete rows can cut the tail and leave a
 * chain that is whole.  So after every committed entry the server appends
 * the entry's head {"seq":N,"hash":"..."} as one line to audit.head,
 * opened O_APPEND and fsync'd (the folder too when the file is new), and
 * `livepush audit verify` checks the log against the file's last line.
 * The file only grows, like the log; each line is written with one
 * write(2) under audit_mu, and only for an entry newer than the last one
 * this server wrote, so the last line is always the newest head (two
 * threads may commit in one order and anchor in the other: the older head
 * is then skipped, since the newer one covers it through the chain).  A
 * line torn by a crash has no newline; the next line starts on a line of
 * its own, and a reader takes the last complete line.  Servers that share
 * one data folder (on PostgreSQL) share the file too: each append holds an
 * flock on it and is skipped when the file's last line already names an
 * entry as new or newer (another server's), so the last line stays the
 * newest head whichever server wrote it.
 *
 * Writing the file happens after the commit, so a failure there cannot
 * undo the action: it is logged as an error and the next entry's line
 * covers the missed one.
 */
#include "server/service_priv.h"

#include "core/file.h"
#include "tuf/json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Longest head line read back: {"seq":<19 digits>,"hash":"<64>"} is 94
 * bytes; a line much longer is not one. */
#define HEAD_LINE_MAX 256
/* Bytes read from the end of the file to find its last line. */
#define HEAD_TAIL 4096

void lp_service_audit_actor(const char *token_id, char out[LP_DB_AUDIT_ACTOR_MAX + 1])
{
    snprintf(out, LP_DB_AUDIT_ACTOR_MAX + 1, "token:%s", token_id ? token_id : "");
}

const char *lp_service_audit_head_path(const lp_service *s)
{
    return s->audit_head;
}

/* ---- the head file ----------------------------------------------------------- */

static lp_status write_head(const char *path, const lp_db_audit_head *h, lp_error *err)
{
    char line[HEAD_LINE_MAX];
    /* A leading newline when the file ends in a torn line. */
    int n = snprintf(line + 1, sizeof line - 1, "{\"seq\":%lld,\"hash\":\"%s\"}\n",
                     (long long)h->seq, h->hash);
    bool existed = lp_file_exists(path);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return lp_error_set(err, LP_ERR_IO, "open %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return lp_error_set(err, LP_ERR_IO, "lock %s: %s", path, strerror(e));
        }
    }
    lp_db_audit_head newest;
    bool found = false;
    lp_error rerr;
    if (existed && lp_service_audit_head_read(path, &newest, &found, &rerr) == LP_OK && found &&
        newest.seq >= h->seq) {
        close(fd); /* another server wrote a newer head: it covers this one */
        return LP_OK;
    }
    struct stat sb;
    char last = '\n';
    lp_status st = LP_OK;
    if (fstat(fd, &sb) != 0)
        st = lp_error_set(err, LP_ERR_IO, "stat %s: %s", path, strerror(errno));
    if (!st && sb.st_size > 0) {
        int rfd = open(path, O_RDONLY | O_CLOEXEC);
        if (rfd < 0 || pread(rfd, &last, 1, sb.st_size - 1) != 1)
            st = lp_error_set(err, LP_ERR_IO, "read %s: %s", path, strerror(errno));
        if (rfd >= 0)
            close(rfd);
    }
    line[0] = '\n';
    const char *from = last == '\n' ? line + 1 : line;
    size_t len = (size_t)n + (last == '\n' ? 0 : 1);
    if (!st)
        st = lp_file_write_all(fd, from, len, path, err);
    if (!st && fsync(fd) != 0)
        st = lp_error_set(err, LP_ERR_IO, "fsync %s: %s", path, strerror(errno));
    if (close(fd) != 0 && !st)
        st = lp_error_set(err, LP_ERR_IO, "close %s: %s", path, strerror(errno));
    if (!st && !existed)
        st = lp_file_sync_parent(path, err);
    return st;
}

void lp_service_audit_anchor(lp_service *s, const lp_db_audit_head *head)
{
    if (!head || head->seq <= 0 || !s->audit_head)
        return;
    lp_error err;
    lp_error_clear(&err);
    lp_status st = LP_OK;
    pthread_mutex_lock(&s->audit_mu);
    if (head->seq > s->audit_anchored) {
        st = write_head(s->audit_head, head, &err);
        if (!st)
            s->audit_anchored = head->seq;
    }
    pthread_mutex_unlock(&s->audit_mu);
    if (st && s->log)
        lp_log_event(s->log, LP_LOG_ERROR,
                     "audit head not written: the entry is committed, but nothing outside the "
                     "database records it until the next entry's head is written",
                     json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)head->seq, "file",
                               s->audit_head, "error", err.msg));
}

static bool is_hex64(const char *h, bool any_case)
{
    if (!h || strlen(h) != 64)
        return false;
    for (size_t i = 0; i < 64; i++) {
        char c = h[i];
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                  (any_case && c >= 'A' && c <= 'F');
        if (!ok)
            return false;
    }
    return true;
}

/* Parses one head line (without its newline). */
static lp_status parse_line(const char *path, const char *line, size_t len,
                            lp_db_audit_head *out, lp_error *err)
{
    json_t *doc = NULL;
    lp_json_limits lim = {.max_bytes = HEAD_LINE_MAX, .max_depth = 2};
    lp_error perr;
    bool ok = lp_json_parse(line, len, &lim, &doc, &perr) == LP_OK && json_is_object(doc) &&
              json_object_size(doc) == 2;
    json_t *seq = ok ? json_object_get(doc, "seq") : NULL;
    const char *hash = ok ? json_string_value(json_object_get(doc, "hash")) : NULL;
    ok = ok && json_is_integer(seq) && json_integer_value(seq) >= 1 && is_hex64(hash, false);
    if (ok) {
        out->seq = json_integer_value(seq);
        memcpy(out->hash, hash, 65);
    }
    json_decref(doc);
    if (!ok)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "%s: its last line is not {\"seq\":N,\"hash\":\"<64 hex digits>\"}",
                            path);
    return LP_OK;
}

lp_status lp_service_audit_head_read(const char *path, lp_db_audit_head *out, bool *found,
                                     lp_error *err)
{
    memset(out, 0, sizeof *out);
    *found = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return LP_OK;
    if (fd < 0)
        return lp_error_set(err, LP_ERR_IO, "open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "%s: not a regular file", path);
    }
    char buf[HEAD_TAIL + 1];
    off_t from = sb.st_size > HEAD_TAIL ? sb.st_size - HEAD_TAIL : 0;
    size_t want = (size_t)(sb.st_size - from), got = 0;
    while (got < want) {
        ssize_t r = pread(fd, buf + got, want - got, from + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            close(fd);
            return lp_error_set(err, LP_ERR_IO, "read %s: %s", path, strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    /* The last complete line: up to the last newline, skipping empty lines. */
    size_t end = got;
    while (end > 0 && buf[end - 1] != '\n')
        end--; /* a torn last line (no newline) is not a line */
    while (end > 0 && buf[end - 1] == '\n')
        end--;
    if (end == 0)
        return LP_OK;
    size_t start = end;
    while (start > 0 && buf[start - 1] != '\n')
        start--;
    if (start == 0 && from > 0)
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: its last line is longer than %d bytes",
                            path, HEAD_TAIL);
    lp_status st = parse_line(path, buf + start, end - start, out, err);
    if (!st)
        *found = true;
    return st;
}

lp_status lp_service_audit_head_parse(const char *text, lp_db_audit_head *out, lp_error *err)
{
    memset(out, 0, sizeof *out);
    const char *colon = text ? strchr(text, ':') : NULL;
    size_t ndigits = colon ? (size_t)(colon - text) : 0;
    bool ok = colon && ndigits >= 1 && ndigits <= 18 && is_hex64(colon + 1, true);
    int64_t seq = 0;
    for (size_t i = 0; ok && i < ndigits; i++) {
        ok = text[i] >= '0' && text[i] <= '9';
        seq = seq * 10 + (text[i] - '0');
    }
    if (!ok || seq < 1)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "audit head '%.100s': expected SEQ:HASH (an entry number of 1 or "
                            "more, a colon, 64 hex digits)",
                            text ? text : "");
    out->seq = seq;
    for (size_t i = 0; i < 64; i++) {
        char c = colon[1 + i];
        out->hash[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
    }
    out->hash[64] = '\0';
    return LP_OK;
}

/* ---- opening ------------------------------------------------------------------- */

/* Logs an error when the database does not hold the entry the head file's
 * last line names (its newest entries were removed or rewritten). */
static void check_head(lp_service *s)
{
    lp_db_audit_head head;
    bool found = false;
    lp_error err;
    lp_error_clear(&err);
    lp_status st = lp_service_audit_head_read(s->audit_head, &head, &found, &err);
    if (!st && !found)
        return;
    lp_db *db = NULL;
    lp_db_audit_list one = {0};
    if (!st)
        st = lp_service_db_acquire(s, &db, &err);
    if (!st)
        st = lp_db_audit_list_entries(db, NULL, head.seq - 1, 1, &one, &err);
    lp_service_db_release(s, db);
    bool same = !st && one.count == 1 && one.items[0].seq == head.seq &&
                strcmp(one.items[0].hash, head.hash) == 0;
    if (!st && !same)
        snprintf(err.msg, sizeof err.msg,
                 "the database %s audit entry %lld that %s records: its newest entries were "
                 "removed or rewritten (run livepush audit verify)",
                 one.count == 1 && one.items[0].seq == head.seq ? "holds another" : "lacks the",
                 (long long)head.seq, s->audit_head);
    if ((st || !same) && s->log)
        lp_log_event(s->log, LP_LOG_ERROR, "audit log does not match its head file",
                     json_pack("{s:s,s:s}", "file", s->audit_head, "error", err.msg));
    lp_db_audit_list_free(&one);
}

lp_status lp_service_audit_open(lp_service *s, const char *db_url, lp_error *err)
{
    char *dir = NULL;
    if (db_url && strncmp(db_url, "sqlite:", 7) == 0) {
        const char *path = db_url + 7;
        const char *slash = strrchr(path, '/');
        dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    } else {
        dir = strdup(s->data_dir);
    }
    s->audit_head = dir ? lp_path_join(dir, LP_SERVICE_AUDIT_HEAD) : NULL;
    free(dir);
    if (!s->audit_head)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    check_head(s);
    return LP_OK;
}

/* ---- appending ------------------------------------------------------------------ */

lp_status lp_service_audit_db(lp_service *s, lp_db *db, const char *actor, const char *action,
                              const char *app, const char *subject, json_t *details,
                              lp_db_audit_head *pending, lp_error *err)
{
    if (pending)
        memset(pending, 0, sizeof *pending);
    bool in_tx = lp_db_in_transaction(db);
    if (in_tx && !pending) {
        json_decref(details);
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "audit %s: inside a transaction the caller records the head after "
                            "the commit",
                            action ? action : "entry");
    }
    char *text = NULL;
    if (details) {
        text = json_dumps(details, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(details);
        if (!text)
            return lp_error_set(err, LP_ERR_NOMEM, "audit %s: out of memory",
                                action ? action : "entry");
    }
    lp_db_audit_new e = {.actor = actor, .action = action, .app = app, .subject = subject,
                         .details = text};
    lp_db_audit_head h;
    lp_status st = lp_db_audit_append(db, &e, &h, err);
    free(text);
    if (st)
        return st;
    if (in_tx)
        *pending = h;
    else
        lp_service_audit_anchor(s, &h);
    return LP_OK;
}

lp_status lp_service_audit(lp_service *s, const char *actor, const char *action,
                           const char *app, const char *subject, json_t *details,
                           lp_error *err)
{
    lp_error local;
    if (!err)
        err = &local;
    lp_db *db = NULL;
    lp_status st = lp_service_db_acquire(s, &db, err);
    if (st)
        json_decref(details);
    else
        st = lp_service_audit_db(s, db, actor, action, app, subject, details, NULL, err);
    lp_service_db_release(s, db);
    if (st && s->log)
        lp_log_event(s->log, LP_LOG_ERROR, "audit entry not written",
                     json_pack("{s:s?,s:s?,s:s?,s:s}", "action", action, "app", app, "actor",
                               actor, "error", err->msg));
    return st;
}

static json_t *channels_json(const char *const *channels, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        if (json_array_append_new(arr, json_string(channels[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    return arr;
}

json_t *lp_service_audit_release(const lp_db_release *rel)
{
    return json_pack("{s:s,s:I,s:o,s:s}", "version", rel->version, "version_code",
                     (json_int_t)rel->version_code, "channels",
                     channels_json((const char *const *)rel->channels, rel->n_channels),
                     "manifest_sha256", rel->manifest_sha256);
}

lp_status lp_service_audit_insert(lp_service *s, lp_db *db, const lp_db_app *app,
                                  const lp_db_release_new *rel, lp_db_audit_head *pending,
                                  lp_error *err)
{
    char actor[LP_DB_AUDIT_ACTOR_MAX + 1] = "server";
    if (rel->created_by)
        lp_service_audit_actor(rel->created_by, actor);
    bool prepared = rel->state && strcmp(rel->state, LP_DB_STATE_PENDING) == 0;
    const char *action = rel->rollback_of ? (prepared ? "rollback.prepared" : "rollback.published")
                                          : (prepared ? "release.prepared" : "release.published");
    json_t *d = json_pack("{s:s,s:I,s:o,s:s}", "version", rel->version, "version_code",
                          (json_int_t)rel->version_code, "channels",
                          channels_json(rel->channels, rel->n_channels), "manifest_sha256",
                          rel->manifest_sha256);
    if (!d)
        return lp_error_set(err, LP_ERR_NOMEM, "audit %s: out of memory", action);
    if (rel->rollback_of) {
        lp_db_release old = {0};
        lp_status st = lp_db_release_get(db, rel->rollback_of, &old, err);
        if (!st)
            json_object_set_new(d, "restores",
                                json_pack("{s:s,s:I}", "version", old.version, "version_code",
                                          (json_int_t)old.version_code));
        lp_db_release_free(&old);
        if (st) {
            json_decref(d);
            return st;
        }
    }
    return lp_service_audit_db(s, db, actor, action, app->name, rel->version, d, pending, err);
}
