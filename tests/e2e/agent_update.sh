#!/usr/bin/env bash
# agent_update.sh — a device updated by `livepush agent` from the real server.
#
# `livepush serve` runs on loopback; releases are published with the real
# `livepush upload` (folders with an executable bin/app, a shared 200 KB
# file, a symlink).  The device is an install root in the work folder:
#   0. livepush-agent (the device command, which these steps use through
#      device_e2e.sh) loads neither libarchive nor SQLite and has no server
#      commands;
#   1. v1 installed by `agent --once` (trusted root given once); its files
#      are exactly v1's; `device launch -- ./bin/app` runs v1's app; the
#      server received checked/downloaded/staged/verified/activated;
#   2. v2: only what changed is fetched (the shared file is a hard link to
#      v1's), v2 is current and on probation; `device mark-healthy` ends it
#      and the server gets "healthy";
#   3. v3 is never confirmed: with a 2 s window the next tick after 3 s
#      rolls back to v2 on its own, v3 is marked bad, never offered again,
#      and the server lists a rolled_back event naming 3 and the reason;
#   4. v4's app exits 3: `device launch` runs it twice (launch limit 2), the
#      third launch rolls back and starts v2's app; the rollback reaches the
#      server at the next tick;
#   5. a failing pre-update hook leaves v2 current, records the hook's output
#      as the last error and a failed event; once the hook is gone the next
#      tick activates v5 without downloading it again;
#   6. channels: v6 published on canary only is not offered on stable;
#      `device channel canary` switches at the next tick; --reset goes back;
#   7. --auto-apply mandatory leaves a normal release alone (outcome
#      "available") and installs a mandatory one;
#   8. `device apply --dry-run` stages v9 next to current; `device apply`
#      then activates it without a download; `device rollback --to 8`
#      switches back by hand and marks 9 bad; `device check` prints the offer;
#   9. the daemon: `livepush agent --interval 1` picks up v10 by itself and
#      exits 0 on SIGTERM; a JSON config file is read, an unknown key and a
#      bad option exit 2;
#  10. a static mirror: the repository and blobs copied as plain files and
#      served by `python3 -m http.server`; a new device installs v10 from it
#      with --report false (its events stay queued).
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
. "$LP_SOURCE_DIR/tests/support/device_e2e.sh"
e2e_begin agent python3
E2E_PID_VARS="AGENT_PID MIRROR_PID"
AGENT_PID=""
MIRROR_PID=""
unset LIVEPUSH_APP LIVEPUSH_ROOT LIVEPUSH_CHANNEL LIVEPUSH_CRASH_AT LIVEPUSH_AGENT_CONFIG
device_setup

# last_tick FIELD: FIELD of the newest "tick" line of the agent's log
last_tick() {
    python3 - "$WORK/agent.err" "$1" <<'PYEOF'
import json, sys
ticks = [json.loads(l) for l in open(sys.argv[1]) if '"msg":"tick"' in l]
print(ticks[-1].get(sys.argv[2]))
PYEOF
}

# ---- 0. the device command ------------------------------------------------------
# livepush-agent carries the device's commands and none of the server's, and
# does not load the libraries only the server and the publisher use.
[ -n "${LP_AGENT_BIN:-}" ] || die "LP_AGENT_BIN is not set (the build makes livepush-agent)"
deps=$(ldd "$LP_AGENT_BIN") || die "ldd $LP_AGENT_BIN"
for lib in libarchive libsqlite3 libxml2 libicu; do
    ! grep -q "$lib" <<<"$deps" || die "livepush-agent loads $lib: $deps"
done
"$LP_AGENT_BIN" --help | grep -q "mark-healthy" || die "livepush-agent --help lists no device commands"
expect_rc 2 "$LP_AGENT_BIN" serve

# ---- 1. first install ------------------------------------------------------------
mk_release v1 0
publish v1
agent_once || die "agent --once (v1): exit $?"
current_is v1
[ "$(status_py '(d["current"]["id"], d["probation"])')" = "(1, None)" ] || die "status after v1: $(dev status)"
out=$(dev launch -- ./bin/app) || die "launch v1: exit $?"
[ "$out" = "app v1" ] || die "launch v1 printed '$out'"
server_events >"$WORK/ev.json"
python3 - "$WORK/ev.json" <<'PYEOF' || die "events of the first install: $(cat "$WORK/ev.json")"
import json, sys
evs = json.load(open(sys.argv[1]))["events"]
types = [e["type"] for e in reversed(evs)]
assert types == ["checked", "downloaded", "staged", "verified", "activated"], types
act = evs[0]
assert (act["version"], act["version_code"], act["from_version_code"]) == ("v1", 1, None), act
assert all(e["duration_ms"] is not None and e["duration_ms"] >= 0 for e in evs), evs
PYEOF
ok "v1 installed by agent --once: files exact, launch runs it, 5 events at the server"

