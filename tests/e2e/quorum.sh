#!/usr/bin/env bash
# quorum.sh — quorum approval end to end: an app whose publisher signs with
# three release keys and a targets threshold of 2 (k of n = 2 of 3), the
# real server process, the real `livepush` publisher commands and a real
# device (`livepush-agent agent --once` on an install root):
#   - `livepush --help` lists approve; `approve --help` explains the quorum;
#     bad options exit 2;
#   - v1, the first release: uploaded without keys (exit 5, 0 of 2);
#     `approve` with key A: exit 5, "1 of 2 approvals, 1 missing", the keys
#     not approved yet named; `inspect --release` and `releases` show it;
#     the agent installs nothing (no release is published at all);
#     `approve` with key B: exit 0, "2 of 2 approvals: published"; the
#     agent installs v1;
#   - v2: `approve` with key C, then C again (one key counts once): still
#     1 of 2; the agent keeps v1 (outcome none); `approve` with A:
#     published, the agent installs v2; `inspect --release v2` lists A and
#     C approved, B not;
#   - B approving v2 after the publish: exit 4, "published already (2 of 2
#     approvals): nothing waits for approval", nothing signed; the
#     repository's targets version has not moved;
#   - approving with a key that is no release key, or a release that is
#     not the pending one: refused before anything is sent;
#   - B approves with a token of scope approve only, which cannot cancel.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
. "$LP_SOURCE_DIR/tests/support/device_e2e.sh"
e2e_begin quorum curl python3
unset LIVEPUSH_ROOT LIVEPUSH_CHANNEL LIVEPUSH_CRASH_AT LIVEPUSH_AGENT_CONFIG LIVEPUSH_TIMEOUT
cd "$WORK"

# ---- the command line --------------------------------------------------------------
lp --help >"$WORK/help" || die "livepush --help: exit $?"
grep -qE "^  approve +approve a release that waits for its quorum" "$WORK/help" ||
    die "livepush --help does not list approve: $(cat "$WORK/help")"
lp approve --help >"$WORK/help" || die "approve --help: exit $?"
grep -q "k of the n release keys" "$WORK/help" && grep -qF -- "--sign-key" "$WORK/help" &&
    grep -qF -- "--server" "$WORK/help" || die "approve --help: $(cat "$WORK/help")"
expect_rc 2 lp approve --no-such-option
expect_rc 2 lp approve --sign-key x.pem
grep -q -- "--version is required" "$WORK/err" || die "approve without --version: $(cat "$WORK/err")"
expect_rc 2 lp approve --version v1
ok "livepush --help lists approve; approve --help explains the quorum; bad options exit 2"

# ---- keys, server, app ---------------------------------------------------------------
K="$WORK/keys"
mkdir -p "$K"
lp keygen --out "$K/root.pem" 2>/dev/null >"$K/root.id"
lp keygen --out "$K/a.pem" 2>/dev/null >"$K/a.id"
lp keygen --type ecdsa --out "$K/b.pem" 2>/dev/null >"$K/b.id"
lp keygen --out "$K/c.pem" 2>/dev/null >"$K/c.id"
lp keygen --out "$K/outsider.pem" 2>/dev/null >"$K/outsider.id"
A=$(cat "$K/a.id") B=$(cat "$K/b.id") C=$(cat "$K/c.id")

device_setup
export LIVEPUSH_APP=shop
expect_rc 0 lp app create shop --signing publisher --root-key "$K/root.pem" \
    --release-key "$K/a.pem.pub.json" --release-key "$K/b.pem.pub.json" \
    --release-key "$K/c.pem.pub.json" --release-threshold 2
ROOTJSON="$WORK/shop.root.json"
[ -s "$ROOTJSON" ] || die "no $ROOTJSON: $(cat "$WORK/out")"
grep -q "release keys  threshold 2 of 3" "$WORK/out" || die "app create: $(cat "$WORK/out")"
ok "app shop: release keys A (ed25519), B (ecdsa), C (ed25519), threshold 2 of 3"

# the approver of key B holds a token that may approve and nothing else
lp token create --name bob --scope approve >"$WORK/bob.token" 2>"$WORK/err" ||
    die "token create: $(cat "$WORK/err")"
