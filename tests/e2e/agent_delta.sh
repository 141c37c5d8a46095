#!/usr/bin/env bash
# agent_delta.sh — deltas between releases, end to end: the real server makes
# them in the background after a publish, the real `livepush agent` uses them.
#   1. v1 carries a real executable (a copy of an ELF from /usr/bin) and a
#      100 KB text file; v2 changes the executable as a code change would (96
#      bytes inserted, a few changed) and a few lines of the text.  Once the
#      server's index for 1 -> 2 is complete, a device on v1 updates to v2 by
#      deltas: its tick line counts two files made from deltas and no
#      fallback, its tree is exactly v2, the server's request log shows
#      the bytes sent for v2's blobs and deltas far below the changed files'
#      sizes (no request for their blobs at all), and the "downloaded" event
#      the server stores has the figures as fields (files_delta 2,
#      delta_fallbacks 0, bytes far below the changed files' sizes, no
#      reason), shown by `livepush events` too;
#   2. the delta of the text file is corrupted in DATA/deltas/ (one byte
#      flipped); a second device, a copy of the first one on v1, falls back
#      to the full blob by itself: it installs v2 exactly, logs "delta fell
#      back" naming the file, counts the fallback in its tick line and
#      reports it in the "downloaded" event the server stores
#      (delta_fallbacks 1, the reason naming the file);
#   3. with --deltas false a third device never asks for the index.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
. "$LP_SOURCE_DIR/tests/support/device_e2e.sh"
e2e_begin agentdelta python3 sha256sum
unset LIVEPUSH_APP LIVEPUSH_ROOT LIVEPUSH_CHANNEL LIVEPUSH_CRASH_AT LIVEPUSH_AGENT_CONFIG \
    LIVEPUSH_DELTAS
device_setup

ELF=""
for f in /usr/bin/ls /usr/bin/cp /usr/bin/sort /usr/bin/tar; do
    [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 65536 ] && { ELF=$f; break; }
done
[ -n "$ELF" ] || die "no executable to test with"

python3 - "$WORK/text1" "$WORK/text2" <<'PYEOF'
import sys
lines = ["%05d the quick brown fox jumps over the lazy dog, %d times\n" % (i, i * 7 % 13)
         for i in range(2000)]
open(sys.argv[1], "w").write("".join(lines))
for i in (100, 901, 1500):
    lines[i] = lines[i].replace("quick brown fox", "slow red cat")
