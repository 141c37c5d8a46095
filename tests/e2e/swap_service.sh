#!/usr/bin/env bash
# swap_service.sh — the example service (examples/service) on both ways of
# replacing running code, with the real server, the real agent daemon (and
# its control socket), the real supervisor (livepush-agent run --swap) and
# real uploads; a load client counts every failed connection or answer.
#
#   1. v1 (server s1, module 1.0) installed by the agent and started by the
#      supervisor: the answers come from the module ("s1+1.0 /path");
#   2. under load, v2 changes only the module (2.0): the supervisor adopts
#      the release (no new process), the server's host follows `current`
#      and swaps the module in: the same process (same pid) answers
#      "s1+2.0", no request failed, and the module's request counter went
#      on from 1.0's (its state was handed over);
#   3. under load, v3's module (3.0) passes its self-test and crashes on its
#      first request: the crash is claimed, the slot is back on 2.0 at once,
#      the request is made again there (no request failed), the host reports
#      release 3 on the agent's control socket, the agent rolls the install
#      back to 2, marks 3 bad with the host's reason, sends the rolled_back
#      event (the server lists it) and does not install 3 again; the same
#      process serves throughout;
#   4. under load, v4 changes the server binary (and its VERSION): the
#      supervisor restarts into it with the same socket, the old process
#      drains; no connection dropped; the new process answers "s2+2.0";
#   5. the control route: a second report of release 3 is answered
#      "already_rolled_back"; a report of a release that is not current is
#      409; a bad body is 400.  (And a --swap path leaving the release is a
#      usage error.)
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
. "$LP_SOURCE_DIR/tests/support/device_e2e.sh"
e2e_begin swap_service python3 curl
: "${LP_EXAMPLE_SERVER:?LP_EXAMPLE_SERVER must name the example service (examples/service)}"
: "${LP_EXAMPLE_LOAD:?LP_EXAMPLE_LOAD must name the load client (examples/service)}"
EX=$(dirname "$LP_EXAMPLE_SERVER")
for m in handler handler-2 handler-crash; do
    [ -f "$EX/$m.so" ] || { echo "$EX/$m.so is missing (built with the examples)" >&2; exit 1; }
done
E2E_PID_VARS="LOAD_PID RUN_PID AGENT_PID"
RUN_PID=""
LOAD_PID=""
AGENT_PID=""
unset LIVEPUSH_APP LIVEPUSH_ROOT LIVEPUSH_CHANNEL LIVEPUSH_CRASH_AT LIVEPUSH_AGENT_CONFIG
unset LIVEPUSH_INSTALL_ROOT
device_setup
E2E_LOGS="$WORK/server.err $WORK/agent.err $WORK/run.err"
SOCK=$ROOT/.livepush/control.sock
T0=$(date +%s)

# mk_service NAME SERVER_VERSION MODULE [rebuilt]: a release folder with the
# example server (with "rebuilt": other bytes, as a new build would be),
# VERSION and lib/handler.so (MODULE: handler, handler-2, handler-crash)
mk_service() {
    local d=$WORK/src/$1
    rm -rf "$d"
    mkdir -p "$d/bin" "$d/lib"
    cp "$LP_EXAMPLE_SERVER" "$d/bin/server"
    [ "${4:-}" != rebuilt ] || printf 'a rebuilt server\n' >>"$d/bin/server"
    chmod 755 "$d/bin/server"
    echo "$2" >"$d/VERSION"
    cp "$EX/$3.so" "$d/lib/handler.so"
}

# wait_until DESC CMD...: waits (30 s at most) until CMD succeeds
wait_until() {
    local desc=$1
    shift
    for _ in $(seq 1 300); do
        "$@" && return 0
        kill -0 "$RUN_PID" 2>/dev/null || die "the supervisor exited while waiting for $desc"
        kill -0 "$AGENT_PID" 2>/dev/null || die "the agent exited while waiting for $desc"
        sleep 0.1
    done
    die "waited 30 s for $desc"
}
has_log() { [ "$(log_count "$@")" -ge 1 ]; }
# the service's swap lines: "server <v> (pid <p>): swap <kind>: <message>"
swap_lines() { grep -E "^server [^ ]+ \(pid $1\): swap $2: " "$WORK/run.err" || true; }
has_swap() { [ -n "$(swap_lines "$1" "$2" | grep -E -e "$3")" ]; }
current_is_release() { [ "$(readlink "$ROOT/current")" = "releases/$1" ]; }
# no release on probation (the agent activates the next one only then)
settled() { [ "$(status_py 'd["probation"]')" = None ]; }

