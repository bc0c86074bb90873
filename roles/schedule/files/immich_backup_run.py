# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Scheduled Immich backup: the collection's module_utils, run by systemd or cron without Ansible.

    immich_backup_run.py --config /etc/homelab-immich/<instance>.json [--random-delay SECONDS]

The run is the backup role's order: ping start -> discover -> lock -> dump the DB (first) ->
originals with rsync --link-dest (second) -> file manifest -> verify -> promote -> retention ->
unlock -> ping success (or ping failure naming the failing step). Exit 0 on success, 1 on failure.
Only the standard library, rsync and the docker CLI are needed on the host.
"""
from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time

LIB = os.environ.get("HOMELAB_IMMICH_LIB", os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, LIB)

from ansible_collections.homelab.immich.plugins.module_utils import compose  # noqa: E402
from ansible_collections.homelab.immich.plugins.module_utils import db_ops  # noqa: E402
from ansible_collections.homelab.immich.plugins.module_utils import manifest  # noqa: E402
from ansible_collections.homelab.immich.plugins.module_utils import monitor  # noqa: E402

DEFAULT_FOLDERS = ["library", "upload", "profile", "backups"]


def log(msg):
    print("%s immich-backup: %s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), msg), flush=True)


def sync_originals(inst, files_dir, previous_dir, folders, excludes):
    """rsync each original folder into the set; unchanged files become hard links to the previous set."""
    copied = []
    for folder in folders:
        src = os.path.join(inst["upload_location"], folder)
        if not os.path.isdir(src):
            continue
        argv = ["rsync", "-a", "--delete", "--numeric-ids"]
        prev = os.path.join(previous_dir, "files", folder) if previous_dir else None
        if prev and os.path.isdir(prev):
            argv.append("--link-dest=" + prev)
        for pattern in excludes:
            argv.append("--exclude=" + pattern)
        argv += [src + "/", os.path.join(files_dir, folder) + "/"]
        res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if res.returncode not in (0, 24):  # 24: files vanished while copying (uploads in flight)
            raise RuntimeError("rsync of %s failed (rc=%s): %s" % (src, res.returncode, res.stderr.decode()[-500:]))
        copied.append(folder)
    return copied


def run(cfg):
    url = cfg.get("monitor_url")
    style = cfg.get("monitor_style") or None
    pings = []

    def ping(event, message=""):
        if not url:
            return
        res = monitor.ping(url, event, style=style, message=message, timeout=cfg.get("monitor_timeout", 10),
                           retries=cfg.get("monitor_retries", 2))
        pings.append(res)
        warning = monitor.warning_for(res)
        if warning:
            log("WARNING: " + warning)

    step = "start"
    started = time.time()
    ping("start", "backup of %s started on %s" % (cfg.get("instance_name") or cfg["project_dir"], socket.gethostname()))
    lock_path = root = run_id = None
    try:
        step = "discover"
        inst = compose.discover_instance(project_dir=cfg["project_dir"], overrides=cfg.get("overrides") or {})
        name = cfg.get("instance_name") or inst["instance_name"]
        results = []
        for target in cfg["targets"]:
            root = manifest.instance_root(target, name)
            lock_path = os.path.join(root, manifest.LOCK_NAME)
            run_id = "schedule-%d-%d" % (os.getpid(), int(started))
            step = "lock"
            manifest.acquire_lock(lock_path, run_id, stale_seconds=cfg.get("lock_stale_seconds", 6 * 3600),
                                  wait_seconds=cfg.get("lock_wait_seconds", 0), purpose="scheduled backup")
            try:
                step = "begin"
                bs = manifest.begin(root)
                step = "dump"
                log("dumping %s (%s) into %s" % (inst["db_container"], cfg.get("dump_kind", "cluster"), bs["db_dir"]))
                prev_dump_manifest = manifest.find_dump(os.path.join(bs["previous_dir"], "db"))[1] if bs["previous_dir"] else None
                dump = db_ops.dump(inst["db_container"], inst["db_user"], inst["db_name"], bs["db_dir"],
                                   dump_kind=cfg.get("dump_kind", "cluster"), immich_version=inst.get("immich_version"),
                                   previous_manifest=prev_dump_manifest, min_size_ratio=cfg.get("min_size_ratio", 0.5),
                                   on_shrink=cfg.get("on_shrink", "fail"))
                step = "originals"
                folders = sync_originals(inst, bs["files_dir"], bs["previous_dir"],
                                         cfg.get("folders") or DEFAULT_FOLDERS, cfg.get("excludes") or [])
                step = "manifest"
                prev = bs["previous_dir"]
                files = manifest.write_file_manifest(
                    bs["files_dir"], os.path.join(bs["partial"], manifest.FILES_MANIFEST),
                    previous_manifest=os.path.join(prev, manifest.FILES_MANIFEST) if prev else None,
                    previous_files_dir=os.path.join(prev, "files") if prev else None)
                step = "verify"
                final, info = manifest.finish(root, bs["partial"], summary={
                    "started": manifest.set_id(started), "instance": name, "project_dir": inst["project_dir"],
                    "folders": folders, "files": files["files"], "bytes": files["bytes"] + dump["bytes"],
                    "dump_bytes": dump["bytes"], "immich_version": inst.get("immich_version"),
                    "trigger": "schedule"}, deep=cfg.get("verify_deep", True))
                log("set %s verified and promoted (%d files, %d dump bytes)" % (final, files["files"], dump["bytes"]))
                step = "retention"
                r = cfg.get("retention") or {}
                _keep, deleted = manifest.prune(root, r.get("keep_last", 7), r.get("keep_daily", 7),
                                                r.get("keep_weekly", 4), r.get("keep_monthly", 6))
                results.append({"target": target, "set": final, "deleted": deleted})
            finally:
                manifest.release_lock(lock_path, run_id)
        step = "report"
        seconds = round(time.time() - started, 1)
        summary = "; ".join("%s (pruned %d)" % (r["set"], len(r["deleted"])) for r in results)
        log("backup finished in %.1fs: %s" % (seconds, summary))
        ping("success", "verified in %.1fs: %s" % (seconds, summary))
        return 0, {"ok": True, "results": results, "seconds": seconds, "pings": pings}
    except Exception as exc:  # noqa: BLE001 - every failure is reported, pinged and turned into rc 1
        msg = "backup FAILED at step '%s': %s" % (step, exc)
        log(msg)
        ping("failure", msg)
        return 1, {"ok": False, "failed_step": step, "error": str(exc), "pings": pings}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--random-delay", type=int, default=0, help="sleep up to N s first (cron's RandomizedDelaySec)")
    ap.add_argument("--report", help="also write the run's JSON result here")
    a = ap.parse_args(argv)
    with open(a.config) as fh:
        cfg = json.load(fh)
    if a.random_delay > 0:
        time.sleep(random.randint(0, a.random_delay))  # noqa: S311 - spreading start times, not crypto
    rc, result = run(cfg)
    if a.report:
        manifest.write_json(a.report, result)
    return rc


if __name__ == "__main__":
    sys.exit(main())