BOB_TOKEN=$(head -1 "$WORK/bob.token")
[ -n "$BOB_TOKEN" ] || die "no token printed"

# pending_py EXPR: EXPR of GET .../pending's answer (bound to d)
pending_py() {
    curl -sf -H "Authorization: Bearer $LIVEPUSH_TOKEN" "$URL/api/v1/apps/shop/pending" | jq_py "$1"
}
# approvals: "present/required/missing approved-key-ids" of the pending release
approvals() {
    pending_py '"%d/%d/%d %s" % (d["release"]["approvals"]["present"], d["release"]["approvals"]["required"], d["release"]["approvals"]["missing"], ",".join(k["keyid"][:8] for k in d["release"]["approvals"]["keys"] if k["approved"]))'
}
# newest_targets: the highest N of the app's N.targets.json files (0: none)
newest_targets() {
    ls "$DATA/repos/shop/metadata" | sed -n 's/^\([0-9]*\)\.targets\.json$/\1/p' | sort -n | tail -1
}

# ---- v1: the first release ---------------------------------------------------------------
mk_release v1 0
expect_rc 5 lp upload --bundle "$WORK/src/v1" --version v1
[ "$(approvals)" = "0/2/2 " ] || die "approvals after upload: $(approvals)"
expect_rc 5 lp approve --version v1 --sign-key "$K/a.pem" --root "$ROOTJSON" --bundle "$WORK/src/v1"
grep -qx "approved release v1 (code 1) of app shop: 1 of 2 approvals, 1 missing" "$WORK/out" ||
    die "approve A: $(cat "$WORK/out")"
grep -q "not approved yet by the release keys .*$B" "$WORK/out" &&
    grep -q "not approved yet by the release keys .*$C" "$WORK/out" &&
    ! grep -q "not approved yet.*$A" "$WORK/out" || die "approve A, keys missing: $(cat "$WORK/out")"
grep -q "livepush approve --app shop --version v1 --sign-key KEY.pem" "$WORK/out" ||
    die "no hint for the next approver: $(cat "$WORK/out")"
[ "$(approvals)" = "1/2/1 ${A:0:8}" ] || die "approvals after A: $(approvals)"
ok "v1: approve with A: exit 5, 1 of 2 approvals, 1 missing (B, C named)"

expect_rc 0 lp inspect --release v1
grep -qE "^approvals +1 of 2 \(1 missing\)$" "$WORK/out" &&
    grep -qE "^ +approved +key $A$" "$WORK/out" &&
    grep -qE "^ +not approved +key $B$" "$WORK/out" || die "inspect v1: $(cat "$WORK/out")"
expect_rc 0 lp releases
grep -qE "^1 +v1 +stable +pending \(1 of 2\)" "$WORK/out" || die "releases: $(cat "$WORK/out")"
ok "inspect --release v1 lists the approvals per key; releases says pending (1 of 2)"

rc=0
agent_once || rc=$?
[ ! -e "$ROOT/current" ] || die "the device installed something with 1 approval of 2"
grep -q "timestamp" "$WORK/agent.err" || die "agent with nothing published: $(tail -3 "$WORK/agent.err")"
ok "v1 with 1 approval of 2: the agent installs nothing (exit $rc: nothing is published yet)"

expect_rc 0 lp approve --version v1 --sign-key "$K/b.pem" --root "$ROOTJSON" --token "$BOB_TOKEN"
grep -qx "approved release v1 (code 1) of app shop: 2 of 2 approvals: published" "$WORK/out" ||
    die "approve B: $(cat "$WORK/out")"
agent_once || die "agent --once (v1): exit $?"
current_is v1
ok "v1: approve with B (a token with the approve scope only): exit 0, 2 of 2 approvals, published; the agent installs v1"

# ---- v2: a later release --------------------------------------------------------------------
mk_release v2 0 extra.txt=two
expect_rc 5 lp upload --bundle "$WORK/src/v2" --version v2
for _ in 1 2; do
    expect_rc 5 lp approve --version v2 --sign-key "$K/c.pem" --root "$ROOTJSON"
    grep -qx "approved release v2 (code 2) of app shop: 1 of 2 approvals, 1 missing" "$WORK/out" ||
        die "approve C: $(cat "$WORK/out")"
