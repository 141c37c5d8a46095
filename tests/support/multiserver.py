#!/usr/bin/env python3
"""multiserver.py — the workload and the checks of tests/e2e/pg_servers.sh.

Several `livepush serve` processes share one PostgreSQL database and one
data folder; this script talks to them over HTTP only (standard library:
urllib, threads) and checks that they behave as one service.

    multiserver.py concurrent  A_URL B_URL C_URL
        Two publishers (one on server A, one on B) publish staged releases
        at the same time while two rollout changers (A and B) raise, lower,
        pause and halt the rollouts of whatever is published, and a device
        poller on server C keeps reading timestamp.json and the snapshot it
        names and posting device events.  Then:
          - every publish answered 201, and the release list has exactly
            those releases, with version codes unique and strictly
            increasing in publish order per publisher;
          - the TUF metadata on disk (timestamp -> snapshot -> targets)
            lists every published release exactly once, and nothing else
            under releases/;
          - no timestamp or snapshot version was ever seen with two
            different contents, and the N.snapshot.json files on disk are
            the ones that were seen;
          - a halted rollout stays halted: no change that started after a
            halt was answered finished was accepted, and every halt is in
            the final list;
          - every device event batch was accepted.
    multiserver.py consistent  URL
        The release list of the API and the targets the TUF metadata on
        disk lists are the same set of version codes (used after a kill).

Environment: LP_MS_TOKEN (an admin token), LP_MS_DATA (the shared data
folder), LP_MS_WORK (scratch folder), LP_MS_RELEASES (releases each
publisher publishes, default 6), LP_MS_SECONDS (bound of the concurrent
phase, default 120).  Prints TAP-like "ok" lines; exits 1 on the first
failed check.
"""
import hashlib
import io
import json
import os
import random
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request

TOKEN = os.environ["LP_MS_TOKEN"]
DATA = os.environ["LP_MS_DATA"]
WORK = os.environ["LP_MS_WORK"]
APP = "default"
META = os.path.join(DATA, "repos", APP, "metadata")


def fail(msg):
    print("FAIL - " + msg, file=sys.stderr)
    sys.exit(1)


