# e2e.sh — what the end-to-end tests in tests/e2e/ share.  Sourced, not run:
#
#   set -euo pipefail
#   . "$LP_SOURCE_DIR/tests/support/e2e.sh"
#   e2e_begin NAME [TOOL...]
#
# CTest gives every e2e test LP_BIN (the livepush binary) and LP_SOURCE_DIR.
#
#   e2e_begin NAME TOOL...  checks LP_BIN and that each TOOL is on PATH, makes
#                           WORK (a new temporary folder) and arranges that at
#                           exit the server, and every background process whose
#                           PID is in a variable named in E2E_PID_VARS (e.g.
#                           E2E_PID_VARS="UPLOAD_PID"), is stopped and WORK
#                           removed
#   ok TEXT                 prints "ok N - TEXT" (TAP-like, N counts up)
#   die TEXT                prints "FAIL - TEXT", the tail of each log in
#                           E2E_LOGS (default: the server's stderr), exits 1
#   lp ARGS                 runs the livepush binary
#   expect_rc CODE CMD...   runs CMD (stdout to $WORK/out, stderr to $WORK/err)
#                           and dies unless it exits with CODE
#   jq_py EXPR              prints the Python expression EXPR of the JSON
#                           document on stdin, bound to d
#   start_server ARGS       `livepush serve ARGS` in the background; sets
#                           SERVER_PID and URL (from its "listening on" line);
#                           stdout to $WORK/server.out, stderr appended to
#                           $WORK/server.err
#   stop_server             SIGTERM, then dies unless the server exits 0
#   kill_server             SIGKILL (a crash), waits for it to be gone
#   e2e_stop PID...         stops background processes (TERM, then waits)

e2e_begin() {
    local name=$1 tool
    shift
    : "${LP_BIN:?LP_BIN must name the livepush binary}"
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
    done
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/lp-e2e-$name-XXXXXX")
    SERVER_PID=""
    E2E_PID_VARS=""
    E2E_LOGS="$WORK/server.err"
    CHECKS=0
    trap e2e_exit EXIT
}

e2e_stop() {
    local pid
    for pid in "$@"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

e2e_exit() {
    local v
    for v in $E2E_PID_VARS; do
        e2e_stop "${!v:-}"
    done
    e2e_stop "$SERVER_PID"
    rm -rf "$WORK"
}

ok() {
    CHECKS=$((CHECKS + 1))
    echo "ok $CHECKS - $*"
}

die() {
    local log
    echo "FAIL - $*" >&2
    for log in $E2E_LOGS; do
        [ -f "$log" ] && tail -n 20 "$log" >&2
    done
    exit 1
}

lp() { "$LP_BIN" "$@"; }

expect_rc() {
    local want=$1 rc=0
    shift
    "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
    [ "$rc" -eq "$want" ] ||
        die "$* : exit $rc, expected $want; stdout: $(head -c 2000 "$WORK/out"); stderr: $(head -c 2000 "$WORK/err")"
}

jq_py() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

start_server() {
    : >"$WORK/server.out"
    "$LP_BIN" serve "$@" >"$WORK/server.out" 2>>"$WORK/server.err" &
    SERVER_PID=$!
    URL=""
    for _ in $(seq 1 200); do
        URL=$(sed -n 's/^listening on //p' "$WORK/server.out")
        [ -n "$URL" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited at start"
        sleep 0.05
    done
    die "server printed no 'listening on' line"
}

stop_server() {
    local rc=0
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || rc=$?
    SERVER_PID=""
    [ "$rc" -eq 0 ] || die "server exited with $rc after SIGTERM"
}

kill_server() {
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# The JSON log of `livepush run` in $WORK/run.err (the service's own lines,
# not JSON, are skipped).  log_count MSG [KEY=VALUE...]: how many lines have
# that msg and those fields; log_field MSG FIELD [KEY=VALUE...]: FIELD of the
# last such line (empty when none).
log_py() {
    python3 - "$WORK/run.err" "$@" <<'PYEOF'
import json, sys
mode, msg = sys.argv[2], sys.argv[3]
field = sys.argv[4] if mode == "field" else None
conds = dict(a.split("=", 1) for a in sys.argv[5 if field else 4:])
hits = []
for line in open(sys.argv[1]):
    try:
        d = json.loads(line)
    except ValueError:
        continue  # the service's own lines
    if d.get("msg") == msg and all(str(d.get(k)) == v for k, v in conds.items()):
        hits.append(d)
print(len(hits) if mode == "count" else (hits[-1].get(field) if hits else ""))
PYEOF
}
log_count() { log_py count "$@"; }
log_field() { log_py field "$@"; }