done
[ "$(approvals)" = "1/2/1 ${C:0:8}" ] || die "approvals after C twice: $(approvals)"
agent_once || die "agent --once (v2 with 1 approval): exit $?"
current_is v1
[ "$(python3 -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if "\"msg\":\"tick\"" in l][-1]["outcome"])' "$WORK/agent.err")" = none ] ||
    die "tick with v2 pending: $(tail -1 "$WORK/agent.err")"
ok "v2: approve with C twice: still 1 of 2 (one key counts once); the agent keeps v1"

expect_rc 0 lp approve --version v2 --sign-key "$K/a.pem" --root "$ROOTJSON" --bundle "$WORK/src/v2"
grep -qx "approved release v2 (code 2) of app shop: 2 of 2 approvals: published" "$WORK/out" ||
    die "approve A (v2): $(cat "$WORK/out")"
agent_once || die "agent --once (v2): exit $?"
current_is v2
expect_rc 0 lp inspect --release v2
grep -qE "^state +published$" "$WORK/out" &&
    grep -qE "^approvals +2 of 2 \(the quorum is met\)$" "$WORK/out" &&
    grep -qE "^ +approved +key $A$" "$WORK/out" && grep -qE "^ +approved +key $C$" "$WORK/out" &&
    grep -qE "^ +not approved +key $B$" "$WORK/out" || die "inspect v2: $(cat "$WORK/out")"
ok "v2: approve with A: published; the agent installs v2; inspect shows A and C approved, B not"

# ---- approving what is published, or what is not a release key's --------------------------------
before=$(newest_targets)
expect_rc 4 lp approve --version v2 --sign-key "$K/b.pem" --root "$ROOTJSON" --token "$BOB_TOKEN"
grep -q "release v2 (code 2) of app shop is published already (2 of 2 approvals): nothing waits for approval; nothing was signed" \
    "$WORK/err" || die "approve after publish: $(cat "$WORK/err")"
[ "$(newest_targets)" = "$before" ] || die "the targets metadata moved: $(newest_targets), was $before"
lp inspect --release v2 --json | jq_py '[k["approved"] for k in d["release"]["approvals"]["keys"] if k["keyid"] == "'"$B"'"]' |
    grep -qx "\[False\]" || die "B counted after all"
ok "B approving v2 after the publish: exit 4, published already (2 of 2), nothing signed"

mk_release v3 0
expect_rc 5 lp upload --bundle "$WORK/src/v3" --version v3
expect_rc 1 lp approve --version v3 --sign-key "$K/outsider.pem" --root "$ROOTJSON"
grep -q "key ID $(cat "$K/outsider.id")) is not a release key of app shop" "$WORK/err" ||
    die "outsider: $(cat "$WORK/err")"
expect_rc 4 lp approve --version v2 --sign-key "$K/b.pem" --root "$ROOTJSON"
grep -q "release v2 of app shop is not the one waiting for approval (v3 is)" "$WORK/err" ||
    die "the wrong version: $(cat "$WORK/err")"
expect_rc 1 lp approve --version v3 --sign-key "$K/b.pem" --root "$ROOTJSON" --bundle "$WORK/src/v1"
grep -q "refusing to approve release v3 (code 3) of app shop: .*not the bundle's" "$WORK/err" ||
    die "approve another bundle: $(cat "$WORK/err")"
[ "$(approvals)" = "0/2/2 " ] || die "approvals of v3 after refusals: $(approvals)"
expect_rc 3 lp cancel --version v3 --token "$BOB_TOKEN"
grep -q "lacks the scope 'upload'" "$WORK/err" || die "cancel with the approve scope: $(cat "$WORK/err")"
expect_rc 0 lp cancel --version v3
expect_rc 4 lp approve --version v3 --sign-key "$K/b.pem" --root "$ROOTJSON"
grep -q "release v3 (code 3) of app shop was withdrawn" "$WORK/err" || die "withdrawn: $(cat "$WORK/err")"
ok "refused before anything is sent: a key that is no release key (1), another version (4), another bundle (1), a withdrawn release (4)"

echo "quorum: $CHECKS checks passed"
