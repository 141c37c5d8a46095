#!/usr/bin/env bash
# run_restart.sh — `livepush run`: the example service restarted into new
# releases under load, with the real server, the real agent and the real
# supervisor (livepush-agent run), and a load client counting every failed
# connection or answer.
#
#   0. usage errors exit 2 (no command, a bad --listen, a bad timeout);
#   1. the supervisor starts on an empty install root (waits for a release),
#      binds 127.0.0.1:0 and prints the address; `agent --once` installs v1
#      and the supervisor starts it by itself: the service got its socket
#      from the supervisor (LISTEN_PID matched) and answers "v1";
#   2. under continuous load (short HTTP connections and long line
#      sessions), `agent --once` activates v2: the supervisor starts v2 with
#      the same socket, waits for READY=1, retires v1 (which finishes its
#      sessions); new requests get "v2"; after --healthy-after the release
#      is marked healthy, ending its probation;
#   3. v3 crashes at start (its VERSION file is missing): v2 keeps serving,
#      `current` goes back to v2, v3 is marked bad with the supervisor's
#      reason;
#   4. v4 never says READY=1 (a script that sleeps): after --ready-timeout
#      it is stopped, v2 keeps serving, v4 is rolled back the same way;
#   5. the load client saw no failed connection and no failed answer through
#      all of it, no session that moved between versions, answers from v1
#      and v2 only;
#   6. the rollbacks reach the server as rolled_back events (from 3 and 4
#      to 2, with the reason) at the next tick;
#   7. the serving process killed with SIGKILL: the supervisor starts the
#      current release again after its back-off, and a request sent while
#      no process runs waits in the socket's queue and is answered;
#   8. SIGHUP restarts the same release the same way (new process ready,
#      old one retired);
#   9. SIGTERM stops the service (it drains and exits 0): the supervisor
#      exits 0, its notify folder is gone, the port refuses connections.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
. "$LP_SOURCE_DIR/tests/support/device_e2e.sh"
e2e_begin run_restart python3
: "${LP_EXAMPLE_SERVER:?LP_EXAMPLE_SERVER must name the example service (examples/service)}"
: "${LP_EXAMPLE_LOAD:?LP_EXAMPLE_LOAD must name the load client (examples/service)}"
E2E_PID_VARS="LOAD_PID RUN_PID"
RUN_PID=""
LOAD_PID=""
unset LIVEPUSH_APP LIVEPUSH_ROOT LIVEPUSH_CHANNEL LIVEPUSH_CRASH_AT LIVEPUSH_AGENT_CONFIG
device_setup
E2E_LOGS="$WORK/server.err $WORK/agent.err $WORK/run.err"

# mk_service NAME [VERSION]: a release folder with the example service and a
# VERSION file holding VERSION (none when VERSION is "-")
mk_service() {
    local d=$WORK/src/$1
    rm -rf "$d"
    mkdir -p "$d/bin"
    cp "$LP_EXAMPLE_SERVER" "$d/bin/server"
    chmod 755 "$d/bin/server"
    [ "${2:-$1}" = "-" ] || echo "${2:-$1}" >"$d/VERSION"
}

# wait_log N MSG [KEY=VALUE...]: waits (20 s at most) for N such lines
wait_log() {
    local want=$1
    shift
    for _ in $(seq 1 200); do
        [ "$(log_count "$@")" -ge "$want" ] && return 0
        kill -0 "$RUN_PID" 2>/dev/null || die "the supervisor exited while waiting for '$*'"
        sleep 0.1
    done
    die "waited for $want '$*' lines in the supervisor's log"
}

# probe: 20 HTTP requests now; prints the versions that answered
probe() {
    "$LP_EXAMPLE_LOAD" --connect "$ADDR" --short 2 --long 0 --requests 10 --duration 30 \
        >"$WORK/probe.json" || die "probe failed: $(cat "$WORK/probe.json")"
    jq_py 'sorted(d["versions"].items())' <"$WORK/probe.json"
}

run_run() {
    "$AGENT_BIN" run --root "$ROOT" --listen 127.0.0.1:0 --ready-timeout 3 --stop-timeout 10 \
        --healthy-after 1 --restart-delay 0.5 --log-format json "$@" -- bin/server \
        >"$WORK/run.out" 2>>"$WORK/run.err" &
    RUN_PID=$!
}

