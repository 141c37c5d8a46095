#!/usr/bin/env bash
# audit.sh — the audit log end to end, with the livepush command and a real
# server, and tampering done with the sqlite3 tool on copies of its
# database:
#   - `livepush serve` on a new data folder; an app, an upload token and a
#     release made with the CLI; `livepush audit list` (table, --app,
#     --json) shows each action with the token that did it; a read token
#     is refused (exit 3);
#   - every entry's hash recomputed here in Python from the rows, as
#     docs/audit.md defines it (canonical JSON, SHA-256), and the file
#     audit.head holding one line per entry;
#   - `livepush audit verify` on the live database: exit 0, "audit log
#     intact: N entries, head N HASH", checked against audit.head next to
#     the database;
#   - the triggers refuse UPDATE and DELETE through sqlite3;
#   - a copy with the trigger dropped and one entry changed: exit 1 naming
#     the entry; a copy with a middle entry deleted: exit 1 naming the gap;
#     a copy with its newest entry deleted: intact without a head (the
#     command warns it cannot tell), exit 1 with --head or with the
#     --expect SEQ:HASH noted earlier;
#   - the server started on the cut database logs that the log no longer
#     holds the entry audit.head records;
#   - usage errors exit 2, a missing database file exits 1.
set -euo pipefail

. "$LP_SOURCE_DIR/tests/support/e2e.sh"
e2e_begin audit sqlite3 python3

unset LIVEPUSH_SERVER LIVEPUSH_TOKEN LIVEPUSH_APP LIVEPUSH_TIMEOUT LIVEPUSH_UPLOAD_CHUNK
export XDG_CACHE_HOME="$WORK/cache"
D="$WORK/data"
start_server --listen 127.0.0.1:0 --data-dir "$D"
export LIVEPUSH_SERVER="$URL"
ADMIN="$D/admin.token"
ok "server listening on $URL"

# ---- actions, through the command -------------------------------------------------------
expect_rc 0 lp app create shop --token-file "$ADMIN"
expect_rc 0 lp token create --name ci --scope upload --token-file "$ADMIN"
UP=$(cat "$WORK/out")
UP_ID=$(echo "$UP" | cut -d_ -f2)
expect_rc 0 lp token create --name reader --scope read --token-file "$ADMIN"
READ=$(cat "$WORK/out")
printf 'version one\n' >"$WORK/app.txt"
expect_rc 0 lp upload --app shop --bundle "$WORK/app.txt" --version 1.0 --channel beta --token "$UP"
ADMIN_ID=$(cut -d_ -f2 <"$ADMIN")
ok "app shop, token $UP_ID and release 1.0 made with the CLI"

expect_rc 0 lp audit list --token-file "$ADMIN"
grep -E "^[0-9]+ .* token:$ADMIN_ID +app\.created +shop " "$WORK/out" >/dev/null ||
    die "audit list: no app.created: $(cat "$WORK/out")"
grep -E "^[0-9]+ .* token:$ADMIN_ID +token\.created +- +$UP_ID " "$WORK/out" >/dev/null ||
    die "audit list: no token.created: $(cat "$WORK/out")"
grep -E "^[0-9]+ .* token:$UP_ID +release\.published +shop +1\.0 +\{\"channels\":\[\"beta\"\]" \
    "$WORK/out" >/dev/null || die "audit list: no release.published: $(cat "$WORK/out")"
ok "audit list: app, token and release with their actors"
expect_rc 0 lp audit list --app shop --json --token-file "$ADMIN"
python3 - "$WORK/out" "$UP_ID" <<'PYEOF' || die "audit list --app shop --json: $(cat "$WORK/out")"
import json, sys
d = json.load(open(sys.argv[1]))
acts = [(e["action"], e["actor"]) for e in d["entries"]]
assert all(e["app"] == "shop" for e in d["entries"]), acts
assert ("release.published", "token:" + sys.argv[2]) in acts, acts
rel = [e for e in d["entries"] if e["action"] == "release.published"][0]
assert rel["subject"] == "1.0" and rel["details"]["version_code"] == 1, rel
assert d["next"] is None
PYEOF
expect_rc 0 lp audit list --limit 2 --token-file "$ADMIN"
grep -q -- "(more: --after 2)" "$WORK/out" || die "audit list --limit 2: $(cat "$WORK/out")"
expect_rc 3 lp audit list --token "$READ"
grep -q "HTTP 403" "$WORK/err" || die "read token: $(cat "$WORK/err")"
ok "audit list --app --json, paging, and a read token refused (exit 3)"

# ---- the hash, recomputed here ----------------------------------------------------------------
python3 - "$D/livepush.db" "$D/audit.head" <<'PYEOF' || die "hashes recomputed in Python differ"
import hashlib, json, sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
prev = "0" * 64
n = 0
for seq, at, actor, action, app, subject, details, prev_hash, h in db.execute(
        "SELECT seq, at, actor, action, app, subject, details, prev_hash, hash "
        "FROM audit ORDER BY seq"):
    doc = {"seq": seq, "at": at, "actor": actor, "action": action, "app": app,
           "subject": subject, "details": json.loads(details), "prev_hash": prev_hash}
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canon.encode()).hexdigest() == h, seq
    assert prev_hash == prev, seq
    prev, n = h, seq
