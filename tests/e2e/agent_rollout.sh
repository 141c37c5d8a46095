#!/usr/bin/env bash
# agent_rollout.sh — staged rollouts, pause, halt, maintenance windows and
# mandatory releases, from `livepush upload --rollout` and `livepush rollout`
# to a real device updated by `livepush agent` from one real server.
#
#   1. v2 published with --rollout 0: the device stays on v1, and `device
#      check --verbose` gives its bucket B; `rollout set v2` to exactly B
#      basis points leaves it outside, to B + 1 takes it inside: the cohort
#      is the documented formula, computed on the device;
#   2. a maintenance window that is closed now: v3 waits (the agent says
#      so, the device stays on v2); v4 --mandatory installs at once
#      anyway; the window removed, nothing is left waiting;
#   3. pause, resume, halt of v5: paused and halted releases are not
#      offered (with the reason); a halted rollout cannot be resumed (exit
#      4, "final"); `rollout list` shows the state and reason;
#   4. the server knows the device's channel (devices --json); usage
#      errors exit 2.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
. "$LP_SOURCE_DIR/tests/support/device_e2e.sh"
e2e_begin agent_rollout python3
unset LIVEPUSH_APP LIVEPUSH_ROOT LIVEPUSH_CHANNEL LIVEPUSH_CRASH_AT LIVEPUSH_AGENT_CONFIG \
    LIVEPUSH_ATTRIBUTES
device_setup

tick() { # one agent run; the release it activated is confirmed healthy
    agent_once "$@" || die "agent: exit $?"
    dev mark-healthy >/dev/null 2>&1 || true
}
current_code() { status_py 'd["current"]["id"] if d["current"] else 0'; }
expect_current() {
    [ "$(current_code)" = "$1" ] || die "the device runs $(current_code), expected $1"
}
why() { # the check's reasons on stderr
    dev check --verbose --server "$URL" >"$WORK/check.out" 2>"$WORK/check.err" ||
        die "device check: $(cat "$WORK/check.err")"
    cat "$WORK/check.err"
}

mk_release v1 0
publish v1
tick
expect_current 1

# ---- 1. the cohort -------------------------------------------------------------------
mk_release v2 0
publish v2 --rollout 0
tick
expect_current 1
B=$(why | sed -n 's/.*outside the staged rollout of version code 2: this device.s bucket is \([0-9]*\) of 10000, the rollout reaches 0.*/\1/p')
[ -n "$B" ] || die "no bucket in the reasons: $(cat "$WORK/check.err")"
pct() { printf '%d.%02d' $(($1 / 100)) $(($1 % 100)); }
expect_rc 0 lp rollout set v2 "$(pct "$B")"
grep -q "rollout of v2 on stable: $(pct "$B")%, active" "$WORK/out" || die "set: $(cat "$WORK/out")"
tick
expect_current 1
expect_rc 0 lp rollout set v2 "$(pct $((B + 1)))"
tick
expect_current 2
ok "v2 --rollout 0: outside (bucket $B); at $B basis points still outside, at $((B + 1)) inside and installed"

# ---- 2. maintenance window and mandatory releases ----------------------------------------
now=$(( ($(date -u +%s) % 86400) / 60 ))
hm() { printf '%02d:%02d' $(( ($1 % 1440) / 60 )) $(( $1 % 60 )); }
expect_rc 0 lp rollout window stable "$(hm $((now + 120)))" "$(hm $((now + 180)))"
mk_release v3 0
publish v3
tick
expect_current 2
grep -q '"outcome":"waiting"' "$WORK/agent.err" || die "agent did not say waiting: $(tail -5 "$WORK/agent.err")"
mk_release v4 0
publish v4 --mandatory
tick
expect_current 4
expect_rc 0 lp rollout window stable none
tick
expect_current 4
ok "a closed maintenance window: v3 waits; v4 (mandatory) installs at once"

# ---- 3. pause, resume, halt ----------------------------------------------------------------
mk_release v5 0
publish v5 --rollout 100
expect_rc 0 lp rollout pause v5
tick
expect_current 4
why | grep -qF "the rollout of version code 5 on channel stable is paused" || die "reason: $(cat "$WORK/check.err")"
expect_rc 0 lp rollout halt v5 --reason "crash on start"
why | grep -qF "is halted" || die "reason: $(cat "$WORK/check.err")"
expect_rc 4 lp rollout resume v5
grep -q "final" "$WORK/err" || die "resume of a halted rollout: $(cat "$WORK/err")"
tick
expect_current 4
expect_rc 0 lp rollout list
grep -E "^v5 +5 +stable +100.00% +halted .*crash on start" "$WORK/out" >/dev/null ||
    die "list: $(cat "$WORK/out")"
expect_rc 0 lp rollout list --json
[ "$(jq_py '[r["state"] for r in d["rollouts"] if r["version"] == "v5"][0]' <"$WORK/out")" = halted ] ||
    die "list --json: $(cat "$WORK/out")"
ok "v5 paused, then halted (reason kept): never offered; a halt cannot be resumed (exit 4)"

# ---- 4. channel reported, usage errors -----------------------------------------------------
ID=$(status_py 'd["device_id"]')
lp devices --json | jq_py '[x["channel"] for x in d["devices"] if x["device_id"] == "'"$ID"'"][0]' |
    grep -qx stable || die "the server does not know the device's channel: $(lp devices --json)"
expect_rc 2 lp rollout set v2 101
expect_rc 2 lp rollout set v2 abc
expect_rc 2 lp rollout nothing
expect_rc 2 lp rollout promote v1
expect_rc 2 lp upload --bundle "$WORK/src/v1" --version vx --rollout 12.345
expect_rc 0 lp rollout promote v1 --channel beta
ok "the server has the device's channel; bad percentages and subcommands exit 2; promote"
