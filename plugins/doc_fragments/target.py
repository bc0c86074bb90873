# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

# A target dict's keys are documented twice below (under targets and under repository): ansible-test wants
# string literals here. tests/unit/test_target_docs.py holds both to plugins/module_utils/targets/spec.py.


class ModuleDocFragment(object):
    # The notes every module taking targets shares.
    DOCUMENTATION = r"""
options: {}
notes:
  - "A backup target is a dict: a folder on the managed host (C(path)), a mirror over SSH (C(host) and C(path)), or a
    restic repository (C(restic) and C(password) or C(password_file)); the first local folder is where every set is
    written and verified first."
  - "Secrets (a repository's password, its environment) are kept out of logs and never reach a command line."
"""

    # homelab.immich.target.targets - the targets option of homelab.immich.backup_run
    TARGETS = r"""
options:
  targets:
    description: Backup targets, the first local folder first (see the notes).
    type: list
    elements: dict
    suboptions:
      path:
        description: A folder on the managed host (a local target), or the folder on the SSH host (an SSH mirror).
        type: str
      host:
        description: The SSH host of a mirror (it needs rsync and flock).
        type: str
      user:
        description: The SSH user of a mirror, or of an C(sftp:) repository when the repository string names none.
        type: str
      port:
        description: The SSH port of a mirror or of an C(sftp:) repository.
        type: int
      ssh_args:
        description: Extra ssh options, a list (C([-i, /root/.ssh/id_nas])).
        type: raw
      restic:
        description:
          - A restic repository - a local path, C(sftp:user@host:/path), C(rest:http://host:port/); other restic backends
            work the same way and are untested.
        type: str
      password:
        description: The repository's password (kept out of logs; it reaches restic through a file removed before restic reads it).
        type: str
      password_file:
        description: A 0600 file on the managed host holding the repository's password, instead of C(password).
        type: path
      init:
        description: Create the repository when it does not exist (never implied).
        type: bool
        default: false
      ssh_key:
        description: The SSH key of an C(sftp:) repository.
        type: path
      ssh_command:
        description: The whole ssh command restic runs for an C(sftp:) repository (instead of C(port), C(ssh_key), C(ssh_args)).
        type: str
      options:
        description: Extra C(-o) options of restic.
        type: list
        elements: str
      env:
        description: Extra environment of restic (backend credentials; kept out of logs).
        type: dict
      restic_binary:
        description: The restic program (C(restic) on PATH when not set).
        type: str
      snapshot_host:
        description: The host name of the snapshots (the instance's name when not set).
        type: str
      cache_dir:
        description: restic's cache folder.
        type: path
      cacert:
        description: A CA certificate for an C(https) REST server.
        type: path
      compression:
        description: restic's compression (C(auto), C(off), C(max)).
        type: str
      limit_upload:
        description: Upload limit in KiB/s.
        type: int
      limit_download:
        description: Download limit in KiB/s.
        type: int
      lock_wait:
        description: Seconds to wait for another client's lock on the repository (600 when not set).
        type: int
      stall_seconds:
        description: Seconds without progress after which restic is stopped (900 when not set).
        type: int
      connect_seconds:
        description: Seconds to reach the repository at all (30 when not set).
        type: int
      progress_fps:
        description: Progress updates of restic per second.
        type: float
      tmp_dir:
        description: restic's temporary folder.
        type: path
      prune_days:
        description: How often the repository is pruned (slow, needs memory), in days (7 when not set; 0 never).
        type: int
      check_days:
        description: How often C(restic check) reads back part of the data, in days (7 when not set; 0 never).
        type: int
      check_subset:
        description: How much data each check reads back (C(5%) when not set; C(1/10), C(500M)).
        type: str
"""

    # homelab.immich.target.repository - the repository option of homelab.immich.repository
    REPOSITORY = r"""
options:
  repository:
    description: The repository, as an entry of C(immich_backup_targets).
    type: dict
    suboptions:
      path:
        description: A folder on the managed host (a local target), or the folder on the SSH host (an SSH mirror).
        type: str
      host:
        description: The SSH host of a mirror (it needs rsync and flock).
        type: str
      user:
        description: The SSH user of a mirror, or of an C(sftp:) repository when the repository string names none.
        type: str
      port:
        description: The SSH port of a mirror or of an C(sftp:) repository.
        type: int
      ssh_args:
        description: Extra ssh options, a list (C([-i, /root/.ssh/id_nas])).
        type: raw
      restic:
        description:
          - A restic repository - a local path, C(sftp:user@host:/path), C(rest:http://host:port/); other restic backends
            work the same way and are untested.
        type: str
      password:
        description: The repository's password (kept out of logs; it reaches restic through a file removed before restic reads it).
        type: str
      password_file:
        description: A 0600 file on the managed host holding the repository's password, instead of C(password).
        type: path
      init:
        description: Create the repository when it does not exist (never implied).
        type: bool
        default: false
      ssh_key:
        description: The SSH key of an C(sftp:) repository.
        type: path
      ssh_command:
        description: The whole ssh command restic runs for an C(sftp:) repository (instead of C(port), C(ssh_key), C(ssh_args)).
        type: str
      options:
        description: Extra C(-o) options of restic.
        type: list
        elements: str
      env:
        description: Extra environment of restic (backend credentials; kept out of logs).
        type: dict
      restic_binary:
        description: The restic program (C(restic) on PATH when not set).
        type: str
      snapshot_host:
        description: The host name of the snapshots (the instance's name when not set).
        type: str
      cache_dir:
        description: restic's cache folder.
        type: path
      cacert:
        description: A CA certificate for an C(https) REST server.
        type: path
      compression:
        description: restic's compression (C(auto), C(off), C(max)).
        type: str
      limit_upload:
        description: Upload limit in KiB/s.
        type: int
      limit_download:
        description: Download limit in KiB/s.
        type: int
      lock_wait:
        description: Seconds to wait for another client's lock on the repository (600 when not set).
        type: int
      stall_seconds:
        description: Seconds without progress after which restic is stopped (900 when not set).
        type: int
      connect_seconds:
        description: Seconds to reach the repository at all (30 when not set).
        type: int
      progress_fps:
        description: Progress updates of restic per second.
        type: float
      tmp_dir:
        description: restic's temporary folder.
        type: path
      prune_days:
        description: How often the repository is pruned (slow, needs memory), in days (7 when not set; 0 never).
        type: int
      check_days:
        description: How often C(restic check) reads back part of the data, in days (7 when not set; 0 never).
        type: int
      check_subset:
        description: How much data each check reads back (C(5%) when not set; C(1/10), C(500M)).
        type: str
"""
