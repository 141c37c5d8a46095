/*
 * api_print.c — summaries and tables of management API objects (see
 * api_print.h).  Every field is read with a fallback, so whatever the server
 * sends, the output is complete lines; control characters in values are
 * shown as '?', so a value cannot move the cursor or rewrite the terminal.
 */
#include "cli/api_print.h"

#include "cli/api_client.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- tables ---------------------------------------------------------------- */

void lp_table_init(lp_table *t, size_t ncols, const char *const *titles)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols > LP_TABLE_MAX_COLS ? LP_TABLE_MAX_COLS : ncols;
    lp_table_add(t, titles);
}

/* A copy of s for the terminal: control characters become '?'. */
static char *clean_dup(const char *s)
{
    if (!s || !*s)
        s = "-";
    char *d = strdup(s);
    if (d)
        for (char *p = d; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    return d;
}

void lp_table_add(lp_table *t, const char *const *cells)
{
    if (t->failed)
        return;
    if (t->nrows == t->cap) {
        size_t ncap = t->cap ? 2 * t->cap : 16;
        char **n = realloc(t->cells, ncap * t->ncols * sizeof *n);
        if (!n) {
            t->failed = 1;
            return;
        }
        t->cells = n;
        t->cap = ncap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        row[i] = clean_dup(cells[i]);
        if (!row[i]) {
            for (size_t j = 0; j < i; j++)
                free(row[j]);
            t->failed = 1;
            return;
        }
    }
    t->nrows++;
}

void lp_table_print_free(lp_table *t, FILE *f)
{
    size_t w[LP_TABLE_MAX_COLS] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t i = 0; i < t->ncols; i++) {
            size_t l = strlen(t->cells[r * t->ncols + i]);
            if (l > w[i])
                w[i] = l;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *cell = t->cells[r * t->ncols + i];
            if (i + 1 == t->ncols)
                fprintf(f, "%s\n", cell);
            else
                fprintf(f, "%-*s  ", (int)w[i], cell);
            free(t->cells[r * t->ncols + i]);
        }
    }
    if (t->failed)
        fprintf(f, "(out of memory: the table is incomplete)\n");
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* ---- values ------------------------------------------------------------------ */

void lp_print_join(const json_t *arr, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = 0;
    size_t i;
    const json_t *v;
    if (json_is_array(arr)) {
        json_array_foreach(arr, i, v)
        {
            if (!json_is_string(v))
                continue;
            int n = snprintf(out + used, cap - used, "%s%s", used ? ", " : "", json_string_value(v));
            if (n < 0 || (size_t)n >= cap - used) {
                used = cap - 1;
                break;
            }
            used += (size_t)n;
        }
    }
    if (!out[0])
        snprintf(out, cap, "-");
}

static void line(FILE *f, const char *label, const char *value)
{
    char *v = clean_dup(value);
    fprintf(f, "%-13s %s\n", label, v ? v : "-");
    free(v);
}

/* A value of several lines (release notes): the first after the label, the
 * others indented under it; a final line break is dropped. */
static void block(FILE *f, const char *label, const char *value)
{
    char *v = strdup(value && *value ? value : "-");
    if (!v) {
        line(f, label, "-");
        return;
    }
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == '\n' || v[n - 1] == '\r'))
        v[--n] = 0;
    char *save = NULL, *l = strtok_r(v, "\n", &save);
    line(f, label, l ? l : "-");
    while ((l = strtok_r(NULL, "\n", &save)))
        line(f, "", l);
    free(v);
}

static const char *str_or_dash(const json_t *o, const char *k)
{
    const char *s = lp_client_str(o, k);
    return *s ? s : "-";
}

static void time_str(const json_t *o, const char *k, char out[24])
{
    lp_client_format_time(lp_client_int(o, k, 0), out);
}

static void rollback_str(const json_t *rel, char *out, size_t cap)
{
    const json_t *rb = json_object_get(rel, "rollback_of");
    if (json_is_object(rb))
        snprintf(out, cap, "%s (code %lld)", str_or_dash(rb, "version"),
                 lp_client_int(rb, "version_code", 0));
    else
        snprintf(out, cap, "-");
}

/* A release's targeting rules in one line ("-" when none): "from codes
 * 5..9; region=eu; model=a1|a2; 3 devices". */
static void targeting_str(const json_t *rel, char *out, size_t cap)
{
    const json_t *t = json_object_get(rel, "targeting");
    if (!json_is_object(t) || !json_object_size(t)) {
        snprintf(out, cap, "-");
        return;
    }
    size_t n = 0;
    out[0] = '\0';
    const json_t *min = json_object_get(t, "min_from_code");
    const json_t *max = json_object_get(t, "max_from_code");
    if (min || max) {
        char lo[24] = "0", hi[24] = "";
        if (min)
            snprintf(lo, sizeof lo, "%lld", (long long)json_integer_value(min));
        if (max)
            snprintf(hi, sizeof hi, "%lld", (long long)json_integer_value(max));
        n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "from codes %s..%s", lo, hi);
    }
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)json_object_get(t, "attributes"), k, v)
    {
        if (n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%s%s=", n ? "; " : "", k);
        if (json_is_string(v) && n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%s", json_string_value(v));
        for (size_t i = 0; json_is_array(v) && i < json_array_size(v) && n < cap; i++)
            n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "|" : "",
                                  json_string_value(json_array_get(v, i)));
    }
    const json_t *d = json_object_get(t, "devices");
    if (json_is_array(d) && n < cap)
        snprintf(out + n, cap - n, "%s%zu device%s", n ? "; " : "", json_array_size(d),
                 json_array_size(d) == 1 ? "" : "s");
}

