/*
 * checked.c — the record of which files of a release have had their content
 * checked, so that nothing is read twice.
 *
 * Staging checks the content of every file it fetches or copies (SHA-256
 * while writing or copying).  Files it hard-links from an installed release
 * share that release's inode, and lp_updater_verify used to read them all
 * back before activation, which made applying a one-file change cost as
 * much as reading the whole tree.  Instead, whenever the content of a file
 * has been checked, the updater notes the file's identity as the file
 * system sees it: inode number, size and modification time (seconds and
 * nanoseconds).  Any write to the file, truncation included, changes its
 * modification time, so a file whose identity is still the one noted holds
 * the content that was checked; one that differs in anything is read again.
 * (Hard-linking, unlinking and chmod change only the inode's change time,
 * which is therefore not part of the identity: otherwise pruning an old
 * release would make every shared file look changed.)
 *
 * Timestamps are taken from a clock that advances in ticks of a few
 * milliseconds, so a write in the same tick as the previous one may leave
 * the modification time as it was.  An identity is therefore noted only
 * when the file was last modified in a tick before the one in which its
 * content was checked (lp_agent_fileid_settled): any later write then gets
 * a later time.  A file written in the current tick is simply read again
 * next time.  Staging notes the files it wrote itself in its private
 * staging folder when it has finished them all.
 *
 * The record of release <id> is .livepush/manifests/<id>.checked, a text
 * file with one line per *file* entry of the release's manifest, in manifest
 * order:
 *
 *     livepush-checked 1 <number of file entries>
 *     <inode> <size> <mtime seconds> <mtime nanoseconds>
 *     -                                   (not checked)
 *
 * It is written atomically by staging (for the files it checked, and for
 * links whose source still had the identity its own record noted) and by
 * lp_updater_verify (for every file, after reading the ones not covered).
 * It is only ever a shortcut: a missing, damaged or stale record means the
 * files are read, never that a check is skipped wrongly.  The setting
 * verify_all of lp_updater_config ignores it (bit rot in a file nobody
 * wrote to is only found by reading).  Recovery removes the records of
 * releases that are not installed, like their manifests.
 */
#include "agent/agent.h"

#include "core/buf.h"
#include "core/file.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RECORD_MAGIC "livepush-checked 1"
#define LINE_MAX_BYTES 96u

void lp_agent_fileid_of(const struct stat *sb, lp_agent_fileid *out)
{
    out->ino = (uint64_t)sb->st_ino;
    out->size = (uint64_t)sb->st_size;
    out->mtime_s = (int64_t)sb->st_mtim.tv_sec;
    out->mtime_ns = (int64_t)sb->st_mtim.tv_nsec;
    out->known = true;
}

void lp_agent_clock_now(struct timespec *now)
{
    if (clock_gettime(CLOCK_REALTIME_COARSE, now) != 0)
        clock_gettime(CLOCK_REALTIME, now);
}

bool lp_agent_fileid_settled(const struct stat *sb, const struct timespec *checked_at)
{
    return sb->st_mtim.tv_sec < checked_at->tv_sec ||
           (sb->st_mtim.tv_sec == checked_at->tv_sec && sb->st_mtim.tv_nsec < checked_at->tv_nsec);
}

bool lp_agent_fileid_same(const lp_agent_fileid *noted, const struct stat *sb)
{
    return noted && noted->known && noted->ino == (uint64_t)sb->st_ino &&
           noted->size == (uint64_t)sb->st_size && noted->mtime_s == (int64_t)sb->st_mtim.tv_sec &&
           noted->mtime_ns == (int64_t)sb->st_mtim.tv_nsec;
}

static char *record_path(const lp_updater *u, uint64_t id)
{
    return lp_agent_path(u, ".livepush/manifests/%llu.checked", (unsigned long long)id);
}

/* Parses one line (without its newline) into *out; false if malformed. */
static bool parse_line(const char *s, lp_agent_fileid *out)
{
    memset(out, 0, sizeof *out);
    if (strcmp(s, "-") == 0)
        return true;
    uint64_t ino, size;
    int64_t sec, nsec;
    int used = 0;
    if (sscanf(s, "%" SCNu64 " %" SCNu64 " %" SCNd64 " %" SCNd64 "%n", &ino, &size, &sec, &nsec,
               &used) != 4 ||
        s[used] != '\0' || nsec < 0 || nsec > 999999999)
        return false;
    *out = (lp_agent_fileid){.ino = ino, .size = size, .mtime_s = sec, .mtime_ns = nsec,
                             .known = true};
    return true;
}

lp_status lp_agent_checked_load(const lp_updater *u, uint64_t id, size_t files,
                                lp_agent_fileid **out, lp_error *err)
{
    *out = NULL;
    lp_agent_fileid *ids = files ? calloc(files, sizeof *ids) : NULL;
    if (files && !ids)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    char *p = record_path(u, id);
    if (!p) {
        free(ids);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    }
    FILE *f = fopen(p, "re");
    free(p);
    *out = ids;
    if (!f)
        return LP_OK; /* no record: nothing known */
    char line[LINE_MAX_BYTES];
    char head[64];
    snprintf(head, sizeof head, "%s %zu", RECORD_MAGIC, files);
    bool ok = fgets(line, sizeof line, f) && strcspn(line, "\n") == strlen(head) &&
              strncmp(line, head, strlen(head)) == 0;
    for (size_t i = 0; ok && i < files; i++) {
        ok = fgets(line, sizeof line, f) != NULL;
        size_t n = ok ? strcspn(line, "\n") : 0;
        ok = ok && line[n] == '\n';
        if (ok) {
            line[n] = '\0';
            ok = parse_line(line, &ids[i]);
        }
    }
    ok = ok && fgetc(f) == EOF;
    fclose(f);
    if (!ok) /* damaged or from another manifest: know nothing */
        memset(ids, 0, files * sizeof *ids);
    return LP_OK;
}

lp_status lp_agent_checked_write(const lp_updater *u, uint64_t id, const lp_agent_fileid *ids,
                                 size_t files, lp_error *err)
{
    char *p = record_path(u, id);
    if (!p)
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory");
    lp_buf b;
    lp_buf_init(&b, 0);
    lp_status st = lp_buf_printf(&b, err, "%s %zu\n", RECORD_MAGIC, files);
    for (size_t i = 0; !st && i < files; i++) {
        if (!ids[i].known)
            st = lp_buf_append_str(&b, "-\n", err);
        else
            st = lp_buf_printf(&b, err, "%" PRIu64 " %" PRIu64 " %" PRId64 " %" PRId64 "\n",
                               ids[i].ino, ids[i].size, ids[i].mtime_s, ids[i].mtime_ns);
    }
    if (!st)
        st = lp_file_write_atomic(p, b.data, b.len, 0600, err);
    if (st)
        lp_error_prefix(err, st, "writing %s", p);
    lp_buf_free(&b);
    free(p);
    return st;
}

void lp_agent_checked_remove(const lp_updater *u, uint64_t id)
{
    char *p = record_path(u, id);
    if (p)
        unlink(p);
    free(p);
}
