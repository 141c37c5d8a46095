#!/usr/bin/env bash
# tuf_static_http.sh — the trust core end to end with the real binary and a
# plain static web server.
#
# A publisher makes keys (livepush keygen), a repository with targets at the
# top level, in a sub-folder and behind a delegation (livepush repo), and the
# folder is served by `python3 -m http.server` on loopback: no livepush code
# on the server side.  A device installs the first root and refreshes and
# downloads with `livepush tuf`; every download is compared byte for byte
# with the original.  Then an update (new target content and a rotated
# timestamp key, i.e. two new root versions) is published and picked up.
# Finally the attacks a static mirror can mount must fail with exit code 1
# and a reason on stderr: a tampered target file, a name that is not
# signed, an expired timestamp (freeze) and an old timestamp put back
# (rollback).
set -euo pipefail

: "${LP_BIN:?LP_BIN must name the livepush binary}"
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lp-e2e-tuf-XXXXXX")
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

CHECKS=0
ok() {
    CHECKS=$((CHECKS + 1))
    echo "ok $CHECKS - $*"
}
die() {
    echo "FAIL - $*" >&2
    exit 1
}
lp() { "$LP_BIN" "$@"; }

# expect_fail DESCRIPTION REGEX COMMAND...: exit code 1 and REGEX on stderr.
expect_fail() {
    local desc=$1 pattern=$2 rc=0
    shift 2
    "$@" >"$WORK/stdout" 2>"$WORK/stderr" || rc=$?
    if [ "$rc" -ne 1 ]; then
        cat "$WORK/stdout" "$WORK/stderr" >&2
        die "$desc: exit code $rc, expected 1"
    fi
    if ! grep -qiE "$pattern" "$WORK/stderr"; then
        cat "$WORK/stderr" >&2
        die "$desc: stderr does not match /$pattern/"
    fi
    ok "$desc refused: $(tr '\n' ' ' <"$WORK/stderr" | cut -c1-220)"
}

# role_version ROLE: the version the repository's writer reports.
role_version() {
    lp repo show "$R" --json | python3 -c '
import json, sys
for r in json.load(sys.stdin)["roles"]:
    if r["name"] == sys.argv[1]:
        print(r["version"])' "$1"
}

# expect_refreshed: `tuf refresh` succeeds and trusts the repository's versions.
expect_refreshed() {
    local out want
    out=$(lp tuf refresh --metadata-dir "$M" --metadata-url "$MURL")
    want="root $(role_version root), timestamp $(role_version timestamp), snapshot $(role_version snapshot), targets $(role_version targets)"
    case "$out" in
    *"$want"*) ok "refresh: $out" ;;
    *) die "refresh printed '$out', expected versions '$want'" ;;
    esac
}

# download_and_compare NAME=SOURCE...: download the names, cmp with sources.
download_and_compare() {
    local out="$WORK/out.$CHECKS" names=() pair
    for pair in "$@"; do names+=("${pair%%=*}"); done
    lp tuf download --metadata-dir "$M" --metadata-url "$MURL" --targets-url "$TURL" \
        --out "$out" "${names[@]}" >/dev/null
    for pair in "$@"; do
        cmp "$out/${pair%%=*}" "${pair#*=}" || die "${pair%%=*} differs from ${pair#*=}"
        ok "downloaded ${pair%%=*}: identical to the published file"
    done
}

# flip_byte FILE: changes the first byte in place.
flip_byte() {
    python3 - "$1" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[0] ^= 0x20
open(p, "wb").write(bytes(b))
EOF
}

K="$WORK/keys"
R="$WORK/repo"
S="$WORK/src"
M="$WORK/device/metadata"
mkdir -p "$K" "$S"

# ---- publisher: keys, repository, targets -------------------------------
for role in root targets snapshot timestamp timestamp2 releases; do
    lp keygen --out "$K/$role.pem" >"$K/$role.id" 2>/dev/null
done
[ "$(stat -c %a "$K/root.pem")" = 600 ] || die "private key file is not mode 0600"
ok "keygen: six ed25519 keys (private 0600 + .pub.json), ids $(cut -c1-8 "$K/root.id")..."
TS1_ID=$(cat "$K/timestamp.id")

rc=0
lp repo create "$R" --root-key "$K/root.pem" >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || die "repo create without all role keys: exit $rc, expected 2"
ok "repo create without all role keys is a usage error (exit 2)"

lp repo create "$R" --root-key "$K/root.pem" --targets-key "$K/targets.pem" \
    --snapshot-key "$K/snapshot.pem" --timestamp-key "$K/timestamp.pem" >/dev/null
ok "repo create: version 1 published"

