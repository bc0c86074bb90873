# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup monitoring from cron, Nagios, Icinga or Zabbix: one line, exit 0 OK / 1 WARNING / 2 CRITICAL / 3 UNKNOWN.

    python3 immich_monitor.py freshness --target /srv/backup --instance immich --warn-hours 26 --crit-hours 50
    python3 immich_monitor.py ping --url https://hc-ping.com/<uuid> --event start

Installed by roles/schedule beside the collection's module_utils; uses the same code as the
homelab.immich.backup_freshness and homelab.immich.notify modules.
"""
from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# the engine: the zip the schedule role installs beside this file (or a folder holding ansible_collections/)
LIB = os.environ.get("HOMELAB_IMMICH_LIB") or (os.path.join(HERE, "homelab_immich_engine.zip")
                                               if os.path.exists(os.path.join(HERE, "homelab_immich_engine.zip")) else HERE)
sys.path.insert(0, LIB)

from ansible_collections.homelab.immich.plugins.module_utils import monitor  # noqa: E402


def main(argv=None):
    """CLI for cron / Nagios / Icinga / Zabbix: one line, exit 0/1/2 (3 unknown)."""
    ap = argparse.ArgumentParser(prog="homelab-immich-monitor", description=__doc__.split("\n", 1)[0])
    sub = ap.add_subparsers(dest="cmd")
    f = sub.add_parser("freshness", help="age of the newest verified backup")
    f.add_argument("--target", required=True)
    f.add_argument("--instance")
    f.add_argument("--layout", choices=("sets", "dumper"), default="sets")
    f.add_argument("--warn-hours", type=float, default=26.0)
    f.add_argument("--crit-hours", type=float, default=50.0)
    f.add_argument("--json", action="store_true")
    p = sub.add_parser("ping", help="send one start/success/failure ping")
    p.add_argument("--url", required=True)
    p.add_argument("--event", choices=monitor.EVENTS, required=True)
    p.add_argument("--style", choices=monitor.STYLES)
    p.add_argument("--message", default="")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--retries", type=int, default=2)
    a = ap.parse_args(argv)
    if a.cmd == "freshness":
        res = monitor.freshness(a.target, a.instance, a.warn_hours, a.crit_hours, layout=a.layout)
        print(json.dumps(res, sort_keys=True) if a.json else res["line"])
        return res["code"]
    if a.cmd == "ping":
        res = monitor.ping(a.url, a.event, style=a.style, message=a.message, timeout=a.timeout, retries=a.retries)
        print(monitor.warning_for(res) or "ping %s sent (%s)" % (a.event, res["style"]))
        return 0 if res["ok"] else 1
    ap.print_help()
    return 3


if __name__ == "__main__":
    sys.exit(main())
