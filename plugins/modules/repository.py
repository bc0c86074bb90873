#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: repository
short_description: Read a restic repository of homelab.immich backup sets - fetch a set, list, check, prune
version_added: 0.1.0
description:
  - O(operation=fetch) brings one set (C(latest) or a set id) out of the repository as a local backup set folder,
    C(<dest>/<instance>/<set id>), after a free-space check - restic restores it with its own verification, and
    every file of the set's manifest is checked for presence and size before the folder appears. The restore and
    recover roles then verify it like any local set (sha256 of the dump and of every file) before anything is
    destroyed.
  - O(operation=info) lists the instance's sets in the repository and the restic version in use.
  - O(operation=check) runs C(restic check), reading back O(read_data_subset) of the data; O(operation=prune) runs
    C(restic prune) (slow; skipped with a note on an append-only repository).
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.attributes
  - homelab.immich.target
  - homelab.immich.target.repository
attributes:
  check_mode:
    support: partial
    details: O(operation=info) runs; the other operations say what they would do.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details: O(operation=fetch) of a set already in O(dest) does nothing.
options:
  operation:
    description: What to do.
    type: str
    choices: [info, fetch, check, prune]
    default: info
  repository:
    required: true
  instance_name:
    description: The instance whose sets are read (the C(instance:<name>) tag of its snapshots).
    type: str
    required: true
  set_id:
    description: With O(operation=fetch), the set to bring back - C(latest), a set id, or a snapshot id.
    type: str
    default: latest
  dest:
    description: With O(operation=fetch), the folder receiving C(<instance>/<set id>/) (created 0700).
    type: path
  read_data_subset:
    description: With O(operation=check), how much data to read back (C(5%), C(1/10), C(500M)); none reads only the structure.
    type: str
  min_free_ratio:
    description: With O(operation=fetch), free space needed in O(dest), as a multiple of the set's size.
    type: float
    default: 1.05
"""

EXAMPLES = r"""
- name: Bring the newest set back from the offsite repository
  homelab.immich.repository:
    operation: fetch
    repository:
      restic: "sftp:backup@offsite.example.net:/srv/restic/immich"
      password: "{{ vault_restic_password }}"
    instance_name: immich
    dest: /var/tmp/homelab-immich-restore
  register: fetched
"""

RETURN = r"""
set_id:
  description: The set fetched (O(operation=fetch)).
  returned: fetch
  type: str
set_dir:
  description: Its local folder, a backup set like any other, marked as a staging copy (C(<set_dir>.fetched.json)) so
    that M(homelab.immich.restore_files) may move its files out instead of copying them.
  returned: fetch
  type: str
staging_paths:
  description: What the fetch left on the host (the set folder and its marker), to be removed once the copy is used.
  returned: fetch, not in check mode
  type: list
  elements: str
repository:
  description: The repository as it may be shown (C(restic:<repository>), a REST password as ***).
  returned: fetch
  type: str
