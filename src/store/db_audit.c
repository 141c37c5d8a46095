/*
 * db_audit.c — the database front for the audit log: input checks, the
 * canonical form of details, the entry hash, appending, listing and
 * verifying the chain (see include/livepush/db.h and docs/audit.md).
 *
 * One function makes an entry's hash, for appending and for verifying
 * alike: a JSON object of the eight fields (app and subject null when
 * absent, details the parsed object) in canonical JSON
 * (tuf/json.h: lp_cjson_encode, the securesystemslib form), SHA-256, hex.
 * Details are stored in that same canonical form and must parse back to
 * it, so the stored text is exactly the bytes the hash covers and anyone
 * can recompute it with their own JSON library.  Strings in details may
 * not hold control characters: canonical JSON writes them raw, and a raw
 * control character is not JSON any other parser would read back.
 *
 * Appending runs in the write bracket of db.c (lp_db_write_begin/end): it
 * joins the caller's transaction or opens its own, and reads the newest
 * entry inside it, so with writers serialised the new seq and prev_hash
 * can never be taken by another appender in between.
 *
 * Verifying walks the table through the back end's audit_walk, one row at
 * a time, keeping only the previous entry's seq and hash: memory does not
 * grow with the log.  Each row is judged from its stored columns as they
 * are (a NULL, a non-integer time, text that is not UTF-8 or details that
 * are not canonical all make the entry "changed"), and the walk stops at
 * the first problem, which the report names with the entry's seq.
 */
#include "store/db_backend.h"

#include "core/buf.h"
#include "core/timeutil.h"
#include "livepush/hash.h"
#include "tuf/json.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char ZERO_HASH[] = "0000000000000000000000000000000000000000000000000000000000000000";

/* ---- input checks ---------------------------------------------------------- */

static lp_status check_action(const char *s, lp_error *err)
{
    if (!s)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "audit action: missing");
    size_t n = strnlen(s, LP_DB_AUDIT_ACTION_MAX + 1);
    if (n == 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "audit action: empty");
    if (n > LP_DB_AUDIT_ACTION_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "audit action: longer than %d bytes",
                            LP_DB_AUDIT_ACTION_MAX);
    if (s[0] < 'a' || s[0] > 'z')
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "audit action: must start with a lower-case letter");
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_' || s[i] == '.'))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "audit action: character %zu (0x%02x) is not allowed "
                                "(allowed: a-z _ .)",
                                i + 1, (unsigned char)s[i]);
    return LP_OK;
}

/* Text of 1..max bytes of UTF-8 without control characters (actor,
 * subject). */
static lp_status check_label(const char *field, const char *s, size_t max, lp_error *err)
{
    if (!s)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: missing", field);
    size_t n = strnlen(s, max + 1);
    if (n == 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: empty", field);
    if (n > max)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "%s: longer than %zu bytes", field, max);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "%s: character %zu (0x%02x) is a control character", field,
                                i + 1, c);
    }
    json_t *probe = json_stringn(s, n); /* jansson refuses invalid UTF-8 */
    if (!probe)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "%s: not valid UTF-8", field);
    json_decref(probe);
    return LP_OK;
}

/* Parses `text` (NULL: "{}") as the details object and makes its canonical
 * form: *obj (new reference) and *canon (malloc'd, NUL-terminated). */
static lp_status canonical_details(const char *text, json_t **obj, char **canon, lp_error *err)
{
    *obj = NULL;
    *canon = NULL;
    if (!text)
        text = "{}";
    size_t n = strnlen(text, LP_DB_AUDIT_DETAILS_MAX + 1);
    if (n > LP_DB_AUDIT_DETAILS_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "audit details: longer than %d bytes",
                            LP_DB_AUDIT_DETAILS_MAX);
    lp_json_limits lim = {.max_bytes = LP_DB_AUDIT_DETAILS_MAX,
                          .max_depth = LP_DB_AUDIT_DETAILS_DEPTH};
    json_t *v = NULL;
    lp_status st = lp_json_parse(text, n, &lim, &v, err);
    if (st)
        return lp_error_prefix(err, st, "audit details");
    if (!json_is_object(v)) {
        json_decref(v);
        return lp_error_set(err, LP_ERR_INVALID_ARG, "audit details: not a JSON object");
    }
    char *c = NULL;
    size_t len = 0;
    st = lp_cjson_dumps(v, &c, &len, err);
    if (st) {
        json_decref(v);
        return lp_error_prefix(err, st, "audit details");
    }
    if (len > LP_DB_AUDIT_DETAILS_MAX)
        st = lp_error_set(err, LP_ERR_TOO_LARGE, "audit details: longer than %d bytes",
                          LP_DB_AUDIT_DETAILS_MAX);
    for (size_t i = 0; !st && i < len; i++)
        if ((unsigned char)c[i] < 0x20)
            st = lp_error_set(err, LP_ERR_INVALID_ARG,
                              "audit details: a string holds a control character (0x%02x)",
                              (unsigned char)c[i]);
    if (st) {
        free(c);
        json_decref(v);
        return st;
    }
    *obj = v;
    *canon = c;
    return LP_OK;
}

