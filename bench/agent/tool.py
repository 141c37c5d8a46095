#!/usr/bin/env python3
"""tool.py — the data and the report of bench/agent/run.

    tool.py tree OUT SEED NAME FILES FILE_BYTES   writes a release tree
    tool.py change TREE SEED NAME                  rewrites TREE/bin/app (v2)
    tool.py digest DIR                             prints the digest of a tree
    tool.py report RESULTS                         prints the Markdown tables

A tree is, from the seed text alone (so every run makes the same bytes):

    bin/app                1 MiB, mode 0755   (the file a new release changes)
    bin/run -> app         symlink
    data/dNN/fNNNN.bin     FILES files of FILE_BYTES each, 64 per folder
    etc/conf-NN.json       32 small files, 100 to 7850 bytes
    share/doc/README.txt   a small file
    logs/                  an empty folder

Each file's bytes are SHAKE-256 of "<seed>/<name>/<path>[/<variant>]": a
pseudo-random stream, so nothing compresses.  Folders are 0755, files 0644
except bin/app.

The digest of a tree is the SHA-256 of its sorted listing: for every entry
its path, type and permission bits, and for a file its size and SHA-256, for
a symlink its target.  Two trees with the same digest hold the same files
with the same contents and modes; times and owners are left out (livepush
does not carry them).  A symlink given as DIR is followed (DIR/current).
"""
import hashlib
import json
import os
import statistics
import stat
import sys

APP_BYTES = 1 << 20
PER_FOLDER = 64


def content(seed, name, path, size, variant=""):
    label = f"{seed}/{name}/{path}" + (f"/{variant}" if variant else "")
    return hashlib.shake_256(label.encode()).digest(size)


def write(path, data, mode):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def make_tree(out, seed, name, files, file_bytes):
    os.umask(0o022)
    os.makedirs(out, mode=0o755)
    write(os.path.join(out, "bin/app"), content(seed, name, "bin/app", APP_BYTES), 0o755)
    os.symlink("app", os.path.join(out, "bin/run"))
    for i in range(files):
        rel = f"data/d{i // PER_FOLDER:02d}/f{i:04d}.bin"
        write(os.path.join(out, rel), content(seed, name, rel, file_bytes), 0o644)
    for i in range(32):
        rel = f"etc/conf-{i:02d}.json"
        write(os.path.join(out, rel), content(seed, name, rel, 100 + 250 * i), 0o644)
    write(os.path.join(out, "share/doc/README.txt"), b"bench/agent release tree\n", 0o644)
    os.makedirs(os.path.join(out, "logs"), mode=0o755)
    for d, subdirs, _ in os.walk(out):
        os.chmod(d, 0o755)


def change(tree, seed, name):
    """v2: bin/app gets new bytes (a new file, never written in place: the
    tree shares its other files with v1 as hard links).  Its modification
    time is set a minute after v1's: rsync's quick check compares size and
    whole seconds, and would take a same-size file written within the same
    second for unchanged."""
    p = os.path.join(tree, "bin/app")
    old = os.stat(p)
    os.unlink(p)
    write(p, content(seed, name, "bin/app", APP_BYTES, "v2"), 0o755)
    t = old.st_mtime_ns + 60 * 10**9
    os.utime(p, ns=(t, t))


def digest(top):
    top = os.path.realpath(top)
    lines = []
    files = total = 0
    for d, subdirs, names in os.walk(top):
        subdirs.sort()
        for n in sorted(subdirs + names):
            p = os.path.join(d, n)
            rel = os.path.relpath(p, top)
            st = os.lstat(p)
            perm = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                lines.append(f"l {rel} {os.readlink(p)}")
            elif stat.S_ISDIR(st.st_mode):
                lines.append(f"d {rel} {perm:o}")
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    while True:
                        b = f.read(1 << 20)
                        if not b:
                            break
                        h.update(b)
                lines.append(f"f {rel} {perm:o} {st.st_size} {h.hexdigest()}")
                files += 1
                total += st.st_size
            else:
                lines.append(f"? {rel}")
    lines.sort()
    listing = "\n".join(lines).encode()
    print(hashlib.sha256(listing).hexdigest(), files, total)


# ---- report ---------------------------------------------------------------------

NAMES = {
    "livepush": "livepush",
    "agent-once": "livepush-agent agent --once",
    "curl-tar": "curl \\| tar",
    "curl-tar-fsync": "curl \\| tar + fsync",
    "rsync": "rsync",
    "rsync-fsync": "rsync --fsync",
}
STEPS = {"install": "install v1 (empty device)", "apply": "apply v2 (one file changed)"}


def med(values):
    return statistics.median(values)


def cell(values, fmt):
    return "{} ({}–{})".format(fmt.format(med(values)), fmt.format(min(values)),
                               fmt.format(max(values)))


def human_bytes(n):
    if n >= 1 << 30:
        return f"{n / (1 << 30):.3f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.2f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} B"