# ---- 2. an update fetches only what changed -----------------------------------------
mk_release v2 0 extra/new.txt=two
publish v2
agent_once || die "agent --once (v2): exit $?"
current_is v2
[ "$(last_tick files_linked)" -ge 1 ] && [ "$(last_tick files_fetched)" -ge 2 ] ||
    die "v2 staging: $(tail -1 "$WORK/agent.err")"
[ "$(stat -c %i "$ROOT/releases/1/share/common.bin")" = "$(stat -c %i "$ROOT/releases/2/share/common.bin")" ] ||
    die "the unchanged file is not a hard link"
V2_BYTES=$(last_tick bytes_fetched)
[ "$V2_BYTES" -lt 100000 ] || die "v2 fetched the shared file again"
[ "$(status_py 'd["probation"]["id"]')" = 2 ] || die "v2 not on probation: $(dev status)"
# The top-level shorthand is the same command.
"$LP_BIN" mark-healthy --root "$ROOT" --id 2 >/dev/null || die "mark-healthy"
[ "$(status_py 'd["probation"]')" = None ] || die "probation not ended"
[ "$("$LP_BIN" status --json --root "$ROOT")" = "$(dev status --json)" ] ||
    die "livepush status differs from livepush device status"
agent_once || die "agent --once (after healthy): exit $?"
[ "$(last_tick outcome)" = none ] || die "no update expected: $(tail -1 "$WORK/agent.err")"
server_events | jq_py '[e["version_code"] for e in d["events"] if e["type"] == "healthy"]' >"$WORK/h"
[ "$(cat "$WORK/h")" = "[2]" ] || die "healthy event: $(cat "$WORK/h")"
ok "v2: unchanged file hard-linked (only $V2_BYTES bytes fetched), on probation, marked healthy, reported"

# ---- 3. a release never confirmed is rolled back after its window --------------------
mk_release v3 0
publish v3
agent_once --probation-window 2 || die "agent --once (v3): exit $?"
current_is v3
sleep 3
agent_once || die "agent --once (after the window): exit $?"
current_is v2
python3 - <<PYEOF || die "status after the window: $(dev status)"
import json
d = json.loads('''$(dev status --json)''')
assert d["current"]["id"] == 2 and d["probation"] is None, d
bad = {b["id"]: b["reason"] for b in d["bad"]}
assert "not marked healthy within 2 s" in bad[3], bad
assert "rolled back to 2" in d["last_error"]["message"], d["last_error"]
PYEOF
agent_once || die "agent --once (v3 bad): exit $?"
[ "$(last_tick outcome)" = none ] && current_is v2 || die "v3 offered again"
server_events >"$WORK/ev.json"
python3 - "$WORK/ev.json" <<'PYEOF' || die "rolled_back event: $(cat "$WORK/ev.json")"
import json, sys
evs = [e for e in json.load(open(sys.argv[1]))["events"] if e["type"] == "rolled_back"]
assert len(evs) == 1, evs
e = evs[0]
assert (e["version_code"], e["from_version_code"], e["version"]) == (2, 3, "v2"), e
assert "not marked healthy within 2 s" in e["reason"], e
PYEOF
ok "v3 never confirmed: rolled back to v2 after its 2 s window, marked bad, not offered again; rolled_back at the server"

# ---- 4. an app that crashes at launch is rolled back at the launch limit ------------------
mk_release v4 3
publish v4
agent_once --probation-launches 2 || die "agent --once (v4): exit $?"
current_is v4
for i in 1 2; do
    rc=0
    out=$(dev launch -- ./bin/app 2>"$WORK/launch.err") || rc=$?
    [ "$rc" = 3 ] && [ "$out" = "app v4" ] || die "launch $i of v4: exit $rc, '$out'"
done
rc=0
out=$(dev launch -- ./bin/app 2>"$WORK/launch.err") || rc=$?
[ "$rc" = 0 ] && [ "$out" = "app v2" ] || die "third launch: exit $rc, '$out', $(cat "$WORK/launch.err")"
grep -q "rolled back to release 2 (v2): launched 3 times without being marked healthy (limit 2)" "$WORK/launch.err" ||
    die "launch message: $(cat "$WORK/launch.err")"
