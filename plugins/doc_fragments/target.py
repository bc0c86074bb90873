# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The keys of a backup target dict (plugins/module_utils/targets/spec.py); the kind is told by its keys.
    DOCUMENTATION = r"""
options: {}
notes:
  - "A backup target is a dict. A folder on the managed host - C(path). A mirror over SSH - C(host), C(path),
    C(user), C(port), C(ssh_args) (a list of ssh options, e.g. C([-i, /root/.ssh/id_nas])); the remote needs rsync
    and flock. A restic repository - C(restic) (a local path, C(sftp:user@host:/path), C(rest:http://host:port/), or
    any other restic backend, untested), C(password) (kept out of logs) or C(password_file) (a 0600 file on the
    host), C(init) (create the repository when it does not exist; never implied), and for SFTP C(port), C(ssh_key),
    C(ssh_args) or C(ssh_command); C(prune_days) (default 7) and C(check_days) (default 7) with C(check_subset)
    (default C(5%)) set how often the repository is pruned and its data partly read back; C(cache_dir), C(cacert),
    C(compression), C(limit_upload), C(limit_download), C(options), C(env) (extra environment, kept out of logs)
    and C(lock_wait), C(stall_seconds), C(connect_seconds) are passed to restic."
  - "The password of a restic repository reaches restic through a 0600 file that is removed before restic starts
    reading it (and the repository string through the environment): never through a command line or a log."
"""
