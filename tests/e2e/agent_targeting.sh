#!/usr/bin/env bash
# agent_targeting.sh — targeting rules, from `livepush upload` to two devices
# with different attributes updated by `livepush agent` from one real server.
#
# `livepush serve` runs on loopback; releases are published with the real
# `livepush upload` and its targeting options.  Device A runs the agent with
# --attribute flags, device B with a JSON config file ("attribute": {...});
# each has its own install root (and so its own device id).
#   1. v1 (no rules) goes to both;
#   2. v2 for region eu or uk (--attribute twice: any of them): A (eu)
#      takes it, B (us) does not, and `device check --verbose` says why;
#      `inspect` shows the rules and the signed metadata carries them;
#   3. v3 for region us on devices running code 1 (--min/--max-from-code):
#      B takes it, A (running 2) does not;
#   4. canaries: v4 for A's id (--device), v5 for B's id (--devices-file
#      with a comment and blank lines): each device gets its own;
#   5. LIVEPUSH_ATTRIBUTES (JSON) and a flag over a config file's value;
#   6. refusals: bad targeting options exit 2 before anything is uploaded
#      (no release, no upload left), a bad device attribute exits 2, and
#      the server's 400 names the member for a request made without the
#      command's checks;
#   7. an app whose publisher signs: `upload --sign-key` with targeting
#      options checks that the prepared bytes carry exactly those rules,
#      signs and publishes; devices are judged by the signed rules.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
. "$LP_SOURCE_DIR/tests/support/device_e2e.sh"
e2e_begin agent_targeting python3
unset LIVEPUSH_APP LIVEPUSH_ROOT LIVEPUSH_CHANNEL LIVEPUSH_CRASH_AT LIVEPUSH_AGENT_CONFIG \
    LIVEPUSH_ATTRIBUTES
device_setup

ROOT_A=$WORK/device-a
ROOT_B=$WORK/device-b
CONF_B=$WORK/b.json
printf '{"attribute": {"region": "us", "tier": "silver"}}\n' >"$CONF_B"

# One agent tick on a device; the release it activated is then confirmed
# healthy (as its app would), so the next tick may update again.
agent_a() {
    "$AGENT_BIN" agent --once --server "$URL" --root "$ROOT_A" --trusted-root "$ROOTJSON" \
        --jitter 0 --log-format json --attribute region=eu --attribute tier=gold "$@" \
        2>>"$WORK/agent.err" || return $?
    "$AGENT_BIN" device mark-healthy --root "$ROOT_A" >/dev/null
}
agent_b() {
    "$AGENT_BIN" agent --once --config "$CONF_B" --server "$URL" --root "$ROOT_B" \
        --trusted-root "$ROOTJSON" --jitter 0 --log-format json "$@" 2>>"$WORK/agent.err" ||
        return $?
    "$AGENT_BIN" device mark-healthy --root "$ROOT_B" >/dev/null
}
# current_code ROOT: the version code current on that device
current_code() {
    "$AGENT_BIN" device status --root "$1" --json | jq_py 'd["current"]["id"] if d["current"] else 0'
}
device_id() { "$AGENT_BIN" device status --root "$1" --json | jq_py 'd["device_id"]'; }
expect_codes() {
    local a b
    a=$(current_code "$ROOT_A")
    b=$(current_code "$ROOT_B")
    [ "$a $b" = "$1 $2" ] || die "devices run $a and $b, expected $1 and $2"
}
releases_count() { lp releases --json | jq_py 'len(d["releases"])'; }

# ---- 1. a release without rules goes to both --------------------------------------
mk_release v1 0
publish v1
agent_a || die "agent A (v1): exit $?"
agent_b || die "agent B (v1): exit $?"
expect_codes 1 1
ID_A=$(device_id "$ROOT_A")
ID_B=$(device_id "$ROOT_B")
[ "$ID_A" != "$ID_B" ] || die "the two devices have the same id"
ok "v1 without rules installed on both devices"

# ---- 2. attributes: any of the values -----------------------------------------------
mk_release v2 0
publish v2 --attribute region=eu --attribute region=uk
agent_a || die "agent A (v2): exit $?"
agent_b || die "agent B (v2): exit $?"
expect_codes 2 1
"$AGENT_BIN" device check --verbose --config "$CONF_B" --server "$URL" --root "$ROOT_B" \
    >"$WORK/check.out" 2>"$WORK/check.err" || die "device check B: $(cat "$WORK/check.err")"
grep -q "no update" "$WORK/check.out" || die "device check B offers: $(cat "$WORK/check.out")"
grep -qF "skipped releases/2.json: needs attribute region to be one of eu, uk, this device has region=us" \
    "$WORK/check.err" || die "skip reason for B: $(cat "$WORK/check.err")"
lp inspect --release v2 --json >"$WORK/v2.json" || die "inspect v2"
[ "$(jq_py 'd["release"]["targeting"]' <"$WORK/v2.json")" = "{'attributes': {'region': ['eu', 'uk']}}" ] ||
    die "inspect v2: $(cat "$WORK/v2.json")"
