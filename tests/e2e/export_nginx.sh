#!/usr/bin/env bash
# export_nginx.sh — `livepush export` served by a real nginx updates real
# devices end to end, with the livepush server stopped.
#
# A real `livepush serve` gets four releases through `livepush upload`: v1
# for everyone, v2 only for devices with region=eu (targeting), v3 staged
# with `--rollout 0` and then `livepush rollout set` to a share that takes
# exactly one of two devices in region us (its bucket + 1).  Three devices
# (A: eu; B, C: us) install v1 from the server; the server's delta worker
# makes the deltas 1->2, 1->3 and 2->3 (waited for through the index).
# Then:
#   1. `device check` against the server says which release each device
#      would get (A: v2 or v3 by its bucket; one of B and C v3, the other
#      nothing);
#   2. `livepush export` writes the repository; every pair is exported,
#      none pending; a second run writes nothing;
#   3. nginx (as the test user, config and logs in the temporary folder,
#      the cache headers of docs/export.md) serves the export, the
#      livepush server is stopped, and `livepush agent --once --server
#      http://nginx` installs on each device exactly what the server chose,
#      files made from deltas (the tick's figures, and delta requests in
#      nginx's access log), trees exactly the release; the agent says once
#      that the server is a static mirror and sends no telemetry, the tick
#      does not fail, the events stay queued;
#   4. with the server back, v4 (a new random file, a changed file) is
#      published; the export run again writes only new files (compared with
#      the folder before: nothing old is rewritten) and timestamp.json last
#      (write order and mtimes); a device whose partial download of the new
#      file is half there resumes it from nginx with a Range request (206),
#      and all devices reach v4 from nginx;
#   5. `livepush timestamp refresh --out --expires 2h` makes a timestamp
#      with the next version and an expiry two hours ahead, written alone
#      into the export; the agent accepts it (its trusted timestamp has the
#      new version); without the timestamp key on the machine the refresh
#      is refused and says why.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
. "$LP_SOURCE_DIR/tests/support/device_e2e.sh"
e2e_begin export_nginx python3 nginx curl sha256sum
unset LIVEPUSH_APP LIVEPUSH_ROOT LIVEPUSH_CHANNEL LIVEPUSH_CRASH_AT LIVEPUSH_AGENT_CONFIG \
    LIVEPUSH_ATTRIBUTES LIVEPUSH_DELTAS LIVEPUSH_REPORT LIVEPUSH_DATA_DIR
device_setup
EXPORT=$WORK/export
NGX=$WORK/nginx
NGINX_PID=""
E2E_PID_VARS="NGINX_PID"
E2E_LOGS="$WORK/server.err $WORK/agent.err $NGX/error.log"

# ---- content: an executable and a text that change a little per release -----------------
ELF=""
for f in /usr/bin/sort /usr/bin/ls /usr/bin/cp /usr/bin/tar; do
    [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 65536 ] && { ELF=$f; break; }
done
[ -n "$ELF" ] || die "no executable to test with"
python3 - "$ELF" "$WORK" <<'PYEOF'
import sys
elf = bytearray(open(sys.argv[1], "rb").read())
lines = ["%05d the quick brown fox jumps over the lazy dog, %d times\n" % (i, i * 7 % 13)
         for i in range(2000)]
