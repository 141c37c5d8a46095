#!/usr/bin/env bash
# serve_static.sh — `livepush serve` as a real process on loopback.
#
# A repository written with `livepush repo` is placed under
# DATA/repos/demo/ and served by `livepush serve --listen 127.0.0.1:0`; the
# port is read from its "listening on" line.  Checked with curl: a metadata
# file byte for byte, its ETag answered with 304, a target, the JSON error
# of a missing file; `livepush tuf` refreshes and downloads through the
# server.  Then SIGTERM arrives while a rate-limited download of a large
# file is in flight: the download must complete intact and the server exit
# 0.  The command line itself: --help (exit 0, every option with its
# environment variable), a bad flag (exit 2), a config file with an unknown
# key (exit 2, naming the key), a port already in use (exit 1), a second
# server on the same data folder (exit 1), and the
# environment supplying the data folder over the config file.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
e2e_begin serve curl python3
E2E_PID_VARS="CURL_PID"

# ---- the command line ----------------------------------------------------
lp serve --help >"$WORK/help"
for opt in --config --listen --data-dir --threads --max-connections --log-format \
    LIVEPUSH_LISTEN LIVEPUSH_DATA_DIR LIVEPUSH_THREADS 127.0.0.1:8080 ./livepush-data; do
    grep -qF -- "$opt" "$WORK/help" || die "serve --help does not mention $opt"
done
ok "serve --help: exit 0, every option with its environment variable and default"

rc=0
lp serve --no-such-flag >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || die "a bad flag: exit $rc, expected 2"
rc=0
lp serve --threads many >/dev/null 2>"$WORK/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q -- "--threads" "$WORK/err" || die "a bad value: exit $rc, expected 2"
ok "a bad flag and a bad value are usage errors (exit 2)"

printf '{"listen":"127.0.0.1:0","colour":"blue"}\n' >"$WORK/bad.json"
rc=0
lp serve --config "$WORK/bad.json" >/dev/null 2>"$WORK/err" || rc=$?
[ "$rc" -eq 2 ] || die "config with an unknown key: exit $rc, expected 2"
grep -q "unknown key 'colour'" "$WORK/err" || die "the message does not name the key: $(cat "$WORK/err")"
ok "config file with an unknown key: exit 2, $(cat "$WORK/err")"

# ---- a repository to serve -------------------------------------------------
D="$WORK/data"
R="$D/repos/demo"
K="$WORK/keys"
mkdir -p "$K" "$WORK/src"
for role in root targets snapshot timestamp; do
    lp keygen --out "$K/$role.pem" >/dev/null 2>&1
done
lp repo create "$R" --root-key "$K/root.pem" --targets-key "$K/targets.pem" \
    --snapshot-key "$K/snapshot.pem" --timestamp-key "$K/timestamp.pem" >/dev/null
printf 'hello from the server\n' >"$WORK/src/hello.txt"
lp repo add-target "$R" hello.txt "$WORK/src/hello.txt" --key "$K/targets.pem" \
    --key "$K/snapshot.pem" --key "$K/timestamp.pem" >/dev/null
head -c $((48 * 1024 * 1024)) /dev/urandom >"$R/targets/big.bin"
ok "repository written under $D/repos/demo"

# ---- serving -----------------------------------------------------------------
printf '{"data_dir":"/nonexistent","threads":2}\n' >"$WORK/serve.json"
# the file says /nonexistent; the environment (which wins over it) says $D
LIVEPUSH_DATA_DIR="$D" start_server --config "$WORK/serve.json" --listen 127.0.0.1:0
case "$URL" in http://127.0.0.1:[0-9]*) ;; *) die "unexpected URL '$URL'" ;; esac
ok "listening on $URL"

rc=0
lp serve --listen "127.0.0.1:${URL##*:}" --data-dir "$WORK/other" >/dev/null 2>"$WORK/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "cannot listen" "$WORK/err" || die "a port in use: exit $rc, expected 1"
rc=0
lp serve --listen 127.0.0.1:0 --data-dir "$D" >/dev/null 2>"$WORK/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "in use by another livepush server" "$WORK/err" ||
    die "a second server on the same data folder: exit $rc, expected 1 ($(cat "$WORK/err"))"
