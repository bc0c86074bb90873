"""The file side of a backup set against rsync, in ONE run, on >= 100,000 originals shaped like Immich's.

Prints ratios (ours / reference) measured back to back on the same machine, the close ones alternated
--repeat times with medians (machines are noisy; ratios taken in one run much less):

  first set           backup_copy (copy + sha256 + sha1 + manifest, one pass)  vs  rsync -a (first copy)
  nightly, unchanged  backup_copy + verify (new files + a sample) + promote     vs  rsync -a --delete (no-op)
  nightly, 1% new     the same, after 1% new originals                          vs  rsync -a --delete
  verification        sample verify of the unchanged set                        vs  a deep sha256 of every file
  memory              peak RSS of the process running backup_copy at 100k files

    .venv/bin/python bench/bench_files.py [--files 100000] [--work /var/tmp/homelab-immich-bench-files] [--repeat 3]

No timing assertion lives in a test; targets (issue 10): nightly unchanged <= 3x the no-op rsync, memory < 100 MiB.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from statistics import median

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "build", "collections"))

from ansible_collections.homelab.immich.plugins.module_utils import file_copy, file_manifest, sets  # noqa: E402


def make_library(root, files, seed=1):
    """upload/<user>/<xx>/<yy>/<uuid>.jpg of 1-4 KiB, as Immich shards them (tens of thousands of folders)."""
    rng = random.Random(seed)
    users = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _n in range(3)]
    for n in range(files):
        aid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        folder = os.path.join(root, "upload", users[n % 3], aid[0:2], aid[2:4])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, aid + ".jpg"), "wb") as fh:
            fh.write(os.urandom(rng.randint(1024, 4096)))
    for folder in ("upload", "library", "profile", "backups", "thumbs"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        open(os.path.join(root, folder, ".immich"), "w").close()


def add_new(root, count, seed):
    rng = random.Random(seed)
    for _n in range(count):
        aid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        folder = os.path.join(root, "upload", "new", aid[0:2])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, aid + ".jpg"), "wb") as fh:
            fh.write(os.urandom(rng.randint(1024, 4096)))


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    out = fn(*args, **kw)
    return time.monotonic() - t0, out


def rsync(*args):
    subprocess.run(["rsync", "-a", *args], check=True, stdout=subprocess.DEVNULL)


def engine_set(src, root, folders=("library", "upload", "profile", "backups", "thumbs")):
    """What a run does on the file side: begin, one-pass copy, verify (new files + 256 sampled), promote."""
    begun = sets.begin(root)
    prev = begun["previous_dir"]
    stats = file_copy.backup_copy(src, folders, begun["files_dir"], begun["manifest"],
                                  previous_files=os.path.join(prev, "files") if prev else None,
                                  previous_manifest=os.path.join(prev, file_manifest.NAME) if prev else None)
    report = file_manifest.verify(begun["files_dir"], begun["manifest"], deep=False, sample=256, markers="bytes",
                                  previous_manifest=os.path.join(prev, file_manifest.NAME) if prev else None)
    assert report.ok, report.problems()
    info = dict(set_id=begun["set_id"], status=sets.GOOD, instance="bench", host="bench", trigger="ansible",
                started=0.0, finished=0.0, seconds=0.0, immich_version=None, server_version=None, pg_dump_version=None,
                dump_kind=None, dump=None, dump_bytes=0, dump_sha256=None, rows_by_table={}, files=stats["files"],
                files_bytes=stats["bytes"], files_new=stats["copied"], files_linked=stats["linked"], folders=list(folders),
                files_by_folder={}, excludes=[], consistency="online", previous=begun["previous"],
                verification={"ok": True}, coverage={"ok": True})
    sets.promote(root, begun["partial"], info)
    return stats, report


def peak_rss_of_copy(src, work):
    """VmHWM of a child process running one first backup_copy (the module's process at 100k files)."""
    code = ("import os, sys; sys.path.insert(0, %r); "
            "from ansible_collections.homelab.immich.plugins.module_utils import file_copy; "
            "os.makedirs(%r); file_copy.backup_copy(%r, ['upload'], %r, %r); "
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
            % (os.path.join(ROOT, "build", "collections"), os.path.join(work, "rss", "files"), src,
               os.path.join(work, "rss", "files"), os.path.join(work, "rss", "m.tsv")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    shutil.rmtree(os.path.join(work, "rss"), ignore_errors=True)
    return int(out.strip()) / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--work", default="/var/tmp/homelab-immich-bench-files")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    src = os.path.join(a.work, "library")
    if not os.path.isdir(src) or sum(1 for _p in file_manifest.walk(src)) < a.files:
        shutil.rmtree(a.work, ignore_errors=True)
        print("bench-files: creating %d originals in %s (once)" % (a.files, src), flush=True)
        make_library(src, a.files)
    results = {"files": a.files}
    try:
        for d in ("mirror", "sets"):
            shutil.rmtree(os.path.join(a.work, d), ignore_errors=True)
        t_rsync_first, _out = timed(rsync, src + "/", os.path.join(a.work, "mirror") + "/")
        t_first, (stats, _rep) = timed(engine_set, src, os.path.join(a.work, "sets", "bench"))
        results["first_set_vs_rsync_first"] = round(t_first / t_rsync_first, 2)
        results["first_set_seconds"] = round(t_first, 2)
        results["rsync_first_seconds"] = round(t_rsync_first, 2)
        nightly, noop = [], []
        for _n in range(a.repeat):  # alternate: the machine's noise hits both
            t, _out = timed(rsync, "--delete", src + "/", os.path.join(a.work, "mirror") + "/")
            noop.append(t)
            time.sleep(1.1)
            t, (stats, _rep) = timed(engine_set, src, os.path.join(a.work, "sets", "bench"))
            assert stats["copied"] == 0, stats
            nightly.append(t)
        results["nightly_unchanged_vs_rsync_noop"] = round(median(nightly) / median(noop), 2)
        results["nightly_unchanged_seconds"] = round(median(nightly), 2)
        results["rsync_noop_seconds"] = round(median(noop), 2)
        add_new(src, a.files // 100, seed=7)
        t_noop1, _out = timed(rsync, "--delete", src + "/", os.path.join(a.work, "mirror") + "/")
        time.sleep(1.1)
        t_new, (stats, _rep) = timed(engine_set, src, os.path.join(a.work, "sets", "bench"))
        results["nightly_1pct_new_vs_rsync"] = round(t_new / t_noop1, 2)
        results["nightly_1pct_new_copied"] = stats["copied"]
        root = os.path.join(a.work, "sets", "bench")
        latest = os.path.join(root, sets.latest_good(root))
        t_sample, rep = timed(file_manifest.verify, os.path.join(latest, "files"), os.path.join(latest, file_manifest.NAME),
                              deep=False, sample=256)
        t_deep, rep_deep = timed(file_manifest.verify, os.path.join(latest, "files"), os.path.join(latest, file_manifest.NAME),
                                 deep=True)
        assert rep.ok and rep_deep.ok
        results["verify_sample_vs_deep"] = round(t_sample / t_deep, 3)
        results["verify_deep_seconds"] = round(t_deep, 2)
        results["peak_rss_mib_first_copy"] = round(peak_rss_of_copy(src, a.work), 1)
    finally:
        if not a.keep:
            for d in ("mirror", "sets"):
                shutil.rmtree(os.path.join(a.work, d), ignore_errors=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