for v in range(1, 5):
    for k in range(1, 4):
        elf[len(elf) * (k + 3 * v) // 17] ^= 0x5a
    lines[v * 300] = lines[v * 300].replace("quick brown fox", "slow red cat %d" % v)
    open("%s/tool%d" % (sys.argv[2], v), "wb").write(bytes(elf))
    open("%s/text%d" % (sys.argv[2], v), "w").write("".join(lines))
PYEOF
release() { # release NAME N [UPLOAD ARGS]: bundle with tool N, text N, and publish
    local name=$1 n=$2
    shift 2
    mk_release "$name" 0
    cp "$WORK/tool$n" "$WORK/src/$name/bin/tool"
    chmod 755 "$WORK/src/$name/bin/tool"
    cp "$WORK/text$n" "$WORK/src/$name/share/text.txt"
    [ -n "${EXTRA_FILE:-}" ] && cp "$EXTRA_FILE" "$WORK/src/$name/share/new.bin"
    publish "$name" "$@"
}
wait_pairs() { # wait_pairs FROM:TO...: until the server's indexes are complete
    local p
    for p in "$@"; do
        python3 - "$URL/v1/apps/default/deltas/${p%%:*}/${p##*:}.json" <<'PYEOF' ||
import json, sys, time, urllib.request
for _ in range(1200):
    try:
        if json.load(urllib.request.urlopen(sys.argv[1]))["complete"]:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit(1)
PYEOF
            die "the server's delta index ${p%%:*} -> ${p##*:} never became complete"
    done
}

ROOT_A=$WORK/device-a ROOT_B=$WORK/device-b ROOT_C=$WORK/device-c
attrs_of() { case $1 in "$ROOT_A") echo region=eu ;; *) echo region=us ;; esac; }
# run_agent ROOT SERVER [ARGS]: one tick (its log appended to agent.err and to
# agent-last.err), then the release it activated is confirmed healthy
run_agent() {
    local root=$1 server=$2 rc=0
    shift 2
    "$AGENT_BIN" agent --once --server "$server" --root "$root" --trusted-root "$ROOTJSON" \
        --jitter 0 --log-format json --attribute "$(attrs_of "$root")" "$@" \
        2>"$WORK/agent-last.err" || rc=$?
    cat "$WORK/agent-last.err" >>"$WORK/agent.err"
    [ "$rc" -eq 0 ] || die "agent --once on $root from $server: exit $rc: $(tail -3 "$WORK/agent-last.err")"
    "$AGENT_BIN" device mark-healthy --root "$root" >/dev/null 2>&1 || true
}
code_of() { "$AGENT_BIN" device status --root "$1" --json | jq_py 'd["current"]["id"] if d["current"] else 0'; }
# server_choice ROOT: the version code the server's repository offers the device (0: none)
server_choice() {
    "$AGENT_BIN" device check --json --server "$URL" --root "$1" --attribute "$(attrs_of "$1")" \
        2>/dev/null | jq_py 'd["version_code"] if d["available"] else 0'
}
bucket_of() { # bucket_of ROOT: the device's bucket for code 3 (v3 at 0%)
    "$AGENT_BIN" device check --verbose --server "$URL" --root "$1" --attribute "$(attrs_of "$1")" \
        2>&1 >/dev/null | sed -n 's/.*staged rollout of version code 3: this device.s bucket is \([0-9]*\) of 10000.*/\1/p'
}

# ---- releases, devices on v1, deltas --------------------------------------------------------
release v1 1
for r in "$ROOT_A" "$ROOT_B" "$ROOT_C"; do
    run_agent "$r" "$URL"
    [ "$(code_of "$r")" = 1 ] || die "$r is not on v1"
done
release v2 2 --attribute region=eu
release v3 3 --rollout 0
BB=$(bucket_of "$ROOT_B")
BC=$(bucket_of "$ROOT_C")
[ -n "$BB" ] && [ -n "$BC" ] || die "no buckets for B and C: '$BB' '$BC'"
[ "$BB" != "$BC" ] || die "B and C have the same bucket $BB (one chance in 10000): run again"
LOW=$((BB < BC ? BB : BC))
expect_rc 0 lp rollout set v3 "$(printf '%d.%02d' $(((LOW + 1) / 100)) $(((LOW + 1) % 100)))"
wait_pairs 1:2 1:3 2:3
for r in A B C; do
    v=ROOT_$r
    eval "WANT_$r=$(server_choice "${!v}")"
done
[ "$WANT_A" = 2 ] || [ "$WANT_A" = 3 ] || die "the server offers A $WANT_A"
[ "$WANT_B $WANT_C" = "3 0" ] || [ "$WANT_B $WANT_C" = "0 3" ] ||
    die "the server offers B $WANT_B and C $WANT_C: one should get v3, the other nothing"
offer() { if [ "$1" = 0 ]; then echo nothing; else echo "v$1"; fi; }
ok "the server chooses: A (eu) $(offer "$WANT_A"), B (us, bucket $BB) $(offer "$WANT_B"), C (us, bucket $BC) $(offer "$WANT_C") (rollout at $((LOW + 1)) bp); deltas 1->2, 1->3, 2->3 made"

# ---- 2. the export ------------------------------------------------------------------------
expect_rc 0 lp export default --out "$EXPORT" --data-dir "$DATA" --json
cp "$WORK/out" "$WORK/export1.json"
python3 - "$WORK/export1.json" "$EXPORT" <<'PYEOF' || die "first export: $(cat "$WORK/export1.json")"
import json, os, sys
d = json.load(open(sys.argv[1]))
w = [x["path"] for x in d["written"]]
assert d["releases"] == 3 and d["delta_pairs"] == 3 and d["delta_pairs_pending"] == 0, d
assert d["deltas"] >= 6 and d["deltas_missing"] == 0, d
assert w[-1] == "v1/apps/default/metadata/timestamp.json", w[-3:]
assert d["files_written"] == len(w) and d["files_kept"] == 0, d
for p in ("v1/apps/default/mirror.json", "v1/apps/default/metadata/1.root.json",
          "v1/apps/default/metadata/root.json", "v1/apps/default/deltas/1/3.json",
          "v1/apps/default/deltas/2/3.json"):
    assert p in w, p
