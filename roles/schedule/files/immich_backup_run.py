# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Scheduled Immich backup: the collection's backup engine, run by systemd or cron without Ansible.

    immich_backup_run.py --config /etc/homelab-immich/<instance>.json [--random-delay SECONDS] [--report FILE]

The configuration is written by the backup role (tasks/config.yml) from the same variables a run of
the role uses: how to find the instance, the targets and the engine options. This file only finds
the instance and calls backup_run.run_backup(), the function the homelab.immich.backup_run module
calls. Exit 0 on success, 1 on failure, 2 when the set was made but a target failed.
"""
from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# the engine: the zip the schedule role installs beside this file (or a folder holding ansible_collections/)
LIB = os.environ.get("HOMELAB_IMMICH_LIB") or (os.path.join(HERE, "homelab_immich_engine.zip")
                                               if os.path.exists(os.path.join(HERE, "homelab_immich_engine.zip")) else HERE)
sys.path.insert(0, LIB)

from ansible_collections.homelab.immich.plugins.module_utils import backup_run, compose  # noqa: E402
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx  # noqa: E402
from ansible_collections.homelab.immich.plugins.module_utils._fsio import write_json_atomic  # noqa: E402


def log(msg):
    print("%s immich-backup: %s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), msg), flush=True)


def find_instance(discover):
    overrides = dict(discover.get("overrides") or {}, instance_name=discover.get("instance_name") or None)
    inst = compose.discover_instance(project_dir=discover.get("project_dir") or None,
                                     project_name=discover.get("project_name") or None,
                                     compose_files=discover.get("compose_files") or None, overrides=overrides)
    inst["db_running"] = dx.running(inst["db_container"])
    inst["server_running"] = dx.running(inst["server_container"])
    return inst


def run(cfg):
    try:
        inst = find_instance(cfg.get("discover") or {})
    except (compose.DiscoveryError, dx.DockerError, OSError) as exc:
        msg = "backup FAILED at step 'discover': %s" % exc
        log(msg)
        return 1, {"status": "failed", "failed_step": "discover", "error": msg, "summary_lines": [msg]}
    try:
        report = backup_run.run_backup(inst, cfg["targets"], cfg.get("options") or {}, log=log)
    except backup_run.EngineError as exc:
        log(str(exc))
        return 1, exc.result
    except ValueError as exc:
        log("backup FAILED: %s" % exc)
        return 1, {"status": "failed", "failed_step": "options", "error": str(exc), "summary_lines": [str(exc)]}
    for line in report["summary_lines"]:
        log(line)
    return (0 if report["status"] == "ok" else 2), report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--random-delay", type=int, default=0, help="sleep up to N s first (cron's RandomizedDelaySec)")
    ap.add_argument("--report", help="also write the run's JSON report here")
    a = ap.parse_args(argv)
    with open(a.config) as fh:
        cfg = json.load(fh)
    if a.random_delay > 0:
        time.sleep(random.randint(0, a.random_delay))  # noqa: S311 - spreading start times, not crypto
    os.umask(0o077)
    rc, report = run(cfg)
    if a.report:
        write_json_atomic(a.report, report)
    return rc


if __name__ == "__main__":
    sys.exit(main())
