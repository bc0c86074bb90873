"""Benchmark the per-asset SHA-1 proof (proof.asset_proof) against `sha1sum` over the same files.

Same file list, warm page cache, runs alternating, medians; prints the ratio (target <= 1.2x) and the
proof's peak RSS. The proof runs in a child process fed with rows in psql's `-A -t -z -0` format (what
proof.stream_asset_rows reads from `docker exec <db> psql`), parsed by proof.parse_unaligned, and it
also walks upload/ and library/ for orphans: the whole proof, not only the hashing. `find` over the same
folders is timed too (the listing's floor), and the proof once without its orphan walk.

    .venv/bin/python bench/bench_sha1_proof.py                       # 30,000 files under /var/tmp
    .venv/bin/python bench/bench_sha1_proof.py --files 100000 --min-kib 1 --max-kib 16
    .venv/bin/python bench/bench_sha1_proof.py --upload /path/to/UPLOAD_LOCATION --container db --user postgres --database immich

With --upload and a database container, the rows come from that database (its originals must be
under --upload); otherwise a dataset is generated once under --work and reused by later runs.

Measured 2026-12-01 on 2 cores with a load average of 8-17 from other test suites (medians of 5):
1,500 files of 1-4 MiB (3.9 GB): 0.49x sha1sum (OpenSSL's SHA-1 against coreutils'); 30,000 files of
4-128 KiB (2.0 GB): 0.54-0.67x; 100,000 files of 1-8 KiB (0.46 GB, one file per xx/yy folder): the
hashing alone 1.13x sha1sum wall (1.00x CPU), the whole proof 1.9x sha1sum but 1.17x sha1sum + find
(the orphan walk lists 84,000 folders, which sha1sum never does). Peak RSS 38-40 MiB at 100,000 assets.
2026-12-02, quiet, the orphan walk a `find` child process: 1-8 KiB 1.14x sha1sum, 1-16 KiB 1.00x (bench/README.md).
"""
import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import time
from statistics import median

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "build", "collections"))

from ansible_collections.homelab.immich.plugins.module_utils import proof  # noqa: E402

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.homelab.immich.plugins.module_utils import proof
rows_file, upload, workers, orphans = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
t0 = time.monotonic()
with open(rows_file, "rb") as fh:
    fields = proof.parse_unaligned(iter(lambda: fh.read(1 << 20), b""), proof.ROW_COLUMNS)
    rows = ((f[0], f[1], proof.parse_bytea(f[2]), f[3] or None, f[4] or None, f[5] or None) for f in fields)
    res = proof.asset_proof(rows, upload, media_location="/data", workers=workers, find_orphans=orphans)