assert sum(1 for p in w if p.startswith("v1/blobs/")) == d["blobs"], d
assert sum(1 for p in w if p.startswith("v1/deltas/")) == d["deltas"], d
print("   first export: %d files, %d blobs, %d deltas in %d pairs, %d bytes" %
      (len(w), d["blobs"], d["deltas"], d["delta_pairs"], d["bytes_written"]))
PYEOF
# the same bytes as the server serves, for every file of the export
python3 - "$EXPORT" "$URL" <<'PYEOF' || die "the export differs from what the server serves"
import os, sys, urllib.request
top, url = sys.argv[1], sys.argv[2]
n = 0
for dirpath, dirs, files in os.walk(top):
    for f in files:
        rel = os.path.relpath(os.path.join(dirpath, f), top)
        if rel.endswith("/mirror.json"):
            continue
        got = urllib.request.urlopen(url + "/" + rel).read()
        assert got == open(os.path.join(top, rel), "rb").read(), rel
        n += 1
print("   %d files byte for byte as the server serves them" % n)
PYEOF
expect_rc 0 lp export default --out "$EXPORT" --data-dir "$DATA" --json
[ "$(jq_py 'd["files_written"]' <"$WORK/out")" = 0 ] || die "a second export wrote: $(cat "$WORK/out")"
ok "export: 3 releases, 3 delta pairs, timestamp.json last, the server's bytes; run again, nothing written"

# ---- 3. nginx serves it; the server is stopped ----------------------------------------------
mkdir -p "$NGX/tmp"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user $(id -un) $(id -gn);"
cat >"$NGX/nginx.conf" <<EOF
$USER_LINE
worker_processes 1;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 64; }
http {
    access_log $NGX/access.log;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    types { application/json json; }
    default_type application/octet-stream;
    sendfile on;
    server {
        listen 127.0.0.1:$PORT;
        root $EXPORT;
        # versioned metadata, targets, blobs, deltas: never change
        location /v1/ {
            add_header Cache-Control "public, max-age=31536000, immutable";
        }
        # the files that change in place: revalidate (nginx answers 304 by ETag)
        location ~ ^/v1/apps/[^/]+/(metadata/timestamp\.json|metadata/root\.json|mirror\.json|deltas/.+\.json)\$ {
            add_header Cache-Control "no-cache";
        }
    }
}
EOF
nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" -g 'daemon off;' 2>>"$NGX/error.log" &
NGINX_PID=$!
NGINX=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do
    curl -sf -o /dev/null "$NGINX/v1/apps/default/metadata/timestamp.json" && break
    kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited at start: $(cat "$NGX/error.log")"
    sleep 0.05
done
curl -sfI "$NGINX/v1/apps/default/metadata/timestamp.json" >"$WORK/h-ts" || die "nginx does not serve the export"
grep -qi '^cache-control: no-cache' "$WORK/h-ts" || die "timestamp.json headers: $(cat "$WORK/h-ts")"
BLOB=$(ls "$EXPORT/v1/blobs" | head -1)
curl -sfI "$NGINX/v1/blobs/$BLOB" >"$WORK/h-blob"
grep -qi '^cache-control: public, max-age=31536000, immutable' "$WORK/h-blob" || die "blob headers: $(cat "$WORK/h-blob")"
grep -qi '^etag:' "$WORK/h-blob" || die "nginx sends no ETag: $(cat "$WORK/h-blob")"
[ "$(curl -s -o /dev/null -w '%{http_code}' -r 10-19 "$NGINX/v1/blobs/$BLOB")" = 206 ] || die "nginx answers no Range"
stop_server
curl -s -o /dev/null "$URL/v1/apps/default/metadata/timestamp.json" && die "the livepush server still answers"
ok "nginx (as $(id -un), no root paths) serves the export with the documented cache headers, ETag and Range; the livepush server is stopped"

MARK=$(wc -l <"$NGX/access.log")
for r in A B C; do
    v=ROOT_$r want=WANT_$r
    from=$(code_of "${!v}")
    run_agent "${!v}" "$NGINX" --log-level debug
    got=$(code_of "${!v}")
    if [ "${!want}" = 0 ]; then
        [ "$got" = "$from" ] || die "device $r moved to $got from nginx; the server offered nothing"
    else
        [ "$got" = "${!want}" ] || die "device $r is on $got from nginx; the server offered ${!want}"
        ROOT=${!v}
        current_is "v$got"
        python3 - "$WORK/agent-last.err" <<'PYEOF' || die "device $r: tick line: $(grep '"tick"' "$WORK/agent-last.err")"
