/*
 * testdb.h — the metadata database a test runs on, for either back end.
 *
 * By default a test's database is an SQLite file in its scratch folder.
 * When the environment variable LP_TEST_PG_URL names a PostgreSQL database
 * (scripts/test sets it for its second pass, on a throw-away cluster), each
 * database is instead a schema of its own in that database, created here
 * with a unique name and dropped again by lp_testdb_free, so tests and the
 * cases inside them run in parallel without seeing each other; its URL is
 * LP_TEST_PG_URL with options=-csearch_path=<schema> and
 * application_name=<schema> added (so a test can find its own connections
 * in pg_stat_activity).
 *
 * Tests that look under the API (counting rows, tampering with the audit
 * table, changing the schema version) do it with lp_testdb_query /
 * lp_testdb_exec: through SQLite's own library on the file, or through
 * libpq on the schema, so the same check runs on both back ends; where the
 * SQL differs a test asks lp_testdb_is_pg.
 */
#ifndef LP_TESTDB_H
#define LP_TESTDB_H

#include <stdbool.h>
#include <stddef.h>

typedef struct lp_testdb {
    bool pg;           /* PostgreSQL (else SQLite) */
    char url[1200];    /* what lp_db_open / lp_service_options.db_url take */
    char *file;        /* SQLite: the database file */
    char schema[64];   /* PostgreSQL: the schema */
} lp_testdb;

/* True when LP_TEST_PG_URL is set (tests run on PostgreSQL). */
bool lp_testdb_is_pg(void);

/* A new, empty database: SQLite file `dir`/`name` (not created yet), or a
 * new PostgreSQL schema.  NULL (message on stderr) on failure. */
lp_testdb *lp_testdb_new(const char *dir, const char *name);

/* Drops the PostgreSQL schema (the SQLite file stays with its folder) and
 * frees t.  NULL is fine. */
void lp_testdb_free(lp_testdb *t);

/* Runs one SQL statement directly on the database and returns its first
 * column of its first row as an integer: 0 when it gives no row, -1 when
 * it fails. */
long long lp_testdb_query(lp_testdb *t, const char *sql);

/* Runs SQL (one statement or several) directly; 0, or -1 with the
 * database's message in msg (cap bytes; msg may be NULL). */
int lp_testdb_exec(lp_testdb *t, const char *sql, char *msg, size_t cap);

/* The first column of the first row as a new malloc'd string; NULL when
 * there is no row, the value is NULL, or the statement fails. */
char *lp_testdb_text(lp_testdb *t, const char *sql);

#endif
