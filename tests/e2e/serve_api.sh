#!/usr/bin/env bash
# serve_api.sh — `livepush serve` as a real process, driven through its
# management API with curl.
#
# First start: the server says where the admin token is (never the token),
# the file is 0600, the default app exists.  Then: 401 without a token and
# with a wrong one; a real tar.gz bundle uploaded in two chunks (the second
# start offset read back from the server), published; the app's signed TUF
# repository lists the release and `livepush tuf download` fetches its tree
# manifest through the server, identical to the blob at /v1/blobs/<sha256>.
# A restart makes no new token and keeps the release.  Options reach the
# server: --default-app "" makes no app, and LIVEPUSH_MAX_BODY_BYTES bounds
# a chunk (413).
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
e2e_begin api curl python3

# json FILE EXPR: evaluates a Python expression over the JSON in FILE (as j).
json() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
# api METHOD PATH [curl args...]: the status code; the body goes to $WORK/body.
api() {
    local m=$1 p=$2
    shift 2
    curl -s -o "$WORK/body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN" "$@" \
        "$URL$p"
}

D="$WORK/data"
start_server --data-dir "$D" --listen 127.0.0.1:0
grep -qx "admin token written to $D/admin.token" "$WORK/server.out" ||
    die "no 'admin token written' line: $(cat "$WORK/server.out")"
[ "$(stat -c %a "$D/admin.token")" = 600 ] || die "admin.token is not 0600"
TOKEN=$(head -n 1 "$D/admin.token")
grep -qF "${TOKEN:16}" "$WORK/server.out" "$WORK/server.err" && die "the token secret was printed"
ok "first start: admin token in $D/admin.token (0600), not printed"

code=$(curl -s -o "$WORK/body" -w '%{http_code}' "$URL/api/v1/apps")
[ "$code" = 401 ] || die "no token: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${TOKEN:0:20}x" \
    "$URL/api/v1/apps")
[ "$code" = 401 ] || die "a wrong token: $code"
[ "$(api GET /api/v1/apps)" = 200 ] || die "GET /api/v1/apps: $(cat "$WORK/body")"
[ "$(json "$WORK/body" 'j["apps"][0]["name"]')" = default ] || die "no default app"
ok "401 without a token or with a wrong one; the default app exists"

# ---- upload a bundle in two chunks and publish it ---------------------------------
mkdir -p "$WORK/bundle/bin"
printf 'hello from v1\n' >"$WORK/bundle/hello.txt"
head -c 300000 /dev/urandom >"$WORK/bundle/bin/blob.bin"
tar -C "$WORK/bundle" -czf "$WORK/b.tgz" .
SIZE=$(stat -c %s "$WORK/b.tgz")
SUM=$(sha256sum "$WORK/b.tgz" | cut -c1-64)
[ "$(api POST /api/v1/apps/default/uploads -d "{\"size\":$SIZE,\"sha256\":\"$SUM\"}")" = 201 ] ||
    die "create upload: $(cat "$WORK/body")"
ID=$(json "$WORK/body" 'j["upload"]["id"]')
HALF=$((SIZE / 2))
head -c "$HALF" "$WORK/b.tgz" >"$WORK/c0"
tail -c +$((HALF + 1)) "$WORK/b.tgz" >"$WORK/c1"
[ "$(api PUT "/api/v1/uploads/$ID" -H "Content-Range: bytes 0-$((HALF - 1))/$SIZE" \
    --data-binary @"$WORK/c0")" = 200 ] || die "first chunk: $(cat "$WORK/body")"
[ "$(api GET "/api/v1/uploads/$ID")" = 200 ] || die "GET upload"
OFF=$(json "$WORK/body" 'j["upload"]["offset"]')
[ "$OFF" = "$HALF" ] || die "offset $OFF, expected $HALF"
[ "$(api PUT "/api/v1/uploads/$ID" -H "Content-Range: bytes $OFF-$((SIZE - 1))/$SIZE" \
    --data-binary @"$WORK/c1")" = 200 ] || die "second chunk: $(cat "$WORK/body")"
ok "uploaded $SIZE bytes in two chunks, resuming at offset $OFF"

[ "$(api POST /api/v1/apps/default/releases \
    -d "{\"upload\":\"$ID\",\"version\":\"v1\",\"notes\":\"first\"}")" = 201 ] ||
    die "publish: $(cat "$WORK/body")"
[ "$(json "$WORK/body" 'j["release"]["files"]')" = 2 ] || die "files: $(cat "$WORK/body")"
MSHA=$(json "$WORK/body" 'j["release"]["manifest"]["sha256"]')
TARGET=$(json "$WORK/body" 'j["release"]["manifest"]["target"]')
ok "published v1: 2 files, manifest $MSHA"

# ---- the signed repository lists it ------------------------------------------------------
M="$WORK/device"
"$LP_BIN" tuf init --metadata-dir "$M" --root "$D/repos/default/metadata/1.root.json" \
    >/dev/null 2>&1 || die "tuf init"
"$LP_BIN" tuf download --metadata-dir "$M" --metadata-url "$URL/v1/apps/default/metadata" \
    --targets-url "$URL/v1/apps/default/targets" --out "$WORK/dl" "$TARGET" >/dev/null ||
    die "tuf download $TARGET"
curl -sf -D "$WORK/h" -o "$WORK/blob" "$URL/v1/blobs/$MSHA" || die "GET blob"
cmp "$WORK/dl/$TARGET" "$WORK/blob" || die "the signed target differs from the blob"
grep -qi "^etag: \"$MSHA\"" "$WORK/h" || die "blob ETag"
grep -qi "^cache-control: public, max-age=31536000, immutable" "$WORK/h" || die "blob caching"
ok "TUF client verified $TARGET through the server; it equals /v1/blobs/$MSHA"

# ---- restart: no new token, the release is still there -------------------------------------
stop_server
start_server --data-dir "$D" --listen 127.0.0.1:0
grep -q "admin token written" "$WORK/server.out" && die "a second admin token at restart"
[ "$(api GET /api/v1/apps/default/releases/v1)" = 200 ] || die "v1 after restart"
stop_server
ok "restart: no new admin token, v1 still published"

# ---- options reach the server ----------------------------------------------------------------
D2="$WORK/data2"
LIVEPUSH_MAX_BODY_BYTES=1000 start_server --data-dir "$D2" --listen 127.0.0.1:0 --default-app ""
TOKEN=$(head -n 1 "$D2/admin.token")
[ "$(api GET /api/v1/apps)" = 200 ] && [ "$(json "$WORK/body" 'len(j["apps"])')" = 0 ] ||
    die "--default-app '': $(cat "$WORK/body")"
[ "$(api POST /api/v1/apps -d '{"name":"web"}')" = 201 ] || die "create app"
[ "$(api POST /api/v1/apps/web/uploads -d '{"size":2000}')" = 201 ] || die "create upload"
ID=$(json "$WORK/body" 'j["upload"]["id"]')
head -c 2000 /dev/zero >"$WORK/z"
code=$(api PUT "/api/v1/uploads/$ID" -H "Content-Range: bytes 0-1999/2000" --data-binary @"$WORK/z")
[ "$code" = 413 ] || die "a 2000-byte chunk over a 1000-byte limit: $code"
stop_server
ok "--default-app '' makes no app; LIVEPUSH_MAX_BODY_BYTES=1000 refuses a 2000-byte chunk"

echo "serve_api: $CHECKS checks passed"
