#!/usr/bin/env bash
# metrics.sh — GET /metrics against the traffic the test made.
#
# Starts `livepush serve` (deltas on, --guard-interval 200) and makes a known
# amount of traffic: reads of the API, requests for paths no route serves,
# refused writes, an unknown method, two releases and a rollback (a delta
# made between them), device check-ins with events (one batch sent twice),
# and a staged release whose devices roll back until the guardrail halts it.
# Then /metrics is read (401 without a token), parsed with Prometheus' own
# text-format parser (python3-prometheus-client), and every counter must
# equal the traffic: requests by method, route pattern and status, the
# latency histogram's count, bytes, publishes, deltas made, check-ins,
# events by type (the duplicate batch not counted twice), guardrail halts,
# and the database timings present.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
e2e_begin metrics curl python3
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3 # Debian's, where python3-prometheus-client is
"$PY" -c 'import prometheus_client.parser' || die "python3-prometheus-client is missing"
D="$WORK/data"
unset LIVEPUSH_SERVER LIVEPUSH_TOKEN LIVEPUSH_APP LIVEPUSH_TIMEOUT LIVEPUSH_DEVICE_AUTH
start_server --listen 127.0.0.1:0 --data-dir "$D" --guard-interval 200 --delta-min-size 1
export LIVEPUSH_SERVER="$URL" LIVEPUSH_TOKEN
LIVEPUSH_TOKEN=$(cat "$D/admin.token")
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
AUTH=(-H "Authorization: Bearer $LIVEPUSH_TOKEN")

for _ in 1 2 3 4 5; do [ "$(code "${AUTH[@]}" "$URL/api/v1/apps")" = 200 ] || die "GET apps"; done
for p in /api/v1/nope /nothing/here /v2; do [ "$(code "$URL$p")" = 404 ] || die "GET $p"; done
for _ in 1 2; do [ "$(code -X POST -d '{}' "$URL/api/v1/apps")" = 401 ] || die "POST apps"; done
code -X BREW "$URL/api/v1/apps" >/dev/null || true
[ "$(code "$URL/metrics")" = 401 ] || die "/metrics without a token"
ok "traffic: 5 reads, 3 unmatched paths, 2 refused writes, one unknown method"

mkdir "$WORK/b"
head -c 50000 /dev/urandom >"$WORK/b/data.bin"
expect_rc 0 lp upload --app default --bundle "$WORK/b" --version 1.0
printf 'changed' | dd of="$WORK/b/data.bin" bs=1 seek=100 conv=notrunc status=none
expect_rc 0 lp upload --app default --bundle "$WORK/b" --version 2.0
expect_rc 0 lp rollback --app default --target 1.0
for _ in $(seq 1 100); do
    curl -sf "${AUTH[@]}" "$URL/metrics" | grep -q '^livepush_deltas_total{result="made"}' && break
    sleep 0.1
done
ok "two releases and a rollback published; the delta worker made the delta"

batch() { # DEVICE SEQ0 -> a batch of three events
    printf '{"device_id":"%032x","channel":"stable","events":[' "$1"
    printf '{"seq":%d,"type":"checked","at":1796000000},' "$2"
    printf '{"seq":%d,"type":"activated","at":1796000001,"version_code":2,"from_version_code":1},' $(($2 + 1))
    printf '{"seq":%d,"type":"healthy","at":1796000002,"version_code":2}]}' $(($2 + 2))
}
post() { code -X POST -H 'Content-Type: application/json' --data-binary "$1" "$URL/v1/apps/default/events"; }
for n in 1 2 3 4; do [ "$(post "$(batch "$n" 1)")" = 200 ] || die "events $n"; done
[ "$(post "$(batch 4 1)")" = 200 ] || die "events again"
ok "4 devices report 3 events each; one batch sent twice"

echo 4.0 >"$WORK/b/v"
expect_rc 0 lp upload --app default --bundle "$WORK/b" --version 4.0 --rollout 100
for n in $(seq 101 125); do
    post "{\"device_id\":\"$(printf '%032x' "$n")\",\"channel\":\"stable\",\"events\":[{\"seq\":1,\"type\":\"rolled_back\",\"at\":1796000000,\"version_code\":3,\"from_version_code\":4}]}" >/dev/null
done
for _ in $(seq 1 100); do
    curl -sf "${AUTH[@]}" "$URL/metrics" | grep -q '^livepush_guardrail_halts_total' && break
    sleep 0.1
done
ok "4.0 staged; 25 devices roll back; the guardrail halts it"

curl -sf "${AUTH[@]}" -D "$WORK/headers" "$URL/metrics" >"$WORK/metrics" || die "GET /metrics"
grep -qi '^content-type: text/plain; version=0.0.4' "$WORK/headers" || die "$(cat "$WORK/headers")"
"$PY" - "$WORK/metrics" <<'PYEOF' || die "metrics: $(cat "$WORK/metrics" | head -60)"
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
samples = {}
types = {}
for fam in text_string_to_metric_families(text):
    types[fam.name] = fam.type
    for s in fam.samples:
        samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
def v(name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)
def check(what, got, want):
    if got != want:
        sys.exit("%s: %r, expected %r" % (what, got, want))
req = "livepush_http_requests_total"
check("GET apps 200", v(req, method="GET", route="/api/v1/apps", status="200"), 5)
check("POST apps 401", v(req, method="POST", route="/api/v1/apps", status="401"), 2)
check("unknown method", v(req, method="other", route="/api/v1/apps", status="405"), 1)
check("unmatched 404", v(req, method="GET", route="unmatched", status="404"), 3)
check("metrics 401", v(req, method="GET", route="/metrics", status="401"), 1)
check("events 200", v(req, method="POST", route="/v1/apps/*/events", status="200"), 30)
h = "livepush_http_request_duration_seconds"
check("histogram count", v(h + "_count", route="/api/v1/apps"), 8)
check("histogram +Inf", v(h + "_bucket", route="/api/v1/apps", le="+Inf"), 8)
if not v("livepush_http_response_bytes_total", route="/api/v1/apps") > 0:
    sys.exit("no bytes counted")
check("publishes", v("livepush_publishes_total", app="default"), 4)
check("deltas made", v("livepush_deltas_total", result="made") >= 1, True)
check("check-ins", v("livepush_checkins_total", app="default"), 30)
ev = "livepush_device_events_total"
check("checked", v(ev, app="default", type="checked"), 4)
check("activated", v(ev, app="default", type="activated"), 4)
check("healthy", v(ev, app="default", type="healthy"), 4)
check("rolled_back", v(ev, app="default", type="rolled_back"), 25)
check("guardrail halts", v("livepush_guardrail_halts_total", app="default"), 1)
if not v("livepush_db_wait_seconds_count") > 0 or not v("livepush_db_hold_seconds_count") > 0:
    sys.exit("no database timings")
check("types", (types["livepush_http_request_duration_seconds"], types["livepush_publishes"]),
      ("histogram", "counter"))
PYEOF
ok "/metrics parses with Prometheus' parser; every counter matches the traffic made"
stop_server
