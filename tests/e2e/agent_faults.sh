#!/usr/bin/env bash
# agent_faults.sh — what goes wrong on the way to a device, against the real
# server, with the real `livepush agent`:
#   1. a tampered blob: the file of one blob in the server's data folder
#      (DATA/blobs/<2 hex>/<sha256>, the sha256 of the changed file) gets one
#      byte flipped.  The agent refuses it (hash mismatch naming the blob),
#      keeps nothing of it (no partial download, no staging, no release),
#      leaves the current release exactly as it was, records the error and
#      reports a failed event.  With the blob repaired the next tick installs;
#   2. a download killed half way: the agent fetches a 24 MB blob through a
#      slow relay (a small Python TCP proxy, 3 MB/s) and is killed with
#      SIGKILL once part of it is on disk.  The next run (straight to the
#      server) resumes: the server's request log (field "bytes" of each
#      "request" line) shows the blob's remaining bytes only — the sum over
#      every completed request for it equals size minus what was kept — and
#      a 206 answer; the release is installed intact;
#   3. disk full during staging: a 2 MB tmpfs as install root in a private
#      mount namespace (unshare -m; skipped where that is not allowed), a
#      small release installed on it, then one with a 3 MB file: refused
#      before anything is written (LP_ERR_TOO_LARGE "needs N bytes, M free on
#      the file system of ..."), current untouched, nothing left over.  The
#      same refusal through --reserve-bytes runs everywhere.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
. "$LP_SOURCE_DIR/tests/support/device_e2e.sh"
e2e_begin faults python3 sha256sum
E2E_PID_VARS="AGENT_PID PROXY_PID"
AGENT_PID=""
PROXY_PID=""
unset LIVEPUSH_APP LIVEPUSH_ROOT LIVEPUSH_CHANNEL LIVEPUSH_CRASH_AT LIVEPUSH_AGENT_CONFIG
device_setup

# leftovers: dies if a staging folder, trash or partial download is left.
no_leftovers() {
    local n
    n=$(find "$ROOT/.livepush/staging" "$ROOT/.livepush/trash" "$ROOT/.livepush/downloads" \
        -mindepth 1 2>/dev/null | wc -l)
    [ "$n" = 0 ] || die "left over: $(find "$ROOT/.livepush/staging" "$ROOT/.livepush/trash" "$ROOT/.livepush/downloads" -mindepth 1)"
}

mk_release v1 0
publish v1
agent_once || die "agent --once (v1): exit $?"
current_is v1
ok "v1 installed"

# ---- 1. a tampered blob ------------------------------------------------------------------
head -c 5000 /dev/urandom >"$WORK/unique.bin"
mk_release v2 0 "unique.bin=$(base64 -w0 "$WORK/unique.bin")"
publish v2
SHA=$(sha256sum "$WORK/src/v2/unique.bin" | cut -d' ' -f1)
BLOB=$DATA/blobs/${SHA:0:2}/$SHA
[ -f "$BLOB" ] || die "no blob file at $BLOB"
cp -p "$BLOB" "$WORK/blob.orig"
python3 - "$BLOB" <<'PYEOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x01
open(p, "wb").write(bytes(b))
PYEOF
rc=0
agent_once || rc=$?
[ "$rc" = 1 ] || die "agent with a tampered blob: exit $rc"
current_is v1
no_leftovers
[ ! -e "$ROOT/releases/2" ] || die "release 2 installed from a tampered blob"
msg=$(status_py 'd["last_error"]["message"]')
grep -q "$SHA" <<<"$msg" && grep -qi "sha-256\|hash" <<<"$msg" || die "last error: $msg"
server_events | jq_py '[e["reason"] for e in d["events"] if e["type"] == "failed" and e["version_code"] == 2]' >"$WORK/f"
grep -q "$SHA" "$WORK/f" || die "failed event: $(cat "$WORK/f")"
cp -p "$WORK/blob.orig" "$BLOB"
agent_once || die "agent with the blob repaired: exit $?"
current_is v2
dev mark-healthy >/dev/null
ok "tampered blob refused (hash mismatch naming it), nothing kept, v1 untouched, failed event sent; installed once repaired"

# ---- 2. a download killed half way resumes --------------------------------------------------
SIZE=$((24 * 1024 * 1024))
head -c "$SIZE" /dev/urandom >"$WORK/big.bin"
mk_release v3 0
cp "$WORK/big.bin" "$WORK/src/v3/big.bin"
publish v3
BIG=$(sha256sum "$WORK/big.bin" | cut -d' ' -f1)
cat >"$WORK/proxy.py" <<'PYEOF'
# A TCP relay to 127.0.0.1:PORT that sends the answers at RATE bytes/s.
import socket, sys, threading, time
port, rate = int(sys.argv[1]), int(sys.argv[2])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0))
ls.listen(16)
print(ls.getsockname()[1], flush=True)
def pipe(src, dst, limit):
    try:
        while True:
            data = src.recv(16384)
            if not data:
                break
            dst.sendall(data)
            if limit:
                time.sleep(len(data) / limit)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = ls.accept()
    u = socket.create_connection(("127.0.0.1", port))
    threading.Thread(target=pipe, args=(c, u, 0), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c, rate), daemon=True).start()
