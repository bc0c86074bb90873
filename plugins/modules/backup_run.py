#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_run
short_description: Back up an Immich instance into verified backup sets on every target (the one backup engine)
version_added: 0.1.0
description:
  - Runs the collection's backup engine, the same code the scheduled backup of M(homelab.immich.backup_run)'s
    role C(homelab.immich.schedule) runs without Ansible. Lock every target; open a C(.partial-<id>) set on the
    first local target; dump the database FIRST (binaries inside the database container, no TTY, completion
    trailer, row counts and size against the previous dump); copy the originals SECOND (unchanged files hard
    links to the previous set, new ones hashed as they are copied, the file manifest written in the same pass);
    copy the compose project and describe the instance; check that every file the database references is in
    the set and that the originals did not shrink against the previous set; verify (the dump read back, the new
    files and a sample re-hashed, a full check every O(options.verify_full_days)); promote; copy the set to
    every other target and prove each copy; apply ONE retention policy on every target; unlock.
  - Nothing is promoted and nothing is deleted anywhere unless the new set is complete and verified.
  - Targets are dicts - C({path}) a folder on this host (the first one is where sets are written first),
    C({host, path, user, port, ssh_args}) a mirror over SSH (needs rsync and flock there),
    C({restic, password | password_file, init}) a restic repository.
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.attributes
  - homelab.immich.progress
  - homelab.immich.target
  - homelab.immich.target.targets
attributes:
  check_mode:
    support: full
    details: Writes nothing; returns the plan (what would be dumped, copied, linked and pruned).
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run writes a new, timestamped backup set.
options:
  instance:
    description: The instance as M(homelab.immich.instance_info) returns it (RV(homelab.immich.instance_info#module:instance)).
    type: dict
    required: true
  targets:
    required: true
  options:
    description: How to back up. The scheduled backup reads the same keys from its configuration file.
    type: dict
    default: {}
    suboptions:
      dump_kind:
        description: C(database) runs C(pg_dump) of the Immich database (Immich 2.5+ style); C(cluster) runs C(pg_dumpall).
        type: str
        choices: [database, cluster]
        default: database
      compression:
        description: Compression of the dump.
        type: str
        choices: [gzip, zstd, none]
        default: gzip
      compression_level:
        description: Compressor level (1 when not set).
        type: int
      consistency:
        description: C(online) dumps while Immich runs (the dump is one snapshot; files are copied after it, so no row
          lacks its file); C(stop_server) stops immich-server for the dump and the copy and always starts it again;
          C(maintenance) uses Immich's maintenance mode instead (falls back to C(stop_server) where the server has no
          C(immich-admin enable-maintenance-mode)), left again whatever happens, and the dump written without it.
        type: str
        choices: [online, stop_server, maintenance]
        default: online
      folders:
        description:
          - Media folders under UPLOAD_LOCATION to back up. When not set - C(library), C(upload), C(profile),
            C(backups) and C(thumbs) (thumbnails make a restored instance usable at once; Immich's missing-thumbnail
            job does not regenerate them). C(encoded-video) can be added.
        type: list
        elements: str
      excludes:
        description: Patterns left out; with a C(/) they match the set-relative path, without one any file or folder name.
        type: list
        elements: str
      verify_sample:
        description: Files of earlier sets re-hashed on every run (bit rot on the backup disk), besides every new file.
        type: int
        default: 256
      verify_full_days:
        description: Every this many days the new set is re-hashed completely (0 = every run).
        type: int
        default: 30
      min_dump_ratio:
        description: A dump smaller (bytes or rows) than this fraction of the previous one fails the run.
        type: float
        default: 0.5
      min_files_ratio:
        description: Originals fewer or smaller than this fraction of the previous set's (same folders) fail the run.
        type: float
        default: 0.5
      allow_shrink:
        description: Accept a dump or originals that shrank below the ratios (once, after a deliberate clean-up).
        type: bool
        default: false
      min_free_ratio:
        description: Free space needed on the first target, as a multiple of the previous dump's size.
        type: float
        default: 1.2
      lock_wait_seconds:
        description: How long to wait for another run's lock before failing with its holder named.
        type: int
        default: 0
      server_start_timeout:
        description: With O(options.consistency=stop_server), how long to wait for immich-server to be healthy again.
        type: int
        default: 180
      retention:
        description:
          - Keys C(keep_last), C(keep_daily), C(keep_weekly), C(keep_monthly) and C(keep_good) (the newest good sets
            always kept, whatever the calendar says). The same policy is applied to every target.
        type: dict
      monitor_url:
        description: Ping URL (healthchecks.io, Uptime Kuma push, ntfy) told of start, success and failure.
        type: str
        default: ""
      monitor_style:
        description: Style of O(options.monitor_url) when it cannot be guessed from the URL.
        type: str
        default: ""
      key_file:
        description: The key signing the set's manifests (on this host only); empty means C(/etc/homelab-immich/<instance>.key), created when missing.
        type: str
        default: ""
      trigger:
        description: Who started the run (recorded in C(set.json)).
        type: str
        choices: [ansible, schedule]
        default: ansible
notes:
  - Needs the Python 3 standard library and the C(docker) CLI; C(rsync) and C(flock) only for SSH targets (on both
    ends); C(restic) only for restic targets.
"""

EXAMPLES = r"""
- name: Back up to a second disk and a NAS
  homelab.immich.backup_run:
    instance: "{{ immich_instance }}"
    targets:
      - path: /mnt/backup/immich
      - host: nas.lan
        path: /volume1/immich
    options:
      retention: {keep_last: 7, keep_good: 2}
  register: backup
"""

RETURN = r"""
report:
  description: The run's report (status ok, partial or failed; steps with seconds; dump; files; coverage;
    verification; targets; retention; warnings). Also returned when the module fails.
  returned: always
  type: dict