/* ---- the entry hash ---------------------------------------------------------- */

static lp_db_audit_text text_of(const char *s)
{
    lp_db_audit_text t = {s, s ? strlen(s) : 0};
    return t;
}

/* Sets member `key` of o to the string t (null when t.s is NULL).  False
 * when t is not valid UTF-8 (or out of memory). */
static bool set_text(json_t *o, const char *key, lp_db_audit_text t)
{
    json_t *v = t.s ? json_stringn(t.s, t.len) : json_null();
    return v && json_object_set_new(o, key, v) == 0;
}

/* The hex SHA-256 of the canonical JSON of an entry (see the top).  The
 * row's own hash column is not used.  LP_ERR_MALFORMED naming the field
 * (*bad, may be NULL) whose text is not valid UTF-8. */
static lp_status entry_hash(const lp_db_audit_row *r, json_t *details, char out[65],
                            const char **bad, lp_error *err)
{
    static const char *const names[] = {"actor", "action", "app", "subject", "prev_hash"};
    const lp_db_audit_text texts[] = {r->actor, r->action, r->app, r->subject, r->prev_hash};
    if (bad)
        *bad = NULL;
    json_t *o = json_object();
    if (!o || json_object_set_new(o, "seq", json_integer(r->seq)) != 0 ||
        json_object_set_new(o, "at", json_integer(r->at)) != 0 ||
        json_object_set(o, "details", details) != 0) {
        json_decref(o);
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory hashing an audit entry");
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!set_text(o, names[i], texts[i])) {
            json_decref(o);
            if (bad)
                *bad = names[i];
            return lp_error_set(err, LP_ERR_MALFORMED, "audit entry %lld: %s is not valid UTF-8",
                                (long long)r->seq, names[i]);
        }
    }
    lp_buf b;
    lp_buf_init(&b, 0);
    lp_status st = lp_cjson_encode(o, &b, err);
    json_decref(o);
    uint8_t d[LP_HASH_MAX_LEN];
    if (!st)
        st = lp_hash_buf(LP_HASH_SHA256, b.data, b.len, d, err);
    lp_buf_free(&b);
    if (st)
        return lp_error_prefix(err, st, "hashing audit entry %lld", (long long)r->seq);
    lp_hex_encode(d, LP_SHA256_LEN, out);
    return LP_OK;
}

/* ---- appending --------------------------------------------------------------- */

