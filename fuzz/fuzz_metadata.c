/*
 * fuzz_metadata.c — libFuzzer harness for the TUF metadata parser and the
 * trusted-set checks.  The input is parsed as each metadata type; when it
 * parses as a root it is also used to start a trusted set and to verify
 * itself as the next root, which runs the key parsing and signature paths.
 * Any crash, leak or sanitizer report is a bug.
 */
#include "tuf/metadata.h"
#include "tuf/trusted.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    for (int t = LP_MD_ROOT; t <= LP_MD_TARGETS; t++) {
        lp_md *md = NULL;
        if (lp_md_parse(data, size, (lp_md_type)t, "fuzz", &md, NULL) == LP_OK) {
            if (t == LP_MD_TARGETS)
                for (size_t i = 0; i < md->ndelegations; i++)
                    (void)lp_md_role_matches(&md->delegations[i], "a/b.txt");
            lp_md_free(md);
        }
    }
    lp_trusted ts;
    if (lp_trusted_init(&ts, data, size, 0, NULL) == LP_OK) {
        (void)lp_trusted_update_root(&ts, data, size, NULL);
        (void)lp_trusted_update_timestamp(&ts, data, size, NULL);
        lp_trusted_free(&ts);
    }
    return 0;
}
