#!/usr/bin/env bash
# serve_publish.sh — publishing through the real server, end to end.
#
# `livepush serve` runs on loopback with a fresh data folder and small
# bundle limits.  With the real CLI and curl:
#   1. a folder, a tar, a tar.gz, a zip and a single file are each published;
#      for each, a fresh TUF client refreshes from the server and downloads
#      the release's tree manifest (signature chain and hashes verified), and
#      every file the manifest names is fetched from /v1/blobs/<sha256> and
#      must equal the source file byte for byte;
#   2. a blob download broken half-way resumes with Range (206), and a range
#      past the end answers 416;
#   3. a repeated metadata check with If-None-Match answers 304, and a new
#      publish changes the answer;
#   4. two publishers race on one app: every upload succeeds with its own
#      version code and the repository lists them all;
#   5. each kind of unsafe or oversized bundle is refused with exit 4 and a
#      message naming the entry or the limit, and nothing is stored: the
#      blob store's files and the release list are unchanged, and the CLI
#      deleted each refused upload on the server.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
e2e_begin publish curl python3 zip tar sha256sum

DATA=$WORK/data
start_server --listen 127.0.0.1:0 --data-dir "$DATA" --max-bundle-entries 200 \
    --max-bundle-bytes 5000000 --max-bundle-ratio 50
export LIVEPUSH_SERVER=$URL
TOKEN=$(tr -d '\n' <"$DATA/admin.token")
export LIVEPUSH_TOKEN=$TOKEN
export XDG_CACHE_HOME=$WORK/cache
MURL=$URL/v1/apps/default/metadata
TURL=$URL/v1/apps/default/targets

# ---- 1. every bundle format ------------------------------------------------
SRC=$WORK/src
mkdir -p "$SRC/bin" "$SRC/share/doc"
printf 'main program\n' >"$SRC/bin/app"
chmod 755 "$SRC/bin/app"
head -c 300000 /dev/urandom >"$SRC/share/data.bin"
printf 'read me\n' >"$SRC/share/doc/README"
ln -s ../share/doc/README "$SRC/bin/README"
tar -cf "$WORK/b.tar" -C "$SRC" .
tar -czf "$WORK/b.tar.gz" -C "$SRC" .
(cd "$SRC" && zip -qry "$WORK/b.zip" .)
head -c 3000000 /dev/urandom >"$WORK/big.bin"

# check_release CODE SRCDIR — TUF download of releases/CODE.json, then every
# file of the manifest from the blob route, compared with SRCDIR.
check_release() {
    local code=$1 src=$2 c=$WORK/client-$1
    lp tuf init --metadata-dir "$c" --root "$DATA/repos/default/metadata/1.root.json" >/dev/null
    lp tuf download --metadata-dir "$c" --metadata-url "$MURL" --targets-url "$TURL" \
        --out "$c/out" "releases/$code.json" >/dev/null || die "TUF download of releases/$code.json"
    python3 - "$c/out/releases/$code.json" "$src" "$URL" <<'PY' || die "release $code: blobs differ from the source"
import hashlib, json, os, sys, urllib.request
manifest, src, url = sys.argv[1], sys.argv[2], sys.argv[3]
m = json.load(open(manifest))
n = 0
for e in m["entries"]:
    p = os.path.join(src, e["path"])
    if e["type"] == "file":
        body = urllib.request.urlopen(url + "/v1/blobs/" + e["sha256"]).read()
        assert hashlib.sha256(body).hexdigest() == e["sha256"], e["path"]
        assert body == open(p, "rb").read(), e["path"]
        assert len(body) == e["size"]
        n += 1
    elif e["type"] == "symlink":
        assert os.readlink(p) == e["target"], e["path"]
assert n > 0
PY
}

code=0
for kind in folder tar tar.gz zip file; do
    case $kind in
    folder) bundle=$SRC src=$SRC ;;
    file) bundle=$WORK/big.bin src=$WORK/single; mkdir -p "$src"; cp "$WORK/big.bin" "$src/big.bin" ;;
    *) bundle=$WORK/b.$kind src=$SRC ;;
    esac
    lp upload --bundle "$bundle" --version "f-$kind" >"$WORK/up.out" 2>"$WORK/up.err" ||
        die "upload of the $kind bundle: $(cat "$WORK/up.err")"
    code=$((code + 1))
    check_release "$code" "$src"
    ok "$kind bundle published as code $code; TUF client verified its tree and every blob matches"
done

# ---- 2. a broken download resumes with Range -----------------------------
BIG_SHA=$(sha256sum "$WORK/big.bin" | cut -d' ' -f1)
curl -sS -o "$WORK/part" -r 0-999999 "$URL/v1/blobs/$BIG_SHA"
[ "$(stat -c %s "$WORK/part")" = 1000000 ] || die "first part"
st=$(curl -sS -C - -o "$WORK/part" -w '%{http_code}' "$URL/v1/blobs/$BIG_SHA")
[ "$st" = 206 ] || die "resume answered $st, expected 206"
cmp -s "$WORK/part" "$WORK/big.bin" || die "resumed download differs"
st=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Range: bytes=3000000-' "$URL/v1/blobs/$BIG_SHA")
[ "$st" = 416 ] || die "range past the end answered $st, expected 416"
ok "a blob download broken after 1 MB resumed with Range (206) and is intact; past the end: 416"