# stats: the module's answer to /stats ("<server>+<module> /stats served N pid P")
stats() { curl -sS --max-time 5 "http://$ADDR/stats"; }

# load_start / load_stop: the load client in the background, its summary checked
load_start() {
    "$LP_EXAMPLE_LOAD" --connect "$ADDR" --short 4 --long 2 --duration 0 --lines 40 \
        --line-interval 25 >"$WORK/load-$1.json" 2>"$WORK/load-$1.err" &
    LOAD_PID=$!
    sleep 1
}
load_stop() {
    kill -INT "$LOAD_PID"
    local rc=0
    wait "$LOAD_PID" || rc=$?
    LOAD_PID=""
    [ -s "$WORK/load-$1.json" ] || die "the load client wrote nothing: $(cat "$WORK/load-$1.err")"
    echo "load $1: $(cat "$WORK/load-$1.json")"
    return "$rc"
}

# ---- 1. v1 -------------------------------------------------------------------------
expect_rc 2 "$AGENT_BIN" run --root "$ROOT" --listen 127.0.0.1:0 --swap ../lib/x.so -- bin/server
grep -q -- "--swap: path \"../lib/x.so\"" "$WORK/err" || die "a bad --swap: $(cat "$WORK/err")"
mk_service v1 s1 handler
publish v1
"$AGENT_BIN" agent --server "$URL" --root "$ROOT" --trusted-root "$ROOTJSON" --interval 1 \
    --jitter 0 --log-format json 2>>"$WORK/agent.err" &
AGENT_PID=$!
"$AGENT_BIN" run --root "$ROOT" --listen 127.0.0.1:0 --swap lib/handler.so --ready-timeout 10 \
    --stop-timeout 10 --healthy-after 3.5 --log-format json -- bin/server --probation-ms 2000 \
    >"$WORK/run.out" 2>>"$WORK/run.err" &
RUN_PID=$!
ADDR=""
for _ in $(seq 1 100); do
    ADDR=$(sed -n 's/^listening on //p' "$WORK/run.out")
    [ -n "$ADDR" ] && break
    sleep 0.05
done
[ -n "$ADDR" ] || die "the supervisor printed no 'listening on' line"
wait_until "v1 ready" has_log ready release=1
V1_PID=$(log_field ready pid release=1)
grep -q "server s1 (pid $V1_PID): ready, 1 listening sockets from the supervisor, module 1.0, following $ROOT" \
    "$WORK/run.err" || die "v1 did not start with its module, following the root"
[ -S "$SOCK" ] || die "no control socket at $SOCK"
s=$(stats)
case $s in "s1+1.0 /stats served "*" pid $V1_PID") ;; *) die "v1's stats: $s" ;; esac
ok "v1 installed and started (pid $V1_PID); the module answers: $s"

