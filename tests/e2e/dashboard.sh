#!/usr/bin/env bash
# dashboard.sh — the web dashboard in a real browser against a real server.
#
# Starts `livepush serve --guard-interval 200` (ms), makes two more tokens
# (rollout and read-only: "operator" has the rollout scope, "viewer" only
# read), publishes 1.0 (whose notes hold HTML: "<img src=x
# onerror=alert(1)><b>bold</b>") to every device and 1.1 as a staged rollout
# at 10% (`livepush upload --rollout 10`), adds a channel "beta", and runs
# tests/browser/dashboard.test.mjs: Playwright (playwright-core from npm,
# installed by `npm ci`) driving Debian's Chromium headless.  The browser
# test signs in as admin, sees 1.1 rolling out at 10%, raises it to 50% and
# pauses it through the confirmation dialog (each change checked through
# the API with curl, and in the audit log), posts device events (curl) until
# 8 of 25 devices rolled back, and watches the guardrail's halt and its
# reason appear without a reload; checks that the notes render as text;
# signs in read-only: no action offered, a forced one refused (403) and
# shown, the API refusing the same; and that the page reported no
# Content-Security-Policy violation and no script error.  It saves
# screenshots of the main views to LP_DASHBOARD_SHOTS (default
# dashboard-shots/ in the folder the test runs in, the build folder under
# CTest); docs/dashboard.md shows the ones in docs/dashboard/.
#
# Chromium, Node.js and node_modules are required, not optional: a missing
# one fails the test with the command that installs it.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
e2e_begin dashboard curl python3 node
chromium=${LP_CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || die "no Chromium at $chromium: run scripts/install-deps (Debian package chromium)"
[ -f "$LP_SOURCE_DIR/node_modules/playwright-core/package.json" ] ||
    die "playwright-core is not installed: run scripts/install-deps (it runs npm ci)"

D="$WORK/data"
unset LIVEPUSH_SERVER LIVEPUSH_TOKEN LIVEPUSH_APP LIVEPUSH_TIMEOUT LIVEPUSH_DEVICE_AUTH
start_server --listen 127.0.0.1:0 --data-dir "$D" --guard-interval 200
export LIVEPUSH_SERVER="$URL" LIVEPUSH_TOKEN
LIVEPUSH_TOKEN=$(cat "$D/admin.token")

expect_rc 0 lp token create --name operator --scope rollout
OPERATOR=$(tr -d '\n' <"$WORK/out")
expect_rc 0 lp token create --name viewer --scope read
VIEWER=$(tr -d '\n' <"$WORK/out")
[[ $OPERATOR == lp_* && $VIEWER == lp_* ]] || die "token create printed no token"

mkdir "$WORK/b"
echo one >"$WORK/b/app"
expect_rc 0 lp upload --bundle "$WORK/b" --version 1.0 \
    --notes '<img src=x onerror=alert(1)><b>bold</b> & more'
echo two >"$WORK/b/app"
echo extra >"$WORK/b/extra"
expect_rc 0 lp upload --bundle "$WORK/b" --version 1.1 --rollout 10 \
    --notes 'Faster start; staged.'
expect_rc 0 lp channel create beta
ok "server with --guard-interval 200; tokens operator (rollout) and viewer (read); 1.0, and 1.1 at 10%"

shots=${LP_DASHBOARD_SHOTS:-$PWD/dashboard-shots}
mkdir -p "$shots"
start=$SECONDS
LP_URL="$URL" LP_ADMIN_TOKEN="$LIVEPUSH_TOKEN" LP_OPERATOR_TOKEN="$OPERATOR" LP_READ_TOKEN="$VIEWER" \
    LP_CHROMIUM="$chromium" LP_SHOTS="$shots" \
    node "$LP_SOURCE_DIR/tests/browser/dashboard.test.mjs" || die "the browser test failed"
ok "browser test passed in $((SECONDS - start)) s; screenshots in $shots"

expect_rc 0 lp audit verify --db "sqlite:$D/livepush.db"
ok "the audit chain verifies after the dashboard's changes"
stop_server
