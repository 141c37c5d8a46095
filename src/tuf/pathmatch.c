/*
 * pathmatch.c — TUF delegation path patterns.
 *
 * A pattern and a target path are split at '/' and must have the same number
 * of parts; each part is matched with shell-style wildcards (fnmatch(3): '*',
 * '?', '[...]', no backslash escapes).  So '*' never crosses a '/', which is
 * what the specification and python-tuf do: the pattern "apps/" followed by
 * a star matches "apps/tool" but not "apps/canary/tool".
 */
#include "livepush/tuf_repo.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

bool lp_tuf_path_match(const char *pattern, const char *target)
{
    const char *p = pattern, *t = target;
    char pbuf[1024], tbuf[1024];
    for (;;) {
        const char *pe = strchr(p, '/'), *te = strchr(t, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p);
        size_t tl = te ? (size_t)(te - t) : strlen(t);
        if (pl >= sizeof pbuf || tl >= sizeof tbuf)
            return false;
        memcpy(pbuf, p, pl);
        pbuf[pl] = 0;
        memcpy(tbuf, t, tl);
        tbuf[tl] = 0;
        if (fnmatch(pbuf, tbuf, FNM_NOESCAPE) != 0)
            return false;
        if (!pe || !te)
            return !pe && !te;
        p = pe + 1;
        t = te + 1;
    }
}
