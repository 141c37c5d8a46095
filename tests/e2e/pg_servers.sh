#!/usr/bin/env bash
# pg_servers.sh — three `livepush serve` processes on one PostgreSQL database
# and one shared data folder behave as one service.
#
# Needs LP_TEST_PG_URL (a PostgreSQL database the test may create a schema
# in; scripts/test sets it for its PostgreSQL pass on a throw-away cluster);
# without it the test is skipped (exit 77).  The test works in a schema of
# its own, dropped at the end.
#
#   1. Servers A, B and C start together on the same data folder and
#      database: the migrations run once (advisory lock), the data folder's
#      lock is shared, and an SQLite server is kept out of the folder.
#   2. tests/support/multiserver.py: A and B publish staged releases at the
#      same time while A and B change and halt rollouts and C answers device
#      check-ins and serves the metadata; version codes are unique and
#      increasing, the TUF metadata lists every release exactly once, no
#      timestamp or snapshot version ever has two contents, a halt is
#      final, and the audit chain verifies against audit.head.
#   3. kill -9 of A in the middle of publishing a large bundle, several
#      times at different moments: within one re-sign interval B or C takes
#      the app's lock, finds the dead holder's mark on it and brings the
#      repository back in line with the database, so the killed release is
#      either whole (API and TUF) or nowhere; a publish through B then gets
#      a strictly higher version code; A starts again.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
if [ -z "${LP_TEST_PG_URL:-}" ]; then
    echo "skipped: LP_TEST_PG_URL is not set (scripts/test sets it for its PostgreSQL pass)"
    exit 77
fi
e2e_begin pgservers curl python3 psql sha256sum
ROUNDS=${LP_CRASH_ROUNDS:-4}
DATA=$WORK/data
MS="python3 $LP_SOURCE_DIR/tests/support/multiserver.py"
SCHEMA="lpt_servers_$$_$RANDOM"
case $LP_TEST_PG_URL in *\?*) SEP='&' ;; *) SEP='?' ;; esac
DB="$LP_TEST_PG_URL${SEP}options=-csearch_path%3D$SCHEMA"
psql -q -v ON_ERROR_STOP=1 "$LP_TEST_PG_URL" -c "CREATE SCHEMA $SCHEMA" >/dev/null ||
    die "cannot create schema $SCHEMA"