open(sys.argv[2], "w").write("".join(lines) + "".join("appended %d\n" % i for i in range(20)))
PYEOF
python3 - "$ELF" "$WORK/tool2" <<'PYEOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
at = len(b) * 2 // 5
b[at:at] = bytes(0x90 + i % 7 for i in range(96))
for k in range(1, 8):
    b[len(b) * k // 9] ^= 0x5a
open(sys.argv[2], "wb").write(bytes(b))
PYEOF

mk_release v1 0
cp "$ELF" "$WORK/src/v1/bin/tool"
cp "$WORK/text1" "$WORK/src/v1/share/text.txt"
publish v1
ROOT_A=$ROOT
for ROOT in "$ROOT_A" "$WORK/root-b" "$WORK/root-c"; do
    agent_once || die "agent --once (v1 on $ROOT): exit $?"
    current_is v1
done
ROOT=$ROOT_A
ok "v1 installed (an executable of $(stat -c %s "$ELF") bytes, a text of $(stat -c %s "$WORK/text1") bytes)"

mk_release v2 0
cp "$WORK/tool2" "$WORK/src/v2/bin/tool"
chmod 755 "$WORK/src/v2/bin/tool"
cp "$WORK/text2" "$WORK/src/v2/share/text.txt"
publish v2
FROM=$(status_py 'd["current"]["id"] if isinstance(d["current"], dict) else d["current"]')
TO=$((FROM + 1))
INDEX_URL=$URL/v1/apps/default/deltas/$FROM/$TO.json
complete=""
for _ in $(seq 1 600); do
    complete=$(python3 - "$INDEX_URL" <<'PYEOF' || true
import json, sys, urllib.request
try:
    d = json.load(urllib.request.urlopen(sys.argv[1]))
    print("yes" if d["complete"] else "no")
except Exception as e:
    print("no")
PYEOF
)
    [ "$complete" = yes ] && break
    sleep 0.1
done
[ "$complete" = yes ] || die "the server's index $INDEX_URL never became complete"
TOOL_SHA=$(sha256sum "$WORK/tool2" | cut -d' ' -f1)
TEXT_SHA=$(sha256sum "$WORK/text2" | cut -d' ' -f1)
curl_index=$(python3 -c "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())" "$INDEX_URL")
grep -q "$TOOL_SHA" <<<"$curl_index" && grep -q "$TEXT_SHA" <<<"$curl_index" ||
    die "the index lists no delta for the changed files: $curl_index"
ok "the server made the deltas $FROM -> $TO: $curl_index"

# ---- 1. v1 -> v2 by deltas ------------------------------------------------------------------
MARK=$(wc -l <"$WORK/server.err")
: >"$WORK/agent.err"
agent_once --log-level debug || die "agent --once (v2): exit $?"
current_is v2
python3 - "$WORK/agent.err" <<'PYEOF' || die "tick line: $(grep '"tick"' "$WORK/agent.err")"
import json, sys
ticks = [json.loads(l) for l in open(sys.argv[1]) if '"tick"' in l]
t = ticks[-1]
print("   tick: files_delta=%s bytes_delta=%s bytes_delta_saved=%s delta_fallbacks=%s" %
      (t["files_delta"], t["bytes_delta"], t["bytes_delta_saved"], t["delta_fallbacks"]))
assert t["outcome"] == "activated", t
assert t["files_delta"] == 2 and t["delta_fallbacks"] == 0, t
assert t["bytes_delta"] * 5 < t["bytes_delta_saved"], t
PYEOF
python3 - "$WORK/server.err" "$MARK" "$TOOL_SHA" "$TEXT_SHA" "$WORK/tool2" "$WORK/text2" <<'PYEOF' ||
import json, os, sys
log, mark, tool, text = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
changed = os.path.getsize(sys.argv[5]) + os.path.getsize(sys.argv[6])
sent, blobs = 0, []
for n, line in enumerate(open(log)):
    if n < mark:
        continue
    try:
        r = json.loads(line)
    except ValueError:
        continue
    p = r.get("path", "")
    if r.get("msg") != "request":
        continue
    if p.startswith("/v1/blobs/") or p.startswith("/v1/deltas/"):
        sent += r.get("bytes", 0)
    if p in ("/v1/blobs/" + tool, "/v1/blobs/" + text):
        blobs.append(p)
print("   bytes sent for blobs and deltas: %d; the changed files: %d bytes" % (sent, changed))
assert not blobs, blobs
assert sent * 5 < changed, (sent, changed)
PYEOF
    die "bytes served for v2"
ok "v1 -> v2 by deltas: the changed files' blobs never requested, the bytes sent far below their sizes"
server_events >"$WORK/events-a.json"
python3 - "$WORK/events-a.json" "$WORK/tool2" "$WORK/text2" <<'PYEOF' ||
import json, os, sys
d = json.load(open(sys.argv[1]))
changed = os.path.getsize(sys.argv[2]) + os.path.getsize(sys.argv[3])
e = [e for e in d["events"] if e["type"] == "downloaded" and e["version"] == "v2"][0]
print("   stored downloaded event: bytes=%s files_fetched=%s files_delta=%s "
      "bytes_delta_saved=%s delta_fallbacks=%s reason=%s" %
      (e["bytes"], e["files_fetched"], e["files_delta"], e["bytes_delta_saved"],
       e["delta_fallbacks"], e["reason"]))
assert e["files_delta"] == 2 and e["delta_fallbacks"] == 0, e
# the two changed files by delta, bin/app and notes.txt (a few bytes each) whole
assert e["files_fetched"] == 4, e
assert e["reason"] is None, e
assert 0 < e["bytes"] and e["bytes"] * 5 < changed, (e, changed)
assert changed < e["bytes"] + e["bytes_delta_saved"] < changed + 1024, (e, changed)
others = [x for x in d["events"] if x["type"] != "downloaded"]
assert others and all(x["bytes"] is None and x["files_delta"] is None for x in others), others
PYEOF
    die "the server's downloaded event of the first device: $(cat "$WORK/events-a.json")"
DEV_A=$(status_py 'd["device_id"]')
lp events --device "$DEV_A" --type downloaded >"$WORK/events-a.txt" ||
    die "livepush events: exit $?"
grep -q "FETCHED" "$WORK/events-a.txt" && grep -q ", 4 files (2 by delta)" "$WORK/events-a.txt" ||
    die "livepush events shows no download figures: $(cat "$WORK/events-a.txt")"
ok "the server stores the download's figures as fields of the downloaded event (files_delta 2, no fallback, bytes far below the changed files' sizes)"

# ---- 2. a corrupted delta: the second device falls back -------------------------------------
DFILE=$(find "$DATA/deltas" -type f -path "*/$TEXT_SHA" | head -1)
[ -n "$DFILE" ] || die "no delta file for the text in $DATA/deltas"
python3 - "$DFILE" <<'PYEOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x01
open(p, "wb").write(bytes(b))
PYEOF
ROOT=$WORK/root-b
: >"$WORK/agent.err"
agent_once || die "agent --once with a corrupted delta: exit $?"
current_is v2
grep '"delta fell back"' "$WORK/agent.err" | grep -q 'share/text.txt' ||
    die "no 'delta fell back' warning naming share/text.txt: $(cat "$WORK/agent.err")"
python3 - "$WORK/agent.err" <<'PYEOF' || die "tick line after the fallback"
import json, sys
t = [json.loads(l) for l in open(sys.argv[1]) if '"tick"' in l][-1]
assert t["outcome"] == "activated", t
assert t["files_delta"] == 1 and t["delta_fallbacks"] == 1, t
PYEOF
server_events >"$WORK/events.json"
python3 - "$WORK/events.json" <<'PYEOF' || die "the server's events of the second device: $(cat "$WORK/events.json")"
import json, sys
d = json.load(open(sys.argv[1]))
r = [e for e in d["events"] if e["type"] == "downloaded"]
hit = [e for e in r if e["delta_fallbacks"] == 1 and e["files_delta"] == 1 and
       (e["reason"] or "").startswith("share/text.txt: ")]
assert hit, r
print("   downloaded event: delta_fallbacks=%s files_delta=%s bytes=%s reason=%s" %
      (hit[0]["delta_fallbacks"], hit[0]["files_delta"], hit[0]["bytes"], hit[0]["reason"][:160]))
PYEOF
ok "a corrupted delta: the second device fell back to the full blob, installed v2 exactly, logged and reported the fallback"

# ---- 3. deltas turned off -----------------------------------------------------------------------
ROOT=$WORK/root-c
MARK=$(wc -l <"$WORK/server.err")
agent_once --deltas false || die "agent --once --deltas false: exit $?"
current_is v2
if tail -n +"$((MARK + 1))" "$WORK/server.err" | grep -q "/deltas/"; then
    die "--deltas false asked for deltas"
fi
ok "--deltas false: v2 installed without asking for the index"
stop_server
echo "all $CHECKS checks passed"
