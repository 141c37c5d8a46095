#!/usr/bin/env bash
# device_events.sh — the device API for telemetry against a real server.
#
# Starts `livepush serve` on an ephemeral loopback port with a new data
# folder and:
#   - posts a batch of events with curl, anonymously (the default
#     --device-auth none): 200 {"accepted":3,"duplicates":0}; the same batch
#     again: {"accepted":0,"duplicates":3}; an overlapping one: 1 new;
#   - refused batches (a bad event type, an unknown field, an unknown app)
#     answer 400 / 404 naming what is wrong and store nothing;
#   - reads them back with `livepush events --json` (newest first, the
#     --device / --type filters, paging with --limit and --before) and
#     `livepush devices --json` (the device's release, newest event,
#     dropped count), and the tables without --json;
#   - restarts the server with --device-auth token: the events are still
#     there; curl without a token gets 401, with a read token 403, with a
#     download token 200; the download token cannot list events (exit 3).
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
e2e_begin events curl python3
post() {
    local auth=()
    [ -n "${2:-}" ] && auth=(-H "Authorization: Bearer $2")
    curl -s -o "$WORK/answer" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        "${auth[@]}" --data-binary "$1" "$URL/v1/apps/${APP:-default}/events"
}
D="$WORK/data"
serve() {
    start_server --listen 127.0.0.1:0 --data-dir "$D" "$@"
    export LIVEPUSH_SERVER="$URL"
}

unset LIVEPUSH_SERVER LIVEPUSH_TOKEN LIVEPUSH_APP LIVEPUSH_TIMEOUT LIVEPUSH_DEVICE_AUTH

for cmd in devices events; do
    lp "$cmd" --help >"$WORK/help" || die "$cmd --help: exit $?"
    grep -qF -- "--json" "$WORK/help" || die "$cmd --help does not mention --json"
    expect_rc 2 lp "$cmd" --no-such-option
done
expect_rc 2 lp events --limit 0
expect_rc 2 lp devices --type failed
ok "devices / events --help; bad options exit 2"

serve
ADMIN_FILE="$D/admin.token"
expect_rc 0 lp token create --name reader --scope read --token-file "$ADMIN_FILE"
READ=$(cat "$WORK/out")
expect_rc 0 lp token create --name device --scope download --token-file "$ADMIN_FILE"
DOWN=$(cat "$WORK/out")
ok "server on $URL; a read token and a download token"

DEV=0123456789abcdef0123456789abcdef
DEV2=fedcba9876543210fedcba9876543210
BATCH='{"device_id":"'$DEV'","dropped":1,"events":[
 {"seq":1,"type":"checked","at":1700000001,"duration_ms":40},
 {"seq":2,"type":"downloaded","at":1700000002,"version":"v2","version_code":2,"duration_ms":900},
 {"seq":3,"type":"activated","at":1700000003,"version":"v2","version_code":2,"from_version_code":1,"reason":null,"duration_ms":12}]}'
[ "$(post "$BATCH")" = 200 ] || die "batch: $(cat "$WORK/answer")"
[ "$(jq_py '(d["accepted"], d["duplicates"])' <"$WORK/answer")" = "(3, 0)" ] ||
    die "batch answer: $(cat "$WORK/answer")"
[ "$(post "$BATCH")" = 200 ] || die "batch again: $(cat "$WORK/answer")"
[ "$(jq_py '(d["accepted"], d["duplicates"])' <"$WORK/answer")" = "(0, 3)" ] ||
    die "batch again answer: $(cat "$WORK/answer")"
[ "$(post '{"device_id":"'$DEV'","events":[{"seq":3,"type":"activated","at":1700000003},{"seq":4,"type":"failed","at":1700000004,"version_code":3,"reason":"health check: exit 1"}]}')" = 200 ] ||
    die "overlapping batch: $(cat "$WORK/answer")"
[ "$(jq_py '(d["accepted"], d["duplicates"])' <"$WORK/answer")" = "(1, 1)" ] ||
    die "overlapping answer: $(cat "$WORK/answer")"
[ "$(post '{"device_id":"'$DEV2'","events":[{"seq":1,"type":"rolled_back","at":1700000100,"version_code":1,"from_version_code":2}]}')" = 200 ] ||
    die "second device: $(cat "$WORK/answer")"
ok "batches with curl: 3 new, re-sent 3 duplicates, overlapping 1 new + 1 duplicate"

[ "$(post '{"device_id":"'$DEV'","events":[{"seq":9,"type":"exploded","at":1}]}')" = 400 ] ||
    die "bad type: $(cat "$WORK/answer")"
grep -q "events\[0\].type" "$WORK/answer" || die "bad type message: $(cat "$WORK/answer")"
[ "$(post '{"device_id":"'$DEV'","events":[],"colour":"red"}')" = 400 ] ||
    die "unknown field: $(cat "$WORK/answer")"
grep -q "field 'colour': unknown field" "$WORK/answer" || die "unknown field: $(cat "$WORK/answer")"
[ "$(APP=nosuch post '{"device_id":"'$DEV'","events":[]}')" = 404 ] ||
    die "unknown app: $(cat "$WORK/answer")"