A_PID="" B_PID="" C_PID=""
E2E_PID_VARS="A_PID B_PID C_PID"
E2E_LOGS="$WORK/a.err $WORK/b.err $WORK/c.err"
cleanup() {
    e2e_exit
    psql -q "$LP_TEST_PG_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# launch NAME — starts server NAME (a, b or c) on the shared folder and
# database in the background; sets NAME_PID.  await NAME sets NAME_URL
# from its "listening on" line.
launch() {
    local n=$1 N
    N=$(echo "$n" | tr a-z A-Z)
    : >"$WORK/$n.out"
    "$LP_BIN" serve --listen 127.0.0.1:0 --data-dir "$DATA" --db "$DB" --db-connections 4 \
        --resign-interval 2 >"$WORK/$n.out" 2>>"$WORK/$n.err" &
    eval "${N}_PID=$!"
}
await() {
    local n=$1 N url="" pid
    N=$(echo "$n" | tr a-z A-Z)
    pid=$(eval echo "\$${N}_PID")
    for _ in $(seq 1 400); do
        url=$(sed -n 's/^listening on //p' "$WORK/$n.out")
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || die "server $n exited at start: $(tail -n 5 "$WORK/$n.err")"
        sleep 0.05
    done
    [ -n "$url" ] || die "server $n printed no 'listening on' line"
    eval "${N}_URL=$url"
}
# crash NAME — kill -9 of server NAME
crash() {
    local N pid
    N=$(echo "$1" | tr a-z A-Z)
    pid=$(eval echo "\$${N}_PID")
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    eval "${N}_PID="
}

# 1. Three servers started at the same moment on one folder and one database.
mkdir -p "$DATA"
launch a
launch b
launch c
await a
await b
await c
[ "$(psql -tA "$DB" -c 'SELECT version FROM schema_version')" = \
  "$(psql -tA "$DB" -c 'SELECT max(version) FROM schema_version')" ] &&
  [ "$(psql -tA "$DB" -c 'SELECT count(*) FROM schema_version')" = 1 ] ||
    die "schema_version is not one row"
[ "$(psql -tA "$DB" -c 'SELECT count(*) FROM tokens')" = 1 ] ||
    die "the first start made $(psql -tA "$DB" -c 'SELECT count(*) FROM tokens') admin tokens"
[ "$(psql -tA "$DB" -c 'SELECT count(*) FROM apps')" = 1 ] || die "the first start made more than one app"
ok "three servers started together on one database and data folder: migrated once, one admin token, one app"
TOKEN=$(tr -d '\n' <"$DATA/admin.token")
expect_rc 1 timeout 20 "$LP_BIN" serve --listen 127.0.0.1:0 --data-dir "$DATA"
grep -q "in use by another livepush server" "$WORK/err" || die "an SQLite server was not kept out: $(cat "$WORK/err")"
ok "a server on SQLite is refused the shared data folder"

# 2. Publishing and changing rollouts on A and B while C serves devices.
export LP_MS_TOKEN=$TOKEN LP_MS_DATA=$DATA LP_MS_WORK=$WORK
$MS concurrent "$A_URL" "$B_URL" "$C_URL" || die "the servers did not behave as one"
expect_rc 0 "$LP_BIN" audit verify --db "$DB" --head "$DATA/audit.head"
ok "the audit chain verifies against audit.head: $(head -n 1 "$WORK/out")"

# 3. kill -9 of A in the middle of a publish, at different moments.
mkdir -p "$WORK/big/app"
for i in $(seq 1 300); do echo "file $i of the big bundle" >"$WORK/big/app/f$i.txt"; done
tar -czf "$WORK/big.tar.gz" -C "$WORK/big" app
SIZE=$(stat -c %s "$WORK/big.tar.gz")
SHA=$(sha256sum "$WORK/big.tar.gz" | cut -d' ' -f1)
api() { # URL METHOD PATH [JSON] — body to $WORK/resp, status to CODE
    local u=$1 m=$2 p=$3 body=${4:-}
    if [ -n "$body" ]; then
        CODE=$(curl -sS -o "$WORK/resp" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN" \
            -H 'Content-Type: application/json' --data-binary "$body" "$u$p")
    else
        CODE=$(curl -sS -o "$WORK/resp" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN" "$u$p")
    fi
}
upload() { # URL — a complete upload of the big bundle; prints its id
    api "$1" POST /api/v1/apps/default/uploads "{\"size\":$SIZE,\"sha256\":\"$SHA\"}"
    [ "$CODE" = 201 ] || die "create upload: HTTP $CODE: $(cat "$WORK/resp")"
    local id
    id=$(jq_py "d['upload']['id']" <"$WORK/resp")
    [ "$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/octet-stream' -H "Content-Range: bytes 0-$((SIZE - 1))/$SIZE" \
        --data-binary @"$WORK/big.tar.gz" "$1/api/v1/uploads/$id")" = 200 ] || die "upload failed"
    echo "$id"
}
id=$(upload "$A_URL")
t0=$(date +%s.%N)
api "$A_URL" POST /api/v1/apps/default/releases "{\"upload\":\"$id\",\"version\":\"big0\"}"
t1=$(date +%s.%N)
[ "$CODE" = 201 ] || die "publish of the big bundle: HTTP $CODE: $(cat "$WORK/resp")"
T=$(python3 -c "print(max(0.05, $t1 - $t0))")
ok "an undisturbed publish of the big bundle through A takes ${T}s"

whole=0 none=0
for round in $(seq 1 "$ROUNDS"); do
    id=$(upload "$A_URL")
    delay=$(python3 -c "print(round(1.3 * $T * $round / $ROUNDS, 4))")
    curl -sS -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data-binary "{\"upload\":\"$id\",\"version\":\"big$round\"}" \
        "$A_URL/api/v1/apps/default/releases" 2>/dev/null &
    CURL=$!
    sleep "$delay"
    crash a
    wait "$CURL" 2>/dev/null || true
    # Nobody acts on the app: within a re-sign interval (2 s) B or C takes
    # the app's lock for its re-sign pass, finds A's mark and repairs.
    agree=no
    for _ in $(seq 1 50); do
        if $MS consistent "$B_URL" >"$WORK/codes" 2>"$WORK/why"; then
            agree=yes
            break
        fi
        sleep 0.2
    done
    [ $agree = yes ] || die "round $round: API and TUF metadata still disagree 10 s after the crash: $(cat "$WORK/why")"
    # Then a publish through B gets the next code.
    before=$(python3 - "$B_URL" <<'PY'
import json, os, sys, urllib.request
r = urllib.request.Request(sys.argv[1] + "/api/v1/apps/default/releases?limit=1",
                           headers={"Authorization": "Bearer " + os.environ["LP_MS_TOKEN"]})
d = json.load(urllib.request.urlopen(r))
print(d["releases"][0]["version_code"] if d["releases"] else 0)
PY
)
    id=$(upload "$B_URL")
    api "$B_URL" POST /api/v1/apps/default/releases "{\"upload\":\"$id\",\"version\":\"after$round\"}"
    [ "$CODE" = 201 ] || die "round $round: publish through B after the crash: HTTP $CODE: $(cat "$WORK/resp")"
    code=$(jq_py "d['release']['version_code']" <"$WORK/resp")
    [ "$code" -gt "$before" ] || die "round $round: B got version code $code, not above $before"
    $MS consistent "$B_URL" >"$WORK/codes" || die "round $round: API and TUF metadata disagree after the crash"
    api "$B_URL" GET "/api/v1/apps/default/releases/big$round"
    if [ "$CODE" = 200 ]; then
        whole=$((whole + 1))
    elif [ "$CODE" = 404 ]; then
        none=$((none + 1))
    else
        die "round $round: release lookup answered HTTP $CODE"
    fi
    launch a
    await a
done
ok "$ROUNDS kills of A during a publish: $whole left the whole release, $none left no trace; each time B's next publish got a higher code and the API and the TUF metadata agree"
[ $whole -gt 0 ] && [ $none -gt 0 ] || echo "note: the kills landed only on one side of the commit this run"
repairs=$(cat "$WORK/b.err" "$WORK/c.err" | grep -c "after a server died holding the app's lock" || true)
echo "note: $repairs repairs of a repository left ahead of the database by a killed server"

expect_rc 0 "$LP_BIN" audit verify --db "$DB" --head "$DATA/audit.head"
ok "the audit chain still verifies: $(head -n 1 "$WORK/out")"
echo "all $CHECKS checks passed"