PYEOF
PORT=${URL##*:}
python3 "$WORK/proxy.py" "$PORT" $((3 * 1024 * 1024)) >"$WORK/proxy.out" &
PROXY_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/proxy.out" ] && break; sleep 0.05; done
PURL=http://127.0.0.1:$(head -1 "$WORK/proxy.out")
"$LP_BIN" agent --once --server "$PURL" --root "$ROOT" --jitter 0 2>>"$WORK/agent.err" &
AGENT_PID=$!
PART=$ROOT/.livepush/downloads/$BIG.part
for _ in $(seq 1 300); do
    [ -f "$PART" ] && [ "$(stat -c %s "$PART")" -ge $((6 * 1024 * 1024)) ] && break
    kill -0 "$AGENT_PID" 2>/dev/null || die "agent ended before it was killed"
    sleep 0.05
done
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
AGENT_PID=""
e2e_stop "$PROXY_PID"
PROXY_PID=""
KEPT=$(stat -c %s "$PART")
[ "$KEPT" -gt 0 ] && [ "$KEPT" -lt "$SIZE" ] || die "partial download: $KEPT of $SIZE bytes"
current_is v2
sleep 0.5
agent_once || die "agent after the kill: exit $?"
current_is v3
no_leftovers
python3 - "$WORK/server.err" "$BIG" "$SIZE" "$KEPT" <<'PYEOF' || die "bytes served for the blob"
import json, sys
log, sha, size, kept = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
reqs = []
for line in open(log):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if r.get("msg") == "request" and r.get("path") == "/v1/blobs/" + sha:
        reqs.append(r)
done = [r for r in reqs if not r.get("aborted")]
total = sum(r["bytes"] for r in done)
print("   requests for the blob: %s; bytes of completed ones: %d; kept %d of %d"
      % ([(r["status"], r["bytes"], bool(r.get("aborted"))) for r in reqs], total, kept, size))
assert any(r.get("aborted") for r in reqs), reqs
assert total == size - kept, (total, size - kept)
assert [r["status"] for r in done] == [206], done
PYEOF
ok "download killed after $KEPT of $SIZE bytes: the rerun asked for the rest only (one 206 of $((SIZE - KEPT)) bytes), v3 intact"
dev mark-healthy >/dev/null

# ---- 3. disk full during staging --------------------------------------------------------------
mk_release t1 0
publish t1 --channel tiny
head -c $((3 * 1024 * 1024)) /dev/urandom >"$WORK/huge.bin"
mk_release h1 0
cp "$WORK/huge.bin" "$WORK/src/h1/huge.bin"
publish h1 --channel huge

# Through the reserve, anywhere: the huge release needs more than is free.
rc=0
agent_once --channel huge --reserve-bytes 1125899906842624 || rc=$?
[ "$rc" = 1 ] || die "agent with a reserve larger than the disk: exit $rc"
current_is v3
no_leftovers
msg=$(status_py 'd["last_error"]["message"]')
grep -q "needs [0-9]* bytes, [0-9]* free on the file system of $ROOT (1125899906842624 of them kept in reserve)" <<<"$msg" ||
    die "reserve message: $msg"
ok "not enough space (through --reserve-bytes): refused before writing, v3 untouched: $msg"

if unshare -m true 2>/dev/null; then
    SMALL=$WORK/small
    mkdir -p "$SMALL"
    cat >"$WORK/ns.sh" <<'EOF'
set -u
mount -t tmpfs -o size=2m tmpfs "$SMALL" || exit 77
R=$SMALL/root
a() { "$LP_BIN" agent --once --server "$URL" --root "$R" --trusted-root "$ROOTJSON" --jitter 0 \
      --reserve-bytes 4096 "$@" 2>>"$WORK/ns-agent.err"; }
a --channel tiny || { echo "tiny: exit $?"; exit 1; }
"$LP_BIN" device status --root "$R" --json >"$WORK/ns-before.json"
rc=0
a --channel huge || rc=$?
echo "huge: exit $rc"
"$LP_BIN" device status --root "$R" --json >"$WORK/ns-after.json"
python3 - "$R/current/" "$WORK/src/t1" <<'PY' || { echo "current changed"; exit 1; }
import filecmp, sys
c = filecmp.dircmp(sys.argv[1], sys.argv[2])
assert not (c.left_only or c.right_only or c.diff_files), (c.left_only, c.right_only, c.diff_files)
PY
find "$R/.livepush/staging" "$R/.livepush/downloads" -mindepth 1 | head -3 >"$WORK/ns-left"
ls "$R/releases" >"$WORK/ns-releases"
df -k "$SMALL" | tail -1 >"$WORK/ns-df"
umount "$SMALL"
EOF
    rc=0
    SMALL=$SMALL LP_BIN=$LP_BIN URL=$URL ROOTJSON=$ROOTJSON WORK=$WORK unshare -m bash "$WORK/ns.sh" \
        >"$WORK/ns.out" 2>&1 || rc=$?
    if [ "$rc" = 77 ]; then
        echo "   no tmpfs in a private mount namespace here: skipped (the --reserve-bytes case covers the check)"
    else
        [ "$rc" = 0 ] || die "namespace run: exit $rc: $(cat "$WORK/ns.out")"
        grep -q "huge: exit 1" "$WORK/ns.out" || die "huge release on a full disk: $(cat "$WORK/ns.out")"
        [ ! -s "$WORK/ns-left" ] || die "left over on the tmpfs: $(cat "$WORK/ns-left")"
        [ "$(cat "$WORK/ns-releases")" = "$(jq_py 'd["current"]["id"]' <"$WORK/ns-before.json")" ] ||
            die "releases on the tmpfs: $(cat "$WORK/ns-releases")"
        msg=$(jq_py 'd["last_error"]["message"]' <"$WORK/ns-after.json")
        grep -q "staging release [0-9]*: needs [0-9]* bytes, [0-9]* free on the file system of $SMALL/root" <<<"$msg" ||
            die "tmpfs message: $msg"
        ok "disk full on a 2 MB tmpfs: the 3 MB release refused before writing, t1 current and intact: $msg"
    fi
else
    echo "   unshare -m is not allowed here: the tmpfs case is skipped (the --reserve-bytes case covers the check)"
fi

stop_server
echo "all $CHECKS checks passed"
