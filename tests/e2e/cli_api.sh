#!/usr/bin/env bash
# cli_api.sh — the management commands of `livepush` against a real server.
#
# Starts `livepush serve` on an ephemeral loopback port with a new data
# folder (the first start writes DATA/admin.token) and drives it only with
# the livepush command:
#   - token create (scope upload), then uploads with that token of one
#     folder's content as a tar.gz, a zip, the folder itself and a single
#     file: releases v1..v4 with version codes 1..4, the first three with
#     the same manifest (a folder, its tar.gz and its zip are one release
#     content);
#   - inspect (summary and one release), releases (table and --json),
#     rollback to v1 (a new release, code 5, rollback_of v1, v1's manifest);
#   - app create/list/show, channel create/list, token list/revoke: a
#     revoked token then gets exit 3, an upload token asking for an admin
#     route gets exit 3, a tar with a "../" entry exit 4 naming the entry,
#     an unknown release exit 4, no server exit 1, bad options exit 2;
#   - every --json output parses as one JSON document;
#   - an interrupted upload (20 MB, 1 MiB chunks, rate limited, killed with
#     SIGKILL once the server holds some of it) resumes: the rerun says
#     "resuming upload ID at byte N" with N the server's offset, and the
#     server log shows PUTs for the remaining chunks only; an upload the
#     server no longer has starts again; a second sender (curl) that moves
#     the upload on while the command's chunk is in flight makes the server
#     answer 409 offset_mismatch, and the command continues from the
#     server's offset;
#   - the progress bar appears on a terminal (run under script(1)) and not
#     when stderr is a file.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
e2e_begin cli curl python3 zip script
E2E_PID_VARS="UPLOAD_PID"

# json_check: stdin must be one JSON document
json_check() { python3 -c 'import json,sys; json.load(sys.stdin)'; }
# state_id BUNDLE: the upload id of the state file kept for BUNDLE, or nothing
state_id() {
    python3 - "$STATE_DIR" "$1" <<'PYEOF'
import json, os, sys
d, bundle = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
    try:
        s = json.load(open(os.path.join(d, name)))
    except (OSError, ValueError):
        continue
    if s.get("bundle") == bundle:
        print(s["upload"])
PYEOF
}

# A clean environment: nothing from the caller's LIVEPUSH_* settings.
unset LIVEPUSH_SERVER LIVEPUSH_TOKEN LIVEPUSH_APP LIVEPUSH_TIMEOUT LIVEPUSH_UPLOAD_CHUNK
export XDG_CACHE_HOME="$WORK/cache"
STATE_DIR="$XDG_CACHE_HOME/livepush/uploads"

# ---- the command line, without a server ---------------------------------------
for cmd in upload inspect releases rollback app channel token; do
    lp "$cmd" --help >"$WORK/help" || die "$cmd --help: exit $?"
    for opt in --server --token --token-file --app --json LIVEPUSH_SERVER; do
        grep -qF -- "$opt" "$WORK/help" || die "$cmd --help does not mention $opt"
    done
    expect_rc 2 lp "$cmd" --no-such-option
done
ok "--help of every command (exit 0) lists the client options; a bad option exits 2"
expect_rc 2 lp upload --version v1
grep -q -- "--bundle is required" "$WORK/err" || die "upload without --bundle: $(cat "$WORK/err")"
expect_rc 2 lp releases --limit zero
expect_rc 2 lp token create --name x
expect_rc 2 lp app frobnicate
expect_rc 2 lp releases --server ftp://example.org
ok "missing or malformed arguments are usage errors (exit 2)"

