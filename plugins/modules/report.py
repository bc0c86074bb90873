#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: report
short_description: Write the run reports of homelab.immich (JSON, drill JUnit, fleet table) and their summaries
version_added: 0.1.0
description:
  - Turns what a backup, restore or drill registered into the reports people and CI read, in O(dest)
    (normally on the controller, the task delegated to C(localhost)) - C(<kind>-<host>.json) for every kind,
    C(drill-<host>.xml) (JUnit) and C(drill-<host>.txt) for drills, C(fleet-report.json) and C(fleet-report.txt)
    for the fleet. The JSON schema is in docs/reports.md.
  - Returns the one-screen summary as RV(lines).
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.attributes
attributes:
  check_mode:
    support: full
    details: Builds the summary; writes no file.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Reports carry the time they were written.
options:
  kind:
    description: Which report.
    type: str
    required: true
    choices: [backup, restore, drill, fleet]
  host:
    description: The inventory host the report is about (not used by O(kind=fleet)).
    type: str
    default: ""
  data:
    description:
      - O(kind=backup) - the report of M(homelab.immich.backup_run). O(kind=restore) - the restore role's result.
      - O(kind=drill) - keys C(instance), C(marks), C(failure), C(check), C(teardown), C(chosen), C(source), C(rto).
      - O(kind=fleet) - keys C(names) (the hosts) and C(hosts), for each a dict of C(host), C(freshness) (of
        M(homelab.immich.backup_freshness)) and C(backup_result) (what the backup role recorded in this run). The last
        backup report (when the backup ran in another run) and the last drill report of each host are read from O(dest).
    type: raw
    required: true
  dest:
    description: Folder of the reports (created 0700).
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Write the drill's reports on the controller
  homelab.immich.report:
    kind: drill
    host: "{{ inventory_hostname }}"
    data: "{{ immich_drill_facts }}"
    dest: ./immich-reports
  delegate_to: localhost
"""

RETURN = r"""
lines:
  description: The human summary, one line per item.
  returned: always
  type: list
  elements: str
result:
  description: The report written to the JSON file.
  returned: always
  type: raw
files:
  description: The files written.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.immich.plugins.module_utils import reports
from ansible_collections.homelab.immich.plugins.module_utils._fsio import read_json, write_bytes_atomic, write_json_atomic


def build(kind, host, data, dest):
    """(result, lines, {file name: text or dict})"""
    if kind == "backup":
        result = dict(data)
        return result, list(data.get("summary_lines") or [data.get("summary") or ""]), {
            "backup-%s.json" % host: {"host": host, "action": "backup", "format": reports.REPORT_FORMAT, "result": result}}
    if kind == "restore":
        lines = reports.restore_lines(data)
        return data, lines, {"restore-%s.json" % host: {"host": host, "action": "restore", "format": reports.REPORT_FORMAT,
                                                        "result": data}}
    if kind == "drill":
        result = reports.drill_result(host, data.get("instance"), data.get("marks") or [], data.get("failure"),
                                      data.get("check"), data.get("teardown"), data.get("chosen"), data.get("source"),
                                      data.get("rto"))
        lines = reports.drill_lines(result)
        return result, lines, {"drill-%s.json" % host: result, "drill-%s.xml" % host: reports.drill_junit(result),
                               "drill-%s.txt" % host: "\n".join(lines) + "\n"}
    rows = []
    entries = list(data.get("hosts") or [])
    names = list(data.get("names") or [e.get("host") for e in entries])
    for name, given in zip(names, entries + [{}] * (len(names) - len(entries))):
        # a host without facts never got to hand them over: it was unreachable from the start
        item = given or {"freshness": {"unreachable": True, "msg": "no facts from this host (unreachable?)"}}
        drill = read_json(os.path.join(dest, "drill-%s.json" % name)) if dest else None
        backup = item.get("backup_result") or ((read_json(os.path.join(dest, "backup-%s.json" % name)) or {}).get("result")
                                               if dest else None)
        rows.append(reports.fleet_row(name, item.get("freshness"), backup, drill))
    lines = reports.fleet_text(rows)
    return rows, lines, {"fleet-report.json": rows, "fleet-report.txt": "\n".join(lines) + "\n"}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kind=dict(type="str", required=True, choices=["backup", "restore", "drill", "fleet"]),
            host=dict(type="str", default=""),
            data=dict(type="raw", required=True),
            dest=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not isinstance(p["data"], dict):
        module.fail_json(msg="data must be a dict for kind=%s" % p["kind"])
    result, lines, files = build(p["kind"], p["host"], p["data"], p["dest"])
    written = []
    if not module.check_mode:
        if not os.path.isdir(p["dest"]):
            os.makedirs(p["dest"], 0o700)
        for name, content in sorted(files.items()):
            path = os.path.join(p["dest"], name)
            if isinstance(content, str):
                write_bytes_atomic(path, content.encode("utf-8"))
            else:
                write_json_atomic(path, content)
            written.append(path)
    module.exit_json(changed=bool(written), lines=lines, result=result, files=written)


if __name__ == "__main__":
    main()