ok "a second server on the same data folder is refused"
ok "a second server on the same port: exit 1, $(grep -o 'cannot listen.*' "$WORK/err")"

MURL="$URL/v1/apps/demo/metadata"
TURL="$URL/v1/apps/demo/targets"
[ "$(curl -sf "$URL/healthz")" = '{"status":"ok"}' ] || die "/healthz"
curl -sf -D "$WORK/h1" -o "$WORK/ts.json" "$MURL/timestamp.json" || die "GET timestamp.json"
cmp "$WORK/ts.json" "$R/metadata/timestamp.json" || die "timestamp.json differs"
ETAG=$(sed -n 's/^[Ee][Tt][Aa][Gg]: *//p' "$WORK/h1" | tr -d '\r')
[ -n "$ETAG" ] || die "no ETag on timestamp.json"
ok "GET timestamp.json: identical to the file, ETag $ETAG"

code=$(curl -s -o "$WORK/empty" -w '%{http_code}' -H "If-None-Match: $ETAG" "$MURL/timestamp.json")
[ "$code" = 304 ] && [ ! -s "$WORK/empty" ] || die "If-None-Match: got $code"
ok "If-None-Match with the ETag: 304, no body"

code=$(curl -s -o "$WORK/err.json" -w '%{http_code}' "$MURL/7.nothing.json")
[ "$code" = 404 ] || die "missing file: $code"
python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["code"]=="not_found" and e["message"]' \
    "$WORK/err.json" || die "404 body is not the error shape: $(cat "$WORK/err.json")"
ok "missing file: 404 $(cat "$WORK/err.json")"

M="$WORK/device"
lp tuf init --metadata-dir "$M" --root "$R/metadata/1.root.json" >/dev/null 2>&1 ||
    die "tuf init"
lp tuf download --metadata-dir "$M" --metadata-url "$MURL" --targets-url "$TURL" \
    --out "$WORK/dl" hello.txt >/dev/null || die "tuf download through the server"
cmp "$WORK/dl/hello.txt" "$WORK/src/hello.txt" || die "downloaded hello.txt differs"
ok "livepush tuf: refresh and download through the server"

# ---- SIGTERM with a download in flight ----------------------------------------
curl -sf --limit-rate 12M -o "$WORK/big.out" "$TURL/big.bin" &
CURL_PID=$!
for _ in $(seq 1 500); do
    [ -s "$WORK/big.out" ] && break
    sleep 0.02
done
[ -s "$WORK/big.out" ] || die "the slow download did not start"
stop_server
ok "SIGTERM during a download: the server exited 0"
rc=0
wait "$CURL_PID" || rc=$?
[ "$rc" -eq 0 ] || die "the download in flight failed (curl exit $rc)"
cmp "$WORK/big.out" "$R/targets/big.bin" || die "the download in flight is not intact"
ok "the download in flight completed intact (48 MiB)"
curl -s -o /dev/null "$URL/healthz" && die "still answering after shutdown"
ok "no longer listening"

python3 - "$WORK/server.err" <<'PYEOF' || die "the log is not JSON lines with request fields"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
reqs = [l for l in lines if l["msg"] == "request"]
assert reqs, "no request lines"
for l in lines:
    assert {"ts", "level", "msg"} <= l.keys(), l
for r in reqs:
    assert {"request_id", "method", "path", "status", "bytes", "duration_ms", "remote"} <= r.keys(), r
big = [r for r in reqs if r["path"].endswith("/big.bin")]
assert big and big[0]["status"] == 200 and big[0]["bytes"] == 48 * 1024 * 1024, big
assert not big[0].get("aborted"), big
down = [l for l in lines if l["msg"] == "shutting down"]
assert down and down[0]["in_flight"] >= 1, down  # the download was still being sent
assert any(l["msg"] == "stopped" for l in lines)
PYEOF
ok "log: JSON lines; each request with id, method, path, status, bytes, duration, remote"

echo "serve_static: $CHECKS checks passed"