# ---- 0. usage ------------------------------------------------------------------------
expect_rc 2 "$AGENT_BIN" run --root "$ROOT" --listen 127.0.0.1:0
grep -q "give the app to run" "$WORK/err" || die "no command: $(cat "$WORK/err")"
expect_rc 2 "$AGENT_BIN" run --root "$ROOT" --listen localhost:80 -- bin/server
grep -q "not a numeric IPv4 address" "$WORK/err" || die "bad --listen: $(cat "$WORK/err")"
expect_rc 2 "$AGENT_BIN" run --root "$ROOT" --listen 127.0.0.1:0 --ready-timeout 0 -- bin/server
expect_rc 2 "$AGENT_BIN" run --root "$ROOT" --listen 127.0.0.1:70000 -- bin/server
help=$("$AGENT_BIN" run --help) || die "run --help: exit $?"
grep -q "LISTEN_FDS" <<<"$help" || die "run --help does not explain the sockets"
ok "usage errors exit 2"

# ---- 1. start on an empty root, then v1 ---------------------------------------------
: >"$WORK/run.err"
run_run
for _ in $(seq 1 100); do
    ADDR=$(sed -n 's/^listening on //p' "$WORK/run.out")
    [ -n "$ADDR" ] && break
    sleep 0.05
done
[ -n "$ADDR" ] || die "the supervisor printed no 'listening on' line"
case $ADDR in 127.0.0.1:0 | "") die "port 0 was not resolved: $ADDR" ;; esac
wait_log 1 "waiting for a release"
ok "supervisor listening on $ADDR, waiting for a release"

mk_service v1
publish v1
agent_once || die "agent --once (v1): exit $?"
wait_log 1 ready release=1
grep -q "server v1 (pid [0-9]*): ready, 1 listening sockets from the supervisor" "$WORK/run.err" ||
    die "v1 did not take its socket from the supervisor"
V1_PID=$(log_field ready pid release=1)
[ "$(probe)" = "[('v1', 20)]" ] || die "v1 answers: $(cat "$WORK/probe.json")"
ok "v1 installed by the agent and started by the supervisor (pid $V1_PID)"

# ---- 2. v2 under load ----------------------------------------------------------------
"$LP_EXAMPLE_LOAD" --connect "$ADDR" --short 6 --long 3 --duration 0 --lines 40 \
    --line-interval 25 >"$WORK/load.json" 2>"$WORK/load.err" &
LOAD_PID=$!
sleep 1
mk_service v2
publish v2
agent_once || die "agent --once (v2): exit $?"
[ "$(readlink "$ROOT/current")" = releases/2 ] || die "v2 is not current"
wait_log 1 ready release=2
wait_log 1 retired pid="$V1_PID"
V2_PID=$(log_field ready pid release=2)
[ "$(log_field retiring replaced_by pid="$V1_PID")" = "$V2_PID" ] || die "v1 was not replaced by v2"
[ "$(log_field retired how pid="$V1_PID")" = "exited with status 0" ] ||
    die "v1 did not drain cleanly: $(log_field retired how pid="$V1_PID")"
[ "$(probe)" = "[('v2', 20)]" ] || die "after the switch: $(cat "$WORK/probe.json")"
wait_log 1 "marked healthy" release=2
[ "$(status_py 'd["probation"]')" = "None" ] || die "v2 still on probation: $(dev status)"
ok "v2 started with the same socket, v1 retired after draining, v2 marked healthy"

# ---- 3. v3 crashes at start ---------------------------------------------------------
mk_service v3 -
publish v3
agent_once || die "agent --once (v3): exit $?"
wait_log 1 "rolled back" from=3 to=2
[ "$(readlink "$ROOT/current")" = releases/2 ] || die "current is $(readlink "$ROOT/current") after v3"
reason=$(status_py '[b["reason"] for b in d["bad"] if b["id"] == 3][0]')
case $reason in
*"livepush run: process "*" of release 3 exited with status 1 before it was ready; release 2 kept serving"*) ;;
*) die "v3's bad reason: $reason" ;;
esac
[ "$(log_field ready pid)" = "$V2_PID" ] || die "another process became ready"
kill -0 "$V2_PID" || die "v2's process is gone"
[ "$(probe)" = "[('v2', 20)]" ] || die "after v3: $(cat "$WORK/probe.json")"
ok "v3 exited before READY=1: v2 kept serving, v3 rolled back and marked bad"

