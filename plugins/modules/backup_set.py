#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_set
short_description: Life cycle of homelab.immich backup sets on a target folder
version_added: 0.1.0
description:
  - A backup set is one folder per run under C(<target>/<instance>/) holding the database dump, its
    manifest, a file manifest (path, size, mtime, sha256) and the originals (see docs/design.md).
  - O(state=lock)/O(state=unlock) guard a run; O(state=begin) opens a C(.partial-<id>) set;
    O(state=finish) writes the file manifest, verifies and promotes it and moves C(latest);
    O(state=verify) checks a set; O(state=select) chooses the set to restore; O(state=prune) applies retention.
author: homelab.immich developers (@homelab)
attributes:
  check_mode:
    support: partial
    details: C(verify) and C(select) run normally; C(lock), C(unlock), C(begin), C(finish) change nothing and C(prune) reports what it would delete.
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    support: none
    description: No diff is produced.
options:
  state:
    description: What to do.
    type: str
    required: true
    choices: [lock, unlock, begin, finish, verify, select, prune]
  target:
    description:
      - Target folder (the C(<target>) of the layout). The instance folder is O(target)/O(instance_name).
      - Required except for O(state=verify) with O(path) and O(manifest).
    type: path
  instance_name:
    description: Instance folder name under O(target). Required with O(target).
    type: str
  manifest:
    description: With O(state=verify) and O(path), the file manifest to check O(path) against (instead of a set's).
    type: path
  run_id:
    description: Identifier of this run, recorded in the lock (O(state=lock)/O(state=unlock)).
    type: str
  lock_stale_seconds:
    description: A lock older than this is stale (as is one whose owner process is gone).
    type: int
    default: 21600
  lock_wait_seconds:
    description: How long to wait for another run's lock before failing with its holder's details.
    type: int
    default: 0
  partial:
    description: The C(.partial-<id>) folder returned by O(state=begin) (O(state=finish)).
    type: path
  summary:
    description: Extra facts recorded in C(set.json) (O(state=finish)).
    type: dict
    default: {}
  set_id:
    description: A set name (C(20261124T220000Z)) for O(state=verify)/O(state=select); C(latest) or empty means the newest verified set.
    type: str
  path:
    description:
      - With O(state=verify), check this folder (for example a restored UPLOAD_LOCATION) against the file manifest
        of the set instead of the set itself.
    type: path
  allow_extra:
    description: With O(path), files that are not in the manifest (thumbnails, newer uploads) are not an error.
    type: bool
    default: true
  deep:
    description: Check every file's sha256 (not only sizes and presence).
    type: bool
    default: true
  keep_last:
    description: Retention - the last N sets are kept.
    type: int
    default: 7
  keep_daily:
    description: Retention - the newest set of each of the last N days with sets is kept.
    type: int
    default: 7
  keep_weekly:
    description: Retention - the newest set of each of the last N ISO weeks with sets is kept.
    type: int
    default: 4
  keep_monthly:
    description: Retention - the newest set of each of the last N months with sets is kept.
    type: int
    default: 6
notes:
  - The newest verified set is never pruned. Call O(state=prune) only after a successful run.
"""

EXAMPLES = r"""
- name: Take the lock of this instance's backups
  homelab.immich.backup_set:
    state: lock
    target: /mnt/backup/immich
    instance_name: immich
    run_id: "{{ ansible_date_time.iso8601_micro }}"

- name: Choose the newest verified set
  homelab.immich.backup_set:
    state: select
    target: /mnt/backup/immich
    instance_name: immich
  register: chosen
"""

RETURN = r"""
set_id:
  description: The set begun, finished or selected.
  returned: begin, finish, select, verify
  type: str
  sample: 20261124T220000Z
set_dir:
  description: Folder of the set (the partial folder for O(state=begin)).
  returned: begin, finish, select, verify
  type: str
db_dir:
  description: Where the dump goes (O(state=begin)).
  returned: begin
  type: str
files_dir:
  description: Where the originals go (O(state=begin)) or are (O(state=select)).
  returned: begin, select
  type: str
previous_dir:
  description: The newest verified set before this run, for rsync C(--link-dest); null on the first run.
  returned: begin
  type: str
dump_path:
  description: The set's database dump.
  returned: select, verify
  type: str
dump_manifest:
  description: The dump's manifest written by M(homelab.immich.db_dump).
  returned: select, verify
  type: str
set_info:
  description: Content of C(set.json).
  returned: finish, select
  type: dict
verification:
  description: Outcome of the checks (ok, problems, files, bytes, dump).
  returned: finish, verify, select
  type: dict
manifest:
  description: File manifest counters (files, bytes, hashed_files, hashed_bytes).
  returned: finish
  type: dict
kept:
  description: Sets kept by retention.
  returned: prune
  type: list
  elements: str
deleted:
  description: Sets deleted (or that would be, in check mode).
  returned: prune
  type: list
  elements: str
previous_dump_manifest:
  description: Manifest of the previous set's dump (for the shrink check of M(homelab.immich.db_dump)).
  returned: begin
  type: str
free_bytes:
  description: Free bytes on the target's file system (O(state=begin)).
  returned: begin
  type: int
previous_bytes:
  description: Size of the previous set (dump + originals), for the free-space preflight.
  returned: begin
  type: int
lock:
  description: The lock record (pid, host, started, run_id).
  returned: lock
  type: dict
"""

import os
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.immich.plugins.module_utils import manifest as m


def _set_dir(module, root):
    sid = m.select(root, module.params["set_id"], require_verified=False)
    return sid, os.path.join(root, sid)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", required=True, choices=["lock", "unlock", "begin", "finish", "verify", "select", "prune"]),
            target=dict(type="path"),
            instance_name=dict(type="str"),
            manifest=dict(type="path"),
            run_id=dict(type="str"),
            lock_stale_seconds=dict(type="int", default=21600),
            lock_wait_seconds=dict(type="int", default=0),
            partial=dict(type="path"),
            summary=dict(type="dict", default={}),
            set_id=dict(type="str"),
            deep=dict(type="bool", default=True),
            path=dict(type="path"),
            allow_extra=dict(type="bool", default=True),
            keep_last=dict(type="int", default=7),
            keep_daily=dict(type="int", default=7),
            keep_weekly=dict(type="int", default=4),
            keep_monthly=dict(type="int", default=6),
        ),
        required_if=[("state", "lock", ["run_id"]), ("state", "unlock", ["run_id"]), ("state", "finish", ["partial"])],
        supports_check_mode=True,
    )
    os.umask(0o077)
    p = module.params
    state = p["state"]
    if not (state == "verify" and p["path"] and p["manifest"]) and not (p["target"] and p["instance_name"]):
        module.fail_json(msg="target and instance_name are required for state=%s." % state)
    root = m.instance_root(p["target"], p["instance_name"]) if p["target"] else None
    lock_path = os.path.join(root, m.LOCK_NAME) if root else None
    try:
        if state == "lock":
            if module.check_mode:
                holder, stale, why = m.lock_state(lock_path, p["lock_stale_seconds"])
                module.exit_json(changed=True, lock=holder or {}, lock_state=why)
            res = m.acquire_lock(lock_path, p["run_id"], p["lock_stale_seconds"], p["lock_wait_seconds"])
            module.exit_json(changed=res["acquired"], lock=res["lock"])
        if state == "unlock":
            released = False if module.check_mode else m.release_lock(lock_path, p["run_id"])
            module.exit_json(changed=released)
        if state == "begin":
            if module.check_mode:
                module.exit_json(changed=True, set_id=None, set_dir=None, previous_dir=None)
            info = m.begin(root)
            usage = shutil.disk_usage(root)
            prev_info = m.read_set_json(info["previous_dir"]) if info["previous_dir"] else None
            prev_bytes = 0
            prev_dump_manifest = None
            if info["previous_dir"]:
                prev_dump_manifest = m.find_dump(os.path.join(info["previous_dir"], "db"))[1]
            if prev_info:
                prev_bytes = int((prev_info.get("verification") or {}).get("bytes") or 0) + int(prev_info.get("dump_bytes") or 0)
            module.exit_json(changed=True, set_id=info["set_id"], set_dir=info["partial"], db_dir=info["db_dir"],
                             free_bytes=usage.free, previous_bytes=prev_bytes, previous_dump_manifest=prev_dump_manifest,
                             files_dir=info["files_dir"], previous_dir=info["previous_dir"],
                             removed_partials=info["removed_partials"])
        if state == "finish":
            if module.check_mode:
                module.exit_json(changed=True)
            partial = p["partial"]
            prev = m.latest_verified(root)
            prev_dir = os.path.join(root, prev) if prev else None
            counts = m.write_file_manifest(
                os.path.join(partial, "files"), os.path.join(partial, m.FILES_MANIFEST),
                os.path.join(prev_dir, m.FILES_MANIFEST) if prev_dir else None,
                os.path.join(prev_dir, "files") if prev_dir else None)
            summary = dict(p["summary"], files_manifest=counts, previous=prev)
            final, info = m.finish(root, partial, summary, deep=p["deep"])
            module.exit_json(changed=True, set_id=info["set_id"], set_dir=final, set_info=info,
                             verification=info["verification"], manifest=counts)
        if state == "verify" and p["path"]:
            if p["manifest"]:
                sid, set_dir, manifest_path = None, None, p["manifest"]
            else:
                sid, set_dir = _set_dir(module, root)
                manifest_path = os.path.join(set_dir, m.FILES_MANIFEST)
            report = m.verify_files(p["path"], manifest_path, deep=p["deep"])
            ok = report["missing"] == 0 and report["changed"] == 0 and (p["allow_extra"] or report["extra"] == 0)
            if not ok:
                module.fail_json(msg="%s does not match the file manifest of set %s: %d missing, %d changed, %d extra (%s)."
                                     % (p["path"], sid, report["missing"], report["changed"], report["extra"],
                                        "; ".join(report["problems"][:5])), verification=report)
            if sid is None:
                module.exit_json(changed=False, verification=report)
            module.exit_json(changed=False, set_id=sid, set_dir=set_dir, verification=report)
        if state == "verify":
            sid, set_dir = _set_dir(module, root)
            report = m.verify_set(set_dir, deep=p["deep"])
            dump = report["dump"]
            result = dict(changed=False, set_id=sid, set_dir=set_dir, verification=report,
                          dump_path=dump.get("path"), dump_manifest=dump.get("manifest_path"))
            if not report["ok"]:
                module.fail_json(msg="Backup set %s failed verification: %s. Nothing was touched; choose another set "
                                     "(set_id) or take a new backup." % (set_dir, "; ".join(report["problems"][:5])),
                                 **result)
            module.exit_json(**result)
        if state == "select":
            sid = m.select(root, p["set_id"], require_verified=True)
            set_dir = os.path.join(root, sid)
            dump, dman = m.find_dump(os.path.join(set_dir, "db"))
            module.exit_json(changed=False, set_id=sid, set_dir=set_dir, files_dir=os.path.join(set_dir, "files"),
                             files_manifest=os.path.join(set_dir, m.FILES_MANIFEST), dump_path=dump,
                             dump_manifest=dman, set_info=m.read_set_json(set_dir) or {})
        if state == "prune":
            keep, delete = m.prune(root, p["keep_last"], p["keep_daily"], p["keep_weekly"], p["keep_monthly"],
                                   dry_run=module.check_mode)
            module.exit_json(changed=bool(delete), kept=keep, deleted=delete)
    except (m.SetError, OSError) as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
