#!/usr/bin/env bash
# lifecycle.sh — the update life cycle as JSON lines on both sides, tied
# together by release, rollout and device ids.
#
# `livepush serve --lifecycle-log` and `livepush agent --lifecycle-log` on
# one device: v1 published and installed; v2 published as a canary at 0%,
# raised to 100%, installed; then the device rolls v2 back.  The server's
# file must hold planned (v1, v2), canary_started and rollout_changed for
# v2 on stable, and the device-reported offered / fetched / verified /
# staged / activated / rolled_back lines; the device's file the same
# device-side events.  Every line is one JSON object with ts, side, event,
# app; every device line is found on the server with the same event,
# release, rollout and device ids.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
. "$LP_SOURCE_DIR/tests/support/device_e2e.sh"
e2e_begin lifecycle python3
unset LIVEPUSH_APP LIVEPUSH_ROOT LIVEPUSH_CHANNEL LIVEPUSH_CRASH_AT LIVEPUSH_AGENT_CONFIG \
    LIVEPUSH_ATTRIBUTES LIVEPUSH_LIFECYCLE_LOG
SRV_LOG=$WORK/server.lifecycle
DEV_LOG=$WORK/device.lifecycle
device_setup --lifecycle-log "$SRV_LOG"
tick() {
    agent_once --lifecycle-log "$DEV_LOG" || die "agent: exit $?"
    dev mark-healthy >/dev/null 2>&1 || true
}

mk_release v1 0
publish v1
tick
tick
mk_release v2 0
publish v2 --rollout 0
tick
expect_rc 0 lp rollout set v2 100
tick
expect_rc 0 dev rollback --lifecycle-log "$DEV_LOG"
tick
[ "$(status_py 'd["current"]["id"]')" = 1 ] || die "the device does not run v1 again"
ok "v1 installed; v2 as a canary at 0%, raised to 100%, installed, rolled back on the device"

python3 - "$SRV_LOG" "$DEV_LOG" "$(status_py 'd["device_id"]')" <<'PYEOF' || die "lifecycle logs: $(tail -5 "$SRV_LOG"; tail -5 "$DEV_LOG")"
import json, sys
def lines(path):
    out = []
    for n, line in enumerate(open(path), 1):
        d = json.loads(line)
        for k in ("ts", "msg", "side", "event", "app"):
            assert k in d, "%s:%d lacks %s: %s" % (path, n, k, line)
        assert d["msg"] == "lifecycle", line
        out.append(d)
    return out
srv, dev, device = lines(sys.argv[1]), lines(sys.argv[2]), sys.argv[3]
def has(log, **kv):
    return any(all(d.get(k) == v for k, v in kv.items()) for d in log)
for want in [dict(event="planned", release="default/1", state="published"),
             dict(event="planned", release="default/2"),
             dict(event="canary_started", release="default/2", rollout="default/2@stable",
                  percent_bp=0),
             dict(event="rollout_changed", release="default/2", rollout="default/2@stable",
                  percent_bp=10000)]:
    assert has(srv, side="server", **want), ("server lacks", want)
for ev in ("offered", "fetched", "verified", "staged", "activated"):
    want = dict(event=ev, release="default/2", rollout="default/2@stable", device=device)
    assert has(dev, side="device", **want), ("device lacks", want)
assert has(dev, side="device", event="rolled_back", release="default/2", to_release="default/1",
           device=device), "device lacks the rollback"
# every device line with a release is on the server too, with the same ids
for d in dev:
    if "release" not in d:
        continue
    key = dict(event=d["event"], release=d["release"], device=d["device"])
    if "rollout" in d:
        key["rollout"] = d["rollout"]
    assert has(srv, side="server", **key), ("server lacks the device's", key)
print("server %d lines, device %d lines" % (len(srv), len(dev)))
PYEOF
ok "both logs hold the life cycle; every device line is on the server with the same ids"
