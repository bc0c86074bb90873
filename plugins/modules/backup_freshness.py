#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_freshness
short_description: Fail when the newest verified Immich backup is older than a threshold
version_added: 0.1.0
description:
  - Looks at the promoted, verified backup sets under C(<target>/<instance>) (folders named
    C(YYYYMMDDTHHMMSSZ) whose C(set.json) says verified; C(.partial-*) folders never count), or at
    a dumper sidecar's C(<BACKUP_DIR>/last/*-latest.sql.gz), and reports the age of the newest.
  - Fails when it is older than O(max_age_hours) or when there is none.
  - The same check runs without Ansible, for cron or a Nagios/Icinga/Zabbix agent, as
    C(python3 /usr/local/lib/homelab-immich/immich_monitor.py freshness --target T --instance I)
    (installed by the C(homelab.immich.schedule) role) prints one line and exits 0 OK, 1 warning, 2 critical.
options:
  target:
    description: The backup target folder (the one holding one folder per instance), or the dumper's BACKUP_DIR.
    type: path
    required: true
  instance:
    description: The instance folder name under O(target). Required for O(layout=sets).
    type: str
  layout:
    description: V(sets) for this collection's backup sets, V(dumper) for a postgres-backup-local style C(last/) folder.
    type: str
    choices: [sets, dumper]
    default: sets
  max_age_hours:
    description: Fail when the newest verified backup is at least this old.
    type: float
    default: 26
  warn_age_hours:
    description: Warn (without failing) when the newest verified backup is at least this old.
    type: float
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: full
author:
  - homelab.immich developers (@homelab)
"""

EXAMPLES = r"""
- name: Fail when last night's backup is missing
  homelab.immich.backup_freshness:
    target: /srv/backup/immich
    instance: immich
    max_age_hours: 26

- name: Check the dumper sidecar's dumps
  homelab.immich.backup_freshness:
    target: /opt/immich/db_dumps
    layout: dumper
    max_age_hours: 30
"""

RETURN = r"""
fresh:
  description: Whether the newest verified backup is younger than O(max_age_hours).
  returned: always
  type: bool
newest:
  description: Name of the newest verified set (or path of the newest dump).
  returned: always
  type: str
  sample: 20261124T220000Z
age_hours:
  description: Age of the newest verified backup in hours (null when there is none).
  returned: always
  type: float
count:
  description: Number of verified sets found.
  returned: always
  type: int
size_bytes:
  description: Size recorded for the newest set, when its set.json says.
  returned: always
  type: int
set_info:
  description: The C(set.json) of the newest verified set (sizes, durations, versions), for fleet reports.
  returned: when a verified set was found
  type: dict
state:
  description: Nagios-style state, C(OK), C(WARNING), C(CRITICAL) or C(UNKNOWN).
  returned: always
  type: str
line:
  description: The one-line summary the CLI prints.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.immich.plugins.module_utils.monitor import freshness


def main():
    module = AnsibleModule(
        argument_spec=dict(
            target=dict(type="path", required=True),
            instance=dict(type="str"),
            layout=dict(type="str", default="sets", choices=["sets", "dumper"]),
            max_age_hours=dict(type="float", default=26),
            warn_age_hours=dict(type="float"),
        ),
        required_if=[("layout", "sets", ("instance",))],
        supports_check_mode=True,
    )
    p = module.params
    warn = p["warn_age_hours"] if p["warn_age_hours"] is not None else p["max_age_hours"]
    res = freshness(p["target"], p["instance"], warn_hours=warn, crit_hours=p["max_age_hours"], layout=p["layout"])
    res["fresh"] = res["code"] in (0, 1)
    res.pop("code")
    if not res["fresh"]:
        module.fail_json(msg=res["line"] + ". Look at the last backup run's log on this host; "
                         "run the backup playbook (or the scheduled unit) now.", changed=False, **res)
    if res["state"] == "WARNING":
        module.warn(res["line"])
    module.exit_json(changed=False, **res)


if __name__ == "__main__":
    main()