/* The "approvals" lines of a release of an app whose publisher signs:
 * "2 of 3 (1 missing)" or "2 of 2 (the quorum is met)", then one line per
 * release key saying whether it approved.  Nothing for other releases. */
static void approvals_lines(const json_t *rel, FILE *f)
{
    const json_t *a = json_object_get(rel, "approvals");
    if (!json_is_object(a))
        return;
    char buf[256];
    long long missing = lp_client_int(a, "missing", 0);
    if (missing > 0)
        snprintf(buf, sizeof buf, "%lld of %lld (%lld missing)", lp_client_int(a, "present", 0),
                 lp_client_int(a, "required", 0), missing);
    else
        snprintf(buf, sizeof buf, "%lld of %lld (the quorum is met)",
                 lp_client_int(a, "present", 0), lp_client_int(a, "required", 0));
    line(f, "approvals", buf);
    size_t i;
    const json_t *k;
    json_array_foreach(json_object_get(a, "keys"), i, k)
    {
        snprintf(buf, sizeof buf, "%-12s key %s",
                 json_is_true(json_object_get(k, "approved")) ? "approved" : "not approved",
                 str_or_dash(k, "keyid"));
        line(f, "", buf);
    }
}

void lp_print_release(const json_t *rel, FILE *f)
{
    char buf[512], t[24], b[16];
    line(f, "release", str_or_dash(rel, "version"));
    snprintf(buf, sizeof buf, "%lld", lp_client_int(rel, "version_code", 0));
    line(f, "version code", buf);
    line(f, "app", str_or_dash(rel, "app"));
    lp_print_join(json_object_get(rel, "channels"), buf, sizeof buf);
    line(f, "channels", buf);
    line(f, "state", str_or_dash(rel, "state"));
    approvals_lines(rel, f);
    rollback_str(rel, buf, sizeof buf);
    line(f, "rollback of", buf);
    time_str(rel, "created_at", t);
    snprintf(buf, sizeof buf, "%s (by token %s)", t, str_or_dash(rel, "created_by"));
    line(f, "created", buf);
    line(f, "runtime", str_or_dash(rel, "runtime_version"));
    line(f, "platform", str_or_dash(rel, "platform"));
    line(f, "arch", str_or_dash(rel, "arch"));
    line(f, "mandatory", json_is_true(json_object_get(rel, "mandatory")) ? "yes" : "no");
    targeting_str(rel, buf, sizeof buf);
    line(f, "targeting", buf);
    block(f, "notes", str_or_dash(rel, "notes"));
    lp_client_format_bytes((uint64_t)lp_client_int(rel, "bytes", 0), b);
    long long files = lp_client_int(rel, "files", 0);
    snprintf(buf, sizeof buf, "%lld file%s, %s", files, files == 1 ? "" : "s", b);
    line(f, "content", buf);
    const json_t *m = json_object_get(rel, "manifest");
    snprintf(buf, sizeof buf, "%s (%lld bytes, sha256 %s)", str_or_dash(m, "target"),
             lp_client_int(m, "size", 0), str_or_dash(m, "sha256"));
    line(f, "manifest", buf);
    const json_t *d = json_object_get(rel, "deltas");
    if (json_is_object(d)) {
        lp_client_format_bytes((uint64_t)lp_client_int(d, "bytes", 0), b);
        snprintf(buf, sizeof buf, "%lld made (%s), %lld pending, %lld too large, %lld failed",
                 lp_client_int(d, "made", 0), b, lp_client_int(d, "pending", 0),
                 lp_client_int(d, "too_large", 0), lp_client_int(d, "failed", 0));
        line(f, "deltas", buf);
    }
}

void lp_print_release_table(const json_t *releases, FILE *f)
{
    static const char *const titles[] = {"CODE",  "VERSION", "CHANNELS", "STATE",
                                         "FILES", "SIZE",    "CREATED",  "ROLLBACK OF"};
    lp_table t;
    lp_table_init(&t, 8, titles);
    size_t i;
    const json_t *rel;
    json_array_foreach(releases, i, rel)
    {
        char code[24], ch[256], files[24], size[16], created[24], rb[160];
        snprintf(code, sizeof code, "%lld", lp_client_int(rel, "version_code", 0));
        lp_print_join(json_object_get(rel, "channels"), ch, sizeof ch);
        snprintf(files, sizeof files, "%lld", lp_client_int(rel, "files", 0));
        lp_client_format_bytes((uint64_t)lp_client_int(rel, "bytes", 0), size);
        time_str(rel, "created_at", created);
        rollback_str(rel, rb, sizeof rb);
        /* a pending release of an app whose publisher signs: its approvals */
        char st[64];
        const json_t *a = json_object_get(rel, "approvals");
        if (json_is_object(a))
            snprintf(st, sizeof st, "%s (%lld of %lld)", lp_client_str(rel, "state"),
                     lp_client_int(a, "present", 0), lp_client_int(a, "required", 0));
        else
            snprintf(st, sizeof st, "%s", lp_client_str(rel, "state"));
        const char *cells[] = {code,  lp_client_str(rel, "version"), ch,      st,
                               files, size,                        created, rb};
        lp_table_add(&t, cells);
    }
    lp_table_print_free(&t, f);
}