def report(path):
    rows = [json.loads(line) for line in open(path)]
    trees, cands = [], []
    for r in rows:
        if r["tree"] not in trees:
            trees.append(r["tree"])
        if r["candidate"] not in cands:
            cands.append(r["candidate"])
    cands.sort(key=lambda c: list(NAMES).index(c) if c in NAMES else 99)
    groups = {}
    for r in rows:
        groups.setdefault((r["tree"], r["step"], r["candidate"]), []).append(r)
    # a tree is named by what it holds: "1.001 GiB in 1058 files"
    label = {}
    for r in rows:
        label[r["tree"]] = f"{human_bytes(r['tree_bytes'])} in {r['tree_files']} files"

    print("| tree | step | candidate | wall time (s) | peak RSS (MiB) | CPU (s) "
          "| bytes received | time: livepush / peer | RSS: livepush / peer |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for tree in trees:
        for step in STEPS:
            lp = groups.get((tree, step, "livepush"))
            for c in cands:
                g = groups.get((tree, step, c))
                if not g:
                    continue
                wall = [r["wall_s"] for r in g]
                rss = [r["rss_kib"] / 1024 for r in g]
                cpu = [r["cpu_s"] for r in g]
                nbytes = med([r["bytes"] for r in g])
                if c == "livepush" or not lp:
                    rt = rr = "—"
                else:
                    rt = "**{:.2f}**".format(med([r["wall_s"] for r in lp]) / med(wall))
                    rr = "**{:.2f}**".format(med([r["rss_kib"] for r in lp]) /
                                             med([r["rss_kib"] for r in g]))
                print(f"| {label[tree]} | {STEPS[step]} | {NAMES.get(c, c)} | {cell(wall, '{:.2f}')} "
                      f"| {cell(rss, '{:.1f}')} | {cell(cpu, '{:.2f}')} | {human_bytes(nbytes)} "
                      f"| {rt} | {rr} |")

    print()
    print("livepush phases (ms, median of the rounds) and staging counts:")
    print()
    print("| tree | step | open | check | stage | activate | total | files linked "
          "| fetched | bytes fetched | peak RSS after check / stage (MiB) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for tree in trees:
        for step in STEPS:
            g = groups.get((tree, step, "livepush"))
            if not g:
                continue
            ph = {k: med([r["driver"]["ms"][k] for r in g])
                  for k in ("open", "check", "stage", "activate", "total")}
            st = g[0]["driver"]["stage"]
            rs = g[0]["driver"]["peak_rss_kib"]
            print(f"| {label[tree]} | {step} | {ph['open']:.0f} | {ph['check']:.0f} | {ph['stage']:.0f} "
                  f"| {ph['activate']:.0f} | {ph['total']:.0f} | {st['linked']} | {st['fetched']} "
                  f"| {human_bytes(st['bytes_fetched'])} | {rs['check'] / 1024:.1f} / "
                  f"{rs['stage'] / 1024:.1f} |")

    parts = [r for r in rows if r.get("parts_rss_kib")]
    if parts:
        print()
        print("curl \\| tar: peak RSS of each process (MiB; they run at the same time):")
        print()
        print("| tree | step | candidate | curl | tar | curl + tar |")
        print("| --- | --- | --- | ---: | ---: | ---: |")
        for tree in trees:
            for step in STEPS:
                for c in cands:
                    g = [r for r in parts if (r["tree"], r["step"], r["candidate"]) == (tree, step, c)]
                    if not g:
                        continue
                    cu = [r["parts_rss_kib"]["curl"] / 1024 for r in g]
                    ta = [r["parts_rss_kib"]["tar"] / 1024 for r in g]
                    both = [a + b for a, b in zip(cu, ta)]
                    print(f"| {label[tree]} | {step} | {NAMES.get(c, c)} "
                          f"| {cell(cu, '{:.1f}')} | {cell(ta, '{:.1f}')} | {cell(both, '{:.1f}')} |")

    verify = [r for r in rows if r.get("verify_ms") is not None]
    if verify:
        print()
        print("lp_updater_verify of the applied release: as the agent runs it before "
              "activating (files whose content staging checked, or linked unchanged from a "
              "checked file, are not read), and with verify_all (every file read):")
        print()
        print("| tree | files | verify (ms) | files read | verify_all (ms) | files read "
              "| peak RSS (MiB) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for tree in trees:
            g = [r for r in verify if r["tree"] == tree]
            if g:
                v = [r["verify_ms"] for r in g]
                print(f"| {label[tree]} | {v[0]['files']} "
                      f"| {cell([x['ms']['verify'] for x in v], '{:.0f}')} "
                      f"| {cell([x['files_read']['verify'] for x in v], '{:.0f}')} "
                      f"| {cell([x['ms']['verify_all'] for x in v], '{:.0f}')} "
                      f"| {cell([x['files_read']['verify_all'] for x in v], '{:.0f}')} "
                      f"| {cell([r['verify_rss_kib'] / 1024 for r in g], '{:.1f}')} |")

    # the apply must not grow with the unchanged bytes: compare the trees
    if len(trees) >= 2:
        a, b = trees[0], trees[1]
        ga, gb = groups.get((a, "apply", "livepush")), groups.get((b, "apply", "livepush"))
        if ga and gb:
            print()
            ma = med([r["wall_s"] for r in ga])
            mb = med([r["wall_s"] for r in gb])
            sa = med([r["driver"]["ms"]["stage"] for r in ga])
            sb = med([r["driver"]["ms"]["stage"] for r in gb])
            print(f"apply v2, livepush: ({label[a]}) / ({label[b]}): wall time {ma:.3f} s / "
                  f"{mb:.3f} s = **{ma / mb:.2f}**; stage {sa:.0f} ms / {sb:.0f} ms = "
                  f"**{sa / sb:.2f}**")
        ga, gb = groups.get((a, "apply", "agent-once")), groups.get((b, "apply", "agent-once"))
        if ga and gb:
            ma = med([r["wall_s"] for r in ga])
            mb = med([r["wall_s"] for r in gb])
            print()
            print(f"apply v2, livepush-agent agent --once: ({label[a]}) / ({label[b]}): wall time "
                  f"{ma:.3f} s / {mb:.3f} s = **{ma / mb:.2f}**")


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "tree" and len(sys.argv) == 7:
        make_tree(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    elif cmd == "change" and len(sys.argv) == 5:
        change(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "digest" and len(sys.argv) == 3:
        digest(sys.argv[2])
    elif cmd == "report" and len(sys.argv) == 3:
        report(sys.argv[2])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
