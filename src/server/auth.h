/*
 * auth.h — who is calling the management API, and may they (internal).
 *
 * Every /api/v1 handler starts with lp_auth_require: it takes the
 * "Authorization: Bearer lp_<id>_<secret>" header apart
 * (lp_token_parse_bearer), looks the id up in the database through a pooled
 * connection, verifies the secret (lp_token_verify; an unknown or revoked
 * id is verified against no record, so it costs the same time and gets the
 * same answer as a wrong secret), checks the scopes the route needs
 * (lp_token_scopes_allow, which expands implied scopes) and records the use
 * (last_used_at, at most one write per token and second).
 *
 * Refusals are answered here, in the one JSON error shape:
 *     401 unauthorized   no header, malformed header or token, unknown,
 *                        revoked or wrong token; with
 *                        WWW-Authenticate: Bearer realm="livepush"
 *     403 forbidden      a valid token without the scope; the message
 *                        names the scope needed
 *     503 unavailable    the database could not be reached
 * Nothing of the header value is ever logged or echoed: messages name only
 * the token id of a well-formed token.
 */
#ifndef LP_SERVER_AUTH_H
#define LP_SERVER_AUTH_H

#include "livepush/token.h"
#include "server/http.h"
#include "server/service.h"

#include <stdbool.h>

/* The caller a request was authenticated as. */
typedef struct lp_auth {
    char token_id[LP_TOKEN_ID_LEN + 1];
    lp_scopes scopes; /* as stored (not expanded) */
} lp_auth;

/* Authenticates `rq` and checks that its token holds every scope in `need`
 * (0: any valid token).  True with *out filled when the request may go on;
 * false when a refusal has been answered (the handler then returns). */
bool lp_auth_require(lp_http_request *rq, lp_service *svc, lp_scopes need, lp_auth *out);

/* The same for a route that one of several scopes opens: the token must
 * hold at least one scope of `any` (after expansion; 0: any valid token).
 * The 403 names them ("lacks the scope 'upload' or 'approve' that ...
 * needs"). */
bool lp_auth_require_any(lp_http_request *rq, lp_service *svc, lp_scopes any, lp_auth *out);

/* Scopes from a stored, comma-separated list; names this version does not
 * know are ignored (a newer server may have written them). */
lp_scopes lp_auth_scopes_from_text(const char *text);

#endif
