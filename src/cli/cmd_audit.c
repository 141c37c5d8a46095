/*
 * cmd_audit.c — `livepush audit`: the server's audit log (docs/audit.md).
 *
 *   livepush audit list [--app A] [--after SEQ] [--limit N]
 *       GET /api/v1/audit through the server (an admin token): entries
 *       oldest first, a page ending with the --after value of the next one;
 *       --app here filters (it has no default, unlike the other commands)
 *   livepush audit verify --db URL [--head FILE | --expect SEQ:HASH]
 *       opens the database itself (not through the server, whose word it
 *       checks) and walks the whole chain: every entry's hash, every link,
 *       no gap; and that the log still holds the head recorded outside it:
 *       the last line of FILE (default: audit.head next to a sqlite:
 *       database file, when there is one) or the SEQ:HASH an operator noted
 *
 * verify prints one line on stdout and exits 0 when the log is intact
 * ("audit log intact: N entries, head SEQ HASH"), 1 when it is not (the
 * line names the first bad entry: "audit entry 17 was changed: ...") or
 * when the check could not be made (the reason on stderr), 2 for a usage
 * error.  Without a head (no file, no --expect) it says so on stderr: the
 * removal of the newest entries cannot be seen then.
 */
#include "cli/api_client.h"
#include "cli/api_print.h"
#include "cli/cli.h"
#include "livepush/db.h"
#include "server/service.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage_text[] =
    "usage: livepush audit list [--app APP] [--after SEQ] [--limit N] [options]\n"
    "       livepush audit verify --db URL [--head FILE | --expect SEQ:HASH]\n"
    "\n"
    "The server's audit log: every management action and automatic decision,\n"
    "hash-chained (docs/audit.md).\n"
    "\n"
    "list: the entries, oldest first, through the server (an admin token).\n"
    "  --app APP        only the entries about APP (default: all)\n"
    "  --after SEQ      only the entries after entry SEQ (the next page)\n"
    "  --limit N        at most N entries (1..1000, default 50)\n"
    "\n"
    "verify: checks the database file itself, not through the server: every\n"
    "entry's hash and link, no entry missing, and that the log still holds the\n"
    "head recorded outside it.  Exit 0: intact; 1: not intact (the first bad\n"
    "entry is named) or the check failed; 2: usage error.\n"
    "  --db URL         the server's database (sqlite:/path/to/livepush.db)\n"
    "  --head FILE      the head file to check against (default: audit.head\n"
    "                   next to a sqlite database, when it exists)\n"
    "  --expect SEQ:HASH  a head noted earlier (for example from `verify`'s\n"
    "                   output, kept away from the server)\n"
    "\n" LP_CLIENT_OPTIONS_HELP;

static int usage_error(const char *msg)
{
    fprintf(stderr, "livepush audit: %s\n(see 'livepush audit --help')\n", msg);
    return LP_EXIT_USAGE;
}

/* ---- list ------------------------------------------------------------------------- */

static int run_list(const lp_client_opts *o, const char *after, const char *limit)
{
    lp_error err;
    lp_error_clear(&err);
    long long v;
    if ((after && lp_client_parse_int(after, "--after", 0, INT64_MAX / 10, &v, &err)) ||
        (limit && lp_client_parse_int(limit, "--limit", 1, 1000, &v, &err))) {
        fprintf(stderr, "livepush audit list: %s\n", err.msg);
        return LP_EXIT_USAGE;
    }
    lp_client *c = NULL;
    int rc = lp_client_open(o, "audit list", &c);
    if (rc >= 0)
        return rc;
    /* The path with the given arguments, each escaped. */
    const char *names[] = {"app", "after", "limit"};
    const char *values[] = {o->app, after, limit};
    char path[512];
    size_t used = (size_t)snprintf(path, sizeof path, "/api/v1/audit");
    lp_status st = LP_OK;
    for (size_t i = 0; !st && i < 3; i++) {
        if (!values[i])
            continue;
        char *esc = lp_client_escape(values[i]);
        if (!esc)
            st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
        else if (used + strlen(names[i]) + strlen(esc) + 3 > sizeof path)
            st = lp_error_set(&err, LP_ERR_INVALID_ARG, "--%s: too long", names[i]);
        else
            used += (size_t)snprintf(path + used, sizeof path - used, "%c%s=%s",
                                     strchr(path, '?') ? '&' : '?', names[i], esc);
        free(esc);
    }
    json_t *ans = NULL;
    if (!st)
        st = lp_client_request(c, "GET", path, NULL, &ans, &err);
    if (!st && o->json) {
        lp_client_print_json(ans);
    } else if (!st) {
        const json_t *entries = json_object_get(ans, "entries");
        if (json_array_size(entries) == 0)
            printf("no audit entries\n");
        else
            lp_print_audit_table(entries, stdout);
        long long next = lp_client_int(ans, "next", 0);
        if (next > 0)
            printf("(more: --after %lld)\n", next);
    }
    rc = st ? lp_client_fail(c, st, &err, "audit list") : LP_EXIT_OK;
    json_decref(ans);
    lp_client_free(c);
    return rc;
}

/* ---- verify ----------------------------------------------------------------------- */