void lp_print_app(const json_t *answer, const char *server, FILE *f)
{
    const json_t *app = json_object_get(answer, "app");
    char buf[1024], t[24];
    line(f, "app", str_or_dash(app, "name"));
    time_str(app, "created_at", t);
    line(f, "created", t);
    line(f, "signing", str_or_dash(app, "signing"));
    snprintf(buf, sizeof buf, "%s%s", server, str_or_dash(app, "metadata_url"));
    line(f, "metadata", buf);
    snprintf(buf, sizeof buf, "%s%s", server, str_or_dash(app, "targets_url"));
    line(f, "targets", buf);
    const json_t *chans = json_object_get(answer, "channels");
    size_t used = 0, i;
    const json_t *ch;
    buf[0] = 0;
    if (json_is_array(chans)) {
        json_array_foreach(chans, i, ch)
        {
            int n = snprintf(buf + used, sizeof buf - used, "%s%s", used ? ", " : "",
                             str_or_dash(ch, "name"));
            if (n < 0 || (size_t)n >= sizeof buf - used)
                break;
            used += (size_t)n;
        }
    }
    line(f, "channels", buf[0] ? buf : "-");
    const json_t *latest = json_object_get(answer, "latest");
    if (json_is_object(latest)) {
        char chs[256];
        lp_print_join(json_object_get(latest, "channels"), chs, sizeof chs);
        time_str(latest, "created_at", t);
        snprintf(buf, sizeof buf, "%s (code %lld) on %s, %s", str_or_dash(latest, "version"),
                 lp_client_int(latest, "version_code", 0), chs, t);
        line(f, "latest", buf);
    } else {
        line(f, "latest", "- (no release yet)");
    }
}

static void scopes_str(const json_t *tok, char *out, size_t cap)
{
    lp_print_join(json_object_get(tok, "scopes"), out, cap);
}

void lp_print_token_table(const json_t *tokens, FILE *f)
{
    static const char *const titles[] = {"ID", "NAME", "SCOPES", "CREATED", "LAST USED", "REVOKED"};
    lp_table t;
    lp_table_init(&t, 6, titles);
    size_t i;
    const json_t *tok;
    json_array_foreach(tokens, i, tok)
    {
        char sc[256], created[24], used[24], revoked[24];
        scopes_str(tok, sc, sizeof sc);
        time_str(tok, "created_at", created);
        time_str(tok, "last_used_at", used);
        time_str(tok, "revoked_at", revoked);
        const char *cells[] = {lp_client_str(tok, "id"), lp_client_str(tok, "name"), sc, created, used,
                               revoked};
        lp_table_add(&t, cells);
    }
    lp_table_print_free(&t, f);
}

void lp_print_token(const json_t *tok, FILE *f)
{
    char sc[256], t[24];
    line(f, "token", str_or_dash(tok, "id"));
    line(f, "name", str_or_dash(tok, "name"));
    scopes_str(tok, sc, sizeof sc);
    line(f, "scopes", sc);
    time_str(tok, "created_at", t);
    line(f, "created", t);
    time_str(tok, "last_used_at", t);
    line(f, "last used", t);
    time_str(tok, "revoked_at", t);
    line(f, "revoked", t);
}

void lp_print_audit_table(const json_t *entries, FILE *f)
{
    static const char *const titles[] = {"SEQ", "AT",      "ACTOR",  "ACTION",
                                         "APP", "SUBJECT", "DETAILS"};
    lp_table t;
    lp_table_init(&t, 7, titles);
    size_t i;
    const json_t *e;
    json_array_foreach(entries, i, e)
    {
        char seq[24], at[24], details[96] = "-";
        snprintf(seq, sizeof seq, "%lld", lp_client_int(e, "seq", 0));
        time_str(e, "at", at);
        const json_t *d = json_object_get(e, "details");
        char *text = json_is_object(d) && json_object_size(d)
                         ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS)
                         : NULL;
        if (text) {
            /* one line, cut with "..." when long */
            snprintf(details, sizeof details, "%s", text);
            if (strlen(text) >= sizeof details)
                memcpy(details + sizeof details - 4, "...", 4);
            free(text);
        }
        const char *cells[] = {seq,
                               at,
                               lp_client_str(e, "actor"),
                               lp_client_str(e, "action"),
                               lp_client_str(e, "app"),
                               lp_client_str(e, "subject"),
                               details};
        lp_table_add(&t, cells);
    }
    lp_table_print_free(&t, f);
}