set_id:
  description: The new set.
  returned: success
  type: str
  sample: 20261201T023000Z
set_dir:
  description: Folder of the new set on the first local target.
  returned: success
  type: str
plan:
  description: In check mode, what would be done, one line per step.
  returned: check mode
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.immich.plugins.module_utils import backup_run
from ansible_collections.homelab.immich.plugins.module_utils.targets.spec import TARGET_OPTIONS, clean


def main():
    module = AnsibleModule(
        argument_spec=dict(
            instance=dict(type="dict", required=True),
            targets=dict(type="list", elements="dict", required=True, options=TARGET_OPTIONS),
            options=dict(type="dict", default={}, options=backup_run.argument_spec()),
            **backup_run.PROGRESS_ARGS
        ),
        supports_check_mode=True,
    )
    os.umask(0o077)
    p = module.params
    targets = [clean(t) for t in p["targets"]]  # the keys Ansible filled with None left out
    try:
        if module.check_mode:
            plan = backup_run.plan_backup(p["instance"], targets, p["options"])
            module.exit_json(changed=True, plan=plan["plan"], report=plan, msg="Check mode: " + "; ".join(plan["plan"]))
        lines = []
        progress = backup_run.progress_file_of(p)
        try:
            report = backup_run.run_backup(p["instance"], targets, p["options"], log=lines.append, progress=progress)
        finally:
            progress.close({"step": "done"})
    except backup_run.EngineError as exc:
        module.fail_json(msg=str(exc), report=exc.result)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    for warning in report["warnings"]:
        module.warn(warning)
    if report["status"] != "ok":
        module.fail_json(msg="Backup of %s: %s" % (report["instance"], report["error"]), report=report, set_id=report["set_id"],
                         set_dir=report["set_dir"], changed=True)
    module.exit_json(changed=True, report=report, set_id=report["set_id"], set_dir=report["set_dir"], msg=report["summary"])


if __name__ == "__main__":
    main()
