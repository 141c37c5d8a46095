/*
 * fuzz_json.c — libFuzzer harness for strict JSON parsing and both encoders.
 *
 * Each input goes through lp_json_parse.  When it parses, the canonical form
 * and the compact file form are written; the compact form is parsed again
 * and must give a value with the same canonical bytes, and dumping that
 * value must give the same compact bytes (the encoders must be lossless and
 * deterministic).  Reals make both encoders refuse; then both must refuse.
 * A mismatch calls abort(), which is how libFuzzer reports a finding; any
 * crash, leak or sanitizer report is a bug too.
 */
#include "tuf/json.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *v = NULL;
    lp_error err;
    if (lp_json_parse(data, size, NULL, &v, &err) != LP_OK) {
        check(err.code != LP_OK && err.msg[0] != '\0');
        return 0;
    }

    char *canon = NULL, *comp = NULL;
    size_t canon_len = 0, comp_len = 0;
    lp_status st_canon = lp_cjson_dumps(v, &canon, &canon_len, &err);
    lp_status st_comp = lp_json_dump_compact(v, &comp, &comp_len, &err);
    check((st_canon == LP_OK) == (st_comp == LP_OK));
    if (st_canon == LP_OK) {
        check(canon[canon_len] == '\0' && comp[comp_len] == '\0');
        /* The compact form is ASCII-only JSON. */
        for (size_t i = 0; i < comp_len; i++)
            check(comp[i] >= 0x20 && comp[i] <= 0x7e);

        lp_json_limits lim = {.max_bytes = comp_len + 1, .max_depth = 0};
        json_t *again = NULL;
        check(lp_json_parse(comp, comp_len, &lim, &again, &err) == LP_OK);
        char *canon2 = NULL, *comp2 = NULL;
        size_t canon2_len = 0, comp2_len = 0;
        check(lp_cjson_dumps(again, &canon2, &canon2_len, &err) == LP_OK);
        check(canon2_len == canon_len && memcmp(canon, canon2, canon_len) == 0);
        check(lp_json_dump_compact(again, &comp2, &comp2_len, &err) == LP_OK);
        check(comp2_len == comp_len && memcmp(comp, comp2, comp_len) == 0);
        free(canon2);
        free(comp2);
        json_decref(again);
    }
    free(canon);
    free(comp);
    json_decref(v);
    return 0;
}
