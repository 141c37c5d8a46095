/*
 * api_audit.c — the audit log, read back (docs/api.md, docs/audit.md):
 *
 *     GET /api/v1/audit?app=&after=&limit=    admin   entries, oldest first
 *
 * Entries are listed in seq order from the one after `after` (0: from the
 * first), of one app when `app` is given, at most `limit` (1..1000,
 * default 50).  The page's "next" is the seq to pass as after= for the next
 * page (null on the last one), found by asking for one entry more than the
 * page holds, as the devices list does.  "head" is the seq of the newest
 * entry of the whole log (0: empty): entries are numbered without gaps, so
 * a client shows the newest N with after=head-N (the dashboard does).
 *
 * An entry is shown as stored, hashes included, so a client can recompute
 * the chain itself (docs/audit.md gives the hash); its details are the
 * stored canonical JSON object, parsed.  Reading the log is for admins:
 * it names every token's id and what each did.  This route answers what the
 * server's database says; `livepush audit verify` checks the database
 * itself, without trusting the server.
 */
#include "server/api.h"
#include "server/auth.h"

#include "tuf/json.h"

#include <stdio.h>
#include <string.h>

#define PAGE_DEFAULT 50
#define PAGE_MAX 1000

typedef struct query_check {
    const char *bad; /* first unknown argument */
} query_check;

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    (void)value;
    query_check *q = cls;
    if (strcmp(key, "app") && strcmp(key, "after") && strcmp(key, "limit")) {
        q->bad = key;
        return MHD_NO;
    }
    return MHD_YES;
}

/* Query argument `name` as a decimal integer in [min, max] into *out (left
 * alone when absent); false with the 400 answered when it is not one. */
static bool query_int(lp_http_request *rq, const char *name, int64_t min, int64_t max,
                      int64_t *out)
{
    const char *s = lp_api_query(rq, name);
    if (!s)
        return true;
    int64_t v = 0;
    bool ok = *s && strlen(s) <= 18;
    for (const char *p = s; ok && *p; p++) {
        ok = *p >= '0' && *p <= '9';
        v = v * 10 + (*p - '0');
    }
    if (!ok || v < min || v > max) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "query '%s': expected a number from %lld to %lld", name,
                              (long long)min, (long long)max);
        return false;
    }
    *out = v;
    return true;
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* An entry as the API shows it; details that no longer parse (the entry
 * was changed) are shown as the stored text. */
static json_t *entry_json(const lp_db_audit_entry *e)
{
    json_t *details = NULL;
    lp_json_limits lim = {.max_bytes = LP_DB_AUDIT_DETAILS_MAX + 1};
    if (!e->details ||
        lp_json_parse(e->details, strlen(e->details), &lim, &details, NULL) != LP_OK)
        details = e->details ? json_string(e->details) : json_null();
    return json_pack("{s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:s,s:s}", "seq", (json_int_t)e->seq, "at",
                     (json_int_t)e->at, "actor", str_or_null(e->actor), "action",
                     str_or_null(e->action), "app", str_or_null(e->app), "subject",
                     str_or_null(e->subject), "details", details ? details : json_null(),
                     "prev_hash", e->prev_hash, "hash", e->hash);
}

static void list_audit(lp_http_request *rq, void *user)
{
    lp_service *svc = user;
    lp_auth who;
    if (!lp_auth_require(rq, svc, LP_SCOPE_ADMIN, &who))
        return;
    query_check q = {0};
    MHD_get_connection_values(lp_http_connection(rq), MHD_GET_ARGUMENT_KIND, check_arg, &q);
    if (q.bad) {
        lp_http_respond_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "query '%.64s': unknown parameter (known: app, after, limit)",
                              q.bad);
        return;
    }
    int64_t after = 0, limit = PAGE_DEFAULT;
    if (!query_int(rq, "after", 0, INT64_MAX / 10, &after) ||
        !query_int(rq, "limit", 1, PAGE_MAX, &limit))
        return;
    const char *app = lp_api_query(rq, "app");
    if (app && !*app)
        app = NULL;
    lp_db *db = NULL;
    if (!lp_api_db(rq, svc, &db))
        return;
    lp_error err;
    lp_error_clear(&err);
    lp_db_audit_list list = {0};
    lp_db_audit_head head = {0};
    lp_status st = lp_db_audit_list_entries(db, app, after, (size_t)limit + 1, &list, &err);
    if (!st)
        st = lp_db_audit_head_get(db, &head, &err);
    lp_service_db_release(svc, db);
    if (st) {
        if (st == LP_ERR_INVALID_ARG || st == LP_ERR_TOO_LARGE)
            lp_error_prefix(&err, st, "query");
        lp_api_respond_status(rq, st, &err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < list.count && i < (size_t)limit; i++)
        json_array_append_new(arr, entry_json(&list.items[i]));
    json_t *next = list.count > (size_t)limit ? json_integer(list.items[limit - 1].seq)
                                               : json_null();
    lp_db_audit_list_free(&list);
    lp_api_respond(rq, MHD_HTTP_OK, json_pack("{s:o,s:o,s:I}", "entries", arr, "next", next,
                                              "head", (json_int_t)head.seq));
}

lp_status lp_api_add_audit_routes(lp_http_server *s, lp_service *svc, lp_error *err)
{
    return lp_http_server_route(s, "GET", "/api/v1/audit", list_audit, svc, err);
}
