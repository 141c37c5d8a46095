/*
 * cmd_repo.c — `livepush repo`: writing a TUF repository from the command line.
 *
 *   livepush repo create DIR --root-key F... --targets-key F... --snapshot-key F...
 *                            --timestamp-key F... [--threshold ROLE=N]... [--expires ROLE=DAYS]...
 *   livepush repo add-target DIR NAME FILE [--role ROLE] [--custom JSON] [--sha512] --key F...
 *   livepush repo remove-target DIR NAME [--role ROLE] --key F...
 *   livepush repo add-key DIR ROLE --pub F --key F...
 *   livepush repo remove-key DIR ROLE KEYID --key F...
 *   livepush repo threshold DIR ROLE N --key F...
 *   livepush repo delegate DIR DELEGATOR NAME --path P... [--terminating] [--threshold N]
 *                          --delegate-key F... --key F...
 *   livepush repo expire DIR ROLE DAYS --key F...
 *   livepush repo publish DIR --key F...
 *   livepush repo show DIR [--json]
 *
 * Every command that changes the repository opens it, makes its one edit
 * and publishes in the same step, signing with the --key files given (the
 * writer signs each role with those of the keys it authorises and refuses
 * the whole publish, writing nothing, when any role falls short).  A key
 * file is either a private key (PKCS#8 PEM, as `livepush keygen` writes)
 * or a public TUF key object (FILE.pub.json); signing needs the former.
 *
 * One option table serves every subcommand; each subcommand lists the
 * options it accepts, and any other is a usage error (exit 2).  `show` is
 * in cmd_repo_show.c.
 */
#include "cli/cli.h"
#include "cli/cmd_repo.h"
#include "cli/signer.h"
#include "core/file.h"
#include "core/timeutil.h"
#include "livepush/tuf.h"
#include "livepush/tuf_repo.h"
#include "tuf/json.h"
#include "tuf/repo_priv.h"
#include "tuf/tufkey.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LIST 64

static const char usage_text[] =
    "usage: livepush repo <command> DIR [arguments] [options]\n"
    "\n"
    "  create DIR --root-key F --targets-key F --snapshot-key F --timestamp-key F\n"
    "         [--threshold ROLE=N]... [--expires ROLE=DAYS]...\n"
    "  add-target DIR NAME FILE [--role ROLE] [--custom JSON] [--sha512] --key F...\n"
    "  remove-target DIR NAME [--role ROLE] --key F...\n"
    "  add-key DIR ROLE --pub F --key F...\n"
    "  remove-key DIR ROLE KEYID --key F...\n"
    "  threshold DIR ROLE N --key F...\n"
    "  delegate DIR DELEGATOR NAME --path PATTERN... [--terminating] [--threshold N]\n"
    "           --delegate-key F... --key F...\n"
    "  expire DIR ROLE DAYS --key F...      (DAYS may be 0; a negative value follows --)\n"
    "  publish DIR --key F...               (re-signs the timestamp and pending changes)\n"
    "  show DIR [--json]\n"
    "\n"
    "Each key option may be repeated.  Key files are private keys (PKCS#8 PEM,\n"
    "from 'livepush keygen') or public TUF key objects (FILE.pub.json); --key\n"
    "files sign and must be private.  Every command but show publishes at once:\n"
    "a role whose threshold the --key files do not meet fails the whole publish\n"
    "and nothing is written.\n"
    "\n"
    "Exit codes: 0 success, 1 failure (reason on stderr), 2 usage error.\n";

typedef struct ropts {
    const char *keys[MAX_LIST], *role_keys[4][MAX_LIST], *deleg_keys[MAX_LIST];
    size_t nkeys, nrole_keys[4], ndeleg_keys;
    const char *thresholds[MAX_LIST], *expires[MAX_LIST], *paths[MAX_LIST];
    size_t nthresholds, nexpires, npaths;
    const char *custom, *role, *pub;
    int terminating, json, sha512;
} ropts;

static const char *const top_roles[4] = {"root", "timestamp", "snapshot", "targets"};

static int usage_error(const char *sub, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const char *sub, const char *fmt, ...)
{
    fprintf(stderr, "livepush repo%s%s: ", sub ? " " : "", sub ? sub : "");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'livepush repo --help')\n");
    return LP_EXIT_USAGE;
}

