#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_set
short_description: Choose, list and verify homelab.immich backup sets (read only)
version_added: 0.1.0
description:
  - A backup set is one folder per run under C(<target>/<instance>/) holding the database dump and its manifest,
    a file manifest (path, size, mtime, sha256, sha1), the originals, the compose project and C(set.json); see
    docs/design.md. Sets are written by M(homelab.immich.backup_run); this module only reads them.
  - O(state=select) chooses the set to restore (a named one, or the newest verified); O(state=verify) checks a set
    (dump sha256 against its manifest, every file against the file manifest) or checks a folder (a restored
    UPLOAD_LOCATION) against a set's file manifest.
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.attributes
attributes:
  check_mode:
    support: full
    details: Read only; runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  state:
    description: What to do.
    type: str
    required: true
    choices: [select, verify]
  target:
    description: Target folder (the C(<target>) of the layout). The instance folder is O(target)/O(instance_name).
    type: path
  instance_name:
    description: Instance folder name under O(target).
    type: str
  set_id:
    description: A set name (C(20261124T220000Z)); C(latest) or empty means the newest verified set.
    type: str
  set_dir:
    description: A set's folder, instead of O(target) + O(instance_name) + O(set_id).
    type: path
  path:
    description:
      - With O(state=verify), check this folder (a restored UPLOAD_LOCATION) against the set's file manifest instead
        of the set itself. Folder markers (C(.immich)) count by presence, since Immich rewrites them at every boot.
    type: path
  allow_extra:
    description: With O(path), files that are not in the manifest (newer uploads) are not an error.
    type: bool
    default: true
  deep:
    description: Check every file's sha256 (not only sizes and presence).
    type: bool
    default: true
  sample:
    description: Without O(deep), hash this many files chosen at random (or this fraction, when below 1).
    type: float
  signature:
    description:
      - With O(state=verify) of a set, the check of its C(set.mac) (the HMAC of its manifests, made with the instance's
        signing key at backup time).
      - C(when_key_present) checks it when the key is on this host and refuses a set that does not verify (or has no
        C(set.mac)); without a key (a bare host recovering from its encrypted repository) the set is restored and the
        result says its signature was not checked. C(required) refuses a restore without the key. C(skip) is for the
        one restore of an unsigned set made before sets were signed.
    type: str
    choices: [when_key_present, required, skip]
    default: when_key_present
  key_file:
    description: The signing key; empty means C(/etc/homelab-immich/<instance>.key), the backup's default.
    type: path
  dump_pattern:
    type: path
    description:
      - With O(state=select), choose a lone dump instead of a set - the newest file (symlinks followed) matching this
        path or glob, such as a dumper sidecar's C(/opt/immich/db_dumps/last/*-latest.sql.gz) or one of Immich's own
        C(UPLOAD_LOCATION/backups/immich-db-backup-*.sql.gz).
"""

EXAMPLES = r"""
- name: Choose the newest verified set
  homelab.immich.backup_set:
    state: select
    target: /mnt/backup/immich
    instance_name: immich
  register: chosen

- name: Verify it before anything is destroyed
  homelab.immich.backup_set:
    state: verify
    set_dir: "{{ chosen.set_dir }}"
"""

RETURN = r"""
set_id:
  description: The set selected or verified.
  returned: select, verify
  type: str
  sample: 20261124T220000Z
set_dir:
  description: Folder of the set.
  returned: select, verify
  type: str
files_dir:
  description: The set's originals.
  returned: select
  type: str
files_manifest:
  description: The set's file manifest.
  returned: select
  type: str
dump_path:
  description: The set's database dump.
  returned: select, verify
  type: str
dump_manifest:
  description: The dump's manifest written by the dump.
  returned: select, verify
  type: str
set_info:
  description: Content of C(set.json) in the current schema.
  returned: select, verify
  type: dict
verification:
  description: Outcome of the checks (ok, problems, dump, files, signature - its status, checked, key_id, message).
  returned: verify
  type: dict
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.immich.plugins.module_utils import file_manifest, set_mac, sets


