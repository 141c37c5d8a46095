# device_e2e.sh — what the device end-to-end tests (tests/e2e/agent_*.sh)
# share, on top of e2e.sh.  Sourced after e2e.sh and e2e_begin:
#
#   device_setup [SERVE ARGS]  starts the server (start_server) on a new data
#                              folder DATA; exports LIVEPUSH_SERVER and
#                              LIVEPUSH_TOKEN for the publisher commands; sets
#                              ROOTJSON (the app's first root.json) and ROOT
#                              (the device's install root, not made yet)
#   mk_release NAME EXIT [FILE=CONTENT...]
#                              a bundle folder $WORK/src/NAME: bin/app (a
#                              script that prints "app NAME" and exits EXIT),
#                              share/common.bin (the same 200 KB in every
#                              release), notes.txt (unique), a symlink
#                              doc -> notes.txt, and extra files
#   publish NAME [UPLOAD ARGS] `livepush upload` of $WORK/src/NAME as version
#                              NAME; prints nothing, dies on failure
#   AGENT_BIN                  the device command: livepush-agent (LP_AGENT_BIN)
#                              when the build made it, else livepush
#   agent_once [ARGS]          `livepush-agent agent --once` on ROOT (log
#                              appended to $WORK/agent.err); returns its exit code
#   dev SUB [ARGS]             `livepush-agent device SUB --root ROOT ARGS`
#   status_py EXPR             EXPR of `device status --json` (bound to d)
#   current_is NAME            dies unless ROOT/current holds exactly the files
#                              of $WORK/src/NAME (types, modes, content,
#                              symlink targets, nothing else)
#   tree_same A B              0 when folders A and B hold the same tree (file
#                              modes compared as releases store them: 0755
#                              with any execute bit, else 0644)
#   server_events              the server's events of this device as JSON
#                              (livepush events --json --device ID) on stdout

AGENT_BIN=${LP_AGENT_BIN:-$LP_BIN}

device_setup() {
    DATA=$WORK/data
    start_server --listen 127.0.0.1:0 --data-dir "$DATA" "$@"
    export LIVEPUSH_SERVER=$URL
    LIVEPUSH_TOKEN=$(tr -d '\n' <"$DATA/admin.token")
    export LIVEPUSH_TOKEN
    export XDG_CACHE_HOME=$WORK/cache
    ROOTJSON=$DATA/repos/default/metadata/1.root.json
    ROOT=$WORK/root
    COMMON=$WORK/common.bin
    head -c 200000 /dev/urandom >"$COMMON"
    E2E_LOGS="$WORK/server.err $WORK/agent.err"
}

mk_release() {
    local name=$1 code=$2 d=$WORK/src/$1 kv
    shift 2
    rm -rf "$d"
    mkdir -p "$d/bin" "$d/share"
    printf '#!/bin/sh\necho "app %s"\nexit %s\n' "$name" "$code" >"$d/bin/app"
    chmod 755 "$d/bin/app"
    cp "$COMMON" "$d/share/common.bin"
    printf 'release %s\n' "$name" >"$d/notes.txt"
    ln -s notes.txt "$d/doc"
    for kv in "$@"; do
        mkdir -p "$(dirname "$d/${kv%%=*}")"
        printf '%s' "${kv#*=}" >"$d/${kv%%=*}"
    done
}

publish() {
    local name=$1
    shift
    lp upload --bundle "$WORK/src/$name" --version "$name" "$@" >"$WORK/up.out" 2>"$WORK/up.err" ||
        die "upload of $name: $(cat "$WORK/up.err")"
}

agent_once() {
    "$AGENT_BIN" agent --once --server "$URL" --root "$ROOT" --trusted-root "$ROOTJSON" \
        --jitter 0 --log-format json "$@" 2>>"$WORK/agent.err"
}

dev() {
    local sub=$1
    shift
    "$AGENT_BIN" device "$sub" --root "$ROOT" "$@"
}

status_py() { dev status --json | jq_py "$1"; }

tree_same() {
    python3 - "$1" "$2" <<'PYEOF'
import os, stat, sys
def tree(top):
    out = {}
    for dirpath, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, top)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", 0o755)
            else:
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                out[rel] = ("file", mode, open(p, "rb").read())
    return out
a, b = tree(sys.argv[1]), tree(sys.argv[2])
if a != b:
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            print("differs at %s: %r vs %r" % (k, str(a.get(k))[:80], str(b.get(k))[:80]),
                  file=sys.stderr)
            break
    sys.exit(1)
PYEOF
}

current_is() {
    [ -L "$ROOT/current" ] || die "$ROOT/current is not a symlink"
    tree_same "$ROOT/current/" "$WORK/src/$1" || die "current is not exactly release $1"
}

server_events() {
    local id
    id=$(status_py 'd["device_id"]')
    lp events --json --device "$id" --limit 1000
}
