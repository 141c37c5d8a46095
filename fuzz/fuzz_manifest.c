/*
 * fuzz_manifest.c — libFuzzer harness for the tree manifest parser.
 *
 * A manifest is what a publisher uploads and what becomes a TUF target
 * file, so lp_manifest_from_json faces hostile bytes.  Each input is parsed;
 * a refusal must come with a status and a message and leave the manifest
 * empty.  An accepted manifest must satisfy every rule the parser promises
 * (sorted unique valid paths, listed parents, normalised modes, valid
 * hashes, targets inside the tree), and must survive a round trip: its
 * canonical JSON parses again to the same canonical bytes.  A violation
 * calls abort(), which is how libFuzzer reports a finding; any crash, leak
 * or sanitizer report is a bug too.
 */
#include "livepush/bundle.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static void check_entries(const lp_manifest *m)
{
    lp_error err;
    for (size_t i = 0; i < m->count; i++) {
        const lp_manifest_entry *e = &m->entries[i];
        check(lp_manifest_check_path(e->path, 0, &err) == LP_OK);
        if (i > 0)
            check(strcmp(m->entries[i - 1].path, e->path) < 0);
        const char *slash = strrchr(e->path, '/');
        if (slash) {
            char *parent = strndup(e->path, (size_t)(slash - e->path));
            check(parent != NULL);
            const lp_manifest_entry *p = lp_manifest_find(m, parent);
            check(p != NULL && p->type == LP_ENTRY_DIR);
            free(parent);
        }
        check(lp_manifest_find(m, e->path) == e);
        switch (e->type) {
        case LP_ENTRY_FILE:
            check(e->mode == 0644 || e->mode == 0755);
            check(lp_blob_id_valid(e->sha256));
            check(e->target == NULL);
            break;
        case LP_ENTRY_SYMLINK:
            check(e->target != NULL);
            check(lp_manifest_check_target(e->path, e->target, 0, &err) == LP_OK);
            break;
        case LP_ENTRY_DIR: check(e->mode == 0755 && e->target == NULL); break;
        default: check(0);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lp_manifest m;
    lp_error err;
    if (lp_manifest_from_json(data, size, &m, &err) != LP_OK) {
        check(err.code != LP_OK && err.msg[0] != '\0');
        check(m.count == 0 && m.entries == NULL);
        return 0;
    }
    check(m.finished);
    check_entries(&m);

    char *json = NULL, *json2 = NULL;
    size_t len = 0, len2 = 0;
    check(lp_manifest_to_json(&m, &json, &len, &err) == LP_OK);
    lp_manifest again;
    check(lp_manifest_from_json(json, len, &again, &err) == LP_OK);
    check(again.count == m.count);
    check(lp_manifest_to_json(&again, &json2, &len2, &err) == LP_OK);
    check(len == len2 && memcmp(json, json2, len) == 0);
    check(lp_manifest_total_size(&again) == lp_manifest_total_size(&m));
    free(json);
    free(json2);
    lp_manifest_free(&again);
    lp_manifest_free(&m);
    return 0;
}