def newest_dump(pattern):
    """The newest regular file matching a path or glob, symlinks followed; None when nothing matches."""
    best = None
    for path in glob.glob(pattern):
        real = os.path.realpath(path)
        if os.path.isfile(real) and (best is None or os.stat(real).st_mtime > best[0]):
            best = (os.stat(real).st_mtime, real)
    return best[1] if best else None


def _chosen(module, p):
    if p["set_dir"]:
        set_dir = os.path.abspath(p["set_dir"])
        return os.path.basename(set_dir), set_dir
    if not (p["target"] and p["instance_name"]):
        module.fail_json(msg="Give set_dir, or target and instance_name (and set_id).")
    root = sets.instance_root(p["target"], p["instance_name"])
    sid = sets.select(root, p["set_id"], require_good=p["state"] == "select")
    return sid, os.path.join(root, sid)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", required=True, choices=["select", "verify"]),
            target=dict(type="path"),
            instance_name=dict(type="str"),
            set_id=dict(type="str"),
            set_dir=dict(type="path"),
            path=dict(type="path"),
            allow_extra=dict(type="bool", default=True),
            deep=dict(type="bool", default=True),
            sample=dict(type="float"),
            dump_pattern=dict(type="path"),
            signature=dict(type="str", default="when_key_present", choices=list(set_mac.SIGNATURE_POLICIES)),
            key_file=dict(type="path", no_log=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p["state"] == "select" and p["dump_pattern"]:
            path = newest_dump(p["dump_pattern"])
            if path is None:
                module.fail_json(msg="No dump matches %s (has the dumper sidecar run yet?). Nothing was touched." % p["dump_pattern"])
            module.exit_json(changed=False, set_id=os.path.basename(path), set_dir=None, dump_path=path, dump_manifest=None,
                             set_info={})
        sid, set_dir = _chosen(module, p)
        dump, dump_manifest = sets.find_dump(set_dir)
        facts = dict(changed=False, set_id=sid, set_dir=set_dir, dump_path=dump, dump_manifest=dump_manifest,
                     set_info=sets.read_info(set_dir) or {})
        if p["state"] == "select":
            module.exit_json(files_dir=os.path.join(set_dir, "files"),
                             files_manifest=os.path.join(set_dir, file_manifest.NAME), **facts)
        sample = None if p["deep"] else p["sample"]
        if p["path"]:
            report = file_manifest.verify(p["path"], os.path.join(set_dir, file_manifest.NAME), deep=p["deep"],
                                          sample=sample, markers="presence", allow_extra=p["allow_extra"]).as_dict()
            if not report["ok"]:
                module.fail_json(msg="%s does not match the file manifest of set %s: %s. The set itself is not changed."
                                     % (p["path"], sid, "; ".join(report["problems"])), verification=report, **facts)
            module.exit_json(verification=report, **facts)
        report = sets.verify(set_dir, deep=p["deep"], sample=sample)
        report.pop("info", None)
        if not report["ok"]:
            module.fail_json(msg="Backup set %s failed verification: %s. Nothing was touched; choose another set "
                                 "(set_id) or take a new backup." % (set_dir, "; ".join(report["problems"][:5])),
                             verification=report, **facts)
        instance = p["instance_name"] or os.path.basename(os.path.dirname(set_dir))
        key_file = p["key_file"]
        if not key_file and p["signature"] != "skip":
            try:
                key_file = set_mac.default_key_path(instance)
            except set_mac.MacError as exc:
                module.fail_json(msg="%s So the signature of set %s cannot be checked with the default key. Nothing was "
                                     "touched: pass key_file (immich_restore_key_file) naming its signing key, or "
                                     "signature=skip for a set you vouch for." % (exc, sid), verification=report, **facts)
        signature = set_mac.check_signature(set_dir, key_file, instance=instance, policy=p["signature"],
                                            dump_sha256=(report.get("dump") or {}).get("sha256"))
        report["signature"] = signature
        if not signature["ok"]:
            module.fail_json(msg="Backup set %s failed its signature check: %s" % (set_dir, signature["message"]),
                             verification=report, **facts)
        if signature["status"] == "not_checked":
            module.warn(signature["message"])
        module.exit_json(verification=report, **facts)
    except (sets.SetError, file_manifest.ManifestError, OSError) as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