printf 'hello, world: release 1\n' >"$S/hello.txt"
head -c 5000 /dev/urandom >"$S/tool"
printf 'release notes for 1.0\n' >"$S/notes.txt"
ONLINE=(--key "$K/snapshot.pem" --key "$K/timestamp.pem")
lp repo add-target "$R" hello.txt "$S/hello.txt" --custom '{"version":"1.0.0"}' \
    --key "$K/targets.pem" "${ONLINE[@]}" >/dev/null
lp repo add-target "$R" app/bin/tool "$S/tool" --sha512 --key "$K/targets.pem" "${ONLINE[@]}" \
    >/dev/null
lp repo delegate "$R" targets releases --path 'releases/*' --terminating \
    --delegate-key "$K/releases.pem.pub.json" \
    --key "$K/targets.pem" --key "$K/releases.pem" "${ONLINE[@]}" >/dev/null
lp repo add-target "$R" releases/notes.txt "$S/notes.txt" --role releases \
    --key "$K/releases.pem" "${ONLINE[@]}" >/dev/null
ok "repo: targets hello.txt, app/bin/tool (sub-folder), releases/notes.txt (delegated role)"

# ---- a plain static web server ------------------------------------------
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
python3 -m http.server --bind 127.0.0.1 --directory "$R" "$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
MURL="http://127.0.0.1:$PORT/metadata"
TURL="http://127.0.0.1:$PORT/targets"
for _ in $(seq 1 100); do
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
        "$MURL/1.root.json" 2>/dev/null; then
        break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || die "the web server exited: $(cat "$WORK/server.log")"
    sleep 0.1
done
python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
    "$MURL/1.root.json" || die "the web server does not answer on port $PORT"
ok "python3 -m http.server serves $R on 127.0.0.1:$PORT"

# ---- device: first root, refresh, downloads -----------------------------
lp tuf init --metadata-dir "$M" --root "$R/metadata/1.root.json" >/dev/null
ok "tuf init: trusts 1.root.json"
expect_refreshed
download_and_compare hello.txt="$S/hello.txt" app/bin/tool="$S/tool" \
    releases/notes.txt="$S/notes.txt"

# ---- update: new content and a rotated timestamp key ---------------------
printf 'hello, world: release 2\n' >"$S/hello2.txt"
lp repo add-target "$R" hello.txt "$S/hello2.txt" --custom '{"version":"2.0.0"}' \
    --key "$K/targets.pem" "${ONLINE[@]}" >/dev/null
lp repo add-key "$R" timestamp --pub "$K/timestamp2.pem.pub.json" \
    --key "$K/root.pem" --key "$K/timestamp2.pem" >/dev/null
lp repo remove-key "$R" timestamp "$TS1_ID" --key "$K/root.pem" --key "$K/timestamp2.pem" >/dev/null
[ "$(role_version root)" = 3 ] || die "root version $(role_version root) after two key edits, expected 3"
ok "published hello.txt release 2 and rotated the timestamp key (root v3)"
expect_fail "publishing with the retired timestamp key" "role timestamp" \
    lp repo publish "$R" --key "$K/timestamp.pem"
expect_refreshed
download_and_compare hello.txt="$S/hello2.txt" releases/notes.txt="$S/notes.txt"

# ---- attacks a static mirror can mount -----------------------------------
SHA=$(sha256sum "$S/hello2.txt" | cut -d' ' -f1)
SERVED="$R/targets/$SHA.hello.txt"
[ -f "$SERVED" ] || die "expected the served file $SERVED"
cp "$SERVED" "$WORK/served.bak"
flip_byte "$SERVED"
expect_fail "tampered target file" "hash" \
    lp tuf download --metadata-dir "$M" --metadata-url "$MURL" --targets-url "$TURL" \
    --out "$WORK/tampered" hello.txt
[ ! -e "$WORK/tampered/hello.txt" ] || die "the tampered file was written"
ok "nothing was written for the tampered file"
cp "$WORK/served.bak" "$SERVED"

expect_fail "a target name nobody signed" "not found|no role|not listed|does not list" \
    lp tuf download --metadata-dir "$M" --metadata-url "$MURL" --targets-url "$TURL" \
    --out "$WORK/missing" no-such-file.txt

lp repo expire "$R" timestamp --key "$K/timestamp2.pem" -- -1 >/dev/null
expect_fail "an expired timestamp (freeze)" "expired" \
    lp tuf refresh --metadata-dir "$M" --metadata-url "$MURL"
lp repo publish "$R" --key "$K/timestamp2.pem" >/dev/null
expect_refreshed

cp "$R/metadata/timestamp.json" "$WORK/old-timestamp.json"
lp repo publish "$R" --key "$K/timestamp2.pem" >/dev/null
expect_refreshed
cp "$WORK/old-timestamp.json" "$R/metadata/timestamp.json"
expect_fail "an older timestamp put back (rollback)" "rollback|lower than" \
    lp tuf refresh --metadata-dir "$M" --metadata-url "$MURL"

echo "tuf_static_http: $CHECKS checks passed"
echo "$CHECKS passed, 0 failed"