static int push(const char **list, size_t *n, const char *v, const char *sub)
{
    if (*n >= MAX_LIST)
        return usage_error(sub, "too many values for one option (at most 64): %s", v);
    list[(*n)++] = v;
    return 0;
}

/* Parses options; only those whose code is in `allowed` are accepted. */
static int parse(int argc, char **argv, const char *sub, const char *allowed, ropts *o)
{
    static const struct option lo[] = {
        {"key", required_argument, NULL, 'k'},          {"root-key", required_argument, NULL, '0'},
        {"timestamp-key", required_argument, NULL, '1'}, {"snapshot-key", required_argument, NULL, '2'},
        {"targets-key", required_argument, NULL, '3'},  {"threshold", required_argument, NULL, 't'},
        {"expires", required_argument, NULL, 'e'},      {"custom", required_argument, NULL, 'c'},
        {"role", required_argument, NULL, 'r'},         {"sha512", no_argument, NULL, '5'},
        {"pub", required_argument, NULL, 'p'},          {"path", required_argument, NULL, 'P'},
        {"terminating", no_argument, NULL, 'x'},        {"delegate-key", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},               {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int ch, idx = 0;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+h", lo, &idx)) != -1) {
        if (ch == 'h') {
            fputs(usage_text, stdout);
            return LP_EXIT_OK;
        }
        if (ch == '?' || ch == ':' || !strchr(allowed, ch))
            return usage_error(sub, "option %s is not valid here or lacks its value",
                               argv[optind - 1]);
        int rc = 0;
        switch (ch) {
        case 'k': rc = push(o->keys, &o->nkeys, optarg, sub); break;
        case '0': case '1': case '2': case '3':
            rc = push(o->role_keys[ch - '0'], &o->nrole_keys[ch - '0'], optarg, sub);
            break;
        case 't': rc = push(o->thresholds, &o->nthresholds, optarg, sub); break;
        case 'e': rc = push(o->expires, &o->nexpires, optarg, sub); break;
        case 'c': o->custom = optarg; break;
        case 'r': o->role = optarg; break;
        case '5': o->sha512 = 1; break;
        case 'p': o->pub = optarg; break;
        case 'P': rc = push(o->paths, &o->npaths, optarg, sub); break;
        case 'x': o->terminating = 1; break;
        case 'd': rc = push(o->deleg_keys, &o->ndeleg_keys, optarg, sub); break;
        case 'j': o->json = 1; break;
        }
        if (rc)
            return rc;
    }
    return -1;
}

/* ---- keys ------------------------------------------------------------ */

/* A key file: a PEM private key or a TUF public key object (JSON). */
static lp_status load_key_file(const char *path, lp_key **out, lp_error *err)
{
    return lp_cli_key_load(path, out, err);
}

typedef struct keyset {
    lp_key *k[4 * MAX_LIST + 2 * MAX_LIST];
    size_t n;
} keyset;

static void keyset_free(keyset *ks)
{
    for (size_t i = 0; i < ks->n; i++)
        lp_key_free(ks->k[i]);
    ks->n = 0;
}

/* Loads files into ks; with need_private every one must hold a private key. */
static lp_status load_keys(keyset *ks, const char *const *files, size_t n, bool need_private,
                           lp_error *err)
{
    for (size_t i = 0; i < n; i++) {
        lp_key *k;
        lp_status st = load_key_file(files[i], &k, err);
        if (st)
            return st;
        ks->k[ks->n++] = k;
        if (need_private && !lp_key_has_private(k))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "key file %s holds a public key only; signing needs the private "
                                "key",
                                files[i]);
    }
    return LP_OK;
}

static void print_keyid(const char *role, const lp_key *k)
{
    char *json, id[65];
    if (lp_tuf_key_to_json(k, &json, id, NULL) == LP_OK) {
        printf("  %-10s key %s\n", role, id);
        free(json);
    }
}

