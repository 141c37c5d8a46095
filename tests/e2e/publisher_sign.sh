#!/usr/bin/env bash
# publisher_sign.sh — an app whose publisher signs, end to end, against the
# real server process, driven only by the livepush command (and curl to
# look):
#   - keys made with `livepush keygen`: a root key, two release keys
#     (ed25519 and ecdsa), a key that is no release key;
#   - `app create --signing publisher` with release threshold 2: the root is
#     built and signed on this side and written to the --root-out file; the
#     server's key folder for the app holds only snapshot.pem and
#     timestamp.pem, and no private key of the publisher's is anywhere in
#     the data folder;
#   - `upload --sign-key rel1`: the release waits for 1 more signature
#     (exit 5); `sign --sign-key rel2` publishes it (exit 0); a fresh TUF
#     client set up with the root file the CLI wrote refreshes through the
#     server and downloads releases/1.json, whose bytes are the release's
#     tree manifest;
#   - refusals: `sign --bundle` of another bundle refuses to sign because
#     the manifest differs (exit 1, nothing sent: the server still holds one
#     signature); a key that is not a release key is refused naming its key
#     ID (exit 1); a public key cannot sign (exit 2); --sign-key for the
#     server-signed app (exit 2); the wrong version (exit 4);
#   - a server that lies, played by a proxy in front of the real server
#     that alters the bytes to sign (a published target removed, a target
#     added, the metadata version, the expiry, the version code, the
#     content, the release notes of an upload and of a rollback): each is
#     refused (exit 1) and nothing is signed;
#   - rollback with two --sign-key: published at once, its entry restores
#     v1's content; cancel of a release uploaded without keys;
#   - without --root the command warns that the root was not pinned.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
e2e_begin sign curl python3
E2E_PID_VARS="PROXY_PID"
E2E_LOGS="$WORK/server.err $WORK/proxy.err"

unset LIVEPUSH_SERVER LIVEPUSH_TOKEN LIVEPUSH_APP LIVEPUSH_TIMEOUT LIVEPUSH_UPLOAD_CHUNK
export XDG_CACHE_HOME="$WORK/cache"
cd "$WORK"

# ---- the command line, without a server --------------------------------------------
for cmd in sign cancel; do
    lp "$cmd" --help >"$WORK/help" || die "$cmd --help: exit $?"
    grep -qF -- "--server" "$WORK/help" || die "$cmd --help does not list the client options"
    expect_rc 2 lp "$cmd" --no-such-option
done
expect_rc 2 lp sign --sign-key x.pem
grep -q -- "--version is required" "$WORK/err" || die "sign without --version: $(cat "$WORK/err")"
expect_rc 2 lp sign --version v1
expect_rc 2 lp app create x --root-key r.pem
expect_rc 2 lp app create x --signing publisher --release-key r.pem
ok "sign and cancel: --help, bad options and missing arguments (exit 2)"

# ---- keys ----------------------------------------------------------------------------
K="$WORK/keys"
mkdir -p "$K"
lp keygen --out "$K/root.pem" 2>/dev/null >"$K/root.id"
lp keygen --out "$K/rel1.pem" 2>/dev/null >"$K/rel1.id"
lp keygen --type ecdsa --out "$K/rel2.pem" 2>/dev/null >"$K/rel2.id"
lp keygen --out "$K/outsider.pem" 2>/dev/null >"$K/outsider.id"
ok "keygen: root, rel1 (ed25519), rel2 (ecdsa), outsider"

