/*
 * api_print.h — human-readable output of management API objects (internal
 * to the livepush command).
 *
 * The API commands print either the server's JSON (--json) or what these
 * functions make of it: a "label  value" summary for one object, and
 * aligned tables for lists.  The functions read the objects defensively: a
 * missing or mistyped field prints as "-", never fails, because a newer
 * server may add or change fields and a summary must still come out.
 *
 * A table (lp_table) collects rows of strings, then prints them with each
 * column as wide as its widest cell.  It owns copies of the cells.
 */
#ifndef LP_CLI_API_PRINT_H
#define LP_CLI_API_PRINT_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#define LP_TABLE_MAX_COLS 10

typedef struct lp_table {
    size_t ncols;
    size_t nrows, cap;
    char **cells; /* nrows * ncols, row-major; the first row is the header */
    int failed;   /* an allocation failed: the table prints what it has */
} lp_table;

/* Starts a table with its header row (ncols titles, ncols <= LP_TABLE_MAX_COLS). */
void lp_table_init(lp_table *t, size_t ncols, const char *const *titles);
/* Adds a row of ncols cells (copied; NULL or "" prints as "-"). */
void lp_table_add(lp_table *t, const char *const *cells);
/* Prints the table to f (two spaces between columns) and frees it. */
void lp_table_print_free(lp_table *t, FILE *f);

/* "stable, beta" from a JSON array of strings into out ("-" when empty). */
void lp_print_join(const json_t *arr, char *out, size_t cap);

/* The summary of one release object (the value of "release"). */
void lp_print_release(const json_t *rel, FILE *f);
/* A table of release objects, newest first as given. */
void lp_print_release_table(const json_t *releases, FILE *f);
/* The summary of an app: GET /api/v1/apps/<app>'s answer ({"app","channels","latest"}). */
void lp_print_app(const json_t *answer, const char *server, FILE *f);
/* A table of token objects. */
void lp_print_token_table(const json_t *tokens, FILE *f);
/* The summary of one token object. */
void lp_print_token(const json_t *token, FILE *f);
/* A table of audit entries (GET /api/v1/audit's "entries"), oldest first
 * as given; details on one line, cut when long. */
void lp_print_audit_table(const json_t *entries, FILE *f);

#endif