static void print_versions(const lp_tuf_repo *r, const char *dir, const char *extra_role)
{
    printf("published %s: root v%llu, timestamp v%llu, snapshot v%llu, targets v%llu", dir,
           (unsigned long long)lp_tuf_repo_version(r, "root"),
           (unsigned long long)lp_tuf_repo_version(r, "timestamp"),
           (unsigned long long)lp_tuf_repo_version(r, "snapshot"),
           (unsigned long long)lp_tuf_repo_version(r, "targets"));
    if (extra_role && lp_tuf_repo_version(r, extra_role) &&
        strcmp(extra_role, "root") && strcmp(extra_role, "timestamp") &&
        strcmp(extra_role, "snapshot") && strcmp(extra_role, "targets"))
        printf(", %s v%llu", extra_role, (unsigned long long)lp_tuf_repo_version(r, extra_role));
    putchar('\n');
}

/* ---- numbers --------------------------------------------------------- */

static bool parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* "ROLE=N" for create's --threshold and --expires. */
static bool parse_role_value(const char *s, long long min, long long max, int *role,
                             long long *v)
{
    const char *eq = strchr(s, '=');
    if (!eq)
        return false;
    for (int t = 0; t < 4; t++)
        if (strlen(top_roles[t]) == (size_t)(eq - s) && !strncmp(s, top_roles[t], (size_t)(eq - s))) {
            *role = t;
            return parse_int(eq + 1, min, max, v);
        }
    return false;
}

#define MAX_DAYS 36500LL

/* ---- subcommands ----------------------------------------------------- */

static int run_create(const ropts *o, char **args)
{
    const char *dir = args[0];
    static const char *const opt_names[4] = {"--root-key", "--timestamp-key", "--snapshot-key",
                                             "--targets-key"};
    for (int t = 0; t < 4; t++)
        if (!o->nrole_keys[t])
            return usage_error("create", "%s is required", opt_names[t]);
    int thr_role[MAX_LIST], exp_role[MAX_LIST];
    long long thr[MAX_LIST], days[MAX_LIST];
    for (size_t i = 0; i < o->nthresholds; i++)
        if (!parse_role_value(o->thresholds[i], 1, UINT32_MAX, &thr_role[i], &thr[i]))
            return usage_error("create", "--threshold %s: expected ROLE=N with a top-level role",
                               o->thresholds[i]);
    for (size_t i = 0; i < o->nexpires; i++)
        if (!parse_role_value(o->expires[i], -MAX_DAYS, MAX_DAYS, &exp_role[i], &days[i]))
            return usage_error("create", "--expires %s: expected ROLE=DAYS with a top-level role",
                               o->expires[i]);
    lp_error err;
    lp_error_clear(&err);
    keyset ks = {.n = 0};
    size_t first[5];
    lp_tuf_repo *r = NULL;
    lp_status st = LP_OK;
    for (int t = 0; t < 4 && !st; t++) {
        first[t] = ks.n;
        st = load_keys(&ks, o->role_keys[t], o->nrole_keys[t], false, &err);
    }
    first[4] = ks.n;
    if (!st)
        st = lp_tuf_repo_create(&r, dir, &err);
    for (int t = 0; t < 4 && !st; t++)
        for (size_t i = first[t]; i < first[t + 1] && !st; i++)
            st = lp_tuf_repo_add_key(r, top_roles[t], ks.k[i], &err);
    for (size_t i = 0; i < o->nthresholds && !st; i++)
        st = lp_tuf_repo_set_threshold(r, top_roles[thr_role[i]], (uint32_t)thr[i], &err);
    for (size_t i = 0; i < o->nexpires && !st; i++)
        st = lp_tuf_repo_set_expires(r, top_roles[exp_role[i]], lp_time_now() + days[i] * 86400,
                                     &err);
    if (!st)
        st = lp_tuf_repo_publish(r, (const lp_key *const *)ks.k, ks.n, &err);
    int rc = LP_EXIT_OK;
    if (st) {
        rc = lp_cli_fail(&err, "repo create");
    } else {
        printf("created repository %s\n", dir);
        for (int t = 0; t < 4; t++)
            for (size_t i = first[t]; i < first[t + 1]; i++)
                print_keyid(top_roles[t], ks.k[i]);
        print_versions(r, dir, NULL);
    }
    lp_tuf_repo_free(r);
    keyset_free(&ks);
    return rc;
}

/* An edit applied between opening and publishing. */
typedef lp_status (*edit_fn)(lp_tuf_repo *r, const ropts *o, char **args, keyset *ks,
                             lp_error *err);