# ---- 2. v2: only the module changes ------------------------------------------------
wait_until "v1 out of probation" settled
load_start v2
mk_service v2 s1 handler-2
publish v2
wait_until "v2 adopted" has_log adopted release=2
wait_until "module 2.0 live" has_swap "$V1_PID" swapped "version 2\.0 \(.*/releases/2/lib/handler\.so"
wait_until "module 2.0 committed" has_swap "$V1_PID" committed "version 2\.0 passed probation"
sleep 0.5
load_stop v2 || die "the load client failed during v2"
s=$(stats)
python3 - "$WORK/load-v2.json" "$s" "$V1_PID" <<'PYEOF' || die "v2: $(cat "$WORK/load-v2.json") / $s"
import json, sys
d = json.load(open(sys.argv[1]))
words = sys.argv[2].split()
assert d["failed"] == 0, d
assert set(d["versions"]) == {"s1+1.0", "s1+2.0"}, d
assert d["versions"]["s1+1.0"] > 100 and d["versions"]["s1+2.0"] > 100, d
# sessions open across the swap went on with the new module on the same connection
assert d["mixed_sessions"] >= 1, d
assert words[0] == "s1+2.0" and words[1] == "/stats" and words[5] == sys.argv[3], words
served = int(words[3])
# every answer went through the module: the count carried over from 1.0 covers
# the answers before the swap (the few between the state snapshot and the swap
# are not counted), not only those since
before = d["versions"]["s1+1.0"]
assert served >= d["ok"] - 200 and served > before, (served, d)
print("v2: %d answers from 1.0 then %d from 2.0, %d sessions spanned the swap, 0 failed; "
      "the counter reads %d" % (before, d["versions"]["s1+2.0"], d["mixed_sessions"], served))
PYEOF
[ "$(log_count ready)" = 1 ] || die "another process was started for v2"
[ "$(log_count starting)" = 1 ] || die "another process was started for v2"
kill -0 "$V1_PID" || die "v1's process is gone"
ok "v2 swapped in by the same process (pid $V1_PID) under load: no failure, state carried over"

# ---- 3. v3: the module crashes on its first request --------------------------------
wait_until "v2 marked healthy" has_log "marked healthy" release=2
settled || die "v2 still on probation: $(dev status)"
load_start v3
mk_service v3 s1 handler-crash
publish v3
wait_until "v3 adopted" has_log adopted release=3
wait_until "module 3.0 rolled back" has_swap "$V1_PID" rolled_back "version 3\.0 crashed on probation \(SIGSEGV"
wait_until "the report taken by the agent" has_swap "$V1_PID" reported "release 3 .*: rolled_back"
wait_until "the install back on 2" current_is_release 2
wait_until "release 2 adopted again" has_log adopted release=2 from=3
sleep 1
load_stop v3 || die "the load client failed during v3"
python3 - "$WORK/load-v3.json" <<'PYEOF' || die "v3: $(cat "$WORK/load-v3.json")"
import json, sys
d = json.load(open(sys.argv[1]))
# at most the requests in flight (6 threads) may fail; each crashed call is made
# again on the version the slot went back to, so none should
assert d["failed"] <= 6, d
assert d["failed"] == 0, d
assert set(d["versions"]) == {"s1+2.0"}, d
print("v3: %d answers, all from 2.0; %d failed" % (d["ok"], d["failed"]))
PYEOF
crashed=$(swap_lines "$V1_PID" rolled_back | grep -o '[0-9]* call(s) abandoned' | head -n1)
status_py '(d["current"]["id"], [(b["id"], b["reason"]) for b in d["bad"]])' >"$WORK/st3"
python3 - "$WORK/st3" "$V1_PID" <<'PYEOF' || die "agent status after v3: $(cat "$WORK/st3")"
import ast, sys
cur, bad = ast.literal_eval(open(sys.argv[1]).read())
assert cur == 2, cur
reasons = dict(bad)
r = reasons[3]
assert r.startswith("live swap in process %s: slot handler: version 3.0 crashed on probation (SIGSEGV"
                    % sys.argv[2]), r
PYEOF
wait_until "the rolled_back event on the server" python3 -c '
import json, subprocess, sys
ev = json.loads(subprocess.run(sys.argv[1:], capture_output=True, text=True, check=True).stdout)
rb = [e for e in ev["events"] if e["type"] == "rolled_back" and e["from_version_code"] == 3]
sys.exit(0 if rb and rb[0]["version_code"] == 2 and "crashed on probation" in rb[0]["reason"] else 1)
' "$LP_BIN" events --json --device "$(status_py 'd["device_id"]')" --limit 1000
sleep 2 # two more agent ticks: release 3 is bad, it is not installed again
current_is_release 2 || die "release 3 came back: current is $(readlink "$ROOT/current")"
[ "$(log_count ready)" = 1 ] || die "a process was started for v3"
kill -0 "$V1_PID" || die "v1's process is gone"
s=$(stats)
case $s in "s1+2.0 /stats served "*" pid $V1_PID") ;; *) die "stats after v3: $s" ;; esac
ok "v3 crashed in process (${crashed:-? call(s) abandoned}, each made again): swapped back to 2.0, no failed request; reported, rolled back to 2 and marked bad by the agent, rolled_back on the server"