lines = [json.loads(l) for l in open(sys.argv[2])]
assert len(lines) == n and lines[-1] == {"seq": n, "hash": prev}, lines[-1]
print(n, prev)
PYEOF
ok "every entry's hash is SHA-256 of its canonical JSON; audit.head has one line per entry"

# ---- verify ------------------------------------------------------------------------------
expect_rc 0 lp audit verify --db "sqlite:$D/livepush.db"
N=$(sed -n 's/^audit log intact: \([0-9]*\) entries, head \1 [0-9a-f]\{64\}$/\1/p' "$WORK/out")
[ -n "$N" ] || die "verify: $(cat "$WORK/out")"
HEAD_HASH=$(sed -n 's/^audit log intact: .* head [0-9]* \([0-9a-f]\{64\}\)$/\1/p' "$WORK/out")
grep -q "as $D/audit.head records it" "$WORK/out" || die "verify used no head: $(cat "$WORK/out")"
ok "verify on the live database: $(head -n 1 "$WORK/out")"
stop_server

if sqlite3 "$D/livepush.db" "UPDATE audit SET actor = 'x' WHERE seq = 1" 2>"$WORK/err"; then
    die "sqlite3 changed an audit entry"
fi
grep -q "audit entries cannot be changed" "$WORK/err" || die "update: $(cat "$WORK/err")"
if sqlite3 "$D/livepush.db" "DELETE FROM audit WHERE seq = $N" 2>"$WORK/err"; then
    die "sqlite3 removed an audit entry"
fi
grep -q "audit entries cannot be removed" "$WORK/err" || die "delete: $(cat "$WORK/err")"
expect_rc 0 lp audit verify --db "sqlite:$D/livepush.db"
ok "the triggers refuse UPDATE and DELETE"

# copies in folders of their own (no audit.head next to them)
copy() {
    mkdir -p "$WORK/$1"
    sqlite3 "$D/livepush.db" ".backup '$WORK/$1/livepush.db'"
}

copy changed
sqlite3 "$WORK/changed/livepush.db" \
    "DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'token:someone-else' WHERE seq = 3"
expect_rc 1 lp audit verify --db "sqlite:$WORK/changed/livepush.db" --head "$D/audit.head"
grep -qx "audit entry 3 was changed: its hash does not match its contents" "$WORK/out" ||
    die "changed entry: $(cat "$WORK/out")"
ok "a changed entry: exit 1, $(cat "$WORK/out")"

copy gap
sqlite3 "$WORK/gap/livepush.db" "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 4"
expect_rc 1 lp audit verify --db "sqlite:$WORK/gap/livepush.db"
grep -qx "audit entry 4 is missing (entries go from 3 to 5)" "$WORK/out" ||
    die "middle entry deleted: $(cat "$WORK/out")"
ok "a middle entry deleted: exit 1, $(cat "$WORK/out")"

copy cut
sqlite3 "$WORK/cut/livepush.db" "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = $N"
expect_rc 0 lp audit verify --db "sqlite:$WORK/cut/livepush.db"
grep -q "no head recorded" "$WORK/err" || die "no warning without a head: $(cat "$WORK/err")"
grep -q "^audit log intact: $((N - 1)) entries" "$WORK/out" || die "cut: $(cat "$WORK/out")"
ok "the newest entry deleted, no head: the chain looks whole (and the command says it cannot tell)"
expect_rc 1 lp audit verify --db "sqlite:$WORK/cut/livepush.db" --head "$D/audit.head"
grep -qx "audit log ends at entry $((N - 1)) but $D/audit.head records entry $N" "$WORK/out" ||
    die "cut with head: $(cat "$WORK/out")"
ok "with the head file: exit 1, $(cat "$WORK/out")"
expect_rc 1 lp audit verify --db "sqlite:$WORK/cut/livepush.db" --expect "$N:$HEAD_HASH"
grep -q "records entry $N" "$WORK/out" || die "cut with --expect: $(cat "$WORK/out")"
expect_rc 0 lp audit verify --db "sqlite:$D/livepush.db" --expect "$N:$HEAD_HASH"
ok "with --expect $N:HASH noted earlier: exit 1 on the cut copy, 0 on the original"

# the server on the cut database notices at start
cp "$WORK/cut/livepush.db" "$D/livepush.db"
rm -f "$D/livepush.db-wal" "$D/livepush.db-shm"
start_server --listen 127.0.0.1:0 --data-dir "$D"
grep -q "audit log does not match its head file" "$WORK/server.err" ||
    die "no error at start: $(tail -n 5 "$WORK/server.err")"
stop_server
ok "the server started on the cut database logs that it does not match audit.head"

# ---- usage ------------------------------------------------------------------------------------
expect_rc 2 lp audit verify
expect_rc 2 lp audit verify --db "sqlite:$D/livepush.db" --head "$D/audit.head" \
    --expect "1:$HEAD_HASH"
expect_rc 2 lp audit verify --db "sqlite:$D/livepush.db" --expect 1:abc
expect_rc 2 lp audit frobnicate
expect_rc 2 lp audit verify --db "sqlite:$D/livepush.db" --server "$URL"
expect_rc 1 lp audit verify --db "sqlite:$WORK/none/livepush.db"
[ ! -e "$WORK/none" ] || die "verify made a database"
expect_rc 1 lp audit verify --db "sqlite:$D/livepush.db" --head "$WORK/no-such.head"
expect_rc 0 lp audit --help
ok "usage errors exit 2; a missing database or head file exits 1"
