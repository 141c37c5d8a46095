#!/usr/bin/env bash
# agent_control.sh — the agent's local control API, driven through its unix
# socket and its loopback HTTP listener, against the real server.
#
# `livepush serve` runs on loopback, v1 is published with `livepush upload`,
# and `livepush agent` runs as a daemon with a long interval (so its own
# ticks do not interfere after the first).  Then, through the socket with
# both `curl --unix-socket` and `livepush control`:
#   1. the socket is 0600; status answers; the first tick installed v1
#      (started with --auto-apply none so that it does not: v1 is offered);
#   2. check offers v1; download (a dry run) stages v1 without switching;
#      apply makes v1 current without downloading again;
#   3. v2 published: apply -> v2 current; rollback-points lists 1 and 2;
#      rollback --to 1 -> 1 current, 2 marked bad;
#   4. the manifest of 2 is the published one (its SHA-256 is the server's);
#      an unknown route, a bad method, a bad id and a bad body get the JSON
#      error shape with 404/405/400;
#   5. a second agent whose first tick runs a 2 s pre-update hook: a request
#      made during the hook is answered after the tick; with --control-http
#      and a token: 401 without the
#      token, 401 with a wrong one, 200 with it; a non-loopback address is
#      refused (exit 2 or 1); a path that exists and is not a socket is
#      refused;
#   6. SIGTERM: the agent exits 0 and the socket file is gone.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
. "$LP_SOURCE_DIR/tests/support/device_e2e.sh"
e2e_begin agent_control python3 curl
E2E_PID_VARS="AGENT_PID AGENT2_PID"
AGENT_PID=""
AGENT2_PID=""
unset LIVEPUSH_APP LIVEPUSH_ROOT LIVEPUSH_CHANNEL LIVEPUSH_CRASH_AT LIVEPUSH_AGENT_CONFIG
device_setup
SOCK=$ROOT/.livepush/control.sock

# ctl ARGS: `livepush control --socket SOCK ARGS`
ctl() { "$AGENT_BIN" control --socket "$SOCK" "$@"; }
# ucurl METHOD PATH [BODY]: curl over the socket; prints "<status> <body>"
ucurl() {
    local out
    out=$(curl -sS --unix-socket "$SOCK" -X "$1" ${3:+-H 'Content-Type: application/json' --data "$3"} \
        -w '\n%{http_code}' "http://localhost$2") || die "curl $1 $2 failed"
    printf '%s %s\n' "$(tail -n1 <<<"$out")" "$(sed '$d' <<<"$out")"
}
wait_for_socket() {
    for _ in $(seq 1 200); do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || die "agent exited at start"
        sleep 0.05
    done
    die "no control socket at $1"
}

# ---- 1. the daemon and its socket ---------------------------------------------------
mk_release v1 0
publish v1
"$AGENT_BIN" agent --server "$URL" --root "$ROOT" --trusted-root "$ROOTJSON" --interval 3600 \
    --jitter 0 --auto-apply none --log-format json 2>>"$WORK/agent.err" &
AGENT_PID=$!
wait_for_socket "$SOCK" "$AGENT_PID"
[ "$(stat -c %a "$SOCK")" = 600 ] || die "socket mode $(stat -c %a "$SOCK")"
# The first tick (policy none) ends before the status answers: it holds the lock.
r=$(ucurl GET /v1/status)
[ "${r%% *}" = 200 ] || die "status: $r"
python3 -c "import json,sys; d=json.loads(sys.argv[1]); assert d['current'] is None and len(d['device_id'])==32, d" \
    "${r#* }" || die "status body: $r"
ok "agent daemon: socket 0600, GET /v1/status answers (nothing installed)"

# ---- 2. check, download (dry run), apply ------------------------------------------------
ctl check >"$WORK/check.json" || die "control check: exit $?"
[ "$(jq_py '(d["available"], d["offer"]["version"], d["offer"]["version_code"])' <"$WORK/check.json")" = "(True, 'v1', 1)" ] ||
    die "check: $(cat "$WORK/check.json")"
