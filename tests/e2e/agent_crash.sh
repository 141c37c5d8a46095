#!/usr/bin/env bash
# agent_crash.sh — SIGKILL of the real `livepush agent` at every crash point
# of the updater, against the real server.
#
# The points come from the updater itself (`livepush device crash-points`:
# name and the operations that reach it).  Two install roots are prepared
# once and copied for every run (each copy gets a new device id):
#   update:   v1 and v2 installed, v2 current and healthy, v3 on the server
#             (unchanged files hard-linked, one file with v2's content but
#             another mode copied, new files fetched, a symlink, folders;
#             activating v3 prunes v1 with keep 2);
#   rollback: v3 activated over v2 with a 1 s probation window that has
#             passed, so the next tick rolls back.
# For every point of a scenario and every occurrence of it (@1, @2, ... up
# to LP_CRASH_MAX_N, default 2, or until a run does not reach it) the agent
# runs once with LIVEPUSH_CRASH_AT=<point>@<n> and must die by SIGKILL
# (exit 137).  Then:
#   - `current` holds exactly the old or the new release (every file, mode
#     and symlink compared with the published folder), never a mix;
#   - the root opens again (`device status`) and agrees with the symlink;
#   - the next `agent --once` finishes the job: update -> v3 current on
#     probation, v1 pruned; rollback -> v2 current, v3 bad; no staging,
#     trash or temporary file left;
#   - the server got exactly one "activated" event for v3 (update) or one
#     "rolled_back" event from v3 (rollback) from this device.
# The first occurrence of each point listed for a scenario must be reached.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
. "$LP_SOURCE_DIR/tests/support/device_e2e.sh"
e2e_begin crashpoints python3
MAX_N=${LP_CRASH_MAX_N:-2}
unset LIVEPUSH_APP LIVEPUSH_ROOT LIVEPUSH_CHANNEL LIVEPUSH_CRASH_AT LIVEPUSH_AGENT_CONFIG
device_setup

# ---- the two starting points -----------------------------------------------------------
mk_release v1 0 lib/old.txt=one
mk_release v2 0 tool.sh=same-content lib/v2.txt=two
mk_release v3 0 tool.sh=same-content lib/v3.txt=three lib/deep/more.txt=more
chmod 755 "$WORK/src/v3/tool.sh"
publish v1
agent_once || die "installing v1"
publish v2
agent_once || die "installing v2"
dev mark-healthy >/dev/null
UPDATE_T=$WORK/t-update
cp -a "$ROOT" "$UPDATE_T"
publish v3
agent_once --probation-window 1 || die "installing v3"
grep '"msg":"tick"' "$WORK/agent.err" | tail -1 | grep -q '"files_copied":1' || die "v3 does not copy a file"
ROLLBACK_T=$WORK/t-rollback
cp -a "$ROOT" "$ROLLBACK_T"
sleep 2
ok "update root (v2, v3 waiting on the server) and rollback root (v3 on probation, window passed) ready"

lp device crash-points >"$WORK/points"
[ "$(wc -l <"$WORK/points")" -ge 20 ] || die "crash-points: $(cat "$WORK/points")"

# check.py MODE SCENARIO: MODE "crashed" — current is exactly v2 or v3 and
# the status agrees with the symlink; MODE "final" — the state after a run
# that completed, nothing left over, the switch reported once.
cat >"$WORK/check.py" <<'PYEOF'
import json, os, stat, sys
mode, sc, work, root = sys.argv[1:5]
def tree(top):
    out = {}
    for dirpath, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, top)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", 0o755 if st.st_mode & 0o111 else 0o644, open(p, "rb").read())
    return out
cur = tree(os.path.join(root, "current") + "/")
which = [v for v in ("v2", "v3") if tree(os.path.join(work, "src", v)) == cur]
assert which, "current is neither v2 nor v3 exactly"
status = json.load(open(os.path.join(work, "status.json")))
link = os.readlink(os.path.join(root, "current"))
assert link == "releases/%d" % status["current"]["id"], (link, status["current"])
assert ("v%d" % status["current"]["id"]) == which[0], (which, status["current"])
if mode == "final":
    ids = [r["id"] for r in status["releases"]]
    if sc == "update":
        assert which == ["v3"] and ids == [2, 3] and status["probation"]["id"] == 3, status
    else:
        assert which == ["v2"] and [b["id"] for b in status["bad"]] == [3], status
        assert status["probation"] is None, status
    state = os.path.join(root, ".livepush")
    for d in ("staging", "trash", "downloads"):
        assert not os.listdir(os.path.join(state, d)), (d, os.listdir(os.path.join(state, d)))
    for dirpath, dirs, files in os.walk(state):
        for n in files:
            assert ".tmp-" not in n, os.path.join(dirpath, n)
    assert not os.path.lexists(os.path.join(root, ".current.new"))
    evs = json.load(open(os.path.join(work, "events.json")))["events"]
    if sc == "update":
        act = [e for e in evs if e["type"] == "activated" and e["version_code"] == 3]
        assert len(act) == 1 and act[0]["from_version_code"] == 2, act
    else:
        rb = [e for e in evs if e["type"] == "rolled_back" and e["from_version_code"] == 3]
        assert len(rb) == 1 and rb[0]["version_code"] == 2, rb
PYEOF
# check MODE SCENARIO WHAT
check() {
    dev status --json >"$WORK/status.json" || die "$3: device status: exit $?"
    if [ "$1" = final ]; then
        lp events --json --limit 1000 --device "$(jq_py 'd["device_id"]' <"$WORK/status.json")" \
            >"$WORK/events.json" || die "$3: events"
    fi
    python3 "$WORK/check.py" "$1" "$2" "$WORK" "$ROOT" || die "$3 ($1): $(dev status)"
}

runs=0
while IFS=$'\t' read -r -u 3 point scenarios _; do
    for sc in update rollback; do
        case ",$scenarios," in *",$sc,"*) ;; *) continue ;; esac
        [ "$sc" = update ] && T=$UPDATE_T || T=$ROLLBACK_T
        for n in $(seq 1 "$MAX_N"); do
            rm -rf "$ROOT"
            cp -a "$T" "$ROOT"
            rm "$ROOT/.livepush/device-id"
            rc=0
            (LIVEPUSH_CRASH_AT="$point@$n" agent_once) 2>/dev/null || rc=$?
            runs=$((runs + 1))
            if [ "$rc" != 137 ]; then
                [ "$rc" = 0 ] || die "$sc, $point@$n: exit $rc"
                [ "$n" -gt 1 ] || die "$sc: $point is never reached"
                check final "$sc" "$sc, $point@$n (not reached)"
                break
            fi
            check crashed "$sc" "$sc, $point@$n"
            agent_once || die "$sc, $point@$n: the run after the crash: exit $?"
            check final "$sc" "$sc, $point@$n"
        done
    done
done 3<"$WORK/points"
ok "every crash point, every occurrence up to @$MAX_N ($runs runs killed or completed): old or new release, never a mix; the next run finishes; events reported once"

stop_server
echo "all $CHECKS checks passed"
