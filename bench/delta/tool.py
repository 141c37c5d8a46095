#!/usr/bin/env python3
"""tool.py — the tree plan and the report of bench/delta/run.

    tool.py plan OLD_DIR NEW_DIR     prints how livepush sends NEW_DIR to a
                                     device that has OLD_DIR (below)
    tool.py report RESULTS CORPUS    prints the Markdown tables

plan: one line per regular file of NEW_DIR, tab-separated, sorted by path:

    same   PATH  OLD_PATH   the content is in OLD_DIR (at OLD_PATH, wherever
                            it is: a renamed or moved file is unchanged)
    delta  PATH  PATH       the content changed, and OLD_DIR has PATH
    new    PATH  -          the content is new and OLD_DIR has no PATH

Contents are compared by SHA-256, as the device's content addressing does.
Symlinks and folders are left out (they cost no file bytes).  A path with a
tab or a newline is refused.

report: RESULTS holds one JSON object per measurement (bench/delta/run writes
them); CORPUS is the corpus.tsv of bench/delta/corpus.
"""
import hashlib
import json
import os
import statistics
import stat
import sys

# candidates in report order; "full" is the download without a delta
NAMES = {
    "livepush": "livepush",
    "bsdiff": "bsdiff",
    "xdelta3": "xdelta3 -9",
    "zstd19": "zstd -19 --patch-from",
    "zstd22": "zstd --ultra -22 --long=31 --patch-from",
    "full": "full download (zstd -19)",
}
PEERS = ["bsdiff", "xdelta3", "zstd19", "zstd22"]
APPLY_MEMORY_LIMIT = 64 << 20