lp inspect --release v2 | grep -q "targeting.*region=eu|uk" || die "inspect v2 (text): $(lp inspect --release v2)"
python3 - "$DATA/repos/default/metadata" <<'PYEOF' || die "the signed targets metadata lacks v2's rules"
import json, os, sys
d = sys.argv[1]
n = max(int(f.split(".")[0]) for f in os.listdir(d) if f.endswith(".targets.json"))
t = json.load(open(os.path.join(d, "%d.targets.json" % n)))["signed"]["targets"]
assert t["releases/2.json"]["custom"]["targeting"] == {"attributes": {"region": ["eu", "uk"]}}, t
assert "targeting" not in t["releases/1.json"]["custom"], t
PYEOF
ok "v2 for region eu|uk: device A (eu) took it, B (us) skipped it with the reason; signed rules"

# ---- 3. the version code the device runs ----------------------------------------------
mk_release v3 0
publish v3 --attribute region=us --min-from-code 1 --max-from-code 1
agent_a || die "agent A (v3): exit $?"
agent_b || die "agent B (v3): exit $?"
expect_codes 2 3
"$AGENT_BIN" device check --verbose --server "$URL" --root "$ROOT_A" --attribute region=us \
    >"$WORK/check.out" 2>"$WORK/check.err" || die "device check A: $(cat "$WORK/check.err")"
grep -qF "skipped releases/3.json: for devices running version codes 1..1, this device runs 2" \
    "$WORK/check.err" || die "skip reason for A: $(cat "$WORK/check.err")"
ok "v3 for region us from code 1: device B took it, A (running 2) skipped it"

# ---- 4. device lists -------------------------------------------------------------------
mk_release v4 0
publish v4 --device "$ID_A"
agent_a || die "agent A (v4): exit $?"
agent_b || die "agent B (v4): exit $?"
expect_codes 4 3
mk_release v5 0
printf '# canaries\n\n  %s  \n\n' "$ID_B" >"$WORK/canaries.txt"
publish v5 --devices-file "$WORK/canaries.txt"
agent_a || die "agent A (v5): exit $?"
agent_b || die "agent B (v5): exit $?"
expect_codes 4 5
"$AGENT_BIN" device check --verbose --server "$URL" --root "$ROOT_A" \
    >"$WORK/check.out" 2>"$WORK/check.err" || die "device check A: $(cat "$WORK/check.err")"
grep -qF "skipped releases/5.json: not in the release's list of 1 device" "$WORK/check.err" ||
    die "skip reason for A: $(cat "$WORK/check.err")"
ok "canaries: v4 only to A (--device), v5 only to B (--devices-file)"

# ---- 5. the layers of the device's attributes -----------------------------------------
mk_release v6 0
publish v6 --attribute tier=gold --attribute region=us
# B's file says tier=silver: not for B ...
"$AGENT_BIN" device check --config "$CONF_B" --server "$URL" --root "$ROOT_B" >"$WORK/check.out" ||
    die "device check B"
grep -q "no update" "$WORK/check.out" || die "B (silver) is offered v6: $(cat "$WORK/check.out")"
# ... the environment replaces the file's value, a flag the environment's
LIVEPUSH_ATTRIBUTES='{"tier": "gold"}' "$AGENT_BIN" device check --config "$CONF_B" \
    --server "$URL" --root "$ROOT_B" >"$WORK/check.out" || die "device check B (env)"
grep -q "v6 (code 6)" "$WORK/check.out" || die "B (env gold) is not offered v6: $(cat "$WORK/check.out")"
LIVEPUSH_ATTRIBUTES='{"tier": "gold"}' "$AGENT_BIN" device check --config "$CONF_B" \
    --server "$URL" --root "$ROOT_B" --attribute tier=bronze >"$WORK/check.out" ||
    die "device check B (flag)"
grep -q "no update" "$WORK/check.out" || die "B (flag bronze) is offered v6: $(cat "$WORK/check.out")"
agent_b --attribute tier=gold || die "agent B (v6): exit $?"
expect_codes 4 6
ok "device attributes: config file < LIVEPUSH_ATTRIBUTES < --attribute"

