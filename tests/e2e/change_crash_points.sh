#!/usr/bin/env bash
# change_crash_points.sh — what devices and other servers see when the
# server dies in the middle of a change, at the two named crash points
# around the commit (LIVEPUSH_CRASH_AT, see src/server/service_priv.h).
#
# A change (publish, rollout change) writes its repository files with the
# timestamp held back, commits its transaction, then writes timestamp.json.
# Read straight from the data folder while the server is dead (as a second
# server on the same database and folder, or nginx serving it, would):
#   - killed before the commit: the database has no trace of the change and
#     timestamp.json is the one from before, so no reader sees the release;
#   - killed after the commit: the database has the release, the repository
#     does not list it yet; the next start brings them in line;
#   - either way the versioned files left behind are never rewritten with
#     other content, and the next change works.
# Without the held timestamp the first case lists a release the database
# does not have.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
e2e_begin change_crash_points curl python3 sha256sum

D="$WORK/data"
META="$D/repos/default/metadata"
unset LIVEPUSH_SERVER LIVEPUSH_TOKEN LIVEPUSH_APP LIVEPUSH_TIMEOUT LIVEPUSH_DEVICE_AUTH LIVEPUSH_CRASH_AT
export LIVEPUSH_TIMEOUT=20

serve() { start_server --listen 127.0.0.1:0 --data-dir "$D"; export LIVEPUSH_SERVER="$URL"; }

# on_disk VERSION_CODE — "listed" or "absent": what a reader starting from
# timestamp.json finds in the data folder (timestamp -> snapshot -> targets).
on_disk() {
    python3 - "$META" "$1" <<'EOF'
import json, sys
meta, code = sys.argv[1], sys.argv[2]
ts = json.load(open(f"{meta}/timestamp.json"))["signed"]
snap_v = ts["meta"]["snapshot.json"]["version"]
snap = json.load(open(f"{meta}/{snap_v}.snapshot.json"))["signed"]
tg_v = snap["meta"]["targets.json"]["version"]
tg = json.load(open(f"{meta}/{tg_v}.targets.json"))["signed"]
print("listed" if f"releases/{code}.json" in tg["targets"] else "absent")
EOF
}

# in_db VERSION — how many releases of the app carry that version string.
in_db() {
    python3 - "$D/livepush.db" "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(db.execute("SELECT count(*) FROM releases WHERE version = ?", (sys.argv[2],)).fetchone()[0])
EOF
}

# rollout_state VERSION — the stored state of its rollout on stable.
rollout_state() {
    python3 - "$D/livepush.db" "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
row = db.execute("SELECT o.state FROM rollouts o JOIN releases r ON r.id = o.release_id "
                 "WHERE r.version = ?", (sys.argv[2],)).fetchone()
print(row[0] if row else "none")
EOF
}

# Every metadata file and its hash, to see that none is rewritten.
fingerprint() { (cd "$META" && sha256sum -- *.json | grep -v ' timestamp.json$' | sort); }

# dies_at POINT COMMAND... — the server started with crash point POINT dies
# (SIGKILL) while the command runs; the command fails.
dies_at() {
    local point=$1 rc=0
    shift
    LIVEPUSH_CRASH_AT=$point start_server --listen 127.0.0.1:0 --data-dir "$D"
    export LIVEPUSH_SERVER="$URL"
    expect_rc 1 "$@"
    wait "$SERVER_PID" || rc=$?
    SERVER_PID=""
    [ "$rc" -eq 137 ] || die "server started with crash point $point exited with $rc, not by SIGKILL"
}

mkdir "$WORK/b"
echo one >"$WORK/b/app"
serve
export LIVEPUSH_TOKEN
LIVEPUSH_TOKEN=$(cat "$D/admin.token")
expect_rc 0 lp upload --bundle "$WORK/b" --version 1.0
expect_rc 0 lp upload --bundle "$WORK/b" --version 1.1 --rollout 10
stop_server
[ "$(on_disk 2)" = listed ] || die "1.1 is not listed after its publish"
ok "1.0 published, 1.1 rolling out at 10%"

# ---- killed before the commit ----
echo two >"$WORK/b/app"
ts_before=$(sha256sum "$META/timestamp.json")
dies_at change:before-commit lp upload --bundle "$WORK/b" --version 1.2
[ "$(in_db 1.2)" = 0 ] || die "the database has 1.2 although the server died before the commit"
[ "$(sha256sum "$META/timestamp.json")" = "$ts_before" ] || die "timestamp.json changed before the commit"
[ "$(on_disk 3)" = absent ] || die "the repository lists release 3 (1.2), which the database does not have"
fp=$(fingerprint)
[ -n "$(ls "$META" | grep -E '^[0-9]+\.targets\.json$' | sort -n | tail -1)" ] || die "no targets file"
ok "killed before the commit: the database has no 1.2 and a reader of the data folder sees the old timestamp, no release 3"

serve
expect_rc 0 lp upload --bundle "$WORK/b" --version 1.2
stop_server
[ "$(in_db 1.2)" = 1 ] && [ "$(on_disk 3)" = listed ] || die "the next publish of 1.2 is not listed as release 3"
# The files the dead server left are still byte for byte what they were.
missing=$(comm -23 <(echo "$fp") <(fingerprint))
[ -z "$missing" ] || die "metadata files rewritten with other content: $missing"
ok "the next publish lists 1.2 as release 3; the files left behind keep their content (new versions were taken)"

# ---- killed after the commit ----
echo three >"$WORK/b/app"
dies_at change:after-commit lp upload --bundle "$WORK/b" --version 1.3
[ "$(in_db 1.3)" = 1 ] || die "the database lacks 1.3 although the server died after the commit"
[ "$(on_disk 4)" = absent ] || die "release 4 is listed although timestamp.json was not written"
ok "killed after the commit: the database has 1.3, the repository does not list it yet"
serve
[ "$(on_disk 4)" = listed ] || die "the start did not bring the repository in line (release 4 not listed)"
expect_rc 0 lp releases
grep -q '1\.3' "$WORK/out" || die "the release list lacks 1.3: $(cat "$WORK/out")"
stop_server
ok "the next start lists release 4 (1.3)"

# ---- a rollout change killed before the commit ----
ts_before=$(sha256sum "$META/timestamp.json")
dies_at change:before-commit lp rollout pause 1.1 --reason "crash test"
[ "$(rollout_state 1.1)" = active ] || die "the rollout of 1.1 is $(rollout_state 1.1) after a pause that never committed"
[ "$(sha256sum "$META/timestamp.json")" = "$ts_before" ] || die "timestamp.json changed for a rollout change that never committed"
serve
expect_rc 0 lp rollout pause 1.1 --reason "second try"
stop_server
[ "$(rollout_state 1.1)" = paused ] || die "the second pause did not land"
ok "a rollout pause killed before its commit changes nothing; the next one lands"

lp audit verify --db "sqlite:$D/livepush.db" >/dev/null || die "the audit chain does not verify"
ok "the audit chain verifies"