static int edit_and_publish(const char *sub, const ropts *o, char **args, edit_fn edit,
                            const char *shown_role)
{
    lp_error err;
    lp_error_clear(&err);
    keyset ks = {.n = 0};
    lp_tuf_repo *r = NULL;
    lp_status st = load_keys(&ks, o->keys, o->nkeys, true, &err);
    size_t nsigners = ks.n;
    if (!st)
        st = lp_tuf_repo_open(&r, args[0], &err);
    if (!st && edit)
        st = edit(r, o, args, &ks, &err);
    if (!st)
        st = lp_tuf_repo_publish(r, (const lp_key *const *)ks.k, nsigners, &err);
    int rc = LP_EXIT_OK;
    if (st) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "repo %s", sub);
        rc = lp_cli_fail(&err, ctx);
    } else {
        print_versions(r, args[0], shown_role);
    }
    lp_tuf_repo_free(r);
    keyset_free(&ks);
    return rc;
}

static lp_status edit_add_target(lp_tuf_repo *r, const ropts *o, char **args, keyset *ks,
                                 lp_error *err)
{
    (void)ks;
    return lp_tuf_repo_add_target_file(r, o->role ? o->role : "targets", args[1], args[2],
                                       o->custom,
                                       o->sha512 ? LP_TUF_HASH_SHA256_SHA512 : LP_TUF_HASH_SHA256,
                                       err);
}

static lp_status edit_remove_target(lp_tuf_repo *r, const ropts *o, char **args, keyset *ks,
                                    lp_error *err)
{
    (void)ks;
    return lp_tuf_repo_remove_target(r, o->role ? o->role : "targets", args[1], err);
}

static lp_status edit_add_key(lp_tuf_repo *r, const ropts *o, char **args, keyset *ks,
                              lp_error *err)
{
    if (!o->pub)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "--pub FILE names the key to add");
    size_t at = ks->n;
    lp_status st = load_keys(ks, &o->pub, 1, false, err);
    if (!st)
        st = lp_tuf_repo_add_key(r, args[1], ks->k[at], err);
    if (!st)
        print_keyid(args[1], ks->k[at]);
    return st;
}

static lp_status edit_remove_key(lp_tuf_repo *r, const ropts *o, char **args, keyset *ks,
                                 lp_error *err)
{
    (void)o;
    (void)ks;
    return lp_tuf_repo_remove_key(r, args[1], args[2], err);
}

static lp_status edit_threshold(lp_tuf_repo *r, const ropts *o, char **args, keyset *ks,
                                lp_error *err)
{
    (void)o;
    (void)ks;
    long long n;
    if (!parse_int(args[2], 1, UINT32_MAX, &n))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "threshold \"%s\" is not a number >= 1",
                            args[2]);
    return lp_tuf_repo_set_threshold(r, args[1], (uint32_t)n, err);
}

static lp_status edit_delegate(lp_tuf_repo *r, const ropts *o, char **args, keyset *ks,
                               lp_error *err)
{
    long long n = 1;
    if (o->nthresholds > 1 || (o->nthresholds && !parse_int(o->thresholds[0], 1, UINT32_MAX, &n)))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "--threshold takes one number >= 1");
    if (!o->npaths)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "at least one --path PATTERN is required");
    if (!o->ndeleg_keys)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "at least one --delegate-key is required");
    size_t at = ks->n;
    lp_status st = load_keys(ks, o->deleg_keys, o->ndeleg_keys, false, err);
    if (!st)
        st = lp_tuf_repo_delegate(r, args[1], args[2], o->paths, o->npaths, o->terminating != 0,
                                  (uint32_t)n, err);
    for (size_t i = at; i < ks->n && !st; i++) {
        st = lp_tuf_repo_add_key(r, args[2], ks->k[i], err);
        if (!st)
            print_keyid(args[2], ks->k[i]);
    }
    return st;
}

static lp_status edit_expire(lp_tuf_repo *r, const ropts *o, char **args, keyset *ks,
                             lp_error *err)
{
    (void)o;
    (void)ks;
    long long days;
    if (!parse_int(args[2], -MAX_DAYS, MAX_DAYS, &days))
        return lp_error_set(err, LP_ERR_INVALID_ARG, "DAYS \"%s\" is not a whole number of days",
                            args[2]);
    return lp_tuf_repo_set_expires(r, args[1], lp_time_now() + days * 86400, err);
}

