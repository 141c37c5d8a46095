/*
 * repo_names.c — the repository writer's name rules and string lists.
 *
 * Names become file names: a delegated role is written as N.<role>.json and
 * a target as targets/<dir>/<sha256>.<basename>.  So role names are held to
 * a small safe alphabet and target names to relative paths whose parts are
 * never empty, "." or "..", never hold a control character or a backslash,
 * and are short enough that "<64 hex digits>.<part>" is a valid file name.
 * Checking here, once, is what lets every other part of the writer join
 * names into paths without a second thought.
 */
#include "tuf/repo_priv.h"

#include <stdlib.h>
#include <string.h>

/* ---- string lists ---------------------------------------------------- */

bool lp_repo_strlist_has(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], s))
            return true;
    return false;
}

bool lp_repo_strlist_add(char ***list, size_t *n, const char *s)
{
    if (lp_repo_strlist_has(*list, *n, s))
        return true;
    char **nl = realloc(*list, (*n + 1) * sizeof *nl);
    if (!nl)
        return false;
    *list = nl;
    char *c = strdup(s);
    if (!c)
        return false;
    size_t pos = 0;
    while (pos < *n && strcmp(nl[pos], s) < 0)
        pos++;
    memmove(&nl[pos + 1], &nl[pos], (*n - pos) * sizeof *nl);
    nl[pos] = c;
    (*n)++;
    return true;
}

void lp_repo_strlist_free(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

bool lp_repo_strlist_copy(char ***out, size_t *nout, char *const *list, size_t n)
{
    *out = calloc(n ? n : 1, sizeof **out);
    *nout = 0;
    if (!*out)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!((*out)[i] = strdup(list[i])))
            return false;
        (*nout)++;
    }
    return true;
}

/* ---- names ----------------------------------------------------------- */

bool lp_repo_role_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > LP_REPO_ROLE_NAME_MAX)
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

lp_status lp_repo_check_target_name(const char *name, lp_error *err)
{
    size_t n = strlen(name);
    if (n == 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "target name is empty");
    if (n > LP_REPO_TARGET_NAME_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "target name \"%.60s...\" is longer than %d bytes", name,
                            LP_REPO_TARGET_NAME_MAX);
    if (name[0] == '/')
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "target name \"%s\" is absolute (it must be a relative path)", name);
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\')
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "target name \"%s\" contains a control character or backslash",
                                name);
    const char *p = name;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 0)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "target name \"%s\" has an empty path part", name);
        if ((l == 1 && p[0] == '.') || (l == 2 && p[0] == '.' && p[1] == '.'))
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "target name \"%s\" has a \".\" or \"..\" path part", name);
        if (l > LP_REPO_TARGET_PART_MAX)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "target name \"%.60s...\" has a path part longer than %d bytes",
                                name, LP_REPO_TARGET_PART_MAX);
        if (!e)
            return LP_OK;
        p = e + 1;
    }
}