def files_of(top):
    out = {}
    for d, subdirs, names in os.walk(top):
        subdirs.sort()
        for n in names:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, top)
            if "\t" in rel or "\n" in rel:
                sys.exit(f"tool.py: path with a tab or newline: {rel!r}")
            if stat.S_ISREG(os.lstat(p).st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                out[rel] = h.hexdigest()
    return out


def plan(old, new):
    old_files = files_of(old)
    where = {}
    for path in sorted(old_files):
        where.setdefault(old_files[path], path)
    for path, digest in sorted(files_of(new).items()):
        if digest in where:
            print(f"same\t{path}\t{where[digest]}")
        elif path in old_files:
            print(f"delta\t{path}\t{path}")
        else:
            print(f"new\t{path}\t-")


# ---- report ---------------------------------------------------------------------

def med(values):
    return statistics.median(values)


def cell(values, fmt):
    if min(values) == max(values):
        return fmt.format(values[0])
    return "{} ({}–{})".format(fmt.format(med(values)), fmt.format(min(values)),
                               fmt.format(max(values)))


def human(n):
    if n >= 1 << 20:
        return f"{n / (1 << 20):.2f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} B"


def mib(kib):
    return kib / 1024


def report(results, corpus):
    pairs = []
    info = {}
    with open(corpus) as f:
        for line in f:
            w = line.rstrip("\n").split("\t")
            info[w[0]] = {"kind": w[1], "package": w[2], "old": w[3], "new": w[4], "path": w[5],
                          "old_bytes": int(w[6]), "new_bytes": int(w[7]),
                          "old_files": int(w[8]), "new_files": int(w[9])}
            pairs.append(w[0])
    rows = [json.loads(line) for line in open(results)]
    cands = [c for c in NAMES if any(r["candidate"] == c for r in rows)]
    peers = [c for c in PEERS if c in cands]
    g = {}
    for r in rows:
        g.setdefault((r["pair"], r["candidate"]), []).append(r)
    pairs = [p for p in pairs if any((p, c) in g for c in cands)]
    have_lp = "livepush" in cands

    def m(pair, cand, key):
        return med([r[key] for r in g[(pair, cand)]])

    def label(p):
        i = info[p]
        what = "whole package" if i["kind"] == "tree" else i["path"]
        return f"{i['package']} {i['old']}→{i['new']} ({i['kind']}: {what})"

    # ---- sizes
    print("**Patch bytes** (the output of each tool; a tree's peers diff a tar of each "
          "tree, livepush sends only changed and new files):")
    print()
    head = ["pair", "old", "new", "zstd -19 of new"] + [NAMES[c] for c in peers]
    if have_lp:
        head += ["livepush", "livepush / best peer"]
    print("| " + " | ".join(head) + " |")
    print("| --- " + "| ---: " * (len(head) - 1) + "|")
    for p in pairs:
        i = info[p]
        row = [label(p), f"{i['old_bytes']:,}", f"{i['new_bytes']:,}"]
        row.append(f"{int(m(p, 'full', 'patch_bytes')):,}" if (p, "full") in g else "—")
        sizes = {c: int(m(p, c, "patch_bytes")) for c in peers if (p, c) in g}
        best = min(sizes.values()) if sizes else None
        for c in peers:
            if c in sizes:
                s = f"{sizes[c]:,}"
                row.append(f"**{s}**" if sizes[c] == best else s)
            else:
                row.append("—")
        if have_lp:
            if (p, "livepush") in g:
                lp = int(m(p, "livepush", "patch_bytes"))
                row.append(f"{lp:,}")
                row.append(f"**{lp / best:.3f}**" if best else "—")
            else:
                row += ["—", "—"]
        print("| " + " | ".join(row) + " |")
    totals = {c: sum(int(m(p, c, "patch_bytes")) for p in pairs if (p, c) in g) for c in cands}
    complete = {c: all((p, c) in g for p in pairs) for c in cands}
    row = ["**total**", f"{sum(info[p]['old_bytes'] for p in pairs):,}",
           f"{sum(info[p]['new_bytes'] for p in pairs):,}",
           f"{totals['full']:,}" if "full" in totals else "—"]
    row += [f"{totals[c]:,}" for c in peers]
    if have_lp:
        row += [f"{totals['livepush']:,}", ""]
    print("| " + " | ".join(row) + " |")
    print()
    trees = [(p, g[(p, "livepush")][0]["plan"]) for p in pairs
             if (p, "livepush") in g and g[(p, "livepush")][0].get("plan")]
    for p, pl in trees:
        print(f"livepush on {p}: {pl.get('same', 0)} unchanged files (0 bytes), "
              f"{pl.get('delta', 0)} changed files sent as deltas, {pl.get('new', 0)} new files "
              f"sent with zstd -19.")
    if trees:
        print()
    varying = sorted({(r["pair"], r["candidate"]) for r in rows
                      if len({x["patch_bytes"] for x in g[(r["pair"], r["candidate"])]}) > 1})
    if varying:
        print("Patch sizes that differed between rounds (the median is shown): " +
              ", ".join(f"{p} {NAMES[c]}" for p, c in varying))
        print()

    # ---- times
    timed_order = (["livepush"] if have_lp else []) + peers + (["full"] if "full" in cands else [])
    for key, title in (("make_s", "Generation time (s)"), ("apply_s", "Apply time (s)")):
        print(f"**{title}**, median (min–max) over the rounds" +
              (" (for the full download: compression and decompression):" if key == "make_s"
               else ":"))
        print()
        head = ["pair"] + [NAMES[c] for c in timed_order]
        print("| " + " | ".join(head) + " |")
        print("| --- " + "| ---: " * (len(head) - 1) + "|")
        for p in pairs:
            row = [label(p)]
            for c in timed_order:
                row.append(cell([r[key] for r in g[(p, c)]], "{:.3f}") if (p, c) in g else "—")
            print("| " + " | ".join(row) + " |")
        row = ["**total** (sum of medians)"]
        for c in timed_order:
            row.append(f"{sum(m(p, c, key) for p in pairs if (p, c) in g):.3f}")
        print("| " + " | ".join(row) + " |")
        print()

    # ---- where the apply's time goes
    if all("apply_sys_s" in r for r in rows):
        print("**Apply CPU**, median over the rounds: user + system seconds (GNU time `%U`, "
              "`%S`) and thousands of minor page faults (`%R`). Much of the system time is the "
              "kernel handing out pages, at a cost per fault that differs from machine to "
              "machine, so it weighs on a tool in proportion to the memory it touches:")
        print()
        head = ["pair"] + [NAMES[c] for c in timed_order]
        print("| " + " | ".join(head) + " |")
        print("| --- " + "| ---: " * (len(head) - 1) + "|")

        def cpu_cell(ps, c):
            u = sum(m(p, c, "apply_user_s") for p in ps)
            k = sum(m(p, c, "apply_sys_s") for p in ps)
            f = sum(m(p, c, "apply_minflt") for p in ps)
            return f"{u:.2f} + {k:.2f} s, {f / 1000:.1f}k"
        for p in pairs:
            print("| " + " | ".join([label(p)] + [cpu_cell([p], c) if (p, c) in g else "—"
                                                  for c in timed_order]) + " |")
        print("| " + " | ".join(["**total** (sum of medians)"] +
                                [cpu_cell([p for p in pairs if (p, c) in g], c)
                                 for c in timed_order]) + " |")
        print()

    # ---- memory
    print("**Peak resident memory** (MiB, median over the rounds; GNU time `%M` of the command, "
          "for livepush on a tree the largest of its per-file commands). *apply − old* is the "
          "apply's peak minus the size of the old file it reads (for a tree, per command, the old "
          "file that command reads), an estimate of the memory beyond the old file's pages:")
    print()
    order = (["livepush"] if have_lp else []) + peers
    head = ["pair"] + [f"{NAMES[c]}: make / apply / apply − old" for c in order]
    print("| " + " | ".join(head) + " |")
    print("| --- " + "| ---: " * (len(head) - 1) + "|")
    for p in pairs:
        row = [label(p)]
        for c in order:
            if (p, c) in g:
                row.append(f"{mib(m(p, c, 'make_rss_kib')):.1f} / {mib(m(p, c, 'apply_rss_kib')):.1f}"
                           f" / {m(p, c, 'apply_beyond_old_bytes') / (1 << 20):.1f}")
            else:
                row.append("—")
        print("| " + " | ".join(row) + " |")
    row = ["**largest**"]
    for c in order:
        ps = [p for p in pairs if (p, c) in g]
        row.append(f"{max(mib(m(p, c, 'make_rss_kib')) for p in ps):.1f} / "
                   f"{max(mib(m(p, c, 'apply_rss_kib')) for p in ps):.1f} / "
                   f"{max(m(p, c, 'apply_beyond_old_bytes') for p in ps) / (1 << 20):.1f}")
    print("| " + " | ".join(row) + " |")
    print()

    # ---- targets
    print("**Targets** (on the whole corpus):")
    print()
    if not have_lp:
        print("- livepush was not measured (no livepush-delta in this build): no target "
              "can be checked. The peers' totals above stand alone.")
        return
    if not all(complete[c] for c in ["livepush"] + peers):
        print("- a candidate is missing on some pair: totals are over the pairs measured.")
    lp_total = totals["livepush"]
    best_tool = min(peers, key=lambda c: totals[c])
    per_pair_best = sum(min(int(m(p, c, "patch_bytes")) for c in peers if (p, c) in g)
                        for p in pairs)

    def verdict(ok):
        return "**PASS**" if ok else "**FAIL**"

    r1 = lp_total / totals[best_tool]
    r2 = lp_total / per_pair_best
    print(f"- Patch bytes at most 0.85 of the best tool's: livepush {lp_total:,} / "
          f"{NAMES[best_tool]} (the best single tool over the corpus) {totals[best_tool]:,} = "
          f"**{r1:.3f}**: {verdict(r1 <= 0.85)}. Against the best tool of each pair "
          f"(sum {per_pair_best:,}): **{r2:.3f}**: {verdict(r2 <= 0.85)}.")

    def tsum(c, key):
        return sum(m(p, c, key) for p in pairs if (p, c) in g)

    if "bsdiff" in peers:
        a, b = tsum("livepush", "make_s"), tsum("bsdiff", "make_s")
        print(f"- Generation faster than bsdiff: livepush {a:.2f} s / bsdiff {b:.2f} s = "
              f"**{a / b:.3f}**: {verdict(a < b)}.")
    for c in ("zstd19", "zstd22"):
        if c in peers:
            a, b = tsum("livepush", "apply_s"), tsum(c, "apply_s")
            print(f"- Apply at least as fast as {NAMES[c]}: livepush {a:.2f} s / {b:.2f} s = "
                  f"**{a / b:.3f}**: {verdict(a <= b)}.")
    worst = max(pairs, key=lambda p: m(p, "livepush", "apply_beyond_old_bytes")
                if (p, "livepush") in g else -1)
    beyond = m(worst, "livepush", "apply_beyond_old_bytes")
    peak = max(m(p, "livepush", "apply_rss_kib") for p in pairs if (p, "livepush") in g)
    print(f"- Apply memory outside the mapped old file under 64 MiB: at most "
          f"**{beyond / (1 << 20):.1f} MiB** ({worst}; peak RSS minus the old file's size), "
          f"largest peak RSS {mib(peak):.1f} MiB: {verdict(beyond < APPLY_MEMORY_LIMIT)}.")


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "plan" and len(sys.argv) == 4:
        plan(sys.argv[2], sys.argv[3])
    elif cmd == "report" and len(sys.argv) == 4:
        report(sys.argv[2], sys.argv[3])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
