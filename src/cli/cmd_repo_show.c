/*
 * cmd_repo_show.c — `livepush repo show DIR [--json]`: what a repository
 * holds, read back the way lp_tuf_repo_open sees it (the versions a client
 * would be served): every role with its version, expiry, threshold and key
 * IDs, delegations with their paths, and the targets each role lists.
 * --json prints the writer's description object (lp_tuf_repo_describe).
 */
#include "cli/cli.h"
#include "cli/cmd_repo.h"
#include "livepush/tuf_repo.h"
#include "tuf/json.h"
#include "tuf/repo_priv.h"

#include <stdio.h>
#include <stdlib.h>

static void print_targets(const json_t *targets)
{
    const char *name;
    json_t *t;
    json_object_foreach((json_t *)targets, name, t)
    {
        const char *sha =
            json_string_value(json_object_get(json_object_get(t, "hashes"), "sha256"));
        printf("    %s  %lld bytes  sha256 %s", name,
               (long long)json_integer_value(json_object_get(t, "length")), sha ? sha : "-");
        json_t *custom = json_object_get(t, "custom");
        char *cj;
        size_t len;
        if (custom && lp_json_dump_compact(custom, &cj, &len, NULL) == LP_OK) {
            printf("  custom %s", cj);
            free(cj);
        }
        putchar('\n');
    }
}

int lp_cli_repo_show(const char *dir, int json)
{
    lp_error err;
    lp_error_clear(&err);
    lp_tuf_repo *r;
    json_t *doc;
    if (lp_tuf_repo_open(&r, dir, &err))
        return lp_cli_fail(&err, "repo show");
    lp_status st = lp_tuf_repo_describe(r, &doc, &err);
    lp_tuf_repo_free(r);
    if (st)
        return lp_cli_fail(&err, "repo show");
    if (json) {
        char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(doc);
        return LP_EXIT_OK;
    }
    printf("repository %s\n", dir);
    size_t i;
    json_t *role;
    json_array_foreach(json_object_get(doc, "roles"), i, role)
    {
        const char *by = json_string_value(json_object_get(role, "delegated_by"));
        printf("%s: version %lld, expires %s, threshold %lld", json_string_value(json_object_get(role, "name")),
               (long long)json_integer_value(json_object_get(role, "version")),
               json_string_value(json_object_get(role, "expires")),
               (long long)json_integer_value(json_object_get(role, "threshold")));
        if (by) {
            printf(", delegated by %s%s, paths", by,
                   json_is_true(json_object_get(role, "terminating")) ? " (terminating)" : "");
            size_t k;
            json_t *p;
            json_t *paths = json_object_get(role, "paths");
            if (!paths)
                paths = json_object_get(role, "path_hash_prefixes");
            json_array_foreach(paths, k, p) printf(" %s", json_string_value(p));
        }
        putchar('\n');
        size_t k;
        json_t *id;
        json_array_foreach(json_object_get(role, "keyids"), k, id)
            printf("    key %s\n", json_string_value(id));
        json_t *targets = json_object_get(role, "targets");
        if (targets)
            print_targets(targets);
    }
    json_decref(doc);
    return LP_EXIT_OK;
}
