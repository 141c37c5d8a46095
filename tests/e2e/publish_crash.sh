#!/usr/bin/env bash
# publish_crash.sh — kill -9 of the real server during a publish leaves the
# whole release or no trace of it.
#
# A bundle of many small files (so ingest and publish take a while) is
# uploaded completely, then the request that publishes it is sent and the
# server is killed with SIGKILL after a delay that changes each round (from
# before the request is read to after it is answered).  The server is
# started again on the same data folder and must agree with itself:
#   - the release list of the API has the release  <=>  a TUF client that
#     refreshes from the server finds releases/<code>.json and downloads it
#     with a valid signature chain;
#   - no partial upload leaks into a release, and the next publish works
#     with the next version code.
# The same holds for the app's first publish and for later ones.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
e2e_begin crash curl python3 sha256sum
ROUNDS=${LP_CRASH_ROUNDS:-10}
DATA=$WORK/data
serve() { start_server --listen 127.0.0.1:0 --data-dir "$DATA"; }

CODE=""
api() { # METHOD PATH [JSON] — body to $WORK/resp, status to CODE
    local m=$1 p=$2 body=${3:-}
    if [ -n "$body" ]; then
        CODE=$(curl -sS -o "$WORK/resp" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN" \
            -H 'Content-Type: application/json' --data-binary "$body" "$URL$p")
    else
        CODE=$(curl -sS -o "$WORK/resp" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN" "$URL$p")
    fi
}
jget() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d'+sys.argv[1]))" "$1"; }

# upload FILE — a complete upload; prints its id
upload() {
    local f=$1 size sha id
    size=$(stat -c %s "$f")
    sha=$(sha256sum "$f" | cut -d' ' -f1)
    api POST /api/v1/apps/default/uploads "{\"size\":$size,\"sha256\":\"$sha\"}"
    [ "$CODE" = 201 ] || die "create upload: HTTP $CODE: $(cat "$WORK/resp")"
    id=$(jget "['upload']['id']" <"$WORK/resp")
    curl -sS -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/octet-stream' -H "Content-Range: bytes 0-$((size - 1))/$size" \
        --data-binary @"$f" "$URL/api/v1/uploads/$id" >"$WORK/put.code"
    [ "$(cat "$WORK/put.code")" = 200 ] || die "upload: HTTP $(cat "$WORK/put.code")"
    echo "$id"
}

# Bundle: 400 files in a tar.gz.
mkdir -p "$WORK/bundle/app"
for i in $(seq 1 400); do echo "file $i of the bundle" >"$WORK/bundle/app/f$i.txt"; done
tar -czf "$WORK/bundle.tar.gz" -C "$WORK/bundle" app

# listed CODE — 0 when a fresh TUF client finds and downloads releases/CODE.json
listed() {
    local c=$WORK/client-$RANDOM$RANDOM
    "$LP_BIN" tuf init --metadata-dir "$c" --root "$DATA/repos/default/metadata/1.root.json" >/dev/null
    "$LP_BIN" tuf refresh --metadata-dir "$c" --metadata-url "$URL/v1/apps/default/metadata" >/dev/null ||
        die "TUF refresh failed after a crash"
    "$LP_BIN" tuf download --metadata-dir "$c" --metadata-url "$URL/v1/apps/default/metadata" \
        --targets-url "$URL/v1/apps/default/targets" --out "$c/out" "releases/$1.json" >/dev/null 2>&1
}

serve
TOKEN=$(tr -d '\n' <"$DATA/admin.token")


# One publish undisturbed, timed: the kills below are spread from 0 to 1.5
# times its duration, so they land before, during and after the commit.
id=$(upload "$WORK/bundle.tar.gz")
t0=$(date +%s.%N)
api POST /api/v1/apps/default/releases "{\"upload\":\"$id\",\"version\":\"c0\"}"
t1=$(date +%s.%N)
[ "$CODE" = 201 ] || die "first publish: HTTP $CODE: $(cat "$WORK/resp")"
listed 1 || die "the first release is not served"
T=$(python3 -c "print(max(0.02, $t1 - $t0))")
ok "an undisturbed publish of the bundle takes ${T}s and is served"

whole=0 none=0 code=0
for round in $(seq 1 "$ROUNDS"); do
    id=$(upload "$WORK/bundle.tar.gz")
    delay=$(python3 -c "print(round(1.5 * $T * ($round - 1) / max(1, $ROUNDS - 1), 4))")
    curl -sS -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data-binary "{\"upload\":\"$id\",\"version\":\"c$round\"}" \
        "$URL/api/v1/apps/default/releases" 2>/dev/null &
    CURL=$!
    sleep "$delay"
    kill_server
    wait "$CURL" 2>/dev/null || true
    serve

    in_api=no
    api GET "/api/v1/apps/default/releases/c$round"
    if [ "$CODE" = 200 ]; then
        in_api=yes
        code=$(jget "['release']['version_code']" <"$WORK/resp")
    elif [ "$CODE" != 404 ]; then
        die "round $round: release lookup answered HTTP $CODE"
    fi
    if [ $in_api = yes ]; then
        listed "$code" || die "round $round: the API has c$round (code $code) but the TUF repository does not serve it"
        whole=$((whole + 1))
    else
        # No code was given out: the next one is max+1; no target beyond it.
        api GET "/api/v1/apps/default/releases?limit=1"
        max=$(jget "['releases'][0]['version_code'] if d['releases'] else 0" <"$WORK/resp")
        if listed $((max + 1)); then die "round $round: the TUF repository serves a release the API does not have"; fi
        none=$((none + 1))
    fi
done
ok "$ROUNDS crashes during a publish: $whole left the whole release, $none left no trace"
[ $whole -gt 0 ] && [ $none -gt 0 ] || echo "note: the kills landed only on one side of the commit this run"

# The server still publishes normally afterwards, with a strictly higher code.
id=$(upload "$WORK/bundle.tar.gz")
api POST /api/v1/apps/default/releases "{\"upload\":\"$id\",\"version\":\"after\"}"
[ "$CODE" = 201 ] || die "publish after the crashes: HTTP $CODE: $(cat "$WORK/resp")"
after=$(jget "['release']['version_code']" <"$WORK/resp")
listed "$after" || die "release after the crashes is not served"
ok "a publish after the crashes gets code $after and is served"
echo "all $CHECKS checks passed"