# ---- 3. a repeated check costs a 304 --------------------------------------
etag=$(curl -sS -D - -o /dev/null "$MURL/timestamp.json" | tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
[ -n "$etag" ] || die "no ETag on timestamp.json"
st=$(curl -sS -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$MURL/timestamp.json")
[ "$st" = 304 ] || die "repeated check answered $st, expected 304"
lp upload --bundle "$WORK/b.tar.gz" --version after-etag >/dev/null 2>&1 || die "upload"
code=$((code + 1))
st=$(curl -sS -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$MURL/timestamp.json")
[ "$st" = 200 ] || die "after a publish the old ETag answered $st, expected 200"
ok "repeated timestamp check: 304; after a new publish: 200"

# ---- 4. two publishers racing on one app -----------------------------------
racer() {
    for i in 1 2 3 4; do
        XDG_CACHE_HOME=$WORK/cache-$1 lp upload --bundle "$WORK/b.tar.gz" --version "race-$1-$i" \
            >/dev/null 2>>"$WORK/race-$1.err" || echo "fail $1 $i" >>"$WORK/race.fail"
    done
}
racer a & A=$!
racer b & B=$!
wait $A $B
[ ! -s "$WORK/race.fail" ] || die "racing uploads failed: $(cat "$WORK/race.fail" "$WORK"/race-*.err)"
lp releases --json --limit 100 >"$WORK/rel.json"
python3 - "$WORK/rel.json" "$code" <<'PY' || die "racing publishers: codes not distinct and consecutive"
import json, sys
rels = json.load(open(sys.argv[1]))["releases"]
codes = sorted(r["version_code"] for r in rels if r["version"].startswith("race-"))
base = int(sys.argv[2])
assert codes == list(range(base + 1, base + 9)), codes
PY
c=$WORK/client-race
lp tuf init --metadata-dir "$c" --root "$DATA/repos/default/metadata/1.root.json" >/dev/null
names=""
for i in $(seq $((code + 1)) $((code + 8))); do names="$names releases/$i.json"; done
# shellcheck disable=SC2086
lp tuf download --metadata-dir "$c" --metadata-url "$MURL" --targets-url "$TURL" --out "$c/out" $names \
    >/dev/null || die "TUF client does not find every raced release"
code=$((code + 8))
ok "two publishers x 4 uploads: 8 releases with codes $((code - 7))..$code, all served"

# ---- 5. refused bundles leave nothing behind -------------------------------
python3 - "$WORK/bad" <<'PY'
import io, os, sys, tarfile
out = sys.argv[1]
os.makedirs(out)
def tar(name, members, mode="w"):
    with tarfile.open(os.path.join(out, name), mode) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
def f(path, data=b"x"):
    i = tarfile.TarInfo(path); i.size = len(data); return (i, data)
def special(path, typ, **kw):
    i = tarfile.TarInfo(path); i.type = typ
    for k, v in kw.items(): setattr(i, k, v)
    return (i, None)
tar("absolute.tar", [f("/etc/evil")])
tar("dotdot.tar", [f("ok.txt"), f("../evil.txt")])
tar("symlink-escape.tar", [special("out", tarfile.SYMTYPE, linkname="../../etc"), f("out/passwd")])
tar("symlink-absolute.tar", [special("abs", tarfile.SYMTYPE, linkname="/etc/passwd")])
tar("device.tar", [special("dev-null", tarfile.CHRTYPE, devmajor=1, devminor=3)])
tar("fifo.tar", [special("a-fifo", tarfile.FIFOTYPE)])
tar("duplicate.tar", [f("twice.txt", b"1"), f("twice.txt", b"2")])
tar("hardlink-outside.tar", [special("hl", tarfile.LNKTYPE, linkname="../outside")])
tar("too-many-files.tar", [f("n/%d" % i) for i in range(300)])
tar("too-many-bytes.tar", [f("big", os.urandom(6000000))])
tar("ratio.tar.gz", [f("zeros", bytes(4000000))], "w:gz")
PY
blobs_before=$(find "$DATA/blobs" -type f -not -path '*/tmp/*' | sort | sha256sum)
lp releases --json --limit 1000 >"$WORK/before.json"
expect_refused() { # FILE WORD — exit 4, the message contains WORD
    local f=$1 word=$2 rc=0
    lp upload --bundle "$WORK/bad/$f" --version "bad-$f" >/dev/null 2>"$WORK/bad.err" || rc=$?
    [ "$rc" = 4 ] || die "$f: exit $rc, expected 4: $(cat "$WORK/bad.err")"
    grep -q -- "$word" "$WORK/bad.err" || die "$f: message does not name '$word': $(cat "$WORK/bad.err")"
    echo "   $f: $(head -c 300 "$WORK/bad.err")"
}
expect_refused absolute.tar "/etc/evil"
expect_refused dotdot.tar "../evil.txt"
expect_refused symlink-escape.tar "out"
expect_refused symlink-absolute.tar "abs"
expect_refused device.tar "dev-null"
expect_refused fifo.tar "a-fifo"
expect_refused duplicate.tar "twice.txt"
expect_refused hardlink-outside.tar "hl"
expect_refused too-many-files.tar "200"
expect_refused too-many-bytes.tar "big"
expect_refused ratio.tar.gz "ratio"
blobs_after=$(find "$DATA/blobs" -type f -not -path '*/tmp/*' | sort | sha256sum)
[ "$blobs_before" = "$blobs_after" ] || die "a refused bundle left blobs in the store"
lp releases --json --limit 1000 >"$WORK/after.json"
cmp -s "$WORK/before.json" "$WORK/after.json" || die "a refused bundle changed the release list"
left=$(find "$DATA/uploads" -type f | wc -l)
[ "$left" = 0 ] || die "refused bundles left $left upload files on the server"
ok "11 kinds of bad bundle refused (exit 4, entry or limit named); blob store and releases unchanged, no upload left behind"

echo "all $CHECKS checks passed"