import json, sys
t = [json.loads(l) for l in open(sys.argv[1]) if '"tick"' in l][-1]
print("   tick: outcome=%s version=%s files_delta=%s bytes_delta=%s saved=%s fallbacks=%s" %
      (t["outcome"], t["version"], t["files_delta"], t["bytes_delta"], t["bytes_delta_saved"],
       t["delta_fallbacks"]))
assert t["outcome"] == "activated", t
assert t["files_delta"] == 2 and t["delta_fallbacks"] == 0, t
assert t["bytes_delta"] * 5 < t["bytes_delta_saved"], t
PYEOF
    fi
    n=$(grep -c '"no telemetry: static mirror"' "$WORK/agent-last.err" || true)
    [ "$n" = 1 ] || die "device $r: the agent said $n times that there is no telemetry: $(cat "$WORK/agent-last.err")"
    grep -q '"sending events failed"\|"update failed"' "$WORK/agent-last.err" &&
        die "device $r: the agent reports a failure: $(cat "$WORK/agent-last.err")"
    q=$("$AGENT_BIN" device status --root "${!v}" --json | jq_py 'd["events"]["queued"]')
    [ "$q" -gt 0 ] || die "device $r: no events stay queued"
done
grep '"no telemetry: static mirror"' "$WORK/agent-last.err" | head -1 | sed 's/^/   /'
tail -n +"$((MARK + 1))" "$NGX/access.log" >"$WORK/access-3.log"
python3 - "$WORK/access-3.log" <<'PYEOF' || die "nginx's access log: $(cat "$WORK/access-3.log")"
import re, sys
reqs = [re.search(r'"(\w+) (\S+) HTTP/[\d.]+" (\d+)', l).groups() for l in open(sys.argv[1])]
idx = [r for r in reqs if re.match(r"/v1/apps/default/deltas/\d+/\d+\.json$", r[1]) and r[2] == "200"]
dl = [r for r in reqs if r[1].startswith("/v1/deltas/") and r[2] == "200"]
posts = [r for r in reqs if r[0] == "POST" and r[1] == "/v1/apps/default/events"]
mirror = [r for r in reqs if r[1] == "/v1/apps/default/mirror.json" and r[2] == "200"]
print("   nginx: %d delta indexes and %d deltas served, %d event POSTs refused (%s), "
      "mirror.json read %d times" % (len(idx), len(dl), len(posts),
                                     ",".join(sorted(set(r[2] for r in posts))), len(mirror)))
assert len(idx) >= 2 and len(dl) >= 4, reqs
assert posts and all(r[2] in ("404", "405") for r in posts), posts
assert len(mirror) == 3, mirror
PYEOF
ok "from nginx only: each device got what the server chose (A $(offer "$WANT_A"), B $(offer "$WANT_B"), C $(offer "$WANT_C")), by deltas, trees exact; the agent said once per run that there is no telemetry"

# ---- 4. a new release; the export again -----------------------------------------------------
find "$EXPORT" -type f -printf '%P\n' | sort >"$WORK/before.txt"
start_server --listen 127.0.0.1:0 --data-dir "$DATA"
export LIVEPUSH_SERVER=$URL
head -c 300000 /dev/urandom >"$WORK/new.bin"
EXTRA_FILE=$WORK/new.bin release v4 4
wait_pairs 1:4 2:4 3:4
expect_rc 0 lp export default --out "$EXPORT" --data-dir "$DATA" --list
grep -v '^ ' "$WORK/out" | grep -v '^exported app' >"$WORK/written.txt"
find "$EXPORT" -type f -printf '%P\n' | sort >"$WORK/after.txt"
python3 - "$WORK/before.txt" "$WORK/after.txt" "$WORK/written.txt" "$EXPORT" "$WORK/new.bin" <<'PYEOF' ||
import hashlib, os, sys
before = set(open(sys.argv[1]).read().split())
after = set(open(sys.argv[2]).read().split())
written = open(sys.argv[3]).read().split()
top = sys.argv[4]
new_sha = hashlib.sha256(open(sys.argv[5], "rb").read()).hexdigest()
ts = "v1/apps/default/metadata/timestamp.json"
assert len(written) == len(set(written)), written
assert written[-1] == ts, written
assert set(written) - {ts} == after - before, (sorted(set(written) ^ (after - before)))
assert not (set(written) - {ts}) & before, "rewritten: %r" % sorted(set(written) & before)
assert "v1/blobs/" + new_sha in written, "the new file's blob"
assert any(p.startswith("v1/apps/default/deltas/") and p.endswith("/4.json") for p in written)
newest = max(os.stat(os.path.join(top, p)).st_mtime_ns for p in written[:-1])
assert os.stat(os.path.join(top, ts)).st_mtime_ns >= newest
kinds = {}
for p in written:
    k = p.split("/")[1] if not p.startswith("v1/apps/") else p.split("/")[3]
    k = "delta indexes" if p.startswith("v1/apps/") and k == "deltas" else k
    kinds[k] = kinds.get(k, 0) + 1