# ---- the server -------------------------------------------------------------------------
D="$WORK/data"
"$LP_BIN" serve --listen 127.0.0.1:0 --data-dir "$D" >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
URL=""
for _ in $(seq 1 200); do
    URL=$(sed -n 's/^listening on //p' "$WORK/server.out")
    [ -n "$URL" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "server exited at start"
    sleep 0.05
done
[ -n "$URL" ] || die "server printed no 'listening on' line"
export LIVEPUSH_SERVER="$URL"
export LIVEPUSH_TOKEN="$(cat "$D/admin.token")"
ok "server listening on $URL"

# ---- the app -------------------------------------------------------------------------------
expect_rc 2 lp app create shop --signing publisher --root-key "$K/root.pem.pub.json" \
    --release-key "$K/rel1.pem.pub.json"
grep -q "public key only" "$WORK/err" || die "a public root key: $(cat "$WORK/err")"
expect_rc 2 lp app create shop --signing publisher --root-key "$K/root.pem" \
    --release-key "$K/rel1.pem.pub.json" --release-threshold 2
expect_rc 0 lp app create shop --signing publisher --root-key "$K/root.pem" \
    --release-key "$K/rel1.pem.pub.json" --release-key "$K/rel2.pem.pub.json" \
    --release-threshold 2
ROOT="$WORK/shop.root.json"
[ -s "$ROOT" ] || die "no $ROOT after app create: $(cat "$WORK/out")"
grep -q "root written to shop.root.json" "$WORK/out" || die "app create: $(cat "$WORK/out")"
python3 - "$ROOT" "$K" <<'PYEOF' || die "the root file: $(cat "$ROOT")"
import json, sys
root = json.load(open(sys.argv[1]))["signed"]
k = sys.argv[2]
ids = {n: open(f"{k}/{n}.id").read().strip() for n in ("root", "rel1", "rel2", "outsider")}
assert root["_type"] == "root" and root["version"] == 1, root
assert root["roles"]["root"]["keyids"] == [ids["root"]], root["roles"]["root"]
assert sorted(root["roles"]["targets"]["keyids"]) == sorted([ids["rel1"], ids["rel2"]])
assert root["roles"]["targets"]["threshold"] == 2
for role in ("snapshot", "timestamp"):
    assert len(root["roles"][role]["keyids"]) == 1
    assert root["roles"][role]["keyids"][0] not in ids.values()
PYEOF
cmp -s "$ROOT" <(curl -sf "$URL/v1/apps/shop/metadata/1.root.json") ||
    die "the server's 1.root.json is not the file the CLI wrote"
ok "app create --signing publisher: root (threshold 2 of rel1, rel2) in shop.root.json = the server's 1.root.json"

expect_rc 2 lp app create shop --signing publisher --root-key "$K/root.pem" \
    --release-key "$K/rel1.pem.pub.json"
grep -q "exists already" "$WORK/err" || die "root-out exists: $(cat "$WORK/err")"
expect_rc 0 lp app show shop --json
[ "$(jq_py 'd["app"]["signing"]' <"$WORK/out")" = publisher ] || die "app show: $(cat "$WORK/out")"
expect_rc 0 lp app list
grep -qE "^shop +.* publisher" "$WORK/out" || die "app list: $(cat "$WORK/out")"
ok "an existing --root-out is never replaced (exit 2); app show/list say signing publisher"

[ "$(ls "$D/keys/shop" | tr '\n' ' ')" = "snapshot.pem timestamp.pem " ] ||
    die "keys/shop holds: $(ls "$D/keys/shop")"
for k in root rel1 rel2; do
    line=$(sed -n 2p "$K/$k.pem")
    ! grep -rqF -- "$line" "$D" || die "the private key $k.pem is in the data folder"
done
ok "the server holds only keys/shop/snapshot.pem and timestamp.pem; no publisher key in $D"

# ---- release v1: two signers, one after the other -------------------------------------------
B1="$WORK/b1"
mkdir -p "$B1/bin"
printf '#!/bin/sh\necho one\n' >"$B1/bin/app"
chmod 755 "$B1/bin/app"
printf 'readme\n' >"$B1/README"
ln -s README "$B1/LINK"
expect_rc 5 lp upload --app shop --bundle "$B1" --version v1 --notes "$(printf 'first\nline')" \
    --sign-key "$K/rel1.pem" --root "$ROOT"
grep -q "release v1 (version code 1) of app shop is waiting for 1 more signature (1 of 2 held)" \
    "$WORK/out" || die "upload --sign-key rel1: $(cat "$WORK/out")"
grep -q "livepush sign --app shop --version v1 --sign-key" "$WORK/out" ||
    die "no hint how to sign: $(cat "$WORK/out")"
curl -sf -H "Authorization: Bearer $LIVEPUSH_TOKEN" "$URL/api/v1/apps/shop/pending" >"$WORK/pending.json"
[ "$(jq_py '(d["release"]["state"], d["sign"]["signatures"])' <"$WORK/pending.json")" = \
    "('pending', ['$(cat "$K/rel1.id")'])" ] || die "pending: $(cat "$WORK/pending.json")"
curl -s -o /dev/null -w '%{http_code}' "$URL/v1/apps/shop/metadata/timestamp.json" | grep -qx 404 ||
    die "a timestamp exists before the release is signed"
ok "upload --sign-key rel1: exit 5, waiting for 1 more signature; the server holds rel1's"

expect_rc 0 lp sign --app shop --version v1 --sign-key "$K/rel2.pem" --root "$ROOT" --bundle "$B1"
grep -q "published v1 (version code 1) of app shop" "$WORK/out" || die "sign: $(cat "$WORK/out")"
ok "sign --sign-key rel2 (with --bundle): published"

MANIFEST=$(lp inspect --app shop --release v1 --json | jq_py 'd["release"]["manifest"]["sha256"]')
lp tuf init --metadata-dir "$WORK/device" --root "$ROOT" || die "tuf init"
lp tuf download --metadata-dir "$WORK/device" --metadata-url "$URL/v1/apps/shop/metadata" \
    --targets-url "$URL/v1/apps/shop/targets" --out "$WORK/dl" releases/1.json \
    >"$WORK/tuf.out" 2>&1 || die "tuf download: $(cat "$WORK/tuf.out")"
[ "$(sha256sum "$WORK/dl/releases/1.json" | cut -c1-64)" = "$MANIFEST" ] ||
    die "releases/1.json is not the release's manifest"
grep -q '"path":"bin/app"' "$WORK/dl/releases/1.json" || die "manifest: $(cat "$WORK/dl/releases/1.json")"
ok "a device with shop.root.json refreshes through the server and downloads releases/1.json (manifest $MANIFEST)"

# ---- release v2: the checks refuse what is not asked for ------------------------------------
B2="$WORK/b2"
mkdir -p "$B2"
printf 'two\n' >"$B2/file.txt"
expect_rc 5 lp upload --app shop --bundle "$B2" --version v2 --channel beta --sign-key "$K/rel1.pem" \
    --root "$ROOT"
expect_rc 1 lp sign --app shop --version v2 --sign-key "$K/rel2.pem" --root "$ROOT" --bundle "$B1"
grep -q "refusing to sign release v2" "$WORK/err" && grep -q "not the bundle's" "$WORK/err" ||
    die "sign --bundle of another bundle: $(cat "$WORK/err")"
curl -sf -H "Authorization: Bearer $LIVEPUSH_TOKEN" "$URL/api/v1/apps/shop/pending" |
    jq_py 'len(d["sign"]["signatures"])' | grep -qx 1 || die "a signature was sent after all"
ok "sign --bundle of another bundle: refused (exit 1), $(head -1 "$WORK/err" | cut -c1-160)..."

OUTSIDER=$(cat "$K/outsider.id")
expect_rc 1 lp sign --app shop --version v2 --sign-key "$K/outsider.pem" --root "$ROOT"
grep -q "key ID $OUTSIDER) is not a release key of app shop" "$WORK/err" ||
    die "an outsider key: $(cat "$WORK/err")"
expect_rc 2 lp sign --app shop --version v2 --sign-key "$K/rel2.pem.pub.json"
grep -q "public key only" "$WORK/err" || die "a public key: $(cat "$WORK/err")"
expect_rc 4 lp sign --app shop --version v9 --sign-key "$K/rel2.pem"
ok "a key that is not a release key is refused naming $OUTSIDER; a public key (2); another version (4)"

expect_rc 0 lp sign --app shop --version v2 --sign-key "$K/rel2.pem"
grep -q "was not pinned" "$WORK/err" || die "no warning without --root: $(cat "$WORK/err")"
grep -q "was not compared with a bundle" "$WORK/err" || die "no warning without --bundle: $(cat "$WORK/err")"
grep -q "published v2 (version code 2) of app shop on beta" "$WORK/out" || die "sign v2: $(cat "$WORK/out")"
ok "sign without --root or --bundle: published, with warnings that the root was not pinned and the content not compared"

# ---- rollback, cancel, and the server-signed app --------------------------------------------
expect_rc 0 lp rollback --app shop --target v1 --sign-key "$K/rel1.pem" --sign-key "$K/rel2.pem" \
    --root "$ROOT"
grep -q "published v1 (version code 3) of app shop" "$WORK/out" || die "rollback: $(cat "$WORK/out")"
lp tuf download --metadata-dir "$WORK/device" --metadata-url "$URL/v1/apps/shop/metadata" \
    --targets-url "$URL/v1/apps/shop/targets" --out "$WORK/dl" --json releases/3.json \
    >"$WORK/tuf3.json" 2>"$WORK/tuf3.err" || die "tuf download 3: $(cat "$WORK/tuf3.err")"
cmp -s "$WORK/dl/releases/1.json" "$WORK/dl/releases/3.json" || die "rollback content differs from v1"
ok "rollback --target v1 with both keys: published as code 3, v1's content, seen by the device"

expect_rc 5 lp upload --app shop --bundle "$B2" --version v3 --json
[ "$(jq_py '(d["release"]["state"], d["sign"]["role"])' <"$WORK/out")" = "('pending', 'targets')" ] ||
    die "upload without keys --json: $(cat "$WORK/out")"

# ---- a server that lies: a proxy that alters the bytes to sign --------------------------------
# Every request goes through to the real server; in the answers that carry
# bytes to sign ("sign":{"signed":...}) the proxy alters the metadata as
# $WORK/tamper says.  The command must refuse to sign, and send nothing.
cat >"$WORK/proxy.py" <<'PYEOF'
import http.client, http.server, json, sys
upstream, mode_file = sys.argv[1], sys.argv[2]
host, port = upstream.split("//")[1].split(":")

def tamper(doc):
    mode = open(mode_file).read().strip()
    t = json.loads(doc["sign"]["signed"], strict=False)  # canonical JSON: raw control characters
    new = max(t["targets"], key=lambda n: t["targets"][n]["custom"]["version_code"])
    if mode == "drop":
        del t["targets"]["releases/2.json"]
    elif mode == "extra":
        t["targets"]["evil.bin"] = t["targets"]["releases/1.json"]
    elif mode == "version":
        t["version"] += 1
    elif mode == "expires":
        t["expires"] = "2099-01-01T00:00:00Z"
    elif mode == "code":
        t["targets"][new]["custom"]["version_code"] += 10
    elif mode == "deleg":
        t["delegations"]["roles"][0]["paths"] = ["*"]
    elif mode == "notes":
        t["targets"][new]["custom"]["notes"] = "not what was asked"
    elif mode == "content":
        # a consistent lie: the release object names the other manifest too
        t["targets"][new]["hashes"] = t["targets"]["releases/1.json"]["hashes"]
        t["targets"][new]["length"] = t["targets"]["releases/1.json"]["length"]
        doc["release"]["manifest"]["sha256"] = t["targets"][new]["hashes"]["sha256"]
    doc["sign"]["signed"] = json.dumps(t, sort_keys=True, separators=(",", ":"),
                                       ensure_ascii=False)

class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def relay(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        fwd = {k: v for k, v in self.headers.items()
               if k.lower() in ("authorization", "content-type", "content-range")}
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        c.request(self.command, self.path, body=body, headers=fwd)
        r = c.getresponse()
        data = r.read()
        if r.getheader("Content-Type", "").startswith("application/json"):
            try:
                doc = json.loads(data)
                if isinstance(doc, dict) and "signed" in doc.get("sign", {}):
                    tamper(doc)
                    data = json.dumps(doc).encode()
            except ValueError:
                pass
        self.send_response(r.status)
        for k in ("Content-Type", "WWW-Authenticate"):
            if r.getheader(k):
                self.send_header(k, r.getheader(k))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_POST = do_PUT = do_DELETE = relay

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print(srv.server_address[1], flush=True)
srv.serve_forever()
PYEOF
echo none >"$WORK/tamper"
python3 "$WORK/proxy.py" "$URL" "$WORK/tamper" >"$WORK/proxy.port" 2>"$WORK/proxy.err" &
PROXY_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/proxy.port" ] && break; sleep 0.05; done
PROXY="http://127.0.0.1:$(cat "$WORK/proxy.port")"
for case in "drop:target releases/2.json, published now, is removed" \
    "extra:they add target evil.bin" "version:their version is 5" \
    "expires:their expiry 2099-01-01T00:00:00Z is not between" \
    "code:releases/4.json is not release v3" "content:releases/4.json lists a tree manifest" \
    "deleg:field 'delegations' is not the rollout delegation"; do
    echo "${case%%:*}" >"$WORK/tamper"
    expect_rc 1 lp sign --server "$PROXY" --app shop --version v3 --sign-key "$K/rel1.pem" \
        --root "$ROOT" --bundle "$B2"
    grep -qF "refusing to sign release v3 (code 4) of app shop: ${case#*:}" "$WORK/err" ||
        die "tampered (${case%%:*}): $(cat "$WORK/err")"
done
curl -sf -H "Authorization: Bearer $LIVEPUSH_TOKEN" "$URL/api/v1/apps/shop/pending" |
    jq_py 'len(d["sign"]["signatures"])' | grep -qx 0 || die "a tampered release got a signature"
ok "a lying server (a proxy altering the bytes to sign: a target removed or added, the version, the expiry, the version code, the content, the rollout delegation widened to every path) is refused; nothing signed"
echo notes >"$WORK/tamper"
expect_rc 0 lp cancel --app shop --version v3
expect_rc 1 lp upload --server "$PROXY" --app shop --bundle "$B2" --version v3b --notes real \
    --sign-key "$K/rel1.pem" --root "$ROOT"
grep -q "the release fields of releases/5.json are .*not what was asked" "$WORK/err" ||
    die "tampered notes: $(cat "$WORK/err")"
expect_rc 0 lp cancel --app shop --version v3b
grep -q "release v3b (version code 5) of app shop withdrawn" "$WORK/out" || die "cancel: $(cat "$WORK/out")"
expect_rc 1 lp rollback --server "$PROXY" --app shop --target v2 --sign-key "$K/rel1.pem" \
    --root "$ROOT"
grep -q "the release fields of releases/6.json are .*not what was asked" "$WORK/err" ||
    die "tampered rollback: $(cat "$WORK/err")"
kill "$PROXY_PID" 2>/dev/null || true
wait "$PROXY_PID" 2>/dev/null || true
ok "upload and rollback through the proxy with altered release notes: refused to sign (exit 1)"
expect_rc 4 lp cancel --app shop --version v3b
expect_rc 0 lp cancel --app shop
expect_rc 4 lp cancel --app shop
lp releases --app shop --json >"$WORK/rels.json"
[ "$(jq_py '[(r["version"], r["state"]) for r in d["releases"]]' <"$WORK/rels.json")" = \
    "[('v2', 'withdrawn'), ('v3b', 'withdrawn'), ('v3', 'withdrawn'), ('v1', 'published'), ('v2', 'published'), ('v1', 'published')]" ] ||
    die "releases: $(cat "$WORK/rels.json")"
ok "upload without --sign-key waits (exit 5, --json answer); cancel withdraws; nothing pending then (exit 4)"

printf 'x\n' >"$WORK/one.txt"
expect_rc 2 lp upload --bundle "$WORK/one.txt" --version s1 --sign-key "$K/rel1.pem"
grep -q "signed by the server" "$WORK/err" || die "server-signed app: $(cat "$WORK/err")"
expect_rc 0 lp upload --bundle "$WORK/one.txt" --version s1
ok "--sign-key for the server-signed app is refused before uploading (exit 2); without it, published"

echo "publisher_sign: $CHECKS checks passed"