static int run_edit(const char *sub, const ropts *o, char **args)
{
    static const struct {
        const char *name;
        edit_fn fn;
        int role_arg; /* index of the role to show, -1 none, -2 --role */
    } edits[] = {
        {"add-target", edit_add_target, -2}, {"remove-target", edit_remove_target, -2},
        {"add-key", edit_add_key, 1},        {"remove-key", edit_remove_key, 1},
        {"threshold", edit_threshold, 1},    {"delegate", edit_delegate, 2},
        {"expire", edit_expire, 1},          {"publish", NULL, -1},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        if (strcmp(sub, edits[i].name))
            continue;
        const char *shown = edits[i].role_arg >= 0 ? args[edits[i].role_arg]
                            : edits[i].role_arg == -2 ? o->role
                                                      : NULL;
        return edit_and_publish(sub, o, args, edits[i].fn, shown);
    }
    return usage_error(NULL, "unknown command '%s'", sub);
}

int lp_cmd_repo(int argc, char **argv)
{
    static const struct {
        const char *name;
        int nargs;
        const char *allowed;
    } subs[] = {
        {"create", 1, "0123te"}, {"add-target", 3, "kcr5"}, {"remove-target", 2, "kr"},
        {"add-key", 2, "kp"},    {"remove-key", 3, "k"},    {"threshold", 3, "k"},
        {"delegate", 3, "kPxtd"}, {"expire", 3, "k"},       {"publish", 1, "k"},
        {"show", 1, "j"},
    };
    if (argc < 2) {
        fputs(usage_text, stderr);
        return LP_EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(usage_text, stdout);
        return LP_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        if (strcmp(sub, subs[i].name))
            continue;
        ropts o;
        memset(&o, 0, sizeof o);
        /* Options may come before, between or after the arguments:
         * gather the arguments as getopt_long (in "+" mode) stops at each. */
        char *args[8];
        int nargs = 0, sub_argc = argc - 1;
        char **sub_argv = argv + 1;
        int rc;
        for (;;) {
            rc = parse(sub_argc, sub_argv, sub, subs[i].allowed, &o);
            if (rc >= 0)
                return rc;
            int at = optind;
            bool dashdash = at > 1 && !strcmp(sub_argv[at - 1], "--");
            while (at < sub_argc && (dashdash || sub_argv[at][0] != '-' || !sub_argv[at][1])) {
                if (nargs >= 8)
                    return usage_error(sub, "too many arguments (%s)", sub_argv[at]);
                args[nargs++] = sub_argv[at++];
            }
            if (at >= sub_argc)
                break;
            /* Continue parsing options after the arguments read so far. */
            sub_argv += at - 1;
            sub_argc -= at - 1;
        }
        if (nargs != subs[i].nargs)
            return usage_error(sub, "expected %s arguments (see the usage below)",
                               nargs < subs[i].nargs ? "more" : "fewer");
        if (!strcmp(sub, "create"))
            return run_create(&o, args);
        if (!strcmp(sub, "show"))
            return lp_cli_repo_show(args[0], o.json);
        if (!o.nkeys)
            return usage_error(sub, "%s", "at least one --key FILE is required to sign");
        long long num;
        if (!strcmp(sub, "threshold") && !parse_int(args[2], 1, UINT32_MAX, &num))
            return usage_error(sub, "threshold \"%s\" is not a number >= 1", args[2]);
        if (!strcmp(sub, "expire") && !parse_int(args[2], -MAX_DAYS, MAX_DAYS, &num))
            return usage_error(sub, "DAYS \"%s\" is not a whole number of days (at most %lld)",
                               args[2], MAX_DAYS);
        if (!strcmp(sub, "delegate") &&
            (o.nthresholds > 1 || (o.nthresholds && !parse_int(o.thresholds[0], 1, UINT32_MAX, &num))))
            return usage_error(sub, "%s", "--threshold takes one number >= 1");
        if (!strcmp(sub, "add-key") && !o.pub)
            return usage_error(sub, "%s", "--pub FILE names the key to add");
        if (!strcmp(sub, "delegate") && (!o.npaths || !o.ndeleg_keys))
            return usage_error(sub, "%s", "--path and --delegate-key are required");
        return run_edit(sub, &o, args);
    }
    return usage_error(NULL, "unknown command '%s'", sub);
}