current_is v2
agent_once || die "agent --once (after v4): exit $?"
server_events | jq_py '[(e["from_version_code"], e["reason"]) for e in d["events"] if e["type"] == "rolled_back"][0]' >"$WORK/rb"
grep -q "(4, 'launched 3 times without being marked healthy (limit 2)')" "$WORK/rb" || die "v4 rolled_back event: $(cat "$WORK/rb")"
ok "v4 exits 3 at launch: two launches counted, the third rolled back and started v2; reported"

# ---- 5. a failing pre-update hook leaves the old release running --------------------------
mk_release v5 0
publish v5
mkdir -p "$ROOT/hooks"
printf '#!/bin/sh\necho "maintenance window closed"\nexit 1\n' >"$ROOT/hooks/pre-update"
chmod 755 "$ROOT/hooks/pre-update"
rc=0
agent_once || rc=$?
[ "$rc" = 1 ] || die "agent with a failing hook: exit $rc"
current_is v2
grep -q "maintenance window closed" <<<"$(status_py 'd["last_error"]["message"]')" ||
    die "last error: $(dev status)"
[ "$(status_py '5 in [r["id"] for r in d["releases"]]')" = True ] || die "v5 not kept staged: $(dev status)"
agent_once || true
server_events | jq_py '[e["reason"] for e in d["events"] if e["type"] == "failed" and e["version_code"] == 5]' >"$WORK/f"
grep -q "pre-update hook .* exited with status 1: maintenance window closed" "$WORK/f" || die "failed event: $(cat "$WORK/f")"
rm "$ROOT/hooks/pre-update"
agent_once || die "agent --once (hook gone): exit $?"
current_is v5
[ "$(last_tick already_installed)" = True ] && [ "$(last_tick files_fetched)" = 0 ] ||
    die "v5 downloaded again: $(tail -1 "$WORK/agent.err")"
dev mark-healthy >/dev/null
ok "a failing pre-update hook: v2 kept running, hook output in last_error and a failed event; v5 activated later without a new download"

# ---- 6. channels ------------------------------------------------------------------------
mk_release v6 0
publish v6 --channel canary
agent_once || die "agent --once (stable): exit $?"
[ "$(last_tick outcome)" = none ] && current_is v5 || die "v6 (canary) offered on stable"
[ "$(dev channel)" = "stable (configured)" ] || die "device channel: $(dev channel)"
[ "$(dev channel canary)" = "canary (set on this device)" ] || die "device channel canary"
agent_once || die "agent --once (canary): exit $?"
current_is v6
[ "$(last_tick channel)" = canary ] || die "tick channel: $(tail -1 "$WORK/agent.err")"
dev mark-healthy >/dev/null
[ "$(dev channel --reset)" = "stable (configured)" ] || die "device channel --reset"
expect_rc 2 dev channel "bad name"
ok "v6 on canary: not offered on stable, offered after 'device channel canary' at the next tick; --reset"

# ---- 7. --auto-apply --------------------------------------------------------------------
mk_release v7 0
publish v7
agent_once --auto-apply mandatory || die "agent --once (mandatory only): exit $?"
[ "$(last_tick outcome)" = available ] && [ "$(last_tick version)" = v7 ] && current_is v6 ||
    die "v7 should be left alone: $(tail -1 "$WORK/agent.err")"
agent_once --auto-apply none || die "agent --once (none): exit $?"
[ "$(last_tick outcome)" = available ] || die "auto-apply none"
mk_release v8 0
publish v8 --mandatory
agent_once --auto-apply mandatory || die "agent --once (mandatory v8): exit $?"
current_is v8
[ "$(last_tick mandatory)" = True ] || die "v8 not mandatory"
dev mark-healthy >/dev/null
ok "--auto-apply mandatory: normal v7 reported as available and left alone, mandatory v8 installed"

# ---- 8. device apply, rollback, check -------------------------------------------------------
mk_release v9 0
publish v9
expect_rc 0 dev check --server "$URL"
grep -q "update available on channel stable: v9 (code 9)" "$WORK/out" || die "check: $(cat "$WORK/out")"
dev check --server "$URL" --json | jq_py '(d["available"], d["version_code"], d["mandatory"])' >"$WORK/c"
[ "$(cat "$WORK/c")" = "(True, 9, False)" ] || die "check --json: $(cat "$WORK/c")"
expect_rc 0 dev apply --server "$URL" --dry-run
grep -q "staged (dry run) v9 (code 9)" "$WORK/out" || die "apply --dry-run: $(cat "$WORK/out")"
current_is v8
tree_same "$ROOT/releases/9" "$WORK/src/v9" || die "staged v9 differs"
dev apply --server "$URL" --json >"$WORK/apply.json" || die "apply: exit $?"
[ "$(jq_py '(d["outcome"], d["already_installed"])' <"$WORK/apply.json")" = "('activated', True)" ] ||
    die "apply: $(cat "$WORK/apply.json")"