# ---- 4. v4 is never ready ------------------------------------------------------------
mkdir -p "$WORK/src/v4/bin"
printf '#!/bin/sh\nexec sleep 600\n' >"$WORK/src/v4/bin/server"
chmod 755 "$WORK/src/v4/bin/server"
echo v4 >"$WORK/src/v4/VERSION"
publish v4
agent_once || die "agent --once (v4): exit $?"
wait_log 1 "rolled back" from=4 to=2
reason=$(status_py '[b["reason"] for b in d["bad"] if b["id"] == 4][0]')
case $reason in
*"of release 4 was not ready within 3000 ms; release 2 kept serving"*) ;;
*) die "v4's bad reason: $reason" ;;
esac
[ "$(readlink "$ROOT/current")" = releases/2 ] || die "current is $(readlink "$ROOT/current") after v4"
V4_PID=$(log_field starting pid release=4)
wait_log 1 retired pid="$V4_PID"
[ "$(probe)" = "[('v2', 20)]" ] || die "after v4: $(cat "$WORK/probe.json")"
ok "v4 not ready within 3 s: stopped, v2 kept serving, v4 rolled back"

# ---- 5. what the load saw -------------------------------------------------------------
kill -INT "$LOAD_PID"
rc=0
wait "$LOAD_PID" || rc=$?
LOAD_PID=""
python3 - "$WORK/load.json" <<'PYEOF' || die "load: $(cat "$WORK/load.json") $(cat "$WORK/load.err")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["failed"] == 0, d
assert d["mixed_sessions"] == 0, d
assert set(d["versions"]) == {"v1", "v2"}, d
assert d["requests"] > 500 and d["sessions"] >= 3, d
print("load: %(requests)d requests, %(sessions)d sessions, %(failed)d failed, versions %(versions)s"
      % d)
PYEOF
[ "$rc" -eq 0 ] || die "the load client exited $rc"
ok "under load through v2, v3 and v4: no failed connection or answer"

# ---- 6. the rollbacks reach the server -------------------------------------------------
agent_once || die "agent --once (events): exit $?"
server_events >"$WORK/ev.json"
python3 - "$WORK/ev.json" <<'PYEOF' || die "events: $(cat "$WORK/ev.json")"
import json, sys
evs = json.load(open(sys.argv[1]))["events"]
rb = {e["from_version_code"]: e for e in evs if e["type"] == "rolled_back"}
for code in (3, 4):
    assert code in rb, (code, rb)
    assert rb[code]["version_code"] == 2, rb[code]
    assert rb[code]["reason"].startswith("livepush run: "), rb[code]
PYEOF
ok "the server lists rolled_back events for 3 and 4 with the supervisor's reasons"

# ---- 7. the serving process dies ------------------------------------------------------
kill -KILL "$V2_PID"
"$LP_EXAMPLE_LOAD" --connect "$ADDR" --short 1 --long 0 --requests 1 --duration 30 \
    >"$WORK/gap.json" || die "a request while no process ran: $(cat "$WORK/gap.json")"
wait_log 1 exited pid="$V2_PID"
wait_log 1 ready why="restart after exit"
[ "$(jq_py 'd["versions"]' <"$WORK/gap.json")" = "{'v2': 1}" ] || die "gap: $(cat "$WORK/gap.json")"
V2B_PID=$(log_field ready pid why="restart after exit")
ok "v2 killed: started again (pid $V2B_PID); a request made meanwhile waited and was answered"

# ---- 8. SIGHUP ----------------------------------------------------------------------
kill -HUP "$RUN_PID"
wait_log 1 ready why=SIGHUP
wait_log 1 retired pid="$V2B_PID"
[ "$(probe)" = "[('v2', 20)]" ] || die "after SIGHUP: $(cat "$WORK/probe.json")"
ok "SIGHUP: the same release restarted the same way"

# ---- 9. SIGTERM -----------------------------------------------------------------------
notify=$(python3 -c "import json,sys
for l in open(sys.argv[1]):
    if '\"supervisor started\"' in l: print(json.loads(l)['notify_socket'])" "$WORK/run.err")
[ -S "$notify" ] || die "no notify socket at '$notify'"
kill -TERM "$RUN_PID"
rc=0
wait "$RUN_PID" || rc=$?
RUN_PID=""
[ "$rc" -eq 0 ] || die "the supervisor exited $rc after SIGTERM"
[ "$(log_count stopped how="exited with status 0")" -ge 1 ] || die "the service did not stop cleanly"
[ ! -e "$(dirname "$notify")" ] || die "the notify folder was left behind"
! "$LP_EXAMPLE_LOAD" --connect "$ADDR" --short 1 --long 0 --requests 1 --timeout 2000 \
    >"$WORK/after.json" 2>&1 || die "the port still answers after the stop"
ok "SIGTERM: the service drained, the supervisor exited 0 and closed the socket"