print("   second export wrote %d files, all new but timestamp.json (last): %s" %
      (len(written), ", ".join("%s %d" % kv for kv in sorted(kinds.items()))))
PYEOF
    die "the second export: $(cat "$WORK/out")"
ok "v4 published: the export again wrote only the new files, timestamp.json last (order and mtime)"

# B resumes a half-downloaded file from nginx with a Range request
NEW_SHA=$(sha256sum "$WORK/new.bin" | cut -d' ' -f1)
mkdir -p "$ROOT_B/.livepush/downloads"
head -c 150000 "$WORK/new.bin" >"$ROOT_B/.livepush/downloads/$NEW_SHA.part"
MARK=$(wc -l <"$NGX/access.log")
for r in A B C; do
    v=ROOT_$r
    run_agent "${!v}" "$NGINX"
    [ "$(code_of "${!v}")" = 4 ] || die "device $r did not reach v4 from nginx"
    ROOT=${!v}
    current_is v4
done
# (through a file: with pipefail, `tail | grep -q` fails when grep stops reading early)
tail -n +"$((MARK + 1))" "$NGX/access.log" >"$WORK/access-v4.log"
grep -q "GET /v1/blobs/$NEW_SHA HTTP/1.1\" 206 150000 " "$WORK/access-v4.log" ||
    die "no resumed (206, 150000 bytes) request for the new file: $(grep "$NEW_SHA" "$NGX/access.log")"
ok "all devices on v4 from nginx; B resumed its half-downloaded file with a Range request (206)"

# ---- 5. timestamp refresh -------------------------------------------------------------------
OLD_V=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["signed"]["version"])' \
    "$EXPORT/v1/apps/default/metadata/timestamp.json")
expect_rc 0 lp timestamp refresh default --data-dir "$DATA" --out "$EXPORT" --expires 2h --json
python3 - "$WORK/out" "$EXPORT" "$OLD_V" <<'PYEOF' || die "timestamp refresh: $(cat "$WORK/out")"
import calendar, json, sys, time
d = json.load(open(sys.argv[1]))
old = int(sys.argv[3])
ts = json.load(open(sys.argv[2] + "/v1/apps/default/metadata/timestamp.json"))["signed"]
exp = calendar.timegm(time.strptime(ts["expires"], "%Y-%m-%dT%H:%M:%SZ"))
assert d["timestamp_version"] == old + 1 == ts["version"], (d, ts)
assert abs(exp - time.time() - 7200) < 300, ts["expires"]
assert d["export"]["files_written"] == 1, d["export"]
assert d["export"]["written"][0]["path"] == "v1/apps/default/metadata/timestamp.json", d
print("   timestamp version %d -> %d, expires %s (in %.1f h); the export wrote only it" %
      (old, ts["version"], ts["expires"], (exp - time.time()) / 3600))
PYEOF
run_agent "$ROOT_A" "$NGINX"
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["signed"]["version"])' \
    "$ROOT_A/.livepush/metadata/timestamp.json")" = $((OLD_V + 1)) ] ||
    die "the device does not trust the refreshed timestamp"
mv "$DATA/keys/default/timestamp.pem" "$WORK/timestamp.pem"
expect_rc 1 lp timestamp refresh default --data-dir "$DATA" --out "$EXPORT"
grep -q "the timestamp key is not on this machine" "$WORK/err" || die "refusal: $(cat "$WORK/err")"
mv "$WORK/timestamp.pem" "$DATA/keys/default/timestamp.pem"
expect_rc 2 lp timestamp refresh default --data-dir "$DATA" --expires 10x
ok "timestamp refresh: version $((OLD_V + 1)), two hours, written alone and accepted by the agent; refused without the key"

stop_server
e2e_stop "$NGINX_PID"
NGINX_PID=""
echo "all $CHECKS checks passed"
