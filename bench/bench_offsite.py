"""Offsite with restic against rsync and local sets, in ONE run, on >= 100,000 originals (issue 11).

Prints ratios measured back to back on the same machine:

  first snapshot          ResticTarget.send of the first set (REST server on 127.0.0.1)  vs  rsync -a first copy
  nightly, unchanged      send of the next set (nothing new)                              vs  no-op rsync -a --delete
  nightly, 1% new         send after 1% new originals                                     vs  no-op rsync -a --delete
  restore                 fetch_set of the newest set + the verified move out of it       vs  the verified copy of the local set
                          (and + the verified copy out of it: immich_restore_keep_staging)
  size after 7 nights     the repository on disk after 7 nights of 1% new originals       vs  the 7 hard-linked sets (du)
  memory                  peak RSS of restic and of our process

    .venv/bin/python bench/bench_offsite.py [--files 100000] [--work /var/tmp/homelab-immich-bench-files]

Uses bench_files.py's library (created once). Targets: nightly unchanged <= 2x the no-op rsync; restore from
the repository <= 1.3x a restore from a local set. No timing assertion lives in a test.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, os.path.join(ROOT, "tests", "lab"), os.path.join(ROOT, "build", "collections")]

import bench_files  # noqa: E402
from offsite import RestServer  # noqa: E402

from ansible_collections.homelab.immich.plugins.module_utils import file_copy, file_manifest, sets  # noqa: E402
from ansible_collections.homelab.immich.plugins.module_utils.targets.restic import ResticTarget  # noqa: E402


def du(path):
    out = subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def children_peak_mib():
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--work", default="/var/tmp/homelab-immich-bench-files")
    ap.add_argument("--nights", type=int, default=7)
    a = ap.parse_args()
    src = os.path.join(a.work, "library")
    if not os.path.isdir(src) or sum(1 for _p in file_manifest.walk(src)) < a.files:
        shutil.rmtree(a.work, ignore_errors=True)
        print("bench-offsite: creating %d originals in %s (once)" % (a.files, src), flush=True)
        bench_files.make_library(src, a.files)
    scratch = os.path.join(a.work, "offsite")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    root = os.path.join(scratch, "sets", "bench")
    server = RestServer(os.path.join(scratch, "rest"), no_auth=True).start()
    results = {"files": a.files}
    try:
        target = ResticTarget({"restic": server.url(repo="bench"), "password": "bench", "init": True}, "bench")
        target.check()

        def night():
            _stats, _rep = bench_files.engine_set(src, root)
            sid = sets.latest_good(root)
            t0 = time.monotonic()
            out = target.send(os.path.join(root, sid), sets.read_info(os.path.join(root, sid)))
            return time.monotonic() - t0, out

        t0 = time.monotonic()
        bench_files.rsync(src + "/", os.path.join(scratch, "mirror") + "/")
        t_rsync_first = time.monotonic() - t0
        t_first, first = night()
        results["first_snapshot_vs_rsync_first"] = round(t_first / t_rsync_first, 2)
        results["first_snapshot_seconds"] = round(t_first, 1)
        time.sleep(1.1)
        t0 = time.monotonic()
        bench_files.rsync("--delete", src + "/", os.path.join(scratch, "mirror") + "/")
        t_noop = time.monotonic() - t0
        t_unchanged, unchanged = night()
        results["nightly_unchanged_vs_rsync_noop"] = round(t_unchanged / t_noop, 2)
        results["nightly_unchanged_files_read"] = unchanged.get("files_read")
        for n in range(a.nights - 1):
            bench_files.add_new(src, a.files // 100, seed=100 + n)
            time.sleep(1.1)
            t0 = time.monotonic()
            bench_files.rsync("--delete", src + "/", os.path.join(scratch, "mirror") + "/")
            t_noop = time.monotonic() - t0
            t_new, _new = night()
            if n == 0:
                results["nightly_1pct_new_vs_rsync_noop"] = round(t_new / t_noop, 2)
        results["repository_vs_hard_linked_sets_size"] = round(du(os.path.join(scratch, "rest")) / du(root), 3)
        sid = sets.latest_good(root)
        t0 = time.monotonic()
        file_copy.restore_copy(os.path.join(root, sid, "files"), os.path.join(root, sid, file_manifest.NAME),
                               os.path.join(scratch, "restore-local"))
        t_local = time.monotonic() - t0
        # from the repository: fetch the set (staging), then the same verified copy (immich_restore_keep_staging) or,
        # as the restore role does by default, move the verified files out of the staging copy (one filesystem here)
        for key, move in (("restore_repository_copy_vs_local_set", False), ("restore_repository_vs_local_set", True)):
            t0 = time.monotonic()
            staged = os.path.join(scratch, "staging-%s" % key, sid)
            target.fetch_set(sid, staged)
            t_fetch = time.monotonic() - t0
            out = file_copy.restore_copy(os.path.join(staged, "files"), os.path.join(staged, file_manifest.NAME),
                                         os.path.join(scratch, "restore-" + key), move=move)
            t_repo = time.monotonic() - t0
            results[key] = round(t_repo / t_local, 2)
            results[key + "_fetch_share"] = round(t_fetch / t_repo, 2)
            assert out["files"] == out["moved" if move else "copied"] and not out["mismatched"], out
        results["peak_rss_mib_restic"] = round(children_peak_mib(), 1)
        results["peak_rss_mib_ours"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
        results["first_snapshot"] = {k: first.get(k) for k in ("files_new", "bytes_added", "seconds")}
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