# ---- the server -------------------------------------------------------------------
D="$WORK/data"
"$LP_BIN" serve --listen 127.0.0.1:0 --data-dir "$D" >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
URL=""
for _ in $(seq 1 200); do
    URL=$(sed -n 's/^listening on //p' "$WORK/server.out")
    [ -n "$URL" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "server exited at start"
    sleep 0.05
done
[ -n "$URL" ] || die "server printed no 'listening on' line"
[ -s "$D/admin.token" ] || die "no $D/admin.token after the first start"
ADMIN_FILE="$D/admin.token"
export LIVEPUSH_SERVER="$URL"
ok "server listening on $URL, admin token in $ADMIN_FILE"

expect_rc 3 lp releases
grep -q "HTTP 401" "$WORK/err" || die "no token: $(cat "$WORK/err")"
ok "no token: exit 3, $(cat "$WORK/err")"
expect_rc 1 lp releases --server http://127.0.0.1:1 --token-file "$ADMIN_FILE"
ok "no server there: exit 1"

# ---- tokens -----------------------------------------------------------------------------
expect_rc 0 lp token create --name ci --scope upload --token-file "$ADMIN_FILE"
UP=$(cat "$WORK/out")
[[ "$UP" =~ ^lp_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$ ]] || die "token create printed '$UP'"
UP_ID=$(echo "$UP" | cut -d_ -f2)
grep -q "scopes upload" "$WORK/err" || die "token create description: $(cat "$WORK/err")"
ok "token create: the token text alone on stdout (id $UP_ID)"
expect_rc 0 lp token list --token-file "$ADMIN_FILE"
grep -E "^$UP_ID +ci +upload " "$WORK/out" >/dev/null || die "token list: $(cat "$WORK/out")"
lp token list --json --token-file "$ADMIN_FILE" >"$WORK/tokens.json"
[ "$(jq_py '[t["scopes"] for t in d["tokens"] if t["id"]=="'"$UP_ID"'"][0]' <"$WORK/tokens.json")" = "['upload']" ] ||
    die "token list --json: $(cat "$WORK/tokens.json")"
ok "token list (table and --json) shows the new token with scope upload"

export LIVEPUSH_TOKEN="$UP"
expect_rc 3 lp app create other
grep -q "HTTP 403" "$WORK/err" && grep -q "admin" "$WORK/err" || die "403: $(cat "$WORK/err")"
ok "an upload token on an admin route: exit 3, $(cat "$WORK/err")"

# ---- releases v1..v4 --------------------------------------------------------------------
B="$WORK/bundle"
mkdir -p "$B/bin" "$B/share/doc"
printf '#!/bin/sh\necho hello\n' >"$B/bin/app"
chmod 755 "$B/bin/app"
printf 'readme\n' >"$B/README"
printf 'docs\n' >"$B/share/doc/guide.txt"
ln -s ../README "$B/share/readme"
tar -czf "$WORK/app.tar.gz" -C "$B" .
(cd "$B" && zip -qry "$WORK/app.zip" .)
printf 'one file\n' >"$WORK/notes.txt"
printf 'a single-file release\n' >"$WORK/config.json"

expect_rc 0 lp upload --bundle "$WORK/app.tar.gz" --version v1 --notes "first"
grep -q "published v1 (version code 1)" "$WORK/out" || die "upload v1: $(cat "$WORK/out")"
[ ! -s "$WORK/err" ] || die "upload without a terminal wrote to stderr: $(cat "$WORK/err")"
expect_rc 0 lp upload --bundle "$WORK/app.zip" --version v2 --token "$UP"
expect_rc 0 lp upload --bundle "$B" --version v3 --notes-file "$WORK/notes.txt" --platform linux \
    --arch x86_64 --mandatory
expect_rc 0 lp upload --bundle "$WORK/config.json" --version v4 --channel stable --channel beta
ok "uploads of a tar.gz, a zip, a folder and a single file (exit 0, no stderr without a terminal)"

lp releases --json >"$WORK/rel.json"
json_check <"$WORK/rel.json" || die "releases --json does not parse"
python3 - "$WORK/rel.json" <<'PYEOF' || die "releases --json: $(cat "$WORK/rel.json")"
import json, sys
rels = json.load(open(sys.argv[1]))["releases"]
got = [(r["version"], r["version_code"]) for r in rels]
assert got == [("v4", 4), ("v3", 3), ("v2", 2), ("v1", 1)], got
by = {r["version"]: r for r in rels}
m = {v: by[v]["manifest"]["sha256"] for v in by}
assert m["v1"] == m["v2"] == m["v3"] != m["v4"], m
assert by["v1"]["files"] == 3 and by["v1"]["bytes"] == 7 + 21 + 5, by["v1"]
assert by["v4"]["files"] == 1, by["v4"]
assert by["v1"]["notes"] == "first" and by["v3"]["notes"] == "one file\n", by["v3"]
assert by["v3"]["mandatory"] is True and by["v3"]["platform"] == "linux" and by["v3"]["arch"] == "x86_64"
assert sorted(by["v4"]["channels"]) == ["beta", "stable"], by["v4"]
assert all(r["created_by"] for r in rels)
PYEOF
ok "releases --json: v4..v1 with codes 4..1; tar.gz, zip and folder give one manifest"

expect_rc 0 lp releases
head -1 "$WORK/out" | grep -q "^CODE  VERSION  CHANNELS" || die "releases table: $(cat "$WORK/out")"
[ "$(grep -c "published" "$WORK/out")" -eq 4 ] || die "releases table rows: $(cat "$WORK/out")"
expect_rc 0 lp releases --channel beta --json
[ "$(jq_py '[r["version"] for r in d["releases"]]' <"$WORK/out")" = "['v4']" ] ||
    die "releases --channel beta: $(cat "$WORK/out")"
expect_rc 0 lp releases --limit 2 --json
[ "$(jq_py '([r["version_code"] for r in d["releases"]], d["next_before"])' <"$WORK/out")" = "([4, 3], 3)" ] ||
    die "releases --limit 2: $(cat "$WORK/out")"
expect_rc 0 lp releases --limit 2
grep -q -- "(more: --before 3)" "$WORK/out" || die "releases --limit 2 table: $(cat "$WORK/out")"
expect_rc 0 lp releases --before 3 --json
[ "$(jq_py '[r["version_code"] for r in d["releases"]]' <"$WORK/out")" = "[2, 1]" ] ||
    die "releases --before 3: $(cat "$WORK/out")"
ok "releases: table, --channel, --limit with the next-page hint, --before"

expect_rc 0 lp inspect
grep -q "^latest  *v4 (code 4)" "$WORK/out" && grep -q "^newest releases:" "$WORK/out" ||
    die "inspect: $(cat "$WORK/out")"
expect_rc 0 lp inspect --json
[ "$(jq_py '(d["app"]["name"], d["latest"]["version_code"])' <"$WORK/out")" = "('default', 4)" ] ||
    die "inspect --json: $(cat "$WORK/out")"
expect_rc 0 lp inspect --release v3
grep -q "^version code  3$" "$WORK/out" && grep -q "^mandatory  *yes$" "$WORK/out" ||
    die "inspect --release v3: $(cat "$WORK/out")"
expect_rc 0 lp inspect --release v2 --json
[ "$(jq_py 'd["release"]["version_code"]' <"$WORK/out")" = 2 ] || die "inspect --release v2 --json"
expect_rc 4 lp inspect --release v99
grep -q "HTTP 404" "$WORK/err" || die "unknown release: $(cat "$WORK/err")"
ok "inspect: app summary, one release, --json; an unknown release exits 4"

expect_rc 0 lp rollback --target v1
grep -q "new release v1 (version code 5)" "$WORK/out" || die "rollback: $(cat "$WORK/out")"
lp releases --json --limit 1 >"$WORK/rb.json"
python3 - "$WORK/rb.json" "$WORK/rel.json" <<'PYEOF' || die "after rollback: $(cat "$WORK/rb.json")"
import json, sys
new = json.load(open(sys.argv[1]))["releases"][0]
v1 = [r for r in json.load(open(sys.argv[2]))["releases"] if r["version"] == "v1"][0]
assert new["version"] == "v1" and new["version_code"] == 5, new
assert new["rollback_of"] == {"version": "v1", "version_code": 1}, new
assert new["manifest"]["sha256"] == v1["manifest"]["sha256"], new
PYEOF
expect_rc 4 lp rollback --target v77
ok "rollback --target v1: release code 5, rollback_of v1, v1's content; unknown target exits 4"

expect_rc 4 lp upload --bundle "$WORK/config.json" --version v4
grep -q "HTTP 409" "$WORK/err" || die "duplicate version: $(cat "$WORK/err")"
ok "a version that exists: exit 4, $(cat "$WORK/err")"

# a tar whose entry leaves the bundle
mkdir -p "$WORK/evil"
printf 'x\n' >"$WORK/evil/e.txt"
python3 - "$WORK/evil/e.txt" "$WORK/evil.tar" <<'PYEOF'
import sys, tarfile
with tarfile.open(sys.argv[2], "w") as t:
    t.add(sys.argv[1], arcname="ok.txt")
    t.add(sys.argv[1], arcname="../escape.txt")
PYEOF
expect_rc 4 lp upload --bundle "$WORK/evil.tar" --version evil
grep -q "HTTP 422" "$WORK/err" && grep -qF "../escape.txt" "$WORK/err" ||
    die "bad bundle: $(cat "$WORK/err")"
ok "a tar with a ../ entry: exit 4, $(cat "$WORK/err")"
expect_rc 0 lp releases --json
[ "$(jq_py 'len(d["releases"])' <"$WORK/out")" = 5 ] || die "the refused bundle made a release"

# ---- apps and channels -------------------------------------------------------------------
export LIVEPUSH_TOKEN="$(cat "$ADMIN_FILE")"
expect_rc 0 lp app create shop
expect_rc 4 lp app create shop
grep -q "HTTP 409" "$WORK/err" || die "app create twice: $(cat "$WORK/err")"
expect_rc 0 lp app list
grep -q "^shop " "$WORK/out" && grep -q "^default " "$WORK/out" || die "app list: $(cat "$WORK/out")"
expect_rc 0 lp app list --json
[ "$(jq_py 'sorted(a["name"] for a in d["apps"])' <"$WORK/out")" = "['default', 'shop']" ] ||
    die "app list --json: $(cat "$WORK/out")"
expect_rc 0 lp app show shop
grep -q "^latest  *- (no release yet)" "$WORK/out" || die "app show shop: $(cat "$WORK/out")"
expect_rc 0 lp channel create beta --app shop
expect_rc 0 lp channel list --json --app shop
jq_py '[c["name"] for c in d["channels"]]' <"$WORK/out" | grep -q "'beta'" ||
    die "channel list --json: $(cat "$WORK/out")"
LIVEPUSH_APP=shop lp channel list >"$WORK/out"
grep -q "^beta " "$WORK/out" || die "channel list (LIVEPUSH_APP): $(cat "$WORK/out")"
expect_rc 0 lp upload --app shop --bundle "$WORK/config.json" --version 1.0.0 --channel beta --json
[ "$(jq_py '(d["release"]["app"], d["release"]["channels"])' <"$WORK/out")" = "('shop', ['beta'])" ] ||
    die "upload --json: $(cat "$WORK/out")"
expect_rc 4 lp inspect --app nowhere
ok "app create/list/show, channel create/list, --app and LIVEPUSH_APP, upload --json"

# ---- revoking ---------------------------------------------------------------------------
expect_rc 0 lp token revoke "$UP_ID"
grep -q "token $UP_ID revoked" "$WORK/out" || die "token revoke: $(cat "$WORK/out")"
expect_rc 3 lp releases --token "$UP"
grep -q "HTTP 401" "$WORK/err" || die "revoked token: $(cat "$WORK/err")"
lp token list --json >"$WORK/out"
[ "$(jq_py '[t["revoked_at"] is not None for t in d["tokens"] if t["id"]=="'"$UP_ID"'"][0]' <"$WORK/out")" = True ] ||
    die "token list after revoke: $(cat "$WORK/out")"
ok "token revoke: the revoked token then gets exit 3 ($(cat "$WORK/err"))"

# ---- an interrupted upload resumes ------------------------------------------------------
head -c 20000000 /dev/urandom >"$WORK/big.bin"
CHUNK=1048576
LIVEPUSH_UPLOAD_CHUNK=1M "$LP_BIN" upload --bundle "$WORK/big.bin" --version big \
    --limit-rate 2M >"$WORK/up1.out" 2>"$WORK/up1.err" &
UPLOAD_PID=$!
ID=""
OFF=0
for _ in $(seq 1 400); do
    [ -n "$ID" ] || ID=$(state_id "$WORK/big.bin")
    if [ -n "$ID" ]; then
        OFF=$(curl -sf -H "Authorization: Bearer $LIVEPUSH_TOKEN" "$URL/api/v1/uploads/$ID" |
            jq_py 'd["upload"]["offset"]' || echo 0)
        [ "$OFF" -ge $((2 * CHUNK)) ] && break
    fi
    kill -0 "$UPLOAD_PID" 2>/dev/null || die "the rate-limited upload ended early: $(cat "$WORK/up1.err")"
    sleep 0.05
done
[ "$OFF" -ge $((2 * CHUNK)) ] || die "the upload did not get going (offset $OFF)"
{ kill -KILL "$UPLOAD_PID" && wait "$UPLOAD_PID"; } 2>/dev/null || true
sleep 0.3 # a chunk the server had wholly received is recorded by now
OFF=$(curl -sf -H "Authorization: Bearer $LIVEPUSH_TOKEN" "$URL/api/v1/uploads/$ID" |
    jq_py 'd["upload"]["offset"]')
[ "$OFF" -lt 20000000 ] || die "the upload finished before it was killed"
ok "upload $ID killed at byte $OFF of 20000000; its state file is kept"

LOG_BEFORE=$(wc -l <"$WORK/server.err")
LIVEPUSH_UPLOAD_CHUNK=1M lp upload --bundle "$WORK/big.bin" --version big >"$WORK/up2.out" \
    2>"$WORK/up2.err" || die "the resumed upload failed: $(cat "$WORK/up2.err")"
grep -q "resuming upload $ID at byte $OFF of 20000000" "$WORK/up2.err" ||
    die "no resume message: $(cat "$WORK/up2.err")"
PUTS=$(tail -n +$((LOG_BEFORE + 1)) "$WORK/server.err" | grep '"method":"PUT"' | grep -c "$ID" || true)
WANT=$(((20000000 - OFF + CHUNK - 1) / CHUNK))
[ "$PUTS" -eq "$WANT" ] || die "the rerun sent $PUTS chunks, expected $WANT (the rest only)"
[ -z "$(state_id "$WORK/big.bin")" ] || die "state file left after success"
lp inspect --release big --json | jq_py 'd["release"]["bytes"]' | grep -qx 20000000 ||
    die "release big does not hold 20000000 bytes"
ok "rerun: 'resuming upload $ID at byte $OFF', $PUTS chunk(s) sent for the rest, release complete"

# an upload the server no longer has: the rerun starts again
LIVEPUSH_UPLOAD_CHUNK=1M "$LP_BIN" upload --bundle "$B" --version gone --limit-rate 1 \
    >/dev/null 2>"$WORK/up3.err" &
UPLOAD_PID=$!
ID=""
for _ in $(seq 1 200); do
    ID=$(state_id "$B")
    [ -n "$ID" ] && break
    sleep 0.05
done
[ -n "$ID" ] || die "no state file for the folder upload"
{ kill -KILL "$UPLOAD_PID" && wait "$UPLOAD_PID"; } 2>/dev/null || true
curl -sf -X DELETE -H "Authorization: Bearer $LIVEPUSH_TOKEN" "$URL/api/v1/uploads/$ID" >/dev/null ||
    die "DELETE upload $ID"
expect_rc 0 lp upload --bundle "$B" --version gone
grep -q "no longer has upload $ID; starting again" "$WORK/err" || die "forgotten upload: $(cat "$WORK/err")"
ok "an upload the server forgot: the rerun starts again and publishes"

# another sender moves the upload on while a chunk is in flight: the chunk
# is refused with 409 offset_mismatch and sending continues from the
# server's offset
head -c $((3 * 512 * 1024)) /dev/urandom >"$WORK/race.bin"
LIVEPUSH_UPLOAD_CHUNK=512K "$LP_BIN" upload --bundle "$WORK/race.bin" --version race \
    --limit-rate 128K >"$WORK/race.out" 2>"$WORK/race.err" &
UPLOAD_PID=$!
ID=""
OFF=0
for _ in $(seq 1 200); do
    [ -n "$ID" ] || ID=$(state_id "$WORK/race.bin")
    if [ -n "$ID" ]; then
        OFF=$(curl -sf -H "Authorization: Bearer $LIVEPUSH_TOKEN" "$URL/api/v1/uploads/$ID" |
            jq_py 'd["upload"]["offset"]' || echo 0)
        [ "$OFF" -ge 524288 ] && break
    fi
    sleep 0.05
done
[ "$OFF" -eq 524288 ] || die "the first chunk of the race upload: offset $OFF"
# the CLI is now sending bytes 512K..1M at 128 KiB/s (4 s); send them first
dd if="$WORK/race.bin" of="$WORK/race.part" bs=524288 skip=1 count=1 status=none
code=$(curl -s -o "$WORK/race.put" -w '%{http_code}' -X PUT -H "Authorization: Bearer $LIVEPUSH_TOKEN" \
    -H "Content-Type: application/octet-stream" -H "Content-Range: bytes 524288-1048575/1572864" \
    --data-binary @"$WORK/race.part" "$URL/api/v1/uploads/$ID")
[ "$code" = 200 ] || die "PUT of the second chunk with curl: HTTP $code $(cat "$WORK/race.put")"
rc=0
wait "$UPLOAD_PID" || rc=$?
[ "$rc" -eq 0 ] || die "the raced upload: exit $rc: $(cat "$WORK/race.err")"
grep -q "the server holds 1048576 bytes; continuing from there" "$WORK/race.err" ||
    die "no resync message: $(cat "$WORK/race.err")"
grep '"method":"PUT"' "$WORK/server.err" | grep "$ID" | grep -q '"status":409' ||
    die "the server log shows no 409 for upload $ID"
lp inspect --release race --json | jq_py 'd["release"]["bytes"]' | grep -qx 1572864 ||
    die "release race is not complete"
ok "409 offset_mismatch while a chunk was in flight: resynced at byte 1048576 and published"

# ---- the progress bar ----------------------------------------------------------------------
head -c 3000000 /dev/urandom >"$WORK/med.bin"
CMD=$(printf '%q ' env LIVEPUSH_UPLOAD_CHUNK=256K "$LP_BIN" upload --bundle "$WORK/med.bin" \
    --version tty --limit-rate 4M)
rc=0
script -q -e -c "$CMD" /dev/null </dev/null >"$WORK/tty.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || die "upload under script: exit $rc: $(cat "$WORK/tty.out")"
grep -q "\[##############################\] 2.9 MiB / 2.9 MiB 100% .*/s" "$WORK/tty.out" ||
    die "no progress bar on a terminal: $(cat -A "$WORK/tty.out" | tail -c 400)"
[ "$(tr '\r' '\n' <"$WORK/tty.out" | grep -c '^\[#*-*\] ')" -ge 2 ] || die "the bar was not redrawn"
ok "on a terminal: a progress bar with bytes, percent and rate"
expect_rc 0 env LIVEPUSH_UPLOAD_CHUNK=256K "$LP_BIN" upload --bundle "$WORK/med.bin" --version notty
! grep -q "%" "$WORK/err" || die "progress without a terminal: $(cat "$WORK/err")"
ok "stderr not a terminal: no progress bar"

echo "cli_api: $CHECKS checks passed"
