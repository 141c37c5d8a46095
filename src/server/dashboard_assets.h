/*
 * dashboard_assets.h — the files of the web dashboard, embedded in the
 * binary (internal).
 *
 * The table is generated at build time by cmake/embed_assets.cmake from
 * web/ (the dashboard's own HTML, JavaScript modules and CSS) and from
 * uPlot's dist files in node_modules/ (docs/dashboard.md): each file
 * becomes a byte array, with its name, its Content-Type (from its
 * extension) and a strong ETag (the first 128 bits of its SHA-256, in
 * hex).  Nothing is read from disk at run time.  The table is constant
 * data: read-only, shared by every thread.
 */
#ifndef LP_SERVER_DASHBOARD_ASSETS_H
#define LP_SERVER_DASHBOARD_ASSETS_H

#include <stddef.h>

typedef struct lp_dashboard_asset {
    const char *name;          /* file name under /dashboard/: "app.js" */
    const char *content_type;  /* "text/javascript; charset=utf-8", ... */
    const char *etag;          /* "\"<32 hex>\"" (with the quotes) */
    const unsigned char *data; /* the file's bytes (followed by one 0 byte) */
    size_t len;                /* the file's size */
} lp_dashboard_asset;

/* The embedded files, sorted by name; lp_dashboard_asset_count of them. */
extern const lp_dashboard_asset lp_dashboard_assets[];
extern const size_t lp_dashboard_asset_count;

#endif