# ---- 6. refusals ----------------------------------------------------------------------
mk_release v7 0
before=$(releases_count)
expect_rc 2 lp upload --bundle "$WORK/src/v7" --version v7 --attribute Region=eu
grep -q "targeting.attributes: attribute name 'Region'" "$WORK/err" || die "upload Region: $(cat "$WORK/err")"
expect_rc 2 lp upload --bundle "$WORK/src/v7" --version v7 --attribute region
grep -q "expected KEY=VALUE" "$WORK/err" || die "upload --attribute region: $(cat "$WORK/err")"
expect_rc 2 lp upload --bundle "$WORK/src/v7" --version v7 --min-from-code 5 --max-from-code 3
grep -q "targeting.max_from_code: 3 is below min_from_code 5" "$WORK/err" || die "upload 5..3: $(cat "$WORK/err")"
expect_rc 2 lp upload --bundle "$WORK/src/v7" --version v7 --device "$ID_A" --device "$ID_A"
grep -q "targeting.devices\[1\]: listed twice" "$WORK/err" || die "upload twice: $(cat "$WORK/err")"
expect_rc 2 lp upload --bundle "$WORK/src/v7" --version v7 --devices-file "$WORK/none.txt"
grep -q "devices-file" "$WORK/err" || die "upload missing file: $(cat "$WORK/err")"
expect_rc 2 lp upload --bundle "$WORK/src/v7" --version v7 --min-from-code -1
[ "$(releases_count)" = "$before" ] || die "a refused upload published a release"
[ -z "$(ls "$DATA/uploads" 2>/dev/null)" ] || die "a refused upload left bytes on the server: $(ls "$DATA/uploads")"
expect_rc 2 "$AGENT_BIN" device check --server "$URL" --root "$ROOT_A" --attribute Region=eu
grep -q "attribute" "$WORK/err" || die "device check Region: $(cat "$WORK/err")"
expect_rc 2 "$AGENT_BIN" device check --server "$URL" --root "$ROOT_A" --attribute a=1 --attribute a=2
grep -q "attribute a given twice" "$WORK/err" || die "device check a twice: $(cat "$WORK/err")"
LIVEPUSH_ATTRIBUTES='region=eu' expect_rc 2 "$AGENT_BIN" device check --server "$URL" --root "$ROOT_A"
grep -q "LIVEPUSH_ATTRIBUTES" "$WORK/err" || die "LIVEPUSH_ATTRIBUTES not JSON: $(cat "$WORK/err")"
printf '{"attribute": {"region": 7}}\n' >"$WORK/bad.json"
expect_rc 2 "$AGENT_BIN" device check --config "$WORK/bad.json" --server "$URL" --root "$ROOT_A"
grep -q "config file .*: key 'attribute'" "$WORK/err" || die "config region 7: $(cat "$WORK/err")"
# the server names the member of a request the command would not send
python3 - "$URL" "$LIVEPUSH_TOKEN" <<'PYEOF' || die "the server's 400 for targeting.cohort"
import hashlib, json, sys, urllib.request
url, tok = sys.argv[1], sys.argv[2]
body = b"x\n"
def call(method, path, data=None, ctype="application/json", extra=None):
    h = {"Authorization": "Bearer " + tok, "Content-Type": ctype}
    h.update(extra or {})
    r = urllib.request.Request(url + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(r) as a:
            return a.status, json.load(a)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
s, a = call("POST", "/api/v1/apps/default/uploads",
            json.dumps({"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode())
up = a["upload"]["id"]
call("PUT", "/api/v1/uploads/" + up, body, "application/octet-stream",
     {"Content-Range": "bytes 0-%d/%d" % (len(body) - 1, len(body))})
s, a = call("POST", "/api/v1/apps/default/releases", json.dumps(
    {"upload": up, "version": "v7", "kind": "file", "file_name": "x",
     "targeting": {"attributes": {"region": "eu"}, "cohort": 3}}).encode())
assert s == 400 and "field 'targeting.cohort': unknown member" in a["error"]["message"], (s, a)
PYEOF
[ "$(releases_count)" = "$before" ] || die "a refused request published a release"
ok "refusals: bad targeting options exit 2 before any upload; bad device attributes exit 2; the server names targeting.cohort"

# ---- 7. an app whose publisher signs: the rules are checked and signed ------------------
cd "$WORK"
lp keygen --out "$WORK/root.pem" >/dev/null 2>&1
lp keygen --out "$WORK/rel.pem" >/dev/null 2>&1
expect_rc 0 lp app create signed --signing publisher --root-key "$WORK/root.pem" \
    --release-key "$WORK/rel.pem.pub.json"
[ -s "$WORK/signed.root.json" ] || die "app create: $(cat "$WORK/out")"
mk_release s1 0
expect_rc 0 lp upload --app signed --bundle "$WORK/src/s1" --version s1 --attribute region=eu \
    --attribute region=uk --min-from-code 0 --sign-key "$WORK/rel.pem" --root "$WORK/signed.root.json"
check_signed() {
    "$AGENT_BIN" device check --app signed --server "$URL" --root "$WORK/device-c" \
        --trusted-root "$WORK/signed.root.json" "$@"
}
check_signed --attribute region=uk >"$WORK/check.out" || die "device check C"
grep -q "s1 (code 1)" "$WORK/check.out" || die "C (uk) is not offered s1: $(cat "$WORK/check.out")"
check_signed --attribute region=us >"$WORK/check.out" || die "device check C (us)"
grep -q "no update" "$WORK/check.out" || die "C (us) is offered s1: $(cat "$WORK/check.out")"
ok "publisher-signed: upload --sign-key with targeting options checked the prepared rules and published; devices judged them"