expect_rc 0 lp events --json --token "$(cat "$ADMIN_FILE")"
[ "$(jq_py 'len(d["events"])' <"$WORK/out")" = 5 ] || die "refused batches stored: $(cat "$WORK/out")"
ok "refused: bad type 400 naming events[0].type, unknown field 400, unknown app 404; nothing stored"

export LIVEPUSH_TOKEN="$READ"
expect_rc 0 lp events --json
python3 - "$WORK/out" "$DEV" "$DEV2" <<'PYEOF' || die "events --json: $(cat "$WORK/out")"
import json, sys
doc = json.load(open(sys.argv[1]))
dev, dev2 = sys.argv[2], sys.argv[3]
evs = doc["events"]
got = [(e["device_id"], e["seq"], e["type"]) for e in evs]
assert got == [(dev2, 1, "rolled_back"), (dev, 4, "failed"), (dev, 3, "activated"),
               (dev, 2, "downloaded"), (dev, 1, "checked")], got
ids = [e["id"] for e in evs]
assert ids == sorted(ids, reverse=True), ids
a = evs[2]
assert (a["version"], a["version_code"], a["from_version_code"], a["duration_ms"], a["reason"],
        a["at"]) == ("v2", 2, 1, 12, None, 1700000003), a
assert evs[1]["reason"] == "health check: exit 1", evs[1]
assert doc["next"] is None
PYEOF
expect_rc 0 lp events --device "$DEV" --type activated --json
[ "$(jq_py '[e["seq"] for e in d["events"]]' <"$WORK/out")" = "[3]" ] ||
    die "events --device --type: $(cat "$WORK/out")"
expect_rc 0 lp events --limit 2 --json
NEXT=$(jq_py 'd["next"]' <"$WORK/out")
[ "$(jq_py 'len(d["events"])' <"$WORK/out")" = 2 ] && [ "$NEXT" -gt 0 ] ||
    die "events --limit 2: $(cat "$WORK/out")"
expect_rc 0 lp events --limit 2 --before "$NEXT" --json
[ "$(jq_py '[e["seq"] for e in d["events"]]' <"$WORK/out")" = "[3, 2]" ] ||
    die "events page 2: $(cat "$WORK/out")"
expect_rc 0 lp events --limit 2
grep -q "(more: --before " "$WORK/out" || die "events table: $(cat "$WORK/out")"
head -1 "$WORK/out" | grep -q "^ID  *AT  *DEVICE" || die "events table header: $(cat "$WORK/out")"
grep -q "health check: exit 1" "$WORK/out" || die "events table reason: $(cat "$WORK/out")"
expect_rc 4 lp events --type exploded
grep -q "HTTP 400" "$WORK/err" && grep -q "exploded" "$WORK/err" || die "events --type exploded: $(cat "$WORK/err")"
ok "livepush events: newest first, --device/--type filter, --limit/--before pages, table; a bad type exits 4"

expect_rc 0 lp devices --json
python3 - "$WORK/out" "$DEV" "$DEV2" <<'PYEOF' || die "devices --json: $(cat "$WORK/out")"
import json, sys
doc = json.load(open(sys.argv[1]))
dev, dev2 = sys.argv[2], sys.argv[3]
devs = doc["devices"]
assert [d["device_id"] for d in devs] == [dev, dev2], devs
a, b = devs
assert a["version_code"] == 2 and a["dropped"] == 1, a
assert a["last_event"]["seq"] == 4 and a["last_event"]["type"] == "failed", a
assert a["first_seen"] <= a["last_seen"], a
assert b["version_code"] == 1 and b["last_event"]["type"] == "rolled_back", b
assert doc["next"] is None
PYEOF
expect_rc 0 lp devices --limit 1
grep -q "^$DEV " "$WORK/out" && grep -q "(more: --after $DEV)" "$WORK/out" ||
    die "devices table: $(cat "$WORK/out")"
expect_rc 0 lp devices --after "$DEV"
grep -q "^$DEV2 " "$WORK/out" && ! grep -q "^$DEV " "$WORK/out" || die "devices --after: $(cat "$WORK/out")"
ok "livepush devices: release, newest event, dropped; paging with --limit/--after"

# ---- --device-auth token ------------------------------------------------------------
stop_server
serve --device-auth token
[ "$(post "$BATCH")" = 401 ] || die "no token: $(cat "$WORK/answer")"
[ "$(post "$BATCH" "$READ")" = 403 ] || die "read token: $(cat "$WORK/answer")"
grep -q "'download'" "$WORK/answer" || die "403 message: $(cat "$WORK/answer")"
[ "$(post "$BATCH" "$DOWN")" = 200 ] || die "download token: $(cat "$WORK/answer")"
[ "$(jq_py '(d["accepted"], d["duplicates"])' <"$WORK/answer")" = "(0, 3)" ] ||
    die "after restart: $(cat "$WORK/answer")"
expect_rc 0 lp events --json
[ "$(jq_py 'len(d["events"])' <"$WORK/out")" = 5 ] || die "events after restart: $(cat "$WORK/out")"
expect_rc 3 lp events --token "$DOWN"
ok "--device-auth token: 401 without, 403 with a read token, 200 with a download token; events kept across the restart"
stop_server
echo "all $CHECKS checks passed"
