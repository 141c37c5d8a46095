#!/usr/bin/env bash
# delta_tree.sh — `livepush delta tree make|apply` on real folders.
#   1. OLD holds a real executable (a copy of an ELF from /usr/bin), a real
#      text (a licence from /usr/share/common-licenses), a config file, a
#      file that NEW moves elsewhere, an unchanged file and a symlink; NEW
#      changes the executable (bytes inserted and changed) and the text, moves
#      the config file to another folder and changes it, renames one file,
#      keeps one, and adds a new file.  make reports 2 unchanged files,
#      3 deltas (the config file's against the old one of the same name,
#      rule 2) and 1 new file, far fewer bytes than the changed files; apply
#      rebuilds a tree equal to NEW (diff -r, the symlink, the executable bit)
#      whose unchanged and renamed files are hard links to the old ones;
#   2. apply refuses an OUT_DIR that exists;
#   3. a delta corrupted in IN_DIR (one byte flipped), a corrupted .zst, a
#      plan naming another digest, a wrong old tree: each makes apply fail
#      with a message naming what is wrong, and no OUT_DIR (nor any temporary
#      folder) is left behind;
#   4. livepush-delta, the engine's own command, does the same without
#      loading the server's libraries.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
e2e_begin deltatree python3 diff

ELF=""
for f in /usr/bin/ls /usr/bin/cp /usr/bin/sort /usr/bin/tar; do
    [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 65536 ] && { ELF=$f; break; }
done
[ -n "$ELF" ] || die "no executable to test with"
TEXT=""
for f in /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/GPL-2 \
    /usr/share/common-licenses/Apache-2.0; do
    [ -f "$f" ] && { TEXT=$f; break; }
done
[ -n "$TEXT" ] || die "no text file to test with"

O=$WORK/old N=$WORK/new
mkdir -p "$O/bin" "$O/doc" "$O/conf" "$O/lib" "$N/bin" "$N/doc" "$N/etc" "$N/lib2" "$N/extra"
cp "$ELF" "$O/bin/tool"
chmod 0755 "$O/bin/tool"
cp "$TEXT" "$O/doc/notes.txt"
python3 - "$O/conf/app.ini" "$N/etc/app.ini" <<'PYEOF'
import sys
rows = ["key%04d = value %d\n" % (i, i * 31 % 97) for i in range(3000)]
open(sys.argv[1], "w").write("".join(rows))
rows[1500] = "key1500 = changed\n"
open(sys.argv[2], "w").write("".join(rows))
PYEOF
head -c 40000 "$ELF" | od -An -tx1 >"$O/lib/moved.js"
echo "unchanged" >"$O/same.txt"
ln -s doc/notes.txt "$O/link"

python3 - "$O/bin/tool" "$N/bin/tool" <<'PYEOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
mid = len(b) // 2
b[mid:mid] = bytes(range(96))
for off in (1000, 5000, len(b) - 3000):
    b[off] ^= 0x5A
open(sys.argv[2], "wb").write(bytes(b))
PYEOF
chmod 0755 "$N/bin/tool"
sed -e 's/software/SOFTWARE/g' "$TEXT" >"$N/doc/notes.txt"
cp "$O/lib/moved.js" "$N/lib2/renamed.js"
cp "$O/same.txt" "$N/same.txt"
ln -s doc/notes.txt "$N/link"
head -c 30000 /dev/urandom | od -An -tx1 >"$N/extra/new.dat"

# ---- 1. make, apply -----------------------------------------------------------
expect_rc 0 lp delta tree make "$O" "$N" "$WORK/d" --json
got=$(jq_py '"%d %d %d %d" % (d["files"], d["same"], d["delta"], d["new"])' <"$WORK/out")
[ "$got" = "6 2 3 1" ] || die "make counts (files same delta new): $got, expected 6 2 3 1"
changed=$(($(stat -c %s "$N/bin/tool") + $(stat -c %s "$N/doc/notes.txt") + $(stat -c %s "$N/etc/app.ini")))
delta_bytes=$(jq_py 'd["delta_bytes"]' <"$WORK/out")
[ "$delta_bytes" -gt 0 ] && [ "$delta_bytes" -lt $((changed / 10)) ] ||
    die "deltas total $delta_bytes bytes for $changed bytes of changed files"
ok "make: 2 unchanged, 3 deltas ($delta_bytes bytes for $changed), 1 new file"

rule=$(jq_py '[f for f in d["files"] if f["path"] == "etc/app.ini"][0]["rule"]' <"$WORK/d/plan.json")
base=$(jq_py '[f for f in d["files"] if f["path"] == "etc/app.ini"][0]["base"]' <"$WORK/d/plan.json")
from=$(jq_py '[f for f in d["files"] if f["path"] == "lib2/renamed.js"][0]["base"]' <"$WORK/d/plan.json")
[ "$rule $base $from" = "2 conf/app.ini lib/moved.js" ] ||
    die "plan: etc/app.ini rule $rule base $base, lib2/renamed.js from $from"