lp_status lp_db_audit_append(lp_db *db, const lp_db_audit_new *e, lp_db_audit_head *head_out,
                             lp_error *err)
{
    if (head_out)
        memset(head_out, 0, sizeof *head_out);
    if (!db)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle");
    if (!e)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "audit entry: missing");
    TRY(check_label("audit actor", e->actor, LP_DB_AUDIT_ACTOR_MAX, err));
    TRY(check_action(e->action, err));
    if (e->app)
        TRY(lp_db_check_name("audit app", e->app, err));
    if (e->subject)
        TRY(check_label("audit subject", e->subject, LP_DB_AUDIT_SUBJECT_MAX, err));
    if (e->at < 0 || e->at > LP_DB_TIME_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "audit at: %lld is not from 0 to %lld",
                            (long long)e->at, (long long)LP_DB_TIME_MAX);
    json_t *details = NULL;
    char *canon = NULL;
    TRY(canonical_details(e->details, &details, &canon, err));

    lp_db_audit_head last = {0};
    lp_db_audit_entry row = {.at = e->at ? e->at : lp_time_now(),
                             .actor = (char *)e->actor,
                             .action = (char *)e->action,
                             .app = (char *)e->app,
                             .subject = (char *)e->subject,
                             .details = canon};
    bool own = false;
    lp_status st = lp_db_write_begin(db, &own, err);
    if (st)
        goto out;
    st = db->ops->audit_last(db, &last, err);
    if (!st && last.seq > 0 && lp_db_check_sha256("hash", last.hash, NULL) != LP_OK)
        st = lp_error_set(err, LP_ERR_MALFORMED,
                          "audit entry %lld: its stored hash is not 64 hex digits (the log was "
                          "changed: run livepush audit verify)",
                          (long long)last.seq);
    if (!st && last.seq >= INT64_MAX)
        st = lp_error_set(err, LP_ERR_TOO_LARGE, "audit log: no entry number left");
    if (!st) {
        row.seq = last.seq + 1;
        memcpy(row.prev_hash, last.seq > 0 ? last.hash : ZERO_HASH, 65);
        lp_db_audit_row r = {.seq = row.seq,
                             .at_is_int = true,
                             .at = row.at,
                             .actor = text_of(row.actor),
                             .action = text_of(row.action),
                             .app = text_of(row.app),
                             .subject = text_of(row.subject),
                             .prev_hash = text_of(row.prev_hash)};
        st = entry_hash(&r, details, row.hash, NULL, err);
    }
    if (!st)
        st = db->ops->audit_insert(db, &row, err);
    if (st)
        lp_error_prefix(err, st, "audit log: appending %s", e->action);
    st = lp_db_write_end(db, own, st, err);
    if (!st && head_out) {
        head_out->seq = row.seq;
        memcpy(head_out->hash, row.hash, sizeof head_out->hash);
    }
out:
    json_decref(details);
    free(canon);
    return st;
}