/* "<folder of PATH>/audit.head" for a sqlite:PATH URL, else NULL. */
static char *default_head(const char *url)
{
    if (strncmp(url, "sqlite:", 7) != 0)
        return NULL;
    const char *path = url + 7;
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
    size_t cap = dir + sizeof LP_SERVICE_AUDIT_HEAD;
    char *out = malloc(cap);
    if (out)
        snprintf(out, cap, "%.*s%s", (int)dir, path, LP_SERVICE_AUDIT_HEAD);
    return out;
}

static int run_verify(const char *url, const char *head_file, const char *expect)
{
    if (!url)
        return usage_error("verify needs --db (e.g. --db sqlite:/var/lib/livepush/livepush.db)");
    if (head_file && expect)
        return usage_error("give --head or --expect, not both");
    lp_error err;
    lp_error_clear(&err);
    lp_db_audit_head expected = {0};
    bool have_expected = false;
    char *source = NULL; /* what recorded the expected head, for messages */
    if (expect) {
        if (lp_service_audit_head_parse(expect, &expected, &err))
            return usage_error(err.msg);
        have_expected = true;
        source = strdup("--expect");
    }
    /* Never create a database while checking one. */
    struct stat sb;
    if (strncmp(url, "sqlite:", 7) == 0 && stat(url + 7, &sb) != 0) {
        fprintf(stderr, "livepush audit verify: no database file %s\n", url + 7);
        free(source);
        return LP_EXIT_FAIL;
    }
    if (!expect) {
        char *file = head_file ? strdup(head_file) : default_head(url);
        bool found = false;
        lp_status st = LP_OK;
        if (file && head_file && stat(file, &sb) != 0)
            st = lp_error_set(&err, LP_ERR_NOT_FOUND, "head file %s does not exist", file);
        if (!st && file)
            st = lp_service_audit_head_read(file, &expected, &found, &err);
        if (st) {
            free(file);
            return lp_cli_fail(&err, "audit verify");
        }
        if (found) {
            have_expected = true;
            source = file;
        } else {
            fprintf(stderr,
                    "livepush audit verify: no head recorded%s%s: removed newest entries "
                    "cannot be detected (give --head or --expect)\n",
                    file ? " in " : "", file ? file : "");
            free(file);
        }
    }
    lp_db *db = NULL;
    lp_db_audit_report rep;
    lp_status st = lp_db_open(url, &db, &err);
    if (!st)
        st = lp_db_audit_verify(db, have_expected ? &expected : NULL, &rep, &err);
    lp_db_close(db);
    if (st) {
        free(source);
        return lp_cli_fail(&err, "audit verify");
    }
    const char *src = source ? source : "";
    if (rep.problem == LP_DB_AUDIT_SHORT && rep.head.seq == 0)
        printf("audit log is empty but %s records entry %lld\n", src, (long long)rep.seq);
    else if (rep.problem == LP_DB_AUDIT_SHORT)
        printf("audit log ends at entry %lld but %s records entry %lld\n",
               (long long)rep.head.seq, src, (long long)rep.seq);
    else if (rep.problem == LP_DB_AUDIT_HEAD_DIFFERS)
        printf("audit entry %lld differs from the one %s records (hash %s): the log was "
               "rewritten\n",
               (long long)rep.seq, src, expected.hash);
    else
        printf("%s\n", rep.message);
    if (rep.problem == LP_DB_AUDIT_INTACT && have_expected && expected.seq > 0)
        printf("the log holds entry %lld as %s records it\n", (long long)expected.seq, src);
    free(source);
    return rep.problem == LP_DB_AUDIT_INTACT ? LP_EXIT_OK : LP_EXIT_FAIL;
}

int lp_cmd_audit(int argc, char **argv)
{
    static const struct option lo[] = {LP_CLIENT_LONG_OPTIONS,
                                       {"after", required_argument, NULL, 'a'},
                                       {"limit", required_argument, NULL, 'l'},
                                       {"db", required_argument, NULL, 'd'},
                                       {"head", required_argument, NULL, 'H'},
                                       {"expect", required_argument, NULL, 'e'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    lp_client_opts o = {0};
    const char *after = NULL, *limit = NULL, *db = NULL, *head = NULL, *expect = NULL;
    bool client_opts = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'h': fputs(usage_text, stdout); return LP_EXIT_OK;
        case 'a': after = optarg; break;
        case 'l': limit = optarg; break;
        case 'd': db = optarg; break;
        case 'H': head = optarg; break;
        case 'e': expect = optarg; break;
        default:
            if (!lp_client_opt(&o, ch, optarg)) {
                fputs(usage_text, stderr);
                return LP_EXIT_USAGE;
            }
            client_opts = true;
        }
    }
    if (optind >= argc)
        return usage_error("name a subcommand: list or verify");
    const char *sub = argv[optind];
    if (argc - optind - 1 != 0)
        return usage_error("unexpected argument (the subcommands take options only)");
    if (!strcmp(sub, "list")) {
        if (db || head || expect)
            return usage_error("--db, --head and --expect belong to verify");
        return run_list(&o, after, limit);
    }
    if (!strcmp(sub, "verify")) {
        if (after || limit || client_opts)
            return usage_error("verify takes --db, --head and --expect only (it reads the "
                               "database, not the server)");
        return run_verify(db, head, expect);
    }
    fprintf(stderr, "livepush audit: unknown subcommand '%s'\n(see 'livepush audit --help')\n",
            sub);
    return LP_EXIT_USAGE;
}