# ---- 4. v4: a new server binary -------------------------------------------------------
load_start v4
mk_service v4 s2 handler-2 rebuilt
publish v4
wait_until "v4 ready" has_log ready release=4
V4_PID=$(log_field ready pid release=4)
[ "$V4_PID" != "$V1_PID" ] || die "v4 did not start a new process"
[ "$(log_field "restart needed" differs release=4)" = "VERSION changed" ] ||
    [ "$(log_field "restart needed" differs release=4)" = "bin/server changed" ] ||
    die "restart reason: $(log_field "restart needed" differs release=4)"
wait_until "the old process retired" has_log retired pid="$V1_PID"
[ "$(log_field retired how pid="$V1_PID")" = "exited with status 0" ] ||
    die "v1 did not drain cleanly: $(log_field retired how pid="$V1_PID")"
sleep 0.5
load_stop v4 || die "the load client failed during v4"
python3 - "$WORK/load-v4.json" <<'PYEOF' || die "v4: $(cat "$WORK/load-v4.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["failed"] == 0, d
assert set(d["versions"]) == {"s1+2.0", "s2+2.0"}, d
assert d["mixed_sessions"] == 0, d  # a connection stays with the process that took it
print("v4: %d answers from the old process, %d from the new one, 0 failed" %
      (d["versions"]["s1+2.0"], d["versions"]["s2+2.0"]))
PYEOF
s=$(stats)
case $s in "s2+2.0 /stats served "*" pid $V4_PID") ;; *) die "v4's stats: $s" ;; esac
grep -q "server s1 (pid $V1_PID): module 2.0: 3 swaps, 1 rollbacks, [1-9][0-9]* calls crashed (each made again), 0 failed" \
    "$WORK/run.err" || die "v1's module summary: $(grep "pid $V1_PID): module" "$WORK/run.err")"
ok "v4 (new binary): restarted into pid $V4_PID with the same socket, no connection dropped"

# ---- 5. the control route ---------------------------------------------------------------
# ucurl METHOD PATH BODY: "<status> <body>"
ucurl() {
    local out
    out=$(curl -sS --unix-socket "$SOCK" -X "$1" -H 'Content-Type: application/json' \
        --data "$3" -w '\n%{http_code}' "http://localhost$2") || die "curl $1 $2 failed"
    printf '%s %s\n' "$(tail -n1 <<<"$out")" "$(sed '$d' <<<"$out")"
}
r=$(ucurl POST /v1/release-failed '{"release":3,"reason":"again"}')
[ "${r%% *}" = 200 ] && [ "$(jq_py '(d["outcome"], d["current"])' <<<"${r#* }")" = "('already_rolled_back', 4)" ] ||
    die "a repeated report: $r"
r=$(ucurl POST /v1/release-failed '{"release":2,"reason":"late"}')
[ "${r%% *}" = 409 ] && [ "$(jq_py 'd["error"]["code"]' <<<"${r#* }")" = bad_state ] ||
    die "a report of a release not current: $r"
r=$(ucurl POST /v1/release-failed '{"release":4}')
[ "${r%% *}" = 400 ] || die "a report without a reason: $r"
r=$(ucurl POST /v1/release-failed '{"release":"4","reason":"x"}')
[ "${r%% *}" = 400 ] || die "a report with a bad id: $r"
current_is_release 4 || die "a refused report changed current: $(readlink "$ROOT/current")"
ok "release-failed: a repeat is already_rolled_back, a release not current 409, bad bodies 400"

kill -TERM "$RUN_PID"
rc=0
wait "$RUN_PID" || rc=$?
RUN_PID=""
[ "$rc" -eq 0 ] || die "the supervisor exited $rc after SIGTERM"
echo "# $(($(date +%s) - T0)) s"