n_delta=$(find "$WORK/d" -name '*.delta' | wc -l)
n_zst=$(find "$WORK/d" -name '*.zst' | wc -l)
[ "$n_delta $n_zst" = "3 1" ] || die "IN_DIR holds $n_delta deltas and $n_zst .zst files"
ok "plan.json: moved config against its old namesake (rule 2), rename is unchanged"

expect_rc 0 lp delta tree apply "$O" "$WORK/d" "$WORK/out1"
diff -r "$N" "$WORK/out1" >"$WORK/diff" 2>&1 || die "rebuilt tree differs: $(head -n 5 "$WORK/diff")"
[ "$(readlink "$WORK/out1/link")" = doc/notes.txt ] || die "symlink not rebuilt as a link"
[ -x "$WORK/out1/bin/tool" ] && [ ! -x "$WORK/out1/same.txt" ] || die "modes not rebuilt"
[ -d "$WORK/out1/extra" ] || die "folder missing"
ok "apply: rebuilt tree equals NEW (diff -r), symlink and modes kept"
[ "$(stat -c %i "$WORK/out1/same.txt")" = "$(stat -c %i "$O/same.txt")" ] &&
    [ "$(stat -c %i "$WORK/out1/lib2/renamed.js")" = "$(stat -c %i "$O/lib/moved.js")" ] ||
    die "unchanged files were not linked to the old tree's"
[ "$(stat -c %i "$WORK/out1/etc/app.ini")" != "$(stat -c %i "$O/conf/app.ini")" ] ||
    die "a changed file shares the old file's inode"
ok "apply: unchanged and renamed files are hard links to the old tree's"

# ---- 2. OUT_DIR must be new ----------------------------------------------------
expect_rc 1 lp delta tree apply "$O" "$WORK/d" "$WORK/out1"
grep -q "exists" "$WORK/err" || die "existing OUT_DIR: $(cat "$WORK/err")"
ok "apply refuses an existing OUT_DIR"

# ---- 3. refusals leave nothing -------------------------------------------------
no_out() { # NAME
    [ ! -e "$WORK/$1" ] || die "$1 was left after a failed apply"
    ! ls -d "$WORK/$1".tmp-* >/dev/null 2>&1 || die "a temporary folder of $1 was left"
}
notes_sha=$(sha256sum "$N/doc/notes.txt" | cut -d' ' -f1)
cp -r "$WORK/d" "$WORK/bad"
python3 - "$WORK/bad/$notes_sha.delta" <<'PYEOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[152 + (len(b) - 152) // 2] ^= 0x01  # in the streams, after the 152-byte header
open(p, "wb").write(bytes(b))
PYEOF
expect_rc 1 lp delta tree apply "$O" "$WORK/bad" "$WORK/out2"
grep -q "file doc/notes.txt: .*$notes_sha.delta" "$WORK/err" ||
    die "corrupted delta: message does not name the file: $(cat "$WORK/err")"
no_out out2
ok "corrupted delta refused: $(head -n 1 "$WORK/err")"

rm -rf "$WORK/bad" && cp -r "$WORK/d" "$WORK/bad"
zst=$(find "$WORK/bad" -name '*.zst')
python3 - "$zst" <<'PYEOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x10
open(p, "wb").write(bytes(b))
PYEOF
expect_rc 1 lp delta tree apply "$O" "$WORK/bad" "$WORK/out3"
grep -q "extra/new.dat" "$WORK/err" || die "corrupted .zst: $(cat "$WORK/err")"
no_out out3
ok "corrupted compressed file refused: $(head -n 1 "$WORK/err")"

rm -rf "$WORK/bad" && cp -r "$WORK/d" "$WORK/bad"
python3 - "$WORK/bad/plan.json" <<'PYEOF'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
for f in d["files"]:
    if f["path"] == "same.txt":
        f["sha256"] = "0" * 64
json.dump(d, open(p, "w"))
PYEOF
expect_rc 1 lp delta tree apply "$O" "$WORK/bad" "$WORK/out4"
grep -q "SHA-256" "$WORK/err" || die "tampered plan: $(cat "$WORK/err")"
no_out out4
ok "plan naming another digest refused: $(head -n 1 "$WORK/err")"

cp -r "$O" "$WORK/old2"
echo "changed" >"$WORK/old2/same.txt"
expect_rc 1 lp delta tree apply "$WORK/old2" "$WORK/d" "$WORK/out5"
grep -q "same.txt" "$WORK/err" || die "wrong old tree: $(cat "$WORK/err")"
no_out out5
ok "wrong old tree refused: $(head -n 1 "$WORK/err")"

