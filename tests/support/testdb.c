/*
 * testdb.c — the metadata database a test runs on (see testdb.h).
 *
 * PostgreSQL schemas are named lpt_<pid>_<counter>_<random>, unique across
 * the processes of a parallel test run; direct SQL opens a connection of
 * its own for each call (tests call it a handful of times), with the
 * schema as its search_path, exactly as the code under test connects.
 */
#include "testdb.h"

#include "testutil.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

bool lp_testdb_is_pg(void)
{
    const char *u = getenv("LP_TEST_PG_URL");
    return u && *u;
}

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* A connection to the admin URL (no schema), or NULL with a message. */
static PGconn *admin_conn(void)
{
    PGconn *c = PQconnectdb(getenv("LP_TEST_PG_URL"));
    if (!c || PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "testdb: connecting to LP_TEST_PG_URL: %s",
                c ? PQerrorMessage(c) : "out of memory\n");
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

static int admin_exec(const char *sql)
{
    PGconn *c = admin_conn();
    if (!c)
        return -1;
    PGresult *r = PQexec(c, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc)
        fprintf(stderr, "testdb: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return rc;
}

lp_testdb *lp_testdb_new(const char *dir, const char *name)
{
    static unsigned counter;
    lp_testdb *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->pg = lp_testdb_is_pg();
    if (!t->pg) {
        t->file = lp_test_join(dir, name);
        if (!t->file) {
            free(t);
            return NULL;
        }
        snprintf(t->url, sizeof t->url, "sqlite:%s", t->file);
        return t;
    }
    unsigned rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        rnd = (unsigned)rand();
    snprintf(t->schema, sizeof t->schema, "lpt_%ld_%u_%08x", (long)getpid(),
             __atomic_fetch_add(&counter, 1, __ATOMIC_SEQ_CST), rnd);
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", t->schema);
    if (admin_exec(sql) != 0) {
        free(t);
        return NULL;
    }
    const char *base = getenv("LP_TEST_PG_URL");
    snprintf(t->url, sizeof t->url, "%s%soptions=-csearch_path%%3D%s&application_name=%s", base,
             strchr(base, '?') ? "&" : "?", t->schema, t->schema);
    return t;
}

void lp_testdb_free(lp_testdb *t)
{
    if (!t)
        return;
    if (t->pg) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", t->schema);
        admin_exec(sql);
    }
    free(t->file);
    free(t);
}

/* ---- direct SQL ---------------------------------------------------------------------- */

/* Runs sql; on success *text gets the first column of the first row
 * (malloc'd; NULL when no row or NULL) and *rows whether there was a row. */
static int run(lp_testdb *t, const char *sql, char **text, bool *rows, char *msg, size_t cap)
{
    *text = NULL;
    *rows = false;
    if (msg && cap)
        msg[0] = '\0';
    if (!t->pg) {
        sqlite3 *h = NULL;
        int rc = sqlite3_open(t->file, &h);
        if (rc == SQLITE_OK) {
            sqlite3_busy_timeout(h, 5000);
            const char *tail = sql;
            while (rc == SQLITE_OK && tail && *tail) {
                sqlite3_stmt *s = NULL;
                rc = sqlite3_prepare_v2(h, tail, -1, &s, &tail);
                if (rc != SQLITE_OK)
                    break;
                if (!s)
                    continue; /* an empty statement: tail has moved past it */
                int step;
                while ((step = sqlite3_step(s)) == SQLITE_ROW) {
                    if (!*rows && sqlite3_column_type(s, 0) != SQLITE_NULL)
                        *text = strdup((const char *)sqlite3_column_text(s, 0));
                    *rows = true;
                }
                if (step != SQLITE_DONE)
                    rc = step;
                sqlite3_finalize(s);
            }
        }
        if (rc != SQLITE_OK && msg)
            snprintf(msg, cap, "%s", h ? sqlite3_errmsg(h) : sqlite3_errstr(rc));
        sqlite3_close(h);
        return rc == SQLITE_OK ? 0 : -1;
    }
    PGconn *c = PQconnectdb(t->url);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        if (msg)
            snprintf(msg, cap, "%s", c ? PQerrorMessage(c) : "out of memory");
        PQfinish(c);
        return -1;
    }
    PQsetNoticeProcessor(c, quiet, NULL);
    PGresult *r = PQexec(c, sql);
    ExecStatusType es = PQresultStatus(r);
    int rc = es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK ? 0 : -1;
    if (rc && msg)
        snprintf(msg, cap, "%s", PQerrorMessage(c));
    if (!rc && es == PGRES_TUPLES_OK && PQntuples(r) > 0) {
        *rows = true;
        if (!PQgetisnull(r, 0, 0))
            *text = strdup(PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

long long lp_testdb_query(lp_testdb *t, const char *sql)
{
    char *text = NULL;
    bool rows = false;
    if (run(t, sql, &text, &rows, NULL, 0) != 0)
        return -1;
    long long v = text ? strtoll(text, NULL, 10) : 0;
    if (text && !strcmp(text, "t"))
        v = 1; /* a PostgreSQL boolean */
    free(text);
    return v;
}

int lp_testdb_exec(lp_testdb *t, const char *sql, char *msg, size_t cap)
{
    char *text = NULL;
    bool rows = false;
    int rc = run(t, sql, &text, &rows, msg, cap);
    free(text);
    return rc;
}

char *lp_testdb_text(lp_testdb *t, const char *sql)
{
    char *text = NULL;
    bool rows = false;
    if (run(t, sql, &text, &rows, NULL, 0) != 0)
        return NULL;
    return text;
}