def call(base, method, path, body=None, token=True, timeout=60, raw=None, headers=None):
    """One request; returns (status, body bytes)."""
    data = raw
    h = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if token:
        h["Authorization"] = "Bearer " + TOKEN
    req = urllib.request.Request(base + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def bundle(version):
    """A small tar.gz whose content differs per version."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for i in range(3):
            data = ("%s file %d\n" % (version, i)).encode()
            info = tarfile.TarInfo("app/f%d.txt" % i)
            info.size = len(data)
            info.mtime = 1700000000
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def publish(base, version, rollout_bp=None):
    """Uploads a bundle and publishes it; returns (status, release or error)."""
    b = bundle(version)
    st, body = call(base, "POST", "/api/v1/apps/%s/uploads" % APP,
                    {"size": len(b), "sha256": hashlib.sha256(b).hexdigest()})
    if st != 201:
        return st, body.decode(errors="replace")
    uid = json.loads(body)["upload"]["id"]
    st, body = call(base, "PUT", "/api/v1/uploads/" + uid, token=True, raw=b,
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": "bytes 0-%d/%d" % (len(b) - 1, len(b))})
    if st != 200:
        return st, body.decode(errors="replace")
    req = {"upload": uid, "version": version}
    if rollout_bp is not None:
        req["rollout_percent_bp"] = rollout_bp
    st, body = call(base, "POST", "/api/v1/apps/%s/releases" % APP, req)
    if st != 201:
        return st, body.decode(errors="replace")
    return st, json.loads(body)["release"]


def releases(base):
    st, body = call(base, "GET", "/api/v1/apps/%s/releases?limit=1000" % APP)
    if st != 200:
        fail("release list: HTTP %d %s" % (st, body[:300]))
    return json.loads(body)["releases"]


def load_meta(name):
    with open(os.path.join(META, name), "rb") as f:
        raw = f.read()
    return raw, json.loads(raw)


def tuf_codes():
    """Version codes of the releases/ targets the published metadata lists
    (timestamp -> snapshot -> top-level targets), with repeats kept."""
    _, ts = load_meta("timestamp.json")
    sv = ts["signed"]["meta"]["snapshot.json"]["version"]
    _, snap = load_meta("%d.snapshot.json" % sv)
    tv = snap["signed"]["meta"]["targets.json"]["version"]
    _, targets = load_meta("%d.targets.json" % tv)
    codes = []
    for name in targets["signed"]["targets"]:
        if name.startswith("releases/"):
            codes.append(int(name[len("releases/"):-len(".json")]))
    return codes


def check_consistent(base, label):
    rel = releases(base)
    db = sorted(r["version_code"] for r in rel if r["state"] == "published")
    tuf = sorted(tuf_codes())
    if len(set(tuf)) != len(tuf):
        fail("%s: a release is listed twice in the TUF targets: %s" % (label, tuf))
    if db != tuf:
        fail("%s: the database publishes %s but the TUF metadata lists %s" % (label, db, tuf))
    return db


# ---- the concurrent phase ---------------------------------------------------------

class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.errors = []
        self.published = {}          # publisher -> [version_code in order]
        self.halts = {}              # version -> time the halt was answered 200
        self.after_halt = []         # changes accepted that started after a halt finished
        self.ts_seen = {}            # timestamp version -> sha256
        self.snap_seen = {}          # snapshot version -> sha256
        self.conflicts = []
        self.events_ok = 0
        self.changes = {"200": 0, "409": 0, "other": 0}

    def error(self, msg):
        with self.lock:
            self.errors.append(msg)


def publisher(rec, name, base, n, done):
    codes = []
    try:
        for i in range(n):
            st, r = publish(base, "%s-%d" % (name, i), rollout_bp=random.choice([500, 1000, 2500]))
            if st != 201:
                rec.error("publisher %s: release %d: HTTP %d %s" % (name, i, st, str(r)[:300]))
                return
            codes.append(r["version_code"])
    finally:
        with rec.lock:
            rec.published[name] = codes
        done.set()


def changer(rec, name, base, stop):
    rnd = random.Random(name)
    while not stop.is_set():
        st, body = call(base, "GET", "/api/v1/apps/%s/releases?limit=1000" % APP)
        if st != 200:
            rec.error("changer %s: list: HTTP %d" % (name, st))
            return
        rel = json.loads(body)["releases"]
        if not rel:
            time.sleep(0.05)
            continue
        r = rnd.choice(rel)
        v = r["version"]
        roll = rnd.random()
        if roll < 0.12:
            change = {"channel": "stable", "state": "halted", "reason": "halt by " + name}
        elif roll < 0.25:
            change = {"channel": "stable", "state": "paused"}
        else:
            change = {"channel": "stable", "state": "active",
                      "percent_bp": rnd.choice([1000, 2000, 5000, 7500, 10000])}
        started = time.monotonic()
        with rec.lock:
            halted_before = v in rec.halts and rec.halts[v] < started
        st, body = call(base, "PUT", "/api/v1/apps/%s/releases/%s/rollout" % (APP, v), change)
        ended = time.monotonic()
        with rec.lock:
            if st == 200:
                rec.changes["200"] += 1
                if change["state"] == "halted":
                    rec.halts.setdefault(v, ended)
                elif halted_before:
                    rec.after_halt.append((v, change))
            elif st == 409:
                rec.changes["409"] += 1
            else:
                rec.changes["other"] += 1
                rec.errors.append("changer %s: %s %s: HTTP %d %s" % (name, v, change, st,
                                                                     body[:300]))


def poller(rec, base, stop):
    devices = ["%032x" % random.getrandbits(128) for _ in range(8)]
    seq = {d: 0 for d in devices}
    while not stop.is_set():
        st, ts_raw = call(base, "GET", "/v1/apps/%s/metadata/timestamp.json" % APP, token=False)
        if st == 200:
            ts = json.loads(ts_raw)
            tv = ts["signed"]["version"]
            sv = ts["signed"]["meta"]["snapshot.json"]["version"]
            h = hashlib.sha256(ts_raw).hexdigest()
            st2, snap_raw = call(base, "GET", "/v1/apps/%s/metadata/%d.snapshot.json" % (APP, sv),
                                 token=False)
            with rec.lock:
                if rec.ts_seen.setdefault(tv, h) != h:
                    rec.conflicts.append("timestamp version %d seen with two contents" % tv)
                if st2 == 200:
                    sh = hashlib.sha256(snap_raw).hexdigest()
                    if rec.snap_seen.setdefault(sv, sh) != sh:
                        rec.conflicts.append("snapshot version %d seen with two contents" % sv)
                else:
                    rec.errors.append("snapshot %d named by timestamp %d: HTTP %d" % (sv, tv, st2))
        elif st != 404:
            rec.error("timestamp.json: HTTP %d" % st)
        d = random.choice(devices)
        seq[d] += 1
        batch = {"device_id": d, "events": [{"seq": seq[d], "type": "checked",
                                             "at": 1700000000 + seq[d]}]}
        st, body = call(base, "POST", "/v1/apps/%s/events" % APP, batch, token=False)
        if st == 200:
            with rec.lock:
                rec.events_ok += 1
        else:
            rec.error("device events: HTTP %d %s" % (st, body[:200]))


def concurrent(a, b, c):
    n = int(os.environ.get("LP_MS_RELEASES", "6"))
    limit = float(os.environ.get("LP_MS_SECONDS", "120"))
    rec = Recorder()
    stop = threading.Event()
    done_a, done_b = threading.Event(), threading.Event()
    threads = [threading.Thread(target=publisher, args=(rec, "pa", a, n, done_a)),
               threading.Thread(target=publisher, args=(rec, "pb", b, n, done_b)),
               threading.Thread(target=changer, args=(rec, "ca", a, stop)),
               threading.Thread(target=changer, args=(rec, "cb", b, stop)),
               threading.Thread(target=poller, args=(rec, c, stop))]
    t0 = time.monotonic()
    for t in threads:
        t.daemon = True
        t.start()
    while not (done_a.is_set() and done_b.is_set()) and time.monotonic() - t0 < limit:
        time.sleep(0.1)
    time.sleep(0.5)  # a few more changes and polls after the last publish
    stop.set()
    for t in threads:
        t.join(timeout=limit)
    if not (done_a.is_set() and done_b.is_set()):
        fail("the publishers did not finish within %.0f s" % limit)
    if rec.errors:
        fail("%d requests failed, first: %s" % (len(rec.errors), rec.errors[0]))
    print("ok - %d releases published through A and %d through B at once, %d rollout changes "
          "accepted and %d refused as halted through A and B, %d device check-ins through C "
          "(%.1f s)" % (len(rec.published["pa"]), len(rec.published["pb"]), rec.changes["200"],
                        rec.changes["409"], rec.events_ok, time.monotonic() - t0))

    # Version codes: unique, increasing in each publisher's order, all listed.
    all_codes = rec.published["pa"] + rec.published["pb"]
    if len(set(all_codes)) != len(all_codes):
        fail("a version code was given twice: %s" % all_codes)
    for name in ("pa", "pb"):
        cs = rec.published[name]
        if any(x >= y for x, y in zip(cs, cs[1:])):
            fail("publisher %s got version codes out of order: %s" % (name, cs))
    listed = sorted(r["version_code"] for r in releases(c))
    if listed != sorted(all_codes):
        fail("the release list %s is not the releases published %s" % (listed, sorted(all_codes)))
    print("ok - version codes unique and increasing: %s" % sorted(all_codes))

    codes = check_consistent(c, "after the concurrent phase")
    print("ok - the TUF metadata lists each of the %d published releases exactly once" %
          len(codes))

    if rec.conflicts:
        fail(rec.conflicts[0])
    for sv, h in rec.snap_seen.items():
        path = os.path.join(META, "%d.snapshot.json" % sv)
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != h:
                fail("%s differs from the snapshot version %d that was served" % (path, sv))
    nsnap = len([f for f in os.listdir(META) if f.endswith(".snapshot.json")])
    print("ok - %d timestamp and %d snapshot versions seen, none with two contents; the %d "
          "N.snapshot.json files on disk match what was served" %
          (len(rec.ts_seen), len(rec.snap_seen), nsnap))

    if rec.after_halt:
        fail("a change was accepted after its rollout was halted: %s" % (rec.after_halt[0],))
    st, body = call(c, "GET", "/api/v1/apps/%s/rollouts" % APP)
    if st != 200:
        fail("rollouts: HTTP %d" % st)
    doc = json.loads(body)
    states = {}
    for r in doc["rollouts"]:
        states[r["version"]] = r["state"]
    for v in rec.halts:
        if states.get(v) != "halted":
            fail("release %s was halted but its rollout is now %s" % (v, states.get(v)))
    print("ok - %d halts, each final (no later change accepted, still halted)" % len(rec.halts))


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "concurrent":
        concurrent(*sys.argv[2:5])
    elif len(sys.argv) == 3 and sys.argv[1] == "consistent":
        codes = check_consistent(sys.argv[2], "consistency")
        print(json.dumps(codes))
    else:
        fail("usage: multiserver.py concurrent A B C | consistent URL")


if __name__ == "__main__":
    main()