seconds:
  description: How long the fetch took (part of a drill's RTO).
  returned: fetch
  type: float
sets:
  description: The instance's sets in the repository, oldest first (O(operation=info)).
  returned: info
  type: list
  elements: dict
version:
  description: The restic version in use.
  returned: always
  type: str
check:
  description: The outcome of O(operation=check) (ok, errors, damaged_packs, message).
  returned: check
  type: dict
"""

import json
import os
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.immich.plugins.module_utils import sets
from ansible_collections.homelab.immich.plugins.module_utils.targets import TargetError
from ansible_collections.homelab.immich.plugins.module_utils.targets.restic import ResticTarget
from ansible_collections.homelab.immich.plugins.module_utils.targets.spec import TARGET_OPTIONS, clean


def _set_size(target, set_id):
    """Bytes the set needs on disk, from its set.json read out of the repository (None when unknown)."""
    try:
        with target.stream_file(set_id, sets.SET_JSON) as stream:
            info = json.loads(b"".join(stream).decode("utf-8"))
    except (TargetError, ValueError, OSError):
        return None
    return int(info.get("files_bytes") or 0) + int(info.get("dump_bytes") or 0)


def fetch(module, target, p):
    sid, _snapshot = target.resolve(p["set_id"])
    root = sets.instance_root(p["dest"], p["instance_name"])
    set_dir = os.path.join(root, sid)
    marker = sets.fetched_marker(set_dir)
    staging_paths = [set_dir, marker]
    fetched = sets.fetched_state(set_dir)
    if sets.read_info(set_dir) and not (fetched or {}).get("moved"):
        module.exit_json(changed=False, set_id=sid, set_dir=set_dir, seconds=0.0, version=target.describe().get("version"),
                         repository=target.label, staging_paths=staging_paths, msg="Set %s is already in %s." % (sid, root))
    need = _set_size(target, sid)
    if module.check_mode:
        module.exit_json(changed=True, set_id=sid, set_dir=set_dir, seconds=0.0, repository=target.label,
                         msg="Would fetch set %s (%s bytes) into %s." % (sid, need, root))
    os.makedirs(root, 0o700, exist_ok=True)
    free = shutil.disk_usage(root).free
    if need and free < need * p["min_free_ratio"]:
        module.fail_json(msg="Only %.1f GB free in %s; set %s needs %.1f GB (x%s). Nothing was fetched and nothing was touched: "
                             "free space there or choose another dest." % (free / 1e9, root, sid, need / 1e9, p["min_free_ratio"]))
    # a set.json-less leftover of an interrupted fetch, or a copy whose files a restore moved out
    shutil.rmtree(set_dir, ignore_errors=True)
    if os.path.lexists(marker):
        os.unlink(marker)
    got = target.fetch_set(sid, set_dir)
    sets.mark_fetched(set_dir, snapshot_id=got.get("snapshot_id"), repository=target.label)
    module.exit_json(changed=True, set_dir=set_dir, version=target.describe().get("version"), repository=target.label,
                     staging_paths=staging_paths,
                     msg="Fetched set %s from %s into %s in %.1f s (%s files restored, each present with its size; "
                         "its checksums are verified before it is used)." % (sid, target.label, set_dir, got["seconds"],
                                                                             got.get("files_restored")), **got)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            operation=dict(type="str", default="info", choices=["info", "fetch", "check", "prune"]),
            repository=dict(type="dict", required=True, options=TARGET_OPTIONS),
            instance_name=dict(type="str", required=True),
            set_id=dict(type="str", default="latest"),
            dest=dict(type="path"),
            read_data_subset=dict(type="str"),
            min_free_ratio=dict(type="float", default=1.05),
        ),
        required_if=[("operation", "fetch", ["dest"])],
        supports_check_mode=True,
    )
    p = module.params
    try:
        target = ResticTarget(clean(p["repository"]), p["instance_name"])
        target.check()
        if p["operation"] == "fetch":
            fetch(module, target, p)
        if p["operation"] == "info":
            module.exit_json(changed=False, sets=target.sets(), version=target.describe().get("version"))
        if module.check_mode:
            module.exit_json(changed=p["operation"] == "prune", msg="Would run restic %s on %s." % (p["operation"], target.label))
        if p["operation"] == "check":
            result = target.check_repository(p["read_data_subset"])
            if not result["ok"]:
                module.fail_json(msg=result.get("message") or "restic check found errors", check=result)
            module.exit_json(changed=False, check=result, msg="restic check of %s: no errors (%s read back)."
                             % (target.label, p["read_data_subset"] or "structure only"))
        result = target.prune_repository()
        module.exit_json(changed=not result.get("skipped"), prune=result, msg=result.get("note") or "pruned")
    except (TargetError, ValueError) as exc:
        module.fail_json(msg=str(exc), reason=getattr(exc, "reason", "failed"))


if __name__ == "__main__":
    main()