# ---- 4. livepush-delta: the same commands, without the server's libraries ------------
[ -n "${LP_DELTA_BIN:-}" ] || die "LP_DELTA_BIN is not set (the build makes livepush-delta)"
deps=$(ldd "$LP_DELTA_BIN") || die "ldd $LP_DELTA_BIN"
for lib in libcurl libarchive libsqlite3 libmicrohttpd libxml2; do
    ! grep -q "$lib" <<<"$deps" || die "livepush-delta loads $lib: $deps"
done
expect_rc 0 "$LP_DELTA_BIN" tree apply "$O" "$WORK/d" "$WORK/out6"
diff -r "$N" "$WORK/out6" >"$WORK/diff" 2>&1 || die "livepush-delta tree apply: $(head -n 5 "$WORK/diff")"
expect_rc 0 "$LP_DELTA_BIN" make "$O/bin/tool" "$N/bin/tool" "$WORK/tool.delta"
expect_rc 0 lp delta make "$O/bin/tool" "$N/bin/tool" "$WORK/tool2.delta"
cmp -s "$WORK/tool.delta" "$WORK/tool2.delta" || die "livepush-delta make differs from livepush delta make"
expect_rc 0 "$LP_DELTA_BIN" apply "$O/bin/tool" "$WORK/tool.delta" "$WORK/tool.out"
cmp -s "$N/bin/tool" "$WORK/tool.out" || die "livepush-delta apply made another file"
expect_rc 2 "$LP_DELTA_BIN" serve
# --sync off: the same files, written without fsync/syncfs (the default syncs)
expect_rc 0 "$LP_DELTA_BIN" apply "$O/bin/tool" "$WORK/tool.delta" "$WORK/tool.nosync" --sync off
cmp -s "$N/bin/tool" "$WORK/tool.nosync" || die "apply --sync off made another file"
expect_rc 0 "$LP_DELTA_BIN" tree apply "$O" "$WORK/d" "$WORK/out7" --sync off
diff -r "$N" "$WORK/out7" >"$WORK/diff" 2>&1 || die "tree apply --sync off: $(head -n 5 "$WORK/diff")"
expect_rc 2 "$LP_DELTA_BIN" apply "$O/bin/tool" "$WORK/tool.delta" "$WORK/tool.x" --sync maybe
# --expect: the SHA-256 the caller trusts; a delta naming another result writes nothing
want=$(sha256sum "$N/bin/tool" | cut -d' ' -f1)
other=$(sha256sum "$O/bin/tool" | cut -d' ' -f1)
expect_rc 0 "$LP_DELTA_BIN" apply "$O/bin/tool" "$WORK/tool.delta" "$WORK/tool.exp" --expect "$want" --sync off
cmp -s "$N/bin/tool" "$WORK/tool.exp" || die "apply --expect made another file"
expect_rc 1 "$LP_DELTA_BIN" apply "$O/bin/tool" "$WORK/tool.delta" "$WORK/tool.exp2" --expect "$other"
grep -q "expected" "$WORK/err" || die "apply --expect of another result: $(cat "$WORK/err")"
[ ! -e "$WORK/tool.exp2" ] || die "apply --expect of another result wrote its output"
expect_rc 2 "$LP_DELTA_BIN" apply "$O/bin/tool" "$WORK/tool.delta" "$WORK/tool.x" --expect abc
"$LP_DELTA_BIN" info "$WORK/tool.delta" --json | grep -q "\"new_xxh128\":\"[0-9a-f]\{32\}\"" || die "info --json names no XXH3-128"
command -v strace >/dev/null || die "strace is missing (scripts/deps.txt installs it)"
{
    # (LeakSanitizer cannot run under ptrace: an ASan build's leak check is off here)
    syncs() {
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
            strace -f -e trace=fsync,fdatasync,syncfs,sync -o "$WORK/strace" "$@" \
            >"$WORK/strace.out" 2>&1 || die "$* failed: $(tail -n 3 "$WORK/strace.out")"
        grep -c 'sync' "$WORK/strace" || true
    }
    [ "$(syncs "$LP_DELTA_BIN" apply "$O/bin/tool" "$WORK/tool.delta" "$WORK/t1")" -ge 2 ] || die "apply does not sync"
    [ "$(syncs "$LP_DELTA_BIN" apply "$O/bin/tool" "$WORK/tool.delta" "$WORK/t2" --sync off)" = 0 ] || die "apply --sync off syncs"
    [ "$(syncs "$LP_DELTA_BIN" tree apply "$O" "$WORK/d" "$WORK/out8")" -ge 2 ] || die "tree apply does not sync"
    [ "$(syncs "$LP_DELTA_BIN" tree apply "$O" "$WORK/d" "$WORK/out9" --sync off)" = 0 ] || die "tree apply --sync off syncs"
}
ok "livepush-delta: tree apply, make (same bytes as livepush delta make), apply (--expect), info; no server libraries"

echo "delta_tree: all $CHECKS checks passed"