current_is v9
expect_rc 0 dev rollback --to 8 --reason "operator says so"
grep -q "release 8 (v8) is current" "$WORK/out" || die "rollback: $(cat "$WORK/out")"
current_is v8
[ "$(status_py '[b["reason"] for b in d["bad"] if b["id"] == 9]')" = "['operator says so']" ] ||
    die "9 not bad: $(dev status)"
expect_rc 2 dev rollback --to nine
expect_rc 1 dev rollback --to 77
ok "device check / apply --dry-run (staged, current untouched) / apply (no download) / rollback --to 8 by hand"

# ---- 9. the daemon ---------------------------------------------------------------------------
mk_release v10 0
cat >"$WORK/agent.json" <<EOF
{"server": "$URL", "root": "$ROOT", "interval": 1, "jitter": 0, "log_format": "json",
 "auto_apply": "all", "allow_http": false}
EOF
"$LP_BIN" agent --config "$WORK/agent.json" 2>"$WORK/daemon.err" &
AGENT_PID=$!
sleep 1.5
publish v10
for _ in $(seq 1 100); do
    [ "$(readlink "$ROOT/current")" = releases/10 ] && break
    sleep 0.1
done
current_is v10
kill -TERM "$AGENT_PID"
rc=0
wait "$AGENT_PID" || rc=$?
AGENT_PID=""
[ "$rc" = 0 ] || die "agent after SIGTERM: exit $rc; $(tail -3 "$WORK/daemon.err")"
grep -q '"msg":"stopping","signal":"SIGTERM"' "$WORK/daemon.err" || die "no stopping line: $(tail -3 "$WORK/daemon.err")"
[ "$(grep -c '"msg":"tick"' "$WORK/daemon.err")" -ge 2 ] || die "daemon ticked less than twice"
echo '{"colour": "red"}' >"$WORK/bad.json"
expect_rc 2 lp agent --config "$WORK/bad.json" --server "$URL" --root "$ROOT"
grep -q "unknown key 'colour'" "$WORK/err" || die "unknown key: $(cat "$WORK/err")"
expect_rc 2 lp agent --interval 0 --server "$URL" --root "$ROOT"
expect_rc 2 lp agent --auto-apply sometimes --server "$URL" --root "$ROOT"
expect_rc 2 env -u LIVEPUSH_SERVER "$LP_BIN" agent --root "$ROOT"
grep -q "no server" "$WORK/err" || die "no server: $(cat "$WORK/err")"
ok "daemon from a config file: picked up v10 by itself, exit 0 on SIGTERM; bad config / options exit 2"

# ---- 10. a static mirror ---------------------------------------------------------------------
# The same paths as plain files (metadata, targets, flat blobs), served by
# Python's http.server, which shares no code with livepush and ignores Range.
M=$WORK/mirror
mkdir -p "$M/v1/apps/default" "$M/v1/blobs"
cp -r "$DATA/repos/default/metadata" "$DATA/repos/default/targets" "$M/v1/apps/default/"
find "$DATA/blobs" -type f -not -path "$DATA/blobs/tmp/*" -exec cp {} "$M/v1/blobs/" \;
python3 -u -m http.server 0 --bind 127.0.0.1 -d "$M" >"$WORK/mirror.out" 2>"$WORK/mirror.err" &
MIRROR_PID=$!
for _ in $(seq 1 100); do grep -q "port" "$WORK/mirror.out" && break; sleep 0.05; done
MPORT=$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$WORK/mirror.out" | head -1)
[ -n "$MPORT" ] || die "static mirror did not start: $(cat "$WORK/mirror.out" "$WORK/mirror.err")"
ROOT=$WORK/root-static
"$LP_BIN" agent --once --server "http://127.0.0.1:$MPORT" --root "$ROOT" --trusted-root "$ROOTJSON" \
    --report false --log-format json 2>>"$WORK/agent.err" || die "agent from the static mirror: exit $?"
current_is v10
[ "$(status_py 'd["events"]["queued"]')" -ge 5 ] || die "events not kept queued: $(dev status)"
e2e_stop "$MIRROR_PID"
MIRROR_PID=""
ok "a static mirror (plain files, python http.server): v10 installed exactly; with --report false the events stay queued"

stop_server
echo "all $CHECKS checks passed"