lp_status lp_db_audit_head_get(lp_db *db, lp_db_audit_head *out, lp_error *err)
{
    if (!db || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle or output");
    memset(out, 0, sizeof *out);
    lp_status st = db->ops->audit_last(db, out, err);
    if (st)
        memset(out, 0, sizeof *out);
    return st;
}

/* ---- listing ----------------------------------------------------------------- */

typedef struct list_ctx {
    lp_db_audit_list *out;
    size_t cap;
} list_ctx;

/* A malloc'd copy of t (NULL stays NULL, unless `required`: then ""). */
static bool dup_text(lp_db_audit_text t, bool required, char **out)
{
    *out = NULL;
    if (!t.s && !required)
        return true;
    char *c = malloc(t.len + 1);
    if (!c)
        return false;
    if (t.len)
        memcpy(c, t.s, t.len);
    c[t.len] = '\0';
    *out = c;
    return true;
}

static void copy_hash(lp_db_audit_text t, char out[65])
{
    size_t n = t.s ? (t.len < 64 ? t.len : 64) : 0;
    if (n)
        memcpy(out, t.s, n);
    out[n] = '\0';
}

static lp_status list_row(void *c, const lp_db_audit_row *r, bool *stop, lp_error *err)
{
    (void)stop;
    list_ctx *l = c;
    if (l->out->count == l->cap) {
        size_t ncap = l->cap ? 2 * l->cap : 16;
        lp_db_audit_entry *n = realloc(l->out->items, ncap * sizeof *n);
        if (!n)
            return lp_error_set(err, LP_ERR_NOMEM, "out of memory listing the audit log");
        l->out->items = n;
        l->cap = ncap;
    }
    lp_db_audit_entry *e = &l->out->items[l->out->count];
    memset(e, 0, sizeof *e);
    e->seq = r->seq;
    e->at = r->at;
    copy_hash(r->prev_hash, e->prev_hash);
    copy_hash(r->hash, e->hash);
    l->out->count++; /* counted now, so a partial entry is freed with the list */
    if (!dup_text(r->actor, true, &e->actor) || !dup_text(r->action, true, &e->action) ||
        !dup_text(r->app, false, &e->app) || !dup_text(r->subject, false, &e->subject) ||
        !dup_text(r->details, true, &e->details))
        return lp_error_set(err, LP_ERR_NOMEM, "out of memory listing the audit log");
    return LP_OK;
}

lp_status lp_db_audit_list_entries(lp_db *db, const char *app, int64_t after_seq, size_t limit,
                                   lp_db_audit_list *out, lp_error *err)
{
    if (!db || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle or output");
    memset(out, 0, sizeof *out);
    if (app)
        TRY(lp_db_check_name("app", app, err));
    if (after_seq < 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "after: %lld is negative",
                            (long long)after_seq);
    if (limit > LP_DB_LIST_MAX)
        return lp_error_set(err, LP_ERR_TOO_LARGE, "limit: %zu, at most %d", limit,
                            LP_DB_LIST_MAX);
    list_ctx l = {.out = out};
    lp_status st =
        db->ops->audit_walk(db, app, after_seq, limit ? limit : LP_DB_LIST_MAX, list_row, &l, err);
    if (st)
        lp_db_audit_list_free(out);
    return st;
}

void lp_db_audit_entry_free(lp_db_audit_entry *e)
{
    if (!e)
        return;
    free(e->actor);
    free(e->action);
    free(e->app);
    free(e->subject);
    free(e->details);
    memset(e, 0, sizeof *e);
}

void lp_db_audit_list_free(lp_db_audit_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        lp_db_audit_entry_free(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

/* ---- verifying --------------------------------------------------------------- */

typedef struct verify_ctx {
    const lp_db_audit_head *expected;
    lp_db_audit_report *out;
    char prev_hash[65]; /* hash of entry out->head.seq (ZERO_HASH before entry 1) */
} verify_ctx;

/* What is wrong with the stored fields of r, apart from the hashes ("" when
 * nothing), and, when nothing is, its hash recomputed into `hash`. */
static lp_status judge_row(const lp_db_audit_row *r, char hash[65], char *why, size_t cap,
                           lp_error *err)
{
    why[0] = '\0';
    hash[0] = '\0';
    if (!r->actor.s || !r->action.s || !r->details.s || !r->prev_hash.s || !r->hash.s) {
        snprintf(why, cap, "a field that every entry has is empty (NULL)");
        return LP_OK;
    }
    if (!r->at_is_int) {
        snprintf(why, cap, "its time is not an integer");
        return LP_OK;
    }
    if (r->details.len > LP_DB_AUDIT_DETAILS_MAX) {
        snprintf(why, cap, "its details are longer than %d bytes", LP_DB_AUDIT_DETAILS_MAX);
        return LP_OK;
    }
    lp_json_limits lim = {.max_bytes = LP_DB_AUDIT_DETAILS_MAX,
                          .max_depth = LP_DB_AUDIT_DETAILS_DEPTH};
    json_t *details = NULL;
    lp_error perr;
    if (lp_json_parse(r->details.s, r->details.len, &lim, &details, &perr) != LP_OK ||
        !json_is_object(details)) {
        json_decref(details);
        snprintf(why, cap, "its details are not a JSON object");
        return LP_OK;
    }
    char *canon = NULL;
    size_t len = 0;
    lp_status st = lp_cjson_dumps(details, &canon, &len, &perr);
    if (st == LP_ERR_NOMEM) {
        json_decref(details);
        return lp_error_set(err, st, "%s", perr.msg);
    }
    if (st || len != r->details.len || memcmp(canon, r->details.s, len) != 0) {
        free(canon);
        json_decref(details);
        snprintf(why, cap, "its details are not in canonical form");
        return LP_OK;
    }
    free(canon);
    const char *bad = NULL;
    st = entry_hash(r, details, hash, &bad, err);
    json_decref(details);
    if (st == LP_ERR_MALFORMED && bad) {
        snprintf(why, cap, "its %s is not valid UTF-8", bad);
        return LP_OK;
    }
    return st;
}

static void report_set(lp_db_audit_report *o, lp_db_audit_problem p, int64_t seq,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void report_set(lp_db_audit_report *o, lp_db_audit_problem p, int64_t seq,
                       const char *fmt, ...)
{
    o->problem = p;
    o->seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->message, sizeof o->message, fmt, ap);
    va_end(ap);
}

static lp_status verify_row(void *c, const lp_db_audit_row *r, bool *stop, lp_error *err)
{
    verify_ctx *v = c;
    lp_db_audit_report *o = v->out;
    int64_t prev = o->head.seq, want = prev + 1;
    *stop = true; /* unless the entry is good */
    if (r->seq < want) {
        report_set(o, LP_DB_AUDIT_CHANGED, r->seq,
                   "audit entry %lld was changed: %lld is not a valid entry number here",
                   (long long)r->seq, (long long)r->seq);
        return LP_OK;
    }
    if (r->seq > want) {
        o->seq_end = r->seq - 1;
        if (prev == 0 && want == o->seq_end)
            report_set(o, LP_DB_AUDIT_MISSING, want,
                       "audit entry %lld is missing (the log starts at entry %lld)",
                       (long long)want, (long long)r->seq);
        else if (prev == 0)
            report_set(o, LP_DB_AUDIT_MISSING, want,
                       "audit entries %lld to %lld are missing (the log starts at entry %lld)",
                       (long long)want, (long long)o->seq_end, (long long)r->seq);
        else if (want == o->seq_end)
            report_set(o, LP_DB_AUDIT_MISSING, want,
                       "audit entry %lld is missing (entries go from %lld to %lld)",
                       (long long)want, (long long)prev, (long long)r->seq);
        else
            report_set(o, LP_DB_AUDIT_MISSING, want,
                       "audit entries %lld to %lld are missing (entries go from %lld to %lld)",
                       (long long)want, (long long)o->seq_end, (long long)prev,
                       (long long)r->seq);
        return LP_OK;
    }
    char hash[65], why[128];
    TRY(judge_row(r, hash, why, sizeof why, err));
    if (why[0]) {
        report_set(o, LP_DB_AUDIT_CHANGED, r->seq, "audit entry %lld was changed: %s",
                   (long long)r->seq, why);
        return LP_OK;
    }
    if (r->hash.len != 64 || memcmp(r->hash.s, hash, 64) != 0) {
        report_set(o, LP_DB_AUDIT_CHANGED, r->seq,
                   "audit entry %lld was changed: its hash does not match its contents",
                   (long long)r->seq);
        return LP_OK;
    }
    if (r->prev_hash.len != 64 || memcmp(r->prev_hash.s, v->prev_hash, 64) != 0) {
        if (prev == 0)
            report_set(o, LP_DB_AUDIT_UNLINKED, r->seq,
                       "audit entry %lld was changed: the first entry's prev_hash must be 64 "
                       "zeros",
                       (long long)r->seq);
        else
            report_set(o, LP_DB_AUDIT_UNLINKED, r->seq,
                       "audit entry %lld does not follow entry %lld: its prev_hash is not the "
                       "hash of entry %lld (one of the two was replaced)",
                       (long long)r->seq, (long long)prev, (long long)prev);
        return LP_OK;
    }
    if (v->expected && v->expected->seq == r->seq && strcmp(v->expected->hash, hash) != 0) {
        report_set(o, LP_DB_AUDIT_HEAD_DIFFERS, r->seq,
                   "audit entry %lld differs from the expected head: its hash is %s, the head "
                   "says %s",
                   (long long)r->seq, hash, v->expected->hash);
        return LP_OK;
    }
    o->entries++;
    o->head.seq = r->seq;
    memcpy(o->head.hash, hash, 65);
    memcpy(v->prev_hash, hash, 65);
    *stop = false;
    return LP_OK;
}

lp_status lp_db_audit_verify(lp_db *db, const lp_db_audit_head *expected,
                             lp_db_audit_report *out, lp_error *err)
{
    if (!db || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "database: no handle or output");
    memset(out, 0, sizeof *out);
    if (expected && expected->seq < 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "expected audit head: seq %lld is negative",
                            (long long)expected->seq);
    if (expected && expected->seq > 0)
        TRY(lp_db_check_sha256("expected audit head: hash", expected->hash, err));
    verify_ctx v = {.expected = expected, .out = out};
    memcpy(v.prev_hash, ZERO_HASH, 65);
    lp_status st = db->ops->audit_walk(db, NULL, INT64_MIN, 0, verify_row, &v, err);
    if (st) {
        lp_error_prefix(err, st, "verifying the audit log");
        memset(out, 0, sizeof *out);
        return st;
    }
    if (out->problem != LP_DB_AUDIT_INTACT)
        return LP_OK;
    if (expected && expected->seq > out->head.seq) {
        if (out->head.seq == 0)
            report_set(out, LP_DB_AUDIT_SHORT, expected->seq,
                       "audit log is empty but the expected head is entry %lld: entries were "
                       "removed",
                       (long long)expected->seq);
        else
            report_set(out, LP_DB_AUDIT_SHORT, expected->seq,
                       "audit log ends at entry %lld but the expected head is entry %lld: the "
                       "newest entries were removed",
                       (long long)out->head.seq, (long long)expected->seq);
        return LP_OK;
    }
    if (out->entries == 0)
        snprintf(out->message, sizeof out->message, "audit log intact: 0 entries (it is empty)");
    else
        snprintf(out->message, sizeof out->message, "audit log intact: %lld %s, head %lld %s",
                 (long long)out->entries, out->entries == 1 ? "entry" : "entries",
                 (long long)out->head.seq, out->head.hash);
    return LP_OK;
}