res["wall"] = time.monotonic() - t0
res["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps(res))
"""


def generate(work, files, min_kib, max_kib, seed=1):
    """UPLOAD_LOCATION-shaped tree (upload/<user>/xx/yy/<uuid>.jpg), a NUL list of the files and rows."""
    upload = os.path.join(work, "library")
    stamp = os.path.join(work, "dataset.json")
    want = {"files": files, "min_kib": min_kib, "max_kib": max_kib, "seed": seed}
    if os.path.exists(stamp):
        with open(stamp) as fh:
            if json.load(fh) == want:
                return upload
    print("generating %d files of %d-%d KiB under %s" % (files, min_kib, max_kib, upload), flush=True)
    subprocess.run(["rm", "-rf", upload], check=True)
    rng = random.Random(seed)
    users = ["%08x-0000-4000-8000-%012x" % (rng.getrandbits(32), n) for n in range(4)]
    pool = os.urandom(max_kib * 1024 + 4096)
    with open(os.path.join(work, "rows.nul"), "wb") as rows, open(os.path.join(work, "files.nul"), "wb") as names:
        for n in range(files):
            size = rng.randint(min_kib * 1024, max_kib * 1024)
            start = rng.randint(0, 4095)
            data = pool[start:start + size] + n.to_bytes(8, "big")
            name = "%032x" % rng.getrandbits(128)
            rel = "upload/%s/%s/%s/%s.jpg" % (users[n % len(users)], name[:2], name[2:4], name)
            path = os.path.join(upload, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data)
            digest = hashlib.sha1(data).hexdigest()  # noqa: S324 - Immich's checksum
            rows.write(b"\0".join([("asset-%d" % n).encode(), ("/data/" + rel).encode(), b"\\x" + digest.encode(),
                                   b"sha1", b"", b"active"]) + b"\0")
            names.write(path.encode() + b"\0")
    for folder in ("upload", "library"):
        os.makedirs(os.path.join(upload, folder), exist_ok=True)
        with open(os.path.join(upload, folder, ".immich"), "w") as fh:
            fh.write("1")
    with open(stamp, "w") as fh:
        json.dump(want, fh)
    return upload


def from_database(work, upload, container, user, database, *, password=None):
    """Rows and file list from a live database (its originals under ``upload``)."""
    count = 0
    with open(os.path.join(work, "rows.nul"), "wb") as rows, open(os.path.join(work, "files.nul"), "wb") as names:
        for row in proof.stream_asset_rows(container, user, database, password=password):
            rel = proof.media_relpath(row[1])
            fields = [row[0], row[1], "\\x" + (row[2] or b"").hex(), row[3] or "", row[4] or "", row[5] or ""]
            rows.write(b"\0".join(f.encode("utf-8", "surrogateescape") for f in fields) + b"\0")
            if rel and (row[3] or "sha1") == "sha1":
                names.write(os.path.join(upload, rel).encode("utf-8", "surrogateescape") + b"\0")
                count += 1
    print("%d content-hashed assets from %s/%s" % (count, container, database), flush=True)


def _cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_sha1sum(work):
    """(wall, cpu) seconds of `xargs -0 sha1sum` over the file list."""
    c0, t0 = _cpu(), time.monotonic()
    subprocess.run(["xargs", "-0", "-a", os.path.join(work, "files.nul"), "sha1sum"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0, _cpu() - c0


def run_find(upload):
    """(wall, cpu) of `find` over the folders the proof lists for orphans: the listing's own floor."""
    c0, t0 = _cpu(), time.monotonic()
    subprocess.run(["find"] + [os.path.join(upload, f) for f in proof.ORIGINAL_FOLDERS] + ["-type", "f"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0, _cpu() - c0


def run_proof(work, upload, workers, orphans=True):
    c0, t0 = _cpu(), time.monotonic()
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.join(ROOT, "build", "collections"),
                          os.path.join(work, "rows.nul"), upload, str(workers), "1" if orphans else "0"],
                         check=True, stdout=subprocess.PIPE).stdout
    res = json.loads(out)
    res["outer"] = time.monotonic() - t0
    res["cpu"] = _cpu() - c0
    if not res["ok"] or res["mismatched"] or res["missing_in_backup"]:
        raise SystemExit("the proof did not match its own dataset: %s" % res["detail"])
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/var/tmp/homelab-immich-bench-sha1")
    ap.add_argument("--files", type=int, default=30000)
    ap.add_argument("--min-kib", type=int, default=4)
    ap.add_argument("--max-kib", type=int, default=128)
    ap.add_argument("--workers", default="0,1,2", help="comma-separated worker thread counts to measure")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--upload", help="an existing UPLOAD_LOCATION (with --container/--user/--database)")
    ap.add_argument("--container")
    ap.add_argument("--user", default="postgres")
    ap.add_argument("--database", default="immich")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    if args.upload:
        upload = args.upload
        from_database(args.work, upload, args.container, args.user, args.database, password=os.environ.get("PGPASSWORD"))
    else:
        upload = generate(args.work, args.files, args.min_kib, args.max_kib)
    workers = [int(w) for w in args.workers.split(",")]

    run_sha1sum(args.work)  # warm the page cache (and the proof's imports) before timing anything
    warm = run_proof(args.work, upload, workers[-1])
    print("dataset: %d assets, %.1f MB hashed" % (warm["assets"], warm["bytes_hashed"] / 1e6), flush=True)

    variants = [("proof workers=%d" % w, w, True) for w in workers]
    variants.append(("proof workers=%d, no orphan walk" % workers[-1], workers[-1], False))
    times = dict((name, []) for name in ["sha1sum", "find"] + [v[0] for v in variants])
    cpu = dict((name, []) for name in times)
    rss = {}
    for i in range(args.repeat):
        for name, fn in (("sha1sum", lambda: run_sha1sum(args.work)), ("find", lambda: run_find(upload))):
            wall, used = fn()
            times[name].append(wall)
            cpu[name].append(used)
        for name, w, orphans in variants:
            res = run_proof(args.work, upload, w, orphans)
            times[name].append(res["outer"])
            cpu[name].append(res["cpu"])
            rss[name] = max(rss.get(name, 0), res["rss_mib"])
        print("run %d: %s" % (i + 1, ", ".join("%s %.2fs" % (k, v[-1]) for k, v in times.items())), flush=True)

    base, base_cpu = median(times["sha1sum"]), median(cpu["sha1sum"])
    floor, floor_cpu = base + median(times["find"]), base_cpu + median(cpu["find"])
    print("\nsha1sum over the same %d files (%.1f MB): median %.2f s wall, %.2f s CPU; + find over upload/ and "
          "library/: %.2f s wall, %.2f s CPU" % (warm["hashed"], warm["bytes_hashed"] / 1e6, base, base_cpu, floor, floor_cpu))
    for name, _w, orphans in variants:
        t, c = median(times[name]), median(cpu[name])
        print("%s: median %.2f s wall, ratio %.2fx to sha1sum (target <= 1.2x)%s; %.2f s CPU (%.2fx); peak RSS %.1f MiB"
              % (name, t, t / base, (", %.2fx to sha1sum + find" % (t / floor)) if orphans else "", c,
                 c / (floor_cpu if orphans else base_cpu), rss[name]))


if __name__ == "__main__":
    main()