r=$(ucurl POST /v1/download)
[ "${r%% *}" = 200 ] || die "download: $r"
[ "$(jq_py '(d["outcome"], d["current"], d["version_code"])' <<<"${r#* }")" = "('staged', None, 1)" ] ||
    die "download body: $r"
[ -d "$ROOT/releases/1" ] && [ ! -e "$ROOT/current" ] || die "download switched or staged nothing"
ctl apply >"$WORK/apply.json" || die "control apply: exit $?"
[ "$(jq_py '(d["outcome"], d["current"], d["already_installed"])' <"$WORK/apply.json")" = "('activated', 1, True)" ] ||
    die "apply v1: $(cat "$WORK/apply.json")"
current_is v1
ok "check offers v1, download stages it (current unchanged), apply switches without a new download"

# ---- 3. v2, rollback points, rollback --------------------------------------------------
mk_release v2 0 extra/new.txt=two
publish v2
ctl apply --dry-run >"$WORK/apply.json" || die "control apply --dry-run: exit $?"
[ "$(jq_py '(d["outcome"], d["current"])' <"$WORK/apply.json")" = "('staged', 1)" ] ||
    die "apply --dry-run v2: $(cat "$WORK/apply.json")"
r=$(ucurl POST /v1/apply '{"dry_run":false}')
[ "${r%% *}" = 200 ] && [ "$(jq_py '(d["outcome"], d["current"])' <<<"${r#* }")" = "('activated', 2)" ] ||
    die "apply v2: $r"
current_is v2
ctl rollback-points >"$WORK/points.json" || die "rollback-points: exit $?"
[ "$(jq_py '([r["id"] for r in d["releases"]], d["current"], d["previous"])' <"$WORK/points.json")" = "([1, 2], 2, 1)" ] ||
    die "rollback-points: $(cat "$WORK/points.json")"
ctl rollback --to 1 --reason "operator test" >"$WORK/rb.json" || die "rollback: exit $?"
[ "$(jq_py 'd["current"]' <"$WORK/rb.json")" = 1 ] || die "rollback: $(cat "$WORK/rb.json")"
current_is v1
[ "$(status_py '[(b["id"], b["reason"]) for b in d["bad"]]')" = "[(2, 'operator test')]" ] ||
    die "bad list after rollback: $(dev status)"
ok "apply --dry-run stages v2, apply activates it, rollback-points lists 1 and 2, rollback --to 1"

# ---- 4. the manifest, errors ---------------------------------------------------------
ctl manifest 2 >"$WORK/m2.json" || die "manifest 2: exit $?"
want=$(lp inspect --release v2 --json | jq_py 'd["release"]["manifest"]["sha256"]')
got=$(sha256sum "$WORK/m2.json" | cut -d' ' -f1)
[ "$got" = "$want" ] || die "manifest of 2: sha256 $got, the server's $want"
r=$(ucurl GET /v1/nope)
[ "${r%% *}" = 404 ] && [ "$(jq_py 'd["error"]["code"]' <<<"${r#* }")" = not_found ] || die "bad route: $r"
r=$(ucurl DELETE /v1/status)
[ "${r%% *}" = 405 ] && [ "$(jq_py 'd["error"]["code"]' <<<"${r#* }")" = method_not_allowed ] ||
    die "bad method: $r"
r=$(ucurl GET /v1/releases/abc/manifest)
[ "${r%% *}" = 400 ] || die "bad id: $r"
r=$(ucurl GET /v1/releases/7/manifest)
[ "${r%% *}" = 404 ] && [ "$(jq_py 'd["error"]["message"]' <<<"${r#* }")" = "release 7 is not installed" ] ||
    die "manifest of a release not installed: $r"
r=$(ucurl POST /v1/apply '{"dry_run":"yes"}')
[ "${r%% *}" = 400 ] && [ "$(jq_py 'd["error"]["code"]' <<<"${r#* }")" = bad_request ] || die "bad body: $r"
r=$(ucurl POST /v1/rollback '{"to":9}')
[ "${r%% *}" = 404 ] || [ "${r%% *}" = 409 ] || die "rollback to a release not installed: $r"
expect_rc 4 "$AGENT_BIN" control --socket "$SOCK" manifest 9
grep -q "release 9 is not installed" "$WORK/err" || die "control manifest 9: $(cat "$WORK/err")"
ok "manifest of 2 is the published one ($got); 404/405/400 answers have the JSON error shape"

# ---- 5. loopback HTTP with a token ---------------------------------------------------
printf 'tok-%s\n' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$WORK/token"
TOKEN=$(head -n1 "$WORK/token")
ROOT2=$WORK/root2
# Its first tick installs v2 with a pre-update hook that takes 2 s: a request
# made while the hook runs is answered only after the tick (one lock).
mkdir -p "$WORK/hooks2"
printf '#!/bin/sh\ntouch "%s/hook.started"\nsleep 2\ntouch "%s/hook.done"\n' "$WORK" "$WORK" \
    >"$WORK/hooks2/pre-update"
chmod 755 "$WORK/hooks2/pre-update"
"$AGENT_BIN" agent --server "$URL" --root "$ROOT2" --trusted-root "$ROOTJSON" --interval 3600 \
    --jitter 0 --hooks-dir "$WORK/hooks2" --control-http 127.0.0.1:0 \
    --control-token-file "$WORK/token" --log-format json 2>>"$WORK/agent2.err" &
AGENT2_PID=$!
wait_for_socket "$ROOT2/.livepush/control.sock" "$AGENT2_PID"
for _ in $(seq 1 200); do
    [ -e "$WORK/hook.started" ] && break
    sleep 0.05
done
[ -e "$WORK/hook.started" ] || die "the second agent's tick did not run its hook"
"$AGENT_BIN" control --root "$ROOT2" status >"$WORK/st2.json" || die "control --root status"
[ -e "$WORK/hook.done" ] || die "status was answered while the tick was running"
[ "$(jq_py 'd["current"]["id"]' <"$WORK/st2.json")" = 2 ] || die "status after the tick: $(cat "$WORK/st2.json")"
ok "a request during a tick waits for it: answered after the 2 s hook, with v2 current"
PORT=""
for _ in $(seq 1 100); do
    PORT=$(python3 -c "
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d.get('msg') == 'control listening':
        print(d['http_port'])" "$WORK/agent2.err")
    [ -n "$PORT" ] && break
    sleep 0.05
done
[ -n "$PORT" ] && [ "$PORT" != 0 ] || die "no control HTTP port in the log: $(cat "$WORK/agent2.err")"
code=$(curl -s -o "$WORK/body" -w '%{http_code}' "http://127.0.0.1:$PORT/v1/status")
[ "$code" = 401 ] && [ "$(jq_py 'd["error"]["code"]' <"$WORK/body")" = unauthorized ] ||
    die "without a token: $code $(cat "$WORK/body")"
code=$(curl -s -o "$WORK/body" -w '%{http_code}' -H "Authorization: Bearer wrong" "http://127.0.0.1:$PORT/v1/status")
[ "$code" = 401 ] || die "with a wrong token: $code"
code=$(curl -s -o "$WORK/body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/status")
[ "$code" = 200 ] && [ "$(jq_py 'd["root"]' <"$WORK/body")" = "$(cd "$ROOT2" && pwd -P)" ] ||
    die "with the token: $code $(cat "$WORK/body")"
"$AGENT_BIN" control --url "http://127.0.0.1:$PORT" --token-file "$WORK/token" status >/dev/null ||
    die "livepush control --url with the token"
echo wrong >"$WORK/badtoken"
expect_rc 3 "$AGENT_BIN" control --url "http://127.0.0.1:$PORT" --token-file "$WORK/badtoken" status
e2e_stop "$AGENT2_PID"
AGENT2_PID=""
[ ! -e "$ROOT2/.livepush/control.sock" ] || die "second agent left its socket"
rc=0
"$AGENT_BIN" agent --server "$URL" --root "$ROOT2" --trusted-root "$ROOTJSON" --interval 3600 \
    --control-http 0.0.0.0:0 --control-token-file "$WORK/token" 2>"$WORK/err" || rc=$?
[ "$rc" -ne 0 ] && grep -q "not loopback" "$WORK/err" || die "non-loopback address: exit $rc: $(cat "$WORK/err")"
expect_rc 2 "$AGENT_BIN" agent --server "$URL" --root "$ROOT2" --control-http 127.0.0.1:0
: >"$WORK/plainfile"
rc=0
"$AGENT_BIN" agent --server "$URL" --root "$ROOT2" --trusted-root "$ROOTJSON" --interval 3600 \
    --control-socket "$WORK/plainfile" 2>"$WORK/err" || rc=$?
[ "$rc" -ne 0 ] && grep -q "exists and is not a socket" "$WORK/err" && [ -f "$WORK/plainfile" ] ||
    die "a plain file as the socket path: exit $rc: $(cat "$WORK/err")"
ok "--control-http: 401 without or with a wrong token, 200 with it; non-loopback and non-socket paths refused"

# ---- 6. SIGTERM --------------------------------------------------------------------
kill -TERM "$AGENT_PID"
rc=0
wait "$AGENT_PID" || rc=$?
AGENT_PID=""
[ "$rc" = 0 ] || die "agent exited $rc after SIGTERM"
[ ! -e "$SOCK" ] || die "the socket file is still there"
expect_rc 1 "$AGENT_BIN" control --socket "$SOCK" status
ok "SIGTERM: agent exits 0, socket removed; control then fails with exit 1"
